/*
 * progress.c — Keras' progress line:
 *   469/469 ━━━━━━━━━━━━━━━━━━━━ 1s 2ms/step - accuracy: 0.8100 - loss: 0.5416
 * redrawn in place on a terminal; one plain line per epoch otherwise:
 *   Epoch 1/10 - 469/469 - 1s 2ms/step - accuracy: 0.8100 - loss: 0.5416
 */
#include "runtime/runtime.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void step_time(ir_sb *sb, double seconds, int64_t steps) {
    ir_sb_printf(sb, "%.0fs", floor(seconds + 0.5));
    if (steps <= 0) return;
    double per = seconds / (double)steps;
    if (per >= 1.0)
        ir_sb_printf(sb, " %.0fs/step", per);
    else if (per >= 1e-3)
        ir_sb_printf(sb, " %.0fms/step", per * 1e3);
    else
        ir_sb_printf(sb, " %.0fus/step", per * 1e6);
}

static void metrics(ir_sb *sb, const kiln_progress *p) {
    if (p->accuracy >= 0) ir_sb_printf(sb, " - accuracy: %.4f", p->accuracy);
    ir_sb_printf(sb, " - loss: %.4f", p->loss);
}

void rt_progress_format(ir_sb *sb, const kiln_progress *p, bool tty) {
    const int width = 20;
    if (!tty) {
        if (p->epochs > 0) ir_sb_printf(sb, "Epoch %d/%d - ", p->epoch, p->epochs);
        ir_sb_printf(sb, "%lld/%lld - ", (long long)p->step, (long long)p->steps);
        step_time(sb, p->seconds, p->step);
        metrics(sb, p);
        return;
    }
    int digits = 1;
    for (int64_t s = p->steps; s >= 10; s /= 10) digits++;
    ir_sb_printf(sb, "%*lld/%lld ", digits, (long long)p->step, (long long)p->steps);
    int done = p->steps > 0 ? (int)((double)p->step / (double)p->steps * width) : width;
    if (done > width) done = width;
    /* Done part bold, the rest dim, as Keras draws it. */
    ir_sb_puts(sb, "\x1b[1m");
    for (int i = 0; i < done; i++) ir_sb_puts(sb, "━");
    ir_sb_puts(sb, "\x1b[0m\x1b[2m");
    for (int i = done; i < width; i++) ir_sb_puts(sb, "━");
    ir_sb_puts(sb, "\x1b[0m ");
    step_time(sb, p->seconds, p->step);
    metrics(sb, p);
}

double rt_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void rt_progress_add(kiln_progress *p, double sums[2], const float la[2], int rows, bool acc,
                     double t0) {
    sums[0] += (double)la[0] * rows;
    sums[1] += (double)la[1] * rows;
    p->step++;
    p->samples += rows;
    p->loss = sums[0] / (double)p->samples;
    p->accuracy = acc ? sums[1] / (double)p->samples : -1;
    p->seconds = rt_now_s() - t0;
}

void rt_progress_show(const kiln_progress *p, bool end, bool tty, double *last_draw) {
    if (!tty && !end) return;
    double t = rt_now_s();
    if (tty && !end && t - *last_draw < 0.1) return;
    *last_draw = t;
    ir_sb sb;
    ir_sb_init(&sb);
    rt_progress_format(&sb, p, tty);
    if (sb.buf) {
        fprintf(stdout, "%s%s%s", tty ? "\r" : "", sb.buf, end ? "\n" : "");
        fflush(stdout);
    }
    ir_sb_free(&sb);
}

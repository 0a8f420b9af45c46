/*
 * kiln_profile.c — where a Kiln train step spends its time, in µs per step,
 * split at the GEMM boundaries (bench/run.sh's profile stage).
 *
 *   bench_kiln_profile [--model FILE.kiln] [--data DIR] [--threads N]
 *                      [--epochs N] [--seed N] [--perf-ctl FIFO[,ACK]] [--ftz] [--json]
 *
 * How: this program defines cblas_sgemm itself. The JIT binds the symbol
 * cblas_sgemm to the address this executable links (codegen/jit.c,
 * define_blas), so every GEMM of the generated code comes here; the
 * wrapper timestamps it and calls OpenBLAS's (dlsym RTLD_NEXT). The fit
 * callback timestamps the end of every step. One step is then
 *
 *   [gather + call] GEMM [gap] GEMM [gap] ... GEMM [tail up to the callback]
 *
 * and each gap is the generated code between two GEMMs (epilogues,
 * softmax-CE, argmax, relu', bias reductions, Adam ...). Two clock reads per
 * GEMM cost < 0.1 µs. Medians over the full-batch steps of all epochs but
 * the first (steps right after an epoch boundary are left out: they include
 * the shuffle).
 *
 * --ftz: sets flush-to-zero and denormals-are-zero (MXCSR) before training,
 * to see what denormal numbers cost (Adam's first moments of rarely lit
 * pixels decay by 0.9 a step into the denormal range).
 *
 * --perf-ctl FIFO[,ACK]: writes "enable" / "disable" to a `perf record
 * --control fifo:FIFO[,ACK] -D -1` control pipe around kiln_model_fit (and
 * waits for perf's "ack" on ACK when given), so perf samples the
 * training loop only (not the JIT compile, nor the data loading).
 */
#define _GNU_SOURCE
#include <kiln/kiln.h>

#include <cblas.h>
#include <dlfcn.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

/* ------------------------------------------------------------ recording */

typedef struct gemm_ev {
    double t0, t1;
    int ta, tb, m, n, k;
} gemm_ev;

static gemm_ev *evs;
static long n_evs, cap_evs;

/* The end of one step, seen by the fit callback. */
typedef struct step_mark {
    double t; /* time of the callback */
    long ev;  /* n_evs then */
    int epoch;
    int full; /* a full batch and not the first step of an epoch */
} step_mark;

static step_mark *marks;
static long n_marks, cap_marks;
static int recording;

typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE,
                         const enum CBLAS_TRANSPOSE, const blasint, const blasint, const blasint,
                         const float, const float *, const blasint, const float *, const blasint,
                         const float, float *, const blasint);
static sgemm_fn real_sgemm;

static void *grow(void *p, long *cap, long need, size_t elem) {
    if (need <= *cap) return p;
    long c = *cap ? *cap * 2 : 4096;
    while (c < need) c *= 2;
    void *q = realloc(p, (size_t)c * elem);
    if (!q) {
        fprintf(stderr, "bench_kiln_profile: out of memory\n");
        exit(1);
    }
    *cap = c;
    return q;
}

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                 const enum CBLAS_TRANSPOSE tb, const blasint m, const blasint n, const blasint k,
                 const float alpha, const float *a, const blasint lda, const float *b,
                 const blasint ldb, const float beta, float *c, const blasint ldc) {
    if (!real_sgemm) {
        real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
        if (!real_sgemm) {
            fprintf(stderr, "bench_kiln_profile: cblas_sgemm not found after this program\n");
            exit(1);
        }
    }
    if (!recording) {
        real_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    double t0 = now_us();
    real_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    double t1 = now_us();
    evs = grow(evs, &cap_evs, n_evs + 1, sizeof *evs);
    evs[n_evs++] = (gemm_ev){t0, t1, ta == CblasTrans, tb == CblasTrans, m, n, k};
}

static void on_step(const kiln_progress *p, int end, void *user) {
    int64_t batch = *(const int64_t *)user;
    double t = now_us();
    if (end) return;
    marks = grow(marks, &cap_marks, n_marks + 1, sizeof *marks);
    /* The first step of an epoch includes the shuffle. */
    marks[n_marks++] =
        (step_mark){t, n_evs, p->epoch, p->step > 1 && p->samples == p->step * batch};
}

/* ------------------------------------------------------------- analysis */

/* What the generated code does between two GEMMs of the seed model's train
 * step, keyed by the GEMM that ends before the gap. */
static const char *gemm_name(const gemm_ev *e) {
    static char buf[64];
    if (!e->ta && !e->tb) {
        snprintf(buf, sizeof buf, "fwd %dx%dx%d", e->m, e->n, e->k);
    } else if (e->ta) {
        snprintf(buf, sizeof buf, "dW %dx%dx%d", e->m, e->n, e->k);
    } else {
        snprintf(buf, sizeof buf, "dX %dx%dx%d", e->m, e->n, e->k);
    }
    return buf;
}

static const char *gap_note(const gemm_ev *e) {
    if (!e) return "batch gather (uint8 -> f32, one-hot) + fit loop + entry";
    if (!e->ta && !e->tb && e->k == 784) return "L1 bias+relu";
    if (!e->ta && !e->tb && e->k == 128) return "L2 bias+relu";
    if (!e->ta && !e->tb && e->k == 64) return "L3 bias, softmax-CE, argmax x2, accuracy, dlogits";
    if (e->ta && e->m == 64) return "db3 (bias-grad reduce)";
    if (!e->ta && e->tb && e->n == 64) return "relu' L2";
    if (e->ta && e->m == 128) return "db2 (bias-grad reduce)";
    if (!e->ta && e->tb && e->n == 128) return "relu' L1";
    if (e->ta && e->m == 784) return "db1 reduce, Adam (109,386 params x 3 arrays), fit loop";
    return "";
}

static double median(double *v, long n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int fail(kiln_diag *d, const char *what) {
    fprintf(stderr, "bench_kiln_profile: %s failed:\n%s", what, kiln_diag_message(d));
    return 1;
}

/* Sends `cmd` to perf's control fifo; with an ack fifo ("CTL,ACK"), waits
 * until perf has applied it. */
static void perf_ctl(const char *spec, const char *cmd) {
    if (!spec) return;
    char ctl[4096];
    snprintf(ctl, sizeof ctl, "%s", spec);
    char *ack = strchr(ctl, ',');
    if (ack) *ack++ = 0;
    FILE *f = fopen(ctl, "w");
    if (!f) {
        perror(ctl);
        return;
    }
    fprintf(f, "%s\n", cmd);
    fclose(f);
    if (ack && (f = fopen(ack, "r"))) {
        char line[16];
        if (!fgets(line, sizeof line, f)) perror(ack);
        fclose(f);
    }
}

int main(int argc, char **argv) {
    const char *model_path = "examples/mnist_mlp.kiln", *data = "/usr/share/datasets/fashion-mnist",
               *fifo = NULL;
    int threads = 1, epochs = 3, json = 0, ftz = 0;
    long long seed = 1;
    int64_t batch = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--ftz")) {
            ftz = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_kiln_profile: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--data"))
            data = v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--epochs"))
            epochs = atoi(v);
        else if (!strcmp(a, "--seed"))
            seed = atoll(v);
        else if (!strcmp(a, "--perf-ctl"))
            fifo = v;
        else {
            fprintf(stderr, "bench_kiln_profile: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (epochs < 2) epochs = 2;

    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    if (kiln_model_file_load(model_path, &m, d)) return fail(d, "loading the model");
    kiln_model_opts mo_opts = {KILN_BACKEND_JIT, threads, seed, KILN_GEMM_AUTO};
    kiln_model *mo = NULL;
    if (kiln_model_create(m, &mo_opts, &mo, d)) return fail(d, "kiln_model_create");
    kiln_dataset *train = NULL;
    if (kiln_dataset_load(data, "train", &train, d)) return fail(d, "loading the data");

    kiln_fit_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.epochs = epochs;
    fo.batch_size = batch;
    fo.shuffle_seed = seed;
    fo.callback = on_step;
    fo.user = &batch;
    if (ftz) _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ | DAZ, this thread */
    recording = 1;
    perf_ctl(fifo, "enable");
    double t0 = now_us();
    kiln_status st = kiln_model_fit(mo, train, &fo, d);
    double fit_us = now_us() - t0;
    perf_ctl(fifo, "disable");
    recording = 0;
    if (st) return fail(d, "kiln_model_fit");

    /* Steps with the usual number of GEMMs, in the usual order. */
    long n_gemm = 0, used = 0;
    for (long s = 1; s < n_marks; s++)
        if (marks[s].full && marks[s].epoch > 1) {
            n_gemm = marks[s].ev - marks[s - 1].ev;
            break;
        }
    if (n_gemm <= 0) {
        fprintf(stderr,
                "bench_kiln_profile: no GEMM seen in a step (is cblas_sgemm interposed?)\n");
        return 1;
    }
    int nseg = (int)(2 * n_gemm + 1); /* pre, then (gemm, gap) pairs; the last gap is the tail */
    double **v = calloc((size_t)nseg + 1, sizeof *v);
    for (int i = 0; i <= nseg; i++) v[i] = calloc((size_t)n_marks, sizeof **v);
    const gemm_ev *ref = NULL;
    for (long s = 1; s < n_marks; s++) {
        if (!marks[s].full || marks[s].epoch < 2 || marks[s].ev - marks[s - 1].ev != n_gemm)
            continue;
        const gemm_ev *e = evs + marks[s - 1].ev;
        if (!ref) ref = e;
        int same = 1;
        for (long g = 0; g < n_gemm; g++)
            same &= e[g].m == ref[g].m && e[g].n == ref[g].n && e[g].k == ref[g].k &&
                    e[g].ta == ref[g].ta && e[g].tb == ref[g].tb;
        if (!same) continue;
        v[0][used] = e[0].t0 - marks[s - 1].t;
        for (long g = 0; g < n_gemm; g++) {
            v[1 + 2 * g][used] = e[g].t1 - e[g].t0;
            v[2 + 2 * g][used] = (g + 1 < n_gemm ? e[g + 1].t0 : marks[s].t) - e[g].t1;
        }
        v[nseg][used] = marks[s].t - marks[s - 1].t;
        used++;
    }
    double step_med = median(v[nseg], used), sum_gemm = 0, sum_other = 0;
    double *med = calloc((size_t)nseg, sizeof *med);
    for (int i = 0; i < nseg; i++) {
        med[i] = median(v[i], used);
        if (i % 2)
            sum_gemm += med[i];
        else
            sum_other += med[i];
    }
    int steps_per_epoch = (int)((60000 + batch - 1) / batch);
    if (json) {
        printf("{\"threads\": %d, \"steps\": %ld, \"step_us_median\": %.3f, \"gemm_us\": %.3f, "
               "\"other_us\": %.3f, \"fit_s\": %.4f, \"segments\": [",
               kiln_model_threads(mo), used, step_med, sum_gemm, sum_other, fit_us * 1e-6);
        for (int i = 0; i < nseg; i++) {
            const gemm_ev *before = i == 0 ? NULL : &ref[(i - 1) / 2];
            printf("%s{\"kind\": \"%s\", \"name\": \"%s\", \"note\": \"%s\", \"us\": %.3f}",
                   i ? ", " : "", i % 2 ? "gemm" : "other",
                   i % 2    ? gemm_name(before)
                   : i == 0 ? "before first GEMM"
                            : "after",
                   i % 2 ? "" : gap_note(before), med[i]);
        }
        printf("]}\n");
    } else {
        printf("train step at batch %lld, %d thread(s): median %.1f us over %ld steps "
               "(x %d = %.3f s/epoch)\n",
               (long long)batch, kiln_model_threads(mo), step_med, used, steps_per_epoch,
               step_med * steps_per_epoch * 1e-6);
        printf("  %-6s %-16s %9s %6s  %s\n", "kind", "segment", "us/step", "share", "what");
        for (int i = 0; i < nseg; i++) {
            const gemm_ev *before = i == 0 ? NULL : &ref[(i - 1) / 2];
            char name[64];
            snprintf(name, sizeof name, "%s", i % 2 ? gemm_name(before) : i == 0 ? "pre" : "after");
            printf("  %-6s %-16s %9.2f %5.1f%%  %s\n", i % 2 ? "GEMM" : "other", name, med[i],
                   100 * med[i] / step_med, i % 2 ? "" : gap_note(before));
        }
        printf("  GEMMs %.1f us (%.1f%%), everything else %.1f us (%.1f%%)\n", sum_gemm,
               100 * sum_gemm / step_med, sum_other, 100 * sum_other / step_med);
    }
    for (int i = 0; i <= nseg; i++) free(v[i]);
    free(v);
    free(med);
    free(evs);
    free(marks);
    kiln_dataset_dispose(train);
    kiln_model_dispose(mo);
    kiln_diag_dispose(d);
    return 0;
}

/* runtime.h — internals shared by the runtime's files (and the driver). */
#ifndef KILN_RUNTIME_RUNTIME_H
#define KILN_RUNTIME_RUNTIME_H

#include "ir/ir.h"

/* ------------------------------------------------------------- progress */

/* Formats one progress line (no newline, no carriage return). On a
 * terminal, with the bar; else the plain form that starts with the epoch. */
void rt_progress_format(ir_sb *sb, const kiln_progress *p, bool tty);
/* Seconds on the monotonic clock. */
double rt_now_s(void);
/* Adds one batch (its mean loss and accuracy, la) to the running means of
 * p; sums holds the sample-weighted totals; t0 is when the pass began. */
void rt_progress_add(kiln_progress *p, double sums[2], const float la[2], int rows, bool acc,
                     double t0);
/* Prints a progress line to stdout: redrawn on a terminal (at most every
 * 0.1 s, *last_draw holds when it last was), once at the end otherwise. */
void rt_progress_show(const kiln_progress *p, bool end, bool tty, double *last_draw);

/* -------------------------------------------------------------- weights */

/* Bytes of a global's data. */
size_t rt_global_bytes(const ir_global *g);
/* The initialization seed: `requested`, else the module's train.seed, else 1. */
uint64_t rt_seed(const kiln_module *m, int64_t requested);
/* The data of every global of `m` (parameters and state), allocated and
 * initialized with `seed`: the one place a module's weights come to be,
 * for a model and for the weights an AOT library embeds. Free with
 * rt_globals_free(). */
kiln_status rt_globals_create(const kiln_module *m, uint64_t seed, void ***out, kiln_diag *d);
void rt_globals_free(const kiln_module *m, void **globals);

#endif

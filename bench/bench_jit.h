/*
 * bench_jit.h — what the bench programs that time single Kiln functions
 * through the JIT share (bench_gemm, bench_matmul_mask): options, input
 * buffers, the compile of a module's text, one call of an entry.
 * Header-only, beside bench_util.h; needs the source root on the include
 * path (codegen/cg.h).
 */
#ifndef KILN_BENCH_JIT_H
#define KILN_BENCH_JIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "passes/pass.h"

/* --samples N and --batch N (the defaults as given); 2 after the usage
 * line for anything else, else 0. */
static inline int bench_jit_args(int argc, char **argv, const char *prog, int *samples,
                                 int64_t *batch) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            *samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            *batch = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--samples N] [--batch N]\n", prog);
            return 2;
        }
    }
    if (*samples < 1) *samples = 1;
    return 0;
}

/* n floats, 64-byte aligned, a fixed pattern in [-0.08, 0.08]; exits when
 * out of memory. Freed with free(). */
static inline float *bench_fbuf(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = (float)(i % 17) * 0.01f - 0.08f;
    return p;
}

/* The module of `text` after `pipeline`, compiled with o: *m and *p
 * (disposed by the caller) or, on an error, a message naming `prog` and 1. */
static inline int bench_jit_compile(const char *prog, const char *text, const char *pipeline,
                                    const cg_options *o, kiln_module **m, cg_program **p) {
    kiln_diag *d = kiln_diag_create();
    *m = NULL;
    *p = NULL;
    kiln_status st = kiln_module_parse(text, strlen(text), "bench.kir", m, d);
    if (!st) st = pass_run_pipeline(*m, pipeline, NULL, d);
    if (!st) st = cg_jit_compile(*m, o, p, d);
    if (st) {
        fprintf(stderr, "%s: %s\n", prog, kiln_diag_message(d));
        kiln_module_dispose(*m);
        *m = NULL;
    }
    kiln_diag_dispose(d);
    return st ? 1 : 0;
}

/* One entry with its arguments, results and workspace: bench_jit_call runs it. */
typedef struct bench_jit_run {
    cg_entry_fn fn;
    int64_t batch;
    void *args[4], *res[1];
    char *ws; /* free() it */
} bench_jit_run;

static inline bench_jit_run bench_jit_entry(cg_program *p, const char *name, int64_t batch) {
    bench_jit_run r = {cg_program_entry(p, name), batch, {NULL}, {NULL}, NULL};
    r.ws = aligned_alloc(64, (size_t)(cg_program_workspace_bytes(p, name, batch) + 64) / 64 * 64);
    return r;
}

static inline void bench_jit_call(void *arg) {
    bench_jit_run *r = arg;
    r->fn(r->batch, r->args, r->res, NULL, r->ws);
}

#endif

/*
 * onnx_infer.c — Kiln's side of bench/onnx.sh: inference of one model at
 * one thread through the JIT (kiln_model_predict) and an AOT shared object
 * (kiln_compile_aot, dlopen'ed as a C program would).
 *
 *   bench_onnx_infer MODEL [--load CKPT] [--calls N] [--reps R] [--batch B]
 *
 * MODEL is a .onnx, .kiln or .kir file (weights: its own, or CKPT). Batch-1
 * latency: the median of 15 rounds of N/15 calls (µs per call); throughput:
 * the median of R calls on B samples (default 10,000) in samples/s. Inputs
 * are deterministic values in [0, 1). Prints one line "RESULT {json}".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/kiln.h"
#include "bench_util.h"

typedef int (*create_fn)(int64_t, void **);
typedef int (*infer_fn)(void *, int64_t, const float *, float *);
typedef void (*destroy_fn)(void *);

enum { ROUNDS = 15 };

typedef struct run {
    kiln_model *model;
    infer_fn infer;
    void *handle;
    const float *x;
    float *y;
} run;

static void call(run *r, int64_t n) {
    int bad = r->model ? kiln_model_predict(r->model, r->x, n, r->y, NULL) != KILN_OK
                       : r->infer(r->handle, n, r->x, r->y) != 0;
    if (bad) {
        fprintf(stderr, "bench_onnx_infer: inference failed\n");
        exit(1);
    }
}

/* Batch-1 latency in µs: median over ROUNDS of the mean of `calls` calls. */
static double latency_us(run *r, long calls) {
    double t[ROUNDS];
    for (long i = 0; i < calls / 10 + 1; i++) call(r, 1);
    for (int k = 0; k < ROUNDS; k++) {
        double t0 = bench_now();
        for (long i = 0; i < calls; i++) call(r, 1);
        t[k] = (bench_now() - t0) * 1e6 / (double)calls;
    }
    qsort(t, ROUNDS, sizeof t[0], bench_cmp_double);
    return t[ROUNDS / 2];
}

/* Samples per second on `batch` samples: median over `reps` calls. */
static double throughput(run *r, int64_t batch, int reps) {
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!t) exit(1);
    call(r, batch);
    for (int k = 0; k < reps; k++) {
        double t0 = bench_now();
        call(r, batch);
        t[k] = bench_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], bench_cmp_double);
    double s = (double)batch / t[reps / 2];
    free(t);
    return s;
}

static kiln_module *load(const char *path, const char *ckpt, kiln_diag *d) {
    kiln_module *m = NULL;
    if (kiln_module_load_file(path, &m, d) || kiln_module_load_weights(m, ckpt, 1, d)) {
        fputs(kiln_diag_message(d), stderr);
        exit(1);
    }
    return m;
}

int main(int argc, char **argv) {
    const char *path = NULL, *ckpt = NULL;
    long calls = 30000;
    int reps = 9;
    int64_t batch = 10000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--load") == 0 && i + 1 < argc) ckpt = argv[++i];
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc) calls = atol(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = atol(argv[++i]);
        else if (!path && argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "usage: bench_onnx_infer MODEL [--load CKPT] [--calls N] [--reps R] "
                            "[--batch B]\n");
            return 2;
        }
    }
    if (!path || calls < ROUNDS || reps < 1 || batch < 1) return 2;
    calls /= ROUNDS;
    kiln_diag *d = kiln_diag_create();

    kiln_model *model = NULL;
    kiln_model_opts mo = {.backend = KILN_BACKEND_JIT, .threads = 1};
    if (kiln_model_create(load(path, ckpt, d), &mo, &model, d)) {
        fputs(kiln_diag_message(d), stderr);
        return 1;
    }
    int64_t in = kiln_model_input_size(model), out = kiln_model_output_size(model);
    float *x = malloc(sizeof *x * (size_t)(in * batch)), *y = malloc(sizeof *y * (size_t)(out * batch));
    if (!x || !y) return 1;
    uint32_t s = 12345;
    for (int64_t i = 0; i < in * batch; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
    run jit = {.model = model, .x = x, .y = y};
    double jit_b1 = latency_us(&jit, calls), jit_tp = throughput(&jit, batch, reps);

    char dir[] = "/tmp/kiln-bench-onnx-XXXXXX", so[256];
    if (!mkdtemp(dir)) return 1;
    snprintf(so, sizeof so, "%s/libbench.so", dir);
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.output = so;
    o.prefix = "bench";
    kiln_module *m = load(path, ckpt, d);
    if (kiln_compile_aot(m, &o, d)) {
        fputs(kiln_diag_message(d), stderr);
        return 1;
    }
    kiln_module_dispose(m);
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    create_fn create = (create_fn)dlsym(lib, "bench_create");
    destroy_fn destroy = (destroy_fn)dlsym(lib, "bench_destroy");
    run aot = {.infer = (infer_fn)dlsym(lib, "bench_infer"), .x = x, .y = y};
    if (!create || !aot.infer || create(batch, &aot.handle) != 0) {
        fprintf(stderr, "bench_onnx_infer: cannot create the AOT model\n");
        return 1;
    }
    double aot_b1 = latency_us(&aot, calls), aot_tp = throughput(&aot, batch, reps);
    printf("%s, 1 thread: batch-1 latency JIT %.2f us, AOT %.2f us; batch-%lld throughput JIT "
           "%.0f, AOT %.0f samples/s\n",
           path, jit_b1, aot_b1, (long long)batch, jit_tp, aot_tp);
    printf("RESULT {\"model\": \"%s\", \"jit_b1_us\": %.4f, \"aot_b1_us\": %.4f, \"jit_tput\": %.1f, "
           "\"aot_tput\": %.1f, \"batch\": %lld}\n",
           path, jit_b1, aot_b1, jit_tp, aot_tp, (long long)batch);
    if (destroy) destroy(aot.handle);
    dlclose(lib);
    unlink(so);
    rmdir(dir);
    free(x);
    free(y);
    kiln_model_dispose(model);
    kiln_diag_dispose(d);
    return 0;
}

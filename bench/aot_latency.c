/*
 * aot_latency.c — batch-1 inference latency through an AOT shared object's
 * entry point, next to the JIT (kiln_model_predict) and to what the first
 * layer alone costs as a one-row cblas_sgemm and as cblas_sgemv.
 *
 *   bench_aot_latency [MODEL.kiln] [REPS]      (default examples/mnist_mlp.kiln, 200000)
 *
 * The model is compiled with kiln_compile_aot into a temporary directory
 * and loaded with dlopen, the way a C program would use it. Prints the
 * median of 15 rounds of REPS/15 calls each (one thread). Not a test.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/kiln.h"
#include "bench_util.h"

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

typedef int (*create_fn)(int64_t, void **);
typedef int (*infer_fn)(void *, int64_t, const float *, float *);
typedef void (*destroy_fn)(void *);

enum { ROUNDS = 15 };

/* Median (and in *best the minimum) over ROUNDS of the mean time of `reps`
 * calls of fn(ctx), in µs: on a shared machine the minimum is the run
 * least disturbed by other work. */
static double median_us(void (*fn)(void *), void *ctx, long reps, double *best) {
    double t[ROUNDS];
    for (long i = 0; i < reps / 10 + 1; i++) fn(ctx); /* warm up */
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = bench_now();
        for (long i = 0; i < reps; i++) fn(ctx);
        t[r] = (bench_now() - t0) * 1e6 / (double)reps;
    }
    qsort(t, ROUNDS, sizeof t[0], bench_cmp_double);
    *best = t[0];
    return t[ROUNDS / 2];
}

typedef struct run {
    infer_fn infer;
    void *handle;
    kiln_model *model;
    const float *x;
    float *y;
    const float *w;
    int k, n;
} run;

static void call_aot(void *p) {
    run *r = p;
    if (r->infer(r->handle, 1, r->x, r->y) != 0) abort();
}

static void call_jit(void *p) {
    run *r = p;
    if (kiln_model_predict(r->model, r->x, 1, r->y, NULL) != KILN_OK) abort();
}

static void call_sgemm(void *p) {
    run *r = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, r->n, r->k, 1.0f, r->x, r->k, r->w,
                r->n, 0.0f, r->y, r->n);
}

static void call_sgemv(void *p) {
    run *r = p;
    cblas_sgemv(CblasRowMajor, CblasTrans, r->k, r->n, 1.0f, r->w, r->n, r->x, 1, 0.0f, r->y, 1);
}

int main(int argc, char **argv) {
    const char *model_path = argc > 1 ? argv[1] : KILN_SOURCE_DIR "/examples/mnist_mlp.kiln";
    long reps = argc > 2 ? atol(argv[2]) : 200000;
    reps = reps / ROUNDS > 0 ? reps / ROUNDS : 1;
    openblas_set_num_threads(1);

    char dir[] = "/tmp/kiln-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char so[256];
    snprintf(so, sizeof so, "%s/libbench.so", dir);
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL, *m2 = NULL;
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.output = so;
    o.prefix = "bench";
    kiln_status st = kiln_model_file_load(model_path, &m, d);
    if (!st) st = kiln_compile_aot(m, &o, d);
    if (!st) st = kiln_model_file_load(model_path, &m2, d);
    kiln_model *model = NULL;
    kiln_model_opts mo = {.backend = KILN_BACKEND_JIT, .threads = 1};
    if (!st) st = kiln_model_create(m2, &mo, &model, d);
    if (st) {
        fputs(kiln_diag_message(d), stderr);
        return 1;
    }
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    create_fn create = (create_fn)dlsym(lib, "bench_create");
    run r;
    memset(&r, 0, sizeof r);
    r.infer = (infer_fn)dlsym(lib, "bench_infer");
    r.model = model;
    int64_t in = kiln_model_input_size(model), out = kiln_model_output_size(model);
    float *x = calloc((size_t)in, sizeof *x),
          *y = calloc((size_t)(out > 128 ? out : 128), sizeof *y);
    for (int64_t i = 0; i < in; i++) x[i] = (float)((i * 37) % 255) / 255.0f;
    r.x = x;
    r.y = y;
    if (!create || !r.infer || create(1, &r.handle) != 0) {
        fprintf(stderr, "cannot create the AOT model\n");
        return 1;
    }
    double aot_min, jit_min, gemm_min, gemv_min;
    double aot = median_us(call_aot, &r, reps, &aot_min);
    double jit = median_us(call_jit, &r, reps, &jit_min);
    /* The first layer alone as BLAS would do it (in x 128). */
    r.k = (int)in;
    r.n = 128;
    float *w = calloc((size_t)in * 128, sizeof *w);
    for (int64_t i = 0; i < in * 128; i++) w[i] = (float)(i % 17) * 0.01f;
    r.w = w;
    double gemm = median_us(call_sgemm, &r, reps, &gemm_min);
    double gemv = median_us(call_sgemv, &r, reps, &gemv_min);
    printf("model %s, batch 1, 1 thread, %d rounds of %ld calls: median (min)\n", model_path,
           ROUNDS, reps);
    printf("  AOT  bench_infer                        %7.2f us (%.2f)\n", aot, aot_min);
    printf("  JIT  kiln_model_predict                 %7.2f us (%.2f)\n", jit, jit_min);
    printf("  layer 1 alone (%lldx128), cblas_sgemm M=1 %7.2f us (%.2f)\n", (long long)in, gemm,
           gemm_min);
    printf("  layer 1 alone (%lldx128), cblas_sgemv     %7.2f us (%.2f)\n", (long long)in, gemv,
           gemv_min);
    destroy_fn destroy = (destroy_fn)dlsym(lib, "bench_destroy");
    if (destroy) destroy(r.handle);
    dlclose(lib);
    free(x);
    free(y);
    free(w);
    kiln_model_dispose(model);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    unlink(so);
    rmdir(dir);
    return 0;
}

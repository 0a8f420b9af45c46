/*
 * gemm_floor.c — the GEMM floor of the seed model (784-128-64-10): what
 * OpenBLAS alone needs for the matrix products Kiln's train step and
 * inference call, so Kiln's times can be read as ratios to it.
 *
 *   bench_gemm_floor [--threads N] [--samples N] [--json]
 *
 * Trimmed from ../shared/anchors/sgemm_bench.c (the project's reference
 * GEMM probe): same shapes, same layout, same timing method.
 *
 * Layout: row-major, Keras convention. Layer l has kernel W [in x out] and
 * activations X [B x in]:
 *   forward      Y  = X . W          M=B   N=out K=in
 *   weight grad  dW = X^T . dY       M=in  N=out K=B   (A transposed)
 *   input grad   dX = dY . W^T       M=B   N=in  K=out (B transposed)
 * A training step at batch 128 is the 8 GEMMs below (dX of layer 1, the
 * gradient w.r.t. the images, is not needed and not computed by Kiln or
 * PyTorch). The floor of an epoch is 469 x the median time of the 8-call
 * sequence (468 full batches and one of 96, counted as full: < 0.2%).
 *
 * Also the forward GEMMs at batch 10,000 (the inference throughput floor)
 * and the batch-1 forward with cblas_sgemv (the latency floor).
 *
 * Each figure: warm-up (~0.1 s), then `samples` timed samples of `inner`
 * back-to-back calls (a sample lasts >= 2 ms); per-call time = sample /
 * inner; min and median over the samples.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"

#define STEPS_PER_EPOCH 469

static float *fbuf(size_t n, unsigned *seed) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_gemm_floor: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)rand_r(seed) / (float)RAND_MAX * 2.f - 1.f;
    return p;
}

typedef struct gemm {
    const char *name;
    int ta, tb; /* 1: operand transposed */
    int M, N, K;
    int gemv; /* batch-1 forward as y[N] = W[K x N]^T x[K] */
    float *A, *B, *C;
} gemm;

static void run_gemm(const gemm *g) {
    if (g->gemv) {
        cblas_sgemv(CblasRowMajor, CblasTrans, g->K, g->N, 1.0f, g->B, g->N, g->A, 1, 0.0f, g->C,
                    1);
        return;
    }
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                g->M, g->N, g->K, 1.0f, g->A, lda, g->B, ldb, 0.0f, g->C, g->N);
}

static double flops(const gemm *g) {
    return 2.0 * g->M * g->N * g->K;
}

typedef struct seq {
    const gemm *g;
    int n;
} seq;

static void run_seq(const seq *s) {
    for (int i = 0; i < s->n; i++) run_gemm(&s->g[i]);
}

/* Min and median seconds per call of run_seq(s) over `samples` samples. */
static void timeit(const seq *s, int samples, double *tmin, double *tmed) {
    double t0 = bench_now();
    long calls = 0;
    while (bench_now() - t0 < 0.1) {
        run_seq(s);
        calls++;
    }
    double per = (bench_now() - t0) / (double)calls;
    long inner = (long)(2e-3 / per) + 1;
    double *v = malloc(sizeof(double) * (size_t)samples);
    if (!v) exit(1);
    for (int i = 0; i < samples; i++) {
        double a = bench_now();
        for (long j = 0; j < inner; j++) run_seq(s);
        v[i] = (bench_now() - a) / (double)inner;
    }
    qsort(v, (size_t)samples, sizeof(double), bench_cmp_double);
    *tmin = v[0];
    *tmed = v[samples / 2];
    free(v);
}

static void alloc_all(gemm *g, int n, unsigned *seed) {
    for (int i = 0; i < n; i++) {
        g[i].A = fbuf((size_t)g[i].M * (size_t)g[i].K, seed);
        g[i].B = fbuf((size_t)g[i].K * (size_t)g[i].N, seed);
        g[i].C = fbuf((size_t)g[i].M * (size_t)g[i].N, seed);
    }
}

static void free_all(gemm *g, int n) {
    for (int i = 0; i < n; i++) {
        free(g[i].A);
        free(g[i].B);
        free(g[i].C);
    }
}

int main(int argc, char **argv) {
    int threads = 0, samples = 31, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else {
            fprintf(stderr, "usage: bench_gemm_floor [--threads N] [--samples N] [--json]\n");
            return 2;
        }
    }
    if (samples < 1) samples = 1;
    if (threads > 0) openblas_set_num_threads(threads);

    const int B = 128, BI = 10000;
    gemm step[] = {
        {"fwd L1", 0, 0, B, 128, 784, 0, 0, 0, 0}, {"fwd L2", 0, 0, B, 64, 128, 0, 0, 0, 0},
        {"fwd L3", 0, 0, B, 10, 64, 0, 0, 0, 0},   {"dW L3", 1, 0, 64, 10, B, 0, 0, 0, 0},
        {"dX L3", 0, 1, B, 64, 10, 0, 0, 0, 0},    {"dW L2", 1, 0, 128, 64, B, 0, 0, 0, 0},
        {"dX L2", 0, 1, B, 128, 64, 0, 0, 0, 0},   {"dW L1", 1, 0, 784, 128, B, 0, 0, 0, 0},
    };
    gemm infer[] = {
        {"b10000 L1", 0, 0, BI, 128, 784, 0, 0, 0, 0},
        {"b10000 L2", 0, 0, BI, 64, 128, 0, 0, 0, 0},
        {"b10000 L3", 0, 0, BI, 10, 64, 0, 0, 0, 0},
    };
    gemm b1[] = {
        {"b1 L1 sgemv", 0, 0, 1, 128, 784, 1, 0, 0, 0},
        {"b1 L2 sgemv", 0, 0, 1, 64, 128, 1, 0, 0, 0},
        {"b1 L3 sgemv", 0, 0, 1, 10, 64, 1, 0, 0, 0},
    };
    const int ns = (int)(sizeof step / sizeof step[0]), ni = (int)(sizeof infer / sizeof infer[0]),
              nb = (int)(sizeof b1 / sizeof b1[0]);
    unsigned seed = 12345;
    alloc_all(step, ns, &seed);
    alloc_all(infer, ni, &seed);
    alloc_all(b1, nb, &seed);

    double one_min[8], one_med[8], step_flops = 0;
    for (int i = 0; i < ns; i++) {
        seq s1 = {&step[i], 1};
        timeit(&s1, samples, &one_min[i], &one_med[i]);
        step_flops += flops(&step[i]);
    }
    double smin, smed, imin, imed, bmin, bmed;
    seq s = {step, ns}, si = {infer, ni}, sb = {b1, nb};
    timeit(&s, samples, &smin, &smed);
    timeit(&si, samples < 11 ? samples : 11, &imin, &imed);
    timeit(&sb, samples, &bmin, &bmed);

    const char *cfg = openblas_get_config(), *core = openblas_get_corename();
    int nt = openblas_get_num_threads();
    if (json) {
        printf("{\"openblas_config\": \"%s\", \"openblas_core\": \"%s\", \"threads\": %d, ", cfg,
               core, nt);
        printf("\"step_us_min\": %.3f, \"step_us_median\": %.3f, \"step_mflop\": %.3f, ",
               smin * 1e6, smed * 1e6, step_flops / 1e6);
        printf("\"epoch_s_floor\": %.6f, ", smed * STEPS_PER_EPOCH);
        printf("\"gemms\": [");
        for (int i = 0; i < ns; i++)
            printf("%s{\"name\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"us_min\": %.3f, "
                   "\"us_median\": %.3f}",
                   i ? ", " : "", step[i].name, step[i].M, step[i].N, step[i].K, one_min[i] * 1e6,
                   one_med[i] * 1e6);
        printf("], \"b10000_sps_floor\": %.1f, \"b1_us_floor\": %.3f}\n", BI / imed, bmed * 1e6);
    } else {
        printf("OpenBLAS %s, core %s, %d thread(s)\n", cfg, core, nt);
        printf("%-10s %5s %5s %5s %9s %9s %8s\n", "gemm", "M", "N", "K", "us(min)", "us(med)",
               "GF/s");
        for (int i = 0; i < ns; i++)
            printf("%-10s %5d %5d %5d %9.2f %9.2f %8.1f\n", step[i].name, step[i].M, step[i].N,
                   step[i].K, one_min[i] * 1e6, one_med[i] * 1e6,
                   flops(&step[i]) / one_med[i] / 1e9);
        printf("train step, 8 GEMMs (%.1f MFLOP): min %.1f us, median %.1f us -> epoch floor %.1f "
               "ms\n",
               step_flops / 1e6, smin * 1e6, smed * 1e6, smed * STEPS_PER_EPOCH * 1e3);
        printf("forward at batch 10000: median %.2f ms -> %.0f samples/s\n", imed * 1e3, BI / imed);
        printf("forward at batch 1 (sgemv x3): median %.2f us\n", bmed * 1e6);
    }
    free_all(step, ns);
    free_all(infer, ni);
    free_all(b1, nb);
    return 0;
}

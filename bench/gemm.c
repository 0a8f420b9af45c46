/*
 * gemm.c — achieved GFLOP/s of each GEMM of the seed step (784-128-64-10,
 * batch 128), through Kiln's JIT with each GEMM backend, beside the
 * measured FMA peak of one core.
 *
 *   bench_gemm [--samples N] [--batch N]
 *
 * Each GEMM is one Kiln function holding one matmul (the shapes of
 * bench_gemm_floor.c: forward Y = X.W, weight gradient dW = X^T.dY, input
 * gradient dX = dY.W^T; and, not counted in the step, the forward GEMMs
 * with transposed B as an MLP exported by PyTorch has them), compiled three ways: --gemm openblas, --gemm kiln
 * at the width Kiln picks for this host, and kiln forced to 8 lanes
 * (AVX2, the reference machine's width). Timing as bench_gemm_floor:
 * warm-up, then samples of back-to-back calls lasting >= 2 ms; the median.
 * The peak: 12 independent FMA chains of 8 (and 16) lanes, the same way.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_jit.h"
#include "bench_util.h"

/* Median seconds per call of fn(arg) over `samples` samples. */
static double timeit(void (*fn)(void *), void *arg, int samples) {
    double t0 = bench_now();
    long calls = 0;
    while (bench_now() - t0 < 0.05) {
        fn(arg);
        calls++;
    }
    double per = (bench_now() - t0) / (double)calls;
    long inner = (long)(2e-3 / per) + 1;
    double v[101];
    if (samples > 101) samples = 101;
    for (int i = 0; i < samples; i++) {
        double a = bench_now();
        for (long j = 0; j < inner; j++) fn(arg);
        v[i] = (bench_now() - a) / (double)inner;
    }
    qsort(v, (size_t)samples, sizeof(double), bench_cmp_double);
    return v[samples / 2];
}

/* ------------------------------------------------------------ FMA peak */

static volatile float g_sink;

__attribute__((target("avx2,fma"))) static void peak8(void *arg) {
    long n = *(long *)arg;
    __m256 a[12], x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    g_sink = _mm256_cvtss_f32(s);
}

__attribute__((target("avx512f"))) static void peak16(void *arg) {
    long n = *(long *)arg;
    __m512 a[12], x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    g_sink = _mm512_reduce_add_ps(s);
}

/* ---------------------------------------------------------- the GEMMs */

typedef struct shape {
    const char *name;
    int ta, tb;
    int M, N, K; /* -1: the batch */
} shape;

static const shape g_shapes[] = {
    {"fwd 784x128", 0, 0, -1, 128, 784}, {"fwd 128x64", 0, 0, -1, 64, 128},
    {"fwd 64x10", 0, 0, -1, 10, 64},     {"dW 784x128", 1, 0, 784, 128, -1},
    {"dW 128x64", 1, 0, 128, 64, -1},    {"dW 64x10", 1, 0, 64, 10, -1},
    {"dX 64->128", 0, 1, -1, 128, 64},   {"dX 10->64", 0, 1, -1, 64, 10},
    /* Not of the step: the forward GEMMs of the same MLP exported by
     * PyTorch (Linear weights [out, in], so transposed B). */
    {"fwdT 784x128", 0, 1, -1, 128, 784}, {"fwdT 128x64", 0, 1, -1, 64, 128},
    {"fwdT 64x10", 0, 1, -1, 10, 64},
};
enum { N_SHAPES = sizeof g_shapes / sizeof g_shapes[0], N_STEP = 8 };

static void dim(char *s, size_t n, int d) {
    if (d < 0)
        snprintf(s, n, "?");
    else
        snprintf(s, n, "%d", d);
}

/* The module: function f<i> is shape i's matmul. */
static char *module_text(void) {
    static char buf[8192];
    size_t len = (size_t)snprintf(buf, sizeof buf, "module @gemm\n");
    for (int i = 0; i < N_SHAPES; i++) {
        const shape *s = &g_shapes[i];
        char m[16], n[16], k[16];
        dim(m, sizeof m, s->M);
        dim(n, sizeof n, s->N);
        dim(k, sizeof k, s->K);
        char a[64], b[64];
        snprintf(a, sizeof a, s->ta ? "f32[%s,%s]" : "f32[%s,%s]", s->ta ? k : m, s->ta ? m : k);
        snprintf(b, sizeof b, "f32[%s,%s]", s->tb ? n : k, s->tb ? k : n);
        len += (size_t)snprintf(buf + len, sizeof buf - len,
                                "func @f%d(%%a : %s, %%b : %s) -> f32[%s,%s] {\n"
                                "  %%0 = matmul(%%a, %%b) {transpose_a=%s, transpose_b=%s} : "
                                "f32[%s,%s]\n  return %%0\n}\n",
                                i, a, b, m, n, s->ta ? "true" : "false", s->tb ? "true" : "false",
                                m, n);
    }
    return buf;
}

/* Seconds per call of each shape compiled with `o`. */
static int measure(const cg_options *o, int64_t batch, int samples, double *sec, double *ms) {
    kiln_module *m;
    cg_program *p;
    /* CPU time of the compile (the machine may be shared). */
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    if (bench_jit_compile("bench_gemm", module_text(), "plan-memory", o, &m, &p)) return 1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    *ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-6;
    for (int i = 0; i < N_SHAPES; i++) {
        const shape *s = &g_shapes[i];
        int64_t M = s->M < 0 ? batch : s->M, N = s->N, K = s->K < 0 ? batch : s->K;
        char name[8];
        snprintf(name, sizeof name, "f%d", i);
        bench_jit_run r = bench_jit_entry(p, name, batch);
        r.args[0] = bench_fbuf((size_t)(M * K));
        r.args[1] = bench_fbuf((size_t)(K * N));
        r.res[0] = bench_fbuf((size_t)(M * N));
        sec[i] = timeit(bench_jit_call, &r, samples);
        free(r.args[0]);
        free(r.args[1]);
        free(r.res[0]);
        free(r.ws);
    }
    cg_program_dispose(p);
    kiln_module_dispose(m);
    return 0;
}

int main(int argc, char **argv) {
    int samples = 21;
    int64_t batch = 128;
    if (bench_jit_args(argc, argv, "bench_gemm", &samples, &batch)) return 2;
    long iters = 100000;
    __builtin_cpu_init();
    double p8 = 2.0 * 8 * 12 * (double)iters / timeit(peak8, &iters, samples) * 1e-9;
    double p16 = __builtin_cpu_supports("avx512f")
                     ? 2.0 * 16 * 12 * (double)iters / timeit(peak16, &iters, samples) * 1e-9
                     : 0;
    /* One thread for OpenBLAS, as for Kiln's kernels. */
    openblas_set_num_threads(1);
    cg_options ob = {.gemm = KILN_GEMM_OPENBLAS, .no_cache = true};
    cg_options kn = {.gemm = KILN_GEMM_KILN, .no_cache = true};
    cg_options k8 = {.gemm = KILN_GEMM_KILN, .gemm_width = 8, .no_cache = true};
    double t_ob[N_SHAPES], t_kn[N_SHAPES], t_k8[N_SHAPES], ms[3];
    if (measure(&ob, batch, samples, t_ob, &ms[0]) || measure(&kn, batch, samples, t_kn, &ms[1]) ||
        measure(&k8, batch, samples, t_k8, &ms[2]))
        return 1;
    printf("FMA peak, 1 core: %.1f GFLOP/s (8 lanes)", p8);
    if (p16 > 0) printf(", %.1f GFLOP/s (16 lanes)", p16);
    printf("\nbatch %lld, GFLOP/s (%% of the 8-lane peak), median of %d samples\n",
           (long long)batch, samples);
    printf("%-12s %5s %5s %5s | %15s | %15s | %15s | %s\n", "gemm", "M", "N", "K", "openblas",
           "kiln (auto)", "kiln 8-wide", "us per call (same order)");
    double sum[3] = {0, 0, 0};
    for (int i = 0; i < N_SHAPES; i++) {
        const shape *s = &g_shapes[i];
        int64_t M = s->M < 0 ? batch : s->M, N = s->N, K = s->K < 0 ? batch : s->K;
        double fl = 2.0 * (double)(M * N * K) * 1e-9;
        double t[3] = {t_ob[i], t_kn[i], t_k8[i]};
        printf("%-12s %5lld %5lld %5lld", s->name, (long long)M, (long long)N, (long long)K);
        for (int b = 0; b < 3; b++) {
            printf(" | %6.1f (%4.0f%%)", fl / t[b], 100 * fl / t[b] / p8);
            if (i < N_STEP) sum[b] += t[b];
        }
        printf(" | %7.2f %7.2f %7.2f\n", t[0] * 1e6, t[1] * 1e6, t[2] * 1e6);
    }
    printf("%-30s | %12.1f us | %12.1f us | %12.1f us\n", "the 8 GEMMs of a step", sum[0] * 1e6,
           sum[1] * 1e6, sum[2] * 1e6);
    printf("%-30s | %12.0f ms | %12.0f ms | %12.0f ms\n", "JIT compile of the 8 (CPU)", ms[0], ms[1],
           ms[2]);
    return 0;
}

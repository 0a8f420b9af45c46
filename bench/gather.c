/*
 * gather.c — the batch gather of the training loop alone (the first
 * segment of bench_kiln_profile's step), and what it could cost.
 *
 *   bench_gather [--data DIR] [--batch N] [--epochs N]
 *
 * Times, in µs per batch of 128 over whole shuffled epochs of
 * Fashion-MNIST (uint8 images, 784 bytes each, 47 MB: more than L2, less
 * than L3):
 *   runtime      rt_batch_gather as kiln_model_fit calls it (uint8 -> f32
 *                / 255, one-hot labels), shuffled rows
 *   runtime-seq  the same rows in file order (rt_batch_slice): no cache miss
 *   touch        only reading the shuffled rows (one load per 64 bytes): the
 *                memory part
 *   exact-fma    shuffled, u * (1/255) with one FMA correction (bit-identical
 *                to u / 255 for all 256 values, checked here), AVX2, rows
 *                prefetched 4 ahead
 * Uses the runtime's internal header (like bench/jit_compile.c), not only
 * the public API.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/data.h"
#include "bench_util.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

/* Bit-identical to (float)s[i] / 255.0f: q = u*r, then one Newton step on
 * the residual u - 255q, exact in an FMA. */
__attribute__((target("avx2,fma"))) static void scale_row_fma(const uint8_t *restrict s,
                                                              float *restrict x, int64_t n) {
    const __m256 r = _mm256_set1_ps(1.0f / 255.0f), k = _mm256_set1_ps(255.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(s + i));
        __m256 u = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
        __m256 q = _mm256_mul_ps(u, r);
        __m256 e = _mm256_fnmadd_ps(q, k, u);
        _mm256_storeu_ps(x + i, _mm256_fmadd_ps(e, r, q));
    }
    for (; i < n; i++) x[i] = (float)s[i] / 255.0f;
}

static void gather_fma(const rt_dataset *ds, const int32_t *idx, int n, float *x, float *y,
                       int classes) {
    int64_t w = ds->sample_size;
    memset(y, 0, sizeof(float) * (size_t)n * (size_t)classes);
    for (int i = 0; i < n; i++) {
        if (i + 4 < n)
            for (int64_t o = 0; o < w; o += 64) __builtin_prefetch(ds->u8 + idx[i + 4] * w + o);
        scale_row_fma(ds->u8 + idx[i] * w, x + i * w, w);
        y[i * classes + ds->labels[idx[i]]] = 1.0f;
    }
}

static volatile uint32_t sink;

static void touch(const rt_dataset *ds, const int32_t *idx, int n) {
    int64_t w = ds->sample_size;
    uint32_t acc = 0;
    for (int i = 0; i < n; i++)
        for (int64_t o = 0; o < w; o += 64) acc += ds->u8[idx[i] * w + o];
    sink = acc;
}

__attribute__((target("avx2,fma"))) static int check_fma(void) {
    uint8_t s[256];
    float a[256];
    for (int u = 0; u < 256; u++) s[u] = (uint8_t)u;
    scale_row_fma(s, a, 256);
    for (int u = 0; u < 256; u++)
        if (a[u] != (float)u / 255.0f) return 0;
    return 1;
}

enum { RUNTIME, RUNTIME_SEQ, TOUCH, EXACT_FMA, N_WAYS };
static const char *names[N_WAYS] = {"runtime", "runtime-seq", "touch", "exact-fma"};

int main(int argc, char **argv) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    int batch = 128, epochs = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--epochs"))
            epochs = atoi(argv[i + 1]);
    }
    if (batch < 1 || epochs < 1) return 2;
    kiln_diag *d = kiln_diag_create();
    rt_dataset *ds = NULL;
    if (rt_dataset_load_dir(dir, RT_SPLIT_TRAIN, &ds, d) || ds->is_float || !ds->labels) {
        fprintf(stderr, "bench_gather: %s", kiln_diag_message(d));
        return 1;
    }
    const int classes = 10;
    float *x = aligned_alloc(64, sizeof(float) * (size_t)batch * (size_t)ds->sample_size);
    float *y = aligned_alloc(64, sizeof(float) * (size_t)batch * classes);
    rt_shuffle sh;
    if (!x || !y || rt_shuffle_init(&sh, ds->n, 1, d)) return 1;
    int64_t steps = ds->n / batch; /* full batches only */
    double *t[N_WAYS];
    for (int k = 0; k < N_WAYS; k++) t[k] = calloc((size_t)(steps * epochs), sizeof(double));
    int fma_ok = check_fma();
    long nt = 0;
    for (int e = 0; e < epochs; e++) {
        rt_shuffle_next(&sh);
        for (int64_t s = 0; s < steps; s++, nt++) {
            const int32_t *idx = sh.perm + s * batch;
            /* a different shuffled batch for each way, so none finds another's rows in cache */
            const int32_t *idx2 = sh.perm + ((s + steps / 3) % steps) * batch;
            const int32_t *idx3 = sh.perm + ((s + 2 * steps / 3) % steps) * batch;
            double a = now_us();
            rt_batch_gather(ds, idx, batch, x, y, classes, NULL, d);
            double b = now_us();
            rt_batch_slice(ds, s * batch, batch, x, y, classes, NULL, d);
            double c = now_us();
            touch(ds, idx2, batch);
            double e2 = now_us();
            gather_fma(ds, idx3, batch, x, y, classes);
            double f = now_us();
            t[RUNTIME][nt] = b - a;
            t[RUNTIME_SEQ][nt] = c - b;
            t[TOUCH][nt] = e2 - c;
            t[EXACT_FMA][nt] = f - e2;
        }
    }
    printf("{\"batch\": %d, \"batches\": %ld, \"exact_fma_bit_identical\": %s", batch, nt,
           fma_ok ? "true" : "false");
    for (int k = 0; k < N_WAYS; k++) {
        qsort(t[k], (size_t)nt, sizeof(double), bench_cmp_double);
        printf(", \"%s_us\": %.3f", names[k], t[k][nt / 2]);
    }
    printf("}\n");
    for (int k = 0; k < N_WAYS; k++) free(t[k]);
    rt_shuffle_free(&sh);
    rt_dataset_free(ds);
    free(x);
    free(y);
    kiln_diag_dispose(d);
    return 0;
}

/*
 * aot_bench.c — batch-1 latency and batch-10,000 throughput through the
 * shared object `kiln compile` writes (issue 6's API, codegen/aot.h):
 *   P_create(max_batch, &m); P_infer(m, batch, x, out); P_destroy(m)
 * for prefix P (default mnist_mlp, the model's name).
 *
 * Not built by CMake (it needs the generated header): bench/run.sh compiles
 * it after `kiln compile` succeeds:
 *   cc -O2 -I DIR -DKILN_AOT_HEADER='"mnist_mlp.h"' bench/aot/aot_bench.c \
 *      -L DIR -lmnist_mlp -lz
 *   ./a.out t10k-images-idx3-ubyte.gz [calls]
 * Prints "RESULT {json}" last.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#ifndef KILN_AOT_HEADER
#define KILN_AOT_HEADER "mnist_mlp.h"
#endif
#include KILN_AOT_HEADER
#include "../bench_util.h"

#ifndef KILN_AOT_PREFIX
#define KILN_AOT_PREFIX mnist_mlp
#endif
#define AOT_CAT2(p, n) p##_##n
#define AOT_CAT(p, n)  AOT_CAT2(p, n)
#define P(n)           AOT_CAT(KILN_AOT_PREFIX, n)

enum { IN = 784, OUT = 10, BIG = 10000 };

/* Reads up to `max` images of an IDX file (gzipped or not) scaled to [0, 1]. */
static long load_images(const char *path, float *x, long max) {
    gzFile f = gzopen(path, "rb");
    if (!f) return -1;
    unsigned char h[16];
    if (gzread(f, h, 16) != 16 || h[2] != 0x08 || h[3] != 3) {
        gzclose(f);
        return -1;
    }
    long n = (long)h[4] << 24 | (long)h[5] << 16 | (long)h[6] << 8 | h[7];
    if (n > max) n = max;
    unsigned char row[IN];
    for (long i = 0; i < n; i++) {
        if (gzread(f, row, IN) != IN) {
            gzclose(f);
            return -1;
        }
        for (int j = 0; j < IN; j++) x[i * IN + j] = (float)row[j] / 255.0f;
    }
    gzclose(f);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: aot_bench t10k-images-idx3-ubyte.gz [calls]\n");
        return 2;
    }
    int calls = argc > 2 ? atoi(argv[2]) : 10000;
    if (calls < 1) calls = 1;
    float *x = malloc(sizeof(float) * BIG * IN), *out = malloc(sizeof(float) * BIG * OUT);
    double *lat = malloc(sizeof(double) * (size_t)calls);
    if (!x || !out || !lat) return 1;
    long n = load_images(argv[1], x, BIG);
    if (n < 1) {
        fprintf(stderr, "aot_bench: cannot read %s\n", argv[1]);
        return 1;
    }
    P(model) *m = NULL;
    int st = P(create)(BIG, &m);
    if (st) {
        fprintf(stderr, "aot_bench: create: %s\n", P(status_string)(st));
        return 1;
    }
    long n_lat = n < 1000 ? n : 1000;
    for (int i = 0; i < 300; i++) P(infer)(m, 1, x + (i % n_lat) * IN, out);
    for (int i = 0; i < calls; i++) {
        const float *xi = x + (i % n_lat) * IN;
        double a = bench_now();
        st |= P(infer)(m, 1, xi, out);
        lat[i] = bench_now() - a;
    }
    qsort(lat, (size_t)calls, sizeof *lat, bench_cmp_double);
    double rates[15];
    for (int k = -2; k < 15; k++) {
        double t0 = bench_now();
        st |= P(infer)(m, n, x, out);
        if (k >= 0) rates[k] = (double)n / (bench_now() - t0);
    }
    qsort(rates, 15, sizeof *rates, bench_cmp_double);
    if (st) {
        fprintf(stderr, "aot_bench: infer failed: %s\n", P(last_error)(m));
        return 1;
    }
    printf("AOT batch 1: median %.2f us (min %.2f, p90 %.2f); batch %ld: %.0f samples/s\n",
           lat[calls / 2] * 1e6, lat[0] * 1e6, lat[(int)(calls * 0.9)] * 1e6, n, rates[7]);
    printf("RESULT {\"b1\": {\"median_us\": %.4f, \"min_us\": %.4f, \"p90_us\": %.4f}, "
           "\"b10000_sps\": {\"median\": %.1f, \"max\": %.1f}}\n",
           lat[calls / 2] * 1e6, lat[0] * 1e6, lat[(int)(calls * 0.9)] * 1e6, rates[7], rates[14]);
    P(destroy)(m);
    free(x);
    free(out);
    free(lat);
    return 0;
}

/*
 * allreduce.c — the data-parallel allreduce alone: the time of one
 * allreduce_mean (the shim's reduce to rank 0 + broadcast over
 * MPI_COMM_WORLD) of a gradient buffer, as the data-parallel pass issues
 * it (one call per tensor).
 *
 *   mpirun -np 2 bench_allreduce [--floats N] [--iters N] [--split K]
 *
 * --floats defaults to 109386, mnist_mlp's parameters (437.5 KB of f32
 * gradients); --split K issues the buffer as K calls (the model's 6
 * tensors: K=6). Rank 0 prints the median of --iters timings (µs), each
 * after a barrier. Without MPI it says so and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ir/collective.h"
#include "kiln/kiln.h"

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    long floats = 109386, iters = 200, split = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--floats")) floats = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--iters")) iters = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--split")) split = atol(argv[i + 1]);
    }
    if (!kiln_have_mpi()) {
        printf("bench_allreduce: Kiln was built without MPI\n");
        return 0;
    }
    kiln_diag *d = kiln_diag_create();
    if (kiln_distributed_init(d)) {
        fprintf(stderr, "%s", kiln_diag_message(d));
        return 1;
    }
    float *buf = calloc((size_t)floats, sizeof *buf);
    double *t = calloc((size_t)iters, sizeof *t);
    if (!buf || !t || floats < split || split < 1 || iters < 1) return 1;
    for (long i = 0; i < floats; i++) buf[i] = (float)(i % 97) * 1e-3f;
    float probe = 1; /* a 1-float allreduce as the barrier */
    for (long it = -10; it < iters; it++) { /* 10 warm-up rounds */
        kiln_allreduce_mean_f32(&probe, &probe, 1, 1);
        double t0 = now_us();
        for (long k = 0; k < split; k++) {
            long lo = floats * k / split, hi = floats * (k + 1) / split;
            if (kiln_allreduce_mean_f32(buf + lo, buf + lo, hi - lo, 1)) return 1;
        }
        if (it >= 0) t[it] = now_us() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp);
    if (kiln_distributed_rank() == 0)
        printf("allreduce of %ld floats (%.1f KB) in %ld call(s) over %d ranks: median %.0f us, "
               "min %.0f us (%ld runs)\n",
               floats, floats * 4 / 1e3, split, kiln_distributed_size(), t[iters / 2], t[0], iters);
    free(buf);
    free(t);
    kiln_diag_dispose(d);
    kiln_distributed_finalize();
    return 0;
}

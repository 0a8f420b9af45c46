/*
 * allreduce.c — the data-parallel allreduce alone: the time of one
 * allreduce_mean (the shim's reduce to rank 0 + broadcast over
 * MPI_COMM_WORLD) of a gradient buffer, as the data-parallel pass issues
 * it (one call per tensor).
 *
 *   mpirun -np 2 bench_allreduce [--floats N] [--iters N] [--split K]
 *                                [--mode shim|raw|scatter]
 *   bench_allreduce --mode local [--floats N] [--iters N] [--split K]
 *
 * --floats defaults to 109386, mnist_mlp's parameters (437.5 KB of f32
 * gradients); --split K issues the buffer as K calls (the model's 6
 * tensors: K=6). --mode: shim (default) the data-parallel shim as the
 * generated code calls it (staged into a bucket, scaled by the rank's
 * share, MPI_Allreduce, copied out); raw: MPI_Allreduce in place on the
 * buffer alone (what the shim's copies cost is the difference); scatter:
 * what a sharded optimizer (ZeRO stage 1) would make instead, the scaled
 * copy, MPI_Reduce_scatter (each rank gets the sums of its 1/N of the
 * buffer) and MPI_Allgatherv in place (every rank gets the updated
 * shards), per call. --mode local (one process, no mpirun): the shim's
 * own work alone, its copies and scaling, with a collective that does
 * nothing over "2 ranks" (weight 0.5), the K calls making one bucket as
 * the data-parallel pass makes them; it prints CPU µs per bucket. Rank 0
 * prints the median of --iters timings (µs), each
 * after a barrier. Without MPI it says so and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ir/collective.h"
#include "kiln/kiln.h"
#ifdef KILN_HAVE_MPI
#include <mpi.h>
#endif

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One call of --mode on buf[0..n): 0 or nonzero. */
static int one_call(const char *mode, float *buf, float *scratch, long n) {
    /* as generated code calls it: the result in a buffer of its own */
    if (!strcmp(mode, "shim")) return kiln_allreduce_mean_f32(buf, scratch, n, 1);
#ifdef KILN_HAVE_MPI
    int size = kiln_distributed_size(), rank = kiln_distributed_rank();
    if (!strcmp(mode, "raw"))
        return MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    int counts[64], displs[64];
    if (size > 64) return 1;
    for (int r = 0; r < size; r++) {
        displs[r] = (int)(n * r / size);
        counts[r] = (int)(n * (r + 1) / size) - displs[r];
    }
    float w = 1.0f / (float)size; /* the rank's share, as the shim scales */
    for (long i = 0; i < n; i++) scratch[i] = buf[i] * w;
    int rc = MPI_Reduce_scatter(scratch, buf + displs[rank], counts, MPI_FLOAT, MPI_SUM,
                                MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, counts, displs, MPI_FLOAT,
                            MPI_COMM_WORLD);
    return rc;
#else
    return 1;
#endif
}

static int nop_start(void *ctx, float *buf, int64_t n, void **req) {
    (void)ctx, (void)n;
    *req = buf;
    return 0;
}
static int nop_wait(void *ctx, void *req) {
    (void)ctx, (void)req;
    return 0;
}

static double cpu_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* --mode local: CPU µs per bucket of the shim's copies and scaling. */
static int local(long floats, long iters, long split) {
    float *in = calloc((size_t)floats, sizeof *in), *out = calloc((size_t)floats, sizeof *out);
    if (!in || !out || floats < split || split < 1 || iters < 1) return 1;
    for (long i = 0; i < floats; i++) in[i] = (float)(i % 97) * 1e-3f;
    ir_collective nop = {NULL, 0, 2, nop_start, nop_wait, NULL};
    ir_collective_set(&nop);
    ir_collective_set_weight(0.5);
    double t0 = cpu_us();
    for (long it = 0; it < iters; it++)
        for (long k = 0; k < split; k++) {
            long lo = floats * k / split, hi = floats * (k + 1) / split;
            if (kiln_allreduce_mean_f32(in + lo, out + lo, hi - lo, k == split - 1)) return 1;
        }
    printf("the shim's own work on %ld floats (%.1f KB) in %ld call(s), one bucket: %.1f us CPU "
           "(%ld runs)\n",
           floats, floats * 4 / 1e3, split, (cpu_us() - t0) / (double)iters, iters);
    ir_collective_set(NULL);
    free(in);
    free(out);
    return 0;
}

int main(int argc, char **argv) {
    long floats = 109386, iters = 200, split = 1;
    const char *mode = "shim";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--floats")) floats = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--iters")) iters = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--split")) split = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--mode")) mode = argv[i + 1];
    }
    if (!strcmp(mode, "local")) return local(floats, iters, split);
    if (strcmp(mode, "shim") && strcmp(mode, "raw") && strcmp(mode, "scatter")) {
        fprintf(stderr, "bench_allreduce: --mode is shim, raw, scatter or local\n");
        return 2;
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
    float *scratch = calloc((size_t)floats, sizeof *scratch);
    double *t = calloc((size_t)iters, sizeof *t);
    if (!buf || !scratch || !t || floats < split || split < 1 || iters < 1) return 1;
    for (long i = 0; i < floats; i++) buf[i] = (float)(i % 97) * 1e-3f;
    /* Each rank's share of the batch, which the shim scales by (even). */
    ir_collective_set_weight(1.0 / kiln_distributed_size());
    float probe = 1; /* a 1-float allreduce as the barrier */
    for (long it = -10; it < iters; it++) { /* 10 warm-up rounds */
        kiln_allreduce_mean_f32(&probe, &probe, 1, 1);
        double t0 = now_us();
        for (long k = 0; k < split; k++) {
            long lo = floats * k / split, hi = floats * (k + 1) / split;
            if (one_call(mode, buf + lo, scratch, hi - lo)) return 1;
        }
        if (it >= 0) t[it] = now_us() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp);
    if (kiln_distributed_rank() == 0)
        printf("%s of %ld floats (%.1f KB) in %ld call(s) over %d ranks: median %.0f us, "
               "min %.0f us (%ld runs)\n",
               !strcmp(mode, "shim")  ? "allreduce"
               : !strcmp(mode, "raw") ? "MPI_Allreduce in place"
                                      : "reduce-scatter + allgather",
               floats, floats * 4 / 1e3, split, kiln_distributed_size(), t[iters / 2], t[0], iters);
    free(buf);
    free(scratch);
    free(t);
    kiln_diag_dispose(d);
    kiln_distributed_finalize();
    return 0;
}

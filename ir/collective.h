/*
 * collective.h — the runtime shim between the IR and a communicator.
 *
 * ir/ links no MPI: the ops allreduce_mean and allreduce_wait (ops.def)
 * and their lowerings call kiln_allreduce_mean_f32 / kiln_allreduce_wait_f32,
 * which dispatch through the process-wide table installed here
 * (runtime/dist.c installs one over MPI_COMM_WORLD). With no table
 * installed (one process) both are the identity.
 *
 * The mean is weighted by shard size: every rank sets `weight` to its rows
 * of the global batch over the global batch, and the result is
 * sum_r weight_r x_r. With even shards that is the plain mean; with uneven
 * ones it is the mean a single process would compute over the whole batch
 * (each rank's loss and gradients are means over its own rows).
 *
 * Values go to the collective in buckets: a bucket collects the inputs of
 * allreduce_means with flush=0 and is started by the next one with
 * flush != 0. Started without waiting (KILN_ALLREDUCE_START), a bucket is
 * reduced while the caller computes on, and its results are written when
 * kiln_allreduce_wait_f32 is called on any of them.
 */
#ifndef KILN_IR_COLLECTIVE_H
#define KILN_IR_COLLECTIVE_H

#include <stdint.h>

typedef struct ir_collective {
    void *ctx;
    int rank, size;
    /* Starts summing buf[0..n) over the ranks, in place, in a fixed order
     * (the same bits on every rank); *req names the sum for wait. 0, or
     * nonzero after a failure (the implementation keeps the message:
     * last_error). */
    int (*start)(void *ctx, float *buf, int64_t n, void **req);
    /* Waits until the started sum req is in buf. 0 or nonzero. */
    int (*wait)(void *ctx, void *req);
    const char *(*last_error)(void *ctx);
} ir_collective;

/* Installs (NULL: removes) the table; the caller keeps it alive. */
void ir_collective_set(const ir_collective *c);
const ir_collective *ir_collective_get(void);
/* This rank's share of the global batch (1 in one process). */
void ir_collective_set_weight(double w);
/* This rank's first row in the global batch (0 in one process), which
 * sharded dropout (ops.def) counts its elements from. */
void ir_collective_set_first_row(int64_t row);
int64_t kiln_collective_first_row(void);
/* Nonzero once a collective failed (sticky until ir_collective_clear);
 * the message names what failed. */
int ir_collective_failed(const char **message);
void ir_collective_clear(void);

/* kiln_allreduce_mean_f32's mode: join the bucket, or end it and start its
 * collective, then wait for it (REDUCE) or not (START). */
enum { KILN_ALLREDUCE_JOIN = 0, KILN_ALLREDUCE_REDUCE = 1, KILN_ALLREDUCE_START = 2 };

/* out[0..n) = the weighted mean of in[0..n) over the ranks (in may be
 * out). Called by the interpreter and by generated code; returns 0 or
 * nonzero after a failure (then this call's out is in's copy, unreduced,
 * and the outs the bucket's earlier JOINs staged are not written). JOIN
 * only stages in, scaled by this rank's weight: out is written when the
 * bucket's collective has ended, by the next REDUCE call, or after a START
 * by the first kiln_allreduce_wait_f32 on any of the bucket's outs. */
int kiln_allreduce_mean_f32(const float *in, float *out, int64_t n, int32_t mode);
/* Waits for the started bucket that holds `in` (an out of
 * kiln_allreduce_mean_f32; nothing to wait for if there is none), writes
 * all of its outs, then copies in to out (in may be out). 0 or nonzero. */
int kiln_allreduce_wait_f32(const float *in, float *out, int64_t n);
/* Waits for every bucket still in flight and writes its outs (the runtime
 * calls it after each step, so a bucket that no allreduce_wait waited for,
 * as in hand-written IR, does not stay in flight). 0 or nonzero. */
int ir_collective_drain(void);

#endif

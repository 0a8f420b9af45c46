/*
 * collective.h — the runtime shim between the IR and a communicator.
 *
 * ir/ links no MPI: the op allreduce_mean (ops.def) and its lowering call
 * kiln_allreduce_mean_f32, which dispatches through the process-wide table
 * installed here (runtime/dist.c installs one over MPI_COMM_WORLD). With no
 * table installed (one process) allreduce_mean is the identity.
 *
 * The mean is weighted by shard size: every rank sets `weight` to its rows
 * of the global batch over the global batch, and the result is
 * sum_r weight_r x_r. With even shards that is the plain mean; with uneven
 * ones it is the mean a single process would compute over the whole batch
 * (each rank's loss and gradients are means over its own rows).
 */
#ifndef KILN_IR_COLLECTIVE_H
#define KILN_IR_COLLECTIVE_H

#include <stdint.h>

typedef struct ir_collective {
    void *ctx;
    int rank, size;
    /* Sums buf[0..n) over the ranks, in place, in a fixed order (the same
     * bits on every rank). 0, or nonzero after a failure (the
     * implementation keeps the message: last_error). */
    int (*allreduce_sum)(void *ctx, float *buf, int64_t n);
    const char *(*last_error)(void *ctx);
} ir_collective;

/* Installs (NULL: removes) the table; the caller keeps it alive. */
void ir_collective_set(const ir_collective *c);
const ir_collective *ir_collective_get(void);
/* This rank's share of the global batch (1 in one process). */
void ir_collective_set_weight(double w);
/* Nonzero once a collective failed (sticky until ir_collective_clear);
 * the message names what failed. */
int ir_collective_failed(const char **message);
void ir_collective_clear(void);

/* out[0..n) = the weighted mean of in[0..n) over the ranks (in may be
 * out). Called by the interpreter and by generated code; returns 0 or
 * nonzero after a failure (then out is in's copy, unreduced). With
 * flush == 0 the call only joins the bucket: in is staged, and out is
 * written by the next call with flush != 0, which reduces the whole
 * bucket in one collective. */
int kiln_allreduce_mean_f32(const float *in, float *out, int64_t n, int32_t flush);

#endif

/*
 * data_parallel.c — data-parallel: averages @train_step's loss, metrics and
 * gradients over the ranks of a distributed run, so that the optimizer
 * (the next pass) updates the same weights on every rank.
 *
 * Runs between autodiff and optimizer, when @train_step returns (loss,
 * metrics..., one gradient per trainable parameter). Each of those results
 * gets an allreduce_mean (ops.def; a call into the allreduce shim, ir/
 * collective.h). The results are taken in the order their producers run
 * (the loss, then the gradients as the backward pass makes them, the last
 * layer's first) and cut into buckets: a bucket ends where at least
 * DP_BUCKET_MIN bytes are followed by work worth overlapping (a GEMM, a
 * convolution, another opaque kernel) before the next result, or at
 * DP_BUCKET_MAX bytes, or at the last result. A bucket's allreduce_means go
 * back to back right after its last member's producer, all but the last
 * with flush=false; the last starts the bucket's collective without waiting
 * (wait=false), and the backward pass goes on while it runs. An
 * allreduce_wait per result, at the end (just before the optimizer's
 * updates), takes the reduced values:
 *
 *   %11 = reduce_sum(%10) {axes=[0]} : f32[3]                # d@b
 *   %12 = matmul(%x, %10) {transpose_a=true} : f32[4,3]      # d@w
 *   %13 = allreduce_mean(%2) {flush=false} : f32[]
 *   %14 = allreduce_mean(%11) {flush=false} : f32[3]
 *   %15 = allreduce_mean(%12) {wait=false} : f32[4,3]
 *   %16 = allreduce_wait(%13) : f32[]
 *   %17 = allreduce_wait(%14) : f32[3]
 *   %18 = allreduce_wait(%15) : f32[4,3]
 *   return %16, %18, %17
 *
 * (mnist_mlp's 437 KB of gradients are two buckets: layers 3 and 2, 35 KB,
 * started before layer 1's weight-gradient GEMM; layer 1, 401 KB, at the
 * end; bench/RESULTS.md.) In one process allreduce_mean and allreduce_wait
 * are the identity, so the pipeline "train-distributed" computes what
 * "train" does.
 */
#include "passes/pass.h"

#include <stdlib.h>

/* The smallest bucket that ends before work to overlap (below it, the
 * latency of one more collective would cost more than the overlap gains),
 * and the largest. */
#define DP_BUCKET_MIN ((int64_t)16 << 10)
#define DP_BUCKET_MAX ((int64_t)4 << 20)

typedef struct member {
    int result, pos; /* pos: the producer's index in f->nodes (n_nodes: none) */
} member;

static int by_pos(const void *a, const void *b) {
    const member *x = a, *y = b;
    return x->pos != y->pos ? (x->pos > y->pos) - (x->pos < y->pos) : x->result - y->result;
}

static int position_of(const kiln_func *f, const ir_node *n) {
    for (int i = 0; i < f->n_nodes; i++)
        if (f->nodes[i] == n) return i;
    return f->n_nodes;
}

/* Whether f->nodes (a, b) hold work a collective can overlap. */
static bool work_between(const kiln_func *f, int a, int b) {
    for (int i = a + 1; i < b && i < f->n_nodes; i++) {
        int op = f->nodes[i]->op;
        if (op < IR_FIRST_OP) continue;
        ir_fusion_kind k = ir_op(op)->kind;
        if (k == IR_FK_OUTFUSE || k == IR_FK_OPAQUE) return true;
    }
    return false;
}

/* Members [lo, hi) of mb form a bucket: their reductions go right after the
 * last one's producer; the last starts the collective. */
static void emit_bucket(ir_builder *b, kiln_func *f, const member *mb, int lo, int hi) {
    b->pos = mb[hi - 1].pos >= f->n_nodes ? -1 : mb[hi - 1].pos + 1;
    for (int k = lo; k < hi && !b->status; k++) {
        ir_node *v = f->results[mb[k].result];
        ir_attrs a = ir_attrs_default(IR_OP_allreduce_mean);
        ir_attrs_set_i(&a, "flush", k == hi - 1);
        if (k == hi - 1) ir_attrs_set_i(&a, "wait", false);
        b->loc = v->loc;
        ir_node *red = ir_b_op(b, IR_OP_allreduce_mean, 1, &v, &a);
        if (red) f->results[mb[k].result] = red;
    }
}

kiln_status pass_data_parallel(kiln_module *m, kiln_diag *d) {
    kiln_func *f = kiln_module_func(m, "train_step");
    if (!f)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "data-parallel: the module has no @train_step (run autodiff first)");
    if (ir_module_global(m, "optimizer.iterations"))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "data-parallel: runs before optimizer (@train_step already updates the "
                        "parameters)");
    member *mb = ir_malloc(sizeof *mb * (size_t)(f->n_results + 1));
    int *ends = ir_malloc(sizeof *ends * (size_t)(f->n_results + 1));
    if (!mb || !ends) {
        ir_free(mb);
        ir_free(ends);
        return ir_oom(d);
    }
    int n = 0;
    for (int r = 0; r < f->n_results; r++) {
        ir_node *v = f->results[r];
        if (v->type.dtype != IR_F32) continue;
        if (v->op == IR_OP_allreduce_mean) {
            ir_free(mb);
            ir_free(ends);
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "data-parallel: @train_step's result %d is already reduced", r);
        }
        mb[n++] = (member){r, position_of(f, v)};
    }
    qsort(mb, (size_t)n, sizeof *mb, by_pos);
    /* Buckets from the last, so inserting leaves earlier positions valid. */
    int nb = 0;
    int64_t bytes = 0;
    for (int k = 0; k < n; k++) {
        bytes += ir_type_numel(&f->results[mb[k].result]->type, 1) * 4;
        if (k == n - 1 || bytes >= DP_BUCKET_MAX ||
            (bytes >= DP_BUCKET_MIN && work_between(f, mb[k].pos, mb[k + 1].pos))) {
            ends[nb++] = k + 1;
            bytes = 0;
        }
    }
    ir_builder b;
    ir_builder_init(&b, f, d);
    for (int i = nb - 1; i >= 0 && !b.status; i--)
        emit_bucket(&b, f, mb, i ? ends[i - 1] : 0, ends[i]);
    /* The waits, in the order the buckets started, before the optimizer. */
    b.pos = -1;
    for (int k = 0; k < n && !b.status; k++) {
        ir_node *red = f->results[mb[k].result];
        b.loc = red->loc;
        ir_node *w = ir_b_un(&b, IR_OP_allreduce_wait, red);
        if (w) f->results[mb[k].result] = w;
    }
    ir_free(mb);
    ir_free(ends);
    if (!b.status) ir_func_unplan(f);
    return b.status;
}

/*
 * data_parallel.c — data-parallel: averages @train_step's loss, metrics and
 * gradients over the ranks of a distributed run, so that the optimizer
 * (the next pass) updates the same weights on every rank.
 *
 * Runs between autodiff and optimizer, when @train_step returns (loss,
 * metrics..., one gradient per trainable parameter). Each of those results
 * gets an allreduce_mean (ops.def; a call into the allreduce shim, ir/
 * collective.h) placed right after the node that produces it, so the
 * collectives are issued in the order the backward pass produces the
 * gradients (the last layer's first):
 *
 *   %14 = matmul(%x, %13) {transpose_a=true} : f32[4,3]      # d@w
 *   %15 = allreduce_mean(%14) : f32[4,3]
 *   ...
 *   return %2', %15
 *
 * One call per tensor (no buckets yet: the seed model has 4 gradients).
 * In one process allreduce_mean is the identity, so the pipeline
 * "train-distributed" computes what "train" does.
 */
#include "passes/pass.h"

static int position_of(const kiln_func *f, const ir_node *n) {
    for (int i = 0; i < f->n_nodes; i++)
        if (f->nodes[i] == n) return i;
    return -1;
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
    ir_builder b;
    ir_builder_init(&b, f, d);
    for (int r = 0; r < f->n_results && !b.status; r++) {
        ir_node *v = f->results[r];
        if (v->type.dtype != IR_F32) continue;
        if (v->op == IR_OP_allreduce_mean)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "data-parallel: @train_step's result %d is already reduced", r);
        int pos = position_of(f, v);
        b.pos = pos < 0 ? -1 : pos + 1;
        b.loc = v->loc;
        ir_node *red = ir_b_un(&b, IR_OP_allreduce_mean, v);
        if (red) f->results[r] = red;
    }
    if (!b.status) ir_func_unplan(f);
    return b.status;
}

/*
 * grad_norm.c — gradient rules of the batch normalization and dropout rows
 * of ir/ops.def (declared in grad.h; the table is built in grad_rules.c).
 */
#include "passes/grad.h"

/* dropout is linear in x with a fixed mask: d/dx = the same dropout of dy,
 * its mask recomputed from the same (seed, step, node, element) counters
 * rather than stored. */
kiln_status grad_dropout(ir_builder *b, ir_node *n, ir_node *dy, const bool *need, ir_node **dx) {
    ir_node *in[2] = {dy, n->in[1]};
    dx[0] = ir_b_op(b, IR_OP_dropout, 2, in, &n->attrs);
    return b->status;
}

#define K(v)      ir_b_scalar(b, (v))
#define ADD(x, y) ir_b_bin(b, IR_OP_add, (x), (y))
#define SUB(x, y) ir_b_bin(b, IR_OP_sub, (x), (y))
#define MUL(x, y) ir_b_bin(b, IR_OP_mul, (x), (y))
#define DIV(x, y) ir_b_bin(b, IR_OP_div, (x), (y))

/* Over every axis but the last (the samples of each channel): [C]. */
static ir_node *per_channel(ir_builder *b, int op, ir_node *x) {
    int64_t axes[KILN_MAX_RANK];
    int na = x->type.rank - 1;
    for (int i = 0; i < na; i++) axes[i] = i;
    return ir_b_reduce(b, op, x, na, axes, false);
}
#define MEAN_C(x) per_channel(b, IR_OP_reduce_mean, (x))
#define SUM_C(x)  per_channel(b, IR_OP_reduce_sum, (x))

kiln_status pass_bn_stats(ir_builder *b, ir_node *x, ir_node **mean, ir_node **var) {
    *mean = MEAN_C(x);
    ir_node *xc = SUB(x, *mean);
    *var = MEAN_C(MUL(xc, xc));
    return b->status;
}

/* With xhat = (x - mean) rstd, rstd = 1 / sqrt(var + eps), y = xhat gamma + beta:
 *   dgamma = sum(dy xhat)   dbeta = sum(dy)        (sums over the samples)
 *   training (mean, var of this batch):
 *     dx = rstd (g - mean(g) - xhat mean(g xhat)),  g = dy gamma
 *   moving statistics (constants): dx = dy gamma rstd */
kiln_status grad_batch_norm(ir_builder *b, ir_node *n, ir_node *dy, const bool *need,
                            ir_node **dx) {
    bool training = ir_attr_i(n, "training") != 0;
    ir_node *x = n->in[0], *gamma = n->in[1], *mean = n->in[3], *var = n->in[4];
    if (training && pass_bn_stats(b, x, &mean, &var)) return b->status;
    ir_node *eps = K((float)ir_attr_f(n, "epsilon"));
    ir_node *den = ir_b_un(b, IR_OP_sqrt, ADD(var, eps));
    ir_node *rstd = DIV(K(1), den);
    ir_node *xhat = MUL(SUB(x, mean), rstd);
    if (need[0]) {
        ir_node *g = MUL(dy, gamma);
        if (training) {
            ir_node *t = SUB(g, MEAN_C(g));
            ir_node *u = MUL(xhat, MEAN_C(MUL(g, xhat)));
            dx[0] = MUL(SUB(t, u), rstd);
        } else {
            dx[0] = MUL(g, rstd);
        }
    }
    if (need[1]) dx[1] = SUM_C(MUL(dy, xhat));
    if (need[2]) dx[2] = SUM_C(dy);
    return b->status;
}

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

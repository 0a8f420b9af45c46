/*
 * fuse_conv_act.c — fuse-conv-act: a convolution, a bias added to its
 * result and the activation after it become one conv2d node, whose
 * lowering applies bias and activation to each GEMM output tile while it
 * is still in cache (the epilogue of codegen/lower_conv.c), instead of two
 * more passes over the image in memory.
 *
 * Before (a conv2d layer as the frontend writes it, activation apart):
 *   %0 = conv2d(%x, @c1.kernel, @c1.bias) : f32[?,26,26,32]
 *   %1 = relu(%0) : f32[?,26,26,32]
 * After:
 *   %0 = conv2d(%x, @c1.kernel, @c1.bias) {activation=relu} : f32[?,26,26,32]
 *
 * A vector of the output channels added to the result (broadcast over
 * batch and pixels, as a model written with primitive ops has it) joins
 * the bias operand first, so conv + bias + activation is one node:
 *   %0 = conv2d(%x, @k, %z) : f32[?,8,8,4]
 *   %1 = add(%0, @b) : f32[?,8,8,4]
 *   %2 = tanh(%1) : f32[?,8,8,4]
 * becomes
 *   %1 = add(%z, @b) : f32[4]
 *   %2 = conv2d(%x, @k, %1) {activation=tanh} : f32[?,8,8,4]
 * (constant-fold then drops the add when %z is zero).
 *
 * The producers are a table (g_epi): ops with a bias operand and an
 * activation epilogue. dense is there for the inference pipeline, where
 * fold-batch-norm runs after fuse-dense-act and leaves
 *   dense(...) -> batch_norm -> relu   as   dense(...) -> relu.
 * The activation is any op with IR_FACT_ACT in ops.def (its attributes,
 * leaky_relu's alpha, kept on the producer). Nothing fuses into a producer
 * that already has an activation, whose result has another user (it would
 * be needed unactivated), or past an add whose other operand is not a
 * vector of the output channels.
 */
#include "passes/pass.h"

static const struct {
    int op, bias; /* the producer and its bias operand */
} g_epi[] = {
    {IR_OP_conv2d, 2},
    {IR_OP_dense, 2},
};

static int epi_row(const ir_node *p) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_epi); i++)
        if (g_epi[i].op == p->op && ir_attr_i(p, "activation") == 0) return (int)i;
    return -1;
}

/* The user of p when it is the only use and a top-level node of f. */
static ir_node *only_user(const kiln_func *f, const int *uses, const ir_node *p, int *pos) {
    if (uses[p->serial] != 1) return NULL;
    for (int i = 0; i < f->n_nodes; i++)
        for (int k = 0; k < f->nodes[i]->n_in; k++)
            if (f->nodes[i]->in[k] == p) {
                *pos = i;
                return f->nodes[i];
            }
    return NULL; /* used by a result or a region body */
}

/* The vector that `add` adds to p: f32[c] with c p's last axis, and the
 * sum p's type (the vector broadcast over the other axes). */
static ir_node *added_vector(const ir_node *add, const ir_node *p) {
    if (add->op != IR_OP_add) return NULL;
    ir_node *v = add->in[0] == p ? add->in[1] : add->in[1] == p ? add->in[0] : NULL;
    if (!v || v == p || v->type.dtype != IR_F32 || v->type.rank != 1) return NULL;
    if (v->type.dims[0] != p->type.dims[p->type.rank - 1]) return NULL;
    return ir_type_eq(&add->type, &p->type) ? v : NULL;
}

/* Fuses what follows p (an epilogue producer at index i); returns the
 * number of nodes fused (0 or more), -1 on error (b->status). */
static int fuse_at(kiln_func *f, ir_builder *b, const int *uses, ir_node *p, int row) {
    int pos_add = -1, pos_act = -1;
    ir_node *next = only_user(f, uses, p, &pos_add);
    ir_node *v = next ? added_vector(next, p) : NULL;
    ir_node *add = v ? next : NULL;
    ir_node *tail = add ? add : p;
    ir_node *act = only_user(f, uses, tail, &pos_act);
    if (act && !ir_op_has(act->op, IR_FACT_ACT)) act = NULL;
    if (!add && !act) return 0;
    ir_node *last = act ? act : add;
    int pos = act ? pos_act : pos_add;
    b->pos = pos;
    b->loc = p->loc;
    ir_node *in[3];
    for (int k = 0; k < p->n_in && k < 3; k++) in[k] = p->in[k];
    if (add) in[g_epi[row].bias] = ir_b_bin(b, IR_OP_add, p->in[g_epi[row].bias], v);
    ir_attrs at = p->attrs;
    if (act) {
        ir_attrs_set_i(&at, "activation", act->op);
        const ir_op_info *ai = ir_op(act->op);
        for (int k = 0; k < ai->n_attrs; k++)
            ir_attrs_set_f(&at, ai->attrs[k].name, ir_attr_f(act, ai->attrs[k].name));
    }
    ir_node *q = ir_b_op(b, p->op, p->n_in, in, &at);
    if (!q) return -1;
    ir_func_replace_uses(f, last, q);
    p->aux = last->aux = 1;
    if (add) add->aux = 1;
    return 1 + (add != NULL) + (act != NULL);
}

static kiln_status fuse_func(kiln_func *f, kiln_diag *d) {
    int *uses = ir_func_use_counts(f);
    if (!uses) return ir_oom(d);
    ir_builder b;
    ir_builder_init(&b, f, d);
    for (int i = 0; i < f->n_nodes; i++) f->nodes[i]->aux = 0;
    int fused = 0, limit = f->m->next_serial; /* nodes made here have no use count */
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *p = f->nodes[i];
        int row = p->aux || p->serial >= limit ? -1 : epi_row(p);
        if (row < 0 || p->type.rank < 1) continue;
        int k = fuse_at(f, &b, uses, p, row);
        if (k < 0) break;
        fused += k;
    }
    ir_free(uses);
    if (fused) {
        ir_func_remove_marked(f);
        ir_func_unplan(f);
    }
    return b.status;
}

kiln_status pass_fuse_conv_act(kiln_module *m, kiln_diag *d) {
    return pass_each_func(m, fuse_func, d);
}

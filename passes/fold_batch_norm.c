/*
 * fold_batch_norm.c — the pass fold-batch-norm (inference pipeline): a
 * batch normalization on moving statistics that follows a linear op with
 * no activation becomes part of that op's weights, per output channel (the
 * last axis of the kernel and of the result):
 *
 *   %0 = dense(%x, @d.kernel, @d.bias) : f32[?,64]
 *   %1 = batch_norm(%0, @bn.gamma, @bn.beta, @bn.moving_mean, @bn.moving_variance)
 * becomes, with s = gamma / sqrt(moving_variance + epsilon),
 *   %2 = ...s...                               : f32[64]
 *   %3 = mul(@d.kernel, %2) : f32[784,64]      kernel * s  (each output column)
 *   %4 = sub(@d.bias, @bn.moving_mean)  ...    (bias - mean) * s + beta
 *   %7 = dense(%x, %3, %6) : f32[?,64]
 *
 * The producers are a table (g_fold): an op whose result's last axis is its
 * kernel's last axis, with a kernel and a bias operand and no activation:
 * dense, and conv2d (kernel [kh, kw, in, out]).
 */
#include "passes/pass.h"

#include <string.h>

static const struct {
    int op;
    int kernel, bias; /* operand positions */
} g_fold[] = {
    {IR_OP_dense, 1, 2},
    {IR_OP_conv2d, 1, 2}, /* kernel [kh, kw, in, out] */
};

static int fold_row(const ir_node *p) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_fold); i++)
        if (g_fold[i].op == p->op && ir_attr_i(p, "activation") == 0) return (int)i;
    return -1;
}

/* Builds the folded producer at the end of f; returns it (NULL on error). */
static ir_node *folded(ir_builder *b, const ir_node *n, const ir_node *p, int row) {
    ir_node *g = n->in[1], *beta = n->in[2], *mean = n->in[3], *var = n->in[4];
    ir_node *eps = ir_b_scalar(b, (float)ir_attr_f(n, "epsilon"));
    ir_node *sd = ir_b_un(b, IR_OP_sqrt, ir_b_bin(b, IR_OP_add, var, eps));
    ir_node *s = ir_b_bin(b, IR_OP_div, g, sd);
    ir_node *k = ir_b_bin(b, IR_OP_mul, p->in[g_fold[row].kernel], s);
    ir_node *c = ir_b_bin(b, IR_OP_sub, p->in[g_fold[row].bias], mean);
    ir_node *bias = ir_b_bin(b, IR_OP_add, ir_b_bin(b, IR_OP_mul, c, s), beta);
    if (!k || !bias) return NULL;
    ir_node *in[KILN_MAX_RANK + 4];
    for (int i = 0; i < p->n_in && i < KILN_MAX_RANK + 4; i++) in[i] = p->in[i];
    in[g_fold[row].kernel] = k;
    in[g_fold[row].bias] = bias;
    return ir_b_op(b, p->op, p->n_in, in, &p->attrs);
}

/* Moves the nodes f->nodes[from..] to position pos (before the rest):
 * at most a few nodes, rotated one at a time. */
static void move_tail(kiln_func *f, int from, int pos) {
    for (int t = from; t < f->n_nodes; t++, pos++) {
        ir_node *x = f->nodes[t];
        memmove(f->nodes + pos + 1, f->nodes + pos, sizeof(ir_node *) * (size_t)(t - pos));
        f->nodes[pos] = x;
    }
}

static kiln_status fold_func(kiln_func *f, kiln_diag *d) {
    int *uses = ir_func_use_counts(f);
    if (!uses) return ir_oom(d);
    ir_builder b;
    ir_builder_init(&b, f, d);
    for (int i = 0; i < f->n_nodes; i++) f->nodes[i]->aux = 0;
    int done = 0;
    for (int i = 0; i < f->n_nodes && !b.status; i++) {
        ir_node *n = f->nodes[i], *p = n->in ? n->in[0] : NULL;
        if (n->op != IR_OP_batch_norm || ir_attr_i(n, "training")) continue;
        int row = fold_row(p);
        if (row < 0 || uses[p->serial] != 1) continue;
        int from = f->n_nodes;
        b.loc = n->loc;
        ir_node *q = folded(&b, n, p, row);
        if (!q) break;
        move_tail(f, from, i);
        ir_func_replace_uses(f, n, q);
        n->aux = p->aux = 1;
        done++;
        i += f->n_nodes - from;
    }
    ir_free(uses);
    if (done) {
        ir_func_remove_marked(f);
        ir_func_unplan(f);
    }
    return b.status;
}

kiln_status pass_fold_batch_norm(kiln_module *m, kiln_diag *d) {
    return pass_each_func(m, fold_func, d);
}

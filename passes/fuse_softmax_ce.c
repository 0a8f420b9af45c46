/*
 * fuse_softmax_ce.c — fuse-softmax-ce: a softmax feeding a cross-entropy
 * becomes one softmax_cross_entropy node, computed from the logits with
 * log-sum-exp (finite for logits of +-1e4, where softmax underflows to 0
 * and the log of it does not) and with the gradient (softmax(z) - y) / N.
 *
 * Before:
 *   %0 = softmax(%z) {axis=1} : f32[?,10]
 *   %1 = categorical_crossentropy(%0, %y) : f32[]
 * After:
 *   %0 = softmax_cross_entropy(%z, %y) : f32[]
 *
 * The same for
 *   softmax(z) -> sparse_categorical_crossentropy(., labels)   (i32 labels)
 *   log_softmax(z) -> nll(., y)                                (one-hot f32)
 *
 * Only over the last axis (the class axis the losses use), and only when the
 * softmax has no other user: otherwise the probabilities are needed anyway
 * and fusing would compute the softmax twice. (constant-fold rewrites
 * argmax(softmax(z)) to argmax(z) first, so an accuracy metric does not
 * count as another user.) Note that categorical_crossentropy on
 * probabilities clips them to [1e-7, 1 - 1e-7] like Keras; the fused op does
 * not need to, so the two agree except where the clipping bites.
 */
#include "passes/pass.h"

/* Which probability op feeds loss `op` in a fusable pair, or -1. */
static int producer_for(int op) {
    switch (op) {
    case IR_OP_categorical_crossentropy:
    case IR_OP_sparse_categorical_crossentropy:
        return IR_OP_softmax;
    case IR_OP_nll:
        return IR_OP_log_softmax;
    default:
        return -1;
    }
}


/* A loss of a softmax (log_softmax for nll) over the last axis that nothing
 * else reads becomes softmax_cross_entropy; the softmax is marked. */
static kiln_status fuse_node(kiln_func *f, ir_node *loss, const int *uses, ir_node **out,
                             kiln_diag *d) {
    int want = producer_for(loss->op);
    ir_node *p = want >= 0 ? loss->in[0] : NULL;
    if (!p || p->op != want || uses[p->serial] != 1) return KILN_OK;
    if (ir_attr_i(p, "axis") != p->type.rank - 1) return KILN_OK; /* normalized by infer */
    ir_node *in[2] = {p->in[0], loss->in[1]};
    /* The loss's own checks (shapes, one-hot or labels) are the fused op's,
     * so only memory can fail here. */
    *out = ir_node_create(f->m, IR_OP_softmax_cross_entropy, 2, in, NULL, loss->loc, d);
    if (!*out) return d && d->first ? d->first : KILN_ERR_NOMEM;
    p->aux = 1;
    return KILN_OK;
}

static kiln_status fuse_func(kiln_func *f, kiln_diag *d) { return pass_rewrite_nodes(f, fuse_node, d); }

kiln_status pass_fuse_softmax_ce(kiln_module *m, kiln_diag *d) { return pass_each_func(m, fuse_func, d); }

/*
 * grad_rules.c — the `grad` column of ir/ops.def: one gradient rule per
 * differentiable op, and the table pass_grad_rule() built from that column.
 *
 * A rule reads like the math it implements. Inside a rule, n is the forward
 * node, X(k) its operand k, dy the gradient of the loss with respect to n,
 * and the macros ADD, MUL, ... build nodes with the builder b (positioned at
 * the end of train_step, with n's location). No call takes two arguments
 * that both build nodes: C leaves their order unspecified, and the order of
 * train_step's nodes must not depend on the compiler. See passes/grad.h for the
 * contract; autodiff calls a rule only when some operand needs a gradient, so
 * a one-operand rule always computes dx[0].
 *
 * Two conventions recur:
 *  - broadcasting ops hand each operand unbroadcast(g, operand): g summed
 *    over the axes the operand was broadcast along, reshaped to its type;
 *  - counts that involve the batch axis are known only at run time and come
 *    from `numel`; static counts are constants.
 */
#include <string.h>

#include "passes/grad.h"

/* ------------------------------------------------------------ the helpers */

#define X(k)              (n->in[k])
#define K(v)              ir_b_scalar(b, (v))
#define ADD(x, y)         ir_b_bin(b, IR_OP_add, (x), (y))
#define SUB(x, y)         ir_b_bin(b, IR_OP_sub, (x), (y))
#define MUL(x, y)         ir_b_bin(b, IR_OP_mul, (x), (y))
#define DIV(x, y)         ir_b_bin(b, IR_OP_div, (x), (y))
#define GT(x, y)          ir_b_bin(b, IR_OP_greater, (x), (y))
#define EQ(x, y)          ir_b_bin(b, IR_OP_equal, (x), (y))
#define MAX(x, y)         ir_b_bin(b, IR_OP_maximum, (x), (y))
#define MIN(x, y)         ir_b_bin(b, IR_OP_minimum, (x), (y))
#define NEG(x)            ir_b_un(b, IR_OP_neg, (x))
#define EXP(x)            ir_b_un(b, IR_OP_exp, (x))
#define LOG(x)            ir_b_un(b, IR_OP_log, (x))
#define SELECT(c, x, y)   select3(b, (c), (x), (y))
#define SUM_KEEP(x, axis) sum_axis(b, (x), (axis), true)

#define RULE(name)                                                                                 \
    static kiln_status name(ir_builder *b, ir_node *n, ir_node *dy, const bool *need, ir_node **dx)

/* The Keras epsilon the losses clip probabilities with (interp_ops.c). */
#define KERAS_EPS 1e-7

static ir_node *select3(ir_builder *b, ir_node *c, ir_node *x, ir_node *y) {
    ir_node *in[3] = {c, x, y};
    return ir_b_op(b, IR_OP_select, 3, in, NULL);
}

/* op(x) with its one attribute `name` set to v. */
static ir_node *with_attr(ir_builder *b, int op, ir_node *x, const char *name, double v) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_f(&a, name, v);
    return ir_b_op(b, op, 1, &x, &a);
}

static ir_node *pow_(ir_builder *b, ir_node *x, double e) {
    return with_attr(b, IR_OP_pow, x, "exponent", e);
}

static ir_node *sum_axis(ir_builder *b, ir_node *x, int axis, bool keep) {
    int64_t ax = axis;
    return ir_b_reduce(b, IR_OP_reduce_sum, x, 1, &ax, keep);
}

/* Element count of the given axes of x: a constant when they are static,
 * else `numel` (the batch is known only at run time). */
static ir_node *count_axes(ir_builder *b, ir_node *x, int na, const int64_t *axes) {
    bool dynamic = false;
    double c = 1;
    for (int i = 0; i < na; i++) {
        if (x->type.dims[axes[i]] == KILN_BATCH)
            dynamic = true;
        else
            c *= (double)x->type.dims[axes[i]];
    }
    if (!dynamic) return K(c);
    return ir_b_reduce(b, IR_OP_numel, x, na, axes, false);
}

/* Element count of axes [from, to) of x. */
static ir_node *count(ir_builder *b, ir_node *x, int from, int to) {
    int64_t axes[KILN_MAX_RANK];
    int na = 0;
    for (int a = from; a < to; a++) axes[na++] = a;
    return count_axes(b, x, na, axes);
}

/* g summed over the axes along which `like` was broadcast to g's shape, then
 * given like's exact type. */
static ir_node *unbroadcast(ir_builder *b, ir_node *g, const ir_node *like) {
    if (!g) return NULL;
    const ir_type *t = &g->type, *x = &like->type;
    int64_t axes[KILN_MAX_RANK];
    int na = 0, lead = t->rank - x->rank;
    for (int a = 0; a < t->rank; a++) {
        int ia = a - lead;
        if (ia < 0 || (x->dims[ia] == 1 && t->dims[a] != 1)) axes[na++] = a;
    }
    if (na) g = ir_b_reduce(b, IR_OP_reduce_sum, g, na, axes, false);
    return ir_b_reshape(b, g, &like->type);
}

/* The type of reduction n's operand with its reduced axes kept as 1. */
static ir_type kept_type(const ir_node *n) {
    ir_type t = n->in[0]->type;
    t.dtype = IR_F32;
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    if (na == 0)
        for (int a = 0; a < t.rank; a++) t.dims[a] = 1;
    for (int i = 0; i < na; i++) t.dims[axes[i]] = 1;
    return t;
}

/* g (reduction n's result shape) spread back over n's operand. */
static ir_node *unreduce(ir_builder *b, const ir_node *n, ir_node *g) {
    ir_type keep = kept_type(n);
    return ir_b_broadcast_to(b, ir_b_reshape(b, g, &keep), &n->in[0]->type);
}

/* The rules of the activations (IR_FACT_ACT) compute dy · act'(z) from the
 * result y = n: the sign of z is the sign of y for relu and leaky_relu with
 * alpha >= 0, and sigmoid' and tanh' are polynomials in y. They read z only
 * through act_input, and attributes by name, so an op that carries the
 * activation (dense) runs the same rule on its own result. */
static ir_node *act_input(ir_builder *b, ir_node *n, bool y_tells) {
    if (ir_op(n->op)->is_ew) return X(0);
    if (y_tells) return n;
    ir_attrs a = n->attrs; /* the carrier without its activation */
    ir_attrs_set_i(&a, "activation", 0);
    return ir_b_op(b, n->op, n->n_in, n->in, &a);
}

/* ------------------------------------------------------------ elementwise */

RULE(grad_neg) {
    dx[0] = NEG(dy);
    return b->status;
}

RULE(grad_exp) {
    dx[0] = MUL(dy, n); /* exp' = exp */
    return b->status;
}

RULE(grad_log) {
    dx[0] = DIV(dy, X(0));
    return b->status;
}

RULE(grad_sqrt) {
    dx[0] = DIV(MUL(dy, K(0.5)), n); /* 1 / (2 sqrt x) */
    return b->status;
}

RULE(grad_pow) {
    double p = ir_attr_f(n, "exponent");
    ir_node *xp = pow_(b, X(0), p - 1);
    dx[0] = MUL(dy, MUL(xp, K(p)));
    return b->status;
}

RULE(grad_relu) {
    ir_node *zero = K(0);
    dx[0] = SELECT(GT(n, zero), dy, zero);
    return b->status;
}

RULE(grad_leaky_relu) {
    double alpha = ir_attr_f(n, "alpha");
    ir_node *z = act_input(b, n, alpha >= 0); /* y's sign tells z's unless alpha < 0 */
    ir_node *zero = K(0), *slope = MUL(dy, K(alpha));
    dx[0] = SELECT(GT(z, zero), dy, slope);
    return b->status;
}

RULE(grad_sigmoid) {
    dx[0] = MUL(dy, MUL(n, SUB(K(1), n)));
    return b->status;
}

RULE(grad_tanh) {
    ir_node *one = K(1);
    dx[0] = MUL(dy, SUB(one, MUL(n, n)));
    return b->status;
}

/* The Keras 3 activations. elu, relu6 and hard_sigmoid read z's region off
 * y; gelu, softplus and silu need z itself (act_input). */
#define TWO_OVER_SQRT_PI 1.1283791670955126
#define INV_SQRT_2PI 0.3989422804014327
RULE(grad_erf) {
    ir_node *x = X(0);
    dx[0] = MUL(dy, MUL(K(TWO_OVER_SQRT_PI), EXP(NEG(MUL(x, x)))));
    return b->status;
}

RULE(grad_elu) {
    double alpha = ir_attr_f(n, "alpha");
    ir_node *z = act_input(b, n, alpha >= 0); /* y > 0 exactly when z > 0 */
    dx[0] = SELECT(GT(z, K(0)), dy, MUL(dy, ADD(n, K(alpha)))); /* alpha e^z = y + alpha */
    return b->status;
}

RULE(grad_relu6) {
    ir_node *zero = K(0);
    dx[0] = SELECT(GT(n, zero), SELECT(GT(K(6), n), dy, zero), zero);
    return b->status;
}

RULE(grad_hard_sigmoid) {
    ir_node *zero = K(0);
    dx[0] = SELECT(GT(n, zero), SELECT(GT(K(1), n), MUL(dy, K(1.0 / 6.0)), zero), zero);
    return b->status;
}

RULE(grad_gelu) { /* Phi(z) + z phi(z) */
    ir_node *z = act_input(b, n, false);
    ir_node *cdf = MUL(K(0.5), ADD(K(1), ir_b_un(b, IR_OP_erf, MUL(z, K(0.7071067811865476)))));
    ir_node *pdf = MUL(K(INV_SQRT_2PI), EXP(MUL(MUL(z, z), K(-0.5))));
    dx[0] = MUL(dy, ADD(cdf, MUL(z, pdf)));
    return b->status;
}

RULE(grad_softplus) { /* sigmoid(z) */
    dx[0] = MUL(dy, ir_b_un(b, IR_OP_sigmoid, act_input(b, n, false)));
    return b->status;
}

RULE(grad_silu) { /* s + z s (1 - s) = s + y (1 - s) */
    ir_node *s = ir_b_un(b, IR_OP_sigmoid, act_input(b, n, false));
    dx[0] = MUL(dy, ADD(s, MUL(n, SUB(K(1), s))));
    return b->status;
}

/* f32 -> f32 is the identity; casts from or to i32 carry no gradient (autodiff
 * never asks for one: integers are not differentiable values). */
RULE(grad_cast) {
    if (need[0] && n->type.dtype == IR_F32) dx[0] = dy;
    return b->status;
}

/* -------------------------------------------------------------- broadcast */

RULE(grad_add) {
    if (need[0]) dx[0] = unbroadcast(b, dy, X(0));
    if (need[1]) dx[1] = unbroadcast(b, dy, X(1));
    return b->status;
}

RULE(grad_sub) {
    if (need[0]) dx[0] = unbroadcast(b, dy, X(0));
    if (need[1]) dx[1] = NEG(unbroadcast(b, dy, X(1)));
    return b->status;
}

RULE(grad_mul) {
    if (need[0]) dx[0] = unbroadcast(b, MUL(dy, X(1)), X(0));
    if (need[1]) dx[1] = unbroadcast(b, MUL(dy, X(0)), X(1));
    return b->status;
}

RULE(grad_div) { /* y = a / b:  da = dy / b,  db = -dy y / b */
    if (need[0]) dx[0] = unbroadcast(b, DIV(dy, X(1)), X(0));
    if (need[1]) dx[1] = NEG(unbroadcast(b, DIV(MUL(dy, n), X(1)), X(1)));
    return b->status;
}

/* The larger operand takes the gradient; a tie goes to the second. */
RULE(grad_maximum) {
    ir_node *first = GT(X(0), X(1));
    if (need[0]) dx[0] = unbroadcast(b, SELECT(first, dy, K(0)), X(0));
    if (need[1]) dx[1] = unbroadcast(b, SELECT(first, K(0), dy), X(1));
    return b->status;
}

RULE(grad_minimum) {
    ir_node *first = GT(X(1), X(0));
    if (need[0]) dx[0] = unbroadcast(b, SELECT(first, dy, K(0)), X(0));
    if (need[1]) dx[1] = unbroadcast(b, SELECT(first, K(0), dy), X(1));
    return b->status;
}

RULE(grad_select) { /* the condition is i32: no gradient */
    if (need[1]) dx[1] = unbroadcast(b, SELECT(X(0), dy, K(0)), X(1));
    if (need[2]) dx[2] = unbroadcast(b, SELECT(X(0), K(0), dy), X(2));
    return b->status;
}

RULE(grad_broadcast_to) {
    dx[0] = unbroadcast(b, dy, X(0));
    return b->status;
}

/* ------------------------------------------------ reductions, normalizing */

RULE(grad_reduce_sum) {
    dx[0] = unreduce(b, n, dy);
    return b->status;
}

RULE(grad_reduce_mean) {
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    ir_node *c = na ? count_axes(b, X(0), na, axes) : count(b, X(0), 0, X(0)->type.rank);
    dx[0] = unreduce(b, n, DIV(dy, c));
    return b->status;
}

/* The maximum takes the gradient (every tied maximum does). */
RULE(grad_reduce_max) {
    ir_type keep = kept_type(n);
    ir_node *is_max = EQ(X(0), ir_b_reshape(b, n, &keep));
    ir_node *g = ir_b_reshape(b, dy, &keep);
    dx[0] = SELECT(is_max, g, K(0));
    return b->status;
}

RULE(grad_softmax) { /* y (dy - sum(dy y)) */
    int axis = (int)ir_attr_i(n, "axis");
    dx[0] = MUL(n, SUB(dy, SUM_KEEP(MUL(dy, n), axis)));
    return b->status;
}

RULE(grad_log_softmax) { /* dy - softmax sum(dy) */
    ir_node *s = SUM_KEEP(dy, (int)ir_attr_i(n, "axis"));
    dx[0] = SUB(dy, MUL(EXP(n), s));
    return b->status;
}

/* -------------------------------------------------- linear algebra, layout */

/* C = op(A) op(B), with the transpositions folded into the flags. B's
 * gradient comes first: in a layer x W it is the weights', then the flow
 * down to x (the order dense's rule uses too). */
/* The operands' gradients of op(A) . op(B) (n's operands 0 and 1, its
 * transposes) for dC, the gradient of the product. */
static kiln_status product_grads(ir_builder *b, ir_node *n, ir_node *dC, const bool *need,
                                 ir_node **dx) {
    bool ta = ir_attr_i(n, "transpose_a") != 0, tb = ir_attr_i(n, "transpose_b") != 0;
    ir_node *a = X(0), *bm = X(1);
    if (need[1])
        dx[1] = !tb ? ir_b_matmul(b, a, dC, !ta, false) /* op(A)^T dC */
                    : ir_b_matmul(b, dC, a, true, ta);  /* (op(A)^T dC)^T */
    if (need[0])
        dx[0] = !ta ? ir_b_matmul(b, dC, bm, false, !tb) /* dC op(B)^T */
                    : ir_b_matmul(b, bm, dC, tb, true);  /* (dC op(B)^T)^T */
    return b->status;
}

RULE(grad_matmul) { return product_grads(b, n, dy, need, dx); }

/* The product's gradient is dy masked as the product was; the mask h is
 * piecewise constant: no gradient. */
RULE(grad_matmul_mask) {
    double alpha = ir_attr_f(n, "alpha");
    ir_node *zero = K(0), *above = GT(X(2), zero);
    ir_node *rest = alpha != 0 ? MUL(dy, K(alpha)) : zero;
    return product_grads(b, n, SELECT(above, dy, rest), need, dx);
}

RULE(grad_reshape) {
    dx[0] = ir_b_reshape(b, dy, &X(0)->type);
    return b->status;
}

RULE(grad_transpose) { /* transpose back with the inverse permutation */
    const int64_t *perm;
    int r = ir_attr_ints(n, "perm", &perm);
    int64_t inv[KILN_MAX_RANK];
    for (int i = 0; i < r; i++) inv[perm[i]] = i;
    ir_attrs a = ir_attrs_default(IR_OP_transpose);
    ir_attrs_set_ints(&a, "perm", r, inv);
    dx[0] = ir_b_op(b, IR_OP_transpose, 1, &dy, &a);
    return b->status;
}

/* A constant (zero) pad of axis a only. */
static ir_node *pad_axis(ir_builder *b, ir_node *x, int a, int64_t before, int64_t after) {
    int64_t bf[KILN_MAX_RANK] = {0}, af[KILN_MAX_RANK] = {0};
    int r = x->type.rank;
    bf[a] = before;
    af[a] = after;
    ir_attrs at = ir_attrs_default(IR_OP_pad);
    ir_attrs_set_ints(&at, "before", r, bf);
    ir_attrs_set_ints(&at, "after", r, af);
    return ir_b_op(b, IR_OP_pad, 1, &x, &at);
}

/* The gradient of an edge or reflect pad, axis by axis (the pad is one
 * per axis, composed; so is its adjoint). On axis a, the pad is the mode's
 * padding by the positive counts, then the crop by the negative ones: the
 * crop's adjoint zero-pads g back, and the padding's adds to each element
 * of x the elements of g that copy it: the middle (g cropped), the edge
 * regions summed into the first and last element (edge), or each mirrored
 * element moved to its source (reflect: one crop and one pad each). */
static kiln_status grad_pad_mode(ir_builder *b, ir_node *n, ir_node *g, ir_node **dx) {
    const int64_t *bf, *af;
    int r = ir_attr_ints(n, "before", &bf);
    ir_attr_ints(n, "after", &af);
    bool reflect = ir_attr_i(n, "mode") == 1;
    for (int a = 0; a < r && g; a++) {
        if (!bf[a] && !af[a]) continue;
        int64_t d = n->in[0]->type.dims[a], pb = bf[a] > 0 ? bf[a] : 0, pa = af[a] > 0 ? af[a] : 0;
        if (bf[a] < 0 || af[a] < 0) g = pad_axis(b, g, a, pb - bf[a], pa - af[a]);
        if (!g) break;
        int64_t D = d + pb + pa; /* g's extent on axis a */
        ir_node *acc = pad_axis(b, g, a, -pb, -pa);
        if (!reflect) {
            for (int side = 0; side < 2 && acc; side++) {
                int64_t k = side ? pa : pb;
                if (!k) continue;
                ir_node *edge = side ? pad_axis(b, g, a, -(D - k), 0) : pad_axis(b, g, a, 0, -(D - k));
                edge = edge ? sum_axis(b, edge, a, true) : NULL;
                edge = edge ? pad_axis(b, edge, a, side ? d - 1 : 0, side ? 0 : d - 1) : NULL;
                acc = edge ? ir_b_bin(b, IR_OP_add, acc, edge) : NULL;
            }
        } else {
            for (int64_t k = 1; k <= pb + pa && acc; k++) {
                bool after = k > pb;
                int64_t j = after ? k - pb : k;                /* the distance from x's edge */
                int64_t from = after ? pb + d - 1 + j : pb - j; /* g's element */
                int64_t to = after ? d - 1 - j : j;             /* x's element it copies */
                ir_node *e = pad_axis(b, g, a, -from, -(D - from - 1));
                e = e ? pad_axis(b, e, a, to, d - 1 - to) : NULL;
                acc = e ? ir_b_bin(b, IR_OP_add, acc, e) : NULL;
            }
        }
        g = acc;
    }
    dx[0] = g;
    return b->status;
}

RULE(grad_pad) { /* crop what was padded (the counts negated), pad what was cropped */
    if (ir_attr_i(n, "mode")) return grad_pad_mode(b, n, dy, dx);
    const int64_t *bf, *af;
    int r = ir_attr_ints(n, "before", &bf);
    ir_attr_ints(n, "after", &af);
    int64_t nb[KILN_MAX_RANK], na[KILN_MAX_RANK];
    for (int i = 0; i < r; i++) nb[i] = -bf[i], na[i] = -af[i];
    ir_attrs a = ir_attrs_default(IR_OP_pad);
    ir_attrs_set_ints(&a, "before", r, nb);
    ir_attrs_set_ints(&a, "after", r, na);
    dx[0] = ir_b_op(b, IR_OP_pad, 1, &dy, &a);
    return b->status;
}

/* ------------------------------------------------------------------ losses
 * Each loss is a mean: over the rows (every axis but the last, the classes)
 * for the cross-entropies and nll, over every element for mse and bce. */

/* dL / rows: the incoming gradient of the batch mean. */
static ir_node *per_row(ir_builder *b, ir_node *dy, ir_node *p) {
    return DIV(dy, count(b, p, 0, p->type.rank - 1));
}

/* Keras' categorical cross-entropy on probabilities p against targets t:
 * q = p / sum(p) clipped to [eps, 1-eps], L = -mean_rows sum(t log q). Where
 * q is clipped, L is flat in p, so the gradient is zero there:
 *     g = -t / q (unclipped),   dp = (g - sum(g q)) / sum(p) · dL/rows
 *     dt = -log(clip(q)) · dL/rows */
static void cce_grad(ir_builder *b, ir_node *p, ir_node *t, ir_node *dy, bool need_p, bool need_t,
                     ir_node **dp, ir_node **dt) {
    int last = p->type.rank - 1;
    ir_node *c = per_row(b, dy, p);
    ir_node *s = SUM_KEEP(p, last);
    ir_node *q = DIV(p, s);
    ir_node *lo = K(KERAS_EPS), *hi = K(1 - KERAS_EPS);
    if (need_p) {
        ir_node *inside = GT(q, lo);
        inside = MUL(inside, GT(hi, q));
        ir_node *g = NEG(DIV(t, q));
        g = SELECT(inside, g, K(0));
        *dp = MUL(DIV(SUB(g, SUM_KEEP(MUL(g, q), last)), s), c);
    }
    if (need_t) *dt = MUL(NEG(LOG(MIN(MAX(q, lo), hi))), c);
}

/* Integer labels as one-hot rows of p's class count. */
static ir_node *one_hot_like(ir_builder *b, ir_node *labels, const ir_node *p) {
    int64_t classes = p->type.dims[p->type.rank - 1];
    if (classes == KILN_BATCH) {
        b->status = ir_error(b->d, KILN_ERR_UNSUPPORTED, b->loc,
                             "gradient of integer labels needs a static class axis");
        return NULL;
    }
    return with_attr(b, IR_OP_one_hot, labels, "depth", (double)classes);
}

RULE(grad_categorical_crossentropy) {
    cce_grad(b, X(0), X(1), dy, need[0], need[1], &dx[0], &dx[1]);
    return b->status;
}

RULE(grad_sparse_categorical_crossentropy) {
    cce_grad(b, X(0), one_hot_like(b, X(1), X(0)), dy, need[0], false, &dx[0], NULL);
    return b->status;
}

RULE(grad_mean_squared_error) { /* L = mean((p - t)^2): dp = 2 (p - t) dL / count = -dt */
    ir_node *two_dy = MUL(dy, K(2));
    ir_node *c = DIV(two_dy, count(b, X(0), 0, X(0)->type.rank));
    ir_node *g = MUL(SUB(X(0), X(1)), c);
    if (need[0]) dx[0] = g;
    if (need[1]) dx[1] = NEG(g);
    return b->status;
}

/* Keras' binary cross-entropy: q = clip(p, eps, 1-eps),
 * L = -mean(t log q + (1-t) log(1-q)); zero gradient in p where clipped. */
RULE(grad_binary_crossentropy) {
    ir_node *p = X(0), *t = X(1);
    ir_node *c = DIV(dy, count(b, p, 0, p->type.rank));
    ir_node *lo = K(KERAS_EPS), *hi = K(1 - KERAS_EPS), *one = K(1);
    if (need[0]) { /* (1-t)/(1-p) - t/p */
        ir_node *inside = GT(p, lo);
        inside = MUL(inside, GT(hi, p));
        ir_node *g = SUB(one, t);
        g = DIV(g, SUB(one, p));
        g = SUB(g, DIV(t, p));
        dx[0] = MUL(SELECT(inside, g, K(0)), c);
    }
    if (need[1]) { /* log(1-q) - log q */
        ir_node *q = MIN(MAX(p, lo), hi);
        ir_node *g = LOG(SUB(one, q));
        dx[1] = MUL(SUB(g, LOG(q)), c);
    }
    return b->status;
}

RULE(grad_nll) { /* L = -mean_rows sum(t lp) */
    ir_node *c = NEG(per_row(b, dy, X(0)));
    if (need[0]) dx[0] = MUL(X(1), c);
    if (need[1]) dx[1] = MUL(X(0), c);
    return b->status;
}

/* -------------------------------------------------------------- fused ops */

/* y = act(x W + bias). The activation's derivative is applied once, from y,
 * by the activation op's own rule; then dW = x^T dz, dbias = one reduction
 * of dz over the rows, and dx = dz W^T only when x needs it (never for the
 * model's input). */
RULE(grad_dense) {
    int act = (int)ir_attr_i(n, "activation");
    ir_node *dz = dy;
    bool one = true;
    pass_grad_fn rule = act ? pass_grad_rule(act) : NULL;
    if (rule && rule(b, n, dy, &one, &dz)) return b->status;
    if (need[1]) dx[1] = ir_b_matmul(b, X(0), dz, true, false);
    if (need[2]) dx[2] = ir_b_reduce(b, IR_OP_reduce_sum, dz, 1, (const int64_t[]){0}, false);
    if (need[0]) dx[0] = ir_b_matmul(b, dz, X(1), false, true);
    return b->status;
}

/* L = mean_rows(logsumexp(z) - sum(t z)) for targets t whose rows sum to one
 * (one-hot, or i32 labels made one-hot): dz = (softmax(z) - t) dL/rows, and
 * for f32 targets dt = -log_softmax(z) dL/rows. */
RULE(grad_softmax_cross_entropy) {
    ir_node *z = X(0), *t = X(1);
    int last = z->type.rank - 1;
    ir_node *c = per_row(b, dy, z);
    if (need[0]) {
        ir_node *onehot = t->type.dtype == IR_I32 ? one_hot_like(b, t, z) : t;
        dx[0] = MUL(SUB(with_attr(b, IR_OP_softmax, z, "axis", last), onehot), c);
    }
    if (need[1]) dx[1] = MUL(NEG(with_attr(b, IR_OP_log_softmax, z, "axis", last)), c);
    return b->status;
}

/* ------------------------------------------------- convolution, pooling */

/* n's window attributes (strides, dilation or pool_size, padding) on a
 * node of op `op`, whose schema holds the same names. */
static ir_attrs window_attrs(const ir_node *n, int op) {
    ir_attrs a = ir_attrs_default(op);
    static const char *const names[] = {"strides", "dilation", "pool_size", "pads"};
    for (int i = 0; i < 4; i++) {
        const int64_t *v;
        if (ir_op_attr_index(op, names[i]) < 0) continue;
        int k = ir_attr_ints(n, names[i], &v);
        ir_attrs_set_ints(&a, names[i], k, v);
    }
    ir_attrs_set_i(&a, "padding", ir_attr_i(n, "padding"));
    return a;
}

/* y = act(conv(x, K) + bias): dz as dense's; dK = conv2d_grad_filter(x, dz),
 * dbias = conv2d_grad_bias(dz) (dz summed over batch, rows and columns),
 * dx = conv2d_grad_input. */
RULE(grad_conv2d) {
    int act = (int)ir_attr_i(n, "activation");
    ir_node *dz = dy;
    bool one = true;
    pass_grad_fn rule = act ? pass_grad_rule(act) : NULL;
    /* relu then max pooling (the convnet's block): dy is the pooling's
     * gradient, which routes it to each window's maximum; relu's
     * derivative there (the maximum > 0) is one test in that kernel, not
     * another pass over the image (max_pool2d_grad's relu_mask). */
    if (act == IR_OP_relu && ir_attr_f(n, "alpha") == 0 && dy->op == IR_OP_max_pool2d_grad &&
        dy->in[0] == n && !ir_attr_i(dy, "relu_mask")) {
        ir_attrs_set_i(&dy->attrs, "relu_mask", 1);
        rule = NULL;
    }
    if (rule && rule(b, n, dy, &one, &dz)) return b->status;
    if (need[1]) {
        ir_attrs a = window_attrs(n, IR_OP_conv2d_grad_filter);
        ir_node *in[3] = {X(0), dz, X(1)};
        dx[1] = ir_b_op(b, IR_OP_conv2d_grad_filter, 3, in, &a);
    }
    if (need[2]) {
        ir_attrs a = ir_attrs_default(IR_OP_conv2d_grad_bias);
        dx[2] = ir_b_op(b, IR_OP_conv2d_grad_bias, 1, &dz, &a);
    }
    if (need[0]) {
        ir_attrs a = window_attrs(n, IR_OP_conv2d_grad_input);
        ir_node *in[3] = {dz, X(1), X(0)};
        dx[0] = ir_b_op(b, IR_OP_conv2d_grad_input, 3, in, &a);
    }
    return b->status;
}

static kiln_status pool_grad(ir_builder *b, ir_node *n, ir_node *dy, int op, ir_node **dx) {
    ir_attrs a = window_attrs(n, op);
    ir_node *in[2] = {X(0), dy};
    dx[0] = ir_b_op(b, op, 2, in, &a);
    return b->status;
}

RULE(grad_max_pool2d) { return pool_grad(b, n, dy, IR_OP_max_pool2d_grad, dx); }

RULE(grad_avg_pool2d) { return pool_grad(b, n, dy, IR_OP_avg_pool2d_grad, dx); }

/* ------------------------------------------------------ data-parallel */

/* allreduce_mean is linear, y = A x with A = (1/N) 1 1^T (every rank gets
 * the mean of the ranks' x): A is symmetric, so the gradient is the same
 * collective on dy, allreduce_mean(dy). (With uneven shards the weights
 * make A = 1 w^T, no longer symmetric; the data-parallel pass inserts the
 * op after autodiff, so no training graph differentiates through it.) */
RULE(grad_allreduce_mean) {
    dx[0] = ir_b_un(b, IR_OP_allreduce_mean, dy);
    return b->status;
}

/* allreduce_wait is the identity on values. */
RULE(grad_allreduce_wait) {
    dx[0] = dy;
    return b->status;
}

/* ------------------------------------------------------------------ table */

#define NOGRAD NULL
static const pass_grad_fn g_rules[IR_NUM_OPCODES] = {
#define EW(name, arity, kind, facts, attrs, infer, scalar, grad, lower) [IR_OP_##name] = grad,
#define OP(name, arity, kind, facts, attrs, infer, kernel, grad, lower, ws) [IR_OP_##name] = grad,
#include "ir/ops.def"
#undef EW
#undef OP
};

pass_grad_fn pass_grad_rule(int opcode) {
    return opcode >= 0 && opcode < IR_NUM_OPCODES ? g_rules[opcode] : NULL;
}

/*
 * onnx_more.c — more ONNX ops that compose from Kiln's: comparisons and
 * logic (bool as i32 0/1), the reductions ONNX has beyond sum, mean and
 * max, and activations written with elementwise ops. The table is in
 * onnx_ops.c.
 */
#include "frontend/onnx.h"

#ifdef KILN_HAVE_ONNX

#include <string.h>

#define OUT0(n) ((n)->n_output ? (n)->output[0] : "")

static ir_node *k_scalar(ox_ctx *c, ir_dtype dt, double v) {
    return ir_b_const(&c->b, dt, v, 0, NULL);
}

/* Equal, Greater, Less, GreaterOrEqual, LessOrEqual, And, Or, Xor. */
kiln_status ox_b_compare(ox_ctx *c, const Onnx__NodeProto *n) {
    const char *t = n->op_type;
    ir_node *a = ox_in(c, n, 0), *b = ox_in(c, n, 1);
    if (!a || !b) return KILN_ERR_INVALID;
    if (a->type.dtype != b->type.dtype)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "operands of different types");
    ir_builder *bb = &c->b;
    ir_node *r;
    bool logic = !strcmp(t, "And") || !strcmp(t, "Or") || !strcmp(t, "Xor");
    if (logic && a->type.dtype != IR_I32) return ox_fail(c, KILN_ERR_INVALID, "needs bool operands");
    if (!strcmp(t, "Equal")) r = ir_b_bin(bb, IR_OP_equal, a, b);
    else if (!strcmp(t, "Greater")) r = ir_b_bin(bb, IR_OP_greater, a, b);
    else if (!strcmp(t, "Less")) r = ir_b_bin(bb, IR_OP_greater, b, a);
    else if (!strcmp(t, "GreaterOrEqual"))
        r = ir_b_bin(bb, IR_OP_sub, k_scalar(c, IR_I32, 1), ir_b_bin(bb, IR_OP_greater, b, a));
    else if (!strcmp(t, "LessOrEqual"))
        r = ir_b_bin(bb, IR_OP_sub, k_scalar(c, IR_I32, 1), ir_b_bin(bb, IR_OP_greater, a, b));
    else if (!strcmp(t, "And")) r = ir_b_bin(bb, IR_OP_mul, a, b);
    else if (!strcmp(t, "Or")) r = ir_b_bin(bb, IR_OP_maximum, a, b);
    else r = ir_b_bin(bb, IR_OP_sub, k_scalar(c, IR_I32, 1), ir_b_bin(bb, IR_OP_equal, a, b));
    return ox_set(c, OUT0(n), r);
}

kiln_status ox_b_not(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *x = ox_in(c, n, 0);
    if (!x) return KILN_ERR_INVALID;
    if (x->type.dtype != IR_I32) return ox_fail(c, KILN_ERR_INVALID, "needs a bool operand");
    return ox_set(c, OUT0(n), ir_b_bin(&c->b, IR_OP_sub, k_scalar(c, IR_I32, 1), x));
}

kiln_status ox_b_where(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *in[3] = {ox_in(c, n, 0), ox_in(c, n, 1), ox_in(c, n, 2)};
    if (!in[0] || !in[1] || !in[2]) return KILN_ERR_INVALID;
    if (in[0]->type.dtype != IR_I32) return ox_fail(c, KILN_ERR_INVALID, "the condition must be bool");
    return ox_set(c, OUT0(n), ir_b_op(&c->b, IR_OP_select, 3, in, NULL));
}

/* The f32 operand; integers are an unsupported feature. */
static ir_node *f32_in(ox_ctx *c, const Onnx__NodeProto *n, int k) {
    ir_node *x = ox_in(c, n, k);
    if (x && x->type.dtype != IR_F32) {
        ox_fail(c, KILN_ERR_UNSUPPORTED, "integer operands are not supported");
        return NULL;
    }
    return x;
}

/* Sign, Softsign, PRelu, ThresholdedRelu, Celu, HardSwish, Mish. */
kiln_status ox_b_act(ox_ctx *c, const Onnx__NodeProto *n) {
    const char *t = n->op_type;
    ir_node *x = f32_in(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    ir_builder *b = &c->b;
    ir_node *zero = k_scalar(c, IR_F32, 0), *one = k_scalar(c, IR_F32, 1), *r;
    if (!strcmp(t, "Sign")) {
        ir_node *p = ir_b_op(b, IR_OP_select, 3, (ir_node *[]){ir_b_bin(b, IR_OP_greater, x, zero), one, zero}, NULL);
        ir_node *q = ir_b_op(b, IR_OP_select, 3, (ir_node *[]){ir_b_bin(b, IR_OP_greater, zero, x), one, zero}, NULL);
        r = ir_b_bin(b, IR_OP_sub, p, q);
    } else if (!strcmp(t, "Softsign")) {
        ir_node *ab = ir_b_bin(b, IR_OP_maximum, x, ir_b_un(b, IR_OP_neg, x));
        r = ir_b_bin(b, IR_OP_div, x, ir_b_bin(b, IR_OP_add, ab, one));
    } else if (!strcmp(t, "PRelu")) {
        ir_node *s = f32_in(c, n, 1);
        if (!s) return KILN_ERR_UNSUPPORTED;
        int xr = x->type.rank;
        if (s->type.rank == 1 && xr > 2 && s->type.dims[0] != x->type.dims[xr - 1] &&
            s->type.dims[0] == x->type.dims[1]) { /* a slope per channel (axis 1), as before opset 7 */
            int64_t d[KILN_MAX_RANK];
            for (int k = 0; k < xr - 1; k++) d[k] = k ? 1 : s->type.dims[0];
            ir_type t = ir_type_make(IR_F32, xr - 1, d);
            s = ir_b_reshape(b, s, &t);
        }
        r = ir_b_op(b, IR_OP_select, 3, (ir_node *[]){ir_b_bin(b, IR_OP_greater, x, zero), x,
                                                      ir_b_bin(b, IR_OP_mul, x, s)}, NULL);
    } else if (!strcmp(t, "ThresholdedRelu")) {
        ir_node *al = k_scalar(c, IR_F32, ox_attr_f(n, "alpha", 1.0f));
        r = ir_b_op(b, IR_OP_select, 3, (ir_node *[]){ir_b_bin(b, IR_OP_greater, x, al), x, zero}, NULL);
    } else if (!strcmp(t, "Celu")) { /* max(0,x) + min(0, alpha*(exp(x/alpha)-1)) */
        double al = ox_attr_f(n, "alpha", 1.0f);
        ir_node *e = ir_b_un(b, IR_OP_exp, ir_b_bin(b, IR_OP_div, x, k_scalar(c, IR_F32, al)));
        e = ir_b_bin(b, IR_OP_mul, ir_b_bin(b, IR_OP_sub, e, one), k_scalar(c, IR_F32, al));
        r = ir_b_bin(b, IR_OP_add, ir_b_bin(b, IR_OP_maximum, x, zero), ir_b_bin(b, IR_OP_minimum, e, zero));
    } else if (!strcmp(t, "HardSwish")) {
        ir_node *h = ir_b_bin(b, IR_OP_add, ir_b_bin(b, IR_OP_mul, x, k_scalar(c, IR_F32, 1.0 / 6)),
                              k_scalar(c, IR_F32, 0.5));
        h = ir_b_bin(b, IR_OP_maximum, ir_b_bin(b, IR_OP_minimum, h, one), zero);
        r = ir_b_bin(b, IR_OP_mul, x, h);
    } else { /* Mish: x * tanh(softplus(x)) */
        ir_node *sp = ir_b_un(b, IR_OP_log, ir_b_bin(b, IR_OP_add, ir_b_un(b, IR_OP_exp, x), one));
        r = ir_b_bin(b, IR_OP_mul, x, ir_b_un(b, IR_OP_tanh, sp));
    }
    return ox_set(c, OUT0(n), r);
}

/* ReduceMin, ReduceSumSquare, ReduceL1, ReduceL2, ReduceLogSum,
 * ReduceLogSumExp: reduce_max / reduce_sum of a transformed operand. */
kiln_status ox_b_reduce_more(ox_ctx *c, const Onnx__NodeProto *n) {
    const char *t = n->op_type;
    ir_node *x = f32_in(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    ir_builder *b = &c->b;
    int64_t axes[KILN_MAX_RANK];
    int na = -1;
    if (c->opset < 18) {
        const int64_t *v;
        na = ox_attr_ints(n, "axes", &v);
        if (na > KILN_MAX_RANK) return ox_fail(c, KILN_ERR_LIMIT, "too many axes");
        for (int j = 0; j < na; j++) axes[j] = v[j];
    } else if (ox_has_in(n, 1)) {
        const ox_tensor *k = ox_in_const(c, n, 1);
        if (!k || !k->is_int || k->n > KILN_MAX_RANK)
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "axes must be a constant");
        na = (int)k->n;
        for (int j = 0; j < na; j++) axes[j] = k->i[j];
    }
    if (na <= 0) {
        if (ox_attr_i(n, "noop_with_empty_axes", 0))
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "noop_with_empty_axes");
        na = x->type.rank;
        for (int j = 0; j < na; j++) axes[j] = j;
    }
    if (na == 0) return ox_fail(c, KILN_ERR_UNSUPPORTED, "reducing a scalar");
    bool keep = ox_attr_i(n, "keepdims", 1) != 0;
    ir_node *y;
    if (!strcmp(t, "ReduceMin"))
        return ox_set(c, OUT0(n), ir_b_un(b, IR_OP_neg, ir_b_reduce(b, IR_OP_reduce_max, ir_b_un(b, IR_OP_neg, x), na, axes, keep)));
    if (!strcmp(t, "ReduceSumSquare") || !strcmp(t, "ReduceL2")) y = ir_b_bin(b, IR_OP_mul, x, x);
    else if (!strcmp(t, "ReduceL1")) y = ir_b_bin(b, IR_OP_maximum, x, ir_b_un(b, IR_OP_neg, x));
    else if (!strcmp(t, "ReduceLogSumExp")) y = ir_b_un(b, IR_OP_exp, x);
    else y = x;
    y = ir_b_reduce(b, IR_OP_reduce_sum, y, na, axes, keep);
    if (!strcmp(t, "ReduceL2")) y = ir_b_un(b, IR_OP_sqrt, y);
    if (!strcmp(t, "ReduceLogSum") || !strcmp(t, "ReduceLogSumExp")) y = ir_b_un(b, IR_OP_log, y);
    return ox_set(c, OUT0(n), y);
}

/* Size: the element count of a static shape, as a constant. */
kiln_status ox_b_size(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *x = ox_in(c, n, 0);
    if (!x) return KILN_ERR_INVALID;
    if (ir_type_batch_axis(&x->type) >= 0)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "Size of a value with a batch axis");
    ox_tensor *t = ox_const_new(c, true, 0, NULL);
    if (!t) return ir_oom(c->d);
    t->i[0] = ir_type_numel(&x->type, 1);
    return ox_set_const(c, OUT0(n), t);
}

/* ConstantOfShape: a constant shape filled with the value attribute. */
kiln_status ox_b_constant_of_shape(ox_ctx *c, const Onnx__NodeProto *n) {
    const ox_tensor *s = ox_in_const(c, n, 0);
    if (!s || !s->is_int || s->rank != 1 || s->n > KILN_MAX_RANK)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "the shape must be a constant");
    int64_t numel = 1;
    for (int k = 0; k < (int)s->n; k++) {
        if (s->i[k] < 0 || s->i[k] >= IR_MAX_DIM || (s->i[k] && numel > IR_MAX_ELEMS / s->i[k]))
            return ox_fail(c, KILN_ERR_LIMIT, "dimension %lld is out of range", (long long)s->i[k]);
        numel *= s->i[k];
    }
    const Onnx__AttributeProto *a = ox_attr(n, "value");
    ox_tensor *v = NULL;
    if (a && a->t) {
        kiln_status st = ox_tensor_from_proto(c, a->t, OUT0(n), &v);
        if (st) return st;
        if (v->n != 1) return ox_fail(c, KILN_ERR_INVALID, "value must hold one element");
    }
    ox_tensor *t = ox_const_new(c, v ? v->is_int : false, (int)s->n, s->i);
    if (!t) return ir_oom(c->d);
    for (int64_t k = 0; k < t->n; k++) {
        if (t->is_int) t->i[k] = v->i[0]; else t->f[k] = v ? v->f[0] : 0;
    }
    return ox_set_const(c, OUT0(n), t);
}

/* Expand: broadcast_to a constant shape (numpy rules both ways). */
kiln_status ox_b_expand(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *x = ox_in(c, n, 0);
    const ox_tensor *s = ox_in_const(c, n, 1);
    if (!x) return KILN_ERR_INVALID;
    if (!s || !s->is_int || s->rank != 1 || s->n > KILN_MAX_RANK)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "the shape must be a constant");
    int r = (int)(s->n > x->type.rank ? s->n : x->type.rank);
    if (r > KILN_MAX_RANK) return ox_fail(c, KILN_ERR_LIMIT, "rank %d", r);
    int64_t d[KILN_MAX_RANK];
    for (int k = 0; k < r; k++) {
        int ks = k - (r - (int)s->n), kx = k - (r - x->type.rank);
        int64_t a = ks >= 0 ? s->i[ks] : 1, b = kx >= 0 ? x->type.dims[kx] : 1;
        if (a == OX_BATCH) a = KILN_BATCH;
        d[k] = a == 1 ? b : a;
    }
    return ox_set(c, OUT0(n), ir_b_broadcast_to(&c->b, x, &(ir_type){.dtype = x->type.dtype, .rank = (int8_t)r, .dims = {d[0], d[1], d[2], d[3], d[4], d[5]}}));
}

#endif

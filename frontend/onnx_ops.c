/*
 * onnx_ops.c — ONNX op types to IR: a table of (op type, first opset, last
 * opset, builder). A builder reads the node's operands through ox_in
 * (constants become nodes on demand) or ox_in_const (shape arithmetic done
 * at import time) and defines its outputs with ox_set / ox_set_const.
 * What an op allows but Kiln lacks (an integer Div, a batched MatMul) is
 * KILN_ERR_UNSUPPORTED naming the feature.
 */
#include "frontend/onnx.h"

#ifdef KILN_HAVE_ONNX

#include <math.h>
#include <string.h>

#define OUT0(n) ((n)->n_output ? (n)->output[0] : "")

static ir_node *op1(ox_ctx *c, int op, ir_node *x, const ir_attrs *a) {
    return ir_b_op(&c->b, op, 1, &x, a);
}

static ir_node *scalar(ox_ctx *c, double v) { return ir_b_scalar(&c->b, v); }

/* The operand as an f32 node; an integer one is an unsupported feature. */
static ir_node *in_f32(ox_ctx *c, const Onnx__NodeProto *n, int k) {
    ir_node *x = ox_in(c, n, k);
    if (x && x->type.dtype != IR_F32) {
        ox_fail(c, KILN_ERR_UNSUPPORTED, "integer operands are not supported");
        return NULL;
    }
    return x;
}

static kiln_status set0(ox_ctx *c, const Onnx__NodeProto *n, ir_node *r) {
    return ox_set(c, OUT0(n), r);
}

/* ---- elementwise ---- */

static ir_node *elu_core(ox_ctx *c, ir_node *x, double alpha) {
    ir_node *pos = ir_b_bin(&c->b, IR_OP_greater, x, scalar(c, 0));
    ir_node *em1 = ir_b_bin(&c->b, IR_OP_sub, ir_b_un(&c->b, IR_OP_exp, x), scalar(c, 1));
    ir_node *neg = ir_b_bin(&c->b, IR_OP_mul, em1, scalar(c, alpha));
    ir_node *in[3] = {pos, x, neg};
    return ir_b_op(&c->b, IR_OP_select, 3, in, NULL);
}

/* The operand of an elementwise op on one tensor, in the layout it is held
 * in (*l: NHWC); f32 only. */
static ir_node *in_keep_f32(ox_ctx *c, const Onnx__NodeProto *n, bool *l) {
    ir_node *x = ox_in_keep(c, n, 0, l);
    if (x && x->type.dtype != IR_F32) {
        ox_fail(c, KILN_ERR_UNSUPPORTED, "integer operands are not supported");
        return NULL;
    }
    return x;
}

static kiln_status b_unary(ox_ctx *c, const Onnx__NodeProto *n) {
    bool l;
    ir_node *xi = ox_in_keep(c, n, 0, &l);
    if (xi && xi->type.dtype == IR_I32 && (!strcmp(n->op_type, "Neg") || !strcmp(n->op_type, "Abs"))) {
        ir_node *neg = ir_b_bin(&c->b, IR_OP_sub, ir_b_const(&c->b, IR_I32, 0, 0, NULL), xi);
        return set0(c, n, strcmp(n->op_type, "Neg") ? ir_b_bin(&c->b, IR_OP_maximum, xi, neg) : neg);
    }
    ir_node *x = in_keep_f32(c, n, &l);
    if (!x) return KILN_ERR_UNSUPPORTED;
    const char *t = n->op_type;
    ir_builder *b = &c->b;
    ir_node *r = NULL;
    if (!strcmp(t, "Neg")) r = ir_b_un(b, IR_OP_neg, x);
    else if (!strcmp(t, "Exp")) r = ir_b_un(b, IR_OP_exp, x);
    else if (!strcmp(t, "Log")) r = ir_b_un(b, IR_OP_log, x);
    else if (!strcmp(t, "Sqrt")) r = ir_b_un(b, IR_OP_sqrt, x);
    else if (!strcmp(t, "Relu")) r = ir_b_un(b, IR_OP_relu, x);
    else if (!strcmp(t, "Sigmoid")) r = ir_b_un(b, IR_OP_sigmoid, x);
    else if (!strcmp(t, "Tanh")) r = ir_b_un(b, IR_OP_tanh, x);
    else if (!strcmp(t, "Abs")) r = ir_b_bin(b, IR_OP_maximum, x, ir_b_un(b, IR_OP_neg, x));
    else if (!strcmp(t, "Reciprocal")) r = ir_b_bin(b, IR_OP_div, scalar(c, 1), x);
    else if (!strcmp(t, "Softplus"))
        r = ir_b_un(b, IR_OP_log, ir_b_bin(b, IR_OP_add, ir_b_un(b, IR_OP_exp, x), scalar(c, 1)));
    else if (!strcmp(t, "LeakyRelu")) {
        ir_attrs a = ir_attrs_default(IR_OP_leaky_relu);
        ir_attrs_set_f(&a, "alpha", ox_attr_f(n, "alpha", 0.01f));
        r = op1(c, IR_OP_leaky_relu, x, &a);
    } else if (!strcmp(t, "Elu")) {
        r = elu_core(c, x, ox_attr_f(n, "alpha", 1.0f));
    } else if (!strcmp(t, "Selu")) {
        ir_node *e = elu_core(c, x, ox_attr_f(n, "alpha", 1.67326319217681884765625f));
        r = ir_b_bin(b, IR_OP_mul, e, scalar(c, ox_attr_f(n, "gamma", 1.05070102214813232421875f)));
    } else if (!strcmp(t, "HardSigmoid")) {
        ir_node *y = ir_b_bin(b, IR_OP_mul, x, scalar(c, ox_attr_f(n, "alpha", 0.2f)));
        y = ir_b_bin(b, IR_OP_add, y, scalar(c, ox_attr_f(n, "beta", 0.5f)));
        r = ir_b_bin(b, IR_OP_maximum, ir_b_bin(b, IR_OP_minimum, y, scalar(c, 1)), scalar(c, 0));
    }
    return ox_set_as(c, OUT0(n), r, l);
}

static kiln_status b_binary(ox_ctx *c, const Onnx__NodeProto *n) {
    const char *t = n->op_type;
    if (n->n_input < 2 && strcmp(t, "Max") && strcmp(t, "Min") && strcmp(t, "Sum") &&
        strcmp(t, "Mean"))
        return ox_fail(c, KILN_ERR_INVALID, "expects two operands");
    int op = !strcmp(t, "Add") || !strcmp(t, "Sum") || !strcmp(t, "Mean") ? IR_OP_add
             : !strcmp(t, "Sub")                                          ? IR_OP_sub
             : !strcmp(t, "Mul")                                          ? IR_OP_mul
             : !strcmp(t, "Div")                                          ? IR_OP_div
             : !strcmp(t, "Max")                                          ? IR_OP_maximum
                                                                          : IR_OP_minimum;
    if (n->n_input > 64) return ox_fail(c, KILN_ERR_LIMIT, "more than 64 operands");
    /* Images all held in NHWC (a residual Add) stay so. */
    bool l = true;
    for (int k = 0; l && k < (int)n->n_input; k++) {
        ox_val *v = ox_has_in(n, k) ? ox_lookup(c, n->input[k]) : NULL;
        l = v && !v->node && v->nhwc;
    }
    ir_node *r = l ? ox_in_nhwc(c, n, 0) : ox_in(c, n, 0);
    if (r && r->type.dtype != IR_F32 && (op == IR_OP_div || !strcmp(t, "Mean")))
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "integer division is not supported");
    for (int k = 1; r && k < (int)n->n_input; k++) {
        ir_node *y = l ? ox_in_nhwc(c, n, k) : ox_in(c, n, k);
        if (y && y->type.dtype != r->type.dtype)
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "operands of different types");
        r = ir_b_bin(&c->b, op, r, y);
    }
    if (r && !strcmp(t, "Mean")) r = ir_b_bin(&c->b, IR_OP_div, r, scalar(c, (double)n->n_input));
    return ox_set_as(c, OUT0(n), r, l);
}

static kiln_status b_pow(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *x = in_f32(c, n, 0);
    const ox_tensor *e = ox_in_const(c, n, 1);
    if (!x) return KILN_ERR_UNSUPPORTED;
    bool same = e && e->n > 0 && e->rank <= x->type.rank;
    for (int64_t k = 1; same && k < e->n; k++)
        same = e->is_int ? e->i[k] == e->i[0] : e->f[k] == e->f[0];
    if (!same) return ox_fail(c, KILN_ERR_UNSUPPORTED, "the exponent must be one constant value");
    ir_attrs a = ir_attrs_default(IR_OP_pow);
    ir_attrs_set_f(&a, "exponent", e->is_int ? (double)e->i[0] : e->f[0]);
    ir_node *r = op1(c, IR_OP_pow, x, &a);
    if (r && e->rank && ir_type_numel(&r->type, 1) != ir_type_numel(&x->type, 1))
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "an exponent that broadcasts the base");
    return set0(c, n, r);
}

static kiln_status b_clip(ox_ctx *c, const Onnx__NodeProto *n) {
    bool l;
    ir_node *x = in_keep_f32(c, n, &l);
    if (!x) return KILN_ERR_UNSUPPORTED;
    ir_node *lo = NULL, *hi = NULL;
    if (c->opset < 11) {
        const Onnx__AttributeProto *a = ox_attr(n, "min"), *b = ox_attr(n, "max");
        if (a) lo = scalar(c, a->f);
        if (b) hi = scalar(c, b->f);
    } else {
        if (ox_has_in(n, 1)) lo = ox_in(c, n, 1);
        if (ox_has_in(n, 2)) hi = ox_in(c, n, 2);
    }
    ir_node *r = x;
    if (lo) r = ir_b_bin(&c->b, IR_OP_maximum, r, lo);
    if (hi) r = ir_b_bin(&c->b, IR_OP_minimum, r, hi);
    if (r == x) r = ir_b_bin(&c->b, IR_OP_add, x, scalar(c, 0)); /* a value of its own */
    return ox_set_as(c, OUT0(n), r, l && (!lo || !lo->type.rank) && (!hi || !hi->type.rank));
}

/* ---- shapes ---- */

/* Reshape to `dims` (ONNX's: OX_BATCH is the batch). */
static ir_node *reshape(ox_ctx *c, ir_node *x, int rank, const int64_t *dims) {
    if (!x) return NULL;
    int64_t d[KILN_MAX_RANK];
    for (int k = 0; k < rank; k++) d[k] = dims[k] == OX_BATCH ? KILN_BATCH : dims[k];
    ir_attrs a = ir_attrs_default(IR_OP_reshape);
    ir_attrs_set_ints(&a, "shape", rank, d);
    return op1(c, IR_OP_reshape, x, &a);
}

/* Product of x's dims [lo, hi); OX_BATCH when that range holds the batch
 * and the rest is 1; -2 when not expressible. */
static int64_t dims_product(const ir_type *t, int lo, int hi) {
    int64_t p = 1;
    bool batch = false;
    for (int k = lo; k < hi; k++) {
        if (t->dims[k] == KILN_BATCH)
            batch = true;
        else
            p *= t->dims[k];
    }
    if (!batch) return p;
    return p == 1 ? OX_BATCH : -2;
}

/* The NHWC node of operand 0 when it is held only in NHWC, else NULL. */
static ir_node *held_nhwc(ox_ctx *c, const Onnx__NodeProto *n) {
    ox_val *v = ox_has_in(n, 0) ? ox_lookup(c, n->input[0]) : NULL;
    return v && !v->node && v->nhwc ? v->nhwc : NULL;
}

static kiln_status b_flatten(ox_ctx *c, const Onnx__NodeProto *n) {
    int64_t axis = ox_attr_i(n, "axis", 1);
    ir_node *h = held_nhwc(c, n);
    if (h && (axis == 1 || axis == -3)) return ox_set_flat(c, OUT0(n), h);
    ir_node *x = ox_in(c, n, 0);
    if (!x) return KILN_ERR_INVALID;
    if (axis < 0) axis += x->type.rank;
    if (axis < 0 || axis > x->type.rank) return ox_fail(c, KILN_ERR_INVALID, "axis out of range");
    int64_t d[2] = {dims_product(&x->type, 0, (int)axis),
                    dims_product(&x->type, (int)axis, x->type.rank)};
    if (d[0] == -2 || d[1] == -2)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "flattening the batch axis into others");
    return set0(c, n, reshape(c, x, 2, d));
}

static kiln_status b_reshape(ox_ctx *c, const Onnx__NodeProto *n) {
    kiln_status fst;
    if (ox_fold(c, n, &fst)) return fst;
    const ox_tensor *s = ox_in_const(c, n, 1);
    ir_node *h = held_nhwc(c, n), *x = h;
    ir_type ht;
    if (h) { /* the NCHW type, for the arithmetic below */
        static const int64_t nchw[4] = {0, 3, 1, 2};
        int64_t d[4];
        for (int k = 0; k < 4; k++) d[k] = h->type.dims[nchw[k]];
        ht = ir_type_make(IR_F32, 4, d);
    }
    const ir_type *xt = h ? &ht : NULL;
    if (!h && (x = ox_in(c, n, 0))) xt = &x->type;
    if (!x) return KILN_ERR_INVALID;
    if (!s || !s->is_int || s->rank != 1)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "the shape must be a constant 1-D int tensor");
    if (s->n > KILN_MAX_RANK) return ox_fail(c, KILN_ERR_LIMIT, "rank %lld", (long long)s->n);
    int64_t d[KILN_MAX_RANK], known = 1;
    int infer = -1;
    bool batch = false;
    for (int k = 0; k < (int)s->n; k++) {
        int64_t v = s->i[k];
        if (v == 0 && !ox_attr_i(n, "allowzero", 0))
            v = k < xt->rank ? (xt->dims[k] == KILN_BATCH ? OX_BATCH : xt->dims[k]) : 0;
        if (v == -1 && infer < 0) infer = k;
        else if (v == OX_BATCH && !batch) batch = true;
        else if (v < 0) return ox_fail(c, KILN_ERR_INVALID, "bad shape entry %lld", (long long)s->i[k]);
        else if (v >= IR_MAX_DIM || (known *= v ? v : 1) > IR_MAX_ELEMS) /* (fuzzer find) */
            return ox_fail(c, KILN_ERR_LIMIT, "shape entry %lld: more than 2^31 elements", (long long)v);
        d[k] = v;
    }
    bool xb = ir_type_batch_axis(xt) >= 0;
    int64_t numel = ir_type_static_numel(xt);
    if (infer >= 0) {
        if (xb && !batch && known == numel) d[infer] = OX_BATCH;
        else if (known == 0 || numel % known) return ox_fail(c, KILN_ERR_SHAPE, "cannot infer the -1 dimension");
        else d[infer] = numel / known;
    }
    /* [N, C*H*W] of an image held in NHWC: its flattening (onnx_conv.c) */
    if (h && s->n == 2 && (d[0] == OX_BATCH) == (xt->dims[0] == KILN_BATCH) &&
        (d[0] == OX_BATCH || d[0] == xt->dims[0]) && d[1] == xt->dims[1] * xt->dims[2] * xt->dims[3])
        return ox_set_flat(c, OUT0(n), h);
    if (h && !(x = ox_in(c, n, 0))) return KILN_ERR_INVALID;
    return set0(c, n, reshape(c, x, (int)s->n, d));
}

static kiln_status b_transpose(ox_ctx *c, const Onnx__NodeProto *n) {
    kiln_status fst;
    if (ox_fold(c, n, &fst)) return fst;
    ir_node *h = held_nhwc(c, n);
    ir_node *x = h ? h : ox_in(c, n, 0);
    if (!x) return KILN_ERR_INVALID;
    const int64_t *p;
    int np = ox_attr_ints(n, "perm", &p);
    int64_t perm[KILN_MAX_RANK];
    int r = x->type.rank;
    if (np >= 0 && np != r) return ox_fail(c, KILN_ERR_INVALID, "perm has %d entries for rank %d", np, r);
    static const int64_t nchw[4] = {0, 3, 1, 2}; /* NCHW axis k is NHWC axis nchw[k] */
    bool same = true;
    for (int k = 0; k < r; k++) {
        perm[k] = np >= 0 ? p[k] : r - 1 - k;
        if (perm[k] < 0 || perm[k] >= r) return ox_fail(c, KILN_ERR_INVALID, "bad perm");
        if (h) perm[k] = nchw[perm[k]]; /* one transpose from the NHWC node */
        same = same && perm[k] == k;
    }
    if (same && h) return set0(c, n, h); /* ONNX's own NCHW -> NHWC */
    ir_attrs a = ir_attrs_default(IR_OP_transpose);
    ir_attrs_set_ints(&a, "perm", r, perm);
    return set0(c, n, op1(c, IR_OP_transpose, x, &a));
}

static kiln_status b_identity(ox_ctx *c, const Onnx__NodeProto *n) {
    if (n->n_output > 1 && n->output[1] && n->output[1][0])
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "the mask output of Dropout");
    if (!strcmp(n->op_type, "Dropout") && ox_has_in(n, 2)) { /* training_mode */
        const ox_tensor *t = ox_in_const(c, n, 2);
        if (!t || !t->is_int || t->n != 1 || t->i[0])
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "Dropout in training mode");
    }
    if (!strcmp(n->op_type, "Dropout") && c->opset < 7 && ox_attr_i(n, "is_test", 0) == 0)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "Dropout in training mode (is_test=0)");
    ox_val *v = ox_has_in(n, 0) ? ox_lookup(c, n->input[0]) : NULL;
    if (v && v->k && !v->node) return ox_set_const(c, OUT0(n), v->k);
    bool l;
    ir_node *x = ox_in_keep(c, n, 0, &l);
    if (!x || strcmp(n->op_type, "Dropout") || x->type.dtype != IR_F32) return ox_set_as(c, OUT0(n), x, l);
    /* Dropout: Kiln's dropout op, active in train_step only (the pass
     * inference-mode removes it elsewhere, as ONNX's inference does). */
    double rate = ox_attr_f(n, "ratio", 0.5f);
    if (c->opset >= 12 && ox_has_in(n, 1)) {
        const ox_tensor *t = ox_in_const(c, n, 1);
        /* a run-time ratio: the identity of inference (no dropout in training) */
        if (!t || t->is_int || t->n != 1) return ox_set_as(c, OUT0(n), x, l);
        rate = t->f[0];
    } else if (c->opset >= 12) {
        rate = 0.5;
    }
    if (!(rate >= 0 && rate < 1)) return ox_fail(c, KILN_ERR_INVALID, "ratio %g out of [0, 1)", rate);
    if (rate == 0) return ox_set_as(c, OUT0(n), x, l);
    ir_attrs a = ir_attrs_default(IR_OP_dropout);
    ir_attrs_set_f(&a, "rate", rate);
    ir_attrs_set_i(&a, "node", c->n_dropout++);
    ir_node *in[2] = {x, ir_b_const(&c->b, IR_I32, 0, 0, NULL)};
    return ox_set_as(c, OUT0(n), in[1] ? ir_b_op(&c->b, IR_OP_dropout, 2, in, &a) : NULL, l);
}

/* Axes from the attribute (before `input_from`) or operand 1; *count -1: absent. */
static kiln_status read_axes(ox_ctx *c, const Onnx__NodeProto *n, int64_t input_from,
                             int64_t *axes, int *count) {
    *count = -1;
    if (c->opset < input_from) {
        const int64_t *v;
        int k = ox_attr_ints(n, "axes", &v);
        if (k > KILN_MAX_RANK) return ox_fail(c, KILN_ERR_LIMIT, "too many axes");
        for (int j = 0; j < k; j++) axes[j] = v[j];
        *count = k;
        return KILN_OK;
    }
    if (!ox_has_in(n, 1)) return KILN_OK;
    const ox_tensor *t = ox_in_const(c, n, 1);
    if (!t || !t->is_int) return ox_fail(c, KILN_ERR_UNSUPPORTED, "axes must be a constant");
    if (t->n > KILN_MAX_RANK) return ox_fail(c, KILN_ERR_LIMIT, "too many axes");
    for (int j = 0; j < (int)t->n; j++) axes[j] = t->i[j];
    *count = (int)t->n;
    return KILN_OK;
}

/* New dims for Squeeze (unsq false) or Unsqueeze of dims[rank]; -1 on bad axes. */
static int squeeze_dims(const int64_t *dims, int rank, const int64_t *axes, int na, bool unsq,
                        int64_t *out) {
    bool mark[2 * KILN_MAX_RANK] = {0};
    int orank = unsq ? rank + na : rank;
    if (orank > KILN_MAX_RANK) return -1;
    for (int j = 0; j < na; j++) {
        int64_t a = axes[j] < 0 ? axes[j] + orank : axes[j];
        if (a < 0 || a >= orank || mark[a]) return -1;
        mark[a] = true;
    }
    int r = 0, src = 0;
    for (int k = 0; k < orank; k++) {
        if (unsq) {
            out[r++] = mark[k] ? 1 : dims[src++];
        } else if (!(na < 0 ? dims[k] == 1 : mark[k])) {
            out[r++] = dims[k];
        } else if (dims[k] != 1) {
            return -1;
        }
    }
    return r;
}

static kiln_status b_squeeze(ox_ctx *c, const Onnx__NodeProto *n) {
    bool unsq = !strcmp(n->op_type, "Unsqueeze");
    int64_t axes[KILN_MAX_RANK], out[KILN_MAX_RANK];
    int na;
    kiln_status st = read_axes(c, n, 13, axes, &na);
    if (st) return st;
    if (unsq && na < 0) return ox_fail(c, KILN_ERR_INVALID, "Unsqueeze needs axes");
    ox_val *v = ox_has_in(n, 0) ? ox_lookup(c, n->input[0]) : NULL;
    if (v && v->k && !v->node) { /* shape arithmetic */
        int r = squeeze_dims(v->k->dims, v->k->rank, axes, na, unsq, out);
        if (r < 0) return ox_fail(c, KILN_ERR_INVALID, "bad axes");
        ox_tensor *t = ox_const_new(c, v->k->is_int, r, out);
        if (!t) return ir_oom(c->d);
        memcpy(t->is_int ? (void *)t->i : (void *)t->f, t->is_int ? (void *)v->k->i : (void *)v->k->f,
               (size_t)t->n * (t->is_int ? 8 : 4));
        return ox_set_const(c, OUT0(n), t);
    }
    ir_node *x = ox_in(c, n, 0);
    if (!x) return KILN_ERR_INVALID;
    int64_t dims[KILN_MAX_RANK];
    for (int k = 0; k < x->type.rank; k++)
        dims[k] = x->type.dims[k] == KILN_BATCH ? OX_BATCH : x->type.dims[k];
    int r = squeeze_dims(dims, x->type.rank, axes, na, unsq, out);
    if (r < 0) return ox_fail(c, KILN_ERR_INVALID, "bad axes for rank %d", x->type.rank);
    return set0(c, n, reshape(c, x, r, out));
}

/* ---- constants and shape arithmetic ---- */

static kiln_status b_constant(ox_ctx *c, const Onnx__NodeProto *n) {
    const Onnx__AttributeProto *a;
    ox_tensor *t = NULL;
    kiln_status st = KILN_OK;
    if ((a = ox_attr(n, "value")) && a->t) {
        st = ox_tensor_from_proto(c, a->t, OUT0(n), &t);
    } else if ((a = ox_attr(n, "value_float")) || (a = ox_attr(n, "value_int"))) {
        bool is_int = !strcmp(a->name, "value_int");
        if (!(t = ox_const_new(c, is_int, 0, NULL))) return ir_oom(c->d);
        if (is_int) t->i[0] = a->i; else t->f[0] = a->f;
    } else if ((a = ox_attr(n, "value_floats")) || (a = ox_attr(n, "value_ints"))) {
        bool is_int = !strcmp(a->name, "value_ints");
        int64_t len = (int64_t)(is_int ? a->n_ints : a->n_floats);
        if (!(t = ox_const_new(c, is_int, 1, &len))) return ir_oom(c->d);
        for (int64_t k = 0; k < len; k++) {
            if (is_int) t->i[k] = a->ints[k]; else t->f[k] = a->floats[k];
        }
    } else {
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "only tensor, float(s) and int(s) values");
    }
    return st ? st : ox_set_const(c, OUT0(n), t);
}

static kiln_status b_shape(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *x = ox_in(c, n, 0);
    if (!x) return KILN_ERR_INVALID;
    int64_t r = x->type.rank, lo = ox_attr_i(n, "start", 0), hi = ox_attr_i(n, "end", r);
    if (lo < 0) lo += r;
    if (hi < 0) hi += r;
    lo = lo < 0 ? 0 : lo > r ? r : lo;
    hi = hi < lo ? lo : hi > r ? r : hi;
    int64_t len = hi - lo;
    ox_tensor *t = ox_const_new(c, true, 1, &len);
    if (!t) return ir_oom(c->d);
    for (int64_t k = lo; k < hi; k++)
        t->i[k - lo] = x->type.dims[k] == KILN_BATCH ? OX_BATCH : x->type.dims[k];
    return ox_set_const(c, OUT0(n), t);
}

static kiln_status b_gather(ox_ctx *c, const Onnx__NodeProto *n) {
    const ox_tensor *x = ox_in_const(c, n, 0), *i = ox_in_const(c, n, 1);
    if (!x || !i || x->rank != 1 || !i->is_int || i->rank > 1 || ox_attr_i(n, "axis", 0) != 0)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "Gather only on 1-D constants (shape arithmetic)");
    ox_tensor *t = ox_const_new(c, x->is_int, i->rank, i->dims);
    if (!t) return ir_oom(c->d);
    for (int64_t k = 0; k < i->n; k++) {
        int64_t j = i->i[k] < 0 ? i->i[k] + x->n : i->i[k];
        if (j < 0 || j >= x->n) return ox_fail(c, KILN_ERR_INVALID, "index out of range");
        if (t->is_int) t->i[k] = x->i[j]; else t->f[k] = x->f[j];
    }
    return ox_set_const(c, OUT0(n), t);
}

static kiln_status b_concat(ox_ctx *c, const Onnx__NodeProto *n) {
    int64_t len = 0;
    bool shape = n->n_input > 0;
    for (int k = 0; k < (int)n->n_input && shape; k++) {
        const ox_tensor *x = ox_in_const(c, n, k);
        shape = x && x->rank == 1 && x->is_int;
        if (shape) len += x->n;
    }
    /* Shape arithmetic is folded; anything else is computed at run time. */
    if (!shape || len > KILN_MAX_RANK * 64) return ox_concat_run(c, n);
    ox_tensor *t = ox_const_new(c, true, 1, &len);
    if (!t) return ir_oom(c->d);
    int64_t at = 0;
    for (int k = 0; k < (int)n->n_input; k++) {
        const ox_tensor *x = ox_in_const(c, n, k);
        if (!x->is_int) return ox_fail(c, KILN_ERR_UNSUPPORTED, "mixed types");
        memcpy(t->i + at, x->i, (size_t)x->n * 8);
        at += x->n;
    }
    return ox_set_const(c, OUT0(n), t);
}

static kiln_status b_cast(ox_ctx *c, const Onnx__NodeProto *n) {
    kiln_status fst;
    if (ox_fold(c, n, &fst)) return fst;
    int64_t to = ox_attr_i(n, "to", 0);
    if (!strcmp(n->op_type, "CastLike")) {
        ir_node *like = ox_in(c, n, 1);
        if (!like) return KILN_ERR_INVALID;
        to = like->type.dtype == IR_F32 ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
                                        : ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    }
    bool to_f = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    if (!to_f && to != ONNX__TENSOR_PROTO__DATA_TYPE__INT32 && to != ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "Cast to data type %lld", (long long)to);
    ir_node *x = ox_in(c, n, 0);
    if (!x) return KILN_ERR_INVALID;
    if ((x->type.dtype == IR_F32) == to_f) return set0(c, n, ir_b_bin(&c->b, IR_OP_add, x, ir_b_const(&c->b, (ir_dtype)x->type.dtype, 0, 0, NULL)));
    ir_attrs a = ir_attrs_default(IR_OP_cast);
    ir_attrs_set_i(&a, "dtype", to_f ? IR_F32 : IR_I32);
    return set0(c, n, op1(c, IR_OP_cast, x, &a));
}

/* ---- linear algebra, reductions ---- */

/* Gemm. A constant B is held as [in, out] whatever transB says (Kiln's
 * dense layout: no transpose at run time, and fuse-dense-act applies). */
static kiln_status b_gemm(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *a = NULL, *b = NULL;
    bool ta = ox_attr_i(n, "transA", 0) != 0, tb = ox_attr_i(n, "transB", 0) != 0;
    if (!ta && ox_flat_matmul(c, n, 0, 1, tb, &a, &b)) {
        tb = false;
    } else {
        kiln_status st = tb ? ox_const_transposed(c, n, 1, &b) : KILN_OK;
        if (st) return st;
        if (b) tb = false;
        a = in_f32(c, n, 0);
        if (!b) b = in_f32(c, n, 1);
    }
    if (!a || !b) return KILN_ERR_UNSUPPORTED;
    float alpha = ox_attr_f(n, "alpha", 1), beta = ox_attr_f(n, "beta", 1);
    ir_node *y = ir_b_matmul(&c->b, a, b, ta, tb);
    if (alpha != 1) y = ir_b_bin(&c->b, IR_OP_mul, y, scalar(c, alpha));
    if (ox_has_in(n, 2) && beta != 0) {
        ir_node *cc = in_f32(c, n, 2);
        if (!cc) return KILN_ERR_UNSUPPORTED;
        if (beta != 1) cc = ir_b_bin(&c->b, IR_OP_mul, cc, scalar(c, beta));
        y = ir_b_bin(&c->b, IR_OP_add, y, cc);
    }
    return set0(c, n, y);
}

static kiln_status b_matmul(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *a, *b;
    if (ox_flat_matmul(c, n, 0, 1, false, &a, &b)) return set0(c, n, ir_b_matmul(&c->b, a, b, false, false));
    a = in_f32(c, n, 0), b = in_f32(c, n, 1);
    if (!a || !b) return KILN_ERR_UNSUPPORTED;
    int ra = a->type.rank, rb = b->type.rank;
    if (rb != 2 || ra < 1 || (ra > 2 && ir_type_batch_axis(&a->type) >= 0))
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "batched MatMul (ranks %d and %d)", ra, rb);
    if (ra == 2) return set0(c, n, ir_b_matmul(&c->b, a, b, false, false));
    int64_t k = a->type.dims[ra - 1], rows = ra == 1 ? 1 : ir_type_static_numel(&a->type) / (k ? k : 1);
    int64_t d2[2] = {rows, k}, out[KILN_MAX_RANK];
    ir_node *y = ir_b_matmul(&c->b, reshape(c, a, 2, d2), b, false, false);
    for (int j = 0; j < ra - 1; j++) out[j] = a->type.dims[j];
    out[ra - 1] = b->type.dims[1];
    return set0(c, n, ra == 1 ? reshape(c, y, 1, out + ra - 1) : reshape(c, y, ra, out));
}

static kiln_status b_reduce(ox_ctx *c, const Onnx__NodeProto *n) {
    const char *t = n->op_type;
    int op = !strcmp(t, "ReduceSum") ? IR_OP_reduce_sum
             : !strcmp(t, "ReduceMean") ? IR_OP_reduce_mean : IR_OP_reduce_max;
    ir_node *x = in_f32(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    int64_t axes[KILN_MAX_RANK];
    int na;
    kiln_status st = read_axes(c, n, op == IR_OP_reduce_sum ? 13 : 18, axes, &na);
    if (st) return st;
    if (na <= 0 && ox_attr_i(n, "noop_with_empty_axes", 0))
        return set0(c, n, ir_b_bin(&c->b, IR_OP_add, x, scalar(c, 0)));
    if (na <= 0) {
        na = x->type.rank;
        for (int k = 0; k < na; k++) axes[k] = k;
    }
    if (na == 0) return set0(c, n, ir_b_bin(&c->b, IR_OP_add, x, scalar(c, 0)));
    return set0(c, n, ir_b_reduce(&c->b, op, x, na, axes, ox_attr_i(n, "keepdims", 1) != 0));
}

static kiln_status b_argmax(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *x = in_f32(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    if (ox_attr_i(n, "select_last_index", 0))
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "select_last_index=1");
    int64_t axis = ox_attr_i(n, "axis", 0), r = x->type.rank;
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= r) return ox_fail(c, KILN_ERR_INVALID, "axis out of range");
    ir_attrs a = ir_attrs_default(IR_OP_argmax);
    ir_attrs_set_i(&a, "axis", axis);
    ir_node *y = op1(c, IR_OP_argmax, strcmp(n->op_type, "ArgMin") ? x : ir_b_un(&c->b, IR_OP_neg, x), &a);
    if (y && ox_attr_i(n, "keepdims", 1)) {
        int64_t d[KILN_MAX_RANK];
        for (int k = 0; k < r; k++)
            d[k] = k == axis ? 1 : x->type.dims[k] == KILN_BATCH ? OX_BATCH : x->type.dims[k];
        y = reshape(c, y, (int)r, d);
    }
    return set0(c, n, y);
}

static kiln_status b_softmax(ox_ctx *c, const Onnx__NodeProto *n) {
    int op = !strcmp(n->op_type, "Softmax") ? IR_OP_softmax : IR_OP_log_softmax;
    ir_node *x = in_f32(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    int r = x->type.rank;
    int64_t axis = ox_attr_i(n, "axis", c->opset < 13 ? 1 : -1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= (r ? r : 1)) return ox_fail(c, KILN_ERR_INVALID, "axis out of range");
    ir_attrs a = ir_attrs_default(op);
    if (c->opset >= 13 || axis == r - 1) {
        ir_attrs_set_i(&a, "axis", axis);
        return set0(c, n, op1(c, op, x, &a));
    }
    /* Before opset 13: over the flattened axes [axis, rank). */
    int64_t d2[2] = {dims_product(&x->type, 0, (int)axis), dims_product(&x->type, (int)axis, r)};
    if (d2[0] == -2 || d2[1] == -2 || d2[1] == OX_BATCH)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "coercing the batch axis to 2-D");
    ir_attrs_set_i(&a, "axis", 1);
    ir_node *y = op1(c, op, reshape(c, x, 2, d2), &a);
    int64_t d[KILN_MAX_RANK];
    for (int k = 0; k < r; k++) d[k] = x->type.dims[k] == KILN_BATCH ? OX_BATCH : x->type.dims[k];
    return set0(c, n, reshape(c, y, r, d));
}

/* ---- the table ---- */

typedef struct ox_op {
    const char *type;
    int64_t first, last; /* opset versions handled */
    ox_build_fn fn;
} ox_op;

#define LAST 18 /* the newest opset this table was checked against */

static const ox_op g_ops[] = {
    {"Gemm", 1, LAST, b_gemm},           {"MatMul", 1, LAST, b_matmul},
    {"Add", 1, LAST, b_binary},          {"Sub", 1, LAST, b_binary},
    {"Mul", 1, LAST, b_binary},          {"Div", 1, LAST, b_binary},
    {"Max", 1, LAST, b_binary},          {"Min", 1, LAST, b_binary},
    {"Sum", 1, LAST, b_binary},          {"Mean", 1, LAST, b_binary},
    {"Pow", 1, LAST, b_pow},             {"Neg", 1, LAST, b_unary},
    {"Abs", 1, LAST, b_unary},           {"Relu", 1, LAST, b_unary},
    {"LeakyRelu", 1, LAST, b_unary},     {"Elu", 1, LAST, b_unary},
    {"Selu", 1, LAST, b_unary},          {"Sigmoid", 1, LAST, b_unary},
    {"HardSigmoid", 1, LAST, b_unary},   {"Softplus", 1, LAST, b_unary},
    {"Tanh", 1, LAST, b_unary},          {"Exp", 1, LAST, b_unary},
    {"Log", 1, LAST, b_unary},           {"Sqrt", 1, LAST, b_unary},
    {"Reciprocal", 1, LAST, b_unary},    {"Clip", 1, LAST, b_clip},
    {"Softmax", 1, LAST, b_softmax},     {"LogSoftmax", 1, LAST, b_softmax},
    {"Flatten", 1, LAST, b_flatten},     {"Reshape", 5, LAST, b_reshape},
    {"Transpose", 1, LAST, b_transpose}, {"Identity", 1, LAST, b_identity},
    {"Dropout", 1, LAST, b_identity},    {"Constant", 1, LAST, b_constant},
    {"ReduceMean", 1, LAST, b_reduce},   {"ReduceSum", 1, LAST, b_reduce},
    {"ReduceMax", 1, LAST, b_reduce},    {"ArgMax", 1, LAST, b_argmax},
    {"ArgMin", 1, LAST, b_argmax},
    {"Cast", 6, LAST, b_cast},           {"Squeeze", 1, LAST, b_squeeze},
    {"Unsqueeze", 1, LAST, b_squeeze},   {"Shape", 1, LAST, b_shape},
    {"Gather", 1, LAST, b_gather},       {"Concat", 4, LAST, b_concat},
    /* onnx_more.c */
    {"Equal", 1, LAST, ox_b_compare},    {"Greater", 1, LAST, ox_b_compare},
    {"Less", 1, LAST, ox_b_compare},     {"GreaterOrEqual", 12, LAST, ox_b_compare},
    {"LessOrEqual", 12, LAST, ox_b_compare}, {"And", 1, LAST, ox_b_compare},
    {"Or", 1, LAST, ox_b_compare},       {"Xor", 1, LAST, ox_b_compare},
    {"Not", 1, LAST, ox_b_not},          {"Where", 9, LAST, ox_b_where},
    {"Sign", 9, LAST, ox_b_act},         {"Softsign", 1, LAST, ox_b_act},
    {"PRelu", 1, LAST, ox_b_act},        {"ThresholdedRelu", 10, LAST, ox_b_act},
    {"Celu", 12, LAST, ox_b_act},        {"HardSwish", 14, LAST, ox_b_act},
    {"Mish", 18, LAST, ox_b_act},        {"ReduceMin", 1, LAST, ox_b_reduce_more},
    {"ReduceSumSquare", 1, LAST, ox_b_reduce_more}, {"ReduceL1", 1, LAST, ox_b_reduce_more},
    {"ReduceL2", 1, LAST, ox_b_reduce_more}, {"ReduceLogSum", 1, LAST, ox_b_reduce_more},
    {"ReduceLogSumExp", 1, LAST, ox_b_reduce_more}, {"Expand", 8, LAST, ox_b_expand},
    {"Size", 1, LAST, ox_b_size},        {"ConstantOfShape", 9, LAST, ox_b_constant_of_shape},
    {"CastLike", 15, LAST, b_cast},
    /* onnx_conv.c */
    {"Conv", 1, LAST, ox_b_conv},        {"MaxPool", 1, LAST, ox_b_pool},
    {"AveragePool", 1, LAST, ox_b_pool}, {"GlobalAveragePool", 1, LAST, ox_b_global_pool},
    {"GlobalMaxPool", 1, LAST, ox_b_global_pool}, {"BatchNormalization", 1, LAST, ox_b_batch_norm},
    {"Pad", 1, LAST, ox_b_pad},          {"Slice", 1, LAST, ox_b_slice},
};

ox_build_fn ox_op_find(const char *op_type, int64_t opset, const char **why) {
    for (size_t k = 0; k < sizeof g_ops / sizeof g_ops[0]; k++) {
        if (strcmp(g_ops[k].type, op_type)) continue;
        if (opset >= g_ops[k].first && opset <= g_ops[k].last) return g_ops[k].fn;
        if (why) *why = opset < g_ops[k].first ? "opset too old" : "opset newer than supported";
        return NULL;
    }
    if (why) *why = NULL;
    return NULL;
}

#endif

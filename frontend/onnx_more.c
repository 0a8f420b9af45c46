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
    if (numel > (1 << 20)) { /* too big to hold at import time: a run-time fill (fuzzer find) */
        if (s->n > KILN_MAX_RANK) return ox_fail(c, KILN_ERR_LIMIT, "rank %lld", (long long)s->n);
        bool vi = v && v->is_int;
        if (vi && (v->i[0] < INT32_MIN || v->i[0] > INT32_MAX))
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "a value beyond int32");
        return ox_set(c, OUT0(n), ir_b_const(&c->b, vi ? IR_I32 : IR_F32,
                                             vi ? (double)v->i[0] : v ? v->f[0] : 0, (int)s->n, s->i));
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

/* ---- host constants: what PyTorch's F.pad computes its pads with
 * (Reshape, Slice with step -1, Transpose, Cast of small constants) is
 * folded at import time, as shape arithmetic is. */

/* Operand 0 when it is a host constant small enough to fold, else NULL. */
static const ox_tensor *small_const(ox_ctx *c, const Onnx__NodeProto *n) {
    const ox_tensor *k = ox_in_const(c, n, 0);
    ox_val *v = k ? ox_lookup(c, n->input[0]) : NULL;
    return k && !v->initializer && k->n <= 4096 ? k : NULL;
}

bool ox_fold(ox_ctx *c, const Onnx__NodeProto *n, kiln_status *st) {
    const ox_tensor *k = small_const(c, n);
    if (!k) return false;
    *st = KILN_OK;
    ox_tensor *t = NULL;
    if (!strcmp(n->op_type, "Reshape")) {
        const ox_tensor *s = ox_in_const(c, n, 1);
        if (!s || !s->is_int || s->rank != 1 || s->n > KILN_MAX_RANK) return false;
        int64_t d[KILN_MAX_RANK], known = 1;
        int infer = -1;
        for (int j = 0; j < (int)s->n; j++) {
            d[j] = s->i[j] == 0 ? (j < k->rank ? k->dims[j] : 0) : s->i[j];
            if (d[j] == -1 && infer < 0) infer = j;
            else if (d[j] < 0 || d[j] > k->n) return false; /* (0: no data to reshape) */
            else known *= d[j];
        }
        if (infer >= 0) d[infer] = known ? k->n / known : 0;
        int64_t m = 1;
        for (int j = 0; j < (int)s->n; j++) m *= d[j];
        if (m != k->n) return false;
        if (!(t = ox_const_new(c, k->is_int, (int)s->n, d))) return (*st = ir_oom(c->d)), true;
        memcpy(k->is_int ? (void *)t->i : (void *)t->f, k->is_int ? (void *)k->i : (void *)k->f,
               (size_t)k->n * (k->is_int ? 8 : 4));
    } else if (!strcmp(n->op_type, "Transpose")) {
        const int64_t *p;
        int np = ox_attr_ints(n, "perm", &p), r = k->rank;
        if (np >= 0 && np != r) return false;
        int64_t perm[KILN_MAX_RANK], d[KILN_MAX_RANK], st_[KILN_MAX_RANK], s = 1;
        for (int j = r - 1; j >= 0; j--) st_[j] = s, s *= k->dims[j];
        for (int j = 0; j < r; j++) {
            perm[j] = np >= 0 ? p[j] : r - 1 - j;
            if (perm[j] < 0 || perm[j] >= r) return false;
            d[j] = k->dims[perm[j]];
        }
        if (!(t = ox_const_new(c, k->is_int, r, d))) return (*st = ir_oom(c->d)), true;
        int64_t idx[KILN_MAX_RANK] = {0};
        for (int64_t e = 0; e < t->n; e++) {
            int64_t off = 0;
            for (int j = 0; j < r; j++) off += idx[j] * st_[perm[j]];
            if (k->is_int) t->i[e] = k->i[off]; else t->f[e] = k->f[off];
            for (int j = r - 1; j >= 0 && ++idx[j] == d[j]; j--) idx[j] = 0;
        }
    } else if (!strcmp(n->op_type, "Cast")) {
        int64_t to = ox_attr_i(n, "to", 0);
        bool to_f = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        if (!to_f && to != ONNX__TENSOR_PROTO__DATA_TYPE__INT32 &&
            to != ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
            return false;
        if (!(t = ox_const_new(c, !to_f, k->rank, k->dims))) return (*st = ir_oom(c->d)), true;
        for (int64_t e = 0; e < k->n; e++) {
            if (!to_f && !k->is_int && !(k->f[e] > -9e18f && k->f[e] < 9e18f))
                return false; /* NaN, Inf or beyond int64: left to the run-time cast */
            if (to_f) t->f[e] = k->is_int ? (float)k->i[e] : k->f[e];
            else t->i[e] = k->is_int ? k->i[e] : (int64_t)k->f[e];
        }
    } else {
        return false;
    }
    *st = ox_set_const(c, OUT0(n), t);
    return true;
}

/* Slice (opset 10+: starts, ends, axes, steps operands; before: attributes)
 * of a host constant, folded; of a run-time tensor with steps of 1, a pad
 * with negative counts (a crop). */
kiln_status ox_b_slice(ox_ctx *c, const Onnx__NodeProto *n) {
    const int64_t *sv[4] = {NULL, NULL, NULL, NULL};
    int cnt[4] = {-1, -1, -1, -1};
    static const char *const names[3] = {"starts", "ends", "axes"};
    for (int j = 0; j < 4; j++) {
        if (c->opset < 10) {
            if (j < 3) cnt[j] = ox_attr_ints(n, names[j], &sv[j]);
            continue;
        }
        if (!ox_has_in(n, j + 1)) continue;
        const ox_tensor *t = ox_in_const(c, n, j + 1);
        if (!t || !t->is_int || t->rank != 1)
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "Slice's %s must be a constant",
                           j < 3 ? names[j] : "steps");
        sv[j] = t->i;
        cnt[j] = (int)(t->n > 64 ? 64 : t->n);
    }
    if (cnt[0] < 0 || cnt[1] != cnt[0] || (cnt[2] >= 0 && cnt[2] != cnt[0]) ||
        (cnt[3] >= 0 && cnt[3] != cnt[0]))
        return ox_fail(c, KILN_ERR_INVALID, "starts, ends, axes and steps of different lengths");
    const ox_tensor *k = ox_in_const(c, n, 0);
    ir_node *x = k ? NULL : ox_in(c, n, 0);
    if (!k && !x) return KILN_ERR_INVALID;
    int r = k ? k->rank : x->type.rank;
    int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK], len[KILN_MAX_RANK], dims[KILN_MAX_RANK];
    for (int a = 0; a < r; a++) {
        dims[a] = k ? k->dims[a] : x->type.dims[a];
        start[a] = 0, step[a] = 1, len[a] = dims[a];
    }
    for (int j = 0; j < cnt[0]; j++) {
        int64_t a = cnt[2] >= 0 ? sv[2][j] : j, s = sv[0][j], e = sv[1][j];
        int64_t p = cnt[3] >= 0 ? sv[3][j] : 1;
        if (a < 0) a += r;
        if (a < 0 || a >= r || p == 0) return ox_fail(c, KILN_ERR_INVALID, "bad axis or step");
        if (p > IR_MAX_DIM || p < -IR_MAX_DIM) p = p > 0 ? IR_MAX_DIM : -IR_MAX_DIM; /* one element */
        int64_t dim = dims[a];
        if (dim == KILN_BATCH) {
            if (s == 0 && p == 1 && e >= INT32_MAX) continue; /* the whole batch */
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "Slice of the batch axis");
        }
        if (s < 0) s = s < -dim ? 0 : s + dim;
        if (e < 0) e = e < -dim ? -1 : e + dim;
        if (p > 0) {
            s = s > dim ? dim : s;
            e = e > dim ? dim : e < 0 ? 0 : e;
        } else {
            s = s > dim - 1 ? dim - 1 : s;
            e = e > dim - 1 ? dim - 1 : e;
        }
        int64_t m = p > 0 ? (e - s + p - 1) / p : (s - e + (-p) - 1) / (-p);
        start[a] = s, step[a] = p, len[a] = m > 0 ? m : 0;
        if (!len[a]) return ox_fail(c, KILN_ERR_UNSUPPORTED, "an empty Slice");
    }
    if (x) {
        int64_t before[KILN_MAX_RANK], after[KILN_MAX_RANK];
        for (int a = 0; a < r; a++) {
            if (step[a] != 1) return ox_fail(c, KILN_ERR_UNSUPPORTED, "Slice of a run-time tensor with steps other than 1");
            before[a] = dims[a] == KILN_BATCH ? 0 : -start[a];
            after[a] = dims[a] == KILN_BATCH ? 0 : start[a] + len[a] - dims[a];
        }
        return ox_set(c, OUT0(n), ox_pad(c, x, before, after, 0));
    }
    ox_tensor *t = ox_const_new(c, k->is_int, r, len);
    if (!t) return ir_oom(c->d);
    int64_t st_[KILN_MAX_RANK], s = 1, idx[KILN_MAX_RANK] = {0};
    for (int a = r - 1; a >= 0; a--) st_[a] = s, s *= dims[a];
    for (int64_t e = 0; e < t->n; e++) {
        int64_t off = 0;
        for (int a = 0; a < r; a++) off += (start[a] + idx[a] * step[a]) * st_[a];
        if (k->is_int) t->i[e] = k->i[off]; else t->f[e] = k->f[off];
        for (int a = r - 1; a >= 0 && ++idx[a] == len[a]; a--) idx[a] = 0;
    }
    return ox_set_const(c, OUT0(n), t);
}

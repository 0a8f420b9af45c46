/*
 * infer.c — shape and dtype inference, one function per ops.def row (some
 * rows share one). Each sets n->type from the operands and attributes, or
 * reports the op and the shapes involved:
 *     matmul: inner dimensions differ: f32[?,784] and f32[128,64]
 */
#include "ir/ir.h"

#include <string.h>

static const char *op_name(const ir_node *n) { return ir_op_name(n->op); }

static kiln_status err1(ir_node *n, kiln_diag *d, const char *what, const ir_type *a) {
    char ta[IR_TYPE_STR_MAX];
    return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: %s: %s", op_name(n), what,
                    ir_type_str(a, ta, sizeof ta));
}

static kiln_status err2(ir_node *n, kiln_diag *d, const char *what, const ir_type *a,
                        const ir_type *b) {
    char ta[IR_TYPE_STR_MAX], tb[IR_TYPE_STR_MAX];
    return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: %s: %s and %s", op_name(n), what,
                    ir_type_str(a, ta, sizeof ta), ir_type_str(b, tb, sizeof tb));
}

static const ir_type *ty(const ir_node *n, int k) { return &n->in[k]->type; }

static kiln_status need_f32(ir_node *n, int k, kiln_diag *d) {
    if (ty(n, k)->dtype != IR_F32) return err1(n, d, "expects f32 operands, got", ty(n, k));
    return KILN_OK;
}

static kiln_status need_not_void(ir_node *n, kiln_diag *d) {
    for (int k = 0; k < n->n_in; k++)
        if (ty(n, k)->dtype == IR_VOID)
            return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: operand %d has no value", op_name(n),
                            k + 1);
    return KILN_OK;
}

/* Validates a shape written by a user: dims in range, at most one '?'. */
static kiln_status check_shape_list(ir_node *n, kiln_diag *d, int rank, const int64_t *dims) {
    int nb = 0;
    int64_t total = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == KILN_BATCH) {
            nb++;
            continue;
        }
        if (dims[i] < 0 || dims[i] > IR_MAX_DIM)
            return ir_error(d, KILN_ERR_LIMIT, n->loc, "%s: dimension %lld is out of range",
                            op_name(n), (long long)dims[i]);
        if (dims[i] && total > IR_MAX_ELEMS / dims[i])
            return ir_error(d, KILN_ERR_LIMIT, n->loc, "%s: shape has more than 2^31 elements",
                            op_name(n));
        total *= dims[i];
    }
    if (nb > 1)
        return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: a shape may hold one '?' only",
                        op_name(n));
    return KILN_OK;
}

static kiln_status set_type(ir_node *n, kiln_diag *d, ir_dtype dt, int rank,
                            const int64_t *dims) {
    kiln_status st = check_shape_list(n, d, rank, dims);
    if (st) return st;
    n->type = ir_type_make(dt, rank, dims);
    return KILN_OK;
}

/* ---- elementwise ---- */

kiln_status infer_unary_f32(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st || (st = need_f32(n, 0, d))) return st;
    n->type = *ty(n, 0);
    return KILN_OK;
}

kiln_status infer_cast(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    int64_t to = ir_attr_i(n, "dtype");
    if (to != IR_F32 && to != IR_I32)
        return ir_error(d, KILN_ERR_INVALID, n->loc, "cast: unknown dtype %lld", (long long)to);
    n->type = *ty(n, 0);
    n->type.dtype = (uint8_t)to;
    return KILN_OK;
}

static kiln_status broadcast_all(ir_node *n, kiln_diag *d, int first, ir_type *out) {
    ir_type t = *ty(n, first);
    for (int k = first + 1; k < n->n_in; k++) {
        ir_type r;
        if (ir_broadcast_shapes(&t, ty(n, k), &r))
            return err2(n, d, "cannot broadcast", ty(n, first), ty(n, k));
        t = r;
    }
    *out = t;
    return KILN_OK;
}

static kiln_status same_dtype(ir_node *n, kiln_diag *d, int a, int b) {
    if (ty(n, a)->dtype != ty(n, b)->dtype)
        return err2(n, d, "operand dtypes differ", ty(n, a), ty(n, b));
    return KILN_OK;
}

kiln_status infer_binary(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st || (st = same_dtype(n, d, 0, 1))) return st;
    ir_type t;
    if ((st = broadcast_all(n, d, 0, &t))) return st;
    n->type = t;
    return KILN_OK;
}

kiln_status infer_binary_f32(ir_node *n, kiln_diag *d) {
    kiln_status st = infer_binary(n, d);
    if (st) return st;
    return need_f32(n, 0, d);
}

kiln_status infer_compare(ir_node *n, kiln_diag *d) {
    kiln_status st = infer_binary(n, d);
    if (st) return st;
    n->type.dtype = IR_I32;
    return KILN_OK;
}

kiln_status infer_select(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    if (ty(n, 0)->dtype != IR_I32) return err1(n, d, "condition must be i32, got", ty(n, 0));
    if ((st = same_dtype(n, d, 1, 2))) return st;
    ir_type t;
    if ((st = broadcast_all(n, d, 0, &t))) return st;
    t.dtype = ty(n, 1)->dtype;
    n->type = t;
    return KILN_OK;
}

kiln_status infer_broadcast_to(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const int64_t *shape;
    int rank = ir_attr_ints(n, "shape", &shape);
    ir_type target = ir_type_make((ir_dtype)ty(n, 0)->dtype, rank, shape);
    if ((st = check_shape_list(n, d, target.rank, target.dims))) return st;
    ir_type r;
    if (ir_broadcast_shapes(ty(n, 0), &target, &r) || !ir_type_eq(&r, &target))
        return err2(n, d, "cannot broadcast", ty(n, 0), &target);
    n->type = target;
    return KILN_OK;
}

kiln_status infer_constant(ir_node *n, kiln_diag *d) {
    int64_t dt = ir_attr_i(n, "dtype");
    if (dt != IR_F32 && dt != IR_I32)
        return ir_error(d, KILN_ERR_INVALID, n->loc, "constant: unknown dtype %lld",
                        (long long)dt);
    const int64_t *shape;
    int rank = ir_attr_ints(n, "shape", &shape);
    return set_type(n, d, (ir_dtype)dt, rank, shape);
}

/* ---- reductions ---- */

/* Normalizes, sorts and de-duplicates the axes list of n against `rank`. */
static kiln_status norm_axes(ir_node *n, kiln_diag *d, int rank) {
    int64_t seen[KILN_MAX_RANK] = {0};
    ir_attr *axes = ir_attr_mut(n, "axes");
    for (int i = 0; i < axes->n; i++) {
        int64_t a = axes->v.ints[i];
        if (!ir_norm_axis(&a, rank))
            return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: axis %lld is out of range for rank %d",
                            op_name(n), (long long)axes->v.ints[i], rank);
        if (seen[a])
            return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: axis %lld is repeated", op_name(n),
                            (long long)a);
        seen[a] = 1;
    }
    int k = 0;
    for (int a = 0; a < rank; a++)
        if (seen[a]) axes->v.ints[k++] = a;
    axes->n = (int8_t)k;
    return KILN_OK;
}

kiln_status infer_reduce(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *x = ty(n, 0);
    if (n->op == IR_OP_reduce_mean && (st = need_f32(n, 0, d))) return st;
    if ((st = norm_axes(n, d, x->rank))) return st;
    bool red[KILN_MAX_RANK] = {0};
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    if (na == 0)
        for (int a = 0; a < x->rank; a++) red[a] = true;
    for (int i = 0; i < na; i++) red[axes[i]] = true;
    bool keepdims = ir_attr_i(n, "keepdims");
    int64_t dims[KILN_MAX_RANK];
    int r = 0;
    for (int a = 0; a < x->rank; a++) {
        if (!red[a])
            dims[r++] = x->dims[a];
        else if (keepdims)
            dims[r++] = 1;
    }
    n->type = ir_type_make((ir_dtype)x->dtype, r, dims);
    return KILN_OK;
}

kiln_status infer_argmax(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *x = ty(n, 0);
    if (x->rank == 0) return err1(n, d, "needs at least one axis, got", x);
    int64_t *axis = &ir_attr_mut(n, "axis")->v.i;
    if (!ir_norm_axis(axis, x->rank))
        return ir_error(d, KILN_ERR_SHAPE, n->loc, "argmax: axis %lld is out of range for rank %d",
                        (long long)*axis, x->rank);
    int64_t dims[KILN_MAX_RANK];
    int r = 0;
    for (int a = 0; a < x->rank; a++)
        if (a != *axis) dims[r++] = x->dims[a];
    n->type = ir_type_make(IR_I32, r, dims);
    return KILN_OK;
}

kiln_status infer_softmax(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st || (st = need_f32(n, 0, d))) return st;
    const ir_type *x = ty(n, 0);
    if (x->rank == 0) return err1(n, d, "needs at least one axis, got", x);
    int64_t *axis = &ir_attr_mut(n, "axis")->v.i;
    if (!ir_norm_axis(axis, x->rank))
        return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: axis %lld is out of range for rank %d",
                        op_name(n), (long long)*axis, x->rank);
    n->type = *x;
    return KILN_OK;
}

kiln_status infer_numel(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st || (st = norm_axes(n, d, ty(n, 0)->rank))) return st;
    n->type = ir_type_scalar(IR_F32);
    return KILN_OK;
}

/* ---- linear algebra and layout ---- */

kiln_status infer_matmul(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *a = ty(n, 0), *b = ty(n, 1);
    if (a->rank != 2 || b->rank != 2) return err2(n, d, "operands must be matrices", a, b);
    if (a->dtype != IR_F32 || b->dtype != IR_F32)
        return err2(n, d, "operands must be f32", a, b);
    bool ta = ir_attr_i(n, "transpose_a") != 0, tb = ir_attr_i(n, "transpose_b") != 0;
    int64_t m = a->dims[ta ? 1 : 0], ka = a->dims[ta ? 0 : 1];
    int64_t kb = b->dims[tb ? 1 : 0], nn = b->dims[tb ? 0 : 1];
    if (ka != kb) return err2(n, d, "inner dimensions differ", a, b);
    if (m == KILN_BATCH && nn == KILN_BATCH)
        return err2(n, d, "result would have two batch dimensions", a, b);
    int64_t dims[2] = {m, nn};
    return set_type(n, d, IR_F32, 2, dims);
}

/* matmul's result, and the mask h of its shape (f32). */
kiln_status infer_matmul_mask(ir_node *n, kiln_diag *d) {
    kiln_status st = infer_matmul(n, d);
    if (st) return st;
    const ir_type *h = ty(n, 2);
    if (h->dtype != IR_F32 || !ir_type_eq(h, &n->type))
        return err2(n, d, "the mask must be f32 of the product's shape", h, &n->type);
    return KILN_OK;
}

kiln_status infer_reshape(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *x = ty(n, 0);
    const int64_t *shape;
    int rank = ir_attr_ints(n, "shape", &shape);
    ir_type t = ir_type_make((ir_dtype)x->dtype, rank, shape);
    if ((st = check_shape_list(n, d, t.rank, t.dims))) return st;
    bool xb = ir_type_batch_axis(x) >= 0, tb = ir_type_batch_axis(&t) >= 0;
    if (xb != tb || ir_type_static_numel(x) != ir_type_static_numel(&t))
        return err2(n, d, "element counts differ", x, &t);
    n->type = t;
    return KILN_OK;
}

kiln_status infer_transpose(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *x = ty(n, 0);
    ir_attr *perm = ir_attr_mut(n, "perm");
    if (perm->n == 0 && x->rank == 2) { /* default: swap a matrix */
        perm->n = 2;
        perm->v.ints[0] = 1;
        perm->v.ints[1] = 0;
    }
    if (perm->n != x->rank)
        return ir_error(d, KILN_ERR_SHAPE, n->loc,
                        "transpose: permutation has %d axes, operand %s has %d", perm->n,
                        ir_dtype_name((ir_dtype)x->dtype), x->rank);
    bool seen[KILN_MAX_RANK] = {0};
    int64_t dims[KILN_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        int64_t p = perm->v.ints[i];
        if (!ir_norm_axis(&p, x->rank) || seen[p])
            return ir_error(d, KILN_ERR_SHAPE, n->loc, "transpose: not a permutation of %d axes",
                            x->rank);
        seen[p] = true;
        perm->v.ints[i] = p;
        dims[i] = x->dims[p];
    }
    n->type = ir_type_make((ir_dtype)x->dtype, x->rank, dims);
    return KILN_OK;
}

kiln_status infer_one_hot(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *x = ty(n, 0);
    if (x->dtype != IR_I32) return err1(n, d, "expects i32 class indices, got", x);
    if (x->rank >= KILN_MAX_RANK) return err1(n, d, "operand rank too large", x);
    int64_t depth = ir_attr_i(n, "depth");
    if (depth <= 0 || depth > IR_MAX_DIM)
        return ir_error(d, KILN_ERR_SHAPE, n->loc, "one_hot: depth %lld is out of range",
                        (long long)depth);
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    dims[x->rank] = depth;
    return set_type(n, d, IR_F32, x->rank + 1, dims);
}

/* ---- losses ---- */

kiln_status infer_loss(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *p = ty(n, 0), *y = ty(n, 1);
    if (p->dtype != IR_F32 || y->dtype != IR_F32)
        return err2(n, d, "prediction and target must be f32", p, y);
    if (p->rank < 1) return err1(n, d, "prediction needs at least one axis, got", p);
    if (!ir_type_eq(p, y)) return err2(n, d, "prediction and target shapes differ", p, y);
    n->type = ir_type_scalar(IR_F32);
    return KILN_OK;
}

/* labels: i32 with the prediction's shape minus its last (class) axis. */
static kiln_status check_labels(ir_node *n, kiln_diag *d, const ir_type *p, const ir_type *y) {
    if (p->dtype != IR_F32) return err1(n, d, "prediction must be f32, got", p);
    if (p->rank < 1) return err1(n, d, "prediction needs a class axis, got", p);
    if (y->dtype != IR_I32 || y->rank != p->rank - 1)
        return err2(n, d, "labels must be i32 class indices for", y, p);
    for (int a = 0; a < y->rank; a++)
        if (y->dims[a] != p->dims[a]) return err2(n, d, "labels do not match", y, p);
    return KILN_OK;
}

kiln_status infer_sparse_loss(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st || (st = check_labels(n, d, ty(n, 0), ty(n, 1)))) return st;
    n->type = ir_type_scalar(IR_F32);
    return KILN_OK;
}

/* ---- fused ---- */

kiln_status infer_dense(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *x = ty(n, 0), *w = ty(n, 1), *b = ty(n, 2);
    if (x->rank != 2 || w->rank != 2 || x->dtype != IR_F32 || w->dtype != IR_F32)
        return err2(n, d, "input and kernel must be f32 matrices", x, w);
    if (x->dims[1] != w->dims[0]) return err2(n, d, "inner dimensions differ", x, w);
    if (b->rank != 1 || b->dtype != IR_F32 || b->dims[0] != w->dims[1])
        return err2(n, d, "bias does not match the kernel", b, w);
    int64_t act = ir_attr_i(n, "activation");
    if (act != 0 && !ir_op_has((int)act, IR_FACT_ACT))
        return ir_error(d, KILN_ERR_INVALID, n->loc,
                        "dense: activation '%s' cannot be fused into dense",
                        ir_attr_op_name(act));
    if (x->dims[0] == KILN_BATCH && w->dims[1] == KILN_BATCH)
        return err2(n, d, "result would have two batch dimensions", x, w);
    int64_t dims[2] = {x->dims[0], w->dims[1]};
    return set_type(n, d, IR_F32, 2, dims);
}

kiln_status infer_softmax_ce(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *z = ty(n, 0), *y = ty(n, 1);
    if (y->dtype == IR_I32) {
        if ((st = check_labels(n, d, z, y))) return st;
    } else if ((st = infer_loss(n, d))) {
        return st;
    }
    n->type = ir_type_scalar(IR_F32);
    return KILN_OK;
}

/* ---- effects and regions ---- */

kiln_status infer_assign(ir_node *n, kiln_diag *d) {
    if (n->in[0]->op != IR_GLOBAL)
        return ir_error(d, KILN_ERR_INVALID, n->loc,
                        "assign: the first operand must be a parameter or state slot");
    if (!ir_type_eq(ty(n, 0), ty(n, 1)))
        return err2(n, d, "value does not match the slot", ty(n, 1), ty(n, 0));
    n->type = ir_type_void();
    return KILN_OK;
}

kiln_status infer_fused(ir_node *n, kiln_diag *d) {
    if (!n->region)
        return ir_error(d, KILN_ERR_INVALID, n->loc, "fused: region body is missing");
    n->type = n->region->yield ? n->region->yield->type : ir_type_void();
    return KILN_OK;
}

kiln_status ir_region_domain(const ir_node *n, ir_type *out) {
    const ir_region *r = n->region;
    bool first = true;
    ir_type d;
    memset(&d, 0, sizeof d);
    for (int i = 0; r && i < r->n; i++) {
        const ir_node *b = r->nodes[i];
        const ir_type *t = b->op == IR_OP_assign ? &b->in[0]->type : &b->type;
        if (first) {
            d = *t;
            first = false;
            continue;
        }
        ir_type u;
        if (ir_broadcast_shapes(&d, t, &u)) return KILN_ERR_SHAPE;
        d = u;
    }
    if (first) return KILN_ERR_INVALID;
    d.dtype = IR_F32;
    *out = d;
    return KILN_OK;
}

bool ir_region_needs_split(const ir_node *n) {
    ir_type dom;
    if (ir_region_domain(n, &dom)) return true;
    const ir_region *r = n->region;
    for (int i = 0; i < r->n; i++) {
        const ir_node *b = r->nodes[i];
        if (b->op != IR_OP_assign || ir_type_same_shape(&b->in[0]->type, &dom)) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == b->in[0]) return true;
    }
    return false;
}

kiln_status infer_pad(ir_node *n, kiln_diag *d) {
    kiln_status st = need_not_void(n, d);
    if (st) return st;
    const ir_type *x = ty(n, 0);
    const int64_t *bf, *af;
    int nb = ir_attr_ints(n, "before", &bf), na = ir_attr_ints(n, "after", &af);
    if (nb != x->rank || na != x->rank)
        return ir_error(d, KILN_ERR_SHAPE, n->loc,
                        "pad: 'before' and 'after' need %d counts each (the operand's rank), got "
                        "%d and %d",
                        x->rank, nb, na);
    double v = ir_attr_f(n, "value");
    bool fits = x->dtype == IR_I32 ? v >= -2147483648.0 && v <= 2147483647.0 && v == (double)(int32_t)v
                                   : v - v != 0 /* Inf, NaN */ ||
                                         (v <= 3.4028234663852886e38 && v >= -3.4028234663852886e38);
    if (!fits)
        return ir_error(d, KILN_ERR_SHAPE, n->loc, "pad: the value %g does not fit the operand's %s", v,
                        ir_dtype_name((ir_dtype)x->dtype));
    int64_t dims[KILN_MAX_RANK], elems = 1, mode = ir_attr_i(n, "mode");
    for (int a = 0; a < x->rank; a++) {
        int64_t xd = x->dims[a];
        if (xd == KILN_BATCH) {
            if (bf[a] || af[a])
                return ir_error(d, KILN_ERR_SHAPE, n->loc, "pad: the batch axis %d cannot be padded", a);
            dims[a] = KILN_BATCH;
            continue;
        }
        if (bf[a] <= -IR_MAX_DIM || af[a] <= -IR_MAX_DIM || bf[a] >= IR_MAX_DIM ||
            af[a] >= IR_MAX_DIM || xd + bf[a] + af[a] < 1 || xd + bf[a] + af[a] >= IR_MAX_DIM)
            return ir_error(d, KILN_ERR_SHAPE, n->loc,
                            "pad: axis %d of %lld padded by %lld and %lld is out of range", a,
                            (long long)xd, (long long)bf[a], (long long)af[a]);
        if (mode == 1 && (bf[a] > xd - 1 || af[a] > xd - 1)) /* a mirror within x */
            return ir_error(d, KILN_ERR_SHAPE, n->loc,
                            "pad: axis %d of %lld reflected by %lld and %lld (at most %lld on "
                            "each side)",
                            a, (long long)xd, (long long)bf[a], (long long)af[a], (long long)xd - 1);
        dims[a] = xd + bf[a] + af[a];
        if (elems > IR_MAX_ELEMS / dims[a])
            return ir_error(d, KILN_ERR_LIMIT, n->loc, "pad: the result has more than 2^31 elements");
        elems *= dims[a];
    }
    n->type = ir_type_make((ir_dtype)x->dtype, x->rank, dims);
    return KILN_OK;
}

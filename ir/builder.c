/*
 * builder.c — the internal builder cursor (ir_b_*) that passes use, and the
 * public graph-building API (kiln_add, kiln_matmul, ...) on top of it.
 * Building only records nodes; nothing is computed here.
 */
#include "ir/ir.h"

#include <string.h>

/* ------------------------------------------------------- internal builder */

void ir_builder_init(ir_builder *b, kiln_func *f, kiln_diag *d) {
    memset(b, 0, sizeof *b);
    b->f = f;
    b->pos = -1;
    b->d = d;
}

ir_node *ir_b_op(ir_builder *b, int op, int n_in, ir_node *const *in, const ir_attrs *attrs) {
    if (b->status) return NULL;
    for (int k = 0; k < n_in; k++)
        if (!in[k]) {
            if (!b->status) b->status = KILN_ERR_INVALID;
            return NULL;
        }
    ir_node *n = ir_node_create(b->f->m, op, n_in, in, attrs, b->loc, b->d);
    if (!n) {
        b->status = b->d && b->d->first ? b->d->first : KILN_ERR_INVALID;
        return NULL;
    }
    kiln_status st;
    if (b->region) {
        st = ir_region_append(b->f->m, b->region, n, b->d);
    } else {
        st = ir_func_insert(b->f, b->pos, n, b->d);
        if (!st && b->pos >= 0) b->pos++;
    }
    if (st) {
        b->status = st;
        return NULL;
    }
    return n;
}

ir_node *ir_b_un(ir_builder *b, int op, ir_node *x) { return ir_b_op(b, op, 1, &x, NULL); }

ir_node *ir_b_bin(ir_builder *b, int op, ir_node *x, ir_node *y) {
    ir_node *in[2] = {x, y};
    return ir_b_op(b, op, 2, in, NULL);
}

ir_node *ir_b_const(ir_builder *b, ir_dtype dt, double v, int rank, const int64_t *dims) {
    ir_attrs a = ir_attrs_default(IR_OP_constant);
    ir_attrs_set_f(&a, "value", v);
    ir_attrs_set_i(&a, "dtype", dt);
    ir_attrs_set_ints(&a, "shape", rank, dims);
    return ir_b_op(b, IR_OP_constant, 0, NULL, &a);
}

ir_node *ir_b_scalar(ir_builder *b, double v) { return ir_b_const(b, IR_F32, v, 0, NULL); }

ir_node *ir_b_reduce(ir_builder *b, int op, ir_node *x, int naxes, const int64_t *axes,
                     bool keepdims) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_ints(&a, "axes", naxes, axes);
    ir_attrs_set_i(&a, "keepdims", keepdims);
    return ir_b_op(b, op, 1, &x, &a);
}

static ir_attrs shape_attrs(int op, const ir_type *t) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_ints(&a, "shape", t->rank, t->dims);
    return a;
}

ir_node *ir_b_reshape(ir_builder *b, ir_node *x, const ir_type *like) {
    if (x && ir_type_eq(&x->type, like)) return x;
    ir_attrs a = shape_attrs(IR_OP_reshape, like);
    return ir_b_op(b, IR_OP_reshape, 1, &x, &a);
}

ir_node *ir_b_broadcast_to(ir_builder *b, ir_node *x, const ir_type *like) {
    if (x && x->type.rank == like->rank && ir_type_eq(&x->type, like)) return x;
    ir_attrs a = shape_attrs(IR_OP_broadcast_to, like);
    return ir_b_op(b, IR_OP_broadcast_to, 1, &x, &a);
}

ir_node *ir_b_matmul(ir_builder *b, ir_node *x, ir_node *y, bool ta, bool tb) {
    ir_attrs a = ir_attrs_default(IR_OP_matmul);
    ir_attrs_set_i(&a, "transpose_a", ta);
    ir_attrs_set_i(&a, "transpose_b", tb);
    ir_node *in[2] = {x, y};
    return ir_b_op(b, IR_OP_matmul, 2, in, &a);
}

ir_node *ir_b_assign(ir_builder *b, ir_global *g, ir_node *v) {
    ir_node *in[2] = {g->ref, v};
    return ir_b_op(b, IR_OP_assign, 2, in, NULL);
}

/* ------------------------------------------------------------ public API */

static ir_node *val(const kiln_func *f, kiln_value v) {
    if (!f || v.id < 0 || v.id >= f->n_values) return NULL;
    return f->values[v.id];
}

static kiln_value bad(void) {
    kiln_value v = {-1};
    return v;
}

/* Records the first builder error of f as text in the module arena. */
static void set_error(kiln_func *f, kiln_diag *d) {
    if (f->error) return;
    const char *msg = kiln_diag_message(d);
    if (!*msg) msg = "kiln: error: out of memory\n";
    size_t len = strlen(msg);
    while (len && msg[len - 1] == '\n') len--;
    f->error = ir_arena_strndup(&f->m->arena, msg, len);
    if (!f->error) f->error = "kiln: error: out of memory";
}

static kiln_value new_value(kiln_func *f, ir_node *n) {
    if (!IR_GROW(f->values, f->cap_values, f->n_values + 1)) {
        if (!f->error) f->error = "kiln: error: out of memory";
        return bad();
    }
    f->values[f->n_values] = n;
    kiln_value v = {f->n_values++};
    return v;
}

/* Builds op over public values; an invalid operand gives an invalid result. */
static kiln_value build(kiln_func *f, int op, int n_in, const kiln_value *vs, const ir_attrs *a) {
    if (!f) return bad();
    ir_node *in[4];
    for (int k = 0; k < n_in; k++) {
        in[k] = val(f, vs[k]);
        if (!in[k]) {
            if (!f->error) {
                kiln_diag d;
                memset(&d, 0, sizeof d);
                ir_error(&d, KILN_ERR_INVALID, f->cur_loc, "%s: operand %d is not a valid value",
                         ir_op_name(op), k + 1);
                set_error(f, &d);
                ir_sb_free(&d.text);
            }
            return bad();
        }
    }
    kiln_diag d;
    memset(&d, 0, sizeof d);
    ir_builder b;
    ir_builder_init(&b, f, &d);
    b.loc = f->cur_loc;
    ir_node *n = ir_b_op(&b, op, n_in, in, a);
    kiln_value r = n ? new_value(f, n) : bad();
    if (!n) set_error(f, &d);
    ir_sb_free(&d.text);
    return r;
}

void kiln_func_set_loc(kiln_func *f, const char *file, int line, int col) {
    if (!f) return;
    f->cur_loc.file = file ? ir_arena_strdup(&f->m->arena, file) : NULL;
    f->cur_loc.line = line;
    f->cur_loc.col = col;
}

kiln_value kiln_input(kiln_func *f, const char *name, kiln_dtype dt, int rank,
                      const int64_t *dims) {
    if (!f || !name || rank < 0 || rank > KILN_MAX_RANK || (rank && !dims)) return bad();
    kiln_diag d;
    memset(&d, 0, sizeof d);
    ir_type t = ir_type_make((ir_dtype)dt, rank, dims);
    int nb = 0;
    for (int i = 0; i < rank; i++) nb += dims[i] == KILN_BATCH;
    ir_node *n = NULL;
    if (nb > 1 || (dt != KILN_F32 && dt != KILN_I32))
        ir_error(&d, KILN_ERR_SHAPE, f->cur_loc, "input '%s': invalid type", name);
    else
        n = ir_func_add_arg(f, name, &t, &d);
    kiln_value r = n ? new_value(f, n) : bad();
    if (!n) set_error(f, &d);
    ir_sb_free(&d.text);
    return r;
}

kiln_value kiln_param(kiln_func *f, const char *name) {
    if (!f || !name) return bad();
    ir_global *g = ir_module_global(f->m, name);
    if (!g) {
        kiln_diag d;
        memset(&d, 0, sizeof d);
        ir_error(&d, KILN_ERR_INVALID, f->cur_loc, "no parameter named '%s'", name);
        set_error(f, &d);
        ir_sb_free(&d.text);
        return bad();
    }
    return new_value(f, g->ref);
}

kiln_status kiln_output(kiln_func *f, kiln_value v) {
    ir_node *n = val(f, v);
    if (!n) return KILN_ERR_INVALID;
    if (n->type.dtype == IR_VOID) return KILN_ERR_INVALID;
    return ir_func_add_result(f, n, NULL);
}

int kiln_value_rank(const kiln_func *f, kiln_value v) {
    ir_node *n = val(f, v);
    return n ? n->type.rank : -1;
}

int64_t kiln_value_dim(const kiln_func *f, kiln_value v, int axis) {
    ir_node *n = val(f, v);
    if (!n || axis < 0 || axis >= n->type.rank) return 0;
    return n->type.dims[axis];
}

kiln_dtype kiln_value_dtype(const kiln_func *f, kiln_value v) {
    ir_node *n = val(f, v);
    return n && n->type.dtype != IR_VOID ? (kiln_dtype)n->type.dtype : KILN_F32;
}

/* ---- one builder per op ---- */

#define BIN(fn, OPC)                                                                               \
    kiln_value fn(kiln_func *f, kiln_value a, kiln_value b) {                                      \
        kiln_value v[2] = {a, b};                                                                  \
        return build(f, OPC, 2, v, NULL);                                                          \
    }
#define UN(fn, OPC)                                                                                \
    kiln_value fn(kiln_func *f, kiln_value x) { return build(f, OPC, 1, &x, NULL); }

BIN(kiln_add, IR_OP_add)
BIN(kiln_sub, IR_OP_sub)
BIN(kiln_mul, IR_OP_mul)
BIN(kiln_div, IR_OP_div)
BIN(kiln_maximum, IR_OP_maximum)
BIN(kiln_minimum, IR_OP_minimum)
BIN(kiln_equal, IR_OP_equal)
BIN(kiln_greater, IR_OP_greater)
BIN(kiln_categorical_crossentropy, IR_OP_categorical_crossentropy)
BIN(kiln_sparse_categorical_crossentropy, IR_OP_sparse_categorical_crossentropy)
BIN(kiln_mean_squared_error, IR_OP_mean_squared_error)
BIN(kiln_binary_crossentropy, IR_OP_binary_crossentropy)
BIN(kiln_nll, IR_OP_nll)
UN(kiln_neg, IR_OP_neg)
UN(kiln_exp, IR_OP_exp)
UN(kiln_log, IR_OP_log)
UN(kiln_sqrt, IR_OP_sqrt)
UN(kiln_relu, IR_OP_relu)
UN(kiln_sigmoid, IR_OP_sigmoid)
UN(kiln_tanh, IR_OP_tanh)
UN(kiln_allreduce_mean, IR_OP_allreduce_mean)
UN(kiln_allreduce_wait, IR_OP_allreduce_wait)

kiln_value kiln_select(kiln_func *f, kiln_value c, kiln_value a, kiln_value b) {
    kiln_value v[3] = {c, a, b};
    return build(f, IR_OP_select, 3, v, NULL);
}

/* op's default attributes with `name` set to v (a number of any kind). */
static ir_attrs attrs_with(int op, const char *name, double v) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_f(&a, name, v);
    return a;
}

kiln_value kiln_matmul(kiln_func *f, kiln_value a, kiln_value b, int ta, int tb) {
    kiln_value v[2] = {a, b};
    ir_attrs at = attrs_with(IR_OP_matmul, "transpose_a", ta != 0);
    ir_attrs_set_i(&at, "transpose_b", tb != 0);
    return build(f, IR_OP_matmul, 2, v, &at);
}

kiln_value kiln_pow(kiln_func *f, kiln_value x, double e) {
    ir_attrs a = attrs_with(IR_OP_pow, "exponent", e);
    return build(f, IR_OP_pow, 1, &x, &a);
}

kiln_value kiln_leaky_relu(kiln_func *f, kiln_value x, double alpha) {
    ir_attrs a = attrs_with(IR_OP_leaky_relu, "alpha", alpha);
    return build(f, IR_OP_leaky_relu, 1, &x, &a);
}

kiln_value kiln_erf(kiln_func *f, kiln_value x) { return build(f, IR_OP_erf, 1, &x, NULL); }

kiln_value kiln_activate(kiln_func *f, kiln_value x, kiln_activation act, double alpha) {
    if (act == KILN_ACT_NONE) return x;
    int op = (unsigned)act < KILN_ACT_COUNT ? ir_op_lookup(kiln_activation_name(act)) : -1;
    if (op < 0) return bad();
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_f(&a, "alpha", alpha);
    ir_attrs_set_i(&a, "axis", -1);
    return build(f, op, 1, &x, &a);
}

kiln_value kiln_cast(kiln_func *f, kiln_value x, kiln_dtype to) {
    ir_attrs a = ir_attrs_default(IR_OP_cast);
    ir_attrs_set_i(&a, "dtype", to);
    return build(f, IR_OP_cast, 1, &x, &a);
}

kiln_value kiln_softmax(kiln_func *f, kiln_value x, int axis) {
    ir_attrs a = attrs_with(IR_OP_softmax, "axis", axis);
    return build(f, IR_OP_softmax, 1, &x, &a);
}

kiln_value kiln_log_softmax(kiln_func *f, kiln_value x, int axis) {
    ir_attrs a = attrs_with(IR_OP_log_softmax, "axis", axis);
    return build(f, IR_OP_log_softmax, 1, &x, &a);
}

kiln_value kiln_argmax(kiln_func *f, kiln_value x, int axis) {
    ir_attrs a = attrs_with(IR_OP_argmax, "axis", axis);
    return build(f, IR_OP_argmax, 1, &x, &a);
}

kiln_value kiln_one_hot(kiln_func *f, kiln_value labels, int depth) {
    ir_attrs a = attrs_with(IR_OP_one_hot, "depth", depth);
    return build(f, IR_OP_one_hot, 1, &labels, &a);
}

/* An op with one list attribute `name` (and keepdims, for reductions). */
static kiln_value with_list(kiln_func *f, int op, kiln_value x, const char *name, int n,
                            const int64_t *list, int64_t keepdims) {
    if (n < 0 || n > KILN_MAX_RANK || (n && !list)) {
        if (f && !f->error) f->error = "kiln: error: too many axes or dimensions";
        return bad();
    }
    ir_attrs a = attrs_with(op, "keepdims", (double)keepdims);
    ir_attrs_set_ints(&a, name, n, list);
    return build(f, op, 1, &x, &a);
}

static kiln_value reduce(kiln_func *f, int op, kiln_value x, int naxes, const int *axes,
                         int keepdims) {
    int64_t l[KILN_MAX_RANK];
    for (int i = 0; i < naxes && i < KILN_MAX_RANK; i++) l[i] = axes[i];
    return with_list(f, op, x, "axes", naxes, l, keepdims != 0);
}

kiln_value kiln_reduce_sum(kiln_func *f, kiln_value x, int n, const int *ax, int keep) {
    return reduce(f, IR_OP_reduce_sum, x, n, ax, keep);
}
kiln_value kiln_reduce_mean(kiln_func *f, kiln_value x, int n, const int *ax, int keep) {
    return reduce(f, IR_OP_reduce_mean, x, n, ax, keep);
}
kiln_value kiln_reduce_max(kiln_func *f, kiln_value x, int n, const int *ax, int keep) {
    return reduce(f, IR_OP_reduce_max, x, n, ax, keep);
}
kiln_value kiln_numel(kiln_func *f, kiln_value x, int n, const int *ax) {
    return reduce(f, IR_OP_numel, x, n, ax, 0);
}

kiln_value kiln_reshape(kiln_func *f, kiln_value x, int rank, const int64_t *dims) {
    return with_list(f, IR_OP_reshape, x, "shape", rank, dims, 0);
}

kiln_value kiln_broadcast_to(kiln_func *f, kiln_value x, int rank, const int64_t *dims) {
    return with_list(f, IR_OP_broadcast_to, x, "shape", rank, dims, 0);
}

kiln_value kiln_transpose(kiln_func *f, kiln_value x, int rank, const int *perm) {
    int64_t l[KILN_MAX_RANK];
    for (int i = 0; i < rank && i < KILN_MAX_RANK; i++) l[i] = perm[i];
    return with_list(f, IR_OP_transpose, x, "perm", rank, l, 0);
}

kiln_value kiln_constant(kiln_func *f, kiln_dtype dt, double value, int rank,
                         const int64_t *dims) {
    kiln_value none = {0};
    if (rank < 0 || rank > KILN_MAX_RANK || (rank && !dims)) return bad();
    ir_attrs a = attrs_with(IR_OP_constant, "value", value);
    ir_attrs_set_i(&a, "dtype", dt);
    ir_attrs_set_ints(&a, "shape", rank, dims);
    return build(f, IR_OP_constant, 0, &none, &a);
}

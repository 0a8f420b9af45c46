/*
 * constant_fold.c — constant-fold: evaluates what is known before run time
 * and removes operations that do nothing.
 *
 * A constant node is one value broadcast to its type's shape (a splat), so an
 * elementwise op whose operands are all constants is a constant too; its value
 * comes from the op's scalar kernel in ops.def, the one the interpreter runs,
 * so folding can never disagree with it:
 *   %0 = constant() {value=2} : f32[]
 *   %1 = constant() {value=3} : f32[?,10]
 *   %2 = mul(%0, %1) : f32[?,10]
 * becomes
 *   %0 = constant() {value=6} : f32[?,10]
 *
 * Also folded: reshape, transpose and reductions of constants; numel of axes
 * whose sizes are static (numel(%h) {axes=[1]} of f32[?,128] -> 128); argmax
 * of a constant (0: ties keep the first index).
 *
 * Identities, when the result has the type of the operand that remains:
 *   mul(x, 1), div(x, 1), add(x, 0), sub(x, 0), pow(x) {exponent=1},
 *   neg(neg(x)), cast to x's own dtype, reshape/broadcast_to to x's own type,
 *   reshape(reshape(x)), select on a constant condition           -> x
 *   argmax(softmax(z)), argmax(log_softmax(z)) on the same axis   -> argmax(z)
 * (softmax is monotonic along its axis; dropping it from an accuracy metric
 * leaves the softmax with the loss as its only user, so fuse-softmax-ce can
 * fire.)
 *
 * Not folded: results that are not finite (log(0) stays a log, so the run
 * shows it where it happens) and region bodies (this runs before
 * fuse-elementwise). Nodes left without a user by a fold are removed.
 */
#include "passes/pass.h"

#include <math.h>
#include <string.h>

static bool is_const(const ir_node *n) {
    return n->op == IR_OP_constant;
}

/* The value of a splat constant, as its scalar kernel gives it. */
static ir_scalar const_value(const ir_node *c) {
    return ir_op(IR_OP_constant)->scalar(c, NULL);
}

static bool const_is(const ir_node *c, double v) {
    if (!is_const(c)) return false;
    ir_scalar s = const_value(c);
    return c->type.dtype == IR_I32 ? s.i == (int32_t)v : s.f == (float)v;
}

typedef struct folder {
    kiln_func *f;
    kiln_diag *d;
    ir_node **fwd; /* by serial: the node that replaces it, or NULL */
    int limit;
    int changed;
} folder;

static ir_node *resolve(folder *c, ir_node *n) {
    while (n->serial < c->limit && c->fwd[n->serial]) n = c->fwd[n->serial];
    return n;
}

/* Points n's operands (and, for a region, its body's) at their replacements. */
static void rewrite_operands(folder *c, ir_node *n) {
    for (int k = 0; k < n->n_in; k++) n->in[k] = resolve(c, n->in[k]);
    if (!n->region) return;
    for (int i = 0; i < n->region->n; i++) rewrite_operands(c, n->region->nodes[i]);
    /* Two captured values may have become one: keep the operand list a set. */
    int k = 0;
    for (int i = 0; i < n->n_in; i++) {
        bool dup = false;
        for (int j = 0; j < k && !dup; j++) dup = n->in[j] == n->in[i];
        if (!dup) n->in[k++] = n->in[i];
    }
    n->n_in = (uint16_t)k;
}

static ir_node *make_const(folder *c, const ir_node *like, double v) {
    ir_attrs a = ir_attrs_default(IR_OP_constant);
    ir_attrs_set_f(&a, "value", v);
    ir_attrs_set_i(&a, "dtype", like->type.dtype);
    ir_attrs_set_ints(&a, "shape", like->type.rank, like->type.dims);
    return ir_node_create(c->f->m, IR_OP_constant, 0, NULL, &a, like->loc, c->d);
}

/* An elementwise op on constants: its scalar kernel on their values. */
static bool eval_ew(const ir_node *n, double *out) {
    ir_scalar x[4];
    if (n->n_in > 4) return false;
    for (int k = 0; k < n->n_in; k++) x[k] = const_value(n->in[k]);
    ir_scalar y = ir_op(n->op)->scalar(n, x);
    if (n->type.dtype == IR_I32) {
        *out = y.i;
        return true;
    }
    *out = y.f;
    return isfinite(y.f);
}

/* Product of the static sizes of n's listed axes (all when the list is
 * empty) of type t; false if one of them is the batch. */
static bool static_count(const ir_node *n, const ir_type *t, double *count) {
    double c = 1;
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    for (int a = 0; a < t->rank; a++) {
        bool listed = na == 0;
        for (int i = 0; i < na; i++) listed |= axes[i] == a;
        if (!listed) continue;
        if (t->dims[a] == KILN_BATCH) return false;
        c *= (double)t->dims[a];
    }
    *count = c;
    return true;
}

/* A reduction of a splat: the interpreter sums in double, and k copies of a
 * float sum exactly (k < 2^29), so v*k is what it computes too. */
static bool eval_reduce(const ir_node *n, double *out) {
    const ir_node *x = n->in[0];
    double k;
    if (x->type.dtype != IR_F32 || !static_count(n, &x->type, &k) || k <= 0 || k >= 536870912.0)
        return false;
    double v = const_value(x).f;
    switch (n->op) {
    case IR_OP_reduce_sum:
        v = (double)(float)(v * k);
        break;
    case IR_OP_reduce_mean:
        v = (double)(float)(v * k / k);
        break;
    case IR_OP_reduce_max:
        break;
    default:
        return false;
    }
    *out = v;
    return isfinite(v);
}

/* The value n is known to equal, if it is a constant: true and *v. */
static bool fold_value(const ir_node *n, double *v) {
    const ir_op_info *info = ir_op(n->op);
    if (n->type.dtype == IR_VOID || is_const(n)) return false;
    bool all_const = n->n_in > 0;
    for (int k = 0; k < n->n_in; k++) all_const &= is_const(n->in[k]);
    if (info->is_ew) return all_const && eval_ew(n, v);
    switch (n->op) {
    case IR_OP_reshape:
    case IR_OP_transpose:
        if (!all_const) return false;
        *v = n->type.dtype == IR_I32 ? const_value(n->in[0]).i : const_value(n->in[0]).f;
        return true;
    case IR_OP_reduce_sum:
    case IR_OP_reduce_mean:
    case IR_OP_reduce_max:
        return all_const && eval_reduce(n, v);
    case IR_OP_argmax:
        *v = 0;
        return all_const;
    case IR_OP_numel:
        return static_count(n, &n->in[0]->type, v);
    default:
        return false;
    }
}

/* The existing value n reduces to, or NULL. May rewire n in place (then
 * returns n itself with *rewired set). */
static ir_node *identity(ir_node *n, bool *rewired) {
    ir_node *x = n->n_in > 0 ? n->in[0] : NULL, *y = n->n_in > 1 ? n->in[1] : NULL;
    ir_node *r = NULL;
    switch (n->op) {
    case IR_OP_mul:
        r = const_is(y, 1) ? x : const_is(x, 1) ? y : NULL;
        break;
    case IR_OP_add:
        r = const_is(y, 0) ? x : const_is(x, 0) ? y : NULL;
        break;
    case IR_OP_sub:
    case IR_OP_div:
        r = const_is(y, n->op == IR_OP_sub ? 0 : 1) ? x : NULL;
        break;
    case IR_OP_pow:
        r = ir_attr_f(n, "exponent") == 1.0 ? x : NULL;
        break;
    case IR_OP_neg:
        r = x->op == IR_OP_neg ? x->in[0] : NULL;
        break;
    case IR_OP_cast:
    case IR_OP_broadcast_to:
        r = x;
        break;
    case IR_OP_select:
        if (is_const(x)) r = const_value(x).i ? y : n->in[2];
        break;
    case IR_OP_reshape:
        if (x->op == IR_OP_reshape) { /* reshape(reshape(v)) -> reshape(v) */
            n->in[0] = x->in[0];
            *rewired = true;
            x = n->in[0];
        }
        r = x;
        break;
    case IR_OP_argmax:
        if ((x->op == IR_OP_softmax || x->op == IR_OP_log_softmax) &&
            ir_attr_i(x, "axis") == ir_attr_i(n, "axis")) {
            n->in[0] = x->in[0];
            *rewired = true;
        }
        return NULL;
    default:
        return NULL;
    }
    /* Only when nothing else changes: x*1 with a broadcasting 1 is a copy. */
    return r && ir_type_eq(&r->type, &n->type) ? r : NULL;
}

/* Removes what lost its last user to a fold (new constants included: a
 * fold may feed the next one), latest first so that chains go at once:
 * neg(neg(x)) -> x leaves the inner neg behind. What had no user before
 * is dce's business, not ours. */
static kiln_status drop_orphans(kiln_func *f, const int *before, int limit, kiln_diag *d) {
    int *after = ir_func_use_counts(f);
    if (!after) return ir_oom(d);
    for (int i = f->n_nodes - 1; i >= 0; i--) {
        ir_node *n = f->nodes[i];
        bool was_used = n->serial >= limit || before[n->serial] > 0;
        n->aux = was_used && after[n->serial] == 0 && n->op != IR_OP_assign && !n->region;
        if (n->aux)
            for (int k = 0; k < n->n_in; k++) after[n->in[k]->serial]--;
    }
    ir_func_remove_marked(f);
    ir_free(after);
    return KILN_OK;
}


static kiln_status fold_func(kiln_func *f, kiln_diag *d) {
    folder c = {f, d, NULL, f->m->next_serial, 0};
    int *before = ir_func_use_counts(f);
    c.fwd = ir_calloc((size_t)c.limit + 1, sizeof(ir_node *));
    if (!before || !c.fwd) {
        ir_free(before);
        ir_free(c.fwd);
        return ir_oom(d);
    }
    kiln_status st = KILN_OK;
    int k = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        rewrite_operands(&c, n);
        double v;
        bool rewired = false;
        ir_node *r = NULL;
        if (n->region || st) {
            /* regions are opaque here; after an error only the rewiring of
             * operands goes on, so the function stays valid */
        } else if (fold_value(n, &v)) {
            r = make_const(&c, n, v);
            if (!r) {
                st = d && d->first ? d->first : KILN_ERR_NOMEM;
                f->nodes[k++] = n;
                continue;
            }
            f->nodes[k++] = r; /* the constant takes n's place */
        } else {
            r = identity(n, &rewired);
        }
        if (r && n->serial < c.limit) {
            c.fwd[n->serial] = r;
            c.changed++;
            continue;
        }
        c.changed += rewired;
        f->nodes[k++] = n;
    }
    f->n_nodes = k;
    for (int i = 0; i < f->n_results; i++) f->results[i] = resolve(&c, f->results[i]);
    if (c.changed && !st) st = drop_orphans(f, before, c.limit, d);
    if (c.changed) ir_func_unplan(f);
    ir_free(before);
    ir_free(c.fwd);
    return st;
}

kiln_status pass_constant_fold(kiln_module *m, kiln_diag *d) { return pass_each_func(m, fold_func, d); }

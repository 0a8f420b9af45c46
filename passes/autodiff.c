/*
 * autodiff.c — reverse-mode symbolic differentiation: writes @train_step.
 *
 * @loss is left as it is; @train_step is a clone of it followed by the
 * backward graph, built in reverse node order from each op's rule (the grad
 * column of ops.def, passes/grad_rules.c), fan-out accumulated with `add`.
 * It returns the loss, @loss's other results (metrics) unchanged, and one
 * gradient per trainable parameter in module order. Before:
 *
 *   func @loss(%x : f32[?,4], %y : f32[?,3]) -> f32[] {
 *     %0 = matmul(%x, @w) : f32[?,3]  # m.kiln:3:5
 *     %1 = tanh(%0) : f32[?,3]  # m.kiln:3:5
 *     %2 = mean_squared_error(%1, %y) : f32[]  # m.kiln:5:1
 *     return %2
 *   }
 *
 * After (@loss unchanged, and next to it):
 *
 *   func @train_step(%x : f32[?,4], %y : f32[?,3]) -> (f32[], f32[4,3]) {
 *     %0 = matmul(%x, @w) : f32[?,3]  # m.kiln:3:5
 *     %1 = tanh(%0) : f32[?,3]  # m.kiln:3:5
 *     %2 = mean_squared_error(%1, %y) : f32[]  # m.kiln:5:1
 *     %3 = constant() {value=1} : f32[]  # m.kiln:5:1               dL/dL
 *     %4 = constant() {value=2} : f32[]  # m.kiln:5:1               mse's rule:
 *     %5 = mul(%3, %4) : f32[]  # m.kiln:5:1                          2 (p - y) dL / count
 *     %6 = numel(%1) {axes=[0,1]} : f32[]  # m.kiln:5:1
 *     %7 = div(%5, %6) : f32[]  # m.kiln:5:1
 *     %8 = sub(%1, %y) : f32[?,3]  # m.kiln:5:1
 *     %9 = mul(%8, %7) : f32[?,3]  # m.kiln:5:1
 *     %10 = constant() {value=1} : f32[]  # m.kiln:3:5              tanh's: dy (1 - y^2)
 *     %11 = mul(%1, %1) : f32[?,3]  # m.kiln:3:5
 *     %12 = sub(%10, %11) : f32[?,3]  # m.kiln:3:5
 *     %13 = mul(%9, %12) : f32[?,3]  # m.kiln:3:5
 *     %14 = matmul(%x, %13) {transpose_a=true} : f32[4,3]  # m.kiln:3:5   d@w; no d%x
 *     return %2, %14
 *   }
 *
 * Backward nodes carry the location of the forward node they differentiate.
 * Only needed gradients are built: a value needs one when it depends on a
 * trainable parameter and lies on a path to the loss — so none for inputs,
 * labels, frozen parameters or integer values (whose gradient is zero), and
 * the first layer's matmul gets no input gradient. A parameter that does not
 * reach the loss gets a zero constant.
 */
#include "passes/grad.h"
#include "passes/pass.h"

#include <string.h>

enum { DEP = 1, REACH = 2 };

typedef struct autodiff {
    kiln_module *m;
    kiln_func *f; /* train_step */
    kiln_diag *d;
    int limit;      /* serials below this are forward values */
    uint8_t *flags; /* by serial: DEP | REACH */
    ir_node **grad; /* by serial: accumulated gradient, NULL while zero */
    ir_builder b;
} autodiff;

static bool is_trainable_ref(const kiln_module *m, const ir_node *n) {
    if (n->op != IR_GLOBAL) return false;
    const ir_global *g = m->globals[n->index];
    return g->kind == IR_GLOBAL_PARAM && g->trainable;
}

/* Whether value n needs a gradient: it varies with a trainable parameter,
 * reaches the loss, and is real-valued. */
static bool needs(const autodiff *a, const ir_node *n) {
    if (n->serial >= a->limit || n->type.dtype != IR_F32) return false;
    return (a->flags[n->serial] & (DEP | REACH)) == (DEP | REACH);
}

/* DEP forward from the trainable f32 parameters; REACH backward from the
 * loss. numel reads only its operand's shape, so it does not depend on its
 * value; integer values carry no gradient. */
static void mark(autodiff *a) {
    kiln_func *f = a->f;
    for (int i = 0; i < a->m->n_globals; i++) {
        const ir_node *ref = a->m->globals[i]->ref;
        if (is_trainable_ref(a->m, ref) && ref->type.dtype == IR_F32) a->flags[ref->serial] |= DEP;
    }
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        if (n->type.dtype != IR_F32 || n->op == IR_OP_numel) continue;
        for (int k = 0; k < n->n_in; k++)
            if (a->flags[n->in[k]->serial] & DEP) a->flags[n->serial] |= DEP;
    }
    a->flags[f->results[0]->serial] |= REACH;
    for (int i = f->n_nodes - 1; i >= 0; i--) {
        ir_node *n = f->nodes[i];
        if (!(a->flags[n->serial] & REACH)) continue;
        for (int k = 0; k < n->n_in; k++) a->flags[n->in[k]->serial] |= REACH;
    }
}

static void describe(ir_sb *sb, const ir_node *n) {
    if (n->loc.file) {
        ir_sb_printf(sb, "'%s' at %s:%d:%d", ir_op_name(n->op), n->loc.file, (int)n->loc.line,
                     (int)n->loc.col);
    } else {
        ir_sb_puts(sb, "'");
        ir_sb_node_short(sb, n);
        ir_sb_puts(sb, "'");
    }
}

/* Every op on a needed path without a rule, in one error. */
static kiln_status check_rules(autodiff *a, pass_grad_fn (*rule_of)(int)) {
    ir_sb list;
    ir_sb_init(&list);
    int missing = 0;
    const ir_node *first = NULL;
    for (int i = 0; i < a->f->n_nodes; i++) {
        const ir_node *n = a->f->nodes[i];
        if (!needs(a, n) || rule_of(n->op)) continue;
        if (missing++) ir_sb_puts(&list, ", ");
        describe(&list, n);
        if (!first) first = n;
    }
    if (!missing) return KILN_OK;
    char *s = ir_sb_take(&list);
    if (!s) return ir_oom(a->d);
    kiln_status st = ir_error(a->d, KILN_ERR_UNSUPPORTED, first->loc,
                              "autodiff: no gradient rule for %d op%s on the path from the "
                              "parameters to the loss: %s",
                              missing, missing == 1 ? "" : "s", s);
    ir_free(s);
    return st;
}

/* Adds gradient g into operand x's accumulator (ggml's add-or-set). */
static void accumulate(autodiff *a, ir_node *x, ir_node *g) {
    ir_node **acc = &a->grad[x->serial];
    *acc = *acc ? ir_b_bin(&a->b, IR_OP_add, *acc, g) : g;
}

/* Applies n's rule and checks what it built. */
static kiln_status backprop(autodiff *a, ir_node *n, pass_grad_fn rule) {
    enum { SMALL = 8 };
    bool need_small[SMALL];
    ir_node *dx_small[SMALL];
    bool *need = need_small;
    ir_node **dx = dx_small;
    if (n->n_in > SMALL) {
        need = ir_calloc(n->n_in, sizeof *need);
        dx = ir_calloc(n->n_in, sizeof *dx);
        if (!need || !dx) {
            ir_free(need);
            ir_free(dx);
            return ir_oom(a->d);
        }
    }
    bool any = false;
    for (int k = 0; k < n->n_in; k++) {
        need[k] = needs(a, n->in[k]);
        dx[k] = NULL;
        any |= need[k];
    }
    kiln_status st = KILN_OK;
    if (any) {
        a->b.loc = n->loc;
        int errors = kiln_diag_error_count(a->d);
        st = rule(&a->b, n, a->grad[n->serial], need, dx);
        if (!st) st = a->b.status;
        if (st && kiln_diag_error_count(a->d) == errors)
            ir_error(a->d, st, n->loc, "autodiff: the gradient rule of '%s' failed: %s",
                     ir_op_name(n->op), kiln_status_string(st));
    }
    for (int k = 0; k < n->n_in && !st; k++) {
        if (!dx[k]) continue;
        char t1[IR_TYPE_STR_MAX], t2[IR_TYPE_STR_MAX];
        if (!need[k]) {
            st = ir_error(a->d, KILN_ERR_INVALID, n->loc,
                          "autodiff: the gradient rule of '%s' built a gradient for operand %d, "
                          "which needs none",
                          ir_op_name(n->op), k + 1);
        } else if (!ir_type_eq(&dx[k]->type, &n->in[k]->type)) {
            st = ir_error(a->d, KILN_ERR_SHAPE, n->loc,
                          "autodiff: the gradient rule of '%s' gave %s for operand %d of type %s",
                          ir_op_name(n->op), ir_type_str(&dx[k]->type, t1, sizeof t1), k + 1,
                          ir_type_str(&n->in[k]->type, t2, sizeof t2));
        } else {
            accumulate(a, n->in[k], dx[k]);
            st = a->b.status;
        }
    }
    if (need != need_small) {
        ir_free(need);
        ir_free(dx);
    }
    return st;
}

static kiln_status differentiate(autodiff *a, pass_grad_fn (*rule_of)(int)) {
    kiln_func *f = a->f;
    ir_node *loss = f->results[0];
    int n_forward = f->n_nodes;
    a->b.loc = loss->loc;
    if (needs(a, loss)) a->grad[loss->serial] = ir_b_scalar(&a->b, 1.0); /* dL/dL */
    if (a->b.status) return a->b.status;
    for (int i = n_forward - 1; i >= 0; i--) {
        ir_node *n = f->nodes[i];
        if (!needs(a, n) || !a->grad[n->serial]) continue;
        kiln_status st = backprop(a, n, rule_of(n->op));
        if (st) return st;
    }
    /* One gradient per trainable parameter, in module order. */
    a->b.loc = ir_loc_none();
    for (int i = 0; i < a->m->n_globals; i++) {
        ir_global *g = a->m->globals[i];
        if (g->kind != IR_GLOBAL_PARAM || !g->trainable) continue;
        ir_node *dg = needs(a, g->ref) ? a->grad[g->ref->serial] : NULL;
        if (!dg) dg = ir_b_const(&a->b, (ir_dtype)g->type.dtype, 0.0, g->type.rank, g->type.dims);
        if (a->b.status) return a->b.status;
        kiln_status st = ir_func_add_result(f, dg, a->d);
        if (st) return st;
    }
    return KILN_OK;
}

/* autodiff with the rules of rule_of (pass_grad_rule, or a table a test
 * substitutes to exercise the pass's own error paths). */
kiln_status pass_autodiff_rules(kiln_module *m, pass_grad_fn (*rule_of)(int), kiln_diag *d) {
    kiln_func *loss = kiln_module_func(m, "loss");
    if (!loss)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "autodiff: the module has no function @loss to differentiate");
    if (kiln_module_func(m, "train_step"))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "autodiff: the module already has a function @train_step");
    kiln_status st = ir_verify_func(loss, d);
    if (st) return st;
    ir_type scalar = ir_type_scalar(IR_F32);
    if (loss->n_results < 1 || !ir_type_eq(&loss->results[0]->type, &scalar)) {
        char t[IR_TYPE_STR_MAX] = "nothing";
        if (loss->n_results) ir_type_str(&loss->results[0]->type, t, sizeof t);
        return ir_error(d, KILN_ERR_SHAPE, loss->n_results ? loss->results[0]->loc : ir_loc_none(),
                        "autodiff: @loss must return the loss as an f32[] scalar first, it "
                        "returns %s",
                        t);
    }
    autodiff a;
    memset(&a, 0, sizeof a);
    a.m = m;
    a.d = d;
    a.f = ir_func_clone(loss, "train_step", NULL, NULL, d);
    if (!a.f) return d && d->first ? d->first : KILN_ERR_NOMEM;
    a.limit = m->next_serial;
    a.flags = ir_calloc((size_t)a.limit + 1, 1);
    a.grad = ir_calloc((size_t)a.limit + 1, sizeof *a.grad);
    if (!a.flags || !a.grad) {
        st = ir_oom(d);
        goto out;
    }
    ir_builder_init(&a.b, a.f, d);
    mark(&a);
    st = check_rules(&a, rule_of);
    if (!st) st = differentiate(&a, rule_of);
out:
    ir_free(a.flags);
    ir_free(a.grad);
    if (st) ir_module_remove_func(m, a.f); /* the module is left as it was */
    return st;
}

kiln_status pass_autodiff(kiln_module *m, kiln_diag *d) {
    return pass_autodiff_rules(m, pass_grad_rule, d);
}

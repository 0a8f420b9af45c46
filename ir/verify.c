/*
 * verify.c — the checks every pass may rely on, runnable between any two
 * passes. Reports every problem found in a function, not only the first:
 *   - operands are defined before use (arguments, module globals, earlier
 *     nodes; inside a region: the region's operands and earlier body nodes);
 *   - each node's stored type equals what shape inference gives now;
 *   - arities, void values never used as operands, assign targets globals;
 *   - region bodies hold only elementwise ops and assigns, and the region's
 *     operand list is exactly the set of outside values its body reads;
 *   - an allreduce_mean that starts its bucket's collective without waiting
 *     (wait=false) is read by an allreduce_wait later in the function (else
 *     the collective would still be writing when its result is read).
 */
#include "ir/ir.h"

#include <stdio.h>
#include <string.h>

typedef struct verifier {
    const kiln_func *f;
    kiln_diag *d;
    uint8_t *defined; /* by serial: 1 defined at top level, 2 inside the current region */
    int limit;
    int errors;
    bool oom; /* an allocation failed: report NOMEM, not a broken function */
} verifier;

static void problem(verifier *v, const ir_node *n, const char *fmt, const char *extra) {
    ir_sb line;
    ir_sb_init(&line);
    if (n) ir_sb_node_short(&line, n);
    char *s = ir_sb_take(&line);
    ir_error(v->d, KILN_ERR_INVALID, n ? n->loc : ir_loc_none(), "verify @%s: %s%s%s%s%s",
             v->f->name, fmt, extra ? " " : "", extra ? extra : "", s ? " in: " : "",
             s ? s : "");
    ir_free(s);
    v->errors++;
}

static bool is_defined(verifier *v, const ir_node *x) {
    if (x->op == IR_GLOBAL) {
        const kiln_module *m = v->f->m;
        return x->index >= 0 && x->index < m->n_globals && m->globals[x->index]->ref == x;
    }
    return x->serial >= 0 && x->serial < v->limit && v->defined[x->serial];
}

static void check_node(verifier *v, const ir_node *n, const ir_node *region_owner);

static void check_region(verifier *v, const ir_node *n) {
    const ir_region *r = n->region;
    /* Captured operands must be defined outside. */
    for (int k = 0; k < n->n_in; k++)
        if (!is_defined(v, n->in[k])) problem(v, n, "region operand used before it is defined", NULL);
    /* Each body node reads captured values or earlier body nodes. */
    uint8_t *captured = ir_calloc((size_t)v->limit + 1, 1);
    if (!captured) {
        ir_oom(v->d);
        v->errors++;
        v->oom = true;
        return;
    }
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k]->serial < v->limit) captured[n->in[k]->serial] = 1;
    bool used_capture[64] = {0};
    for (int i = 0; i < r->n; i++) {
        const ir_node *b = r->nodes[i];
        const ir_op_info *info = ir_op(b->op);
        if (!info->is_ew && b->op != IR_OP_assign)
            problem(v, b, "only elementwise ops and assign may appear in a fused region", NULL);
        for (int k = 0; k < b->n_in; k++) {
            const ir_node *x = b->in[k];
            bool inside = x->serial < v->limit && v->defined[x->serial] == 2;
            bool cap = x->serial < v->limit && captured[x->serial];
            if (!inside && !cap) {
                problem(v, b, "region body reads a value that is not a region operand", NULL);
            } else if (cap && !inside) {
                for (int j = 0; j < n->n_in && j < 64; j++)
                    if (n->in[j] == x) used_capture[j] = true;
            }
        }
        check_node(v, b, n);
        if (b->serial < v->limit && b->type.dtype != IR_VOID) v->defined[b->serial] = 2;
    }
    for (int j = 0; j < n->n_in && j < 64; j++)
        if (!used_capture[j]) problem(v, n, "region operand is never read by the body", NULL);
    if (r->yield) {
        bool ok = r->yield->serial < v->limit && v->defined[r->yield->serial] == 2;
        if (!ok) problem(v, n, "region yields a value not computed in its body", NULL);
    } else if (n->type.dtype != IR_VOID) {
        problem(v, n, "region without yield must have no value", NULL);
    }
    /* Body values are not visible after the region. */
    for (int i = 0; i < r->n; i++)
        if (r->nodes[i]->serial < v->limit) v->defined[r->nodes[i]->serial] = 0;
    ir_free(captured);
}

static void check_node(verifier *v, const ir_node *n, const ir_node *owner) {
    const ir_op_info *info = ir_op(n->op);
    if (!info || n->op < IR_FIRST_OP) {
        problem(v, n, "not an op", NULL);
        return;
    }
    if (n->serial < 0 || n->serial >= v->limit) {
        problem(v, n, "node serial out of range", NULL);
        return;
    }
    if (v->defined[n->serial]) problem(v, n, "node appears twice", NULL);
    if (info->arity >= 0 && n->n_in != info->arity) problem(v, n, "wrong number of operands", NULL);
    if (n->op == IR_OP_fused && !n->region) problem(v, n, "fused node without a region", NULL);
    if (n->op != IR_OP_fused && n->region) problem(v, n, "region on a node that is not fused", NULL);
    for (int k = 0; k < n->n_in; k++) {
        const ir_node *x = n->in[k];
        if (x->type.dtype == IR_VOID) problem(v, n, "operand has no value", NULL);
        if (!owner && !is_defined(v, x)) problem(v, n, "operand used before it is defined", NULL);
    }
    if (n->region) {
        check_region(v, n);
    }
    /* Attributes must be what the op's schema declares. */
    char why[96];
    if (n->attrs.op != n->op) {
        problem(v, n, "attributes belong to another op", NULL);
        return;
    }
    if (ir_attrs_check(&n->attrs, why, sizeof why)) {
        problem(v, n, "bad attributes:", why);
        return;
    }
    /* Types must be what inference says. */
    ir_node copy = *n;
    kiln_diag tmp;
    memset(&tmp, 0, sizeof tmp);
    if (ir_node_infer(&copy, &tmp)) {
        const char *msg = kiln_diag_message(&tmp);
        const char *p = strstr(msg, "error: ");
        size_t len = strcspn(p ? p + 7 : msg, "\n");
        char buf[256];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < 255 ? len : 255), p ? p + 7 : msg);
        problem(v, n, "ill-typed:", buf);
    } else if (!ir_type_eq(&copy.type, &n->type)) {
        char a[IR_TYPE_STR_MAX], b[IR_TYPE_STR_MAX], buf[2 * IR_TYPE_STR_MAX + 32];
        snprintf(buf, sizeof buf, "%s, inference gives %s", ir_type_str(&n->type, a, sizeof a),
                 ir_type_str(&copy.type, b, sizeof b));
        problem(v, n, "stored type is", buf);
    }
    ir_sb_free(&tmp.text);
}

kiln_status ir_verify_func(const kiln_func *f, kiln_diag *d) {
    verifier v = {f, d, NULL, f->m->next_serial, 0, false};
    v.defined = ir_calloc((size_t)v.limit + 1, 1);
    if (!v.defined) return ir_oom(d);
    for (int i = 0; i < f->n_args; i++) {
        const ir_node *a = f->args[i];
        if (a->op != IR_ARG || a->serial >= v.limit)
            problem(&v, a, "bad argument", NULL);
        else
            v.defined[a->serial] = 1;
        if (a->type.dtype == IR_VOID) problem(&v, a, "argument without a type", NULL);
    }
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *n = f->nodes[i];
        check_node(&v, n, NULL);
        if (n->serial >= 0 && n->serial < v.limit && n->type.dtype != IR_VOID)
            v.defined[n->serial] = 1;
    }
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *n = f->nodes[i];
        if (n->op != IR_OP_allreduce_mean || n->attrs.op != n->op || !ir_attr_i(n, "flush") ||
            ir_attr_i(n, "wait"))
            continue;
        bool waited = false;
        for (int j = i + 1; j < f->n_nodes && !waited; j++)
            waited = f->nodes[j]->op == IR_OP_allreduce_wait && f->nodes[j]->n_in == 1 &&
                     f->nodes[j]->in[0] == n;
        if (!waited)
            problem(&v, n,
                    "allreduce_mean {wait=false} is never waited for (add an allreduce_wait of "
                    "its result before the result is used)",
                    NULL);
    }
    for (int i = 0; i < f->n_results; i++)
        if (!is_defined(&v, f->results[i]) || f->results[i]->type.dtype == IR_VOID)
            problem(&v, NULL, "returns an undefined value", NULL);
    const ir_node *mix = f->planned && f->mem_chunk > 0 ? ir_func_mixes_rows(f) : NULL;
    if (mix)
        problem(&v, mix->op == IR_ARG ? NULL : mix,
                "runs its batch in chunks (mem chunk) but a value mixes the rows of the batch",
                NULL);
    ir_free(v.defined);
    if (v.oom) return KILN_ERR_NOMEM;
    return v.errors ? KILN_ERR_INVALID : KILN_OK;
}

kiln_status ir_verify_module(const kiln_module *m, kiln_diag *d) {
    kiln_status st = KILN_OK;
    for (int i = 0; i < m->n_funcs; i++) {
        kiln_status s = ir_verify_func(m->funcs[i], d);
        if (s && !st) st = s;
    }
    return st;
}

kiln_status kiln_module_verify(const kiln_module *m, kiln_diag *d) {
    if (!m) return KILN_ERR_INVALID;
    return ir_verify_module(m, d);
}

/* ------------------------------------------------------ rows kept apart */

static bool batched(const ir_node *x) {
    return x->type.dtype != IR_VOID && ir_type_batch_axis(&x->type) >= 0;
}

/* One batch axis, the first. */
static bool batch_leads(const ir_type *t) {
    int n = 0;
    for (int a = 0; a < t->rank; a++) n += t->dims[a] == KILN_BATCH;
    return n == 1 && t->dims[0] == KILN_BATCH;
}

static bool names_axis0(const ir_node *n) {
    if (ir_op_attr_index(n->op, "axis") >= 0) return ir_attr_i(n, "axis") == 0;
    if (ir_op_attr_index(n->op, "axes") < 0) return false;
    const int64_t *ax;
    int k = ir_attr_ints(n, "axes", &ax);
    if (k == 0) return true; /* no axes: all of them */
    for (int i = 0; i < k; i++)
        if (ax[i] == 0) return true;
    return false;
}

static const ir_node *mixes_rows(const ir_node *n) {
    /* Other ops may have effects (assign, collectives) or mix rows: a node
     * runs once per chunk, so even one that reads no batch must be pure. */
    if (n->op == IR_OP_assign || (!ir_op_has(n->op, IR_FACT_ROWWISE) && !ir_op(n->op)->is_ew))
        return n;
    bool reads_batch = false;
    for (int i = 0; i < n->n_in; i++) {
        if (!batched(n->in[i])) continue;
        if (!batch_leads(&n->in[i]->type)) return n;
        reads_batch = true;
    }
    if (n->op == IR_OP_fused && n->region) {
        for (int i = 0; i < n->region->n; i++) {
            const ir_node *m = mixes_rows(n->region->nodes[i]);
            if (m) return m;
        }
    }
    if (!reads_batch) return NULL; /* the same for every row: run again per chunk */
    if (n->type.dtype == IR_VOID || !batch_leads(&n->type) || names_axis0(n)) return n;
    return NULL;
}

const ir_node *ir_func_mixes_rows(const kiln_func *f) {
    for (int i = 0; i < f->n_args; i++)
        if (batched(f->args[i]) && !batch_leads(&f->args[i]->type)) return f->args[i];
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *m = mixes_rows(f->nodes[i]);
        if (m) return m;
    }
    for (int i = 0; i < f->n_results; i++) {
        const ir_node *r = f->results[i];
        if (batched(r) && !batch_leads(&r->type)) return r;
    }
    return NULL;
}

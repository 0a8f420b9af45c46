/*
 * layout.c — where each value of a function lives when its code runs.
 *
 *   arguments        args[i]          (caller memory, read only)
 *   module globals   globals[g]
 *   results          results[i]       a node returned by the function is
 *                                     computed straight into the caller's
 *                                     buffer (its first occurrence)
 *   reshape          its operand's buffer (a view), unless the plan gave it
 *                                     a slot of its own or it views a global
 *                                     that the function assigns
 *   other values     the workspace, at the plan-memory slot
 *
 * Workspace: [fixed | per sample × batch], mem_fixed + mem_per_sample *
 * batch bytes, every byte placed by plan-memory: values, the temps of
 * regions that run node by node (ir_region_needs_split), each node's own
 * workspace (ops.def's ws column) and the 16-byte error record. Codegen
 * places nothing: an unplanned function is an error, and so is a plan that
 * puts a result over an operand its op still reads (plan-memory never
 * does; a hand-written .kir plan might).
 */
#include "codegen/lower.h"

#include <string.h>

bool cg_buf_same(const cg_buf *x, const cg_buf *y) {
    if (x->kind != y->kind || x->kind == CG_BUF_NONE) return false;
    if (x->kind != CG_BUF_WS) return x->index == y->index;
    return x->a == y->a && x->b == y->b;
}

static int64_t floor_div(int64_t a, int64_t b) { /* b > 0 */
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* Integer batches B in [0, 2^31) with h0 + h1*B > 0: the range [*lo, *hi]. */
static void positive_range(int64_t h0, int64_t h1, int64_t *lo, int64_t *hi) {
    const int64_t bmax = INT32_MAX;
    if (h1 == 0) {
        *lo = h0 > 0 ? 0 : 1;
        *hi = h0 > 0 ? bmax : 0;
    } else if (h1 > 0) { /* B > -h0/h1 */
        *lo = floor_div(-h0, h1) + 1;
        *hi = bmax;
    } else { /* B < h0/(-h1) */
        *lo = 0;
        *hi = -floor_div(-h0, -h1) - 1; /* ceil(h0/-h1) - 1 */
    }
}

bool cg_buf_may_overlap(const cg_buf *x, const cg_buf *y) {
    if (x->kind == CG_BUF_NONE || y->kind == CG_BUF_NONE) return false;
    if (x->kind != y->kind) return false; /* distinct memory by the ABI */
    if (x->kind != CG_BUF_WS) return x->index == y->index;
    /* [start, end) of each is linear in the batch B; they overlap iff
     * end_y - start_x > 0 and end_x - start_y > 0 for some B. */
    int64_t f0 = y->a + y->size_fixed - x->a, f1 = y->b + y->size_ps - x->b;
    int64_t g0 = x->a + x->size_fixed - y->a, g1 = x->b + x->size_ps - y->b;
    int64_t flo, fhi, glo, ghi;
    positive_range(f0, f1, &flo, &fhi);
    positive_range(g0, g1, &glo, &ghi);
    int64_t lo = flo > glo ? flo : glo, hi = fhi < ghi ? fhi : ghi;
    if (lo < 0) lo = 0;
    return lo <= hi;
}

/* ---------------------------------------------------------------- slots */

static void set_sizes(cg_buf *b, const ir_type *t) {
    if (ir_type_batch_axis(t) >= 0) {
        b->size_fixed = 0;
        b->size_ps = ir_type_static_numel(t) * 4;
    } else {
        b->size_fixed = ir_type_numel(t, 1) * 4;
        b->size_ps = 0;
    }
}

/* The workspace slot plan-memory gave: `off` in the fixed part, or at
 * mem_fixed + off * batch in the batch part. */
static cg_buf ws_slot(const kiln_func *f, int64_t off, bool batch, int64_t fixed, int64_t ps) {
    cg_buf b = {.kind = CG_BUF_WS, .a = batch ? f->mem_fixed : off, .b = batch ? off : 0,
                .size_fixed = fixed, .size_ps = ps};
    return b;
}

void cg_layout_free(cg_layout *l) {
    ir_free(l->buf);
    ir_free(l->buf2);
    ir_free(l->split);
    memset(l, 0, sizeof *l);
}

static void mark_assigned(ir_node *n, void *ctx) {
    uint8_t *assigned = ctx;
    if (n->op == IR_OP_assign) assigned[n->in[0]->serial] = 1;
}

/* A reshape reads its operand's bytes in place unless the plan gave it a
 * slot of its own, or it views a global the function assigns. */
static bool is_view(const kiln_func *f, const cg_layout *l, const ir_node *n,
                    const uint8_t *assigned) {
    const ir_node *src = n->in[0];
    const cg_buf *sb = &l->buf[src->serial];
    /* The root of a chain of views. */
    while (src->op == IR_OP_reshape && cg_buf_same(&l->buf[src->in[0]->serial], sb))
        src = src->in[0];
    if (src->op == IR_GLOBAL && assigned[src->serial]) return false;
    cg_buf mine = ws_slot(f, n->mem_offset, n->mem_batch, 0, 0);
    return n->mem_offset < 0 || n->mem_inplace || cg_buf_same(sb, &mine);
}

static void place_inputs(kiln_func *f, cg_layout *l) {
    for (int i = 0; i < f->n_args; i++) {
        cg_buf *b = &l->buf[f->args[i]->serial];
        b->kind = CG_BUF_ARG;
        b->index = i;
        set_sizes(b, &f->args[i]->type);
    }
    for (int g = 0; g < f->m->n_globals; g++) {
        const ir_global *gl = f->m->globals[g];
        cg_buf *b = &l->buf[gl->ref->serial];
        b->kind = CG_BUF_GLOBAL;
        b->index = g;
        set_sizes(b, &gl->type);
    }
}

static kiln_status unplanned(kiln_func *f, const ir_node *n, kiln_diag *d, const char *what) {
    return ir_error(d, KILN_ERR_INVALID, n ? n->loc : ir_loc_none(),
                    "codegen: @%s: %s%s has no place in the memory plan (run plan-memory first)",
                    f->name, n ? ir_op_name(n->op) : "the function", what);
}

kiln_status cg_check_planned(kiln_module *m, const char *only_func, kiln_diag *d) {
    for (int i = 0; i < m->n_funcs; i++) {
        kiln_func *f = m->funcs[i];
        if (only_func && strcmp(f->name, only_func) != 0) continue;
        if (!f->planned || f->mem_err < 0) return unplanned(f, NULL, d, "");
    }
    return KILN_OK;
}

/* Where each value lives: arguments, globals, results, views, or its slot. */
static kiln_status place_values(kiln_func *f, cg_layout *l, const uint8_t *assigned,
                                const int *result_of, kiln_diag *d) {
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        cg_buf *b = &l->buf[n->serial];
        if (n->type.dtype == IR_VOID) continue;
        if (n->op == IR_OP_reshape && is_view(f, l, n, assigned)) {
            *b = l->buf[n->in[0]->serial];
            continue;
        }
        if (result_of[n->serial] >= 0) {
            b->kind = CG_BUF_RESULT;
            b->index = result_of[n->serial];
            set_sizes(b, &n->type);
        } else if (n->mem_offset >= 0) {
            *b = ws_slot(f, n->mem_offset, n->mem_batch, 0, 0);
            set_sizes(b, &n->type);
        } else {
            return unplanned(f, n, d, "'s value");
        }
    }
    return KILN_OK;
}

/* The temps of regions that run node by node (their body values' slots),
 * and the check that the plan lets every other op write where it may. */
static kiln_status place_temps(kiln_func *f, cg_layout *l, kiln_diag *d) {
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        if (n->op == IR_OP_fused && ir_region_needs_split(n)) {
            l->split[n->serial] = 1;
            for (int k = 0; k < n->region->n; k++) {
                ir_node *x = n->region->nodes[k];
                if (x->type.dtype == IR_VOID) continue;
                if (x->mem_offset < 0) return unplanned(f, x, d, " (a region temp)");
                l->buf2[x->serial] = ws_slot(f, x->mem_offset, x->mem_batch, 0, 0);
                set_sizes(&l->buf2[x->serial], &x->type);
            }
            continue;
        }
        bool clash = n->op == IR_OP_fused && cg_region_needs_split(n, l->buf);
        /* Ops whose lowering reads what it needs of an element (or row) before
         * writing over it (ops.def facts) may share an operand's memory. */
        if (n->type.dtype != IR_VOID && !ir_op_has(n->op, IR_FACT_INPLACE | IR_FACT_READS_FIRST))
            for (int k = 0; k < n->n_in; k++)
                if (cg_buf_may_overlap(&l->buf[n->serial], &l->buf[n->in[k]->serial])) clash = true;
        if (clash)
            return ir_error(d, KILN_ERR_INVALID, n->loc,
                            "codegen: @%s: the memory plan puts the result of %s over an operand "
                            "it still reads",
                            f->name, ir_op_name(n->op));
    }
    return KILN_OK;
}

kiln_status cg_layout_func(kiln_func *f, cg_layout *l, kiln_diag *d) {
    memset(l, 0, sizeof *l);
    kiln_status st = KILN_OK;
    if (!f->planned || f->mem_err < 0) return unplanned(f, NULL, d, "");
    int limit = f->m->next_serial;
    l->limit = limit;
    l->buf = ir_calloc((size_t)limit + 1, sizeof *l->buf);
    l->buf2 = ir_calloc((size_t)limit + 1, sizeof *l->buf2);
    l->split = ir_calloc((size_t)limit + 1, 1);
    int *result_of = ir_malloc(sizeof(int) * ((size_t)limit + 1));
    uint8_t *assigned = ir_calloc((size_t)limit + 1, 1);
    if (!l->buf || !l->buf2 || !l->split || !result_of || !assigned) {
        st = ir_oom(d);
        goto out;
    }
    place_inputs(f, l);
    for (int i = 0; i <= limit; i++) result_of[i] = -1;
    for (int i = f->n_results - 1; i >= 0; i--) result_of[f->results[i]->serial] = i;
    ir_func_walk(f, mark_assigned, assigned);
    if ((st = place_values(f, l, assigned, result_of, d)) || (st = place_temps(f, l, d))) goto out;
    l->err = ws_slot(f, f->mem_err, false, 16, 0);
    l->ws_fixed = f->mem_fixed;
    l->ws_per_sample = f->mem_per_sample;
out:
    ir_free(result_of);
    ir_free(assigned);
    if (st) cg_layout_free(l);
    return st;
}

cg_buf cg_node_ws_buf(const kiln_func *f, const ir_node *n, bool per_sample) {
    int64_t fixed = 0, ps = 0;
    ir_op_workspace(n, &fixed, &ps);
    cg_buf none = {.kind = CG_BUF_NONE};
    if (per_sample) return n->mem_wsb >= 0 && ps > 0 ? ws_slot(f, n->mem_wsb, true, 0, ps) : none;
    return n->mem_ws >= 0 && fixed > 0 ? ws_slot(f, n->mem_ws, false, fixed, 0) : none;
}

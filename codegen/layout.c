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
 *   other values     the workspace: the plan-memory slot when the function
 *                                     is planned, else a slot of codegen's
 *
 * Workspace: [plan: fixed | plan: per sample × batch | codegen: fixed |
 * codegen: per sample × batch]; codegen's slots also hold the temps of
 * regions that run node by node, scratch results of ops that cannot write
 * over their operands, and the 16-byte error record.
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

typedef struct slot_req {
    cg_buf *dst;
    bool per_sample;
    int64_t off;
} slot_req;

typedef struct builder {
    slot_req *req;
    int n, cap;
    int64_t ef, eps; /* extra fixed bytes; extra bytes per sample */
} builder;

static int64_t round_up(int64_t v, int64_t a) {
    return (v + a - 1) / a * a;
}

static void set_sizes(cg_buf *b, const ir_type *t) {
    if (ir_type_batch_axis(t) >= 0) {
        b->size_fixed = 0;
        b->size_ps = ir_type_static_numel(t) * 4;
    } else {
        b->size_fixed = ir_type_numel(t, 1) * 4;
        b->size_ps = 0;
    }
}

static kiln_status request(builder *B, cg_buf *dst, const ir_type *t, kiln_diag *d) {
    if (!IR_GROW(B->req, B->cap, B->n + 1)) return ir_oom(d);
    memset(dst, 0, sizeof *dst);
    dst->kind = CG_BUF_WS;
    set_sizes(dst, t);
    slot_req *r = &B->req[B->n++];
    r->dst = dst;
    r->per_sample = dst->size_ps > 0;
    if (r->per_sample) {
        r->off = B->eps;
        B->eps += round_up(dst->size_ps, 16);
    } else {
        r->off = B->ef;
        B->ef += round_up(dst->size_fixed > 0 ? dst->size_fixed : 4, 64);
    }
    return KILN_OK;
}

void cg_layout_free(cg_layout *l) {
    ir_free(l->buf);
    ir_free(l->buf2);
    ir_free(l->split);
    ir_free(l->scratch);
    memset(l, 0, sizeof *l);
}

static void mark_assigned(ir_node *n, void *ctx) {
    uint8_t *assigned = ctx;
    if (n->op == IR_OP_assign) assigned[n->in[0]->serial] = 1;
}

kiln_status cg_layout_func(kiln_func *f, cg_layout *l, kiln_diag *d) {
    memset(l, 0, sizeof *l);
    int limit = f->m->next_serial;
    l->limit = limit;
    l->buf = ir_calloc((size_t)limit + 1, sizeof *l->buf);
    l->buf2 = ir_calloc((size_t)limit + 1, sizeof *l->buf2);
    l->split = ir_calloc((size_t)limit + 1, 1);
    l->scratch = ir_calloc((size_t)limit + 1, 1);
    int *result_of = ir_malloc(sizeof(int) * ((size_t)limit + 1));
    uint8_t *assigned = ir_calloc((size_t)limit + 1, 1);
    builder B = {0};
    kiln_status st = KILN_OK;
    if (!l->buf || !l->buf2 || !l->split || !l->scratch || !result_of || !assigned) {
        st = ir_oom(d);
        goto out;
    }
    int64_t base_fixed = f->planned ? f->mem_fixed : 0;
    int64_t base_ps = f->planned ? f->mem_per_sample : 0;
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
    for (int i = 0; i <= limit; i++) result_of[i] = -1;
    for (int i = f->n_results - 1; i >= 0; i--) result_of[f->results[i]->serial] = i;
    ir_func_walk(f, mark_assigned, assigned);

    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        cg_buf *b = &l->buf[n->serial];
        if (n->type.dtype == IR_VOID) continue;
        if (n->op == IR_OP_reshape) {
            const ir_node *src = n->in[0];
            const cg_buf *sb = &l->buf[src->serial];
            /* The root of a chain of views. */
            while (src->op == IR_OP_reshape && cg_buf_same(&l->buf[src->in[0]->serial], sb))
                src = src->in[0];
            bool view =
                n->mem_offset < 0 || n->mem_inplace ||
                (sb->kind == CG_BUF_WS && sb->a == (n->mem_batch ? base_fixed : n->mem_offset) &&
                 sb->b == (n->mem_batch ? n->mem_offset : 0));
            if (src->op == IR_GLOBAL && assigned[src->serial]) view = false;
            if (view) {
                *b = *sb;
                continue;
            }
        }
        if (result_of[n->serial] >= 0) {
            b->kind = CG_BUF_RESULT;
            b->index = result_of[n->serial];
            set_sizes(b, &n->type);
        } else if (f->planned && n->mem_offset >= 0) {
            b->kind = CG_BUF_WS;
            b->a = n->mem_batch ? base_fixed : n->mem_offset;
            b->b = n->mem_batch ? n->mem_offset : 0;
            set_sizes(b, &n->type);
        } else if ((st = request(&B, b, &n->type, d))) {
            goto out;
        }
    }
    /* Regions that must run node by node, and results that need scratch. */
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        if (n->op == IR_OP_fused && cg_region_needs_split(n, l->buf)) {
            l->split[n->serial] = 1;
            for (int k = 0; k < n->region->n; k++) {
                ir_node *x = n->region->nodes[k];
                if (x->type.dtype != IR_VOID &&
                    (st = request(&B, &l->buf2[x->serial], &x->type, d)))
                    goto out;
            }
            continue;
        }
        /* Ops whose lowering reads what it needs of an element (or row) before
         * writing over it (ops.def facts) may share an operand's memory. */
        if (n->type.dtype == IR_VOID || ir_op_has(n->op, IR_FACT_INPLACE | IR_FACT_READS_FIRST))
            continue;
        if (n->op == IR_OP_reshape && cg_buf_same(&l->buf[n->serial], &l->buf[n->in[0]->serial]))
            continue;
        bool clash = false;
        for (int k = 0; k < n->n_in; k++)
            if (cg_buf_may_overlap(&l->buf[n->serial], &l->buf[n->in[k]->serial])) clash = true;
        if (clash) {
            l->scratch[n->serial] = 1;
            if ((st = request(&B, &l->buf2[n->serial], &n->type, d))) goto out;
        }
    }
    ir_type rec = ir_type_make(IR_I32, 1, (int64_t[]){4});
    if ((st = request(&B, &l->err, &rec, d))) goto out;
    /* Place codegen's slots after the plan's. */
    for (int i = 0; i < B.n; i++) {
        slot_req *r = &B.req[i];
        if (r->per_sample) {
            r->dst->a = base_fixed + B.ef;
            r->dst->b = base_ps + r->off;
        } else {
            r->dst->a = base_fixed + r->off;
            r->dst->b = base_ps;
        }
    }
    l->ws_fixed = base_fixed + B.ef;
    l->ws_per_sample = base_ps + B.eps;
out:
    ir_free(B.req);
    ir_free(result_of);
    ir_free(assigned);
    if (st) cg_layout_free(l);
    return st;
}

/*
 * ew.c — elementwise loops: a top-level EW node, or a fused region, becomes
 * one loop nest evaluating every body node's scalar code per element.
 *
 *   %5 = fused(%0, @b) : f32[?,128] {          for i < batch:
 *     %6 = add(%0, @b) : f32[?,128]              for j < 128:
 *     %7 = relu(%6) : f32[?,128]                   t = x0[i*128+j] + b[j]
 *     yield %7                                     out[i*128+j] = t < 0 ? 0 : t
 *   }
 *
 * Each operand is read with broadcast strides. Axes of size 1 are dropped and
 * neighbouring axes on which every operand is either contiguous or broadcast
 * are merged, so the innermost loop is unit-stride (or invariant) for every
 * operand and LLVM vectorizes it. Assigns in a region store at the element's
 * position; a later read of the same global in the region sees the stored
 * value, as in the interpreter (which runs a body node by node). When a
 * written buffer has fewer elements than the loop's domain and is also read
 * by the region, one loop would read values it has already overwritten: such
 * a region runs node by node instead (ir_region_needs_split), through a
 * workspace temp per body value that plan-memory places. The other such
 * conflict, a result over an operand it reads through another shape, is
 * one plan-memory never makes (cg_region_needs_split checks a plan).
 */
#include "codegen/lower.h"

#include <string.h>

static bool written_conflicts(const ir_node *n, const cg_buf *buf, const cg_buf *w,
                              const ir_type *wt, const ir_type *dom) {
    for (int k = 0; k < n->n_in; k++) {
        const ir_node *x = n->in[k];
        const cg_buf *xb = &buf[x->serial];
        if (!cg_buf_may_overlap(xb, w)) continue;
        /* Reading the element being written, at the same position, is fine. */
        if (cg_buf_same(xb, w) && ir_type_same_shape(wt, dom) && ir_type_same_shape(&x->type, wt))
            continue;
        return true;
    }
    return false;
}

bool cg_region_needs_split(const ir_node *n, const cg_buf *buf) {
    ir_type dom;
    if (ir_region_domain(n, &dom)) return true;
    const ir_region *r = n->region;
    if (r->yield && written_conflicts(n, buf, &buf[n->serial], &n->type, &dom)) return true;
    for (int i = 0; i < r->n; i++) {
        const ir_node *b = r->nodes[i];
        if (b->op != IR_OP_assign) continue;
        const ir_node *g = b->in[0];
        if (written_conflicts(n, buf, &buf[g->serial], &g->type, &dom)) return true;
    }
    return false;
}

/* ------------------------------------------------------------ the loop */

typedef struct stream {
    LLVMValueRef raw, ptr; /* i8* buffer; typed pointer */
    LLVMTypeRef elem;
    ir_type type;
    bool real[KILN_MAX_RANK]; /* per collapsed axis: not broadcast */
    LLVMValueRef stride[KILN_MAX_RANK];
    LLVMValueRef off;    /* element offset at the current position */
    LLVMValueRef cached; /* value loaded (or stored) at this position */
} stream;

typedef struct ew_loop {
    stream s[CG_EW_MAX_STREAMS];
    int ns;
    int cap_stream[CG_EW_MAX_STREAMS]; /* by capture index */
    int out_stream;
} ew_loop;

static int cap_index(const ir_node *x, int n_cap, ir_node *const *cap) {
    for (int k = 0; k < n_cap; k++)
        if (cap[k] == x) return k;
    return -1;
}

static LLVMValueRef read_operand(cg_ctx *c, ew_loop *L, const ir_node *x, int n_cap,
                                 ir_node *const *cap) {
    if (x->serial < c->limit && c->val[x->serial]) return c->val[x->serial];
    int k = cap_index(x, n_cap, cap);
    if (k < 0) return NULL;
    stream *s = &L->s[L->cap_stream[k]];
    if (!s->cached) s->cached = cg_load(c, s->elem, s->ptr, s->off);
    return s->cached;
}

static void write_stream(cg_ctx *c, ew_loop *L, int si, LLVMValueRef v) {
    stream *s = &L->s[si];
    cg_store(c, v, s->ptr, s->off);
    for (int i = 0; i < L->ns; i++)
        if (L->s[i].raw == s->raw) L->s[i].cached = NULL;
    s->cached = v; /* a later read at this position sees the stored value */
}

/* Emits the body at the current position (offsets set). */
static kiln_status emit_body(cg_ctx *c, ew_loop *L, int n_body, ir_node *const *body,
                             const ir_node *yield, int n_cap, ir_node *const *cap) {
    for (int i = 0; i < L->ns; i++) L->s[i].cached = NULL;
    for (int i = 0; i < n_body; i++) {
        const ir_node *b = body[i];
        LLVMValueRef x[4] = {0};
        if (b->n_in > 4) return cg_error(c, b, "too many operands for an elementwise op");
        for (int k = 0; k < b->n_in; k++) {
            x[k] = read_operand(c, L, b->in[k], n_cap, cap);
            if (!x[k]) return cg_error(c, b, "operand %d is not available in the loop", k + 1);
        }
        if (b->op == IR_OP_assign) {
            int k = cap_index(b->in[0], n_cap, cap);
            if (k < 0) return cg_error(c, b, "assign target is not a region operand");
            write_stream(c, L, L->cap_stream[k], x[1]);
            continue;
        }
        cg_scalar_fn fn = cg_scalar_lowering(b->op);
        if (!fn) return cg_error(c, b, "not an elementwise op");
        if (b->serial < c->limit) c->val[b->serial] = fn(c, b, x);
    }
    if (yield && L->out_stream >= 0) {
        LLVMValueRef v = yield->serial < c->limit ? c->val[yield->serial] : NULL;
        if (!v) return cg_error(c, yield, "the region's yield was not computed");
        write_stream(c, L, L->out_stream, v);
    }
    return KILN_OK;
}

/* Adds stream (buffer id, type) to the shape; returns its index or -1. */
static int shape_stream(cg_ew_shape *s, int id, const ir_type *t, int src) {
    for (int i = 0; i < s->ns; i++)
        if (s->id[i] == id && ir_type_eq(&s->type[i], t)) return i;
    if (s->ns == CG_EW_MAX_STREAMS) return -1;
    s->id[s->ns] = id;
    s->type[s->ns] = *t;
    s->src[s->ns] = src;
    return s->ns++;
}

kiln_status cg_ew_shape_of(const ir_type *dom, int n_cap, ir_node *const *cap, const int *cap_id,
                           const ir_type *out_t, int out_id, cg_ew_shape *s) {
    memset(s, 0, sizeof *s);
    s->out_stream = -1;
    for (int k = 0; k < n_cap; k++)
        if ((s->cap_stream[k] = shape_stream(s, cap_id[k], &cap[k]->type, k)) < 0)
            return KILN_ERR_LIMIT;
    if (out_t && (s->out_stream = shape_stream(s, out_id, out_t, -1)) < 0) return KILN_ERR_LIMIT;
    /* Axes of the domain, right-aligned pattern per stream. */
    int r = dom->rank, na = 0;
    int64_t dims[KILN_MAX_RANK];
    bool real[CG_EW_MAX_STREAMS][KILN_MAX_RANK];
    for (int a = 0; a < r; a++) {
        if (dom->dims[a] == 1) continue; /* size-1 axes carry no index */
        for (int i = 0; i < s->ns; i++) {
            const ir_type *t = &s->type[i];
            int ia = a - (r - t->rank);
            real[i][na] = ia >= 0 && t->dims[ia] != 1;
        }
        dims[na++] = dom->dims[a];
    }
    /* Merge neighbours with the same pattern in every stream. */
    for (int a = 0; a < na; a++) {
        bool merge = s->nc > 0;
        for (int i = 0; i < s->ns && merge; i++)
            if (s->real[i][s->nc - 1] != real[i][a]) merge = false;
        if (!merge) {
            s->fixed[s->nc] = 1;
            for (int i = 0; i < s->ns; i++) s->real[i][s->nc] = real[i][a];
            s->nc++;
        }
        if (dims[a] == KILN_BATCH)
            s->nbatch[s->nc - 1]++;
        else
            s->fixed[s->nc - 1] *= dims[a];
    }
    return KILN_OK;
}

LLVMValueRef cg_ew_size(cg_ctx *c, LLVMBuilderRef b, LLVMValueRef batch, const cg_ew_shape *s,
                        int axis) {
    LLVMValueRef v = cg_i64(c, s->fixed[axis]);
    for (int k = 0; k < s->nbatch[axis]; k++) v = LLVMBuildNSWMul(b, v, batch, "");
    return v;
}

/* Buffer ids for cg_ew_shape_of: equal pointers, equal ids. */
static int ptr_id(const LLVMValueRef *ptr, int n, LLVMValueRef p) {
    for (int k = 0; k < n; k++)
        if (ptr[k] == p) return k;
    return n;
}

kiln_status cg_ew_loop(cg_ctx *c, const ir_type *dom, int n_body, ir_node *const *body,
                       const ir_node *yield, LLVMValueRef out, int n_cap, ir_node *const *cap,
                       const LLVMValueRef *cap_ptr) {
    return cg_ew_loop_sized(c, dom, n_body, body, yield, out, n_cap, cap, cap_ptr, NULL);
}

kiln_status cg_ew_loop_sized(cg_ctx *c, const ir_type *dom, int n_body, ir_node *const *body,
                             const ir_node *yield, LLVMValueRef out, int n_cap,
                             ir_node *const *cap, const LLVMValueRef *cap_ptr,
                             const LLVMValueRef *sizes) {
    if (n_cap > CG_EW_MAX_STREAMS)
        return cg_error(c, c->node, "a fused region with %d operands is too large", n_cap);
    ew_loop *L = ir_calloc(1, sizeof *L);
    cg_ew_shape *sh = ir_calloc(1, sizeof *sh);
    int ids[CG_EW_MAX_STREAMS] = {0};
    kiln_status st = KILN_OK;
    if (!L || !sh) {
        st = ir_oom(c->d);
        goto done;
    }
    for (int k = 0; k < n_cap; k++) ids[k] = ptr_id(cap_ptr, k, cap_ptr[k]);
    const ir_type *out_t = yield && out ? &yield->type : NULL;
    if (cg_ew_shape_of(dom, n_cap, cap, ids, out_t, ptr_id(cap_ptr, n_cap, out), sh)) {
        st = cg_error(c, c->node, "a fused region with %d operands is too large", n_cap);
        goto done;
    }
    L->ns = sh->ns;
    L->out_stream = sh->out_stream;
    for (int k = 0; k < n_cap; k++) L->cap_stream[k] = sh->cap_stream[k];
    for (int i = 0; i < sh->ns; i++) {
        stream *s = &L->s[i];
        s->raw = sh->src[i] >= 0 ? cap_ptr[sh->src[i]] : out;
        s->type = sh->type[i];
        s->elem = cg_elem_type(c, s->type.dtype);
        s->ptr = cg_cast_ptr(c, s->raw, s->elem);
    }
    int nc = sh->nc;
    LLVMValueRef size[KILN_MAX_RANK];
    for (int a = 0; a < nc; a++) size[a] = sizes ? sizes[a] : cg_ew_size(c, c->b, c->batch, sh, a);
    /* Strides, innermost first: 1 on the innermost real axis. */
    for (int i = 0; i < L->ns; i++) {
        LLVMValueRef s = cg_i64(c, 1);
        for (int a = nc - 1; a >= 0; a--) {
            L->s[i].real[a] = sh->real[i][a];
            L->s[i].stride[a] = sh->real[i][a] ? s : cg_i64(c, 0);
            if (sh->real[i][a]) s = LLVMBuildNSWMul(c->b, s, size[a], "");
        }
    }
    /* The nest. */
    LLVMValueRef base[CG_EW_MAX_STREAMS];
    for (int i = 0; i < L->ns; i++) base[i] = cg_i64(c, 0);
    cg_loop loops[KILN_MAX_RANK];
    for (int a = 0; a < nc; a++) {
        LLVMValueRef idx = cg_loop_begin(c, &loops[a], cg_i64(c, 0), size[a], 1);
        for (int i = 0; i < L->ns; i++) {
            if (!L->s[i].real[a]) continue;
            LLVMValueRef t = a == nc - 1 ? idx : LLVMBuildNSWMul(c->b, idx, L->s[i].stride[a], "");
            base[i] = LLVMBuildNSWAdd(c->b, base[i], t, "");
        }
    }
    for (int i = 0; i < L->ns; i++) L->s[i].off = base[i];
    st = emit_body(c, L, n_body, body, yield, n_cap, cap);
    for (int a = nc - 1; a >= 0; a--) cg_loop_end(c, &loops[a], NULL);
    for (int i = 0; i < n_body; i++)
        if (body[i]->serial < c->limit) c->val[body[i]->serial] = NULL;
done:
    ir_free(sh);
    ir_free(L);
    return st;
}

kiln_status cg_ew_domain(const ir_node *n, ir_type *dom) {
    if (!n->region) {
        *dom = n->type;
        return KILN_OK;
    }
    return ir_region_domain(n, dom);
}

/* ---------------------------------------------------------- the rows */

kiln_status lower_fused(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    const ir_region *r = n->region;
    if (!c->lay->split[n->serial]) {
        ir_type dom;
        if (ir_region_domain(n, &dom)) return cg_error(c, n, "the region's shapes do not broadcast");
        return cg_ew_loop(c, &dom, r->n, r->nodes, r->yield, out, n->n_in, n->in, in);
    }
    /* Node by node, as the interpreter does: each body value in its temp. */
    for (int i = 0; i < r->n; i++) {
        ir_node *b = r->nodes[i];
        LLVMValueRef ptr[4];
        if (b->n_in > 4) return cg_error(c, b, "too many operands for an elementwise op");
        for (int k = 0; k < b->n_in; k++) {
            const ir_node *x = b->in[k];
            int ci = cap_index(x, n->n_in, n->in);
            ptr[k] = ci >= 0 ? in[ci] : c->temps[x->serial];
            if (!ptr[k]) return cg_error(c, b, "operand %d has no buffer", k + 1);
        }
        kiln_status st;
        if (b->op == IR_OP_assign) {
            st = cg_ew_loop(c, &b->in[0]->type, 1, &b, NULL, NULL, b->n_in, b->in, ptr);
        } else {
            if (!c->temps[b->serial]) return cg_error(c, b, "no temp for a region value");
            st = cg_ew_loop(c, &b->type, 1, &b, b, c->temps[b->serial], b->n_in, b->in, ptr);
        }
        if (st) return st;
    }
    if (r->yield && out) {
        LLVMValueRef bytes = LLVMBuildNSWMul(c->b, cg_numel(c, &n->type), cg_i64(c, 4), "");
        cg_memmove(c, out, c->temps[r->yield->serial], bytes);
    }
    return KILN_OK;
}

kiln_status lower_assign(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    (void)out;
    LLVMValueRef bytes = LLVMBuildNSWMul(c->b, cg_numel(c, &n->in[1]->type), cg_i64(c, 4), "");
    cg_memmove(c, in[0], in[1], bytes);
    return KILN_OK;
}

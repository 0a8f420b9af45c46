/*
 * interp.c — the reference interpreter: runs any function of a module, op by
 * op, in plain C. It is the oracle every pass and every lowering is checked
 * against, so it is written for clarity, not speed: every node gets its own
 * buffer (or, in a planned function, the workspace slot the plan gave it, so
 * a wrong plan shows up as wrong numbers), and elementwise ops walk a
 * multi-index with broadcast strides.
 */
#include "ir/ir.h"

#include <math.h>
#include <string.h>

struct ir_interp {
    kiln_func *f;
    int64_t batch;
    void *const *globals;
    kiln_diag *d;
    void **vals; /* by serial: data of each computed value */
    int limit;
    char *workspace; /* planned functions */
    void **owned;    /* buffers to free at the end */
    int n_owned, cap_owned;
    /* ir_interp_first_nonfinite: stop at the first f32 value with a NaN or
     * Inf, and say where. */
    bool find_nonfinite;
    ir_nonfinite *found;
};

kiln_diag *ir_interp_diag(ir_interp *ip) { return ip->d; }
void *ir_interp_global(ir_interp *ip, int index) { return ip->globals[index]; }
int64_t ir_interp_batch(ir_interp *ip) { return ip->batch; }

static void *value_data(ir_interp *ip, const ir_node *n) {
    if (n->op == IR_GLOBAL) return ip->globals[n->index];
    return n->serial < ip->limit ? ip->vals[n->serial] : NULL;
}

static void *alloc_owned(ir_interp *ip, size_t bytes) {
    if (!IR_GROW(ip->owned, ip->cap_owned, ip->n_owned + 1)) return NULL;
    void *p = ir_aligned_alloc(bytes);
    if (p) ip->owned[ip->n_owned++] = p;
    return p;
}

/* Output buffer of node n: its planned slot, or a fresh allocation. */
static void *out_buffer(ir_interp *ip, const ir_node *n, bool planned) {
    if (n->type.dtype == IR_VOID) return NULL;
    size_t bytes = (size_t)ir_type_numel(&n->type, ip->batch) * ir_dtype_size(n->type.dtype);
    if (planned && n->mem_offset >= 0) {
        int64_t off = n->mem_batch ? ip->f->mem_fixed + n->mem_offset * ip->batch : n->mem_offset;
        return ip->workspace + off;
    }
    return alloc_owned(ip, bytes ? bytes : 4);
}

/* ---- elementwise: the multi-index walk with broadcast strides ---- */

static kiln_status run_ew(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    const ir_op_info *info = ir_op(n->op);
    int r = out->type.rank;
    int64_t total = ir_type_numel(&out->type, 1);
    int64_t stride[4][KILN_MAX_RANK];
    size_t esz[4];
    int nin = n->n_in;
    for (int k = 0; k < nin; k++) {
        const ir_type *t = &in[k].type;
        int64_t s = 1;
        for (int a = r - 1; a >= 0; a--) {
            int ia = a - (r - t->rank);
            int64_t dim = ia >= 0 ? t->dims[ia] : 1;
            stride[k][a] = dim == 1 ? 0 : s;
            s *= dim;
        }
        esz[k] = ir_dtype_size(t->dtype);
    }
    int64_t idx[KILN_MAX_RANK] = {0};
    int64_t off[4] = {0};
    unsigned char *o = out->data;
    for (int64_t e = 0; e < total; e++) {
        ir_scalar x[4];
        for (int k = 0; k < nin; k++)
            memcpy(&x[k], (const unsigned char *)in[k].data + off[k] * (int64_t)esz[k], 4);
        ir_scalar y = info->scalar(n, x);
        memcpy(o + e * 4, &y, 4);
        /* Advance the multi-index. */
        for (int a = r - 1; a >= 0; a--) {
            idx[a]++;
            for (int k = 0; k < nin; k++) off[k] += stride[k][a];
            if (idx[a] < out->type.dims[a]) break;
            for (int k = 0; k < nin; k++) off[k] -= stride[k][a] * idx[a];
            idx[a] = 0;
        }
    }
    return KILN_OK;
}

/* Runs one node whose operands are computed; stores its output data. */
static kiln_status run_node(ir_interp *ip, const ir_node *n, bool planned) {
    const ir_op_info *info = ir_op(n->op);
    ir_tensor in[64];
    /* Only fused regions may have more operands; their body reads vals[]. */
    int nin = n->n_in <= 64 ? n->n_in : 0;
    for (int k = 0; k < nin; k++) {
        in[k].type = ir_type_bind(&n->in[k]->type, ip->batch);
        in[k].data = value_data(ip, n->in[k]);
        if (!in[k].data && n->in[k]->type.dtype != IR_VOID)
            return ir_error(ip->d, KILN_ERR_INVALID, n->loc, "interp: %s reads an undefined value",
                            info->name);
    }
    ir_tensor out = {ir_type_bind(&n->type, ip->batch), NULL};
    if (n->type.dtype != IR_VOID) {
        out.data = out_buffer(ip, n, planned);
        if (!out.data) return ir_oom(ip->d);
    }
    kiln_status st = info->is_ew ? run_ew(ip, n, &out, in) : info->kernel(ip, n, &out, in);
    if (st) return st;
    if (out.data) ip->vals[n->serial] = out.data;
    if (ip->find_nonfinite && out.data && n->type.dtype == IR_F32 && !ip->found->node) {
        const float *v = out.data;
        int64_t count = ir_type_numel(&out.type, 1);
        for (int64_t e = 0; e < count; e++)
            if (!isfinite(v[e])) {
                ip->found->node = n;
                ip->found->element = e;
                ip->found->value = v[e];
                return KILN_ERR_NONFINITE; /* stops the run; not an error */
            }
    }
    return KILN_OK;
}

kiln_status ir_interp_region(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    (void)in; /* the body reads captured values through vals[] */
    const ir_region *r = n->region;
    for (int i = 0; i < r->n; i++) {
        kiln_status st = run_node(ip, r->nodes[i], false);
        if (st) return st;
    }
    if (r->yield && out->data) {
        void *src = value_data(ip, r->yield);
        size_t bytes = (size_t)ir_type_numel(&out->type, 1) * ir_dtype_size(out->type.dtype);
        memmove(out->data, src, bytes);
    }
    return KILN_OK;
}

static kiln_status interp(kiln_func *f, int64_t batch, void *const *args, void *const *results,
                          void *const *globals, ir_nonfinite *found, kiln_diag *d) {
    if (batch < 0) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "interp: negative batch");
    ir_interp ip;
    memset(&ip, 0, sizeof ip);
    ip.f = f;
    ip.batch = batch;
    ip.globals = globals;
    ip.d = d;
    ip.find_nonfinite = found != NULL;
    ip.found = found;
    ip.limit = f->m->next_serial;
    ip.vals = ir_calloc((size_t)ip.limit + 1, sizeof(void *));
    kiln_status st = KILN_OK;
    if (!ip.vals) return ir_oom(d);
    if (f->planned) {
        int64_t bytes = f->mem_fixed + f->mem_per_sample * batch;
        ip.workspace = ir_aligned_alloc((size_t)(bytes > 0 ? bytes : 64));
        if (!ip.workspace) {
            st = ir_oom(d);
            goto out;
        }
        /* Poison the workspace so a value read before it is written shows. */
        memset(ip.workspace, 0xff, (size_t)bytes);
    }
    for (int i = 0; i < f->n_args; i++) ip.vals[f->args[i]->serial] = args[i];
    for (int i = 0; i < f->n_nodes && !st; i++) st = run_node(&ip, f->nodes[i], f->planned);
    if (found && st == KILN_ERR_NONFINITE && found->node) st = KILN_OK;
    for (int i = 0; i < f->n_results && !st && results; i++) {
        const ir_node *r = f->results[i];
        void *src = value_data(&ip, r);
        size_t bytes = (size_t)ir_type_numel(&r->type, batch) * ir_dtype_size(r->type.dtype);
        if (src != results[i]) memmove(results[i], src, bytes);
    }
out:
    for (int i = 0; i < ip.n_owned; i++) ir_aligned_free(ip.owned[i]);
    ir_free(ip.owned);
    ir_aligned_free(ip.workspace);
    ir_free(ip.vals);
    return st;
}

kiln_status ir_interp_run(kiln_func *f, int64_t batch, void *const *args, void *const *results,
                          void *const *globals, kiln_diag *d) {
    return interp(f, batch, args, results, globals, NULL, d);
}

kiln_status ir_interp_first_nonfinite(kiln_func *f, int64_t batch, void *const *args,
                                      void *const *globals, ir_nonfinite *found, kiln_diag *d) {
    memset(found, 0, sizeof *found);
    for (int i = 0; i < f->n_args; i++) {
        const ir_node *a = f->args[i];
        if (a->type.dtype != IR_F32) continue;
        const float *v = args[i];
        int64_t count = ir_type_numel(&a->type, batch);
        for (int64_t e = 0; e < count; e++)
            if (!isfinite(v[e])) {
                found->node = a;
                found->element = e;
                found->value = v[e];
                return KILN_OK;
            }
    }
    return interp(f, batch, args, NULL, globals, found, d);
}

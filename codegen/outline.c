/*
 * outline.c — one function for identical loops. Adam's update of each
 * parameter, or the bias-add and relu of each layer, is the same fused
 * region up to buffer addresses and lengths; inlined per node, LLVM
 * vectorizes and unrolls each copy separately (issue 17: fifty eight-wide
 * sqrt calls for a 3-layer MLP). Here each elementwise kernel gets a key —
 * its body (ops, attributes, dtypes, which operand each reads), its
 * parameters (which are noalias, which capture each is) and its loop shape
 * (cg_ew_shape: streams and broadcast pattern per collapsed axis) — that
 * leaves out addresses and lengths. A key used by two or more nodes of a
 * function becomes one internal `noinline` function
 *
 *   i32 @kiln.loop.K(i64 batch, i8* err, i8* buffers..., i64 len0, ...)
 *
 * built once per module and called with the buffers and the axis lengths;
 * a key used once keeps today's kernel, which O3 inlines and specializes.
 * The body is emitted by the same code (cg_ew_loop_sized), so the results
 * are the same bits.
 */
#include "codegen/lower.h"

#include <string.h>

struct cg_loops {
    char **key;
    LLVMValueRef *fn;
    LLVMTypeRef *fty;
    int *uses; /* in the function being built */
    int n, cap;
};

void cg_loops_free(cg_loops *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) ir_free(t->key[i]);
    ir_free(t->key);
    ir_free(t->fn);
    ir_free(t->fty);
    ir_free(t->uses);
    ir_free(t);
}

static int find(const cg_loops *t, const char *key) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->key[i], key) == 0) return i;
    return -1;
}

static bool grow(cg_loops *t) {
    if (t->n < t->cap) return true;
    int cap = t->cap ? 2 * t->cap : 16;
    char **k = ir_realloc(t->key, sizeof *k * (size_t)cap);
    if (k) t->key = k;
    LLVMValueRef *f = ir_realloc(t->fn, sizeof *f * (size_t)cap);
    if (f) t->fn = f;
    LLVMTypeRef *ft = ir_realloc(t->fty, sizeof *ft * (size_t)cap);
    if (ft) t->fty = ft;
    int *u = ir_realloc(t->uses, sizeof *u * (size_t)cap);
    if (u) t->uses = u;
    if (!k || !f || !ft || !u) return false;
    t->cap = cap;
    return true;
}

kiln_status cg_loops_count(cg_ctx *c, const char *key) {
    if (!c->loops && !(c->loops = ir_calloc(1, sizeof *c->loops))) return ir_oom(c->d);
    cg_loops *t = c->loops;
    int i = find(t, key);
    if (i < 0) {
        if (!grow(t) || !(t->key[t->n] = ir_strdup(key))) return ir_oom(c->d);
        i = t->n++;
        t->fn[i] = NULL;
        t->fty[i] = NULL;
        t->uses[i] = 0;
    }
    t->uses[i]++;
    return KILN_OK;
}

void cg_loops_new_func(cg_ctx *c) {
    if (c->loops)
        for (int i = 0; i < c->loops->n; i++) c->loops->uses[i] = 0;
}

/* ------------------------------------------------------------- the key */

static int cap_of(const ir_node *n, const ir_node *x) {
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] == x) return k;
    return -1;
}

static int body_of(const ir_region *r, const ir_node *x) {
    for (int j = 0; r && j < r->n; j++)
        if (r->nodes[j] == x) return j;
    return -1;
}

/* One body node: op{attrs}:dtype(operands). */
static bool key_node(ir_sb *key, const ir_node *n, const ir_region *r, const ir_node *b) {
    ir_sb_printf(key, "|%s", ir_op_name(b->op));
    ir_sb_attrs(key, &b->attrs);
    ir_sb_printf(key, ":%d(", (int)b->type.dtype);
    for (int k = 0; k < b->n_in; k++) {
        int ci = cap_of(n, b->in[k]), bi = ci < 0 ? body_of(r, b->in[k]) : -1;
        if (ci < 0 && bi < 0) return false;
        ir_sb_printf(key, ci >= 0 ? "c%d," : "b%d,", ci >= 0 ? ci : bi);
    }
    ir_sb_putc(key, ')');
    return true;
}

static void key_shape(ir_sb *key, const cg_ew_shape *s) {
    ir_sb_printf(key, "|s%d,%d,o%d:", s->ns, s->nc, s->out_stream);
    for (int i = 0; i < s->ns; i++) {
        ir_sb_printf(key, "%d/%d/", s->src[i], (int)s->type[i].dtype);
        for (int a = 0; a < s->nc; a++) ir_sb_putc(key, s->real[i][a] ? 'r' : 'b');
        ir_sb_putc(key, ',');
    }
}

bool cg_loop_key(cg_ctx *c, const ir_node *n, const cg_kernel_plan *kp, ir_sb *key,
                 cg_ew_shape *sh) {
    bool is_region = n->op == IR_OP_fused;
    if (!(ir_op(n->op)->is_ew || (is_region && !c->lay->split[n->serial]))) return false;
    if (kp->ws >= 0 || kp->wsb >= 0 || n->n_in > CG_EW_MAX_STREAMS) return false;
    ir_type dom;
    if (cg_ew_domain(n, &dom)) return false;
    int ids[CG_EW_MAX_STREAMS];
    for (int k = 0; k < n->n_in; k++) ids[k] = kp->in[k];
    const ir_region *r = is_region ? n->region : NULL;
    const ir_node *yield = r ? r->yield : n;
    bool has_out = yield && kp->out >= 0;
    if (cg_ew_shape_of(&dom, n->n_in, n->in, ids, has_out ? &yield->type : NULL, kp->out, sh))
        return false;
    ir_sb_printf(key, "p%d:", kp->n);
    for (int i = 0; i < kp->n; i++) ir_sb_putc(key, kp->noalias[i] ? 'a' : '-');
    for (int k = 0; k < n->n_in; k++)
        ir_sb_printf(key, "|c%d=p%d:%d", k, kp->in[k], (int)n->in[k]->type.dtype);
    ir_sb_printf(key, "|o=p%d", has_out ? kp->out : -1);
    if (!r) {
        if (!key_node(key, n, NULL, n)) return false;
    } else {
        for (int j = 0; j < r->n; j++)
            if (!key_node(key, n, r, r->nodes[j])) return false;
        ir_sb_printf(key, "|y%d", r->yield ? body_of(r, r->yield) : -1);
    }
    key_shape(key, sh);
    return !key->oom;
}

/* ------------------------------------------------------ the function */

static kiln_status build_loop(cg_ctx *c, const ir_node *n, const cg_kernel_plan *kp,
                              const cg_ew_shape *sh, int slot) {
    cg_loops *t = c->loops;
    LLVMTypeRef pt[CG_MAX_PARAMS + 2 + KILN_MAX_RANK];
    pt[0] = c->t_i64;
    pt[1] = c->t_i8p;
    for (int i = 0; i < kp->n; i++) pt[2 + i] = c->t_i8p;
    for (int a = 0; a < sh->nc; a++) pt[2 + kp->n + a] = c->t_i64;
    LLVMTypeRef fty = LLVMFunctionType(c->t_i32, pt, (unsigned)(kp->n + 2 + sh->nc), 0);
    char name[64];
    snprintf(name, sizeof name, "kiln.loop.%d", slot);
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_kernel_attrs(c, fn, kp);
    cg_add_attr(c, fn, LLVMAttributeFunctionIndex, "noinline");
    c->fn = fn;
    c->batch = LLVMGetParam(fn, 0);
    c->err = LLVMGetParam(fn, 1);
    c->node = n;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef inp[CG_EW_MAX_STREAMS], sizes[KILN_MAX_RANK];
    for (int k = 0; k < n->n_in; k++) inp[k] = LLVMGetParam(fn, (unsigned)kp->in[k] + 2);
    for (int a = 0; a < sh->nc; a++) sizes[a] = LLVMGetParam(fn, (unsigned)(kp->n + 2 + a));
    LLVMValueRef outp = kp->out >= 0 ? LLVMGetParam(fn, (unsigned)kp->out + 2) : NULL;
    kiln_status st;
    if (n->op == IR_OP_fused) {
        ir_type dom;
        const ir_region *r = n->region;
        if ((st = cg_ew_domain(n, &dom))) return cg_error(c, n, "the region's shapes do not broadcast");
        st = cg_ew_loop_sized(c, &dom, r->n, r->nodes, r->yield, outp, n->n_in, n->in, inp, sizes);
    } else {
        ir_node *self = (ir_node *)n;
        st = cg_ew_loop_sized(c, &n->type, 1, &self, n, outp, n->n_in, n->in, inp, sizes);
    }
    if (st) return st;
    LLVMBuildRet(c->b, cg_i32(c, 0));
    t->fn[slot] = fn;
    t->fty[slot] = fty;
    return KILN_OK;
}

kiln_status cg_loop_call(cg_ctx *c, const ir_node *n, const cg_kernel_plan *kp, const char *key,
                         const cg_ew_shape *sh, LLVMBuilderRef b, LLVMValueRef batch,
                         LLVMValueRef err, const LLVMValueRef *bufs, bool *done) {
    *done = false;
    int slot = c->loops ? find(c->loops, key) : -1;
    if (slot < 0 || (c->loops->uses[slot] < 2 && !c->loops->fn[slot])) return KILN_OK;
    kiln_status st;
    if (!c->loops->fn[slot] && (st = build_loop(c, n, kp, sh, slot))) return st;
    LLVMValueRef args[CG_MAX_PARAMS + 2 + KILN_MAX_RANK];
    args[0] = batch;
    args[1] = err;
    for (int i = 0; i < kp->n; i++) args[2 + i] = bufs[i];
    for (int a = 0; a < sh->nc; a++) args[2 + kp->n + a] = cg_ew_size(c, b, batch, sh, a);
    LLVMBuildCall2(b, c->loops->fty[slot], c->loops->fn[slot], args,
                   (unsigned)(kp->n + 2 + sh->nc), "");
    *done = true;
    return KILN_OK;
}

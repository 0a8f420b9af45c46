/*
 * aot_glue.c — what an AOT shared object holds besides the support library
 * (runtime/aotrt.c): the weights, one constant aot_abi_model describing the
 * model (codegen/aot_abi.h: tensors, handle layout, entry points and the
 * places they can fail) and the exported names, each a call into aotrt with
 * that descriptor. P_<entry> (infer, evaluate, train_step) is
 *   rc = kiln_aotrt_enter(&desc, m, k, batch, ptrs);  -- handle and argument checks
 *   if (rc) return rc;
 *   rc = kiln_<entry>(batch, args, results, m->table, m + ws_off);
 *   return rc ? kiln_aotrt_failed(&desc, m, k, batch, rc) : 0;
 * so the model's code is inlined into it and a call allocates nothing.
 */
#include "codegen/aot.h"

#include <llvm-c/Core.h>
#include <stdio.h>
#include <string.h>

#include "codegen/aot_abi.h"

typedef struct gen {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef i32, i64, p8, pp8, vd;
    LLVMValueRef desc; /* i8* to the descriptor */
    int n_const;
} gen;

static LLVMValueRef i64c(gen *g, long long v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
static LLVMValueRef i32c(gen *g, long long v) { return LLVMConstInt(g->i32, (unsigned long long)v, 1); }

/* A private constant as i8*. */
static LLVMValueRef constant(gen *g, LLVMValueRef init, unsigned align) {
    char name[32];
    snprintf(name, sizeof name, "kiln.aot.%d", g->n_const++);
    LLVMValueRef v = LLVMAddGlobal(g->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(v, init);
    LLVMSetLinkage(v, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(v, 1);
    LLVMSetUnnamedAddress(v, LLVMGlobalUnnamedAddr);
    if (align) LLVMSetAlignment(v, align);
    return LLVMConstBitCast(v, g->p8);
}

static LLVMValueRef bytes(gen *g, const void *data, size_t n, unsigned align) {
    return constant(g, LLVMConstStringInContext(g->ctx, data, (unsigned)n, 1), align);
}

static LLVMValueRef str(gen *g, const char *s) { return bytes(g, s, strlen(s) + 1, 1); }

/* A struct of 8-byte fields (aot_abi.h) and an array of them. */
static LLVMValueRef record(gen *g, LLVMValueRef *f, unsigned n) {
    return LLVMConstStructInContext(g->ctx, f, n, 0);
}

static LLVMValueRef array(gen *g, LLVMValueRef *recs, unsigned n, LLVMTypeRef elem) {
    if (!n) return LLVMConstNull(g->p8);
    return constant(g, LLVMConstArray(elem, recs, n), 8);
}

/* ------------------------------------------------------------ descriptor */

static LLVMValueRef tensors(aot_plan *pl, gen *g, int *n_out, LLVMValueRef *data) {
    LLVMValueRef *recs = ir_calloc((size_t)pl->n_g + 1, sizeof *recs);
    if (!recs) return NULL;
    int n = 0;
    for (int i = 0; i < pl->n_g; i++) {
        const aot_global *ag = &pl->g[i];
        if (!ag->used) continue;
        const ir_type *t = &ag->g->type;
        LLVMValueRef f[15];
        unsigned k = 0;
        f[k++] = str(g, ag->g->name);
        f[k++] = i64c(g, t->dtype == IR_I32 ? AOT_ABI_I32 : AOT_ABI_F32);
        f[k++] = i64c(g, t->rank);
        for (int r = 0; r < AOT_ABI_MAX_RANK; r++) f[k++] = i64c(g, r < t->rank ? t->dims[r] : 0);
        f[k++] = i64c(g, ag->bytes);
        f[k++] = i64c(g, ag->offset);
        f[k++] = i64c(g, i);
        f[k++] = data[i] ? data[i] : LLVMConstNull(g->p8);
        recs[n++] = record(g, f, k);
    }
    LLVMValueRef v = n ? array(g, recs, (unsigned)n, LLVMTypeOf(recs[0])) : LLVMConstNull(g->p8);
    ir_free(recs);
    *n_out = n;
    return v;
}

static LLVMValueRef fails(aot_plan *pl, gen *g, const aot_entry *e) {
    const cg_func_info *fi = e->info;
    LLVMValueRef recs[64];
    unsigned n = 0;
    char name[AOT_MAX_PREFIX + 32], before[512], after[512];
    snprintf(name, sizeof name, "%s_%s", pl->p, e->c);
    for (int k = 0; k < fi->n_fails && n < 64; k++) {
        const cg_fail_site *fs = &fi->fails[k];
        snprintf(before, sizeof before, "%s: %s: label ", name, fs->op);
        int w = snprintf(after, sizeof after, " is out of range [0, %lld)", (long long)fs->classes);
        if (fs->file)
            snprintf(after + w, sizeof after - (size_t)w, " (%s:%d:%d)", fs->file, fs->line,
                     fs->col);
        LLVMValueRef f[3] = {i64c(g, fs->serial), str(g, before), str(g, after)};
        recs[n++] = record(g, f, 3);
    }
    return n ? array(g, recs, n, LLVMTypeOf(recs[0])) : LLVMConstNull(g->p8);
}

static LLVMValueRef entries(aot_plan *pl, gen *g) {
    LLVMValueRef recs[3];
    for (int i = 0; i < pl->n_entries; i++) {
        const aot_entry *e = &pl->entries[i];
        int np = e->f->n_args + e->f->n_results;
        LLVMValueRef names[64];
        for (int k = 0; k < np && k < 64; k++) names[k] = str(g, e->names[k]);
        char name[AOT_MAX_PREFIX + 32];
        snprintf(name, sizeof name, "%s_%s", pl->p, e->c);
        LLVMValueRef f[7] = {str(g, name),
                             i64c(g, np),
                             np ? constant(g, LLVMConstArray(g->p8, names, (unsigned)np), 8)
                                : LLVMConstNull(g->p8),
                             i64c(g, e->info->err_fixed),
                             i64c(g, e->info->err_per_sample),
                             i64c(g, e->info->n_fails < 64 ? e->info->n_fails : 64),
                             fails(pl, g, e)};
        recs[i] = record(g, f, 7);
    }
    return array(g, recs, (unsigned)pl->n_entries, LLVMTypeOf(recs[0]));
}

static bool all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

static kiln_status descriptor(aot_plan *pl, gen *g, kiln_diag *d) {
    LLVMValueRef *data = ir_calloc((size_t)pl->n_g + 1, sizeof *data);
    if (!data) return ir_oom(d);
    /* All-zero data (optimizer state) is not stored: aotrt zeroes it. */
    if (pl->o->embed)
        for (int i = 0; i < pl->n_g; i++)
            if (pl->g[i].used && !all_zero(pl->data[i], (size_t)pl->g[i].bytes))
                data[i] = bytes(g, pl->data[i], (size_t)pl->g[i].bytes, AOT_ALIGN);
    int n_t = 0, iterations = -1;
    LLVMValueRef tabs = tensors(pl, g, &n_t, data);
    ir_free(data);
    if (!tabs) return ir_oom(d);
    for (int i = 0, k = 0; i < pl->n_g; i++) {
        if (i == pl->iterations) iterations = k;
        k += pl->g[i].used;
    }
    LLVMValueRef f[] = {i64c(g, AOT_ABI_LAYOUT),
                        str(g, pl->p),
                        i64c(g, pl->version),
                        i64c(g, (long long)pl->magic),
                        i64c(g, pl->max_batch),
                        i64c(g, pl->state_off),
                        i64c(g, pl->state_bytes),
                        i64c(g, pl->ws_off),
                        i64c(g, pl->ws_fixed),
                        i64c(g, pl->ws_ps),
                        i64c(g, n_t),
                        tabs,
                        i64c(g, pl->n_entries),
                        entries(pl, g),
                        i64c(g, pl->o->embed),
                        i64c(g, iterations),
                        i64c(g, pl->o->format_version),
                        i64c(g, (long long)pl->o->structure_hash),
                        str(g, pl->m->name ? pl->m->name : "")};
    g->desc = constant(g, record(g, f, sizeof f / sizeof f[0]), 8);
    return KILN_OK;
}

/* -------------------------------------------------------------- exports */

static LLVMValueRef begin(gen *g, const char *name, LLVMTypeRef ret, LLVMTypeRef *pt, unsigned n) {
    LLVMValueRef fn = LLVMAddFunction(g->mod, name, LLVMFunctionType(ret, pt, n, 0));
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(g->ctx, nounwind, 0));
    LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->ctx, fn, "entry"));
    return fn;
}

/* aotrt's function `name` taking the descriptor, then pt[0..n). */
static LLVMValueRef rt_fn(gen *g, const char *name, LLVMTypeRef ret, LLVMTypeRef *pt, unsigned n,
                          LLVMTypeRef *fty) {
    LLVMTypeRef all[8] = {g->p8};
    for (unsigned i = 0; i < n; i++) all[1 + i] = pt[i];
    *fty = LLVMFunctionType(ret, all, n + 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(g->mod, name);
    return fn ? fn : LLVMAddFunction(g->mod, name, *fty);
}

/* P_<suffix>(params) { return kiln_aotrt_<suffix>(&desc, params); } */
static void forward(aot_plan *pl, gen *g, const char *suffix, LLVMTypeRef ret, LLVMTypeRef *pt,
                    unsigned n) {
    char name[AOT_MAX_PREFIX + 32], rt[64];
    snprintf(name, sizeof name, "%s_%s", pl->p, suffix);
    snprintf(rt, sizeof rt, "kiln_aotrt_%s", suffix);
    LLVMTypeRef fty;
    LLVMValueRef callee = rt_fn(g, rt, ret, pt, n, &fty);
    LLVMValueRef fn = begin(g, name, ret, pt, n);
    LLVMValueRef args[8] = {g->desc};
    for (unsigned i = 0; i < n; i++) args[1 + i] = LLVMGetParam(fn, i);
    LLVMValueRef v = LLVMBuildCall2(g->b, fty, callee, args, n + 1, "");
    if (ret == g->vd)
        LLVMBuildRetVoid(g->b);
    else
        LLVMBuildRet(g->b, v);
}

static void entry_point(aot_plan *pl, gen *g, int k) {
    const aot_entry *e = &pl->entries[k];
    int na = e->f->n_args, np = na + e->f->n_results;
    LLVMTypeRef pt[2 + 64] = {g->p8, g->i64};
    for (int i = 0; i < np; i++) pt[2 + i] = g->p8;
    char name[AOT_MAX_PREFIX + 32];
    snprintf(name, sizeof name, "%s_%s", pl->p, e->c);
    LLVMTypeRef enter_t, failed_t;
    LLVMTypeRef ept[4] = {g->p8, g->i64, g->i64, g->pp8}, fpt[4] = {g->p8, g->i64, g->i64, g->i32};
    LLVMValueRef enter = rt_fn(g, "kiln_aotrt_enter", g->i32, ept, 4, &enter_t);
    LLVMValueRef failed = rt_fn(g, "kiln_aotrt_failed", g->i32, fpt, 4, &failed_t);
    LLVMValueRef fn = begin(g, name, g->i32, pt, (unsigned)(2 + np));
    LLVMValueRef m = LLVMGetParam(fn, 0), batch = LLVMGetParam(fn, 1);
    LLVMValueRef arr = LLVMBuildAlloca(g->b, LLVMArrayType(g->p8, (unsigned)(np ? np : 1)), "");
    LLVMValueRef ptrs = LLVMBuildBitCast(g->b, arr, g->pp8, "");
    for (int i = 0; i < np; i++) {
        LLVMValueRef at = i64c(g, i);
        LLVMBuildStore(g->b, LLVMGetParam(fn, (unsigned)(2 + i)),
                       LLVMBuildInBoundsGEP2(g->b, g->p8, ptrs, &at, 1, ""));
    }
    LLVMValueRef ea[5] = {g->desc, m, i64c(g, k), batch, ptrs};
    LLVMValueRef rc = LLVMBuildCall2(g->b, enter_t, enter, ea, 5, "");
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(g->ctx, fn, "run");
    LLVMBasicBlockRef refuse = LLVMAppendBasicBlockInContext(g->ctx, fn, "refuse");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, rc, i32c(g, 0), ""), run, refuse);
    LLVMPositionBuilderAtEnd(g->b, refuse);
    LLVMBuildRet(g->b, rc);
    LLVMPositionBuilderAtEnd(g->b, run);
    LLVMValueRef at = i64c(g, na), off_t = i64c(g, AOT_OFF_TABLE), off_ws = i64c(g, pl->ws_off);
    LLVMValueRef table = LLVMBuildBitCast(
        g->b, LLVMBuildInBoundsGEP2(g->b, LLVMInt8TypeInContext(g->ctx), m, &off_t, 1, ""), g->pp8,
        "");
    LLVMValueRef ws = LLVMBuildInBoundsGEP2(g->b, LLVMInt8TypeInContext(g->ctx), m, &off_ws, 1, "");
    LLVMValueRef res = LLVMBuildInBoundsGEP2(g->b, g->p8, ptrs, &at, 1, "");
    LLVMValueRef model = LLVMGetNamedFunction(g->mod, e->info->symbol);
    LLVMValueRef ca[5] = {batch, ptrs, res, table, ws};
    LLVMValueRef rc2 = LLVMBuildCall2(g->b, LLVMGlobalGetValueType(model), model, ca, 5, "");
    LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(g->ctx, fn, "ok");
    LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(g->ctx, fn, "failed");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, rc2, i32c(g, 0), ""), ok, bad);
    LLVMPositionBuilderAtEnd(g->b, ok);
    LLVMBuildRet(g->b, rc2);
    LLVMPositionBuilderAtEnd(g->b, bad);
    LLVMValueRef fa[5] = {g->desc, m, i64c(g, k), batch, rc2};
    LLVMBuildRet(g->b, LLVMBuildCall2(g->b, failed_t, failed, fa, 5, ""));
}

kiln_status aot_glue(aot_plan *pl, LLVMContextRef ctx, LLVMModuleRef mod, kiln_diag *d) {
    gen g = {.ctx = ctx, .mod = mod, .b = LLVMCreateBuilderInContext(ctx)};
    g.i32 = LLVMInt32TypeInContext(ctx);
    g.i64 = LLVMInt64TypeInContext(ctx);
    g.p8 = LLVMPointerType(LLVMInt8TypeInContext(ctx), 0);
    g.pp8 = LLVMPointerType(g.p8, 0);
    g.vd = LLVMVoidTypeInContext(ctx);
    /* The entry points become internal: O3 inlines them into the wrappers
     * and the version script has nothing to hide. */
    for (int i = 0; i < pl->info->n_funcs; i++) {
        LLVMValueRef fn = LLVMGetNamedFunction(mod, pl->info->funcs[i].symbol);
        if (fn) LLVMSetLinkage(fn, LLVMInternalLinkage);
    }
    kiln_status st = descriptor(pl, &g, d);
    if (!st) {
        LLVMTypeRef cv[3] = {g.i32, g.p8, g.i64}, init[4] = {g.p8, g.i64, g.i64, g.pp8};
        LLVMTypeRef create[2] = {g.i64, g.pp8}, mp[2] = {g.p8, g.p8};
        forward(pl, &g, "abi_version", g.i32, NULL, 0);
        forward(pl, &g, "check_version", g.i32, cv, 3);
        forward(pl, &g, "status_string", g.p8, &g.i32, 1);
        forward(pl, &g, "size", g.i64, &g.i64, 1);
        forward(pl, &g, "init", g.i32, init, 4);
        forward(pl, &g, "create", g.i32, create, 2);
        forward(pl, &g, "destroy", g.vd, &g.p8, 1);
        forward(pl, &g, "last_error", g.p8, &g.p8, 1);
        forward(pl, &g, "load", g.i32, mp, 2);
        if (pl->o->train) forward(pl, &g, "save", g.i32, mp, 2);
        for (int i = 0; i < pl->n_entries; i++) entry_point(pl, &g, i);
    }
    LLVMDisposeBuilder(g.b);
    return st;
}

/*
 * util.c — small emitters every lowering uses: constants, typed memory
 * access, counted loops, the error exit, and vectorized row reductions.
 */
#include "codegen/lower.h"

#include <llvm-c/DebugInfo.h>

#include <stdio.h>
#include <string.h>

kiln_status cg_error(cg_ctx *c, const ir_node *n, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ir_error(c->d, KILN_ERR_BACKEND, n ? n->loc : ir_loc_none(), "codegen: %s: %s",
                    n ? ir_op_name(n->op) : "module", msg);
}

/* ------------------------------------------------------------ constants */

LLVMTypeRef cg_vec(cg_ctx *c, LLVMTypeRef elem, int width) {
    (void)c;
    return width > 1 ? LLVMVectorType(elem, (unsigned)width) : elem;
}

LLVMTypeRef cg_int_like(cg_ctx *c, LLVMTypeRef fty) {
    if (LLVMGetTypeKind(fty) == LLVMVectorTypeKind)
        return LLVMVectorType(c->t_i32, LLVMGetVectorSize(fty));
    return c->t_i32;
}

static LLVMValueRef splat(LLVMTypeRef ty, LLVMValueRef s) {
    if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind) return s;
    unsigned n = LLVMGetVectorSize(ty);
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n && i < 64; i++) e[i] = s;
    return LLVMConstVector(e, n);
}

static LLVMTypeRef scalar_of(LLVMTypeRef ty) {
    return LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMGetElementType(ty) : ty;
}

LLVMValueRef cg_splat(cg_ctx *c, LLVMValueRef s, int w) {
    if (w == 1) return s;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)w);
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetUndef(vt), s, cg_i32(c, 0), "");
    /* Any width: the mask is <w x i32> zeroinitializer. */
    return LLVMBuildShuffleVector(c->b, v, LLVMGetUndef(vt),
                                  LLVMConstNull(LLVMVectorType(c->t_i32, (unsigned)w)), "");
}

LLVMValueRef cg_fc(cg_ctx *c, LLVMTypeRef ty, double v) {
    (void)c;
    return splat(ty, LLVMConstReal(scalar_of(ty), v));
}

LLVMValueRef cg_ic(cg_ctx *c, LLVMTypeRef ty, long long v) {
    (void)c;
    return splat(ty, LLVMConstInt(scalar_of(ty), (unsigned long long)v, 1));
}

LLVMValueRef cg_i64(cg_ctx *c, long long v) {
    return LLVMConstInt(c->t_i64, (unsigned long long)v, 1);
}
LLVMValueRef cg_i32(cg_ctx *c, long long v) {
    return LLVMConstInt(c->t_i32, (unsigned long long)v, 1);
}

LLVMValueRef cg_intrinsic(cg_ctx *c, const char *name, LLVMTypeRef ty, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, &ty, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(c->ctx, id, &ty, 1);
    return LLVMBuildCall2(c->b, fty, fn, args, (unsigned)n, "");
}

LLVMValueRef cg_fma(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc) {
    LLVMValueRef args[3] = {a, b, acc};
    return cg_intrinsic(c, "llvm.fmuladd", LLVMTypeOf(a), args, 3);
}

/* --------------------------------------------------------------- memory */

LLVMTypeRef cg_elem_type(cg_ctx *c, int dtype) {
    return dtype == IR_I32 ? c->t_i32 : c->t_f32;
}

LLVMValueRef cg_cast_ptr(cg_ctx *c, LLVMValueRef p, LLVMTypeRef elem) {
    return LLVMBuildBitCast(c->b, p, LLVMPointerType(elem, 0), "");
}

LLVMValueRef cg_gep(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef typed_ptr, LLVMValueRef idx) {
    return LLVMBuildInBoundsGEP2(c->b, elem, typed_ptr, &idx, 1, "");
}

LLVMValueRef cg_load(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef typed_ptr, LLVMValueRef idx) {
    LLVMValueRef v = LLVMBuildLoad2(c->b, elem, cg_gep(c, elem, typed_ptr, idx), "");
    LLVMSetAlignment(v, 4);
    return v;
}

void cg_store(cg_ctx *c, LLVMValueRef v, LLVMValueRef typed_ptr, LLVMValueRef idx) {
    LLVMTypeRef elem = LLVMTypeOf(v);
    LLVMValueRef s = LLVMBuildStore(c->b, v, cg_gep(c, elem, typed_ptr, idx));
    LLVMSetAlignment(s, 4);
}

LLVMValueRef cg_loadv(cg_ctx *c, LLVMTypeRef elem, int width, LLVMValueRef typed_ptr,
                      LLVMValueRef idx) {
    if (width == 1) return cg_load(c, elem, typed_ptr, idx);
    LLVMTypeRef vt = LLVMVectorType(elem, (unsigned)width);
    LLVMValueRef p = cg_gep(c, elem, typed_ptr, idx);
    p = LLVMBuildBitCast(c->b, p, LLVMPointerType(vt, 0), "");
    LLVMValueRef v = LLVMBuildLoad2(c->b, vt, p, "");
    LLVMSetAlignment(v, 4);
    return v;
}

void cg_storev(cg_ctx *c, LLVMValueRef v, int width, LLVMValueRef typed_ptr, LLVMValueRef idx) {
    if (width == 1) {
        cg_store(c, v, typed_ptr, idx);
        return;
    }
    LLVMTypeRef vt = LLVMTypeOf(v);
    LLVMValueRef p = cg_gep(c, LLVMGetElementType(vt), typed_ptr, idx);
    p = LLVMBuildBitCast(c->b, p, LLVMPointerType(vt, 0), "");
    LLVMValueRef s = LLVMBuildStore(c->b, v, p);
    LLVMSetAlignment(s, 4);
}

void cg_memmove(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef bytes) {
    LLVMBuildMemMove(c->b, dst, 4, src, 4, bytes);
}

void cg_memset0(cg_ctx *c, LLVMValueRef dst, LLVMValueRef bytes) {
    LLVMBuildMemSet(c->b, dst, LLVMConstInt(c->t_i8, 0, 0), bytes, 4);
}

LLVMValueRef cg_dim(cg_ctx *c, int64_t dim) {
    return dim == KILN_BATCH ? c->batch : cg_i64(c, dim);
}

LLVMValueRef cg_numel(cg_ctx *c, const ir_type *t) {
    int64_t stat = ir_type_static_numel(t);
    LLVMValueRef n = cg_i64(c, stat);
    if (ir_type_batch_axis(t) >= 0) n = LLVMBuildNSWMul(c->b, n, c->batch, "numel");
    return n;
}

void cg_row_major_strides(cg_ctx *c, const ir_type *t, LLVMValueRef *stride) {
    LLVMValueRef s = cg_i64(c, 1);
    for (int a = t->rank - 1; a >= 0; a--) {
        stride[a] = s;
        s = LLVMBuildNSWMul(c->b, s, cg_dim(c, t->dims[a]), "");
    }
}

LLVMValueRef cg_call_runtime(cg_ctx *c, const char *name, LLVMTypeRef fty, LLVMValueRef *args,
                             unsigned n) {
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
    if (!f) f = LLVMAddFunction(c->mod, name, fty);
    return LLVMBuildCall2(c->b, fty, f, args, n, "");
}

void cg_parallel_for(cg_ctx *c, LLVMValueRef task, LLVMValueRef ctx, LLVMValueRef n) {
    LLVMTypeRef pf[3] = {LLVMPointerType(LLVMGlobalGetValueType(task), 0), c->t_i8p, c->t_i64};
    LLVMValueRef args[3] = {task, ctx, n};
    cg_call_runtime(c, "kiln_parallel_for", LLVMFunctionType(c->t_void, pf, 3, 0), args, 3);
}

/* ---------------------------------------------------------------- loops */

LLVMValueRef cg_loop_begin(cg_ctx *c, cg_loop *l, LLVMValueRef start, LLVMValueRef end,
                           long long step) {
    memset(l, 0, sizeof *l);
    l->guard = LLVMGetInsertBlock(c->b);
    l->body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop.end");
    l->end = end;
    l->step = cg_i64(c, step);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, start, end, ""), l->body, l->exit);
    LLVMPositionBuilderAtEnd(c->b, l->body);
    l->i = LLVMBuildPhi(c->b, c->t_i64, "i");
    LLVMAddIncoming(l->i, &start, &l->guard, 1);
    return l->i;
}

LLVMValueRef cg_loop_phi(cg_ctx *c, cg_loop *l, LLVMValueRef init) {
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(c->b);
    LLVMValueRef first = LLVMGetFirstInstruction(l->body);
    /* Phis go at the top of the body, after the induction variable. */
    LLVMValueRef after = LLVMGetNextInstruction(first);
    if (after)
        LLVMPositionBuilderBefore(c->b, after);
    else
        LLVMPositionBuilderAtEnd(c->b, l->body);
    LLVMValueRef phi = LLVMBuildPhi(c->b, LLVMTypeOf(init), "acc");
    LLVMAddIncoming(phi, &init, &l->guard, 1);
    LLVMPositionBuilderAtEnd(c->b, cur);
    l->phis[l->n_phis] = phi;
    l->inits[l->n_phis] = init;
    l->n_phis++;
    return phi;
}

/* !llvm.loop !{self, hints...}: self-referential, hence distinct. */
static LLVMValueRef loop_md(cg_ctx *c, int hints) {
    LLVMMetadataRef ops[3];
    int n = 0;
    LLVMMetadataRef tmp = LLVMTemporaryMDNode(c->ctx, NULL, 0);
    ops[n++] = tmp;
    if (hints & CG_LOOP_NO_VECTORIZE) {
        LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(c->ctx, "llvm.loop.vectorize.enable", 26),
                                 LLVMValueAsMetadata(LLVMConstInt(c->t_i1, 0, 0))};
        ops[n++] = LLVMMDNodeInContext2(c->ctx, kv, 2);
    }
    if (hints & CG_LOOP_NO_UNROLL) {
        LLVMMetadataRef k = LLVMMDStringInContext2(c->ctx, "llvm.loop.unroll.disable", 24);
        ops[n++] = LLVMMDNodeInContext2(c->ctx, &k, 1);
    }
    LLVMMetadataRef node = LLVMMDNodeInContext2(c->ctx, ops, (size_t)n);
    LLVMMetadataReplaceAllUsesWith(tmp, node); /* also frees tmp */
    return LLVMMetadataAsValue(c->ctx, node);
}

void cg_loop_end(cg_ctx *c, cg_loop *l, const LLVMValueRef *nexts) {
    l->latch = LLVMGetInsertBlock(c->b);
    LLVMValueRef next = LLVMBuildNSWAdd(c->b, l->i, l->step, "i.next");
    LLVMAddIncoming(l->i, &next, &l->latch, 1);
    for (int k = 0; k < l->n_phis; k++) {
        LLVMValueRef nv = nexts[k];
        LLVMAddIncoming(l->phis[k], &nv, &l->latch, 1);
    }
    LLVMValueRef br =
        LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, next, l->end, ""), l->body, l->exit);
    if (l->hints)
        LLVMSetMetadata(br, LLVMGetMDKindIDInContext(c->ctx, "llvm.loop", 9), loop_md(c, l->hints));
    LLVMPositionBuilderAtEnd(c->b, l->exit);
    for (int k = 0; k < l->n_phis; k++) {
        LLVMValueRef phi = LLVMBuildPhi(c->b, LLVMTypeOf(l->inits[k]), "acc.out");
        LLVMValueRef vals[2] = {l->inits[k], nexts[k]};
        LLVMBasicBlockRef from[2] = {l->guard, l->latch};
        LLVMAddIncoming(phi, vals, from, 2);
        l->exits[k] = phi;
    }
}

/* ------------------------------------------------------------ the error exit */

void cg_fail_if(cg_ctx *c, LLVMValueRef cond, kiln_status status, LLVMValueRef detail) {
    LLVMBasicBlockRef fail = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "fail");
    LLVMBasicBlockRef cont = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ok");
    LLVMValueRef expect[2] = {cond, LLVMConstInt(c->t_i1, 0, 0)}; /* failures are cold */
    cond = cg_intrinsic(c, "llvm.expect", c->t_i1, expect, 2);
    LLVMBuildCondBr(c->b, cond, fail, cont);
    LLVMPositionBuilderAtEnd(c->b, fail);
    /* The record: {i32 status, i32 node serial, i64 detail}. */
    LLVMValueRef rec32 = cg_cast_ptr(c, c->err, c->t_i32);
    cg_store(c, cg_i32(c, status), rec32, cg_i64(c, 0));
    cg_store(c, cg_i32(c, c->node ? c->node->serial : -1), rec32, cg_i64(c, 1));
    LLVMValueRef rec64 = cg_cast_ptr(c, c->err, c->t_i64);
    cg_store(c, LLVMBuildSExt(c->b, detail, c->t_i64, ""), rec64, cg_i64(c, 1));
    LLVMBuildRet(c->b, cg_i32(c, status));
    LLVMPositionBuilderAtEnd(c->b, cont);
    c->can_fail = true;
}

/* ------------------------------------------------------- row reductions */

static LLVMValueRef red_identity(cg_ctx *c, cg_red kind, LLVMTypeRef ty) {
    return cg_fc(c, ty, kind == CG_RED_MAX ? -__builtin_inf() : 0.0);
}

LLVMValueRef cg_red_combine(cg_ctx *c, cg_red kind, LLVMValueRef acc, LLVMValueRef v) {
    if (kind == CG_RED_SUM) return LLVMBuildFAdd(c->b, acc, v, "");
    if (kind == CG_RED_MAX) {
        /* v > acc, or v is NaN: NaN wins so that it is seen (as in ir/). */
        LLVMValueRef take = LLVMBuildFCmp(c->b, LLVMRealUGT, v, acc, "");
        return LLVMBuildSelect(c->b, take, v, acc, "");
    }
    return acc;
}

/* Folds the lanes of a vector accumulator into a scalar (halving tree). */
static LLVMValueRef horizontal(cg_ctx *c, cg_red kind, LLVMValueRef v) {
    unsigned n = LLVMGetVectorSize(LLVMTypeOf(v));
    while (n > 1) {
        unsigned h = n / 2;
        LLVMValueRef lo[32], hi[32];
        for (unsigned i = 0; i < h; i++) {
            lo[i] = LLVMConstInt(c->t_i32, i, 0);
            hi[i] = LLVMConstInt(c->t_i32, i + h, 0);
        }
        LLVMValueRef undef = LLVMGetUndef(LLVMTypeOf(v));
        LLVMValueRef a = LLVMBuildShuffleVector(c->b, v, undef, LLVMConstVector(lo, h), "");
        LLVMValueRef b = LLVMBuildShuffleVector(c->b, v, undef, LLVMConstVector(hi, h), "");
        v = cg_red_combine(c, kind, a, b);
        n = h;
    }
    return LLVMBuildExtractElement(c->b, v, LLVMConstInt(c->t_i32, 0, 0), "");
}

LLVMValueRef cg_row_loop(cg_ctx *c, LLVMValueRef len, cg_red kind, cg_row_body body, void *ctx) {
    enum { U = 4 };
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, CG_VW);
    /* A length known here lets loops that cannot run go unemitted. */
    long long clen = LLVMIsAConstantInt(len) ? LLVMConstIntGetSExtValue(len) : -1;
    LLVMValueRef start = cg_i64(c, 0), acc = NULL;
    /* Main loop: U vectors per iteration, one accumulator each, so the adds
     * of a reduction overlap. A map needs no more than one vector a step. */
    if (kind && (clen < 0 || clen >= U * CG_VW)) {
        LLVMValueRef n_main = LLVMBuildAnd(c->b, len, cg_i64(c, ~(long long)(U * CG_VW - 1)), "");
        cg_loop l1;
        LLVMValueRef i = cg_loop_begin(c, &l1, start, n_main, U * CG_VW);
        LLVMValueRef a[U], next[U];
        for (int u = 0; u < U; u++) a[u] = cg_loop_phi(c, &l1, red_identity(c, kind, vt));
        for (int u = 0; u < U; u++) {
            LLVMValueRef idx = LLVMBuildNSWAdd(c->b, i, cg_i64(c, u * CG_VW), "");
            next[u] = cg_red_combine(c, kind, a[u], body(c, ctx, idx, CG_VW));
        }
        l1.hints = CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL;
        cg_loop_end(c, &l1, next);
        acc = cg_red_combine(c, kind, cg_red_combine(c, kind, l1.exits[0], l1.exits[1]),
                             cg_red_combine(c, kind, l1.exits[2], l1.exits[3]));
        start = n_main;
    }
    /* One vector at a time. */
    LLVMValueRef n_vec = start;
    if (clen < 0 || clen >= CG_VW) {
        n_vec = LLVMBuildAnd(c->b, len, cg_i64(c, ~(long long)(CG_VW - 1)), "");
        cg_loop l2;
        LLVMValueRef i = cg_loop_begin(c, &l2, start, n_vec, CG_VW);
        LLVMValueRef a2 = kind ? cg_loop_phi(c, &l2, acc ? acc : red_identity(c, kind, vt)) : NULL;
        LLVMValueRef v = body(c, ctx, i, CG_VW);
        LLVMValueRef nx = kind ? cg_red_combine(c, kind, a2, v) : NULL;
        l2.hints = CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL;
        cg_loop_end(c, &l2, &nx);
        acc = kind ? l2.exits[0] : NULL;
    }
    LLVMValueRef s =
        kind ? (acc ? horizontal(c, kind, acc) : red_identity(c, kind, c->t_f32)) : NULL;
    /* The scalar tail, fewer than 8 elements. */
    if (clen < 0 || clen % CG_VW != 0) {
        cg_loop l3;
        LLVMValueRef i = cg_loop_begin(c, &l3, n_vec, len, 1);
        LLVMValueRef a3 = kind ? cg_loop_phi(c, &l3, s) : NULL;
        LLVMValueRef v = body(c, ctx, i, 1);
        LLVMValueRef nx = kind ? cg_red_combine(c, kind, a3, v) : NULL;
        l3.hints = CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL;
        cg_loop_end(c, &l3, &nx);
        s = kind ? l3.exits[0] : NULL;
    }
    return s;
}

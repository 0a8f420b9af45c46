/*
 * task.c — lowerings' loops as tasks of the worker pool (task.h).
 */
#include "codegen/task.h"
#include "ir/conv.h"

#include <string.h>

/* The kernel parameter a buffer pointer is derived from (through GEPs and
 * casts), or NULL. */
static LLVMValueRef base_param(LLVMValueRef v) {
    while (v && (LLVMIsAGetElementPtrInst(v) || LLVMIsABitCastInst(v)))
        v = LLVMGetOperand(v, 0);
    return v && LLVMIsAArgument(v) ? v : NULL;
}

/* Whether ptrs[i] may be noalias in the body: derived from a noalias
 * parameter of the kernel that no other of ptrs[0..np) is derived from. */
static bool task_noalias(cg_ctx *c, const LLVMValueRef *ptrs, int np, int i) {
    LLVMValueRef p = base_param(ptrs[i]);
    if (!p) return false;
    for (int j = 0; j < np; j++)
        if (j != i && base_param(ptrs[j]) == p) return false;
    unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
    unsigned n = LLVMCountParams(c->fn);
    for (unsigned a = 0; a < n; a++)
        if (LLVMGetParam(c->fn, a) == p) return LLVMGetEnumAttributeAtIndex(c->fn, a + 1, kind) != NULL;
    return false;
}

/* An internal function of the module with a kernel's function attributes. */
static LLVMValueRef internal_fn(cg_ctx *c, const char *name, LLVMTypeRef ty) {
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, ty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_kernel_plan none;
    memset(&none, 0, sizeof none);
    cg_kernel_attrs(c, fn, &none);
    return fn;
}

static LLVMValueRef mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildNSWMul(c->b, a, b, "");
}
static LLVMValueRef add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildNSWAdd(c->b, a, b, "");
}

/* The number of tasks for n items (i64). */
static LLVMValueRef task_count(cg_ctx *c, cg_task_split split, LLVMValueRef n) {
    LLVMValueRef T = cg_i64(c, IR_CONV_TASKS);
    if (split == CG_TASKS_FIXED) return T;
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, n, T, ""), n, T, "");
}

void cg_task_begin(cg_ctx *c, cg_task *k, cg_task_split split, int64_t count, int np,
                   const LLVMValueRef *ptrs) {
    LLVMTypeRef f[1 + CG_TASK_PTRS];
    f[0] = c->t_i64;
    for (int i = 0; i < np; i++) f[1 + i] = c->t_i8p;
    k->np = np;
    k->st = LLVMStructTypeInContext(c->ctx, f, (unsigned)(1 + np), 0);
    k->ctx = LLVMBuildAlloca(c->b, k->st, "task.ctx");
    LLVMBuildStore(c->b, c->batch, LLVMBuildStructGEP2(c->b, k->st, k->ctx, 0, ""));
    for (int i = 0; i < np; i++)
        LLVMBuildStore(c->b, cg_cast_ptr(c, ptrs[i], c->t_i8),
                       LLVMBuildStructGEP2(c->b, k->st, k->ctx, (unsigned)(1 + i), ""));
    k->ntasks = task_count(c, split, cg_dim(c, count));

    LLVMTypeRef pt[2 + CG_TASK_PTRS] = {c->t_i64, c->t_i64};
    LLVMTypeRef f32p = LLVMPointerType(c->t_f32, 0);
    for (int i = 0; i < np; i++) pt[2 + i] = f32p;
    k->fn = internal_fn(c, "kiln.task.body", LLVMFunctionType(c->t_void, pt, (unsigned)(2 + np), 0));
    for (int i = 0; i < np; i++) {
        if (task_noalias(c, ptrs, np, i)) cg_add_attr(c, k->fn, (unsigned)(3 + i), "noalias");
        cg_add_attr(c, k->fn, (unsigned)(3 + i), "nocapture");
    }
    k->saved_fn = c->fn;
    k->saved_batch = c->batch;
    k->saved_err = c->err;
    k->saved_bb = LLVMGetInsertBlock(c->b);
    c->fn = k->fn;
    c->err = NULL;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, k->fn, "entry"));
    c->batch = LLVMGetParam(k->fn, 0);
    k->t = LLVMGetParam(k->fn, 1);
    for (int i = 0; i < np; i++) k->p[i] = LLVMGetParam(k->fn, (unsigned)(2 + i));
    LLVMValueRef n = cg_dim(c, count);
    if (split == CG_TASKS_FIXED) {
        /* ceil(t·n/T) */
        LLVMValueRef T = cg_i64(c, IR_CONV_TASKS), round = cg_i64(c, IR_CONV_TASKS - 1);
        k->b0 = LLVMBuildSDiv(c->b, add(c, mul(c, k->t, n), round), T, "");
        k->b1 = LLVMBuildSDiv(c->b, add(c, mul(c, add(c, k->t, cg_i64(c, 1)), n), round), T, "");
    } else {
        LLVMValueRef m = task_count(c, split, n);
        k->b0 = LLVMBuildSDiv(c->b, mul(c, k->t, n), m, "");
        k->b1 = LLVMBuildSDiv(c->b, mul(c, add(c, k->t, cg_i64(c, 1)), n), m, "");
    }
}

void cg_task_end(cg_ctx *c, cg_task *k) {
    LLVMBuildRetVoid(c->b);
    c->fn = k->saved_fn;
    c->batch = k->saved_batch;
    c->err = k->saved_err;

    LLVMTypeRef wt[2] = {c->t_i8p, c->t_i64};
    LLVMTypeRef wty = LLVMFunctionType(c->t_void, wt, 2, 0);
    LLVMValueRef w = internal_fn(c, "kiln.task", wty);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, w, "entry"));
    LLVMValueRef ctx = LLVMBuildBitCast(c->b, LLVMGetParam(w, 0), LLVMPointerType(k->st, 0), "");
    LLVMValueRef args[2 + CG_TASK_PTRS];
    args[0] = LLVMBuildLoad2(c->b, c->t_i64, LLVMBuildStructGEP2(c->b, k->st, ctx, 0, ""), "");
    args[1] = LLVMGetParam(w, 1);
    for (int i = 0; i < k->np; i++) {
        LLVMValueRef v = LLVMBuildLoad2(c->b, c->t_i8p,
                                        LLVMBuildStructGEP2(c->b, k->st, ctx, (unsigned)(1 + i), ""), "");
        args[2 + i] = cg_cast_ptr(c, v, c->t_f32);
    }
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(k->fn), k->fn, args, (unsigned)(2 + k->np), "");
    LLVMBuildRetVoid(c->b);

    LLVMPositionBuilderAtEnd(c->b, k->saved_bb);
    cg_parallel_for(c, w, LLVMBuildBitCast(c->b, k->ctx, c->t_i8p, ""), k->ntasks);
}

/*
 * module.c — builds the LLVM module of a Kiln module: one entry point per
 * function (the ABI of cg.h) calling one internal kernel per top-level node.
 *
 *   define i32 @kiln_infer(i64 %batch, i8** %args, i8** %results,
 *                          i8** %globals, i8* %ws) {
 *     ; batch checks, then per node: buffer addresses and a call
 *     %x  = load i8*, i8** %args
 *     %h1 = getelementptr i8, i8* %ws, i64 <a + b*batch>
 *     call i32 @kiln_infer.0.dense(i64 %batch, i8* %err, i8* %h1, i8* %x, ...)
 *     ...
 *     ret i32 0
 *   }
 *   define internal i32 @kiln_infer.0.dense(i64, i8*, i8* noalias, ...)
 *
 * A kernel receives each distinct buffer once, so its pointers are noalias
 * unless two distinct workspace slots may overlap; O3 inlines the kernels and
 * keeps those facts as alias scopes.
 */
#include "codegen/lower.h"

#include <llvm-c/TargetMachine.h>
#include <string.h>

/* ---------------------------------------------------------------- table */

typedef struct lowering {
    cg_scalar_fn scalar;
    cg_node_fn node;
} lowering;

static const lowering g_lowerings[IR_NUM_OPCODES] = {
#define EW(name, ar, kd, fa, at, inf, sc, gr, lw) [IR_OP_##name] = {.scalar = lw},
#define OP(name, ar, kd, fa, at, inf, ke, gr, lw, ws) [IR_OP_##name] = {.node = lw},
#include "ir/ops.def"
#undef EW
#undef OP
};

cg_scalar_fn cg_scalar_lowering(int op) {
    return op >= IR_FIRST_OP && op < IR_NUM_OPCODES ? g_lowerings[op].scalar : NULL;
}

cg_node_fn cg_node_lowering(int op) {
    return op >= IR_FIRST_OP && op < IR_NUM_OPCODES ? g_lowerings[op].node : NULL;
}

bool cg_has_lowering(int op) {
    return cg_scalar_lowering(op) || cg_node_lowering(op);
}

/* -------------------------------------------------------------- symbols */

char *cg_symbol_name(const char *func) {
    size_t n = strlen(func);
    char *s = ir_malloc(n + 6);
    if (!s) return NULL;
    memcpy(s, "kiln_", 5);
    for (size_t i = 0; i < n; i++) {
        char ch = func[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_';
        s[5 + i] = ok ? ch : '_';
    }
    s[5 + n] = 0;
    return s;
}

void cg_module_info_dispose(cg_module_info *info) {
    if (!info) return;
    for (int i = 0; i < info->n_funcs; i++) {
        cg_func_info *fi = &info->funcs[i];
        ir_free(fi->name);
        ir_free(fi->symbol);
        for (int k = 0; k < fi->n_fails; k++) ir_free(fi->fails[k].file);
        ir_free(fi->fails);
    }
    ir_free(info->funcs);
    ir_free(info);
}

int64_t cg_workspace_bytes(const cg_func_info *fi, int64_t batch) {
    if (fi->ws_chunk > 0 && batch > fi->ws_chunk) batch = fi->ws_chunk;
    return fi->ws_fixed + fi->ws_per_sample * batch;
}

/* ------------------------------------------------------------ attributes */

static void add_fn_attrs(cg_ctx *c, LLVMValueRef fn) {
    LLVMAttributeRef a;
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(c->ctx, nounwind, 0));
    /* 256-bit vectors even where AVX-512 exists: what the performance targets
     * were measured with, and no frequency penalty on Intel parts. */
    a = LLVMCreateStringAttribute(c->ctx, "prefer-vector-width", 19, "256", 3);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
    a = LLVMCreateStringAttribute(c->ctx, "target-cpu", 10, c->cpu, (unsigned)strlen(c->cpu));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
    if (c->features && *c->features) {
        a = LLVMCreateStringAttribute(c->ctx, "target-features", 15, c->features,
                                      (unsigned)strlen(c->features));
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
    }
}

void cg_add_attr(cg_ctx *c, LLVMValueRef fn, unsigned idx, const char *name) {
    unsigned k = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(c->ctx, k, 0));
}

void cg_kernel_attrs(cg_ctx *c, LLVMValueRef fn, const cg_kernel_plan *kp) {
    add_fn_attrs(c, fn);
    for (int i = 0; i < kp->n; i++) {
        if (kp->noalias[i]) cg_add_attr(c, fn, (unsigned)i + 3, "noalias");
        cg_add_attr(c, fn, (unsigned)i + 3, "nocapture");
    }
}

/* ------------------------------------------------------- the entry point */

/* Stores into av[] and rv[] the argument and result pointers of f moved to
 * row `row` of the batch. */
static void move_rows(cg_ctx *c, LLVMBuilderRef b, const kiln_func *f, LLVMValueRef args,
                      LLVMValueRef results, LLVMValueRef row, LLVMValueRef av, LLVMValueRef rv) {
    for (int k = 0; k < f->n_args + f->n_results; k++) {
        bool arg = k < f->n_args;
        int i = arg ? k : k - f->n_args;
        LLVMValueRef base = arg ? args : results, dst = arg ? av : rv, idx = cg_i64(c, i);
        const ir_type *t = arg ? &f->args[i]->type : &f->results[i]->type;
        LLVMValueRef at =
            LLVMBuildLoad2(b, c->t_i8p, LLVMBuildGEP2(b, c->t_i8p, base, &idx, 1, ""), "");
        LLVMValueRef off = LLVMBuildNSWMul(b, row, cg_i64(c, ir_type_row_bytes(t)), "");
        at = LLVMBuildGEP2(b, c->t_i8, at, &off, 1, "");
        LLVMBuildStore(b, at, LLVMBuildGEP2(b, c->t_i8p, dst, &idx, 1, ""));
    }
}

/* Rows of the chunk at `row`: min(chunk, batch - row). */
static LLVMValueRef chunk_rows(cg_ctx *c, LLVMBuilderRef b, LLVMValueRef batch, LLVMValueRef row,
                               int64_t chunk) {
    LLVMValueRef left = LLVMBuildNSWSub(b, batch, row, "");
    LLVMValueRef big = LLVMBuildICmp(b, LLVMIntSGT, left, cg_i64(c, chunk), "");
    return LLVMBuildSelect(b, big, cg_i64(c, chunk), left, "rows");
}

/* What the entry point shares with its chunk tasks. */
static LLVMTypeRef chunk_ctx_type(cg_ctx *c) {
    LLVMTypeRef i8pp = LLVMPointerType(c->t_i8p, 0);
    LLVMTypeRef fields[5] = {c->t_i64, i8pp, i8pp, i8pp, c->t_i32}; /* batch, args, results,
                                                                        globals, status */
    return LLVMStructTypeInContext(c->ctx, fields, 5, 0);
}

/* void <symbol>.chunk(i8 *ctx, i64 t): runs chunk t through the body in the
 * thread's own scratch workspace (kiln_pool_scratch); a failure's status
 * goes to ctx's status (any one of them, when several fail). */
static LLVMValueRef chunk_task(cg_ctx *c, LLVMValueRef body, LLVMTypeRef fty, const kiln_func *f,
                               const char *symbol) {
    char name[512];
    snprintf(name, sizeof name, "%s.chunk", symbol);
    LLVMTypeRef pt[2] = {c->t_i8p, c->t_i64}, cty = chunk_ctx_type(c);
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->t_void, pt, 2, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attrs(c, fn);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(c->ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef ctx = LLVMBuildBitCast(b, LLVMGetParam(fn, 0), LLVMPointerType(cty, 0), "");
    LLVMValueRef field[5];
    for (unsigned i = 0; i < 4; i++)
        field[i] = LLVMBuildLoad2(b, LLVMStructGetTypeAtIndex(cty, i),
                                  LLVMBuildStructGEP2(b, cty, ctx, i, ""), "");
    LLVMValueRef status = LLVMBuildStructGEP2(b, cty, ctx, 4, "status");
    int64_t chunk = f->mem_chunk;
    LLVMValueRef row = LLVMBuildNSWMul(b, LLVMGetParam(fn, 1), cg_i64(c, chunk), "row");
    LLVMValueRef n = chunk_rows(c, b, field[0], row, chunk);
    LLVMValueRef bytes = cg_i64(c, f->mem_fixed + f->mem_per_sample * chunk);
    LLVMBuilderRef saved = c->b;
    c->b = b;
    LLVMValueRef ws = cg_call_runtime(c, "kiln_pool_scratch",
                                      LLVMFunctionType(c->t_i8p, &c->t_i64, 1, 0), &bytes, 1);
    c->b = saved;
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(c->ctx, fn, "run");
    LLVMBasicBlockRef fail = LLVMAppendBasicBlockInContext(c->ctx, fn, "fail");
    LLVMBasicBlockRef out = LLVMAppendBasicBlockInContext(c->ctx, fn, "out");
    LLVMBuildCondBr(b, LLVMBuildIsNull(b, ws, ""), fail, run);
    LLVMPositionBuilderAtEnd(b, run);
    int na = f->n_args > 0 ? f->n_args : 1, nr = f->n_results > 0 ? f->n_results : 1;
    LLVMValueRef av = LLVMBuildArrayAlloca(b, c->t_i8p, cg_i64(c, na), "args.chunk");
    LLVMValueRef rv = LLVMBuildArrayAlloca(b, c->t_i8p, cg_i64(c, nr), "results.chunk");
    move_rows(c, b, f, field[1], field[2], row, av, rv);
    LLVMValueRef q[5] = {n, av, rv, field[3], ws};
    LLVMValueRef r = LLVMBuildCall2(b, fty, body, q, 5, "");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntNE, r, cg_i32(c, 0), ""), fail, out);
    LLVMPositionBuilderAtEnd(b, fail);
    LLVMValueRef why = LLVMBuildPhi(b, c->t_i32, "");
    LLVMValueRef why_in[2] = {cg_i32(c, KILN_ERR_NOMEM), r};
    LLVMBasicBlockRef why_from[2] = {LLVMGetEntryBasicBlock(fn), run};
    LLVMAddIncoming(why, why_in, why_from, 2);
    LLVMValueRef st = LLVMBuildStore(b, why, status);
    LLVMSetOrdering(st, LLVMAtomicOrderingMonotonic);
    LLVMSetAlignment(st, 4);
    LLVMBuildBr(b, out);
    LLVMPositionBuilderAtEnd(b, out);
    LLVMBuildRetVoid(b);
    LLVMDisposeBuilder(b);
    return fn;
}

/* Calls the body over the batch in chunks of f->mem_chunk rows
 * (plan-memory's): each call gets argument and result pointers moved to its
 * first row. With one thread (or inside a task) the chunks run in order
 * through the caller's workspace, whose batch part then holds one chunk;
 * with more, they are the tasks of a parallel loop, each in its thread's
 * scratch workspace, every chunk computed alike (its inner loops on its
 * thread alone). A batch of at most one chunk (or a bad one, which the body
 * refuses) is one call. Returns the first non-zero status, or 0. A function
 * with fail sites (none chunk today: they are losses) keeps to the caller's
 * workspace, where its error record is read. */
static LLVMValueRef call_in_chunks(cg_ctx *c, LLVMBuilderRef b, LLVMValueRef fn,
                                   LLVMValueRef body, LLVMTypeRef fty, const kiln_func *f,
                                   const cg_func_info *fi) {
    int64_t chunk = f->mem_chunk;
    LLVMValueRef batch = LLVMGetParam(fn, 0), p[5];
    for (unsigned i = 0; i < 5; i++) p[i] = LLVMGetParam(fn, i);
    LLVMBasicBlockRef whole = LLVMAppendBasicBlockInContext(c->ctx, fn, "whole");
    LLVMBasicBlockRef split = LLVMAppendBasicBlockInContext(c->ctx, fn, "split");
    LLVMBasicBlockRef par = LLVMAppendBasicBlockInContext(c->ctx, fn, "chunks.parallel");
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(c->ctx, fn, "chunk");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c->ctx, fn, "chunk.next");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, fn, "done");
    int na = f->n_args > 0 ? f->n_args : 1, nr = f->n_results > 0 ? f->n_results : 1;
    LLVMValueRef av = LLVMBuildArrayAlloca(b, c->t_i8p, cg_i64(c, na), "args.chunk");
    LLVMValueRef rv = LLVMBuildArrayAlloca(b, c->t_i8p, cg_i64(c, nr), "results.chunk");
    LLVMTypeRef cty = chunk_ctx_type(c);
    LLVMValueRef ctx = LLVMBuildAlloca(b, cty, "chunks");
    LLVMValueRef one = LLVMBuildOr(b, LLVMBuildICmp(b, LLVMIntSLE, batch, cg_i64(c, chunk), ""),
                                   LLVMBuildICmp(b, LLVMIntSGT, batch, cg_i64(c, INT32_MAX), ""), "");
    LLVMBuildCondBr(b, one, whole, split);

    LLVMPositionBuilderAtEnd(b, whole);
    LLVMValueRef r_whole = LLVMBuildCall2(b, fty, body, p, 5, "");
    LLVMBuildBr(b, done);

    LLVMPositionBuilderAtEnd(b, split);
    LLVMBuilderRef saved = c->b;
    c->b = b;
    LLVMValueRef width = cg_call_runtime(c, "kiln_pool_width", LLVMFunctionType(c->t_i64, NULL, 0, 0),
                                         NULL, 0);
    LLVMValueRef many = LLVMBuildICmp(b, LLVMIntSGT, width, cg_i64(c, 1), "");
    if (fi->n_fails) many = LLVMConstInt(c->t_i1, 0, 0);
    LLVMBuildCondBr(b, many, par, loop);

    LLVMPositionBuilderAtEnd(b, par);
    LLVMValueRef vals[5] = {batch, p[1], p[2], p[3], cg_i32(c, 0)};
    for (unsigned i = 0; i < 5; i++) LLVMBuildStore(b, vals[i], LLVMBuildStructGEP2(b, cty, ctx, i, ""));
    LLVMValueRef n_chunks = LLVMBuildSDiv(b, LLVMBuildNSWAdd(b, batch, cg_i64(c, chunk - 1), ""),
                                          cg_i64(c, chunk), "");
    cg_parallel_for(c, chunk_task(c, body, fty, f, fi->symbol), LLVMBuildBitCast(b, ctx, c->t_i8p, ""),
                    n_chunks);
    c->b = saved;
    LLVMValueRef r_par = LLVMBuildLoad2(b, c->t_i32, LLVMBuildStructGEP2(b, cty, ctx, 4, ""), "");
    LLVMBuildBr(b, done);

    LLVMPositionBuilderAtEnd(b, loop);
    LLVMValueRef row = LLVMBuildPhi(b, c->t_i64, "row");
    LLVMValueRef n = chunk_rows(c, b, batch, row, chunk);
    move_rows(c, b, f, p[1], p[2], row, av, rv);
    LLVMValueRef q[5] = {n, av, rv, p[3], p[4]};
    LLVMValueRef r_chunk = LLVMBuildCall2(b, fty, body, q, 5, "");
    LLVMValueRef after = LLVMBuildNSWAdd(b, row, n, "");
    LLVMValueRef failed = LLVMBuildICmp(b, LLVMIntNE, r_chunk, cg_i32(c, 0), "");
    LLVMBuildCondBr(b, failed, done, next);
    LLVMPositionBuilderAtEnd(b, next);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, after, batch, ""), loop, done);
    LLVMValueRef row_in[2] = {cg_i64(c, 0), after};
    LLVMBasicBlockRef row_from[2] = {split, next};
    LLVMAddIncoming(row, row_in, row_from, 2);

    LLVMPositionBuilderAtEnd(b, done);
    LLVMValueRef r = LLVMBuildPhi(b, c->t_i32, "status");
    LLVMValueRef r_in[4] = {r_whole, r_par, r_chunk, cg_i32(c, 0)};
    LLVMBasicBlockRef r_from[4] = {whole, par, loop, next};
    LLVMAddIncoming(r, r_in, r_from, 4);
    return r;
}

/* The exported entry point runs the body with denormals flushed to zero
 * (MXCSR FTZ and DAZ) and restores the caller's mode on return. Training
 * produces denormals (Adam's second moment of tiny gradients), and x86 takes
 * a microcode assist on each: they halved the speed of the update loops.
 * TensorFlow, and so Keras, trains with the same flags set. A function that
 * plan-memory chunked runs the body once per chunk of rows. */
static void wrap_denormals(cg_ctx *c, LLVMValueRef body, const cg_func_info *fi,
                           LLVMTypeRef fty, const kiln_func *f) {
    const char *symbol = fi->symbol;
    LLVMValueRef fn = LLVMAddFunction(c->mod, symbol, fty);
    add_fn_attrs(c, fn);
    LLVMTypeRef csr_ty = LLVMFunctionType(c->t_void, &c->t_i8p, 1, 0);
    LLVMValueRef st = LLVMGetNamedFunction(c->mod, "llvm.x86.sse.stmxcsr");
    if (!st) st = LLVMAddFunction(c->mod, "llvm.x86.sse.stmxcsr", csr_ty);
    LLVMValueRef ld = LLVMGetNamedFunction(c->mod, "llvm.x86.sse.ldmxcsr");
    if (!ld) ld = LLVMAddFunction(c->mod, "llvm.x86.sse.ldmxcsr", csr_ty);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(c->ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef saved = LLVMBuildAlloca(b, c->t_i32, "mxcsr");
    LLVMValueRef flushed = LLVMBuildAlloca(b, c->t_i32, "mxcsr.ftz");
    LLVMValueRef saved_p = LLVMBuildBitCast(b, saved, c->t_i8p, "");
    LLVMValueRef flushed_p = LLVMBuildBitCast(b, flushed, c->t_i8p, "");
    LLVMBuildCall2(b, csr_ty, st, &saved_p, 1, "");
    LLVMValueRef mode = LLVMBuildLoad2(b, c->t_i32, saved, "");
    LLVMBuildStore(b, LLVMBuildOr(b, mode, cg_i32(c, 0x8040), ""), flushed); /* FTZ | DAZ */
    LLVMBuildCall2(b, csr_ty, ld, &flushed_p, 1, "");
    LLVMValueRef r;
    if (f->mem_chunk > 0) {
        r = call_in_chunks(c, b, fn, body, fty, f, fi);
    } else {
        LLVMValueRef args[5];
        for (unsigned i = 0; i < 5; i++) args[i] = LLVMGetParam(fn, i);
        r = LLVMBuildCall2(b, fty, body, args, 5, "");
    }
    LLVMBuildCall2(b, csr_ty, ld, &saved_p, 1, "");
    LLVMBuildRet(b, r);
    LLVMDisposeBuilder(b);
}

typedef struct entry {
    LLVMBuilderRef b;
    LLVMValueRef fn, batch, args, results, globals, ws, err;
    cg_buf cbuf[256];
    LLVMValueRef cptr[256];
    int ncache;
} entry;

/* Address of a buffer, computed once in the entry point. */
static LLVMValueRef buf_ptr(cg_ctx *c, entry *e, const cg_buf *b) {
    for (int i = 0; i < e->ncache; i++)
        if (cg_buf_same(&e->cbuf[i], b)) return e->cptr[i];
    LLVMValueRef p;
    if (b->kind == CG_BUF_WS) {
        LLVMValueRef off = LLVMBuildNSWAdd(
            e->b, cg_i64(c, b->a), LLVMBuildNSWMul(e->b, cg_i64(c, b->b), e->batch, ""), "");
        p = LLVMBuildInBoundsGEP2(e->b, c->t_i8, e->ws, &off, 1, "ws");
    } else {
        LLVMValueRef base = b->kind == CG_BUF_ARG      ? e->args
                            : b->kind == CG_BUF_RESULT ? e->results
                                                       : e->globals;
        LLVMValueRef idx = cg_i64(c, b->index);
        LLVMValueRef slot = LLVMBuildInBoundsGEP2(e->b, c->t_i8p, base, &idx, 1, "");
        p = LLVMBuildLoad2(e->b, c->t_i8p, slot,
                           b->kind == CG_BUF_ARG      ? "arg"
                           : b->kind == CG_BUF_RESULT ? "res"
                                                      : "glob");
        LLVMSetAlignment(p, 8);
    }
    if (e->ncache < 256) {
        e->cbuf[e->ncache] = *b;
        e->cptr[e->ncache++] = p;
    }
    return p;
}

/* Adds b to the kernel's distinct buffers; returns its parameter index. */
static int param_of(cg_buf *bufs, int *n, const cg_buf *b) {
    for (int i = 0; i < *n; i++)
        if (cg_buf_same(&bufs[i], b)) return i;
    bufs[*n] = *b;
    return (*n)++;
}

LLVMValueRef cg_node_ws(cg_ctx *c, const ir_node *n) {
    if (n != c->node) return NULL;
    return c->ws ? c->ws : c->wsb;
}

LLVMValueRef cg_node_ws_batch(cg_ctx *c, const ir_node *n) { return n == c->node ? c->wsb : NULL; }

static kiln_status plan_kernel(cg_ctx *c, const ir_node *n, cg_kernel_plan *kp) {
    const cg_layout *L = c->lay;
    int nin = n->n_in;
    int ntemp = n->region && L->split[n->serial] ? n->region->n : 0;
    if (nin + ntemp + 3 > CG_MAX_PARAMS)
        return cg_error(c, n, "too many buffers for one kernel (%d operands, %d temps)", nin, ntemp);
    memset(kp, 0, sizeof *kp);
    kp->out = kp->ws = kp->wsb = -1;
    if (n->type.dtype != IR_VOID) kp->out = param_of(kp->bufs, &kp->n, &L->buf[n->serial]);
    for (int k = 0; k < nin; k++) kp->in[k] = param_of(kp->bufs, &kp->n, &L->buf[n->in[k]->serial]);
    cg_buf ws = cg_node_ws_buf(c->f, n, false), wsb = cg_node_ws_buf(c->f, n, true);
    if (ws.kind != CG_BUF_NONE) kp->ws = param_of(kp->bufs, &kp->n, &ws);
    if (wsb.kind != CG_BUF_NONE) kp->wsb = param_of(kp->bufs, &kp->n, &wsb);
    if (ntemp)
        for (int i = 0; i < n->region->n; i++) {
            const ir_node *x = n->region->nodes[i];
            kp->temp[i] =
                x->type.dtype != IR_VOID ? param_of(kp->bufs, &kp->n, &L->buf2[x->serial]) : -1;
        }
    for (int i = 0; i < kp->n; i++) {
        kp->noalias[i] = true;
        for (int j = 0; j < kp->n; j++)
            if (j != i && cg_buf_may_overlap(&kp->bufs[i], &kp->bufs[j])) kp->noalias[i] = false;
    }
    return KILN_OK;
}

/* A node the entry point runs: not a reshape that is a view. */
static bool has_kernel(const cg_layout *lay, const ir_node *n) {
    return !(n->op == IR_OP_reshape &&
             cg_buf_same(&lay->buf[n->serial], &lay->buf[n->in[0]->serial]));
}

/* Counts the loop keys of f's kernels (outline.c). */
static kiln_status count_loops(cg_ctx *c, kiln_func *f) {
    cg_kernel_plan *kp = ir_malloc(sizeof *kp);
    cg_ew_shape *sh = ir_malloc(sizeof *sh);
    kiln_status st = kp && sh ? KILN_OK : ir_oom(c->d);
    cg_loops_new_func(c);
    for (int i = 0; i < f->n_nodes && !st; i++) {
        const ir_node *n = f->nodes[i];
        if (!has_kernel(c->lay, n) || (st = plan_kernel(c, n, kp))) continue;
        ir_sb key;
        ir_sb_init(&key);
        if (cg_loop_key(c, n, kp, &key, sh)) st = cg_loops_count(c, key.buf);
        ir_sb_free(&key);
    }
    ir_free(sh);
    ir_free(kp);
    return st;
}

/* Node n as a call of its loop's shared function, if it has one. */
static kiln_status call_shared(cg_ctx *c, entry *e, const ir_node *n, const cg_kernel_plan *kp,
                               bool *done) {
    *done = false;
    cg_ew_shape *sh = ir_malloc(sizeof *sh);
    if (!sh) return ir_oom(c->d);
    ir_sb key;
    ir_sb_init(&key);
    kiln_status st = KILN_OK;
    if (cg_loop_key(c, n, kp, &key, sh)) {
        LLVMValueRef bufs[CG_MAX_PARAMS];
        for (int i = 0; i < kp->n; i++) bufs[i] = buf_ptr(c, e, &kp->bufs[i]);
        st = cg_loop_call(c, n, kp, key.buf, sh, e->b, e->batch, e->err, bufs, done);
    }
    ir_sb_free(&key);
    ir_free(sh);
    return st;
}

static kiln_status build_kernel(cg_ctx *c, entry *e, const ir_node *n, int index, const char *sym,
                                cg_func_info *fi) {
    const cg_layout *L = c->lay;
    cg_kernel_plan *kp = ir_malloc(sizeof *kp);
    if (!kp) return ir_oom(c->d);
    int nin = n->n_in;
    bool shared = false;
    kiln_status st = plan_kernel(c, n, kp);
    if (!st) st = call_shared(c, e, n, kp, &shared);
    if (st || shared) goto out;
    /* The kernel: i32 (i64 batch, i8* err, i8* buffers...). */
    LLVMTypeRef pt[CG_MAX_PARAMS + 2];
    pt[0] = c->t_i64;
    pt[1] = c->t_i8p;
    for (int i = 0; i < kp->n; i++) pt[2 + i] = c->t_i8p;
    LLVMTypeRef fty = LLVMFunctionType(c->t_i32, pt, (unsigned)kp->n + 2, 0);
    char name[256];
    snprintf(name, sizeof name, "%s.%d.%s", sym, index, ir_op_name(n->op));
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_kernel_attrs(c, fn, kp);
    c->fn = fn;
    c->batch = LLVMGetParam(fn, 0);
    c->err = LLVMGetParam(fn, 1);
    c->node = n;
    c->can_fail = false;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef outp = kp->out >= 0 ? LLVMGetParam(fn, (unsigned)kp->out + 2) : NULL;
    c->ws = kp->ws >= 0 ? LLVMGetParam(fn, (unsigned)kp->ws + 2) : NULL;
    c->wsb = kp->wsb >= 0 ? LLVMGetParam(fn, (unsigned)kp->wsb + 2) : NULL;
    LLVMValueRef inp[CG_MAX_PARAMS];
    for (int k = 0; k < nin; k++) inp[k] = LLVMGetParam(fn, (unsigned)kp->in[k] + 2);
    if (n->region && L->split[n->serial])
        for (int i = 0; i < n->region->n; i++)
            if (kp->temp[i] >= 0)
                c->temps[n->region->nodes[i]->serial] = LLVMGetParam(fn, (unsigned)kp->temp[i] + 2);

    const ir_op_info *info = ir_op(n->op);
    if (info->is_ew) {
        ir_node *self = (ir_node *)n;
        st = cg_ew_loop(c, &n->type, 1, &self, n, outp, nin, n->in, inp);
    } else {
        cg_node_fn fnl = cg_node_lowering(n->op);
        st = fnl ? fnl(c, n, outp, inp) : cg_error(c, n, "no lowering");
    }
    if (n->region)
        for (int i = 0; i < n->region->n; i++) c->temps[n->region->nodes[i]->serial] = NULL;
    c->ws = c->wsb = NULL;
    if (st) goto out;
    LLVMBuildRet(c->b, cg_i32(c, 0));

    /* The call from the entry point. */
    LLVMValueRef args[CG_MAX_PARAMS + 2];
    args[0] = e->batch;
    args[1] = e->err;
    for (int i = 0; i < kp->n; i++) args[2 + i] = buf_ptr(c, e, &kp->bufs[i]);
    LLVMValueRef call = LLVMBuildCall2(e->b, fty, fn, args, (unsigned)kp->n + 2, "");
    if (c->can_fail) {
        /* A failed kernel's status is the function's. */
        LLVMBasicBlockRef fail = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "failed");
        LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "next");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntNE, call, cg_i32(c, 0), ""), fail, ok);
        LLVMPositionBuilderAtEnd(e->b, fail);
        LLVMBuildRet(e->b, call);
        LLVMPositionBuilderAtEnd(e->b, ok);
        cg_fail_site *fs = ir_realloc(fi->fails, sizeof *fs * ((size_t)fi->n_fails + 1));
        if (!fs) {
            st = ir_oom(c->d);
            goto out;
        }
        fi->fails = fs;
        cg_fail_site *s = &fs[fi->n_fails++];
        memset(s, 0, sizeof *s);
        s->serial = n->serial;
        s->op = ir_op_name(n->op);
        s->line = n->loc.line;
        s->col = n->loc.col;
        const ir_type *p = &n->in[0]->type;
        s->classes = p->rank ? p->dims[p->rank - 1] : 1;
        if (n->loc.file && !(s->file = ir_strdup(n->loc.file))) st = ir_oom(c->d);
    }
out:
    ir_free(kp);
    return st;
}

/* --------------------------------------------------- the kernels' modules */

/* Where Kiln's GEMM kernels (gemm.c) go when they have modules of their own
 * (cg_build_modules): consecutive nodes' kernels fill a module (kern_end
 * says when it is full), in an LLVM context of its own, so that they are optimized and compiled at
 * the same time, on any thread (jit.c). k is the module being filled. */
typedef struct kern_state {
    cg_kernel_modules *out;
    cg_ctx k;
    bool open; /* k holds a module (and its context) */
} kern_state;

static kiln_status ctx_init(cg_ctx *c, kiln_module *m, const cg_options *o, LLVMContextRef ctx,
                            const char *name, const cg_ctx *like, kiln_diag *d);
static void ctx_done(cg_ctx *c);

/* Gives c->kern an empty module for the next node's kernels. */
static kiln_status kern_begin(cg_ctx *c, kern_state *ks) {
    if (!ks) return KILN_OK;
    if (!ks->open) {
        LLVMContextRef kctx = LLVMContextCreate();
        /* One name for every kernel module: its bitcode keys its cache
         * entry (jit.c), so kernels of the same kinds are compiled once. */
        kiln_status st = ctx_init(&ks->k, c->m, c->o, kctx, "kiln.kernels", c, c->d);
        if (st) {
            LLVMContextDispose(kctx);
            return st;
        }
        ks->open = true;
    }
    c->kern = &ks->k;
    return KILN_OK;
}

/* The module being filled becomes one of ks->out (when it has kernels). */
static kiln_status kern_close(kern_state *ks) {
    if (!ks || !ks->open || !LLVMGetFirstFunction(ks->k.mod)) return KILN_OK;
    cg_kernel_modules *km = ks->out;
    kiln_status st = cg_verify_llvm(ks->k.mod, "codegen: the generated kernels", ks->k.d);
    LLVMModuleRef *mods = st ? NULL : ir_realloc(km->mod, sizeof *mods * ((size_t)km->n + 1));
    if (mods) km->mod = mods;
    LLVMContextRef *ctxs = mods ? ir_realloc(km->ctx, sizeof *ctxs * ((size_t)km->n + 1)) : NULL;
    if (ctxs) km->ctx = ctxs;
    if (!st && !ctxs) st = ir_oom(ks->k.d);
    if (st) return st; /* still open: kern_abort frees it */
    km->mod[km->n] = ks->k.mod;
    km->ctx[km->n++] = ks->k.ctx;
    ctx_done(&ks->k);
    ks->open = false;
    return KILN_OK;
}

/* After a node: the module takes the next nodes' kernels too until it has
 * KERN_MODULE_MIN instructions. A module costs ~4 ms of compile beyond its
 * code (pipelines, streamer, context), but the compiling thread takes
 * modules only after its own: the seed step's five kernel nodes make four
 * modules at 800 (cold compile 116-120 ms wall quiet, both threads busy to
 * the end) and two at 1,500 (132-135 ms: the helper thread compiled both
 * while the compiling thread waited), the same CPU (bench/RESULTS.md,
 * session 26). */
enum { KERN_MODULE_MIN = 800 };

static kiln_status kern_end(kern_state *ks) {
    if (!ks || !ks->open || cg_module_size(ks->k.mod) < KERN_MODULE_MIN) return KILN_OK;
    return kern_close(ks);
}

/* Frees the module being filled (empty, or left by an error). */
static void kern_abort(kern_state *ks) {
    if (!ks->open) return;
    ctx_done(&ks->k);
    LLVMDisposeModule(ks->k.mod);
    LLVMContextDispose(ks->k.ctx);
    ks->open = false;
}

void cg_kernel_modules_dispose(cg_kernel_modules *km) {
    for (int i = 0; i < km->n; i++) {
        if (km->mod[i]) LLVMDisposeModule(km->mod[i]);
        if (km->ctx[i]) LLVMContextDispose(km->ctx[i]);
    }
    ir_free(km->mod);
    ir_free(km->ctx);
    memset(km, 0, sizeof *km);
}

/* ------------------------------------------------------------ functions */

static kiln_status build_func(cg_ctx *c, kern_state *ks, kiln_func *f, cg_func_info *fi,
                              bool first) {
    cg_layout lay;
    kiln_status st = cg_layout_func(f, &lay, c->d);
    if (st) return st;
    c->f = f;
    c->lay = &lay;
    fi->ws_fixed = lay.ws_fixed;
    fi->ws_per_sample = lay.ws_per_sample;
    fi->ws_chunk = f->mem_chunk;
    fi->err_fixed = lay.err.a;
    fi->err_per_sample = lay.err.b;
    fi->n_args = f->n_args;
    fi->n_results = f->n_results;
    entry *e = ir_calloc(1, sizeof *e);
    if (!e) {
        cg_layout_free(&lay);
        return ir_oom(c->d);
    }
    LLVMTypeRef i8pp = LLVMPointerType(c->t_i8p, 0);
    LLVMTypeRef pt[5] = {c->t_i64, i8pp, i8pp, i8pp, c->t_i8p};
    LLVMTypeRef fty = LLVMFunctionType(c->t_i32, pt, 5, 0);
    /* The body; the exported symbol is a wrapper (wrap_denormals). */
    char body_name[512];
    snprintf(body_name, sizeof body_name, "%s.body", fi->symbol);
    e->fn = LLVMAddFunction(c->mod, body_name, fty);
    LLVMSetLinkage(e->fn, LLVMInternalLinkage);
    add_fn_attrs(c, e->fn);
    /* Not inlined into the wrapper: O3 would optimize the whole step twice
     * (+20 ms of compile time) for a saving of one call. */
    cg_add_attr(c, e->fn, LLVMAttributeFunctionIndex, "noinline");
    for (unsigned i = 2; i <= 5; i++) cg_add_attr(c, e->fn, i, "nocapture");
    cg_add_attr(c, e->fn, 2, "readonly");
    cg_add_attr(c, e->fn, 3, "readonly");
    cg_add_attr(c, e->fn, 4, "readonly");
    e->b = LLVMCreateBuilderInContext(c->ctx);
    e->batch = LLVMGetParam(e->fn, 0);
    e->args = LLVMGetParam(e->fn, 1);
    e->results = LLVMGetParam(e->fn, 2);
    e->globals = LLVMGetParam(e->fn, 3);
    e->ws = LLVMGetParam(e->fn, 4);
    LLVMBasicBlockRef entry_bb = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "entry");
    LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "bad.batch");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "body");
    LLVMPositionBuilderAtEnd(e->b, entry_bb);
    /* 0 <= batch < 2^31: BLAS dimensions are 32-bit. */
    LLVMValueRef neg = LLVMBuildICmp(e->b, LLVMIntSLT, e->batch, cg_i64(c, 0), "");
    LLVMValueRef big = LLVMBuildICmp(e->b, LLVMIntSGT, e->batch, cg_i64(c, INT32_MAX), "");
    LLVMBuildCondBr(e->b, LLVMBuildOr(e->b, neg, big, ""), bad, body);
    LLVMPositionBuilderAtEnd(e->b, bad);
    LLVMBuildRet(e->b, LLVMBuildSelect(e->b, neg, cg_i32(c, KILN_ERR_INVALID),
                                       cg_i32(c, KILN_ERR_LIMIT), ""));
    LLVMPositionBuilderAtEnd(e->b, body);
    e->err = buf_ptr(c, e, &lay.err);
    LLVMValueRef rec = LLVMBuildBitCast(e->b, e->err, LLVMPointerType(c->t_i32, 0), "");
    LLVMBuildStore(e->b, cg_i32(c, 0), rec);

    st = count_loops(c, f);
    for (int i = 0; i < f->n_nodes && !st; i++) {
        ir_node *n = f->nodes[i];
        if (!has_kernel(&lay, n)) continue;
        st = kern_begin(c, ks);
        if (!st) st = build_kernel(c, e, n, i, fi->symbol, fi);
        if (!st) st = kern_end(ks);
    }
    /* Results not computed in place: copy. */
    for (int i = 0; i < f->n_results && !st; i++) {
        const ir_node *r = f->results[i];
        const cg_buf *src = &lay.buf[r->serial];
        if (src->kind == CG_BUF_RESULT && src->index == i) continue;
        cg_buf dst = {.kind = CG_BUF_RESULT, .index = i};
        LLVMValueRef n_el =
            LLVMBuildNSWMul(e->b, cg_i64(c, ir_type_static_numel(&r->type)),
                            ir_type_batch_axis(&r->type) >= 0 ? e->batch : cg_i64(c, 1), "");
        LLVMValueRef bytes = LLVMBuildNSWMul(e->b, n_el, cg_i64(c, 4), "");
        LLVMBuildMemMove(e->b, buf_ptr(c, e, &dst), 4, buf_ptr(c, e, src), 4, bytes);
    }
    if (!st) {
        if (first && c->o->test_malformed)
            LLVMBuildRet(e->b, cg_i64(c, 0)); /* ill-typed: i64 from an i32 function */
        else
            LLVMBuildRet(e->b, cg_i32(c, 0));
    }
    if (!st) wrap_denormals(c, e->fn, fi, fty, f);
    LLVMDisposeBuilder(e->b);
    ir_free(e);
    cg_layout_free(&lay);
    c->lay = NULL;
    return st;
}

/* ------------------------------------------------------------- the module */

/* A builder context over a new module named `name` in `ctx`, with the
 * target's triple and data layout: those of `like`'s module if given (no
 * target machine to make), else of a target machine for o. */
static kiln_status ctx_init(cg_ctx *c, kiln_module *m, const cg_options *o, LLVMContextRef ctx,
                            const char *name, const cg_ctx *like, kiln_diag *d) {
    memset(c, 0, sizeof *c);
    LLVMTargetMachineRef tm = NULL;
    kiln_status st = like ? KILN_OK : cg_target_machine(o, &tm, d);
    if (st) return st;
    c->ctx = ctx;
    c->o = o;
    c->d = d;
    c->m = m;
    c->limit = m->next_serial;
    c->t_void = LLVMVoidTypeInContext(ctx);
    c->t_i1 = LLVMInt1TypeInContext(ctx);
    c->t_i8 = LLVMInt8TypeInContext(ctx);
    c->t_i32 = LLVMInt32TypeInContext(ctx);
    c->t_i64 = LLVMInt64TypeInContext(ctx);
    c->t_f32 = LLVMFloatTypeInContext(ctx);
    c->t_f64 = LLVMDoubleTypeInContext(ctx);
    c->t_i8p = LLVMPointerType(c->t_i8, 0);
    c->mod = LLVMModuleCreateWithNameInContext(name, ctx);
    if (like) {
        c->cpu = LLVMCreateMessage(like->cpu);
        c->features = LLVMCreateMessage(like->features);
        LLVMSetDataLayout(c->mod, LLVMGetDataLayoutStr(like->mod));
        LLVMSetTarget(c->mod, LLVMGetTarget(like->mod));
    } else {
        c->cpu = LLVMGetTargetMachineCPU(tm);
        c->features = LLVMGetTargetMachineFeatureString(tm);
        LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
        LLVMSetModuleDataLayout(c->mod, dl);
        LLVMDisposeTargetData(dl);
        char *triple = LLVMGetTargetMachineTriple(tm);
        LLVMSetTarget(c->mod, triple);
        LLVMDisposeMessage(triple);
        LLVMDisposeTargetMachine(tm);
    }
    c->b = LLVMCreateBuilderInContext(ctx);
    return KILN_OK;
}

/* Frees what ctx_init made but the module. */
static void ctx_done(cg_ctx *c) {
    if (c->b) LLVMDisposeBuilder(c->b);
    LLVMDisposeMessage((char *)c->cpu);
    LLVMDisposeMessage((char *)c->features);
}

kiln_status cg_build_module(kiln_module *m, const cg_options *o, LLVMContextRef ctx,
                            LLVMModuleRef *out, cg_module_info **info_out, kiln_diag *d) {
    return cg_build_modules(m, o, ctx, NULL, out, info_out, d);
}

kiln_status cg_build_modules(kiln_module *m, const cg_options *o, LLVMContextRef ctx,
                             cg_kernel_modules *kern, LLVMModuleRef *out,
                             cg_module_info **info_out, kiln_diag *d) {
    cg_options defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!o) o = &defaults;
    *out = NULL;
    if (kern) memset(kern, 0, sizeof *kern);
    if (info_out) *info_out = NULL;
    kiln_status st = ir_verify_module(m, d);
    if (st) return st;
    if (o->only_func && !kiln_module_func(m, o->only_func))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no function named '%s'", o->only_func);

    cg_ctx c;
    if ((st = ctx_init(&c, m, o, ctx, m->name, NULL, d))) return st;
    kern_state ks_, *ks = NULL;
    if (kern) {
        memset(&ks_, 0, sizeof ks_);
        ks_.out = kern;
        ks = &ks_;
    }
    c.val = ir_calloc((size_t)c.limit + 1, sizeof *c.val);
    c.temps = ir_calloc((size_t)c.limit + 1, sizeof *c.temps);
    cg_module_info *info = ir_calloc(1, sizeof *info);
    int nf = o->only_func ? 1 : m->n_funcs;
    if (info) info->funcs = ir_calloc((size_t)nf + 1, sizeof *info->funcs);
    if (!c.val || !c.temps || !info || !info->funcs) st = ir_oom(d);
    for (int i = 0; i < m->n_funcs && !st; i++) {
        kiln_func *f = m->funcs[i];
        if (o->only_func && strcmp(f->name, o->only_func) != 0) continue;
        cg_func_info *fi = &info->funcs[info->n_funcs++];
        fi->name = ir_strdup(f->name);
        fi->symbol = cg_symbol_name(f->name);
        if (!fi->name || !fi->symbol) {
            st = ir_oom(d);
            break;
        }
        st = build_func(&c, ks, f, fi, info->n_funcs == 1);
    }
    if (!st) st = cg_verify_llvm(c.mod, "codegen: the generated LLVM IR", d);
    ctx_done(&c);
    ir_free(c.val);
    ir_free(c.temps);
    cg_loops_free(c.loops);
    if (ks && !st) st = kern_close(ks); /* the last nodes' kernels */
    if (ks) kern_abort(ks);
    if (st) {
        if (kern) cg_kernel_modules_dispose(kern);
        LLVMDisposeModule(c.mod);
        cg_module_info_dispose(info);
        return st;
    }
    *out = c.mod;
    if (info_out)
        *info_out = info;
    else
        cg_module_info_dispose(info);
    return KILN_OK;
}

/* ------------------------------------------------------------- errors */

kiln_status cg_func_error(const cg_func_info *fi, const void *workspace, int64_t batch,
                          int32_t status, kiln_diag *d) {
    if (status == KILN_OK) return KILN_OK;
    if (batch < 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: negative batch %lld", fi->name,
                        (long long)batch);
    if (batch > INT32_MAX)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: batch %lld exceeds 2^31 - 1",
                        fi->name, (long long)batch);
    cg_error_record rec;
    memcpy(&rec, (const char *)workspace + fi->err_fixed + fi->err_per_sample * batch, sizeof rec);
    for (int i = 0; i < fi->n_fails; i++) {
        const cg_fail_site *s = &fi->fails[i];
        if (s->serial != rec.serial) continue;
        ir_loc loc = {s->file, s->line, s->col};
        return ir_error(d, (kiln_status)status, loc, "%s: label %lld is out of range [0, %lld)",
                        s->op, (long long)rec.detail, (long long)s->classes);
    }
    return ir_error(d, (kiln_status)status, ir_loc_none(), "%s failed: %s", fi->name,
                    kiln_status_string((kiln_status)status));
}

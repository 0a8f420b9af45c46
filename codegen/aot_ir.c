/*
 * aot_ir.c — the structured LLVM builder the AOT glue is written with
 * (aot_ir.h).
 */
#include "codegen/aot_ir.h"

#include <stdio.h>
#include <string.h>

void ag_init(ag *a, LLVMContextRef ctx, LLVMModuleRef mod) {
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
    a->mod = mod;
    a->b = LLVMCreateBuilderInContext(ctx);
    a->alloca_b = LLVMCreateBuilderInContext(ctx);
    a->t_void = LLVMVoidTypeInContext(ctx);
    a->t_i1 = LLVMInt1TypeInContext(ctx);
    a->t_i8 = LLVMInt8TypeInContext(ctx);
    a->t_i32 = LLVMInt32TypeInContext(ctx);
    a->t_i64 = LLVMInt64TypeInContext(ctx);
    a->t_f32 = LLVMFloatTypeInContext(ctx);
    a->t_p8 = LLVMPointerType(a->t_i8, 0);
    a->t_p64 = LLVMPointerType(a->t_i64, 0);
    a->t_p32 = LLVMPointerType(a->t_i32, 0);
}

void ag_dispose(ag *a) {
    if (a->b) LLVMDisposeBuilder(a->b);
    if (a->alloca_b) LLVMDisposeBuilder(a->alloca_b);
    a->b = a->alloca_b = NULL;
}

/* ------------------------------------------------------------ functions */

LLVMValueRef ag_begin(ag *a, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n,
                      bool exported) {
    LLVMTypeRef fty = LLVMFunctionType(ret, params, n, 0);
    LLVMValueRef fn = LLVMAddFunction(a->mod, name, fty);
    LLVMSetLinkage(fn, exported ? LLVMExternalLinkage : LLVMInternalLinkage);
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(a->ctx, nounwind, 0));
    a->fn = fn;
    a->entry = LLVMAppendBasicBlockInContext(a->ctx, fn, "entry");
    a->body = LLVMAppendBasicBlockInContext(a->ctx, fn, "body");
    LLVMPositionBuilderAtEnd(a->alloca_b, a->entry);
    LLVMPositionBuilderAtEnd(a->b, a->body);
    return fn;
}

void ag_finish(ag *a) {
    LLVMBuildUnreachable(a->b);
    LLVMBuildBr(a->alloca_b, a->body);
    a->fn = NULL;
}

/* ------------------------------------------------------------ constants */

LLVMValueRef ag_i8c(ag *a, long long v) {
    return LLVMConstInt(a->t_i8, (unsigned long long)v, 1);
}
LLVMValueRef ag_i32c(ag *a, long long v) {
    return LLVMConstInt(a->t_i32, (unsigned long long)v, 1);
}
LLVMValueRef ag_i64c(ag *a, long long v) {
    return LLVMConstInt(a->t_i64, (unsigned long long)v, 1);
}
LLVMValueRef ag_null(ag *a) {
    return LLVMConstNull(a->t_p8);
}

LLVMValueRef ag_bytes(ag *a, const char *name, const void *data, size_t n, unsigned align) {
    LLVMValueRef init = LLVMConstStringInContext(a->ctx, data, (unsigned)n, 1);
    LLVMValueRef g = LLVMAddGlobal(a->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(g, init);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(g, align);
    return LLVMConstBitCast(g, a->t_p8);
}

LLVMValueRef ag_str(ag *a, const char *s) {
    char name[32];
    snprintf(name, sizeof name, ".str.%d", a->n_strings++);
    return ag_bytes(a, name, s, strlen(s) + 1, 1);
}

/* --------------------------------------------------------------- locals */

LLVMValueRef ag_var(ag *a, LLVMTypeRef t, LLVMValueRef init) {
    LLVMValueRef v = LLVMBuildAlloca(a->alloca_b, t, "");
    if (init) LLVMBuildStore(a->b, init, v);
    return v;
}

LLVMValueRef ag_array(ag *a, LLVMTypeRef elem, unsigned n) {
    LLVMValueRef v = LLVMBuildAlloca(a->alloca_b, LLVMArrayType(elem, n ? n : 1), "");
    LLVMSetAlignment(v, 16);
    return LLVMBuildBitCast(a->alloca_b, v, LLVMPointerType(elem, 0), "");
}

LLVMValueRef ag_get(ag *a, LLVMTypeRef t, LLVMValueRef var) {
    return LLVMBuildLoad2(a->b, t, var, "");
}

void ag_set(ag *a, LLVMValueRef var, LLVMValueRef v) {
    LLVMBuildStore(a->b, v, var);
}

/* --------------------------------------------------------------- memory */

LLVMValueRef ag_off(ag *a, LLVMValueRef p8, LLVMValueRef off) {
    return LLVMBuildGEP2(a->b, a->t_i8, p8, &off, 1, "");
}

LLVMValueRef ag_offc(ag *a, LLVMValueRef p8, long long off) {
    return ag_off(a, p8, ag_i64c(a, off));
}

LLVMValueRef ag_load(ag *a, LLVMTypeRef t, LLVMValueRef p8) {
    LLVMValueRef p = LLVMBuildBitCast(a->b, p8, LLVMPointerType(t, 0), "");
    LLVMValueRef v = LLVMBuildLoad2(a->b, t, p, "");
    LLVMSetAlignment(v, 1); /* the glue never assumes more */
    return v;
}

void ag_store(ag *a, LLVMValueRef v, LLVMValueRef p8) {
    LLVMValueRef p = LLVMBuildBitCast(a->b, p8, LLVMPointerType(LLVMTypeOf(v), 0), "");
    LLVMValueRef s = LLVMBuildStore(a->b, v, p);
    LLVMSetAlignment(s, 1);
}

LLVMValueRef ag_elem(ag *a, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef i) {
    return LLVMBuildGEP2(a->b, elem, base, &i, 1, "");
}

/* ----------------------------------------------------------- arithmetic */

LLVMValueRef ag_add(ag *a, LLVMValueRef x, LLVMValueRef y) {
    return LLVMBuildAdd(a->b, x, y, "");
}
LLVMValueRef ag_sub(ag *a, LLVMValueRef x, LLVMValueRef y) {
    return LLVMBuildSub(a->b, x, y, "");
}
LLVMValueRef ag_mul(ag *a, LLVMValueRef x, LLVMValueRef y) {
    return LLVMBuildMul(a->b, x, y, "");
}
LLVMValueRef ag_cmp(ag *a, LLVMIntPredicate p, LLVMValueRef x, LLVMValueRef y) {
    return LLVMBuildICmp(a->b, p, x, y, "");
}
LLVMValueRef ag_and(ag *a, LLVMValueRef x, LLVMValueRef y) {
    return LLVMBuildAnd(a->b, x, y, "");
}
LLVMValueRef ag_or(ag *a, LLVMValueRef x, LLVMValueRef y) {
    return LLVMBuildOr(a->b, x, y, "");
}
LLVMValueRef ag_not(ag *a, LLVMValueRef x) {
    return LLVMBuildNot(a->b, x, "");
}
LLVMValueRef ag_sext64(ag *a, LLVMValueRef x) {
    return LLVMBuildSExt(a->b, x, a->t_i64, "");
}
LLVMValueRef ag_zext64(ag *a, LLVMValueRef x) {
    return LLVMBuildZExt(a->b, x, a->t_i64, "");
}
LLVMValueRef ag_select(ag *a, LLVMValueRef c, LLVMValueRef x, LLVMValueRef y) {
    return LLVMBuildSelect(a->b, c, x, y, "");
}

/* --------------------------------------------------------- control flow */

LLVMBasicBlockRef ag_block(ag *a, const char *name) {
    return LLVMAppendBasicBlockInContext(a->ctx, a->fn, name);
}

void ag_at(ag *a, LLVMBasicBlockRef bb) {
    LLVMBuildBr(a->b, bb);
    LLVMPositionBuilderAtEnd(a->b, bb);
}

void ag_place(ag *a, LLVMBasicBlockRef bb) {
    LLVMBuildUnreachable(a->b);
    LLVMPositionBuilderAtEnd(a->b, bb);
}

static void dead(ag *a) {
    LLVMPositionBuilderAtEnd(a->b, ag_block(a, "dead"));
}

void ag_ret(ag *a, LLVMValueRef v) {
    if (v)
        LLVMBuildRet(a->b, v);
    else
        LLVMBuildRetVoid(a->b);
    dead(a);
}

void ag_goto(ag *a, LLVMBasicBlockRef bb) {
    LLVMBuildBr(a->b, bb);
    dead(a);
}

void ag_if_begin(ag *a, ag_if *s, LLVMValueRef cond) {
    LLVMBasicBlockRef then = ag_block(a, "then");
    s->other = ag_block(a, "else");
    s->end = NULL;
    s->in_else = false;
    LLVMBuildCondBr(a->b, cond, then, s->other);
    LLVMPositionBuilderAtEnd(a->b, then);
}

void ag_if_else(ag *a, ag_if *s) {
    s->end = ag_block(a, "endif");
    LLVMBuildBr(a->b, s->end);
    LLVMPositionBuilderAtEnd(a->b, s->other);
    s->in_else = true;
}

void ag_if_end(ag *a, ag_if *s) {
    if (s->in_else) {
        ag_at(a, s->end);
    } else {
        ag_at(a, s->other); /* no else: the false edge lands after the body */
    }
}

void ag_loop_begin(ag *a, ag_loop *l) {
    l->head = ag_block(a, "loop");
    l->exit = ag_block(a, "loop.exit");
    ag_at(a, l->head);
}

void ag_loop_while(ag *a, ag_loop *l, LLVMValueRef cond) {
    LLVMBasicBlockRef go = ag_block(a, "loop.body");
    LLVMBuildCondBr(a->b, cond, go, l->exit);
    LLVMPositionBuilderAtEnd(a->b, go);
}

void ag_break(ag *a, ag_loop *l) {
    ag_goto(a, l->exit);
}
void ag_continue(ag *a, ag_loop *l) {
    ag_goto(a, l->head);
}

void ag_loop_end(ag *a, ag_loop *l) {
    LLVMBuildBr(a->b, l->head);
    LLVMPositionBuilderAtEnd(a->b, l->exit);
}

LLVMValueRef ag_for_begin(ag *a, ag_for *f, LLVMValueRef n) {
    f->var = ag_var(a, a->t_i64, ag_i64c(a, 0));
    ag_loop_begin(a, &f->loop);
    LLVMValueRef i = ag_get(a, a->t_i64, f->var);
    ag_loop_while(a, &f->loop, ag_cmp(a, LLVMIntSLT, i, n));
    return i;
}

void ag_for_end(ag *a, ag_for *f) {
    ag_set(a, f->var, ag_add(a, ag_get(a, a->t_i64, f->var), ag_i64c(a, 1)));
    ag_loop_end(a, &f->loop);
}

/* ---------------------------------------------------------------- calls */

LLVMValueRef ag_libc(ag *a, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n,
                     bool vararg) {
    LLVMValueRef fn = LLVMGetNamedFunction(a->mod, name);
    if (!fn) fn = LLVMAddFunction(a->mod, name, LLVMFunctionType(ret, params, n, vararg));
    return fn;
}

LLVMValueRef ag_call_fn(ag *a, LLVMValueRef fn, LLVMValueRef *args, unsigned n) {
    return LLVMBuildCall2(a->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

/* The C library as the glue sees it (LP64 Linux: size_t and long are i64). */
LLVMValueRef ag_c(ag *a, const char *name, LLVMValueRef *args, unsigned n) {
    LLVMTypeRef p = a->t_p8, i = a->t_i32, l = a->t_i64, v = a->t_void;
    LLVMTypeRef pp = LLVMPointerType(p, 0);
    static const struct sig {
        const char *name;
        char ret;
        const char *params; /* p: i8*, q: i8**, r: i32*, i: i32, l: i64, v: void */
        bool vararg;
    } sigs[] = {
        {"memcpy", 'p', "ppl", false},  {"memset", 'p', "pil", false},
        {"memcmp", 'i', "ppl", false},  {"strlen", 'l', "p", false},
        {"snprintf", 'i', "plp", true}, {"posix_memalign", 'i', "qll", false},
        {"malloc", 'p', "l", false},    {"free", 'v', "p", false},
        {"fopen", 'p', "pp", false},    {"fclose", 'i', "p", false},
        {"fread", 'l', "pllp", false},  {"fwrite", 'l', "pllp", false},
        {"fseek", 'i', "pli", false},   {"ftell", 'l', "p", false},
        {"fflush", 'i', "p", false},    {"fileno", 'i', "p", false},
        {"fsync", 'i', "i", false},     {"rename", 'i', "pp", false},
        {"remove", 'i', "p", false},    {"open", 'i', "pi", true},
        {"close", 'i', "i", false},     {"strerror", 'p', "i", false},
        {"getpid", 'i', "", false},     {"__errno_location", 'r', "", false},
    };
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        const struct sig *s = &sigs[k];
        if (strcmp(s->name, name) != 0) continue;
        LLVMTypeRef pt[8];
        unsigned np = (unsigned)strlen(s->params);
        for (unsigned j = 0; j < np; j++)
            pt[j] = s->params[j] == 'p'   ? p
                    : s->params[j] == 'q' ? pp
                    : s->params[j] == 'i' ? i
                                          : l;
        LLVMTypeRef rt = s->ret == 'p'   ? p
                         : s->ret == 'q' ? pp
                         : s->ret == 'i' ? i
                         : s->ret == 'l' ? l
                         : s->ret == 'r' ? a->t_p32
                                         : v;
        LLVMValueRef fn = ag_libc(a, name, rt, pt, np, s->vararg);
        LLVMSetLinkage(fn, LLVMExternalLinkage);
        return LLVMBuildCall2(a->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
    }
    return NULL; /* a name missing from the table: a bug the tests catch (they call each) */
}

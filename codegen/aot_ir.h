/*
 * aot_ir.h — a small structured builder over the LLVM C API for the AOT glue
 * (handle management, safetensors loading and saving, error messages), which
 * is written straight into the model's LLVM module so the shared object needs
 * no C compiler and no runtime library. Internal to codegen/aot*.c.
 *
 * Control flow is structured (if / loop / goto-cleanup) and every early exit
 * continues in a fresh unreachable block, so code after a `return` stays
 * well-formed and O3 deletes it. Locals are allocas in the entry block;
 * mem2reg turns them into registers.
 */
#ifndef KILN_CODEGEN_AOT_IR_H
#define KILN_CODEGEN_AOT_IR_H

#include <llvm-c/Core.h>

#include "codegen/cg.h"

typedef struct ag {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;        /* positioned in the code being written */
    LLVMBuilderRef alloca_b; /* at the end of the entry block */
    LLVMTypeRef t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_p8, t_p64, t_p32;
    LLVMValueRef fn;
    LLVMBasicBlockRef entry, body;
    int n_strings; /* names of the private string constants */
} ag;

void ag_init(ag *a, LLVMContextRef ctx, LLVMModuleRef mod);
void ag_dispose(ag *a);

/* Starts function `name` (external when `exported`, else internal) and
 * positions the builder in its body. ag_finish closes it: the current block
 * must be dead (after ag_ret or ag_goto). */
LLVMValueRef ag_begin(ag *a, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n,
                      bool exported);
void ag_finish(ag *a);

/* Constants. */
LLVMValueRef ag_i8c(ag *a, long long v);
LLVMValueRef ag_i32c(ag *a, long long v);
LLVMValueRef ag_i64c(ag *a, long long v);
LLVMValueRef ag_null(ag *a);
/* A private constant NUL-terminated string; returns an i8*. */
LLVMValueRef ag_str(ag *a, const char *s);
/* A private constant of `n` raw bytes aligned to `align`; returns an i8*. */
LLVMValueRef ag_bytes(ag *a, const char *name, const void *data, size_t n, unsigned align);

/* Locals (allocas in the entry block). */
LLVMValueRef ag_var(ag *a, LLVMTypeRef t, LLVMValueRef init);
LLVMValueRef ag_array(ag *a, LLVMTypeRef elem, unsigned n); /* returns elem* to element 0 */
LLVMValueRef ag_get(ag *a, LLVMTypeRef t, LLVMValueRef var);
void ag_set(ag *a, LLVMValueRef var, LLVMValueRef v);

/* Memory: i8* + byte offset, typed loads and stores at i8* addresses,
 * element i of a typed array. */
LLVMValueRef ag_off(ag *a, LLVMValueRef p8, LLVMValueRef off);
LLVMValueRef ag_offc(ag *a, LLVMValueRef p8, long long off);
LLVMValueRef ag_load(ag *a, LLVMTypeRef t, LLVMValueRef p8);
void ag_store(ag *a, LLVMValueRef v, LLVMValueRef p8);
LLVMValueRef ag_elem(ag *a, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef i);

/* Arithmetic and comparison shorthands (i64 unless the operands say otherwise). */
LLVMValueRef ag_add(ag *a, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef ag_sub(ag *a, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef ag_mul(ag *a, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef ag_cmp(ag *a, LLVMIntPredicate p, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef ag_and(ag *a, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef ag_or(ag *a, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef ag_not(ag *a, LLVMValueRef x);
LLVMValueRef ag_sext64(ag *a, LLVMValueRef x);
LLVMValueRef ag_zext64(ag *a, LLVMValueRef x);
LLVMValueRef ag_select(ag *a, LLVMValueRef c, LLVMValueRef x, LLVMValueRef y);

/* Structured control flow. */
typedef struct ag_if {
    LLVMBasicBlockRef other, end;
    bool in_else;
} ag_if;
void ag_if_begin(ag *a, ag_if *s, LLVMValueRef cond);
void ag_if_else(ag *a, ag_if *s);
void ag_if_end(ag *a, ag_if *s);

/* while (true) { ...; if (!cond) break; ... } — ag_loop_begin opens the
 * loop (the code that follows runs on each iteration), ag_loop_while exits
 * it when `cond` is false, ag_break / ag_continue jump, ag_loop_end closes. */
typedef struct ag_loop {
    LLVMBasicBlockRef head, exit;
} ag_loop;
void ag_loop_begin(ag *a, ag_loop *l);
void ag_loop_while(ag *a, ag_loop *l, LLVMValueRef cond);
void ag_break(ag *a, ag_loop *l);
void ag_continue(ag *a, ag_loop *l);
void ag_loop_end(ag *a, ag_loop *l);

/* for (i = 0; i < n; i++) — returns the i64 counter's variable. */
typedef struct ag_for {
    ag_loop loop;
    LLVMValueRef var;
} ag_for;
LLVMValueRef ag_for_begin(ag *a, ag_for *f, LLVMValueRef n);
void ag_for_end(ag *a, ag_for *f);

/* Jumps; the code after them is dead. */
void ag_ret(ag *a, LLVMValueRef v); /* NULL: ret void */
void ag_goto(ag *a, LLVMBasicBlockRef bb);
LLVMBasicBlockRef ag_block(ag *a, const char *name);
/* Continues at `bb` (closing the current block with a branch to it). */
void ag_at(ag *a, LLVMBasicBlockRef bb);
/* Continues at `bb`, which other code jumps to; the current block must be
 * dead (after ag_ret or ag_goto) and is closed with `unreachable`. */
void ag_place(ag *a, LLVMBasicBlockRef bb);

/* Calls: a function of the C library (or the glue) declared on first use
 * with the given type; ag_call_fn calls an LLVM function directly. */
LLVMValueRef ag_libc(ag *a, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n,
                     bool vararg);
LLVMValueRef ag_call_fn(ag *a, LLVMValueRef fn, LLVMValueRef *args, unsigned n);

/* The C library functions the glue uses, by name ("memcpy", "snprintf", ...);
 * see aot_ir.c for the list. */
LLVMValueRef ag_c(ag *a, const char *name, LLVMValueRef *args, unsigned n);

#endif

/*
 * cg.h — code generation: Kiln IR to LLVM IR to native code (JIT), and the
 * pieces the AOT compiler reuses (module construction, optimization, object
 * and assembly emission). The interface of the codegen/ folder.
 *
 * This header does not include the LLVM headers (the runtime and the tools
 * include it without LLVM's include path); LLVM handles are forward-declared
 * with LLVM's own typedef names, which C11 lets us repeat.
 *
 * ---------------------------------------------------------------- the ABI
 * Every Kiln function F of a module becomes one external LLVM function:
 *
 *   int32_t kiln_F(int64_t batch, void *const *args, void *const *results,
 *                  void *const *globals, char *workspace);
 *
 *   batch      the run-time size of the '?' dimension (0 <= batch < 2^31);
 *   args[i]    the data of F's argument i (type bound to `batch`), read only;
 *   results[i] where F's result i is written;
 *   globals[g] the data of module global g (parameter or state slot), in
 *              module order; `assign` writes there;
 *   workspace  cg_func_info.ws_fixed + ws_per_sample * batch bytes, aligned to
 *              64 bytes (cg_workspace_bytes): F's plan-memory figures,
 *              mem_fixed + mem_per_sample * batch. Every byte of it is placed
 *              by plan-memory (byte offset mem_fixed + mem_offset * batch for
 *              batch-scaled buffers, mem_offset for the others): intermediate
 *              values, region temps, node workspaces and the 16-byte error
 *              record (mem_err). Codegen refuses an unplanned function.
 *              A function plan-memory chunked (mem_chunk = ws_chunk > 0:
 *              its rows are independent) runs min(batch, ws_chunk) rows at
 *              a time through the same workspace, so it needs only
 *              ws_fixed + ws_per_sample * min(batch, ws_chunk) bytes.
 *
 * Buffers of different roles must not overlap (args, results, globals and the
 * workspace are distinct memory). The return value is 0 (KILN_OK) or a
 * kiln_status: KILN_ERR_INVALID for a negative batch or a label out of range
 * (sparse losses), KILN_ERR_LIMIT for batch >= 2^31. On an error the error
 * record (cg_error_record) says which node failed and why; cg_func_error()
 * turns it into the interpreter's message. Element data are f32 or i32,
 * row-major, little-endian.
 *
 * ----------------------------------------------------------- the lowering
 * One lowering per row of ir/ops.def, named in its last column: EW rows have
 * a scalar emitter lw_*(c, n, x) that returns the value of one output
 * element from one element of each operand (so a fused region becomes one
 * loop with every body node's scalar code inside); OP rows have lower_*(c, n,
 * out, in) that emits a whole node into the current kernel function. Each
 * top-level node becomes one internal kernel function whose buffer pointers
 * are `noalias` (each distinct buffer is passed once); O3 inlines them into
 * the entry point, keeping the no-alias facts as scoped metadata. Elementwise
 * kernels alike up to addresses and lengths (Adam's update per parameter)
 * are one `noinline` function instead, called with buffers and loop lengths
 * (outline.c).
 */
#ifndef KILN_CODEGEN_CG_H
#define KILN_CODEGEN_CG_H

#include "ir/ir.h"

/* LLVM handles, as llvm-c/Types.h spells them. */
typedef struct LLVMOpaqueContext *LLVMContextRef;
typedef struct LLVMOpaqueModule *LLVMModuleRef;
typedef struct LLVMOpaqueValue *LLVMValueRef;
typedef struct LLVMOpaqueTargetMachine *LLVMTargetMachineRef;
typedef struct LLVMOpaqueMemoryBuffer *LLVMMemoryBufferRef;

/* ------------------------------------------------------------- options */

typedef struct cg_options {
    int opt_level;         /* LLVM pipeline default<On>, 1..3; 0 means 3 */
    bool no_opt;           /* skip the optimization pipeline (dumps of raw lowering) */
    const char *only_func; /* build just this Kiln function (NULL: all) */
    const char *cpu;       /* target CPU and features; NULL: the host's */
    const char *features;  /* (the host's AVX-512 is left off: see emit.c) */
    bool pic;              /* position-independent code (AOT shared objects) */
    bool perf_jit;         /* JIT: describe the code to `perf` (a jitdump) */
    bool no_cache;         /* JIT: bypass the persistent compile cache (cache.h) */
    kiln_gemm gemm;        /* GEMM backend; KILN_GEMM_AUTO: KILN_GEMM from the
                              environment, else gemm.h's rule */
    int gemm_width;        /* Kiln's GEMM vector width 4|8|16; 0: gemm.h's choice */
    /* Test hook: emit an ill-typed instruction, so the path from an LLVM
     * verifier failure to a kiln_diag error is exercised. */
    bool test_malformed;
} cg_options;

/* ------------------------------------------------ module construction */

/* A place the generated code may fail at (a sparse label check). */
typedef struct cg_fail_site {
    int32_t serial; /* node serial, as stored in the error record */
    const char *op; /* op name (static) */
    char *file;     /* source location (copied), may be NULL */
    int32_t line, col;
    int64_t classes; /* size of the class axis */
} cg_fail_site;

/* What a caller needs to know about one generated entry point. */
typedef struct cg_func_info {
    char *name;   /* the Kiln function's name */
    char *symbol; /* its entry point: "kiln_" + name */
    int n_args, n_results;
    int64_t ws_fixed, ws_per_sample;   /* workspace = ws_fixed + ws_per_sample * batch, */
    int64_t ws_chunk;                  /* batch capped at ws_chunk rows if > 0 (mem_chunk) */
    int64_t err_fixed, err_per_sample; /* error record at err_fixed + err_per_sample * batch */
    cg_fail_site *fails;
    int n_fails;
} cg_func_info;

typedef struct cg_module_info {
    cg_func_info *funcs;
    int n_funcs;
} cg_module_info;

/* The record the generated code writes before returning an error. */
typedef struct cg_error_record {
    int32_t status;
    int32_t serial; /* node that failed */
    int64_t detail; /* the offending label */
} cg_error_record;

/* Builds the LLVM module of every function of `m` (or of o->only_func) in
 * `ctx`, verified but not optimized; its triple and data layout are those of
 * the target (o->cpu/features or the host). On success *out is a module the
 * caller frees with LLVMDisposeModule() (or hands to a consumer) and *info
 * (if info != NULL) describes the entry points; free it with
 * cg_module_info_dispose(). On error nothing is returned and nothing leaks.
 * The functions must verify (ir_verify_module); a planned function's plan is
 * used, unplanned values get codegen's own slots. */
kiln_status cg_build_module(kiln_module *m, const cg_options *o, LLVMContextRef ctx,
                            LLVMModuleRef *out, cg_module_info **info, kiln_diag *d);
void cg_module_info_dispose(cg_module_info *info);

/* Kiln's GEMM kernels (gemm.h) in modules of their own: mod[i] in ctx[i], a
 * context of its own, so that each can be optimized and compiled on any
 * thread while the others are. */
typedef struct cg_kernel_modules {
    int n;
    LLVMModuleRef *mod; /* entries (and ctx's) may be set to NULL: taken over */
    LLVMContextRef *ctx;
} cg_kernel_modules;
void cg_kernel_modules_dispose(cg_kernel_modules *km);

/* cg_build_module with Kiln's GEMM kernels in modules of their own (the
 * kernels of consecutive nodes, a module closed once it has ~1500
 * instructions), into *kern: *out declares them, they
 * define them with external linkage (kern->n == 0 when the functions call
 * none). kern NULL: as cg_build_module. On error *kern is empty. */
kiln_status cg_build_modules(kiln_module *m, const cg_options *o, LLVMContextRef ctx,
                             cg_kernel_modules *kern, LLVMModuleRef *out, cg_module_info **info,
                             kiln_diag *d);

/* The number of instructions of `mod`: what its compile costs. */
int cg_module_size(LLVMModuleRef mod);

/* Runs LLVM's verifier on `mod`; on failure reports "<what> is invalid:
 * <LLVM's message>" as KILN_ERR_BACKEND. */
kiln_status cg_verify_llvm(LLVMModuleRef mod, const char *what, kiln_diag *d);

/* Runs LLVM's default<O3> pipeline (o->opt_level) with the target machine
 * of `o` (vectorizes for the host's AVX2/FMA). */
kiln_status cg_optimize_module(LLVMModuleRef mod, const cg_options *o, kiln_diag *d);

/* cg_optimize_module, then the object into *out, with one target machine
 * (each makes its own subtargets, at 1-3 ms apiece); *optimize_ms (if not
 * NULL): the time until the object's code generation began. */
kiln_status cg_compile_module(LLVMModuleRef mod, const cg_options *o, LLVMMemoryBufferRef *out,
                              double *optimize_ms, kiln_diag *d);
/* Optimizes a kernel module of cg_build_modules with the kernels' lighter
 * pipeline (they are emitted blocked and vectorized) and emits its object
 * into *out, with the target machine tm (a cg_target_machine of o, used by
 * one thread at a time; it keeps its subtargets for the next module) or,
 * tm NULL, one of its own. */
kiln_status cg_compile_kernels(LLVMModuleRef mod, const cg_options *o, LLVMTargetMachineRef tm,
                               LLVMMemoryBufferRef *out, kiln_diag *d);

/* A target machine for `o` (host CPU and features unless overridden;
 * PIC when o->pic). Every invocation should be paired with
 * LLVMDisposeTargetMachine(). */
kiln_status cg_target_machine(const cg_options *o, LLVMTargetMachineRef *out, kiln_diag *d);

/* The triple, CPU name and features a target machine of `o` gets (the
 * host's, AVX-512 off, unless o->cpu / o->features say). Each string is
 * freed with LLVMDisposeMessage(); on error all are NULL. */
kiln_status cg_target_strings(const cg_options *o, char **triple, char **cpu, char **features,
                              kiln_diag *d);

/* Emits the module as a native object in memory; *out is freed with
 * LLVMDisposeMemoryBuffer(). */
kiln_status cg_emit_object_buffer(LLVMModuleRef mod, const cg_options *o, LLVMMemoryBufferRef *out,
                                  kiln_diag *d);
/* Writes the module as a native object file (PIC when o->pic) to `path`. */
kiln_status cg_emit_object(LLVMModuleRef mod, const cg_options *o, const char *path, kiln_diag *d);
/* Appends the module's LLVM IR text / native assembly to `out`. */
kiln_status cg_emit_llvm_text(LLVMModuleRef mod, ir_sb *out, kiln_diag *d);
kiln_status cg_emit_asm_text(LLVMModuleRef mod, const cg_options *o, ir_sb *out, kiln_diag *d);

/* Builds, optimizes and writes the module as a PIC object file to `path`
 * (the AOT compiler's first step), in a context of its own. *info (if
 * info != NULL) describes the entry points; free it with
 * cg_module_info_dispose(). */
kiln_status cg_compile_object(kiln_module *m, const cg_options *o, const char *path,
                              cg_module_info **info, kiln_diag *d);

typedef enum cg_emit_kind { CG_EMIT_LLVM, CG_EMIT_ASM } cg_emit_kind;
/* For `kiln dump --emit=llvm|asm`: builds, optimizes (unless o->no_opt) and
 * prints function `func` (NULL: the whole module) into `out`. */
kiln_status cg_dump(kiln_module *m, const char *func, cg_emit_kind kind, const cg_options *o,
                    ir_sb *out, kiln_diag *d);

/* Entry-point symbol of a Kiln function name ("kiln_" + name, with every
 * character outside [A-Za-z0-9_] replaced by '_'). Malloc'ed (ir_free). */
char *cg_symbol_name(const char *func);

/* Workspace bytes `fi`'s entry point needs for `batch`. */
int64_t cg_workspace_bytes(const cg_func_info *fi, int64_t batch);

/* Turns a nonzero status returned by `fi`'s entry point into a message in
 * `d`, reading the error record from `workspace`; returns the status. */
kiln_status cg_func_error(const cg_func_info *fi, const void *workspace, int64_t batch,
                          int32_t status, kiln_diag *d);

/* ------------------------------------------------------------------ JIT */

typedef int32_t (*cg_entry_fn)(int64_t batch, void *const *args, void *const *results,
                               void *const *globals, char *workspace);

typedef struct cg_program cg_program;

/* Compiles every function of `m` (or o->only_func) to native code in
 * memory: builds the module, optimizes it, emits an object, hands it to an
 * ORC LLJIT and materializes all entry points. The object comes from (and
 * goes to) the persistent compile cache unless o->no_cache or KILN_CACHE=0
 * (codegen/cache.h); a cache directory that cannot be written adds one
 * warning to `d` and the compile carries on. cblas_* resolve to the OpenBLAS this
 * library is linked with; other symbols through the process. On success
 * *out holds a program; every invocation should be paired with
 * cg_program_dispose(). LLVM errors come back as KILN_ERR_BACKEND. The
 * program does not refer to `m` afterwards. */
kiln_status cg_jit_compile(kiln_module *m, const cg_options *o, cg_program **out, kiln_diag *d);
/* KILN_ERR_INVALID unless plan-memory has planned every function of m (or
 * only_func): codegen places no byte of the workspace itself. */
kiln_status cg_check_planned(kiln_module *m, const char *only_func, kiln_diag *d);
void cg_program_dispose(cg_program *p);

/* Compiles functions funcs[0..n) (n <= 16) of `m` into one program each,
 * concurrently: funcs[0] on the calling thread, the others on threads of
 * their own (each with its LLVM context and JIT), as cg_jit_compile with
 * o->only_func = funcs[i]. On success out[i] holds program i; on the
 * first error every program is disposed, out[] is all NULL and `d` holds
 * each failed compile's messages (and any warnings), in order. */
kiln_status cg_jit_compile_each(kiln_module *m, const char *const *funcs, int n,
                                const cg_options *o, cg_program **out, kiln_diag *d);

/* Information and entry point of function `name`; NULL if absent. */
const cg_func_info *cg_program_func(const cg_program *p, const char *name);
cg_entry_fn cg_program_entry(const cg_program *p, const char *name);
/* Workspace bytes of function `name` at `batch`; -1 if absent. */
int64_t cg_program_workspace_bytes(const cg_program *p, const char *name, int64_t batch);
/* Milliseconds from the start of module construction to the end of the
 * materialization of every entry point. */
double cg_program_compile_ms(const cg_program *p);
/* The three parts of compile_ms: building the LLVM module, the O3
 * pipeline, and instruction selection to materialization. On a compile
 * cache hit the first two are 0 and the third is the whole load. */
void cg_program_phase_ms(const cg_program *p, double *build, double *optimize, double *native);
/* Wall milliseconds of the optimization and native code of Kiln's GEMM
 * kernels, summed over their modules (0: none compiled, all loaded from the
 * compile cache); they run on helper threads during the other two phases,
 * and on the compiling thread after them. *cpu_ms (if not NULL): their CPU
 * time. */
double cg_program_kernels_ms(const cg_program *p, double *cpu_ms);
/* How many kernel modules were compiled; *on_main (if not NULL): how many
 * of them on the compiling thread. */
int cg_program_kernel_modules(const cg_program *p, int *on_main);
/* The compile cache's part: "hit", "miss" (compiled and stored) or "off". */
const char *cg_program_cache_status(const cg_program *p);

/* Convenience: runs function `name` (workspace may be NULL: then one is
 * allocated for this call) and reports errors like the interpreter does. */
kiln_status cg_program_run(const cg_program *p, const char *name, int64_t batch, void *const *args,
                           void *const *results, void *const *globals, void *workspace,
                           kiln_diag *d);

/* ------------------------------------------------------------ lowering */

typedef struct cg_ctx cg_ctx; /* codegen/lower.h */

/* Whether op `opcode` has a lowering (every row of ops.def must). */
bool cg_has_lowering(int opcode);

#define EW(name, arity, kind, facts, attrs, infer, scalar, grad, lower)                                   \
    LLVMValueRef lower(cg_ctx *c, const ir_node *n, LLVMValueRef *x);
#define OP(name, arity, kind, facts, attrs, infer, kernel, grad, lower, ws)                                   \
    kiln_status lower(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in);
#include "ir/ops.def"
#undef EW
#undef OP

#endif

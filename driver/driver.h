/*
 * driver.h — the one road from a module to native code.
 *
 * drv_compile (compile.c) reads top to bottom, as QBE's main.c does:
 * verify the module, choose the pipeline (drv_pipeline, the one rule),
 * run the passes with the verifier after each, then hand the module to
 * codegen, which builds the LLVM module, verifies and optimizes it and
 * makes native code in memory (JIT), text (LLVM IR, assembly), or an
 * object linked into a shared object (AOT). The public entry points that
 * compile (api.c: kiln_model_create, kiln_compile_aot, kiln_module_emit)
 * and `kiln dump` call it; the runtime receives the compiled program
 * through a callback and never chooses passes.
 *
 * The driver is the top of the library: it may include ir/, passes/,
 * codegen/ and runtime/; nothing below includes driver/.
 */
#ifndef KILN_DRIVER_DRIVER_H
#define KILN_DRIVER_DRIVER_H

#include "codegen/cg.h"
#include "passes/pass.h"

/* What the module is compiled for; decides the default pipeline. */
typedef enum drv_goal {
    DRV_GOAL_AUTO,  /* train when the module can (a loss, a train block, an optimizer) */
    DRV_GOAL_INFER, /* inference only */
    DRV_GOAL_TRAIN, /* training, or an error when the module cannot train */
    DRV_GOAL_TRAIN_DISTRIBUTED, /* training on several ranks ("train-distributed") */
} drv_goal;

/* What comes out. */
typedef enum drv_target {
    DRV_IR,        /* nothing: the module is left through its pipeline */
    DRV_JIT,       /* native code in memory: drv_out.program */
    DRV_LLVM_TEXT, /* LLVM IR text after optimization: drv_out.text */
    DRV_ASM_TEXT,  /* native assembly: drv_out.text */
    DRV_AOT,       /* files: a shared object (or object, IR, asm) and a header */
} drv_target;

typedef struct drv_opts {
    drv_target target;
    drv_goal goal;
    const char *pipeline;     /* NULL: drv_pipeline's choice; "": no passes */
    const pass_opts *passes;  /* printing and dumping while passes run; NULL: none */
    const char *only_func;    /* JIT, text: just this function (NULL: all) */
    /* JIT: functions funcs[0..n_funcs) (n_funcs <= DRV_MAX_EACH), one
     * program each, compiled concurrently (cg_jit_compile_each) into
     * drv_out.each[]; n_funcs == 0: only_func into drv_out.program. */
    const char *const *funcs;
    int n_funcs;
    const kiln_aot_opts *aot; /* DRV_AOT: outputs, weights, target */
    kiln_gemm gemm;           /* JIT, text: the GEMM backend (cg_options.gemm) */
} drv_opts;

enum { DRV_MAX_EACH = 8 };

typedef struct drv_out {
    cg_program *program; /* DRV_JIT; cg_program_dispose() */
    cg_program *each[DRV_MAX_EACH]; /* DRV_JIT with funcs: program i of funcs[i] */
    char *text;          /* DRV_LLVM_TEXT, DRV_ASM_TEXT; ir_free() */
} drv_out;

/* The pipeline module `m` gets (the one rule): none ("") when it has a
 * @train_step already (it has been through "train"); else "train" for
 * DRV_GOAL_TRAIN (an error when it has no @loss, train block or
 * optimizer) and for DRV_GOAL_AUTO when it can train; else "infer". */
kiln_status drv_pipeline(const kiln_module *m, drv_goal goal, const char **out, kiln_diag *d);

/* Compiles `m` (changed by the passes; it stays the caller's) for
 * o->target. On success *out (may be NULL for DRV_IR and DRV_AOT) holds
 * what was made; on error nothing is returned and nothing leaks. */
kiln_status drv_compile(kiln_module *m, const drv_opts *o, drv_out *out, kiln_diag *d);

#endif

/*
 * emit.c — the target machine, the optimization pipeline, and the textual
 * and object outputs of a module (for the JIT, `kiln dump --emit`, and the
 * AOT compiler).
 */
#include "codegen/lower.h"

#include <errno.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Kiln's GEMM kernels (gemm.c) are emitted blocked, vectorized and
 * unrolled: O3 has little to add there but compile time. What they need:
 * SSA form, the address arithmetic simplified and hoisted out of the
 * k-loops, the branches of the edge tiles folded. Measured on the seed
 * step (loaded Zen 5): O3 ~320 ms CPU for the kernels, this ~135, with the
 * same GFLOP/s (bench/gemm.sh); without instcombine the native code takes
 * longer than the instcombines save. The native-code level (Less, Default,
 * Aggressive) made no difference: Default. */
#define KERNEL_PIPELINE "function(sroa,early-cse,instcombine,simplifycfg,loop-mssa(licm),instcombine)"

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
static bool g_init_ok;

static void init_native(void) {
    g_init_ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter() &&
                !LLVMInitializeNativeAsmParser();
}

kiln_status cg_llvm_error(kiln_diag *d, const char *what, LLVMErrorRef err) {
    char *msg = LLVMGetErrorMessage(err);
    kiln_status st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(), "codegen: %s: %s", what,
                              msg ? msg : "unknown LLVM error");
    LLVMDisposeErrorMessage(msg);
    return st;
}

int cg_module_size(LLVMModuleRef mod) {
    int n = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
            for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i)) n++;
    return n;
}

kiln_status cg_verify_llvm(LLVMModuleRef mod, const char *what, kiln_diag *d) {
    char *msg = NULL;
    LLVMBool bad = LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg);
    kiln_status st = KILN_OK;
    if (bad) {
        size_t len = msg ? strlen(msg) : 0;
        while (len && msg[len - 1] == '\n') len--;
        st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(), "%s is invalid: %.*s", what,
                      (int)(len < 2000 ? len : 2000), msg ? msg : "");
    }
    LLVMDisposeMessage(msg); /* allocated even on success */
    return st;
}

/* Turns "+avx512f,+avx2,..." into "-avx512f,+avx2,...": the host's AVX-512
 * is not used. The code is written for 256-bit vectors (the performance
 * targets are for AVX2 machines, and AVX-512 lowers the clock of some
 * parts); with AVX-512 enabled LLVM also vectorizes short strided loops with
 * gathers and scatters, which are slower than the scalar code. */
static void avx2_only(char *features) {
    for (char *p = features; *p;) {
        char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 7 && p[0] == '+' && (!strncmp(p + 1, "avx512", 6) || !strncmp(p + 1, "amx", 3)))
            p[0] = '-';
        p += len;
        if (*p == ',') p++;
    }
}

kiln_status cg_target_strings(const cg_options *o, char **triple, char **cpu, char **features,
                              kiln_diag *d) {
    cg_options defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!o) o = &defaults;
    *triple = *cpu = *features = NULL;
    pthread_once(&g_init_once, init_native);
    if (!g_init_ok)
        return ir_error(d, KILN_ERR_BACKEND, ir_loc_none(),
                        "codegen: LLVM has no native target for this machine");
    *triple = LLVMGetDefaultTargetTriple();
    *cpu = o->cpu ? LLVMCreateMessage(o->cpu) : LLVMGetHostCPUName();
    *features = o->features ? LLVMCreateMessage(o->features) : LLVMGetHostCPUFeatures();
    if (!o->features && *features) avx2_only(*features);
    if (!*triple || !*cpu || !*features) {
        LLVMDisposeMessage(*triple);
        LLVMDisposeMessage(*cpu);
        LLVMDisposeMessage(*features);
        *triple = *cpu = *features = NULL;
        return ir_oom(d);
    }
    return KILN_OK;
}

static kiln_status target_machine(const cg_options *o, LLVMCodeGenOptLevel level,
                                  LLVMTargetMachineRef *out, kiln_diag *d) {
    *out = NULL;
    char *triple, *cpu, *features;
    kiln_status st = cg_target_strings(o, &triple, &cpu, &features, d);
    if (st) return st;
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(), "codegen: target %s: %s", triple,
                      err ? err : "unknown");
        LLVMDisposeMessage(err);
    } else {
        /* Always PIC: the AOT object needs it, and JIT-ed calls to OpenBLAS
         * then go through stubs wherever the library was mapped. (So one
         * object serves both, and the compile cache keys neither.) */
        *out = LLVMCreateTargetMachine(target, triple, cpu, features, level, LLVMRelocPIC,
                                       LLVMCodeModelDefault);
        if (!*out)
            st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(),
                          "codegen: cannot create a target machine for cpu '%s'",
                          o && o->cpu ? o->cpu : "host");
    }
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    LLVMDisposeMessage(triple);
    return st;
}

kiln_status cg_target_machine(const cg_options *o, LLVMTargetMachineRef *out, kiln_diag *d) {
    return target_machine(o, LLVMCodeGenLevelDefault, out, d);
}

/* Runs `pipeline` on mod (NULL: the default<O3> of o->opt_level, with the
 * vectorizers and unrolling on). */
static kiln_status run_passes(LLVMModuleRef mod, const cg_options *o, LLVMTargetMachineRef tm,
                              const char *pipeline, kiln_diag *d) {
    char deflt[32];
    int level = o->opt_level >= 1 && o->opt_level <= 3 ? o->opt_level : 3;
    snprintf(deflt, sizeof deflt, "default<O%d>", level);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    if (!pipeline) {
        LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
        LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
        LLVMPassBuilderOptionsSetLoopInterleaving(po, 1);
        LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
    }
    LLVMErrorRef err = LLVMRunPasses(mod, pipeline ? pipeline : deflt, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (err)
        return cg_llvm_error(d, pipeline ? "optimizing the kernels failed" : "optimization failed",
                             err);
    return KILN_OK;
}

static kiln_status emit_with(LLVMTargetMachineRef tm, LLVMModuleRef mod, LLVMCodeGenFileType kind,
                             LLVMMemoryBufferRef *out, kiln_diag *d) {
    char *err = NULL;
    if (!LLVMTargetMachineEmitToMemoryBuffer(tm, mod, kind, &err, out)) return KILN_OK;
    kiln_status st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(), "codegen: emitting %s failed: %s",
                              kind == LLVMObjectFile ? "an object" : "assembly",
                              err ? err : "unknown");
    LLVMDisposeMessage(err);
    *out = NULL;
    return st;
}

static kiln_status emit_buffer(LLVMModuleRef mod, const cg_options *o, LLVMCodeGenFileType kind,
                               LLVMMemoryBufferRef *out, kiln_diag *d) {
    LLVMTargetMachineRef tm;
    kiln_status st = cg_target_machine(o, &tm, d);
    if (st) return st;
    st = emit_with(tm, mod, kind, out, d);
    LLVMDisposeTargetMachine(tm);
    return st;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Optimization and (out != NULL) native code with one target machine: tm,
 * or one of its own. Each makes its own subtargets (a kernel module needs
 * two: the panels have the host's features), at 1-3 ms apiece, and keeps
 * them for its next modules. */
static kiln_status compile_with(LLVMModuleRef mod, const cg_options *o, LLVMTargetMachineRef tm_in,
                                const char *pipeline, LLVMMemoryBufferRef *out,
                                double *optimize_ms, kiln_diag *d) {
    cg_options defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!o) o = &defaults;
    if (!out) {
        if (o->no_opt) return KILN_OK;
    } else {
        *out = NULL;
    }
    double t0 = now_ms();
    LLVMTargetMachineRef tm = tm_in;
    kiln_status st = tm ? KILN_OK : cg_target_machine(o, &tm, d);
    if (st) return st;
    if (!o->no_opt) st = run_passes(mod, o, tm, pipeline, d);
    if (optimize_ms) *optimize_ms = now_ms() - t0;
    if (!st && out) st = emit_with(tm, mod, LLVMObjectFile, out, d);
    if (!tm_in) LLVMDisposeTargetMachine(tm);
    return st;
}

kiln_status cg_optimize_module(LLVMModuleRef mod, const cg_options *o, kiln_diag *d) {
    return compile_with(mod, o, NULL, NULL, NULL, NULL, d);
}

kiln_status cg_compile_module(LLVMModuleRef mod, const cg_options *o, LLVMMemoryBufferRef *out,
                              double *optimize_ms, kiln_diag *d) {
    return compile_with(mod, o, NULL, NULL, out, optimize_ms, d);
}

kiln_status cg_compile_kernels(LLVMModuleRef mod, const cg_options *o, LLVMTargetMachineRef tm,
                               LLVMMemoryBufferRef *out, kiln_diag *d) {
    return compile_with(mod, o, tm, KERNEL_PIPELINE, out, NULL, d);
}

kiln_status cg_emit_object_buffer(LLVMModuleRef mod, const cg_options *o, LLVMMemoryBufferRef *out,
                                  kiln_diag *d) {
    return emit_buffer(mod, o, LLVMObjectFile, out, d);
}

kiln_status cg_emit_object(LLVMModuleRef mod, const cg_options *o, const char *path, kiln_diag *d) {
    LLVMMemoryBufferRef buf;
    kiln_status st = emit_buffer(mod, o, LLVMObjectFile, &buf, d);
    if (st) return st;
    FILE *f = fopen(path, "wb");
    if (!f) {
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    } else {
        size_t n = LLVMGetBufferSize(buf);
        size_t w = fwrite(LLVMGetBufferStart(buf), 1, n, f);
        if (fclose(f) != 0 || w != n)
            st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: write failed", path);
    }
    LLVMDisposeMemoryBuffer(buf);
    return st;
}

kiln_status cg_emit_llvm_text(LLVMModuleRef mod, ir_sb *out, kiln_diag *d) {
    char *s = LLVMPrintModuleToString(mod);
    ir_sb_puts(out, s ? s : "");
    LLVMDisposeMessage(s);
    return out->oom ? ir_oom(d) : KILN_OK;
}

kiln_status cg_emit_asm_text(LLVMModuleRef mod, const cg_options *o, ir_sb *out, kiln_diag *d) {
    LLVMMemoryBufferRef buf;
    kiln_status st = emit_buffer(mod, o, LLVMAssemblyFile, &buf, d);
    if (st) return st;
    ir_sb_putn(out, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf));
    LLVMDisposeMemoryBuffer(buf);
    return out->oom ? ir_oom(d) : KILN_OK;
}

kiln_status cg_dump(kiln_module *m, const char *func, cg_emit_kind kind, const cg_options *o,
                    ir_sb *out, kiln_diag *d) {
    cg_options opts;
    memset(&opts, 0, sizeof opts);
    if (o) opts = *o;
    opts.only_func = func;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod;
    kiln_status st = cg_build_module(m, &opts, ctx, &mod, NULL, d);
    if (!st) {
        st = cg_optimize_module(mod, &opts, d);
        if (!st)
            st = kind == CG_EMIT_ASM ? cg_emit_asm_text(mod, &opts, out, d)
                                     : cg_emit_llvm_text(mod, out, d);
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    return st;
}

kiln_status cg_compile_object(kiln_module *m, const cg_options *o, const char *path,
                              cg_module_info **info, kiln_diag *d) {
    cg_options opts;
    memset(&opts, 0, sizeof opts);
    if (o) opts = *o;
    opts.pic = true;
    if (info) *info = NULL;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod;
    cg_module_info *mi = NULL;
    kiln_status st = cg_build_module(m, &opts, ctx, &mod, &mi, d);
    if (!st) {
        st = cg_optimize_module(mod, &opts, d);
        if (!st) st = cg_emit_object(mod, &opts, path, d);
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    if (st || !info)
        cg_module_info_dispose(mi);
    else
        *info = mi;
    return st;
}

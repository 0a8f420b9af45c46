/*
 * jit.c — compiles a module in memory with ORC LLJIT and hands out entry
 * points.
 *
 * cblas_sgemm / cblas_sgemv are defined in the JIT as absolute symbols with
 * the addresses this library was linked against: the reference keeps
 * libopenblas in the link even under --as-needed, and the JIT finds it
 * whatever the host binary's own symbol table holds. Everything else
 * (memcpy, memset, ...) resolves through a search generator over the
 * process.
 */
#include "codegen/lower.h"

#include <cblas.h>
#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>
#include <llvm-c/TargetMachine.h>
#include <string.h>
#include <time.h>

struct cg_program {
    LLVMOrcLLJITRef jit;
    cg_module_info *info;
    cg_entry_fn *entries;
    double compile_ms;
    double phase_ms[3]; /* build, optimize, native code */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static kiln_status define_blas(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd, kiln_diag *d) {
    static const struct {
        const char *name;
        void (*addr)(void);
    } syms[] = {
        {"cblas_sgemm", (void (*)(void))cblas_sgemm},
        {"cblas_sgemv", (void (*)(void))cblas_sgemv},
    };
    LLVMJITCSymbolMapPair pairs[KILN_ARRAY_LEN(syms)];
    for (size_t i = 0; i < KILN_ARRAY_LEN(syms); i++) {
        pairs[i].Name = LLVMOrcLLJITMangleAndIntern(jit, syms[i].name);
        pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)syms[i].addr;
        pairs[i].Sym.Flags.GenericFlags =
            LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        pairs[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, KILN_ARRAY_LEN(syms));
    LLVMErrorRef err = LLVMOrcJITDylibDefine(jd, mu);
    if (err) {
        LLVMOrcDisposeMaterializationUnit(mu);
        return cg_llvm_error(d, "defining the BLAS symbols", err);
    }
    return KILN_OK;
}

/* For profiling (o->perf_jit): an RTDyld linking layer that tells `perf`
 * about the generated functions (a jitdump for `perf inject --jit`). */
static LLVMOrcObjectLayerRef perf_layer(void *ctx, LLVMOrcExecutionSessionRef es,
                                        const char *triple) {
    (void)ctx;
    (void)triple;
    LLVMOrcObjectLayerRef layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
    LLVMJITEventListenerRef perf = LLVMCreatePerfJITEventListener();
    if (perf) LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, perf);
    return layer;
}

void cg_program_dispose(cg_program *p) {
    if (!p) return;
    if (p->jit) {
        LLVMErrorRef err = LLVMOrcDisposeLLJIT(p->jit);
        if (err) LLVMConsumeError(err);
    }
    cg_module_info_dispose(p->info);
    ir_free(p->entries);
    ir_free(p);
}

kiln_status cg_jit_compile(kiln_module *m, const cg_options *o, cg_program **out, kiln_diag *d) {
    cg_options opts;
    memset(&opts, 0, sizeof opts);
    if (o) opts = *o;
    *out = NULL;
    double t0 = now_ms();
    cg_program *p = ir_calloc(1, sizeof *p);
    if (!p) return ir_oom(d);
    LLVMOrcThreadSafeContextRef tsctx = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsctx);
    LLVMModuleRef mod = NULL;
    kiln_status st = cg_build_module(m, &opts, ctx, &mod, &p->info, d);
    double t1 = now_ms();
    if (!st) st = cg_optimize_module(mod, &opts, d);
    double t2 = now_ms();
    LLVMTargetMachineRef tm = NULL;
    if (!st) st = cg_target_machine(&opts, &tm, d);
    if (!st) {
        /* The builder takes the machine builder, which takes the machine. */
        LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
        LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
            jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
        if (opts.perf_jit) LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(jb, perf_layer, NULL);
        LLVMErrorRef err = LLVMOrcCreateLLJIT(&p->jit, jb);
        if (err) {
            p->jit = NULL;
            st = cg_llvm_error(d, "creating the JIT", err);
        }
    }
    LLVMOrcJITDylibRef jd = NULL;
    if (!st) {
        jd = LLVMOrcLLJITGetMainJITDylib(p->jit);
        st = define_blas(p->jit, jd, d);
    }
    if (!st) {
        LLVMOrcDefinitionGeneratorRef gen = NULL;
        LLVMErrorRef err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
            &gen, LLVMOrcLLJITGetGlobalPrefix(p->jit), NULL, NULL);
        if (err)
            st = cg_llvm_error(d, "searching the process for symbols", err);
        else
            LLVMOrcJITDylibAddGenerator(jd, gen);
    }
    if (!st) {
        /* Consumed, even on failure. */
        LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsctx);
        mod = NULL;
        LLVMErrorRef err = LLVMOrcLLJITAddLLVMIRModule(p->jit, jd, tsm);
        if (err) st = cg_llvm_error(d, "adding the module to the JIT", err);
    }
    if (mod) LLVMDisposeModule(mod);
    LLVMOrcDisposeThreadSafeContext(tsctx);
    if (!st) {
        p->entries = ir_calloc((size_t)p->info->n_funcs + 1, sizeof *p->entries);
        if (!p->entries) st = ir_oom(d);
    }
    /* Looking up the entry points materializes (compiles) the module. */
    for (int i = 0; !st && i < p->info->n_funcs; i++) {
        LLVMOrcExecutorAddress addr = 0;
        LLVMErrorRef err = LLVMOrcLLJITLookup(p->jit, &addr, p->info->funcs[i].symbol);
        if (err)
            st = cg_llvm_error(d, "compiling", err);
        else
            p->entries[i] = (cg_entry_fn)(uintptr_t)addr;
    }
    if (st) {
        cg_program_dispose(p);
        return st;
    }
    double t3 = now_ms();
    p->compile_ms = t3 - t0;
    p->phase_ms[0] = t1 - t0;
    p->phase_ms[1] = t2 - t1;
    p->phase_ms[2] = t3 - t2;
    *out = p;
    return KILN_OK;
}

static int func_index(const cg_program *p, const char *name) {
    for (int i = 0; i < p->info->n_funcs; i++)
        if (strcmp(p->info->funcs[i].name, name) == 0) return i;
    return -1;
}

const cg_func_info *cg_program_func(const cg_program *p, const char *name) {
    int i = func_index(p, name);
    return i < 0 ? NULL : &p->info->funcs[i];
}

cg_entry_fn cg_program_entry(const cg_program *p, const char *name) {
    int i = func_index(p, name);
    return i < 0 ? NULL : p->entries[i];
}

int64_t cg_program_workspace_bytes(const cg_program *p, const char *name, int64_t batch) {
    const cg_func_info *fi = cg_program_func(p, name);
    return fi ? cg_workspace_bytes(fi, batch) : -1;
}

double cg_program_compile_ms(const cg_program *p) {
    return p->compile_ms;
}

void cg_program_phase_ms(const cg_program *p, double *build, double *optimize, double *native) {
    *build = p->phase_ms[0];
    *optimize = p->phase_ms[1];
    *native = p->phase_ms[2];
}

kiln_status cg_program_run(const cg_program *p, const char *name, int64_t batch, void *const *args,
                           void *const *results, void *const *globals, void *workspace,
                           kiln_diag *d) {
    int i = func_index(p, name);
    if (i < 0) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no function named '%s'", name);
    const cg_func_info *fi = &p->info->funcs[i];
    if (batch < 0 || batch > INT32_MAX) /* refused before a workspace is sized */
        return cg_func_error(fi, NULL, batch, KILN_ERR_INVALID, d);
    void *ws = workspace;
    if (!ws) {
        ws = ir_aligned_alloc((size_t)cg_workspace_bytes(fi, batch));
        if (!ws) return ir_oom(d);
    }
    int32_t rc = p->entries[i](batch, args, results, globals, ws);
    kiln_status st = rc ? cg_func_error(fi, ws, batch, rc, d) : KILN_OK;
    if (ws != workspace) ir_aligned_free(ws);
    return st;
}

/*
 * compile.c — drv_compile: a module to native code, top to bottom.
 *
 *   verify → pipeline (drv_pipeline) → passes, verifier between
 *          → plan-memory (always: codegen places no byte itself)
 *          → codegen: LLVM module → LLVM verifier → O3
 *          → JIT | LLVM IR / assembly text | object → cc → .so + .h
 */
#include <string.h>

#include "codegen/aot.h"
#include "codegen/cache.h"
#include "driver/driver.h"
#include "runtime/checkpoint.h"
#include "runtime/runtime.h"

/* The default C prefix: "mnist" from "mnist.h" or "libmnist.so". */
static char *default_prefix(const kiln_aot_opts *o) {
    const char *path = o->header ? o->header : o->output;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!o->header && strncmp(base, "lib", 3) == 0 && base[3]) base += 3;
    size_t n = strcspn(base, ".");
    char *p = ir_malloc(n + 2);
    if (!p) return NULL;
    size_t k = 0;
    if (n && base[0] >= '0' && base[0] <= '9') p[k++] = 'm';
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        p[k++] = ok ? c : '_';
    }
    p[k] = 0;
    return p;
}

/* Ahead of time: the weights to embed (initialized as a model's are, then
 * the checkpoint o->load), then codegen writes the object, links the
 * shared object and writes the header. */
static kiln_status compile_aot(kiln_module *m, const kiln_aot_opts *o, kiln_diag *d) {
    char *prefix = o->prefix ? ir_strdup(o->prefix) : default_prefix(o);
    if (!prefix) return ir_oom(d);
    void **globals = NULL;
    kiln_status st = rt_globals_create(m, rt_seed(m, o->seed), &globals, d);
    /* A weights-only file embeds its parameters; a --train library then
     * starts a fresh optimizer. */
    if (!st && o->load)
        st = rt_ckpt_load(o->load, m, globals, RT_CKPT_STRICT, RT_CKPT_STATE_OPTIONAL, NULL, d);
    if (!st) {
        cg_aot_options co;
        memset(&co, 0, sizeof co);
        co.output = o->output;
        co.header = o->header;
        co.prefix = prefix;
        co.train = o->train != 0;
        co.embed = !o->no_embed;
        co.emit = (cg_aot_emit)o->emit;
        co.cpu = o->cpu;
        co.cc = o->cc;
        co.gemm = o->gemm;
        co.format_version = RT_CKPT_FORMAT_VERSION;
        co.structure_hash = rt_ckpt_structure_hash(m);
        cg_cache_status cache = CG_CACHE_OFF;
        co.cache = &cache;
        st = cg_aot_compile(m, globals, &co, d);
        if (o->cache) *o->cache = cg_cache_status_name(cache);
    }
    rt_globals_free(m, globals);
    ir_free(prefix);
    return st;
}

static kiln_status compile_text(kiln_module *m, const cg_options *co, cg_emit_kind kind, char **out,
                                kiln_diag *d) {
    ir_sb sb;
    ir_sb_init(&sb);
    kiln_status st = cg_dump(m, co->only_func, kind, co, &sb, d);
    if (st) {
        ir_sb_free(&sb);
        return st;
    }
    *out = ir_sb_take(&sb);
    return *out ? KILN_OK : ir_oom(d);
}

kiln_status drv_compile(kiln_module *m, const drv_opts *o, drv_out *out, kiln_diag *d) {
    drv_out none;
    if (!out) out = &none;
    memset(out, 0, sizeof *out);
    /* The module as given: errors name the user's model, not a pass. */
    kiln_status st = ir_verify_module(m, d);
    /* The pipeline, chosen in one place. */
    const char *pipeline = o->pipeline;
    if (!st && !pipeline) st = drv_pipeline(m, o->goal, &pipeline, d);
    /* The passes, with the verifier after each. */
    if (!st && *pipeline) st = pass_run_pipeline(m, pipeline, o->passes, d);
    if (st || o->target == DRV_IR) return st;
    /* Every byte the code uses is placed by plan-memory (codegen places
     * nothing), whatever the pipeline was: "" or one without it. Functions
     * already planned keep their plan (the runtime may be running them). */
    for (int i = 0; i < m->n_funcs && !st; i++) {
        kiln_func *f = m->funcs[i];
        if (o->only_func && strcmp(f->name, o->only_func) != 0) continue;
        if (!f->planned || f->mem_err < 0) st = pass_plan_memory_func(f, d);
    }
    if (st) return st;
    /* Native code: codegen builds the LLVM module, verifies it, runs O3,
     * then hands it to ORC's JIT, prints it, or writes the object that
     * `cc` links into a shared object. */
    cg_options co;
    memset(&co, 0, sizeof co);
    co.only_func = o->only_func;
    co.gemm = o->gemm;
    switch (o->target) {
    case DRV_JIT:
        if (o->n_funcs > DRV_MAX_EACH)
            return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "at most %d functions at once",
                            DRV_MAX_EACH);
        if (o->n_funcs > 0) return cg_jit_compile_each(m, o->funcs, o->n_funcs, &co, out->each, d);
        return cg_jit_compile(m, &co, &out->program, d);
    case DRV_LLVM_TEXT:
        return compile_text(m, &co, CG_EMIT_LLVM, &out->text, d);
    case DRV_ASM_TEXT:
        return compile_text(m, &co, CG_EMIT_ASM, &out->text, d);
    case DRV_AOT:
        return compile_aot(m, o->aot, d);
    case DRV_IR:
        break;
    }
    return KILN_OK;
}

/*
 * api.c — the public entry points that compile, each a thin caller of
 * drv_compile: kiln_model_create (passes now, JIT per function when the
 * runtime first needs it), kiln_compile_aot and kiln_module_emit.
 */
#include <string.h>

#include "driver/driver.h"
#include "runtime/dist.h"
#include "runtime/model.h"

/* The runtime's compile callback: functions of a module that is through
 * its pipeline, to native code in memory, one program each (several at
 * once on threads of their own). */
static kiln_status jit_func(void *ctx, kiln_module *m, const char *const *funcs, int n,
                            cg_program **out, kiln_diag *d) {
    drv_opts o = {.target = DRV_JIT, .pipeline = "", .only_func = funcs[0]};
    o.gemm = *(const kiln_gemm *)ctx;
    if (n > 1) {
        o.funcs = funcs;
        o.n_funcs = n;
    }
    drv_out r;
    kiln_status st = drv_compile(m, &o, &r, d);
    if (n > 1)
        for (int i = 0; i < n; i++) out[i] = i < DRV_MAX_EACH ? r.each[i] : NULL;
    else
        out[0] = r.program;
    return st;
}

kiln_status kiln_model_create(kiln_module *m, const kiln_model_opts *o, kiln_model **out,
                              kiln_diag *d) {
    return kiln_model_create_now(m, o, NULL, out, d);
}

kiln_status kiln_model_create_now(kiln_module *m, const kiln_model_opts *o, const char *now,
                                  kiln_model **out, kiln_diag *d) {
    *out = NULL;
    if (!m) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_create: no module");
    if (o && (unsigned)o->gemm > KILN_GEMM_OPENBLAS) {
        kiln_module_dispose(m);
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_model_create: unknown GEMM backend %d", (int)o->gemm);
    }
    /* After kiln_distributed_init, models train on the ranks. */
    bool dist = rt_dist_active();
    drv_opts passes = {.target = DRV_IR,
                       .goal = dist ? DRV_GOAL_TRAIN_DISTRIBUTED : DRV_GOAL_AUTO};
    kiln_status st = drv_compile(m, &passes, NULL, d);
    if (st) {
        kiln_module_dispose(m);
        return st;
    }
    rt_model_config c;
    memset(&c, 0, sizeof c);
    c.backend = o ? o->backend : KILN_BACKEND_JIT;
    c.threads = o ? o->threads : 0;
    c.seed = rt_seed(m, o ? o->seed : 0);
    c.distributed = dist;
    /* The compile callback's context: the GEMM backend (static storage,
     * as the model compiles functions lazily). */
    static const kiln_gemm gemms[3] = {KILN_GEMM_AUTO, KILN_GEMM_KILN, KILN_GEMM_OPENBLAS};
    c.compile = jit_func;
    c.compile_ctx = (void *)&gemms[o ? o->gemm : KILN_GEMM_AUTO];
    c.compile_now = now;
    return rt_model_create(m, &c, out, d);
}

kiln_status kiln_compile_aot(kiln_module *m, const kiln_aot_opts *o, kiln_diag *d) {
    if (!m || !o || !o->output || !*o->output)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_compile_aot: no module or no output");
    if ((unsigned)o->emit > KILN_AOT_ASM)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_compile_aot: unknown emit kind %d", (int)o->emit);
    if ((unsigned)o->gemm > KILN_GEMM_OPENBLAS)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_compile_aot: unknown GEMM backend %d", (int)o->gemm);
    if (o->no_embed && o->load)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_compile_aot: weights loaded at run time cannot also be embedded "
                        "from a checkpoint");
    drv_opts c = {.target = DRV_AOT, .goal = o->train ? DRV_GOAL_TRAIN : DRV_GOAL_INFER, .aot = o};
    return drv_compile(m, &c, NULL, d);
}

kiln_status kiln_module_emit(kiln_module *m, const char *function, kiln_emit_kind kind, char **out,
                             kiln_diag *d) {
    *out = NULL;
    if (!m) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_emit: no module");
    if (function && !kiln_module_func(m, function))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the module has no function '%s'",
                        function);
    drv_opts c = {.target = kind == KILN_EMIT_ASM ? DRV_ASM_TEXT : DRV_LLVM_TEXT,
                  .pipeline = "",
                  .only_func = function};
    drv_out r;
    kiln_status st = drv_compile(m, &c, &r, d);
    *out = r.text;
    return st;
}

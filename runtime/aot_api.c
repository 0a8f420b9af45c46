/*
 * aot_api.c — kiln_compile_aot: the public entry of ahead-of-time
 * compilation. It sits in the runtime because the weights it embeds come
 * from the runtime's initializers and checkpoints; codegen/aot.c does the
 * compiling.
 */
#include <string.h>

#include "codegen/aot.h"
#include "passes/pass.h"
#include "runtime/checkpoint.h"

/* The default prefix: "mnist" from "mnist.h" or "libmnist.so". */
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

kiln_status kiln_compile_aot(kiln_module *m, const kiln_aot_opts *o, kiln_diag *d) {
    if (!m || !o || !o->output || !*o->output)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_compile_aot: no module or no output");
    if ((unsigned)o->emit > KILN_AOT_ASM)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_compile_aot: unknown emit kind %d", (int)o->emit);
    if (o->no_embed && o->load)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_compile_aot: weights loaded at run time cannot also be embedded "
                        "from a checkpoint");
    char *prefix = o->prefix ? ir_strdup(o->prefix) : default_prefix(o);
    if (!prefix) return ir_oom(d);

    kiln_status st = KILN_OK;
    if (!kiln_module_func(m, "train_step")) {
        if (o->train &&
            !(kiln_module_func(m, "loss") && m->train.present && m->train.opt.kind != IR_OPT_NONE))
            st = ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                          "%s: --train needs a model with a loss and an optimizer (a train block)",
                          m->name);
        if (!st) st = pass_run_pipeline(m, o->train ? "train" : "infer", NULL, d);
    }
    /* The weights: initialized as kiln_model_create does, then the checkpoint. */
    void **globals = NULL;
    if (!st) {
        globals = ir_calloc((size_t)m->n_globals + 1, sizeof *globals);
        if (!globals) st = ir_oom(d);
    }
    uint64_t seed = (uint64_t)(o->seed ? o->seed : m->train.seed ? m->train.seed : 1);
    for (int i = 0; !st && i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        size_t bytes = (size_t)ir_type_numel(&g->type, 1) * ir_dtype_size((ir_dtype)g->type.dtype);
        if (!(globals[i] = ir_aligned_alloc(bytes ? bytes : 4)))
            st = ir_oom(d);
        else
            st = ir_global_init(g, seed, globals[i], d);
    }
    if (!st && o->load) st = rt_ckpt_load(o->load, m, globals, RT_CKPT_STRICT, 0, NULL, d);
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
        co.format_version = RT_CKPT_FORMAT_VERSION;
        co.structure_hash = rt_ckpt_structure_hash(m);
        st = cg_aot_compile(m, globals, &co, d);
    }
    if (globals)
        for (int i = 0; i < m->n_globals; i++) ir_aligned_free(globals[i]);
    ir_free(globals);
    ir_free(prefix);
    return st;
}

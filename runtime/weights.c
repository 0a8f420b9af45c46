/*
 * weights.c — the data of a module's globals (parameters, optimizer
 * state): allocated and initialized in one place, for a model and for the
 * weights an AOT library embeds.
 */
#include <string.h>

#include "runtime/checkpoint.h"
#include "runtime/runtime.h"

size_t rt_global_bytes(const ir_global *g) {
    return (size_t)ir_type_numel(&g->type, 1) * ir_dtype_size(g->type.dtype);
}

uint64_t rt_seed(const kiln_module *m, int64_t requested) {
    return (uint64_t)(requested ? requested : m->train.seed ? m->train.seed : 1);
}

kiln_status rt_globals_create(const kiln_module *m, uint64_t seed, void ***out, kiln_diag *d) {
    *out = NULL;
    void **globals = ir_calloc((size_t)m->n_globals + 1, sizeof *globals);
    if (!globals) return ir_oom(d);
    kiln_status st = KILN_OK;
    for (int i = 0; !st && i < m->n_globals; i++) {
        size_t bytes = rt_global_bytes(m->globals[i]);
        if (!(globals[i] = ir_aligned_alloc(bytes ? bytes : 4)))
            st = ir_oom(d);
        else
            st = ir_global_init(m->globals[i], seed, globals[i], d);
    }
    if (st) {
        rt_globals_free(m, globals);
        return st;
    }
    *out = globals;
    return KILN_OK;
}

void rt_globals_free(const kiln_module *m, void **globals) {
    if (!globals) return;
    for (int i = 0; i < m->n_globals; i++) ir_aligned_free(globals[i]);
    ir_free(globals);
}

/* The values the globals would start from, kept as the module's data. */
kiln_status kiln_module_load_weights(kiln_module *m, const char *ckpt, int64_t seed,
                                     kiln_diag *d) {
    if (!m) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_load_weights: no module");
    void **globals = NULL;
    kiln_status st = rt_globals_create(m, rt_seed(m, seed), &globals, d);
    if (!st && ckpt) st = rt_ckpt_load(ckpt, m, globals, RT_CKPT_STRICT, 0, NULL, d);
    for (int i = 0; !st && i < m->n_globals; i++) {
        ir_global *g = m->globals[i];
        size_t bytes = rt_global_bytes(g);
        void *data = ir_arena_alloc(&m->arena, bytes ? bytes : 4);
        if (!data) {
            st = ir_oom(d);
            break;
        }
        memcpy(data, globals[i], bytes);
        g->data = data;
    }
    rt_globals_free(m, globals);
    return st;
}

/* module.c — modules, globals, functions and nodes: creation and rewiring. */
#include "ir/ir.h"

#include <string.h>

/* ---------------------------------------------------------------- module */

kiln_module *kiln_module_create(const char *name) {
    kiln_module *m = ir_calloc(1, sizeof *m);
    if (!m) return NULL;
    ir_arena_init(&m->arena);
    m->name = ir_arena_strdup(&m->arena, name && *name ? name : "module");
    if (!m->name) {
        ir_free(m);
        return NULL;
    }
    return m;
}

static void func_free_arrays(kiln_func *f) {
    ir_free(f->args);
    ir_free(f->nodes);
    ir_free(f->results);
    ir_free(f->values);
    f->args = f->nodes = f->results = f->values = NULL;
    f->n_args = f->n_nodes = f->n_results = f->n_values = 0;
    f->cap_args = f->cap_nodes = f->cap_results = f->cap_values = 0;
}

void kiln_module_dispose(kiln_module *m) {
    if (!m) return;
    for (int i = 0; i < m->n_funcs; i++) func_free_arrays(m->funcs[i]);
    ir_free(m->funcs);
    ir_free(m->globals);
    ir_free(m->global_index);
    ir_free(m->layers);
    ir_arena_free(&m->arena);
    ir_free(m);
}

const char *kiln_module_name(const kiln_module *m) { return m->name; }

/* Globals are found by name through a hash table (models with many layers
 * would otherwise make adding parameters quadratic). */
static uint32_t name_hash(const char *name) {
    return (uint32_t)ir_hash_bytes(name, strlen(name), 0);
}

ir_global *ir_module_global(const kiln_module *m, const char *name) {
    if (!m->global_index_cap) return NULL;
    uint32_t mask = (uint32_t)m->global_index_cap - 1;
    for (uint32_t i = name_hash(name) & mask;; i = (i + 1) & mask) {
        int32_t k = m->global_index[i];
        if (k < 0) return NULL;
        if (strcmp(m->globals[k]->name, name) == 0) return m->globals[k];
    }
}

static void index_insert(kiln_module *m, int k) {
    uint32_t mask = (uint32_t)m->global_index_cap - 1;
    uint32_t i = name_hash(m->globals[k]->name) & mask;
    while (m->global_index[i] >= 0) i = (i + 1) & mask;
    m->global_index[i] = k;
}

/* Makes room in the index for one more global; false when out of memory. */
static bool index_reserve(kiln_module *m) {
    if (2 * (m->n_globals + 1) < m->global_index_cap) return true;
    int cap = m->global_index_cap ? m->global_index_cap * 2 : 64;
    int32_t *t = ir_malloc(sizeof(int32_t) * (size_t)cap);
    if (!t) return false;
    memset(t, 0xff, sizeof(int32_t) * (size_t)cap);
    ir_free(m->global_index);
    m->global_index = t;
    m->global_index_cap = cap;
    for (int k = 0; k < m->n_globals; k++) index_insert(m, k);
    return true;
}

void ir_module_truncate_globals(kiln_module *m, int n) {
    if (n < 0 || n >= m->n_globals) return;
    m->n_globals = n;
    memset(m->global_index, 0xff, sizeof(int32_t) * (size_t)m->global_index_cap);
    for (int k = 0; k < n; k++) index_insert(m, k);
}

ir_global *ir_module_add_global(kiln_module *m, ir_global_kind kind, const char *name,
                                const ir_type *t, kiln_init init, kiln_diag *d) {
    if (ir_module_global(m, name)) {
        ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "'@%s' is defined twice", name);
        return NULL;
    }
    if (t->dtype == IR_VOID || t->rank < 0 || t->rank > KILN_MAX_RANK) {
        ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "'@%s' has an invalid type", name);
        return NULL;
    }
    int64_t total = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0 || t->dims[i] > IR_MAX_DIM) {
            ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                     "'@%s': parameters need static dimensions in [0, 2^31]", name);
            return NULL;
        }
        if (t->dims[i] && total > IR_MAX_ELEMS / t->dims[i]) {
            ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "'@%s' has more than 2^31 elements", name);
            return NULL;
        }
        total *= t->dims[i];
    }
    if ((unsigned)init.kind >= KILN_INIT_COUNT) {
        ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "'@%s' has an unknown initializer", name);
        return NULL;
    }
    /* What ir_global_init can fill, checked here so that a module that was
     * built (or parsed) can always be initialized. */
    if (t->dtype == IR_I32 && !ir_init_fits_i32(init)) {
        ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                 "'@%s': i32 parameters and state take zeros, ones or constant(n) with an "
                 "integer n in [-2^31, 2^31)",
                 name);
        return NULL;
    }
    if (!IR_GROW(m->globals, m->cap_globals, m->n_globals + 1) || !index_reserve(m)) {
        ir_oom(d);
        return NULL;
    }
    ir_global *g = ir_arena_alloc(&m->arena, sizeof *g);
    ir_node *ref = ir_arena_alloc(&m->arena, sizeof *ref);
    char *nm = ir_arena_strdup(&m->arena, name);
    if (!g || !ref || !nm) {
        ir_oom(d);
        return NULL;
    }
    g->name = nm;
    g->kind = kind;
    g->type = *t;
    g->init = init;
    g->trainable = kind == IR_GLOBAL_PARAM;
    g->index = m->n_globals;
    ref->op = IR_GLOBAL;
    ref->serial = m->next_serial++;
    ref->type = *t;
    ref->name = nm;
    ref->index = g->index;
    ref->mem_offset = ref->mem_ws = ref->mem_wsb = -1;
    g->ref = ref;
    m->globals[m->n_globals++] = g;
    index_insert(m, g->index);
    return g;
}

kiln_status kiln_module_add_param(kiln_module *m, const char *name, kiln_dtype dt, int rank,
                                  const int64_t *dims, kiln_init init, kiln_diag *d) {
    if (!m || !name || rank < 0 || rank > KILN_MAX_RANK || (rank && !dims))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_add_param: bad argument");
    ir_type t = ir_type_make((ir_dtype)dt, rank, dims);
    ir_global *g = ir_module_add_global(m, IR_GLOBAL_PARAM, name, &t, init, d);
    return g ? KILN_OK : (d && d->first ? d->first : KILN_ERR_INVALID);
}

kiln_status kiln_module_set_trainable(kiln_module *m, const char *name, int trainable,
                                      kiln_diag *d) {
    ir_global *g = ir_module_global(m, name);
    if (!g || g->kind != IR_GLOBAL_PARAM)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no parameter named '%s'", name);
    g->trainable = trainable != 0;
    return KILN_OK;
}

int64_t kiln_module_param_count(const kiln_module *m, int64_t *with_data) {
    int64_t n = 0, k = 0;
    for (int i = 0; m && i < m->n_globals; i++)
        if (m->globals[i]->kind == IR_GLOBAL_PARAM) n++, k += m->globals[i]->data != NULL;
    if (with_data) *with_data = k;
    return n;
}

kiln_status ir_module_add_layer(kiln_module *m, const char *name, const char *kind,
                                const ir_type *out, int64_t params, kiln_diag *d) {
    if (!IR_GROW(m->layers, m->cap_layers, m->n_layers + 1)) return ir_oom(d);
    ir_layer *l = &m->layers[m->n_layers];
    l->name = ir_arena_strdup(&m->arena, name);
    l->kind = ir_arena_strdup(&m->arena, kind);
    if (!l->name || !l->kind) return ir_oom(d);
    l->out = *out;
    l->params = params;
    m->n_layers++;
    return KILN_OK;
}

/* -------------------------------------------------------------- functions */

kiln_func *kiln_module_func(const kiln_module *m, const char *name) {
    for (int i = 0; i < m->n_funcs; i++)
        if (strcmp(m->funcs[i]->name, name) == 0) return m->funcs[i];
    return NULL;
}

kiln_func *kiln_func_create(kiln_module *m, const char *name) {
    if (!m || !name || !*name || kiln_module_func(m, name)) return NULL;
    if (!IR_GROW(m->funcs, m->cap_funcs, m->n_funcs + 1)) return NULL;
    kiln_func *f = ir_arena_alloc(&m->arena, sizeof *f);
    if (!f) return NULL;
    f->name = ir_arena_strdup(&m->arena, name);
    if (!f->name) return NULL;
    f->m = m;
    f->mem_err = -1;
    m->funcs[m->n_funcs++] = f;
    return f;
}

void ir_module_remove_func(kiln_module *m, kiln_func *f) {
    for (int i = 0; i < m->n_funcs; i++) {
        if (m->funcs[i] != f) continue;
        func_free_arrays(f);
        memmove(&m->funcs[i], &m->funcs[i + 1], sizeof(kiln_func *) * (size_t)(m->n_funcs - i - 1));
        m->n_funcs--;
        return;
    }
}

const char *kiln_func_error(const kiln_func *f) { return f ? f->error : NULL; }

/* ------------------------------------------------------------------ nodes */

ir_node *ir_node_create(kiln_module *m, int op, int n_in, ir_node *const *in,
                        const ir_attrs *attrs, ir_loc loc, kiln_diag *d) {
    const ir_op_info *info = ir_op(op);
    if (!info || op < IR_FIRST_OP) {
        ir_error(d, KILN_ERR_INVALID, loc, "unknown op %d", op);
        return NULL;
    }
    if (info->arity >= 0 && n_in != info->arity) {
        ir_error(d, KILN_ERR_INVALID, loc, "%s: expects %d operand%s, got %d", info->name,
                 info->arity, info->arity == 1 ? "" : "s", n_in);
        return NULL;
    }
    if (n_in < 0 || n_in > 0xffff) {
        ir_error(d, KILN_ERR_LIMIT, loc, "%s: too many operands", info->name);
        return NULL;
    }
    for (int k = 0; k < n_in; k++)
        if (!in[k]) {
            ir_error(d, KILN_ERR_INVALID, loc, "%s: operand %d is missing", info->name, k + 1);
            return NULL;
        }
    if (attrs && attrs->op != op) {
        ir_error(d, KILN_ERR_INVALID, loc, "%s: given the attributes of %s", info->name,
                 ir_op_name(attrs->op));
        return NULL;
    }
    ir_node *n = ir_arena_alloc(&m->arena, sizeof *n);
    ir_node **ops = n_in ? ir_arena_alloc(&m->arena, sizeof(ir_node *) * (size_t)n_in) : NULL;
    if (!n || (n_in && !ops)) {
        ir_oom(d);
        return NULL;
    }
    if (n_in) memcpy(ops, in, sizeof(ir_node *) * (size_t)n_in);
    n->op = (uint16_t)op;
    n->n_in = (uint16_t)n_in;
    n->in = ops;
    n->serial = m->next_serial++;
    n->loc = loc;
    n->mem_offset = n->mem_ws = n->mem_wsb = -1;
    n->attrs = attrs ? *attrs : ir_attrs_default(op);
    if (op == IR_OP_fused) {
        n->type = ir_type_void(); /* set once the caller attaches the region */
        return n;
    }
    if (ir_node_infer(n, d)) return NULL;
    return n;
}

kiln_status ir_node_infer(ir_node *n, kiln_diag *d) {
    const ir_op_info *info = ir_op(n->op);
    if (!info || !info->infer) return KILN_OK;
    return info->infer(n, d);
}

ir_node *ir_func_add_arg(kiln_func *f, const char *name, const ir_type *t, kiln_diag *d) {
    kiln_module *m = f->m;
    for (int i = 0; i < f->n_args; i++)
        if (strcmp(f->args[i]->name, name) == 0) {
            ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "argument '%%%s' is defined twice", name);
            return NULL;
        }
    if (!IR_GROW(f->args, f->cap_args, f->n_args + 1)) {
        ir_oom(d);
        return NULL;
    }
    ir_node *n = ir_arena_alloc(&m->arena, sizeof *n);
    char *nm = ir_arena_strdup(&m->arena, name);
    if (!n || !nm) {
        ir_oom(d);
        return NULL;
    }
    n->op = IR_ARG;
    n->serial = m->next_serial++;
    n->type = *t;
    n->name = nm;
    n->index = f->n_args;
    n->mem_offset = n->mem_ws = n->mem_wsb = -1;
    f->args[f->n_args++] = n;
    return n;
}

kiln_status ir_func_insert(kiln_func *f, int pos, ir_node *n, kiln_diag *d) {
    if (!IR_GROW(f->nodes, f->cap_nodes, f->n_nodes + 1)) return ir_oom(d);
    if (pos < 0 || pos > f->n_nodes) pos = f->n_nodes;
    memmove(&f->nodes[pos + 1], &f->nodes[pos], sizeof(ir_node *) * (size_t)(f->n_nodes - pos));
    f->nodes[pos] = n;
    f->n_nodes++;
    return KILN_OK;
}

kiln_status ir_func_add_result(kiln_func *f, ir_node *n, kiln_diag *d) {
    if (!IR_GROW(f->results, f->cap_results, f->n_results + 1)) return ir_oom(d);
    f->results[f->n_results++] = n;
    return KILN_OK;
}

kiln_status ir_region_append(kiln_module *m, ir_region *r, ir_node *n, kiln_diag *d) {
    if (r->n == r->cap) {
        int nc = r->cap ? r->cap * 2 : 8;
        ir_node **p = ir_arena_alloc(&m->arena, sizeof(ir_node *) * (size_t)nc);
        if (!p) return ir_oom(d);
        if (r->n) memcpy(p, r->nodes, sizeof(ir_node *) * (size_t)r->n);
        r->nodes = p;
        r->cap = nc;
    }
    r->nodes[r->n++] = n;
    return KILN_OK;
}

static void replace_in(ir_node *n, ir_node *from, ir_node *to) {
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] == from) n->in[k] = to;
    if (n->region) {
        for (int i = 0; i < n->region->n; i++) replace_in(n->region->nodes[i], from, to);
        if (n->region->yield == from) n->region->yield = to;
    }
}

void ir_func_replace_uses(kiln_func *f, ir_node *from, ir_node *to) {
    for (int i = 0; i < f->n_nodes; i++) replace_in(f->nodes[i], from, to);
    for (int i = 0; i < f->n_results; i++)
        if (f->results[i] == from) f->results[i] = to;
}

static void count_uses(const ir_node *n, int *uses, int limit) {
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k]->serial < limit) uses[n->in[k]->serial]++;
    if (n->region) {
        for (int i = 0; i < n->region->n; i++) count_uses(n->region->nodes[i], uses, limit);
        if (n->region->yield && n->region->yield->serial < limit) uses[n->region->yield->serial]++;
    }
}

int *ir_func_use_counts(const kiln_func *f) {
    int limit = f->m->next_serial;
    int *uses = ir_calloc((size_t)limit + 1, sizeof(int));
    if (!uses) return NULL;
    for (int i = 0; i < f->n_nodes; i++) count_uses(f->nodes[i], uses, limit);
    for (int i = 0; i < f->n_results; i++) uses[f->results[i]->serial]++;
    return uses;
}

void ir_func_remove_marked(kiln_func *f) {
    int k = 0;
    for (int i = 0; i < f->n_nodes; i++)
        if (!f->nodes[i]->aux) f->nodes[k++] = f->nodes[i];
    f->n_nodes = k;
}

static void unplan_node(ir_node *n, void *ctx) {
    (void)ctx;
    n->mem_offset = n->mem_ws = n->mem_wsb = -1;
    n->mem_batch = n->mem_inplace = 0;
}

void ir_func_unplan(kiln_func *f) {
    f->planned = false;
    f->mem_err = -1;
    f->mem_chunk = 0;
    ir_func_walk(f, unplan_node, NULL);
}

static void walk(ir_node *n, void (*fn)(ir_node *, void *), void *ctx) {
    fn(n, ctx);
    if (n->region)
        for (int i = 0; i < n->region->n; i++) walk(n->region->nodes[i], fn, ctx);
}

void ir_func_walk(kiln_func *f, void (*fn)(ir_node *, void *), void *ctx) {
    for (int i = 0; i < f->n_nodes; i++) walk(f->nodes[i], fn, ctx);
}

/* ------------------------------------------------------------------ clone */

typedef struct clone_ctx {
    kiln_module *m;
    ir_node **map; /* by source serial */
    int map_len;
    kiln_diag *d;
} clone_ctx;

static ir_node *mapped(clone_ctx *c, ir_node *n) {
    if (n->op == IR_GLOBAL) return n;
    if (n->serial < c->map_len && c->map[n->serial]) return c->map[n->serial];
    return n; /* a value from outside the cloned function (never in valid IR) */
}

static ir_node *clone_node(clone_ctx *c, ir_node *src) {
    ir_node *in[16] = {0}, **ops = in;
    if (src->n_in > 16) {
        ops = ir_malloc(sizeof(ir_node *) * src->n_in);
        if (!ops) {
            ir_oom(c->d);
            return NULL;
        }
    }
    for (int k = 0; k < src->n_in; k++) ops[k] = mapped(c, src->in[k]);
    ir_node *n = ir_node_create(c->m, src->op, src->n_in, ops, &src->attrs, src->loc, c->d);
    if (ops != in) ir_free(ops);
    if (!n) return NULL;
    n->type = src->type;
    if (src->region) {
        ir_region *r = ir_arena_alloc(&c->m->arena, sizeof *r);
        if (!r) {
            ir_oom(c->d);
            return NULL;
        }
        n->region = r;
        for (int i = 0; i < src->region->n; i++) {
            ir_node *b = clone_node(c, src->region->nodes[i]);
            if (!b || ir_region_append(c->m, r, b, c->d)) return NULL;
            c->map[src->region->nodes[i]->serial] = b;
        }
        r->yield = src->region->yield ? mapped(c, src->region->yield) : NULL;
    }
    return n;
}

kiln_func *ir_func_clone(kiln_func *src, const char *name, ir_node ***map_out, int *map_len,
                         kiln_diag *d) {
    kiln_module *m = src->m;
    kiln_func *f = kiln_func_create(m, name);
    if (!f) {
        /* kiln_func_create fails on a taken name or out of memory. */
        if (kiln_module_func(m, name))
            ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "cannot create function '@%s'", name);
        else
            ir_oom(d);
        return NULL;
    }
    clone_ctx c = {m, NULL, m->next_serial, d};
    c.map = ir_calloc((size_t)c.map_len + 1, sizeof(ir_node *));
    if (!c.map) goto fail_oom;
    for (int i = 0; i < src->n_args; i++) {
        ir_node *a = ir_func_add_arg(f, src->args[i]->name, &src->args[i]->type, d);
        if (!a) goto fail;
        c.map[src->args[i]->serial] = a;
    }
    for (int i = 0; i < src->n_nodes; i++) {
        ir_node *n = clone_node(&c, src->nodes[i]);
        if (!n || ir_func_insert(f, -1, n, d)) goto fail;
        c.map[src->nodes[i]->serial] = n;
    }
    for (int i = 0; i < src->n_results; i++)
        if (ir_func_add_result(f, mapped(&c, src->results[i]), d)) goto fail;
    if (map_out) {
        *map_out = c.map;
        *map_len = c.map_len;
    } else {
        ir_free(c.map);
    }
    return f;
fail_oom:
    ir_oom(d);
fail:
    ir_free(c.map);
    ir_module_remove_func(m, f);
    return NULL;
}

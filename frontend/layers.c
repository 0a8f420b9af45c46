/*
 * layers.c — the layers of the language, each expanded into primitive ops
 * through the IR builder. Fusing them (matmul + add + relu into one dense
 * node) is the passes' job, so a model written here and one written with
 * primitive ops reach the same fused graph.
 *
 *   dense(x, units, activation=linear, use_bias=true,
 *         kernel_initializer=glorot_uniform, bias_initializer=zeros,
 *         trainable=true)
 *       %0 = matmul(%x, @NAME.kernel)      @NAME.kernel : f32[in, units]
 *       %1 = add(%0, @NAME.bias)           @NAME.bias   : f32[units]
 *       %2 = relu(%1)                      (the activation, if any)
 *   flatten(x)                  reshape to [batch, product of the rest]
 *   relu(x) sigmoid(x) tanh(x) softmax(x, axis=-1) leaky_relu(x, alpha=0.3)
 *   add(a, b)                   elementwise sum, numpy broadcasting
 *
 * Each layer adds its row to the module's layer table (for `summary`).
 */
#include "frontend/build.h"

#include <stdio.h>
#include <string.h>

typedef struct layer_spec layer_spec;

/* Builds the layer's nodes from its bound arguments and tensor operands x[];
 * returns the result node and the number of parameters it created. */
typedef kiln_status (*layer_fn)(fe_build *c, const layer_spec *ls, const fe_expr *call,
                                const fe_expr **v, ir_node **x, const char *name, ir_node **out,
                                int64_t *params);

struct layer_spec {
    const char *name; /* as called */
    const char *kind; /* Keras' class, shown by summary */
    int base;         /* FE_BASE_*: the automatic name */
    int n_tensors;    /* the first n_tensors parameters are tensors */
    kiln_activation act;
    layer_fn build;
    int n_params;
    fe_param params[7];
};

static const char *const g_base_names[FE_N_BASES] = {"dense", "flatten", "activation", "add"};

/* ------------------------------------------------------------ the layers */

static ir_global *add_param(fe_build *c, const char *layer, const char *what, int rank,
                            const int64_t *dims, kiln_init init, bool trainable) {
    char name[FE_MAX_NAME + 16];
    snprintf(name, sizeof name, "%s.%s", layer, what);
    ir_type t = ir_type_make(IR_F32, rank, dims);
    ir_global *g = ir_module_add_global(c->m, IR_GLOBAL_PARAM, name, &t, init, c->d);
    if (g) g->trainable = trainable;
    return g;
}

ir_node *fe_activation(fe_build *c, ir_node *x, kiln_activation act, double alpha) {
    ir_attrs a;
    memset(&a, 0, sizeof a);
    switch (act) {
    case KILN_ACT_RELU:
        return ir_b_un(&c->b, IR_OP_relu, x);
    case KILN_ACT_SIGMOID:
        return ir_b_un(&c->b, IR_OP_sigmoid, x);
    case KILN_ACT_TANH:
        return ir_b_un(&c->b, IR_OP_tanh, x);
    case KILN_ACT_LEAKY_RELU:
        a.f[0] = alpha;
        return ir_b_op(&c->b, IR_OP_leaky_relu, 1, &x, &a);
    case KILN_ACT_SOFTMAX:
        a.i[0] = -1;
        return ir_b_op(&c->b, IR_OP_softmax, 1, &x, &a);
    default:
        return x;
    }
}

static kiln_status dense(fe_build *c, const layer_spec *ls, const fe_expr *call, const fe_expr **v,
                         ir_node **x, const char *name, ir_node **out, int64_t *params) {
    int64_t units;
    kiln_activation act = KILN_ACT_NONE;
    double alpha = 0.3;
    bool use_bias = true, trainable = true;
    kiln_init kinit = {KILN_INIT_GLOROT_UNIFORM, 0, 0}, binit = {KILN_INIT_ZEROS, 0, 0};
    kiln_status st = fe_get_int(c, v[1], "units", 1, IR_MAX_DIM - 1, &units);
    if (!st && v[2]) st = fe_get_activation(c, v[2], &act, &alpha);
    if (!st && v[3]) st = fe_get_bool(c, v[3], "use_bias", &use_bias);
    if (!st && v[4]) st = fe_get_init(c, v[4], "kernel_initializer", &kinit);
    if (!st && v[5]) st = fe_get_init(c, v[5], "bias_initializer", &binit);
    if (!st && v[6]) st = fe_get_bool(c, v[6], "trainable", &trainable);
    if (st) return st;
    /* The kernel is [in, units] with `in` the input's last axis; a rank or
     * dtype that matmul cannot take is left for matmul to report. */
    const ir_type *t = &x[0]->type;
    char ts[IR_TYPE_STR_MAX];
    if (t->rank == 0 || t->dims[t->rank - 1] == KILN_BATCH)
        return fe_err(c, KILN_ERR_SHAPE, call->line, call->col,
                      "dense: the input needs a feature axis, got %s",
                      ir_type_str(t, ts, sizeof ts));
    int64_t in = t->dims[t->rank - 1];
    if (in * units > IR_MAX_ELEMS)
        return fe_err(c, KILN_ERR_LIMIT, call->line, call->col,
                      "dense: the kernel [%lld, %lld] would have more than 2^31 elements",
                      (long long)in, (long long)units);
    int64_t kdims[2] = {in, units};
    ir_global *k = add_param(c, name, "kernel", 2, kdims, kinit, trainable);
    ir_global *b = k && use_bias ? add_param(c, name, "bias", 1, &units, binit, trainable) : NULL;
    if (!k || (use_bias && !b)) return c->d->first ? c->d->first : KILN_ERR_NOMEM;
    ir_node *y = ir_b_matmul(&c->b, x[0], k->ref, false, false);
    if (b) y = ir_b_bin(&c->b, IR_OP_add, y, b->ref);
    if (y) y = fe_activation(c, y, act, alpha);
    if (!y) return fe_builder_failed(c);
    *out = y;
    *params = in * units + (b ? units : 0);
    return KILN_OK;
}

static kiln_status flatten(fe_build *c, const layer_spec *ls, const fe_expr *call,
                           const fe_expr **v, ir_node **x, const char *name, ir_node **out,
                           int64_t *params) {
    const ir_type *t = &x[0]->type;
    char ts[IR_TYPE_STR_MAX];
    if (t->rank == 0 || ir_type_batch_axis(t) > 0)
        return fe_err(c, KILN_ERR_SHAPE, call->line, call->col,
                      "flatten: the input needs a batch axis first, got %s",
                      ir_type_str(t, ts, sizeof ts));
    /* Keras keeps the first (batch) axis and multiplies the others. */
    int64_t dims[2] = {t->dims[0], 1};
    for (int i = 1; i < t->rank; i++) dims[1] *= t->dims[i];
    ir_type to = ir_type_make((ir_dtype)t->dtype, 2, dims);
    *out = ir_b_reshape(&c->b, x[0], &to);
    *params = 0;
    return *out ? KILN_OK : fe_builder_failed(c);
}

static kiln_status activation(fe_build *c, const layer_spec *ls, const fe_expr *call,
                              const fe_expr **v, ir_node **x, const char *name, ir_node **out,
                              int64_t *params) {
    double alpha = 0.3;
    kiln_status st = KILN_OK;
    if (ls->act == KILN_ACT_LEAKY_RELU && v[1])
        st = fe_get_float(c, v[1], "alpha", FE_R_NONNEGATIVE, &alpha);
    if (st) return st;
    if (ls->act == KILN_ACT_SOFTMAX && v[1]) {
        int64_t axis;
        if ((st = fe_get_int(c, v[1], "axis", -KILN_MAX_RANK, KILN_MAX_RANK - 1, &axis))) return st;
        ir_attrs a;
        memset(&a, 0, sizeof a);
        a.i[0] = axis;
        *out = ir_b_op(&c->b, IR_OP_softmax, 1, &x[0], &a);
    } else {
        *out = fe_activation(c, x[0], ls->act, alpha);
    }
    *params = 0;
    return *out ? KILN_OK : fe_builder_failed(c);
}

static kiln_status add(fe_build *c, const layer_spec *ls, const fe_expr *call, const fe_expr **v,
                       ir_node **x, const char *name, ir_node **out, int64_t *params) {
    *out = ir_b_bin(&c->b, IR_OP_add, x[0], x[1]);
    *params = 0;
    return *out ? KILN_OK : fe_builder_failed(c);
}

/* One layer per row reads better than one field per line. */
/* clang-format off */
#define X_PARAM {"x", NULL, true}
static const layer_spec g_layers[] = {
    {"dense", "Dense", FE_BASE_DENSE, 1, KILN_ACT_NONE, dense, 7,
     {X_PARAM, {"units", NULL, true}, {"activation", NULL, false}, {"use_bias", NULL, false},
      {"kernel_initializer", NULL, false}, {"bias_initializer", NULL, false},
      {"trainable", NULL, false}}},
    {"flatten", "Flatten", FE_BASE_FLATTEN, 1, KILN_ACT_NONE, flatten, 1, {X_PARAM}},
    /* Keras' Activation layer: named activation, activation_1, ... */
    {"relu", "Activation", FE_BASE_ACTIVATION, 1, KILN_ACT_RELU, activation, 1, {X_PARAM}},
    {"sigmoid", "Activation", FE_BASE_ACTIVATION, 1, KILN_ACT_SIGMOID, activation, 1, {X_PARAM}},
    {"tanh", "Activation", FE_BASE_ACTIVATION, 1, KILN_ACT_TANH, activation, 1, {X_PARAM}},
    {"softmax", "Activation", FE_BASE_ACTIVATION, 1, KILN_ACT_SOFTMAX, activation, 2,
     {X_PARAM, {"axis", NULL, false}}},
    {"leaky_relu", "Activation", FE_BASE_ACTIVATION, 1, KILN_ACT_LEAKY_RELU, activation, 2,
     {X_PARAM, {"alpha", NULL, false}}},
    {"add", "Add", FE_BASE_ADD, 2, KILN_ACT_NONE, add, 2, {{"a", NULL, true}, {"b", NULL, true}}},
};
/* clang-format on */

/* ------------------------------------------------------------ the driver */

static const layer_spec *find_layer(const char *name) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_layers); i++)
        if (strcmp(g_layers[i].name, name) == 0) return &g_layers[i];
    return NULL;
}

bool fe_is_layer(const char *name) {
    return find_layer(name) != NULL;
}

/* Keras' automatic name: the base, then base_1, base_2, ... skipping names
 * already taken (by the user anywhere in the file, or generated before). */
static const char *auto_name(fe_build *c, int base) {
    char buf[64];
    for (;;) {
        int k = c->auto_next[base]++;
        if (k == 0)
            snprintf(buf, sizeof buf, "%s", g_base_names[base]);
        else
            snprintf(buf, sizeof buf, "%s_%d", g_base_names[base], k);
        if (fe_sym_find(&c->syms, buf)) continue;
        char *name = ir_arena_strdup(&c->arena, buf);
        if (!name) {
            ir_oom(c->d);
            return NULL;
        }
        fe_sym *s = fe_sym_add(c, name); /* reports running out of memory */
        if (!s) return NULL;
        s->kind = FE_SYM_AUTO;
        return name;
    }
}

static kiln_status unknown_layer(fe_build *c, const fe_expr *e) {
    if (fe_is_loss(e->name))
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "'%s' is a loss, not a layer: write 'loss %s(prediction, label)'", e->name,
                      e->name);
    const char *names[KILN_ARRAY_LEN(g_layers)];
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_layers); i++) names[i] = g_layers[i].name;
    char sug[64];
    return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "unknown layer '%s'%s", e->name,
                  fe_did_you_mean(e->name, names, (int)KILN_ARRAY_LEN(g_layers), sug, sizeof sug));
}

kiln_status fe_build_layer(fe_build *c, const fe_expr *e, const char *target, ir_node **out) {
    const layer_spec *ls = find_layer(e->name);
    if (!ls) return unknown_layer(c, e);
    const fe_expr *v[7];
    kiln_status st = fe_bind(c, e, ls->params, ls->n_params, v);
    if (st) return st;
    /* Operands first: inline layers inside are built, and numbered, before
     * this one, in the order the data flows. */
    ir_node *x[2];
    for (int i = 0; i < ls->n_tensors; i++)
        if ((st = fe_build_tensor(c, v[i], &x[i]))) return st;
    const char *name = target ? target : auto_name(c, ls->base);
    if (!name) return KILN_ERR_NOMEM;
    fe_set_loc(c, e->line, e->col);
    int64_t params = 0;
    if ((st = ls->build(c, ls, e, v, x, name, out, &params))) return st;
    return ir_module_add_layer(c->m, name, ls->kind, &(*out)->type, params, c->d);
}

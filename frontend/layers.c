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
 *   relu(x) sigmoid(x) tanh(x) softmax(x, axis=-1) leaky_relu(x, negative_slope=0.2)
 *   add(a, b)                   elementwise sum, numpy broadcasting
 *
 * Each layer adds its row to the module's layer table (for `summary`).
 *
 * Two halves: the expansion from plain values (fe_dense_ir, ...: expand.h),
 * which the C model API calls too, and the calls of the language, which
 * bind and check their arguments, then call the expansion.
 */
#include "frontend/build.h"

#include <stdio.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------ kinds and names */

static const struct {
    const char *base;  /* automatic names: base, base_1, base_2, ... */
    const char *keras; /* the class summary shows */
} g_kinds[FE_N_KINDS] = {
    [FE_DENSE] = {"dense", "Dense"},
    [FE_FLATTEN] = {"flatten", "Flatten"},
    [FE_ACTIVATION] = {"activation", "Activation"},
    [FE_ADD] = {"add", "Add"},
    [FE_CONV2D] = {"conv2d", "Conv2D"},
    [FE_MAX_POOL2D] = {"max_pooling2d", "MaxPooling2D"},
    [FE_AVG_POOL2D] = {"average_pooling2d", "AveragePooling2D"},
    [FE_GLOBAL_AVG_POOL2D] = {"global_average_pooling2d", "GlobalAveragePooling2D"},
    [FE_GLOBAL_MAX_POOL2D] = {"global_max_pooling2d", "GlobalMaxPooling2D"},
    [FE_RESHAPE] = {"reshape", "Reshape"},
    [FE_DROPOUT] = {"dropout", "Dropout"},
    [FE_BATCH_NORM] = {"batch_normalization", "BatchNormalization"},
    [FE_ONNX] = {"onnx", "ONNX"},
};

const char *fe_auto_name(fe_namer *nm, fe_layer_kind kind, char *buf) {
    for (;;) {
        int k = nm->next[kind]++;
        if (k == 0)
            snprintf(buf, FE_AUTO_NAME_MAX, "%s", g_kinds[kind].base);
        else
            snprintf(buf, FE_AUTO_NAME_MAX, "%s_%d", g_kinds[kind].base, k);
        if (!nm->taken || !nm->taken(nm->ctx, buf)) return buf;
    }
}

/* ------------------------------------------- the expansion (plain values) */

kiln_status fe_failed(ir_builder *b, kiln_status st) {
    if (!b->status) b->status = st;
    return st;
}

/* The layer's row of the layer table; then y is its output. */
kiln_status fe_layer_row(ir_builder *b, const char *name, fe_layer_kind kind, ir_node *y,
                             int64_t params, ir_node **out) {
    kiln_status st =
        ir_module_add_layer(b->f->m, name, g_kinds[kind].keras, &y->type, params, b->d);
    if (st) return fe_failed(b, st);
    *out = y;
    return KILN_OK;
}

ir_global *fe_add_param(ir_builder *b, const char *layer, const char *what, int rank,
                            const int64_t *dims, kiln_init init, bool trainable) {
    char name[FE_MAX_NAME + 16];
    snprintf(name, sizeof name, "%s.%s", layer, what);
    ir_type t = ir_type_make(IR_F32, rank, dims);
    ir_global *g = ir_module_add_global(b->f->m, IR_GLOBAL_PARAM, name, &t, init, b->d);
    if (g)
        g->trainable = trainable;
    else
        fe_failed(b, b->d && b->d->first ? b->d->first : KILN_ERR_NOMEM);
    return g;
}

/* The op of an activation on x (KILN_ACT_NONE: x itself), found in the op
 * table by the activation's name; alpha and axis go to the op's attributes
 * of those names, if it has them. NULL on error. */
double fe_act_alpha(kiln_activation act, double alpha) {
    if (!isnan(alpha)) return alpha;
    return act == KILN_ACT_ELU ? 1.0 : FE_LEAKY_RELU_ALPHA;
}

ir_node *fe_activation_op(ir_builder *b, ir_node *x, kiln_activation act, double alpha,
                              int axis) {
    int op = act == KILN_ACT_NONE ? -1 : ir_op_lookup(kiln_activation_name(act));
    if (op < 0) return x;
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_f(&a, "alpha", fe_act_alpha(act, alpha));
    ir_attrs_set_i(&a, "axis", axis);
    return ir_b_op(b, op, 1, &x, &a);
}

fe_dense fe_dense_defaults(int64_t units) {
    fe_dense a;
    memset(&a, 0, sizeof a);
    a.units = units;
    a.act = KILN_ACT_NONE;
    a.alpha = FE_ALPHA_DEFAULT;
    a.use_bias = a.trainable = true;
    a.kernel_init.kind = KILN_INIT_GLOROT_UNIFORM;
    a.bias_init.kind = KILN_INIT_ZEROS;
    return a;
}

kiln_status fe_dense_ir(ir_builder *b, const char *name, ir_node *x, const fe_dense *a,
                        ir_node **out) {
    /* The kernel is [in, units] with `in` the input's last axis; a rank or
     * dtype that matmul cannot take is left for matmul to report. */
    const ir_type *t = &x->type;
    char ts[IR_TYPE_STR_MAX];
    if (t->rank == 0 || t->dims[t->rank - 1] == KILN_BATCH)
        return fe_failed(b, ir_error(b->d, KILN_ERR_SHAPE, b->loc,
                                  "dense: the input needs a feature axis, got %s",
                                  ir_type_str(t, ts, sizeof ts)));
    int64_t in = t->dims[t->rank - 1], units = a->units;
    if (in * units > IR_MAX_ELEMS)
        return fe_failed(b, ir_error(b->d, KILN_ERR_LIMIT, b->loc,
                                  "dense: the kernel [%lld, %lld] would have more than 2^31 "
                                  "elements",
                                  (long long)in, (long long)units));
    int64_t kdims[2] = {in, units};
    ir_global *k = fe_add_param(b, name, "kernel", 2, kdims, a->kernel_init, a->trainable);
    ir_global *bias =
        k && a->use_bias ? fe_add_param(b, name, "bias", 1, &units, a->bias_init, a->trainable) : NULL;
    if (!k || (a->use_bias && !bias)) return b->status;
    ir_node *y = ir_b_matmul(b, x, k->ref, false, false);
    if (bias) y = ir_b_bin(b, IR_OP_add, y, bias->ref);
    if (y) y = fe_activation_op(b, y, a->act, a->alpha, -1);
    if (!y) return b->status;
    return fe_layer_row(b, name, FE_DENSE, y, in * units + (bias ? units : 0), out);
}

kiln_status fe_flatten_ir(ir_builder *b, const char *name, ir_node *x, ir_node **out) {
    const ir_type *t = &x->type;
    char ts[IR_TYPE_STR_MAX];
    if (t->rank == 0 || ir_type_batch_axis(t) > 0)
        return fe_failed(b, ir_error(b->d, KILN_ERR_SHAPE, b->loc,
                                  "flatten: the input needs a batch axis first, got %s",
                                  ir_type_str(t, ts, sizeof ts)));
    /* Keras keeps the first (batch) axis and multiplies the others. */
    int64_t dims[2] = {t->dims[0], 1};
    for (int i = 1; i < t->rank; i++) dims[1] *= t->dims[i];
    ir_type to = ir_type_make((ir_dtype)t->dtype, 2, dims);
    ir_node *y = ir_b_reshape(b, x, &to);
    return y ? fe_layer_row(b, name, FE_FLATTEN, y, 0, out) : b->status;
}

kiln_status fe_activation_ir(ir_builder *b, const char *name, ir_node *x, kiln_activation act,
                             double alpha, int axis, ir_node **out) {
    ir_node *y = fe_activation_op(b, x, act, alpha, axis);
    return y ? fe_layer_row(b, name, FE_ACTIVATION, y, 0, out) : b->status;
}

kiln_status fe_add_ir(ir_builder *b, const char *name, ir_node *a, ir_node *c, ir_node **out) {
    ir_node *y = ir_b_bin(b, IR_OP_add, a, c);
    return y ? fe_layer_row(b, name, FE_ADD, y, 0, out) : b->status;
}

kiln_status fe_dropout_ir(ir_builder *b, const char *name, ir_node *x, double rate,
                          ir_node **out) {
    ir_attrs a = ir_attrs_default(IR_OP_dropout);
    ir_attrs_set_f(&a, "rate", rate);
    ir_attrs_set_i(&a, "node", b->f->m->n_layers);
    ir_node *in[2] = {x, ir_b_const(b, IR_I32, 0, 0, NULL)};
    ir_node *y = in[1] ? ir_b_op(b, IR_OP_dropout, 2, in, &a) : NULL;
    return y ? fe_layer_row(b, name, FE_DROPOUT, y, 0, out) : b->status;
}

kiln_status fe_batch_norm_ir(ir_builder *b, const char *name, ir_node *x, const fe_batch_norm *a,
                             ir_node **out) {
    const ir_type *t = &x->type;
    char ts[IR_TYPE_STR_MAX];
    if (t->rank < 2 || t->dtype != IR_F32 || t->dims[t->rank - 1] == KILN_BATCH)
        return fe_failed(b, ir_error(b->d, KILN_ERR_SHAPE, b->loc,
                                  "batch_normalization '%s': the input needs a channel axis "
                                  "after the batch, got %s",
                                  name, ir_type_str(t, ts, sizeof ts)));
    int64_t c = t->dims[t->rank - 1];
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0}, ones = {KILN_INIT_ONES, 0, 0};
    ir_global *g = a->scale ? fe_add_param(b, name, "gamma", 1, &c, ones, true) : NULL;
    ir_global *be = a->center ? fe_add_param(b, name, "beta", 1, &c, zeros, true) : NULL;
    ir_global *mm = fe_add_param(b, name, "moving_mean", 1, &c, zeros, false);
    ir_global *mv = fe_add_param(b, name, "moving_variance", 1, &c, ones, false);
    if ((a->scale && !g) || (a->center && !be) || !mm || !mv) return b->status;
    ir_node *in[5] = {x, g ? g->ref : ir_b_const(b, IR_F32, 1, 1, &c),
                      be ? be->ref : ir_b_const(b, IR_F32, 0, 1, &c), mm->ref, mv->ref};
    ir_attrs at = ir_attrs_default(IR_OP_batch_norm);
    ir_attrs_set_f(&at, "momentum", a->momentum);
    ir_attrs_set_f(&at, "epsilon", a->epsilon);
    ir_attrs_set_i(&at, "training", 1);
    ir_node *y = in[1] && in[2] ? ir_b_op(b, IR_OP_batch_norm, 5, in, &at) : NULL;
    if (!y) return b->status;
    return fe_layer_row(b, name, FE_BATCH_NORM, y, c * (2 + a->scale + a->center), out);
}

/* ------------------------------------------------- the calls of the language */


/* After an expansion: its message gets the source line. */
kiln_status fe_expanded(fe_build *c, kiln_status st) {
    return st ? fe_builder_failed(c) : KILN_OK;
}

static kiln_status dense(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                         const char *name, ir_node **out) {
    fe_dense a = fe_dense_defaults(0);
    kiln_status st = fe_get_int(c, v[1], "units", 1, IR_MAX_DIM - 1, &a.units);
    if (!st && v[2]) st = fe_get_activation(c, v[2], &a.act, &a.alpha);
    if (!st && v[3]) st = fe_get_bool(c, v[3], "use_bias", &a.use_bias);
    if (!st && v[4]) st = fe_get_init(c, v[4], "kernel_initializer", &a.kernel_init);
    if (!st && v[5]) st = fe_get_init(c, v[5], "bias_initializer", &a.bias_init);
    if (!st && v[6]) st = fe_get_bool(c, v[6], "trainable", &a.trainable);
    return st ? st : fe_expanded(c, fe_dense_ir(&c->b, name, x[0], &a, out));
}

static kiln_status flatten(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                           const char *name, ir_node **out) {
    return fe_expanded(c, fe_flatten_ir(&c->b, name, x[0], out));
}

static kiln_status activation(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                              const char *name, ir_node **out) {
    double alpha = FE_ALPHA_DEFAULT;
    int64_t axis = -1;
    kiln_status st = KILN_OK;
    if ((ls->act == KILN_ACT_LEAKY_RELU || ls->act == KILN_ACT_ELU) && v[1])
        st = fe_get_float(c, v[1], ls->params[1].name, IR_R_NONNEGATIVE, &alpha);
    if (ls->act == KILN_ACT_GELU && v[1]) st = fe_gelu_approximate(c, v[1]);
    if (ls->act == KILN_ACT_SOFTMAX && v[1])
        st = fe_get_int(c, v[1], "axis", -KILN_MAX_RANK, KILN_MAX_RANK - 1, &axis);
    if (st) return st;
    return fe_expanded(c, fe_activation_ir(&c->b, name, x[0], ls->act, alpha, (int)axis, out));
}

static kiln_status add(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                       const char *name, ir_node **out) {
    return fe_expanded(c, fe_add_ir(&c->b, name, x[0], x[1], out));
}

static kiln_status dropout(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                           const char *name, ir_node **out) {
    double rate = 0;
    kiln_status st = fe_get_float(c, v[1], "rate", IR_R_ANY, &rate);
    if (st) return st;
    char ts[IR_TYPE_STR_MAX];
    if (!(rate >= 0 && rate < 1))
        return fe_err(c, KILN_ERR_INVALID, v[1]->line, v[1]->col,
                      "dropout '%s' on %s: 'rate' must be in [0, 1), got %g", name,
                      ir_type_str(&x[0]->type, ts, sizeof ts), rate);
    return fe_expanded(c, fe_dropout_ir(&c->b, name, x[0], rate, out));
}

static kiln_status batch_normalization(fe_build *c, const layer_spec *ls, const fe_expr **v,
                                       ir_node **x, const char *name, ir_node **out) {
    fe_batch_norm a = {0.99, 0.001, true, true};
    int64_t axis = -1;
    kiln_status st = KILN_OK;
    if (v[1]) st = fe_get_int(c, v[1], "axis", -KILN_MAX_RANK, KILN_MAX_RANK - 1, &axis);
    int rank = x[0]->type.rank;
    char ts[IR_TYPE_STR_MAX];
    if (!st && v[1] && axis != -1 && axis != rank - 1)
        return fe_err(c, KILN_ERR_INVALID, v[1]->line, v[1]->col,
                      "batch_normalization '%s': axis %lld %s %s; only the last axis (-1) is "
                      "supported",
                      name, (long long)axis,
                      axis < -rank || axis >= rank ? "does not exist in the input" : "is not the last of",
                      ir_type_str(&x[0]->type, ts, sizeof ts));
    if (!st && v[2]) st = fe_get_float(c, v[2], "momentum", IR_R_UNIT, &a.momentum);
    if (!st && v[3]) st = fe_get_float(c, v[3], "epsilon", IR_R_POSITIVE, &a.epsilon);
    if (!st && v[4]) st = fe_get_bool(c, v[4], "center", &a.center);
    if (!st && v[5]) st = fe_get_bool(c, v[5], "scale", &a.scale);
    return st ? st : fe_expanded(c, fe_batch_norm_ir(&c->b, name, x[0], &a, out));
}

/* One layer per row reads better than one field per line. */
/* clang-format off */
#define X_PARAM {"x", NULL, true}
static const layer_spec g_layers[] = {
    {"dense", FE_DENSE, 1, KILN_ACT_NONE, dense, 7,
     {X_PARAM, {"units", NULL, true}, {"activation", NULL, false}, {"use_bias", NULL, false},
      {"kernel_initializer", NULL, false}, {"bias_initializer", NULL, false},
      {"trainable", NULL, false}}},
    {"flatten", FE_FLATTEN, 1, KILN_ACT_NONE, flatten, 1, {X_PARAM}},
    /* Keras' Activation layer: named activation, activation_1, ... */
    {"relu", FE_ACTIVATION, 1, KILN_ACT_RELU, activation, 1, {X_PARAM}},
    {"sigmoid", FE_ACTIVATION, 1, KILN_ACT_SIGMOID, activation, 1, {X_PARAM}},
    {"tanh", FE_ACTIVATION, 1, KILN_ACT_TANH, activation, 1, {X_PARAM}},
    {"softmax", FE_ACTIVATION, 1, KILN_ACT_SOFTMAX, activation, 2,
     {X_PARAM, {"axis", NULL, false}}},
    {"leaky_relu", FE_ACTIVATION, 1, KILN_ACT_LEAKY_RELU, activation, 2,
     {X_PARAM, {"negative_slope", "alpha", false}}},
    {"elu", FE_ACTIVATION, 1, KILN_ACT_ELU, activation, 2, {X_PARAM, {"alpha", NULL, false}}},
    {"relu6", FE_ACTIVATION, 1, KILN_ACT_RELU6, activation, 1, {X_PARAM}},
    {"gelu", FE_ACTIVATION, 1, KILN_ACT_GELU, activation, 2,
     {X_PARAM, {"approximate", NULL, false}}},
    {"softplus", FE_ACTIVATION, 1, KILN_ACT_SOFTPLUS, activation, 1, {X_PARAM}},
    {"silu", FE_ACTIVATION, 1, KILN_ACT_SILU, activation, 1, {X_PARAM}},
    {"swish", FE_ACTIVATION, 1, KILN_ACT_SILU, activation, 1, {X_PARAM}},
    {"hard_sigmoid", FE_ACTIVATION, 1, KILN_ACT_HARD_SIGMOID, activation, 1, {X_PARAM}},
    {"add", FE_ADD, 2, KILN_ACT_NONE, add, 2, {{"a", NULL, true}, {"b", NULL, true}}},
    FE_CONV_LAYERS
    {"dropout", FE_DROPOUT, 1, KILN_ACT_NONE, dropout, 2, {X_PARAM, {"rate", NULL, true}}},
    {"batch_normalization", FE_BATCH_NORM, 1, KILN_ACT_NONE, batch_normalization, 6,
     {X_PARAM, {"axis", NULL, false}, {"momentum", NULL, false}, {"epsilon", NULL, false},
      {"center", NULL, false}, {"scale", NULL, false}}},
    {"onnx", FE_ONNX, 1, KILN_ACT_NONE, fe_onnx_call, 5,
     {X_PARAM, {"file", NULL, true}, {"output", NULL, false}, {"trainable", NULL, false},
      {"freeze", NULL, false}}},
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

/* Keras' automatic name, kept in the symbol table so that no later name
 * is generated twice. */
static const char *auto_name(fe_build *c, fe_layer_kind kind) {
    char buf[FE_AUTO_NAME_MAX];
    char *name = ir_arena_strdup(&c->arena, fe_auto_name(&c->namer, kind, buf));
    if (!name) {
        ir_oom(c->d);
        return NULL;
    }
    fe_sym *s = fe_sym_add(c, name); /* reports running out of memory */
    if (!s) return NULL;
    s->kind = FE_SYM_AUTO;
    return name;
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
    const fe_expr *v[FE_MAX_LAYER_PARAMS];
    kiln_status st = fe_bind(c, e, ls->params, ls->n_params, v);
    if (st) return st;
    /* Operands first: inline layers inside are built, and numbered, before
     * this one, in the order the data flows. */
    ir_node *x[2];
    for (int i = 0; i < ls->n_tensors; i++)
        if ((st = fe_build_tensor(c, v[i], &x[i]))) return st;
    const char *name = target ? target : auto_name(c, ls->kind);
    if (!name) return KILN_ERR_NOMEM;
    fe_set_loc(c, e->line, e->col);
    return ls->build(c, ls, v, x, name, out);
}

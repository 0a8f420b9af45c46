/*
 * build.h — from the syntax tree to a module: the state the builder shares
 * between build.c (statements, names), args.c (call arguments), layers.c
 * (layers as primitive ops) and train.c (loss, metrics, optimizer).
 * Internal to frontend/.
 */
#ifndef KILN_FRONTEND_BUILD_H
#define KILN_FRONTEND_BUILD_H

#include "frontend/ast.h"
#include "frontend/expand.h"

/* ------------------------------------------------------------------ names */

typedef enum fe_sym_kind {
    FE_SYM_DECLARED, /* a user name whose statement has not run yet */
    FE_SYM_INPUT,
    FE_SYM_LABEL,
    FE_SYM_VALUE, /* NAME = ... */
    FE_SYM_AUTO   /* a generated layer name (not a value) */
} fe_sym_kind;

typedef struct fe_sym {
    const char *name;
    fe_sym_kind kind;
    int line, col; /* where the name is defined */
    ir_node *node; /* input, value: the value in @infer */
    ir_type type;  /* input, label */
} fe_sym;

/* Open addressing over pointers to syms (which live in the builder's
 * arena, so a pointer stays valid while the table grows). */
typedef struct fe_symtab {
    fe_sym **slots;
    size_t cap, n;
} fe_symtab;

/* --------------------------------------------------------------- builder */

typedef struct fe_build {
    const fe_source *src;
    kiln_diag *d;
    const fe_ast *ast;
    ir_arena arena; /* syms and generated names */
    fe_symtab syms;
    fe_namer namer; /* automatic layer names, skipping every name in syms */
    kiln_module *m;
    kiln_func *infer;
    const char *file; /* in the module's arena: node locations point here */
    ir_builder b;     /* appends to @infer, later to @loss */
    /* Statements that may appear once (NULL until seen). */
    const fe_stmt *model, *output, *loss, *train;
    /* The loss, built into @loss once the whole file is read. */
    int loss_op;
    ir_node *loss_pred; /* in @infer */
    const fe_sym *loss_label;
    ir_train_config cfg;
    int acc_line, acc_col; /* where 'accuracy' was asked for */
} fe_build;

/* Builds the module from a parsed file. *out is set only on success. */
kiln_status fe_build_module(const fe_source *src, const fe_ast *ast, kiln_module **out,
                            kiln_diag *d);

kiln_status fe_err(fe_build *c, kiln_status st, int line, int col, const char *fmt, ...)
    KILN_PRINTF(5, 6);
/* After an ir_b_* call returned NULL: the builder's message is in the diag
 * at the builder's location; this adds the source line and gives the status. */
kiln_status fe_builder_failed(fe_build *c);
/* Sets the location stamped on the nodes built from now on. */
void fe_set_loc(fe_build *c, int line, int col);

fe_sym *fe_sym_find(const fe_symtab *t, const char *name);
/* The namer's test (ctx: the fe_build): a name the file defines, or one
 * generated before. */
bool fe_name_taken(void *ctx, const char *name);
/* Adds a sym for `name` (not yet in the table; the string must outlive it). */
fe_sym *fe_sym_add(fe_build *c, const char *name);
/* The value of a tensor expression (a name or a layer call) in @infer. */
kiln_status fe_build_tensor(fe_build *c, const fe_expr *e, ir_node **out);
/* The "unknown name 'x'; did you mean 'y'?" error for a name in use. */
kiln_status fe_unknown_name(fe_build *c, const fe_expr *e);

/* -------------------------------------------------------------- arguments */

typedef struct fe_param {
    const char *name;
    const char *alias; /* a second keyword for the same argument, or NULL */
    bool required;
} fe_param;

/* Matches a call's arguments to params, by position and then by keyword:
 * vals[i] is the expression given for params[i], or NULL. `call` may be a
 * plain name (no arguments). Messages name the call. */
kiln_status fe_bind(fe_build *c, const fe_expr *call, const fe_param *params, int n,
                    const fe_expr **vals);

kiln_status fe_get_int(fe_build *c, const fe_expr *e, const char *what, int64_t lo, int64_t hi,
                       int64_t *out);
kiln_status fe_get_float(fe_build *c, const fe_expr *e, const char *what, ir_range r, double *out);
kiln_status fe_get_bool(fe_build *c, const fe_expr *e, const char *what, bool *out);
/* relu, linear, ..., leaky_relu(negative_slope=0.1), elu(alpha=0.5); *alpha is
 * their alpha, FE_ALPHA_DEFAULT when not given. */
kiln_status fe_get_activation(fe_build *c, const fe_expr *e, kiln_activation *act, double *alpha);
/* The keyword that gave argument v of call (an alias as written), else name. */
const char *fe_arg_key(const fe_expr *call, const fe_expr *v, const char *name);
/* gelu's approximate=: false (the erf form) is all there is. */
kiln_status fe_gelu_approximate(fe_build *c, const fe_expr *e);
/* glorot_uniform, zeros, constant(0.1), normal(mean=0, stddev=0.05), ... */
kiln_status fe_get_init(fe_build *c, const fe_expr *e, const char *what, kiln_init *out);
/* A value as messages quote it: 'relu', 128, 'dense(...)', a list. */
const char *fe_expr_str(const fe_expr *e, char *buf, size_t n);

/* ----------------------------------------------------------------- layers */

/* True if `name` is a layer (dense, flatten, relu, ...). */
bool fe_is_layer(const char *name);
/* Builds the layer call `e` into @infer: its operands, parameters, nodes and
 * its row of the layer table. `target` names it (NULL: an automatic name). */
kiln_status fe_build_layer(fe_build *c, const fe_expr *e, const char *target, ir_node **out);

/* ------------------------------------------------------------------ train */

bool fe_is_loss(const char *name);
/* The 'loss' statement: builds the prediction, checks the label. */
kiln_status fe_loss_stmt(fe_build *c, const fe_stmt *s);
/* The 'train { ... }' block into c->cfg. */
kiln_status fe_train_stmt(fe_build *c, const fe_stmt *s);
/* Writes @loss(inputs..., label) -> (loss[, accuracy]) from @infer. */
kiln_status fe_build_loss_func(fe_build *c);

/* ------------------------------------------------ the layer table rows */
#define FE_MAX_LAYER_PARAMS 12
typedef struct layer_spec layer_spec;
/* Reads the layer's bound arguments v[] into plain values and expands it
 * on its tensor operands x[]. */
typedef kiln_status (*layer_fn)(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                                const char *name, ir_node **out);
struct layer_spec {
    const char *name; /* as called */
    int kind;         /* fe_layer_kind */
    int n_tensors;    /* the first n_tensors parameters are tensors */
    kiln_activation act;
    layer_fn build;
    int n_params;
    fe_param params[FE_MAX_LAYER_PARAMS];
};
/* After an expansion: its message gets the source line. */
kiln_status fe_expanded(fe_build *c, kiln_status st);

/* The calls of layers_conv.c, and their rows of layers.c's table. */
kiln_status fe_conv2d_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                           const char *name, ir_node **out);
kiln_status fe_pool2d_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                           const char *name, ir_node **out);
kiln_status fe_global_pool_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                                const char *name, ir_node **out);
/* onnx(x, "file.onnx", output=, trainable=, freeze=): layers_onnx.c */
kiln_status fe_onnx_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                         const char *name, ir_node **out);
kiln_status fe_reshape_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                            const char *name, ir_node **out);
/* clang-format off */
#define FE_CONV_LAYERS                                                                             \
    {"conv2d", FE_CONV2D, 1, KILN_ACT_NONE, fe_conv2d_call, 11,                                    \
     {{"x", NULL, true}, {"filters", NULL, true}, {"kernel_size", NULL, true},                     \
      {"strides", NULL, false}, {"padding", NULL, false}, {"dilation_rate", NULL, false},          \
      {"activation", NULL, false}, {"use_bias", NULL, false},                                      \
      {"kernel_initializer", NULL, false}, {"bias_initializer", NULL, false},                      \
      {"trainable", NULL, false}}},                                                                \
    {"max_pooling2d", FE_MAX_POOL2D, 1, KILN_ACT_NONE, fe_pool2d_call, 4,                          \
     {{"x", NULL, true}, {"pool_size", NULL, false}, {"strides", NULL, false},                     \
      {"padding", NULL, false}}},                                                                  \
    {"average_pooling2d", FE_AVG_POOL2D, 1, KILN_ACT_NONE, fe_pool2d_call, 4,                      \
     {{"x", NULL, true}, {"pool_size", NULL, false}, {"strides", NULL, false},                     \
      {"padding", NULL, false}}},                                                                  \
    {"global_average_pooling2d", FE_GLOBAL_AVG_POOL2D, 1, KILN_ACT_NONE, fe_global_pool_call, 1,   \
     {{"x", NULL, true}}},                                                                         \
    {"global_max_pooling2d", FE_GLOBAL_MAX_POOL2D, 1, KILN_ACT_NONE, fe_global_pool_call, 1,       \
     {{"x", NULL, true}}},                                                                         \
    {"reshape", FE_RESHAPE, 1, KILN_ACT_NONE, fe_reshape_call, 2,                                  \
     {{"x", NULL, true}, {"target_shape", NULL, true}}},
/* clang-format on */

#endif

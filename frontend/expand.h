/*
 * expand.h — layers, losses and training settings as IR, from plain values.
 *
 * The one expansion both front ends share: the .kiln builder (layers.c and
 * train.c, once they have bound and checked a call's arguments) and the C
 * model API (capi.c: Keras' Sequential and the compile step of graph-style
 * modules). What a dense layer is — its parameters, its nodes, its row of
 * the layer table, its automatic name — and what @loss is, are written here
 * and nowhere else, so a model built either way is the same module.
 *
 * The helpers build through an ir_builder: its function and location say
 * where nodes go and which location they carry. On error they report into
 * the builder's diag at the builder's location, set b->status and return it.
 * Internal to frontend/.
 */
#ifndef KILN_FRONTEND_EXPAND_H
#define KILN_FRONTEND_EXPAND_H

#include "frontend/frontend.h"
#include "ir/settings.h"

/* ------------------------------------------------------------ layer kinds
 * Keras' layer classes, as summary shows them, and the base of their
 * automatic names (Keras counts per class). */
typedef enum fe_layer_kind {
    FE_DENSE,
    FE_FLATTEN,
    FE_ACTIVATION,
    FE_ADD,
    FE_CONV2D,
    FE_MAX_POOL2D,
    FE_AVG_POOL2D,
    FE_GLOBAL_AVG_POOL2D,
    FE_GLOBAL_MAX_POOL2D,
    FE_RESHAPE,
    FE_DROPOUT,
    FE_BATCH_NORM,
    FE_ONNX, /* an imported ONNX graph (layers_onnx.c) */
    FE_N_KINDS
} fe_layer_kind;

/* Keras' automatic names: one counter per kind. `taken` says whether a
 * name is in use (by the user, or generated before); it may be NULL. */
typedef struct fe_namer {
    int next[FE_N_KINDS];
    bool (*taken)(void *ctx, const char *name);
    void *ctx;
} fe_namer;

/* Room for any automatic name ("activation_2147483647"). */
#define FE_AUTO_NAME_MAX 32
/* Writes the next free name of `kind` into buf (FE_AUTO_NAME_MAX bytes):
 * the base, then base_1, base_2, ..., skipping taken names. */
const char *fe_auto_name(fe_namer *nm, fe_layer_kind kind, char *buf);

/* ----------------------------------------------------------------- layers
 * Each builds its nodes on x at b's cursor, adds its parameters to the
 * module and its row to the layer table, and returns its output in *out. */

/* The leaky_relu slope when none is given: Keras 3's leaky_relu activation
 * (negative_slope=0.2; 0.3 is only the default of its LeakyReLU layer). */
#define FE_LEAKY_RELU_ALPHA 0.2
/* "No alpha given" in a layer's fields; fe_act_alpha resolves it. */
#define FE_ALPHA_DEFAULT NAN
/* An activation's alpha: the given one, else Keras 3's default (elu 1.0,
 * leaky_relu FE_LEAKY_RELU_ALPHA, which the others carry unused). */
double fe_act_alpha(kiln_activation act, double alpha);

typedef struct fe_dense {
    int64_t units; /* in [1, 2^31) */
    kiln_activation act;
    double alpha; /* leaky_relu's slope */
    bool use_bias, trainable;
    kiln_init kernel_init, bias_init;
} fe_dense;

/* Keras' Dense(units): linear, with a bias, glorot_uniform kernel, zero
 * bias, trainable. */
fe_dense fe_dense_defaults(int64_t units);

/* Dense layer `name`: parameters name.kernel f32[in, units] (in: x's last
 * axis) and name.bias f32[units]; matmul -> add -> the activation. */
kiln_status fe_dense_ir(ir_builder *b, const char *name, ir_node *x, const fe_dense *a,
                        ir_node **out);
/* Flatten: reshape to [batch, product of the other axes] (x itself when it
 * is a matrix already). */
kiln_status fe_flatten_ir(ir_builder *b, const char *name, ir_node *x, ir_node **out);
/* Activation layer: the activation's op on x (softmax over `axis`). */
kiln_status fe_activation_ir(ir_builder *b, const char *name, ir_node *x, kiln_activation act,
                             double alpha, int axis, ir_node **out);
/* Dropout layer: dropout(x, step) {rate, node = the layer's index}; the
 * step is a placeholder i32 zero until the optimizer pass binds it (and the
 * seed) to the training run. rate in [0, 1), checked by the caller. */
kiln_status fe_dropout_ir(ir_builder *b, const char *name, ir_node *x, double rate,
                          ir_node **out);
/* BatchNormalization over the last axis (axis=-1 only): parameters
 * name.gamma, name.beta (trainable, if scale / center) and
 * name.moving_mean, name.moving_variance (non-trainable), all f32[C]. */
typedef struct fe_batch_norm {
    double momentum, epsilon;
    bool center, scale;
} fe_batch_norm;
kiln_status fe_batch_norm_ir(ir_builder *b, const char *name, ir_node *x, const fe_batch_norm *a,
                             ir_node **out);
/* Add layer: elementwise a + c, numpy broadcasting. */
kiln_status fe_add_ir(ir_builder *b, const char *name, ir_node *a, ir_node *c, ir_node **out);

/* ----------------------------------------------------------------- losses */

/* The IR op of a loss, and its name in the language. */
int fe_loss_op(kiln_loss loss);
const char *fe_loss_name(kiln_loss loss);

/* Writes @loss(inputs of @infer..., label) -> (loss[, accuracy]): a clone
 * of @infer, the label argument, the loss of `pred` (a node of @infer)
 * against the label, and Keras' accuracy when asked for. The loss nodes
 * carry loss_loc, the accuracy nodes acc_loc. Leaves b on @loss. */
kiln_status fe_loss_func_ir(ir_builder *b, kiln_func *infer, ir_node *pred, int loss_op,
                            const char *label, const ir_type *label_type, bool accuracy,
                            ir_loc loss_loc, ir_loc acc_loc);

/* -------------------------------------------------------------- settings */

/* The settings themselves (names, ranges, defaults, checks): ir/settings.h. */

/* ------------------------------------------- shared by the layer files
 * (layers.c, layers_conv.c): on error they set b->status and return it. */
kiln_status fe_failed(ir_builder *b, kiln_status st);
/* The layer's row of the layer table; then y is its output. */
kiln_status fe_layer_row(ir_builder *b, const char *name, fe_layer_kind kind, ir_node *y,
                         int64_t params, ir_node **out);
/* Parameter `layer.what` of the module (NULL on error). */
ir_global *fe_add_param(ir_builder *b, const char *layer, const char *what, int rank,
                        const int64_t *dims, kiln_init init, bool trainable);
/* The op of an activation on x (KILN_ACT_NONE: x itself). */
ir_node *fe_activation_op(ir_builder *b, ir_node *x, kiln_activation act, double alpha, int axis);

/* ------------------------------------------ convolution and pooling (NHWC) */

typedef struct fe_conv2d {
    int64_t filters, kh, kw, sh, sw, dh, dw;
    bool same; /* padding: same (else valid) */
    kiln_activation act;
    double alpha;
    bool use_bias, trainable;
    kiln_init kernel_init, bias_init;
} fe_conv2d;

/* Keras' Conv2D(filters, kernel_size): strides 1, valid, dilation 1,
 * linear, with a bias, glorot_uniform kernel, zero bias. */
fe_conv2d fe_conv2d_defaults(int64_t filters, int64_t kh, int64_t kw);
/* Conv2D `name`: name.kernel f32[kh,kw,in,filters], name.bias f32[filters];
 * one conv2d node carrying the bias and the activation (softmax: after). */
kiln_status fe_conv2d_ir(ir_builder *b, const char *name, ir_node *x, const fe_conv2d *a,
                         ir_node **out);
/* MaxPooling2D / AveragePooling2D (kind FE_MAX_POOL2D / FE_AVG_POOL2D). */
kiln_status fe_pool2d_ir(ir_builder *b, const char *name, fe_layer_kind kind, ir_node *x,
                         const int64_t pool[2], const int64_t strides[2], bool same,
                         ir_node **out);
/* GlobalAveragePooling2D / GlobalMaxPooling2D: the mean / max over rows and
 * columns, [?,h,w,c] -> [?,c]. */
kiln_status fe_global_pool_ir(ir_builder *b, const char *name, fe_layer_kind kind, ir_node *x,
                              ir_node **out);
/* Reshape(target_shape): the batch axis kept, the rest to target (one -1
 * allowed, as Keras). */
kiln_status fe_reshape_ir(ir_builder *b, const char *name, ir_node *x, int rank,
                          const int64_t *target, ir_node **out);

#endif

/*
 * kiln.h — the public C API of Kiln, a deep-learning compiler and runtime.
 *
 * Conventions (the same everywhere in this header):
 *  - Handles are opaque. Every function that returns a new handle names the
 *    function that frees it ("Every invocation should be paired with ...").
 *  - Functions that can fail return a kiln_status (KILN_OK == 0) and take a
 *    kiln_diag* last; the diag collects the messages ("file:line:col: error: ...").
 *    Passing NULL for the diag is allowed: the status still tells.
 *  - Graph builders return a kiln_value; on error the value is invalid
 *    (kiln_value_ok() is false), the function's error is set and later
 *    builders that receive an invalid value return an invalid value too, so a
 *    chain of calls can be checked once at the end.
 *  - The library never calls exit() or abort() on bad input.
 */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0
#define KILN_VERSION_STRING "0.1.0"

/* Returns KILN_VERSION_STRING of the library actually linked. */
KILN_API const char *kiln_version(void);

/* The candidate closest to `word` when it is close enough to be a typo of it
 * (for "did you mean" messages), else NULL. Not allocated. */
KILN_API const char *kiln_suggest(const char *word, const char *const *candidates, int n);

/* ------------------------------------------------------------------ status */

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID = 1,     /* bad argument or malformed input */
    KILN_ERR_SHAPE = 2,       /* shape or dtype mismatch */
    KILN_ERR_PARSE = 3,       /* syntax error in a model file or .kir module */
    KILN_ERR_IO = 4,          /* a file could not be read or written */
    KILN_ERR_NOMEM = 5,       /* an allocation failed */
    KILN_ERR_UNSUPPORTED = 6, /* valid, but not implemented (e.g. no gradient rule) */
    KILN_ERR_BACKEND = 7,     /* LLVM or the system compiler reported an error */
    KILN_ERR_NONFINITE = 8,   /* a NaN or Inf appeared where it must not */
    KILN_ERR_LIMIT = 9,       /* input exceeds a documented limit */
    KILN_ERR_VERSION = 10     /* artefact built by another Kiln version */
} kiln_status;

/* A short constant name for a status ("shape mismatch", ...). Not freed. */
KILN_API const char *kiln_status_string(kiln_status s);

/* ------------------------------------------------------------ diagnostics */

typedef struct kiln_diag kiln_diag;

/* Creates an empty diagnostic sink. Every invocation should be paired with
 * kiln_diag_dispose(). Returns NULL only when out of memory. */
KILN_API kiln_diag *kiln_diag_create(void);
KILN_API void kiln_diag_dispose(kiln_diag *d);
/* All messages so far, one per line ("" when none). Owned by the diag; valid
 * until the next call that adds to or clears it. */
KILN_API const char *kiln_diag_message(const kiln_diag *d);
/* Number of errors recorded. */
KILN_API int kiln_diag_error_count(const kiln_diag *d);
KILN_API void kiln_diag_clear(kiln_diag *d);

/* ------------------------------------------------------------------ types */

typedef enum kiln_dtype { KILN_F32 = 0, KILN_I32 = 1 } kiln_dtype;

#define KILN_MAX_RANK 6
/* The dynamic batch dimension, written '?' in text. */
#define KILN_BATCH (-1)

/* -------------------------------------------------------- modules and graphs */

typedef struct kiln_module kiln_module;
typedef struct kiln_func kiln_func;

/* A value in a function's graph: an input, a parameter or a node result. */
typedef struct kiln_value {
    int32_t id; /* < 0: invalid (an error happened) */
} kiln_value;

static inline int kiln_value_ok(kiln_value v) { return v.id >= 0; }

/* Creates an empty module. Every invocation should be paired with
 * kiln_module_dispose(). Returns NULL only when out of memory. */
KILN_API kiln_module *kiln_module_create(const char *name);
KILN_API void kiln_module_dispose(kiln_module *m);
KILN_API const char *kiln_module_name(const kiln_module *m);

/* Parses a module in the .kir text form. On success *out holds a module that
 * the caller frees with kiln_module_dispose(); on error *out is NULL and the
 * diag holds "file:line:col: error: ...". `filename` is used in messages. */
KILN_API kiln_status kiln_module_parse(const char *text, size_t len, const char *filename,
                                       kiln_module **out, kiln_diag *d);
/* Reads and parses a .kir file. Same ownership as kiln_module_parse(). */
KILN_API kiln_status kiln_module_load(const char *path, kiln_module **out, kiln_diag *d);
/* Parses a model in the .kiln language (grammar in the README) into a
 * module: its parameters, train settings, layer table and the functions
 * `infer` (inputs -> outputs) and, when the file has a loss, `loss`
 * (inputs, label -> loss[, accuracy]). On success *out holds a module that
 * the caller frees with kiln_module_dispose(); on error *out is NULL and the
 * diag holds "file:line:col: error: ..." with the source line and a caret.
 * `filename` (may be NULL) appears in messages and node locations, and its
 * base name names the module when the file has no `model NAME`. */
KILN_API kiln_status kiln_model_file_parse(const char *text, size_t len, const char *filename,
                                           kiln_module **out, kiln_diag *d);
/* Reads and parses a .kiln file. Same ownership as kiln_model_file_parse(). */
KILN_API kiln_status kiln_model_file_load(const char *path, kiln_module **out, kiln_diag *d);
/* ONNX models (frontend/onnx.c). Whether this Kiln was built with ONNX
 * support (protobuf-c and Debian's onnx.proto at build time). */
KILN_API int kiln_onnx_available(void);
/* Imports a serialized ONNX ModelProto: a module with the function `infer`
 * (graph inputs as arguments, a dynamic first dimension as the batch '?')
 * whose parameters are the graph's initializers under their ONNX names,
 * holding their data. An unsupported op is an error listing every
 * unsupported node. Same ownership as kiln_module_parse(). */
KILN_API kiln_status kiln_onnx_import(const void *bytes, size_t len, const char *filename,
                                      kiln_module **out, kiln_diag *d);
/* Reads and imports a .onnx file. */
KILN_API kiln_status kiln_onnx_load(const char *path, kiln_module **out, kiln_diag *d);
/* Writes the module's function `infer` as an ONNX model (opset 13) that
 * takes and returns what Kiln's does (NHWC images: the convolutions run
 * between Transposes); initializers are the parameters' values (see
 * kiln_module_load_weights) under their names, conv kernels permuted to
 * ONNX's [out,in,kh,kw]. It is the inference graph: dropout is the identity,
 * batch normalization uses the moving statistics. An op with no ONNX
 * mapping is an error at its place (frontend/onnx_export.c). */
KILN_API kiln_status kiln_onnx_export(const kiln_module *m, const char *path, kiln_diag *d);
/* The same into malloc'ed bytes; the caller frees *bytes with kiln_free(). */
KILN_API kiln_status kiln_onnx_export_bytes(const kiln_module *m, void **bytes, size_t *len,
                                            kiln_diag *d);
/* Gives every global of `m` its value as the module's own data (what an
 * imported ONNX model's parameters hold): drawn from its initializer with
 * `seed` (0: the module's train seed, else 1) as kiln_model_create does,
 * unless it has data already, then loaded from checkpoint `ckpt` (NULL:
 * none) strictly. Models created from `m` start from these values. */
KILN_API kiln_status kiln_module_load_weights(kiln_module *m, const char *ckpt, int64_t seed,
                                              kiln_diag *d);
/* Loads a model file by its extension: .onnx (kiln_onnx_load), .kir
 * (kiln_module_load), else the .kiln language (kiln_model_file_load). */
KILN_API kiln_status kiln_module_load_file(const char *path, kiln_module **out, kiln_diag *d);
/* Prints the module in .kir text form. The returned string is malloc'ed; the
 * caller frees it with kiln_free(). NULL when out of memory. */
KILN_API char *kiln_module_print(const kiln_module *m);
/* Checks every function of the module: types, operands, attributes, SSA
 * order. Reports every problem found, not just the first. */
KILN_API kiln_status kiln_module_verify(const kiln_module *m, kiln_diag *d);
/* Frees memory returned by Kiln functions that say so. */
KILN_API void kiln_free(void *p);
/* `s` as a JSON string literal, quotes included ('"', '\\' and control
 * characters escaped; NULL reads as ""). Malloc'ed; free with kiln_free().
 * NULL when out of memory. */
KILN_API char *kiln_json_string(const char *s);

/* Parameter initializers. */
typedef enum kiln_init_kind {
    KILN_INIT_ZEROS = 0,
    KILN_INIT_ONES,
    KILN_INIT_CONSTANT,       /* a = value */
    KILN_INIT_GLOROT_UNIFORM, /* Keras' default for kernels */
    KILN_INIT_GLOROT_NORMAL,
    KILN_INIT_HE_NORMAL,
    KILN_INIT_HE_UNIFORM,
    KILN_INIT_NORMAL,  /* a = mean, b = stddev */
    KILN_INIT_UNIFORM, /* a = min, b = max */
    KILN_INIT_COUNT
} kiln_init_kind;

typedef struct kiln_init {
    kiln_init_kind kind;
    double a, b;
} kiln_init;

/* Adds a parameter (trainable unless kiln_module_set_trainable says not).
 * Returns KILN_ERR_INVALID for a duplicate name or a dynamic dimension. */
KILN_API kiln_status kiln_module_add_param(kiln_module *m, const char *name, kiln_dtype dt,
                                           int rank, const int64_t *dims, kiln_init init,
                                           kiln_diag *d);
/* The number of parameters; *with_data (may be NULL) gets how many of them
 * hold their own values (an ONNX file's initializers, kiln_onnx_import and
 * the .kiln language's onnx(...); see kiln_module_load_weights): the ones
 * a model starts from without a checkpoint. */
KILN_API int64_t kiln_module_param_count(const kiln_module *m, int64_t *with_data);
/* Freezes (trainable = 0) or unfreezes a parameter. */
KILN_API kiln_status kiln_module_set_trainable(kiln_module *m, const char *name, int trainable,
                                               kiln_diag *d);

/* Creates a function in the module (owned by the module). NULL on a duplicate
 * name or out of memory. */
KILN_API kiln_func *kiln_func_create(kiln_module *m, const char *name);
/* Finds a function by name; NULL if absent. */
KILN_API kiln_func *kiln_module_func(const kiln_module *m, const char *name);
/* The first builder error of the function, or NULL. Owned by the module. */
KILN_API const char *kiln_func_error(const kiln_func *f);

/* Function inputs (dims may use KILN_BATCH) and outputs. */
KILN_API kiln_value kiln_input(kiln_func *f, const char *name, kiln_dtype dt, int rank,
                               const int64_t *dims);
/* A reference to a module parameter or state slot by name. */
KILN_API kiln_value kiln_param(kiln_func *f, const char *name);
KILN_API kiln_status kiln_output(kiln_func *f, kiln_value v);

/* Source location attached to nodes built from now on (file may be NULL). */
KILN_API void kiln_func_set_loc(kiln_func *f, const char *file, int line, int col);

/* Type queries; rank < 0 for an invalid value. */
KILN_API int kiln_value_rank(const kiln_func *f, kiln_value v);
KILN_API int64_t kiln_value_dim(const kiln_func *f, kiln_value v, int axis);
KILN_API kiln_dtype kiln_value_dtype(const kiln_func *f, kiln_value v);

/* ------------------------------------------------------------ op builders
 * One builder per op of ir/ops.def. Binary elementwise ops broadcast like
 * numpy. Axes may be negative (counted from the end). */
KILN_API kiln_value kiln_matmul(kiln_func *f, kiln_value a, kiln_value b, int transpose_a,
                                int transpose_b);
KILN_API kiln_value kiln_add(kiln_func *f, kiln_value a, kiln_value b);
KILN_API kiln_value kiln_sub(kiln_func *f, kiln_value a, kiln_value b);
KILN_API kiln_value kiln_mul(kiln_func *f, kiln_value a, kiln_value b);
KILN_API kiln_value kiln_div(kiln_func *f, kiln_value a, kiln_value b);
KILN_API kiln_value kiln_maximum(kiln_func *f, kiln_value a, kiln_value b);
KILN_API kiln_value kiln_minimum(kiln_func *f, kiln_value a, kiln_value b);
KILN_API kiln_value kiln_equal(kiln_func *f, kiln_value a, kiln_value b);   /* -> i32 0/1 */
KILN_API kiln_value kiln_greater(kiln_func *f, kiln_value a, kiln_value b); /* -> i32 0/1 */
KILN_API kiln_value kiln_select(kiln_func *f, kiln_value cond, kiln_value a, kiln_value b);
KILN_API kiln_value kiln_neg(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_exp(kiln_func *f, kiln_value x);
/* x averaged over the ranks of a distributed run, weighted by each rank's
 * share of the batch (the identity in one process; kiln_distributed_init). */
KILN_API kiln_value kiln_allreduce_mean(kiln_func *f, kiln_value x);
/* x, the result of an allreduce_mean, once its collective has ended (the
 * data-parallel pass starts buckets without waiting and waits with this
 * op before the optimizer); the identity when there is nothing to wait for. */
KILN_API kiln_value kiln_allreduce_wait(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_log(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_sqrt(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_pow(kiln_func *f, kiln_value x, double exponent);
KILN_API kiln_value kiln_relu(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_leaky_relu(kiln_func *f, kiln_value x, double alpha);
KILN_API kiln_value kiln_sigmoid(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_tanh(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_erf(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_cast(kiln_func *f, kiln_value x, kiln_dtype to);
KILN_API kiln_value kiln_softmax(kiln_func *f, kiln_value x, int axis);
KILN_API kiln_value kiln_log_softmax(kiln_func *f, kiln_value x, int axis);
/* Reductions: naxes == 0 reduces over every axis. */
KILN_API kiln_value kiln_reduce_sum(kiln_func *f, kiln_value x, int naxes, const int *axes,
                                    int keepdims);
KILN_API kiln_value kiln_reduce_mean(kiln_func *f, kiln_value x, int naxes, const int *axes,
                                     int keepdims);
KILN_API kiln_value kiln_reduce_max(kiln_func *f, kiln_value x, int naxes, const int *axes,
                                    int keepdims);
KILN_API kiln_value kiln_argmax(kiln_func *f, kiln_value x, int axis); /* -> i32 */
/* Element count of the given axes of x (all when naxes == 0) as an f32
 * scalar; with a batch axis it is known only at run time. */
KILN_API kiln_value kiln_numel(kiln_func *f, kiln_value x, int naxes, const int *axes);
KILN_API kiln_value kiln_reshape(kiln_func *f, kiln_value x, int rank, const int64_t *dims);
KILN_API kiln_value kiln_transpose(kiln_func *f, kiln_value x, int rank, const int *perm);
KILN_API kiln_value kiln_broadcast_to(kiln_func *f, kiln_value x, int rank, const int64_t *dims);
/* A tensor filled with one value (rank 0 for a scalar). */
KILN_API kiln_value kiln_constant(kiln_func *f, kiln_dtype dt, double value, int rank,
                                  const int64_t *dims);
/* i32 class indices [..] -> f32 one-hot [.., depth]. */
KILN_API kiln_value kiln_one_hot(kiln_func *f, kiln_value labels, int depth);
/* Losses: the mean over the batch, an f32 scalar. */
KILN_API kiln_value kiln_categorical_crossentropy(kiln_func *f, kiln_value probs,
                                                  kiln_value onehot);
KILN_API kiln_value kiln_sparse_categorical_crossentropy(kiln_func *f, kiln_value probs,
                                                         kiln_value labels);
KILN_API kiln_value kiln_mean_squared_error(kiln_func *f, kiln_value pred, kiln_value target);
KILN_API kiln_value kiln_binary_crossentropy(kiln_func *f, kiln_value probs, kiln_value target);
/* Negative log-likelihood of log-probabilities against one-hot targets. */
KILN_API kiln_value kiln_nll(kiln_func *f, kiln_value logprobs, kiln_value onehot);

/* Activations for dense layers and the fused dense op. */
typedef enum kiln_activation {
    KILN_ACT_NONE = 0,
    KILN_ACT_RELU,
    KILN_ACT_LEAKY_RELU,
    KILN_ACT_SIGMOID,
    KILN_ACT_TANH,
    KILN_ACT_SOFTMAX,
    /* Keras 3's: elu (alpha 1), relu6, gelu (exact, erf), softplus,
     * silu (also named swish), hard_sigmoid (relu6(x + 3) / 6) */
    KILN_ACT_ELU,
    KILN_ACT_RELU6,
    KILN_ACT_GELU,
    KILN_ACT_SOFTPLUS,
    KILN_ACT_SILU,
    KILN_ACT_HARD_SIGMOID,
    KILN_ACT_COUNT
} kiln_activation;

/* Name of an activation ("relu", ...) and the reverse ("linear" is none,
 * "swish" silu); -1 if unknown. */
KILN_API const char *kiln_activation_name(kiln_activation a);
KILN_API int kiln_activation_from_name(const char *name);
/* act(x): KILN_ACT_NONE gives x; alpha is leaky_relu's slope and elu's
 * alpha (ignored by the others); softmax is over the last axis. */
KILN_API kiln_value kiln_activate(kiln_func *f, kiln_value x, kiln_activation act, double alpha);

/* ------------------------------------------------------- building models
 * Keras' two ways to define a model, on the IR the .kiln front end builds:
 *
 *  - Sequential: a stack of layers from one input, each named by the caller
 *    or automatically as Keras names them (dense, dense_1, ...), then a
 *    compile step that gives the module:
 *
 *      kiln_sequential *s = kiln_sequential_create("mnist_mlp", 784);
 *      kiln_sequential_dense(s, NULL, 128, KILN_ACT_RELU, d);
 *      kiln_sequential_dense(s, NULL, 10, KILN_ACT_SOFTMAX, d);
 *      kiln_train_settings t = kiln_train_settings_defaults(KILN_LOSS_CATEGORICAL_CROSSENTROPY);
 *      t.accuracy = 1;
 *      kiln_sequential_compile(s, &t, &module, d);  -> kiln_model_create(module, ...)
 *
 *  - Graph style (Keras' functional API): build @infer with kiln_func_create,
 *    kiln_input, kiln_param and the op builders, add its parameters with
 *    kiln_module_add_param, then kiln_module_set_training() writes @loss and
 *    records the settings.
 *
 * Either way the module holds what a model file gives: parameters
 * (<layer>.kernel [in, out] glorot_uniform, <layer>.bias zeros for dense
 * layers), the layer table for summary, @infer(x) -> prediction,
 * @loss(x, y) -> (loss[, accuracy]) and the train settings. */

typedef enum kiln_loss {
    KILN_LOSS_CATEGORICAL_CROSSENTROPY = 0,    /* f32 one-hot labels */
    KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, /* i32 class indices */
    KILN_LOSS_MEAN_SQUARED_ERROR,
    KILN_LOSS_BINARY_CROSSENTROPY,
    KILN_LOSS_COUNT
} kiln_loss;

typedef enum kiln_optimizer_kind {
    KILN_OPT_SGD = 1, /* with momentum and Nesterov */
    KILN_OPT_ADAM = 2,
    KILN_OPT_ADAMW = 3
} kiln_optimizer_kind;

typedef struct kiln_optimizer {
    kiln_optimizer_kind kind;
    double lr;                      /* > 0 */
    double beta_1, beta_2, epsilon; /* adam, adamw: [0, 1), [0, 1), > 0 */
    double weight_decay;            /* adamw: >= 0 */
    double momentum;                /* sgd: [0, 1] */
    int nesterov;                   /* sgd */
} kiln_optimizer;

/* Keras' defaults for `kind`: Adam(lr 0.001, beta_1 0.9, beta_2 0.999,
 * epsilon 1e-7), AdamW the same with weight decay 0.004, SGD(lr 0.01, no
 * momentum). */
KILN_API kiln_optimizer kiln_optimizer_defaults(kiln_optimizer_kind kind);

/* The most epochs a train block, kiln_train_settings or `kiln train
 * --epochs` asks for (the fit loop counts them in an int). */
#define KILN_MAX_EPOCHS 2147483647

/* Keras' compile() and fit() settings. */
typedef struct kiln_train_settings {
    kiln_loss loss;
    kiln_optimizer optimizer;
    int64_t epochs;     /* in [1, KILN_MAX_EPOCHS] */
    int64_t batch_size; /* in [1, 2^31 - 1] */
    int64_t seed;       /* >= 0; 0: not set (kiln_model_opts.seed or 1 applies) */
    int accuracy;       /* metrics=['accuracy']: @loss also returns the accuracy */
    const char *label;  /* name of @loss's label argument; NULL: "y" */
} kiln_train_settings;

/* Keras' defaults around `loss`: Adam, 1 epoch, batch size 32, no seed, no
 * metric, label "y". */
KILN_API kiln_train_settings kiln_train_settings_defaults(kiln_loss loss);

/* --- Sequential --- */
typedef struct kiln_sequential kiln_sequential;

/* Starts a sequential model named `name` (NULL: "model") whose input x is
 * f32[?, input_dim]. Every invocation should be paired with
 * kiln_sequential_dispose(). Returns NULL only when out of memory; a bad
 * argument is reported by the first call that takes a diag. */
KILN_API kiln_sequential *kiln_sequential_create(const char *name, int64_t input_dim);
/* The same with an input of any shape: x is f32[?, shape...] (rank >= 1
 * dims, each >= 1), e.g. {28, 28} followed by kiln_sequential_flatten(). */
KILN_API kiln_sequential *kiln_sequential_create_shape(const char *name, int rank,
                                                       const int64_t *shape);
/* Frees the sequential and the module it is building (not one compile
 * handed out). NULL is allowed. */
KILN_API void kiln_sequential_dispose(kiln_sequential *s);

/* Appends a layer. `name` NULL: Keras' automatic name (dense, dense_1, ...
 * per layer class); else a name of letters, digits and '_' not used by
 * another layer. A call that fails on a bad argument changes nothing; one
 * that fails later (out of memory) leaves the model incomplete, and every
 * later call reports that. */
/* Dense(units, activation): parameters <name>.kernel f32[in, units]
 * (glorot_uniform) and <name>.bias f32[units] (zeros). */
KILN_API kiln_status kiln_sequential_dense(kiln_sequential *s, const char *name, int64_t units,
                                           kiln_activation act, kiln_diag *d);
/* Activation(act): softmax over the last axis, leaky_relu with slope 0.2, elu
 * with alpha 1 (Keras 3's defaults). */
KILN_API kiln_status kiln_sequential_activation(kiln_sequential *s, const char *name,
                                                kiln_activation act, kiln_diag *d);
/* Flatten(): [batch, product of the other axes]. */
KILN_API kiln_status kiln_sequential_flatten(kiln_sequential *s, const char *name, kiln_diag *d);
/* Image layers on an NHWC input f32[?, h, w, c] (kiln_sequential_create_shape
 * with {h, w, c}), as Keras' (channels_last). Padding as TensorFlow's. */
typedef enum kiln_padding { KILN_PADDING_VALID = 0, KILN_PADDING_SAME = 1 } kiln_padding;
/* Conv2D(filters, kernel_size, strides, padding, activation), square
 * windows and strides: <name>.kernel f32[k, k, in, filters]
 * (glorot_uniform) and <name>.bias f32[filters] (zeros). */
KILN_API kiln_status kiln_sequential_conv2d(kiln_sequential *s, const char *name, int64_t filters,
                                            int64_t kernel_size, int64_t strides,
                                            kiln_padding padding, kiln_activation act,
                                            kiln_diag *d);
/* MaxPooling2D / AveragePooling2D(pool_size, strides (0: pool_size), padding). */
KILN_API kiln_status kiln_sequential_max_pooling2d(kiln_sequential *s, const char *name,
                                                   int64_t pool_size, int64_t strides,
                                                   kiln_padding padding, kiln_diag *d);
KILN_API kiln_status kiln_sequential_average_pooling2d(kiln_sequential *s, const char *name,
                                                       int64_t pool_size, int64_t strides,
                                                       kiln_padding padding, kiln_diag *d);
/* GlobalAveragePooling2D / GlobalMaxPooling2D: [?, h, w, c] -> [?, c]. */
KILN_API kiln_status kiln_sequential_global_average_pooling2d(kiln_sequential *s,
                                                              const char *name, kiln_diag *d);
KILN_API kiln_status kiln_sequential_global_max_pooling2d(kiln_sequential *s, const char *name,
                                                          kiln_diag *d);
/* Dropout(rate): rate in [0, 1); active in train_step only (masks from the
 * train settings' seed and the optimizer's step), the identity elsewhere. */
KILN_API kiln_status kiln_sequential_dropout(kiln_sequential *s, const char *name, double rate,
                                             kiln_diag *d);
/* BatchNormalization(axis=-1) with Keras' defaults when momentum or epsilon
 * is < 0 (0.99, 0.001); center and scale on. Parameters NAME.gamma,
 * NAME.beta (trainable), NAME.moving_mean, NAME.moving_variance. */
KILN_API kiln_status kiln_sequential_batch_normalization(kiln_sequential *s, const char *name,
                                                         double momentum, double epsilon,
                                                         kiln_diag *d);
/* Freezes (trainable = 0) or unfreezes every parameter of layer `layer`:
 * frozen parameters get no gradient and no optimizer state, so training
 * leaves them as they are (fine-tuning). */
KILN_API kiln_status kiln_sequential_set_trainable(kiln_sequential *s, const char *layer,
                                                   int trainable, kiln_diag *d);
/* Keras' compile: @infer returns the last layer's output; with settings
 * `t`, @loss and the train settings are added as kiln_module_set_training()
 * does (t NULL: an inference-only module). On success *out holds the
 * module, which the caller frees with kiln_module_dispose() or hands to
 * kiln_model_create(); `s` then holds nothing and can only be disposed. On
 * error *out is NULL; bad settings change nothing. */
KILN_API kiln_status kiln_sequential_compile(kiln_sequential *s, const kiln_train_settings *t,
                                             kiln_module **out, kiln_diag *d);

/* --- Graph style --- */
/* Writes @loss(inputs of @infer..., label) -> (loss[, accuracy]) from
 * @infer, which must have one result, the prediction: a copy of @infer's
 * nodes, the label argument and the loss, plus Keras' accuracy when
 * `accuracy` is set (argmax against one-hot or index labels, a 0.5
 * threshold for binary cross-entropy or one output unit). The label is
 * typed as the loss needs: i32 class indices of the prediction's shape
 * without its last axis for sparse categorical cross-entropy, else f32 of
 * the prediction's shape. `label` NULL: "y". */
KILN_API kiln_status kiln_module_add_loss(kiln_module *m, kiln_loss loss, const char *label,
                                          int accuracy, kiln_diag *d);
/* Keras' compile for a graph-style module: checks and records the
 * optimizer, epochs, batch size and seed, and writes @loss with
 * kiln_module_add_loss(m, t->loss, t->label, t->accuracy) unless the module
 * has one (then t->accuracy must match its results); verifies the module.
 * Bad settings change nothing. */
KILN_API kiln_status kiln_module_set_training(kiln_module *m, const kiln_train_settings *t,
                                              kiln_diag *d);
/* Adds a row to the layer table that summary prints: name, Keras class
 * ("Dense"), output shape (dims may use KILN_BATCH) and parameter count. */
KILN_API kiln_status kiln_module_add_layer(kiln_module *m, const char *name, const char *kind,
                                           int rank, const int64_t *dims, int64_t params,
                                           kiln_diag *d);

/* ------------------------------------------------------------------ passes
 * A pipeline is a comma list of pass names ("fuse-dense-act,dce") or the
 * name of a default pipeline: "infer" or "train". `kiln opt --help` lists
 * the passes. */
typedef struct kiln_pass_opts {
    int print_after_all;     /* print the module after every pass */
    const char *print_after; /* comma list of passes to print after, or NULL */
    const char *dump_dir;    /* write NNN_<pass>.kir (or .dot) after each pass */
    int dot;                 /* print and dump Graphviz instead of .kir */
    const char *function;    /* print only this function */
    FILE *out;               /* where printing goes; NULL: stdout */
} kiln_pass_opts;

KILN_API kiln_status kiln_module_run_passes(kiln_module *m, const char *pipeline,
                                            const kiln_pass_opts *o, kiln_diag *d);
/* The comma list of a default pipeline ("infer", "train"), or NULL. */
KILN_API const char *kiln_pipeline_passes(const char *name);
/* The default pipeline of `m`, the one every compiling entry point runs
 * (kiln_model_create, kiln_compile_aot without train, `kiln dump`):
 * "train" when it has a @loss, a train block and an optimizer, "infer"
 * otherwise, and "" (no passes) when it has a @train_step already. */
KILN_API const char *kiln_module_default_pipeline(const kiln_module *m);
/* Writes the names and one-line summaries of all passes to `out`. */
KILN_API void kiln_list_passes(FILE *out);
/* Prints the module as .kir (or Graphviz when dot != 0). With `function`
 * non-NULL, the module header, globals and only that function — still a
 * complete module that parses back. Returns a malloc'ed string the caller
 * frees with kiln_free(); NULL when out of memory or the function is absent. */
KILN_API char *kiln_module_print_ex(const kiln_module *m, const char *function, int dot);

/* ------------------------------------------------------------ code generation */

typedef enum kiln_emit_kind { KILN_EMIT_LLVM = 0, KILN_EMIT_ASM = 1 } kiln_emit_kind;

/* The LLVM IR or host assembly of one function of the module (all functions
 * when `function` is NULL), after LLVM's optimizations. The module should be
 * through its pipeline (kiln_module_run_passes). *out is malloc'ed; the
 * caller frees it with kiln_free(). */
KILN_API kiln_status kiln_module_emit(kiln_module *m, const char *function, kiln_emit_kind kind,
                                      char **out, kiln_diag *d);

/* ------------------------------------------------ ahead-of-time compilation
 * A module becomes a shared object that any C program links (plus a C
 * header describing it), needing OpenBLAS and libm at run time but neither
 * LLVM nor Kiln. The header documents the generated API; see also the
 * README. */

typedef enum kiln_aot_emit {
    KILN_AOT_SO = 0, /* a shared object (linked by the system C compiler) */
    KILN_AOT_OBJ,    /* the PIC object file only */
    KILN_AOT_LLVM,   /* LLVM IR text, after optimization */
    KILN_AOT_ASM     /* native assembly */
} kiln_aot_emit;

/* Who computes matrix products (dense, matmul, convolutions): Kiln's own
 * generated kernels or OpenBLAS's cblas_sgemm. AUTO: the environment's
 * KILN_GEMM (kiln|openblas) if set, else Kiln's (README "GEMM backends"). */
typedef enum kiln_gemm { KILN_GEMM_AUTO = 0, KILN_GEMM_KILN = 1, KILN_GEMM_OPENBLAS = 2 } kiln_gemm;

typedef struct kiln_aot_opts {
    const char *output; /* the file to write (required) */
    const char *header; /* also write the C header here; NULL: none */
    /* C prefix of the entry points (`mnist` -> mnist_infer); NULL: the base
     * name of `header` without ".h", else of `output` without "lib" and
     * the extension. */
    const char *prefix;
    const char *load;   /* checkpoint with the weights; NULL: initialized with `seed` */
    int64_t seed;       /* as kiln_model_opts.seed */
    int train;          /* also export a train step and a checkpoint writer */
    int no_embed;       /* embed no weights: the library loads a checkpoint at run time */
    kiln_aot_emit emit;
    const char *cpu;    /* target CPU ("x86-64-v3", ...); NULL: this machine's */
    const char *cc;     /* the linker driver; NULL: the C compiler Kiln was built with */
    kiln_gemm gemm;     /* KILN_GEMM_OPENBLAS links libopenblas; else the .so needs only libc, libm */
    /* If not NULL, set to "hit" (the object code came from the compile
     * cache), "miss" (compiled and stored) or "off" (no cache, or a text
     * output): a static string. */
    const char **cache;
} kiln_aot_opts;

/* Compiles `m` ahead of time: runs the "train" pipeline (o->train) or the
 * "infer" one unless the module already has a @train_step, initializes or
 * loads the weights, and writes o->output (and o->header). The module is
 * changed by the passes and stays the caller's. */
KILN_API kiln_status kiln_compile_aot(kiln_module *m, const kiln_aot_opts *o, kiln_diag *d);

/* ---------------------------------------------------------------- summary */

/* Keras' summary table (layers, output shapes, parameter counts, totals).
 * Malloc'ed; free with kiln_free(). NULL when out of memory. */
KILN_API char *kiln_module_summary(const kiln_module *m);

/* --------------------------------------------------------------- datasets
 * Images and labels in the IDX format (MNIST, Fashion-MNIST), gzipped or
 * not. Images stay uint8 in memory and are scaled to [0, 1] per batch. */
typedef struct kiln_dataset kiln_dataset;

/* Loads split "train" or "test" of a directory holding the four standard
 * files (train-images-idx3-ubyte[.gz], ..., t10k-labels-idx1-ubyte[.gz]).
 * Every invocation should be paired with kiln_dataset_dispose(). */
KILN_API kiln_status kiln_dataset_load(const char *dir, const char *split, kiln_dataset **out,
                                       kiln_diag *d);
/* Loads one images file and one labels file (labels may be NULL). */
KILN_API kiln_status kiln_dataset_load_idx(const char *images, const char *labels,
                                           kiln_dataset **out, kiln_diag *d);
KILN_API void kiln_dataset_dispose(kiln_dataset *ds);
KILN_API int64_t kiln_dataset_count(const kiln_dataset *ds);
/* Values per sample (784 for 28x28 images). */
KILN_API int64_t kiln_dataset_sample_size(const kiln_dataset *ds);
/* Copies samples [first, first+n) scaled to [0, 1] into x ([n, sample_size]). */
KILN_API kiln_status kiln_dataset_read(const kiln_dataset *ds, int64_t first, int64_t n, float *x,
                                       kiln_diag *d);
/* Copies the labels of samples [first, first+n) into labels (n class
 * indices). KILN_ERR_INVALID when the dataset has no labels. */
KILN_API kiln_status kiln_dataset_read_labels(const kiln_dataset *ds, int64_t first, int64_t n,
                                              int32_t *labels, kiln_diag *d);
/* Keeps only the first n samples (n larger than the count changes nothing). */
KILN_API void kiln_dataset_truncate(kiln_dataset *ds, int64_t n);

/* Arrays from the caller (Keras' fit(x, y)). One array holds `count`
 * samples, row-major (C order), each of shape dims[0..rank) (rank 0: one
 * value per sample). */
typedef enum kiln_array_type {
    KILN_ARRAY_F32 = 0, /* float: inputs as they are, labels as targets */
    KILN_ARRAY_U8 = 1,  /* bytes: inputs scaled to [0, 1] per batch, labels as class indices */
    KILN_ARRAY_I32 = 2  /* int32: labels only (class indices, or values when rank > 0) */
} kiln_array_type;

typedef struct kiln_array {
    const void *data;
    kiln_array_type type;
    int rank;
    int64_t dims[KILN_MAX_RANK];
} kiln_array;

/* How kiln_dataset_from_arrays treats the caller's memory. */
typedef enum kiln_array_mode {
    KILN_ARRAYS_COPY = 0,  /* copied: the caller may free its arrays on return */
    KILN_ARRAYS_BORROW = 1 /* used in place where possible (f32 or u8 inputs, int32 rank-0
                              labels, f32 labels): the arrays must outlive the dataset,
                              and stay the caller's to free after kiln_dataset_dispose() */
} kiln_array_mode;

/* A dataset of `count` samples from inputs and (optionally, NULL) labels,
 * usable wherever a dataset is (fit, evaluate, predict_dataset). How labels
 * meet the model's label is GRAMMAR.md's "Labels": int labels of rank 0
 * are class indices (one-hot for an f32 [?, C] label, the value itself for
 * [?, 1]); f32 labels are targets. Float inputs and labels holding NaN or
 * Inf are refused, naming the sample. Shapes are checked against a model
 * by kiln_model_check_dataset (and by fit / evaluate). Every invocation
 * should be paired with kiln_dataset_dispose(). */
KILN_API kiln_status kiln_dataset_from_arrays(const kiln_array *inputs, const kiln_array *labels,
                                              int64_t count, kiln_array_mode mode,
                                              kiln_dataset **out, kiln_diag *d);
/* Loads inputs and labels (labels may be NULL) from NumPy (.npy) or IDX
 * files, told apart by their first bytes; a directory or .npz file as in
 * kiln_dataset_load (see also kiln_dataset_load). */
KILN_API kiln_status kiln_dataset_load_files(const char *inputs, const char *labels,
                                             kiln_dataset **out, kiln_diag *d);

/* Loads a CSV file: a header row of column names, then rows of numbers;
 * the column named `label_column` holds the labels, the others are the
 * features of one sample, in file order. Errors name file:line:col. Same
 * ownership as kiln_dataset_load(). */
KILN_API kiln_status kiln_dataset_load_csv(const char *path, const char *label_column,
                                           kiln_dataset **out, kiln_diag *d);

/* Writes `data` (float32, shape dims[0..rank), C order) as a NumPy .npy
 * file (format 1.0). */
KILN_API kiln_status kiln_npy_write(const char *path, const float *data, int rank,
                                    const int64_t *dims, kiln_diag *d);

/* ------------------------------------------------------------------ models
 * A model is a module compiled for training and inference, with its
 * weights, optimizer state and history: Keras' fit / evaluate / predict. */
typedef struct kiln_model kiln_model;

typedef enum kiln_backend { KILN_BACKEND_JIT = 0, KILN_BACKEND_INTERP = 1 } kiln_backend;

typedef struct kiln_model_opts {
    kiln_backend backend;
    int threads;   /* OpenBLAS and Kiln threads; 0: keep the library default */
    int64_t seed;  /* weight initialization seed; 0: the module's (train.seed) or 1 */
    kiln_gemm gemm; /* matrix products: Kiln's kernels or OpenBLAS (README "GEMM backends") */
} kiln_model_opts;

/* ---------------------------------------------------- distributed training
 * Data-parallel over Open MPI (MPI_COMM_WORLD, or a kiln_comm: below),
 * under mpirun (README: "Training on several machines"). After kiln_distributed_init, models are
 * created for it: kiln_model_create runs the "train-distributed" pipeline
 * (gradients, loss and accuracy averaged over the ranks), and
 * kiln_model_fit starts from rank 0's weights, shards every global batch
 * (batch_size) over the ranks, and saves checkpoints on rank 0 only;
 * kiln_model_evaluate shards and reduces. init initializes MPI unless the
 * program did, and sets MPI_ERRORS_RETURN plus a watchdog
 * (KILN_DIST_TIMEOUT seconds, default 20) so a dead rank ends the run with
 * a message; before initializing MPI it sets Open MPI's mpi_yield_when_idle
 * to 1 unless the environment sets it. Collectives overlap the backward
 * pass across machines and block within one (KILN_ALLREDUCE=overlap|
 * blocking overrides); KILN_DIST_STATS=1 makes finalize print each rank's
 * time in them. KILN_ERR_UNSUPPORTED when built without MPI. */
KILN_API kiln_status kiln_distributed_init(kiln_diag *d);
KILN_API void kiln_distributed_finalize(void);
/* Ends every rank of the run (MPI_Abort) with exit status `code`; returns
 * only when not distributed. */
KILN_API void kiln_distributed_abort(int code);
/* This process's rank and the number of ranks (0 and 1 when not distributed). */
KILN_API int kiln_distributed_rank(void);
KILN_API int kiln_distributed_size(void);
/* Whether this Kiln was built with MPI. */
KILN_API int kiln_have_mpi(void);

/* A communicator to train over, for programs that run several trainings
 * side by side (e.g. MPI_COMM_WORLD split into groups) or share the world
 * with other work. kiln.h needs no mpi.h: include <kiln/kiln_mpi.h> and
 * call kiln_comm_from_mpi(MPI_Comm, ...), or pass MPI_Comm_c2f(comm)
 * here. After kiln_distributed_init; collective over the communicator's
 * ranks (Kiln duplicates it, MPI_Comm_dup, so its messages never meet the
 * program's). Free with kiln_comm_free before kiln_distributed_finalize. */
typedef struct kiln_comm kiln_comm;
KILN_API kiln_status kiln_comm_from_fint(int64_t fint, kiln_comm **out, kiln_diag *d);
KILN_API void kiln_comm_free(kiln_comm *c);
/* This process's rank in c and c's number of ranks (NULL: the default's). */
KILN_API int kiln_comm_rank(const kiln_comm *c);
KILN_API int kiln_comm_size(const kiln_comm *c);
/* The default communicator of fit, evaluate and kiln_distributed_rank/size
 * (NULL: MPI_COMM_WORLD, the default after kiln_distributed_init);
 * kiln_fit_opts.comm chooses one for one fit. */
KILN_API kiln_status kiln_distributed_set_comm(const kiln_comm *c, kiln_diag *d);

/* Compiles module `m` (taking ownership of it, also on failure): runs the
 * "train" pipeline when it has a loss function and an optimizer, else
 * "infer"; JIT-compiles (or prepares the interpreter) and initializes the
 * weights. Every invocation should be paired with kiln_model_dispose(). */
KILN_API kiln_status kiln_model_create(kiln_module *m, const kiln_model_opts *o,
                                       kiln_model **out, kiln_diag *d);
/* kiln_model_create that also compiles (JIT) the functions listed in `now`
 * (comma-separated, e.g. "loss,infer"; names the model lacks are skipped)
 * together with the main one, concurrently, each on a thread of its own;
 * without them the others compile when first used. */
KILN_API kiln_status kiln_model_create_now(kiln_module *m, const kiln_model_opts *o,
                                           const char *now, kiln_model **out, kiln_diag *d);
KILN_API void kiln_model_dispose(kiln_model *model);
/* The compiled module (owned by the model). */
KILN_API const kiln_module *kiln_model_module(const kiln_model *model);
/* Milliseconds spent in code generation (0 for the interpreter). */
KILN_API double kiln_model_compile_ms(const kiln_model *model);
/* How the JIT compile of `function` went: "hit" (loaded from the compile
 * cache), "miss" (compiled and stored), "off" (compiled, cache bypassed:
 * KILN_CACHE=0);
 * NULL when the function has not been compiled (yet, or by the interpreter). */
KILN_API const char *kiln_model_cache_status(const kiln_model *model, const char *function);
/* Threads the model's math runs on (OpenBLAS's pool and Kiln's). */
KILN_API int kiln_model_threads(const kiln_model *model);
KILN_API int64_t kiln_model_input_size(const kiln_model *model);
KILN_API int64_t kiln_model_output_size(const kiln_model *model);

/* Progress of fit / evaluate, passed to callbacks. */
typedef struct kiln_progress {
    int epoch, epochs;   /* 1-based; 0 in evaluate */
    int64_t step, steps; /* batches done and per epoch */
    int64_t samples;     /* samples seen in this epoch */
    double loss;         /* mean over the samples seen */
    double accuracy;     /* fraction correct over the samples seen; < 0: no metric */
    double seconds;      /* since the epoch started */
} kiln_progress;

/* Called after every batch (end == 0) and at the end of each epoch (end == 1). */
typedef void (*kiln_progress_fn)(const kiln_progress *p, int end, void *user);

typedef struct kiln_fit_opts {
    int epochs;           /* 0: the model's train block (or 1) */
    int64_t batch_size;   /* 0: the model's train block (or 32) */
    int64_t shuffle_seed; /* seed of the per-epoch shuffle */
    int no_shuffle;       /* keep the dataset order */
    int64_t max_steps;    /* stop after this many steps in total; 0: no limit */
    int verbose;          /* 1: Keras-style progress on stdout */
    int continue_on_nonfinite; /* keep going after a NaN/Inf loss */
    const char *checkpoint_path;  /* save here every checkpoint_every ... */
    int64_t checkpoint_every;     /* ... steps (> 0) or epochs (< 0: every -N epochs) */
    kiln_progress_fn callback;
    void *user;
    /* Distributed: the ranks that train this model together (each group of
     * a split world trains its own copy); NULL: the default communicator
     * (kiln_distributed_set_comm, else MPI_COMM_WORLD). */
    const kiln_comm *comm;
} kiln_fit_opts;

/* Trains on `train` (Keras' fit). Training continues from the model's state
 * (weights, optimizer, step and shuffle RNG), so fit can be called again or
 * after kiln_model_load. A NaN or Inf loss stops training (KILN_ERR_NONFINITE)
 * unless asked to continue, with a message naming the step and the first
 * non-finite tensor — an input and its sample, or the op that computed it
 * and its line in the model file — and the model keeps the weights the
 * failing step started from. (To trace it, fit keeps a copy of the globals
 * as each epoch starts; not with continue_on_nonfinite.) */
KILN_API kiln_status kiln_model_fit(kiln_model *model, kiln_dataset *train,
                                    const kiln_fit_opts *o, kiln_diag *d);
/* Epochs completed by fit so far, and the log of epoch i (0-based). */
KILN_API int kiln_model_history_count(const kiln_model *model);
KILN_API kiln_progress kiln_model_history(const kiln_model *model, int i);

/* Mean loss and accuracy over a dataset (Keras' evaluate). accuracy may be
 * NULL; it is < 0 when the model has no accuracy metric. */
KILN_API kiln_status kiln_model_evaluate(kiln_model *model, kiln_dataset *ds, int64_t batch_size,
                                         int verbose, double *loss, double *accuracy,
                                         kiln_diag *d);
/* Checks a dataset against a module before anything is compiled: samples
 * of @infer's input size, and of its shape when it is an image (f32[?, h,
 * w, c] takes h x w (x c) images); the error is placed at the input's
 * declaration ("m.kiln:4:1: error: ...: images are 28x28, the model's input
 * 'x' is f32[?,14,56,1]"). A module without @infer passes. */
KILN_API kiln_status kiln_module_check_dataset(const kiln_module *m, const kiln_dataset *ds,
                                               kiln_diag *d);
/* Checks that a dataset fits the model: samples of the model's input size
 * ("images are 28x28 = 784 values, the model expects 100") and, when
 * need_labels, labels in range for its classes. */
KILN_API kiln_status kiln_model_check_dataset(const kiln_model *model, const kiln_dataset *ds,
                                              int need_labels, kiln_diag *d);
/* Outputs for n samples of x (row-major [n, input]) into out ([n, output]). */
KILN_API kiln_status kiln_model_predict(kiln_model *model, const float *x, int64_t n, float *out,
                                        kiln_diag *d);
/* The same for a model with several inputs (in the order of the model
 * file's `input` lines): x[i] holds n samples of input i, row-major. */
KILN_API kiln_status kiln_model_predict_inputs(kiln_model *model, const float *const *x,
                                               int n_inputs, int64_t n, float *out, kiln_diag *d);
/* The number of inputs of the model and the size of one sample of input i. */
KILN_API int kiln_model_input_count(const kiln_model *model);
KILN_API int64_t kiln_model_input_size_at(const kiln_model *model, int i);
/* Outputs for every sample of a dataset into out ([count, output]). */
KILN_API kiln_status kiln_model_predict_dataset(kiln_model *model, const kiln_dataset *ds,
                                                float *out, kiln_diag *d);
/* Copies the current value of parameter (or state slot) `name` — "h1.kernel",
 * named as in checkpoints — into out, which holds n floats: its element
 * count. Keras' layer.get_weights(). */
KILN_API kiln_status kiln_model_get_weights(const kiln_model *model, const char *name, float *out,
                                            int64_t n, kiln_diag *d);

/* ----------------------------------------------------------- compile cache
 * The JIT keeps the native code of every compiled function on disk, so the
 * next run with the same model, settings, CPU and versions skips LLVM; the
 * data loader keeps there a decompressed copy of each large gzipped IDX file
 * (until the file changes), so the next run skips zlib. In
 * $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln; at most
 * $KILN_CACHE_MAX_MB megabytes (default 256, least recently used entries
 * go first); KILN_CACHE=0 turns it off. A directory that cannot be written
 * costs one warning in the diag; compiles carry on in memory. */
typedef struct kiln_cache_stats {
    char dir[4096];    /* the directory (may not exist yet) */
    int enabled;       /* 0 with KILN_CACHE=0 */
    int64_t entries;   /* compiled functions and decompressed data files stored */
    int64_t bytes;     /* their total size */
    int64_t max_bytes; /* the bound */
} kiln_cache_stats;

KILN_API kiln_status kiln_cache_info(kiln_cache_stats *out, kiln_diag *d);
/* Deletes every entry; *removed (may be NULL) counts them. */
KILN_API kiln_status kiln_cache_clear(int64_t *removed, kiln_diag *d);

/* ------------------------------------------------------------- checkpoints
 * safetensors files: parameters as <layer>.kernel / <layer>.bias, optimizer
 * state as optimizer.<param>.<slot>, and metadata (step, epoch, model name,
 * structure hash, shuffle RNG). Saving is atomic (temporary file + rename). */
KILN_API kiln_status kiln_model_save(kiln_model *model, const char *path, kiln_diag *d);

typedef enum kiln_load_mode {
    KILN_LOAD_STRICT = 0,  /* every parameter present with the model's shape */
    KILN_LOAD_FINETUNE = 1 /* load what matches by name and shape, report the rest */
} kiln_load_mode;

/* Loads weights (and optimizer state and training position when present).
 * In FINETUNE mode, skipped tensors are listed as notes in the diag. */
KILN_API kiln_status kiln_model_load(kiln_model *model, const char *path, kiln_load_mode mode,
                                     kiln_diag *d);

#ifdef __cplusplus
}
#endif
#endif /* KILN_KILN_H */

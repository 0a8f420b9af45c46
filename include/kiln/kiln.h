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
/* Prints the module in .kir text form. The returned string is malloc'ed; the
 * caller frees it with kiln_free(). NULL when out of memory. */
KILN_API char *kiln_module_print(const kiln_module *m);
/* Checks every function of the module: types, operands, attributes, SSA
 * order. Reports every problem found, not just the first. */
KILN_API kiln_status kiln_module_verify(const kiln_module *m, kiln_diag *d);
/* Frees memory returned by Kiln functions that say so. */
KILN_API void kiln_free(void *p);

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
KILN_API kiln_value kiln_log(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_sqrt(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_pow(kiln_func *f, kiln_value x, double exponent);
KILN_API kiln_value kiln_relu(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_leaky_relu(kiln_func *f, kiln_value x, double alpha);
KILN_API kiln_value kiln_sigmoid(kiln_func *f, kiln_value x);
KILN_API kiln_value kiln_tanh(kiln_func *f, kiln_value x);
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
    KILN_ACT_COUNT
} kiln_activation;

/* Name of an activation ("relu", ...) and the reverse; -1 if unknown. */
KILN_API const char *kiln_activation_name(kiln_activation a);
KILN_API int kiln_activation_from_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* KILN_KILN_H */

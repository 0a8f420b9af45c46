/*
 * onnx.h — the ONNX importer's internals (frontend/onnx.c: the reader and
 * the driver; frontend/onnx_ops.c: the table from ONNX op type to builder).
 *
 * The protobuf reader is generated at build time by protoc-c from Debian's
 * onnx.proto (CMakeLists.txt); without it (KILN_HAVE_ONNX unset) the entry
 * points report that ONNX support is absent.
 *
 * Values of the ONNX graph are either run-time nodes of the function being
 * built or host constants known at import time (initializers, Constant
 * nodes, the Shape -> Gather -> Unsqueeze -> Concat chains PyTorch emits
 * for a dynamic-batch reshape). A constant becomes a node when an op needs
 * it as an operand: a `constant` fill when all its elements are equal, else
 * a parameter under its ONNX name holding the data.
 */
#ifndef KILN_FRONTEND_ONNX_H
#define KILN_FRONTEND_ONNX_H

#include "ir/ir.h"

/* The batch '?' inside a constant shape (the result of Shape on a value
 * with a batch axis). */
#define OX_BATCH (INT64_MIN / 2)
/* Limits checked before allocating. */
#define OX_MAX_FILE_BYTES ((size_t)2 << 30)
#define OX_MAX_NODES 100000
#define OX_MAX_NESTING 64 /* messages inside messages (graphs in attributes, ...) */

/* A host tensor: f32 data or integer data (every ONNX integer type and
 * bool, widened to int64). */
typedef struct ox_tensor {
    bool is_int;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    int64_t n; /* element count */
    float *f;  /* !is_int */
    int64_t *i; /* is_int */
} ox_tensor;

/* Reads a serialized TensorProto (a test's input_0.pb) into malloc'ed
 * data; `what` names it in messages. Free with ox_tensor_free. */
kiln_status ox_tensor_read(const void *bytes, size_t len, const char *what, ox_tensor *out,
                           char **name, kiln_diag *d);
void ox_tensor_free(ox_tensor *t);

/* Imports a serialized ModelProto into a module with the function `infer`
 * (the graph inputs in order; the graph outputs as its results). */
kiln_status ox_import(const void *bytes, size_t len, const char *filename, kiln_module **out,
                      kiln_diag *d);

/* An ONNX graph inside a model file's function (the `onnx(x, "file.onnx")`
 * layer of the .kiln language, frontend/layers_onnx.c): the nodes that
 * compute `output` (NULL: the graph's one output) from the graph's input,
 * bound to x, are built through b (its function, at its location); the
 * initializers they use become parameters of b's module under their ONNX
 * names, holding the file's data. x may be the graph's input in ONNX's
 * layout or, for an image, in Kiln's NHWC. Messages go to d, without a
 * location (the caller gives them the call's). */
typedef struct ox_embed {
    const char *output;
    ir_node *out;    /* the value at `output`, in ONNX's layout */
    bool bad_output; /* the error is about the output's name */
    bool bad_input;  /* the error is about x */
} ox_embed;
kiln_status ox_import_into(const void *bytes, size_t len, const char *file, ir_builder *b,
                           ir_node *x, ox_embed *e, kiln_diag *d);

#ifdef KILN_HAVE_ONNX
#include <onnx/onnx.pb-c.h> /* generated at build time (CMakeLists.txt) */

typedef struct ox_val {
    const char *name;
    ir_node *node;   /* run-time value, or NULL */
    ox_tensor *k;    /* host constant, or NULL */
    bool initializer; /* k came from the graph's initializers: a parameter */
    /* The layout of images (onnx_conv.c): a 4-D NCHW value may be known
     * only as its NHWC transpose `nhwc` (node NULL until an op needs NCHW),
     * and a Flatten of such a value only as `flat`, the NHWC node whose
     * flattening has the columns in (h, w, c) order instead of (c, h, w).
     * `permuted`: k became a parameter in another layout (a Conv weight in
     * [kh, kw, in, out], a Gemm weight whose rows follow `flat`'s order).
     * `transposed`: k, a Gemm's B of transB=1 ([out, in], PyTorch's Linear),
     * became the parameter holding its transpose [in, out]; elsewhere the
     * value is a transpose of that parameter. */
    ir_node *nhwc, *flat;
    bool permuted, transposed;
} ox_val;

typedef struct ox_ctx {
    const char *file;
    kiln_module *m;
    kiln_func *f;
    ir_builder b;
    kiln_diag *d;     /* the importer's own diag (messages of node builders) */
    ir_arena scratch; /* host constants: freed when the import ends */
    ox_val *vals;
    int n_vals, cap_vals;
    int32_t *index; /* open addressing: name -> vals index, -1 empty */
    int index_cap;
    /* The node being built, for messages. */
    const Onnx__NodeProto *node;
    int64_t opset;
    int n_dropout; /* dropout nodes so far (their `node` attribute) */
    int first_global; /* globals below this index were the model's before the import */
} ox_ctx;

typedef kiln_status (*ox_build_fn)(ox_ctx *c, const Onnx__NodeProto *n);

/* The builder of op_type at `opset`, or NULL (unsupported); *why says what
 * is missing when the op is known but this version is not. */
ox_build_fn ox_op_find(const char *op_type, int64_t opset, const char **why);

/* Builders of onnx_more.c. */
kiln_status ox_b_compare(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_not(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_where(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_act(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_reduce_more(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_expand(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_size(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_constant_of_shape(ox_ctx *c, const Onnx__NodeProto *n);
/* Builders of onnx_conv.c (images: NCHW in ONNX, NHWC in Kiln). */
kiln_status ox_b_conv(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_pool(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_global_pool(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_batch_norm(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_pad(ox_ctx *c, const Onnx__NodeProto *n);
kiln_status ox_b_slice(ox_ctx *c, const Onnx__NodeProto *n);
/* Reshape, Transpose, Cast of a small host constant, folded (onnx_more.c):
 * true when done (*st its status). */
bool ox_fold(ox_ctx *c, const Onnx__NodeProto *n, kiln_status *st);
/* Concat of operands not all 1-D int constants (onnx_conv.c). */
kiln_status ox_concat_run(ox_ctx *c, const Onnx__NodeProto *n);
/* pad(x) by the counts (Kiln's layout of x), filled with value. */
ir_node *ox_pad(ox_ctx *c, ir_node *x, const int64_t *before, const int64_t *after, double value);
/* Gemm/MatMul of a `flat` operand k by a constant weight operand w: the
 * NHWC flattening and the weight [in, out] (transposed when trans_w) with
 * its rows in (h, w, c) order, a parameter under the weight's name. false
 * (nothing built) when the operands are not of that kind. */
bool ox_flat_matmul(ox_ctx *c, const Onnx__NodeProto *n, int k, int w, bool trans_w,
                    ir_node **x, ir_node **weight);
/* Operand k of the node when it is an f32 matrix constant [out, in] not
 * yet used in its own layout: *out the parameter under its name holding
 * the transpose [in, out] (made once; the value elsewhere is a transpose
 * of it), so a Gemm's B of transB=1 (PyTorch's Linear) costs no transpose
 * at run time. *out NULL (KILN_OK) when the operand is not such a constant. */
kiln_status ox_const_transposed(ox_ctx *c, const Onnx__NodeProto *n, int k, ir_node **out);

/* For builders (onnx.c). */
ox_val *ox_lookup(ox_ctx *c, const char *name);
/* Operand k of the node as a run-time node (constants materialized); NULL
 * with a message when absent. */
ir_node *ox_in(ox_ctx *c, const Onnx__NodeProto *n, int k);
/* Operand k as a host constant, or NULL (with no message) when it is not one. */
const ox_tensor *ox_in_const(ox_ctx *c, const Onnx__NodeProto *n, int k);
/* Whether the node has operand k (ONNX marks a skipped optional one by ""). */
bool ox_has_in(const Onnx__NodeProto *n, int k);
kiln_status ox_set(ox_ctx *c, const char *name, ir_node *node);
/* Operand k in NHWC (4-D; a transpose of the NCHW value made once when
 * needed). */
ir_node *ox_in_nhwc(ox_ctx *c, const Onnx__NodeProto *n, int k);
/* Operand k as it is held: the NHWC node (*nhwc true) when the value is
 * known only in that layout, else as ox_in. For ops indifferent to layout
 * (elementwise on one tensor), whose result ox_set_as keeps in the same. */
ir_node *ox_in_keep(ox_ctx *c, const Onnx__NodeProto *n, int k, bool *nhwc);
kiln_status ox_set_as(ox_ctx *c, const char *name, ir_node *node, bool nhwc);
/* A value known as its NHWC flattening (see ox_val.flat). */
kiln_status ox_set_flat(ox_ctx *c, const char *name, ir_node *nhwc4);
/* A parameter under `name` holding f32 data t (a weight in Kiln's layout). */
ir_node *ox_param(ox_ctx *c, const char *name, const ox_tensor *t, bool trainable);
kiln_status ox_set_const(ox_ctx *c, const char *name, ox_tensor *k);
ox_tensor *ox_const_new(ox_ctx *c, bool is_int, int rank, const int64_t *dims);
/* Error about the current node: "FILE: node 'NAME' (OP): msg". */
kiln_status ox_fail(ox_ctx *c, kiln_status st, const char *fmt, ...) KILN_PRINTF(3, 4);
/* Attributes by name; `def` when absent. */
const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name);
int64_t ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t def);
float ox_attr_f(const Onnx__NodeProto *n, const char *name, float def);
/* An ints attribute: count (-1 when absent), values in *v. */
int ox_attr_ints(const Onnx__NodeProto *n, const char *name, const int64_t **v);
/* A TensorProto into a host constant in the scratch arena. */
kiln_status ox_tensor_from_proto(ox_ctx *c, const Onnx__TensorProto *t, const char *what,
                                 ox_tensor **out);
#endif

#endif

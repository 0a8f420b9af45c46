/*
 * onnx_export.c — a module's inference function out as an ONNX model
 * (opset 13), serialized by the packer protoc-c generates from onnx.proto.
 *
 * Before and after, for examples/fashion_cnn.kiln:
 *
 *   %0 = conv2d(%x, @c1.kernel, @c1.bias) {activation=relu} : f32[?,26,26,32]
 *   %1 = max_pool2d(%0) : f32[?,13,13,32]
 *   ...
 *   %4 = reshape(%3) {shape=[?,1600]} : f32[?,1600]
 *   %6 = matmul(%4, @p.kernel) : f32[?,10]
 *   %7 = add(%6, @p.bias) : f32[?,10]
 *   %8 = softmax(%7) {axis=1} : f32[?,10]
 *
 *   x [batch,28,28,1] -> Transpose(0,3,1,2) -> Conv(c1.kernel, c1.bias) -> Relu
 *     -> MaxPool -> ... -> Transpose(0,2,3,1) -> Reshape([-1,1600])
 *     -> Gemm(p.kernel, p.bias) -> Softmax(axis=1) -> output
 *
 * Layout. The exported model takes and returns what Kiln's does (NHWC
 * images). ONNX's Conv, MaxPool, AveragePool and BatchNormalization work on
 * channels-first data, so every value has up to two names: in Kiln's order
 * ("plain") and channels-first ("cf": Kiln's axes permuted by
 * [0, r-1, 1, ..., r-2], NCHW for images). A Transpose is emitted only when
 * an op needs the order a value does not have yet, so a chain of convs,
 * pools, batch normalizations and elementwise ops stays NCHW between one
 * Transpose in and one out. Conv kernels, [kh,kw,in,out] in Kiln, are
 * written permuted to ONNX's [out,in,kh,kw] under their Kiln names; every
 * other initializer is the parameter as Kiln holds it, under its name.
 *
 * It is the inference graph: dropout is the identity and batch
 * normalization uses the moving statistics (what the pass inference-mode
 * makes of them). An op with no ONNX counterpart (losses, gradients,
 * optimizer updates) is an error at the node's place, all of them listed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx.h"

#ifndef KILN_HAVE_ONNX

kiln_status kiln_onnx_export_bytes(const kiln_module *m, void **bytes, size_t *len,
                                   kiln_diag *d) {
    if (bytes) *bytes = NULL;
    if (len) *len = 0;
    return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                    "ONNX export: this Kiln was built without ONNX support (protobuf-c and "
                    "libonnx-dev were missing at build time)");
}

#else

#define OPSET 13
#define IR_VERSION 7 /* the ONNX IR version that goes with opset 13 */

enum { T_FLOAT = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, T_INT32 = ONNX__TENSOR_PROTO__DATA_TYPE__INT32,
       T_INT64 = ONNX__TENSOR_PROTO__DATA_TYPE__INT64, T_BOOL = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL };

/* The ONNX names of one IR value (NULL: not made yet). */
typedef struct ex_val {
    const char *plain, *cf;
} ex_val;

typedef struct ex_ctx {
    const kiln_module *m;
    const kiln_func *f;
    kiln_diag *d;
    ir_arena a;
    kiln_status st;
    Onnx__NodeProto **nodes;
    int n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    int n_inits, cap_inits;
    ex_val *vals;     /* by node serial */
    int *uses;        /* by node serial */
    bool *live;       /* by node serial: reaches a result */
    const char **gname_plain, **gname_oihw; /* initializers made, by global index */
    bool *g_other;    /* by global index: used other than as a conv kernel */
    const char **taken; /* open addressing: names in use */
    int taken_cap, n_taken;
    const char *batch; /* int64 [1]: the batch size at run time, or NULL */
} ex_ctx;

static void *ex_alloc(ex_ctx *c, size_t n) {
    void *p = ir_arena_alloc(&c->a, n ? n : 1);
    if (!p && !c->st) c->st = ir_oom(c->d);
    return p;
}

/* ------------------------------------------------------------- names */

static bool name_taken(ex_ctx *c, const char *s) {
    if (!c->taken_cap) return false;
    for (uint64_t h = ir_hash_bytes(s, strlen(s), 0);; h++) {
        const char *t = c->taken[h & (uint64_t)(c->taken_cap - 1)];
        if (!t) return false;
        if (strcmp(t, s) == 0) return true;
    }
}

static bool take_name(ex_ctx *c, const char *s) {
    if ((c->n_taken + 1) * 2 > c->taken_cap) {
        int cap = c->taken_cap ? c->taken_cap * 2 : 256;
        const char **t = ir_calloc((size_t)cap, sizeof *t);
        if (!t) {
            if (!c->st) c->st = ir_oom(c->d);
            return false;
        }
        for (int k = 0; k < c->taken_cap; k++) {
            if (!c->taken[k]) continue;
            uint64_t h = ir_hash_bytes(c->taken[k], strlen(c->taken[k]), 0);
            while (t[h & (uint64_t)(cap - 1)]) h++;
            t[h & (uint64_t)(cap - 1)] = c->taken[k];
        }
        ir_free(c->taken);
        c->taken = t;
        c->taken_cap = cap;
    }
    uint64_t h = ir_hash_bytes(s, strlen(s), 0);
    while (c->taken[h & (uint64_t)(c->taken_cap - 1)]) h++;
    c->taken[h & (uint64_t)(c->taken_cap - 1)] = s;
    c->n_taken++;
    return true;
}

/* A name no other value has: `base`, else base_1, base_2, ... */
static const char *fresh(ex_ctx *c, const char *base) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", base);
    for (int k = 1; name_taken(c, buf); k++) snprintf(buf, sizeof buf, "%s_%d", base, k);
    char *s = ir_arena_strdup(&c->a, buf);
    if (!s) {
        if (!c->st) c->st = ir_oom(c->d);
        return NULL;
    }
    return take_name(c, s) ? s : NULL;
}

/* ------------------------------------------------------ protobuf builders */

static bool push_node(ex_ctx *c, Onnx__NodeProto *n) {
    if (!IR_GROW(c->nodes, c->cap_nodes, c->n_nodes + 1)) {
        if (!c->st) c->st = ir_oom(c->d);
        return false;
    }
    c->nodes[c->n_nodes++] = n;
    return true;
}

/* A node op(in...) -> one fresh output named after `out` (NULL: the op). */
static Onnx__NodeProto *node(ex_ctx *c, const char *op, int n_in, const char *const *in,
                             const char *out) {
    if (c->st) return NULL;
    for (int k = 0; k < n_in; k++)
        if (!in[k]) return NULL;
    Onnx__NodeProto *n = ex_alloc(c, sizeof *n);
    char **ins = ex_alloc(c, sizeof *ins * (size_t)(n_in ? n_in : 1));
    char **outs = ex_alloc(c, sizeof *outs);
    if (!n || !ins || !outs) return NULL;
    Onnx__NodeProto init = ONNX__NODE_PROTO__INIT;
    *n = init;
    for (int k = 0; k < n_in; k++) ins[k] = (char *)in[k];
    const char *o = fresh(c, out ? out : op);
    if (!o) return NULL;
    outs[0] = (char *)o;
    n->n_input = (size_t)n_in;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    n->name = outs[0];
    n->op_type = (char *)op;
    return push_node(c, n) ? n : NULL;
}

static const char *out_of(const Onnx__NodeProto *n) { return n ? n->output[0] : NULL; }

static Onnx__AttributeProto *attr(ex_ctx *c, Onnx__NodeProto *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type) {
    if (!n) return NULL;
    Onnx__AttributeProto *a = ex_alloc(c, sizeof *a);
    Onnx__AttributeProto **list = ex_alloc(c, sizeof *list * (n->n_attribute + 1));
    if (!a || !list) return NULL;
    Onnx__AttributeProto init = ONNX__ATTRIBUTE_PROTO__INIT;
    *a = init;
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    if (n->n_attribute) memcpy(list, n->attribute, sizeof *list * n->n_attribute);
    list[n->n_attribute++] = a;
    n->attribute = list;
    return a;
}

static void attr_i(ex_ctx *c, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(c, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
}

static void attr_f(ex_ctx *c, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = attr(c, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
}

static void attr_ints(ex_ctx *c, Onnx__NodeProto *n, const char *name, int k, const int64_t *v) {
    Onnx__AttributeProto *a = attr(c, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *copy = ex_alloc(c, sizeof *copy * (size_t)(k ? k : 1));
    if (!a || !copy) return;
    memcpy(copy, v, sizeof *copy * (size_t)k);
    a->n_ints = (size_t)k;
    a->ints = copy;
}

/* A tensor of `dtype` (T_FLOAT and T_INT32: 4 bytes, T_INT64: 8) with its
 * data as raw little-endian bytes (copied). */
static Onnx__TensorProto *tensor(ex_ctx *c, const char *name, int dtype, int rank,
                                 const int64_t *dims, const void *data) {
    Onnx__TensorProto *t = ex_alloc(c, sizeof *t);
    int64_t *dd = ex_alloc(c, sizeof *dd * (size_t)(rank ? rank : 1));
    if (!t || !dd) return NULL;
    Onnx__TensorProto init = ONNX__TENSOR_PROTO__INIT;
    *t = init;
    int64_t n = 1;
    for (int k = 0; k < rank; k++) dd[k] = dims[k], n *= dims[k];
    size_t bytes = (size_t)n * (dtype == T_INT64 ? 8 : dtype == T_BOOL ? 1 : 4);
    void *raw = ex_alloc(c, bytes);
    if (!raw) return NULL;
    if (bytes) memcpy(raw, data, bytes); /* x86-64 and arm64: little-endian as ONNX */
    t->name = (char *)name;
    t->n_dims = (size_t)rank;
    t->dims = dd;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = raw;
    return t;
}

/* An initializer named `name` (taken already); returns the name. */
static const char *init_as(ex_ctx *c, const char *name, int dtype, int rank, const int64_t *dims,
                           const void *data) {
    Onnx__TensorProto *t = name ? tensor(c, name, dtype, rank, dims, data) : NULL;
    if (!t) return NULL;
    if (!IR_GROW(c->inits, c->cap_inits, c->n_inits + 1)) {
        if (!c->st) c->st = ir_oom(c->d);
        return NULL;
    }
    c->inits[c->n_inits++] = t;
    return name;
}

/* An initializer named after `base`; returns its name. */
static const char *init(ex_ctx *c, const char *base, int dtype, int rank, const int64_t *dims,
                        const void *data) {
    return init_as(c, fresh(c, base), dtype, rank, dims, data);
}

static const char *init_i64(ex_ctx *c, const char *base, int n, const int64_t *v) {
    int64_t dims[1] = {n};
    return init(c, base, T_INT64, 1, dims, v);
}

static const char *init_f32_scalar(ex_ctx *c, const char *base, float v) {
    return init(c, base, T_FLOAT, 0, NULL, &v);
}

/* ----------------------------------------------------------- values */

static int onnx_dtype(const ir_type *t) { return t->dtype == IR_I32 ? T_INT32 : T_FLOAT; }

/* perm of channels-first order over Kiln's axes, and its inverse. */
static void cf_perm(int r, int64_t *to_cf, int64_t *to_plain) {
    to_cf[0] = 0;
    to_plain[0] = 0;
    if (r < 2) return;
    to_cf[1] = r - 1;
    for (int k = 2; k < r; k++) to_cf[k] = k - 1;
    for (int k = 0; k < r; k++) to_plain[to_cf[k]] = k;
}

/* Channels-first position of Kiln axis a (rank r). */
static int cf_axis(int r, int a) { return a == 0 || r < 3 ? a : a == r - 1 ? 1 : a + 1; }

static const char *global_plain(ex_ctx *c, const ir_node *n);

/* Value n in Kiln's order. */
static const char *plain(ex_ctx *c, const ir_node *n) {
    if (n->op == IR_GLOBAL) return global_plain(c, n);
    ex_val *v = &c->vals[n->serial];
    if (!v->plain && v->cf) {
        int64_t to_cf[KILN_MAX_RANK], to_plain[KILN_MAX_RANK];
        cf_perm(n->type.rank, to_cf, to_plain);
        Onnx__NodeProto *t = node(c, "Transpose", 1, &v->cf, "to_nhwc");
        attr_ints(c, t, "perm", n->type.rank, to_plain);
        v->plain = out_of(t);
    }
    if (!v->plain && !c->st)
        c->st = ir_error(c->d, KILN_ERR_UNSUPPORTED, n->loc, "ONNX export: value %%%d has no ONNX name",
                         n->serial);
    return v->plain;
}

/* Value n channels-first. */
static const char *chfirst(ex_ctx *c, const ir_node *n) {
    if (n->type.rank < 3) return plain(c, n);
    ex_val *v = n->op == IR_GLOBAL ? NULL : &c->vals[n->serial];
    if (v && v->cf) return v->cf;
    const char *p = plain(c, n);
    int64_t to_cf[KILN_MAX_RANK], to_plain[KILN_MAX_RANK];
    cf_perm(n->type.rank, to_cf, to_plain);
    Onnx__NodeProto *t = node(c, "Transpose", 1, &p, "to_nchw");
    attr_ints(c, t, "perm", n->type.rank, to_cf);
    if (v) v->cf = out_of(t);
    return out_of(t);
}

static bool has_cf(ex_ctx *c, const ir_node *n) {
    return n->op != IR_GLOBAL && n->type.rank >= 3 && c->vals[n->serial].cf;
}

static const char *global_plain(ex_ctx *c, const ir_node *n) {
    const ir_global *g = c->m->globals[n->index];
    if (c->gname_plain[g->index]) return c->gname_plain[g->index];
    if (!g->data) {
        if (!c->st)
            c->st = ir_error(c->d, KILN_ERR_INVALID, n->loc,
                             "ONNX export: parameter '%s' has no value (load the weights first)",
                             g->name);
        return NULL;
    }
    const char *name =
        init_as(c, g->name, onnx_dtype(&g->type), g->type.rank, g->type.dims, g->data);
    c->gname_plain[g->index] = name;
    return name;
}

/* A conv kernel [kh,kw,in,out] as ONNX's [out,in,kh,kw]: a permuted
 * initializer under the parameter's name (or name.oihw when the parameter
 * is used in Kiln's order too), else a Transpose of a computed value. */
static const char *kernel_oihw(ex_ctx *c, const ir_node *k) {
    static const int64_t perm[4] = {3, 2, 0, 1};
    if (k->op != IR_GLOBAL) {
        const char *p = plain(c, k);
        Onnx__NodeProto *t = node(c, "Transpose", 1, &p, "kernel_oihw");
        attr_ints(c, t, "perm", 4, perm);
        return out_of(t);
    }
    const ir_global *g = c->m->globals[k->index];
    if (c->gname_oihw[g->index]) return c->gname_oihw[g->index];
    if (!g->data) return global_plain(c, k); /* the error */
    const int64_t *s = g->type.dims; /* kh, kw, ci, co */
    int64_t dims[4] = {s[3], s[2], s[0], s[1]};
    float *w = ir_malloc(sizeof *w * (size_t)(s[0] * s[1] * s[2] * s[3]) + 1);
    if (!w) {
        if (!c->st) c->st = ir_oom(c->d);
        return NULL;
    }
    const float *src = g->data;
    for (int64_t y = 0; y < s[0]; y++)
        for (int64_t x = 0; x < s[1]; x++)
            for (int64_t i = 0; i < s[2]; i++)
                for (int64_t o = 0; o < s[3]; o++)
                    w[((o * s[2] + i) * s[0] + y) * s[1] + x] = src[((y * s[1] + x) * s[2] + i) * s[3] + o];
    char base[256];
    snprintf(base, sizeof base, "%s.oihw", g->name);
    const char *name = c->g_other[g->index] ? init(c, base, T_FLOAT, 4, dims, w)
                                            : init_as(c, g->name, T_FLOAT, 4, dims, w);
    ir_free(w);
    c->gname_oihw[g->index] = name;
    return name;
}

/* The batch size at run time as int64 [1] (from the first argument with
 * a batch axis), made once. */
static const char *batch_size(ex_ctx *c, ir_loc loc) {
    if (c->batch) return c->batch;
    for (int i = 0; i < c->f->n_args; i++) {
        const ir_node *a = c->f->args[i];
        int b = ir_type_batch_axis(&a->type);
        if (b < 0) continue;
        const char *x = plain(c, a);
        const char *shape = out_of(node(c, "Shape", 1, &x, "shape"));
        int64_t s = b, e = b + 1;
        const char *in[3] = {shape, init_i64(c, "start", 1, &s), init_i64(c, "end", 1, &e)};
        c->batch = out_of(node(c, "Slice", 3, in, "batch"));
        return c->batch;
    }
    if (!c->st)
        c->st = ir_error(c->d, KILN_ERR_UNSUPPORTED, loc,
                         "ONNX export: a shape with the batch '?' in a function with no batch input");
    return NULL;
}

/* A 1-D int64 tensor holding `dims`, the batch '?' bound at run time. */
static const char *shape_of(ex_ctx *c, int rank, const int64_t *dims, ir_loc loc) {
    int b = -1;
    for (int k = 0; k < rank; k++)
        if (dims[k] == KILN_BATCH) b = k;
    if (b < 0) return init_i64(c, "shape", rank, dims);
    const char *parts[3];
    int n = 0;
    if (b > 0) parts[n++] = init_i64(c, "shape", b, dims);
    parts[n++] = batch_size(c, loc);
    if (b + 1 < rank) parts[n++] = init_i64(c, "shape", rank - b - 1, dims + b + 1);
    Onnx__NodeProto *cat = node(c, "Concat", n, parts, "shape");
    attr_i(c, cat, "axis", 0);
    return out_of(cat);
}

/* ------------------------------------------------------------- ops */

/* An op's result: channels-first or in Kiln's order. */
static void set_val(ex_val *v, bool cf, const char *name) {
    if (cf)
        v->cf = name;
    else
        v->plain = name;
}

static const char *const ACT_ONNX[][2] = {
    {"relu", "Relu"}, {"sigmoid", "Sigmoid"}, {"tanh", "Tanh"}, {"leaky_relu", "LeakyRelu"},
    {"neg", "Neg"},   {"exp", "Exp"},         {"log", "Log"},   {"sqrt", "Sqrt"},
};

static const char *unary_onnx(int op) {
    const char *name = ir_op_name(op);
    for (size_t k = 0; k < sizeof ACT_ONNX / sizeof ACT_ONNX[0]; k++)
        if (strcmp(ACT_ONNX[k][0], name) == 0) return ACT_ONNX[k][1];
    return NULL;
}

/* The activation `act` (an opcode, 0: none) of a carrier applied to x. */
static const char *activation(ex_ctx *c, const ir_node *n, int64_t act, const char *x) {
    if (!act) return x;
    const char *op = unary_onnx((int)act);
    if (!op) {
        if (!c->st)
            c->st = ir_error(c->d, KILN_ERR_UNSUPPORTED, n->loc,
                             "ONNX export: activation '%s' has no ONNX mapping",
                             ir_op_name((int)act));
        return NULL;
    }
    Onnx__NodeProto *a = node(c, op, 1, &x, ir_op_name((int)act));
    if (act == IR_OP_leaky_relu) attr_f(c, a, "alpha", (float)ir_attr_f(n, "alpha"));
    return out_of(a);
}

/* Conv and pool pads: [top, left, bottom, right] of TF/Keras' "same". */
static void same_pads(const ir_node *n, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
                      int64_t dw, int64_t pads[4]) {
    const int64_t in[2] = {n->in[0]->type.dims[1], n->in[0]->type.dims[2]};
    const int64_t k[2] = {kh, kw}, s[2] = {sh, sw}, dl[2] = {dh, dw};
    memset(pads, 0, sizeof(int64_t) * 4);
    if (ir_attr_i(n, "padding") != 1) return;
    for (int a = 0; a < 2; a++) {
        int64_t out = (in[a] + s[a] - 1) / s[a];
        int64_t total = (out - 1) * s[a] + (k[a] - 1) * dl[a] + 1 - in[a];
        if (total < 0) total = 0;
        pads[a] = total / 2;
        pads[a + 2] = total - total / 2;
    }
}

static int64_t at_or(const int64_t *v, int n, int k, int64_t dflt) { return k < n ? v[k] : dflt; }

static kiln_status ex_conv2d(ex_ctx *c, const ir_node *n, ex_val *v) {
    const int64_t *s, *dl;
    int ns = ir_attr_ints(n, "strides", &s), nd = ir_attr_ints(n, "dilation", &dl);
    int64_t strides[2] = {at_or(s, ns, 0, 1), at_or(s, ns, 1, at_or(s, ns, 0, 1))};
    int64_t dil[2] = {at_or(dl, nd, 0, 1), at_or(dl, nd, 1, at_or(dl, nd, 0, 1))};
    const int64_t *kd = n->in[1]->type.dims;
    int64_t pads[4];
    same_pads(n, kd[0], kd[1], strides[0], strides[1], dil[0], dil[1], pads);
    const char *in[3] = {chfirst(c, n->in[0]), kernel_oihw(c, n->in[1]), plain(c, n->in[2])};
    Onnx__NodeProto *conv = node(c, "Conv", 3, in, "conv2d");
    int64_t ks[2] = {kd[0], kd[1]};
    attr_ints(c, conv, "kernel_shape", 2, ks);
    attr_ints(c, conv, "strides", 2, strides);
    attr_ints(c, conv, "dilations", 2, dil);
    attr_ints(c, conv, "pads", 4, pads);
    v->cf = activation(c, n, ir_attr_i(n, "activation"), out_of(conv));
    return c->st;
}

static kiln_status ex_pool(ex_ctx *c, const ir_node *n, ex_val *v) {
    const int64_t *p, *s;
    int np = ir_attr_ints(n, "pool_size", &p), ns = ir_attr_ints(n, "strides", &s);
    int64_t ks[2] = {at_or(p, np, 0, 1), at_or(p, np, 1, at_or(p, np, 0, 1))};
    int64_t strides[2] = {at_or(s, ns, 0, 1), at_or(s, ns, 1, at_or(s, ns, 0, 1))};
    int64_t pads[4];
    same_pads(n, ks[0], ks[1], strides[0], strides[1], 1, 1, pads);
    const char *x = chfirst(c, n->in[0]);
    bool max = n->op == IR_OP_max_pool2d;
    Onnx__NodeProto *pool = node(c, max ? "MaxPool" : "AveragePool", 1, &x, ir_op_name(n->op));
    attr_ints(c, pool, "kernel_shape", 2, ks);
    attr_ints(c, pool, "strides", 2, strides);
    attr_ints(c, pool, "pads", 4, pads);
    /* Keras divides by the cells inside the image (ONNX's default). */
    if (!max) attr_i(c, pool, "count_include_pad", 0);
    v->cf = out_of(pool);
    return c->st;
}

static kiln_status ex_batch_norm(ex_ctx *c, const ir_node *n, ex_val *v) {
    const char *in[5] = {chfirst(c, n->in[0]), plain(c, n->in[1]), plain(c, n->in[2]),
                         plain(c, n->in[3]), plain(c, n->in[4])};
    Onnx__NodeProto *bn = node(c, "BatchNormalization", 5, in, "batch_norm");
    attr_f(c, bn, "epsilon", (float)ir_attr_f(n, "epsilon"));
    set_val(v, n->type.rank >= 3, out_of(bn));
    return c->st;
}

/* add(matmul(x, w), b) with b a vector of the result's columns: Gemm. */
static const ir_node *gemm_bias(ex_ctx *c, const ir_node *n, const ir_node **mm) {
    if (n->op != IR_OP_add || n->type.rank != 2) return NULL;
    for (int k = 0; k < 2; k++) {
        const ir_node *a = n->in[k], *b = n->in[1 - k];
        if (a->op == IR_OP_matmul && c->uses[a->serial] == 1 && b->type.rank == 1 &&
            b->type.dtype == IR_F32 && b->type.dims[0] == n->type.dims[1]) {
            *mm = a;
            return b;
        }
    }
    return NULL;
}

/* Gemm(a, b[, bias]) with the transposes of a matmul. */
static const char *gemm(ex_ctx *c, const ir_node *mm, const ir_node *bias, const char *base) {
    const char *in[3] = {plain(c, mm->in[0]), plain(c, mm->in[1]), bias ? plain(c, bias) : NULL};
    Onnx__NodeProto *g = node(c, "Gemm", bias ? 3 : 2, in, base);
    if (ir_attr_i(mm, "transpose_a")) attr_i(c, g, "transA", 1);
    if (ir_attr_i(mm, "transpose_b")) attr_i(c, g, "transB", 1);
    return out_of(g);
}

static const char *const BINARY_ONNX[][2] = {
    {"add", "Add"}, {"sub", "Sub"}, {"mul", "Mul"}, {"div", "Div"},
    {"maximum", "Max"}, {"minimum", "Min"}, {"equal", "Equal"}, {"greater", "Greater"},
};

/* Broadcast ops keep channels-first when every operand is a scalar or a
 * value of the result's shape that has it already (or can take it). */
static bool binary_cf(ex_ctx *c, const ir_node *n) {
    if (n->type.rank < 3) return false;
    bool any = false;
    for (int k = 0; k < n->n_in; k++) {
        const ir_type *t = &n->in[k]->type;
        if (t->rank == 0) continue;
        if (t->rank != n->type.rank || memcmp(t->dims, n->type.dims, sizeof(int64_t) * (size_t)t->rank))
            return false;
        any |= has_cf(c, n->in[k]);
    }
    return any;
}

static kiln_status ex_binary(ex_ctx *c, const ir_node *n, ex_val *v) {
    const ir_node *mm = NULL, *bias = gemm_bias(c, n, &mm);
    if (bias) {
        v->plain = gemm(c, mm, bias, "dense");
        return c->st;
    }
    const char *op = NULL;
    for (size_t k = 0; k < sizeof BINARY_ONNX / sizeof BINARY_ONNX[0]; k++)
        if (strcmp(BINARY_ONNX[k][0], ir_op_name(n->op)) == 0) op = BINARY_ONNX[k][1];
    bool cf = binary_cf(c, n);
    const char *in[2];
    for (int k = 0; k < 2; k++) in[k] = cf ? chfirst(c, n->in[k]) : plain(c, n->in[k]);
    const char *out = out_of(node(c, op, 2, in, ir_op_name(n->op)));
    if (n->op == IR_OP_equal || n->op == IR_OP_greater) { /* bool -> Kiln's i32 0/1 */
        Onnx__NodeProto *cast = node(c, "Cast", 1, &out, "cast");
        attr_i(c, cast, "to", T_INT32);
        out = out_of(cast);
    }
    set_val(v, cf, out);
    return c->st;
}

static kiln_status ex_select(ex_ctx *c, const ir_node *n, ex_val *v) {
    const char *cond = plain(c, n->in[0]);
    Onnx__NodeProto *cast = node(c, "Cast", 1, &cond, "cond");
    attr_i(c, cast, "to", T_BOOL);
    const char *in[3] = {out_of(cast), plain(c, n->in[1]), plain(c, n->in[2])};
    v->plain = out_of(node(c, "Where", 3, in, "select"));
    return c->st;
}

/* Elementwise ops of one operand keep the operand's order. */
static kiln_status ex_unary(ex_ctx *c, const ir_node *n, ex_val *v) {
    bool cf = has_cf(c, n->in[0]);
    const char *x = cf ? chfirst(c, n->in[0]) : plain(c, n->in[0]);
    Onnx__NodeProto *u;
    if (n->op == IR_OP_pow) {
        const char *in[2] = {x, init_f32_scalar(c, "exponent", (float)ir_attr_f(n, "exponent"))};
        u = node(c, "Pow", 2, in, "pow");
    } else if (n->op == IR_OP_cast) {
        u = node(c, "Cast", 1, &x, "cast");
        attr_i(c, u, "to", onnx_dtype(&n->type));
    } else {
        u = node(c, unary_onnx(n->op), 1, &x, ir_op_name(n->op));
        if (n->op == IR_OP_leaky_relu) attr_f(c, u, "alpha", (float)ir_attr_f(n, "alpha"));
    }
    set_val(v, cf, out_of(u));
    return c->st;
}

static kiln_status ex_reduce(ex_ctx *c, const ir_node *n, ex_val *v) {
    const ir_type *t = &n->in[0]->type;
    int r = t->rank;
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    bool red[KILN_MAX_RANK] = {0};
    for (int k = 0; k < r; k++) red[k] = na == 0;
    for (int k = 0; k < na; k++) red[axes[k]] = true;
    bool keep = ir_attr_i(n, "keepdims") != 0;
    /* Channels-first when the axes left come out in Kiln's order. */
    bool cf = has_cf(c, n->in[0]) && r >= 3;
    if (cf && !keep) {
        int64_t to_cf[KILN_MAX_RANK], to_plain[KILN_MAX_RANK];
        cf_perm(r, to_cf, to_plain);
        int last = -1;
        for (int p = 0; p < r && cf; p++) {
            int a = (int)to_cf[p];
            if (red[a]) continue;
            cf = a > last;
            last = a;
        }
    }
    int64_t ax[KILN_MAX_RANK];
    int k = 0;
    for (int a = 0; a < r; a++)
        if (red[a]) ax[k++] = cf ? cf_axis(r, a) : a;
    const char *x = cf ? chfirst(c, n->in[0]) : plain(c, n->in[0]);
    Onnx__NodeProto *red_n;
    if (n->op == IR_OP_reduce_sum) { /* opset 13: the axes are an operand */
        const char *in[2] = {x, init_i64(c, "axes", k, ax)};
        red_n = node(c, "ReduceSum", 2, in, "reduce_sum");
    } else {
        red_n = node(c, n->op == IR_OP_reduce_mean ? "ReduceMean" : "ReduceMax", 1, &x,
                     ir_op_name(n->op));
        attr_ints(c, red_n, "axes", k, ax);
    }
    attr_i(c, red_n, "keepdims", keep);
    set_val(v, cf && keep, out_of(red_n));
    return c->st;
}

static kiln_status ex_softmax(ex_ctx *c, const ir_node *n, ex_val *v) {
    int r = n->type.rank, axis = (int)ir_attr_i(n, "axis");
    bool cf = has_cf(c, n->in[0]);
    const char *x = cf ? chfirst(c, n->in[0]) : plain(c, n->in[0]);
    Onnx__NodeProto *s =
        node(c, n->op == IR_OP_softmax ? "Softmax" : "LogSoftmax", 1, &x, ir_op_name(n->op));
    attr_i(c, s, "axis", cf ? cf_axis(r, axis) : axis);
    set_val(v, cf, out_of(s));
    return c->st;
}

static kiln_status ex_argmax(ex_ctx *c, const ir_node *n, ex_val *v) {
    const char *x = plain(c, n->in[0]);
    Onnx__NodeProto *a = node(c, "ArgMax", 1, &x, "argmax");
    attr_i(c, a, "axis", ir_attr_i(n, "axis"));
    attr_i(c, a, "keepdims", 0);
    const char *o = out_of(a);
    Onnx__NodeProto *cast = node(c, "Cast", 1, &o, "argmax_i32");
    attr_i(c, cast, "to", T_INT32);
    v->plain = out_of(cast);
    return c->st;
}

static kiln_status ex_reshape(ex_ctx *c, const ir_node *n, ex_val *v) {
    int64_t dims[KILN_MAX_RANK];
    for (int k = 0; k < n->type.rank; k++)
        dims[k] = n->type.dims[k] == KILN_BATCH ? -1 : n->type.dims[k];
    const char *in[2] = {plain(c, n->in[0]), init_i64(c, "shape", n->type.rank, dims)};
    v->plain = out_of(node(c, "Reshape", 2, in, "reshape"));
    return c->st;
}

static kiln_status ex_transpose(ex_ctx *c, const ir_node *n, ex_val *v) {
    const int64_t *perm;
    int k = ir_attr_ints(n, "perm", &perm), r = n->type.rank;
    int64_t p[KILN_MAX_RANK];
    for (int a = 0; a < r; a++) p[a] = k ? perm[a] : r - 1 - a;
    /* From a channels-first value: one Transpose, composed (none when
     * the result is that value). */
    bool cf = has_cf(c, n->in[0]) && !c->vals[n->in[0]->serial].plain, same = true;
    for (int a = 0; a < r && cf; a++) {
        p[a] = cf_axis(r, (int)p[a]);
        same &= p[a] == a;
    }
    const char *x = cf ? chfirst(c, n->in[0]) : plain(c, n->in[0]);
    if (cf && same) {
        v->plain = x;
        return c->st;
    }
    Onnx__NodeProto *t = node(c, "Transpose", 1, &x, "transpose");
    attr_ints(c, t, "perm", r, p);
    v->plain = out_of(t);
    return c->st;
}

static kiln_status ex_matmul(ex_ctx *c, const ir_node *n, ex_val *v) {
    if (ir_attr_i(n, "transpose_a") || ir_attr_i(n, "transpose_b")) {
        v->plain = gemm(c, n, NULL, "matmul");
    } else {
        const char *in[2] = {plain(c, n->in[0]), plain(c, n->in[1])};
        v->plain = out_of(node(c, "MatMul", 2, in, "matmul"));
    }
    return c->st;
}

static kiln_status ex_dense(ex_ctx *c, const ir_node *n, ex_val *v) {
    const char *in[3] = {plain(c, n->in[0]), plain(c, n->in[1]), plain(c, n->in[2])};
    const char *g = out_of(node(c, "Gemm", 3, in, "dense"));
    v->plain = activation(c, n, ir_attr_i(n, "activation"), g);
    return c->st;
}

static kiln_status ex_constant(ex_ctx *c, const ir_node *n, ex_val *v) {
    float f = (float)ir_attr_f(n, "value");
    int32_t i = (int32_t)ir_attr_f(n, "value");
    int dt = onnx_dtype(&n->type);
    const char *shape = shape_of(c, n->type.rank, n->type.dims, n->loc);
    Onnx__NodeProto *k = node(c, "ConstantOfShape", 1, &shape, "constant");
    int64_t one = 1;
    Onnx__TensorProto *val = tensor(c, "value", dt, 1, &one, dt == T_INT32 ? (void *)&i : (void *)&f);
    Onnx__AttributeProto *a = attr(c, k, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    if (a) a->t = val;
    v->plain = out_of(k);
    return c->st;
}

static kiln_status ex_broadcast_to(ex_ctx *c, const ir_node *n, ex_val *v) {
    const ir_type *x = &n->in[0]->type;
    int64_t dims[KILN_MAX_RANK];
    int r = n->type.rank;
    /* A batch axis the operand has broadcasts from 1 (Expand's rule);
     * one it lacks needs the run-time batch. */
    bool need_batch = false;
    for (int k = 0; k < r; k++) {
        dims[k] = n->type.dims[k];
        int xk = k - (r - x->rank);
        if (dims[k] == KILN_BATCH) {
            if (xk >= 0 && x->dims[xk] == KILN_BATCH)
                dims[k] = 1;
            else
                need_batch = true;
        }
    }
    const char *in[2] = {plain(c, n->in[0]),
                         need_batch ? shape_of(c, r, dims, n->loc) : init_i64(c, "shape", r, dims)};
    v->plain = out_of(node(c, "Expand", 2, in, "broadcast_to"));
    return c->st;
}

/* Pad in Kiln's order: pads [before..., after...] (negative ones crop, as
 * ONNX's do), the value of the operand's type. */
static kiln_status ex_pad(ex_ctx *c, const ir_node *n, ex_val *v) {
    const int64_t *bf, *af;
    int r = ir_attr_ints(n, "before", &bf);
    ir_attr_ints(n, "after", &af);
    int64_t pads[2 * KILN_MAX_RANK];
    for (int a = 0; a < r; a++) pads[a] = bf[a], pads[r + a] = af[a];
    double val = ir_attr_f(n, "value");
    float f = (float)val;
    int32_t i = (int32_t)val;
    const char *in[3] = {plain(c, n->in[0]), init_i64(c, "pads", 2 * r, pads),
                         n->type.dtype == IR_I32 ? init(c, "value", T_INT32, 0, NULL, &i)
                                                 : init(c, "value", T_FLOAT, 0, NULL, &f)};
    Onnx__NodeProto *pad = node(c, "Pad", 3, in, "pad");
    int64_t mode = ir_attr_i(n, "mode");
    if (mode) { /* ONNX's names: constant (the default), reflect, edge */
        Onnx__AttributeProto *a = attr(c, pad, "mode", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
        const char *s = mode == 1 ? "reflect" : "edge";
        if (a) a->has_s = 1, a->s.data = (uint8_t *)s, a->s.len = strlen(s);
    }
    v->plain = out_of(pad);
    return c->st;
}

static kiln_status ex_one_hot(ex_ctx *c, const ir_node *n, ex_val *v) {
    int64_t depth = ir_attr_i(n, "depth");
    float vals[2] = {0, 1};
    int64_t two = 2;
    /* int64 indices: ONNX Runtime has no OneHot for int32 ones. */
    const char *idx = plain(c, n->in[0]);
    Onnx__NodeProto *cast = node(c, "Cast", 1, &idx, "labels");
    attr_i(c, cast, "to", T_INT64);
    const char *in[3] = {out_of(cast), init_i64(c, "depth", 1, &depth),
                         init(c, "one_hot_values", T_FLOAT, 1, &two, vals)};
    Onnx__NodeProto *o = node(c, "OneHot", 3, in, "one_hot");
    attr_i(c, o, "axis", -1);
    v->plain = out_of(o);
    return c->st;
}

static kiln_status ex_numel(ex_ctx *c, const ir_node *n, ex_val *v) {
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    const char *x = plain(c, n->in[0]), *count;
    if (na == 0) {
        count = out_of(node(c, "Size", 1, &x, "size"));
    } else {
        const char *in[2] = {out_of(node(c, "Shape", 1, &x, "shape")), init_i64(c, "axes", na, axes)};
        Onnx__NodeProto *g = node(c, "Gather", 2, in, "dims");
        attr_i(c, g, "axis", 0);
        const char *dims = out_of(g);
        Onnx__NodeProto *p = node(c, "ReduceProd", 1, &dims, "count");
        attr_i(c, p, "keepdims", 0);
        count = out_of(p);
    }
    Onnx__NodeProto *cast = node(c, "Cast", 1, &count, "numel");
    attr_i(c, cast, "to", T_FLOAT);
    v->plain = out_of(cast);
    return c->st;
}

/* The exporter of each op, or NULL: no ONNX mapping. */
typedef kiln_status (*ex_fn)(ex_ctx *c, const ir_node *n, ex_val *v);

static ex_fn ex_find(int op) {
    switch (op) {
    case IR_OP_neg: case IR_OP_exp: case IR_OP_log: case IR_OP_sqrt: case IR_OP_pow:
    case IR_OP_relu: case IR_OP_leaky_relu: case IR_OP_sigmoid: case IR_OP_tanh: case IR_OP_cast:
        return ex_unary;
    case IR_OP_add: case IR_OP_sub: case IR_OP_mul: case IR_OP_div: case IR_OP_maximum:
    case IR_OP_minimum: case IR_OP_equal: case IR_OP_greater:
        return ex_binary;
    case IR_OP_select: return ex_select;
    case IR_OP_broadcast_to: return ex_broadcast_to;
    case IR_OP_constant: return ex_constant;
    case IR_OP_reduce_sum: case IR_OP_reduce_mean: case IR_OP_reduce_max: return ex_reduce;
    case IR_OP_argmax: return ex_argmax;
    case IR_OP_softmax: case IR_OP_log_softmax: return ex_softmax;
    case IR_OP_numel: return ex_numel;
    case IR_OP_matmul: return ex_matmul;
    case IR_OP_reshape: return ex_reshape;
    case IR_OP_transpose: return ex_transpose;
    case IR_OP_one_hot: return ex_one_hot;
    case IR_OP_dense: return ex_dense;
    case IR_OP_batch_norm: return ex_batch_norm;
    case IR_OP_conv2d: return ex_conv2d;
    case IR_OP_max_pool2d: case IR_OP_avg_pool2d: return ex_pool;
    case IR_OP_pad: return ex_pad;
    default: return NULL;
    }
}

/* ------------------------------------------------------------ the graph */

static Onnx__ValueInfoProto *value_info(ex_ctx *c, const char *name, const ir_type *t) {
    Onnx__ValueInfoProto *vi = ex_alloc(c, sizeof *vi);
    Onnx__TypeProto *tp = ex_alloc(c, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ex_alloc(c, sizeof *tt);
    Onnx__TensorShapeProto *sh = ex_alloc(c, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = ex_alloc(c, sizeof *dims * (size_t)(t->rank + 1));
    if (!vi || !tp || !tt || !sh || !dims) return NULL;
    Onnx__ValueInfoProto i0 = ONNX__VALUE_INFO_PROTO__INIT;
    Onnx__TypeProto i1 = ONNX__TYPE_PROTO__INIT;
    Onnx__TypeProto__Tensor i2 = ONNX__TYPE_PROTO__TENSOR__INIT;
    Onnx__TensorShapeProto i3 = ONNX__TENSOR_SHAPE_PROTO__INIT;
    *vi = i0, *tp = i1, *tt = i2, *sh = i3;
    for (int k = 0; k < t->rank; k++) {
        Onnx__TensorShapeProto__Dimension *dm = ex_alloc(c, sizeof *dm);
        if (!dm) return NULL;
        Onnx__TensorShapeProto__Dimension i4 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        *dm = i4;
        if (t->dims[k] == KILN_BATCH) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = "batch";
        } else {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = t->dims[k];
        }
        dims[k] = dm;
    }
    sh->n_dim = (size_t)t->rank;
    sh->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = onnx_dtype(t);
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = (char *)name;
    vi->type = tp;
    return vi;
}

/* Marks what the results need; every needed op must have a mapping (one
 * error per node that has none, at its place). */
static kiln_status mark_live(ex_ctx *c) {
    const kiln_func *f = c->f;
    for (int k = 0; k < f->n_results; k++) c->live[f->results[k]->serial] = true;
    for (int i = f->n_nodes - 1; i >= 0; i--) {
        const ir_node *n = f->nodes[i];
        if (!c->live[n->serial]) continue;
        /* dropout(x, step) is x here: its step is not needed. */
        int n_in = n->op == IR_OP_dropout ? 1 : n->n_in;
        for (int k = 0; k < n_in; k++) {
            c->live[n->in[k]->serial] = true;
            c->uses[n->in[k]->serial]++;
            if (n->in[k]->op == IR_GLOBAL && !(n->op == IR_OP_conv2d && k == 1))
                c->g_other[n->in[k]->index] = true;
        }
    }
    for (int k = 0; k < f->n_results; k++) {
        c->uses[f->results[k]->serial]++;
        if (f->results[k]->op == IR_GLOBAL) c->g_other[f->results[k]->index] = true;
    }
    int bad = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *n = f->nodes[i];
        if (!c->live[n->serial] || n->op == IR_OP_dropout || ex_find(n->op)) continue;
        ir_error(c->d, KILN_ERR_UNSUPPORTED, n->loc,
                 "ONNX export: op '%s' in @%s has no ONNX mapping", ir_op_name(n->op), f->name);
        bad++;
    }
    return bad ? KILN_ERR_UNSUPPORTED : KILN_OK;
}

static kiln_status build(ex_ctx *c, Onnx__GraphProto *g) {
    const kiln_func *f = c->f;
    int ns = c->m->next_serial, ng = c->m->n_globals;
    c->vals = ir_calloc((size_t)ns + 1, sizeof *c->vals);
    c->uses = ir_calloc((size_t)ns + 1, sizeof *c->uses);
    c->live = ir_calloc((size_t)ns + 1, sizeof *c->live);
    c->gname_plain = ir_calloc((size_t)ng + 1, sizeof *c->gname_plain);
    c->gname_oihw = ir_calloc((size_t)ng + 1, sizeof *c->gname_oihw);
    c->g_other = ir_calloc((size_t)ng + 1, sizeof *c->g_other);
    if (!c->vals || !c->uses || !c->live || !c->gname_plain || !c->gname_oihw || !c->g_other)
        return ir_oom(c->d);
    /* Parameter and argument names are the model's: taken first. */
    for (int i = 0; i < ng; i++)
        if (!take_name(c, c->m->globals[i]->name)) return c->st;
    for (int i = 0; i < f->n_args; i++)
        if (!take_name(c, f->args[i]->name)) return c->st;
    kiln_status st = mark_live(c);
    if (st) return st;
    Onnx__ValueInfoProto **ins = ex_alloc(c, sizeof *ins * (size_t)(f->n_args + 1));
    Onnx__ValueInfoProto **outs = ex_alloc(c, sizeof *outs * (size_t)(f->n_results + 1));
    if (!ins || !outs) return c->st;
    for (int i = 0; i < f->n_args; i++) {
        const ir_node *a = f->args[i];
        c->vals[a->serial].plain = a->name;
        if (!(ins[i] = value_info(c, a->name, &a->type))) return c->st;
    }
    for (int i = 0; i < f->n_nodes && !c->st; i++) {
        const ir_node *n = f->nodes[i];
        if (!c->live[n->serial] || n->op == IR_GLOBAL) continue;
        ex_val *v = &c->vals[n->serial];
        if (n->op == IR_OP_dropout) { /* the identity in inference */
            *v = n->in[0]->op == IR_GLOBAL ? (ex_val){global_plain(c, n->in[0]), NULL}
                                           : c->vals[n->in[0]->serial];
            continue;
        }
        const ir_node *mm;
        if (n->op == IR_OP_matmul && c->uses[n->serial] == 1) {
            /* Folded into the Gemm of the add that reads it (ex_binary). */
            bool folded = false;
            for (int j = i + 1; j < f->n_nodes && !folded; j++)
                folded = c->live[f->nodes[j]->serial] && gemm_bias(c, f->nodes[j], &mm) && mm == n;
            if (folded) continue;
        }
        ex_find(n->op)(c, n, v);
    }
    /* Results in Kiln's order; one that is an argument, a parameter or
     * an earlier result gets a name of its own through Identity. */
    for (int k = 0; k < f->n_results && !c->st; k++) {
        const ir_node *r = f->results[k];
        const char *name = plain(c, r);
        bool dup = r->op == IR_ARG || r->op == IR_GLOBAL;
        for (int j = 0; j < k; j++) dup |= f->results[j] == r;
        if (dup) name = out_of(node(c, "Identity", 1, &name, "output"));
        if (!name || !(outs[k] = value_info(c, name, &r->type))) break;
    }
    if (c->st) return c->st;
    g->name = (char *)c->m->name;
    g->n_node = (size_t)c->n_nodes;
    g->node = c->nodes;
    g->n_initializer = (size_t)c->n_inits;
    g->initializer = c->inits;
    g->n_input = (size_t)f->n_args;
    g->input = ins;
    g->n_output = (size_t)f->n_results;
    g->output = outs;
    return KILN_OK;
}

kiln_status kiln_onnx_export_bytes(const kiln_module *m, void **bytes, size_t *len,
                                   kiln_diag *d) {
    if (bytes) *bytes = NULL;
    if (len) *len = 0;
    if (!m || !bytes || !len)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_onnx_export_bytes: bad argument");
    const kiln_func *f = kiln_module_func(m, "infer");
    if (!f)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "ONNX export: module '%s' has no function 'infer'", m->name);
    ex_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.f = f;
    c.d = d;
    ir_arena_init(&c.a);
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    kiln_status st = build(&c, &g);
    if (!st) {
        Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT;
        os.domain = "";
        os.has_version = 1;
        os.version = OPSET;
        Onnx__OperatorSetIdProto *osp = &os;
        Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
        mp.has_ir_version = 1;
        mp.ir_version = IR_VERSION;
        mp.n_opset_import = 1;
        mp.opset_import = &osp;
        mp.producer_name = "kiln";
        mp.producer_version = (char *)kiln_version();
        mp.graph = &g;
        size_t n = onnx__model_proto__get_packed_size(&mp);
        if (n > OX_MAX_FILE_BYTES) {
            st = ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                          "ONNX export: the model would take %zu bytes (ONNX files hold at most 2 GiB)",
                          n);
        } else if (!(*bytes = ir_malloc(n ? n : 1))) {
            st = ir_oom(d);
        } else {
            *len = onnx__model_proto__pack(&mp, *bytes);
        }
    }
    ir_free(c.nodes);
    ir_free(c.inits);
    ir_free(c.vals);
    ir_free(c.uses);
    ir_free(c.live);
    ir_free(c.gname_plain);
    ir_free(c.gname_oihw);
    ir_free(c.g_other);
    ir_free(c.taken);
    ir_arena_free(&c.a);
    return st;
}

#endif

kiln_status kiln_onnx_export(const kiln_module *m, const char *path, kiln_diag *d) {
    if (!path)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_onnx_export: no output file");
    void *bytes;
    size_t len;
    kiln_status st = kiln_onnx_export_bytes(m, &bytes, &len, d);
    if (st) return st;
    /* A temporary file renamed over `path`: never half a model. */
    size_t n = strlen(path);
    char *tmp = ir_malloc(n + 8);
    if (!tmp) {
        ir_free(bytes);
        return ir_oom(d);
    }
    snprintf(tmp, n + 8, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    bool ok = fp && fwrite(bytes, 1, len, fp) == len;
    if (fp && fclose(fp) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        remove(tmp);
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: cannot write the ONNX model", path);
    }
    ir_free(tmp);
    ir_free(bytes);
    return st;
}

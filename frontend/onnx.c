/*
 * onnx.c — ONNX models in: a serialized ModelProto (read by the protobuf-c
 * code generated from onnx.proto at build time) becomes a module with the
 * function `infer`. Graph inputs become arguments (a dynamic first
 * dimension becomes the batch '?'), initializers parameters under their
 * ONNX names (their data is the parameters' initial value), nodes IR ops
 * through the table of onnx_ops.c. Every size is checked against the data
 * before anything is allocated for it.
 */
#include "frontend/onnx.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ox_tensor_free(ox_tensor *t) {
    if (!t) return;
    ir_free(t->f);
    ir_free(t->i);
    t->f = NULL;
    t->i = NULL;
}

#ifndef KILN_HAVE_ONNX

kiln_status ox_tensor_read(const void *bytes, size_t len, const char *what, ox_tensor *out,
                           char **name, kiln_diag *d) {
    return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                    "%s: this Kiln was built without ONNX support", what);
}

kiln_status ox_import_into(const void *bytes, size_t len, const char *file, ir_builder *b,
                           ir_node *x, ox_embed *e, kiln_diag *d) {
    e->out = NULL;
    return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                    "%s: this Kiln was built without ONNX support", file);
}

kiln_status ox_import(const void *bytes, size_t len, const char *filename, kiln_module **out,
                      kiln_diag *d) {
    *out = NULL;
    return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                    "%s: this Kiln was built without ONNX support (protobuf-c and "
                    "libonnx-dev were missing at build time)",
                    filename);
}

#else

/* ------------------------------------------------------------ tensors */

typedef void *(*ox_alloc_fn)(void *ctx, size_t n);

static void *heap_alloc(void *ctx, size_t n) { return ir_calloc(1, n ? n : 1); }
static void *scratch_alloc(void *ctx, size_t n) { return ir_arena_alloc(ctx, n ? n : 1); }

static size_t elem_size(int dt) {
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return 2;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
    default: return 0; /* not supported */
    }
}

static const char *dtype_name(int dt) {
    static const char *const names[] = {"undefined", "float",  "uint8",   "int8",     "uint16",
                                        "int16",     "int32",  "int64",   "string",   "bool",
                                        "float16",   "double", "uint32",  "uint64",   "complex64",
                                        "complex128", "bfloat16"};
    return dt >= 0 && dt < (int)(sizeof names / sizeof names[0]) ? names[dt] : "unknown";
}

/* One integer element of raw little-endian data. */
static int64_t raw_int(const uint8_t *p, int dt) {
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: { int32_t v; memcpy(&v, p, 4); return v; }
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: { int64_t v; memcpy(&v, p, 8); return v; }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: { int16_t v; memcpy(&v, p, 2); return v; }
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return (int8_t)p[0];
    default: return p[0];
    }
}

/* A name from the file made printable in place (control bytes become '?'),
 * so that a message stays one line. */
static char *printable(char *s) {
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return s;
}

/* Checks dims and data sizes of `t` (nothing allocated yet), then decodes. */
static kiln_status decode_tensor(const Onnx__TensorProto *t, const char *file, const char *what,
                                 ox_alloc_fn alloc, void *actx, ox_tensor *out, kiln_diag *d) {
    memset(out, 0, sizeof *out);
    char nm[160];
    snprintf(nm, sizeof nm, "%s", t->name && *t->name ? t->name : what);
    printable(nm);
    int dt = t->has_data_type ? t->data_type : 0;
    size_t es = elem_size(dt);
    if (!es)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "%s: tensor '%s': data type %s is not supported", file, nm, dtype_name(dt));
    if ((t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        t->n_external_data)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "%s: tensor '%s': external data is not supported", file, nm);
    if (t->n_dims > KILN_MAX_RANK)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: tensor '%s' has rank %zu (at most %d)",
                        file, nm, t->n_dims, KILN_MAX_RANK);
    int64_t n = 1;
    for (size_t k = 0; k < t->n_dims; k++) {
        int64_t v = t->dims[k];
        if (v < 0 || v >= IR_MAX_DIM || (v && n > IR_MAX_ELEMS / v))
            return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                            "%s: tensor '%s': dimension %lld is out of range (more than 2^31 "
                            "elements or negative)",
                            file, nm, (long long)v);
        n *= v;
        out->dims[k] = v;
    }
    out->rank = (int)t->n_dims;
    out->n = n;
    out->is_int = dt != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    size_t have;
    if (t->has_raw_data)
        have = t->raw_data.len / es;
    else if (!out->is_int)
        have = t->n_float_data;
    else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
        have = t->n_int64_data;
    else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT64 || dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT32)
        have = t->n_uint64_data;
    else
        have = t->n_int32_data;
    if ((t->has_raw_data && t->raw_data.len != (size_t)n * es) || have != (size_t)n)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: tensor '%s': %s data of %zu elements for dims of %lld elements", file,
                        nm, dtype_name(dt), have, (long long)n);
    void *p = alloc(actx, (size_t)n * (out->is_int ? 8 : 4));
    if (!p) return ir_oom(d);
    const uint8_t *raw = t->has_raw_data ? t->raw_data.data : NULL;
    if (!out->is_int) {
        out->f = p;
        if (raw)
            memcpy(p, raw, (size_t)n * 4);
        else if (n)
            memcpy(p, t->float_data, (size_t)n * 4);
        return KILN_OK;
    }
    out->i = p;
    for (int64_t k = 0; k < n; k++)
        out->i[k] = raw ? raw_int(raw + k * es, dt)
                    : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? t->int64_data[k]
                    : (dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT64 ||
                       dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT32)
                        ? (int64_t)t->uint64_data[k]
                        : t->int32_data[k];
    return KILN_OK;
}

kiln_status ox_tensor_read(const void *bytes, size_t len, const char *what, ox_tensor *out,
                           char **name, kiln_diag *d) {
    memset(out, 0, sizeof *out);
    if (name) *name = NULL;
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, bytes);
    if (!t)
        return ir_error(d, KILN_ERR_PARSE, ir_loc_none(), "%s: not a serialized ONNX TensorProto",
                        what);
    kiln_status st = decode_tensor(t, what, "", heap_alloc, NULL, out, d);
    if (!st && name && t->name && !(*name = ir_strdup(t->name))) st = ir_oom(d);
    onnx__tensor_proto__free_unpacked(t, NULL);
    if (st) ox_tensor_free(out);
    return st;
}

kiln_status ox_tensor_from_proto(ox_ctx *c, const Onnx__TensorProto *t, const char *what,
                                 ox_tensor **out) {
    *out = ir_arena_alloc(&c->scratch, sizeof **out);
    if (!*out) return ir_oom(c->d);
    return decode_tensor(t, c->file, what, scratch_alloc, &c->scratch, *out, c->d);
}

/* ------------------------------------------------------------ value table */

static uint64_t name_hash(const char *s) { return ir_hash_bytes(s, strlen(s), 0); }

ox_val *ox_lookup(ox_ctx *c, const char *name) {
    if (!c->index_cap) return NULL;
    for (uint64_t h = name_hash(name);; h++) {
        int32_t k = c->index[h & (uint64_t)(c->index_cap - 1)];
        if (k < 0) return NULL;
        if (strcmp(c->vals[k].name, name) == 0) return &c->vals[k];
    }
}

static kiln_status rehash(ox_ctx *c) {
    int cap = c->index_cap ? c->index_cap * 2 : 64;
    int32_t *idx = ir_malloc(sizeof *idx * (size_t)cap);
    if (!idx) return ir_oom(c->d);
    memset(idx, 0xff, sizeof *idx * (size_t)cap);
    for (int k = 0; k < c->n_vals; k++) {
        uint64_t h = name_hash(c->vals[k].name);
        while (idx[h & (uint64_t)(cap - 1)] >= 0) h++;
        idx[h & (uint64_t)(cap - 1)] = k;
    }
    ir_free(c->index);
    c->index = idx;
    c->index_cap = cap;
    return KILN_OK;
}

/* The entry for `name`, created empty when absent (a later definition of
 * the same name replaces the earlier: ONNX graphs are SSA, so only a
 * malformed file does that). */
static ox_val *val_slot(ox_ctx *c, const char *name) {
    ox_val *v = ox_lookup(c, name);
    if (v) return v;
    if ((c->n_vals + 1) * 2 > c->index_cap && rehash(c)) return NULL;
    if (!IR_GROW(c->vals, c->cap_vals, c->n_vals + 1)) {
        ir_oom(c->d);
        return NULL;
    }
    v = &c->vals[c->n_vals];
    memset(v, 0, sizeof *v);
    v->name = name;
    uint64_t h = name_hash(name);
    while (c->index[h & (uint64_t)(c->index_cap - 1)] >= 0) h++;
    c->index[h & (uint64_t)(c->index_cap - 1)] = c->n_vals++;
    return v;
}

kiln_status ox_set(ox_ctx *c, const char *name, ir_node *node) {
    if (!node) return c->b.status ? c->b.status : KILN_ERR_INVALID;
    ox_val *v = val_slot(c, name);
    if (!v) return KILN_ERR_NOMEM;
    v->node = node;
    v->k = NULL;
    v->nhwc = v->flat = NULL;
    return KILN_OK;
}

/* Defines `name` as held only in NHWC (*slot: the entry's nhwc or flat). */
static kiln_status set_held(ox_ctx *c, const char *name, ir_node *node, bool flat) {
    kiln_status st = ox_set(c, name, node);
    if (st) return st;
    ox_val *v = ox_lookup(c, name);
    v->node = NULL;
    *(flat ? &v->flat : &v->nhwc) = node;
    return KILN_OK;
}

kiln_status ox_set_as(ox_ctx *c, const char *name, ir_node *node, bool nhwc) {
    return nhwc && node ? set_held(c, name, node, false) : ox_set(c, name, node);
}

kiln_status ox_set_flat(ox_ctx *c, const char *name, ir_node *nhwc4) {
    return set_held(c, name, nhwc4, true);
}

kiln_status ox_set_const(ox_ctx *c, const char *name, ox_tensor *k) {
    ox_val *v = val_slot(c, name);
    if (!v) return KILN_ERR_NOMEM;
    v->node = NULL;
    v->k = k;
    v->nhwc = v->flat = NULL;
    return KILN_OK;
}

ox_tensor *ox_const_new(ox_ctx *c, bool is_int, int rank, const int64_t *dims) {
    ox_tensor *t = ir_arena_alloc(&c->scratch, sizeof *t);
    if (!t) return NULL;
    t->is_int = is_int;
    t->rank = rank;
    t->n = 1;
    for (int k = 0; k < rank; k++) t->dims[k] = dims[k], t->n *= dims[k];
    void *p = ir_arena_alloc(&c->scratch, (size_t)(t->n ? t->n : 1) * (is_int ? 8 : 4));
    if (!p) return NULL;
    if (is_int)
        t->i = p;
    else
        t->f = p;
    return t;
}

kiln_status ox_fail(ox_ctx *c, kiln_status st, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printable(msg);
    const Onnx__NodeProto *n = c->node;
    if (!n) return ir_error(c->d, st, ir_loc_none(), "%s: %s", c->file, msg);
    char nm[160], op[64];
    snprintf(nm, sizeof nm, "%s", n->name ? n->name : "");
    snprintf(op, sizeof op, "%s", n->op_type ? n->op_type : "?");
    return ir_error(c->d, st, ir_loc_none(), "%s: node '%s' (%s): %s", c->file, printable(nm),
                    printable(op), msg);
}

bool ox_has_in(const Onnx__NodeProto *n, int k) {
    return k < (int)n->n_input && n->input[k] && n->input[k][0];
}

const ox_tensor *ox_in_const(ox_ctx *c, const Onnx__NodeProto *n, int k) {
    if (!ox_has_in(n, k)) return NULL;
    ox_val *v = ox_lookup(c, n->input[k]);
    return v ? v->k : NULL;
}

/* A name for the module: printable (a copy in scratch when it was not). */
static const char *module_name(ox_ctx *c, const char *name) {
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            char *q = ir_arena_strndup(&c->scratch, name, strlen(name));
            return q ? printable(q) : NULL;
        }
    return name;
}

ir_node *ox_param(ox_ctx *c, const char *name, const ox_tensor *k, bool trainable) {
    if (!(name = module_name(c, name))) {
        ir_oom(c->d);
        return NULL;
    }
    ir_dtype dt = k->is_int ? IR_I32 : IR_F32;
    ir_type t = ir_type_make(dt, k->rank, k->dims);
    kiln_init init = {KILN_INIT_ZEROS, 0, 0};
    ir_global *g = ir_module_global(c->m, name);
    if (g && g->index < c->first_global) {
        ox_fail(c, KILN_ERR_INVALID, "initializer '%s' has the name of a parameter the model "
                                     "already has", name);
        return NULL;
    }
    if (g) return g->ref;
    g = ir_module_add_global(c->m, IR_GLOBAL_PARAM, name, &t, init, c->d);
    if (!g) return NULL;
    void *data = ir_arena_alloc(&c->m->arena, (size_t)(k->n ? k->n : 1) * 4);
    if (!data) {
        ir_oom(c->d);
        return NULL;
    }
    if (k->is_int)
        for (int64_t j = 0; j < k->n; j++) ((int32_t *)data)[j] = (int32_t)k->i[j];
    else if (k->n)
        memcpy(data, k->f, (size_t)k->n * 4);
    g->data = data;
    g->trainable = trainable && !k->is_int;
    return g->ref;
}

static ir_node *transpose(ox_ctx *c, ir_node *x, int rank, const int64_t *perm) {
    if (!x) return NULL;
    ir_attrs a = ir_attrs_default(IR_OP_transpose);
    ir_attrs_set_ints(&a, "perm", rank, perm);
    return ir_b_op(&c->b, IR_OP_transpose, 1, &x, &a);
}

/* The parameter under v's name holding the transpose of v's matrix (the
 * one made before when there is one). */
static ir_node *transposed_param(ox_ctx *c, ox_val *v) {
    const ox_tensor *w = v->k;
    int64_t rows = w->dims[0], cols = w->dims[1], dims[2] = {cols, rows};
    ox_tensor *t = ox_const_new(c, false, 2, dims);
    if (!t) {
        ir_oom(c->d);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) t->f[j * rows + r] = w->f[r * cols + j];
    v->transposed = true;
    return ox_param(c, v->name, t, v->initializer);
}

kiln_status ox_const_transposed(ox_ctx *c, const Onnx__NodeProto *n, int k, ir_node **out) {
    *out = NULL;
    ox_val *v = ox_has_in(n, k) ? ox_lookup(c, n->input[k]) : NULL;
    if (!v || !v->k || (v->node && !v->transposed) || v->permuted || v->k->is_int || v->k->rank != 2)
        return KILN_OK;
    if (!(*out = transposed_param(c, v))) return c->d->first ? c->d->first : KILN_ERR_NOMEM;
    return KILN_OK;
}

/* A host constant as a node: a fill when all elements are equal, else a
 * parameter (an initializer: trainable) under the value's name; a transpose
 * of the parameter when that holds the value transposed. */
static ir_node *materialize(ox_ctx *c, ox_val *v) {
    ox_tensor *k = v->k;
    ir_dtype dt = k->is_int ? IR_I32 : IR_F32;
    static const int64_t swap[2] = {1, 0};
    if (v->transposed) return transpose(c, transposed_param(c, v), 2, swap);
    if (v->permuted) {
        ox_fail(c, KILN_ERR_UNSUPPORTED,
                "initializer '%s' is used both as the weight of a flattened image and otherwise",
                v->name);
        return NULL;
    }
    for (int64_t j = 0; k->is_int && j < k->n; j++)
        if (k->i[j] < INT32_MIN || k->i[j] > INT32_MAX) {
            ox_fail(c, KILN_ERR_UNSUPPORTED, "constant '%s' has values beyond int32", v->name);
            return NULL;
        }
    bool same = k->n > 0;
    for (int64_t j = 1; same && j < k->n; j++)
        same = k->is_int ? k->i[j] == k->i[0] : memcmp(&k->f[j], &k->f[0], 4) == 0;
    if (same && !v->initializer)
        return ir_b_const(&c->b, dt, k->is_int ? (double)k->i[0] : k->f[0], k->rank, k->dims);
    return ox_param(c, v->name, k, v->initializer);
}

static const int64_t to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};

static ir_node *transpose4(ox_ctx *c, ir_node *x, const int64_t *perm) {
    return transpose(c, x, 4, perm);
}

/* The NCHW value of an entry known only in NHWC (or as its flattening). */
static ir_node *from_nhwc(ox_ctx *c, ox_val *v) {
    if (v->nhwc) return transpose4(c, v->nhwc, to_nchw);
    ir_node *x = transpose4(c, v->flat, to_nchw);
    if (!x) return NULL;
    int64_t d[2] = {x->type.dims[0], x->type.dims[1] * x->type.dims[2] * x->type.dims[3]};
    ir_type t = ir_type_make(IR_F32, 2, d);
    return ir_b_reshape(&c->b, x, &t);
}

static ox_val *in_val(ox_ctx *c, const Onnx__NodeProto *n, int k) {
    if (!ox_has_in(n, k)) {
        ox_fail(c, KILN_ERR_INVALID, "operand %d is missing", k + 1);
        return NULL;
    }
    ox_val *v = ox_lookup(c, n->input[k]);
    if (!v || (!v->node && !v->k && !v->nhwc && !v->flat)) {
        ox_fail(c, KILN_ERR_INVALID, "operand '%s' is not defined before the node", n->input[k]);
        return NULL;
    }
    return v;
}

ir_node *ox_in_keep(ox_ctx *c, const Onnx__NodeProto *n, int k, bool *nhwc) {
    ox_val *v = in_val(c, n, k);
    *nhwc = v && !v->node && v->nhwc;
    if (!v) return NULL;
    return *nhwc ? v->nhwc : ox_in(c, n, k);
}

ir_node *ox_in_nhwc(ox_ctx *c, const Onnx__NodeProto *n, int k) {
    ox_val *v = in_val(c, n, k);
    if (!v) return NULL;
    if (v->nhwc) return v->nhwc;
    ir_node *x = ox_in(c, n, k);
    if (!x) return NULL;
    if (x->type.rank != 4) {
        ox_fail(c, KILN_ERR_UNSUPPORTED, "operand '%s' has rank %d; only 2-D images (rank 4) are supported",
                n->input[k], x->type.rank);
        return NULL;
    }
    return v->nhwc = transpose4(c, x, to_nhwc);
}

ir_node *ox_in(ox_ctx *c, const Onnx__NodeProto *n, int k) {
    ox_val *v = in_val(c, n, k);
    if (!v) return NULL;
    if (!v->node) v->node = v->k ? materialize(c, v) : from_nhwc(c, v);
    return v->node;
}

/* ------------------------------------------------------------ attributes */

const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0)
            return n->attribute[k];
    return NULL;
}

int64_t ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    return a && a->has_i ? a->i : def;
}

float ox_attr_f(const Onnx__NodeProto *n, const char *name, float def) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    return a && a->has_f ? a->f : def;
}

int ox_attr_ints(const Onnx__NodeProto *n, const char *name, const int64_t **v) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    *v = a ? a->ints : NULL;
    return a ? (int)(a->n_ints > 64 ? 64 : a->n_ints) : -1;
}

/* ------------------------------------------------------------ the graph */

/* A graph input's type: f32 or i32, a dynamic (symbolic or missing) first
 * dimension as the batch '?'. */
static kiln_status input_type(ox_ctx *c, const Onnx__ValueInfoProto *vi, ir_type *t) {
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "graph input '%s' is not a tensor", vi->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    int dt = tt->has_elem_type ? tt->elem_type : 0;
    if (dt != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && !(elem_size(dt) && dt != 0))
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "graph input '%s' has data type %s", vi->name,
                       dtype_name(dt));
    const Onnx__TensorShapeProto *sh = tt->shape;
    size_t rank = sh ? sh->n_dim : 0;
    if (rank > KILN_MAX_RANK)
        return ox_fail(c, KILN_ERR_LIMIT, "graph input '%s' has rank %zu (at most %d)", vi->name,
                       rank, KILN_MAX_RANK);
    int64_t dims[KILN_MAX_RANK];
    bool batch = false;
    for (size_t k = 0; k < rank; k++) {
        const Onnx__TensorShapeProto__Dimension *dm = sh->dim[k];
        bool known = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        int64_t v = known ? dm->dim_value : -1;
        if (!known && !batch) {
            dims[k] = KILN_BATCH;
            batch = true;
        } else if (v < 0 || v >= IR_MAX_DIM) {
            return ox_fail(c, KILN_ERR_LIMIT, "graph input '%s': dimension %zu is %s", vi->name, k,
                           known ? "out of range" : "a second dynamic one");
        } else {
            dims[k] = v;
        }
    }
    *t = ir_type_make(dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? IR_F32 : IR_I32, (int)rank,
                      dims);
    return KILN_OK;
}

static int64_t default_opset(const Onnx__ModelProto *mp) {
    int64_t v = 0;
    for (size_t k = 0; k < mp->n_opset_import; k++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[k];
        if ((!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0) && o->has_version)
            v = o->version;
    }
    return v ? v : 1;
}

/* Every node's op is known at this opset, or one message lists them all. */
static kiln_status check_ops(ox_ctx *c, const Onnx__GraphProto *g, const bool *need) {
    ir_sb sb;
    ir_sb_init(&sb);
    int bad = 0;
    for (size_t k = 0; k < g->n_node; k++) {
        const Onnx__NodeProto *n = g->node[k];
        if (need && !need[k]) continue;
        const char *why = NULL;
        bool std = !n->domain || !*n->domain || strcmp(n->domain, "ai.onnx") == 0;
        if (std && n->op_type && ox_op_find(n->op_type, c->opset, &why)) continue;
        if (bad++ < 50)
            ir_sb_printf(&sb, "%s'%s' (%s%s%s, opset %lld%s%s)", bad > 1 ? ", " : "",
                         n->name ? n->name : "", std ? "" : n->domain, std ? "" : ".",
                         n->op_type ? n->op_type : "?", (long long)c->opset, why ? ": " : "",
                         why ? why : "");
    }
    kiln_status st = KILN_OK;
    if (bad)
        st = ir_error(c->d, KILN_ERR_UNSUPPORTED, ir_loc_none(), "%s: %d unsupported node%s: %s%s",
                      c->file, bad, bad > 1 ? "s" : "", sb.buf ? printable(sb.buf) : "",
                      bad > 50 ? ", ..." : "");
    ir_sb_free(&sb);
    return st;
}

static kiln_status add_initializers(ox_ctx *c, const Onnx__GraphProto *g) {
    for (size_t k = 0; k < g->n_initializer; k++) {
        const Onnx__TensorProto *t = g->initializer[k];
        if (!t->name || !*t->name) return ox_fail(c, KILN_ERR_INVALID, "initializer %zu has no name", k);
        ox_tensor *v;
        kiln_status st = ox_tensor_from_proto(c, t, t->name, &v);
        if (st || (st = ox_set_const(c, t->name, v))) return st;
        ox_lookup(c, t->name)->initializer = true;
    }
    return KILN_OK;
}

static kiln_status add_inputs(ox_ctx *c, const Onnx__GraphProto *g) {
    kiln_status st = add_initializers(c, g);
    if (st) return st;
    for (size_t k = 0; k < g->n_input; k++) {
        const Onnx__ValueInfoProto *vi = g->input[k];
        if (!vi->name || !*vi->name) return ox_fail(c, KILN_ERR_INVALID, "graph input %zu has no name", k);
        if (ox_lookup(c, vi->name)) continue; /* an initializer listed as an input */
        ir_type t;
        kiln_status st = input_type(c, vi, &t);
        if (st) return st;
        const char *an = module_name(c, vi->name);
        ir_node *a = an ? ir_func_add_arg(c->f, an, &t, c->d) : NULL;
        if (!a) return KILN_ERR_INVALID;
        if ((st = ox_set(c, vi->name, a))) return st;
    }
    return KILN_OK;
}

/* The nodes of g in order (only those need[] marks, when given). */
static kiln_status build_nodes(ox_ctx *c, const Onnx__GraphProto *g, const bool *need) {
    kiln_status st = KILN_OK;
    for (size_t k = 0; !st && k < g->n_node; k++) {
        const Onnx__NodeProto *n = g->node[k];
        if (need && !need[k]) continue;
        c->node = n;
        ox_build_fn fn = ox_op_find(n->op_type, c->opset, NULL);
        int before = c->d->errors;
        if (!n->n_output || !n->output[0] || !n->output[0][0]) { /* every op Kiln has makes one */
            st = ox_fail(c, KILN_ERR_INVALID, "the node has no output");
            break;
        }
        st = fn(c, n);
        if (!st && c->b.status) st = c->b.status;
        if (st && c->d->errors == before) st = ox_fail(c, st, "%s", kiln_status_string(st));
        c->b.status = KILN_OK;
    }
    c->node = NULL;
    return st;
}

/* Value `name` as a run-time node in ONNX's layout (NULL with a message). */
static ir_node *value_node(ox_ctx *c, const char *name) {
    ox_val *v = ox_lookup(c, name);
    if (!v) {
        ox_fail(c, KILN_ERR_INVALID, "graph output '%s' is not computed", name);
        return NULL;
    }
    if (v->node) return v->node;
    Onnx__NodeProto fake = ONNX__NODE_PROTO__INIT;
    char *in[1] = {(char *)name};
    fake.n_input = 1;
    fake.input = in;
    return ox_in(c, &fake, 0);
}

static kiln_status build_graph(ox_ctx *c, const Onnx__GraphProto *g) {
    kiln_status st = add_inputs(c, g);
    if (!st) st = build_nodes(c, g, NULL);
    for (size_t k = 0; !st && k < g->n_output; k++) {
        ir_node *r = value_node(c, g->output[k]->name ? g->output[k]->name : "");
        if (!r) return c->b.status ? c->b.status : KILN_ERR_INVALID;
        st = ir_func_add_result(c->f, r, c->d);
    }
    return st;
}

static const char *base_name(const char *path, ir_arena *a) {
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    size_t n = strlen(s);
    if (n > 5 && strcmp(s + n - 5, ".onnx") == 0) n -= 5;
    return ir_arena_strndup(a, s, n);
}

/* The model has a graph of a bounded size; c->opset is its default opset. */
static kiln_status check_graph(ox_ctx *c, const Onnx__ModelProto *mp) {
    const Onnx__GraphProto *g = mp->graph;
    if (!g) return ox_fail(c, KILN_ERR_INVALID, "the model has no graph");
    if (g->n_node > OX_MAX_NODES)
        return ox_fail(c, KILN_ERR_LIMIT, "the graph has %zu nodes (at most %d)", g->n_node,
                       OX_MAX_NODES);
    c->opset = default_opset(mp);
    return KILN_OK;
}

static kiln_status import_model(ox_ctx *c, const Onnx__ModelProto *mp) {
    kiln_status st = check_graph(c, mp);
    if (st) return st;
    const Onnx__GraphProto *g = mp->graph;
    st = check_ops(c, g, NULL);
    if (st) return st;
    c->m = kiln_module_create("onnx");
    if (!c->m) return ir_oom(c->d);
    const char *nm = base_name(c->file, &c->m->arena);
    if (nm && *nm) c->m->name = nm;
    c->f = kiln_func_create(c->m, "infer");
    if (!c->f) return ir_oom(c->d);
    ir_builder_init(&c->b, c->f, c->d);
    if ((st = build_graph(c, g))) return st;
    return ir_verify_module(c->m, c->d);
}

/* One varint of the wire format at *p (< end); false when malformed. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int sh = 0; *p < end && sh < 64; sh += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) return true;
    }
    return false;
}

/* protobuf-c unpacks nested messages by recursion with no limit, and ONNX
 * nests without bound (a graph in a node's attribute in a graph ..., a
 * TypeProto in a TypeProto): a hostile file would overflow the stack. This
 * walks the wire format's tags and lengths only (no values are decoded)
 * with an explicit stack, descending into the fields that the generated
 * descriptors say are messages, and refuses nesting beyond OX_MAX_NESTING.
 * What it cannot walk it leaves to protobuf-c to refuse. */
static kiln_status check_nesting(const uint8_t *data, size_t len, const char *file, kiln_diag *d) {
    const uint8_t *endst[OX_MAX_NESTING + 1];
    const ProtobufCMessageDescriptor *descst[OX_MAX_NESTING + 1];
    int top = 0;
    const uint8_t *p = data;
    endst[0] = data + len;
    descst[0] = &onnx__model_proto__descriptor;
    while (top >= 0) {
        if (p >= endst[top]) {
            p = endst[top--];
            continue;
        }
        uint64_t tag, n;
        if (!wire_varint(&p, endst[top], &tag)) return KILN_OK;
        switch (tag & 7) {
        case 0: if (!wire_varint(&p, endst[top], &n)) return KILN_OK; break;
        case 1: if ((size_t)(endst[top] - p) < 8) return KILN_OK; p += 8; break;
        case 5: if ((size_t)(endst[top] - p) < 4) return KILN_OK; p += 4; break;
        case 2: {
            if (!wire_varint(&p, endst[top], &n) || n > (uint64_t)(endst[top] - p)) return KILN_OK;
            const ProtobufCFieldDescriptor *f =
                tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(descst[top], (unsigned)(tag >> 3)) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (top == OX_MAX_NESTING)
                    return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                                    "%s: messages nested more than %d deep (field '%s' of %s)",
                                    file, OX_MAX_NESTING, f->name, descst[top]->name);
                endst[++top] = p + n;
                descst[top] = f->descriptor;
                continue;
            }
            p += n;
            break;
        }
        default: return KILN_OK;
        }
    }
    return KILN_OK;
}

/* The ModelProto of the bytes (free with onnx__model_proto__free_unpacked),
 * or NULL with a message. */
static Onnx__ModelProto *unpack_model(const void *bytes, size_t len, const char *file,
                                      kiln_diag *d, kiln_status *st) {
    *st = KILN_ERR_LIMIT;
    if (len > OX_MAX_FILE_BYTES) {
        ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: an ONNX file may hold at most 2 GiB", file);
        return NULL;
    }
    if (check_nesting(bytes, len, file, d)) return NULL;
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, bytes);
    *st = mp ? KILN_OK : KILN_ERR_PARSE;
    if (!mp)
        ir_error(d, KILN_ERR_PARSE, ir_loc_none(), "%s: not a serialized ONNX ModelProto", file);
    return mp;
}

/* ---------------------------------------------------- inside a model file */

/* The nodes that compute `out`, walking back from it (need[k] for node k);
 * false when no node, input or initializer is named `out`. */
static kiln_status slice(ox_ctx *c, const Onnx__GraphProto *g, const char *out, bool *need,
                         bool *found) {
    size_t total = 1, cap = 64;
    for (size_t k = 0; k < g->n_node; k++) total += g->node[k]->n_input;
    while (cap < 2 * total) cap *= 2;
    const char **set = ir_calloc(cap, sizeof *set);
    if (!set) return ir_oom(c->d);
#define SLOT(nm) for (h = name_hash(nm) & (cap - 1); set[h] && strcmp(set[h], nm); h = (h + 1) & (cap - 1))
    uint64_t h;
    SLOT(out);
    set[h] = out;
    *found = false;
    for (size_t k = g->n_node; k-- > 0;) {
        const Onnx__NodeProto *n = g->node[k];
        for (size_t j = 0; j < n->n_output && !need[k]; j++) {
            if (!n->output[j]) continue;
            SLOT(n->output[j]);
            need[k] = set[h] != NULL;
        }
        if (!need[k]) continue;
        *found = true;
        for (size_t j = 0; j < n->n_input; j++) {
            if (!n->input[j] || !*n->input[j]) continue;
            SLOT(n->input[j]);
            set[h] = n->input[j];
        }
    }
#undef SLOT
    ir_free(set);
    for (size_t k = 0; !*found && k < g->n_input; k++)
        *found = g->input[k]->name && !strcmp(g->input[k]->name, out);
    for (size_t k = 0; !*found && k < g->n_initializer; k++)
        *found = g->initializer[k]->name && !strcmp(g->initializer[k]->name, out);
    return KILN_OK;
}

/* "unknown value 'x'; did you mean 'y'?" over the values nodes compute. */
static kiln_status unknown_output(ox_ctx *c, const Onnx__GraphProto *g, const char *out) {
    size_t n = 0;
    for (size_t k = 0; k < g->n_node; k++) n += g->node[k]->n_output;
    const char **names = ir_malloc(sizeof *names * (n + 1));
    if (!names) return ir_oom(c->d);
    int m = 0;
    for (size_t k = 0; k < g->n_node; k++)
        for (size_t j = 0; j < g->node[k]->n_output; j++)
            if (g->node[k]->output[j] && *g->node[k]->output[j]) names[m++] = g->node[k]->output[j];
    const char *best = m ? ir_closest_name(out, names, m) : NULL;
    char msg[600];
    snprintf(msg, sizeof msg, "no node computes a value named '%.200s'%s%.200s%s", out,
             best ? "; did you mean '" : m ? "" : " (the graph has no nodes)", best ? best : "",
             best ? "'?" : "");
    ir_free(names);
    return ox_fail(c, KILN_ERR_INVALID, "%s", msg);
}

/* Binds the graph's first input (not an initializer) to x: the same type,
 * or an image given in NHWC for ONNX's NCHW. Other inputs must be unused. */
static kiln_status bind_input(ox_ctx *c, const Onnx__GraphProto *g, ir_node *x, const bool *need,
                              ox_embed *e) {
    const Onnx__ValueInfoProto *first = NULL;
    for (size_t k = 0; k < g->n_input; k++) {
        const Onnx__ValueInfoProto *vi = g->input[k];
        if (!vi->name || !*vi->name) return ox_fail(c, KILN_ERR_INVALID, "graph input %zu has no name", k);
        if (ox_lookup(c, vi->name)) continue; /* an initializer listed as an input */
        if (!first) {
            first = vi;
            continue;
        }
        for (size_t j = 0; j < g->n_node; j++)
            for (size_t i = 0; need[j] && i < g->node[j]->n_input; i++)
                if (g->node[j]->input[i] && !strcmp(g->node[j]->input[i], vi->name))
                    return ox_fail(c, KILN_ERR_UNSUPPORTED,
                                   "the graph's input '%s' is needed too; onnx() feeds only the "
                                   "first, '%s'",
                                   vi->name, first->name);
    }
    if (!first) return ox_fail(c, KILN_ERR_INVALID, "the graph has no input");
    ir_type t;
    kiln_status st = input_type(c, first, &t);
    if (st) return st;
    const ir_type *xt = &x->type;
    if (ir_type_eq(xt, &t)) return ox_set(c, first->name, x);
    int64_t nhwc[4] = {t.dims[0], t.dims[2], t.dims[3], t.dims[1]};
    ir_type tn = ir_type_make((ir_dtype)t.dtype, t.rank, nhwc);
    if (t.rank == 4 && ir_type_eq(xt, &tn)) {
        if ((st = ox_set(c, first->name, x))) return st;
        ox_val *v = ox_lookup(c, first->name);
        v->node = NULL; /* held in NHWC: convolutions take it as it is */
        v->nhwc = x;
        return KILN_OK;
    }
    char a[IR_TYPE_STR_MAX], b[IR_TYPE_STR_MAX], n[IR_TYPE_STR_MAX];
    e->bad_input = true;
    if (t.rank == 4)
        return ox_fail(c, KILN_ERR_SHAPE,
                       "the graph's input '%s' is %s (NCHW; %s in NHWC), the value given is %s",
                       first->name, ir_type_str(&t, a, sizeof a), ir_type_str(&tn, n, sizeof n),
                       ir_type_str(xt, b, sizeof b));
    return ox_fail(c, KILN_ERR_SHAPE, "the graph's input '%s' is %s, the value given is %s%s",
                   first->name, ir_type_str(&t, a, sizeof a), ir_type_str(xt, b, sizeof b),
                   t.rank && t.dims[0] != KILN_BATCH && xt->rank && xt->dims[0] == KILN_BATCH
                       ? " (export it with a dynamic batch: dynamic_axes={'x': {0: 'batch'}})"
                       : "");
}

static kiln_status embed_model(ox_ctx *c, const Onnx__ModelProto *mp, ir_node *x, ox_embed *e) {
    kiln_status st = check_graph(c, mp);
    if (st) return st;
    const Onnx__GraphProto *g = mp->graph;
    const char *out = e->output;
    if (!out) {
        if (g->n_output != 1 || !g->output[0]->name)
            return ox_fail(c, KILN_ERR_INVALID,
                           "the graph has %zu outputs: name the value to use with output=\"...\"",
                           g->n_output);
        out = g->output[0]->name;
    }
    bool *need = ir_calloc(g->n_node ? g->n_node : 1, sizeof *need), found = false;
    if (!need) return ir_oom(c->d);
    st = slice(c, g, out, need, &found);
    if (!st && !found) {
        e->bad_output = true;
        st = unknown_output(c, g, out);
    }
    if (!st) st = check_ops(c, g, need);
    if (!st) st = add_initializers(c, g);
    if (!st) st = bind_input(c, g, x, need, e);
    if (!st) st = build_nodes(c, g, need);
    ir_free(need);
    if (st) return st;
    e->out = value_node(c, out);
    return e->out ? KILN_OK : c->b.status ? c->b.status : KILN_ERR_INVALID;
}

kiln_status ox_import_into(const void *bytes, size_t len, const char *file, ir_builder *b,
                           ir_node *x, ox_embed *e, kiln_diag *d) {
    e->out = NULL;
    e->bad_output = e->bad_input = false;
    kiln_status st;
    Onnx__ModelProto *mp = unpack_model(bytes, len, file, d, &st);
    if (!mp) return st;
    ox_ctx c;
    memset(&c, 0, sizeof c);
    c.file = file;
    c.d = d;
    c.m = b->f->m;
    c.f = b->f;
    c.b = *b;
    c.b.d = d;
    c.b.status = KILN_OK;
    c.first_global = c.m->n_globals;
    c.n_dropout = 1 << 20; /* apart from the model file's dropout layers */
    ir_arena_init(&c.scratch);
    int before = d->errors;
    st = embed_model(&c, mp, x, e);
    if (st && d->errors == before) ir_error(d, st, ir_loc_none(), "%s: %s", file, kiln_status_string(st));
    onnx__model_proto__free_unpacked(mp, NULL);
    ir_arena_free(&c.scratch);
    ir_free(c.vals);
    ir_free(c.index);
    return st;
}

kiln_status ox_import(const void *bytes, size_t len, const char *filename, kiln_module **out,
                      kiln_diag *d) {
    *out = NULL;
    const char *file = filename ? filename : "<onnx>";
    kiln_status st;
    Onnx__ModelProto *mp = unpack_model(bytes, len, file, d, &st);
    if (!mp) return st;
    kiln_diag mine;
    memset(&mine, 0, sizeof mine);
    ox_ctx c;
    memset(&c, 0, sizeof c);
    c.file = file;
    c.d = &mine;
    ir_arena_init(&c.scratch);
    st = import_model(&c, mp);
    onnx__model_proto__free_unpacked(mp, NULL);
    ir_arena_free(&c.scratch);
    ir_free(c.vals);
    ir_free(c.index);
    if (st) {
        kiln_module_dispose(c.m);
        if (!mine.errors) ir_error(&mine, st, ir_loc_none(), "%s: %s", file, kiln_status_string(st));
        if (d) {
            if (!d->errors) d->first = mine.first;
            d->errors += mine.errors;
            if (mine.text.buf) ir_sb_putn(&d->text, mine.text.buf, mine.text.len);
        }
    } else {
        *out = c.m;
    }
    ir_sb_free(&mine.text);
    return st;
}

#endif

/* ------------------------------------------------------------ public API */

int kiln_onnx_available(void) {
#ifdef KILN_HAVE_ONNX
    return 1;
#else
    return 0;
#endif
}

kiln_status kiln_onnx_import(const void *bytes, size_t len, const char *filename,
                             kiln_module **out, kiln_diag *d) {
    if (out) *out = NULL;
    if (!out || (!bytes && len))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_onnx_import: bad argument");
    return ox_import(bytes ? bytes : "", len, filename, out, d);
}

kiln_status kiln_onnx_load(const char *path, kiln_module **out, kiln_diag *d) {
    if (out) *out = NULL;
    if (!path || !out)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_onnx_load: bad argument");
    char *bytes;
    size_t len;
    kiln_status st = ir_read_file_max(path, OX_MAX_FILE_BYTES, &bytes, &len, d);
    if (st == KILN_ERR_LIMIT)
        return ir_error(d, st, ir_loc_none(), "%s: an ONNX file may hold at most 2 GiB", path);
    if (st) return st;
    st = ox_import(bytes, len, path, out, d);
    ir_free(bytes);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

kiln_status kiln_module_load_file(const char *path, kiln_module **out, kiln_diag *d) {
    if (out) *out = NULL;
    if (!path || !out)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_load_file: bad argument");
    if (ends_with(path, ".onnx")) return kiln_onnx_load(path, out, d);
    if (ends_with(path, ".kir")) return kiln_module_load(path, out, d);
    return kiln_model_file_load(path, out, d);
}

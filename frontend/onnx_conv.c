/*
 * onnx_conv.c — ONNX's image ops on Kiln's NHWC ops: Conv, MaxPool,
 * AveragePool, GlobalAveragePool, GlobalMaxPool, BatchNormalization, and
 * the Gemm/MatMul that follows a Flatten of an image.
 *
 * ONNX images are NCHW with Conv weights [out, in, kh, kw]; Kiln's are
 * NHWC with kernels [kh, kw, in, out]. The importer keeps every image value
 * in the layout it was made in (ox_val.nhwc) and transposes only where an
 * op needs the other one, so a chain Conv → Relu → MaxPool → Conv has no
 * transpose inside it: one at the graph input (NCHW → NHWC), one at an
 * output or an op that needs NCHW. The layout costs nothing in the weights:
 *   - a Conv weight that is an initializer becomes the parameter under its
 *     ONNX name, already in [kh, kw, in, out] (a run-time weight gets a
 *     transpose node);
 *   - Flatten (or PyTorch's Reshape to [N, -1]) of an NHWC image is the
 *     NHWC image flattened, whose columns run (h, w, c) where ONNX's run
 *     (c, h, w); the Gemm or MatMul that consumes it gets its weight's rows
 *     permuted to match at import time, so PyTorch's element order holds
 *     with no transpose at run time.
 * ONNX's pads become Kiln's padding `valid` or `same` (TF's: the extra
 * row, if any, at the bottom) when they place the windows the same way,
 * else the window ops' explicit `pads`.
 */
#include "frontend/onnx.h"

#ifdef KILN_HAVE_ONNX

#include <string.h>

#define OUT0(n) ((n)->n_output ? (n)->output[0] : "")

static bool extra_output(const Onnx__NodeProto *n) {
    for (size_t k = 1; k < n->n_output; k++)
        if (n->output[k] && n->output[k][0]) return true;
    return false;
}

/* An ints attribute of two entries (spatial axes), or `def` for both. */
static kiln_status pair(ox_ctx *c, const Onnx__NodeProto *n, const char *name, int64_t def,
                        int64_t out[2]) {
    const int64_t *v;
    int k = ox_attr_ints(n, name, &v);
    out[0] = out[1] = def;
    if (k < 0) return KILN_OK;
    if (k != 2) return ox_fail(c, KILN_ERR_UNSUPPORTED, "%s has %d entries (only 2-D images)", name, k);
    for (int j = 0; j < 2; j++) {
        if (v[j] < 1 || v[j] > IR_MAX_DIM)
            return ox_fail(c, KILN_ERR_INVALID, "%s entry %lld out of range", name, (long long)v[j]);
        out[j] = v[j];
    }
    return KILN_OK;
}

typedef struct win {
    int64_t k[2], s[2], dl[2], lo[2], hi[2];
    int auto_pad; /* 0 NOTSET, 1 VALID, 2 SAME_UPPER, 3 SAME_LOWER */
    bool ceil_mode, include_pad;
} win;

static kiln_status read_win(ox_ctx *c, const Onnx__NodeProto *n, const int64_t *kernel, win *w) {
    memset(w, 0, sizeof *w);
    kiln_status st;
    const int64_t *ks;
    int nk = ox_attr_ints(n, "kernel_shape", &ks);
    if (nk >= 0 && nk != 2)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "kernel_shape has %d entries (only 2-D images)", nk);
    for (int j = 0; j < 2; j++) {
        if (nk == 2 && kernel && ks[j] != kernel[j])
            return ox_fail(c, KILN_ERR_INVALID, "kernel_shape differs from the weight's");
        w->k[j] = nk == 2 ? ks[j] : kernel ? kernel[j] : 0;
        if (w->k[j] < 1 || w->k[j] > IR_MAX_DIM)
            return ox_fail(c, KILN_ERR_INVALID, "kernel_shape missing or out of range");
    }
    if ((st = pair(c, n, "strides", 1, w->s)) || (st = pair(c, n, "dilations", 1, w->dl))) return st;
    const int64_t *p;
    int np = ox_attr_ints(n, "pads", &p);
    if (np >= 0 && np != 4)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "pads has %d entries (only 2-D images)", np);
    for (int j = 0; j < 2; j++) {
        w->lo[j] = np == 4 ? p[j] : 0;
        w->hi[j] = np == 4 ? p[j + 2] : 0;
        if (w->lo[j] < 0 || w->hi[j] < 0 || w->lo[j] > IR_MAX_DIM || w->hi[j] > IR_MAX_DIM)
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "negative or huge pads");
    }
    const Onnx__AttributeProto *ap = ox_attr(n, "auto_pad");
    const char *a = ap && ap->has_s ? (const char *)ap->s.data : NULL;
    size_t al = ap && ap->has_s ? ap->s.len : 0;
#define IS(lit) (al == sizeof lit - 1 && memcmp(a, lit, al) == 0)
    w->auto_pad = !a || IS("NOTSET") ? 0 : IS("VALID") ? 1 : IS("SAME_UPPER") ? 2 : IS("SAME_LOWER") ? 3 : -1;
#undef IS
    if (w->auto_pad < 0) return ox_fail(c, KILN_ERR_INVALID, "unknown auto_pad");
    w->ceil_mode = ox_attr_i(n, "ceil_mode", 0) != 0;
    w->include_pad = ox_attr_i(n, "count_include_pad", 0) != 0;
    return KILN_OK;
}

/* ONNX's window placement on axis j of an input of `in` cells: the
 * output size and the padding before the first cell; false when empty. */
static bool axis_place(const win *w, int j, int64_t in, int64_t *out, int64_t *lo) {
    int64_t s = w->s[j], dk = (w->k[j] - 1) * w->dl[j] + 1;
    if (w->auto_pad >= 2) {
        *out = (in + s - 1) / s;
        int64_t total = (*out - 1) * s + dk - in;
        total = total > 0 ? total : 0;
        *lo = w->auto_pad == 2 ? total / 2 : total - total / 2;
        return true;
    }
    *lo = w->auto_pad == 1 ? 0 : w->lo[j];
    int64_t span = in + *lo + (w->auto_pad == 1 ? 0 : w->hi[j]) - dk;
    if (span < 0) return false;
    *out = (w->ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (w->ceil_mode && (*out - 1) * s >= in + *lo) (*out)--; /* no window starts in the end pad */
    return true;
}

/* Kiln's padding for NHWC image x: `valid` or `same` when they place the
 * windows as ONNX does (*mode 0, 1), else explicit pads (*mode 2, pads
 * [top, left, bottom, right], the bottom and right ones as far as windows
 * reach). */
static kiln_status pad_mode(ox_ctx *c, const win *w, const ir_node *x, int64_t *mode,
                            int64_t pads[4]) {
    int64_t out[2], lo[2];
    bool fits[2] = {true, true}, inside = true;
    for (int j = 0; j < 2; j++) {
        int64_t in = x->type.dims[1 + j], s = w->s[j], dk = (w->k[j] - 1) * w->dl[j] + 1;
        if (!axis_place(w, j, in, &out[j], &lo[j]))
            return ox_fail(c, KILN_ERR_SHAPE, "the padded input is smaller than the window");
        int64_t hi = (out[j] - 1) * s + dk - in - lo[j];
        pads[j] = lo[j];
        pads[j + 2] = hi > 0 ? hi : 0;
        inside = inside && lo[j] == 0 && hi <= 0;
        fits[0] = fits[0] && in >= dk && lo[j] == 0 && out[j] == (in - dk) / s + 1;
        int64_t same_out = (in + s - 1) / s, total = (same_out - 1) * s + dk - in;
        fits[1] = fits[1] && out[j] == same_out && lo[j] == (total > 0 ? total / 2 : 0);
        if (lo[j] >= dk || pads[j + 2] >= dk)
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "pads as large as the window");
    }
    if (w->include_pad && !inside) /* Kiln's divisor counts the real cells only */
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "count_include_pad=1 with padding");
    *mode = fits[0] ? 0 : fits[1] ? 1 : 2;
    return KILN_OK;
}

static void win_attrs(ir_attrs *a, const win *w, int64_t mode, const int64_t *pads, bool conv) {
    ir_attrs_set_ints(a, "strides", 2, w->s);
    if (mode == 2) ir_attrs_set_ints(a, "pads", 4, pads);
    if (conv)
        ir_attrs_set_ints(a, "dilation", 2, w->dl);
    else
        ir_attrs_set_ints(a, "pool_size", 2, w->k);
    ir_attrs_set_i(a, "padding", mode == 1);
}

/* The Conv weight in Kiln's layout [kh, kw, in, out]: an initializer's data
 * permuted into the parameter under its name, else a transpose node. */
static ir_node *conv_kernel(ox_ctx *c, const Onnx__NodeProto *n) {
    ox_val *v = ox_has_in(n, 1) ? ox_lookup(c, n->input[1]) : NULL;
    const ox_tensor *w = v ? v->k : NULL;
    if (w && !v->node && !w->is_int && w->rank == 4) {
        int64_t o = w->dims[0], i = w->dims[1], kh = w->dims[2], kw = w->dims[3];
        int64_t dims[4] = {kh, kw, i, o};
        ox_tensor *t = ox_const_new(c, false, 4, dims);
        if (!t) {
            ir_oom(c->d);
            return NULL;
        }
        for (int64_t a = 0; a < o; a++)
            for (int64_t b = 0; b < i; b++)
                for (int64_t y = 0; y < kh; y++)
                    for (int64_t x = 0; x < kw; x++)
                        t->f[((y * kw + x) * i + b) * o + a] = w->f[((a * i + b) * kh + y) * kw + x];
        v->permuted = true;
        return ox_param(c, v->name, t, v->initializer);
    }
    ir_node *k = ox_in(c, n, 1);
    if (!k) return NULL;
    if (k->type.rank != 4 || k->type.dtype != IR_F32) {
        ox_fail(c, KILN_ERR_UNSUPPORTED, "the weight must be an f32 tensor of rank 4");
        return NULL;
    }
    static const int64_t perm[4] = {2, 3, 1, 0};
    ir_attrs a = ir_attrs_default(IR_OP_transpose);
    ir_attrs_set_ints(&a, "perm", 4, perm);
    return ir_b_op(&c->b, IR_OP_transpose, 1, &k, &a);
}

/* Conv -> conv2d(x_nhwc, kernel, bias), the result kept in NHWC. */
kiln_status ox_b_conv(ox_ctx *c, const Onnx__NodeProto *n) {
    if (ox_attr_i(n, "group", 1) != 1)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "grouped convolution (group=%lld)",
                       (long long)ox_attr_i(n, "group", 1));
    ir_node *x = ox_in_nhwc(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    if (x->type.dtype != IR_F32) return ox_fail(c, KILN_ERR_UNSUPPORTED, "integer images");
    ir_node *k = conv_kernel(c, n);
    if (!k) return KILN_ERR_UNSUPPORTED;
    int64_t co = k->type.dims[3];
    if (k->type.dims[2] != x->type.dims[3])
        return ox_fail(c, KILN_ERR_SHAPE, "the weight has %lld input channels, the image %lld",
                       (long long)k->type.dims[2], (long long)x->type.dims[3]);
    win w;
    int64_t mode, pads[4];
    kiln_status st = read_win(c, n, k->type.dims, &w);
    if (st || (st = pad_mode(c, &w, x, &mode, pads))) return st;
    if ((w.s[0] > 1 || w.s[1] > 1) && (w.dl[0] > 1 || w.dl[1] > 1))
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "strides > 1 together with dilations > 1");
    ir_node *bias = ox_has_in(n, 2) ? ox_in(c, n, 2) : ir_b_const(&c->b, IR_F32, 0, 1, &co);
    if (!bias) return KILN_ERR_INVALID;
    ir_attrs a = ir_attrs_default(IR_OP_conv2d);
    win_attrs(&a, &w, mode, pads, true);
    ir_node *in[3] = {x, k, bias};
    return ox_set_as(c, OUT0(n), ir_b_op(&c->b, IR_OP_conv2d, 3, in, &a), true);
}

/* MaxPool, AveragePool -> max_pool2d, avg_pool2d. */
kiln_status ox_b_pool(ox_ctx *c, const Onnx__NodeProto *n) {
    bool max = !strcmp(n->op_type, "MaxPool");
    if (extra_output(n)) return ox_fail(c, KILN_ERR_UNSUPPORTED, "the Indices output");
    if (ox_attr_i(n, "storage_order", 0)) return ox_fail(c, KILN_ERR_UNSUPPORTED, "storage_order=1");
    ir_node *x = ox_in_nhwc(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    if (x->type.dtype != IR_F32) return ox_fail(c, KILN_ERR_UNSUPPORTED, "integer images");
    win w;
    int64_t mode, pads[4];
    kiln_status st = read_win(c, n, NULL, &w);
    if (st) return st;
    if (w.dl[0] != 1 || w.dl[1] != 1) return ox_fail(c, KILN_ERR_UNSUPPORTED, "dilated pooling");
    if (max) w.include_pad = false;
    if ((st = pad_mode(c, &w, x, &mode, pads))) return st;
    int op = max ? IR_OP_max_pool2d : IR_OP_avg_pool2d;
    ir_attrs a = ir_attrs_default(op);
    win_attrs(&a, &w, mode, pads, false);
    return ox_set_as(c, OUT0(n), ir_b_op(&c->b, op, 1, &x, &a), true);
}

/* GlobalAveragePool, GlobalMaxPool -> reduce over h, w (kept as 1 x 1). */
kiln_status ox_b_global_pool(ox_ctx *c, const Onnx__NodeProto *n) {
    ir_node *x = ox_in_nhwc(c, n, 0);
    if (!x) return KILN_ERR_UNSUPPORTED;
    if (x->type.dtype != IR_F32) return ox_fail(c, KILN_ERR_UNSUPPORTED, "integer images");
    static const int64_t axes[2] = {1, 2};
    int op = !strcmp(n->op_type, "GlobalMaxPool") ? IR_OP_reduce_max : IR_OP_reduce_mean;
    return ox_set_as(c, OUT0(n), ir_b_reduce(&c->b, op, x, 2, axes, true), true);
}

/* BatchNormalization -> batch_norm over the channels (last in NHWC). It is
 * built in training mode, as Keras' layer: the pass inference-mode makes it
 * use the moving statistics everywhere but in train_step, where training
 * updates them (ONNX's momentum is Keras'). The statistics are parameters
 * that are not trained. */
kiln_status ox_b_batch_norm(ox_ctx *c, const Onnx__NodeProto *n) {
    if (extra_output(n))
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "the running mean and variance outputs");
    if (c->opset < 9 && ox_attr_i(n, "spatial", 1) != 1)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "spatial=0");
    bool nhwc;
    ir_node *x = ox_in_keep(c, n, 0, &nhwc);
    if (!x) return KILN_ERR_INVALID;
    if (!nhwc && x->type.rank == 4) x = ox_in_nhwc(c, n, 0), nhwc = true;
    if (!x || (x->type.rank != 2 && x->type.rank != 4) || x->type.dtype != IR_F32)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "only f32 [N, C] and 2-D images [N, C, H, W]");
    ir_node *in[5] = {x};
    for (int k = 1; k < 5; k++) {
        if (!(in[k] = ox_in(c, n, k))) return KILN_ERR_INVALID;
        if (k >= 3 && in[k]->op == IR_GLOBAL) c->m->globals[in[k]->index]->trainable = false;
    }
    ir_attrs a = ir_attrs_default(IR_OP_batch_norm);
    ir_attrs_set_f(&a, "epsilon", ox_attr_f(n, "epsilon", 1e-5f));
    ir_attrs_set_f(&a, "momentum", ox_attr_f(n, "momentum", 0.9f));
    ir_attrs_set_i(&a, "training", 1);
    return ox_set_as(c, OUT0(n), ir_b_op(&c->b, IR_OP_batch_norm, 5, in, &a), nhwc);
}

/* NCHW axis of NHWC axis j: an image held in NHWC has dims[j] = nchw[nhwc_axis[j]]. */
static const int nhwc_axis[4] = {0, 2, 3, 1};

static ir_node *pad_mode_op(ox_ctx *c, ir_node *x, const int64_t *before, const int64_t *after,
                           double value, int64_t mode) {
    ir_attrs a = ir_attrs_default(IR_OP_pad);
    ir_attrs_set_ints(&a, "before", x->type.rank, before);
    ir_attrs_set_ints(&a, "after", x->type.rank, after);
    ir_attrs_set_f(&a, "value", value);
    ir_attrs_set_i(&a, "mode", mode);
    return ir_b_op(&c->b, IR_OP_pad, 1, &x, &a);
}

ir_node *ox_pad(ox_ctx *c, ir_node *x, const int64_t *before, const int64_t *after, double value) {
    return pad_mode_op(c, x, before, after, value, 0);
}

/* Pad: the IR's pad, modes constant, reflect and edge (ONNX's names; the
 * IR's enum in the same order). */
kiln_status ox_b_pad(ox_ctx *c, const Onnx__NodeProto *n) {
    static const char *const modes[3] = {"constant", "reflect", "edge"};
    const Onnx__AttributeProto *m = ox_attr(n, "mode");
    int64_t mode = 0;
    if (m && m->has_s) {
        for (mode = 0; mode < 3; mode++)
            if (m->s.len == strlen(modes[mode]) && !memcmp(m->s.data, modes[mode], m->s.len)) break;
        if (mode == 3)
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "Pad mode '%.*s' (only 'constant', 'reflect', 'edge')",
                           (int)(m->s.len > 20 ? 20 : m->s.len), (const char *)m->s.data);
    }
    const int64_t *p = NULL;
    int np = -1;
    double value = 0;
    if (c->opset < 11) {
        np = ox_attr_ints(n, c->opset < 2 ? "paddings" : "pads", &p);
        value = ox_attr_f(n, "value", 0);
    } else {
        const ox_tensor *t = ox_in_const(c, n, 1);
        if (!t || !t->is_int) return ox_fail(c, KILN_ERR_UNSUPPORTED, "pads must be a constant");
        if (ox_has_in(n, 3)) return ox_fail(c, KILN_ERR_UNSUPPORTED, "the axes operand");
        np = (int)(t->n > 64 ? 64 : t->n);
        p = t->i;
        if (ox_has_in(n, 2)) {
            const ox_tensor *v = ox_in_const(c, n, 2);
            if (!v || v->n != 1)
                return ox_fail(c, KILN_ERR_UNSUPPORTED, "constant_value must be a constant scalar");
            value = v->is_int ? (double)v->i[0] : v->f[0];
        }
    }
    bool any = false;
    for (int k = 0; k < np; k++) any |= p[k] != 0;
    bool l;
    ir_node *x = ox_in_keep(c, n, 0, &l);
    if (!any) { /* nothing to pad (PyTorch writes one before avg_pool2d) */
        if (x && l) return ox_set_as(c, OUT0(n), x, true);
        ox_val *v = ox_has_in(n, 0) ? ox_lookup(c, n->input[0]) : NULL;
        if (v && v->k && !v->node) return ox_set_const(c, OUT0(n), v->k);
        return x ? ox_set(c, OUT0(n), x) : KILN_ERR_INVALID;
    }
    if (!x) return KILN_ERR_INVALID;
    int r = x->type.rank;
    if (np != 2 * r)
        return ox_fail(c, KILN_ERR_INVALID, "%d pads for an operand of rank %d", np, r);
    int64_t before[KILN_MAX_RANK], after[KILN_MAX_RANK];
    for (int j = 0; j < r; j++) { /* held in NHWC: the NCHW counts permuted */
        int a = l ? nhwc_axis[j] : j;
        before[j] = p[a];
        after[j] = p[r + a];
        if (x->type.dims[j] == KILN_BATCH && (before[j] || after[j]))
            return ox_fail(c, KILN_ERR_UNSUPPORTED, "padding the batch axis");
    }
    return ox_set_as(c, OUT0(n), pad_mode_op(c, x, before, after, value, mode), l);
}

/* Concat of run-time tensors: each placed by a pad to the result's extent
 * along the axis (zeros elsewhere) and the pads summed. Images held in NHWC
 * stay so. */
kiln_status ox_concat_run(ox_ctx *c, const Onnx__NodeProto *n) {
    int k_n = (int)n->n_input;
    if (k_n < 1) return ox_fail(c, KILN_ERR_INVALID, "no operands");
    bool all_nhwc = true, l;
    for (int k = 0; k < k_n && all_nhwc; k++) {
        ox_val *v = ox_has_in(n, k) ? ox_lookup(c, n->input[k]) : NULL;
        all_nhwc = v && !v->node && v->nhwc;
    }
    ir_node *x0 = all_nhwc ? ox_in_keep(c, n, 0, &l) : ox_in(c, n, 0);
    if (!x0) return KILN_ERR_INVALID;
    int r = x0->type.rank;
    int64_t axis = ox_attr_i(n, "axis", c->opset < 4 ? 1 : INT64_MIN);
    if (axis == INT64_MIN) return ox_fail(c, KILN_ERR_INVALID, "the axis attribute is missing");
    if (axis < -r || axis >= r) return ox_fail(c, KILN_ERR_INVALID, "axis %lld for rank %d", (long long)axis, r);
    if (axis < 0) axis += r;
    if (all_nhwc) axis = axis == 1 ? 3 : axis == 0 ? 0 : axis - 1; /* N, C, H, W -> N, H, W, C */
    if (x0->type.dims[axis] == KILN_BATCH)
        return ox_fail(c, KILN_ERR_UNSUPPORTED, "Concat along the batch axis");
    ir_node *xs[64];
    if (k_n > 64) return ox_fail(c, KILN_ERR_UNSUPPORTED, "Concat of more than 64 operands");
    int64_t total = 0;
    char ta[IR_TYPE_STR_MAX], tb[IR_TYPE_STR_MAX];
    for (int k = 0; k < k_n; k++) {
        xs[k] = all_nhwc ? ox_in_keep(c, n, k, &l) : ox_in(c, n, k);
        if (!xs[k]) return KILN_ERR_INVALID;
        const ir_type *t = &xs[k]->type;
        bool fits = t->rank == r && t->dtype == x0->type.dtype;
        for (int a = 0; a < r && fits; a++) fits = a == axis || t->dims[a] == x0->type.dims[a];
        if (!fits)
            return ox_fail(c, KILN_ERR_SHAPE, "operands %s and %s do not concatenate on axis %lld",
                           ir_type_str(&x0->type, ta, sizeof ta), ir_type_str(t, tb, sizeof tb),
                           (long long)axis);
        total += t->dims[axis];
    }
    if (total >= IR_MAX_DIM) return ox_fail(c, KILN_ERR_LIMIT, "the result is too large");
    ir_node *y = NULL;
    int64_t at = 0;
    for (int k = 0; k < k_n; k++) {
        int64_t before[KILN_MAX_RANK] = {0}, after[KILN_MAX_RANK] = {0}, d = xs[k]->type.dims[axis];
        before[axis] = at;
        after[axis] = total - at - d;
        at += d;
        ir_node *pk = k_n == 1 ? xs[k] : ox_pad(c, xs[k], before, after, 0);
        y = y ? ir_b_bin(&c->b, IR_OP_add, y, pk) : pk;
        if (!y) return c->b.status ? c->b.status : KILN_ERR_INVALID;
    }
    return ox_set_as(c, OUT0(n), y, all_nhwc);
}

bool ox_flat_matmul(ox_ctx *c, const Onnx__NodeProto *n, int k, int w, bool trans_w,
                    ir_node **x, ir_node **weight) {
    ox_val *v = ox_has_in(n, k) ? ox_lookup(c, n->input[k]) : NULL;
    ox_val *wv = ox_has_in(n, w) ? ox_lookup(c, n->input[w]) : NULL;
    if (!v || v->node || !v->flat || !wv || !wv->k || wv->node || wv->transposed || wv->k->is_int ||
        wv->k->rank != 2)
        return false;
    const ir_type *t = &v->flat->type;
    int64_t h = t->dims[1], wd = t->dims[2], ch = t->dims[3], len = h * wd * ch;
    const ox_tensor *src = wv->k;
    if (src->dims[trans_w ? 1 : 0] != len) return false;
    /* [len, out] either way (transB's [out, len] transposed). */
    int64_t cols = src->dims[trans_w ? 0 : 1], dims[2] = {len, cols};
    ox_tensor *p = ox_const_new(c, false, 2, dims);
    if (!p) return false;
    for (int64_t y = 0; y < h; y++)
        for (int64_t xx = 0; xx < wd; xx++)
            for (int64_t z = 0; z < ch; z++) {
                int64_t to = (y * wd + xx) * ch + z, from = (z * h + y) * wd + xx;
                if (trans_w)
                    for (int64_t r = 0; r < cols; r++) p->f[to * cols + r] = src->f[r * len + from];
                else
                    memcpy(p->f + to * cols, src->f + from * cols, (size_t)cols * 4);
            }
    wv->permuted = true;
    *weight = ox_param(c, wv->name, p, wv->initializer);
    int64_t d[2] = {t->dims[0], len};
    ir_type ft = ir_type_make(IR_F32, 2, d);
    *x = ir_b_reshape(&c->b, v->flat, &ft);
    return *weight && *x;
}

#endif

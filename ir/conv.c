/*
 * conv.c — the 2-D window ops over NHWC images: geometry, shape inference
 * and interpreter kernels of conv2d (with its bias and fused activation, as
 * dense), its input and filter gradients, max and average pooling and their
 * gradients. The kernels are the oracle: direct loops, sums in double.
 *
 * Operands by row (ops.def):
 *   conv2d(x, kernel, bias)            kernel [kh,kw,in,out], bias [out]
 *   conv2d_grad_input(dz, kernel, x)   -> x's shape (x gives only the shape)
 *   conv2d_grad_filter(x, dz, kernel)  -> kernel's shape (likewise)
 *   max_pool2d(x), avg_pool2d(x)
 *   max_pool2d_grad(x, dy), avg_pool2d_grad(x, dy) -> x's shape
 * Max pooling ignores padded cells; its gradient goes to the first maximum
 * of each window. Average pooling divides by the window's real (unpadded)
 * cell count, as Keras does.
 */
#include "ir/conv.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- geometry */

static int64_t at_or(const int64_t *v, int n, int k, int64_t dflt) { return k < n ? v[k] : dflt; }

static void out_size(int64_t in, int64_t k, int64_t s, int64_t d, bool same, int64_t *out,
                     int64_t *pad) {
    int64_t dk = (k - 1) * d + 1;
    if (s < 1) s = 1;
    if (same) {
        *out = (in + s - 1) / s;
        int64_t total = (*out - 1) * s + dk - in;
        *pad = total > 0 ? total / 2 : 0;
    } else {
        *out = in >= dk ? (in - dk) / s + 1 : 0;
        *pad = 0;
    }
}

void ir_win_of(const ir_node *n, ir_win *g) {
    memset(g, 0, sizeof *g);
    int xi = n->op == IR_OP_conv2d_grad_input ? 2 : 0;
    const ir_type *x = &n->in[xi]->type;
    g->conv = n->op == IR_OP_conv2d || n->op == IR_OP_conv2d_grad_input ||
              n->op == IR_OP_conv2d_grad_filter;
    if (x->rank == 4) {
        g->n = x->dims[0];
        g->h = x->dims[1];
        g->w = x->dims[2];
        g->c = x->dims[3];
    }
    const int64_t *s, *dl = NULL, *p;
    int ns = ir_attr_ints(n, "strides", &s), nd = 0;
    if (g->conv) {
        const ir_type *k = &n->in[n->op == IR_OP_conv2d_grad_filter ? 2 : 1]->type;
        if (k->rank == 4) {
            g->kh = k->dims[0];
            g->kw = k->dims[1];
            g->co = k->dims[3];
        }
        nd = ir_attr_ints(n, "dilation", &dl);
    } else {
        int np = ir_attr_ints(n, "pool_size", &p);
        g->kh = at_or(p, np, 0, 1);
        g->kw = at_or(p, np, 1, g->kh);
        g->co = g->c;
    }
    g->sh = at_or(s, ns, 0, 1);
    g->sw = at_or(s, ns, 1, g->sh);
    g->dh = nd ? at_or(dl, nd, 0, 1) : 1;
    g->dw = nd ? at_or(dl, nd, 1, g->dh) : 1;
    bool same = ir_attr_i(n, "padding") == 1;
    out_size(g->h, g->kh, g->sh, g->dh, same, &g->oh, &g->pt);
    out_size(g->w, g->kw, g->sw, g->dw, same, &g->ow, &g->pl);
    const int64_t *pd;
    if (ir_attr_ints(n, "pads", &pd) == 4) { /* explicit: [top, left, bottom, right] */
        int64_t ph = g->h + pd[0] + pd[2] - ((g->kh - 1) * g->dh + 1);
        int64_t pw = g->w + pd[1] + pd[3] - ((g->kw - 1) * g->dw + 1);
        g->pt = pd[0];
        g->pl = pd[1];
        g->oh = ph >= 0 ? ph / g->sh + 1 : 0;
        g->ow = pw >= 0 ? pw / g->sw + 1 : 0;
    }
}

ir_type ir_win_out_type(const ir_win *g) {
    int64_t dims[4] = {g->n, g->oh, g->ow, g->co};
    return ir_type_make(IR_F32, 4, dims);
}

int64_t ir_win_im2col_rows(const ir_win *g) {
    int64_t K = g->kh * g->kw * g->c;
    if (g->c < 1 || g->co < 1 || K < 1 || K + g->co > IR_IM2COL_FLOATS) return 0;
    return IR_IM2COL_FLOATS / (K + g->co);
}

int64_t ir_win_im2col_floats(const ir_win *g) {
    return ir_win_im2col_rows(g) * g->kh * g->kw * g->c;
}

int64_t ir_win_task_floats(const ir_win *g, bool filter_grad) {
    int64_t f = ir_win_im2col_floats(g);
    if (filter_grad && g->c <= IR_CONV_DIRECT_IN) /* in registers: no columns */
        f = g->kh * g->kw * g->c * g->co;
    else if (f && filter_grad)
        f += g->kh * g->kw * g->c * g->co;
    return (f + 15) / 16 * 16;
}

void ws_conv2d(const ir_node *n, int64_t *fixed, int64_t *per_sample) {
    ir_win g;
    ir_win_of(n, &g);
    /* conv2d's forward is a direct convolution in registers (no columns). */
    bool filter = n->op == IR_OP_conv2d_grad_filter;
    *fixed = n->op == IR_OP_conv2d ? 0 : IR_CONV_TASKS * ir_win_task_floats(&g, filter) * 4;
    *per_sample = 0;
}

void ws_conv2d_grad_bias(const ir_node *n, int64_t *fixed, int64_t *per_sample) {
    int64_t co = n->in[0]->type.dims[n->in[0]->type.rank - 1];
    *fixed = IR_CONV_TASKS * ((co + 15) / 16 * 16) * 4;
    *per_sample = 0;
}

/* ------------------------------------------------------ shape inference */

static kiln_status win_err(const ir_node *n, kiln_diag *d, const char *what, const ir_type *a,
                           const ir_type *b) {
    char ta[IR_TYPE_STR_MAX], tb[IR_TYPE_STR_MAX];
    if (!b)
        return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: %s: %s", ir_op_name(n->op), what,
                        ir_type_str(a, ta, sizeof ta));
    return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: %s: %s and %s", ir_op_name(n->op), what,
                    ir_type_str(a, ta, sizeof ta), ir_type_str(b, tb, sizeof tb));
}

static bool image_ok(const ir_type *t) {
    if (t->rank != 4 || t->dtype != IR_F32) return false;
    for (int a = 1; a < 4; a++)
        if (t->dims[a] == KILN_BATCH) return false;
    return true;
}

static kiln_status check_list(const ir_node *n, kiln_diag *d, const char *name, bool zero_ok) {
    const int64_t *v;
    int k = ir_attr_ints(n, name, &v);
    if (k != 0 && k != 1 && k != 2)
        return ir_error(d, KILN_ERR_INVALID, n->loc, "%s: %s needs 1 or 2 values, got %d",
                        ir_op_name(n->op), name, k);
    for (int i = 0; i < k; i++)
        if (v[i] < (zero_ok ? 0 : 1) || v[i] > IR_MAX_DIM)
            return ir_error(d, KILN_ERR_INVALID, n->loc, "%s: %s must be at least 1, got %lld",
                            ir_op_name(n->op), name, (long long)v[i]);
    return KILN_OK;
}

/* Checks the image operand, the attributes and the window against the
 * unpadded input; fills g. */
static kiln_status check_win(const ir_node *n, kiln_diag *d, const ir_type *x, ir_win *g) {
    if (!image_ok(x)) return win_err(n, d, "expects an f32 NHWC image [?,h,w,c], got", x, NULL);
    kiln_status st = check_list(n, d, "strides", false);
    if (!st && ir_op_attr_index(n->op, "dilation") >= 0) st = check_list(n, d, "dilation", false);
    if (!st && ir_op_attr_index(n->op, "pool_size") >= 0) st = check_list(n, d, "pool_size", false);
    if (st) return st;
    ir_win_of(n, g);
    if ((g->sh > 1 || g->sw > 1) && (g->dh > 1 || g->dw > 1))
        return ir_error(d, KILN_ERR_INVALID, n->loc,
                        "%s: strides > 1 together with dilation > 1 is not supported (as in "
                        "Keras)",
                        ir_op_name(n->op));
    int64_t dkh = (g->kh - 1) * g->dh + 1, dkw = (g->kw - 1) * g->dw + 1;
    const int64_t *pd;
    int np = ir_attr_ints(n, "pads", &pd);
    if (np != 0 && np != 4)
        return ir_error(d, KILN_ERR_INVALID, n->loc, "%s: pads needs 4 values, got %d",
                        ir_op_name(n->op), np);
    for (int i = 0; i < np; i++)
        if (pd[i] < 0 || pd[i] >= (i % 2 ? dkw : dkh))
            return ir_error(d, KILN_ERR_INVALID, n->loc,
                            "%s: pads must be at least 0 and less than the window, got %lld",
                            ir_op_name(n->op), (long long)pd[i]);
    if (np && (g->oh < 1 || g->ow < 1))
        return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: the padded input is smaller than the window",
                        ir_op_name(n->op));
    if (!np && ir_attr_i(n, "padding") == 0 && (dkh > g->h || dkw > g->w))
        return ir_error(d, KILN_ERR_SHAPE, n->loc,
                        "%s: window %lldx%lld is larger than the unpadded input %lldx%lld "
                        "(padding valid)",
                        ir_op_name(n->op), (long long)dkh, (long long)dkw, (long long)g->h,
                        (long long)g->w);
    return KILN_OK;
}

static kiln_status check_kernel(const ir_node *n, kiln_diag *d, const ir_type *x,
                                const ir_type *k) {
    if (k->rank != 4 || k->dtype != IR_F32 || ir_type_batch_axis(k) >= 0)
        return win_err(n, d, "kernel must be f32 [kh,kw,in,out], got", k, NULL);
    if (k->dims[0] < 1 || k->dims[1] < 1)
        return win_err(n, d, "kernel has an empty window", k, NULL);
    if (x->rank == 4 && k->dims[2] != x->dims[3])
        return win_err(n, d, "input channels differ from the kernel's", x, k);
    return KILN_OK;
}

kiln_status infer_conv2d(ir_node *n, kiln_diag *d) {
    const ir_type *x = &n->in[0]->type, *k = &n->in[1]->type, *b = &n->in[2]->type;
    ir_win g;
    kiln_status st = check_kernel(n, d, x, k);
    if (st || (st = check_win(n, d, x, &g))) return st;
    if (b->rank != 1 || b->dtype != IR_F32 || b->dims[0] != k->dims[3])
        return win_err(n, d, "bias does not match the kernel", b, k);
    int64_t act = ir_attr_i(n, "activation");
    if (act != 0 && !ir_op_has((int)act, IR_FACT_ACT))
        return ir_error(d, KILN_ERR_INVALID, n->loc,
                        "conv2d: activation '%s' cannot be fused into conv2d",
                        ir_attr_op_name(act));
    n->type = ir_win_out_type(&g);
    return KILN_OK;
}

/* dz must have the forward result's shape. */
static kiln_status check_dz(const ir_node *n, kiln_diag *d, const ir_win *g, const ir_type *dz) {
    ir_type want = ir_win_out_type(g);
    if (!ir_type_eq(dz, &want)) return win_err(n, d, "gradient does not match the output", dz, &want);
    return KILN_OK;
}

kiln_status infer_conv2d_grad_input(ir_node *n, kiln_diag *d) {
    const ir_type *x = &n->in[2]->type, *k = &n->in[1]->type;
    ir_win g;
    kiln_status st = check_kernel(n, d, x, k);
    if (st || (st = check_win(n, d, x, &g)) || (st = check_dz(n, d, &g, &n->in[0]->type)))
        return st;
    n->type = *x;
    return KILN_OK;
}

kiln_status infer_conv2d_grad_filter(ir_node *n, kiln_diag *d) {
    const ir_type *x = &n->in[0]->type, *k = &n->in[2]->type;
    ir_win g;
    kiln_status st = check_kernel(n, d, x, k);
    if (st || (st = check_win(n, d, x, &g)) || (st = check_dz(n, d, &g, &n->in[1]->type)))
        return st;
    n->type = *k;
    return KILN_OK;
}

kiln_status infer_conv2d_grad_bias(ir_node *n, kiln_diag *d) {
    const ir_type *t = &n->in[0]->type;
    if (!image_ok(t)) return win_err(n, d, "expects an f32 NHWC image [?,h,w,c], got", t, NULL);
    n->type = ir_type_make(IR_F32, 1, &t->dims[3]);
    return KILN_OK;
}

kiln_status infer_pool2d(ir_node *n, kiln_diag *d) {
    ir_win g;
    kiln_status st = check_win(n, d, &n->in[0]->type, &g);
    if (st) return st;
    n->type = ir_win_out_type(&g);
    return KILN_OK;
}

kiln_status infer_pool2d_grad(ir_node *n, kiln_diag *d) {
    ir_win g;
    kiln_status st = check_win(n, d, &n->in[0]->type, &g);
    if (st || (st = check_dz(n, d, &g, &n->in[1]->type))) return st;
    n->type = n->in[0]->type;
    return KILN_OK;
}

/* ------------------------------------------------------------- kernels */

/* The batch of a bound image tensor. */
static int64_t batch_of(const ir_tensor *t) { return t->type.dims[0]; }

/* Input row iy of output row oy, tap ky; false when it falls in padding. */
static bool tap(int64_t o, int64_t k, int64_t s, int64_t dl, int64_t pad, int64_t in, int64_t *i) {
    *i = o * s - pad + k * dl;
    return *i >= 0 && *i < in;
}

/* Every (output pixel, tap) pair of image b with the tap inside the image:
 * x row at (iy, ix), kernel block [ky,kx]. */
#define FOR_TAPS(g, b)                                                                             \
    for (int64_t oy = 0; oy < (g)->oh; oy++)                                                       \
        for (int64_t ox = 0; ox < (g)->ow; ox++)                                                   \
            for (int64_t ky = 0, iy; ky < (g)->kh; ky++)                                           \
                if (tap(oy, ky, (g)->sh, (g)->dh, (g)->pt, (g)->h, &iy))                           \
                    for (int64_t kx = 0, ix; kx < (g)->kw; kx++)                                   \
                        if (tap(ox, kx, (g)->sw, (g)->dw, (g)->pl, (g)->w, &ix))

#define XOFF(g, b, iy, ix) ((((b) * (g)->h + (iy)) * (g)->w + (ix)) * (g)->c)
#define YOFF(g, b, oy, ox) ((((b) * (g)->oh + (oy)) * (g)->ow + (ox)) * (g)->co)
#define KOFF(g, ky, kx) (((ky) * (g)->kw + (kx)) * (g)->c * (g)->co)

static kiln_status no_mem(ir_interp *ip) { return ir_oom(ir_interp_diag(ip)); }

kiln_status k_conv2d(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    ir_win g;
    ir_win_of(n, &g);
    int64_t nb = batch_of(&in[0]);
    const float *x = in[0].data, *k = in[1].data, *bias = in[2].data;
    float *y = out->data;
    double *acc = calloc((size_t)(nb * g.oh * g.ow * g.co) + 1, sizeof *acc);
    if (!acc) return no_mem(ip);
    for (int64_t b = 0; b < nb; b++) FOR_TAPS(&g, b) {
            const float *xr = x + XOFF(&g, b, iy, ix), *kb = k + KOFF(&g, ky, kx);
            double *a = acc + YOFF(&g, b, oy, ox);
            for (int64_t ci = 0; ci < g.c; ci++)
                for (int64_t co = 0; co < g.co; co++) a[co] += (double)xr[ci] * kb[ci * g.co + co];
        }
    int act = (int)ir_attr_i(n, "activation");
    ir_scalar_fn f = act ? ir_op(act)->scalar : NULL;
    for (int64_t e = 0, total = nb * g.oh * g.ow * g.co; e < total; e++) {
        ir_scalar v = {.f = (float)acc[e] + bias[e % g.co]};
        y[e] = f ? f(n, &v).f : v.f;
    }
    free(acc);
    return KILN_OK;
}

kiln_status k_conv2d_grad_input(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                const ir_tensor *in) {
    ir_win g;
    ir_win_of(n, &g);
    int64_t nb = batch_of(&in[2]), total = nb * g.h * g.w * g.c;
    const float *dz = in[0].data, *k = in[1].data;
    double *acc = calloc((size_t)total + 1, sizeof *acc);
    if (!acc) return no_mem(ip);
    for (int64_t b = 0; b < nb; b++) FOR_TAPS(&g, b) {
            const float *dr = dz + YOFF(&g, b, oy, ox), *kb = k + KOFF(&g, ky, kx);
            double *a = acc + XOFF(&g, b, iy, ix);
            for (int64_t ci = 0; ci < g.c; ci++)
                for (int64_t co = 0; co < g.co; co++) a[ci] += (double)dr[co] * kb[ci * g.co + co];
        }
    float *dx = out->data;
    for (int64_t e = 0; e < total; e++) dx[e] = (float)acc[e];
    free(acc);
    return KILN_OK;
}

kiln_status k_conv2d_grad_filter(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                 const ir_tensor *in) {
    ir_win g;
    ir_win_of(n, &g);
    int64_t nb = batch_of(&in[0]), total = g.kh * g.kw * g.c * g.co;
    const float *x = in[0].data, *dz = in[1].data;
    double *acc = calloc((size_t)total + 1, sizeof *acc);
    if (!acc) return no_mem(ip);
    for (int64_t b = 0; b < nb; b++) FOR_TAPS(&g, b) {
            const float *xr = x + XOFF(&g, b, iy, ix), *dr = dz + YOFF(&g, b, oy, ox);
            double *a = acc + KOFF(&g, ky, kx);
            for (int64_t ci = 0; ci < g.c; ci++)
                for (int64_t co = 0; co < g.co; co++) a[ci * g.co + co] += (double)xr[ci] * dr[co];
        }
    float *dk = out->data;
    for (int64_t e = 0; e < total; e++) dk[e] = (float)acc[e];
    free(acc);
    return KILN_OK;
}

kiln_status k_conv2d_grad_bias(ir_interp *ip, const ir_node *n, ir_tensor *out,
                               const ir_tensor *in) {
    const ir_type *t = &n->in[0]->type;
    int64_t co = t->dims[3], rows = batch_of(&in[0]) * t->dims[1] * t->dims[2];
    const float *dz = in[0].data;
    double *acc = calloc((size_t)co + 1, sizeof *acc);
    if (!acc) return no_mem(ip);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < co; j++) acc[j] += dz[r * co + j];
    float *db = out->data;
    for (int64_t j = 0; j < co; j++) db[j] = (float)acc[j];
    free(acc);
    return KILN_OK;
}

/* One pooling window of image b at (oy, ox), channel ch: its maximum and
 * the offset in x of the first cell holding it, its sum and cell count. */
typedef struct pool_cell {
    float max;
    int64_t at, count;
    double sum;
} pool_cell;

static pool_cell pool_window(const ir_win *g, const float *x, int64_t b, int64_t oy, int64_t ox,
                             int64_t ch) {
    pool_cell r = {0, -1, 0, 0};
    for (int64_t ky = 0, iy; ky < g->kh; ky++)
        if (tap(oy, ky, g->sh, 1, g->pt, g->h, &iy))
            for (int64_t kx = 0, ix; kx < g->kw; kx++)
                if (tap(ox, kx, g->sw, 1, g->pl, g->w, &ix)) {
                    int64_t o = XOFF(g, b, iy, ix) + ch;
                    if (r.at < 0 || x[o] > r.max) {
                        r.max = x[o];
                        r.at = o;
                    }
                    r.sum += x[o];
                    r.count++;
                }
    return r;
}

/* Pooling forward (grad == NULL) or backward (dx += spread of dy). */
static void pool(const ir_node *n, const ir_tensor *xt, const float *dy, float *y, float *dx) {
    ir_win g;
    ir_win_of(n, &g);
    bool is_max = n->op == IR_OP_max_pool2d || n->op == IR_OP_max_pool2d_grad;
    /* relu_mask: the gradient reaches only positive maxima (a relu before
     * the pool: its derivative, applied here, grad_conv2d). */
    bool mask = n->op == IR_OP_max_pool2d_grad && ir_attr_i(n, "relu_mask");
    const float *x = xt->data;
    int64_t nb = batch_of(xt);
    if (dx) memset(dx, 0, (size_t)(nb * g.h * g.w * g.c) * sizeof *dx);
    for (int64_t b = 0; b < nb; b++)
        for (int64_t oy = 0; oy < g.oh; oy++)
            for (int64_t ox = 0; ox < g.ow; ox++)
                for (int64_t ch = 0; ch < g.c; ch++) {
                    pool_cell r = pool_window(&g, x, b, oy, ox, ch);
                    int64_t o = YOFF(&g, b, oy, ox) + ch;
                    if (!dx) {
                        y[o] = is_max ? r.max : (float)(r.sum / (double)r.count);
                    } else if (is_max) {
                        if (!mask || x[r.at] > 0) dx[r.at] += dy[o];
                    } else {
                        float share = dy[o] / (float)r.count;
                        for (int64_t ky = 0, iy; ky < g.kh; ky++)
                            if (tap(oy, ky, g.sh, 1, g.pt, g.h, &iy))
                                for (int64_t kx = 0, ix; kx < g.kw; kx++)
                                    if (tap(ox, kx, g.sw, 1, g.pl, g.w, &ix))
                                        dx[XOFF(&g, b, iy, ix) + ch] += share;
                    }
                }
}

kiln_status k_max_pool2d(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    pool(n, &in[0], NULL, out->data, NULL);
    return KILN_OK;
}

kiln_status k_avg_pool2d(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    pool(n, &in[0], NULL, out->data, NULL);
    return KILN_OK;
}

kiln_status k_max_pool2d_grad(ir_interp *ip, const ir_node *n, ir_tensor *out,
                              const ir_tensor *in) {
    pool(n, &in[0], in[1].data, NULL, out->data);
    return KILN_OK;
}

kiln_status k_avg_pool2d_grad(ir_interp *ip, const ir_node *n, ir_tensor *out,
                              const ir_tensor *in) {
    pool(n, &in[0], in[1].data, NULL, out->data);
    return KILN_OK;
}

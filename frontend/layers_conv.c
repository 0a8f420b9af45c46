/*
 * layers_conv.c — the image layers of the language over NHWC tensors
 * (Keras' channels_last), expanded into the ops of ir/conv.c:
 *
 *   conv2d(x, filters, kernel_size, strides=1, padding=valid, dilation_rate=1,
 *          activation=linear, use_bias=true, kernel_initializer=glorot_uniform,
 *          bias_initializer=zeros, trainable=true)
 *       %0 = conv2d(%x, @NAME.kernel, @NAME.bias)    %1 = relu(%0) (the activation)
 *            @NAME.kernel : f32[kh, kw, in, filters]   @NAME.bias : f32[filters]
 *   max_pooling2d(x, pool_size=2, strides=pool_size, padding=valid)
 *   average_pooling2d(x, pool_size=2, strides=pool_size, padding=valid)
 *   global_average_pooling2d(x)   global_max_pooling2d(x)   [?,h,w,c] -> [?,c]
 *   reshape(x, target_shape)      the batch axis kept; one -1 allowed
 *
 * kernel_size, strides, dilation_rate and pool_size take an integer or a
 * list of two. Shape errors name the layer and the shapes, at the call.
 */
#include "frontend/build.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------- the expansion (plain values) */

static kiln_status layer_err(ir_builder *b, const char *kind, const char *name, const char *what,
                             const ir_type *t) {
    char ts[IR_TYPE_STR_MAX];
    return fe_failed(b, ir_error(b->d, KILN_ERR_SHAPE, b->loc, "%s '%s': %s, got %s", kind, name,
                                 what, ir_type_str(t, ts, sizeof ts)));
}

/* x must be an f32 image [?, h, w, c]. */
static kiln_status need_image(ir_builder *b, const char *kind, const char *name, const ir_node *x) {
    const ir_type *t = &x->type;
    bool ok = t->rank == 4 && t->dtype == IR_F32 && ir_type_batch_axis(t) <= 0;
    for (int a = 1; ok && a < 4; a++) ok = t->dims[a] != KILN_BATCH;
    return ok ? KILN_OK : layer_err(b, kind, name, "the input must be an image [?, h, w, c]", t);
}

/* A window of kh x kw taps (dilated) must fit the unpadded input under
 * valid padding; strides and dilation do not combine (as in Keras). */
static kiln_status check_window(ir_builder *b, const char *kind, const char *name,
                                const ir_node *x, int64_t kh, int64_t kw, int64_t dh, int64_t dw,
                                int64_t sh, int64_t sw, bool same) {
    char ts[IR_TYPE_STR_MAX];
    const ir_type *t = &x->type;
    if ((sh > 1 || sw > 1) && (dh > 1 || dw > 1))
        return fe_failed(b, ir_error(b->d, KILN_ERR_INVALID, b->loc,
                                     "%s '%s': strides > 1 and dilation_rate > 1 cannot be "
                                     "combined (as in Keras)",
                                     kind, name));
    int64_t ekh = (kh - 1) * dh + 1, ekw = (kw - 1) * dw + 1;
    if (!same && (ekh > t->dims[1] || ekw > t->dims[2]))
        return fe_failed(b, ir_error(b->d, KILN_ERR_SHAPE, b->loc,
                                     "%s '%s': the window %lldx%lld is larger than the input %s "
                                     "(padding valid)",
                                     kind, name, (long long)ekh, (long long)ekw,
                                     ir_type_str(t, ts, sizeof ts)));
    return KILN_OK;
}

fe_conv2d fe_conv2d_defaults(int64_t filters, int64_t kh, int64_t kw) {
    fe_conv2d a;
    memset(&a, 0, sizeof a);
    a.filters = filters;
    a.kh = kh;
    a.kw = kw;
    a.sh = a.sw = a.dh = a.dw = 1;
    a.act = KILN_ACT_NONE;
    a.alpha = FE_ALPHA_DEFAULT;
    a.use_bias = a.trainable = true;
    a.kernel_init.kind = KILN_INIT_GLOROT_UNIFORM;
    a.bias_init.kind = KILN_INIT_ZEROS;
    return a;
}

kiln_status fe_conv2d_ir(ir_builder *b, const char *name, ir_node *x, const fe_conv2d *a,
                         ir_node **out) {
    kiln_status st = need_image(b, "conv2d", name, x);
    if (!st)
        st = check_window(b, "conv2d", name, x, a->kh, a->kw, a->dh, a->dw, a->sh, a->sw, a->same);
    if (st) return st;
    int64_t in = x->type.dims[3], n_k = a->kh * a->kw * in * a->filters;
    if (n_k > IR_MAX_ELEMS)
        return fe_failed(b, ir_error(b->d, KILN_ERR_LIMIT, b->loc,
                                     "conv2d '%s': the kernel would have more than 2^31 elements",
                                     name));
    int64_t kdims[4] = {a->kh, a->kw, in, a->filters};
    ir_global *k = fe_add_param(b, name, "kernel", 4, kdims, a->kernel_init, a->trainable);
    ir_global *bias = k && a->use_bias ? fe_add_param(b, name, "bias", 1, &a->filters,
                                                      a->bias_init, a->trainable)
                                       : NULL;
    if (!k || (a->use_bias && !bias)) return b->status;
    ir_node *bn = bias ? bias->ref : NULL;
    if (!bn) {
        ir_type bt = ir_type_make(IR_F32, 1, &a->filters);
        bn = ir_b_broadcast_to(b, ir_b_scalar(b, 0.0), &bt);
    }
    /* The activation is an op of its own, as after a dense layer;
     * fuse-conv-act makes it the conv's epilogue. */
    ir_attrs at = ir_attrs_default(IR_OP_conv2d);
    ir_attrs_set_ints(&at, "strides", 2, (const int64_t[]){a->sh, a->sw});
    ir_attrs_set_ints(&at, "dilation", 2, (const int64_t[]){a->dh, a->dw});
    ir_attrs_set_i(&at, "padding", a->same);
    ir_node *y = bn ? ir_b_op(b, IR_OP_conv2d, 3, (ir_node *[]){x, k->ref, bn}, &at) : NULL;
    if (y) y = fe_activation_op(b, y, a->act, a->alpha, -1);
    if (!y) return b->status;
    return fe_layer_row(b, name, FE_CONV2D, y, n_k + (bias ? a->filters : 0), out);
}

kiln_status fe_pool2d_ir(ir_builder *b, const char *name, fe_layer_kind kind, ir_node *x,
                         const int64_t pool[2], const int64_t strides[2], bool same,
                         ir_node **out) {
    const char *what = kind == FE_MAX_POOL2D ? "max_pooling2d" : "average_pooling2d";
    kiln_status st = need_image(b, what, name, x);
    if (!st) st = check_window(b, what, name, x, pool[0], pool[1], 1, 1, 1, 1, same);
    if (st) return st;
    int op = kind == FE_MAX_POOL2D ? IR_OP_max_pool2d : IR_OP_avg_pool2d;
    ir_attrs at = ir_attrs_default(op);
    ir_attrs_set_ints(&at, "pool_size", 2, pool);
    ir_attrs_set_ints(&at, "strides", 2, strides);
    ir_attrs_set_i(&at, "padding", same);
    ir_node *y = ir_b_op(b, op, 1, &x, &at);
    return y ? fe_layer_row(b, name, kind, y, 0, out) : b->status;
}

kiln_status fe_global_pool_ir(ir_builder *b, const char *name, fe_layer_kind kind, ir_node *x,
                              ir_node **out) {
    bool avg = kind == FE_GLOBAL_AVG_POOL2D;
    kiln_status st =
        need_image(b, avg ? "global_average_pooling2d" : "global_max_pooling2d", name, x);
    if (st) return st;
    static const int64_t rows_cols[2] = {1, 2};
    ir_node *y =
        ir_b_reduce(b, avg ? IR_OP_reduce_mean : IR_OP_reduce_max, x, 2, rows_cols, false);
    return y ? fe_layer_row(b, name, kind, y, 0, out) : b->status;
}

kiln_status fe_reshape_ir(ir_builder *b, const char *name, ir_node *x, int rank,
                          const int64_t *target, ir_node **out) {
    const ir_type *t = &x->type;
    if (t->rank == 0 || ir_type_batch_axis(t) > 0 || rank + 1 > KILN_MAX_RANK)
        return layer_err(b, "reshape", name, "the input needs a batch axis first", t);
    int64_t have = 1, want = 1, dims[KILN_MAX_RANK];
    int free_axis = -1;
    for (int a = 1; a < t->rank; a++) have *= t->dims[a];
    dims[0] = t->dims[0];
    for (int i = 0; i < rank; i++) {
        dims[i + 1] = target[i];
        if (target[i] == -1 && free_axis < 0)
            free_axis = i + 1;
        else if (target[i] < 1)
            return layer_err(b, "reshape", name, "target_shape needs sizes >= 1 (one -1)", t);
        else
            want *= target[i];
    }
    if (free_axis > 0 && want > 0 && have % want == 0) dims[free_axis] = have / want;
    if (free_axis > 0) want *= dims[free_axis] > 0 ? dims[free_axis] : 0;
    if (want != have) {
        char msg[160];
        snprintf(msg, sizeof msg, "target_shape holds %lld values a sample, the input %lld",
                 (long long)want, (long long)have);
        return layer_err(b, "reshape", name, msg, t);
    }
    ir_type to = ir_type_make((ir_dtype)t->dtype, rank + 1, dims);
    ir_node *y = ir_b_reshape(b, x, &to);
    return y ? fe_layer_row(b, name, FE_RESHAPE, y, 0, out) : b->status;
}

/* ------------------------------------------------- the calls of the language */

/* The layer an argument error is about: "conv2d 'c' on f32[?,4,4,1]". */
typedef struct layer_ctx {
    const char *kind, *name;
    const ir_node *x;
} layer_ctx;

/* An integer or a list of two, each in [lo, hi]; errors name the layer
 * and its input. */
static kiln_status get_pair(fe_build *c, const layer_ctx *l, const fe_expr *e, const char *what,
                            int64_t lo, int64_t hi, int64_t out[2]) {
    char ts[IR_TYPE_STR_MAX];
    const char *in = ir_type_str(&l->x->type, ts, sizeof ts);
    const fe_expr *it[2] = {e, e};
    if (e->kind == FE_E_LIST) {
        if (e->n_items != 2)
            return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                          "%s '%s' on %s: '%s' must be an integer or a list of two, got %d values",
                          l->kind, l->name, in, what, e->n_items);
        it[0] = e->items;
        it[1] = e->items->next;
    }
    for (int k = 0; k < 2; k++) {
        kiln_status st = fe_get_int(c, it[k], what, INT64_MIN, INT64_MAX, &out[k]);
        if (st) return st;
        if (out[k] < lo || out[k] > hi)
            return fe_err(c, KILN_ERR_INVALID, it[k]->line, it[k]->col,
                          "%s '%s' on %s: '%s' must be between %lld and %lld, got %lld", l->kind,
                          l->name, in, what, (long long)lo, (long long)hi, (long long)out[k]);
    }
    return KILN_OK;
}

static kiln_status get_padding(fe_build *c, const fe_expr *e, bool *same) {
    char b[64];
    if (e->kind == FE_E_NAME && (!strcmp(e->name, "same") || !strcmp(e->name, "valid"))) {
        *same = !strcmp(e->name, "same");
        return KILN_OK;
    }
    return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "'padding' must be valid or same, got %s",
                  fe_expr_str(e, b, sizeof b));
}

#define MAX_WIN (1 << 20)

kiln_status fe_conv2d_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                           const char *name, ir_node **out) {
    int64_t filters, ks[2], s[2] = {1, 1}, dl[2] = {1, 1};
    layer_ctx l = {ls->name, name, x[0]};
    kiln_status st = fe_get_int(c, v[1], "filters", 1, IR_MAX_DIM - 1, &filters);
    if (!st) st = get_pair(c, &l, v[2], "kernel_size", 1, MAX_WIN, ks);
    fe_conv2d a = fe_conv2d_defaults(filters, ks[0], ks[1]);
    if (!st && v[3]) st = get_pair(c, &l, v[3], "strides", 1, MAX_WIN, s);
    if (!st && v[4]) st = get_padding(c, v[4], &a.same);
    if (!st && v[5]) st = get_pair(c, &l, v[5], "dilation_rate", 1, MAX_WIN, dl);
    if (!st && v[6]) st = fe_get_activation(c, v[6], &a.act, &a.alpha);
    if (!st && v[7]) st = fe_get_bool(c, v[7], "use_bias", &a.use_bias);
    if (!st && v[8]) st = fe_get_init(c, v[8], "kernel_initializer", &a.kernel_init);
    if (!st && v[9]) st = fe_get_init(c, v[9], "bias_initializer", &a.bias_init);
    if (!st && v[10]) st = fe_get_bool(c, v[10], "trainable", &a.trainable);
    if (st) return st;
    a.sh = s[0], a.sw = s[1], a.dh = dl[0], a.dw = dl[1];
    return fe_expanded(c, fe_conv2d_ir(&c->b, name, x[0], &a, out));
}

kiln_status fe_pool2d_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                           const char *name, ir_node **out) {
    int64_t pool[2] = {2, 2}, s[2];
    bool same = false;
    layer_ctx l = {ls->name, name, x[0]};
    kiln_status st = v[1] ? get_pair(c, &l, v[1], "pool_size", 1, MAX_WIN, pool) : KILN_OK;
    s[0] = pool[0], s[1] = pool[1]; /* Keras: strides default to pool_size */
    if (!st && v[2]) st = get_pair(c, &l, v[2], "strides", 1, MAX_WIN, s);
    if (!st && v[3]) st = get_padding(c, v[3], &same);
    if (st) return st;
    return fe_expanded(c, fe_pool2d_ir(&c->b, name, (fe_layer_kind)ls->kind, x[0], pool, s, same,
                                       out));
}

kiln_status fe_global_pool_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                                const char *name, ir_node **out) {
    return fe_expanded(c, fe_global_pool_ir(&c->b, name, (fe_layer_kind)ls->kind, x[0], out));
}

kiln_status fe_reshape_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                            const char *name, ir_node **out) {
    int64_t dims[KILN_MAX_RANK];
    int n = 0;
    const fe_expr *e = v[1];
    const fe_expr *it = e->kind == FE_E_LIST ? e->items : e;
    for (; it; it = e->kind == FE_E_LIST ? it->next : NULL) {
        if (n >= KILN_MAX_RANK - 1)
            return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                          "'target_shape' has more than %d sizes", KILN_MAX_RANK - 1);
        kiln_status st = fe_get_int(c, it, "target_shape", -1, IR_MAX_DIM, &dims[n++]);
        if (st) return st;
    }
    return fe_expanded(c, fe_reshape_ir(&c->b, name, x[0], n, dims, out));
}

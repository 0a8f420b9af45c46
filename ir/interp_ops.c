/*
 * interp_ops.c — the interpreter's kernel for every op of ops.def.
 * Elementwise rows give a scalar function (s_*); the rest a tensor kernel
 * (k_*). Sums accumulate in double: the oracle should be the most accurate
 * party in a comparison.
 */
#include "ir/ir.h"

#include <math.h>
#include <string.h>

#define F(k) (x[k].f)
#define I(k) (x[k].i)

static ir_scalar sf(float v) {
    ir_scalar s;
    s.f = v;
    return s;
}
static ir_scalar si(int32_t v) {
    ir_scalar s;
    s.i = v;
    return s;
}
static bool is_int(const ir_node *n, int k) { return n->in[k]->type.dtype == IR_I32; }

/* i32 arithmetic wraps (two's complement), never undefined. */
static int32_t wrap(uint32_t v) {
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

ir_scalar s_neg(const ir_node *n, const ir_scalar *x) { return sf(-F(0)); }
ir_scalar s_exp(const ir_node *n, const ir_scalar *x) { return sf(expf(F(0))); }
ir_scalar s_log(const ir_node *n, const ir_scalar *x) { return sf(logf(F(0))); }
ir_scalar s_sqrt(const ir_node *n, const ir_scalar *x) { return sf(sqrtf(F(0))); }
ir_scalar s_pow(const ir_node *n, const ir_scalar *x) {
    return sf(powf(F(0), (float)ir_attr_f(n, "exponent")));
}
/* NaN passes through relu (so a diverging loss is seen); relu(-0) = -0. */
ir_scalar s_relu(const ir_node *n, const ir_scalar *x) { return sf(F(0) < 0.0f ? 0.0f : F(0)); }
ir_scalar s_leaky_relu(const ir_node *n, const ir_scalar *x) {
    return sf(F(0) < 0.0f ? (float)ir_attr_f(n, "alpha") * F(0) : F(0));
}
ir_scalar s_sigmoid(const ir_node *n, const ir_scalar *x) {
    return sf(1.0f / (1.0f + expf(-F(0))));
}
ir_scalar s_tanh(const ir_node *n, const ir_scalar *x) { return sf(tanhf(F(0))); }

/* The Keras 3 activations; codegen/math.c mirrors each formula. */
ir_scalar s_erf(const ir_node *n, const ir_scalar *x) { return sf(erff(F(0))); }
ir_scalar s_elu(const ir_node *n, const ir_scalar *x) {
    return sf(F(0) > 0.0f ? F(0) : (float)ir_attr_f(n, "alpha") * expm1f(F(0)));
}
static float relu6f(float z) { return z < 0.0f ? 0.0f : z > 6.0f ? 6.0f : z; }
ir_scalar s_relu6(const ir_node *n, const ir_scalar *x) { return sf(relu6f(F(0))); }
ir_scalar s_gelu(const ir_node *n, const ir_scalar *x) {
    return sf(0.5f * F(0) * (1.0f + erff(F(0) * 0.70710678f)));
}
/* log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|)). */
ir_scalar s_softplus(const ir_node *n, const ir_scalar *x) {
    return sf((F(0) > 0.0f ? F(0) : 0.0f) + log1pf(expf(-fabsf(F(0)))));
}
ir_scalar s_silu(const ir_node *n, const ir_scalar *x) { return sf(F(0) / (1.0f + expf(-F(0)))); }
ir_scalar s_hard_sigmoid(const ir_node *n, const ir_scalar *x) {
    return sf(relu6f(F(0) + 3.0f) / 6.0f);
}

ir_scalar s_cast(const ir_node *n, const ir_scalar *x) {
    bool from_i = is_int(n, 0), to_i = n->type.dtype == IR_I32;
    if (from_i == to_i) return x[0];
    if (from_i) return sf((float)I(0));
    /* f32 -> i32 truncates toward zero; out-of-range and NaN saturate. */
    float v = F(0);
    if (v != v) return si(0);
    if (v >= 2147483647.0f) return si(INT32_MAX);
    if (v <= -2147483648.0f) return si(INT32_MIN);
    return si((int32_t)v);
}

ir_scalar s_add(const ir_node *n, const ir_scalar *x) {
    return is_int(n, 0) ? si(wrap((uint32_t)I(0) + (uint32_t)I(1))) : sf(F(0) + F(1));
}
ir_scalar s_sub(const ir_node *n, const ir_scalar *x) {
    return is_int(n, 0) ? si(wrap((uint32_t)I(0) - (uint32_t)I(1))) : sf(F(0) - F(1));
}
ir_scalar s_mul(const ir_node *n, const ir_scalar *x) {
    return is_int(n, 0) ? si(wrap((uint32_t)I(0) * (uint32_t)I(1))) : sf(F(0) * F(1));
}
ir_scalar s_div(const ir_node *n, const ir_scalar *x) { return sf(F(0) / F(1)); }
ir_scalar s_maximum(const ir_node *n, const ir_scalar *x) {
    if (is_int(n, 0)) return si(I(0) > I(1) ? I(0) : I(1));
    return sf(F(0) > F(1) ? F(0) : F(1));
}
ir_scalar s_minimum(const ir_node *n, const ir_scalar *x) {
    if (is_int(n, 0)) return si(I(0) < I(1) ? I(0) : I(1));
    return sf(F(0) < F(1) ? F(0) : F(1));
}
ir_scalar s_equal(const ir_node *n, const ir_scalar *x) {
    return si(is_int(n, 0) ? I(0) == I(1) : F(0) == F(1));
}
ir_scalar s_greater(const ir_node *n, const ir_scalar *x) {
    return si(is_int(n, 0) ? I(0) > I(1) : F(0) > F(1));
}
ir_scalar s_select(const ir_node *n, const ir_scalar *x) { return I(0) ? x[1] : x[2]; }
ir_scalar s_copy(const ir_node *n, const ir_scalar *x) { return x[0]; }
ir_scalar s_constant(const ir_node *n, const ir_scalar *x) {
    (void)x;
    return n->type.dtype == IR_I32 ? si((int32_t)ir_attr_f(n, "value")) : sf((float)ir_attr_f(n, "value"));
}

/* ------------------------------------------------------------ reductions */

/* For each input element, the flat index of the output element it reduces
 * into: walks the input multi-index and skips reduced axes. */
typedef struct reducer {
    int rank;
    int64_t dims[KILN_MAX_RANK];
    int64_t ostride[KILN_MAX_RANK]; /* 0 on reduced axes */
    int64_t idx[KILN_MAX_RANK];
    int64_t off;
} reducer;

static void reducer_init(reducer *r, const ir_node *n, const ir_type *x) {
    memset(r, 0, sizeof *r);
    r->rank = x->rank;
    bool red[KILN_MAX_RANK] = {0};
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    if (na == 0)
        for (int a = 0; a < x->rank; a++) red[a] = true;
    for (int i = 0; i < na; i++) red[axes[i]] = true;
    int64_t s = 1;
    for (int a = x->rank - 1; a >= 0; a--) {
        r->dims[a] = x->dims[a];
        r->ostride[a] = red[a] ? 0 : s;
        if (!red[a]) s *= x->dims[a];
    }
}

static void reducer_next(reducer *r) {
    for (int a = r->rank - 1; a >= 0; a--) {
        r->idx[a]++;
        r->off += r->ostride[a];
        if (r->idx[a] < r->dims[a]) return;
        r->off -= r->ostride[a] * r->idx[a];
        r->idx[a] = 0;
    }
}

static int64_t reduced_count(const ir_tensor *in, const ir_tensor *out) {
    int64_t no = ir_type_numel(&out->type, 1);
    return no ? ir_type_numel(&in->type, 1) / no : 0;
}

static kiln_status reduce_sum_mean(const ir_node *n, ir_tensor *out, const ir_tensor *in,
                                   bool mean) {
    int64_t no = ir_type_numel(&out->type, 1), ni = ir_type_numel(&in->type, 1);
    double *acc = ir_calloc((size_t)no + 1, sizeof(double));
    if (!acc) return KILN_ERR_NOMEM;
    reducer r;
    reducer_init(&r, n, &in->type);
    bool ints = in->type.dtype == IR_I32;
    for (int64_t e = 0; e < ni; e++, reducer_next(&r))
        acc[r.off] += ints ? (double)((const int32_t *)in->data)[e] : ((const float *)in->data)[e];
    double cnt = (double)reduced_count(in, out);
    for (int64_t o = 0; o < no; o++) {
        double v = mean ? acc[o] / cnt : acc[o];
        if (ints)
            ((int32_t *)out->data)[o] = (int32_t)v;
        else
            ((float *)out->data)[o] = (float)v;
    }
    ir_free(acc);
    return KILN_OK;
}

kiln_status k_reduce_sum(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    kiln_status st = reduce_sum_mean(n, out, in, false);
    return st ? ir_oom(ir_interp_diag(ip)) : KILN_OK;
}

kiln_status k_reduce_mean(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    kiln_status st = reduce_sum_mean(n, out, in, true);
    return st ? ir_oom(ir_interp_diag(ip)) : KILN_OK;
}

kiln_status k_reduce_max(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    int64_t no = ir_type_numel(&out->type, 1), ni = ir_type_numel(&in->type, 1);
    bool ints = in->type.dtype == IR_I32;
    for (int64_t o = 0; o < no; o++) {
        if (ints)
            ((int32_t *)out->data)[o] = INT32_MIN;
        else
            ((float *)out->data)[o] = -INFINITY;
    }
    reducer r;
    reducer_init(&r, n, &in->type);
    for (int64_t e = 0; e < ni; e++, reducer_next(&r)) {
        if (ints) {
            int32_t v = ((const int32_t *)in->data)[e], *o = (int32_t *)out->data + r.off;
            if (v > *o) *o = v;
        } else {
            float v = ((const float *)in->data)[e], *o = (float *)out->data + r.off;
            if (v > *o || v != v) *o = v; /* NaN wins, so it is seen */
        }
    }
    return KILN_OK;
}

/* Views a tensor as [outer, len, inner] around `axis`. */
static void split_axis(const ir_type *t, int axis, int64_t *outer, int64_t *len, int64_t *inner) {
    *outer = *inner = 1;
    for (int a = 0; a < axis; a++) *outer *= t->dims[a];
    *len = t->dims[axis];
    for (int a = axis + 1; a < t->rank; a++) *inner *= t->dims[a];
}

kiln_status k_argmax(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    int64_t outer, len, inner;
    split_axis(&in->type, (int)ir_attr_i(n, "axis"), &outer, &len, &inner);
    bool ints = in->type.dtype == IR_I32;
    int32_t *o = out->data;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t c = 0; c < inner; c++) {
            int64_t best = 0;
            for (int64_t j = 1; j < len; j++) {
                int64_t e = (a * len + j) * inner + c, b = (a * len + best) * inner + c;
                bool gt = ints ? ((const int32_t *)in->data)[e] > ((const int32_t *)in->data)[b]
                               : ((const float *)in->data)[e] > ((const float *)in->data)[b];
                if (gt) best = j; /* ties keep the first index */
            }
            o[a * inner + c] = (int32_t)best;
        }
    return KILN_OK;
}

static kiln_status softmax_impl(const ir_node *n, ir_tensor *out, const ir_tensor *in, bool logp) {
    int64_t outer, len, inner;
    split_axis(&in->type, (int)ir_attr_i(n, "axis"), &outer, &len, &inner);
    const float *x = in->data;
    float *y = out->data;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t c = 0; c < inner; c++) {
            const float *xr = x + a * len * inner + c;
            float *yr = y + a * len * inner + c;
            float mx = -INFINITY;
            for (int64_t j = 0; j < len; j++)
                if (xr[j * inner] > mx) mx = xr[j * inner];
            double sum = 0;
            for (int64_t j = 0; j < len; j++) sum += exp((double)xr[j * inner] - mx);
            for (int64_t j = 0; j < len; j++) {
                double z = (double)xr[j * inner] - mx;
                yr[j * inner] = logp ? (float)(z - log(sum)) : (float)(exp(z) / sum);
            }
        }
    return KILN_OK;
}

kiln_status k_softmax(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    return softmax_impl(n, out, in, false);
}

kiln_status k_log_softmax(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    return softmax_impl(n, out, in, true);
}

kiln_status k_numel(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    double c = 1;
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    if (na == 0)
        c = (double)ir_type_numel(&in->type, 1);
    else
        for (int i = 0; i < na; i++) c *= (double)in->type.dims[axes[i]];
    *(float *)out->data = (float)c;
    return KILN_OK;
}

/* ------------------------------------------------- linear algebra, layout */

/* C[m,n] = op(A)[m,k] . op(B)[k,n], accumulated in double. */
static void gemm(bool ta, bool tb, int64_t m, int64_t nn, int64_t k, const float *a,
                 const float *b, float *c) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < nn; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) {
                float av = ta ? a[p * m + i] : a[i * k + p];
                float bv = tb ? b[j * k + p] : b[p * nn + j];
                s += (double)av * bv;
            }
            c[i * nn + j] = (float)s;
        }
}

kiln_status k_matmul(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    bool ta = ir_attr_i(n, "transpose_a"), tb = ir_attr_i(n, "transpose_b");
    int64_t m = out->type.dims[0], nn = out->type.dims[1];
    int64_t k = in[0].type.dims[ta ? 0 : 1];
    gemm(ta, tb, m, nn, k, in[0].data, in[1].data, out->data);
    return KILN_OK;
}

/* matmul, then the mask: h > 0 keeps the sum, else 0 or alpha times it
 * (as select(greater(h, 0), p, 0) and leaky_relu's mul compute them). */
kiln_status k_matmul_mask(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    kiln_status st = k_matmul(ip, n, out, in);
    if (st) return st;
    float alpha = (float)ir_attr_f(n, "alpha"), *y = out->data;
    const float *h = in[2].data;
    int64_t total = ir_type_numel(&out->type, 1);
    for (int64_t e = 0; e < total; e++)
        if (!(h[e] > 0.0f)) y[e] = alpha != 0.0f ? y[e] * alpha : 0.0f;
    return KILN_OK;
}

kiln_status k_reshape(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    memmove(out->data, in->data, (size_t)ir_type_numel(&in->type, 1) * 4);
    return KILN_OK;
}

/* stride[a] of `t` (its batch already in dims) laid out row-major. */
static void row_major_strides(const ir_type *t, int64_t *stride) {
    int64_t s = 1;
    for (int a = t->rank - 1; a >= 0; a--) {
        stride[a] = s;
        s *= t->dims[a];
    }
}

kiln_status k_transpose(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    const ir_type *x = &in->type;
    int r = x->rank;
    int64_t xstride[KILN_MAX_RANK];
    row_major_strides(x, xstride);
    const int64_t *perm;
    ir_attr_ints(n, "perm", &perm);
    int64_t total = ir_type_numel(&out->type, 1), idx[KILN_MAX_RANK] = {0};
    const uint32_t *src = in->data;
    uint32_t *dst = out->data;
    for (int64_t e = 0; e < total; e++) {
        int64_t off = 0;
        for (int a = 0; a < r; a++) off += idx[a] * xstride[perm[a]];
        dst[e] = src[off];
        for (int a = r - 1; a >= 0; a--) {
            if (++idx[a] < out->type.dims[a]) break;
            idx[a] = 0;
        }
    }
    return KILN_OK;
}

kiln_status k_one_hot(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    int64_t depth = ir_attr_i(n, "depth"), rows = ir_type_numel(&in->type, 1);
    const int32_t *lab = in->data;
    float *o = out->data;
    memset(o, 0, sizeof(float) * (size_t)(rows * depth));
    for (int64_t i = 0; i < rows; i++)
        if (lab[i] >= 0 && lab[i] < depth) o[i * depth + lab[i]] = 1.0f; /* else: a zero row */
    return KILN_OK;
}

/* ---------------------------------------------------------------- losses */

#define KERAS_EPS 1e-7f

/* Keras' categorical cross-entropy on probabilities: renormalize each row,
 * clip to [eps, 1-eps], -sum(y log q). */
static double cce_row(const float *p, const float *y, int64_t c) {
    double s = 0;
    for (int64_t j = 0; j < c; j++) s += p[j];
    double l = 0;
    for (int64_t j = 0; j < c; j++) {
        float q = (float)(p[j] / s);
        q = q < KERAS_EPS ? KERAS_EPS : q > 1.0f - KERAS_EPS ? 1.0f - KERAS_EPS : q;
        l -= (double)y[j] * log((double)q);
    }
    return l;
}

static void rows_of(const ir_tensor *p, int64_t *rows, int64_t *c) {
    *c = p->type.rank ? p->type.dims[p->type.rank - 1] : 1;
    *rows = *c ? ir_type_numel(&p->type, 1) / *c : 0;
}

static kiln_status set_mean(ir_tensor *out, double sum, int64_t rows) {
    *(float *)out->data = rows ? (float)(sum / (double)rows) : 0.0f;
    return KILN_OK;
}

kiln_status k_categorical_crossentropy(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                       const ir_tensor *in) {
    int64_t rows, c;
    rows_of(&in[0], &rows, &c);
    double sum = 0;
    for (int64_t r = 0; r < rows; r++)
        sum += cce_row((const float *)in[0].data + r * c, (const float *)in[1].data + r * c, c);
    return set_mean(out, sum, rows);
}

static kiln_status label_range_error(ir_interp *ip, const ir_node *n, int32_t lab, int64_t c) {
    return ir_error(ir_interp_diag(ip), KILN_ERR_INVALID, n->loc,
                    "%s: label %d is out of range [0, %lld)", ir_op_name(n->op), (int)lab,
                    (long long)c);
}

kiln_status k_sparse_categorical_crossentropy(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                              const ir_tensor *in) {
    int64_t rows, c;
    rows_of(&in[0], &rows, &c);
    const int32_t *lab = in[1].data;
    double sum = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *p = (const float *)in[0].data + r * c;
        if (lab[r] < 0 || lab[r] >= c) return label_range_error(ip, n, lab[r], c);
        double s = 0;
        for (int64_t j = 0; j < c; j++) s += p[j];
        float q = (float)(p[lab[r]] / s);
        q = q < KERAS_EPS ? KERAS_EPS : q > 1.0f - KERAS_EPS ? 1.0f - KERAS_EPS : q;
        sum -= log((double)q);
    }
    return set_mean(out, sum, rows);
}

kiln_status k_mean_squared_error(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                 const ir_tensor *in) {
    int64_t total = ir_type_numel(&in[0].type, 1);
    const float *p = in[0].data, *y = in[1].data;
    double sum = 0;
    for (int64_t e = 0; e < total; e++) {
        double dlt = (double)p[e] - y[e];
        sum += dlt * dlt;
    }
    return set_mean(out, sum, total);
}

kiln_status k_binary_crossentropy(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                  const ir_tensor *in) {
    int64_t total = ir_type_numel(&in[0].type, 1);
    const float *p = in[0].data, *y = in[1].data;
    double sum = 0;
    for (int64_t e = 0; e < total; e++) {
        float q = p[e] < KERAS_EPS ? KERAS_EPS : p[e] > 1.0f - KERAS_EPS ? 1.0f - KERAS_EPS : p[e];
        sum -= (double)y[e] * log((double)q) + (1.0 - (double)y[e]) * log(1.0 - (double)q);
    }
    return set_mean(out, sum, total);
}

kiln_status k_nll(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    int64_t rows, c;
    rows_of(&in[0], &rows, &c);
    const float *lp = in[0].data, *y = in[1].data;
    double sum = 0;
    for (int64_t e = 0; e < rows * c; e++) sum -= (double)y[e] * lp[e];
    return set_mean(out, sum, rows);
}

/* ------------------------------------------------------------- fused ops */

/* y = act(x . kernel + bias): the activation is an op (IR_FACT_ACT) whose
 * scalar kernel runs on each element, with dense's attributes (alpha). */
kiln_status k_dense(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    int64_t m = out->type.dims[0], nn = out->type.dims[1], k = in[0].type.dims[1];
    float *y = out->data;
    const float *b = in[2].data;
    gemm(false, false, m, nn, k, in[0].data, in[1].data, y);
    int act = (int)ir_attr_i(n, "activation");
    ir_scalar_fn f = act ? ir_op(act)->scalar : NULL;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < nn; j++) {
            ir_scalar v = {.f = y[i * nn + j] + b[j]};
            y[i * nn + j] = f ? f(n, &v).f : v.f;
        }
    return KILN_OK;
}

kiln_status k_softmax_cross_entropy(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                    const ir_tensor *in) {
    int64_t rows, c;
    rows_of(&in[0], &rows, &c);
    bool sparse = in[1].type.dtype == IR_I32;
    double sum = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *z = (const float *)in[0].data + r * c;
        double mx = -INFINITY;
        for (int64_t j = 0; j < c; j++)
            if (z[j] > mx) mx = z[j];
        double s = 0;
        for (int64_t j = 0; j < c; j++) s += exp((double)z[j] - mx);
        double lse = mx + log(s);
        if (sparse) {
            int32_t lab = ((const int32_t *)in[1].data)[r];
            if (lab < 0 || lab >= c) return label_range_error(ip, n, lab, c);
            sum += lse - z[lab];
        } else {
            const float *y = (const float *)in[1].data + r * c;
            for (int64_t j = 0; j < c; j++) sum += (double)y[j] * (lse - z[j]);
        }
    }
    return set_mean(out, sum, rows);
}

/* --------------------------------------------------------------- effects */

kiln_status k_assign(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    void *dst = ir_interp_global(ip, n->in[0]->index);
    memmove(dst, in[1].data, (size_t)ir_type_numel(&in[1].type, 1) * 4);
    return KILN_OK;
}

kiln_status k_fused(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    return ir_interp_region(ip, n, out, in);
}

/* ------------------------------------------------------------------- pad */

kiln_status k_pad(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    const ir_type *x = &in->type;
    int r = x->rank;
    int64_t xstride[KILN_MAX_RANK];
    row_major_strides(x, xstride);
    const int64_t *bf;
    ir_attr_ints(n, "before", &bf);
    double v = ir_attr_f(n, "value");
    int64_t mode = ir_attr_i(n, "mode"); /* 0 constant, 1 reflect, 2 edge */
    uint32_t fill;
    float fv = (float)v;
    int32_t iv = (int32_t)v;
    if (x->dtype == IR_F32)
        memcpy(&fill, &fv, 4);
    else
        memcpy(&fill, &iv, 4);
    int64_t total = ir_type_numel(&out->type, 1), idx[KILN_MAX_RANK] = {0};
    const uint32_t *src = in->data;
    uint32_t *dst = out->data;
    for (int64_t e = 0; e < total; e++) {
        int64_t off = 0;
        bool inside = true;
        for (int a = 0; a < r && inside; a++) {
            int64_t p = idx[a] - bf[a], last = x->dims[a] - 1;
            if (mode == 1) p = p < 0 ? -p : p > last ? 2 * last - p : p;
            if (mode == 2) p = p < 0 ? 0 : p > last ? last : p;
            inside = p >= 0 && p <= last;
            off += p * xstride[a];
        }
        dst[e] = inside ? src[off] : fill;
        for (int a = r - 1; a >= 0; a--) {
            if (++idx[a] < out->type.dims[a]) break;
            idx[a] = 0;
        }
    }
    return KILN_OK;
}

/*
 * norm_ops.c — shape inference and interpreter kernels of the batch
 * normalization and dropout rows of ops.def (issue 14).
 */
#include "ir/collective.h"
#include "ir/ir.h"
#include "ir/philox.h"

#include <math.h>
#include <string.h>

static kiln_status bad(ir_node *n, kiln_diag *d, const char *what, const ir_type *t) {
    char ts[IR_TYPE_STR_MAX];
    return ir_error(d, KILN_ERR_SHAPE, n->loc, "%s: %s, got %s", ir_op_name(n->op), what,
                    ir_type_str(t, ts, sizeof ts));
}

/* ---------------------------------------------------------------- dropout */

kiln_status infer_dropout(ir_node *n, kiln_diag *d) {
    const ir_type *x = &n->in[0]->type, *s = &n->in[1]->type;
    if (x->dtype != IR_F32) return bad(n, d, "expects an f32 tensor", x);
    if (s->dtype != IR_I32 || s->rank != 0) return bad(n, d, "the step must be i32[]", s);
    double rate = ir_attr_f(n, "rate");
    if (!(rate >= 0 && rate < 1))
        return ir_error(d, KILN_ERR_INVALID, n->loc, "dropout: rate %g is outside [0, 1)", rate);
    if (ir_attr_i(n, "seed") < 0 || ir_attr_i(n, "node") < 0 || ir_attr_i(n, "node") > INT32_MAX)
        return ir_error(d, KILN_ERR_INVALID, n->loc, "dropout: seed and node must be >= 0");
    n->type = *x;
    return KILN_OK;
}

/* The scale kept elements get, as Keras computes it (1 / (1 - rate), f32). */
static float ir_dropout_scale(const ir_node *n) { return (float)(1.0 / (1.0 - ir_attr_f(n, "rate"))); }

kiln_status k_dropout(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    (void)ip;
    int64_t total = ir_type_numel(&out->type, 1);
    const float *x = in[0].data;
    float *y = out->data, rate = (float)ir_attr_f(n, "rate"), scale = ir_dropout_scale(n);
    int32_t step = *(const int32_t *)in[1].data, node = (int32_t)ir_attr_i(n, "node");
    uint64_t seed = (uint64_t)ir_attr_i(n, "seed");
    /* sharded: this rank's rows are rows first.. of the global batch */
    int64_t base = ir_attr_i(n, "shard") ? kiln_collective_first_row() * ir_type_numel(&n->type, 1) : 0;
    for (int64_t i = 0; i < total; i++) {
        float u = ir_dropout_uniform(seed, step, node, (uint32_t)(base + i));
        y[i] = u >= rate ? x[i] * scale : 0.0f;
    }
    return KILN_OK;
}

/* ------------------------------------------------------- batch normalization */

kiln_status infer_batch_norm(ir_node *n, kiln_diag *d) {
    const ir_type *x = &n->in[0]->type;
    if (x->dtype != IR_F32 || x->rank < 1 || x->dims[x->rank - 1] == KILN_BATCH)
        return bad(n, d, "expects an f32 tensor with a channel axis last", x);
    int64_t c = x->dims[x->rank - 1];
    for (int k = 1; k < 5; k++) {
        const ir_type *t = &n->in[k]->type;
        if (t->dtype != IR_F32 || t->rank != 1 || t->dims[0] != c) {
            char ts[IR_TYPE_STR_MAX], xs[IR_TYPE_STR_MAX];
            return ir_error(d, KILN_ERR_SHAPE, n->loc,
                            "batch_norm: operand %d must be f32[%lld] (the channels of %s), got %s",
                            k + 1, (long long)c, ir_type_str(x, xs, sizeof xs),
                            ir_type_str(t, ts, sizeof ts));
        }
    }
    double eps = ir_attr_f(n, "epsilon");
    if (!(eps >= 0) || !isfinite(eps))
        return ir_error(d, KILN_ERR_INVALID, n->loc, "batch_norm: epsilon must be >= 0, got %g",
                        eps);
    n->type = *x;
    return KILN_OK;
}

/* Mean and biased variance of each channel over the rows (in double). */
void ir_batch_stats(const float *x, int64_t rows, int64_t c, double *mean, double *var) {
    for (int64_t j = 0; j < c; j++) mean[j] = var[j] = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < c; j++) mean[j] += x[i * c + j];
    for (int64_t j = 0; j < c; j++) mean[j] /= (double)(rows ? rows : 1);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < c; j++) {
            double e = x[i * c + j] - mean[j];
            var[j] += e * e;
        }
    for (int64_t j = 0; j < c; j++) var[j] /= (double)(rows ? rows : 1);
}

kiln_status k_batch_norm(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in) {
    int64_t c = out->type.dims[out->type.rank - 1];
    int64_t rows = ir_type_numel(&out->type, 1) / (c ? c : 1);
    const float *x = in[0].data, *g = in[1].data, *b = in[2].data;
    double *mean = ir_malloc(sizeof(double) * 2 * (size_t)c), *var = mean ? mean + c : NULL;
    if (!mean) return ir_oom(ir_interp_diag(ip));
    if (ir_attr_i(n, "training")) {
        ir_batch_stats(x, rows, c, mean, var);
    } else {
        const float *mm = in[3].data, *mv = in[4].data;
        for (int64_t j = 0; j < c; j++) {
            mean[j] = mm[j];
            var[j] = mv[j];
        }
    }
    double eps = (float)ir_attr_f(n, "epsilon");
    float *y = out->data;
    for (int64_t j = 0; j < c; j++) var[j] = 1.0 / sqrt(var[j] + eps); /* now the rstd */
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < c; j++)
            y[i * c + j] = (float)((x[i * c + j] - mean[j]) * var[j] * g[j] + b[j]);
    ir_free(mean);
    return KILN_OK;
}

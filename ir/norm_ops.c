/*
 * norm_ops.c — shape inference and interpreter kernels of the batch
 * normalization and dropout rows of ops.def (issue 14).
 */
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
    for (int64_t i = 0; i < total; i++) {
        float u = ir_dropout_uniform(seed, step, node, (uint32_t)i);
        y[i] = u >= rate ? x[i] * scale : 0.0f;
    }
    return KILN_OK;
}

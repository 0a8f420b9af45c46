/*
 * lower_loss.c — the losses and the fused softmax_cross_entropy: each gives
 * the batch mean as an f32 scalar, as the interpreter does (Keras' clipping
 * to [1e-7, 1 - 1e-7] on probabilities, rows renormalized). Row sums use
 * vectorized partial sums (cg_row_loop); the per-row losses accumulate in
 * f64. softmax_cross_entropy is log-sum-exp: lse = max + log(sum(exp(z -
 * max))), loss = (max - z[label]) + log(sum), so logits of ±1e4 stay
 * finite and max + log(sum) is never rounded.
 */
#include "codegen/lower.h"

#include <math.h>

#define KERAS_EPS 1e-7f

typedef struct loss_ctx {
    LLVMValueRef p, y;  /* typed pointers at the row (or at 0) */
    LLVMValueRef s, s2; /* scalars for the body */
} loss_ctx;


static LLVMValueRef clip(cg_ctx *c, LLVMValueRef q) {
    LLVMTypeRef ty = LLVMTypeOf(q);
    LLVMValueRef lo = cg_fc(c, ty, KERAS_EPS), hi = cg_fc(c, ty, 1.0f - KERAS_EPS);
    LLVMValueRef r = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, q, hi, ""), hi, q, "");
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOLT, q, lo, ""), lo, r, "");
}

static LLVMValueRef b_p(cg_ctx *c, void *v, LLVMValueRef i, int w) {
    return cg_loadv(c, c->t_f32, w, ((loss_ctx *)v)->p, i);
}

/* y * log(clip(p / s)) */
static LLVMValueRef b_cce(cg_ctx *c, void *v, LLVMValueRef i, int w) {
    loss_ctx *l = v;
    LLVMValueRef q = LLVMBuildFDiv(c->b, cg_loadv(c, c->t_f32, w, l->p, i), cg_splat(c, l->s, w), "");
    return LLVMBuildFMul(c->b, cg_loadv(c, c->t_f32, w, l->y, i), cg_log(c, clip(c, q)), "");
}

static LLVMValueRef b_sq(cg_ctx *c, void *v, LLVMValueRef i, int w) {
    loss_ctx *l = v;
    LLVMValueRef d = LLVMBuildFSub(c->b, cg_loadv(c, c->t_f32, w, l->p, i),
                                   cg_loadv(c, c->t_f32, w, l->y, i), "");
    return LLVMBuildFMul(c->b, d, d, "");
}

/* y log q + (1 - y) log(1 - q), q = clip(p) */
static LLVMValueRef b_bce(cg_ctx *c, void *v, LLVMValueRef i, int w) {
    loss_ctx *l = v;
    LLVMValueRef q = clip(c, cg_loadv(c, c->t_f32, w, l->p, i));
    LLVMValueRef y = cg_loadv(c, c->t_f32, w, l->y, i);
    LLVMTypeRef ty = LLVMTypeOf(q);
    LLVMValueRef one = cg_fc(c, ty, 1.0);
    LLVMValueRef a = LLVMBuildFMul(c->b, y, cg_log(c, q), "");
    LLVMValueRef b = LLVMBuildFMul(c->b, LLVMBuildFSub(c->b, one, y, ""),
                                   cg_log(c, LLVMBuildFSub(c->b, one, q, "")), "");
    return LLVMBuildFAdd(c->b, a, b, "");
}

static LLVMValueRef b_yx(cg_ctx *c, void *v, LLVMValueRef i, int w) {
    loss_ctx *l = v;
    return LLVMBuildFMul(c->b, cg_loadv(c, c->t_f32, w, l->y, i), cg_loadv(c, c->t_f32, w, l->p, i),
                         "");
}

static LLVMValueRef b_exp_shift(cg_ctx *c, void *v, LLVMValueRef i, int w) {
    loss_ctx *l = v;
    return cg_exp(c, LLVMBuildFSub(c->b, cg_loadv(c, c->t_f32, w, l->p, i), cg_splat(c, l->s, w), ""));
}

/* y * ((max - z) + log(sum)): max - z first, so that max + log(sum) is
 * never rounded (the interpreter works in f64). */
static LLVMValueRef b_ce_dense(cg_ctx *c, void *v, LLVMValueRef i, int w) {
    loss_ctx *l = v;
    LLVMValueRef d = LLVMBuildFSub(c->b, cg_splat(c, l->s, w), cg_loadv(c, c->t_f32, w, l->p, i), "");
    d = LLVMBuildFAdd(c->b, d, cg_splat(c, l->s2, w), "");
    return LLVMBuildFMul(c->b, cg_loadv(c, c->t_f32, w, l->y, i), d, "");
}

/* Class count and rows of a prediction [.., C]. */
static void rows_of(cg_ctx *c, const ir_type *t, LLVMValueRef *rows, LLVMValueRef *cls) {
    *cls = cg_dim(c, t->dims[t->rank - 1]);
    LLVMValueRef safe = LLVMBuildSelect(
        c->b, LLVMBuildICmp(c->b, LLVMIntEQ, *cls, cg_i64(c, 0), ""), cg_i64(c, 1), *cls, "");
    *rows = LLVMBuildSDiv(c->b, cg_numel(c, t), safe, "");
    *rows = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, *cls, cg_i64(c, 0), ""),
                            cg_i64(c, 0), *rows, "");
}

/* out = count ? sum / count : 0, sum in f64. */
static void set_mean(cg_ctx *c, LLVMValueRef out, LLVMValueRef sum, LLVMValueRef count) {
    LLVMValueRef cnt = LLVMBuildSIToFP(c->b, count, c->t_f64, "");
    LLVMValueRef m = LLVMBuildFDiv(c->b, sum, cnt, "");
    m = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, count, cg_i64(c, 0), ""),
                        LLVMConstReal(c->t_f64, 0.0), m, "");
    cg_store(c, LLVMBuildFPTrunc(c->b, m, c->t_f32, ""), cg_cast_ptr(c, out, c->t_f32),
             cg_i64(c, 0));
}

static LLVMValueRef to_f64(cg_ctx *c, LLVMValueRef v) {
    return LLVMBuildFPExt(c->b, v, c->t_f64, "");
}

kiln_status lower_categorical_crossentropy(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                           const LLVMValueRef *in) {
    LLVMValueRef rows, cls;
    rows_of(c, &n->in[0]->type, &rows, &cls);
    LLVMValueRef pp = cg_cast_ptr(c, in[0], c->t_f32), yp = cg_cast_ptr(c, in[1], c->t_f32);
    cg_loop l;
    LLVMValueRef r = cg_loop_begin(c, &l, cg_i64(c, 0), rows, 1);
    LLVMValueRef acc = cg_loop_phi(c, &l, LLVMConstReal(c->t_f64, 0.0));
    LLVMValueRef off = LLVMBuildNSWMul(c->b, r, cls, "");
    loss_ctx lc = {cg_gep(c, c->t_f32, pp, off), cg_gep(c, c->t_f32, yp, off), NULL, NULL};
    lc.s = cg_row_loop(c, cls, CG_RED_SUM, b_p, &lc); /* renormalize the row */
    LLVMValueRef row = cg_row_loop(c, cls, CG_RED_SUM, b_cce, &lc);
    LLVMValueRef nx = LLVMBuildFSub(c->b, acc, to_f64(c, row), "");
    cg_loop_end(c, &l, &nx);
    set_mean(c, out, l.exits[0], rows);
    return KILN_OK;
}

/* Fails (KILN_ERR_INVALID, detail = the label) unless 0 <= lab < cls. */
static void check_label(cg_ctx *c, LLVMValueRef lab32, LLVMValueRef cls) {
    LLVMValueRef lab = LLVMBuildSExt(c->b, lab32, c->t_i64, "");
    LLVMValueRef bad = LLVMBuildOr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, lab, cg_i64(c, 0), ""),
                                   LLVMBuildICmp(c->b, LLVMIntSGE, lab, cls, ""), "");
    cg_fail_if(c, bad, KILN_ERR_INVALID, lab);
}

kiln_status lower_sparse_categorical_crossentropy(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                                  const LLVMValueRef *in) {
    LLVMValueRef rows, cls;
    rows_of(c, &n->in[0]->type, &rows, &cls);
    LLVMValueRef pp = cg_cast_ptr(c, in[0], c->t_f32), lp = cg_cast_ptr(c, in[1], c->t_i32);
    cg_loop l;
    LLVMValueRef r = cg_loop_begin(c, &l, cg_i64(c, 0), rows, 1);
    LLVMValueRef acc = cg_loop_phi(c, &l, LLVMConstReal(c->t_f64, 0.0));
    LLVMValueRef off = LLVMBuildNSWMul(c->b, r, cls, "");
    loss_ctx lc = {cg_gep(c, c->t_f32, pp, off), NULL, NULL, NULL};
    LLVMValueRef s = cg_row_loop(c, cls, CG_RED_SUM, b_p, &lc);
    LLVMValueRef lab = cg_load(c, c->t_i32, lp, r);
    check_label(c, lab, cls);
    LLVMValueRef p = cg_load(c, c->t_f32, lc.p, LLVMBuildSExt(c->b, lab, c->t_i64, ""));
    LLVMValueRef q = clip(c, LLVMBuildFDiv(c->b, p, s, ""));
    LLVMValueRef nx = LLVMBuildFSub(c->b, acc, to_f64(c, cg_log(c, q)), "");
    cg_loop_end(c, &l, &nx);
    set_mean(c, out, l.exits[0], rows);
    return KILN_OK;
}

static kiln_status elementwise_mean(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                    const LLVMValueRef *in, cg_row_body body, bool negate) {
    LLVMValueRef total = cg_numel(c, &n->in[0]->type);
    loss_ctx lc = {cg_cast_ptr(c, in[0], c->t_f32), cg_cast_ptr(c, in[1], c->t_f32), NULL, NULL};
    LLVMValueRef s = to_f64(c, cg_row_loop(c, total, CG_RED_SUM, body, &lc));
    if (negate) s = LLVMBuildFNeg(c->b, s, "");
    set_mean(c, out, s, total);
    return KILN_OK;
}

kiln_status lower_mean_squared_error(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                     const LLVMValueRef *in) {
    return elementwise_mean(c, n, out, in, b_sq, false);
}

kiln_status lower_binary_crossentropy(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                      const LLVMValueRef *in) {
    return elementwise_mean(c, n, out, in, b_bce, true);
}

kiln_status lower_nll(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    LLVMValueRef rows, cls;
    rows_of(c, &n->in[0]->type, &rows, &cls);
    LLVMValueRef total = cg_numel(c, &n->in[0]->type);
    loss_ctx lc = {cg_cast_ptr(c, in[0], c->t_f32), cg_cast_ptr(c, in[1], c->t_f32), NULL, NULL};
    LLVMValueRef s = to_f64(c, cg_row_loop(c, total, CG_RED_SUM, b_yx, &lc));
    set_mean(c, out, LLVMBuildFNeg(c->b, s, ""), rows);
    return KILN_OK;
}

kiln_status lower_softmax_cross_entropy(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                        const LLVMValueRef *in) {
    bool sparse = n->in[1]->type.dtype == IR_I32;
    LLVMValueRef rows, cls;
    rows_of(c, &n->in[0]->type, &rows, &cls);
    LLVMValueRef zp = cg_cast_ptr(c, in[0], c->t_f32);
    LLVMValueRef yp = cg_cast_ptr(c, in[1], sparse ? c->t_i32 : c->t_f32);
    cg_loop l;
    LLVMValueRef r = cg_loop_begin(c, &l, cg_i64(c, 0), rows, 1);
    LLVMValueRef acc = cg_loop_phi(c, &l, LLVMConstReal(c->t_f64, 0.0));
    LLVMValueRef off = LLVMBuildNSWMul(c->b, r, cls, "");
    loss_ctx lc = {cg_gep(c, c->t_f32, zp, off), NULL, NULL, NULL};
    LLVMValueRef mx = cg_row_loop(c, cls, CG_RED_MAX, b_p, &lc);
    lc.s = mx;
    LLVMValueRef s = cg_row_loop(c, cls, CG_RED_SUM, b_exp_shift, &lc);
    LLVMValueRef ls = cg_log(c, s);
    LLVMValueRef row;
    if (sparse) {
        LLVMValueRef lab = cg_load(c, c->t_i32, yp, r);
        check_label(c, lab, cls);
        LLVMValueRef z = cg_load(c, c->t_f32, lc.p, LLVMBuildSExt(c->b, lab, c->t_i64, ""));
        row = LLVMBuildFAdd(c->b, LLVMBuildFSub(c->b, mx, z, ""), ls, "");
    } else {
        lc.y = cg_gep(c, c->t_f32, yp, off);
        lc.s2 = ls;
        row = cg_row_loop(c, cls, CG_RED_SUM, b_ce_dense, &lc);
    }
    LLVMValueRef nx = LLVMBuildFAdd(c->b, acc, to_f64(c, row), "");
    cg_loop_end(c, &l, &nx);
    set_mean(c, out, l.exits[0], rows);
    return KILN_OK;
}

/*
 * lower_ew.c — the scalar emitters of the EW rows of ops.def (lw_*): the
 * value of one output element from one element of each operand. They mirror
 * the interpreter's s_* kernels (ir/interp_ops.c) exactly where those are a
 * definition: relu(NaN) = NaN, maximum = a > b ? a : b, i32 arithmetic
 * wraps, f32 -> i32 casts truncate and saturate (NaN -> 0).
 * Operands may be scalars or vectors of the same shape.
 */
#include "codegen/lower.h"

static bool is_int(const ir_node *n, int k) {
    return n->in[k]->type.dtype == IR_I32;
}

static LLVMValueRef zext_i32(cg_ctx *c, LLVMValueRef b) {
    LLVMTypeRef t = LLVMTypeOf(b);
    LLVMTypeRef it = LLVMGetTypeKind(t) == LLVMVectorTypeKind
                         ? LLVMVectorType(c->t_i32, LLVMGetVectorSize(t))
                         : c->t_i32;
    return LLVMBuildZExt(c->b, b, it, "");
}

LLVMValueRef lw_neg(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return LLVMBuildFNeg(c->b, x[0], "");
}

LLVMValueRef lw_exp(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_exp(c, x[0]);
}
LLVMValueRef lw_log(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_log(c, x[0]);
}

LLVMValueRef lw_sqrt(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_intrinsic(c, "llvm.sqrt", LLVMTypeOf(x[0]), x, 1);
}

LLVMValueRef lw_pow(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_pow(c, x[0], ir_attr_f(n, "exponent"));
}

LLVMValueRef lw_relu(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_relu(c, x[0], 0, false);
}

LLVMValueRef lw_leaky_relu(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_relu(c, x[0], ir_attr_f(n, "alpha"), true);
}

LLVMValueRef lw_sigmoid(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_sigmoid(c, x[0]);
}

LLVMValueRef lw_tanh(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_tanh(c, x[0]);
}

/* The Keras 3 activations, as ir/interp_ops.c computes them. */
LLVMValueRef lw_erf(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return cg_erf(c, x[0]);
}

LLVMValueRef lw_elu(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef em1 = LLVMBuildFSub(c->b, cg_exp(c, x[0]), cg_fc(c, ty, 1.0), "");
    LLVMValueRef lo = LLVMBuildFMul(c->b, cg_fc(c, ty, (float)ir_attr_f(n, "alpha")), em1, "");
    LLVMValueRef pos = LLVMBuildFCmp(c->b, LLVMRealOGT, x[0], cg_fc(c, ty, 0.0), "");
    return LLVMBuildSelect(c->b, pos, x[0], lo, "");
}

/* z < 0 ? 0 : z > 6 ? 6 : z (NaN passes). */
static LLVMValueRef relu6(cg_ctx *c, LLVMValueRef z) {
    LLVMTypeRef ty = LLVMTypeOf(z);
    LLVMValueRef six = cg_fc(c, ty, 6.0);
    LLVMValueRef hi = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, z, six, ""), six, z, "");
    return cg_relu(c, hi, 0, false);
}

LLVMValueRef lw_relu6(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return relu6(c, x[0]);
}

LLVMValueRef lw_hard_sigmoid(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef r = relu6(c, LLVMBuildFAdd(c->b, x[0], cg_fc(c, ty, 3.0), ""));
    return LLVMBuildFDiv(c->b, r, cg_fc(c, ty, 6.0), "");
}

LLVMValueRef lw_gelu(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef e = cg_erf(c, LLVMBuildFMul(c->b, x[0], cg_fc(c, ty, 0.70710678f), ""));
    LLVMValueRef h = LLVMBuildFMul(c->b, cg_fc(c, ty, 0.5), x[0], "");
    return LLVMBuildFMul(c->b, h, LLVMBuildFAdd(c->b, cg_fc(c, ty, 1.0), e, ""), "");
}

LLVMValueRef lw_softplus(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef ax = cg_intrinsic(c, "llvm.fabs", ty, x, 1);
    LLVMValueRef l = cg_log1p_pos(c, cg_exp(c, LLVMBuildFNeg(c->b, ax, "")));
    return LLVMBuildFAdd(c->b, cg_relu(c, x[0], 0, false), l, "");
}

LLVMValueRef lw_silu(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef e = cg_exp(c, LLVMBuildFNeg(c->b, x[0], ""));
    return LLVMBuildFDiv(c->b, x[0], LLVMBuildFAdd(c->b, cg_fc(c, ty, 1.0), e, ""), "");
}

LLVMValueRef lw_cast(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    bool from_i = is_int(n, 0), to_i = n->type.dtype == IR_I32;
    if (from_i == to_i) return x[0];
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    if (from_i) {
        LLVMTypeRef fty = LLVMGetTypeKind(ty) == LLVMVectorTypeKind
                              ? LLVMVectorType(c->t_f32, LLVMGetVectorSize(ty))
                              : c->t_f32;
        return LLVMBuildSIToFP(c->b, x[0], fty, "");
    }
    /* Truncation toward zero; NaN -> 0 and out-of-range values saturate. The
     * fptosi of an out-of-range value is poison, but never selected. */
    LLVMTypeRef ity = cg_int_like(c, ty);
    LLVMValueRef v = x[0];
    LLVMValueRef r = LLVMBuildFPToSI(c->b, v, ity, "");
    LLVMValueRef hi = LLVMBuildFCmp(c->b, LLVMRealOGE, v, cg_fc(c, ty, 2147483647.0f), "");
    LLVMValueRef lo = LLVMBuildFCmp(c->b, LLVMRealOLE, v, cg_fc(c, ty, -2147483648.0f), "");
    r = LLVMBuildSelect(c->b, hi, cg_ic(c, ity, INT32_MAX), r, "");
    r = LLVMBuildSelect(c->b, lo, cg_ic(c, ity, INT32_MIN), r, "");
    return LLVMBuildSelect(c->b, cg_isnan(c, v), cg_ic(c, ity, 0), r, "");
}

LLVMValueRef lw_add(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return is_int(n, 0) ? LLVMBuildAdd(c->b, x[0], x[1], "") : LLVMBuildFAdd(c->b, x[0], x[1], "");
}

LLVMValueRef lw_sub(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return is_int(n, 0) ? LLVMBuildSub(c->b, x[0], x[1], "") : LLVMBuildFSub(c->b, x[0], x[1], "");
}

LLVMValueRef lw_mul(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return is_int(n, 0) ? LLVMBuildMul(c->b, x[0], x[1], "") : LLVMBuildFMul(c->b, x[0], x[1], "");
}

LLVMValueRef lw_div(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return LLVMBuildFDiv(c->b, x[0], x[1], "");
}

LLVMValueRef lw_maximum(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMValueRef gt = is_int(n, 0) ? LLVMBuildICmp(c->b, LLVMIntSGT, x[0], x[1], "")
                                   : LLVMBuildFCmp(c->b, LLVMRealOGT, x[0], x[1], "");
    return LLVMBuildSelect(c->b, gt, x[0], x[1], "");
}

LLVMValueRef lw_minimum(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMValueRef lt = is_int(n, 0) ? LLVMBuildICmp(c->b, LLVMIntSLT, x[0], x[1], "")
                                   : LLVMBuildFCmp(c->b, LLVMRealOLT, x[0], x[1], "");
    return LLVMBuildSelect(c->b, lt, x[0], x[1], "");
}

LLVMValueRef lw_equal(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMValueRef eq = is_int(n, 0) ? LLVMBuildICmp(c->b, LLVMIntEQ, x[0], x[1], "")
                                   : LLVMBuildFCmp(c->b, LLVMRealOEQ, x[0], x[1], "");
    return zext_i32(c, eq);
}

LLVMValueRef lw_greater(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMValueRef gt = is_int(n, 0) ? LLVMBuildICmp(c->b, LLVMIntSGT, x[0], x[1], "")
                                   : LLVMBuildFCmp(c->b, LLVMRealOGT, x[0], x[1], "");
    return zext_i32(c, gt);
}

LLVMValueRef lw_select(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    LLVMValueRef nz = LLVMBuildICmp(c->b, LLVMIntNE, x[0], cg_ic(c, LLVMTypeOf(x[0]), 0), "");
    return LLVMBuildSelect(c->b, nz, x[1], x[2], "");
}

LLVMValueRef lw_copy(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    return x[0];
}

/* A scalar: the loops of ew.c are scalar code that LLVM vectorizes. */
LLVMValueRef lw_constant(cg_ctx *c, const ir_node *n, LLVMValueRef *x) {
    (void)x;
    double v = ir_attr_f(n, "value");
    if (n->type.dtype == IR_I32) return cg_i32(c, (int32_t)v);
    return LLVMConstReal(c->t_f32, (float)v);
}

/*
 * math.c — exp, log, tanh, sigmoid and pow emitted as straight-line IR, so
 * loops that use them vectorize (a call to libm's expf would keep a loop
 * scalar). The polynomials are Cephes' single-precision ones (S. Moshier),
 * evaluated with llvm.fmuladd; special values (NaN, ±inf, 0, negatives,
 * subnormals) are handled with selects, as the C library does.
 *
 * Accuracy against glibc (measured over every float in the test suite's
 * sweeps, see test_codegen.c "math_ulp"): exp, log <= 2 ulp; tanh,
 * sigmoid <= 3 ulp; pow with an integer exponent |e| <= 16 by repeated
 * multiplication (<= |e| ulp, exact for e = 2), e = ±0.5 through sqrt
 * (correctly rounded), others through exp(e * log|x|) — relative error
 * about (2 + |e·ln x|) · 2^-24.
 */
#include "codegen/lower.h"

#include <math.h>

static LLVMValueRef fsel(cg_ctx *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(c->b, cond, a, b, "");
}

static LLVMValueRef fcmp(cg_ctx *c, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildFCmp(c->b, p, a, b, "");
}

static LLVMValueRef horner(cg_ctx *c, LLVMValueRef x, const double *coef, int n) {
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef p = cg_fc(c, ty, coef[0]);
    for (int i = 1; i < n; i++) p = cg_fma(c, p, x, cg_fc(c, ty, coef[i]));
    return p;
}

LLVMValueRef cg_isnan(cg_ctx *c, LLVMValueRef x) {
    return fcmp(c, LLVMRealUNO, x, x);
}

/* 2^n for integer n in [-126, 127], as a float built from its bits. */
static LLVMValueRef pow2i(cg_ctx *c, LLVMValueRef n, LLVMTypeRef fty) {
    LLVMTypeRef ity = LLVMTypeOf(n);
    LLVMValueRef e = LLVMBuildAdd(c->b, n, cg_ic(c, ity, 127), "");
    e = LLVMBuildShl(c->b, e, cg_ic(c, ity, 23), "");
    return LLVMBuildBitCast(c->b, e, fty, "");
}

LLVMValueRef cg_exp(cg_ctx *c, LLVMValueRef x) {
    LLVMTypeRef ty = LLVMTypeOf(x), ity = cg_int_like(c, ty);
    /* Beyond these bounds the result is inf or rounds to 0; the clamp keeps
     * n within what two scale factors can express. NaN passes the clamp. */
    LLVMValueRef xc = fsel(c, fcmp(c, LLVMRealOGT, x, cg_fc(c, ty, 88.8f)), cg_fc(c, ty, 88.8f), x);
    xc = fsel(c, fcmp(c, LLVMRealOLT, xc, cg_fc(c, ty, -104.0)), cg_fc(c, ty, -104.0), xc);
    /* n = round(x / ln 2); r = x - n ln 2 in two steps (Cody-Waite). */
    LLVMValueRef t = cg_fma(c, xc, cg_fc(c, ty, 1.44269504088896341), cg_fc(c, ty, 0.5));
    LLVMValueRef nf = cg_intrinsic(c, "llvm.floor", ty, &t, 1);
    LLVMValueRef r = cg_fma(c, nf, cg_fc(c, ty, -0.693359375), xc);
    r = cg_fma(c, nf, cg_fc(c, ty, 2.12194440e-4), r);
    static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                               4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
    LLVMValueRef p = horner(c, r, P, 6);
    LLVMValueRef r2 = LLVMBuildFMul(c->b, r, r, "");
    LLVMValueRef y = cg_fma(c, p, r2, r);
    y = LLVMBuildFAdd(c->b, y, cg_fc(c, ty, 1.0), "");
    /* y * 2^n with n in [-150, 129]: two factors, so neither overflows and a
     * subnormal result is rounded once. */
    LLVMValueRef n = LLVMBuildFPToSI(c->b, nf, ity, "");
    LLVMValueRef n1 = LLVMBuildAShr(c->b, n, cg_ic(c, ity, 1), "");
    LLVMValueRef n2 = LLVMBuildSub(c->b, n, n1, "");
    y = LLVMBuildFMul(c->b, y, pow2i(c, n1, ty), "");
    y = LLVMBuildFMul(c->b, y, pow2i(c, n2, ty), "");
    return fsel(c, cg_isnan(c, x), x, y);
}

LLVMValueRef cg_log(cg_ctx *c, LLVMValueRef x) {
    LLVMTypeRef ty = LLVMTypeOf(x), ity = cg_int_like(c, ty);
    /* Subnormals: scale by 2^23 first. */
    LLVMValueRef sub = fcmp(c, LLVMRealOLT, x, cg_fc(c, ty, 1.17549435e-38));
    LLVMValueRef xs = fsel(c, sub, LLVMBuildFMul(c->b, x, cg_fc(c, ty, 8388608.0), ""), x);
    LLVMValueRef eadj = fsel(c, sub, cg_fc(c, ty, -23.0), cg_fc(c, ty, 0.0));
    /* x = m * 2^e with m in [0.5, 1). */
    LLVMValueRef bits = LLVMBuildBitCast(c->b, xs, ity, "");
    LLVMValueRef ei = LLVMBuildLShr(c->b, bits, cg_ic(c, ity, 23), "");
    ei = LLVMBuildAnd(c->b, ei, cg_ic(c, ity, 0xff), "");
    ei = LLVMBuildSub(c->b, ei, cg_ic(c, ity, 126), "");
    LLVMValueRef mb = LLVMBuildAnd(c->b, bits, cg_ic(c, ity, 0x007fffff), "");
    mb = LLVMBuildOr(c->b, mb, cg_ic(c, ity, 0x3f000000), "");
    LLVMValueRef m = LLVMBuildBitCast(c->b, mb, ty, "");
    LLVMValueRef e = LLVMBuildFAdd(c->b, LLVMBuildSIToFP(c->b, ei, ty, ""), eadj, "");
    /* m < sqrt(1/2): use 2m - 1 and e - 1, so the argument is in
     * [sqrt(1/2) - 1, sqrt(2) - 1]. */
    LLVMValueRef lo = fcmp(c, LLVMRealOLT, m, cg_fc(c, ty, 0.707106781186547524));
    e = fsel(c, lo, LLVMBuildFSub(c->b, e, cg_fc(c, ty, 1.0), ""), e);
    LLVMValueRef m1 = LLVMBuildFSub(c->b, m, cg_fc(c, ty, 1.0), "");
    LLVMValueRef z0 = fsel(c, lo, LLVMBuildFAdd(c->b, m1, m, ""), m1); /* 2m-1 or m-1 */
    static const double P[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                               -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                               2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
    LLVMValueRef z2 = LLVMBuildFMul(c->b, z0, z0, "");
    LLVMValueRef y = horner(c, z0, P, 9);
    y = LLVMBuildFMul(c->b, LLVMBuildFMul(c->b, y, z0, ""), z2, "");
    y = cg_fma(c, e, cg_fc(c, ty, -2.12194440e-4), y);
    y = cg_fma(c, z2, cg_fc(c, ty, -0.5), y);
    LLVMValueRef r = LLVMBuildFAdd(c->b, z0, y, "");
    r = cg_fma(c, e, cg_fc(c, ty, 0.693359375), r);
    /* Special values. */
    r = fsel(c, fcmp(c, LLVMRealOEQ, x, cg_fc(c, ty, INFINITY)), x, r);
    r = fsel(c, fcmp(c, LLVMRealOEQ, x, cg_fc(c, ty, 0.0)), cg_fc(c, ty, -INFINITY), r);
    r = fsel(c, fcmp(c, LLVMRealOLT, x, cg_fc(c, ty, 0.0)), cg_fc(c, ty, NAN), r);
    return fsel(c, cg_isnan(c, x), x, r);
}

LLVMValueRef cg_tanh(cg_ctx *c, LLVMValueRef x) {
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef ax = cg_intrinsic(c, "llvm.fabs", ty, &x, 1);
    /* |x| < 0.625: odd polynomial. */
    static const double P[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2,
                               1.33314422036E-1, -3.33332819422E-1};
    LLVMValueRef z = LLVMBuildFMul(c->b, x, x, "");
    LLVMValueRef p = horner(c, z, P, 5);
    LLVMValueRef small = cg_fma(c, LLVMBuildFMul(c->b, p, z, ""), x, x);
    /* Otherwise 1 - 2 / (exp(2|x|) + 1), with x's sign; exp overflows to
     * inf for large |x| and the result is then exactly ±1. */
    LLVMValueRef e = cg_exp(c, LLVMBuildFAdd(c->b, ax, ax, ""));
    LLVMValueRef q =
        LLVMBuildFDiv(c->b, cg_fc(c, ty, 2.0), LLVMBuildFAdd(c->b, e, cg_fc(c, ty, 1.0), ""), "");
    LLVMValueRef big = LLVMBuildFSub(c->b, cg_fc(c, ty, 1.0), q, "");
    LLVMValueRef args[2] = {big, x};
    big = cg_intrinsic(c, "llvm.copysign", ty, args, 2);
    return fsel(c, fcmp(c, LLVMRealOLT, ax, cg_fc(c, ty, 0.625)), small, big);
}

LLVMValueRef cg_sigmoid(cg_ctx *c, LLVMValueRef x) {
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef e = cg_exp(c, LLVMBuildFNeg(c->b, x, ""));
    return LLVMBuildFDiv(c->b, cg_fc(c, ty, 1.0), LLVMBuildFAdd(c->b, cg_fc(c, ty, 1.0), e, ""),
                         "");
}

/* x^k for integer k >= 1 by binary powering. */
static LLVMValueRef ipow(cg_ctx *c, LLVMValueRef x, long k) {
    LLVMValueRef r = NULL, b = x;
    while (k) {
        if (k & 1) r = r ? LLVMBuildFMul(c->b, r, b, "") : b;
        k >>= 1;
        if (k) b = LLVMBuildFMul(c->b, b, b, "");
    }
    return r;
}

LLVMValueRef cg_pow(cg_ctx *c, LLVMValueRef x, double e) {
    LLVMTypeRef ty = LLVMTypeOf(x);
    float ef = (float)e;                      /* the interpreter calls powf(x, (float)e) */
    if (ef == 0.0f) return cg_fc(c, ty, 1.0); /* pow(x, 0) = 1, even for NaN */
    if (ef == 1.0f) return x;
    if (ef == floorf(ef) && fabsf(ef) <= 16.0f) {
        LLVMValueRef r = ipow(c, x, (long)fabsf(ef));
        return ef > 0 ? r : LLVMBuildFDiv(c->b, cg_fc(c, ty, 1.0), r, "");
    }
    if (ef == 0.5f || ef == -0.5f) {
        /* powf(-0, .5) = +0 and powf(-inf, .5) = +inf, unlike sqrt. */
        LLVMValueRef s = cg_intrinsic(c, "llvm.sqrt", ty, &x, 1);
        s = fsel(c, fcmp(c, LLVMRealOEQ, x, cg_fc(c, ty, 0.0)), cg_fc(c, ty, 0.0), s);
        s = fsel(c, fcmp(c, LLVMRealOEQ, x, cg_fc(c, ty, -INFINITY)), cg_fc(c, ty, INFINITY), s);
        return ef > 0 ? s : LLVMBuildFDiv(c->b, cg_fc(c, ty, 1.0), s, "");
    }
    /* |x|^e = exp(e log|x|); a negative x gives NaN unless e is an integer
     * (then the sign is x's for odd e). */
    LLVMValueRef ax = cg_intrinsic(c, "llvm.fabs", ty, &x, 1);
    LLVMValueRef r = cg_exp(c, LLVMBuildFMul(c->b, cg_fc(c, ty, ef), cg_log(c, ax), ""));
    LLVMValueRef neg = fcmp(c, LLVMRealOLT, x, cg_fc(c, ty, 0.0));
    if (ef != floorf(ef)) {
        r = fsel(c, neg, cg_fc(c, ty, NAN), r);
    } else if (fabsf(ef) < 16777216.0f && fmodf(ef, 2.0f) != 0.0f) {
        r = fsel(c, neg, LLVMBuildFNeg(c->b, r, ""), r);
    }
    return r;
}

LLVMValueRef cg_relu(cg_ctx *c, LLVMValueRef x, double alpha, bool leaky) {
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef neg = fcmp(c, LLVMRealOLT, x, cg_fc(c, ty, 0.0));
    LLVMValueRef lo =
        leaky ? LLVMBuildFMul(c->b, cg_fc(c, ty, (float)alpha), x, "") : cg_fc(c, ty, 0.0);
    return fsel(c, neg, lo, x);
}

/* erf: |x| < 1 as Cephes' erff (x times a polynomial in x^2, ~1e-7
 * relative), beyond as Abramowitz and Stegun 7.1.26 (1 - t P(t) exp(-x^2),
 * t = 1 / (1 + 0.3275911 |x|); absolute error 1.5e-7 where erf > 0.84),
 * with x's sign. NaN stays NaN, ±inf gives ±1. */
LLVMValueRef cg_erf(cg_ctx *c, LLVMValueRef x) {
    LLVMTypeRef ty = LLVMTypeOf(x);
    static const double T[] = {7.853861353153693E-5,  -8.010193625184903E-4, 5.188327685732524E-3,
                               -2.685381193529856E-2, 1.128358514861418E-1,  -3.761262582423300E-1,
                               1.128379165726710E0};
    static const double A[] = {1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592,
                               0.0};
    LLVMValueRef z = LLVMBuildFMul(c->b, x, x, "");
    LLVMValueRef small = LLVMBuildFMul(c->b, x, horner(c, z, T, 7), "");
    LLVMValueRef ax = cg_intrinsic(c, "llvm.fabs", ty, &x, 1);
    LLVMValueRef t = LLVMBuildFDiv(
        c->b, cg_fc(c, ty, 1.0), cg_fma(c, ax, cg_fc(c, ty, 0.3275911), cg_fc(c, ty, 1.0)), "");
    LLVMValueRef p = horner(c, t, A, 6); /* t (a1 + a2 t + ... + a5 t^4) */
    LLVMValueRef e = cg_exp(c, LLVMBuildFNeg(c->b, z, ""));
    LLVMValueRef big = LLVMBuildFSub(c->b, cg_fc(c, ty, 1.0), LLVMBuildFMul(c->b, p, e, ""), "");
    LLVMValueRef args[2] = {big, x};
    big = cg_intrinsic(c, "llvm.copysign", ty, args, 2);
    return fsel(c, fcmp(c, LLVMRealOLT, ax, cg_fc(c, ty, 1.0)), small, big);
}

/* log(1 + e) for e >= 0 without losing a small e: log(u) e / (u - 1) with
 * u = 1 + e (Goldberg), e itself when u rounds to 1. */
LLVMValueRef cg_log1p_pos(cg_ctx *c, LLVMValueRef e) {
    LLVMTypeRef ty = LLVMTypeOf(e);
    LLVMValueRef one = cg_fc(c, ty, 1.0);
    LLVMValueRef u = LLVMBuildFAdd(c->b, one, e, "");
    LLVMValueRef um1 = LLVMBuildFSub(c->b, u, one, "");
    LLVMValueRef r = LLVMBuildFDiv(c->b, LLVMBuildFMul(c->b, cg_log(c, u), e, ""), um1, "");
    return fsel(c, fcmp(c, LLVMRealOEQ, u, one), e, r);
}

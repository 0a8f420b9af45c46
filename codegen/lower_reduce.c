/*
 * lower_reduce.c — reductions, argmax, softmax / log_softmax and numel.
 *
 * reduce_*: the input's axes are grouped into runs of reduced / kept axes
 * (merging neighbours of the same kind; axes of size 1 dropped). The input
 * is walked in memory order; when the innermost run is reduced, each
 * contiguous run is folded with explicit <8 x float> partial sums
 * (cg_row_loop) and added into its output element; when it is kept, the
 * run is added elementwise into a contiguous output row (a loop LLVM
 * vectorizes as is). f32 sums accumulate in f32; i32 sums in i64.
 */
#include "codegen/lower.h"

#include <math.h>
#include <string.h>

typedef struct row_ctx {
    LLVMValueRef p[3]; /* typed pointers, already offset to the row */
    LLVMValueRef s[2]; /* scalars for the body */
    const ir_node *n;
} row_ctx;

static LLVMValueRef body_load(cg_ctx *c, void *vctx, LLVMValueRef idx, int w) {
    row_ctx *r = vctx;
    return cg_loadv(c, c->t_f32, w, r->p[0], idx);
}


/* ------------------------------------------------------------ reductions */

kiln_status lower_reduce(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    const ir_type *x = &n->in[0]->type;
    bool ints = x->dtype == IR_I32;
    cg_red kind = n->op == IR_OP_reduce_max ? CG_RED_MAX : CG_RED_SUM;
    bool red[KILN_MAX_RANK] = {0};
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    if (na == 0)
        for (int a = 0; a < x->rank; a++) red[a] = true;
    for (int i = 0; i < na; i++) red[axes[i]] = true;
    /* Runs of reduced / kept axes. */
    int ng = 0;
    bool gred[KILN_MAX_RANK];
    LLVMValueRef gsize[KILN_MAX_RANK];
    for (int a = 0; a < x->rank; a++) {
        if (x->dims[a] == 1) continue;
        if (ng && gred[ng - 1] == red[a]) {
            gsize[ng - 1] = LLVMBuildNSWMul(c->b, gsize[ng - 1], cg_dim(c, x->dims[a]), "");
            continue;
        }
        gred[ng] = red[a];
        gsize[ng++] = cg_dim(c, x->dims[a]);
    }
    LLVMTypeRef et = ints ? c->t_i32 : c->t_f32;
    LLVMValueRef xp = cg_cast_ptr(c, in[0], et), op = cg_cast_ptr(c, out, et);
    LLVMValueRef n_out = cg_numel(c, &n->type);
    /* Initialize the output. */
    {
        LLVMValueRef init = ints ? cg_i32(c, kind == CG_RED_MAX ? INT32_MIN : 0)
                                 : cg_fc(c, c->t_f32, kind == CG_RED_MAX ? -INFINITY : 0.0);
        cg_loop l;
        LLVMValueRef i = cg_loop_begin(c, &l, cg_i64(c, 0), n_out, 1);
        cg_store(c, init, op, i);
        cg_loop_end(c, &l, NULL);
    }
    /* Output strides of the kept runs. */
    LLVMValueRef ostride[KILN_MAX_RANK];
    LLVMValueRef s = cg_i64(c, 1);
    for (int g = ng - 1; g >= 0; g--) {
        ostride[g] = gred[g] ? cg_i64(c, 0) : s;
        if (!gred[g]) s = LLVMBuildNSWMul(c->b, s, gsize[g], "");
    }
    /* Walk the outer runs in memory order. */
    int outer = ng > 0 ? ng - 1 : 0;
    cg_loop loops[KILN_MAX_RANK];
    LLVMValueRef ioff = cg_i64(c, 0), ooff = cg_i64(c, 0);
    for (int g = 0; g < outer; g++) {
        LLVMValueRef idx = cg_loop_begin(c, &loops[g], cg_i64(c, 0), gsize[g], 1);
        ioff = LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, ioff, gsize[g], ""), idx, "");
        if (!gred[g])
            ooff = LLVMBuildNSWAdd(c->b, ooff, LLVMBuildNSWMul(c->b, idx, ostride[g], ""), "");
    }
    LLVMValueRef len = ng ? gsize[ng - 1] : cg_i64(c, 1);
    ioff = LLVMBuildNSWMul(c->b, ioff, len, ""); /* start of the innermost run */
    bool inner_red = ng == 0 || gred[ng - 1];
    if (inner_red) {
        LLVMValueRef part;
        if (ints) {
            cg_loop l;
            LLVMValueRef j = cg_loop_begin(c, &l, cg_i64(c, 0), len, 1);
            LLVMValueRef acc =
                cg_loop_phi(c, &l, kind == CG_RED_MAX ? cg_i32(c, INT32_MIN) : cg_i64(c, 0));
            LLVMValueRef v = cg_load(c, c->t_i32, xp, LLVMBuildNSWAdd(c->b, ioff, j, ""));
            LLVMValueRef nx;
            if (kind == CG_RED_MAX)
                nx = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, v, acc, ""), v, acc, "");
            else
                nx = LLVMBuildAdd(c->b, acc, LLVMBuildSExt(c->b, v, c->t_i64, ""), "");
            cg_loop_end(c, &l, &nx);
            part = l.exits[0];
        } else {
            row_ctx rc = {{cg_gep(c, c->t_f32, xp, ioff)}, {0}, n};
            part = cg_row_loop(c, len, kind, body_load, &rc);
        }
        LLVMValueRef o = cg_load(c, et, op, ooff), r;
        if (!ints) {
            r = cg_red_combine(c, kind, o, part);
        } else if (kind == CG_RED_MAX) {
            r = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, part, o, ""), part, o, "");
        } else {
            r = LLVMBuildAdd(c->b, o, LLVMBuildTrunc(c->b, part, c->t_i32, ""), "");
        }
        cg_store(c, r, op, ooff);
    } else {
        cg_loop l;
        LLVMValueRef j = cg_loop_begin(c, &l, cg_i64(c, 0), len, 1);
        LLVMValueRef oi = LLVMBuildNSWAdd(c->b, ooff, j, "");
        LLVMValueRef v = cg_load(c, et, xp, LLVMBuildNSWAdd(c->b, ioff, j, ""));
        LLVMValueRef o = cg_load(c, et, op, oi), r;
        if (!ints)
            r = cg_red_combine(c, kind, o, v);
        else if (kind == CG_RED_MAX)
            r = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, v, o, ""), v, o, "");
        else
            r = LLVMBuildAdd(c->b, o, v, "");
        cg_store(c, r, op, oi);
        cg_loop_end(c, &l, NULL);
    }
    for (int g = outer - 1; g >= 0; g--) cg_loop_end(c, &loops[g], NULL);
    if (n->op == IR_OP_reduce_mean) {
        /* count = elements in / elements out (0 when the output is empty). */
        LLVMValueRef n_in = cg_numel(c, x);
        LLVMValueRef safe = LLVMBuildSelect(
            c->b, LLVMBuildICmp(c->b, LLVMIntEQ, n_out, cg_i64(c, 0), ""), cg_i64(c, 1), n_out, "");
        LLVMValueRef cnt = LLVMBuildSIToFP(c->b, LLVMBuildSDiv(c->b, n_in, safe, ""), c->t_f32, "");
        cg_loop l;
        LLVMValueRef i = cg_loop_begin(c, &l, cg_i64(c, 0), n_out, 1);
        cg_store(c, LLVMBuildFDiv(c->b, cg_load(c, c->t_f32, op, i), cnt, ""), op, i);
        cg_loop_end(c, &l, NULL);
    }
    return KILN_OK;
}

/* Views x as [outer, len, inner] around `axis`. */
static void split_axis(cg_ctx *c, const ir_type *t, int axis, LLVMValueRef *outer,
                       LLVMValueRef *len, LLVMValueRef *inner) {
    *outer = cg_i64(c, 1);
    *inner = cg_i64(c, 1);
    for (int a = 0; a < axis; a++)
        *outer = LLVMBuildNSWMul(c->b, *outer, cg_dim(c, t->dims[a]), "");
    *len = cg_dim(c, t->dims[axis]);
    for (int a = axis + 1; a < t->rank; a++)
        *inner = LLVMBuildNSWMul(c->b, *inner, cg_dim(c, t->dims[a]), "");
}

kiln_status lower_argmax(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    const ir_type *x = &n->in[0]->type;
    bool ints = x->dtype == IR_I32;
    LLVMTypeRef et = ints ? c->t_i32 : c->t_f32;
    LLVMValueRef outer, len, inner;
    split_axis(c, x, (int)ir_attr_i(n, "axis"), &outer, &len, &inner);
    LLVMValueRef xp = cg_cast_ptr(c, in[0], et), op = cg_cast_ptr(c, out, c->t_i32);
    cg_loop la, lc, lj;
    LLVMValueRef a = cg_loop_begin(c, &la, cg_i64(c, 0), outer, 1);
    LLVMValueRef ci = cg_loop_begin(c, &lc, cg_i64(c, 0), inner, 1);
    LLVMValueRef row = LLVMBuildNSWAdd(
        c->b, LLVMBuildNSWMul(c->b, LLVMBuildNSWMul(c->b, a, len, ""), inner, ""), ci, "");
    /* best = 0; for j in 1..len: if x[j] > x[best] then best = j (ties keep
     * the first; a NaN is never greater, as in the interpreter). */
    LLVMValueRef first = cg_load(c, et, xp, row);
    LLVMValueRef j = cg_loop_begin(c, &lj, cg_i64(c, 1), len, 1);
    LLVMValueRef best = cg_loop_phi(c, &lj, cg_i64(c, 0));
    LLVMValueRef bestv = cg_loop_phi(c, &lj, first);
    LLVMValueRef v =
        cg_load(c, et, xp, LLVMBuildNSWAdd(c->b, row, LLVMBuildNSWMul(c->b, j, inner, ""), ""));
    LLVMValueRef gt = ints ? LLVMBuildICmp(c->b, LLVMIntSGT, v, bestv, "")
                           : LLVMBuildFCmp(c->b, LLVMRealOGT, v, bestv, "");
    LLVMValueRef nx[2] = {LLVMBuildSelect(c->b, gt, j, best, ""),
                          LLVMBuildSelect(c->b, gt, v, bestv, "")};
    /* Scalar loops as emitted: argmax is the metrics' (accuracy), a few
     * thousand compares per step, and O3 unrolled and vectorized each into
     * ~570 instructions (a fifth of the seed step's native code, for no
     * measurable step time). */
    lj.hints = lc.hints = la.hints = CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL;
    cg_loop_end(c, &lj, nx);
    LLVMValueRef oi = LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, a, inner, ""), ci, "");
    cg_store(c, LLVMBuildTrunc(c->b, lj.exits[0], c->t_i32, ""), op, oi);
    cg_loop_end(c, &lc, NULL);
    cg_loop_end(c, &la, NULL);
    return KILN_OK;
}

/* ---------------------------------------------------------------- softmax */

static LLVMValueRef body_exp_store(cg_ctx *c, void *vctx, LLVMValueRef idx, int w) {
    /* y = exp(x - max), kept for the second pass; returns it for the sum. */
    row_ctx *r = vctx;
    LLVMValueRef v = cg_loadv(c, c->t_f32, w, r->p[0], idx);
    LLVMValueRef e = cg_exp(c, LLVMBuildFSub(c->b, v, cg_splat(c, r->s[0], w), ""));
    cg_storev(c, e, w, r->p[1], idx);
    return e;
}

static LLVMValueRef body_scale(cg_ctx *c, void *vctx, LLVMValueRef idx, int w) {
    row_ctx *r = vctx;
    LLVMValueRef v = cg_loadv(c, c->t_f32, w, r->p[1], idx);
    cg_storev(c, LLVMBuildFDiv(c->b, v, cg_splat(c, r->s[0], w), ""), w, r->p[1], idx);
    return NULL;
}

static LLVMValueRef body_sub(cg_ctx *c, void *vctx, LLVMValueRef idx, int w) {
    /* log_softmax: y = (x - max) - log(sum); x - max first, as the
     * interpreter does, so that max + log(sum) is never rounded. */
    row_ctx *r = vctx;
    LLVMValueRef v = cg_loadv(c, c->t_f32, w, r->p[0], idx);
    v = LLVMBuildFSub(c->b, v, cg_splat(c, r->s[0], w), "");
    cg_storev(c, LLVMBuildFSub(c->b, v, cg_splat(c, r->s[1], w), ""), w, r->p[1], idx);
    return NULL;
}

static LLVMValueRef body_exp_shift(cg_ctx *c, void *vctx, LLVMValueRef idx, int w) {
    row_ctx *r = vctx;
    LLVMValueRef v = cg_loadv(c, c->t_f32, w, r->p[0], idx);
    return cg_exp(c, LLVMBuildFSub(c->b, v, cg_splat(c, r->s[0], w), ""));
}

kiln_status lower_softmax(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    const ir_type *x = &n->in[0]->type;
    bool logp = n->op == IR_OP_log_softmax;
    int axis = (int)ir_attr_i(n, "axis");
    LLVMValueRef outer, len, inner;
    split_axis(c, x, axis, &outer, &len, &inner);
    LLVMValueRef xp = cg_cast_ptr(c, in[0], c->t_f32), yp = cg_cast_ptr(c, out, c->t_f32);
    bool rows = true;
    for (int a = axis + 1; a < x->rank; a++)
        if (x->dims[a] != 1) rows = false;
    if (rows) {
        /* Contiguous rows: vectorized max, exp-sum, and scale passes. Each
         * pass reads an element before writing it, so y may be x. */
        cg_loop l;
        LLVMValueRef a = cg_loop_begin(c, &l, cg_i64(c, 0), outer, 1);
        LLVMValueRef off = LLVMBuildNSWMul(c->b, a, len, "");
        row_ctx rc = {{cg_gep(c, c->t_f32, xp, off), cg_gep(c, c->t_f32, yp, off)}, {0}, n};
        LLVMValueRef mx = cg_row_loop(c, len, CG_RED_MAX, body_load, &rc);
        rc.s[0] = mx;
        if (logp) {
            LLVMValueRef sum = cg_row_loop(c, len, CG_RED_SUM, body_exp_shift, &rc);
            rc.s[1] = cg_log(c, sum);
            cg_row_loop(c, len, CG_RED_NONE, body_sub, &rc);
        } else {
            LLVMValueRef sum = cg_row_loop(c, len, CG_RED_SUM, body_exp_store, &rc);
            rc.s[0] = sum;
            cg_row_loop(c, len, CG_RED_NONE, body_scale, &rc);
        }
        cg_loop_end(c, &l, NULL);
        return KILN_OK;
    }
    /* Strided: scalar passes over j for each (outer, inner) position. */
    cg_loop la, lc;
    LLVMValueRef a = cg_loop_begin(c, &la, cg_i64(c, 0), outer, 1);
    LLVMValueRef ci = cg_loop_begin(c, &lc, cg_i64(c, 0), inner, 1);
    LLVMValueRef base = LLVMBuildNSWAdd(
        c->b, LLVMBuildNSWMul(c->b, LLVMBuildNSWMul(c->b, a, len, ""), inner, ""), ci, "");
#define AT(j) LLVMBuildNSWAdd(c->b, base, LLVMBuildNSWMul(c->b, (j), inner, ""), "")
    cg_loop l1, l2, l3;
    LLVMValueRef j = cg_loop_begin(c, &l1, cg_i64(c, 0), len, 1);
    LLVMValueRef acc = cg_loop_phi(c, &l1, cg_fc(c, c->t_f32, -INFINITY));
    LLVMValueRef nx = cg_red_combine(c, CG_RED_MAX, acc, cg_load(c, c->t_f32, xp, AT(j)));
    cg_loop_end(c, &l1, &nx);
    LLVMValueRef mx = l1.exits[0];
    j = cg_loop_begin(c, &l2, cg_i64(c, 0), len, 1);
    acc = cg_loop_phi(c, &l2, cg_fc(c, c->t_f32, 0.0));
    LLVMValueRef e = cg_exp(c, LLVMBuildFSub(c->b, cg_load(c, c->t_f32, xp, AT(j)), mx, ""));
    if (!logp) cg_store(c, e, yp, AT(j));
    nx = LLVMBuildFAdd(c->b, acc, e, "");
    cg_loop_end(c, &l2, &nx);
    LLVMValueRef sum = l2.exits[0];
    LLVMValueRef lsum = logp ? cg_log(c, sum) : NULL;
    j = cg_loop_begin(c, &l3, cg_i64(c, 0), len, 1);
    LLVMValueRef y =
        logp ? LLVMBuildFSub(c->b, LLVMBuildFSub(c->b, cg_load(c, c->t_f32, xp, AT(j)), mx, ""),
                             lsum, "")
             : LLVMBuildFDiv(c->b, cg_load(c, c->t_f32, yp, AT(j)), sum, "");
    cg_store(c, y, yp, AT(j));
    cg_loop_end(c, &l3, NULL);
#undef AT
    cg_loop_end(c, &lc, NULL);
    cg_loop_end(c, &la, NULL);
    return KILN_OK;
}

kiln_status lower_numel(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    (void)in;
    const ir_type *x = &n->in[0]->type;
    LLVMValueRef cnt = cg_i64(c, 1);
    const int64_t *axes;
    int na = ir_attr_ints(n, "axes", &axes);
    if (na == 0) {
        cnt = cg_numel(c, x);
    } else {
        for (int i = 0; i < na; i++)
            cnt = LLVMBuildNSWMul(c->b, cnt, cg_dim(c, x->dims[axes[i]]), "");
    }
    cg_store(c, LLVMBuildSIToFP(c->b, cnt, c->t_f32, ""), cg_cast_ptr(c, out, c->t_f32),
             cg_i64(c, 0));
    return KILN_OK;
}

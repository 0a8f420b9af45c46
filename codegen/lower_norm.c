/*
 * lower_norm.c — lowerings of the batch normalization and dropout rows of
 * ir/ops.def (issue 14).
 *
 * dropout runs Philox4x32-10 on 8 counters at a time (explicit <8 x i32>
 * vectors; the 32x32->64 products as <8 x i64> multiplies), the same rounds
 * and counter layout as ir/philox.c, so the JIT's masks equal the
 * interpreter's bit for bit.
 */
#include "codegen/lower.h"
#include "ir/philox.h"

/* ---------------------------------------------------------------- dropout */

typedef struct drop_ctx {
    LLVMValueRef x, y;    /* float pointers */
    LLVMValueRef step;    /* i32 */
    uint32_t key[2], node;
    float rate, scale;
} drop_ctx;

/* hi and lo words of m * v (u32 lanes). */
static void mulhilo(cg_ctx *c, uint32_t m, LLVMValueRef v, int w, LLVMValueRef *hi,
                    LLVMValueRef *lo) {
    LLVMTypeRef t64 = w == 1 ? c->t_i64 : LLVMVectorType(c->t_i64, (unsigned)w);
    LLVMTypeRef t32 = w == 1 ? c->t_i32 : LLVMVectorType(c->t_i32, (unsigned)w);
    LLVMValueRef p = LLVMBuildMul(c->b, LLVMBuildZExt(c->b, v, t64, ""), cg_ic(c, t64, m), "");
    *lo = LLVMBuildTrunc(c->b, p, t32, "");
    *hi = LLVMBuildTrunc(c->b, LLVMBuildLShr(c->b, p, cg_ic(c, t64, 32), ""), t32, "");
}

/* Word 0 of Philox4x32-10({i, 0, step, node}, key), per lane. */
static LLVMValueRef philox_word0(cg_ctx *c, const drop_ctx *k, LLVMValueRef i32, int w) {
    LLVMTypeRef t32 = w == 1 ? c->t_i32 : LLVMVectorType(c->t_i32, (unsigned)w);
    LLVMValueRef v[4] = {i32, cg_ic(c, t32, 0), cg_splat(c, k->step, w),
                         cg_ic(c, t32, (long long)k->node)};
    uint32_t k0 = k->key[0], k1 = k->key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += IR_PHILOX_W0;
            k1 += IR_PHILOX_W1;
        }
        LLVMValueRef hi0, lo0, hi1, lo1;
        mulhilo(c, IR_PHILOX_M0, v[0], w, &hi0, &lo0);
        mulhilo(c, IR_PHILOX_M1, v[2], w, &hi1, &lo1);
        LLVMValueRef n0 = LLVMBuildXor(c->b, LLVMBuildXor(c->b, hi1, v[1], ""),
                                       cg_ic(c, t32, (long long)k0), "");
        LLVMValueRef n2 = LLVMBuildXor(c->b, LLVMBuildXor(c->b, hi0, v[3], ""),
                                       cg_ic(c, t32, (long long)k1), "");
        v[0] = n0;
        v[1] = lo1;
        v[2] = n2;
        v[3] = lo0;
    }
    return v[0];
}

static LLVMValueRef drop_body(cg_ctx *c, void *ctx, LLVMValueRef idx, int w) {
    const drop_ctx *k = ctx;
    LLVMTypeRef t32 = w == 1 ? c->t_i32 : LLVMVectorType(c->t_i32, (unsigned)w);
    LLVMTypeRef tf = w == 1 ? c->t_f32 : LLVMVectorType(c->t_f32, (unsigned)w);
    LLVMValueRef i = cg_splat(c, LLVMBuildTrunc(c->b, idx, c->t_i32, ""), w);
    if (w > 1) {
        LLVMValueRef lanes[CG_VW];
        for (int l = 0; l < w; l++) lanes[l] = cg_i32(c, l);
        i = LLVMBuildAdd(c->b, i, LLVMConstVector(lanes, (unsigned)w), "");
    }
    LLVMValueRef bits = LLVMBuildLShr(c->b, philox_word0(c, k, i, w), cg_ic(c, t32, 8), "");
    LLVMValueRef u = LLVMBuildFMul(c->b, LLVMBuildUIToFP(c->b, bits, tf, ""),
                                   cg_fc(c, tf, 1.0 / 16777216.0), "");
    LLVMValueRef keep = LLVMBuildFCmp(c->b, LLVMRealOGE, u, cg_fc(c, tf, k->rate), "");
    LLVMValueRef x = cg_loadv(c, c->t_f32, w, k->x, idx);
    LLVMValueRef y = LLVMBuildSelect(c->b, keep, LLVMBuildFMul(c->b, x, cg_fc(c, tf, k->scale), ""),
                                     cg_fc(c, tf, 0.0), "");
    cg_storev(c, y, w, k->y, idx);
    return NULL;
}

kiln_status lower_dropout(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    drop_ctx k;
    uint64_t seed = (uint64_t)ir_attr_i(n, "seed");
    k.x = cg_cast_ptr(c, in[0], c->t_f32);
    k.y = cg_cast_ptr(c, out, c->t_f32);
    k.step = cg_load(c, c->t_i32, cg_cast_ptr(c, in[1], c->t_i32), cg_i64(c, 0));
    k.key[0] = (uint32_t)seed;
    k.key[1] = (uint32_t)(seed >> 32);
    k.node = (uint32_t)ir_attr_i(n, "node");
    k.rate = (float)ir_attr_f(n, "rate");
    k.scale = (float)(1.0 / (1.0 - ir_attr_f(n, "rate")));
    cg_row_loop(c, cg_numel(c, &n->type), CG_RED_NONE, drop_body, &k);
    return KILN_OK;
}

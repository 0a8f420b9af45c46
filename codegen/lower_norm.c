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
#include "codegen/task.h"
#include "ir/philox.h"

/* ---------------------------------------------------------------- dropout */

typedef struct drop_ctx {
    LLVMValueRef x, y;    /* float pointers */
    LLVMValueRef step;    /* i32 */
    LLVMValueRef base;    /* i32: the first element's index (sharded dropout) */
    uint32_t key[2], node;
    float rate, scale;
} drop_ctx;

/* hi and lo words of m * v (u32 lanes). Vectors: the 32x32->64 products of
 * the even and of the odd lanes as <w/2 x i64> multiplies of zero-extended
 * halves (x86: pmuludq, no widening or narrowing shuffles), their high words
 * interleaved back; the low words one <w x i32> multiply. */
static void mulhilo(cg_ctx *c, uint32_t m, LLVMValueRef v, int w, LLVMValueRef *hi,
                    LLVMValueRef *lo) {
    if (w == 1) {
        LLVMValueRef p = LLVMBuildMul(c->b, LLVMBuildZExt(c->b, v, c->t_i64, ""), cg_i64(c, m), "");
        *lo = LLVMBuildTrunc(c->b, p, c->t_i32, "");
        *hi = LLVMBuildTrunc(c->b, LLVMBuildLShr(c->b, p, cg_i64(c, 32), ""), c->t_i32, "");
        return;
    }
    LLVMTypeRef t32 = LLVMVectorType(c->t_i32, (unsigned)w);
    LLVMTypeRef t64 = LLVMVectorType(c->t_i64, (unsigned)(w / 2));
    LLVMValueRef v64 = LLVMBuildBitCast(c->b, v, t64, ""), m64 = cg_ic(c, t64, m);
    LLVMValueRef even = LLVMBuildMul(c->b, LLVMBuildAnd(c->b, v64, cg_ic(c, t64, 0xffffffffLL), ""), m64, "");
    LLVMValueRef odd = LLVMBuildMul(c->b, LLVMBuildLShr(c->b, v64, cg_ic(c, t64, 32), ""), m64, "");
    LLVMValueRef e32 = LLVMBuildBitCast(c->b, LLVMBuildLShr(c->b, even, cg_ic(c, t64, 32), ""), t32, "");
    LLVMValueRef o32 = LLVMBuildBitCast(c->b, odd, t32, "");
    LLVMValueRef mask[CG_VW];
    for (int l = 0; l < w; l++) mask[l] = cg_i32(c, l % 2 ? w + l : l);
    *hi = LLVMBuildShuffleVector(c->b, e32, o32, LLVMConstVector(mask, (unsigned)w), "");
    *lo = LLVMBuildMul(c->b, v, cg_ic(c, t32, m), "");
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
    LLVMValueRef i = LLVMBuildAdd(c->b, LLVMBuildTrunc(c->b, idx, c->t_i32, ""), k->base, "");
    i = cg_splat(c, i, w);
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

/* Elements of a row (one index of the leading axis). */
static int64_t row_numel(const ir_type *t) {
    int64_t r = 1;
    for (int a = 1; a < t->rank; a++) r *= t->dims[a];
    return r;
}

/* The element index of row `row`'s first element (a sharded dropout's
 * rows count from the rank's first row: kiln_collective_first_row). */
static LLVMValueRef drop_base(cg_ctx *c, const ir_node *n, LLVMValueRef row) {
    if (ir_attr_i(n, "shard")) {
        LLVMTypeRef fty = LLVMFunctionType(c->t_i64, NULL, 0, 0);
        row = LLVMBuildAdd(c->b, row, cg_call_runtime(c, "kiln_collective_first_row", fty, NULL, 0), "");
    }
    LLVMValueRef per_row = cg_i64(c, row_numel(&n->type));
    return LLVMBuildTrunc(c->b, LLVMBuildMul(c->b, row, per_row, ""), c->t_i32, "");
}

/* Over the rows as tasks of the pool (task.h; each element's mask depends
 * on its index alone, so any split gives the same bits). */
kiln_status lower_dropout(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    drop_ctx k;
    uint64_t seed = (uint64_t)ir_attr_i(n, "seed");
    k.key[0] = (uint32_t)seed;
    k.key[1] = (uint32_t)(seed >> 32);
    k.node = (uint32_t)ir_attr_i(n, "node");
    k.rate = (float)ir_attr_f(n, "rate");
    k.scale = (float)(1.0 / (1.0 - ir_attr_f(n, "rate")));
    if (n->type.rank == 0) {
        k.x = cg_cast_ptr(c, in[0], c->t_f32);
        k.y = cg_cast_ptr(c, out, c->t_f32);
        k.step = cg_load(c, c->t_i32, cg_cast_ptr(c, in[1], c->t_i32), cg_i64(c, 0));
        k.base = drop_base(c, n, cg_i64(c, 0));
        cg_row_loop(c, cg_i64(c, 1), CG_RED_NONE, drop_body, &k);
        return KILN_OK;
    }
    cg_task t;
    LLVMValueRef ptrs[3] = {in[0], in[1], out};
    cg_task_begin(c, &t, CG_TASKS_UPTO, n->type.dims[0], 3, ptrs);
    LLVMValueRef per_row = cg_i64(c, row_numel(&n->type));
    LLVMValueRef first = LLVMBuildNSWMul(c->b, t.b0, per_row, "");
    k.x = cg_gep(c, c->t_f32, t.p[0], first);
    k.y = cg_gep(c, c->t_f32, t.p[2], first);
    k.step = cg_load(c, c->t_i32, cg_cast_ptr(c, t.p[1], c->t_i32), cg_i64(c, 0));
    k.base = drop_base(c, n, t.b0);
    LLVMValueRef len = LLVMBuildNSWMul(c->b, LLVMBuildNSWSub(c->b, t.b1, t.b0, ""), per_row, "");
    cg_row_loop(c, len, CG_RED_NONE, drop_body, &k);
    cg_task_end(c, &t);
    return KILN_OK;
}

/* ---------------------------------------------------- batch normalization */

/* Per row, vectors across the channels:
 *   training: mean[j] += x[i,j]; then var[j] += (x[i,j] - mean[j])^2
 *   then scale = gamma rstd, shift = beta - mean scale (per channel) and
 *   y[i,j] = x[i,j] scale[j] + shift[j]. Statistics in f32 stack arrays. */
typedef struct bn_ctx {
    LLVMValueRef x, y, row; /* row: i * C */
    LLVMValueRef a, b;      /* per-channel arrays */
    int phase;              /* 0 sum, 1 squared deviations, 2 normalize */
} bn_ctx;

static LLVMValueRef bn_body(cg_ctx *c, void *ctx, LLVMValueRef j, int w) {
    const bn_ctx *k = ctx;
    LLVMValueRef e = LLVMBuildNSWAdd(c->b, k->row, j, "");
    LLVMValueRef x = cg_loadv(c, c->t_f32, w, k->x, e), av = cg_loadv(c, c->t_f32, w, k->a, j);
    LLVMValueRef bv = cg_loadv(c, c->t_f32, w, k->b, j);
    if (k->phase == 0) {
        cg_storev(c, LLVMBuildFAdd(c->b, bv, x, ""), w, k->b, j);
    } else if (k->phase == 1) {
        LLVMValueRef d = LLVMBuildFSub(c->b, x, av, "");
        cg_storev(c, cg_fma(c, d, d, bv), w, k->b, j);
    } else {
        cg_storev(c, cg_fma(c, x, av, bv), w, k->y, e);
    }
    return NULL;
}

/* One pass over the rows for `phase`. */
static void bn_rows(cg_ctx *c, bn_ctx *k, LLVMValueRef rows, LLVMValueRef ch, int phase) {
    cg_loop l;
    LLVMValueRef i = cg_loop_begin(c, &l, cg_i64(c, 0), rows, 1);
    k->row = LLVMBuildNSWMul(c->b, i, ch, "");
    k->phase = phase;
    cg_row_loop(c, ch, CG_RED_NONE, bn_body, k);
    cg_loop_end(c, &l, NULL);
}

/* Channel loop j < C: out[j] = f(j). */
static void bn_channels(cg_ctx *c, LLVMValueRef ch, LLVMValueRef rows, const bn_ctx *k,
                        const LLVMValueRef *p, double eps, int step) {
    cg_loop l;
    LLVMValueRef j = cg_loop_begin(c, &l, cg_i64(c, 0), ch, 1);
    LLVMValueRef n = LLVMBuildSIToFP(c->b, rows, c->t_f32, "");
    if (step == 0) { /* sums -> mean in a; zero b */
        cg_store(c, LLVMBuildFDiv(c->b, cg_load(c, c->t_f32, k->b, j), n, ""), k->a, j);
        cg_store(c, cg_fc(c, c->t_f32, 0), k->b, j);
        cg_loop_end(c, &l, NULL);
        return;
    }
    /* mean in a (or p[3]), var in b (sum of squares, or p[4]) -> scale, shift */
    LLVMValueRef mean = p[3] ? cg_load(c, c->t_f32, p[3], j) : cg_load(c, c->t_f32, k->a, j);
    LLVMValueRef var = p[4] ? cg_load(c, c->t_f32, p[4], j)
                            : LLVMBuildFDiv(c->b, cg_load(c, c->t_f32, k->b, j), n, "");
    LLVMValueRef v = LLVMBuildFAdd(c->b, var, cg_fc(c, c->t_f32, eps), "");
    LLVMValueRef sd = cg_intrinsic(c, "llvm.sqrt", c->t_f32, &v, 1);
    LLVMValueRef scale = LLVMBuildFDiv(c->b, cg_load(c, c->t_f32, p[1], j), sd, "");
    LLVMValueRef shift = LLVMBuildFSub(c->b, cg_load(c, c->t_f32, p[2], j),
                                       LLVMBuildFMul(c->b, mean, scale, ""), "");
    cg_store(c, scale, k->a, j);
    cg_store(c, shift, k->b, j);
    cg_loop_end(c, &l, NULL);
}

kiln_status lower_batch_norm(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                             const LLVMValueRef *in) {
    int64_t cc = n->type.dims[n->type.rank - 1];
    LLVMValueRef ch = cg_i64(c, cc);
    LLVMValueRef rows = LLVMBuildSDiv(c->b, cg_numel(c, &n->type), ch, "");
    bn_ctx k;
    k.x = cg_cast_ptr(c, in[0], c->t_f32);
    k.y = cg_cast_ptr(c, out, c->t_f32);
    k.a = LLVMBuildArrayAlloca(c->b, c->t_f32, ch, "bn_a");
    k.b = LLVMBuildArrayAlloca(c->b, c->t_f32, ch, "bn_b");
    LLVMValueRef p[5] = {NULL};
    for (int i = 1; i < 5; i++) p[i] = cg_cast_ptr(c, in[i], c->t_f32);
    double eps = (float)ir_attr_f(n, "epsilon");
    if (ir_attr_i(n, "training")) {
        cg_memset0(c, k.b, cg_i64(c, cc * 4));
        bn_rows(c, &k, rows, ch, 0);
        bn_channels(c, ch, rows, &k, p, eps, 0);
        bn_rows(c, &k, rows, ch, 1);
        p[3] = p[4] = NULL;
    }
    bn_channels(c, ch, rows, &k, p, eps, 1);
    bn_rows(c, &k, rows, ch, 2);
    return KILN_OK;
}

/*
 * gemm.c — Kiln's GEMM micro-kernels, generated as LLVM IR (see gemm.h for
 * the loop nest). One internal function per distinct call signature:
 *
 *   define void @kiln.gemm.nt.full.b0.w8(i64 %M, i64 %N, i64 %K,
 *          float* %A, i64 %lda, float* %B, i64 %ldb, float* %C,
 *          i64 %ldc, float* %bias)
 *
 * ("full": N a multiple of the panel width, so no column masks; "part":
 * N below it, one masked panel; "any": told apart at run time. Transposed
 * B only: ".msmall" / ".mbig" when M is a constant <= / > MR, so one path
 * of emit_panel, else both.) M, N and K
 * are run-time values: specializing on K and N bought no speed and cost a
 * function per shape in compile time.
 */
#include "codegen/gemm.h"
#include <llvm-c/TargetMachine.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GEMM_MR = 6, GEMM_KC = 512 };
/* The kernels are blocked and vectorized as emitted: LLVM's vectorizer and
 * unroller have nothing to add there, only compile time to spend. */
#define GEMM_LOOP_HINTS (CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL)

typedef struct gemm_gen {
    cg_ctx *c;
    const cg_gemm_call *g;
    int W, NV, NR, MR;
    LLVMTypeRef vt, fp, vti;
    /* parameters */
    LLVMValueRef M, N, K, A, lda, B, ldb, C, ldc, bias, mask;
    /* The whole product's rows (M is the task's row block): it chooses
     * emit_panel's path, so every row is summed as the whole M would be
     * whatever the split. */
    LLVMValueRef Mall;
    LLVMValueRef buf; /* the packed panel, KC x NR floats */
    /* the current panel / block */
    LLVMValueRef jp, nc, kb, kc, first, last;
    /* The tile being emitted: NULL when all its rows are C's, else how many
     * are (1..MR-1, at run time; the last tile of the rows). */
    LLVMValueRef rows;
    /* Whether the panel's columns are all of C's (COLS_FULL), fewer
     * (COLS_PART: masked), or either, told at run time (COLS_ANY, N dynamic). */
    enum { COLS_FULL, COLS_PART, COLS_ANY } cols;
    /* Which paths of emit_panel the function has: M <= MR (no packing),
     * M > MR (packed), or both behind a run-time test (M dynamic). */
    enum { ROWS_ANY, ROWS_SMALL, ROWS_BIG } mrows;
} gemm_gen;

/* ------------------------------------------------------------- helpers */

static LLVMValueRef add(gemm_gen *q, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildNSWAdd(q->c->b, a, b, "");
}
static LLVMValueRef mul(gemm_gen *q, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildNSWMul(q->c->b, a, b, "");
}
static LLVMValueRef imin(gemm_gen *q, LLVMValueRef a, LLVMValueRef b) {
    LLVMBuilderRef b_ = q->c->b;
    return LLVMBuildSelect(b_, LLVMBuildICmp(b_, LLVMIntSLT, a, b, ""), a, b, "");
}

static LLVMValueRef imax(gemm_gen *q, LLVMValueRef a, LLVMValueRef b) {
    LLVMBuilderRef b_ = q->c->b;
    return LLVMBuildSelect(b_, LLVMBuildICmp(b_, LLVMIntSGT, a, b, ""), a, b, "");
}
/* ceil(a / b) for a >= 0, b > 0 */
static LLVMValueRef cdiv(gemm_gen *q, LLVMValueRef a, LLVMValueRef b) {
    LLVMValueRef bm1 = LLVMBuildNSWSub(q->c->b, b, LLVMConstInt(LLVMTypeOf(b), 1, 0), "");
    return LLVMBuildSDiv(q->c->b, add(q, a, bm1), b, "");
}

static LLVMValueRef splat(gemm_gen *q, LLVMValueRef s) {
    cg_ctx *c = q->c;
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetUndef(q->vt), s, cg_i32(c, 0), "");
    LLVMValueRef zeros[16];
    for (int i = 0; i < q->W; i++) zeros[i] = cg_i32(c, 0);
    return LLVMBuildShuffleVector(c->b, v, LLVMGetUndef(q->vt),
                                  LLVMConstVector(zeros, (unsigned)q->W), "");
}

static LLVMValueRef vptr(gemm_gen *q, LLVMValueRef base, LLVMValueRef idx) {
    cg_ctx *c = q->c;
    LLVMValueRef p = cg_gep(c, c->t_f32, base, idx);
    return LLVMBuildBitCast(c->b, p, LLVMPointerType(q->vt, 0), "");
}

static LLVMValueRef loadv(gemm_gen *q, LLVMValueRef base, LLVMValueRef idx, unsigned align) {
    LLVMValueRef v = LLVMBuildLoad2(q->c->b, q->vt, vptr(q, base, idx), "");
    LLVMSetAlignment(v, align);
    return v;
}

static void storev(gemm_gen *q, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx,
                   unsigned align) {
    LLVMValueRef s = LLVMBuildStore(q->c->b, v, vptr(q, base, idx));
    LLVMSetAlignment(s, align);
}

/* Lanes l with l < n (n an i64, may be <= 0 or >= W). */
static LLVMValueRef lane_mask(gemm_gen *q, LLVMValueRef n) {
    cg_ctx *c = q->c;
    LLVMValueRef lanes[16];
    for (int i = 0; i < q->W; i++) lanes[i] = cg_i32(c, i);
    LLVMValueRef n32 = LLVMBuildTrunc(c->b, imin(q, n, cg_i64(c, q->W)), c->t_i32, "");
    LLVMValueRef nv = LLVMBuildInsertElement(c->b, LLVMGetUndef(q->vti), n32, cg_i32(c, 0), "");
    LLVMValueRef zeros[16];
    for (int i = 0; i < q->W; i++) zeros[i] = cg_i32(c, 0);
    nv = LLVMBuildShuffleVector(c->b, nv, LLVMGetUndef(q->vti),
                                LLVMConstVector(zeros, (unsigned)q->W), "");
    return LLVMBuildICmp(c->b, LLVMIntSLT, LLVMConstVector(lanes, (unsigned)q->W), nv, "");
}

/* llvm.masked.load / llvm.masked.store, overloaded on the vector and its
 * pointer type. */
static LLVMValueRef masked_intrinsic(gemm_gen *q, const char *name, LLVMTypeRef *fty) {
    cg_ctx *c = q->c;
    LLVMTypeRef tys[2] = {q->vt, LLVMPointerType(q->vt, 0)};
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    *fty = LLVMIntrinsicGetType(c->ctx, id, tys, 2);
    return LLVMGetIntrinsicDeclaration(c->mod, id, tys, 2);
}

static LLVMValueRef loadv_masked(gemm_gen *q, LLVMValueRef base, LLVMValueRef idx,
                                 LLVMValueRef mask) {
    LLVMTypeRef fty;
    LLVMValueRef fn = masked_intrinsic(q, "llvm.masked.load", &fty);
    LLVMValueRef args[4] = {vptr(q, base, idx), cg_i32(q->c, 4), mask,
                            cg_fc(q->c, q->vt, 0.0)};
    return LLVMBuildCall2(q->c->b, fty, fn, args, 4, "");
}

static void storev_masked(gemm_gen *q, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx,
                          LLVMValueRef mask) {
    LLVMTypeRef fty;
    LLVMValueRef fn = masked_intrinsic(q, "llvm.masked.store", &fty);
    LLVMValueRef args[4] = {v, vptr(q, base, idx), cg_i32(q->c, 4), mask};
    LLVMBuildCall2(q->c->b, fty, fn, args, 4, "");
}

static LLVMBasicBlockRef block(gemm_gen *q, const char *name) {
    return LLVMAppendBasicBlockInContext(q->c->ctx, q->c->fn, name);
}

/* Emits body(q, masked) for the panel's column mode: once, or twice
 * behind a run-time test of nc == NR. */
static void by_cols(gemm_gen *q, const char *name, void (*body)(gemm_gen *q, bool masked, void *),
                    void *ctx) {
    cg_ctx *c = q->c;
    if (q->cols != COLS_ANY) {
        body(q, q->cols == COLS_PART, ctx);
        return;
    }
    LLVMValueRef full = LLVMBuildICmp(c->b, LLVMIntEQ, q->nc, cg_i64(c, q->NR), "");
    LLVMBasicBlockRef b_full = block(q, name), b_part = block(q, name), b_done = block(q, name);
    LLVMBuildCondBr(c->b, full, b_full, b_part);
    LLVMPositionBuilderAtEnd(c->b, b_full);
    body(q, false, ctx);
    LLVMBuildBr(c->b, b_done);
    LLVMPositionBuilderAtEnd(c->b, b_part);
    body(q, true, ctx);
    LLVMBuildBr(c->b, b_done);
    LLVMPositionBuilderAtEnd(c->b, b_done);
}

/* ------------------------------------------------------------- packing */

/* Rows of B are contiguous: NV vector copies per k, masked on the last
 * panel (zeros beyond nc). */
static void pack_rows(gemm_gen *q, bool part, void *ctx) {
    cg_ctx *c = q->c;
    (void)ctx;
    LLVMValueRef mask[4];
    for (int v = 0; v < q->NV && part; v++)
        mask[v] = lane_mask(q, LLVMBuildNSWSub(c->b, q->nc, cg_i64(c, v * q->W), ""));
    cg_loop l;
    LLVMValueRef k = cg_loop_begin(c, &l, cg_i64(c, 0), q->kc, 1);
    LLVMValueRef src = add(q, mul(q, add(q, q->kb, k), q->ldb), q->jp);
    LLVMValueRef dst = mul(q, k, cg_i64(c, q->NR));
    for (int v = 0; v < q->NV; v++) {
        LLVMValueRef off = cg_i64(c, v * q->W);
        LLVMValueRef x = part ? loadv_masked(q, q->B, add(q, src, off), mask[v])
                              : loadv(q, q->B, add(q, src, off), 4);
        storev(q, x, q->buf, add(q, dst, off), 32);
    }
    l.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &l, NULL);
}

/* One stage of a W x W transpose in registers on the vectors a = x[e] and
 * b = x[e + d] (e's bit d clear): swaps bit d of the vector index with bit
 * d of the lane index. */
static void butterfly(gemm_gen *q, int d, LLVMValueRef a, LLVMValueRef b, LLVMValueRef *lo,
                      LLVMValueRef *hi) {
    cg_ctx *c = q->c;
    int W = q->W;
    LLVMValueRef ml[16], mh[16];
    for (int l = 0; l < W; l++) {
        ml[l] = cg_i32(c, (l & d) ? W + l - d : l);
        mh[l] = cg_i32(c, (l & d) ? W + l : l + d);
    }
    *lo = LLVMBuildShuffleVector(c->b, a, b, LLVMConstVector(ml, (unsigned)W), "");
    *hi = LLVMBuildShuffleVector(c->b, a, b, LLVMConstVector(mh, (unsigned)W), "");
}

/* The W x W block x[0..W-1] transposed (x[e] lane l becomes x[l] lane e):
 * log2 W stages of two-input shuffles. */
static void transpose_block(gemm_gen *q, LLVMValueRef *x) {
    int W = q->W;
    for (int d = 1; d < W; d *= 2) {
        for (int e = 0; e < W; e++) {
            if (e & d) continue;
            butterfly(q, d, x[e], x[e | d], &x[e], &x[e | d]);
        }
    }
}

/* Columns col0 .. col0+W-1 of the panel, K rows k .. k+W-1 of the block, from
 * transposed B: W row loads (kmask: the lanes below kc - k), one transpose, W aligned stores (rows past kc: zeros the kernel
 * never reads). */
static void pack_t_block(gemm_gen *q, const LLVMValueRef *rowoff, LLVMValueRef k,
                         LLVMValueRef col0, LLVMValueRef kmask) {
    cg_ctx *c = q->c;
    LLVMValueRef x[16];
    for (int e = 0; e < q->W; e++) {
        LLVMValueRef idx = add(q, rowoff[e], k);
        x[e] = loadv_masked(q, q->B, idx, kmask);
    }
    transpose_block(q, x);
    for (int l = 0; l < q->W; l++) {
        LLVMValueRef dst = add(q, mul(q, add(q, k, cg_i64(c, l)), cg_i64(c, q->NR)), col0);
        storev(q, x[l], q->buf, dst, 32);
    }
}

/* buf[k*NR + j] = op(B)[kb+k, jp+j] for k < kc, j < nc; for j >= nc zeros
 * or (transposed B) copies of column nc-1: those lanes of the sums are
 * never stored. */
static void emit_pack(gemm_gen *q) {
    cg_ctx *c = q->c;
    if (!q->g->tb) {
        by_cols(q, "pack", pack_rows, NULL);
        return;
    }
    /* Transposed B [N,K]: column j of the panel is row jp+j of B,
     * contiguous in k. W x W blocks: W rows' vectors transposed in
     * registers into W rows of the buffer. The loads are masked to k < kc
     * (all lanes but in the last block: one copy of the code for the K
     * rest too). Columns past nc (not COLS_FULL) read row nc-1. */
    bool part = q->cols != COLS_FULL;
    LLVMValueRef kend = LLVMBuildAnd(c->b, add(q, q->kc, cg_i64(c, q->W - 1)),
                                     cg_i64(c, ~(long long)(q->W - 1)), "");
    LLVMValueRef lastcol = LLVMBuildNSWSub(c->b, q->nc, cg_i64(c, 1), "");
    cg_loop lv; /* a loop, not NV copies: the JIT's compile time */
    LLVMValueRef col0 = cg_loop_begin(c, &lv, cg_i64(c, 0), cg_i64(c, q->NR), q->W);
    LLVMValueRef rowoff[16];
    for (int e = 0; e < q->W; e++) {
        LLVMValueRef j = add(q, col0, cg_i64(c, e));
        if (part) j = imin(q, j, lastcol);
        rowoff[e] = add(q, mul(q, add(q, q->jp, j), q->ldb), q->kb);
    }
    cg_loop lk;
    LLVMValueRef k = cg_loop_begin(c, &lk, cg_i64(c, 0), kend, q->W);
    pack_t_block(q, rowoff, k, col0, lane_mask(q, LLVMBuildNSWSub(c->b, q->kc, k, "")));
    lk.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &lk, NULL);
    lv.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &lv, NULL);
}

/* ------------------------------------------------------- micro-kernel */

/* Row r of the tile at row i: i + r, or in the last tile i + min(r, rows - 1)
 * (rows beyond C's compute a copy of its last row, never stored). */
static LLVMValueRef tile_row(gemm_gen *q, LLVMValueRef i, int r) {
    cg_ctx *c = q->c;
    if (!q->rows || r == 0) return add(q, i, cg_i64(c, r));
    LLVMValueRef last = LLVMBuildNSWSub(c->b, q->rows, cg_i64(c, 1), "");
    return add(q, i, imin(q, cg_i64(c, r), last));
}

/* The store of an mr x NR tile at row i: acc (+ C unless this is the first
 * K block with beta 0), then on the last block the epilogue; masked columns
 * on the last panel. */
static void emit_tile_store(gemm_gen *q, int mr, LLVMValueRef i, LLVMValueRef acc[][4],
                            bool masked) {
    cg_ctx *c = q->c;
    const cg_gemm_call *g = q->g;
    LLVMValueRef mask[4] = {0};
    if (masked)
        for (int v = 0; v < q->NV; v++)
            mask[v] = lane_mask(q, LLVMBuildNSWSub(c->b, q->nc, cg_i64(c, v * q->W), ""));
    LLVMValueRef rowp[GEMM_MR * 2];
    for (int r = 0; r < mr; r++) rowp[r] = add(q, mul(q, tile_row(q, i, r), q->ldc), q->jp);
#define LD(base, idx, v) (masked ? loadv_masked(q, base, idx, mask[v]) : loadv(q, base, idx, 4))
    /* + C: earlier K blocks (scale 1), or beta C on the first. */
    LLVMValueRef load_c = LLVMBuildNot(c->b, q->first, "");
    if (g->beta != 0.0) load_c = LLVMConstInt(c->t_i1, 1, 0);
    LLVMBasicBlockRef b_pre = LLVMGetInsertBlock(c->b), b_ld = block(q, "tile.c"),
                      b_after = block(q, "tile.c.done");
    LLVMBuildCondBr(c->b, load_c, b_ld, b_after);
    LLVMPositionBuilderAtEnd(c->b, b_ld);
    LLVMValueRef scale =
        g->beta == 1.0 || g->beta == 0.0
            ? NULL
            : LLVMBuildSelect(c->b, q->first, cg_fc(c, q->vt, g->beta), cg_fc(c, q->vt, 1.0), "");
    LLVMValueRef withc[GEMM_MR * 2][4];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < q->NV; v++) {
            LLVMValueRef x = LD(q->C, add(q, rowp[r], cg_i64(c, v * q->W)), v);
            withc[r][v] = scale ? cg_fma(c, x, scale, acc[r][v])
                                : LLVMBuildFAdd(c->b, acc[r][v], x, "");
        }
    LLVMBasicBlockRef b_ld_end = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, b_after);
    LLVMPositionBuilderAtEnd(c->b, b_after);
    LLVMValueRef t[GEMM_MR * 2][4];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < q->NV; v++) {
            t[r][v] = LLVMBuildPhi(c->b, q->vt, "");
            LLVMValueRef vals[2] = {acc[r][v], withc[r][v]};
            LLVMBasicBlockRef from[2] = {b_pre, b_ld_end};
            LLVMAddIncoming(t[r][v], vals, from, 2);
        }
    /* The epilogue, on the final sums only. */
    if (q->bias || g->act || q->mask) {
        LLVMBasicBlockRef b_pre2 = LLVMGetInsertBlock(c->b), b_epi = block(q, "tile.epi"),
                          b_done = block(q, "tile.epi.done");
        LLVMBuildCondBr(c->b, q->last, b_epi, b_done);
        LLVMPositionBuilderAtEnd(c->b, b_epi);
        LLVMValueRef bv[4], e[GEMM_MR * 2][4];
        for (int v = 0; v < q->NV && q->bias; v++)
            bv[v] = LD(q->bias, add(q, q->jp, cg_i64(c, v * q->W)), v);
        for (int r = 0; r < mr; r++)
            for (int v = 0; v < q->NV; v++) {
                LLVMValueRef x = t[r][v];
                if (q->bias) x = LLVMBuildFAdd(c->b, x, bv[v], "");
                if (g->act) x = cg_scalar_lowering(g->act)(c, g->act_node, &x);
                if (q->mask)
                    x = cg_gemm_mask(c, x, LD(q->mask, add(q, rowp[r], cg_i64(c, v * q->W)), v),
                                     g->mask_alpha);
                e[r][v] = x;
            }
        LLVMBasicBlockRef b_epi_end = LLVMGetInsertBlock(c->b);
        LLVMBuildBr(c->b, b_done);
        LLVMPositionBuilderAtEnd(c->b, b_done);
        for (int r = 0; r < mr; r++)
            for (int v = 0; v < q->NV; v++) {
                LLVMValueRef p = LLVMBuildPhi(c->b, q->vt, "");
                LLVMValueRef vals[2] = {t[r][v], e[r][v]};
                LLVMBasicBlockRef from[2] = {b_pre2, b_epi_end};
                LLVMAddIncoming(p, vals, from, 2);
                t[r][v] = p;
            }
    }
#undef LD
    for (int r = 0; r < mr; r++) {
        /* In the last tile, rows r < rows only. */
        LLVMBasicBlockRef b_next = NULL;
        if (q->rows && r > 0) {
            LLVMBasicBlockRef b_row = block(q, "tile.row");
            b_next = block(q, "tile.row.done");
            LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, cg_i64(c, r), q->rows, ""),
                            b_row, b_next);
            LLVMPositionBuilderAtEnd(c->b, b_row);
        }
        for (int v = 0; v < q->NV; v++) {
            LLVMValueRef idx = add(q, rowp[r], cg_i64(c, v * q->W));
            if (masked)
                storev_masked(q, t[r][v], q->C, idx, mask[v]);
            else
                storev(q, t[r][v], q->C, idx, 4);
        }
        if (b_next) {
            LLVMBuildBr(c->b, b_next);
            LLVMPositionBuilderAtEnd(c->b, b_next);
        }
    }
}

typedef struct tile_out {
    int mr;
    LLVMValueRef i;
    LLVMValueRef (*acc)[4];
} tile_out;

static void tile_store(gemm_gen *q, bool masked, void *ctx) {
    tile_out *t = ctx;
    emit_tile_store(q, t->mr, t->i, t->acc, masked);
}

/* One mr x NR tile of C at row i over the current K block. */
static void emit_tile(gemm_gen *q, int mr, LLVMValueRef i) {
    cg_ctx *c = q->c;
    const cg_gemm_call *g = q->g;
    LLVMValueRef acc[GEMM_MR * 2][4], next[GEMM_MR * 2][4];
    /* A's element (i+r, kb+k): row-major A[i+r, kb+k], or A[kb+k, i+r]. */
    LLVMValueRef abase = g->ta ? add(q, mul(q, q->kb, q->lda), i) : add(q, mul(q, i, q->lda), q->kb);
    /* Row r's offset from row i (clamped in the last tile), before the loop. */
    LLVMValueRef roff[GEMM_MR * 2];
    for (int r = 0; r < mr; r++) {
        LLVMValueRef dr = LLVMBuildNSWSub(c->b, tile_row(q, i, r), i, "");
        roff[r] = g->ta ? dr : mul(q, dr, q->lda);
    }
    cg_loop l;
    LLVMValueRef k = cg_loop_begin(c, &l, cg_i64(c, 0), q->kc, 1);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < q->NV; v++) acc[r][v] = cg_loop_phi(c, &l, cg_fc(c, q->vt, 0.0));
    LLVMValueRef b[4];
    LLVMValueRef brow = mul(q, k, cg_i64(c, q->NR));
    for (int v = 0; v < q->NV; v++) b[v] = loadv(q, q->buf, add(q, brow, cg_i64(c, v * q->W)), 32);
    LLVMValueRef arow = g->ta ? add(q, abase, mul(q, k, q->lda)) : add(q, abase, k);
    for (int r = 0; r < mr; r++) {
        LLVMValueRef aidx = add(q, arow, roff[r]);
        LLVMValueRef a = splat(q, cg_load(c, c->t_f32, q->A, aidx));
        for (int v = 0; v < q->NV; v++) next[r][v] = cg_fma(c, a, b[v], acc[r][v]);
    }
    LLVMValueRef flat[GEMM_MR * 2 * 4];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < q->NV; v++) flat[r * q->NV + v] = next[r][v];
    l.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &l, flat);
    LLVMValueRef out[GEMM_MR * 2][4];
    /* The loop may not run (kc == 0 never happens: blocks are non-empty). */
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < q->NV; v++) out[r][v] = l.exits[r * q->NV + v];
    tile_out t = {mr, i, out};
    by_cols(q, "tile.store", tile_store, &t);
}

/* The rows of one (panel, K block): MR at a time, one loop for all of them:
 * each tile's rows are min(MR, M - i), the rows beyond C's reading C's last
 * row and not stored. One copy of the tile's code, not one for the full
 * tiles and one for the rest: the kernels' native code is most of the
 * cold compile, and the clamped rows cost nothing measurable (their
 * offsets are computed once per tile, outside the K loop). */
static void emit_rows(gemm_gen *q) {
    cg_ctx *c = q->c;
    cg_loop li;
    LLVMValueRef i = cg_loop_begin(c, &li, cg_i64(c, 0), q->M, q->MR);
    q->rows = imin(q, cg_i64(c, q->MR), LLVMBuildNSWSub(c->b, q->M, i, ""));
    emit_tile(q, q->MR, i);
    q->rows = NULL;
    li.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &li, NULL);
}

/* The sums of W vectors x[e], reduced: lane e of the result is the sum of
 * x[e]'s lanes. The stages of transpose_block, each pair summed at once
 * (the later stages are the same shuffles on the sums). */
static LLVMValueRef reduce_block(gemm_gen *q, LLVMValueRef *x) {
    for (int d = 1; d < q->W; d *= 2)
        for (int e = 0; e < q->W; e += 2 * d) {
            LLVMValueRef lo, hi;
            butterfly(q, d, x[e], x[e + d], &lo, &hi);
            x[e] = LLVMBuildFAdd(q->c->b, lo, hi, "");
        }
    return x[0];
}

/* The small-M path for transposed B [N,K] and row-major A (M <= MR): each
 * row of C at a time, each of its W-column blocks W dot products along K
 * (a vector of A's row times one of each B row, W sums per lane), reduced
 * into one vector; all of K in one pass, then the store and epilogue.
 * Packing a panel to use it for one row cost more than the product. */
static void emit_dot(gemm_gen *q) {
    cg_ctx *c = q->c;
    LLVMValueRef kv = LLVMBuildAnd(c->b, q->K, cg_i64(c, ~(long long)(q->W - 1)), "");
    /* The K rest: masked loads (all lanes off when K is a multiple of W). */
    LLVMValueRef kmask = lane_mask(q, LLVMBuildNSWSub(c->b, q->K, kv, ""));
    LLVMValueRef jp = q->jp, nc = q->nc;
    int nv = q->NV;
    /* The W-column blocks holding columns of C: a loop (not NV copies), each
     * stored as a panel of its own of one vector. */
    LLVMValueRef blocks = LLVMBuildSDiv(c->b, add(q, nc, cg_i64(c, q->W - 1)), cg_i64(c, q->W), "");
    cg_loop li;
    LLVMValueRef i = cg_loop_begin(c, &li, cg_i64(c, 0), q->M, 1);
    LLVMValueRef arow = mul(q, i, q->lda);
    cg_loop lv;
    LLVMValueRef vb = cg_loop_begin(c, &lv, cg_i64(c, 0), blocks, 1);
    q->NV = 1;
    q->jp = add(q, jp, mul(q, vb, cg_i64(c, q->W)));
    q->nc = LLVMBuildNSWSub(c->b, nc, mul(q, vb, cg_i64(c, q->W)), "");
    LLVMValueRef lastcol = LLVMBuildNSWSub(c->b, q->nc, cg_i64(c, 1), "");
    LLVMValueRef rowoff[16];
    for (int e = 0; e < q->W; e++) {
        LLVMValueRef j = cg_i64(c, e);
        if (q->cols != COLS_FULL) j = imin(q, j, lastcol); /* past nc: a copy, not stored */
        rowoff[e] = mul(q, add(q, q->jp, j), q->ldb);
    }
    cg_loop lk;
    LLVMValueRef k = cg_loop_begin(c, &lk, cg_i64(c, 0), kv, q->W);
    LLVMValueRef acc[16];
    for (int e = 0; e < q->W; e++) acc[e] = cg_loop_phi(c, &lk, cg_fc(c, q->vt, 0.0));
    LLVMValueRef a = loadv(q, q->A, add(q, arow, k), 4);
    for (int e = 0; e < q->W; e++)
        acc[e] = cg_fma(c, a, loadv(q, q->B, add(q, rowoff[e], k), 4), acc[e]);
    lk.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &lk, acc);
    a = loadv_masked(q, q->A, add(q, arow, kv), kmask);
    for (int e = 0; e < q->W; e++)
        acc[e] = cg_fma(c, a, loadv_masked(q, q->B, add(q, rowoff[e], kv), kmask), lk.exits[e]);
    /* All of K summed: the first and last K block at once. One copy of the
     * store, masked unless COLS_FULL (all lanes on when the block is full). */
    LLVMValueRef out[1][4] = {{reduce_block(q, acc)}};
    q->first = q->last = LLVMConstInt(c->t_i1, 1, 0);
    emit_tile_store(q, 1, i, out, q->cols != COLS_FULL);
    q->NV = nv;
    q->jp = jp;
    q->nc = nc;
    lv.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &lv, NULL);
    li.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &li, NULL);
}

/* The K blocks of one panel: each packed, then every row of C. */
static void emit_kblocks(gemm_gen *q, LLVMValueRef kblocks_end) {
    cg_ctx *c = q->c;
    cg_loop lk;
    q->kb = cg_loop_begin(c, &lk, cg_i64(c, 0), kblocks_end, GEMM_KC);
    q->kc = imin(q, cg_i64(c, GEMM_KC), LLVMBuildNSWSub(c->b, q->K, q->kb, ""));
    q->first = LLVMBuildICmp(c->b, LLVMIntEQ, q->kb, cg_i64(c, 0), "");
    q->last = LLVMBuildICmp(c->b, LLVMIntSGE, add(q, q->kb, cg_i64(c, GEMM_KC)), q->K, "");
    emit_pack(q);
    emit_rows(q);
    lk.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &lk, NULL);
}

/* One panel of columns (q->jp, q->nc): the paths q->mrows asks for. */
static void emit_panel(gemm_gen *q, LLVMValueRef kblocks_end) {
    cg_ctx *c = q->c;
    if (q->mrows != ROWS_ANY) {
        if (q->mrows == ROWS_SMALL)
            emit_dot(q);
        else
            emit_kblocks(q, kblocks_end);
        return;
    }
    LLVMBasicBlockRef b_small = block(q, "small"), b_big = block(q, "big"),
                      b_done = block(q, "panel.done");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLE, q->Mall, cg_i64(c, q->MR), ""), b_small,
                    b_big);
    LLVMPositionBuilderAtEnd(c->b, b_small);
    emit_dot(q);
    LLVMBuildBr(c->b, b_done);
    LLVMPositionBuilderAtEnd(c->b, b_big);
    emit_kblocks(q, kblocks_end);
    LLVMBuildBr(c->b, b_done);
    LLVMPositionBuilderAtEnd(c->b, b_done);
}

/* ------------------------------------------------------------ function */

static bool has_feature(const char *features, const char *f) {
    size_t n = strlen(f);
    for (const char *p = features ? strstr(features, f) : NULL; p; p = strstr(p + 1, f))
        if (p > features && p[-1] == '+' && (p[n] == ',' || p[n] == 0)) return true;
    return false;
}

/* Whether the target is this machine (no CPU or features named). */
static bool host_target(const cg_options *o) {
    return !(o && (o->cpu || o->features));
}

int cg_gemm_width(const cg_options *o, const char *features) {
    if (o && (o->gemm_width == 4 || o->gemm_width == 8 || o->gemm_width == 16))
        return o->gemm_width;
    const char *env = getenv("KILN_GEMM_WIDTH");
    if (env && (!strcmp(env, "4") || !strcmp(env, "8") || !strcmp(env, "16"))) return atoi(env);
    if (has_feature(features, "avx512f")) return 16;
    if (host_target(o)) {
        char *host = LLVMGetHostCPUFeatures();
        int w = has_feature(host, "avx512f") && has_feature(host, "avx512vl") ? 16
                : has_feature(host, "avx2") && has_feature(host, "fma")  ? 8
                                                                          : 4;
        LLVMDisposeMessage(host);
        return w;
    }
    if (has_feature(features, "avx2") && has_feature(features, "fma")) return 8;
    /* A named CPU brings its features (not in the string): x86-64 levels
     * and the families with 256-bit FMA. */
    const char *cpu = o->cpu ? o->cpu : "";
    static const char *const avx2_cpus[] = {"x86-64-v3", "x86-64-v4", "haswell", "broadwell",
                                            "skylake", "cascadelake", "icelake", "tigerlake",
                                            "sapphirerapids", "alderlake", "znver"};
    for (size_t i = 0; i < sizeof avx2_cpus / sizeof *avx2_cpus; i++)
        if (!strncmp(cpu, avx2_cpus[i], strlen(avx2_cpus[i]))) return 8;
    return 4;
}

bool cg_gemm_use_kiln(const cg_options *o) {
    if (o && o->gemm == KILN_GEMM_OPENBLAS) return false;
    if (o && o->gemm == KILN_GEMM_KILN) return true;
    const char *env = getenv("KILN_GEMM");
    if (env && !strcmp(env, "openblas")) return false;
    return true;
}

/* The panels' columns as the call site tells them: with N known and a
 * multiple of NR all full, with N < NR one masked panel; else told apart
 * at run time (one copy of the FMA loops, two of the stores). */
static int gemm_cols(const cg_gemm_call *g, int NR) {
    long long nconst = LLVMIsAConstantInt(g->N) ? LLVMConstIntGetSExtValue(g->N) : -1;
    return nconst >= 0 && nconst % NR == 0 ? COLS_FULL
           : nconst > 0 && nconst < NR     ? COLS_PART
                                           : COLS_ANY;
}

/* The row paths the function needs (emit_panel): from M where it is a
 * constant. Only transposed B with row-major A has a small path: B [K,N]
 * is packed at the speed of a copy (measured: M = 1 with B read in place
 * row by row, 4 FMA chains, was no faster — L2-bound at 784 x 128), and
 * both transposed is rare. A dynamic M that is the training batch takes
 * the blocked path alone: the small path would only serve batches of 6 or
 * fewer and costs the train step's compile ~20 ms (the dX kernel's code
 * doubles). */
static int gemm_rows(const cg_gemm_call *g) {
    if (g->ta || !g->tb) return ROWS_BIG;
    if (!LLVMIsAConstantInt(g->M)) return g->m_batch ? ROWS_BIG : ROWS_ANY;
    return LLVMConstIntGetSExtValue(g->M) <= GEMM_MR ? ROWS_SMALL : ROWS_BIG;
}

/* The function's signature key: what it is specialized to (alphas as the
 * f32 constants the code holds: 9 digits tell every float apart). K and N are
 * not (run-time loop bounds: the register-blocked loops are the same), only
 * the column mode N implies, so the seed step's 8 GEMMs share 5 functions. */
static void gemm_key(const cg_gemm_call *g, int W, char *key, size_t n) {
    static const char *const cols[] = {"full", "part", "any"};
    char act[64] = "";
    if (g->act)
        snprintf(act, sizeof act, ".%s%.9g", ir_op_name(g->act),
                 (float)ir_attr_f(g->act_node, "alpha"));
    snprintf(act + strlen(act), sizeof act - strlen(act), "%s", g->bias ? ".bias" : "");
    if (g->mask)
        snprintf(act + strlen(act), sizeof act - strlen(act), ".mask%.9g", (float)g->mask_alpha);
    static const char *const rows[] = {"", ".msmall", ".mbig"};
    const char *mrows = g->tb && !g->ta ? rows[gemm_rows(g)] : "";
    snprintf(key, n, "kiln.gemm.%c%c.%s%s.b%g.w%d%s", g->ta ? 't' : 'n', g->tb ? 't' : 'n',
             cols[gemm_cols(g, 2 * W)], mrows, g->beta, W, act);
}

/* The 16-lane kernels on a host with AVX-512 whose module targets AVX2
 * (emit.c): these functions alone get the host's features. */
static void wide_features(cg_ctx *c, LLVMValueRef fn, int W) {
    if (W != 16 || has_feature(c->features, "avx512f") || !host_target(c->o)) return;
    char *host = LLVMGetHostCPUFeatures();
    LLVMAttributeRef a = LLVMCreateStringAttribute(c->ctx, "target-features", 15, host,
                                                   (unsigned)strlen(host));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
    LLVMDisposeMessage(host);
}

/* What the panel tasks share: the call's sizes and pointers. */
enum {
    CTX_M, CTX_N, CTX_K, CTX_LDA, CTX_LDB, CTX_LDC, CTX_A, CTX_B, CTX_C, CTX_BIAS, CTX_MASK,
    CTX_PANELS, CTX_RB, /* panels of columns; rows of a row block */
    CTX_FIELDS
};

/* The split into tasks (build_gemm_fn): at least GEMM_TASKS tasks where
 * there are fewer panels, with row blocks of at least GEMM_RB_MIN rows; a
 * product of fewer than GEMM_SERIAL_MAC multiply-adds runs on the caller
 * (waking a worker cost more than it), and so does every product where no
 * second thread is there (kiln_pool_width), by panels alone. Results do not
 * depend on the split: a row block computes each of its elements as the
 * whole M would (the same path, the same K order). */
enum { GEMM_TASKS = 4, GEMM_RB_MIN = 4 * GEMM_MR, GEMM_SERIAL_MAC = 1 << 18 };

static LLVMTypeRef ctx_type(cg_ctx *c) {
    LLVMTypeRef fp = LLVMPointerType(c->t_f32, 0);
    LLVMTypeRef f[CTX_FIELDS] = {c->t_i64, c->t_i64, c->t_i64, c->t_i64, c->t_i64, c->t_i64,
                                 fp,       fp,       fp,       fp,       fp,       c->t_i64,
                                 c->t_i64};
    return LLVMStructTypeInContext(c->ctx, f, CTX_FIELDS, 0);
}

static LLVMValueRef ctx_field(cg_ctx *c, LLVMValueRef ctx, int i) {
    LLVMTypeRef st = ctx_type(c);
    LLVMValueRef p = LLVMBuildStructGEP2(c->b, st, ctx, (unsigned)i, "");
    return LLVMBuildLoad2(c->b, LLVMStructGetTypeAtIndex(st, (unsigned)i), p, "");
}

/* void task(i8* ctx, i64 t): panel t mod panels of columns, row block
 * t / panels, every K block. */
static LLVMValueRef build_task_fn(cg_ctx *c, const cg_gemm_call *g, const char *name, int W) {
    LLVMTypeRef fp = LLVMPointerType(c->t_f32, 0);
    LLVMTypeRef pt[2] = {c->t_i8p, c->t_i64};
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->t_void, pt, 2, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind");
    wide_features(c, fn, W);

    gemm_gen q;
    memset(&q, 0, sizeof q);
    q.c = c;
    q.g = g;
    q.W = W;
    q.NV = 2;
    q.NR = q.NV * W;
    q.MR = GEMM_MR;
    q.vt = LLVMVectorType(c->t_f32, (unsigned)W);
    q.vti = LLVMVectorType(c->t_i32, (unsigned)W);
    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef ctx = LLVMBuildBitCast(c->b, LLVMGetParam(fn, 0), LLVMPointerType(ctx_type(c), 0), "");
    /* Sizes at run time: one function serves every K and N of a kind. */
    q.N = ctx_field(c, ctx, CTX_N);
    q.K = ctx_field(c, ctx, CTX_K);
    q.lda = ctx_field(c, ctx, CTX_LDA);
    q.ldb = ctx_field(c, ctx, CTX_LDB);
    q.ldc = ctx_field(c, ctx, CTX_LDC);
    q.B = ctx_field(c, ctx, CTX_B);
    /* The row block: rows m0 .. m0+M-1 of op(A) and C. */
    LLVMValueRef panels = ctx_field(c, ctx, CTX_PANELS), rb = ctx_field(c, ctx, CTX_RB);
    LLVMValueRef t = LLVMGetParam(fn, 1);
    LLVMValueRef m0 = mul(&q, LLVMBuildSDiv(c->b, t, panels, ""), rb);
    q.Mall = ctx_field(c, ctx, CTX_M);
    q.M = imin(&q, rb, LLVMBuildNSWSub(c->b, q.Mall, m0, ""));
    LLVMValueRef aoff = g->ta ? m0 : mul(&q, m0, q.lda);
    q.A = LLVMBuildGEP2(c->b, c->t_f32, ctx_field(c, ctx, CTX_A), &aoff, 1, "");
    LLVMValueRef coff = mul(&q, m0, q.ldc);
    q.C = LLVMBuildGEP2(c->b, c->t_f32, ctx_field(c, ctx, CTX_C), &coff, 1, "");
    q.bias = g->bias ? ctx_field(c, ctx, CTX_BIAS) : NULL;
    /* The mask has C's rows: the row block's start alike. */
    if (g->mask)
        q.mask = LLVMBuildGEP2(c->b, c->t_f32, ctx_field(c, ctx, CTX_MASK), &coff, 1, "");
    LLVMTypeRef buft = LLVMArrayType(c->t_f32, (unsigned)(GEMM_KC * q.NR));
    LLVMValueRef buf = LLVMBuildAlloca(c->b, buft, "pack");
    LLVMSetAlignment(buf, 64);
    q.buf = LLVMBuildBitCast(c->b, buf, fp, "");

    /* K == 0: no block runs; C = act(beta C + bias) is one pass of the
     * store with zero sums: a K block of length 0, which the loops allow. */
    LLVMValueRef kzero = LLVMBuildICmp(c->b, LLVMIntEQ, q.K, cg_i64(c, 0), "");
    LLVMValueRef kblocks_end = LLVMBuildSelect(c->b, kzero, cg_i64(c, 1), q.K, "");

    /* The panel's columns: with N known and a multiple of NR all full, with
     * N < NR masked; else told apart at run time (one copy of the FMA
     * loops, two of the stores). */
    q.jp = mul(&q, LLVMBuildSRem(c->b, t, panels, ""), cg_i64(c, q.NR));
    q.nc = imin(&q, cg_i64(c, q.NR), LLVMBuildNSWSub(c->b, q.N, q.jp, ""));
    q.cols = gemm_cols(g, q.NR);
    q.mrows = gemm_rows(g);
    if (q.cols == COLS_FULL) q.nc = cg_i64(c, q.NR);
    emit_panel(&q, kblocks_end);
    LLVMBuildRetVoid(c->b);
    return fn;
}

/* void gemm(M, N, K, A, lda, B, ldb, C, ldc, bias, mask): the panels of C as
 * tasks of kiln_parallel_for (codegen/pool.h), each on one thread. */
/* The function's type in the context of c. */
static LLVMTypeRef gemm_fn_type(cg_ctx *c) {
    LLVMTypeRef i64 = c->t_i64, fp = LLVMPointerType(c->t_f32, 0);
    LLVMTypeRef pt[11] = {i64, i64, i64, fp, i64, fp, i64, fp, i64, fp, fp};
    return LLVMFunctionType(c->t_void, pt, 11, 0);
}

static LLVMValueRef build_gemm_fn(cg_ctx *c, const cg_gemm_call *g, const char *name, int W) {
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, gemm_fn_type(c));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind");
    /* Called, not inlined: one copy per signature however many call
     * sites (the JIT's compile time), and a call costs nothing beside it. */
    cg_add_attr(c, fn, LLVMAttributeFunctionIndex, "noinline");

    /* Build it with the context's builder, then return to the caller. */
    LLVMValueRef saved_fn = c->fn;
    LLVMBasicBlockRef saved_bb = LLVMGetInsertBlock(c->b);
    char tname[192];
    snprintf(tname, sizeof tname, "%s.panel", name);
    LLVMValueRef task = build_task_fn(c, g, tname, W);

    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMTypeRef st = ctx_type(c);
    LLVMValueRef ctx = LLVMBuildAlloca(c->b, st, "ctx");
    static const int param_field[11] = {CTX_M, CTX_N,   CTX_K, CTX_A,   CTX_LDA,  CTX_B,
                                        CTX_LDB, CTX_C, CTX_LDC, CTX_BIAS, CTX_MASK};
    for (int i = 0; i < 11; i++)
        LLVMBuildStore(c->b, LLVMGetParam(fn, (unsigned)i),
                       LLVMBuildStructGEP2(c->b, st, ctx, (unsigned)param_field[i], ""));
    LLVMValueRef M = LLVMGetParam(fn, 0), N = LLVMGetParam(fn, 1), K = LLVMGetParam(fn, 2);
    gemm_gen q = {.c = c};
    LLVMValueRef one = cg_i64(c, 1);
    /* Panels of columns (none when N == 0; divisors are at least 1). */
    LLVMValueRef npanels = cdiv(&q, N, cg_i64(c, 2 * W)), panels = imax(&q, npanels, one);
    /* Serial: a small product, or no second thread to run it (one thread,
     * or inside a task: a convolution chunk's GEMM) — panels only then,
     * each B panel packed once. */
    LLVMValueRef small = LLVMBuildICmp(c->b, LLVMIntSLT, mul(&q, mul(&q, M, N), K),
                                       cg_i64(c, GEMM_SERIAL_MAC), "");
    LLVMValueRef width =
        cg_call_runtime(c, "kiln_pool_width", LLVMFunctionType(c->t_i64, NULL, 0, 0), NULL, 0);
    LLVMValueRef serial =
        LLVMBuildOr(c->b, small, LLVMBuildICmp(c->b, LLVMIntSLE, width, one, ""), "");
    /* Row blocks: GEMM_TASKS / panels (rounded up), at most M / GEMM_RB_MIN,
     * at least 1 (1 when serial); their rows a multiple of MR (MR when
     * M == 0). */
    LLVMValueRef want =
        LLVMBuildSelect(c->b, serial, one, cdiv(&q, cg_i64(c, GEMM_TASKS), panels), "");
    LLVMValueRef rblocks =
        imax(&q, imin(&q, want, LLVMBuildSDiv(c->b, M, cg_i64(c, GEMM_RB_MIN), "")), one);
    LLVMValueRef mr = cg_i64(c, GEMM_MR);
    LLVMValueRef rb = imax(&q, mul(&q, cdiv(&q, cdiv(&q, M, rblocks), mr), mr), mr);
    LLVMBuildStore(c->b, panels, LLVMBuildStructGEP2(c->b, st, ctx, CTX_PANELS, ""));
    LLVMBuildStore(c->b, rb, LLVMBuildStructGEP2(c->b, st, ctx, CTX_RB, ""));
    /* Tasks: panels x the row blocks M needs (none when M or N is 0). */
    LLVMValueRef ntasks = mul(&q, npanels, cdiv(&q, M, rb));
    LLVMValueRef ctx8 = LLVMBuildBitCast(c->b, ctx, c->t_i8p, "");
    LLVMBasicBlockRef b_ser = LLVMAppendBasicBlockInContext(c->ctx, fn, "serial"),
                      b_par = LLVMAppendBasicBlockInContext(c->ctx, fn, "parallel"),
                      b_ret = LLVMAppendBasicBlockInContext(c->ctx, fn, "ret");
    LLVMBuildCondBr(c->b, serial, b_ser, b_par);
    LLVMPositionBuilderAtEnd(c->b, b_ser);
    cg_loop lt;
    LLVMValueRef ti = cg_loop_begin(c, &lt, cg_i64(c, 0), ntasks, 1);
    LLVMValueRef targs[2] = {ctx8, ti};
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(task), task, targs, 2, "");
    lt.hints = GEMM_LOOP_HINTS;
    cg_loop_end(c, &lt, NULL);
    LLVMBuildBr(c->b, b_ret);
    LLVMPositionBuilderAtEnd(c->b, b_par);
    cg_parallel_for(c, task, ctx8, ntasks);
    LLVMBuildBr(c->b, b_ret);
    LLVMPositionBuilderAtEnd(c->b, b_ret);
    LLVMBuildRetVoid(c->b);

    c->fn = saved_fn;
    if (saved_bb) LLVMPositionBuilderAtEnd(c->b, saved_bb);
    return fn;
}

void cg_gemm_kiln(cg_ctx *c, const cg_gemm_call *call) {
    cg_gemm_call gc = *call;
    const cg_gemm_call *g = &gc;
    gc.m_batch = c->f && c->f->name && !strcmp(c->f->name, "train_step");
    int W = cg_gemm_width(c->o, c->features);
    char name[160];
    gemm_key(g, W, name, sizeof name);
    LLVMValueRef fn = LLVMGetNamedFunction(c->mod, name);
    if (!fn && c->kern) {
        /* Defined in the kernels' module (once), declared here. */
        if (!LLVMGetNamedFunction(c->kern->mod, name))
            LLVMSetLinkage(build_gemm_fn(c->kern, g, name, W), LLVMExternalLinkage);
        fn = LLVMAddFunction(c->mod, name, gemm_fn_type(c));
        cg_add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind");
    } else if (!fn) {
        fn = build_gemm_fn(c, g, name, W);
    }
    LLVMTypeRef fp = LLVMPointerType(c->t_f32, 0);
    LLVMValueRef args[11] = {g->M,
                             g->N,
                             g->K,
                             cg_cast_ptr(c, g->A, c->t_f32),
                             g->lda,
                             cg_cast_ptr(c, g->B, c->t_f32),
                             g->ldb,
                             cg_cast_ptr(c, g->C, c->t_f32),
                             g->ldc,
                             g->bias ? cg_cast_ptr(c, g->bias, c->t_f32) : LLVMConstNull(fp),
                             g->mask ? cg_cast_ptr(c, g->mask, c->t_f32) : LLVMConstNull(fp)};
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(fn), fn, args, 11, "");
}

LLVMValueRef cg_gemm_mask(cg_ctx *c, LLVMValueRef y, LLVMValueRef h, double alpha) {
    LLVMTypeRef t = LLVMTypeOf(y);
    LLVMValueRef above = LLVMBuildFCmp(c->b, LLVMRealOGT, h, cg_fc(c, t, 0.0), "");
    LLVMValueRef rest = alpha != 0 ? LLVMBuildFMul(c->b, y, cg_fc(c, t, (float)alpha), "")
                                   : cg_fc(c, t, 0.0);
    return LLVMBuildSelect(c->b, above, y, rest, "");
}

/* Code of the main module written for cg_gemm_width's lanes (lower_conv.c's
 * direct convolution): its function gets the host's features where the
 * kernels' do, so 16 lanes are AVX-512 registers, not pairs of ymm. */
void cg_gemm_wide_fn(cg_ctx *c, LLVMValueRef fn, int W) {
    wide_features(c, fn, W);
}

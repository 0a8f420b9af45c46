/*
 * lower_linalg.c — matmul and dense (OpenBLAS), reshape, transpose, one_hot.
 *
 * matmul is one cblas_sgemm (row-major; Debian's blasint is a 32-bit int).
 * A single output row (batch-1 inference) is a matrix-vector product: a
 * generated one when the sizes are known (emit_gemv_row), else cblas_sgemv
 * — both several times faster than a one-row GEMM. dense is the same
 * product followed by ONE epilogue loop over the output, adding the bias and
 * applying the activation while the rows are still in cache.
 */
#include "codegen/gemm.h"

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

static void declare_blas(cg_ctx *c) {
    if (c->f_sgemm) return;
    LLVMTypeRef i = c->t_i32, f = c->t_f32, p = LLVMPointerType(c->t_f32, 0);
    LLVMTypeRef gemm[14] = {i, i, i, i, i, i, f, p, i, p, i, f, p, i};
    LLVMTypeRef gemv[12] = {i, i, i, i, f, p, i, p, i, f, p, i};
    c->ty_sgemm = LLVMFunctionType(c->t_void, gemm, 14, 0);
    c->ty_sgemv = LLVMFunctionType(c->t_void, gemv, 12, 0);
    c->f_sgemm = LLVMGetNamedFunction(c->mod, "cblas_sgemm");
    if (!c->f_sgemm) c->f_sgemm = LLVMAddFunction(c->mod, "cblas_sgemm", c->ty_sgemm);
    c->f_sgemv = LLVMGetNamedFunction(c->mod, "cblas_sgemv");
    if (!c->f_sgemv) c->f_sgemv = LLVMAddFunction(c->mod, "cblas_sgemv", c->ty_sgemv);
}

static LLVMValueRef i32v(cg_ctx *c, LLVMValueRef v64) {
    return LLVMBuildTrunc(c->b, v64, c->t_i32, "");
}

/* One GEMM, row-major: C = op(A) op(B) + beta C, sizes > 0: Kiln's
 * kernel (gemm.c) or one cblas_sgemm, as the options choose. */
void cg_sgemm(cg_ctx *c, bool ta, bool tb, LLVMValueRef M, LLVMValueRef N, LLVMValueRef K,
              LLVMValueRef A, LLVMValueRef lda, LLVMValueRef B, LLVMValueRef ldb, double beta,
              LLVMValueRef C, LLVMValueRef ldc) {
    if (cg_gemm_use_kiln(c->o)) {
        cg_gemm_call g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .A = A, .lda = lda,
                          .B = B, .ldb = ldb, .C = C, .ldc = ldc, .beta = beta};
        cg_gemm_kiln(c, &g);
        return;
    }
    declare_blas(c);
    LLVMValueRef args[14] = {cg_i32(c, CBLAS_ROW_MAJOR),
                             cg_i32(c, ta ? CBLAS_TRANS : CBLAS_NO_TRANS),
                             cg_i32(c, tb ? CBLAS_TRANS : CBLAS_NO_TRANS),
                             i32v(c, M),
                             i32v(c, N),
                             i32v(c, K),
                             LLVMConstReal(c->t_f32, 1.0),
                             cg_cast_ptr(c, A, c->t_f32),
                             i32v(c, lda),
                             cg_cast_ptr(c, B, c->t_f32),
                             i32v(c, ldb),
                             LLVMConstReal(c->t_f32, beta),
                             cg_cast_ptr(c, C, c->t_f32),
                             i32v(c, ldc)};
    LLVMBuildCall2(c->b, c->ty_sgemm, c->f_sgemm, args, 14, "");
}

/* acc[v] + x[k] · W[k, j0 + 8v ..] for the nv vectors of a row's columns. */
static void gemv_step(cg_ctx *c, LLVMValueRef x, LLVMValueRef W, int64_t N, int64_t j0,
                      LLVMValueRef k, int nv, const int *lanes, const LLVMValueRef *acc,
                      LLVMValueRef *out) {
    LLVMValueRef xk = cg_load(c, c->t_f32, x, k);
    LLVMValueRef row =
        LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, k, cg_i64(c, N), ""), cg_i64(c, j0), "");
    for (int v = 0; v < nv; v++) {
        LLVMValueRef w = cg_loadv(c, c->t_f32, lanes[v], W,
                                  LLVMBuildNSWAdd(c->b, row, cg_i64(c, v * CG_VW), ""));
        out[v] = cg_fma(c, w, cg_splat(c, xk, lanes[v]), acc[v]);
    }
}

/* One output row, y[N] = x[K] . W[K,N] with K and N known: W is streamed
 * once, row by row, into up to 64 columns of accumulators held in registers
 * (8 vectors of 8; the N mod 8 last columns one narrower vector). Eight
 * FMAs in flight cover their latency: a row of fewer vectors (a 10-class
 * output layer: 2) keeps S = 8 / vectors partial sums (at most 4) over
 * interleaved k, added at the end (one chain of 1,600 dependent FMAs was 12%
 * of the convnet's batch-1 latency). About twice as fast as OpenBLAS's sgemv
 * at these sizes (batch-1 inference). */
static void emit_gemv_row(cg_ctx *c, int64_t K, int64_t N, LLVMValueRef x, LLVMValueRef W,
                          LLVMValueRef y) {
    for (int64_t j0 = 0; j0 < N; j0 += 8 * CG_VW) {
        int64_t cols = N - j0 < 8 * CG_VW ? N - j0 : 8 * CG_VW;
        int nv = (int)((cols + CG_VW - 1) / CG_VW), S = 8 / nv > 4 ? 4 : 8 / nv;
        int64_t ks = K / S * S;
        int lanes[8];
        LLVMValueRef acc[32], next[32];
        for (int v = 0; v < nv; v++) {
            lanes[v] = (int)(cols - v * CG_VW < CG_VW ? cols - v * CG_VW : CG_VW);
            for (int s = 0; s < S; s++)
                acc[s * nv + v] = cg_fc(c, cg_vec(c, c->t_f32, lanes[v]), 0.0);
        }
        if (ks > 0) {
            cg_loop l;
            LLVMValueRef k = cg_loop_begin(c, &l, cg_i64(c, 0), cg_i64(c, ks), S);
            for (int a = 0; a < S * nv; a++) acc[a] = cg_loop_phi(c, &l, acc[a]);
            for (int s = 0; s < S; s++)
                gemv_step(c, x, W, N, j0, LLVMBuildNSWAdd(c->b, k, cg_i64(c, s), ""), nv, lanes,
                          acc + s * nv, next + s * nv);
            l.hints = CG_LOOP_NO_VECTORIZE;
            cg_loop_end(c, &l, next);
            for (int a = 0; a < S * nv; a++) acc[a] = l.exits[a];
        }
        for (int64_t k = ks; k < K; k++)
            gemv_step(c, x, W, N, j0, cg_i64(c, k), nv, lanes, acc, acc);
        for (int v = 0; v < nv; v++) {
            LLVMValueRef sum = acc[v];
            for (int s = 1; s < S; s++) sum = LLVMBuildFAdd(c->b, sum, acc[s * nv + v], "");
            cg_storev(c, sum, lanes[v], y, cg_i64(c, j0 + v * CG_VW));
        }
    }
}

/* C[M,N] = op(A) . op(B), A [M,K] (or [K,M] when ta), B [K,N] (or [N,K]).
 * kc, nc: K and N when known at compile time (else < 0). */
static void emit_gemm(cg_ctx *c, bool ta, bool tb, LLVMValueRef M, LLVMValueRef N, LLVMValueRef K,
                      LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, int64_t kc, int64_t nc) {
    declare_blas(c);
    LLVMValueRef fA = cg_cast_ptr(c, A, c->t_f32), fB = cg_cast_ptr(c, B, c->t_f32);
    LLVMValueRef fC = cg_cast_ptr(c, C, c->t_f32);
    LLVMBasicBlockRef b_nonempty = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.nonempty");
    LLVMBasicBlockRef b_zero = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.k0");
    LLVMBasicBlockRef b_prod = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.prod");
    LLVMBasicBlockRef b_gemv = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.gemv");
    LLVMBasicBlockRef b_gemm = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.gemm");
    LLVMBasicBlockRef b_done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.done");
    LLVMValueRef zero = cg_i64(c, 0);
    LLVMValueRef empty = LLVMBuildOr(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, M, zero, ""),
                                     LLVMBuildICmp(c->b, LLVMIntEQ, N, zero, ""), "");
    LLVMBuildCondBr(c->b, empty, b_done, b_nonempty);
    /* K == 0: C = 0 (BLAS rejects a leading dimension of 0). */
    LLVMPositionBuilderAtEnd(c->b, b_nonempty);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, K, zero, ""), b_zero, b_prod);
    LLVMPositionBuilderAtEnd(c->b, b_zero);
    cg_memset0(c, C, LLVMBuildNSWMul(c->b, LLVMBuildNSWMul(c->b, M, N, ""), cg_i64(c, 4), ""));
    LLVMBuildBr(c->b, b_done);
    LLVMPositionBuilderAtEnd(c->b, b_prod);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, M, cg_i64(c, 1), ""), b_gemv, b_gemm);
    /* One row: `a` is contiguous either way. */
    LLVMPositionBuilderAtEnd(c->b, b_gemv);
    if (!tb && kc > 0 && nc > 0 && nc <= 4096) {
        emit_gemv_row(c, kc, nc, fA, fB, fC);
        LLVMBuildBr(c->b, b_done);
    } else if (cg_gemm_use_kiln(c->o)) {
        cg_sgemm(c, ta, tb, M, N, K, fA, ta ? M : K, fB, tb ? K : N, 0.0, fC, N);
        LLVMBuildBr(c->b, b_done);
    } else {
        LLVMValueRef args[12] = {cg_i32(c, CBLAS_ROW_MAJOR),
                                 cg_i32(c, tb ? CBLAS_NO_TRANS : CBLAS_TRANS),
                                 i32v(c, tb ? N : K),
                                 i32v(c, tb ? K : N),
                                 LLVMConstReal(c->t_f32, 1.0),
                                 fB,
                                 i32v(c, tb ? K : N),
                                 fA,
                                 cg_i32(c, 1),
                                 LLVMConstReal(c->t_f32, 0.0),
                                 fC,
                                 cg_i32(c, 1)};
        LLVMBuildCall2(c->b, c->ty_sgemv, c->f_sgemv, args, 12, "");
        LLVMBuildBr(c->b, b_done);
    }
    LLVMPositionBuilderAtEnd(c->b, b_gemm);
    cg_sgemm(c, ta, tb, M, N, K, fA, ta ? M : K, fB, tb ? K : N, 0.0, fC, N);
    LLVMBuildBr(c->b, b_done);
    LLVMPositionBuilderAtEnd(c->b, b_done);
}

kiln_status lower_matmul(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    bool ta = ir_attr_i(n, "transpose_a") != 0, tb = ir_attr_i(n, "transpose_b") != 0;
    const ir_type *a = &n->in[0]->type;
    LLVMValueRef M = cg_dim(c, n->type.dims[0]), N = cg_dim(c, n->type.dims[1]);
    LLVMValueRef K = cg_dim(c, a->dims[ta ? 0 : 1]);
    int64_t kc = a->dims[ta ? 0 : 1], nc = n->type.dims[1];
    emit_gemm(c, ta, tb, M, N, K, in[0], in[1], out, kc == KILN_BATCH ? -1 : kc,
              nc == KILN_BATCH ? -1 : nc);
    return KILN_OK;
}

/* The mask over the whole product when the GEMM is OpenBLAS's: one more
 * pass over C. */
typedef struct mask_pass {
    LLVMValueRef y, h;
    double alpha;
} mask_pass;

static LLVMValueRef mask_body(cg_ctx *c, void *vctx, LLVMValueRef j, int w) {
    mask_pass *e = vctx;
    LLVMValueRef v = cg_gemm_mask(c, cg_loadv(c, c->t_f32, w, e->y, j),
                                  cg_loadv(c, c->t_f32, w, e->h, j), e->alpha);
    cg_storev(c, v, w, e->y, j);
    return NULL;
}

kiln_status lower_matmul_mask(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                              const LLVMValueRef *in) {
    double alpha = ir_attr_f(n, "alpha");
    if (cg_gemm_use_kiln(c->o)) {
        /* The mask at the store: C written once, every M (no one-row path). */
        bool ta = ir_attr_i(n, "transpose_a") != 0, tb = ir_attr_i(n, "transpose_b") != 0;
        LLVMValueRef M = cg_dim(c, n->type.dims[0]), N = cg_dim(c, n->type.dims[1]);
        LLVMValueRef K = cg_dim(c, n->in[0]->type.dims[ta ? 0 : 1]);
        cg_gemm_call g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .A = in[0],
                          .lda = ta ? M : K, .B = in[1], .ldb = tb ? K : N, .C = out, .ldc = N,
                          .mask = in[2], .mask_alpha = alpha};
        cg_gemm_kiln(c, &g);
        return KILN_OK;
    }
    kiln_status st = lower_matmul(c, n, out, in);
    if (st) return st;
    mask_pass e = {cg_cast_ptr(c, out, c->t_f32), cg_cast_ptr(c, in[2], c->t_f32), alpha};
    cg_row_loop(c, cg_numel(c, &n->type), CG_RED_NONE, mask_body, &e);
    return KILN_OK;
}

/* The activation is an op (IR_FACT_ACT): its scalar lowering runs on the
 * vector of the row, with dense's node for its attributes (alpha). */
typedef struct epilogue {
    LLVMValueRef y, bias; /* y at the row */
    const ir_node *n;
    cg_scalar_fn act; /* NULL: none */
} epilogue;

static LLVMValueRef epilogue_body(cg_ctx *c, void *vctx, LLVMValueRef j, int w) {
    epilogue *e = vctx;
    LLVMValueRef v = LLVMBuildFAdd(c->b, cg_loadv(c, c->t_f32, w, e->y, j),
                                   cg_loadv(c, c->t_f32, w, e->bias, j), "");
    if (e->act) v = e->act(c, e->n, &v);
    cg_storev(c, v, w, e->y, j);
    return NULL;
}

kiln_status lower_dense(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    LLVMValueRef M = cg_dim(c, n->type.dims[0]), N = cg_dim(c, n->type.dims[1]);
    LLVMValueRef K = cg_dim(c, n->in[0]->type.dims[1]);
    int64_t kc = n->in[0]->type.dims[1], nc = n->type.dims[1];
    int act = (int)ir_attr_i(n, "activation");
    LLVMBasicBlockRef b_done = NULL;
    if (cg_gemm_use_kiln(c->o)) {
        /* Kiln's kernel with the epilogue fused: bias and activation
         * applied to the sums in registers, C written once. One row
         * (batch-1 inference) takes the matrix-vector path below, which
         * needs no packing. */
        LLVMBasicBlockRef b_gemm = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "dense.gemm");
        LLVMBasicBlockRef b_row = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "dense.row");
        b_done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "dense.done");
        LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, M, cg_i64(c, 1), ""), b_row, b_gemm);
        LLVMPositionBuilderAtEnd(c->b, b_gemm);
        cg_gemm_call g = {.M = M, .N = N, .K = K, .A = in[0], .lda = K, .B = in[1], .ldb = N,
                          .C = out, .ldc = N, .bias = in[2], .act_node = n, .act = act};
        cg_gemm_kiln(c, &g);
        LLVMBuildBr(c->b, b_done);
        LLVMPositionBuilderAtEnd(c->b, b_row);
    }
    emit_gemm(c, false, false, M, N, K, in[0], in[1], out, kc == KILN_BATCH ? -1 : kc,
              nc == KILN_BATCH ? -1 : nc);
    /* The epilogue: y = act(y + b), row by row, in explicit 8-wide vectors
     * (rows of 10 would otherwise be unrolled and vectorized across rows). */
    LLVMValueRef y = cg_cast_ptr(c, out, c->t_f32);
    epilogue e = {NULL, cg_cast_ptr(c, in[2], c->t_f32), n, act ? cg_scalar_lowering(act) : NULL};
    cg_loop li;
    LLVMValueRef i = cg_loop_begin(c, &li, cg_i64(c, 0), M, 1);
    e.y = cg_gep(c, c->t_f32, y, LLVMBuildNSWMul(c->b, i, N, ""));
    cg_row_loop(c, N, CG_RED_NONE, epilogue_body, &e);
    cg_loop_end(c, &li, NULL);
    if (b_done) {
        LLVMBuildBr(c->b, b_done);
        LLVMPositionBuilderAtEnd(c->b, b_done);
    }
    return KILN_OK;
}

/* Reached only when the layout could not make the reshape a view. */
kiln_status lower_reshape(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    LLVMValueRef bytes = LLVMBuildNSWMul(c->b, cg_numel(c, &n->type), cg_i64(c, 4), "");
    cg_memmove(c, out, in[0], bytes);
    return KILN_OK;
}

kiln_status lower_transpose(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    const ir_type *x = &n->in[0]->type;
    int r = x->rank;
    LLVMTypeRef et = cg_elem_type(c, x->dtype);
    LLVMValueRef xp = cg_cast_ptr(c, in[0], et), yp = cg_cast_ptr(c, out, et);
    LLVMValueRef xstride[KILN_MAX_RANK];
    cg_row_major_strides(c, x, xstride);
    /* Walk the output in order; the input offset follows the permutation. */
    const int64_t *perm;
    ir_attr_ints(n, "perm", &perm);
    cg_loop loops[KILN_MAX_RANK];
    LLVMValueRef xo = cg_i64(c, 0), yo = cg_i64(c, 0);
    for (int a = 0; a < r; a++) {
        LLVMValueRef od = cg_dim(c, n->type.dims[a]);
        LLVMValueRef i = cg_loop_begin(c, &loops[a], cg_i64(c, 0), od, 1);
        xo = LLVMBuildNSWAdd(c->b, xo, LLVMBuildNSWMul(c->b, i, xstride[perm[a]], ""), "");
        yo = LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, yo, od, ""), i, "");
    }
    cg_store(c, cg_load(c, et, xp, xo), yp, yo);
    for (int a = r - 1; a >= 0; a--) cg_loop_end(c, &loops[a], NULL);
    return KILN_OK;
}

kiln_status lower_one_hot(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    LLVMValueRef rows = cg_numel(c, &n->in[0]->type);
    LLVMValueRef depth = cg_i64(c, ir_attr_i(n, "depth"));
    LLVMValueRef lp = cg_cast_ptr(c, in[0], c->t_i32), yp = cg_cast_ptr(c, out, c->t_f32);
    cg_loop li, lj;
    LLVMValueRef i = cg_loop_begin(c, &li, cg_i64(c, 0), rows, 1);
    LLVMValueRef lab = LLVMBuildSExt(c->b, cg_load(c, c->t_i32, lp, i), c->t_i64, "");
    LLVMValueRef row = LLVMBuildNSWMul(c->b, i, depth, "");
    LLVMValueRef j = cg_loop_begin(c, &lj, cg_i64(c, 0), depth, 1);
    /* An out-of-range label matches no j: a zero row, as in the interpreter. */
    LLVMValueRef hit = LLVMBuildICmp(c->b, LLVMIntEQ, j, lab, "");
    LLVMValueRef v =
        LLVMBuildSelect(c->b, hit, cg_fc(c, c->t_f32, 1.0), cg_fc(c, c->t_f32, 0.0), "");
    cg_store(c, v, yp, LLVMBuildNSWAdd(c->b, row, j, ""));
    cg_loop_end(c, &lj, NULL);
    cg_loop_end(c, &li, NULL);
    return KILN_OK;
}

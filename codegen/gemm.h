/*
 * gemm.h — Kiln's own GEMM: packed, register-blocked micro-kernels
 * generated as LLVM IR (gemm.c), the other backend of cg_sgemm beside
 * OpenBLAS. Internal to codegen/.
 *
 *   C[M,N] = mask(act(op(A) . op(B) + beta C + bias))       row-major, f32
 *
 * op(A) is A [M,K] (lda >= K) or, transposed, A [K,M] (lda >= M); op(B) is
 * B [K,N] or, transposed, B [N,K]. Each call site gets (or shares, when
 * alike) one function specialized to the transposes, whether N's panels
 * are all full, one masked, or told apart at run time, beta, the epilogue
 * and the vector width; M, N and K are run-time values (the seed step's 8
 * GEMMs share 5 functions). In the JIT the functions go to a module of
 * their own, optimized with a short pipeline on a second thread
 * (cg_build_modules, cg_compile_kernels). Its loops, outermost first:
 *
 *   for each panel of NR columns of C (the last one masked), a task of
 *   kiln_parallel_for (pool.h) — one thread computes all of it:
 *     transposed B [N,K] with M <= MR (batch 1, tiny batches): no packing;
 *     for each row of C, each W columns: W dot products along K (vectors of
 *     A's row and of B's rows, masked K rest), reduced by shuffles to one
 *     vector; then the store (13x a packed panel's speed at M=1, N=128,
 *     K=64). Otherwise:
 *     for each block of KC rows of B:
 *       pack B[kb.., jp..] into a KC x NR buffer on the stack (transposed
 *       B: W x W blocks transposed in registers by shufflevector)
 *       for each tile of MR rows of C:     (one loop; the last, M mod MR rows, a
 *                                           tile of MR whose extra rows read C's
 *                                           last and are not stored)
 *         MR x NR accumulators in registers, one FMA per (row, vector) per k,
 *         A read in place (a broadcast per row and k; transposed A: rows adjacent)
 *         store: + beta C (+ the earlier K blocks), then bias and activation
 *
 * Register blocks: 6 x 16 for 8-wide AVX2 (12 accumulators, 2 vectors of
 * B, 1 broadcast: 15 of 16 ymm), 6 x 32 for 16-wide AVX-512, 6 x 8 for the
 * portable 4-wide fallback (llvm.fmuladd, so no FMA unit is assumed).
 */
#ifndef KILN_CODEGEN_GEMM_H
#define KILN_CODEGEN_GEMM_H

#include "codegen/lower.h"

/* One GEMM call. Pointers may be i8* or f32*; sizes and leading dimensions
 * are i64 values (constants where known: they specialize the kernel). */
typedef struct cg_gemm_call {
    bool ta, tb;
    LLVMValueRef M, N, K;
    LLVMValueRef A, lda, B, ldb, C, ldc;
    double beta;
    /* The epilogue, applied once to the final sums: + bias[N] (NULL: none),
     * then the activation op of `act_node` (dense's, with its alpha), if any. */
    LLVMValueRef bias;
    const ir_node *act_node;
    int act;
    /* Then, with `mask` (NULL: none; f32 [M,N] with C's leading dimension):
     * each sum where mask <= 0 (or NaN) becomes 0, or mask_alpha times
     * itself when mask_alpha != 0 (matmul_mask: relu's and leaky_relu's
     * derivative applied at the store). */
    LLVMValueRef mask;
    double mask_alpha;
    /* Set by cg_gemm_kiln: a dynamic M is the training batch (the train
     * step's GEMMs), so no small-M path is built for it. */
    bool m_batch;
} cg_gemm_call;

/* y where h > 0, else 0 (alpha 0) or alpha y: matmul_mask's mask on
 * scalars or vectors y, h of one type. */
LLVMValueRef cg_gemm_mask(cg_ctx *c, LLVMValueRef y, LLVMValueRef h, double alpha);

/* Emits a call of Kiln's kernel for `g` at c->b (every size >= 0; K == 0
 * with beta == 0 writes act(bias) or zeros). */
void cg_gemm_kiln(cg_ctx *c, const cg_gemm_call *g);

/* The vector width Kiln's kernels use for `o` with the module's target
 * features: o->gemm_width if set, else KILN_GEMM_WIDTH from the environment
 * (4, 8 or 16), else 16 where the host has AVX-512 and the target is the
 * host, 8 with AVX2, 4 otherwise. */
int cg_gemm_width(const cg_options *o, const char *features);

/* Whether GEMMs compiled with `o` use Kiln's kernel (else OpenBLAS):
 * o->gemm, else KILN_GEMM from the environment, else the rule of README
 * "GEMM backends" (Kiln's kernel for every GEMM). */
bool cg_gemm_use_kiln(const cg_options *o);

/* Gives fn, a function of c's module written for W lanes (cg_gemm_width),
 * the host's features where Kiln's kernels get them (W == 16 on an AVX-512
 * host whose module targets AVX2, emit.c); else nothing. */
void cg_gemm_wide_fn(cg_ctx *c, LLVMValueRef fn, int W);

#endif

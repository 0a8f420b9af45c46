/*
 * lower.h — what the lowering files of codegen/ share: the lowering context,
 * buffer layout, and small emitters (constants, loads, loops, row reductions,
 * the math library). Internal to codegen/.
 */
#ifndef KILN_CODEGEN_LOWER_H
#define KILN_CODEGEN_LOWER_H

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>

#include "codegen/cg.h"

/* Vector width of explicitly vectorized loops (AVX2: 8 floats). */
#define CG_VW 8

/* Where a value's data lives; its address is base(kind, index) + a + b*batch,
 * base being args[index], results[index], globals[index] or the workspace. */
typedef enum cg_buf_kind {
    CG_BUF_NONE,
    CG_BUF_ARG,
    CG_BUF_RESULT,
    CG_BUF_GLOBAL,
    CG_BUF_WS
} cg_buf_kind;

typedef struct cg_buf {
    int8_t kind;
    int32_t index;
    int64_t a, b;
    int64_t size_fixed, size_ps; /* bytes: size_fixed + size_ps * batch */
} cg_buf;

bool cg_buf_same(const cg_buf *x, const cg_buf *y);
/* Whether the byte ranges of x and y can overlap for some batch >= 0. */
bool cg_buf_may_overlap(const cg_buf *x, const cg_buf *y);

/* Layout of one function (layout.c): where plan-memory put everything. */
typedef struct cg_layout {
    cg_buf *buf;    /* by serial: where each value lives */
    uint8_t *split; /* by serial of a fused node: run its body node by node */
    cg_buf *buf2;   /* by serial of a body node of a split region: its temp */
    int64_t ws_fixed, ws_per_sample;
    cg_buf err; /* the error record */
    int limit;
} cg_layout;

/* An error (KILN_ERR_INVALID) for a function plan-memory has not planned. */
kiln_status cg_layout_func(kiln_func *f, cg_layout *l, kiln_diag *d);
void cg_layout_free(cg_layout *l);
/* Whether one loop over fused node n would read an element after writing
 * over it, given where its buffers are (see ew.c). plan-memory avoids it,
 * so layout.c only checks a plan with it. */
bool cg_region_needs_split(const ir_node *n, const cg_buf *buf);
/* Node n's workspace (plan-memory's slot for ops.def's ws column): its
 * fixed part, or with per_sample its per-sample part; CG_BUF_NONE if none. */
cg_buf cg_node_ws_buf(const kiln_func *f, const ir_node *n, bool per_sample);

typedef struct cg_loops cg_loops; /* identical loops (outline.c) */

struct cg_ctx {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b; /* positioned in the kernel being built */
    LLVMTypeRef t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_f64, t_i8p;
    const cg_options *o;
    kiln_diag *d;
    kiln_module *m;
    kiln_func *f;
    const cg_layout *lay;
    /* The kernel being built. */
    LLVMValueRef fn, batch, err;
    const ir_node *node;
    bool can_fail;
    LLVMValueRef *temps; /* by serial: region temps (split regions) */
    LLVMValueRef ws, wsb; /* the kernel's workspace, fixed and per-sample parts, or NULL */
    /* Per-element values of region bodies, by serial. */
    LLVMValueRef *val;
    int limit;
    /* Declarations of the external functions the code calls. */
    LLVMValueRef f_sgemm, f_sgemv;
    LLVMTypeRef ty_sgemm, ty_sgemv;
    const char *cpu, *features;
    cg_loops *loops; /* outline.c */
    /* Where Kiln's GEMM kernels are built (gemm.c): the current node's
     * module of kernels, in another LLVM context (cg_build_modules),
     * declared in this one; NULL: this module. */
    struct cg_ctx *kern;
};

/* ----------------------------------------------------------- helpers */

LLVMTypeRef cg_vec(cg_ctx *c, LLVMTypeRef elem, int width);
/* The i32 type with the shape of `fty` (float or <N x float>). */
LLVMTypeRef cg_int_like(cg_ctx *c, LLVMTypeRef fty);
/* A run-time scalar broadcast to a vector of w lanes (w == 1: itself). */
LLVMValueRef cg_splat(cg_ctx *c, LLVMValueRef s, int w);
/* Constants of type `ty` (scalar or splatted vector). */
LLVMValueRef cg_fc(cg_ctx *c, LLVMTypeRef ty, double v);
LLVMValueRef cg_ic(cg_ctx *c, LLVMTypeRef ty, long long v);
LLVMValueRef cg_i64(cg_ctx *c, long long v);
LLVMValueRef cg_i32(cg_ctx *c, long long v);
/* Calls intrinsic `name` overloaded on `ty`. */
LLVMValueRef cg_intrinsic(cg_ctx *c, const char *name, LLVMTypeRef ty, LLVMValueRef *args, int n);
LLVMValueRef cg_fma(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc);

LLVMTypeRef cg_elem_type(cg_ctx *c, int dtype); /* IR_F32 -> float, IR_I32 -> i32 */
/* An i8* buffer pointer viewed as `elem`* . */
LLVMValueRef cg_cast_ptr(cg_ctx *c, LLVMValueRef p, LLVMTypeRef elem);
LLVMValueRef cg_gep(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef typed_ptr, LLVMValueRef idx);
LLVMValueRef cg_load(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef typed_ptr, LLVMValueRef idx);
void cg_store(cg_ctx *c, LLVMValueRef v, LLVMValueRef typed_ptr, LLVMValueRef idx);
/* <width x elem> at typed_ptr[idx] (align 4); width 1 is a scalar access. */
LLVMValueRef cg_loadv(cg_ctx *c, LLVMTypeRef elem, int width, LLVMValueRef typed_ptr,
                      LLVMValueRef idx);
void cg_storev(cg_ctx *c, LLVMValueRef v, int width, LLVMValueRef typed_ptr, LLVMValueRef idx);
/* Bytes to copy with llvm.memmove. */
void cg_memmove(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef bytes);
void cg_memset0(cg_ctx *c, LLVMValueRef dst, LLVMValueRef bytes);

/* Number of elements of `t` with the kernel's batch. */
LLVMValueRef cg_numel(cg_ctx *c, const ir_type *t);
LLVMValueRef cg_dim(cg_ctx *c, int64_t dim); /* a dim, '?' -> batch */
/* stride[a] of `t` laid out row-major, in elements ('?' -> batch). */
void cg_row_major_strides(cg_ctx *c, const ir_type *t, LLVMValueRef *stride);

/* A call of the runtime's function `name` (declared in the module on first
 * use): the JIT binds it (jit.c), a .so links it from the support archive. */
LLVMValueRef cg_call_runtime(cg_ctx *c, const char *name, LLVMTypeRef fty, LLVMValueRef *args,
                             unsigned n);
/* kiln_parallel_for(task, ctx, n) (pool.h): task is a void (i8*, i64)
 * function of the module, ctx an i8*. */
void cg_parallel_for(cg_ctx *c, LLVMValueRef task, LLVMValueRef ctx, LLVMValueRef n);

/* Counted loops: for (i = start; i < end; i += step). Blocks created in
 * the current function; the builder is left in the body. Loop-carried values
 * are phis made with cg_loop_phi and closed by cg_loop_end. */
enum { CG_LOOP_NO_VECTORIZE = 1, CG_LOOP_NO_UNROLL = 2 };

typedef struct cg_loop {
    LLVMBasicBlockRef guard, body, exit, latch;
    int hints; /* CG_LOOP_*, set before cg_loop_end: loop metadata */
    LLVMValueRef i, end, step;
    LLVMValueRef phis[32], inits[32]; /* 32: a GEMM tile's accumulators (gemm.c) */
    int n_phis;
    LLVMValueRef exits[32]; /* after cg_loop_end: the values after the loop */
} cg_loop;

LLVMValueRef cg_loop_begin(cg_ctx *c, cg_loop *l, LLVMValueRef start, LLVMValueRef end,
                           long long step);
LLVMValueRef cg_loop_phi(cg_ctx *c, cg_loop *l, LLVMValueRef init);
/* nexts[k]: the value of phi k for the next iteration. */
void cg_loop_end(cg_ctx *c, cg_loop *l, const LLVMValueRef *nexts);

/* The workspace of the node being lowered (i8*, 64-byte aligned): the
 * bytes its row's ws column asks for, placed by plan-memory and live only
 * while the node runs. Its fixed part when it has one, else its per-sample
 * part (cg_node_ws_batch: always the per-sample part, fixed + per_sample *
 * batch bytes in all being ws's fixed bytes plus wsb's per_sample * batch).
 * NULL for a node whose op needs none. */
LLVMValueRef cg_node_ws(cg_ctx *c, const ir_node *n);
LLVMValueRef cg_node_ws_batch(cg_ctx *c, const ir_node *n);

/* if (cond) { write the error record; return status; } — in the kernel. */
void cg_fail_if(cg_ctx *c, LLVMValueRef cond, kiln_status status, LLVMValueRef detail);

/* Row reductions over [0, len) with explicit <8 x float> vectors and four
 * independent accumulators (LLVM 14's C API cannot mark an fadd
 * reassociable, so the partial sums are written out). `body` returns the
 * value to fold in for the elements at idx (width CG_VW or 1) and may store. */
typedef enum cg_red { CG_RED_NONE, CG_RED_SUM, CG_RED_MAX } cg_red;
typedef LLVMValueRef (*cg_row_body)(cg_ctx *c, void *ctx, LLVMValueRef idx, int width);
LLVMValueRef cg_row_loop(cg_ctx *c, LLVMValueRef len, cg_red kind, cg_row_body body, void *ctx);
/* Folds two values (scalars or vectors) of a reduction. */
LLVMValueRef cg_red_combine(cg_ctx *c, cg_red kind, LLVMValueRef acc, LLVMValueRef v);

/* One cblas_sgemm, row-major: C = op(A) op(B) + beta C, every size > 0
 * (lower_linalg.c). Pointers may be i8* or f32*. */
void cg_sgemm(cg_ctx *c, bool ta, bool tb, LLVMValueRef M, LLVMValueRef N, LLVMValueRef K,
              LLVMValueRef A, LLVMValueRef lda, LLVMValueRef B, LLVMValueRef ldb, double beta,
              LLVMValueRef C, LLVMValueRef ldc);

/* ------------------------------------------------------ math (math.c)
 * Branch-free and vectorizable; x may be float or <N x float>. Bounds are
 * measured against glibc over the float range in test_codegen.c. */
LLVMValueRef cg_exp(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_log(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_tanh(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_sigmoid(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_erf(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_log1p_pos(cg_ctx *c, LLVMValueRef e); /* log(1 + e), e >= 0 */
LLVMValueRef cg_pow(cg_ctx *c, LLVMValueRef x, double e);
LLVMValueRef cg_isnan(cg_ctx *c, LLVMValueRef x);
/* x < 0 ? alpha * x : x (relu when alpha == 0) — NaN passes, like ir/. */
LLVMValueRef cg_relu(cg_ctx *c, LLVMValueRef x, double alpha, bool leaky);
/* The activation of dense (kiln_activation), applied to x. */

/* --------------------------------------------- elementwise loops (ew.c) */

/* One loop over `domain` evaluating `body` per element: reads of the region
 * operands cap[k] from cap_ptr[k] with broadcast strides, assigns stored in
 * place, the yield stored to `out`. */
kiln_status cg_ew_loop(cg_ctx *c, const ir_type *domain, int n_body, ir_node *const *body,
                       const ir_node *yield, LLVMValueRef out, int n_cap, ir_node *const *cap,
                       const LLVMValueRef *cap_ptr);
/* The loop nest of an elementwise loop, from types alone: its streams
 * (distinct (buffer, type) pairs; cap_id[k] names capture k's buffer, equal
 * ids for one buffer, out_id the output's), and the axes left after
 * dropping size-1 axes and merging neighbours on which every stream is
 * alike: axis a has fixed[a] * batch^nbatch[a] elements, and stream i
 * advances on it when real[i][a]. Two loops with equal shapes up to
 * fixed/nbatch are the same code with other lengths (outline.c). */
enum { CG_EW_MAX_STREAMS = 72 };
typedef struct cg_ew_shape {
    int ns, nc;
    int id[CG_EW_MAX_STREAMS], src[CG_EW_MAX_STREAMS]; /* src: capture index, -1: out */
    ir_type type[CG_EW_MAX_STREAMS];
    int cap_stream[CG_EW_MAX_STREAMS], out_stream;
    int64_t fixed[KILN_MAX_RANK];
    int8_t nbatch[KILN_MAX_RANK];
    bool real[CG_EW_MAX_STREAMS][KILN_MAX_RANK];
} cg_ew_shape;
kiln_status cg_ew_shape_of(const ir_type *dom, int n_cap, ir_node *const *cap, const int *cap_id,
                           const ir_type *out_t, int out_id, cg_ew_shape *s);
/* The length of axis `axis` of `s`, built with `b` from `batch`. */
LLVMValueRef cg_ew_size(cg_ctx *c, LLVMBuilderRef b, LLVMValueRef batch, const cg_ew_shape *s,
                        int axis);
/* cg_ew_loop with the axis lengths given (sizes[0..nc) of the shape), or
 * computed from the types (sizes == NULL). */
kiln_status cg_ew_loop_sized(cg_ctx *c, const ir_type *domain, int n_body, ir_node *const *body,
                             const ir_node *yield, LLVMValueRef out, int n_cap,
                             ir_node *const *cap, const LLVMValueRef *cap_ptr,
                             const LLVMValueRef *sizes);
/* The loop domain of an EW node (its type) or of a fused region. */
kiln_status cg_ew_domain(const ir_node *n, ir_type *dom);
/* The scalar emitter of an EW op. */
typedef LLVMValueRef (*cg_scalar_fn)(cg_ctx *c, const ir_node *n, LLVMValueRef *x);
cg_scalar_fn cg_scalar_lowering(int op);
typedef kiln_status (*cg_node_fn)(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                  const LLVMValueRef *in);
cg_node_fn cg_node_lowering(int op);

/* ------------------------------------------------- kernels (module.c) */

enum { CG_MAX_PARAMS = 200 };

/* The buffers of one node's kernel: each distinct buffer is one parameter. */
typedef struct cg_kernel_plan {
    cg_buf bufs[CG_MAX_PARAMS];
    bool noalias[CG_MAX_PARAMS]; /* overlaps no other parameter */
    int n;
    int out; /* parameter index, -1 if none */
    int in[CG_MAX_PARAMS];
    int temp[CG_MAX_PARAMS]; /* split regions: by body index */
    int ws, wsb;             /* the node's workspace, -1 if none */
} cg_kernel_plan;

/* Function attributes of a kernel, and noalias/nocapture on its buffers
 * (parameters 2.. of the LLVM function). */
void cg_kernel_attrs(cg_ctx *c, LLVMValueRef fn, const cg_kernel_plan *kp);
/* Enum attribute `name` at index idx (LLVMAttributeFunctionIndex, 1 + param). */
void cg_add_attr(cg_ctx *c, LLVMValueRef fn, unsigned idx, const char *name);

/* ------------------------------------- identical loops (outline.c) */

/* Kernels of a module shared by identical loops. */
void cg_loops_free(cg_loops *t);
/* Counts one use of `key` in the function being built (after
 * cg_loops_new_func); keys used twice get a shared function. */
kiln_status cg_loops_count(cg_ctx *c, const char *key);
void cg_loops_new_func(cg_ctx *c);
/* Whether node n's kernel (planned as kp) is one elementwise loop; then
 * appends its key to `key` and sets its loop shape. */
bool cg_loop_key(cg_ctx *c, const ir_node *n, const cg_kernel_plan *kp, ir_sb *key,
                 cg_ew_shape *sh);
/* If `key` has (or deserves) a shared function: builds it once and emits
 * a call with `b` (batch, err, the kernel's buffers bufs[0..kp->n), the
 * axis lengths); *done says whether it did. */
kiln_status cg_loop_call(cg_ctx *c, const ir_node *n, const cg_kernel_plan *kp, const char *key,
                         const cg_ew_shape *sh, LLVMBuilderRef b, LLVMValueRef batch,
                         LLVMValueRef err, const LLVMValueRef *bufs, bool *done);

/* Reports an LLVM error (consumed) as KILN_ERR_BACKEND: "codegen: what: msg". */
kiln_status cg_llvm_error(kiln_diag *d, const char *what, LLVMErrorRef err);
/* Error in the lowering of node n (KILN_ERR_BACKEND). */
kiln_status cg_error(cg_ctx *c, const ir_node *n, const char *fmt, ...) KILN_PRINTF(3, 4);

#endif

/*
 * lower_conv.c — conv2d, its input and filter gradients, and 2-D pooling
 * (ir/conv.c has the geometry and the interpreter's kernels).
 *
 * conv2d: a direct convolution in registers, vectorized over the output
 * channels, bias and activation applied before the store ("direct, in
 * registers" below: no column buffer; it beat im2col + Kiln's GEMM at every
 * shape measured, bench/RESULTS.md). Its gradients: im2col + sgemm
 * (cg_sgemm) over chunks of output pixels wherever the column buffer fits
 * (below), otherwise, and for pooling, direct loops over NHWC: for every
 * output pixel, only the window taps that fall inside the image are visited
 * (their range is computed, not tested tap by tap), and the innermost loop
 * runs over contiguous channels in explicit 8-wide vectors (cg_row_loop):
 * a dot product over out-channels for the input gradient, out-channels for
 * the filter gradient, channels for pooling.
 */
#include "codegen/lower.h"
#include "codegen/gemm.h"
#include "codegen/task.h"
#include "ir/conv.h"

#include <string.h>

static LLVMValueRef mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildNSWMul(c->b, a, b, "");
}
static LLVMValueRef add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildNSWAdd(c->b, a, b, "");
}
static LLVMValueRef imax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, a, b, ""), a, b, "");
}
static LLVMValueRef imin(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, b, ""), a, b, "");
}

/* The taps k of output position o whose input o·s - pad + k·d lies in
 * [0, in): k in [*lo, *hi). Returns o·s - pad. */
static LLVMValueRef tap_range(cg_ctx *c, LLVMValueRef o, int64_t s, int64_t d, int64_t pad,
                              int64_t in, int64_t k, LLVMValueRef *lo, LLVMValueRef *hi) {
    LLVMValueRef base = LLVMBuildNSWSub(c->b, mul(c, o, cg_i64(c, s)), cg_i64(c, pad), "");
    LLVMValueRef neg = LLVMBuildNSWSub(c->b, cg_i64(c, d - 1), base, ""); /* -base + d - 1 */
    *lo = imax(c, LLVMBuildSDiv(c->b, neg, cg_i64(c, d), ""), cg_i64(c, 0));
    LLVMValueRef up = LLVMBuildNSWSub(c->b, cg_i64(c, in + d - 1), base, "");
    *hi = imin(c, LLVMBuildSDiv(c->b, up, cg_i64(c, d), ""), cg_i64(c, k));
    return base;
}

/* The loops over batch, output rows and columns, then the valid taps:
 * opens them, leaving the builder in the innermost body. */
typedef struct win_loops {
    ir_win g;
    cg_loop lb, ly, lx, lky, lkx;
    LLVMValueRef b, oy, ox, ky, kx, iy, ix;
    LLVMValueRef yoff, xoff, koff; /* element offsets: output pixel, input pixel, kernel tap */
    LLVMValueRef b0, b1;           /* the images, [0, n) when NULL */
} win_loops;

static void pixels_begin(cg_ctx *c, win_loops *w) {
    ir_win *g = &w->g;
    w->b = w->b0 ? cg_loop_begin(c, &w->lb, w->b0, w->b1, 1)
                 : cg_loop_begin(c, &w->lb, cg_i64(c, 0), cg_dim(c, g->n), 1);
    w->oy = cg_loop_begin(c, &w->ly, cg_i64(c, 0), cg_i64(c, g->oh), 1);
    w->ox = cg_loop_begin(c, &w->lx, cg_i64(c, 0), cg_i64(c, g->ow), 1);
    LLVMValueRef pix = add(c, mul(c, add(c, mul(c, w->b, cg_i64(c, g->oh)), w->oy), cg_i64(c, g->ow)), w->ox);
    w->yoff = mul(c, pix, cg_i64(c, g->co));
}

static void taps_begin(cg_ctx *c, win_loops *w) {
    ir_win *g = &w->g;
    LLVMValueRef lo, hi;
    LLVMValueRef by = tap_range(c, w->oy, g->sh, g->dh, g->pt, g->h, g->kh, &lo, &hi);
    w->ky = cg_loop_begin(c, &w->lky, lo, hi, 1);
    w->iy = add(c, by, mul(c, w->ky, cg_i64(c, g->dh)));
    LLVMValueRef bx = tap_range(c, w->ox, g->sw, g->dw, g->pl, g->w, g->kw, &lo, &hi);
    w->kx = cg_loop_begin(c, &w->lkx, lo, hi, 1);
    w->ix = add(c, bx, mul(c, w->kx, cg_i64(c, g->dw)));
    LLVMValueRef row = add(c, mul(c, w->b, cg_i64(c, g->h)), w->iy);
    w->xoff = mul(c, add(c, mul(c, row, cg_i64(c, g->w)), w->ix), cg_i64(c, g->c));
    LLVMValueRef tapk = add(c, mul(c, w->ky, cg_i64(c, g->kw)), w->kx);
    w->koff = mul(c, tapk, cg_i64(c, g->c * g->co));
}

static void taps_end(cg_ctx *c, win_loops *w) {
    cg_loop_end(c, &w->lkx, NULL);
    cg_loop_end(c, &w->lky, NULL);
}

static void pixels_end(cg_ctx *c, win_loops *w) {
    cg_loop_end(c, &w->lx, NULL);
    cg_loop_end(c, &w->ly, NULL);
    cg_loop_end(c, &w->lb, NULL);
}

static void zero(cg_ctx *c, LLVMValueRef p, const ir_type *t) {
    cg_memset0(c, p, mul(c, cg_numel(c, t), cg_i64(c, 4)));
}

/* ------------------------------------------------------------ row bodies */

typedef struct row {
    LLVMValueRef acc, src, dst; /* typed f32 pointers at the row's start */
    LLVMValueRef s;             /* a scalar factor */
    const ir_node *n;
    cg_scalar_fn act;
    cg_red kind;
} row;

/* acc[j] += s · src[j] */
static LLVMValueRef axpy_body(cg_ctx *c, void *v, LLVMValueRef j, int w) {
    row *r = v;
    LLVMValueRef y = cg_loadv(c, c->t_f32, w, r->acc, j);
    y = cg_fma(c, cg_loadv(c, c->t_f32, w, r->src, j), cg_splat(c, r->s, w), y);
    cg_storev(c, y, w, r->acc, j);
    return NULL;
}

/* src[j] · dst[j], summed */
static LLVMValueRef dot_body(cg_ctx *c, void *v, LLVMValueRef j, int w) {
    row *r = v;
    return LLVMBuildFMul(c->b, cg_loadv(c, c->t_f32, w, r->src, j),
                         cg_loadv(c, c->t_f32, w, r->dst, j), "");
}

static LLVMValueRef at(cg_ctx *c, LLVMValueRef p, LLVMValueRef off) {
    return cg_gep(c, c->t_f32, p, off);
}

/* --------------------------------------------------------------- conv2d */

/* dx[pixel][ci] += dz[out pixel] · K[tap][ci][:] */
static kiln_status direct_grad_input(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                     const LLVMValueRef *in) {
    win_loops w;
    ir_win_of(n, &w.g);
    w.b0 = w.b1 = NULL;
    LLVMValueRef dz = cg_cast_ptr(c, in[0], c->t_f32), k = cg_cast_ptr(c, in[1], c->t_f32);
    LLVMValueRef dx = cg_cast_ptr(c, out, c->t_f32);
    LLVMValueRef co = cg_i64(c, w.g.co);
    zero(c, out, &n->type);
    pixels_begin(c, &w);
    row r = {NULL, at(c, dz, w.yoff), NULL, NULL, n, NULL, CG_RED_SUM};
    taps_begin(c, &w);
    cg_loop lc;
    LLVMValueRef ci = cg_loop_begin(c, &lc, cg_i64(c, 0), cg_i64(c, w.g.c), 1);
    r.dst = at(c, k, add(c, w.koff, mul(c, ci, co)));
    LLVMValueRef s = cg_row_loop(c, co, CG_RED_SUM, dot_body, &r);
    LLVMValueRef o = add(c, w.xoff, ci);
    cg_store(c, LLVMBuildFAdd(c->b, cg_load(c, c->t_f32, dx, o), s, ""), dx, o);
    cg_loop_end(c, &lc, NULL);
    taps_end(c, &w);
    pixels_end(c, &w);
    return KILN_OK;
}

/* dK[tap][ci][:] += x[pixel][ci] · dz[out pixel][:] */
static kiln_status direct_grad_filter(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                      const LLVMValueRef *in) {
    win_loops w;
    ir_win_of(n, &w.g);
    w.b0 = w.b1 = NULL;
    LLVMValueRef x = cg_cast_ptr(c, in[0], c->t_f32), dz = cg_cast_ptr(c, in[1], c->t_f32);
    LLVMValueRef dk = cg_cast_ptr(c, out, c->t_f32);
    LLVMValueRef co = cg_i64(c, w.g.co);
    zero(c, out, &n->type);
    pixels_begin(c, &w);
    row r = {NULL, at(c, dz, w.yoff), NULL, NULL, n, NULL, CG_RED_NONE};
    taps_begin(c, &w);
    cg_loop lc;
    LLVMValueRef ci = cg_loop_begin(c, &lc, cg_i64(c, 0), cg_i64(c, w.g.c), 1);
    r.s = cg_load(c, c->t_f32, x, add(c, w.xoff, ci));
    r.acc = at(c, dk, add(c, w.koff, mul(c, ci, co)));
    cg_row_loop(c, co, CG_RED_NONE, axpy_body, &r);
    cg_loop_end(c, &lc, NULL);
    taps_end(c, &w);
    pixels_end(c, &w);
    return KILN_OK;
}

static LLVMValueRef pool_body(cg_ctx *c, void *v, LLVMValueRef j, int w);

/* ---------------------------------------------------------------- tasks
 * The image-parallel form of a window op (ir/conv.h): tasks of the worker
 * pool over the images (codegen/task.h). */

/* Zeroes the task's images of an image buffer of type t. */
static void zero_images(cg_ctx *c, const cg_task *k, LLVMValueRef p, const ir_type *t) {
    int64_t per = 4;
    for (int a = 1; a < t->rank; a++) per *= t->dims[a];
    LLVMValueRef start = at(c, p, mul(c, k->b0, cg_i64(c, per / 4)));
    cg_memset0(c, start, mul(c, LLVMBuildNSWSub(c->b, k->b1, k->b0, ""), cg_i64(c, per)));
}

/* ------------------------------------------------------ im2col + sgemm
 * The convolution's gradients as matrix products over the M = batch·oh·ow
 * output pixels, in the tasks above: each task walks its images' pixels in
 * chunks whose columns (each pixel's kh·kw·in inputs, zeros where the
 * window leaves the image) are gathered into its slot's buffer (ir/conv.h
 * sizes the chunk so that columns and output tile fit in L2 together), then
 *   input grad    col[rows, K]   = dz[rows, co] · kernel^T, scattered into dx
 *                 (a task's images only: tasks write disjoint pixels of dx)
 *   filter grad   part[K, co]   += col^T · dz[rows, co]    (the task's slot)
 *                 dk = part_0 + part_1 + ... in task order, afterwards.
 */
typedef struct im2col {
    ir_win g;
    int64_t K, chunk, slot;
    bool same;
    LLVMValueRef buf; /* f32*: the task's column buffer */
    cg_loop lr;
    LLVMValueRef r0, rows; /* the chunk: pixels [r0, r0 + rows) */
} im2col;

static bool im2col_fits(const ir_win *g) { return ir_win_im2col_floats(g) > 0; }

static void im2col_init(im2col *m, const ir_node *n) {
    ir_win_of(n, &m->g);
    m->K = m->g.kh * m->g.kw * m->g.c;
    const int64_t *pd;
    m->same = ir_attr_i(n, "padding") != 0 || ir_attr_ints(n, "pads", &pd) > 0;
    m->chunk = ir_win_im2col_rows(&m->g);
    m->slot = ir_win_task_floats(&m->g, n->op == IR_OP_conv2d_grad_filter);
}

/* In task k (ws: the workspace, its p[0]): its slot's column buffer; opens
 * the loop over the chunks of its pixels, leaving the builder in its body. */
static void chunks_begin(cg_ctx *c, im2col *m, const cg_task *k) {
    m->buf = at(c, k->p[0], mul(c, k->t, cg_i64(c, m->slot)));
    LLVMValueRef per = cg_i64(c, m->g.oh * m->g.ow);
    LLVMValueRef end = mul(c, k->b1, per);
    m->r0 = cg_loop_begin(c, &m->lr, mul(c, k->b0, per), end, m->chunk);
    m->rows = imin(c, cg_i64(c, m->chunk), LLVMBuildNSWSub(c->b, end, m->r0, ""));
}

/* gather: buf[r - r0][tap·c + ci] = x[pixel of tap]; else (scatter)
 * x[pixel of tap] += buf[...] (x is dx). */
static void im2col_rows(cg_ctx *c, im2col *m, LLVMValueRef x, bool gather) {
    win_loops w;
    w.g = m->g;
    const ir_win *g = &m->g;
    cg_loop l;
    LLVMValueRef r = cg_loop_begin(c, &l, m->r0, add(c, m->r0, m->rows), 1);
    LLVMValueRef per = cg_i64(c, g->oh * g->ow);
    w.b = LLVMBuildSDiv(c->b, r, per, "");
    LLVMValueRef rem = LLVMBuildSRem(c->b, r, per, "");
    w.oy = LLVMBuildSDiv(c->b, rem, cg_i64(c, g->ow), "");
    w.ox = LLVMBuildSRem(c->b, rem, cg_i64(c, g->ow), "");
    LLVMValueRef crow = at(c, m->buf, mul(c, LLVMBuildNSWSub(c->b, r, m->r0, ""), cg_i64(c, m->K)));
    if (gather && m->same)
        cg_memset0(c, crow, cg_i64(c, m->K * 4));
    taps_begin(c, &w);
    LLVMValueRef cell = at(c, crow, mul(c, add(c, mul(c, w.ky, cg_i64(c, g->kw)), w.kx),
                                        cg_i64(c, g->c)));
    if (gather) {
        cg_memmove(c, cell, at(c, x, w.xoff), cg_i64(c, g->c * 4));
    } else {
        row rr = {at(c, x, w.xoff), cell, NULL, cg_fc(c, c->t_f32, 1.0), NULL, NULL, CG_RED_NONE};
        cg_row_loop(c, cg_i64(c, g->c), CG_RED_NONE, axpy_body, &rr);
    }
    taps_end(c, &w);
    cg_loop_end(c, &l, NULL);
}

/* ------------------------------------------- direct, in registers
 * conv2d's forward. im2col + GEMM copied every window into a column buffer
 * (a float per tap with one input channel) before a GEMM whose K = kh·kw·in
 * (9 for a 3x3 kernel on one channel) was too short to pay for its tiles;
 * here the GEMM's register tile reads the image in place (implicit GEMM,
 * the kernel unpacked: a row of co floats per tap and input channel). Per
 * output row, blocks of P adjacent output pixels times G vectors of W
 * output channels are accumulated in registers:
 *
 *   for each image (tasks), output row oy, block of pixels, group of vectors:
 *     acc[p][v] = 0
 *     for ky in the taps inside the image (tap_range, at run time)
 *       for kx, ci (unrolled; ci a loop above UNROLL_IN input channels)
 *         acc[p][v] += x[iy, ix(p, kx), ci] · kernel[ky, kx, ci, v]
 *     y[oy, ox0 + p, v] = act(acc[p][v] + bias[v])
 *
 * The columns are known at compile time, so the blocks whose windows leave
 * the image at the left or right are emitted one by one with their outside
 * taps left out; the blocks in between share one loop. The epilogue (bias,
 * the activation fused by fuse-conv-act) is applied in registers. */
enum { UNROLL_IN = 4 };

typedef struct dconv {
    ir_win g;
    int W, G, P, nvec;              /* lanes, vectors a group, pixels a block, vectors of co */
    LLVMValueRef x, k, bias, y;     /* f32* */
    LLVMValueRef b, oy, by, lo, hi; /* image, output row, its top input row, taps [lo, hi) */
    const ir_node *n;
    cg_scalar_fn act;
} dconv;

/* Lanes of vector v of the output channels. */
static int dconv_lanes(const dconv *d, int v) {
    int64_t left = d->g.co - (int64_t)v * d->W;
    return (int)(left < d->W ? left : d->W);
}

/* Whether tap kx of output column ox lies inside the image (ox < 0: a
 * column of the shared loop, where all taps do). */
static bool dconv_tap_in(const dconv *d, int64_t ox, int64_t kx) {
    if (ox < 0) return true;
    int64_t ix = ox * d->g.sw - d->g.pl + kx * d->g.dw;
    return ix >= 0 && ix < d->g.w;
}

/* acc[p·G + v] += x(pixel p, tap kx, ci) · kernel[ky, kx, ci, v0 + v]:
 * one ci, or (ci == NULL) a loop over all of them. */
static void dconv_taps(cg_ctx *c, const dconv *d, LLVMValueRef *acc, int np, int v0, int nv,
                       LLVMValueRef ox0, int64_t sox0, LLVMValueRef row, LLVMValueRef kbase,
                       int64_t kx) {
    const ir_win *g = &d->g;
    int nacc = np * nv;
    cg_loop lc;
    LLVMValueRef ci;
    bool loop = g->c > UNROLL_IN;
    for (int64_t cs = 0; cs < (loop ? 1 : g->c); cs++) {
        if (loop) {
            ci = cg_loop_begin(c, &lc, cg_i64(c, 0), cg_i64(c, g->c), 1);
            for (int a = 0; a < nacc; a++) acc[a] = cg_loop_phi(c, &lc, acc[a]);
        } else {
            ci = cg_i64(c, cs);
        }
        LLVMValueRef wv[4];
        LLVMValueRef koff =
            add(c, kbase, mul(c, add(c, cg_i64(c, kx * g->c), ci), cg_i64(c, g->co)));
        for (int v = 0; v < nv; v++)
            wv[v] = cg_loadv(c, c->t_f32, dconv_lanes(d, v0 + v), d->k,
                             add(c, koff, cg_i64(c, (int64_t)(v0 + v) * d->W)));
        for (int p = 0; p < np; p++) {
            if (!dconv_tap_in(d, sox0 < 0 ? -1 : sox0 + p, kx)) continue;
            LLVMValueRef ix = cg_i64(c, (int64_t)p * g->sw - g->pl + kx * g->dw);
            ix = add(c, mul(c, ox0, cg_i64(c, g->sw)), ix);
            LLVMValueRef xs =
                cg_load(c, c->t_f32, d->x, add(c, mul(c, add(c, row, ix), cg_i64(c, g->c)), ci));
            for (int v = 0; v < nv; v++) {
                int lanes = dconv_lanes(d, v0 + v);
                acc[p * nv + v] = cg_fma(c, cg_splat(c, xs, lanes), wv[v], acc[p * nv + v]);
            }
        }
        if (loop) {
            cg_loop_end(c, &lc, acc);
            for (int a = 0; a < nacc; a++) acc[a] = lc.exits[a];
        }
    }
}

/* The np pixels from output column ox0 (sox0: the same, known; -1 in the
 * shared loop) of row d->oy, every vector of output channels. */
static void dconv_block(cg_ctx *c, const dconv *d, LLVMValueRef ox0, int64_t sox0, int np) {
    const ir_win *g = &d->g;
    for (int v0 = 0; v0 < d->nvec; v0 += d->G) {
        int nv = d->nvec - v0 < d->G ? d->nvec - v0 : d->G;
        LLVMValueRef acc[32];
        for (int p = 0; p < np; p++)
            for (int v = 0; v < nv; v++)
                acc[p * nv + v] = cg_fc(c, cg_vec(c, c->t_f32, dconv_lanes(d, v0 + v)), 0.0);
        cg_loop ly;
        LLVMValueRef ky = cg_loop_begin(c, &ly, d->lo, d->hi, 1);
        for (int a = 0; a < np * nv; a++) acc[a] = cg_loop_phi(c, &ly, acc[a]);
        LLVMValueRef iy = add(c, d->by, mul(c, ky, cg_i64(c, g->dh)));
        LLVMValueRef row = mul(c, add(c, mul(c, d->b, cg_i64(c, g->h)), iy), cg_i64(c, g->w));
        LLVMValueRef kbase = mul(c, ky, cg_i64(c, g->kw * g->c * g->co));
        for (int64_t kx = 0; kx < g->kw; kx++)
            dconv_taps(c, d, acc, np, v0, nv, ox0, sox0, row, kbase, kx);
        cg_loop_end(c, &ly, acc);
        LLVMValueRef pix =
            add(c, mul(c, add(c, mul(c, d->b, cg_i64(c, g->oh)), d->oy), cg_i64(c, g->ow)), ox0);
        for (int v = 0; v < nv; v++) {
            int lanes = dconv_lanes(d, v0 + v);
            LLVMValueRef vo = cg_i64(c, (int64_t)(v0 + v) * d->W);
            LLVMValueRef bv = cg_loadv(c, c->t_f32, lanes, d->bias, vo);
            for (int p = 0; p < np; p++) {
                LLVMValueRef y = LLVMBuildFAdd(c->b, ly.exits[p * nv + v], bv, "");
                if (d->act) y = d->act(c, d->n, &y);
                cg_storev(c, y, lanes, d->y,
                          add(c, mul(c, add(c, pix, cg_i64(c, p)), cg_i64(c, g->co)), vo));
            }
        }
    }
}

/* Columns [from, to) of the row, known: blocks of at most P. */
static void dconv_fixed(cg_ctx *c, const dconv *d, int64_t from, int64_t to) {
    for (int64_t ox = from; ox < to; ox += d->P)
        dconv_block(c, d, cg_i64(c, ox), ox, (int)(to - ox < d->P ? to - ox : d->P));
}

kiln_status lower_conv2d(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    dconv d = {.n = n};
    ir_win *g = &d.g;
    ir_win_of(n, g);
    d.W = cg_gemm_width(c->o, c->features);
    d.nvec = (int)((g->co + d.W - 1) / d.W);
    /* Accumulators: 24 of AVX-512's 32 registers, 12 of AVX2's 16. */
    int budget = d.W == 16 ? 24 : 12;
    d.G = d.nvec < (d.W == 16 ? 4 : 2) ? d.nvec : (d.W == 16 ? 4 : 2);
    d.P = budget / d.G < 8 ? budget / d.G : 8;
    int act = (int)ir_attr_i(n, "activation");
    d.act = act ? cg_scalar_lowering(act) : NULL;
    cg_task k;
    LLVMValueRef ptrs[4] = {in[0], in[1], in[2], out};
    cg_task_begin(c, &k, CG_TASKS_UPTO, g->n, 4, ptrs);
    d.x = k.p[0], d.k = k.p[1], d.bias = k.p[2], d.y = k.p[3];
    cg_gemm_wide_fn(c, LLVMGetBasicBlockParent(LLVMGetInsertBlock(c->b)), d.W);
    cg_loop lb, lr, lx;
    d.b = cg_loop_begin(c, &lb, k.b0, k.b1, 1);
    d.oy = cg_loop_begin(c, &lr, cg_i64(c, 0), cg_i64(c, g->oh), 1);
    d.by = tap_range(c, d.oy, g->sh, g->dh, g->pt, g->h, g->kh, &d.lo, &d.hi);
    /* The columns whose taps all lie inside the image: [x_lo, x_hi). */
    int64_t x_lo = (g->pl + g->sw - 1) / g->sw, last = g->w - 1 - (g->kw - 1) * g->dw + g->pl;
    int64_t x_hi = last < 0 ? 0 : last / g->sw + 1;
    if (x_lo > g->ow) x_lo = g->ow;
    if (x_hi > g->ow) x_hi = g->ow;
    if (x_hi < x_lo) x_hi = x_lo;
    int64_t nb = (x_hi - x_lo) / d.P;
    dconv_fixed(c, &d, 0, x_lo);
    if (nb > 0) {
        LLVMValueRef ox0 = cg_loop_begin(c, &lx, cg_i64(c, x_lo), cg_i64(c, x_lo + nb * d.P), d.P);
        dconv_block(c, &d, ox0, -1, d.P);
        cg_loop_end(c, &lx, NULL);
    }
    dconv_fixed(c, &d, x_lo + nb * d.P, g->ow);
    cg_loop_end(c, &lr, NULL);
    cg_loop_end(c, &lb, NULL);
    cg_task_end(c, &k);
    return KILN_OK;
}

static kiln_status gemm_grad_input(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                   const LLVMValueRef *in) {
    im2col m;
    cg_task k;
    im2col_init(&m, n);
    LLVMValueRef ptrs[4] = {cg_node_ws(c, n), in[0], in[1], out};
    cg_task_begin(c, &k, CG_TASKS_UPTO, m.g.n, 4, ptrs);
    LLVMValueRef dz = k.p[1], kern = k.p[2], dx = k.p[3];
    zero_images(c, &k, dx, &n->type);
    chunks_begin(c, &m, &k);
    LLVMValueRef co = cg_i64(c, m.g.co), K = cg_i64(c, m.K);
    LLVMValueRef dzc = at(c, dz, mul(c, m.r0, co));
    cg_sgemm(c, false, true, m.rows, K, co, dzc, co, kern, co, 0.0, m.buf, K);
    im2col_rows(c, &m, dx, false);
    cg_loop_end(c, &m.lr, NULL);
    cg_task_end(c, &k);
    return KILN_OK;
}

/* dk[j] = part_0[j] + part_1[j] + ... (src: part_0, s: the slot stride) */
static LLVMValueRef sum_parts_body(cg_ctx *c, void *v, LLVMValueRef j, int w) {
    row *r = v;
    LLVMValueRef y = cg_loadv(c, c->t_f32, w, r->src, j);
    for (int t = 1; t < IR_CONV_TASKS; t++)
        y = LLVMBuildFAdd(c->b, y, cg_loadv(c, c->t_f32, w, r->src, add(c, j, mul(c, r->s, cg_i64(c, t)))), "");
    cg_storev(c, y, w, r->acc, j);
    return NULL;
}

static kiln_status gemm_grad_filter(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                    const LLVMValueRef *in) {
    im2col m;
    cg_task k;
    im2col_init(&m, n);
    LLVMValueRef ws = cg_node_ws(c, n);
    LLVMValueRef ptrs[3] = {ws, in[0], in[1]};
    cg_task_begin(c, &k, CG_TASKS_FIXED, m.g.n, 3, ptrs);
    LLVMValueRef x = k.p[1], dz = k.p[2];
    LLVMValueRef co = cg_i64(c, m.g.co), K = cg_i64(c, m.K);
    int64_t part_off = ir_win_im2col_floats(&m.g);
    LLVMValueRef part = at(c, k.p[0], add(c, mul(c, k.t, cg_i64(c, m.slot)), cg_i64(c, part_off)));
    cg_memset0(c, part, cg_i64(c, m.K * m.g.co * 4));
    chunks_begin(c, &m, &k);
    im2col_rows(c, &m, x, true);
    LLVMValueRef dzc = at(c, dz, mul(c, m.r0, co));
    cg_sgemm(c, true, false, K, co, m.rows, m.buf, K, dzc, co, 1.0, part, co);
    cg_loop_end(c, &m.lr, NULL);
    cg_task_end(c, &k);
    /* The partial sums in task order: the same bits for any thread count. */
    row r = {cg_cast_ptr(c, out, c->t_f32), at(c, cg_cast_ptr(c, ws, c->t_f32), cg_i64(c, part_off)),
             NULL, cg_i64(c, m.slot), n, NULL, CG_RED_NONE};
    cg_row_loop(c, cg_i64(c, m.K * m.g.co), CG_RED_NONE, sum_parts_body, &r);
    return KILN_OK;
}

/* The filter gradient of few input channels (IR_CONV_DIRECT_IN), in
 * registers: each task sums over its images' output pixels
 *   part[tap][v] += x[pixel's input at tap] · dz[pixel][v]
 * for a group of taps (tap = (ky·kw + kx)·in + ci) times a group of vectors
 * of co, all in registers, stored to its slot once at the end — no column
 * buffer, no GEMM whose M (kh·kw·in = 9 on one channel) is too short for
 * its tiles. The partials are then added in task order as gemm_grad_filter's.
 * Taps that leave the image (padding) read zero through a select. */
static kiln_status reg_grad_filter(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                   const LLVMValueRef *in) {
    ir_win g;
    ir_win_of(n, &g);
    int W = cg_gemm_width(c->o, c->features);
    int nvec = (int)((g.co + W - 1) / W), budget = W == 16 ? 24 : 12;
    int G = nvec < 2 ? nvec : 2, T = (int)(g.kh * g.kw * g.c), TG = budget / G;
    bool pad = g.pt > 0 || g.pl > 0 || (g.oh - 1) * g.sh + (g.kh - 1) * g.dh >= g.h ||
               (g.ow - 1) * g.sw + (g.kw - 1) * g.dw >= g.w;
    int64_t slot = ir_win_task_floats(&g, true);
    LLVMValueRef ws = cg_node_ws(c, n);
    cg_task k;
    LLVMValueRef ptrs[3] = {ws, in[0], in[1]};
    cg_task_begin(c, &k, CG_TASKS_FIXED, g.n, 3, ptrs);
    cg_gemm_wide_fn(c, LLVMGetBasicBlockParent(LLVMGetInsertBlock(c->b)), W);
    LLVMValueRef x = k.p[1], dz = k.p[2];
    LLVMValueRef part = at(c, k.p[0], mul(c, k.t, cg_i64(c, slot)));
    dconv d = {.g = g, .W = W};
    for (int t0 = 0; t0 < T; t0 += TG)
        for (int v0 = 0; v0 < nvec; v0 += G) {
            int nt = T - t0 < TG ? T - t0 : TG, nv = nvec - v0 < G ? nvec - v0 : G;
            LLVMValueRef acc[32];
            for (int a = 0; a < nt * nv; a++)
                acc[a] = cg_fc(c, cg_vec(c, c->t_f32, dconv_lanes(&d, v0 + a % nv)), 0.0);
            /* rows r = b·oh + oy of the task's images, then columns ox */
            cg_loop lr, lx;
            LLVMValueRef r = cg_loop_begin(c, &lr, mul(c, k.b0, cg_i64(c, g.oh)),
                                           mul(c, k.b1, cg_i64(c, g.oh)), 1);
            for (int a = 0; a < nt * nv; a++) acc[a] = cg_loop_phi(c, &lr, acc[a]);
            LLVMValueRef b = LLVMBuildSDiv(c->b, r, cg_i64(c, g.oh), "");
            LLVMValueRef oy = LLVMBuildSRem(c->b, r, cg_i64(c, g.oh), "");
            LLVMValueRef iy0 =
                LLVMBuildNSWSub(c->b, mul(c, oy, cg_i64(c, g.sh)), cg_i64(c, g.pt), "");
            LLVMValueRef ox = cg_loop_begin(c, &lx, cg_i64(c, 0), cg_i64(c, g.ow), 1);
            for (int a = 0; a < nt * nv; a++) acc[a] = cg_loop_phi(c, &lx, acc[a]);
            LLVMValueRef ix0 =
                LLVMBuildNSWSub(c->b, mul(c, ox, cg_i64(c, g.sw)), cg_i64(c, g.pl), "");
            LLVMValueRef zrow = mul(c, add(c, mul(c, r, cg_i64(c, g.ow)), ox), cg_i64(c, g.co));
            LLVMValueRef dv[4];
            for (int v = 0; v < nv; v++)
                dv[v] = cg_loadv(c, c->t_f32, dconv_lanes(&d, v0 + v), dz,
                                 add(c, zrow, cg_i64(c, (int64_t)(v0 + v) * W)));
            for (int t = 0; t < nt; t++) {
                int64_t tap = t0 + t, ci = tap % g.c, kx = tap / g.c % g.kw, ky = tap / g.c / g.kw;
                LLVMValueRef iy = add(c, iy0, cg_i64(c, ky * g.dh)),
                             ix = add(c, ix0, cg_i64(c, kx * g.dw));
                LLVMValueRef xi = add(
                    c,
                    mul(c,
                        add(c, mul(c, add(c, mul(c, b, cg_i64(c, g.h)), iy), cg_i64(c, g.w)), ix),
                        cg_i64(c, g.c)),
                    cg_i64(c, ci));
                LLVMValueRef inside = NULL;
                if (pad) {
                    LLVMValueRef in_y = LLVMBuildICmp(c->b, LLVMIntULT, iy, cg_i64(c, g.h), "");
                    LLVMValueRef in_x = LLVMBuildICmp(c->b, LLVMIntULT, ix, cg_i64(c, g.w), "");
                    inside = LLVMBuildAnd(c->b, in_y, in_x, "");
                    xi = LLVMBuildSelect(c->b, inside, xi, cg_i64(c, 0), "");
                }
                LLVMValueRef xs = cg_load(c, c->t_f32, x, xi);
                if (pad) xs = LLVMBuildSelect(c->b, inside, xs, cg_fc(c, c->t_f32, 0.0), "");
                for (int v = 0; v < nv; v++)
                    acc[t * nv + v] =
                        cg_fma(c, cg_splat(c, xs, dconv_lanes(&d, v0 + v)), dv[v], acc[t * nv + v]);
            }
            cg_loop_end(c, &lx, acc);
            for (int a = 0; a < nt * nv; a++) acc[a] = lx.exits[a];
            cg_loop_end(c, &lr, acc);
            for (int t = 0; t < nt; t++)
                for (int v = 0; v < nv; v++)
                    cg_storev(c, lr.exits[t * nv + v], dconv_lanes(&d, v0 + v), part,
                              cg_i64(c, (t0 + t) * g.co + (int64_t)(v0 + v) * W));
        }
    cg_task_end(c, &k);
    /* The partial sums in task order: the same bits for any thread count. */
    row rs = {cg_cast_ptr(c, out, c->t_f32),
              cg_cast_ptr(c, ws, c->t_f32),
              NULL,
              cg_i64(c, slot),
              n,
              NULL,
              CG_RED_NONE};
    cg_row_loop(c, cg_i64(c, T * g.co), CG_RED_NONE, sum_parts_body, &rs);
    return KILN_OK;
}

/* The bias gradient: each task sums its images' rows of dz into its
 * partial (co floats), then the partials are added in task order. */
kiln_status lower_conv2d_grad_bias(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                   const LLVMValueRef *in) {
    const ir_type *t = &n->in[0]->type;
    int64_t co = t->dims[3], slot = (co + 15) / 16 * 16, per = t->dims[1] * t->dims[2];
    LLVMValueRef ws = cg_node_ws(c, n);
    cg_task k;
    LLVMValueRef ptrs[2] = {ws, in[0]};
    cg_task_begin(c, &k, CG_TASKS_FIXED, t->dims[0], 2, ptrs);
    LLVMValueRef part = at(c, k.p[0], mul(c, k.t, cg_i64(c, slot)));
    cg_memset0(c, part, cg_i64(c, co * 4));
    cg_loop l;
    LLVMValueRef r = cg_loop_begin(c, &l, mul(c, k.b0, cg_i64(c, per)), mul(c, k.b1, cg_i64(c, per)), 1);
    row rr = {part, at(c, k.p[1], mul(c, r, cg_i64(c, co))), NULL, NULL, n, NULL, CG_RED_SUM};
    cg_row_loop(c, cg_i64(c, co), CG_RED_NONE, pool_body, &rr);
    cg_loop_end(c, &l, NULL);
    cg_task_end(c, &k);
    row sum = {cg_cast_ptr(c, out, c->t_f32), cg_cast_ptr(c, ws, c->t_f32), NULL, cg_i64(c, slot), n,
               NULL, CG_RED_NONE};
    cg_row_loop(c, cg_i64(c, co), CG_RED_NONE, sum_parts_body, &sum);
    return KILN_OK;
}

kiln_status lower_conv2d_grad_input(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                    const LLVMValueRef *in) {
    ir_win g;
    ir_win_of(n, &g);
    return im2col_fits(&g) ? gemm_grad_input(c, n, out, in) : direct_grad_input(c, n, out, in);
}

kiln_status lower_conv2d_grad_filter(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                     const LLVMValueRef *in) {
    ir_win g;
    ir_win_of(n, &g);
    if (g.c <= IR_CONV_DIRECT_IN) return reg_grad_filter(c, n, out, in);
    return im2col_fits(&g) ? gemm_grad_filter(c, n, out, in) : direct_grad_filter(c, n, out, in);
}

/* -------------------------------------------------------------- pooling */

/* acc[j] = max(acc[j], src[j]) or acc[j] + src[j] */
static LLVMValueRef pool_body(cg_ctx *c, void *v, LLVMValueRef j, int w) {
    row *r = v;
    LLVMValueRef a = cg_loadv(c, c->t_f32, w, r->acc, j), x = cg_loadv(c, c->t_f32, w, r->src, j);
    LLVMValueRef y;
    if (r->kind == CG_RED_MAX)
        y = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, x, a, ""), x, a, "");
    else
        y = LLVMBuildFAdd(c->b, a, x, "");
    cg_storev(c, y, w, r->acc, j);
    return NULL;
}

/* The number of window cells inside the image, as f32. */
static LLVMValueRef cell_count(cg_ctx *c, const win_loops *w) {
    const ir_win *g = &w->g;
    LLVMValueRef lo, hi, lo2, hi2;
    tap_range(c, w->oy, g->sh, 1, g->pt, g->h, g->kh, &lo, &hi);
    tap_range(c, w->ox, g->sw, 1, g->pl, g->w, g->kw, &lo2, &hi2);
    LLVMValueRef cnt = mul(c, LLVMBuildNSWSub(c->b, hi, lo, ""), LLVMBuildNSWSub(c->b, hi2, lo2, ""));
    return LLVMBuildSIToFP(c->b, cnt, c->t_f32, "");
}

typedef struct mpg {
    const win_loops *w;
    LLVMValueRef x, dy, dx;                /* pooling forward: dx is y */
    LLVMValueRef by, bx, lo, hi, lo2, hi2; /* the window's taps inside the image */
    LLVMValueRef count;                    /* average pooling: the cells, f32 */
    bool mask, store, max;
} mpg;

/* x's offset of tap (ky, kx) of the pixel, plus j */
static LLVMValueRef mpg_off(cg_ctx *c, const mpg *m, LLVMValueRef ky, LLVMValueRef kx, LLVMValueRef j) {
    const ir_win *g = &m->w->g;
    LLVMValueRef row0 = add(c, mul(c, m->w->b, cg_i64(c, g->h)), add(c, m->by, ky));
    return add(c, mul(c, add(c, mul(c, row0, cg_i64(c, g->w)), add(c, m->bx, kx)), cg_i64(c, g->c)), j);
}

/* Pooling forward at one output pixel, 8 channels a vector, the window
 * folded in registers in row-major tap order: max from the first tap on
 * (a later tap taking it when greater, as the interpreter), or the sum
 * from +0 divided by the cells inside the image. */
static LLVMValueRef pool_fwd_body(cg_ctx *c, void *v, LLVMValueRef j, int w) {
    const mpg *m = v;
    LLVMTypeRef ft = w == 1 ? c->t_f32 : LLVMVectorType(c->t_f32, (unsigned)w);
    LLVMValueRef init = m->max ? cg_loadv(c, c->t_f32, w, m->x, mpg_off(c, m, m->lo, m->lo2, j))
                               : cg_fc(c, ft, 0.0);
    cg_loop ly, lx;
    LLVMValueRef ky = cg_loop_begin(c, &ly, m->lo, m->hi, 1);
    LLVMValueRef acc0 = cg_loop_phi(c, &ly, init);
    LLVMValueRef kx = cg_loop_begin(c, &lx, m->lo2, m->hi2, 1);
    LLVMValueRef acc = cg_loop_phi(c, &lx, acc0);
    LLVMValueRef xv = cg_loadv(c, c->t_f32, w, m->x, mpg_off(c, m, ky, kx, j));
    LLVMValueRef nx = m->max ? LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, xv, acc, ""), xv, acc, "")
                             : LLVMBuildFAdd(c->b, acc, xv, "");
    cg_loop_end(c, &lx, &nx);
    LLVMValueRef ny = lx.exits[0];
    cg_loop_end(c, &ly, &ny);
    LLVMValueRef y = ly.exits[0];
    if (!m->max) y = LLVMBuildFDiv(c->b, y, cg_splat(c, m->count, w), "");
    cg_storev(c, y, w, m->dx, add(c, m->w->yoff, j));
    return NULL;
}

kiln_status lower_pool2d(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    win_loops w;
    ir_win_of(n, &w.g);
    w.g.co = w.g.c;
    bool is_max = n->op == IR_OP_max_pool2d;
    cg_task k;
    LLVMValueRef ptrs[2] = {in[0], out};
    cg_task_begin(c, &k, CG_TASKS_UPTO, w.g.n, 2, ptrs);
    LLVMValueRef x = k.p[0], y = k.p[1];
    w.b0 = k.b0;
    w.b1 = k.b1;
    pixels_begin(c, &w);
    mpg m = {.w = &w, .x = x, .dx = y, .max = is_max};
    m.by = tap_range(c, w.oy, w.g.sh, 1, w.g.pt, w.g.h, w.g.kh, &m.lo, &m.hi);
    m.bx = tap_range(c, w.ox, w.g.sw, 1, w.g.pl, w.g.w, w.g.kw, &m.lo2, &m.hi2);
    if (!is_max) m.count = cell_count(c, &w);
    cg_row_loop(c, cg_i64(c, w.g.c), CG_RED_NONE, pool_fwd_body, &m);
    pixels_end(c, &w);
    cg_task_end(c, &k);
    return KILN_OK;
}

/* acc[j] += src[j] / s */
static LLVMValueRef share_body(cg_ctx *c, void *v, LLVMValueRef j, int w) {
    row *r = v;
    LLVMValueRef q = LLVMBuildFDiv(c->b, cg_loadv(c, c->t_f32, w, r->src, j), cg_splat(c, r->s, w), "");
    cg_storev(c, LLVMBuildFAdd(c->b, cg_loadv(c, c->t_f32, w, r->acc, j), q, ""), w, r->acc, j);
    return NULL;
}

/* Max pooling's gradient at one output pixel, 8 channels a vector: the
 * first maximum of the window (row-major tap order, as the interpreter:
 * a later tap takes it only when strictly greater) takes dy; the others get
 * nothing. The window is scanned once for the maximum and its tap number,
 * then each tap's dx gets dy where it won (added: windows may overlap; or
 * stored when they do not: `store`). */
static LLVMValueRef mpg_body(cg_ctx *c, void *v, LLVMValueRef j, int w) {
    const mpg *m = v;
    const ir_win *g = &m->w->g;
    LLVMTypeRef ft = w == 1 ? c->t_f32 : LLVMVectorType(c->t_f32, (unsigned)w);
    LLVMValueRef kw = cg_i64(c, g->kw);
    /* The maximum and its tap (ky·kw + kx), from the first tap on. */
    LLVMValueRef first = cg_loadv(c, c->t_f32, w, m->x, mpg_off(c, m, m->lo, m->lo2, j));
    LLVMValueRef code0 = add(c, mul(c, m->lo, kw), m->lo2);
    LLVMValueRef at0 = cg_splat(c, LLVMBuildTrunc(c->b, code0, c->t_i32, ""), w);
    cg_loop ly, lx;
    LLVMValueRef ky = cg_loop_begin(c, &ly, m->lo, m->hi, 1);
    LLVMValueRef best0 = cg_loop_phi(c, &ly, first), atv0 = cg_loop_phi(c, &ly, at0);
    LLVMValueRef kx = cg_loop_begin(c, &lx, m->lo2, m->hi2, 1);
    LLVMValueRef best = cg_loop_phi(c, &lx, best0), atv = cg_loop_phi(c, &lx, atv0);
    LLVMValueRef xv = cg_loadv(c, c->t_f32, w, m->x, mpg_off(c, m, ky, kx, j));
    LLVMValueRef take = LLVMBuildFCmp(c->b, LLVMRealOGT, xv, best, "");
    LLVMValueRef code = cg_splat(c, LLVMBuildTrunc(c->b, add(c, mul(c, ky, kw), kx), c->t_i32, ""), w);
    LLVMValueRef nx[2] = {LLVMBuildSelect(c->b, take, xv, best, ""),
                          LLVMBuildSelect(c->b, take, code, atv, "")};
    cg_loop_end(c, &lx, nx);
    LLVMValueRef ny[2] = {lx.exits[0], lx.exits[1]};
    cg_loop_end(c, &ly, ny);
    LLVMValueRef top = ly.exits[0], won = ly.exits[1];
    LLVMValueRef gv = cg_loadv(c, c->t_f32, w, m->dy, add(c, m->w->yoff, j));
    LLVMValueRef zero = cg_fc(c, ft, 0.0);
    if (m->mask) /* relu's derivative at the maximum (ir/conv.c) */
        gv = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, top, zero, ""), gv, zero, "");
    /* Every tap: dx += dy where it won. dx is never -0 (a sum from +0), so
     * adding +0 elsewhere leaves its bits as the interpreter's. */
    ky = cg_loop_begin(c, &ly, m->lo, m->hi, 1);
    kx = cg_loop_begin(c, &lx, m->lo2, m->hi2, 1);
    LLVMValueRef o = mpg_off(c, m, ky, kx, j);
    code = cg_splat(c, LLVMBuildTrunc(c->b, add(c, mul(c, ky, kw), kx), c->t_i32, ""), w);
    LLVMValueRef share = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, won, code, ""), gv, zero, "");
    if (!m->store) share = LLVMBuildFAdd(c->b, cg_loadv(c, c->t_f32, w, m->dx, o), share, "");
    cg_storev(c, share, w, m->dx, o);
    cg_loop_end(c, &lx, NULL);
    cg_loop_end(c, &ly, NULL);
    return NULL;
}

static void max_pool_grad(cg_ctx *c, win_loops *w, LLVMValueRef x, LLVMValueRef dy,
                          LLVMValueRef dx, bool mask, bool store) {
    ir_win *g = &w->g;
    mpg m = {.w = w, .x = x, .dy = dy, .dx = dx, .mask = mask, .store = store};
    m.by = tap_range(c, w->oy, g->sh, 1, g->pt, g->h, g->kh, &m.lo, &m.hi);
    m.bx = tap_range(c, w->ox, g->sw, 1, g->pl, g->w, g->kw, &m.lo2, &m.hi2);
    cg_row_loop(c, cg_i64(c, g->c), CG_RED_NONE, mpg_body, &m);
}

/* Whether max pooling's windows tile the image: each input pixel in
 * exactly one window (dx needs no zeroing, its taps no adds). */
static bool windows_tile(const ir_win *g) {
    return g->pt == 0 && g->pl == 0 && g->sh == g->kh && g->sw == g->kw && g->oh * g->sh == g->h &&
           g->ow * g->sw == g->w;
}

kiln_status lower_pool2d_grad(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                              const LLVMValueRef *in) {
    win_loops w;
    ir_win_of(n, &w.g);
    w.g.co = w.g.c;
    cg_task k;
    LLVMValueRef ptrs[3] = {in[0], in[1], out};
    cg_task_begin(c, &k, CG_TASKS_UPTO, w.g.n, 3, ptrs);
    LLVMValueRef x = k.p[0], dy = k.p[1], dx = k.p[2];
    w.b0 = k.b0;
    w.b1 = k.b1;
    bool is_max = n->op == IR_OP_max_pool2d_grad, tiles = is_max && windows_tile(&w.g);
    if (!tiles) zero_images(c, &k, dx, &n->type);
    pixels_begin(c, &w);
    if (is_max) {
        max_pool_grad(c, &w, x, dy, dx, ir_attr_i(n, "relu_mask") != 0, tiles);
    } else {
        row r = {NULL, at(c, dy, w.yoff), NULL, cell_count(c, &w), n, NULL, CG_RED_NONE};
        taps_begin(c, &w);
        r.acc = at(c, dx, w.xoff);
        cg_row_loop(c, cg_i64(c, w.g.c), CG_RED_NONE, share_body, &r);
        taps_end(c, &w);
    }
    pixels_end(c, &w);
    cg_task_end(c, &k);
    return KILN_OK;
}

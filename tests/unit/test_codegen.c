/*
 * test_codegen.c — LLVM code generation and the JIT against the reference
 * interpreter.
 *
 * Differential and table-driven over ops.def: every op (and fused op) has
 * cases below; each case builds a small module, JIT-compiles it, and runs it
 * and the interpreter on the same random inputs and globals at batch 1, 7,
 * 33 and 128, unplanned and again after plan-memory. Results and globals
 * must agree within a max relative error of 1e-5 (|a-b| / max(1, |b|);
 * i32 results exactly). A test loops over ops.def and fails for an op
 * without a lowering or without a case here.
 *
 * Then: the MNIST-shaped model trained five steps on both backends, the
 * assembly of its train step (AVX2 ymm code), the accuracy of the emitted
 * exp/log/tanh/sigmoid against glibc in ulps, error paths (labels out of
 * range, a bad batch, a malformed lowering, failing allocations).
 */
#include <dlfcn.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "codegen/pool.h"
#include "driver/driver.h"
#include "passes/pass.h"
#include "testutil.h"

#define B (KILN_BATCH)

/* ------------------------------------------------------------ inputs */

typedef struct gen {
    float lo, hi;     /* f32 data uniform in [lo, hi) */
    int32_t ilo, ihi; /* i32 data uniform in [ilo, ihi] */
    bool int_valued;  /* round f32 data (ties for argmax, equal) */
} gen;

static void fill(const ir_type *t, int64_t batch, void *data, uint64_t seed, const gen *g) {
    int64_t n = ir_type_numel(t, batch);
    if (t->dtype == IR_F32) {
        float *p = data;
        tu_fill_uniform(p, n, seed, g->lo, g->hi);
        if (g->int_valued)
            for (int64_t i = 0; i < n; i++) p[i] = roundf(p[i]);
    } else {
        int32_t *p = data;
        ir_rng r = ir_rng_seed(seed, 99);
        int64_t span = (int64_t)g->ihi - g->ilo + 1;
        for (int64_t i = 0; i < n; i++)
            p[i] = (int32_t)(g->ilo + (int64_t)(ir_rng_uniform(&r) * (double)span));
    }
}

static void *alloc_for(const ir_type *t, int64_t batch) {
    int64_t n = ir_type_numel(t, batch);
    return calloc((size_t)(n > 0 ? n : 1), 4);
}

/* The JIT against the interpreter, in units of the tolerance (close: <= 1):
 * f32 within rtol 1e-5 at the tensor's own scale (TU_ATOL_AT_SCALE, so
 * Adam's tiny second moments are compared at theirs); i32 exactly. */
static double compare(const ir_type *t, int64_t batch, const void *jit, const void *ref) {
    int64_t n = ir_type_numel(t, batch);
    if (t->dtype == IR_F32)
        return tu_max_err(jit, ref, n, TU_ATOL_AT_SCALE(ref, n, 1e-5), 1e-5, NULL);
    return memcmp(jit, ref, (size_t)n * 4) == 0 ? 0.0 : INFINITY;
}

/* Runs function `fname` on the interpreter and through program p with the
 * same inputs and globals; returns the worst error over results and
 * globals, and describes the worst in `where`. */
static double diff_run(kiln_module *m, const char *fname, const cg_program *p, int64_t batch,
                       uint64_t seed, const gen *g, char *where, size_t wn) {
    kiln_func *f = kiln_module_func(m, fname);
    ck_assert_ptr_nonnull(f);
    void *args[16], *res_i[16], *res_j[16], *glob_i[64], *glob_j[64];
    ck_assert_int_le(f->n_args, 16);
    ck_assert_int_le(f->n_results, 16);
    ck_assert_int_le(m->n_globals, 64);
    for (int i = 0; i < f->n_args; i++) {
        args[i] = alloc_for(&f->args[i]->type, batch);
        fill(&f->args[i]->type, batch, args[i], seed * 131 + (uint64_t)i, g);
    }
    for (int i = 0; i < f->n_results; i++) {
        res_i[i] = alloc_for(&f->results[i]->type, batch);
        res_j[i] = alloc_for(&f->results[i]->type, batch);
    }
    for (int i = 0; i < m->n_globals; i++) {
        const ir_type *t = &m->globals[i]->type;
        glob_i[i] = alloc_for(t, 1);
        glob_j[i] = alloc_for(t, 1);
        fill(t, 1, glob_i[i], seed * 7919 + (uint64_t)i, g);
        memcpy(glob_j[i], glob_i[i], (size_t)ir_type_numel(t, 1) * 4);
    }
    kiln_diag *d = kiln_diag_create();
    kiln_status si = ir_interp_run(f, batch, args, res_i, glob_i, d);
    ck_assert_msg(si == KILN_OK, "interpreter: %s", kiln_diag_message(d));
    kiln_status sj = cg_program_run(p, fname, batch, args, res_j, glob_j, NULL, d);
    ck_assert_msg(sj == KILN_OK, "jit: %s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    double worst = 0;
    snprintf(where, wn, "-");
    for (int i = 0; i < f->n_results; i++) {
        double e = compare(&f->results[i]->type, batch, res_j[i], res_i[i]);
        if (e > worst || isnan(e)) {
            worst = e;
            snprintf(where, wn, "result %d", i);
        }
    }
    for (int i = 0; i < m->n_globals; i++) {
        double e = compare(&m->globals[i]->type, 1, glob_j[i], glob_i[i]);
        if (e > worst || isnan(e)) {
            worst = e;
            snprintf(where, wn, "global @%s", m->globals[i]->name);
        }
    }
    for (int i = 0; i < f->n_args; i++) free(args[i]);
    for (int i = 0; i < f->n_results; i++) {
        free(res_i[i]);
        free(res_j[i]);
    }
    for (int i = 0; i < m->n_globals; i++) {
        free(glob_i[i]);
        free(glob_j[i]);
    }
    return worst;
}

/* ------------------------------------------------------------ building */

static ir_node *node_of(kiln_func *f, kiln_value v) {
    ck_assert_msg(kiln_value_ok(v), "builder: %s", kiln_func_error(f) ? kiln_func_error(f) : "?");
    return f->values[v.id];
}

static kiln_value in2(kiln_func *f, const char *name, kiln_dtype dt, int64_t a, int64_t b) {
    int64_t dims[2] = {a, b};
    return kiln_input(f, name, dt, 2, dims);
}

static kiln_value in1(kiln_func *f, const char *name, kiln_dtype dt, int64_t a) {
    return kiln_input(f, name, dt, 1, &a);
}

static kiln_value in3(kiln_func *f, const char *name, kiln_dtype dt, int64_t a, int64_t b,
                      int64_t c) {
    int64_t dims[3] = {a, b, c};
    return kiln_input(f, name, dt, 3, dims);
}

static void param(kiln_module *m, const char *name, int rank, const int64_t *dims) {
    kiln_init init = {KILN_INIT_ZEROS, 0, 0};
    ck_assert_int_eq(kiln_module_add_param(m, name, KILN_F32, rank, dims, init, NULL), KILN_OK);
}

static void out(kiln_func *f, kiln_value v) {
    ck_assert_msg(kiln_value_ok(v), "builder: %s", kiln_func_error(f) ? kiln_func_error(f) : "?");
    ck_assert_int_eq(kiln_output(f, v), KILN_OK);
}

/* Internal node builders for the fused ops (no public builder makes them:
 * passes do). */
static ir_node *op_node(kiln_func *f, int op, int n, ir_node **in, const ir_attrs *a) {
    kiln_diag *d = kiln_diag_create();
    ir_builder b;
    ir_builder_init(&b, f, d);
    ir_node *x = ir_b_op(&b, op, n, in, a);
    ck_assert_msg(x != NULL, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return x;
}

static void out_node(kiln_func *f, ir_node *n) {
    ck_assert_int_eq(ir_func_add_result(f, n, NULL), KILN_OK);
}

/* A fused region under construction. */
typedef struct region {
    ir_node *fused;
    ir_builder b;
    kiln_diag *d;
} region;

static void region_begin(region *r, kiln_func *f, int n, ir_node **caps) {
    r->d = kiln_diag_create();
    r->fused = ir_node_create(f->m, IR_OP_fused, n, caps, NULL, ir_loc_none(), r->d);
    ck_assert_ptr_nonnull(r->fused);
    r->fused->region = ir_arena_alloc(&f->m->arena, sizeof(ir_region));
    ir_builder_init(&r->b, f, r->d);
    r->b.region = r->fused->region;
}

static ir_node *rb(region *r, int op, ir_node *x, ir_node *y) {
    ir_node *n = y ? ir_b_bin(&r->b, op, x, y) : ir_b_un(&r->b, op, x);
    ck_assert_msg(n != NULL, "%s", kiln_diag_message(r->d));
    return n;
}

static ir_node *rconst(region *r, double v) {
    ir_node *n = ir_b_scalar(&r->b, v);
    ck_assert_ptr_nonnull(n);
    return n;
}

static void rassign(region *r, const char *global, ir_node *v) {
    ir_global *g = ir_module_global(r->b.f->m, global);
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(ir_b_assign(&r->b, g, v));
}

static ir_node *region_end(region *r, ir_node *yield) {
    r->fused->region->yield = yield;
    ck_assert_int_eq(ir_node_infer(r->fused, r->d), KILN_OK);
    ck_assert_int_eq(ir_func_insert(r->b.f, r->b.f->n_nodes, r->fused, r->d), KILN_OK);
    kiln_diag_dispose(r->d);
    return r->fused;
}

static ir_node *gref(kiln_module *m, const char *name) {
    ir_global *g = ir_module_global(m, name);
    ck_assert_ptr_nonnull(g);
    return g->ref;
}

/* ------------------------------------------------------------ the cases
 * A builder makes function "f" in m for `variant` and may adjust the input
 * generator; it returns false when the variant does not exist. */

typedef bool (*build_fn)(kiln_module *m, int variant, gen *g);

static kiln_value unary(kiln_func *f, const char *op, kiln_value x) {
    if (!strcmp(op, "neg")) return kiln_neg(f, x);
    if (!strcmp(op, "exp")) return kiln_exp(f, x);
    if (!strcmp(op, "log")) return kiln_log(f, x);
    if (!strcmp(op, "sqrt")) return kiln_sqrt(f, x);
    if (!strcmp(op, "relu")) return kiln_relu(f, x);
    if (!strcmp(op, "leaky_relu")) return kiln_leaky_relu(f, x, 0.2);
    if (!strcmp(op, "sigmoid")) return kiln_sigmoid(f, x);
    if (!strcmp(op, "tanh")) return kiln_tanh(f, x);
    if (!strcmp(op, "erf")) return kiln_erf(f, x);
    int act = kiln_activation_from_name(op);
    if (act > 0) return kiln_activate(f, x, (kiln_activation)act, 0.7);
    ck_abort_msg("no unary %s", op);
    return x;
}

static bool build_unary(kiln_module *m, const char *op, int variant, gen *g) {
    if (variant > 1) return false;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = variant == 0 ? in2(f, "x", KILN_F32, B, 13) : in3(f, "x", KILN_F32, B, 3, 5);
    out(f, unary(f, op, x));
    return true;
}

#define UNARY_CASE(op, lo_, hi_)                                                                   \
    static bool build_##op(kiln_module *m, int v, gen *g) {                                        \
        g->lo = lo_;                                                                               \
        g->hi = hi_;                                                                               \
        return build_unary(m, #op, v, g);                                                          \
    }
UNARY_CASE(neg, -2, 2)
UNARY_CASE(exp, -30, 30)
UNARY_CASE(log, 1e-4f, 100)
UNARY_CASE(sqrt, 0, 100)
UNARY_CASE(relu, -2, 2)
UNARY_CASE(leaky_relu, -2, 2)
UNARY_CASE(sigmoid, -20, 20)
UNARY_CASE(tanh, -6, 6)
UNARY_CASE(erf, -5, 5)
UNARY_CASE(elu, -8, 3)
UNARY_CASE(relu6, -2, 8)
UNARY_CASE(gelu, -8, 8)
UNARY_CASE(softplus, -30, 30)
UNARY_CASE(silu, -20, 20)
UNARY_CASE(hard_sigmoid, -5, 5)

static bool build_pow(kiln_module *m, int v, gen *g) {
    static const double e[] = {2, 3, -1, 0.5, -0.5, 1.7, -2.3, 0};
    if (v >= (int)KILN_ARRAY_LEN(e)) return false;
    bool integer = e[v] == floor(e[v]);
    g->lo = integer ? -3 : 0.05f;
    g->hi = 3;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_pow(f, in2(f, "x", KILN_F32, B, 13), e[v]));
    return true;
}

static bool build_cast(kiln_module *m, int v, gen *g) {
    if (v > 2) return false;
    kiln_func *f = kiln_func_create(m, "f");
    if (v == 0) { /* f32 -> i32, out-of-range values saturate */
        g->lo = -4e9f;
        g->hi = 4e9f;
        out(f, kiln_cast(f, in2(f, "x", KILN_F32, B, 13), KILN_I32));
    } else if (v == 1) {
        g->lo = -100;
        g->hi = 100;
        out(f, kiln_cast(f, in2(f, "x", KILN_F32, B, 13), KILN_I32));
    } else {
        g->ilo = -1000;
        g->ihi = 1000;
        out(f, kiln_cast(f, in2(f, "x", KILN_I32, B, 13), KILN_F32));
    }
    return true;
}

typedef kiln_value (*bin_fn)(kiln_func *, kiln_value, kiln_value);

/* Binary broadcast ops: same shapes, a bias row, a column against a row, a
 * scalar against rank 3, and i32 (when allowed). */
static bool build_binary(kiln_module *m, bin_fn fn, bool ints, int v, gen *g) {
    if (v > (ints ? 4 : 3)) return false;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value a, b;
    switch (v) {
    case 0:
        a = in2(f, "a", KILN_F32, B, 13);
        b = in2(f, "b", KILN_F32, B, 13);
        break;
    case 1: {
        int64_t d = 13;
        param(m, "w", 1, &d);
        a = in2(f, "a", KILN_F32, B, 13);
        b = kiln_param(f, "w");
        break;
    }
    case 2:
        a = in2(f, "a", KILN_F32, B, 1);
        b = in1(f, "b", KILN_F32, 13);
        break;
    case 3:
        a = kiln_input(f, "a", KILN_F32, 0, NULL);
        b = in3(f, "b", KILN_F32, B, 5, 7);
        break;
    default:
        g->ilo = -50;
        g->ihi = 50;
        a = in2(f, "a", KILN_I32, B, 13);
        b = in1(f, "b", KILN_I32, 13);
        break;
    }
    out(f, fn(f, a, b));
    return true;
}

#define BINARY_CASE(op, ints)                                                                      \
    static bool build_##op(kiln_module *m, int v, gen *g) {                                        \
        return build_binary(m, kiln_##op, ints, v, g);                                             \
    }
BINARY_CASE(add, true)
BINARY_CASE(sub, true)
BINARY_CASE(mul, true)
BINARY_CASE(maximum, true)
BINARY_CASE(minimum, true)

static bool build_div(kiln_module *m, int v, gen *g) {
    g->lo = 0.25f;
    g->hi = 4;
    return build_binary(m, kiln_div, false, v, g);
}

static bool build_compare(kiln_module *m, bin_fn fn, int v, gen *g) {
    g->int_valued = true; /* equal values happen */
    g->lo = -2;
    g->hi = 2;
    g->ilo = -2;
    g->ihi = 2;
    if (v > 1) return false;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_dtype dt = v == 0 ? KILN_F32 : KILN_I32;
    out(f, fn(f, in2(f, "a", dt, B, 13), in1(f, "b", dt, 13)));
    return true;
}

static bool build_equal(kiln_module *m, int v, gen *g) {
    return build_compare(m, kiln_equal, v, g);
}
static bool build_greater(kiln_module *m, int v, gen *g) {
    return build_compare(m, kiln_greater, v, g);
}

static bool build_select(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    g->ilo = 0;
    g->ihi = 1;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_select(f, in2(f, "c", KILN_I32, B, 13), in2(f, "a", KILN_F32, B, 13),
                       in1(f, "b", KILN_F32, 13)));
    return true;
}

static bool build_broadcast_to(kiln_module *m, int v, gen *g) {
    if (v > 1) return false;
    kiln_func *f = kiln_func_create(m, "f");
    int64_t dims[3] = {B, 4, 13};
    if (v == 0)
        out(f, kiln_broadcast_to(f, in1(f, "x", KILN_F32, 13), 3, dims));
    else
        out(f, kiln_broadcast_to(f, in2(f, "x", KILN_F32, B, 1), 2, (int64_t[]){B, 7}));
    return true;
}

static bool build_constant(kiln_module *m, int v, gen *g) {
    if (v > 2) return false;
    kiln_func *f = kiln_func_create(m, "f");
    if (v == 0) {
        out(f, kiln_constant(f, KILN_F32, 1.5, 2, (int64_t[]){B, 5}));
    } else if (v == 1) {
        out(f, kiln_constant(f, KILN_I32, -7, 0, NULL));
    } else {
        kiln_value x = in2(f, "x", KILN_F32, B, 13);
        out(f, kiln_add(f, x, kiln_constant(f, KILN_F32, 0.25, 0, NULL)));
    }
    return true;
}

/* Reductions: over each axis, all axes, two separated axes with keepdims,
 * long rows (the vectorized path), and i32. */
static bool build_reduce(kiln_module *m, int which, int v, gen *g) {
    kiln_func *f;
    typedef kiln_value (*red_fn)(kiln_func *, kiln_value, int, const int *, int);
    red_fn fn = which == 0 ? kiln_reduce_sum : which == 1 ? kiln_reduce_mean : kiln_reduce_max;
    if (v > (which == 1 ? 6 : 7)) return false;
    f = kiln_func_create(m, "f");
    switch (v) {
    case 0:
        out(f, fn(f, in2(f, "x", KILN_F32, B, 13), 1, (int[]){0}, 0));
        break;
    case 1:
        out(f, fn(f, in2(f, "x", KILN_F32, B, 13), 1, (int[]){1}, 0));
        break;
    case 2:
        out(f, fn(f, in2(f, "x", KILN_F32, B, 13), 0, NULL, 0));
        break;
    case 3:
        out(f, fn(f, in3(f, "x", KILN_F32, B, 5, 7), 2, (int[]){0, 2}, 1));
        break;
    case 4:
        out(f, fn(f, in3(f, "x", KILN_F32, B, 5, 7), 1, (int[]){1}, 0));
        break;
    case 5:
        out(f, fn(f, in2(f, "x", KILN_F32, B, 100), 1, (int[]){-1}, 1));
        break;
    case 6:
        out(f, fn(f, in2(f, "x", KILN_F32, 7, 300), 0, NULL, 0));
        break;
    default:
        g->ilo = -1000;
        g->ihi = 1000;
        out(f, fn(f, in2(f, "x", KILN_I32, B, 13), 1, (int[]){1}, 0));
        break;
    }
    return true;
}

static bool build_reduce_sum(kiln_module *m, int v, gen *g) {
    return build_reduce(m, 0, v, g);
}
static bool build_reduce_mean(kiln_module *m, int v, gen *g) {
    return build_reduce(m, 1, v, g);
}
static bool build_reduce_max(kiln_module *m, int v, gen *g) {
    return build_reduce(m, 2, v, g);
}

static bool build_argmax(kiln_module *m, int v, gen *g) {
    if (v > 3) return false;
    g->int_valued = true; /* ties keep the first index */
    g->lo = -3;
    g->hi = 3;
    g->ilo = -3;
    g->ihi = 3;
    kiln_func *f = kiln_func_create(m, "f");
    switch (v) {
    case 0:
        out(f, kiln_argmax(f, in2(f, "x", KILN_F32, B, 13), 1));
        break;
    case 1:
        out(f, kiln_argmax(f, in2(f, "x", KILN_F32, B, 13), 0));
        break;
    case 2:
        out(f, kiln_argmax(f, in3(f, "x", KILN_F32, B, 5, 7), 1));
        break;
    default:
        out(f, kiln_argmax(f, in2(f, "x", KILN_I32, B, 13), -1));
        break;
    }
    return true;
}

static bool build_softmaxes(kiln_module *m, bool logp, int v, gen *g) {
    if (v > 3) return false;
    g->lo = v == 3 ? -1e4f : -5;
    g->hi = v == 3 ? 1e4f : 5;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value (*fn)(kiln_func *, kiln_value, int) = logp ? kiln_log_softmax : kiln_softmax;
    switch (v) {
    case 0:
        out(f, fn(f, in2(f, "x", KILN_F32, B, 13), -1));
        break;
    case 1:
        out(f, fn(f, in2(f, "x", KILN_F32, B, 10), 0));
        break;
    case 2:
        out(f, fn(f, in3(f, "x", KILN_F32, B, 5, 7), 1));
        break;
    default:
        out(f, fn(f, in2(f, "x", KILN_F32, B, 37), 1));
        break;
    }
    return true;
}

static bool build_softmax(kiln_module *m, int v, gen *g) {
    return build_softmaxes(m, false, v, g);
}
static bool build_log_softmax(kiln_module *m, int v, gen *g) {
    return build_softmaxes(m, true, v, g);
}

static bool build_numel(kiln_module *m, int v, gen *g) {
    if (v > 2) return false;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = in3(f, "x", KILN_F32, B, 5, 7);
    if (v == 0) out(f, kiln_numel(f, x, 0, NULL));
    if (v == 1) out(f, kiln_numel(f, x, 1, (int[]){0}));
    if (v == 2) out(f, kiln_numel(f, x, 2, (int[]){1, 2}));
    return true;
}

/* matmul: a weight parameter, transposed operands, and the batch as the
 * inner dimension (the weight gradient of a layer). */
static bool build_matmul(kiln_module *m, int v, gen *g) {
    if (v > 3) return false;
    kiln_func *f = kiln_func_create(m, "f");
    switch (v) {
    case 0:
        param(m, "w", 2, (int64_t[]){37, 19});
        out(f, kiln_matmul(f, in2(f, "x", KILN_F32, B, 37), kiln_param(f, "w"), 0, 0));
        break;
    case 1:
        out(f, kiln_matmul(f, in2(f, "x", KILN_F32, B, 37), in2(f, "w", KILN_F32, 19, 37), 0, 1));
        break;
    case 2:
        out(f, kiln_matmul(f, in2(f, "x", KILN_F32, B, 17), in2(f, "dy", KILN_F32, B, 23), 1, 0));
        break;
    default:
        out(f, kiln_matmul(f, in2(f, "a", KILN_F32, 17, B), in2(f, "b", KILN_F32, B, 5), 0, 0));
        break;
    }
    return true;
}

/* matmul_mask(a, b, h): each transpose the backward uses, relu's mask
 * (alpha 0) and leaky_relu's; the last variant wide (several panels, the
 * last one masked). h's random signs mask about half the elements. */
static bool build_matmul_mask(kiln_module *m, int v, gen *g) {
    if (v > 3) return false;
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *in[3];
    ir_attrs a = ir_attrs_default(IR_OP_matmul_mask);
    switch (v) {
    case 0: /* x W, W a parameter */
        param(m, "w", 2, (int64_t[]){37, 19});
        in[0] = node_of(f, in2(f, "x", KILN_F32, B, 37));
        in[1] = gref(m, "w");
        in[2] = node_of(f, in2(f, "h", KILN_F32, B, 19));
        break;
    case 1: /* dz W^T (the seed step's form), leaky_relu's */
        in[0] = node_of(f, in2(f, "dz", KILN_F32, B, 37));
        in[1] = node_of(f, in2(f, "w", KILN_F32, 19, 37));
        in[2] = node_of(f, in2(f, "h", KILN_F32, B, 19));
        ir_attrs_set_i(&a, "transpose_b", 1);
        ir_attrs_set_f(&a, "alpha", 0.3);
        break;
    case 2: /* x^T dy over the batch */
        in[0] = node_of(f, in2(f, "x", KILN_F32, B, 17));
        in[1] = node_of(f, in2(f, "dy", KILN_F32, B, 23));
        in[2] = node_of(f, in2(f, "h", KILN_F32, 17, 23));
        ir_attrs_set_i(&a, "transpose_a", 1);
        break;
    default:
        in[0] = node_of(f, in2(f, "dz", KILN_F32, B, 64));
        in[1] = node_of(f, in2(f, "w", KILN_F32, 130, 64));
        in[2] = node_of(f, in2(f, "h", KILN_F32, B, 130));
        ir_attrs_set_i(&a, "transpose_b", 1);
        break;
    }
    out_node(f, op_node(f, IR_OP_matmul_mask, 3, in, &a));
    return true;
}

/* One process: the identity, through the shim's call. */
static bool build_allreduce_mean(kiln_module *m, int v, gen *g) {
    if (v > 1) return false;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = in3(f, "x", KILN_F32, B, 5, 7);
    if (v == 0) out(f, kiln_allreduce_mean(f, x));
    if (v == 1) out(f, kiln_neg(f, kiln_allreduce_mean(f, kiln_exp(f, x))));
    return true;
}

/* One process: the identity, after the start's call. */
static bool build_allreduce_wait(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = in3(f, "x", KILN_F32, B, 5, 7);
    out(f, kiln_neg(f, kiln_allreduce_wait(f, kiln_allreduce_mean(f, kiln_exp(f, x)))));
    return true;
}

static bool build_reshape(kiln_module *m, int v, gen *g) {
    if (v > 2) return false;
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = in2(f, "x", KILN_F32, B, 12);
    if (v == 0) {
        kiln_value r = kiln_reshape(f, kiln_exp(f, x), 3, (int64_t[]){B, 3, 4});
        out(f, kiln_neg(f, r));
    } else if (v == 1) {
        out(f, kiln_reshape(f, x, 3, (int64_t[]){B, 4, 3}));
    } else { /* a view that is also a result, next to its source */
        kiln_value e = kiln_exp(f, x);
        out(f, e);
        out(f, kiln_reshape(f, e, 2, (int64_t[]){B, 12}));
    }
    return true;
}

static bool build_transpose(kiln_module *m, int v, gen *g) {
    if (v > 2) return false;
    kiln_func *f = kiln_func_create(m, "f");
    if (v == 0)
        out(f, kiln_transpose(f, in3(f, "x", KILN_F32, B, 5, 7), 3, (int[]){2, 0, 1}));
    else if (v == 1)
        out(f, kiln_transpose(f, in2(f, "x", KILN_F32, B, 13), 0, NULL));
    else /* the batch stays first: rows apart, run in chunks */
        out(f, kiln_transpose(f, in3(f, "x", KILN_F32, B, 5, 7), 3, (int[]){0, 2, 1}));
    return true;
}

static bool build_one_hot(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    g->ilo = -1; /* out of range: a zero row */
    g->ihi = 9;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_one_hot(f, in1(f, "y", KILN_I32, B), 9));
    return true;
}

static bool build_categorical_crossentropy(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    g->lo = 0.01f;
    g->hi = 1;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_categorical_crossentropy(f, in2(f, "p", KILN_F32, B, 10),
                                         in2(f, "y", KILN_F32, B, 10)));
    return true;
}

static bool build_sparse_categorical_crossentropy(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    g->lo = 0.01f;
    g->hi = 1;
    g->ilo = 0;
    g->ihi = 9;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_sparse_categorical_crossentropy(f, in2(f, "p", KILN_F32, B, 10),
                                                in1(f, "y", KILN_I32, B)));
    return true;
}

static bool build_mean_squared_error(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_mean_squared_error(f, in2(f, "p", KILN_F32, B, 13), in2(f, "y", KILN_F32, B, 13)));
    return true;
}

static bool build_binary_crossentropy(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    g->lo = 0; /* includes values that clip */
    g->hi = 1;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_binary_crossentropy(f, in2(f, "p", KILN_F32, B, 13), in2(f, "y", KILN_F32, B, 13)));
    return true;
}

static bool build_nll(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    g->lo = -5;
    g->hi = 0;
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_nll(f, in2(f, "lp", KILN_F32, B, 10), in2(f, "y", KILN_F32, B, 10)));
    return true;
}

/* dense with each activation it accepts. */
static bool build_dense(kiln_module *m, int v, gen *g) {
    static const int acts[] = {KILN_ACT_NONE, KILN_ACT_RELU, KILN_ACT_LEAKY_RELU, KILN_ACT_SIGMOID,
                               KILN_ACT_TANH};
    int n_acts = (int)KILN_ARRAY_LEN(acts);
    if (v > n_acts) return false;
    /* The last variant is wide: several 64-column blocks in the batch-1 path. */
    int64_t kk = v < n_acts ? 37 : 70, nn = v < n_acts ? 19 : 130;
    param(m, "k", 2, (int64_t[]){kk, nn});
    param(m, "b", 1, (int64_t[]){nn});
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *in[3] = {node_of(f, in2(f, "x", KILN_F32, B, kk)), gref(m, "k"), gref(m, "b")};
    ir_attrs a = tu_attrs1(IR_OP_dense, "activation", tu_act_op(v < n_acts ? acts[v] : KILN_ACT_RELU));
    ir_attrs_set_f(&a, "alpha", 0.3);
    out_node(f, op_node(f, IR_OP_dense, 3, in, &a));
    return true;
}

/* ---- convolution and pooling: one geometry per variant ---- */
typedef struct wspec {
    int64_t h, w, c, kh, kw, co, s, dl;
    int same, act;
} wspec;

static const wspec g_conv_specs[] = {
    {6, 6, 3, 3, 3, 8, 1, 1, 0, KILN_ACT_RELU},       {7, 5, 2, 3, 3, 5, 2, 1, 1, KILN_ACT_NONE},
    {4, 5, 1, 2, 2, 3, 1, 1, 1, KILN_ACT_LEAKY_RELU}, {6, 7, 2, 2, 3, 4, 1, 2, 0, KILN_ACT_SIGMOID},
    {5, 5, 16, 3, 3, 33, 1, 1, 1, KILN_ACT_TANH},
    /* conv2d's direct kernel (lower_conv.c): one input channel, 32 out (fashion_cnn's
     * first layer: the shared loop over blocks of columns); `same` with a 5x5 window
     * (edge columns left out tap by tap), 17 out (a 1-lane vector); 3 channels at
     * stride 2 and at dilation 2; dilation 2, 40 out (3 vectors); 4 channels, 70 out
     * (groups of vectors) */
    {28, 28, 1, 3, 3, 32, 1, 1, 0, KILN_ACT_RELU},    {9, 23, 1, 5, 5, 17, 1, 1, 1, KILN_ACT_NONE},
    {11, 13, 3, 3, 3, 20, 2, 1, 1, KILN_ACT_RELU},    {13, 19, 3, 3, 3, 12, 1, 2, 1, KILN_ACT_LEAKY_RELU},
    {15, 17, 1, 3, 3, 40, 1, 2, 0, KILN_ACT_SIGMOID}, {10, 30, 4, 3, 3, 70, 1, 1, 1, KILN_ACT_RELU},
};
static const wspec g_pool_specs[] = {
    {6, 6, 3, 2, 2, 0, 2, 1, 0, 0}, {7, 7, 9, 3, 3, 0, 2, 1, 1, 0}, {5, 5, 2, 2, 2, 0, 1, 1, 1, 0},
    /* windows that tile the image (max_pool2d_grad stores), relu_mask, 19 channels */
    {6, 8, 19, 2, 2, 0, 2, 1, 0, 0},
};

static int64_t out_dim(int64_t in, int64_t k, int64_t s, int64_t dl, int same) {
    return same ? (in + s - 1) / s : (in - (k - 1) * dl - 1) / s + 1;
}

static kiln_value image(kiln_func *f, const char *name, int64_t h, int64_t w, int64_t c) {
    return kiln_input(f, name, KILN_F32, 4, (int64_t[]){B, h, w, c});
}

static ir_attrs win_attrs(int op, const wspec *w) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_ints(&a, "strides", 2, (const int64_t[]){w->s, w->s});
    if (ir_op_attr_index(op, "dilation") >= 0)
        ir_attrs_set_ints(&a, "dilation", 2, (const int64_t[]){w->dl, w->dl});
    else
        ir_attrs_set_ints(&a, "pool_size", 2, (const int64_t[]){w->kh, w->kw});
    ir_attrs_set_i(&a, "padding", w->same);
    return a;
}

/* conv2d and its gradient rows: x, dz images, kernel (and bias) params. */
static bool build_conv_op(kiln_module *m, int v, int op) {
    if (v >= (int)KILN_ARRAY_LEN(g_conv_specs)) return false;
    const wspec *w = &g_conv_specs[v];
    int64_t oh = out_dim(w->h, w->kh, w->s, w->dl, w->same);
    int64_t ow = out_dim(w->w, w->kw, w->s, w->dl, w->same);
    param(m, "k", 4, (int64_t[]){w->kh, w->kw, w->c, w->co});
    param(m, "b", 1, (int64_t[]){w->co});
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *x = node_of(f, image(f, "x", w->h, w->w, w->c));
    ir_attrs a = win_attrs(op, w);
    if (op == IR_OP_conv2d) {
        ir_attrs_set_i(&a, "activation", tu_act_op(w->act));
        ir_attrs_set_f(&a, "alpha", 0.3);
        out_node(f, op_node(f, op, 3, (ir_node *[]){x, gref(m, "k"), gref(m, "b")}, &a));
        return true;
    }
    ir_node *dz = node_of(f, image(f, "dz", oh, ow, w->co));
    ir_node *in[3] = {dz, gref(m, "k"), x};
    if (op == IR_OP_conv2d_grad_filter) {
        in[0] = x;
        in[1] = dz;
        in[2] = gref(m, "k");
    }
    out_node(f, op_node(f, op, 3, in, &a));
    return true;
}

/* pad: padded on every axis but the batch, cropped, an i32 operand;
 * mode reflect (f32) and edge (i32), padded and cropped. */
static bool build_pad(kiln_module *m, int v, gen *g) {
    static const int64_t bf[][3] = {{0, 2, 1}, {0, -1, 3}, {0, 0, 0}, {0, 4, -2}, {0, 3, 2}},
                         af[][3] = {{0, 1, 0}, {0, 2, -4}, {0, 3, 1}, {0, -1, 6}, {0, 5, -3}};
    if (v > 4) return false;
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *x = node_of(f, in3(f, "x", v == 2 || v == 4 ? KILN_I32 : KILN_F32, B, 5, 7));
    ir_attrs a = ir_attrs_default(IR_OP_pad);
    ir_attrs_set_ints(&a, "before", 3, bf[v]);
    ir_attrs_set_ints(&a, "after", 3, af[v]);
    ir_attrs_set_f(&a, "value", v == 0 ? -1.5 : 7);
    ir_attrs_set_i(&a, "mode", v < 3 ? 0 : v - 2);
    out_node(f, op_node(f, IR_OP_pad, 1, &x, &a));
    return true;
}

static bool build_conv2d(kiln_module *m, int v, gen *g) { return build_conv_op(m, v, IR_OP_conv2d); }
static bool build_conv2d_grad_input(kiln_module *m, int v, gen *g) {
    return build_conv_op(m, v, IR_OP_conv2d_grad_input);
}
static bool build_conv2d_grad_filter(kiln_module *m, int v, gen *g) {
    return build_conv_op(m, v, IR_OP_conv2d_grad_filter);
}

/* Pooling forward (x) and gradient (x, dy). */
static bool build_pool_op(kiln_module *m, int v, int op) {
    if (v >= (int)KILN_ARRAY_LEN(g_pool_specs)) return false;
    const wspec *w = &g_pool_specs[v];
    int64_t oh = out_dim(w->h, w->kh, w->s, 1, w->same), ow = out_dim(w->w, w->kw, w->s, 1, w->same);
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *in[2] = {node_of(f, image(f, "x", w->h, w->w, w->c)), NULL};
    bool grad = op == IR_OP_max_pool2d_grad || op == IR_OP_avg_pool2d_grad;
    if (grad) in[1] = node_of(f, image(f, "dy", oh, ow, w->c));
    ir_attrs a = win_attrs(op, w);
    /* relu's derivative folded into max pooling's (grad_conv2d) */
    if (op == IR_OP_max_pool2d_grad && v % 2) ir_attrs_set_i(&a, "relu_mask", 1);
    out_node(f, op_node(f, op, grad ? 2 : 1, in, &a));
    return true;
}

/* conv2d_grad_bias(dz): the pooling shapes' images as dz. */
static bool build_conv2d_grad_bias(kiln_module *m, int v, gen *g) {
    if (v >= (int)KILN_ARRAY_LEN(g_pool_specs)) return false;
    const wspec *w = &g_pool_specs[v];
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *dz = node_of(f, image(f, "dz", w->h, w->w, w->c));
    ir_attrs a = ir_attrs_default(IR_OP_conv2d_grad_bias);
    out_node(f, op_node(f, IR_OP_conv2d_grad_bias, 1, &dz, &a));
    return true;
}

static bool build_max_pool2d(kiln_module *m, int v, gen *g) {
    return build_pool_op(m, v, IR_OP_max_pool2d);
}
static bool build_avg_pool2d(kiln_module *m, int v, gen *g) {
    return build_pool_op(m, v, IR_OP_avg_pool2d);
}
static bool build_max_pool2d_grad(kiln_module *m, int v, gen *g) {
    return build_pool_op(m, v, IR_OP_max_pool2d_grad);
}
static bool build_avg_pool2d_grad(kiln_module *m, int v, gen *g) {
    return build_pool_op(m, v, IR_OP_avg_pool2d_grad);
}

/* dropout: Philox in LLVM IR equals the interpreter's bit for bit (vector
 * body, scalar tail; a seed with high key bits; a random step). */
static bool build_dropout(kiln_module *m, int v, gen *g) {
    if (v > 1) return false;
    g->ilo = 0;
    g->ihi = 100000;
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *x = node_of(f, v == 0 ? in2(f, "x", KILN_F32, B, 37) : in3(f, "x", KILN_F32, B, 3, 5));
    ir_node *in[2] = {x, node_of(f, kiln_input(f, "step", KILN_I32, 0, NULL))};
    ir_attrs a = tu_attrs1(IR_OP_dropout, "rate", v == 0 ? 0.5 : 0.1);
    ir_attrs_set_i(&a, "seed", v == 0 ? 1 : (5 + (1ll << 33)));
    ir_attrs_set_i(&a, "node", v == 0 ? 3 : 12);
    out_node(f, op_node(f, IR_OP_dropout, 2, in, &a));
    return true;
}

/* batch_norm: batch statistics over [?,37] and NHWC [?,3,4,6], moving ones. */
static bool build_batch_norm(kiln_module *m, int v, gen *g) {
    if (v > 2) return false;
    g->lo = 0.5f; /* the variances too */
    g->hi = 2;
    int64_t ch = v == 2 ? 6 : 37;
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *in[5];
    in[0] = node_of(f, v == 2 ? kiln_input(f, "x", KILN_F32, 4, (int64_t[]){B, 3, 4, 6})
                              : in2(f, "x", KILN_F32, B, ch));
    static const char *names[4] = {"g", "b", "m", "v"};
    for (int k = 1; k < 5; k++) in[k] = node_of(f, in1(f, names[k - 1], KILN_F32, ch));
    ir_attrs a = tu_attrs1(IR_OP_batch_norm, "training", v != 1);
    out_node(f, op_node(f, IR_OP_batch_norm, 5, in, &a));
    return true;
}

/* softmax_cross_entropy: one-hot targets, i32 labels, huge logits. */
static bool build_softmax_cross_entropy(kiln_module *m, int v, gen *g) {
    if (v > 2) return false;
    g->lo = v == 2 ? -1e4f : -5;
    g->hi = v == 2 ? 1e4f : 5;
    g->ilo = 0;
    g->ihi = 9;
    kiln_func *f = kiln_func_create(m, "f");
    ir_node *in[2] = {node_of(f, in2(f, "z", KILN_F32, B, 10)),
                      v == 1 ? node_of(f, in1(f, "y", KILN_I32, B))
                             : node_of(f, in2(f, "y", KILN_F32, B, 10))};
    out_node(f, op_node(f, IR_OP_softmax_cross_entropy, 2, in, NULL));
    return true;
}

/* assign at top level: a parameter updated from the batch. */
static bool build_assign(kiln_module *m, int v, gen *g) {
    if (v > 0) return false;
    param(m, "w", 1, (int64_t[]){13});
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value s = kiln_reduce_sum(f, in2(f, "x", KILN_F32, B, 13), 1, (int[]){0}, 0);
    kiln_value w2 = kiln_add(f, kiln_param(f, "w"), s);
    ir_builder b;
    ir_builder_init(&b, f, NULL);
    ck_assert_ptr_nonnull(ir_b_assign(&b, ir_module_global(m, "w"), node_of(f, w2)));
    out(f, s);
    return true;
}

/* fused regions: a yielding region with broadcasts, an Adam update of
 * three globals (no yield), a region that must run node by node (a scalar
 * global written and read back), and one with i32 values inside. */
static bool build_fused(kiln_module *m, int v, gen *g) {
    if (v > 3) return false;
    region r;
    if (v == 0) {
        param(m, "b", 1, (int64_t[]){13});
        kiln_func *f = kiln_func_create(m, "f");
        ir_node *x = node_of(f, in2(f, "x", KILN_F32, B, 13));
        ir_node *s = node_of(f, in2(f, "s", KILN_F32, B, 1));
        ir_node *caps[3] = {x, gref(m, "b"), s};
        region_begin(&r, f, 3, caps);
        ir_node *t = rb(&r, IR_OP_add, x, gref(m, "b"));
        ir_node *u = rb(&r, IR_OP_relu, t, NULL);
        ir_node *w = rb(&r, IR_OP_mul, u, s);
        ir_node *e = rb(&r, IR_OP_tanh, rb(&r, IR_OP_sub, w, rconst(&r, 0.5)), NULL);
        out_node(f, region_end(&r, e));
    } else if (v == 1) {
        int64_t d[2] = {13, 7};
        param(m, "w", 2, d);
        param(m, "m", 2, d);
        param(m, "v", 2, d);
        kiln_func *f = kiln_func_create(m, "f");
        ir_node *gr = node_of(f, in2(f, "g", KILN_F32, 13, 7));
        ir_node *al = node_of(f, kiln_input(f, "alpha", KILN_F32, 0, NULL));
        ir_node *caps[5] = {gref(m, "m"), gr, gref(m, "v"), al, gref(m, "w")};
        g->lo = 0.01f; /* v >= 0 */
        g->hi = 1;
        region_begin(&r, f, 5, caps);
        ir_node *m1 = rb(&r, IR_OP_add, gref(m, "m"),
                         rb(&r, IR_OP_mul, rb(&r, IR_OP_sub, gr, gref(m, "m")), rconst(&r, 0.1)));
        rassign(&r, "m", m1);
        ir_node *g2 = rb(&r, IR_OP_mul, gr, gr);
        ir_node *v1 = rb(&r, IR_OP_add, gref(m, "v"),
                         rb(&r, IR_OP_mul, rb(&r, IR_OP_sub, g2, gref(m, "v")), rconst(&r, 0.001)));
        rassign(&r, "v", v1);
        ir_node *den = rb(&r, IR_OP_add, rb(&r, IR_OP_sqrt, v1, NULL), rconst(&r, 1e-7));
        ir_node *step = rb(&r, IR_OP_div, rb(&r, IR_OP_mul, m1, al), den);
        rassign(&r, "w", rb(&r, IR_OP_sub, gref(m, "w"), step));
        region_end(&r, NULL);
        out(f, kiln_reduce_sum(f, kiln_param(f, "w"), 0, NULL, 0));
    } else if (v == 2) {
        param(m, "c", 0, NULL);
        kiln_func *f = kiln_func_create(m, "f");
        ir_node *x = node_of(f, in2(f, "x", KILN_F32, B, 13));
        ir_node *caps[2] = {gref(m, "c"), x};
        region_begin(&r, f, 2, caps);
        ir_node *c1 = rb(&r, IR_OP_add, gref(m, "c"), rconst(&r, 1));
        rassign(&r, "c", c1);
        ir_node *y = rb(&r, IR_OP_mul, x, gref(m, "c")); /* reads the new value */
        out_node(f, region_end(&r, y));
    } else {
        kiln_func *f = kiln_func_create(m, "f");
        g->int_valued = true;
        g->lo = -3;
        g->hi = 3;
        ir_node *x = node_of(f, in2(f, "x", KILN_F32, B, 13));
        ir_node *y = node_of(f, in1(f, "y", KILN_F32, 13));
        ir_node *caps[2] = {x, y};
        region_begin(&r, f, 2, caps);
        ir_node *gt = rb(&r, IR_OP_greater, x, y);
        ir_node *eq = rb(&r, IR_OP_equal, x, y);
        ir_node *both = rb(&r, IR_OP_add, gt, eq);
        ir_attrs a = tu_attrs1(IR_OP_cast, "dtype", IR_F32);
        ir_node *fl = ir_b_op(&r.b, IR_OP_cast, 1, &both, &a);
        ck_assert_ptr_nonnull(fl);
        ir_node *sel[3] = {gt, x, y};
        ir_node *s = ir_b_op(&r.b, IR_OP_select, 3, sel, NULL);
        ck_assert_ptr_nonnull(s);
        out_node(f, region_end(&r, rb(&r, IR_OP_add, s, fl)));
    }
    return true;
}

typedef struct codegen_case {
    const char *op;
    build_fn build;
} codegen_case;

static const codegen_case g_cases[] = {
    {"neg", build_neg},
    {"exp", build_exp},
    {"log", build_log},
    {"sqrt", build_sqrt},
    {"pow", build_pow},
    {"relu", build_relu},
    {"leaky_relu", build_leaky_relu},
    {"sigmoid", build_sigmoid},
    {"tanh", build_tanh},
    {"cast", build_cast},
    {"add", build_add},
    {"sub", build_sub},
    {"mul", build_mul},
    {"div", build_div},
    {"maximum", build_maximum},
    {"minimum", build_minimum},
    {"equal", build_equal},
    {"greater", build_greater},
    {"select", build_select},
    {"broadcast_to", build_broadcast_to},
    {"constant", build_constant},
    {"reduce_sum", build_reduce_sum},
    {"reduce_mean", build_reduce_mean},
    {"reduce_max", build_reduce_max},
    {"argmax", build_argmax},
    {"softmax", build_softmax},
    {"log_softmax", build_log_softmax},
    {"numel", build_numel},
    {"matmul", build_matmul},
    {"reshape", build_reshape},
    {"allreduce_mean", build_allreduce_mean},
    {"allreduce_wait", build_allreduce_wait},
    {"transpose", build_transpose},
    {"one_hot", build_one_hot},
    {"dropout", build_dropout},
    {"batch_norm", build_batch_norm},
    {"categorical_crossentropy", build_categorical_crossentropy},
    {"sparse_categorical_crossentropy", build_sparse_categorical_crossentropy},
    {"mean_squared_error", build_mean_squared_error},
    {"binary_crossentropy", build_binary_crossentropy},
    {"nll", build_nll},
    {"dense", build_dense},
    {"softmax_cross_entropy", build_softmax_cross_entropy},
    {"assign", build_assign},
    {"fused", build_fused},
    {"conv2d", build_conv2d},
    {"conv2d_grad_input", build_conv2d_grad_input},
    {"conv2d_grad_filter", build_conv2d_grad_filter},
    {"max_pool2d", build_max_pool2d},
    {"avg_pool2d", build_avg_pool2d},
    {"max_pool2d_grad", build_max_pool2d_grad},
    {"avg_pool2d_grad", build_avg_pool2d_grad},
    {"erf", build_erf},
    {"elu", build_elu},
    {"relu6", build_relu6},
    {"gelu", build_gelu},
    {"softplus", build_softplus},
    {"silu", build_silu},
    {"hard_sigmoid", build_hard_sigmoid},
    {"conv2d_grad_bias", build_conv2d_grad_bias},
    {"pad", build_pad},
    {"matmul_mask", build_matmul_mask},
};

static const int64_t g_batches[] = {1, 7, 33, 128};

/* Plans m's memory (codegen places none itself); returns m. */
static kiln_module *planned_module(kiln_module *m) {
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(pass_run_pipeline(m, "plan-memory", NULL, d) == KILN_OK, "plan-memory: %s",
                  kiln_diag_message(d));
    kiln_diag_dispose(d);
    return m;
}

/* All variants of one case: unplanned (codegen refuses it: plan-memory
 * places every byte), then planned, then, if plan-memory found its rows
 * independent (mem_chunk), planned with chunks of 3 rows, so every batch
 * above 3 runs as several chunks and a ragged last one. */
static void run_case(const codegen_case *cc) {
    int variants = 0;
    for (int v = 0;; v++) {
        for (int planned = 0; planned < 3; planned++) {
            kiln_module *m = kiln_module_create("t");
            gen g = {-2, 2, -5, 5, false};
            if (!cc->build(m, v, &g)) {
                kiln_module_dispose(m);
                ck_assert_msg(variants > 0, "%s: no variant built", cc->op);
                return;
            }
            kiln_diag *d = kiln_diag_create();
            cg_program *p = NULL;
            if (!planned) {
                ck_assert_int_eq(cg_jit_compile(m, NULL, &p, d), KILN_ERR_INVALID);
                ck_assert_ptr_null(p);
                ck_assert_msg(strstr(kiln_diag_message(d), "run plan-memory first"), "%s/%d: %s",
                              cc->op, v, kiln_diag_message(d));
                kiln_diag_dispose(d);
                kiln_module_dispose(m);
                continue;
            }
            ck_assert_msg(pass_run_pipeline(m, "plan-memory", NULL, d) == KILN_OK,
                          "%s/%d: plan-memory: %s", cc->op, v, kiln_diag_message(d));
            if (planned == 2) {
                kiln_func *f = kiln_module_func(m, "f");
                if (!f->mem_chunk) {
                    kiln_diag_dispose(d);
                    kiln_module_dispose(m);
                    continue;
                }
                f->mem_chunk = 3;
            }
            kiln_status st = cg_jit_compile(m, NULL, &p, d);
            ck_assert_msg(st == KILN_OK, "%s/%d: %s", cc->op, v, kiln_diag_message(d));
            /* Chunks run in order at 1 thread, as parallel tasks at 2. */
            for (int threads = 1; threads <= (planned == 2 ? 2 : 1); threads++) {
                kiln_pool_set_threads(threads);
                for (size_t bi = 0; bi < KILN_ARRAY_LEN(g_batches); bi++) {
                    char where[96];
                    double e = diff_run(m, "f", p, g_batches[bi], 1000 + (uint64_t)bi, &g, where,
                                        sizeof where);
                    ck_assert_msg(e <= 1,
                                  "%s variant %d%s, batch %lld, %d thread(s): %s differs, %g x "
                                  "tolerance",
                                  cc->op, v, planned == 2 ? " (in chunks of 3)" : " (planned)",
                                  (long long)g_batches[bi], threads, where, e);
                }
            }
            kiln_pool_set_threads(1);
            cg_program_dispose(p);
            kiln_diag_dispose(d);
            kiln_module_dispose(m);
        }
        variants++;
    }
}

/* conv2d's direct kernel at each vector width it is built for (16: AVX-512
 * registers, 8: AVX2, 4: the portable one; lower_conv.c sizes its register
 * blocks by the width), every conv geometry, equal to the interpreter. */
START_TEST(test_conv2d_widths) {
    static const int widths[] = {4, 8, 16};
    for (size_t wi = 0; wi < KILN_ARRAY_LEN(widths); wi++)
        for (int v = 0; v < (int)KILN_ARRAY_LEN(g_conv_specs); v++) {
            kiln_module *m = kiln_module_create("t");
            gen g = {-2, 2, -5, 5, false};
            ck_assert(build_conv2d(m, v, &g));
            planned_module(m);
            cg_options o = {.gemm_width = widths[wi], .no_cache = true};
            kiln_diag *d = kiln_diag_create();
            cg_program *p = NULL;
            ck_assert_msg(cg_jit_compile(m, &o, &p, d) == KILN_OK, "%s", kiln_diag_message(d));
            for (size_t bi = 0; bi < KILN_ARRAY_LEN(g_batches); bi++) {
                char where[96];
                double e =
                    diff_run(m, "f", p, g_batches[bi], 77 + (uint64_t)bi, &g, where, sizeof where);
                ck_assert_msg(e <= 1,
                              "width %d, geometry %d, batch %lld: %s differs, %g x tolerance",
                              widths[wi], v, (long long)g_batches[bi], where, e);
            }
            cg_program_dispose(p);
            kiln_diag_dispose(d);
            kiln_module_dispose(m);
        }
}
END_TEST

START_TEST(test_op_differential) {
    run_case(&g_cases[_i]);
}
END_TEST

/* Every op that keeps batch rows apart (IR_FACT_ROWWISE) has a case that
 * plan-memory chunks, so run_case checks it in chunks against the
 * interpreter (which runs whole batches). */
START_TEST(test_rowwise_ops_chunked) {
    for (int op = IR_FIRST_OP; op < IR_NUM_OPCODES; op++) {
        if (!ir_op_has(op, IR_FACT_ROWWISE)) continue;
        int chunked = 0;
        for (size_t i = 0; i < KILN_ARRAY_LEN(g_cases); i++) {
            if (strcmp(g_cases[i].op, ir_op_name(op))) continue;
            for (int v = 0;; v++) {
                kiln_module *m = kiln_module_create("t");
                gen g = {-2, 2, -5, 5, false};
                bool built = g_cases[i].build(m, v, &g);
                if (built) chunked += planned_module(m) && kiln_module_func(m, "f")->mem_chunk > 0;
                kiln_module_dispose(m);
                if (!built) break;
            }
        }
        ck_assert_msg(chunked > 0, "op '%s' (rowwise) has no case that runs in chunks",
                      ir_op_name(op));
    }
}
END_TEST

/* Every op of ops.def has a lowering and a case here. */
START_TEST(test_every_op_covered) {
    for (int op = IR_FIRST_OP; op < IR_NUM_OPCODES; op++) {
        const char *name = ir_op_name(op);
        ck_assert_msg(cg_has_lowering(op), "op '%s' has no lowering", name);
        bool found = false;
        for (size_t i = 0; i < KILN_ARRAY_LEN(g_cases); i++)
            if (strcmp(g_cases[i].op, name) == 0) found = true;
        ck_assert_msg(found, "op '%s' has no codegen test case in test_codegen.c", name);
    }
}
END_TEST

/* ---------------------------------------------------------- MNIST model */

/* Keras' MNIST MLP as primitive ops: 784-128-64-10, softmax and
 * categorical cross-entropy, Adam. */
static kiln_module *mnist_model(void) {
    kiln_module *m = kiln_module_create("mnist_mlp");
    kiln_init glorot = {KILN_INIT_GLOROT_UNIFORM, 0, 0}, zeros = {KILN_INIT_ZEROS, 0, 0};
    const int64_t sizes[4] = {784, 128, 64, 10};
    const char *names[3] = {"h1", "h2", "out"};
    for (int l = 0; l < 3; l++) {
        char k[32], b[32];
        snprintf(k, sizeof k, "%s.kernel", names[l]);
        snprintf(b, sizeof b, "%s.bias", names[l]);
        ck_assert_int_eq(kiln_module_add_param(m, k, KILN_F32, 2,
                                               (int64_t[]){sizes[l], sizes[l + 1]}, glorot, NULL),
                         KILN_OK);
        ck_assert_int_eq(kiln_module_add_param(m, b, KILN_F32, 1, &sizes[l + 1], zeros, NULL),
                         KILN_OK);
    }
    kiln_func *f = kiln_func_create(m, "loss");
    kiln_value x = in2(f, "x", KILN_F32, B, 784);
    kiln_value y = in2(f, "y", KILN_F32, B, 10);
    kiln_value h = x;
    for (int l = 0; l < 3; l++) {
        char k[32], b[32];
        snprintf(k, sizeof k, "%s.kernel", names[l]);
        snprintf(b, sizeof b, "%s.bias", names[l]);
        h = kiln_add(f, kiln_matmul(f, h, kiln_param(f, k), 0, 0), kiln_param(f, b));
        h = l < 2 ? kiln_relu(f, h) : kiln_softmax(f, h, -1);
    }
    out(f, kiln_categorical_crossentropy(f, h, y));
    m->train.present = true;
    m->train.opt = ir_optimizer_defaults(IR_OPT_ADAM);
    m->train.batch_size = 128;
    return m;
}

static void **init_globals(kiln_module *m, uint64_t seed) {
    void **gl = calloc((size_t)m->n_globals, sizeof *gl);
    for (int i = 0; i < m->n_globals; i++) {
        gl[i] = alloc_for(&m->globals[i]->type, 1);
        ck_assert_int_eq(ir_global_init(m->globals[i], seed, gl[i], NULL), KILN_OK);
    }
    return gl;
}

START_TEST(test_mnist_five_train_steps) {
    kiln_module *m = mnist_model();
    kiln_diag *d = kiln_diag_create();
    kiln_status st = pass_run_pipeline(m, "train", NULL, d);
    ck_assert_msg(st == KILN_OK, "train pipeline: %s", kiln_diag_message(d));
    kiln_func *f = kiln_module_func(m, "train_step");
    ck_assert_ptr_nonnull(f);
    cg_program *p = NULL;
    st = cg_jit_compile(m, NULL, &p, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    printf("mnist train_step: JIT compile %.1f ms\n", cg_program_compile_ms(p));
    void **gi = init_globals(m, 42), **gj = init_globals(m, 42);
    /* Four full batches and a short last one, images in [0, 1), one-hot labels. */
    const int64_t batches[5] = {128, 128, 128, 128, 33};
    for (int s = 0; s < 5; s++) {
        int64_t bs = batches[s];
        void *args[8];
        ck_assert_int_le(f->n_args, 8);
        float *x = malloc(sizeof(float) * (size_t)(bs * 784));
        float *y = calloc((size_t)(bs * 10), sizeof(float));
        tu_fill_uniform(x, bs * 784, 77 + (uint64_t)s, 0, 1);
        for (int64_t i = 0; i < bs; i++) y[i * 10 + (i * 7 + s) % 10] = 1;
        ck_assert_str_eq(f->args[0]->name, "x");
        args[0] = x;
        args[1] = y;
        void *ri[8], *rj[8];
        for (int i = 0; i < f->n_results; i++) {
            ri[i] = alloc_for(&f->results[i]->type, bs);
            rj[i] = alloc_for(&f->results[i]->type, bs);
        }
        ck_assert_msg(ir_interp_run(f, bs, args, ri, gi, d) == KILN_OK, "%s", kiln_diag_message(d));
        ck_assert_msg(cg_program_run(p, "train_step", bs, args, rj, gj, NULL, d) == KILN_OK, "%s",
                      kiln_diag_message(d));
        for (int i = 0; i < f->n_results; i++) {
            double e = compare(&f->results[i]->type, bs, rj[i], ri[i]);
            ck_assert_msg(e <= 1, "step %d: result %d differs, %g x tolerance", s, i, e);
            free(ri[i]);
            free(rj[i]);
        }
        free(x);
        free(y);
    }
    for (int i = 0; i < m->n_globals; i++) {
        double e = compare(&m->globals[i]->type, 1, gj[i], gi[i]);
        ck_assert_msg(e <= 1, "after 5 steps @%s differs, %g x tolerance", m->globals[i]->name, e);
        free(gi[i]);
        free(gj[i]);
    }
    free(gi);
    free(gj);
    cg_program_dispose(p);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* The train step's assembly is AVX2 code (the host of these tests has it). */
START_TEST(test_train_step_asm_has_ymm) {
    kiln_module *m = mnist_model();
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(pass_run_pipeline(m, "train", NULL, d) == KILN_OK, "%s", kiln_diag_message(d));
    ir_sb sb;
    ir_sb_init(&sb);
    ck_assert_msg(cg_dump(m, "train_step", CG_EMIT_ASM, NULL, &sb, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert_ptr_nonnull(sb.buf);
    ck_assert_msg(strstr(sb.buf, "kiln_train_step:") != NULL, "no entry point in the assembly");
    ck_assert_msg(strstr(sb.buf, "ymm") != NULL, "no ymm (AVX2) instruction in the train step");
    ck_assert_msg(strstr(sb.buf, "vfmadd") != NULL, "no FMA in the train step");
    ck_assert_msg(strstr(sb.buf, "cblas_sgemm") != NULL || strstr(sb.buf, "kiln.gemm.") != NULL,
                  "the train step calls no GEMM");
    ck_assert_msg(strstr(sb.buf, "expf") == NULL, "a libm call in the train step");
    ir_sb_free(&sb);
    /* LLVM IR text: the entry point with the documented ABI. */
    ir_sb_init(&sb);
    ck_assert_int_eq(cg_dump(m, "train_step", CG_EMIT_LLVM, NULL, &sb, d), KILN_OK);
    ck_assert_msg(strstr(sb.buf, "define i32 @kiln_train_step(i64 ") != NULL, "%.300s", sb.buf);
    ck_assert_msg(strstr(sb.buf, "@kiln_loss") == NULL, "only the asked function is dumped");
    ir_sb_free(&sb);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* ----------------------------------------------------------- math bounds */

static int64_t ulp_diff(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    if (a == b) return 0;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return llabs((long long)ia - (long long)ib);
}

/* exp, log, tanh, sigmoid of the JIT against glibc over every 997th f32 bit
 * pattern of each sign in the interesting ranges (2.1 to 2.2 million inputs
 * each), plus special values: the bounds documented in codegen/math.c
 * (exp, log <= 2 ulp; tanh, sigmoid <= 3; measured 1, 1, 2, 3). */
static float daz(float v) { return fabsf(v) < FLT_MIN ? copysignf(0.0f, v) : v; }

START_TEST(test_math_ulp) {
    static const struct {
        const char *op;
        float lo, hi;
        int64_t bound;
    } fns[] = {{"exp", -104, 89, 2},
               {"log", 0, 3.4e38f, 2},
               {"tanh", -10, 10, 3},
               {"sigmoid", -30, 30, 3}};
    for (size_t k = 0; k < KILN_ARRAY_LEN(fns); k++) {
        /* Inputs: every 997th bit pattern of each sign within [lo, hi]. */
        int64_t cap = 2 * (0x7f800000 / 997) + 32, n = 0;
        float *x = malloc(sizeof(float) * (size_t)cap);
        for (uint32_t bits = 0; bits < 0x7f800000u; bits += 997)
            for (uint32_t sign = 0; sign < 2; sign++) {
                uint32_t b = bits | (sign << 31);
                float v;
                memcpy(&v, &b, 4);
                if (v >= fns[k].lo && v <= fns[k].hi) x[n++] = v;
            }
        const float specials[] = {0.0f,   -0.0f,   INFINITY, -INFINITY, NAN,
                                  1e-40f, -1e-40f, 88.72f,   -87.4f,    1.0f};
        for (size_t s = 0; s < KILN_ARRAY_LEN(specials); s++) x[n++] = specials[s];
        kiln_module *m = kiln_module_create("math");
        kiln_func *f = kiln_func_create(m, "f");
        kiln_value in = kiln_input(f, "x", KILN_F32, 1, (int64_t[]){B});
        out(f, unary(f, fns[k].op, in));
        cg_program *p;
        kiln_diag *d = kiln_diag_create();
        ck_assert_msg(cg_jit_compile(planned_module(m), NULL, &p, d) == KILN_OK, "%s",
                      kiln_diag_message(d));
        float *y = malloc(sizeof(float) * (size_t)n);
        void *args[1] = {x}, *res[1] = {y};
        ck_assert_int_eq(cg_program_run(p, "f", n, args, res, NULL, NULL, d), KILN_OK);
        int64_t worst = 0;
        float worst_x = 0;
        for (int64_t i = 0; i < n; i++) {
            /* Entry points run with FTZ and DAZ (codegen/module.c): a
             * denormal input reads as zero and a denormal result is zero. */
            float v = daz(x[i]), ref;
            if (!strcmp(fns[k].op, "exp"))
                ref = expf(v);
            else if (!strcmp(fns[k].op, "log"))
                ref = logf(v);
            else if (!strcmp(fns[k].op, "tanh"))
                ref = tanhf(v);
            else
                ref = 1.0f / (1.0f + expf(-v)); /* the interpreter's definition */
            int64_t u = ulp_diff(y[i], daz(ref));
            if (u > worst) {
                worst = u;
                worst_x = v;
            }
        }
        printf("%s: %lld inputs, max %lld ulp (at %.9g)\n", fns[k].op, (long long)n,
               (long long)worst, worst_x);
        ck_assert_msg(worst <= fns[k].bound, "%s: %lld ulp at %.9g (bound %lld)", fns[k].op,
                      (long long)worst, worst_x, (long long)fns[k].bound);
        free(x);
        free(y);
        cg_program_dispose(p);
        kiln_diag_dispose(d);
        kiln_module_dispose(m);
    }
}
END_TEST

/* -------------------------------------------------------------- errors */

/* A label out of range: the same message as the interpreter's. */
START_TEST(test_label_out_of_range) {
    for (int fused = 0; fused < 2; fused++) {
        kiln_module *m = kiln_module_create("t");
        kiln_func *f = kiln_func_create(m, "f");
        kiln_func_set_loc(f, "model.kiln", 12, 7);
        kiln_value p = in2(f, "p", KILN_F32, B, 10), y = in1(f, "y", KILN_I32, B);
        if (fused) {
            ir_node *in[2] = {node_of(f, p), node_of(f, y)};
            ir_node *n = op_node(f, IR_OP_softmax_cross_entropy, 2, in, NULL);
            n->loc = (ir_loc){"model.kiln", 12, 7};
            out_node(f, n);
        } else {
            out(f, kiln_sparse_categorical_crossentropy(f, p, y));
        }
        cg_program *prog;
        kiln_diag *d = kiln_diag_create(), *di = kiln_diag_create();
        ck_assert_int_eq(cg_jit_compile(planned_module(m), NULL, &prog, d), KILN_OK);
        float probs[30];
        int32_t labels[3] = {1, 10, 2};
        float loss = 0;
        tu_fill_uniform(probs, 30, 5, 0.1f, 1);
        void *args[2] = {probs, labels}, *res[1] = {&loss};
        kiln_status sj = cg_program_run(prog, "f", 3, args, res, NULL, NULL, d);
        kiln_status si = ir_interp_run(f, 3, args, res, NULL, di);
        ck_assert_int_eq(sj, KILN_ERR_INVALID);
        ck_assert_int_eq(si, KILN_ERR_INVALID);
        ck_assert_str_eq(kiln_diag_message(d), kiln_diag_message(di));
        ck_assert_msg(strstr(kiln_diag_message(d), "model.kiln:12:7: error:") != NULL, "%s",
                      kiln_diag_message(d));
        ck_assert_msg(strstr(kiln_diag_message(d), "label 10 is out of range [0, 10)") != NULL,
                      "%s", kiln_diag_message(d));
        cg_program_dispose(prog);
        kiln_diag_dispose(d);
        kiln_diag_dispose(di);
        kiln_module_dispose(m);
    }
}
END_TEST

START_TEST(test_bad_batch) {
    kiln_module *m = kiln_module_create("t");
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_neg(f, in2(f, "x", KILN_F32, B, 3)));
    cg_program *p;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(cg_jit_compile(planned_module(m), NULL, &p, d), KILN_OK);
    cg_entry_fn fn = cg_program_entry(p, "f");
    ck_assert_ptr_nonnull(fn);
    ck_assert_ptr_null(cg_program_entry(p, "nope"));
    char ws[256];
    ck_assert_int_eq(fn(-1, NULL, NULL, NULL, ws), KILN_ERR_INVALID);
    ck_assert_int_eq(fn((int64_t)1 << 32, NULL, NULL, NULL, ws), KILN_ERR_LIMIT);
    ck_assert_int_eq(cg_program_run(p, "f", -3, NULL, NULL, NULL, ws, d), KILN_ERR_INVALID);
    ck_assert_msg(strstr(kiln_diag_message(d), "negative batch") != NULL, "%s",
                  kiln_diag_message(d));
    /* Refused before a workspace is sized for it. */
    ck_assert_int_eq(cg_program_run(p, "f", (int64_t)1 << 40, NULL, NULL, NULL, NULL, d),
                     KILN_ERR_LIMIT);
    ck_assert_msg(strstr(kiln_diag_message(d), "exceeds 2^31 - 1") != NULL, "%s",
                  kiln_diag_message(d));
    /* Batch 0: nothing to do, and nothing read. */
    ck_assert_int_eq(fn(0, (void *[]){NULL}, (void *[]){NULL}, NULL, ws), KILN_OK);
    cg_program_dispose(p);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* The test hook makes the lowering emit an ill-typed instruction: LLVM's
 * verifier rejects it and the JIT reports an error, no crash. */
START_TEST(test_malformed_lowering) {
    kiln_module *m = kiln_module_create("t");
    kiln_func *f = kiln_func_create(m, "f");
    out(f, kiln_exp(f, in2(f, "x", KILN_F32, B, 3)));
    cg_options o;
    memset(&o, 0, sizeof o);
    o.test_malformed = true;
    cg_program *p = (cg_program *)&o; /* must be reset to NULL */
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(cg_jit_compile(planned_module(m), &o, &p, d), KILN_ERR_BACKEND);
    ck_assert_ptr_null(p);
    const char *msg = kiln_diag_message(d);
    ck_assert_msg(strstr(msg, "kiln: error: codegen: the generated LLVM IR is invalid") != NULL,
                  "%s", msg);
    ck_assert_msg(strstr(msg, "return type") != NULL, "%s", msg);
    /* The same module compiles without the hook. */
    kiln_diag_clear(d);
    ck_assert_int_eq(cg_jit_compile(m, NULL, &p, d), KILN_OK);
    cg_program_dispose(p);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* Allocation number 1, 2, ... fails in turn: each compile ends in a clean
 * error until one succeeds. */
START_TEST(test_alloc_failures) {
    kiln_module *m = kiln_module_create("t");
    param(m, "b", 1, (int64_t[]){13});
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = in2(f, "x", KILN_F32, B, 13);
    out(f, kiln_softmax(f, kiln_relu(f, kiln_add(f, x, kiln_param(f, "b"))), -1));
    planned_module(m);
    int n = 1;
    for (;; n++) {
        kiln_diag *d = kiln_diag_create();
        cg_program *p = NULL;
        kiln_test_alloc_fail_at(n);
        kiln_status st = cg_jit_compile(m, NULL, &p, d);
        bool failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            cg_program_dispose(p);
            kiln_diag_dispose(d);
            break;
        }
        ck_assert_msg(st != KILN_OK, "allocation %d failed but the compile succeeded", n);
        ck_assert_ptr_null(p);
        kiln_diag_dispose(d);
        ck_assert_int_lt(n, 500);
    }
    ck_assert_int_gt(n, 3);
    kiln_module_dispose(m);
}
END_TEST

/* Several functions in one program, planned, and the workspace contract. */
START_TEST(test_program_api) {
    kiln_module *m = mnist_model();
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(pass_run_pipeline(m, "fuse-dense-act,plan-memory", NULL, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    kiln_func *f = kiln_module_func(m, "loss");
    ck_assert(f->planned);
    cg_program *p;
    ck_assert_msg(cg_jit_compile(m, NULL, &p, d) == KILN_OK, "%s", kiln_diag_message(d));
    const cg_func_info *fi = cg_program_func(p, "loss");
    ck_assert_ptr_nonnull(fi);
    ck_assert_str_eq(fi->symbol, "kiln_loss");
    ck_assert_int_eq(fi->n_args, 2);
    ck_assert_int_eq(fi->n_results, 1);
    /* The plan's bytes are the workspace (test_seed_workspace_is_the_plan). */
    ck_assert_int_ge(fi->ws_per_sample, f->mem_per_sample);
    ck_assert_int_eq(cg_program_workspace_bytes(p, "loss", 10),
                     fi->ws_fixed + 10 * fi->ws_per_sample);
    ck_assert_int_eq(cg_program_workspace_bytes(p, "nope", 10), -1);
    char *sym = cg_symbol_name("train-step.2");
    ck_assert_str_eq(sym, "kiln_train_step_2");
    ir_free(sym);
    cg_program_dispose(p);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* The figures `kiln dump` prints for @name: mem(fixed=F, per_sample=P, and
 * chunk=C if it runs its batch in chunks (else *chunk = 0). */
static void dumped_mem(const char *dump, const char *name, int64_t *fixed, int64_t *ps,
                       int64_t *chunk) {
    char head[64];
    snprintf(head, sizeof head, "func @%s(", name);
    const char *at = strstr(dump, head);
    ck_assert_msg(at != NULL, "no %s in the dump", head);
    const char *eol = strchr(at, '\n');
    const char *mem = strstr(at, " mem(fixed=");
    ck_assert_msg(mem && mem < eol, "@%s is not planned", name);
    long long a, b, c = 0;
    ck_assert_int_eq(sscanf(mem, " mem(fixed=%lld, per_sample=%lld", &a, &b), 2);
    const char *ch = strstr(mem, "chunk=");
    if (ch && ch < eol) ck_assert_int_eq(sscanf(ch, "chunk=%lld", &c), 1);
    *fixed = a;
    *ps = b;
    *chunk = c;
}

/* One memory owner: the seed model's workspace, as the JIT allocates it,
 * is what the dump of its plan says, byte for byte: @infer runs in chunks
 * (its rows are independent), @train_step and @loss reduce over the batch. */
START_TEST(test_seed_workspace_is_the_plan) {
    kiln_module *m = NULL;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_model_file_load(tu_src_path("examples/mnist_mlp.kiln"), &m, d), KILN_OK);
    drv_opts o = {.target = DRV_JIT, .goal = DRV_GOAL_TRAIN};
    drv_out r;
    ck_assert_msg(drv_compile(m, &o, &r, d) == KILN_OK, "%s", kiln_diag_message(d));
    ir_sb sb;
    ir_sb_init(&sb);
    ir_print_module(&sb, m, NULL);
    char *dump = ir_sb_take(&sb);
    static const char *fns[] = {"train_step", "loss", "infer"};
    for (size_t i = 0; i < KILN_ARRAY_LEN(fns); i++) {
        int64_t fixed, ps, chunk;
        dumped_mem(dump, fns[i], &fixed, &ps, &chunk);
        ck_assert_int_gt(ps, 0);
        bool infer = strcmp(fns[i], "infer") == 0;
        ck_assert_msg(infer ? chunk > 1 : chunk == 0, "@%s: chunk=%lld", fns[i],
                      (long long)chunk);
        for (int64_t b = 1; b <= 10000; b = b * 127 + 1) {
            int64_t rows = chunk > 0 && b > chunk ? chunk : b;
            ck_assert_msg(cg_program_workspace_bytes(r.program, fns[i], b) == fixed + ps * rows,
                          "@%s at batch %lld: the JIT allocates %lld bytes, the plan says %lld",
                          fns[i], (long long)b,
                          (long long)cg_program_workspace_bytes(r.program, fns[i], b),
                          (long long)(fixed + ps * rows));
        }
    }
    ir_free(dump);
    cg_program_dispose(r.program);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* A plan that puts a reduction's result over its operand (the interpreter
 * accumulates aside, so that is valid for it) is refused by codegen, which
 * has no scratch of its own: plan-memory never makes one, and a hand-made
 * plan must not either. The same function with a sound plan compiles; also
 * results that are an argument, a global, or one node twice. */
START_TEST(test_plan_overlap_and_odd_results) {
    kiln_module *m = kiln_module_create("t");
    param(m, "w", 1, (int64_t[]){13});
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = in2(f, "x", KILN_F32, B, 13);
    kiln_value e = kiln_exp(f, x);
    kiln_value r = kiln_reduce_sum(f, e, 1, (int[]){1}, 0);
    kiln_value n = kiln_neg(f, r);
    out(f, n);
    out(f, x);
    out(f, kiln_param(f, "w"));
    out(f, n);
    ir_node *ne = node_of(f, e), *nr = node_of(f, r), *nn = node_of(f, n);
    f->planned = true;
    f->mem_fixed = 64;
    f->mem_err = 0;
    f->mem_per_sample = 13 * 4 + 16;
    ne->mem_offset = 0;
    ne->mem_batch = 1;
    nr->mem_offset = 0; /* over e */
    nr->mem_batch = 1;
    nn->mem_offset = 13 * 4;
    nn->mem_batch = 1;
    cg_program *p;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(cg_jit_compile(m, NULL, &p, d), KILN_ERR_INVALID);
    ck_assert_msg(strstr(kiln_diag_message(d), "puts the result of reduce_sum over an operand"),
                  "%s", kiln_diag_message(d));
    kiln_diag_clear(d);
    nr->mem_offset = 13 * 4; /* beside e */
    nn->mem_offset = 13 * 4 + 4;
    ck_assert_msg(cg_jit_compile(m, NULL, &p, d) == KILN_OK, "%s", kiln_diag_message(d));
    gen g = {-2, 2, 0, 0, false};
    for (size_t bi = 0; bi < KILN_ARRAY_LEN(g_batches); bi++) {
        char where[96];
        double err = diff_run(m, "f", p, g_batches[bi], 50 + bi, &g, where, sizeof where);
        ck_assert_msg(err <= 1, "batch %lld: %s differs, %g x tolerance", (long long)g_batches[bi],
                      where, err);
    }
    cg_program_dispose(p);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* The same lowering as a PIC object: linked into a shared object with the
 * system compiler and loaded, its entry point equals the interpreter. */
START_TEST(test_object_file) {
    kiln_module *m = kiln_module_create("t");
    param(m, "k", 2, (int64_t[]){37, 19});
    param(m, "b", 1, (int64_t[]){19});
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value h =
        kiln_add(f, kiln_matmul(f, in2(f, "x", KILN_F32, B, 37), kiln_param(f, "k"), 0, 0),
                 kiln_param(f, "b"));
    out(f, kiln_softmax(f, kiln_tanh(f, h), -1));
    char dir[] = "/tmp/kiln_cg_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char obj[128], so[128], cmd[512];
    snprintf(obj, sizeof obj, "%s/f.o", dir);
    snprintf(so, sizeof so, "%s/libf.so", dir);
    kiln_diag *d = kiln_diag_create();
    cg_module_info *info = NULL;
    ck_assert_msg(cg_compile_object(planned_module(m), NULL, obj, &info, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert_int_eq(info->n_funcs, 1);
    FILE *fp = fopen(obj, "rb");
    char magic[4] = {0};
    ck_assert_int_eq(fread(magic, 1, 4, fp), 4);
    fclose(fp);
    ck_assert(memcmp(magic,
                     "\x7f"
                     "ELF",
                     4) == 0);
    /* The support archive brings kiln_parallel_for (Kiln's GEMM kernels). */
    snprintf(cmd, sizeof cmd,
             "cc -shared -Wl,-z,defs -o %s %s " KILN_BINARY_DIR "/lib/libkiln_aotrt.a -lopenblas -lm",
             so, obj);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(lib != NULL, "%s", dlerror());
    cg_entry_fn fn;
    *(void **)&fn = dlsym(lib, info->funcs[0].symbol);
    ck_assert_ptr_nonnull(fn);
    int64_t bs = 7;
    float x[7 * 37], k[37 * 19], b[19], yi[7 * 19], yj[7 * 19];
    tu_fill_uniform(x, 7 * 37, 1, -1, 1);
    tu_fill_uniform(k, 37 * 19, 2, -0.5f, 0.5f);
    tu_fill_uniform(b, 19, 3, -0.5f, 0.5f);
    void *args[1] = {x}, *gl[2] = {k, b}, *ri[1] = {yi}, *rj[1] = {yj};
    ck_assert_int_eq(ir_interp_run(f, bs, args, ri, gl, d), KILN_OK);
    char *ws = ir_aligned_alloc((size_t)cg_workspace_bytes(&info->funcs[0], bs));
    ck_assert_int_eq(fn(bs, args, rj, gl, ws), 0);
    tu_assert_close_at_scale(yj, yi, 7 * 19, 1e-5, "JIT vs interpreter");
    ir_aligned_free(ws);
    dlclose(lib);
    unlink(obj);
    unlink(so);
    rmdir(dir);
    cg_module_info_dispose(info);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

static Suite *codegen_suite(void) {
    Suite *s = suite_create("codegen");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_every_op_covered);
    tcase_add_test(tc, test_rowwise_ops_chunked);
    tcase_add_loop_test(tc, test_op_differential, 0, (int)KILN_ARRAY_LEN(g_cases));
    tcase_add_test(tc, test_conv2d_widths);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("model");
    tcase_set_timeout(tm, 600);
    tcase_add_test(tm, test_mnist_five_train_steps);
    tcase_add_test(tm, test_train_step_asm_has_ymm);
    tcase_add_test(tm, test_program_api);
    tcase_add_test(tm, test_object_file);
    tcase_add_test(tm, test_plan_overlap_and_odd_results);
    suite_add_tcase(s, tm);
    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 600);
    tcase_add_test(te, test_math_ulp);
    tcase_add_test(te, test_label_out_of_range);
    tcase_add_test(te, test_bad_batch);
    tcase_add_test(te, test_seed_workspace_is_the_plan);
    tcase_add_test(te, test_malformed_lowering);
    tcase_add_test(te, test_alloc_failures);
    suite_add_tcase(s, te);
    return s;
}

int main(void) {
    return tu_run_suite(codegen_suite());
}

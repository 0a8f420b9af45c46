/*
 * test_grad.c — the gradient rules and the autodiff pass.
 *
 * Every op with a rule in ops.def is checked against central finite
 * differences: L = sum(op(inputs) · r) for a fixed random r, the analytic
 * gradients come from @train_step on the interpreter, the numeric ones from
 * evaluations of @loss with one parameter element nudged by ±eps, in double.
 * Each case runs twice: with static shapes (every input element is a
 * parameter) and with a batch axis '?' (a batched input is s · p for an
 * argument s and a parameter p broadcast over the batch, so the rule runs on
 * '?' shapes and run-time counts). The tolerance comes from the loss's
 * scale and the step (grad_tol); each case also runs with its op's rule
 * scaled by 1.01 and by 0.99, and the check must fail then (a negative
 * control per rule). A test fails for any op that has a rule and no case.
 * Then whole graphs (a two-layer MLP under each loss), the pass's errors,
 * pruning (no input gradient in the MNIST-shaped model) and allocation
 * failures.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/grad.h"
#include "passes/pass.h"
#include "testutil.h"

#define B       5 /* the batch the checks run with: unlike every static dim */
#define CLASSES 4 /* class count of every case with labels */
#define MAX_IO  12

/* ------------------------------------------------------------ input data */

typedef enum gen {
    G_ANY,    /* uniform in [-1, 1] */
    G_POS,    /* [0.5, 2]: log, sqrt, div, unnormalized probabilities */
    G_AWAY0,  /* |x| in [0.3, 1]: relu's kink at 0 stays out of reach */
    G_PROB,   /* [0.1, 0.9] */
    G_ONEHOT, /* one-hot rows over the last axis */
    G_LABEL,  /* i32 in [0, CLASSES) */
    G_MASK,   /* i32 0 or 1 */
    G_GRID_A, /* -0.9 + 0.4k: never within 0.15 of a G_GRID_B value (max/min ties) */
    G_GRID_B, /* -0.7 + 0.4k */
    G_UNIQUE, /* distinct values 0.15 apart (reduce_max ties) */
    G_SCALE   /* [0.98, 1.02]: the parameter that scales a batched input */
} gen;

static void fill(void *data, const ir_type *t, gen g, ir_rng *r) {
    int64_t n = ir_type_numel(t, B);
    float *f = data;
    int32_t *i = data;
    int64_t last = t->rank ? (t->dims[t->rank - 1] == KILN_BATCH ? B : t->dims[t->rank - 1]) : 1;
    for (int64_t e = 0; e < n; e++) {
        double u = ir_rng_uniform(r);
        switch (g) {
        case G_ANY:
            f[e] = (float)(2 * u - 1);
            break;
        case G_POS:
            f[e] = (float)(0.5 + 1.5 * u);
            break;
        case G_AWAY0:
            f[e] = (float)((u < 0.5 ? -1 : 1) * (0.3 + 0.7 * ir_rng_uniform(r)));
            break;
        case G_PROB:
            f[e] = (float)(0.1 + 0.8 * u);
            break;
        case G_ONEHOT:
            f[e] = 0;
            break;
        case G_LABEL:
            i[e] = (int32_t)(u * CLASSES);
            break;
        case G_MASK:
            i[e] = u < 0.5;
            break;
        case G_GRID_A:
            f[e] = (float)(-0.9 + 0.4 * (int)(u * 5) + 0.04 * ir_rng_uniform(r));
            break;
        case G_GRID_B:
            f[e] = (float)(-0.7 + 0.4 * (int)(u * 5) + 0.04 * ir_rng_uniform(r));
            break;
        case G_UNIQUE:
            f[e] = (float)((e - n / 2.0) * 0.15);
            break;
        case G_SCALE:
            f[e] = (float)(0.98 + 0.04 * u);
            break;
        }
    }
    if (g == G_ONEHOT)
        for (int64_t row = 0; row < n / last; row++)
            f[row * last + (int64_t)(ir_rng_uniform(r) * last)] = 1;
    if (g == G_UNIQUE) /* Fisher-Yates */
        for (int64_t e = n - 1; e > 0; e--) {
            int64_t j = (int64_t)(ir_rng_uniform(r) * (e + 1));
            float tmp = f[e];
            f[e] = f[j];
            f[j] = tmp;
        }
}

/* A module under test with the data of its arguments and globals. @loss
 * returns the loss first; when scale_result > 0, that result of @loss is
 * the sum of the magnitudes of the loss's terms (the loss's scale S). */
typedef struct harness {
    kiln_module *m;
    gen arg_gen[MAX_IO], glob_gen[MAX_IO];
    int n_args, n_globals, scale_result;
    void *args[MAX_IO], *globals[MAX_IO];
} harness;

static kiln_value add_input(harness *h, kiln_func *f, const char *name, kiln_dtype dt, int rank,
                            const int64_t *dims, gen g) {
    ck_assert_int_lt(h->n_args, MAX_IO);
    h->arg_gen[h->n_args++] = g;
    return kiln_input(f, name, dt, rank, dims);
}

static kiln_value add_param(harness *h, kiln_func *f, const char *name, int rank,
                            const int64_t *dims, gen g) {
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
    ck_assert_int_lt(h->n_globals, MAX_IO);
    ck_assert_int_eq(kiln_module_add_param(h->m, name, KILN_F32, rank, dims, zeros, NULL), KILN_OK);
    h->glob_gen[h->n_globals++] = g;
    return kiln_param(f, name);
}

static void harness_fill(harness *h, uint64_t seed) {
    kiln_func *f = kiln_module_func(h->m, "loss");
    ck_assert_int_eq(f->n_args, h->n_args);
    ck_assert_int_eq(h->m->n_globals, h->n_globals);
    ir_rng r = ir_rng_seed(seed, 7);
    for (int i = 0; i < h->n_args; i++) {
        h->args[i] = calloc((size_t)ir_type_numel(&f->args[i]->type, B) + 1, 4);
        fill(h->args[i], &f->args[i]->type, h->arg_gen[i], &r);
    }
    for (int i = 0; i < h->n_globals; i++) {
        h->globals[i] = calloc((size_t)ir_type_numel(&h->m->globals[i]->type, 1) + 1, 4);
        fill(h->globals[i], &h->m->globals[i]->type, h->glob_gen[i], &r);
    }
}

static void harness_free(harness *h) {
    for (int i = 0; i < h->n_args; i++) free(h->args[i]);
    for (int i = 0; i < h->n_globals; i++) free(h->globals[i]);
    kiln_module_dispose(h->m);
    memset(h, 0, sizeof *h);
}

/* The loss; *scale (if not NULL) its scale S: the scale result, else |loss|. */
static float eval_loss(harness *h, double *scale) {
    kiln_diag *d = kiln_diag_create();
    float L = NAN;
    void *res[MAX_IO] = {&L};
    float spare[MAX_IO][64];
    kiln_func *f = kiln_module_func(h->m, "loss");
    for (int i = 1; i < f->n_results; i++) res[i] = spare[i];
    kiln_status st = ir_interp_run(f, B, h->args, res, h->globals, d);
    ck_assert_msg(st == KILN_OK, "interp @loss: %s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    if (scale) *scale = h->scale_result > 0 ? spare[h->scale_result][0] : fabsf(L);
    return L;
}

/* Central differences of @loss, in double, for every element of every
 * trainable global (in the order of @train_step's gradients); computed
 * before autodiff, so one set serves the check and its negative controls. */
typedef struct numeric {
    int n;
    double *g[MAX_IO];
    double eps, scale;
} numeric;

static numeric numeric_grads(harness *h, double eps) {
    numeric nu = {0, {0}, eps, 0};
    eval_loss(h, &nu.scale);
    for (int gi = 0; gi < h->m->n_globals; gi++) {
        ir_global *g = h->m->globals[gi];
        if (!g->trainable) continue;
        int64_t n = ir_type_numel(&g->type, 1);
        double *out = nu.g[nu.n++] = calloc((size_t)n + 1, sizeof(double));
        float *w = h->globals[gi];
        for (int64_t e = 0; e < n; e++) {
            float orig = w[e], hi = (float)(orig + eps), lo = (float)(orig - eps);
            w[e] = hi;
            double lp = eval_loss(h, NULL);
            w[e] = lo;
            double lm = eval_loss(h, NULL);
            w[e] = orig;
            out[e] = (lp - lm) / ((double)hi - (double)lo);
        }
    }
    return nu;
}

static void numeric_free(numeric *nu) {
    for (int i = 0; i < nu->n; i++) free(nu->g[i]);
}

/* The tolerance of one gradient element. The loss is computed in f32, so
 * each evaluation is off by up to a few ulp of its scale S (a sum of
 * magnitudes): the difference quotient carries 8 FLT_EPSILON S / (2 eps) of
 * noise. Plus 2e-3 relative for the O(eps^2) truncation. For the loss rows
 * (S ~ 1, gradients ~ 1e-2, eps 1e-2) that is ~0.7% of the gradient: a rule
 * off by 1% fails (the negative controls below prove it per op). */
static double grad_tol(const numeric *nu, double num) {
    return 8 * FLT_EPSILON * nu->scale / (2 * nu->eps) + 2e-3 * fabs(num);
}

/* Runs autodiff with `rules` and compares every gradient of @train_step with
 * the central differences: returns the worst |analytic - numeric| / tol and
 * describes that element in `worst`. */
static double grad_ratio(harness *h, const numeric *nu, pass_grad_fn (*rules)(int),
                         const char *label, char *worst, size_t wn) {
    kiln_diag *d = kiln_diag_create();
    kiln_status st = pass_autodiff_rules(h->m, rules, d);
    ck_assert_msg(st == KILN_OK, "%s: autodiff: %s", label, kiln_diag_message(d));
    st = kiln_module_verify(h->m, d);
    ck_assert_msg(st == KILN_OK, "%s: verify: %s", label, kiln_diag_message(d));
    kiln_func *ts = kiln_module_func(h->m, "train_step");
    kiln_func *lf = kiln_module_func(h->m, "loss");
    ck_assert_int_eq(ts->n_results, lf->n_results + nu->n);

    void *res[MAX_IO];
    for (int i = 0; i < ts->n_results; i++)
        res[i] = calloc((size_t)ir_type_numel(&ts->results[i]->type, B) + 1, 4);
    st = ir_interp_run(ts, B, h->args, res, h->globals, d);
    ck_assert_msg(st == KILN_OK, "%s: interp @train_step: %s", label, kiln_diag_message(d));
    /* The loss and the metrics pass through unchanged. */
    float outs[MAX_IO][64];
    void *outp[MAX_IO];
    for (int i = 0; i < lf->n_results; i++) outp[i] = outs[i];
    st = ir_interp_run(lf, B, h->args, outp, h->globals, d);
    ck_assert_msg(st == KILN_OK, "%s: interp @loss: %s", label, kiln_diag_message(d));
    for (int i = 0; i < lf->n_results; i++)
        ck_assert_msg(
            memcmp(res[i], outs[i], 4 * (size_t)ir_type_numel(&lf->results[i]->type, B)) == 0,
            "%s: result %d of @train_step differs from @loss's", label, i);

    double ratio = 0;
    snprintf(worst, wn, "-");
    for (int gi = 0, k = 0; gi < h->m->n_globals; gi++) {
        ir_global *g = h->m->globals[gi];
        if (!g->trainable) continue;
        const float *an = res[lf->n_results + k];
        const double *num = nu->g[k++];
        for (int64_t e = 0; e < ir_type_numel(&g->type, 1); e++) {
            double tol = grad_tol(nu, num[e]), r = fabs(an[e] - num[e]) / tol;
            if (!(r <= ratio)) {
                ratio = isnan(r) ? INFINITY : r;
                snprintf(worst, wn,
                         "d@%s[%lld]: analytic %.7g, finite difference %.7g (tolerance %.3g)",
                         g->name, (long long)e, an[e], num[e], tol);
            }
        }
    }
    for (int i = 0; i < ts->n_results; i++) free(res[i]);
    kiln_diag_dispose(d);
    return ratio;
}

/* Checks every gradient of the module against central differences with
 * step eps; returns the worst error / tolerance (<= 1). */
static double gradcheck(harness *h, double eps, const char *label) {
    numeric nu = numeric_grads(h, eps);
    char worst[256];
    double r = grad_ratio(h, &nu, pass_grad_rule, label, worst, sizeof worst);
    ck_assert_msg(r <= 1, "%s: %s", label, worst);
    printf("grad: %-70s worst error/tolerance %.3f\n", label, r);
    numeric_free(&nu);
    return r;
}

/* --------------------------------------------------- ops without a builder
 * The fused ops come from passes, so kiln.h has no builder for them; the
 * tests create them with the internal builder and register a kiln_value. */

static kiln_value internal_op(kiln_func *f, int op, int n, const kiln_value *x, const ir_attrs *a) {
    ir_node *in[5];
    for (int k = 0; k < n; k++) in[k] = f->values[x[k].id];
    kiln_diag *d = kiln_diag_create();
    ir_builder b;
    ir_builder_init(&b, f, d);
    b.loc = f->cur_loc;
    ir_node *r = ir_b_op(&b, op, n, in, a);
    ck_assert_msg(r != NULL, "%s: %s", ir_op_name(op), kiln_diag_message(d));
    kiln_diag_dispose(d);
    ck_assert(IR_GROW(f->values, f->cap_values, f->n_values + 1));
    f->values[f->n_values] = r;
    kiln_value v = {f->n_values++};
    return v;
}

static kiln_value dense(kiln_func *f, kiln_value x, kiln_value w, kiln_value bias, int act,
                        double alpha) {
    ir_attrs a = tu_attrs1(IR_OP_dense, "activation", tu_act_op(act));
    ir_attrs_set_f(&a, "alpha", alpha);
    kiln_value in[3] = {x, w, bias};
    return internal_op(f, IR_OP_dense, 3, in, &a);
}

/* pad(x) by before/after counts (negative: crops), on an [?, 3, 4] operand. */
static kiln_value pad(kiln_func *f, kiln_value x, const int64_t *bf, const int64_t *af) {
    ir_attrs a = ir_attrs_default(IR_OP_pad);
    ir_attrs_set_ints(&a, "before", 3, bf);
    ir_attrs_set_ints(&a, "after", 3, af);
    ir_attrs_set_f(&a, "value", 0.5);
    return internal_op(f, IR_OP_pad, 1, &x, &a);
}

/* conv2d(x, kernel, bias) with strides s, dilation dl, padding (1: same). */
static kiln_value conv(kiln_func *f, const kiln_value *x, int s, int dl, int same, int act) {
    ir_attrs a = tu_attrs1(IR_OP_conv2d, "activation", tu_act_op(act));
    ir_attrs_set_ints(&a, "strides", 2, (const int64_t[]){s, s});
    ir_attrs_set_ints(&a, "dilation", 2, (const int64_t[]){dl, dl});
    ir_attrs_set_i(&a, "padding", same);
    return internal_op(f, IR_OP_conv2d, 3, x, &a);
}

static kiln_value pool2d(kiln_func *f, int op, kiln_value x, int k, int s, int same) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_ints(&a, "pool_size", 2, (const int64_t[]){k, k});
    ir_attrs_set_ints(&a, "strides", 2, (const int64_t[]){s, s});
    ir_attrs_set_i(&a, "padding", same);
    return internal_op(f, op, 1, &x, &a);
}

static kiln_value softmax_ce(kiln_func *f, kiln_value z, kiln_value y) {
    kiln_value in[2] = {z, y};
    return internal_op(f, IR_OP_softmax_cross_entropy, 2, in, NULL);
}

static kiln_value dropout_(kiln_func *f, kiln_value x, kiln_value step, double rate) {
    ir_attrs a = tu_attrs1(IR_OP_dropout, "rate", rate);
    ir_attrs_set_i(&a, "seed", 5);
    ir_attrs_set_i(&a, "node", 1);
    kiln_value in[2] = {x, step};
    return internal_op(f, IR_OP_dropout, 2, in, &a);
}

static kiln_value batch_norm_(kiln_func *f, const kiln_value *x, bool training) {
    ir_attrs a = tu_attrs1(IR_OP_batch_norm, "training", training);
    return internal_op(f, IR_OP_batch_norm, 5, x, &a);
}

/* ------------------------------------------------------- one case per use */

enum { DIFF, FIXED }; /* f32 operand that gets a gradient / that is an input */

typedef struct operand {
    kiln_dtype dt;
    int role;
    gen g;
    int rank;
    int64_t dims[4]; /* KILN_BATCH for the batch axis */
} operand;

/* bt is the batch dimension the builder should write into shapes: KILN_BATCH,
 * or B when the case runs with static shapes. */
typedef kiln_value (*build_fn)(kiln_func *f, const kiln_value *x, int64_t bt);

typedef struct gcase {
    const char *op; /* the ops.def row it covers */
    const char *what;
    build_fn build;
    int n;
    operand in[5];
    double eps;
} gcase;

#define Q KILN_BATCH
#define F_(g, r, ...)                                                                              \
    {                                                                                              \
        KILN_F32, DIFF, g, r, {                                                                    \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }
#define IN_(g, r, ...)                                                                             \
    {                                                                                              \
        KILN_F32, FIXED, g, r, {                                                                   \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }
#define I_(g, r, ...)                                                                              \
    {                                                                                              \
        KILN_I32, FIXED, g, r, {                                                                   \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }
#define BUILD(name, expr)                                                                          \
    static kiln_value name(kiln_func *f, const kiln_value *x, int64_t bt) {                        \
        (void)bt;                                                                                  \
        return expr;                                                                               \
    }

static const int ax0[] = {0}, ax1[] = {1}, axm1[] = {-1}, ax12[] = {1, 2};
static const int perm021[] = {0, 2, 1}, perm10[] = {1, 0};

BUILD(b_neg, kiln_neg(f, x[0]))
BUILD(b_exp, kiln_exp(f, x[0]))
BUILD(b_log, kiln_log(f, x[0]))
BUILD(b_sqrt, kiln_sqrt(f, x[0]))
BUILD(b_pow3, kiln_pow(f, x[0], 3))
BUILD(b_pow_half, kiln_pow(f, x[0], 0.5))
BUILD(b_pow_neg, kiln_pow(f, x[0], -1.5))
BUILD(b_relu, kiln_relu(f, x[0]))
BUILD(b_leaky, kiln_leaky_relu(f, x[0], 0.2))
BUILD(b_sigmoid, kiln_sigmoid(f, x[0]))
BUILD(b_tanh, kiln_tanh(f, x[0]))
BUILD(b_cast, kiln_cast(f, x[0], KILN_F32))
BUILD(b_add, kiln_add(f, x[0], x[1]))
BUILD(b_add_self, kiln_add(f, x[0], x[0]))
BUILD(b_sub, kiln_sub(f, x[0], x[1]))
BUILD(b_mul, kiln_mul(f, x[0], x[1]))
BUILD(b_square, kiln_mul(f, x[0], x[0]))
BUILD(b_div, kiln_div(f, x[0], x[1]))
BUILD(b_max, kiln_maximum(f, x[0], x[1]))
BUILD(b_min, kiln_minimum(f, x[0], x[1]))
BUILD(b_select, kiln_select(f, x[0], x[1], x[2]))
BUILD(b_bcast_row, kiln_broadcast_to(f, x[0], 2, (const int64_t[]){bt, 3}))
BUILD(b_bcast_col, kiln_broadcast_to(f, x[0], 2, (const int64_t[]){bt, 4}))
BUILD(b_sum1, kiln_reduce_sum(f, x[0], 1, ax1, 0))
BUILD(b_sum0_keep, kiln_reduce_sum(f, x[0], 1, ax0, 1))
BUILD(b_sum_all, kiln_reduce_sum(f, x[0], 0, NULL, 0))
BUILD(b_sum_last, kiln_reduce_sum(f, x[0], 1, axm1, 0))
BUILD(b_mean0, kiln_reduce_mean(f, x[0], 1, ax0, 0))
BUILD(b_mean12_keep, kiln_reduce_mean(f, x[0], 2, ax12, 1))
BUILD(b_mean_all, kiln_reduce_mean(f, x[0], 0, NULL, 0))
BUILD(b_max1, kiln_reduce_max(f, x[0], 1, ax1, 0))
BUILD(b_max0_keep, kiln_reduce_max(f, x[0], 1, ax0, 1))
BUILD(b_softmax, kiln_softmax(f, x[0], -1))
BUILD(b_softmax0, kiln_softmax(f, x[0], 0))
BUILD(b_log_softmax, kiln_log_softmax(f, x[0], -1))
BUILD(b_log_softmax0, kiln_log_softmax(f, x[0], 0))
BUILD(b_matmul, kiln_matmul(f, x[0], x[1], 0, 0))
BUILD(b_matmul_ta, kiln_matmul(f, x[0], x[1], 1, 0))
BUILD(b_matmul_tb, kiln_matmul(f, x[0], x[1], 0, 1))
BUILD(b_matmul_tab, kiln_matmul(f, x[0], x[1], 1, 1))
BUILD(b_reshape, kiln_reshape(f, x[0], 2, (const int64_t[]){bt, 6}))
BUILD(b_allreduce_mean, kiln_allreduce_mean(f, x[0]))
BUILD(b_allreduce_wait, kiln_allreduce_wait(f, kiln_allreduce_mean(f, x[0])))
BUILD(b_reshape_static, kiln_reshape(f, x[0], 3, (const int64_t[]){3, 1, 2}))
BUILD(b_transpose021, kiln_transpose(f, x[0], 3, perm021))
BUILD(b_transpose10, kiln_transpose(f, x[0], 2, perm10))
BUILD(b_cce, kiln_categorical_crossentropy(f, x[0], x[1]))
BUILD(b_scce, kiln_sparse_categorical_crossentropy(f, x[0], x[1]))
BUILD(b_mse, kiln_mean_squared_error(f, x[0], x[1]))
BUILD(b_bce, kiln_binary_crossentropy(f, x[0], x[1]))
BUILD(b_nll, kiln_nll(f, x[0], x[1]))
BUILD(b_dense_none, dense(f, x[0], x[1], x[2], KILN_ACT_NONE, 0))
BUILD(b_dense_relu, dense(f, x[0], x[1], x[2], KILN_ACT_RELU, 0))
BUILD(b_dense_leaky, dense(f, x[0], x[1], x[2], KILN_ACT_LEAKY_RELU, 0.2))
BUILD(b_dense_leaky_neg, dense(f, x[0], x[1], x[2], KILN_ACT_LEAKY_RELU, -0.5))
BUILD(b_dense_sigmoid, dense(f, x[0], x[1], x[2], KILN_ACT_SIGMOID, 0))
BUILD(b_dense_tanh, dense(f, x[0], x[1], x[2], KILN_ACT_TANH, 0))
BUILD(b_sce, softmax_ce(f, x[0], x[1]))
BUILD(b_pad, pad(f, x[0], (const int64_t[]){0, 1, 2}, (const int64_t[]){0, 2, 0}))
BUILD(b_pad_crop, pad(f, x[0], (const int64_t[]){0, -1, 1}, (const int64_t[]){0, 1, -2}))

/* pad in mode reflect (1) or edge (2): the gradient adds the copies back. */
static kiln_value pad_mode(kiln_func *f, kiln_value x, const int64_t *bf, const int64_t *af,
                           int64_t mode) {
    ir_attrs a = ir_attrs_default(IR_OP_pad);
    ir_attrs_set_ints(&a, "before", 3, bf);
    ir_attrs_set_ints(&a, "after", 3, af);
    ir_attrs_set_i(&a, "mode", mode);
    return internal_op(f, IR_OP_pad, 1, &x, &a);
}
BUILD(b_pad_reflect, pad_mode(f, x[0], (const int64_t[]){0, 2, 1}, (const int64_t[]){0, 1, 3}, 1))
BUILD(b_pad_edge, pad_mode(f, x[0], (const int64_t[]){0, 2, 1}, (const int64_t[]){0, 3, 0}, 2))
BUILD(b_pad_reflect_crop, pad_mode(f, x[0], (const int64_t[]){0, -1, 2}, (const int64_t[]){0, 2, -1}, 1))
BUILD(b_pad_edge_crop, pad_mode(f, x[0], (const int64_t[]){0, 1, -2}, (const int64_t[]){0, -1, 3}, 2))
BUILD(b_conv_valid_relu, conv(f, x, 1, 1, 0, KILN_ACT_RELU))
BUILD(b_conv_same_s2, conv(f, x, 2, 1, 1, KILN_ACT_NONE))
BUILD(b_conv_same_s1, conv(f, x, 1, 1, 1, KILN_ACT_NONE))
BUILD(b_conv_valid_s2_sigmoid, conv(f, x, 2, 1, 0, KILN_ACT_SIGMOID))
BUILD(b_conv_dil2_tanh, conv(f, x, 1, 2, 0, KILN_ACT_TANH))
BUILD(b_conv_dil2_same, conv(f, x, 1, 2, 1, KILN_ACT_NONE))
BUILD(b_maxpool_2, pool2d(f, IR_OP_max_pool2d, x[0], 2, 2, 0))
BUILD(b_maxpool_3s2_same, pool2d(f, IR_OP_max_pool2d, x[0], 3, 2, 1))
BUILD(b_maxpool_2s1_same, pool2d(f, IR_OP_max_pool2d, x[0], 2, 1, 1))
BUILD(b_avgpool_2, pool2d(f, IR_OP_avg_pool2d, x[0], 2, 2, 0))
BUILD(b_avgpool_3s2_same, pool2d(f, IR_OP_avg_pool2d, x[0], 3, 2, 1))
BUILD(b_avgpool_2s1_same, pool2d(f, IR_OP_avg_pool2d, x[0], 2, 1, 1))
BUILD(b_dropout, dropout_(f, x[0], x[1], 0.3))
BUILD(b_bn_train, batch_norm_(f, x, true))
BUILD(b_bn_moving, batch_norm_(f, x, false))
BUILD(b_erf, kiln_erf(f, x[0]))
BUILD(b_elu, kiln_activate(f, x[0], KILN_ACT_ELU, 1.0))
BUILD(b_elu_half, kiln_activate(f, x[0], KILN_ACT_ELU, 0.5))
BUILD(b_relu6, kiln_activate(f, x[0], KILN_ACT_RELU6, 0))
BUILD(b_gelu, kiln_activate(f, x[0], KILN_ACT_GELU, 0))
BUILD(b_softplus, kiln_activate(f, x[0], KILN_ACT_SOFTPLUS, 0))
BUILD(b_silu, kiln_activate(f, x[0], KILN_ACT_SILU, 0))
BUILD(b_hard_sigmoid, kiln_activate(f, x[0], KILN_ACT_HARD_SIGMOID, 0))
BUILD(b_dense_elu, dense(f, x[0], x[1], x[2], KILN_ACT_ELU, 1.0))
BUILD(b_dense_gelu, dense(f, x[0], x[1], x[2], KILN_ACT_GELU, 0))
BUILD(b_dense_softplus, dense(f, x[0], x[1], x[2], KILN_ACT_SOFTPLUS, 0))
BUILD(b_dense_silu, dense(f, x[0], x[1], x[2], KILN_ACT_SILU, 0))
BUILD(b_dense_relu6, dense(f, x[0], x[1], x[2], KILN_ACT_RELU6, 0))
BUILD(b_dense_hard_sigmoid, dense(f, x[0], x[1], x[2], KILN_ACT_HARD_SIGMOID, 0))

/* Explicit pads [top, left, bottom, right] (ONNX's) on a window op. */
static kiln_value padded(kiln_func *f, int op, const kiln_value *x, int s, const int64_t *pads) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_ints(&a, "strides", 2, (const int64_t[]){s, s});
    if (op != IR_OP_conv2d) ir_attrs_set_ints(&a, "pool_size", 2, (const int64_t[]){3, 3});
    ir_attrs_set_ints(&a, "pads", 4, pads);
    return internal_op(f, op, op == IR_OP_conv2d ? 3 : 1, x, &a);
}
BUILD(b_conv_pads, padded(f, IR_OP_conv2d, x, 2, (const int64_t[]){1, 2, 1, 0}))
BUILD(b_maxpool_pads, padded(f, IR_OP_max_pool2d, x, 2, (const int64_t[]){1, 1, 2, 0}))
/* relu then max pooling: relu's derivative moves into max_pool2d_grad */
BUILD(b_conv_relu_maxpool, pool2d(f, IR_OP_max_pool2d, conv(f, x, 1, 1, 0, KILN_ACT_RELU), 2, 2, 0))
BUILD(b_avgpool_pads, padded(f, IR_OP_avg_pool2d, x, 1, (const int64_t[]){2, 0, 1, 1}))

/* matmul_mask(a, b, h) with transpose_b and alpha (0: relu's mask). */
static kiln_value matmul_mask(kiln_func *f, const kiln_value *x, bool tb, double alpha) {
    ir_attrs a = ir_attrs_default(IR_OP_matmul_mask);
    ir_attrs_set_i(&a, "transpose_b", tb);
    ir_attrs_set_f(&a, "alpha", alpha);
    return internal_op(f, IR_OP_matmul_mask, 3, x, &a);
}
BUILD(b_matmul_mask, matmul_mask(f, x, false, 0))
BUILD(b_matmul_mask_leaky_tb, matmul_mask(f, x, true, 0.2))

/* The finite-difference step: large enough that the f32 loss's rounding
 * noise is well under 1% of the loss rows' gradients, small enough that the
 * O(eps^2) truncation stays under 2e-3 relative (G_POS keeps x >= 0.5, so
 * x^-1.5's third derivative is bounded). */
#define EPS 1e-2
/* dense with relu or leaky_relu: G_ANY operands put pre-activations near
 * the kink at 0, which a step of 1e-2 would cross. */
#define EPS_KINK 1e-3

/* clang-format off */
static const gcase g_cases[] = {
    {"neg", "[?,3]", b_neg, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"exp", "[?,3]", b_exp, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"log", "[?,3] > 0", b_log, 1, {F_(G_POS, 2, Q, 3)}, EPS},
    {"sqrt", "[?,3] > 0", b_sqrt, 1, {F_(G_POS, 2, Q, 3)}, EPS},
    {"pow", "x^3", b_pow3, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"pow", "x^0.5", b_pow_half, 1, {F_(G_POS, 2, Q, 3)}, EPS},
    {"pow", "x^-1.5", b_pow_neg, 1, {F_(G_POS, 2, Q, 3)}, EPS},
    {"relu", "away from 0", b_relu, 1, {F_(G_AWAY0, 2, Q, 3)}, EPS},
    {"leaky_relu", "alpha 0.2", b_leaky, 1, {F_(G_AWAY0, 2, Q, 3)}, EPS},
    {"sigmoid", "[?,3]", b_sigmoid, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"tanh", "[?,3]", b_tanh, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"cast", "f32 -> f32", b_cast, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"add", "[?,3] + [3]", b_add, 2, {F_(G_ANY, 2, Q, 3), F_(G_ANY, 1, 3)}, EPS},
    {"add", "[?,1] + [1,3]", b_add, 2, {F_(G_ANY, 2, Q, 1), F_(G_ANY, 2, 1, 3)}, EPS},
    {"add", "[?,3] + []", b_add, 2, {F_(G_ANY, 2, Q, 3), F_(G_ANY, 0, 0)}, EPS},
    {"add", "x + x (fan-out)", b_add_self, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"sub", "[?,3] - [?,3]", b_sub, 2, {F_(G_ANY, 2, Q, 3), F_(G_ANY, 2, Q, 3)}, EPS},
    {"sub", "[3] - [?,3]", b_sub, 2, {F_(G_ANY, 1, 3), F_(G_ANY, 2, Q, 3)}, EPS},
    {"mul", "[?,3] * [3]", b_mul, 2, {F_(G_ANY, 2, Q, 3), F_(G_ANY, 1, 3)}, EPS},
    {"mul", "[?,3] * [?,1]", b_mul, 2, {F_(G_ANY, 2, Q, 3), F_(G_ANY, 2, Q, 1)}, EPS},
    {"mul", "x * x", b_square, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"div", "[?,3] / [3]", b_div, 2, {F_(G_ANY, 2, Q, 3), F_(G_POS, 1, 3)}, EPS},
    {"div", "[] / [?,3]", b_div, 2, {F_(G_ANY, 0, 0), F_(G_POS, 2, Q, 3)}, EPS},
    {"maximum", "[?,3] vs [?,3]", b_max, 2,
     {F_(G_GRID_A, 2, Q, 3), F_(G_GRID_B, 2, Q, 3)}, EPS},
    {"maximum", "[?,3] vs [3]", b_max, 2, {F_(G_GRID_B, 2, Q, 3), F_(G_GRID_A, 1, 3)}, EPS},
    {"minimum", "[?,3] vs [?,3]", b_min, 2,
     {F_(G_GRID_A, 2, Q, 3), F_(G_GRID_B, 2, Q, 3)}, EPS},
    {"minimum", "[1,3] vs [?,1]", b_min, 2,
     {F_(G_GRID_B, 2, 1, 3), F_(G_GRID_A, 2, Q, 1)}, EPS},
    {"select", "mask ? [?,3] : [3]", b_select, 3,
     {I_(G_MASK, 2, Q, 3), F_(G_ANY, 2, Q, 3), F_(G_ANY, 1, 3)}, EPS},
    {"broadcast_to", "[3] -> [?,3]", b_bcast_row, 1, {F_(G_ANY, 1, 3)}, EPS},
    {"broadcast_to", "[?,1] -> [?,4]", b_bcast_col, 1, {F_(G_ANY, 2, Q, 1)}, EPS},
    {"reduce_sum", "[?,3,2] axis 1", b_sum1, 1, {F_(G_ANY, 3, Q, 3, 2)}, EPS},
    {"reduce_sum", "[?,3] axis 0 keepdims", b_sum0_keep, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"reduce_sum", "[?,3] all", b_sum_all, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"reduce_sum", "[?,3,2] axis -1", b_sum_last, 1, {F_(G_ANY, 3, Q, 3, 2)}, EPS},
    {"reduce_mean", "[?,3] axis 0 (batch)", b_mean0, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"reduce_mean", "[?,3,2] axes 1,2 keepdims", b_mean12_keep, 1,
     {F_(G_ANY, 3, Q, 3, 2)}, EPS},
    {"reduce_mean", "[?,3] all", b_mean_all, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"reduce_max", "[?,4] axis 1", b_max1, 1, {F_(G_UNIQUE, 2, Q, 4)}, EPS},
    {"reduce_max", "[?,3] axis 0 keepdims", b_max0_keep, 1, {F_(G_UNIQUE, 2, Q, 3)}, EPS},
    {"softmax", "[?,4] axis -1", b_softmax, 1, {F_(G_ANY, 2, Q, 4)}, EPS},
    {"softmax", "[?,4] axis 0", b_softmax0, 1, {F_(G_ANY, 2, Q, 4)}, EPS},
    {"log_softmax", "[?,4] axis -1", b_log_softmax, 1, {F_(G_ANY, 2, Q, 4)}, EPS},
    {"log_softmax", "[?,4] axis 0", b_log_softmax0, 1, {F_(G_ANY, 2, Q, 4)}, EPS},
    {"matmul", "[?,4] . [4,3]", b_matmul, 2, {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3)}, EPS},
    {"matmul", "[?,4]^T . [?,3]", b_matmul_ta, 2,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, Q, 3)}, EPS},
    {"matmul", "[?,4] . [3,4]^T", b_matmul_tb, 2,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 3, 4)}, EPS},
    {"matmul", "[4,2]^T . [3,4]^T", b_matmul_tab, 2,
     {F_(G_ANY, 2, 4, 2), F_(G_ANY, 2, 3, 4)}, EPS},
    {"reshape", "[?,2,3] -> [?,6]", b_reshape, 1, {F_(G_ANY, 3, Q, 2, 3)}, EPS},
    {"reshape", "[2,3] -> [3,1,2]", b_reshape_static, 1, {F_(G_ANY, 2, 2, 3)}, EPS},
    {"transpose", "[?,2,3] perm 0,2,1", b_transpose021, 1, {F_(G_ANY, 3, Q, 2, 3)}, EPS},
    {"transpose", "[?,3] -> [3,?]", b_transpose10, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"categorical_crossentropy", "unnormalized p, soft targets", b_cce, 2,
     {F_(G_POS, 2, Q, 4), F_(G_POS, 2, Q, 4)}, EPS},
    {"sparse_categorical_crossentropy", "i32 labels", b_scce, 2,
     {F_(G_POS, 2, Q, 4), I_(G_LABEL, 1, Q)}, EPS},
    {"mean_squared_error", "[?,3]", b_mse, 2, {F_(G_ANY, 2, Q, 3), F_(G_ANY, 2, Q, 3)}, EPS},
    {"binary_crossentropy", "[?,3]", b_bce, 2,
     {F_(G_PROB, 2, Q, 3), F_(G_PROB, 2, Q, 3)}, EPS},
    {"nll", "[?,4]", b_nll, 2, {F_(G_ANY, 2, Q, 4), F_(G_POS, 2, Q, 4)}, EPS},
    {"dense", "no activation", b_dense_none, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS},
    {"dense", "relu", b_dense_relu, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS_KINK},
    {"dense", "leaky_relu 0.2", b_dense_leaky, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS_KINK},
    {"dense", "leaky_relu -0.5 (z recomputed)", b_dense_leaky_neg, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS_KINK},
    {"dense", "sigmoid", b_dense_sigmoid, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS},
    {"dense", "tanh", b_dense_tanh, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS},
    {"conv2d", "valid, stride 1, relu", b_conv_valid_relu, 3,
     {F_(G_ANY, 4, Q, 5, 5, 2), F_(G_ANY, 4, 3, 3, 2, 3), F_(G_ANY, 1, 3)}, EPS_KINK},
    {"conv2d", "same, stride 2, odd 5x5", b_conv_same_s2, 3,
     {F_(G_ANY, 4, Q, 5, 5, 2), F_(G_ANY, 4, 3, 3, 2, 2), F_(G_ANY, 1, 2)}, EPS},
    {"conv2d", "same, stride 1, 2x2 kernel (pad bottom/right)", b_conv_same_s1, 3,
     {F_(G_ANY, 4, Q, 4, 5, 1), F_(G_ANY, 4, 2, 2, 1, 2), F_(G_ANY, 1, 2)}, EPS},
    {"conv2d", "valid, stride 2, sigmoid, batch 7", b_conv_valid_s2_sigmoid, 3,
     {F_(G_ANY, 4, 7, 5, 5, 1), F_(G_ANY, 4, 3, 3, 1, 2), F_(G_ANY, 1, 2)}, EPS},
    {"conv2d", "valid, dilation 2, tanh", b_conv_dil2_tanh, 3,
     {F_(G_ANY, 4, Q, 6, 5, 2), F_(G_ANY, 4, 2, 2, 2, 2), F_(G_ANY, 1, 2)}, EPS},
    {"conv2d", "same, dilation 2, batch 1", b_conv_dil2_same, 3,
     {F_(G_ANY, 4, 1, 5, 5, 1), F_(G_ANY, 4, 3, 3, 1, 2), F_(G_ANY, 1, 2)}, EPS},
    {"max_pool2d", "2x2 stride 2 valid", b_maxpool_2, 1, {F_(G_UNIQUE, 4, Q, 4, 4, 2)}, EPS},
    {"max_pool2d", "3x3 stride 2 same, odd 5x5", b_maxpool_3s2_same, 1,
     {F_(G_UNIQUE, 4, Q, 5, 5, 1)}, EPS},
    {"max_pool2d", "2x2 stride 1 same, batch 7", b_maxpool_2s1_same, 1,
     {F_(G_UNIQUE, 4, 7, 3, 3, 1)}, EPS},
    {"max_pool2d", "2x2 stride 2 valid, batch 1", b_maxpool_2, 1,
     {F_(G_UNIQUE, 4, 1, 5, 5, 1)}, EPS},
    {"avg_pool2d", "2x2 stride 2 valid", b_avgpool_2, 1, {F_(G_ANY, 4, Q, 4, 4, 2)}, EPS},
    {"avg_pool2d", "3x3 stride 2 same, odd 5x5", b_avgpool_3s2_same, 1,
     {F_(G_ANY, 4, Q, 5, 5, 1)}, EPS},
    {"avg_pool2d", "2x2 stride 1 same, batch 7", b_avgpool_2s1_same, 1,
     {F_(G_ANY, 4, 7, 3, 3, 1)}, EPS},
    {"avg_pool2d", "2x2 stride 2 valid, batch 1", b_avgpool_2, 1, {F_(G_ANY, 4, 1, 5, 5, 1)}, EPS},
    {"softmax_cross_entropy", "one-hot f32 targets", b_sce, 2,
     {F_(G_ANY, 2, Q, 4), IN_(G_ONEHOT, 2, Q, 4)}, EPS},
    {"softmax_cross_entropy", "gradient of the targets too", b_sce, 2,
     {F_(G_ANY, 2, 3, 4), F_(G_ONEHOT, 2, 3, 4)}, EPS},
    {"softmax_cross_entropy", "i32 labels", b_sce, 2,
     {F_(G_ANY, 2, Q, 4), I_(G_LABEL, 1, Q)}, EPS},
    /* the gradient recomputes the forward's mask from the same counters */
    {"dropout", "rate 0.3, i32 step", b_dropout, 2, {F_(G_ANY, 2, Q, 5), I_(G_LABEL, 0)}, EPS},
    /* batch statistics (x's gradient through the mean and variance), then
     * the moving ones (fixed inputs) */
    {"batch_norm", "training [?,5]", b_bn_train, 5,
     {F_(G_ANY, 2, Q, 5), F_(G_ANY, 1, 5), F_(G_ANY, 1, 5), IN_(G_ANY, 1, 5), IN_(G_POS, 1, 5)},
     EPS},
    {"batch_norm", "training NHWC [?,2,3,4]", b_bn_train, 5,
     {F_(G_ANY, 4, Q, 2, 3, 4), F_(G_ANY, 1, 4), F_(G_ANY, 1, 4), IN_(G_ANY, 1, 4),
      IN_(G_POS, 1, 4)},
     EPS},
    {"batch_norm", "moving statistics [?,5]", b_bn_moving, 5,
     {F_(G_ANY, 2, Q, 5), F_(G_ANY, 1, 5), F_(G_ANY, 1, 5), IN_(G_ANY, 1, 5), IN_(G_POS, 1, 5)},
     EPS},
    /* last: a case's seed is its index, so new cases go at the end */
    {"allreduce_mean", "one process", b_allreduce_mean, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    /* ONNX's explicit pads (issue 16) */
    {"conv2d", "pads [1,2,1,0], stride 2", b_conv_pads, 3,
     {F_(G_ANY, 4, Q, 5, 6, 2), F_(G_ANY, 4, 3, 3, 2, 2), F_(G_ANY, 1, 2)}, EPS},
    {"max_pool2d", "3x3 pads [1,1,2,0], stride 2", b_maxpool_pads, 1,
     {F_(G_UNIQUE, 4, Q, 5, 6, 1)}, EPS},
    {"avg_pool2d", "3x3 pads [2,0,1,1], stride 1", b_avgpool_pads, 1,
     {F_(G_ANY, 4, Q, 4, 5, 1)}, EPS},
    {"allreduce_wait", "one process", b_allreduce_wait, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    /* Keras 3 activations (issue 15): the ops, then as dense's epilogue */
    {"erf", "[?,3]", b_erf, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"elu", "alpha 1, away from 0", b_elu, 1, {F_(G_AWAY0, 2, Q, 3)}, EPS},
    {"elu", "alpha 0.5", b_elu_half, 1, {F_(G_AWAY0, 2, Q, 3)}, EPS},
    {"relu6", "away from 0", b_relu6, 1, {F_(G_AWAY0, 2, Q, 3)}, EPS},
    {"gelu", "[?,3]", b_gelu, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"softplus", "[?,3]", b_softplus, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"silu", "[?,3]", b_silu, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"hard_sigmoid", "[?,3]", b_hard_sigmoid, 1, {F_(G_ANY, 2, Q, 3)}, EPS},
    {"dense", "elu", b_dense_elu, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS_KINK},
    {"dense", "gelu (z recomputed)", b_dense_gelu, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS},
    {"dense", "softplus (z recomputed)", b_dense_softplus, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS},
    {"dense", "silu (z recomputed)", b_dense_silu, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS},
    {"dense", "relu6", b_dense_relu6, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS_KINK},
    {"dense", "hard_sigmoid", b_dense_hard_sigmoid, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_ANY, 1, 3)}, EPS},
    /* relu's derivative inside max pooling's gradient (relu_mask) */
    {"conv2d", "relu, then 2x2 max pooling", b_conv_relu_maxpool, 3,
     {F_(G_ANY, 4, Q, 6, 6, 2), F_(G_ANY, 4, 3, 3, 2, 3), F_(G_ANY, 1, 3)}, EPS_KINK},
    {"pad", "[?,3,4] padded", b_pad, 1, {F_(G_ANY, 3, Q, 3, 4)}, EPS},
    {"pad", "[?,3,4] padded and cropped", b_pad_crop, 1, {F_(G_ANY, 3, Q, 3, 4)}, EPS},
    {"pad", "[?,3,4] reflect", b_pad_reflect, 1, {F_(G_ANY, 3, Q, 3, 4)}, EPS},
    {"pad", "[?,3,4] edge", b_pad_edge, 1, {F_(G_ANY, 3, Q, 3, 4)}, EPS},
    {"pad", "[?,3,4] reflect and cropped", b_pad_reflect_crop, 1, {F_(G_ANY, 3, Q, 3, 4)}, EPS},
    {"pad", "[?,3,4] edge and cropped", b_pad_edge_crop, 1, {F_(G_ANY, 3, Q, 3, 4)}, EPS},
    /* the mask h away from 0: no step crosses it (its gradient is zero) */
    {"matmul_mask", "[?,4] . [4,3], relu's mask", b_matmul_mask, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 4, 3), F_(G_AWAY0, 2, Q, 3)}, EPS},
    {"matmul_mask", "[?,4] . [3,4]^T, leaky_relu's mask", b_matmul_mask_leaky_tb, 3,
     {F_(G_ANY, 2, Q, 4), F_(G_ANY, 2, 3, 4), F_(G_AWAY0, 2, Q, 3)}, EPS},
};
/* clang-format on */

/* Builds @loss = sum(case(inputs) · r). batched: inputs keep their '?'. */
static void build_case(harness *h, const gcase *c, bool batched) {
    memset(h, 0, sizeof *h);
    h->m = kiln_module_create(c->op);
    kiln_func *f = kiln_func_create(h->m, "loss");
    kiln_value x[5];
    for (int k = 0; k < c->n; k++) {
        const operand *o = &c->in[k];
        int64_t dims[4], pdims[4];
        bool has_batch = false;
        for (int a = 0; a < o->rank; a++) {
            has_batch |= o->dims[a] == Q;
            dims[a] = o->dims[a] == Q && !batched ? B : o->dims[a];
            pdims[a] = o->dims[a] == Q ? 1 : o->dims[a];
        }
        char name[16];
        if (o->dt == KILN_I32 || o->role == FIXED) {
            snprintf(name, sizeof name, "x%d", k);
            x[k] = add_input(h, f, name, o->dt, o->rank, dims, o->g);
        } else if (batched && has_batch) {
            snprintf(name, sizeof name, "s%d", k);
            kiln_value s = add_input(h, f, name, KILN_F32, o->rank, dims, o->g);
            snprintf(name, sizeof name, "p%d", k);
            x[k] = kiln_mul(f, s, add_param(h, f, name, o->rank, pdims, G_SCALE));
        } else {
            snprintf(name, sizeof name, "p%d", k);
            x[k] = add_param(h, f, name, o->rank, dims, o->g);
        }
    }
    kiln_value y = c->build(f, x, batched ? KILN_BATCH : B);
    ck_assert_msg(kiln_value_ok(y), "%s (%s): %s", c->op, c->what, kiln_func_error(f));
    int64_t rdims[KILN_MAX_RANK];
    int rank = kiln_value_rank(f, y);
    for (int a = 0; a < rank; a++) rdims[a] = kiln_value_dim(f, y, a);
    kiln_value r = add_input(h, f, "r", KILN_F32, rank, rdims, G_ANY);
    kiln_value t = kiln_mul(f, y, r);
    kiln_value L = kiln_reduce_sum(f, t, 0, NULL, 0);
    ck_assert_msg(kiln_value_ok(L), "%s: %s", c->op, kiln_func_error(f));
    ck_assert_int_eq(kiln_output(f, L), KILN_OK);
    /* The loss's scale, sum |y r|: a metric (autodiff passes it through). */
    kiln_value S = kiln_reduce_sum(f, kiln_maximum(f, t, kiln_neg(f, t)), 0, NULL, 0);
    ck_assert_int_eq(kiln_output(f, S), KILN_OK);
    h->scale_result = 1;
}

/* ----------------------------------------------------- negative controls
 * The rule of one op with its every result scaled by a factor: the check
 * must fail for a 1% error in any rule. */
static int g_perturb_op;
static double g_perturb_factor;

static kiln_status perturbed_rule(ir_builder *b, ir_node *n, ir_node *dy, const bool *need,
                                  ir_node **dx) {
    kiln_status st = pass_grad_rule(n->op)(b, n, dy, need, dx);
    if (st != KILN_OK) return st;
    for (int k = 0; k < n->n_in; k++)
        if (need[k] && dx[k]) {
            ir_node *c = ir_b_broadcast_to(b, ir_b_scalar(b, g_perturb_factor), &dx[k]->type);
            dx[k] = ir_b_bin(b, IR_OP_mul, dx[k], c);
        }
    return b->status;
}

static pass_grad_fn perturbed_rules(int op) {
    return op == g_perturb_op ? perturbed_rule : pass_grad_rule(op);
}

/* Each case passes the check, and fails it with the op's rule 1% off
 * either way (on the same finite differences). */
START_TEST(test_op_gradient) {
    const gcase *c = &g_cases[_i];
    for (int batched = 0; batched <= 1; batched++) {
        harness h;
        build_case(&h, c, batched);
        harness_fill(&h, 1000 + (uint64_t)_i);
        char label[160], worst[256];
        snprintf(label, sizeof label, "%s (%s, %s)", c->op, c->what,
                 batched ? "batch '?'" : "static shapes");
        numeric nu = numeric_grads(&h, c->eps);
        double r = grad_ratio(&h, &nu, pass_grad_rule, label, worst, sizeof worst);
        ck_assert_msg(r <= 1, "%s: %s", label, worst);
        printf("grad: %-70s worst error/tolerance %.3f\n", label, r);
        harness_free(&h);
        g_perturb_op = ir_op_lookup(c->op);
        ck_assert_int_ge(g_perturb_op, IR_FIRST_OP);
        for (int sign = -1; sign <= 1; sign += 2) {
            g_perturb_factor = 1 + 0.01 * sign;
            build_case(&h, c, batched);
            harness_fill(&h, 1000 + (uint64_t)_i);
            double rp = grad_ratio(&h, &nu, perturbed_rules, label, worst, sizeof worst);
            ck_assert_msg(rp > 1, "%s: the check passes with the '%s' rule %+d%% off (%.3f): %s",
                          label, c->op, sign, rp, worst);
            printf("grad: %-70s rule %+d%%: worst error/tolerance %.3f\n", label, sign, rp);
            harness_free(&h);
        }
        numeric_free(&nu);
    }
}
END_TEST

/* The grad column of ops.def, as written there. */
static const struct {
    const char *op, *grad;
} g_column[] = {
#define EW(name, arity, kind, facts, attrs, infer, scalar, grad, lower) {#name, #grad},
#define OP(name, arity, kind, facts, attrs, infer, kernel, grad, lower, ws) {#name, #grad},
#include "ir/ops.def"
#undef EW
#undef OP
};

START_TEST(test_every_rule_has_a_case) {
    int rules = 0;
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_column); i++) {
        int op = ir_op_lookup(g_column[i].op);
        ck_assert_int_ge(op, IR_FIRST_OP);
        bool nograd = strcmp(g_column[i].grad, "NOGRAD") == 0;
        ck_assert_msg(nograd == (pass_grad_rule(op) == NULL),
                      "%s: the table disagrees with the grad column of ops.def", g_column[i].op);
        if (nograd) continue;
        rules++;
        bool found = false;
        for (size_t c = 0; c < KILN_ARRAY_LEN(g_cases) && !found; c++)
            found = strcmp(g_cases[c].op, g_column[i].op) == 0;
        ck_assert_msg(found, "op '%s' has a gradient rule (%s) but no gradient check case",
                      g_column[i].op, g_column[i].grad);
    }
    ck_assert_int_ge(rules, 30);
}
END_TEST

/* ------------------------------------------------------------ whole graphs */

typedef enum mlp_loss { L_CCE, L_SCCE, L_MSE, L_BCE, L_NLL, L_SCE, L_SCE_LABELS, L_FUSED } mlp_loss;

/* x[?,4] -> tanh(x W1 + b1) [?,5] -> logits [?,4] -> the loss. L_FUSED
 * writes the model as fuse-dense-act and fuse-softmax-ce would leave it.
 * Returns the logits. */
static kiln_value build_mlp(harness *h, mlp_loss loss) {
    memset(h, 0, sizeof *h);
    h->m = kiln_module_create("mlp");
    kiln_func *f = kiln_func_create(h->m, "loss");
    kiln_value x = add_input(h, f, "x", KILN_F32, 2, (const int64_t[]){Q, 4}, G_ANY);
    kiln_value w1 = add_param(h, f, "h.kernel", 2, (const int64_t[]){4, 5}, G_ANY);
    kiln_value b1 = add_param(h, f, "h.bias", 1, (const int64_t[]){5}, G_ANY);
    kiln_value w2 = add_param(h, f, "out.kernel", 2, (const int64_t[]){5, CLASSES}, G_ANY);
    kiln_value b2 = add_param(h, f, "out.bias", 1, (const int64_t[]){CLASSES}, G_ANY);
    kiln_value z, L;
    if (loss == L_FUSED) {
        kiln_value hid = dense(f, x, w1, b1, KILN_ACT_TANH, 0);
        z = dense(f, hid, w2, b2, KILN_ACT_NONE, 0);
    } else {
        kiln_value hid = kiln_tanh(f, kiln_add(f, kiln_matmul(f, x, w1, 0, 0), b1));
        z = kiln_add(f, kiln_matmul(f, hid, w2, 0, 0), b2);
    }
    const int64_t t3[] = {Q, CLASSES};
    switch (loss) {
    case L_CCE:
        L = kiln_categorical_crossentropy(f, kiln_softmax(f, z, -1),
                                          add_input(h, f, "y", KILN_F32, 2, t3, G_ONEHOT));
        break;
    case L_SCCE:
        L = kiln_sparse_categorical_crossentropy(
            f, kiln_softmax(f, z, -1),
            add_input(h, f, "y", KILN_I32, 1, (const int64_t[]){Q}, G_LABEL));
        break;
    case L_MSE:
        L = kiln_mean_squared_error(f, z, add_input(h, f, "y", KILN_F32, 2, t3, G_ANY));
        break;
    case L_BCE:
        L = kiln_binary_crossentropy(f, kiln_sigmoid(f, z),
                                     add_input(h, f, "y", KILN_F32, 2, t3, G_PROB));
        break;
    case L_NLL:
        L = kiln_nll(f, kiln_log_softmax(f, z, -1),
                     add_input(h, f, "y", KILN_F32, 2, t3, G_ONEHOT));
        break;
    case L_SCE:
    case L_FUSED:
        L = softmax_ce(f, z, add_input(h, f, "y", KILN_F32, 2, t3, G_ONEHOT));
        break;
    case L_SCE_LABELS:
        L = softmax_ce(f, z, add_input(h, f, "y", KILN_I32, 1, (const int64_t[]){Q}, G_LABEL));
        break;
    }
    ck_assert_msg(kiln_value_ok(L), "%s", kiln_func_error(f));
    ck_assert_int_eq(kiln_output(f, L), KILN_OK);
    return z;
}

static const char *const g_mlp_names[] = {"categorical_crossentropy",
                                          "sparse_categorical_crossentropy",
                                          "mean_squared_error",
                                          "binary_crossentropy",
                                          "nll of log_softmax",
                                          "softmax_cross_entropy",
                                          "softmax_cross_entropy with i32 labels",
                                          "dense + softmax_cross_entropy (fused)"};

START_TEST(test_mlp_gradient) {
    harness h;
    build_mlp(&h, (mlp_loss)_i);
    harness_fill(&h, 77 + (uint64_t)_i);
    char label[96];
    snprintf(label, sizeof label, "two-layer MLP under %s", g_mlp_names[_i]);
    gradcheck(&h, EPS, label);
    harness_free(&h);
}
END_TEST

/* Metrics pass through; frozen and unused parameters. */
START_TEST(test_metrics_frozen_unused) {
    harness h;
    kiln_value z = build_mlp(&h, L_CCE);
    kiln_func *f = kiln_module_func(h.m, "loss");
    /* A metric: the mean of the logits' row maxima (any f32 value will do). */
    kiln_output(f, kiln_reduce_mean(f, kiln_reduce_max(f, z, 1, ax1, 0), 0, NULL, 0));
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
    ck_assert_int_eq(
        kiln_module_add_param(h.m, "unused", KILN_F32, 1, (const int64_t[]){2}, zeros, NULL),
        KILN_OK);
    h.glob_gen[h.n_globals++] = G_ANY;
    ck_assert_int_eq(kiln_module_set_trainable(h.m, "h.kernel", 0, NULL), KILN_OK);
    harness_fill(&h, 5);
    gradcheck(&h, EPS, "MLP with a metric, a frozen and an unused parameter");

    kiln_func *ts = kiln_module_func(h.m, "train_step");
    ck_assert_int_eq(ts->n_results, 2 + 4); /* loss, metric, h.bias, out.*, unused */
    ir_node *unused = ts->results[5];
    ck_assert_int_eq(unused->op, IR_OP_constant);
    ck_assert(ir_attr_f(unused, "value") == 0.0);
    ck_assert_int_eq(unused->type.dims[0], 2);
    /* The first matmul gets no rule at all: neither x nor the frozen
     * @h.kernel needs a gradient. */
    int matmuls = 0;
    for (int i = 0; i < ts->n_nodes; i++) matmuls += ts->nodes[i]->op == IR_OP_matmul;
    ck_assert_int_eq(matmuls, 2 + 2); /* forward 2; d@out.kernel and d(hidden) */
    harness_free(&h);
}
END_TEST

/* The MNIST-shaped model (784-128-64-10): no gradient node for x. */
static kiln_module *mnist(bool fused) {
    kiln_module *m = kiln_module_create("mnist_mlp");
    kiln_func *f = kiln_func_create(m, "loss");
    kiln_init glorot = {KILN_INIT_GLOROT_UNIFORM, 0, 0}, zeros = {KILN_INIT_ZEROS, 0, 0};
    const int64_t sizes[] = {784, 128, 64, 10};
    kiln_func_set_loc(f, "mnist.kiln", 5, 1);
    kiln_value h = kiln_input(f, "x", KILN_F32, 2, (const int64_t[]){Q, 784});
    kiln_value y = kiln_input(f, "y", KILN_F32, 2, (const int64_t[]){Q, 10});
    for (int l = 0; l < 3; l++) {
        char wn[32], bn[32];
        snprintf(wn, sizeof wn, "h%d.kernel", l + 1);
        snprintf(bn, sizeof bn, "h%d.bias", l + 1);
        ck_assert_int_eq(kiln_module_add_param(m, wn, KILN_F32, 2,
                                               (const int64_t[]){sizes[l], sizes[l + 1]}, glorot,
                                               NULL),
                         KILN_OK);
        ck_assert_int_eq(kiln_module_add_param(m, bn, KILN_F32, 1, &sizes[l + 1], zeros, NULL),
                         KILN_OK);
        kiln_func_set_loc(f, "mnist.kiln", 7 + l, 6);
        if (fused) {
            h = dense(f, h, kiln_param(f, wn), kiln_param(f, bn),
                      l < 2 ? KILN_ACT_RELU : KILN_ACT_NONE, 0);
        } else {
            h = kiln_add(f, kiln_matmul(f, h, kiln_param(f, wn), 0, 0), kiln_param(f, bn));
            h = l < 2 ? kiln_relu(f, h) : kiln_softmax(f, h, -1);
        }
    }
    kiln_func_set_loc(f, "mnist.kiln", 11, 1);
    kiln_value L = fused ? softmax_ce(f, h, y) : kiln_categorical_crossentropy(f, h, y);
    ck_assert_msg(kiln_value_ok(L), "%s", kiln_func_error(f));
    kiln_output(f, L);
    return m;
}

START_TEST(test_mnist_no_input_gradient) {
    for (int fused = 0; fused <= 1; fused++) {
        kiln_module *m = mnist(fused);
        kiln_diag *d = kiln_diag_create();
        ck_assert_msg(pass_autodiff(m, d) == KILN_OK, "%s", kiln_diag_message(d));
        ck_assert_int_eq(kiln_module_verify(m, d), KILN_OK);
        kiln_func *ts = kiln_module_func(m, "train_step");
        ck_assert_int_eq(ts->n_results, 1 + 6);
        int matmuls = 0;
        for (int i = 0; i < ts->n_nodes; i++) {
            const ir_node *n = ts->nodes[i];
            /* Nothing of x's shape but x itself: no 128x784 product for dx. */
            ck_assert_msg(!(n->type.rank == 2 && n->type.dims[1] == 784 && n->type.dims[0] == Q),
                          "a node computes a gradient for x: %s", ir_op_name(n->op));
            matmuls += n->op == IR_OP_matmul;
            /* Backward nodes keep the forward locations. */
            ck_assert_ptr_nonnull(n->loc.file);
        }
        /* Unfused: 3 forward; dW for 3 layers, dx for layers 2 and 3.
         * Fused: the forward products are inside dense. */
        ck_assert_int_eq(matmuls, fused ? 5 : 8);
        kiln_diag_dispose(d);
        kiln_module_dispose(m);
    }
}
END_TEST

/* Logits of ±1e4: softmax_cross_entropy's gradient is exactly
 * (onehot(argmax z) - y) / N, and categorical_crossentropy after a saturated
 * softmax (probabilities of exactly 0 and 1, clipped) stays finite. */
START_TEST(test_extreme_logits) {
    const float z[2][4] = {{1e4f, -1e4f, 0, 5e3f}, {-1e4f, -1e4f, 1e4f, -1e4f}};
    const float y[2][4] = {{0, 1, 0, 0}, {0, 0, 1, 0}};
    for (int fused = 0; fused <= 1; fused++) {
        kiln_module *m = kiln_module_create("extreme");
        kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
        kiln_module_add_param(m, "z", KILN_F32, 2, (const int64_t[]){2, 4}, zeros, NULL);
        kiln_func *f = kiln_func_create(m, "loss");
        kiln_value t = kiln_input(f, "y", KILN_F32, 2, (const int64_t[]){2, 4});
        kiln_value zv = kiln_param(f, "z");
        kiln_output(f, fused ? softmax_ce(f, zv, t)
                             : kiln_categorical_crossentropy(f, kiln_softmax(f, zv, -1), t));
        kiln_diag *d = kiln_diag_create();
        ck_assert_msg(pass_autodiff(m, d) == KILN_OK, "%s", kiln_diag_message(d));
        float L, dz[2][4];
        void *args[1] = {(void *)y}, *res[2] = {&L, dz}, *globals[1] = {(void *)z};
        ck_assert_int_eq(ir_interp_run(kiln_module_func(m, "train_step"), 2, args, res, globals, d),
                         KILN_OK);
        ck_assert_msg(isfinite(L), "loss %g", L);
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 4; c++) {
                ck_assert_msg(isfinite(dz[r][c]), "dz[%d][%d] = %g", r, c, dz[r][c]);
                float want = ((c == (r ? 2 : 0)) - y[r][c]) / 2.0f;
                if (fused) ck_assert_msg(dz[r][c] == want, "dz[%d][%d] = %g", r, c, dz[r][c]);
            }
        if (fused) ck_assert(L == (2e4f + 0) / 2); /* row 0: lse - z_1 = 2e4; row 1: 0 */
        kiln_diag_dispose(d);
        kiln_module_dispose(m);
    }
}
END_TEST

/* --------------------------------------------------------------- errors */

static pass_grad_fn without_relu_tanh(int op) {
    return op == IR_OP_relu || op == IR_OP_tanh ? NULL : pass_grad_rule(op);
}

START_TEST(test_missing_rules_one_error) {
    kiln_module *m = kiln_module_create("t");
    kiln_func *f = kiln_func_create(m, "loss");
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
    kiln_module_add_param(m, "w", KILN_F32, 2, (const int64_t[]){3, 3}, zeros, NULL);
    kiln_value x = kiln_input(f, "x", KILN_F32, 2, (const int64_t[]){Q, 3});
    kiln_func_set_loc(f, "t.kiln", 2, 5);
    kiln_value xr = kiln_relu(f, x); /* input only: needs no gradient, so no rule */
    kiln_func_set_loc(f, "t.kiln", 3, 5);
    kiln_value h = kiln_tanh(f, kiln_matmul(f, xr, kiln_param(f, "w"), 0, 0));
    kiln_func_set_loc(f, "t.kiln", 4, 7);
    h = kiln_relu(f, h);
    kiln_func_set_loc(f, "t.kiln", 5, 1);
    kiln_output(f, kiln_reduce_mean(f, h, 0, NULL, 0));
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(pass_autodiff_rules(m, without_relu_tanh, d), KILN_ERR_UNSUPPORTED);
    const char *msg = kiln_diag_message(d);
    ck_assert_int_eq(kiln_diag_error_count(d), 1);
    ck_assert_msg(strstr(msg, "t.kiln:3:5: error: autodiff: no gradient rule for 2 ops") == msg,
                  "%s", msg);
    ck_assert_msg(strstr(msg, "'tanh' at t.kiln:3:5, 'relu' at t.kiln:4:7\n"), "%s", msg);
    ck_assert_msg(!strstr(msg, "2:5"), "the input's relu needs no rule: %s", msg);
    ck_assert_ptr_null(kiln_module_func(m, "train_step")); /* module left as it was */
    ck_assert_int_eq(m->n_funcs, 1);
    /* With every rule the same module differentiates. */
    kiln_diag_clear(d);
    ck_assert_msg(pass_autodiff(m, d) == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* A rule that returns a gradient of the wrong shape. */
static kiln_status bad_tanh(ir_builder *b, ir_node *n, ir_node *dy, const bool *need,
                            ir_node **dx) {
    dx[0] = ir_b_reduce(b, IR_OP_reduce_sum, dy, 1, (const int64_t[]){0}, false);
    return b->status;
}

static pass_grad_fn with_bad_tanh(int op) {
    return op == IR_OP_tanh ? bad_tanh : pass_grad_rule(op);
}

START_TEST(test_rule_shape_checked) {
    harness h;
    build_mlp(&h, L_MSE);
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(pass_autodiff_rules(h.m, with_bad_tanh, d), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_diag_message(d), "autodiff: the gradient rule of 'tanh' gave "
                                               "f32[5] for operand 1 of type f32[?,5]"),
                  "%s", kiln_diag_message(d));
    ck_assert_ptr_null(kiln_module_func(h.m, "train_step"));
    kiln_diag_dispose(d);
    harness_free(&h);
}
END_TEST

START_TEST(test_bad_modules) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = kiln_module_create("t");
    ck_assert_int_eq(pass_autodiff(m, d), KILN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "no function @loss"));

    kiln_func *f = kiln_func_create(m, "loss");
    kiln_func_set_loc(f, "t.kiln", 9, 3);
    kiln_value x = kiln_input(f, "x", KILN_F32, 2, (const int64_t[]){Q, 3});
    kiln_output(f, kiln_tanh(f, x));
    kiln_diag_clear(d);
    ck_assert_int_eq(pass_autodiff(m, d), KILN_ERR_SHAPE);
    ck_assert_msg(strstr(kiln_diag_message(d),
                         "t.kiln:9:3: error: autodiff: @loss must return the loss as an f32[] "
                         "scalar first, it returns f32[?,3]"),
                  "%s", kiln_diag_message(d));

    kiln_func_create(m, "train_step");
    kiln_diag_clear(d);
    ck_assert_int_eq(pass_autodiff(m, d), KILN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "already has a function @train_step"));
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* Allocation number 1, 2, 3, ... fails in turn: each run ends in a clean
 * error and leaves the module as it was; then a run with no fault works. */
START_TEST(test_alloc_failures) {
    for (long n = 1;; n++) {
        kiln_module *m = mnist(false);
        kiln_diag *d = kiln_diag_create();
        kiln_test_alloc_fail_at(n);
        kiln_status st = pass_autodiff(m, d);
        bool failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            ck_assert_int_gt(n, 10);
            kiln_diag_dispose(d);
            kiln_module_dispose(m);
            break;
        }
        ck_assert_msg(st != KILN_OK, "allocation %ld failed but autodiff succeeded", n);
        ck_assert_ptr_null(kiln_module_func(m, "train_step"));
        ck_assert_int_eq(kiln_module_verify(m, NULL), KILN_OK);
        kiln_diag_dispose(d);
        kiln_module_dispose(m);
    }
}
END_TEST

/* The dump reads as forward, seed, backward; ends with the gradients. */
START_TEST(test_dump_reads_clearly) {
    kiln_module *m = mnist(true);
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(pass_autodiff(m, d), KILN_OK);
    ir_sb sb;
    ir_sb_init(&sb);
    ir_print_func(&sb, kiln_module_func(m, "train_step"), NULL);
    char *text = ir_sb_take(&sb);
    ck_assert_ptr_nonnull(text);
    const char *seed = strstr(text, "constant() {value=1} : f32[]  # mnist.kiln:11:1");
    const char *loss = strstr(text, "softmax_cross_entropy(");
    const char *dw1 = strstr(text, "matmul(%x, ");
    ck_assert_msg(seed && loss && dw1 && loss < seed && seed < dw1, "%s", text);
    ck_assert_msg(strstr(text, "-> (f32[], f32[784,128], f32[128], f32[128,64], f32[64], "
                               "f32[64,10], f32[10]) {"),
                  "%s", text);
    ir_free(text);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

static Suite *grad_suite(void) {
    Suite *s = suite_create("grad");
    TCase *ops = tcase_create("ops");
    tcase_add_test(ops, test_every_rule_has_a_case);
    tcase_add_loop_test(ops, test_op_gradient, 0, (int)KILN_ARRAY_LEN(g_cases));
    suite_add_tcase(s, ops);
    TCase *graphs = tcase_create("graphs");
    tcase_add_loop_test(graphs, test_mlp_gradient, 0, (int)KILN_ARRAY_LEN(g_mlp_names));
    tcase_add_test(graphs, test_metrics_frozen_unused);
    tcase_add_test(graphs, test_mnist_no_input_gradient);
    tcase_add_test(graphs, test_dump_reads_clearly);
    tcase_add_test(graphs, test_extreme_logits);
    suite_add_tcase(s, graphs);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_missing_rules_one_error);
    tcase_add_test(errors, test_rule_shape_checked);
    tcase_add_test(errors, test_bad_modules);
    tcase_add_test(errors, test_alloc_failures);
    suite_add_tcase(s, errors);
    return s;
}

int main(void) {
    return tu_run_suite(grad_suite());
}

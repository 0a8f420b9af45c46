/*
 * test_optimizer.c — the optimizer pass against updates computed by hand.
 *
 * The model is L = sum(w · c) with c an argument, so the gradient of w is
 * exactly c: three steps with three fixed gradients, run on the interpreter,
 * must give the parameter, slot and step-counter values the formulas give
 * (computed here in double, from Keras' definitions). A frozen parameter
 * takes no slot and never changes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass.h"
#include "testutil.h"

#define N     3
#define STEPS 3

static const double g_w0[N] = {1.0, -0.5, 0.25};
static const float g_grads[STEPS][N] = {
    {0.5f, -1.0f, 2.0f}, {0.1f, 0.3f, -0.7f}, {-2.0f, 0.4f, 1.0f}};

typedef struct run {
    kiln_module *m;
    void *data[8]; /* by global index */
} run;

/* L = sum(w · c) + sum(frozen · c): @frozen reads like a parameter but is not
 * trainable. Runs autodiff and the optimizer. */
static void build(run *r, ir_optimizer opt) {
    memset(r, 0, sizeof *r);
    r->m = kiln_module_create("opt");
    const int64_t n[] = {N};
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
    ck_assert_int_eq(kiln_module_add_param(r->m, "w", KILN_F32, 1, n, zeros, NULL), KILN_OK);
    ck_assert_int_eq(kiln_module_add_param(r->m, "frozen", KILN_F32, 1, n, zeros, NULL), KILN_OK);
    ck_assert_int_eq(kiln_module_set_trainable(r->m, "frozen", 0, NULL), KILN_OK);
    kiln_func *f = kiln_func_create(r->m, "loss");
    kiln_value c = kiln_input(f, "c", KILN_F32, 1, n);
    kiln_value L =
        kiln_add(f, kiln_reduce_sum(f, kiln_mul(f, kiln_param(f, "w"), c), 0, NULL, 0),
                 kiln_reduce_sum(f, kiln_mul(f, kiln_param(f, "frozen"), c), 0, NULL, 0));
    ck_assert(kiln_value_ok(L));
    kiln_output(f, L);
    r->m->train.present = true;
    r->m->train.opt = opt;
    kiln_diag *d = kiln_diag_create();
    kiln_status st = pass_run_pipeline(r->m, "autodiff,optimizer", NULL, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    for (int i = 0; i < r->m->n_globals; i++)
        r->data[i] = calloc((size_t)ir_type_numel(&r->m->globals[i]->type, 1), 4);
    float *w = r->data[ir_module_global(r->m, "w")->index];
    float *fr = r->data[ir_module_global(r->m, "frozen")->index];
    for (int i = 0; i < N; i++) {
        w[i] = (float)g_w0[i];
        fr[i] = 0.5f;
    }
}

static void run_free(run *r) {
    for (int i = 0; i < r->m->n_globals; i++) free(r->data[i]);
    kiln_module_dispose(r->m);
}

static const float *slot(run *r, const char *name) {
    ir_global *g = ir_module_global(r->m, name);
    ck_assert_msg(g != NULL, "no global @%s", name);
    ck_assert_int_eq(g->kind, IR_GLOBAL_STATE);
    ck_assert(g->init.kind == KILN_INIT_ZEROS);
    return r->data[g->index];
}

/* One train step with gradient g_grads[s]; checks the returned loss. */
static void step(run *r, int s) {
    kiln_func *ts = kiln_module_func(r->m, "train_step");
    ck_assert_int_eq(ts->n_results, 1); /* the gradients were consumed */
    const float *w = r->data[ir_module_global(r->m, "w")->index];
    double expect = 0;
    for (int i = 0; i < N; i++) expect += (double)w[i] * g_grads[s][i] + 0.5 * g_grads[s][i];
    float loss = NAN;
    void *args[1] = {(void *)g_grads[s]}, *res[1] = {&loss};
    kiln_diag *d = kiln_diag_create();
    kiln_status st = ir_interp_run(ts, 1, args, res, r->data, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    ck_assert_msg(tu_close(loss, expect, 0, 1e-6),
                  "the loss is computed before the update: %.9g vs %.9g", loss, expect);
    ck_assert_int_eq(*(const int32_t *)slot(r, "optimizer.iterations"), s + 1);
    const float *fr = r->data[ir_module_global(r->m, "frozen")->index];
    for (int i = 0; i < N; i++) ck_assert(fr[i] == 0.5f);
}

static void expect_near(const float *got, const double *want, const char *what, int s) {
    for (int i = 0; i < N; i++)
        ck_assert_msg(tu_close(got[i], want[i], 0, 2e-6), "step %d: %s[%d] = %.9g, by hand %.9g",
                      s + 1, what, i, got[i], want[i]);
}

START_TEST(test_sgd) {
    ir_optimizer o = ir_optimizer_defaults(IR_OPT_SGD);
    o.lr = 0.1;
    run r;
    build(&r, o);
    ck_assert_ptr_null(ir_module_global(r.m, "optimizer.w.momentum"));
    double w[N];
    memcpy(w, g_w0, sizeof w);
    for (int s = 0; s < STEPS; s++) {
        step(&r, s);
        for (int i = 0; i < N; i++) w[i] -= 0.1 * g_grads[s][i];
        expect_near(r.data[ir_module_global(r.m, "w")->index], w, "w", s);
    }
    run_free(&r);
}
END_TEST

/* Keras: v = momentum v - lr g;  w += v, or with Nesterov w += momentum v - lr g. */
START_TEST(test_sgd_momentum) {
    bool nesterov = _i;
    ir_optimizer o = ir_optimizer_defaults(IR_OPT_SGD);
    o.lr = 0.1;
    o.momentum = 0.9;
    o.nesterov = nesterov;
    run r;
    build(&r, o);
    double w[N], v[N] = {0};
    memcpy(w, g_w0, sizeof w);
    for (int s = 0; s < STEPS; s++) {
        step(&r, s);
        for (int i = 0; i < N; i++) {
            v[i] = 0.9 * v[i] - 0.1 * g_grads[s][i];
            w[i] += nesterov ? 0.9 * v[i] - 0.1 * g_grads[s][i] : v[i];
        }
        expect_near(slot(&r, "optimizer.w.momentum"), v, "momentum", s);
        expect_near(r.data[ir_module_global(r.m, "w")->index], w, "w", s);
    }
    run_free(&r);
}
END_TEST

/* Keras: t = step + 1; alpha = lr sqrt(1 - b2^t) / (1 - b1^t);
 * m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= alpha m / (sqrt(v) + eps);
 * AdamW first decays: w -= lr wd w. */
START_TEST(test_adam) {
    bool adamw = _i;
    ir_optimizer o = ir_optimizer_defaults(adamw ? IR_OPT_ADAMW : IR_OPT_ADAM);
    o.lr = 0.01;
    o.epsilon = 1e-3; /* large enough to matter: a misplaced epsilon shows */
    if (adamw) o.weight_decay = 0.1;
    run r;
    build(&r, o);
    double w[N], m[N] = {0}, v[N] = {0};
    memcpy(w, g_w0, sizeof w);
    for (int s = 0; s < STEPS; s++) {
        step(&r, s);
        int t = s + 1;
        double alpha = o.lr * sqrt(1 - pow(o.beta_2, t)) / (1 - pow(o.beta_1, t));
        for (int i = 0; i < N; i++) {
            double g = g_grads[s][i];
            m[i] = o.beta_1 * m[i] + (1 - o.beta_1) * g;
            v[i] = o.beta_2 * v[i] + (1 - o.beta_2) * g * g;
            if (adamw) w[i] -= o.lr * o.weight_decay * w[i];
            w[i] -= alpha * m[i] / (sqrt(v[i]) + o.epsilon);
        }
        expect_near(slot(&r, "optimizer.w.m"), m, "m", s);
        expect_near(slot(&r, "optimizer.w.v"), v, "v", s);
        expect_near(r.data[ir_module_global(r.m, "w")->index], w, "w", s);
    }
    ck_assert_ptr_null(ir_module_global(r.m, "optimizer.frozen.m"));
    run_free(&r);
}
END_TEST

/* Each update is a tree of elementwise ops and assigns (one loop for
 * fuse-elementwise), and no value is read after it is overwritten. */
START_TEST(test_update_shape) {
    ir_opt_kind kinds[] = {IR_OPT_SGD, IR_OPT_ADAM, IR_OPT_ADAMW};
    for (size_t k = 0; k < KILN_ARRAY_LEN(kinds); k++) {
        ir_optimizer o = ir_optimizer_defaults(kinds[k]);
        o.momentum = 0.5;
        run r;
        build(&r, o);
        kiln_func *ts = kiln_module_func(r.m, "train_step");
        kiln_func *lf = kiln_module_func(r.m, "loss");
        /* The updates start with t = iterations + 1 (its constant 1 first). */
        int first = -1;
        for (int i = 0; i < ts->n_nodes && first < 0; i++)
            if (ts->nodes[i]->op == IR_OP_add && ts->nodes[i]->in[0]->op == IR_GLOBAL &&
                strcmp(ts->nodes[i]->in[0]->name, "optimizer.iterations") == 0)
                first = i - 1;
        ck_assert_int_ge(first, lf->n_nodes);
        ck_assert_int_eq(ts->nodes[first]->op, IR_OP_constant);
        int assigns = 0;
        for (int i = first; i < ts->n_nodes; i++) {
            const ir_node *n = ts->nodes[i];
            ck_assert_msg(ir_op(n->op)->is_ew || n->op == IR_OP_assign, "%s: %s in the update",
                          ir_optimizer_name(kinds[k]), ir_op_name(n->op));
            if (n->op != IR_OP_assign) continue;
            assigns++;
            for (int j = i + 1; j < ts->n_nodes; j++)
                for (int q = 0; q < ts->nodes[j]->n_in; q++) {
                    bool target = ts->nodes[j]->op == IR_OP_assign && q == 0;
                    ck_assert_msg(target || ts->nodes[j]->in[q] != n->in[0],
                                  "@%s is read after it is written", n->in[0]->name);
                }
        }
        /* w and iterations, plus the slots */
        ck_assert_int_eq(assigns, kinds[k] == IR_OPT_SGD ? 3 : 4);
        ck_assert_int_eq(ts->nodes[ts->n_nodes - 1]->op, IR_OP_assign);
        ck_assert_str_eq(ts->nodes[ts->n_nodes - 1]->in[0]->name, "optimizer.iterations");
        run_free(&r);
    }
}
END_TEST

START_TEST(test_errors) {
    kiln_module *m = kiln_module_create("e");
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(pass_optimizer(m, d), KILN_ERR_INVALID);
    ck_assert_msg(strstr(kiln_diag_message(d), "optimizer: the module configures no optimizer"),
                  "%s", kiln_diag_message(d));
    m->train.opt = ir_optimizer_defaults(IR_OPT_ADAM);
    kiln_diag_clear(d);
    ck_assert_int_eq(pass_optimizer(m, d), KILN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "no @train_step (run autodiff first)"));
    m->train.opt.beta_1 = 1.0;
    kiln_diag_clear(d);
    ck_assert_int_eq(pass_optimizer(m, d), KILN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "optimizer adam: beta_1 must be in [0, 1)"));
    kiln_diag_dispose(d);
    kiln_module_dispose(m);

    /* Twice on the same train_step. */
    run r;
    build(&r, ir_optimizer_defaults(IR_OPT_ADAM));
    d = kiln_diag_create();
    ck_assert_int_eq(pass_optimizer(r.m, d), KILN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "already updates the parameters"));
    kiln_diag_dispose(d);
    run_free(&r);
}
END_TEST

/* Every allocation failure ends in a clean error and leaves train_step and
 * the globals as they were. */
START_TEST(test_alloc_failures) {
    for (long n = 1;; n++) {
        kiln_module *m = kiln_module_create("a");
        const int64_t dims[] = {N};
        kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
        kiln_module_add_param(m, "w", KILN_F32, 1, dims, zeros, NULL);
        kiln_module_add_param(m, "u", KILN_F32, 1, dims, zeros, NULL);
        kiln_func *f = kiln_func_create(m, "loss");
        kiln_value c = kiln_input(f, "c", KILN_F32, 1, dims);
        kiln_value p = kiln_mul(f, kiln_mul(f, kiln_param(f, "w"), kiln_param(f, "u")), c);
        kiln_output(f, kiln_reduce_sum(f, p, 0, NULL, 0));
        m->train.opt = ir_optimizer_defaults(IR_OPT_ADAMW);
        ck_assert_int_eq(pass_autodiff(m, NULL), KILN_OK);
        kiln_func *ts = kiln_module_func(m, "train_step");
        int nodes = ts->n_nodes, results = ts->n_results, globals = m->n_globals;
        kiln_test_alloc_fail_at(n);
        kiln_status st = pass_optimizer(m, NULL);
        bool failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            ck_assert_int_gt(n, 1); /* some allocation did fail before */
            kiln_module_dispose(m);
            break;
        }
        ck_assert_int_ne(st, KILN_OK);
        ck_assert_int_eq(ts->n_nodes, nodes);
        ck_assert_int_eq(ts->n_results, results);
        ck_assert_int_eq(m->n_globals, globals);
        ck_assert_int_eq(kiln_module_verify(m, NULL), KILN_OK);
        kiln_module_dispose(m);
    }
}
END_TEST

static Suite *optimizer_suite(void) {
    Suite *s = suite_create("optimizer");
    TCase *tc = tcase_create("updates");
    tcase_add_test(tc, test_sgd);
    tcase_add_loop_test(tc, test_sgd_momentum, 0, 2);
    tcase_add_loop_test(tc, test_adam, 0, 2);
    tcase_add_test(tc, test_update_shape);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(optimizer_suite());
}

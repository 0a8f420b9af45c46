/*
 * test_passes.c — the fusion, cleanup and memory-planning passes, and the
 * pass manager. Every rewrite is checked twice: the shape of the graph that
 * comes out (which nodes, how many) and the numbers it computes on the
 * interpreter against the graph that went in.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "passes/pass.h"
#include "testutil.h"

/* ------------------------------------------------------------- helpers */

static kiln_diag *g_d;

static void setup(void) {
    g_d = kiln_diag_create();
}
static void teardown(void) {
    kiln_diag_dispose(g_d);
}

/* A builder on function `name` of m, with its args. */
typedef struct fb {
    kiln_func *f;
    ir_builder b;
} fb;

static fb fb_new(kiln_module *m, const char *name) {
    fb r;
    r.f = kiln_func_create(m, name);
    ck_assert_ptr_nonnull(r.f);
    ir_builder_init(&r.b, r.f, g_d);
    return r;
}

static ir_node *arg(fb *x, const char *name, ir_dtype dt, int rank, const int64_t *dims) {
    ir_type t = ir_type_make(dt, rank, dims);
    ir_node *n = ir_func_add_arg(x->f, name, &t, g_d);
    ck_assert_msg(n != NULL, "%s", kiln_diag_message(g_d));
    return n;
}

static ir_global *global(kiln_module *m, ir_global_kind kind, const char *name, int rank,
                         const int64_t *dims) {
    ir_type t = ir_type_make(IR_F32, rank, dims);
    kiln_init init = {KILN_INIT_ZEROS, 0, 0};
    ir_global *g = ir_module_add_global(m, kind, name, &t, init, g_d);
    ck_assert_msg(g != NULL, "%s", kiln_diag_message(g_d));
    return g;
}

static ir_node *op1(fb *x, int op, ir_node *a) {
    return ir_b_un(&x->b, op, a);
}
static ir_node *op2(fb *x, int op, ir_node *a, ir_node *b) {
    return ir_b_bin(&x->b, op, a, b);
}
static ir_node *cst(fb *x, double v) {
    return ir_b_scalar(&x->b, v);
}
static ir_node *with_axis(fb *x, int op, ir_node *a, int64_t axis) {
    ir_attrs at = tu_attrs1(op, "axis", (double)axis);
    return ir_b_op(&x->b, op, 1, &a, &at);
}
static ir_node *cast_f32(ir_builder *b, ir_node *v) {
    ir_attrs at = tu_attrs1(IR_OP_cast, "dtype", IR_F32);
    return ir_b_op(b, IR_OP_cast, 1, &v, &at);
}
static ir_node *act_alpha(fb *x, int op, ir_node *a, double alpha) {
    ir_attrs at = tu_attrs1(op, "alpha", alpha);
    return ir_b_op(&x->b, op, 1, &a, &at);
}

static void ret(fb *x, ir_node *n) {
    ck_assert_msg(n != NULL && x->b.status == KILN_OK, "build failed: %s", kiln_diag_message(g_d));
    ck_assert_int_eq(ir_func_add_result(x->f, n, g_d), KILN_OK);
}

static int count_op(const kiln_func *f, int op) {
    int c = 0;
    for (int i = 0; i < f->n_nodes; i++) c += f->nodes[i]->op == op;
    return c;
}

static const ir_node *find_op(const kiln_func *f, int op) {
    for (int i = 0; i < f->n_nodes; i++)
        if (f->nodes[i]->op == op) return f->nodes[i];
    return NULL;
}

static void run_passes(kiln_module *m, const char *pipeline) {
    kiln_diag_clear(g_d);
    kiln_status st = pass_run_pipeline(m, pipeline, NULL, g_d);
    ck_assert_msg(st == KILN_OK, "%s failed: %s", pipeline, kiln_diag_message(g_d));
    ck_assert_int_eq(ir_verify_module(m, g_d), KILN_OK);
}

static char *print_func(const kiln_func *f) {
    ir_sb sb;
    ir_sb_init(&sb);
    ir_print_opts o = {.no_locs = true};
    ir_print_func(&sb, f, &o);
    return ir_sb_take(&sb);
}

/* Data for running functions of a module: every global filled, every
 * argument filled; i32 arguments get labels in [0, classes). */
typedef struct data {
    int n_globals;
    void **globals;
} data;

static void *buffer_for(const ir_type *t, int64_t batch) {
    size_t n = (size_t)ir_type_numel(t, batch);
    return calloc(n ? n : 1, 4);
}

static data data_new(const kiln_module *m, uint64_t seed) {
    data r = {m->n_globals, calloc((size_t)m->n_globals + 1, sizeof(void *))};
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        r.globals[i] = buffer_for(&g->type, 1);
        /* Real initializers where the model names them (a model file's
         * glorot kernels), else values in [-0.5, 0.5): the models built
         * here say zeros, which would hide every mistake. */
        if (g->init.kind != KILN_INIT_ZEROS)
            ck_assert_int_eq(ir_global_init(g, seed, r.globals[i], g_d), KILN_OK);
        else if (g->type.dtype == IR_F32)
            tu_fill_uniform(r.globals[i], ir_type_numel(&g->type, 1), seed + (uint64_t)i * 7919,
                            -0.5f, 0.5f);
        /* state slots start at zero, as the optimizer expects */
        if (g->kind == IR_GLOBAL_STATE)
            memset(r.globals[i], 0, (size_t)ir_type_numel(&g->type, 1) * 4);
    }
    return r;
}

static void data_free(data *x) {
    for (int i = 0; i < x->n_globals; i++) free(x->globals[i]);
    free(x->globals);
}

typedef struct outputs {
    int n;
    float *v[8];
    int64_t len[8];
} outputs;

static void outputs_free(outputs *o) {
    for (int i = 0; i < o->n; i++) free(o->v[i]);
    o->n = 0;
}

/* Runs f of m at `batch` with arguments drawn from `seed`. */
static outputs run(kiln_module *m, const char *fname, int64_t batch, uint64_t seed, data *g,
                   float scale, int classes) {
    kiln_func *f = kiln_module_func(m, fname);
    ck_assert_msg(f != NULL, "no function %s", fname);
    void *args[8], *res[8];
    ck_assert_int_le(f->n_args, 8);
    ck_assert_int_le(f->n_results, 8);
    for (int i = 0; i < f->n_args; i++) {
        const ir_type *t = &f->args[i]->type;
        int64_t n = ir_type_numel(t, batch);
        args[i] = buffer_for(t, batch);
        if (t->dtype == IR_I32) {
            for (int64_t e = 0; e < n; e++)
                ((int32_t *)args[i])[e] = (int32_t)((e * 7 + seed) % (uint64_t)classes);
        } else if (strcmp(f->args[i]->name, "y") == 0) { /* one-hot targets */
            int64_t c = t->dims[t->rank - 1];
            for (int64_t e = 0; e < n; e++)
                ((float *)args[i])[e] = (e % c) == ((e / c) * 3 + (int64_t)seed) % c;
        } else {
            tu_fill_uniform(args[i], n, seed + (uint64_t)i, -scale, scale);
        }
    }
    outputs o = {f->n_results, {0}, {0}};
    for (int i = 0; i < f->n_results; i++) {
        o.len[i] = ir_type_numel(&f->results[i]->type, batch);
        res[i] = o.v[i] = buffer_for(&f->results[i]->type, batch);
    }
    kiln_diag_clear(g_d);
    kiln_status st = ir_interp_run(f, batch, args, res, g->globals, g_d);
    ck_assert_msg(st == KILN_OK, "interp %s: %s", fname, kiln_diag_message(g_d));
    for (int i = 0; i < f->n_args; i++) free(args[i]);
    return o;
}

/* Runs `fname` of a and b on the same data; results must agree within rtol
 * tol at each tensor's scale (0: bit for bit), and so must the globals
 * afterwards. */
static void assert_same_run(kiln_module *a, kiln_module *b, const char *fname, int64_t batch,
                            double tol) {
    data da = data_new(a, 42), db = data_new(b, 42);
    outputs oa = run(a, fname, batch, 3, &da, 2.0f, 3);
    outputs ob = run(b, fname, batch, 3, &db, 2.0f, 3);
    ck_assert_int_eq(oa.n, ob.n);
    for (int i = 0; i < oa.n; i++) {
        ck_assert_int_eq(oa.len[i], ob.len[i]);
        if (tol == 0)
            ck_assert_msg(memcmp(oa.v[i], ob.v[i], (size_t)oa.len[i] * 4) == 0,
                          "%s result %d differs (batch %lld)", fname, i, (long long)batch);
        else {
            char what[128];
            snprintf(what, sizeof what, "%s result %d (batch %lld)", fname, i, (long long)batch);
            tu_assert_close_at_scale(ob.v[i], oa.v[i], oa.len[i], tol, what);
        }
    }
    for (int i = 0; i < a->n_globals; i++) {
        int64_t n = ir_type_numel(&a->globals[i]->type, 1);
        char what[128];
        snprintf(what, sizeof what, "global @%s after %s", a->globals[i]->name, fname);
        tu_assert_close_at_scale(db.globals[i], da.globals[i], n, tol, what);
    }
    outputs_free(&oa);
    outputs_free(&ob);
    data_free(&da);
    data_free(&db);
}

/* ------------------------------------------------------------ models */

static const int64_t D_IN = 6, D_H = 5, D_OUT = 4;

/* x[?,6] -> matmul, add bias, activation (per layer) -> ... -> out. The
 * layers' activations are IR ops (-1: none, then the add is the output). */
static kiln_module *mlp(const int *acts, int n_layers, bool softmax) {
    kiln_module *m = kiln_module_create("mlp");
    int64_t dims[2] = {KILN_BATCH, D_IN};
    fb x = fb_new(m, "infer");
    ir_node *h = arg(&x, "x", IR_F32, 2, dims);
    int64_t in = D_IN;
    for (int l = 0; l < n_layers; l++) {
        int64_t out = l == n_layers - 1 ? D_OUT : D_H;
        char kn[32], bn[32];
        snprintf(kn, sizeof kn, "l%d.kernel", l);
        snprintf(bn, sizeof bn, "l%d.bias", l);
        int64_t kd[2] = {in, out}, bd[1] = {out};
        ir_global *k = global(m, IR_GLOBAL_PARAM, kn, 2, kd);
        ir_global *b = global(m, IR_GLOBAL_PARAM, bn, 1, bd);
        h = ir_b_matmul(&x.b, h, k->ref, false, false);
        h = op2(&x, IR_OP_add, h, b->ref);
        if (acts[l] == IR_OP_leaky_relu)
            h = act_alpha(&x, IR_OP_leaky_relu, h, 0.2);
        else if (acts[l] >= 0)
            h = op1(&x, acts[l], h);
        in = out;
    }
    if (softmax) h = with_axis(&x, IR_OP_softmax, h, -1);
    ret(&x, h);
    return m;
}

/* ------------------------------------------------------ fuse-dense-act */

START_TEST(dense_fuses_each_activation) {
    const int acts[] = {IR_OP_relu, IR_OP_leaky_relu, IR_OP_sigmoid, IR_OP_tanh, -1};
    kiln_module *a = mlp(acts, 5, true), *b = mlp(acts, 5, true);
    run_passes(b, "fuse-dense-act");
    kiln_func *f = kiln_module_func(b, "infer");
    ck_assert_int_eq(count_op(f, IR_OP_dense), 5);
    ck_assert_int_eq(count_op(f, IR_OP_matmul), 0);
    ck_assert_int_eq(count_op(f, IR_OP_add), 0);
    ck_assert_int_eq(f->n_nodes, 6); /* five dense and the softmax */
    const int want[] = {KILN_ACT_RELU, KILN_ACT_LEAKY_RELU, KILN_ACT_SIGMOID, KILN_ACT_TANH,
                        KILN_ACT_NONE};
    for (int i = 0; i < 5; i++) ck_assert_int_eq(tu_act_of(f->nodes[i]), want[i]);
    ck_assert(ir_attr_f(f->nodes[1], "alpha") == 0.2);
    ck_assert_int_eq(f->nodes[5]->op, IR_OP_softmax);
    ck_assert_ptr_eq(f->nodes[5]->in[0], f->nodes[4]);
    for (int64_t batch = 1; batch <= 33; batch += 32) assert_same_run(a, b, "infer", batch, 1e-6);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* The frontend's dense helper expands to these ops; after the pass the
 * graph must be the one a dense op would have given directly. */
START_TEST(dense_same_graph_as_direct_dense) {
    const int acts[] = {IR_OP_relu, IR_OP_tanh};
    kiln_module *a = mlp(acts, 2, false);
    run_passes(a, "fuse-dense-act");
    kiln_module *b = kiln_module_create("mlp");
    fb x = fb_new(b, "infer");
    int64_t dims[2] = {KILN_BATCH, D_IN}, k0[2] = {D_IN, D_H}, b0[1] = {D_H}, k1[2] = {D_H, D_OUT},
            b1[1] = {D_OUT};
    ir_node *h = arg(&x, "x", IR_F32, 2, dims);
    ir_global *g[4] = {global(b, IR_GLOBAL_PARAM, "l0.kernel", 2, k0),
                       global(b, IR_GLOBAL_PARAM, "l0.bias", 1, b0),
                       global(b, IR_GLOBAL_PARAM, "l1.kernel", 2, k1),
                       global(b, IR_GLOBAL_PARAM, "l1.bias", 1, b1)};
    for (int l = 0; l < 2; l++) {
        ir_attrs at = tu_attrs1(IR_OP_dense, "activation",
                                tu_act_op(l == 0 ? KILN_ACT_RELU : KILN_ACT_TANH));
        ir_node *in[3] = {h, g[2 * l]->ref, g[2 * l + 1]->ref};
        h = ir_b_op(&x.b, IR_OP_dense, 3, in, &at);
    }
    ret(&x, h);
    char *pa = print_func(kiln_module_func(a, "infer")), *pb = print_func(x.f);
    ck_assert_str_eq(pa, pb);
    ir_free(pa);
    ir_free(pb);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* The model file's dense layers (frontend) and the same model spelled with
 * primitive ops through the public builder end up as the same graph. */
START_TEST(dense_model_file_equals_primitives) {
    kiln_module *a = NULL;
    kiln_diag_clear(g_d);
    kiln_status st = kiln_model_file_load(tu_src_path("examples/mnist_mlp.kiln"), &a, g_d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(g_d));
    kiln_module *b = kiln_module_create("mnist_mlp");
    const char *layers[3] = {"h1", "h2", "p"};
    const int64_t width[4] = {784, 128, 64, 10};
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0}, glorot = {KILN_INIT_GLOROT_UNIFORM, 0, 0};
    for (int l = 0; l < 3; l++) {
        char name[32];
        int64_t kd[2] = {width[l], width[l + 1]};
        snprintf(name, sizeof name, "%s.kernel", layers[l]);
        ck_assert_int_eq(kiln_module_add_param(b, name, KILN_F32, 2, kd, glorot, g_d), KILN_OK);
        snprintf(name, sizeof name, "%s.bias", layers[l]);
        ck_assert_int_eq(kiln_module_add_param(b, name, KILN_F32, 1, kd + 1, zeros, g_d), KILN_OK);
    }
    kiln_func *f = kiln_func_create(b, "infer");
    int64_t xd[2] = {KILN_BATCH, 784};
    kiln_value h = kiln_input(f, "x", KILN_F32, 2, xd);
    for (int l = 0; l < 3; l++) {
        char kn[32], bn[32];
        snprintf(kn, sizeof kn, "%s.kernel", layers[l]);
        snprintf(bn, sizeof bn, "%s.bias", layers[l]);
        h = kiln_add(f, kiln_matmul(f, h, kiln_param(f, kn), 0, 0), kiln_param(f, bn));
        h = l < 2 ? kiln_relu(f, h) : kiln_softmax(f, h, -1);
    }
    ck_assert_int_eq(kiln_output(f, h), KILN_OK);
    run_passes(a, "fuse-dense-act");
    run_passes(b, "fuse-dense-act");
    kiln_func *fa = kiln_module_func(a, "infer");
    ck_assert_int_eq(count_op(fa, IR_OP_dense), 3);
    char *pa = print_func(fa), *pb = print_func(f);
    ck_assert_str_eq(pa, pb);
    ir_free(pa);
    ir_free(pb);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

static kiln_module *dense_negatives(void) {
    kiln_module *m = kiln_module_create("neg");
    int64_t xd[2] = {KILN_BATCH, 4}, wd[2] = {4, 3}, wt[2] = {3, 4}, bd[1] = {3}, b2[2] = {1, 3};
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *w = global(m, IR_GLOBAL_PARAM, "w", 2, wd)->ref;
    ir_node *wtr = global(m, IR_GLOBAL_PARAM, "wt", 2, wt)->ref;
    ir_node *b = global(m, IR_GLOBAL_PARAM, "b", 1, bd)->ref;
    ir_node *brow = global(m, IR_GLOBAL_PARAM, "brow", 2, b2)->ref;
    /* 1: the product has another user */
    ir_node *p1 = ir_b_matmul(&x.b, in, w, false, false);
    ir_node *s1 = op1(&x, IR_OP_relu, op2(&x, IR_OP_add, p1, b));
    ir_node *r1 = op2(&x, IR_OP_add, s1, p1);
    /* 2: transposed kernel */
    ir_node *p2 = ir_b_matmul(&x.b, in, wtr, false, true);
    ir_node *r2 = op1(&x, IR_OP_relu, op2(&x, IR_OP_add, p2, b));
    /* 3: the bias is a [1,3] matrix, not a vector */
    ir_node *r3 =
        op1(&x, IR_OP_relu, op2(&x, IR_OP_add, ir_b_matmul(&x.b, in, w, false, false), brow));
    /* 4: the sum has another user: dense without activation, relu stays */
    ir_node *s4 = op2(&x, IR_OP_add, ir_b_matmul(&x.b, in, w, false, false), b);
    ir_node *r4 = op2(&x, IR_OP_mul, op1(&x, IR_OP_relu, s4), s4);
    ret(&x, op2(&x, IR_OP_add, op2(&x, IR_OP_add, r1, r2), op2(&x, IR_OP_add, r3, r4)));
    return m;
}

START_TEST(dense_does_not_fuse) {
    kiln_module *a = dense_negatives(), *m = dense_negatives();
    run_passes(m, "fuse-dense-act");
    kiln_func *f = kiln_module_func(m, "f");
    ck_assert_int_eq(count_op(f, IR_OP_matmul), 3);
    ck_assert_int_eq(count_op(f, IR_OP_dense), 1);
    const ir_node *dn = find_op(f, IR_OP_dense);
    ck_assert_int_eq(tu_act_of(dn), KILN_ACT_NONE);
    ck_assert_int_eq(count_op(f, IR_OP_relu), 4);
    assert_same_run(a, m, "f", 6, 0);
    kiln_module_dispose(a);
    kiln_module_dispose(m);
}
END_TEST

/* ------------------------------------------------------- fuse-conv-act */

static kiln_module *parsed(const char *src) {
    kiln_module *m = NULL;
    kiln_diag_clear(g_d);
    kiln_status st = kiln_model_file_parse(src, strlen(src), "c.kiln", &m, g_d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(g_d));
    return m;
}

/* Four conv layers, each activation, strides, same padding, dilation, no
 * bias (a zero vector), and a training recipe. */
static const char g_conv_src[] =
    "model m\ninput x : f32[?, 9, 8, 2]\nlabel y : f32[?, 4]\n"
    "a = conv2d(x, 3, 3, activation=relu)\n"
    "b = conv2d(a, 4, 2, strides=2, padding=same, activation=leaky_relu)\n"
    "c = conv2d(b, 5, 3, padding=same, dilation_rate=2, activation=tanh, use_bias=false)\n"
    "d = conv2d(c, 2, 1, activation=sigmoid)\n"
    "f = flatten(d)\np = dense(f, 4, activation=softmax)\n"
    "output p\nloss categorical_crossentropy(p, y)\n"
    "train {\n  optimizer = adam(lr=0.01)\n}\n";

static kiln_module *conv_model(void) { return parsed(g_conv_src); }

START_TEST(conv_fuses_each_activation) {
    kiln_module *a = conv_model(), *b = conv_model();
    const int acts[] = {IR_OP_relu, IR_OP_leaky_relu, IR_OP_tanh, IR_OP_sigmoid};
    for (int k = 0; k < 4; k++) ck_assert_int_eq(count_op(kiln_module_func(a, "infer"), acts[k]), 1);
    run_passes(b, "fuse-conv-act");
    const kiln_func *f = kiln_module_func(b, "infer");
    ck_assert_int_eq(count_op(f, IR_OP_conv2d), 4);
    for (int k = 0; k < 4; k++) ck_assert_int_eq(count_op(f, acts[k]), 0);
    int seen = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *n = f->nodes[i];
        if (n->op != IR_OP_conv2d) continue;
        ck_assert_int_eq(ir_attr_i(n, "activation"), acts[seen]);
        if (acts[seen] == IR_OP_leaky_relu) ck_assert(ir_attr_f(n, "alpha") == 0.2);
        seen++;
    }
    ck_assert_int_eq(seen, 4);
    for (int64_t batch = 1; batch <= 7; batch += 6) assert_same_run(a, b, "infer", batch, 1e-6);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* One Adam step through the fused convs (their gradient rule applies the
 * activation's derivative) equals the step through separate activations:
 * the loss and every parameter and slot afterwards. */
START_TEST(conv_fused_train_step_equals_unfused) {
    kiln_module *a = conv_model(), *b = conv_model();
    const char *train = pass_pipeline_named("train");
    ck_assert_ptr_nonnull(strstr(train, "fuse-conv-act,"));
    char unfused[512];
    snprintf(unfused, sizeof unfused, "%.*s%s", (int)(strstr(train, "fuse-conv-act,") - train),
             train, strstr(train, "fuse-conv-act,") + strlen("fuse-conv-act,"));
    run_passes(a, unfused);
    run_passes(b, train);
    ck_assert_int_eq(count_op(kiln_module_func(a, "train_step"), IR_OP_relu), 1);
    ck_assert_int_eq(count_op(kiln_module_func(b, "train_step"), IR_OP_relu), 0);
    assert_same_run(a, b, "train_step", 5, 1e-5);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* ---------------------------------------------------- fuse-matmul-mask */

/* Dense layers with relu and leaky_relu: the backward masks three products. */
static const char g_mask_src[] =
    "model m\ninput x : f32[?, 6]\nlabel y : f32[?, 3]\n"
    "a = dense(x, 5, activation=relu)\nb = dense(a, 4, activation=leaky_relu)\n"
    "c = dense(b, 4, activation=relu)\np = dense(c, 3, activation=softmax)\n"
    "output p\nloss categorical_crossentropy(p, y)\ntrain {\n  optimizer = adam(lr=0.01)\n}\n";

/* The train pipeline with and without fuse-matmul-mask: the same bits on
 * the interpreter (matmul_mask's kernel is matmul's, then select's
 * choice), loss, metrics and every parameter and slot after a step. */
START_TEST(matmul_mask_train_step_equals_unfused) {
    kiln_module *a = parsed(g_mask_src), *b = parsed(g_mask_src);
    const char *train = pass_pipeline_named("train"), *at = strstr(train, "fuse-matmul-mask,");
    ck_assert_ptr_nonnull(at);
    char unfused[512];
    snprintf(unfused, sizeof unfused, "%.*s%s", (int)(at - train), train,
             at + strlen("fuse-matmul-mask,"));
    run_passes(a, unfused);
    run_passes(b, train);
    const kiln_func *fa = kiln_module_func(a, "train_step"), *fb_ = kiln_module_func(b, "train_step");
    ck_assert_int_eq(count_op(fa, IR_OP_matmul_mask), 0);
    ck_assert_int_eq(count_op(fb_, IR_OP_matmul_mask), 3);
    /* c's relu, b's leaky_relu (alpha 0.2, the model files' default), a's relu */
    const double alphas[3] = {0, 0.2, 0};
    int k = 0;
    for (int i = 0; i < fb_->n_nodes; i++)
        if (fb_->nodes[i]->op == IR_OP_matmul_mask) {
            ck_assert(ir_attr_i(fb_->nodes[i], "transpose_b"));
            ck_assert_msg(fabs(ir_attr_f(fb_->nodes[i], "alpha") - alphas[k]) < 1e-7,
                          "mask %d: alpha %g", k, ir_attr_f(fb_->nodes[i], "alpha"));
            k++;
        }
    for (int64_t batch = 1; batch <= 9; batch += 8) assert_same_run(a, b, "train_step", batch, 0);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* ----------------------------------------------------- fuse-softmax-ce */

/* loss(z, y) with one of three spellings of softmax cross-entropy. */
static kiln_module *ce_model(int variant, bool extra_user, int64_t axis) {
    kiln_module *m = kiln_module_create("ce");
    fb x = fb_new(m, "loss");
    int64_t zd[2] = {KILN_BATCH, 5}, yd[1] = {KILN_BATCH};
    ir_node *z = arg(&x, "z", IR_F32, 2, zd);
    ir_node *y = variant == 1 ? arg(&x, "labels", IR_I32, 1, yd) : arg(&x, "y", IR_F32, 2, zd);
    ir_node *p = with_axis(&x, variant == 2 ? IR_OP_log_softmax : IR_OP_softmax, z, axis);
    int op = variant == 0   ? IR_OP_categorical_crossentropy
             : variant == 1 ? IR_OP_sparse_categorical_crossentropy
                            : IR_OP_nll;
    ret(&x, op2(&x, op, p, y));
    if (extra_user) ret(&x, p);
    return m;
}

START_TEST(softmax_ce_fuses) {
    for (int v = 0; v < 3; v++) {
        kiln_module *a = ce_model(v, false, -1), *b = ce_model(v, false, 1);
        run_passes(b, "fuse-softmax-ce");
        kiln_func *f = kiln_module_func(b, "loss");
        ck_assert_int_eq(f->n_nodes, 1);
        ck_assert_int_eq(f->nodes[0]->op, IR_OP_softmax_cross_entropy);
        ck_assert_ptr_eq(f->nodes[0]->in[0], f->args[0]);
        ck_assert_ptr_eq(f->nodes[0]->in[1], f->args[1]);
        assert_same_run(a, b, "loss", 9, 1e-5);
        kiln_module_dispose(a);
        kiln_module_dispose(b);
    }
}
END_TEST

START_TEST(softmax_ce_does_not_fuse) {
    /* the probabilities are returned too */
    kiln_module *m = ce_model(0, true, -1);
    run_passes(m, "fuse-softmax-ce");
    ck_assert_int_eq(count_op(kiln_module_func(m, "loss"), IR_OP_softmax_cross_entropy), 0);
    kiln_module_dispose(m);
    /* softmax over the batch axis, not the classes */
    m = ce_model(0, false, 0);
    run_passes(m, "fuse-softmax-ce");
    ck_assert_int_eq(count_op(kiln_module_func(m, "loss"), IR_OP_softmax_cross_entropy), 0);
    kiln_module_dispose(m);
    m = ce_model(2, false, 0);
    run_passes(m, "fuse-softmax-ce");
    ck_assert_int_eq(count_op(kiln_module_func(m, "loss"), IR_OP_nll), 1);
    kiln_module_dispose(m);
}
END_TEST

/* Logits of +-1e4: softmax underflows to exact zeros, the fused op does not. */
START_TEST(softmax_ce_stable_for_large_logits) {
    for (int v = 0; v < 2; v++) {
        kiln_module *m = ce_model(v, false, -1);
        run_passes(m, "fuse-softmax-ce");
        kiln_func *f = kiln_module_func(m, "loss");
        float z[2 * 5] = {1e4f, -1e4f, 0, 5e3f, -5e3f, -1e4f, 1e4f, 1e4f, 0, -1e4f};
        float y[2 * 5] = {0, 1, 0, 0, 0, 0, 0, 1, 0, 0};
        int32_t labels[2] = {1, 2};
        float loss = NAN;
        void *args[2] = {z, v == 1 ? (void *)labels : (void *)y}, *res[1] = {&loss};
        ck_assert_int_eq(ir_interp_run(f, 2, args, res, NULL, g_d), KILN_OK);
        /* row 0: lse = 1e4, loss = 1e4 - (-1e4) = 2e4; row 1: lse = 1e4 + log 2,
         * loss = log 2. Mean: (2e4 + log 2) / 2, within 2 f32 ulps (log 2 is
         * what is left of lse - z after a cancellation at 1e4). */
        double want = (2e4 + log(2.0)) / 2;
        ck_assert_msg(tu_close(loss, want, 0, 2 * FLT_EPSILON), "loss %.9g, want %.9g", loss, want);
        kiln_module_dispose(m);
    }
}
END_TEST

/* ------------------------------------------------------- constant-fold */

START_TEST(fold_evaluates_constants) {
    kiln_module *m = kiln_module_create("fold");
    fb x = fb_new(m, "f");
    int64_t xd[2] = {KILN_BATCH, 3}, cd[2] = {KILN_BATCH, 3};
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *two = cst(&x, 2), *three = ir_b_const(&x.b, IR_F32, 3, 2, cd);
    ir_node *six = op2(&x, IR_OP_mul, two, three);                         /* 6, f32[?,3] */
    ir_node *e = op1(&x, IR_OP_sqrt, op2(&x, IR_OP_add, six, cst(&x, 3))); /* 3 */
    int64_t ax[1] = {1};
    ir_node *cnt = ir_b_reduce(&x.b, IR_OP_numel, in, 1, ax, false);   /* 3: static axis */
    ir_node *all = ir_b_reduce(&x.b, IR_OP_numel, in, 0, NULL, false); /* has '?': stays */
    ir_node *bad = op1(&x, IR_OP_log, cst(&x, 0));                     /* -inf: not folded */
    ir_node *r = op2(&x, IR_OP_mul, op2(&x, IR_OP_add, in, e), op2(&x, IR_OP_div, cnt, all));
    ret(&x, r);
    ret(&x, bad);
    run_passes(m, "constant-fold");
    kiln_func *f = x.f;
    ck_assert_int_eq(count_op(f, IR_OP_sqrt), 0);
    ck_assert_int_eq(count_op(f, IR_OP_numel), 1);
    ck_assert_int_eq(count_op(f, IR_OP_log), 1);
    /* the folded values: 3 (the sqrt chain, f32[?,3]), 3 (numel), 0 (log's operand) */
    int n3 = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *n = f->nodes[i];
        if (n->op != IR_OP_constant) continue;
        ck_assert(ir_attr_f(n, "value") == 3 || ir_attr_f(n, "value") == 0);
        n3 += ir_attr_f(n, "value") == 3;
    }
    ck_assert_int_eq(n3, 2);
    ck_assert_int_eq(count_op(f, IR_OP_constant), 3);
    /* numbers: (x + 3) * 3 / numel(x), numel(x) = 6 at batch 2; and log(0) */
    float xin[2 * 3] = {1, 2, 3, 4, 5, 6}, out[6], lg = 0;
    void *args[1] = {xin}, *res[2] = {out, &lg};
    ck_assert_int_eq(ir_interp_run(f, 2, args, res, NULL, g_d), KILN_OK);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(out[i], (xin[i] + 3) * 0.5f);
    ck_assert(isinf(lg) && lg < 0);
    kiln_module_dispose(m);
}
END_TEST

static kiln_module *identities(void) {
    kiln_module *m = kiln_module_create("ident");
    fb x = fb_new(m, "f");
    int64_t xd[2] = {KILN_BATCH, 3}, sd[1] = {3};
    ir_node *in = arg(&x, "x", IR_F32, 2, xd), *row = arg(&x, "r", IR_F32, 1, sd);
    ir_node *v = op2(&x, IR_OP_mul, in, cst(&x, 1));
    v = op2(&x, IR_OP_add, cst(&x, 0), v);
    v = op2(&x, IR_OP_sub, v, cst(&x, 0));
    v = op2(&x, IR_OP_div, v, cst(&x, 1));
    v = op1(&x, IR_OP_neg, op1(&x, IR_OP_neg, v));
    ir_attrs ra = ir_attrs_default(IR_OP_reshape);
    ir_attrs_set_ints(&ra, "shape", 2, (const int64_t[]){KILN_BATCH, 3});
    v = ir_b_op(&x.b, IR_OP_reshape, 1, &v, &ra); /* to its own type */
    ir_type bt = ir_type_make(IR_F32, 2, xd);
    ir_node *big = ir_b_broadcast_to(&x.b, cst(&x, 0.5), &bt); /* a constant [?,3] */
    /* a broadcasting 1 changes the shape: exp(r)[3] * 1[?,3] is not exp(r) */
    ir_node *wide = op2(&x, IR_OP_mul, op1(&x, IR_OP_exp, row), ir_b_const(&x.b, IR_F32, 1, 2, xd));
    ret(&x, op2(&x, IR_OP_add, op2(&x, IR_OP_mul, v, big), wide));
    return m;
}

START_TEST(fold_removes_identities) {
    kiln_module *a = identities(), *b = identities();
    run_passes(b, "constant-fold");
    kiln_func *f = kiln_module_func(b, "f");
    ck_assert_int_eq(count_op(f, IR_OP_neg), 0);
    ck_assert_int_eq(count_op(f, IR_OP_sub), 0);
    ck_assert_int_eq(count_op(f, IR_OP_div), 0);
    ck_assert_int_eq(count_op(f, IR_OP_reshape), 0);
    ck_assert_int_eq(count_op(f, IR_OP_broadcast_to), 0);
    /* left: mul(x, 0.5), exp(r), the broadcasting mul by 1, the final add */
    ck_assert_int_eq(count_op(f, IR_OP_mul), 2);
    ck_assert_int_eq(count_op(f, IR_OP_exp), 1);
    ck_assert_int_eq(count_op(f, IR_OP_add), 1);
    ck_assert_int_eq(count_op(f, IR_OP_constant), 2); /* 0.5 [?,3] and 1 [?,3] */
    ck_assert_int_eq(f->n_nodes, 6);
    const ir_node *half = f->nodes[0];
    ck_assert_int_eq(half->op, IR_OP_constant);
    ck_assert(ir_attr_f(half, "value") == 0.5 && half->type.rank == 2);
    assert_same_run(a, b, "f", 5, 0);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* An accuracy metric next to the loss: argmax of the probabilities. */
static kiln_module *loss_with_accuracy(void) {
    kiln_module *m = kiln_module_create("acc");
    fb x = fb_new(m, "loss");
    int64_t zd[2] = {KILN_BATCH, 5};
    ir_node *z = arg(&x, "z", IR_F32, 2, zd), *y = arg(&x, "y", IR_F32, 2, zd);
    ir_node *p = with_axis(&x, IR_OP_softmax, z, 1);
    ir_node *hit =
        op2(&x, IR_OP_equal, with_axis(&x, IR_OP_argmax, p, 1), with_axis(&x, IR_OP_argmax, y, 1));
    ir_node *acc =
        ir_b_reduce(&x.b, IR_OP_reduce_mean,
                    cast_f32(&x.b, hit), 0, NULL, false);
    ret(&x, op2(&x, IR_OP_categorical_crossentropy, p, y));
    ret(&x, acc);
    return m;
}

START_TEST(fold_argmax_of_softmax_unblocks_fusion) {
    kiln_module *a = loss_with_accuracy(), *b = loss_with_accuracy(), *c = loss_with_accuracy();
    run_passes(b, "fuse-softmax-ce");
    ck_assert_int_eq(count_op(kiln_module_func(b, "loss"), IR_OP_softmax_cross_entropy), 0);
    run_passes(c, "constant-fold,fuse-softmax-ce,dce");
    kiln_func *f = kiln_module_func(c, "loss");
    ck_assert_int_eq(count_op(f, IR_OP_softmax_cross_entropy), 1);
    ck_assert_int_eq(count_op(f, IR_OP_softmax), 0);
    int on_z = 0;
    for (int i = 0; i < f->n_nodes; i++)
        on_z += f->nodes[i]->op == IR_OP_argmax && f->nodes[i]->in[0] == f->args[0];
    ck_assert_int_eq(on_z, 1);
    assert_same_run(a, c, "loss", 17, 1e-5);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
    kiln_module_dispose(c);
}
END_TEST

/* ---------------------------------------------------------- cse, dce */

static kiln_module *duplicates(void) {
    kiln_module *m = kiln_module_create("dup");
    int64_t xd[2] = {KILN_BATCH, 4}, wd[2] = {4, 4}, sd[1] = {4};
    ir_global *w = global(m, IR_GLOBAL_PARAM, "w", 2, wd);
    ir_global *s = global(m, IR_GLOBAL_STATE, "s", 1, sd);
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *h1 = ir_b_matmul(&x.b, in, w->ref, false, false);
    ir_node *h2 = ir_b_matmul(&x.b, in, w->ref, false, false);
    ir_node *a1 = op2(&x, IR_OP_mul, h1, cst(&x, 0.5));
    ir_node *a2 = op2(&x, IR_OP_mul, cst(&x, 0.5), h2); /* commutes */
    ir_node *d1 = op2(&x, IR_OP_sub, h1, h2);           /* h1 - h1 */
    ir_node *d2 = op2(&x, IR_OP_sub, h2, h1);           /* not commutative: same again */
    ir_node *t1 = op2(&x, IR_OP_mul, s->ref, cst(&x, 3));
    ir_b_assign(&x.b, s, op2(&x, IR_OP_add, s->ref, cst(&x, 1)));
    ir_node *t2 = op2(&x, IR_OP_mul, s->ref, cst(&x, 3)); /* reads the new @s: differs */
    ir_node *r = op2(&x, IR_OP_add, op2(&x, IR_OP_add, a1, a2), op2(&x, IR_OP_add, d1, d2));
    ret(&x, op2(&x, IR_OP_add, r, op2(&x, IR_OP_sub, t1, t2)));
    return m;
}

START_TEST(cse_merges_equal_nodes) {
    kiln_module *a = duplicates(), *b = duplicates();
    run_passes(b, "cse");
    kiln_func *f = kiln_module_func(b, "f");
    ck_assert_int_eq(count_op(f, IR_OP_matmul), 1);
    ck_assert_int_eq(count_op(f, IR_OP_constant), 3); /* 0.5, 3, 1 */
    /* a1 == a2 and d1 == d2; t1 and t2 stay apart across the assign */
    ck_assert_int_eq(count_op(f, IR_OP_mul), 3);
    ck_assert_int_eq(count_op(f, IR_OP_assign), 1);
    assert_same_run(a, b, "f", 3, 0);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

START_TEST(dce_removes_dead_keeps_effects) {
    kiln_module *m = kiln_module_create("dead");
    int64_t xd[2] = {KILN_BATCH, 4}, sd[1] = {4};
    ir_global *s = global(m, IR_GLOBAL_STATE, "s", 1, sd);
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *dead = op1(&x, IR_OP_exp, op1(&x, IR_OP_neg, in)); /* two dead nodes */
    (void)dead;
    ir_node *upd = op2(&x, IR_OP_mul, s->ref, cst(&x, 2)); /* feeds an assign: live */
    ir_b_assign(&x.b, s, upd);
    ret(&x, op1(&x, IR_OP_relu, in));
    int before = x.f->n_nodes;
    run_passes(m, "dce");
    ck_assert_int_eq(x.f->n_nodes, before - 2);
    ck_assert_int_eq(count_op(x.f, IR_OP_exp), 0);
    ck_assert_int_eq(count_op(x.f, IR_OP_neg), 0);
    ck_assert_int_eq(count_op(x.f, IR_OP_assign), 1);
    ck_assert_int_eq(count_op(x.f, IR_OP_mul), 1);
    kiln_module_dispose(m);
}
END_TEST

/* ---------------------------------------------------- fuse-elementwise */

static const ir_node *only_region(const kiln_func *f) {
    const ir_node *r = NULL;
    for (int i = 0; i < f->n_nodes; i++)
        if (f->nodes[i]->region) {
            ck_assert_msg(r == NULL, "more than one region");
            r = f->nodes[i];
        }
    ck_assert_ptr_nonnull(r);
    return r;
}

static kiln_module *ew_chain(void) {
    kiln_module *m = kiln_module_create("chain");
    int64_t xd[2] = {KILN_BATCH, 6}, bd[1] = {6};
    ir_global *b = global(m, IR_GLOBAL_PARAM, "b", 1, bd);
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *v = op1(&x, IR_OP_exp, in);
    v = op2(&x, IR_OP_mul, v, cst(&x, 2));
    v = op2(&x, IR_OP_add, v, b->ref);
    v = op1(&x, IR_OP_tanh, v);
    ret(&x, v);
    return m;
}

START_TEST(fuse_ew_chain_becomes_one_region) {
    kiln_module *a = ew_chain(), *b = ew_chain();
    run_passes(b, "fuse-elementwise");
    kiln_func *f = kiln_module_func(b, "f");
    const ir_node *r = only_region(f);
    ck_assert_int_eq(r->region->n, 5); /* exp, mul, add, tanh and the copied 2 */
    ck_assert_int_eq(r->region->nodes[0]->op, IR_OP_constant);
    ck_assert_int_eq(r->n_in, 2); /* %x and @b */
    ck_assert_ptr_eq(f->results[0], r);
    ck_assert_int_eq(count_op(f, IR_OP_constant), 0); /* the original went */
    for (int64_t batch = 1; batch < 40; batch += 19) assert_same_run(a, b, "f", batch, 0);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

START_TEST(fuse_ew_one_op_is_left_alone) {
    kiln_module *m = kiln_module_create("one");
    int64_t xd[2] = {KILN_BATCH, 6}, wd[2] = {6, 6};
    ir_global *w = global(m, IR_GLOBAL_PARAM, "w", 2, wd);
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *h = ir_b_matmul(&x.b, op1(&x, IR_OP_relu, in), w->ref, false, false);
    ret(&x, op1(&x, IR_OP_sigmoid, h));
    run_passes(m, "fuse-elementwise");
    ck_assert_int_eq(count_op(x.f, IR_OP_fused), 0);
    ck_assert_int_eq(x.f->n_nodes, 3);
    kiln_module_dispose(m);
}
END_TEST

/* a = exp(x); s = reduce_max(a) depends on a and feeds b = sub(a, s): a must
 * stay out of b's region, or the region would both feed and need s. */
static kiln_module *ew_cycle(void) {
    kiln_module *m = kiln_module_create("cycle");
    int64_t xd[2] = {KILN_BATCH, 6};
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *a = op1(&x, IR_OP_exp, op1(&x, IR_OP_neg, in));
    int64_t ax[1] = {1};
    ir_node *s = ir_b_reduce(&x.b, IR_OP_reduce_max, a, 1, ax, true);
    ir_node *b = op2(&x, IR_OP_sub, a, s);
    ret(&x, op1(&x, IR_OP_exp, b));
    return m;
}

START_TEST(fuse_ew_keeps_graph_acyclic) {
    kiln_module *a = ew_cycle(), *b = ew_cycle();
    run_passes(b, "fuse-elementwise");
    kiln_func *f = kiln_module_func(b, "f");
    /* neg+exp form one region, sub+exp another, reduce_max between them */
    ck_assert_int_eq(count_op(f, IR_OP_fused), 2);
    ck_assert_int_eq(f->n_nodes, 3);
    ck_assert_int_eq(f->nodes[1]->op, IR_OP_reduce_max);
    ck_assert_ptr_eq(f->nodes[1]->in[0], f->nodes[0]);
    assert_same_run(a, b, "f", 7, 0);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* A value used by a non-elementwise op must not be swallowed: it is the
 * region's yield or stays outside. */
START_TEST(fuse_ew_value_used_outside_stays) {
    kiln_module *m = kiln_module_create("out");
    int64_t xd[2] = {KILN_BATCH, 6}, wd[2] = {6, 6};
    ir_global *w = global(m, IR_GLOBAL_PARAM, "w", 2, wd);
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *a = op1(&x, IR_OP_tanh, op1(&x, IR_OP_exp, in));
    ir_node *h = ir_b_matmul(&x.b, a, w->ref, false, false);
    ret(&x, op2(&x, IR_OP_mul, op2(&x, IR_OP_add, a, h), op1(&x, IR_OP_sigmoid, h)));
    run_passes(m, "fuse-elementwise");
    ck_assert_int_eq(count_op(x.f, IR_OP_fused), 2);
    const ir_node *mm = find_op(x.f, IR_OP_matmul);
    ck_assert_int_eq(mm->in[0]->op, IR_OP_fused); /* the exp-tanh region's yield */
    ck_assert_int_eq(mm->in[0]->region->yield->op, IR_OP_tanh);
    kiln_module_dispose(m);
}
END_TEST

/* Adam for one parameter, as the optimizer writes it (Keras' formula). */
static void adam_param(kiln_module *m, fb *x, const char *name, ir_node *grad, ir_node *alpha) {
    char mn[64], vn[64];
    snprintf(mn, sizeof mn, "optimizer.%s.m", name);
    snprintf(vn, sizeof vn, "optimizer.%s.v", name);
    ir_global *w = ir_module_global(m, name);
    ir_global *gm = global(m, IR_GLOBAL_STATE, mn, w->type.rank, w->type.dims);
    ir_global *gv = global(m, IR_GLOBAL_STATE, vn, w->type.rank, w->type.dims);
    ir_node *m1 = op2(x, IR_OP_add, op2(x, IR_OP_mul, gm->ref, cst(x, 0.9)),
                      op2(x, IR_OP_mul, grad, cst(x, 0.1)));
    ir_b_assign(&x->b, gm, m1);
    ir_node *v1 = op2(x, IR_OP_add, op2(x, IR_OP_mul, gv->ref, cst(x, 0.999)),
                      op2(x, IR_OP_mul, op2(x, IR_OP_mul, grad, grad), cst(x, 0.001)));
    ir_b_assign(&x->b, gv, v1);
    ir_node *step = op2(x, IR_OP_div, m1, op2(x, IR_OP_add, op1(x, IR_OP_sqrt, v1), cst(x, 1e-7)));
    ir_b_assign(&x->b, w, op2(x, IR_OP_sub, w->ref, op2(x, IR_OP_mul, alpha, step)));
}

static kiln_module *adam_model(void) {
    kiln_module *m = kiln_module_create("adam");
    int64_t xd[2] = {KILN_BATCH, 6}, wd[2] = {6, 3}, bd[1] = {3}, gd[2] = {KILN_BATCH, 3};
    global(m, IR_GLOBAL_PARAM, "w", 2, wd);
    global(m, IR_GLOBAL_PARAM, "b", 1, bd);
    ir_global *it = global(m, IR_GLOBAL_STATE, "optimizer.iterations", 0, NULL);
    fb x = fb_new(m, "train_step");
    ir_node *in = arg(&x, "x", IR_F32, 2, xd);
    ir_node *dy = arg(&x, "dy", IR_F32, 2, gd);
    ir_node *gw = ir_b_matmul(&x.b, in, dy, true, false);
    int64_t ax[1] = {0};
    ir_node *gb = ir_b_reduce(&x.b, IR_OP_reduce_sum, dy, 1, ax, false);
    /* t = iterations + 1; alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) */
    ir_node *t = op2(&x, IR_OP_add, it->ref, cst(&x, 1));
    ir_node *p1 = op1(&x, IR_OP_exp, op2(&x, IR_OP_mul, t, cst(&x, log(0.9))));
    ir_node *p2 = op1(&x, IR_OP_exp, op2(&x, IR_OP_mul, t, cst(&x, log(0.999))));
    ir_node *alpha = op2(
        &x, IR_OP_div,
        op2(&x, IR_OP_mul, cst(&x, 0.001), op1(&x, IR_OP_sqrt, op2(&x, IR_OP_sub, cst(&x, 1), p2))),
        op2(&x, IR_OP_sub, cst(&x, 1), p1));
    adam_param(m, &x, "w", gw, alpha);
    adam_param(m, &x, "b", gb, alpha);
    ir_b_assign(&x.b, it, t);
    ret(&x, gw);
    return m;
}

static int assigns_in(const ir_node *r) {
    int c = 0;
    for (int i = 0; i < r->region->n; i++) c += r->region->nodes[i]->op == IR_OP_assign;
    return c;
}

START_TEST(fuse_ew_adam_update_is_one_region_per_param) {
    kiln_module *a = adam_model(), *b = adam_model();
    run_passes(b, "constant-fold,cse,fuse-elementwise");
    kiln_func *f = kiln_module_func(b, "train_step");
    int three = 0, regions = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *n = f->nodes[i];
        if (!n->region) continue;
        regions++;
        int k = assigns_in(n);
        if (k == 3) {
            three++;
            ck_assert_ptr_null(n->region->yield);
            ck_assert_int_eq(n->type.dtype, IR_VOID);
        }
    }
    ck_assert_int_eq(three, 2); /* m, v and w of @w; m, v and b of @b */
    /* left outside: the step counter's assign, whose value alpha reads too */
    ck_assert_int_eq(count_op(f, IR_OP_assign), 1);
    ck_assert_int_eq(regions, 3); /* and alpha's scalar chain */
    /* three steps, bit for bit */
    data da = data_new(a, 1), db = data_new(b, 1);
    for (int step = 0; step < 3; step++) {
        outputs oa = run(a, "train_step", 5, (uint64_t)step, &da, 1.0f, 3);
        outputs ob = run(b, "train_step", 5, (uint64_t)step, &db, 1.0f, 3);
        outputs_free(&oa);
        outputs_free(&ob);
    }
    for (int i = 0; i < a->n_globals; i++)
        ck_assert_msg(memcmp(da.globals[i], db.globals[i],
                             (size_t)ir_type_numel(&a->globals[i]->type, 1) * 4) == 0,
                      "@%s differs", a->globals[i]->name);
    ck_assert(((float *)da.globals[2])[0] == 3.0f); /* iterations counted */
    data_free(&da);
    data_free(&db);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* u reads @s before the assign, v after it: u must not move past it. */
static kiln_module *effect_order(void) {
    kiln_module *m = kiln_module_create("order");
    int64_t sd[1] = {4};
    ir_global *s = global(m, IR_GLOBAL_STATE, "s", 1, sd);
    fb x = fb_new(m, "f");
    ir_node *in = arg(&x, "x", IR_F32, 1, sd);
    ir_node *u = op2(&x, IR_OP_mul, s->ref, cst(&x, 2));
    ir_node *w = op2(&x, IR_OP_add, in, cst(&x, 1));
    ir_b_assign(&x.b, s, w);
    ir_node *v = op2(&x, IR_OP_mul, s->ref, cst(&x, 3));
    ret(&x, op2(&x, IR_OP_add, op1(&x, IR_OP_exp, u), v));
    return m;
}

START_TEST(fuse_ew_respects_effect_order) {
    kiln_module *a = effect_order(), *b = effect_order();
    data da = data_new(a, 5);
    for (int i = 0; i < 4; i++) ((float *)da.globals[0])[i] = (float)(i + 1);
    run_passes(b, "fuse-elementwise");
    data db = data_new(b, 5);
    memcpy(db.globals[0], da.globals[0], 16);
    outputs oa = run(a, "f", 1, 1, &da, 1.0f, 1), ob = run(b, "f", 1, 1, &db, 1.0f, 1);
    ck_assert(memcmp(oa.v[0], ob.v[0], 16) == 0);
    ck_assert(memcmp(da.globals[0], db.globals[0], 16) == 0);
    outputs_free(&oa);
    outputs_free(&ob);
    data_free(&da);
    data_free(&db);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* --------------------------------------------------------- plan-memory */

/* One placed buffer of a plan at batch B: bytes [lo, hi), live over nodes
 * [first, last]; `node` its value's node (NULL: a workspace, a region temp,
 * the error record). */
typedef struct placed {
    int64_t lo, hi;
    int first, last;
    const ir_node *node;
} placed;

static int64_t at_batch(const kiln_func *f, int64_t off, bool batch, int64_t B) {
    return batch ? f->mem_fixed + off * B : off;
}

/* The buffers of f's plan: values, then each node's workspace and the temps
 * of its region, then the error record. */
static int collect_placed(const kiln_func *f, int64_t B, const int *last, placed *out) {
    int n = f->n_nodes, k = 0;
    for (int i = 0; i < n; i++) {
        const ir_node *a = f->nodes[i];
        if (a->type.dtype == IR_VOID) {
            ck_assert_int_eq(a->mem_offset, -1);
        } else {
            ck_assert_int_ge(a->mem_offset, 0);
            ck_assert_int_eq(a->mem_offset % (a->mem_batch ? 16 : 64), 0);
            int64_t lo = at_batch(f, a->mem_offset, a->mem_batch, B);
            out[k++] = (placed){lo, lo + ir_type_numel(&a->type, B) * 4, i, last[a->serial], a};
        }
        int64_t ws[2];
        ir_op_workspace(a, &ws[0], &ws[1]);
        ck_assert_int_eq(ws[0] > 0, a->mem_ws >= 0);
        ck_assert_int_eq(ws[1] > 0, a->mem_wsb >= 0);
        if (a->mem_ws >= 0) out[k++] = (placed){a->mem_ws, a->mem_ws + ws[0], i, i, NULL};
        int64_t lo = at_batch(f, a->mem_wsb, true, B);
        if (a->mem_wsb >= 0) out[k++] = (placed){lo, lo + ws[1] * B, i, i, NULL};
        for (int j = 0; a->region && j < a->region->n; j++) {
            const ir_node *x = a->region->nodes[j];
            if (x->mem_offset < 0) continue;
            lo = at_batch(f, x->mem_offset, x->mem_batch, B);
            out[k++] = (placed){lo, lo + ir_type_numel(&x->type, B) * 4, i, i, NULL};
        }
    }
    ck_assert_int_ge(f->mem_err, 0);
    out[k++] = (placed){f->mem_err, f->mem_err + 16, 0, n, NULL};
    return k;
}

/* Independent check of a plan at batch B: buffers whose lifetimes overlap
 * must not share bytes, unless one value writes in place over the other. */
static void check_plan(const kiln_func *f, int64_t B) {
    ck_assert(f->planned);
    ck_assert_int_eq(f->mem_fixed % 64, 0);
    int n = f->n_nodes;
    int *last = calloc((size_t)f->m->next_serial + 1, sizeof(int));
    placed *p = calloc(4 * (size_t)n + 64, sizeof *p);
    for (int i = 0; i < n; i++) {
        last[f->nodes[i]->serial] = i;
        for (int k = 0; k < f->nodes[i]->n_in; k++) last[f->nodes[i]->in[k]->serial] = i;
    }
    for (int i = 0; i < f->n_results; i++) last[f->results[i]->serial] = n;
    int np = collect_placed(f, B, last, p);
    int64_t total = f->mem_fixed + f->mem_per_sample * B;
    for (int i = 0; i < np; i++) {
        ck_assert_int_le(p[i].hi, total);
        for (int j = i + 1; j < np; j++) {
            const placed *a = p[i].first <= p[j].first ? &p[i] : &p[j];
            const placed *b = a == &p[i] ? &p[j] : &p[i];
            if (a->last < b->first || a->hi <= b->lo || b->hi <= a->lo) continue;
            bool alias = a->node && b->node && b->node->mem_inplace && a->lo == b->lo &&
                         (b->node->op == IR_OP_reshape || a->last == b->first);
            ck_assert_msg(alias, "buffers %d and %d (nodes %d, %d) overlap in the workspace", i, j,
                          a->first, b->first);
        }
    }
    free(p);
    free(last);
}

START_TEST(plan_gives_identical_results) {
    const int acts[] = {IR_OP_relu, IR_OP_sigmoid, -1};
    kiln_module *ms[3] = {mlp(acts, 3, true), ew_chain(), adam_model()};
    const char *fn[3] = {"infer", "f", "train_step"};
    for (int k = 0; k < 3; k++) {
        kiln_module *a = ms[k];
        kiln_module *b = k == 0 ? mlp(acts, 3, true) : k == 1 ? ew_chain() : adam_model();
        run_passes(b, k == 2 ? "constant-fold,fuse-elementwise,plan-memory" : "plan-memory");
        kiln_func *f = kiln_module_func(b, fn[k]);
        for (int64_t batch = 1; batch <= 33; batch += 16) {
            check_plan(f, batch);
            assert_same_run(a, b, fn[k], batch, 0);
        }
        kiln_module_dispose(a);
        kiln_module_dispose(b);
    }
}
END_TEST

START_TEST(plan_reuses_and_writes_in_place) {
    /* exp -> neg -> tanh -> sigmoid over f32[?,64]: each dies at the next */
    kiln_module *m = kiln_module_create("inplace");
    int64_t xd[2] = {KILN_BATCH, 64};
    fb x = fb_new(m, "f");
    ir_node *v = arg(&x, "x", IR_F32, 2, xd);
    int ops[] = {IR_OP_exp, IR_OP_neg, IR_OP_tanh, IR_OP_sigmoid};
    for (int i = 0; i < 4; i++) v = op1(&x, ops[i], v);
    ir_attrs ra = ir_attrs_default(IR_OP_reshape);
    ir_attrs_set_ints(&ra, "shape", 3, (const int64_t[]){KILN_BATCH, 8, 8});
    ir_node *r = ir_b_op(&x.b, IR_OP_reshape, 1, &v, &ra);
    int64_t ax[1] = {2};
    ret(&x, ir_b_reduce(&x.b, IR_OP_reduce_sum, r, 1, ax, false));
    run_passes(m, "plan-memory");
    kiln_func *f = x.f;
    /* one buffer of 256 bytes per sample for the chain and the view, one
     * of 32 for the sums */
    for (int i = 1; i < 5; i++) ck_assert_int_eq(f->nodes[i]->mem_inplace, 1);
    ck_assert_int_eq(f->mem_per_sample, 256 + 32);
    ck_assert_int_eq(f->mem_fixed, 64); /* the error record of compiled code */
    ck_assert_int_eq(f->mem_err, 0);
    check_plan(f, 3);
    float in[3 * 64], out[3 * 8];
    tu_fill_uniform(in, 3 * 64, 9, -1, 1);
    void *args[1] = {in}, *res[1] = {out};
    ck_assert_int_eq(ir_interp_run(f, 3, args, res, NULL, g_d), KILN_OK);
    for (int row = 0; row < 24; row++) {
        double s = 0;
        for (int j = 0; j < 8; j++) {
            float e = 1.0f / (1.0f + expf(-tanhf(-expf(in[row * 8 + j]))));
            s += e;
        }
        ck_assert_msg(tu_close(out[row], s, 0, 1e-5), "row %d: %.9g, by hand %.9g", row, out[row],
                      s);
    }
    kiln_module_dispose(m);
}
END_TEST

/* The ws column of ops.def: no op asks for a workspace yet, so this test
 * gives softmax one (100 bytes + 40 per sample) while it runs. */
static void fake_ws(const ir_node *n, int64_t *fixed, int64_t *per_sample) {
    (void)n;
    *fixed = 100;
    *per_sample = 40;
}

static const ir_node *first_of(const kiln_func *f, int op) {
    for (int i = 0; i < f->n_nodes; i++)
        if (f->nodes[i]->op == op) return f->nodes[i];
    return NULL;
}

static kiln_status parse_text(const char *text, kiln_module **m) {
    kiln_diag_clear(g_d);
    *m = NULL;
    return ir_parse_module(text, strlen(text), "ws.kir", m, g_d);
}

/* plan-memory places a node's workspace, live only while the node runs,
 * where no live value is; the printer shows it as mem(...,ws:,wsb:) and the
 * parser reads it back (and refuses one that is missing or out of room). */
START_TEST(plan_places_workspaces) {
    ir_op_info *sm = (ir_op_info *)ir_op(IR_OP_softmax);
    sm->workspace = fake_ws;
    const int acts[] = {IR_OP_relu, IR_OP_sigmoid, -1};
    kiln_module *m = mlp(acts, 3, true);
    run_passes(m, "infer");
    const kiln_func *f = kiln_module_func(m, "infer");
    const ir_node *s = first_of(f, IR_OP_softmax);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_ge(s->mem_ws, 0);
    ck_assert_int_ge(s->mem_wsb, 0);
    ck_assert_int_ge(f->mem_fixed, 100 + 16); /* with the error record */
    for (int64_t b = 1; b <= 128; b *= 2) check_plan(f, b);
    /* Round trip through the text form. */
    ir_sb sb;
    ir_sb_init(&sb);
    ir_print_module(&sb, m, NULL);
    char *text = ir_sb_take(&sb);
    char want[64];
    snprintf(want, sizeof want, ",ws:%lld,wsb:%lld)", (long long)s->mem_ws, (long long)s->mem_wsb);
    ck_assert_msg(strstr(text, want), "no '%s' in\n%s", want, text);
    kiln_module *m2;
    ck_assert_msg(parse_text(text, &m2) == KILN_OK, "%s", kiln_diag_message(g_d));
    const kiln_func *f2 = kiln_module_func(m2, "infer");
    const ir_node *s2 = first_of(f2, IR_OP_softmax);
    ck_assert_int_eq(s2->mem_ws, s->mem_ws);
    ck_assert_int_eq(s2->mem_wsb, s->mem_wsb);
    ck_assert_int_eq(f2->mem_err, f->mem_err);
    ir_sb_init(&sb);
    ir_print_module(&sb, m2, NULL);
    char *text2 = ir_sb_take(&sb);
    ck_assert_str_eq(text2, text);
    /* Missing, then out of its part of the workspace. */
    static const char *bad[2][2] = {
        {"mem(b:0,ws:64)", "softmax needs 40 workspace bytes per sample; mem(wsb:...) must place"},
        {"mem(b:0,ws:64,wsb:64)", "in the per-sample part of the workspace (96 bytes)"}};
    for (int k = 0; k < 3; k++) {
        char src[512];
        snprintf(src, sizeof src,
                 "module @m\nfunc @f(%%x : f32[?,10]) -> f32[?,10] mem(fixed=192, per_sample=96, "
                 "err=0) {\n  %%0 = softmax(%%x) {axis=1} : f32[?,10] %s\n  return %%0\n}\n",
                 k < 2 ? bad[k][0] : "mem(b:0,ws:64,wsb:48)");
        kiln_module *m3;
        kiln_status st = parse_text(src, &m3);
        if (k < 2) {
            ck_assert_int_eq(st, KILN_ERR_INVALID);
            ck_assert_msg(strstr(kiln_diag_message(g_d), bad[k][1]), "%s", kiln_diag_message(g_d));
        } else {
            ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(g_d));
            check_plan(kiln_module_func(m3, "f"), 7);
        }
        kiln_module_dispose(m3);
    }
    sm->workspace = NULL;
    ir_free(text);
    ir_free(text2);
    kiln_module_dispose(m2);
    kiln_module_dispose(m);
}
END_TEST

/* ----------------------------------------------------------- pipelines */

START_TEST(pipeline_infer_equals_unoptimized) {
    const int acts[] = {IR_OP_relu, IR_OP_relu, -1};
    kiln_module *a = mlp(acts, 3, true), *b = mlp(acts, 3, true);
    run_passes(b, "infer");
    kiln_func *f = kiln_module_func(b, "infer");
    ck_assert_int_eq(count_op(f, IR_OP_dense), 3);
    ck_assert(f->planned);
    for (int64_t batch = 1; batch <= 128; batch *= 8) assert_same_run(a, b, "infer", batch, 1e-6);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

START_TEST(pipeline_reports_unknown_passes) {
    kiln_module *m = ew_chain();
    kiln_diag_clear(g_d);
    ck_assert_int_eq(pass_run_pipeline(m, "cse,fuse-elementwse,nothing", NULL, g_d),
                     KILN_ERR_INVALID);
    const char *msg = kiln_diag_message(g_d);
    ck_assert_ptr_nonnull(
        strstr(msg, "unknown pass 'fuse-elementwse'; did you mean 'fuse-elementwise'?"));
    ck_assert_ptr_nonnull(strstr(msg, "unknown pass 'nothing'"));
    ck_assert_int_eq(kiln_module_func(m, "f")->n_nodes, 5); /* nothing ran */
    kiln_module_dispose(m);
}
END_TEST

START_TEST(pipeline_prints_and_dumps) {
    kiln_module *m = ew_chain();
    char dir[] = "/tmp/kiln_passes_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    FILE *out = tmpfile();
    pass_opts o = {.print_after = "fuse-elementwise", .dump_dir = dir, .out = out};
    kiln_diag_clear(g_d);
    ck_assert_int_eq(pass_run_pipeline(m, "cse,fuse-elementwise,plan-memory", &o, g_d), KILN_OK);
    long len = ftell(out);
    rewind(out);
    char *text = calloc((size_t)len + 1, 1);
    ck_assert_int_eq(fread(text, 1, (size_t)len, out), len);
    fclose(out);
    ck_assert_ptr_nonnull(strstr(text, "# *** IR after fuse-elementwise ***"));
    ck_assert_ptr_null(strstr(text, "IR after cse"));
    ck_assert_ptr_nonnull(strstr(text, "= fused(%x, @b) : f32[?,6] {"));
    free(text);
    const char *files[] = {"000_input.kir", "001_cse.kir", "002_fuse-elementwise.kir",
                           "003_plan-memory.kir"};
    char path[256];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        struct stat sb;
        ck_assert_msg(stat(path, &sb) == 0 && sb.st_size > 0, "%s missing", path);
        unlink(path);
    }
    rmdir(dir);
    kiln_module_dispose(m);
}
END_TEST

/* Allocation number 1, 2, ... fails in turn: each run ends in a clean
 * error (or succeeds once no failure is left), and the module verifies. */
static kiln_module *mlp_relu(void) {
    const int acts[] = {IR_OP_relu, -1};
    return mlp(acts, 2, true);
}
static kiln_module *ce_plain(void) {
    return ce_model(0, false, -1);
}

START_TEST(passes_survive_allocation_failures) {
    /* each pass on a model where it rewrites something */
    const struct {
        const char *pipeline;
        kiln_module *(*make)(void);
    } cases[] = {
        {"fuse-dense-act", mlp_relu},
        {"fuse-conv-act", conv_model},
        {"fuse-softmax-ce", ce_plain},
        {"constant-fold", identities},
        {"cse", duplicates},
        {"dce", duplicates},
        {"fuse-elementwise", adam_model},
        {"fuse-elementwise,plan-memory", adam_model},
        {"infer", mlp_relu},
    };
    for (size_t p = 0; p < KILN_ARRAY_LEN(cases); p++) {
        const char *pipe = cases[p].pipeline;
        for (long n = 1;; n++) {
            kiln_module *m = cases[p].make();
            kiln_diag *d = kiln_diag_create();
            kiln_test_alloc_fail_at(n);
            pass_opts o = {.no_verify = true};
            kiln_status st = pass_run_pipeline(m, pipe, &o, d);
            int failed = kiln_test_alloc_failed();
            kiln_test_alloc_fail_at(0);
            if (!failed) {
                ck_assert_int_eq(st, KILN_OK);
                kiln_diag_dispose(d);
                kiln_module_dispose(m);
                break;
            }
            ck_assert_msg(st == KILN_ERR_NOMEM, "%s, failure %ld: status %d", pipe, n, st);
            ck_assert_int_eq(ir_verify_module(m, g_d), KILN_OK);
            kiln_diag_dispose(d);
            kiln_module_dispose(m);
            ck_assert_int_lt(n, 10000);
        }
    }
}
END_TEST

/* ------------------------------------------- needs autodiff and optimizer */

/* The MNIST recipe in miniature: loss = cce(softmax(dense(dense(x)))), an
 * accuracy output, Adam. */
static kiln_module *train_model(void) {
    const int acts[] = {IR_OP_relu, -1};
    kiln_module *m = mlp(acts, 2, true);
    m->train.present = true;
    m->train.opt = ir_optimizer_defaults(IR_OPT_ADAM);
    m->train.opt.lr = 0.01;
    fb x = fb_new(m, "loss");
    int64_t xd[2] = {KILN_BATCH, D_IN}, yd[2] = {KILN_BATCH, D_OUT};
    ir_node *h = arg(&x, "x", IR_F32, 2, xd), *y = arg(&x, "y", IR_F32, 2, yd);
    for (int l = 0; l < 2; l++) {
        char kn[32], bn[32];
        snprintf(kn, sizeof kn, "l%d.kernel", l);
        snprintf(bn, sizeof bn, "l%d.bias", l);
        h = op2(&x, IR_OP_add, ir_b_matmul(&x.b, h, ir_module_global(m, kn)->ref, false, false),
                ir_module_global(m, bn)->ref);
        if (acts[l] >= 0) h = op1(&x, acts[l], h);
    }
    ir_node *p = with_axis(&x, IR_OP_softmax, h, 1);
    ir_node *hit =
        op2(&x, IR_OP_equal, with_axis(&x, IR_OP_argmax, p, 1), with_axis(&x, IR_OP_argmax, y, 1));
    ir_node *acc =
        ir_b_reduce(&x.b, IR_OP_reduce_mean,
                    cast_f32(&x.b, hit), 0, NULL, false);
    ret(&x, op2(&x, IR_OP_categorical_crossentropy, p, y));
    ret(&x, acc);
    return m;
}

static kiln_module *mnist_model(void) {
    kiln_module *m = NULL;
    kiln_diag_clear(g_d);
    kiln_status st = kiln_model_file_load(tu_src_path("examples/mnist_mlp.kiln"), &m, g_d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(g_d));
    return m;
}

/* "train" against plain "autodiff,optimizer": three steps of the training
 * function from the same weights land on the same weights and state. */
START_TEST(pipeline_train_equals_unoptimized) {
    kiln_module *(*make[2])(void) = {train_model, mnist_model};
    const int classes[2] = {D_OUT, 10};
    for (int k = 0; k < 2; k++) {
        kiln_module *a = make[k](), *b = make[k]();
        run_passes(a, "autodiff,optimizer");
        run_passes(b, "train");
        kiln_func *f = kiln_module_func(b, "train_step");
        ck_assert_int_eq(count_op(f, IR_OP_dense), k == 0 ? 2 : 3);
        ck_assert_int_eq(count_op(f, IR_OP_softmax_cross_entropy), 1);
        ck_assert_int_eq(count_op(f, IR_OP_categorical_crossentropy), 0);
        ck_assert_int_eq(count_op(f, IR_OP_softmax), 1); /* the fused loss's gradient */
        ck_assert_int_le(count_op(f, IR_OP_assign), 1);  /* the step counter at most */
        ck_assert(f->planned);
        ck_assert_int_eq(a->n_globals, b->n_globals);
        data da = data_new(a, 11), db = data_new(b, 11);
        for (int step = 0; step < 3; step++) {
            outputs oa = run(a, "train_step", 16, (uint64_t)step, &da, 1.0f, classes[k]);
            outputs ob = run(b, "train_step", 16, (uint64_t)step, &db, 1.0f, classes[k]);
            ck_assert_msg(tu_close(ob.v[0][0], oa.v[0][0], 0, 1e-5), "loss %.9g vs %.9g",
                          ob.v[0][0], oa.v[0][0]);
            outputs_free(&oa);
            outputs_free(&ob);
        }
        for (int i = 0; i < a->n_globals; i++) {
            const ir_global *g = a->globals[i];
            ck_assert_str_eq(g->name, b->globals[i]->name);
            if (g->type.dtype != IR_F32) {
                ck_assert(memcmp(da.globals[i], db.globals[i], 4) == 0);
                continue;
            }
            /* Adam's m and v at their own scale (v is 1e-9..1e-6). */
            char what[96];
            snprintf(what, sizeof what, "@%s after 3 steps", g->name);
            tu_assert_close_at_scale(db.globals[i], da.globals[i], ir_type_numel(&g->type, 1), 1e-5,
                                     what);
        }
        data_free(&da);
        data_free(&db);
        kiln_module_dispose(a);
        kiln_module_dispose(b);
    }
}
END_TEST

START_TEST(pipeline_infer_equals_unoptimized_model_file) {
    kiln_module *a = mnist_model(), *b = mnist_model();
    run_passes(b, "infer");
    ck_assert_int_eq(count_op(kiln_module_func(b, "infer"), IR_OP_dense), 3);
    for (int64_t batch = 1; batch <= 9; batch += 8) assert_same_run(a, b, "infer", batch, 1e-6);
    kiln_module_dispose(a);
    kiln_module_dispose(b);
}
END_TEST

/* softmax_cross_entropy of z = x W, mean over the rows, and its gradient
 * with respect to W, x^T (softmax(z) - y) / rows, in double. */
static double softmax_ce_reference(const float *x, const float *y, const float *w, int rows,
                                   double *dw) {
    double loss = 0, dz[2][3];
    for (int r = 0; r < rows; r++) {
        double z[3], mx = -INFINITY, sum = 0;
        for (int j = 0; j < 3; j++) {
            z[j] = 0;
            for (int k = 0; k < 3; k++) z[j] += (double)x[r * 3 + k] * w[k * 3 + j];
            mx = fmax(mx, z[j]);
        }
        for (int j = 0; j < 3; j++) sum += exp(z[j] - mx);
        double lse = mx + log(sum);
        for (int j = 0; j < 3; j++) {
            loss += y[r * 3 + j] * (lse - z[j]) / rows;
            dz[r][j] = (exp(z[j] - lse) - y[r * 3 + j]) / rows;
        }
    }
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 3; j++) {
            dw[k * 3 + j] = 0;
            for (int r = 0; r < rows; r++) dw[k * 3 + j] += (double)x[r * 3 + k] * dz[r][j];
        }
    return loss;
}

/* The fused loss keeps the exact gradient where softmax has underflowed:
 * both rows' losses are 2e4, and d@w is x^T (onehot(argmax z) - y) / 2 =
 * [[1e4, -5e3, -5e3], [-5e3, 5e3, 0], [-5e3, 0, 5e3]]. */
START_TEST(softmax_ce_gradient_finite_for_large_logits) {
    kiln_module *m = kiln_module_create("big");
    int64_t zd[2] = {KILN_BATCH, 3}, wd[2] = {3, 3};
    global(m, IR_GLOBAL_PARAM, "w", 2, wd);
    fb x = fb_new(m, "loss");
    ir_node *in = arg(&x, "x", IR_F32, 2, zd), *y = arg(&x, "y", IR_F32, 2, zd);
    ir_node *z = ir_b_matmul(&x.b, in, ir_module_global(m, "w")->ref, false, false);
    ret(&x, op2(&x, IR_OP_categorical_crossentropy, with_axis(&x, IR_OP_softmax, z, 1), y));
    run_passes(m, "fuse-softmax-ce,autodiff");
    kiln_func *f = kiln_module_func(m, "train_step");
    ck_assert_ptr_nonnull(f);
    float xin[2 * 3] = {1e4f, -1e4f, 0, -1e4f, 0, 1e4f}, yin[2 * 3] = {0, 1, 0, 1, 0, 0};
    float w[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}; /* z = x */
    float loss = NAN, grad[9];
    void *args[2] = {xin, yin}, *res[2] = {&loss, grad}, *globals[1] = {w};
    ck_assert_int_eq(f->n_results, 2);
    ck_assert_int_eq(ir_interp_run(f, 2, args, res, globals, g_d), KILN_OK);
    double want_dw[9], want = softmax_ce_reference(xin, yin, w, 2, want_dw);
    ck_assert_double_eq(want, 2e4);
    ck_assert_msg(loss == 2e4f, "loss %.9g, want 2e4", loss);
    const float dw[9] = {1e4f, -5e3f, -5e3f, -5e3f, 5e3f, 0, -5e3f, 0, 5e3f};
    for (int i = 0; i < 9; i++) ck_assert_double_eq(want_dw[i], dw[i]); /* the comment's values */
    for (int i = 0; i < 9; i++)
        ck_assert_msg(grad[i] == dw[i], "d@w[%d] = %.9g, want %.9g", i, grad[i], dw[i]);
    kiln_module_dispose(m);
}
END_TEST

/* ---------------------------------------------------------------- dropout */

static const char *g_dropout_model = "model m\n"
                                     "input x : f32[?, 6]\n"
                                     "label y : f32[?, 3]\n"
                                     "h = dense(x, 5, activation=relu)\n"
                                     "d = dropout(h, 0.25)\n"
                                     "h2 = dense(d, 4, activation=relu)\n"
                                     "d2 = dropout(h2, rate=0.5)\n"
                                     "p = dense(d2, 3, activation=softmax)\n"
                                     "output p\n"
                                     "loss categorical_crossentropy(p, y)\n"
                                     "train {\n  optimizer = adam\n  seed = 42\n}\n";

/* train_step keeps dropout (forward and gradient), keyed by the train
 * block's seed and the optimizer's step; infer and loss lose it. */
START_TEST(dropout_only_in_train_step) {
    kiln_module *m = NULL;
    kiln_diag_clear(g_d);
    ck_assert_int_eq(kiln_model_file_parse(g_dropout_model, strlen(g_dropout_model), "d.kiln", &m,
                                           g_d),
                     KILN_OK);
    ck_assert_int_eq(count_op(kiln_module_func(m, "infer"), IR_OP_dropout), 2);
    run_passes(m, pass_pipeline_named("train"));
    ck_assert_int_eq(count_op(kiln_module_func(m, "infer"), IR_OP_dropout), 0);
    ck_assert_int_eq(count_op(kiln_module_func(m, "loss"), IR_OP_dropout), 0);
    const kiln_func *t = kiln_module_func(m, "train_step");
    ck_assert_int_eq(count_op(t, IR_OP_dropout), 4);
    const ir_global *it = ir_module_global(m, "optimizer.iterations");
    ck_assert_ptr_nonnull(it);
    int nodes[2] = {0, 0};
    for (int i = 0; i < t->n_nodes; i++) {
        const ir_node *n = t->nodes[i];
        if (n->op != IR_OP_dropout) continue;
        ck_assert_ptr_eq(n->in[1], it->ref);
        ck_assert_int_eq(ir_attr_i(n, "seed"), 42);
        nodes[ir_attr_f(n, "rate") == 0.5]++;
    }
    ck_assert_int_eq(nodes[0], 2); /* each layer's forward and its gradient */
    ck_assert_int_eq(nodes[1], 2);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(dropout_rate_out_of_range_is_refused) {
    const char *src = "model m\ninput x : f32[?, 6]\nd = dropout(x, 1.0)\noutput d\n";
    kiln_module *m = NULL;
    kiln_diag_clear(g_d);
    ck_assert_int_eq(kiln_model_file_parse(src, strlen(src), "r.kiln", &m, g_d), KILN_ERR_INVALID);
    ck_assert_ptr_null(m);
    const char *msg = kiln_diag_message(g_d);
    ck_assert_msg(strstr(msg, "r.kiln:3:16: error: dropout 'd' on f32[?,6]: 'rate' must be in [0, 1), got 1"),
                  "%s", msg);
}
END_TEST

/* One train_step on the interpreter: Keras' update of the moving statistics
 * from x = [[1,2],[3,6]] (batch mean [2,4], biased variance [1,4]):
 * mean 0 * 0.99 + [2,4] * 0.01, variance 1 * 0.99 + [1,4] * 0.01. */
START_TEST(batch_norm_moving_statistics_after_one_step) {
    const char *src = "model m\ninput x : f32[?, 2]\nlabel y : f32[?, 2]\n"
                      "h = batch_normalization(x)\np = dense(h, 2, activation=softmax)\n"
                      "output p\nloss categorical_crossentropy(p, y)\n"
                      "train {\n  optimizer = sgd(lr=0.1)\n}\n";
    kiln_module *m = NULL;
    kiln_diag_clear(g_d);
    ck_assert_int_eq(kiln_model_file_parse(src, strlen(src), "bn.kiln", &m, g_d), KILN_OK);
    run_passes(m, pass_pipeline_named("train"));
    void *glob[16] = {NULL};
    ck_assert_int_le(m->n_globals, 16);
    for (int i = 0; i < m->n_globals; i++) {
        glob[i] = calloc((size_t)ir_type_numel(&m->globals[i]->type, 1) + 1, 4);
        ck_assert_int_eq(ir_global_init(m->globals[i], 1, glob[i], g_d), KILN_OK);
    }
    float x[4] = {1, 2, 3, 6}, y[4] = {1, 0, 0, 1}, loss;
    void *args[2] = {x, y}, *res[1] = {&loss};
    ck_assert_int_eq(ir_interp_run(kiln_module_func(m, "train_step"), 2, args, res, glob, g_d),
                     KILN_OK);
    const float *mm = glob[ir_module_global(m, "h.moving_mean")->ref->index];
    const float *mv = glob[ir_module_global(m, "h.moving_variance")->ref->index];
    ck_assert_float_eq_tol(mm[0], 0.02f, 1e-7f);
    ck_assert_float_eq_tol(mm[1], 0.04f, 1e-7f);
    ck_assert_float_eq_tol(mv[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(mv[1], 1.03f, 1e-6f);
    for (int i = 0; i < m->n_globals; i++) free(glob[i]);
    kiln_module_dispose(m);
}
END_TEST

/* fold-batch-norm: @infer after the infer pipeline (the batch norms gone
 * into the producers' weights) equals @infer on moving statistics, unfolded,
 * to 1e-5 on the interpreter, with random weights and statistics, at batch
 * 7. in/out: floats per sample. */
static void check_fold(const char *src, int n_globals, int in, int out) {
    kiln_module *m[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        kiln_diag_clear(g_d);
        ck_assert_int_eq(kiln_model_file_parse(src, strlen(src), "f.kiln", &m[k], g_d), KILN_OK);
    }
    run_passes(m[0], "inference-mode");
    run_passes(m[1], pass_pipeline_named("infer"));
    ck_assert_int_gt(count_op(kiln_module_func(m[0], "infer"), IR_OP_batch_norm), 0);
    ck_assert_int_eq(count_op(kiln_module_func(m[1], "infer"), IR_OP_batch_norm), 0);
    enum { MAXG = 12, MAXN = 128, B = 7 };
    static float g[MAXG][MAXN];
    void *glob[MAXG];
    ck_assert_int_eq(m[0]->n_globals, n_globals);
    for (int i = 0; i < n_globals; i++) {
        ck_assert_int_le(ir_type_numel(&m[0]->globals[i]->type, 1), MAXN);
        bool var = strstr(m[0]->globals[i]->name, "variance") != NULL;
        tu_fill_uniform(g[i], MAXN, 10 + (uint64_t)i, var ? 0.2f : -1.5f, 1.5f);
        glob[i] = g[i];
    }
    float *x = malloc(sizeof(float) * B * (size_t)in);
    float *y[2] = {malloc(sizeof(float) * B * (size_t)out), malloc(sizeof(float) * B * (size_t)out)};
    tu_fill_uniform(x, B * (size_t)in, 3, -2, 2);
    for (int k = 0; k < 2; k++) {
        void *args[1] = {x}, *res[1] = {y[k]};
        ck_assert_int_eq(ir_interp_run(kiln_module_func(m[k], "infer"), B, args, res, glob, g_d),
                         KILN_OK);
    }
    ck_assert(tu_max_abs(y[0], B * out) > 0.1);
    for (int e = 0; e < B * out; e++)
        ck_assert_msg(tu_close(y[1][e], y[0][e], 1e-5, 1e-5), "element %d: %g, unfolded %g", e,
                      y[1][e], y[0][e]);
    free(x);
    free(y[0]);
    free(y[1]);
    for (int k = 0; k < 2; k++) kiln_module_dispose(m[k]);
}

START_TEST(batch_norm_fold_preserves_infer) {
    /* 2 dense x 2, 2 batch norms x 4 */
    check_fold("model m\ninput x : f32[?, 6]\nh = dense(x, 5)\n"
               "b = batch_normalization(h, epsilon=0.01)\nr = relu(b)\n"
               "p = dense(r, 3)\nq = batch_normalization(p)\noutput q\n",
               12, 6, 3);
    /* conv2d: the kernel [kh, kw, in, out] scaled per output channel */
    check_fold("model m\ninput x : f32[?, 5, 5, 2]\nh = conv2d(x, 4, 3, padding=same)\n"
               "b = batch_normalization(h, epsilon=0.01)\noutput b\n",
               6, 5 * 5 * 2, 5 * 5 * 4);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("passes");
    TCase *t = tcase_create("passes");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, dense_fuses_each_activation);
    tcase_add_test(t, dense_same_graph_as_direct_dense);
    tcase_add_test(t, dense_model_file_equals_primitives);
    tcase_add_test(t, dense_does_not_fuse);
    tcase_add_test(t, conv_fuses_each_activation);
    tcase_add_test(t, conv_fused_train_step_equals_unfused);
    tcase_add_test(t, matmul_mask_train_step_equals_unfused);
    tcase_add_test(t, softmax_ce_fuses);
    tcase_add_test(t, softmax_ce_does_not_fuse);
    tcase_add_test(t, softmax_ce_stable_for_large_logits);
    tcase_add_test(t, fold_evaluates_constants);
    tcase_add_test(t, fold_removes_identities);
    tcase_add_test(t, fold_argmax_of_softmax_unblocks_fusion);
    tcase_add_test(t, cse_merges_equal_nodes);
    tcase_add_test(t, dce_removes_dead_keeps_effects);
    tcase_add_test(t, fuse_ew_chain_becomes_one_region);
    tcase_add_test(t, fuse_ew_one_op_is_left_alone);
    tcase_add_test(t, fuse_ew_keeps_graph_acyclic);
    tcase_add_test(t, fuse_ew_value_used_outside_stays);
    tcase_add_test(t, fuse_ew_adam_update_is_one_region_per_param);
    tcase_add_test(t, fuse_ew_respects_effect_order);
    tcase_add_test(t, plan_gives_identical_results);
    tcase_add_test(t, plan_reuses_and_writes_in_place);
    tcase_add_test(t, plan_places_workspaces);
    tcase_add_test(t, pipeline_infer_equals_unoptimized);
    tcase_add_test(t, pipeline_infer_equals_unoptimized_model_file);
    tcase_add_test(t, pipeline_reports_unknown_passes);
    tcase_add_test(t, pipeline_prints_and_dumps);
    tcase_add_test(t, passes_survive_allocation_failures);
    suite_add_tcase(s, t);
    /* These run autodiff and the optimizer (passes/autodiff.c, optimizer.c). */
    TCase *tr = tcase_create("train");
    tcase_add_checked_fixture(tr, setup, teardown);
    tcase_add_test(tr, pipeline_train_equals_unoptimized);
    tcase_add_test(tr, softmax_ce_gradient_finite_for_large_logits);
    tcase_add_test(tr, dropout_only_in_train_step);
    tcase_add_test(tr, dropout_rate_out_of_range_is_refused);
    tcase_add_test(tr, batch_norm_moving_statistics_after_one_step);
    tcase_add_test(tr, batch_norm_fold_preserves_infer);
    suite_add_tcase(s, tr);
    return s;
}

int main(void) {
    return tu_run_suite(suite());
}

/*
 * test_frontend.c — the .kiln model language: tokens, every construct and
 * the IR it builds (names, shapes, functions, train settings, the layer
 * table, node locations), numbers from the interpreter for a model with set
 * weights, every error message by exact text, the limits, and allocation
 * failures over the whole MNIST model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/lex.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

static kiln_module *parse_ok(const char *src) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_model_file_parse(src, strlen(src), "t.kiln", &m, d);
    ck_assert_msg(st == KILN_OK, "parse failed (%d):\n%s", st, kiln_diag_message(d));
    ck_assert_ptr_nonnull(m);
    kiln_diag_dispose(d);
    return m;
}

static const char *type_str(const ir_type *t) {
    static char buf[4][IR_TYPE_STR_MAX];
    static int k;
    k = (k + 1) % 4;
    return ir_type_str(t, buf[k], sizeof buf[k]);
}

static void check_global(const kiln_module *m, const char *name, const char *type,
                         kiln_init_kind init, bool trainable) {
    const ir_global *g = ir_module_global(m, name);
    ck_assert_msg(g != NULL, "no parameter '%s'", name);
    ck_assert_int_eq(g->kind, IR_GLOBAL_PARAM);
    ck_assert_str_eq(type_str(&g->type), type);
    ck_assert_int_eq(g->init.kind, init);
    ck_assert_int_eq(g->trainable, trainable);
}

static void check_layer(const kiln_module *m, int i, const char *name, const char *kind,
                        const char *type, int64_t params) {
    ck_assert_int_lt(i, m->n_layers);
    const ir_layer *l = &m->layers[i];
    ck_assert_str_eq(l->name, name);
    ck_assert_str_eq(l->kind, kind);
    ck_assert_str_eq(type_str(&l->out), type);
    ck_assert_int_eq(l->params, params);
}

/* The ops of a function's nodes, space-separated. */
static const char *ops_of(const kiln_func *f) {
    static char buf[2048];
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < f->n_nodes && o < sizeof buf - 40; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? " " : "",
                              ir_op_name(f->nodes[i]->op));
    return buf;
}

static char *read_text(const char *path, size_t *len) {
    char *text = NULL;
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(ir_read_file(path, &text, len, d) == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return text;
}

/* ------------------------------------------------------------------ lexer */

START_TEST(test_tokens) {
    const char *text = "h1 = dense(x, 1e-3)  # note\n\t[?, 784] 12 .5 -\n";
    fe_source src = {text, strlen(text), "lex.kiln"};
    fe_lexer lx;
    fe_lex_init(&lx, &src, NULL);
    static const struct {
        int kind, line, col;
        const char *text;
    } want[] = {
        {FE_TK_NAME, 1, 1, "h1"},
        {'=', 1, 4, "="},
        {FE_TK_NAME, 1, 6, "dense"},
        {'(', 1, 11, "("},
        {FE_TK_NAME, 1, 12, "x"},
        {',', 1, 13, ","},
        {FE_TK_NUMBER, 1, 15, "1e-3"},
        {')', 1, 19, ")"},
        {'[', 2, 2, "["},
        {'?', 2, 3, "?"},
        {',', 2, 4, ","},
        {FE_TK_NUMBER, 2, 6, "784"},
        {']', 2, 9, "]"},
        {FE_TK_NUMBER, 2, 11, "12"},
        {FE_TK_NUMBER, 2, 14, ".5"},
        {'-', 2, 17, "-"},
        {FE_TK_EOF, 3, 1, ""},
    };
    for (size_t i = 0; i < KILN_ARRAY_LEN(want); i++) {
        fe_token t;
        ck_assert_int_eq(fe_lex_next(&lx, &t), KILN_OK);
        ck_assert_int_eq(t.kind, want[i].kind);
        ck_assert_str_eq(t.loc.file, "lex.kiln");
        ck_assert_int_eq(t.loc.line, want[i].line);
        ck_assert_int_eq(t.loc.col, want[i].col);
        ck_assert_int_eq((int)t.len, (int)strlen(want[i].text));
        ck_assert(memcmp(t.s, want[i].text, t.len) == 0);
        if (i == 6) ck_assert(!t.is_int && t.num == 1e-3); /* strtod: the nearest double */
        if (i == 11) ck_assert(t.is_int && t.ival == 784);
        if (i == 14) ck_assert(!t.is_int && t.num == 0.5);
    }
}
END_TEST

/* ------------------------------------------------------------- the model */

static const char *const g_mnist_infer =
    "func @infer(%x : f32[?,784]) -> f32[?,10] {\n"
    "  %0 = matmul(%x, @h1.kernel) : f32[?,128]  # mnist_mlp.kiln:7:6\n"
    "  %1 = add(%0, @h1.bias) : f32[?,128]  # mnist_mlp.kiln:7:6\n"
    "  %2 = relu(%1) : f32[?,128]  # mnist_mlp.kiln:7:6\n"
    "  %3 = matmul(%2, @h2.kernel) : f32[?,64]  # mnist_mlp.kiln:8:6\n"
    "  %4 = add(%3, @h2.bias) : f32[?,64]  # mnist_mlp.kiln:8:6\n"
    "  %5 = relu(%4) : f32[?,64]  # mnist_mlp.kiln:8:6\n"
    "  %6 = matmul(%5, @p.kernel) : f32[?,10]  # mnist_mlp.kiln:9:6\n"
    "  %7 = add(%6, @p.bias) : f32[?,10]  # mnist_mlp.kiln:9:6\n"
    "  %8 = softmax(%7) {axis=1} : f32[?,10]  # mnist_mlp.kiln:9:6\n"
    "  return %8\n"
    "}\n";

START_TEST(test_mnist_example) {
    size_t len;
    char *text = read_text(tu_src_path("examples/mnist_mlp.kiln"), &len);
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_model_file_parse(text, len, "mnist_mlp.kiln", &m, d), KILN_OK);
    ir_free(text);
    ck_assert_str_eq(kiln_module_name(m), "mnist_mlp");

    ck_assert_int_eq(m->n_globals, 6);
    check_global(m, "h1.kernel", "f32[784,128]", KILN_INIT_GLOROT_UNIFORM, true);
    check_global(m, "h1.bias", "f32[128]", KILN_INIT_ZEROS, true);
    check_global(m, "h2.kernel", "f32[128,64]", KILN_INIT_GLOROT_UNIFORM, true);
    check_global(m, "h2.bias", "f32[64]", KILN_INIT_ZEROS, true);
    check_global(m, "p.kernel", "f32[64,10]", KILN_INIT_GLOROT_UNIFORM, true);
    check_global(m, "p.bias", "f32[10]", KILN_INIT_ZEROS, true);

    ck_assert_int_eq(m->n_layers, 3);
    check_layer(m, 0, "h1", "Dense", "f32[?,128]", 100480);
    check_layer(m, 1, "h2", "Dense", "f32[?,64]", 8256);
    check_layer(m, 2, "p", "Dense", "f32[?,10]", 650);
    int64_t total = 0;
    for (int i = 0; i < m->n_layers; i++) total += m->layers[i].params;
    ck_assert_int_eq(total, 109386);

    const ir_train_config *c = &m->train;
    ck_assert(c->present);
    ck_assert_int_eq(c->opt.kind, IR_OPT_ADAM);
    ck_assert(c->opt.lr == 0.001 && c->opt.beta_1 == 0.9 && c->opt.beta_2 == 0.999);
    ck_assert(c->opt.epsilon == 1e-7);
    ck_assert_int_eq(c->epochs, 10);
    ck_assert_int_eq(c->batch_size, 128);
    ck_assert_int_eq(c->seed, 0);
    ck_assert(c->metric_accuracy);

    /* @infer, as text: the primitive ops, each at its layer's line. */
    ck_assert_int_eq(m->n_funcs, 2);
    kiln_func *f = kiln_module_func(m, "infer");
    ck_assert_ptr_nonnull(f);
    ir_sb sb;
    ir_sb_init(&sb);
    ir_print_func(&sb, f, NULL);
    char *s = ir_sb_take(&sb);
    ck_assert_str_eq(s, g_mnist_infer);
    ir_free(s);

    /* @loss(%x, %y) -> (loss, accuracy). */
    kiln_func *l = kiln_module_func(m, "loss");
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(l->n_args, 2);
    ck_assert_str_eq(l->args[0]->name, "x");
    ck_assert_str_eq(l->args[1]->name, "y");
    ck_assert_str_eq(type_str(&l->args[1]->type), "f32[?,10]");
    ck_assert_str_eq(ops_of(l), "matmul add relu matmul add relu matmul add softmax "
                                "categorical_crossentropy argmax argmax equal cast reduce_mean");
    ck_assert_int_eq(l->n_results, 2);
    ck_assert_int_eq(l->results[0]->op, IR_OP_categorical_crossentropy);
    ck_assert_int_eq(l->results[0]->loc.line, 12);
    ck_assert_int_eq(l->results[0]->loc.col, 6);
    ck_assert_int_eq(l->results[1]->op, IR_OP_reduce_mean);
    ck_assert_str_eq(type_str(&l->results[1]->type), "f32[]");
    ck_assert_int_eq(l->results[1]->loc.line, 18); /* 'accuracy' in the metrics */
    ck_assert_int_eq(kiln_module_verify(m, d), KILN_OK);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(test_load_file) {
    char path[] = "/tmp/kiln-frontend-XXXXXX.kiln";
    int fd = mkstemps(path, 5);
    ck_assert_int_ge(fd, 0);
    const char *src = "input x : f32[?, 3]\noutput relu(x)\n";
    ck_assert_int_eq((int)write(fd, src, strlen(src)), (int)strlen(src));
    close(fd);
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_model_file_load(path, &m, d), KILN_OK);
    /* Without 'model NAME' the file's base name names the module. */
    char want[64];
    snprintf(want, sizeof want, "%.*s", (int)strlen(path) - 5 - 5, path + 5);
    for (char *p = want; *p; p++)
        if (*p == '-') *p = '_';
    ck_assert_str_eq(kiln_module_name(m), want);
    ck_assert_str_eq(kiln_module_func(m, "infer")->nodes[0]->loc.file, path);
    kiln_module_dispose(m);
    unlink(path);

    m = (kiln_module *)1;
    kiln_diag_clear(d);
    ck_assert_int_eq(kiln_model_file_load("/nonexistent/model.kiln", &m, d), KILN_ERR_IO);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(kiln_diag_message(d),
                     "kiln: error: /nonexistent/model.kiln: No such file or directory\n");
    kiln_diag_dispose(d);
}
END_TEST

/* ------------------------------------------------------------- constructs */

START_TEST(test_inline_names) {
    /* Inline layers count per type like Keras, innermost first, and skip
     * every name the file defines, wherever it is defined. */
    kiln_module *m = parse_ok("input x : f32[?, 4]\n"
                              "a = dense(relu(dense(x, 8)), 6)\n"
                              "dense_1 = tanh(dense(a, 5))\n"
                              "output softmax(dense(dense_1, 3)), flatten(a)\n");
    ck_assert_int_eq(m->n_layers, 8);
    check_layer(m, 0, "dense", "Dense", "f32[?,8]", 40);
    check_layer(m, 1, "activation", "Activation", "f32[?,8]", 0);
    check_layer(m, 2, "a", "Dense", "f32[?,6]", 54);
    check_layer(m, 3, "dense_2", "Dense", "f32[?,5]", 35);
    check_layer(m, 4, "dense_1", "Activation", "f32[?,5]", 0);
    check_layer(m, 5, "dense_3", "Dense", "f32[?,3]", 18);
    check_layer(m, 6, "activation_1", "Activation", "f32[?,3]", 0);
    check_layer(m, 7, "flatten", "Flatten", "f32[?,6]", 0);
    check_global(m, "dense.kernel", "f32[4,8]", KILN_INIT_GLOROT_UNIFORM, true);
    check_global(m, "dense_2.kernel", "f32[6,5]", KILN_INIT_GLOROT_UNIFORM, true);
    check_global(m, "dense_3.bias", "f32[3]", KILN_INIT_ZEROS, true);
    kiln_func *f = kiln_module_func(m, "infer");
    ck_assert_int_eq(f->n_results, 2);
    /* flatten of a matrix is the matrix itself: no reshape node. */
    ck_assert_ptr_eq(f->results[1], f->nodes[4]);
    ck_assert_ptr_null(kiln_module_func(m, "loss"));
    ck_assert(!m->train.present);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_layers) {
    kiln_module *m =
        parse_ok("# every layer and argument\n"
                 "input img : f32[?, 28, 28]\n"
                 "f = flatten(img)\n"
                 "h = dense(f, 16, use_bias=false, kernel_initializer=he_normal)\n"
                 "g = dense(h, 8, activation=leaky_relu(alpha=0.1), trainable=false,\n"
                 "          bias_initializer=constant(0.5),)\n"
                 "k = dense(units=4, x=g, kernel_initializer=uniform(min=-0.1, maxval=0.2),\n"
                 "          bias_initializer=normal(stddev=0.01), activation=linear)\n"
                 "s = add(sigmoid(k), tanh(k))\n"
                 "l = leaky_relu(s)\n"
                 "q = softmax(relu(l), axis=-1)\n"
                 "same = q\n"
                 "output same\n");
    ck_assert_str_eq(kiln_module_name(m), "t");
    ck_assert_int_eq(m->n_globals, 5);
    check_global(m, "h.kernel", "f32[784,16]", KILN_INIT_HE_NORMAL, true);
    ck_assert_ptr_null(ir_module_global(m, "h.bias"));
    check_global(m, "g.kernel", "f32[16,8]", KILN_INIT_GLOROT_UNIFORM, false);
    check_global(m, "g.bias", "f32[8]", KILN_INIT_CONSTANT, false);
    ck_assert(ir_module_global(m, "g.bias")->init.a == 0.5);
    const ir_global *kk = ir_module_global(m, "k.kernel");
    ck_assert_int_eq(kk->init.kind, KILN_INIT_UNIFORM);
    ck_assert(kk->init.a == -0.1 && kk->init.b == 0.2);
    const ir_global *kb = ir_module_global(m, "k.bias");
    ck_assert_int_eq(kb->init.kind, KILN_INIT_NORMAL);
    ck_assert(kb->init.a == 0 && kb->init.b == 0.01);

    check_layer(m, 0, "f", "Flatten", "f32[?,784]", 0);
    check_layer(m, 1, "h", "Dense", "f32[?,16]", 12544);
    check_layer(m, 2, "g", "Dense", "f32[?,8]", 136);
    check_layer(m, 3, "k", "Dense", "f32[?,4]", 36);
    check_layer(m, 4, "activation", "Activation", "f32[?,4]", 0);
    check_layer(m, 5, "activation_1", "Activation", "f32[?,4]", 0);
    check_layer(m, 6, "s", "Add", "f32[?,4]", 0);
    check_layer(m, 7, "l", "Activation", "f32[?,4]", 0);
    check_layer(m, 8, "activation_2", "Activation", "f32[?,4]", 0);
    check_layer(m, 9, "q", "Activation", "f32[?,4]", 0);
    ck_assert_int_eq(m->n_layers, 10);

    kiln_func *f = kiln_module_func(m, "infer");
    ck_assert_str_eq(ops_of(f), "reshape matmul matmul add leaky_relu matmul add sigmoid tanh add "
                                "leaky_relu relu softmax");
    ck_assert(ir_attr_f(f->nodes[4], "alpha") == 0.1);  /* leaky_relu(alpha=0.1) */
    ck_assert(ir_attr_f(f->nodes[10], "alpha") == 0.2); /* Keras 3: negative_slope=0.2 */
    ck_assert_int_eq(ir_attr_i(f->nodes[12], "axis"), 1);
    ck_assert_ptr_eq(f->results[0], f->nodes[12]); /* 'same = q' is q */
    /* Every node points at its layer's call. */
    ck_assert_int_eq(f->nodes[0]->loc.line, 3);
    ck_assert_int_eq(f->nodes[0]->loc.col, 5);
    ck_assert_int_eq(f->nodes[7]->loc.line, 9);
    ck_assert_int_eq(f->nodes[7]->loc.col, 9);
    ck_assert_int_eq(f->nodes[9]->loc.col, 5);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_train_settings) {
    /* A loss alone: training is on, with Keras' defaults. */
    kiln_module *m = parse_ok("input x : f32[?, 4]\nlabel t : f32[?, 2]\n"
                              "p = dense(x, 2)\noutput p\nloss mse(p, t)\n");
    ck_assert(m->train.present);
    ck_assert_int_eq(m->train.opt.kind, IR_OPT_ADAM);
    ck_assert(m->train.opt.lr == 0.001 && m->train.opt.epsilon == 1e-7);
    ck_assert_int_eq(m->train.epochs, 1);
    ck_assert_int_eq(m->train.batch_size, 32);
    ck_assert(!m->train.metric_accuracy);
    kiln_func *l = kiln_module_func(m, "loss");
    ck_assert_int_eq(l->n_results, 1);
    ck_assert_int_eq(l->results[0]->op, IR_OP_mean_squared_error);
    kiln_module_dispose(m);

    m = parse_ok("model net\ninput x : f32[?, 4]\nlabel t : f32[?, 2]\n"
                 "p = dense(x, 2)\noutput p\nloss mean_squared_error(prediction=p, label=t)\n"
                 "train {\n  optimizer = adamw(learning_rate=0.01, weight_decay=0.1, "
                 "beta_2=0.99, epsilon=1e-6)\n  seed = 9007199254740993\n  metrics = []\n}\n");
    ck_assert_str_eq(kiln_module_name(m), "net");
    const ir_optimizer *o = &m->train.opt;
    ck_assert_int_eq(o->kind, IR_OPT_ADAMW);
    ck_assert(o->lr == 0.01 && o->weight_decay == 0.1 && o->beta_1 == 0.9);
    ck_assert(o->beta_2 == 0.99 && o->epsilon == 1e-6);
    ck_assert(m->train.seed == 9007199254740993LL);
    ck_assert(!m->train.metric_accuracy);
    kiln_module_dispose(m);

    m = parse_ok("input x : f32[?, 4]\nlabel t : f32[?, 1]\np = dense(x, 1, "
                 "activation=sigmoid)\noutput p\nloss binary_crossentropy(p, t)\n"
                 "train { optimizer = sgd(0.1, 0.9, nesterov=true) epochs = 3 "
                 "batch_size = 7 metrics = [acc] }\n");
    o = &m->train.opt;
    ck_assert_int_eq(o->kind, IR_OPT_SGD);
    ck_assert(o->lr == 0.1 && o->momentum == 0.9 && o->nesterov);
    ck_assert_int_eq(m->train.epochs, 3);
    ck_assert_int_eq(m->train.batch_size, 7);
    ck_assert(m->train.metric_accuracy);
    /* Binary accuracy: both sides thresholded at 0.5. */
    ck_assert_str_eq(ops_of(kiln_module_func(m, "loss")),
                     "matmul add sigmoid binary_crossentropy constant greater greater equal "
                     "cast reduce_mean");
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_sparse_labels) {
    kiln_module *m = parse_ok("input x : f32[?, 4]\nlabel y : i32[?]\n"
                              "p = dense(x, 3, activation=softmax)\noutput p\n"
                              "loss sparse_categorical_crossentropy(p, y)\n"
                              "train { metrics = [accuracy] optimizer = adam }\n");
    kiln_func *l = kiln_module_func(m, "loss");
    ck_assert_str_eq(type_str(&l->args[1]->type), "i32[?]");
    /* Class indices: argmax(p) against y itself. */
    ck_assert_str_eq(ops_of(l), "matmul add softmax sparse_categorical_crossentropy argmax equal "
                                "cast reduce_mean");
    ck_assert_ptr_eq(l->nodes[5]->in[1], l->args[1]);
    kiln_module_dispose(m);
}
END_TEST

/* ------------------------------------------------------------ interpreter */

START_TEST(test_interp_numbers) {
    kiln_module *m = parse_ok("input x : f32[?, 2]\nlabel t : f32[?, 1]\n"
                              "h = dense(x, 2, activation=relu)\np = dense(h, 1)\n"
                              "output p\nloss mse(p, t)\n");
    /* Globals in order: h.kernel [2,2], h.bias [2], p.kernel [2,1], p.bias [1]. */
    float hk[] = {1, -1, 2, 0.5f}, hb[] = {0.5f, -1}, pk[] = {1, 2}, pb[] = {0.25f};
    void *globals[] = {hk, hb, pk, pb};
    ck_assert_str_eq(m->globals[1]->name, "h.bias");
    float x[] = {1, 2, -1, 1}, t[] = {6, 2}, p[2], loss;
    void *args[] = {x, t}, *res[] = {p};
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(ir_interp_run(kiln_module_func(m, "infer"), 2, args, res, globals, d), 0);
    /* relu([1,2]·K + b) = relu([5.5, -1]) -> 5.5 + 0.25; relu([1.5, 0.5]) -> 1.5 + 1 + 0.25 */
    ck_assert_float_eq(p[0], 5.75f); /* exact in f32 */
    ck_assert_float_eq(p[1], 2.75f);
    void *lres[] = {&loss};
    ck_assert_int_eq(ir_interp_run(kiln_module_func(m, "loss"), 2, args, lres, globals, d), 0);
    ck_assert_float_eq(loss, 0.3125f); /* (0.25^2 + 0.75^2) / 2, exact in f32 */
    kiln_module_dispose(m);

    m = parse_ok("input x : f32[?, 2]\nlabel y : f32[?, 2]\n"
                 "p = dense(x, 2, activation=softmax, use_bias=false)\noutput p\n"
                 "loss categorical_crossentropy(p, y)\ntrain { metrics = [accuracy] }\n");
    float eye[] = {1, 0, 0, 1}, x3[] = {2, 0, 0, 1, 3, 1}, y3[] = {1, 0, 1, 0, 0, 1};
    float out[2];
    void *g2[] = {eye}, *a2[] = {x3, y3}, *r2[] = {&out[0], &out[1]};
    ck_assert_int_eq(ir_interp_run(kiln_module_func(m, "loss"), 3, a2, r2, g2, d), 0);
    double want =
        -(log(exp(2.0) / (exp(2.0) + 1)) + log(1 / (1 + exp(1.0))) + log(1 / (exp(2.0) + 1))) / 3;
    ck_assert_msg(tu_close(out[0], want, 0, 1e-6), "loss %.9g, by hand %.9g", out[0], want);
    /* one hit in three */
    ck_assert_msg(tu_close(out[1], 1.0 / 3, 0, 1e-6), "accuracy %.9g", out[1]);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
}
END_TEST

/* ----------------------------------------------------------------- errors */

#define M2 "input x : f32[?, 4]\nlabel y : f32[?, 3]\n"

static const struct {
    const char *src;
    kiln_status st;
    const char *msg;
} g_errors[] = {
    /* 0: misspelled activation */
    {M2 "h = dense(x, 8, activation=rellu)\noutput h\n", KILN_ERR_INVALID,
     "t.kiln:3:28: error: unknown activation 'rellu'; did you mean 'relu'?\n"
     "    h = dense(x, 8, activation=rellu)\n"
     "                               ^\n"},
    {M2 "h = dens(x, 8)\noutput h\n", KILN_ERR_INVALID,
     "t.kiln:3:5: error: unknown layer 'dens'; did you mean 'dense'?\n"
     "    h = dens(x, 8)\n"
     "        ^\n"},
    {M2 "h = dense(xx, 8)\noutput h\n", KILN_ERR_INVALID,
     "t.kiln:3:11: error: unknown name 'xx'; did you mean 'x'?\n"
     "    h = dense(xx, 8)\n"
     "              ^\n"},
    /* 3: an unclosed bracket names the line where it opened */
    {M2 "h = dense(x, 8\nh2 = dense(h, 3)\noutput h2\n", KILN_ERR_PARSE,
     "t.kiln:4:1: error: expected ')' to close '(' at line 3, found 'h2'\n"
     "    h2 = dense(h, 3)\n"
     "    ^\n"},
    {M2 "h = dense(x, 8 activation=relu)\noutput h\n", KILN_ERR_PARSE,
     "t.kiln:3:16: error: expected ',' or ')', found 'activation'\n"
     "    h = dense(x, 8 activation=relu)\n"
     "                   ^\n"},
    /* 5: a shape error of the builder, at the layer's line */
    {"input x : f32[?, 28, 28]\nh = dense(x, 8)\noutput h\n", KILN_ERR_SHAPE,
     "t.kiln:2:5: error: matmul: operands must be matrices: f32[?,28,28] and f32[28,8]\n"
     "    h = dense(x, 8)\n"
     "        ^\n"},
    {M2 "h = dense(x, 8)\nh = dense(h, 3)\noutput h\n", KILN_ERR_INVALID,
     "t.kiln:4:1: error: 'h' is already defined at line 3\n"
     "    h = dense(h, 3)\n"
     "    ^\n"},
    {M2 "h = dense(x, 8)\n", KILN_ERR_INVALID,
     "t.kiln:4:1: error: the model has no output: add 'output NAME'\n"},
    /* 8: the label does not match the output */
    {M2 "p = dense(x, 5, activation=softmax)\noutput p\nloss categorical_crossentropy(p, y)\n",
     KILN_ERR_SHAPE,
     "t.kiln:5:6: error: categorical_crossentropy: prediction and target shapes differ: "
     "f32[?,5] and f32[?,3]\n"
     "    loss categorical_crossentropy(p, y)\n"
     "         ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss categorical_crossentropi(p, y)\n", KILN_ERR_INVALID,
     "t.kiln:5:6: error: unknown loss 'categorical_crossentropi'; did you mean "
     "'categorical_crossentropy'?\n"
     "    loss categorical_crossentropi(p, y)\n"
     "         ^\n"},
    /* 10 */
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain { optimizer = adamm(lr=0.01) }\n",
     KILN_ERR_INVALID,
     "t.kiln:6:21: error: unknown optimizer 'adamm'; did you mean 'adam'?\n"
     "    train { optimizer = adamm(lr=0.01) }\n"
     "                        ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain { epoch = 3 }\n", KILN_ERR_INVALID,
     "t.kiln:6:9: error: unknown train setting 'epoch'; did you mean 'epochs'?\n"
     "    train { epoch = 3 }\n"
     "            ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain { optimizer = adam(betta_1=0.8) }\n",
     KILN_ERR_INVALID,
     "t.kiln:6:26: error: unknown argument 'betta_1' for adam; did you mean 'beta_1'?\n"
     "    train { optimizer = adam(betta_1=0.8) }\n"
     "                             ^\n"},
    {M2 "p = dense(x, 3, activaton=relu)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:17: error: unknown argument 'activaton' for dense; did you mean 'activation'?\n"
     "    p = dense(x, 3, activaton=relu)\n"
     "                    ^\n"},
    {"input x : f32[?, 1099511627776]\noutput x\n", KILN_ERR_LIMIT,
     "t.kiln:1:18: error: dimension 1099511627776 is too large (the limit is 2147483647)\n"
     "    input x : f32[?, 1099511627776]\n"
     "                     ^\n"},
    /* 15 */
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain {\n  epochs = 3\n", KILN_ERR_PARSE,
     "t.kiln:8:1: error: expected '}' to close '{' at line 6, found end of file\n"},
    {M2 "output = dense(x, 3)\n", KILN_ERR_PARSE,
     "t.kiln:3:1: error: 'output' is a keyword and cannot be assigned\n"
     "    output = dense(x, 3)\n"
     "    ^\n"},
    {"inptu x : f32[?, 3]\n", KILN_ERR_PARSE,
     "t.kiln:1:1: error: unknown statement 'inptu'; did you mean 'input'?\n"
     "    inptu x : f32[?, 3]\n"
     "    ^\n"},
    {M2 "dense(x, 3)\n", KILN_ERR_PARSE,
     "t.kiln:3:1: error: a call must be assigned to a name: NAME = dense(...)\n"
     "    dense(x, 3)\n"
     "    ^\n"},
    {M2 "p = dense(y, 3)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:11: error: 'y' is a label: labels feed only the loss\n"
     "    p = dense(y, 3)\n"
     "              ^\n"},
    /* 20 */
    {M2 "p = dense(x, 3)\noutput p\nloss mse(y, p)\n", KILN_ERR_INVALID,
     "t.kiln:5:10: error: 'y' is a label: a loss takes the prediction first, then the label\n"
     "    loss mse(y, p)\n"
     "             ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss sparse_categorical_crossentropy(p, y)\n", KILN_ERR_SHAPE,
     "t.kiln:5:41: error: sparse_categorical_crossentropy needs i32 class indices, but label "
     "'y' is f32[?,3]; use categorical_crossentropy for one-hot labels\n"
     "    loss sparse_categorical_crossentropy(p, y)\n"
     "                                            ^\n"},
    {"input x : f32[?, 4]\nlabel y : i32[?]\np = dense(x, 3)\noutput p\n"
     "loss categorical_crossentropy(p, y)\n",
     KILN_ERR_SHAPE,
     "t.kiln:5:34: error: categorical_crossentropy needs f32 labels, but label 'y' is i32[?]; "
     "use sparse_categorical_crossentropy for class indices\n"
     "    loss categorical_crossentropy(p, y)\n"
     "                                     ^\n"},
    {M2 "h = dense(h2, 3)\nh2 = dense(x, 3)\noutput h\n", KILN_ERR_INVALID,
     "t.kiln:3:11: error: 'h2' is used before it is defined (at line 4)\n"
     "    h = dense(h2, 3)\n"
     "              ^\n"},
    {M2 "p = dense(x, 3)\noutput p\ntrain { epochs = 2 }\n", KILN_ERR_INVALID,
     "t.kiln:5:1: error: a train block needs a loss to minimize: add 'loss NAME(prediction, "
     "label)'\n"
     "    train { epochs = 2 }\n"
     "    ^\n"},
    /* 25 */
    {M2 "p = dense(x, 3) $\noutput p\n", KILN_ERR_PARSE,
     "t.kiln:3:17: error: unexpected character '$'\n"
     "    p = dense(x, 3) $\n"
     "                    ^\n"},
    {M2 "p = dense(x, 3a)\noutput p\n", KILN_ERR_PARSE,
     "t.kiln:3:14: error: malformed number '3a'\n"
     "    p = dense(x, 3a)\n"
     "                 ^\n"},
    {"input x : f64[?, 3]\noutput x\n", KILN_ERR_PARSE,
     "t.kiln:1:11: error: unknown dtype 'f64' (the dtypes are f32 and i32)\n"
     "    input x : f64[?, 3]\n"
     "              ^\n"},
    {"input x : f32[3, ?]\noutput x\n", KILN_ERR_PARSE,
     "t.kiln:1:18: error: the batch dimension '?' must come first\n"
     "    input x : f32[3, ?]\n"
     "                     ^\n"},
    {M2 "p = dense(x, 0)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:14: error: 'units' must be between 1 and 2147483647, got 0\n"
     "    p = dense(x, 0)\n"
     "                 ^\n"},
    /* 30 */
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain { epochs = 2.5 }\n", KILN_ERR_INVALID,
     "t.kiln:6:18: error: 'epochs' must be an integer, got 2.5\n"
     "    train { epochs = 2.5 }\n"
     "                     ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain { optimizer = sgd(lr=-1) }\n",
     KILN_ERR_INVALID,
     "t.kiln:6:28: error: 'lr' must be positive, got -1\n"
     "    train { optimizer = sgd(lr=-1) }\n"
     "                               ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain { metrics = [acuracy] }\n",
     KILN_ERR_INVALID,
     "t.kiln:6:20: error: unknown metric 'acuracy'; did you mean 'accuracy'?\n"
     "    train { metrics = [acuracy] }\n"
     "                       ^\n"},
    {M2 "p = dense(x, 3, kernel_initializer=glorot_unifrom)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:36: error: unknown initializer 'glorot_unifrom'; did you mean 'glorot_uniform'?\n"
     "    p = dense(x, 3, kernel_initializer=glorot_unifrom)\n"
     "                                       ^\n"},
    {M2 "a = dense(x, 3)\nb = dense(x, 5)\ns = add(a, b)\noutput s\n", KILN_ERR_SHAPE,
     "t.kiln:5:5: error: add: cannot broadcast: f32[?,3] and f32[?,5]\n"
     "    s = add(a, b)\n"
     "        ^\n"},
    /* 35 */
    {"model a\nmodel b\n" M2 "output x\n", KILN_ERR_INVALID,
     "t.kiln:2:1: error: the model is already named at line 1\n"
     "    model b\n"
     "    ^\n"},
    {M2 "p = mse(x, y)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:5: error: 'mse' is a loss, not a layer: write 'loss mse(prediction, label)'\n"
     "    p = mse(x, y)\n"
     "        ^\n"},
    {M2 "p = dense(x)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:5: error: missing argument 'units' for dense\n"
     "    p = dense(x)\n"
     "        ^\n"},
    {M2 "p = dense(x, 3, units=4)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:17: error: argument 'units' is given twice\n"
     "    p = dense(x, 3, units=4)\n"
     "                    ^\n"},
    {M2 "p = dense(x, units=3, relu)\noutput p\n", KILN_ERR_PARSE,
     "t.kiln:3:23: error: positional argument after a keyword argument\n"
     "    p = dense(x, units=3, relu)\n"
     "                          ^\n"},
    /* 40 */
    {M2 "output x\noutput relu(x)\n", KILN_ERR_INVALID,
     "t.kiln:4:1: error: the model already has an output at line 3; list several as "
     "'output a, b'\n"
     "    output relu(x)\n"
     "    ^\n"},
    {M2 "p = flatten(x, 3)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:16: error: flatten takes at most 1 argument, got 2\n"
     "    p = flatten(x, 3)\n"
     "                   ^\n"},
    {M2 "p = dense(x, 99999999999999999999)\noutput p\n", KILN_ERR_LIMIT,
     "t.kiln:3:14: error: number '99999999999999999999' is too large\n"
     "    p = dense(x, 99999999999999999999)\n"
     "                 ^\n"},
    {M2 "p = dense(x, 3, use_bias=yes)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:26: error: 'use_bias' must be true or false, got 'yes'\n"
     "    p = dense(x, 3, use_bias=yes)\n"
     "                             ^\n"},
    {M2 "p = dense(x, 3)\noutput p, p2\n", KILN_ERR_INVALID,
     "t.kiln:4:11: error: unknown name 'p2'; did you mean 'p'?\n"
     "    output p, p2\n"
     "              ^\n"},
    /* 45: a tab counts as one column and prints as a space */
    {M2 "p = dense(x, 3)\n\toutput 5\n", KILN_ERR_INVALID,
     "t.kiln:4:9: error: expected a tensor (a name or a layer call), found 5\n"
     "     output 5\n"
     "            ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, x)\n", KILN_ERR_INVALID,
     "t.kiln:5:13: error: 'x' is not a label: a loss takes (prediction, label)\n"
     "    loss mse(p, x)\n"
     "                ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\nloss mse(p, y)\n", KILN_ERR_INVALID,
     "t.kiln:6:1: error: the model already has a loss at line 5\n"
     "    loss mse(p, y)\n"
     "    ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain { epochs = 2 epochs = 3 }\n",
     KILN_ERR_INVALID,
     "t.kiln:6:20: error: 'epochs' is already set at line 6\n"
     "    train { epochs = 2 epochs = 3 }\n"
     "                       ^\n"},
    {M2 "p = dense(x, 3, activation='relu')\noutput p\n", KILN_ERR_PARSE,
     "t.kiln:3:28: error: unexpected quote: names are written without quotes (activation=relu)\n"
     "    p = dense(x, 3, activation='relu')\n"
     "                               ^\n"},
    /* 50: a byte-order mark is skipped and columns count after it */
    {"\xef\xbb\xbfinput x : f32[?, 4]\noutput y\n", KILN_ERR_INVALID,
     "t.kiln:2:8: error: unknown name 'y'; did you mean 'x'?\n"
     "    output y\n"
     "           ^\n"},
    {"\xef\xbb\xbfinput x : f32[?, 4] @\n", KILN_ERR_PARSE,
     "t.kiln:1:21: error: unexpected character '@'\n"
     "    input x : f32[?, 4] @\n"
     "                        ^\n"},
    {M2 "p = dense(x, 3)\noutput p\nloss mse(p, y)\ntrain {\n  optimizer = adam(lr=0.1\n}\n",
     KILN_ERR_PARSE,
     "t.kiln:8:1: error: expected ')' to close '(' at line 7, found '}'\n"
     "    }\n"
     "    ^\n"},
    {M2 "p = dense(x, 3, activation=leaky_relu(alpha=-1))\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:45: error: 'alpha' must be at least 0, got -1\n"
     "    p = dense(x, 3, activation=leaky_relu(alpha=-1))\n"
     "                                                ^\n"},
    {"input x : f32[?, 4]\nx2 = dense(x, 2)\np = softmax(x2, axis=2)\noutput p\n", KILN_ERR_SHAPE,
     "t.kiln:3:5: error: softmax: axis 2 is out of range for rank 2\n"
     "    p = softmax(x2, axis=2)\n"
     "        ^\n"},
    /* 55 */
    {"input x : f32[?, 4]\nlabel x : f32[?, 3]\noutput x\n", KILN_ERR_INVALID,
     "t.kiln:2:7: error: 'x' is already defined at line 1\n"
     "    label x : f32[?, 3]\n"
     "          ^\n"},
    /* strings: the onnx layer's file and names */
    {M2 "p = onnx(x, \"a\\qb.onnx\")\noutput p\n", KILN_ERR_PARSE,
     "t.kiln:3:15: error: unknown escape in a string (only \\\" and \\\\ are escapes)\n"
     "    p = onnx(x, \"a\\qb.onnx\")\n"
     "                  ^\n"},
    {M2 "p = onnx(x, \"b.onnx)\noutput p\n", KILN_ERR_PARSE,
     "t.kiln:3:13: error: unterminated string: a string ends with '\"' on its line\n"
     "    p = onnx(x, \"b.onnx)\n"
     "                ^\n"},
    {M2 "p = onnx(x, \"no such \\\"dir\\\\/m.onnx\")\noutput p\n", KILN_ERR_IO,
     "t.kiln:3:13: error: cannot read ONNX file 'no such \"dir\\/m.onnx': No such file or "
     "directory\n"
     "    p = onnx(x, \"no such \\\"dir\\\\/m.onnx\")\n"
     "                ^\n"},
    {M2 "p = onnx(x, b)\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:13: error: 'file' must be a string such as \"model.onnx\", got 'b'\n"
     "    p = onnx(x, b)\n"
     "                ^\n"},
    /* 60 */
    {M2 "p = dense(x, \"3\")\noutput p\n", KILN_ERR_INVALID,
     "t.kiln:3:14: error: 'units' must be an integer, got \"3\"\n"
     "    p = dense(x, \"3\")\n"
     "                 ^\n"},
};

START_TEST(test_error_messages) {
    const char *src = g_errors[_i].src;
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = (kiln_module *)&d; /* must come back NULL */
    kiln_status st = kiln_model_file_parse(src, strlen(src), "t.kiln", &m, d);
    ck_assert_msg(st == g_errors[_i].st, "case %d: status %d, want %d:\n%s", _i, st,
                  g_errors[_i].st, kiln_diag_message(d));
    ck_assert_ptr_null(m);
    ck_assert_str_eq(kiln_diag_message(d), g_errors[_i].msg);
    ck_assert_int_eq(kiln_diag_error_count(d), 1);
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(test_diag_reuse) {
    /* A diag that already holds an error: the status is this parse's own. */
    kiln_diag *d = kiln_diag_create();
    ir_error(d, KILN_ERR_IO, ir_loc_none(), "earlier");
    kiln_module *m = NULL;
    const char *src = "input x : f32[?, 2]\noutput relu(x, 1)\n";
    ck_assert_int_eq(kiln_model_file_parse(src, strlen(src), NULL, &m, d), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d), "kiln: error: earlier\n"
                                           "<input>:2:16: error: relu takes at most 1 argument, "
                                           "got 2\n"
                                           "    output relu(x, 1)\n"
                                           "                   ^\n");
    ck_assert_int_eq(kiln_diag_error_count(d), 2);
    ck_assert_int_eq(kiln_model_file_parse(src, 10, NULL, &m, NULL), KILN_ERR_PARSE);
    ck_assert_int_eq(kiln_model_file_parse(NULL, 0, NULL, &m, NULL), KILN_ERR_INVALID);
    ck_assert_int_eq(kiln_model_file_parse(src, strlen(src), NULL, NULL, NULL), KILN_ERR_INVALID);
    kiln_diag_dispose(d);
}
END_TEST

/* ----------------------------------------------------------------- limits */

static void check_limit(const char *src, size_t len, const char *first_line) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_model_file_parse(src, len, "big.kiln", &m, d), KILN_ERR_LIMIT);
    ck_assert_ptr_null(m);
    const char *msg = kiln_diag_message(d);
    ck_assert_msg(strncmp(msg, first_line, strlen(first_line)) == 0, "got: %.300s", msg);
    ck_assert_int_eq(msg[strlen(first_line)], '\n');
    kiln_diag_dispose(d);
}

START_TEST(test_limits) {
    ir_sb sb;
    ir_sb_init(&sb);
    ir_sb_puts(&sb, "input x : f32[?, 4]\np = ");
    for (int i = 0; i < 300; i++) ir_sb_puts(&sb, "relu(");
    ir_sb_puts(&sb, "x");
    for (int i = 0; i < 300; i++) ir_sb_putc(&sb, ')');
    ir_sb_puts(&sb, "\noutput p\n");
    check_limit(sb.buf, sb.len,
                "big.kiln:2:1285: error: expression nested too deeply (more than 256 levels)");
    ir_sb_free(&sb);

    ir_sb_puts(&sb, "input x : f32[?, 4]\ntrain { metrics = ");
    for (int i = 0; i < 100000; i++) ir_sb_putc(&sb, '[');
    check_limit(sb.buf, sb.len,
                "big.kiln:2:275: error: expression nested too deeply (more than 256 levels)");
    ir_sb_free(&sb);

    /* A million layers: refused at call 100001, before any IR exists. */
    ir_sb_puts(&sb, "input x : f32[?, 4]\noutput x");
    for (int i = 0; i < 1000000; i++) ir_sb_puts(&sb, ", relu(x)");
    ck_assert(!sb.oom);
    check_limit(sb.buf, sb.len,
                "big.kiln:2:900011: error: too many layers: a model file may hold at most "
                "100000 calls");
    ir_sb_free(&sb);

    check_limit("input x : f32[?, 65536, 65536]\n", 31,
                "big.kiln:1:11: error: a sample of this type has more than 2^31 elements");
    const char *huge = "input x : f32[?, 1073741824, 1073741824, 1073741824, 1073741824]\n";
    check_limit(huge, strlen(huge),
                "big.kiln:1:11: error: a sample of this type has more than 2^31 elements");
    check_limit("input x : f32[?, 1, 1, 1, 1, 1, 1]\n", 35,
                "big.kiln:1:33: error: a shape has at most 6 dimensions");
    const char *wide = "input x : f32[?, 65536]\noutput dense(x, 65536)\n";
    check_limit(wide, strlen(wide),
                "big.kiln:2:8: error: dense: the kernel [65536, 65536] would have more than "
                "2^31 elements");

    for (int i = 0; i <= FE_MAX_INPUTS; i++) ir_sb_printf(&sb, "input x%d : f32[?, 1]\n", i);
    check_limit(sb.buf, sb.len,
                "big.kiln:1025:1: error: too many inputs and labels (the limit "
                "is 1024)");
    ir_sb_free(&sb);

    size_t big = FE_MAX_FILE_BYTES + 1;
    char *text = malloc(big);
    memset(text, ' ', big);
    check_limit(text, big, "kiln: error: big.kiln: a model file may hold at most 16 MiB");
    free(text);
}
END_TEST

/* Every prefix of the model and thousands of one-byte mutations: each
 * parses or fails with a positioned message; none crashes. */
START_TEST(test_mutations) {
    size_t len;
    char *text = read_text(tu_src_path("examples/mnist_mlp.kiln"), &len);
    char *buf = malloc(len + 1);
    kiln_diag *d = kiln_diag_create();
    static const char bytes[] = "()[]{},=:?-#.\n 0123456789eE_az\t\x01\xff";
    ir_rng r = ir_rng_seed(7, 0);
    for (size_t i = 0; i < len + 3000; i++) {
        size_t n = len;
        memcpy(buf, text, len);
        if (i <= len) {
            n = i; /* a prefix */
        } else {
            size_t at = (size_t)(ir_rng_uniform(&r) * (double)len);
            buf[at] = bytes[(size_t)(ir_rng_uniform(&r) * (sizeof bytes - 1))];
        }
        kiln_module *m = NULL;
        kiln_diag_clear(d);
        kiln_status st = kiln_model_file_parse(buf, n, "mut.kiln", &m, d);
        if (st == KILN_OK) {
            ck_assert_ptr_nonnull(m);
            kiln_module_dispose(m);
        } else {
            ck_assert_ptr_null(m);
            ck_assert_msg(strncmp(kiln_diag_message(d), "mut.kiln:", 9) == 0, "%s",
                          kiln_diag_message(d));
        }
    }
    kiln_diag_dispose(d);
    free(buf);
    ir_free(text);
}
END_TEST

/* ------------------------------------------------------ allocation failure */

/* Parses `src` with allocation N failing, for N = 1, 2, ... until a run
 * sees no failure: each run ends in `want` or a clean out-of-memory error
 * (leaks show under valgrind and the sanitizer build). */
static void alloc_failures(const char *src, size_t len, kiln_status want) {
    kiln_diag *d = kiln_diag_create();
    long n;
    for (n = 1;; n++) {
        kiln_module *m = NULL;
        kiln_diag_clear(d);
        kiln_test_alloc_fail_at(n);
        kiln_status st = kiln_model_file_parse(src, len, "oom.kiln", &m, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, want);
            kiln_module_dispose(m);
            break;
        }
        if (st == KILN_ERR_NOMEM) {
            ck_assert_ptr_null(m);
            const char *msg = kiln_diag_message(d);
            ck_assert_msg(strcmp(msg, "kiln: error: out of memory\n") == 0,
                          "allocation %ld: \"%s\"", n, msg);
        } else {
            ck_assert_msg(st == want, "allocation %ld: status %d:\n%s", n, st,
                          kiln_diag_message(d));
            if (want == KILN_OK) kiln_module_dispose(m);
        }
    }
    ck_assert_int_gt(n, 10);
    kiln_diag_dispose(d);
}

START_TEST(test_alloc_failures) {
    size_t len;
    char *text = read_text(tu_src_path("examples/mnist_mlp.kiln"), &len);
    alloc_failures(text, len, KILN_OK);
    ir_free(text);
    /* A deeper model: the arenas and arrays grow across chunk boundaries. */
    ir_sb sb;
    ir_sb_init(&sb);
    ir_sb_puts(&sb, M2 "h0 = x\n");
    for (int i = 1; i <= 200; i++) ir_sb_printf(&sb, "h%d = dense(h%d, 3)\n", i, i - 1);
    ir_sb_puts(&sb, "output h200\nloss mse(h200, y)\ntrain { metrics = [accuracy] }\n");
    alloc_failures(sb.buf, sb.len, KILN_OK);
    ir_sb_free(&sb);
    /* Error paths too: a late shape error, after most of the module exists. */
    const char *bad = M2 "a = dense(x, 5)\nb = relu(dense(a, 4))\noutput b\n"
                         "loss categorical_crossentropy(b, y)\n";
    alloc_failures(bad, strlen(bad), KILN_ERR_SHAPE);
}
END_TEST

int main(void) {
    Suite *s = suite_create("frontend");
    TCase *tc = tcase_create("frontend");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_tokens);
    tcase_add_test(tc, test_mnist_example);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_inline_names);
    tcase_add_test(tc, test_layers);
    tcase_add_test(tc, test_train_settings);
    tcase_add_test(tc, test_sparse_labels);
    tcase_add_test(tc, test_interp_numbers);
    tcase_add_loop_test(tc, test_error_messages, 0, (int)KILN_ARRAY_LEN(g_errors));
    tcase_add_test(tc, test_diag_reuse);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_mutations);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}

/*
 * test_arrays.c — datasets from the caller's arrays (kiln_dataset_from_arrays)
 * and how labels meet the model's label (GRAMMAR.md, "Labels"): a
 * regression trains on f32 targets, a binary classifier on 0/1 int labels,
 * shapes and values that do not fit are refused with one clear line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data.h"
#include "testutil.h"

static kiln_model *make_model(const char *src) {
    kiln_diag *d = kiln_diag_create();
    kiln_model *mo = NULL;
    kiln_module *m = NULL;
    kiln_status st = kiln_model_file_parse(src, strlen(src), "t.kiln", &m, d);
    if (!st) st = kiln_model_create(m, NULL, &mo, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return mo;
}

static const char *regression_src =
    "model reg\n"
    "input x : f32[?, 2]\n"
    "label y : f32[?, 1]\n"
    "p = dense(x, 1)\n"
    "output p\n"
    "loss mse(p, y)\n"
    "train {\n optimizer = adam(lr=0.05)\n epochs = 40\n batch_size = 16\n}\n";

/* y = 2 x0 - x1 + 0.5, copied arrays freed before training. */
START_TEST(regression_from_copied_arrays) {
    enum { N = 512 };
    float *x = malloc(sizeof(float) * N * 2), *y = malloc(sizeof(float) * N);
    tu_fill_uniform(x, N * 2, 7, -1, 1);
    for (int i = 0; i < N; i++) y[i] = 2 * x[2 * i] - x[2 * i + 1] + 0.5f;
    kiln_array xa = {x, KILN_ARRAY_F32, 1, {2}}, ya = {y, KILN_ARRAY_F32, 1, {1}};
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = NULL;
    ck_assert_int_eq(kiln_dataset_from_arrays(&xa, &ya, N, KILN_ARRAYS_COPY, &ds, d), KILN_OK);
    free(x);
    free(y); /* copied: the dataset no longer needs them */
    kiln_model *mo = make_model(regression_src);
    kiln_fit_opts fo = {0};
    fo.shuffle_seed = 3;
    ck_assert_msg(kiln_model_fit(mo, ds, &fo, d) == KILN_OK, "%s", kiln_diag_message(d));
    double loss, acc;
    ck_assert_int_eq(kiln_model_evaluate(mo, ds, 0, 0, &loss, &acc, d), KILN_OK);
    ck_assert_msg(loss < 1e-3, "mse %g", loss);
    float w[2], b;
    ck_assert_int_eq(kiln_model_get_weights(mo, "p.kernel", w, 2, d), KILN_OK);
    ck_assert_int_eq(kiln_model_get_weights(mo, "p.bias", &b, 1, d), KILN_OK);
    ck_assert_msg(fabsf(w[0] - 2) < 0.05f && fabsf(w[1] + 1) < 0.05f && fabsf(b - 0.5f) < 0.05f,
                  "w %g %g b %g", w[0], w[1], b);
    /* predict on a dataset equals predict on the floats */
    float out[N], out2[4];
    ck_assert_int_eq(kiln_model_predict_dataset(mo, ds, out, d), KILN_OK);
    float xs[8];
    ck_assert_int_eq(kiln_dataset_read(ds, 0, 4, xs, d), KILN_OK);
    ck_assert_int_eq(kiln_model_predict(mo, xs, 4, out2, d), KILN_OK);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(out[i], out2[i]);
    kiln_model_dispose(mo);
    kiln_dataset_dispose(ds);
    kiln_diag_dispose(d);
}
END_TEST

/* Keras' binary classifier: sigmoid unit, binary_crossentropy, labels 0/1
 * given as int32 class indices (borrowed). */
START_TEST(binary_classifier_on_int_labels) {
    enum { N = 600 };
    static float x[N * 2];
    static int32_t y[N];
    tu_fill_uniform(x, N * 2, 11, -1, 1);
    for (int i = 0; i < N; i++) y[i] = x[2 * i] + 0.5f * x[2 * i + 1] > 0.1f;
    kiln_model *mo = make_model("input x : f32[?, 2]\nlabel y : f32[?, 1]\n"
                                "h = dense(x, 8, activation=tanh)\n"
                                "p = dense(h, 1, activation=sigmoid)\noutput p\n"
                                "loss binary_crossentropy(p, y)\n"
                                "train {\n optimizer = adam(lr=0.02)\n epochs = 30\n"
                                " batch_size = 32\n metrics = [accuracy]\n}\n");
    kiln_array xa = {x, KILN_ARRAY_F32, 1, {2}}, ya = {y, KILN_ARRAY_I32, 0, {0}};
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = NULL;
    ck_assert_int_eq(kiln_dataset_from_arrays(&xa, &ya, N, KILN_ARRAYS_BORROW, &ds, d), KILN_OK);
    kiln_fit_opts fo = {0};
    ck_assert_msg(kiln_model_fit(mo, ds, &fo, d) == KILN_OK, "%s", kiln_diag_message(d));
    double loss, acc;
    ck_assert_int_eq(kiln_model_evaluate(mo, ds, 0, 0, &loss, &acc, d), KILN_OK);
    ck_assert_msg(acc > 0.95, "accuracy %g loss %g", acc, loss);
    kiln_model_dispose(mo);
    kiln_dataset_dispose(ds);
    kiln_diag_dispose(d);
}
END_TEST

static void expect_error(kiln_status st, kiln_status want, kiln_diag *d, const char *text) {
    ck_assert_int_eq(st, want);
    ck_assert_msg(strstr(kiln_diag_message(d), text), "got: %s", kiln_diag_message(d));
    kiln_diag_clear(d);
}

START_TEST(bad_arrays_are_refused) {
    float x[6] = {0, 1, 2, NAN, 4, 5};
    int32_t y[2] = {0, 5};
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = NULL;
    kiln_array xa = {x, KILN_ARRAY_F32, 1, {3}}, ya = {y, KILN_ARRAY_I32, 0, {0}};
    expect_error(kiln_dataset_from_arrays(&xa, &ya, 2, KILN_ARRAYS_COPY, &ds, d),
                 KILN_ERR_NONFINITE, d, "inputs: value 0 of sample 1 is NaN");
    ck_assert_ptr_null(ds);
    x[3] = 3;
    kiln_array bad = {x, KILN_ARRAY_F32, 1, {-3}};
    expect_error(kiln_dataset_from_arrays(&bad, NULL, 2, KILN_ARRAYS_COPY, &ds, d),
                 KILN_ERR_LIMIT, d, "inputs: dimension 0 (-3)");
    ck_assert_int_eq(kiln_dataset_from_arrays(&xa, &ya, 2, KILN_ARRAYS_COPY, &ds, d), KILN_OK);
    kiln_model *mo = make_model(regression_src);
    /* 3 values per sample for a model of 2 inputs */
    expect_error(kiln_model_check_dataset(mo, ds, 1, d), KILN_ERR_SHAPE, d,
                 "inputs: images are 3 values, the model expects 2");
    kiln_model_dispose(mo);
    kiln_dataset_dispose(ds);
    /* class 5 for a 3-class model, and float targets for class indices */
    kiln_array x2 = {x, KILN_ARRAY_F32, 1, {2}};
    ck_assert_int_eq(kiln_dataset_from_arrays(&x2, &ya, 2, KILN_ARRAYS_BORROW, &ds, d), KILN_OK);
    mo = make_model("input x : f32[?, 2]\nlabel y : i32[?]\np = dense(x, 3, activation=softmax)\n"
                    "output p\nloss sparse_categorical_crossentropy(p, y)\n"
                    "train {\n optimizer = sgd(lr=0.1)\n}\n");
    expect_error(kiln_model_fit(mo, ds, NULL, d), KILN_ERR_INVALID, d,
                 "labels: label 5 of sample 1 is out of range: the model has 3 classes (0..2)");
    kiln_dataset_dispose(ds);
    float t[2] = {0.5f, 1};
    kiln_array ta = {t, KILN_ARRAY_F32, 0, {0}};
    ck_assert_int_eq(kiln_dataset_from_arrays(&x2, &ta, 2, KILN_ARRAYS_BORROW, &ds, d), KILN_OK);
    expect_error(kiln_model_fit(mo, ds, NULL, d), KILN_ERR_INVALID, d,
                 "labels: labels are not class indices");
    kiln_model_dispose(mo);
    /* targets of 1 value for a [?, 1] regression are fine; of 2 values not */
    mo = make_model(regression_src);
    ck_assert_int_eq(kiln_model_check_dataset(mo, ds, 1, d), KILN_OK);
    kiln_dataset_dispose(ds);
    kiln_array t2 = {x, KILN_ARRAY_F32, 1, {2}};
    ck_assert_int_eq(kiln_dataset_from_arrays(&x2, &t2, 2, KILN_ARRAYS_BORROW, &ds, d), KILN_OK);
    expect_error(kiln_model_check_dataset(mo, ds, 1, d), KILN_ERR_SHAPE, d,
                 "labels: labels are 2 values per sample, the model's label has 1");
    kiln_model_dispose(mo);
    kiln_dataset_dispose(ds);
    kiln_diag_dispose(d);
}
END_TEST

/* Keras' binary classifier on Fashion-MNIST, T-shirt/top (class 0) against
 * the rest: labels 0/1 as class indices, a [?, 1] sigmoid output. A model
 * that says "rest" always scores 0.90; this one must learn the class. */
START_TEST(binary_fashion_mnist_class0_vs_rest) {
    kiln_diag *d = kiln_diag_create();
    rt_dataset *split[2] = {NULL, NULL};
    for (int s = 0; s < 2; s++) {
        ck_assert_msg(rt_dataset_load_dir(RT_DEFAULT_DATA_DIR, s ? RT_SPLIT_TEST : RT_SPLIT_TRAIN,
                                          &split[s], d) == KILN_OK,
                      "%s", kiln_diag_message(d));
        for (int64_t i = 0; i < split[s]->n; i++) split[s]->labels[i] = split[s]->labels[i] == 0;
        split[s]->label_max = 1;
    }
    split[0]->n = 20000; /* one epoch of 20000 images is enough */
    kiln_array tx = {split[0]->u8, KILN_ARRAY_U8, 2, {28, 28}};
    kiln_array ty = {split[0]->labels, KILN_ARRAY_I32, 0, {0}};
    kiln_array vx = {split[1]->u8, KILN_ARRAY_U8, 2, {28, 28}};
    kiln_array vy = {split[1]->labels, KILN_ARRAY_I32, 0, {0}};
    kiln_dataset *train = NULL, *test = NULL;
    ck_assert_int_eq(kiln_dataset_from_arrays(&tx, &ty, split[0]->n, KILN_ARRAYS_BORROW, &train, d),
                     KILN_OK);
    ck_assert_int_eq(kiln_dataset_from_arrays(&vx, &vy, split[1]->n, KILN_ARRAYS_BORROW, &test, d),
                     KILN_OK);
    kiln_model *mo = make_model("input x : f32[?, 784]\nlabel y : f32[?, 1]\n"
                                "h = dense(x, 64, activation=relu)\n"
                                "p = dense(h, 1, activation=sigmoid)\noutput p\n"
                                "loss binary_crossentropy(p, y)\n"
                                "train {\n optimizer = adam(lr=0.001)\n epochs = 1\n"
                                " batch_size = 64\n metrics = [accuracy]\n}\n");
    ck_assert_msg(kiln_model_fit(mo, train, NULL, d) == KILN_OK, "%s", kiln_diag_message(d));
    double loss, acc;
    ck_assert_int_eq(kiln_model_evaluate(mo, test, 0, 0, &loss, &acc, d), KILN_OK);
    printf("class 0 vs rest: test accuracy %.4f, loss %.4f\n", acc, loss);
    ck_assert_msg(acc > 0.94 && loss < 0.2, "accuracy %g loss %g", acc, loss);
    kiln_model_dispose(mo);
    kiln_dataset_dispose(train);
    kiln_dataset_dispose(test);
    rt_dataset_free(split[0]);
    rt_dataset_free(split[1]);
    kiln_diag_dispose(d);
}
END_TEST

/* Keras 3's leaky_relu: slope 0.2 by default, keyword negative_slope (and
 * Keras 2's alpha); seen in the outputs of x = 1 through weights of -1. */
START_TEST(keras3_leaky_relu) {
    kiln_model *mo = make_model("input x : f32[?, 1]\n"
                                "a = dense(x, 1, activation=leaky_relu, kernel_initializer=constant(-1),"
                                " bias_initializer=zeros)\n"
                                "b = leaky_relu(a, negative_slope=0.5)\n"
                                "c = leaky_relu(a, alpha=0.25)\n"
                                "d = leaky_relu(a)\n"
                                "o = add(add(b, c), d)\noutput o\n");
    kiln_diag *d = kiln_diag_create();
    float x = 1, y = 0;
    ck_assert_int_eq(kiln_model_predict(mo, &x, 1, &y, d), KILN_OK);
    /* a = -0.2; b = -0.1, c = -0.05, d = -0.04 */
    ck_assert_msg(fabsf(y - (-0.19f)) < 1e-6f, "got %g", y);
    kiln_model_dispose(mo);
    kiln_diag_dispose(d);
}
END_TEST

/* Keras 3's other activations with their defaults (elu alpha 1, gelu
 * exact), as dense's activation= (identity kernel) plus as a layer: the
 * output is 2 act(x) for x in {-2, 0.5}, through the JIT, against
 * keras.activations' formulas in double. */
START_TEST(keras3_activations) {
    static const struct {
        const char *act, *layer;
        double at_m2, at_half; /* act(-2), act(0.5) */
    } cases[] = {
        {"elu", "elu(x)", -0.8646647167633873, 0.5},
        {"elu(alpha=0.5)", "elu(x, alpha=0.5)", -0.43233235838169365, 0.5},
        {"relu6", "relu6(x)", 0, 0.5},
        {"gelu", "gelu(x, approximate=false)", -0.04550026389635842, 0.34573123063700656},
        {"softplus", "softplus(x)", 0.1269280110429725, 0.9740769841801067},
        {"silu", "silu(x)", -0.2384058440442351, 0.3112296656009273},
        {"swish", "swish(x)", -0.2384058440442351, 0.3112296656009273},
        {"hard_sigmoid", "hard_sigmoid(x)", 1.0 / 6.0, 3.5 / 6.0},
    };
    kiln_diag *d = kiln_diag_create();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[512];
        snprintf(src, sizeof src,
                 "input x : f32[?, 1]\n"
                 "a = dense(x, 1, activation=%s, kernel_initializer=constant(1))\n"
                 "b = %s\n"
                 "o = add(a, b)\noutput o\n",
                 cases[i].act, cases[i].layer);
        kiln_model *mo = make_model(src);
        float x[2] = {-2, 0.5f}, y[2];
        ck_assert_int_eq(kiln_model_predict(mo, x, 2, y, d), KILN_OK);
        for (int k = 0; k < 2; k++) {
            double want = 2 * (k ? cases[i].at_half : cases[i].at_m2);
            ck_assert_msg(fabs(y[k] - want) < 2e-6, "%s(%g): got %.9g, want %.9g", cases[i].act,
                          x[k], y[k] / 2, want / 2);
        }
        kiln_model_dispose(mo);
    }
    kiln_diag_dispose(d);
}
END_TEST

/* Keyword mistakes get a suggestion; gelu's tanh form is refused by name. */
START_TEST(keras3_activation_errors) {
    static const struct {
        const char *act, *msg;
    } cases[] = {
        {"leaky_relu(negative_slop=0.1)", "unknown argument 'negative_slop' for leaky_relu; did you mean 'negative_slope'?"},
        {"elu(alph=0.5)", "unknown argument 'alph' for elu; did you mean 'alpha'?"},
        {"gelu(approximate=true)", "gelu: approximate=true (the tanh form) is not supported"},
        {"hard_sigmod", "unknown activation 'hard_sigmod'; did you mean 'hard_sigmoid'?"},
        {"leaky_relu(alpha=-1)", "'alpha' must be at least 0, got -1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[256];
        snprintf(src, sizeof src, "input x : f32[?, 2]\np = dense(x, 2, activation=%s)\noutput p\n",
                 cases[i].act);
        kiln_diag *d = kiln_diag_create();
        kiln_module *m = NULL;
        ck_assert_int_eq(kiln_model_file_parse(src, strlen(src), "t.kiln", &m, d), KILN_ERR_INVALID);
        ck_assert_msg(strstr(kiln_diag_message(d), cases[i].msg), "%s: %s", cases[i].act,
                      kiln_diag_message(d));
        kiln_module_dispose(m);
        kiln_diag_dispose(d);
    }
}
END_TEST

Suite *arrays_suite(void);
Suite *arrays_suite(void) {
    Suite *s = suite_create("arrays");
    TCase *tc = tcase_create("arrays");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, regression_from_copied_arrays);
    tcase_add_test(tc, binary_classifier_on_int_labels);
    tcase_add_test(tc, bad_arrays_are_refused);
    tcase_add_test(tc, keras3_leaky_relu);
    tcase_add_test(tc, keras3_activations);
    tcase_add_test(tc, keras3_activation_errors);
    tcase_add_test(tc, binary_fashion_mnist_class0_vs_rest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(arrays_suite()); }

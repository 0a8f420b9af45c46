/*
 * arrays_fit.c — training from the program's own arrays, Keras' fit(x, y):
 *
 *     x = rng.uniform(-1, 1, (2000, 2)).astype("float32")
 *     y = (x[:, 0] * x[:, 1] > 0).astype("int32")       # XOR of the signs
 *     model = Sequential([Dense(16, activation="tanh"), Dense(2, activation="softmax")])
 *     model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(0.01),
 *                   metrics=["accuracy"])
 *     model.fit(x[:1600], y[:1600], epochs=30, batch_size=32)
 *     model.evaluate(x[1600:], y[1600:])
 *     model.predict(x[1600:1604])
 *
 * The arrays are borrowed (KILN_ARRAYS_BORROW): the datasets read them in
 * place, so they must live until kiln_dataset_dispose(), and stay this
 * program's to free.
 *
 * Run: arrays_fit [--epochs N]. Prints the test accuracy on the last line;
 * exits 1 on any error (or when the accuracy is below 0.9, which a correct
 * build never gives).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/kiln.h>

static const char model_src[] =
    "model xor\n"
    "input x : f32[?, 2]\n"
    "label y : i32[?]\n"
    "h = dense(x, 16, activation=tanh)\n"
    "p = dense(h, 2, activation=softmax)\n"
    "output p\n"
    "loss sparse_categorical_crossentropy(p, y)\n"
    "train {\n"
    "  optimizer = adam(lr=0.01)\n"
    "  epochs = 30\n"
    "  batch_size = 32\n"
    "  metrics = [accuracy]\n"
    "}\n";

enum { N = 2000, N_TRAIN = 1600 };

/* A small portable generator, so every machine makes the same data. */
static double uniform(unsigned long long *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
}

static int fail(kiln_diag *d, const char *what) {
    fprintf(stderr, "arrays_fit: %s: %s", what, kiln_diag_message(d));
    return 1;
}

int main(int argc, char **argv) {
    int epochs = 0;
    if (argc == 3 && strcmp(argv[1], "--epochs") == 0) epochs = atoi(argv[2]);
    static float x[N * 2];
    static int32_t y[N];
    unsigned long long s = 42;
    for (int i = 0; i < N; i++) {
        x[2 * i] = (float)uniform(&s);
        x[2 * i + 1] = (float)uniform(&s);
        y[i] = x[2 * i] * x[2 * i + 1] > 0;
    }

    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_model *model = NULL;
    kiln_dataset *train = NULL, *test = NULL;
    int rc = 1;
    /* inputs: one sample is 2 floats; labels: one int32 class per sample. */
    kiln_array xa = {x, KILN_ARRAY_F32, 1, {2}}, ya = {y, KILN_ARRAY_I32, 0, {0}};
    kiln_array xt = {x + 2 * N_TRAIN, KILN_ARRAY_F32, 1, {2}};
    kiln_array yt = {y + N_TRAIN, KILN_ARRAY_I32, 0, {0}};
    if (kiln_model_file_parse(model_src, sizeof model_src - 1, "xor.kiln", &m, d)) {
        fail(d, "parsing the model");
        goto out;
    }
    if (kiln_model_create(m, NULL, &model, d)) { /* takes the module */
        fail(d, "compiling");
        goto out;
    }
    if (kiln_dataset_from_arrays(&xa, &ya, N_TRAIN, KILN_ARRAYS_BORROW, &train, d) ||
        kiln_dataset_from_arrays(&xt, &yt, N - N_TRAIN, KILN_ARRAYS_BORROW, &test, d)) {
        fail(d, "making the datasets");
        goto out;
    }
    kiln_fit_opts fo = {0};
    fo.epochs = epochs;
    fo.shuffle_seed = 1;
    if (kiln_model_fit(model, train, &fo, d)) {
        fail(d, "training");
        goto out;
    }
    double loss, acc;
    if (kiln_model_evaluate(model, test, 0, 0, &loss, &acc, d)) {
        fail(d, "evaluating");
        goto out;
    }
    float probs[4 * 2];
    if (kiln_model_predict(model, xt.data, 4, probs, d)) {
        fail(d, "predicting");
        goto out;
    }
    for (int i = 0; i < 4; i++)
        printf("x = (%+.2f, %+.2f)  label %d  p(1) = %.3f\n", x[2 * (N_TRAIN + i)],
               x[2 * (N_TRAIN + i) + 1], y[N_TRAIN + i], probs[2 * i + 1]);
    printf("test: loss %.4f - accuracy %.4f\n", loss, acc);
    rc = acc >= 0.9 ? 0 : 1;
out:
    kiln_dataset_dispose(train);
    kiln_dataset_dispose(test);
    kiln_model_dispose(model);
    kiln_diag_dispose(d);
    return rc;
}

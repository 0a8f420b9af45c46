/*
 * fashion_cnn.c — Keras' "simple MNIST convnet", in C, compiled by Kiln,
 * trained on Fashion-MNIST.
 *
 * The program Keras users know:
 *
 *     model = keras.Sequential([
 *         keras.Input(shape=(28, 28, 1)),
 *         layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
 *         layers.MaxPooling2D(pool_size=(2, 2)),
 *         layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
 *         layers.MaxPooling2D(pool_size=(2, 2)),
 *         layers.Flatten(),
 *         layers.Dropout(0.5),
 *         layers.Dense(10, activation="softmax"),
 *     ])
 *     model.summary()
 *     model.compile(loss="categorical_crossentropy", optimizer="adam",
 *                   metrics=["accuracy"])
 *     model.fit(x_train, y_train, batch_size=128, epochs=12)
 *     score = model.evaluate(x_test, y_test)
 *
 * Here each step is one call of Kiln's C API. It is the same model as
 * examples/fashion_cnn.kiln (the layers carry the same names), and the two
 * give the same checkpoint, bit for bit, for the same seed
 * (tests/sh/cnn_c_vs_file.sh). Images are NHWC, Keras' channels_last: the
 * input is f32[?, 28, 28, 1], pixels scaled to [0, 1].
 *
 * Build: cmake builds it as build/bin/fashion_cnn (or, against an
 * installed Kiln: cc fashion_cnn.c $(pkg-config --cflags --libs kiln)).
 *
 * Run:   fashion_cnn [--data DIR] [--epochs N] [--steps N] [--seed N]
 *                    [--threads N] [--save FILE]
 *   --data DIR    the four IDX files of Fashion-MNIST, gzipped or not
 *                 (default /usr/share/datasets/fashion-mnist)
 *   --epochs N    epochs (default: 12, as compiled into the model)
 *   --steps N     stop after N training steps (batches) in all
 *   --seed N      seed of the initial weights, the shuffling and the
 *                 dropout masks (default 1)
 *   --threads N   threads for OpenBLAS and Kiln (default: the library's)
 *   --save FILE   where the checkpoint goes (default fashion_cnn.safetensors)
 *
 * Every Kiln call that can fail returns a kiln_status (KILN_OK is 0) and
 * writes its messages into a kiln_diag; every object Kiln allocates is freed
 * by the function its documentation names, on every path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/kiln.h>

typedef struct options {
    const char *data;
    int epochs;       /* 0: the model's own (12) */
    long long steps;  /* 0: no limit */
    long long seed;   /* 0: Kiln's default (1) */
    long long threads; /* 0: the library's default */
    const char *save;
} options;

static int usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--data DIR] [--epochs N] [--steps N] [--seed N] [--threads N] "
            "[--save FILE]\n",
            prog);
    return 2;
}

/* A whole number in [lo, hi], or a complaint. */
static int parse_number(const char *opt, const char *s, long long lo, long long hi,
                        long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "fashion_cnn: error: %s expects a number in [%lld, %lld], got '%s'\n",
                opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->data = "/usr/share/datasets/fashion-mnist";
    o->save = "fashion_cnn.safetensors";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return 0;
        const char *v = argv[++i];
        long long n;
        if (strcmp(a, "--data") == 0) {
            o->data = v;
        } else if (strcmp(a, "--save") == 0) {
            o->save = v;
        } else if (strcmp(a, "--epochs") == 0) {
            if (!parse_number(a, v, 0, 1000000, &n)) return 0;
            o->epochs = (int)n;
        } else if (strcmp(a, "--steps") == 0) {
            if (!parse_number(a, v, 0, (long long)1 << 62, &o->steps)) return 0;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_number(a, v, 1, (long long)1 << 62, &o->seed)) return 0;
        } else if (strcmp(a, "--threads") == 0) {
            if (!parse_number(a, v, 1, 256, &o->threads)) return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

static void report(const char *what, kiln_status st, const kiln_diag *d) {
    fprintf(stderr, "fashion_cnn: %s failed (%s)\n%s", what, kiln_status_string(st),
            d ? kiln_diag_message(d) : "");
}

int main(int argc, char **argv) {
    options opt;
    if (!parse_options(argc, argv, &opt)) return usage(argv[0]);

    /* Everything the program allocates, NULL until it exists, so that the
     * one exit path below frees whatever was made. */
    kiln_diag *d = kiln_diag_create();
    kiln_sequential *seq = NULL;
    kiln_module *module = NULL;
    kiln_model *model = NULL;
    kiln_dataset *train = NULL, *test = NULL;
    char *summary = NULL;
    kiln_status st = KILN_OK;
    const char *step = "setup";
    int rc = 1;
    if (!d) goto out_of_memory;

    /* 1. The data: 60,000 training and 10,000 test images. The dataset is
     *    checked against the model's whole input shape [?, 28, 28, 1] when
     *    training starts, not only against its element count. */
    step = "loading the data";
    if ((st = kiln_dataset_load(opt.data, "train", &train, d)) ||
        (st = kiln_dataset_load(opt.data, "test", &test, d)))
        goto fail;

    /* 2. The model: an image input, then the layers, named as in
     *    examples/fashion_cnn.kiln. Each Conv2D has a kernel [3, 3, in,
     *    filters] (Glorot-uniform over fan_in = 3·3·in, fan_out = 3·3·filters)
     *    and a bias (zeros); valid padding, stride 1. */
    step = "building the model";
    seq = kiln_sequential_create_shape("fashion_cnn", 3, (const int64_t[]){28, 28, 1});
    if (!seq) goto out_of_memory;
    if ((st = kiln_sequential_conv2d(seq, "c1", 32, 3, 1, KILN_PADDING_VALID, KILN_ACT_RELU, d)) ||
        (st = kiln_sequential_max_pooling2d(seq, "p1", 2, 0, KILN_PADDING_VALID, d)) ||
        (st = kiln_sequential_conv2d(seq, "c2", 64, 3, 1, KILN_PADDING_VALID, KILN_ACT_RELU, d)) ||
        (st = kiln_sequential_max_pooling2d(seq, "p2", 2, 0, KILN_PADDING_VALID, d)) ||
        (st = kiln_sequential_flatten(seq, "f", d)) ||
        (st = kiln_sequential_dropout(seq, "d", 0.5, d)) ||
        (st = kiln_sequential_dense(seq, "p", 10, KILN_ACT_SOFTMAX, d)))
        goto fail;

    /* 3. Keras' compile: categorical cross-entropy, Adam with Keras'
     *    defaults (lr 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7), the
     *    accuracy metric, batch 128, 12 epochs. */
    step = "compiling the model";
    kiln_train_settings settings = kiln_train_settings_defaults(KILN_LOSS_CATEGORICAL_CROSSENTROPY);
    settings.optimizer = kiln_optimizer_defaults(KILN_OPT_ADAM);
    settings.epochs = 12;
    settings.batch_size = 128;
    settings.accuracy = 1;
    if ((st = kiln_sequential_compile(seq, &settings, &module, d))) goto fail;
    kiln_sequential_dispose(seq); /* it handed its module over */
    seq = NULL;
    if (!(summary = kiln_module_summary(module))) goto out_of_memory;
    fputs(summary, stdout);

    /* 4. Native code (the train pipeline: the activations fused into the
     *    convolutions, backward pass, Adam, memory plan), then the weights
     *    from the seed. kiln_model_create takes the module over. */
    step = "JIT-compiling the model";
    kiln_model_opts mopts = {.backend = KILN_BACKEND_JIT, .threads = (int)opt.threads, .seed = opt.seed};
    st = kiln_model_create(module, &mopts, &model, d);
    module = NULL;
    if (st) goto fail;
    printf("compiled in %.0f ms\n", kiln_model_compile_ms(model));

    /* 5. model.fit: Keras' progress line per epoch; dropout is active here
     *    only. */
    step = "training";
    kiln_fit_opts fit;
    memset(&fit, 0, sizeof fit);
    fit.epochs = opt.epochs;
    fit.max_steps = opt.steps;
    fit.verbose = 1;
    if ((st = kiln_model_fit(model, train, &fit, d))) goto fail;

    /* 6. model.evaluate on the test images (no dropout). */
    step = "evaluating";
    double loss, accuracy;
    if ((st = kiln_model_evaluate(model, test, 128, 0, &loss, &accuracy, d))) goto fail;
    printf("test loss %.4f - test accuracy %.4f\n", loss, accuracy);

    /* 7. A checkpoint: c1.kernel [3, 3, 1, 32] ... in Keras' layouts, Adam's
     *    state and the step (`kiln eval examples/fashion_cnn.kiln --load FILE`). */
    step = "saving";
    if ((st = kiln_model_save(model, opt.save, d))) goto fail;
    printf("saved %s\n", opt.save);
    rc = 0;
    goto done;

out_of_memory:
    st = KILN_ERR_NOMEM;
fail:
    report(step, st, d);
done:
    kiln_free(summary);
    kiln_dataset_dispose(train);
    kiln_dataset_dispose(test);
    kiln_model_dispose(model);
    kiln_module_dispose(module);
    kiln_sequential_dispose(seq);
    kiln_diag_dispose(d);
    return rc;
}

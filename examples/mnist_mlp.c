/*
 * mnist_mlp.c — Keras' MNIST example, in C, compiled by Kiln.
 *
 * The program Keras users know:
 *
 *     model = Sequential()
 *     model.add(Dense(128, activation='relu', input_shape=(784,)))
 *     model.add(Dense(64, activation='relu'))
 *     model.add(Dense(10, activation='softmax'))
 *     model.compile(loss='categorical_crossentropy', optimizer='adam',
 *                   metrics=['accuracy'])
 *     model.summary()
 *     model.fit(x_train, y_train, epochs=10, batch_size=128)
 *     loss, accuracy = model.evaluate(x_test, y_test)
 *
 * Here each step is one call of Kiln's C API; the model is compiled to
 * native code in this process (JIT) before training. It is the same model
 * as examples/mnist_mlp.kiln, and the two give the same weights for the
 * same seed.
 *
 * Build: cmake builds it as build/bin/mnist_mlp (or, against an installed
 * Kiln: cc mnist_mlp.c $(pkg-config --cflags --libs kiln)).
 *
 * Run:   mnist_mlp [--data DIR] [--epochs N] [--steps N] [--seed N] [--save FILE]
 *   --data DIR    the four IDX files of (Fashion-)MNIST, gzipped or not
 *                 (default /usr/share/datasets/fashion-mnist)
 *   --epochs N    epochs (default: 10, as compiled into the model)
 *   --steps N     stop after N training steps (batches) in all
 *   --seed N      seed of the initial weights and the shuffling (default 1)
 *   --save FILE   where the checkpoint goes (default mnist_mlp.safetensors)
 *
 * Every Kiln call that can fail returns a kiln_status (KILN_OK is 0) and
 * writes its messages into a kiln_diag; every object Kiln allocates is freed
 * by the function its documentation names. This program checks the one and
 * frees the other on every path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/kiln.h>

/* ------------------------------------------------------------- options */

typedef struct options {
    const char *data;
    int epochs;       /* 0: the model's own (10) */
    long long steps;  /* 0: no limit */
    long long seed;   /* 0: Kiln's default (1) */
    const char *save; /* the checkpoint written at the end */
} options;

static int usage(const char *prog) {
    fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--steps N] [--seed N] [--save FILE]\n",
            prog);
    return 2;
}

/* Reads a whole positive number (or >= 0 with allow_zero), or complains. */
static int parse_number(const char *opt, const char *s, int allow_zero, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < (allow_zero ? 0 : 1)) {
        fprintf(stderr, "mnist_mlp: error: %s expects a %s number, got '%s'\n", opt,
                allow_zero ? "non-negative" : "positive", s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->data = "/usr/share/datasets/fashion-mnist";
    o->save = "mnist_mlp.safetensors";
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
            if (!parse_number(a, v, 0, &n) || n > 1000000) return 0;
            o->epochs = (int)n;
        } else if (strcmp(a, "--steps") == 0) {
            if (!parse_number(a, v, 0, &o->steps)) return 0;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_number(a, v, 1, &o->seed)) return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------ callbacks */

/* fit calls this after every batch (end == 0) and at the end of each epoch
 * (end == 1), on the training thread: keep it short. Keras' progress line
 * is already on the screen (fit_opts.verbose), so this one only takes
 * notes, which main prints after training. */
typedef struct notes {
    long long batches;
    double first_loss, last_loss; /* of the first and last batch seen */
    double best_speed;            /* samples per second, over whole epochs */
} notes;

static void on_progress(const kiln_progress *p, int end, void *user) {
    notes *n = user;
    if (!end) {
        /* p->loss is the mean over the epoch so far; after one batch it is
         * that batch's loss. */
        if (n->batches++ == 0) n->first_loss = p->loss;
        n->last_loss = p->loss;
        return;
    }
    double speed = p->seconds > 0 ? (double)p->samples / p->seconds : 0;
    if (speed > n->best_speed) n->best_speed = speed;
}

/* --------------------------------------------------------------- main */

/* Prints what a failed call reported. */
static void report(const char *what, kiln_status st, const kiln_diag *d) {
    fprintf(stderr, "mnist_mlp: %s failed (%s)\n%s", what, kiln_status_string(st),
            d ? kiln_diag_message(d) : "");
}

int main(int argc, char **argv) {
    options opt;
    if (!parse_options(argc, argv, &opt)) return usage(argv[0]);

    /* Everything the program allocates, NULL until it exists, so that the
     * one exit path below can free whatever was made. */
    kiln_diag *d = kiln_diag_create();
    kiln_sequential *seq = NULL;
    kiln_module *module = NULL;
    kiln_model *model = NULL;
    kiln_dataset *train = NULL, *test = NULL;
    float *images = NULL, *probs = NULL;
    int32_t *truth = NULL;
    char *summary = NULL;
    kiln_status st = KILN_OK;
    const char *step = "setup";
    int rc = 1;
    if (!d) goto out_of_memory;

    /* 1. The data: 60,000 training and 10,000 test images of 28x28 pixels.
     *    Images stay bytes in memory and become floats in [0, 1] a batch at
     *    a time; labels become one-hot rows for this model's loss. */
    step = "loading the data";
    if ((st = kiln_dataset_load(opt.data, "train", &train, d)) ||
        (st = kiln_dataset_load(opt.data, "test", &test, d)))
        goto fail;
    printf("%lld training and %lld test images from %s\n", (long long)kiln_dataset_count(train),
           (long long)kiln_dataset_count(test), opt.data);

    /* 2. The model, layer by layer: 784 -> 128 -> 64 -> 10. The layers are
     *    named h1, h2 and p, like those of examples/mnist_mlp.kiln, so that
     *    checkpoints of the two are interchangeable; pass NULL instead for
     *    Keras' automatic names (dense, dense_1, dense_2). Each dense layer
     *    has a kernel [in, units] (Glorot-uniform) and a bias (zeros). */
    step = "building the model";
    seq = kiln_sequential_create("mnist_mlp", 28 * 28);
    if (!seq) goto out_of_memory;
    if ((st = kiln_sequential_dense(seq, "h1", 128, KILN_ACT_RELU, d)) ||
        (st = kiln_sequential_dense(seq, "h2", 64, KILN_ACT_RELU, d)) ||
        (st = kiln_sequential_dense(seq, "p", 10, KILN_ACT_SOFTMAX, d)))
        goto fail;

    /* 3. Compile, in Keras' sense: the loss, the optimizer (Adam with
     *    Keras' defaults: lr 0.001, beta_1 0.9, beta_2 0.999, epsilon
     *    1e-7), the accuracy metric, and the training recipe. The result is
     *    a module: the model as Kiln's graph IR. */
    step = "compiling the model";
    kiln_train_settings settings = kiln_train_settings_defaults(KILN_LOSS_CATEGORICAL_CROSSENTROPY);
    settings.optimizer = kiln_optimizer_defaults(KILN_OPT_ADAM);
    settings.epochs = 10;
    settings.batch_size = 128;
    settings.accuracy = 1;
    if ((st = kiln_sequential_compile(seq, &settings, &module, d))) goto fail;
    kiln_sequential_dispose(seq); /* it handed its module over */
    seq = NULL;

    /* model.summary() */
    if (!(summary = kiln_module_summary(module))) goto out_of_memory;
    fputs(summary, stdout);

    /* 4. Native code: kiln_model_create runs the training pipeline (the
     *    backward pass, Adam, fusion, memory planning), compiles it with
     *    LLVM and initializes the weights from the seed. It takes the
     *    module over, whatever happens. */
    step = "JIT-compiling the model";
    kiln_model_opts mopts = {KILN_BACKEND_JIT, 0, opt.seed, KILN_GEMM_AUTO};
    st = kiln_model_create(module, &mopts, &model, d);
    module = NULL;
    if (st) goto fail;
    printf("compiled in %.0f ms\n", kiln_model_compile_ms(model));

    /* 5. model.fit(x_train, y_train, epochs=10, batch_size=128): epochs and
     *    batch size come from the settings compiled in; Keras' progress
     *    line on stdout, and our callback on the side. */
    step = "training";
    notes seen = {0, 0, 0, 0};
    kiln_fit_opts fit;
    memset(&fit, 0, sizeof fit);
    fit.epochs = opt.epochs;   /* 0: the model's 10 */
    fit.max_steps = opt.steps; /* 0: no limit */
    fit.verbose = 1;
    fit.callback = on_progress;
    fit.user = &seen;
    if ((st = kiln_model_fit(model, train, &fit, d))) goto fail;
    printf("the callback saw %lld batches: loss %.4f after the first, %.4f at the end; "
           "fastest epoch %.0f samples/s\n",
           seen.batches, seen.first_loss, seen.last_loss, seen.best_speed);

    /* 6. loss, accuracy = model.evaluate(x_test, y_test) */
    step = "evaluating";
    double loss, accuracy;
    if ((st = kiln_model_evaluate(model, test, 128, 0, &loss, &accuracy, d))) goto fail;
    printf("test loss %.4f - test accuracy %.4f\n", loss, accuracy);

    /* 7. model.predict on the first few test images: the class with the
     *    highest probability against the true label. */
    step = "predicting";
    enum { SHOW = 8 };
    int64_t in = kiln_model_input_size(model), classes = kiln_model_output_size(model);
    images = malloc(sizeof *images * (size_t)(SHOW * in));
    probs = malloc(sizeof *probs * (size_t)(SHOW * classes));
    truth = malloc(sizeof *truth * SHOW);
    if (!images || !probs || !truth) goto out_of_memory;
    if ((st = kiln_dataset_read(test, 0, SHOW, images, d)) ||
        (st = kiln_dataset_read_labels(test, 0, SHOW, truth, d)) ||
        (st = kiln_model_predict(model, images, SHOW, probs, d)))
        goto fail;
    for (int i = 0; i < SHOW; i++) {
        const float *p = probs + i * classes;
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (p[c] > p[best]) best = c;
        printf("test image %d: predicted %d (p = %.3f), true %d%s\n", i, best, p[best],
               (int)truth[i], best == truth[i] ? "" : "  <- wrong");
    }

    /* 8. A checkpoint: weights, Adam's state and the training position, as
     *    safetensors (readable by PyTorch's tools; `kiln eval
     *    examples/mnist_mlp.kiln --load FILE` evaluates it). */
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
    free(images);
    free(probs);
    free(truth);
    kiln_free(summary);
    kiln_dataset_dispose(train);
    kiln_dataset_dispose(test);
    kiln_model_dispose(model);
    kiln_module_dispose(module);
    kiln_sequential_dispose(seq);
    kiln_diag_dispose(d);
    return rc;
}

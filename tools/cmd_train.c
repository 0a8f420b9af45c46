/*
 * cmd_train.c — train, eval and predict: Keras' fit / evaluate / predict
 * from the command line, with a JSON report for scripts:
 *   {"model", "backend", "threads", "compile_ms",
 *    "cache": {"<function>": "hit" | "miss" | "off"}  (the JIT's compile cache),
 *    "epochs": [{"epoch", "loss", "accuracy", "seconds", "samples_per_second"}],
 *    "test": {"loss", "accuracy", "samples"}}
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

#define N_OPTS(t) ((int)(sizeof(t) / sizeof((t)[0])))
#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

typedef struct session {
    const char *verb;
    kiln_diag *d;
    kiln_model *model;
    kiln_dataset *train, *test;
    const char *backend_name;
    int64_t threads;
    int distributed; /* train --distributed */
    const char *hint; /* a note printed after the error */
    int usage;        /* the error is the command line's: exit status 2 */
} session;

static void session_end(session *s) {
    kiln_model_dispose(s->model);
    kiln_dataset_dispose(s->train);
    kiln_dataset_dispose(s->test);
    kiln_diag_dispose(s->d);
    kiln_distributed_finalize(); /* nothing unless --distributed */
}

static int session_fail(session *s, kiln_status st) {
    if (!s->usage) cli_report(s->d, st); /* a usage error is printed already */
    if (s->hint) fprintf(stderr, "kiln: note: %s\n", s->hint);
    /* The other ranks would wait for this one in their next collective. */
    if (kiln_distributed_size() > 1) {
        fflush(stdout);
        fflush(stderr);
        kiln_distributed_abort(1);
    }
    int status = s->usage ? 2 : 1;
    session_end(s);
    return status;
}

/* The options open_model reads, checked before any work is done: a bad one
 * is a usage error (one line, exit status 2), like an unknown option. */
static bool model_opts_ok(const cli_args *a, const char *verb) {
    const char *backend = cli_get(a, "--backend");
    if (backend && strcmp(backend, "jit") != 0 && strcmp(backend, "interp") != 0) {
        fprintf(stderr, "kiln %s: error: --backend expects 'jit' or 'interp', got '%s'\n", verb,
                backend);
        return false;
    }
    int64_t v;
    kiln_gemm g;
    if (!cli_int(a, "--threads", 1, 256, &v) || !cli_int(a, "--seed", 0, INT64_MAX, &v) ||
        !cli_gemm(a, verb, &g))
        return false;
    return true;
}

/* --loss NAME and --optimizer 'NAME(key=value, ...)': training settings
 * for a model that has none (an ONNX file), as Keras' compile(). */
static const char *const loss_names[KILN_LOSS_COUNT] = {
    "categorical_crossentropy", "sparse_categorical_crossentropy", "mean_squared_error",
    "binary_crossentropy"};

static bool parse_optimizer(const char *verb, const char *spec, kiln_optimizer *o) {
    size_t n = strcspn(spec, "(");
    kiln_optimizer_kind kind = n == 4 && !strncmp(spec, "adam", 4)    ? KILN_OPT_ADAM
                               : n == 5 && !strncmp(spec, "adamw", 5) ? KILN_OPT_ADAMW
                               : n == 3 && !strncmp(spec, "sgd", 3)   ? KILN_OPT_SGD
                                                                      : 0;
    if (!kind) {
        fprintf(stderr, "kiln %s: error: --optimizer: unknown optimizer '%.*s' (adam, adamw, sgd)\n",
                verb, (int)n, spec);
        return false;
    }
    *o = kiln_optimizer_defaults(kind);
    const char *p = spec + n;
    if (!*p) return true;
    p++;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',') p++;
        size_t k = strcspn(p, "= ");
        const char *eq = strchr(p, '=');
        char *end;
        double v = eq ? strtod(eq + 1, &end) : 0;
        struct { const char *name; double *at; } keys[] = {
            {"lr", &o->lr}, {"learning_rate", &o->lr}, {"beta_1", &o->beta_1},
            {"beta_2", &o->beta_2}, {"epsilon", &o->epsilon}, {"weight_decay", &o->weight_decay},
            {"momentum", &o->momentum}};
        double *at = NULL;
        for (size_t j = 0; eq && j < sizeof keys / sizeof keys[0]; j++)
            if (strlen(keys[j].name) == k && !strncmp(p, keys[j].name, k)) at = keys[j].at;
        if (!at || end == eq + 1) {
            fprintf(stderr, "kiln %s: error: --optimizer: bad argument near '%s'\n", verb, p);
            return false;
        }
        *at = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
    }
    if (*p != ')' || p[1]) {
        fprintf(stderr, "kiln %s: error: --optimizer: expected ')' at the end of '%s'\n", verb, spec);
        return false;
    }
    return true;
}

/* Applies --loss / --optimizer to m (nothing when neither is given). */
static kiln_status cli_training(const cli_args *a, const char *verb, kiln_module *m, kiln_diag *d) {
    const char *loss = cli_get(a, "--loss"), *opt = cli_get(a, "--optimizer");
    if (!loss && !opt) return KILN_OK;
    if (!loss) {
        fprintf(stderr, "kiln %s: error: --optimizer needs --loss NAME\n", verb);
        return KILN_ERR_INVALID;
    }
    int k = 0;
    while (k < KILN_LOSS_COUNT && strcmp(loss, loss_names[k])) k++;
    if (k == KILN_LOSS_COUNT) {
        fprintf(stderr, "kiln %s: error: --loss: unknown loss '%s' (categorical_crossentropy, "
                        "sparse_categorical_crossentropy, mean_squared_error, binary_crossentropy)\n",
                verb, loss);
        return KILN_ERR_INVALID;
    }
    kiln_train_settings t = kiln_train_settings_defaults((kiln_loss)k);
    t.accuracy = k != KILN_LOSS_MEAN_SQUARED_ERROR;
    if (opt && !parse_optimizer(verb, opt, &t.optimizer)) return KILN_ERR_INVALID;
    return kiln_module_set_training(m, &t, d);
}

static kiln_status open_data(session *s, const cli_args *a, bool test, kiln_dataset **out);

/* --load is optional for a model with weights of its own (an ONNX file, or
 * a .kiln file importing one): parameters without start fresh, said in a
 * note. */
static kiln_status check_load(session *s, const cli_args *a, const char *path,
                              const kiln_module *m, bool need_load) {
    int64_t with_data, n = kiln_module_param_count(m, &with_data);
    if (!need_load || cli_get(a, "--load") || cli_is_onnx(path)) return KILN_OK;
    if (!with_data) {
        fprintf(stderr, "kiln %s: error: --load CKPT is required\n", s->verb);
        s->usage = 1;
        return KILN_ERR_INVALID;
    }
    if (with_data < n)
        fprintf(stderr,
                "kiln %s: note: %lld of %lld parameters are freshly initialized (not from an "
                "ONNX file); --load CKPT gives them trained values\n",
                s->verb, (long long)(n - with_data), (long long)n);
    return KILN_OK;
}

/* Loads and compiles the model with --backend, --threads, --seed (checked
 * by model_opts_ok), --load (check_load); for train, loads the training data in
 * between and checks it against the model before anything is compiled. */
static kiln_status open_model(session *s, const cli_args *a, const char *path, bool need_load) {
    const char *backend = cli_get(a, "--backend");
    kiln_model_opts mo = {0};
    s->backend_name = "jit";
    if (backend && strcmp(backend, "interp") == 0) {
        mo.backend = KILN_BACKEND_INTERP;
        s->backend_name = "interp";
    } else if (backend && strcmp(backend, "jit") != 0) {
        fprintf(stderr, "kiln %s: error: --backend expects 'jit' or 'interp', got '%s'\n", s->verb,
                backend);
        return KILN_ERR_INVALID;
    }
    s->threads = 0;
    if (!cli_int(a, "--threads", 1, 256, &s->threads)) return KILN_ERR_INVALID;
    mo.threads = (int)s->threads;
    if (!cli_gemm(a, s->verb, &mo.gemm)) return KILN_ERR_INVALID;
    int64_t seed = 0;
    if (!cli_int(a, "--seed", 0, INT64_MAX, &seed)) return KILN_ERR_INVALID;
    mo.seed = seed;
    if (cli_flag(a, "--no-cache")) setenv("KILN_CACHE", "0", 1); /* the library reads it */
    /* What the command will run compiles with the main function, at once. */
    const char *now = NULL;
    if (strcmp(s->verb, "predict") == 0)
        now = "infer";
    else if (strcmp(s->verb, "eval") == 0 || !cli_flag(a, "--no-eval"))
        now = "loss";
    kiln_module *m = NULL;
    kiln_status st = s->distributed ? kiln_distributed_init(s->d) : KILN_OK;
    if (!st) st = cli_load_model(path, &m, s->d);
    if (!st) st = cli_training(a, s->verb, m, s->d);
    if (!st) st = check_load(s, a, path, m, need_load);
    if (st) {
        kiln_module_dispose(m);
        return st;
    }
    if (strcmp(s->verb, "train") == 0) {
        st = open_data(s, a, false, &s->train);
        if (!st) st = kiln_module_check_dataset(m, s->train, s->d);
        if (st) {
            kiln_module_dispose(m);
            return st;
        }
    }
    st = kiln_model_create_now(m, &mo, now, &s->model, s->d);
    if (st) return st;
    /* Distributed, rank 0 alone prints (errors still come from every rank). */
    if (kiln_distributed_rank() != 0 && !freopen("/dev/null", "w", stdout))
        return KILN_ERR_IO;
    /* Warnings (a compile cache that cannot be written) go out now. */
    fputs(kiln_diag_message(s->d), stderr);
    kiln_diag_clear(s->d);
    const char *load = cli_get(a, "--load");
    if (load) {
        kiln_load_mode mode = cli_flag(a, "--finetune") ? KILN_LOAD_FINETUNE : KILN_LOAD_STRICT;
        st = kiln_model_load(s->model, load, mode, s->d);
        /* A checkpoint of a changed model: training can still start from
         * what matches. */
        if (st == KILN_ERR_SHAPE && mode == KILN_LOAD_STRICT && strcmp(s->verb, "train") == 0)
            s->hint = "--finetune loads the tensors that match and starts the rest fresh";
        if (st) return st;
        /* Fine-tuning reports what it skipped as notes; a weights-only file
         * its fresh optimizer (a note that only training needs). */
        if (mode == KILN_LOAD_FINETUNE || strcmp(s->verb, "train") == 0)
            fputs(kiln_diag_message(s->d), stderr);
        kiln_diag_clear(s->d);
    }
    return KILN_OK;
}

/* Writes s as a JSON string literal. */
static void json_str(FILE *f, const char *s) {
    char *q = kiln_json_string(s);
    fputs(q ? q : "\"\"", f);
    kiln_free(q);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

/* Writes the --report JSON; test_samples < 0 leaves "test" out. */
static kiln_status write_report(const session *s, const char *path, double test_loss,
                                double test_acc, int64_t test_samples) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "kiln %s: error: %s: %s\n", s->verb, path, strerror(errno));
        return KILN_ERR_IO;
    }
    const kiln_module *m = kiln_model_module(s->model);
    fputs("{\"model\": ", f);
    json_str(f, kiln_module_name(m));
    fputs(", \"backend\": ", f);
    json_str(f, s->backend_name);
    fprintf(f, ", \"threads\": %d, \"compile_ms\": ", kiln_model_threads(s->model));
    json_num(f, kiln_model_compile_ms(s->model));
    fputs(", \"cache\": {", f);
    static const char *const fns[] = {"train_step", "loss", "infer"};
    for (int i = 0, n = 0; i < 3; i++) {
        const char *c = kiln_model_cache_status(s->model, fns[i]);
        if (c) fprintf(f, "%s\"%s\": \"%s\"", n++ ? ", " : "", fns[i], c);
    }
    fputs("}, \"epochs\": [", f);
    int n = kiln_model_history_count(s->model);
    for (int i = 0; i < n; i++) {
        kiln_progress p = kiln_model_history(s->model, i);
        fprintf(f, "%s{\"epoch\": %d, \"steps\": %lld, \"samples\": %lld, \"loss\": ", i ? ", " : "",
                p.epoch, (long long)p.step, (long long)p.samples);
        json_num(f, p.loss);
        fputs(", \"accuracy\": ", f);
        json_num(f, p.accuracy);
        fputs(", \"seconds\": ", f);
        json_num(f, p.seconds);
        fputs(", \"samples_per_second\": ", f);
        json_num(f, p.seconds > 0 ? (double)p.samples / p.seconds : 0);
        fputc('}', f);
    }
    fputc(']', f);
    if (test_samples >= 0) {
        fputs(", \"test\": {\"loss\": ", f);
        json_num(f, test_loss);
        fputs(", \"accuracy\": ", f);
        json_num(f, test_acc);
        fprintf(f, ", \"samples\": %lld}", (long long)test_samples);
    }
    fputs("}\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "kiln %s: error: %s: write failed\n", s->verb, path);
        return KILN_ERR_IO;
    }
    return KILN_OK;
}

static bool is_csv(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return n > 4 && strcmp(path + n - 4, ".csv") == 0;
}

/* The training (test = false) or test data: --data DIR (IDX or NumPy files,
 * or a .npz), or --data FILE.csv with --label-column, whose test data is
 * --test FILE.csv in train (none without it: *out stays NULL) and the file
 * itself in eval. */
static kiln_status open_data(session *s, const cli_args *a, bool test, kiln_dataset **out) {
    const char *data = cli_get(a, "--data");
    if (!data) data = DEFAULT_DATA;
    if (!is_csv(data)) {
        kiln_status st = kiln_dataset_load(data, test ? "test" : "train", out, s->d);
        /* Warnings (a cache directory that cannot take the decompressed data). */
        if (!st && kiln_diag_error_count(s->d) == 0) {
            fputs(kiln_diag_message(s->d), stderr);
            kiln_diag_clear(s->d);
        }
        return st;
    }
    const char *label = cli_get(a, "--label-column");
    const char *path = test && strcmp(s->verb, "train") == 0 ? cli_get(a, "--test") : data;
    return path ? kiln_dataset_load_csv(path, label, out, s->d) : KILN_OK;
}

/* CSV data needs its label column: a usage error (exit status 2). */
static bool data_opts_ok(const cli_args *a, const char *verb) {
    const char *data = cli_get(a, "--data");
    if (is_csv(data) && !cli_get(a, "--label-column")) {
        fprintf(stderr, "kiln %s: error: --data %s needs --label-column NAME\n", verb, data);
        return false;
    }
    return true;
}

/* Evaluates on the test data and prints Keras' "loss/accuracy" line;
 * *samples stays -1 when there is none (a CSV without --test). */
static kiln_status run_test(session *s, const cli_args *a, int64_t batch, double *loss,
                            double *acc, int64_t *samples) {
    kiln_status st = open_data(s, a, true, &s->test);
    if (st || !s->test) return st;
    st = kiln_model_evaluate(s->model, s->test, batch, 1, loss, acc, s->d);
    if (st) return st;
    *samples = kiln_dataset_count(s->test);
    if (*acc >= 0)
        printf("test: loss %.4f - accuracy %.4f (%lld samples)\n", *loss, *acc, (long long)*samples);
    else
        printf("test: loss %.4f (%lld samples)\n", *loss, (long long)*samples);
    fflush(stdout);
    return KILN_OK;
}

/* ---------------------------------------------------------------- train */

static const cli_opt train_opts[] = {
    {"--data", "DIR", "dataset: a directory of IDX files or x_train.npy, y_train.npy, x_test.npy, "
                      "y_test.npy, or a .npz of these (default " DEFAULT_DATA "), or FILE.csv"},
    {"--test", "FILE.csv", "with --data FILE.csv: the test data (none without it)"},
    {"--label-column", "NAME", "with CSV data: the column holding the labels"},
    {"--epochs", "N", "epochs (default: the model's train block)"},
    {"--batch-size", "N", "batch size (default: the model's train block)"},
    {"--seed", "N", "seed of weight initialization and shuffling"},
    {"--threads", "N", "threads for OpenBLAS and Kiln"},
    {"--backend", "jit|interp", "native code (default) or the reference interpreter"},
    {"--gemm", "kiln|openblas", "matrix products: Kiln's kernels (default) or OpenBLAS"},
    {"--no-cache", NULL, "compile without the compile cache (see 'kiln cache')"},
    {"--load", "CKPT", "start from a checkpoint's weights (and optimizer state)"},
    {"--loss", "NAME", "train a model without a loss (ONNX) with this one, as Keras' compile"},
    {"--optimizer", "SPEC", "with --loss: e.g. 'adam(lr=1e-4)', 'sgd(lr=0.1, momentum=0.9)'"},
    {"--finetune", NULL, "with --load: load what matches, report what is skipped"},
    {"--save", "CKPT", "save a checkpoint at the end"},
    {"--checkpoint-every", "N", "also save every N steps (N epochs with 'Ne', e.g. 1e)"},
    {"--report", "FILE.json", "write a JSON report"},
    {"--max-steps", "N", "stop after N steps"},
    {"--no-shuffle", NULL, "keep the dataset order"},
    {"--no-eval", NULL, "do not evaluate on the test split after training"},
    {"--continue-on-nan", NULL, "keep training after a NaN or Inf loss"},
    {"--distributed", NULL,
     "data-parallel over the ranks of mpirun (the batch size is the global batch)"},
    {"--help", NULL, "show this help"},
};

int cmd_train(int argc, char **argv) {
    cli_args a;
    if (!cli_parse(&a, "train", train_opts, N_OPTS(train_opts), argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "train", "MODEL.kiln [options]", train_opts, N_OPTS(train_opts));
        return 0;
    }
    if (a.n_pos != 1) {
        fprintf(stderr, "kiln train: error: expected one model file\n");
        return 2;
    }
    if (!model_opts_ok(&a, "train") || !data_opts_ok(&a, "train")) return 2;
    kiln_fit_opts fo = {0};
    int64_t epochs = 0, batch = 0, max_steps = 0, seed = 0;
    if (!cli_int(&a, "--epochs", 1, KILN_MAX_EPOCHS, &epochs) ||
        !cli_int(&a, "--batch-size", 1, 1 << 24, &batch) ||
        !cli_int(&a, "--max-steps", 1, INT64_MAX, &max_steps) ||
        !cli_int(&a, "--seed", 0, INT64_MAX, &seed))
        return 2;
    const char *every = cli_get(&a, "--checkpoint-every");
    if (every) {
        char *end;
        long long n = strtoll(every, &end, 10);
        bool epochs_unit = *end == 'e' && end[1] == 0;
        if (n <= 0 || (*end && !epochs_unit)) {
            fprintf(stderr, "kiln train: error: --checkpoint-every expects N (steps) or Ne "
                            "(epochs), got '%s'\n", every);
            return 2;
        }
        if (!cli_get(&a, "--save")) {
            fprintf(stderr, "kiln train: error: --checkpoint-every needs --save CKPT\n");
            return 2;
        }
        fo.checkpoint_every = epochs_unit ? -n : n;
        fo.checkpoint_path = cli_get(&a, "--save");
    }
    fo.epochs = (int)epochs;
    fo.batch_size = batch;
    fo.max_steps = max_steps;
    fo.shuffle_seed = seed;
    fo.no_shuffle = cli_flag(&a, "--no-shuffle");
    fo.continue_on_nonfinite = cli_flag(&a, "--continue-on-nan");
    fo.verbose = 1;

    session s = {"train", kiln_diag_create(), NULL, NULL, NULL, "jit", 0, 0, NULL, 0};
    s.distributed = cli_flag(&a, "--distributed");
    kiln_status st = open_model(&s, &a, a.pos[0], false); /* and the training data */
    if (st) return session_fail(&s, st);
    if (kiln_model_compile_ms(s.model) > 0)
        printf("compiled %s in %.0f ms\n", kiln_module_name(kiln_model_module(s.model)),
               kiln_model_compile_ms(s.model));
    st = kiln_model_fit(s.model, s.train, &fo, s.d);
    if (st) return session_fail(&s, st);
    const char *save = cli_get(&a, "--save");
    if (save && kiln_distributed_rank() == 0) { /* the ranks hold the same weights */
        st = kiln_model_save(s.model, save, s.d);
        if (st) return session_fail(&s, st);
        printf("saved %s\n", save);
    }
    double loss = NAN, acc = NAN;
    int64_t samples = -1;
    if (!cli_flag(&a, "--no-eval")) {
        st = run_test(&s, &a, batch ? batch : 128, &loss, &acc, &samples);
        if (st) return session_fail(&s, st);
    }
    const char *report = cli_get(&a, "--report");
    if (report && kiln_distributed_rank() == 0 &&
        (st = write_report(&s, report, loss, acc, samples))) return session_fail(&s, st);
    session_end(&s);
    return 0;
}

/* ----------------------------------------------------------------- eval */

static const cli_opt eval_opts[] = {
    {"--load", "CKPT", "the weights to evaluate (required unless the model has its own: "
                       "an ONNX file, or a .kiln file importing one)"},
    {"--loss", "NAME", "evaluate a model without a loss (ONNX) with this one"},
    {"--data", "DIR", "dataset: a directory of IDX files or x_train.npy, y_train.npy, x_test.npy, "
                      "y_test.npy, or a .npz of these (default " DEFAULT_DATA "), or FILE.csv"},
    {"--label-column", "NAME", "with CSV data: the column holding the labels"},
    {"--batch-size", "N", "batch size (default 128)"},
    {"--threads", "N", "threads for OpenBLAS and Kiln"},
    {"--backend", "jit|interp", "native code (default) or the reference interpreter"},
    {"--gemm", "kiln|openblas", "matrix products: Kiln's kernels (default) or OpenBLAS"},
    {"--no-cache", NULL, "compile without the compile cache (see 'kiln cache')"},
    {"--report", "FILE.json", "write a JSON report"},
    {"--help", NULL, "show this help"},
};

int cmd_eval(int argc, char **argv) {
    cli_args a;
    if (!cli_parse(&a, "eval", eval_opts, N_OPTS(eval_opts), argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "eval", "MODEL.kiln --load CKPT [options]", eval_opts,
                       N_OPTS(eval_opts));
        return 0;
    }
    if (a.n_pos != 1) {
        fprintf(stderr, "kiln eval: error: expected one model file\n");
        return 2;
    }
    if (!model_opts_ok(&a, "eval") || !data_opts_ok(&a, "eval")) return 2;
    int64_t batch = 128;
    if (!cli_int(&a, "--batch-size", 1, 1 << 24, &batch)) return 2;
    session s = {"eval", kiln_diag_create(), NULL, NULL, NULL, "jit", 0, 0, NULL, 0};
    kiln_status st = open_model(&s, &a, a.pos[0], true);
    if (st) return session_fail(&s, st);
    double loss, acc;
    int64_t samples = -1;
    st = run_test(&s, &a, batch, &loss, &acc, &samples);
    if (st) return session_fail(&s, st);
    const char *report = cli_get(&a, "--report");
    if (report && (st = write_report(&s, report, loss, acc, samples))) return session_fail(&s, st);
    session_end(&s);
    return 0;
}

/* -------------------------------------------------------------- predict */

static const cli_opt predict_opts[] = {
    {"--load", "CKPT", "the weights (required unless the model has its own: an ONNX file, or "
                       "a .kiln file importing one)"},
    {"--input", "FILE", "inputs: a NumPy .npy file, or IDX (gzipped or not) (required; once per "
                        "input of the model, in the order of its 'input' lines)"},
    {"--output", "FILE", "FILE.npy: the outputs as a NumPy array [n, outputs]; other names: "
                         "'class p0 p1 ...' per sample (default stdout: class)"},
    {"--threads", "N", "threads for OpenBLAS and Kiln"},
    {"--backend", "jit|interp", "native code (default) or the reference interpreter"},
    {"--gemm", "kiln|openblas", "matrix products: Kiln's kernels (default) or OpenBLAS"},
    {"--no-cache", NULL, "compile without the compile cache (see 'kiln cache')"},
    {"--help", NULL, "show this help"},
};

/* Every value of a repeated option (cli_get keeps the last), in order. */
static int all_values(int argc, char **argv, const char *name, const char **out, int max) {
    size_t len = strlen(name);
    int n = 0;
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], name) == 0 && i + 1 < argc)
            v = argv[++i];
        else if (strncmp(argv[i], name, len) == 0 && argv[i][len] == '=')
            v = argv[i] + len + 1;
        if (v && n < max) out[n] = v;
        if (v) n++;
    }
    return n;
}

/* Predictions of a model with several inputs, one file each: *y gets
 * [n, outputs] (the caller frees it). Errors of its own are printed; the
 * library's are in s->d. */
static kiln_status predict_inputs(session *s, const char **files, int k, float **y, int64_t *n) {
    kiln_dataset *ds[16] = {0};
    float *x[16] = {0};
    *y = NULL;
    kiln_status st = KILN_OK;
    int want = kiln_model_input_count(s->model);
    if (k != want) {
        fprintf(stderr, "kiln predict: error: the model has %d input%s, --input was given %d time%s\n",
                want, want == 1 ? "" : "s", k, k == 1 ? "" : "s");
        return KILN_ERR_INVALID;
    }
    for (int i = 0; i < k && !st; i++) {
        st = kiln_dataset_load_files(files[i], NULL, &ds[i], s->d);
        if (st) break;
        int64_t c = kiln_dataset_count(ds[i]), per = kiln_dataset_sample_size(ds[i]);
        if (i == 0) *n = c;
        if (c != *n || per != kiln_model_input_size_at(s->model, i)) {
            fprintf(stderr,
                    "kiln predict: error: %s: %lld samples of %lld values; input %d of the model "
                    "takes samples of %lld values%s\n",
                    files[i], (long long)c, (long long)per, i + 1,
                    (long long)kiln_model_input_size_at(s->model, i),
                    c != *n ? " and every --input file the same number of samples" : "");
            st = KILN_ERR_SHAPE;
            break;
        }
        x[i] = malloc(sizeof(float) * (size_t)(c * per > 0 ? c * per : 1));
        if (!x[i]) st = KILN_ERR_NOMEM;
        if (!st) st = kiln_dataset_read(ds[i], 0, c, x[i], s->d);
    }
    int64_t out = kiln_model_output_size(s->model);
    if (!st && !(*y = malloc(sizeof(float) * (size_t)(out * (*n ? *n : 1))))) st = KILN_ERR_NOMEM;
    if (st == KILN_ERR_NOMEM) fprintf(stderr, "kiln predict: error: out of memory\n");
    if (!st) st = kiln_model_predict_inputs(s->model, (const float *const *)x, k, *n, *y, s->d);
    for (int i = 0; i < k; i++) {
        free(x[i]);
        kiln_dataset_dispose(ds[i]);
    }
    if (st) {
        free(*y);
        *y = NULL;
    }
    return st;
}

int cmd_predict(int argc, char **argv) {
    cli_args a;
    if (!cli_parse(&a, "predict", predict_opts, N_OPTS(predict_opts), argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "predict", "MODEL.kiln --load CKPT --input FILE [options]",
                       predict_opts, N_OPTS(predict_opts));
        return 0;
    }
    const char *input = cli_get(&a, "--input");
    if (a.n_pos != 1 || !input) {
        fprintf(stderr, "kiln predict: error: expected a model file and --input IDX\n");
        return 2;
    }
    if (!model_opts_ok(&a, "predict")) return 2;
    session s = {"predict", kiln_diag_create(), NULL, NULL, NULL, "jit", 0, 0, NULL, 0};
    kiln_status st = open_model(&s, &a, a.pos[0], true);
    if (st) return session_fail(&s, st);
    const char *inputs[16];
    int k = all_values(argc, argv, "--input", inputs, 16);
    int64_t n = 0, out = kiln_model_output_size(s.model);
    float *y = NULL;
    if (k > 1 || kiln_model_input_count(s.model) > 1) {
        st = predict_inputs(&s, inputs, k, &y, &n);
        if (st && kiln_diag_error_count(s.d)) return session_fail(&s, st);
        if (st) return session_end(&s), 1;
    } else {
        st = kiln_dataset_load_files(input, NULL, &s.test, s.d);
        if (st) return session_fail(&s, st);
        n = kiln_dataset_count(s.test);
        if ((st = kiln_model_check_dataset(s.model, s.test, 0, s.d))) return session_fail(&s, st);
        y = malloc(sizeof(float) * (size_t)(out * (n ? n : 1)));
        if (!y || (st = kiln_model_predict_dataset(s.model, s.test, y, s.d))) {
            free(y);
            return session_fail(&s, st ? st : KILN_ERR_NOMEM);
        }
    }
    const char *path = cli_get(&a, "--output");
    size_t pl = path ? strlen(path) : 0;
    if (pl > 4 && strcmp(path + pl - 4, ".npy") == 0) {
        int64_t dims[2] = {n, out};
        st = kiln_npy_write(path, y, 2, dims, s.d);
        free(y);
        return st ? session_fail(&s, st) : (session_end(&s), 0);
    }
    FILE *f = path ? fopen(path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "kiln predict: error: %s: %s\n", path, strerror(errno));
        free(y);
        session_end(&s);
        return 1;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *row = y + i * out;
        int64_t best = 0;
        for (int64_t j = 1; j < out; j++)
            if (row[j] > row[best]) best = j;
        fprintf(f, "%lld", (long long)best);
        if (path)
            for (int64_t j = 0; j < out; j++) fprintf(f, " %.6g", row[j]);
        fputc('\n', f);
    }
    int bad = path ? fclose(f) != 0 : 0;
    free(y);
    session_end(&s);
    if (bad) {
        fprintf(stderr, "kiln predict: error: %s: write failed\n", path);
        return 1;
    }
    return 0;
}

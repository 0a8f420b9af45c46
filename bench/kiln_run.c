/*
 * kiln_run.c — Kiln's side of the benchmark (bench/run.sh), over the public
 * API only: what a C program that links libkiln gets.
 *
 *   bench_kiln_run [--model FILE.kiln] [--data DIR] [--threads N] [--epochs N]
 *                  [--steps N] [--seed N] [--batch N] [--infer-calls N] [--tput-reps N]
 *                  [--no-infer] [--max-steps N] [--distributed]
 *
 * --steps N stops training after N steps (a convnet's epoch is long: its
 * epoch time is then the median step x the steps of an epoch).
 *
 * 1. kiln_model_create: the pipeline and the JIT of the train step
 *    (compile_ms is the JIT's own figure, create_ms the whole call; neither
 *    is in an epoch time). The runtime compiles loss and infer when first
 *    used: compile_ms_total is the JIT's figure at the end, all functions;
 * 2. kiln_model_fit for N epochs at batch 128 with shuffling: the seconds of
 *    each epoch as fit records them (batch gather + train step + metrics,
 *    nothing else), and the median time of a full-batch step (from the fit
 *    callback): x steps per epoch, an epoch time that a few preempted steps on
 *    a shared machine do not move; then kiln_model_evaluate on the test split;
 * 3. peak RSS after compiling, loading the data and training (getrusage);
 * 4. inference with kiln_model_predict: batch-1 latency (one call per
 *    sample, each timed; median, min, p90 over --infer-calls calls), and
 *    throughput over the 10,000 test images in batches of 10,000 and 128
 *    (median and max samples/s over --tput-reps passes).
 *
 * --max-steps stops training after N steps (fit's max_steps). --distributed
 * (under mpirun) trains data-parallel: kiln_distributed_init before the
 * model is created, rank 0 alone prints, and --batch is the global batch.
 *
 * Human-readable lines on stdout, then one line "RESULT {json}".
 */
#define _GNU_SOURCE
#include <kiln/kiln.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "bench_util.h"

/* Sorts v and returns its median. */
static double median(double *v, int n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* Step times, from the fit callback (p->seconds counts from the epoch's start). */
typedef struct step_log {
    double *t, *cpu; /* wall and process CPU seconds of each full-batch step */
    long n, cap;
    double last;     /* p->seconds at the previous step */
    double cpu_last; /* process CPU time at the previous step */
    int64_t batch;
} step_log;

/* CPU seconds of the whole process (every thread): on a machine shared with
 * other jobs, wall time measures the share the scheduler gave. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void on_progress(const kiln_progress *p, int end, void *user) {
    step_log *sl = user;
    if (!end) {
        double dt = p->seconds - (p->step == 1 ? 0 : sl->last), c = cpu_s();
        double dc = c - sl->cpu_last;
        sl->last = p->seconds;
        sl->cpu_last = c;
        if (p->samples != p->step * sl->batch) return; /* the short last batch */
        if (sl->n == sl->cap) {
            long cap = sl->cap ? 2 * sl->cap : 4096;
            double *t = realloc(sl->t, sizeof *t * (size_t)cap);
            double *u = t ? realloc(sl->cpu, sizeof *u * (size_t)cap) : NULL;
            if (t) sl->t = t;
            if (!u) return;
            sl->cpu = u;
            sl->cap = cap;
        }
        sl->cpu[sl->n] = dc;
        sl->t[sl->n++] = dt;
        return;
    }
    printf("epoch %2d/%d  %7.3f s  %9.0f samples/s  loss %.4f  acc %.4f\n", p->epoch, p->epochs,
           p->seconds, (double)p->samples / p->seconds, p->loss, p->accuracy);
    fflush(stdout);
}

static int fail(kiln_diag *d, const char *what) {
    fprintf(stderr, "bench_kiln_run: %s failed:\n%s", what, kiln_diag_message(d));
    return 1;
}

/* Samples/s of predicting all n rows of x in batches of `batch`, `reps` passes. */
static int throughput(kiln_model *mo, const float *x, int64_t n, int64_t in, float *out,
                      int64_t outsz, int64_t batch, int reps, double *med, double *max,
                      kiln_diag *d) {
    double *r = malloc(sizeof(double) * (size_t)(reps + 1));
    if (!r) return 1;
    for (int k = -2; k < reps; k++) { /* two warm-up passes */
        double t0 = bench_now();
        for (int64_t i = 0; i < n; i += batch) {
            int64_t nb = n - i < batch ? n - i : batch;
            if (kiln_model_predict(mo, x + i * in, nb, out + i * outsz, d)) {
                free(r);
                return 1;
            }
        }
        if (k >= 0) r[k] = (double)n / (bench_now() - t0);
    }
    *med = median(r, reps);
    *max = r[reps - 1];
    free(r);
    return 0;
}

int main(int argc, char **argv) {
    const char *model_path = "examples/mnist_mlp.kiln", *data = "/usr/share/datasets/fashion-mnist";
    int threads = 1, epochs = 10, infer_calls = 10000, tput_reps = 15, no_infer = 0, dist = 0;
    long long seed = 1, batch = 128, max_steps = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-infer") || !strcmp(a, "--distributed")) {
            *(a[2] == 'n' ? &no_infer : &dist) = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr,
                    "bench_kiln_run: %s needs a value (see the header of bench/kiln_run.c)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--data"))
            data = v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--epochs"))
            epochs = atoi(v);
        else if (!strcmp(a, "--steps"))
            max_steps = atoll(v);
        else if (!strcmp(a, "--seed"))
            seed = atoll(v);
        else if (!strcmp(a, "--batch"))
            batch = atoll(v);
        else if (!strcmp(a, "--infer-calls"))
            infer_calls = atoi(v);
        else if (!strcmp(a, "--tput-reps"))
            tput_reps = atoi(v);
        else if (!strcmp(a, "--max-steps"))
            max_steps = atoll(v);
        else {
            fprintf(stderr, "bench_kiln_run: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (epochs < 1 || batch < 1 || infer_calls < 1 || tput_reps < 1 || threads < 1) {
        fprintf(stderr, "bench_kiln_run: counts must be >= 1\n");
        return 2;
    }

    kiln_diag *d = kiln_diag_create();
    if (dist && kiln_distributed_init(d)) return fail(d, "kiln_distributed_init");
    if (kiln_distributed_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    kiln_module *m = NULL;
    if (kiln_model_file_load(model_path, &m, d)) return fail(d, "loading the model");
    kiln_model_opts mo_opts = {KILN_BACKEND_JIT, threads, seed, KILN_GEMM_AUTO};
    kiln_model *mo = NULL;
    double t0 = bench_now();
    if (kiln_model_create(m, &mo_opts, &mo, d)) return fail(d, "kiln_model_create");
    double create_ms = (bench_now() - t0) * 1e3, compile_ms = kiln_model_compile_ms(mo);
    double rss_create = peak_rss_mb();
    printf("kiln %s, model %s: compiled in %.1f ms (create %.1f ms), %d thread(s)\n",
           kiln_version(), kiln_module_name(kiln_model_module(mo)), compile_ms, create_ms,
           kiln_model_threads(mo));

    kiln_dataset *train = NULL, *test = NULL;
    t0 = bench_now();
    if (kiln_dataset_load(data, "train", &train, d) || kiln_dataset_load(data, "test", &test, d))
        return fail(d, "loading the data");
    double load_s = bench_now() - t0;
    double rss_load = peak_rss_mb();

    kiln_fit_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.epochs = epochs;
    fo.batch_size = batch;
    fo.shuffle_seed = seed;
    fo.max_steps = max_steps;
    step_log sl = {NULL, NULL, 0, 0, 0, cpu_s(), batch};
    fo.callback = on_progress;
    fo.user = &sl;
    if (kiln_model_fit(mo, train, &fo, d)) return fail(d, "kiln_model_fit");
    int ne = kiln_model_history_count(mo);
    double *ep = calloc((size_t)ne, sizeof *ep), *eps = calloc((size_t)ne, sizeof *eps);
    if (!ep || !eps) return 1;
    kiln_progress last = kiln_model_history(mo, ne - 1);
    int64_t steps = last.steps;
    for (int i = 0; i < ne; i++) ep[i] = eps[i] = kiln_model_history(mo, i).seconds;
    double ep_med = median(eps, ne), ep_min = eps[0];
    int64_t n_train = kiln_dataset_count(train);
    double step_med = median(sl.t, (int)sl.n), step_cpu_med = median(sl.cpu, (int)sl.n);
    printf(
        "train: median epoch %.3f s (min %.3f), %.0f samples/s, %.3f ms/step; median step %.1f us "
        "(x %lld = %.3f s)\n",
        ep_med, ep_min, (double)n_train / ep_med, ep_med / (double)steps * 1e3, step_med * 1e6,
        (long long)steps, step_med * (double)steps);
    double test_loss = NAN, test_acc = NAN;
    if (kiln_model_evaluate(mo, test, 128, 0, &test_loss, &test_acc, d))
        return fail(d, "kiln_model_evaluate");
    double rss_train = peak_rss_mb();
    printf("test: loss %.4f  accuracy %.4f\n", test_loss, test_acc);

    double b1_med = NAN, b1_min = NAN, b1_p90 = NAN, t10k_med = NAN, t10k_max = NAN, t128_med = NAN,
           t128_max = NAN;
    int64_t n_test = kiln_dataset_count(test), in = kiln_model_input_size(mo),
            outsz = kiln_model_output_size(mo);
    if (!no_infer) {
        float *x = malloc(sizeof(float) * (size_t)(n_test * in)),
              *out = malloc(sizeof(float) * (size_t)(n_test * outsz));
        double *lat = malloc(sizeof(double) * (size_t)infer_calls);
        if (!x || !out || !lat) return 1;
        if (kiln_dataset_read(test, 0, n_test, x, d)) return fail(d, "kiln_dataset_read");
        /* cycle over the first 1000 test images, as torch_bench.py does */
        int64_t n_lat = n_test < 1000 ? n_test : 1000;
        for (int i = 0; i < 300; i++)
            if (kiln_model_predict(mo, x + (i % n_lat) * in, 1, out, d))
                return fail(d, "kiln_model_predict");
        for (int i = 0; i < infer_calls; i++) {
            const float *xi = x + (i % n_lat) * in;
            double a = bench_now();
            kiln_model_predict(mo, xi, 1, out, d);
            lat[i] = bench_now() - a;
        }
        qsort(lat, (size_t)infer_calls, sizeof *lat, bench_cmp_double);
        b1_med = lat[infer_calls / 2] * 1e6;
        b1_min = lat[0] * 1e6;
        b1_p90 = lat[(int)(infer_calls * 0.9)] * 1e6;
        if (throughput(mo, x, n_test, in, out, outsz, 10000, tput_reps, &t10k_med, &t10k_max, d) ||
            throughput(mo, x, n_test, in, out, outsz, 128, tput_reps < 7 ? tput_reps : 7, &t128_med,
                       &t128_max, d))
            return fail(d, "kiln_model_predict");
        printf(
            "inference: batch 1 median %.2f us (min %.2f, p90 %.2f); batch 10000 %.0f samples/s; "
            "batch 128 %.0f samples/s\n",
            b1_med, b1_min, b1_p90, t10k_med, t128_med);
        free(x);
        free(out);
        free(lat);
    }
    double rss_end = peak_rss_mb(), compile_ms_total = kiln_model_compile_ms(mo);
    printf("peak RSS %.1f MB (after compile %.1f, after data load %.1f, after train %.1f)\n",
           rss_end, rss_create, rss_load, rss_train);

    printf(
        "RESULT {\"side\": \"kiln\", \"kiln\": \"%s\", \"threads\": %d, \"seed\": %lld, "
        "\"batch\": %lld, \"compile_ms\": %.3f, \"compile_ms_total\": %.3f, \"create_ms\": %.3f, "
        "\"load_s\": %.4f, \"steps_per_epoch\": %lld, \"epoch_s\": [",
        kiln_version(), kiln_model_threads(mo), seed, batch, compile_ms, compile_ms_total,
        create_ms, load_s, (long long)steps);
    for (int i = 0; i < ne; i++) printf("%s%.6f", i ? ", " : "", ep[i]);
    printf("], \"step_cpu_s_median\": %.9f", step_cpu_med);
    printf(", \"epoch_s_median\": %.6f, \"train_sps_median\": %.1f, \"step_s_median\": %.9f, "
           "\"epoch_s_steady\": %.6f, \"train_loss_last\": %.6f, \"train_acc_last\": %.6f, "
           "\"test_loss\": %.6f, \"test_acc\": %.6f, ",
           ep_med, (double)n_train / ep_med, step_med, step_med * (double)steps, last.loss,
           last.accuracy, test_loss, test_acc);
    if (no_infer)
        printf("\"infer\": null, ");
    else
        printf("\"infer\": {\"jit\": {\"b1\": {\"median_us\": %.4f, \"min_us\": %.4f, \"p90_us\": "
               "%.4f}, \"b10000_sps\": {\"median\": %.1f, \"max\": %.1f}, \"b128_sps\": "
               "{\"median\": %.1f, \"max\": %.1f}}}, ",
               b1_med, b1_min, b1_p90, t10k_med, t10k_max, t128_med, t128_max);
    printf("\"rss_after_compile_mb\": %.2f, \"rss_after_load_mb\": %.2f, \"rss_after_train_mb\": "
           "%.2f, "
           "\"peak_rss_mb\": %.2f}\n",
           rss_create, rss_load, rss_train, rss_end);
    free(ep);
    free(eps);
    free(sl.t);
    free(sl.cpu);
    kiln_dataset_dispose(train);
    kiln_dataset_dispose(test);
    kiln_model_dispose(mo);
    kiln_diag_dispose(d);
    kiln_distributed_finalize();
    return 0;
}

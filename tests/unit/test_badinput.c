/*
 * test_badinput.c — what a user sees when the input is bad, through the C
 * API, by exact text (tests/sh/badinput_*.sh check the same through the
 * command line, where each is one line on stderr):
 *
 *  - limits: model files and .kir modules of absurd size (a dimension of
 *    2^40, a million layers, deep nesting) are refused with a message
 *    before anything is allocated for them (the library's allocation
 *    counter says so; a model that is accepted allocates per layer);
 *  - training guards: a loss that turns NaN or Inf stops training with a
 *    message naming the step and the first non-finite tensor (an input and
 *    its sample, or the op and its source line), and the model keeps the
 *    weights the failing step started from; continue_on_nonfinite trains
 *    on; a checkpoint is never written with non-finite weights over a
 *    good one;
 *  - datasets that do not fit the model: images of another size, labels
 *    out of range, NaN in float images.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/data.h"
#include "testutil.h"

/* The runtime's dataset handle (runtime/model.c): a test reaches inside it
 * to put a NaN where the loader's check cannot see it. */
struct kiln_dataset {
    rt_dataset *rt;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *repeat(const char *head, const char *unit, long n, const char *last,
                    const char *tail) {
    size_t hl = strlen(head), ul = strlen(unit), ll = strlen(last), tl = strlen(tail);
    char *s = malloc(hl + ul * (size_t)n + ll + tl + 1), *p = s;
    memcpy(p, head, hl), p += hl;
    for (long i = 0; i < n; i++) memcpy(p, unit, ul), p += ul;
    memcpy(p, last, ll), p += ll;
    memcpy(p, tail, tl + 1);
    return s;
}

/* The first line of a message (static buffer). */
static const char *first_line(const char *msg) {
    static char buf[1024];
    size_t n = strcspn(msg, "\n");
    snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf - 1 ? n : sizeof buf - 1), msg);
    return buf;
}

static int count_lines(const char *msg) {
    int n = 0;
    for (; *msg; msg++) n += *msg == '\n';
    return n;
}

typedef kiln_status (*parse_fn)(const char *, size_t, const char *, kiln_module **, kiln_diag *);

/* Parses text (with the model-file or the .kir parser), expects `st` and
 * a message whose first line is `want`, after at most `max_allocs`
 * allocations through the library's allocator (its own counter): the limit
 * is found by a scan of the text, before anything is built for what it
 * asks (measured 2026-12-07: 1 to 13 allocations, 396 for 100,000 calls on
 * one line). The time is printed, not asserted. */
static void refuse(parse_fn parse, const char *file, const char *text, kiln_status want_st,
                   const char *want, int want_lines, long max_allocs) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    double t0 = now_s();
    kiln_test_alloc_fail_at(0); /* resets the count */
    kiln_status st = parse(text, strlen(text), file, &m, d);
    long allocs = kiln_test_alloc_count();
    double dt = now_s() - t0;
    ck_assert_msg(st == want_st, "%s: status %s, expected %s:\n%s", file, kiln_status_string(st),
                  kiln_status_string(want_st), kiln_diag_message(d));
    ck_assert_ptr_null(m);
    ck_assert_str_eq(first_line(kiln_diag_message(d)), want);
    ck_assert_int_eq(count_lines(kiln_diag_message(d)), want_lines);
    kiln_diag_dispose(d);
    printf("limits: %-14s refused in %.3f s after %ld allocations: %s\n", file, dt, allocs, want);
    ck_assert_msg(allocs <= max_allocs, "%s: %ld allocations before the refusal (at most %ld)",
                  file, allocs, max_allocs);
}

/* ----------------------------------------------------------------- .kiln */

START_TEST(limits_model_file) {
    /* A dimension of 2^40, whole message. */
    const char *dim = "input x : f32[?, 1099511627776]\noutput dense(x, 3)\n";
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_model_file_parse(dim, strlen(dim), "dim.kiln", &m, d), KILN_ERR_LIMIT);
    ck_assert_str_eq(kiln_diag_message(d),
                     "dim.kiln:1:18: error: dimension 1099511627776 is too large (the limit is "
                     "2147483647)\n"
                     "    input x : f32[?, 1099511627776]\n"
                     "                     ^\n");
    kiln_diag_dispose(d);
    refuse(kiln_model_file_parse, "units.kiln",
           "input x : f32[?, 4]\noutput dense(x, 1099511627776)\n", KILN_ERR_INVALID,
           "units.kiln:2:17: error: 'units' must be between 1 and 2147483647, got 1099511627776", 3,
           16);
    refuse(kiln_model_file_parse, "elems.kiln", "input x : f32[?, 65536, 65536]\noutput x\n",
           KILN_ERR_LIMIT,
           "elems.kiln:1:11: error: a sample of this type has more than 2^31 elements", 3, 16);
    refuse(kiln_model_file_parse, "kernel.kiln",
           "input x : f32[?, 100000]\noutput dense(x, 100000)\n", KILN_ERR_LIMIT,
           "kernel.kiln:2:8: error: dense: the kernel [100000, 100000] would have more than 2^31 "
           "elements",
           3, 16);

    /* A million layers on one line: refused at call 100,001. */
    char *calls = repeat("input x : f32[?, 4]\noutput ", "relu(x), ", 999999, "relu(x)", "\n");
    char want[256];
    snprintf(want, sizeof want,
             "calls.kiln:2:%d: error: too many layers: a model file may hold at most 100000 calls",
             8 + 100000 * 9);
    refuse(kiln_model_file_parse, "calls.kiln", calls, KILN_ERR_LIMIT, want, 3, 1000);
    free(calls);
    /* The counter's negative control: 2,000 layers that are accepted are
     * built, in more allocations than any refusal above makes (59 measured). */
    char *ok = repeat("input x : f32[?, 4]\noutput ", "relu(x), ", 1999, "relu(x)", "\n");
    kiln_module *om = NULL;
    kiln_diag *od = kiln_diag_create();
    kiln_test_alloc_fail_at(0);
    ck_assert_msg(kiln_model_file_parse(ok, strlen(ok), "ok.kiln", &om, od) == KILN_OK, "%s",
                  kiln_diag_message(od));
    ck_assert_int_gt(kiln_test_alloc_count(), 16);
    kiln_module_dispose(om);
    kiln_diag_dispose(od);
    free(ok);
    /* A million layers one per line: the file is over 16 MiB. */
    size_t cap = 30u << 20, len = 0;
    char *lines = malloc(cap);
    len += (size_t)snprintf(lines, cap, "input x : f32[?, 4]\nh0 = relu(x)\n");
    for (int i = 1; i < 1000000; i++)
        len += (size_t)snprintf(lines + len, cap - len, "h%d = relu(h%d)\n", i, i - 1);
    snprintf(lines + len, cap - len, "output h999999\n");
    refuse(kiln_model_file_parse, "lines.kiln", lines, KILN_ERR_LIMIT,
           "kiln: error: lines.kiln: a model file may hold at most 16 MiB", 1, 16);
    free(lines);

    /* Deep nesting: calls, then lists. */
    char *deep = repeat("input x : f32[?, 4]\noutput ", "relu(", 100000, "x", "");
    char *deep2 = repeat(deep, ")", 100000, "\n", "");
    refuse(kiln_model_file_parse, "deep.kiln", deep2, KILN_ERR_LIMIT,
           "deep.kiln:2:1288: error: expression nested too deeply (more than 256 levels)", 3, 16);
    free(deep);
    free(deep2);
    char *list = repeat("input x : f32[?, 4]\noutput x\ntrain { metrics = ", "[", 100000, "", "\n");
    refuse(kiln_model_file_parse, "list.kiln", list, KILN_ERR_LIMIT,
           "list.kiln:3:275: error: expression nested too deeply (more than 256 levels)", 3, 16);
    free(list);
}
END_TEST

/* ------------------------------------------------------------------- .kir */

START_TEST(limits_kir) {
    const char *dim = "module @m\nparam @w : f32[1099511627776] = zeros\n";
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_module_parse(dim, strlen(dim), "dim.kir", &m, d), KILN_ERR_LIMIT);
    ck_assert_str_eq(kiln_diag_message(d),
                     "dim.kir:2:16: error: dimension 1099511627776 is out of range [0, 2^31]\n"
                     "    param @w : f32[1099511627776] = zeros\n"
                     "                   ^\n");
    kiln_diag_dispose(d);
    refuse(kiln_module_parse, "elems.kir", "module @m\nparam @w : f32[65536,65536] = zeros\n",
           KILN_ERR_LIMIT, "elems.kir:2:12: error: type has more than 2^31 elements", 3, 16);
    refuse(kiln_module_parse, "arg.kir",
           "module @m\nfunc @f(%x : f32[?,4294967296]) -> f32[?,4294967296] {\n  return %x\n}\n",
           KILN_ERR_LIMIT, "arg.kir:2:20: error: dimension 4294967296 is out of range [0, 2^31]", 3,
           16);
    refuse(kiln_module_parse, "const.kir",
           "module @m\nfunc @f() -> f32[1099511627776] {\n"
           "  %0 = constant() {value=1} : f32[1099511627776]\n  return %0\n}\n",
           KILN_ERR_LIMIT,
           "const.kir:2:18: error: dimension 1099511627776 is out of range [0, 2^31]", 3, 16);

    /* A million nodes: refused where node 262,145 is defined, before any is built. */
    size_t cap = 48u << 20, len = 0;
    char *text = malloc(cap);
    len += (size_t)snprintf(text, cap,
                            "module @m\nfunc @f(%%x : f32[?,4]) -> f32[?,4] {\n"
                            "  %%0 = relu(%%x) : f32[?,4]\n");
    for (int i = 1; i < 1000000; i++)
        len +=
            (size_t)snprintf(text + len, cap - len, "  %%%d = relu(%%%d) : f32[?,4]\n", i, i - 1);
    snprintf(text + len, cap - len, "  return %%999999\n}\n");
    refuse(kiln_module_parse, "nodes.kir", text, KILN_ERR_LIMIT,
           "nodes.kir:262147:3: error: module has more than 262144 nodes", 3, 16);
    /* Unlabeled nodes are counted as they are parsed. */
    len = (size_t)snprintf(text, cap,
                           "module @m\nstate @s : f32[] = zeros\nfunc @f() -> () {\n"
                           "  %%0 = constant() {value=1} : f32[]\n");
    for (int i = 1; i < 1000000; i++)
        len += (size_t)snprintf(text + len, cap - len, "  assign(@s, %%0)\n");
    snprintf(text + len, cap - len, "  return\n}\n");
    refuse(kiln_module_parse, "assigns.kir", text, KILN_ERR_LIMIT,
           "assigns.kir:262148:3: error: module has more than 262144 nodes", 3, 16);
    free(text);

    /* Deep nesting: a fused region in a fused region is refused at once. */
    char *deep = repeat("module @m\nfunc @f(%x : f32[?,4]) -> f32[?,4] {\n",
                        "  %r = fused(%x) : f32[?,4] {\n", 100000, "", "");
    refuse(kiln_module_parse, "deep.kir", deep, KILN_ERR_PARSE,
           "deep.kir:4:8: error: fused cannot appear in a fused region (only elementwise ops and "
           "assign)",
           3, 16);
    free(deep);
    /* More text than a module may hold. */
    size_t big = (256u << 20) + 1;
    char *huge = malloc(big + 1);
    memset(huge, '#', big);
    huge[big] = 0;
    refuse(kiln_module_parse, "huge.kir", huge, KILN_ERR_LIMIT,
           "kiln: error: huge.kir: a module may hold at most 256 MiB of text", 1, 16);
    free(huge);
}
END_TEST

/* --------------------------------------------------------- training guards */

static char g_dir[64];

static void path_in(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static void write_file(const char *name, const void *data, size_t n) {
    char p[128];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* An IDX file: type, dims, big-endian elements (uint8 or float32). */
static void write_idx(const char *name, int type, int rank, const uint32_t *dims, const void *elems,
                      size_t esize, size_t count) {
    size_t n = 4 + 4 * (size_t)rank + esize * count;
    unsigned char *b = malloc(n), *p = b;
    *p++ = 0, *p++ = 0, *p++ = (unsigned char)type, *p++ = (unsigned char)rank;
    for (int i = 0; i < rank; i++)
        for (int k = 3; k >= 0; k--) *p++ = (unsigned char)(dims[i] >> (8 * k));
    for (size_t i = 0; i < count; i++)
        for (size_t k = 0; k < esize; k++)
            *p++ = ((const unsigned char *)elems)[i * esize + esize - 1 - k];
    write_file(name, b, n);
    free(b);
}

enum { N = 12 };

/* 12 samples of 2x2 images: uint8 in "u8", float32 in "f32"; labels 0..2. */
static void make_data(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln-bad-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    uint8_t px[N * 4], lab[N];
    float fx[N * 4];
    for (int i = 0; i < N * 4; i++) px[i] = (uint8_t)((i * 37) % 256), fx[i] = (float)px[i] / 255;
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)(i % 3);
    uint32_t idims[3] = {N, 2, 2}, ldims[1] = {N};
    write_idx("u8", 0x08, 3, idims, px, 1, N * 4);
    write_idx("f32", 0x0D, 3, idims, fx, 4, N * 4);
    write_idx("labels", 0x08, 1, ldims, lab, 1, N);
    uint32_t bdims[3] = {N, 3, 3};
    uint8_t big[N * 9] = {0};
    write_idx("u8_3x3", 0x08, 3, bdims, big, 1, N * 9);
    lab[7] = 5;
    write_idx("labels_5", 0x08, 1, ldims, lab, 1, N);
    fx[6 * 4 + 2] = NAN;
    write_idx("f32_nan", 0x0D, 3, idims, fx, 4, N * 4);
}

static void remove_data(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static kiln_dataset *dataset(const char *images, const char *labels) {
    char a[128], b[128];
    path_in(a, sizeof a, images);
    path_in(b, sizeof b, labels);
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = NULL;
    ck_assert_msg(kiln_dataset_load_idx(a, b, &ds, d) == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return ds;
}

static kiln_model *model(const char *file, const char *text, kiln_backend backend) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_msg(kiln_model_file_parse(text, strlen(text), file, &m, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    kiln_model *mo = NULL;
    kiln_model_opts o = {backend, 1, 3, KILN_GEMM_AUTO};
    ck_assert_msg(kiln_model_create(m, &o, &mo, d) == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return mo;
}

/* Plain SGD with a learning rate that makes the weights blow up in 3 steps. */
static const char k_blowup[] = "model blowup\n"
                               "input x : f32[?, 4]\n"
                               "label y : f32[?, 3]\n"
                               "h = dense(x, 5)\n"
                               "p = dense(h, 3)\n"
                               "output p\n"
                               "loss mse(p, y)\n"
                               "train {\n"
                               "  optimizer = sgd(lr=1e6)\n"
                               "  batch_size = 4\n"
                               "}\n";

static const char k_tiny[] = "model tiny\n"
                             "input x : f32[?, 4]\n"
                             "label y : f32[?, 3]\n"
                             "h = dense(x, 5, activation=relu)\n"
                             "p = dense(h, 3, activation=softmax)\n"
                             "output p\n"
                             "loss categorical_crossentropy(p, y)\n"
                             "train {\n"
                             "  optimizer = adam(lr=0.01)\n"
                             "  batch_size = 4\n"
                             "}\n";

static bool all_finite(kiln_model *mo, const char *name, float *w, int64_t n) {
    ck_assert_int_eq(kiln_model_get_weights(mo, name, w, n, NULL), KILN_OK);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i])) return false;
    return true;
}

START_TEST(guard_diverging_loss) {
    make_data();
    kiln_dataset *ds = dataset("u8", "labels");
    const kiln_backend backends[2] = {KILN_BACKEND_JIT, KILN_BACKEND_INTERP};
    for (int b = 0; b < 2; b++) {
        kiln_model *mo = model("blowup.kiln", k_blowup, backends[b]);
        kiln_diag *d = kiln_diag_create();
        kiln_fit_opts o = {0};
        o.epochs = 5;
        ck_assert_int_eq(kiln_model_fit(mo, ds, &o, d), KILN_ERR_NONFINITE);
        ck_assert_str_eq(kiln_diag_message(d),
                         "kiln: error: step 3: the loss is infinite: the first non-finite value "
                         "(-Inf) is computed by dense at blowup.kiln:5:5; the model keeps the "
                         "weights of step 2 (use --continue-on-nan to go on)\n");
        /* The weights are those after step 2, bit for bit: a model that
         * stops there by itself has the same. */
        kiln_model *two = model("blowup.kiln", k_blowup, backends[b]);
        o.max_steps = 2;
        ck_assert_int_eq(kiln_model_fit(two, ds, &o, d), KILN_OK);
        const char *names[4] = {"h.kernel", "h.bias", "p.kernel", "p.bias"};
        const int64_t sizes[4] = {20, 5, 15, 3};
        for (int i = 0; i < 4; i++) {
            float w1[20], w2[20];
            ck_assert_msg(all_finite(mo, names[i], w1, sizes[i]), "%s is not finite", names[i]);
            ck_assert_int_eq(kiln_model_get_weights(two, names[i], w2, sizes[i], NULL), KILN_OK);
            ck_assert_msg(memcmp(w1, w2, sizeof(float) * (size_t)sizes[i]) == 0,
                          "%s differs from the weights of step 2", names[i]);
        }
        kiln_model_dispose(two);
        kiln_diag_dispose(d);
        kiln_model_dispose(mo);
    }
    kiln_dataset_dispose(ds);
    remove_data();
}
END_TEST

/* A NaN the loader never saw (put into the dataset after its check). */
START_TEST(guard_nan_input) {
    make_data();
    kiln_dataset *ds = dataset("f32", "labels");
    /* The handle is as declared above (else this test reaches the wrong memory). */
    ck_assert(ds->rt->n == kiln_dataset_count(ds) && ds->rt->is_float && ds->rt->f32);
    ds->rt->f32[9 * 4 + 2] = NAN; /* sample 9, value 2 */
    kiln_model *mo = model("tiny.kiln", k_tiny, KILN_BACKEND_JIT);
    kiln_diag *d = kiln_diag_create();
    kiln_fit_opts o = {0};
    o.no_shuffle = 1;
    ck_assert_int_eq(kiln_model_fit(mo, ds, &o, d), KILN_ERR_NONFINITE);
    char want[512], images[128];
    path_in(images, sizeof images, "f32");
    snprintf(want, sizeof want,
             "kiln: error: step 3: the loss is NaN: input 'x' holds NaN (value 2 of sample 9 of "
             "%s); the model keeps the weights of step 2 (use --continue-on-nan to go on)\n",
             images);
    ck_assert_str_eq(kiln_diag_message(d), want);
    float w[20];
    ck_assert(all_finite(mo, "h.kernel", w, 20));
    /* Shuffled: the sample is named by its place in the dataset. */
    kiln_model_dispose(mo);
    mo = model("tiny.kiln", k_tiny, KILN_BACKEND_INTERP);
    kiln_diag_clear(d);
    o.no_shuffle = 0;
    o.batch_size = 12;
    ck_assert_int_eq(kiln_model_fit(mo, ds, &o, d), KILN_ERR_NONFINITE);
    snprintf(want, sizeof want,
             "kiln: error: step 1: the loss is NaN: input 'x' holds NaN (value 2 of sample 9 of "
             "%s); the model keeps the weights of step 0 (use --continue-on-nan to go on)\n",
             images);
    ck_assert_str_eq(kiln_diag_message(d), want);
    kiln_diag_dispose(d);
    kiln_model_dispose(mo);
    kiln_dataset_dispose(ds);
    remove_data();
}
END_TEST

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    ck_assert_int_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* continue_on_nonfinite trains on; the weights it ends with are never
 * saved over a good checkpoint. */
START_TEST(guard_continue_and_save) {
    make_data();
    kiln_dataset *ds = dataset("u8", "labels");
    char ckpt[128];
    path_in(ckpt, sizeof ckpt, "good.safetensors");
    kiln_diag *d = kiln_diag_create();
    kiln_model *mo = model("blowup.kiln", k_blowup, KILN_BACKEND_JIT);
    kiln_fit_opts o = {0};
    o.max_steps = 1;
    ck_assert_int_eq(kiln_model_fit(mo, ds, &o, d), KILN_OK);
    ck_assert_int_eq(kiln_model_save(mo, ckpt, d), KILN_OK);
    size_t good_len;
    char *good = slurp(ckpt, &good_len);
    o.max_steps = 0;
    o.epochs = 3;
    o.continue_on_nonfinite = 1;
    ck_assert_msg(kiln_model_fit(mo, ds, &o, d) == KILN_OK, "%s", kiln_diag_message(d));
    ck_assert_int_eq(kiln_model_history_count(mo), 4);
    ck_assert(!isfinite(kiln_model_history(mo, 3).loss));
    ck_assert_int_eq(kiln_model_save(mo, ckpt, d), KILN_ERR_NONFINITE);
    char want[512];
    snprintf(want, sizeof want,
             "kiln: error: %s: not saved: tensor 'h.kernel' holds NaN at element 0; the previous "
             "checkpoint is kept\n",
             ckpt);
    ck_assert_str_eq(kiln_diag_message(d), want);
    size_t now_len;
    char *now = slurp(ckpt, &now_len);
    ck_assert_msg(now_len == good_len && memcmp(now, good, now_len) == 0,
                  "the good checkpoint was changed");
    free(now);
    free(good);
    kiln_diag_dispose(d);
    kiln_model_dispose(mo);
    kiln_dataset_dispose(ds);
    remove_data();
}
END_TEST

/* ------------------------------------------------------------- datasets */

START_TEST(data_does_not_fit) {
    make_data();
    kiln_model *mo = model("tiny.kiln", k_tiny, KILN_BACKEND_INTERP);
    kiln_diag *d = kiln_diag_create();
    char want[512], p[128];
    /* Images of another size. */
    kiln_dataset *ds = dataset("u8_3x3", "labels");
    ck_assert_int_eq(kiln_model_fit(mo, ds, NULL, d), KILN_ERR_SHAPE);
    path_in(p, sizeof p, "u8_3x3");
    snprintf(want, sizeof want, "kiln: error: %s: images are 3x3 = 9 values, the model expects 4\n",
             p);
    ck_assert_str_eq(kiln_diag_message(d), want);
    double loss, acc;
    kiln_diag_clear(d);
    ck_assert_int_eq(kiln_model_evaluate(mo, ds, 4, 0, &loss, &acc, d), KILN_ERR_SHAPE);
    ck_assert_str_eq(kiln_diag_message(d), want);
    kiln_dataset_dispose(ds);
    /* A label out of range. */
    kiln_diag_clear(d);
    ds = dataset("u8", "labels_5");
    ck_assert_int_eq(kiln_model_fit(mo, ds, NULL, d), KILN_ERR_INVALID);
    path_in(p, sizeof p, "labels_5");
    snprintf(want, sizeof want,
             "kiln: error: %s: label 5 of sample 7 is out of range: the model has 3 classes "
             "(0..2)\n",
             p);
    ck_assert_str_eq(kiln_diag_message(d), want);
    kiln_dataset_dispose(ds);
    /* NaN in float images: refused by the loader. */
    kiln_diag_clear(d);
    char a[128], b[128];
    path_in(a, sizeof a, "f32_nan");
    path_in(b, sizeof b, "labels");
    ds = NULL;
    ck_assert_int_eq(kiln_dataset_load_idx(a, b, &ds, d), KILN_ERR_NONFINITE);
    ck_assert_ptr_null(ds);
    snprintf(want, sizeof want, "kiln: error: %s: value 2 of image 6 is NaN\n", a);
    ck_assert_str_eq(kiln_diag_message(d), want);
    kiln_diag_dispose(d);
    kiln_model_dispose(mo);
    remove_data();
}
END_TEST

/* Image layers: each shape error at the call, naming the layer and shapes. */
START_TEST(image_layers) {
    static const struct {
        const char *body, *want;
        kiln_status st;
    } cases[] = {
        {"c = conv2d(x, 4, 5)\n",
         "img.kiln:2:5: error: conv2d 'c': the window 5x5 is larger than the input f32[?,4,4,1] "
         "(padding valid)",
         KILN_ERR_SHAPE},
        {"c = conv2d(x, 4, 3, strides=0)\n",
         "img.kiln:2:29: error: conv2d 'c' on f32[?,4,4,1]: 'strides' must be between 1 and "
         "1048576, got 0",
         KILN_ERR_INVALID},
        {"c = max_pooling2d(x, 0)\n",
         "img.kiln:2:22: error: max_pooling2d 'c' on f32[?,4,4,1]: 'pool_size' must be between 1 "
         "and 1048576, got 0",
         KILN_ERR_INVALID},
        {"c = max_pooling2d(x, [3, 5])\n",
         "img.kiln:2:5: error: max_pooling2d 'c': the window 3x5 is larger than the input "
         "f32[?,4,4,1] (padding valid)",
         KILN_ERR_SHAPE},
        {"c = conv2d(x, 4, 2, strides=2, dilation_rate=2)\n",
         "img.kiln:2:5: error: conv2d 'c': strides > 1 and dilation_rate > 1 cannot be combined "
         "(as in Keras)",
         KILN_ERR_INVALID},
        {"c = reshape(x, [5, 2])\n",
         "img.kiln:2:5: error: reshape 'c': target_shape holds 10 values a sample, the input 16, "
         "got f32[?,4,4,1]",
         KILN_ERR_SHAPE},
        {"c = conv2d(flatten(x), 4, 2)\n",
         "img.kiln:2:5: error: conv2d 'c': the input must be an image [?, h, w, c], got f32[?,16]",
         KILN_ERR_SHAPE},
        {"c = average_pooling2d(x, 2, strides=[1, 0])\n",
         "img.kiln:2:41: error: average_pooling2d 'c' on f32[?,4,4,1]: 'strides' must be between "
         "1 and 1048576, got 0",
         KILN_ERR_INVALID},
        {"c = batch_normalization(x, axis=4)\n",
         "img.kiln:2:33: error: batch_normalization 'c': axis 4 does not exist in the input "
         "f32[?,4,4,1]; only the last axis (-1) is supported",
         KILN_ERR_INVALID},
        {"c = dropout(x, 1.5)\n",
         "img.kiln:2:16: error: dropout 'c' on f32[?,4,4,1]: 'rate' must be in [0, 1), got 1.5",
         KILN_ERR_INVALID},
    };
    for (size_t i = 0; i < KILN_ARRAY_LEN(cases); i++) {
        char text[256];
        snprintf(text, sizeof text, "input x : f32[?, 4, 4, 1]\n%soutput c\n", cases[i].body);
        refuse(kiln_model_file_parse, "img.kiln", text, cases[i].st, cases[i].want, 3, 100000);
    }
    /* Images of the right size but another shape than the model's input. */
    make_data();
    kiln_model *mo = model("img.kiln",
                           "model img\ninput x : f32[?, 1, 4, 1]\nlabel y : f32[?, 3]\n"
                           "p = dense(flatten(conv2d(x, 2, 1)), 3, activation=softmax)\n"
                           "output p\nloss categorical_crossentropy(p, y)\n",
                           KILN_BACKEND_INTERP);
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = dataset("u8", "labels");
    ck_assert_int_eq(kiln_model_fit(mo, ds, NULL, d), KILN_ERR_SHAPE);
    char want[512], p[128];
    path_in(p, sizeof p, "u8");
    snprintf(want, sizeof want,
             "img.kiln:2:7: error: %s: images are 2x2, the model's input 'x' is f32[?,1,4,1]\n", p);
    ck_assert_str_eq(kiln_diag_message(d), want);
    kiln_dataset_dispose(ds);
    kiln_model_dispose(mo);
    /* The same images as [?, 2, 2, 1] train. */
    mo = model("img.kiln",
               "model img\ninput x : f32[?, 2, 2, 1]\nlabel y : f32[?, 3]\n"
               "p = dense(flatten(max_pooling2d(conv2d(x, 2, 1, activation=relu), 1)), 3, "
               "activation=softmax)\noutput p\nloss categorical_crossentropy(p, y)\n"
               "train {\n  batch_size = 4\n}\n",
               KILN_BACKEND_JIT);
    kiln_diag_clear(d);
    ds = dataset("u8", "labels");
    ck_assert_msg(kiln_model_fit(mo, ds, NULL, d) == KILN_OK, "%s", kiln_diag_message(d));
    kiln_dataset_dispose(ds);
    kiln_model_dispose(mo);
    kiln_diag_dispose(d);
    remove_data();
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("badinput");
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 120);
    tcase_add_test(lim, limits_model_file);
    tcase_add_test(lim, limits_kir);
    suite_add_tcase(s, lim);
    TCase *tr = tcase_create("training");
    tcase_set_timeout(tr, 120);
    tcase_add_test(tr, guard_diverging_loss);
    tcase_add_test(tr, guard_nan_input);
    tcase_add_test(tr, guard_continue_and_save);
    tcase_add_test(tr, data_does_not_fit);
    tcase_add_test(tr, image_layers);
    suite_add_tcase(s, tr);
    return s;
}

int main(void) {
    return tu_run_suite(suite());
}

/*
 * test_faults.c — allocation failures, SQLite's way: allocation number N
 * fails (and every one after it), for N = 1, 2, ... until a run sees no
 * failure, through each job Kiln does:
 *
 *   parse      a model file (kiln_model_file_parse) and a .kir module
 *   pipeline   the "train" pipeline on the parsed model
 *   compile    kiln_model_create: JIT code generation and the weights
 *   data       loading a gzipped IDX dataset
 *   fit        a few training steps on that dataset
 *   evaluate   and predict
 *   save       a checkpoint over an existing one
 *   load       a checkpoint into a model
 *
 * Every run that hit the failure must end in KILN_ERR_NOMEM with the one
 * line "kiln: error: out of memory" and nothing leaked: the blocks Kiln
 * allocated are all freed again (kiln_test_alloc_live, in every build), and
 * in the sanitizer build LeakSanitizer checks after each job, which also
 * catches LLVM objects that an error path forgot to dispose. Only Kiln's own
 * allocations are counted and failed (ir_malloc and friends, which zlib and
 * the safetensors reader use too); LLVM's and OpenBLAS's go to the system allocator and never
 * fail here. A failed save must leave the previous checkpoint as it was, and
 * a failed load must leave the model's weights as they were.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_HAVE_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KILN_HAVE_LSAN 1
#endif
#ifdef KILN_HAVE_LSAN
int __lsan_do_recoverable_leak_check(void);
#endif

static const char k_model[] = "model tiny\n"
                              "input x : f32[?, 4]\n"
                              "label y : f32[?, 3]\n"
                              "h = dense(x, 5, activation=relu)\n"
                              "p = dense(h, 3, activation=softmax)\n"
                              "output p\n"
                              "loss categorical_crossentropy(p, y)\n"
                              "train {\n"
                              "  optimizer = adam(lr=0.01)\n"
                              "  epochs = 1\n"
                              "  batch_size = 4\n"
                              "  metrics = [accuracy]\n"
                              "}\n";

enum { N_SAMPLES = 10 };
static char g_dir[256], g_images[300], g_labels[300], g_ckpt[300];

/* ------------------------------------------------------------ the sweep */

typedef struct job {
    const char *name;
    void (*setup)(void *ctx);                    /* outside the injection */
    kiln_status (*run)(void *ctx, kiln_diag *d); /* allocation N fails here */
    void (*check)(void *ctx, kiln_status st);    /* outside: what it left */
    void (*teardown)(void *ctx);                 /* outside: frees what run made */
} job;

/* Runs the job with allocation N failing for N = 1, 2, ... until a run
 * completes without reaching N; returns the number of runs. */
static long sweep(const job *j, void *ctx) {
    long n;
    for (n = 1;; n++) {
        long live = kiln_test_alloc_live();
        if (j->setup) j->setup(ctx);
        kiln_diag *d = kiln_diag_create();
        ck_assert_ptr_nonnull(d);
        kiln_test_alloc_fail_at(n);
        kiln_status st = j->run(ctx, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (failed) {
            ck_assert_msg(st == KILN_ERR_NOMEM,
                          "%s: allocation %ld failed, but the status is %d (%s):\n%s", j->name, n,
                          (int)st, kiln_status_string(st), kiln_diag_message(d));
            ck_assert_msg(strcmp(kiln_diag_message(d), "kiln: error: out of memory\n") == 0,
                          "%s: allocation %ld failed; the message is not one out-of-memory "
                          "line:\n%s",
                          j->name, n, kiln_diag_message(d));
        } else {
            ck_assert_msg(st == KILN_OK, "%s: failed without an injected failure:\n%s", j->name,
                          kiln_diag_message(d));
        }
        if (j->check) j->check(ctx, st);
        if (j->teardown) j->teardown(ctx);
        kiln_diag_dispose(d);
        long leaked = kiln_test_alloc_live() - live;
        ck_assert_msg(leaked == 0, "%s: with allocation %ld failing, %ld blocks leaked", j->name, n,
                      leaked);
        if (!failed) break;
    }
#ifdef KILN_HAVE_LSAN
    ck_assert_msg(__lsan_do_recoverable_leak_check() == 0, "%s: LeakSanitizer found leaks",
                  j->name);
#endif
    printf("faults: %-9s %4ld runs: every failed allocation gave a clean error\n", j->name, n);
    return n;
}

/* -------------------------------------------------------------- fixtures */

static void write_idx(const char *path, uint8_t dtype, int rank, const uint32_t *dims,
                      const void *data, size_t bytes) {
    gzFile f = gzopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint8_t head[4] = {0, 0, dtype, (uint8_t)rank};
    gzwrite(f, head, 4);
    for (int i = 0; i < rank; i++) {
        uint8_t b[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16), (uint8_t)(dims[i] >> 8),
                        (uint8_t)dims[i]};
        gzwrite(f, b, 4);
    }
    gzwrite(f, data, (unsigned)bytes);
    ck_assert_int_eq(gzclose(f), Z_OK);
}

static void make_files(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln-faults-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_images, sizeof g_images, "%s/images.gz", g_dir);
    snprintf(g_labels, sizeof g_labels, "%s/labels.gz", g_dir);
    snprintf(g_ckpt, sizeof g_ckpt, "%s/ckpt.safetensors", g_dir);
    uint8_t px[N_SAMPLES * 4], lab[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES; i++) {
        lab[i] = (uint8_t)(i % 3);
        for (int k = 0; k < 4; k++) px[i * 4 + k] = (uint8_t)(lab[i] == k ? 250 : 10 + 7 * i);
    }
    uint32_t idims[3] = {N_SAMPLES, 2, 2}, ldims[1] = {N_SAMPLES};
    write_idx(g_images, 0x08, 3, idims, px, sizeof px);
    write_idx(g_labels, 0x08, 1, ldims, lab, sizeof lab);
}

static void remove_files(void) {
    char tmp[600];
    snprintf(tmp, sizeof tmp, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(tmp), 0);
}

static kiln_module *parse_model(void) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_model_file_parse(k_model, sizeof k_model - 1, "tiny.kiln", &m, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return m;
}

static kiln_model *make_model(kiln_backend backend) {
    kiln_diag *d = kiln_diag_create();
    kiln_model *model = NULL;
    kiln_model_opts o = {backend, 1, 7, KILN_GEMM_AUTO};
    kiln_status st = kiln_model_create(parse_model(), &o, &model, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return model;
}

static kiln_dataset *load_data(void) {
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = NULL;
    kiln_status st = kiln_dataset_load_idx(g_images, g_labels, &ds, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return ds;
}

/* ------------------------------------------------------------------ parse */

typedef struct parse_ctx {
    kiln_module *m;
    char *kir; /* the tiny model as .kir text */
} parse_ctx;

static kiln_status run_parse_kiln(void *ctx, kiln_diag *d) {
    parse_ctx *c = ctx;
    return kiln_model_file_parse(k_model, sizeof k_model - 1, "tiny.kiln", &c->m, d);
}

static kiln_status run_parse_kir(void *ctx, kiln_diag *d) {
    parse_ctx *c = ctx;
    return kiln_module_parse(c->kir, strlen(c->kir), "tiny.kir", &c->m, d);
}

static void check_parse(void *ctx, kiln_status st) {
    parse_ctx *c = ctx;
    ck_assert_msg(st ? c->m == NULL : c->m != NULL, "a module with an error, or none without");
}

static void free_module(void *ctx) {
    parse_ctx *c = ctx;
    kiln_module_dispose(c->m);
    c->m = NULL;
}

START_TEST(test_parse) {
    parse_ctx c = {0};
    job kiln = {"parse", NULL, run_parse_kiln, check_parse, free_module};
    ck_assert_int_gt(sweep(&kiln, &c), 10);
    kiln_module *m = parse_model();
    kiln_module_run_passes(m, "train", NULL, NULL);
    c.kir = kiln_module_print(m);
    kiln_module_dispose(m);
    job kir = {"parse-kir", NULL, run_parse_kir, check_parse, free_module};
    ck_assert_int_gt(sweep(&kir, &c), 10);
    kiln_free(c.kir);
}
END_TEST

/* -------------------------------------------------------------- pipeline */

static void setup_module(void *ctx) {
    parse_ctx *c = ctx;
    c->m = parse_model();
}

static kiln_status run_pipeline(void *ctx, kiln_diag *d) {
    parse_ctx *c = ctx;
    return kiln_module_run_passes(c->m, "train", NULL, d);
}

START_TEST(test_pipeline) {
    parse_ctx c = {0};
    job j = {"pipeline", setup_module, run_pipeline, NULL, free_module};
    ck_assert_int_gt(sweep(&j, &c), 10);
}
END_TEST

/* --------------------------------------------------------------- compile */

typedef struct model_ctx {
    kiln_module *m;
    kiln_model *model;
    kiln_backend backend;
    kiln_dataset *ds;
    float before[4 * 5], x[N_SAMPLES * 4], y[N_SAMPLES * 3];
    double loss, acc;
} model_ctx;

static void setup_compile(void *ctx) {
    model_ctx *c = ctx;
    kiln_module *m = parse_model();
    /* The pipeline's own sweep is test_pipeline: here only what follows it. */
    ck_assert_int_eq(kiln_module_run_passes(m, "train", NULL, NULL), KILN_OK);
    c->m = m;
}

static kiln_status run_compile(void *ctx, kiln_diag *d) {
    model_ctx *c = ctx;
    kiln_model_opts o = {c->backend, 1, 7, KILN_GEMM_AUTO};
    kiln_module *m = c->m;
    c->m = NULL; /* taken by kiln_model_create, also on failure */
    return kiln_model_create(m, &o, &c->model, d);
}

static void check_compile(void *ctx, kiln_status st) {
    model_ctx *c = ctx;
    ck_assert_msg(st ? c->model == NULL : c->model != NULL,
                  "a model with an error, or none without");
}

static void free_model(void *ctx) {
    model_ctx *c = ctx;
    kiln_model_dispose(c->model);
    c->model = NULL;
}

START_TEST(test_compile) {
    model_ctx c = {0};
    c.backend = KILN_BACKEND_JIT;
    job jit = {"jit", setup_compile, run_compile, check_compile, free_model};
    ck_assert_int_gt(sweep(&jit, &c), 5);
    c.backend = KILN_BACKEND_INTERP;
    job interp = {"interp", setup_compile, run_compile, check_compile, free_model};
    ck_assert_int_gt(sweep(&interp, &c), 5);
}
END_TEST

/* ------------------------------------------------------------------ data */

static kiln_status run_data(void *ctx, kiln_diag *d) {
    model_ctx *c = ctx;
    return kiln_dataset_load_idx(g_images, g_labels, &c->ds, d);
}

static void free_data(void *ctx) {
    model_ctx *c = ctx;
    kiln_dataset_dispose(c->ds);
    c->ds = NULL;
}

START_TEST(test_data) {
    make_files();
    model_ctx c = {0};
    job j = {"data", NULL, run_data, NULL, free_data};
    ck_assert_int_gt(sweep(&j, &c), 5);
    remove_files();
}
END_TEST

/* ------------------------------------------------------------------- fit */

static void setup_fit(void *ctx) {
    model_ctx *c = ctx;
    c->model = make_model(c->backend);
}

static kiln_status run_fit(void *ctx, kiln_diag *d) {
    model_ctx *c = ctx;
    kiln_fit_opts o = {0};
    o.epochs = 2;
    o.batch_size = 4;
    o.max_steps = 5;
    o.checkpoint_path = g_ckpt;
    o.checkpoint_every = 2;
    return kiln_model_fit(c->model, c->ds, &o, d);
}

static kiln_status run_eval(void *ctx, kiln_diag *d) {
    model_ctx *c = ctx;
    kiln_status st = kiln_model_evaluate(c->model, c->ds, 3, 0, &c->loss, &c->acc, d);
    if (!st) st = kiln_dataset_read(c->ds, 0, N_SAMPLES, c->x, d);
    if (!st) st = kiln_model_predict(c->model, c->x, N_SAMPLES, c->y, d);
    return st;
}

START_TEST(test_fit) {
    make_files();
    model_ctx c = {0};
    c.ds = load_data();
    const kiln_backend backends[2] = {KILN_BACKEND_JIT, KILN_BACKEND_INTERP};
    for (int b = 0; b < 2; b++) {
        c.backend = backends[b];
        job fit = {b ? "fit-interp" : "fit", setup_fit, run_fit, NULL, free_model};
        ck_assert_int_gt(sweep(&fit, &c), 3);
        job ev = {b ? "eval-interp" : "evaluate", setup_fit, run_eval, NULL, free_model};
        ck_assert_int_gt(sweep(&ev, &c), 2);
    }
    kiln_dataset_dispose(c.ds);
    remove_files();
}
END_TEST

/* ----------------------------------------------------------- checkpoints */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

typedef struct ckpt_ctx {
    model_ctx mc;
    char *old;
    size_t old_len;
} ckpt_ctx;

static kiln_status run_save(void *ctx, kiln_diag *d) {
    ckpt_ctx *c = ctx;
    return kiln_model_save(c->mc.model, g_ckpt, d);
}

/* A failed save keeps the previous file byte for byte, and no temporary. */
static void check_save(void *ctx, kiln_status st) {
    ckpt_ctx *c = ctx;
    size_t len;
    char *now = read_all(g_ckpt, &len);
    if (st)
        ck_assert_msg(len == c->old_len && memcmp(now, c->old, len) == 0,
                      "a failed save changed the previous checkpoint");
    free(now);
    ck_assert_msg(tu_count_entries(g_dir, "tmp") == 0, "a temporary file was left behind");
    ck_assert_int_eq(tu_count_entries(g_dir, "images.gz"), 1); /* the listing sees files */
}

static kiln_status run_load(void *ctx, kiln_diag *d) {
    ckpt_ctx *c = ctx;
    kiln_status st = kiln_model_get_weights(c->mc.model, "h.kernel", c->mc.before, 20, NULL);
    ck_assert_int_eq(st, KILN_OK);
    return kiln_model_load(c->mc.model, g_ckpt, KILN_LOAD_STRICT, d);
}

/* A failed load leaves the weights as they were. */
static void check_load(void *ctx, kiln_status st) {
    ckpt_ctx *c = ctx;
    float now[20];
    ck_assert_int_eq(kiln_model_get_weights(c->mc.model, "h.kernel", now, 20, NULL), KILN_OK);
    if (st)
        ck_assert_msg(memcmp(now, c->mc.before, sizeof now) == 0,
                      "a failed load changed the weights");
}

START_TEST(test_checkpoint) {
    make_files();
    ckpt_ctx c;
    memset(&c, 0, sizeof c);
    c.mc.ds = load_data();
    /* A checkpoint after two steps, then the model one step further. */
    c.mc.model = make_model(KILN_BACKEND_JIT);
    kiln_diag *d = kiln_diag_create();
    kiln_fit_opts o = {0};
    o.max_steps = 2;
    ck_assert_int_eq(kiln_model_fit(c.mc.model, c.mc.ds, &o, d), KILN_OK);
    ck_assert_int_eq(kiln_model_save(c.mc.model, g_ckpt, d), KILN_OK);
    o.max_steps = 1;
    ck_assert_int_eq(kiln_model_fit(c.mc.model, c.mc.ds, &o, d), KILN_OK);
    c.old = read_all(g_ckpt, &c.old_len);
    job save = {"save", NULL, run_save, check_save, NULL};
    ck_assert_int_gt(sweep(&save, &c), 3);
    /* The last run saved: the file now holds step 3. Load it into a fresh
     * model (which is at step 0, with other weights). */
    kiln_model_dispose(c.mc.model);
    c.mc.model = make_model(KILN_BACKEND_JIT);
    job load = {"load", NULL, run_load, check_load, NULL};
    ck_assert_int_gt(sweep(&load, &c), 10);
    kiln_diag_dispose(d);
    kiln_model_dispose(c.mc.model);
    kiln_dataset_dispose(c.mc.ds);
    free(c.old);
    remove_files();
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("alloc");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_pipeline);
    tcase_add_test(tc, test_compile);
    tcase_add_test(tc, test_data);
    tcase_add_test(tc, test_fit);
    tcase_add_test(tc, test_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(suite());
}

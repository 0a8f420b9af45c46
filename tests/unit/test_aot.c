/* test_aot.c — ahead-of-time compilation: shared objects written by
 * kiln_compile_aot, loaded with dlopen as a C program would link them, held
 * against the JIT: inference within 1e-5, 100 train steps landing on the
 * same weights (and a checkpoint the runtime reads), the library's own
 * safetensors loader refusing bad files by exact text, argument errors,
 * label errors, and allocation failures while compiling. */
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/data.h"

#define DATA_DIR "/usr/share/datasets/fashion-mnist"

/* ---------------------------------------------------------------- helpers */

/* The entry points of a library with prefix "m". */
typedef struct lib {
    void *dl;
    uint32_t (*abi_version)(void);
    int (*check_version)(uint32_t, char *, size_t);
    const char *(*status_string)(int);
    size_t (*size)(int64_t);
    int (*init)(void *, size_t, int64_t, void **);
    int (*create)(int64_t, void **);
    void (*destroy)(void *);
    const char *(*last_error)(const void *);
    int (*load)(void *, const char *);
    int (*infer)(void *, int64_t, const float *, float *);
    int (*evaluate)(void *, int64_t, const float *, const void *, float *, float *);
    int (*train_step)(void *, int64_t, const float *, const void *, float *, float *);
    int (*save)(void *, const char *);
} lib;

static void *sym(lib *l, const char *name, bool required) {
    char full[64];
    snprintf(full, sizeof full, "m_%s", name);
    void *p = dlsym(l->dl, full);
    if (required) ck_assert_msg(p != NULL, "%s is not exported", full);
    return p;
}

static kiln_module *load_module(const char *path_or_text, bool text) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st =
        text ? kiln_model_file_parse(path_or_text, strlen(path_or_text), "model.kiln", &m, d)
             : kiln_model_file_load(path_or_text, &m, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return m;
}

/* Compiles a model (a file path, or .kiln text) to tmp/<so> and opens it. */
static lib compile_lib(const char *model, bool text, const char *so, const kiln_aot_opts *extra) {
    kiln_module *m = load_module(model, text);
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    if (extra) o = *extra;
    o.output = tu_tmp_path(so);
    o.prefix = "m";
    kiln_diag *d = kiln_diag_create();
    kiln_status st = kiln_compile_aot(m, &o, d);
    ck_assert_msg(st == KILN_OK, "compile: %s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
    lib l;
    memset(&l, 0, sizeof l);
    l.dl = dlopen(tu_tmp_path(so), RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(l.dl != NULL, "dlopen: %s", dlerror());
    *(void **)&l.abi_version = sym(&l, "abi_version", true);
    *(void **)&l.check_version = sym(&l, "check_version", true);
    *(void **)&l.status_string = sym(&l, "status_string", true);
    *(void **)&l.size = sym(&l, "size", true);
    *(void **)&l.init = sym(&l, "init", true);
    *(void **)&l.create = sym(&l, "create", true);
    *(void **)&l.destroy = sym(&l, "destroy", true);
    *(void **)&l.last_error = sym(&l, "last_error", true);
    *(void **)&l.load = sym(&l, "load", true);
    *(void **)&l.infer = sym(&l, "infer", true);
    *(void **)&l.evaluate = sym(&l, "evaluate", false);
    *(void **)&l.train_step = sym(&l, "train_step", o.train);
    *(void **)&l.save = sym(&l, "save", o.train);
    if (!o.train) ck_assert_ptr_null(dlsym(l.dl, "m_train_step"));
    return l;
}

static kiln_model *jit_model(const char *model, bool text, int64_t seed) {
    kiln_diag *d = kiln_diag_create();
    kiln_model_opts o = {KILN_BACKEND_JIT, 1, seed, KILN_GEMM_AUTO};
    kiln_model *mo = NULL;
    kiln_status st = kiln_model_create(load_module(model, text), &o, &mo, d);
    ck_assert_msg(st == KILN_OK, "model: %s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return mo;
}

static void *create(lib *l, int64_t max_batch) {
    void *h = NULL;
    int st = l->create(max_batch, &h);
    ck_assert_int_eq(st, KILN_OK);
    ck_assert_ptr_nonnull(h);
    ck_assert_str_eq(l->last_error(h), "");
    return h;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static const char *k_mnist = KILN_SOURCE_DIR "/examples/mnist_mlp.kiln";

/* ------------------------------------------------------------- inference */

START_TEST(infer_matches_jit) {
    /* Freshly initialized weights with one seed on both sides. */
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 7;
    lib l = compile_lib(k_mnist, false, "libm.so", &o);
    kiln_model *mo = jit_model(k_mnist, false, 7);
    enum { N = 300, IN = 784, OUT = 10 };
    float *x = malloc(sizeof(float) * N * IN), *a = malloc(sizeof(float) * N * OUT);
    float *b = malloc(sizeof(float) * N * OUT);
    tu_fill_uniform(x, (int64_t)N * IN, 11, 0.0f, 1.0f);
    void *h = create(&l, N);
    static const int batches[] = {1, 7, 128, N};
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        int nb = batches[k];
        ck_assert_int_eq(l.infer(h, nb, x, a), KILN_OK);
        ck_assert_int_eq(kiln_model_predict(mo, x, nb, b, NULL), KILN_OK);
        char what[64];
        snprintf(what, sizeof what, "batch %d: AOT vs JIT", nb);
        tu_assert_close_at_scale(a, b, (int64_t)nb * OUT, 1e-5, what);
        for (int r = 0; r < nb; r++) { /* every row, not just the first */
            double sum = 0;
            for (int j = 0; j < OUT; j++) sum += a[r * OUT + j];
            ck_assert_msg(tu_close(sum, 1, 1e-5, 0), "batch %d: softmax row %d sums to %.9g", nb, r,
                          sum);
        }
    }
    /* @infer runs 300 rows as chunks (plan-memory's chunk=132): each row as
     * it is alone, in a batch of 1. */
    ck_assert_int_eq(l.infer(h, N, x, a), KILN_OK);
    for (int r = 0; r < N; r++) {
        ck_assert_int_eq(kiln_model_predict(mo, x + (size_t)r * IN, 1, b, NULL), KILN_OK);
        char what[64];
        snprintf(what, sizeof what, "row %d of %d vs alone", r, N);
        tu_assert_close_at_scale(a + (size_t)r * OUT, b, OUT, 1e-5, what);
    }
    /* A batch of 1 repeatedly gives the same answer (no state leaks between calls). */
    ck_assert_int_eq(l.infer(h, 1, x + IN, a), KILN_OK);
    ck_assert_int_eq(kiln_model_predict(mo, x + IN, 1, b, NULL), KILN_OK);
    tu_assert_close_at_scale(a, b, OUT, 1e-5, "batch of 1: AOT vs JIT");
    l.destroy(h);
    kiln_model_dispose(mo);
    dlclose(l.dl);
    free(x);
    free(a);
    free(b);
}
END_TEST

/* The convnet example: AOT inference equals the JIT's (conv2d's im2col
 * workspace placed by the plan in both). */
START_TEST(cnn_infer_matches_jit) {
    static const char *cnn = KILN_SOURCE_DIR "/examples/fashion_cnn.kiln";
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 3;
    lib l = compile_lib(cnn, false, "libcnn.so", &o);
    kiln_model *mo = jit_model(cnn, false, 3);
    enum { N = 130, IN = 784, OUT = 10 };
    float *x = malloc(sizeof(float) * N * IN), *a = malloc(sizeof(float) * N * OUT);
    float *b = malloc(sizeof(float) * N * OUT);
    tu_fill_uniform(x, (int64_t)N * IN, 5, 0.0f, 1.0f);
    void *h = create(&l, N);
    static const int batches[] = {1, 7, N};
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        int nb = batches[k];
        ck_assert_int_eq(l.infer(h, nb, x, a), KILN_OK);
        ck_assert_int_eq(kiln_model_predict(mo, x, nb, b, NULL), KILN_OK);
        char what[64];
        snprintf(what, sizeof what, "cnn batch %d: AOT vs JIT", nb);
        tu_assert_close_at_scale(a, b, (int64_t)nb * OUT, 1e-5, what);
    }
    /* 130 images run as chunks of 4 (and a ragged 2): each as it is alone. */
    for (int r = 0; r < N; r++) {
        ck_assert_int_eq(kiln_model_predict(mo, x + (size_t)r * IN, 1, b, NULL), KILN_OK);
        char what[64];
        snprintf(what, sizeof what, "cnn image %d of %d vs alone", r, N);
        tu_assert_close_at_scale(a + (size_t)r * OUT, b, OUT, 1e-5, what);
    }
    l.destroy(h);
    kiln_model_dispose(mo);
    dlclose(l.dl);
    free(x);
    free(a);
    free(b);
}
END_TEST

/* Weights from a checkpoint (--load), embedded; and the same checkpoint
 * read at run time by a library without embedded weights. */
START_TEST(load_embeds_and_reads_checkpoints) {
    kiln_model *mo = jit_model(k_mnist, false, 5);
    /* Some training, so the weights differ from any initialization. */
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = NULL;
    ck_assert_msg(kiln_dataset_load(DATA_DIR, "test", &ds, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    kiln_dataset_truncate(ds, 640);
    kiln_fit_opts fo = {0};
    fo.epochs = 1;
    fo.batch_size = 64;
    ck_assert_int_eq(kiln_model_fit(mo, ds, &fo, d), KILN_OK);
    ck_assert_int_eq(kiln_model_save(mo, tu_tmp_path("ckpt.safetensors"), d), KILN_OK);

    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.load = tu_tmp_path("ckpt.safetensors");
    lib emb = compile_lib(k_mnist, false, "libemb.so", &o);
    memset(&o, 0, sizeof o);
    o.no_embed = 1;
    lib file = compile_lib(k_mnist, false, "libfile.so", &o);

    enum { N = 64, IN = 784, OUT = 10 };
    float x[N * IN], a[N * OUT], b[N * OUT], c[N * OUT];
    ck_assert_int_eq(kiln_dataset_read(ds, 0, N, x, d), KILN_OK);
    ck_assert_int_eq(kiln_model_predict(mo, x, N, c, d), KILN_OK);
    void *he = create(&emb, N), *hf = create(&file, N);
    ck_assert_int_eq(emb.infer(he, N, x, a), KILN_OK);
    tu_assert_close_at_scale(a, c, N * OUT, 1e-5, "embedded weights: AOT vs JIT");
    /* No weights yet: refused with a message that says what to do. */
    ck_assert_int_eq(file.infer(hf, N, x, b), KILN_ERR_INVALID);
    ck_assert_str_eq(file.last_error(hf),
                     "m_infer: the model has no weights yet: call m_load first");
    ck_assert_int_eq(file.load(hf, tu_tmp_path("ckpt.safetensors")), KILN_OK);
    ck_assert_int_eq(file.infer(hf, N, x, b), KILN_OK);
    tu_assert_close_at_scale(b, c, N * OUT, 1e-5, "loaded weights: AOT vs JIT");
    /* evaluate = the JIT's loss and accuracy on the same batch. */
    float y[N * OUT] = {0}, loss = 0, acc = 0;
    kiln_dataset_read(ds, 0, N, x, d);
    rt_dataset *rt = NULL;
    ck_assert_int_eq(rt_dataset_load_dir(DATA_DIR, RT_SPLIT_TEST, &rt, d), KILN_OK);
    ck_assert_int_eq(rt_batch_slice(rt, 0, N, x, y, OUT, NULL, d), KILN_OK);
    ck_assert_int_eq(emb.evaluate(he, N, x, y, &loss, &acc), KILN_OK);
    kiln_dataset_truncate(ds, N);
    double jl, ja;
    ck_assert_int_eq(kiln_model_evaluate(mo, ds, N, 0, &jl, &ja, d), KILN_OK);
    ck_assert_msg(tu_close(loss, jl, 0, 1e-5), "loss %.9g, JIT %.9g", loss, jl);
    /* k/300 in f32 */
    ck_assert_msg(tu_close(acc, ja, 1e-6, 0), "accuracy %.9g, JIT %.9g", acc, ja);
    rt_dataset_free(rt);
    emb.destroy(he);
    file.destroy(hf);
    dlclose(emb.dl);
    dlclose(file.dl);
    kiln_dataset_dispose(ds);
    kiln_model_dispose(mo);
    kiln_diag_dispose(d);
}
END_TEST

/* ---------------------------------------------------------------- training */

START_TEST(train_matches_jit) {
    enum { STEPS = 100, B = 32, IN = 784, OUT = 10 };
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.train = 1;
    o.seed = 3;
    lib l = compile_lib(k_mnist, false, "libtrain.so", &o);
    kiln_model *mo = jit_model(k_mnist, false, 3);
    kiln_diag *d = kiln_diag_create();
    kiln_dataset *ds = NULL;
    ck_assert_msg(kiln_dataset_load(DATA_DIR, "test", &ds, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    kiln_dataset_truncate(ds, STEPS * B);
    rt_dataset *rt = NULL;
    ck_assert_int_eq(rt_dataset_load_dir(DATA_DIR, RT_SPLIT_TEST, &rt, d), KILN_OK);

    /* JIT: Keras' fit in dataset order. */
    kiln_fit_opts fo = {0};
    fo.epochs = 1;
    fo.batch_size = B;
    fo.no_shuffle = 1;
    ck_assert_msg(kiln_model_fit(mo, ds, &fo, d) == KILN_OK, "%s", kiln_diag_message(d));
    /* AOT: the same batches through m_train_step. */
    void *h = create(&l, B);
    static float x[B * IN], y[B * OUT];
    float loss = 0, acc = 0;
    for (int s = 0; s < STEPS; s++) {
        ck_assert_int_eq(rt_batch_slice(rt, (int64_t)s * B, B, x, y, OUT, NULL, d), KILN_OK);
        ck_assert_int_eq(l.train_step(h, B, x, y, &loss, &acc), KILN_OK);
        ck_assert(isfinite(loss) && acc >= 0 && acc <= 1);
    }
    ck_assert_int_eq(l.save(h, tu_tmp_path("aot.safetensors")), KILN_OK);
    ck_assert_int_eq(kiln_model_save(mo, tu_tmp_path("jit.safetensors"), d), KILN_OK);

    /* Every tensor — weights and Adam's state — within 1e-5. */
    rt_st_file *fa = NULL, *fj = NULL;
    ck_assert_msg(rt_st_load(tu_tmp_path("aot.safetensors"), &fa, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert_int_eq(rt_st_load(tu_tmp_path("jit.safetensors"), &fj, d), KILN_OK);
    ck_assert_int_eq(rt_st_count(fa), rt_st_count(fj));
    for (int i = 0; i < rt_st_count(fj); i++) {
        const rt_st_tensor *tj = rt_st_at(fj, i), *ta = rt_st_find(fa, tj->name);
        ck_assert_msg(ta != NULL, "the AOT checkpoint lacks %s", tj->name);
        ck_assert_int_eq(ta->dtype, tj->dtype);
        ck_assert_int_eq(ta->rank, tj->rank);
        ck_assert_uint_eq(ta->nbytes, tj->nbytes);
        if (tj->dtype == RT_ST_I32) {
            ck_assert_int_eq(memcmp(ta->data, tj->data, tj->nbytes), 0);
            continue;
        }
        /* Adam's m and v at their own scale (v is 1e-9..1e-6). */
        char what[128];
        snprintf(what, sizeof what, "%s after %d steps: AOT vs JIT", tj->name, STEPS);
        tu_assert_close_at_scale((const float *)ta->data, (const float *)tj->data,
                                 (int64_t)(tj->nbytes / 4), 1e-5, what);
    }
    int32_t iters;
    memcpy(&iters, rt_st_find(fa, "optimizer.iterations")->data, 4);
    ck_assert_int_eq(iters, STEPS);
    ck_assert_str_eq(rt_st_meta_get(fa, "step"), "100");
    ck_assert_str_eq(rt_st_meta_get(fa, "format"), "kiln");
    ck_assert_str_eq(rt_st_meta_get(fa, "model"), "mnist_mlp");

    /* The runtime reads it as its own: structure recognised, training position kept. */
    kiln_model *mo2 = jit_model(k_mnist, false, 9);
    ck_assert_msg(kiln_model_load(mo2, tu_tmp_path("aot.safetensors"), KILN_LOAD_STRICT, d) == KILN_OK,
                  "%s", kiln_diag_message(d));
    rt_ckpt_report rep;
    void *globals[32] = {0};
    const kiln_module *km = kiln_model_module(mo2);
    for (int i = 0; i < km->n_globals; i++)
        globals[i] = malloc((size_t)ir_type_numel(&km->globals[i]->type, 1) * 4);
    ck_assert_int_eq(
        rt_ckpt_load(tu_tmp_path("aot.safetensors"), km, globals, RT_CKPT_STRICT, 0, &rep, d), KILN_OK);
    ck_assert(rep.structure_match);
    ck_assert_int_eq(rep.progress.step, STEPS);
    rt_ckpt_report_free(&rep);
    for (int i = 0; i < km->n_globals; i++) free(globals[i]);
    /* And the library reads its own checkpoint back: training resumes exactly. */
    void *h2 = create(&l, B);
    ck_assert_int_eq(l.load(h2, tu_tmp_path("aot.safetensors")), KILN_OK);
    float loss1, loss2, acc1;
    ck_assert_int_eq(rt_batch_slice(rt, 0, B, x, y, OUT, NULL, d), KILN_OK);
    ck_assert_int_eq(l.train_step(h, B, x, y, &loss1, &acc1), KILN_OK);
    ck_assert_int_eq(l.train_step(h2, B, x, y, &loss2, &acc1), KILN_OK);
    ck_assert_float_eq(loss1, loss2);
    l.destroy(h2);

    rt_st_free(fa);
    rt_st_free(fj);
    rt_dataset_free(rt);
    l.destroy(h);
    dlclose(l.dl);
    kiln_model_dispose(mo);
    kiln_model_dispose(mo2);
    kiln_dataset_dispose(ds);
    kiln_diag_dispose(d);
}
END_TEST

/* ------------------------------------------------------- the loader refuses */

static const char *k_small = "model small\n"
                             "input x : f32[?, 4]\n"
                             "label y : i32[?]\n"
                             "h = dense(x, 3, activation=relu)\n"
                             "p = dense(h, 2, activation=softmax)\n"
                             "output p\n"
                             "loss sparse_categorical_crossentropy(p, y)\n"
                             "train {\n  optimizer = sgd(lr=0.1)\n  metrics = [accuracy]\n}\n";

/* A safetensors file: the header text (padded to 8), then `data` bytes. */
static void write_st(const char *path, const char *json, const void *data, size_t n) {
    size_t hl = (strlen(json) + 7) / 8 * 8;
    size_t total = 8 + hl + n;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memset(buf + 8, ' ', hl);
    memcpy(buf + 8, json, strlen(json));
    if (n) memcpy(buf + 8 + hl, data, n);
    write_bytes(path, buf, total);
    free(buf);
}

/* The four tensors of k_small: h.kernel [4,3], h.bias [3], p.kernel [3,2], p.bias [2]. */
#define SMALL_OK                                                                                   \
    "{\"h.kernel\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"                   \
    "\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"                       \
    "\"p.kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[60,84]},"                   \
    "\"p.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[84,92]}}"

typedef struct refusal {
    const char *json; /* NULL: raw bytes below */
    int data_bytes;
    int status;
    const char *message; /* %s: the file's path */
} refusal;

START_TEST(loader_refuses_bad_files) {
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.no_embed = 1;
    lib l = compile_lib(k_small, true, "libsmall.so", &o);
    void *h = create(&l, 4);
    float data[32];
    for (int i = 0; i < 32; i++) data[i] = 0.25f * (float)(i % 7) - 0.5f;
    char good[256]; /* tpath's buffers rotate */
    snprintf(good, sizeof good, "%s", tu_tmp_path("good.safetensors"));
    write_st(good, SMALL_OK, data, 92);
    /* A file written with the metadata, other field order and spacing. */
    write_st(
        tu_tmp_path("meta.safetensors"),
        "{ \"__metadata__\" : {\"format\":\"kiln\", \"model\":\"small\"},\n"
        "  \"p.bias\":{\"shape\":[2],\"dtype\":\"F32\",\"data_offsets\":[84,92]},\n"
        "  \"h.kernel\":{\"dtype\":\"F32\",\"shape\":[4, 3],\"data_offsets\":[0,48]},\n"
        "  \"optimizer.p.bias.m\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[92,100]},\n"
        "  \"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},\n"
        "  \"p.kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[60,84]} }",
        data, 100);
    float x[8] = {0.1f, 0.2f, 0.3f, 0.4f, 1, 0, -1, 2}, ref[4], out[4];
    ck_assert_int_eq(l.load(h, tu_tmp_path("meta.safetensors")), KILN_OK);
    ck_assert_int_eq(l.infer(h, 2, x, ref), KILN_OK);
    ck_assert_int_eq(l.load(h, good), KILN_OK);
    ck_assert_int_eq(l.infer(h, 2, x, out), KILN_OK);
    ck_assert_int_eq(memcmp(ref, out, sizeof ref), 0);
    /* A field other tools add is ignored, as the reference reader does. */
    write_st(tu_tmp_path("extra.safetensors"),
             "{\"h.kernel\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48],\"crc\":1},"
             "\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"
             "\"p.kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[60,84]},"
             "\"p.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[84,92]}}",
             data, 92);
    ck_assert_int_eq(l.load(h, tu_tmp_path("extra.safetensors")), KILN_OK);

    float nan_data[32];
    memcpy(nan_data, data, sizeof data);
    nan_data[12 + 1] = NAN; /* h.bias[1] */
    /* The messages are the runtime's (one reader, runtime/st_core.c): the
     * same file gets the same refusal from P_load and `kiln eval --load`. */
    static const refusal cases[] = {
        {SMALL_OK, 91, KILN_ERR_INVALID,
         "%s: tensor 'p.bias': data_offsets [84,92] go beyond the data (91 bytes)"},
        {SMALL_OK, 96, KILN_ERR_INVALID, "%s: bytes [92,96) of the data belong to no tensor"},
        {"{\"h.kernel\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
         "\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"
         "\"p.kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[60,84]}}",
         84, KILN_ERR_SHAPE, "%s: tensor 'p.bias' is missing; the model expects F32 [2]"},
        {"{\"h.kernel\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}}", 48,
         KILN_ERR_SHAPE,
         "%s: tensor 'h.kernel' has shape [3,4], the model expects [4,3] (and 3 more tensors that "
         "do not match)"},
        {"{\"h.kernel\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
         "\"h.bias\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[48,60]},"
         "\"p.kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[60,84]},"
         "\"p.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[84,92]}}",
         92, KILN_ERR_SHAPE, "%s: tensor 'h.bias' has dtype I32, the model expects F32"},
        {"{\"h.kernel\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
         "\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"
         "\"p.kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[60,84]},"
         "\"p.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[84,92]},"
         "\"dense_7.kernel\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[92,96]}}",
         96, KILN_ERR_SHAPE, "%s: tensor 'dense_7.kernel' is not in the model"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
         "\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}",
         24, KILN_ERR_INVALID, "%s: duplicate tensor name 'h.bias'"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16,
         KILN_ERR_INVALID,
         "%s: tensor 'h.bias': data_offsets [0,16] hold 16 bytes, but F32 [3] needs 12"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,0]}}", 12,
         KILN_ERR_INVALID,
         "%s: tensor 'h.bias': \"data_offsets\" must be [begin, end] with 0 <= begin <= end"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3]}}", 0, KILN_ERR_INVALID,
         "%s: tensor 'h.bias': \"data_offsets\" must be [begin, end] with 0 <= begin <= end"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"shape\":[3],\"data_offsets\":[0,12]}}", 12,
         KILN_ERR_INVALID, "%s: tensor 'h.bias': duplicate field \"shape\""},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[-3],\"data_offsets\":[0,12]}}", 12,
         KILN_ERR_INVALID, "%s: tensor 'h.bias': \"shape\" must be a list of non-negative integers"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3.5],\"data_offsets\":[0,12]}}", 12,
         KILN_ERR_INVALID, "%s: tensor 'h.bias': \"shape\" must be a list of non-negative integers"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,3],\"data_offsets\":[0,12]}}",
         12, KILN_ERR_LIMIT, "%s: tensor 'h.bias': rank 9 exceeds the limit of 8"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}", 12,
         KILN_ERR_INVALID, "%s: the header is not valid JSON (error near byte 63)"},
        {"{\"h.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}} x", 12,
         KILN_ERR_INVALID, "%s: the header has more after its JSON value (byte 61)"},
        {"{\"__metadata__\":{\"step\":3}}", 0, KILN_ERR_INVALID,
         "%s: __metadata__ value of 'step' is not a string"},
        {"[]", 0, KILN_ERR_INVALID, "%s: the header is not a JSON object"},
        {"{\"h.b\x01\":{}}", 0, KILN_ERR_INVALID, "%s: tensor 'h.b?': no \"dtype\" string"},
    };
    char want[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const refusal *c = &cases[i];
        char name[32];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        const char *path = tu_tmp_path(name);
        float zeros[32] = {0};
        write_st(path, c->json, i < 2 ? data : zeros, (size_t)c->data_bytes);
        int st = l.load(h, path);
        snprintf(want, sizeof want, c->message, path);
        ck_assert_msg(st == c->status, "case %zu: status %d, want %d (%s)", i, st, c->status,
                      l.last_error(h));
        ck_assert_str_eq(l.last_error(h), want);
        /* One reader: libkiln refuses the file with the same words. */
        if (c->status != KILN_ERR_SHAPE) {
            kiln_diag *dd = kiln_diag_create();
            rt_st_file *sf = NULL;
            ck_assert_int_eq(rt_st_load(path, &sf, dd), st);
            snprintf(want, sizeof want, "kiln: error: %s\n", l.last_error(h));
            ck_assert_str_eq(kiln_diag_message(dd), want);
            kiln_diag_dispose(dd);
        }
        /* All or nothing: the weights are those of the last good load. */
        ck_assert_int_eq(l.infer(h, 2, x, out), KILN_OK);
        ck_assert_int_eq(memcmp(ref, out, sizeof ref), 0);
    }
    /* NaN in the data, a missing file, a short file, a header larger than the file. */
    const char *nanf = tu_tmp_path("nan.safetensors");
    write_st(nanf, SMALL_OK, nan_data, 92);
    ck_assert_int_eq(l.load(h, nanf), KILN_ERR_NONFINITE);
    snprintf(want, sizeof want, "%s: tensor 'h.bias' holds NaN at element 1", nanf);
    ck_assert_str_eq(l.last_error(h), want);
    ck_assert_int_eq(l.load(h, tu_tmp_path("absent.safetensors")), KILN_ERR_IO);
    snprintf(want, sizeof want, "%s: No such file or directory", tu_tmp_path("absent.safetensors"));
    ck_assert_str_eq(l.last_error(h), want);
    write_bytes(tu_tmp_path("short"), "\x10\0\0", 3);
    ck_assert_int_eq(l.load(h, tu_tmp_path("short")), KILN_ERR_INVALID);
    snprintf(want, sizeof want, "%s: too short for a safetensors file (3 bytes)",
             tu_tmp_path("short"));
    ck_assert_str_eq(l.last_error(h), want);
    write_bytes(tu_tmp_path("big"), "\x00\x01\0\0\0\0\0\0{}", 10);
    ck_assert_int_eq(l.load(h, tu_tmp_path("big")), KILN_ERR_INVALID);
    snprintf(want, sizeof want, "%s: header length 256 exceeds the file size (10 bytes)",
             tu_tmp_path("big"));
    ck_assert_str_eq(l.last_error(h), want);
    ck_assert_int_eq(l.infer(h, 2, x, out), KILN_OK);
    ck_assert_int_eq(memcmp(ref, out, sizeof ref), 0);

    /* Random damage to a good file's header: never a crash, and a refused
     * file leaves the weights alone. */
    size_t n;
    FILE *f = fopen(good, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char orig[512], mut[512];
    n = fread(orig, 1, sizeof orig, f);
    fclose(f);
    ir_rng r = ir_rng_seed(42, 7);
    int refused = 0;
    for (int it = 0; it < 1500; it++) {
        memcpy(mut, orig, n);
        int flips = 1 + (int)(ir_rng_next(&r) % 3);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(ir_rng_next(&r) % (n - 92)); /* length and JSON */
            static const char alphabet[] = "{}[]:,\"\\ 0123456789-.eEF3I2_ab\x01\xff";
            mut[at] = ir_rng_next(&r) % 2
                          ? (unsigned char)alphabet[ir_rng_next(&r) % (sizeof alphabet - 1)]
                          : (unsigned char)ir_rng_next(&r);
        }
        write_bytes(tu_tmp_path("mut.safetensors"), mut, n);
        int st = l.load(h, tu_tmp_path("mut.safetensors"));
        if (st == KILN_OK) {
            ck_assert_int_eq(l.load(h, good), KILN_OK);
            continue;
        }
        refused++;
        ck_assert_msg(strlen(l.last_error(h)) > 0, "status %d without a message", st);
        ck_assert_int_eq(l.infer(h, 2, x, out), KILN_OK);
        ck_assert_int_eq(memcmp(ref, out, sizeof ref), 0);
    }
    ck_assert_int_gt(refused, 1000);
    l.destroy(h);
    dlclose(l.dl);
}
END_TEST

/* ------------------------------------------------------------- arguments */

START_TEST(arguments_and_labels) {
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.train = 1;
    lib l = compile_lib(k_small, true, "libargs.so", &o);
    /* Version check and status strings. */
    char msg[256];
    ck_assert_uint_eq(l.abi_version(),
                      (KILN_VERSION_MAJOR << 16) | (KILN_VERSION_MINOR << 8) | KILN_VERSION_PATCH);
    ck_assert_int_eq(l.check_version(l.abi_version(), msg, sizeof msg), KILN_OK);
    ck_assert_str_eq(msg, "");
    ck_assert_int_eq(l.check_version(0x000203, msg, sizeof msg), KILN_ERR_VERSION);
    char want[256];
    snprintf(want, sizeof want,
             "m: version mismatch: the library was built by Kiln %s, the header by Kiln 0.2.3; "
             "regenerate both with the same 'kiln compile'",
             KILN_VERSION_STRING);
    ck_assert_str_eq(msg, want);
    ck_assert_int_eq(l.check_version(0x000203, NULL, 0), KILN_ERR_VERSION);
    ck_assert_str_eq(l.status_string(KILN_ERR_SHAPE), "shape mismatch");
    ck_assert_str_eq(l.status_string(99), "unknown status");

    /* Handles: sizes, caller memory, bad arguments. */
    void *h = NULL;
    ck_assert_uint_eq(l.size(0), 0);
    ck_assert_uint_gt(l.size(1), 0);
    ck_assert_uint_eq(l.size(9) - l.size(8), l.size(2) - l.size(1)); /* linear in max_batch */
    ck_assert_int_eq(l.create(0, &h), KILN_ERR_INVALID);
    ck_assert_int_eq(l.create((int64_t)1 << 40, &h), KILN_ERR_LIMIT);
    ck_assert_ptr_null(h);
    ck_assert_int_eq(l.create(4, NULL), KILN_ERR_INVALID);
    size_t sz = l.size(4);
    char *mem = aligned_alloc(64, (sz + 64 + 63) / 64 * 64);
    ck_assert_int_eq(l.init(mem + 8, sz, 4, &h), KILN_ERR_INVALID); /* misaligned */
    ck_assert_int_eq(l.init(mem, sz - 1, 4, &h), KILN_ERR_INVALID); /* too small */
    ck_assert_int_eq(l.init(mem, sz, 4, &h), KILN_OK);
    ck_assert_ptr_eq(h, mem);
    float x[8] = {0.1f, 0.2f, 0.3f, 0.4f, 1, 0, -1, 2}, out[16], loss, acc;
    int32_t y[5] = {0, 1, 1, 0, 1};
    ck_assert_int_eq(l.infer(h, 2, x, out), KILN_OK);
    ck_assert_int_eq(l.infer(h, 5, x, out), KILN_ERR_LIMIT);
    ck_assert_str_eq(l.last_error(h), "m_infer: batch 5 exceeds the max_batch of this handle (4)");
    ck_assert_int_eq(l.infer(h, -1, x, out), KILN_ERR_INVALID);
    ck_assert_str_eq(l.last_error(h), "m_infer: batch -1 is negative");
    ck_assert_int_eq(l.infer(h, 2, NULL, out), KILN_ERR_INVALID);
    ck_assert_str_eq(l.last_error(h), "m_infer: 'x' is NULL");
    ck_assert_int_eq(l.evaluate(h, 2, x, y, &loss, NULL), KILN_ERR_INVALID);
    ck_assert_str_eq(l.last_error(h), "m_evaluate: 'accuracy' is NULL");
    ck_assert_int_eq(l.infer(NULL, 2, x, out), KILN_ERR_INVALID);
    ck_assert_str_eq(l.last_error(NULL), "invalid model handle");

    /* A label out of range: the error record becomes the message. */
    ck_assert_int_eq(l.train_step(h, 2, x, y, &loss, &acc), KILN_OK);
    int32_t bad[2] = {1, 7};
    ck_assert_int_eq(l.train_step(h, 2, x, bad, &loss, &acc), KILN_ERR_INVALID);
    const char *e = l.last_error(h);
    ck_assert_msg(strstr(e, "m_train_step: ") == e &&
                      strstr(e, ": label 7 is out of range [0, 2) (model.kiln:7:6)"),
                  "message: %s", e);
    ck_assert_int_eq(l.evaluate(h, 2, x, bad, &loss, &acc), KILN_ERR_INVALID);
    ck_assert_msg(strstr(l.last_error(h), ": label 7 is out of range [0, 2)") != NULL, "%s",
                  l.last_error(h));

    /* Saving NaN weights is refused and keeps the previous file. */
    ck_assert_int_eq(l.save(h, tu_tmp_path("s.safetensors")), KILN_OK);
    ck_assert_int_eq(l.save(h, tu_tmp_path("nodir/s.safetensors")), KILN_ERR_IO);
    {
        /* The runtime's message, from the same writer (runtime/st_core.c). */
        char want[512];
        snprintf(want, sizeof want, "%s: cannot create a temporary file: No such file or directory",
                 tu_tmp_path("nodir/s.safetensors"));
        ck_assert_str_eq(l.last_error(h), want);
    }
    float nanx[8] = {NAN, 0, 0, 0, NAN, 0, 0, 0};
    /* The step itself runs (the runtime has no non-finite guard): only the
     * loss and the weights turn NaN. */
    ck_assert_int_eq(l.train_step(h, 2, nanx, y, &loss, &acc), KILN_OK);
    ck_assert(isnan(loss));
    ck_assert_int_eq(l.save(h, tu_tmp_path("s.safetensors")), KILN_ERR_NONFINITE);
    ck_assert_msg(strstr(l.last_error(h),
                         ": not saved: tensor 'h.kernel' holds NaN at element 0; "
                         "the previous checkpoint is kept") != NULL,
                  "%s", l.last_error(h));
    kiln_diag *d = kiln_diag_create();
    rt_st_file *f = NULL;
    ck_assert_int_eq(rt_st_load(tu_tmp_path("s.safetensors"), &f, d), KILN_OK);
    ck_assert_str_eq(rt_st_meta_get(f, "step"), "1");
    rt_st_free(f);
    kiln_diag_dispose(d);

    /* destroy invalidates caller memory without freeing it. */
    l.destroy(h);
    ck_assert_int_eq(l.infer(h, 1, x, out), KILN_ERR_INVALID);
    free(mem);
    dlclose(l.dl);
}
END_TEST

/* -------------------------------------------------------- compiler errors */

START_TEST(compile_errors) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m =
        load_module("model nl\ninput x : f32[?, 4]\np = dense(x, 2)\noutput p\n", true);
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.output = tu_tmp_path("x.so");
    o.train = 1;
    ck_assert_int_eq(kiln_compile_aot(m, &o, d), KILN_ERR_INVALID);
    ck_assert_str_eq(
        kiln_diag_message(d),
        "kiln: error: nl: --train needs a model with a loss and an optimizer (a train block)\n");
    kiln_diag_clear(d);
    o.train = 0;
    o.prefix = "2fast";
    ck_assert_int_eq(kiln_compile_aot(m, &o, d), KILN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "the prefix '2fast' is not a C identifier"));
    kiln_diag_clear(d);
    o.prefix = NULL;
    o.cc = "/nonexistent/cc";
    ck_assert_int_eq(kiln_compile_aot(m, &o, d), KILN_ERR_BACKEND);
    ck_assert_str_eq(
        kiln_diag_message(d),
        "kiln: error: aot: cannot run the linker '/nonexistent/cc': No such file or directory\n");
    ck_assert_int_eq(access(tu_tmp_path("x.so"), F_OK), -1);
    kiln_diag_clear(d);
    /* --weights file and --load together make no sense. */
    o.cc = NULL;
    o.no_embed = 1;
    o.load = "w.safetensors";
    ck_assert_int_eq(kiln_compile_aot(m, &o, d), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d), "kiln: error: kiln_compile_aot: weights loaded at run "
                                           "time cannot also be embedded from a checkpoint\n");
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
}
END_TEST

/* `#define <name> <value>` in a header's text. */
static long long header_define(const char *h, const char *name) {
    char key[96];
    snprintf(key, sizeof key, "#define %s ", name);
    const char *at = strstr(h, key);
    ck_assert_msg(at != NULL, "no %s in the header", key);
    return atoll(at + strlen(key));
}

/* One memory owner: the AOT handle's workspace (the header's figures) is
 * the largest plan among the functions it exports, as the dump prints them. */
START_TEST(workspace_is_the_plan) {
    kiln_module *m = load_module(k_mnist, false);
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.output = tu_tmp_path("ws.ll");
    o.header = tu_tmp_path("ws.h");
    o.prefix = "m";
    o.emit = KILN_AOT_LLVM;
    o.train = 1;
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(kiln_compile_aot(m, &o, d) == KILN_OK, "%s", kiln_diag_message(d));
    char *dump = kiln_module_print(m);
    ck_assert_ptr_nonnull(dump);
    long long fixed = 0, ps = 0;
    static const char *fns[] = {"infer", "loss", "train_step"};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        char head[64];
        snprintf(head, sizeof head, "func @%s(", fns[i]);
        const char *at = strstr(dump, head);
        ck_assert_msg(at != NULL, "no %s in the dump", head);
        long long a, b;
        ck_assert_int_eq(sscanf(strstr(at, " mem(fixed="), " mem(fixed=%lld, per_sample=%lld", &a, &b),
                         2);
        if (a > fixed) fixed = a;
        if (b > ps) ps = b;
    }
    FILE *f = fopen(o.header, "rb");
    ck_assert_ptr_nonnull(f);
    static char h[1 << 16];
    size_t n = fread(h, 1, sizeof h - 1, f);
    h[n] = 0;
    fclose(f);
    ck_assert_int_eq(header_define(h, "M_WORKSPACE_FIXED"), fixed);
    ck_assert_int_eq(header_define(h, "M_WORKSPACE_PER_SAMPLE"), ps);
    kiln_free(dump);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* Allocation N fails, for every N: each run ends in a clean error. */
START_TEST(allocation_failures) {
    const char *text = "model tiny\ninput x : f32[?, 4]\nlabel y : f32[?, 2]\n"
                       "p = dense(x, 2, activation=softmax)\noutput p\n"
                       "loss categorical_crossentropy(p, y)\ntrain {\n  optimizer = adam()\n}\n";
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.output = tu_tmp_path("tiny.ll");
    o.header = tu_tmp_path("tiny.h");
    o.emit = KILN_AOT_LLVM;
    o.train = 1;
    long n;
    for (n = 1; n < 20000; n++) {
        kiln_module *m = load_module(text, true);
        kiln_diag *d = kiln_diag_create();
        kiln_test_alloc_fail_at(n);
        kiln_status st = kiln_compile_aot(m, &o, d);
        bool failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        kiln_module_dispose(m);
        kiln_diag_dispose(d);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            break;
        }
        ck_assert_msg(st != KILN_OK, "allocation %ld failed but kiln_compile_aot succeeded", n);
    }
    ck_assert_msg(n > 10 && n < 20000, "%ld allocations", n);
}
END_TEST

int main(void) {
    Suite *s = suite_create("aot");
    TCase *t = tcase_create("aot");
    tcase_add_checked_fixture(t, tu_tmp_setup, tu_tmp_teardown);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, infer_matches_jit);
    tcase_add_test(t, cnn_infer_matches_jit);
    tcase_add_test(t, load_embeds_and_reads_checkpoints);
    tcase_add_test(t, train_matches_jit);
    tcase_add_test(t, loader_refuses_bad_files);
    tcase_add_test(t, arguments_and_labels);
    tcase_add_test(t, compile_errors);
    tcase_add_test(t, allocation_failures);
    tcase_add_test(t, workspace_is_the_plan);
    suite_add_tcase(s, t);
    return tu_run_suite(s);
}

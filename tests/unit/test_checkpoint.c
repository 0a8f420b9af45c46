/* test_checkpoint.c — safetensors files and model checkpoints: round trips
 * of every dtype and shape, every refusal by exact text, writers killed
 * mid-save, allocation failures.
 *
 * Also a helper for tests/sh/checkpoint_python.sh (Python <-> Kiln):
 *   test_checkpoint --write FILE       saves the tiny model's checkpoint
 *   test_checkpoint --load-model FILE  loads FILE into the tiny model (strict)
 *                                      and prints every global's float bits
 *   test_checkpoint --dump FILE        prints any safetensors file */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/checkpoint.h"

/* ---------------------------------------------------------------- helpers */


static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

#define ck_msg(d, text) ck_assert_str_eq(kiln_diag_message(d), "kiln: error: " text "\n")

static void ck_msgf(kiln_diag *d, const char *fmt, ...) {
    char want[2048] = "kiln: error: ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want + 13, sizeof want - 14, fmt, ap);
    va_end(ap);
    strcat(want, "\n");
    ck_assert_str_eq(kiln_diag_message(d), want);
}

/* A file in memory: 8-byte length, the JSON header, data_len bytes. */
static unsigned char *st_mem(const char *json, size_t data_len, size_t *len) {
    size_t h = strlen(json);
    unsigned char *b = calloc(1, 8 + h + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    *len = 8 + h + data_len;
    return b;
}

/* Parses a crafted header, expecting status st and one message line. */
static kiln_diag *bad(const char *json, size_t data_len, kiln_status st) {
    size_t n;
    unsigned char *b = st_mem(json, data_len, &n);
    kiln_diag *d = kiln_diag_create();
    rt_st_file *f = (rt_st_file *)1;
    ck_assert_int_eq(rt_st_parse(b, n, "ckpt.safetensors", &f, d), st);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(kiln_diag_error_count(d), 1);
    free(b);
    return d;
}

#define BAD(json, data_len, st, text)                                                              \
    do {                                                                                           \
        kiln_diag *d_ = bad(json, data_len, st);                                                   \
        ck_msg(d_, "ckpt.safetensors: " text);                                                     \
        kiln_diag_dispose(d_);                                                                     \
    } while (0)

/* ------------------------------------------------------ the tiny model */

/* In checkpoint order; the Python side of checkpoint_python.sh uses the
 * same names, shapes and values. */
static const char *const k_names[] = {
    "h1.kernel",           "h1.bias",
    "out.kernel",          "out.bias",
    "optimizer.h1.kernel.m", "optimizer.h1.bias.m",
    "optimizer.out.kernel.m", "optimizer.out.bias.m",
    "optimizer.h1.kernel.v", "optimizer.h1.bias.v",
    "optimizer.out.kernel.v", "optimizer.out.bias.v",
    "optimizer.iterations"};
enum { N_GLOBALS = 13 };

/* Values exact in f32 (multiples of 1/16), plus -0, the smallest denormal
 * and FLT_MAX at the start of h1.kernel. */
static float val(int k, int64_t i) {
    if (k == 0 && i == 0) return -0.0f;
    if (k == 0 && i == 1) return 1e-45f;
    if (k == 0 && i == 2) return 3.4028234663852886e38f;
    return (float)((i * 37 + k * 11) % 101 - 50) / 16.0f;
}

typedef struct model {
    kiln_module *m;
    void *bufs[N_GLOBALS];
} model;

/* ck_assert only works inside a test; the helper modes use this instead. */
static bool g_helper;
#define need(cond)                                                                                 \
    do {                                                                                           \
        if (!g_helper) {                                                                           \
            ck_assert(cond);                                                                       \
        } else if (!(cond)) {                                                                      \
            fprintf(stderr, "test_checkpoint: %s failed\n", #cond);                              \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

/* h1: in -> hid, out: hid -> classes; optimizer state when `state`. */
static model tiny(int64_t in, int64_t hid, int64_t classes, bool state) {
    model t;
    memset(&t, 0, sizeof t);
    t.m = kiln_module_create("tiny_mlp");
    kiln_init glorot = {KILN_INIT_GLOROT_UNIFORM, 0, 0}, zeros = {KILN_INIT_ZEROS, 0, 0};
    int64_t shapes[4][2] = {{in, hid}, {hid, 0}, {hid, classes}, {classes, 0}};
    for (int k = 0; k < 4; k++) {
        int rank = k % 2 ? 1 : 2;
        need(kiln_module_add_param(t.m, k_names[k], KILN_F32, rank, shapes[k],
                                   k % 2 ? zeros : glorot, NULL) == KILN_OK);
    }
    if (state) {
        for (int k = 4; k < 12; k++) {
            ir_type ty = ir_type_make(IR_F32, (k % 2) ? 1 : 2, shapes[k % 4]);
            need(ir_module_add_global(t.m, IR_GLOBAL_STATE, k_names[k], &ty, zeros, NULL) != NULL);
        }
        ir_type it = ir_type_scalar(IR_I32);
        need(ir_module_add_global(t.m, IR_GLOBAL_STATE, "optimizer.iterations", &it, zeros, NULL) !=
             NULL);
    }
    for (int i = 0; i < t.m->n_globals; i++) {
        ir_global *g = t.m->globals[i];
        int64_t n = ir_type_numel(&g->type, 1);
        t.bufs[g->index] = calloc((size_t)(n ? n : 1), 4);
    }
    return t;
}

/* Fills every global with val() (iterations: 1234567 + salt). */
static void fill(model *t, int salt) {
    for (int i = 0; i < t->m->n_globals; i++) {
        ir_global *g = t->m->globals[i];
        int k = 0;
        while (k < N_GLOBALS && strcmp(k_names[k], g->name)) k++;
        int64_t n = ir_type_numel(&g->type, 1);
        if (g->type.dtype == IR_I32) {
            ((int32_t *)t->bufs[g->index])[0] = 1234567 + salt;
        } else {
            for (int64_t e = 0; e < n; e++)
                ((float *)t->bufs[g->index])[e] = salt ? val(k, e) + (float)salt : val(k, e);
        }
    }
}

static void zero(model *t) {
    for (int i = 0; i < t->m->n_globals; i++) {
        ir_global *g = t->m->globals[i];
        memset(t->bufs[g->index], 0, (size_t)ir_type_numel(&g->type, 1) * 4);
    }
}

/* Bitwise equality of every global (same module layout). */
static bool same(const model *a, const model *b) {
    if (a->m->n_globals != b->m->n_globals) return false;
    for (int i = 0; i < a->m->n_globals; i++) {
        ir_global *g = a->m->globals[i];
        if (memcmp(a->bufs[i], b->bufs[i], (size_t)ir_type_numel(&g->type, 1) * 4)) return false;
    }
    return true;
}

/* The global `name` holds zeros in every byte (its fresh buffer: nothing
 * was loaded into it); NULL checks every global. */
static void assert_untouched(const model *t, const char *name) {
    for (int i = 0; i < t->m->n_globals; i++) {
        ir_global *g = t->m->globals[i];
        if (name && strcmp(g->name, name) != 0) continue;
        const unsigned char *p = t->bufs[g->index];
        size_t n = (size_t)ir_type_numel(&g->type, 1) * 4;
        for (size_t k = 0; k < n; k++)
            ck_assert_msg(p[k] == 0, "'%s' was written (byte %zu)", g->name, k);
    }
}

static void drop(model *t) {
    for (int i = 0; i < N_GLOBALS; i++) free(t->bufs[i]);
    kiln_module_dispose(t->m);
}

/* ------------------------------------------------ safetensors round trip */

START_TEST(st_round_trip_every_dtype_and_shape) {
    tu_tmp_setup();
    static const int64_t shapes[][RT_ST_MAX_RANK] = {{0}, {0}, {0, 5}, {3}, {2, 3, 4},
                                                      {1, 2, 1, 2, 1, 2, 1, 2}};
    static const int ranks[] = {0, 1, 2, 1, 3, 8};
    enum { NS = 6 };
    rt_st_tensor t[RT_ST_DTYPE_COUNT * NS];
    char names[RT_ST_DTYPE_COUNT * NS][32];
    unsigned char *bufs[RT_ST_DTYPE_COUNT * NS];
    int n = 0;
    for (int dt = 0; dt < RT_ST_DTYPE_COUNT; dt++)
        for (int s = 0; s < NS; s++, n++) {
            snprintf(names[n], sizeof names[n], "t.%s.%d", rt_st_dtype_name(dt), s);
            t[n].name = names[n];
            t[n].dtype = (rt_st_dtype)dt;
            t[n].rank = ranks[s];
            size_t bytes = rt_st_dtype_size(dt);
            for (int r = 0; r < ranks[s]; r++) {
                t[n].dims[r] = shapes[s][r];
                bytes *= (size_t)shapes[s][r];
            }
            bufs[n] = malloc(bytes ? bytes : 1);
            for (size_t b = 0; b < bytes; b++) bufs[n][b] = (unsigned char)(b * 7 + n);
            t[n].data = bufs[n];
            t[n].nbytes = bytes;
        }
    rt_st_meta meta[] = {{"plain", "value"},
                         {"quote\"and\\slash", "line\nbreak\ttab \x01 \xc3\xa9t\xc3\xa9"},
                         {"empty", ""}};
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(rt_st_save(tu_tmp_path("all.safetensors"), t, n, meta, 3, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    rt_st_file *f;
    ck_assert_msg(rt_st_load(tu_tmp_path("all.safetensors"), &f, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert_int_eq(rt_st_count(f), n);
    const unsigned char *base = NULL;
    for (int i = 0; i < n; i++) {
        const rt_st_tensor *x = rt_st_find(f, names[i]);
        ck_assert_ptr_nonnull(x);
        ck_assert_str_eq(x->name, names[i]);
        ck_assert_int_eq(x->dtype, t[i].dtype);
        ck_assert_int_eq(x->rank, t[i].rank);
        for (int r = 0; r < x->rank; r++) ck_assert_int_eq(x->dims[r], t[i].dims[r]);
        ck_assert_uint_eq(x->nbytes, t[i].nbytes);
        if (x->nbytes) ck_assert_mem_eq(x->data, bufs[i], x->nbytes);
        if (!base || (const unsigned char *)x->data < base) base = x->data;
    }
    /* Widest first: every tensor sits at a multiple of its element size. */
    for (int i = 0; i < n; i++) {
        const rt_st_tensor *x = rt_st_at(f, i);
        ck_assert_uint_eq((size_t)((const unsigned char *)x->data - base) %
                              rt_st_dtype_size(x->dtype),
                          0);
    }
    ck_assert_ptr_null(rt_st_find(f, "nope"));
    ck_assert_int_eq(rt_st_meta_count(f), 3);
    for (int i = 0; i < 3; i++) ck_assert_str_eq(rt_st_meta_get(f, meta[i].key), meta[i].value);
    ck_assert_str_eq(rt_st_meta_at(f, 1)->key, meta[1].key);
    rt_st_free(f);
    /* The data starts 8-aligned in the file, after a space-padded header. */
    size_t len;
    unsigned char *raw = slurp(tu_tmp_path("all.safetensors"), &len);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | raw[i];
    ck_assert_uint_eq((8 + h) % 8, 0);
    ck_assert_int_eq(raw[8], '{');
    /* The same bytes parse from memory. */
    ck_assert_int_eq(rt_st_parse(raw, len, "mem", &f, d), KILN_OK);
    ck_assert_int_eq(rt_st_count(f), n);
    ck_assert_str_eq(rt_st_file_name(f), "mem");
    rt_st_free(f);
    /* No tensors, no metadata: still a valid file. */
    ck_assert_int_eq(rt_st_save(tu_tmp_path("empty.safetensors"), NULL, 0, NULL, 0, d), KILN_OK);
    ck_assert_int_eq(rt_st_load(tu_tmp_path("empty.safetensors"), &f, d), KILN_OK);
    ck_assert_int_eq(rt_st_count(f), 0);
    rt_st_free(f);
    free(raw);
    for (int i = 0; i < n; i++) free(bufs[i]);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(st_save_refuses_bad_arguments) {
    tu_tmp_setup();
    kiln_diag *d = kiln_diag_create();
    float v[6] = {0};
    rt_st_tensor t[2] = {{"a", RT_ST_F32, 2, {2, 3}, v, 24}, {"a", RT_ST_F32, 1, {6}, v, 24}};
    const char *p = tu_tmp_path("x.safetensors");
    ck_assert_int_eq(rt_st_save(p, t, 2, NULL, 0, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: duplicate tensor name 'a'", p);
    kiln_diag_clear(d);
    t[1].name = "b";
    t[1].nbytes = 20;
    ck_assert_int_eq(rt_st_save(p, t, 2, NULL, 0, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: tensor 'b': 20 bytes do not make F32 [6]", p);
    kiln_diag_clear(d);
    t[1].nbytes = 24;
    t[1].name = "__metadata__";
    ck_assert_int_eq(rt_st_save(p, t, 2, NULL, 0, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: tensor 1 has no usable name", p);
    kiln_diag_clear(d);
    t[1].name = "b";
    rt_st_meta m[2] = {{"k", "1"}, {"k", "2"}};
    ck_assert_int_eq(rt_st_save(p, t, 2, m, 2, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: duplicate metadata key 'k'", p);
    ck_assert_int_ne(access(p, F_OK), 0); /* nothing was written */
    kiln_diag_clear(d);
    const char *q = tu_tmp_path("no/such/dir/x.safetensors");
    ck_assert_int_eq(rt_st_save(q, t, 2, NULL, 0, d), KILN_ERR_IO);
    ck_msgf(d, "%s: cannot create a temporary file: No such file or directory", q);
    /* A directory in the way of the rename: the error says so, the
     * temporary file is gone. */
    kiln_diag_clear(d);
    mkdir(tu_tmp_path("isdir"), 0755);
    ck_assert_int_eq(rt_st_save(tu_tmp_path("isdir"), t, 2, NULL, 0, d), KILN_ERR_IO);
    ck_msgf(d, "%s: rename failed: Is a directory; the previous file is kept", tu_tmp_path("isdir"));
    ck_assert_int_eq(tu_count_entries(tu_tmp_dir(), "tmp"), 0);
    ck_assert_int_eq(tu_count_entries(tu_tmp_dir(), "isdir"), 1); /* the listing sees files */
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

/* ---------------------------------------------------- refusals, exact */

START_TEST(st_refuses_bad_headers) {
    /* the header is JSON, and an object */
    BAD("{\"a\":", 0, KILN_ERR_INVALID, "the header is not valid JSON (error near byte 4)");
    BAD("[1, 2]", 0, KILN_ERR_INVALID, "the header is not a JSON object");
    BAD("\"str\"   ", 0, KILN_ERR_INVALID, "the header is not a JSON object");
    BAD("{}  x", 0, KILN_ERR_INVALID, "the header has more after its JSON value (byte 4)");
    /* entries */
    BAD("{\"a\": 3}", 0, KILN_ERR_INVALID, "tensor 'a': the entry is not a JSON object");
    BAD("{\"a\": {\"shape\": [], \"data_offsets\": [0, 4]}}", 4, KILN_ERR_INVALID,
        "tensor 'a': no \"dtype\" string");
    BAD("{\"a\": {\"dtype\": \"F33\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
        KILN_ERR_UNSUPPORTED, "tensor 'a': unknown dtype 'F33'");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4,
        KILN_ERR_INVALID, "tensor 'a': \"shape\" must be a list of non-negative integers");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
        KILN_ERR_INVALID, "tensor 'a': \"shape\" must be a list of non-negative integers");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": \"2x2\", \"data_offsets\": [0, 4]}}", 4,
        KILN_ERR_INVALID, "tensor 'a': \"shape\" must be a list of non-negative integers");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
        4, KILN_ERR_LIMIT, "tensor 'a': rank 9 exceeds the limit of 8");
    BAD("{\"a\": {\"dtype\": \"F64\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, "
        "4]}}",
        4, KILN_ERR_LIMIT, "tensor 'a': shape [4294967296,4294967296] is too large");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 4,
        KILN_ERR_INVALID,
        "tensor 'a': \"data_offsets\" must be [begin, end] with 0 <= begin <= end");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
        KILN_ERR_INVALID,
        "tensor 'a': \"data_offsets\" must be [begin, end] with 0 <= begin <= end");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
        KILN_ERR_INVALID, "tensor 'a': data_offsets [0,8] hold 8 bytes, but F32 [3] needs 12");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]}}", 8,
        KILN_ERR_INVALID, "tensor 'a': data_offsets [0,12] go beyond the data (8 bytes)");
    BAD("{\"\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
        KILN_ERR_INVALID, "a tensor has an empty name");
    /* the layout */
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
        " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
        12, KILN_ERR_INVALID, "tensors 'a' [0,8] and 'b' [4,12] overlap");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
        " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
        12, KILN_ERR_INVALID, "bytes [4,8) of the data belong to no tensor");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 16,
        KILN_ERR_INVALID, "bytes [4,16) of the data belong to no tensor");
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
        " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
        8, KILN_ERR_INVALID, "duplicate tensor name 'a'");
    /* metadata */
    BAD("{\"__metadata__\": {\"step\": 3}}", 0, KILN_ERR_INVALID,
        "__metadata__ value of 'step' is not a string");
    BAD("{\"__metadata__\": [\"x\"]}", 0, KILN_ERR_INVALID, "__metadata__ is not a JSON object");
    BAD("{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0, KILN_ERR_INVALID,
        "duplicate __metadata__ key 'k'");
    BAD("{\"__metadata__\": {}, \"__metadata__\": {}}", 0, KILN_ERR_INVALID,
        "__metadata__ appears twice");
    /* names from the file are printed safely */
    BAD("{\"a\\nkiln: error: fake\": {\"dtype\": \"X\", \"shape\": [], \"data_offsets\": [0, 0]}}",
        0, KILN_ERR_UNSUPPORTED, "tensor 'a?kiln: error: fake': unknown dtype 'X'");
    /* the good ones: empty tensors may share an offset; unknown keys ignored */
    size_t n;
    unsigned char *b =
        st_mem("{\"e\": {\"dtype\": \"I64\", \"shape\": [0, 3], \"data_offsets\": [4, 4]},"
               " \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4], \"x\": 1},"
               " \"s\": {\"dtype\": \"BOOL\", \"shape\": [], \"data_offsets\": [4, 5]}}",
               5, &n);
    kiln_diag *d = kiln_diag_create();
    rt_st_file *f;
    ck_assert_msg(rt_st_parse(b, n, "ok", &f, d) == KILN_OK, "%s", kiln_diag_message(d));
    ck_assert_int_eq(rt_st_count(f), 3);
    ck_assert_str_eq(rt_st_at(f, 0)->name, "e");
    ck_assert_int_eq(rt_st_find(f, "s")->rank, 0);
    ck_assert_uint_eq(rt_st_find(f, "s")->nbytes, 1);
    rt_st_free(f);
    free(b);
    kiln_diag_dispose(d);
}
END_TEST

/* Sizes: short files, a length beyond the file, a length beyond the limit
 * (in a sparse file, so the test stays cheap). */
START_TEST(st_refuses_bad_sizes) {
    tu_tmp_setup();
    kiln_diag *d = kiln_diag_create();
    rt_st_file *f;
    write_file(tu_tmp_path("short"), "\x10\0\0", 3);
    ck_assert_int_eq(rt_st_load(tu_tmp_path("short"), &f, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: too short for a safetensors file (3 bytes)", tu_tmp_path("short"));
    unsigned char big[100];
    memset(big, ' ', sizeof big);
    memset(big, 0xff, 8);
    write_file(tu_tmp_path("len"), big, sizeof big);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_load(tu_tmp_path("len"), &f, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: header length 18446744073709551615 exceeds the file size (100 bytes)",
            tu_tmp_path("len"));
    big[0] = 93, big[1] = big[2] = big[3] = big[4] = big[5] = big[6] = big[7] = 0;
    write_file(tu_tmp_path("len2"), big, sizeof big);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_load(tu_tmp_path("len2"), &f, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: header length 93 exceeds the file size (100 bytes)", tu_tmp_path("len2"));
    big[0] = 1;
    write_file(tu_tmp_path("len3"), big, sizeof big);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_load(tu_tmp_path("len3"), &f, d), KILN_ERR_INVALID);
    ck_msgf(d, "%s: header length 1 is too short for a JSON object", tu_tmp_path("len3"));
    /* 200 MB, sparse: header length 150,000,000 fits the file but not the limit */
    FILE *sp = fopen(tu_tmp_path("sparse"), "wb");
    uint64_t hl = 150000000;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(hl >> (8 * i));
    fwrite(lb, 1, 8, sp);
    fclose(sp);
    ck_assert_int_eq(truncate(tu_tmp_path("sparse"), 200000000), 0);
    kiln_diag_clear(d);
    kiln_test_alloc_fail_at(1); /* refused before any allocation */
    ck_assert_int_eq(rt_st_load(tu_tmp_path("sparse"), &f, d), KILN_ERR_LIMIT);
    kiln_test_alloc_fail_at(0);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_load(tu_tmp_path("sparse"), &f, d), KILN_ERR_LIMIT);
    ck_msgf(d, "%s: header length 150000000 exceeds the limit of 100000000 bytes",
            tu_tmp_path("sparse"));
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_load(tu_tmp_path("absent"), &f, d), KILN_ERR_IO);
    ck_msgf(d, "%s: No such file or directory", tu_tmp_path("absent"));
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_load(tu_tmp_dir(), &f, d), KILN_ERR_IO);
    ck_msgf(d, "%s: is a directory", tu_tmp_dir());
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

/* A real checkpoint, truncated and bit-flipped at every position: each
 * load ends in OK or one clean error, never a crash (ASan in the sanitizer
 * build). Some flips have known messages. */
START_TEST(st_damaged_files) {
    tu_tmp_setup();
    model t = tiny(6, 4, 3, true);
    fill(&t, 0);
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(rt_ckpt_save(tu_tmp_path("c"), t.m, t.bufs, NULL, NULL, 0, 0, d), KILN_OK);
    size_t n;
    unsigned char *good = slurp(tu_tmp_path("c"), &n), *c = malloc(n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | good[i];
    rt_st_file *f;
    /* truncated: the data section is short */
    ck_assert_int_eq(rt_st_parse(good, n - 4, "ckpt.safetensors", &f, d), KILN_ERR_INVALID);
    const char *m = kiln_diag_message(d);
    ck_assert_msg(strstr(m, "go beyond the data") != NULL, "%s", m);
    /* truncated inside the header */
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_parse(good, 8 + hlen / 2, "ckpt.safetensors", &f, d),
                     KILN_ERR_INVALID);
    ck_msgf(d, "ckpt.safetensors: header length %llu exceeds the file size (%llu bytes)",
            (unsigned long long)hlen, (unsigned long long)(8 + hlen / 2));
    /* the opening brace flipped */
    memcpy(c, good, n);
    c[8] ^= 0x01;
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_st_parse(c, n, "ckpt.safetensors", &f, d), KILN_ERR_INVALID);
    ck_msg(d, "ckpt.safetensors: the header is not valid JSON (error near byte 0)");
    /* every byte of the header, one bit each; and the length itself */
    int ok = 0, refused = 0;
    for (size_t i = 0; i < 8 + hlen; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(c, good, n);
            c[i] ^= (unsigned char)(1u << bit);
            kiln_diag_clear(d);
            f = NULL;
            kiln_status st = rt_st_parse(c, n, "x", &f, d);
            if (st == KILN_OK) {
                ok++;
                rt_st_free(f);
            } else {
                refused++;
                ck_assert_ptr_null(f);
                ck_assert_int_ge(kiln_diag_error_count(d), 1);
            }
        }
    ck_assert_int_gt(refused, ok); /* most flips break something */
    free(c);
    free(good);
    kiln_diag_dispose(d);
    drop(&t);
    tu_tmp_teardown();
}
END_TEST

/* ------------------------------------------------------ atomic saving */

static rt_st_tensor g_big[3];

/* Three tensors of 1.5 MB filled with `version`. */
static void big_tensors(float *buf, float version) {
    size_t per = 393216; /* 1.5 MiB of floats */
    for (size_t i = 0; i < 3 * per; i++) buf[i] = version;
    static char names[3][8] = {"a", "b", "c"};
    for (int k = 0; k < 3; k++)
        g_big[k] = (rt_st_tensor){names[k], RT_ST_F32, 2, {512, 768}, buf + k * per, per * 4};
}

/* The file loads, and every value is the same version, which it returns. */
static float check_whole(const char *path) {
    kiln_diag *d = kiln_diag_create();
    rt_st_file *f;
    ck_assert_msg(rt_st_load(path, &f, d) == KILN_OK, "%s", kiln_diag_message(d));
    ck_assert_int_eq(rt_st_count(f), 3);
    const float *first = rt_st_at(f, 0)->data;
    float v = first[0];
    char vs[32];
    snprintf(vs, sizeof vs, "%g", v);
    ck_assert_str_eq(rt_st_meta_get(f, "version"), vs);
    size_t wrong = 0; /* counted, not asserted one by one: each ck_assert costs a write */
    for (int k = 0; k < 3; k++) {
        const rt_st_tensor *t = rt_st_at(f, k);
        const float *p = t->data;
        for (size_t i = 0; i < t->nbytes / 4; i++) wrong += p[i] != v;
    }
    ck_assert_uint_eq(wrong, 0);
    rt_st_free(f);
    kiln_diag_dispose(d);
    return v;
}

static kiln_status save_version(const char *path, float *buf, float version) {
    big_tensors(buf, version);
    char vs[32];
    snprintf(vs, sizeof vs, "%g", version);
    rt_st_meta m = {"version", vs};
    return rt_st_save(path, g_big, 3, &m, 1, NULL);
}

typedef struct kill_at {
    const char *stage;
    uint64_t bytes;
} kill_at;

static void kill_hook(const char *stage, uint64_t bytes, void *ctx) {
    const kill_at *k = ctx;
    if (strcmp(stage, k->stage) == 0 && bytes >= k->bytes) raise(SIGKILL);
}

START_TEST(st_killed_at_each_stage) {
    tu_tmp_setup();
    float *buf = malloc(3 * 393216 * sizeof(float));
    const char *p = tu_tmp_path("ckpt.safetensors");
    ck_assert_int_eq(save_version(p, buf, 1), KILN_OK);
    static const struct {
        kill_at at;
        float expect; /* the version found afterwards */
    } cases[] = {
        {{"open", 0}, 1},          {{"write", 0}, 1},      {{"write", 1 << 20}, 1},
        {{"write", 3 << 20}, 1},   {{"fsync", 0}, 1},      {{"rename", 0}, 2},
        {{"done", 0}, 2},
    };
    for (size_t i = 0; i < KILN_ARRAY_LEN(cases); i++) {
        ck_assert_int_eq(save_version(p, buf, 1), KILN_OK);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            rt_st_set_save_hook(kill_hook, (void *)&cases[i].at);
            save_version(p, buf, 2);
            _exit(3); /* not reached: the hook kills the writer */
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "case %zu", i);
        ck_assert_msg(check_whole(p) == cases[i].expect, "case %zu (%s)", i, cases[i].at.stage);
    }
    free(buf);
    tu_tmp_teardown();
}
END_TEST

/* A writer saving in a loop, killed with SIGKILL at several moments. */
START_TEST(st_kill9_in_a_loop) {
    tu_tmp_setup();
    float *buf = malloc(3 * 393216 * sizeof(float));
    const char *p = tu_tmp_path("ckpt.safetensors");
    ck_assert_int_eq(save_version(p, buf, 0), KILN_OK);
    static const int delays_us[] = {300, 2000, 7000, 20000, 45000};
    float last = 0;
    for (size_t i = 0; i < KILN_ARRAY_LEN(delays_us); i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            for (int v = 1;; v++)
                if (save_version(p, buf, (float)(v + 100 * (int)i))) _exit(4);
        }
        if (i + 1 == KILN_ARRAY_LEN(delays_us)) {
            /* The last writer is killed only after it has replaced the file
             * at least once (a new inode), in the middle of a later save. */
            struct stat a, b;
            ck_assert_int_eq(stat(p, &a), 0);
            for (int w = 0; w < 5000; w++) {
                usleep(1000);
                if (stat(p, &b) == 0 && b.st_ino != a.st_ino) break;
            }
        }
        usleep((useconds_t)delays_us[i]);
        kill(pid, SIGKILL);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status));
        last = check_whole(p); /* the old file or a new one, whole */
    }
    ck_assert(last >= 401); /* the last writer's versions start at 401 */
    free(buf);
    tu_tmp_teardown();
}
END_TEST

/* ---------------------------------------------------- allocation failures */

START_TEST(st_alloc_failures) {
    tu_tmp_setup();
    model t = tiny(6, 4, 3, true);
    fill(&t, 0);
    kiln_diag *d = kiln_diag_create();
    const char *p = tu_tmp_path("c.safetensors");
    ck_assert_int_eq(rt_ckpt_save(p, t.m, t.bufs, NULL, NULL, 0, 0, d), KILN_OK);
    size_t n0;
    unsigned char *before = slurp(p, &n0);
    fill(&t, 1);
    long n;
    for (n = 1; n < 100000; n++) {
        kiln_test_alloc_fail_at(n);
        kiln_status st = rt_ckpt_save(p, t.m, t.bufs, NULL, NULL, 0, 0, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            break;
        }
        ck_assert_msg(st == KILN_ERR_NOMEM, "save, allocation %ld: %d", n, st);
        size_t n1;
        unsigned char *now = slurp(p, &n1); /* the previous file, untouched */
        ck_assert_uint_eq(n1, n0);
        ck_assert_mem_eq(now, before, n0);
        free(now);
        kiln_diag_clear(d);
    }
    ck_assert_int_gt(n, 2);
    for (n = 1; n < 100000; n++) {
        rt_st_file *f = (rt_st_file *)1;
        kiln_test_alloc_fail_at(n);
        kiln_status st = rt_st_load(p, &f, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            rt_st_free(f);
            break;
        }
        ck_assert_msg(st == KILN_ERR_NOMEM, "load, allocation %ld: %d", n, st);
        ck_assert_ptr_null(f);
        kiln_diag_clear(d);
    }
    ck_assert_int_gt(n, 20); /* the JSON parser's allocations are among them */
    model u = tiny(6, 4, 3, true);
    for (n = 1; n < 100000; n++) {
        rt_ckpt_report r;
        zero(&u);
        kiln_test_alloc_fail_at(n);
        kiln_status st = rt_ckpt_load(p, u.m, u.bufs, RT_CKPT_FINETUNE, 0, &r, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        rt_ckpt_report_free(&r);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            break;
        }
        ck_assert_msg(st == KILN_ERR_NOMEM, "ckpt load, allocation %ld: %d", n, st);
        assert_untouched(&u, NULL); /* all or nothing */
        kiln_diag_clear(d);
    }
    ck_assert(same(&t, &u));
    free(before);
    drop(&u);
    drop(&t);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

/* ------------------------------------------------------ model checkpoints */

START_TEST(ckpt_round_trip) {
    tu_tmp_setup();
    model a = tiny(6, 4, 3, true), b = tiny(6, 4, 3, true);
    fill(&a, 0);
    kiln_diag *d = kiln_diag_create();
    rt_shuffle sh;
    ck_assert_int_eq(rt_shuffle_init(&sh, 100, 5, d), KILN_OK);
    rt_shuffle_next(&sh);
    rt_shuffle_next(&sh);
    rt_ckpt_progress pr = {1234, 3, true, rt_shuffle_get_state(&sh)};
    rt_st_meta extra = {"seed", "5"};
    const char *p = tu_tmp_path("ckpt.safetensors");
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, &pr, &extra, 1, 0, d), KILN_OK);
    rt_ckpt_report r;
    ck_assert_msg(rt_ckpt_load(p, b.m, b.bufs, RT_CKPT_STRICT, 0, &r, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert(same(&a, &b)); /* bit for bit, -0 and the denormal included */
    ck_assert_uint_eq(((uint32_t *)b.bufs[0])[0], 0x80000000u);
    ck_assert_uint_eq(((uint32_t *)b.bufs[0])[1], 1);
    ck_assert_int_eq(r.n_loaded, N_GLOBALS);
    ck_assert_int_eq(r.n_skipped, 0);
    ck_assert_int_eq(r.progress.step, 1234);
    ck_assert_int_eq(r.progress.epoch, 3);
    ck_assert(r.progress.has_shuffle);
    ck_assert(r.progress.shuffle.drawn);
    ck_assert_uint_eq(r.progress.shuffle.rng, sh.st.rng);
    ck_assert_str_eq(r.model, "tiny_mlp");
    ck_assert_int_eq(r.format_version, 1);
    ck_assert(r.structure_match);
    /* The restored shuffler continues the run exactly. */
    rt_shuffle s2;
    ck_assert_int_eq(rt_shuffle_init(&s2, 100, 77, d), KILN_OK);
    rt_shuffle_set_state(&s2, r.progress.shuffle);
    ck_assert_mem_eq(s2.perm, sh.perm, 400);
    rt_shuffle_next(&s2);
    rt_shuffle_next(&sh);
    ck_assert_mem_eq(s2.perm, sh.perm, 400);
    rt_shuffle_free(&s2);
    rt_shuffle_free(&sh);
    rt_ckpt_report_free(&r);
    /* The layout, as any safetensors reader sees it. */
    rt_st_file *f;
    ck_assert_int_eq(rt_st_load(p, &f, d), KILN_OK);
    ck_assert_int_eq(rt_st_count(f), N_GLOBALS);
    const rt_st_tensor *k = rt_st_find(f, "h1.kernel");
    ck_assert_int_eq(k->dtype, RT_ST_F32);
    ck_assert_int_eq(k->rank, 2);
    ck_assert_int_eq(k->dims[0], 6);
    ck_assert_int_eq(k->dims[1], 4);
    const rt_st_tensor *it = rt_st_find(f, "optimizer.iterations");
    ck_assert_int_eq(it->dtype, RT_ST_I32);
    ck_assert_int_eq(it->rank, 0);
    ck_assert_int_eq(*(const int32_t *)it->data, 1234567);
    ck_assert_str_eq(rt_st_meta_get(f, "format"), "kiln");
    ck_assert_str_eq(rt_st_meta_get(f, "format_version"), "1");
    ck_assert_str_eq(rt_st_meta_get(f, "kiln_version"), KILN_VERSION_STRING);
    ck_assert_str_eq(rt_st_meta_get(f, "model"), "tiny_mlp");
    ck_assert_str_eq(rt_st_meta_get(f, "step"), "1234");
    ck_assert_str_eq(rt_st_meta_get(f, "epoch"), "3");
    ck_assert_str_eq(rt_st_meta_get(f, "shuffle_drawn"), "true");
    ck_assert_str_eq(rt_st_meta_get(f, "seed"), "5");
    char hb[20];
    snprintf(hb, sizeof hb, "%016llx", (unsigned long long)rt_ckpt_structure_hash(a.m));
    ck_assert_str_eq(rt_st_meta_get(f, "structure_hash"), hb);
    rt_st_free(f);
    /* Parameters only: no optimizer state in the file. */
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, RT_CKPT_PARAMS_ONLY, d),
                     KILN_OK);
    ck_assert_int_eq(rt_st_load(p, &f, d), KILN_OK);
    ck_assert_int_eq(rt_st_count(f), 4);
    ck_assert_ptr_null(rt_st_meta_get(f, "step"));
    rt_st_free(f);
    drop(&a);
    drop(&b);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(ckpt_structure_hash) {
    model a = tiny(6, 4, 3, true), b = tiny(6, 4, 3, false), c = tiny(6, 5, 3, true);
    /* Optimizer state is not structure; a shape is. */
    ck_assert_uint_eq(rt_ckpt_structure_hash(a.m), rt_ckpt_structure_hash(b.m));
    ck_assert_uint_ne(rt_ckpt_structure_hash(a.m), rt_ckpt_structure_hash(c.m));
    kiln_module_set_trainable(a.m, "h1.kernel", 0, NULL);
    ck_assert_uint_eq(rt_ckpt_structure_hash(a.m), rt_ckpt_structure_hash(b.m));
    /* The same parameters declared in another order: the same structure. */
    kiln_module *r = kiln_module_create("reordered");
    kiln_init z = {KILN_INIT_ZEROS, 0, 0};
    kiln_module_add_param(r, "out.bias", KILN_F32, 1, (int64_t[]){3}, z, NULL);
    kiln_module_add_param(r, "h1.kernel", KILN_F32, 2, (int64_t[]){6, 4}, z, NULL);
    kiln_module_add_param(r, "out.kernel", KILN_F32, 2, (int64_t[]){4, 3}, z, NULL);
    ck_assert_uint_ne(rt_ckpt_structure_hash(r), rt_ckpt_structure_hash(b.m));
    kiln_module_add_param(r, "h1.bias", KILN_F32, 1, (int64_t[]){4}, z, NULL);
    ck_assert_uint_eq(rt_ckpt_structure_hash(r), rt_ckpt_structure_hash(b.m));
    kiln_module_dispose(r);
    drop(&a);
    drop(&b);
    drop(&c);
}
END_TEST

START_TEST(ckpt_strict_refusals) {
    tu_tmp_setup();
    model a = tiny(6, 4, 3, true);
    fill(&a, 0);
    kiln_diag *d = kiln_diag_create();
    const char *p = tu_tmp_path("ckpt.safetensors");
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, 0, d), KILN_OK);
    /* Another hidden width: one line, the first mismatch with both shapes
     * and how many more there are; nothing loaded. */
    model b = tiny(6, 5, 3, true);
    rt_ckpt_report r;
    ck_assert_int_eq(rt_ckpt_load(p, b.m, b.bufs, RT_CKPT_STRICT, 0, &r, d), KILN_ERR_SHAPE);
    char want[4096];
    snprintf(want, sizeof want,
             "kiln: error: %1$s: tensor 'h1.kernel' has shape [6,4], the model expects [6,5] "
             "(and 8 more tensors that do not match)\n",
             p);
    ck_assert_str_eq(kiln_diag_message(d), want);
    assert_untouched(&b, NULL);
    rt_ckpt_report_free(&r);
    /* Parameters only, and a model with one more output class. */
    kiln_diag_clear(d);
    model c = tiny(6, 4, 5, false);
    ck_assert_int_eq(rt_ckpt_load(p, c.m, c.bufs, RT_CKPT_STRICT, 0, NULL, d), KILN_ERR_SHAPE);
    snprintf(want, sizeof want,
             "kiln: error: %1$s: tensor 'out.kernel' has shape [4,3], the model expects [4,5] "
             "(and 1 more tensor that does not match)\n",
             p);
    ck_assert_str_eq(kiln_diag_message(d), want);
    /* A parameter the file lacks, and one the model lacks. */
    kiln_diag_clear(d);
    model e = tiny(6, 4, 3, true);
    kiln_init z = {KILN_INIT_ZEROS, 0, 0};
    ck_assert_int_eq(kiln_module_add_param(e.m, "h3.bias", KILN_F32, 1, (int64_t[]){3}, z, NULL),
                     KILN_OK);
    void *bufs[N_GLOBALS + 1];
    memcpy(bufs, e.bufs, sizeof e.bufs);
    float h3[3] = {7, 7, 7};
    bufs[N_GLOBALS] = h3;
    ck_assert_int_eq(rt_ckpt_load(p, e.m, bufs, RT_CKPT_STRICT, 0, NULL, d), KILN_ERR_SHAPE);
    ck_msgf(d, "%s: tensor 'h3.bias' is missing; the model expects F32 [3]", p);
    ck_assert(h3[0] == 7);
    /* The file has a parameter the model has not. */
    rt_st_tensor extra[2] = {{"h1.kernel", RT_ST_F32, 2, {6, 4}, a.bufs[0], 96},
                             {"h9.kernel", RT_ST_F32, 1, {1}, h3, 4}};
    ck_assert_int_eq(rt_st_save(tu_tmp_path("extra"), extra, 2, NULL, 0, d), KILN_OK);
    kiln_diag_clear(d);
    model g = tiny(6, 4, 3, false);
    ck_assert_int_eq(rt_ckpt_load(tu_tmp_path("extra"), g.m, g.bufs, RT_CKPT_STRICT, 0, NULL, d),
                     KILN_ERR_SHAPE);
    snprintf(want, sizeof want,
             "kiln: error: %1$s: tensor 'h1.bias' is missing; the model expects F32 [4] "
             "(and 3 more tensors that do not match)\n",
             tu_tmp_path("extra"));
    ck_assert_str_eq(kiln_diag_message(d), want);
    /* A foreign dtype is named. */
    double k64[24] = {0};
    rt_st_tensor f64[4] = {{"h1.kernel", RT_ST_F64, 2, {6, 4}, k64, 192},
                           {"h1.bias", RT_ST_F32, 1, {4}, a.bufs[1], 16},
                           {"out.kernel", RT_ST_F32, 2, {4, 3}, a.bufs[2], 48},
                           {"out.bias", RT_ST_BF16, 1, {3}, k64, 6}};
    ck_assert_int_eq(rt_st_save(tu_tmp_path("f64"), f64, 4, NULL, 0, d), KILN_OK);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_ckpt_load(tu_tmp_path("f64"), g.m, g.bufs, RT_CKPT_STRICT, 0, NULL, d),
                     KILN_ERR_SHAPE);
    snprintf(want, sizeof want,
             "kiln: error: %1$s: tensor 'h1.kernel' has dtype F64, the model expects F32 "
             "(and 1 more tensor that does not match)\n",
             tu_tmp_path("f64"));
    ck_assert_str_eq(kiln_diag_message(d), want);
    drop(&a);
    drop(&b);
    drop(&c);
    drop(&e);
    drop(&g);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

/* A model without optimizer (inference) loads a training checkpoint. */
START_TEST(ckpt_inference_model_loads_training_file) {
    tu_tmp_setup();
    model a = tiny(6, 4, 3, true), b = tiny(6, 4, 3, false);
    fill(&a, 0);
    kiln_diag *d = kiln_diag_create();
    const char *p = tu_tmp_path("ckpt.safetensors");
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, 0, d), KILN_OK);
    rt_ckpt_report r;
    ck_assert_int_eq(rt_ckpt_load(p, b.m, b.bufs, RT_CKPT_STRICT, 0, &r, d), KILN_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_mem_eq(a.bufs[i], b.bufs[i],
                         (size_t)ir_type_numel(&a.m->globals[i]->type, 1) * 4);
    ck_assert_int_eq(r.n_loaded, 4);
    ck_assert_int_eq(r.n_skipped, 9);
    ck_assert_str_eq(r.skipped[0], "optimizer.h1.kernel.m: not in the model");
    rt_ckpt_report_free(&r);
    /* A training model takes its parameters from a weights-only file. */
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, RT_CKPT_PARAMS_ONLY, d),
                     KILN_OK);
    model c = tiny(6, 4, 3, true);
    ck_assert_int_eq(rt_ckpt_load(p, c.m, c.bufs, RT_CKPT_STRICT, 0, NULL, d), KILN_ERR_SHAPE);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_ckpt_load(p, c.m, c.bufs, RT_CKPT_STRICT, RT_CKPT_PARAMS_ONLY, &r, d),
                     KILN_OK);
    ck_assert_int_eq(r.n_loaded, 4);
    ck_assert_int_eq(r.format_version, 1);
    ck_assert_int_eq(r.progress.step, -1);
    ck_assert(!r.progress.has_shuffle);
    for (int i = 4; i < c.m->n_globals; i++) /* state untouched */
        assert_untouched(&c, c.m->globals[i]->name);
    rt_ckpt_report_free(&r);
    drop(&a);
    drop(&b);
    drop(&c);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(ckpt_finetune_new_head) {
    tu_tmp_setup();
    model a = tiny(6, 4, 3, true);
    fill(&a, 0);
    kiln_diag *d = kiln_diag_create();
    const char *p = tu_tmp_path("pretrained.safetensors");
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, 0, d), KILN_OK);
    /* Same body, a 5-class head, no optimizer state yet. */
    model b = tiny(6, 4, 5, false);
    for (int i = 0; i < 5; i++) ((float *)b.bufs[3])[i] = 0.5f;
    rt_ckpt_report r;
    ck_assert_msg(rt_ckpt_load(p, b.m, b.bufs, RT_CKPT_FINETUNE, 0, &r, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert_str_eq(kiln_diag_message(d), "");
    ck_assert_mem_eq(b.bufs[0], a.bufs[0], 6 * 4 * 4);
    ck_assert_mem_eq(b.bufs[1], a.bufs[1], 4 * 4);
    ck_assert(((float *)b.bufs[3])[4] == 0.5f); /* the head keeps its values */
    ck_assert_int_eq(r.n_loaded, 2);
    ck_assert(!r.structure_match);
    static const char *const skipped[] = {
        "out.kernel: has shape [4,3], the model expects [4,5]",
        "out.bias: has shape [3], the model expects [5]",
        "optimizer.h1.kernel.m: not in the model",
    };
    ck_assert_int_eq(r.n_skipped, 2 + 9);
    for (int i = 0; i < 3; i++) ck_assert_str_eq(r.skipped[i], skipped[i]);
    rt_ckpt_report_free(&r);
    /* Nothing in common is an error. */
    kiln_module *other = kiln_module_create("other");
    kiln_init z = {KILN_INIT_ZEROS, 0, 0};
    kiln_module_add_param(other, "enc.kernel", KILN_F32, 2, (int64_t[]){2, 2}, z, NULL);
    float w[4];
    void *ob[1] = {w};
    ck_assert_int_eq(rt_ckpt_load(p, other, ob, RT_CKPT_FINETUNE, 0, NULL, d), KILN_ERR_SHAPE);
    ck_msgf(d, "%s: no tensor of the checkpoint matches the model (13 tensors in the file)", p);
    kiln_module_dispose(other);
    drop(&a);
    drop(&b);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(ckpt_nonfinite) {
    tu_tmp_setup();
    model a = tiny(6, 4, 3, true);
    fill(&a, 0);
    kiln_diag *d = kiln_diag_create();
    const char *p = tu_tmp_path("ckpt.safetensors");
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, RT_CKPT_REFUSE_NONFINITE, d),
                     KILN_OK);
    size_t n0;
    unsigned char *good = slurp(p, &n0);
    ((float *)a.bufs[2])[7] = NAN;
    ((float *)a.bufs[3])[0] = INFINITY;
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, RT_CKPT_REFUSE_NONFINITE, d),
                     KILN_ERR_NONFINITE);
    ck_msgf(d,
            "%s: not saved: tensor 'out.kernel' holds NaN at element 7; the previous checkpoint "
            "is kept",
            p);
    size_t n1;
    unsigned char *now = slurp(p, &n1);
    ck_assert_uint_eq(n1, n0);
    ck_assert_mem_eq(now, good, n0);
    free(now);
    /* Without the flag it is written; loading refuses it unless allowed. */
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_ckpt_save(p, a.m, a.bufs, NULL, NULL, 0, 0, d), KILN_OK);
    model b = tiny(6, 4, 3, true);
    ck_assert_int_eq(rt_ckpt_load(p, b.m, b.bufs, RT_CKPT_STRICT, 0, NULL, d),
                     KILN_ERR_NONFINITE);
    ck_msgf(d, "%s: tensor 'out.kernel' holds NaN at element 7", p);
    ck_assert(((float *)b.bufs[0])[5] == 0); /* nothing loaded */
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_ckpt_load(p, b.m, b.bufs, RT_CKPT_STRICT, RT_CKPT_ALLOW_NONFINITE, NULL, d),
                     KILN_OK);
    ck_assert(isinf(((float *)b.bufs[3])[0]));
    free(good);
    drop(&a);
    drop(&b);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(ckpt_bad_metadata) {
    tu_tmp_setup();
    model a = tiny(2, 2, 2, false);
    fill(&a, 0);
    kiln_diag *d = kiln_diag_create();
    const char *p = tu_tmp_path("ckpt.safetensors");
    rt_st_tensor t[4];
    for (int i = 0; i < 4; i++) {
        ir_global *g = a.m->globals[i];
        t[i] = (rt_st_tensor){g->name, RT_ST_F32, g->type.rank, {g->type.dims[0], g->type.dims[1]},
                              a.bufs[i], (size_t)ir_type_numel(&g->type, 1) * 4};
    }
    static const struct {
        rt_st_meta m;
        kiln_status st;
        const char *msg;
    } cases[] = {
        {{"format_version", "2"}, KILN_ERR_VERSION,
         "checkpoint format version 2 is newer than this Kiln reads (1)"},
        {{"format_version", "x"}, KILN_ERR_INVALID,
         "metadata 'format_version' is not a version: 'x'"},
        {{"step", "12abc"}, KILN_ERR_INVALID, "metadata 'step' is not a step count: '12abc'"},
        {{"epoch", "-1"}, KILN_ERR_INVALID, "metadata 'epoch' is not an epoch count: '-1'"},
        {{"shuffle_state", "xyz"}, KILN_ERR_INVALID,
         "metadata 'shuffle_state' is not 16 hex digits: 'xyz'"},
        {{"shuffle_state", "00000000000000ff"}, KILN_ERR_INVALID,
         "metadata 'shuffle_drawn' is not true or false: ''"},
    };
    for (size_t i = 0; i < KILN_ARRAY_LEN(cases); i++) {
        ck_assert_int_eq(rt_st_save(p, t, 4, &cases[i].m, 1, d), KILN_OK);
        kiln_diag_clear(d);
        ck_assert_int_eq(rt_ckpt_load(p, a.m, a.bufs, RT_CKPT_STRICT, 0, NULL, d), cases[i].st);
        ck_msgf(d, "%s: %s", p, cases[i].msg);
        kiln_diag_clear(d);
    }
    /* A plain safetensors file (no metadata) loads: format_version 0. */
    ck_assert_int_eq(rt_st_save(p, t, 4, NULL, 0, d), KILN_OK);
    rt_ckpt_report r;
    ck_assert_int_eq(rt_ckpt_load(p, a.m, a.bufs, RT_CKPT_STRICT, 0, &r, d), KILN_OK);
    ck_assert_int_eq(r.format_version, 0);
    ck_assert_ptr_null(r.model);
    ck_assert(!r.structure_match);
    rt_ckpt_report_free(&r);
    drop(&a);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

/* --------------------------------------------------- helper for the .sh */

static int helper_write(const char *path) {
    model t = tiny(3, 4, 2, true);
    fill(&t, 0);
    kiln_diag *d = kiln_diag_create();
    rt_ckpt_progress pr = {1234, 3, true, {0x0123456789abcdefULL, true}};
    kiln_status st = rt_ckpt_save(path, t.m, t.bufs, &pr, NULL, 0, RT_CKPT_REFUSE_NONFINITE, d);
    fputs(kiln_diag_message(d), stderr);
    kiln_diag_dispose(d);
    drop(&t);
    return st ? 1 : 0;
}

static int helper_load_model(const char *path) {
    model t = tiny(3, 4, 2, true);
    kiln_diag *d = kiln_diag_create();
    rt_ckpt_report r;
    kiln_status st = rt_ckpt_load(path, t.m, t.bufs, RT_CKPT_STRICT, 0, &r, d);
    fputs(kiln_diag_message(d), stderr);
    if (!st) {
        printf("step %lld epoch %lld\n", (long long)r.progress.step, (long long)r.progress.epoch);
        for (int i = 0; i < t.m->n_globals; i++) {
            ir_global *g = t.m->globals[i];
            printf("%s", g->name);
            int64_t n = ir_type_numel(&g->type, 1);
            for (int64_t e = 0; e < n; e++) printf(" %08x", ((uint32_t *)t.bufs[i])[e]);
            printf("\n");
        }
    }
    rt_ckpt_report_free(&r);
    kiln_diag_dispose(d);
    drop(&t);
    return st ? 1 : 0;
}

static int helper_dump(const char *path) {
    kiln_diag *d = kiln_diag_create();
    rt_st_file *f;
    kiln_status st = rt_st_load(path, &f, d);
    fputs(kiln_diag_message(d), stderr);
    if (!st) {
        for (int i = 0; i < rt_st_meta_count(f); i++)
            printf("meta %s=%s\n", rt_st_meta_at(f, i)->key, rt_st_meta_at(f, i)->value);
        for (int i = 0; i < rt_st_count(f); i++) {
            const rt_st_tensor *t = rt_st_at(f, i);
            char sb[IR_TYPE_STR_MAX];
            printf("tensor %s %s %s ", t->name, rt_st_dtype_name(t->dtype),
                   rt_st_shape_str(t->rank, t->dims, sb, sizeof sb));
            for (size_t b = 0; b < t->nbytes; b++) printf("%02x", ((const uint8_t *)t->data)[b]);
            printf("\n");
        }
        rt_st_free(f);
    }
    kiln_diag_dispose(d);
    return st ? 1 : 0;
}

static Suite *suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *t = tcase_create("safetensors");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, st_round_trip_every_dtype_and_shape);
    tcase_add_test(t, st_save_refuses_bad_arguments);
    tcase_add_test(t, st_refuses_bad_headers);
    tcase_add_test(t, st_refuses_bad_sizes);
    tcase_add_test(t, st_damaged_files);
    tcase_add_test(t, st_killed_at_each_stage);
    tcase_add_test(t, st_kill9_in_a_loop);
    tcase_add_test(t, st_alloc_failures);
    suite_add_tcase(s, t);
    TCase *c = tcase_create("model");
    tcase_add_test(c, ckpt_round_trip);
    tcase_add_test(c, ckpt_structure_hash);
    tcase_add_test(c, ckpt_strict_refusals);
    tcase_add_test(c, ckpt_inference_model_loads_training_file);
    tcase_add_test(c, ckpt_finetune_new_head);
    tcase_add_test(c, ckpt_nonfinite);
    tcase_add_test(c, ckpt_bad_metadata);
    suite_add_tcase(s, c);
    return s;
}

int main(int argc, char **argv) {
    g_helper = argc == 3;
    if (argc == 3 && strcmp(argv[1], "--write") == 0) return helper_write(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--load-model") == 0) return helper_load_model(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) return helper_dump(argv[2]);
    return tu_run_suite(suite());
}

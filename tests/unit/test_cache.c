/*
 * test_cache.c — the persistent compile cache (codegen/cache.h): SHA-256
 * against the FIPS 180 examples, the entry format, hits that run like the
 * compile they replace, forged entries (corrupt, truncated, foreign
 * version, another CPU's) that are recompiled and never run, a directory
 * that cannot be written or is full, LRU eviction, two processes filling
 * one entry, kiln_cache_info / kiln_cache_clear, compiling several
 * functions at once (cg_jit_compile_each), and the decompressed copies of
 * gzipped IDX files kept in the same directory (hit, changed file, forged
 * entries, a directory that refuses).
 *
 * Each test points KILN_CACHE_DIR at its own temporary directory.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "codegen/aot.h"
#include "codegen/cache.h"
#include "passes/pass.h"
#include "runtime/data.h"
#include "testutil.h"

static const char TINY[] = "model tiny\n"
                           "input x : f32[?, 4]\n"
                           "label y : i32[?]\n"
                           "p = dense(x, 3, activation=softmax)\n"
                           "output p\n"
                           "loss sparse_categorical_crossentropy(p, y)\n"
                           "train {\n  optimizer = sgd(lr=0.1)\n}\n";

static void setup(void) {
    tu_tmp_setup();
    setenv("KILN_CACHE_DIR", tu_tmp_path("cache"), 1);
    unsetenv("KILN_CACHE");
    unsetenv("KILN_CACHE_MAX_MB");
}

static void teardown(void) {
    kiln_cache_clear(NULL, NULL);
    rmdir(tu_tmp_path("cache"));
    tu_tmp_teardown();
}

static void hex(const uint8_t *b, char *out) {
    for (int i = 0; i < CG_SHA256_BYTES; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* ------------------------------------------------------------- SHA-256 */

START_TEST(sha256_fips_vectors) {
    static const struct {
        const char *msg, *digest;
    } v[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
         "lmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t d[CG_SHA256_BYTES];
        char h[65];
        cg_sha256_bytes(v[i].msg, strlen(v[i].msg), d);
        hex(d, h);
        ck_assert_str_eq(h, v[i].digest);
    }
    /* One million 'a', fed in uneven pieces across block boundaries. */
    cg_sha256 s;
    cg_sha256_init(&s);
    char a[1000];
    memset(a, 'a', sizeof a);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t n = step < left ? step : left;
        cg_sha256_update(&s, a, n);
        left -= n;
        step = step % 987 + 13; /* 13 .. 999 bytes */
    }
    uint8_t d[CG_SHA256_BYTES];
    char h[65];
    cg_sha256_final(&s, d);
    hex(d, h);
    ck_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* ------------------------------------------------------- model helpers */

static kiln_module *tiny(void) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_msg(!kiln_model_file_parse(TINY, strlen(TINY), "tiny.kiln", &m, d), "%s",
                  kiln_diag_message(d));
    ck_assert_msg(!pass_run_pipeline(m, "train", NULL, d), "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return m;
}

/* Compiles `func`; asserts the cache status; d may collect warnings. */
static cg_program *compile(kiln_module *m, const char *func, const char *expect, kiln_diag *d) {
    cg_options o;
    memset(&o, 0, sizeof o);
    o.only_func = func;
    cg_program *p = NULL;
    ck_assert_msg(cg_jit_compile(m, &o, &p, d) == KILN_OK, "%s", kiln_diag_message(d));
    ck_assert_str_eq(cg_program_cache_status(p), expect);
    return p;
}

/* @infer on a fixed batch of 5 with the module's initial weights. */
static void run_infer(kiln_module *m, const cg_program *p, float out[15]) {
    void *g[8] = {0};
    ck_assert_int_le(m->n_globals, 8);
    for (int i = 0; i < m->n_globals; i++) {
        g[i] = ir_aligned_alloc((size_t)ir_type_numel(&m->globals[i]->type, 1) * 4 + 4);
        ck_assert_int_eq(ir_global_init(m->globals[i], 7, g[i], NULL), KILN_OK);
    }
    float x[20];
    tu_fill_uniform(x, 20, 3, -1, 1);
    void *args[1] = {x}, *res[1] = {out};
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(!cg_program_run(p, "infer", 5, args, res, g, NULL, d), "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    for (int i = 0; i < m->n_globals; i++) ir_aligned_free(g[i]);
}

/* Sparse labels out of range: the error record path of a cached entry. */
static const char *bad_label_message(const cg_program *p, kiln_diag *d) {
    float x[8] = {0}, loss[2];
    int32_t y[2] = {1, 7};
    void *g[8] = {0};
    float w[16] = {0};
    g[0] = w;
    g[1] = w;
    void *args[2] = {x, y}, *res[2] = {&loss[0], &loss[1]};
    ck_assert_int_ne(cg_program_run(p, "loss", 2, args, res, g, NULL, d), KILN_OK);
    return kiln_diag_message(d);
}

/* Files whose names contain `part` (".kco": entries and their temporaries). */
static int count_files(const char *dir, const char *part) {
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp))) n += strstr(e->d_name, part) != NULL;
    closedir(dp);
    return n;
}

/* The single entry file of the cache directory. */
static const char *the_entry(void) {
    static char path[4200];
    DIR *dp = opendir(tu_tmp_path("cache"));
    ck_assert_ptr_nonnull(dp);
    struct dirent *e;
    path[0] = 0;
    while ((e = readdir(dp)))
        if (strstr(e->d_name, ".kco")) snprintf(path, sizeof path, "%s/%s", tu_tmp_path("cache"), e->d_name);
    closedir(dp);
    ck_assert_msg(path[0], "no entry in the cache");
    return path;
}

/* The entry of function `func`'s object (beside it are its GEMM kernels'). */
static const char *func_entry(kiln_module *m, const char *func) {
    static char path[4200];
    cg_options o;
    memset(&o, 0, sizeof o);
    o.only_func = func;
    cg_cache_key key;
    ck_assert_int_eq(cg_cache_key_of(m, &o, &key, NULL), KILN_OK);
    cg_cache_cfg c;
    cg_cache_config(&c);
    cg_cache_path(&c, &key, path, sizeof path);
    return path;
}

/* ------------------------------------------------------------ hits */

START_TEST(miss_then_hit_runs_the_same) {
    kiln_module *m = tiny();
    kiln_diag *d = kiln_diag_create();
    cg_program *a = compile(m, "infer", "miss", d);
    cg_program *b = compile(m, "infer", "hit", d);
    ck_assert_str_eq(kiln_diag_message(d), "");
    float ya[15], yb[15];
    run_infer(m, a, ya);
    run_infer(m, b, yb);
    ck_assert_mem_eq(ya, yb, sizeof ya);
    float sum = ya[0] + ya[1] + ya[2]; /* softmax rows */
    ck_assert_float_eq_tol(sum, 1.0f, 1e-5f);
    double build, opt, native;
    cg_program_phase_ms(b, &build, &opt, &native);
    ck_assert(build == 0 && opt == 0); /* no LLVM module on a hit */
    cg_program_dispose(a);
    cg_program_dispose(b);
    /* The error record and the fail sites come back from the entry too. */
    cg_program *l1 = compile(m, "loss", "miss", d);
    cg_program *l2 = compile(m, "loss", "hit", d);
    kiln_diag *d1 = kiln_diag_create(), *d2 = kiln_diag_create();
    const char *m1 = bad_label_message(l1, d1), *m2 = bad_label_message(l2, d2);
    ck_assert_ptr_nonnull(strstr(m1, "tiny.kiln:"));
    ck_assert_str_eq(m1, m2);
    kiln_diag_dispose(d1);
    kiln_diag_dispose(d2);
    cg_program_dispose(l1);
    cg_program_dispose(l2);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(key_follows_what_determines_the_code) {
    kiln_module *m = tiny();
    cg_options o;
    memset(&o, 0, sizeof o);
    o.only_func = "infer";
    cg_cache_key k1, k2, k3, k4;
    ck_assert_int_eq(cg_cache_key_of(m, &o, &k1, NULL), KILN_OK);
    ck_assert_int_eq(cg_cache_key_of(m, &o, &k2, NULL), KILN_OK);
    ck_assert_mem_eq(k1.b, k2.b, sizeof k1.b);
    o.opt_level = 2;
    ck_assert_int_eq(cg_cache_key_of(m, &o, &k3, NULL), KILN_OK);
    ck_assert_mem_ne(k1.b, k3.b, sizeof k1.b);
    o.opt_level = 0;
    o.cpu = "x86-64";
    o.features = "";
    ck_assert_int_eq(cg_cache_key_of(m, &o, &k4, NULL), KILN_OK);
    ck_assert_mem_ne(k1.b, k4.b, sizeof k1.b);
    /* The IR: another learning rate changes train_step's code. */
    o.cpu = o.features = NULL;
    o.only_func = "train_step";
    cg_cache_key t1, t2;
    ck_assert_int_eq(cg_cache_key_of(m, &o, &t1, NULL), KILN_OK);
    kiln_module *m2 = NULL;
    char *text = strdup(TINY);
    memcpy(strstr(text, "lr=0.1"), "lr=0.2", 6);
    ck_assert_int_eq(kiln_model_file_parse(text, strlen(text), "tiny.kiln", &m2, NULL), KILN_OK);
    ck_assert_int_eq(pass_run_pipeline(m2, "train", NULL, NULL), KILN_OK);
    ck_assert_int_eq(cg_cache_key_of(m2, &o, &t2, NULL), KILN_OK);
    ck_assert_mem_ne(t1.b, t2.b, sizeof t1.b);
    free(text);
    kiln_module_dispose(m2);
    kiln_module_dispose(m);
}
END_TEST

/* Kiln's GEMM kernels are cached under their own module's key too: a
 * function with the same kinds of GEMM (here infer after loss: the same
 * dense) loads them instead of compiling them, and runs as a fresh compile. */
START_TEST(kernels_reused_across_functions) {
    kiln_module *m = tiny();
    kiln_diag *d = kiln_diag_create();
    cg_program *l = compile(m, "loss", "miss", d);
    ck_assert_double_gt(cg_program_kernels_ms(l, NULL), 0);
    cg_program *a = compile(m, "infer", "miss", d);
    ck_assert_double_eq(cg_program_kernels_ms(a, NULL), 0); /* loaded, not compiled */
    cg_options o;
    memset(&o, 0, sizeof o);
    o.only_func = "infer";
    o.no_cache = true;
    cg_program *b = NULL;
    ck_assert_msg(cg_jit_compile(m, &o, &b, d) == KILN_OK, "%s", kiln_diag_message(d));
    ck_assert_double_gt(cg_program_kernels_ms(b, NULL), 0);
    ck_assert_str_eq(kiln_diag_message(d), "");
    float ya[15], yb[15];
    run_infer(m, a, ya);
    run_infer(m, b, yb);
    ck_assert_mem_eq(ya, yb, sizeof ya);
    cg_program_dispose(l);
    cg_program_dispose(a);
    cg_program_dispose(b);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* The key names the build of Kiln: its GNU build-id (the test program links
 * libkiln.a with -Wl,--build-id), so another build never reuses an entry. */
START_TEST(key_has_the_build_id) {
    const char *id = cg_cache_build_identity();
    ck_assert_ptr_nonnull(id);
    ck_assert_msg(strncmp(id, "build-id:", 9) == 0 && strlen(id) > 9 + 8, "identity %s", id);
    ck_assert_str_eq(cg_cache_build_identity(), id);
    kiln_module *m = tiny();
    cg_options o;
    memset(&o, 0, sizeof o);
    o.only_func = "infer";
    cg_cache_key k, self, other, version;
    ck_assert_int_eq(cg_cache_key_of(m, &o, &k, NULL), KILN_OK);
    ck_assert_int_eq(cg_cache_key_for_build(m, &o, id, &self, NULL), KILN_OK);
    ck_assert_mem_eq(k.b, self.b, sizeof k.b);
    ck_assert_int_eq(cg_cache_key_for_build(m, &o, "build-id:0123456789abcdef", &other, NULL),
                     KILN_OK);
    ck_assert_mem_ne(k.b, other.b, sizeof k.b);
    ck_assert_int_eq(cg_cache_key_for_build(m, &o, "version:" KILN_VERSION_STRING, &version, NULL),
                     KILN_OK);
    ck_assert_mem_ne(k.b, version.b, sizeof k.b);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(cache_off) {
    setenv("KILN_CACHE", "0", 1);
    kiln_module *m = tiny();
    cg_program *p = compile(m, "infer", "off", NULL);
    cg_program_dispose(p);
    cg_options o;
    memset(&o, 0, sizeof o);
    o.only_func = "infer";
    o.no_cache = true;
    unsetenv("KILN_CACHE");
    ck_assert_int_eq(cg_jit_compile(m, &o, &p, NULL), KILN_OK);
    ck_assert_str_eq(cg_program_cache_status(p), "off");
    cg_program_dispose(p);
    ck_assert_int_eq(count_files(tu_tmp_path("cache"), ".kco"), 0);
    kiln_module_dispose(m);
}
END_TEST

/* ------------------------------------------------------ forged entries */

typedef enum forge { FLIP_OBJECT, TRUNCATE, FOREIGN_VERSION, OTHER_CPU, GARBAGE, EMPTY } forge;

/* @infer compiled into the empty cache (a miss) and run: *want. */
static void first_infer(kiln_module *m, float want[15], kiln_diag *d) {
    cg_program *p = compile(m, "infer", "miss", d);
    run_infer(m, p, want);
    cg_program_dispose(p);
}

/* Rewrites the entry file `path` the way `how` says. */
static void forge_entry(kiln_module *m, const char *path, forge how) {
    char *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(ir_read_file(path, &buf, &len, NULL), KILN_OK);
    if (how == FLIP_OBJECT) {
        buf[len - 100] ^= 0x5a; /* inside the object: the checksum no longer matches */
    } else if (how == TRUNCATE) {
        len = len / 2;
    } else if (how == FOREIGN_VERSION) {
        buf[8] = CG_CACHE_FORMAT + 1; /* checksum covers the payload only */
    } else if (how == OTHER_CPU) {
        /* A whole, valid entry, but compiled for another CPU: its key. */
        cg_options o;
        memset(&o, 0, sizeof o);
        o.only_func = "infer";
        o.cpu = "x86-64";
        o.features = "";
        cg_cache_key other;
        ck_assert_int_eq(cg_cache_key_of(m, &o, &other, NULL), KILN_OK);
        cg_module_info *info;
        const void *obj;
        size_t obj_len;
        ck_assert_int_eq(cg_cache_entry_decode(buf, len, NULL, "e", &info, &obj, &obj_len, NULL),
                         KILN_OK);
        char *e;
        size_t elen;
        ck_assert_int_eq(cg_cache_entry_encode(&other, info, obj, obj_len, &e, &elen, NULL), 0);
        cg_module_info_dispose(info);
        ir_free(buf);
        buf = e;
        len = elen;
    } else if (how == GARBAGE) {
        memset(buf, 'x', len);
    } else {
        len = 0;
    }
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    ir_free(buf);
}

START_TEST(forged_entries_are_recompiled) {
    static const forge cases[] = {FLIP_OBJECT, TRUNCATE, FOREIGN_VERSION, OTHER_CPU, GARBAGE, EMPTY};
    forge how = cases[_i];
    kiln_module *m = tiny();
    kiln_diag *d = kiln_diag_create();
    float want[15], got[15];
    first_infer(m, want, d);
    cg_program *p;
    const char *path = func_entry(m, "infer");
    forge_entry(m, path, how);
    /* Detected and recompiled: a miss, never a hit on the forged bytes. */
    p = compile(m, "infer", "miss", d);
    run_infer(m, p, got);
    ck_assert_mem_eq(want, got, sizeof want);
    cg_program_dispose(p);
    /* ... and the entry was written again, whole. */
    p = compile(m, "infer", "hit", d);
    cg_program_dispose(p);
    ck_assert_str_eq(kiln_diag_message(d), "");
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* The entries holding a GEMM kernel module's object (the pseudo-function
 * ".kernels" with the symbol "kiln.gemm"): their paths, at most 8. */
static int kernel_object_entries(char paths[8][4200]) {
    DIR *dp = opendir(tu_tmp_path("cache"));
    ck_assert_ptr_nonnull(dp);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) && n < 8) {
        if (!strstr(e->d_name, ".kco")) continue;
        snprintf(paths[n], 4200, "%s/%s", tu_tmp_path("cache"), e->d_name);
        char *buf = NULL;
        size_t len = 0;
        ck_assert_int_eq(ir_read_file(paths[n], &buf, &len, NULL), KILN_OK);
        cg_module_info *info = NULL;
        const void *obj;
        size_t obj_len;
        if (cg_cache_entry_decode(buf, len, NULL, "e", &info, &obj, &obj_len, NULL) == KILN_OK &&
            info->n_funcs == 1 && !strcmp(info->funcs[0].symbol, "kiln.gemm"))
            n++;
        cg_module_info_dispose(info);
        ir_free(buf);
    }
    closedir(dp);
    return n;
}

/* A compile's entry names its kernel modules' entries: one of those
 * corrupt or gone makes the compile a miss (never a hit without them),
 * which compiles and stores it again. */
START_TEST(kernel_module_entry_bad_or_gone) {
    kiln_module *m = tiny();
    kiln_diag *d = kiln_diag_create();
    float want[15], got[15];
    first_infer(m, want, d);
    cg_program *p;
    for (int how = 0; how < 2; how++) {
        char paths[8][4200];
        ck_assert_int_eq(kernel_object_entries(paths), 1); /* infer's one dense */
        if (how == 0)
            forge_entry(m, paths[0], FLIP_OBJECT);
        else
            ck_assert_int_eq(remove(paths[0]), 0);
        p = compile(m, "infer", "miss", d);
        ck_assert_double_gt(cg_program_kernels_ms(p, NULL), 0); /* compiled again */
        run_infer(m, p, got);
        ck_assert_mem_eq(want, got, sizeof want);
        cg_program_dispose(p);
        p = compile(m, "infer", "hit", d);
        run_infer(m, p, got);
        ck_assert_mem_eq(want, got, sizeof want);
        cg_program_dispose(p);
    }
    ck_assert_str_eq(kiln_diag_message(d), "");
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(decode_reports_what_is_wrong) {
    cg_cache_key key;
    memset(key.b, 7, sizeof key.b);
    cg_func_info fi = {.name = "f", .symbol = "kiln_f", .n_args = 1, .n_results = 1, .ws_fixed = 64, .ws_per_sample = 16, .err_fixed = 48};
    cg_module_info mi = {&fi, 1};
    char obj[32] = "not really an object, but bytes";
    char *e;
    size_t len;
    ck_assert_int_eq(cg_cache_entry_encode(&key, &mi, obj, sizeof obj, &e, &len, NULL), KILN_OK);
    kiln_diag *d = kiln_diag_create();
    cg_module_info *info;
    const void *o;
    size_t olen;
    ck_assert_int_eq(cg_cache_entry_decode(e, len, &key, "entry", &info, &o, &olen, d), KILN_OK);
    ck_assert_str_eq(info->funcs[0].symbol, "kiln_f");
    ck_assert_int_eq(info->funcs[0].ws_per_sample, 16);
    ck_assert_uint_eq(olen, sizeof obj);
    ck_assert_mem_eq(o, obj, sizeof obj);
    cg_module_info_dispose(info);
    ck_assert_int_eq(cg_cache_entry_decode(e, len - 1, &key, "entry", &info, &o, &olen, d),
                     KILN_ERR_PARSE);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "entry: truncated"));
    ck_assert_ptr_null(info);
    kiln_diag_clear(d);
    e[len - 1] ^= 1;
    ck_assert_int_eq(cg_cache_entry_decode(e, len, &key, "entry", &info, &o, &olen, d),
                     KILN_ERR_PARSE);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "entry: checksum mismatch"));
    kiln_diag_clear(d);
    cg_cache_key other = key;
    other.b[31] ^= 1;
    ck_assert_int_eq(cg_cache_entry_decode(e, len, &other, "entry", &info, &o, &olen, d),
                     KILN_ERR_PARSE);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "entry: the entry is for another key"));
    kiln_diag_clear(d);
    e[8] = 9;
    ck_assert_int_eq(cg_cache_entry_decode(e, len, &key, "entry", &info, &o, &olen, d),
                     KILN_ERR_VERSION);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "another version of Kiln"));
    kiln_diag_dispose(d);
    ir_free(e);
}
END_TEST

/* ---------------------------------------------- directories that refuse */

START_TEST(unwritable_directory_warns_once) {
    /* A path under a regular file can never be created (root or not). */
    FILE *f = fopen(tu_tmp_path("file"), "w");
    fclose(f);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/kiln", tu_tmp_path("file"));
    setenv("KILN_CACHE_DIR", dir, 1);
    kiln_module *m = tiny();
    kiln_diag *d = kiln_diag_create();
    cg_program *a = compile(m, "infer", "miss", d);
    cg_program *b = compile(m, "loss", "miss", d);
    const char *msg = kiln_diag_message(d);
    ck_assert_int_eq(kiln_diag_error_count(d), 0);
    ck_assert_msg(strncmp(msg, "kiln: warning: compile cache: ", 30) == 0, "%s", msg);
    ck_assert_ptr_nonnull(strstr(msg, "compiling in memory\n"));
    int lines = 0;
    for (const char *c = msg; *c; c++) lines += *c == '\n';
    ck_assert_int_eq(lines, 1); /* one warning, not one per function */
    float y[15];
    run_infer(m, a, y);
    cg_program_dispose(a);
    cg_program_dispose(b);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(full_cache_warns_and_compiles) {
    setenv("KILN_CACHE_MAX_MB", "0", 1); /* no room for any entry */
    kiln_module *m = tiny();
    kiln_diag *d = kiln_diag_create();
    cg_program *a = compile(m, "infer", "miss", d);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "exceeds the cache size limit"));
    ck_assert_int_eq(kiln_diag_error_count(d), 0);
    float y[15];
    run_infer(m, a, y);
    cg_program_dispose(a);
    ck_assert_int_eq(count_files(tu_tmp_path("cache"), ".kco"), 0);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* ----------------------------------------------------- eviction, sharing */

static void key_n(cg_cache_key *k, int n) {
    memset(k->b, 0, sizeof k->b);
    k->b[0] = (uint8_t)n;
}

START_TEST(lru_eviction) {
    cg_cache_cfg c;
    cg_cache_config(&c);
    char body[1000];
    memset(body, 'b', sizeof body);
    c.max_bytes = 3 * (int64_t)sizeof body; /* three entries fit */
    char why[256];
    cg_cache_key k;
    char path[4200];
    for (int i = 0; i < 3; i++) {
        key_n(&k, i);
        ck_assert_msg(cg_cache_write(&c, &k, body, sizeof body, why, sizeof why), "%s", why);
        cg_cache_path(&c, &k, path, sizeof path);
        struct timespec ts[2] = {{1000 + i, 0}, {1000 + i, 0}}; /* 0 oldest */
        ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
    }
    /* Reading entry 0 makes it the most recently used; 1 is now the oldest. */
    char *buf;
    size_t len;
    key_n(&k, 0);
    ck_assert(cg_cache_read(&c, &k, &buf, &len));
    ir_free(buf);
    key_n(&k, 3);
    ck_assert(cg_cache_write(&c, &k, body, sizeof body, why, sizeof why));
    int64_t n, bytes;
    cg_cache_scan(&c, false, &n, &bytes);
    ck_assert_int_eq(n, 3);
    ck_assert_int_le(bytes, c.max_bytes);
    for (int i = 0; i < 4; i++) {
        key_n(&k, i);
        bool there = cg_cache_read(&c, &k, &buf, &len);
        ir_free(buf);
        ck_assert_msg(there == (i != 1), "entry %d %s", i, there ? "kept" : "evicted");
    }
}
END_TEST

START_TEST(two_processes_fill_one_entry) {
    cg_cache_cfg c;
    cg_cache_config(&c);
    cg_cache_key key;
    memset(key.b, 0x42, sizeof key.b);
    cg_func_info fi = {.name = "f", .symbol = "kiln_f", .n_args = 1, .n_results = 1, .ws_fixed = 64, .ws_per_sample = 16, .err_fixed = 48};
    cg_module_info mi = {&fi, 1};
    static char obj[200000];
    for (size_t i = 0; i < sizeof obj; i++) obj[i] = (char)(i * 7);
    char *e;
    size_t len;
    ck_assert_int_eq(cg_cache_entry_encode(&key, &mi, obj, sizeof obj, &e, &len, NULL), KILN_OK);
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        ck_assert_int_ge(kids[k], 0);
        if (kids[k] == 0) {
            char why[256];
            for (int r = 0; r < 25; r++) {
                if (!cg_cache_write(&c, &key, e, len, why, sizeof why)) _exit(1);
                char *buf;
                size_t n;
                /* A reader at any moment sees a whole entry or none. */
                if (cg_cache_read(&c, &key, &buf, &n)) {
                    cg_module_info *info;
                    const void *o;
                    size_t olen;
                    if (cg_cache_entry_decode(buf, n, &key, "e", &info, &o, &olen, NULL)) _exit(2);
                    cg_module_info_dispose(info);
                    ir_free(buf);
                }
            }
            _exit(0);
        }
    }
    for (int k = 0; k < 4; k++) {
        int status = -1;
        ck_assert_int_eq(waitpid(kids[k], &status, 0), kids[k]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d: status %d", k,
                      status);
    }
    ck_assert_int_eq(count_files(c.dir, ".kco"), 1); /* no temporary files left */
    char *buf;
    size_t n;
    ck_assert(cg_cache_read(&c, &key, &buf, &n));
    ck_assert_uint_eq(n, len);
    ck_assert_mem_eq(buf, e, len);
    ir_free(buf);
    ir_free(e);
}
END_TEST

START_TEST(info_and_clear) {
    kiln_module *m = tiny();
    cg_program_dispose(compile(m, "infer", "miss", NULL));
    cg_program_dispose(compile(m, "loss", "miss", NULL));
    kiln_cache_stats cs;
    ck_assert_int_eq(kiln_cache_info(&cs, NULL), KILN_OK);
    ck_assert_str_eq(cs.dir, tu_tmp_path("cache"));
    /* Two entries a compile, the functions' object and the GEMM kernels',
     * and the kernels once more under their module's own key (both
     * functions have the same dense: one entry). */
    ck_assert_int_eq(cs.entries, 5);
    ck_assert_int_gt(cs.bytes, 1000);
    ck_assert_int_eq(cs.max_bytes, (int64_t)256 << 20);
    ck_assert_int_eq(cs.enabled, 1);
    int64_t removed = -1;
    ck_assert_int_eq(kiln_cache_clear(&removed, NULL), KILN_OK);
    ck_assert_int_eq(removed, 5);
    ck_assert_int_eq(kiln_cache_info(&cs, NULL), KILN_OK);
    ck_assert_int_eq(cs.entries, 0);
    cg_program_dispose(compile(m, "infer", "miss", NULL));
    kiln_module_dispose(m);
}
END_TEST

START_TEST(config_from_environment) {
    cg_cache_cfg c;
    unsetenv("KILN_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/x/y", 1);
    cg_cache_config(&c);
    ck_assert_str_eq(c.dir, "/x/y/kiln");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    cg_cache_config(&c);
    ck_assert_str_eq(c.dir, "/home/u/.cache/kiln");
    setenv("KILN_CACHE_MAX_MB", "12", 1);
    cg_cache_config(&c);
    ck_assert_int_eq(c.max_bytes, (int64_t)12 << 20);
    setenv("KILN_CACHE_MAX_MB", "lots", 1);
    cg_cache_config(&c);
    ck_assert_int_eq(c.max_bytes, (int64_t)256 << 20);
    setenv("KILN_CACHE", "0", 1);
    cg_cache_config(&c);
    ck_assert(!c.enabled);
}
END_TEST

START_TEST(compile_each_concurrently) {
    kiln_module *m = tiny();
    const char *fns[3] = {"train_step", "loss", "infer"};
    cg_program *p[3];
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(cg_jit_compile_each(m, fns, 3, NULL, p, d) == KILN_OK, "%s", kiln_diag_message(d));
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(cg_program_cache_status(p[i]), "miss");
        ck_assert_ptr_nonnull(cg_program_entry(p[i], fns[i]));
    }
    cg_program *q[3];
    ck_assert_int_eq(cg_jit_compile_each(m, fns, 3, NULL, q, d), KILN_OK);
    for (int i = 0; i < 3; i++) ck_assert_str_eq(cg_program_cache_status(q[i]), "hit");
    float a[15], b[15];
    run_infer(m, p[2], a);
    run_infer(m, q[2], b);
    ck_assert_mem_eq(a, b, sizeof a);
    for (int i = 0; i < 3; i++) {
        cg_program_dispose(p[i]);
        cg_program_dispose(q[i]);
    }
    /* One failing compile: an error naming it, and no program at all. */
    const char *bad[3] = {"infer", "nope", "loss"};
    ck_assert_int_ne(cg_jit_compile_each(m, bad, 3, NULL, p, d), KILN_OK);
    ck_assert_ptr_nonnull(strstr(kiln_diag_message(d), "nope"));
    ck_assert_int_eq(kiln_diag_error_count(d), 1);
    for (int i = 0; i < 3; i++) ck_assert_ptr_null(p[i]);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* kiln_model_create_now: the listed functions compile with the main one,
 * concurrently, and run like those compiled one by one when first used. */
START_TEST(model_create_now_matches_lazy) {
    setenv("KILN_CACHE", "0", 1); /* both models compile */
    kiln_diag *d = kiln_diag_create();
    kiln_model_opts o = {KILN_BACKEND_JIT, 1, 7, KILN_GEMM_AUTO};
    kiln_model *lazy = NULL, *now = NULL;
    ck_assert_msg(!kiln_model_create(tiny(), &o, &lazy, d), "%s", kiln_diag_message(d));
    ck_assert_msg(!kiln_model_create_now(tiny(), &o, "infer,nope,loss", &now, d), "%s",
                  kiln_diag_message(d));
    ck_assert_str_eq(kiln_model_cache_status(now, "train_step"), "off");
    ck_assert_str_eq(kiln_model_cache_status(now, "loss"), "off");
    ck_assert_str_eq(kiln_model_cache_status(now, "infer"), "off");
    ck_assert_ptr_null(kiln_model_cache_status(lazy, "infer"));
    float x[20], a[15], b[15];
    for (int i = 0; i < 20; i++) x[i] = (float)(i % 7) * 0.25f - 0.5f;
    ck_assert_msg(!kiln_model_predict(lazy, x, 5, a, d), "%s", kiln_diag_message(d));
    ck_assert_msg(!kiln_model_predict(now, x, 5, b, d), "%s", kiln_diag_message(d));
    ck_assert_str_eq(kiln_model_cache_status(lazy, "infer"), "off");
    ck_assert_mem_eq(a, b, sizeof a);
    kiln_model_dispose(lazy);
    kiln_model_dispose(now);
    kiln_diag_dispose(d);
}
END_TEST

/* ------------------------------------------------ AOT (codegen/aot.c) */

/* cg_aot_compile of `m` to an object file; its bytes (ir_free). */
static char *aot_object(kiln_module *m, void *const *globals, const char *expect, size_t *len) {
    cg_cache_status status = CG_CACHE_OFF;
    cg_aot_options o;
    memset(&o, 0, sizeof o);
    o.output = tu_tmp_path("aot.o");
    o.prefix = "tiny";
    o.embed = globals != NULL;
    o.emit = CG_AOT_OBJ;
    o.cache = &status;
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(cg_aot_compile(m, globals, &o, d) == KILN_OK, "%s", kiln_diag_message(d));
    ck_assert_str_eq(kiln_diag_message(d), "");
    ck_assert_str_eq(cg_cache_status_name(status), expect);
    kiln_diag_dispose(d);
    char *buf;
    ck_assert_int_eq(ir_read_file(o.output, &buf, len, NULL), KILN_OK);
    return buf;
}

START_TEST(aot_object_from_the_cache) {
    kiln_module *m = tiny();
    size_t n1, n2, n3;
    char *a = aot_object(m, NULL, "miss", &n1);
    char *b = aot_object(m, NULL, "hit", &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(a, b, n1);
    /* A forged entry is compiled again, to the same object. */
    forge_entry(m, the_entry(), FLIP_OBJECT);
    char *c = aot_object(m, NULL, "miss", &n3);
    ck_assert_uint_eq(n1, n3);
    ck_assert_mem_eq(a, c, n1);
    ir_free(b);
    ir_free(c);
    /* Embedded weights are in the key: other values, other code. */
    void *g[16] = {0};
    ck_assert_int_le(m->n_globals, 16);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < m->n_globals; i++) {
            size_t bytes = (size_t)ir_type_numel(&m->globals[i]->type, 1) * 4;
            g[i] = ir_malloc(bytes + 4);
            memset(g[i], pass ? 0x3f : 0, bytes + 4);
        }
        size_t n;
        char *e = aot_object(m, g, "miss", &n);
        ir_free(e);
        ir_free(aot_object(m, g, "hit", &n));
        for (int i = 0; i < m->n_globals; i++) ir_free(g[i]);
    }
    setenv("KILN_CACHE", "0", 1);
    ir_free(aot_object(m, NULL, "off", &n3));
    ir_free(a);
    kiln_module_dispose(m);
}
END_TEST

/* ------------------------------------- decompressed data (runtime/data.c) */

enum { DATA_ROWS = 600, DATA_COLS = 1000 }; /* int16: 1.2 MB, above the 1 MB floor */

static int16_t data_value(int i, int salt) {
    return (int16_t)((i * 31 + salt) % 30000 - 15000);
}

/* A gzipped IDX file of int16 (big-endian, so the byte order is exercised). */
static void write_data_file(const char *path, int salt) {
    gzFile f = gzopen(path, "wb1");
    ck_assert_ptr_nonnull(f);
    uint8_t head[12] = {0, 0, 0x0B, 2, 0, 0, DATA_ROWS >> 8, DATA_ROWS & 0xff,
                        0, 0, DATA_COLS >> 8, DATA_COLS & 0xff};
    gzwrite(f, head, sizeof head);
    static uint8_t be[2 * DATA_ROWS * DATA_COLS];
    for (int i = 0; i < DATA_ROWS * DATA_COLS; i++) {
        uint16_t v = (uint16_t)data_value(i, salt);
        be[2 * i] = (uint8_t)(v >> 8);
        be[2 * i + 1] = (uint8_t)v;
    }
    ck_assert_int_eq(gzwrite(f, be, sizeof be), (int)sizeof be);
    ck_assert_int_eq(gzclose(f), Z_OK);
}

/* Loads `path`, checks it holds the values of `salt`, and whether it was a
 * hit; returns the diag's text (static copy). */
static const char *load_data(const char *path, int salt, bool want_hit) {
    static char msg[4096];
    kiln_diag *d = kiln_diag_create();
    rt_idx a;
    bool hit = !want_hit;
    ck_assert_msg(rt_idx_load_cached(path, &a, &hit, d) == KILN_OK, "%s", kiln_diag_message(d));
    ck_assert_msg(hit == want_hit, "expected a %s", want_hit ? "hit" : "miss");
    ck_assert_int_eq(a.type, RT_IDX_I16);
    ck_assert_int_eq(a.rank, 2);
    ck_assert_int_eq(a.dims[0], DATA_ROWS);
    ck_assert_int_eq(a.dims[1], DATA_COLS);
    const int16_t *v = a.data;
    for (int i = 0; i < DATA_ROWS * DATA_COLS; i++)
        if (v[i] != data_value(i, salt))
            ck_abort_msg("element %d: %d, want %d", i, v[i], data_value(i, salt));
    rt_idx_free(&a);
    snprintf(msg, sizeof msg, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return msg;
}

START_TEST(data_copy_hit_and_off) {
    const char *path = tu_tmp_path("d.idx.gz");
    write_data_file(path, 0);
    ck_assert_str_eq(load_data(path, 0, false), "");
    ck_assert_int_eq(count_files(tu_tmp_path("cache"), ".kco"), 1);
    ck_assert_str_eq(load_data(path, 0, true), "");
    setenv("KILN_CACHE", "0", 1);
    load_data(path, 0, false); /* off: inflated, not looked up */
    unsetenv("KILN_CACHE");
    /* The file changes: a miss with the new values, never the old copy. */
    write_data_file(path, 5);
    ck_assert_str_eq(load_data(path, 5, false), "");
    ck_assert_str_eq(load_data(path, 5, true), "");
}
END_TEST

typedef enum dforge {
    D_FLIP_DATA,
    D_FLIP_DIM,
    D_TRUNCATE,
    D_FOREIGN,
    D_GARBAGE,
    D_EMPTY,
    D_OTHER_KEY
} dforge;

/* Corrupt, truncated, foreign-format or another file's entries: detected,
 * inflated again, rewritten. */
START_TEST(data_forged_entries_are_reread) {
    static const dforge cases[] = {D_FLIP_DATA, D_FLIP_DIM, D_TRUNCATE, D_FOREIGN,
                                   D_GARBAGE,   D_EMPTY,    D_OTHER_KEY};
    dforge how = cases[_i];
    const char *path = tu_tmp_path("d.idx.gz");
    write_data_file(path, 1);
    load_data(path, 1, false);
    char entry[4200];
    snprintf(entry, sizeof entry, "%s", the_entry());
    char *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(ir_read_file(entry, &buf, &len, NULL), KILN_OK);
    if (how == D_FLIP_DATA) {
        buf[len - 1000] ^= 0x01; /* one bit of one value: only the checksum tells */
    } else if (how == D_FLIP_DIM) {
        buf[64 + 7] = (char)(DATA_COLS & 0xff); /* 600x1000 -> 1000x1000: too short */
        buf[64 + 6] = DATA_COLS >> 8;
    } else if (how == D_TRUNCATE) {
        len -= 4096;
    } else if (how == D_FOREIGN) {
        buf[8]++;
    } else if (how == D_GARBAGE) {
        memset(buf, 'x', len);
    } else if (how == D_EMPTY) {
        len = 0;
    } else {
        /* A whole, valid entry of another file, under this file's name. */
        const char *other = tu_tmp_path("other.idx.gz");
        write_data_file(other, 9);
        remove(entry);
        load_data(other, 9, false);
        ir_free(buf);
        ck_assert_int_eq(ir_read_file(the_entry(), &buf, &len, NULL), KILN_OK);
        remove(the_entry());
    }
    FILE *f = fopen(entry, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    ir_free(buf);
    ck_assert_str_eq(load_data(path, 1, false), ""); /* detected: inflated again */
    ck_assert_str_eq(load_data(path, 1, true), "");  /* ... and the entry rewritten */
    /* The fuzz target's reader refuses the forged bytes the same way. */
    if (how != D_OTHER_KEY) {
        ck_assert_int_eq(ir_read_file(entry, &buf, &len, NULL), KILN_OK);
        rt_idx a;
        ck_assert_int_eq(rt_idx_cache_decode(buf, len, "e", &a, NULL), KILN_OK);
        rt_idx_free(&a);
        ir_free(buf);
    }
}
END_TEST

/* The fuzz corpus's seeds are whole entries (so the fuzzer starts past the
 * checksum): written by tests/fuzz, read back here. */
START_TEST(data_fuzz_seeds_decode) {
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/datacache/seed-entry-%d",
                 KILN_SOURCE_DIR, i);
        char *buf;
        size_t len;
        ck_assert_int_eq(ir_read_file(path, &buf, &len, NULL), KILN_OK);
        rt_idx a;
        kiln_diag *d = kiln_diag_create();
        ck_assert_msg(rt_idx_cache_decode(buf + 1, len - 1, "seed", &a, d) == KILN_OK, "%s: %s",
                      path, kiln_diag_message(d));
        rt_idx_free(&a);
        kiln_diag_dispose(d);
        ir_free(buf);
    }
}
END_TEST

START_TEST(data_unwritable_directory_warns) {
    FILE *f = fopen(tu_tmp_path("file"), "w");
    fclose(f);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/kiln", tu_tmp_path("file"));
    setenv("KILN_CACHE_DIR", dir, 1);
    const char *path = tu_tmp_path("d.idx.gz");
    write_data_file(path, 2);
    const char *msg = load_data(path, 2, false);
    ck_assert_msg(strncmp(msg, "kiln: warning: compile cache: ", 30) == 0, "%s", msg);
    ck_assert_ptr_nonnull(strstr(msg, "reading the data without it\n"));
    ck_assert_str_eq(load_data(path, 2, false), ""); /* once per process */
}
END_TEST

static Suite *cache_suite(void) {
    Suite *s = suite_create("cache");
    TCase *t = tcase_create("cache");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, sha256_fips_vectors);
    tcase_add_test(t, model_create_now_matches_lazy);
    tcase_add_test(t, miss_then_hit_runs_the_same);
    tcase_add_test(t, key_follows_what_determines_the_code);
    tcase_add_test(t, key_has_the_build_id);
    tcase_add_test(t, kernels_reused_across_functions);
    tcase_add_test(t, cache_off);
    tcase_add_loop_test(t, forged_entries_are_recompiled, 0, 6);
    tcase_add_test(t, kernel_module_entry_bad_or_gone);
    tcase_add_test(t, decode_reports_what_is_wrong);
    tcase_add_test(t, unwritable_directory_warns_once);
    tcase_add_test(t, full_cache_warns_and_compiles);
    tcase_add_test(t, lru_eviction);
    tcase_add_test(t, two_processes_fill_one_entry);
    tcase_add_test(t, info_and_clear);
    tcase_add_test(t, config_from_environment);
    tcase_add_test(t, compile_each_concurrently);
    tcase_add_test(t, aot_object_from_the_cache);
    tcase_add_test(t, data_copy_hit_and_off);
    tcase_add_loop_test(t, data_forged_entries_are_reread, 0, 7);
    tcase_add_test(t, data_fuzz_seeds_decode);
    tcase_add_test(t, data_unwritable_directory_warns);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(cache_suite()); }

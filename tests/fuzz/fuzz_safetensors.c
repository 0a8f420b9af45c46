/*
 * fuzz_safetensors.c — the safetensors loader (rt_st_parse) and applying a
 * checkpoint to a model (rt_ckpt_apply, what kiln_model_load does after
 * reading the file).
 *
 * Any bytes: an error naming the file ("fuzz.safetensors: ...") or a file
 * whose every tensor lies inside the data with the byte count its dtype and
 * shape need (read in full, so AddressSanitizer sees any overrun), findable
 * by name. The file is then applied to a small model — strict and
 * fine-tune, with and without optimizer state — and an apply that fails
 * must leave every weight as it was (all or nothing); one that succeeds
 * must have copied exactly the file's bytes. Nothing may leak.
 */
#include "fuzz.h"
#include "runtime/checkpoint.h"

/* The model the checkpoints are applied to: two dense layers and Adam's
 * state, named as the frontend and the optimizer pass name them. */
static const char k_model[] = "module @tiny\n"
                              "param @h1.kernel : f32[2,3] = glorot_uniform\n"
                              "param @h1.bias : f32[3] = zeros\n"
                              "param @out.kernel : f32[3,2] = glorot_uniform\n"
                              "param @out.bias : f32[2] = zeros\n"
                              "state @optimizer.iterations : i32[] = zeros\n"
                              "state @optimizer.h1.kernel.m : f32[2,3] = zeros\n"
                              "state @optimizer.h1.kernel.v : f32[2,3] = zeros\n"
                              "state @optimizer.h1.bias.m : f32[3] = zeros\n"
                              "state @optimizer.h1.bias.v : f32[3] = zeros\n"
                              "state @optimizer.out.kernel.m : f32[3,2] = zeros\n"
                              "state @optimizer.out.kernel.v : f32[3,2] = zeros\n"
                              "state @optimizer.out.bias.m : f32[2] = zeros\n"
                              "state @optimizer.out.bias.v : f32[2] = zeros\n";

enum { MAX_GLOBALS = 16, MAX_BYTES = 64 };
static kiln_module *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    kiln_diag *d = kiln_diag_create();
    if (kiln_module_parse(k_model, sizeof k_model - 1, "tiny.kir", &g_model, d)) {
        fprintf(stderr, "fuzz_safetensors: the model does not parse:\n%s", kiln_diag_message(d));
        abort();
    }
    kiln_diag_dispose(d);
    FUZZ_CHECK(g_model->n_globals <= MAX_GLOBALS, "model too big");
    return 0;
}

static void check_file(const rt_st_file *f) {
    unsigned sum = 0;
    for (int i = 0; i < rt_st_count(f); i++) {
        const rt_st_tensor *t = rt_st_at(f, i);
        FUZZ_CHECK(t && t->name && t->name[0], "tensor %d has no name", i);
        FUZZ_CHECK((unsigned)t->dtype < RT_ST_DTYPE_COUNT, "tensor %d: dtype %d", i, (int)t->dtype);
        FUZZ_CHECK(t->rank >= 0 && t->rank <= RT_ST_MAX_RANK, "tensor %d: rank %d", i, t->rank);
        size_t n = rt_st_dtype_size(t->dtype);
        for (int k = 0; k < t->rank; k++) n *= (size_t)t->dims[k];
        FUZZ_CHECK(n == t->nbytes, "tensor %d: %zu bytes for its shape, %zu held", i, n, t->nbytes);
        const unsigned char *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        FUZZ_CHECK(rt_st_find(f, t->name) == t, "tensor '%s' is not found by name", t->name);
    }
    for (int i = 0; i < rt_st_meta_count(f); i++) {
        const rt_st_meta *e = rt_st_meta_at(f, i);
        FUZZ_CHECK(e && e->key && e->value, "metadata %d", i);
        FUZZ_CHECK(rt_st_meta_get(f, e->key) != NULL, "metadata '%s' not found", e->key);
    }
    (void)sum;
}

/* The file's tensor that an apply in this mode must load into g, found
 * here independently of the loader: same name, dtype and shape; NULL for
 * optimizer state when only parameters are loaded. */
static const rt_st_tensor *expected_tensor(const rt_st_file *f, const ir_global *g,
                                           unsigned flags) {
    if (g->kind != IR_GLOBAL_PARAM && (flags & RT_CKPT_PARAMS_ONLY)) return NULL;
    const rt_st_tensor *t = rt_st_find(f, g->name);
    if (!t || t->dtype != (g->type.dtype == IR_I32 ? RT_ST_I32 : RT_ST_F32)) return NULL;
    if (t->rank != g->type.rank) return NULL;
    for (int k = 0; k < t->rank; k++)
        if (t->dims[k] != g->type.dims[k]) return NULL;
    return t;
}

static void check_apply(const rt_st_file *f, rt_ckpt_mode mode, unsigned flags) {
    const kiln_module *m = g_model;
    unsigned char buf[MAX_GLOBALS][MAX_BYTES];
    void *globals[MAX_GLOBALS];
    for (int i = 0; i < m->n_globals; i++) {
        memset(buf[i], 0xA5 ^ i, MAX_BYTES);
        globals[i] = buf[i];
    }
    kiln_diag *d = kiln_diag_create();
    rt_ckpt_report r;
    kiln_status st = rt_ckpt_apply(f, m, globals, mode, flags, &r, d);
    if (st) {
        fuzz_check_error(st, d, "fuzz.safetensors");
        for (int i = 0; i < m->n_globals; i++)
            for (int k = 0; k < MAX_BYTES; k++)
                FUZZ_CHECK(buf[i][k] == (unsigned char)(0xA5 ^ i),
                           "a refused checkpoint changed '%s'", m->globals[i]->name);
    } else {
        FUZZ_CHECK(kiln_diag_error_count(d) == 0, "KILN_OK with errors:\n%s", kiln_diag_message(d));
        /* Every global that matches a tensor holds exactly its bytes (even
         * bytes that equal the buffer's fill), every other one is untouched,
         * and the report counts exactly the copies. */
        int expected = 0;
        for (int i = 0; i < m->n_globals; i++) {
            const ir_global *g = m->globals[i];
            const rt_st_tensor *t = expected_tensor(f, g, flags);
            size_t bytes = (size_t)ir_type_numel(&g->type, 1) * 4;
            if (t) {
                expected++;
                FUZZ_CHECK(t->nbytes == bytes && memcmp(t->data, buf[i], bytes) == 0,
                           "'%s' does not hold the file's bytes after a load", g->name);
            } else {
                for (size_t k = 0; k < bytes; k++)
                    FUZZ_CHECK(buf[i][k] == (unsigned char)(0xA5 ^ i),
                               "'%s' changed without a matching tensor", g->name);
            }
            for (size_t k = bytes; k < MAX_BYTES; k++)
                FUZZ_CHECK(buf[i][k] == (unsigned char)(0xA5 ^ i), "'%s' written past its end",
                           g->name);
        }
        FUZZ_CHECK(expected == r.n_loaded, "%d tensors match the model, %d reported loaded",
                   expected, r.n_loaded);
        if (mode == RT_CKPT_STRICT && !(flags & RT_CKPT_PARAMS_ONLY))
            FUZZ_CHECK(r.n_loaded == m->n_globals, "a strict load loaded %d of %d", r.n_loaded,
                       m->n_globals);
    }
    rt_ckpt_report_free(&r);
    kiln_diag_dispose(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = kiln_test_alloc_live();
    kiln_diag *d = kiln_diag_create();
    rt_st_file *f = NULL;
    kiln_status st = rt_st_parse(data, size, "fuzz.safetensors", &f, d);
    if (st) {
        FUZZ_CHECK(!f, "an error (%s) with a file", kiln_status_string(st));
        fuzz_check_error(st, d, "fuzz.safetensors");
    } else {
        FUZZ_CHECK(f, "KILN_OK without a file");
        check_file(f);
        check_apply(f, RT_CKPT_STRICT, 0);
        check_apply(f, RT_CKPT_STRICT, RT_CKPT_PARAMS_ONLY);
        check_apply(f, RT_CKPT_FINETUNE, RT_CKPT_PARAMS_ONLY);
        check_apply(f, RT_CKPT_FINETUNE, RT_CKPT_ALLOW_NONFINITE);
        rt_st_free(f);
    }
    kiln_diag_dispose(d);
    fuzz_check_no_leak(live, "rt_st_parse");
    return 0;
}

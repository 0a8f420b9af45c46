/*
 * onnx_check.c — runs one case of ONNX's backend test suite:
 *   onnx_check CASE_DIR
 * imports CASE_DIR/model.onnx, runs the pass inference-mode on it (as the
 * infer pipeline does first), feeds every test_data_set_N/input_K.pb to
 * the function `infer` in the reference interpreter and compares its
 * results with output_K.pb (rtol 1e-3, atol 1e-7, ONNX's own tolerances).
 * The .pb files are read by the same generated protobuf code as the model.
 * Exit status: 0 passed, 77 skipped (an op or feature Kiln lacks: the
 * import said KILN_ERR_UNSUPPORTED; the reason is printed), 1 failed.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx.h"
#include "passes/pass.h"
#include "runtime/runtime.h"

#define SKIP 77

static char g_msg[1024];

static int fail_msg(int code, const char *fmt, const char *a, const char *b) {
    snprintf(g_msg, sizeof g_msg, fmt, a, b);
    return code;
}

static int read_pb(const char *path, ox_tensor *t, kiln_diag *d) {
    char *bytes;
    size_t len;
    if (ir_read_file(path, &bytes, &len, d)) return -1;
    kiln_status st = ox_tensor_read(bytes, len, path, t, NULL, d);
    ir_free(bytes);
    return st ? (st == KILN_ERR_UNSUPPORTED ? SKIP : 1) : 0;
}

static bool same_shape(const ir_type *t, int64_t batch, const ox_tensor *x) {
    if (t->rank != x->rank) return false;
    for (int k = 0; k < t->rank; k++)
        if ((t->dims[k] == KILN_BATCH ? batch : t->dims[k]) != x->dims[k]) return false;
    return true;
}

/* Compares result r (type t, batch bound) with the expected tensor e. */
static int compare(const ir_type *t, int64_t batch, const void *r, const ox_tensor *e,
                   const char *what) {
    char buf[IR_TYPE_STR_MAX];
    if (!same_shape(t, batch, e))
        return fail_msg(1, "%s: result %s has another shape than expected", what,
                        ir_type_str(t, buf, sizeof buf));
    for (int64_t k = 0; k < e->n; k++) {
        double got = t->dtype == IR_F32 ? ((const float *)r)[k] : ((const int32_t *)r)[k];
        double want = e->is_int ? (double)e->i[k] : e->f[k];
        bool ok = isnan(want) ? isnan(got) : (got == want || fabs(got - want) <= 1e-7 + 1e-3 * fabs(want));
        if (!ok) {
            char at[160];
            snprintf(at, sizeof at, "element %lld: got %.9g, expected %.9g", (long long)k, got, want);
            return fail_msg(1, "%s: %s", what, at);
        }
    }
    return 0;
}

static int run_set(kiln_module *m, void **globals, const char *dir, kiln_diag *d) {
    kiln_func *f = kiln_module_func(m, "infer");
    ox_tensor in[16], out[16];
    void *args[16] = {0}, *res[16] = {0};
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    char path[4096];
    int rc = 0, n_in = f->n_args, n_out = f->n_results;
    if (n_in > 16 || n_out > 16) return fail_msg(SKIP, "more than 16 inputs or outputs%s%s", "", "");
    int64_t batch = 1;
    for (int k = 0; !rc && k < n_in; k++) {
        snprintf(path, sizeof path, "%s/input_%d.pb", dir, k);
        if ((rc = read_pb(path, &in[k], d))) break;
        const ir_type *t = &f->args[k]->type;
        int b = ir_type_batch_axis(t);
        if (b >= 0 && b < in[k].rank) batch = in[k].dims[b];
        if (!same_shape(t, batch, &in[k])) rc = fail_msg(1, "%s: shape differs from the graph's input%s", path, "");
        else if (!(args[k] = ir_aligned_alloc((size_t)(in[k].n ? in[k].n : 1) * 4))) rc = 1;
        else if (t->dtype == IR_F32 && !in[k].is_int) memcpy(args[k], in[k].f, (size_t)in[k].n * 4);
        else if (t->dtype == IR_I32 && in[k].is_int)
            for (int64_t j = 0; j < in[k].n; j++) ((int32_t *)args[k])[j] = (int32_t)in[k].i[j];
        else rc = fail_msg(1, "%s: data type differs from the graph's input%s", path, "");
    }
    for (int k = 0; !rc && k < n_out; k++) {
        int64_t n = ir_type_numel(&f->results[k]->type, batch);
        if (!(res[k] = ir_aligned_alloc((size_t)(n ? n : 1) * 4))) rc = 1;
    }
    if (!rc && ir_interp_run(f, batch, args, res, globals, d))
        rc = fail_msg(1, "interpreter: %s%s", kiln_diag_message(d), "");
    for (int k = 0; !rc && k < n_out; k++) {
        snprintf(path, sizeof path, "%s/output_%d.pb", dir, k);
        ir_type t = ir_type_bind(&f->results[k]->type, batch);
        if (!(rc = read_pb(path, &out[k], d))) rc = compare(&t, batch, res[k], &out[k], path);
    }
    for (int k = 0; k < 16; k++) {
        ox_tensor_free(&in[k]);
        ox_tensor_free(&out[k]);
        ir_aligned_free(args[k]);
        ir_aligned_free(res[k]);
    }
    return rc;
}

static int check_case(const char *dir, kiln_diag *d) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    kiln_module *m = NULL;
    kiln_status st = kiln_onnx_load(path, &m, d);
    if (st) return fail_msg(st == KILN_ERR_UNSUPPORTED ? SKIP : 1, "%s%s", kiln_diag_message(d), "");
    /* inference: batch normalization on its moving statistics, no dropout */
    if (pass_inference_mode(m, d)) {
        kiln_module_dispose(m);
        return fail_msg(1, "%s%s", kiln_diag_message(d), "");
    }
    void **globals = NULL;
    int rc = 0;
    if (rt_globals_create(m, 1, &globals, d)) rc = fail_msg(1, "%s%s", kiln_diag_message(d), "");
    DIR *dd = rc ? NULL : opendir(dir);
    struct dirent *e;
    int sets = 0;
    while (dd && !rc && (e = readdir(dd))) {
        if (strncmp(e->d_name, "test_data_set_", 14)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rc = run_set(m, globals, path, d);
        sets++;
    }
    if (dd) closedir(dd);
    if (!rc && !sets) rc = fail_msg(SKIP, "no test data sets%s%s", "", "");
    rt_globals_free(m, globals);
    kiln_module_dispose(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: onnx_check CASE_DIR\n");
        return 2;
    }
    kiln_diag *d = kiln_diag_create();
    int rc = check_case(argv[1], d);
    kiln_diag_dispose(d);
    if (rc) {
        /* one line: the first line of the message */
        char *nl = strchr(g_msg, '\n');
        if (nl) *nl = 0;
        printf("%s\n", g_msg);
    }
    return rc;
}

/*
 * export_check.c — what `kiln export` writes, next to what Kiln computes,
 * through the public C API (as a program that builds its model in C would):
 *   export_check MODEL OUT_DIR [CKPT]
 * loads MODEL (.kiln, .kir or .onnx), gives it its weights
 * (kiln_module_load_weights: seed 1, then CKPT if given), writes
 * OUT_DIR/model.onnx (kiln_onnx_export), OUT_DIR/x_flat.npy (7 samples of
 * deterministic values in [0, 1)) and Kiln's outputs for them from the
 * reference interpreter and the JIT, OUT_DIR/y_interp.npy and
 * OUT_DIR/y_jit.npy, both [7, outputs] (x_flat.npy is [7, inputs]: the
 * caller gives it the model's input shape). tests/sh/onnx_export.sh runs the
 * ONNX file in ONNX Runtime and compares.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kiln/kiln.h"

enum { N = 7 };

static int fail(kiln_diag *d, const char *what) {
    fprintf(stderr, "export_check: %s failed:\n%s", what, kiln_diag_message(d));
    return 1;
}

/* The module of `path` with its weights. */
static kiln_status load(const char *path, const char *ckpt, kiln_module **m, kiln_diag *d) {
    kiln_status st = kiln_module_load_file(path, m, d);
    if (!st) st = kiln_module_load_weights(*m, ckpt, 1, d);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: export_check MODEL OUT_DIR [CKPT]\n");
        return 2;
    }
    const char *ckpt = argc == 4 ? argv[3] : NULL;
    char path[4096];
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    if (load(argv[1], ckpt, &m, d)) return fail(d, "loading the model");
    snprintf(path, sizeof path, "%s/model.onnx", argv[2]);
    if (kiln_onnx_export(m, path, d)) return fail(d, "kiln_onnx_export");
    kiln_module_dispose(m);

    float *x = NULL, *y = NULL;
    int rc = 0;
    for (int b = 0; b < 2 && !rc; b++) {
        kiln_model_opts o = {0};
        o.backend = b ? KILN_BACKEND_JIT : KILN_BACKEND_INTERP;
        o.threads = 1;
        kiln_model *model = NULL;
        if (load(argv[1], ckpt, &m, d) || kiln_model_create(m, &o, &model, d))
            return fail(d, "creating the model");
        int64_t in = kiln_model_input_size(model), out = kiln_model_output_size(model);
        if (!x) {
            x = malloc(sizeof *x * (size_t)(N * in));
            y = malloc(sizeof *y * (size_t)(N * out));
            if (!x || !y) return 1;
            uint32_t s = 12345;
            for (int64_t i = 0; i < N * in; i++) {
                s = s * 1664525u + 1013904223u;
                x[i] = (float)(s >> 8) / 16777216.0f;
            }
            int64_t dims[2] = {N, in};
            snprintf(path, sizeof path, "%s/x_flat.npy", argv[2]);
            if (kiln_npy_write(path, x, 2, dims, d)) return fail(d, "writing x");
        }
        int64_t dims[2] = {N, out};
        snprintf(path, sizeof path, "%s/y_%s.npy", argv[2], b ? "jit" : "interp");
        if (kiln_model_predict(model, x, N, y, d) || kiln_npy_write(path, y, 2, dims, d))
            rc = fail(d, "predict");
        kiln_model_dispose(model);
    }
    free(x);
    free(y);
    kiln_diag_dispose(d);
    return rc;
}

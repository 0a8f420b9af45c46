/*
 * fuzz_onnx.c — the ONNX importer (kiln_onnx_import): bytes -> module ->
 * verify -> interpreter -> the "infer" pipeline.
 *
 * Any bytes: an error whose message names the file ("fuzz.onnx: ...") and
 * no module, or a module that verifies, runs in the interpreter (when its
 * values are small) and goes through the pipeline `kiln predict` runs,
 * verifying after it. No round trip through .kir: ONNX names need not be
 * .kir names. Nothing may leak.
 *
 * A file that imports is also embedded the way a model file's
 * onnx(x, "file.onnx") layer does (ox_import_into: the nodes that compute
 * the graph's output, fed an argument of the graph input's type, in another
 * module): an error with a message, or a function that verifies.
 */
#include "fuzz.h"

#include "frontend/onnx.h"

static void embed(const uint8_t *data, size_t size, kiln_module *m) {
    kiln_func *f0 = kiln_module_func(m, "infer");
    if (!f0 || f0->n_args < 1) return;
    kiln_diag *d = kiln_diag_create();
    kiln_module *e = kiln_module_create("embed");
    kiln_func *f = e ? kiln_func_create(e, "infer") : NULL;
    FUZZ_CHECK(f, "out of memory");
    ir_node *x = ir_func_add_arg(f, "x", &f0->args[0]->type, d);
    FUZZ_CHECK(x, "an argument of the import's type: %s", kiln_diag_message(d));
    ir_builder b;
    ir_builder_init(&b, f, d);
    ox_embed em = {NULL, NULL, false, false};
    kiln_status st = ox_import_into(data, size, "fuzz.onnx", &b, x, &em, d);
    if (st) {
        FUZZ_CHECK(!em.out, "an error (%s) with a value", kiln_status_string(st));
        fuzz_check_error(st, d, "fuzz.onnx");
    } else {
        FUZZ_CHECK(em.out && ir_func_add_result(f, em.out, d) == KILN_OK, "no value");
        FUZZ_CHECK(kiln_module_verify(e, d) == KILN_OK, "the embedding does not verify:\n%s",
                   kiln_diag_message(d));
    }
    kiln_module_dispose(e);
    kiln_diag_dispose(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = kiln_test_alloc_live();
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_onnx_import(data, size, "fuzz.onnx", &m, d);
    if (st) {
        FUZZ_CHECK(!m, "an error (%s) with a module", kiln_status_string(st));
        fuzz_check_error(st, d, "fuzz.onnx");
    } else {
        FUZZ_CHECK(m, "KILN_OK without a module");
        kiln_diag *v = kiln_diag_create();
        FUZZ_CHECK(kiln_module_verify(m, v) == KILN_OK, "the module does not verify:\n%s",
                   kiln_diag_message(v));
        embed(data, size, m);
        fuzz_interp_all(m);
        kiln_diag_clear(v);
        st = kiln_module_run_passes(m, "infer", NULL, v);
        if (st) fuzz_check_error(st, v, NULL);
        else
            FUZZ_CHECK(kiln_module_verify(m, v) == KILN_OK,
                       "the infer pipeline left a module that does not verify:\n%s",
                       kiln_diag_message(v));
        kiln_diag_dispose(v);
        kiln_module_dispose(m);
    }
    kiln_diag_dispose(d);
    fuzz_check_no_leak(live, "kiln_onnx_import");
    return 0;
}

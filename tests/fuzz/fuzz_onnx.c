/*
 * fuzz_onnx.c — the ONNX importer (kiln_onnx_import): bytes -> module ->
 * verify -> interpreter -> the "infer" pipeline.
 *
 * Any bytes: an error whose message names the file ("fuzz.onnx: ...") and
 * no module, or a module that verifies, runs in the interpreter (when its
 * values are small) and goes through the pipeline `kiln predict` runs,
 * verifying after it. No round trip through .kir: ONNX names need not be
 * .kir names. Nothing may leak.
 */
#include "fuzz.h"

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

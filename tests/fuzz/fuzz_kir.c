/*
 * fuzz_kir.c — the .kir module parser (kiln_module_parse).
 *
 * Any bytes: an error with a positioned message ("fuzz.kir:L:C: error:
 * ...") or a module that verifies and round-trips: print(m) parses back,
 * and printing that gives the same text. A module that parses runs in the
 * interpreter (when its values are small), goes through its default
 * pipeline, as `kiln opt` and kiln_model_create would run it, must verify
 * and round-trip after it, and runs again. Nothing may leak.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = kiln_test_alloc_live();
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_module_parse((const char *)data, size, "fuzz.kir", &m, d);
    if (fuzz_check_parsed(st, m, d, "fuzz.kir", ".kir module")) {
        fuzz_interp_all(m); /* as parsed: a module with @train_step skips the pipeline */
        fuzz_run_pipeline(m);
        kiln_module_dispose(m);
    }
    kiln_diag_dispose(d);
    fuzz_check_no_leak(live, "kiln_module_parse");
    return 0;
}

/*
 * fuzz_kiln.c — the .kiln model-file parser (kiln_model_file_parse).
 *
 * Any bytes: an error with a positioned message ("fuzz.kiln:L:C: error:
 * ...") or a module that verifies, whose .kir text parses back to itself,
 * and that goes through the pipeline kiln_model_create would run (an error
 * there needs a message too; a success must verify and round-trip again,
 * and run in the interpreter when its values are small). Nothing may leak
 * either way.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = kiln_test_alloc_live();
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_model_file_parse((const char *)data, size, "fuzz.kiln", &m, d);
    if (fuzz_check_parsed(st, m, d, "fuzz.kiln", "model file")) {
        char *summary = kiln_module_summary(m);
        FUZZ_CHECK(summary, "no summary");
        kiln_free(summary);
        fuzz_run_pipeline(m);
        kiln_module_dispose(m);
    }
    kiln_diag_dispose(d);
    fuzz_check_no_leak(live, "kiln_model_file_parse");
    return 0;
}

/*
 * fuzz_csv.c — the CSV reader (rt_csv_parse), label column "label" and
 * the first column's name (whatever the input's header holds).
 *
 * Any bytes: an error naming the file ("fuzz.csv:line:col: error: ...") or
 * a dataset whose rows and columns fit the input: every feature and label
 * finite, at most one sample per input line, and no more floats than the
 * input has bytes. Nothing may leak.
 */
#include "fuzz.h"
#include "runtime/data.h"

#include <math.h>

static void parse_one(const uint8_t *data, size_t size, const char *label) {
    kiln_diag *d = kiln_diag_create();
    rt_dataset *ds = NULL;
    kiln_status st = rt_csv_parse(data, size, "fuzz.csv", label, &ds, d);
    if (st) {
        FUZZ_CHECK(!ds, "an error (%s) with a dataset", kiln_status_string(st));
        fuzz_check_error(st, d, "fuzz.csv");
    } else {
        FUZZ_CHECK(ds && kiln_diag_error_count(d) == 0, "KILN_OK with errors:\n%s",
                   kiln_diag_message(d));
        FUZZ_CHECK(ds->n >= 1 && ds->sample_size >= 1 && ds->is_float && ds->targets,
                   "a dataset of %lld x %lld", (long long)ds->n, (long long)ds->sample_size);
        FUZZ_CHECK((uint64_t)ds->n * (uint64_t)(ds->sample_size + 1) <= size,
                   "%lld x %lld values from %zu bytes", (long long)ds->n,
                   (long long)ds->sample_size, size);
        for (int64_t i = 0; i < ds->n * ds->sample_size; i++)
            FUZZ_CHECK(isfinite(ds->f32[i]), "feature %lld is not finite", (long long)i);
        for (int64_t i = 0; i < ds->n; i++)
            FUZZ_CHECK(isfinite(ds->targets[i]), "label %lld is not finite", (long long)i);
    }
    rt_dataset_free(ds);
    kiln_diag_dispose(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = kiln_test_alloc_live();
    parse_one(data, size, "label");
    /* the first header field as the label column, so parsing goes on */
    char first[64];
    size_t n = 0;
    while (n < size && n < sizeof first - 1 && data[n] != ',' && data[n] != '\n' && data[n])
        first[n] = (char)data[n], n++;
    first[n] = 0;
    parse_one(data, size, first);
    fuzz_check_no_leak(live, "rt_csv_parse");
    return 0;
}

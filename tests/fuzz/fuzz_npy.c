/*
 * fuzz_npy.c — the NumPy readers: rt_npy_parse (.npy) and rt_npz_parse
 * (.npz, members stored or deflated, zip64).
 *
 * Any bytes, read both as a .npy file and as a .npz archive (member "x"):
 * an error naming the file, or an array of uint8, int32 or float32 whose
 * dims multiply to its count, every element readable, floats finite, and
 * no more data than the input can hold (a .npy copies its body; a deflated
 * member expands at most 1032:1). Nothing may leak.
 */
#include "fuzz.h"
#include "runtime/npy.h"

#include <math.h>

static void check_array(const rt_idx *a, size_t len, const char *what) {
    size_t esize = rt_idx_type_size(a->type);
    FUZZ_CHECK(a->type == RT_IDX_U8 || a->type == RT_IDX_I32 || a->type == RT_IDX_F32,
               "%s: type 0x%02x comes back", what, (unsigned)a->type);
    FUZZ_CHECK(a->rank >= 1 && a->rank <= RT_IDX_MAX_RANK, "%s: rank %d", what, a->rank);
    int64_t count = 1;
    for (int i = 0; i < a->rank; i++) {
        FUZZ_CHECK(a->dims[i] >= 1, "%s: dimension %d is %lld", what, i, (long long)a->dims[i]);
        count *= a->dims[i];
    }
    FUZZ_CHECK(count == a->count, "%s: dims multiply to %lld, count %lld", what, (long long)count,
               (long long)a->count);
    FUZZ_CHECK((uint64_t)count * esize <= (uint64_t)len * 1032u + 4096u,
               "%s: %lld elements from %zu bytes", what, (long long)count, len);
    FUZZ_CHECK(a->data, "%s: no data", what);
    for (int64_t i = 0; i < a->count; i++) {
        if (a->type == RT_IDX_F32)
            FUZZ_CHECK(isfinite(((const float *)a->data)[i]), "%s: element %lld is not finite",
                       what, (long long)i);
        else
            (void)((const volatile unsigned char *)a->data)[(size_t)i * esize + esize - 1];
    }
}

static void parse_one(const uint8_t *data, size_t size, bool npz) {
    kiln_diag *d = kiln_diag_create();
    rt_idx a;
    const char *name = npz ? "fuzz.npz" : "fuzz.npy";
    kiln_status st = npz ? rt_npz_parse(data, size, name, "x", &a, d)
                         : rt_npy_parse(data, size, name, &a, d);
    if (st) {
        FUZZ_CHECK(!a.data, "an error (%s) with data", kiln_status_string(st));
        fuzz_check_error(st, d, name);
    } else {
        FUZZ_CHECK(kiln_diag_error_count(d) == 0, "KILN_OK with errors:\n%s", kiln_diag_message(d));
        check_array(&a, size, name);
    }
    rt_idx_free(&a);
    kiln_diag_dispose(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = kiln_test_alloc_live();
    parse_one(data, size, false);
    parse_one(data, size, true);
    fuzz_check_no_leak(live, "rt_npy_parse / rt_npz_parse");
    return 0;
}

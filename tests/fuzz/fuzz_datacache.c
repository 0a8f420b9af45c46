/*
 * fuzz_datacache.c — the reader of the decompressed IDX copies the data
 * loader keeps in the cache directory (rt_idx_cache_decode, runtime/data.c).
 *
 * The first byte picks how the rest is read:
 *  - even: as a whole entry file, header included (its key taken as given);
 *  - odd: as a payload, wrapped here in a valid header (magic, format,
 *    length and the payload's checksum), so the fuzzer reaches the IDX
 *    parser behind the checksum; a payload that decodes must also parse as
 *    a plain IDX file to the same array.
 * Either way: an error with a message, or an array whose dims multiply to
 * its count. Nothing may leak.
 */
#include "fuzz.h"
#include "runtime/data.h"

static void decode(const uint8_t *buf, size_t len, const uint8_t *payload, size_t n) {
    kiln_diag *d = kiln_diag_create();
    rt_idx a;
    kiln_status st = rt_idx_cache_decode(buf, len, "entry", &a, d);
    if (st) {
        FUZZ_CHECK(!a.data, "an error (%s) with data", kiln_status_string(st));
        fuzz_check_error(st, d, "entry");
    } else {
        int64_t count = 1;
        for (int i = 0; i < a.rank; i++) count *= a.dims[i];
        FUZZ_CHECK(a.rank >= 1 && count == a.count && a.data, "an inconsistent array");
        if (payload) {
            rt_idx b;
            FUZZ_CHECK(rt_idx_parse(payload, n, "p", &b, d) == KILN_OK, "the payload alone fails");
            size_t bytes = (size_t)a.count * rt_idx_type_size(a.type);
            FUZZ_CHECK(b.count == a.count && memcmp(a.data, b.data, bytes) == 0,
                       "the entry and its payload differ");
            rt_idx_free(&b);
        }
        rt_idx_free(&a);
    }
    kiln_diag_dispose(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long live = kiln_test_alloc_live();
    if (data[0] % 2 == 0) {
        decode(data + 1, size - 1, NULL, 0);
    } else {
        size_t n = size - 1, len = 64 + n;
        uint8_t *buf = calloc(1, len);
        FUZZ_CHECK(buf, "out of memory");
        memcpy(buf, "KILNDAT", 8);
        buf[8] = 1;
        memset(buf + 16, 0xab, 32);
        uint64_t sum = rt_idx_cache_checksum(data + 1, n);
        for (int i = 0; i < 8; i++) {
            buf[48 + i] = (uint8_t)((uint64_t)n >> (8 * i));
            buf[56 + i] = (uint8_t)(sum >> (8 * i));
        }
        memcpy(buf + 64, data + 1, n);
        decode(buf, len, data + 1, n);
        free(buf);
    }
    fuzz_check_no_leak(live, "rt_idx_cache_decode");
    return 0;
}

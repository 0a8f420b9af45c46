/*
 * fuzz_cache.c — the compile cache's entry reader (cg_cache_entry_decode).
 *
 * The first byte picks how the rest is read:
 *  - even: as a whole entry file, header included (the key in the header is
 *    taken as given): whatever the bytes, an error with a message or an
 *    entry whose object lies inside the input;
 *  - odd: as a payload, wrapped here in a valid header (magic, format, key,
 *    length and the payload's SHA-256), so the fuzzer reaches the payload
 *    decoder behind the checksum. A decoded entry must encode back to
 *    exactly the input.
 * Nothing may leak.
 */
#include "fuzz.h"
#include "codegen/cache.h"

static void check_info(const cg_module_info *mi, const void *obj, size_t obj_len,
                       const uint8_t *buf, size_t len) {
    FUZZ_CHECK(mi && mi->n_funcs >= 1, "an entry without functions");
    for (int i = 0; i < mi->n_funcs; i++) {
        const cg_func_info *f = &mi->funcs[i];
        FUZZ_CHECK(f->name && f->symbol, "function %d without a name or symbol", i);
        FUZZ_CHECK(f->ws_fixed >= 0 && f->ws_per_sample >= 0 && f->n_args >= 0, "negative sizes");
        for (int k = 0; k < f->n_fails; k++)
            FUZZ_CHECK(f->fails[k].op && ir_op_lookup(f->fails[k].op) >= 0, "unknown op");
    }
    FUZZ_CHECK(obj_len > 0 && (const uint8_t *)obj >= buf &&
                   (const uint8_t *)obj + obj_len == buf + len,
               "the object is not the end of the input");
}

static void decode(const uint8_t *buf, size_t len, bool roundtrip) {
    kiln_diag *d = kiln_diag_create();
    cg_module_info *mi = NULL;
    const void *obj = NULL;
    size_t obj_len = 0;
    kiln_status st = cg_cache_entry_decode(buf, len, NULL, "entry", &mi, &obj, &obj_len, d);
    if (st) {
        FUZZ_CHECK(!mi && !obj, "an error (%s) with an entry", kiln_status_string(st));
        fuzz_check_error(st, d, NULL);
    } else {
        check_info(mi, obj, obj_len, buf, len);
        cg_cache_key key;
        memcpy(key.b, buf + 16, sizeof key.b);
        char *again = NULL;
        size_t again_len = 0;
        FUZZ_CHECK(!cg_cache_entry_encode(&key, mi, obj, obj_len, &again, &again_len, d),
                   "encoding a decoded entry failed");
        /* The decoder accepts exactly what the encoder writes. */
        if (roundtrip)
            FUZZ_CHECK(again_len == len && memcmp(again, buf, len) == 0,
                       "decode then encode gives other bytes");
        ir_free(again);
        cg_module_info_dispose(mi);
    }
    kiln_diag_dispose(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long live = kiln_test_alloc_live();
    if (data[0] % 2 == 0) {
        decode(data + 1, size - 1, false);
    } else {
        size_t n = size - 1, len = CG_CACHE_HEADER + n;
        uint8_t *buf = malloc(len);
        FUZZ_CHECK(buf, "out of memory");
        memcpy(buf, "KILNOBJ", 8);
        memset(buf + 8, 0, 8);
        buf[8] = CG_CACHE_FORMAT;
        memset(buf + 16, 0xab, 32);
        for (int i = 0; i < 8; i++) buf[48 + i] = (uint8_t)((uint64_t)n >> (8 * i));
        memcpy(buf + CG_CACHE_HEADER, data + 1, n);
        cg_sha256_bytes(buf + CG_CACHE_HEADER, n, buf + 56);
        decode(buf, len, true);
        free(buf);
    }
    fuzz_check_no_leak(live, "cg_cache_entry_decode");
    return 0;
}

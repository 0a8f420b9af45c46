/*
 * fuzz_idx.c — the IDX loader (rt_idx_parse), raw and gzipped.
 *
 * Any bytes: an error naming the file ("fuzz.idx: ...") or an array whose
 * dims multiply to its count, with every element readable and no NaN or Inf
 * in float data. Gzipped inputs go through the same parser (the gzip layer
 * is told by the magic bytes); an input that is not gzipped is also
 * compressed here and parsed again, and both must agree: the same status,
 * and on success the same array. Nothing may leak.
 */
#include "fuzz.h"
#include "runtime/data.h"

#include <math.h>
#include <zlib.h>

/* gzip of `data` (zlib's own allocator: not counted by Kiln), or NULL. */
static unsigned char *gzip(const uint8_t *data, size_t size, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&z, (uLong)size) + 32;
    unsigned char *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    if (r != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

static kiln_status parse_checked(const void *buf, size_t len, rt_idx *a) {
    kiln_diag *d = kiln_diag_create();
    kiln_status st = rt_idx_parse(buf, len, "fuzz.idx", a, d);
    if (st) {
        FUZZ_CHECK(!a->data, "an error (%s) with data", kiln_status_string(st));
        fuzz_check_error(st, d, "fuzz.idx");
    } else {
        FUZZ_CHECK(kiln_diag_error_count(d) == 0, "KILN_OK with errors:\n%s", kiln_diag_message(d));
        size_t esize = rt_idx_type_size(a->type);
        FUZZ_CHECK(esize > 0, "unknown type 0x%02x accepted", (unsigned)a->type);
        FUZZ_CHECK(a->rank >= 1 && a->rank <= RT_IDX_MAX_RANK, "rank %d", a->rank);
        int64_t count = 1;
        for (int i = 0; i < a->rank; i++) {
            FUZZ_CHECK(a->dims[i] >= 1, "dimension %d is %lld", i, (long long)a->dims[i]);
            count *= a->dims[i];
        }
        FUZZ_CHECK(count == a->count, "dims multiply to %lld, count %lld", (long long)count,
                   (long long)a->count);
        FUZZ_CHECK((uint64_t)count * esize <= len * 1032u + 4096u, "%lld elements from %zu bytes",
                   (long long)count, len);
        FUZZ_CHECK(a->data, "no data");
        for (int64_t i = 0; i < a->count; i++) {
            if (a->type == RT_IDX_F32)
                FUZZ_CHECK(isfinite(((const float *)a->data)[i]), "element %lld is not finite",
                           (long long)i);
            else if (a->type == RT_IDX_F64)
                FUZZ_CHECK(isfinite(((const double *)a->data)[i]), "element %lld is not finite",
                           (long long)i);
            else
                (void)((const volatile unsigned char *)a->data)[(size_t)i * esize + esize - 1];
        }
    }
    kiln_diag_dispose(d);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = kiln_test_alloc_live();
    rt_idx raw;
    kiln_status st = parse_checked(data, size, &raw);
    if (!(size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) {
        size_t zlen = 0;
        unsigned char *z = gzip(data, size, &zlen);
        FUZZ_CHECK(z, "gzip failed");
        rt_idx gz;
        kiln_status zst = parse_checked(z, zlen, &gz);
        FUZZ_CHECK(zst == st, "raw: %s, gzipped: %s", kiln_status_string(st),
                   kiln_status_string(zst));
        if (!st) {
            FUZZ_CHECK(
                gz.type == raw.type && gz.rank == raw.rank && gz.count == raw.count &&
                    memcmp(gz.dims, raw.dims, sizeof gz.dims) == 0 &&
                    memcmp(gz.data, raw.data, (size_t)raw.count * rt_idx_type_size(raw.type)) == 0,
                "the gzipped input gives another array");
        }
        rt_idx_free(&gz);
        free(z);
    }
    rt_idx_free(&raw);
    fuzz_check_no_leak(live, "rt_idx_parse");
    return 0;
}

/*
 * npz.c — the .npz archives of np.savez / np.savez_compressed: zip files
 * whose members are .npy files, stored or deflated (zip64 as NumPy writes
 * it). Only what these archives use is read: the central directory, the
 * local header of the one member asked for, methods 0 and 8, CRC-32.
 */
#include <string.h>
#include <zlib.h>

#include "runtime/npy.h"

/* Deflate expands at most ~1032:1 (data.c uses the same bound for gzip). */
#define ZIP_MAX_RATIO 1032u
#define ZIP_SLACK 4096u

static uint64_t le64(const uint8_t *p) { return rt_le32(p) | (uint64_t)rt_le32(p + 4) << 32; }

typedef struct zip_entry {
    const uint8_t *name;
    size_t name_len;
    int method, flags;
    uint32_t crc;
    uint64_t csize, usize, local;
} zip_entry;

typedef struct zip {
    const uint8_t *p;
    size_t len;
    const char *name;
    kiln_diag *d;
    uint64_t cd_off, cd_size, count;
} zip;

static kiln_status zip_err(zip *z, uint64_t at, const char *what) {
    return ir_error(z->d, KILN_ERR_INVALID, ir_loc_none(), "%s: byte %llu: %s", z->name,
                    (unsigned long long)at, what);
}

/* The end of central directory record (and its zip64 form when used). */
static kiln_status zip_open(zip *z) {
    if (z->len < 22) return zip_err(z, 0, "not a zip archive (too short)");
    size_t lo = z->len > 22 + 65535 ? z->len - 22 - 65535 : 0, e = z->len - 22 + 1;
    while (e-- > lo)
        if (memcmp(z->p + e, "PK\x05\x06", 4) == 0) break;
    if (e < lo || e == (size_t)-1 || memcmp(z->p + e, "PK\x05\x06", 4) != 0)
        return zip_err(z, z->len, "no end of central directory record: truncated?");
    z->count = rt_le16(z->p + e + 10);
    z->cd_size = rt_le32(z->p + e + 12);
    z->cd_off = rt_le32(z->p + e + 16);
    if (z->count == 0xFFFF || z->cd_size == 0xFFFFFFFF || z->cd_off == 0xFFFFFFFF) {
        if (e < 20 || memcmp(z->p + e - 20, "PK\x06\x07", 4) != 0)
            return zip_err(z, e, "zip64 values without a zip64 locator");
        uint64_t r = le64(z->p + e - 20 + 8);
        if (z->len < 56 || r > z->len - 56 || memcmp(z->p + r, "PK\x06\x06", 4) != 0)
            return zip_err(z, e - 20, "the zip64 locator points outside the file");
        z->count = le64(z->p + r + 32);
        z->cd_size = le64(z->p + r + 40);
        z->cd_off = le64(z->p + r + 48);
    }
    if (z->cd_off > z->len || z->cd_size > z->len - z->cd_off)
        return zip_err(z, e, "the central directory lies outside the file");
    return KILN_OK;
}

/* The zip64 extra field: 8-byte values for the fields saturated at 2^32-1. */
static kiln_status zip64_extra(zip *z, const uint8_t *x, size_t n, uint64_t at, zip_entry *e) {
    while (n >= 4) {
        uint32_t id = rt_le16(x), sz = rt_le16(x + 2);
        if (sz > n - 4) return zip_err(z, at, "an extra field overruns its entry");
        if (id == 1) {
            uint64_t *f[3] = {&e->usize, &e->csize, &e->local};
            size_t k = 0;
            for (int i = 0; i < 3; i++)
                if (*f[i] == 0xFFFFFFFF) {
                    if (k + 8 > sz) return zip_err(z, at, "a short zip64 extra field");
                    *f[i] = le64(x + 4 + k);
                    k += 8;
                }
        }
        x += 4 + sz;
        n -= 4 + sz;
    }
    return KILN_OK;
}

/* Central directory entry at *pos; advances *pos. */
static kiln_status zip_entry_at(zip *z, uint64_t *pos, zip_entry *e) {
    uint64_t at = *pos, end = z->cd_off + z->cd_size;
    if (at > end || end - at < 46 || memcmp(z->p + at, "PK\x01\x02", 4) != 0)
        return zip_err(z, at, "a damaged central directory entry");
    const uint8_t *h = z->p + at;
    e->flags = (int)rt_le16(h + 8);
    e->method = (int)rt_le16(h + 10);
    e->crc = rt_le32(h + 16);
    e->csize = rt_le32(h + 20);
    e->usize = rt_le32(h + 24);
    e->name_len = rt_le16(h + 28);
    size_t xl = rt_le16(h + 30), cl = rt_le16(h + 32);
    e->local = rt_le32(h + 42);
    if (46 + e->name_len + xl + cl > end - at)
        return zip_err(z, at, "a central directory entry overruns the directory");
    e->name = h + 46;
    *pos = at + 46 + e->name_len + xl + cl;
    return zip64_extra(z, h + 46 + e->name_len, xl, at, e);
}

static bool name_is(const zip_entry *e, const char *member) {
    size_t m = strlen(member);
    if (e->name_len == m && memcmp(e->name, member, m) == 0) return true;
    return e->name_len == m + 4 && memcmp(e->name, member, m) == 0 &&
           memcmp(e->name + m, ".npy", 4) == 0;
}

/* The member's bytes: in place when stored, else inflated into *owned. */
static kiln_status zip_data(zip *z, const zip_entry *e, const char *mname, const uint8_t **data,
                            uint8_t **owned) {
    uint64_t at = e->local;
    if (at > z->len || z->len - at < 30 || memcmp(z->p + at, "PK\x03\x04", 4) != 0)
        return zip_err(z, at, "a damaged local header");
    uint64_t start = at + 30 + rt_le16(z->p + at + 26) + rt_le16(z->p + at + 28);
    if (e->flags & 1) return zip_err(z, at, "encrypted members are not supported");
    if (e->method != 0 && e->method != 8)
        return zip_err(z, at, "compression method other than stored or deflate");
    if (start > z->len || e->csize > z->len - start)
        return ir_error(z->d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: truncated: %llu bytes of member '%s' at byte %llu, the file has %llu",
                        z->name, (unsigned long long)e->csize, mname, (unsigned long long)start,
                        (unsigned long long)z->len);
    const uint8_t *src = z->p + start;
    if (e->method == 0) {
        if (e->usize != e->csize) return zip_err(z, at, "a stored member with two sizes");
        *data = src;
    } else {
        if (e->usize > e->csize * ZIP_MAX_RATIO + ZIP_SLACK || e->usize > RT_IDX_MAX_BYTES + 65536 ||
            e->csize > UINT32_MAX * (uint64_t)ZIP_MAX_RATIO)
            return zip_err(z, at, "a member larger than its compressed size can hold");
        uint8_t *buf = ir_malloc((size_t)e->usize + 1);
        if (!buf) return ir_oom(z->d);
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) {
            ir_free(buf);
            return ir_oom(z->d);
        }
        zs.next_in = (Bytef *)src;
        zs.avail_in = (uInt)(e->csize > UINT32_MAX ? UINT32_MAX : e->csize);
        zs.next_out = buf;
        zs.avail_out = (uInt)(e->usize + 1 > UINT32_MAX ? UINT32_MAX : e->usize + 1);
        int r = inflate(&zs, Z_FINISH);
        uint64_t got = zs.total_out;
        inflateEnd(&zs);
        if (r != Z_STREAM_END || got != e->usize) {
            ir_free(buf);
            return ir_error(z->d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: member '%s': corrupt deflate data (%llu bytes, %llu expected)",
                            z->name, mname, (unsigned long long)got,
                            (unsigned long long)e->usize);
        }
        *owned = buf;
        *data = buf;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t k = 0; k < e->usize;) {
        uInt n = (uInt)(e->usize - k > (1u << 30) ? (1u << 30) : e->usize - k);
        crc = crc32(crc, *data + k, n);
        k += n;
    }
    if ((uint32_t)crc != e->crc)
        return ir_error(z->d, KILN_ERR_INVALID, ir_loc_none(), "%s: member '%s': CRC mismatch",
                        z->name, mname);
    return KILN_OK;
}

kiln_status rt_npz_parse(const void *buf, size_t len, const char *name, const char *member,
                         rt_idx *out, kiln_diag *d) {
    memset(out, 0, sizeof *out);
    zip z = {buf ? buf : (const uint8_t *)"", len, name, d, 0, 0, 0};
    kiln_status st = zip_open(&z);
    if (st) return st;
    ir_sb names;
    ir_sb_init(&names);
    uint64_t pos = z.cd_off;
    zip_entry e;
    memset(&e, 0, sizeof e);
    bool found = false;
    for (uint64_t i = 0; i < z.count && !st && !found; i++) {
        st = zip_entry_at(&z, &pos, &e);
        if (!st && name_is(&e, member)) found = true;
        if (!st && !found) {
            char nm[208];
            snprintf(nm, sizeof nm, "%.*s", (int)(e.name_len > 200 ? 200 : e.name_len),
                     (const char *)e.name);
            ir_sb_printf(&names, "%s'%s'", i ? ", " : "", rt_printable(nm));
        }
    }
    if (!st && !found)
        st = ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no array '%s' in the archive (it has %s)",
                      name, member, names.buf ? names.buf : "none");
    ir_sb_free(&names);
    if (st) return st;
    char mname[256];
    snprintf(mname, sizeof mname, "%.*s", (int)e.name_len, (const char *)e.name);
    rt_printable(mname);
    const uint8_t *data = NULL;
    uint8_t *owned = NULL;
    if (!(st = zip_data(&z, &e, mname, &data, &owned))) {
        ir_sb full;
        ir_sb_init(&full);
        ir_sb_printf(&full, "%s:%s", name, mname);
        st = full.buf ? rt_npy_parse(data, (size_t)e.usize, full.buf, out, d) : ir_oom(d);
        ir_sb_free(&full);
    }
    ir_free(owned);
    return st;
}

kiln_status rt_npz_load(const char *path, const char *member, rt_idx *out, kiln_diag *d) {
    memset(out, 0, sizeof *out);
    rt_mapped m;
    kiln_status st = rt_map_file(path, &m, d);
    if (!st) st = rt_npz_parse(m.p, m.len, path, member, out, d);
    rt_unmap_file(&m);
    return st;
}

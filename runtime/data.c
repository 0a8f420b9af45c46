/*
 * data.c — IDX files (gzipped or not), datasets, batches, shuffling.
 *
 * A file is read through a small source that inflates gzip streams on the
 * fly (zlib, allocating through ir_malloc so fault injection reaches it), so
 * 47 MB of images never exist twice in memory. Nothing read is trusted: the
 * header is checked, and a size the file cannot possibly hold is refused
 * before the data buffer is allocated.
 */
#include "runtime/data.h"
#include "codegen/cache.h"
#include "runtime/npy.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <zlib.h>

/* -------------------------------------------------------------- sources */

enum { SRC_BUF = 256 * 1024 };
/* Deflate expands at most ~1032:1, so a gzip file of S bytes holds no more
 * than this many bytes (the slack covers headers of tiny files). */
#define GZ_MAX_RATIO 1032u
#define GZ_SLACK 4096u

typedef struct src {
    const char *name;
    kiln_diag *d;
    FILE *f;            /* a file, or */
    const uint8_t *mem; /* a buffer */
    uint64_t mem_len, mem_pos;
    uint64_t total; /* size of the file or buffer as stored */
    uint8_t *buf;   /* read-ahead of a file */
    size_t buf_len, buf_pos;
    bool eof; /* the stored bytes are exhausted */
    bool gz, z_ready, z_end;
    bool want_sum; /* idx_read: take dc_sum of the IDX content as it reads it */
    uint64_t sum;
    z_stream zs;
    kiln_status err; /* first error, already reported */
} src;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    size_t n;
    if (!ir_mul_size(items, size, &n)) return Z_NULL;
    return ir_malloc(n);
}

static void z_free(voidpf opaque, voidpf p) {
    (void)opaque;
    ir_free(p);
}

static kiln_status src_fail(src *s, kiln_status st, const char *fmt, const char *detail) {
    if (!s->err) s->err = ir_error(s->d, st, ir_loc_none(), fmt, s->name, detail);
    return s->err;
}

/* The stored bytes available now (refilling the read-ahead of a file). */
static size_t raw_avail(src *s, const uint8_t **p) {
    if (s->mem) {
        *p = s->mem + s->mem_pos;
        uint64_t left = s->mem_len - s->mem_pos;
        return left > SIZE_MAX ? SIZE_MAX : (size_t)left;
    }
    if (s->buf_pos == s->buf_len && !s->eof) {
        s->buf_pos = 0;
        s->buf_len = fread(s->buf, 1, SRC_BUF, s->f);
        if (s->buf_len == 0) {
            if (ferror(s->f)) src_fail(s, KILN_ERR_IO, "%s: read error: %s", strerror(errno));
            s->eof = true;
        }
    }
    *p = s->buf + s->buf_pos;
    return s->buf_len - s->buf_pos;
}

static void raw_consume(src *s, size_t n) {
    if (s->mem)
        s->mem_pos += n;
    else
        s->buf_pos += n;
}

static size_t raw_read(src *s, uint8_t *dst, size_t n) {
    size_t got = 0;
    while (got < n && !s->err) {
        if (s->f && s->buf_pos == s->buf_len && n - got >= SRC_BUF) {
            /* Large reads from a file skip the read-ahead. */
            if (s->eof) break;
            size_t want = n - got, r = fread(dst + got, 1, want, s->f);
            got += r;
            if (r < want) {
                if (ferror(s->f)) src_fail(s, KILN_ERR_IO, "%s: read error: %s", strerror(errno));
                s->eof = true;
            }
            continue;
        }
        const uint8_t *p;
        size_t a = raw_avail(s, &p);
        if (a == 0) break; /* the end, or an error already reported */
        if (a > n - got) a = n - got;
        memcpy(dst + got, p, a);
        raw_consume(s, a);
        got += a;
    }
    return got;
}

static size_t gz_read(src *s, uint8_t *dst, size_t n) {
    size_t got = 0;
    while (got < n && !s->err) {
        const uint8_t *p;
        size_t a = raw_avail(s, &p);
        if (s->err) break;
        if (s->z_end) {
            if (a == 0) break; /* the clean end of the last member */
            if (p[0] != 0x1f) {
                src_fail(s, KILN_ERR_INVALID, "%s: unexpected data after the gzip stream%s", "");
                break;
            }
            inflateReset(&s->zs); /* another gzip member follows */
            s->z_end = false;
        }
        if (a == 0) break; /* the stream stops early: the caller reports it */
        uInt in = a > UINT_MAX ? UINT_MAX : (uInt)a;
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        s->zs.next_in = (Bytef *)p;
        s->zs.avail_in = in;
        s->zs.next_out = dst + got;
        s->zs.avail_out = (uInt)want;
        int r = inflate(&s->zs, Z_NO_FLUSH);
        raw_consume(s, in - s->zs.avail_in);
        got += want - s->zs.avail_out;
        if (r == Z_STREAM_END) {
            s->z_end = true;
        } else if (r == Z_MEM_ERROR) {
            if (!s->err) s->err = ir_oom(s->d);
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            src_fail(s, KILN_ERR_INVALID, "%s: corrupt gzip data (%s)",
                     s->zs.msg ? s->zs.msg : "inflate failed");
        }
    }
    return got;
}

/* Reads up to n bytes of the (decompressed) content; fewer at its end. */
static size_t src_read(src *s, void *dst, size_t n) {
    if (s->err) return 0;
    return s->gz ? gz_read(s, dst, n) : raw_read(s, dst, n);
}

/* After the payload: the content must end here, and a gzip stream cleanly. */
static kiln_status src_finish(src *s, uint64_t expected_total) {
    uint8_t extra[1];
    if (src_read(s, extra, 1) > 0)
        return ir_error(s->d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: the file goes on after the %llu bytes of data its header describes",
                        s->name, (unsigned long long)expected_total);
    if (s->err) return s->err;
    if (s->gz && !s->z_end)
        return ir_error(s->d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: truncated: the gzip stream ends before its trailer", s->name);
    return KILN_OK;
}

/* Opens the gzip layer if the content starts with the gzip magic. */
static kiln_status src_detect(src *s) {
    const uint8_t *p;
    size_t a = raw_avail(s, &p);
    if (s->err) return s->err;
    if (a >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        memset(&s->zs, 0, sizeof s->zs);
        s->zs.zalloc = z_alloc;
        s->zs.zfree = z_free;
        int r = inflateInit2(&s->zs, 15 + 16); /* gzip wrapper only */
        if (r == Z_MEM_ERROR) return s->err = ir_oom(s->d);
        if (r != Z_OK) return src_fail(s, KILN_ERR_INVALID, "%s: %s", "cannot start zlib");
        s->gz = s->z_ready = true;
    }
    return KILN_OK;
}

static void src_close(src *s) {
    if (s->z_ready) inflateEnd(&s->zs);
    if (s->f) fclose(s->f);
    ir_free(s->buf);
    s->f = NULL;
    s->buf = NULL;
    s->z_ready = false;
}

static kiln_status src_open_file(src *s, const char *path, kiln_diag *d) {
    memset(s, 0, sizeof *s);
    s->name = path;
    s->d = d;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return s->err = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return s->err = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: is a directory", path);
    if (!S_ISREG(sb.st_mode))
        return s->err = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: not a regular file", path);
    s->total = (uint64_t)sb.st_size;
    s->buf = ir_malloc(SRC_BUF);
    if (!s->buf) return s->err = ir_oom(d);
    s->f = fopen(path, "rb");
    if (!s->f) {
        s->err = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
        src_close(s);
        return s->err;
    }
    return src_detect(s);
}

static kiln_status src_open_mem(src *s, const void *buf, size_t len, const char *name,
                                kiln_diag *d) {
    memset(s, 0, sizeof *s);
    s->name = name;
    s->d = d;
    s->mem = buf ? buf : (const uint8_t *)"";
    s->mem_len = s->total = len;
    return src_detect(s);
}

/* ------------------------------------------------------------ IDX arrays */

const char *rt_idx_type_name(int type) {
    switch (type) {
    case RT_IDX_U8: return "uint8";
    case RT_IDX_I8: return "int8";
    case RT_IDX_I16: return "int16";
    case RT_IDX_I32: return "int32";
    case RT_IDX_F32: return "float32";
    case RT_IDX_F64: return "float64";
    }
    return "unknown";
}

size_t rt_idx_type_size(int type) {
    switch (type) {
    case RT_IDX_U8:
    case RT_IDX_I8: return 1;
    case RT_IDX_I16: return 2;
    case RT_IDX_I32:
    case RT_IDX_F32: return 4;
    case RT_IDX_F64: return 8;
    }
    return 0;
}

void rt_idx_free(rt_idx *a) {
    if (!a) return;
    ir_free(a->data);
    memset(a, 0, sizeof *a);
}

/* "60000x28x28" */
static const char *dims_str(const int64_t *dims, int rank, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "x" : "", (long long)dims[i]);
    return buf;
}

static void to_host_order(void *data, int64_t count, size_t esize) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    (void)data, (void)count, (void)esize; /* IDX is big-endian already */
#else
    if (esize == 2) {
        uint16_t *p = data;
        for (int64_t i = 0; i < count; i++) p[i] = __builtin_bswap16(p[i]);
    } else if (esize == 4) {
        uint32_t *p = data;
        for (int64_t i = 0; i < count; i++) p[i] = __builtin_bswap32(p[i]);
    } else if (esize == 8) {
        uint64_t *p = data;
        for (int64_t i = 0; i < count; i++) p[i] = __builtin_bswap64(p[i]);
    }
#endif
}

static kiln_status report_nonfinite(const rt_idx *a, int64_t i, double v, kiln_diag *d,
                                    const char *name) {
    const char *what = isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf";
    if (a->rank == 1)
        return ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(), "%s: value %lld is %s", name,
                        (long long)i, what);
    int64_t per = a->count / a->dims[0];
    return ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(), "%s: value %lld of image %lld is %s",
                    name, (long long)(i % per), (long long)(i / per), what);
}

static kiln_status check_finite(const rt_idx *a, const char *name, kiln_diag *d) {
    if (a->type == RT_IDX_F32) {
        const float *p = a->data;
        for (int64_t i = 0; i < a->count; i++)
            if (!isfinite(p[i])) return report_nonfinite(a, i, p[i], d, name);
    } else if (a->type == RT_IDX_F64) {
        const double *p = a->data;
        for (int64_t i = 0; i < a->count; i++)
            if (!isfinite(p[i])) return report_nonfinite(a, i, p[i], d, name);
    }
    return KILN_OK;
}

/* The checksum of a decompressed copy (the data cache below): XXH64 of the
 * data as the file holds it, in DC_BLOCK blocks, each seeded with the hash
 * so far; the first with the hash of the IDX header. */
#define DC_BLOCK ((size_t)1 << 20)
static uint64_t dc_sum_start(const rt_idx *a);
static uint64_t dc_sum_block(uint64_t sum, const void *block, size_t n);

/* Asks for transparent huge pages under a large fresh buffer (where the
 * kernel gives them only on request): filling 47 MB of 4 KB pages takes
 * 11,500 page faults, several times the cost of copying the bytes. */
static void advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1), hi = ((uintptr_t)p + n) & ~(huge - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* a hint: failure is harmless */
#else
    (void)p, (void)n;
#endif
}

/* Counts the content left (into a scratch buffer), for a truncation message
 * about a file too short for what its header claims. */
static uint64_t count_rest(src *s) {
    uint8_t scratch[16384];
    uint64_t n = 0;
    size_t r;
    while ((r = src_read(s, scratch, sizeof scratch)) > 0) n += r;
    return n;
}

static kiln_status truncated(src *s, uint64_t expected, uint64_t got) {
    return ir_error(s->d, KILN_ERR_INVALID, ir_loc_none(),
                    "%s: truncated: expected %llu bytes of data, got %llu", s->name,
                    (unsigned long long)expected, (unsigned long long)got);
}

/* idx -> 00 00 dtype rank, dims[rank] (uint32 BE), data (BE) */
static kiln_status idx_read(src *s, rt_idx *out) {
    const char *name = s->name;
    kiln_diag *d = s->d;
    uint8_t magic[4];
    size_t got = src_read(s, magic, 4);
    if (s->err) return s->err;
    if (got == 0) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: empty file", name);
    if (got < 4 || magic[0] != 0 || magic[1] != 0) {
        char hex[16] = "";
        for (size_t i = 0, k = 0; i < got; i++)
            k += (size_t)snprintf(hex + k, sizeof hex - k, "%s%02x", i ? " " : "", magic[i]);
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: not an IDX file (it starts with bytes %s%s)", name, hex,
                        s->gz ? " after decompression" : "");
    }
    int type = magic[2], rank = magic[3];
    size_t esize = rt_idx_type_size(type);
    if (!esize)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "%s: unsupported IDX dtype 0x%02x (known: 0x08 uint8, 0x09 int8, "
                        "0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)",
                        name, type);
    if (rank == 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: IDX rank 0: no dimensions",
                        name);
    if (rank > RT_IDX_MAX_RANK)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: IDX rank %d exceeds the limit of %d",
                        name, rank, RT_IDX_MAX_RANK);
    uint8_t raw_dims[4 * RT_IDX_MAX_RANK];
    size_t need = 4 * (size_t)rank;
    got = src_read(s, raw_dims, need);
    if (s->err) return s->err;
    if (got < need)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: truncated: the IDX header needs %zu bytes, got %zu", name, 4 + need,
                        4 + got);
    rt_idx a;
    memset(&a, 0, sizeof a);
    a.type = (rt_idx_type)type;
    a.rank = rank;
    a.count = 1;
    bool too_big = false;
    for (int i = 0; i < rank; i++) {
        const uint8_t *b = raw_dims + 4 * i;
        a.dims[i] = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
                              (uint32_t)b[3]);
        if (a.dims[i] == 0)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: empty IDX array (dimension %d is 0)", name, i);
        /* dims < 2^32 and the product stays below 2^34 / esize: no overflow */
        if (!too_big && a.count > RT_IDX_MAX_BYTES / (int64_t)esize / a.dims[i]) too_big = true;
        if (!too_big) a.count *= a.dims[i];
    }
    char dbuf[128];
    if (too_big)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "%s: IDX dimensions %s are too large (more than %lld GiB of data)", name,
                        dims_str(a.dims, rank, dbuf, sizeof dbuf),
                        (long long)(RT_IDX_MAX_BYTES >> 30));
    uint64_t expected = (uint64_t)a.count * esize, header = 4 + need;
    /* What the stored bytes can hold at most: refuse before allocating. */
    uint64_t capacity;
    if (!s->gz)
        capacity = s->total - header;
    else
        capacity = s->total > (UINT64_MAX - GZ_SLACK) / GZ_MAX_RATIO
                       ? UINT64_MAX
                       : s->total * GZ_MAX_RATIO + GZ_SLACK;
    if (expected > capacity) {
        uint64_t rest = s->gz ? count_rest(s) : capacity;
        if (s->err) return s->err;
        return truncated(s, expected, rest);
    }
    a.data = ir_malloc((size_t)expected);
    if (!a.data) return ir_oom(d);
    advise_huge(a.data, (size_t)expected);
    /* In blocks, so that a checksum is taken while the block is in cache. */
    if (s->want_sum) s->sum = dc_sum_start(&a);
    for (got = 0; got < expected;) {
        size_t want = expected - got < DC_BLOCK ? (size_t)(expected - got) : DC_BLOCK;
        size_t r = src_read(s, (uint8_t *)a.data + got, want);
        if (s->want_sum) s->sum = dc_sum_block(s->sum, (uint8_t *)a.data + got, r);
        got += r;
        if (r < want) break;
    }
    kiln_status st = s->err;
    if (!st && got < expected) st = truncated(s, expected, got);
    if (!st) st = src_finish(s, expected);
    if (!st) {
        to_host_order(a.data, a.count, esize);
        st = check_finite(&a, name, d);
    }
    if (st) {
        ir_free(a.data);
        return st;
    }
    *out = a;
    return KILN_OK;
}

/* ------------------------------------------- decompressed copies (cache) */

/* A gzipped IDX file is inflated once and kept, decompressed, in the compile
 * cache's directory (cache.h: same place, size bound, LRU eviction, `kiln
 * cache clear`), as torchvision keeps a "processed" copy of MNIST: zlib
 * needs ~0.2 s of CPU for Fashion-MNIST's 26 MB of training images, reading
 * the 47 MB copy back a few ms.
 *
 * The key is the SHA-256 of the file's real path, device, inode, size,
 * mtime and ctime (ctime changes with any write and cannot be set back), so
 * a changed or replaced file is a miss. An entry, <dir>/<hex key>.kco:
 *
 *   offset  size  field
 *   0       8     magic "KILNDAT\0"
 *   8       4     format version (DC_FORMAT), little-endian
 *   12      4     zero
 *   16      32    the key
 *   48      8     payload length
 *   56      8     checksum of the IDX content (dc_sum)
 *   64      ...   payload: the IDX file as it is inside the gzip stream
 *
 * A hit parses the payload with the same checks as any IDX file and
 * compares the checksum of what it read; anything wrong is a miss (the
 * entry goes). Files inflating to less than DC_MIN_BYTES are not kept. */

#define DC_FORMAT 1u
#define DC_HEADER 64
#define DC_MIN_BYTES ((uint64_t)1 << 20)
static const uint8_t DC_MAGIC[8] = {'K', 'I', 'L', 'N', 'D', 'A', 'T', 0};

static void le_put(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The key of the file open as `f` (named `path`); false if it cannot be
 * told (then no cache). */
static bool dc_key(const char *path, FILE *f, cg_cache_key *key) {
    struct stat sb;
    char real[PATH_MAX];
    if (fstat(fileno(f), &sb) != 0 || !realpath(path, real)) return false;
    int64_t v[8] = {(int64_t)sb.st_dev,          (int64_t)sb.st_ino,
                    (int64_t)sb.st_size,         (int64_t)sb.st_mtim.tv_sec,
                    (int64_t)sb.st_mtim.tv_nsec, (int64_t)sb.st_ctim.tv_sec,
                    (int64_t)sb.st_ctim.tv_nsec, DC_FORMAT};
    cg_sha256 h;
    cg_sha256_init(&h);
    cg_sha256_update(&h, "kiln idx data", 14);
    cg_sha256_update(&h, real, strlen(real) + 1);
    cg_sha256_update(&h, v, sizeof v);
    cg_sha256_final(&h, key->b);
    return true;
}

/* XXH64 (Yann Collet's xxHash, 64-bit): a checksum fast enough to take of
 * 47 MB on every load (several GB/s; zlib's Adler-32 is a few times slower). */
#define XXP1 0x9E3779B185EBCA87ull
#define XXP2 0xC2B2AE3D27D4EB4Full
#define XXP3 0x165667B19E3779F9ull
#define XXP4 0x85EBCA77C2B2AE63ull
#define XXP5 0x27D4EB2F165667C5ull

static uint64_t rotl64(uint64_t x, int r) {
    return x << r | x >> (64 - r);
}

static uint64_t xx_round(uint64_t acc, uint64_t v) {
    return rotl64(acc + v * XXP2, 31) * XXP1;
}

static uint64_t xx_merge(uint64_t h, uint64_t acc) {
    return (h ^ xx_round(0, acc)) * XXP1 + XXP4;
}

static uint64_t rd64(const uint8_t *p) {
    return le_get(p, 8);
}

static uint64_t xxh64(const void *data, size_t len, uint64_t seed) {
    const uint8_t *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + XXP1 + XXP2, v2 = seed + XXP2, v3 = seed, v4 = seed - XXP1;
        for (; end - p >= 32; p += 32) {
            uint64_t w[4];
            memcpy(w, p, 32); /* little-endian hosts; rd64 is the portable form */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            for (int k = 0; k < 4; k++) w[k] = rd64(p + 8 * k);
#endif
            v1 = xx_round(v1, w[0]);
            v2 = xx_round(v2, w[1]);
            v3 = xx_round(v3, w[2]);
            v4 = xx_round(v4, w[3]);
        }
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xx_merge(xx_merge(xx_merge(xx_merge(h, v1), v2), v3), v4);
    } else {
        h = seed + XXP5;
    }
    h += (uint64_t)len;
    for (; end - p >= 8; p += 8) h = rotl64(h ^ xx_round(0, rd64(p)), 27) * XXP1 + XXP4;
    if (end - p >= 4) {
        h = rotl64(h ^ (le_get(p, 4) * XXP1), 23) * XXP2 + XXP3;
        p += 4;
    }
    for (; p < end; p++) h = rotl64(h ^ (*p * XXP5), 11) * XXP1;
    h ^= h >> 33;
    h *= XXP2;
    h ^= h >> 29;
    h *= XXP3;
    return h ^ h >> 32;
}

/* The IDX header of `a` as the file holds it (magic and dims); its length. */
static size_t idx_header_bytes(const rt_idx *a, uint8_t *b) {
    b[0] = b[1] = 0;
    b[2] = (uint8_t)a->type;
    b[3] = (uint8_t)a->rank;
    for (int i = 0; i < a->rank; i++)
        for (int k = 0; k < 4; k++)
            b[4 + 4 * i + k] = (uint8_t)((uint64_t)a->dims[i] >> (24 - 8 * k));
    return 4 + 4 * (size_t)a->rank;
}

static uint64_t dc_sum_start(const rt_idx *a) {
    uint8_t hb[4 + 4 * RT_IDX_MAX_RANK];
    return xxh64(hb, idx_header_bytes(a, hb), 0);
}

static uint64_t dc_sum_block(uint64_t sum, const void *block, size_t n) {
    return xxh64(block, n, sum);
}

/* The checksum of `a`, whose data is in the file's byte order. */
static uint64_t dc_sum(const rt_idx *a) {
    uint64_t sum = dc_sum_start(a);
    size_t n = (size_t)a->count * rt_idx_type_size(a->type);
    for (size_t off = 0; off < n; off += DC_BLOCK) {
        size_t b = n - off < DC_BLOCK ? n - off : DC_BLOCK;
        sum = dc_sum_block(sum, (const uint8_t *)a->data + off, b);
    }
    return sum;
}

/* Checks an entry's header (len: the whole entry) against `key` (NULL: any
 * key); *payload and *sum what it describes. */
static bool dc_check_header(const uint8_t *h, uint64_t len, const cg_cache_key *key,
                            uint64_t *payload, uint64_t *sum) {
    if (len < DC_HEADER || memcmp(h, DC_MAGIC, 8) != 0 || le_get(h + 8, 4) != DC_FORMAT ||
        le_get(h + 12, 4) != 0 || (key && memcmp(h + 16, key->b, CG_SHA256_BYTES) != 0))
        return false;
    *payload = le_get(h + 48, 8);
    *sum = le_get(h + 56, 8);
    return *payload == len - DC_HEADER;
}

uint64_t rt_idx_cache_checksum(const void *payload, size_t len) {
    const uint8_t *p = payload;
    size_t head = len < 4 ? len : 4 + 4 * (size_t)p[3];
    if (head > len) head = len;
    uint64_t sum = xxh64(p, head, 0);
    for (size_t off = head; off < len; off += DC_BLOCK)
        sum = dc_sum_block(sum, p + off, len - off < DC_BLOCK ? len - off : DC_BLOCK);
    return sum;
}

kiln_status rt_idx_cache_decode(const void *buf, size_t len, const char *name, rt_idx *out,
                                kiln_diag *d) {
    memset(out, 0, sizeof *out);
    uint64_t payload, sum;
    if (!dc_check_header(buf, len, NULL, &payload, &sum))
        return ir_error(d, KILN_ERR_PARSE, ir_loc_none(), "%s: not a whole data cache entry", name);
    src s;
    kiln_status st = src_open_mem(&s, (const uint8_t *)buf + DC_HEADER, (size_t)payload, name, d);
    s.want_sum = true;
    if (!st) st = idx_read(&s, out);
    src_close(&s);
    if (!st && s.sum != sum) {
        rt_idx_free(out);
        st = ir_error(d, KILN_ERR_PARSE, ir_loc_none(), "%s: checksum mismatch", name);
    }
    return st;
}

/* A hit: the verified entry of `key` read into *out. A bad entry goes. */
static bool dc_lookup(const cg_cache_cfg *c, const cg_cache_key *key, rt_idx *out) {
    char path[sizeof c->dir + 80];
    cg_cache_path(c, key, path, sizeof path);
    src s;
    memset(&s, 0, sizeof s);
    s.name = path;
    s.f = fopen(path, "rb");
    if (!s.f) return false;
    struct stat sb;
    uint8_t h[DC_HEADER];
    uint64_t payload, sum;
    bool ok = fstat(fileno(s.f), &sb) == 0 && S_ISREG(sb.st_mode) &&
              fread(h, 1, DC_HEADER, s.f) == DC_HEADER &&
              dc_check_header(h, (uint64_t)sb.st_size, key, &payload, &sum);
    bool oom = false;
    if (ok) {
        kiln_diag *quiet = kiln_diag_create();
        s.d = quiet;
        s.total = payload;
        s.buf = ir_malloc(SRC_BUF);
        s.want_sum = true;
        kiln_status st = !s.buf || !quiet ? KILN_ERR_NOMEM : idx_read(&s, out);
        oom = st == KILN_ERR_NOMEM;
        ok = !st;
        if (ok && s.sum != sum) {
            rt_idx_free(out);
            ok = false;
        }
        kiln_diag_dispose(quiet);
    }
    if (ok) futimens(fileno(s.f), NULL); /* most recently used (best effort) */
    src_close(&s);
    if (!ok && !oom) remove(path); /* never trusted again; the load rewrites it */
    return ok;
}

/* Stores the decompressed `a` under `key`; one warning when the directory
 * cannot take it. */
static void dc_store(const cg_cache_cfg *c, const cg_cache_key *key, rt_idx *a, kiln_diag *d) {
    size_t esize = rt_idx_type_size(a->type), n = (size_t)a->count * esize;
    uint8_t h[DC_HEADER], ih[4 + 4 * RT_IDX_MAX_RANK];
    size_t ihn = idx_header_bytes(a, ih);
    to_host_order(a->data, a->count, esize); /* back to the file's order, and again after */
    memset(h, 0, sizeof h);
    memcpy(h, DC_MAGIC, 8);
    le_put(h + 8, DC_FORMAT, 4);
    le_put(h + 56, dc_sum(a), 8);
    memcpy(h + 16, key->b, CG_SHA256_BYTES);
    le_put(h + 48, ihn + n, 8);
    const void *parts[3] = {h, ih, a->data};
    size_t lens[3] = {DC_HEADER, ihn, n};
    char why[4400];
    bool ok = cg_cache_write_parts(c, key, parts, lens, 3, why, sizeof why);
    to_host_order(a->data, a->count, esize);
    if (!ok) cg_cache_warn_once(d, why, "reading the data without it");
}

kiln_status rt_idx_load(const char *path, rt_idx *out, kiln_diag *d) {
    return rt_idx_load_cached(path, out, NULL, d);
}

kiln_status rt_idx_load_cached(const char *path, rt_idx *out, bool *hit, kiln_diag *d) {
    if (hit) *hit = false;
    memset(out, 0, sizeof *out);
    src s;
    kiln_status st = src_open_file(&s, path, d);
    cg_cache_cfg cfg;
    cg_cache_key key;
    bool cache = !st && s.gz && s.total * 2 >= DC_MIN_BYTES;
    if (cache) {
        cg_cache_config(&cfg);
        cache = cfg.enabled && dc_key(path, s.f, &key);
    }
    if (cache && dc_lookup(&cfg, &key, out)) {
        src_close(&s);
        if (hit) *hit = true;
        return KILN_OK;
    }
    if (!st) st = idx_read(&s, out);
    src_close(&s);
    if (!st && cache && (uint64_t)out->count * rt_idx_type_size(out->type) >= DC_MIN_BYTES)
        dc_store(&cfg, &key, out, d);
    return st;
}

kiln_status rt_idx_parse(const void *buf, size_t len, const char *name, rt_idx *out,
                         kiln_diag *d) {
    memset(out, 0, sizeof *out);
    src s;
    kiln_status st = src_open_mem(&s, buf, len, name, d);
    if (!st) st = idx_read(&s, out);
    src_close(&s);
    return st;
}

/* -------------------------------------------------------------- datasets */

void rt_dataset_free(rt_dataset *ds) {
    if (!ds) return;
    ir_free(ds->images_path);
    ir_free(ds->labels_path);
    if (!ds->borrowed_x) {
        ir_free(ds->u8);
        ir_free(ds->f32);
    }
    if (!ds->borrowed_labels) ir_free(ds->labels);
    if (!ds->borrowed_targets) ir_free(ds->targets);
    ir_free(ds);
}

static kiln_status take_images(rt_dataset *ds, rt_idx *img, kiln_diag *d) {
    const char *name = ds->images_path;
    char dbuf[128];
    if (img->type != RT_IDX_U8 && img->type != RT_IDX_F32)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "%s: unsupported dtype %s (0x%02X) for images; Kiln reads uint8 (0x08) "
                        "or float32 (0x0D)",
                        name, rt_idx_type_name(img->type), (unsigned)img->type);
    if (img->rank < 2)
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                        "%s: an images file has rank 2 or more (the count, then the shape of one "
                        "image); this one is %s; is it a labels file?",
                        name, dims_str(img->dims, img->rank, dbuf, sizeof dbuf));
    if (img->dims[0] > INT32_MAX)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "%s: %lld images exceed the limit of 2^31-1", name,
                        (long long)img->dims[0]);
    ds->n = img->dims[0];
    ds->sample_rank = img->rank - 1;
    for (int i = 1; i < img->rank; i++) ds->sample_dims[i - 1] = img->dims[i];
    ds->sample_size = img->count / img->dims[0];
    ds->is_float = img->type == RT_IDX_F32;
    if (ds->is_float)
        ds->f32 = img->data;
    else
        ds->u8 = img->data;
    img->data = NULL;
    return KILN_OK;
}

static kiln_status take_labels(rt_dataset *ds, rt_idx *lab, kiln_diag *d) {
    const char *name = ds->labels_path;
    char dbuf[128];
    if (lab->type == RT_IDX_F32 || lab->type == RT_IDX_F64)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: labels must be integers; this file holds %s", name,
                        rt_idx_type_name(lab->type));
    if (lab->rank != 1)
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                        "%s: a labels file has rank 1; this one is %s; is it an images file?",
                        name, dims_str(lab->dims, lab->rank, dbuf, sizeof dbuf));
    if (lab->dims[0] != ds->n)
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(), "%s: %lld labels, but %s has %lld images",
                        name, (long long)lab->dims[0], ds->images_path, (long long)ds->n);
    int64_t n = ds->n;
    int32_t *out;
    if (lab->type == RT_IDX_I32) {
        out = lab->data;
        lab->data = NULL;
    } else {
        out = ir_malloc((size_t)n * sizeof *out);
        if (!out) return ir_oom(d);
        if (lab->type == RT_IDX_U8) {
            const uint8_t *p = lab->data;
            for (int64_t i = 0; i < n; i++) out[i] = p[i];
        } else if (lab->type == RT_IDX_I8) {
            const int8_t *p = lab->data;
            for (int64_t i = 0; i < n; i++) out[i] = p[i];
        } else {
            const int16_t *p = lab->data;
            for (int64_t i = 0; i < n; i++) out[i] = p[i];
        }
    }
    int32_t lo = out[0], hi = out[0];
    for (int64_t i = 1; i < n; i++) {
        lo = out[i] < lo ? out[i] : lo;
        hi = out[i] > hi ? out[i] : hi;
    }
    ds->labels = out;
    ds->label_min = lo;
    ds->label_max = hi;
    return KILN_OK;
}

/* A new dataset named by its files (labels_path may be NULL). */
static rt_dataset *dataset_new(const char *images_path, const char *labels_path, kiln_diag *d) {
    rt_dataset *ds = ir_calloc(1, sizeof *ds);
    if (!ds) return ir_oom(d), NULL;
    ds->images_path = ir_strdup(images_path);
    ds->labels_path = labels_path ? ir_strdup(labels_path) : NULL;
    if (!ds->images_path || (labels_path && !ds->labels_path)) {
        rt_dataset_free(ds);
        return ir_oom(d), NULL;
    }
    return ds;
}

/* Takes images and labels (lab may be NULL) into ds, or frees ds. */
static kiln_status dataset_take(rt_dataset *ds, rt_idx *img, rt_idx *lab, bool npy,
                                rt_dataset **out, kiln_diag *d) {
    kiln_status st = take_images(ds, img, d);
    if (!st && lab)
        st = npy && (lab->type == RT_IDX_F32 || lab->rank > 1) ? rt_dataset_take_float_labels(ds, lab, d)
                                                                : take_labels(ds, lab, d);
    rt_idx_free(img);
    if (lab) rt_idx_free(lab);
    if (st) {
        rt_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KILN_OK;
}

kiln_status rt_dataset_load(const char *images_path, const char *labels_path, rt_dataset **out,
                            kiln_diag *d) {
    *out = NULL;
    if (!images_path)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_dataset_load: no images file");
    rt_dataset *ds = dataset_new(images_path, labels_path, d);
    if (!ds) return KILN_ERR_NOMEM;
    rt_idx a, b;
    memset(&b, 0, sizeof b);
    bool npy_a, npy_b = false;
    kiln_status st = rt_array_load(images_path, &a, &npy_a, d);
    if (!st && labels_path && (st = rt_array_load(labels_path, &b, &npy_b, d))) rt_idx_free(&a);
    if (st) {
        rt_dataset_free(ds);
        return st;
    }
    return dataset_take(ds, &a, labels_path ? &b : NULL, npy_b, out, d);
}

kiln_status rt_dataset_load_npz(const char *path, rt_split split, rt_dataset **out,
                                kiln_diag *d) {
    *out = NULL;
    const char *xs = split == RT_SPLIT_TEST ? "x_test" : "x_train";
    const char *ys = split == RT_SPLIT_TEST ? "y_test" : "y_train";
    ir_sb nx, ny;
    ir_sb_init(&nx);
    ir_sb_init(&ny);
    ir_sb_printf(&nx, "%s:%s.npy", path, xs);
    ir_sb_printf(&ny, "%s:%s.npy", path, ys);
    rt_dataset *ds = nx.buf && ny.buf ? dataset_new(nx.buf, ny.buf, d) : NULL;
    kiln_status st = nx.buf && ny.buf ? KILN_OK : ir_oom(d);
    ir_sb_free(&nx);
    ir_sb_free(&ny);
    if (!ds) return st ? st : KILN_ERR_NOMEM;
    rt_idx a, b;
    st = rt_npz_load(path, xs, &a, d);
    if (!st && (st = rt_npz_load(path, ys, &b, d))) rt_idx_free(&a);
    if (st) {
        rt_dataset_free(ds);
        return st;
    }
    return dataset_take(ds, &a, &b, true, out, d);
}

/* dir/base, or dir/base.gz when only that exists. */
static kiln_status find_file(const char *dir, const char *base, char **out, kiln_diag *d) {
    *out = NULL;
    ir_sb sb;
    for (int gz = 0; gz < 2; gz++) {
        ir_sb_init(&sb);
        ir_sb_printf(&sb, "%s/%s%s", dir, base, gz ? ".gz" : "");
        char *p = ir_sb_take(&sb);
        if (!p) return ir_oom(d);
        struct stat st;
        if (stat(p, &st) == 0) {
            *out = p;
            return KILN_OK;
        }
        ir_free(p);
    }
    return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: no %s or %s.gz in this directory", dir,
                    base, base);
}

kiln_status rt_dataset_load_dir(const char *dir, rt_split split, rt_dataset **out, kiln_diag *d) {
    *out = NULL;
    if (!dir) dir = RT_DEFAULT_DATA_DIR;
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", dir, strerror(errno));
    size_t dl = strlen(dir);
    if (S_ISREG(sb.st_mode) && dl > 4 && strcmp(dir + dl - 4, ".npz") == 0)
        return rt_dataset_load_npz(dir, split, out, d);
    if (!S_ISDIR(sb.st_mode))
        return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: not a directory", dir);
    /* NumPy's x_train.npy, y_train.npy, x_test.npy, y_test.npy, if there. */
    const char *sp = split == RT_SPLIT_TEST ? "test" : "train";
    ir_sb nx, ny;
    ir_sb_init(&nx);
    ir_sb_init(&ny);
    ir_sb_printf(&nx, "%s/x_%s.npy", dir, sp);
    ir_sb_printf(&ny, "%s/y_%s.npy", dir, sp);
    kiln_status nst = nx.buf && ny.buf ? KILN_OK : ir_oom(d);
    if (!nst && stat(nx.buf, &sb) == 0) nst = rt_dataset_load(nx.buf, ny.buf, out, d);
    bool done = nst || *out;
    ir_sb_free(&nx);
    ir_sb_free(&ny);
    if (done) return nst;
    const char *pre = split == RT_SPLIT_TEST ? "t10k" : "train";
    char names[2][40];
    snprintf(names[0], sizeof names[0], "%s-images-idx3-ubyte", pre);
    snprintf(names[1], sizeof names[1], "%s-labels-idx1-ubyte", pre);
    char *images = NULL, *labels = NULL;
    kiln_status st = find_file(dir, names[0], &images, d);
    if (!st) st = find_file(dir, names[1], &labels, d);
    if (!st) st = rt_dataset_load(images, labels, out, d);
    ir_free(images);
    ir_free(labels);
    return st;
}

kiln_status rt_dataset_check_labels(const rt_dataset *ds, int64_t n_classes, kiln_diag *d) {
    if (!ds->labels)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no labels were loaded",
                        ds->images_path);
    if (ds->label_min >= 0 && ds->label_max < n_classes) return KILN_OK;
    for (int64_t i = 0; i < ds->n; i++) {
        int32_t l = ds->labels[i];
        if (l < 0 || l >= n_classes)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: label %d of sample %lld is out of range: the model has %lld "
                            "class%s (0..%lld)",
                            ds->labels_path, (int)l, (long long)i, (long long)n_classes,
                            n_classes == 1 ? "" : "es", (long long)n_classes - 1);
    }
    return KILN_OK;
}

kiln_status rt_dataset_check_input(const rt_dataset *ds, int64_t model_values, kiln_diag *d) {
    if (ds->sample_size == model_values) return KILN_OK;
    char dbuf[128];
    if (ds->sample_rank > 1)
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                        "%s: images are %s = %lld values, the model expects %lld", ds->images_path,
                        dims_str(ds->sample_dims, ds->sample_rank, dbuf, sizeof dbuf),
                        (long long)ds->sample_size, (long long)model_values);
    return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                    "%s: images are %lld values, the model expects %lld", ds->images_path,
                    (long long)ds->sample_size, (long long)model_values);
}

/* --------------------------------------------------------------- batches */

typedef uint8_t v4u8 __attribute__((vector_size(4)));
typedef float v4f __attribute__((vector_size(16)));

/* x = src / 255: a division, so the floats are exactly those of Keras' and
 * PyTorch's `x / 255` (multiplying by 1/255 differs in 126 of 256 values).
 * Explicit vectors: -O2 does not vectorize a loop of unknown length. */
static void scale_row_div(const uint8_t *restrict s, float *restrict x, int64_t n) {
    const v4f k = {255.0f, 255.0f, 255.0f, 255.0f};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v4u8 a, b;
        memcpy(&a, s + i, 4);
        memcpy(&b, s + i + 4, 4);
        v4f fa = __builtin_convertvector(a, v4f) / k;
        v4f fb = __builtin_convertvector(b, v4f) / k;
        memcpy(x + i, &fa, 16);
        memcpy(x + i + 4, &fb, 16);
    }
    for (; i < n; i++) x[i] = (float)s[i] / 255.0f;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The same floats without a division (3x faster, it runs every step):
 * q = u * (1/255), then one correction with the residual u - 255q, which an
 * FMA computes exactly; the result is the correctly rounded u / 255 for every
 * u in 0..255 (test_data checks all 256). */
__attribute__((target("avx2,fma"))) static void scale_row_fma(const uint8_t *restrict s,
                                                              float *restrict x, int64_t n) {
    const __m256 r = _mm256_set1_ps(1.0f / 255.0f), k = _mm256_set1_ps(255.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(s + i));
        __m256 u = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
        __m256 q = _mm256_mul_ps(u, r);
        __m256 e = _mm256_fnmadd_ps(q, k, u);
        _mm256_storeu_ps(x + i, _mm256_fmadd_ps(e, r, q));
    }
    for (; i < n; i++) x[i] = (float)s[i] / 255.0f;
}

static void scale_row(const uint8_t *restrict s, float *restrict x, int64_t n) {
    static int fma = -1;
    if (fma < 0) fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (fma)
        scale_row_fma(s, x, n);
    else
        scale_row_div(s, x, n);
}
#else
static void scale_row(const uint8_t *restrict s, float *restrict x, int64_t n) {
    scale_row_div(s, x, n);
}
#endif

static inline void prefetch_row(const rt_dataset *ds, int64_t row) {
    const char *p = (const char *)(ds->u8 + row * ds->sample_size);
    for (int64_t o = 0; o < ds->sample_size; o += 64) __builtin_prefetch(p + o);
}

static bool y_copies_targets(const rt_dataset *ds, int n_classes) {
    return ds->targets && ds->target_size == n_classes;
}

static kiln_status batch_checks(const rt_dataset *ds, int n, float *x_out, float *y_onehot,
                                int n_classes, int32_t *labels_out, kiln_diag *d) {
    if (!ds || n < 0 || (n > 0 && !x_out))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_batch: bad argument");
    bool targets = y_onehot && y_copies_targets(ds, n_classes);
    if (((y_onehot && !targets) || labels_out) && !ds->labels)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no labels were loaded",
                        ds->images_path);
    if (y_onehot && n_classes <= 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_batch: one-hot needs n_classes");
    /* O(1) on the hot path: the dataset knows its smallest and largest label. */
    bool onehot = y_onehot && !targets && n_classes > 1;
    if ((onehot || (labels_out && n_classes > 0)) &&
        (ds->label_min < 0 || ds->label_max >= n_classes))
        return rt_dataset_check_labels(ds, n_classes, d);
    return KILN_OK;
}

/* y of sample `row` into batch row i: targets copied, a label as a value
 * (n_classes 1) or one-hot (rt_y_mode in data.h). */
static void fill_labels(const rt_dataset *ds, int64_t i, int64_t row, float *y_onehot,
                        int n_classes, int32_t *labels_out) {
    if (y_onehot && y_copies_targets(ds, n_classes))
        memcpy(y_onehot + i * n_classes, ds->targets + row * n_classes,
               sizeof(float) * (size_t)n_classes);
    else if (y_onehot && n_classes == 1)
        y_onehot[i] = (float)ds->labels[row];
    else if (y_onehot)
        y_onehot[i * n_classes + ds->labels[row]] = 1.0f;
    if (labels_out) labels_out[i] = ds->labels[row];
}

kiln_status rt_batch_gather(const rt_dataset *ds, const int32_t *indices, int n, float *x_out,
                            float *y_onehot, int n_classes, int32_t *labels_out, kiln_diag *d) {
    kiln_status st = batch_checks(ds, n, x_out, y_onehot, n_classes, labels_out, d);
    if (st) return st;
    if (n > 0 && !indices)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_batch_gather: no indices");
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->n)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: batch index %d is out of range (%lld samples)", ds->images_path,
                            (int)indices[i], (long long)ds->n);
    int64_t w = ds->sample_size;
    if (y_onehot) memset(y_onehot, 0, (size_t)n * (size_t)n_classes * sizeof(float));
    for (int i = 0; i < n; i++) {
        int64_t row = indices[i];
        if (ds->is_float) {
            memcpy(x_out + i * w, ds->f32 + row * w, (size_t)w * sizeof(float));
        } else {
            /* Shuffled rows miss the cache; fetching two ahead halves the time. */
            if (i + 2 < n) prefetch_row(ds, indices[i + 2]);
            scale_row(ds->u8 + row * w, x_out + i * w, w);
        }
        if (y_onehot || labels_out) fill_labels(ds, i, row, y_onehot, n_classes, labels_out);
    }
    return KILN_OK;
}

kiln_status rt_batch_slice(const rt_dataset *ds, int64_t start, int n, float *x_out,
                           float *y_onehot, int n_classes, int32_t *labels_out, kiln_diag *d) {
    kiln_status st = batch_checks(ds, n, x_out, y_onehot, n_classes, labels_out, d);
    if (st) return st;
    if (start < 0 || start > ds->n || n > ds->n - start)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: samples %lld..%lld are out of range (%lld samples)", ds->images_path,
                        (long long)start, (long long)start + n - 1, (long long)ds->n);
    int64_t w = ds->sample_size;
    if (ds->is_float)
        memcpy(x_out, ds->f32 + start * w, (size_t)n * (size_t)w * sizeof(float));
    else
        scale_row(ds->u8 + start * w, x_out, (int64_t)n * w);
    if (y_onehot) memset(y_onehot, 0, (size_t)n * (size_t)n_classes * sizeof(float));
    if (y_onehot || labels_out)
        for (int i = 0; i < n; i++) fill_labels(ds, i, start + i, y_onehot, n_classes, labels_out);
    return KILN_OK;
}

/* ------------------------------------------------------------- shuffling */

/* The stream of the shuffling RNG, apart from the initializers' streams. */
#define SHUFFLE_STREAM 0x73687566666c65ULL /* "shuffle" */

uint64_t rt_rng_below(ir_rng *r, uint64_t bound) {
    /* Reject the lowest 2^64 mod bound values: what is left is a whole
     * number of copies of [0, bound). */
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t x = ir_rng_next(r);
        if (x >= threshold) return x % bound;
    }
}

kiln_status rt_shuffle_init(rt_shuffle *s, int64_t n, uint64_t seed, kiln_diag *d) {
    memset(s, 0, sizeof *s);
    if (n < 0 || n > INT32_MAX)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "cannot shuffle %lld samples (the limit is 2^31-1)", (long long)n);
    s->perm = ir_malloc((size_t)(n ? n : 1) * sizeof *s->perm);
    if (!s->perm) return ir_oom(d);
    s->n = n;
    s->rng = ir_rng_seed(seed, SHUFFLE_STREAM);
    for (int64_t i = 0; i < n; i++) s->perm[i] = (int32_t)i;
    s->st.rng = s->rng.state;
    s->st.drawn = false;
    return KILN_OK;
}

void rt_shuffle_free(rt_shuffle *s) {
    if (!s) return;
    ir_free(s->perm);
    memset(s, 0, sizeof *s);
}

void rt_shuffle_next(rt_shuffle *s) {
    s->st.rng = s->rng.state;
    s->st.drawn = true;
    int32_t *p = s->perm;
    for (int64_t i = 0; i < s->n; i++) p[i] = (int32_t)i;
    for (int64_t i = s->n - 1; i > 0; i--) {
        int64_t j = (int64_t)rt_rng_below(&s->rng, (uint64_t)i + 1);
        int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

rt_shuffle_state rt_shuffle_get_state(const rt_shuffle *s) { return s->st; }

void rt_shuffle_set_state(rt_shuffle *s, rt_shuffle_state st) {
    s->rng.state = st.rng;
    if (st.drawn) {
        rt_shuffle_next(s);
    } else {
        for (int64_t i = 0; i < s->n; i++) s->perm[i] = (int32_t)i;
        s->st = st;
    }
}

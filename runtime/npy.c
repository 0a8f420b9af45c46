/*
 * npy.c — NumPy .npy files and .npz archives (see npy.h).
 *
 * Files are mapped, not read: a .npy parses in place and its data is
 * copied once into the array; a deflated .npz member is inflated into a
 * buffer no larger than its compressed size allows. The host is assumed
 * little-endian, as .npy data is here (every target Kiln builds for is).
 */
#include "runtime/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define NPY_MAX_HEADER (1u << 20)

char *rt_printable(char *s) {
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
    return s;
}

uint32_t rt_le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
uint32_t rt_le32(const uint8_t *p) { return rt_le16(p) | rt_le16(p + 2) << 16; }

bool rt_is_npy(const void *buf, size_t len) {
    return len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0;
}

bool rt_is_zip(const void *buf, size_t len) { return len >= 4 && memcmp(buf, "PK\x03\x04", 4) == 0; }

/* ------------------------------------------------------- the header dict */

typedef struct hdr {
    const char *s;
    size_t n, i, base; /* text, length, position, file offset of s[0] */
    const char *name;
    kiln_diag *d;
} hdr;

static kiln_status hdr_err(hdr *h, const char *what) {
    return ir_error(h->d, KILN_ERR_INVALID, ir_loc_none(), "%s: header byte %zu: %s", h->name,
                    h->base + h->i, what);
}

static void hdr_ws(hdr *h) {
    while (h->i < h->n && (h->s[h->i] == ' ' || h->s[h->i] == '\t' || h->s[h->i] == '\n'))
        h->i++;
}

static bool hdr_eat(hdr *h, char c) {
    hdr_ws(h);
    if (h->i < h->n && h->s[h->i] == c) {
        h->i++;
        return true;
    }
    return false;
}

/* A quoted string into out (at most cap-1 chars). */
static kiln_status hdr_str(hdr *h, char *out, size_t cap) {
    hdr_ws(h);
    if (h->i >= h->n || (h->s[h->i] != '\'' && h->s[h->i] != '"'))
        return hdr_err(h, "expected a quoted string");
    char q = h->s[h->i++];
    size_t k = 0;
    while (h->i < h->n && h->s[h->i] != q) {
        if (k + 1 >= cap) return hdr_err(h, "string too long");
        if (h->s[h->i] < 0x20 || h->s[h->i] > 0x7e) return hdr_err(h, "a control character in a string");
        out[k++] = h->s[h->i++];
    }
    if (h->i >= h->n) return hdr_err(h, "unterminated string");
    h->i++;
    out[k] = 0;
    return KILN_OK;
}

static kiln_status hdr_bool(hdr *h, bool *v) {
    hdr_ws(h);
    if (h->n - h->i >= 4 && memcmp(h->s + h->i, "True", 4) == 0) {
        h->i += 4;
        *v = true;
    } else if (h->n - h->i >= 5 && memcmp(h->s + h->i, "False", 5) == 0) {
        h->i += 5;
        *v = false;
    } else {
        return hdr_err(h, "expected True or False");
    }
    return KILN_OK;
}

/* shape -> '(' [int {',' int} [',']] ')' */
static kiln_status hdr_shape(hdr *h, rt_idx *a) {
    if (!hdr_eat(h, '(')) return hdr_err(h, "expected a shape tuple such as (60000, 784)");
    a->rank = 0;
    while (!hdr_eat(h, ')')) {
        hdr_ws(h);
        if (h->i >= h->n || h->s[h->i] < '0' || h->s[h->i] > '9')
            return hdr_err(h, "expected a dimension (a non-negative integer)");
        int64_t v = 0;
        while (h->i < h->n && h->s[h->i] >= '0' && h->s[h->i] <= '9') {
            if (v > (INT64_MAX - 9) / 10) return hdr_err(h, "dimension too large");
            v = v * 10 + (h->s[h->i++] - '0');
        }
        if (h->i < h->n && h->s[h->i] == 'L') h->i++; /* Python 2's long */
        if (a->rank == RT_IDX_MAX_RANK) return hdr_err(h, "more dimensions than Kiln's limit of 7");
        a->dims[a->rank++] = v;
        if (!hdr_eat(h, ',') && !(hdr_ws(h), h->i < h->n && h->s[h->i] == ')'))
            return hdr_err(h, "expected ',' or ')' in the shape");
    }
    return KILN_OK;
}

/* {'descr': ..., 'fortran_order': ..., 'shape': ...} followed by spaces and
 * a newline; the keys in any order, each once. */
static kiln_status hdr_parse(hdr *h, char *descr, size_t cap, bool *fortran, rt_idx *a) {
    if (!hdr_eat(h, '{')) return hdr_err(h, "expected '{' (the header is a Python dict)");
    int seen = 0;
    kiln_status st;
    while (!hdr_eat(h, '}')) {
        char key[32];
        size_t at = h->i;
        if ((st = hdr_str(h, key, sizeof key))) return st;
        if (!hdr_eat(h, ':')) return hdr_err(h, "expected ':' after the key");
        int bit = strcmp(key, "descr") == 0           ? 1
                  : strcmp(key, "fortran_order") == 0 ? 2
                  : strcmp(key, "shape") == 0         ? 4
                                                      : 0;
        if (!bit || (seen & bit)) {
            h->i = at;
            return hdr_err(h, bit ? "a key appears twice" : "unknown key (expected 'descr', "
                                                            "'fortran_order' and 'shape')");
        }
        seen |= bit;
        hdr_ws(h);
        if (bit == 1 && h->i < h->n && h->s[h->i] == '[')
            return hdr_err(h, "structured dtypes (a list of fields) are not supported");
        st = bit == 1 ? hdr_str(h, descr, cap) : bit == 2 ? hdr_bool(h, fortran) : hdr_shape(h, a);
        if (st) return st;
        if (!hdr_eat(h, ',') && !(hdr_ws(h), h->i < h->n && h->s[h->i] == '}'))
            return hdr_err(h, "expected ',' or '}'");
    }
    if (seen != 7) return hdr_err(h, "the header lacks 'descr', 'fortran_order' or 'shape'");
    hdr_ws(h);
    if (h->i != h->n) return hdr_err(h, "unexpected text after the header dict");
    return KILN_OK;
}

/* ------------------------------------------------------------- dtypes */

/* The descr of a supported dtype: its IDX type and size; 0 if not. */
static size_t descr_type(const char *s, int *type) {
    static const struct {
        const char *descr;
        int type;
        size_t size;
    } known[] = {{"<f4", RT_IDX_F32, 4}, {"<f8", RT_IDX_F64, 8}, {"|u1", RT_IDX_U8, 1},
                 {"<u1", RT_IDX_U8, 1},  {">u1", RT_IDX_U8, 1},  {"u1", RT_IDX_U8, 1},
                 {"<i4", RT_IDX_I32, 4}, {"<i8", -8, 8}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(s, known[i].descr) == 0) {
            *type = known[i].type;
            return known[i].size;
        }
    return 0;
}

/* "big-endian float32", "float16", ...: NumPy's name of a descr. */
static void descr_name(const char *s, char *out, size_t cap) {
    const char *order = s[0] == '>' ? "big-endian " : "";
    const char *t = (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=') ? s + 1 : s;
    const char *kind = t[0] == 'f'   ? "float"
                       : t[0] == 'i' ? "int"
                       : t[0] == 'u' ? "uint"
                       : t[0] == 'c' ? "complex"
                       : t[0] == 'b' ? "bool"
                       : t[0] == 'U' ? "unicode string"
                       : t[0] == 'S' ? "byte string"
                       : t[0] == 'O' ? "Python object"
                       : t[0] == 'M' ? "datetime64"
                       : t[0] == 'm' ? "timedelta64"
                       : t[0] == 'V' ? "void"
                                     : "unknown";
    long size = strtol(t + (t[0] ? 1 : 0), NULL, 10);
    int bits = size > 0 && size <= 64 ? (int)size * 8 : 0;
    bool sized = t[0] == 'f' || t[0] == 'i' || t[0] == 'u' || t[0] == 'c';
    if (sized && bits > 0)
        snprintf(out, cap, "%s%s%d", order, kind, bits);
    else
        snprintf(out, cap, "%s%s", order, kind);
}

/* int64 -> int32 and float64 -> float32 in place, then finite floats. */
static kiln_status narrow(rt_idx *a, int type, const char *name, kiln_diag *d) {
    int64_t per = a->rank ? a->count / a->dims[0] : 1;
    if (type == -8) {
        const int64_t *s = a->data;
        int32_t *t = a->data;
        for (int64_t i = 0; i < a->count; i++) {
            int64_t v = s[i];
            if (v < INT32_MIN || v > INT32_MAX)
                return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                                "%s: value %lld of sample %lld (%lld) does not fit in int32", name,
                                (long long)(i % per), (long long)(i / per), (long long)v);
            t[i] = (int32_t)v;
        }
        a->type = RT_IDX_I32;
    } else if (type == RT_IDX_F64) {
        const double *s = a->data;
        float *t = a->data;
        for (int64_t i = 0; i < a->count; i++) t[i] = (float)s[i];
        a->type = RT_IDX_F32;
    }
    if (a->type == RT_IDX_F32) {
        const float *v = a->data;
        for (int64_t i = 0; i < a->count; i++)
            if (!isfinite(v[i]))
                return ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(),
                                "%s: value %lld of sample %lld is %s", name, (long long)(i % per),
                                (long long)(i / per),
                                isnan(v[i]) ? "NaN" : v[i] > 0 ? "Inf" : "-Inf");
    }
    return KILN_OK;
}

/* ---------------------------------------------------------------- .npy */


/* The shape's element count and byte size, or an error when too large. */
static kiln_status shape_size(rt_idx *a, size_t esize, const char *name, uint64_t *bytes,
                              kiln_diag *d) {
    if (a->rank == 0)
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                        "%s: a scalar (shape ()) is not an array of samples", name);
    a->count = 1;
    for (int i = 0; i < a->rank; i++) {
        if (a->dims[i] == 0)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: empty array (dimension %d is 0)", name, i);
        if (a->count > RT_IDX_MAX_BYTES / (int64_t)esize / a->dims[i])
            return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                            "%s: the shape's data exceeds %lld GiB", name,
                            (long long)(RT_IDX_MAX_BYTES >> 30));
        a->count *= a->dims[i];
    }
    *bytes = (uint64_t)a->count * esize;
    return KILN_OK;
}

/* Magic, version, header length: the offset of the dict and its length. */
static kiln_status npy_preamble(const uint8_t *p, size_t len, const char *name, size_t *at,
                                size_t *hlen, kiln_diag *d) {
    if (!rt_is_npy(p, len))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: not a .npy file (it does not start with \\x93NUMPY)", name);
    if (len < 10)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: truncated: %zu bytes", name, len);
    int major = p[6];
    if (major < 1 || major > 3)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "%s: byte 6: .npy format version %d.%d (Kiln reads 1.0, 2.0 and 3.0)",
                        name, major, p[7]);
    *at = major == 1 ? 10 : 12;
    if (len < *at)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: truncated: %zu bytes", name, len);
    uint64_t h = major == 1 ? rt_le16(p + 8) : rt_le32(p + 8);
    if (h > len - *at)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: byte 8: the header claims %llu bytes, the file has %zu after byte %zu",
                        name, (unsigned long long)h, len - *at, *at);
    if (h > NPY_MAX_HEADER)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: byte 8: a %llu-byte header", name,
                        (unsigned long long)h);
    *hlen = (size_t)h;
    return KILN_OK;
}

kiln_status rt_npy_parse(const void *buf, size_t len, const char *name, rt_idx *out,
                         kiln_diag *d) {
    memset(out, 0, sizeof *out);
    const uint8_t *p = buf ? buf : (const uint8_t *)"";
    size_t at = 0, hlen = 0;
    kiln_status st = npy_preamble(p, len, name, &at, &hlen, d);
    if (st) return st;
    hdr h = {(const char *)p + at, hlen, 0, at, name, d};
    char descr[32];
    bool fortran = false;
    rt_idx a;
    memset(&a, 0, sizeof a);
    if ((st = hdr_parse(&h, descr, sizeof descr, &fortran, &a))) return st;
    int type;
    size_t esize = descr_type(descr, &type);
    if (!esize) {
        char nm[48];
        descr_name(descr, nm, sizeof nm);
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "%s: unsupported dtype '%s' (%s); Kiln reads float32, float64, uint8, "
                        "int32 and int64, little-endian",
                        name, descr, nm);
    }
    if (fortran && a.rank > 1)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "%s: Fortran order (column-major) is not supported; save a C-order "
                        "array (np.ascontiguousarray)",
                        name);
    uint64_t bytes = 0;
    if ((st = shape_size(&a, esize, name, &bytes, d))) return st;
    size_t data_at = at + hlen, have = len - data_at;
    if (bytes != have)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: %s: the shape needs %llu bytes of data after byte %zu, the file has "
                        "%zu",
                        name, bytes > have ? "truncated" : "data after the array",
                        (unsigned long long)bytes, data_at, have);
    if (!(a.data = ir_malloc((size_t)bytes))) return ir_oom(d);
    memcpy(a.data, p + data_at, (size_t)bytes);
    a.type = (rt_idx_type)type; /* narrow() sets the final type */
    if ((st = narrow(&a, type, name, d))) {
        ir_free(a.data);
        return st;
    }
    *out = a;
    return KILN_OK;
}

/* ------------------------------------------------------------ mapping */

kiln_status rt_map_file(const char *path, rt_mapped *m, kiln_diag *d) {
    m->p = NULL;
    m->len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    struct stat sb;
    kiln_status st = KILN_OK;
    if (fstat(fd, &sb) != 0)
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path,
                      S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    else if (sb.st_size > 0) {
        m->len = (size_t)sb.st_size;
        m->p = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m->p == MAP_FAILED) {
            m->p = NULL;
            st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
        }
    }
    close(fd);
    return st;
}

void rt_unmap_file(rt_mapped *m) {
    if (m->p) munmap(m->p, m->len);
    m->p = NULL;
}

kiln_status rt_npy_load(const char *path, rt_idx *out, kiln_diag *d) {
    memset(out, 0, sizeof *out);
    rt_mapped m;
    kiln_status st = rt_map_file(path, &m, d);
    if (!st) st = rt_npy_parse(m.p, m.len, path, out, d);
    rt_unmap_file(&m);
    return st;
}

kiln_status rt_array_load(const char *path, rt_idx *out, bool *is_npy, kiln_diag *d) {
    memset(out, 0, sizeof *out);
    rt_mapped m;
    kiln_status st = rt_map_file(path, &m, d);
    if (st) return st;
    *is_npy = rt_is_npy(m.p, m.len);
    bool zip = rt_is_zip(m.p, m.len);
    if (*is_npy)
        st = rt_npy_parse(m.p, m.len, path, out, d);
    else if (zip)
        st = ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                      "%s: a .npz archive holds several arrays; pass it as --data (with x_train, "
                      "y_train, x_test, y_test)",
                      path);
    rt_unmap_file(&m);
    if (st || *is_npy) return st;
    return rt_idx_load(path, out, d);
}

/* ------------------------------------------------------------- writing */

kiln_status rt_npy_write(const char *path, const float *data, int rank, const int64_t *dims,
                         kiln_diag *d) {
    char h[256];
    int k = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    int64_t count = 1;
    for (int i = 0; i < rank && k < 200; i++) {
        k += snprintf(h + k, sizeof h - (size_t)k, "%lld,%s", (long long)dims[i],
                      i + 1 < rank ? " " : "");
        count *= dims[i];
    }
    if (rank > 1) k--; /* NumPy writes (3,) but (3, 4) */
    k += snprintf(h + k, sizeof h - (size_t)k, "), }");
    int total = (10 + k + 1 + 63) / 64 * 64; /* the data starts 64-byte aligned */
    memset(h + k, ' ', (size_t)(total - 10 - k));
    h[total - 10 - 1] = '\n';
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(total - 10),
                       (uint8_t)((total - 10) >> 8)};
    FILE *f = fopen(path, "wb");
    if (!f) return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(h, 1, (size_t)(total - 10), f) ==
                                                 (size_t)(total - 10);
    if (ok && count > 0) ok = fwrite(data, sizeof(float), (size_t)count, f) == (size_t)count;
    if (fclose(f) != 0) ok = false;
    if (!ok) return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: write failed", path);
    return KILN_OK;
}

kiln_status kiln_npy_write(const char *path, const float *data, int rank, const int64_t *dims,
                           kiln_diag *d) {
    if (!path || rank < 1 || rank > KILN_MAX_RANK || !dims)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_npy_write: bad arguments");
    return rt_npy_write(path, data, rank, dims, d);
}

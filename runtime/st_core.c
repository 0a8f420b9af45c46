/*
 * st_core.c — safetensors in plain C (st_core.h): the checks on every entry
 * of a header (parsed by st_json.c), the file reader, the header writer and
 * the atomic writer. Only the C library: this file is
 * also linked into every AOT shared object.
 */
#include "runtime/st_core.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/kiln.h"
#include "runtime/st_json.h"

static int fail(stc_err *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(stc_err *e, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    return status;
}

static int oom(stc_err *e) { return fail(e, KILN_ERR_NOMEM, "out of memory"); }


/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    size_t size;
} k_dtypes[STC_DTYPE_COUNT] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
    {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
    {"F64", 8},  {"I64", 8}, {"U64", 8}, {"C64", 8},
};

const char *stc_dtype_name(int dt) {
    return (unsigned)dt < STC_DTYPE_COUNT ? k_dtypes[dt].name : "?";
}

size_t stc_dtype_size(int dt) { return (unsigned)dt < STC_DTYPE_COUNT ? k_dtypes[dt].size : 0; }

int stc_dtype_lookup(const char *name) {
    for (int i = 0; i < STC_DTYPE_COUNT; i++)
        if (strcmp(k_dtypes[i].name, name) == 0) return i;
    return -1;
}

const char *stc_shape_str(int rank, const int64_t *dims, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

const char *stc_clean_name(const char *s, char *buf) {
    enum { MAX = STC_NAME_BUF - 4 };
    size_t n = strlen(s), k = n > MAX ? MAX : n;
    /* Do not cut a UTF-8 sequence in two. */
    if (n > MAX)
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    strcpy(buf + k, n > k ? "..." : "");
    return buf;
}

bool stc_shape_bytes(int rank, const int64_t *dims, size_t esize, size_t *out) {
    size_t n = esize;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0 || __builtin_mul_overflow(n, (size_t)dims[i], &n)) return false;
    }
    *out = n;
    return true;
}

uint64_t stc_le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

const char *stc_mismatch(int want_dtype, int want_rank, const int64_t *want_dims, bool found,
                         int dtype, int rank, const int64_t *dims, char *buf, size_t n) {
    char a[160], b[160];
    if (!found) {
        snprintf(buf, n, "is missing; the model expects %s %s", stc_dtype_name(want_dtype),
                 stc_shape_str(want_rank, want_dims, b, sizeof b));
        return buf;
    }
    if (dtype != want_dtype) {
        snprintf(buf, n, "has dtype %s, the model expects %s", stc_dtype_name(dtype),
                 stc_dtype_name(want_dtype));
        return buf;
    }
    bool same = rank == want_rank;
    for (int i = 0; same && i < rank; i++) same = dims[i] == want_dims[i];
    if (same) return NULL;
    snprintf(buf, n, "has shape %s, the model expects %s", stc_shape_str(rank, dims, a, sizeof a),
             stc_shape_str(want_rank, want_dims, b, sizeof b));
    return buf;
}

int64_t stc_first_nonfinite(const void *p, size_t n, const char **what) {
    const unsigned char *b = p;
    for (size_t k = 0; k < n; k++) {
        uint32_t bits = (uint32_t)b[4 * k] | (uint32_t)b[4 * k + 1] << 8 |
                        (uint32_t)b[4 * k + 2] << 16 | (uint32_t)b[4 * k + 3] << 24;
        if ((bits & 0x7f800000u) == 0x7f800000u) {
            *what = (bits & 0x007fffffu) ? "NaN" : (bits >> 31) ? "-Inf" : "Inf";
            return (int64_t)k;
        }
    }
    return -1;
}

bool stc_is_state_name(const char *name) { return strncmp(name, "optimizer.", 10) == 0; }

/* ------------------------------------------------------------ the checks */

int stc_check_sizes(const char *name, uint64_t size, uint64_t hlen, stc_err *e) {
    if (hlen > size - 8)
        return fail(e, KILN_ERR_INVALID, "%s: header length %llu exceeds the file size (%llu bytes)",
                    name, (unsigned long long)hlen, (unsigned long long)size);
    if (hlen > STC_MAX_HEADER)
        return fail(e, KILN_ERR_LIMIT, "%s: header length %llu exceeds the limit of %llu bytes",
                    name, (unsigned long long)hlen, (unsigned long long)STC_MAX_HEADER);
    if (hlen < 2)
        return fail(e, KILN_ERR_INVALID, "%s: header length %llu is too short for a JSON object",
                    name, (unsigned long long)hlen);
    return 0;
}

int stc_too_short(const char *name, uint64_t size, stc_err *e) {
    return fail(e, KILN_ERR_INVALID, "%s: too short for a safetensors file (%llu bytes)", name,
                (unsigned long long)size);
}

typedef struct chk {
    const char *fn;
    uint64_t data_len;
    stc_header *h;
    const stc_alloc *a;
    stc_err *e;
} chk;

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The first repeated string of v[0..n) (sorted in place), or NULL. */
static const char *first_dup(const char **v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    for (int i = 1; i < n; i++)
        if (strcmp(v[i - 1], v[i]) == 0) return v[i];
    return NULL;
}

static int check_metadata(chk *c, const stc_json *m) {
    char nb[STC_NAME_BUF];
    if (m->type != J_OBJECT)
        return fail(c->e, KILN_ERR_INVALID, "%s: __metadata__ is not a JSON object", c->fn);
    stc_header *h = c->h;
    h->meta = amalloc(c->a, (size_t)(m->n ? m->n : 1) * sizeof *h->meta);
    const char **keys = amalloc(c->a, (size_t)(m->n ? m->n : 1) * sizeof *keys);
    if (!h->meta || !keys) {
        afree(c->a, keys);
        return oom(c->e);
    }
    for (const stc_json *kv = m->child; kv; kv = kv->next) {
        if (kv->type != J_STRING) {
            afree(c->a, keys);
            return fail(c->e, KILN_ERR_INVALID, "%s: __metadata__ value of '%s' is not a string",
                        c->fn, stc_clean_name(kv->key, nb));
        }
        keys[h->n_meta] = kv->key;
        h->meta[h->n_meta++] = (stc_meta){kv->key, kv->str};
    }
    const char *dup = first_dup(keys, h->n_meta);
    int st = dup ? fail(c->e, KILN_ERR_INVALID, "%s: duplicate __metadata__ key '%s'", c->fn,
                        stc_clean_name(dup, nb))
                 : 0;
    afree(c->a, keys);
    return st;
}

#define BAD_SHAPE "\"shape\" must be a list of non-negative integers"

/* One entry: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}. */
static int check_entry(chk *c, const stc_json *j, stc_tensor *t) {
    char nb[STC_NAME_BUF], sb[160];
    const char *fn = c->fn, *nm = stc_clean_name(j->key, nb);
    stc_err *e = c->e;
    if (!j->key[0]) return fail(e, KILN_ERR_INVALID, "%s: a tensor has an empty name", fn);
    if (j->type != J_OBJECT)
        return fail(e, KILN_ERR_INVALID, "%s: tensor '%s': the entry is not a JSON object", fn, nm);
    const stc_json *dt = stc_json_get(j, "dtype"), *shape = stc_json_get(j, "shape");
    const stc_json *offs = stc_json_get(j, "data_offsets");
    /* A field given twice is ambiguous: readers differ on which one wins. */
    for (const stc_json *f = j->child; f; f = f->next)
        if ((dt && f != dt && strcmp(f->key, "dtype") == 0) ||
            (shape && f != shape && strcmp(f->key, "shape") == 0) ||
            (offs && f != offs && strcmp(f->key, "data_offsets") == 0))
            return fail(e, KILN_ERR_INVALID, "%s: tensor '%s': duplicate field \"%s\"", fn, nm,
                        f->key);
    if (!dt || dt->type != J_STRING)
        return fail(e, KILN_ERR_INVALID, "%s: tensor '%s': no \"dtype\" string", fn, nm);
    t->dtype = stc_dtype_lookup(dt->str);
    if (t->dtype < 0) {
        char db[STC_NAME_BUF];
        return fail(e, KILN_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", fn, nm,
                    stc_clean_name(dt->str, db));
    }
    if (!shape || shape->type != J_ARRAY)
        return fail(e, KILN_ERR_INVALID, "%s: tensor '%s': " BAD_SHAPE, fn, nm);
    if (shape->n > STC_MAX_RANK)
        return fail(e, KILN_ERR_LIMIT, "%s: tensor '%s': rank %d exceeds the limit of %d", fn, nm,
                    shape->n, STC_MAX_RANK);
    t->rank = shape->n;
    int k = 0;
    for (const stc_json *v = shape->child; v; v = v->next) {
        uint64_t x;
        if (!stc_json_uint(v, &x))
            return fail(e, KILN_ERR_INVALID, "%s: tensor '%s': " BAD_SHAPE, fn, nm);
        t->dims[k++] = (int64_t)x;
    }
    size_t nbytes;
    if (!stc_shape_bytes(t->rank, t->dims, stc_dtype_size(t->dtype), &nbytes))
        return fail(e, KILN_ERR_LIMIT, "%s: tensor '%s': shape %s is too large", fn, nm,
                    stc_shape_str(t->rank, t->dims, sb, sizeof sb));
    uint64_t b, en;
    if (!offs || offs->type != J_ARRAY || offs->n != 2 || !stc_json_uint(offs->child, &b) ||
        !stc_json_uint(offs->child->next, &en) || b > en)
        return fail(e, KILN_ERR_INVALID,
                    "%s: tensor '%s': \"data_offsets\" must be [begin, end] with 0 <= begin <= end",
                    fn, nm);
    if (en > c->data_len)
        return fail(e, KILN_ERR_INVALID,
                    "%s: tensor '%s': data_offsets [%llu,%llu] go beyond the data (%llu bytes)", fn,
                    nm, (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)c->data_len);
    if (en - b != nbytes)
        return fail(e, KILN_ERR_INVALID,
                    "%s: tensor '%s': data_offsets [%llu,%llu] hold %llu bytes, but %s %s needs %zu",
                    fn, nm, (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)(en - b), stc_dtype_name(t->dtype),
                    stc_shape_str(t->rank, t->dims, sb, sizeof sb), nbytes);
    t->name = j->key;
    t->nbytes = nbytes;
    t->begin = b;
    t->end = en;
    return 0;
}

static int cmp_span(const void *x, const void *y) {
    const stc_tensor *a = *(const stc_tensor *const *)x, *b = *(const stc_tensor *const *)y;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return 0;
}

/* Names unique; the tensors cover [0, data_len) exactly, without overlap. */
static int check_layout(chk *c) {
    stc_header *h = c->h;
    char n1[STC_NAME_BUF], n2[STC_NAME_BUF];
    size_t cnt = (size_t)(h->n ? h->n : 1);
    const char **names = amalloc(c->a, cnt * sizeof *names);
    const stc_tensor **sp = amalloc(c->a, cnt * sizeof *sp);
    int st = 0;
    if (!names || !sp) {
        st = oom(c->e);
        goto out;
    }
    for (int i = 0; i < h->n; i++) names[i] = h->t[i].name, sp[i] = &h->t[i];
    const char *dup = first_dup(names, h->n);
    if (dup) {
        st = fail(c->e, KILN_ERR_INVALID, "%s: duplicate tensor name '%s'", c->fn,
                  stc_clean_name(dup, n1));
        goto out;
    }
    qsort(sp, (size_t)h->n, sizeof *sp, cmp_span);
    uint64_t at = 0;
    for (int i = 0; i < h->n && !st; i++) {
        if (sp[i]->begin < at)
            st = fail(c->e, KILN_ERR_INVALID,
                      "%s: tensors '%s' [%llu,%llu] and '%s' [%llu,%llu] overlap", c->fn,
                      stc_clean_name(sp[i - 1]->name, n1), (unsigned long long)sp[i - 1]->begin,
                      (unsigned long long)sp[i - 1]->end, stc_clean_name(sp[i]->name, n2),
                      (unsigned long long)sp[i]->begin, (unsigned long long)sp[i]->end);
        else if (sp[i]->begin > at)
            st = fail(c->e, KILN_ERR_INVALID, "%s: bytes [%llu,%llu) of the data belong to no tensor",
                      c->fn, (unsigned long long)at, (unsigned long long)sp[i]->begin);
        at = sp[i]->end;
    }
    if (!st && at != c->data_len)
        st = fail(c->e, KILN_ERR_INVALID, "%s: bytes [%llu,%llu) of the data belong to no tensor",
                  c->fn, (unsigned long long)at, (unsigned long long)c->data_len);
out:
    afree(c->a, names);
    afree(c->a, sp);
    return st;
}

void stc_header_free(stc_header *h, const stc_alloc *a) {
    afree(a, h->t);
    afree(a, h->meta);
    stc_json_free(h->root, a);
    memset(h, 0, sizeof *h);
}

static int check_root(chk *c, const char *hdr, size_t n, size_t end) {
    stc_header *h = c->h;
    for (size_t p = end; p < n; p++)
        if (hdr[p] != ' ' && hdr[p] != '\t' && hdr[p] != '\n' && hdr[p] != '\r')
            return fail(c->e, KILN_ERR_INVALID,
                        "%s: the header has more after its JSON value (byte %zu)", c->fn, p);
    if (h->root->type != J_OBJECT)
        return fail(c->e, KILN_ERR_INVALID, "%s: the header is not a JSON object", c->fn);
    h->t = amalloc(c->a, (size_t)(h->root->n ? h->root->n : 1) * sizeof *h->t);
    if (!h->t) return oom(c->e);
    memset(h->t, 0, (size_t)(h->root->n ? h->root->n : 1) * sizeof *h->t);
    bool have_meta = false;
    for (const stc_json *j = h->root->child; j; j = j->next) {
        int st;
        if (strcmp(j->key, "__metadata__") == 0) {
            if (have_meta)
                return fail(c->e, KILN_ERR_INVALID, "%s: __metadata__ appears twice", c->fn);
            have_meta = true;
            if ((st = check_metadata(c, j))) return st;
            continue;
        }
        if ((st = check_entry(c, j, &h->t[h->n]))) return st;
        h->n++;
    }
    return check_layout(c);
}

int stc_parse_header(const char *name, const char *hdr, size_t n, uint64_t data_len,
                     const stc_alloc *a, stc_header *h, stc_err *e) {
    memset(h, 0, sizeof *h);
    e->status = 0;
    e->msg[0] = 0;
    size_t end = 0, err_at;
    bool is_oom;
    h->root = stc_json_parse(hdr, n, a, &end, &err_at, &is_oom);
    if (!h->root) {
        if (is_oom) return oom(e);
        return fail(e, KILN_ERR_INVALID, "%s: the header is not valid JSON (error near byte %zu)",
                    name, err_at);
    }
    chk c = {name, data_len, h, a, e};
    int st = check_root(&c, hdr, n, end);
    if (st) stc_header_free(h, a);
    return st;
}

/* ------------------------------------------------------------ the files */

void stc_file_free(stc_file *f, const stc_alloc *a) {
    stc_header_free(&f->h, a);
    afree(a, f->data);
    memset(f, 0, sizeof *f);
}

int stc_parse(const void *buf, size_t len, const char *name, const stc_alloc *a, stc_file *f,
              stc_err *e) {
    memset(f, 0, sizeof *f);
    const unsigned char *b = buf;
    if (len < 8) return stc_too_short(name, len, e);
    uint64_t hlen = stc_le64(b);
    int st = stc_check_sizes(name, len, hlen, e);
    if (st) return st;
    f->data_len = len - 8 - hlen;
    if ((st = stc_parse_header(name, (const char *)b + 8, (size_t)hlen, f->data_len, a, &f->h, e)))
        return st;
    f->data = amalloc(a, (size_t)(f->data_len ? f->data_len : 1));
    if (!f->data) {
        stc_file_free(f, a);
        return oom(e);
    }
    memcpy(f->data, b + 8 + hlen, (size_t)f->data_len);
    return 0;
}

/* pread until n bytes or the end; returns the count, or -1 (errno set). */
static ssize_t read_at(int fd, void *buf, size_t n, off_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Reads n bytes at off: 0, or the error (a read error, or a file that shrank). */
static int read_exact(int fd, void *buf, size_t n, off_t off, const char *path, stc_err *e) {
    ssize_t r = read_at(fd, buf, n, off);
    if (r < 0) return fail(e, KILN_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if ((size_t)r != n) return fail(e, KILN_ERR_IO, "%s: the file shrank while it was read", path);
    return 0;
}

/* The file's size, refusing what is not a regular file. */
static int file_size(int fd, const char *path, uint64_t *size, stc_err *e) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return fail(e, KILN_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return fail(e, KILN_ERR_IO, "%s: %s", path,
                    S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    *size = (uint64_t)sb.st_size;
    return 0;
}

int stc_load(const char *path, const stc_alloc *a, stc_file *f, stc_err *e) {
    memset(f, 0, sizeof *f);
    e->status = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(e, KILN_ERR_IO, "%s: %s", path, strerror(errno));
    char *hdr = NULL;
    unsigned char lenb[8];
    uint64_t size = 0, hlen = 0;
    int st = file_size(fd, path, &size, e);
    if (!st && size < 8) st = stc_too_short(path, size, e);
    if (!st) st = read_exact(fd, lenb, 8, 0, path, e);
    if (!st) st = stc_check_sizes(path, size, hlen = stc_le64(lenb), e);
    if (!st && !(hdr = amalloc(a, (size_t)hlen))) st = oom(e);
    if (!st) st = read_exact(fd, hdr, (size_t)hlen, 8, path, e);
    if (!st) {
        f->data_len = size - 8 - hlen;
        st = stc_parse_header(path, hdr, (size_t)hlen, f->data_len, a, &f->h, e);
    }
    if (!st && !(f->data = amalloc(a, (size_t)(f->data_len ? f->data_len : 1)))) st = oom(e);
    if (!st) st = read_exact(fd, f->data, (size_t)f->data_len, (off_t)(8 + hlen), path, e);
    close(fd);
    afree(a, hdr);
    if (st) stc_file_free(f, a);
    return st;
}

/* ---------------------------------------------------------------- saving */

typedef struct buf {
    char *p;
    size_t len, cap;
    const stc_alloc *a;
    bool oom;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = amalloc(b->a, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        if (b->len) memcpy(q, b->p, b->len);
        afree(b->a, b->p);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_json_string(buf *b, const char *s) {
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, (const char *)s, 1);
        }
    }
    put(b, "\"", 1);
}

/* The header, padded with spaces so that the data starts 8-aligned; the
 * tensors in the order o[]. */
static char *build_header(const stc_tensor *const *o, int n, const stc_meta *meta, int n_meta,
                          const stc_alloc *a, size_t *len) {
    buf b = {NULL, 0, 0, a, false};
    char tmp[64];
    put(&b, "{", 1);
    if (n_meta) {
        puts_(&b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) put(&b, ",", 1);
            put_json_string(&b, meta[i].key);
            put(&b, ":", 1);
            put_json_string(&b, meta[i].value);
        }
        put(&b, "}", 1);
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const stc_tensor *t = o[i];
        if (i || n_meta) put(&b, ",", 1);
        put_json_string(&b, t->name);
        puts_(&b, ":{\"dtype\":\"");
        puts_(&b, stc_dtype_name(t->dtype));
        puts_(&b, "\",\"shape\":[");
        for (int k = 0; k < t->rank; k++) {
            snprintf(tmp, sizeof tmp, "%s%lld", k ? "," : "", (long long)t->dims[k]);
            puts_(&b, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                 (unsigned long long)(at + t->nbytes));
        puts_(&b, tmp);
        at += t->nbytes;
    }
    put(&b, "}", 1);
    while (!b.oom && (b.len + 8) % 8) put(&b, " ", 1);
    if (b.oom) {
        afree(a, b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

static bool write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

static unsigned g_tmp_counter;

/* Creates dir/.base.tmp-PID-N exclusively into tmp (cap bytes); the fd or -1. */
static int create_temp(const char *path, char *tmp, size_t cap, stc_err *e) {
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) : 0;
    const char *base = slash ? slash + 1 : path;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned k = __atomic_fetch_add(&g_tmp_counter, 1, __ATOMIC_RELAXED);
        int w = slash ? snprintf(tmp, cap, "%.*s/.%s.tmp-%ld-%u", dirlen, path, base,
                                 (long)getpid(), k)
                      : snprintf(tmp, cap, ".%s.tmp-%ld-%u", base, (long)getpid(), k);
        if (w < 0 || (size_t)w >= cap) {
            fail(e, KILN_ERR_IO, "%s: cannot create a temporary file: %s", path,
                 strerror(ENAMETOOLONG));
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) return fd;
        if (errno != EEXIST) {
            fail(e, KILN_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
            return -1;
        }
    }
    fail(e, KILN_ERR_IO, "%s: cannot create a temporary file", path);
    return -1;
}

/* fsync of the directory makes the rename itself durable. */
static int sync_dir(const char *path, stc_err *e) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        strcpy(dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int st = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP))
        st = fail(e, KILN_ERR_IO, "%s: cannot sync the directory %s: %s", path, dir,
                  strerror(errno));
    if (fd >= 0) close(fd);
    return st;
}

/* Widest elements first keeps every tensor aligned; ties keep their order. */
static void order_widest(const stc_tensor **o, const stc_tensor *t, int n) {
    int k = 0;
    for (size_t w = 8; w >= 1; w /= 2)
        for (int i = 0; i < n; i++)
            if (stc_dtype_size(t[i].dtype) == w) o[k++] = &t[i];
}

/* Writes the length, the header and the data to fd; the failing call or NULL. */
static const char *write_body(int fd, const char *hdr, size_t hlen, const stc_tensor **o, int n,
                              stc_hook hook, void *ctx) {
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (!write_all(fd, lenb, 8) || !write_all(fd, hdr, hlen)) return "write";
    uint64_t written = 8 + hlen;
    if (hook) hook("write", written, ctx);
    enum { CHUNK = 1 << 20 };
    for (int i = 0; i < n; i++) {
        const char *p = o[i]->data;
        for (size_t off = 0; off < o[i]->nbytes; off += CHUNK) {
            size_t k = o[i]->nbytes - off < CHUNK ? o[i]->nbytes - off : CHUNK;
            if (!write_all(fd, p + off, k)) return "write";
            written += k;
            if (hook) hook("write", written, ctx);
        }
    }
    if (fsync(fd) != 0) return "fsync";
    if (hook) hook("fsync", written, ctx);
    return NULL;
}

int stc_save(const char *path, const stc_tensor *t, int n, const stc_meta *meta, int n_meta,
             const stc_alloc *a, stc_hook hook, void *hook_ctx, stc_err *e) {
    e->status = 0;
    e->msg[0] = 0;
    const stc_tensor **o = amalloc(a, (size_t)(n ? n : 1) * sizeof *o);
    if (!o) return oom(e);
    order_widest(o, t, n);
    size_t hlen = 0;
    char *hdr = build_header(o, n, meta, n_meta, a, &hlen);
    size_t cap = strlen(path) + 64;
    char *tmp = amalloc(a, cap);
    int fd = hdr && tmp ? create_temp(path, tmp, cap, e) : -1;
    if (!hdr || !tmp || fd < 0) {
        int st = !hdr || !tmp ? oom(e) : e->status;
        afree(a, o);
        afree(a, hdr);
        afree(a, tmp);
        return st;
    }
    if (hook) hook("open", 0, hook_ctx);
    errno = 0;
    const char *what = write_body(fd, hdr, hlen, o, n, hook, hook_ctx);
    int err = errno;
    if (close(fd) != 0 && !what) what = "close", err = errno;
    if (!what && rename(tmp, path) != 0) what = "rename", err = errno;
    int st = 0;
    if (what) {
        st = fail(e, KILN_ERR_IO, "%s: %s failed: %s; the previous file is kept", path, what,
                  strerror(err ? err : EIO));
        unlink(tmp);
    } else {
        uint64_t total = 8 + hlen;
        for (int i = 0; i < n; i++) total += t[i].nbytes;
        if (hook) hook("rename", total, hook_ctx);
        st = sync_dir(path, e);
        if (!st && hook) hook("done", total, hook_ctx);
    }
    afree(a, o);
    afree(a, hdr);
    afree(a, tmp);
    return st;
}

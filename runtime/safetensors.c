/*
 * safetensors.c — the safetensors format: checked loading, atomic saving.
 *
 * Loading reads the 8-byte length, checks it against the file size, parses
 * the header with cJSON and checks every entry (dtype known, shape sane,
 * byte count = product of dims x element size without overflow, offsets in
 * range, the tensors covering the data exactly with no overlap and no hole,
 * names unique) before the data is even read.
 */
#include "runtime/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ JSON */

/* cJSON reports an allocation failure as a parse error; this tells them apart. */
static _Thread_local bool g_json_oom;

static void *json_malloc(size_t n) {
    void *p = ir_malloc(n);
    if (!p) g_json_oom = true;
    return p;
}

static void json_install(void) {
    cJSON_Hooks h = {json_malloc, ir_free};
    cJSON_InitHooks(&h);
}

void rt_json_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, json_install);
}

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    size_t size;
} k_dtypes[RT_ST_DTYPE_COUNT] = {
    [RT_ST_BOOL] = {"BOOL", 1},       [RT_ST_U8] = {"U8", 1},     [RT_ST_I8] = {"I8", 1},
    [RT_ST_F8_E5M2] = {"F8_E5M2", 1}, [RT_ST_F8_E4M3] = {"F8_E4M3", 1},
    [RT_ST_I16] = {"I16", 2},         [RT_ST_U16] = {"U16", 2},   [RT_ST_F16] = {"F16", 2},
    [RT_ST_BF16] = {"BF16", 2},       [RT_ST_I32] = {"I32", 4},   [RT_ST_U32] = {"U32", 4},
    [RT_ST_F32] = {"F32", 4},         [RT_ST_F64] = {"F64", 8},   [RT_ST_I64] = {"I64", 8},
    [RT_ST_U64] = {"U64", 8},         [RT_ST_C64] = {"C64", 8},
};

const char *rt_st_dtype_name(rt_st_dtype dt) {
    return (unsigned)dt < RT_ST_DTYPE_COUNT ? k_dtypes[dt].name : "?";
}

size_t rt_st_dtype_size(rt_st_dtype dt) {
    return (unsigned)dt < RT_ST_DTYPE_COUNT ? k_dtypes[dt].size : 0;
}

int rt_st_dtype_lookup(const char *name) {
    for (int i = 0; i < RT_ST_DTYPE_COUNT; i++)
        if (strcmp(k_dtypes[i].name, name) == 0) return i;
    return -1;
}

const char *rt_st_shape_str(int rank, const int64_t *dims, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

const char *rt_st_clean_name(const char *s, char *buf) {
    enum { MAX = RT_ST_NAME_BUF - 4 };
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

/* A shape's byte count; false on overflow. */
static bool shape_bytes(int rank, const int64_t *dims, size_t esize, size_t *out) {
    size_t n = esize;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0 || !ir_mul_size(n, (size_t)dims[i], &n)) return false;
    }
    *out = n;
    return true;
}

/* ------------------------------------------------------------- the file */

struct rt_st_file {
    char *name;
    ir_arena arena; /* names and metadata strings */
    rt_st_tensor *t;
    int n;
    const rt_st_tensor **by_name; /* sorted by name, for rt_st_find */
    rt_st_meta *meta;
    int n_meta;
    uint8_t *data;
    uint64_t data_len;
};

void rt_st_free(rt_st_file *f) {
    if (!f) return;
    ir_free(f->name);
    ir_arena_free(&f->arena);
    ir_free(f->t);
    ir_free(f->by_name);
    ir_free(f->meta);
    ir_free(f->data);
    ir_free(f);
}

const char *rt_st_file_name(const rt_st_file *f) { return f->name; }
int rt_st_count(const rt_st_file *f) { return f->n; }
const rt_st_tensor *rt_st_at(const rt_st_file *f, int i) {
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}
int rt_st_meta_count(const rt_st_file *f) { return f->n_meta; }
const rt_st_meta *rt_st_meta_at(const rt_st_file *f, int i) {
    return i >= 0 && i < f->n_meta ? &f->meta[i] : NULL;
}

const char *rt_st_meta_get(const rt_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

const rt_st_tensor *rt_st_find(const rt_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* --------------------------------------------------------------- loading */

typedef struct span {
    uint64_t begin, end;
    const char *name;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const rt_st_tensor *const *)a)->name, (*(const rt_st_tensor *const *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp(((const rt_st_meta *)a)->key, ((const rt_st_meta *)b)->key);
}

/* A JSON number that is an exact non-negative integer (below 2^53). */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double x = v->valuedouble;
    if (!(x >= 0 && x <= 9007199254740992.0) || x != floor(x)) return false;
    *out = (uint64_t)x;
    return true;
}

typedef struct loader {
    rt_st_file *f;
    const char *fname;
    kiln_diag *d;
} loader;

#define LERR(L, st, ...) ir_error((L)->d, st, ir_loc_none(), __VA_ARGS__)

static kiln_status load_metadata(loader *L, const cJSON *m) {
    char nb[RT_ST_NAME_BUF];
    if (!cJSON_IsObject(m))
        return LERR(L, KILN_ERR_INVALID, "%s: __metadata__ is not a JSON object", L->fname);
    int n = cJSON_GetArraySize(m);
    L->f->meta = ir_calloc((size_t)(n ? n : 1), sizeof *L->f->meta);
    if (!L->f->meta) return ir_oom(L->d);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, m) {
        if (!cJSON_IsString(kv))
            return LERR(L, KILN_ERR_INVALID, "%s: __metadata__ value of '%s' is not a string",
                        L->fname, rt_st_clean_name(kv->string, nb));
        rt_st_meta *e = &L->f->meta[L->f->n_meta++];
        e->key = ir_arena_strdup(&L->f->arena, kv->string);
        e->value = ir_arena_strdup(&L->f->arena, kv->valuestring);
        if (!e->key || !e->value) return ir_oom(L->d);
    }
    rt_st_meta *sorted = ir_malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!sorted) return ir_oom(L->d);
    memcpy(sorted, L->f->meta, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_meta_key);
    for (int i = 1; i < n; i++)
        if (strcmp(sorted[i - 1].key, sorted[i].key) == 0) {
            kiln_status st = LERR(L, KILN_ERR_INVALID, "%s: duplicate __metadata__ key '%s'",
                                  L->fname, rt_st_clean_name(sorted[i].key, nb));
            ir_free(sorted);
            return st;
        }
    ir_free(sorted);
    return KILN_OK;
}

/* One entry: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}. */
static kiln_status load_entry(loader *L, const cJSON *e, rt_st_tensor *t, span *sp) {
    char nb[RT_ST_NAME_BUF], sb[IR_TYPE_STR_MAX];
    const char *fn = L->fname, *nm = rt_st_clean_name(e->string, nb);
    if (!e->string[0]) return LERR(L, KILN_ERR_INVALID, "%s: a tensor has an empty name", fn);
    if (!cJSON_IsObject(e))
        return LERR(L, KILN_ERR_INVALID, "%s: tensor '%s': the entry is not a JSON object", fn, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return LERR(L, KILN_ERR_INVALID, "%s: tensor '%s': no \"dtype\" string", fn, nm);
    int dtype = rt_st_dtype_lookup(dt->valuestring);
    if (dtype < 0) {
        char db[RT_ST_NAME_BUF];
        return LERR(L, KILN_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", fn, nm,
                    rt_st_clean_name(dt->valuestring, db));
    }
    t->dtype = (rt_st_dtype)dtype;
    if (!cJSON_IsArray(shape))
        return LERR(L, KILN_ERR_INVALID,
                    "%s: tensor '%s': \"shape\" must be a list of non-negative integers", fn, nm);
    int rank = cJSON_GetArraySize(shape);
    if (rank > RT_ST_MAX_RANK)
        return LERR(L, KILN_ERR_LIMIT, "%s: tensor '%s': rank %d exceeds the limit of %d", fn, nm,
                    rank, RT_ST_MAX_RANK);
    t->rank = rank;
    const cJSON *v;
    int k = 0;
    cJSON_ArrayForEach(v, shape) {
        uint64_t x;
        if (!json_uint(v, &x))
            return LERR(L, KILN_ERR_INVALID,
                        "%s: tensor '%s': \"shape\" must be a list of non-negative integers", fn,
                        nm);
        t->dims[k++] = (int64_t)x;
    }
    size_t nbytes;
    if (!shape_bytes(rank, t->dims, rt_st_dtype_size(t->dtype), &nbytes))
        return LERR(L, KILN_ERR_LIMIT, "%s: tensor '%s': shape %s is too large", fn, nm,
                    rt_st_shape_str(rank, t->dims, sb, sizeof sb));
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
        !json_uint(offs->child->next, &en) || b > en)
        return LERR(L, KILN_ERR_INVALID,
                    "%s: tensor '%s': \"data_offsets\" must be [begin, end] with 0 <= begin <= end",
                    fn, nm);
    if (en > L->f->data_len)
        return LERR(L, KILN_ERR_INVALID,
                    "%s: tensor '%s': data_offsets [%llu,%llu] go beyond the data (%llu bytes)",
                    fn, nm, (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)L->f->data_len);
    if (en - b != nbytes)
        return LERR(L, KILN_ERR_INVALID,
                    "%s: tensor '%s': data_offsets [%llu,%llu] hold %llu bytes, but %s %s needs "
                    "%zu",
                    fn, nm, (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)(en - b), rt_st_dtype_name(t->dtype),
                    rt_st_shape_str(rank, t->dims, sb, sizeof sb), nbytes);
    t->name = ir_arena_strdup(&L->f->arena, e->string);
    if (!t->name) return ir_oom(L->d);
    t->nbytes = nbytes;
    t->data = (const void *)(uintptr_t)b; /* an offset until the data is read */
    sp->begin = b;
    sp->end = en;
    sp->name = t->name;
    return KILN_OK;
}

/* Names unique; the spans cover [0, data_len) exactly, without overlap. */
static kiln_status check_layout(loader *L, span *sp) {
    rt_st_file *f = L->f;
    char n1[RT_ST_NAME_BUF], n2[RT_ST_NAME_BUF];
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->t[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_tensor_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return LERR(L, KILN_ERR_INVALID, "%s: duplicate tensor name '%s'", L->fname,
                        rt_st_clean_name(f->by_name[i]->name, n1));
    qsort(sp, (size_t)f->n, sizeof *sp, cmp_span);
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (sp[i].begin < at)
            return LERR(L, KILN_ERR_INVALID,
                        "%s: tensors '%s' [%llu,%llu] and '%s' [%llu,%llu] overlap", L->fname,
                        rt_st_clean_name(sp[i - 1].name, n1), (unsigned long long)sp[i - 1].begin,
                        (unsigned long long)sp[i - 1].end, rt_st_clean_name(sp[i].name, n2),
                        (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end);
        if (sp[i].begin > at)
            return LERR(L, KILN_ERR_INVALID,
                        "%s: bytes [%llu,%llu) of the data belong to no tensor", L->fname,
                        (unsigned long long)at, (unsigned long long)sp[i].begin);
        at = sp[i].end;
    }
    if (at != f->data_len)
        return LERR(L, KILN_ERR_INVALID, "%s: bytes [%llu,%llu) of the data belong to no tensor",
                    L->fname, (unsigned long long)at, (unsigned long long)f->data_len);
    return KILN_OK;
}

static kiln_status parse_header(loader *L, const char *hdr, size_t n) {
    rt_json_init();
    g_json_oom = false;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    if (!root) {
        if (g_json_oom) return ir_oom(L->d);
        size_t at = end && end >= hdr && end <= hdr + n ? (size_t)(end - hdr) : 0;
        return LERR(L, KILN_ERR_INVALID, "%s: the header is not valid JSON (error near byte %zu)",
                    L->fname, at);
    }
    kiln_status st = KILN_OK;
    span *sp = NULL;
    for (const char *p = end; p < hdr + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = LERR(L, KILN_ERR_INVALID,
                      "%s: the header has more after its JSON value (byte %zu)", L->fname,
                      (size_t)(p - hdr));
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        st = LERR(L, KILN_ERR_INVALID, "%s: the header is not a JSON object", L->fname);
        goto out;
    }
    int count = cJSON_GetArraySize(root);
    rt_st_file *f = L->f;
    f->t = ir_calloc((size_t)(count ? count : 1), sizeof *f->t);
    f->by_name = ir_calloc((size_t)(count ? count : 1), sizeof *f->by_name);
    sp = ir_calloc((size_t)(count ? count : 1), sizeof *sp);
    if (!f->t || !f->by_name || !sp) {
        st = ir_oom(L->d);
        goto out;
    }
    bool have_meta = false;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (have_meta) {
                st = LERR(L, KILN_ERR_INVALID, "%s: __metadata__ appears twice", L->fname);
                goto out;
            }
            have_meta = true;
            if ((st = load_metadata(L, e))) goto out;
            continue;
        }
        if ((st = load_entry(L, e, &f->t[f->n], &sp[f->n]))) goto out;
        f->n++;
    }
    st = check_layout(L, sp);
out:
    ir_free(sp);
    cJSON_Delete(root);
    return st;
}

/* Points each tensor's data into the buffer (its offset until now). */
static void attach_data(rt_st_file *f) {
    for (int i = 0; i < f->n; i++) f->t[i].data = f->data + (uintptr_t)f->t[i].data;
}

static kiln_status new_file(const char *name, rt_st_file **out, kiln_diag *d) {
    rt_st_file *f = ir_calloc(1, sizeof *f);
    if (!f) return ir_oom(d);
    ir_arena_init(&f->arena);
    f->name = ir_strdup(name);
    if (!f->name) {
        ir_free(f);
        return ir_oom(d);
    }
    *out = f;
    return KILN_OK;
}

static uint64_t le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* The checks on the header length, the same for a file and a buffer. */
static kiln_status check_sizes(const char *name, uint64_t size, uint64_t hlen, kiln_diag *d) {
    if (hlen > size - 8)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: header length %llu exceeds the file size (%llu bytes)", name,
                        (unsigned long long)hlen, (unsigned long long)size);
    if (hlen > RT_ST_MAX_HEADER)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "%s: header length %llu exceeds the limit of %llu bytes", name,
                        (unsigned long long)hlen, (unsigned long long)RT_ST_MAX_HEADER);
    if (hlen < 2)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: header length %llu is too short for a JSON object", name,
                        (unsigned long long)hlen);
    return KILN_OK;
}

static kiln_status too_short(const char *name, uint64_t size, kiln_diag *d) {
    return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                    "%s: too short for a safetensors file (%llu bytes)", name,
                    (unsigned long long)size);
}

kiln_status rt_st_parse(const void *buf, size_t len, const char *name, rt_st_file **out,
                        kiln_diag *d) {
    *out = NULL;
    const uint8_t *b = buf;
    if (len < 8) return too_short(name, len, d);
    uint64_t hlen = le64(b);
    kiln_status st = check_sizes(name, len, hlen, d);
    if (st) return st;
    rt_st_file *f;
    if ((st = new_file(name, &f, d))) return st;
    f->data_len = len - 8 - hlen;
    loader L = {f, name, d};
    st = parse_header(&L, (const char *)b + 8, (size_t)hlen);
    if (!st) {
        f->data = ir_malloc((size_t)f->data_len);
        if (!f->data) st = ir_oom(d);
    }
    if (st) {
        rt_st_free(f);
        return st;
    }
    memcpy(f->data, b + 8 + hlen, (size_t)f->data_len);
    attach_data(f);
    *out = f;
    return KILN_OK;
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

kiln_status rt_st_load(const char *path, rt_st_file **out, kiln_diag *d) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    kiln_status st = KILN_OK;
    rt_st_file *f = NULL;
    char *hdr = NULL;
    struct stat sb;
    uint8_t lenb[8];
    if (fstat(fd, &sb) != 0) {
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
        goto out;
    }
    if (S_ISDIR(sb.st_mode) || !S_ISREG(sb.st_mode)) {
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path,
                      S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = too_short(path, size, d);
        goto out;
    }
    if (read_at(fd, lenb, 8, 0) != 8) goto io;
    uint64_t hlen = le64(lenb);
    if ((st = check_sizes(path, size, hlen, d))) goto out;
    hdr = ir_malloc((size_t)hlen);
    if (!hdr) {
        st = ir_oom(d);
        goto out;
    }
    ssize_t r = read_at(fd, hdr, (size_t)hlen, 8);
    if (r < 0) goto io;
    if ((uint64_t)r != hlen) goto shrank;
    if ((st = new_file(path, &f, d))) goto out;
    f->data_len = size - 8 - hlen;
    loader L = {f, path, d};
    if ((st = parse_header(&L, hdr, (size_t)hlen))) goto out;
    f->data = ir_malloc((size_t)f->data_len);
    if (!f->data) {
        st = ir_oom(d);
        goto out;
    }
    r = read_at(fd, f->data, (size_t)f->data_len, (off_t)(8 + hlen));
    if (r < 0) goto io;
    if ((uint64_t)r != f->data_len) goto shrank;
    attach_data(f);
    goto out;
io:
    st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: read error: %s", path, strerror(errno));
    goto out;
shrank:
    st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: the file shrank while it was read", path);
out:
    close(fd);
    ir_free(hdr);
    if (st) {
        rt_st_free(f);
        return st;
    }
    *out = f;
    return KILN_OK;
}

/* ---------------------------------------------------------------- saving */

static rt_st_save_hook g_hook;
static void *g_hook_ctx;

void rt_st_set_save_hook(rt_st_save_hook fn, void *ctx) {
    g_hook = fn;
    g_hook_ctx = ctx;
}

static void hook(const char *stage, uint64_t bytes) {
    if (g_hook) g_hook(stage, bytes, g_hook_ctx);
}

typedef struct order {
    const rt_st_tensor *t;
    int index;
} order;

/* Widest elements first keeps every tensor aligned; ties keep their order. */
static int cmp_order(const void *a, const void *b) {
    const order *x = a, *y = b;
    size_t sx = rt_st_dtype_size(x->t->dtype), sy = rt_st_dtype_size(y->t->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return x->index - y->index;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static kiln_status check_save_args(const char *path, const rt_st_tensor *t, int n,
                                   const rt_st_meta *meta, int n_meta, kiln_diag *d) {
    char nb[RT_ST_NAME_BUF], sb[IR_TYPE_STR_MAX];
    if (!path || n < 0 || n_meta < 0 || (n && !t) || (n_meta && !meta))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_st_save: bad argument");
    for (int i = 0; i < n; i++) {
        const rt_st_tensor *x = &t[i];
        if (!x->name || !x->name[0] || strcmp(x->name, "__metadata__") == 0)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: tensor %d has no usable name", path, i);
        const char *nm = rt_st_clean_name(x->name, nb);
        if ((unsigned)x->dtype >= RT_ST_DTYPE_COUNT || x->rank < 0 || x->rank > RT_ST_MAX_RANK)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: tensor '%s' has a bad dtype or rank", path, nm);
        size_t need;
        if (!shape_bytes(x->rank, x->dims, rt_st_dtype_size(x->dtype), &need) ||
            need != x->nbytes || (need && !x->data))
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: tensor '%s': %zu bytes do not make %s %s", path, nm, x->nbytes,
                            rt_st_dtype_name(x->dtype),
                            rt_st_shape_str(x->rank, x->dims, sb, sizeof sb));
    }
    for (int i = 0; i < n_meta; i++)
        if (!meta[i].key || !meta[i].value)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: metadata %d is NULL", path, i);
    /* Unique names and keys. */
    int most = n > n_meta ? n : n_meta;
    const char **names = ir_malloc((size_t)(most ? most : 1) * sizeof *names);
    if (!names) return ir_oom(d);
    kiln_status st = KILN_OK;
    for (int pass = 0; pass < 2 && !st; pass++) {
        int cnt = pass ? n_meta : n;
        for (int i = 0; i < cnt; i++) names[i] = pass ? meta[i].key : t[i].name;
        qsort(names, (size_t)cnt, sizeof *names, cmp_name_ptr);
        for (int i = 1; i < cnt && !st; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                st = ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: duplicate %s '%s'", path,
                              pass ? "metadata key" : "tensor name",
                              rt_st_clean_name(names[i], nb));
    }
    ir_free(names);
    return st;
}

/* The header, padded with spaces so that the data starts 8-aligned. */
static char *build_header(const order *o, int n, const rt_st_meta *meta, int n_meta,
                          size_t *len) {
    ir_sb sb;
    ir_sb_init(&sb);
    ir_sb_putc(&sb, '{');
    if (n_meta) {
        ir_sb_puts(&sb, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) ir_sb_putc(&sb, ',');
            ir_sb_json_string(&sb, meta[i].key);
            ir_sb_putc(&sb, ':');
            ir_sb_json_string(&sb, meta[i].value);
        }
        ir_sb_putc(&sb, '}');
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const rt_st_tensor *t = o[i].t;
        if (i || n_meta) ir_sb_putc(&sb, ',');
        ir_sb_json_string(&sb, t->name);
        ir_sb_printf(&sb, ":{\"dtype\":\"%s\",\"shape\":[", rt_st_dtype_name(t->dtype));
        for (int k = 0; k < t->rank; k++)
            ir_sb_printf(&sb, "%s%lld", k ? "," : "", (long long)t->dims[k]);
        ir_sb_printf(&sb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                     (unsigned long long)(at + t->nbytes));
        at += t->nbytes;
    }
    ir_sb_putc(&sb, '}');
    while (!sb.oom && (sb.len + 8) % 8) ir_sb_putc(&sb, ' ');
    *len = sb.len;
    return ir_sb_take(&sb);
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

/* Creates dir/.base.tmp-PID-N exclusively: *fd and its name *tmp. */
static kiln_status create_temp(const char *path, int *fd, char **tmp, kiln_diag *d) {
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) : 0;
    const char *base = slash ? slash + 1 : path;
    for (int attempt = 0; attempt < 100; attempt++) {
        ir_sb sb;
        ir_sb_init(&sb);
        unsigned k = __atomic_fetch_add(&g_tmp_counter, 1, __ATOMIC_RELAXED);
        if (slash) ir_sb_printf(&sb, "%.*s/", dirlen, path);
        ir_sb_printf(&sb, ".%s.tmp-%ld-%u", base, (long)getpid(), k);
        char *name = ir_sb_take(&sb);
        if (!name) return ir_oom(d);
        *fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (*fd >= 0) {
            *tmp = name;
            return KILN_OK;
        }
        int e = errno;
        ir_free(name);
        if (e != EEXIST)
            return ir_error(d, KILN_ERR_IO, ir_loc_none(),
                            "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: cannot create a temporary file", path);
}

/* The directory of path ("." for a bare name); NULL when out of memory. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? ir_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : ir_strdup(".");
}

/* fsync of the directory makes the rename itself durable. Allocates
 * nothing: after the rename, an out-of-memory error would be a lie. */
static kiln_status sync_dir(const char *path, const char *dir, kiln_diag *d) {
    kiln_status st = KILN_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP))
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: cannot sync the directory %s: %s", path,
                      dir, strerror(errno));
    if (fd >= 0) close(fd);
    return st;
}

kiln_status rt_st_save(const char *path, const rt_st_tensor *tensors, int n,
                       const rt_st_meta *meta, int n_meta, kiln_diag *d) {
    kiln_status st = check_save_args(path, tensors, n, meta, n_meta, d);
    if (st) return st;
    order *o = ir_malloc((size_t)(n ? n : 1) * sizeof *o);
    if (!o) return ir_oom(d);
    for (int i = 0; i < n; i++) o[i] = (order){&tensors[i], i};
    qsort(o, (size_t)n, sizeof *o, cmp_order);
    size_t hlen;
    char *hdr = build_header(o, n, meta, n_meta, &hlen), *dir = dir_of(path);
    if (!hdr || !dir) {
        ir_free(o);
        ir_free(hdr);
        ir_free(dir);
        return ir_oom(d);
    }
    char *tmp = NULL;
    int fd = -1;
    if ((st = create_temp(path, &fd, &tmp, d))) {
        ir_free(o);
        ir_free(hdr);
        ir_free(dir);
        return st;
    }
    hook("open", 0);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    uint64_t written = 0;
    const char *fail = NULL;
    if (!write_all(fd, lenb, 8) || !write_all(fd, hdr, hlen)) fail = "write";
    written = 8 + hlen;
    hook("write", written);
    enum { CHUNK = 1 << 20 };
    for (int i = 0; i < n && !fail; i++) {
        const char *p = o[i].t->data;
        for (size_t off = 0; off < o[i].t->nbytes && !fail; off += CHUNK) {
            size_t k = o[i].t->nbytes - off < CHUNK ? o[i].t->nbytes - off : CHUNK;
            if (!write_all(fd, p + off, k)) fail = "write";
            written += k;
            hook("write", written);
        }
    }
    if (!fail && fsync(fd) != 0) fail = "fsync";
    if (!fail) hook("fsync", written);
    int e = errno;
    if (close(fd) != 0 && !fail) {
        fail = "close";
        e = errno;
    }
    if (!fail && rename(tmp, path) != 0) {
        fail = "rename";
        e = errno;
    }
    if (fail) {
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s failed: %s; the previous file is kept",
                      path, fail, strerror(e ? e : EIO));
        unlink(tmp);
    } else {
        hook("rename", written);
        st = sync_dir(path, dir, d);
        if (!st) hook("done", written);
    }
    ir_free(dir);
    ir_free(tmp);
    ir_free(o);
    ir_free(hdr);
    return st;
}

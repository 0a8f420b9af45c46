/*
 * safetensors.c — the safetensors format: checked loading, atomic saving.
 *
 * Loading reads the 8-byte length, checks it against the file size, parses
 * the header and checks every entry (dtype known, shape sane, byte count =
 * product of dims x element size without overflow, offsets in range, the
 * tensors covering the data exactly with no overlap and no hole, names
 * unique) before the data is even read. The header reader and the atomic
 * writer are st_core.c's, the code AOT shared objects carry too.
 */
#include "runtime/safetensors.h"

#include "runtime/st_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* libkiln's allocator for st_core, so fault injection reaches the reader. */
static const stc_alloc k_alloc = {ir_malloc, ir_free};

/* An st_core error as a diagnostic. */
static kiln_status from_stc(const stc_err *e, kiln_diag *d) {
    if (e->status == KILN_ERR_NOMEM) return ir_oom(d);
    return ir_error(d, (kiln_status)e->status, ir_loc_none(), "%s", e->msg);
}

/* ---------------------------------------------------------------- dtypes */

_Static_assert((int)RT_ST_DTYPE_COUNT == (int)STC_DTYPE_COUNT, "st_core's dtypes are rt_st_dtype's");
_Static_assert(RT_ST_MAX_RANK == STC_MAX_RANK && RT_ST_NAME_BUF == STC_NAME_BUF,
               "st_core's limits are rt_st's");

const char *rt_st_dtype_name(rt_st_dtype dt) { return stc_dtype_name((int)dt); }
size_t rt_st_dtype_size(rt_st_dtype dt) { return stc_dtype_size((int)dt); }
int rt_st_dtype_lookup(const char *name) { return stc_dtype_lookup(name); }

const char *rt_st_shape_str(int rank, const int64_t *dims, char *buf, size_t n) {
    return stc_shape_str(rank, dims, buf, n);
}

const char *rt_st_clean_name(const char *s, char *buf) { return stc_clean_name(s, buf); }

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

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const rt_st_tensor *const *)a)->name, (*(const rt_st_tensor *const *)b)->name);
}

/* A file st_core read and checked as an rt_st_file: names and metadata
 * copied into f's arena, the data taken over. */
static kiln_status adopt(stc_file *sf, const char *name, rt_st_file **out, kiln_diag *d) {
    const stc_header *h = &sf->h;
    rt_st_file *f = ir_calloc(1, sizeof *f);
    if (!f) {
        stc_file_free(sf, &k_alloc);
        return ir_oom(d);
    }
    ir_arena_init(&f->arena);
    f->data = sf->data;
    f->data_len = sf->data_len;
    sf->data = NULL;
    f->name = ir_strdup(name);
    f->t = ir_calloc((size_t)(h->n ? h->n : 1), sizeof *f->t);
    f->by_name = ir_calloc((size_t)(h->n ? h->n : 1), sizeof *f->by_name);
    f->meta = ir_calloc((size_t)(h->n_meta ? h->n_meta : 1), sizeof *f->meta);
    kiln_status st = !f->name || !f->t || !f->by_name || !f->meta ? ir_oom(d) : KILN_OK;
    for (int i = 0; i < h->n && !st; i++) {
        const stc_tensor *s = &h->t[i];
        rt_st_tensor *t = &f->t[f->n++];
        t->name = ir_arena_strdup(&f->arena, s->name);
        t->dtype = (rt_st_dtype)s->dtype;
        t->rank = s->rank;
        memcpy(t->dims, s->dims, sizeof t->dims);
        t->nbytes = s->nbytes;
        t->data = f->data + s->begin;
        f->by_name[i] = t;
        if (!t->name) st = ir_oom(d);
    }
    for (int i = 0; i < h->n_meta && !st; i++) {
        rt_st_meta *m = &f->meta[f->n_meta++];
        m->key = ir_arena_strdup(&f->arena, h->meta[i].key);
        m->value = ir_arena_strdup(&f->arena, h->meta[i].value);
        if (!m->key || !m->value) st = ir_oom(d);
    }
    stc_file_free(sf, &k_alloc);
    if (st) {
        rt_st_free(f);
        return st;
    }
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_tensor_name);
    *out = f;
    return KILN_OK;
}

kiln_status rt_st_parse(const void *buf, size_t len, const char *name, rt_st_file **out,
                        kiln_diag *d) {
    *out = NULL;
    stc_file sf;
    stc_err e;
    if (stc_parse(buf, len, name, &k_alloc, &sf, &e)) return from_stc(&e, d);
    return adopt(&sf, name, out, d);
}

kiln_status rt_st_load(const char *path, rt_st_file **out, kiln_diag *d) {
    *out = NULL;
    stc_file sf;
    stc_err e;
    if (stc_load(path, &k_alloc, &sf, &e)) return from_stc(&e, d);
    return adopt(&sf, path, out, d);
}

/* ---------------------------------------------------------------- saving */

static rt_st_save_hook g_hook;
static void *g_hook_ctx;

void rt_st_set_save_hook(rt_st_save_hook fn, void *ctx) {
    g_hook = fn;
    g_hook_ctx = ctx;
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
        if (!stc_shape_bytes(x->rank, x->dims, rt_st_dtype_size(x->dtype), &need) ||
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

kiln_status rt_st_save(const char *path, const rt_st_tensor *tensors, int n,
                       const rt_st_meta *meta, int n_meta, kiln_diag *d) {
    kiln_status st = check_save_args(path, tensors, n, meta, n_meta, d);
    if (st) return st;
    _Static_assert(sizeof(rt_st_meta) == sizeof(stc_meta), "the same metadata pairs");
    stc_tensor *t = ir_calloc((size_t)(n ? n : 1), sizeof *t);
    if (!t) return ir_oom(d);
    for (int i = 0; i < n; i++) {
        t[i].name = tensors[i].name;
        t[i].dtype = (int)tensors[i].dtype;
        t[i].rank = tensors[i].rank;
        memcpy(t[i].dims, tensors[i].dims, sizeof t[i].dims);
        t[i].nbytes = tensors[i].nbytes;
        t[i].data = tensors[i].data;
    }
    stc_err e;
    if (stc_save(path, t, n, (const stc_meta *)meta, n_meta, &k_alloc, g_hook, g_hook_ctx, &e))
        st = from_stc(&e, d);
    ir_free(t);
    return st;
}

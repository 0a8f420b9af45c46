/*
 * checkpoint.c — a module's globals to and from safetensors.
 *
 * Loading is all or nothing: every tensor is matched and checked against the
 * model first, and only then is a byte copied into the globals, so a refused
 * checkpoint leaves the model as it was.
 */
#include "runtime/checkpoint.h"

#include "runtime/st_core.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BIG_ENDIAN_HOST 1
#else
#define BIG_ENDIAN_HOST 0
#endif

static rt_st_dtype st_dtype(const ir_global *g) {
    return g->type.dtype == IR_I32 ? RT_ST_I32 : RT_ST_F32;
}

static size_t global_bytes(const ir_global *g) {
    return (size_t)ir_type_numel(&g->type, 1) * ir_dtype_size((ir_dtype)g->type.dtype);
}

static bool is_state_name(const char *name) { return stc_is_state_name(name); }

uint64_t rt_ckpt_structure_hash(const kiln_module *m) {
    /* A sum of per-parameter hashes: the order in which a model file or a C
     * program declares its parameters does not change the structure. */
    uint64_t sum = 0;
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        if (g->kind != IR_GLOBAL_PARAM) continue;
        uint64_t h = ir_hash_bytes(g->name, strlen(g->name) + 1, 0);
        uint8_t b[2 + 8 * KILN_MAX_RANK];
        size_t k = 0;
        b[k++] = g->type.dtype;
        b[k++] = (uint8_t)g->type.rank;
        for (int r = 0; r < g->type.rank; r++)
            for (int j = 0; j < 8; j++) b[k++] = (uint8_t)((uint64_t)g->type.dims[r] >> (8 * j));
        sum += ir_hash_bytes(b, k, h);
    }
    uint8_t le[8]; /* the same on every host */
    for (int j = 0; j < 8; j++) le[j] = (uint8_t)(sum >> (8 * j));
    return ir_hash_bytes(le, sizeof le, 0x6b696c6e); /* "kiln" */
}

/* Index of the first NaN/Inf among n floats, or -1. */
static int64_t first_nonfinite(const float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return i;
    return -1;
}

static const char *nonfinite_name(float v) { return isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf"; }

/* ---------------------------------------------------------------- saving */

kiln_status rt_ckpt_save(const char *path, const kiln_module *m, void *const *globals,
                         const rt_ckpt_progress *progress, const rt_st_meta *extra, int n_extra,
                         unsigned flags, kiln_diag *d) {
    if (!path || !m || (m->n_globals && !globals) || n_extra < 0 || (n_extra && !extra))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_ckpt_save: bad argument");
    bool params_only = flags & RT_CKPT_PARAMS_ONLY;
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        if (params_only && g->kind != IR_GLOBAL_PARAM) continue;
        const void *p = globals[g->index];
        if (!p)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: not saved: no data for '%s'",
                            path, g->name);
        if ((flags & RT_CKPT_REFUSE_NONFINITE) && g->type.dtype == IR_F32) {
            int64_t at = first_nonfinite(p, ir_type_numel(&g->type, 1));
            if (at >= 0)
                return ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(),
                                "%s: not saved: tensor '%s' holds %s at element %lld; the "
                                "previous checkpoint is kept",
                                path, g->name, nonfinite_name(((const float *)p)[at]),
                                (long long)at);
        }
    }
    kiln_status st = KILN_OK;
    rt_st_tensor *t = ir_calloc((size_t)(m->n_globals ? m->n_globals : 1), sizeof *t);
    enum { N_OWN = 9 };
    rt_st_meta *meta = ir_calloc((size_t)(N_OWN + n_extra), sizeof *meta);
    if (!t || !meta) {
        st = ir_oom(d);
        goto out;
    }
    int n = 0;
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        if (params_only && g->kind != IR_GLOBAL_PARAM) continue;
        rt_st_tensor *x = &t[n++];
        x->name = g->name;
        x->dtype = st_dtype(g);
        x->rank = g->type.rank;
        for (int r = 0; r < g->type.rank; r++) x->dims[r] = g->type.dims[r];
        x->nbytes = global_bytes(g);
#if BIG_ENDIAN_HOST
        /* Safetensors is little-endian: save byte-swapped copies. */
        uint32_t *c = ir_malloc(x->nbytes ? x->nbytes : 1);
        if (!c) {
            st = ir_oom(d);
            goto out;
        }
        const uint32_t *s = globals[g->index];
        for (size_t k = 0; k < x->nbytes / 4; k++) c[k] = __builtin_bswap32(s[k]);
        x->data = c;
#else
        x->data = globals[g->index];
#endif
    }
    char buf[7][32];
    const rt_ckpt_progress none = {-1, -1, false, {0, false}};
    if (!progress) progress = &none;
    snprintf(buf[0], sizeof buf[0], "%d", RT_CKPT_FORMAT_VERSION);
    snprintf(buf[1], sizeof buf[1], "%016llx", (unsigned long long)rt_ckpt_structure_hash(m));
    int k = 0;
    meta[k++] = (rt_st_meta){"format", "kiln"};
    meta[k++] = (rt_st_meta){"format_version", buf[0]};
    meta[k++] = (rt_st_meta){"kiln_version", KILN_VERSION_STRING};
    meta[k++] = (rt_st_meta){"model", m->name};
    meta[k++] = (rt_st_meta){"structure_hash", buf[1]};
    if (progress->step >= 0) {
        snprintf(buf[2], sizeof buf[2], "%lld", (long long)progress->step);
        meta[k++] = (rt_st_meta){"step", buf[2]};
    }
    if (progress->epoch >= 0) {
        snprintf(buf[3], sizeof buf[3], "%lld", (long long)progress->epoch);
        meta[k++] = (rt_st_meta){"epoch", buf[3]};
    }
    if (progress->has_shuffle) {
        snprintf(buf[4], sizeof buf[4], "%016llx", (unsigned long long)progress->shuffle.rng);
        meta[k++] = (rt_st_meta){"shuffle_state", buf[4]};
        meta[k++] = (rt_st_meta){"shuffle_drawn", progress->shuffle.drawn ? "true" : "false"};
    }
    for (int i = 0; i < n_extra; i++) meta[k++] = extra[i];
    st = rt_st_save(path, t, n, meta, k, d);
out:
#if BIG_ENDIAN_HOST
    if (t)
        for (int i = 0; i < m->n_globals; i++)
            if (t[i].name) ir_free((void *)t[i].data);
#endif
    ir_free(t);
    ir_free(meta);
    return st;
}

/* --------------------------------------------------------------- loading */

void rt_ckpt_report_free(rt_ckpt_report *r) {
    if (!r) return;
    ir_free(r->model);
    for (int i = 0; i < r->n_skipped; i++) ir_free(r->skipped[i]);
    ir_free(r->skipped);
    memset(r, 0, sizeof *r);
}

static kiln_status add_skipped(rt_ckpt_report *r, kiln_diag *d, const char *fmt, ...)
    KILN_PRINTF(3, 4);
static kiln_status add_skipped(rt_ckpt_report *r, kiln_diag *d, const char *fmt, ...) {
    ir_sb sb;
    ir_sb_init(&sb);
    va_list ap;
    va_start(ap, fmt);
    ir_sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    char *s = ir_sb_take(&sb);
    int cap = r->n_skipped; /* grown one at a time: the list is short */
    char **p = s ? ir_realloc(r->skipped, (size_t)(cap + 1) * sizeof *p) : NULL;
    if (!p) {
        ir_free(s);
        return ir_oom(d);
    }
    r->skipped = p;
    r->skipped[r->n_skipped++] = s;
    return KILN_OK;
}

/* A decimal integer, all of the string. */
static bool parse_i64(const char *s, int64_t *out) {
    if (!(*s == '-' || (*s >= '0' && *s <= '9'))) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_hex64(const char *s, uint64_t *out) {
    if (strlen(s) != 16) return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (x < 0) return false;
        v = v << 4 | (uint64_t)x;
    }
    *out = v;
    return true;
}

static kiln_status bad_meta(const rt_st_file *f, const char *key, const char *value,
                            const char *want, kiln_diag *d) {
    char vb[RT_ST_NAME_BUF];
    return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: metadata '%s' is not %s: '%s'",
                    rt_st_file_name(f), key, want, rt_st_clean_name(value, vb));
}

static kiln_status read_metadata(const rt_st_file *f, const kiln_module *m, rt_ckpt_report *r,
                                 kiln_diag *d) {
    const char *fn = rt_st_file_name(f), *v;
    r->progress.step = r->progress.epoch = -1;
    if ((v = rt_st_meta_get(f, "format_version"))) {
        int64_t x;
        if (!parse_i64(v, &x) || x < 1) return bad_meta(f, "format_version", v, "a version", d);
        if (x > RT_CKPT_FORMAT_VERSION)
            return ir_error(d, KILN_ERR_VERSION, ir_loc_none(),
                            "%s: checkpoint format version %lld is newer than this Kiln reads (%d)",
                            fn, (long long)x, RT_CKPT_FORMAT_VERSION);
        r->format_version = (int)x;
    }
    if ((v = rt_st_meta_get(f, "step")) &&
        (!parse_i64(v, &r->progress.step) || r->progress.step < 0))
        return bad_meta(f, "step", v, "a step count", d);
    if ((v = rt_st_meta_get(f, "epoch")) &&
        (!parse_i64(v, &r->progress.epoch) || r->progress.epoch < 0))
        return bad_meta(f, "epoch", v, "an epoch count", d);
    if ((v = rt_st_meta_get(f, "shuffle_state"))) {
        if (!parse_hex64(v, &r->progress.shuffle.rng))
            return bad_meta(f, "shuffle_state", v, "16 hex digits", d);
        const char *dr = rt_st_meta_get(f, "shuffle_drawn");
        if (!dr || (strcmp(dr, "true") && strcmp(dr, "false")))
            return bad_meta(f, "shuffle_drawn", dr ? dr : "", "true or false", d);
        r->progress.has_shuffle = true;
        r->progress.shuffle.drawn = strcmp(dr, "true") == 0;
    }
    if ((v = rt_st_meta_get(f, "model")) && !(r->model = ir_strdup(v))) return ir_oom(d);
    char hb[20];
    snprintf(hb, sizeof hb, "%016llx", (unsigned long long)rt_ckpt_structure_hash(m));
    v = rt_st_meta_get(f, "structure_hash");
    r->structure_match = v && strcmp(v, hb) == 0;
    return KILN_OK;
}

/* Why tensor t (may be NULL) cannot fill global g, into buf; NULL if it can. */
static const char *mismatch(const ir_global *g, const rt_st_tensor *t, char *buf, size_t n) {
    return stc_mismatch((int)st_dtype(g), g->type.rank, g->type.dims, t != NULL,
                        t ? (int)t->dtype : 0, t ? t->rank : 0, t ? t->dims : NULL, buf, n);
}

static void copy_in(void *dst, const rt_st_tensor *t) {
    memcpy(dst, t->data, t->nbytes);
#if BIG_ENDIAN_HOST
    uint32_t *p = dst;
    for (size_t k = 0; k < t->nbytes / 4; k++) p[k] = __builtin_bswap32(p[k]);
#endif
}

static bool file_has_state(const rt_st_file *f) {
    for (int i = 0; i < rt_st_count(f); i++)
        if (is_state_name(rt_st_at(f, i)->name)) return true;
    return false;
}

static bool model_has_state(const kiln_module *m) {
    for (int i = 0; i < m->n_globals; i++)
        if (m->globals[i]->kind != IR_GLOBAL_PARAM) return true;
    return false;
}

static kiln_status apply(const rt_st_file *f, const kiln_module *m, void *const *globals,
                         rt_ckpt_mode mode, unsigned flags, rt_ckpt_report *r, kiln_diag *d) {
    const char *fn = rt_st_file_name(f);
    bool strict = mode == RT_CKPT_STRICT, params_only = flags & RT_CKPT_PARAMS_ONLY;
    if (strict && !params_only && (flags & RT_CKPT_STATE_OPTIONAL) && !file_has_state(f) &&
        model_has_state(m))
        params_only = r->weights_only = true;
    kiln_status st = read_metadata(f, m, r, d);
    if (st) return st;
    const rt_st_tensor **use = ir_calloc((size_t)(m->n_globals ? m->n_globals : 1), sizeof *use);
    if (!use) return ir_oom(d);
    /* A checkpoint of another model differs in many tensors: the message is
     * one line, the first of them with both shapes, and how many more. */
    int problems = 0;
    char why[2 * IR_TYPE_STR_MAX + 64], nb[RT_ST_NAME_BUF];
    char first[sizeof why + 2 * RT_ST_NAME_BUF + 64] = "";
#define PROBLEM(...)                                                                               \
    do {                                                                                           \
        if (problems++ == 0) snprintf(first, sizeof first, __VA_ARGS__);                           \
    } while (0)
    /* Match the model's globals. */
    for (int i = 0; i < m->n_globals && !st; i++) {
        const ir_global *g = m->globals[i];
        if (!globals || !globals[g->index]) {
            st = ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no buffer for '%s'", fn,
                          g->name);
            break;
        }
        bool state = g->kind != IR_GLOBAL_PARAM;
        if (state && params_only) continue;
        const rt_st_tensor *t = rt_st_find(f, g->name);
        const char *bad = mismatch(g, t, why, sizeof why);
        if (!bad) {
            use[i] = t;
        } else if (strict && !state) {
            PROBLEM("%s: tensor '%s' %s", fn, g->name, bad);
        } else if (strict && state) {
            PROBLEM("%s: optimizer state '%s' %s", fn, g->name, bad);
        } else {
            kiln_status s2 = add_skipped(r, d, "%s: %s", g->name, bad);
            if (s2) st = s2;
        }
    }
    /* Tensors of the file the model does not have. */
    for (int i = 0; i < rt_st_count(f) && !st; i++) {
        const rt_st_tensor *t = rt_st_at(f, i);
        if (ir_module_global(m, t->name)) continue;
        if (strict && !is_state_name(t->name)) {
            PROBLEM("%s: tensor '%s' is not in the model", fn, rt_st_clean_name(t->name, nb));
        } else {
            kiln_status s2 =
                add_skipped(r, d, "%s: not in the model", rt_st_clean_name(t->name, nb));
            if (s2) st = s2;
        }
    }
    if (!st && problems == 1)
        st = ir_error(d, KILN_ERR_SHAPE, ir_loc_none(), "%s", first);
    else if (!st && problems > 1)
        st = ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                      "%s (and %d more tensor%s that do%s not match)", first, problems - 1,
                      problems > 2 ? "s" : "", problems > 2 ? "" : "es");
#undef PROBLEM
    int n_use = 0;
    for (int i = 0; i < m->n_globals; i++) n_use += use[i] != NULL;
    if (!st && !strict && n_use == 0)
        st = ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                      "%s: no tensor of the checkpoint matches the model (%d tensors in the file)",
                      fn, rt_st_count(f));
    /* NaN or Inf in what would be loaded. */
    for (int i = 0; i < m->n_globals && !st && !(flags & RT_CKPT_ALLOW_NONFINITE); i++) {
        const rt_st_tensor *t = use[i];
        if (!t || t->dtype != RT_ST_F32) continue;
        const char *what;
        int64_t k = stc_first_nonfinite(t->data, t->nbytes / 4, &what);
        if (k >= 0)
            st = ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(), "%s: tensor '%s' holds %s at element %lld",
                          fn, rt_st_clean_name(t->name, nb), what, (long long)k);
    }
    if (!st) {
        for (int i = 0; i < m->n_globals; i++)
            if (use[i]) copy_in(globals[m->globals[i]->index], use[i]);
        r->n_loaded = n_use;
    }
    ir_free(use);
    return st;
}

kiln_status rt_ckpt_apply(const rt_st_file *f, const kiln_module *m, void *const *globals,
                          rt_ckpt_mode mode, unsigned flags, rt_ckpt_report *report,
                          kiln_diag *d) {
    rt_ckpt_report local;
    rt_ckpt_report *r = report ? report : &local;
    memset(r, 0, sizeof *r);
    if (!f || !m)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_ckpt_apply: bad argument");
    kiln_status st = apply(f, m, globals, mode, flags, r, d);
    if (!report) rt_ckpt_report_free(&local);
    return st;
}

kiln_status rt_ckpt_load(const char *path, const kiln_module *m, void *const *globals,
                         rt_ckpt_mode mode, unsigned flags, rt_ckpt_report *report,
                         kiln_diag *d) {
    if (report) memset(report, 0, sizeof *report);
    if (!path || !m)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "rt_ckpt_load: bad argument");
    rt_st_file *f;
    kiln_status st = rt_st_load(path, &f, d);
    if (st) return st;
    st = rt_ckpt_apply(f, m, globals, mode, flags, report, d);
    rt_st_free(f);
    return st;
}

/*
 * aotrt.c — the support library of AOT shared objects: the model handle
 * (size, init, create, destroy, last error), the version check, status
 * strings, the argument checks around each entry point, and checkpoints
 * (P_load, P_save) through st_core.c, the safetensors code libkiln uses.
 *
 * It is built PIC, with st_core.c, into libkiln_aotrt.a, which libkiln
 * carries (cmake/embed.cmake) and `kiln compile` links into every shared
 * object; not part of libkiln itself. Only the C library: the object must
 * load without Kiln. The model it serves is described by the constant
 * aot_abi_model of codegen/aot_abi.h that the compiler generates.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/aot_abi.h"
#include "ir/status_strings.h"
#include "kiln/kiln.h"
#include "runtime/st_core.h"

_Static_assert((int)AOT_ABI_I32 == (int)STC_I32 && (int)AOT_ABI_F32 == (int)STC_F32, "aot_abi.h's dtypes are st_core's");
_Static_assert(AOT_ABI_MAX_RANK == STC_MAX_RANK, "the same rank limit");

/* --------------------------------------------------------------- handle */

static uint64_t magic_of(const void *m) { return *(const uint64_t *)m; }
static int64_t *max_batch_of(void *m) { return (int64_t *)((char *)m + AOT_OFF_MAXB); }
static int32_t *ready_of(void *m) { return (int32_t *)((char *)m + AOT_OFF_READY); }
static int32_t *owned_of(void *m) { return (int32_t *)((char *)m + AOT_OFF_OWNED); }
static char *error_of(void *m) { return (char *)m + AOT_OFF_ERR; }
static void **table_of(void *m) { return (void **)((char *)m + AOT_OFF_TABLE); }

static bool valid(const aot_abi_model *M, const void *m) {
    return m && magic_of(m) == (uint64_t)M->magic;
}

static int set_error(void *m, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_error(void *m, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_of(m), AOT_ERR_BYTES, fmt, ap);
    va_end(ap);
    return status;
}

uint32_t kiln_aotrt_abi_version(const aot_abi_model *M) { return (uint32_t)M->version; }

int kiln_aotrt_check_version(const aot_abi_model *M, uint32_t hv, char *msg, size_t size) {
    uint32_t v = (uint32_t)M->version;
    bool can_write = msg && size > 0;
    if (hv == v) {
        if (can_write) msg[0] = 0;
        return KILN_OK;
    }
    /* The text issue 10 tests; the header documents it. */
    if (can_write)
        snprintf(msg, size,
                 "%s: version mismatch: the library was built by Kiln %u.%u.%u, the header by "
                 "Kiln %u.%u.%u; regenerate both with the same 'kiln compile'",
                 M->prefix, v >> 16, (v >> 8) & 255, v & 255, hv >> 16, (hv >> 8) & 255, hv & 255);
    return KILN_ERR_VERSION;
}

const char *kiln_aotrt_status_string(const aot_abi_model *M, int s) {
    (void)M;
    return kiln_status_text(s);
}

size_t kiln_aotrt_size(const aot_abi_model *M, int64_t mb) {
    if (mb < 1 || mb > M->max_batch) return 0;
    return (size_t)(M->ws_off + M->ws_fixed + mb * M->ws_per_sample);
}

int kiln_aotrt_init(const aot_abi_model *M, void *mem, size_t size, int64_t mb, void **out) {
    if (!out) return KILN_ERR_INVALID;
    *out = NULL;
    if (M->layout != AOT_ABI_LAYOUT) return KILN_ERR_VERSION;
    if (!mem || ((uintptr_t)mem & (AOT_ALIGN - 1))) return KILN_ERR_INVALID;
    size_t need = kiln_aotrt_size(M, mb);
    if (!need) return mb < 1 ? KILN_ERR_INVALID : KILN_ERR_LIMIT;
    if (size < need) return KILN_ERR_INVALID;
    memset(mem, 0, (size_t)M->state_off);
    *(uint64_t *)mem = (uint64_t)M->magic;
    *max_batch_of(mem) = mb;
    for (int64_t i = 0; i < M->n_tensors; i++) {
        const aot_abi_tensor *t = &M->tensors[i];
        char *data = (char *)mem + t->offset;
        table_of(mem)[t->global] = data;
        if (M->embedded && t->data)
            memcpy(data, t->data, (size_t)t->bytes);
        else if (M->embedded)
            memset(data, 0, (size_t)t->bytes);
    }
    if (M->embedded)
        *ready_of(mem) = 1;
    else
        memset((char *)mem + M->state_off, 0, (size_t)M->state_bytes);
    *out = mem;
    return KILN_OK;
}

int kiln_aotrt_create(const aot_abi_model *M, int64_t mb, void **out) {
    if (!out) return KILN_ERR_INVALID;
    *out = NULL;
    size_t need = kiln_aotrt_size(M, mb);
    if (!need) return mb < 1 ? KILN_ERR_INVALID : KILN_ERR_LIMIT;
    void *p = NULL;
    if (posix_memalign(&p, AOT_ALIGN, need) != 0) return KILN_ERR_NOMEM;
    int rc = kiln_aotrt_init(M, p, need, mb, out);
    if (rc) {
        free(p);
        return rc;
    }
    *owned_of(p) = 1;
    return KILN_OK;
}

/* Frees what P_create allocated; memory given to P_init stays the
 * caller's, the handle is only invalidated. */
void kiln_aotrt_destroy(const aot_abi_model *M, void *m) {
    if (!valid(M, m)) return;
    *(uint64_t *)m = 0;
    if (*owned_of(m)) free(m);
}

const char *kiln_aotrt_last_error(const aot_abi_model *M, const void *m) {
    return valid(M, m) ? (const char *)m + AOT_OFF_ERR : "invalid model handle";
}

/* ---------------------------------------------------------- entry points */

int kiln_aotrt_enter(const aot_abi_model *M, void *m, int64_t entry, int64_t batch,
                     void *const *ptrs) {
    if (!valid(M, m)) return KILN_ERR_INVALID;
    const aot_abi_entry *e = &M->entries[entry];
    if (!*ready_of(m))
        return set_error(m, KILN_ERR_INVALID,
                         "%s: the model has no weights yet: call %s_load first", e->name,
                         M->prefix);
    if (batch < 0)
        return set_error(m, KILN_ERR_INVALID, "%s: batch %lld is negative", e->name,
                         (long long)batch);
    if (batch > *max_batch_of(m))
        return set_error(m, KILN_ERR_LIMIT,
                         "%s: batch %lld exceeds the max_batch of this handle (%lld)", e->name,
                         (long long)batch, (long long)*max_batch_of(m));
    for (int64_t i = 0; i < e->n_params; i++)
        if (!ptrs[i]) return set_error(m, KILN_ERR_INVALID, "%s: '%s' is NULL", e->name, e->params[i]);
    return KILN_OK;
}

/* The error record (cg.h) in the workspace says which node failed. */
int kiln_aotrt_failed(const aot_abi_model *M, void *m, int64_t entry, int64_t batch, int rc) {
    const aot_abi_entry *e = &M->entries[entry];
    const char *rec = (const char *)m + M->ws_off + e->err_fixed + batch * e->err_per_sample;
    int32_t serial;
    int64_t detail;
    memcpy(&serial, rec + 4, 4);
    memcpy(&detail, rec + 8, 8);
    for (int64_t k = 0; k < e->n_fails; k++)
        if (e->fails[k].serial == serial)
            return set_error(m, rc, "%s%lld%s", e->fails[k].before, (long long)detail,
                             e->fails[k].after);
    return set_error(m, rc, "%s failed with status %d", e->name, rc);
}

/* ----------------------------------------------------------- checkpoints */

static const stc_tensor *find(const stc_header *h, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->t[i].name, name) == 0) return &h->t[i];
    return NULL;
}

static const aot_abi_tensor *model_tensor(const aot_abi_model *M, const char *name) {
    for (int64_t i = 0; i < M->n_tensors; i++)
        if (strcmp(M->tensors[i].name, name) == 0) return &M->tensors[i];
    return NULL;
}

/* The runtime's strict match (runtime/checkpoint.c): every model tensor in
 * the file with its dtype and shape, no tensor the model lacks (optimizer
 * state aside); one line, the first problem and how many more. use[i] is
 * the file's tensor for model tensor i. */
static int match(const aot_abi_model *M, void *m, const char *path, const stc_file *f,
                 const stc_tensor **use) {
    char why[400], nb[STC_NAME_BUF], first[AOT_ERR_BYTES] = "";
    int problems = 0;
    for (int64_t i = 0; i < M->n_tensors; i++) {
        const aot_abi_tensor *g = &M->tensors[i];
        const stc_tensor *t = find(&f->h, g->name);
        const char *bad = stc_mismatch((int)g->dtype, (int)g->rank, g->dims, t != NULL,
                                       t ? t->dtype : 0, t ? t->rank : 0, t ? t->dims : NULL,
                                       why, sizeof why);
        use[i] = bad ? NULL : t;
        if (bad && problems++ == 0)
            snprintf(first, sizeof first, "%s: %s '%s' %s", path,
                     stc_is_state_name(g->name) ? "optimizer state" : "tensor", g->name, bad);
    }
    for (int i = 0; i < f->h.n; i++) {
        const char *name = f->h.t[i].name;
        if (model_tensor(M, name) || stc_is_state_name(name)) continue;
        if (problems++ == 0)
            snprintf(first, sizeof first, "%s: tensor '%s' is not in the model", path,
                     stc_clean_name(name, nb));
    }
    if (problems == 1) return set_error(m, KILN_ERR_SHAPE, "%s", first);
    if (problems > 1)
        return set_error(m, KILN_ERR_SHAPE, "%s (and %d more tensor%s that do%s not match)", first,
                         problems - 1, problems > 2 ? "s" : "", problems > 2 ? "" : "es");
    for (int64_t i = 0; i < M->n_tensors; i++) {
        const char *what;
        int64_t k = use[i]->dtype == AOT_ABI_F32
                        ? stc_first_nonfinite(f->data + use[i]->begin, use[i]->nbytes / 4, &what)
                        : -1;
        if (k >= 0)
            return set_error(m, KILN_ERR_NONFINITE, "%s: tensor '%s' holds %s at element %lld",
                             path, M->tensors[i].name, what, (long long)k);
    }
    return KILN_OK;
}

/* Reads a checkpoint into the handle: all or nothing. */
int kiln_aotrt_load(const aot_abi_model *M, void *m, const char *path) {
    if (!valid(M, m)) return KILN_ERR_INVALID;
    if (!path) return set_error(m, KILN_ERR_INVALID, "%s_load: no checkpoint path", M->prefix);
    stc_file f;
    stc_err e;
    if (stc_load(path, NULL, &f, &e)) return set_error(m, e.status, "%s", e.msg);
    const stc_tensor **use = calloc((size_t)M->n_tensors + 1, sizeof *use);
    int st = use ? match(M, m, path, &f, use)
                 : set_error(m, KILN_ERR_NOMEM, "%s_load: out of memory", M->prefix);
    if (!st) {
        for (int64_t i = 0; i < M->n_tensors; i++)
            memcpy((char *)m + M->tensors[i].offset, f.data + use[i]->begin, use[i]->nbytes);
        *ready_of(m) = 1;
        error_of(m)[0] = 0;
    }
    free(use);
    stc_file_free(&f, NULL);
    return st;
}

/* Writes the handle's tensors with the runtime's metadata, atomically. */
int kiln_aotrt_save(const aot_abi_model *M, void *m, const char *path) {
    if (!valid(M, m)) return KILN_ERR_INVALID;
    if (!path) return set_error(m, KILN_ERR_INVALID, "%s_save: no checkpoint path", M->prefix);
    if (!*ready_of(m))
        return set_error(m, KILN_ERR_INVALID, "%s_save: the model has no weights yet", M->prefix);
    for (int64_t i = 0; i < M->n_tensors; i++) {
        const aot_abi_tensor *g = &M->tensors[i];
        const char *what;
        int64_t k = g->dtype == AOT_ABI_F32
                        ? stc_first_nonfinite((char *)m + g->offset, (size_t)g->bytes / 4, &what)
                        : -1;
        if (k >= 0)
            return set_error(m, KILN_ERR_NONFINITE,
                             "%s: not saved: tensor '%s' holds %s at element %lld; the previous "
                             "checkpoint is kept",
                             path, g->name, what, (long long)k);
    }
    stc_tensor *t = calloc((size_t)M->n_tensors + 1, sizeof *t);
    if (!t) return set_error(m, KILN_ERR_NOMEM, "%s_save: out of memory", M->prefix);
    for (int64_t i = 0; i < M->n_tensors; i++) {
        const aot_abi_tensor *g = &M->tensors[i];
        t[i] = (stc_tensor){.name = g->name, .dtype = (int)g->dtype, .rank = (int)g->rank,
                            .nbytes = (size_t)g->bytes, .data = (char *)m + g->offset};
        memcpy(t[i].dims, g->dims, sizeof t[i].dims);
    }
    uint32_t v = (uint32_t)M->version;
    char fv[24], kv[32], hash[24], step[24];
    snprintf(fv, sizeof fv, "%lld", (long long)M->format_version);
    snprintf(kv, sizeof kv, "%u.%u.%u", v >> 16, (v >> 8) & 255, v & 255);
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)M->structure_hash);
    stc_meta meta[6] = {{"format", "kiln"},      {"format_version", fv}, {"kiln_version", kv},
                        {"model", M->model},     {"structure_hash", hash}, {"step", step}};
    int n_meta = 5;
    if (M->iterations >= 0) {
        int32_t it;
        memcpy(&it, (char *)m + M->tensors[M->iterations].offset, 4);
        snprintf(step, sizeof step, "%d", it);
        n_meta = 6;
    }
    stc_err e;
    int st = stc_save(path, t, (int)M->n_tensors, meta, n_meta, NULL, NULL, NULL, &e);
    free(t);
    return st ? set_error(m, e.status, "%s", e.msg) : KILN_OK;
}

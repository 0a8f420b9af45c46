/*
 * cache_store.c — the compile cache's files: where they live, the entry
 * format (cache.h), atomic writes, least-recently-used eviction.
 */
#include "codegen/cache.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char MAGIC[8] = {'K', 'I', 'L', 'N', 'O', 'B', 'J', 0};

/* ----------------------------------------------------------- location */

void cg_cache_config(cg_cache_cfg *c) {
    memset(c, 0, sizeof *c);
    const char *on = getenv("KILN_CACHE");
    c->enabled = !(on && (strcmp(on, "0") == 0 || strcmp(on, "off") == 0));
    const char *mb = getenv("KILN_CACHE_MAX_MB");
    char *end = NULL;
    long long v = mb ? strtoll(mb, &end, 10) : -1;
    c->max_bytes = (mb && end != mb && !*end && v >= 0 && v < (1LL << 40))
                       ? (int64_t)v << 20
                       : (int64_t)CG_CACHE_DEFAULT_MB << 20;
    const char *dir = getenv("KILN_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n = -1;
    if (dir && *dir)
        n = snprintf(c->dir, sizeof c->dir, "%s", dir);
    else if (xdg && *xdg == '/')
        n = snprintf(c->dir, sizeof c->dir, "%s/kiln", xdg);
    else if (home && *home)
        n = snprintf(c->dir, sizeof c->dir, "%s/.cache/kiln", home);
    if (n <= 0 || (size_t)n >= sizeof c->dir - 80) { /* room for "/<hex>.kco.tmp.*" */
        c->dir[0] = 0;
        c->enabled = false;
    }
}

void cg_cache_path(const cg_cache_cfg *c, const cg_cache_key *key, char *out, size_t cap) {
    char hex[2 * CG_SHA256_BYTES + 1];
    for (int i = 0; i < CG_SHA256_BYTES; i++) snprintf(hex + 2 * i, 3, "%02x", key->b[i]);
    snprintf(out, cap, "%s/%s.kco", c->dir, hex);
}

/* ------------------------------------------------------------ encoding */

static void put32(ir_sb *sb, uint32_t v) {
    char b[4];
    for (int i = 0; i < 4; i++) b[i] = (char)(v >> (8 * i));
    ir_sb_putn(sb, b, 4);
}

static void put64(ir_sb *sb, uint64_t v) {
    put32(sb, (uint32_t)v);
    put32(sb, (uint32_t)(v >> 32));
}

static void put_str(ir_sb *sb, const char *s) {
    if (!s) {
        put32(sb, 0xffffffffu);
        return;
    }
    size_t n = strlen(s);
    put32(sb, (uint32_t)n);
    ir_sb_putn(sb, s, n);
}

static void put_func(ir_sb *sb, const cg_func_info *f) {
    put_str(sb, f->name);
    put_str(sb, f->symbol);
    put32(sb, (uint32_t)f->n_args);
    put32(sb, (uint32_t)f->n_results);
    put64(sb, (uint64_t)f->ws_fixed);
    put64(sb, (uint64_t)f->ws_per_sample);
    put64(sb, (uint64_t)f->ws_chunk);
    put64(sb, (uint64_t)f->err_fixed);
    put64(sb, (uint64_t)f->err_per_sample);
    put32(sb, (uint32_t)f->n_fails);
    for (int i = 0; i < f->n_fails; i++) {
        const cg_fail_site *s = &f->fails[i];
        put32(sb, (uint32_t)s->serial);
        put_str(sb, s->op);
        put_str(sb, s->file);
        put32(sb, (uint32_t)s->line);
        put32(sb, (uint32_t)s->col);
        put64(sb, (uint64_t)s->classes);
    }
}

kiln_status cg_cache_entry_encode(const cg_cache_key *key, const cg_module_info *info,
                                  const void *obj, size_t obj_len, char **out, size_t *len,
                                  kiln_diag *d) {
    *out = NULL;
    ir_sb sb;
    ir_sb_init(&sb);
    ir_sb_putn(&sb, MAGIC, 8);
    put32(&sb, CG_CACHE_FORMAT);
    put32(&sb, 0);
    ir_sb_putn(&sb, (const char *)key->b, CG_SHA256_BYTES);
    put64(&sb, 0);                       /* payload length, patched below */
    ir_sb_putn(&sb, (const char *)key->b, CG_SHA256_BYTES); /* checksum, patched */
    put32(&sb, (uint32_t)info->n_funcs);
    for (int i = 0; i < info->n_funcs; i++) put_func(&sb, &info->funcs[i]);
    put64(&sb, (uint64_t)obj_len);
    ir_sb_putn(&sb, obj, obj_len);
    if (sb.oom) {
        ir_sb_free(&sb);
        return ir_oom(d);
    }
    size_t n = sb.len, payload = n - CG_CACHE_HEADER;
    char *buf = ir_sb_take(&sb);
    for (int i = 0; i < 8; i++) buf[48 + i] = (char)((uint64_t)payload >> (8 * i));
    cg_sha256_bytes(buf + CG_CACHE_HEADER, payload, (uint8_t *)buf + 56);
    *out = buf;
    *len = n;
    return KILN_OK;
}

/* ------------------------------------------------------------ decoding */

typedef struct reader {
    const uint8_t *p, *end;
    bool bad;
} reader;

static uint64_t get(reader *r, int bytes) {
    if (r->bad || r->end - r->p < bytes) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += bytes;
    return v;
}

/* A string, copied (NUL-free); *s NULL for the NULL string. */
static bool get_str(reader *r, char **s, bool nullable) {
    *s = NULL;
    uint32_t n = (uint32_t)get(r, 4);
    if (r->bad) return false;
    if (n == 0xffffffffu) {
        r->bad = !nullable;
        return nullable;
    }
    if ((size_t)(r->end - r->p) < n || memchr(r->p, 0, n)) {
        r->bad = true;
        return false;
    }
    *s = ir_malloc((size_t)n + 1);
    if (!*s) return false;
    memcpy(*s, r->p, n);
    (*s)[n] = 0;
    r->p += n;
    return true;
}

/* A count of items of at least `min_bytes` each that the rest can hold. */
static int get_count(reader *r, size_t min_bytes) {
    uint32_t n = (uint32_t)get(r, 4);
    if (r->bad || n > (size_t)(r->end - r->p) / min_bytes || n > INT32_MAX / 2) {
        r->bad = true;
        return 0;
    }
    return (int)n;
}

static kiln_status get_fail(reader *r, cg_fail_site *s) {
    s->serial = (int32_t)get(r, 4);
    char *op = NULL;
    if (!get_str(r, &op, false)) return r->bad ? KILN_ERR_PARSE : KILN_ERR_NOMEM;
    int code = ir_op_lookup(op);
    ir_free(op);
    if (code < 0) {
        r->bad = true;
        return KILN_ERR_PARSE;
    }
    s->op = ir_op_name(code);
    if (!get_str(r, &s->file, true) && !r->bad) return KILN_ERR_NOMEM;
    s->line = (int32_t)get(r, 4);
    s->col = (int32_t)get(r, 4);
    s->classes = (int64_t)get(r, 8);
    return r->bad ? KILN_ERR_PARSE : KILN_OK;
}

static kiln_status get_func(reader *r, cg_func_info *f) {
    if (!get_str(r, &f->name, false) || !get_str(r, &f->symbol, false))
        return r->bad ? KILN_ERR_PARSE : KILN_ERR_NOMEM;
    f->n_args = (int)(int32_t)get(r, 4);
    f->n_results = (int)(int32_t)get(r, 4);
    f->ws_fixed = (int64_t)get(r, 8);
    f->ws_per_sample = (int64_t)get(r, 8);
    f->ws_chunk = (int64_t)get(r, 8);
    f->err_fixed = (int64_t)get(r, 8);
    f->err_per_sample = (int64_t)get(r, 8);
    /* The entry point reads and writes these: nothing negative or absurd. */
    const int64_t lim = (int64_t)1 << 48;
    if (f->n_args < 0 || f->n_results < 0 || f->n_args > 4096 || f->n_results > 4096 ||
        f->ws_fixed < 0 || f->ws_fixed > lim || f->ws_per_sample < 0 || f->ws_per_sample > lim ||
        f->ws_chunk < 0 || f->ws_chunk > INT32_MAX ||
        f->err_fixed < 0 || f->err_fixed > lim || f->err_per_sample < 0 ||
        f->err_per_sample > lim)
        r->bad = true;
    f->n_fails = get_count(r, 28);
    if (r->bad) return KILN_ERR_PARSE;
    if (f->n_fails) {
        f->fails = ir_calloc((size_t)f->n_fails, sizeof *f->fails);
        if (!f->fails) {
            f->n_fails = 0;
            return KILN_ERR_NOMEM;
        }
    }
    for (int i = 0; i < f->n_fails; i++) {
        kiln_status st = get_fail(r, &f->fails[i]);
        if (st) return st;
    }
    return KILN_OK;
}

static kiln_status bad_entry(kiln_diag *d, kiln_status st, const char *what, const char *why) {
    if (st == KILN_ERR_NOMEM) return ir_oom(d);
    return ir_error(d, st, ir_loc_none(), "%s: %s", what, why);
}

/* The header: magic, format, key, payload length and checksum. */
static kiln_status check_header(const uint8_t *b, size_t len, const cg_cache_key *key,
                                const char *what, kiln_diag *d) {
    if (len < CG_CACHE_HEADER || memcmp(b, MAGIC, 8) != 0)
        return bad_entry(d, KILN_ERR_PARSE, what, "not a Kiln cache entry");
    reader r = {b + 8, b + len, false};
    uint32_t format = (uint32_t)get(&r, 4), zero = (uint32_t)get(&r, 4);
    if (format != CG_CACHE_FORMAT || zero != 0)
        return bad_entry(d, KILN_ERR_VERSION, what, "written by another version of Kiln");
    if (key && memcmp(b + 16, key->b, CG_SHA256_BYTES) != 0)
        return bad_entry(d, KILN_ERR_PARSE, what, "the entry is for another key");
    r.p = b + 48;
    uint64_t payload = get(&r, 8);
    if (payload != len - CG_CACHE_HEADER)
        return bad_entry(d, KILN_ERR_PARSE, what, "truncated (length does not match the header)");
    uint8_t sum[CG_SHA256_BYTES];
    cg_sha256_bytes(b + CG_CACHE_HEADER, (size_t)payload, sum);
    if (memcmp(sum, b + 56, CG_SHA256_BYTES) != 0)
        return bad_entry(d, KILN_ERR_PARSE, what, "checksum mismatch");
    return KILN_OK;
}

kiln_status cg_cache_entry_decode(const void *buf, size_t len, const cg_cache_key *key,
                                  const char *what, cg_module_info **info, const void **obj,
                                  size_t *obj_len, kiln_diag *d) {
    *info = NULL;
    *obj = NULL;
    *obj_len = 0;
    const uint8_t *b = buf;
    kiln_status st = check_header(b, len, key, what, d);
    if (st) return st;
    reader r = {b + CG_CACHE_HEADER, b + len, false};
    cg_module_info *mi = ir_calloc(1, sizeof *mi);
    if (!mi) return ir_oom(d);
    mi->n_funcs = get_count(&r, 48);
    if (!r.bad && mi->n_funcs == 0) r.bad = true;
    if (!r.bad) {
        mi->funcs = ir_calloc((size_t)mi->n_funcs, sizeof *mi->funcs);
        if (!mi->funcs) st = KILN_ERR_NOMEM;
    }
    for (int i = 0; !st && !r.bad && i < mi->n_funcs; i++) st = get_func(&r, &mi->funcs[i]);
    uint64_t n = get(&r, 8);
    if (!st && (r.bad || n == 0 || n != (uint64_t)(r.end - r.p))) st = KILN_ERR_PARSE;
    if (st) {
        if (!mi->funcs) mi->n_funcs = 0;
        cg_module_info_dispose(mi);
        return bad_entry(d, st, what, "malformed payload");
    }
    *info = mi;
    *obj = r.p;
    *obj_len = (size_t)n;
    return KILN_OK;
}

/* --------------------------------------------------------------- files */

bool cg_cache_read(const cg_cache_cfg *c, const cg_cache_key *key, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    char path[sizeof c->dir + 80];
    cg_cache_path(c, key, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat sb;
    char *b = NULL;
    bool ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= CG_CACHE_HEADER &&
              sb.st_size <= c->max_bytes + CG_CACHE_HEADER;
    size_t n = ok ? (size_t)sb.st_size : 0, got = 0;
    if (ok && !(b = ir_malloc(n))) ok = false;
    while (ok && got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r <= 0 && !(r < 0 && errno == EINTR)) ok = false;
        if (r > 0) got += (size_t)r;
    }
    if (ok) futimens(fd, NULL); /* most recently used (best effort) */
    close(fd);
    if (!ok) {
        ir_free(b);
        return false;
    }
    *buf = b;
    *len = n;
    return true;
}

/* mkdir -p of the cache directory. */
static bool make_dirs(const char *dir, char *why, size_t cap) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char keep = *s;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            snprintf(why, cap, "%s: cannot create the directory: %s", p, strerror(errno));
            return false;
        }
        *s = keep;
        if (!keep) break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(why, cap, "%s: not a directory", dir);
        return false;
    }
    return true;
}

typedef struct entry_file {
    char name[80];
    int64_t bytes;
    struct timespec mtime;
} entry_file;

static bool is_entry(const char *name) {
    size_t n = strlen(name);
    return n == 2 * CG_SHA256_BYTES + 4 && strcmp(name + n - 4, ".kco") == 0;
}

/* A temporary file of a writer that died (older than a minute). */
static bool is_stale_temp(const char *name, const struct stat *sb) {
    return strstr(name, ".kco.tmp.") && time(NULL) - sb->st_mtime > 60;
}

static int by_mtime(const void *a, const void *b) {
    const entry_file *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Lists the entries of the directory (and removes stale temporary files).
 * *files is malloc'ed (ir_free); false when out of memory or unreadable. */
static bool list_entries(const char *dir, entry_file **files, int *n, int64_t *total) {
    *files = NULL;
    *n = 0;
    *total = 0;
    DIR *dp = opendir(dir);
    if (!dp) return false;
    int cap = 0;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(dp))) {
        struct stat sb;
        if (fstatat(dirfd(dp), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (is_stale_temp(e->d_name, &sb)) unlinkat(dirfd(dp), e->d_name, 0);
        if (!is_entry(e->d_name)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            entry_file *g = ir_realloc(*files, (size_t)cap * sizeof *g);
            if (!g) {
                ok = false;
                break;
            }
            *files = g;
        }
        entry_file *f = &(*files)[(*n)++];
        snprintf(f->name, sizeof f->name, "%s", e->d_name);
        f->bytes = (int64_t)sb.st_size;
        f->mtime = sb.st_mtim;
        *total += f->bytes;
    }
    closedir(dp);
    if (!ok) {
        ir_free(*files);
        *files = NULL;
        *n = 0;
    }
    return ok;
}

/* Removes the least recently used entries until the total fits. */
static void evict(const cg_cache_cfg *c) {
    entry_file *files;
    int n;
    int64_t total;
    if (!list_entries(c->dir, &files, &n, &total)) return;
    if (total > c->max_bytes) {
        qsort(files, (size_t)n, sizeof *files, by_mtime);
        char path[sizeof c->dir + 80];
        for (int i = 0; i < n && total > c->max_bytes; i++) {
            snprintf(path, sizeof path, "%s/%s", c->dir, files[i].name);
            if (unlink(path) == 0 || errno == ENOENT) total -= files[i].bytes;
        }
    }
    ir_free(files);
}

bool cg_cache_write(const cg_cache_cfg *c, const cg_cache_key *key, const void *entry, size_t len,
                    char *why, size_t why_cap) {
    return cg_cache_write_parts(c, key, &entry, &len, 1, why, why_cap);
}

bool cg_cache_write_parts(const cg_cache_cfg *c, const cg_cache_key *key, const void *const *parts,
                          const size_t *lens, int n_parts, char *why, size_t why_cap) {
    size_t len = 0;
    for (int i = 0; i < n_parts; i++) len += lens[i];
    if ((int64_t)len > c->max_bytes) {
        snprintf(why, why_cap, "%s: the entry (%zu bytes) exceeds the cache size limit (%lld MB)",
                 c->dir, len, (long long)(c->max_bytes >> 20));
        return false;
    }
    if (!make_dirs(c->dir, why, why_cap)) return false;
    char path[sizeof c->dir + 80], tmp[sizeof c->dir + 120];
    cg_cache_path(c, key, path, sizeof path);
    /* Unique among processes (pid) and threads (the counter). */
    static atomic_long serial;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(),
             atomic_fetch_add(&serial, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, why_cap, "%s: cannot write: %s", c->dir, strerror(errno));
        return false;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) close(fd);
    errno = 0;
    bool ok = f != NULL;
    for (int i = 0; ok && i < n_parts; i++) ok = fwrite(parts[i], 1, lens[i], f) == lens[i];
    int saved = errno ? errno : EIO;
    if (f && fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp);
        snprintf(why, why_cap, "%s: cannot write: %s", c->dir, strerror(saved));
        return false;
    }
    evict(c);
    return true;
}

void cg_cache_scan(const cg_cache_cfg *c, bool remove, int64_t *entries, int64_t *bytes) {
    entry_file *files;
    int n;
    int64_t total;
    *entries = 0;
    *bytes = 0;
    if (!c->dir[0] || !list_entries(c->dir, &files, &n, &total)) return;
    if (remove) {
        char path[sizeof c->dir + 80];
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", c->dir, files[i].name);
            unlink(path);
        }
    }
    *entries = n;
    *bytes = total;
    ir_free(files);
}

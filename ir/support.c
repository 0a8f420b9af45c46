/* support.c — allocation, arenas, diagnostics, string building. */
#include "ir/support.h"
#include "ir/status_strings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- memory */

static long g_alloc_count;   /* allocations since the last reset */
static long g_alloc_fail_at; /* 0: never fail */
static int g_alloc_failed;
static long g_alloc_live; /* blocks allocated and not yet freed (atomic) */

void kiln_test_alloc_fail_at(long n) {
    g_alloc_count = 0;
    g_alloc_fail_at = n;
    g_alloc_failed = 0;
}
long kiln_test_alloc_count(void) { return g_alloc_count; }
int kiln_test_alloc_failed(void) { return g_alloc_failed; }
long kiln_test_alloc_live(void) { return __atomic_load_n(&g_alloc_live, __ATOMIC_RELAXED); }

static void *live_add(void *p) {
    if (p) __atomic_add_fetch(&g_alloc_live, 1, __ATOMIC_RELAXED);
    return p;
}

static bool alloc_should_fail(void) {
    g_alloc_count++;
    if (g_alloc_fail_at > 0 && g_alloc_count >= g_alloc_fail_at) {
        g_alloc_failed = 1;
        return true;
    }
    return false;
}

void *ir_malloc(size_t n) {
    if (alloc_should_fail()) return NULL;
    return live_add(malloc(n ? n : 1));
}

void *ir_calloc(size_t count, size_t size) {
    if (alloc_should_fail()) return NULL;
    return live_add(calloc(count ? count : 1, size ? size : 1));
}

void *ir_realloc(void *p, size_t n) {
    if (alloc_should_fail()) return NULL;
    void *r = realloc(p, n ? n : 1);
    return p ? r : live_add(r);
}

void ir_free(void *p) {
    if (p) __atomic_sub_fetch(&g_alloc_live, 1, __ATOMIC_RELAXED);
    free(p);
}

char *ir_strndup(const char *s, size_t n) {
    char *r = ir_malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

char *ir_strdup(const char *s) { return ir_strndup(s, strlen(s)); }

void *ir_aligned_alloc(size_t n) {
    if (alloc_should_fail()) return NULL;
    size_t rounded;
    if (!ir_add_size(n, 63, &rounded)) return NULL;
    rounded &= ~(size_t)63;
    return live_add(aligned_alloc(64, rounded ? rounded : 64));
}

void ir_aligned_free(void *p) { ir_free(p); }

bool ir_grow(void **pp, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    if (need < 0 || need > (1 << 30)) return false;
    int nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    size_t bytes;
    if (!ir_mul_size((size_t)nc, elem, &bytes)) return false;
    void *p = ir_realloc(*pp, bytes);
    if (!p) return false;
    *pp = p;
    *cap = nc;
    return true;
}

/* ---------------------------------------------------------------- arena */

struct ir_arena_chunk {
    ir_arena_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

enum { ARENA_CHUNK = 64 * 1024 };

void ir_arena_init(ir_arena *a) {
    a->head = NULL;
    a->used_bytes = 0;
}

void ir_arena_free(ir_arena *a) {
    ir_arena_chunk *c = a->head;
    while (c) {
        ir_arena_chunk *n = c->next;
        ir_free(c);
        c = n;
    }
    a->head = NULL;
    a->used_bytes = 0;
}

void *ir_arena_alloc(ir_arena *a, size_t n) {
    size_t need;
    if (!ir_add_size(n, 15, &need)) return NULL;
    need &= ~(size_t)15;
    ir_arena_chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t sz = need > ARENA_CHUNK ? need : ARENA_CHUNK;
        size_t total;
        if (!ir_add_size(sz, sizeof(ir_arena_chunk), &total)) return NULL;
        ir_arena_chunk *nc = ir_malloc(total);
        if (!nc) return NULL;
        nc->size = sz;
        nc->used = 0;
        /* A big one-off block goes behind the head so the head keeps filling. */
        if (c && need > ARENA_CHUNK) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used_bytes += need;
    memset(p, 0, need);
    return p;
}

char *ir_arena_strndup(ir_arena *a, const char *s, size_t n) {
    char *r = ir_arena_alloc(a, n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

char *ir_arena_strdup(ir_arena *a, const char *s) { return ir_arena_strndup(a, s, strlen(s)); }

/* ------------------------------------------------------- string builder */

void ir_sb_init(ir_sb *sb) { memset(sb, 0, sizeof *sb); }

void ir_sb_free(ir_sb *sb) {
    ir_free(sb->buf);
    memset(sb, 0, sizeof *sb);
}

static bool sb_reserve(ir_sb *sb, size_t extra) {
    if (sb->oom) return false;
    size_t need;
    if (!ir_add_size(sb->len, extra + 1, &need)) {
        sb->oom = true;
        return false;
    }
    if (need <= sb->cap) return true;
    size_t nc = sb->cap ? sb->cap : 64;
    while (nc < need) nc *= 2;
    char *p = ir_realloc(sb->buf, nc);
    if (!p) {
        sb->oom = true;
        return false;
    }
    sb->buf = p;
    sb->cap = nc;
    return true;
}

void ir_sb_putn(ir_sb *sb, const char *s, size_t n) {
    if (!sb_reserve(sb, n)) return;
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = 0;
}

void ir_sb_puts(ir_sb *sb, const char *s) { ir_sb_putn(sb, s, strlen(s)); }

void ir_sb_putc(ir_sb *sb, char c) { ir_sb_putn(sb, &c, 1); }

void ir_sb_vprintf(ir_sb *sb, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !sb_reserve(sb, (size_t)n)) return;
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void ir_sb_printf(ir_sb *sb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ir_sb_vprintf(sb, fmt, ap);
    va_end(ap);
}

void ir_sb_float(ir_sb *sb, double v) {
    char buf[40];
    /* Shortest of %.{6..17}g that reads back exactly as a double. */
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    ir_sb_puts(sb, buf);
}

void ir_sb_json_escape(ir_sb *sb, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            ir_sb_printf(sb, "\\%c", c);
        else if (c < 0x20)
            ir_sb_printf(sb, "\\u%04x", c);
        else
            ir_sb_putc(sb, (char)c);
    }
}

void ir_sb_json_string(ir_sb *sb, const char *s) {
    ir_sb_putc(sb, '"');
    ir_sb_json_escape(sb, s);
    ir_sb_putc(sb, '"');
}

char *kiln_json_string(const char *s) {
    ir_sb sb;
    ir_sb_init(&sb);
    ir_sb_json_string(&sb, s ? s : "");
    return ir_sb_take(&sb);
}

char *ir_sb_take(ir_sb *sb) {
    if (sb->oom) {
        ir_sb_free(sb);
        return NULL;
    }
    if (!sb->buf && !sb_reserve(sb, 0)) return NULL;
    if (sb->len == 0) sb->buf[0] = 0;
    char *r = sb->buf;
    memset(sb, 0, sizeof *sb);
    return r;
}

/* ----------------------------------------------------------- diagnostics */

kiln_diag *kiln_diag_create(void) {
    kiln_diag *d = ir_calloc(1, sizeof *d);
    return d;
}

void kiln_diag_dispose(kiln_diag *d) {
    if (!d) return;
    ir_sb_free(&d->text);
    ir_free(d);
}

const char *kiln_diag_message(const kiln_diag *d) {
    if (!d) return "";
    /* A message that could not be stored: memory ran out (SQLite does the
     * same: the message of an out-of-memory error is a constant). */
    if (d->text.oom) return "kiln: error: out of memory\n";
    return d->text.buf ? d->text.buf : "";
}

int kiln_diag_error_count(const kiln_diag *d) { return d ? d->errors : 0; }

void kiln_diag_clear(kiln_diag *d) {
    if (!d) return;
    ir_sb_free(&d->text);
    d->errors = 0;
    d->first = KILN_OK;
}

static void diag_prefix(kiln_diag *d, ir_loc loc, const char *kind) {
    if (loc.file)
        ir_sb_printf(&d->text, "%s:%d:%d: %s: ", loc.file, (int)loc.line, (int)loc.col, kind);
    else
        ir_sb_printf(&d->text, "kiln: %s: ", kind);
}

kiln_status ir_verror(kiln_diag *d, kiln_status st, ir_loc loc, const char *fmt, va_list ap) {
    if (!d) return st;
    if (d->errors++ == 0) d->first = st;
    diag_prefix(d, loc, "error");
    ir_sb_vprintf(&d->text, fmt, ap);
    ir_sb_putc(&d->text, '\n');
    return st;
}

kiln_status ir_error(kiln_diag *d, kiln_status st, ir_loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ir_verror(d, st, loc, fmt, ap);
    va_end(ap);
    return st;
}

void ir_note(kiln_diag *d, ir_loc loc, const char *fmt, ...) {
    if (!d) return;
    diag_prefix(d, loc, "note");
    va_list ap;
    va_start(ap, fmt);
    ir_sb_vprintf(&d->text, fmt, ap);
    va_end(ap);
    ir_sb_putc(&d->text, '\n');
}

void ir_warning(kiln_diag *d, ir_loc loc, const char *fmt, ...) {
    if (!d) return;
    diag_prefix(d, loc, "warning");
    va_list ap;
    va_start(ap, fmt);
    ir_sb_vprintf(&d->text, fmt, ap);
    va_end(ap);
    ir_sb_putc(&d->text, '\n');
}

void ir_diag_source_line(kiln_diag *d, const char *line_start, size_t line_len, int col) {
    if (!d || !line_start) return;
    ir_sb_puts(&d->text, "    ");
    for (size_t i = 0; i < line_len; i++) {
        char c = line_start[i];
        ir_sb_putc(&d->text, c == '\t' ? ' ' : (c >= 32 && c < 127) ? c : ' ');
    }
    ir_sb_puts(&d->text, "\n    ");
    for (int i = 1; i < col; i++) ir_sb_putc(&d->text, ' ');
    ir_sb_puts(&d->text, "^\n");
}

kiln_status ir_oom(kiln_diag *d) {
    return ir_error(d, KILN_ERR_NOMEM, ir_loc_none(), "out of memory");
}

const char *kiln_status_string(kiln_status s) { return kiln_status_text((int)s); }

const char *kiln_version(void) { return KILN_VERSION_STRING; }

void kiln_free(void *p) { ir_free(p); }

/* ------------------------------------------------------------------ misc */

int ir_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1 << 20;
    int row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j];
            int sub = prev + (a[i - 1] != b[j - 1]);
            int del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[lb];
}

const char *ir_closest_name(const char *word, const char *const *cands, int n) {
    const char *best = NULL;
    int bestd = 1 << 20;
    for (int i = 0; i < n; i++) {
        int dist = ir_edit_distance(word, cands[i]);
        if (dist < bestd) {
            bestd = dist;
            best = cands[i];
        }
    }
    /* Suggest only plausible typos: at most a third of the word wrong. */
    size_t len = strlen(word);
    int limit = len <= 3 ? 1 : (int)(len + 2) / 3;
    return bestd <= limit ? best : NULL;
}

const char *kiln_suggest(const char *word, const char *const *candidates, int n) {
    return word && candidates ? ir_closest_name(word, candidates, n) : NULL;
}

uint64_t ir_hash_bytes(const void *p, size_t n, uint64_t seed) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

kiln_status ir_read_file(const char *path, char **out, size_t *len, kiln_diag *d) {
    return ir_read_file_max(path, SIZE_MAX - 1, out, len, d);
}

kiln_status ir_read_file_max(const char *path, size_t max, char **out, size_t *len,
                             kiln_diag *d) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    ir_sb sb;
    ir_sb_init(&sb);
    char buf[65536];
    size_t n;
    while (sb.len <= max && !sb.oom && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ir_sb_putn(&sb, buf, n);
    int err = ferror(f);
    fclose(f);
    if (err) {
        ir_sb_free(&sb);
        return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: read error", path);
    }
    if (sb.len > max) {
        ir_sb_free(&sb);
        return KILN_ERR_LIMIT; /* the caller says what the limit is */
    }
    size_t l = sb.len;
    char *r = ir_sb_take(&sb);
    if (!r) return ir_oom(d);
    *out = r;
    *len = l;
    return KILN_OK;
}

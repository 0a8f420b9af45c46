/*
 * support.h — the few services every layer of Kiln uses: allocation (with a
 * fault-injection hook for tests), arenas, diagnostics and growable strings.
 * Internal: nothing here is exported from the shared library.
 */
#ifndef KILN_IR_SUPPORT_H
#define KILN_IR_SUPPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/kiln.h"

#if defined(__GNUC__)
#define KILN_INTERNAL __attribute__((visibility("hidden")))
#define KILN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KILN_INTERNAL
#define KILN_PRINTF(a, b)
#endif

#define KILN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- memory
 * All heap memory of the library goes through these, so a test can make
 * allocation number N fail (ir_alloc_fail_at) and check that every path
 * ends in a clean error with nothing leaked. */
void *ir_malloc(size_t n);
void *ir_calloc(size_t count, size_t size);
void *ir_realloc(void *p, size_t n);
void ir_free(void *p);
char *ir_strdup(const char *s);
char *ir_strndup(const char *s, size_t n);
/* 64-byte aligned allocation for tensor data; free with ir_aligned_free. */
void *ir_aligned_alloc(size_t n);
void ir_aligned_free(void *p);

/* Fault injection: allocation number `n` (1-based, counted from this call)
 * and every later one fail; 0 turns injection off. */
KILN_API void kiln_test_alloc_fail_at(long n);
/* Allocations counted since the last kiln_test_alloc_fail_at(). */
KILN_API long kiln_test_alloc_count(void);
/* True once an injected failure has happened since the last reset. */
KILN_API int kiln_test_alloc_failed(void);
/* Blocks allocated through these functions and not yet freed: a test (or
 * a fuzz target) compares it before and after a call to find leaks without
 * a sanitizer. */
KILN_API long kiln_test_alloc_live(void);

/* Overflow-checked size arithmetic: false on overflow. */
static inline bool ir_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool ir_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* Grows *pp (an array of `elem` bytes per item with capacity *cap) so that it
 * holds at least `need` items. Returns false when out of memory (the array
 * is left as it was). */
bool ir_grow(void **pp, int *cap, int need, size_t elem);
#define IR_GROW(arr, cap, need) ir_grow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* ---------------------------------------------------------------- arena
 * Bump allocator: everything in one module lives in its arena and is freed
 * at once. */
typedef struct ir_arena_chunk ir_arena_chunk;
typedef struct ir_arena {
    ir_arena_chunk *head;
    size_t used_bytes; /* total handed out, for statistics */
} ir_arena;

void ir_arena_init(ir_arena *a);
void ir_arena_free(ir_arena *a);
/* Zeroed, 16-byte aligned memory; NULL when out of memory. */
void *ir_arena_alloc(ir_arena *a, size_t n);
char *ir_arena_strdup(ir_arena *a, const char *s);
char *ir_arena_strndup(ir_arena *a, const char *s, size_t n);

/* ------------------------------------------------------- string builder */
typedef struct ir_sb {
    char *buf;
    size_t len, cap;
    bool oom; /* set once an append failed; later appends are ignored */
} ir_sb;

void ir_sb_init(ir_sb *sb);
void ir_sb_free(ir_sb *sb);
void ir_sb_puts(ir_sb *sb, const char *s);
void ir_sb_putn(ir_sb *sb, const char *s, size_t n);
void ir_sb_putc(ir_sb *sb, char c);
void ir_sb_printf(ir_sb *sb, const char *fmt, ...) KILN_PRINTF(2, 3);
void ir_sb_vprintf(ir_sb *sb, const char *fmt, va_list ap);
/* Prints a float so that it reads back to the same float ("%.9g" trimmed). */
void ir_sb_float(ir_sb *sb, double v);
/* Appends s as the body of a JSON string: '"' and '\\' escaped, control
 * characters as \u00XX, every other byte as it is (UTF-8 passes through). */
void ir_sb_json_escape(ir_sb *sb, const char *s);
/* Appends s as a JSON string literal, quotes included. */
void ir_sb_json_string(ir_sb *sb, const char *s);
/* Detaches the buffer (never NULL unless oom; "" when empty). The caller
 * frees it with ir_free. Returns NULL if any append failed. */
char *ir_sb_take(ir_sb *sb);

/* ------------------------------------------------------------- locations */
typedef struct ir_loc {
    const char *file; /* NULL: no location */
    int32_t line, col;
} ir_loc;

static inline ir_loc ir_loc_none(void) {
    ir_loc l = {0, 0, 0};
    return l;
}

/* ----------------------------------------------------------- diagnostics */
struct kiln_diag {
    ir_sb text;
    int errors;
    kiln_status first; /* status of the first error */
};

/* Appends "file:line:col: error: <msg>\n" (or "kiln: error: <msg>\n" without
 * a location) and returns `st`, so callers write `return ir_error(...)`.
 * `d` may be NULL. */
kiln_status ir_error(kiln_diag *d, kiln_status st, ir_loc loc, const char *fmt, ...)
    KILN_PRINTF(4, 5);
kiln_status ir_verror(kiln_diag *d, kiln_status st, ir_loc loc, const char *fmt, va_list ap);
/* Appends "file:line:col: note: <msg>\n". */
void ir_note(kiln_diag *d, ir_loc loc, const char *fmt, ...) KILN_PRINTF(3, 4);
/* A warning ("kiln: warning: ..."): not an error, the call still succeeds. */
void ir_warning(kiln_diag *d, ir_loc loc, const char *fmt, ...) KILN_PRINTF(3, 4);
/* Appends the source line and a caret under column `col` (1-based):
 *     h1 = dense(x, 128, activation=rellu)
 *                                   ^          */
void ir_diag_source_line(kiln_diag *d, const char *line_start, size_t line_len, int col);
/* Out-of-memory error with a fixed message (allocates nothing if it can't). */
kiln_status ir_oom(kiln_diag *d);

/* ------------------------------------------------------------------ misc */
/* Levenshtein distance, for "did you mean" suggestions. */
int ir_edit_distance(const char *a, const char *b);
/* The candidate closest to `word` if it is close enough to suggest, else NULL. */
const char *ir_closest_name(const char *word, const char *const *candidates, int n);
/* 64-bit FNV-1a hash. */
uint64_t ir_hash_bytes(const void *p, size_t n, uint64_t seed);
/* Reads a whole file into a malloc'ed, NUL-terminated buffer. */
kiln_status ir_read_file(const char *path, char **out, size_t *len, kiln_diag *d);
/* The same for a file of at most `max` bytes: a longer one is not read
 * beyond max + 1 bytes and gives KILN_ERR_LIMIT with no message (the caller
 * names its limit). */
kiln_status ir_read_file_max(const char *path, size_t max, char **out, size_t *len,
                             kiln_diag *d);

#endif

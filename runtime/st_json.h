/*
 * st_json.h — the JSON parser of st_core.c (internal to runtime/st_*.c and
 * runtime/aotrt.c's archive).
 */
#ifndef KILN_RUNTIME_ST_JSON_H
#define KILN_RUNTIME_ST_JSON_H

#include <stdbool.h>
#include <stdlib.h>

#include "runtime/st_core.h"

static inline void *amalloc(const stc_alloc *a, size_t n) { return a ? a->malloc(n) : malloc(n); }
static inline void afree(const stc_alloc *a, void *p) {
    if (a)
        a->free(p);
    else
        free(p);
}

enum { J_NULL, J_FALSE, J_TRUE, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT };

struct stc_json {
    int type;
    char *key; /* in an object */
    char *str;
    double num;
    int n; /* children */
    stc_json *child, *last, *next;
};

/* Parses hdr[0..n): the root, or NULL with *err_at (the byte cJSON names)
 * or *oom set; *end is where the value ends. Free with stc_json_free. */
stc_json *stc_json_parse(const char *hdr, size_t n, const stc_alloc *a, size_t *end, size_t *err_at,
                     bool *oom);
void stc_json_free(stc_json *j, const stc_alloc *a);
/* The first member `key` of object o, or NULL. */
stc_json *stc_json_get(const stc_json *o, const char *key);
/* A number that is an exact non-negative integer (below 2^53). */
bool stc_json_uint(const stc_json *v, uint64_t *out);

#endif

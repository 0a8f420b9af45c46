/*
 * st_json.c — the JSON of safetensors headers (st_json.h): cJSON 1.7's
 * grammar and error positions (whitespace is any byte <= 32, numbers are
 * what strtod reads of [0-9+-.eE], \\u escapes become UTF-8), building a
 * small tree. Only the C library: AOT shared objects carry it.
 */
#include "runtime/st_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { J_MAX_DEPTH = 1000 }; /* cJSON's nesting limit */

typedef struct jp {
    const unsigned char *s;
    size_t len, at;
    int depth;
    const stc_alloc *a;
    bool oom;
} jp;

void stc_json_free(stc_json *j, const stc_alloc *a) {
    while (j) {
        stc_json *next = j->next;
        stc_json_free(j->child, a);
        afree(a, j->key);
        afree(a, j->str);
        afree(a, j);
        j = next;
    }
}

static bool has(const jp *p, size_t i) { return p->at + i < p->len; }

/* cJSON's whitespace: any byte <= 32; at the very end it steps back one. */
static void skip_ws(jp *p) {
    if (!has(p, 0)) return;
    while (has(p, 0) && p->s[p->at] <= 32) p->at++;
    if (p->at == p->len) p->at--;
}

static unsigned hex4(const unsigned char *h) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = h[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0; /* as cJSON */
        v = v << 4 | d;
    }
    return v;
}

/* \uXXXX (and a surrogate pair) at in as UTF-8 at *out; returns the length
 * of the escape, 0 if invalid. */
static int utf16_escape(const unsigned char *in, const unsigned char *end, unsigned char **out) {
    if (end - in < 6) return 0;
    unsigned c = hex4(in + 2), len = 6;
    if (c >= 0xDC00 && c <= 0xDFFF) return 0;
    if (c >= 0xD800 && c <= 0xDBFF) {
        const unsigned char *s2 = in + 6;
        if (end - s2 < 6 || s2[0] != '\\' || s2[1] != 'u') return 0;
        unsigned c2 = hex4(s2 + 2);
        if (c2 < 0xDC00 || c2 > 0xDFFF) return 0;
        c = 0x10000 + (((c & 0x3FF) << 10) | (c2 & 0x3FF));
        len = 12;
    }
    unsigned char *o = *out;
    if (c < 0x80) {
        *o++ = (unsigned char)c;
    } else if (c < 0x800) {
        *o++ = (unsigned char)(0xC0 | c >> 6);
        *o++ = (unsigned char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        *o++ = (unsigned char)(0xE0 | c >> 12);
        *o++ = (unsigned char)(0x80 | (c >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (c & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | c >> 18);
        *o++ = (unsigned char)(0x80 | (c >> 12 & 0x3F));
        *o++ = (unsigned char)(0x80 | (c >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (c & 0x3F));
    }
    *out = o;
    return (int)len;
}

static bool parse_string(jp *p, char **out) {
    const unsigned char *start = p->s + p->at, *in = start + 1, *end = start + 1;
    const unsigned char *limit = p->s + p->len;
    if (*start != '"') goto bad;
    while (end < limit && *end != '"') {
        if (*end == '\\') {
            if (end + 1 >= limit) goto bad;
            end++;
        }
        end++;
    }
    if (end >= limit) goto bad;
    unsigned char *o = amalloc(p->a, (size_t)(end - start) + 1), *w = o;
    if (!o) {
        p->oom = true;
        goto bad;
    }
    while (in < end) {
        if (*in != '\\') {
            *w++ = *in++;
            continue;
        }
        int k = 2;
        switch (in[1]) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case '"':
        case '\\':
        case '/': *w++ = in[1]; break;
        case 'u': k = utf16_escape(in, end, &w); break;
        default: k = 0;
        }
        if (!k) {
            afree(p->a, o);
            goto bad;
        }
        in += k;
    }
    *w = 0;
    *out = (char *)o;
    p->at = (size_t)(end - p->s) + 1;
    return true;
bad:
    p->at = (size_t)(in - p->s);
    return false;
}

static bool parse_number(jp *p, double *out) {
    char buf[64];
    size_t i = 0;
    for (; i < sizeof buf - 1 && has(p, i); i++) {
        char c = (char)p->s[p->at + i];
        if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'e' || c == 'E' || c == '.'))
            break;
        buf[i] = c;
    }
    buf[i] = 0;
    char *after;
    double x = strtod(buf, &after);
    if (after == buf) return false;
    *out = x;
    p->at += (size_t)(after - buf);
    return true;
}

static bool parse_value(jp *p, stc_json *j);

/* An array (open '[') or an object (open '{'), as cJSON reads them. */
static bool parse_list(jp *p, stc_json *j, bool object) {
    char open = object ? '{' : '[', close = object ? '}' : ']';
    if (p->depth >= J_MAX_DEPTH) return false;
    p->depth++;
    j->type = object ? J_OBJECT : J_ARRAY;
    if (!has(p, 0) || p->s[p->at] != open) return false;
    p->at++;
    skip_ws(p);
    if (has(p, 0) && p->s[p->at] == close) goto done;
    if (!has(p, 0)) {
        p->at--;
        return false;
    }
    p->at--;
    do {
        stc_json *c = amalloc(p->a, sizeof *c);
        if (!c) {
            p->oom = true;
            return false;
        }
        memset(c, 0, sizeof *c);
        if (j->last)
            j->last->next = c;
        else
            j->child = c;
        j->last = c;
        j->n++;
        p->at++;
        skip_ws(p);
        if (object) {
            if (!has(p, 0) || !parse_string(p, &c->key)) return false;
            skip_ws(p);
            if (!has(p, 0) || p->s[p->at] != ':') return false;
            p->at++;
            skip_ws(p);
        }
        if (!parse_value(p, c)) return false;
        skip_ws(p);
    } while (has(p, 0) && p->s[p->at] == ',');
    if (!has(p, 0) || p->s[p->at] != close) return false;
done:
    p->depth--;
    p->at++;
    return true;
}

static bool lit(const jp *p, const char *w) {
    size_t n = strlen(w);
    return p->at + n <= p->len && memcmp(p->s + p->at, w, n) == 0;
}

static bool parse_value(jp *p, stc_json *j) {
    static const char *const words[] = {"null", "false", "true"};
    for (int i = 0; i < 3; i++)
        if (lit(p, words[i])) {
            j->type = J_NULL + i;
            p->at += strlen(words[i]);
            return true;
        }
    if (!has(p, 0)) return false;
    unsigned char c = p->s[p->at];
    if (c == '"') {
        j->type = J_STRING;
        return parse_string(p, &j->str);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        j->type = J_NUMBER;
        return parse_number(p, &j->num);
    }
    if (c == '[' || c == '{') return parse_list(p, j, c == '{');
    return false;
}

/* Parses hdr[0..n): the root, or NULL with *err_at (or p->oom) set; *end is
 * where the value ends. */
stc_json *stc_json_parse(const char *hdr, size_t n, const stc_alloc *a, size_t *end,
                            size_t *err_at, bool *oom) {
    jp p = {(const unsigned char *)hdr, n, 0, 0, a, false};
    *err_at = 0;
    *oom = false;
    stc_json *root = amalloc(a, sizeof *root);
    if (!root) {
        *oom = true;
        return NULL;
    }
    memset(root, 0, sizeof *root);
    if (n >= 3 && memcmp(hdr, "\xEF\xBB\xBF", 3) == 0) p.at = 3;
    skip_ws(&p);
    if (n && parse_value(&p, root)) {
        *end = p.at;
        return root;
    }
    stc_json_free(root, a);
    *oom = p.oom;
    *err_at = p.at < n ? p.at : n ? n - 1 : 0;
    return NULL;
}

stc_json *stc_json_get(const stc_json *o, const char *key) {
    for (stc_json *c = o->child; c; c = c->next)
        if (strcmp(c->key, key) == 0) return c;
    return NULL;
}

/* A JSON number that is an exact non-negative integer (below 2^53). */
bool stc_json_uint(const stc_json *v, uint64_t *out) {
    if (!v || v->type != J_NUMBER) return false;
    double x = v->num;
    if (!(x >= 0 && x <= 9007199254740992.0) || x != floor(x)) return false;
    *out = (uint64_t)x;
    return true;
}

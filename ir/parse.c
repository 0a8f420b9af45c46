/*
 * parse.c — reads the .kir text form back into a module: the inverse of
 * print.c, whose header comment is the grammar by example. Each parse
 * function opens with the rule it reads.
 *
 * The text is free-form (newlines are whitespace) except for comments: a
 * comment on the same line as the token before it is that line's trailing
 * comment, and a trailing comment of exactly the form "# file:line:col"
 * after a node becomes the node's location. Every other comment (the
 * "# arena peak" line of a planned function included) is ignored.
 *
 * Errors: the first one stops the parse (no cascades) and reads
 *     file:line:col: error: expected ')' near '%3'
 * followed by the source line and a caret. The input is untrusted (it is
 * fuzzed): the parser never recurses more than one region deep, never reads
 * past `len`, tolerates NUL bytes, and refuses absurd sizes before
 * allocating. Everything is built into a fresh module that is disposed on
 * any error, so nothing leaks.
 */
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits on untrusted input, refused with KILN_ERR_LIMIT. */
enum {
    PARSE_MAX_NODES = 1 << 18,   /* nodes and arguments of the whole module */
    PARSE_MAX_GLOBALS = 1 << 16, /* ir_module_add_global checks names linearly */
    PARSE_MAX_FUNCS = 1 << 16,
    PARSE_MAX_OPERANDS = 0xffff, /* ir_node.n_in is 16 bits */
    PARSE_MAX_RESULTS = 1 << 16,
};
#define PARSE_MAX_TEXT ((size_t)256 << 20) /* 2^18 nodes of 1 KiB; lines and columns are int32 */
#define PARSE_MAX_MEM  ((int64_t)1 << 40)  /* workspace offsets and sizes, in bytes */

/* ---------------------------------------------------------------- tokens */

typedef enum tkind {
    T_EOF,
    T_NAME,   /* relu, f32, param, ... */
    T_VALUE,  /* %7, %x */
    T_GLOBAL, /* @h1.kernel */
    T_NUMBER, /* 128, -1e-07, -inf */
    T_ARROW,  /* -> */
    T_PUNCT,  /* ( ) { } [ ] , : = ? */
    T_BAD     /* a character that starts no token */
} tkind;

typedef struct token {
    tkind kind;
    char ch; /* T_PUNCT */
    const char *s;
    size_t len;
    int line, col;
    size_t bol; /* offset of the start of the token's line */
    /* The comment on the line of the previous token (after it), if any. */
    const char *trail;
    size_t trail_len;
} token;

/* ------------------------------------------------------------ symbol table
 * Open addressing over (text, length) keys. Value labels of a fused region
 * carry the region's id and are invisible outside it. */
typedef struct sym {
    const char *k;
    uint32_t len;
    uint32_t hash;
    void *v;
    int line;   /* where it was defined, for "first defined at line N" */
    int region; /* 0: top level; else the id of the region that defines it */
} sym;

typedef struct symtab {
    sym *e;
    int cap, n;
} symtab;

typedef struct parser {
    const char *src;
    size_t len, pos, bol;
    int line;
    int last_line; /* line of the last token consumed */
    const char *file;
    token t; /* the lookahead */

    kiln_module *m;
    kiln_func *f;
    kiln_diag diag; /* private: the caller's diag may be NULL */
    kiln_status st; /* first error */

    symtab values;  /* %labels of the current function */
    symtab globals; /* @names of the module */
    symtab funcs;
    symtab files; /* interned location file names */
    int region;   /* id of the region being parsed, 0 at top level */
    int regions;  /* ids handed out */

    ir_node **ops; /* operand scratch */
    int cap_ops;
    ir_type *rtypes; /* declared result types of the current function */
    int cap_rtypes;
    char *scratch; /* NUL-terminated copies of token text */
    size_t cap_scratch;
    long n_nodes;
} parser;

/* Printing token text in messages: at most 40 bytes of it. */
#define TOKF(t) (int)((t)->len < 40 ? (t)->len : 40), (t)->s

/* ------------------------------------------------------------ diagnostics */

static void source_line(parser *p, size_t bol, int col) {
    size_t end = bol;
    while (end < p->len && p->src[end] != '\n') end++;
    size_t start = bol, n = end - bol;
    /* Show a window of a long line around the column. */
    if (n > 160) {
        size_t c = (size_t)(col > 0 ? col - 1 : 0);
        size_t skip = c > 80 ? c - 80 : 0;
        if (skip > n) skip = n;
        start += skip;
        n -= skip;
        if (n > 160) n = 160;
        col -= (int)skip;
    }
    ir_diag_source_line(&p->diag, p->src + start, n, col);
}

static kiln_status verr_at(parser *p, kiln_status st, const token *t, const char *fmt, va_list ap) {
    if (p->st) return p->st;
    ir_loc loc = {p->file, t->line, t->col};
    ir_verror(&p->diag, st, loc, fmt, ap);
    source_line(p, t->bol, t->col);
    p->st = st;
    return st;
}

/* An error at token t. */
static kiln_status KILN_PRINTF(4, 5)
    err_at(parser *p, kiln_status st, const token *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr_at(p, st, t, fmt, ap);
    va_end(ap);
    return p->st;
}

static void near_text(const token *t, char *buf, size_t n) {
    if (t->kind == T_EOF)
        snprintf(buf, n, "<eof>");
    else
        snprintf(buf, n, "'%.*s%s'", TOKF(t), t->len > 40 ? "..." : "");
}

/* A bad character is reported when the parser reaches it, so an error on an
 * earlier line (found after the lexer looked ahead) still comes first. */
static kiln_status bad_char(parser *p) {
    unsigned char c = (unsigned char)p->t.s[0];
    if (c >= 32 && c < 127) return err_at(p, KILN_ERR_PARSE, &p->t, "unexpected character '%c'", c);
    return err_at(p, KILN_ERR_PARSE, &p->t, "unexpected character '\\x%02x'", c);
}

/* "<what> near '<lookahead>'", Lua's wording. */
static kiln_status KILN_PRINTF(2, 3) err_near(parser *p, const char *fmt, ...) {
    if (p->st) return p->st;
    if (p->t.kind == T_BAD) return bad_char(p);
    char what[256], near[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    near_text(&p->t, near, sizeof near);
    return err_at(p, KILN_ERR_PARSE, &p->t, "%s near %s", what, near);
}

/* A callee (node creation, inference, ...) reported into p->diag. */
static kiln_status callee_failed(parser *p, const token *t) {
    if (p->st) return p->st;
    p->st = p->diag.errors ? p->diag.first : KILN_ERR_NOMEM;
    if (!p->diag.errors) ir_oom(&p->diag);
    if (p->st != KILN_ERR_NOMEM) source_line(p, t->bol, t->col);
    return p->st;
}

static kiln_status oom(parser *p) {
    if (p->st) return p->st;
    ir_oom(&p->diag);
    return p->st = KILN_ERR_NOMEM;
}

/* ----------------------------------------------------------------- lexer */

static bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
static bool is_ident(char c) {
    return is_alpha(c) || is_digit(c);
}

static char peek_at(const parser *p, size_t i) {
    return i < p->len ? p->src[i] : 0;
}

/* Characters of a %value or @global name; '-' unless it starts "->". */
static bool is_name_char(const parser *p, size_t i) {
    char c = peek_at(p, i);
    if (i >= p->len) return false;
    if (is_ident(c) || c == '.' || c == '$') return true;
    return c == '-' && peek_at(p, i + 1) != '>';
}

static void lex(parser *p) {
    const char *trail = NULL;
    size_t trail_len = 0;
    while (p->pos < p->len) {
        char c = p->src[p->pos];
        if (c == '\n') {
            p->pos++;
            p->line++;
            p->bol = p->pos;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            p->pos++;
        } else if (c == '#') {
            size_t start = ++p->pos;
            while (p->pos < p->len && p->src[p->pos] != '\n') p->pos++;
            if (!trail && p->line == p->last_line) {
                trail = p->src + start;
                trail_len = p->pos - start;
            }
        } else {
            break;
        }
    }
    token *t = &p->t;
    memset(t, 0, sizeof *t);
    t->trail = trail;
    t->trail_len = trail_len;
    t->line = p->line;
    t->col = (int)(p->pos - p->bol) + 1;
    t->bol = p->bol;
    t->s = p->src + p->pos;
    if (p->pos >= p->len) {
        t->kind = T_EOF;
        return;
    }
    size_t start = p->pos;
    char c = p->src[start], c1 = peek_at(p, start + 1);
    if (c == '-' && c1 == '>' && start + 1 < p->len) {
        t->kind = T_ARROW;
        p->pos += 2;
    } else if ((c == '%' || c == '@') && is_name_char(p, start + 1)) {
        t->kind = c == '%' ? T_VALUE : T_GLOBAL;
        p->pos++;
        while (is_name_char(p, p->pos)) p->pos++;
    } else if (is_alpha(c)) {
        t->kind = T_NAME;
        while (p->pos < p->len && is_ident(p->src[p->pos])) p->pos++;
    } else if (is_digit(c) || (c == '.' && is_digit(c1) && start + 1 < p->len) ||
               ((c == '-' || c == '+') && start + 1 < p->len && (is_ident(c1) || c1 == '.'))) {
        /* Numbers, "-inf" and "-nan" included; checked when converted. */
        t->kind = T_NUMBER;
        p->pos++;
        while (p->pos < p->len) {
            char d = p->src[p->pos], prev = p->src[p->pos - 1];
            bool exp_sign = (d == '+' || d == '-') &&
                            (prev == 'e' || prev == 'E' || prev == 'p' || prev == 'P');
            if (!is_ident(d) && d != '.' && !exp_sign) break;
            p->pos++;
        }
    } else if (c && strchr("(){}[],:=?", c)) {
        t->kind = T_PUNCT;
        t->ch = c;
        p->pos++;
    } else {
        t->kind = T_BAD;
        p->pos++;
    }
    t->len = p->pos - start;
}

static void next(parser *p) {
    p->last_line = p->t.line;
    lex(p);
}

static bool at(const parser *p, char ch) {
    return p->t.kind == T_PUNCT && p->t.ch == ch;
}

static bool tok_is(const token *t, const char *s) {
    size_t n = strlen(s);
    return t->len == n && memcmp(t->s, s, n) == 0;
}

static bool at_name(const parser *p, const char *kw) {
    return p->t.kind == T_NAME && tok_is(&p->t, kw);
}

static kiln_status expect(parser *p, char ch) {
    if (p->st) return p->st;
    if (!at(p, ch)) return err_near(p, "expected '%c'", ch);
    next(p);
    return KILN_OK;
}

/* Closes a bracket opened at line `line`; names that line when it differs. */
static kiln_status expect_match(parser *p, char close, char open, int line) {
    if (p->st) return p->st;
    if (at(p, close)) {
        next(p);
        return KILN_OK;
    }
    if (line == p->t.line) return err_near(p, "expected '%c'", close);
    return err_near(p, "expected '%c' (to close '%c' at line %d)", close, open, line);
}

static kiln_status expect_name(parser *p, const char *kw) {
    if (p->st) return p->st;
    if (!at_name(p, kw)) return err_near(p, "expected '%s'", kw);
    next(p);
    return KILN_OK;
}

/* A NUL-terminated copy of t's text, skipping `skip` leading bytes (the
 * sigil). Valid until the next call. */
static const char *tok_cstr(parser *p, const token *t, size_t skip) {
    size_t n = t->len - skip;
    if (n + 1 > p->cap_scratch) {
        size_t cap = p->cap_scratch ? p->cap_scratch : 64;
        while (cap < n + 1) cap *= 2;
        char *s = ir_realloc(p->scratch, cap);
        if (!s) {
            oom(p);
            return NULL;
        }
        p->scratch = s;
        p->cap_scratch = cap;
    }
    memcpy(p->scratch, t->s + skip, n);
    p->scratch[n] = 0;
    return p->scratch;
}

/* --------------------------------------------------------- symbol tables */

static sym *sym_find(const symtab *st, const char *k, size_t len) {
    if (!st->cap) return NULL;
    uint32_t h = (uint32_t)ir_hash_bytes(k, len, 0);
    for (uint32_t i = h & (uint32_t)(st->cap - 1);; i = (i + 1) & (uint32_t)(st->cap - 1)) {
        sym *e = &st->e[i];
        if (!e->k) return NULL;
        if (e->hash == h && e->len == len && memcmp(e->k, k, len) == 0) return e;
    }
}

static bool sym_grow(symtab *st) {
    int cap = st->cap ? st->cap * 2 : 64;
    sym *e = ir_calloc((size_t)cap, sizeof *e);
    if (!e) return false;
    for (int i = 0; i < st->cap; i++) {
        sym *o = &st->e[i];
        if (!o->k) continue;
        uint32_t j = o->hash & (uint32_t)(cap - 1);
        while (e[j].k) j = (j + 1) & (uint32_t)(cap - 1);
        e[j] = *o;
    }
    ir_free(st->e);
    st->e = e;
    st->cap = cap;
    return true;
}

/* Defines k (or redefines an entry the caller found invisible). */
static sym *sym_put(parser *p, symtab *st, const char *k, size_t len, void *v, int line,
                    int region) {
    sym *e = sym_find(st, k, len);
    if (!e) {
        if ((st->n + 1) * 2 > st->cap && !sym_grow(st)) {
            oom(p);
            return NULL;
        }
        uint32_t h = (uint32_t)ir_hash_bytes(k, len, 0);
        uint32_t i = h & (uint32_t)(st->cap - 1);
        while (st->e[i].k) i = (i + 1) & (uint32_t)(st->cap - 1);
        e = &st->e[i];
        e->k = k;
        e->len = (uint32_t)len;
        e->hash = h;
        st->n++;
    }
    e->v = v;
    e->line = line;
    e->region = region;
    return e;
}

static void sym_free(symtab *st) {
    ir_free(st->e);
    memset(st, 0, sizeof *st);
}

/* A value label visible here: top level, or of the region being parsed. */
static bool sym_visible(const parser *p, const sym *e) {
    return e && (e->region == 0 || e->region == p->region);
}

/* ---------------------------------------------------------------- values */

/* Reads a decimal integer token: 0 ok, 1 malformed, 2 out of int64 range. */
static int read_int(const token *t, int64_t *out) {
    size_t i = 0;
    bool neg = false;
    if (t->kind != T_NUMBER) return 1;
    if (t->s[0] == '-' || t->s[0] == '+') neg = t->s[i++] == '-';
    if (i == t->len) return 1;
    uint64_t v = 0, limit = (UINT64_C(1) << 63) - (neg ? 0 : 1);
    for (; i < t->len; i++) {
        if (!is_digit(t->s[i])) return 1;
        unsigned dg = (unsigned)(t->s[i] - '0');
        if (v > (limit - dg) / 10) return 2;
        v = v * 10 + dg;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* integer -> NUMBER (decimal, optional sign) */
static kiln_status parse_int(parser *p, int64_t *out) {
    if (p->st) return p->st;
    int r = read_int(&p->t, out);
    if (r == 1) return err_near(p, "expected an integer");
    if (r == 2)
        return err_at(p, KILN_ERR_LIMIT, &p->t, "integer '%.*s' is out of range", TOKF(&p->t));
    next(p);
    return KILN_OK;
}

/* float -> NUMBER | 'inf' | 'nan' */
static kiln_status parse_float(parser *p, double *out) {
    if (p->st) return p->st;
    const token *t = &p->t;
    bool word =
        t->kind == T_NAME && (tok_is(t, "inf") || tok_is(t, "nan") || tok_is(t, "infinity"));
    if (t->kind != T_NUMBER && !word) return err_near(p, "expected a number");
    char buf[64];
    if (t->len >= sizeof buf) return err_near(p, "malformed number");
    memcpy(buf, t->s, t->len);
    buf[t->len] = 0;
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + t->len) return err_near(p, "malformed number");
    *out = v;
    next(p);
    return KILN_OK;
}

/* bool -> 'true' | 'false' */
static kiln_status parse_bool(parser *p, bool *out) {
    if (p->st) return p->st;
    if (at_name(p, "true"))
        *out = true;
    else if (at_name(p, "false"))
        *out = false;
    else
        return err_near(p, "expected 'true' or 'false'");
    next(p);
    return KILN_OK;
}

/* A dimension of a type or shape attribute: INT in [0, 2^31] or '?'. */
static kiln_status parse_dim(parser *p, int64_t *out, int *n_batch) {
    if (p->st) return p->st;
    if (at(p, '?')) {
        if (++*n_batch > 1)
            return err_at(p, KILN_ERR_SHAPE, &p->t, "a shape may hold one '?' only");
        *out = KILN_BATCH;
        next(p);
        return KILN_OK;
    }
    token t = p->t;
    int64_t v = 0;
    int r = read_int(&t, &v);
    if (r == 1) return err_near(p, "expected a dimension (an integer or '?')");
    if (r == 2 || v < 0 || v > IR_MAX_DIM)
        return err_at(p, KILN_ERR_LIMIT, &t, "dimension %.*s is out of range [0, 2^31]", TOKF(&t));
    *out = v;
    next(p);
    return KILN_OK;
}

/* type -> ('f32' | 'i32') '[' [dim {',' dim}] ']' */
static kiln_status parse_type(parser *p, ir_type *out) {
    if (p->st) return p->st;
    ir_dtype dt;
    if (at_name(p, "f32"))
        dt = IR_F32;
    else if (at_name(p, "i32"))
        dt = IR_I32;
    else
        return err_near(p, "expected a type (f32[...] or i32[...])");
    token first = p->t;
    next(p);
    int open = p->t.line;
    if (expect(p, '[')) return p->st;
    int64_t dims[KILN_MAX_RANK];
    int rank = 0, n_batch = 0;
    if (!at(p, ']')) {
        for (;;) {
            if (rank == KILN_MAX_RANK)
                return err_at(p, KILN_ERR_LIMIT, &p->t, "rank exceeds the maximum of %d",
                              KILN_MAX_RANK);
            if (parse_dim(p, &dims[rank], &n_batch)) return p->st;
            rank++;
            if (!at(p, ',')) break;
            next(p);
        }
    }
    if (expect_match(p, ']', '[', open)) return p->st;
    int64_t total = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == KILN_BATCH) continue;
        if (dims[i] && total > IR_MAX_ELEMS / dims[i])
            return err_at(p, KILN_ERR_LIMIT, &first, "type has more than 2^31 elements");
        total *= dims[i];
    }
    *out = ir_type_make(dt, rank, dims);
    return KILN_OK;
}

/* Keyword arguments of initializers and optimizers. */
typedef struct kwarg {
    const char *name;
    double *f; /* a number, or */
    bool *b;   /* a bool */
} kwarg;

/* kwargs -> '(' [NAME '=' value {',' NAME '=' value}] ')' */
static kiln_status parse_kwargs(parser *p, const char *what, const kwarg *kw, int n) {
    int open = p->t.line;
    if (expect(p, '(')) return p->st;
    bool seen[8] = {0};
    if (!at(p, ')')) {
        for (;;) {
            if (p->t.kind != T_NAME) return err_near(p, "expected an argument name");
            token nt = p->t;
            int k = 0;
            while (k < n && !tok_is(&nt, kw[k].name)) k++;
            if (k == n) {
                const char *names[8];
                for (int i = 0; i < n; i++) names[i] = kw[i].name;
                const char *w = tok_cstr(p, &nt, 0);
                if (!w) return p->st;
                const char *sug = ir_closest_name(w, names, n);
                return err_at(p, KILN_ERR_PARSE, &nt, "unknown argument '%.*s' of %s%s%s%s",
                              TOKF(&nt), what, sug ? "; did you mean '" : "", sug ? sug : "",
                              sug ? "'?" : "");
            }
            if (seen[k])
                return err_at(p, KILN_ERR_PARSE, &nt, "argument '%s' is given twice", kw[k].name);
            seen[k] = true;
            next(p);
            if (expect(p, '=')) return p->st;
            if (kw[k].f ? parse_float(p, kw[k].f) : parse_bool(p, kw[k].b)) return p->st;
            if (!at(p, ',')) break;
            next(p);
        }
    }
    return expect_match(p, ')', '(', open);
}

/* ------------------------------------------------------- module-level */

static kiln_status suggest_err(parser *p, const token *t, const char *what, const char *word,
                               const char *const *cands, int n) {
    const char *sug = word ? ir_closest_name(word, cands, n) : NULL;
    if (sug)
        return err_at(p, KILN_ERR_PARSE, t, "unknown %s '%.*s'; did you mean '%s'?", what, TOKF(t),
                      sug);
    return err_at(p, KILN_ERR_PARSE, t, "unknown %s '%.*s'", what, TOKF(t));
}

/* init -> NAME [kwargs]        constant(v), normal(mean=, stddev=), uniform(min=, max=) */
static kiln_status parse_init(parser *p, kiln_init *out) {
    if (p->t.kind != T_NAME) return err_near(p, "expected an initializer");
    token nt = p->t;
    const char *w = tok_cstr(p, &nt, 0);
    if (!w) return p->st;
    int k = ir_init_lookup(w);
    if (k < 0) {
        const char *names[KILN_INIT_COUNT];
        for (int i = 0; i < KILN_INIT_COUNT; i++) names[i] = ir_init_name((kiln_init_kind)i);
        return suggest_err(p, &nt, "initializer", w, names, KILN_INIT_COUNT);
    }
    next(p);
    kiln_init in = {(kiln_init_kind)k, 0, 0};
    switch (in.kind) {
    case KILN_INIT_CONSTANT: {
        int open = p->t.line;
        if (expect(p, '(') || parse_float(p, &in.a) || expect_match(p, ')', '(', open))
            return p->st;
        break;
    }
    case KILN_INIT_NORMAL: { /* Keras' RandomNormal defaults */
        in.b = 0.05;
        kwarg kw[] = {{"mean", &in.a, NULL}, {"stddev", &in.b, NULL}};
        if (at(p, '(') && parse_kwargs(p, "normal", kw, 2)) return p->st;
        break;
    }
    case KILN_INIT_UNIFORM: { /* Keras' RandomUniform defaults */
        in.a = -0.05;
        in.b = 0.05;
        kwarg kw[] = {{"min", &in.a, NULL}, {"max", &in.b, NULL}};
        if (at(p, '(') && parse_kwargs(p, "uniform", kw, 2)) return p->st;
        break;
    }
    default:
        if (at(p, '('))
            return err_at(p, KILN_ERR_PARSE, &p->t, "initializer '%s' takes no arguments",
                          ir_init_name(in.kind));
        break;
    }
    *out = in;
    return KILN_OK;
}

/* param -> 'param' GLOBAL ':' type '=' init ['frozen']
   state -> 'state' GLOBAL ':' type '=' init */
static kiln_status parse_global(parser *p) {
    ir_global_kind kind = at_name(p, "param") ? IR_GLOBAL_PARAM : IR_GLOBAL_STATE;
    next(p);
    if (p->t.kind != T_GLOBAL) return err_near(p, "expected a name '@name'");
    token nt = p->t;
    sym *prev = sym_find(&p->globals, nt.s + 1, nt.len - 1);
    if (prev)
        return err_at(p, KILN_ERR_PARSE, &nt, "redefinition of '%.*s' (first defined at line %d)",
                      TOKF(&nt), prev->line);
    if (p->m->n_globals >= PARSE_MAX_GLOBALS)
        return err_at(p, KILN_ERR_LIMIT, &nt, "more than %d parameters and state slots",
                      PARSE_MAX_GLOBALS);
    next(p);
    if (expect(p, ':')) return p->st;
    token tt = p->t;
    ir_type t;
    if (parse_type(p, &t)) return p->st;
    if (ir_type_batch_axis(&t) >= 0)
        return err_at(p, KILN_ERR_SHAPE, &tt, "parameters and state need static dimensions");
    kiln_init in;
    if (expect(p, '=')) return p->st;
    token it = p->t;
    if (parse_init(p, &in)) return p->st;
    if (t.dtype == IR_I32 && !ir_init_fits_i32(in))
        return err_at(p, KILN_ERR_INVALID, &it,
                      "i32 parameters and state take zeros, ones or constant(n) with an integer n "
                      "in [-2^31, 2^31)");
    const char *name = tok_cstr(p, &nt, 1);
    if (!name) return p->st;
    ir_global *g = ir_module_add_global(p->m, kind, name, &t, in, &p->diag);
    if (!g) return callee_failed(p, &nt);
    if (at_name(p, "frozen")) {
        if (kind != IR_GLOBAL_PARAM)
            return err_at(p, KILN_ERR_PARSE, &p->t, "'frozen' applies to parameters only");
        g->trainable = false;
        next(p);
    }
    if (!sym_put(p, &p->globals, g->name, strlen(g->name), g, nt.line, 0)) return p->st;
    return KILN_OK;
}

/* train -> 'train' '{' {key '=' value} '}'
   key   -> 'optimizer' | 'epochs' | 'batch_size' | 'seed' | 'metrics' */
static kiln_status parse_train(parser *p) {
    token tt = p->t;
    if (p->m->train.present) return err_at(p, KILN_ERR_PARSE, &tt, "a second train block");
    next(p);
    int open = p->t.line;
    if (expect(p, '{')) return p->st;
    ir_train_config *c = &p->m->train;
    c->present = true;
    static const char *const keys[] = {"optimizer", "epochs", "batch_size", "seed", "metrics"};
    bool seen[5] = {0};
    while (!at(p, '}')) {
        if (p->t.kind == T_EOF) return expect_match(p, '}', '{', open);
        if (p->t.kind != T_NAME) return err_near(p, "expected a train setting");
        token kt = p->t;
        int k = 0;
        while (k < 5 && !tok_is(&kt, keys[k])) k++;
        if (k == 5) {
            const char *w = tok_cstr(p, &kt, 0);
            if (!w) return p->st;
            return suggest_err(p, &kt, "train setting", w, keys, 5);
        }
        if (seen[k]) return err_at(p, KILN_ERR_PARSE, &kt, "'%s' is set twice", keys[k]);
        seen[k] = true;
        next(p);
        if (expect(p, '=')) return p->st;
        token vt = p->t;
        int64_t v;
        switch (k) {
        case 0: { /* optimizer -> NAME [kwargs] */
            static const char *const opts[] = {"sgd", "adam", "adamw"};
            static const ir_opt_kind kinds[] = {IR_OPT_SGD, IR_OPT_ADAM, IR_OPT_ADAMW};
            int o = 0;
            while (o < 3 && !(vt.kind == T_NAME && tok_is(&vt, opts[o]))) o++;
            if (o == 3) {
                if (vt.kind != T_NAME) return err_near(p, "expected an optimizer");
                const char *w = tok_cstr(p, &vt, 0);
                if (!w) return p->st;
                return suggest_err(p, &vt, "optimizer", w, opts, 3);
            }
            next(p);
            ir_optimizer *op = &c->opt;
            *op = ir_optimizer_defaults(kinds[o]);
            if (!at(p, '(')) break;
            if (op->kind == IR_OPT_SGD) {
                kwarg kw[] = {{"lr", &op->lr, NULL},
                              {"momentum", &op->momentum, NULL},
                              {"nesterov", NULL, &op->nesterov}};
                if (parse_kwargs(p, "sgd", kw, 3)) return p->st;
            } else {
                kwarg kw[] = {{"lr", &op->lr, NULL},
                              {"beta_1", &op->beta_1, NULL},
                              {"beta_2", &op->beta_2, NULL},
                              {"epsilon", &op->epsilon, NULL},
                              {"weight_decay", &op->weight_decay, NULL}};
                int n = op->kind == IR_OPT_ADAMW ? 5 : 4;
                if (parse_kwargs(p, opts[o], kw, n)) return p->st;
            }
            break;
        }
        case 1: /* epochs */
        case 2: /* batch_size */
            if (parse_int(p, &v)) return p->st;
            if (v < 1 || (k == 2 && v > IR_MAX_DIM) || (k == 1 && v > INT32_MAX))
                return err_at(p, KILN_ERR_PARSE, &vt, "%s must be in [1, %lld]", keys[k],
                              (long long)(k == 2 ? IR_MAX_DIM : INT32_MAX));
            if (k == 1)
                c->epochs = v;
            else
                c->batch_size = v;
            break;
        case 3:
            if (parse_int(p, &c->seed)) return p->st;
            break;
        case 4: { /* metrics -> '[' [NAME {',' NAME}] ']' */
            int mopen = p->t.line;
            if (expect(p, '[')) return p->st;
            static const char *const metrics[] = {"accuracy"};
            while (!at(p, ']')) {
                if (p->t.kind != T_NAME) return err_near(p, "expected a metric");
                token mt = p->t;
                if (!tok_is(&mt, "accuracy")) {
                    const char *w = tok_cstr(p, &mt, 0);
                    if (!w) return p->st;
                    return suggest_err(p, &mt, "metric", w, metrics, 1);
                }
                c->metric_accuracy = true;
                next(p);
                if (!at(p, ',')) break;
                next(p);
            }
            if (expect_match(p, ']', '[', mopen)) return p->st;
            break;
        }
        }
        if (p->st) return p->st;
    }
    next(p);
    return KILN_OK;
}

/* ---------------------------------------------------------------- nodes */

/* A trailing "# file:line:col" comment as a location (file interned). */
static kiln_status trail_loc(parser *p, const token *t, ir_loc *out) {
    *out = ir_loc_none();
    const char *s = t->trail;
    size_t n = t->trail_len;
    if (!s) return KILN_OK;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    int64_t num[2] = {0, 0};
    for (int k = 1; k >= 0; k--) { /* col, then line, from the end */
        size_t dg = 0;
        while (dg < n && is_digit(s[n - 1 - dg])) dg++;
        if (dg == 0 || dg > 9 || dg == n || s[n - 1 - dg] != ':') return KILN_OK;
        for (size_t i = n - dg; i < n; i++) num[k] = num[k] * 10 + (s[i] - '0');
        n -= dg + 1;
    }
    if (n == 0) return KILN_OK;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 32 || s[i] == 127) return KILN_OK;
    sym *e = sym_find(&p->files, s, n);
    if (!e) {
        char *name = ir_arena_strndup(&p->m->arena, s, n);
        if (!name) return oom(p);
        e = sym_put(p, &p->files, name, n, name, 0, 0);
        if (!e) return p->st;
    }
    out->file = e->v;
    out->line = (int32_t)num[0];
    out->col = (int32_t)num[1];
    return KILN_OK;
}

/* A name from a fixed set (an enum's names, or the ops an op-valued
 * attribute may name): its index in names, or an error suggesting one. */
static kiln_status parse_choice(parser *p, const char *what, const char *const *names, int n,
                                int *out) {
    token vt = p->t;
    if (vt.kind != T_NAME) return err_near(p, "expected a name");
    const char *w = tok_cstr(p, &vt, 0);
    if (!w) return p->st;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], w) == 0) {
            *out = i;
            next(p);
            return KILN_OK;
        }
    return suggest_err(p, &vt, what, w, names, n);
}

/* An op-valued attribute: "none" (0) or an op's name. Whether that op may
 * be named here (IR_FACT_ACT) is the carrier's infer's to say. */
static kiln_status parse_op_ref(parser *p, const ir_attr_desc *d, int64_t *out) {
    const char *names[IR_NUM_OPCODES];
    int ops[IR_NUM_OPCODES], n = 0;
    names[n] = "none", ops[n++] = 0;
    if (p->t.kind == T_NAME) {
        const char *w = tok_cstr(p, &p->t, 0);
        if (!w) return p->st;
        int op = ir_op_lookup(w);
        if (op >= 0) {
            *out = op;
            next(p);
            return KILN_OK;
        }
    }
    for (int op = IR_FIRST_OP; op < IR_NUM_OPCODES; op++)
        if (ir_op_has(op, IR_FACT_ACT)) names[n] = ir_op_name(op), ops[n++] = op;
    int k;
    if (parse_choice(p, d->name, names, n, &k)) return p->st;
    *out = ops[k];
    return KILN_OK;
}

/* list -> '[' [item {',' item}] ']' of d's kind (ints, floats, shape). */
static kiln_status parse_attr_list(parser *p, const ir_attr_desc *d, ir_attr *a) {
    int lopen = p->t.line, n = 0, n_batch = 0;
    if (expect(p, '[')) return p->st;
    if (!at(p, ']')) {
        for (;;) {
            if (n == IR_ATTR_MAX_LIST)
                return err_at(p, KILN_ERR_LIMIT, &p->t, "%s: more than %d entries", d->name,
                              IR_ATTR_MAX_LIST);
            kiln_status st = d->kind == IR_AK_SHAPE    ? parse_dim(p, &a->v.ints[n], &n_batch)
                             : d->kind == IR_AK_FLOATS ? parse_float(p, &a->v.floats[n])
                                                       : parse_int(p, &a->v.ints[n]);
            if (st) return p->st;
            n++;
            if (!at(p, ',')) break;
            next(p);
        }
    }
    if (expect_match(p, ']', '[', lopen)) return p->st;
    a->n = (int8_t)n;
    return KILN_OK;
}

/* attr -> 'true' | 'false' | INT | float | list | dtype | NAME, as d's kind says. */
static kiln_status parse_attr_value(parser *p, const ir_attr_desc *d, ir_attr *a) {
    switch ((ir_attr_kind)d->kind) {
    case IR_AK_BOOL: {
        bool b = false;
        if (parse_bool(p, &b)) return p->st;
        a->v.i = b;
        return KILN_OK;
    }
    case IR_AK_INT: return parse_int(p, &a->v.i);
    case IR_AK_FLOAT: return parse_float(p, &a->v.f);
    case IR_AK_INTS:
    case IR_AK_FLOATS:
    case IR_AK_SHAPE: return parse_attr_list(p, d, a);
    case IR_AK_DTYPE:
        if (at_name(p, "f32"))
            a->v.i = IR_F32;
        else if (at_name(p, "i32"))
            a->v.i = IR_I32;
        else
            return err_near(p, "expected a dtype (f32 or i32)");
        next(p);
        return KILN_OK;
    case IR_AK_ENUM: {
        const char *names[IR_ATTR_MAX_ENUM];
        for (int i = 0; i < d->n_enum; i++) names[i] = d->enum_names[i];
        int k;
        if (parse_choice(p, d->name, names, d->n_enum, &k)) return p->st;
        a->v.i = k;
        return KILN_OK;
    }
    case IR_AK_OP: return parse_op_ref(p, d, &a->v.i);
    }
    return err_near(p, "attribute of an unknown kind"); /* a malformed schema in ops.def */
}

/* attrs -> '{' NAME '=' attr {',' NAME '=' attr} '}' */
static kiln_status parse_attrs(parser *p, int op, ir_attrs *a, unsigned *seen) {
    const ir_op_info *info = ir_op(op);
    int open = p->t.line;
    next(p); /* '{' */
    for (;;) {
        if (p->t.kind != T_NAME) return err_near(p, "expected an attribute name");
        token nt = p->t;
        int k = 0;
        while (k < info->n_attrs && !tok_is(&nt, info->attrs[k].name)) k++;
        if (k == info->n_attrs) {
            if (info->n_attrs == 0)
                return err_at(p, KILN_ERR_PARSE, &nt, "%s has no attributes (got '%.*s')",
                              info->name, TOKF(&nt));
            const char *names[IR_MAX_ATTRS];
            for (int i = 0; i < info->n_attrs; i++) names[i] = info->attrs[i].name;
            const char *w = tok_cstr(p, &nt, 0);
            if (!w) return p->st;
            const char *sug = ir_closest_name(w, names, info->n_attrs);
            return err_at(p, KILN_ERR_PARSE, &nt, "unknown attribute '%.*s' of %s%s%s%s", TOKF(&nt),
                          info->name, sug ? "; did you mean '" : "", sug ? sug : "",
                          sug ? "'?" : "");
        }
        const ir_attr_desc *d = &info->attrs[k];
        if (*seen & (1u << k))
            return err_at(p, KILN_ERR_PARSE, &nt, "attribute '%s' is given twice", d->name);
        *seen |= 1u << k;
        next(p);
        if (expect(p, '=') || parse_attr_value(p, d, &a->v[k])) return p->st;
        if (!at(p, ',')) break;
        next(p);
    }
    return expect_match(p, '}', '{', open);
}

/* Attributes declared "=@type" (a constant's dtype and shape) come from
 * the annotation unless given (`seen`). */
static void fill_from_type(const ir_op_info *info, ir_attrs *a, unsigned seen, const ir_type *t) {
    for (int k = 0; k < info->n_attrs; k++) {
        if (!info->attrs[k].from_type || (seen & (1u << k))) continue;
        if (info->attrs[k].kind == IR_AK_DTYPE) a->v[k].v.i = t->dtype;
        if (info->attrs[k].kind == IR_AK_SHAPE) {
            a->v[k].n = t->rank;
            memcpy(a->v[k].v.ints, t->dims, sizeof(int64_t) * (size_t)t->rank);
        }
    }
}

/* operand -> VALUE | GLOBAL
   Inside a region, a value from outside must be one of the region's
   operands; it is marked read (aux = 2) so unread operands can be named. */
static kiln_status parse_operand(parser *p, ir_node **out) {
    token t = p->t;
    ir_node *x;
    if (t.kind == T_VALUE) {
        sym *e = sym_find(&p->values, t.s + 1, t.len - 1);
        if (!e) return err_at(p, KILN_ERR_PARSE, &t, "undefined value '%.*s'", TOKF(&t));
        if (!sym_visible(p, e))
            return err_at(p, KILN_ERR_PARSE, &t,
                          "'%.*s' is defined inside the fused region at line %d and is not "
                          "visible here",
                          TOKF(&t), e->line);
        x = e->v;
        if (p->region && e->region == p->region) {
            *out = x;
            next(p);
            return KILN_OK;
        }
    } else if (t.kind == T_GLOBAL) {
        sym *e = sym_find(&p->globals, t.s + 1, t.len - 1);
        if (!e) {
            const char **names = ir_malloc(sizeof(char *) * ((size_t)p->m->n_globals + 1));
            const char *w = names ? tok_cstr(p, &t, 1) : NULL;
            for (int i = 0; names && i < p->m->n_globals; i++) names[i] = p->m->globals[i]->name;
            const char *sug = w ? ir_closest_name(w, names, p->m->n_globals) : NULL;
            if (sug)
                err_at(p, KILN_ERR_PARSE, &t,
                       "unknown parameter or state '%.*s'; did you mean "
                       "'@%s'?",
                       TOKF(&t), sug);
            else
                err_at(p, KILN_ERR_PARSE, &t, "unknown parameter or state '%.*s'", TOKF(&t));
            ir_free(names);
            return p->st;
        }
        x = ((ir_global *)e->v)->ref;
    } else {
        return err_near(p, "expected a value ('%%name' or '@name')");
    }
    if (p->region) {
        if (!x->aux)
            return err_at(p, KILN_ERR_PARSE, &t,
                          "'%.*s' is read in a fused region but is not one of its operands",
                          TOKF(&t));
        x->aux = 2;
    }
    *out = x;
    next(p);
    return KILN_OK;
}

/* Checks a planned node's slot against the function's workspace, so the
 * interpreter can trust the plan. */
static kiln_status check_mem(parser *p, const token *mt, const ir_node *n) {
    const kiln_func *f = p->f;
    bool batch = ir_type_batch_axis(&n->type) >= 0;
    int64_t bytes = ir_type_static_numel(&n->type) * (int64_t)ir_dtype_size(n->type.dtype);
    /* The batch part scales with the batch, the fixed part does not. */
    if (n->mem_batch != batch)
        return err_at(p, KILN_ERR_INVALID, mt, "mem(%s:...) on a value %s a batch dimension",
                      n->mem_batch ? "b" : "f", n->mem_batch ? "without" : "with");
    int64_t room = n->mem_batch ? f->mem_per_sample : f->mem_fixed;
    if (n->mem_offset + bytes > room)
        return err_at(p, KILN_ERR_INVALID, mt,
                      "the %lld-byte buffer at offset %lld exceeds the %s part of the workspace "
                      "(%lld bytes)",
                      (long long)bytes, (long long)n->mem_offset,
                      n->mem_batch ? "per-sample" : "fixed", (long long)room);
    return KILN_OK;
}

/* A planned function's workspace is what its values need at most: a plan
 * (plan-memory's or any other) packs them into no more than the sum of
 * their sizes, each rounded to its alignment. A larger claim would only
 * make the runtime allocate, and the interpreter fill, memory no value
 * uses (mem(fixed=2^40) on a function of three small nodes), so it is
 * refused here, before anything is allocated for it. */
static kiln_status check_workspace(parser *p, const token *name, const kiln_func *f) {
    int64_t need[2] = {0, 0}; /* fixed bytes, bytes per sample */
    for (int i = 0; i < f->n_nodes; i++) {
        const ir_node *n = f->nodes[i];
        if (n->mem_offset < 0 || n->type.dtype == IR_VOID) continue;
        int64_t bytes = ir_type_static_numel(&n->type) * (int64_t)ir_dtype_size(n->type.dtype);
        need[n->mem_batch ? 1 : 0] += (bytes + 63) / 64 * 64; /* < 2^20 nodes of < 2^33 bytes */
    }
    if (f->mem_fixed <= need[0] && f->mem_per_sample <= need[1]) return KILN_OK;
    return err_at(p, KILN_ERR_LIMIT, name,
                  "@%s: a workspace of %lld bytes + %lld per sample is more than its values can "
                  "need (%lld + %lld per sample)",
                  f->name, (long long)f->mem_fixed, (long long)f->mem_per_sample,
                  (long long)need[0], (long long)need[1]);
}

/* nmem -> 'mem' '(' ('f' | 'b') ':' INT [',' 'inplace'] ')' */
static kiln_status parse_node_mem(parser *p, int64_t *off, int8_t *batch, int8_t *inplace) {
    next(p); /* 'mem' */
    int open = p->t.line;
    if (expect(p, '(')) return p->st;
    if (at_name(p, "f") || at_name(p, "b"))
        *batch = at_name(p, "b");
    else
        return err_near(p, "expected 'f' or 'b'");
    next(p);
    if (expect(p, ':')) return p->st;
    token ot = p->t;
    if (parse_int(p, off)) return p->st;
    if (*off < 0 || *off > PARSE_MAX_MEM || *off % 4)
        return err_at(p, KILN_ERR_INVALID, &ot,
                      "memory offset %lld must be a multiple of 4 in [0, 2^40]", (long long)*off);
    if (at(p, ',')) {
        next(p);
        if (expect_name(p, "inplace")) return p->st;
        *inplace = 1;
    }
    return expect_match(p, ')', '(', open);
}

static kiln_status parse_region(parser *p, ir_node *n, const token *op, const token *open);

/* node    -> [VALUE '='] NAME '(' [operand {',' operand}] ')' [attrs] [':' type] [nmem]
              ['{' region '}']            (the region for fused only)
   Inside a region (p->region != 0) only elementwise ops and assign. */
static kiln_status parse_node(parser *p, ir_region *region) {
    token first = p->t, label = {0};
    bool has_label = p->t.kind == T_VALUE;
    if (has_label) {
        label = p->t;
        sym *e = sym_find(&p->values, label.s + 1, label.len - 1);
        if (sym_visible(p, e))
            return err_at(p, KILN_ERR_PARSE, &label,
                          "redefinition of '%.*s' (first defined at line %d)", TOKF(&label),
                          e->line);
        next(p);
        if (expect(p, '=')) return p->st;
    }
    if (p->t.kind != T_NAME) return err_near(p, "expected an op name");
    token ot = p->t;
    if (!region && tok_is(&ot, "yield"))
        return err_at(p, KILN_ERR_PARSE, &ot, "'yield' outside a fused region");
    const char *w = tok_cstr(p, &ot, 0);
    if (!w) return p->st;
    int op = ir_op_lookup(w);
    if (op < 0) {
        const char *names[IR_NUM_OPCODES];
        int n = 0;
        for (int i = IR_FIRST_OP; i < IR_NUM_OPCODES; i++) names[n++] = ir_op_name(i);
        return suggest_err(p, &ot, "op", w, names, n);
    }
    const ir_op_info *info = ir_op(op);
    if (region && !info->is_ew && op != IR_OP_assign)
        return err_at(p, KILN_ERR_PARSE, &ot,
                      "%s cannot appear in a fused region (only elementwise ops and assign)",
                      info->name);
    if (++p->n_nodes > PARSE_MAX_NODES)
        return err_at(p, KILN_ERR_LIMIT, &ot, "module has more than %d nodes", PARSE_MAX_NODES);
    next(p);

    /* Operands. */
    int open = p->t.line, n_in = 0;
    if (expect(p, '(')) return p->st;
    if (!at(p, ')')) {
        for (;;) {
            if (n_in == PARSE_MAX_OPERANDS)
                return err_at(p, KILN_ERR_LIMIT, &p->t, "more than %d operands",
                              PARSE_MAX_OPERANDS);
            if (!IR_GROW(p->ops, p->cap_ops, n_in + 1)) return oom(p);
            if (parse_operand(p, &p->ops[n_in])) return p->st;
            n_in++;
            if (!at(p, ',')) break;
            next(p);
        }
    }
    if (expect_match(p, ')', '(', open)) return p->st;

    ir_attrs attrs = ir_attrs_default(op);
    unsigned seen = 0;
    if (at(p, '{') && op != IR_OP_fused && parse_attrs(p, op, &attrs, &seen)) return p->st;
    ir_type annot = ir_type_void();
    token tt = p->t;
    if (has_label) {
        if (expect(p, ':')) return p->st;
        tt = p->t;
        if (parse_type(p, &annot)) return p->st;
    } else if (at(p, ':')) {
        return err_at(p, KILN_ERR_PARSE, &p->t,
                      "a typed value needs a label ('%%name = %s(...) : type')", info->name);
    }
    int64_t off = -1;
    int8_t mbatch = 0, minplace = 0;
    token mt = p->t;
    if (at_name(p, "mem") && parse_node_mem(p, &off, &mbatch, &minplace)) return p->st;

    if (has_label) fill_from_type(info, &attrs, seen, &annot);
    token brace = p->t;
    if (op == IR_OP_fused) {
        if (!at(p, '{')) return err_near(p, "expected '{' (the body of fused)");
        next(p);
    }

    ir_loc kl = {p->file, ot.line, ot.col};
    ir_node *n = ir_node_create(p->m, op, n_in, p->ops, &attrs, kl, &p->diag);
    if (!n) return callee_failed(p, &ot);
    /* The lookahead's trailing comment belongs to this node's (last) line. */
    if (trail_loc(p, &p->t, &n->loc)) return p->st;
    n->mem_offset = off;
    n->mem_batch = mbatch;
    n->mem_inplace = minplace;

    if (op == IR_OP_fused) {
        if (parse_region(p, n, &ot, &brace)) return p->st;
        if (has_label && !n->region->yield)
            return err_at(p, KILN_ERR_PARSE, &label,
                          "the region of '%.*s' has no 'yield' for its value", TOKF(&label));
        if (ir_node_infer(n, &p->diag)) return callee_failed(p, &ot);
    }

    if (has_label && n->type.dtype == IR_VOID)
        return err_at(p, KILN_ERR_PARSE, &label, "%s yields no value; remove the label '%.*s ='",
                      info->name, TOKF(&label));
    if (!has_label && n->type.dtype != IR_VOID)
        return err_at(p, KILN_ERR_PARSE, &first, "%s yields a value; write '%%name = %s(...)'",
                      info->name, info->name);
    if (has_label && !ir_type_eq(&annot, &n->type)) {
        char ta[IR_TYPE_STR_MAX], tb[IR_TYPE_STR_MAX];
        return err_at(p, KILN_ERR_SHAPE, &tt, "%s: annotated type %s differs from the inferred %s",
                      info->name, ir_type_str(&annot, ta, sizeof ta),
                      ir_type_str(&n->type, tb, sizeof tb));
    }
    if (off >= 0) {
        if (n->type.dtype == IR_VOID)
            return err_at(p, KILN_ERR_INVALID, &mt, "%s has no value to place in memory",
                          info->name);
        if (p->f->planned && !region && check_mem(p, &mt, n)) return p->st;
    }

    kiln_status st = region ? ir_region_append(p->m, region, n, &p->diag)
                            : ir_func_insert(p->f, -1, n, &p->diag);
    if (st) return callee_failed(p, &ot);
    if (has_label && !sym_put(p, &p->values, label.s + 1, label.len - 1, n, label.line, p->region))
        return p->st;
    return KILN_OK;
}

/* region -> {node} ['yield' VALUE] '}'      (after "fused(...) ... {")
   The fused node's operands are the values the body may read from outside. */
static kiln_status parse_region(parser *p, ir_node *n, const token *op, const token *open) {
    ir_region *r = ir_arena_alloc(&p->m->arena, sizeof *r);
    if (!r) return oom(p);
    n->region = r;
    for (int k = 0; k < n->n_in; k++) n->in[k]->aux = 1;
    p->region = ++p->regions;
    while (!at(p, '}') && !at_name(p, "yield")) {
        if (p->t.kind == T_EOF || at_name(p, "return"))
            return expect_match(p, '}', '{', open->line);
        if (parse_node(p, r)) return p->st;
    }
    if (at_name(p, "yield")) {
        next(p);
        if (p->t.kind != T_VALUE) return err_near(p, "expected a value after 'yield'");
        token vt = p->t;
        sym *e = sym_find(&p->values, vt.s + 1, vt.len - 1);
        if (!e || e->region != p->region)
            return err_at(p, KILN_ERR_PARSE, &vt,
                          "yield needs a value computed in the region body, not '%.*s'", TOKF(&vt));
        r->yield = e->v;
        next(p);
    }
    if (expect_match(p, '}', '{', open->line)) return p->st;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k]->aux != 2)
            return err_at(p, KILN_ERR_PARSE, op, "operand %d of fused is never read by its region",
                          k + 1);
    for (int k = 0; k < n->n_in; k++) n->in[k]->aux = 0;
    p->region = 0;
    return KILN_OK;
}

/* func    -> 'func' GLOBAL '(' [arg {',' arg}] ')' '->' results [fmem]
              '{' {node} 'return' [VALUE {',' VALUE}] '}'
   arg     -> VALUE ':' type
   results -> type | '(' [type {',' type}] ')'
   fmem    -> 'mem' '(' 'fixed' '=' INT ',' 'per_sample' '=' INT ')' */
static kiln_status parse_func(parser *p) {
    next(p); /* 'func' */
    if (p->t.kind != T_GLOBAL) return err_near(p, "expected a function name '@name'");
    token nt = p->t;
    sym *prev = sym_find(&p->funcs, nt.s + 1, nt.len - 1);
    if (prev)
        return err_at(p, KILN_ERR_PARSE, &nt,
                      "redefinition of function '%.*s' (first defined at line %d)", TOKF(&nt),
                      prev->line);
    if (p->m->n_funcs >= PARSE_MAX_FUNCS)
        return err_at(p, KILN_ERR_LIMIT, &nt, "more than %d functions", PARSE_MAX_FUNCS);
    const char *name = tok_cstr(p, &nt, 1);
    if (!name) return p->st;
    kiln_func *f = kiln_func_create(p->m, name);
    if (!f) return oom(p);
    p->f = f;
    if (!sym_put(p, &p->funcs, f->name, strlen(f->name), f, nt.line, 0)) return p->st;
    sym_free(&p->values);
    next(p);

    int open = p->t.line;
    if (expect(p, '(')) return p->st;
    if (!at(p, ')')) {
        for (;;) {
            if (p->t.kind != T_VALUE) return err_near(p, "expected an argument '%%name'");
            token arg = p->t;
            sym *e = sym_find(&p->values, arg.s + 1, arg.len - 1);
            if (e)
                return err_at(p, KILN_ERR_PARSE, &arg,
                              "redefinition of '%.*s' (first defined at line %d)", TOKF(&arg),
                              e->line);
            if (++p->n_nodes > PARSE_MAX_NODES)
                return err_at(p, KILN_ERR_LIMIT, &arg, "module has more than %d nodes",
                              PARSE_MAX_NODES);
            next(p);
            ir_type t;
            if (expect(p, ':') || parse_type(p, &t)) return p->st;
            const char *an = tok_cstr(p, &arg, 1);
            if (!an) return p->st;
            ir_node *a = ir_func_add_arg(f, an, &t, &p->diag);
            if (!a) return callee_failed(p, &arg);
            if (!sym_put(p, &p->values, arg.s + 1, arg.len - 1, a, arg.line, 0)) return p->st;
            if (!at(p, ',')) break;
            next(p);
        }
    }
    if (expect_match(p, ')', '(', open)) return p->st;
    if (p->t.kind != T_ARROW) return err_near(p, "expected '->'");
    next(p);

    int n_res = 0;
    bool paren = at(p, '(');
    int ropen = p->t.line;
    if (paren) next(p);
    if (!paren || !at(p, ')')) {
        for (;;) {
            if (n_res == PARSE_MAX_RESULTS)
                return err_at(p, KILN_ERR_LIMIT, &p->t, "more than %d results", PARSE_MAX_RESULTS);
            if (!IR_GROW(p->rtypes, p->cap_rtypes, n_res + 1)) return oom(p);
            if (parse_type(p, &p->rtypes[n_res])) return p->st;
            n_res++;
            if (!paren || !at(p, ',')) break;
            next(p);
        }
    }
    if (paren && expect_match(p, ')', '(', ropen)) return p->st;

    if (at_name(p, "mem")) {
        next(p);
        int mopen = p->t.line;
        if (expect(p, '(') || expect_name(p, "fixed") || expect(p, '=')) return p->st;
        token ft = p->t;
        if (parse_int(p, &f->mem_fixed) || expect(p, ',') || expect_name(p, "per_sample") ||
            expect(p, '='))
            return p->st;
        token pt = p->t;
        if (parse_int(p, &f->mem_per_sample) || expect_match(p, ')', '(', mopen)) return p->st;
        if (f->mem_fixed < 0 || f->mem_fixed > PARSE_MAX_MEM || f->mem_fixed % 4)
            return err_at(p, KILN_ERR_INVALID, &ft,
                          "workspace size %lld must be a multiple of 4 in [0, 2^40]",
                          (long long)f->mem_fixed);
        if (f->mem_per_sample < 0 || f->mem_per_sample > PARSE_MAX_MEM || f->mem_per_sample % 4)
            return err_at(p, KILN_ERR_INVALID, &pt,
                          "workspace size %lld must be a multiple of 4 in [0, 2^40]",
                          (long long)f->mem_per_sample);
        f->planned = true;
    }

    token brace = p->t;
    if (expect(p, '{')) return p->st;
    while (!at_name(p, "return")) {
        if (p->t.kind == T_EOF) return expect_match(p, '}', '{', brace.line);
        if (at(p, '}')) return err_near(p, "expected 'return'");
        if (parse_node(p, NULL)) return p->st;
    }
    token rt = p->t;
    next(p);
    int got = 0;
    if (!at(p, '}')) {
        for (;;) {
            token vt = p->t;
            ir_node *v;
            if (parse_operand(p, &v)) return p->st;
            if (got < n_res && !ir_type_eq(&v->type, &p->rtypes[got])) {
                char ta[IR_TYPE_STR_MAX], tb[IR_TYPE_STR_MAX];
                return err_at(p, KILN_ERR_SHAPE, &vt,
                              "result %d of @%s is declared %s but '%.*s' is %s", got + 1, f->name,
                              ir_type_str(&p->rtypes[got], ta, sizeof ta), TOKF(&vt),
                              ir_type_str(&v->type, tb, sizeof tb));
            }
            if (ir_func_add_result(f, v, &p->diag)) return callee_failed(p, &vt);
            got++;
            if (!at(p, ',')) break;
            next(p);
        }
    }
    if (got != n_res)
        return err_at(p, KILN_ERR_SHAPE, &rt, "@%s declares %d result%s but returns %d", f->name,
                      n_res, n_res == 1 ? "" : "s", got);
    if (expect_match(p, '}', '{', brace.line)) return p->st;
    if (f->planned && check_workspace(p, &nt, f)) return p->st;
    p->f = NULL;
    return KILN_OK;
}

/* module -> 'module' GLOBAL {param | state | train | func} EOF */
static kiln_status parse_module(parser *p) {
    if (!at_name(p, "module")) return err_near(p, "expected 'module'");
    next(p);
    if (p->t.kind != T_GLOBAL) return err_near(p, "expected the module name '@name'");
    const char *name = tok_cstr(p, &p->t, 1);
    if (!name) return p->st;
    p->m = kiln_module_create(name);
    if (!p->m) return oom(p);
    next(p);
    while (p->t.kind != T_EOF) {
        if (at_name(p, "param") || at_name(p, "state"))
            parse_global(p);
        else if (at_name(p, "train"))
            parse_train(p);
        else if (at_name(p, "func"))
            parse_func(p);
        else
            err_near(p, "expected 'param', 'state', 'train' or 'func'");
        if (p->st) return p->st;
    }
    return KILN_OK;
}

/* ------------------------------------------------------------ entry points */

/* An op name: the token before '(' of a node. */
static bool is_op_name(const token *t) {
    for (int i = IR_FIRST_OP; i < IR_NUM_OPCODES; i++)
        if (tok_is(t, ir_op_name(i))) return true;
    return false;
}

/* Before anything is allocated, one pass of the lexer counts the nodes: a
 * labeled one is "%name =" (nothing else is), an unlabeled one an op name
 * and '(' not after '=' (initializers and optimizers are not ops, and an
 * attribute's activation has no '('). A module with more than the limit is
 * refused where the first one too many is, so a million-node file costs a
 * scan, not a million nodes. (Arguments are counted as they are parsed.) */
static kiln_status prescan(parser *p) {
    parser q = *p; /* the lexer's state only: nothing of it is freed */
    token p1 = {0}, p2 = {0}; /* the two tokens before the lookahead */
    long nodes = 0;
    for (lex(&q); q.t.kind != T_EOF; next(&q)) {
        const token *node = NULL;
        if (p1.kind == T_VALUE && at(&q, '='))
            node = &p1;
        else if (p1.kind == T_NAME && at(&q, '(') && !(p2.kind == T_PUNCT && p2.ch == '=') &&
                 is_op_name(&p1))
            node = &p1;
        if (node && ++nodes > PARSE_MAX_NODES)
            return err_at(p, KILN_ERR_LIMIT, node, "module has more than %d nodes",
                          PARSE_MAX_NODES);
        p2 = p1;
        p1 = q.t;
    }
    return KILN_OK;
}

kiln_status ir_parse_module(const char *text, size_t len, const char *filename, kiln_module **out,
                            kiln_diag *d) {
    if (!out || (!text && len))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "parse: bad argument");
    *out = NULL;
    parser p;
    memset(&p, 0, sizeof p);
    p.src = text ? text : "";
    p.len = len;
    p.line = 1;
    p.file = filename && *filename ? filename : "<input>";
    kiln_status st;
    if (len > PARSE_MAX_TEXT) {
        st = ir_error(&p.diag, KILN_ERR_LIMIT, ir_loc_none(),
                      "%s: a module may hold at most %zu MiB of text", p.file,
                      PARSE_MAX_TEXT >> 20);
    } else if (!(st = prescan(&p))) {
        lex(&p);
        st = parse_module(&p);
        if (!st) st = ir_verify_module(p.m, &p.diag);
    }
    sym_free(&p.values);
    sym_free(&p.globals);
    sym_free(&p.funcs);
    sym_free(&p.files);
    ir_free(p.ops);
    ir_free(p.rtypes);
    ir_free(p.scratch);
    if (st)
        kiln_module_dispose(p.m);
    else
        *out = p.m;
    /* Hand the private diagnostics to the caller. */
    if (d && p.diag.errors) {
        if (!d->errors) d->first = p.diag.first;
        d->errors += p.diag.errors;
        if (p.diag.text.oom)
            ir_sb_puts(&d->text, "kiln: error: out of memory\n");
        else if (p.diag.text.buf)
            ir_sb_puts(&d->text, p.diag.text.buf);
    }
    ir_sb_free(&p.diag.text);
    return st;
}

kiln_status kiln_module_parse(const char *text, size_t len, const char *filename, kiln_module **out,
                              kiln_diag *d) {
    return ir_parse_module(text, len, filename, out, d);
}

kiln_status kiln_module_load(const char *path, kiln_module **out, kiln_diag *d) {
    if (!out || !path) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "load: bad argument");
    *out = NULL;
    char *text;
    size_t len;
    kiln_status st = ir_read_file_max(path, PARSE_MAX_TEXT, &text, &len, d);
    if (st == KILN_ERR_LIMIT)
        return ir_error(d, st, ir_loc_none(), "%s: a module may hold at most %zu MiB of text", path,
                        PARSE_MAX_TEXT >> 20);
    if (st) return st;
    st = ir_parse_module(text, len, path, out, d);
    ir_free(text);
    return st;
}

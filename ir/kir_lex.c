/*
 * kir_lex.c — tokens, diagnostics and scalar values of the .kir reader
 * (ir/parse.c has the grammar; ir/kir.h the shared state).
 *
 * The .kiln language has its own lexer (frontend/lex.c), and that is on
 * purpose, not by accident: the logic differs where it matters.
 *   - Tokens: .kir has %value and @global names (with '.', '$', '-'),
 *     '->', and no '-' token; .kiln has plain names and '-' as an operator.
 *   - Numbers: .kir keeps a number's text (hex floats, "-inf", "nan") and
 *     converts it where the grammar says which kind it wants; .kiln
 *     converts while lexing and knows if it was written as an integer.
 *   - Comments: a .kir comment after a node on its line is data (its
 *     "# file:line:col" location); .kiln comments are discarded.
 *   - Errors: a .kir bad character is a token the parser reports when it
 *     reaches it (so an earlier error comes first); .kiln reports it at
 *     once.
 * What is the same logic is shared through ir/ already: the source line
 * and caret (ir_diag_source_line), did-you-mean (ir_closest_name), the
 * settings' names and messages (ir/settings.h). Merging the rest would
 * make one lexer with two modes, which is two lexers in one function.
 */
#include "ir/kir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
kiln_status KILN_PRINTF(4, 5)
    kir_err_at(parser *p, kiln_status st, const token *t, const char *fmt, ...) {
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
    if (c >= 32 && c < 127)
        return kir_err_at(p, KILN_ERR_PARSE, &p->t, "unexpected character '%c'", c);
    return kir_err_at(p, KILN_ERR_PARSE, &p->t, "unexpected character '\\x%02x'", c);
}

/* "<what> near '<lookahead>'", Lua's wording. */
kiln_status KILN_PRINTF(2, 3) kir_err_near(parser *p, const char *fmt, ...) {
    if (p->st) return p->st;
    if (p->t.kind == T_BAD) return bad_char(p);
    char what[256], near[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    near_text(&p->t, near, sizeof near);
    return kir_err_at(p, KILN_ERR_PARSE, &p->t, "%s near %s", what, near);
}

/* A callee (node creation, inference, ...) reported into p->diag. */
kiln_status kir_callee_failed(parser *p, const token *t) {
    if (p->st) return p->st;
    p->st = p->diag.errors ? p->diag.first : KILN_ERR_NOMEM;
    if (!p->diag.errors) ir_oom(&p->diag);
    if (p->st != KILN_ERR_NOMEM) source_line(p, t->bol, t->col);
    return p->st;
}

kiln_status kir_oom(parser *p) {
    if (p->st) return p->st;
    ir_oom(&p->diag);
    return p->st = KILN_ERR_NOMEM;
}

/* ----------------------------------------------------------------- lexer */

static bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool kir_is_digit(char c) {
    return c >= '0' && c <= '9';
}
static bool is_ident(char c) {
    return is_alpha(c) || kir_is_digit(c);
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

void kir_lex(parser *p) {
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
    } else if (kir_is_digit(c) || (c == '.' && kir_is_digit(c1) && start + 1 < p->len) ||
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

void kir_next(parser *p) {
    p->last_line = p->t.line;
    kir_lex(p);
}

bool kir_at(const parser *p, char ch) {
    return p->t.kind == T_PUNCT && p->t.ch == ch;
}

bool kir_tok_is(const token *t, const char *s) {
    size_t n = strlen(s);
    return t->len == n && memcmp(t->s, s, n) == 0;
}

bool kir_at_name(const parser *p, const char *kw) {
    return p->t.kind == T_NAME && kir_tok_is(&p->t, kw);
}

kiln_status kir_expect(parser *p, char ch) {
    if (p->st) return p->st;
    if (!kir_at(p, ch)) return kir_err_near(p, "expected '%c'", ch);
    kir_next(p);
    return KILN_OK;
}

/* Closes a bracket opened at line `line`; names that line when it differs. */
kiln_status kir_expect_match(parser *p, char close, char open, int line) {
    if (p->st) return p->st;
    if (kir_at(p, close)) {
        kir_next(p);
        return KILN_OK;
    }
    if (line == p->t.line) return kir_err_near(p, "expected '%c'", close);
    return kir_err_near(p, "expected '%c' (to close '%c' at line %d)", close, open, line);
}

kiln_status kir_expect_name(parser *p, const char *kw) {
    if (p->st) return p->st;
    if (!kir_at_name(p, kw)) return kir_err_near(p, "expected '%s'", kw);
    kir_next(p);
    return KILN_OK;
}

/* A NUL-terminated copy of t's text, skipping `skip` leading bytes (the
 * sigil). Valid until the next call. */
const char *kir_tok_cstr(parser *p, const token *t, size_t skip) {
    size_t n = t->len - skip;
    if (n + 1 > p->cap_scratch) {
        size_t cap = p->cap_scratch ? p->cap_scratch : 64;
        while (cap < n + 1) cap *= 2;
        char *s = ir_realloc(p->scratch, cap);
        if (!s) {
            kir_oom(p);
            return NULL;
        }
        p->scratch = s;
        p->cap_scratch = cap;
    }
    memcpy(p->scratch, t->s + skip, n);
    p->scratch[n] = 0;
    return p->scratch;
}

kiln_status kir_suggest_err(parser *p, const token *t, const char *what, const char *word,
                            const char *const *cands, int n) {
    const char *sug = word ? ir_closest_name(word, cands, n) : NULL;
    if (sug)
        return kir_err_at(p, KILN_ERR_PARSE, t, "unknown %s '%.*s'; did you mean '%s'?", what,
                          TOKF(t), sug);
    return kir_err_at(p, KILN_ERR_PARSE, t, "unknown %s '%.*s'", what, TOKF(t));
}

/* ---------------------------------------------------------------- values */

/* Reads a decimal integer token: 0 ok, 1 malformed, 2 out of int64 range. */
int kir_read_int(const token *t, int64_t *out) {
    size_t i = 0;
    bool neg = false;
    if (t->kind != T_NUMBER) return 1;
    if (t->s[0] == '-' || t->s[0] == '+') neg = t->s[i++] == '-';
    if (i == t->len) return 1;
    uint64_t v = 0, limit = (UINT64_C(1) << 63) - (neg ? 0 : 1);
    for (; i < t->len; i++) {
        if (!kir_is_digit(t->s[i])) return 1;
        unsigned dg = (unsigned)(t->s[i] - '0');
        if (v > (limit - dg) / 10) return 2;
        v = v * 10 + dg;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* integer -> NUMBER (decimal, optional sign) */
kiln_status kir_parse_int(parser *p, int64_t *out) {
    if (p->st) return p->st;
    int r = kir_read_int(&p->t, out);
    if (r == 1) return kir_err_near(p, "expected an integer");
    if (r == 2)
        return kir_err_at(p, KILN_ERR_LIMIT, &p->t, "integer '%.*s' is out of range", TOKF(&p->t));
    kir_next(p);
    return KILN_OK;
}

/* float -> NUMBER | 'inf' | 'nan' */
kiln_status kir_parse_float(parser *p, double *out) {
    if (p->st) return p->st;
    const token *t = &p->t;
    bool word = t->kind == T_NAME &&
                (kir_tok_is(t, "inf") || kir_tok_is(t, "nan") || kir_tok_is(t, "infinity"));
    if (t->kind != T_NUMBER && !word) return kir_err_near(p, "expected a number");
    char buf[64];
    if (t->len >= sizeof buf) return kir_err_near(p, "malformed number");
    memcpy(buf, t->s, t->len);
    buf[t->len] = 0;
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + t->len) return kir_err_near(p, "malformed number");
    *out = v;
    kir_next(p);
    return KILN_OK;
}

/* bool -> 'true' | 'false' */
kiln_status kir_parse_bool(parser *p, bool *out) {
    if (p->st) return p->st;
    if (kir_at_name(p, "true"))
        *out = true;
    else if (kir_at_name(p, "false"))
        *out = false;
    else
        return kir_err_near(p, "expected 'true' or 'false'");
    kir_next(p);
    return KILN_OK;
}

/* A dimension of a type or shape attribute: INT in [0, 2^31] or '?'. */
kiln_status kir_parse_dim(parser *p, int64_t *out, int *n_batch) {
    if (p->st) return p->st;
    if (kir_at(p, '?')) {
        if (++*n_batch > 1)
            return kir_err_at(p, KILN_ERR_SHAPE, &p->t, "a shape may hold one '?' only");
        *out = KILN_BATCH;
        kir_next(p);
        return KILN_OK;
    }
    token t = p->t;
    int64_t v = 0;
    int r = kir_read_int(&t, &v);
    if (r == 1) return kir_err_near(p, "expected a dimension (an integer or '?')");
    if (r == 2 || v < 0 || v > IR_MAX_DIM)
        return kir_err_at(p, KILN_ERR_LIMIT, &t, "dimension %.*s is out of range [0, 2^31]",
                          TOKF(&t));
    *out = v;
    kir_next(p);
    return KILN_OK;
}

/* type -> ('f32' | 'i32') '[' [dim {',' dim}] ']' */
kiln_status kir_parse_type(parser *p, ir_type *out) {
    if (p->st) return p->st;
    ir_dtype dt;
    if (kir_at_name(p, "f32"))
        dt = IR_F32;
    else if (kir_at_name(p, "i32"))
        dt = IR_I32;
    else
        return kir_err_near(p, "expected a type (f32[...] or i32[...])");
    token first = p->t;
    kir_next(p);
    int open = p->t.line;
    if (kir_expect(p, '[')) return p->st;
    int64_t dims[KILN_MAX_RANK];
    int rank = 0, n_batch = 0;
    if (!kir_at(p, ']')) {
        for (;;) {
            if (rank == KILN_MAX_RANK)
                return kir_err_at(p, KILN_ERR_LIMIT, &p->t, "rank exceeds the maximum of %d",
                                  KILN_MAX_RANK);
            if (kir_parse_dim(p, &dims[rank], &n_batch)) return p->st;
            rank++;
            if (!kir_at(p, ',')) break;
            kir_next(p);
        }
    }
    if (kir_expect_match(p, ']', '[', open)) return p->st;
    int64_t total = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == KILN_BATCH) continue;
        if (dims[i] && total > IR_MAX_ELEMS / dims[i])
            return kir_err_at(p, KILN_ERR_LIMIT, &first, "type has more than 2^31 elements");
        total *= dims[i];
    }
    *out = ir_type_make(dt, rank, dims);
    return KILN_OK;
}

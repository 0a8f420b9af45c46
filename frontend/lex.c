/*
 * lex.c — the lexer of the .kiln language, and errors that show where.
 *
 * Tokens: names [A-Za-z_][A-Za-z0-9_]*, numbers (128, 0.001, 1e-7, .5),
 * strings ("body.onnx": one line, \" and \\ the only escapes), and the
 * single characters ( ) [ ] { } , = : ? -. Spaces, tabs and newlines
 * separate tokens and mean nothing else; '#' starts a comment that runs to
 * the end of the line. Columns count bytes from 1, a tab as one.
 */
#include "frontend/lex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Our own classes: <ctype.h> depends on the locale and on signed chars. */
static bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}
static bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_alnum(unsigned char c) {
    return is_alpha(c) || is_digit(c);
}

static const char *const g_keywords[] = {"model", "input", "label", "output",
                                         "loss",  "train", "true",  "false"};

bool fe_is_keyword(const char *s, size_t len) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_keywords); i++)
        if (strlen(g_keywords[i]) == len && memcmp(g_keywords[i], s, len) == 0) return true;
    return false;
}

bool fe_is_name(const char *s) {
    if (!s || !is_alpha((unsigned char)*s)) return false;
    size_t n = 1;
    while (is_alnum((unsigned char)s[n])) n++;
    return s[n] == 0 && n <= FE_MAX_NAME;
}

void fe_lex_init(fe_lexer *lx, const fe_source *src, kiln_diag *d) {
    memset(lx, 0, sizeof *lx);
    lx->src = src;
    lx->d = d;
    lx->line = 1;
    /* A UTF-8 byte-order mark, as some editors write, is not a token. */
    if (src->len >= 3 && memcmp(src->text, "\xef\xbb\xbf", 3) == 0) lx->pos = lx->line_start = 3;
}

/* ------------------------------------------------------------- messages */

void fe_show_line(const fe_source *src, kiln_diag *d, int line, int col) {
    if (!d || line < 1) return;
    const char *t = src->text;
    size_t n = src->len, i = 0;
    if (n >= 3 && memcmp(t, "\xef\xbb\xbf", 3) == 0) i = 3; /* columns start after it */
    for (int l = 1; l < line; l++) {
        const char *nl = memchr(t + i, '\n', n - i);
        if (!nl) return;
        i = (size_t)(nl - t) + 1;
    }
    const char *nl = memchr(t + i, '\n', n - i);
    size_t len = (nl ? (size_t)(nl - t) : n) - i;
    if (len && t[i + len - 1] == '\r') len--;
    if (len == 0) return;
    /* A window around the column keeps a megabyte-long line readable. */
    enum { WIDTH = 160 };
    size_t c = col > 0 ? (size_t)col - 1 : 0, from = 0;
    if (len > WIDTH) {
        from = c > WIDTH / 2 ? c - WIDTH / 2 : 0;
        if (from + WIDTH > len) from = len - WIDTH;
        len = WIDTH;
    }
    ir_diag_source_line(d, t + i + from, len, (int)(c - from) + 1);
}

kiln_status fe_error(const fe_source *src, kiln_diag *d, kiln_status st, int line, int col,
                     const char *fmt, ...) {
    ir_loc loc = {src->file, line, col};
    va_list ap;
    va_start(ap, fmt);
    ir_verror(d, st, loc, fmt, ap);
    va_end(ap);
    fe_show_line(src, d, line, col);
    return st;
}

const char *fe_did_you_mean(const char *word, const char *const *cands, int n, char *buf,
                            size_t bufn) {
    const char *best = ir_closest_name(word, cands, n);
    if (!best || strcmp(best, word) == 0) return "";
    snprintf(buf, bufn, "; did you mean '%s'?", best);
    return buf;
}

const char *fe_token_str(const fe_token *t, char *buf, size_t n) {
    switch (t->kind) {
    case FE_TK_EOF:
        snprintf(buf, n, "end of file");
        break;
    case FE_TK_STRING:
        if (t->len > 42)
            snprintf(buf, n, "%.41s...\"", t->s);
        else
            snprintf(buf, n, "%.*s", (int)t->len, t->s);
        break;
    case FE_TK_NAME:
    case FE_TK_NUMBER:
        if (t->len > 40)
            snprintf(buf, n, "'%.40s...'", t->s);
        else
            snprintf(buf, n, "'%.*s'", (int)t->len, t->s);
        break;
    default:
        snprintf(buf, n, "'%c'", t->kind);
        break;
    }
    return buf;
}

/* --------------------------------------------------------------- tokens */

static kiln_status lex_error(fe_lexer *lx, const fe_token *t, kiln_status st, const char *msg,
                             const char *arg, int arg_len) {
    return fe_error(lx->src, lx->d, st, t->loc.line, t->loc.col, msg, arg_len, arg);
}

/* number -> digits ['.' digits] [('e'|'E') ['+'|'-'] digits]  |  '.' digits ... */
static kiln_status read_number(fe_lexer *lx, fe_token *t) {
    const char *s = lx->src->text;
    size_t n = lx->src->len, i = lx->pos;
    bool is_int = true;
    while (i < n && is_digit((unsigned char)s[i])) i++;
    if (i < n && s[i] == '.') {
        is_int = false;
        i++;
        while (i < n && is_digit((unsigned char)s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        if (j < n && is_digit((unsigned char)s[j])) {
            is_int = false;
            i = j;
            while (i < n && is_digit((unsigned char)s[i])) i++;
        }
    }
    size_t len = i - lx->pos;
    /* A letter or a dot glued to a number is a typo, not two tokens. */
    if (i < n && (is_alnum((unsigned char)s[i]) || s[i] == '.')) {
        while (i < n && (is_alnum((unsigned char)s[i]) || s[i] == '.')) i++;
        size_t bad = i - lx->pos;
        return lex_error(lx, t, KILN_ERR_PARSE, "malformed number '%.*s'", t->s,
                         (int)(bad > 40 ? 40 : bad));
    }
    char buf[80];
    if (len >= sizeof buf)
        return lex_error(lx, t, KILN_ERR_LIMIT, "number '%.*s...' is too long", t->s, 40);
    memcpy(buf, t->s, len);
    buf[len] = 0;
    t->kind = FE_TK_NUMBER;
    t->len = len;
    t->is_int = is_int;
    if (is_int) {
        int64_t v = 0;
        for (size_t k = 0; k < len; k++) {
            int dgt = buf[k] - '0';
            if (v > (INT64_MAX - dgt) / 10)
                return lex_error(lx, t, KILN_ERR_LIMIT, "number '%.*s' is too large", t->s,
                                 (int)(len > 40 ? 40 : len));
            v = v * 10 + dgt;
        }
        t->ival = v;
        t->num = (double)v;
    } else {
        t->num = strtod(buf, NULL);
        if (t->num > 1.7976931348623157e308)
            return lex_error(lx, t, KILN_ERR_LIMIT, "number '%.*s' is too large", t->s,
                             (int)(len > 40 ? 40 : len));
    }
    lx->pos = i;
    return KILN_OK;
}

/* string -> '"' { any byte but '"', '\\', newline | '\\' ('"' | '\\') } '"' */
static kiln_status read_string(fe_lexer *lx, fe_token *t) {
    const char *s = lx->src->text;
    size_t n = lx->src->len, i = lx->pos + 1, bytes = 0;
    for (;; i++, bytes++) {
        if (i >= n || s[i] == '\n' || s[i] == '\r')
            return fe_error(lx->src, lx->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                            "unterminated string: a string ends with '\"' on its line");
        if (s[i] == '"') break;
        if (bytes == FE_MAX_STRING)
            return fe_error(lx->src, lx->d, KILN_ERR_LIMIT, t->loc.line, t->loc.col,
                            "string longer than %d bytes", FE_MAX_STRING);
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) /* a message quoting it stays one line */
            return fe_error(lx->src, lx->d, KILN_ERR_PARSE, t->loc.line,
                            t->loc.col + (int)(i - lx->pos), "unexpected byte 0x%02x in a string",
                            (unsigned char)s[i]);
        if (s[i] != '\\') continue;
        if (i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\')) {
            i++;
            continue;
        }
        return fe_error(lx->src, lx->d, KILN_ERR_PARSE, t->loc.line,
                        t->loc.col + (int)(i - lx->pos),
                        "unknown escape in a string (only \\\" and \\\\ are escapes)");
    }
    t->kind = FE_TK_STRING;
    t->len = i + 1 - lx->pos;
    lx->pos = i + 1;
    return KILN_OK;
}

size_t fe_string_value(const fe_token *t, char *buf) {
    size_t k = 0;
    for (size_t i = 1; i + 1 < t->len; i++) {
        if (t->s[i] == '\\') i++;
        buf[k++] = t->s[i];
    }
    buf[k] = 0;
    return k;
}

kiln_status fe_lex_next(fe_lexer *lx, fe_token *t) {
    const char *s = lx->src->text;
    size_t n = lx->src->len;
    while (lx->pos < n) { /* skip blanks and comments */
        char c = s[lx->pos];
        if (c == '\n') {
            lx->pos++;
            lx->line++;
            lx->line_start = lx->pos;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            lx->pos++;
        } else if (c == '#') {
            while (lx->pos < n && s[lx->pos] != '\n') lx->pos++;
        } else {
            break;
        }
    }
    memset(t, 0, sizeof *t);
    t->loc.file = lx->src->file;
    t->loc.line = lx->line;
    t->loc.col = (int32_t)(lx->pos - lx->line_start + 1);
    t->s = s + lx->pos;
    if (lx->pos >= n) {
        t->kind = FE_TK_EOF;
        return KILN_OK;
    }
    unsigned char c = (unsigned char)s[lx->pos];
    if (is_alpha(c)) {
        size_t i = lx->pos;
        while (i < n && is_alnum((unsigned char)s[i])) i++;
        t->kind = FE_TK_NAME;
        t->len = i - lx->pos;
        if (t->len > FE_MAX_NAME)
            return lex_error(lx, t, KILN_ERR_LIMIT, "name '%.*s...' is longer than 255 bytes", t->s,
                             40);
        lx->pos = i;
        return KILN_OK;
    }
    if (is_digit(c) || (c == '.' && lx->pos + 1 < n && is_digit((unsigned char)s[lx->pos + 1])))
        return read_number(lx, t);
    if (c && strchr("()[]{},=:?-", c)) {
        t->kind = c;
        t->len = 1;
        lx->pos++;
        return KILN_OK;
    }
    if (c == '"') return read_string(lx, t);
    if (c == '\'')
        return fe_error(lx->src, lx->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                        "unexpected quote: names are written without quotes (activation=relu)");
    if (c >= 32 && c < 127)
        return fe_error(lx->src, lx->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                        "unexpected character '%c'", c);
    return fe_error(lx->src, lx->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                    "unexpected byte 0x%02x", c);
}

/*
 * lex.h — tokens of the .kiln language and positioned error messages.
 * Internal to frontend/.
 */
#ifndef KILN_FRONTEND_LEX_H
#define KILN_FRONTEND_LEX_H

#include "frontend/frontend.h"

/* Single-character tokens stand for themselves: ( ) [ ] { } , = : ? - */
enum { FE_TK_EOF = 0, FE_TK_NAME = 256, FE_TK_NUMBER, FE_TK_STRING };

/* A string token: "..." on one line, \" and \\ the only escapes, at most
 * FE_MAX_STRING bytes between the quotes (file paths, ONNX value names). */
#define FE_MAX_STRING 4096

typedef struct fe_token {
    int kind;
    ir_loc loc;    /* file, line and column (1-based) of the first byte */
    const char *s; /* the token's text in the source (not terminated; a
                    * string: with its quotes and escapes as written) */
    size_t len;
    double num;   /* FE_TK_NUMBER: its value */
    int64_t ival; /* FE_TK_NUMBER written as an integer: its value */
    bool is_int;  /* written without '.' and exponent */
} fe_token;

/* The model text being read, for tokens and for the line under a caret. */
typedef struct fe_source {
    const char *text;
    size_t len;
    const char *file; /* as it appears in messages */
} fe_source;

typedef struct fe_lexer {
    const fe_source *src;
    kiln_diag *d;
    size_t pos;
    size_t line_start; /* offset of the current line's first byte */
    int line;
} fe_lexer;

void fe_lex_init(fe_lexer *lx, const fe_source *src, kiln_diag *d);
/* Reads the next token into *t; at the end, FE_TK_EOF again and again. */
kiln_status fe_lex_next(fe_lexer *lx, fe_token *t);
/* A token as messages quote it: 'h2', '(', '128', "a.onnx", end of file. */
const char *fe_token_str(const fe_token *t, char *buf, size_t n);
/* Keywords cannot name values. */
bool fe_is_keyword(const char *s, size_t len);
/* The text of string token t without quotes and escapes, into buf (at
 * least t->len bytes); returns its length. */
size_t fe_string_value(const fe_token *t, char *buf);
/* True if all of s is one name token ([A-Za-z_][A-Za-z0-9_]*) of at most
 * FE_MAX_NAME bytes. The C model API takes layer names that pass this, so
 * they read back in .kir text and in a model file. */
bool fe_is_name(const char *s);

/* Reports "file:line:col: error: ..." and shows the source line with a
 * caret under the column. Returns st. */
kiln_status fe_error(const fe_source *src, kiln_diag *d, kiln_status st, int line, int col,
                     const char *fmt, ...) KILN_PRINTF(6, 7);
/* Appends source line `line` of src with a caret under `col` (nothing for
 * a line that does not exist or is empty). */
void fe_show_line(const fe_source *src, kiln_diag *d, int line, int col);
/* The suggestion suffix for a misspelled `word`: "; did you mean 'x'?" or "". */
const char *fe_did_you_mean(const char *word, const char *const *cands, int n, char *buf,
                            size_t bufn);

#endif

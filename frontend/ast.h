/*
 * ast.h — the syntax tree of a model file, and the parser that builds it.
 *
 * The tree is generic: a call is a name with arguments, whatever it calls;
 * build.c gives it meaning (a layer, an initializer, an optimizer, ...).
 * Parsing first and building after lets the builder see the whole file:
 * every user name is known before inline layers are named, so generated
 * names never collide with names the user writes further down, and the
 * limits are checked before any IR is allocated. Everything lives in the
 * tree's arena and is freed at once.
 */
#ifndef KILN_FRONTEND_AST_H
#define KILN_FRONTEND_AST_H

#include "frontend/lex.h"

typedef enum fe_expr_kind { FE_E_NAME, FE_E_NUMBER, FE_E_CALL, FE_E_LIST, FE_E_STRING } fe_expr_kind;

typedef struct fe_expr fe_expr;

/* One argument of a call: positional (key NULL) or key=value. */
typedef struct fe_arg {
    const char *key;
    int key_line, key_col;
    fe_expr *value;
    struct fe_arg *next;
} fe_arg;

struct fe_expr {
    fe_expr_kind kind;
    int line, col;    /* the first token (a call: its name) */
    const char *name; /* FE_E_NAME, FE_E_CALL; FE_E_STRING: its text, unquoted */
    double num;       /* FE_E_NUMBER */
    int64_t ival;     /* FE_E_NUMBER written as an integer */
    bool is_int;
    fe_arg *args; /* FE_E_CALL, in order */
    int n_args;
    fe_expr *items; /* FE_E_LIST: the elements, linked by next */
    int n_items;
    fe_expr *next; /* next element of a list or of an output statement */
};

typedef enum fe_stmt_kind {
    FE_S_MODEL,  /* model NAME */
    FE_S_INPUT,  /* input NAME : type */
    FE_S_LABEL,  /* label NAME : type */
    FE_S_ASSIGN, /* NAME = value */
    FE_S_OUTPUT, /* output value {, value} */
    FE_S_LOSS,   /* loss call */
    FE_S_TRAIN   /* train { setting } */
} fe_stmt_kind;

typedef struct fe_stmt {
    fe_stmt_kind kind;
    int line, col;    /* the keyword, or the assigned name */
    const char *name; /* model, input, label, assign */
    int name_line, name_col;
    ir_type type;     /* input, label */
    fe_expr *value;   /* assign: the value; loss: the call; output: the first */
    int n_values;     /* output */
    fe_arg *settings; /* train: key = value, in order */
    int n_settings;
    struct fe_stmt *next;
} fe_stmt;

typedef struct fe_ast {
    ir_arena arena;
    fe_stmt *stmts; /* in file order */
    int n_stmts;
    int eof_line, eof_col;
} fe_ast;

/* Parses the whole source into ast (initialized here; free it with
 * fe_ast_free on success and on error alike). Stops at the first error. */
kiln_status fe_parse(const fe_source *src, fe_ast *ast, kiln_diag *d);
void fe_ast_free(fe_ast *ast);

#endif

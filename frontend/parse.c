/*
 * parse.c — recursive-descent parser of the .kiln language into a tree
 * (ast.h). One function per rule; each opens with the rule it parses. The
 * parser stops at the first error, which names what was expected and what
 * was found; an unclosed bracket names the line where it opened.
 * Nesting and the number of calls are bounded (frontend.h), so no input
 * can exhaust the stack or make the builder allocate without end.
 */
#include "frontend/ast.h"

#include <string.h>

typedef struct parser {
    fe_lexer lx;
    const fe_source *src;
    kiln_diag *d;
    fe_ast *ast;
    fe_token tok;   /* the current token */
    fe_token ahead; /* one token of lookahead, when has_ahead */
    bool has_ahead;
    int depth;
    long calls;
    int inputs;
    fe_stmt **tail;
} parser;

/* --------------------------------------------------------------- helpers */

static kiln_status next(parser *p) {
    if (p->has_ahead) {
        p->tok = p->ahead;
        p->has_ahead = false;
        return KILN_OK;
    }
    return fe_lex_next(&p->lx, &p->tok);
}

static kiln_status peek(parser *p) {
    if (p->has_ahead) return KILN_OK;
    kiln_status st = fe_lex_next(&p->lx, &p->ahead);
    if (!st) p->has_ahead = true;
    return st;
}

static bool is_word(const fe_token *t, const char *w) {
    return t->kind == FE_TK_NAME && t->len == strlen(w) && memcmp(t->s, w, t->len) == 0;
}

static kiln_status expected(parser *p, const fe_token *at, const char *what) {
    char b[64];
    return fe_error(p->src, p->d, KILN_ERR_PARSE, at->loc.line, at->loc.col,
                    "expected %s, found %s", what, fe_token_str(at, b, sizeof b));
}

/* Closes a bracket opened at open_line; `more` says what else could have
 * come here instead ("',' or ')'"). Like Lua's check_match, the message
 * names the opening line when the bracket was opened on another line. */
static kiln_status close_bracket(parser *p, int close, int open, int open_line, const char *more) {
    if (p->tok.kind == close) return next(p);
    char b[64];
    const fe_token *t = &p->tok;
    if (t->loc.line != open_line)
        return fe_error(p->src, p->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                        "expected '%c' to close '%c' at line %d, found %s", close, open, open_line,
                        fe_token_str(t, b, sizeof b));
    return fe_error(p->src, p->d, KILN_ERR_PARSE, t->loc.line, t->loc.col, "expected %s, found %s",
                    more, fe_token_str(t, b, sizeof b));
}

static const char *intern(parser *p, const fe_token *t) {
    char *s = ir_arena_strndup(&p->ast->arena, t->s, t->len);
    if (!s) ir_oom(p->d);
    return s;
}

static fe_expr *new_expr(parser *p, fe_expr_kind kind) {
    fe_expr *e = ir_arena_alloc(&p->ast->arena, sizeof *e);
    if (!e) {
        ir_oom(p->d);
        return NULL;
    }
    e->kind = kind;
    e->line = p->tok.loc.line;
    e->col = p->tok.loc.col;
    return e;
}

/* A name that a statement defines: not a keyword. */
static kiln_status def_name(parser *p, fe_stmt *s, const char *what) {
    const fe_token *t = &p->tok;
    if (t->kind != FE_TK_NAME) {
        char w[64];
        snprintf(w, sizeof w, "a name for %s", what);
        return expected(p, t, w);
    }
    if (fe_is_keyword(t->s, t->len))
        return fe_error(p->src, p->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                        "'%.*s' is a keyword and cannot name %s", (int)t->len, t->s, what);
    s->name_line = t->loc.line;
    s->name_col = t->loc.col;
    if (!(s->name = intern(p, t))) return KILN_ERR_NOMEM;
    return next(p);
}

/* ----------------------------------------------------------- expressions */

static kiln_status value(parser *p, fe_expr **out);

/* call -> NAME '(' [arg {',' arg} [',']] ')'      arg -> [NAME '='] value */
static kiln_status call(parser *p, fe_expr *e) {
    if (++p->calls > FE_MAX_LAYERS)
        return fe_error(p->src, p->d, KILN_ERR_LIMIT, e->line, e->col,
                        "too many layers: a model file may hold at most %d calls", FE_MAX_LAYERS);
    e->kind = FE_E_CALL;
    if (!(e->name = intern(p, &p->tok))) return KILN_ERR_NOMEM;
    kiln_status st = next(p); /* the name; '(' is next, checked by the caller */
    int open_line = p->tok.loc.line;
    if (st || (st = next(p))) return st;
    fe_arg **tail = &e->args;
    while (p->tok.kind != ')') {
        fe_arg *a = ir_arena_alloc(&p->ast->arena, sizeof *a);
        if (!a) return ir_oom(p->d);
        if (p->tok.kind == FE_TK_NAME) {
            if ((st = peek(p))) return st;
            if (p->ahead.kind == '=') {
                a->key_line = p->tok.loc.line;
                a->key_col = p->tok.loc.col;
                if (!(a->key = intern(p, &p->tok))) return KILN_ERR_NOMEM;
                if ((st = next(p)) || (st = next(p))) return st;
            }
        }
        if ((st = value(p, &a->value))) return st;
        *tail = a;
        tail = &a->next;
        e->n_args++;
        if (p->tok.kind != ',') break;
        if ((st = next(p))) return st;
    }
    return close_bracket(p, ')', '(', open_line, "',' or ')'");
}

/* list -> '[' [value {',' value} [',']] ']' */
static kiln_status list(parser *p, fe_expr *e) {
    int open_line = p->tok.loc.line;
    kiln_status st = next(p);
    fe_expr **tail = &e->items;
    while (!st && p->tok.kind != ']') {
        if ((st = value(p, tail))) return st;
        tail = &(*tail)->next;
        e->n_items++;
        if (p->tok.kind != ',') break;
        st = next(p);
    }
    if (st) return st;
    return close_bracket(p, ']', '[', open_line, "',' or ']'");
}

/* value -> NAME | call | ['-'] NUMBER | STRING | list */
static kiln_status value_body(parser *p, fe_expr **out) {
    kiln_status st;
    fe_expr *e;
    switch (p->tok.kind) {
    case FE_TK_NAME:
        if ((st = peek(p))) return st;
        if (!(e = *out = new_expr(p, FE_E_NAME))) return KILN_ERR_NOMEM;
        if (p->ahead.kind == '(') return call(p, e);
        if (!(e->name = intern(p, &p->tok))) return KILN_ERR_NOMEM;
        return next(p);
    case '-':
    case FE_TK_NUMBER: {
        if (!(e = *out = new_expr(p, FE_E_NUMBER))) return KILN_ERR_NOMEM;
        bool neg = p->tok.kind == '-';
        if (neg && (st = next(p))) return st;
        if (p->tok.kind != FE_TK_NUMBER) return expected(p, &p->tok, "a number after '-'");
        e->is_int = p->tok.is_int;
        e->ival = neg ? -p->tok.ival : p->tok.ival;
        e->num = neg ? -p->tok.num : p->tok.num;
        return next(p);
    }
    case FE_TK_STRING: {
        if (!(e = *out = new_expr(p, FE_E_STRING))) return KILN_ERR_NOMEM;
        char *v = ir_arena_alloc(&p->ast->arena, p->tok.len);
        if (!v) return ir_oom(p->d);
        fe_string_value(&p->tok, v);
        e->name = v;
        return next(p);
    }
    case '[':
        if (!(e = *out = new_expr(p, FE_E_LIST))) return KILN_ERR_NOMEM;
        return list(p, e);
    default:
        return expected(p, &p->tok, "a value");
    }
}

static kiln_status value(parser *p, fe_expr **out) {
    if (++p->depth > FE_MAX_DEPTH)
        return fe_error(p->src, p->d, KILN_ERR_LIMIT, p->tok.loc.line, p->tok.loc.col,
                        "expression nested too deeply (more than %d levels)", FE_MAX_DEPTH);
    kiln_status st = value_body(p, out);
    p->depth--;
    return st;
}

/* ------------------------------------------------------------ statements */

/* type -> ('f32' | 'i32') '[' [dim {',' dim} [',']] ']'      dim -> INTEGER | '?' */
static kiln_status type(parser *p, ir_type *t) {
    const fe_token *tk = &p->tok;
    int line = tk->loc.line, col = tk->loc.col;
    if (tk->kind != FE_TK_NAME) return expected(p, tk, "a type such as f32[?, 784]");
    ir_dtype dt;
    if (is_word(tk, "f32")) {
        dt = IR_F32;
    } else if (is_word(tk, "i32")) {
        dt = IR_I32;
    } else {
        static const char *const dtypes[] = {"f32", "i32"};
        char word[FE_MAX_NAME + 1], sug[64];
        snprintf(word, sizeof word, "%.*s", (int)tk->len, tk->s);
        const char *dym = fe_did_you_mean(word, dtypes, 2, sug, sizeof sug);
        return fe_error(p->src, p->d, KILN_ERR_PARSE, line, col, "unknown dtype '%s'%s", word,
                        *dym ? dym : " (the dtypes are f32 and i32)");
    }
    kiln_status st = next(p);
    if (st) return st;
    if (p->tok.kind != '[') return expected(p, &p->tok, "'[' after the dtype");
    int open_line = p->tok.loc.line;
    if ((st = next(p))) return st;
    int64_t dims[KILN_MAX_RANK];
    int rank = 0;
    while (p->tok.kind != ']') {
        if (rank == KILN_MAX_RANK)
            return fe_error(p->src, p->d, KILN_ERR_LIMIT, tk->loc.line, tk->loc.col,
                            "a shape has at most %d dimensions", KILN_MAX_RANK);
        if (tk->kind == '?') {
            if (rank != 0)
                return fe_error(p->src, p->d, KILN_ERR_PARSE, tk->loc.line, tk->loc.col,
                                "the batch dimension '?' must come first");
            dims[rank++] = KILN_BATCH;
        } else if (tk->kind == FE_TK_NUMBER && tk->is_int) {
            if (tk->ival < 1)
                return fe_error(p->src, p->d, KILN_ERR_SHAPE, tk->loc.line, tk->loc.col,
                                "a dimension must be at least 1, got %lld", (long long)tk->ival);
            if (tk->ival >= IR_MAX_DIM)
                return fe_error(p->src, p->d, KILN_ERR_LIMIT, tk->loc.line, tk->loc.col,
                                "dimension %lld is too large (the limit is %lld)",
                                (long long)tk->ival, (long long)(IR_MAX_DIM - 1));
            dims[rank++] = tk->ival;
        } else {
            return expected(p, tk, "a dimension (a positive integer or '?')");
        }
        if ((st = next(p))) return st;
        if (p->tok.kind != ',') break;
        if ((st = next(p))) return st;
    }
    if ((st = close_bracket(p, ']', '[', open_line, "',' or ']'"))) return st;
    /* Checked here, without overflow, so every later product of these
     * dims fits in 64 bits. */
    int64_t elems = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == KILN_BATCH) continue;
        if (elems > IR_MAX_ELEMS / dims[i])
            return fe_error(p->src, p->d, KILN_ERR_LIMIT, line, col,
                            "a sample of this type has more than 2^31 elements");
        elems *= dims[i];
    }
    *t = ir_type_make(dt, rank, dims);
    return KILN_OK;
}

/* settings -> '{' { NAME '=' value } '}' */
static kiln_status settings(parser *p, fe_stmt *s) {
    if (p->tok.kind != '{') return expected(p, &p->tok, "'{' after 'train'");
    int open_line = p->tok.loc.line;
    kiln_status st = next(p);
    fe_arg **tail = &s->settings;
    while (!st && p->tok.kind != '}') {
        if (p->tok.kind != FE_TK_NAME)
            return close_bracket(p, '}', '{', open_line, "a setting (NAME = value) or '}'");
        fe_arg *a = ir_arena_alloc(&p->ast->arena, sizeof *a);
        if (!a) return ir_oom(p->d);
        a->key_line = p->tok.loc.line;
        a->key_col = p->tok.loc.col;
        if (!(a->key = intern(p, &p->tok))) return KILN_ERR_NOMEM;
        if ((st = next(p))) return st;
        if (p->tok.kind != '=') {
            char w[FE_MAX_NAME + 32];
            snprintf(w, sizeof w, "'=' after '%s'", a->key);
            return expected(p, &p->tok, w);
        }
        if ((st = next(p)) || (st = value(p, &a->value))) return st;
        *tail = a;
        tail = &a->next;
        s->n_settings++;
    }
    return st ? st : next(p);
}

static const char *const g_statements[] = {"model", "input", "label", "output", "loss", "train"};

/* A statement that starts with a name that is no keyword: NAME '=' value. */
static kiln_status assignment(parser *p, fe_stmt *s) {
    kiln_status st = peek(p);
    if (st) return st;
    const fe_token *t = &p->tok;
    if (p->ahead.kind == '=') {
        s->kind = FE_S_ASSIGN;
        if ((st = def_name(p, s, "a value")) || (st = next(p))) return st;
        return value(p, &s->value);
    }
    if (p->ahead.kind == '(')
        return fe_error(p->src, p->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                        "a call must be assigned to a name: NAME = %.*s(...)", (int)t->len, t->s);
    char word[FE_MAX_NAME + 1], sug[64];
    snprintf(word, sizeof word, "%.*s", (int)t->len, t->s);
    const char *dym = fe_did_you_mean(word, g_statements, 6, sug, sizeof sug);
    if (*dym)
        return fe_error(p->src, p->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                        "unknown statement '%s'%s", word, dym);
    char w[FE_MAX_NAME + 32];
    snprintf(w, sizeof w, "'=' after '%s'", word);
    return expected(p, &p->ahead, w);
}

/* statement -> 'model' NAME | 'input' NAME ':' type | 'label' NAME ':' type
 *            | 'output' value {',' value} | 'loss' call | 'train' settings
 *            | NAME '=' value */
static kiln_status statement(parser *p) {
    if (p->tok.kind != FE_TK_NAME) return expected(p, &p->tok, "a statement");
    fe_stmt *s = ir_arena_alloc(&p->ast->arena, sizeof *s);
    if (!s) return ir_oom(p->d);
    *p->tail = s;
    p->tail = &s->next;
    p->ast->n_stmts++;
    s->line = p->tok.loc.line;
    s->col = p->tok.loc.col;
    const fe_token *t = &p->tok;
    kiln_status st;
    if (fe_is_keyword(t->s, t->len)) {
        if ((st = peek(p))) return st;
        if (p->ahead.kind == '=')
            return fe_error(p->src, p->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                            "'%.*s' is a keyword and cannot be assigned", (int)t->len, t->s);
    }
    if (is_word(t, "model")) {
        s->kind = FE_S_MODEL;
        return (st = next(p)) ? st : def_name(p, s, "the model");
    }
    if (is_word(t, "input") || is_word(t, "label")) {
        bool input = is_word(t, "input");
        s->kind = input ? FE_S_INPUT : FE_S_LABEL;
        if (++p->inputs > FE_MAX_INPUTS)
            return fe_error(p->src, p->d, KILN_ERR_LIMIT, s->line, s->col,
                            "too many inputs and labels (the limit is %d)", FE_MAX_INPUTS);
        if ((st = next(p)) || (st = def_name(p, s, input ? "an input" : "a label"))) return st;
        if (p->tok.kind != ':') return expected(p, &p->tok, "':' and a type");
        return (st = next(p)) ? st : type(p, &s->type);
    }
    if (is_word(t, "output")) {
        s->kind = FE_S_OUTPUT;
        fe_expr **tail = &s->value;
        for (st = next(p); !st; st = next(p)) {
            if ((st = value(p, tail))) return st;
            tail = &(*tail)->next;
            s->n_values++;
            if (p->tok.kind != ',') break;
        }
        return st;
    }
    if (is_word(t, "loss")) {
        s->kind = FE_S_LOSS;
        if ((st = next(p)) || (st = peek(p))) return st;
        if (p->tok.kind != FE_TK_NAME || p->ahead.kind != '(')
            return expected(p, p->tok.kind == FE_TK_NAME ? &p->ahead : &p->tok,
                            p->tok.kind == FE_TK_NAME ? "'(' after the loss"
                                                      : "a loss such as mse(p, y)");
        return value(p, &s->value);
    }
    if (is_word(t, "train")) {
        s->kind = FE_S_TRAIN;
        return (st = next(p)) ? st : settings(p, s);
    }
    if (fe_is_keyword(t->s, t->len))
        return fe_error(p->src, p->d, KILN_ERR_PARSE, t->loc.line, t->loc.col,
                        "expected a statement, found '%.*s'", (int)t->len, t->s);
    return assignment(p, s);
}

/* model_file -> { statement } EOF */
kiln_status fe_parse(const fe_source *src, fe_ast *ast, kiln_diag *d) {
    memset(ast, 0, sizeof *ast);
    ir_arena_init(&ast->arena);
    parser p;
    memset(&p, 0, sizeof p);
    fe_lex_init(&p.lx, src, d);
    p.src = src;
    p.d = d;
    p.ast = ast;
    p.tail = &ast->stmts;
    kiln_status st = next(&p);
    while (!st && p.tok.kind != FE_TK_EOF) st = statement(&p);
    ast->eof_line = p.tok.loc.line;
    ast->eof_col = p.tok.loc.col;
    return st;
}

void fe_ast_free(fe_ast *ast) {
    ir_arena_free(&ast->arena);
}

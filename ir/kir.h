/*
 * kir.h — internal to the .kir reader (ir/parse.c, ir/kir_lex.c,
 * ir/kir_train.c): the parser's state, its tokens, and the helpers the
 * three files share. Every helper that reports stops the parse at the
 * first error: it returns p->st and does nothing once p->st is set.
 */
#ifndef KILN_IR_KIR_H
#define KILN_IR_KIR_H

#include "ir/ir.h"

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

/* ------------------------------------------------ diagnostics (kir_lex.c) */

/* An error at token t; the first one is kept (p->st), later ones dropped. */
kiln_status KILN_PRINTF(4, 5)
    kir_err_at(parser *p, kiln_status st, const token *t, const char *fmt, ...);
/* "<what> near '<lookahead>'", Lua's wording, at the lookahead. */
kiln_status KILN_PRINTF(2, 3) kir_err_near(parser *p, const char *fmt, ...);
/* "unknown <what> 'word'; did you mean '<closest of cands>'?" at t. */
kiln_status kir_suggest_err(parser *p, const token *t, const char *what, const char *word,
                            const char *const *cands, int n);
/* A callee (node creation, inference, ...) reported into p->diag. */
kiln_status kir_callee_failed(parser *p, const token *t);
kiln_status kir_oom(parser *p);

/* ------------------------------------------------------ tokens (kir_lex.c) */

bool kir_is_digit(char c);
/* Reads the next token into p->t. */
void kir_lex(parser *p);
/* Consumes the lookahead (remembering its line, for trailing comments)
 * and reads the next token. */
void kir_next(parser *p);
bool kir_at(const parser *p, char ch);
bool kir_tok_is(const token *t, const char *s);
bool kir_at_name(const parser *p, const char *kw);
kiln_status kir_expect(parser *p, char ch);
/* Closes a bracket opened at line `line`; names that line when it differs. */
kiln_status kir_expect_match(parser *p, char close, char open, int line);
kiln_status kir_expect_name(parser *p, const char *kw);
/* A NUL-terminated copy of t's text, skipping `skip` leading bytes (the
 * sigil). Valid until the next call. */
const char *kir_tok_cstr(parser *p, const token *t, size_t skip);

/* ------------------------------------------------------ values (kir_lex.c) */

/* Reads a decimal integer token: 0 ok, 1 malformed, 2 out of int64 range. */
int kir_read_int(const token *t, int64_t *out);
kiln_status kir_parse_int(parser *p, int64_t *out);
kiln_status kir_parse_float(parser *p, double *out);
kiln_status kir_parse_bool(parser *p, bool *out);
/* A dimension of a type or shape attribute: INT in [0, 2^31] or '?'
 * (counted in *n_batch: one per shape). */
kiln_status kir_parse_dim(parser *p, int64_t *out, int *n_batch);
kiln_status kir_parse_type(parser *p, ir_type *out);

/* ---------------------------------------- settings (kir_train.c) */

/* A keyword argument of an initializer or an optimizer. */
typedef struct kir_kwarg {
    const char *name;
    const char *alias; /* a second name for it (Keras'), or NULL */
    double *f;         /* a number, or */
    bool *b;           /* a bool */
    int setting;       /* its row of ir/settings.def, range-checked; -1: none */
} kir_kwarg;

/* kwargs -> '(' [NAME '=' value {',' NAME '=' value}] ')'   of `what` */
kiln_status kir_parse_kwargs(parser *p, const char *what, const kir_kwarg *kw, int n);
/* init -> NAME [kwargs]     constant(v), normal(mean=, stddev=), uniform(min=, max=) */
kiln_status kir_parse_init(parser *p, kiln_init *out);
/* The module's train block, at the 'train' keyword. */
kiln_status kir_parse_train(parser *p);

/* ------------------------------------------------ memory plan (kir_mem.c) */
/* nmem: into m's mem_* fields (m a scratch node). */
kiln_status kir_parse_node_mem(parser *p, ir_node *m);
/* fmem: f's workspace sizes and error record; f->planned. */
kiln_status kir_parse_func_mem(parser *p, kiln_func *f);
/* Node n's slot and its workspace slots against p->f's workspace (at mt). */
kiln_status kir_check_mem(parser *p, const token *mt, const ir_node *n);
kiln_status kir_check_ws(parser *p, const token *mt, const ir_node *n);
/* The whole function's claim against what its values can need. */
kiln_status kir_check_workspace(parser *p, const token *name, kiln_func *f);

#endif

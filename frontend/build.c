/*
 * build.c — statements into a module. Reads the tree in file order and
 * builds one function, @infer(inputs...) -> outputs, through the IR builder;
 * every node carries the location of the call it came from. When the whole
 * file is read, @loss is @infer cloned, plus the label argument, the loss
 * and the metrics (train.c), and the module is verified.
 *
 * Names: inputs, labels and assigned values share one namespace, defined
 * once each and used only after their definition. Layers written inline get
 * Keras' automatic names (dense, dense_1, ...), skipping every name the file
 * defines anywhere, so a generated name never takes a user's.
 */
#include "frontend/build.h"

#include <stdio.h>
#include <string.h>

/* -------------------------------------------------------------- messages */

kiln_status fe_err(fe_build *c, kiln_status st, int line, int col, const char *fmt, ...) {
    ir_loc loc = {c->src->file, line, col};
    va_list ap;
    va_start(ap, fmt);
    ir_verror(c->d, st, loc, fmt, ap);
    va_end(ap);
    fe_show_line(c->src, c->d, line, col);
    return st;
}

kiln_status fe_builder_failed(fe_build *c) {
    kiln_status st = c->b.status ? c->b.status : c->d->first ? c->d->first : KILN_ERR_INVALID;
    if (st != KILN_ERR_NOMEM) fe_show_line(c->src, c->d, c->b.loc.line, c->b.loc.col);
    return st;
}

void fe_set_loc(fe_build *c, int line, int col) {
    c->b.loc.file = c->file;
    c->b.loc.line = line;
    c->b.loc.col = col;
}

/* ----------------------------------------------------------------- names */

static size_t slot_of(const char *name, size_t cap) {
    return (size_t)ir_hash_bytes(name, strlen(name), 0) & (cap - 1);
}

fe_sym *fe_sym_find(const fe_symtab *t, const char *name) {
    if (!t->cap) return NULL;
    for (size_t i = slot_of(name, t->cap); t->slots[i]; i = (i + 1) & (t->cap - 1))
        if (strcmp(t->slots[i]->name, name) == 0) return t->slots[i];
    return NULL;
}

bool fe_name_taken(void *ctx, const char *name) {
    return fe_sym_find(&((fe_build *)ctx)->syms, name) != NULL;
}

fe_sym *fe_sym_add(fe_build *c, const char *name) {
    fe_symtab *t = &c->syms;
    if ((t->n + 1) * 2 > t->cap) { /* keep the load under one half */
        size_t cap = t->cap ? t->cap * 2 : 64;
        fe_sym **slots = ir_calloc(cap, sizeof *slots);
        if (!slots) {
            ir_oom(c->d);
            return NULL;
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->slots[i]) continue;
            size_t j = slot_of(t->slots[i]->name, cap);
            while (slots[j]) j = (j + 1) & (cap - 1);
            slots[j] = t->slots[i];
        }
        ir_free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    fe_sym *s = ir_arena_alloc(&c->arena, sizeof *s);
    if (!s) {
        ir_oom(c->d);
        return NULL;
    }
    s->name = name;
    size_t j = slot_of(name, t->cap);
    while (t->slots[j]) j = (j + 1) & (t->cap - 1);
    t->slots[j] = s;
    t->n++;
    return s;
}

kiln_status fe_unknown_name(fe_build *c, const fe_expr *e) {
    const fe_symtab *t = &c->syms;
    const char **cands = ir_malloc(sizeof *cands * (t->n + 1));
    if (!cands) return ir_oom(c->d);
    int n = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const fe_sym *s = t->slots[i];
        if (s && (s->kind == FE_SYM_INPUT || s->kind == FE_SYM_LABEL || s->kind == FE_SYM_VALUE))
            cands[n++] = s->name;
    }
    char sug[FE_MAX_NAME + 32];
    const char *dym = fe_did_you_mean(e->name, cands, n, sug, sizeof sug);
    kiln_status st =
        fe_err(c, KILN_ERR_INVALID, e->line, e->col, "unknown name '%s'%s", e->name, dym);
    ir_free(cands);
    return st;
}

/* Defines the name of statement s, declared by the first pass. */
static kiln_status define(fe_build *c, const fe_stmt *s, fe_sym_kind kind, fe_sym **out) {
    fe_sym *sym = fe_sym_find(&c->syms, s->name);
    if (sym->line != s->name_line || sym->col != s->name_col)
        return fe_err(c, KILN_ERR_INVALID, s->name_line, s->name_col,
                      "'%s' is already defined at line %d", s->name, sym->line);
    sym->kind = kind;
    sym->type = s->type;
    *out = sym;
    return KILN_OK;
}

kiln_status fe_build_tensor(fe_build *c, const fe_expr *e, ir_node **out) {
    char b[64];
    switch (e->kind) {
    case FE_E_CALL:
        return fe_build_layer(c, e, NULL, out);
    case FE_E_NAME: {
        const fe_sym *s = fe_sym_find(&c->syms, e->name);
        if (!s || s->kind == FE_SYM_AUTO) {
            if (fe_is_layer(e->name))
                return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                              "'%s' is a layer: call it, as in %s(x)", e->name, e->name);
            return fe_unknown_name(c, e);
        }
        switch (s->kind) {
        case FE_SYM_DECLARED:
            return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                          "'%s' is used before it is defined (at line %d)", e->name, s->line);
        case FE_SYM_LABEL:
            return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                          "'%s' is a label: labels feed only the loss", e->name);
        default:
            *out = s->node;
            return KILN_OK;
        }
    }
    default:
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "expected a tensor (a name or a layer call), found %s",
                      fe_expr_str(e, b, sizeof b));
    }
}

/* ------------------------------------------------------------ statements */

/* A statement that may appear once. */
static kiln_status once(fe_build *c, const fe_stmt *s, const fe_stmt **slot, const char *what,
                        const char *hint) {
    if (*slot)
        return fe_err(c, KILN_ERR_INVALID, s->line, s->col, "%s at line %d%s", what, (*slot)->line,
                      hint);
    *slot = s;
    return KILN_OK;
}

static kiln_status statement(fe_build *c, const fe_stmt *s) {
    fe_sym *sym;
    kiln_status st;
    switch (s->kind) {
    case FE_S_MODEL:
        return once(c, s, &c->model, "the model is already named", "");
    case FE_S_INPUT:
        if ((st = define(c, s, FE_SYM_INPUT, &sym))) return st;
        if (!(sym->node = ir_func_add_arg(c->infer, s->name, &s->type, c->d)))
            return c->d->first ? c->d->first : KILN_ERR_INVALID;
        /* Where data that does not fit this input is reported. */
        sym->node->loc = (ir_loc){c->file, s->name_line, s->name_col};
        return KILN_OK;
    case FE_S_LABEL:
        return define(c, s, FE_SYM_LABEL, &sym);
    case FE_S_ASSIGN:
        if ((st = define(c, s, FE_SYM_DECLARED, &sym))) return st;
        /* The outermost layer of the value takes the assigned name. */
        st = s->value->kind == FE_E_CALL ? fe_build_layer(c, s->value, s->name, &sym->node)
                                         : fe_build_tensor(c, s->value, &sym->node);
        if (!st) sym->kind = FE_SYM_VALUE;
        return st;
    case FE_S_OUTPUT:
        if ((st = once(c, s, &c->output, "the model already has an output",
                       "; list several as 'output a, b'")))
            return st;
        for (const fe_expr *e = s->value; e; e = e->next) {
            ir_node *n;
            if ((st = fe_build_tensor(c, e, &n))) return st;
            if ((st = ir_func_add_result(c->infer, n, c->d))) return st;
        }
        return KILN_OK;
    case FE_S_LOSS:
        if ((st = once(c, s, &c->loss, "the model already has a loss", ""))) return st;
        return fe_loss_stmt(c, s);
    case FE_S_TRAIN:
        if ((st = once(c, s, &c->train, "the model already has a train block", ""))) return st;
        return fe_train_stmt(c, s);
    }
    return KILN_OK;
}

/* First pass: declares every name the file defines (so that inline layers
 * avoid them) and finds the model's name. */
static kiln_status declare(fe_build *c) {
    for (const fe_stmt *s = c->ast->stmts; s; s = s->next) {
        if (s->kind == FE_S_MODEL && !c->model) c->model = s;
        if (s->kind != FE_S_INPUT && s->kind != FE_S_LABEL && s->kind != FE_S_ASSIGN) continue;
        if (fe_sym_find(&c->syms, s->name)) continue; /* reported when defined again */
        fe_sym *sym = fe_sym_add(c, s->name);
        if (!sym) return KILN_ERR_NOMEM;
        sym->kind = FE_SYM_DECLARED;
        sym->line = s->name_line;
        sym->col = s->name_col;
    }
    return KILN_OK;
}

/* The module's name without a 'model' statement: the file's base name,
 * without extension, as an identifier ("my-net.kiln" -> "my_net"). */
static void base_name(const char *file, char *buf, size_t n) {
    const char *b = strrchr(file, '/');
    b = b ? b + 1 : file;
    const char *dot = strrchr(b, '.');
    size_t len = dot && dot != b ? (size_t)(dot - b) : strlen(b);
    if (len > n - 1) len = n - 1;
    for (size_t i = 0; i < len; i++) {
        char ch = b[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_';
        buf[i] = ok ? ch : '_';
    }
    buf[len] = 0;
    if (!len || strcmp(buf, "_") == 0) snprintf(buf, n, "model");
}

static kiln_status finish(fe_build *c) {
    if (!c->output)
        return fe_err(c, KILN_ERR_INVALID, c->ast->eof_line, c->ast->eof_col,
                      "the model has no output: add 'output NAME'");
    if (c->train && !c->loss)
        return fe_err(c, KILN_ERR_INVALID, c->train->line, c->train->col,
                      "a train block needs a loss to minimize: add 'loss NAME(prediction, "
                      "label)'");
    kiln_status st;
    if (c->loss && (st = fe_build_loss_func(c))) return st;
    c->cfg.present = c->loss != NULL;
    c->m->train = c->cfg;
    return ir_verify_module(c->m, c->d);
}

kiln_status fe_build_module(const fe_source *src, const fe_ast *ast, kiln_module **out,
                            kiln_diag *d) {
    fe_build c;
    memset(&c, 0, sizeof c);
    c.src = src;
    c.d = d;
    c.ast = ast;
    ir_arena_init(&c.arena);
    c.namer.taken = fe_name_taken;
    c.namer.ctx = &c;
    c.cfg = ir_train_defaults(); /* a train block overrides them setting by setting */
    kiln_status st = declare(&c);
    if (!st) {
        char name[FE_MAX_NAME + 1];
        if (c.model)
            snprintf(name, sizeof name, "%s", c.model->name);
        else
            base_name(src->file, name, sizeof name);
        c.model = NULL; /* the statement pass checks it is given once */
        c.m = kiln_module_create(name);
        c.file = c.m ? ir_arena_strdup(&c.m->arena, src->file) : NULL;
        c.infer = c.file ? kiln_func_create(c.m, "infer") : NULL;
        if (!c.infer) st = ir_oom(d);
    }
    if (!st) {
        ir_builder_init(&c.b, c.infer, d);
        for (const fe_stmt *s = ast->stmts; s && !st; s = s->next) st = statement(&c, s);
    }
    if (!st) st = finish(&c);
    ir_free(c.syms.slots);
    ir_arena_free(&c.arena);
    if (st) {
        kiln_module_dispose(c.m);
        return st;
    }
    *out = c.m;
    return KILN_OK;
}

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
 *
 * Tokens, messages and scalar values: kir_lex.c; keyword arguments
 * (initializers, the train block): kir_train.c; their shared state: kir.h.
 */
#include "ir/kir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
            kir_oom(p);
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

/* ------------------------------------------------------- module-level */
/* param -> 'param' GLOBAL ':' type '=' init ['frozen']
   state -> 'state' GLOBAL ':' type '=' init */
static kiln_status parse_global(parser *p) {
    ir_global_kind kind = kir_at_name(p, "param") ? IR_GLOBAL_PARAM : IR_GLOBAL_STATE;
    kir_next(p);
    if (p->t.kind != T_GLOBAL) return kir_err_near(p, "expected a name '@name'");
    token nt = p->t;
    sym *prev = sym_find(&p->globals, nt.s + 1, nt.len - 1);
    if (prev)
        return kir_err_at(p, KILN_ERR_PARSE, &nt,
                          "redefinition of '%.*s' (first defined at line %d)", TOKF(&nt),
                          prev->line);
    if (p->m->n_globals >= PARSE_MAX_GLOBALS)
        return kir_err_at(p, KILN_ERR_LIMIT, &nt, "more than %d parameters and state slots",
                          PARSE_MAX_GLOBALS);
    kir_next(p);
    if (kir_expect(p, ':')) return p->st;
    token tt = p->t;
    ir_type t;
    if (kir_parse_type(p, &t)) return p->st;
    if (ir_type_batch_axis(&t) >= 0)
        return kir_err_at(p, KILN_ERR_SHAPE, &tt, "parameters and state need static dimensions");
    kiln_init in;
    if (kir_expect(p, '=')) return p->st;
    token it = p->t;
    if (kir_parse_init(p, &in)) return p->st;
    if (t.dtype == IR_I32 && !ir_init_fits_i32(in))
        return kir_err_at(
            p, KILN_ERR_INVALID, &it,
            "i32 parameters and state take zeros, ones or constant(n) with an integer n "
            "in [-2^31, 2^31)");
    const char *name = kir_tok_cstr(p, &nt, 1);
    if (!name) return p->st;
    ir_global *g = ir_module_add_global(p->m, kind, name, &t, in, &p->diag);
    if (!g) return kir_callee_failed(p, &nt);
    if (kir_at_name(p, "frozen")) {
        if (kind != IR_GLOBAL_PARAM)
            return kir_err_at(p, KILN_ERR_PARSE, &p->t, "'frozen' applies to parameters only");
        g->trainable = false;
        kir_next(p);
    }
    if (!sym_put(p, &p->globals, g->name, strlen(g->name), g, nt.line, 0)) return p->st;
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
        while (dg < n && kir_is_digit(s[n - 1 - dg])) dg++;
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
        if (!name) return kir_oom(p);
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
    if (vt.kind != T_NAME) return kir_err_near(p, "expected a name");
    const char *w = kir_tok_cstr(p, &vt, 0);
    if (!w) return p->st;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], w) == 0) {
            *out = i;
            kir_next(p);
            return KILN_OK;
        }
    return kir_suggest_err(p, &vt, what, w, names, n);
}

/* An op-valued attribute: "none" (0) or an op's name. Whether that op may
 * be named here (IR_FACT_ACT) is the carrier's infer's to say. */
static kiln_status parse_op_ref(parser *p, const ir_attr_desc *d, int64_t *out) {
    const char *names[IR_NUM_OPCODES];
    int ops[IR_NUM_OPCODES], n = 0;
    names[n] = "none", ops[n++] = 0;
    if (p->t.kind == T_NAME) {
        const char *w = kir_tok_cstr(p, &p->t, 0);
        if (!w) return p->st;
        int op = ir_op_lookup(w);
        if (op >= 0) {
            *out = op;
            kir_next(p);
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
    if (kir_expect(p, '[')) return p->st;
    if (!kir_at(p, ']')) {
        for (;;) {
            if (n == IR_ATTR_MAX_LIST)
                return kir_err_at(p, KILN_ERR_LIMIT, &p->t, "%s: more than %d entries", d->name,
                              IR_ATTR_MAX_LIST);
            kiln_status st = d->kind == IR_AK_SHAPE    ? kir_parse_dim(p, &a->v.ints[n], &n_batch)
                             : d->kind == IR_AK_FLOATS ? kir_parse_float(p, &a->v.floats[n])
                                                       : kir_parse_int(p, &a->v.ints[n]);
            if (st) return p->st;
            n++;
            if (!kir_at(p, ',')) break;
            kir_next(p);
        }
    }
    if (kir_expect_match(p, ']', '[', lopen)) return p->st;
    a->n = (int8_t)n;
    return KILN_OK;
}

/* attr -> 'true' | 'false' | INT | float | list | dtype | NAME, as d's kind says. */
static kiln_status parse_attr_value(parser *p, const ir_attr_desc *d, ir_attr *a) {
    switch ((ir_attr_kind)d->kind) {
    case IR_AK_BOOL: {
        bool b = false;
        if (kir_parse_bool(p, &b)) return p->st;
        a->v.i = b;
        return KILN_OK;
    }
    case IR_AK_INT: return kir_parse_int(p, &a->v.i);
    case IR_AK_FLOAT: return kir_parse_float(p, &a->v.f);
    case IR_AK_INTS:
    case IR_AK_FLOATS:
    case IR_AK_SHAPE: return parse_attr_list(p, d, a);
    case IR_AK_DTYPE:
        if (kir_at_name(p, "f32"))
            a->v.i = IR_F32;
        else if (kir_at_name(p, "i32"))
            a->v.i = IR_I32;
        else
            return kir_err_near(p, "expected a dtype (f32 or i32)");
        kir_next(p);
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
    return kir_err_near(p, "attribute of an unknown kind"); /* a malformed schema in ops.def */
}

/* attrs -> '{' NAME '=' attr {',' NAME '=' attr} '}' */
static kiln_status parse_attrs(parser *p, int op, ir_attrs *a, unsigned *seen) {
    const ir_op_info *info = ir_op(op);
    int open = p->t.line;
    kir_next(p); /* '{' */
    for (;;) {
        if (p->t.kind != T_NAME) return kir_err_near(p, "expected an attribute name");
        token nt = p->t;
        int k = 0;
        while (k < info->n_attrs && !kir_tok_is(&nt, info->attrs[k].name)) k++;
        if (k == info->n_attrs) {
            if (info->n_attrs == 0)
                return kir_err_at(p, KILN_ERR_PARSE, &nt, "%s has no attributes (got '%.*s')",
                                  info->name, TOKF(&nt));
            const char *names[IR_MAX_ATTRS];
            for (int i = 0; i < info->n_attrs; i++) names[i] = info->attrs[i].name;
            const char *w = kir_tok_cstr(p, &nt, 0);
            if (!w) return p->st;
            const char *sug = ir_closest_name(w, names, info->n_attrs);
            return kir_err_at(p, KILN_ERR_PARSE, &nt, "unknown attribute '%.*s' of %s%s%s%s",
                              TOKF(&nt), info->name, sug ? "; did you mean '" : "", sug ? sug : "",
                              sug ? "'?" : "");
        }
        const ir_attr_desc *d = &info->attrs[k];
        if (*seen & (1u << k))
            return kir_err_at(p, KILN_ERR_PARSE, &nt, "attribute '%s' is given twice", d->name);
        *seen |= 1u << k;
        kir_next(p);
        if (kir_expect(p, '=') || parse_attr_value(p, d, &a->v[k])) return p->st;
        if (!kir_at(p, ',')) break;
        kir_next(p);
    }
    return kir_expect_match(p, '}', '{', open);
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
        if (!e) return kir_err_at(p, KILN_ERR_PARSE, &t, "undefined value '%.*s'", TOKF(&t));
        if (!sym_visible(p, e))
            return kir_err_at(p, KILN_ERR_PARSE, &t,
                              "'%.*s' is defined inside the fused region at line %d and is not "
                              "visible here",
                              TOKF(&t), e->line);
        x = e->v;
        if (p->region && e->region == p->region) {
            *out = x;
            kir_next(p);
            return KILN_OK;
        }
    } else if (t.kind == T_GLOBAL) {
        sym *e = sym_find(&p->globals, t.s + 1, t.len - 1);
        if (!e) {
            const char **names = ir_malloc(sizeof(char *) * ((size_t)p->m->n_globals + 1));
            const char *w = names ? kir_tok_cstr(p, &t, 1) : NULL;
            for (int i = 0; names && i < p->m->n_globals; i++) names[i] = p->m->globals[i]->name;
            const char *sug = w ? ir_closest_name(w, names, p->m->n_globals) : NULL;
            if (sug)
                kir_err_at(p, KILN_ERR_PARSE, &t,
                           "unknown parameter or state '%.*s'; did you mean "
                           "'@%s'?",
                           TOKF(&t), sug);
            else
                kir_err_at(p, KILN_ERR_PARSE, &t, "unknown parameter or state '%.*s'", TOKF(&t));
            ir_free(names);
            return p->st;
        }
        x = ((ir_global *)e->v)->ref;
    } else {
        return kir_err_near(p, "expected a value ('%%name' or '@name')");
    }
    if (p->region) {
        if (!x->aux)
            return kir_err_at(p, KILN_ERR_PARSE, &t,
                              "'%.*s' is read in a fused region but is not one of its operands",
                              TOKF(&t));
        x->aux = 2;
    }
    *out = x;
    kir_next(p);
    return KILN_OK;
}

/* operands -> '(' [operand {',' operand}] ')'     into p->ops */
static kiln_status parse_operands(parser *p, int *n_out) {
    int open = p->t.line, n_in = 0;
    if (kir_expect(p, '(')) return p->st;
    if (!kir_at(p, ')')) {
        for (;;) {
            if (n_in == PARSE_MAX_OPERANDS)
                return kir_err_at(p, KILN_ERR_LIMIT, &p->t, "more than %d operands",
                                  PARSE_MAX_OPERANDS);
            if (!IR_GROW(p->ops, p->cap_ops, n_in + 1)) return kir_oom(p);
            if (parse_operand(p, &p->ops[n_in])) return p->st;
            n_in++;
            if (!kir_at(p, ',')) break;
            kir_next(p);
        }
    }
    *n_out = n_in;
    return kir_expect_match(p, ')', '(', open);
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
            return kir_err_at(p, KILN_ERR_PARSE, &label,
                              "redefinition of '%.*s' (first defined at line %d)", TOKF(&label),
                              e->line);
        kir_next(p);
        if (kir_expect(p, '=')) return p->st;
    }
    if (p->t.kind != T_NAME) return kir_err_near(p, "expected an op name");
    token ot = p->t;
    if (!region && kir_tok_is(&ot, "yield"))
        return kir_err_at(p, KILN_ERR_PARSE, &ot, "'yield' outside a fused region");
    const char *w = kir_tok_cstr(p, &ot, 0);
    if (!w) return p->st;
    int op = ir_op_lookup(w);
    if (op < 0) {
        const char *names[IR_NUM_OPCODES];
        int n = 0;
        for (int i = IR_FIRST_OP; i < IR_NUM_OPCODES; i++) names[n++] = ir_op_name(i);
        return kir_suggest_err(p, &ot, "op", w, names, n);
    }
    const ir_op_info *info = ir_op(op);
    if (region && !info->is_ew && op != IR_OP_assign)
        return kir_err_at(p, KILN_ERR_PARSE, &ot,
                          "%s cannot appear in a fused region (only elementwise ops and assign)",
                          info->name);
    if (++p->n_nodes > PARSE_MAX_NODES)
        return kir_err_at(p, KILN_ERR_LIMIT, &ot, "module has more than %d nodes", PARSE_MAX_NODES);
    kir_next(p);

    int n_in = 0;
    if (parse_operands(p, &n_in)) return p->st;

    ir_attrs attrs = ir_attrs_default(op);
    unsigned seen = 0;
    if (kir_at(p, '{') && op != IR_OP_fused && parse_attrs(p, op, &attrs, &seen)) return p->st;
    ir_type annot = ir_type_void();
    token tt = p->t;
    if (has_label) {
        if (kir_expect(p, ':')) return p->st;
        tt = p->t;
        if (kir_parse_type(p, &annot)) return p->st;
    } else if (kir_at(p, ':')) {
        return kir_err_at(p, KILN_ERR_PARSE, &p->t,
                          "a typed value needs a label ('%%name = %s(...) : type')", info->name);
    }
    ir_node mem = {.mem_offset = -1, .mem_ws = -1, .mem_wsb = -1};
    token mt = p->t;
    if (kir_at_name(p, "mem") && kir_parse_node_mem(p, &mem)) return p->st;

    if (has_label) fill_from_type(info, &attrs, seen, &annot);
    token brace = p->t;
    if (op == IR_OP_fused) {
        if (!kir_at(p, '{')) return kir_err_near(p, "expected '{' (the body of fused)");
        kir_next(p);
    }

    ir_loc kl = {p->file, ot.line, ot.col};
    ir_node *n = ir_node_create(p->m, op, n_in, p->ops, &attrs, kl, &p->diag);
    if (!n) return kir_callee_failed(p, &ot);
    /* The lookahead's trailing comment belongs to this node's (last) line. */
    if (trail_loc(p, &p->t, &n->loc)) return p->st;
    n->mem_offset = mem.mem_offset;
    n->mem_batch = mem.mem_batch;
    n->mem_inplace = mem.mem_inplace;
    n->mem_ws = mem.mem_ws;
    n->mem_wsb = mem.mem_wsb;

    if (op == IR_OP_fused) {
        if (parse_region(p, n, &ot, &brace)) return p->st;
        if (has_label && !n->region->yield)
            return kir_err_at(p, KILN_ERR_PARSE, &label,
                              "the region of '%.*s' has no 'yield' for its value", TOKF(&label));
        if (ir_node_infer(n, &p->diag)) return kir_callee_failed(p, &ot);
    }

    if (has_label && n->type.dtype == IR_VOID)
        return kir_err_at(p, KILN_ERR_PARSE, &label,
                          "%s yields no value; remove the label '%.*s ='", info->name,
                          TOKF(&label));
    if (!has_label && n->type.dtype != IR_VOID)
        return kir_err_at(p, KILN_ERR_PARSE, &first, "%s yields a value; write '%%name = %s(...)'",
                          info->name, info->name);
    if (has_label && !ir_type_eq(&annot, &n->type)) {
        char ta[IR_TYPE_STR_MAX], tb[IR_TYPE_STR_MAX];
        return kir_err_at(p, KILN_ERR_SHAPE, &tt,
                          "%s: annotated type %s differs from the inferred %s", info->name,
                          ir_type_str(&annot, ta, sizeof ta), ir_type_str(&n->type, tb, sizeof tb));
    }
    if (p->f->planned && !region && kir_check_ws(p, &mt, n)) return p->st;
    if (n->mem_offset >= 0) {
        if (n->type.dtype == IR_VOID)
            return kir_err_at(p, KILN_ERR_INVALID, &mt, "%s has no value to place in memory",
                              info->name);
        if (p->f->planned && kir_check_mem(p, &mt, n)) return p->st;
    }

    kiln_status st = region ? ir_region_append(p->m, region, n, &p->diag)
                            : ir_func_insert(p->f, -1, n, &p->diag);
    if (st) return kir_callee_failed(p, &ot);
    if (has_label && !sym_put(p, &p->values, label.s + 1, label.len - 1, n, label.line, p->region))
        return p->st;
    return KILN_OK;
}

/* region -> {node} ['yield' VALUE] '}'      (after "fused(...) ... {")
   The fused node's operands are the values the body may read from outside. */
static kiln_status parse_region(parser *p, ir_node *n, const token *op, const token *open) {
    ir_region *r = ir_arena_alloc(&p->m->arena, sizeof *r);
    if (!r) return kir_oom(p);
    n->region = r;
    for (int k = 0; k < n->n_in; k++) n->in[k]->aux = 1;
    p->region = ++p->regions;
    while (!kir_at(p, '}') && !kir_at_name(p, "yield")) {
        if (p->t.kind == T_EOF || kir_at_name(p, "return"))
            return kir_expect_match(p, '}', '{', open->line);
        if (parse_node(p, r)) return p->st;
    }
    if (kir_at_name(p, "yield")) {
        kir_next(p);
        if (p->t.kind != T_VALUE) return kir_err_near(p, "expected a value after 'yield'");
        token vt = p->t;
        sym *e = sym_find(&p->values, vt.s + 1, vt.len - 1);
        if (!e || e->region != p->region)
            return kir_err_at(p, KILN_ERR_PARSE, &vt,
                              "yield needs a value computed in the region body, not '%.*s'",
                              TOKF(&vt));
        r->yield = e->v;
        kir_next(p);
    }
    if (kir_expect_match(p, '}', '{', open->line)) return p->st;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k]->aux != 2)
            return kir_err_at(p, KILN_ERR_PARSE, op,
                              "operand %d of fused is never read by its region", k + 1);
    for (int k = 0; k < n->n_in; k++) n->in[k]->aux = 0;
    p->region = 0;
    return KILN_OK;
}

/* func    -> 'func' GLOBAL '(' [arg {',' arg}] ')' '->' results [fmem]
              '{' {node} 'return' [VALUE {',' VALUE}] '}'
   arg     -> VALUE ':' type
   results -> type | '(' [type {',' type}] ')'
   fmem    -> 'mem' '(' 'fixed' '=' INT ',' 'per_sample' '=' INT [',' 'err' '=' INT] ')' */
static kiln_status parse_func(parser *p) {
    kir_next(p); /* 'func' */
    if (p->t.kind != T_GLOBAL) return kir_err_near(p, "expected a function name '@name'");
    token nt = p->t;
    sym *prev = sym_find(&p->funcs, nt.s + 1, nt.len - 1);
    if (prev)
        return kir_err_at(p, KILN_ERR_PARSE, &nt,
                          "redefinition of function '%.*s' (first defined at line %d)", TOKF(&nt),
                          prev->line);
    if (p->m->n_funcs >= PARSE_MAX_FUNCS)
        return kir_err_at(p, KILN_ERR_LIMIT, &nt, "more than %d functions", PARSE_MAX_FUNCS);
    const char *name = kir_tok_cstr(p, &nt, 1);
    if (!name) return p->st;
    kiln_func *f = kiln_func_create(p->m, name);
    if (!f) return kir_oom(p);
    p->f = f;
    if (!sym_put(p, &p->funcs, f->name, strlen(f->name), f, nt.line, 0)) return p->st;
    sym_free(&p->values);
    kir_next(p);

    int open = p->t.line;
    if (kir_expect(p, '(')) return p->st;
    if (!kir_at(p, ')')) {
        for (;;) {
            if (p->t.kind != T_VALUE) return kir_err_near(p, "expected an argument '%%name'");
            token arg = p->t;
            sym *e = sym_find(&p->values, arg.s + 1, arg.len - 1);
            if (e)
                return kir_err_at(p, KILN_ERR_PARSE, &arg,
                                  "redefinition of '%.*s' (first defined at line %d)", TOKF(&arg),
                                  e->line);
            if (++p->n_nodes > PARSE_MAX_NODES)
                return kir_err_at(p, KILN_ERR_LIMIT, &arg, "module has more than %d nodes",
                                  PARSE_MAX_NODES);
            kir_next(p);
            ir_type t;
            if (kir_expect(p, ':') || kir_parse_type(p, &t)) return p->st;
            const char *an = kir_tok_cstr(p, &arg, 1);
            if (!an) return p->st;
            ir_node *a = ir_func_add_arg(f, an, &t, &p->diag);
            if (!a) return kir_callee_failed(p, &arg);
            if (!sym_put(p, &p->values, arg.s + 1, arg.len - 1, a, arg.line, 0)) return p->st;
            if (!kir_at(p, ',')) break;
            kir_next(p);
        }
    }
    if (kir_expect_match(p, ')', '(', open)) return p->st;
    if (p->t.kind != T_ARROW) return kir_err_near(p, "expected '->'");
    kir_next(p);

    int n_res = 0;
    bool paren = kir_at(p, '(');
    int ropen = p->t.line;
    if (paren) kir_next(p);
    if (!paren || !kir_at(p, ')')) {
        for (;;) {
            if (n_res == PARSE_MAX_RESULTS)
                return kir_err_at(p, KILN_ERR_LIMIT, &p->t, "more than %d results",
                                  PARSE_MAX_RESULTS);
            if (!IR_GROW(p->rtypes, p->cap_rtypes, n_res + 1)) return kir_oom(p);
            if (kir_parse_type(p, &p->rtypes[n_res])) return p->st;
            n_res++;
            if (!paren || !kir_at(p, ',')) break;
            kir_next(p);
        }
    }
    if (paren && kir_expect_match(p, ')', '(', ropen)) return p->st;

    if (kir_at_name(p, "mem") && kir_parse_func_mem(p, f)) return p->st;

    token brace = p->t;
    if (kir_expect(p, '{')) return p->st;
    while (!kir_at_name(p, "return")) {
        if (p->t.kind == T_EOF) return kir_expect_match(p, '}', '{', brace.line);
        if (kir_at(p, '}')) return kir_err_near(p, "expected 'return'");
        if (parse_node(p, NULL)) return p->st;
    }
    token rt = p->t;
    kir_next(p);
    int got = 0;
    if (!kir_at(p, '}')) {
        for (;;) {
            token vt = p->t;
            ir_node *v;
            if (parse_operand(p, &v)) return p->st;
            if (got < n_res && !ir_type_eq(&v->type, &p->rtypes[got])) {
                char ta[IR_TYPE_STR_MAX], tb[IR_TYPE_STR_MAX];
                return kir_err_at(p, KILN_ERR_SHAPE, &vt,
                                  "result %d of @%s is declared %s but '%.*s' is %s", got + 1,
                                  f->name, ir_type_str(&p->rtypes[got], ta, sizeof ta), TOKF(&vt),
                                  ir_type_str(&v->type, tb, sizeof tb));
            }
            if (ir_func_add_result(f, v, &p->diag)) return kir_callee_failed(p, &vt);
            got++;
            if (!kir_at(p, ',')) break;
            kir_next(p);
        }
    }
    if (got != n_res)
        return kir_err_at(p, KILN_ERR_SHAPE, &rt, "@%s declares %d result%s but returns %d",
                          f->name, n_res, n_res == 1 ? "" : "s", got);
    if (kir_expect_match(p, '}', '{', brace.line)) return p->st;
    if (f->planned && kir_check_workspace(p, &nt, f)) return p->st;
    p->f = NULL;
    return KILN_OK;
}

/* module -> 'module' GLOBAL {param | state | train | func} EOF */
static kiln_status parse_module(parser *p) {
    if (!kir_at_name(p, "module")) return kir_err_near(p, "expected 'module'");
    kir_next(p);
    if (p->t.kind != T_GLOBAL) return kir_err_near(p, "expected the module name '@name'");
    const char *name = kir_tok_cstr(p, &p->t, 1);
    if (!name) return p->st;
    p->m = kiln_module_create(name);
    if (!p->m) return kir_oom(p);
    kir_next(p);
    while (p->t.kind != T_EOF) {
        if (kir_at_name(p, "param") || kir_at_name(p, "state"))
            parse_global(p);
        else if (kir_at_name(p, "train"))
            kir_parse_train(p);
        else if (kir_at_name(p, "func"))
            parse_func(p);
        else
            kir_err_near(p, "expected 'param', 'state', 'train' or 'func'");
        if (p->st) return p->st;
    }
    return KILN_OK;
}

/* ------------------------------------------------------------ entry points */

/* An op name: the token before '(' of a node. */
static bool is_op_name(const token *t) {
    for (int i = IR_FIRST_OP; i < IR_NUM_OPCODES; i++)
        if (kir_tok_is(t, ir_op_name(i))) return true;
    return false;
}

/* Before anything is allocated, one pass of the lexer counts the nodes: a
 * labeled one is "%name =" (nothing else is), an unlabeled one an op name
 * and '(' not after '=' (initializers and optimizers are not ops, and an
 * attribute's activation has no '('). A module with more than the limit is
 * refused where the first one too many is, so a million-node file costs a
 * scan, not a million nodes. (Arguments are counted as they are parsed.) */
static kiln_status prescan(parser *p) {
    parser q = *p;            /* the lexer's state only: nothing of it is freed */
    token p1 = {0}, p2 = {0}; /* the two tokens before the lookahead */
    long nodes = 0;
    for (kir_lex(&q); q.t.kind != T_EOF; kir_next(&q)) {
        const token *node = NULL;
        if (p1.kind == T_VALUE && kir_at(&q, '='))
            node = &p1;
        else if (p1.kind == T_NAME && kir_at(&q, '(') && !(p2.kind == T_PUNCT && p2.ch == '=') &&
                 is_op_name(&p1))
            node = &p1;
        if (node && ++nodes > PARSE_MAX_NODES)
            return kir_err_at(p, KILN_ERR_LIMIT, node, "module has more than %d nodes",
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
        st =
            ir_error(&p.diag, KILN_ERR_LIMIT, ir_loc_none(),
                     "%s: a module may hold at most %zu MiB of text", p.file, PARSE_MAX_TEXT >> 20);
    } else if (!(st = prescan(&p))) {
        kir_lex(&p);
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

/*
 * attrs.c — named attributes: the schema strings of ops.def parsed into
 * descriptors, the by-name accessors, and the generic services every
 * attribute gets from its schema (defaults, equality, hashing, printing,
 * checks). Nothing here knows a particular op.
 */
#include "ir/ir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- schema */

static const struct {
    const char *word;
    ir_attr_kind kind;
} g_kinds[] = {{"int", IR_AK_INT},       {"float", IR_AK_FLOAT}, {"bool", IR_AK_BOOL},
               {"ints", IR_AK_INTS},     {"floats", IR_AK_FLOATS}, {"shape", IR_AK_SHAPE},
               {"dtype", IR_AK_DTYPE},   {"op", IR_AK_OP}};

static bool word_is(const char *s, size_t n, const char *w) {
    return strlen(w) == n && memcmp(s, w, n) == 0;
}

static bool is_list(int kind) {
    return kind == IR_AK_INTS || kind == IR_AK_FLOATS || kind == IR_AK_SHAPE;
}

/* "enum(a,b,c" .. ")" into d's names. */
static bool parse_enum_names(ir_attr_desc *d, const char *s, size_t n) {
    while (n) {
        size_t k = 0;
        while (k < n && s[k] != ',') k++;
        if (k == 0 || k >= sizeof d->enum_names[0] || d->n_enum == IR_ATTR_MAX_ENUM) return false;
        memcpy(d->enum_names[d->n_enum], s, k);
        d->enum_names[d->n_enum++][k] = 0;
        s += k, n -= k;
        if (n) s++, n--; /* ',' */
    }
    return d->n_enum > 0;
}

static bool parse_list_default(ir_attr_desc *d, const char *s, size_t n) {
    if (n < 2 || s[0] != '[' || s[n - 1] != ']') return false;
    char buf[128];
    if (n - 2 >= sizeof buf) return false;
    memcpy(buf, s + 1, n - 2);
    buf[n - 2] = 0;
    char *p = buf;
    while (*p) {
        if (d->def.n == IR_ATTR_MAX_LIST) return false;
        char *end;
        if (d->kind == IR_AK_FLOATS) {
            d->def.v.floats[d->def.n++] = strtod(p, &end);
        } else if (d->kind == IR_AK_SHAPE && *p == '?') {
            d->def.v.ints[d->def.n++] = KILN_BATCH;
            end = p + 1;
        } else {
            d->def.v.ints[d->def.n++] = strtoll(p, &end, 10);
        }
        if (end == p) return false;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return false;
    }
    return true;
}

static bool parse_default(ir_attr_desc *d, const char *s, size_t n) {
    if (word_is(s, n, "@type")) return d->from_type = d->kind == IR_AK_DTYPE ||
                                                     d->kind == IR_AK_SHAPE;
    char buf[64];
    if (n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end = buf;
    switch ((ir_attr_kind)d->kind) {
    case IR_AK_INT: d->def.v.i = strtoll(buf, &end, 10); break;
    case IR_AK_FLOAT: d->def.v.f = strtod(buf, &end); break;
    case IR_AK_BOOL:
        d->def.v.i = strcmp(buf, "true") == 0;
        return d->def.v.i || strcmp(buf, "false") == 0;
    case IR_AK_ENUM:
        for (int k = 0; k < d->n_enum; k++)
            if (strcmp(d->enum_names[k], buf) == 0) return d->def.v.i = k, true;
        return false;
    case IR_AK_DTYPE:
        d->def.v.i = strcmp(buf, "i32") == 0 ? IR_I32 : IR_F32;
        return strcmp(buf, "i32") == 0 || strcmp(buf, "f32") == 0;
    case IR_AK_OP:
        d->def.v.i = strcmp(buf, "none") == 0 ? 0 : ir_op_lookup(buf);
        return d->def.v.i >= 0;
    case IR_AK_INTS:
    case IR_AK_FLOATS:
    case IR_AK_SHAPE: return parse_list_default(d, s, n);
    }
    return end != buf && *end == 0;
}

/* One "name:kind[=default]" entry. */
static bool parse_entry(ir_attr_desc *d, const char *s, size_t n) {
    memset(d, 0, sizeof *d);
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof d->name) return false;
    memcpy(d->name, s, (size_t)(colon - s));
    const char *k = colon + 1, *eq = memchr(k, '=', n - (size_t)(k - s));
    size_t kn = (size_t)((eq ? eq : s + n) - k);
    if (kn > 6 && memcmp(k, "enum(", 5) == 0 && k[kn - 1] == ')') {
        d->kind = IR_AK_ENUM;
        if (!parse_enum_names(d, k + 5, kn - 6)) return false;
    } else {
        size_t i = 0, nk = sizeof g_kinds / sizeof g_kinds[0];
        while (i < nk && !word_is(k, kn, g_kinds[i].word)) i++;
        if (i == nk) return false;
        d->kind = (uint8_t)g_kinds[i].kind;
    }
    d->def.kind = d->kind;
    d->always = !eq;
    return !eq || parse_default(d, eq + 1, (size_t)(s + n - eq - 1));
}

bool ir_schema_parse(ir_op_info *op) {
    const char *s = op->attr_schema ? op->attr_schema : "";
    op->n_attrs = 0;
    for (;;) {
        while (*s == ' ') s++;
        if (!*s) return true;
        size_t n = strcspn(s, " ");
        if (op->n_attrs == IR_MAX_ATTRS || !parse_entry(&op->attrs[op->n_attrs], s, n))
            return false; /* a malformed table: the table tests fail */
        op->n_attrs++;
        s += n;
    }
}

/* ---------------------------------------------------------- accessors */

static const ir_attr g_zero;

int ir_op_attr_index(int opcode, const char *name) {
    const ir_op_info *o = ir_op(opcode);
    if (!o) return -1;
    for (int i = 0; i < o->n_attrs; i++)
        if (strcmp(o->attrs[i].name, name) == 0) return i;
    return -1;
}

const ir_attr_desc *ir_op_attr(int opcode, const char *name) {
    int k = ir_op_attr_index(opcode, name);
    return k < 0 ? NULL : &ir_op(opcode)->attrs[k];
}

const ir_attr *ir_attr_get(const ir_node *n, const char *name) {
    int k = ir_op_attr_index(n->op, name);
    return k < 0 || k >= n->attrs.n ? &g_zero : &n->attrs.v[k];
}

ir_attr *ir_attr_mut(ir_node *n, const char *name) {
    int k = ir_op_attr_index(n->op, name);
    return k < 0 || k >= n->attrs.n ? NULL : &n->attrs.v[k];
}

int64_t ir_attr_i(const ir_node *n, const char *name) {
    const ir_attr *a = ir_attr_get(n, name);
    return a->kind == IR_AK_FLOAT ? (int64_t)a->v.f : is_list(a->kind) ? 0 : a->v.i;
}

double ir_attr_f(const ir_node *n, const char *name) {
    const ir_attr *a = ir_attr_get(n, name);
    return a->kind == IR_AK_FLOAT ? a->v.f : is_list(a->kind) ? 0.0 : (double)a->v.i;
}

int ir_attr_ints(const ir_node *n, const char *name, const int64_t **v) {
    const ir_attr *a = ir_attr_get(n, name);
    *v = a->v.ints;
    return a->kind == IR_AK_INTS || a->kind == IR_AK_SHAPE ? a->n : 0;
}

ir_attrs ir_attrs_default(int op) {
    ir_attrs a;
    memset(&a, 0, sizeof a);
    const ir_op_info *o = ir_op(op);
    a.op = (uint16_t)op;
    if (!o) return a;
    a.n = (uint8_t)o->n_attrs;
    for (int k = 0; k < o->n_attrs; k++) a.v[k] = o->attrs[k].def;
    return a;
}

static ir_attr *slot(ir_attrs *a, const char *name) {
    int k = ir_op_attr_index(a->op, name);
    return k < 0 || k >= a->n ? NULL : &a->v[k];
}

void ir_attrs_set_i(ir_attrs *a, const char *name, int64_t v) {
    ir_attr *e = slot(a, name);
    if (!e || is_list(e->kind)) return;
    if (e->kind == IR_AK_FLOAT)
        e->v.f = (double)v;
    else
        e->v.i = e->kind == IR_AK_BOOL ? v != 0 : v;
}

void ir_attrs_set_f(ir_attrs *a, const char *name, double v) {
    ir_attr *e = slot(a, name);
    if (!e || is_list(e->kind)) return;
    if (e->kind == IR_AK_FLOAT)
        e->v.f = v;
    else
        e->v.i = (int64_t)v;
}

void ir_attrs_set_ints(ir_attrs *a, const char *name, int n, const int64_t *v) {
    ir_attr *e = slot(a, name);
    if (!e || n < 0 || n > IR_ATTR_MAX_LIST) return;
    e->n = (int8_t)n;
    for (int i = 0; i < n; i++) {
        if (e->kind == IR_AK_FLOATS)
            e->v.floats[i] = (double)v[i];
        else
            e->v.ints[i] = v[i];
    }
}

/* ------------------------------------------------ equality and hashing */

/* The bytes that hold a's value (scalars 8, lists 8 per entry). */
static size_t value_bytes(const ir_attr *a) {
    return is_list(a->kind) ? 8 * (size_t)a->n : 8;
}

static bool attr_equal(const ir_attr *x, const ir_attr *y) {
    return x->kind == y->kind && x->n == y->n && memcmp(&x->v, &y->v, value_bytes(x)) == 0;
}

bool ir_attrs_equal(const ir_attrs *a, const ir_attrs *b) {
    if (a->op != b->op || a->n != b->n) return false;
    for (int k = 0; k < a->n; k++)
        if (!attr_equal(&a->v[k], &b->v[k])) return false;
    return true;
}

uint64_t ir_attrs_hash(const ir_attrs *a, uint64_t h) {
    for (int k = 0; k < a->n; k++) {
        h = ir_hash_bytes(&a->v[k].n, 1, h);
        h = ir_hash_bytes(&a->v[k].v, value_bytes(&a->v[k]), h);
    }
    return h;
}

/* ------------------------------------------------------------ printing */

const char *ir_attr_op_name(int64_t opcode) {
    return opcode == 0 ? "none" : ir_op_name((int)opcode);
}

static void print_value(ir_sb *sb, const ir_attr_desc *d, const ir_attr *a) {
    switch ((ir_attr_kind)d->kind) {
    case IR_AK_INT: ir_sb_printf(sb, "%lld", (long long)a->v.i); return;
    case IR_AK_FLOAT: ir_sb_float(sb, a->v.f); return;
    case IR_AK_BOOL: ir_sb_puts(sb, a->v.i ? "true" : "false"); return;
    case IR_AK_ENUM:
        ir_sb_puts(sb, a->v.i >= 0 && a->v.i < d->n_enum ? d->enum_names[a->v.i] : "?");
        return;
    case IR_AK_DTYPE: ir_sb_puts(sb, ir_dtype_name((ir_dtype)a->v.i)); return;
    case IR_AK_OP: ir_sb_puts(sb, ir_attr_op_name(a->v.i)); return;
    case IR_AK_INTS:
    case IR_AK_FLOATS:
    case IR_AK_SHAPE: break;
    }
    ir_sb_putc(sb, '[');
    for (int i = 0; i < a->n; i++) {
        if (i) ir_sb_putc(sb, ',');
        if (d->kind == IR_AK_FLOATS)
            ir_sb_float(sb, a->v.floats[i]);
        else if (d->kind == IR_AK_SHAPE && a->v.ints[i] == KILN_BATCH)
            ir_sb_putc(sb, '?');
        else
            ir_sb_printf(sb, "%lld", (long long)a->v.ints[i]);
    }
    ir_sb_putc(sb, ']');
}

void ir_sb_attrs(ir_sb *sb, const ir_attrs *a) {
    const ir_op_info *info = ir_op(a->op);
    bool first = true;
    for (int k = 0; info && k < info->n_attrs && k < a->n; k++) {
        const ir_attr_desc *d = &info->attrs[k];
        if (d->from_type || (!d->always && attr_equal(&a->v[k], &d->def))) continue;
        ir_sb_puts(sb, first ? " {" : ", ");
        first = false;
        ir_sb_printf(sb, "%s=", d->name);
        print_value(sb, d, &a->v[k]);
    }
    if (!first) ir_sb_putc(sb, '}');
}

/* -------------------------------------------------------------- checks */

const char *ir_attrs_check(const ir_attrs *a, char *buf, size_t n) {
    const ir_op_info *info = ir_op(a->op);
    if (!info || a->n != info->n_attrs) {
        snprintf(buf, n, "has %d attributes, its schema %d", a->n, info ? info->n_attrs : 0);
        return buf;
    }
    for (int k = 0; k < a->n; k++) {
        const ir_attr_desc *d = &info->attrs[k];
        const ir_attr *v = &a->v[k];
        const char *why = NULL;
        if (v->kind != d->kind)
            why = "is not of its schema's kind";
        else if (v->n < 0 || v->n > IR_ATTR_MAX_LIST || (!is_list(v->kind) && v->n))
            why = "has a bad length";
        else if (d->kind == IR_AK_ENUM && (v->v.i < 0 || v->v.i >= d->n_enum))
            why = "is out of its enum's range";
        else if (d->kind == IR_AK_BOOL && v->v.i != 0 && v->v.i != 1)
            why = "is not a bool";
        else if (d->kind == IR_AK_DTYPE && v->v.i != IR_F32 && v->v.i != IR_I32)
            why = "is not a dtype";
        else if (d->kind == IR_AK_OP && v->v.i != 0 &&
                 (v->v.i < IR_FIRST_OP || v->v.i >= IR_NUM_OPCODES))
            why = "names no op";
        if (why) {
            snprintf(buf, n, "attribute '%s' %s", d->name, why);
            return buf;
        }
    }
    return NULL;
}

/*
 * cse.c — cse: a node that computes what an earlier node computes (same op,
 * same operands, same attributes) is replaced by the earlier one.
 *
 * Before:
 *   %0 = constant() {value=0.5} : f32[]
 *   %1 = constant() {value=0.5} : f32[]
 *   %2 = mul(%x, %0) : f32[?,10]
 *   %3 = mul(%1, %x) : f32[?,10]
 *   %4 = add(%2, %3) : f32[?,10]
 * After:
 *   %0 = constant() {value=0.5} : f32[]
 *   %1 = mul(%x, %0) : f32[?,10]
 *   %2 = add(%1, %1) : f32[?,10]
 *
 * Operands of ops with IR_FACT_COMM in ops.def (add, mul, equal: exact in
 * IEEE arithmetic) are compared in a canonical order; maximum and minimum
 * lack the fact (a NaN or a signed zero makes the order matter). assign is never merged, and a
 * node that reads a parameter or state slot is not merged across an assign
 * to that slot: the second read sees the new value. Fused regions are left
 * alone (this runs before fuse-elementwise); the assigns in them count.
 */
#include "passes/pass.h"

#include <string.h>

typedef struct cse {
    ir_node **fwd; /* by serial: the earlier node that replaces it */
    int limit;
    ir_node **table; /* open addressing; NULL = empty */
    size_t mask;
    ir_node **seen; /* entries in insertion order, to retire them */
    int n_seen;
    uint8_t *retired; /* by serial: no longer a valid replacement */
} cse;

static ir_node *resolve(cse *c, ir_node *n) {
    while (n->serial < c->limit && c->fwd[n->serial]) n = c->fwd[n->serial];
    return n;
}


/* Operand k in canonical order (commutative pairs sorted by serial). */
static const ir_node *operand(const ir_node *n, int k) {
    if (ir_op_has(n->op, IR_FACT_COMM) && n->n_in == 2 && n->in[0]->serial > n->in[1]->serial)
        return n->in[1 - k];
    return n->in[k];
}

static uint64_t hash_node(const ir_node *n) {
    uint64_t h = ir_hash_bytes(&n->op, sizeof n->op, 1469598103934665603ULL);
    for (int k = 0; k < n->n_in; k++) {
        int32_t s = operand(n, k)->serial;
        h = ir_hash_bytes(&s, sizeof s, h);
    }
    return ir_attrs_hash(&n->attrs, h);
}

static bool same_node(const ir_node *a, const ir_node *b) {
    if (a->op != b->op || a->n_in != b->n_in || !ir_type_eq(&a->type, &b->type)) return false;
    for (int k = 0; k < a->n_in; k++)
        if (operand(a, k) != operand(b, k)) return false;
    return ir_attrs_equal(&a->attrs, &b->attrs); /* floats bitwise: -0 is not 0 */
}

static bool reads(const ir_node *n, const ir_node *g) {
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] == g) return true;
    return false;
}

/* After an assign to g: earlier reads of g no longer equal later ones. */
static void retire_readers(cse *c, const ir_node *g) {
    for (int i = 0; i < c->n_seen; i++)
        if (reads(c->seen[i], g)) c->retired[c->seen[i]->serial] = 1;
}

static void note_assigns(cse *c, const ir_node *n) {
    if (n->op == IR_OP_assign) retire_readers(c, n->in[0]);
    if (n->region)
        for (int i = 0; i < n->region->n; i++) note_assigns(c, n->region->nodes[i]);
}

static void rewrite_operands(cse *c, ir_node *n) {
    for (int k = 0; k < n->n_in; k++) n->in[k] = resolve(c, n->in[k]);
    if (!n->region) return;
    for (int i = 0; i < n->region->n; i++) rewrite_operands(c, n->region->nodes[i]);
    int k = 0; /* keep the captured operands a set */
    for (int i = 0; i < n->n_in; i++) {
        bool dup = false;
        for (int j = 0; j < k && !dup; j++) dup = n->in[j] == n->in[i];
        if (!dup) n->in[k++] = n->in[i];
    }
    n->n_in = (uint16_t)k;
}

/* The earlier equal node, or NULL after inserting n. */
static ir_node *lookup_or_insert(cse *c, ir_node *n) {
    size_t i = (size_t)hash_node(n) & c->mask;
    for (; c->table[i]; i = (i + 1) & c->mask) {
        ir_node *e = c->table[i];
        if (!c->retired[e->serial] && same_node(e, n)) return e;
    }
    c->table[i] = n;
    c->seen[c->n_seen++] = n;
    return NULL;
}


static kiln_status cse_func(kiln_func *f, kiln_diag *d) {
    cse c;
    memset(&c, 0, sizeof c);
    c.limit = f->m->next_serial;
    size_t cap = 16;
    while (cap < (size_t)f->n_nodes * 2) cap *= 2;
    c.mask = cap - 1;
    c.fwd = ir_calloc((size_t)c.limit + 1, sizeof(ir_node *));
    c.table = ir_calloc(cap, sizeof(ir_node *));
    c.seen = ir_calloc((size_t)f->n_nodes + 1, sizeof(ir_node *));
    c.retired = ir_calloc((size_t)c.limit + 1, 1);
    kiln_status st = KILN_OK;
    if (!c.fwd || !c.table || !c.seen || !c.retired) {
        st = ir_oom(d);
        goto out;
    }
    int k = 0, merged = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        rewrite_operands(&c, n);
        bool candidate =
            n->op != IR_OP_assign && !n->region && n->type.dtype != IR_VOID && n->serial < c.limit;
        ir_node *e = candidate ? lookup_or_insert(&c, n) : NULL;
        if (e) {
            c.fwd[n->serial] = e;
            merged++;
            continue;
        }
        note_assigns(&c, n);
        f->nodes[k++] = n;
    }
    f->n_nodes = k;
    for (int i = 0; i < f->n_results; i++) f->results[i] = resolve(&c, f->results[i]);
    if (merged) ir_func_unplan(f);
out:
    ir_free(c.fwd);
    ir_free(c.table);
    ir_free(c.seen);
    ir_free(c.retired);
    return st;
}

kiln_status pass_cse(kiln_module *m, kiln_diag *d) { return pass_each_func(m, cse_func, d); }

/*
 * fuse_elementwise.c — fuse-elementwise: trees of elementwise and broadcast
 * ops (the EW rows of ops.def) become one fused region, which codegen runs
 * as one loop: no intermediate buffers, one pass over memory.
 *
 * A region that yields a value (an activation's gradient):
 *   %0 = constant() {value=0} : f32[]
 *   %1 = greater(%h, %0) : i32[?,128]
 *   %2 = select(%1, %dy, %0) : f32[?,128]
 *   %3 = matmul(%2, @h2.kernel) {transpose_b=true} : f32[?,64]
 * becomes
 *   %0 = fused(%h, %dy) : f32[?,128] {
 *     %1 = constant() {value=0} : f32[]
 *     %2 = greater(%h, %1) : i32[?,128]
 *     %3 = select(%2, %dy, %1) : f32[?,128]
 *     yield %3
 *   }
 *   %4 = matmul(%0, @h2.kernel) {transpose_b=true} : f32[?,64]
 *
 * A region of assigns, no value (the Adam update of one parameter: m, v and
 * the weight written in one loop):
 *   %0 = mul(@m.w, %b1) : f32[64,10]
 *   ...
 *   assign(@m.w, %3)
 *   ...
 *   assign(@v.w, %7)
 *   ...
 *   assign(@w, %12)
 * becomes
 *   fused(@m.w, %g, @v.w, %alpha, @w) {
 *     ...the same nodes, constants pulled in...
 *     assign(@m.w, %3)
 *     assign(@v.w, %7)
 *     assign(@w, %12)
 *   }
 *
 * How groups grow: the top-level nodes are visited from last to first; each
 * elementwise node or assign not yet in a region is the root of a new group,
 * which takes in its operands (latest first, so all users of a candidate
 * are decided before it) while
 *   - every user of the candidate is in the group: a value used outside must
 *     not be swallowed (the root, as the yield, is the exception). In a group
 *     of assigns, an assign of the candidate to a slot of the group's shape
 *     is pulled in with it — that is how m, v and w meet;
 *   - its type broadcasts into the region's shape (the yield's type, or the
 *     assigned slots' type), so the loop runs over that shape;
 *   - moving it down to the region's place (the last member's) crosses no
 *     write of a parameter or state slot it reads, and, for an assign, no
 *     read or write of its slot.
 * As no member but the yield has a user outside and the yield comes last,
 * no outside node can depend on one member and feed another: the graph
 * stays acyclic. Constants are not members: each region gets its own copy
 * of those it reads (they cost nothing in a loop), and the originals go
 * when nothing else uses them. A group of one op is left as it is.
 */
#include "passes/pass.h"

#include <string.h>

/* The top-level structure of f, rebuilt after each new region (which adds
 * serials). */
typedef struct graph {
    int limit;
    int *pos; /* by serial: index in f->nodes, -1 for anything else */
    int *ustart, *ucount;
    ir_node **users; /* top-level users of each value (CSR by serial) */
    uint8_t *result; /* by serial: returned by f */
} graph;

typedef struct fuser {
    kiln_func *f;
    kiln_diag *d;
    graph g;
    /* the group being grown */
    ir_type shape;
    bool effect;
    int place;              /* index of the last member: where the region goes */
    uint8_t *member, *cand; /* by serial */
    ir_node **members;
    int n_members, cap_members;
    int lo; /* lowest index holding a candidate */
} fuser;

static void graph_free(graph *g) {
    ir_free(g->pos);
    ir_free(g->ustart);
    ir_free(g->ucount);
    ir_free(g->users);
    ir_free(g->result);
    memset(g, 0, sizeof *g);
}

static kiln_status graph_build(graph *g, const kiln_func *f, kiln_diag *d) {
    graph_free(g);
    int limit = g->limit = f->m->next_serial;
    size_t n = (size_t)limit + 1;
    g->pos = ir_malloc(sizeof(int) * n);
    g->ustart = ir_calloc(n, sizeof(int));
    g->ucount = ir_calloc(n, sizeof(int));
    g->result = ir_calloc(n, 1);
    int total = 0;
    for (int i = 0; i < f->n_nodes; i++) total += f->nodes[i]->n_in;
    g->users = ir_malloc(sizeof(ir_node *) * ((size_t)total + 1));
    if (!g->pos || !g->ustart || !g->ucount || !g->result || !g->users) {
        graph_free(g);
        return ir_oom(d);
    }
    memset(g->pos, 0xff, sizeof(int) * n);
    for (int i = 0; i < f->n_nodes; i++) g->pos[f->nodes[i]->serial] = i;
    for (int i = 0; i < f->n_results; i++) g->result[f->results[i]->serial] = 1;
    for (int i = 0; i < f->n_nodes; i++)
        for (int k = 0; k < f->nodes[i]->n_in; k++) g->ucount[f->nodes[i]->in[k]->serial]++;
    for (int s = 0, at = 0; s < limit; s++) {
        g->ustart[s] = at;
        at += g->ucount[s];
        g->ucount[s] = 0;
    }
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int s = n->in[k]->serial;
            g->users[g->ustart[s] + g->ucount[s]++] = n;
        }
    }
    return KILN_OK;
}

static bool is_const(const ir_node *n) {
    return n->op == IR_OP_constant;
}

static bool fusable(const ir_node *n) {
    return (ir_op(n->op)->is_ew && !is_const(n)) || n->op == IR_OP_assign;
}

/* t broadcasts into shape s (dtypes aside). */
static bool fits(const ir_type *t, const ir_type *s) {
    ir_type r;
    return !ir_broadcast_shapes(t, s, &r) && ir_type_same_shape(&r, s);
}

/* ---- effects: reads and writes of parameters and state slots ---- */

static bool writes(const ir_node *o, const ir_node *glob) {
    if (o->op == IR_OP_assign) return o->in[0] == glob;
    if (o->region)
        for (int i = 0; i < o->region->n; i++)
            if (writes(o->region->nodes[i], glob)) return true;
    return false;
}

/* Any operand, so a region's captured slots and an assign's target count:
 * only ever more cautious. */
static bool touches(const ir_node *o, const ir_node *glob) {
    for (int k = 0; k < o->n_in; k++)
        if (o->in[k] == glob) return true;
    return false;
}

static bool conflicts(const ir_node *m, const ir_node *o) {
    for (int k = 0; k < m->n_in; k++) {
        const ir_node *glob = m->in[k];
        if (glob->op != IR_GLOBAL) continue;
        bool m_writes = m->op == IR_OP_assign && k == 0;
        if (m_writes ? touches(o, glob) || writes(o, glob) : writes(o, glob)) return true;
    }
    return false;
}

static bool reads_globals(const ir_node *m) {
    for (int k = 0; k < m->n_in; k++)
        if (m->in[k]->op == IR_GLOBAL) return true;
    return false;
}

/* Member m may move from its index down to `to` past the non-members between. */
static bool can_move(const fuser *fu, const ir_node *m, int to) {
    if (!reads_globals(m)) return true;
    for (int p = fu->g.pos[m->serial] + 1; p <= to; p++) {
        const ir_node *o = fu->f->nodes[p];
        if (!fu->member[o->serial] && conflicts(m, o)) return false;
    }
    return true;
}

/* ---- growing a group ---- */

static kiln_status add_member(fuser *fu, ir_node *n) {
    if (!IR_GROW(fu->members, fu->cap_members, fu->n_members + 1)) return ir_oom(fu->d);
    fu->members[fu->n_members++] = n;
    fu->member[n->serial] = 1;
    return KILN_OK;
}

static void add_candidates(fuser *fu, const ir_node *n) {
    for (int k = 0; k < n->n_in; k++) {
        const ir_node *x = n->in[k];
        if (x->serial >= fu->g.limit || fu->g.pos[x->serial] < 0) continue; /* args, globals */
        if (fu->member[x->serial] || !fusable(x)) continue;
        fu->cand[x->serial] = 1;
        if (fu->g.pos[x->serial] < fu->lo) fu->lo = fu->g.pos[x->serial];
    }
}

/* Takes x (and the assigns of x it brings) into the group if the rules in
 * the header allow; *taken says whether it did. */
static kiln_status try_absorb(fuser *fu, ir_node *x, bool *taken) {
    *taken = false;
    const graph *g = &fu->g;
    if (g->result[x->serial] || !fits(&x->type, &fu->shape)) return KILN_OK;
    enum { MAX_PULL = 16 };
    ir_node *pull[MAX_PULL];
    int n_pull = 0;
    for (int i = 0; i < g->ucount[x->serial]; i++) {
        ir_node *u = g->users[g->ustart[x->serial] + i];
        if (fu->member[u->serial]) continue;
        bool assign_of_x = u->op == IR_OP_assign && u->in[1] == x && u->in[0] != x &&
                           ir_type_same_shape(&u->in[0]->type, &fu->shape);
        if (!fu->effect || !assign_of_x || n_pull == MAX_PULL) return KILN_OK;
        bool dup = false;
        for (int j = 0; j < n_pull; j++) dup |= pull[j] == u;
        if (!dup) pull[n_pull++] = u;
    }
    /* Tentatively in, to check the moves with the new members in place. */
    int place = fu->place;
    fu->member[x->serial] = 1;
    for (int j = 0; j < n_pull; j++) {
        fu->member[pull[j]->serial] = 1;
        if (g->pos[pull[j]->serial] > place) place = g->pos[pull[j]->serial];
    }
    bool ok = can_move(fu, x, place);
    for (int j = 0; j < n_pull && ok; j++) ok = can_move(fu, pull[j], place);
    for (int j = 0; j < fu->n_members && ok && place > fu->place; j++)
        ok = can_move(fu, fu->members[j], place);
    fu->member[x->serial] = 0;
    for (int j = 0; j < n_pull; j++) fu->member[pull[j]->serial] = 0;
    if (!ok) return KILN_OK;
    kiln_status st = add_member(fu, x);
    for (int j = 0; j < n_pull && !st; j++) st = add_member(fu, pull[j]);
    if (st) return st;
    fu->place = place;
    add_candidates(fu, x);
    *taken = true;
    return KILN_OK;
}

static void reset_group(fuser *fu) {
    for (int i = 0; i < fu->n_members; i++) fu->member[fu->members[i]->serial] = 0;
    fu->n_members = 0;
}

/* Grows the group of `root`; leaves its members in fu->members. */
static kiln_status grow(fuser *fu, ir_node *root) {
    fu->effect = root->op == IR_OP_assign;
    fu->shape = fu->effect ? root->in[1]->type : root->type;
    fu->place = fu->lo = fu->g.pos[root->serial];
    kiln_status st = add_member(fu, root);
    if (st) return st;
    add_candidates(fu, root);
    for (int p = fu->place - 1; p >= fu->lo && p >= 0; p--) {
        ir_node *x = fu->f->nodes[p];
        if (!fu->cand[x->serial]) continue;
        fu->cand[x->serial] = 0;
        bool taken;
        if ((st = try_absorb(fu, x, &taken))) break;
    }
    return st; /* the scan went down to the lowest candidate: none is left */
}

/* ---- the region ---- */

static void sort_members(fuser *fu) {
    /* Insertion sort: groups are small and nearly sorted (found latest first). */
    const int *pos = fu->g.pos;
    for (int i = 1; i < fu->n_members; i++) {
        ir_node *n = fu->members[i];
        int j = i;
        while (j > 0 && pos[fu->members[j - 1]->serial] > pos[n->serial]) {
            fu->members[j] = fu->members[j - 1];
            j--;
        }
        fu->members[j] = n;
    }
}

/* Replaces the group by one fused node at the last member's place. */
static kiln_status materialize(fuser *fu, ir_node *root) {
    kiln_func *f = fu->f;
    kiln_module *m = f->m;
    sort_members(fu);
    /* Values the body reads from outside, and constants it copies. */
    int max_in = 0;
    for (int i = 0; i < fu->n_members; i++) max_in += fu->members[i]->n_in;
    ir_node **caps = ir_malloc(sizeof(ir_node *) * ((size_t)max_in + 1));
    ir_node **consts = ir_malloc(sizeof(ir_node *) * ((size_t)max_in + 1) * 2);
    if (!caps || !consts) {
        ir_free(caps);
        ir_free(consts);
        return ir_oom(fu->d);
    }
    ir_node **copies = consts + max_in;
    int n_caps = 0, n_consts = 0;
    kiln_status st = KILN_OK;
    for (int i = 0; i < fu->n_members && !st; i++) {
        ir_node *b = fu->members[i];
        for (int k = 0; k < b->n_in && !st; k++) {
            ir_node *x = b->in[k];
            if (x->serial < fu->g.limit && fu->member[x->serial]) continue;
            ir_node **list = is_const(x) ? consts : caps;
            int *count = is_const(x) ? &n_consts : &n_caps;
            bool seen = false;
            for (int j = 0; j < *count && !seen; j++) seen = list[j] == x;
            if (seen) continue;
            list[(*count)++] = x;
            if (is_const(x)) {
                copies[n_consts - 1] =
                    ir_node_create(m, IR_OP_constant, 0, NULL, &x->attrs, x->loc, fu->d);
                if (!copies[n_consts - 1]) st = KILN_ERR_NOMEM;
            }
        }
    }
    ir_node *fused =
        st ? NULL : ir_node_create(m, IR_OP_fused, n_caps, caps, NULL, root->loc, fu->d);
    ir_region *r = fused ? ir_arena_alloc(&m->arena, sizeof *r) : NULL;
    if (!r) st = KILN_ERR_NOMEM;
    for (int i = 0; i < n_consts && !st; i++) st = ir_region_append(m, r, copies[i], fu->d);
    for (int i = 0; i < fu->n_members && !st; i++)
        st = ir_region_append(m, r, fu->members[i], fu->d);
    if (st) {
        ir_free(caps);
        ir_free(consts);
        return fu->d && fu->d->first ? fu->d->first : ir_oom(fu->d);
    }
    /* Everything allocated: now rewire (nothing below can fail). */
    for (int i = 0; i < fu->n_members; i++) {
        ir_node *b = fu->members[i];
        b->mem_offset = -1;
        for (int k = 0; k < b->n_in; k++)
            for (int j = 0; j < n_consts; j++)
                if (b->in[k] == consts[j]) b->in[k] = copies[j];
    }
    if (!fu->effect) ir_func_replace_uses(f, root, fused); /* before the body holds it */
    fused->region = r;
    r->yield = fu->effect ? NULL : root;
    ir_node_infer(fused, NULL);
    fused->aux = 1; /* never a root */
    int k = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        if (!fu->member[n->serial])
            f->nodes[k++] = n;
        else if (i == fu->place)
            f->nodes[k++] = fused;
    }
    f->n_nodes = k;
    ir_free(caps);
    ir_free(consts);
    return KILN_OK;
}


static int count_ops(const fuser *fu) {
    return fu->n_members; /* constants are never members */
}

/* (Re)builds the analysis and the per-serial marks of the group. */
static kiln_status analyse(fuser *fu) {
    kiln_status st = graph_build(&fu->g, fu->f, fu->d);
    if (st) return st;
    ir_free(fu->member);
    ir_free(fu->cand);
    fu->n_members = 0;
    fu->member = ir_calloc((size_t)fu->g.limit + 1, 1);
    fu->cand = ir_calloc((size_t)fu->g.limit + 1, 1);
    return fu->member && fu->cand ? KILN_OK : ir_oom(fu->d);
}

static kiln_status fuse_func(kiln_func *f, kiln_diag *d) {
    fuser fu;
    memset(&fu, 0, sizeof fu);
    fu.f = f;
    fu.d = d;
    int limit0 = f->m->next_serial;
    int *before = ir_func_use_counts(f);
    kiln_status st = before ? analyse(&fu) : ir_oom(d);
    int made = 0;
    for (int i = 0; i < f->n_nodes; i++) f->nodes[i]->aux = 0;
    for (int i = f->n_nodes - 1; i >= 0 && !st; i--) {
        ir_node *root = f->nodes[i];
        if (root->aux || !fusable(root)) continue;
        root->aux = 1;
        st = grow(&fu, root);
        if (!st && count_ops(&fu) >= 2) {
            st = materialize(&fu, root);
            if (!st) {
                made++;
                st = analyse(&fu);
                /* Untried nodes all sit before the root, and only moved down. */
                if (i > f->n_nodes) i = f->n_nodes;
            }
        }
        reset_group(&fu);
    }
    if (made && !st) {
        /* Constants whose users all took a copy go too. */
        int *after = ir_func_use_counts(f);
        if (!after) {
            st = ir_oom(d);
        } else {
            int k = 0;
            for (int i = 0; i < f->n_nodes; i++) {
                ir_node *n = f->nodes[i];
                bool orphan = is_const(n) && n->serial < limit0 && before[n->serial] > 0 &&
                              after[n->serial] == 0;
                if (!orphan) f->nodes[k++] = n;
            }
            f->n_nodes = k;
            ir_free(after);
        }
    }
    if (made) ir_func_unplan(f);
    graph_free(&fu.g);
    ir_free(fu.member);
    ir_free(fu.cand);
    ir_free(fu.members);
    ir_free(before);
    return st;
}

kiln_status pass_fuse_elementwise(kiln_module *m, kiln_diag *d) { return pass_each_func(m, fuse_func, d); }

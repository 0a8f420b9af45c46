/*
 * dce.c — dce: removes nodes whose values nobody uses.
 *
 * Before:
 *   %0 = matmul(%x, @w) : f32[?,10]
 *   %1 = exp(%0) : f32[?,10]              (never used)
 *   %2 = relu(%0) : f32[?,10]
 *   assign(@step, %c)
 *   return %2
 * After:
 *   %0 = matmul(%x, @w) : f32[?,10]
 *   %1 = relu(%0) : f32[?,10]
 *   assign(@step, %c)
 *   return %1
 *
 * Live: the results, every assign (an effect), a fused region holding an
 * assign, and whatever a live node reads. Inside a live region the same rule
 * removes body nodes that neither feed an assign nor the yield; a region
 * whose value is unused but which assigns loses its yield (its type becomes
 * void), and its operand list shrinks to the values its body still reads.
 */
#include "passes/pass.h"

static bool has_effect(const ir_node *n) {
    if (n->op == IR_OP_assign) return true;
    if (n->region)
        for (int i = 0; i < n->region->n; i++)
            if (has_effect(n->region->nodes[i])) return true;
    return false;
}

/* Removes dead body nodes of a live region; `value_used`: the region's value
 * has a user. `live` counts uses by serial and is updated for captured
 * values through the region's operands by the caller. Returns whether
 * anything changed. */
static bool dce_region(ir_node *n, bool value_used, int *live, int limit) {
    ir_region *r = n->region;
    bool changed = false;
    if (r->yield && !value_used) {
        r->yield = NULL;
        n->type = ir_type_void();
        changed = true;
    }
    if (r->yield && r->yield->serial < limit) live[r->yield->serial]++;
    for (int i = r->n - 1; i >= 0; i--) {
        ir_node *b = r->nodes[i];
        bool keep = has_effect(b) || (b->serial < limit && live[b->serial] > 0);
        b->aux = keep;
        if (!keep) {
            changed = true;
            continue;
        }
        for (int j = 0; j < b->n_in; j++)
            if (b->in[j]->serial < limit) live[b->in[j]->serial]++;
    }
    int w = 0;
    for (int i = 0; i < r->n; i++)
        if (r->nodes[i]->aux) r->nodes[w++] = r->nodes[i];
    r->n = w;
    /* The captured operands: exactly the outside values still read. */
    int m = 0;
    for (int j = 0; j < n->n_in; j++) {
        bool read = false;
        for (int i = 0; i < r->n && !read; i++)
            for (int q = 0; q < r->nodes[i]->n_in && !read; q++)
                read = r->nodes[i]->in[q] == n->in[j];
        if (read)
            n->in[m++] = n->in[j];
        else
            changed = true;
    }
    n->n_in = (uint16_t)m;
    return changed;
}


static kiln_status dce_func(kiln_func *f, kiln_diag *d) {
    int limit = f->m->next_serial;
    int *live = ir_calloc((size_t)limit + 1, sizeof(int));
    if (!live) return ir_oom(d);
    for (int i = 0; i < f->n_results; i++)
        if (f->results[i]->serial < limit) live[f->results[i]->serial]++;
    bool changed = false;
    /* Users come after what they use: one backward sweep settles liveness. */
    for (int i = f->n_nodes - 1; i >= 0; i--) {
        ir_node *n = f->nodes[i];
        bool used = n->serial < limit && live[n->serial] > 0;
        n->aux = used || has_effect(n);
        if (!n->aux) {
            changed = true;
            continue;
        }
        if (n->region && dce_region(n, used, live, limit)) changed = true;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k]->serial < limit) live[n->in[k]->serial]++;
    }
    if (changed) {
        int k = 0;
        for (int i = 0; i < f->n_nodes; i++)
            if (f->nodes[i]->aux) f->nodes[k++] = f->nodes[i];
        f->n_nodes = k;
        ir_func_unplan(f);
    }
    ir_free(live);
    return KILN_OK;
}

kiln_status pass_dce(kiln_module *m, kiln_diag *d) { return pass_each_func(m, dce_func, d); }

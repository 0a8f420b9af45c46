/*
 * fuse_dense_act.c — fuse-dense-act: a matrix product, its bias and its
 * activation become one dense node, so codegen emits one GEMM and one
 * epilogue loop over the output while it is still in cache.
 *
 * Before:
 *   %0 = matmul(%x, @h1.kernel) : f32[?,128]
 *   %1 = add(%0, @h1.bias) : f32[?,128]
 *   %2 = relu(%1) : f32[?,128]
 * After:
 *   %0 = dense(%x, @h1.kernel, @h1.bias) {activation=relu} : f32[?,128]
 *
 * The activation is any op with IR_FACT_ACT in ops.def (relu, leaky_relu,
 * sigmoid, tanh), its attributes (leaky_relu's alpha) kept on dense;
 * anything else after the add (softmax, another add, a second user of the
 * sum) gives a dense node with activation none and leaves that op alone:
 *   %0 = dense(%x, @out.kernel, @out.bias) : f32[?,10]
 *   %1 = softmax(%0) {axis=1} : f32[?,10]
 *
 * Nothing fuses when the product is used elsewhere too (it would be computed
 * twice), when an operand is transposed (dense takes x . W as they are), or
 * when the bias is not a vector of the output's width, broadcast over rows.
 * The frontend expands a dense layer into exactly these primitive ops, so a
 * model written with primitives ends up with the same fused graph.
 */
#include "passes/pass.h"

/* The only top-level node that uses each value, when it has exactly one
 * use and that use is an operand of a top-level node (not a result or a
 * region body). Indexed by serial; NULL otherwise. */
typedef struct users {
    int *count;
    ir_node **only;
} users;

static kiln_status users_build(users *u, const kiln_func *f, kiln_diag *d) {
    int limit = f->m->next_serial;
    u->count = ir_func_use_counts(f);
    u->only = ir_calloc((size_t)limit + 1, sizeof(ir_node *));
    if (!u->count || !u->only) {
        ir_free(u->count);
        ir_free(u->only);
        return ir_oom(d);
    }
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k]->serial < limit) u->only[n->in[k]->serial] = n;
    }
    return KILN_OK;
}

static ir_node *single_user(const users *u, const ir_node *x) {
    return u->count[x->serial] == 1 ? u->only[x->serial] : NULL;
}

static bool is_matrix_f32(const ir_type *t) {
    return t->rank == 2 && t->dtype == IR_F32;
}


/* The bias operand of `add` when `add` adds a row vector to `mm`. */
static ir_node *bias_of(const ir_node *add, const ir_node *mm) {
    if (add->op != IR_OP_add) return NULL;
    ir_node *b = add->in[0] == mm ? add->in[1] : add->in[1] == mm ? add->in[0] : NULL;
    if (!b || b == mm) return NULL;
    if (b->type.dtype != IR_F32 || b->type.rank != 1 || b->type.dims[0] != mm->type.dims[1])
        return NULL;
    return ir_type_eq(&add->type, &mm->type) ? b : NULL;
}

static int position_of(const kiln_func *f, const ir_node *n, int from) {
    for (int i = from; i < f->n_nodes; i++)
        if (f->nodes[i] == n) return i;
    return -1;
}


static kiln_status fuse_func(kiln_func *f, kiln_diag *d) {
    users u;
    kiln_status st = users_build(&u, f, d);
    if (st) return st;
    /* aux = 1 marks nodes folded into a dense node, removed at the end. */
    for (int i = 0; i < f->n_nodes; i++) f->nodes[i]->aux = 0;
    int fused = 0;
    for (int i = 0; i < f->n_nodes && !st; i++) {
        ir_node *mm = f->nodes[i];
        if (mm->op != IR_OP_matmul || mm->aux || ir_attr_i(mm, "transpose_a") ||
            ir_attr_i(mm, "transpose_b"))
            continue;
        ir_node *x = mm->in[0], *w = mm->in[1];
        if (!is_matrix_f32(&x->type) || !is_matrix_f32(&w->type)) continue;
        ir_node *add = single_user(&u, mm), *b = add ? bias_of(add, mm) : NULL;
        if (!b) continue;
        ir_node *act = single_user(&u, add);
        if (act && !ir_op_has(act->op, IR_FACT_ACT)) act = NULL;
        ir_node *last = act ? act : add;
        int pos = position_of(f, last, i + 1);
        if (pos < 0) continue; /* not a top-level node of f: leave it */
        /* dense takes the activation op and the attributes it shares with it. */
        ir_attrs at = ir_attrs_default(IR_OP_dense);
        ir_attrs_set_i(&at, "activation", act ? act->op : 0);
        const ir_op_info *ai = act ? ir_op(act->op) : NULL;
        for (int k = 0; ai && k < ai->n_attrs; k++)
            ir_attrs_set_f(&at, ai->attrs[k].name, ir_attr_f(act, ai->attrs[k].name));
        ir_node *in[3] = {x, w, b};
        /* The checks above are infer_dense's, so only memory can fail here. */
        ir_node *dn = ir_node_create(f->m, IR_OP_dense, 3, in, &at, mm->loc, d);
        if (!dn) {
            st = d && d->first ? d->first : KILN_ERR_NOMEM;
            break;
        }
        ir_func_replace_uses(f, last, dn);
        f->nodes[pos] = dn;
        mm->aux = 1;
        if (last != add) add->aux = 1;
        fused++;
    }
    if (fused) {
        ir_func_remove_marked(f);
        ir_func_unplan(f);
    }
    ir_free(u.count);
    ir_free(u.only);
    return st;
}

kiln_status pass_fuse_dense_act(kiln_module *m, kiln_diag *d) { return pass_each_func(m, fuse_func, d); }

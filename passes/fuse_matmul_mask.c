/*
 * fuse_matmul_mask.c — fuse-matmul-mask: the backward of relu (and
 * leaky_relu) applied to a product becomes part of the product: one
 * matmul_mask node, whose GEMM applies the mask to the sums at the store,
 * instead of a second pass over memory.
 *
 * Before (what autodiff writes for dense layers with relu):
 *   %17 = matmul(%14, @p.kernel) {transpose_b=true} : f32[?,64]
 *   %18 = constant() {value=0} : f32[]
 *   %19 = greater(%1, %18) : i32[?,64]
 *   %20 = select(%19, %17, %18) : f32[?,64]
 * After:
 *   %20 = matmul_mask(%14, @p.kernel, %1) {transpose_b=true} : f32[?,64]
 * (dce then drops the greater and constant nobody reads.)
 *
 * leaky_relu's form, the product read twice:
 *   %1 = matmul(%a, %b) : f32[?,8]
 *   %3 = greater(%h, %zero) : i32[?,8]
 *   %4 = mul(%1, %alpha) : f32[?,8]          (alpha a nonzero f32 constant)
 *   %5 = select(%3, %1, %4) : f32[?,8]
 * becomes matmul_mask(%a, %b, %h) {alpha=...}.
 *
 * Only when the product has no other reader (it is not computed twice),
 * the mask h is f32 of the product's own shape (not broadcast), the zero
 * is +0 and the select's a top-level node. It runs before fuse-elementwise,
 * which would otherwise put the greater and select in a region of their own.
 */
#include <math.h>

#include "passes/pass.h"

/* Whether x is a scalar f32 constant; its value in *v. */
static bool scalar_const(const ir_node *x, double *v) {
    if (x->op != IR_OP_constant || x->type.rank != 0 || x->type.dtype != IR_F32) return false;
    *v = ir_attr_f(x, "value");
    return true;
}

static bool is_plus_zero(const ir_node *x) {
    double v;
    return scalar_const(x, &v) && v == 0 && !signbit(v);
}

/* The other operand of binary n beside x (n reads x once), or NULL. */
static ir_node *other_operand(const ir_node *n, const ir_node *x) {
    if (n->in[0] == x && n->in[1] != x) return n->in[1];
    if (n->in[1] == x && n->in[0] != x) return n->in[0];
    return NULL;
}

/* The mask h when s = select(greater(h, +0), mm, else) with h f32 of s's
 * type; NULL otherwise. */
static ir_node *mask_of(const ir_node *s) {
    const ir_node *g = s->in[0];
    if (g->op != IR_OP_greater || !is_plus_zero(g->in[1])) return NULL;
    ir_node *h = g->in[0];
    return h->type.dtype == IR_F32 && ir_type_eq(&h->type, &s->type) ? h : NULL;
}

static kiln_status fuse_func(kiln_func *f, kiln_diag *d) {
    int *uses = ir_func_use_counts(f);
    if (!uses) return ir_oom(d);
    kiln_status st = KILN_OK;
    int fused = 0;
    /* aux = 1 marks the products and leaky_relu's muls folded away. */
    for (int i = 0; i < f->n_nodes; i++) f->nodes[i]->aux = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *s = f->nodes[i];
        if (s->op != IR_OP_select) continue;
        ir_node *mm = s->in[1], *rest = s->in[2], *h = mask_of(s);
        if (!h || mm->op != IR_OP_matmul || mm->aux || !ir_type_eq(&mm->type, &s->type)) continue;
        double alpha = 0;
        ir_node *mul = NULL;
        if (is_plus_zero(rest)) {
            if (uses[mm->serial] != 1) continue;
        } else {
            /* leaky_relu's: rest = mm * alpha, alpha nonzero as an f32. */
            ir_node *k = rest->op == IR_OP_mul ? other_operand(rest, mm) : NULL;
            if (!k || !scalar_const(k, &alpha) || (float)alpha == 0.0f ||
                uses[rest->serial] != 1 || uses[mm->serial] != 2 || rest->aux)
                continue;
            mul = rest;
        }
        ir_attrs at = ir_attrs_default(IR_OP_matmul_mask);
        ir_attrs_set_i(&at, "transpose_a", ir_attr_i(mm, "transpose_a"));
        ir_attrs_set_i(&at, "transpose_b", ir_attr_i(mm, "transpose_b"));
        ir_attrs_set_f(&at, "alpha", alpha);
        ir_node *in[3] = {mm->in[0], mm->in[1], h};
        /* The product's and the mask's checks passed, so only memory fails. */
        ir_node *n = ir_node_create(f->m, IR_OP_matmul_mask, 3, in, &at, s->loc, d);
        if (!n) {
            st = d && d->first ? d->first : KILN_ERR_NOMEM;
            break;
        }
        ir_func_replace_uses(f, s, n);
        f->nodes[i] = n;
        mm->aux = 1;
        if (mul) mul->aux = 1;
        fused++;
    }
    if (fused) {
        ir_func_remove_marked(f);
        ir_func_unplan(f);
    }
    ir_free(uses);
    return st;
}

kiln_status pass_fuse_matmul_mask(kiln_module *m, kiln_diag *d) {
    return pass_each_func(m, fuse_func, d);
}

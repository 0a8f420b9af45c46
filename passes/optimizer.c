/*
 * optimizer.c — turns @train_step's gradients into parameter updates.
 *
 * autodiff leaves @train_step returning (loss, metrics..., one gradient per
 * trainable parameter). This pass removes the gradient results and writes
 * the update of m->train.opt as IR on the parameters and their state slots
 * (module globals, zero-initialized, named as Keras names its variables),
 * then increments the step counter @optimizer.iterations. Adam, before:
 *
 *   func @train_step(%x : f32[?,4], %y : f32[?,3]) -> (f32[], f32[4,3]) {
 *     ...
 *     %14 = matmul(%x, %13) {transpose_a=true} : f32[4,3]      # d@w
 *     return %2, %14
 *   }
 *
 * after:
 *
 *   state @optimizer.iterations : i32[] = zeros
 *   state @optimizer.w.m : f32[4,3] = zeros
 *   state @optimizer.w.v : f32[4,3] = zeros
 *
 *   func @train_step(%x : f32[?,4], %y : f32[?,3]) -> f32[] {
 *     ...
 *     %14 = matmul(%x, %13) {transpose_a=true} : f32[4,3]
 *     %15 = constant() {value=1} : i32[]
 *     %16 = add(@optimizer.iterations, %15) : i32[]             t
 *     ...                                                      alpha, 1 - b1, 1 - b2, eps
 *     %34 = sub(%14, @optimizer.w.m) : f32[4,3]                m' = m + (g - m)(1 - b1)
 *     %35 = mul(%34, %31) : f32[4,3]
 *     %36 = add(@optimizer.w.m, %35) : f32[4,3]
 *     %37 = mul(%14, %14) : f32[4,3]                           v' = v + (g^2 - v)(1 - b2)
 *     %38 = sub(%37, @optimizer.w.v) : f32[4,3]
 *     %39 = mul(%38, %32) : f32[4,3]
 *     %40 = add(@optimizer.w.v, %39) : f32[4,3]
 *     %41 = sqrt(%40) : f32[4,3]                               w' = w - m' alpha / (sqrt(v') + eps)
 *     %42 = add(%41, %33) : f32[4,3]
 *     %43 = mul(%36, %30) : f32[4,3]
 *     %44 = div(%43, %42) : f32[4,3]
 *     %45 = sub(@w, %44) : f32[4,3]
 *     assign(@optimizer.w.m, %36)
 *     assign(@optimizer.w.v, %40)
 *     assign(@w, %45)
 *     assign(@optimizer.iterations, %16)
 *     return %2
 *   }
 *
 * Each parameter's update is one tree of elementwise ops over its gradient,
 * itself, its slots and shared scalars, followed by its assigns, so
 * fuse-elementwise can make the m, v and w updates one loop. Every assign
 * comes after every read of the value it overwrites: the forward and
 * backward graphs precede the updates, and an update reads only its own
 * parameter and slots.
 *
 * The formulas are Keras 3's, term for term:
 *   SGD       w -= lr g
 *   momentum  v = momentum v - lr g;  w += v   (Nesterov: w += momentum v - lr g)
 *   Adam      t = iterations + 1;  alpha = lr sqrt(1 - b2^t) / (1 - b1^t)
 *             m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2)
 *             w -= m alpha / (sqrt(v) + eps)          ("epsilon hat")
 *   AdamW     w -= lr wd w, then the Adam step (decoupled weight decay)
 * b^t is exp(t ln b) on the f32 cast of t: pow in the op table takes a
 * constant exponent.
 */
#include "passes/grad.h"
#include "passes/pass.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K(v)      ir_b_scalar(b, (v))
#define ADD(x, y) ir_b_bin(b, IR_OP_add, (x), (y))
#define SUB(x, y) ir_b_bin(b, IR_OP_sub, (x), (y))
#define MUL(x, y) ir_b_bin(b, IR_OP_mul, (x), (y))
#define DIV(x, y) ir_b_bin(b, IR_OP_div, (x), (y))

/* The scalars every parameter's update shares, built once. */
typedef struct step {
    ir_node *t;        /* iterations + 1, i32 */
    ir_node *lr;       /* SGD */
    ir_node *momentum; /* SGD with momentum */
    ir_node *alpha;    /* Adam's bias-corrected learning rate */
    ir_node *one_m_b1; /* 1 - beta_1 */
    ir_node *one_m_b2; /* 1 - beta_2 */
    ir_node *epsilon;  /* Adam */
    ir_node *lr_wd;    /* AdamW: lr * weight_decay */
} step;

/* v rounded to 15 significant digits: 1 - 0.9 prints as 0.1, not as
 * 0.09999999999999998, and rounds to the same f32. */
static double tidy(double v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.15g", v);
    return strtod(buf, NULL);
}

static kiln_status check_hyper(const ir_optimizer *o, kiln_diag *d) {
    const char *name = ir_optimizer_name(o->kind);
    const char *bad = NULL;
    if (!isfinite(o->lr) || o->lr < 0) bad = "lr must be a finite number >= 0";
    if (o->kind == IR_OPT_SGD) {
        if (!isfinite(o->momentum) || o->momentum < 0 || o->momentum > 1)
            bad = "momentum must be in [0, 1]";
    } else {
        if (!(o->beta_1 >= 0 && o->beta_1 < 1)) bad = "beta_1 must be in [0, 1)";
        if (!(o->beta_2 >= 0 && o->beta_2 < 1)) bad = "beta_2 must be in [0, 1)";
        if (!isfinite(o->epsilon) || o->epsilon < 0) bad = "epsilon must be a finite number >= 0";
        if (o->kind == IR_OPT_ADAMW && (!isfinite(o->weight_decay) || o->weight_decay < 0))
            bad = "weight_decay must be a finite number >= 0";
    }
    if (bad) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "optimizer %s: %s", name, bad);
    return KILN_OK;
}

/* Adds the zero-initialized state slot optimizer.<param>.<slot>. The slot
 * name comes last so that only parameters end in ".kernel"/".bias": scripts
 * find a checkpoint's layers by those suffixes. */
static kiln_status add_slot(kiln_module *m, const char *slot, const ir_global *p, ir_global **out,
                            kiln_diag *d) {
    char name[512];
    int len = snprintf(name, sizeof name, "optimizer.%s.%s", p->name, slot);
    if (len < 0 || (size_t)len >= sizeof name)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "optimizer: parameter name '%s' is too long", p->name);
    if (ir_module_global(m, name))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "optimizer: the state slot @%s already exists", name);
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
    *out = ir_module_add_global(m, IR_GLOBAL_STATE, name, &p->type, zeros, d);
    return *out ? KILN_OK : KILN_ERR_NOMEM; /* the type is a parameter's: valid */
}

/* b^t for the f32 scalar t, as exp(t ln b); 0 when b is 0 (t >= 1). */
static ir_node *power(ir_builder *b, double base, ir_node *tf) {
    if (base == 0) return K(0);
    return ir_b_un(b, IR_OP_exp, MUL(tf, K(log(base))));
}

static void shared_scalars(ir_builder *b, const ir_optimizer *o, ir_global *iterations, step *s) {
    s->t = ADD(iterations->ref, ir_b_const(b, IR_I32, 1, 0, NULL));
    if (o->kind == IR_OPT_SGD) {
        s->lr = K(o->lr);
        if (o->momentum != 0) s->momentum = K(o->momentum);
        return;
    }
    ir_attrs to_f32 = ir_attrs_default(IR_OP_cast);
    ir_attrs_set_i(&to_f32, "dtype", IR_F32);
    ir_node *tf = ir_b_op(b, IR_OP_cast, 1, &s->t, &to_f32);
    ir_node *b1t = power(b, o->beta_1, tf);
    ir_node *b2t = power(b, o->beta_2, tf);
    ir_node *one = K(1);
    /* One node per statement: C leaves the order of a call's arguments to
     * the compiler, and the order of the nodes must not depend on it. */
    ir_node *lr = K(o->lr);
    ir_node *root = ir_b_un(b, IR_OP_sqrt, SUB(one, b2t));
    ir_node *num = MUL(root, lr);
    s->alpha = DIV(num, SUB(one, b1t));
    s->one_m_b1 = K(tidy(1 - o->beta_1));
    s->one_m_b2 = K(tidy(1 - o->beta_2));
    s->epsilon = K(o->epsilon);
    if (o->kind == IR_OPT_ADAMW) s->lr_wd = K(tidy(o->lr * o->weight_decay));
}

/* The update of parameter p with gradient g: the new values of its slots and
 * of p, then their assigns. */
static kiln_status update(ir_builder *b, kiln_module *m, const ir_optimizer *o, const step *s,
                          ir_global *p, ir_node *g, kiln_diag *d) {
    ir_node *w = p->ref;
    ir_global *slot[2] = {NULL, NULL};
    ir_node *val[2] = {NULL, NULL}, *w_new = NULL;
    kiln_status st;
    if (o->kind == IR_OPT_SGD && o->momentum == 0) {
        w_new = SUB(w, MUL(g, s->lr));
    } else if (o->kind == IR_OPT_SGD) {
        if ((st = add_slot(m, "momentum", p, &slot[0], d))) return st;
        ir_node *lr_g = MUL(g, s->lr);
        ir_node *v = SUB(MUL(slot[0]->ref, s->momentum), lr_g);
        val[0] = v;
        w_new = o->nesterov ? ADD(w, SUB(MUL(v, s->momentum), lr_g)) : ADD(w, v);
    } else { /* Adam, AdamW */
        if ((st = add_slot(m, "m", p, &slot[0], d)) || (st = add_slot(m, "v", p, &slot[1], d)))
            return st;
        ir_node *mm = slot[0]->ref, *vv = slot[1]->ref;
        ir_node *m_new = ADD(mm, MUL(SUB(g, mm), s->one_m_b1));
        ir_node *g2 = MUL(g, g);
        ir_node *v_new = ADD(vv, MUL(SUB(g2, vv), s->one_m_b2));
        ir_node *w0 = w;
        if (o->kind == IR_OPT_ADAMW) w0 = SUB(w, MUL(w, s->lr_wd));
        ir_node *den = ADD(ir_b_un(b, IR_OP_sqrt, v_new), s->epsilon);
        w_new = SUB(w0, DIV(MUL(m_new, s->alpha), den));
        val[0] = m_new;
        val[1] = v_new;
    }
    for (int i = 0; i < 2; i++)
        if (slot[i]) ir_b_assign(b, slot[i], val[i]);
    ir_b_assign(b, p, w_new);
    return b->status;
}

/* Dropout draws its mask from (seed, step, node): in @train_step the step is
 * the one being taken (@optimizer.iterations before its increment) and the
 * seed the train block's, so the same seed gives the same masks and a run
 * resumed from a checkpoint (which holds the counter) continues exactly. */
static void bind_dropout(kiln_func *f, ir_global *iters, int64_t seed) {
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        if (n->op != IR_OP_dropout) continue;
        n->in[1] = iters->ref;
        ir_attrs_set_i(&n->attrs, "seed", seed);
    }
}

/* Batch normalization in training mode updates its moving statistics with
 * Keras' formula, moving = moving * momentum + batch * (1 - momentum), from
 * the batch's mean and biased variance (recomputed here as IR; cse merges
 * them with the gradient's). Only globals get an update. */
static void update_batch_norm(ir_builder *b, kiln_func *f, int n_nodes) {
    for (int i = 0; i < n_nodes && !b->status; i++) {
        ir_node *n = f->nodes[i];
        if (n->op != IR_OP_batch_norm || !ir_attr_i(n, "training")) continue;
        ir_node *stat[2];
        if (pass_bn_stats(b, n->in[0], &stat[0], &stat[1])) return;
        double mo = ir_attr_f(n, "momentum");
        for (int k = 0; k < 2; k++) {
            ir_node *mv = n->in[3 + k];
            if (mv->op != IR_GLOBAL) continue;
            ir_node *keep = MUL(mv, K(mo));
            ir_node *upd = ADD(keep, MUL(stat[k], K(tidy(1 - mo))));
            ir_b_assign(b, f->m->globals[mv->index], upd);
        }
    }
}

kiln_status pass_optimizer(kiln_module *m, kiln_diag *d) {
    const ir_optimizer *o = &m->train.opt;
    if (o->kind == IR_OPT_NONE)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "optimizer: the module configures no optimizer (set one in its train "
                        "block, e.g. optimizer = adam(lr=0.001))");
    kiln_status st = check_hyper(o, d);
    if (st) return st;
    kiln_func *f = kiln_module_func(m, "train_step");
    if (!f)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "optimizer: the module has no @train_step (run autodiff first)");
    if (ir_module_global(m, "optimizer.iterations"))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "optimizer: @train_step already updates the parameters "
                        "(@optimizer.iterations exists)");

    /* The last results are the gradients, one per trainable parameter. */
    int n_train = 0;
    for (int i = 0; i < m->n_globals; i++)
        n_train += m->globals[i]->kind == IR_GLOBAL_PARAM && m->globals[i]->trainable;
    int first = f->n_results - n_train;
    if (first < 1)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "optimizer: @train_step returns %d values, expected the loss and %d "
                        "gradients",
                        f->n_results, n_train);
    for (int i = 0, r = first; i < m->n_globals; i++) {
        const ir_global *p = m->globals[i];
        if (p->kind != IR_GLOBAL_PARAM || !p->trainable) continue;
        const ir_type *gt = &f->results[r++]->type;
        char t1[IR_TYPE_STR_MAX], t2[IR_TYPE_STR_MAX];
        if (!ir_type_eq(gt, &p->type))
            return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                            "optimizer: result %d of @train_step (%s) is not a gradient of "
                            "@%s (%s)",
                            r, ir_type_str(gt, t1, sizeof t1), p->name,
                            ir_type_str(&p->type, t2, sizeof t2));
        if (p->type.dtype != IR_F32)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "optimizer: parameter @%s is %s; only f32 parameters can be trained "
                            "(freeze it)",
                            p->name, ir_dtype_name((ir_dtype)p->type.dtype));
    }

    /* The gradients stay in f->results past n_results, so a failure can
     * restore the function and drop the slots it added. */
    int n_results = f->n_results, n_nodes = f->n_nodes, n_globals = m->n_globals;
    ir_node **grads = f->results + first;
    f->n_results = first;

    ir_builder bb, *b = &bb;
    ir_builder_init(b, f, d);
    ir_type i32 = ir_type_scalar(IR_I32);
    kiln_init zeros = {KILN_INIT_ZEROS, 0, 0};
    ir_global *iters =
        ir_module_add_global(m, IR_GLOBAL_STATE, "optimizer.iterations", &i32, zeros, d);
    st = iters ? KILN_OK : KILN_ERR_NOMEM; /* the name is free: checked above */
    step s;
    memset(&s, 0, sizeof s);
    if (!st) {
        shared_scalars(b, o, iters, &s);
        st = b->status;
    }
    for (int i = 0, r = 0; i < m->n_globals && !st; i++) {
        ir_global *p = m->globals[i];
        if (p->kind != IR_GLOBAL_PARAM || !p->trainable) continue;
        st = update(b, m, o, &s, p, grads[r++], d);
    }
    if (!st) bind_dropout(f, iters, m->train.seed);
    if (!st) {
        update_batch_norm(b, f, n_nodes);
        st = b->status;
    }
    if (!st) {
        ir_b_assign(b, iters, s.t);
        st = b->status;
    }
    if (st) {
        f->n_results = n_results;
        f->n_nodes = n_nodes;
        ir_module_truncate_globals(m, n_globals);
    }
    return st;
}

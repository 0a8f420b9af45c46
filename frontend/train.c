/*
 * train.c — what training needs: the loss, the metrics, the optimizer and
 * the train block's settings.
 *
 * The loss function is @infer plus the label and the loss:
 *
 *   func @loss(%x : f32[?,784], %y : f32[?,10]) -> (f32[], f32[]) {
 *     ...the nodes of @infer...
 *     %9  = categorical_crossentropy(%8, %y) : f32[]
 *     %10 = argmax(%8) {axis=1} : i32[?]          # accuracy, when asked for
 *     %11 = argmax(%y) {axis=1} : i32[?]
 *     %12 = equal(%10, %11) : i32[?]
 *     %13 = cast(%12) {dtype=f32} : f32[?]
 *     %14 = reduce_mean(%13) : f32[]
 *     return %9, %14
 *   }
 *
 * Accuracy follows Keras' 'accuracy': class indices for i32 labels, a 0.5
 * threshold for binary cross-entropy or a single output unit, and argmax
 * against one-hot labels otherwise.
 */
#include "frontend/build.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ----------------------------------------------------------------- losses */

static const struct {
    const char *name;
    int op;
    kiln_loss loss; /* in the C API */
} g_losses[] = {
    {"categorical_crossentropy", IR_OP_categorical_crossentropy,
     KILN_LOSS_CATEGORICAL_CROSSENTROPY},
    {"sparse_categorical_crossentropy", IR_OP_sparse_categorical_crossentropy,
     KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY},
    {"mean_squared_error", IR_OP_mean_squared_error, KILN_LOSS_MEAN_SQUARED_ERROR},
    {"mse", IR_OP_mean_squared_error, KILN_LOSS_MEAN_SQUARED_ERROR},
    {"binary_crossentropy", IR_OP_binary_crossentropy, KILN_LOSS_BINARY_CROSSENTROPY},
};

int fe_loss_op(kiln_loss loss) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_losses); i++)
        if (g_losses[i].loss == loss) return g_losses[i].op;
    return -1;
}

const char *fe_loss_name(kiln_loss loss) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_losses); i++)
        if (g_losses[i].loss == loss) return g_losses[i].name;
    return NULL;
}

static int find_loss(const char *name) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_losses); i++)
        if (strcmp(g_losses[i].name, name) == 0) return g_losses[i].op;
    return -1;
}

bool fe_is_loss(const char *name) {
    return find_loss(name) >= 0;
}

/* The label argument of a loss: a name declared with 'label'. */
static kiln_status loss_label(fe_build *c, const fe_expr *call, const fe_expr *e,
                              const fe_sym **out) {
    char b[64];
    if (e->kind != FE_E_NAME)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "the second argument of %s must be a label, found %s", call->name,
                      fe_expr_str(e, b, sizeof b));
    const fe_sym *s = fe_sym_find(&c->syms, e->name);
    if (!s || s->kind == FE_SYM_AUTO) return fe_unknown_name(c, e);
    if (s->kind == FE_SYM_DECLARED)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "'%s' is used before it is defined (at line %d)", e->name, s->line);
    if (s->kind != FE_SYM_LABEL)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "'%s' is not a label: a loss takes (prediction, label)", e->name);
    *out = s;
    return KILN_OK;
}

kiln_status fe_loss_stmt(fe_build *c, const fe_stmt *s) {
    const fe_expr *call = s->value;
    char b[IR_TYPE_STR_MAX], sug[64];
    int op = find_loss(call->name);
    if (op < 0) {
        const char *names[KILN_ARRAY_LEN(g_losses)];
        for (size_t i = 0; i < KILN_ARRAY_LEN(g_losses); i++) names[i] = g_losses[i].name;
        return fe_err(
            c, KILN_ERR_INVALID, call->line, call->col, "unknown loss '%s'%s", call->name,
            fe_did_you_mean(call->name, names, (int)KILN_ARRAY_LEN(g_losses), sug, sizeof sug));
    }
    static const fe_param params[] = {{"prediction", NULL, true}, {"label", NULL, true}};
    const fe_expr *v[2];
    kiln_status st = fe_bind(c, call, params, 2, v);
    if (st) return st;
    /* Keras writes loss(y_true, y_pred); say so when the label comes first. */
    const fe_sym *ps = v[0]->kind == FE_E_NAME ? fe_sym_find(&c->syms, v[0]->name) : NULL;
    if (ps && ps->kind == FE_SYM_LABEL)
        return fe_err(c, KILN_ERR_INVALID, v[0]->line, v[0]->col,
                      "'%s' is a label: a loss takes the prediction first, then the label",
                      v[0]->name);
    ir_node *pred;
    const fe_sym *label = NULL;
    if ((st = fe_build_tensor(c, v[0], &pred)) || (st = loss_label(c, call, v[1], &label)))
        return st;
    bool sparse = op == IR_OP_sparse_categorical_crossentropy;
    if (sparse && label->type.dtype != IR_I32)
        return fe_err(c, KILN_ERR_SHAPE, v[1]->line, v[1]->col,
                      "%s needs i32 class indices, but label '%s' is %s; use "
                      "categorical_crossentropy for one-hot labels",
                      call->name, label->name, ir_type_str(&label->type, b, sizeof b));
    if (!sparse && label->type.dtype != IR_F32)
        return fe_err(c, KILN_ERR_SHAPE, v[1]->line, v[1]->col,
                      "%s needs f32 labels, but label '%s' is %s%s", call->name, label->name,
                      ir_type_str(&label->type, b, sizeof b),
                      op == IR_OP_categorical_crossentropy
                          ? "; use sparse_categorical_crossentropy for class indices"
                          : "");
    /* Shapes are checked now, by the op's own inference on a scratch node,
     * so the message is the builder's and comes in file order. */
    ir_node y, probe;
    memset(&y, 0, sizeof y);
    memset(&probe, 0, sizeof probe);
    y.op = IR_ARG;
    y.type = label->type;
    ir_node *in[2] = {pred, &y};
    probe.op = (uint16_t)op;
    probe.n_in = 2;
    probe.in = in;
    probe.loc.file = c->file;
    probe.loc.line = call->line;
    probe.loc.col = call->col;
    if ((st = ir_node_infer(&probe, c->d))) {
        fe_show_line(c->src, c->d, call->line, call->col);
        return st;
    }
    c->loss_op = op;
    c->loss_pred = pred;
    c->loss_label = label;
    return KILN_OK;
}

/* Keras' 'accuracy' for this loss and these labels, as a mean of hits. */
static ir_node *accuracy(ir_builder *b, int loss_op, ir_node *p, ir_node *y) {
    ir_attrs last = ir_attrs_default(IR_OP_argmax), to_f32 = ir_attrs_default(IR_OP_cast);
    ir_attrs_set_i(&last, "axis", -1);
    ir_attrs_set_i(&to_f32, "dtype", IR_F32);
    /* One statement per node: C leaves the order of arguments open. */
    ir_node *pc, *yc;
    bool binary = loss_op == IR_OP_binary_crossentropy ||
                  (p->type.rank > 0 && p->type.dims[p->type.rank - 1] == 1);
    if (y->type.dtype == IR_I32) {
        pc = ir_b_op(b, IR_OP_argmax, 1, &p, &last);
        yc = y;
    } else if (binary) {
        ir_node *half = ir_b_scalar(b, 0.5);
        pc = ir_b_bin(b, IR_OP_greater, p, half);
        yc = ir_b_bin(b, IR_OP_greater, y, half);
    } else {
        pc = ir_b_op(b, IR_OP_argmax, 1, &p, &last);
        yc = ir_b_op(b, IR_OP_argmax, 1, &y, &last);
    }
    ir_node *hit = ir_b_bin(b, IR_OP_equal, pc, yc);
    ir_node *f = ir_b_op(b, IR_OP_cast, 1, &hit, &to_f32);
    return ir_b_reduce(b, IR_OP_reduce_mean, f, 0, NULL, false);
}

/* The status of a failed step of fe_loss_func_ir, kept in the builder. */
static kiln_status loss_failed(ir_builder *b, kiln_status st) {
    if (!b->status) b->status = st ? st : b->d && b->d->first ? b->d->first : KILN_ERR_NOMEM;
    return b->status;
}

kiln_status fe_loss_func_ir(ir_builder *b, kiln_func *infer, ir_node *pred, int loss_op,
                            const char *label, const ir_type *label_type, bool accuracy_too,
                            ir_loc loss_loc, ir_loc acc_loc) {
    kiln_diag *d = b->d;
    ir_node **map = NULL;
    int map_len = 0;
    kiln_func *f = ir_func_clone(infer, "loss", &map, &map_len, d);
    if (!f) return loss_failed(b, KILN_OK);
    ir_node *p = pred;
    if (p->serial < map_len && map[p->serial]) p = map[p->serial];
    ir_free(map);
    f->n_results = 0; /* the clone returns @infer's outputs; @loss returns its own */
    ir_node *y = ir_func_add_arg(f, label, label_type, d);
    if (!y) return loss_failed(b, KILN_OK);
    ir_builder_init(b, f, d);
    b->loc = loss_loc;
    ir_node *l = ir_b_bin(b, loss_op, p, y);
    if (!l) return b->status;
    kiln_status st = ir_func_add_result(f, l, d);
    if (st || !accuracy_too) return st ? loss_failed(b, st) : KILN_OK;
    b->loc = acc_loc;
    ir_node *acc = accuracy(b, loss_op, p, y);
    if (!acc) return b->status;
    st = ir_func_add_result(f, acc, d);
    return st ? loss_failed(b, st) : KILN_OK;
}

kiln_status fe_build_loss_func(fe_build *c) {
    ir_loc loss_loc = {c->file, c->loss->value->line, c->loss->value->col};
    ir_loc acc_loc = {c->file, c->acc_line, c->acc_col};
    const fe_sym *label = c->loss_label;
    kiln_status st = fe_loss_func_ir(&c->b, c->infer, c->loss_pred, c->loss_op, label->name,
                                     &label->type, c->cfg.metric_accuracy, loss_loc, acc_loc);
    return st ? fe_builder_failed(c) : KILN_OK;
}

/* -------------------------------------------------------------- optimizer */

/* optimizer -> NAME | NAME '(' args ')'     args in Keras' order, or by name */
static kiln_status optimizer(fe_build *c, const fe_expr *e, ir_optimizer *out) {
    char b[64], sug[64];
    if (e->kind != FE_E_NAME && e->kind != FE_E_CALL)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "'optimizer' must be an optimizer such as adam(lr=0.001), got %s",
                      fe_expr_str(e, b, sizeof b));
    ir_opt_kind kind = ir_optimizer_find(e->name, strlen(e->name));
    if (kind == IR_OPT_NONE) {
        const char *names[8];
        int n = ir_optimizer_names(names, 8);
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "unknown optimizer '%s'%s", e->name,
                      fe_did_you_mean(e->name, names, n, sug, sizeof sug));
    }
    *out = ir_optimizer_defaults(kind);
    ir_setting_id ids[IR_SET_COUNT];
    fe_param params[IR_SET_COUNT];
    int n = ir_setting_names(kind, NULL, ids, IR_SET_COUNT);
    for (int i = 0; i < n; i++) {
        const ir_setting *s = ir_setting_get(ids[i]);
        params[i] = (fe_param){s->name, s->keras, false};
    }
    const fe_expr *v[IR_SET_COUNT];
    kiln_status st = fe_bind(c, e, params, n, v);
    for (int i = 0; i < n && !st; i++) {
        if (!v[i]) continue;
        if (ir_setting_get(ids[i])->kind == IR_SK_BOOL)
            st = fe_get_bool(c, v[i], params[i].name, ir_setting_bool(out, ids[i]));
        else
            st = fe_get_float(c, v[i], params[i].name, ir_setting_get(ids[i])->range,
                              ir_setting_float(out, ids[i]));
    }
    return st;
}

/* ------------------------------------------------------------ train block */

/* metrics -> '[' NAME {',' NAME} ']' */
static kiln_status metrics(fe_build *c, const fe_expr *e) {
    char b[64], sug[64];
    if (e->kind != FE_E_LIST)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "'metrics' must be a list such as [accuracy], got %s",
                      fe_expr_str(e, b, sizeof b));
    for (const fe_expr *m = e->items; m; m = m->next) {
        if (m->kind != FE_E_NAME)
            return fe_err(c, KILN_ERR_INVALID, m->line, m->col, "expected a metric, found %s",
                          fe_expr_str(m, b, sizeof b));
        if (ir_metric_find(m->name, strlen(m->name)) < 0)
            return fe_err(c, KILN_ERR_INVALID, m->line, m->col, "unknown metric '%s'%s", m->name,
                          fe_did_you_mean(m->name, ir_metric_names, 1, sug, sizeof sug));
        c->cfg.metric_accuracy = true;
        c->acc_line = m->line;
        c->acc_col = m->col;
    }
    return KILN_OK;
}

/* train -> 'train' '{' {NAME '=' value} '}'   NAME a train key of ir/settings.def */
kiln_status fe_train_stmt(fe_build *c, const fe_stmt *s) {
    const fe_arg *seen[IR_SET_COUNT] = {0};
    kiln_status st = KILN_OK;
    for (const fe_arg *a = s->settings; a && !st; a = a->next) {
        int k = ir_setting_find(IR_OPT_NONE, a->key, strlen(a->key));
        if (k < 0) {
            const char *keys[IR_SET_COUNT];
            int n = ir_setting_names(IR_OPT_NONE, keys, NULL, IR_SET_COUNT);
            char sug[64];
            return fe_err(c, KILN_ERR_INVALID, a->key_line, a->key_col,
                          "unknown train setting '%s'%s", a->key,
                          fe_did_you_mean(a->key, keys, n, sug, sizeof sug));
        }
        if (seen[k])
            return fe_err(c, KILN_ERR_INVALID, a->key_line, a->key_col,
                          "'%s' is already set at line %d", a->key, seen[k]->key_line);
        seen[k] = a;
        ir_setting_id id = (ir_setting_id)k;
        switch (ir_setting_get(id)->kind) {
        case IR_SK_OPTIMIZER:
            st = optimizer(c, a->value, &c->cfg.opt);
            break;
        case IR_SK_METRICS:
            st = metrics(c, a->value);
            break;
        default: {
            const ir_setting *r = ir_setting_get(id);
            st = fe_get_int(c, a->value, r->name, r->lo, r->hi, ir_setting_int(&c->cfg, id));
            break;
        }
        }
    }
    return st;
}

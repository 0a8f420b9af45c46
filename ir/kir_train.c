/*
 * kir_train.c — the .kir text's keyword arguments: initializers of
 * parameters, and the train block. The train block's names, kinds,
 * defaults and ranges all come from the settings table (ir/settings.def),
 * the one the .kiln parser and the C API use, so a value refused there is
 * refused here with the same message:
 *
 *     train {
 *       optimizer = adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07)
 *       epochs = 10
 *       batch_size = 128
 *       metrics = [accuracy]
 *     }
 */
#include "ir/kir.h"
#include "ir/settings.h"

#include <string.h>

enum { MAX_KWARGS = 16 };

/* kwargs -> '(' [NAME '=' value {',' NAME '=' value}] ')' */
kiln_status kir_parse_kwargs(parser *p, const char *what, const kir_kwarg *kw, int n) {
    int open = p->t.line;
    if (kir_expect(p, '(')) return p->st;
    bool seen[MAX_KWARGS] = {0};
    while (!kir_at(p, ')')) {
        if (p->t.kind != T_NAME) return kir_err_near(p, "expected an argument name");
        token nt = p->t;
        int k = 0;
        while (k < n && !kir_tok_is(&nt, kw[k].name) &&
               !(kw[k].alias && kir_tok_is(&nt, kw[k].alias)))
            k++;
        if (k == n) {
            const char *names[MAX_KWARGS];
            for (int i = 0; i < n && i < MAX_KWARGS; i++) names[i] = kw[i].name;
            const char *w = kir_tok_cstr(p, &nt, 0);
            if (!w) return p->st;
            const char *sug = ir_closest_name(w, names, n);
            return kir_err_at(p, KILN_ERR_PARSE, &nt, "unknown argument '%.*s' for %s%s%s%s",
                              TOKF(&nt), what, sug ? "; did you mean '" : "", sug ? sug : "",
                              sug ? "'?" : "");
        }
        if (seen[k])
            return kir_err_at(p, KILN_ERR_PARSE, &nt, "argument '%s' is given twice", kw[k].name);
        seen[k] = true;
        kir_next(p);
        if (kir_expect(p, '=')) return p->st;
        token vt = p->t;
        if (kw[k].f ? kir_parse_float(p, kw[k].f) : kir_parse_bool(p, kw[k].b)) return p->st;
        char msg[160];
        if (kw[k].f && kw[k].setting >= 0 &&
            ir_setting_check_float((ir_setting_id)kw[k].setting, *kw[k].f, msg, sizeof msg))
            return kir_err_at(p, KILN_ERR_INVALID, &vt, "%s", msg);
        if (!kir_at(p, ',')) break;
        kir_next(p);
    }
    return kir_expect_match(p, ')', '(', open);
}

/* init -> NAME [kwargs]        constant(v), normal(mean=, stddev=), uniform(min=, max=) */
kiln_status kir_parse_init(parser *p, kiln_init *out) {
    if (p->t.kind != T_NAME) return kir_err_near(p, "expected an initializer");
    token nt = p->t;
    const char *w = kir_tok_cstr(p, &nt, 0);
    if (!w) return p->st;
    int k = ir_init_lookup(w);
    if (k < 0) {
        const char *names[KILN_INIT_COUNT];
        for (int i = 0; i < KILN_INIT_COUNT; i++) names[i] = ir_init_name((kiln_init_kind)i);
        return kir_suggest_err(p, &nt, "initializer", w, names, KILN_INIT_COUNT);
    }
    kir_next(p);
    kiln_init in = {(kiln_init_kind)k, 0, 0};
    switch (in.kind) {
    case KILN_INIT_CONSTANT: {
        int open = p->t.line;
        if (kir_expect(p, '(') || kir_parse_float(p, &in.a) || kir_expect_match(p, ')', '(', open))
            return p->st;
        break;
    }
    case KILN_INIT_NORMAL: { /* Keras' RandomNormal defaults */
        in.b = 0.05;
        kir_kwarg kw[] = {{"mean", NULL, &in.a, NULL, -1}, {"stddev", NULL, &in.b, NULL, -1}};
        if (kir_at(p, '(') && kir_parse_kwargs(p, "normal", kw, 2)) return p->st;
        break;
    }
    case KILN_INIT_UNIFORM: { /* Keras' RandomUniform defaults */
        in.a = -0.05;
        in.b = 0.05;
        kir_kwarg kw[] = {{"min", NULL, &in.a, NULL, -1}, {"max", NULL, &in.b, NULL, -1}};
        if (kir_at(p, '(') && kir_parse_kwargs(p, "uniform", kw, 2)) return p->st;
        break;
    }
    default:
        if (kir_at(p, '('))
            return kir_err_at(p, KILN_ERR_PARSE, &p->t, "initializer '%s' takes no arguments",
                              ir_init_name(in.kind));
        break;
    }
    *out = in;
    return KILN_OK;
}

/* optimizer -> NAME [kwargs]      sgd, adam, adamw; arguments from the table */
static kiln_status parse_optimizer(parser *p, ir_optimizer *op) {
    token vt = p->t;
    ir_opt_kind kind = vt.kind == T_NAME ? ir_optimizer_find(vt.s, vt.len) : IR_OPT_NONE;
    if (kind == IR_OPT_NONE) {
        if (vt.kind != T_NAME) return kir_err_near(p, "expected an optimizer");
        const char *names[8];
        int n = ir_optimizer_names(names, 8);
        const char *w = kir_tok_cstr(p, &vt, 0);
        if (!w) return p->st;
        return kir_suggest_err(p, &vt, "optimizer", w, names, n);
    }
    kir_next(p);
    *op = ir_optimizer_defaults(kind);
    if (!kir_at(p, '(')) return KILN_OK;
    ir_setting_id ids[IR_SET_COUNT];
    kir_kwarg kw[IR_SET_COUNT];
    int n = ir_setting_names(kind, NULL, ids, IR_SET_COUNT);
    for (int i = 0; i < n; i++) {
        const ir_setting *s = ir_setting_get(ids[i]);
        bool is_bool = s->kind == IR_SK_BOOL;
        kw[i] = (kir_kwarg){s->name, s->keras, is_bool ? NULL : ir_setting_float(op, ids[i]),
                            is_bool ? ir_setting_bool(op, ids[i]) : NULL, (int)ids[i]};
    }
    return kir_parse_kwargs(p, ir_optimizer_name(kind), kw, n);
}

/* metrics -> '[' [NAME {',' NAME}] ']' */
static kiln_status parse_metrics(parser *p, ir_train_config *c) {
    int open = p->t.line;
    if (kir_expect(p, '[')) return p->st;
    while (!kir_at(p, ']')) {
        if (p->t.kind != T_NAME) return kir_err_near(p, "expected a metric");
        token mt = p->t;
        if (ir_metric_find(mt.s, mt.len) < 0) {
            const char *w = kir_tok_cstr(p, &mt, 0);
            if (!w) return p->st;
            return kir_suggest_err(p, &mt, "metric", w, ir_metric_names, 1);
        }
        c->metric_accuracy = true;
        kir_next(p);
        if (!kir_at(p, ',')) break;
        kir_next(p);
    }
    return kir_expect_match(p, ']', '[', open);
}

/* An integer setting: the table's range and message, at the value. */
static kiln_status parse_int_setting(parser *p, ir_train_config *c, ir_setting_id id) {
    token vt = p->t;
    int64_t v;
    char msg[160];
    if (kir_parse_int(p, &v)) return p->st;
    if (ir_setting_check_int(id, v, msg, sizeof msg))
        return kir_err_at(p, KILN_ERR_INVALID, &vt, "%s", msg);
    *ir_setting_int(c, id) = v;
    return KILN_OK;
}

/* train -> 'train' '{' {key '=' value} '}'     key: a train row of ir/settings.def */
kiln_status kir_parse_train(parser *p) {
    token tt = p->t;
    if (p->m->train.present) return kir_err_at(p, KILN_ERR_PARSE, &tt, "a second train block");
    kir_next(p);
    int open = p->t.line;
    if (kir_expect(p, '{')) return p->st;
    ir_train_config *c = &p->m->train;
    c->present = true;
    int seen[IR_SET_COUNT] = {0}; /* the line each key is set at */
    while (!kir_at(p, '}')) {
        if (p->t.kind == T_EOF) return kir_expect_match(p, '}', '{', open);
        if (p->t.kind != T_NAME) return kir_err_near(p, "expected a train setting");
        token kt = p->t;
        int k = ir_setting_find(IR_OPT_NONE, kt.s, kt.len);
        if (k < 0) {
            const char *keys[IR_SET_COUNT];
            int n = ir_setting_names(IR_OPT_NONE, keys, NULL, IR_SET_COUNT);
            const char *w = kir_tok_cstr(p, &kt, 0);
            if (!w) return p->st;
            return kir_suggest_err(p, &kt, "train setting", w, keys, n);
        }
        if (seen[k])
            return kir_err_at(p, KILN_ERR_PARSE, &kt, "'%.*s' is already set at line %d", TOKF(&kt),
                              seen[k]);
        seen[k] = kt.line;
        kir_next(p);
        if (kir_expect(p, '=')) return p->st;
        ir_setting_id id = (ir_setting_id)k;
        switch (ir_setting_get(id)->kind) {
        case IR_SK_OPTIMIZER:
            parse_optimizer(p, &c->opt);
            break;
        case IR_SK_METRICS:
            parse_metrics(p, c);
            break;
        default:
            parse_int_setting(p, c, id);
            break;
        }
        if (p->st) return p->st;
    }
    kir_next(p);
    return KILN_OK;
}

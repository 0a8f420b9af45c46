/*
 * args.c — call arguments: binding them to a callee's parameters (by
 * position, then by keyword, as in Python) and reading them as integers,
 * numbers, booleans, activations and initializers. Every message names the
 * argument and points at the value the user wrote.
 */
#include "frontend/build.h"

#include <stdio.h>
#include <math.h>
#include <string.h>

const char *fe_expr_str(const fe_expr *e, char *buf, size_t n) {
    switch (e->kind) {
    case FE_E_NAME:
        snprintf(buf, n, "'%.40s'", e->name);
        break;
    case FE_E_CALL:
        snprintf(buf, n, "'%.40s(...)'", e->name);
        break;
    case FE_E_LIST:
        snprintf(buf, n, "a list");
        break;
    case FE_E_STRING:
        snprintf(buf, n, "\"%.40s%s\"", e->name, strlen(e->name) > 40 ? "..." : "");
        break;
    case FE_E_NUMBER:
        if (e->is_int)
            snprintf(buf, n, "%lld", (long long)e->ival);
        else
            snprintf(buf, n, "%g", e->num);
        break;
    }
    return buf;
}

kiln_status fe_bind(fe_build *c, const fe_expr *call, const fe_param *params, int n,
                    const fe_expr **vals) {
    for (int i = 0; i < n; i++) vals[i] = NULL;
    int pos = 0;
    bool keyed = false;
    for (const fe_arg *a = call->kind == FE_E_CALL ? call->args : NULL; a; a = a->next) {
        const fe_expr *v = a->value;
        if (!a->key) {
            if (keyed)
                return fe_err(c, KILN_ERR_PARSE, v->line, v->col,
                              "positional argument after a keyword argument");
            if (pos == n) {
                if (n == 0)
                    return fe_err(c, KILN_ERR_INVALID, v->line, v->col, "%s takes no arguments",
                                  call->name);
                return fe_err(c, KILN_ERR_INVALID, v->line, v->col,
                              "%s takes at most %d argument%s, got %d", call->name, n,
                              n == 1 ? "" : "s", call->n_args);
            }
            vals[pos++] = v;
            continue;
        }
        keyed = true;
        int k = -1;
        for (int i = 0; i < n && k < 0; i++)
            if (strcmp(a->key, params[i].name) == 0 ||
                (params[i].alias && strcmp(a->key, params[i].alias) == 0))
                k = i;
        if (k < 0) {
            const char *cands[32];
            int nc = 0;
            for (int i = 0; i < n && nc < 30; i++) {
                cands[nc++] = params[i].name;
                if (params[i].alias) cands[nc++] = params[i].alias;
            }
            char sug[FE_MAX_NAME + 32];
            return fe_err(c, KILN_ERR_INVALID, a->key_line, a->key_col,
                          "unknown argument '%s' for %s%s", a->key, call->name,
                          fe_did_you_mean(a->key, cands, nc, sug, sizeof sug));
        }
        if (vals[k])
            return fe_err(c, KILN_ERR_INVALID, a->key_line, a->key_col,
                          "argument '%s' is given twice", params[k].name);
        vals[k] = v;
    }
    for (int i = 0; i < n; i++)
        if (params[i].required && !vals[i])
            return fe_err(c, KILN_ERR_INVALID, call->line, call->col,
                          "missing argument '%s' for %s", params[i].name, call->name);
    return KILN_OK;
}

kiln_status fe_get_int(fe_build *c, const fe_expr *e, const char *what, int64_t lo, int64_t hi,
                       int64_t *out) {
    char b[160];
    if (e->kind != FE_E_NUMBER || !e->is_int)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "'%s' must be an integer, got %s", what,
                      fe_expr_str(e, b, sizeof b));
    if (ir_check_int(what, lo, hi, e->ival, b, sizeof b))
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "%s", b);
    *out = e->ival;
    return KILN_OK;
}

kiln_status fe_get_float(fe_build *c, const fe_expr *e, const char *what, ir_range r, double *out) {
    char b[160];
    if (e->kind != FE_E_NUMBER)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "'%s' must be a number, got %s", what,
                      fe_expr_str(e, b, sizeof b));
    if (ir_check_float(what, r, e->num, b, sizeof b))
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "%s", b);
    *out = e->num;
    return KILN_OK;
}

kiln_status fe_get_bool(fe_build *c, const fe_expr *e, const char *what, bool *out) {
    char b[64];
    if (e->kind == FE_E_NAME && strcmp(e->name, "true") == 0) {
        *out = true;
    } else if (e->kind == FE_E_NAME && strcmp(e->name, "false") == 0) {
        *out = false;
    } else {
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "'%s' must be true or false, got %s",
                      what, fe_expr_str(e, b, sizeof b));
    }
    return KILN_OK;
}

/* "linear" first: it is Keras' name for no activation. */
static const char *const g_acts[] = {"linear", "relu",     "leaky_relu", "sigmoid", "tanh",
                                     "softmax", "none",    "elu",        "relu6",   "gelu",
                                     "softplus", "silu",   "swish",      "hard_sigmoid"};

const char *fe_arg_key(const fe_expr *call, const fe_expr *v, const char *name) {
    for (const fe_arg *a = call->args; a; a = a->next)
        if (a->value == v && a->key) return a->key;
    return name;
}

kiln_status fe_gelu_approximate(fe_build *c, const fe_expr *e) {
    bool approx = false;
    kiln_status st = fe_get_bool(c, e, "approximate", &approx);
    if (!st && approx)
        st = fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                    "gelu: approximate=true (the tanh form) is not supported; gelu is the exact "
                    "erf form, Keras 3's default");
    return st;
}

kiln_status fe_get_activation(fe_build *c, const fe_expr *e, kiln_activation *act, double *alpha) {
    char b[64], sug[64];
    *alpha = FE_ALPHA_DEFAULT;
    if (e->kind != FE_E_NAME && e->kind != FE_E_CALL)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "'activation' must be an activation such as relu, got %s",
                      fe_expr_str(e, b, sizeof b));
    int a = kiln_activation_from_name(e->name);
    if (a < 0)
        return fe_err(
            c, KILN_ERR_INVALID, e->line, e->col, "unknown activation '%s'%s", e->name,
            fe_did_you_mean(e->name, g_acts, (int)KILN_ARRAY_LEN(g_acts), sug, sizeof sug));
    *act = (kiln_activation)a;
    /* Arguments, by Keras 3's names: leaky_relu(negative_slope=0.2) (alpha
     * too), elu(alpha=1.0), gelu(approximate=false). */
    static const fe_param slope[] = {{"negative_slope", "alpha", false}};
    static const fe_param elu_alpha[] = {{"alpha", NULL, false}};
    static const fe_param gelu[] = {{"approximate", NULL, false}};
    const fe_param *p = a == KILN_ACT_LEAKY_RELU ? slope
                        : a == KILN_ACT_ELU      ? elu_alpha
                        : a == KILN_ACT_GELU     ? gelu
                                                 : NULL;
    const fe_expr *v[1];
    kiln_status st = fe_bind(c, e, p, p ? 1 : 0, v);
    if (!st && p && v[0] && a == KILN_ACT_GELU) return fe_gelu_approximate(c, v[0]);
    if (!st && p && v[0])
        st = fe_get_float(c, v[0], fe_arg_key(e, v[0], p[0].name), IR_R_NONNEGATIVE, alpha);
    return st;
}

kiln_status fe_get_init(fe_build *c, const fe_expr *e, const char *what, kiln_init *out) {
    char b[64], sug[64];
    if (e->kind != FE_E_NAME && e->kind != FE_E_CALL)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                      "'%s' must be an initializer such as glorot_uniform, got %s", what,
                      fe_expr_str(e, b, sizeof b));
    int k = ir_init_lookup(e->name);
    if (k < 0) {
        const char *names[KILN_INIT_COUNT];
        for (int i = 0; i < KILN_INIT_COUNT; i++) names[i] = ir_init_name((kiln_init_kind)i);
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "unknown initializer '%s'%s", e->name,
                      fe_did_you_mean(e->name, names, KILN_INIT_COUNT, sug, sizeof sug));
    }
    /* Keras' defaults: Constant(0), RandomNormal(0, 0.05), RandomUniform(-0.05, 0.05). */
    static const fe_param constant[] = {{"value", NULL, false}};
    static const fe_param normal[] = {{"mean", NULL, false}, {"stddev", NULL, false}};
    static const fe_param uniform[] = {{"min", "minval", false}, {"max", "maxval", false}};
    const fe_param *params = NULL;
    int n = 0;
    out->kind = (kiln_init_kind)k;
    out->a = out->b = 0;
    switch (k) {
    case KILN_INIT_CONSTANT:
        params = constant, n = 1;
        break;
    case KILN_INIT_NORMAL:
        params = normal, n = 2, out->b = 0.05;
        break;
    case KILN_INIT_UNIFORM:
        params = uniform, n = 2, out->a = -0.05, out->b = 0.05;
        break;
    default:
        break;
    }
    const fe_expr *v[2];
    kiln_status st = fe_bind(c, e, params, n, v);
    if (st) return st;
    if (n > 0 && v[0] && (st = fe_get_float(c, v[0], params[0].name, IR_R_ANY, &out->a))) return st;
    ir_range r1 = k == KILN_INIT_NORMAL ? IR_R_NONNEGATIVE : IR_R_ANY;
    if (n > 1 && v[1] && (st = fe_get_float(c, v[1], params[1].name, r1, &out->b))) return st;
    if (k == KILN_INIT_UNIFORM && out->a > out->b)
        return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "uniform: 'min' exceeds 'max'");
    return KILN_OK;
}

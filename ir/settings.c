/*
 * settings.c — the settings table (settings.def) and the one set of
 * lookups, defaults, range checks and messages built from it.
 */
#include "ir/settings.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define NO NAN

static const ir_setting g_settings[IR_SET_COUNT] = {
#define TRAIN(id, nm, kd, l, h, dflt, field)                                                       \
    [IR_SET_##id] = {.name = nm,                                                                   \
                     .kind = kd,                                                                   \
                     .train = true,                                                                \
                     .lo = l,                                                                      \
                     .hi = h,                                                                      \
                     .idefault = dflt,                                                             \
                     .def = {NO, NO, NO, NO},                                                      \
                     .off = offsetof(ir_train_config, field)},
#define OPT(id, nm, ks, kd, rg, sgd, adam, adamw, field)                                           \
    [IR_SET_##id] = {.name = nm,                                                                   \
                     .keras = ks,                                                                  \
                     .kind = kd,                                                                   \
                     .range = rg,                                                                  \
                     .def = {[IR_OPT_NONE] = NO,                                                   \
                             [IR_OPT_SGD] = sgd,                                                   \
                             [IR_OPT_ADAM] = adam,                                                 \
                             [IR_OPT_ADAMW] = adamw},                                              \
                     .off = offsetof(ir_optimizer, field)},
#include "ir/settings.def"
#undef TRAIN
#undef OPT
};

static const struct {
    ir_opt_kind kind;
    const char *name;
} g_optimizers[] = {
#define OPTIMIZER(k, nm) {k, nm},
#include "ir/settings.def"
#undef OPTIMIZER
};

#define N_OPTIMIZERS ((int)(sizeof g_optimizers / sizeof g_optimizers[0]))

const char *const ir_metric_names[1] = {"accuracy"};

/* ----------------------------------------------------------------- lookup */

const ir_setting *ir_setting_get(ir_setting_id id) {
    return (unsigned)id < IR_SET_COUNT ? &g_settings[id] : NULL;
}

bool ir_setting_of(ir_setting_id id, ir_opt_kind kind) {
    const ir_setting *s = ir_setting_get(id);
    return s && !s->train && (unsigned)kind < 4 && !isnan(s->def[kind]);
}

static bool in_scope(int id, ir_opt_kind scope) {
    return scope == IR_OPT_NONE ? g_settings[id].train : ir_setting_of((ir_setting_id)id, scope);
}

static bool is(const char *want, const char *s, size_t len) {
    return want && strlen(want) == len && memcmp(want, s, len) == 0;
}

int ir_setting_find(ir_opt_kind scope, const char *name, size_t len) {
    for (int i = 0; i < IR_SET_COUNT; i++)
        if (in_scope(i, scope) &&
            (is(g_settings[i].name, name, len) || is(g_settings[i].keras, name, len)))
            return i;
    return -1;
}

int ir_setting_names(ir_opt_kind scope, const char **names, ir_setting_id *ids, int max) {
    int n = 0;
    for (int i = 0; i < IR_SET_COUNT; i++) {
        if (!in_scope(i, scope)) continue;
        if (n < max) {
            if (names) names[n] = g_settings[i].name;
            if (ids) ids[n] = (ir_setting_id)i;
        }
        n++;
    }
    return n;
}

ir_opt_kind ir_optimizer_find(const char *name, size_t len) {
    for (int i = 0; i < N_OPTIMIZERS; i++)
        if (is(g_optimizers[i].name, name, len)) return g_optimizers[i].kind;
    return IR_OPT_NONE;
}

int ir_optimizer_names(const char **names, int max) {
    for (int i = 0; i < N_OPTIMIZERS && i < max; i++) names[i] = g_optimizers[i].name;
    return N_OPTIMIZERS;
}

const char *ir_optimizer_name(ir_opt_kind kind) {
    for (int i = 0; i < N_OPTIMIZERS; i++)
        if (g_optimizers[i].kind == kind) return g_optimizers[i].name;
    return "none";
}

int ir_metric_find(const char *name, size_t len) {
    return is("accuracy", name, len) || is("acc", name, len) ? 0 : -1;
}

/* ------------------------------------------------------------ values */

double *ir_setting_float(ir_optimizer *o, ir_setting_id id) {
    return (double *)((char *)o + g_settings[id].off);
}

bool *ir_setting_bool(ir_optimizer *o, ir_setting_id id) {
    return (bool *)((char *)o + g_settings[id].off);
}

int64_t *ir_setting_int(ir_train_config *c, ir_setting_id id) {
    return (int64_t *)((char *)c + g_settings[id].off);
}

ir_optimizer ir_optimizer_defaults(ir_opt_kind kind) {
    ir_optimizer o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    for (int i = 0; i < IR_SET_COUNT; i++) {
        if (!ir_setting_of((ir_setting_id)i, kind)) continue;
        if (g_settings[i].kind == IR_SK_BOOL)
            *ir_setting_bool(&o, (ir_setting_id)i) = g_settings[i].def[kind] != 0;
        else
            *ir_setting_float(&o, (ir_setting_id)i) = g_settings[i].def[kind];
    }
    return o;
}

ir_train_config ir_train_defaults(void) {
    ir_train_config c;
    memset(&c, 0, sizeof c);
    c.opt = ir_optimizer_defaults(IR_OPT_ADAM);
    for (int i = 0; i < IR_SET_COUNT; i++)
        if (g_settings[i].kind == IR_SK_INT)
            *ir_setting_int(&c, (ir_setting_id)i) = g_settings[i].idefault;
    return c;
}

/* ---------------------------------------------------------------- checks */

const char *ir_range_need(ir_range r, double v) {
    switch (r) {
    case IR_R_ANY:
        return NULL;
    case IR_R_POSITIVE:
        return v > 0 ? NULL : "positive";
    case IR_R_NONNEGATIVE:
        return v >= 0 ? NULL : "at least 0";
    case IR_R_UNIT_OPEN:
        return v >= 0 && v < 1 ? NULL : "in [0, 1)";
    case IR_R_UNIT:
        return v >= 0 && v <= 1 ? NULL : "in [0, 1]";
    }
    return NULL;
}

const char *ir_check_float(const char *name, ir_range r, double v, char *buf, size_t n) {
    const char *need = ir_range_need(r, v);
    if (!need) return NULL;
    snprintf(buf, n, "'%s' must be %s, got %g", name, need, v);
    return buf;
}

const char *ir_check_int(const char *name, int64_t lo, int64_t hi, int64_t v, char *buf, size_t n) {
    if (v >= lo && v <= hi) return NULL;
    snprintf(buf, n, "'%s' must be between %lld and %lld, got %lld", name, (long long)lo,
             (long long)hi, (long long)v);
    return buf;
}

const char *ir_setting_check_float(ir_setting_id id, double v, char *buf, size_t n) {
    const ir_setting *s = &g_settings[id];
    return ir_check_float(s->name, s->range, v, buf, n);
}

const char *ir_setting_check_int(ir_setting_id id, int64_t v, char *buf, size_t n) {
    const ir_setting *s = &g_settings[id];
    return ir_check_int(s->name, s->lo, s->hi, v, buf, n);
}

kiln_status ir_train_config_check(const ir_train_config *c, kiln_diag *d) {
    ir_opt_kind kind = c->opt.kind;
    if (strcmp(ir_optimizer_name(kind), "none") == 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "unknown optimizer kind %d", (int)kind);
    ir_optimizer o = c->opt;
    ir_train_config cfg = *c;
    char msg[160];
    for (int i = 0; i < IR_SET_COUNT; i++) { /* the optimizer's arguments */
        ir_setting_id id = (ir_setting_id)i;
        if (g_settings[i].kind != IR_SK_FLOAT || !ir_setting_of(id, kind)) continue;
        if (ir_setting_check_float(id, *ir_setting_float(&o, id), msg, sizeof msg))
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: %s", ir_optimizer_name(kind),
                            msg);
    }
    for (int i = 0; i < IR_SET_COUNT; i++) { /* then the integer settings */
        ir_setting_id id = (ir_setting_id)i;
        if (g_settings[i].kind != IR_SK_INT) continue;
        if (ir_setting_check_int(id, *ir_setting_int(&cfg, id), msg, sizeof msg))
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s", msg);
    }
    return KILN_OK;
}

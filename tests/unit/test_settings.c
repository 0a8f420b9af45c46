/*
 * test_settings.c — the train block's settings and the optimizers'
 * arguments are accepted and refused alike whichever way they come in: a
 * .kiln file, a .kir file or the C API (kiln_sequential_compile). For
 * every row of ir/settings.def, the values at the edges of its range are
 * tried through all three; a refused value gets the same message from each
 * (with the place each one gives: file:line:col, or the optimizer's name).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/settings.h"
#include "testutil.h"

/* ------------------------------------------------------ the three doors */

typedef struct outcome {
    kiln_status st;
    char msg[1024];
    ir_train_config cfg; /* when accepted */
} outcome;

static void finish(outcome *o, kiln_status st, kiln_diag *d, kiln_module *m) {
    o->st = st;
    snprintf(o->msg, sizeof o->msg, "%s", kiln_diag_message(d));
    if (m) o->cfg = m->train;
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
}

/* `setting` is "epochs = 3" or "optimizer = adam(lr=0)", the same text in
 * both languages. */
static outcome via_kiln(const char *setting) {
    char src[512];
    snprintf(src, sizeof src,
             "input x : f32[?, 4]\nlabel y : f32[?, 3]\np = dense(x, 3)\noutput p\n"
             "loss mse(p, y)\ntrain { %s }\n",
             setting);
    outcome o;
    memset(&o, 0, sizeof o);
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_model_file_parse(src, strlen(src), "t.kiln", &m, d);
    finish(&o, st, d, m);
    return o;
}

static outcome via_kir(const char *setting) {
    char src[512];
    snprintf(src, sizeof src, "module @m\ntrain {\n  %s\n}\n", setting);
    outcome o;
    memset(&o, 0, sizeof o);
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_module_parse(src, strlen(src), "s.kir", &m, d);
    finish(&o, st, d, m);
    return o;
}

static outcome via_api(const kiln_train_settings *t) {
    outcome o;
    memset(&o, 0, sizeof o);
    kiln_diag *d = kiln_diag_create();
    kiln_sequential *s = kiln_sequential_create("m", 4);
    ck_assert_int_eq(kiln_sequential_dense(s, "h", 3, KILN_ACT_NONE, d), KILN_OK);
    kiln_module *m = NULL;
    kiln_status st = kiln_sequential_compile(s, t, &m, d);
    kiln_sequential_dispose(s);
    finish(&o, st, d, m);
    return o;
}

/* The three outcomes agree: accepted (with value `want` read back by get),
 * or refused as KILN_ERR_INVALID with `core` after each one's place. */
static void check_all(const char *what, outcome o[3], const char *core, const char *api_prefix) {
    static const char *const door[3] = {".kiln", ".kir", "C API"};
    for (int i = 0; i < 3; i++) {
        if (!core) {
            ck_assert_msg(o[i].st == KILN_OK, "%s: refused via %s:\n%s", what, door[i], o[i].msg);
            continue;
        }
        ck_assert_msg(o[i].st == KILN_ERR_INVALID, "%s: status %d via %s:\n%s", what, o[i].st,
                      door[i], o[i].msg);
        char want[512];
        if (i == 0) snprintf(want, sizeof want, "t.kiln:6:");
        if (i == 1) snprintf(want, sizeof want, "s.kir:3:");
        if (i == 2) snprintf(want, sizeof want, "kiln: error: %s%s\n", api_prefix, core);
        ck_assert_msg(strncmp(o[i].msg, want, strlen(want)) == 0, "%s via %s: got\n%s", what,
                      door[i], o[i].msg);
        snprintf(want, sizeof want, ": error: %s%s\n", i == 2 ? api_prefix : "", core);
        ck_assert_msg(strstr(o[i].msg, want) != NULL, "%s via %s: want '%s', got\n%s", what,
                      door[i], want, o[i].msg);
    }
}

/* ---------------------------------------------------------- integer rows */

static void try_int(ir_setting_id id, int64_t v, bool ok) {
    const ir_setting *s = ir_setting_get(id);
    char text[128], core[256];
    snprintf(text, sizeof text, "%s = %lld", s->name, (long long)v);
    snprintf(core, sizeof core, "'%s' must be between %lld and %lld, got %lld", s->name,
             (long long)s->lo, (long long)s->hi, (long long)v);
    kiln_train_settings t = kiln_train_settings_defaults(KILN_LOSS_MEAN_SQUARED_ERROR);
    if (id == IR_SET_EPOCHS) t.epochs = v;
    if (id == IR_SET_BATCH_SIZE) t.batch_size = v;
    if (id == IR_SET_SEED) t.seed = v;
    outcome o[3] = {via_kiln(text), via_kir(text), via_api(&t)};
    check_all(text, o, ok ? NULL : core, "");
    for (int i = 0; ok && i < 3; i++)
        ck_assert_msg(*ir_setting_int(&o[i].cfg, id) == v, "%s: read back %lld", text,
                      (long long)*ir_setting_int(&o[i].cfg, id));
}

START_TEST(test_int_edges) {
    int rows = 0;
    for (int i = 0; i < IR_SET_COUNT; i++) {
        const ir_setting *s = ir_setting_get((ir_setting_id)i);
        if (s->kind != IR_SK_INT) continue;
        rows++;
        try_int((ir_setting_id)i, s->lo, true);
        try_int((ir_setting_id)i, s->hi, true);
        try_int((ir_setting_id)i, s->lo - 1, false);
        if (s->hi < INT64_MAX) try_int((ir_setting_id)i, s->hi + 1, false);
    }
    ck_assert_int_eq(rows, 3); /* epochs, batch_size, seed */
}
END_TEST

/* ------------------------------------------------------ optimizer rows */

/* Values on both sides of each range, and the words a refusal uses. */
static const struct {
    ir_range range;
    double v;
    const char *need; /* NULL: allowed */
} g_edges[] = {
    {IR_R_POSITIVE, 0, "positive"},
    {IR_R_POSITIVE, -0.5, "positive"},
    {IR_R_POSITIVE, 1e-9, NULL},
    {IR_R_POSITIVE, 10, NULL},
    {IR_R_NONNEGATIVE, -0.5, "at least 0"},
    {IR_R_NONNEGATIVE, 0, NULL},
    {IR_R_NONNEGATIVE, 2, NULL},
    {IR_R_UNIT_OPEN, -0.5, "in [0, 1)"},
    {IR_R_UNIT_OPEN, 0, NULL},
    {IR_R_UNIT_OPEN, 0.5, NULL},
    {IR_R_UNIT_OPEN, 1, "in [0, 1)"},
    {IR_R_UNIT, -0.5, "in [0, 1]"},
    {IR_R_UNIT, 0, NULL},
    {IR_R_UNIT, 1, NULL},
    {IR_R_UNIT, 1.5, "in [0, 1]"},
};

static void set_api(kiln_optimizer *o, ir_setting_id id, double v) {
    switch (id) {
    case IR_SET_LR:
        o->lr = v;
        break;
    case IR_SET_WEIGHT_DECAY:
        o->weight_decay = v;
        break;
    case IR_SET_MOMENTUM:
        o->momentum = v;
        break;
    case IR_SET_BETA_1:
        o->beta_1 = v;
        break;
    case IR_SET_BETA_2:
        o->beta_2 = v;
        break;
    case IR_SET_EPSILON:
        o->epsilon = v;
        break;
    default:
        ck_abort_msg("no C API field for setting %d", (int)id);
    }
}

static void try_float(ir_opt_kind kind, ir_setting_id id, double v, const char *need) {
    const ir_setting *s = ir_setting_get(id);
    const char *opt = ir_optimizer_name(kind);
    char text[128], core[256], prefix[32];
    snprintf(text, sizeof text, "optimizer = %s(%s=%g)", opt, s->name, v);
    snprintf(core, sizeof core, "'%s' must be %s, got %g", s->name, need ? need : "", v);
    snprintf(prefix, sizeof prefix, "%s: ", opt);
    kiln_train_settings t = kiln_train_settings_defaults(KILN_LOSS_MEAN_SQUARED_ERROR);
    t.optimizer = kiln_optimizer_defaults((kiln_optimizer_kind)kind);
    set_api(&t.optimizer, id, v);
    outcome o[3] = {via_kiln(text), via_kir(text), via_api(&t)};
    check_all(text, o, need ? core : NULL, prefix);
    for (int i = 0; !need && i < 3; i++) {
        ck_assert_int_eq(o[i].cfg.opt.kind, kind);
        ck_assert_msg(*ir_setting_float(&o[i].cfg.opt, id) == v, "%s: read back %g", text,
                      *ir_setting_float(&o[i].cfg.opt, id));
    }
}

START_TEST(test_float_edges) {
    static const ir_opt_kind kinds[] = {IR_OPT_SGD, IR_OPT_ADAM, IR_OPT_ADAMW};
    int tried = 0;
    for (int i = 0; i < IR_SET_COUNT; i++) {
        const ir_setting *s = ir_setting_get((ir_setting_id)i);
        if (s->kind != IR_SK_FLOAT) continue;
        int edges = 0;
        for (size_t e = 0; e < sizeof g_edges / sizeof g_edges[0]; e++) {
            if (g_edges[e].range != s->range) continue;
            edges++;
            for (int k = 0; k < 3; k++)
                if (ir_setting_of((ir_setting_id)i, kinds[k])) {
                    try_float(kinds[k], (ir_setting_id)i, g_edges[e].v, g_edges[e].need);
                    tried++;
                }
        }
        ck_assert_msg(edges >= 3, "no edge cases for the range of '%s'", s->name);
    }
    ck_assert_int_eq(tried, 43); /* every (optimizer, argument, edge) */
}
END_TEST

/* -------------------------------------------------- cases from the issue */

/* lr=0 and epsilon=0 used to pass from a .kir file only. */
START_TEST(test_kir_refuses_what_kiln_refuses) {
    outcome o = via_kir("optimizer = adam(lr=0)");
    ck_assert_int_eq(o.st, KILN_ERR_INVALID);
    ck_assert_str_eq(o.msg, "s.kir:3:23: error: 'lr' must be positive, got 0\n"
                            "      optimizer = adam(lr=0)\n"
                            "                          ^\n");
    o = via_kiln("optimizer = adam(lr=0)");
    ck_assert_int_eq(o.st, KILN_ERR_INVALID);
    const char *want = "t.kiln:6:29: error: 'lr' must be positive, got 0\n";
    ck_assert_msg(strncmp(o.msg, want, strlen(want)) == 0, "%s", o.msg);
    o = via_kir("optimizer = adamw(epsilon=0)");
    ck_assert_int_eq(o.st, KILN_ERR_INVALID);
    ck_assert(strstr(o.msg, "s.kir:3:29: error: 'epsilon' must be positive, got 0\n"));
}
END_TEST

/* One upper bound for epochs, the one the C API and `kiln train --epochs`
 * use too. */
START_TEST(test_epochs_bound) {
    ck_assert_int_eq(ir_setting_get(IR_SET_EPOCHS)->hi, KILN_MAX_EPOCHS);
    outcome o = via_kir("epochs = 2147483648");
    ck_assert_int_eq(o.st, KILN_ERR_INVALID);
    ck_assert(strstr(o.msg, "error: 'epochs' must be between 1 and 2147483647, got 2147483648\n"));
}
END_TEST

/* Keras' names and the repeated-key message are the same in both texts. */
START_TEST(test_names_and_repeats) {
    for (int i = 0; i < 2; i++) {
        outcome o = i ? via_kir("optimizer = sgd(learning_rate=0.5, nesterov=true)")
                      : via_kiln("optimizer = sgd(learning_rate=0.5, nesterov=true)");
        ck_assert_msg(o.st == KILN_OK, "%s", o.msg);
        ck_assert(o.cfg.opt.kind == IR_OPT_SGD && o.cfg.opt.lr == 0.5 && o.cfg.opt.nesterov);
        o = i ? via_kir("metrics = [acc]") : via_kiln("metrics = [acc]");
        ck_assert_msg(o.st == KILN_OK && o.cfg.metric_accuracy, "%s", o.msg);
        o = i ? via_kir("epochs = 2 epochs = 3") : via_kiln("epochs = 2 epochs = 3");
        ck_assert(o.st != KILN_OK);
        ck_assert_msg(strstr(o.msg, "error: 'epochs' is already set at line "), "%s", o.msg);
        o = i ? via_kir("optimizer = adam(momentum=0.5)")
              : via_kiln("optimizer = adam(momentum=0.5)");
        ck_assert(o.st != KILN_OK);
        ck_assert_msg(strstr(o.msg, "error: unknown argument 'momentum' for adam"), "%s", o.msg);
    }
}
END_TEST

/* The defaults are Keras'. */
START_TEST(test_defaults) {
    ir_train_config c = ir_train_defaults();
    ck_assert_int_eq(c.opt.kind, IR_OPT_ADAM);
    ck_assert(c.opt.lr == 0.001 && c.opt.beta_1 == 0.9 && c.opt.beta_2 == 0.999 &&
              c.opt.epsilon == 1e-7 && c.opt.weight_decay == 0);
    ck_assert(c.epochs == 1 && c.batch_size == 32 && c.seed == 0 && !c.metric_accuracy);
    ir_optimizer s = ir_optimizer_defaults(IR_OPT_SGD);
    ck_assert(s.lr == 0.01 && s.momentum == 0 && !s.nesterov && s.beta_1 == 0);
    ck_assert(ir_optimizer_defaults(IR_OPT_ADAMW).weight_decay == 0.004);
}
END_TEST

static Suite *settings_suite(void) {
    Suite *s = suite_create("settings");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_int_edges);
    tcase_add_test(tc, test_float_edges);
    tcase_add_test(tc, test_kir_refuses_what_kiln_refuses);
    tcase_add_test(tc, test_epochs_bound);
    tcase_add_test(tc, test_names_and_repeats);
    tcase_add_test(tc, test_defaults);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(settings_suite());
}

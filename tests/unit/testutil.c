/* testutil.c — helpers shared by the Check suites. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

kiln_module *tu_parse(const char *text) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_module_parse(text, strlen(text), "test.kir", &m, d);
    if (st) ck_abort_msg("parse failed:\n%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return m;
}

void tu_fill_uniform(float *p, int64_t n, uint64_t seed, float lo, float hi) {
    ir_rng r = ir_rng_seed(seed, 12345);
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)ir_rng_uniform(&r);
}

double tu_max_rel_err(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (isnan(a[i]) != isnan(b[i])) e = INFINITY;
        if (e > worst) worst = e;
    }
    return worst;
}

const char *tu_src_path(const char *rel) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", KILN_SOURCE_DIR, rel);
    return buf;
}

static char g_tmp_dir[64];

void tu_tmp_setup(void) {
    strcpy(g_tmp_dir, "/tmp/kiln-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_tmp_dir));
}

void tu_tmp_teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_tmp_dir);
}

const char *tu_tmp_dir(void) { return g_tmp_dir; }

const char *tu_tmp_path(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", g_tmp_dir, name);
    return p;
}

int tu_act_op(int act) {
    return act == KILN_ACT_NONE ? 0 : ir_op_lookup(kiln_activation_name((kiln_activation)act));
}

int tu_act_of(const ir_node *n) {
    return kiln_activation_from_name(ir_attr_op_name(ir_attr_i(n, "activation")));
}

ir_attrs tu_attrs1(int op, const char *name, double v) {
    ir_attrs a = ir_attrs_default(op);
    ir_attrs_set_f(&a, name, v);
    return a;
}

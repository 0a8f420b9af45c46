/* testutil.c — helpers shared by the Check suites. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Check's variables that run a subset of a suite (or none of it). */
static const char *const g_ck_select[] = {"CK_RUN_CASE", "CK_RUN_SUITE", "CK_INCLUDE_TAGS",
                                          "CK_EXCLUDE_TAGS"};

int tu_run_suite(Suite *s) {
    /* Under ctest (tests/CMakeLists.txt sets KILN_TEST_UNDER_CTEST) the whole
     * suite runs: a selection left in the environment is ignored, said so. */
    const char *ctest = getenv("KILN_TEST_UNDER_CTEST");
    if (ctest && strcmp(ctest, "1") == 0)
        for (size_t i = 0; i < sizeof g_ck_select / sizeof *g_ck_select; i++)
            if (getenv(g_ck_select[i])) {
                printf("testutil: ignoring %s=%s under ctest (the whole suite runs)\n",
                       g_ck_select[i], getenv(g_ck_select[i]));
                unsetenv(g_ck_select[i]);
            }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr), run = srunner_ntests_run(sr);
    srunner_free(sr);
    if (run == 0) {
        fprintf(stderr, "testutil: no test ran (a CK_RUN_CASE/CK_RUN_SUITE/CK_INCLUDE_TAGS "
                        "selection that matches nothing?): failing\n");
        return EXIT_FAILURE;
    }
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

double tu_err(double a, double b, double atol, double rtol) {
    if (isnan(a) || isnan(b)) return INFINITY;
    if (a == b) return 0; /* exact, and the only way an infinity matches */
    if (isinf(a) || isinf(b)) return INFINITY;
    double bound = atol + rtol * fabs(b);
    return bound > 0 ? fabs(a - b) / bound : INFINITY;
}

bool tu_close(double a, double b, double atol, double rtol) {
    return tu_err(a, b, atol, rtol) <= 1;
}

double tu_max_err(const float *a, const float *b, int64_t n, double atol, double rtol,
                  int64_t *where) {
    double worst = 0;
    if (where) *where = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = tu_err(a[i], b[i], atol, rtol);
        if (e > worst) {
            worst = e;
            if (where) *where = i;
        }
    }
    return worst;
}

double tu_max_abs(const float *p, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)p[i]));
    return m;
}

int tu_count_entries(const char *dir, const char *part) {
    DIR *dp = opendir(dir);
    ck_assert_msg(dp != NULL, "cannot read the directory %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(dp)) != NULL;)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part);
    closedir(dp);
    return n;
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

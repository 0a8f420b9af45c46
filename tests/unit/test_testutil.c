/*
 * test_testutil.c — negative controls for the helpers every suite leans on:
 * the comparator fails where it must (an infinity against a number, a
 * relative error at a tiny scale, NaN), tu_assert_close names the worst
 * element, and a Check suite that ran no test fails — also when a stray
 * CK_RUN_CASE selects nothing — while under ctest the selection is ignored.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(comparator_rules) {
    /* Infinity: equal only to itself. */
    ck_assert(!tu_close(3, INFINITY, 1e-5, 1e-5));
    ck_assert(!tu_close(INFINITY, 3, 1e-5, 1e-5));
    ck_assert(!tu_close(-INFINITY, INFINITY, 1, 1));
    ck_assert(!tu_close(1e30, INFINITY, 1, 1));
    ck_assert(tu_close(INFINITY, INFINITY, 0, 0));
    ck_assert(tu_close(-INFINITY, -INFINITY, 0, 0));
    ck_assert(tu_err(3, INFINITY, 1, 1) == INFINITY);
    /* NaN: equal to nothing, not even NaN. */
    ck_assert(!tu_close(NAN, NAN, 1, 1));
    ck_assert(!tu_close(NAN, 0, 1, 1));
    ck_assert(!tu_close(0, NAN, 1, 1));
    /* Relative at small scales (the old comparator was absolute below 1). */
    ck_assert(!tu_close(1e-9, 2e-9, 0, 1e-5));
    ck_assert(!tu_close(1.00002e-9, 1e-9, 0, 1e-5));
    ck_assert(tu_close(1.000009e-9, 1e-9, 0, 1e-5));
    ck_assert(!tu_close(0.5, 0.5001, 0, 1e-5));
    ck_assert(tu_close(1e6 + 5, 1e6, 0, 1e-5));
    ck_assert(!tu_close(1e6 + 20, 1e6, 0, 1e-5));
    /* The bound is atol + rtol |b|: both parts count. */
    ck_assert(tu_close(1e-8, 0, 1e-7, 0));
    ck_assert(!tu_close(2e-7, 0, 1e-7, 0));
    ck_assert(tu_close(1.0 + 1.5e-5, 1.0, 1e-5, 1e-5));
    ck_assert(!tu_close(1.0 + 2.5e-5, 1.0, 1e-5, 1e-5));
    ck_assert_double_eq_tol(tu_err(1.5, 1.0, 0.25, 0.25), 1.0, 1e-12);
    /* Zero tolerances: exact. */
    ck_assert(tu_close(0.1, 0.1, 0, 0));
    ck_assert(!tu_close(nextafter(0.1, 1), 0.1, 0, 0));
    ck_assert(tu_err(0.1, 0.1, 0, 0) == 0);
}
END_TEST

START_TEST(max_err_finds_the_worst) {
    const float b[5] = {1, 1e-9f, -2, 0, 7};
    float a[5] = {1, 1e-9f, -2, 0, 7};
    int64_t where = -1;
    ck_assert(tu_max_err(a, b, 5, 0, 1e-5, &where) == 0);
    a[1] = 1.1e-9f; /* 10% off at 1e-9: far outside rtol 1e-5 */
    a[4] = 7.00001f;
    ck_assert_double_gt(tu_max_err(a, b, 5, 0, 1e-5, &where), 1000);
    ck_assert_int_eq(where, 1);
    a[1] = b[1];
    a[3] = NAN;
    ck_assert(tu_max_err(a, b, 5, 1, 1, &where) == INFINITY);
    ck_assert_int_eq(where, 3);
    a[3] = INFINITY;
    ck_assert(tu_max_err(a, b, 5, 1, 1, &where) == INFINITY);
    ck_assert_double_eq(tu_max_abs(b, 5), 7);
}
END_TEST

/* ------------------------------------------------- suites run inside a test */

static const float g_want[3] = {1, 2, 3};

START_TEST(inner_close) {
    const float a[3] = {1, 2.00001f, 3};
    tu_assert_close(a, g_want, 3, 0, 1e-5, "inner");
}
END_TEST

START_TEST(inner_far) {
    const float a[3] = {1, 2, INFINITY};
    tu_assert_close(a, g_want, 3, 1, 1, "inner");
}
END_TEST

static Suite *inner_suite(bool with_tests, bool failing) {
    Suite *s = suite_create("inner");
    TCase *tc = tcase_create("inner_case");
    if (with_tests) tcase_add_test(tc, failing ? inner_far : inner_close);
    suite_add_tcase(s, tc);
    return s;
}

/* Runs a suite in this process (Check supports one nested run): its exit
 * status as tu_run_suite reports it. */
static int run_inner(Suite *s) {
    setenv("CK_FORK", "no", 1);
    int rc = tu_run_suite(s);
    unsetenv("CK_FORK");
    return rc;
}

START_TEST(assert_close_message) {
    SRunner *sr = srunner_create(inner_suite(true, true));
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_SILENT);
    ck_assert_int_eq(srunner_ntests_run(sr), 1);
    ck_assert_int_eq(srunner_ntests_failed(sr), 1);
    TestResult **tr = srunner_failures(sr);
    ck_assert_str_eq(tr_msg(tr[0]), "inner: element 2 is inf, expected 3 (|a-b| = inf > 1 + 1|b|)");
    free(tr);
    srunner_free(sr);
    ck_assert_int_eq(run_inner(inner_suite(true, false)), EXIT_SUCCESS);
    ck_assert_int_eq(run_inner(inner_suite(true, true)), EXIT_FAILURE);
}
END_TEST

START_TEST(zero_tests_fail) {
    unsetenv("KILN_TEST_UNDER_CTEST");
    ck_assert_int_eq(run_inner(inner_suite(false, false)), EXIT_FAILURE);
    /* A stray selection that matches nothing: no test ran, so a failure. */
    setenv("CK_RUN_CASE", "no_such_case", 1);
    ck_assert_int_eq(run_inner(inner_suite(true, false)), EXIT_FAILURE);
    ck_assert_str_eq(getenv("CK_RUN_CASE"), "no_such_case"); /* outside ctest: left alone */
    unsetenv("CK_RUN_CASE");
    setenv("CK_RUN_SUITE", "no_such_suite", 1);
    ck_assert_int_eq(run_inner(inner_suite(true, false)), EXIT_FAILURE);
    unsetenv("CK_RUN_SUITE");
    ck_assert_int_eq(run_inner(inner_suite(true, false)), EXIT_SUCCESS);
}
END_TEST

START_TEST(selection_ignored_under_ctest) {
    setenv("KILN_TEST_UNDER_CTEST", "1", 1);
    setenv("CK_RUN_CASE", "no_such_case", 1);
    setenv("CK_INCLUDE_TAGS", "no_such_tag", 1);
    /* The whole suite runs: a failing test fails it, a passing one passes. */
    ck_assert_int_eq(run_inner(inner_suite(true, true)), EXIT_FAILURE);
    setenv("CK_RUN_CASE", "no_such_case", 1);
    ck_assert_int_eq(run_inner(inner_suite(true, false)), EXIT_SUCCESS);
    ck_assert_ptr_null(getenv("CK_RUN_CASE"));
    ck_assert_ptr_null(getenv("CK_INCLUDE_TAGS"));
    /* And an empty suite still fails there. */
    ck_assert_int_eq(run_inner(inner_suite(false, false)), EXIT_FAILURE);
}
END_TEST

static Suite *testutil_suite(void) {
    Suite *s = suite_create("testutil");
    TCase *cmp = tcase_create("comparator");
    tcase_add_test(cmp, comparator_rules);
    tcase_add_test(cmp, max_err_finds_the_worst);
    tcase_add_test(cmp, assert_close_message);
    suite_add_tcase(s, cmp);
    TCase *run = tcase_create("runner");
    tcase_add_test(run, zero_tests_fail);
    tcase_add_test(run, selection_ignored_under_ctest);
    suite_add_tcase(s, run);
    return s;
}

int main(void) {
    return tu_run_suite(testutil_suite());
}

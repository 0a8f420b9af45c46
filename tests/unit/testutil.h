/* testutil.h — helpers shared by the Check suites. */
#ifndef KILN_TESTUTIL_H
#define KILN_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"

/* Runs one suite with CK_NORMAL output; returns the process exit status.
 * A suite that ran no test fails. Under ctest (KILN_TEST_UNDER_CTEST=1) the
 * CK_RUN_CASE, CK_RUN_SUITE, CK_INCLUDE_TAGS and CK_EXCLUDE_TAGS variables
 * are ignored (and a line says so): the whole suite runs. */
int tu_run_suite(Suite *s);
/* Parses .kir text or fails the test with the diagnostics. */
kiln_module *tu_parse(const char *text);
/* Deterministic pseudo-random floats in [lo, hi). */
void tu_fill_uniform(float *p, int64_t n, uint64_t seed, float lo, float hi);
/* The one comparator: a is close to the expected b when
 *   |a - b| <= atol + rtol * |b|
 * with the tolerances of each use. NaN is close to nothing (not even NaN);
 * an infinity only to itself. tu_err is |a - b| in units of that bound
 * (0 when equal, INFINITY when never close): close means tu_err <= 1. */
double tu_err(double a, double b, double atol, double rtol);
bool tu_close(double a, double b, double atol, double rtol);
/* The largest tu_err over n elements; *where (if not NULL) its index. */
double tu_max_err(const float *a, const float *b, int64_t n, double atol, double rtol,
                  int64_t *where);
/* max |p[i]|: the scale of a tensor, for an atol relative to it. */
double tu_max_abs(const float *p, int64_t n);
/* Fails the test unless every a[i] is close to b[i]; the message names
 * `what`, the worst element, both values and the tolerances. */
#define tu_assert_close(a, b, n, atol, rtol, what)                                                 \
    do {                                                                                           \
        const float *tu_a_ = (a), *tu_b_ = (b);                                                    \
        int64_t tu_i_;                                                                             \
        double tu_e_ = tu_max_err(tu_a_, tu_b_, (n), (atol), (rtol), &tu_i_);                      \
        ck_assert_msg(tu_e_ <= 1,                                                                  \
                      "%s: element %lld is %.9g, expected %.9g (|a-b| = %.3g > %g + %g|b|)",       \
                      (what), (long long)tu_i_, tu_a_[tu_i_], tu_b_[tu_i_],                        \
                      fabs((double)tu_a_[tu_i_] - tu_b_[tu_i_]), (double)(atol), (double)(rtol));  \
    } while (0)
/* A fresh temporary directory per test (a Check fixture pair), its path,
 * and paths of files in it (eight rotating static buffers). */
void tu_tmp_setup(void);
void tu_tmp_teardown(void);
const char *tu_tmp_dir(void);
const char *tu_tmp_path(const char *name);
/* tu_assert_close for a tensor at its own scale: |a - b| <= rtol (max|b| + |b|),
 * i.e. an atol of rtol times the tensor's largest magnitude (so a tensor of
 * values around 1e-9, like Adam's second moments, is compared at 1e-9, not
 * against 1). */
#define TU_ATOL_AT_SCALE(b, n, rtol) ((rtol)*tu_max_abs((b), (n)))
#define tu_assert_close_at_scale(a, b, n, rtol, what)                                              \
    tu_assert_close((a), (b), (n), TU_ATOL_AT_SCALE((b), (n), (rtol)), (rtol), (what))
/* How many entries of directory `dir` have `part` in their name; fails the
 * test when the directory cannot be read (so "none" is never a failed ls). */
int tu_count_entries(const char *dir, const char *part);
/* Absolute path of a file in the source tree. Static buffer. */
const char *tu_src_path(const char *rel);

/* A kiln_activation as the op-valued attribute dense carries (0: none),
 * and back: the activation dense node n applies. */
int tu_act_op(int act);
int tu_act_of(const ir_node *n);
/* The attributes of `op` with one attribute set (a number of any kind). */
ir_attrs tu_attrs1(int op, const char *name, double v);

#endif

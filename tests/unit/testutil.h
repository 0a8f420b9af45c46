/* testutil.h — helpers shared by the Check suites. */
#ifndef KILN_TESTUTIL_H
#define KILN_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "ir/ir.h"

/* Runs one suite with CK_NORMAL output; returns the process exit status. */
int tu_run_suite(Suite *s);
/* Parses .kir text or fails the test with the diagnostics. */
kiln_module *tu_parse(const char *text);
/* Deterministic pseudo-random floats in [lo, hi). */
void tu_fill_uniform(float *p, int64_t n, uint64_t seed, float lo, float hi);
/* Max relative error max|a-b| / max(1, |b|) over n elements. */
double tu_max_rel_err(const float *a, const float *b, int64_t n);
/* A fresh temporary directory per test (a Check fixture pair), its path,
 * and paths of files in it (eight rotating static buffers). */
void tu_tmp_setup(void);
void tu_tmp_teardown(void);
const char *tu_tmp_dir(void);
const char *tu_tmp_path(const char *name);
/* Absolute path of a file in the source tree. Static buffer. */
const char *tu_src_path(const char *rel);

/* A kiln_activation as the op-valued attribute dense carries (0: none),
 * and back: the activation dense node n applies. */
int tu_act_op(int act);
int tu_act_of(const ir_node *n);
/* The attributes of `op` with one attribute set (a number of any kind). */
ir_attrs tu_attrs1(int op, const char *name, double v);

#endif

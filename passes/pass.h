/*
 * pass.h — passes over a module, the registry, and the pipeline runner.
 *
 * A pass is `kiln_status pass_X(kiln_module *, kiln_diag *)` in its own file
 * (passes/X.c), registered by name in passes/pass.c. A pipeline is a comma
 * list of pass names, or the name of a default pipeline ("infer", "train").
 */
#ifndef KILN_PASSES_PASS_H
#define KILN_PASSES_PASS_H

#include <stdio.h>

#include "ir/ir.h"

typedef kiln_status (*pass_fn)(kiln_module *m, kiln_diag *d);

typedef struct pass_info {
    const char *name;
    pass_fn run;
    const char *summary;
} pass_info;

/* The registry. */
int pass_count(void);
const pass_info *pass_at(int i);
const pass_info *pass_find(const char *name);

/* The default pipelines: "infer", "train" and "train-distributed". NULL for
 * other names. */
const char *pass_pipeline_named(const char *name);

typedef enum pass_format { PASS_FMT_TEXT, PASS_FMT_DOT } pass_format;

typedef struct pass_opts {
    bool print_after_all;
    const char *print_after; /* comma list of pass names, or NULL */
    const char *dump_dir;    /* writes NNN_<pass>.kir (or .dot) after each pass */
    pass_format format;      /* of printed and dumped modules */
    const char *only_func;   /* print only this function (dot and text) */
    FILE *out;               /* where printing after passes goes; NULL: stdout */
    bool no_verify;          /* skip the verifier between passes */
} pass_opts;

/* Runs a pipeline. Unknown pass names are reported (all of them, with a
 * suggestion) before anything runs. The verifier runs after every pass
 * unless o->no_verify (it always runs when built with KILN_VERIFY_PASSES). */
kiln_status pass_run_pipeline(kiln_module *m, const char *pipeline, const pass_opts *o,
                              kiln_diag *d);
/* Prints a module (or one function) in the requested format. */
void pass_print_module(ir_sb *sb, const kiln_module *m, pass_format fmt, const char *only_func);

/* Runs fn on every function of m, stopping at the first error: the shape
 * of the passes that work one function at a time. */
kiln_status pass_each_func(kiln_module *m, kiln_status (*fn)(kiln_func *f, kiln_diag *d),
                           kiln_diag *d);

/* The passes (one file each). */
kiln_status pass_verify(kiln_module *m, kiln_diag *d);
kiln_status pass_fuse_dense_act(kiln_module *m, kiln_diag *d);
/* conv2d (and a dense left without activation) + bias + activation as one
 * node (fuse_conv_act.c). */
kiln_status pass_fuse_conv_act(kiln_module *m, kiln_diag *d);
kiln_status pass_fuse_softmax_ce(kiln_module *m, kiln_diag *d);
kiln_status pass_autodiff(kiln_module *m, kiln_diag *d);
kiln_status pass_data_parallel(kiln_module *m, kiln_diag *d);
kiln_status pass_optimizer(kiln_module *m, kiln_diag *d);
/* Dropout removed from every function but @train_step (inference_mode.c). */
kiln_status pass_inference_mode(kiln_module *m, kiln_diag *d);
/* Batch normalization on moving statistics folded into the preceding
 * dense's kernel and bias (fold_batch_norm.c). */
kiln_status pass_fold_batch_norm(kiln_module *m, kiln_diag *d);
kiln_status pass_constant_fold(kiln_module *m, kiln_diag *d);
kiln_status pass_cse(kiln_module *m, kiln_diag *d);
kiln_status pass_dce(kiln_module *m, kiln_diag *d);
/* relu's (leaky_relu's) derivative on a product as one matmul_mask node
 * (fuse_matmul_mask.c). */
kiln_status pass_fuse_matmul_mask(kiln_module *m, kiln_diag *d);
kiln_status pass_fuse_elementwise(kiln_module *m, kiln_diag *d);
kiln_status pass_plan_memory(kiln_module *m, kiln_diag *d);
/* plan-memory on one function; the driver runs it on every function that
 * lacks a plan (or has one without the error record) before codegen. */
kiln_status pass_plan_memory_func(kiln_func *f, kiln_diag *d);

#endif

/*
 * model.h — a compiled model (kiln_model) as the runtime's files share it:
 * model.c (creation, evaluate, predict, checkpoints) and fit.c (training).
 *
 * The runtime does not compile: the driver runs the passes and hands over
 * the module through its pipeline plus a compile callback, which the
 * runtime calls the first time it needs a function's native code (`kiln
 * eval` never pays for train_step). It never chooses passes.
 */
#ifndef KILN_RUNTIME_MODEL_H
#define KILN_RUNTIME_MODEL_H

#include "codegen/cg.h"
#include "runtime/data.h"
#include "runtime/runtime.h"

struct kiln_dataset {
    rt_dataset *rt;
};

/* Native code for functions funcs[0..n) of module `m` (the driver's job),
 * one program each, compiled concurrently when n > 1. On success out[i] is
 * a program the runtime disposes with cg_program_dispose(); on error all
 * are NULL. */
typedef kiln_status (*rt_compile_fn)(void *ctx, kiln_module *m, const char *const *funcs, int n,
                                     cg_program **out, kiln_diag *d);

/* Inputs of a model: one trains and evaluates from datasets; several
 * predict (kiln_model_predict_inputs). */
#define RT_MAX_INPUTS 16

typedef struct rt_model_config {
    kiln_backend backend;
    int threads;           /* OpenBLAS threads; 0: keep the default */
    uint64_t seed;         /* weight initialization and shuffling */
    rt_compile_fn compile; /* the JIT's compiler; unused by the interpreter */
    void *compile_ctx;
    const char *compile_now; /* also compile these now (kiln_model_create_now) */
    bool distributed; /* data-parallel over the ranks (runtime/dist.h) */
} rt_model_config;

/* Makes a model of `m`, which is through its pipeline already (taking
 * ownership of it, also on failure): checks its interface, compiles its
 * main function (train_step, else infer) and initializes the weights.
 * Every invocation should be paired with kiln_model_dispose(). */
kiln_status rt_model_create(kiln_module *m, const rt_model_config *c, kiln_model **out,
                            kiln_diag *d);

/* One function of the model and how to call it. */
typedef struct rt_fn {
    kiln_func *f;
    cg_program *prog; /* JIT, NULL until compiled */
    cg_entry_fn entry;
    const cg_func_info *info;
} rt_fn;

struct kiln_model {
    kiln_module *m;
    kiln_backend backend;
    rt_compile_fn compile;
    void *compile_ctx;
    uint64_t seed;
    rt_fn infer, loss, train;
    void **globals;    /* data of global i */
    double compile_ms; /* JIT compile time so far, all functions */
    /* Buffers sized for `cap` samples, grown when a larger batch comes. */
    int64_t cap;
    float *x, *y;
    int32_t *labels;
    char *ws;
    int64_t ws_bytes;
    /* The model's interface. */
    int64_t in_size, out_size, n_classes; /* in_size: of the first input */
    int n_inputs;                         /* @infer's inputs (RT_MAX_INPUTS at most) */
    int64_t in_sizes[RT_MAX_INPUTS];
    bool sparse_labels, has_accuracy;
    /* Where training stands (saved in checkpoints). */
    int64_t step, epoch;
    rt_shuffle shuffle;
    bool shuffle_ready, shuffle_restored;
    /* Data-parallel (runtime/dist.h): each batch is sharded over the
     * ranks; gather records the rows of the whole batch. */
    bool distributed;
    int64_t global_rows;
    rt_shuffle_state pending_shuffle; /* from a checkpoint, applied at fit */
    kiln_progress *hist;
    int n_hist, cap_hist;
    /* fit: every global's data as the epoch started, so that a non-finite
     * loss can be traced on the weights the failing step started from
     * (fit.c, nonfinite_loss); allocated by the first fit that guards
     * against one. */
    char *snap;
};

/* ------------------------------------------------------------- batches */

/* Rows of batch s when n samples are cut into batches of `batch`: every
 * batch is full but the last, which holds what is left. The one place
 * fit, evaluate, predict and the NaN replay slice their data. */
static inline int64_t rt_batch_rows(int64_t n, int64_t batch, int64_t s) {
    int64_t left = n - s * batch;
    return left < batch ? left : batch;
}

/* One pass over a dataset: `steps` batches of `batch` samples, in dataset
 * order, or in the order of `perm` (fit's shuffle). */
typedef struct rt_batches {
    const rt_dataset *ds;
    const int32_t *perm; /* NULL: in order */
    int64_t n, batch, steps;
} rt_batches;

static inline rt_batches rt_batches_of(const rt_dataset *ds, int64_t batch, const int32_t *perm) {
    rt_batches b = {ds, perm, ds->n, batch, (ds->n + batch - 1) / batch};
    return b;
}

/* Dataset index of row r of batch s. */
static inline int64_t rt_batch_sample(const rt_batches *b, int64_t s, int64_t r) {
    return b->perm ? b->perm[s * b->batch + r] : s * b->batch + r;
}

/* Fills the model's batch buffers with batch s of b; *rows is its size.
 * Distributed, this rank's contiguous shard of it (mo->global_rows: the
 * whole batch), and the allreduce shim's weight is set to the shard's share. */
kiln_status rt_model_gather(kiln_model *mo, const rt_batches *b, int64_t s, int *rows,
                            kiln_diag *d);
/* The arguments of @loss and @train_step: the batch buffers. */
void rt_model_batch_args(const kiln_model *mo, void *args[2]);

/* ---------------------------------------------------------- running */

/* Compiles fn (JIT, the first time) and sizes the buffers for `batch`. */
kiln_status rt_model_prepare(kiln_model *mo, rt_fn *fn, int64_t batch, kiln_diag *d);
kiln_status rt_model_run(kiln_model *mo, const rt_fn *fn, int64_t batch, void *const *args,
                         void *const *results, kiln_diag *d);
/* Inputs fit the model, and labels are there and in range. */
kiln_status rt_model_check_data(const kiln_model *mo, const rt_dataset *ds, kiln_diag *d);

#endif

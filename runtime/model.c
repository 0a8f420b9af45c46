/*
 * model.c — a compiled model and Keras' workflow on it: evaluate, predict,
 * checkpoints (fit is in fit.c).
 *
 * A model owns its module after the pipeline (the driver ran it), the data
 * of every global (weights, optimizer state), and an executor: the JIT
 * program of each function (compiled through the driver's callback when
 * first needed) or the interpreter. The batch buffers and the workspace
 * are allocated once, for the largest batch, so a step does no allocation.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "codegen/pool.h"
#include "ir/collective.h"
#include "runtime/checkpoint.h"
#include "runtime/dist.h"
#include "runtime/model.h"

/* ------------------------------------------------------------- datasets */

static kiln_status wrap_dataset(rt_dataset *rt, kiln_dataset **out, kiln_diag *d) {
    kiln_dataset *ds = ir_calloc(1, sizeof *ds);
    if (!ds) {
        rt_dataset_free(rt);
        return ir_oom(d);
    }
    ds->rt = rt;
    *out = ds;
    return KILN_OK;
}

kiln_status kiln_dataset_load(const char *dir, const char *split, kiln_dataset **out,
                              kiln_diag *d) {
    *out = NULL;
    rt_split sp;
    if (split && strcmp(split, "train") == 0)
        sp = RT_SPLIT_TRAIN;
    else if (split && strcmp(split, "test") == 0)
        sp = RT_SPLIT_TEST;
    else
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "dataset split must be 'train' or 'test'");
    rt_dataset *rt = NULL;
    kiln_status st = rt_dataset_load_dir(dir ? dir : RT_DEFAULT_DATA_DIR, sp, &rt, d);
    return st ? st : wrap_dataset(rt, out, d);
}

kiln_status kiln_dataset_from_arrays(const kiln_array *inputs, const kiln_array *labels,
                                     int64_t count, kiln_array_mode mode, kiln_dataset **out,
                                     kiln_diag *d) {
    *out = NULL;
    rt_dataset *rt = NULL;
    kiln_status st =
        rt_dataset_from_arrays(inputs, labels, count, mode == KILN_ARRAYS_BORROW, &rt, d);
    return st ? st : wrap_dataset(rt, out, d);
}

kiln_status kiln_dataset_load_csv(const char *path, const char *label_column, kiln_dataset **out,
                                  kiln_diag *d) {
    *out = NULL;
    if (!path || !label_column)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_dataset_load_csv: a file and a label column are needed");
    rt_dataset *rt = NULL;
    kiln_status st = rt_csv_load(path, label_column, &rt, d);
    return st ? st : wrap_dataset(rt, out, d);
}

kiln_status kiln_dataset_load_files(const char *inputs, const char *labels, kiln_dataset **out,
                                    kiln_diag *d) {
    return kiln_dataset_load_idx(inputs, labels, out, d);
}

kiln_status kiln_dataset_load_idx(const char *images, const char *labels, kiln_dataset **out,
                                  kiln_diag *d) {
    *out = NULL;
    rt_dataset *rt = NULL;
    kiln_status st = rt_dataset_load(images, labels, &rt, d);
    return st ? st : wrap_dataset(rt, out, d);
}

void kiln_dataset_dispose(kiln_dataset *ds) {
    if (!ds) return;
    rt_dataset_free(ds->rt);
    ir_free(ds);
}

int64_t kiln_dataset_count(const kiln_dataset *ds) { return ds ? ds->rt->n : 0; }

int64_t kiln_dataset_sample_size(const kiln_dataset *ds) { return ds ? ds->rt->sample_size : 0; }

void kiln_dataset_truncate(kiln_dataset *ds, int64_t n) {
    if (ds && n >= 0 && n < ds->rt->n) ds->rt->n = n;
}

kiln_status kiln_dataset_read(const kiln_dataset *ds, int64_t first, int64_t n, float *x,
                              kiln_diag *d) {
    if (!ds || first < 0 || n < 0 || first + n > ds->rt->n)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_dataset_read: out of range");
    for (int64_t i = 0; i < n;) {
        int chunk = n - i > (1 << 20) ? 1 << 20 : (int)(n - i);
        kiln_status st = rt_batch_slice(ds->rt, first + i, chunk,
                                        x + i * ds->rt->sample_size, NULL, 0, NULL, d);
        if (st) return st;
        i += chunk;
    }
    return KILN_OK;
}

kiln_status kiln_dataset_read_labels(const kiln_dataset *ds, int64_t first, int64_t n,
                                     int32_t *labels, kiln_diag *d) {
    if (!ds || first < 0 || n < 0 || first + n > ds->rt->n || (n && !labels))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_dataset_read_labels: out of range");
    if (!ds->rt->labels)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: the dataset has no labels",
                        ds->rt->images_path);
    if (n) memcpy(labels, ds->rt->labels + first, sizeof *labels * (size_t)n);
    return KILN_OK;
}

/* ------------------------------------------------------------- creation */

static void bind_fn(kiln_model *mo, rt_fn *fn, const char *name) {
    memset(fn, 0, sizeof *fn);
    fn->f = kiln_module_func(mo->m, name);
}

/* Has the driver compile fns[0..n) that are not compiled yet (JIT), at
 * once: compile_ms counts the longest of a concurrent batch. */
static kiln_status compile_fns(kiln_model *mo, rt_fn *const *fns, int n, kiln_diag *d) {
    rt_fn *todo[4];
    const char *names[4];
    cg_program *progs[4] = {NULL};
    int k = 0;
    for (int i = 0; i < n && k < 4; i++) {
        bool dup = false;
        for (int j = 0; j < k; j++) dup = dup || todo[j] == fns[i];
        if (mo->backend != KILN_BACKEND_JIT || fns[i]->prog || !fns[i]->f || dup) continue;
        todo[k] = fns[i];
        names[k++] = fns[i]->f->name;
    }
    if (!k) return KILN_OK;
    if (!mo->compile)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the model has no compiler");
    kiln_status st = mo->compile(mo->compile_ctx, mo->m, names, k, progs, d);
    if (st) return st;
    double longest = 0;
    for (int i = 0; i < k; i++) {
        rt_fn *fn = todo[i];
        fn->prog = progs[i];
        double ms = cg_program_compile_ms(fn->prog);
        longest = ms > longest ? ms : longest;
        fn->entry = cg_program_entry(fn->prog, fn->f->name);
        fn->info = cg_program_func(fn->prog, fn->f->name);
        if (!fn->entry || !fn->info)
            st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(), "JIT: no entry point for '@%s'",
                          fn->f->name);
    }
    mo->compile_ms += longest;
    return st;
}

static kiln_status compile_fn(kiln_model *mo, rt_fn *fn, kiln_diag *d) {
    return compile_fns(mo, &fn, 1, d);
}

/* Whether `name` is an entry of the comma-separated `list`. */
static bool listed(const char *list, const char *name) {
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t k = strcspn(p, ",");
        if (k == len && strncmp(p, name, len) == 0) return true;
        p += k;
        if (*p == ',') p++;
    }
    return false;
}

/* The main function (train_step, else infer) and those named in `now`,
 * compiled at once. */
static kiln_status compile_first(kiln_model *mo, const char *now, kiln_diag *d) {
    rt_fn *fns[4] = {mo->train.f ? &mo->train : &mo->infer};
    int n = 1;
    rt_fn *all[3] = {&mo->train, &mo->loss, &mo->infer};
    for (int i = 0; i < 3; i++)
        if (all[i]->f && listed(now, all[i]->f->name)) fns[n++] = all[i];
    return compile_fns(mo, fns, n, d);
}

static kiln_status check_interface(kiln_model *mo, kiln_diag *d) {
    kiln_func *inf = mo->infer.f;
    if (!inf) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the model has no function @infer");
    if (inf->n_args < 1 || inf->n_args > RT_MAX_INPUTS || inf->n_results != 1)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "@infer must take 1 to %d inputs and return one output", RT_MAX_INPUTS);
    const ir_type *x = &inf->args[0]->type, *y = &inf->results[0]->type;
    bool batched = y->dtype == IR_F32 && ir_type_batch_axis(y) == 0;
    for (int i = 0; i < inf->n_args; i++) {
        const ir_type *t = &inf->args[i]->type;
        batched = batched && t->dtype == IR_F32 && ir_type_batch_axis(t) == 0;
        mo->in_sizes[i] = ir_type_static_numel(t);
    }
    if (!batched)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "@infer must map f32[?,...] inputs to f32[?,...] outputs");
    mo->n_inputs = inf->n_args;
    mo->in_size = ir_type_static_numel(x);
    mo->out_size = ir_type_static_numel(y);
    mo->n_classes = y->rank >= 2 ? y->dims[y->rank - 1] : 1;
    kiln_func *lf = mo->train.f ? mo->train.f : mo->loss.f;
    if (lf) {
        if (lf->n_args != mo->n_inputs + 1 || lf->n_results < 1)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "@%s must take inputs and labels and return the loss", lf->name);
        const ir_type *lab = &lf->args[mo->n_inputs]->type;
        mo->sparse_labels = lab->dtype == IR_I32;
        if (!mo->sparse_labels && lab->rank >= 2) mo->n_classes = lab->dims[lab->rank - 1];
        mo->has_accuracy = lf->n_results >= 2;
    }
    return KILN_OK;
}

kiln_status rt_model_create(kiln_module *m, const rt_model_config *c, kiln_model **out,
                            kiln_diag *d) {
    *out = NULL;
    kiln_model *mo = ir_calloc(1, sizeof *mo);
    if (!mo) {
        kiln_module_dispose(m);
        return ir_oom(d);
    }
    mo->m = m;
    mo->backend = c->backend;
    mo->compile = c->compile;
    mo->compile_ctx = c->compile_ctx;
    mo->seed = c->seed;
    mo->distributed = c->distributed;
    if (c->threads > 0) {
        openblas_set_num_threads(c->threads);
        kiln_pool_set_threads(c->threads); /* Kiln's GEMM kernels */
    }
    bind_fn(mo, &mo->infer, "infer");
    bind_fn(mo, &mo->loss, "loss");
    bind_fn(mo, &mo->train, "train_step");
    kiln_status st = check_interface(mo, d);
    /* The main function compiles now, so its errors and its compile time
     * show at creation; the others when first used. */
    if (!st) st = compile_first(mo, c->compile_now, d);
    if (!st) st = rt_globals_create(m, mo->seed, &mo->globals, d);
    if (st) {
        kiln_model_dispose(mo);
        return st;
    }
    *out = mo;
    return KILN_OK;
}

void kiln_model_dispose(kiln_model *mo) {
    if (!mo) return;
    rt_globals_free(mo->m, mo->globals);
    cg_program_dispose(mo->infer.prog);
    cg_program_dispose(mo->loss.prog);
    cg_program_dispose(mo->train.prog);
    ir_aligned_free(mo->x);
    ir_aligned_free(mo->y);
    ir_aligned_free(mo->labels);
    ir_aligned_free(mo->ws);
    rt_shuffle_free(&mo->shuffle);
    ir_free(mo->hist);
    ir_free(mo->snap);
    kiln_module_dispose(mo->m);
    ir_free(mo);
}

const kiln_module *kiln_model_module(const kiln_model *mo) { return mo->m; }
double kiln_model_compile_ms(const kiln_model *mo) { return mo->compile_ms; }

const char *kiln_model_cache_status(const kiln_model *mo, const char *function) {
    const rt_fn *fns[3] = {&mo->infer, &mo->loss, &mo->train};
    for (int i = 0; function && i < 3; i++)
        if (fns[i]->prog && strcmp(fns[i]->f->name, function) == 0)
            return cg_program_cache_status(fns[i]->prog);
    return NULL;
}
int kiln_model_threads(const kiln_model *mo) {
    (void)mo;
    return openblas_get_num_threads();
}
int64_t kiln_model_input_size(const kiln_model *mo) { return mo->in_size; }
int kiln_model_input_count(const kiln_model *mo) { return mo ? mo->n_inputs : 0; }
int64_t kiln_model_input_size_at(const kiln_model *mo, int i) {
    return mo && i >= 0 && i < mo->n_inputs ? mo->in_sizes[i] : -1;
}
int64_t kiln_model_output_size(const kiln_model *mo) { return mo->out_size; }
int kiln_model_history_count(const kiln_model *mo) { return mo->n_hist; }

kiln_progress kiln_model_history(const kiln_model *mo, int i) {
    kiln_progress p;
    memset(&p, 0, sizeof p);
    if (i >= 0 && i < mo->n_hist) p = mo->hist[i];
    return p;
}

/* ------------------------------------------------------------- running */

/* Makes the batch buffers and the workspace big enough for `batch`. */
static kiln_status reserve(kiln_model *mo, int64_t batch, kiln_diag *d) {
    if (batch > mo->cap) {
        ir_aligned_free(mo->x);
        ir_aligned_free(mo->y);
        ir_aligned_free(mo->labels);
        mo->x = ir_aligned_alloc(sizeof(float) * (size_t)(batch * mo->in_size));
        mo->y = ir_aligned_alloc(sizeof(float) * (size_t)(batch * mo->n_classes));
        mo->labels = ir_aligned_alloc(sizeof(int32_t) * (size_t)batch);
        mo->cap = 0;
        if (!mo->x || !mo->y || !mo->labels) return ir_oom(d);
        mo->cap = batch;
    }
    if (mo->backend == KILN_BACKEND_JIT) {
        int64_t need = 0;
        const rt_fn *fns[3] = {&mo->infer, &mo->loss, &mo->train};
        for (int i = 0; i < 3; i++)
            if (fns[i]->info) {
                int64_t b = cg_workspace_bytes(fns[i]->info, batch);
                if (b > need) need = b;
            }
        if (need > mo->ws_bytes) {
            ir_aligned_free(mo->ws);
            mo->ws = ir_aligned_alloc((size_t)need);
            mo->ws_bytes = mo->ws ? need : 0;
            if (!mo->ws) return ir_oom(d);
        }
    }
    return KILN_OK;
}

kiln_status rt_model_prepare(kiln_model *mo, rt_fn *fn, int64_t batch, kiln_diag *d) {
    kiln_status st = compile_fn(mo, fn, d);
    return st ? st : reserve(mo, batch, d);
}

kiln_status rt_model_run(kiln_model *mo, const rt_fn *fn, int64_t batch, void *const *args,
                         void *const *results, kiln_diag *d) {
    if (mo->backend != KILN_BACKEND_JIT)
        return ir_interp_run(fn->f, batch, args, results, mo->globals, d);
    int32_t st = fn->entry(batch, args, results, mo->globals, mo->ws);
    if (st) return cg_func_error(fn->info, mo->ws, batch, st, d);
    return KILN_OK;
}

kiln_status rt_model_gather(kiln_model *mo, const rt_batches *b, int64_t s, int *rows,
                            kiln_diag *d) {
    float *y = mo->sparse_labels ? NULL : mo->y;
    int32_t *lab = mo->sparse_labels ? mo->labels : NULL;
    int classes = (int)mo->n_classes;
    int64_t all = rt_batch_rows(b->n, b->batch, s), lo = 0, hi = all;
    mo->global_rows = all;
    if (mo->distributed) {
        int r = rt_dist_rank(), size = rt_dist_size();
        lo = all * r / size;
        hi = all * (r + 1) / size;
        ir_collective_set_weight(all ? (double)(hi - lo) / (double)all : 0);
        ir_collective_set_first_row(lo);
    }
    int n = *rows = (int)(hi - lo);
    int64_t first = s * b->batch + lo;
    if (b->perm) return rt_batch_gather(b->ds, b->perm + first, n, mo->x, y, classes, lab, d);
    return rt_batch_slice(b->ds, first, n, mo->x, y, classes, lab, d);
}

void rt_model_batch_args(const kiln_model *mo, void *args[2]) {
    args[0] = mo->x;
    args[1] = mo->sparse_labels ? (void *)mo->labels : (void *)mo->y;
}

/* An image input (f32[?,h,w,c]) takes images of exactly its shape: an
 * IDX file of h x w images (c = 1) or h x w x c; f32[?,1,h,w] takes h x w. A matrix input f32[?,n]
 * takes any sample of n values (images flattened, as Keras' MNIST MLP). */
static kiln_status check_input_shape(const ir_node *arg, const rt_dataset *ds, kiln_diag *d) {
    const ir_type *x = &arg->type;
    int r = x->rank - 1, q = ds->sample_rank;
    if (r < 2) return KILN_OK;
    const int64_t *m = x->dims + 1;
    bool ok = q == r || (q == r - 1 && m[r - 1] == 1);
    for (int i = 0; ok && i < q; i++) ok = ds->sample_dims[i] == m[i];
    /* One channel first (f32[?,1,h,w], as ONNX models from PyTorch): the
     * same bytes as h x w images. */
    bool first = q == r - 1 && m[0] == 1;
    for (int i = 0; first && i < q; i++) first = ds->sample_dims[i] == m[i + 1];
    if (ok || first) return KILN_OK;
    char ib[IR_TYPE_STR_MAX], sb[128];
    size_t o = 0;
    sb[0] = 0;
    for (int i = 0; i < q && o < sizeof sb; i++)
        o += (size_t)snprintf(sb + o, sizeof sb - o, "%s%lld", i ? "x" : "",
                              (long long)ds->sample_dims[i]);
    /* At the input's declaration when the model came from a file. */
    return ir_error(d, KILN_ERR_SHAPE, arg->loc,
                    "%s: images are %s, the model's input '%s' is %s", ds->images_path, sb,
                    arg->name, ir_type_str(x, ib, sizeof ib));
}

kiln_status kiln_module_check_dataset(const kiln_module *m, const kiln_dataset *ds,
                                      kiln_diag *d) {
    if (!m || !ds) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no module or dataset");
    const kiln_func *f = kiln_module_func(m, "infer");
    if (!f || f->n_args < 1) return KILN_OK; /* nothing to check against */
    int64_t in = ir_type_numel(&f->args[0]->type, 1);
    kiln_status st = rt_dataset_check_input(ds->rt, in, d);
    return st ? st : check_input_shape(f->args[0], ds->rt, d);
}

/* A dataset holds one input. */
static kiln_status one_input(const kiln_model *mo, kiln_diag *d) {
    if (mo->n_inputs == 1) return KILN_OK;
    return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                    "the model has %d inputs and a dataset holds one: a model with several inputs "
                    "predicts (kiln_model_predict_inputs; kiln predict --input once per input) but "
                    "does not yet train or evaluate",
                    mo->n_inputs);
}

kiln_status rt_model_check_data(const kiln_model *mo, const rt_dataset *ds, kiln_diag *d) {
    kiln_status st = one_input(mo, d);
    if (!st) st = rt_dataset_check_input(ds, mo->in_size, d);
    if (!st) st = check_input_shape(mo->infer.f->args[0], ds, d);
    if (st) return st;
    rt_y_mode mode;
    return rt_dataset_y_mode(ds, mo->sparse_labels, mo->n_classes, &mode, d);
}

kiln_status kiln_model_check_dataset(const kiln_model *mo, const kiln_dataset *ds, int need_labels,
                                     kiln_diag *d) {
    if (!mo || !ds) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no model or dataset");
    if (need_labels) return rt_model_check_data(mo, ds->rt, d);
    kiln_status st = one_input(mo, d);
    if (!st) st = rt_dataset_check_input(ds->rt, mo->in_size, d);
    return st ? st : check_input_shape(mo->infer.f->args[0], ds->rt, d);
}

kiln_status kiln_model_evaluate(kiln_model *mo, kiln_dataset *dset, int64_t batch, int verbose,
                                double *loss, double *accuracy, kiln_diag *d) {
    if (!mo->loss.f)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the model has no loss to evaluate");
    if (!dset) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_evaluate: no dataset");
    const rt_dataset *ds = dset->rt;
    kiln_status st = rt_model_check_data(mo, ds, d);
    if (st) return st;
    if (batch <= 0) batch = 128;
    if (batch > ds->n && ds->n > 0) batch = ds->n;
    if ((st = rt_model_prepare(mo, &mo->loss, batch, d))) return st;
    rt_batches b = rt_batches_of(ds, batch, NULL);
    float la[2] = {0, 0};
    void *args[2], *results[2] = {&la[0], &la[1]};
    rt_model_batch_args(mo, args);
    verbose = verbose && rt_dist_rank() == 0;
    bool tty = verbose && isatty(fileno(stdout));
    kiln_progress p;
    memset(&p, 0, sizeof p);
    p.steps = b.steps;
    p.accuracy = -1;
    double t0 = rt_now_s(), last = 0, sums[2] = {0, 0};
    for (int64_t s = 0; s < b.steps; s++) {
        int rows;
        if ((st = rt_model_gather(mo, &b, s, &rows, d))) return st;
        if (rows == 0) continue; /* more ranks than rows in this batch */
        if ((st = rt_model_run(mo, &mo->loss, rows, args, results, d))) return st;
        rt_progress_add(&p, sums, la, rows, mo->has_accuracy, t0);
        if (verbose && !mo->distributed) rt_progress_show(&p, false, tty, &last);
    }
    if (mo->distributed) { /* each rank evaluated its shards: add them up */
        double v[3] = {sums[0], sums[1], (double)p.samples};
        if ((st = rt_dist_sum(v, 3, d))) return st;
        p.samples = (int64_t)v[2];
        p.loss = v[2] ? v[0] / v[2] : 0;
        p.accuracy = mo->has_accuracy && v[2] ? v[1] / v[2] : -1;
        p.step = b.steps;
    }
    if (verbose) rt_progress_show(&p, true, tty, &last);
    *loss = p.samples ? p.loss : NAN;
    if (accuracy) *accuracy = p.samples ? p.accuracy : -1;
    return KILN_OK;
}

kiln_status kiln_model_predict(kiln_model *mo, const float *x, int64_t n, float *out,
                               kiln_diag *d) {
    if (!mo) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_predict: no model");
    if (mo->n_inputs != 1)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_model_predict: the model has %d inputs; use "
                        "kiln_model_predict_inputs", mo->n_inputs);
    return kiln_model_predict_inputs(mo, &x, 1, n, out, d);
}

kiln_status kiln_model_predict_inputs(kiln_model *mo, const float *const *x, int n_inputs,
                                      int64_t n, float *out, kiln_diag *d) {
    if (!mo || n < 0 || (n && (!x || !out)))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_predict: bad arguments");
    if (n_inputs != mo->n_inputs)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "the model has %d input%s, %d %s given", mo->n_inputs,
                        mo->n_inputs == 1 ? "" : "s", n_inputs, n_inputs == 1 ? "was" : "were");
    for (int i = 0; i < n_inputs && n; i++)
        if (!x[i])
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_predict: input %d is NULL",
                            i + 1);
    const int64_t chunk = 1 << 16;
    kiln_status cst = compile_fn(mo, &mo->infer, d);
    if (cst) return cst;
    for (int64_t s = 0; s * chunk < n; s++) {
        int64_t rows = rt_batch_rows(n, chunk, s);
        kiln_status st = reserve(mo, rows < mo->cap ? mo->cap : rows, d);
        if (st) return st;
        void *args[RT_MAX_INPUTS];
        for (int i = 0; i < n_inputs; i++) args[i] = (void *)(x[i] + s * chunk * mo->in_sizes[i]);
        void *results[1] = {out + s * chunk * mo->out_size};
        if ((st = rt_model_run(mo, &mo->infer, rows, args, results, d))) return st;
    }
    return KILN_OK;
}

kiln_status kiln_model_predict_dataset(kiln_model *mo, const kiln_dataset *ds, float *out,
                                       kiln_diag *d) {
    if (!mo || !ds || (ds->rt->n && !out))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_model_predict_dataset: bad arguments");
    const int64_t chunk = 256;
    kiln_status st = rt_dataset_check_input(ds->rt, mo->in_size, d);
    if (!st) st = rt_model_prepare(mo, &mo->infer, mo->cap > chunk ? mo->cap : chunk, d);
    for (int64_t s = 0; !st && s * chunk < ds->rt->n; s++) {
        int rows = (int)rt_batch_rows(ds->rt->n, chunk, s);
        st = rt_batch_slice(ds->rt, s * chunk, rows, mo->x, NULL, 0, NULL, d);
        void *args[1] = {mo->x};
        void *results[1] = {out + s * chunk * mo->out_size};
        if (!st) st = rt_model_run(mo, &mo->infer, rows, args, results, d);
    }
    return st;
}

kiln_status kiln_model_get_weights(const kiln_model *mo, const char *name, float *out, int64_t n,
                                   kiln_diag *d) {
    const ir_global *g = mo && name ? ir_module_global(mo->m, name) : NULL;
    if (!g || g->type.dtype != IR_F32)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the model has no f32 parameter '%s'",
                        name ? name : "(null)");
    int64_t count = ir_type_numel(&g->type, 1);
    if (n != count || !out)
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(), "'%s' has %lld values, not %lld", name,
                        (long long)count, (long long)n);
    memcpy(out, mo->globals[g->index], sizeof(float) * (size_t)count);
    return KILN_OK;
}

/* ---------------------------------------------------------- checkpoints */

kiln_status kiln_model_save(kiln_model *mo, const char *path, kiln_diag *d) {
    rt_ckpt_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.step = mo->step;
    pr.epoch = mo->epoch;
    if (mo->shuffle_ready) {
        pr.has_shuffle = true;
        pr.shuffle = rt_shuffle_get_state(&mo->shuffle);
    }
    return rt_ckpt_save(path, mo->m, mo->globals, &pr, NULL, 0, RT_CKPT_REFUSE_NONFINITE, d);
}

kiln_status kiln_model_load(kiln_model *mo, const char *path, kiln_load_mode mode, kiln_diag *d) {
    rt_ckpt_report rep;
    memset(&rep, 0, sizeof rep);
    /* Fine-tuning starts a fresh optimizer (as Keras does on a new compile):
     * only parameters are taken from the file. */
    bool ft = mode == KILN_LOAD_FINETUNE;
    rt_st_file *f = NULL;
    kiln_status st = path ? rt_st_load(path, &f, d)
                          : ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_load: no path");
    if (st) return st;
    /* A weights-only file (no optimizer state, as PyTorch's state_dict or a
     * Keras save_weights exporter writes) loads its parameters; training
     * then starts a fresh optimizer (Keras' load_weights, then fit). */
    st = rt_ckpt_apply(f, mo->m, mo->globals, ft ? RT_CKPT_FINETUNE : RT_CKPT_STRICT,
                       ft ? RT_CKPT_PARAMS_ONLY : RT_CKPT_STATE_OPTIONAL, &rep, d);
    rt_st_free(f);
    if (!st && rep.weights_only)
        ir_note(d, ir_loc_none(), "%s: weights only (no optimizer state): training starts a fresh "
                "optimizer", path);
    if (!st) {
        if (mode == KILN_LOAD_FINETUNE) {
            ir_note(d, ir_loc_none(), "%s: loaded %d tensors, skipped %d", path, rep.n_loaded,
                    rep.n_skipped);
            for (int i = 0; i < rep.n_skipped; i++)
                ir_note(d, ir_loc_none(), "%s: skipped %s", path, rep.skipped[i]);
        } else {
            if (rep.progress.step >= 0) mo->step = rep.progress.step;
            if (rep.progress.epoch >= 0) mo->epoch = rep.progress.epoch;
            if (rep.progress.has_shuffle) {
                mo->pending_shuffle = rep.progress.shuffle;
                mo->shuffle_restored = true;
                if (mo->shuffle_ready) {
                    rt_shuffle_set_state(&mo->shuffle, rep.progress.shuffle);
                    mo->shuffle_restored = false;
                }
            }
        }
    }
    rt_ckpt_report_free(&rep);
    return st;
}

/*
 * model.c — a compiled model and Keras' workflow on it: fit, evaluate,
 * predict, checkpoints.
 *
 * A model owns its module after the pipeline ("train" when the module has a
 * loss and an optimizer, else "infer"), the data of every global (weights,
 * optimizer state), and an executor: the JIT program or the interpreter.
 * The training loop allocates its batch buffers and the workspace once, for
 * the largest batch, so a step does no allocation: gather a batch (uint8 ->
 * float), call train_step, read the loss and accuracy back.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "passes/pass.h"
#include "runtime/checkpoint.h"
#include "runtime/data.h"
#include "runtime/runtime.h"

struct kiln_dataset {
    rt_dataset *rt;
};

/* One function of the model and how to call it. With the JIT each
 * function is its own program, compiled when first needed: `kiln eval`
 * never pays for train_step, and training starts after train_step alone. */
typedef struct rt_fn {
    kiln_func *f;
    cg_program *prog;         /* JIT, NULL until compiled */
    cg_entry_fn entry;
    const cg_func_info *info;
} rt_fn;

struct kiln_model {
    kiln_module *m;
    kiln_backend backend;
    int threads;
    uint64_t seed;
    rt_fn infer, loss, train;
    void **globals; /* data of global i */
    double compile_ms; /* JIT compile time so far, all functions */
    /* Buffers sized for `cap` samples, grown when a larger batch comes. */
    int64_t cap;
    float *x, *y;
    int32_t *labels;
    char *ws;
    int64_t ws_bytes;
    /* The model's interface. */
    int64_t in_size, out_size, n_classes;
    bool sparse_labels, has_accuracy;
    /* Where training stands (saved in checkpoints). */
    int64_t step, epoch;
    rt_shuffle shuffle;
    bool shuffle_ready, shuffle_restored;
    rt_shuffle_state pending_shuffle; /* from a checkpoint, applied at fit */
    kiln_progress *hist;
    int n_hist, cap_hist;
    /* fit: every global's data as the epoch started, so that a non-finite
     * loss can be traced on the weights the failing step started from
     * (nonfinite_loss); allocated by the first fit that guards against one. */
    char *snap;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

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

/* Compiles fn with the JIT the first time it is needed. */
static kiln_status compile_fn(kiln_model *mo, rt_fn *fn, kiln_diag *d) {
    if (mo->backend != KILN_BACKEND_JIT || fn->prog || !fn->f) return KILN_OK;
    cg_options co;
    memset(&co, 0, sizeof co);
    co.only_func = fn->f->name;
    kiln_status st = cg_jit_compile(mo->m, &co, &fn->prog, d);
    if (st) return st;
    mo->compile_ms += cg_program_compile_ms(fn->prog);
    fn->entry = cg_program_entry(fn->prog, fn->f->name);
    fn->info = cg_program_func(fn->prog, fn->f->name);
    if (!fn->entry || !fn->info)
        return ir_error(d, KILN_ERR_BACKEND, ir_loc_none(), "JIT: no entry point for '@%s'",
                        fn->f->name);
    return KILN_OK;
}

static kiln_status check_interface(kiln_model *mo, kiln_diag *d) {
    kiln_func *inf = mo->infer.f;
    if (!inf) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the model has no function @infer");
    if (inf->n_args != 1 || inf->n_results != 1)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "@infer must take one input and return one output");
    const ir_type *x = &inf->args[0]->type, *y = &inf->results[0]->type;
    if (x->dtype != IR_F32 || ir_type_batch_axis(x) != 0 || y->dtype != IR_F32 ||
        ir_type_batch_axis(y) != 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "@infer must map f32[?,...] inputs to f32[?,...] outputs");
    mo->in_size = ir_type_static_numel(x);
    mo->out_size = ir_type_static_numel(y);
    mo->n_classes = y->rank >= 2 ? y->dims[y->rank - 1] : 1;
    kiln_func *lf = mo->train.f ? mo->train.f : mo->loss.f;
    if (lf) {
        if (lf->n_args != 2 || lf->n_results < 1)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "@%s must take inputs and labels and return the loss", lf->name);
        const ir_type *lab = &lf->args[1]->type;
        mo->sparse_labels = lab->dtype == IR_I32;
        if (!mo->sparse_labels && lab->rank >= 2) mo->n_classes = lab->dims[lab->rank - 1];
        mo->has_accuracy = lf->n_results >= 2;
    }
    return KILN_OK;
}

static kiln_status init_globals(kiln_model *mo, kiln_diag *d) {
    kiln_module *m = mo->m;
    mo->globals = ir_calloc((size_t)m->n_globals + 1, sizeof(void *));
    if (!mo->globals) return ir_oom(d);
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        size_t bytes = (size_t)ir_type_numel(&g->type, 1) * ir_dtype_size(g->type.dtype);
        mo->globals[i] = ir_aligned_alloc(bytes ? bytes : 4);
        if (!mo->globals[i]) return ir_oom(d);
        kiln_status st = ir_global_init(g, mo->seed, mo->globals[i], d);
        if (st) return st;
    }
    return KILN_OK;
}

kiln_status kiln_model_create(kiln_module *m, const kiln_model_opts *o, kiln_model **out,
                              kiln_diag *d) {
    *out = NULL;
    if (!m) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_create: no module");
    kiln_model *mo = ir_calloc(1, sizeof *mo);
    if (!mo) {
        kiln_module_dispose(m);
        return ir_oom(d);
    }
    mo->m = m;
    mo->backend = o ? o->backend : KILN_BACKEND_JIT;
    mo->threads = o ? o->threads : 0;
    mo->seed = (uint64_t)(o && o->seed ? o->seed : m->train.seed ? m->train.seed : 1);
    if (mo->threads > 0) openblas_set_num_threads(mo->threads);

    kiln_status st = KILN_OK;
    bool has_train = kiln_module_func(m, "train_step") != NULL;
    bool can_train = kiln_module_func(m, "loss") && m->train.present &&
                     m->train.opt.kind != IR_OPT_NONE;
    if (!has_train) st = pass_run_pipeline(m, can_train ? "train" : "infer", NULL, d);
    bind_fn(mo, &mo->infer, "infer");
    bind_fn(mo, &mo->loss, "loss");
    bind_fn(mo, &mo->train, "train_step");
    if (!st) st = check_interface(mo, d);
    /* The main function compiles now, so its errors and its compile time
     * show at creation; the others when first used. */
    if (!st) st = compile_fn(mo, mo->train.f ? &mo->train : &mo->infer, d);
    if (!st) st = init_globals(mo, d);
    if (st) {
        kiln_model_dispose(mo);
        return st;
    }
    *out = mo;
    return KILN_OK;
}

void kiln_model_dispose(kiln_model *mo) {
    if (!mo) return;
    if (mo->globals)
        for (int i = 0; i < mo->m->n_globals; i++) ir_aligned_free(mo->globals[i]);
    ir_free(mo->globals);
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
int kiln_model_threads(const kiln_model *mo) {
    (void)mo;
    return openblas_get_num_threads();
}
int64_t kiln_model_input_size(const kiln_model *mo) { return mo->in_size; }
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

static kiln_status run(kiln_model *mo, const rt_fn *fn, int64_t batch, void *const *args,
                       void *const *results, kiln_diag *d) {
    if (mo->backend != KILN_BACKEND_JIT)
        return ir_interp_run(fn->f, batch, args, results, mo->globals, d);
    int32_t st = fn->entry(batch, args, results, mo->globals, mo->ws);
    if (st) return cg_func_error(fn->info, mo->ws, batch, st, d);
    return KILN_OK;
}

/* Fills the batch buffers from samples idx[0..n) (or [first, first+n)). */
static kiln_status gather(kiln_model *mo, const rt_dataset *ds, const int32_t *idx, int64_t first,
                          int n, kiln_diag *d) {
    float *y = mo->sparse_labels ? NULL : mo->y;
    int32_t *lab = mo->sparse_labels ? mo->labels : NULL;
    int classes = (int)mo->n_classes;
    if (idx) return rt_batch_gather(ds, idx, n, mo->x, y, classes, lab, d);
    return rt_batch_slice(ds, first, n, mo->x, y, classes, lab, d);
}

/* Inputs of the model's size, labels that fit its label (rt_y_mode). */
static kiln_status check_data(kiln_model *mo, const rt_dataset *ds, kiln_diag *d) {
    kiln_status st = rt_dataset_check_input(ds, mo->in_size, d);
    if (st) return st;
    rt_y_mode mode;
    return rt_dataset_y_mode(ds, mo->sparse_labels, mo->n_classes, &mode, d);
}

kiln_status kiln_model_check_dataset(const kiln_model *mo, const kiln_dataset *ds, int need_labels,
                                     kiln_diag *d) {
    if (!mo || !ds) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no model or dataset");
    if (need_labels) return check_data((kiln_model *)mo, ds->rt, d);
    return rt_dataset_check_input(ds->rt, mo->in_size, d);
}

static size_t global_bytes(const ir_global *g) {
    return (size_t)ir_type_numel(&g->type, 1) * ir_dtype_size(g->type.dtype);
}

/* Copies every global into mo->snap (to = true) or back (to = false). */
static kiln_status snapshot(kiln_model *mo, bool to, kiln_diag *d) {
    const kiln_module *m = mo->m;
    if (to && !mo->snap) {
        size_t total = 0;
        for (int i = 0; i < m->n_globals; i++) total += global_bytes(m->globals[i]);
        if (!(mo->snap = ir_malloc(total))) return ir_oom(d);
    }
    char *p = mo->snap;
    for (int i = 0; i < m->n_globals; i++) {
        size_t b = global_bytes(m->globals[i]);
        if (to)
            memcpy(p, mo->globals[i], b);
        else
            memcpy(mo->globals[i], p, b);
        p += b;
    }
    return KILN_OK;
}

static const char *nonfinite_word(float v) { return isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf"; }

/* The step that just ran (step mo->step, batch s_fail of this epoch, which
 * this fit entered at batch s_first) had a NaN or Inf loss. Says why in one
 * line, naming the first non-finite tensor:
 *  - the epoch is replayed from mo->snap up to the failing batch, so the
 *    weights are those the failing step started from (it is deterministic:
 *    the same batches in the same order), and the model keeps them;
 *  - the interpreter runs @loss on that batch op by op and names the first
 *    non-finite value: an input (with its sample in the dataset) or the op
 *    that computed it, with its source line;
 *  - failing that (no snapshot, or the rerun stays finite), the first
 *    parameter the update made non-finite. */
static kiln_status nonfinite_loss(kiln_model *mo, const rt_dataset *ds, const kiln_fit_opts *o,
                                  int64_t s_first, int64_t s_fail, int64_t batch, float loss,
                                  kiln_diag *d) {
    int64_t step = mo->step, n = ds->n;
    const ir_global *param = NULL;
    int64_t param_at = 0;
    float param_val = 0;
    for (int i = 0; i < mo->m->n_globals && !param; i++) {
        const ir_global *g = mo->m->globals[i];
        if (g->kind != IR_GLOBAL_PARAM || g->type.dtype != IR_F32) continue;
        const float *v = mo->globals[i];
        for (int64_t k = 0, c = ir_type_numel(&g->type, 1); k < c; k++)
            if (!isfinite(v[k])) {
                param = g;
                param_at = k;
                param_val = v[k];
                break;
            }
    }
    kiln_diag mine; /* a failed rerun only makes the message less precise */
    memset(&mine, 0, sizeof mine);
    float loss_acc[2];
    void *args[2] = {mo->x, mo->sparse_labels ? (void *)mo->labels : (void *)mo->y};
    void *results[2] = {&loss_acc[0], &loss_acc[1]};
    bool replayed = false;
    kiln_status st = KILN_OK;
    if (mo->snap) {
        snapshot(mo, false, NULL);
        for (int64_t s = s_first; s <= s_fail && !st; s++) {
            int nb = (int)(s + 1 < (n + batch - 1) / batch ? batch : n - s * batch);
            const int32_t *idx = o->no_shuffle ? NULL : mo->shuffle.perm + s * batch;
            st = gather(mo, ds, idx, s * batch, nb, &mine);
            if (!st && s < s_fail) st = run(mo, &mo->train, nb, args, results, &mine);
        }
        replayed = !st;
        if (replayed) mo->step = step - 1;
    }
    ir_nonfinite nf;
    memset(&nf, 0, sizeof nf);
    int nb = (int)(s_fail + 1 < (n + batch - 1) / batch ? batch : n - s_fail * batch);
    if (replayed && mo->loss.f)
        ir_interp_first_nonfinite(mo->loss.f, nb, args, mo->globals, &nf, &mine);
    ir_sb_free(&mine.text);

    char why[512], keep[64] = "";
    const ir_node *b = nf.node;
    if (b && b->op == IR_ARG) {
        int64_t row = ir_type_static_numel(&b->type), r = nf.element / row;
        int64_t sample = o->no_shuffle ? s_fail * batch + r : mo->shuffle.perm[s_fail * batch + r];
        snprintf(why, sizeof why, "input '%s' holds %s (value %lld of sample %lld of %s)", b->name,
                 nonfinite_word(nf.value), (long long)(nf.element % row), (long long)sample,
                 b->index == 0 ? ds->images_path : ds->labels_path);
    } else if (b && b->loc.file) {
        snprintf(why, sizeof why, "the first non-finite value (%s) is computed by %s at %s:%d:%d",
                 nonfinite_word(nf.value), ir_op_name(b->op), b->loc.file, (int)b->loc.line,
                 (int)b->loc.col);
    } else if (b) {
        snprintf(why, sizeof why, "the first non-finite value (%s) is computed by %s",
                 nonfinite_word(nf.value), ir_op_name(b->op));
    } else if (param) {
        snprintf(why, sizeof why, "the update made parameter '%s' %s (element %lld)", param->name,
                 nonfinite_word(param_val), (long long)param_at);
    } else {
        snprintf(why, sizeof why, "the parameters are still finite");
    }
    if (replayed)
        snprintf(keep, sizeof keep, "; the model keeps the weights of step %lld",
                 (long long)(step - 1));
    return ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(),
                    "step %lld: the loss is %s: %s%s (use --continue-on-nan to go on)",
                    (long long)step, isnan(loss) ? "NaN" : "infinite", why, keep);
}

static kiln_status push_history(kiln_model *mo, const kiln_progress *p, kiln_diag *d) {
    if (!IR_GROW(mo->hist, mo->cap_hist, mo->n_hist + 1)) return ir_oom(d);
    mo->hist[mo->n_hist++] = *p;
    return KILN_OK;
}

/* Adds one batch (its mean loss and accuracy, la) to the running means of
 * p; sums holds the sample-weighted totals. */
static void progress_add(kiln_progress *p, double sums[2], const float la[2], int nb, bool acc,
                         double t0) {
    sums[0] += (double)la[0] * nb;
    sums[1] += (double)la[1] * nb;
    p->step++;
    p->samples += nb;
    p->loss = sums[0] / (double)p->samples;
    p->accuracy = acc ? sums[1] / (double)p->samples : -1;
    p->seconds = now_s() - t0;
}

/* Prints a progress line: redrawn on a terminal, once at the end otherwise. */
static void show(const kiln_progress *p, bool end, bool tty, double *last_draw) {
    if (!tty && !end) return;
    double t = now_s();
    if (tty && !end && t - *last_draw < 0.1) return;
    *last_draw = t;
    ir_sb sb;
    ir_sb_init(&sb);
    rt_progress_format(&sb, p, tty);
    if (sb.buf) {
        fprintf(stdout, "%s%s%s", tty ? "\r" : "", sb.buf, end ? "\n" : "");
        fflush(stdout);
    }
    ir_sb_free(&sb);
}

kiln_status kiln_model_fit(kiln_model *mo, kiln_dataset *train, const kiln_fit_opts *o,
                           kiln_diag *d) {
    kiln_fit_opts defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!o) o = &defaults;
    if (!mo->train.f)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "the model cannot train: it needs a loss and an optimizer");
    if (!train) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_fit: no dataset");
    const rt_dataset *ds = train->rt;
    kiln_status st = check_data(mo, ds, d);
    if (st) return st;
    int epochs = o->epochs > 0 ? o->epochs : mo->m->train.epochs > 0 ? (int)mo->m->train.epochs : 1;
    int64_t batch = o->batch_size > 0                ? o->batch_size
                    : mo->m->train.batch_size > 0 ? mo->m->train.batch_size
                                                  : 32;
    int64_t n = ds->n;
    if (n == 0) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no samples", ds->images_path);
    if (batch > n) batch = n;
    if ((st = compile_fn(mo, &mo->train, d)) || (st = reserve(mo, batch, d))) return st;
    if (!mo->shuffle_ready || mo->shuffle.n != n) {
        rt_shuffle_free(&mo->shuffle);
        uint64_t seed = (uint64_t)(o->shuffle_seed ? o->shuffle_seed : (int64_t)mo->seed);
        if ((st = rt_shuffle_init(&mo->shuffle, n, seed, d))) return st;
        mo->shuffle_ready = true;
        if (mo->shuffle_restored) rt_shuffle_set_state(&mo->shuffle, mo->pending_shuffle);
    }
    mo->shuffle_restored = false;
    int64_t steps = (n + batch - 1) / batch;
    /* A run stopped (or saved) inside an epoch goes on at the next batch of
     * the same permutation: the step within the epoch is what the steps of
     * the completed epochs leave. */
    int64_t first = mo->step - mo->epoch * steps;
    if (first < 0 || first >= steps) first = 0;
    bool tty = o->verbose && isatty(fileno(stdout));
    float loss_acc[2] = {0, 0};
    void *args[2] = {mo->x, mo->sparse_labels ? (void *)mo->labels : (void *)mo->y};
    void *results[2] = {&loss_acc[0], &loss_acc[1]};
    int64_t taken = 0;
    for (int e = 0; e < epochs; e++, first = 0) {
        if (!o->no_shuffle && (first == 0 || !mo->shuffle.st.drawn)) rt_shuffle_next(&mo->shuffle);
        if (!o->continue_on_nonfinite && (st = snapshot(mo, true, d))) return st;
        if (o->verbose && tty) printf("Epoch %d/%d\n", e + 1, epochs);
        kiln_progress p;
        memset(&p, 0, sizeof p);
        p.epoch = e + 1;
        p.epochs = epochs;
        p.steps = steps;
        p.accuracy = -1;
        double t0 = now_s(), last_draw = 0, sums[2] = {0, 0};
        bool stop = false, complete = true;
        for (int64_t s = first; s < steps; s++) {
            int nb = (int)(s + 1 < steps ? batch : n - s * batch);
            const int32_t *idx = o->no_shuffle ? NULL : mo->shuffle.perm + s * batch;
            if ((st = gather(mo, ds, idx, s * batch, nb, d))) return st;
            if ((st = run(mo, &mo->train, nb, args, results, d))) return st;
            mo->step++;
            taken++;
            if (!isfinite(loss_acc[0]) && !o->continue_on_nonfinite) {
                if (tty) putchar('\n'); /* ends the progress line */
                return nonfinite_loss(mo, ds, o, first, s, batch, loss_acc[0], d);
            }
            progress_add(&p, sums, loss_acc, nb, mo->has_accuracy, t0);
            if (o->callback) o->callback(&p, 0, o->user);
            if (o->verbose) show(&p, false, tty, &last_draw);
            if (o->checkpoint_path && o->checkpoint_every > 0 &&
                mo->step % o->checkpoint_every == 0 &&
                (st = kiln_model_save(mo, o->checkpoint_path, d)))
                return st;
            if (o->max_steps > 0 && taken >= o->max_steps) {
                stop = true;
                complete = s + 1 == steps;
                break;
            }
        }
        p.seconds = now_s() - t0;
        if (complete) mo->epoch++;
        if ((st = push_history(mo, &p, d))) return st;
        if (o->callback) o->callback(&p, 1, o->user);
        if (o->verbose) show(&p, true, tty, &last_draw);
        if (!stop && o->checkpoint_path && o->checkpoint_every < 0 &&
            mo->epoch % -o->checkpoint_every == 0 && (st = kiln_model_save(mo, o->checkpoint_path, d)))
            return st;
        if (stop) break;
    }
    return KILN_OK;
}

kiln_status kiln_model_evaluate(kiln_model *mo, kiln_dataset *dset, int64_t batch, int verbose,
                                double *loss, double *accuracy, kiln_diag *d) {
    const rt_fn *fn = mo->loss.f ? &mo->loss : NULL;
    if (!fn)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the model has no loss to evaluate");
    if (!dset) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_evaluate: no dataset");
    const rt_dataset *ds = dset->rt;
    kiln_status st = check_data(mo, ds, d);
    if (st) return st;
    if (batch <= 0) batch = 128;
    int64_t n = ds->n;
    if (batch > n && n > 0) batch = n;
    if ((st = compile_fn(mo, &mo->loss, d)) || (st = reserve(mo, batch, d))) return st;
    float la[2] = {0, 0};
    void *args[2] = {mo->x, mo->sparse_labels ? (void *)mo->labels : (void *)mo->y};
    void *results[2] = {&la[0], &la[1]};
    bool tty = verbose && isatty(fileno(stdout));
    kiln_progress p;
    memset(&p, 0, sizeof p);
    p.steps = (n + batch - 1) / batch;
    p.accuracy = -1;
    double t0 = now_s(), last = 0, sums[2] = {0, 0};
    for (int64_t s = 0; s * batch < n; s++) {
        int nb = (int)(n - s * batch < batch ? n - s * batch : batch);
        if ((st = gather(mo, ds, NULL, s * batch, nb, d))) return st;
        if ((st = run(mo, fn, nb, args, results, d))) return st;
        progress_add(&p, sums, la, nb, mo->has_accuracy, t0);
        if (verbose) show(&p, false, tty, &last);
    }
    if (verbose) show(&p, true, tty, &last);
    *loss = p.samples ? p.loss : NAN;
    if (accuracy) *accuracy = p.samples ? p.accuracy : -1;
    return KILN_OK;
}

kiln_status kiln_model_predict(kiln_model *mo, const float *x, int64_t n, float *out,
                               kiln_diag *d) {
    if (n < 0 || (n && (!x || !out)))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_predict: bad arguments");
    const int64_t chunk = 1 << 16;
    kiln_status cst = compile_fn(mo, &mo->infer, d);
    if (cst) return cst;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t nb = n - i < chunk ? n - i : chunk;
        kiln_status st = reserve(mo, nb < mo->cap ? mo->cap : nb, d);
        if (st) return st;
        void *args[1] = {(void *)(x + i * mo->in_size)};
        void *results[1] = {out + i * mo->out_size};
        if ((st = run(mo, &mo->infer, nb, args, results, d))) return st;
    }
    return KILN_OK;
}

kiln_status kiln_model_predict_dataset(kiln_model *mo, const kiln_dataset *ds, float *out,
                                       kiln_diag *d) {
    if (!mo || !ds || (ds->rt->n && !out))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_model_predict_dataset: bad arguments");
    kiln_status st = rt_dataset_check_input(ds->rt, mo->in_size, d);
    if (!st) st = compile_fn(mo, &mo->infer, d);
    const int64_t chunk = 256;
    if (!st) st = reserve(mo, mo->cap > chunk ? mo->cap : chunk, d);
    for (int64_t i = 0; !st && i < ds->rt->n; i += chunk) {
        int nb = (int)(ds->rt->n - i < chunk ? ds->rt->n - i : chunk);
        st = rt_batch_slice(ds->rt, i, nb, mo->x, NULL, 0, NULL, d);
        void *args[1] = {mo->x};
        void *results[1] = {out + i * mo->out_size};
        if (!st) st = run(mo, &mo->infer, nb, args, results, d);
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

static bool file_has_state(const rt_st_file *f) {
    for (int i = 0; i < rt_st_count(f); i++)
        if (strncmp(rt_st_at(f, i)->name, "optimizer.", 10) == 0) return true;
    return false;
}

static bool model_has_state(const kiln_module *m) {
    for (int i = 0; i < m->n_globals; i++)
        if (m->globals[i]->kind != IR_GLOBAL_PARAM) return true;
    return false;
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
    bool weights_only = !ft && !file_has_state(f) && model_has_state(mo->m);
    st = rt_ckpt_apply(f, mo->m, mo->globals, ft ? RT_CKPT_FINETUNE : RT_CKPT_STRICT,
                       ft || weights_only ? RT_CKPT_PARAMS_ONLY : 0, &rep, d);
    rt_st_free(f);
    if (!st && weights_only)
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

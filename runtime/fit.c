/*
 * fit.c — Keras' fit, read like llm.c's training loop: for every batch,
 * gather it; take one step; show the progress; maybe save a checkpoint.
 *
 * What is not the loop has a function of its own: fit_setup (defaults,
 * buffers, the shuffle), the NaN forensics (nonfinite_loss: which tensor
 * went non-finite first, and where), the checkpoint policy (maybe_save)
 * and the end of an epoch (epoch_end: history, callbacks).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runtime/dist.h"
#include "runtime/model.h"

/* One call of fit. */
typedef struct fit_run {
    const kiln_fit_opts *o;
    rt_batches b; /* an epoch's batches, in the shuffled order unless no_shuffle */
    int epochs;
    int64_t taken;  /* steps taken by this call (for max_steps) */
    int64_t first;  /* the batch this epoch starts at: > 0 when resuming inside one */
    bool verbose, tty, stop; /* stop: max_steps reached */
    bool complete;  /* the epoch ran to its last batch (also when max_steps ends it there) */
    float la[2];    /* loss and accuracy of the last step */
} fit_run;

/* ------------------------------------------------------------ snapshot */

/* Copies every global into mo->snap (to = true) or back (to = false). */
static kiln_status snapshot(kiln_model *mo, bool to, kiln_diag *d) {
    const kiln_module *m = mo->m;
    if (to && !mo->snap) {
        size_t total = 0;
        for (int i = 0; i < m->n_globals; i++) total += rt_global_bytes(m->globals[i]);
        if (!(mo->snap = ir_malloc(total))) return ir_oom(d);
    }
    char *p = mo->snap;
    for (int i = 0; i < m->n_globals; i++) {
        size_t b = rt_global_bytes(m->globals[i]);
        if (to)
            memcpy(p, mo->globals[i], b);
        else
            memcpy(mo->globals[i], p, b);
        p += b;
    }
    return KILN_OK;
}

/* ------------------------------------------------------- NaN forensics */

static const char *nonfinite_word(float v) {
    return isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf";
}

/* The first non-finite element of a trainable f32 parameter. */
typedef struct bad_param {
    const ir_global *g; /* NULL: every parameter is finite */
    int64_t at;
    float value;
} bad_param;

static bad_param nonfinite_param(const kiln_model *mo) {
    bad_param bp = {NULL, 0, 0};
    for (int i = 0; i < mo->m->n_globals; i++) {
        const ir_global *g = mo->m->globals[i];
        if (g->kind != IR_GLOBAL_PARAM || g->type.dtype != IR_F32) continue;
        const float *v = mo->globals[i];
        for (int64_t k = 0, c = ir_type_numel(&g->type, 1); k < c; k++)
            if (!isfinite(v[k])) {
                bp.g = g;
                bp.at = k;
                bp.value = v[k];
                return bp;
            }
    }
    return bp;
}

/* Replays the epoch from mo->snap (taken at batch s_first) up to batch s_fail (deterministic: the
 * same batches in the same order), so the weights are those the failing
 * step started from, then runs @loss on that batch in the interpreter,
 * which names the first non-finite value in *nf. False when there is no
 * snapshot or the replay failed (a failed replay only makes the message
 * less precise, so its errors are dropped). */
static bool nonfinite_replay(kiln_model *mo, const rt_batches *b, int64_t s_first,
                             int64_t s_fail, ir_nonfinite *nf) {
    memset(nf, 0, sizeof *nf);
    if (!mo->snap) return false;
    kiln_diag mine;
    memset(&mine, 0, sizeof mine);
    float la[2];
    void *args[2], *results[2] = {&la[0], &la[1]};
    rt_model_batch_args(mo, args);
    snapshot(mo, false, NULL);
    kiln_status st = KILN_OK;
    int rows = 0;
    for (int64_t s = s_first; s <= s_fail && !st; s++) {
        st = rt_model_gather(mo, b, s, &rows, &mine);
        if (!st && s < s_fail) st = rt_model_run(mo, &mo->train, rows, args, results, &mine);
    }
    if (!st && mo->loss.f)
        ir_interp_first_nonfinite(mo->loss.f, rows, args, mo->globals, nf, &mine);
    ir_sb_free(&mine.text);
    return !st;
}

/* Why the loss went non-finite, in words: the first non-finite input or
 * op (from the replay), else the first parameter the update broke. */
static void nonfinite_why(char *why, size_t n, const ir_nonfinite *nf, const bad_param *bp,
                          const rt_batches *b, int64_t s_fail) {
    const ir_node *v = nf->node;
    if (v && v->op == IR_ARG) {
        int64_t row = ir_type_static_numel(&v->type), r = nf->element / row;
        snprintf(why, n, "input '%s' holds %s (value %lld of sample %lld of %s)", v->name,
                 nonfinite_word(nf->value), (long long)(nf->element % row),
                 (long long)rt_batch_sample(b, s_fail, r),
                 v->index == 0 ? b->ds->images_path : b->ds->labels_path);
    } else if (v && v->loc.file) {
        snprintf(why, n, "the first non-finite value (%s) is computed by %s at %s:%d:%d",
                 nonfinite_word(nf->value), ir_op_name(v->op), v->loc.file, (int)v->loc.line,
                 (int)v->loc.col);
    } else if (v) {
        snprintf(why, n, "the first non-finite value (%s) is computed by %s",
                 nonfinite_word(nf->value), ir_op_name(v->op));
    } else if (bp->g) {
        snprintf(why, n, "the update made parameter '%s' %s (element %lld)", bp->g->name,
                 nonfinite_word(bp->value), (long long)bp->at);
    } else {
        snprintf(why, n, "the parameters are still finite");
    }
}

/* The step that just ran (step mo->step, batch s_fail of this epoch, which
 * this fit entered at batch s_first) had a NaN or Inf loss. Says why in one line, naming the first non-finite
 * tensor; after a replay the model keeps the weights of the step before. */
static kiln_status nonfinite_loss(kiln_model *mo, const rt_batches *b, int64_t s_first,
                                  int64_t s_fail, float loss, kiln_diag *d) {
    int64_t step = mo->step;
    bad_param bp = nonfinite_param(mo); /* before the replay restores the weights */
    ir_nonfinite nf;
    bool replayed = nonfinite_replay(mo, b, s_first, s_fail, &nf);
    if (replayed) mo->step = step - 1;
    char why[512], keep[64] = "";
    nonfinite_why(why, sizeof why, &nf, &bp, b, s_fail);
    if (replayed)
        snprintf(keep, sizeof keep, "; the model keeps the weights of step %lld",
                 (long long)(step - 1));
    return ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(),
                    "step %lld: the loss is %s: %s%s (use --continue-on-nan to go on)",
                    (long long)step, isnan(loss) ? "NaN" : "infinite", why, keep);
}

/* ------------------------------------------------------------- policy */

/* The checkpoint policy: with a path, save every N steps
 * (checkpoint_every = N > 0, checked after each step) or every N epochs
 * (checkpoint_every = -N, checked at the end of each full epoch). Steps and
 * epochs count the model's whole training, so a resumed run saves where
 * an uninterrupted one would have. */
static kiln_status maybe_save(kiln_model *mo, const kiln_fit_opts *o, bool epoch_end,
                              kiln_diag *d) {
    int64_t every = o->checkpoint_every;
    if (!o->checkpoint_path || !every || rt_dist_rank() != 0) return KILN_OK;
    bool due =
        epoch_end ? every < 0 && mo->epoch % -every == 0 : every > 0 && mo->step % every == 0;
    return due ? kiln_model_save(mo, o->checkpoint_path, d) : KILN_OK;
}

/* ---------------------------------------------------------------- fit */

/* Distributed: every rank starts from rank 0's weights, optimizer state
 * and counters (a --load on rank 0 reaches them all). */
static kiln_status sync_from_rank0(kiln_model *mo, int64_t batch, kiln_diag *d) {
    if (batch < rt_dist_size())
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "distributed: the batch size (%lld) is smaller than the number of ranks "
                        "(%d)",
                        (long long)batch, rt_dist_size());
    kiln_status st = KILN_OK;
    for (int i = 0; i < mo->m->n_globals && !st; i++)
        st = rt_dist_bcast(mo->globals[i], rt_global_bytes(mo->m->globals[i]), d);
    int64_t counters[2] = {mo->step, mo->epoch};
    if (!st) st = rt_dist_bcast(counters, sizeof counters, d);
    mo->step = counters[0];
    mo->epoch = counters[1];
    return st;
}

static kiln_status fit_setup(kiln_model *mo, kiln_dataset *train, const kiln_fit_opts *o,
                             fit_run *r, kiln_diag *d) {
    memset(r, 0, sizeof *r);
    r->o = o;
    if (!mo->train.f)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "the model cannot train: it needs a loss and an optimizer");
    if (!train) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_fit: no dataset");
    const rt_dataset *ds = train->rt;
    kiln_status st = rt_model_check_data(mo, ds, d);
    if (st) return st;
    const ir_train_config *t = &mo->m->train;
    r->epochs = o->epochs > 0 ? o->epochs : t->epochs > 0 ? (int)t->epochs : 1;
    int64_t batch = o->batch_size > 0 ? o->batch_size : t->batch_size > 0 ? t->batch_size : 32;
    int64_t n = ds->n;
    if (n == 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no samples", ds->images_path);
    if (batch > n) batch = n;
    if (mo->distributed && (st = sync_from_rank0(mo, batch, d))) return st;
    if ((st = rt_model_prepare(mo, &mo->train, batch, d))) return st;
    if (!mo->shuffle_ready || mo->shuffle.n != n) {
        rt_shuffle_free(&mo->shuffle);
        uint64_t seed = (uint64_t)(o->shuffle_seed ? o->shuffle_seed : (int64_t)mo->seed);
        if ((st = rt_shuffle_init(&mo->shuffle, n, seed, d))) return st;
        mo->shuffle_ready = true;
        if (mo->shuffle_restored) rt_shuffle_set_state(&mo->shuffle, mo->pending_shuffle);
    }
    mo->shuffle_restored = false;
    r->b = rt_batches_of(ds, batch, o->no_shuffle ? NULL : mo->shuffle.perm);
    /* A run stopped (or saved) inside an epoch goes on at the next batch of
     * the same permutation: the step within the epoch is what the steps of
     * the completed epochs leave. */
    r->first = mo->step - mo->epoch * r->b.steps;
    if (r->first < 0 || r->first >= r->b.steps) r->first = 0;
    r->verbose = o->verbose && rt_dist_rank() == 0; /* rank 0 alone prints */
    r->tty = r->verbose && isatty(fileno(stdout));
    return KILN_OK;
}

/* One optimizer step on the gathered batch s; a non-finite loss ends fit
 * (unless continue_on_nonfinite) with the forensics' message. */
static kiln_status step(kiln_model *mo, fit_run *r, int64_t s, int rows, kiln_diag *d) {
    void *args[2], *results[2] = {&r->la[0], &r->la[1]};
    rt_model_batch_args(mo, args);
    kiln_status st = rt_model_run(mo, &mo->train, rows, args, results, d);
    if (!st && mo->distributed) st = rt_dist_check(d);
    if (st) return st;
    mo->step++;
    r->taken++;
    if (isfinite(r->la[0]) || r->o->continue_on_nonfinite) return KILN_OK;
    if (r->tty) putchar('\n'); /* ends the progress line */
    return nonfinite_loss(mo, &r->b, r->first, s, r->la[0], d);
}

static kiln_status push_history(kiln_model *mo, const kiln_progress *p, kiln_diag *d) {
    if (!IR_GROW(mo->hist, mo->cap_hist, mo->n_hist + 1)) return ir_oom(d);
    mo->hist[mo->n_hist++] = *p;
    return KILN_OK;
}

/* Counts a full epoch, logs it, tells the callback, ends the progress
 * line and maybe saves. */
static kiln_status epoch_end(kiln_model *mo, fit_run *r, kiln_progress *p, double t0,
                             double *last_draw, kiln_diag *d) {
    const kiln_fit_opts *o = r->o;
    p->seconds = rt_now_s() - t0;
    if (r->complete) mo->epoch++;
    kiln_status st = push_history(mo, p, d);
    if (st) return st;
    if (o->callback) o->callback(p, 1, o->user);
    if (r->verbose) rt_progress_show(p, true, r->tty, last_draw);
    return r->stop ? KILN_OK : maybe_save(mo, o, true, d);
}

static kiln_status fit_epoch(kiln_model *mo, fit_run *r, int e, kiln_diag *d) {
    const kiln_fit_opts *o = r->o;
    kiln_status st;
    /* A resumed epoch keeps the permutation the checkpoint restored. */
    if (!o->no_shuffle && (r->first == 0 || !mo->shuffle.st.drawn)) rt_shuffle_next(&mo->shuffle);
    if (!o->continue_on_nonfinite && (st = snapshot(mo, true, d))) return st;
    if (r->verbose && r->tty) printf("Epoch %d/%d\n", e + 1, r->epochs);
    kiln_progress p;
    memset(&p, 0, sizeof p);
    p.epoch = e + 1;
    p.epochs = r->epochs;
    p.steps = r->b.steps;
    p.accuracy = -1;
    double t0 = rt_now_s(), last_draw = 0, sums[2] = {0, 0};
    r->complete = true;
    for (int64_t s = r->first; s < r->b.steps && !r->stop; s++) {
        int rows;
        if ((st = rt_model_gather(mo, &r->b, s, &rows, d))) return st;
        if ((st = step(mo, r, s, rows, d))) return st;
        /* distributed, la is the mean over the whole batch (data-parallel) */
        int all = mo->distributed ? (int)mo->global_rows : rows;
        rt_progress_add(&p, sums, r->la, all, mo->has_accuracy, t0);
        if (o->callback) o->callback(&p, 0, o->user);
        if (r->verbose) rt_progress_show(&p, false, r->tty, &last_draw);
        if ((st = maybe_save(mo, o, false, d))) return st;
        r->stop = o->max_steps > 0 && r->taken >= o->max_steps;
        if (r->stop) r->complete = s + 1 == r->b.steps;
    }
    r->first = 0;
    return epoch_end(mo, r, &p, t0, &last_draw, d);
}

kiln_status kiln_model_fit(kiln_model *mo, kiln_dataset *train, const kiln_fit_opts *o,
                           kiln_diag *d) {
    kiln_fit_opts defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!o) o = &defaults;
    if (o->comm && !mo->distributed)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "kiln_model_fit: a communicator for a model not created for distributed "
                        "training (call kiln_distributed_init before kiln_model_create)");
    /* Distributed over o->comm's ranks for this fit, then the default's. */
    const kiln_comm *was = mo->distributed && o->comm ? rt_dist_use(o->comm) : NULL;
    fit_run r;
    kiln_status st = fit_setup(mo, train, o, &r, d);
    for (int e = 0; !st && e < r.epochs && !r.stop; e++) st = fit_epoch(mo, &r, e, d);
    if (mo->distributed && o->comm) {
        if (!st) st = rt_dist_check(d); /* nothing left in flight on o->comm */
        rt_dist_use(was);
    }
    return st;
}

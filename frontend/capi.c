/*
 * capi.c — the C model-building API: Keras' Sequential, and the compile
 * step that turns a graph-style module (@infer built with the op builders)
 * into a trainable one. The other front end of the same IR: the layers,
 * @loss and the settings come from the expansion the .kiln builder uses
 * (expand.h), so
 *
 *   kiln_sequential *s = kiln_sequential_create("mnist_mlp", 784);
 *   kiln_sequential_dense(s, "h1", 128, KILN_ACT_RELU, d);   ...
 *   kiln_sequential_compile(s, &settings, &m, d);
 *
 * and examples/mnist_mlp.kiln give the same module, node for node.
 *
 * Each entry point builds against a diag of its own (the statuses of the
 * IR builder come from the diag's first error, which must be this call's)
 * and hands the messages on to the caller's. A call either succeeds or
 * leaves the model as it was, except when it runs out of memory half-way
 * through a layer: then the sequential is marked incomplete.
 */
#include "frontend/expand.h"
#include "frontend/lex.h"

#include <stdio.h>
#include <math.h>
#include <string.h>

_Static_assert((int)KILN_OPT_SGD == (int)IR_OPT_SGD && (int)KILN_OPT_ADAM == (int)IR_OPT_ADAM &&
                   (int)KILN_OPT_ADAMW == (int)IR_OPT_ADAMW,
               "kiln_optimizer_kind and ir_opt_kind agree");

/* ------------------------------------------------------------ API calls */

/* One entry point's diag: filled by the call, moved to the caller's. */
typedef struct api_call {
    kiln_diag d;
    kiln_diag *user;
} api_call;

static void call_begin(api_call *c, kiln_diag *user) {
    memset(c, 0, sizeof *c);
    c->user = user;
}

static kiln_status call_end(api_call *c, kiln_status st) {
    fe_diag_move(&c->d, c->user, st, "kiln");
    ir_sb_free(&c->d.text);
    return st;
}

static kiln_status bad_name(kiln_diag *d, const char *fn, const char *what, const char *name) {
    return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                    "%s: '%.80s' is not a valid %s: use letters, digits and '_', not a digit "
                    "first, at most %d bytes",
                    fn, name, what, FE_MAX_NAME);
}

/* ------------------------------------------------------------- settings */

kiln_optimizer kiln_optimizer_defaults(kiln_optimizer_kind kind) {
    ir_optimizer o = ir_optimizer_defaults((ir_opt_kind)kind);
    kiln_optimizer k;
    memset(&k, 0, sizeof k);
    k.kind = kind;
    k.lr = o.lr;
    k.beta_1 = o.beta_1;
    k.beta_2 = o.beta_2;
    k.epsilon = o.epsilon;
    k.weight_decay = o.weight_decay;
    k.momentum = o.momentum;
    k.nesterov = o.nesterov;
    return k;
}

kiln_train_settings kiln_train_settings_defaults(kiln_loss loss) {
    ir_train_config c = ir_train_defaults();
    kiln_train_settings t;
    memset(&t, 0, sizeof t);
    t.loss = loss;
    t.optimizer = kiln_optimizer_defaults((kiln_optimizer_kind)c.opt.kind);
    t.epochs = c.epochs;
    t.batch_size = c.batch_size;
    t.seed = c.seed;
    t.accuracy = c.metric_accuracy;
    return t;
}

/* The settings as the IR keeps them, checked as a train block is. */
static kiln_status train_config(const kiln_train_settings *t, const char *fn, ir_train_config *c,
                                kiln_diag *d) {
    if (!t) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no settings", fn);
    if (!fe_loss_name(t->loss))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: unknown loss %d", fn,
                        (int)t->loss);
    memset(c, 0, sizeof *c);
    c->present = true;
    const kiln_optimizer *o = &t->optimizer;
    c->opt.kind = (ir_opt_kind)o->kind;
    c->opt.lr = o->lr;
    c->opt.beta_1 = o->beta_1;
    c->opt.beta_2 = o->beta_2;
    c->opt.epsilon = o->epsilon;
    c->opt.weight_decay = o->weight_decay;
    c->opt.momentum = o->momentum;
    c->opt.nesterov = o->nesterov != 0;
    c->epochs = t->epochs;
    c->batch_size = t->batch_size;
    c->seed = t->seed;
    c->metric_accuracy = t->accuracy != 0;
    kiln_status st = ir_train_config_check(c, d);
    if (st) ir_note(d, ir_loc_none(), "in the settings given to %s", fn);
    return st;
}

/* ----------------------------------------------------------- graph style */

static kiln_status add_loss(kiln_module *m, kiln_loss loss, const char *label, bool accuracy,
                            const char *fn, kiln_diag *d) {
    int op = fe_loss_op(loss);
    if (op < 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: unknown loss %d", fn, (int)loss);
    if (!label) label = "y";
    if (!fe_is_name(label)) return bad_name(d, fn, "label name", label);
    kiln_func *infer = kiln_module_func(m, "infer");
    if (!infer)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: the module has no function @infer to compute the loss of", fn);
    if (infer->n_results != 1)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: @infer must return one value, the prediction; it returns %d", fn,
                        infer->n_results);
    if (kiln_module_func(m, "loss"))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: the module has a @loss already",
                        fn);
    for (int i = 0; i < infer->n_args; i++)
        if (strcmp(infer->args[i]->name, label) == 0)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: @infer has an input named '%s': give the label another name", fn,
                            label);
    /* The label is what the loss needs: class indices for sparse
     * categorical cross-entropy, else a tensor like the prediction. */
    ir_node *pred = infer->results[0];
    ir_type lt = pred->type;
    if (op == IR_OP_sparse_categorical_crossentropy) {
        lt.dtype = IR_I32;
        lt.rank = lt.rank > 0 ? (int8_t)(lt.rank - 1) : 0;
    }
    ir_builder b;
    ir_builder_init(&b, infer, d);
    kiln_status st =
        fe_loss_func_ir(&b, infer, pred, op, label, &lt, accuracy, ir_loc_none(), ir_loc_none());
    kiln_func *made = kiln_module_func(m, "loss");
    if (st && made) ir_module_remove_func(m, made); /* as it was */
    return st;
}

kiln_status kiln_module_add_loss(kiln_module *m, kiln_loss loss, const char *label, int accuracy,
                                 kiln_diag *d) {
    if (!m) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_add_loss: no module");
    api_call c;
    call_begin(&c, d);
    return call_end(&c, add_loss(m, loss, label, accuracy != 0, "kiln_module_add_loss", &c.d));
}

static kiln_status set_training(kiln_module *m, const kiln_train_settings *t, const char *fn,
                                kiln_diag *d) {
    ir_train_config cfg;
    kiln_status st = train_config(t, fn, &cfg, d);
    if (st) return st;
    kiln_func *lf = kiln_module_func(m, "loss");
    bool added = false;
    if (lf) {
        bool has_acc = lf->n_results >= 2;
        if (has_acc != cfg.metric_accuracy)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: @loss %s the accuracy, but the settings ask for %s", fn,
                            has_acc ? "returns" : "does not return",
                            cfg.metric_accuracy ? "it" : "none");
    } else {
        if ((st = add_loss(m, t->loss, t->label, cfg.metric_accuracy, fn, d))) return st;
        added = true;
    }
    ir_train_config old = m->train;
    m->train = cfg;
    if ((st = ir_verify_module(m, d))) {
        m->train = old;
        if (added) ir_module_remove_func(m, kiln_module_func(m, "loss"));
    }
    return st;
}

kiln_status kiln_module_set_training(kiln_module *m, const kiln_train_settings *t, kiln_diag *d) {
    if (!m)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_set_training: no module");
    api_call c;
    call_begin(&c, d);
    return call_end(&c, set_training(m, t, "kiln_module_set_training", &c.d));
}

kiln_status kiln_module_add_layer(kiln_module *m, const char *name, const char *kind, int rank,
                                  const int64_t *dims, int64_t params, kiln_diag *d) {
    if (!m || !name || !kind || rank < 0 || rank > KILN_MAX_RANK || (rank && !dims) || params < 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_add_layer: bad argument");
    ir_type t = ir_type_make(IR_F32, rank, dims);
    return ir_module_add_layer(m, name, kind, &t, params, d);
}

/* ------------------------------------------------------------ Sequential */

struct kiln_sequential {
    kiln_module *m; /* the model being built; NULL once compile handed it out */
    kiln_func *infer;
    ir_node *top; /* the last layer's output; the input before any layer */
    fe_namer namer;
    kiln_status broken; /* a call failed after it had changed the model ... */
    char why[192];      /* ... or create's arguments were bad: what was wrong */
};

static bool layer_taken(void *ctx, const char *name) {
    const kiln_module *m = ((const kiln_sequential *)ctx)->m;
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i].name, name) == 0) return true;
    return false;
}

/* What is wrong with create's arguments, into why (empty: nothing). */
static void check_input(char *why, size_t n, const char *name, int rank, const int64_t *shape) {
    const char *fn = "kiln_sequential_create";
    if (name && !fe_is_name(name)) {
        snprintf(why, n, "%s: '%.40s' is not a valid model name", fn, name);
        return;
    }
    if (rank < 1 || rank > KILN_MAX_RANK - 1 || !shape) {
        snprintf(why, n, "%s: the input needs 1 to %d dimensions besides the batch, got %d", fn,
                 KILN_MAX_RANK - 1, rank);
        return;
    }
    int64_t total = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 1 || shape[i] >= IR_MAX_DIM) {
            snprintf(why, n, "%s: input dimension %d is %lld; it must be in [1, 2^31)", fn, i + 1,
                     (long long)shape[i]);
            return;
        }
        total *= shape[i];
        if (total > IR_MAX_ELEMS) {
            snprintf(why, n, "%s: an input sample would have more than 2^31 elements", fn);
            return;
        }
    }
}

kiln_sequential *kiln_sequential_create_shape(const char *name, int rank, const int64_t *shape) {
    kiln_sequential *s = ir_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->namer.taken = layer_taken;
    s->namer.ctx = s;
    s->m = kiln_module_create(name ? name : "model");
    if (!s->m) {
        ir_free(s);
        return NULL;
    }
    check_input(s->why, sizeof s->why, name, rank, shape);
    if (s->why[0]) {
        s->broken = KILN_ERR_INVALID; /* reported by the first call with a diag */
        return s;
    }
    int64_t dims[KILN_MAX_RANK] = {KILN_BATCH};
    memcpy(dims + 1, shape, sizeof *dims * (size_t)rank);
    ir_type t = ir_type_make(IR_F32, rank + 1, dims);
    s->infer = kiln_func_create(s->m, "infer");
    s->top = s->infer ? ir_func_add_arg(s->infer, "x", &t, NULL) : NULL;
    if (!s->top) { /* nothing else can fail here */
        kiln_sequential_dispose(s);
        return NULL;
    }
    return s;
}

kiln_sequential *kiln_sequential_create(const char *name, int64_t input_dim) {
    return kiln_sequential_create_shape(name, 1, &input_dim);
}

void kiln_sequential_dispose(kiln_sequential *s) {
    if (!s) return;
    kiln_module_dispose(s->m);
    ir_free(s);
}

/* Whether s can take another call. */
static kiln_status usable(const kiln_sequential *s, const char *fn, kiln_diag *d) {
    if (!s) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no model", fn);
    if (s->why[0]) return ir_error(d, s->broken, ir_loc_none(), "%s", s->why);
    if (s->broken)
        return ir_error(d, s->broken, ir_loc_none(),
                        "%s: the model is incomplete: an earlier call failed (%s)", fn,
                        kiln_status_string(s->broken));
    if (!s->m)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: the model is compiled already; start a new one", fn);
    return KILN_OK;
}

/* The layer's name into buf (FE_MAX_NAME + 1 bytes): the caller's, checked,
 * or Keras' automatic one. */
static kiln_status layer_name(kiln_sequential *s, const char *fn, const char *name,
                              fe_layer_kind kind, char *buf, kiln_diag *d) {
    if (!name) {
        fe_auto_name(&s->namer, kind, buf);
        return KILN_OK;
    }
    if (!fe_is_name(name)) return bad_name(d, fn, "layer name", name);
    if (layer_taken(s, name))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: there is already a layer named '%s'", fn, name);
    snprintf(buf, FE_MAX_NAME + 1, "%s", name);
    return KILN_OK;
}

/* A layer and its arguments. */
typedef struct layer_args {
    fe_layer_kind kind;
    int64_t units;           /* dense; conv2d: filters */
    kiln_activation act;     /* dense, activation, conv2d */
    int64_t window, strides; /* conv2d: kernel_size; pools: pool_size */
    bool same;               /* padding */
    double rate;             /* dropout */
    fe_batch_norm bn;        /* batch normalization */
} layer_args;

static kiln_status image_layer(ir_builder *b, const char *nm, ir_node *x, const layer_args *a,
                               ir_node **y) {
    int64_t win[2] = {a->window, a->window}, str[2] = {a->strides, a->strides};
    if (a->kind == FE_CONV2D) {
        fe_conv2d cv = fe_conv2d_defaults(a->units, a->window, a->window);
        cv.act = a->act;
        cv.sh = cv.sw = a->strides;
        cv.same = a->same;
        return fe_conv2d_ir(b, nm, x, &cv, y);
    }
    if (a->kind == FE_MAX_POOL2D || a->kind == FE_AVG_POOL2D)
        return fe_pool2d_ir(b, nm, a->kind, x, win, str, a->same, y);
    return fe_global_pool_ir(b, nm, a->kind, x, y);
}

/* Checks the arguments (a bad one changes nothing), then expands the layer
 * on the model's last output. */
static kiln_status add_layer(kiln_sequential *s, const char *fn, const char *name,
                             const layer_args *a, kiln_diag *d) {
    kiln_status st = usable(s, fn, d);
    if (st) return st;
    if ((unsigned)a->act >= KILN_ACT_COUNT)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: unknown activation %d", fn,
                        (int)a->act);
    if ((a->kind == FE_DENSE || a->kind == FE_CONV2D) && (a->units < 1 || a->units >= IR_MAX_DIM))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: '%s' must be between 1 and %lld, got %lld", fn,
                        a->kind == FE_DENSE ? "units" : "filters", (long long)(IR_MAX_DIM - 1),
                        (long long)a->units);
    bool windowed = a->kind == FE_CONV2D || a->kind == FE_MAX_POOL2D || a->kind == FE_AVG_POOL2D;
    if (windowed && (a->window < 1 || a->window > (1 << 20) || a->strides < 1 ||
                     a->strides > (1 << 20)))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: the window and strides must be between 1 and 1048576, got %lld and "
                        "%lld",
                        fn, (long long)a->window, (long long)a->strides);
    if (a->kind == FE_DROPOUT && !(a->rate >= 0 && a->rate < 1))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: 'rate' must be in [0, 1), got %g",
                        fn, a->rate);
    if (a->kind == FE_BATCH_NORM && !(a->bn.momentum >= 0 && a->bn.momentum <= 1 &&
                                      a->bn.epsilon > 0 && a->bn.epsilon < 1e30))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: momentum must be in [0, 1] and epsilon > 0, got %g and %g", fn,
                        a->bn.momentum, a->bn.epsilon);
    char nm[FE_MAX_NAME + 1];
    if ((st = layer_name(s, fn, name, a->kind, nm, d))) return st;
    api_call c;
    call_begin(&c, d);
    ir_builder b;
    ir_builder_init(&b, s->infer, &c.d);
    int globals = s->m->n_globals, nodes = s->infer->n_nodes, layers = s->m->n_layers;
    ir_node *y = NULL;
    fe_dense dense = fe_dense_defaults(a->units);
    dense.act = a->act;
    switch (a->kind) {
    case FE_DENSE:
        st = fe_dense_ir(&b, nm, s->top, &dense, &y);
        break;
    case FE_ACTIVATION:
        st = fe_activation_ir(&b, nm, s->top, a->act, FE_ALPHA_DEFAULT, -1, &y);
        break;
    case FE_CONV2D:
    case FE_MAX_POOL2D:
    case FE_AVG_POOL2D:
    case FE_GLOBAL_AVG_POOL2D:
    case FE_GLOBAL_MAX_POOL2D:
        st = image_layer(&b, nm, s->top, a, &y);
        break;
    case FE_DROPOUT:
        st = fe_dropout_ir(&b, nm, s->top, a->rate, &y);
        break;
    case FE_BATCH_NORM:
        st = fe_batch_norm_ir(&b, nm, s->top, &a->bn, &y);
        break;
    default:
        st = fe_flatten_ir(&b, nm, s->top, &y);
        break;
    }
    if (!st) {
        s->top = y;
    } else {
        if (st != KILN_ERR_NOMEM) ir_note(&c.d, ir_loc_none(), "in layer '%s' (%s)", nm, fn);
        if (s->m->n_globals != globals || s->infer->n_nodes != nodes || s->m->n_layers != layers)
            s->broken = st;
    }
    return call_end(&c, st);
}

kiln_status kiln_sequential_dense(kiln_sequential *s, const char *name, int64_t units,
                                  kiln_activation act, kiln_diag *d) {
    layer_args a = {.kind = FE_DENSE, .units = units, .act = act};
    return add_layer(s, "kiln_sequential_dense", name, &a, d);
}

kiln_status kiln_sequential_activation(kiln_sequential *s, const char *name, kiln_activation act,
                                       kiln_diag *d) {
    layer_args a = {.kind = FE_ACTIVATION, .act = act};
    return add_layer(s, "kiln_sequential_activation", name, &a, d);
}

kiln_status kiln_sequential_flatten(kiln_sequential *s, const char *name, kiln_diag *d) {
    layer_args a = {.kind = FE_FLATTEN, .act = KILN_ACT_NONE};
    return add_layer(s, "kiln_sequential_flatten", name, &a, d);
}

kiln_status kiln_sequential_conv2d(kiln_sequential *s, const char *name, int64_t filters,
                                   int64_t kernel_size, int64_t strides, kiln_padding padding,
                                   kiln_activation act, kiln_diag *d) {
    layer_args a = {.kind = FE_CONV2D, .units = filters, .act = act, .window = kernel_size,
                    .strides = strides, .same = padding == KILN_PADDING_SAME};
    return add_layer(s, "kiln_sequential_conv2d", name, &a, d);
}

static kiln_status pool(kiln_sequential *s, const char *fn, fe_layer_kind kind, const char *name,
                        int64_t pool_size, int64_t strides, kiln_padding padding, kiln_diag *d) {
    layer_args a = {.kind = kind, .act = KILN_ACT_NONE, .window = pool_size,
                    .strides = strides ? strides : pool_size, .same = padding == KILN_PADDING_SAME};
    return add_layer(s, fn, name, &a, d);
}

kiln_status kiln_sequential_max_pooling2d(kiln_sequential *s, const char *name, int64_t pool_size,
                                          int64_t strides, kiln_padding padding, kiln_diag *d) {
    return pool(s, "kiln_sequential_max_pooling2d", FE_MAX_POOL2D, name, pool_size, strides,
                padding, d);
}

kiln_status kiln_sequential_average_pooling2d(kiln_sequential *s, const char *name,
                                              int64_t pool_size, int64_t strides,
                                              kiln_padding padding, kiln_diag *d) {
    return pool(s, "kiln_sequential_average_pooling2d", FE_AVG_POOL2D, name, pool_size, strides,
                padding, d);
}

kiln_status kiln_sequential_global_average_pooling2d(kiln_sequential *s, const char *name,
                                                     kiln_diag *d) {
    layer_args a = {.kind = FE_GLOBAL_AVG_POOL2D, .act = KILN_ACT_NONE, .window = 1, .strides = 1};
    return add_layer(s, "kiln_sequential_global_average_pooling2d", name, &a, d);
}

kiln_status kiln_sequential_global_max_pooling2d(kiln_sequential *s, const char *name,
                                                 kiln_diag *d) {
    layer_args a = {.kind = FE_GLOBAL_MAX_POOL2D, .act = KILN_ACT_NONE, .window = 1, .strides = 1};
    return add_layer(s, "kiln_sequential_global_max_pooling2d", name, &a, d);
}

kiln_status kiln_sequential_dropout(kiln_sequential *s, const char *name, double rate,
                                    kiln_diag *d) {
    layer_args a = {.kind = FE_DROPOUT, .act = KILN_ACT_NONE, .rate = rate};
    return add_layer(s, "kiln_sequential_dropout", name, &a, d);
}

kiln_status kiln_sequential_batch_normalization(kiln_sequential *s, const char *name,
                                                double momentum, double epsilon, kiln_diag *d) {
    layer_args a = {.kind = FE_BATCH_NORM,
                    .act = KILN_ACT_NONE,
                    .bn = {momentum < 0 ? 0.99 : momentum, epsilon < 0 ? 0.001 : epsilon, true, true}};
    return add_layer(s, "kiln_sequential_batch_normalization", name, &a, d);
}

kiln_status kiln_sequential_set_trainable(kiln_sequential *s, const char *layer, int trainable,
                                          kiln_diag *d) {
    const char *fn = "kiln_sequential_set_trainable";
    kiln_status st = usable(s, fn, d);
    if (st) return st;
    if (!layer) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no layer name", fn);
    if (!layer_taken(s, layer)) {
        const kiln_module *m = s->m;
        const char **names = ir_malloc(sizeof *names * (size_t)(m->n_layers + 1));
        if (!names) return ir_oom(d);
        for (int i = 0; i < m->n_layers; i++) names[i] = m->layers[i].name;
        char sug[FE_MAX_NAME + 32];
        st = ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no layer named '%.80s'%s", fn, layer,
                      fe_did_you_mean(layer, names, m->n_layers, sug, sizeof sug));
        ir_free(names);
        return st;
    }
    /* A layer's parameters are <layer>.<weight>. */
    size_t len = strlen(layer);
    for (int i = 0; i < s->m->n_globals; i++) {
        ir_global *g = s->m->globals[i];
        /* A batch normalization's moving statistics are never trained. */
        if (g->kind == IR_GLOBAL_PARAM && strncmp(g->name, layer, len) == 0 &&
            g->name[len] == '.' && strncmp(g->name + len + 1, "moving_", 7) != 0)
            g->trainable = trainable != 0;
    }
    return KILN_OK;
}

kiln_status kiln_sequential_compile(kiln_sequential *s, const kiln_train_settings *t,
                                    kiln_module **out, kiln_diag *d) {
    const char *fn = "kiln_sequential_compile";
    if (out) *out = NULL;
    kiln_status st = usable(s, fn, d);
    if (st) return st;
    if (!out)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no place for the module", fn);
    if (s->m->n_layers == 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: the model has no layers; add some first, e.g. with "
                        "kiln_sequential_dense()",
                        fn);
    api_call c;
    call_begin(&c, d);
    st = ir_func_add_result(s->infer, s->top, &c.d);
    if (!st) st = t ? set_training(s->m, t, fn, &c.d) : ir_verify_module(s->m, &c.d);
    if (st) {
        s->infer->n_results = 0; /* as it was: the call can be made again */
        return call_end(&c, st);
    }
    *out = s->m;
    s->m = NULL;
    s->infer = NULL;
    s->top = NULL;
    return call_end(&c, KILN_OK);
}

/*
 * settings.h — the one table of train-block settings and optimizer
 * hyperparameters (ir/settings.def): lookup by name, defaults, range checks
 * and their messages. The .kiln parser (frontend/train.c), the .kir parser
 * (ir/kir_train.c) and the C API (frontend/capi.c) use nothing else, so the
 * three accept the same values and refuse the others with the same words:
 *
 *     'lr' must be positive, got 0
 *     'epochs' must be between 1 and 2147483647, got 0
 *
 * Each caller adds its own place (file:line:col, or the optimizer's name
 * and the API function for the C API).
 */
#ifndef KILN_IR_SETTINGS_H
#define KILN_IR_SETTINGS_H

#include "ir/ir.h"

typedef enum ir_setting_kind {
    IR_SK_INT,
    IR_SK_FLOAT,
    IR_SK_BOOL,
    IR_SK_OPTIMIZER, /* the 'optimizer' key: NAME [args] */
    IR_SK_METRICS    /* the 'metrics' key: [NAME, ...] */
} ir_setting_kind;

/* Value ranges of FLOAT settings (and of the frontend's other numbers). */
typedef enum ir_range {
    IR_R_ANY,
    IR_R_POSITIVE,    /* > 0 */
    IR_R_NONNEGATIVE, /* >= 0 */
    IR_R_UNIT_OPEN,   /* [0, 1) */
    IR_R_UNIT         /* [0, 1] */
} ir_range;

typedef enum ir_setting_id {
#define TRAIN(id, ...) IR_SET_##id,
#define OPT(id, ...)   IR_SET_##id,
#include "ir/settings.def"
#undef TRAIN
#undef OPT
    IR_SET_COUNT
} ir_setting_id;

typedef struct ir_setting {
    const char *name;
    const char *keras; /* Keras' name when it differs, accepted too; or NULL */
    ir_setting_kind kind;
    bool train;       /* a key of the train block (else an optimizer argument) */
    ir_range range;   /* FLOAT */
    int64_t lo, hi;   /* INT: the values allowed */
    int64_t idefault; /* INT */
    double def[4];    /* optimizer arguments: the default per ir_opt_kind; NAN: not one */
    size_t off;       /* in ir_train_config (train) or ir_optimizer */
} ir_setting;

const ir_setting *ir_setting_get(ir_setting_id id);

/* Is setting `id` an argument of optimizer `kind`? */
bool ir_setting_of(ir_setting_id id, ir_opt_kind kind);

/* The setting called name[0..len) (or by its Keras name): a key of the
 * train block when `scope` is IR_OPT_NONE, else an argument of that
 * optimizer. -1 if there is none. */
int ir_setting_find(ir_opt_kind scope, const char *name, size_t len);

/* The names of the settings in `scope` (as above), in Keras' positional
 * order: up to `max` of them into names (ids into ids, if not NULL).
 * Returns how many there are. */
int ir_setting_names(ir_opt_kind scope, const char **names, ir_setting_id *ids, int max);

/* The optimizer called name[0..len), or IR_OPT_NONE. */
ir_opt_kind ir_optimizer_find(const char *name, size_t len);
/* All optimizer names, for suggestions; returns how many (at most max). */
int ir_optimizer_names(const char **names, int max);

/* The metric called name[0..len) ("accuracy", Keras' "acc"): 0, or -1. */
int ir_metric_find(const char *name, size_t len);
extern const char *const ir_metric_names[1];

/* What v lacks to be in range r ("positive", "in [0, 1)"), or NULL. */
const char *ir_range_need(ir_range r, double v);

/* Range checks: NULL when v is allowed, else the message, written into
 * buf ("'lr' must be positive, got 0"; "'units' must be between 1 and
 * 2147483647, got 0"). The first two serve any named number (the
 * frontend's layer arguments too); the others take the table's row. */
const char *ir_check_float(const char *name, ir_range r, double v, char *buf, size_t n);
const char *ir_check_int(const char *name, int64_t lo, int64_t hi, int64_t v, char *buf, size_t n);
const char *ir_setting_check_float(ir_setting_id id, double v, char *buf, size_t n);
const char *ir_setting_check_int(ir_setting_id id, int64_t v, char *buf, size_t n);

/* Where the value of setting `id` lives. */
double *ir_setting_float(ir_optimizer *o, ir_setting_id id);
bool *ir_setting_bool(ir_optimizer *o, ir_setting_id id);
int64_t *ir_setting_int(ir_train_config *c, ir_setting_id id);

/* Keras' compile() and fit() defaults: Adam (lr 0.001, beta_1 0.9, beta_2
 * 0.999, epsilon 1e-7), 1 epoch, batch size 32, no seed, no metric. */
ir_train_config ir_train_defaults(void);

/* Checks a whole config that did not come from text (the C API): the
 * optimizer's kind and values, then the integer settings, in table order.
 * The message names the optimizer before an argument's message ("adam:
 * 'beta_1' must be in [0, 1), got 1"). */
kiln_status ir_train_config_check(const ir_train_config *c, kiln_diag *d);

#endif

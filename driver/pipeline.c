/* pipeline.c — which passes a module gets: the one rule (drv_pipeline). */
#include "driver/driver.h"

static bool can_train(const kiln_module *m) {
    return kiln_module_func(m, "loss") && m->train.present && m->train.opt.kind != IR_OPT_NONE;
}

kiln_status drv_pipeline(const kiln_module *m, drv_goal goal, const char **out, kiln_diag *d) {
    *out = "";
    if (kiln_module_func(m, "train_step")) return KILN_OK;
    bool dist = goal == DRV_GOAL_TRAIN_DISTRIBUTED;
    if ((goal == DRV_GOAL_TRAIN || dist) && !can_train(m))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "%s: --train needs a model with a loss and an optimizer (a train block)",
                        m->name);
    bool train = goal == DRV_GOAL_TRAIN || (goal == DRV_GOAL_AUTO && can_train(m));
    *out = dist ? "train-distributed" : train ? "train" : "infer";
    return KILN_OK;
}

const char *kiln_module_default_pipeline(const kiln_module *m) {
    const char *p = NULL;
    if (!m || drv_pipeline(m, DRV_GOAL_AUTO, &p, NULL)) return NULL;
    return p;
}

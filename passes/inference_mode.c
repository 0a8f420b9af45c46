/*
 * inference_mode.c — the pass inference-mode: every function but
 * @train_step computes the model as it runs after training. Dropout is the
 * identity there (Keras' training=False), batch normalization uses its
 * moving statistics (training cleared), and each dropout node is replaced
 * by its input:
 *
 *   %3 = dropout(%2, %0) {rate=0.5, seed=0, node=2} : f32[?,128]
 *   %4 = matmul(%3, @dense_1.kernel) : f32[?,10]
 * becomes
 *   %4 = matmul(%2, @dense_1.kernel) : f32[?,10]
 *
 * In the train pipeline it runs after autodiff and optimizer, so
 * @train_step (cloned from @loss) keeps its dropout while @loss and @infer
 * lose theirs; in the infer pipeline it runs first.
 */
#include "passes/pass.h"

#include <string.h>

static kiln_status func_mode(kiln_func *f, kiln_diag *d) {
    (void)d;
    if (strcmp(f->name, "train_step") == 0) return KILN_OK;
    int removed = 0;
    for (int i = 0; i < f->n_nodes; i++) f->nodes[i]->aux = 0;
    for (int i = 0; i < f->n_nodes; i++) {
        ir_node *n = f->nodes[i];
        if (n->op == IR_OP_batch_norm && ir_attr_i(n, "training")) {
            ir_attrs_set_i(&n->attrs, "training", 0); /* the moving statistics */
            continue;
        }
        if (n->op != IR_OP_dropout) continue;
        ir_func_replace_uses(f, n, n->in[0]);
        n->aux = 1;
        removed++;
    }
    if (removed) {
        ir_func_remove_marked(f);
        ir_func_unplan(f);
    }
    return KILN_OK;
}

kiln_status pass_inference_mode(kiln_module *m, kiln_diag *d) {
    return pass_each_func(m, func_mode, d);
}

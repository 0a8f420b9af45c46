/*
 * grad.h — gradient rules, the `grad` column of ir/ops.def.
 *
 * A rule builds, with the builder b (positioned at the end of train_step),
 * the gradient of the loss with respect to each operand of n that needs one:
 *   n       the forward node (its operands are forward values in train_step)
 *   dy      the gradient with respect to n's result (n's type)
 *   need[k] whether operand k needs a gradient
 *   dx[k]   out: the gradient for operand k, of operand k's exact type, or
 *           NULL when it is zero. Rules never write dx[k] when !need[k].
 * Rules build IR from ops of the table; nothing is computed here. The
 * autodiff pass checks every dx[k]'s type against operand k's after the rule.
 */
#ifndef KILN_PASSES_GRAD_H
#define KILN_PASSES_GRAD_H

#include "ir/ir.h"

typedef kiln_status (*pass_grad_fn)(ir_builder *b, ir_node *n, ir_node *dy, const bool *need,
                                    ir_node **dx);

/* The rule for an opcode, or NULL for ops marked NOGRAD in ops.def. */
pass_grad_fn pass_grad_rule(int opcode);

/* Rules are defined in passes/grad_rules.c, which builds the table from the
 * grad column of ops.def (NOGRAD rows map to NULL). */

/* Rules of the batch normalization and dropout rows (passes/grad_norm.c). */
kiln_status grad_batch_norm(ir_builder *b, ir_node *n, ir_node *dy, const bool *need,
                            ir_node **dx);
kiln_status grad_dropout(ir_builder *b, ir_node *n, ir_node *dy, const bool *need, ir_node **dx);

/* The batch's mean and biased variance per channel (last axis) as IR. */
kiln_status pass_bn_stats(ir_builder *b, ir_node *x, ir_node **mean, ir_node **var);

/* The autodiff pass with another rule table (pass_autodiff uses
 * pass_grad_rule); tests substitute one to reach the pass's error paths. */
kiln_status pass_autodiff_rules(kiln_module *m, pass_grad_fn (*rule_of)(int), kiln_diag *d);
#endif

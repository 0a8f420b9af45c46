/*
 * lower_dist.c — allreduce_mean and allreduce_wait: calls into the
 * allreduce shim (ir/collective.h), which the JIT resolves to this
 * library's kiln_allreduce_mean_f32 / kiln_allreduce_wait_f32 (jit.c), as
 * it does cblas_sgemm. A failure is sticky in the shim; the runtime checks
 * it after every step.
 */
#include "codegen/lower.h"

#include "ir/collective.h"

/* A call of the shim's `name`(in, out, n[, mode]). */
static void call_shim(cg_ctx *c, const char *name, const ir_node *n, LLVMValueRef out,
                      LLVMValueRef in, int mode) {
    LLVMTypeRef p = LLVMPointerType(c->t_f32, 0);
    LLVMTypeRef params[4] = {p, p, c->t_i64, c->t_i32};
    unsigned n_args = mode < 0 ? 3 : 4;
    LLVMTypeRef fty = LLVMFunctionType(c->t_i32, params, n_args, 0);
    LLVMValueRef args[4] = {cg_cast_ptr(c, in, c->t_f32), cg_cast_ptr(c, out, c->t_f32),
                            cg_numel(c, &n->type), cg_i32(c, mode)};
    cg_call_runtime(c, name, fty, args, n_args);
}

kiln_status lower_allreduce_mean(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                 const LLVMValueRef *in) {
    int mode = !ir_attr_i(n, "flush") ? KILN_ALLREDUCE_JOIN
               : ir_attr_i(n, "wait") ? KILN_ALLREDUCE_REDUCE
                                      : KILN_ALLREDUCE_START;
    call_shim(c, "kiln_allreduce_mean_f32", n, out, in[0], mode);
    return KILN_OK;
}

kiln_status lower_allreduce_wait(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                 const LLVMValueRef *in) {
    call_shim(c, "kiln_allreduce_wait_f32", n, out, in[0], -1);
    return KILN_OK;
}

/*
 * lower_dist.c — allreduce_mean: a call into the allreduce shim
 * (ir/collective.h), which the JIT resolves to this library's
 * kiln_allreduce_mean_f32 (jit.c), as it does cblas_sgemm. A failure is
 * sticky in the shim; the runtime checks it after every step.
 */
#include "codegen/lower.h"

kiln_status lower_allreduce_mean(cg_ctx *c, const ir_node *n, LLVMValueRef out,
                                 const LLVMValueRef *in) {
    LLVMTypeRef p = LLVMPointerType(c->t_f32, 0);
    LLVMTypeRef params[4] = {p, p, c->t_i64, c->t_i32};
    LLVMTypeRef fty = LLVMFunctionType(c->t_i32, params, 4, 0);
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, "kiln_allreduce_mean_f32");
    if (!f) f = LLVMAddFunction(c->mod, "kiln_allreduce_mean_f32", fty);
    LLVMValueRef args[4] = {cg_cast_ptr(c, in[0], c->t_f32), cg_cast_ptr(c, out, c->t_f32),
                            cg_numel(c, &n->type), cg_i32(c, (int)ir_attr_i(n, "flush"))};
    LLVMBuildCall2(c->b, fty, f, args, 4, "");
    return KILN_OK;
}

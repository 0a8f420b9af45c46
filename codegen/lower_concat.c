/*
 * lower_concat.c — pad: the output walked in order, each element the input's
 * at the position shifted back by `before` when that lies inside the input,
 * else `value` (mode constant), or the position mapped inside: clamped
 * (edge) or mirrored (reflect). A negative count crops. Concat of run-time
 * tensors is a sum of pads (frontend/onnx_ops.c), so this is its lowering
 * too.
 */
#include "codegen/lower.h"

kiln_status lower_pad(cg_ctx *c, const ir_node *n, LLVMValueRef out, const LLVMValueRef *in) {
    const ir_type *x = &n->in[0]->type;
    int r = x->rank;
    LLVMTypeRef et = cg_elem_type(c, x->dtype);
    LLVMValueRef xp = cg_cast_ptr(c, in[0], et), yp = cg_cast_ptr(c, out, et);
    LLVMValueRef xstride[KILN_MAX_RANK];
    cg_row_major_strides(c, x, xstride);
    const int64_t *bf, *af;
    ir_attr_ints(n, "before", &bf);
    ir_attr_ints(n, "after", &af);
    double v = ir_attr_f(n, "value");
    int64_t mode = ir_attr_i(n, "mode"); /* 0 constant, 1 reflect, 2 edge */
    LLVMValueRef fill = x->dtype == IR_F32 ? cg_fc(c, et, v) : cg_ic(c, et, (long long)v);
    cg_loop loops[KILN_MAX_RANK];
    LLVMValueRef xo = cg_i64(c, 0), yo = cg_i64(c, 0), inside = NULL;
    for (int a = 0; a < r; a++) {
        LLVMValueRef od = cg_dim(c, n->type.dims[a]);
        LLVMValueRef i = cg_loop_begin(c, &loops[a], cg_i64(c, 0), od, 1);
        LLVMValueRef p = LLVMBuildSub(c->b, i, cg_i64(c, bf[a]), "");
        if (mode && (bf[a] > 0 || af[a] > 0)) { /* p mapped inside */
            LLVMValueRef zero = cg_i64(c, 0), last = cg_i64(c, x->dims[a] - 1);
            LLVMValueRef lo = LLVMBuildICmp(c->b, LLVMIntSLT, p, zero, "");
            LLVMValueRef hi = LLVMBuildICmp(c->b, LLVMIntSGT, p, last, "");
            LLVMValueRef below = mode == 1 ? LLVMBuildNeg(c->b, p, "") : zero;
            LLVMValueRef above =
                mode == 1 ? LLVMBuildSub(c->b, cg_i64(c, 2 * (x->dims[a] - 1)), p, "") : last;
            p = LLVMBuildSelect(c->b, lo, below, LLVMBuildSelect(c->b, hi, above, p, ""), "");
        } else if (bf[a] || af[a]) { /* 0 <= p < dim, as one unsigned compare */
            LLVMValueRef ok = LLVMBuildICmp(c->b, LLVMIntULT, p, cg_dim(c, x->dims[a]), "");
            inside = inside ? LLVMBuildAnd(c->b, inside, ok, "") : ok;
        }
        xo = LLVMBuildAdd(c->b, xo, LLVMBuildMul(c->b, p, xstride[a], ""), "");
        yo = LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, yo, od, ""), i, "");
    }
    LLVMValueRef val;
    if (inside) { /* the load stays in bounds: element 0 when outside */
        LLVMValueRef at = LLVMBuildSelect(c->b, inside, xo, cg_i64(c, 0), "");
        val = LLVMBuildSelect(c->b, inside, cg_load(c, et, xp, at), fill, "");
    } else {
        val = cg_load(c, et, xp, xo);
    }
    cg_store(c, val, yp, yo);
    for (int a = r - 1; a >= 0; a--) cg_loop_end(c, &loops[a], NULL);
    return KILN_OK;
}

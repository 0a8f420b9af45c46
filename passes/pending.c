/* pending.c — TEMPORARY during parallel development: a pass whose file does
 * not exist yet reports "not implemented". Deleted once every pass landed. */
#include "passes/pass.h"

#define PENDING(file, fn)                                                                          \
    kiln_status fn(kiln_module *m, kiln_diag *d) {                                                 \
        (void)m;                                                                                   \
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(), "%s: not implemented yet", #fn);   \
    }
#if !__has_include("fuse_dense_act.c")
PENDING(fuse_dense_act, pass_fuse_dense_act)
#endif
#if !__has_include("fuse_softmax_ce.c")
PENDING(fuse_softmax_ce, pass_fuse_softmax_ce)
#endif
#if !__has_include("autodiff.c")
PENDING(autodiff, pass_autodiff)
#endif
#if !__has_include("optimizer.c")
PENDING(optimizer, pass_optimizer)
#endif
#if !__has_include("constant_fold.c")
PENDING(constant_fold, pass_constant_fold)
#endif
#if !__has_include("cse.c")
PENDING(cse, pass_cse)
#endif
#if !__has_include("dce.c")
PENDING(dce, pass_dce)
#endif
#if !__has_include("fuse_elementwise.c")
PENDING(fuse_elementwise, pass_fuse_elementwise)
#endif
#if !__has_include("plan_memory.c")
PENDING(plan_memory, pass_plan_memory)
#endif

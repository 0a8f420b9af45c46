/* api.c — public entry points that sit on top of code generation. */
#include <string.h>

#include "codegen/cg.h"

kiln_status kiln_module_emit(kiln_module *m, const char *function, kiln_emit_kind kind, char **out,
                             kiln_diag *d) {
    *out = NULL;
    if (!m) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_module_emit: no module");
    if (function && !kiln_module_func(m, function))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "the module has no function '%s'",
                        function);
    cg_options o;
    memset(&o, 0, sizeof o);
    ir_sb sb;
    ir_sb_init(&sb);
    kiln_status st =
        cg_dump(m, function, kind == KILN_EMIT_ASM ? CG_EMIT_ASM : CG_EMIT_LLVM, &o, &sb, d);
    if (st) {
        ir_sb_free(&sb);
        return st;
    }
    *out = ir_sb_take(&sb);
    return *out ? KILN_OK : ir_oom(d);
}

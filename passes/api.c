/* api.c — the public face of the pass layer (kiln.h). */
#include "passes/pass.h"

#include <string.h>

kiln_status kiln_module_run_passes(kiln_module *m, const char *pipeline, const kiln_pass_opts *o,
                                   kiln_diag *d) {
    if (!m || !pipeline) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no pipeline given");
    pass_opts po;
    memset(&po, 0, sizeof po);
    if (o) {
        po.print_after_all = o->print_after_all != 0;
        po.print_after = o->print_after;
        po.dump_dir = o->dump_dir;
        po.format = o->dot ? PASS_FMT_DOT : PASS_FMT_TEXT;
        po.only_func = o->function;
        po.out = o->out;
    }
    return pass_run_pipeline(m, pipeline, &po, d);
}

const char *kiln_pipeline_passes(const char *name) { return pass_pipeline_named(name); }

void kiln_list_passes(FILE *out) {
    for (int i = 0; i < pass_count(); i++)
        fprintf(out, "  %-18s %s\n", pass_at(i)->name, pass_at(i)->summary);
    fprintf(out, "default pipelines:\n  %-18s %s\n  %-18s %s\n", "infer",
            pass_pipeline_named("infer"), "train", pass_pipeline_named("train"));
}

char *kiln_module_print_ex(const kiln_module *m, const char *function, int dot) {
    ir_sb sb;
    ir_sb_init(&sb);
    if (dot) {
        if (function && !kiln_module_func(m, function)) return NULL;
        ir_print_dot(&sb, m, function);
    } else if (function) {
        const kiln_func *f = kiln_module_func(m, function);
        if (!f) return NULL;
        ir_print_module_header(&sb, m);
        ir_sb_putc(&sb, '\n');
        ir_print_func(&sb, f, NULL);
    } else {
        ir_print_module(&sb, m, NULL);
    }
    return ir_sb_take(&sb);
}

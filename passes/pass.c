/* pass.c — the pass registry, default pipelines and the pipeline runner. */
#include "passes/pass.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const pass_info g_passes[] = {
    {"verify", pass_verify, "check the module (types, operands, order)"},
    {"fuse-dense-act", pass_fuse_dense_act,
     "matmul -> add(bias) -> activation becomes one dense node"},
    {"fuse-conv-act", pass_fuse_conv_act,
     "conv2d -> add(bias) -> activation becomes one conv2d node (an epilogue)"},
    {"fuse-softmax-ce", pass_fuse_softmax_ce,
     "softmax -> cross-entropy (and log_softmax -> nll) becomes softmax_cross_entropy"},
    {"autodiff", pass_autodiff, "write train_step: the loss and its parameter gradients"},
    {"data-parallel", pass_data_parallel,
     "average train_step's loss, metrics and gradients over the ranks (allreduce_mean)"},
    {"optimizer", pass_optimizer, "turn train_step's gradients into parameter updates"},
    {"inference-mode", pass_inference_mode,
     "functions other than train_step run as inference: dropout removed"},
    {"fold-batch-norm", pass_fold_batch_norm,
     "batch normalization on moving statistics folded into the preceding dense's weights"},
    {"constant-fold", pass_constant_fold, "fold constants and simplify algebraic identities"},
    {"cse", pass_cse, "merge identical nodes"},
    {"dce", pass_dce, "remove nodes whose values are never used"},
    {"fuse-matmul-mask", pass_fuse_matmul_mask,
     "select(greater(h, 0), matmul, 0) (relu's derivative) becomes matmul_mask: applied at "
     "the GEMM's store"},
    {"fuse-elementwise", pass_fuse_elementwise,
     "group elementwise and broadcast trees into fused regions"},
    {"plan-memory", pass_plan_memory, "assign value buffers in one workspace arena"},
};

static const struct {
    const char *name, *passes;
} g_pipelines[] = {
    /* dce before fuse-elementwise, so no region is built around dead code;
     * constant-fold before fuse-softmax-ce, so argmax(softmax(z)) (accuracy)
     * becomes argmax(z) and the softmax's only user is the loss. */
    {"infer", "inference-mode,fuse-dense-act,fold-batch-norm,fuse-conv-act,constant-fold,cse,dce,"
              "fuse-elementwise,plan-memory"},
    {"train", "fuse-dense-act,fuse-conv-act,constant-fold,fuse-softmax-ce,autodiff,optimizer,inference-mode,"
              "constant-fold,cse,"
              "fuse-matmul-mask,dce,fuse-elementwise,plan-memory"},
    /* "train" with the gradients averaged over the ranks (mpirun ... --distributed). */
    {"train-distributed", "fuse-dense-act,fuse-conv-act,constant-fold,fuse-softmax-ce,autodiff,data-parallel,"
                          "optimizer,constant-fold,cse,fuse-matmul-mask,dce,fuse-elementwise,plan-memory"},
};

int pass_count(void) { return (int)KILN_ARRAY_LEN(g_passes); }

const pass_info *pass_at(int i) {
    return i >= 0 && i < pass_count() ? &g_passes[i] : NULL;
}

const pass_info *pass_find(const char *name) {
    for (int i = 0; i < pass_count(); i++)
        if (strcmp(g_passes[i].name, name) == 0) return &g_passes[i];
    return NULL;
}

const char *pass_pipeline_named(const char *name) {
    for (size_t i = 0; i < KILN_ARRAY_LEN(g_pipelines); i++)
        if (strcmp(g_pipelines[i].name, name) == 0) return g_pipelines[i].passes;
    return NULL;
}

kiln_status pass_verify(kiln_module *m, kiln_diag *d) { return ir_verify_module(m, d); }

kiln_status pass_each_func(kiln_module *m, kiln_status (*fn)(kiln_func *f, kiln_diag *d),
                           kiln_diag *d) {
    for (int i = 0; i < m->n_funcs; i++) {
        kiln_status st = fn(m->funcs[i], d);
        if (st) return st;
    }
    return KILN_OK;
}

void pass_print_module(ir_sb *sb, const kiln_module *m, pass_format fmt, const char *only) {
    if (fmt == PASS_FMT_DOT) {
        ir_print_dot(sb, m, only);
        return;
    }
    if (only) {
        const kiln_func *f = kiln_module_func(m, only);
        if (f) ir_print_func(sb, f, NULL);
        return;
    }
    ir_print_module(sb, m, NULL);
}

/* Splits a comma list into at most `max` names (each <= 63 chars). */
static int split_list(const char *list, char names[][64], int max) {
    int n = 0;
    const char *p = list;
    while (*p && n < max) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        size_t len = strcspn(p, ",");
        while (len && p[len - 1] == ' ') len--;
        snprintf(names[n], 64, "%.*s", (int)(len < 63 ? len : 63), p);
        n++;
        p += strcspn(p, ",");
    }
    return n;
}

static bool in_list(const char *list, const char *name) {
    if (!list) return false;
    char names[64][64];
    int n = split_list(list, names, 64);
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

static kiln_status emit(const kiln_module *m, const pass_opts *o, const char *after, int index,
                        bool to_out, bool to_dir, kiln_diag *d) {
    ir_sb sb;
    ir_sb_init(&sb);
    if (to_out) {
        FILE *out = o->out ? o->out : stdout;
        if (o->format == PASS_FMT_TEXT) ir_sb_printf(&sb, "# *** IR after %s ***\n", after);
        pass_print_module(&sb, m, o->format, o->only_func);
        if (sb.oom) {
            ir_sb_free(&sb);
            return ir_oom(d);
        }
        fwrite(sb.buf, 1, sb.len, out);
        fflush(out);
        ir_sb_free(&sb);
    }
    if (to_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%03d_%s.%s", o->dump_dir, index, after,
                 o->format == PASS_FMT_DOT ? "dot" : "kir");
        pass_print_module(&sb, m, o->format, o->format == PASS_FMT_DOT ? o->only_func : NULL);
        if (sb.oom) {
            ir_sb_free(&sb);
            return ir_oom(d);
        }
        FILE *f = fopen(path, "wb");
        if (!f) {
            ir_sb_free(&sb);
            return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
        }
        size_t w = fwrite(sb.buf, 1, sb.len, f);
        int bad = fclose(f) != 0 || w != sb.len;
        ir_sb_free(&sb);
        if (bad) return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: write failed", path);
    }
    return KILN_OK;
}

kiln_status pass_run_pipeline(kiln_module *m, const char *pipeline, const pass_opts *o,
                              kiln_diag *d) {
    pass_opts defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!o) o = &defaults;
    if (!pipeline) pipeline = "";
    const char *named = pass_pipeline_named(pipeline);
    if (named) pipeline = named;

    enum { MAX_PASSES = 64 };
    char names[MAX_PASSES][64];
    int n = split_list(pipeline, names, MAX_PASSES);
    const pass_info *passes[MAX_PASSES];
    int unknown = 0;
    for (int i = 0; i < n; i++) {
        passes[i] = pass_find(names[i]);
        if (passes[i]) continue;
        const char *cands[KILN_ARRAY_LEN(g_passes)];
        for (int k = 0; k < pass_count(); k++) cands[k] = g_passes[k].name;
        const char *near = ir_closest_name(names[i], cands, pass_count());
        if (near)
            ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "unknown pass '%s'; did you mean '%s'?",
                     names[i], near);
        else
            ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "unknown pass '%s'", names[i]);
        unknown++;
    }
    if (unknown) return KILN_ERR_INVALID;
    if (o->print_after) {
        char pa[MAX_PASSES][64];
        int np = split_list(o->print_after, pa, MAX_PASSES);
        for (int i = 0; i < np; i++)
            if (!pass_find(pa[i]))
                return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                                "--print-after: unknown pass '%s'", pa[i]);
    }
    if (o->dump_dir) {
        if (mkdir(o->dump_dir, 0777) != 0 && errno != EEXIST)
            return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", o->dump_dir,
                            strerror(errno));
        kiln_status st = emit(m, o, "input", 0, false, true, d);
        if (st) return st;
    }
    bool verify = !o->no_verify;
#ifdef KILN_VERIFY_PASSES
    verify = true;
#endif
    for (int i = 0; i < n; i++) {
        kiln_status st = passes[i]->run(m, d);
        if (st) {
            if (kiln_diag_error_count(d) == 0)
                ir_error(d, st, ir_loc_none(), "pass '%s' failed: %s", passes[i]->name,
                         kiln_status_string(st));
            return st;
        }
        if (verify && passes[i]->run != pass_verify) {
            kiln_diag *vd = kiln_diag_create();
            if (!vd) return ir_oom(d);
            st = ir_verify_module(m, vd);
            if (st) {
                ir_error(d, st, ir_loc_none(), "the IR is invalid after pass '%s':",
                         passes[i]->name);
                ir_sb_puts(&d->text, kiln_diag_message(vd));
            }
            kiln_diag_dispose(vd);
            if (st) return st;
        }
        bool to_out = o->print_after_all || in_list(o->print_after, passes[i]->name);
        st = emit(m, o, passes[i]->name, i + 1, to_out, o->dump_dir != NULL, d);
        if (st) return st;
    }
    return KILN_OK;
}

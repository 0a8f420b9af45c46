/*
 * cmd_model.c — the verbs that work on a model file: summary, dump, train,
 * eval and predict.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"

#define N_OPTS(t) ((int)(sizeof(t) / sizeof((t)[0])))
#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static int fail(kiln_diag *d, kiln_status st) {
    cli_report(d, st);
    return 1;
}

/* ------------------------------------------------------------- summary */

static const cli_opt summary_opts[] = {{"--help", NULL, "show this help"}};

int cmd_summary(int argc, char **argv) {
    cli_args a;
    if (!cli_parse(&a, "summary", summary_opts, N_OPTS(summary_opts), argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "summary", "MODEL.kiln", summary_opts, N_OPTS(summary_opts));
        return 0;
    }
    if (a.n_pos != 1) {
        fprintf(stderr, "kiln summary: error: expected one model file\n");
        return 2;
    }
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = cli_load_model(a.pos[0], &m, d);
    int rc = 0;
    if (st) {
        rc = fail(d, st);
    } else {
        char *s = kiln_module_summary(m);
        if (s) fputs(s, stdout);
        kiln_free(s);
        rc = s ? 0 : 1;
    }
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    return rc;
}

/* ---------------------------------------------------------------- dump */

static const cli_opt dump_opts[] = {
    {"--function", "NAME", "print only this function (infer, loss, train_step)"},
    {"--after", "PASS", "stop the default pipeline after this pass"},
    {"--passes", "P1,P2,...", "run this pipeline instead of the default one"},
    {"--print-after-all", NULL, "print the IR after every pass"},
    {"--print-after", "PASS", "print the IR after these passes (comma list)"},
    {"--dump-dir", "DIR", "write NNN_<pass>.kir after every pass"},
    {"--format", "text|dot", "IR as .kir text (default) or Graphviz"},
    {"--emit", "kir|llvm|asm", "print the IR (default), LLVM IR or assembly"},
    {"--help", NULL, "show this help"},
};

/* Copies the default pipeline up to and including `after` into buf. */
static bool truncate_pipeline(const char *pipeline, const char *after, char *buf, size_t n) {
    snprintf(buf, n, "%s", pipeline);
    size_t alen = strlen(after);
    for (char *p = buf; *p;) {
        size_t len = strcspn(p, ",");
        if (len == alen && strncmp(p, after, len) == 0) {
            p[len] = 0;
            return true;
        }
        p += len;
        if (*p) p++;
    }
    return false;
}

int cmd_dump(int argc, char **argv) {
    cli_args a;
    if (!cli_parse(&a, "dump", dump_opts, N_OPTS(dump_opts), argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "dump", "MODEL.kiln [options]", dump_opts, N_OPTS(dump_opts));
        return 0;
    }
    if (a.n_pos != 1) {
        fprintf(stderr, "kiln dump: error: expected one model file\n");
        return 2;
    }
    const char *fmt = cli_get(&a, "--format"), *emit = cli_get(&a, "--emit");
    int dot = fmt && strcmp(fmt, "dot") == 0;
    if (fmt && !dot && strcmp(fmt, "text") != 0 && strcmp(fmt, "kir") != 0) {
        fprintf(stderr, "kiln dump: error: --format expects 'text' or 'dot', got '%s'\n", fmt);
        return 2;
    }
    int emit_kind = -1;
    if (emit && strcmp(emit, "llvm") == 0) emit_kind = KILN_EMIT_LLVM;
    else if (emit && strcmp(emit, "asm") == 0) emit_kind = KILN_EMIT_ASM;
    else if (emit && strcmp(emit, "kir") != 0) {
        fprintf(stderr, "kiln dump: error: --emit expects 'kir', 'llvm' or 'asm', got '%s'\n",
                emit);
        return 2;
    }
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = cli_load_model(a.pos[0], &m, d);
    if (st) {
        fail(d, st);
        kiln_diag_dispose(d);
        return 1;
    }
    const char *func = cli_get(&a, "--function");
    const char *passes = cli_get(&a, "--passes");
    const char *after = cli_get(&a, "--after");
    char pipeline[1024];
    int rc = 0;
    if (passes) {
        snprintf(pipeline, sizeof pipeline, "%s", passes);
    } else {
        const char *def = kiln_module_default_pipeline(m);
        const char *list = kiln_pipeline_passes(def);
        if (!list) list = def; /* "": the module has been through its pipeline */
        if (!after) {
            snprintf(pipeline, sizeof pipeline, "%s", def);
        } else if (!truncate_pipeline(list, after, pipeline, sizeof pipeline)) {
            fprintf(stderr, "kiln dump: error: pass '%s' is not in the '%s' pipeline (%s)\n",
                    after, def, list);
            kiln_module_dispose(m);
            kiln_diag_dispose(d);
            return 2;
        }
    }
    kiln_pass_opts po = {0};
    po.print_after_all = cli_flag(&a, "--print-after-all");
    po.print_after = cli_get(&a, "--print-after");
    po.dump_dir = cli_get(&a, "--dump-dir");
    po.dot = dot;
    po.function = func;
    st = kiln_module_run_passes(m, pipeline, &po, d);
    if (st) {
        rc = fail(d, st);
    } else if (emit_kind >= 0) {
        char *out = NULL;
        st = kiln_module_emit(m, func, (kiln_emit_kind)emit_kind, &out, d);
        if (st)
            rc = fail(d, st);
        else
            fputs(out, stdout);
        kiln_free(out);
    } else if (!po.print_after_all) {
        char *text = kiln_module_print_ex(m, func, dot);
        if (!text) {
            fprintf(stderr, "kiln dump: error: the module has no function '%s'\n",
                    func ? func : "?");
            rc = 1;
        } else {
            fputs(text, stdout);
        }
        kiln_free(text);
    }
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    return rc;
}

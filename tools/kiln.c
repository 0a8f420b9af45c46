/*
 * kiln.c — the command-line driver: one verb per job, each a thin layer over
 * the public API (kiln.h). Errors go to stderr, exit status 1 for errors in
 * the work, 2 for usage errors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

/* ----------------------------------------------------------- arguments */

static const cli_opt *find_opt(const cli_opt *opts, int n, const char *name, size_t len, int *idx) {
    for (int i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) {
            *idx = i;
            return &opts[i];
        }
    return NULL;
}

bool cli_parse(cli_args *a, const char *verb, const cli_opt *opts, int n_opts, int argc,
               char **argv, int max_pos) {
    memset(a, 0, sizeof *a);
    a->verb = verb;
    a->opts = opts;
    a->n_opts = n_opts;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!only_pos && strcmp(s, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && s[0] == '-' && s[1]) {
            const char *eq = strchr(s, '=');
            size_t len = eq ? (size_t)(eq - s) : strlen(s);
            int idx = -1;
            const cli_opt *o = find_opt(opts, n_opts, s, len, &idx);
            if (!o) {
                char buf[64];
                snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), s);
                const char *names[48];
                for (int k = 0; k < n_opts && k < 48; k++) names[k] = opts[k].name;
                const char *best = kiln_suggest(buf, names, n_opts < 48 ? n_opts : 48);
                if (best)
                    fprintf(stderr, "kiln %s: error: unknown option '%s'; did you mean '%s'?\n",
                            verb, buf, best);
                else
                    fprintf(stderr, "kiln %s: error: unknown option '%s' (see 'kiln %s --help')\n",
                            verb, buf, verb);
                return false;
            }
            if (!o->arg) {
                if (eq) {
                    fprintf(stderr, "kiln %s: error: option '%s' takes no value\n", verb, o->name);
                    return false;
                }
                a->val[idx] = "";
            } else if (eq) {
                a->val[idx] = eq + 1;
            } else if (i + 1 < argc) {
                a->val[idx] = argv[++i];
            } else {
                fprintf(stderr, "kiln %s: error: option '%s' needs a value (%s)\n", verb, o->name,
                        o->arg);
                return false;
            }
            continue;
        }
        if (a->n_pos >= max_pos || a->n_pos >= CLI_MAX_POS) {
            fprintf(stderr, "kiln %s: error: unexpected argument '%s'\n", verb, s);
            return false;
        }
        a->pos[a->n_pos++] = s;
    }
    return true;
}

const char *cli_get(const cli_args *a, const char *name) {
    for (int i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].name, name) == 0) return a->val[i];
    return NULL;
}

bool cli_flag(const cli_args *a, const char *name) { return cli_get(a, name) != NULL; }

bool cli_gemm(const cli_args *a, const char *verb, kiln_gemm *out) {
    const char *g = cli_get(a, "--gemm");
    *out = KILN_GEMM_AUTO;
    if (!g) return true;
    if (strcmp(g, "kiln") == 0) {
        *out = KILN_GEMM_KILN;
    } else if (strcmp(g, "openblas") == 0) {
        *out = KILN_GEMM_OPENBLAS;
    } else {
        fprintf(stderr, "kiln %s: error: --gemm expects 'kiln' or 'openblas', got '%s'\n", verb, g);
        return false;
    }
    return true;
}

bool cli_int(const cli_args *a, const char *name, int64_t lo, int64_t hi, int64_t *out) {
    const char *v = cli_get(a, name);
    if (!v) return true;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "kiln %s: error: %s expects an integer in [%lld, %lld], got '%s'\n",
                a->verb, name, (long long)lo, (long long)hi, v);
        return false;
    }
    *out = x;
    return true;
}

void cli_usage_verb(FILE *f, const char *verb, const char *synopsis, const cli_opt *opts,
                    int n_opts) {
    fprintf(f, "usage: kiln %s %s\n\noptions:\n", verb, synopsis);
    for (int i = 0; i < n_opts; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-24s %s\n", left, opts[i].help);
    }
}

void cli_report(kiln_diag *d, kiln_status st) {
    const char *msg = kiln_diag_message(d);
    if (*msg)
        fputs(msg, stderr);
    else if (st)
        fprintf(stderr, "kiln: error: %s\n", kiln_status_string(st));
}

bool cli_is_onnx(const char *path) {
    size_t n = strlen(path);
    return n > 5 && strcmp(path + n - 5, ".onnx") == 0;
}

kiln_status cli_load_model(const char *path, kiln_module **out, kiln_diag *d) {
    *out = NULL;
    if (cli_is_onnx(path)) return kiln_module_load_file(path, out, d);
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_model_file_load(path, out, d); /* reports why it can't be read */
    char head[256];
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = 0;
    /* A .kir module starts with "module @" after comments and blank lines. */
    const char *p = head;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p != '#') break;
        p = strchr(p, '\n');
        if (!p) break;
    }
    bool kir = (p && strncmp(p, "module @", 8) == 0) ||
               (strlen(path) > 4 && strcmp(path + strlen(path) - 4, ".kir") == 0);
    if (kir) return kiln_module_load(path, out, d);
    return kiln_module_load_file(path, out, d); /* by extension: .onnx, else .kiln */
}

/* ---------------------------------------------------------------- opt */

static const cli_opt opt_opts[] = {
    {"--passes", "P1,P2,...", "pipeline: pass names, or 'infer' / 'train'"},
    {"--print-after-all", NULL, "print the module after every pass"},
    {"--print-after", "PASS", "print the module after these passes (comma list)"},
    {"--dump-dir", "DIR", "write NNN_<pass>.kir after every pass"},
    {"--format", "text|dot", "output as .kir text (default) or Graphviz"},
    {"--function", "NAME", "print only this function"},
    {"--list-passes", NULL, "list the passes and default pipelines"},
    {"-o", "FILE", "write the result to FILE instead of stdout"},
    {"--help", NULL, "show this help"},
};

static bool parse_format(const cli_args *a, int *dot) {
    const char *f = cli_get(a, "--format");
    *dot = 0;
    if (!f || strcmp(f, "text") == 0 || strcmp(f, "kir") == 0) return true;
    if (strcmp(f, "dot") == 0) {
        *dot = 1;
        return true;
    }
    fprintf(stderr, "kiln %s: error: --format expects 'text' or 'dot', got '%s'\n", a->verb, f);
    return false;
}

/* Writes the final module (or function) to -o FILE or stdout. */
static int write_result(const cli_args *a, const kiln_module *m, const char *func, int dot) {
    char *text = kiln_module_print_ex(m, func, dot);
    if (!text) {
        fprintf(stderr, "kiln %s: error: %s\n", a->verb,
                func ? "no such function" : "out of memory");
        return 1;
    }
    const char *path = cli_get(a, "-o");
    FILE *out = path ? fopen(path, "wb") : stdout;
    if (!out) {
        fprintf(stderr, "kiln %s: error: %s: %s\n", a->verb, path, strerror(errno));
        kiln_free(text);
        return 1;
    }
    fputs(text, out);
    int bad = path ? fclose(out) != 0 : fflush(out) != 0;
    kiln_free(text);
    if (bad) {
        fprintf(stderr, "kiln %s: error: write failed\n", a->verb);
        return 1;
    }
    return 0;
}

int cmd_opt(int argc, char **argv) {
    cli_args a;
    int n = (int)(sizeof opt_opts / sizeof opt_opts[0]);
    if (!cli_parse(&a, "opt", opt_opts, n, argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "opt", "FILE.kir --passes P1,P2,... [options]", opt_opts, n);
        return 0;
    }
    if (cli_flag(&a, "--list-passes")) {
        kiln_list_passes(stdout);
        return 0;
    }
    if (a.n_pos != 1) {
        fprintf(stderr, "kiln opt: error: expected one .kir file (see 'kiln opt --help')\n");
        return 2;
    }
    int dot;
    if (!parse_format(&a, &dot)) return 2;
    const char *passes = cli_get(&a, "--passes");
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_module_load(a.pos[0], &m, d);
    if (!st && passes) {
        kiln_pass_opts po = {0};
        po.print_after_all = cli_flag(&a, "--print-after-all");
        po.print_after = cli_get(&a, "--print-after");
        po.dump_dir = cli_get(&a, "--dump-dir");
        po.dot = dot;
        po.function = cli_get(&a, "--function");
        st = kiln_module_run_passes(m, passes, &po, d);
    }
    int rc = 0;
    if (st) {
        cli_report(d, st);
        rc = 1;
    } else if (!cli_flag(&a, "--print-after-all")) {
        rc = write_result(&a, m, cli_get(&a, "--function"), dot);
    }
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    return rc;
}

/* ---------------------------------------------------------------- main */

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} verbs[] = {
    {"train", cmd_train, "train a model on a dataset (JIT or interpreter)"},
    {"eval", cmd_eval, "evaluate a model's weights on the test set"},
    {"predict", cmd_predict, "run a model on IDX images"},
    {"compile", cmd_compile, "compile a model to a shared object and C header"},
    {"dump", cmd_dump, "print the IR of a model after passes, or its LLVM IR / assembly"},
    {"opt", cmd_opt, "run passes over a .kir module and print the result"},
    {"summary", cmd_summary, "print the layer table and parameter counts"},
    {"cache", cmd_cache, "show or clear the compile cache"},
    {"export", cmd_export, "write a model and its weights as an ONNX file"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: kiln <command> [options]\n\n"
               "Kiln compiles neural-network models to native code and trains them.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  %-9s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(f, "\n'kiln <command> --help' shows a command's options; 'kiln --version' the "
               "version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(verb, "--version") == 0 || strcmp(verb, "version") == 0) {
        /* One line: scripts read the version as its second word. */
        printf("kiln %s (onnx import: %s; distributed training over MPI: %s)\n", kiln_version(),
               kiln_onnx_available() ? "yes" : "no, built without protobuf-c / libonnx-dev",
               kiln_have_mpi() ? "yes" : "no");
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(verbs[i].name, verb) == 0) return verbs[i].run(argc - 2, argv + 2);
    const char *names[sizeof verbs / sizeof verbs[0]];
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) names[i] = verbs[i].name;
    const char *best = kiln_suggest(verb, names, (int)(sizeof verbs / sizeof verbs[0]));
    if (best)
        fprintf(stderr, "kiln: error: unknown command '%s'; did you mean '%s'?\n", verb, best);
    else
        fprintf(stderr, "kiln: error: unknown command '%s' (see 'kiln --help')\n", verb);
    return 2;
}

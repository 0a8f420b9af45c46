/*
 * cmd_export.c — `kiln export`: a model's inference graph with its weights
 * as an ONNX file (kiln_module_load_weights, then kiln_onnx_export).
 */
#include <stdio.h>

#include "tools/cli.h"

#define N_OPTS(t) ((int)(sizeof(t) / sizeof((t)[0])))

static const cli_opt export_opts[] = {
    {"-o", "FILE.onnx", "the ONNX model to write"},
    {"--load", "CKPT", "the weights (default: freshly initialized, or an ONNX model's own)"},
    {"--seed", "N", "initialization seed when not --load"},
    {"--help", NULL, "show this help"},
};

int cmd_export(int argc, char **argv) {
    cli_args a;
    int n = N_OPTS(export_opts);
    if (!cli_parse(&a, "export", export_opts, n, argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "export", "MODEL --load CKPT -o MODEL.onnx", export_opts, n);
        return 0;
    }
    if (a.n_pos != 1 || !cli_get(&a, "-o")) {
        fprintf(stderr, "kiln export: error: expected a model file and -o FILE.onnx (see 'kiln "
                        "export --help')\n");
        return 2;
    }
    int64_t seed = 0;
    if (!cli_int(&a, "--seed", 0, INT64_MAX, &seed)) return 2;
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = cli_load_model(a.pos[0], &m, d);
    if (!st) st = kiln_module_load_weights(m, cli_get(&a, "--load"), seed, d);
    if (!st) st = kiln_onnx_export(m, cli_get(&a, "-o"), d);
    if (st) cli_report(d, st);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    return st ? 1 : 0;
}

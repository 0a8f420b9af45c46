/*
 * cmd_compile.c — `kiln compile`: a model file or .kir module to a shared
 * object and C header (kiln_compile_aot).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/cli.h"

#define N_OPTS(t) ((int)(sizeof(t) / sizeof((t)[0])))

static const cli_opt compile_opts[] = {
    {"-o", "FILE", "the shared object (or object, LLVM IR, assembly) to write"},
    {"--header", "FILE.h", "also write the C header"},
    {"--name", "PREFIX", "C prefix of the entry points (default: from --header or -o)"},
    {"--load", "CKPT", "embed these weights (default: freshly initialized)"},
    {"--seed", "N", "initialization seed when not --load"},
    {"--train", NULL, "also export a train step and a checkpoint writer"},
    {"--weights", "embed|file", "embed the weights (default) or load a checkpoint at run time"},
    {"--emit", "so|obj|llvm|asm", "what -o gets (default: so)"},
    {"--cpu", "CPU", "target CPU, e.g. x86-64-v3 (default: this machine)"},
    {"--cc", "CC", "C compiler used as the linker driver"},
    {"--gemm", "kiln|openblas", "matrix products: Kiln's kernels (default, no BLAS needed) or "
                                "OpenBLAS (linked)"},
    {"--no-cache", NULL, "compile without the compile cache (see 'kiln cache')"},
    {"--report", "FILE", "write a JSON report: compile_ms and the compile cache's hit or miss"},
    {"--help", NULL, "show this help"},
};

/* The --report JSON, as train's (compile_ms, and the cache's part under
 * "cache": the library's object code is one entry, "object"):
 *   {"model": "...", "output": "...", "compile_ms": 512.3, "cache": {"object": "hit"}} */
static bool write_report(const char *path, const kiln_module *m, const char *output, double ms,
                         const char *cache) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "kiln compile: error: %s: %s\n", path, strerror(errno));
        return false;
    }
    char *name = kiln_json_string(kiln_module_name(m)), *out = kiln_json_string(output);
    fprintf(f, "{\"model\": %s, \"output\": %s, \"compile_ms\": %.1f, \"cache\": {\"object\": \"%s\"}}\n",
            name ? name : "null", out ? out : "null", ms, cache);
    kiln_free(name);
    kiln_free(out);
    if (fclose(f) != 0) {
        fprintf(stderr, "kiln compile: error: %s: write failed\n", path);
        return false;
    }
    return true;
}

int cmd_compile(int argc, char **argv) {
    cli_args a;
    int n = N_OPTS(compile_opts);
    if (!cli_parse(&a, "compile", compile_opts, n, argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        cli_usage_verb(stdout, "compile", "MODEL -o LIB.so [--header H] [options]", compile_opts,
                       n);
        return 0;
    }
    if (a.n_pos != 1 || !cli_get(&a, "-o")) {
        fprintf(stderr,
                "kiln compile: error: expected a model file and -o OUTPUT (see 'kiln compile "
                "--help')\n");
        return 2;
    }
    if (cli_flag(&a, "--no-cache")) setenv("KILN_CACHE", "0", 1); /* the library reads it */
    kiln_aot_opts o;
    memset(&o, 0, sizeof o);
    o.output = cli_get(&a, "-o");
    o.header = cli_get(&a, "--header");
    o.prefix = cli_get(&a, "--name");
    o.load = cli_get(&a, "--load");
    o.train = cli_flag(&a, "--train");
    o.cpu = cli_get(&a, "--cpu");
    o.cc = cli_get(&a, "--cc");
    if (!cli_int(&a, "--seed", 0, INT64_MAX, &o.seed) || !cli_gemm(&a, "compile", &o.gemm))
        return 2;
    const char *emit = cli_get(&a, "--emit");
    static const char *const kinds[] = {"so", "obj", "llvm", "asm"};
    o.emit = KILN_AOT_SO;
    if (emit) {
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(emit, kinds[i]) == 0) k = i;
        if (k < 0) {
            fprintf(stderr,
                    "kiln compile: error: --emit expects 'so', 'obj', 'llvm' or 'asm', got '%s'\n",
                    emit);
            return 2;
        }
        o.emit = (kiln_aot_emit)k;
    }
    const char *weights = cli_get(&a, "--weights");
    if (weights && strcmp(weights, "file") == 0) {
        o.no_embed = 1;
    } else if (weights && strcmp(weights, "embed") != 0) {
        fprintf(stderr, "kiln compile: error: --weights expects 'embed' or 'file', got '%s'\n",
                weights);
        return 2;
    }
    if (o.no_embed && o.load) {
        fprintf(stderr,
                "kiln compile: error: --weights file loads the weights at run time; drop --load\n");
        return 2;
    }
    const char *cache = "off";
    o.cache = &cache;
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = cli_load_model(a.pos[0], &m, d);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!st) st = kiln_compile_aot(m, &o, d);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st) cli_report(d, st);
    const char *report = cli_get(&a, "--report");
    if (!st && report) {
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (!write_report(report, m, o.output, ms, cache)) st = KILN_ERR_IO;
    }
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    return st ? 1 : 0;
}

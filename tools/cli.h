/* cli.h — shared pieces of the kiln command-line driver (public API only). */
#ifndef KILN_TOOLS_CLI_H
#define KILN_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/kiln.h"

/* One option a verb accepts. `arg` names its value ("N", "DIR"), or NULL
 * for a flag. */
typedef struct cli_opt {
    const char *name; /* "--epochs", or "-o" */
    const char *arg;
    const char *help;
} cli_opt;

#define CLI_MAX_POS 4

/* Parsed command line of one verb: option values by index into its table. */
typedef struct cli_args {
    const char *verb;
    const cli_opt *opts;
    int n_opts;
    const char *val[48]; /* value (or "" for a set flag), NULL if absent */
    const char *pos[CLI_MAX_POS];
    int n_pos;
} cli_args;

/* Parses argv (after the verb). Prints a one-line error and returns false on
 * an unknown option (with a suggestion), a missing value or too many
 * positional arguments. */
bool cli_parse(cli_args *a, const char *verb, const cli_opt *opts, int n_opts, int argc,
               char **argv, int max_pos);
const char *cli_get(const cli_args *a, const char *name);
bool cli_flag(const cli_args *a, const char *name);
/* Integer option; false (with a message) if present but not an integer in
 * [lo, hi]. *out keeps its value when the option is absent. */
bool cli_int(const cli_args *a, const char *name, int64_t lo, int64_t hi, int64_t *out);
/* --gemm kiln|openblas into *out (KILN_GEMM_AUTO when absent); false after
 * printing a usage error. */
bool cli_gemm(const cli_args *a, const char *verb, kiln_gemm *out);
void cli_usage_verb(FILE *f, const char *verb, const char *synopsis, const cli_opt *opts,
                    int n_opts);

/* Prints the diag's messages to stderr (the message of `st` when empty). */
void cli_report(kiln_diag *d, kiln_status st);
/* Loads a .kiln model file or a .kir module (by content: a .kir starts with
 * "module"). */
kiln_status cli_load_model(const char *path, kiln_module **out, kiln_diag *d);

/* Whether a model path names an ONNX file (its weights are its initializers:
 * --load is optional). */
bool cli_is_onnx(const char *path);
int cmd_opt(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_export(int argc, char **argv);

#endif

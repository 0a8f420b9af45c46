/* TEMPORARY while the runtime API lands: verbs not wired yet. */
#include "tools/cli.h"
#define PENDING_VERB(fn, name)                                                                     \
    int fn(int argc, char **argv) {                                                                \
        (void)argc;                                                                                \
        (void)argv;                                                                                \
        fprintf(stderr, "kiln " name ": error: not available yet\n");                              \
        return 1;                                                                                  \
    }
PENDING_VERB(cmd_compile, "compile")

/*
 * cmd_cache.c — `kiln cache [info|dir|clear]`: the JIT's persistent compile
 * cache (kiln_cache_info, kiln_cache_clear).
 */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"

static const cli_opt cache_opts[] = {
    {"--help", NULL, "show this help"},
};

static void usage(FILE *f) {
    cli_usage_verb(f, "cache", "[info|dir|clear]", cache_opts, 1);
    fputs("\n  info   where the cache is, its size and entries (the default)\n"
          "  dir    print the directory only\n"
          "  clear  delete every entry\n"
          "\nKILN_CACHE_DIR moves the cache, KILN_CACHE_MAX_MB bounds it, KILN_CACHE=0 turns it "
          "off.\n",
          f);
}

static void print_mb(const char *label, int64_t bytes) {
    printf("%-10s %.1f MB (%lld bytes)\n", label, (double)bytes / (1 << 20), (long long)bytes);
}

int cmd_cache(int argc, char **argv) {
    cli_args a;
    if (!cli_parse(&a, "cache", cache_opts, 1, argc, argv, 1)) return 2;
    if (cli_flag(&a, "--help")) {
        usage(stdout);
        return 0;
    }
    const char *what = a.n_pos ? a.pos[0] : "info";
    if (strcmp(what, "info") != 0 && strcmp(what, "dir") != 0 && strcmp(what, "clear") != 0) {
        fprintf(stderr, "kiln cache: error: unknown action '%s' (info, dir or clear)\n", what);
        return 2;
    }
    kiln_diag *d = kiln_diag_create();
    kiln_cache_stats cs;
    kiln_status st = kiln_cache_info(&cs, d);
    int64_t removed = 0;
    if (!st && strcmp(what, "clear") == 0) st = kiln_cache_clear(&removed, d);
    if (st) {
        cli_report(d, st);
        kiln_diag_dispose(d);
        return 1;
    }
    if (strcmp(what, "dir") == 0) {
        printf("%s\n", cs.dir);
    } else if (strcmp(what, "clear") == 0) {
        printf("removed %lld entries (%.1f MB) from %s\n", (long long)removed,
               (double)cs.bytes / (1 << 20), cs.dir);
    } else {
        printf("%-10s %s\n", "location", cs.dir);
        printf("%-10s %s\n", "status", cs.enabled ? "on" : "off (KILN_CACHE=0)");
        printf("%-10s %lld\n", "entries", (long long)cs.entries);
        print_mb("size", cs.bytes);
        print_mb("limit", cs.max_bytes);
    }
    kiln_diag_dispose(d);
    return 0;
}

/*
 * data_load.c — the time `kiln train` spends reading Fashion-MNIST's
 * training images (issue 17): the gzipped IDX file inflated by zlib, against
 * the decompressed copy the data cache keeps (runtime/data.c).
 *
 *   build/bin/bench_data_load [FILE.gz] [--reps N]
 *
 * Uses KILN_CACHE_DIR if set (its entries are cleared), else a temporary
 * directory. Prints the median and the minimum wall and CPU time of N loads
 * each way (default 7).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/kiln.h"
#include "runtime/data.h"
#include "bench_util.h"

static double clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void report(const char *what, double *wall, double *cpu, int n) {
    qsort(wall, (size_t)n, sizeof *wall, bench_cmp_double);
    qsort(cpu, (size_t)n, sizeof *cpu, bench_cmp_double);
    printf("  %s (%d loads): wall median %.1f ms, min %.1f ms; CPU median %.1f ms, min %.1f ms\n",
           what, n, wall[n / 2], wall[0], cpu[n / 2], cpu[0]);
}

/* n loads of path; false on an error (printed). */
static int load_n(const char *path, int n, double *wall, double *cpu, kiln_diag *d) {
    for (int r = 0; r < n; r++) {
        rt_idx a;
        double w0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
        if (rt_idx_load(path, &a, d)) {
            fprintf(stderr, "bench: %s", kiln_diag_message(d));
            return 1;
        }
        wall[r] = clock_ms(CLOCK_MONOTONIC) - w0;
        cpu[r] = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
        rt_idx_free(&a);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
    int reps = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else
            path = argv[i];
    }
    if (reps < 1) reps = 1;
    char tmp[64] = "/tmp/kiln-bench-data-XXXXXX";
    bool own = !getenv("KILN_CACHE_DIR");
    if (own) {
        if (!mkdtemp(tmp)) return 1;
        setenv("KILN_CACHE_DIR", tmp, 1);
    }
    kiln_diag *d = kiln_diag_create();
    double *wall = calloc((size_t)reps, sizeof *wall), *cpu = calloc((size_t)reps, sizeof *cpu);
    int rc = 0;
    printf("%s:\n", path);
    setenv("KILN_CACHE", "0", 1);
    if (!rc) rc = load_n(path, reps, wall, cpu, d);
    if (!rc) report("inflated by zlib (KILN_CACHE=0)", wall, cpu, reps);
    unsetenv("KILN_CACHE");
    kiln_cache_clear(NULL, NULL);
    if (!rc) rc = load_n(path, 1, wall, cpu, d);
    if (!rc) printf("  first load, empty cache (inflate + store): %.1f ms\n", wall[0]);
    if (!rc) rc = load_n(path, reps, wall, cpu, d);
    if (!rc) report("the decompressed copy in the cache", wall, cpu, reps);
    kiln_cache_clear(NULL, NULL);
    if (own) rmdir(tmp);
    free(wall);
    free(cpu);
    kiln_diag_dispose(d);
    return rc;
}

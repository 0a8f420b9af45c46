/*
 * matmul_mask.c — what fuse-matmul-mask saves (issue 18): the two masked
 * input-gradient GEMMs of the seed step (dX = dZ W^T, then relu's
 * derivative by the layer's output h), each two ways through Kiln's JIT:
 *
 *   separate  matmul, then select(greater(h, 0), dX, 0) as its own fused
 *             region (the step before the pass: one more pass over memory)
 *   fused     matmul_mask: the mask applied at the GEMM's store
 *
 *   bench_matmul_mask [--samples N] [--batch N]
 *
 * Kiln's kernels at the width Kiln picks here and at 8 lanes (AVX2), one
 * thread; timing as bench_gemm (median of samples of back-to-back calls
 * lasting >= 2 ms each), the two forms of a shape measured alternately.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "codegen/pool.h"
#include "passes/pass.h"
#include "bench_util.h"

/* dX [?,N] = dZ [?,K] . W [N,K]^T, masked by h [?,N]. */
static const struct {
    const char *name;
    int N, K;
} g_shapes[] = {{"dX 64->128", 128, 64}, {"dX 10->64", 64, 10}};
enum { N_SHAPES = sizeof g_shapes / sizeof g_shapes[0] };

/* sep<i> and fused<i> for each shape. */
static char *module_text(void) {
    static char buf[4096];
    size_t len = (size_t)snprintf(buf, sizeof buf, "module @mask\n");
    for (int i = 0; i < N_SHAPES; i++) {
        int N = g_shapes[i].N, K = g_shapes[i].K;
        len += (size_t)snprintf(
            buf + len, sizeof buf - len,
            "func @sep%d(%%dz : f32[?,%d], %%w : f32[%d,%d], %%h : f32[?,%d]) -> f32[?,%d] {\n"
            "  %%0 = matmul(%%dz, %%w) {transpose_b=true} : f32[?,%d]\n"
            "  %%1 = constant() {value=0} : f32[]\n"
            "  %%2 = greater(%%h, %%1) : i32[?,%d]\n"
            "  %%3 = select(%%2, %%0, %%1) : f32[?,%d]\n  return %%3\n}\n"
            "func @fused%d(%%dz : f32[?,%d], %%w : f32[%d,%d], %%h : f32[?,%d]) -> f32[?,%d] {\n"
            "  %%0 = matmul_mask(%%dz, %%w, %%h) {transpose_b=true} : f32[?,%d]\n"
            "  return %%0\n}\n",
            i, K, N, K, N, N, N, N, N, i, K, N, K, N, N, N);
    }
    return buf;
}

typedef struct run {
    cg_entry_fn fn;
    int64_t batch;
    void *args[3], *res[1];
    char *ws;
} run;

static void call(void *arg) {
    run *r = arg;
    r->fn(r->batch, r->args, r->res, NULL, r->ws);
}

static double timeit(void (*fn)(void *), void *arg) {
    double t0 = bench_now();
    long calls = 0;
    while (bench_now() - t0 < 0.02) {
        fn(arg);
        calls++;
    }
    long inner = (long)(2e-3 / ((bench_now() - t0) / (double)calls)) + 1;
    double a = bench_now();
    for (long j = 0; j < inner; j++) fn(arg);
    return (bench_now() - a) / (double)inner;
}

static float *fbuf(size_t n, int salt) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 7 + (size_t)salt) % 17) * 0.01f - 0.08f;
    return p;
}

static run make_run(cg_program *p, const char *name, int64_t batch, float **in, float *out) {
    run r = {cg_program_entry(p, name), batch, {in[0], in[1], in[2]}, {out}, NULL};
    r.ws = aligned_alloc(64, (size_t)(cg_program_workspace_bytes(p, name, batch) + 64) / 64 * 64);
    return r;
}

/* Median µs per call of each shape's two forms, compiled with `o`. */
static int measure(const cg_options *o, int64_t batch, int samples, double (*us)[2]) {
    kiln_diag *d = kiln_diag_create();
    const char *text = module_text();
    kiln_module *m = NULL;
    cg_program *p = NULL;
    kiln_status st = kiln_module_parse(text, strlen(text), "mask.kir", &m, d);
    if (!st) st = pass_run_pipeline(m, "fuse-elementwise,plan-memory", NULL, d);
    if (!st) st = cg_jit_compile(m, o, &p, d);
    if (st) {
        fprintf(stderr, "bench_matmul_mask: %s\n", kiln_diag_message(d));
        kiln_module_dispose(m);
        kiln_diag_dispose(d);
        return 1;
    }
    for (int i = 0; i < N_SHAPES; i++) {
        int64_t N = g_shapes[i].N, K = g_shapes[i].K;
        float *in[3] = {fbuf((size_t)(batch * K), 1), fbuf((size_t)(N * K), 2),
                        fbuf((size_t)(batch * N), 3)};
        float *out = fbuf((size_t)(batch * N), 4);
        char sep[16], fused[16];
        snprintf(sep, sizeof sep, "sep%d", i);
        snprintf(fused, sizeof fused, "fused%d", i);
        run r[2] = {make_run(p, sep, batch, in, out), make_run(p, fused, batch, in, out)};
        double v[2][101];
        if (samples > 101) samples = 101;
        for (int s = 0; s < samples; s++)
            for (int f = 0; f < 2; f++) v[f][s] = timeit(call, &r[f]);
        for (int f = 0; f < 2; f++) {
            qsort(v[f], (size_t)samples, sizeof(double), bench_cmp_double);
            us[i][f] = v[f][samples / 2] * 1e6;
            free(r[f].ws);
        }
        for (int k = 0; k < 3; k++) free(in[k]);
        free(out);
    }
    cg_program_dispose(p);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    return 0;
}

int main(int argc, char **argv) {
    int samples = 21;
    int64_t batch = 128;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_matmul_mask [--samples N] [--batch N]\n");
            return 2;
        }
    }
    if (samples < 1) samples = 1;
    kiln_pool_set_threads(1);
    cg_options kn = {.gemm = KILN_GEMM_KILN, .no_cache = true};
    cg_options k8 = {.gemm = KILN_GEMM_KILN, .gemm_width = 8, .no_cache = true};
    double t_kn[N_SHAPES][2], t_k8[N_SHAPES][2];
    if (measure(&kn, batch, samples, t_kn) || measure(&k8, batch, samples, t_k8)) return 1;
    printf("batch %lld, 1 thread, us per call (median of %d): separate mask pass vs matmul_mask\n",
           (long long)batch, samples);
    printf("%-12s | %23s | %23s\n", "gemm", "kiln (auto width)", "kiln 8-wide");
    double sum[2][2] = {{0, 0}, {0, 0}};
    for (int i = 0; i < N_SHAPES; i++) {
        printf("%-12s | %6.2f -> %6.2f (%5.2f) | %6.2f -> %6.2f (%5.2f)\n", g_shapes[i].name,
               t_kn[i][0], t_kn[i][1], t_kn[i][0] - t_kn[i][1], t_k8[i][0], t_k8[i][1],
               t_k8[i][0] - t_k8[i][1]);
        for (int f = 0; f < 2; f++) {
            sum[0][f] += t_kn[i][f];
            sum[1][f] += t_k8[i][f];
        }
    }
    printf("%-12s | %6.2f -> %6.2f (%5.2f) | %6.2f -> %6.2f (%5.2f)\n", "both", sum[0][0],
           sum[0][1], sum[0][0] - sum[0][1], sum[1][0], sum[1][1], sum[1][0] - sum[1][1]);
    return 0;
}

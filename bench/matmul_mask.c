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
#include "bench_jit.h"
#include "bench_util.h"
#include "codegen/pool.h"

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

/* Median µs per call of each shape's two forms, compiled with `o`. */
static int measure(const cg_options *o, int64_t batch, int samples, double (*us)[2]) {
    kiln_module *m;
    cg_program *p;
    if (bench_jit_compile("bench_matmul_mask", module_text(), "fuse-elementwise,plan-memory", o,
                          &m, &p))
        return 1;
    if (samples > 101) samples = 101;
    for (int i = 0; i < N_SHAPES; i++) {
        int64_t N = g_shapes[i].N, K = g_shapes[i].K;
        float *in[3] = {bench_fbuf((size_t)(batch * K)), bench_fbuf((size_t)(N * K)),
                        bench_fbuf((size_t)(batch * N))};
        float *out = bench_fbuf((size_t)(batch * N));
        bench_jit_run r[2];
        for (int f = 0; f < 2; f++) {
            char name[16];
            snprintf(name, sizeof name, f ? "fused%d" : "sep%d", i);
            r[f] = bench_jit_entry(p, name, batch);
            for (int k = 0; k < 3; k++) r[f].args[k] = in[k];
            r[f].res[0] = out;
        }
        double v[2][101];
        for (int s = 0; s < samples; s++)
            for (int f = 0; f < 2; f++) v[f][s] = timeit(bench_jit_call, &r[f]);
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
    return 0;
}

int main(int argc, char **argv) {
    int samples = 21;
    int64_t batch = 128;
    if (bench_jit_args(argc, argv, "bench_matmul_mask", &samples, &batch)) return 2;
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

/*
 * test_gemm.c — Kiln's GEMM kernels (codegen/gemm.c) against a naive
 * double-precision product: every transpose, ragged M, N, K (1 to 300, and
 * past one K block; M <= 6: transposed B's dot-product path), each vector
 * width (4: portable, 8: AVX2, 16: AVX-512),
 * the fused dense epilogue (bias and each activation), matmul_mask's
 * (relu's and leaky_relu's derivative at the store), dynamic M and K;
 * on 1 and 2 threads of Kiln's pool, bit-identical.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "codegen/pool.h"
#include "passes/pass.h"

typedef struct shape {
    int M, N, K;
} shape;

/* Fixed corners, then seeded random sizes in [1, 300]. */
static const shape g_fixed[] = {{1, 1, 1},    {1, 300, 7},   {7, 1, 300},  {5, 17, 3},
                                {13, 33, 65}, {128, 10, 64}, {6, 16, 8},   {300, 300, 300},
                                {37, 45, 1100},
                                /* M <= MR (6): transposed B by dot products (f1's
                                 * static M: that path alone); K past one block,
                                 * K mod W != 0, columns full, one masked panel, or
                                 * masked at run time */
                                {1, 64, 1100}, {4, 45, 1100}, {6, 20, 37},   {2, 96, 13},
                                {3, 7, 512},   {1, 130, 784},
                                /* Fewer panels than tasks: row blocks (gemm.c), a
                                 * shorter last one, at 1 and 2 threads: one panel,
                                 * 4 blocks; 3 panels (16 wide) over 2 K blocks;
                                 * 2 blocks of 30 and 19 rows */
                                {300, 10, 100}, {130, 70, 600}, {49, 33, 1100}};
enum { N_FIXED = sizeof g_fixed / sizeof g_fixed[0], N_RANDOM = 7 };

static shape shape_at(int i) {
    if (i < N_FIXED) return g_fixed[i];
    unsigned s = 12345u + 7919u * (unsigned)i;
    shape r;
    s = s * 1103515245u + 12345u;
    r.M = 1 + (int)((s >> 8) % 300);
    s = s * 1103515245u + 12345u;
    r.N = 1 + (int)((s >> 8) % 300);
    s = s * 1103515245u + 12345u;
    r.K = 1 + (int)((s >> 8) % 300);
    return r;
}

static const char *const g_acts[] = {"none", "relu", "sigmoid", "tanh"};

/* f0..f3: matmul nn, tn (K the batch), nt, tt (all static); f4: dense with
 * activation `act` (M the batch); f5: nt with M static (one path of the
 * kernel: dot products for M <= 6, packed above); f6, f7: matmul_mask nt
 * (the backward's dz W^T, relu's mask) and nn (leaky_relu's, alpha 0.25),
 * M the batch. */
static char *module_text(shape s, const char *act) {
    static char buf[6144];
    int M = s.M, N = s.N, K = s.K;
    snprintf(buf, sizeof buf,
             "module @g\n"
             "func @f0(%%a : f32[?,%d], %%b : f32[%d,%d]) -> f32[?,%d] {\n"
             "  %%0 = matmul(%%a, %%b) : f32[?,%d]\n  return %%0\n}\n"
             "func @f1(%%a : f32[?,%d], %%b : f32[?,%d]) -> f32[%d,%d] {\n"
             "  %%0 = matmul(%%a, %%b) {transpose_a=true} : f32[%d,%d]\n  return %%0\n}\n"
             "func @f2(%%a : f32[?,%d], %%b : f32[%d,%d]) -> f32[?,%d] {\n"
             "  %%0 = matmul(%%a, %%b) {transpose_b=true} : f32[?,%d]\n  return %%0\n}\n"
             "func @f3(%%a : f32[%d,%d], %%b : f32[%d,%d]) -> f32[%d,%d] {\n"
             "  %%0 = matmul(%%a, %%b) {transpose_a=true, transpose_b=true} : f32[%d,%d]\n"
             "  return %%0\n}\n"
             "func @f4(%%a : f32[?,%d], %%b : f32[%d,%d], %%c : f32[%d]) -> f32[?,%d] {\n"
             "  %%0 = dense(%%a, %%b, %%c) {activation=%s} : f32[?,%d]\n  return %%0\n}\n"
             "func @f5(%%a : f32[%d,%d], %%b : f32[%d,%d]) -> f32[%d,%d] {\n"
             "  %%0 = matmul(%%a, %%b) {transpose_b=true} : f32[%d,%d]\n  return %%0\n}\n"
             "func @f6(%%a : f32[?,%d], %%b : f32[%d,%d], %%h : f32[?,%d]) -> f32[?,%d] {\n"
             "  %%0 = matmul_mask(%%a, %%b, %%h) {transpose_b=true} : f32[?,%d]\n"
             "  return %%0\n}\n"
             "func @f7(%%a : f32[?,%d], %%b : f32[%d,%d], %%h : f32[?,%d]) -> f32[?,%d] {\n"
             "  %%0 = matmul_mask(%%a, %%b, %%h) {alpha=0.25} : f32[?,%d]\n  return %%0\n}\n",
             K, K, N, N, N,               /* f0 */
             M, N, M, N, M, N,            /* f1 */
             K, N, K, N, N,               /* f2 */
             K, M, N, K, M, N, M, N,      /* f3 */
             K, K, N, N, N, act, N,       /* f4 */
             M, K, N, K, M, N, M, N,      /* f5 */
             K, N, K, N, N, N,            /* f6 */
             K, K, N, N, N, N);           /* f7 */
    if (!strcmp(act, "none")) {
        /* dense without an activation attribute */
        char *p = strstr(buf, " {activation=none}");
        memmove(p, p + 18, strlen(p + 18) + 1);
    }
    return buf;
}

static float *rnd(size_t n, unsigned *seed) {
    float *p = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 9) & 0xffff) / 32768.0f - 1.0f;
    }
    return p;
}

/* C = op(A) op(B) (+ bias, act; or masked by H: alpha) in double; A
 * element (i,k), B element (k,j). */
static void reference(int ta, int tb, shape s, const float *A, const float *B, const float *bias,
                      const char *act, const float *H, double alpha, double *C, double *mag) {
    for (int i = 0; i < s.M; i++)
        for (int j = 0; j < s.N; j++) {
            double acc = 0, m = 0;
            for (int k = 0; k < s.K; k++) {
                double a = ta ? A[(size_t)k * s.M + i] : A[(size_t)i * s.K + k];
                double b = tb ? B[(size_t)j * s.K + k] : B[(size_t)k * s.N + j];
                acc += a * b;
                m += fabs(a * b);
            }
            if (bias) {
                acc += bias[j];
                m += fabs(bias[j]);
                if (!strcmp(act, "relu")) acc = acc < 0 ? 0 : acc;
                if (!strcmp(act, "sigmoid")) acc = 1 / (1 + exp(-acc));
                if (!strcmp(act, "tanh")) acc = tanh(acc);
            }
            if (H && !(H[(size_t)i * s.N + j] > 0)) acc *= alpha;
            C[(size_t)i * s.N + j] = acc;
            mag[(size_t)i * s.N + j] = m;
        }
}

static void check_shape(shape s, int width, const char *act) {
    kiln_diag *d = kiln_diag_create();
    const char *text = module_text(s, act);
    kiln_module *m = NULL;
    ck_assert_msg(kiln_module_parse(text, strlen(text), "g.kir", &m, d) == KILN_OK, "%s\n%s",
                  kiln_diag_message(d), text);
    ck_assert_msg(pass_run_pipeline(m, "plan-memory", NULL, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    cg_options o = {.gemm = KILN_GEMM_KILN, .gemm_width = width, .no_cache = true};
    cg_program *p = NULL;
    ck_assert_msg(cg_jit_compile(m, &o, &p, d) == KILN_OK, "%s", kiln_diag_message(d));
    unsigned seed = (unsigned)(s.M * 131 + s.N * 17 + s.K + width);
    size_t mk = (size_t)s.M * s.K, kn = (size_t)s.K * s.N, mn = (size_t)s.M * s.N;
    float *A = rnd(mk, &seed), *B = rnd(kn, &seed), *bias = rnd((size_t)s.N, &seed);
    float *H = rnd(mn, &seed); /* about half of it <= 0 */
    float *C = malloc(mn * sizeof(float) + 4), *C2 = malloc(mn * sizeof(float) + 4);
    double *R = malloc(mn * sizeof(double) + 8), *mag = malloc(mn * sizeof(double) + 8);
    for (int f = 0; f < 8; f++) {
        int ta = f == 1 || f == 3, tb = f == 2 || f == 3 || f == 5 || f == 6;
        int64_t batch = f == 1 ? s.K : f == 3 ? 1 : s.M;
        char name[4] = {'f', (char)('0' + f), 0};
        void *args[3] = {A, B, f >= 6 ? H : bias}, *res[1] = {C};
        /* 2 threads, then 1: the same bits (each tile is one thread's). */
        ck_assert_int_eq(kiln_pool_set_threads(2), 2);
        for (size_t i = 0; i < mn; i++) C[i] = NAN; /* beta 0: never read */
        ck_assert_msg(cg_program_run(p, name, batch, args, res, NULL, NULL, d) == KILN_OK, "%s",
                      kiln_diag_message(d));
        memcpy(C2, C, mn * sizeof(float));
        kiln_pool_set_threads(1);
        for (size_t i = 0; i < mn; i++) C[i] = NAN;
        ck_assert_msg(cg_program_run(p, name, batch, args, res, NULL, NULL, d) == KILN_OK, "%s",
                      kiln_diag_message(d));
        ck_assert_msg(memcmp(C, C2, mn * sizeof(float)) == 0,
                      "%s M=%d N=%d K=%d width %d: 1 and 2 threads differ", name, s.M, s.N, s.K,
                      width);
        reference(ta, tb, s, A, B, f == 4 ? bias : NULL, act, f >= 6 ? H : NULL,
                  f == 7 ? 0.25 : 0.0, R, mag);
        for (size_t i = 0; i < mn; i++) {
            double tol = 1e-5 * (mag[i] + 1);
            ck_assert_msg(fabs(C[i] - R[i]) <= tol,
                          "%s M=%d N=%d K=%d width %d act %s: C[%zu,%zu] = %.9g, expected %.9g",
                          name, s.M, s.N, s.K, width, act, i / (size_t)s.N, i % (size_t)s.N,
                          (double)C[i], R[i]);
        }
    }
    free(A);
    free(B);
    free(bias);
    free(H);
    free(C);
    free(C2);
    free(R);
    free(mag);
    cg_program_dispose(p);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
}

/* _i: shape index; each width and one activation (cycled) per shape. */
START_TEST(test_gemm_shapes) {
    shape s = shape_at(_i);
    static const int widths[] = {4, 8, 16};
    for (int w = 0; w < 3; w++) check_shape(s, widths[w], g_acts[(_i + w) % 4]);
}
END_TEST

/* The C API refuses a backend that does not exist, naming it. */
START_TEST(test_gemm_api_unknown) {
    const char *text = "module @g\nfunc @infer(%x : f32[?,2]) -> f32[?,2] {\n  return %x\n}\n";
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_module_parse(text, strlen(text), "g.kir", &m, d), KILN_OK);
    kiln_model_opts mo = {KILN_BACKEND_JIT, 1, 1, (kiln_gemm)7};
    kiln_model *model = NULL;
    ck_assert_int_eq(kiln_model_create(m, &mo, &model, d), KILN_ERR_INVALID);
    ck_assert_ptr_null(model);
    ck_assert_msg(strstr(kiln_diag_message(d), "unknown GEMM backend 7") != NULL, "%s",
                  kiln_diag_message(d));
    kiln_diag_dispose(d);
    d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_parse(text, strlen(text), "g.kir", &m, d), KILN_OK);
    kiln_aot_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.output = "/nonexistent/lib.so";
    ao.gemm = (kiln_gemm)3;
    ck_assert_int_eq(kiln_compile_aot(m, &ao, d), KILN_ERR_INVALID);
    ck_assert_msg(strstr(kiln_diag_message(d), "unknown GEMM backend 3") != NULL, "%s",
                  kiln_diag_message(d));
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
}
END_TEST

int main(void) {
    Suite *su = suite_create("gemm");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_gemm_shapes, 0, N_FIXED + N_RANDOM);
    tcase_add_test(tc, test_gemm_api_unknown);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

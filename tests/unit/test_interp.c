/*
 * test_interp.c — the reference interpreter against values computed by hand
 * (or with a calculator, never with Kiln), one table of cases keyed by
 * opcode. A test loops over ops.def and fails for an op without a case.
 *
 * Each case is a small module whose function @f is run with the batch bound
 * to `batch`; inputs and expected outputs are listed flat, row-major, and
 * converted to each argument's dtype. V() lists end with a sentinel so a
 * list of the wrong length fails the case instead of reading past it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/philox.h"
#include "testutil.h"

#define END    1e300
#define V(...) ((const double[]){__VA_ARGS__, END})

/* One op of one input %x (or two, %x and %y) and one result. */
#define F1(expr, tx, tout)                                                                         \
    "module @t\nfunc @f(%x : " tx ") -> " tout " {\n  %0 = " expr " : " tout "\n  return %0\n}\n"
#define F2(expr, tx, ty, tout)                                                                     \
    "module @t\nfunc @f(%x : " tx ", %y : " ty ") -> " tout " {\n  %0 = " expr " : " tout          \
    "\n  return %0\n}\n"

typedef struct icase {
    int op;
    const char *what;
    const char *kir;
    int64_t batch;
    const double *in[4];
    const double *want[2];
    const double *gin[3];   /* initial data of module globals (NULL: zeros) */
    const double *gwant[3]; /* globals after the run (NULL: not checked) */
} icase;

/* x = [[1,2,3],[4,5,6]] as f32[?,3] with batch 2: the reduction input. */
#define X23 V(1, 2, 3, 4, 5, 6)
/* [[1,5,3],[4,2,6]] for max and argmax. */
#define M23 V(1, 5, 3, 4, 2, 6)
/* 0..20 as a batch of 7 rows of 3. */
#define R7         V(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
#define ROW_LOGITS V(1, 2, 3, 0, 0, 0)

/* clang-format off */
static const icase g_cases[] = {
    /* ---- elementwise ---- */
    {.op = IR_OP_neg, "neg", F1("neg(%x)", "f32[?,3]", "f32[?,3]"), 2, {V(1, -2, 0.5, 0, 3, -0.25)},
     {V(-1, 2, -0.5, 0, -3, 0.25)}},
    {.op = IR_OP_exp, "exp", F1("exp(%x)", "f32[4]", "f32[4]"), 1, {V(0, 1, -1, 2)},
     {V(1, 2.718281828459045, 0.36787944117144233, 7.38905609893065)}},
    /* log of f32(e) = 2.71828174 is 0.99999997 */
    {.op = IR_OP_log, "log", F1("log(%x)", "f32[4]", "f32[4]"), 1, {V(1, 2.718281828, 0.5, 10)},
     {V(0, 0.99999996963214, -0.6931471805599453, 2.302585092994046)}},
    {.op = IR_OP_sqrt, "sqrt", F1("sqrt(%x)", "f32[4]", "f32[4]"), 1, {V(4, 2, 0.25, 0)},
     {V(2, 1.4142135623730951, 0.5, 0)}},
    {.op = IR_OP_pow, "pow cube", F1("pow(%x) {exponent=3}", "f32[3]", "f32[3]"), 1,
     {V(2, -1.5, 0.5)}, {V(8, -3.375, 0.125)}},
    {.op = IR_OP_pow, "pow root", F1("pow(%x) {exponent=0.5}", "f32[2]", "f32[2]"), 1, {V(9, 0.25)},
     {V(3, 0.5)}},
    {.op = IR_OP_relu, "relu", F1("relu(%x)", "f32[?]", "f32[?]"), 4, {V(-1, 0, 2.5, -1e-30)},
     {V(0, 0, 2.5, 0)}},
    {.op = IR_OP_leaky_relu, "leaky_relu", F1("leaky_relu(%x) {alpha=0.1}", "f32[3]", "f32[3]"), 1,
     {V(-2, 3, 0)}, {V(-0.2, 3, 0)}},
    {.op = IR_OP_sigmoid, "sigmoid", F1("sigmoid(%x)", "f32[3]", "f32[3]"), 1, {V(0, 2, -2)},
     {V(0.5, 0.8807970779778823, 0.11920292202211755)}},
    {.op = IR_OP_tanh, "tanh", F1("tanh(%x)", "f32[3]", "f32[3]"), 1, {V(0, 0.5, -1)},
     {V(0, 0.46211715726000974, -0.7615941559557649)}},
    /* f32 -> i32 truncates toward zero */
    {.op = IR_OP_cast, "cast to i32", F1("cast(%x) {dtype=i32}", "f32[4]", "i32[4]"), 1,
     {V(1.7, -1.7, 2, -0.5)}, {V(1, -1, 2, 0)}},
    {.op = IR_OP_cast, "cast to f32", F1("cast(%x) {dtype=f32}", "i32[2]", "f32[2]"), 1, {V(3, -4)},
     {V(3, -4)}},

    /* ---- broadcasting: row, column, scalar, outer; batch 7 ---- */
    {.op = IR_OP_add, "add row, batch 7", F2("add(%x, %y)", "f32[?,3]", "f32[3]", "f32[?,3]"), 7,
     {R7, V(100, 200, 300)},
     {V(100, 201, 302, 103, 204, 305, 106, 207, 308, 109, 210, 311, 112, 213, 314, 115, 216, 317,
      118, 219, 320)}},
    {.op = IR_OP_add, "add i32 scalar", F2("add(%x, %y)", "i32[3]", "i32[]", "i32[3]"), 1,
     {V(1, 2, 3), V(10)}, {V(11, 12, 13)}},
    {.op = IR_OP_sub, "sub column", F2("sub(%x, %y)", "f32[?,3]", "f32[?,1]", "f32[?,3]"), 2,
     {X23, V(10, 20)}, {V(-9, -8, -7, -16, -15, -14)}},
    {.op = IR_OP_mul, "mul scalar", F2("mul(%x, %y)", "f32[2,3]", "f32[]", "f32[2,3]"), 1,
     {X23, V(2.5)}, {V(2.5, 5, 7.5, 10, 12.5, 15)}},
    {.op = IR_OP_mul, "mul scalar first", F2("mul(%x, %y)", "f32[]", "f32[?,2]", "f32[?,2]"), 1,
     {V(-2), V(3, 4)}, {V(-6, -8)}},
    {.op = IR_OP_div, "div row", F2("div(%x, %y)", "f32[?,2]", "f32[2]", "f32[?,2]"), 2,
     {V(1, 2, 3, 4), V(2, 8)}, {V(0.5, 0.25, 1.5, 0.5)}},
    /* a column against a row: an outer broadcast [3,1] x [2] -> [3,2] */
    {.op = IR_OP_maximum, "maximum outer", F2("maximum(%x, %y)", "f32[3,1]", "f32[2]", "f32[3,2]"),
     1, {V(1, 5, 3), V(2, 4)}, {V(2, 4, 5, 5, 3, 4)}},
    {.op = IR_OP_minimum, "minimum outer", F2("minimum(%x, %y)", "f32[3,1]", "f32[2]", "f32[3,2]"),
     1, {V(1, 5, 3), V(2, 4)}, {V(1, 1, 2, 4, 2, 3)}},
    {.op = IR_OP_equal, "equal", F2("equal(%x, %y)", "f32[3]", "f32[3]", "i32[3]"), 1,
     {V(1, 2, 3), V(1, 0, 3)}, {V(1, 0, 1)}},
    {.op = IR_OP_greater, "greater scalar", F2("greater(%x, %y)", "f32[?,3]", "f32[]", "i32[?,3]"),
     1, {V(1, 2, 3), V(2)}, {V(0, 0, 1)}},
    {.op = IR_OP_select, "select",
     "module @t\nfunc @f(%c : i32[3], %a : f32[3], %b : f32[]) -> f32[3] {\n"
     "  %0 = select(%c, %a, %b) : f32[3]\n  return %0\n}\n",
     1, {V(1, 0, 1), V(1, 2, 3), V(9)}, {V(1, 9, 3)}},
    {.op = IR_OP_broadcast_to, "broadcast_to rows",
     F1("broadcast_to(%x) {shape=[2,3]}", "f32[3]", "f32[2,3]"), 1, {V(1, 2, 3)},
     {V(1, 2, 3, 1, 2, 3)}},
    {.op = IR_OP_broadcast_to, "broadcast_to batch column",
     F1("broadcast_to(%x) {shape=[?,3]}", "f32[?,1]", "f32[?,3]"), 2, {V(4, 5)},
     {V(4, 4, 4, 5, 5, 5)}},
    {.op = IR_OP_constant, "constant f32",
     "module @t\nfunc @f() -> f32[2,2] {\n  %0 = constant() {value=2.5} : f32[2,2]\n"
     "  return %0\n}\n",
     1, {NULL}, {V(2.5, 2.5, 2.5, 2.5)}},
    {.op = IR_OP_constant, "constant i32 batch",
     "module @t\nfunc @f() -> i32[?] {\n  %0 = constant() {value=7} : i32[?]\n  return %0\n}\n", 3,
     {NULL}, {V(7, 7, 7)}},

    /* ---- reductions over each axis, with and without keepdims ---- */
    {.op = IR_OP_reduce_sum, "sum axis 0", F1("reduce_sum(%x) {axes=[0]}", "f32[?,3]", "f32[3]"), 2,
     {X23}, {V(5, 7, 9)}},
    {.op = IR_OP_reduce_sum, "sum axis 1", F1("reduce_sum(%x) {axes=[1]}", "f32[?,3]", "f32[?]"), 2,
     {X23}, {V(6, 15)}},
    {.op = IR_OP_reduce_sum, "sum axis 0 keepdims",
     F1("reduce_sum(%x) {axes=[0], keepdims=true}", "f32[?,3]", "f32[1,3]"), 2, {X23},
     {V(5, 7, 9)}},
    {.op = IR_OP_reduce_sum, "sum axis 1 keepdims",
     F1("reduce_sum(%x) {axes=[1], keepdims=true}", "f32[?,3]", "f32[?,1]"), 2, {X23}, {V(6, 15)}},
    {.op = IR_OP_reduce_sum, "sum all", F1("reduce_sum(%x)", "f32[?,3]", "f32[]"), 2, {X23},
     {V(21)}},
    {.op = IR_OP_reduce_sum, "sum all keepdims",
     F1("reduce_sum(%x) {keepdims=true}", "f32[?,3]", "f32[1,1]"), 2, {X23}, {V(21)}},
    {.op = IR_OP_reduce_sum, "sum rank 3 axis 0",
     F1("reduce_sum(%x) {axes=[0]}", "f32[2,2,2]", "f32[2,2]"), 1, {V(0, 1, 2, 3, 4, 5, 6, 7)},
     {V(4, 6, 8, 10)}},
    {.op = IR_OP_reduce_sum, "sum rank 3 axis 1",
     F1("reduce_sum(%x) {axes=[1]}", "f32[2,2,2]", "f32[2,2]"), 1, {V(0, 1, 2, 3, 4, 5, 6, 7)},
     {V(2, 4, 10, 12)}},
    {.op = IR_OP_reduce_sum, "sum rank 3 axis -1",
     F1("reduce_sum(%x) {axes=[-1]}", "f32[2,2,2]", "f32[2,2]"), 1, {V(0, 1, 2, 3, 4, 5, 6, 7)},
     {V(1, 5, 9, 13)}},
    {.op = IR_OP_reduce_sum, "sum over batch 7",
     F1("reduce_sum(%x) {axes=[0]}", "f32[?,3]", "f32[3]"), 7, {R7}, {V(63, 70, 77)}},
    {.op = IR_OP_reduce_sum, "sum batch 1", F1("reduce_sum(%x) {axes=[0]}", "f32[?,3]", "f32[3]"),
     1, {V(1, 2, 3)}, {V(1, 2, 3)}},
    {.op = IR_OP_reduce_sum, "sum i32", F1("reduce_sum(%x) {axes=[1]}", "i32[2,2]", "i32[2]"), 1,
     {V(1, 2, 3, 4)}, {V(3, 7)}},
    {.op = IR_OP_reduce_mean, "mean axis 0", F1("reduce_mean(%x) {axes=[0]}", "f32[?,3]", "f32[3]"),
     2, {X23}, {V(2.5, 3.5, 4.5)}},
    {.op = IR_OP_reduce_mean, "mean axis 1", F1("reduce_mean(%x) {axes=[1]}", "f32[?,3]", "f32[?]"),
     2, {X23}, {V(2, 5)}},
    {.op = IR_OP_reduce_mean, "mean axis 1 keepdims",
     F1("reduce_mean(%x) {axes=[1], keepdims=true}", "f32[?,3]", "f32[?,1]"), 2, {X23}, {V(2, 5)}},
    {.op = IR_OP_reduce_mean, "mean all", F1("reduce_mean(%x)", "f32[?,3]", "f32[]"), 2, {X23},
     {V(3.5)}},
    {.op = IR_OP_reduce_mean, "mean over batch 7",
     F1("reduce_mean(%x) {axes=[0]}", "f32[?,3]", "f32[3]"), 7, {R7}, {V(9, 10, 11)}},
    {.op = IR_OP_reduce_max, "max axis 0", F1("reduce_max(%x) {axes=[0]}", "f32[?,3]", "f32[3]"), 2,
     {M23}, {V(4, 5, 6)}},
    {.op = IR_OP_reduce_max, "max axis 1", F1("reduce_max(%x) {axes=[1]}", "f32[?,3]", "f32[?]"), 2,
     {M23}, {V(5, 6)}},
    {.op = IR_OP_reduce_max, "max axis 0 keepdims",
     F1("reduce_max(%x) {axes=[0], keepdims=true}", "f32[?,3]", "f32[1,3]"), 2, {M23},
     {V(4, 5, 6)}},
    {.op = IR_OP_reduce_max, "max all", F1("reduce_max(%x)", "f32[?,3]", "f32[]"), 2,
     {V(-1, -5, -3, -4, -2, -6)}, {V(-1)}},
    {.op = IR_OP_argmax, "argmax axis 0", F1("argmax(%x)", "f32[?,3]", "i32[3]"), 2, {M23},
     {V(1, 0, 1)}},
    {.op = IR_OP_argmax, "argmax axis 1", F1("argmax(%x) {axis=1}", "f32[?,3]", "i32[?]"), 2, {M23},
     {V(1, 2)}},
    {.op = IR_OP_argmax, "argmax ties keep the first", F1("argmax(%x)", "f32[3]", "i32[]"), 1,
     {V(2, 2, 1)}, {V(0)}},
    {.op = IR_OP_softmax, "softmax axis 1", F1("softmax(%x) {axis=1}", "f32[?,3]", "f32[?,3]"), 2,
     {ROW_LOGITS},
     {V(0.09003057317038046, 0.24472847105479764, 0.6652409557748218, 1.0 / 3, 1.0 / 3, 1.0 / 3)}},
    {.op = IR_OP_softmax, "softmax axis 0", F1("softmax(%x)", "f32[?,3]", "f32[?,3]"), 2,
     {ROW_LOGITS},
     {V(0.7310585786300049, 0.8807970779778823, 0.9525741268224334, 0.2689414213699951,
      0.11920292202211755, 0.04742587317756679)}},
    {.op = IR_OP_softmax, "softmax batch 1", F1("softmax(%x) {axis=-1}", "f32[?,2]", "f32[?,2]"), 1,
     {V(0, 0)}, {V(0.5, 0.5)}},
    {.op = IR_OP_log_softmax, "log_softmax axis 1",
     F1("log_softmax(%x) {axis=1}", "f32[?,3]", "f32[?,3]"), 2, {ROW_LOGITS},
     {V(-2.4076059644443806, -1.4076059644443804, -0.4076059644443804, -1.0986122886681098,
      -1.0986122886681098, -1.0986122886681098)}},
    {.op = IR_OP_log_softmax, "log_softmax axis 0", F1("log_softmax(%x)", "f32[?,3]", "f32[?,3]"),
     2, {ROW_LOGITS},
     {V(-0.31326168751822286, -0.1269280110429726, -0.04858735157374196, -1.3132616875182228,
      -2.1269280110429727, -3.048587351573742)}},
    {.op = IR_OP_numel, "numel all, batch 7", F1("numel(%x)", "f32[?,3]", "f32[]"), 7, {R7},
     {V(21)}},
    {.op = IR_OP_numel, "numel batch axis", F1("numel(%x) {axes=[0]}", "f32[?,3]", "f32[]"), 7,
     {R7}, {V(7)}},
    {.op = IR_OP_numel, "numel static axis", F1("numel(%x) {axes=[1]}", "f32[?,3]", "f32[]"), 7,
     {R7}, {V(3)}},

    /* ---- batch_norm: x = [[1,2],[3,6]]: batch mean [2,4], biased variance
     * [1,4]; the moving statistics [1,1] and [4,9]; gamma [1,2], beta 0 ---- */
#define BN_F(training)                                                                             \
    "module @t\nfunc @f(%x : f32[?,2], %g : f32[2], %m : f32[2], %v : f32[2]) -> f32[?,2] {\n"  \
    "  %0 = constant() {value=0} : f32[2]\n"                                                       \
    "  %1 = batch_norm(%x, %g, %0, %m, %v) {epsilon=0, training=" training "} : f32[?,2]\n"      \
    "  return %1\n}\n"
    {.op = IR_OP_batch_norm, "batch_norm training (batch statistics)", BN_F("true"), 2,
     {V(1, 2, 3, 6), V(1, 2), V(1, 1), V(4, 9)}, {V(-1, -2, 1, 2)}},
    {.op = IR_OP_batch_norm, "batch_norm inference (moving statistics)", BN_F("false"), 2,
     {V(1, 2, 3, 6), V(1, 2), V(1, 1), V(4, 9)}, {V(0, 2.0 / 3, 1, 10.0 / 3)}},

    /* ---- dropout: Philox4x32-10 uniforms of (seed 1, step, node 2, i) are
     * .1427 .7736 .1803 .4047 .8407 .8734 .7336 .0280 at step 3 and
     * .1128 .9961 .1329 .2829 .9304 .0046 .4481 .2111 at step 4: kept iff
     * u >= rate, scaled by 1 / (1 - rate) ---- */
    {.op = IR_OP_dropout, "dropout step 3",
     F2("dropout(%x, %y) {rate=0.5, seed=1, node=2}", "f32[?,4]", "i32[]", "f32[?,4]"), 2,
     {V(1, 2, 3, 4, 5, 6, 7, 8), V(3)}, {V(0, 4, 0, 0, 10, 12, 14, 0)}},
    {.op = IR_OP_dropout, "dropout step 4 (another mask)",
     F2("dropout(%x, %y) {rate=0.5, seed=1, node=2}", "f32[?,4]", "i32[]", "f32[?,4]"), 2,
     {V(1, 2, 3, 4, 5, 6, 7, 8), V(4)}, {V(0, 4, 0, 0, 10, 0, 0, 0)}},
    {.op = IR_OP_dropout, "dropout rate 0 is the identity",
     F2("dropout(%x, %y) {rate=0, seed=1, node=2}", "f32[?,4]", "i32[]", "f32[?,4]"), 1,
     {V(1, -2, 3, 4), V(3)}, {V(1, -2, 3, 4)}},

    /* ---- matmul with each transpose flag; batch 1 and 7 ---- */
    {.op = IR_OP_matmul, "matmul", F2("matmul(%x, %y)", "f32[2,3]", "f32[3,2]", "f32[2,2]"), 1,
     {X23, V(7, 8, 9, 10, 11, 12)}, {V(58, 64, 139, 154)}},
    {.op = IR_OP_matmul, "matmul transpose_a",
     F2("matmul(%x, %y) {transpose_a=true}", "f32[3,2]", "f32[3,2]", "f32[2,2]"), 1,
     {V(1, 4, 2, 5, 3, 6), V(7, 8, 9, 10, 11, 12)}, {V(58, 64, 139, 154)}},
    {.op = IR_OP_matmul, "matmul transpose_b",
     F2("matmul(%x, %y) {transpose_b=true}", "f32[2,3]", "f32[2,3]", "f32[2,2]"), 1,
     {X23, V(7, 9, 11, 8, 10, 12)}, {V(58, 64, 139, 154)}},
    {.op = IR_OP_matmul, "matmul both transposed",
     F2("matmul(%x, %y) {transpose_a=true, transpose_b=true}", "f32[3,2]", "f32[2,3]", "f32[2,2]"),
     1, {V(1, 4, 2, 5, 3, 6), V(7, 9, 11, 8, 10, 12)}, {V(58, 64, 139, 154)}},
    /* row r of x is [r, r+1, r+2]: its product is [27r + 31, 30r + 34] */
    {.op = IR_OP_matmul, "matmul batch 7", F2("matmul(%x, %y)", "f32[?,3]", "f32[3,2]", "f32[?,2]"),
     7, {V(0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5, 4, 5, 6, 5, 6, 7, 6, 7, 8), V(7, 8, 9, 10, 11, 12)},
     {V(31, 34, 58, 64, 85, 94, 112, 124, 139, 154, 166, 184, 193, 214)}},
    {.op = IR_OP_matmul, "matmul batch 1", F2("matmul(%x, %y)", "f32[?,3]", "f32[3,2]", "f32[?,2]"),
     1, {V(1, 2, 3), V(7, 8, 9, 10, 11, 12)}, {V(58, 64)}},
    /* x^T x over a batch of 3: the batch is the inner dimension */
    {.op = IR_OP_matmul, "matmul over the batch",
     F2("matmul(%x, %y) {transpose_a=true}", "f32[?,2]", "f32[?,2]", "f32[2,2]"), 3,
     {V(1, 2, 3, 4, 5, 6), V(1, 2, 3, 4, 5, 6)}, {V(35, 44, 44, 56)}},

    /* ---- layout ---- */
    {.op = IR_OP_reshape, "reshape batch",
     F1("reshape(%x) {shape=[?,6]}", "f32[?,2,3]", "f32[?,6]"), 2,
     {V(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)}, {V(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)}},
    {.op = IR_OP_reshape, "reshape static", F1("reshape(%x) {shape=[3,2]}", "i32[2,3]", "i32[3,2]"),
     1, {V(1, 2, 3, 4, 5, 6)}, {V(1, 2, 3, 4, 5, 6)}},
    /* one process: the identity (tests/sh/mpi_*.sh run it on several) */
    {.op = IR_OP_allreduce_mean, "allreduce_mean, one process",
     F1("allreduce_mean(%x)", "f32[?,3]", "f32[?,3]"), 2, {V(1, -2, 3, 4, 5, 6.5)},
     {V(1, -2, 3, 4, 5, 6.5)}},
    {.op = IR_OP_allreduce_wait, "allreduce_wait, one process",
     F1("allreduce_wait(%x)", "f32[?,3]", "f32[?,3]"), 2, {V(1, -2, 3, 4, 5, 6.5)},
     {V(1, -2, 3, 4, 5, 6.5)}},
    {.op = IR_OP_transpose, "transpose default", F1("transpose(%x)", "f32[2,3]", "f32[3,2]"), 1,
     {X23}, {V(1, 4, 2, 5, 3, 6)}},
    /* out[c][a][b] = x[a][b][c] with x = 0..11 */
    {.op = IR_OP_transpose, "transpose rank 3",
     F1("transpose(%x) {perm=[2,0,1]}", "f32[2,3,2]", "f32[2,2,3]"), 1,
     {V(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)}, {V(0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11)}},
    {.op = IR_OP_transpose, "transpose batch",
     F1("transpose(%x) {perm=[1,0]}", "f32[?,2]", "f32[2,?]"), 3, {V(1, 2, 3, 4, 5, 6)},
     {V(1, 3, 5, 2, 4, 6)}},
    /* labels out of [0, depth) give a zero row */
    {.op = IR_OP_one_hot, "one_hot", F1("one_hot(%x) {depth=3}", "i32[?]", "f32[?,3]"), 5,
     {V(0, 2, 1, 5, -1)}, {V(1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0)}},

    /* ---- losses: the batch mean ---- */
    /* (-ln 0.5 - ln 0.1) / 2 */
    {.op = IR_OP_categorical_crossentropy, "cce",
     F2("categorical_crossentropy(%x, %y)", "f32[?,3]", "f32[?,3]", "f32[]"), 2,
     {V(0.2, 0.3, 0.5, 0.1, 0.1, 0.8), V(0, 0, 1, 0, 1, 0)}, {V(1.4978661367769954)}},
    /* p = [1,1,2] renormalizes to [0.25,0.25,0.5]: -ln 0.5 */
    {.op = IR_OP_categorical_crossentropy, "cce renormalizes",
     F2("categorical_crossentropy(%x, %y)", "f32[?,3]", "f32[?,3]", "f32[]"), 1,
     {V(1, 1, 2), V(0, 0, 1)}, {V(0.6931471805599453)}},
    /* q clipped to [1e-7, 1 - 1e-7] in f32: (-ln f32(1e-7) - ln f32(1 - 1e-7)) / 2 */
    {.op = IR_OP_categorical_crossentropy, "cce clips",
     F2("categorical_crossentropy(%x, %y)", "f32[?,3]", "f32[?,3]", "f32[]"), 2,
     {V(0, 0, 1, 0, 0, 1), V(1, 0, 0, 0, 0, 1)}, {V(8.05904787924076)}},
    /* soft labels: -(0.5 ln 0.2 + 0.5 ln 0.3) */
    {.op = IR_OP_categorical_crossentropy, "cce soft labels",
     F2("categorical_crossentropy(%x, %y)", "f32[?,3]", "f32[?,3]", "f32[]"), 1,
     {V(0.2, 0.3, 0.5), V(0.5, 0.5, 0)}, {V(1.4067053583800182)}},
    {.op = IR_OP_sparse_categorical_crossentropy, "scce",
     F2("sparse_categorical_crossentropy(%x, %y)", "f32[?,3]", "i32[?]", "f32[]"), 2,
     {V(0.2, 0.3, 0.5, 0.1, 0.1, 0.8), V(2, 1)}, {V(1.4978661367769954)}},
    /* -ln f32(1e-7) */
    {.op = IR_OP_sparse_categorical_crossentropy, "scce clips",
     F2("sparse_categorical_crossentropy(%x, %y)", "f32[?,3]", "i32[?]", "f32[]"), 1,
     {V(0, 0, 1), V(0)}, {V(16.118095637903274)}},
    /* (0 + 4 + 9 + 0) / 4 */
    {.op = IR_OP_mean_squared_error, "mse",
     F2("mean_squared_error(%x, %y)", "f32[?,2]", "f32[?,2]", "f32[]"), 2,
     {V(1, 2, 3, 4), V(1, 0, 0, 4)}, {V(3.25)}},
    /* -(ln 0.9 + ln 0.8) / 2 */
    {.op = IR_OP_binary_crossentropy, "bce",
     F2("binary_crossentropy(%x, %y)", "f32[?,1]", "f32[?,1]", "f32[]"), 2, {V(0.9, 0.2), V(1, 0)},
     {V(0.164252033486018)}},
    /* (-ln(1 - f32(1 - 1e-7)) - ln f32(1e-7)) / 2 */
    {.op = IR_OP_binary_crossentropy, "bce clips",
     F2("binary_crossentropy(%x, %y)", "f32[2]", "f32[2]", "f32[]"), 1, {V(1, 0), V(0, 1)},
     {V(16.030240396075484)}},
    /* (2 + 0.5) / 2 */
    {.op = IR_OP_nll, "nll", F2("nll(%x, %y)", "f32[?,3]", "f32[?,3]", "f32[]"), 2,
     {V(-1, -2, -3, -0.5, -1.5, -2.5), V(0, 1, 0, 1, 0, 0)}, {V(1.25)}},

/* ---- fused ops: x.w + b = [[2.5,-5,1],[5.5,-9,1]] then the activation ---- */
#define DENSE(act)                                                                                 \
    "module @t\nfunc @f(%x : f32[?,2], %w : f32[2,3], %b : f32[3]) -> f32[?,3] {\n"                \
    "  %0 = dense(%x, %w, %b)" act " : f32[?,3]\n  return %0\n}\n"
#define DENSE_IN                                                                                   \
    { V(1, 2, 3, 4), V(1, 0, -1, 0.5, -2, 1), V(0.5, -1, 0) }
    {.op = IR_OP_dense, "dense none", DENSE(""), 2, DENSE_IN, {V(2.5, -5, 1, 5.5, -9, 1)}},
    {.op = IR_OP_dense, "dense relu", DENSE(" {activation=relu}"), 2, DENSE_IN,
     {V(2.5, 0, 1, 5.5, 0, 1)}},
    {.op = IR_OP_dense, "dense leaky_relu", DENSE(" {activation=leaky_relu, alpha=0.1}"), 2,
     DENSE_IN, {V(2.5, -0.5, 1, 5.5, -0.9, 1)}},
    {.op = IR_OP_dense, "dense sigmoid", DENSE(" {activation=sigmoid}"), 2, DENSE_IN,
     {V(0.9241418199787566, 0.0066928509242848554, 0.7310585786300049, 0.995929862284104,
      0.00012339457598623172, 0.7310585786300049)}},
    {.op = IR_OP_dense, "dense tanh", DENSE(" {activation=tanh}"), 2, DENSE_IN,
     {V(0.9866142981514303, -0.9999092042625951, 0.7615941559557649, 0.9999665971563038,
      -0.999999969540041, 0.7615941559557649)}},
    /* row 0: lse(1,2,3) - 3; row 1: ln 3 */
    {.op = IR_OP_softmax_cross_entropy, "softmax_ce one-hot",
     F2("softmax_cross_entropy(%x, %y)", "f32[?,3]", "f32[?,3]", "f32[]"), 2,
     {ROW_LOGITS, V(0, 0, 1, 1, 0, 0)}, {V(0.753109126556245)}},
    {.op = IR_OP_softmax_cross_entropy, "softmax_ce labels",
     F2("softmax_cross_entropy(%x, %y)", "f32[?,3]", "i32[?]", "f32[]"), 2, {ROW_LOGITS, V(2, 0)},
     {V(0.753109126556245)}},

    /* ---- convolution and pooling (NHWC); x = 1..9 as a 3x3 image ---- */
#define F3(expr, tx, ty, tz, tout)                                                                 \
    "module @t\nfunc @f(%x : " tx ", %y : " ty ", %z : " tz ") -> " tout " {\n  %0 = " expr     \
    " : " tout "\n  return %0\n}\n"
#define X33 V(1, 2, 3, 4, 5, 6, 7, 8, 9)
    /* 1 x00 + 2 x01 + 3 x10 + 4 x11 - 50, relu */
    {.op = IR_OP_conv2d, "conv2d valid relu",
     F3("conv2d(%x, %y, %z) {activation=relu}", "f32[?,3,3,1]", "f32[2,2,1,1]", "f32[1]",
        "f32[?,2,2,1]"), 1, {X33, V(1, 2, 3, 4), V(-50)}, {V(0, 0, 17, 27)}},
    /* ones 3x3, stride 2, same: pad 1 on every side */
    {.op = IR_OP_conv2d, "conv2d same stride 2",
     F3("conv2d(%x, %y, %z) {strides=[2,2], padding=same}", "f32[?,3,3,1]", "f32[3,3,1,1]",
        "f32[1]", "f32[?,2,2,1]"), 1, {X33, V(1, 1, 1, 1, 1, 1, 1, 1, 1), V(0)},
     {V(12, 16, 24, 28)}},
    /* ones 2x2, same: the one padded row and column at the bottom/right */
    {.op = IR_OP_conv2d, "conv2d same pads bottom/right",
     F3("conv2d(%x, %y, %z) {padding=same}", "f32[?,3,3,1]", "f32[2,2,1,1]", "f32[1]",
        "f32[?,3,3,1]"), 1, {X33, V(1, 1, 1, 1), V(0)},
     {V(12, 16, 9, 24, 28, 15, 15, 17, 9)}},
    /* 1 x00 + 2 x02 + 3 x20 + 4 x22 */
    {.op = IR_OP_conv2d, "conv2d dilation 2",
     F3("conv2d(%x, %y, %z) {dilation=[2,2]}", "f32[?,3,3,1]", "f32[2,2,1,1]", "f32[1]",
        "f32[?,1,1,1]"), 1, {X33, V(1, 2, 3, 4), V(0)}, {V(64)}},
    /* channels: [x0 x1] . [[1,2,3],[4,5,6]] + [0,0,1], batch 2 */
    {.op = IR_OP_conv2d, "conv2d channels, batch 2",
     F3("conv2d(%x, %y, %z)", "f32[?,1,1,2]", "f32[1,1,2,3]", "f32[3]", "f32[?,1,1,3]"), 2,
     {V(1, 2, 3, 4), V(1, 2, 3, 4, 5, 6), V(0, 0, 1)}, {V(9, 12, 16, 19, 26, 34)}},
    /* dz = ones: each input cell sums the kernel taps that reach it */
    {.op = IR_OP_conv2d_grad_input, "conv2d_grad_input valid",
     F3("conv2d_grad_input(%x, %y, %z)", "f32[?,2,2,1]", "f32[2,2,1,1]", "f32[?,3,3,1]",
        "f32[?,3,3,1]"), 1, {V(1, 1, 1, 1), V(1, 2, 3, 4), X33},
     {V(1, 3, 2, 4, 10, 6, 3, 7, 4)}},
    {.op = IR_OP_conv2d_grad_filter, "conv2d_grad_filter valid",
     F3("conv2d_grad_filter(%x, %y, %z)", "f32[?,3,3,1]", "f32[?,2,2,1]", "f32[2,2,1,1]",
        "f32[2,2,1,1]"), 1, {X33, V(1, 1, 1, 1), V(0, 0, 0, 0)}, {V(12, 16, 24, 28)}},
#define X44 V(1, 5, 3, 4, 2, 0, 8, 1, 9, 9, 0, 0, 1, 2, 3, 7)
    {.op = IR_OP_max_pool2d, "max_pool2d 2x2",
     F1("max_pool2d(%x)", "f32[?,4,4,1]", "f32[?,2,2,1]"), 1, {X44}, {V(5, 8, 9, 7)}},
    /* same, 3x3 -> 2x2: the padded row and column at the bottom/right */
    {.op = IR_OP_max_pool2d, "max_pool2d same",
     F1("max_pool2d(%x) {padding=same}", "f32[?,3,3,1]", "f32[?,2,2,1]"), 1, {X33},
     {V(5, 6, 8, 9)}},
    /* divides by the real cells: 12/4, 9/2, 15/2, 9/1 */
    {.op = IR_OP_avg_pool2d, "avg_pool2d same",
     F1("avg_pool2d(%x) {padding=same}", "f32[?,3,3,1]", "f32[?,2,2,1]"), 1, {X33},
     {V(3, 4.5, 7.5, 9)}},
    {.op = IR_OP_avg_pool2d, "avg_pool2d 2x2 stride 1, 2 channels",
     F1("avg_pool2d(%x) {pool_size=[2,2], strides=[1,1]}", "f32[?,2,2,2]", "f32[?,1,1,2]"), 1,
     {V(1, 10, 2, 20, 3, 30, 4, 40)}, {V(2.5, 25)}},
    /* the tie of the two 9s goes to the first */
    {.op = IR_OP_max_pool2d_grad, "max_pool2d_grad first max",
     F2("max_pool2d_grad(%x, %y)", "f32[?,4,4,1]", "f32[?,2,2,1]", "f32[?,4,4,1]"), 1,
     {X44, V(1, 2, 3, 4)}, {V(0, 1, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 4)}},
    {.op = IR_OP_avg_pool2d_grad, "avg_pool2d_grad same",
     F2("avg_pool2d_grad(%x, %y) {padding=same}", "f32[?,3,3,1]", "f32[?,2,2,1]",
        "f32[?,3,3,1]"), 1, {X33, V(4, 6, 8, 5)}, {V(1, 1, 3, 1, 1, 3, 4, 4, 5)}},

    /* ---- effects and regions ---- */
    {.op = IR_OP_assign, "assign writes a global",
     "module @t\nstate @g : f32[3] = zeros\nfunc @f(%x : f32[3]) -> () {\n"
     "  assign(@g, %x)\n  return\n}\n",
     1, {V(4, -5, 6)}, {NULL}, {V(1, 1, 1)}, {V(4, -5, 6)}},
    {.op = IR_OP_assign, "assign increments a counter",
     "module @t\nstate @step : i32[] = zeros\nfunc @f() -> i32[] {\n"
     "  %0 = constant() {value=1} : i32[]\n  %1 = add(@step, %0) : i32[]\n"
     "  assign(@step, %1)\n  return %1\n}\n",
     1, {NULL}, {V(42)}, {V(41)}, {V(42)}},
    /* relu(x * y + x) with y broadcast over the batch */
    {.op = IR_OP_fused, "fused region with a value",
     "module @t\nfunc @f(%x : f32[?,2], %y : f32[2]) -> f32[?,2] {\n"
     "  %0 = fused(%x, %y) : f32[?,2] {\n    %1 = mul(%x, %y) : f32[?,2]\n"
     "    %2 = add(%1, %x) : f32[?,2]\n    %3 = relu(%2) : f32[?,2]\n    yield %3\n  }\n"
     "  return %0\n}\n",
     2, {V(1, -2, 3, -4), V(2, 0.5)}, {V(3, 0, 9, 0)}},
    /* m' = 0.9 m + g, w' = w - m' */
    {.op = IR_OP_fused, "fused region of assigns",
     "module @t\nparam @w : f32[2] = zeros\nstate @m : f32[2] = zeros\n"
     "func @f(%g : f32[2]) -> () {\n  fused(@m, %g, @w) {\n"
     "    %0 = constant() {value=0.9} : f32[]\n    %1 = mul(@m, %0) : f32[2]\n"
     "    %2 = add(%1, %g) : f32[2]\n    %3 = sub(@w, %2) : f32[2]\n"
     "    assign(@m, %2)\n    assign(@w, %3)\n  }\n  return\n}\n",
     1, {V(0.5, -1)}, {NULL}, {V(10, 10), V(1, 2)}, {V(8.6, 9.2), V(1.4, 0.8)}},
    /* ---- Keras 3 activations: keras.activations' definitions, in double ---- */
    {.op = IR_OP_erf, "erf", F1("erf(%x)", "f32[4]", "f32[4]"), 1, {V(0, 0.5, -1.5, 3)},
     {V(0, 0.5204998778130465, -0.9661051464753108, 0.9999779095030014)}},
    {.op = IR_OP_elu, "elu (alpha 1)", F1("elu(%x)", "f32[3]", "f32[3]"), 1, {V(-1, 0, 2)},
     {V(-0.6321205588285577, 0, 2)}},
    {.op = IR_OP_elu, "elu alpha 0.5", F1("elu(%x) {alpha=0.5}", "f32[1]", "f32[1]"), 1, {V(-2)},
     {V(-0.43233235838169365)}},
    {.op = IR_OP_relu6, "relu6", F1("relu6(%x)", "f32[3]", "f32[3]"), 1, {V(-1, 3, 7)},
     {V(0, 3, 6)}},
    {.op = IR_OP_gelu, "gelu (erf)", F1("gelu(%x)", "f32[3]", "f32[3]"), 1, {V(-1, 0, 1.5)},
     {V(-0.15865525393145707, 0, 1.399789198096713)}},
    {.op = IR_OP_softplus, "softplus", F1("softplus(%x)", "f32[4]", "f32[4]"), 1,
     {V(-20, 0, 2, 30)}, {V(2.061153620314381e-09, 0.6931471805599453, 2.1269280110429727, 30)}},
    {.op = IR_OP_silu, "silu", F1("silu(%x)", "f32[3]", "f32[3]"), 1, {V(-1, 0, 2)},
     {V(-0.2689414213699951, 0, 1.7615941559557646)}},
    {.op = IR_OP_hard_sigmoid, "hard_sigmoid = relu6(x + 3) / 6", F1("hard_sigmoid(%x)", "f32[4]", "f32[4]"), 1,
     {V(-4, 0, 1.5, 4)}, {V(0, 0.5, 0.75, 1)}},
    /* dz [2 images, 1x2 pixels, 2 channels] summed per channel */
    {.op = IR_OP_conv2d_grad_bias, "conv2d_grad_bias, batch 2",
     F1("conv2d_grad_bias(%x)", "f32[?,1,2,2]", "f32[2]"), 2, {V(1, 2, 3, 4, 5, 6, 7, -8)},
     {V(16, 4)}},
    /* x = [[1, 2, 3], [4, 5, 6]]: one 9 ahead of each row, the last column cropped */
    {.op = IR_OP_pad, "pad and crop", F1("pad(%x) {before=[0,1], after=[0,-1], value=9}", "f32[?,3]", "f32[?,3]"),
     2, {V(1, 2, 3, 4, 5, 6)}, {V(9, 1, 2, 9, 4, 5)}},
    /* a row of -1 above, two columns of -1 right of a [2, 2] */
    {.op = IR_OP_pad, "pad rank 2", F1("pad(%x) {before=[1,0], after=[0,2], value=-1}", "f32[2,2]", "f32[3,4]"),
     1, {V(1, 2, 3, 4)}, {V(-1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1)}},
    /* x = [1, 2, 3] per row: reflect 2 ahead, 1 behind (PyTorch's ReflectionPad1d((2, 1))) */
    {.op = IR_OP_pad, "pad reflect", F1("pad(%x) {before=[0,2], after=[0,1], mode=reflect}", "f32[?,3]", "f32[?,6]"),
     1, {V(1, 2, 3)}, {V(3, 2, 1, 2, 3, 2)}},
    /* edge (PyTorch's replicate) 1 ahead, 2 behind, the first cropped on the other axis */
    {.op = IR_OP_pad, "pad edge", F1("pad(%x) {before=[-1,1], after=[0,2], mode=edge}", "f32[2,2]", "f32[1,5]"),
     1, {V(1, 2, 3, 4)}, {V(3, 3, 4, 4, 4)}},
    /* x y = [58, 64, 139, 154] (the matmul cases'), kept where z > 0: 0 and
     * -2 mask to 0, NaN too; alpha 0.5 halves what it masks instead */
    {.op = IR_OP_matmul_mask, "matmul_mask relu'",
     F3("matmul_mask(%x, %y, %z)", "f32[2,3]", "f32[3,2]", "f32[2,2]", "f32[2,2]"), 1,
     {X23, V(7, 8, 9, 10, 11, 12), V(1, 0, -2, 5)}, {V(58, 0, 0, 154)}},
    {.op = IR_OP_matmul_mask, "matmul_mask leaky_relu', transpose_b, batch 2",
     F3("matmul_mask(%x, %y, %z) {transpose_b=true, alpha=0.5}", "f32[?,3]", "f32[2,3]",
        "f32[?,2]", "f32[?,2]"),
     2, {X23, V(7, 9, 11, 8, 10, 12), V(1, -1, NAN, 3)}, {V(58, 32, 69.5, 154)}},
};
/* clang-format on */
/* ----------------------------------------------------------- the runner */

static int64_t count(const double *v) {
    int64_t n = 0;
    while (v[n] != END) n++;
    return n;
}

/* A buffer of t's element count at `batch`, filled from v (or zeros). */
static void *make_buf(const ir_type *t, int64_t batch, const double *v, const char *what,
                      const char *which) {
    int64_t n = ir_type_numel(t, batch);
    if (v)
        ck_assert_msg(count(v) == n, "%s: %s has %lld values, the type needs %lld", what, which,
                      (long long)count(v), (long long)n);
    void *p = calloc((size_t)(n ? n : 1), 4);
    for (int64_t i = 0; v && i < n; i++) {
        if (t->dtype == IR_I32)
            ((int32_t *)p)[i] = (int32_t)v[i];
        else
            ((float *)p)[i] = (float)v[i];
    }
    return p;
}

static void check_buf(const ir_type *t, int64_t batch, const void *got, const double *want,
                      const char *what, const char *which) {
    int64_t n = ir_type_numel(t, batch);
    ck_assert_msg(count(want) == n, "%s: %s lists %lld values, the type has %lld", what, which,
                  (long long)count(want), (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == IR_I32) {
            int32_t g = ((const int32_t *)got)[i];
            ck_assert_msg(g == (int32_t)want[i], "%s: %s[%lld] = %d, want %d", what, which,
                          (long long)i, g, (int)want[i]);
        } else {
            double g = ((const float *)got)[i], w = want[i];
            /* f32 results: a few ulps relative, 1e-7 absolute near zero */
            ck_assert_msg(tu_close(g, w, 1e-7, 2e-6), "%s: %s[%lld] = %.9g, want %.9g", what, which,
                          (long long)i, g, w);
        }
    }
}

/* Runs function @name of m on the case's data; returns the result buffers. */
static void run_case(const icase *c) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_module_parse(c->kir, strlen(c->kir), c->what, &m, d);
    ck_assert_msg(st == KILN_OK, "%s: %s", c->what, kiln_diag_message(d));
    kiln_func *f = kiln_module_func(m, "f");
    ck_assert_ptr_nonnull(f);
    void *args[4] = {0}, *res[2] = {0}, *glob[3] = {0};
    ck_assert(f->n_args <= 4 && f->n_results <= 2 && m->n_globals <= 3);
    for (int i = 0; i < f->n_args; i++)
        args[i] = make_buf(&f->args[i]->type, c->batch, c->in[i], c->what, "input");
    for (int i = 0; i < f->n_results; i++)
        res[i] = make_buf(&f->results[i]->type, c->batch, NULL, c->what, "result");
    for (int i = 0; i < m->n_globals; i++)
        glob[i] = make_buf(&m->globals[i]->type, 1, c->gin[i], c->what, m->globals[i]->name);
    st = ir_interp_run(f, c->batch, args, res, glob, d);
    ck_assert_msg(st == KILN_OK, "%s: %s", c->what, kiln_diag_message(d));
    for (int i = 0; i < f->n_results; i++) {
        ck_assert_msg(c->want[i] != NULL, "%s: no expected values for result %d", c->what, i);
        check_buf(&f->results[i]->type, c->batch, res[i], c->want[i], c->what, "result");
    }
    for (int i = 0; i < m->n_globals; i++)
        if (c->gwant[i])
            check_buf(&m->globals[i]->type, 1, glob[i], c->gwant[i], c->what, m->globals[i]->name);
    for (int i = 0; i < 4; i++) free(args[i]);
    for (int i = 0; i < 2; i++) free(res[i]);
    for (int i = 0; i < 3; i++) free(glob[i]);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
}

START_TEST(test_case) {
    const icase *c = &g_cases[_i];
    ck_assert_msg(strstr(c->kir, ir_op_name(c->op)) != NULL, "%s: the module does not use %s",
                  c->what, ir_op_name(c->op));
    run_case(c);
}
END_TEST

/* Random123's known-answer vectors (tests/kat_vectors, philox4x32 10). */
START_TEST(test_philox_known_answers) {
    static const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                       {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                                       {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
    static const uint32_t key[3][2] = {{0, 0}, {0xffffffff, 0xffffffff}, {0xa4093822, 0x299f31d0}};
    static const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                        {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                        {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        ir_philox4x32_10(ctr[v], key[v], out);
        for (int w = 0; w < 4; w++)
            ck_assert_msg(out[w] == want[v][w], "vector %d word %d: %08x, want %08x", v, w, out[w],
                          want[v][w]);
    }
}
END_TEST

START_TEST(test_every_op_has_a_case) {
    char missing[2048] = "";
    for (int op = IR_FIRST_OP; op < IR_NUM_OPCODES; op++) {
        int n = 0;
        for (size_t i = 0; i < KILN_ARRAY_LEN(g_cases); i++) n += g_cases[i].op == op;
        if (!n) {
            strncat(missing, " ", sizeof missing - strlen(missing) - 1);
            strncat(missing, ir_op_name(op), sizeof missing - strlen(missing) - 1);
        }
    }
    ck_assert_msg(!missing[0], "ops of ops.def without an interpreter case:%s", missing);
}
END_TEST

/* ------------------------------------------------ planned == unplanned */

/* The same graph twice; @planned places every value by hand in one
 * workspace, reusing slots (in place where an elementwise op allows). */
static const char *g_planned =
    "module @p\n"
    "param @w : f32[4,3] = zeros\n"
    "param @b : f32[3] = zeros\n"
    "func @plain(%x : f32[?,4]) -> (f32[?,3], f32[3]) {\n"
    "  %0 = matmul(%x, @w) : f32[?,3]\n"
    "  %1 = add(%0, @b) : f32[?,3]\n"
    "  %2 = relu(%1) : f32[?,3]\n"
    "  %3 = reduce_sum(%2) {axes=[0]} : f32[3]\n"
    "  %4 = add(%2, %3) : f32[?,3]\n"
    "  %5 = mul(%4, %4) : f32[?,3]\n"
    "  return %5, %3\n"
    "}\n"
    "func @planned(%x : f32[?,4]) -> (f32[?,3], f32[3]) mem(fixed=12, per_sample=24) {\n"
    "  %0 = matmul(%x, @w) : f32[?,3] mem(b:0)\n"
    "  %1 = add(%0, @b) : f32[?,3] mem(b:12)\n"
    "  %2 = relu(%1) : f32[?,3] mem(b:12,inplace)\n"
    "  %3 = reduce_sum(%2) {axes=[0]} : f32[3] mem(f:0)\n"
    "  %4 = add(%2, %3) : f32[?,3] mem(b:0)\n"
    "  %5 = mul(%4, %4) : f32[?,3] mem(b:0,inplace)\n"
    "  return %5, %3\n"
    "}\n";

static void run_pair(kiln_module *m, int64_t batch, const float *x, float *y_plain, float *s_plain,
                     float *y_plan, float *s_plan, void *const *glob) {
    kiln_diag *d = kiln_diag_create();
    void *args[1] = {(void *)x}, *r1[2] = {y_plain, s_plain}, *r2[2] = {y_plan, s_plan};
    ck_assert_msg(ir_interp_run(kiln_module_func(m, "plain"), batch, args, r1, glob, d) == KILN_OK,
                  "%s", kiln_diag_message(d));
    ck_assert_msg(ir_interp_run(kiln_module_func(m, "planned"), batch, args, r2, glob, d) ==
                      KILN_OK,
                  "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
}

START_TEST(test_planned_equals_unplanned) {
    kiln_module *m = tu_parse(g_planned);
    ck_assert(kiln_module_func(m, "planned")->planned);
    /* Hand-computed at batch 1: x.w = [-2,1,2], +b = [-1.5,1.5,-4], relu
     * = [0,1.5,0] = its own column sum, so (relu + sum)^2 = [0,9,0]. */
    float w[12] = {1, 0, -1, 2, 1, 0, 0, 1, 1, -2, 0, 2}, b[3] = {0.5f, 0.5f, -6};
    void *glob[2] = {w, b};
    float x1[4] = {1, -1, 2, 0.5f}, y1[3], s1[3], y2[3], s2[3];
    run_pair(m, 1, x1, y1, s1, y2, s2, glob);
    const float want_y[3] = {0, 9, 0}, want_s[3] = {0, 1.5f, 0};
    ck_assert(memcmp(y1, want_y, sizeof y1) == 0 && memcmp(s1, want_s, sizeof s1) == 0);
    ck_assert(memcmp(y2, want_y, sizeof y2) == 0 && memcmp(s2, want_s, sizeof s2) == 0);
    /* Batch 7 of random inputs and weights: bit-identical results. */
    float xr[28], ya[21], sa[3], yb[21], sb[3];
    tu_fill_uniform(xr, 28, 1, -1, 1);
    tu_fill_uniform(w, 12, 2, -1, 1);
    tu_fill_uniform(b, 3, 3, -0.5f, 0.5f);
    run_pair(m, 7, xr, ya, sa, yb, sb, glob);
    ck_assert(memcmp(ya, yb, sizeof ya) == 0 && memcmp(sa, sb, sizeof sa) == 0);
    double nonzero = 0;
    for (int i = 0; i < 21; i++) nonzero += ya[i] != 0;
    ck_assert(nonzero > 0);
    kiln_module_dispose(m);
}
END_TEST

/* A wrong plan shows up as wrong numbers: @bad puts the sum where the
 * relu it still needs to read lives. */
START_TEST(test_wrong_plan_is_visible) {
    const char *text =
        "module @p\n"
        "func @bad(%x : f32[?,3]) -> f32[?,3] mem(fixed=0, per_sample=12) {\n"
        "  %0 = neg(%x) : f32[?,3] mem(b:0)\n"
        "  %1 = relu(%x) : f32[?,3] mem(b:0)\n" /* overwrites %0 before %2 reads it */
        "  %2 = add(%0, %1) : f32[?,3]\n"
        "  return %2\n"
        "}\n";
    kiln_module *m = tu_parse(text);
    kiln_diag *d = kiln_diag_create();
    float x[3] = {1, -2, 3}, y[3];
    void *args[1] = {x}, *res[1] = {y};
    ck_assert_int_eq(ir_interp_run(kiln_module_func(m, "bad"), 1, args, res, NULL, d), KILN_OK);
    /* Correct: -x + relu(x) = [0, 2, 0]; with the clash: relu(x) + relu(x). */
    ck_assert(y[0] == 2 && y[1] == 0 && y[2] == 6);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_label_out_of_range) {
    kiln_module *m =
        tu_parse(F2("sparse_categorical_crossentropy(%x, %y)", "f32[?,2]", "i32[?]", "f32[]"));
    kiln_diag *d = kiln_diag_create();
    float p[4] = {0.5f, 0.5f, 0.5f, 0.5f}, out;
    int32_t lab[2] = {1, 2};
    void *args[2] = {p, lab}, *res[1] = {&out};
    ck_assert_int_eq(ir_interp_run(kiln_module_func(m, "f"), 2, args, res, NULL, d),
                     KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d), "kiln: error: sparse_categorical_crossentropy: label 2 "
                                           "is out of range [0, 2)\n");
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

Suite *interp_suite(void) {
    Suite *s = suite_create("interp");
    TCase *tc = tcase_create("ops");
    tcase_add_test(tc, test_every_op_has_a_case);
    tcase_add_test(tc, test_philox_known_answers);
    tcase_add_loop_test(tc, test_case, 0, (int)KILN_ARRAY_LEN(g_cases));
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("plans");
    tcase_add_test(tp, test_planned_equals_unplanned);
    tcase_add_test(tp, test_wrong_plan_is_visible);
    tcase_add_test(tp, test_label_out_of_range);
    suite_add_tcase(s, tp);
    return s;
}

int main(void) {
    return tu_run_suite(interp_suite());
}

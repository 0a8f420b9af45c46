/*
 * test_builder.c — errors of the public builder API (the op and both shapes
 * named; a chain stays invalid and keeps its first error), verifier
 * messages for hand-broken functions, and allocation-failure injection
 * over parsing, printing and interpreting every_op.kir: every failure ends
 * in KILN_ERR_NOMEM with nothing leaked (run under ASan/LSan to see leaks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ------------------------------------------------------- builder errors */

static const int64_t D_B784[] = {KILN_BATCH, 784}, D_128_64[] = {128, 64}, D_B3[] = {KILN_BATCH, 3},
                     D_4[] = {4}, D_2[] = {2}, D_22[] = {2, 2}, D_B4[] = {KILN_BATCH, 4},
                     D_B10[] = {KILN_BATCH, 10}, D_B9[] = {KILN_BATCH, 9}, D_B[] = {KILN_BATCH},
                     D_BB[] = {KILN_BATCH, KILN_BATCH};

START_TEST(test_matmul_message) {
    kiln_module *m = kiln_module_create("b");
    kiln_init z = {KILN_INIT_ZEROS, 0, 0};
    ck_assert_int_eq(kiln_module_add_param(m, "w", KILN_F32, 2, D_128_64, z, NULL), KILN_OK);
    kiln_func *f = kiln_func_create(m, "infer");
    kiln_value x = kiln_input(f, "x", KILN_F32, 2, D_B784);
    kiln_value y = kiln_matmul(f, x, kiln_param(f, "w"), 0, 0);
    ck_assert(!kiln_value_ok(y));
    ck_assert_str_eq(kiln_func_error(f),
                     "kiln: error: matmul: inner dimensions differ: f32[?,784] and f32[128,64]");
    /* With a source location the message points at it. */
    kiln_func *g = kiln_func_create(m, "located");
    kiln_func_set_loc(g, "mnist.kiln", 7, 6);
    x = kiln_input(g, "x", KILN_F32, 2, D_B784);
    y = kiln_matmul(g, x, kiln_param(g, "w"), 0, 1);
    ck_assert_str_eq(kiln_func_error(g),
                     "mnist.kiln:7:6: error: matmul: inner dimensions differ: f32[?,784] and "
                     "f32[128,64]");
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_chain_keeps_first_error) {
    kiln_module *m = kiln_module_create("b");
    kiln_func *f = kiln_func_create(m, "f");
    kiln_value x = kiln_input(f, "x", KILN_F32, 2, D_B3);
    kiln_value b = kiln_input(f, "b", KILN_F32, 1, D_4);
    kiln_value h = kiln_add(f, x, b);
    h = kiln_relu(f, h);
    h = kiln_softmax(f, h, 1);
    kiln_value bad_axis = kiln_softmax(f, x, 5); /* a second, different error */
    ck_assert(!kiln_value_ok(h) && !kiln_value_ok(bad_axis));
    ck_assert_int_eq(kiln_value_rank(f, h), -1);
    ck_assert_int_eq(kiln_output(f, h), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_func_error(f), "kiln: error: add: cannot broadcast: f32[?,3] and f32[4]");
    /* Valid values still build; the function keeps its first error. */
    kiln_value ok = kiln_relu(f, x);
    ck_assert(kiln_value_ok(ok));
    ck_assert_int_eq(kiln_value_rank(f, ok), 2);
    ck_assert_int_eq(kiln_value_dim(f, ok, 0), KILN_BATCH);
    ck_assert_str_eq(kiln_func_error(f), "kiln: error: add: cannot broadcast: f32[?,3] and f32[4]");
    kiln_module_dispose(m);
}
END_TEST

/* One failing builder call per row, each in a fresh function. */
typedef enum {
    B_ADD_DTYPE,
    B_DIV_I32,
    B_SOFTMAX_AXIS,
    B_REDUCE_REPEAT,
    B_RESHAPE,
    B_TRANSPOSE,
    B_ONE_HOT,
    B_CCE,
    B_SCCE,
    B_BCAST_TO,
    B_CONST_DIM,
    B_SELECT,
    B_MATMUL_RANK,
    B_PARAM,
    B_INPUT,
    B_ARGMAX,
    B_CAST,
    B_COUNT
} bcase;

static const char *const g_builder_msgs[B_COUNT] = {
    [B_ADD_DTYPE] = "kiln: error: add: operand dtypes differ: f32[2] and i32[2]",
    [B_DIV_I32] = "kiln: error: div: expects f32 operands, got: i32[2]",
    [B_SOFTMAX_AXIS] = "kiln: error: softmax: axis 2 is out of range for rank 2",
    [B_REDUCE_REPEAT] = "kiln: error: reduce_sum: axis 1 is repeated",
    [B_RESHAPE] = "kiln: error: reshape: element counts differ: f32[?,3] and f32[?,4]",
    [B_TRANSPOSE] = "kiln: error: transpose: not a permutation of 2 axes",
    [B_ONE_HOT] = "kiln: error: one_hot: expects i32 class indices, got: f32[?]",
    [B_CCE] = "kiln: error: categorical_crossentropy: prediction and target shapes differ: "
              "f32[?,10] and f32[?,9]",
    [B_SCCE] = "kiln: error: sparse_categorical_crossentropy: labels must be i32 class indices "
               "for: f32[?] and f32[?,10]",
    [B_BCAST_TO] = "kiln: error: broadcast_to: cannot broadcast: f32[?,3] and f32[?,4]",
    [B_CONST_DIM] = "kiln: error: constant: dimension -5 is out of range",
    [B_SELECT] = "kiln: error: select: condition must be i32, got: f32[2]",
    [B_MATMUL_RANK] = "kiln: error: matmul: operands must be matrices: f32[2] and f32[2,2]",
    [B_PARAM] = "kiln: error: no parameter named 'nope'",
    [B_INPUT] = "kiln: error: input 'x': invalid type",
    [B_ARGMAX] = "kiln: error: argmax: needs at least one axis, got: f32[]",
    [B_CAST] = "kiln: error: cast: unknown dtype 7",
};

typedef struct inputs {
    kiln_value f2, i2, b3, fb, p10, p9, m22;
} inputs;

/* A fresh function per case, so the case's error is the function's first. */
static kiln_func *fresh(kiln_module *m, int c, inputs *in) {
    char name[16];
    snprintf(name, sizeof name, "c%d", c);
    kiln_func *f = kiln_func_create(m, name);
    ck_assert_ptr_nonnull(f);
    in->f2 = kiln_input(f, "f2", KILN_F32, 1, D_2);
    in->i2 = kiln_input(f, "i2", KILN_I32, 1, D_2);
    in->b3 = kiln_input(f, "b3", KILN_F32, 2, D_B3);
    in->fb = kiln_input(f, "fb", KILN_F32, 1, D_B);
    in->p10 = kiln_input(f, "p10", KILN_F32, 2, D_B10);
    in->p9 = kiln_input(f, "p9", KILN_F32, 2, D_B9);
    in->m22 = kiln_input(f, "m22", KILN_F32, 2, D_22);
    ck_assert_ptr_null(kiln_func_error(f));
    return f;
}

START_TEST(test_builder_errors) {
    kiln_module *m = kiln_module_create("b");
    for (int c = 0; c < B_COUNT; c++) {
        inputs in;
        kiln_func *g = fresh(m, c, &in);
        kiln_value v = {-1};
        int ax[2] = {1, -1}, perm[2] = {0, 0};
        int64_t d4[2] = {KILN_BATCH, 4}, dm5[1] = {-5};
        switch ((bcase)c) {
        case B_ADD_DTYPE:
            v = kiln_add(g, in.f2, in.i2);
            break;
        case B_DIV_I32:
            v = kiln_div(g, in.i2, in.i2);
            break;
        case B_SOFTMAX_AXIS:
            v = kiln_softmax(g, in.b3, 2);
            break;
        case B_REDUCE_REPEAT:
            v = kiln_reduce_sum(g, in.b3, 2, ax, 0);
            break;
        case B_RESHAPE:
            v = kiln_reshape(g, in.b3, 2, d4);
            break;
        case B_TRANSPOSE:
            v = kiln_transpose(g, in.b3, 2, perm);
            break;
        case B_ONE_HOT:
            v = kiln_one_hot(g, in.fb, 10);
            break;
        case B_CCE:
            v = kiln_categorical_crossentropy(g, in.p10, in.p9);
            break;
        case B_SCCE:
            v = kiln_sparse_categorical_crossentropy(g, in.p10, in.fb);
            break;
        case B_BCAST_TO:
            v = kiln_broadcast_to(g, in.b3, 2, d4);
            break;
        case B_CONST_DIM:
            v = kiln_constant(g, KILN_F32, 1, 1, dm5);
            break;
        case B_SELECT:
            v = kiln_select(g, in.f2, in.f2, in.f2);
            break;
        case B_MATMUL_RANK:
            v = kiln_matmul(g, in.f2, in.m22, 0, 0);
            break;
        case B_PARAM:
            v = kiln_param(g, "nope");
            break;
        case B_INPUT:
            v = kiln_input(g, "x", KILN_F32, 2, D_BB);
            break;
        case B_ARGMAX:
            v = kiln_argmax(g, kiln_constant(g, KILN_F32, 0, 0, NULL), 0);
            break;
        case B_CAST:
            v = kiln_cast(g, in.f2, (kiln_dtype)7);
            break;
        case B_COUNT:
            break;
        }
        ck_assert_msg(!kiln_value_ok(v), "case %d built a value", c);
        ck_assert_msg(kiln_func_error(g) && strcmp(kiln_func_error(g), g_builder_msgs[c]) == 0,
                      "case %d:\n got: %s\nwant: %s", c, kiln_func_error(g), g_builder_msgs[c]);
    }
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_add_param_errors) {
    kiln_module *m = kiln_module_create("b");
    kiln_diag *d = kiln_diag_create();
    kiln_init z = {KILN_INIT_ZEROS, 0, 0};
    ck_assert_int_eq(kiln_module_add_param(m, "w", KILN_F32, 1, D_4, z, d), KILN_OK);
    ck_assert_int_eq(kiln_module_add_param(m, "w", KILN_F32, 1, D_4, z, d), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d), "kiln: error: '@w' is defined twice\n");
    kiln_diag_clear(d);
    ck_assert_int_eq(kiln_module_add_param(m, "v", KILN_F32, 2, D_B4, z, d), KILN_ERR_SHAPE);
    ck_assert_str_eq(kiln_diag_message(d),
                     "kiln: error: '@v': parameters need static dimensions in [0, 2^31]\n");
    kiln_diag_clear(d);
    ck_assert_int_eq(kiln_module_set_trainable(m, "nope", 0, d), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d), "kiln: error: no parameter named 'nope'\n");
    ck_assert_int_eq(m->n_globals, 1);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* ---------------------------------------------------- verifier messages */

/* Serials: %x is 0, then the nodes in order (no globals). */
static const char *g_two = "module @v\nfunc @f(%x : f32[2]) -> f32[2] {\n"
                           "  %0 = neg(%x) : f32[2]\n  %1 = relu(%0) : f32[2]\n  return %1\n}\n";

START_TEST(test_verify_use_before_def) {
    kiln_module *m = tu_parse(g_two);
    kiln_func *f = kiln_module_func(m, "f");
    ir_node *t = f->nodes[0];
    f->nodes[0] = f->nodes[1];
    f->nodes[1] = t;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_verify(m, d), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d), "kiln: error: verify @f: operand used before it is "
                                           "defined in: %#2 = relu(%#1) : f32[2]\n");
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_verify_stored_type) {
    kiln_module *m = tu_parse(g_two);
    kiln_func *f = kiln_module_func(m, "f");
    f->nodes[0]->type.dims[0] = 3;
    f->nodes[1]->loc.file = "model.kiln"; /* a located node: its message points there */
    f->nodes[1]->loc.line = 4;
    f->nodes[1]->loc.col = 2;
    f->nodes[1]->type.dtype = IR_I32;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_verify(m, d), KILN_ERR_INVALID);
    /* Every problem is reported, not just the first. */
    ck_assert_int_eq(kiln_diag_error_count(d), 2);
    ck_assert_str_eq(kiln_diag_message(d),
                     "kiln: error: verify @f: stored type is f32[3], inference gives f32[2] in: "
                     "%#1 = neg(%x) : f32[3]\n"
                     "model.kiln:4:2: error: verify @f: stored type is i32[2], inference gives "
                     "f32[3] in: %#2 = relu(%#1) : i32[2]\n");
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

static const char *g_region = "module @v\nfunc @f(%x : f32[2], %y : f32[2]) -> f32[2] {\n"
                              "  %0 = exp(%y) : f32[2]\n"
                              "  %1 = fused(%x, %y) : f32[2] {\n"
                              "    %2 = mul(%x, %y) : f32[2]\n"
                              "    yield %2\n  }\n  return %1\n}\n";

START_TEST(test_verify_region_uncaptured) {
    /* Serials: %x 0, %y 1, %0 2, fused 3, mul 4. */
    kiln_module *m = tu_parse(g_region);
    kiln_func *f = kiln_module_func(m, "f");
    ir_node *mul = f->nodes[1]->region->nodes[0];
    mul->in[1] = f->nodes[0]; /* reads %0, which the region did not capture */
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_verify(m, d), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d),
                     "kiln: error: verify @f: region body reads a value that is not a region "
                     "operand in: %#4 = mul(%x, %#2) : f32[2]\n"
                     "kiln: error: verify @f: region operand is never read by the body in: "
                     "%#3 = fused(%x, %y) : f32[2]\n");
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_verify_yield_outside) {
    kiln_module *m = tu_parse(g_region);
    kiln_func *f = kiln_module_func(m, "f");
    f->nodes[1]->region->yield = f->nodes[0];
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_verify(m, d), KILN_ERR_INVALID);
    ck_assert_str_eq(kiln_diag_message(d),
                     "kiln: error: verify @f: region yields a value not computed in its body "
                     "in: %#3 = fused(%x, %y) : f32[2]\n");
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* ------------------------------------------- allocation-failure injection */

static char *every_op_text(size_t *len) {
    char *text = NULL;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(ir_read_file(tu_src_path("tests/data/every_op.kir"), &text, len, d), KILN_OK);
    kiln_diag_dispose(d);
    return text;
}

/* For N = 1, 2, ...: allocation N fails; each parse returns NOMEM with no
 * module, until one runs without an injected failure and succeeds. */
START_TEST(test_parse_alloc_failures) {
    size_t len;
    char *text = every_op_text(&len);
    long n;
    int failures = 0;
    for (n = 1; n < 100000; n++) {
        kiln_diag *d = kiln_diag_create();
        kiln_module *m = NULL;
        kiln_test_alloc_fail_at(n);
        kiln_status st = kiln_module_parse(text, len, "every_op.kir", &m, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (st == KILN_OK) {
            ck_assert_msg(!failed, "N=%ld: parse succeeded although an allocation failed", n);
            ck_assert_ptr_nonnull(m);
            kiln_module_dispose(m);
            kiln_diag_dispose(d);
            break;
        }
        ck_assert_msg(st == KILN_ERR_NOMEM, "N=%ld: status %d: %s", n, st, kiln_diag_message(d));
        ck_assert_msg(failed, "N=%ld: NOMEM without an injected failure", n);
        ck_assert_ptr_null(m);
        failures++;
        kiln_diag_dispose(d);
    }
    ck_assert_msg(n < 100000, "parse never succeeded");
    ck_assert_int_gt(failures, 20); /* the parse allocates: the loop saw real failure points */
    ir_free(text);
}
END_TEST

START_TEST(test_print_and_interp_alloc_failures) {
    size_t len;
    char *text = every_op_text(&len);
    kiln_module *m = tu_parse(text);
    char *want = kiln_module_print(m);
    kiln_func *f = kiln_module_func(m, "planned");
    float x[28], y[21], w[12], b[3];
    tu_fill_uniform(x, 28, 5, -1, 1);
    tu_fill_uniform(w, 12, 6, -1, 1);
    tu_fill_uniform(b, 3, 7, -1, 1);
    void *glob[11] = {0};
    glob[0] = w;
    glob[1] = b;
    void *args[1] = {x}, *res[1] = {y};
    long n;
    for (n = 1; n < 10000; n++) {
        kiln_test_alloc_fail_at(n);
        char *s = kiln_module_print(m);
        kiln_test_alloc_fail_at(0);
        if (s) {
            ck_assert_str_eq(s, want);
            kiln_free(s);
            break;
        }
    }
    ck_assert(n > 1 && n < 10000);
    for (n = 1; n < 10000; n++) {
        kiln_diag *d = kiln_diag_create();
        kiln_test_alloc_fail_at(n);
        kiln_status st = ir_interp_run(f, 7, args, res, glob, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        kiln_diag_dispose(d);
        if (st == KILN_OK) {
            ck_assert(!failed);
            break;
        }
        ck_assert_msg(st == KILN_ERR_NOMEM, "N=%ld: status %d", n, st);
    }
    ck_assert(n > 1 && n < 10000);
    kiln_free(want);
    kiln_module_dispose(m);
    ir_free(text);
}
END_TEST

/* A schema with every kind a coming op needs (conv2d's row): names, kinds
 * and defaults as declared, and a malformed entry refused. */
START_TEST(test_schema_kinds_and_defaults) {
    ir_op_info op = {.attr_schema = "strides:ints=[1,1] padding:enum(valid,same)=same "
                                    "activation:op=relu alpha:float=0.25 scale:floats=[0.5,-2] "
                                    "shape:shape=[?,3]"};
    ck_assert(ir_schema_parse(&op));
    ck_assert_int_eq(op.n_attrs, 6);
    const ir_attr_desc *a = op.attrs;
    ck_assert_str_eq(a[0].name, "strides");
    ck_assert_int_eq(a[0].kind, IR_AK_INTS);
    ck_assert(a[0].def.n == 2 && a[0].def.v.ints[0] == 1 && a[0].def.v.ints[1] == 1);
    ck_assert_int_eq(a[1].kind, IR_AK_ENUM);
    ck_assert_int_eq(a[1].n_enum, 2);
    ck_assert_str_eq(a[1].enum_names[1], "same");
    ck_assert_int_eq(a[1].def.v.i, 1);
    ck_assert_int_eq(a[2].kind, IR_AK_OP);
    ck_assert_int_eq(a[2].def.v.i, IR_OP_relu);
    ck_assert(a[3].kind == IR_AK_FLOAT && a[3].def.v.f == 0.25 && !a[3].always);
    ck_assert(a[4].kind == IR_AK_FLOATS && a[4].def.n == 2 && a[4].def.v.floats[1] == -2.0);
    ck_assert(a[5].kind == IR_AK_SHAPE && a[5].def.v.ints[0] == KILN_BATCH);
    ir_op_info many = {.attr_schema = "a:int b:int c:int d:int e:int f:int g:int"};
    ck_assert(!ir_schema_parse(&many)); /* more than IR_MAX_ATTRS */
    ir_op_info bad = {.attr_schema = "strides:vector=[1]"};
    ck_assert(!ir_schema_parse(&bad));
    ir_op_info bad_default = {.attr_schema = "padding:enum(valid,same)=full"};
    ck_assert(!ir_schema_parse(&bad_default));
}
END_TEST

/* dense's activation is an op: any op parses, one without IR_FACT_ACT is
 * refused by dense itself, a misspelling gets a suggestion. */
START_TEST(test_op_valued_attribute) {
    const char *head = "module @m\nparam @k : f32[3,2] = zeros\nparam @b : f32[2] = zeros\n"
                       "func @f(%x : f32[?,3]) -> f32[?,2] {\n  %0 = dense(%x, @k, @b) {activation=";
    const char *tails[] = {"softmax} : f32[?,2]\n  return %0\n}\n",
                           "rellu} : f32[?,2]\n  return %0\n}\n"};
    const char *want[] = {"activation 'softmax' cannot be fused into dense",
                          "unknown activation 'rellu'; did you mean 'relu'?"};
    for (int i = 0; i < 2; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s", head, tails[i]);
        kiln_diag *d = kiln_diag_create();
        kiln_module *m = NULL;
        ck_assert_int_ne(kiln_module_parse(text, strlen(text), "t.kir", &m, d), KILN_OK);
        ck_assert_msg(strstr(kiln_diag_message(d), want[i]), "%s", kiln_diag_message(d));
        kiln_diag_dispose(d);
    }
}
END_TEST

Suite *builder_suite(void) {
    Suite *s = suite_create("builder");
    TCase *tb = tcase_create("builder");
    tcase_add_test(tb, test_matmul_message);
    tcase_add_test(tb, test_chain_keeps_first_error);
    tcase_add_test(tb, test_builder_errors);
    tcase_add_test(tb, test_add_param_errors);
    tcase_add_test(tb, test_schema_kinds_and_defaults);
    tcase_add_test(tb, test_op_valued_attribute);
    suite_add_tcase(s, tb);
    TCase *tv = tcase_create("verify");
    tcase_add_test(tv, test_verify_use_before_def);
    tcase_add_test(tv, test_verify_stored_type);
    tcase_add_test(tv, test_verify_region_uncaptured);
    tcase_add_test(tv, test_verify_yield_outside);
    suite_add_tcase(s, tv);
    TCase *ta = tcase_create("alloc");
    tcase_add_test(ta, test_parse_alloc_failures);
    tcase_add_test(ta, test_print_and_interp_alloc_failures);
    tcase_set_timeout(ta, 120);
    suite_add_tcase(s, ta);
    return s;
}

int main(void) {
    return tu_run_suite(builder_suite());
}

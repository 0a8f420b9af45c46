/*
 * test_kir.c — the .kir text form: print(parse(print(m))) == print(m) for
 * tests/data/every_op.kir and modules built with the C API, every opcode of
 * ops.def present in that corpus, locations and comments, and malformed
 * input with exact messages (line, column, wording).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char *read_text(const char *rel, size_t *len) {
    char *text = NULL;
    kiln_diag *d = kiln_diag_create();
    kiln_status st = ir_read_file(tu_src_path(rel), &text, len, d);
    ck_assert_msg(st == KILN_OK, "%s", kiln_diag_message(d));
    kiln_diag_dispose(d);
    return text;
}

/* Parses text, prints it, parses the print and prints again: both prints
 * must be equal. Returns the first print (caller frees with kiln_free). */
static char *roundtrip(const char *text, size_t len, const char *name) {
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    kiln_status st = kiln_module_parse(text, len, name, &m, d);
    ck_assert_msg(st == KILN_OK, "%s: %s", name, kiln_diag_message(d));
    char *p1 = kiln_module_print(m);
    ck_assert_ptr_nonnull(p1);
    kiln_module *m2 = NULL;
    st = kiln_module_parse(p1, strlen(p1), name, &m2, d);
    ck_assert_msg(st == KILN_OK, "reparse of %s: %s\n%s", name, kiln_diag_message(d), p1);
    char *p2 = kiln_module_print(m2);
    ck_assert_str_eq(p1, p2);
    kiln_free(p2);
    kiln_module_dispose(m2);
    kiln_module_dispose(m);
    kiln_diag_dispose(d);
    return p1;
}

START_TEST(test_every_op_roundtrip) {
    size_t len;
    char *text = read_text("tests/data/every_op.kir", &len);
    char *p = roundtrip(text, len, "every_op.kir");
    /* The file is written in the printer's canonical form. */
    ck_assert_str_eq(p, text);
    kiln_free(p);
    ir_free(text);
}
END_TEST

/* ------------------------------------------------------ C API corpus */

static const int64_t D_B3[] = {KILN_BATCH, 3}, D_B4[] = {KILN_BATCH, 4}, D_43[] = {4, 3},
                     D_3[] = {3}, D_B[] = {KILN_BATCH}, D_B31[] = {KILN_BATCH, 3, 1},
                     D_22[] = {2, 2};

/* A module with most ops, built through the public API (with locations,
 * one of them in a file name with a space). */
static kiln_module *capi_module(void) {
    kiln_module *m = kiln_module_create("capi");
    kiln_init glorot = {KILN_INIT_GLOROT_UNIFORM, 0, 0}, zeros = {KILN_INIT_ZEROS, 0, 0};
    kiln_init normal = {KILN_INIT_NORMAL, 0.5, 0.25}, cst = {KILN_INIT_CONSTANT, -0.0, 0};
    ck_assert_int_eq(kiln_module_add_param(m, "w", KILN_F32, 2, D_43, glorot, NULL), KILN_OK);
    ck_assert_int_eq(kiln_module_add_param(m, "b", KILN_F32, 1, D_3, zeros, NULL), KILN_OK);
    ck_assert_int_eq(kiln_module_add_param(m, "n", KILN_F32, 2, D_22, normal, NULL), KILN_OK);
    ck_assert_int_eq(kiln_module_add_param(m, "c", KILN_F32, 0, NULL, cst, NULL), KILN_OK);
    ck_assert_int_eq(kiln_module_set_trainable(m, "n", 0, NULL), KILN_OK);

    kiln_func *f = kiln_func_create(m, "infer");
    kiln_func_set_loc(f, "model.kiln", 3, 7);
    kiln_value x = kiln_input(f, "x", KILN_F32, 2, D_B4);
    kiln_value y = kiln_input(f, "y", KILN_F32, 2, D_B3);
    kiln_value lab = kiln_input(f, "labels", KILN_I32, 1, D_B);
    kiln_value w = kiln_param(f, "w"), b = kiln_param(f, "b");
    kiln_value h = kiln_add(f, kiln_matmul(f, x, w, 0, 0), b);
    kiln_func_set_loc(f, "my model.kiln", 4, 1);
    h = kiln_leaky_relu(f, h, 0.2);
    kiln_func_set_loc(f, NULL, 0, 0);
    h = kiln_tanh(f, kiln_sigmoid(f, kiln_relu(f, h)));
    h = kiln_sub(f, kiln_mul(f, h, h), kiln_div(f, h, kiln_exp(f, h)));
    h = kiln_maximum(f, kiln_minimum(f, h, y), kiln_neg(f, kiln_log(f, kiln_sqrt(f, y))));
    h = kiln_pow(f, h, 3);
    kiln_value two = kiln_constant(f, KILN_F32, 2, 0, NULL);
    kiln_value gt = kiln_greater(f, h, two);
    kiln_value eq = kiln_equal(f, kiln_cast(f, h, KILN_I32), kiln_cast(f, gt, KILN_I32));
    h = kiln_select(f, eq, h, y);
    int ax1[] = {1}, axm1[] = {-1}, ax0[] = {0};
    kiln_value s1 = kiln_reduce_sum(f, h, 1, ax1, 1);
    kiln_value s2 = kiln_reduce_mean(f, h, 1, axm1, 0);
    kiln_value s3 = kiln_reduce_max(f, h, 0, NULL, 0);
    kiln_value am = kiln_argmax(f, h, -1);
    kiln_value ne = kiln_numel(f, h, 1, ax0);
    kiln_value r3 = kiln_reshape(f, h, 3, D_B31);
    int perm[] = {1, 0};
    kiln_value tr = kiln_transpose(f, h, 2, perm);
    kiln_value bc = kiln_broadcast_to(f, s1, 2, D_B3);
    kiln_value sm = kiln_softmax(f, bc, -1);
    kiln_value lsm = kiln_log_softmax(f, h, 0);
    kiln_value oh = kiln_one_hot(f, lab, 3);
    kiln_value l1 = kiln_categorical_crossentropy(f, sm, oh);
    kiln_value l2 = kiln_sparse_categorical_crossentropy(f, sm, lab);
    kiln_value l3 = kiln_mean_squared_error(f, sm, y);
    kiln_value l4 = kiln_binary_crossentropy(f, sm, oh);
    kiln_value l5 = kiln_nll(f, lsm, oh);
    kiln_value g = kiln_matmul(f, tr, h, 0, 0);
    g = kiln_matmul(f, g, g, 1, 1);
    kiln_value ci = kiln_constant(f, KILN_I32, -3, 1, D_B);
    kiln_value outs[] = {l1, l2, l3, l4, l5, s2, s3, am, ne, r3, g, ci};
    for (size_t i = 0; i < KILN_ARRAY_LEN(outs); i++) {
        ck_assert_msg(kiln_value_ok(outs[i]), "output %d: %s", (int)i, kiln_func_error(f));
        ck_assert_int_eq(kiln_output(f, outs[i]), KILN_OK);
    }
    ck_assert_ptr_null(kiln_func_error(f));
    /* A second function sharing the parameters, with no results. */
    kiln_func *f2 = kiln_func_create(m, "nothing");
    ck_assert_ptr_nonnull(f2);
    return m;
}

START_TEST(test_capi_roundtrip) {
    kiln_module *m = capi_module();
    kiln_diag *d = kiln_diag_create();
    ck_assert_msg(kiln_module_verify(m, d) == KILN_OK, "%s", kiln_diag_message(d));
    char *p0 = kiln_module_print(m);
    char *p1 = roundtrip(p0, strlen(p0), "capi.kir");
    ck_assert_str_eq(p0, p1);
    /* Spot checks of what the text must hold. */
    ck_assert_ptr_nonnull(
        strstr(p0, "param @n : f32[2,2] = normal(mean=0.5, stddev=0.25) frozen\n"));
    ck_assert_ptr_nonnull(strstr(p0, "param @c : f32[] = constant(-0)\n"));
    ck_assert_ptr_nonnull(strstr(p0, ") : f32[?,3]  # model.kiln:3:7\n"));
    ck_assert_ptr_nonnull(
        strstr(p0, "%2 = leaky_relu(%1) {alpha=0.2} : f32[?,3]  # my model.kiln:4:1\n"));
    ck_assert_ptr_nonnull(strstr(p0, "{axes=[1]} : f32[?]\n")); /* -1 normalized */
    ck_assert_ptr_nonnull(strstr(p0, "func @nothing() -> () {\n  return\n}\n"));
    kiln_free(p0);
    kiln_free(p1);
    kiln_diag_dispose(d);
    kiln_module_dispose(m);
}
END_TEST

/* ---------------------------------------------- every opcode is covered */

static void mark_ops(ir_node *n, void *ctx) {
    bool *seen = ctx;
    seen[n->op] = true;
}

static void mark_attr_kinds(ir_node *n, void *ctx) {
    bool *kinds = ctx; /* by ir_attr_kind: some node shows a value of it */
    const ir_op_info *info = ir_op(n->op);
    for (int k = 0; k < info->n_attrs; k++) {
        const ir_attr_desc *a = &info->attrs[k];
        const ir_attr *v = &n->attrs.v[k];
        bool set = !a->from_type && (a->always || v->n != a->def.n || v->v.i != a->def.v.i);
        if (set) kinds[a->kind] = true;
    }
}

START_TEST(test_every_opcode_in_corpus) {
    size_t len;
    char *text = read_text("tests/data/every_op.kir", &len);
    kiln_module *corpus[2] = {NULL, capi_module()};
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_parse(text, len, "every_op.kir", &corpus[0], d), KILN_OK);
    bool seen[IR_NUM_OPCODES] = {0}, kinds[256] = {0};
    bool region_void = false, region_value = false, planned = false, frozen = false;
    for (int c = 0; c < 2; c++) {
        kiln_module *m = corpus[c];
        for (int i = 0; i < m->n_funcs; i++) {
            kiln_func *f = m->funcs[i];
            ir_func_walk(f, mark_ops, seen);
            ir_func_walk(f, mark_attr_kinds, kinds);
            planned |= f->planned;
            for (int j = 0; j < f->n_nodes; j++)
                if (f->nodes[j]->region) {
                    region_void |= f->nodes[j]->region->yield == NULL;
                    region_value |= f->nodes[j]->region->yield != NULL;
                }
        }
        for (int i = 0; i < m->n_globals; i++)
            frozen |= !m->globals[i]->trainable && m->globals[i]->kind == IR_GLOBAL_PARAM;
    }
    char missing[2048] = "";
    for (int op = IR_FIRST_OP; op < IR_NUM_OPCODES; op++)
        if (!seen[op]) {
            strncat(missing, " ", sizeof missing - strlen(missing) - 1);
            strncat(missing, ir_op_name(op), sizeof missing - strlen(missing) - 1);
        }
    ck_assert_msg(!missing[0], "ops missing from the round-trip corpus:%s", missing);
    /* Every kind some op's schema declares. */
    for (int op = IR_FIRST_OP; op < IR_NUM_OPCODES; op++)
        for (int k = 0; k < ir_op(op)->n_attrs; k++) {
            int kind = ir_op(op)->attrs[k].kind;
            ck_assert_msg(kinds[kind], "attribute kind %d (%s of %s) not in corpus", kind,
                          ir_op(op)->attrs[k].name, ir_op_name(op));
        }
    ck_assert(region_void && region_value && planned && frozen);
    ck_assert(corpus[0]->train.present);
    /* Every initializer appears in every_op.kir. */
    for (int k = 0; k < KILN_INIT_COUNT; k++) {
        bool found = false;
        for (int i = 0; i < corpus[0]->n_globals; i++)
            found |= (int)corpus[0]->globals[i]->init.kind == k;
        ck_assert_msg(found, "initializer %s not in every_op.kir", ir_init_name(k));
    }
    for (int c = 0; c < 2; c++) kiln_module_dispose(corpus[c]);
    kiln_diag_dispose(d);
    ir_free(text);
}
END_TEST

/* ------------------------------------------- labels, layout, comments */

START_TEST(test_labels_and_layout_are_free) {
    /* Arbitrary labels, odd spacing, CRLF, comments, a one-element result
     * list in parentheses, a negative axis, no trailing newline. */
    const char *in = "# a leading comment\r\n"
                     "module   @free\r\n"
                     "func @f(%input: f32[ ? , 3 ],%w : f32[3,2]) -> (f32[?])   {\r\n"
                     "  %h.1 = matmul(%input,%w):f32[?,2]   # not a location\r\n"
                     "  %sum = reduce_sum( %h.1 ) { axes = [ -1 ] } : f32[?]  # loc.kiln:12:5\r\n"
                     "  return %sum }";
    const char *want = "module @free\n"
                       "\n"
                       "func @f(%input : f32[?,3], %w : f32[3,2]) -> f32[?] {\n"
                       "  %0 = matmul(%input, %w) : f32[?,2]\n"
                       "  %1 = reduce_sum(%0) {axes=[1]} : f32[?]  # loc.kiln:12:5\n"
                       "  return %1\n"
                       "}\n";
    kiln_module *m = tu_parse(in);
    char *p = kiln_module_print(m);
    ck_assert_str_eq(p, want);
    kiln_free(p);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_location_comments) {
    const char *in = "module @m\n"
                     "func @f(%x : f32[2]) -> f32[2] {\n"
                     "  %0 = neg(%x) : f32[2]  # a.kiln:1:2\n"
                     "  %1 = exp(%0) : f32[2]  #   a.kiln:30:40  \n"
                     "  %2 = log(%1) : f32[2]  # a.kiln:1\n"
                     "  %3 = sqrt(%2) : f32[2]  # a.kiln:x:1\n"
                     "  %4 = relu(%3) : f32[2]  # :1:2\n"
                     "  # b.kiln:5:5 (on its own line: not a location)\n"
                     "  %5 = tanh(%4) : f32[2]\n"
                     "  %6 = sigmoid(%5) : f32[2]  # dir/b c.kiln:7:8\n"
                     "  return %6\n"
                     "}\n";
    kiln_module *m = tu_parse(in);
    kiln_func *f = kiln_module_func(m, "f");
    ir_node **n = f->nodes;
    ck_assert_str_eq(n[0]->loc.file, "a.kiln");
    ck_assert_int_eq(n[0]->loc.line, 1);
    ck_assert_int_eq(n[0]->loc.col, 2);
    ck_assert_int_eq(n[1]->loc.line, 30);
    ck_assert_int_eq(n[1]->loc.col, 40);
    /* The file name is interned: both nodes share one string. */
    ck_assert_ptr_eq(n[0]->loc.file, n[1]->loc.file);
    for (int i = 2; i <= 5; i++) ck_assert_msg(n[i]->loc.file == NULL, "node %d has a loc", i);
    ck_assert_str_eq(n[6]->loc.file, "dir/b c.kiln");
    ck_assert_int_eq(n[6]->loc.col, 8);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_region_scoping) {
    /* Region labels are local: the same label may be reused after it. */
    const char *in = "module @m\n"
                     "func @f(%x : f32[2]) -> f32[2] {\n"
                     "  %r = fused(%x) : f32[2] {  # m.kiln:1:1\n"
                     "    %t = neg(%x) : f32[2]\n"
                     "    yield %t\n"
                     "  }\n"
                     "  %t = exp(%r) : f32[2]\n"
                     "  return %t\n"
                     "}\n";
    kiln_module *m = tu_parse(in);
    kiln_func *f = kiln_module_func(m, "f");
    ck_assert_int_eq(f->n_nodes, 2);
    ck_assert_ptr_nonnull(f->nodes[0]->region);
    ck_assert_int_eq(f->nodes[0]->region->n, 1);
    ck_assert_ptr_eq(f->nodes[0]->region->yield, f->nodes[0]->region->nodes[0]);
    ck_assert_str_eq(f->nodes[0]->loc.file, "m.kiln");
    ck_assert_ptr_eq(f->results[0], f->nodes[1]);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_planned_function_fields) {
    const char *in = "module @m\n"
                     "func @f(%x : f32[?,2]) -> f32[2] mem(fixed=8, per_sample=8) {\n"
                     "  # arena peak: anything at all\n"
                     "  %0 = neg(%x) : f32[?,2] mem(b:0)\n"
                     "  %1 = relu(%0) : f32[?,2] mem(b:0,inplace)\n"
                     "  %2 = reduce_sum(%1) {axes=[0]} : f32[2] mem(f:0)\n"
                     "  return %2\n"
                     "}\n";
    kiln_module *m = tu_parse(in);
    kiln_func *f = kiln_module_func(m, "f");
    ck_assert(f->planned);
    ck_assert_int_eq(f->mem_fixed, 8);
    ck_assert_int_eq(f->mem_per_sample, 8);
    ck_assert_int_eq(f->nodes[0]->mem_offset, 0);
    ck_assert_int_eq(f->nodes[0]->mem_batch, 1);
    ck_assert_int_eq(f->nodes[1]->mem_inplace, 1);
    ck_assert_int_eq(f->nodes[2]->mem_batch, 0);
    char *p = kiln_module_print(m);
    /* The comment line is regenerated (128: no train block). */
    ck_assert_ptr_nonnull(strstr(p,
                                 "  # arena peak: 8 bytes + 8 bytes/sample = 1032 bytes at batch "
                                 "128\n"));
    kiln_free(p);
    kiln_module_dispose(m);
}
END_TEST

START_TEST(test_train_block) {
    const char *in = "module @m\n"
                     "train {\n"
                     "  optimizer = sgd(lr=0.1, nesterov=true)\n"
                     "  metrics = []\n"
                     "}\n";
    kiln_module *m = tu_parse(in);
    ck_assert(m->train.present);
    ck_assert_int_eq(m->train.opt.kind, IR_OPT_SGD);
    ck_assert(m->train.opt.lr == 0.1 && m->train.opt.momentum == 0 && m->train.opt.nesterov);
    ck_assert(!m->train.metric_accuracy);
    kiln_module_dispose(m);
    m = tu_parse("module @m train { optimizer = adamw }");
    ck_assert_int_eq(m->train.opt.kind, IR_OPT_ADAMW);
    ck_assert(m->train.opt.weight_decay == 0.004 && m->train.opt.beta_2 == 0.999);
    char *p = kiln_module_print(m);
    ck_assert_str_eq(p, "module @m\n\ntrain {\n  optimizer = adamw(lr=0.001, beta_1=0.9, "
                        "beta_2=0.999, epsilon=1e-07, weight_decay=0.004)\n}\n");
    kiln_free(p);
    kiln_module_dispose(m);
}
END_TEST

/* ---------------------------------------------------- malformed input */

typedef struct bad_case {
    const char *text;
    const char *msg; /* the first line of the diagnostics, exactly */
    kiln_status st;
} bad_case;

#define HDR "module @m\nfunc @f(%x : f32[2,3]) -> f32[2,3] {\n" /* lines 1-2 */

static const bad_case g_bad[] = {
    /* 0 */ {HDR "  %0 = reluu(%x) : f32[2,3]\n  return %0\n}\n",
             "bad.kir:3:8: error: unknown op 'reluu'; did you mean 'relu'?", KILN_ERR_PARSE},
    /* 1 */
    {HDR "  %0 = relu(%x) : f32[2,4]\n  return %0\n}\n",
     "bad.kir:3:19: error: relu: annotated type f32[2,4] differs from the inferred "
     "f32[2,3]",
     KILN_ERR_SHAPE},
    /* 2 */
    {HDR "  %0 = relu(%y) : f32[2,3]\n  return %0\n}\n",
     "bad.kir:3:13: error: undefined value '%y'", KILN_ERR_PARSE},
    /* 3 */
    {HDR "  %0 = relu(%x) : f32[2,3]\n  return %0\n",
     "bad.kir:5:1: error: expected '}' (to close '{' at line 2) near <eof>", KILN_ERR_PARSE},
    /* 4 */
    {HDR "  %0 = reduce_sum(%x) {axs=[1]} : f32[2]\n  return %0\n}\n",
     "bad.kir:3:24: error: unknown attribute 'axs' of reduce_sum; did you mean 'axes'?",
     KILN_ERR_PARSE},
    /* 5 */
    {HDR "  %0 = reduce_sum(%x) {axes=[1], keepdims=yes} : f32[2,1]\n  return %0\n}\n",
     "bad.kir:3:43: error: expected 'true' or 'false' near 'yes'", KILN_ERR_PARSE},
    /* 6 */
    {"module @m\nfunc @f(%x : f32[1099511627776]) -> f32[2] {\n",
     "bad.kir:2:18: error: dimension 1099511627776 is out of range [0, 2^31]", KILN_ERR_LIMIT},
    /* 7 */
    {HDR "  %0 = relu(%x) : f32[2,3]\n  %0 = neg(%x) : f32[2,3]\n  return %0\n}\n",
     "bad.kir:4:3: error: redefinition of '%0' (first defined at line 3)", KILN_ERR_PARSE},
    /* 8 (truncated in a type) */
    {HDR "  %0 = relu(%x) : f32[2,",
     "bad.kir:3:25: error: expected a dimension (an integer "
     "or '?') near <eof>",
     KILN_ERR_PARSE},
    /* 9 */ {"", "bad.kir:1:1: error: expected 'module' near <eof>", KILN_ERR_PARSE},
    /* 10 */
    {HDR "  %0 = relu(%x\n  return %0\n}\n",
     "bad.kir:4:3: error: expected ')' (to close '(' at line 3) near 'return'", KILN_ERR_PARSE},
    /* 11 */
    {"module @m\nfunc @f(%x : f32[2,3], %w : f32[4,5]) -> f32[2,5] {\n"
     "  %0 = matmul(%x, %w) : f32[2,5]\n  return %0\n}\n",
     "bad.kir:3:8: error: matmul: inner dimensions differ: f32[2,3] and f32[4,5]", KILN_ERR_SHAPE},
    /* 12 */
    {"module @m\nfunc @f(%x : f32[1,2,3,4,5,6,7]) -> f32[2] {\n",
     "bad.kir:2:30: error: rank exceeds the maximum of 6", KILN_ERR_LIMIT},
    /* 13 */
    {"module @m\nfunc @f(%x : f32[?,?]) -> f32[2] {\n",
     "bad.kir:2:20: error: a shape may hold one '?' only", KILN_ERR_SHAPE},
    /* 14 */
    {"module @m\nfunc @f(%x : f32[-2]) -> f32[2] {\n",
     "bad.kir:2:18: error: dimension -2 is out of range [0, 2^31]", KILN_ERR_LIMIT},
    /* 15 */
    {"module @m\nparam @kernel : f32[2] = zeros\nfunc @f(%x : f32[2,3]) -> f32[2,3] {\n"
     "  %0 = add(%x, @kernal) : f32[2,3]\n  return %0\n}\n",
     "bad.kir:4:16: error: unknown parameter or state '@kernal'; did you mean "
     "'@kernel'?",
     KILN_ERR_PARSE},
    /* 16 */
    {"module @m\nfunc @f(%x : f32[2], %y : f32[2]) -> f32[2] {\n"
     "  %0 = fused(%x) : f32[2] {\n    %1 = add(%x, %y) : f32[2]\n    yield %1\n  }\n"
     "  return %0\n}\n",
     "bad.kir:4:18: error: '%y' is read in a fused region but is not one of its "
     "operands",
     KILN_ERR_PARSE},
    /* 17 */
    {"module @m\nfunc @f(%x : f32[2], %y : f32[2]) -> f32[2] {\n"
     "  %0 = fused(%x, %y) : f32[2] {\n    %1 = neg(%x) : f32[2]\n    yield %1\n  }\n"
     "  return %0\n}\n",
     "bad.kir:3:8: error: operand 2 of fused is never read by its region", KILN_ERR_PARSE},
    /* 18 */
    {"module @m\nfunc @f(%x : f32[2]) -> f32[2] {\n"
     "  %0 = fused(%x) : f32[2] {\n    %1 = neg(%x) : f32[2]\n    yield %1\n  }\n"
     "  return %1\n}\n",
     "bad.kir:7:10: error: '%1' is defined inside the fused region at line 4 and is "
     "not visible here",
     KILN_ERR_PARSE},
    /* 19 */
    {"module @m\nfunc @f(%x : f32[2,2]) -> f32[2,2] {\n"
     "  %0 = fused(%x) : f32[2,2] {\n    %1 = matmul(%x, %x) : f32[2,2]\n",
     "bad.kir:4:10: error: matmul cannot appear in a fused region (only elementwise "
     "ops and assign)",
     KILN_ERR_PARSE},
    /* 20 */
    {HDR "  %0 = relu(%x) : f32[2,3]\n  return %x, %0\n}\n",
     "bad.kir:4:3: error: @f declares 1 result but returns 2", KILN_ERR_SHAPE},
    /* 21 */
    {"module @m\nfunc @f(%x : f32[2,3]) -> f32[3] {\n  return %x\n}\n",
     "bad.kir:3:10: error: result 1 of @f is declared f32[3] but '%x' is f32[2,3]", KILN_ERR_SHAPE},
    /* 22 */
    {"module @m\nstate @s : f32[2] = zeros\nfunc @f(%x : f32[2]) -> () {\n"
     "  %0 = assign(@s, %x) : f32[2]\n  return\n}\n",
     "bad.kir:4:3: error: assign yields no value; remove the label '%0 ='", KILN_ERR_PARSE},
    /* 23 */
    {HDR "  relu(%x)\n  return %x\n}\n",
     "bad.kir:3:3: error: relu yields a value; write '%name = relu(...)'", KILN_ERR_PARSE},
    /* 24 */
    {"module @m\nparam @w : f32[2] = glorot_unifrom\n",
     "bad.kir:2:21: error: unknown initializer 'glorot_unifrom'; did you mean "
     "'glorot_uniform'?",
     KILN_ERR_PARSE},
    /* 25 */
    {"module @m\nstate @s : i32[] = zeros frozen\n",
     "bad.kir:2:26: error: 'frozen' applies to parameters only", KILN_ERR_PARSE},
    /* 26 */
    {"module @m\nparam @w : f32[2] = zeros\nstate @w : f32[2] = zeros\n",
     "bad.kir:3:7: error: redefinition of '@w' (first defined at line 2)", KILN_ERR_PARSE},
    /* 27 */
    {"module @m\ntrain {\n  epoch = 3\n}\n",
     "bad.kir:3:3: error: unknown train setting 'epoch'; did you mean 'epochs'?", KILN_ERR_PARSE},
    /* 28 */
    {HDR "  %0 = relu(%x) : f32[2,3]\0\n  return %0\n}\n",
     "bad.kir:3:27: error: unexpected character '\\x00'", KILN_ERR_PARSE},
    /* 29 */
    {"module @m\nfunc @f(%x : f32[?,2]) -> f32[?,2] mem(fixed=0, per_sample=4) {\n"
     "  %0 = neg(%x) : f32[?,2] mem(b:0)\n  return %0\n}\n",
     "bad.kir:3:27: error: the 8-byte buffer at offset 0 exceeds the per-sample part "
     "of the workspace (4 bytes)",
     KILN_ERR_INVALID},
    /* 30 */
    {HDR "  %0 = reduce_sum(%x) {axes=[1]} : f32[2]\n  yield %0\n}\n",
     "bad.kir:4:3: error: 'yield' outside a fused region", KILN_ERR_PARSE},
    /* 31 */
    {HDR "  %0 = pow(%x) {exponent=1e999x} : f32[2,3]\n",
     "bad.kir:3:26: error: malformed number near '1e999x'", KILN_ERR_PARSE},
    /* 32 */
    {HDR "  %0 = one_hot(%x) {depth=99999999999999999999} : f32[2,3]\n",
     "bad.kir:3:27: error: integer '99999999999999999999' is out of range", KILN_ERR_LIMIT},
    /* 33 */
    {"module @m\nfunc @f(%x : f32[65536,65536]) -> f32[2] {\n",
     "bad.kir:2:14: error: type has more than 2^31 elements", KILN_ERR_LIMIT},
    /* 34 */
    {HDR "  %0 = relu(%x) {alpha=1} : f32[2,3]\n",
     "bad.kir:3:18: error: relu has no attributes (got 'alpha')", KILN_ERR_PARSE},
    /* 35 */
    {HDR "  %0 = softmax(%x) {axis=2} : f32[2,3]\n",
     "bad.kir:3:8: error: softmax: axis 2 is out of range for rank 2", KILN_ERR_SHAPE},
    /* 36 */
    {HDR "  %0 = relu(%x) : f32[2,3]\n}\n", "bad.kir:4:1: error: expected 'return' near '}'",
     KILN_ERR_PARSE},
    /* 37 */
    {"module @m\nfunc @f() -> () {\n  return\n}\nfunc @f() -> () {\n",
     "bad.kir:5:6: error: redefinition of function '@f' (first defined at line 2)", KILN_ERR_PARSE},
    /* 38 */
    {"module @m\nfunc @f(%x : f32[2]) -> f32[2] {\n"
     "  %0 = fused(%x) : f32[2] {\n    %1 = neg(%x) : f32[2]\n  }\n  return %0\n}\n",
     "bad.kir:3:3: error: the region of '%0' has no 'yield' for its value", KILN_ERR_PARSE},
    /* 39 */
    {"module @m\nfunc @f(%x : f32[2]) -> f32[2] {\n"
     "  %0 = fused(%x) : f32[2] {\n    %1 = neg(%x) : f32[2]\n    yield %1\n"
     "  return %0\n}\n",
     "bad.kir:6:3: error: expected '}' (to close '{' at line 3) near 'return'", KILN_ERR_PARSE},
    /* 40 */
    {"module @m\nfunc @f(%x : f32[2]) -> f32[2] {\n  %0 = dense(%x, %x, %x) "
     "{activation=rellu} : f32[2]\n",
     "bad.kir:3:38: error: unknown activation 'rellu'; did you mean 'relu'?", KILN_ERR_PARSE},
    /* 41 */
    {"module @m\nfunc @f(%x : f32[2]) -> f32[2] {\n  %0 = neg(%x) : f32[2] mem(f:3)\n",
     "bad.kir:3:31: error: memory offset 3 must be a multiple of 4 in [0, 2^40]", KILN_ERR_INVALID},
    /* 42 */
    {"module @m\nfunc @f(%x : f32[2]) -> f32[2] {\n  %0 = neg(%x) : f32[2] $\n",
     "bad.kir:3:25: error: unexpected character '$'", KILN_ERR_PARSE},
    /* 43 */
    {"module @m\nparam @w : f32[?,2] = zeros\n",
     "bad.kir:2:12: error: parameters and state need static dimensions", KILN_ERR_SHAPE},
    /* 44: chunks of a function that mixes the batch's rows */
    {"module @m\nfunc @f(%x : f32[?,2]) -> f32[?,2] mem(fixed=64, per_sample=16, err=0, "
     "chunk=4) {\n  %0 = softmax(%x) {axis=0} : f32[?,2] mem(b:0)\n  return %0\n}\n",
     "bad.kir:2:6: error: @f: chunk=4, but softmax mixes the rows of the batch", KILN_ERR_INVALID},
    /* 45 */
    {"module @m\nfunc @f(%x : f32[?,2]) -> f32[?,2] mem(fixed=64, per_sample=16, chunk=0) {\n",
     "bad.kir:2:71: error: chunk of 0 rows must be in [1, 2^31)", KILN_ERR_INVALID},
};

static void check_bad(int i, const char *text, size_t len) {
    const bad_case *c = &g_bad[i];
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = (kiln_module *)d; /* must be reset to NULL */
    kiln_status st = kiln_module_parse(text, len, "bad.kir", &m, d);
    ck_assert_msg(st == c->st, "case %d: status %d, want %d: %s", i, st, c->st,
                  kiln_diag_message(d));
    ck_assert_ptr_null(m);
    ck_assert_int_eq(kiln_diag_error_count(d), 1); /* the first error only */
    const char *msg = kiln_diag_message(d);
    size_t n = strcspn(msg, "\n");
    ck_assert_msg(strlen(c->msg) == n && strncmp(msg, c->msg, n) == 0,
                  "case %d:\n got: %.*s\nwant: %s", i, (int)n, msg, c->msg);
    /* Then the source line and a caret under the column. */
    const char *colp = strchr(c->msg + strlen("bad.kir:"), ':') + 1;
    int col = atoi(colp);
    const char *caret = strchr(msg + n + 1, '\n');
    ck_assert_ptr_nonnull(caret);
    caret++;
    ck_assert_msg((int)strspn(caret, " ") == 4 + col - 1 && caret[4 + col - 1] == '^',
                  "case %d: caret line '%s'", i, caret);
    kiln_diag_dispose(d);
}

START_TEST(test_malformed) {
    const bad_case *c = &g_bad[_i];
    /* Case 28 holds a NUL byte: its length is known, not strlen. */
    size_t len = strlen(c->text);
    if (_i == 28) len += 1 + strlen(c->text + len + 1);
    check_bad(_i, c->text, len);
}
END_TEST

START_TEST(test_source_line_and_caret) {
    const char *text = HDR "  %0 = reluu(%x) : f32[2,3]\n  return %0\n}\n";
    kiln_diag *d = kiln_diag_create();
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_module_parse(text, strlen(text), "bad.kir", &m, d), KILN_ERR_PARSE);
    ck_assert_str_eq(kiln_diag_message(d),
                     "bad.kir:3:8: error: unknown op 'reluu'; did you mean 'relu'?\n"
                     "      %0 = reluu(%x) : f32[2,3]\n"
                     "           ^\n");
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(test_missing_newline_and_null_diag) {
    const char *text = "module @m\nfunc @f(%x : f32[2]) -> f32[2] {\n  return %x\n}";
    kiln_module *m = NULL;
    ck_assert_int_eq(kiln_module_parse(text, strlen(text), NULL, &m, NULL), KILN_OK);
    ck_assert_ptr_nonnull(m);
    kiln_module_dispose(m);
    m = NULL;
    /* Errors without a diag still give the status; "<input>" names the text. */
    ck_assert_int_eq(kiln_module_parse("module", 6, NULL, &m, NULL), KILN_ERR_PARSE);
    ck_assert_ptr_null(m);
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_parse("module", 6, NULL, &m, d), KILN_ERR_PARSE);
    ck_assert_str_eq(kiln_diag_message(d),
                     "<input>:1:7: error: expected the module name '@name' near <eof>\n"
                     "    module\n          ^\n");
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(test_load) {
    kiln_module *m = NULL;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(kiln_module_load(tu_src_path("tests/data/every_op.kir"), &m, d), KILN_OK);
    ck_assert_int_eq(m->n_funcs, 10); /* + @conv, @keras_acts, @pads, @masked (issues 14-18) */
    ck_assert_int_eq(m->n_globals, 11);
    kiln_module_dispose(m);
    ck_assert_int_eq(kiln_module_load("/nonexistent/x.kir", &m, d), KILN_ERR_IO);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(kiln_diag_message(d),
                     "kiln: error: /nonexistent/x.kir: No such file or directory\n");
    kiln_diag_dispose(d);
}
END_TEST

/* Every prefix and many one-byte mutations of every_op.kir: each parse
 * ends in success or an error, never a crash (the fuzzer goes further). */
START_TEST(test_truncations_and_mutations) {
    size_t len;
    char *text = read_text("tests/data/every_op.kir", &len);
    char *buf = malloc(len + 1);
    int bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        kiln_module *m = NULL;
        kiln_status st = kiln_module_parse(text, cut, "cut.kir", &m, NULL);
        ck_assert(st == KILN_OK ? m != NULL : m == NULL);
        /* The whole file parses, with or without its final newline. */
        if (cut >= len - 1) ck_assert_int_eq(st, KILN_OK);
        bad += st != KILN_OK;
        kiln_module_dispose(m);
    }
    ck_assert(bad > (int)len / 2); /* most cuts fall inside a construct */
    const char subst[] = {'\0', '{', '}', '(', '%', '@', '?', '-', '9', 'x', '#', '\n', ']'};
    ir_rng r = ir_rng_seed(7, 1);
    for (int k = 0; k < 3000; k++) {
        memcpy(buf, text, len);
        size_t at = (size_t)(ir_rng_next(&r) % len);
        buf[at] = subst[ir_rng_next(&r) % sizeof subst];
        kiln_module *m = NULL;
        kiln_status st = kiln_module_parse(buf, len, "mut.kir", &m, NULL);
        ck_assert(st == KILN_OK ? m != NULL : m == NULL);
        kiln_module_dispose(m);
    }
    free(buf);
    ir_free(text);
}
END_TEST

Suite *kir_suite(void) {
    Suite *s = suite_create("kir");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_test(tc, test_every_op_roundtrip);
    tcase_add_test(tc, test_capi_roundtrip);
    tcase_add_test(tc, test_every_opcode_in_corpus);
    tcase_add_test(tc, test_labels_and_layout_are_free);
    tcase_add_test(tc, test_location_comments);
    tcase_add_test(tc, test_region_scoping);
    tcase_add_test(tc, test_planned_function_fields);
    tcase_add_test(tc, test_train_block);
    tcase_add_test(tc, test_load);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_loop_test(te, test_malformed, 0, (int)KILN_ARRAY_LEN(g_bad));
    tcase_add_test(te, test_source_line_and_caret);
    tcase_add_test(te, test_missing_newline_and_null_diag);
    tcase_add_test(te, test_truncations_and_mutations);
    tcase_set_timeout(te, 120);
    suite_add_tcase(s, te);
    return s;
}

int main(void) {
    return tu_run_suite(kir_suite());
}

/* ops.c — the op table built from ops.def, attribute schemas, types. */
#include "ir/conv.h"
#include "ir/ir.h"

#include <stdio.h>
#include <string.h>

/* The table is filled from ops.def; attribute descriptors are parsed from
 * the schema strings once, on first use (a static table of parsed entries). */
#define NOWS NULL
static ir_op_info g_ops[IR_NUM_OPCODES] = {
    [IR_ARG] = {.name = "arg", .arity = 0, .kind = IR_FK_OPAQUE},
    [IR_GLOBAL] = {.name = "global", .arity = 0, .kind = IR_FK_OPAQUE},
#define EW(nm, ar, kd, fa, at, inf, sc, gr, lw)                                                   \
    [IR_OP_##nm] = {.name = #nm, .arity = ar, .kind = kd, .facts = fa, .attr_schema = at,         \
                    .infer = inf, .scalar = sc, .is_ew = true},
#define OP(nm, ar, kd, fa, at, inf, ke, gr, lw, ws)                                               \
    [IR_OP_##nm] = {.name = #nm, .arity = ar, .kind = kd, .facts = fa, .attr_schema = at,         \
                    .infer = inf, .kernel = ke, .workspace = ws},
#include "ir/ops.def"
#undef EW
#undef OP
};
#undef NOWS

static bool g_ops_ready;

static void ops_init(void) {
    if (g_ops_ready) return;
    g_ops_ready = true; /* op-valued defaults look names up while parsing */
    for (int i = IR_FIRST_OP; i < IR_NUM_OPCODES; i++) ir_schema_parse(&g_ops[i]);
}

const ir_op_info *ir_op(int opcode) {
    ops_init();
    if (opcode < 0 || opcode >= IR_NUM_OPCODES) return NULL;
    return &g_ops[opcode];
}

const char *ir_op_name(int opcode) {
    const ir_op_info *o = ir_op(opcode);
    return o ? o->name : "?";
}

int ir_op_lookup(const char *name) {
    ops_init();
    for (int i = IR_FIRST_OP; i < IR_NUM_OPCODES; i++)
        if (strcmp(g_ops[i].name, name) == 0) return i;
    return -1;
}

void ir_op_workspace(const ir_node *n, int64_t *fixed, int64_t *per_sample) {
    const ir_op_info *o = ir_op(n->op);
    *fixed = *per_sample = 0;
    if (o && o->workspace) o->workspace(n, fixed, per_sample);
}

bool ir_op_has(int opcode, unsigned fact) {
    const ir_op_info *o = ir_op(opcode);
    return o && (o->facts & fact) != 0;
}

/* ------------------------------------------------------------------ types */

ir_type ir_type_make(ir_dtype dt, int rank, const int64_t *dims) {
    ir_type t;
    memset(&t, 0, sizeof t);
    t.dtype = (uint8_t)dt;
    t.rank = (int8_t)rank;
    for (int i = 0; i < rank && i < KILN_MAX_RANK; i++) t.dims[i] = dims[i];
    return t;
}

ir_type ir_type_scalar(ir_dtype dt) { return ir_type_make(dt, 0, NULL); }

ir_type ir_type_void(void) { return ir_type_make(IR_VOID, 0, NULL); }

bool ir_type_same_shape(const ir_type *a, const ir_type *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

bool ir_type_eq(const ir_type *a, const ir_type *b) {
    return a->dtype == b->dtype && ir_type_same_shape(a, b);
}

int ir_type_batch_axis(const ir_type *t) {
    for (int i = 0; i < t->rank; i++)
        if (t->dims[i] == KILN_BATCH) return i;
    return -1;
}

int64_t ir_type_numel(const ir_type *t, int64_t batch) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dims[i] == KILN_BATCH ? batch : t->dims[i];
    return n;
}

int64_t ir_type_static_numel(const ir_type *t) { return ir_type_numel(t, 1); }

int64_t ir_type_row_bytes(const ir_type *t) {
    if (ir_type_batch_axis(t) < 0) return 0;
    return ir_type_static_numel(t) * (int64_t)ir_dtype_size((ir_dtype)t->dtype);
}

ir_type ir_type_bind(const ir_type *t, int64_t batch) {
    ir_type r = *t;
    for (int i = 0; i < r.rank; i++)
        if (r.dims[i] == KILN_BATCH) r.dims[i] = batch;
    return r;
}

size_t ir_dtype_size(ir_dtype dt) { return dt == IR_VOID ? 0 : 4; }

const char *ir_dtype_name(ir_dtype dt) {
    switch (dt) {
    case IR_F32: return "f32";
    case IR_I32: return "i32";
    case IR_VOID: return "void";
    }
    return "?";
}

void ir_sb_type(ir_sb *sb, const ir_type *t) {
    ir_sb_puts(sb, ir_dtype_name((ir_dtype)t->dtype));
    if (t->dtype == IR_VOID) return;
    ir_sb_putc(sb, '[');
    for (int i = 0; i < t->rank; i++) {
        if (i) ir_sb_putc(sb, ',');
        if (t->dims[i] == KILN_BATCH)
            ir_sb_putc(sb, '?');
        else
            ir_sb_printf(sb, "%lld", (long long)t->dims[i]);
    }
    ir_sb_putc(sb, ']');
}

const char *ir_type_str(const ir_type *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "%s", ir_dtype_name((ir_dtype)t->dtype));
    if (t->dtype == IR_VOID) return buf;
    o += (size_t)snprintf(buf + o, n > o ? n - o : 0, "[");
    for (int i = 0; i < t->rank && o < n; i++) {
        if (t->dims[i] == KILN_BATCH)
            o += (size_t)snprintf(buf + o, n - o, "%s?", i ? "," : "");
        else
            o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    }
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

bool ir_norm_axis(int64_t *axis, int rank) {
    if (*axis < 0) *axis += rank;
    return *axis >= 0 && *axis < rank;
}

kiln_status ir_broadcast_shapes(const ir_type *a, const ir_type *b, ir_type *out) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    ir_type t;
    memset(&t, 0, sizeof t);
    t.dtype = a->dtype;
    t.rank = (int8_t)r;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da == db)
            t.dims[i] = da;
        else if (da == 1)
            t.dims[i] = db;
        else if (db == 1)
            t.dims[i] = da;
        else
            return KILN_ERR_SHAPE; /* includes '?' against a static dim other than 1 */
    }
    if (ir_type_batch_axis(&t) >= 0) {
        int nb = 0;
        for (int i = 0; i < r; i++) nb += t.dims[i] == KILN_BATCH;
        if (nb > 1) return KILN_ERR_SHAPE;
    }
    *out = t;
    return KILN_OK;
}

/* ---------------------------------------------------------- activations */

static const char *const g_act_names[KILN_ACT_COUNT] = {
    "none", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
    "elu",  "relu6", "gelu",      "softplus", "silu", "hard_sigmoid"};

const char *kiln_activation_name(kiln_activation a) {
    return (unsigned)a < KILN_ACT_COUNT ? g_act_names[a] : "?";
}

int kiln_activation_from_name(const char *name) {
    for (int i = 0; i < KILN_ACT_COUNT; i++)
        if (strcmp(g_act_names[i], name) == 0) return i;
    if (strcmp(name, "linear") == 0) return KILN_ACT_NONE; /* Keras' name */
    if (strcmp(name, "swish") == 0) return KILN_ACT_SILU;  /* Keras' other name */
    return -1;
}

/* Optimizer defaults and names: ir/settings.c, from ir/settings.def. */

/*
 * ir.h — Kiln's graph IR: types, the op table, modules, functions and nodes,
 * and the services on them (builder, verifier, printer, parser, interpreter).
 *
 * A module owns an arena: nodes, strings and regions live there and are freed
 * with the module. Arrays that grow (node lists, globals, functions) are heap
 * arrays owned by their container. Use lists are not maintained: passes that
 * need them compute them (ir_func_use_counts), which keeps rewriting simple.
 */
#ifndef KILN_IR_IR_H
#define KILN_IR_IR_H

#include "ir/support.h"
#include "kiln/kiln.h"

/* ------------------------------------------------------------------ types */

typedef enum ir_dtype { IR_F32 = KILN_F32, IR_I32 = KILN_I32, IR_VOID = 2 } ir_dtype;

/* dims[i] == KILN_BATCH is the dynamic batch '?'; at most one per shape. */
typedef struct ir_type {
    uint8_t dtype;
    int8_t rank;
    int64_t dims[KILN_MAX_RANK];
} ir_type;

/* Largest static dimension and element count Kiln accepts (2^31 - 1
 * elements: buffers are indexed with 64-bit math but BLAS takes int). */
#define IR_MAX_DIM ((int64_t)1 << 31)
#define IR_MAX_ELEMS ((int64_t)1 << 31)

ir_type ir_type_make(ir_dtype dt, int rank, const int64_t *dims);
ir_type ir_type_scalar(ir_dtype dt);
ir_type ir_type_void(void);
bool ir_type_eq(const ir_type *a, const ir_type *b);
/* Same rank and dims ('?' equals only '?'), whatever the dtypes. */
bool ir_type_same_shape(const ir_type *a, const ir_type *b);
/* Axis holding '?', or -1. */
int ir_type_batch_axis(const ir_type *t);
/* Element count with the batch bound to `batch` (any value if no '?'). */
int64_t ir_type_numel(const ir_type *t, int64_t batch);
/* Elements per batch row: the product of the static dims (the whole count
 * when there is no '?'). */
int64_t ir_type_static_numel(const ir_type *t);
/* Bytes of one batch row (static dims x element size), 0 without a '?'. */
int64_t ir_type_row_bytes(const ir_type *t);
size_t ir_dtype_size(ir_dtype dt);
const char *ir_dtype_name(ir_dtype dt); /* "f32", "i32", "void" */
/* Writes "f32[?,784]" into buf (>= 128 bytes is always enough). */
const char *ir_type_str(const ir_type *t, char *buf, size_t n);
#define IR_TYPE_STR_MAX 160
void ir_sb_type(ir_sb *sb, const ir_type *t);
/* Binds the batch: copies t with '?' replaced by `batch`. */
ir_type ir_type_bind(const ir_type *t, int64_t batch);

/* ------------------------------------------------------------------ attrs
 * An op's attributes are named and typed by its schema, a string in its
 * ops.def row, e.g. "strides:ints=[1,1] padding:enum(valid,same)=valid
 * activation:op=none alpha:float=0". Each entry is "name:kind[=default]";
 * kinds: int, float, bool, enum(a,b,...), ints, floats, shape (ints with
 * '?'), dtype (f32|i32), op (an op name, or none). A missing default is 0,
 * false, the first enum name, an empty list or none.
 *
 * A node holds one value per schema entry, in schema order (defaults
 * filled in when the node is built); code reads them by name through the
 * accessors below, which resolve the name against the node's op. */
typedef enum ir_attr_kind {
    IR_AK_INT,
    IR_AK_FLOAT,
    IR_AK_BOOL,
    IR_AK_ENUM,   /* value: index into the schema's names */
    IR_AK_INTS,   /* list of ints */
    IR_AK_FLOATS, /* list of floats */
    IR_AK_SHAPE,  /* list of dims, '?' (KILN_BATCH) allowed */
    IR_AK_DTYPE,  /* ir_dtype: f32 | i32 */
    IR_AK_OP      /* an opcode, or 0 for none */
} ir_attr_kind;

enum { IR_MAX_ATTRS = 6, IR_ATTR_MAX_LIST = KILN_MAX_RANK, IR_ATTR_MAX_ENUM = 8 };

/* One attribute value: scalars in i or f, lists in ints/floats[0..n). */
typedef struct ir_attr {
    uint8_t kind; /* ir_attr_kind, as the schema says */
    int8_t n;     /* list length */
    union {
        int64_t i;
        double f;
        int64_t ints[IR_ATTR_MAX_LIST];
        double floats[IR_ATTR_MAX_LIST];
    } v;
} ir_attr;

/* The attributes of a node of op `op`: v[k] is schema entry k. */
typedef struct ir_attrs {
    uint16_t op;
    uint8_t n;
    ir_attr v[IR_MAX_ATTRS];
} ir_attrs;

/* One schema entry, parsed from ops.def once. */
typedef struct ir_attr_desc {
    char name[24];
    uint8_t kind; /* ir_attr_kind */
    int8_t n_enum;
    bool always;    /* no default written: always printed */
    bool from_type; /* "=@type": the node's dtype or shape (constant) */
    char enum_names[IR_ATTR_MAX_ENUM][16];
    ir_attr def; /* the default */
} ir_attr_desc;

/* ---------------------------------------------------------------- op table */

typedef enum ir_fusion_kind {
    IR_FK_ELEMWISE,  /* y[i] = f(x[i]): same shape in and out */
    IR_FK_BROADCAST, /* y[i] = f(a[bcast(i)], b[bcast(i)], ...) */
    IR_FK_REDUCE,    /* reduces axes */
    IR_FK_OUTFUSE,   /* opaque producer whose output can take an elementwise epilogue */
    IR_FK_OPAQUE,    /* everything else */
    IR_FK_VIEW,      /* reinterprets its input's buffer (reshape) */
    IR_FK_EFFECT,    /* writes a module global (assign) */
    IR_FK_REGION     /* a fused region of elementwise ops */
} ir_fusion_kind;

/* Facts about an op, the facts column of ops.def (flags, or 0). */
enum {
    /* The result may take the buffer of an operand of its own type: element
     * i of the result depends only on element i of each operand. */
    IR_FACT_INPLACE = 1 << 0,
    /* Two operands that may be swapped without changing any result bit. */
    IR_FACT_COMM = 1 << 1,
    /* Not elementwise, but the lowering reads all it needs of an operand
     * (row) before writing over it, so codegen accepts a plan that puts
     * the result over an operand (plan-memory does not seek such sharing). */
    IR_FACT_READS_FIRST = 1 << 3,
    /* A one-operand f32 op an op-valued attribute (dense's activation) may
     * name: the carrier applies its scalar kernel, lowering and gradient. */
    IR_FACT_ACT = 1 << 2,
    /* Row r of the result along its batch axis depends only on row r of
     * each operand that has a batch axis, except along the axes the node's
     * `axis`/`axes` attribute names (softmax, argmax and the reductions mix
     * along those). Elementwise rows have it implicitly. With it, a function
     * whose every node keeps the batch rows apart can run its batch in
     * chunks (ir_func_mixes_rows, plan-memory's mem_chunk). */
    IR_FACT_ROWWISE = 1 << 4
};

typedef enum ir_opcode {
    IR_ARG,    /* function argument (not an op of ops.def) */
    IR_GLOBAL, /* reference to a module parameter or state slot */
#define EW(name, ...) IR_OP_##name,
#define OP(name, ...) IR_OP_##name,
#include "ir/ops.def"
#undef EW
#undef OP
    IR_NUM_OPCODES
} ir_opcode;

#define IR_FIRST_OP (IR_GLOBAL + 1)

typedef struct ir_node ir_node;
typedef struct ir_region ir_region;
typedef struct ir_interp ir_interp;

/* A scalar in flight through an elementwise kernel. */
typedef union ir_scalar {
    float f;
    int32_t i;
} ir_scalar;

/* A tensor with a concrete shape (the batch already bound). */
typedef struct ir_tensor {
    ir_type type;
    void *data;
} ir_tensor;

/* Shape inference: sets n->type from its operands and attributes (and may
 * normalize attributes, e.g. negative axes). Errors name the op and shapes. */
typedef kiln_status (*ir_infer_fn)(ir_node *n, kiln_diag *d);
/* Interpreter kernel of a tensor op: in[k] are the operands, out the result
 * buffer (already allocated, shape bound). */
typedef kiln_status (*ir_kernel_fn)(ir_interp *ip, const ir_node *n, ir_tensor *out,
                                    const ir_tensor *in);
/* Interpreter kernel of an elementwise op: one output element from one
 * element of each operand. */
typedef ir_scalar (*ir_scalar_fn)(const ir_node *n, const ir_scalar *x);

/* Scratch bytes the lowering of n needs besides its result (the workspace
 * column of ops.def): *fixed + *per_sample * batch, for plan-memory to place.
 * A function of the node's types and attributes only. */
typedef void (*ir_workspace_fn)(const ir_node *n, int64_t *fixed, int64_t *per_sample);

typedef struct ir_op_info {
    const char *name;
    int arity; /* -1: variadic */
    ir_fusion_kind kind;
    const char *attr_schema;
    ir_infer_fn infer;
    ir_kernel_fn kernel; /* tensor ops */
    ir_scalar_fn scalar; /* elementwise and broadcast ops (EW rows) */
    bool is_ew;          /* an EW row: scalar kernel, fusable into regions */
    ir_workspace_fn workspace; /* OP rows; NULL: the lowering needs none */
    unsigned facts;      /* IR_FACT_* of the row */
    int n_attrs;
    ir_attr_desc attrs[IR_MAX_ATTRS];
} ir_op_info;

/* The table, indexed by opcode (entries for IR_ARG and IR_GLOBAL included). */
const ir_op_info *ir_op(int opcode);
const char *ir_op_name(int opcode);
/* Opcode by name, or -1. */
int ir_op_lookup(const char *name);
/* Descriptor of attribute `name` of `opcode`, or NULL. */
const ir_attr_desc *ir_op_attr(int opcode, const char *name);
/* Index of attribute `name` in opcode's schema, or -1. */
int ir_op_attr_index(int opcode, const char *name);
/* The workspace node n's lowering needs (0 and 0 for ops with NOWS). */
void ir_op_workspace(const ir_node *n, int64_t *fixed, int64_t *per_sample);
/* Whether `opcode` has one of the facts `fact` (IR_FACT_* flags). */
bool ir_op_has(int opcode, unsigned fact);
/* Parses op->attr_schema into op->attrs (ops.c calls it once per row). */
bool ir_schema_parse(ir_op_info *op);

/* ------------------------------------------------------------ the graph */

struct ir_node {
    uint16_t op; /* ir_opcode */
    uint16_t n_in;
    int32_t serial; /* unique within the module, in creation order */
    ir_node **in;
    ir_type type;
    ir_attrs attrs;
    ir_loc loc;
    ir_region *region; /* IR_OP_fused: the body */
    const char *name;  /* IR_ARG: argument name; IR_GLOBAL: global name */
    int32_t index;     /* IR_ARG: position; IR_GLOBAL: index of the global */
    /* Memory plan (plan-memory): offset of the result in the workspace.
     * mem_batch: the buffer scales with the batch, and its byte offset is
     * mem_offset * batch within the batch part of the workspace. */
    int64_t mem_offset; /* -1: not planned */
    int8_t mem_batch;
    int8_t mem_inplace; /* result shares an operand's buffer */
    /* The node's workspace (ir_op_workspace), live only while it runs: its
     * fixed bytes at mem_ws of the fixed part, its bytes per sample at
     * mem_fixed + mem_wsb * batch; -1: none. */
    int64_t mem_ws, mem_wsb;
    /* Scratch for passes; meaning is local to one pass. */
    int32_t aux;
    void *aux_ptr;
};

/* ------------------------------------------------- attribute accessors
 * By name, resolved against the node's op (attrs.c). Reading a name the
 * op's schema lacks is a programming error: the readers return 0 / none /
 * an empty list, the setters do nothing (the table tests catch it). */
const ir_attr *ir_attr_get(const ir_node *n, const char *name);
/* int, bool, enum index, dtype, or opcode (0: none). */
int64_t ir_attr_i(const ir_node *n, const char *name);
double ir_attr_f(const ir_node *n, const char *name);
/* A list: its length, *v pointing at the values. */
int ir_attr_ints(const ir_node *n, const char *name, const int64_t **v);
/* For shape inference, which normalizes attributes (negative axes). */
ir_attr *ir_attr_mut(ir_node *n, const char *name);

/* The attributes of a new node of `op`, every entry at its default. */
ir_attrs ir_attrs_default(int op);
void ir_attrs_set_i(ir_attrs *a, const char *name, int64_t v);
void ir_attrs_set_f(ir_attrs *a, const char *name, double v);
void ir_attrs_set_ints(ir_attrs *a, const char *name, int n, const int64_t *v);
/* The same values, entry by entry; floats bitwise (-0 is not 0). */
bool ir_attrs_equal(const ir_attrs *a, const ir_attrs *b);
uint64_t ir_attrs_hash(const ir_attrs *a, uint64_t h);
/* " {name=value, ...}" for the entries a .kir file shows (nothing when none):
 * entries at their default are left out, except those the schema declares
 * without one; entries taken from the type ("=@type") never appear. */
void ir_sb_attrs(ir_sb *sb, const ir_attrs *a);
/* An op-valued attribute's text: the op's name, or "none". */
const char *ir_attr_op_name(int64_t opcode);
/* Schema checks for the verifier: kinds, list lengths, enum ranges, op
 * references (which must have IR_FACT_ACT). NULL if fine, else a message. */
const char *ir_attrs_check(const ir_attrs *a, char *buf, size_t n);

/* The body of a fused region: elementwise nodes in order, reading the
 * region node's operands directly (they are the captured values). */
struct ir_region {
    ir_node **nodes;
    int n, cap;
    ir_node *yield; /* the region's result, or NULL for a region of assigns */
};

typedef enum ir_global_kind { IR_GLOBAL_PARAM, IR_GLOBAL_STATE } ir_global_kind;

typedef struct ir_global {
    const char *name;
    ir_global_kind kind;
    ir_type type; /* static shape */
    kiln_init init;
    /* The initial value, row-major (arena-owned), or NULL: imported weights
     * (frontend/onnx.c). When set, ir_global_init copies it instead of
     * drawing `init`. */
    const void *data;
    bool trainable; /* params only */
    int index;
    ir_node *ref; /* the IR_GLOBAL node operands point to (shared by functions) */
} ir_global;

struct kiln_func {
    kiln_module *m;
    const char *name;
    ir_node **args;
    int n_args, cap_args;
    ir_node **nodes; /* top-level nodes in a valid order (operands first) */
    int n_nodes, cap_nodes;
    ir_node **results;
    int n_results, cap_results;
    /* Public-API value ids: values[id] is the node of kiln_value{id}. */
    ir_node **values;
    int n_values, cap_values;
    const char *error; /* first builder error (arena) */
    ir_loc cur_loc;    /* location stamped on nodes built through the API */
    /* Memory plan: workspace bytes = mem_fixed + mem_per_sample * batch;
     * the 16-byte error record of compiled code at mem_err of the fixed
     * part (-1: not planned). */
    bool planned;
    int64_t mem_fixed, mem_per_sample, mem_err;
    /* > 0: the compiled code runs a batch in chunks of mem_chunk rows (the
     * function keeps rows apart: ir_func_mixes_rows), so its
     * workspace needs mem_fixed + mem_per_sample * min(batch, mem_chunk)
     * bytes; 0: the whole batch at once. */
    int64_t mem_chunk;
};

typedef enum ir_opt_kind { IR_OPT_NONE, IR_OPT_SGD, IR_OPT_ADAM, IR_OPT_ADAMW } ir_opt_kind;

typedef struct ir_optimizer {
    ir_opt_kind kind;
    double lr;
    double beta_1, beta_2, epsilon; /* adam, adamw */
    double weight_decay;            /* adamw */
    double momentum;                /* sgd */
    bool nesterov;                  /* sgd */
} ir_optimizer;

/* Defaults of Keras for the optimizer `kind`. */
ir_optimizer ir_optimizer_defaults(ir_opt_kind kind);
const char *ir_optimizer_name(ir_opt_kind kind);

typedef struct ir_train_config {
    bool present;
    ir_optimizer opt;
    int64_t epochs;
    int64_t batch_size;
    int64_t seed;
    bool metric_accuracy;
} ir_train_config;

/* What `summary` shows: filled by the frontend and the C model API (a .kir
 * module has none; summary then groups parameters by their prefix). Not
 * part of the IR's semantics and not printed in .kir. */
typedef struct ir_layer {
    const char *name; /* "dense", "h1", ... */
    const char *kind; /* "Dense", "Flatten", "Activation" */
    ir_type out;      /* output type, batch as '?' */
    int64_t params;   /* number of parameters */
} ir_layer;

struct kiln_module {
    ir_arena arena;
    const char *name;
    ir_layer *layers;
    int n_layers, cap_layers;
    ir_global **globals;
    int n_globals, cap_globals;
    int32_t *global_index; /* open-addressing table of global indices by name */
    int global_index_cap;  /* a power of two, > 2 * n_globals; 0: none yet */
    kiln_func **funcs;
    int n_funcs, cap_funcs;
    ir_train_config train;
    int32_t next_serial;
};

/* ------------------------------------------------------- module services */

/* Global by name, or NULL. */
ir_global *ir_module_global(const kiln_module *m, const char *name);
/* Adds a parameter or state slot; NULL (with a message) on a duplicate name,
 * a dynamic dim or out of memory. */
ir_global *ir_module_add_global(kiln_module *m, ir_global_kind kind, const char *name,
                                const ir_type *t, kiln_init init, kiln_diag *d);
/* Drops the globals from index n on (a pass rolling back what it added). */
void ir_module_truncate_globals(kiln_module *m, int n);
/* Appends to the layer table (strings copied into the arena). */
kiln_status ir_module_add_layer(kiln_module *m, const char *name, const char *kind,
                                const ir_type *out, int64_t params, kiln_diag *d);
/* Removes function `f` from the module (its nodes stay in the arena). */
void ir_module_remove_func(kiln_module *m, kiln_func *f);
/* Deep-copies function `src` into a new function `name` of the same module.
 * *map (optional) receives an array, indexed by node serial, from source
 * nodes to copies; the caller frees it with ir_free. */
kiln_func *ir_func_clone(kiln_func *src, const char *name, ir_node ***map, int *map_len,
                         kiln_diag *d);

/* Allocates a node in the module's arena (not yet in any function). The
 * operand array is copied. Runs shape inference; NULL with a message on error. */
ir_node *ir_node_create(kiln_module *m, int op, int n_in, ir_node *const *in,
                        const ir_attrs *attrs, ir_loc loc, kiln_diag *d);
/* Reruns shape inference of n (after its operands changed). */
kiln_status ir_node_infer(ir_node *n, kiln_diag *d);
/* Adds an argument to f. */
ir_node *ir_func_add_arg(kiln_func *f, const char *name, const ir_type *t, kiln_diag *d);
/* Inserts n into f's top-level list at position pos (n_nodes: append). */
kiln_status ir_func_insert(kiln_func *f, int pos, ir_node *n, kiln_diag *d);
kiln_status ir_func_add_result(kiln_func *f, ir_node *n, kiln_diag *d);
kiln_status ir_region_append(kiln_module *m, ir_region *r, ir_node *n, kiln_diag *d);
/* The loop domain of fused node n: the broadcast of every body value, every
 * assign target and the yield (dtype f32). An error if they do not broadcast. */
kiln_status ir_region_domain(const ir_node *n, ir_type *out);
/* Whether fused node n must run node by node, through a temp per body value
 * (which plan-memory places): when it assigns a global that it also reads
 * and the global's shape is not the loop's domain (one loop would read
 * elements it has already overwritten). Memory the plan shares never
 * forces it: plan-memory lets a region write over an operand only when
 * one loop may (codegen/ew.c). */
bool ir_region_needs_split(const ir_node *n);
/* Replaces every use of `from` by `to` in f (operands, regions, results). */
void ir_func_replace_uses(kiln_func *f, ir_node *from, ir_node *to);
/* Use counts, indexed by node serial (array of m->next_serial ints; uses in
 * regions count, results count). Caller frees with ir_free. NULL if OOM. */
int *ir_func_use_counts(const kiln_func *f);
/* Drops the top-level nodes of f whose aux is nonzero (a pass marks what
 * it replaced), keeping the order of the rest. */
void ir_func_remove_marked(kiln_func *f);
/* Forgets f's memory plan (a pass that rewrote f calls it; plan-memory
 * plans again). */
void ir_func_unplan(kiln_func *f);
/* Calls fn on every node of f: top-level nodes and region bodies, in order. */
void ir_func_walk(kiln_func *f, void (*fn)(ir_node *n, void *ctx), void *ctx);

/* ----------------------------------------------------------- the builder
 * A cursor into a function (or a region body) that creates nodes there. */
typedef struct ir_builder {
    kiln_func *f;
    ir_region *region; /* non-NULL: append to this region instead */
    int pos;           /* insertion index in f->nodes; -1: append */
    ir_loc loc;
    kiln_diag *d;
    kiln_status status; /* first error */
} ir_builder;

void ir_builder_init(ir_builder *b, kiln_func *f, kiln_diag *d);
/* Creates and inserts a node; NULL on error (b->status set). NULL operands
 * propagate as NULL so a chain is checked once. */
ir_node *ir_b_op(ir_builder *b, int op, int n_in, ir_node *const *in, const ir_attrs *attrs);
ir_node *ir_b_un(ir_builder *b, int op, ir_node *x);
ir_node *ir_b_bin(ir_builder *b, int op, ir_node *x, ir_node *y);
ir_node *ir_b_const(ir_builder *b, ir_dtype dt, double v, int rank, const int64_t *dims);
ir_node *ir_b_scalar(ir_builder *b, double v); /* f32[] */
ir_node *ir_b_reduce(ir_builder *b, int op, ir_node *x, int naxes, const int64_t *axes,
                     bool keepdims);
ir_node *ir_b_reshape(ir_builder *b, ir_node *x, const ir_type *like);
ir_node *ir_b_broadcast_to(ir_builder *b, ir_node *x, const ir_type *like);
ir_node *ir_b_matmul(ir_builder *b, ir_node *x, ir_node *y, bool ta, bool tb);
ir_node *ir_b_assign(ir_builder *b, ir_global *g, ir_node *v);

/* -------------------------------------------------------- verify / print */

/* Checks everything a pass may rely on; reports every problem. */
kiln_status ir_verify_module(const kiln_module *m, kiln_diag *d);
kiln_status ir_verify_func(const kiln_func *f, kiln_diag *d);
/* Which node keeps f from running a batch in chunks of rows, or NULL if
 * none does: row r (along the batch axis) of every result of f depends only
 * on row r of its arguments when every batched argument and value has its
 * batch on axis 0 and every node that reads a batched value is elementwise
 * or IR_FACT_ROWWISE, keeps the batch on axis 0 and names no batch axis in
 * `axis`/`axes`. An argument with its batch elsewhere is returned itself. */
const ir_node *ir_func_mixes_rows(const kiln_func *f);

/* Printing options. */
typedef struct ir_print_opts {
    bool no_locs; /* omit "# file:line:col" comments */
} ir_print_opts;
void ir_print_module(ir_sb *sb, const kiln_module *m, const ir_print_opts *o);
void ir_print_func(ir_sb *sb, const kiln_func *f, const ir_print_opts *o);
/* The module line, globals and train block: everything but the functions. */
void ir_print_module_header(ir_sb *sb, const kiln_module *m);
/* The train { } block (empty when the module has none). */
void ir_print_train_config(ir_sb *sb, const ir_train_config *c);
/* Graphviz: fused regions are drawn as clusters. */
void ir_print_dot(ir_sb *sb, const kiln_module *m, const char *only_func);
/* One node as text, without location: "%3 = relu(%2) : f32[?,128]". Numbers
 * come from n->serial; used in messages. */
void ir_sb_node_short(ir_sb *sb, const ir_node *n);

/* Parses .kir text. `filename` appears in messages. */
kiln_status ir_parse_module(const char *text, size_t len, const char *filename,
                            kiln_module **out, kiln_diag *d);

/* -------------------------------------------------------------- init/RNG */

/* Portable counter-based RNG (splitmix64): the same seed and stream give the
 * same numbers on every machine. */
typedef struct ir_rng {
    uint64_t state;
} ir_rng;
ir_rng ir_rng_seed(uint64_t seed, uint64_t stream);
uint64_t ir_rng_next(ir_rng *r);
double ir_rng_uniform(ir_rng *r); /* [0, 1) with 53 random bits */
double ir_rng_normal(ir_rng *r);  /* standard normal */
/* Fills `data` (g->type's element count) with g's initializer. The stream
 * is derived from the global's name, so adding a parameter leaves the others
 * unchanged. */
kiln_status ir_global_init(const ir_global *g, uint64_t seed, void *data, kiln_diag *d);
const char *ir_init_name(kiln_init_kind k);
/* Whether an i32 global can take this initializer: zeros, ones, or a
 * constant that is an int32 (the others draw floats). */
bool ir_init_fits_i32(kiln_init init);
int ir_init_lookup(const char *name);

/* ----------------------------------------------------------- interpreter */

/* Runs f with the batch bound to `batch`. args[k]/results[k] point to
 * buffers of f's argument/result types; globals[i] to the data of module
 * global i (assign writes there). If the function is planned, values live at
 * their planned offsets in a workspace the interpreter allocates, so a wrong
 * plan shows up as wrong numbers. */
kiln_status ir_interp_run(kiln_func *f, int64_t batch, void *const *args, void *const *results,
                          void *const *globals, kiln_diag *d);

/* Where a run first computes a NaN or Inf: the node (a function argument
 * or an op; NULL when every value is finite), the element (row-major, the
 * batch bound) and its value. */
typedef struct ir_nonfinite {
    const ir_node *node;
    int64_t element;
    float value;
} ir_nonfinite;
/* Runs f like ir_interp_run (results are not written) and stops at the
 * first f32 value holding a NaN or Inf, arguments first, then nodes in
 * order (inside fused regions, the body's node). KILN_OK whether or not one
 * was found; an error only when the run itself fails. */
kiln_status ir_interp_first_nonfinite(kiln_func *f, int64_t batch, void *const *args,
                                      void *const *globals, ir_nonfinite *found, kiln_diag *d);

/* Helpers the interpreter kernels share (interp.c). */
kiln_diag *ir_interp_diag(ir_interp *ip);
void *ir_interp_global(ir_interp *ip, int index);
int64_t ir_interp_batch(ir_interp *ip);
/* Runs a fused region's body on whole tensors. */
kiln_status ir_interp_region(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in);

/* Shapes: broadcasting of two static-or-batch shapes (numpy rules). */
kiln_status ir_broadcast_shapes(const ir_type *a, const ir_type *b, ir_type *out);
/* Normalizes a possibly negative axis against rank; false if out of range. */
bool ir_norm_axis(int64_t *axis, int rank);

/* Declarations of every function ops.def names for the ir layer. */
#define EW(name, arity, kind, facts, attrs, infer, scalar, grad, lower)                            \
    kiln_status infer(ir_node *n, kiln_diag *d);                                                   \
    ir_scalar scalar(const ir_node *n, const ir_scalar *x);
#define OP(name, arity, kind, facts, attrs, infer, kernel, grad, lower, ws)                            \
    kiln_status infer(ir_node *n, kiln_diag *d);                                                   \
    kiln_status kernel(ir_interp *ip, const ir_node *n, ir_tensor *out, const ir_tensor *in);
#include "ir/ops.def"
#undef EW
#undef OP

#endif

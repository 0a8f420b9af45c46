/*
 * plan_memory.c — plan-memory: gives every value of a function a place in
 * one workspace, reusing the place of values that are dead by then.
 *
 * Before:
 *   func @infer(%x : f32[?,784]) -> f32[?,10] {
 *     %0 = dense(%x, @h1.kernel, @h1.bias) {activation=relu} : f32[?,128]
 *     %1 = dense(%0, @h2.kernel, @h2.bias) {activation=relu} : f32[?,64]
 *     %2 = dense(%1, @out.kernel, @out.bias) : f32[?,10]
 *     %3 = softmax(%2) {axis=1} : f32[?,10]
 *     return %3
 *   }
 * After:
 *   func @infer(%x : f32[?,784]) -> f32[?,10] mem(fixed=0, per_sample=768) {
 *     # arena peak: 0 bytes + 768 bytes/sample = 98304 bytes at batch 128
 *     %0 = dense(%x, @h1.kernel, @h1.bias) {activation=relu} : f32[?,128] mem(b:0)
 *     %1 = dense(%0, @h2.kernel, @h2.bias) {activation=relu} : f32[?,64] mem(b:512)
 *     %2 = dense(%1, @out.kernel, @out.bias) : f32[?,10] mem(b:0)
 *     %3 = softmax(%2) {axis=1} : f32[?,10] mem(b:48)
 *     return %3
 *   }
 *
 * The contract (ir.h, interp.c's out_buffer): the workspace holds
 * mem_fixed + mem_per_sample * batch bytes. A value whose type has the batch
 * '?' lives in the batch part, at byte mem_fixed + mem_offset * batch (its
 * mem_offset counts bytes per sample, so one plan serves every batch size);
 * the others at byte mem_offset of the fixed part. Arguments, parameters,
 * state slots, values of region bodies and void nodes get no place; results
 * do (the caller copies them out).
 *
 * Lifetimes are index ranges of the top-level order: a value lives from its
 * node to its last reader (a region reads what it captures; a result lives to
 * the end). Places are shared two ways before any offset is chosen:
 *   - reshape aliases its operand (same bytes, another shape);
 *   - a node of an op with IR_FACT_INPLACE (ops.def: elementwise ops and
 *     fused regions) whose operand of the same type dies at that node writes
 *     over it ("inplace"): element i is read before element i is written,
 *     and nothing else reads it afterwards.
 * Then each part is packed greedily, largest buffer first, at the lowest
 * offset that overlaps no buffer with an overlapping lifetime (the
 * "greedy by size" planner of TFLite's arena, which packs better than
 * first-fit in program order).
 *
 * Chunks: a function whose rows are independent (ir_func_mixes_rows finds
 * no node mixing them: @infer of an MLP or a convnet, not a loss or a train
 * step) gets mem_chunk = the rows whose workspace, argument and result rows
 * fill about PLAN_CHUNK_BYTES, printed as `chunk=N`. Its compiled entry
 * point then runs a batch N rows at a time through one workspace of
 * mem_fixed + mem_per_sample * N bytes: the intermediate values of a chunk
 * stay in cache instead of streaming the whole batch's through memory
 * (at batch 10,000 the convnet's were 1.08 GB), and the planned offsets
 * hold unchanged for the chunk's batch. With more than one thread the
 * chunks are the tasks of a parallel loop, each in its thread's own arena
 * (kiln_pool_scratch). The interpreter runs whole batches, so it checks the
 * chunked code.
 *
 * Alignment: fixed offsets are multiples of 64 bytes (a cache line, and
 * mem_fixed is rounded to 64, so the batch part starts on one too). A batch
 * offset is a multiple of 64 for buffers of at least 64 bytes per sample and
 * of 16 below: offset * batch then keeps that alignment for every batch
 * size, and small per-sample rows (10 floats) do not waste a cache line.
 */
#include "passes/pass.h"

#include <stdlib.h>
#include <string.h>

/* Chunks of a function that keeps its rows apart: about this many bytes of
 * workspace, argument and result rows at a time — an L2 (Zen 3's 512 KB;
 * measured in bench/RESULTS.md, session 26: 256 KB to 1 MB alike). */
enum { PLAN_CHUNK_BYTES = 512 << 10 };

typedef struct buffer {
    int64_t size; /* bytes (per sample in the batch part) */
    int64_t align;
    int start, end; /* lifetime: node indices, inclusive */
    bool batch;
    int64_t offset;
    int64_t *out; /* not a value's buffer: where its offset goes */
} buffer;

static int64_t round_up(int64_t v, int64_t a) {
    return (v + a - 1) / a * a;
}

static int by_size(const void *pa, const void *pb) {
    const buffer *a = *(buffer *const *)pa, *b = *(buffer *const *)pb;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    return (a->start > b->start) - (a->start < b->start);
}

static int by_offset(const void *pa, const void *pb) {
    const buffer *a = *(buffer *const *)pa, *b = *(buffer *const *)pb;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

/* Places the buffers of one part; returns the peak (bytes, or bytes per
 * sample), or -1 when out of memory. */
static int64_t pack(buffer **bufs, int n) {
    buffer **placed = ir_malloc(sizeof(buffer *) * ((size_t)n + 1));
    buffer **live = ir_malloc(sizeof(buffer *) * ((size_t)n + 1));
    if (!placed || !live) {
        ir_free(placed);
        ir_free(live);
        return -1;
    }
    qsort(bufs, (size_t)n, sizeof *bufs, by_size);
    int n_placed = 0;
    int64_t peak = 0;
    for (int i = 0; i < n; i++) {
        buffer *b = bufs[i];
        /* The placed buffers alive at the same time, by offset. */
        int n_live = 0;
        for (int j = 0; j < n_placed; j++) {
            buffer *p = placed[j];
            if (p->size > 0 && p->start <= b->end && b->start <= p->end) live[n_live++] = p;
        }
        qsort(live, (size_t)n_live, sizeof *live, by_offset);
        int64_t off = 0;
        for (int j = 0; j < n_live && b->size > 0; j++) {
            if (live[j]->offset >= off + b->size) break; /* the gap before it fits */
            int64_t end = live[j]->offset + live[j]->size;
            if (end > off) off = round_up(end, b->align);
        }
        b->offset = b->size > 0 ? off : 0;
        if (b->offset + b->size > peak) peak = b->offset + b->size;
        placed[n_placed++] = b;
    }
    ir_free(placed);
    ir_free(live);
    return peak;
}

typedef struct planner {
    kiln_func *f;
    int limit;
    int *last;   /* by serial: index of the last reader */
    int *buf_of; /* by serial: the value's buffer, -1 if none */
    buffer *bufs;
    int n_bufs;
} planner;

static void clear_plan(ir_node *n, void *ctx) {
    (void)ctx;
    n->mem_offset = n->mem_ws = n->mem_wsb = -1;
    n->mem_batch = 0;
    n->mem_inplace = 0;
}

static void count_node(ir_node *n, void *ctx) {
    (void)n;
    ++*(int *)ctx;
}

/* A buffer of `size` bytes (per sample if `batch`) live over [start, end]. */
static buffer *add_buffer(planner *P, int64_t size, bool batch, int start, int end, int64_t *out) {
    buffer *b = &P->bufs[P->n_bufs++];
    b->size = size;
    b->align = batch && size < 64 ? 16 : 64;
    b->start = start;
    b->end = end;
    b->batch = batch;
    b->out = out;
    return b;
}

static int64_t value_bytes(const ir_node *n, bool batch) {
    int64_t elems = batch ? ir_type_static_numel(&n->type) : ir_type_numel(&n->type, 1);
    return elems * (int64_t)ir_dtype_size((ir_dtype)n->type.dtype);
}

/* Whether n (at index i) may write its result over operand k's buffer b:
 * always for reshape (a view); for an op with IR_FACT_INPLACE, when b dies
 * at n, holds k's type, and no other operand of n reads b through another
 * shape (a view), which one loop would read after writing; a fused region
 * also needs its result to span the loop's domain, unless it runs node by
 * node. */
static bool may_share(const planner *P, const ir_node *n, int i, int k, int b) {
    if (n->op == IR_OP_reshape) return true;
    const ir_node *x = n->in[k];
    if (!ir_op_has(n->op, IR_FACT_INPLACE) || !ir_type_eq(&x->type, &n->type) ||
        P->bufs[b].end != i)
        return false;
    for (int j = 0; j < n->n_in; j++) {
        const ir_node *y = n->in[j];
        if (y->serial < P->limit && P->buf_of[y->serial] == b && !ir_type_same_shape(&y->type, &n->type))
            return false;
    }
    if (n->op != IR_OP_fused || ir_region_needs_split(n)) return true;
    ir_type dom;
    return !ir_region_domain(n, &dom) && ir_type_same_shape(&dom, &n->type);
}

/* The buffer of n's value: an operand's (shared), or a new one. */
static void plan_value(planner *P, ir_node *n, int i) {
    for (int k = 0; k < n->n_in; k++) {
        const ir_node *x = n->in[k];
        int b = x->serial < P->limit ? P->buf_of[x->serial] : -1;
        if (b < 0 || !may_share(P, n, i, k, b)) continue; /* args, globals: not ours */
        P->buf_of[n->serial] = b;
        if (P->last[n->serial] > P->bufs[b].end) P->bufs[b].end = P->last[n->serial];
        n->mem_inplace = 1;
        return;
    }
    bool batch = ir_type_batch_axis(&n->type) >= 0;
    P->buf_of[n->serial] = P->n_bufs;
    add_buffer(P, value_bytes(n, batch), batch, i, P->last[n->serial], NULL);
}

/* Memory only node i uses while it runs: its workspace (ops.def's ws
 * column) and, for a region run node by node, a temp per body value. */
static void plan_scratch(planner *P, ir_node *n, int i) {
    int64_t fixed = 0, per_sample = 0;
    ir_op_workspace(n, &fixed, &per_sample);
    if (fixed > 0) add_buffer(P, fixed, false, i, i, &n->mem_ws);
    if (per_sample > 0) add_buffer(P, per_sample, true, i, i, &n->mem_wsb);
    if (n->op != IR_OP_fused || !ir_region_needs_split(n)) return;
    for (int k = 0; k < n->region->n; k++) {
        ir_node *x = n->region->nodes[k];
        if (x->type.dtype == IR_VOID) continue;
        x->mem_batch = ir_type_batch_axis(&x->type) >= 0;
        add_buffer(P, value_bytes(x, x->mem_batch), x->mem_batch, i, i, &x->mem_offset);
    }
}

static void find_lifetimes(planner *P) {
    kiln_func *f = P->f;
    int nn = f->n_nodes;
    memset(P->last, 0xff, sizeof(int) * ((size_t)P->limit + 1));
    memset(P->buf_of, 0xff, sizeof(int) * ((size_t)P->limit + 1));
    for (int i = 0; i < nn; i++) {
        const ir_node *n = f->nodes[i];
        P->last[n->serial] = i; /* a value nobody reads still gets written */
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k]->serial < P->limit) P->last[n->in[k]->serial] = i;
    }
    for (int i = 0; i < f->n_results; i++)
        if (f->results[i]->serial < P->limit) P->last[f->results[i]->serial] = nn;
}

/* Bytes one row of the batch touches: its workspace, argument and result rows. */
static int64_t row_bytes(const kiln_func *f) {
    int64_t bytes = f->mem_per_sample;
    for (int k = 0; k < f->n_args + f->n_results; k++)
        bytes += ir_type_row_bytes(k < f->n_args ? &f->args[k]->type
                                                 : &f->results[k - f->n_args]->type);
    return bytes;
}

/* Rows per chunk of a function that keeps its rows apart, 0 for the others
 * (and for one with no workspace per sample: nothing to keep in cache). */
static int64_t chunk_rows(const kiln_func *f) {
    if (ir_func_mixes_rows(f) || f->mem_per_sample == 0) return 0;
    int64_t rows = PLAN_CHUNK_BYTES / row_bytes(f);
    if (rows < 1) rows = 1;
    return rows;
}

kiln_status pass_plan_memory_func(kiln_func *f, kiln_diag *d) {
    ir_func_walk(f, clear_plan, NULL);
    f->planned = false;
    f->mem_err = -1;
    f->mem_chunk = 0;
    int total = 0, nn = f->n_nodes;
    ir_func_walk(f, count_node, &total);
    planner P = {f, f->m->next_serial, NULL, NULL, NULL, 0};
    P.last = ir_malloc(sizeof(int) * ((size_t)P.limit + 1));
    P.buf_of = ir_malloc(sizeof(int) * ((size_t)P.limit + 1));
    P.bufs = ir_calloc(2 * (size_t)nn + (size_t)total + 2, sizeof(buffer));
    buffer **part = ir_malloc(sizeof(buffer *) * (2 * (size_t)nn + (size_t)total + 2));
    kiln_status st = KILN_OK;
    if (!P.last || !P.buf_of || !P.bufs || !part) {
        st = ir_oom(d);
        goto out;
    }
    find_lifetimes(&P);
    /* The error record of compiled code, live throughout. */
    add_buffer(&P, 16, false, 0, nn, &f->mem_err);
    for (int i = 0; i < nn; i++) {
        ir_node *n = f->nodes[i];
        if (n->type.dtype != IR_VOID) plan_value(&P, n, i);
        plan_scratch(&P, n, i);
    }
    int64_t peak[2] = {0, 0};
    for (int which = 0; which < 2; which++) {
        int np = 0;
        for (int b = 0; b < P.n_bufs; b++)
            if (P.bufs[b].batch == (which == 1)) part[np++] = &P.bufs[b];
        peak[which] = pack(part, np);
        if (peak[which] < 0) {
            st = ir_oom(d);
            goto out;
        }
    }
    for (int b = 0; b < P.n_bufs; b++)
        if (P.bufs[b].out) *P.bufs[b].out = P.bufs[b].offset;
    for (int i = 0; i < nn; i++) {
        ir_node *n = f->nodes[i];
        if (n->type.dtype == IR_VOID) continue;
        const buffer *b = &P.bufs[P.buf_of[n->serial]];
        n->mem_offset = b->offset;
        n->mem_batch = b->batch;
    }
    f->mem_fixed = round_up(peak[0], 64);
    f->mem_per_sample = round_up(peak[1], 16);
    f->mem_chunk = chunk_rows(f);
    f->planned = true;
out:
    ir_free(P.last);
    ir_free(P.buf_of);
    ir_free(P.bufs);
    ir_free(part);
    return st;
}

kiln_status pass_plan_memory(kiln_module *m, kiln_diag *d) { return pass_each_func(m, pass_plan_memory_func, d); }

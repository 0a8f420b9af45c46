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
 * Alignment: fixed offsets are multiples of 64 bytes (a cache line, and
 * mem_fixed is rounded to 64, so the batch part starts on one too). A batch
 * offset is a multiple of 64 for buffers of at least 64 bytes per sample and
 * of 16 below: offset * batch then keeps that alignment for every batch
 * size, and small per-sample rows (10 floats) do not waste a cache line.
 */
#include "passes/pass.h"

#include <stdlib.h>
#include <string.h>

typedef struct buffer {
    int64_t size; /* bytes (per sample in the batch part) */
    int64_t align;
    int start, end; /* lifetime: node indices, inclusive */
    bool batch;
    int64_t offset;
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

static void clear_plan(ir_node *n, void *ctx) {
    (void)ctx;
    n->mem_offset = -1;
    n->mem_batch = 0;
    n->mem_inplace = 0;
}

static kiln_status plan_func(kiln_func *f, kiln_diag *d) {
    ir_func_walk(f, clear_plan, NULL);
    f->planned = false;
    int limit = f->m->next_serial, nn = f->n_nodes;
    int *last = ir_malloc(sizeof(int) * ((size_t)limit + 1));
    int *buf_of = ir_malloc(sizeof(int) * ((size_t)limit + 1));
    buffer *bufs = ir_calloc((size_t)nn + 1, sizeof(buffer));
    buffer **part = ir_malloc(sizeof(buffer *) * ((size_t)nn + 1));
    kiln_status st = KILN_OK;
    if (!last || !buf_of || !bufs || !part) {
        st = ir_oom(d);
        goto out;
    }
    memset(last, 0xff, sizeof(int) * ((size_t)limit + 1));
    memset(buf_of, 0xff, sizeof(int) * ((size_t)limit + 1));
    for (int i = 0; i < nn; i++) {
        const ir_node *n = f->nodes[i];
        last[n->serial] = i; /* a value nobody reads still gets written */
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k]->serial < limit) last[n->in[k]->serial] = i;
    }
    for (int i = 0; i < f->n_results; i++)
        if (f->results[i]->serial < limit) last[f->results[i]->serial] = nn;

    int n_bufs = 0;
    for (int i = 0; i < nn; i++) {
        ir_node *n = f->nodes[i];
        if (n->type.dtype == IR_VOID) continue;
        bool batch = ir_type_batch_axis(&n->type) >= 0;
        int share = -1;
        for (int k = 0; k < n->n_in && share < 0; k++) {
            const ir_node *x = n->in[k];
            int b = x->serial < limit ? buf_of[x->serial] : -1;
            if (b < 0) continue; /* an argument or a global: not ours to reuse */
            if (n->op == IR_OP_reshape)
                share = b; /* same bytes, so always; the lifetime grows below */
            else if (ir_op_has(n->op, IR_FACT_INPLACE) && ir_type_eq(&x->type, &n->type) && bufs[b].end == i)
                share = b;
        }
        if (share >= 0) {
            buf_of[n->serial] = share;
            if (last[n->serial] > bufs[share].end) bufs[share].end = last[n->serial];
            n->mem_inplace = 1;
            continue;
        }
        int64_t elems = batch ? ir_type_static_numel(&n->type) : ir_type_numel(&n->type, 1);
        buffer *b = &bufs[n_bufs];
        b->size = elems * (int64_t)ir_dtype_size((ir_dtype)n->type.dtype);
        b->align = batch && b->size < 64 ? 16 : 64;
        b->start = i;
        b->end = last[n->serial];
        b->batch = batch;
        buf_of[n->serial] = n_bufs++;
    }

    int64_t peak[2] = {0, 0};
    for (int which = 0; which < 2; which++) {
        int np = 0;
        for (int b = 0; b < n_bufs; b++)
            if (bufs[b].batch == (which == 1)) part[np++] = &bufs[b];
        peak[which] = pack(part, np);
        if (peak[which] < 0) {
            st = ir_oom(d);
            goto out;
        }
    }
    for (int i = 0; i < nn; i++) {
        ir_node *n = f->nodes[i];
        if (n->type.dtype == IR_VOID) continue;
        const buffer *b = &bufs[buf_of[n->serial]];
        n->mem_offset = b->offset;
        n->mem_batch = b->batch;
    }
    f->mem_fixed = round_up(peak[0], 64);
    f->mem_per_sample = round_up(peak[1], 16);
    f->planned = true;
out:
    ir_free(last);
    ir_free(buf_of);
    ir_free(bufs);
    ir_free(part);
    return st;
}

kiln_status pass_plan_memory(kiln_module *m, kiln_diag *d) { return pass_each_func(m, plan_func, d); }

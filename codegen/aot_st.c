/*
 * aot_st.c — safetensors in the AOT shared object, written in LLVM IR so the
 * library needs no Kiln runtime: P_load (a strict reader) and P_save (an
 * atomic writer, --train only).
 *
 * P_load knows at compile time which tensors it wants (name, dtype, shape),
 * so it is a small recursive-descent reader of exactly the safetensors JSON:
 *   header   -> '{' [entry (',' entry)*] '}' spaces*
 *   entry    -> "__metadata__" ':' '{' [string ':' string (',' ...)*] '}'
 *             | name ':' '{' field (',' field)* '}'
 *   field    -> "dtype" ':' string | "shape" ':' '[' [uint (',' uint)*] ']'
 *             | "data_offsets" ':' '[' uint ',' uint ']'
 * Every check comes before a byte of tensor data is trusted: the header
 * length against the file size, each entry's fields (all three, once each),
 * dtype and shape against the model, offsets inside the data, byte counts,
 * no overlap, the tensors covering the data exactly, every model tensor
 * present; then the data is read into a staging buffer, checked for NaN and
 * Inf, and only then copied into the handle (all or nothing). Optimizer
 * tensors the model lacks ("optimizer.*") are skipped, as the runtime does.
 *
 * P_save writes the header computed at compile time (only the step counter
 * is formatted at run time), then the data, to PATH.tmp.PID; fsyncs; renames
 * over PATH; fsyncs the directory. Its tensor names and metadata are the
 * runtime's (runtime/checkpoint.h), so `kiln eval --load` reads the file.
 */
#include "codegen/aot.h"

#include <llvm-c/Core.h>
#include <stdio.h>
#include <string.h>

#include "codegen/aot_ir.h"

/* The reference implementation's limit on the JSON header. */
#define AOT_MAX_HEADER 100000000LL

/* ------------------------------------------------------------ tables */

static LLVMValueRef table(ag *a, const char *name, LLVMTypeRef elem, LLVMValueRef *vals, int n) {
    LLVMValueRef init = LLVMConstArray(elem, vals, (unsigned)n);
    LLVMValueRef g = LLVMAddGlobal(a->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(g, init);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(g, 1);
    return g;
}

static LLVMValueRef table_i64(ag *a, const char *name, const int64_t *v, int n) {
    LLVMValueRef *c = ir_calloc((size_t)n + 1, sizeof *c);
    if (!c) return NULL;
    for (int i = 0; i < n; i++) c[i] = ag_i64c(a, v[i]);
    LLVMValueRef g = table(a, name, a->t_i64, c, n);
    ir_free(c);
    return g;
}

static LLVMValueRef at(ag *a, LLVMValueRef tab, LLVMTypeRef elem, LLVMValueRef i) {
    LLVMValueRef idx[2] = {ag_i64c(a, 0), i};
    LLVMValueRef p = LLVMBuildInBoundsGEP2(a->b, LLVMGlobalGetValueType(tab), tab, idx, 2, "");
    return LLVMBuildLoad2(a->b, elem, p, "");
}

/* The tensors the library reads and writes: the used globals, in module
 * order, as constant tables indexed by k. */
typedef struct tabs {
    int n;
    LLVMValueRef name, nlen, dtype, dtname, rank, dims, shape, bytes, hoff, soff;
    int64_t stage_bytes;
} tabs;

static kiln_status make_tables(aot_plan *pl, ag *a, tabs *t, kiln_diag *d) {
    memset(t, 0, sizeof *t);
    int n = 0;
    for (int i = 0; i < pl->n_g; i++) n += pl->g[i].used;
    t->n = n;
    size_t cap = (size_t)n + 1;
    int64_t *nlen = ir_calloc(cap, 8), *dt = ir_calloc(cap, 8), *rank = ir_calloc(cap, 8);
    int64_t *dims = ir_calloc(cap * 8, 8), *bytes = ir_calloc(cap, 8), *hoff = ir_calloc(cap, 8);
    int64_t *soff = ir_calloc(cap, 8);
    LLVMValueRef *names = ir_calloc(cap, sizeof *names), *dtn = ir_calloc(cap, sizeof *dtn);
    LLVMValueRef *shapes = ir_calloc(cap, sizeof *shapes);
    kiln_status st = KILN_OK;
    if (!nlen || !dt || !rank || !dims || !bytes || !hoff || !soff || !names || !dtn || !shapes) {
        st = ir_oom(d);
        goto out;
    }
    int k = 0;
    for (int i = 0; i < pl->n_g; i++) {
        const aot_global *g = &pl->g[i];
        if (!g->used) continue;
        nlen[k] = (int64_t)strlen(g->json);
        dt[k] = g->g->type.dtype == IR_I32;
        rank[k] = g->g->type.rank;
        for (int r = 0; r < g->g->type.rank; r++) dims[8 * k + r] = g->g->type.dims[r];
        bytes[k] = g->bytes;
        hoff[k] = g->offset;
        soff[k] = t->stage_bytes;
        t->stage_bytes += g->bytes;
        names[k] = ag_str(a, g->json);
        dtn[k] = ag_str(a, dt[k] ? "I32" : "F32");
        shapes[k] = ag_str(a, g->shape);
        k++;
    }
    t->nlen = table_i64(a, "st.nlen", nlen, n);
    t->dtype = table_i64(a, "st.dtype", dt, n);
    t->rank = table_i64(a, "st.rank", rank, n);
    t->dims = table_i64(a, "st.dims", dims, 8 * n);
    t->bytes = table_i64(a, "st.bytes", bytes, n);
    t->hoff = table_i64(a, "st.hoff", hoff, n);
    t->soff = table_i64(a, "st.soff", soff, n);
    t->name = table(a, "st.name", a->t_p8, names, n);
    t->dtname = table(a, "st.dtname", a->t_p8, dtn, n);
    t->shape = table(a, "st.shape", a->t_p8, shapes, n);
    if (!t->nlen || !t->dtype || !t->rank || !t->dims || !t->bytes || !t->hoff || !t->soff)
        st = ir_oom(d);
out:
    ir_free(nlen);
    ir_free(dt);
    ir_free(rank);
    ir_free(dims);
    ir_free(bytes);
    ir_free(hoff);
    ir_free(soff);
    ir_free(names);
    ir_free(dtn);
    ir_free(shapes);
    return st;
}

/* ---------------------------------------------------- JSON primitives
 * Each takes (i8* buf, i64 len, i64* pos); buf[len] is a NUL the caller
 * puts there, so one byte of look-ahead never reads out of bounds. */

typedef struct json {
    LLVMValueRef ws, lit, str, uint;
} json;

static LLVMValueRef byte_at(ag *a, LLVMValueRef buf, LLVMValueRef i) {
    return ag_load(a, a->t_i8, ag_off(a, buf, i));
}

static LLVMValueRef is_digit(ag *a, LLVMValueRef c) {
    return ag_and(a, ag_cmp(a, LLVMIntUGE, c, ag_i8c(a, '0')),
                  ag_cmp(a, LLVMIntULE, c, ag_i8c(a, '9')));
}

static void gen_json(ag *a, json *j) {
    LLVMTypeRef p3[3] = {a->t_p8, a->t_i64, a->t_p64};
    /* ws: skips spaces, tabs and line ends. */
    j->ws = ag_begin(a, "json.ws", a->t_void, p3, 3, false);
    {
        LLVMValueRef buf = LLVMGetParam(j->ws, 0), len = LLVMGetParam(j->ws, 1),
                     pos = LLVMGetParam(j->ws, 2);
        ag_loop l;
        ag_loop_begin(a, &l);
        LLVMValueRef p = ag_get(a, a->t_i64, pos);
        ag_loop_while(a, &l, ag_cmp(a, LLVMIntSLT, p, len));
        LLVMValueRef c = byte_at(a, buf, p);
        LLVMValueRef sp = ag_or(a,
                                ag_or(a, ag_cmp(a, LLVMIntEQ, c, ag_i8c(a, ' ')),
                                      ag_cmp(a, LLVMIntEQ, c, ag_i8c(a, '\t'))),
                                ag_or(a, ag_cmp(a, LLVMIntEQ, c, ag_i8c(a, '\n')),
                                      ag_cmp(a, LLVMIntEQ, c, ag_i8c(a, '\r'))));
        ag_if s;
        ag_if_begin(a, &s, ag_not(a, sp));
        ag_break(a, &l);
        ag_if_end(a, &s);
        ag_set(a, pos, ag_add(a, p, ag_i64c(a, 1)));
        ag_loop_end(a, &l);
        ag_ret(a, NULL);
        ag_finish(a);
    }
    /* lit(ch): skips blanks; consumes ch if it is next. */
    LLVMTypeRef p4[4] = {a->t_p8, a->t_i64, a->t_p64, a->t_i8};
    j->lit = ag_begin(a, "json.lit", a->t_i1, p4, 4, false);
    {
        LLVMValueRef args[3] = {LLVMGetParam(j->lit, 0), LLVMGetParam(j->lit, 1),
                                LLVMGetParam(j->lit, 2)};
        ag_call_fn(a, j->ws, args, 3);
        LLVMValueRef p = ag_get(a, a->t_i64, args[2]);
        LLVMValueRef ok =
            ag_and(a, ag_cmp(a, LLVMIntSLT, p, args[1]),
                   ag_cmp(a, LLVMIntEQ, byte_at(a, args[0], p), LLVMGetParam(j->lit, 3)));
        ag_if s;
        ag_if_begin(a, &s, ok);
        ag_set(a, args[2], ag_add(a, p, ag_i64c(a, 1)));
        ag_if_end(a, &s);
        ag_ret(a, ok);
        ag_finish(a);
    }
    /* str(&start, &len): a string; start/len delimit its raw body. Control
     * bytes are refused; an escape is kept as written (names compare raw). */
    LLVMTypeRef p5[5] = {a->t_p8, a->t_i64, a->t_p64, a->t_p64, a->t_p64};
    j->str = ag_begin(a, "json.str", a->t_i1, p5, 5, false);
    {
        LLVMValueRef buf = LLVMGetParam(j->str, 0), len = LLVMGetParam(j->str, 1),
                     pos = LLVMGetParam(j->str, 2);
        LLVMValueRef la[4] = {buf, len, pos, ag_i8c(a, '"')};
        ag_if s;
        ag_if_begin(a, &s, ag_not(a, ag_call_fn(a, j->lit, la, 4)));
        ag_ret(a, LLVMConstInt(a->t_i1, 0, 0));
        ag_if_end(a, &s);
        LLVMValueRef start = ag_get(a, a->t_i64, pos);
        ag_loop l;
        ag_loop_begin(a, &l);
        LLVMValueRef p = ag_get(a, a->t_i64, pos);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntSGE, p, len));
        ag_ret(a, LLVMConstInt(a->t_i1, 0, 0));
        ag_if_end(a, &s);
        LLVMValueRef c = byte_at(a, buf, p);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntEQ, c, ag_i8c(a, '"')));
        ag_break(a, &l);
        ag_if_end(a, &s);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntULT, c, ag_i8c(a, 0x20)));
        ag_ret(a, LLVMConstInt(a->t_i1, 0, 0));
        ag_if_end(a, &s);
        LLVMValueRef step =
            ag_select(a, ag_cmp(a, LLVMIntEQ, c, ag_i8c(a, '\\')), ag_i64c(a, 2), ag_i64c(a, 1));
        ag_set(a, pos, ag_add(a, p, step));
        ag_loop_end(a, &l);
        LLVMValueRef end = ag_get(a, a->t_i64, pos);
        ag_set(a, LLVMGetParam(j->str, 3), start);
        ag_set(a, LLVMGetParam(j->str, 4), ag_sub(a, end, start));
        ag_set(a, pos, ag_add(a, end, ag_i64c(a, 1)));
        ag_ret(a, LLVMConstInt(a->t_i1, 1, 0));
        ag_finish(a);
    }
    /* uint(&v): a non-negative integer without sign, fraction, exponent or
     * leading zero, below 10^16. */
    LLVMTypeRef pu[4] = {a->t_p8, a->t_i64, a->t_p64, a->t_p64};
    j->uint = ag_begin(a, "json.uint", a->t_i1, pu, 4, false);
    {
        LLVMValueRef buf = LLVMGetParam(j->uint, 0), len = LLVMGetParam(j->uint, 1),
                     pos = LLVMGetParam(j->uint, 2);
        LLVMValueRef wa[3] = {buf, len, pos};
        ag_call_fn(a, j->ws, wa, 3);
        LLVMValueRef p0 = ag_get(a, a->t_i64, pos);
        LLVMValueRef c0 = byte_at(a, buf, p0);
        ag_if s;
        ag_if_begin(a, &s, ag_not(a, is_digit(a, c0)));
        ag_ret(a, LLVMConstInt(a->t_i1, 0, 0));
        ag_if_end(a, &s);
        LLVMValueRef c1 = byte_at(a, buf, ag_add(a, p0, ag_i64c(a, 1)));
        ag_if_begin(a, &s, ag_and(a, ag_cmp(a, LLVMIntEQ, c0, ag_i8c(a, '0')), is_digit(a, c1)));
        ag_ret(a, LLVMConstInt(a->t_i1, 0, 0));
        ag_if_end(a, &s);
        LLVMValueRef v = ag_var(a, a->t_i64, ag_i64c(a, 0));
        ag_loop l;
        ag_loop_begin(a, &l);
        LLVMValueRef p = ag_get(a, a->t_i64, pos);
        LLVMValueRef c = byte_at(a, buf, p);
        ag_loop_while(a, &l, is_digit(a, c));
        LLVMValueRef x = ag_get(a, a->t_i64, v);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntSGE, x, ag_i64c(a, 1000000000000000LL)));
        ag_ret(a, LLVMConstInt(a->t_i1, 0, 0));
        ag_if_end(a, &s);
        ag_set(a, v,
               ag_add(a, ag_mul(a, x, ag_i64c(a, 10)), ag_zext64(a, ag_sub(a, c, ag_i8c(a, '0')))));
        ag_set(a, pos, ag_add(a, p, ag_i64c(a, 1)));
        ag_loop_end(a, &l);
        LLVMValueRef c2 = byte_at(a, buf, ag_get(a, a->t_i64, pos));
        ag_if_begin(a, &s,
                    ag_or(a, ag_cmp(a, LLVMIntEQ, c2, ag_i8c(a, '.')),
                          ag_or(a, ag_cmp(a, LLVMIntEQ, c2, ag_i8c(a, 'e')),
                                ag_cmp(a, LLVMIntEQ, c2, ag_i8c(a, 'E')))));
        ag_ret(a, LLVMConstInt(a->t_i1, 0, 0));
        ag_if_end(a, &s);
        ag_set(a, LLVMGetParam(j->uint, 3), ag_get(a, a->t_i64, v));
        ag_ret(a, LLVMConstInt(a->t_i1, 1, 0));
        ag_finish(a);
    }
}

/* ------------------------------------------------------------- P_load */

typedef struct ld {
    ag *a;
    aot_plan *pl;
    json j;
    tabs t;
    LLVMValueRef m, path, status;
    LLVMBasicBlockRef cleanup_bb;
    LLVMValueRef buf, len, pos; /* the header in memory (values valid after reading it) */
} ld;

/* Sets the message and status, then jumps to the cleanup. */
static void ld_fail(ld *l, kiln_status st, const char *fmt, LLVMValueRef *args, unsigned n) {
    aot_set_error(l->a, l->m, fmt, args, n);
    ag_set(l->a, l->status, ag_i32c(l->a, st));
    ag_goto(l->a, l->cleanup_bb);
}

/* A malformed header: names the file, the byte (of the file) at `at` in
 * the header, and what was expected. */
static void ld_bad_at(ld *l, LLVMValueRef at, const char *what) {
    ag *a = l->a;
    char fmt[256];
    snprintf(fmt, sizeof fmt, "%%s: malformed safetensors header near byte %%lld: %s", what);
    LLVMValueRef args[2] = {l->path, ag_add(a, at, ag_i64c(a, 8))};
    ld_fail(l, KILN_ERR_INVALID, fmt, args, 2);
}

/* The same where the reader stands. */
static void ld_bad(ld *l, const char *what) {
    ld_bad_at(l, ag_get(l->a, l->a->t_i64, l->pos), what);
}

static LLVMValueRef ld_lit(ld *l, char ch) {
    LLVMValueRef args[4] = {l->buf, l->len, l->pos, ag_i8c(l->a, ch)};
    return ag_call_fn(l->a, l->j.lit, args, 4);
}

static LLVMValueRef ld_str(ld *l, LLVMValueRef start, LLVMValueRef slen) {
    LLVMValueRef args[5] = {l->buf, l->len, l->pos, start, slen};
    return ag_call_fn(l->a, l->j.str, args, 5);
}

static LLVMValueRef ld_uint(ld *l, LLVMValueRef out) {
    LLVMValueRef args[4] = {l->buf, l->len, l->pos, out};
    return ag_call_fn(l->a, l->j.uint, args, 4);
}

/* if (!cond) bad(what) */
static void ld_expect(ld *l, LLVMValueRef cond, const char *what) {
    ag_if s;
    ag_if_begin(l->a, &s, ag_not(l->a, cond));
    ld_bad(l, what);
    ag_if_end(l->a, &s);
}

/* Whether the string body at (start, n) is the literal `lit`. */
static LLVMValueRef ld_is(ld *l, LLVMValueRef start, LLVMValueRef n, const char *lit) {
    ag *a = l->a;
    size_t k = strlen(lit);
    LLVMBasicBlockRef here = LLVMGetInsertBlock(a->b);
    LLVMBasicBlockRef cmp = ag_block(a, "is.cmp"), done = ag_block(a, "is.done");
    LLVMValueRef same_len = ag_cmp(a, LLVMIntEQ, n, ag_i64c(a, (long long)k));
    LLVMBuildCondBr(a->b, same_len, cmp, done);
    LLVMPositionBuilderAtEnd(a->b, cmp);
    LLVMValueRef args[3] = {ag_off(a, l->buf, start), ag_str(a, lit), ag_i64c(a, (long long)k)};
    LLVMValueRef eq = ag_cmp(a, LLVMIntEQ, ag_c(a, "memcmp", args, 3), ag_i32c(a, 0));
    LLVMBasicBlockRef cmp_end = LLVMGetInsertBlock(a->b);
    LLVMBuildBr(a->b, done);
    LLVMPositionBuilderAtEnd(a->b, done);
    LLVMValueRef phi = LLVMBuildPhi(a->b, a->t_i1, "");
    LLVMValueRef vals[2] = {LLVMConstInt(a->t_i1, 0, 0), eq};
    LLVMBasicBlockRef from[2] = {here, cmp_end};
    LLVMAddIncoming(phi, vals, from, 2);
    return phi;
}

static LLVMValueRef errno_value(ag *a) {
    LLVMValueRef p = ag_c(a, "__errno_location", NULL, 0);
    return LLVMBuildLoad2(a->b, a->t_i32, p, "");
}

/* The metadata object: string to string. */
static void ld_metadata(ld *l) {
    ag *a = l->a;
    LLVMValueRef s0 = ag_var(a, a->t_i64, NULL), n0 = ag_var(a, a->t_i64, NULL);
    ld_expect(l, ld_lit(l, '{'), "__metadata__ must be an object");
    ag_if e;
    ag_if_begin(a, &e, ag_not(a, ld_lit(l, '}')));
    ag_loop lp;
    ag_loop_begin(a, &lp);
    ld_expect(l, ld_str(l, s0, n0), "__metadata__ must map strings to strings");
    ld_expect(l, ld_lit(l, ':'), "expected ':' in __metadata__");
    ld_expect(l, ld_str(l, s0, n0), "__metadata__ must map strings to strings");
    ag_if s;
    ag_if_begin(a, &s, ld_lit(l, ','));
    ag_continue(a, &lp);
    ag_if_end(a, &s);
    ld_expect(l, ld_lit(l, '}'), "expected ',' or '}' in __metadata__");
    ag_break(a, &lp);
    ag_loop_end(a, &lp);
    ag_if_end(a, &e);
}

/* One tensor entry after its name (ks, kl); k: index into the tables or -1
 * (an optimizer tensor the model lacks, checked but not used). */
static void ld_tensor(ld *l, LLVMValueRef ks, LLVMValueRef kl, LLVMValueRef kv, LLVMValueRef seen,
                      LLVMValueRef begin, LLVMValueRef end, LLVMValueRef total,
                      LLVMValueRef data_len) {
    ag *a = l->a;
    tabs *t = &l->t;
    LLVMValueRef fields = ag_var(a, a->t_i64, ag_i64c(a, 0));
    LLVMValueRef dt = ag_var(a, a->t_i64, ag_i64c(a, 2));
    LLVMValueRef vs = ag_var(a, a->t_i64, ag_i64c(a, 0)), vl = ag_var(a, a->t_i64, ag_i64c(a, 0));
    LLVMValueRef rank = ag_var(a, a->t_i64, ag_i64c(a, 0));
    LLVMValueRef dims = ag_array(a, a->t_i64, 8);
    LLVMValueRef b0 = ag_var(a, a->t_i64, ag_i64c(a, 0)), b1 = ag_var(a, a->t_i64, ag_i64c(a, 0));
    LLVMValueRef fs = ag_var(a, a->t_i64, NULL), fl = ag_var(a, a->t_i64, NULL);
    LLVMValueRef v = ag_var(a, a->t_i64, NULL);
    /* Fresh values for this entry (the variables live across entries). */
    ag_set(a, fields, ag_i64c(a, 0));
    ag_set(a, dt, ag_i64c(a, 2));
    ag_set(a, rank, ag_i64c(a, 0));
    ag_set(a, vs, ag_i64c(a, 0));
    ag_set(a, vl, ag_i64c(a, 0));

    ld_expect(l, ld_lit(l, '{'), "expected '{' after a tensor name");
    ag_loop lp;
    ag_loop_begin(a, &lp);
    ld_expect(l, ld_str(l, fs, fl), "expected a field name");
    ld_expect(l, ld_lit(l, ':'), "expected ':' after a field name");
    LLVMValueRef fsv = ag_get(a, a->t_i64, fs), flv = ag_get(a, a->t_i64, fl);
    LLVMValueRef fv = ag_get(a, a->t_i64, fields);
    LLVMValueRef field_at = ag_sub(a, fsv, ag_i64c(a, 1)); /* its opening quote */
    ag_if s, s2;
    ag_if_begin(a, &s, ld_is(l, fsv, flv, "dtype"));
    {
        ag_if_begin(a, &s2, ag_cmp(a, LLVMIntNE, ag_and(a, fv, ag_i64c(a, 1)), ag_i64c(a, 0)));
        ld_bad_at(l, field_at, "duplicate field 'dtype'");
        ag_if_end(a, &s2);
        ag_set(a, fields, ag_or(a, fv, ag_i64c(a, 1)));
        ld_expect(l, ld_str(l, vs, vl), "dtype must be a string");
        LLVMValueRef s_ = ag_get(a, a->t_i64, vs), n_ = ag_get(a, a->t_i64, vl);
        LLVMValueRef f32 = ld_is(l, s_, n_, "F32");
        LLVMValueRef i32 = ld_is(l, s_, n_, "I32");
        ag_set(a, dt,
               ag_select(a, f32, ag_i64c(a, 0), ag_select(a, i32, ag_i64c(a, 1), ag_i64c(a, 2))));
    }
    ag_if_else(a, &s);
    {
        ag_if s3;
        ag_if_begin(a, &s3, ld_is(l, fsv, flv, "shape"));
        {
            ag_if_begin(a, &s2, ag_cmp(a, LLVMIntNE, ag_and(a, fv, ag_i64c(a, 2)), ag_i64c(a, 0)));
            ld_bad_at(l, field_at, "duplicate field 'shape'");
            ag_if_end(a, &s2);
            ag_set(a, fields, ag_or(a, fv, ag_i64c(a, 2)));
            ld_expect(l, ld_lit(l, '['), "shape must be an array");
            ag_if_begin(a, &s2, ag_not(a, ld_lit(l, ']')));
            ag_loop dl;
            ag_loop_begin(a, &dl);
            LLVMValueRef r = ag_get(a, a->t_i64, rank);
            ag_if s4;
            ag_if_begin(a, &s4, ag_cmp(a, LLVMIntSGE, r, ag_i64c(a, 8)));
            ld_bad(l, "a shape has more than 8 dimensions");
            ag_if_end(a, &s4);
            ld_expect(l, ld_uint(l, v), "a shape holds non-negative integers");
            ag_set(a, ag_elem(a, a->t_i64, dims, r), ag_get(a, a->t_i64, v));
            ag_set(a, rank, ag_add(a, r, ag_i64c(a, 1)));
            ag_if_begin(a, &s4, ld_lit(l, ','));
            ag_continue(a, &dl);
            ag_if_end(a, &s4);
            ld_expect(l, ld_lit(l, ']'), "expected ',' or ']' in a shape");
            ag_break(a, &dl);
            ag_loop_end(a, &dl);
            ag_if_end(a, &s2);
        }
        ag_if_else(a, &s3);
        {
            ag_if s4;
            ag_if_begin(a, &s4, ld_is(l, fsv, flv, "data_offsets"));
            ag_if_begin(a, &s2, ag_cmp(a, LLVMIntNE, ag_and(a, fv, ag_i64c(a, 4)), ag_i64c(a, 0)));
            ld_bad_at(l, field_at, "duplicate field 'data_offsets'");
            ag_if_end(a, &s2);
            ag_set(a, fields, ag_or(a, fv, ag_i64c(a, 4)));
            const char *msg = "data_offsets must be [begin, end]";
            ld_expect(l, ld_lit(l, '['), msg);
            ld_expect(l, ld_uint(l, b0), msg);
            ld_expect(l, ld_lit(l, ','), msg);
            ld_expect(l, ld_uint(l, b1), msg);
            ld_expect(l, ld_lit(l, ']'), msg);
            ag_if_else(a, &s4);
            ld_bad_at(l, field_at, "unknown field (a tensor has dtype, shape and data_offsets)");
            ag_if_end(a, &s4);
        }
        ag_if_end(a, &s3);
    }
    ag_if_end(a, &s);
    ag_if_begin(a, &s, ld_lit(l, ','));
    ag_continue(a, &lp);
    ag_if_end(a, &s);
    ld_expect(l, ld_lit(l, '}'), "expected ',' or '}' in a tensor entry");
    ag_break(a, &lp);
    ag_loop_end(a, &lp);

    /* The entry as a whole. */
    LLVMValueRef name_n = LLVMBuildTrunc(
        a->b, ag_select(a, ag_cmp(a, LLVMIntSGT, kl, ag_i64c(a, 100)), ag_i64c(a, 100), kl),
        a->t_i32, "");
    LLVMValueRef name_p = ag_off(a, l->buf, ks);
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_get(a, a->t_i64, fields), ag_i64c(a, 7)));
    {
        LLVMValueRef args[3] = {l->path, name_n, name_p};
        ld_fail(l, KILN_ERR_INVALID, "%s: tensor '%.*s' lacks dtype, shape or data_offsets", args,
                3);
    }
    ag_if_end(a, &s);
    LLVMValueRef lo = ag_get(a, a->t_i64, b0), hi = ag_get(a, a->t_i64, b1);
    ag_if_begin(a, &s,
                ag_or(a, ag_cmp(a, LLVMIntSGT, lo, hi), ag_cmp(a, LLVMIntSGT, hi, data_len)));
    {
        LLVMValueRef args[6] = {l->path, name_n, name_p, lo, hi, data_len};
        ld_fail(l, KILN_ERR_INVALID,
                "%s: tensor '%.*s' has data_offsets [%lld, %lld] outside the data (%lld bytes)",
                args, 6);
    }
    ag_if_end(a, &s);
    ag_set(a, total, ag_add(a, ag_get(a, a->t_i64, total), ag_sub(a, hi, lo)));

    ag_if_begin(a, &s, ag_cmp(a, LLVMIntSGE, kv, ag_i64c(a, 0)));
    {
        LLVMValueRef nm = at(a, t->name, a->t_p8, kv);
        LLVMValueRef edt = at(a, t->dtype, a->t_i64, kv);
        ag_if_begin(a, &s2, ag_cmp(a, LLVMIntNE, ag_get(a, a->t_i64, dt), edt));
        {
            LLVMValueRef n_ = LLVMBuildTrunc(a->b, ag_get(a, a->t_i64, vl), a->t_i32, "");
            LLVMValueRef args[5] = {l->path, nm, n_, ag_off(a, l->buf, ag_get(a, a->t_i64, vs)),
                                    at(a, t->dtname, a->t_p8, kv)};
            ld_fail(l, KILN_ERR_SHAPE, "%s: tensor '%s' has dtype %.*s, the model expects %s", args,
                    5);
        }
        ag_if_end(a, &s2);
        /* The shape, dimension by dimension. */
        LLVMValueRef same = ag_var(a, a->t_i1, NULL);
        LLVMValueRef r = ag_get(a, a->t_i64, rank);
        ag_set(a, same, ag_cmp(a, LLVMIntEQ, r, at(a, t->rank, a->t_i64, kv)));
        ag_for fo;
        LLVMValueRef i = ag_for_begin(a, &fo, r);
        LLVMValueRef want = at(a, t->dims, a->t_i64, ag_add(a, ag_mul(a, kv, ag_i64c(a, 8)), i));
        LLVMValueRef got = ag_get(a, a->t_i64, ag_elem(a, a->t_i64, dims, i));
        ag_set(a, same, ag_and(a, ag_get(a, a->t_i1, same), ag_cmp(a, LLVMIntEQ, got, want)));
        ag_for_end(a, &fo);
        ag_if_begin(a, &s2, ag_not(a, ag_get(a, a->t_i1, same)));
        {
            /* "[d0,d1,...]": at most 8 dims of 16 digits, so 160 bytes hold it. */
            LLVMValueRef sb = ag_array(a, a->t_i8, 160);
            LLVMValueRef used = ag_var(a, a->t_i64, ag_i64c(a, 1));
            ag_store(a, ag_i8c(a, '['), sb);
            ag_for fd;
            LLVMValueRef di = ag_for_begin(a, &fd, r);
            LLVMValueRef u = ag_get(a, a->t_i64, used);
            LLVMValueRef sep = ag_select(a, ag_cmp(a, LLVMIntEQ, di, ag_i64c(a, 0)), ag_str(a, ""),
                                         ag_str(a, ","));
            LLVMValueRef sa[5] = {ag_off(a, sb, u), ag_sub(a, ag_i64c(a, 150), u),
                                  ag_str(a, "%s%lld"), sep,
                                  ag_get(a, a->t_i64, ag_elem(a, a->t_i64, dims, di))};
            LLVMValueRef w = ag_c(a, "snprintf", sa, 5);
            ag_set(a, used, ag_add(a, u, ag_sext64(a, w)));
            ag_for_end(a, &fd);
            LLVMValueRef u_end = ag_get(a, a->t_i64, used);
            ag_store(a, ag_i8c(a, ']'), ag_off(a, sb, u_end));
            ag_store(a, ag_i8c(a, 0), ag_off(a, sb, ag_add(a, u_end, ag_i64c(a, 1))));
            LLVMValueRef args[4] = {l->path, nm, sb, at(a, t->shape, a->t_p8, kv)};
            ld_fail(l, KILN_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model expects %s", args,
                    4);
        }
        ag_if_end(a, &s2);
        LLVMValueRef want_bytes = at(a, t->bytes, a->t_i64, kv);
        ag_if_begin(a, &s2, ag_cmp(a, LLVMIntNE, ag_sub(a, hi, lo), want_bytes));
        {
            LLVMValueRef args[4] = {l->path, nm, ag_sub(a, hi, lo), want_bytes};
            ld_fail(l, KILN_ERR_INVALID,
                    "%s: tensor '%s': data_offsets cover %lld bytes, its shape needs %lld", args,
                    4);
        }
        ag_if_end(a, &s2);
        ag_set(a, ag_elem(a, a->t_i8, seen, kv), ag_i8c(a, 1));
        ag_set(a, ag_elem(a, a->t_i64, begin, kv), lo);
        ag_set(a, ag_elem(a, a->t_i64, end, kv), hi);
    }
    ag_if_end(a, &s);
}

kiln_status aot_st_load(aot_plan *pl, ag *a, kiln_diag *d) {
    ld l;
    memset(&l, 0, sizeof l);
    l.a = a;
    l.pl = pl;
    kiln_status st = make_tables(pl, a, &l.t, d);
    if (st) return st;
    gen_json(a, &l.j);
    const tabs *t = &l.t;
    int n = t->n;

    char name[AOT_MAX_PREFIX + 32];
    snprintf(name, sizeof name, "%s_load", pl->p);
    LLVMTypeRef pt[2] = {a->t_p8, a->t_p8};
    LLVMValueRef fn = ag_begin(a, name, a->t_i32, pt, 2, true);
    l.m = LLVMGetParam(fn, 0);
    l.path = LLVMGetParam(fn, 1);
    aot_check_handle(pl, a, l.m, false);
    l.status = ag_var(a, a->t_i32, ag_i32c(a, KILN_OK));
    LLVMValueRef fvar = ag_var(a, a->t_p8, ag_null(a));
    LLVMValueRef bufvar = ag_var(a, a->t_p8, ag_null(a));
    LLVMValueRef stagevar = ag_var(a, a->t_p8, ag_null(a));
    l.pos = ag_var(a, a->t_i64, ag_i64c(a, 0));
    l.cleanup_bb = ag_block(a, "cleanup");
    ag_if s;

    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, l.path, ""));
    {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: no checkpoint path", name);
        ld_fail(&l, KILN_ERR_INVALID, msg, NULL, 0);
    }
    ag_if_end(a, &s);
    LLVMValueRef oa[2] = {l.path, ag_str(a, "rb")};
    LLVMValueRef f = ag_c(a, "fopen", oa, 2);
    ag_set(a, fvar, f);
    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, f, ""));
    {
        LLVMValueRef args[2] = {l.path, ag_c(a, "strerror", (LLVMValueRef[]){errno_value(a)}, 1)};
        ld_fail(&l, KILN_ERR_IO, "%s: %s", args, 2);
    }
    ag_if_end(a, &s);
    /* The header length, against the file size. */
    LLVMValueRef h8 = ag_array(a, a->t_i8, 8);
    LLVMValueRef ra[4] = {h8, ag_i64c(a, 1), ag_i64c(a, 8), f};
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fread", ra, 4), ag_i64c(a, 8)));
    ld_fail(&l, KILN_ERR_INVALID, "%s: not a safetensors file (shorter than 8 bytes)", &l.path, 1);
    ag_if_end(a, &s);
    LLVMValueRef hlen = ag_load(a, a->t_i64, h8);
    LLVMValueRef sk[3] = {f, ag_i64c(a, 0), ag_i32c(a, 2 /* SEEK_END */)};
    LLVMValueRef sk_ok = ag_cmp(a, LLVMIntEQ, ag_c(a, "fseek", sk, 3), ag_i32c(a, 0));
    LLVMValueRef fsize = ag_c(a, "ftell", &f, 1);
    ag_if_begin(a, &s, ag_or(a, ag_not(a, sk_ok), ag_cmp(a, LLVMIntSLT, fsize, ag_i64c(a, 8))));
    {
        LLVMValueRef args[2] = {l.path, ag_c(a, "strerror", (LLVMValueRef[]){errno_value(a)}, 1)};
        ld_fail(&l, KILN_ERR_IO, "%s: cannot find the file size: %s", args, 2);
    }
    ag_if_end(a, &s);
    LLVMValueRef room = ag_sub(a, fsize, ag_i64c(a, 8));
    ag_if_begin(a, &s,
                ag_or(a,
                      ag_or(a, ag_cmp(a, LLVMIntSLT, hlen, ag_i64c(a, 2)),
                            ag_cmp(a, LLVMIntSGT, hlen, ag_i64c(a, AOT_MAX_HEADER))),
                      ag_cmp(a, LLVMIntSGT, hlen, room)));
    {
        LLVMValueRef args[3] = {l.path, hlen, fsize};
        ld_fail(&l, KILN_ERR_INVALID,
                "%s: not a safetensors file: header length %llu does not fit a file of %lld bytes",
                args, 3);
    }
    ag_if_end(a, &s);
    LLVMValueRef data_len = ag_sub(a, room, hlen);
    LLVMValueRef hl1 = ag_add(a, hlen, ag_i64c(a, 1));
    LLVMValueRef buf = ag_c(a, "malloc", &hl1, 1);
    ag_set(a, bufvar, buf);
    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, buf, ""));
    {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: out of memory", name);
        ld_fail(&l, KILN_ERR_NOMEM, msg, NULL, 0);
    }
    ag_if_end(a, &s);
    ag_store(a, ag_i8c(a, 0), ag_off(a, buf, hlen));
    LLVMValueRef sk2[3] = {f, ag_i64c(a, 8), ag_i32c(a, 0 /* SEEK_SET */)};
    ag_c(a, "fseek", sk2, 3);
    LLVMValueRef rb[4] = {buf, ag_i64c(a, 1), hlen, f};
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fread", rb, 4), hlen));
    ld_fail(&l, KILN_ERR_IO, "%s: read failed", &l.path, 1);
    ag_if_end(a, &s);
    l.buf = buf;
    l.len = hlen;

    /* The header. */
    LLVMValueRef seen = ag_array(a, a->t_i8, (unsigned)n);
    LLVMValueRef begin = ag_array(a, a->t_i64, (unsigned)n),
                 end = ag_array(a, a->t_i64, (unsigned)n);
    LLVMValueRef zs[3] = {seen, ag_i32c(a, 0), ag_i64c(a, n)};
    ag_c(a, "memset", zs, 3);
    LLVMValueRef total = ag_var(a, a->t_i64, ag_i64c(a, 0));
    LLVMValueRef ks = ag_var(a, a->t_i64, NULL), kl = ag_var(a, a->t_i64, NULL);
    LLVMValueRef kvar = ag_var(a, a->t_i64, NULL);
    ld_expect(&l, ld_lit(&l, '{'), "expected '{'");
    ag_if e;
    ag_if_begin(a, &e, ag_not(a, ld_lit(&l, '}')));
    ag_loop lp;
    ag_loop_begin(a, &lp);
    ld_expect(&l, ld_str(&l, ks, kl), "expected a tensor name");
    ld_expect(&l, ld_lit(&l, ':'), "expected ':' after a tensor name");
    LLVMValueRef ksv = ag_get(a, a->t_i64, ks), klv = ag_get(a, a->t_i64, kl);
    ag_if_begin(a, &s, ld_is(&l, ksv, klv, "__metadata__"));
    ld_metadata(&l);
    ag_if_else(a, &s);
    {
        /* Which tensor of the model. */
        ag_set(a, kvar, ag_i64c(a, -1));
        ag_for fk;
        LLVMValueRef k = ag_for_begin(a, &fk, ag_i64c(a, n));
        ag_if s2;
        ag_if_begin(a, &s2, ag_cmp(a, LLVMIntEQ, at(a, t->nlen, a->t_i64, k), klv));
        LLVMValueRef ca[3] = {ag_off(a, buf, ksv), at(a, t->name, a->t_p8, k), klv};
        ag_if s3;
        ag_if_begin(a, &s3, ag_cmp(a, LLVMIntEQ, ag_c(a, "memcmp", ca, 3), ag_i32c(a, 0)));
        ag_set(a, kvar, k);
        ag_break(a, &fk.loop);
        ag_if_end(a, &s3);
        ag_if_end(a, &s2);
        ag_for_end(a, &fk);
        LLVMValueRef kv = ag_get(a, a->t_i64, kvar);
        LLVMValueRef name_n = LLVMBuildTrunc(
            a->b, ag_select(a, ag_cmp(a, LLVMIntSGT, klv, ag_i64c(a, 100)), ag_i64c(a, 100), klv),
            a->t_i32, "");
        LLVMValueRef opt = ag_and(a, ag_cmp(a, LLVMIntSGE, klv, ag_i64c(a, 10)),
                                  ld_is(&l, ksv, ag_i64c(a, 10), "optimizer."));
        ag_if_begin(a, &s2, ag_and(a, ag_cmp(a, LLVMIntSLT, kv, ag_i64c(a, 0)), ag_not(a, opt)));
        {
            LLVMValueRef args[3] = {l.path, name_n, ag_off(a, buf, ksv)};
            ld_fail(&l, KILN_ERR_SHAPE, "%s: tensor '%.*s' is not in the model", args, 3);
        }
        ag_if_end(a, &s2);
        ag_if_begin(a, &s2, ag_cmp(a, LLVMIntSGE, kv, ag_i64c(a, 0)));
        ag_if s3b;
        ag_if_begin(
            a, &s3b,
            ag_cmp(a, LLVMIntNE, ag_get(a, a->t_i8, ag_elem(a, a->t_i8, seen, kv)), ag_i8c(a, 0)));
        {
            LLVMValueRef args[2] = {l.path, at(a, t->name, a->t_p8, kv)};
            ld_fail(&l, KILN_ERR_INVALID, "%s: tensor '%s' appears twice", args, 2);
        }
        ag_if_end(a, &s3b);
        ag_if_end(a, &s2);
        ld_tensor(&l, ksv, klv, kv, seen, begin, end, total, data_len);
    }
    ag_if_end(a, &s);
    ag_if_begin(a, &s, ld_lit(&l, ','));
    ag_continue(a, &lp);
    ag_if_end(a, &s);
    ld_expect(&l, ld_lit(&l, '}'), "expected ',' or '}' after a tensor");
    ag_break(a, &lp);
    ag_loop_end(a, &lp);
    ag_if_end(a, &e);
    /* Only padding may follow. */
    LLVMValueRef wa[3] = {buf, hlen, l.pos};
    ag_call_fn(a, l.j.ws, wa, 3);
    ld_expect(&l, ag_cmp(a, LLVMIntEQ, ag_get(a, a->t_i64, l.pos), hlen),
              "unexpected bytes after the header");

    /* The data: covered exactly, every tensor present, no overlap. */
    LLVMValueRef tot = ag_get(a, a->t_i64, total);
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, tot, data_len));
    {
        LLVMValueRef args[3] = {l.path, tot, data_len};
        ld_fail(&l, KILN_ERR_INVALID,
                "%s: the tensors cover %lld bytes but the file holds %lld bytes of data", args, 3);
    }
    ag_if_end(a, &s);
    ag_for fm;
    LLVMValueRef k = ag_for_begin(a, &fm, ag_i64c(a, n));
    ag_if_begin(
        a, &s,
        ag_cmp(a, LLVMIntEQ, ag_get(a, a->t_i8, ag_elem(a, a->t_i8, seen, k)), ag_i8c(a, 0)));
    {
        LLVMValueRef args[4] = {l.path, at(a, t->name, a->t_p8, k), at(a, t->dtname, a->t_p8, k),
                                at(a, t->shape, a->t_p8, k)};
        ld_fail(&l, KILN_ERR_SHAPE, "%s: tensor '%s' is missing; the model expects %s %s", args, 4);
    }
    ag_if_end(a, &s);
    ag_for fo;
    LLVMValueRef j = ag_for_begin(a, &fo, k);
    LLVMValueRef bk = ag_get(a, a->t_i64, ag_elem(a, a->t_i64, begin, k));
    LLVMValueRef ek = ag_get(a, a->t_i64, ag_elem(a, a->t_i64, end, k));
    LLVMValueRef bj = ag_get(a, a->t_i64, ag_elem(a, a->t_i64, begin, j));
    LLVMValueRef ej = ag_get(a, a->t_i64, ag_elem(a, a->t_i64, end, j));
    ag_if_begin(a, &s, ag_and(a, ag_cmp(a, LLVMIntSLT, bk, ej), ag_cmp(a, LLVMIntSLT, bj, ek)));
    {
        LLVMValueRef args[3] = {l.path, at(a, t->name, a->t_p8, j), at(a, t->name, a->t_p8, k)};
        ld_fail(&l, KILN_ERR_INVALID, "%s: tensors '%s' and '%s' overlap", args, 3);
    }
    ag_if_end(a, &s);
    ag_for_end(a, &fo);
    ag_for_end(a, &fm);

    /* Read into a staging buffer, check, then copy into the handle. */
    LLVMValueRef sbytes = ag_i64c(a, t->stage_bytes ? t->stage_bytes : 1);
    LLVMValueRef stage = ag_c(a, "malloc", &sbytes, 1);
    ag_set(a, stagevar, stage);
    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, stage, ""));
    {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: out of memory", name);
        ld_fail(&l, KILN_ERR_NOMEM, msg, NULL, 0);
    }
    ag_if_end(a, &s);
    LLVMValueRef data0 = ag_add(a, ag_i64c(a, 8), hlen);
    ag_for fr;
    k = ag_for_begin(a, &fr, ag_i64c(a, n));
    {
        LLVMValueRef nb = at(a, t->bytes, a->t_i64, k);
        LLVMValueRef dst = ag_off(a, stage, at(a, t->soff, a->t_i64, k));
        LLVMValueRef sa[3] = {f,
                              ag_add(a, data0, ag_get(a, a->t_i64, ag_elem(a, a->t_i64, begin, k))),
                              ag_i32c(a, 0)};
        LLVMValueRef seek_ok = ag_cmp(a, LLVMIntEQ, ag_c(a, "fseek", sa, 3), ag_i32c(a, 0));
        LLVMValueRef rd[4] = {dst, ag_i64c(a, 1), nb, f};
        ag_if_begin(a, &s, ag_not(a, seek_ok));
        ld_fail(&l, KILN_ERR_IO, "%s: read failed", &l.path, 1);
        ag_if_end(a, &s);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fread", rd, 4), nb));
        ld_fail(&l, KILN_ERR_IO, "%s: read failed", &l.path, 1);
        ag_if_end(a, &s);
        /* NaN or Inf in an f32 tensor: the exponent bits all set. */
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntEQ, at(a, t->dtype, a->t_i64, k), ag_i64c(a, 0)));
        ag_for fe;
        LLVMValueRef el = ag_for_begin(a, &fe, LLVMBuildUDiv(a->b, nb, ag_i64c(a, 4), ""));
        LLVMValueRef bits = ag_load(a, a->t_i32, ag_off(a, dst, ag_mul(a, el, ag_i64c(a, 4))));
        ag_if s2;
        ag_if_begin(
            a, &s2,
            ag_cmp(a, LLVMIntEQ, ag_and(a, bits, ag_i32c(a, 0x7f800000)), ag_i32c(a, 0x7f800000)));
        {
            LLVMValueRef args[3] = {l.path, at(a, t->name, a->t_p8, k), el};
            ld_fail(&l, KILN_ERR_NONFINITE, "%s: tensor '%s' holds NaN or Inf at element %lld",
                    args, 3);
        }
        ag_if_end(a, &s2);
        ag_for_end(a, &fe);
        ag_if_end(a, &s);
    }
    ag_for_end(a, &fr);
    ag_for fc;
    k = ag_for_begin(a, &fc, ag_i64c(a, n));
    LLVMValueRef cp[3] = {ag_off(a, l.m, at(a, t->hoff, a->t_i64, k)),
                          ag_off(a, stage, at(a, t->soff, a->t_i64, k)),
                          at(a, t->bytes, a->t_i64, k)};
    ag_c(a, "memcpy", cp, 3);
    ag_for_end(a, &fc);
    ag_store(a, ag_i32c(a, 1), ag_offc(a, l.m, AOT_OFF_READY));
    ag_goto(a, l.cleanup_bb);

    /* Every path ends here. */
    ag_place(a, l.cleanup_bb);
    LLVMValueRef fv = ag_get(a, a->t_p8, fvar);
    ag_if_begin(a, &s, LLVMBuildIsNotNull(a->b, fv, ""));
    ag_c(a, "fclose", &fv, 1);
    ag_if_end(a, &s);
    LLVMValueRef bv = ag_get(a, a->t_p8, bufvar), sv = ag_get(a, a->t_p8, stagevar);
    ag_c(a, "free", &bv, 1);
    ag_c(a, "free", &sv, 1);
    ag_ret(a, ag_get(a, a->t_i32, l.status));
    ag_finish(a);
    return KILN_OK;
}

/* ------------------------------------------------------------- P_save */

char *aot_json_string(const char *s) {
    ir_sb sb;
    ir_sb_init(&sb);
    ir_sb_json_escape(&sb, s);
    return ir_sb_take(&sb);
}

kiln_status aot_st_save(aot_plan *pl, ag *a, kiln_diag *d) {
    /* The header: metadata as the runtime writes it, step last so it can be
     * formatted at run time; the tensors in module order. */
    ir_sb pre, post;
    ir_sb_init(&pre);
    ir_sb_init(&post);
    unsigned v = pl->version;
    ir_sb_printf(&pre,
                 "{\"__metadata__\":{\"format\":\"kiln\",\"format_version\":\"%d\","
                 "\"kiln_version\":\"%u.%u.%u\",\"model\":\"",
                 pl->o->format_version, v >> 16, (v >> 8) & 255, v & 255);
    ir_sb_json_escape(&pre, pl->m->name);
    ir_sb_printf(&pre, "\",\"structure_hash\":\"%016llx\"",
                 (unsigned long long)pl->o->structure_hash);
    bool step = pl->iterations >= 0;
    if (step) ir_sb_puts(&pre, ",\"step\":\"");
    ir_sb_puts(&post, step ? "\"}" : "}");
    for (int i = 0; i < pl->n_g; i++) {
        const aot_global *g = &pl->g[i];
        if (!g->used) continue;
        ir_sb_printf(&post, ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%lld,%lld]}",
                     g->json, g->g->type.dtype == IR_I32 ? "I32" : "F32", g->shape,
                     (long long)g->file_offset, (long long)(g->file_offset + g->bytes));
    }
    ir_sb_putc(&post, '}');
    if (pre.oom || post.oom) {
        ir_sb_free(&pre);
        ir_sb_free(&post);
        return ir_oom(d);
    }
    /* Room for an i32 step; padded with spaces so the data starts 8-aligned. */
    int64_t hl = (int64_t)(pre.len + post.len) + (step ? 11 : 0);
    hl = (hl + 7) / 8 * 8;

    char name[AOT_MAX_PREFIX + 32], msg[256];
    snprintf(name, sizeof name, "%s_save", pl->p);
    LLVMTypeRef pt[2] = {a->t_p8, a->t_p8};
    LLVMValueRef fn = ag_begin(a, name, a->t_i32, pt, 2, true);
    LLVMValueRef m = LLVMGetParam(fn, 0), path = LLVMGetParam(fn, 1);
    aot_check_handle(pl, a, m, false);
    LLVMValueRef status = ag_var(a, a->t_i32, ag_i32c(a, KILN_OK));
    LLVMValueRef fvar = ag_var(a, a->t_p8, ag_null(a));
    LLVMValueRef bufvar = ag_var(a, a->t_p8, ag_null(a));
    LLVMValueRef tmpvar = ag_var(a, a->t_p8, ag_null(a));
    LLVMValueRef created = ag_var(a, a->t_i1, LLVMConstInt(a->t_i1, 0, 0));
    LLVMBasicBlockRef cleanup = ag_block(a, "cleanup");
#define SAVE_FAIL(st_, fmt_, args_, n_)                                                            \
    do {                                                                                           \
        aot_set_error(a, m, fmt_, args_, n_);                                                      \
        ag_set(a, status, ag_i32c(a, st_));                                                        \
        ag_goto(a, cleanup);                                                                       \
    } while (0)
    ag_if s;
    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, path, ""));
    snprintf(msg, sizeof msg, "%s: no checkpoint path", name);
    SAVE_FAIL(KILN_ERR_INVALID, msg, NULL, 0);
    ag_if_end(a, &s);
    ag_if_begin(
        a, &s,
        ag_cmp(a, LLVMIntEQ, ag_load(a, a->t_i32, ag_offc(a, m, AOT_OFF_READY)), ag_i32c(a, 0)));
    snprintf(msg, sizeof msg, "%s: the model has no weights yet", name);
    SAVE_FAIL(KILN_ERR_INVALID, msg, NULL, 0);
    ag_if_end(a, &s);
    /* A checkpoint is never written with NaN or Inf weights. */
    for (int i = 0; i < pl->n_g; i++) {
        const aot_global *g = &pl->g[i];
        if (!g->used || g->g->type.dtype != IR_F32) continue;
        LLVMValueRef base = ag_offc(a, m, g->offset);
        ag_for fe;
        LLVMValueRef el = ag_for_begin(a, &fe, ag_i64c(a, g->bytes / 4));
        LLVMValueRef bits = ag_load(a, a->t_i32, ag_off(a, base, ag_mul(a, el, ag_i64c(a, 4))));
        ag_if_begin(
            a, &s,
            ag_cmp(a, LLVMIntEQ, ag_and(a, bits, ag_i32c(a, 0x7f800000)), ag_i32c(a, 0x7f800000)));
        LLVMValueRef args[3] = {path, ag_str(a, g->json), el};
        SAVE_FAIL(KILN_ERR_NONFINITE,
                  "%s: not saved: tensor '%s' holds NaN or Inf at element %lld; the previous "
                  "checkpoint is kept",
                  args, 3);
        ag_if_end(a, &s);
        ag_for_end(a, &fe);
    }
    /* One allocation: the header, then the temporary name, then the directory. */
    LLVMValueRef plen = ag_c(a, "strlen", &path, 1);
    LLVMValueRef want = ag_add(a, ag_mul(a, plen, ag_i64c(a, 2)), ag_i64c(a, hl + 64));
    LLVMValueRef buf = ag_c(a, "malloc", &want, 1);
    ag_set(a, bufvar, buf);
    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, buf, ""));
    snprintf(msg, sizeof msg, "%s: out of memory", name);
    SAVE_FAIL(KILN_ERR_NOMEM, msg, NULL, 0);
    ag_if_end(a, &s);
    LLVMValueRef hdr = buf;
    LLVMValueRef tmp = ag_offc(a, buf, hl + 1);
    LLVMValueRef dir = ag_off(a, tmp, ag_add(a, plen, ag_i64c(a, 32)));
    ag_set(a, tmpvar, tmp);
    LLVMValueRef written;
    if (step) {
        LLVMValueRef it = ag_load(a, a->t_i32, ag_offc(a, m, pl->g[pl->iterations].offset));
        LLVMValueRef args[6] = {hdr, ag_i64c(a, hl + 1), ag_str(a, "%s%d%s"), ag_str(a, pre.buf),
                                it,  ag_str(a, post.buf)};
        written = ag_sext64(a, ag_c(a, "snprintf", args, 6));
    } else {
        LLVMValueRef args[5] = {hdr, ag_i64c(a, hl + 1), ag_str(a, "%s%s"), ag_str(a, pre.buf),
                                ag_str(a, post.buf)};
        written = ag_sext64(a, ag_c(a, "snprintf", args, 5));
    }
    LLVMValueRef pad[3] = {ag_off(a, hdr, written), ag_i32c(a, ' '),
                           ag_sub(a, ag_i64c(a, hl), written)};
    ag_c(a, "memset", pad, 3);
    LLVMValueRef ta[5] = {tmp, ag_add(a, plen, ag_i64c(a, 32)), ag_str(a, "%s.tmp.%d"), path,
                          ag_c(a, "getpid", NULL, 0)};
    ag_c(a, "snprintf", ta, 5);
    LLVMValueRef oa[2] = {tmp, ag_str(a, "wb")};
    LLVMValueRef f = ag_c(a, "fopen", oa, 2);
    ag_set(a, fvar, f);
    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, f, ""));
    {
        LLVMValueRef args[2] = {tmp, ag_c(a, "strerror", (LLVMValueRef[]){errno_value(a)}, 1)};
        SAVE_FAIL(KILN_ERR_IO, "%s: %s", args, 2);
    }
    ag_if_end(a, &s);
    ag_set(a, created, LLVMConstInt(a->t_i1, 1, 0));
    LLVMBasicBlockRef io_fail = ag_block(a, "io.fail");
    LLVMValueRef h8 = ag_array(a, a->t_i64, 1);
    ag_set(a, h8, ag_i64c(a, hl));
    LLVMValueRef w8[4] = {LLVMBuildBitCast(a->b, h8, a->t_p8, ""), ag_i64c(a, 1), ag_i64c(a, 8), f};
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fwrite", w8, 4), ag_i64c(a, 8)));
    ag_goto(a, io_fail);
    ag_if_end(a, &s);
    LLVMValueRef wh[4] = {hdr, ag_i64c(a, 1), ag_i64c(a, hl), f};
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fwrite", wh, 4), ag_i64c(a, hl)));
    ag_goto(a, io_fail);
    ag_if_end(a, &s);
    for (int i = 0; i < pl->n_g; i++) {
        const aot_global *g = &pl->g[i];
        if (!g->used) continue;
        LLVMValueRef wd[4] = {ag_offc(a, m, g->offset), ag_i64c(a, 1), ag_i64c(a, g->bytes), f};
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fwrite", wd, 4), ag_i64c(a, g->bytes)));
        ag_goto(a, io_fail);
        ag_if_end(a, &s);
    }
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fflush", &f, 1), ag_i32c(a, 0)));
    ag_goto(a, io_fail);
    ag_if_end(a, &s);
    LLVMValueRef fd = ag_c(a, "fileno", &f, 1);
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fsync", &fd, 1), ag_i32c(a, 0)));
    ag_goto(a, io_fail);
    ag_if_end(a, &s);
    ag_set(a, fvar, ag_null(a));
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "fclose", &f, 1), ag_i32c(a, 0)));
    ag_goto(a, io_fail);
    ag_if_end(a, &s);
    LLVMValueRef rn[2] = {tmp, path};
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, ag_c(a, "rename", rn, 2), ag_i32c(a, 0)));
    ag_goto(a, io_fail);
    ag_if_end(a, &s);
    ag_set(a, created, LLVMConstInt(a->t_i1, 0, 0));
    /* Make the rename durable: fsync the directory (best effort). */
    {
        LLVMValueRef slash = ag_var(a, a->t_i64, ag_i64c(a, -1));
        ag_for fs;
        LLVMValueRef i = ag_for_begin(a, &fs, plen);
        ag_if s2;
        ag_if_begin(a, &s2,
                    ag_cmp(a, LLVMIntEQ, ag_load(a, a->t_i8, ag_off(a, path, i)), ag_i8c(a, '/')));
        ag_set(a, slash, i);
        ag_if_end(a, &s2);
        ag_for_end(a, &fs);
        LLVMValueRef sl = ag_get(a, a->t_i64, slash);
        LLVMValueRef cp[3] = {dir, path, sl};
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntSGT, sl, ag_i64c(a, 0)));
        ag_c(a, "memcpy", cp, 3);
        ag_store(a, ag_i8c(a, 0), ag_off(a, dir, sl));
        ag_if_else(a, &s);
        LLVMValueRef one =
            ag_select(a, ag_cmp(a, LLVMIntEQ, sl, ag_i64c(a, 0)), ag_str(a, "/"), ag_str(a, "."));
        LLVMValueRef c2[3] = {dir, one, ag_i64c(a, 2)};
        ag_c(a, "memcpy", c2, 3);
        ag_if_end(a, &s);
        /* O_RDONLY | O_DIRECTORY (Linux) */
        LLVMValueRef op[2] = {dir, ag_i32c(a, 0200000)};
        LLVMValueRef dfd = ag_c(a, "open", op, 2);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntSGE, dfd, ag_i32c(a, 0)));
        ag_c(a, "fsync", &dfd, 1);
        ag_c(a, "close", &dfd, 1);
        ag_if_end(a, &s);
    }
    ag_goto(a, cleanup);

    ag_place(a, io_fail);
    {
        LLVMValueRef args[2] = {path, ag_c(a, "strerror", (LLVMValueRef[]){errno_value(a)}, 1)};
        SAVE_FAIL(KILN_ERR_IO, "%s: write failed: %s; the previous checkpoint is kept", args, 2);
    }

    ag_place(a, cleanup);
    LLVMValueRef fv = ag_get(a, a->t_p8, fvar);
    ag_if_begin(a, &s, LLVMBuildIsNotNull(a->b, fv, ""));
    ag_c(a, "fclose", &fv, 1);
    ag_if_end(a, &s);
    ag_if_begin(a, &s, ag_get(a, a->t_i1, created));
    LLVMValueRef tv = ag_get(a, a->t_p8, tmpvar);
    ag_c(a, "remove", &tv, 1);
    ag_if_end(a, &s);
    LLVMValueRef bv = ag_get(a, a->t_p8, bufvar);
    ag_c(a, "free", &bv, 1);
    ag_ret(a, ag_get(a, a->t_i32, status));
    ag_finish(a);
#undef SAVE_FAIL
    ir_sb_free(&pre);
    ir_sb_free(&post);
    return KILN_OK;
}

/*
 * kir_mem.c — the memory plan in a .kir file: a planned function's
 * mem(fixed=, per_sample=, err=) and each node's mem(f:|b: offset, inplace,
 * ws:, wsb:), and the checks that let the interpreter and codegen trust
 * them (every slot inside its part of the workspace, no claim larger than
 * the values could need).
 */
#include "ir/kir.h"

/* Checks a planned node's slot against the function's workspace, so the
 * interpreter can trust the plan. */
kiln_status kir_check_mem(parser *p, const token *mt, const ir_node *n) {
    const kiln_func *f = p->f;
    bool batch = ir_type_batch_axis(&n->type) >= 0;
    int64_t bytes = ir_type_static_numel(&n->type) * (int64_t)ir_dtype_size(n->type.dtype);
    /* The batch part scales with the batch, the fixed part does not. */
    if (n->mem_batch != batch)
        return kir_err_at(p, KILN_ERR_INVALID, mt, "mem(%s:...) on a value %s a batch dimension",
                          n->mem_batch ? "b" : "f", n->mem_batch ? "without" : "with");
    int64_t room = n->mem_batch ? f->mem_per_sample : f->mem_fixed;
    if (n->mem_offset + bytes > room)
        return kir_err_at(
            p, KILN_ERR_INVALID, mt,
            "the %lld-byte buffer at offset %lld exceeds the %s part of the workspace "
            "(%lld bytes)",
            (long long)bytes, (long long)n->mem_offset, n->mem_batch ? "per-sample" : "fixed",
            (long long)room);
    return KILN_OK;
}

/* A node's workspace: where the plan says, within its part, iff it has one. */
kiln_status kir_check_ws(parser *p, const token *mt, const ir_node *n) {
    int64_t need[2], at[2] = {n->mem_ws, n->mem_wsb}, room[2] = {p->f->mem_fixed, p->f->mem_per_sample};
    ir_op_workspace(n, &need[0], &need[1]);
    for (int k = 0; k < 2; k++)
        if ((need[k] > 0) != (at[k] >= 0) || (at[k] >= 0 && at[k] + need[k] > room[k]))
            return kir_err_at(p, KILN_ERR_INVALID, mt,
                              "%s needs %lld workspace bytes%s; mem(%s:...) must place them "
                              "in the %s part of the workspace (%lld bytes)",
                              ir_op_name(n->op), (long long)need[k], k ? " per sample" : "",
                              k ? "wsb" : "ws", k ? "per-sample" : "fixed", (long long)room[k]);
    return KILN_OK;
}

/* A planned function's workspace is what its values need at most: a plan
 * (plan-memory's or any other) packs them into no more than the sum of
 * their sizes, each rounded to its alignment. A larger claim would only
 * make the runtime allocate, and the interpreter fill, memory no value
 * uses (mem(fixed=2^40) on a function of three small nodes), so it is
 * refused here, before anything is allocated for it. */
static void add_need(ir_node *n, void *ctx) {
    int64_t *need = ctx, ws[2];
    ir_op_workspace(n, &ws[0], &ws[1]);
    for (int k = 0; k < 2; k++) need[k] += (ws[k] + 63) / 64 * 64;
    if (n->mem_offset < 0 || n->type.dtype == IR_VOID) return;
    int64_t bytes = ir_type_static_numel(&n->type) * (int64_t)ir_dtype_size(n->type.dtype);
    need[n->mem_batch ? 1 : 0] += (bytes + 63) / 64 * 64; /* < 2^20 nodes of < 2^33 bytes */
}

kiln_status kir_check_workspace(parser *p, const token *name, kiln_func *f) {
    int64_t need[2] = {64, 0}; /* fixed bytes (the error record's first), bytes per sample */
    ir_func_walk(f, add_need, need);
    if (f->mem_err >= 0 && f->mem_err + 16 > f->mem_fixed)
        return kir_err_at(p, KILN_ERR_INVALID, name,
                          "@%s: the error record at %lld exceeds the fixed part of the workspace",
                          f->name, (long long)f->mem_err);
    const ir_node *mix = f->mem_chunk > 0 ? ir_func_mixes_rows(f) : NULL;
    if (mix)
        return kir_err_at(p, KILN_ERR_INVALID, name,
                          "@%s: chunk=%lld, but %s mixes the rows of the batch", f->name,
                          (long long)f->mem_chunk,
                          mix->op == IR_ARG ? "an argument with its batch axis past 0" : ir_op_name(mix->op));
    if (f->mem_fixed <= need[0] && f->mem_per_sample <= need[1]) return KILN_OK;
    return kir_err_at(
        p, KILN_ERR_LIMIT, name,
        "@%s: a workspace of %lld bytes + %lld per sample is more than its values can "
        "need (%lld + %lld per sample)",
        f->name, (long long)f->mem_fixed, (long long)f->mem_per_sample, (long long)need[0],
        (long long)need[1]);
}

/* nmem  -> 'mem' '(' mitem {',' mitem} ')'
   mitem -> ('f' | 'b' | 'ws' | 'wsb') ':' INT | 'inplace'
   (the value's slot, fixed or per sample; the node's workspace, ditto) */
kiln_status kir_parse_node_mem(parser *p, ir_node *m) {
    kir_next(p); /* 'mem' */
    int open = p->t.line;
    if (kir_expect(p, '(')) return p->st;
    for (;;) {
        bool fb = kir_at_name(p, "f") || kir_at_name(p, "b");
        int64_t *dst = fb ? &m->mem_offset : kir_at_name(p, "ws") ? &m->mem_ws
                                         : kir_at_name(p, "wsb")  ? &m->mem_wsb
                                                                  : NULL;
        if (kir_at_name(p, "inplace")) {
            m->mem_inplace = 1;
            kir_next(p);
        } else if (!dst) {
            return kir_err_near(p, "expected 'f', 'b', 'inplace', 'ws' or 'wsb'");
        } else {
            if (fb) m->mem_batch = kir_at_name(p, "b");
            kir_next(p);
            if (kir_expect(p, ':')) return p->st;
            token ot = p->t;
            if (kir_parse_int(p, dst)) return p->st;
            if (*dst < 0 || *dst > PARSE_MAX_MEM || *dst % 4)
                return kir_err_at(p, KILN_ERR_INVALID, &ot,
                                  "memory offset %lld must be a multiple of 4 in [0, 2^40]",
                                  (long long)*dst);
        }
        if (!kir_at(p, ',')) break;
        kir_next(p);
    }
    return kir_expect_match(p, ')', '(', open);
}

/* fmem (see func): the workspace of a planned function */
kiln_status kir_parse_func_mem(parser *p, kiln_func *f) {
    kir_next(p);
    int mopen = p->t.line;
    if (kir_expect(p, '(') || kir_expect_name(p, "fixed") || kir_expect(p, '=')) return p->st;
    token ft = p->t;
    if (kir_parse_int(p, &f->mem_fixed) || kir_expect(p, ',') || kir_expect_name(p, "per_sample") ||
        kir_expect(p, '='))
        return p->st;
    token pt = p->t;
    if (kir_parse_int(p, &f->mem_per_sample)) return p->st;
    /* then ", err=N" and ", chunk=N", each optional, in that order */
    for (int field = 0; field < 2 && kir_at(p, ','); field++) {
        kir_next(p);
        token et = p->t;
        if (field == 0 && kir_tok_is(&et, "err")) {
            if (kir_expect_name(p, "err") || kir_expect(p, '=')) return p->st;
            et = p->t;
            if (kir_parse_int(p, &f->mem_err)) return p->st;
            if (f->mem_err < 0 || f->mem_err > PARSE_MAX_MEM || f->mem_err % 4)
                return kir_err_at(p, KILN_ERR_INVALID, &et,
                                  "error record offset %lld must be a multiple of 4 in [0, 2^40]",
                                  (long long)f->mem_err);
            continue;
        }
        if (kir_expect_name(p, "chunk") || kir_expect(p, '=')) return p->st;
        et = p->t;
        if (kir_parse_int(p, &f->mem_chunk)) return p->st;
        if (f->mem_chunk < 1 || f->mem_chunk > INT32_MAX)
            return kir_err_at(p, KILN_ERR_INVALID, &et, "chunk of %lld rows must be in [1, 2^31)",
                              (long long)f->mem_chunk);
        break;
    }
    if (kir_expect_match(p, ')', '(', mopen)) return p->st;
    if (f->mem_fixed < 0 || f->mem_fixed > PARSE_MAX_MEM || f->mem_fixed % 4)
        return kir_err_at(p, KILN_ERR_INVALID, &ft,
                          "workspace size %lld must be a multiple of 4 in [0, 2^40]",
                          (long long)f->mem_fixed);
    if (f->mem_per_sample < 0 || f->mem_per_sample > PARSE_MAX_MEM || f->mem_per_sample % 4)
        return kir_err_at(p, KILN_ERR_INVALID, &pt,
                          "workspace size %lld must be a multiple of 4 in [0, 2^40]",
                          (long long)f->mem_per_sample);
    f->planned = true;
    return KILN_OK;
}


/*
 * aot_glue.c — the exported functions of an AOT shared object around the
 * model's entry points, written in LLVM IR: version check, status strings,
 * the model handle (size, init, create, destroy, last error) and one C
 * wrapper per exported Kiln function.
 *
 * The handle is one 64-aligned block (aot.h, AOT_OFF_*):
 *   [magic, max_batch, ready, owned, error text, globals table]
 *   [each used global's data, 64-aligned]       state_off .. ws_off
 *   [workspace: ws_fixed + ws_per_sample * max_batch]
 * so a call allocates nothing: the wrappers check their arguments, hand the
 * table and the workspace to the entry point, and turn a failure into a
 * message in the handle.
 */
#include "codegen/aot.h"

#include <llvm-c/Core.h>
#include <stdio.h>
#include <string.h>

#include "codegen/aot_ir.h"

static char *cname(const aot_plan *pl, const char *suffix, char *buf, size_t n) {
    snprintf(buf, n, "%s_%s", pl->p, suffix);
    return buf;
}

void aot_set_error(ag *a, LLVMValueRef m, const char *fmt, LLVMValueRef *args, unsigned n) {
    LLVMValueRef all[12];
    all[0] = ag_offc(a, m, AOT_OFF_ERR);
    all[1] = ag_i64c(a, AOT_ERR_BYTES);
    all[2] = ag_str(a, fmt);
    for (unsigned i = 0; i < n && i < 9; i++) all[3 + i] = args[i];
    ag_c(a, "snprintf", all, 3 + (n < 9 ? n : 9));
}

void aot_check_handle(const aot_plan *pl, ag *a, LLVMValueRef m, bool void_fn) {
    LLVMValueRef ret = void_fn ? NULL : ag_i32c(a, KILN_ERR_INVALID);
    ag_if s;
    ag_if_begin(a, &s, LLVMBuildIsNull(a->b, m, ""));
    ag_ret(a, ret);
    ag_if_end(a, &s);
    LLVMValueRef magic = ag_load(a, a->t_i64, ag_offc(a, m, AOT_OFF_MAGIC));
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, magic, ag_i64c(a, (long long)pl->magic)));
    ag_ret(a, ret);
    ag_if_end(a, &s);
}

/* `return status;` after setting the handle's message. */
static void fail(ag *a, LLVMValueRef m, kiln_status st, const char *fmt, LLVMValueRef *args,
                 unsigned n) {
    aot_set_error(a, m, fmt, args, n);
    ag_ret(a, ag_i32c(a, st));
}

/* ------------------------------------------------------------- version */

static void gen_version(aot_plan *pl, ag *a) {
    char name[AOT_MAX_PREFIX + 32];
    ag_begin(a, cname(pl, "abi_version", name, sizeof name), a->t_i32, NULL, 0, true);
    ag_ret(a, ag_i32c(a, pl->version));
    ag_finish(a);

    /* int P_check_version(uint32_t header_version, char *msg, size_t size) */
    LLVMTypeRef pt[3] = {a->t_i32, a->t_p8, a->t_i64};
    LLVMValueRef fn =
        ag_begin(a, cname(pl, "check_version", name, sizeof name), a->t_i32, pt, 3, true);
    LLVMValueRef hv = LLVMGetParam(fn, 0), msg = LLVMGetParam(fn, 1), size = LLVMGetParam(fn, 2);
    LLVMValueRef can_write =
        ag_and(a, LLVMBuildIsNotNull(a->b, msg, ""), ag_cmp(a, LLVMIntUGT, size, ag_i64c(a, 0)));
    ag_if s, w;
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntEQ, hv, ag_i32c(a, pl->version)));
    ag_if_begin(a, &w, can_write);
    ag_store(a, ag_i8c(a, 0), msg);
    ag_if_end(a, &w);
    ag_ret(a, ag_i32c(a, KILN_OK));
    ag_if_end(a, &s);
    ag_if_begin(a, &w, can_write);
    {
        char fmt[256];
        unsigned v = pl->version;
        /* The text issue 10 tests; the header documents it. */
        snprintf(fmt, sizeof fmt,
                 "%s: version mismatch: the library was built by Kiln %u.%u.%u, the header by "
                 "Kiln %%u.%%u.%%u; regenerate both with the same 'kiln compile'",
                 pl->p, v >> 16, (v >> 8) & 255, v & 255);
        LLVMValueRef args[6] = {
            msg,
            size,
            ag_str(a, fmt),
            LLVMBuildLShr(a->b, hv, ag_i32c(a, 16), ""),
            ag_and(a, LLVMBuildLShr(a->b, hv, ag_i32c(a, 8), ""), ag_i32c(a, 255)),
            ag_and(a, hv, ag_i32c(a, 255))};
        ag_c(a, "snprintf", args, 6);
    }
    ag_if_end(a, &w);
    ag_ret(a, ag_i32c(a, KILN_ERR_VERSION));
    ag_finish(a);
}

static void gen_status_string(aot_plan *pl, ag *a) {
    char name[AOT_MAX_PREFIX + 32];
    enum { N = KILN_ERR_VERSION + 1 };
    LLVMValueRef strs[N];
    for (int i = 0; i < N; i++) strs[i] = ag_str(a, kiln_status_string((kiln_status)i));
    LLVMValueRef init = LLVMConstArray(a->t_p8, strs, N);
    LLVMValueRef table = LLVMAddGlobal(a->mod, LLVMTypeOf(init), "status.table");
    LLVMSetInitializer(table, init);
    LLVMSetLinkage(table, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(table, 1);
    LLVMValueRef fn =
        ag_begin(a, cname(pl, "status_string", name, sizeof name), a->t_p8, &a->t_i32, 1, true);
    LLVMValueRef s = LLVMGetParam(fn, 0);
    ag_if in;
    ag_if_begin(a, &in, ag_cmp(a, LLVMIntULT, s, ag_i32c(a, N)));
    LLVMValueRef idx[2] = {ag_i64c(a, 0), ag_zext64(a, s)};
    LLVMValueRef slot = LLVMBuildInBoundsGEP2(a->b, LLVMTypeOf(init), table, idx, 2, "");
    ag_ret(a, LLVMBuildLoad2(a->b, a->t_p8, slot, ""));
    ag_if_end(a, &in);
    ag_ret(a, ag_str(a, "unknown status"));
    ag_finish(a);
}

/* -------------------------------------------------------------- handle */

static void gen_handle(aot_plan *pl, ag *a, LLVMValueRef *embedded) {
    char name[AOT_MAX_PREFIX + 32];
    /* size_t P_size(int64_t max_batch): 0 when max_batch is out of range. */
    LLVMValueRef f_size =
        ag_begin(a, cname(pl, "size", name, sizeof name), a->t_i64, &a->t_i64, 1, true);
    {
        LLVMValueRef mb = LLVMGetParam(f_size, 0);
        ag_if s;
        ag_if_begin(a, &s,
                    ag_or(a, ag_cmp(a, LLVMIntSLT, mb, ag_i64c(a, 1)),
                          ag_cmp(a, LLVMIntSGT, mb, ag_i64c(a, pl->max_batch))));
        ag_ret(a, ag_i64c(a, 0));
        ag_if_end(a, &s);
        ag_ret(a, ag_add(a, ag_i64c(a, pl->ws_off + pl->ws_fixed),
                         ag_mul(a, mb, ag_i64c(a, pl->ws_ps))));
        ag_finish(a);
    }
    /* int P_init(void *mem, size_t size, int64_t max_batch, P_model **out) */
    LLVMTypeRef pt[4] = {a->t_p8, a->t_i64, a->t_i64, LLVMPointerType(a->t_p8, 0)};
    LLVMValueRef f_init = ag_begin(a, cname(pl, "init", name, sizeof name), a->t_i32, pt, 4, true);
    {
        LLVMValueRef mem = LLVMGetParam(f_init, 0), size = LLVMGetParam(f_init, 1);
        LLVMValueRef mb = LLVMGetParam(f_init, 2), out = LLVMGetParam(f_init, 3);
        ag_if s;
        ag_if_begin(a, &s, LLVMBuildIsNull(a->b, out, ""));
        ag_ret(a, ag_i32c(a, KILN_ERR_INVALID));
        ag_if_end(a, &s);
        LLVMBuildStore(a->b, ag_null(a), out);
        LLVMValueRef misaligned =
            ag_cmp(a, LLVMIntNE,
                   ag_and(a, LLVMBuildPtrToInt(a->b, mem, a->t_i64, ""), ag_i64c(a, AOT_ALIGN - 1)),
                   ag_i64c(a, 0));
        ag_if_begin(a, &s, ag_or(a, LLVMBuildIsNull(a->b, mem, ""), misaligned));
        ag_ret(a, ag_i32c(a, KILN_ERR_INVALID));
        ag_if_end(a, &s);
        LLVMValueRef need = ag_call_fn(a, f_size, &mb, 1);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntEQ, need, ag_i64c(a, 0)));
        ag_ret(a, ag_select(a, ag_cmp(a, LLVMIntSLT, mb, ag_i64c(a, 1)),
                            ag_i32c(a, KILN_ERR_INVALID), ag_i32c(a, KILN_ERR_LIMIT)));
        ag_if_end(a, &s);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntULT, size, need));
        ag_ret(a, ag_i32c(a, KILN_ERR_INVALID));
        ag_if_end(a, &s);
        LLVMValueRef ms[3] = {mem, ag_i32c(a, 0), ag_i64c(a, pl->state_off)};
        ag_c(a, "memset", ms, 3);
        ag_store(a, ag_i64c(a, (long long)pl->magic), ag_offc(a, mem, AOT_OFF_MAGIC));
        ag_store(a, mb, ag_offc(a, mem, AOT_OFF_MAXB));
        for (int i = 0; i < pl->n_g; i++) {
            const aot_global *g = &pl->g[i];
            if (!g->used) continue;
            LLVMValueRef data = ag_offc(a, mem, g->offset);
            ag_store(a, data, ag_offc(a, mem, AOT_OFF_TABLE + 8LL * i));
            if (pl->o->embed) {
                LLVMValueRef cp[3] = {data, embedded[i], ag_i64c(a, g->bytes)};
                ag_c(a, "memcpy", cp, 3);
            }
        }
        if (pl->o->embed) {
            ag_store(a, ag_i32c(a, 1), ag_offc(a, mem, AOT_OFF_READY));
        } else {
            LLVMValueRef z[3] = {ag_offc(a, mem, pl->state_off), ag_i32c(a, 0),
                                 ag_i64c(a, pl->state_bytes)};
            ag_c(a, "memset", z, 3);
        }
        LLVMBuildStore(a->b, mem, out);
        ag_ret(a, ag_i32c(a, KILN_OK));
        ag_finish(a);
    }
    /* int P_create(int64_t max_batch, P_model **out) */
    LLVMTypeRef ct[2] = {a->t_i64, LLVMPointerType(a->t_p8, 0)};
    LLVMValueRef f_create =
        ag_begin(a, cname(pl, "create", name, sizeof name), a->t_i32, ct, 2, true);
    {
        LLVMValueRef mb = LLVMGetParam(f_create, 0), out = LLVMGetParam(f_create, 1);
        ag_if s;
        ag_if_begin(a, &s, LLVMBuildIsNull(a->b, out, ""));
        ag_ret(a, ag_i32c(a, KILN_ERR_INVALID));
        ag_if_end(a, &s);
        LLVMBuildStore(a->b, ag_null(a), out);
        LLVMValueRef need = ag_call_fn(a, f_size, &mb, 1);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntEQ, need, ag_i64c(a, 0)));
        ag_ret(a, ag_select(a, ag_cmp(a, LLVMIntSLT, mb, ag_i64c(a, 1)),
                            ag_i32c(a, KILN_ERR_INVALID), ag_i32c(a, KILN_ERR_LIMIT)));
        ag_if_end(a, &s);
        LLVMValueRef pv = ag_var(a, a->t_p8, ag_null(a));
        LLVMValueRef pa[3] = {pv, ag_i64c(a, AOT_ALIGN), need};
        LLVMValueRef rc = ag_c(a, "posix_memalign", pa, 3);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, rc, ag_i32c(a, 0)));
        ag_ret(a, ag_i32c(a, KILN_ERR_NOMEM));
        ag_if_end(a, &s);
        LLVMValueRef p = ag_get(a, a->t_p8, pv);
        LLVMValueRef ia[4] = {p, need, mb, out};
        rc = ag_call_fn(a, f_init, ia, 4);
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, rc, ag_i32c(a, 0)));
        ag_c(a, "free", &p, 1);
        ag_ret(a, rc);
        ag_if_end(a, &s);
        ag_store(a, ag_i32c(a, 1), ag_offc(a, p, AOT_OFF_OWNED));
        ag_ret(a, ag_i32c(a, KILN_OK));
        ag_finish(a);
    }

    /* void P_destroy(P_model *m): frees what P_create allocated; memory
     * given to P_init stays the caller's, the handle is only invalidated. */
    LLVMValueRef f_destroy =
        ag_begin(a, cname(pl, "destroy", name, sizeof name), a->t_void, &a->t_p8, 1, true);
    {
        LLVMValueRef m = LLVMGetParam(f_destroy, 0);
        aot_check_handle(pl, a, m, true);
        ag_store(a, ag_i64c(a, 0), ag_offc(a, m, AOT_OFF_MAGIC));
        ag_if s;
        ag_if_begin(a, &s,
                    ag_cmp(a, LLVMIntNE, ag_load(a, a->t_i32, ag_offc(a, m, AOT_OFF_OWNED)),
                           ag_i32c(a, 0)));
        ag_c(a, "free", &m, 1);
        ag_if_end(a, &s);
        ag_ret(a, NULL);
        ag_finish(a);
    }

    /* const char *P_last_error(const P_model *m) */
    LLVMValueRef f_err =
        ag_begin(a, cname(pl, "last_error", name, sizeof name), a->t_p8, &a->t_p8, 1, true);
    {
        LLVMValueRef m = LLVMGetParam(f_err, 0);
        ag_if s;
        ag_if_begin(a, &s, LLVMBuildIsNull(a->b, m, ""));
        ag_ret(a, ag_str(a, "invalid model handle"));
        ag_if_end(a, &s);
        LLVMValueRef magic = ag_load(a, a->t_i64, ag_offc(a, m, AOT_OFF_MAGIC));
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntNE, magic, ag_i64c(a, (long long)pl->magic)));
        ag_ret(a, ag_str(a, "invalid model handle"));
        ag_if_end(a, &s);
        ag_ret(a, ag_offc(a, m, AOT_OFF_ERR));
        ag_finish(a);
    }
}

/* ---------------------------------------------------------- wrappers */

/* int P_<c>(P_model *m, int64_t batch, <args>, <results>) around kiln_<f>. */
static void gen_wrapper(aot_plan *pl, ag *a, const aot_entry *e) {
    char name[AOT_MAX_PREFIX + 32], msg[512];
    const kiln_func *f = e->f;
    int na = f->n_args, nr = f->n_results, np = na + nr;
    LLVMTypeRef pt[2 + 64];
    pt[0] = a->t_p8;
    pt[1] = a->t_i64;
    for (int i = 0; i < np; i++) pt[2 + i] = a->t_p8;
    cname(pl, e->c, name, sizeof name);
    LLVMValueRef fn = ag_begin(a, name, a->t_i32, pt, (unsigned)(2 + np), true);
    LLVMValueRef m = LLVMGetParam(fn, 0), batch = LLVMGetParam(fn, 1);
    aot_check_handle(pl, a, m, false);
    ag_if s;
    ag_if_begin(
        a, &s,
        ag_cmp(a, LLVMIntEQ, ag_load(a, a->t_i32, ag_offc(a, m, AOT_OFF_READY)), ag_i32c(a, 0)));
    snprintf(msg, sizeof msg, "%s: the model has no weights yet: call %s_load first", name, pl->p);
    fail(a, m, KILN_ERR_INVALID, msg, NULL, 0);
    ag_if_end(a, &s);
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntSLT, batch, ag_i64c(a, 0)));
    snprintf(msg, sizeof msg, "%s: batch %%lld is negative", name);
    fail(a, m, KILN_ERR_INVALID, msg, &batch, 1);
    ag_if_end(a, &s);
    LLVMValueRef mb = ag_load(a, a->t_i64, ag_offc(a, m, AOT_OFF_MAXB));
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntSGT, batch, mb));
    snprintf(msg, sizeof msg, "%s: batch %%lld exceeds the max_batch of this handle (%%lld)", name);
    LLVMValueRef bm[2] = {batch, mb};
    fail(a, m, KILN_ERR_LIMIT, msg, bm, 2);
    ag_if_end(a, &s);
    for (int i = 0; i < np; i++) {
        ag_if_begin(a, &s, LLVMBuildIsNull(a->b, LLVMGetParam(fn, (unsigned)(2 + i)), ""));
        snprintf(msg, sizeof msg, "%s: '%s' is NULL", name, e->names[i]);
        fail(a, m, KILN_ERR_INVALID, msg, NULL, 0);
        ag_if_end(a, &s);
    }
    LLVMValueRef args = ag_array(a, a->t_p8, (unsigned)na);
    LLVMValueRef res = ag_array(a, a->t_p8, (unsigned)nr);
    for (int i = 0; i < na; i++)
        LLVMBuildStore(a->b, LLVMGetParam(fn, (unsigned)(2 + i)),
                       ag_elem(a, a->t_p8, args, ag_i64c(a, i)));
    for (int i = 0; i < nr; i++)
        LLVMBuildStore(a->b, LLVMGetParam(fn, (unsigned)(2 + na + i)),
                       ag_elem(a, a->t_p8, res, ag_i64c(a, i)));
    LLVMValueRef entry = LLVMGetNamedFunction(a->mod, e->info->symbol);
    LLVMTypeRef pp = LLVMPointerType(a->t_p8, 0);
    LLVMValueRef ws = ag_offc(a, m, pl->ws_off);
    LLVMValueRef call[5] = {batch, args, res,
                            LLVMBuildBitCast(a->b, ag_offc(a, m, AOT_OFF_TABLE), pp, ""), ws};
    LLVMValueRef rc = ag_call_fn(a, entry, call, 5);
    ag_if_begin(a, &s, ag_cmp(a, LLVMIntEQ, rc, ag_i32c(a, 0)));
    ag_ret(a, rc);
    ag_if_end(a, &s);
    /* The error record (cg.h) says which node failed. */
    const cg_func_info *fi = e->info;
    LLVMValueRef rec = ag_off(
        a, ws,
        ag_add(a, ag_i64c(a, fi->err_fixed), ag_mul(a, batch, ag_i64c(a, fi->err_per_sample))));
    LLVMValueRef serial = ag_load(a, a->t_i32, ag_offc(a, rec, 4));
    LLVMValueRef detail = ag_load(a, a->t_i64, ag_offc(a, rec, 8));
    for (int k = 0; k < fi->n_fails; k++) {
        const cg_fail_site *fs = &fi->fails[k];
        ag_if_begin(a, &s, ag_cmp(a, LLVMIntEQ, serial, ag_i32c(a, fs->serial)));
        /* The location travels as an argument: a file name may hold '%'. */
        char where[300] = "";
        if (fs->file) snprintf(where, sizeof where, " (%s:%d:%d)", fs->file, fs->line, fs->col);
        snprintf(msg, sizeof msg, "%s: %s: label %%lld is out of range [0, %lld)%%s", name, fs->op,
                 (long long)fs->classes);
        LLVMValueRef da[2] = {detail, ag_str(a, where)};
        aot_set_error(a, m, msg, da, 2);
        ag_ret(a, rc);
        ag_if_end(a, &s);
    }
    snprintf(msg, sizeof msg, "%s failed with status %%d", name);
    aot_set_error(a, m, msg, &rc, 1);
    ag_ret(a, rc);
    ag_finish(a);
}

/* ----------------------------------------------------------------- all */

kiln_status aot_glue(aot_plan *pl, LLVMContextRef ctx, LLVMModuleRef mod, kiln_diag *d) {
    ag a;
    ag_init(&a, ctx, mod);
    LLVMValueRef *embedded = ir_calloc((size_t)pl->n_g + 1, sizeof *embedded);
    if (!embedded) {
        ag_dispose(&a);
        return ir_oom(d);
    }
    if (pl->o->embed)
        for (int i = 0; i < pl->n_g; i++) {
            const aot_global *g = &pl->g[i];
            if (!g->used) continue;
            char name[64];
            snprintf(name, sizeof name, "weights.%d", i);
            embedded[i] = ag_bytes(&a, name, pl->data[i], (size_t)g->bytes, AOT_ALIGN);
        }
    /* The entry points become internal: O3 inlines them into the wrappers
     * and the version script has nothing to hide. */
    for (int i = 0; i < pl->info->n_funcs; i++) {
        LLVMValueRef fn = LLVMGetNamedFunction(mod, pl->info->funcs[i].symbol);
        if (fn) LLVMSetLinkage(fn, LLVMInternalLinkage);
    }
    gen_version(pl, &a);
    gen_status_string(pl, &a);
    gen_handle(pl, &a, embedded);
    for (int i = 0; i < pl->n_entries; i++) gen_wrapper(pl, &a, &pl->entries[i]);
    kiln_status st = aot_st_load(pl, &a, d);
    if (!st && pl->o->train) st = aot_st_save(pl, &a, d);
    ir_free(embedded);
    ag_dispose(&a);
    return st;
}

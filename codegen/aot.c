/*
 * aot.c — the AOT compiler's driver: plans the handle (aot.h), builds the
 * model's LLVM module (cg_build_module, PIC), adds the descriptor and the
 * exported names (aot_glue.c), optimizes, and writes a shared object, an object file, LLVM IR
 * or assembly, plus the C header (aot_header.c).
 *
 * The shared object is linked by the system C compiler used only as a
 * linker driver, with the support library libkiln carries:
 *   cc -shared -Wl,-z,defs -Wl,--version-script=V -Wl,-soname,libP.so
 *      -o libP.so P.o libkiln_aotrt.a -lm [-lopenblas: only with --gemm openblas]
 * `-z defs` makes a missing symbol a link error instead of a load-time
 * surprise; the version script leaves only the documented names in the
 * dynamic symbol table.
 */
#include "codegen/aot.h"

#include <errno.h>
#include <fcntl.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef KILN_CC
#define KILN_CC "cc"
#endif

extern char **environ;

/* ---------------------------------------------------------------- names */

static const char *const k_keywords[] = {
    "auto",       "break",     "case",           "char",
    "const",      "continue",  "default",        "do",
    "double",     "else",      "enum",           "extern",
    "float",      "for",       "goto",           "if",
    "inline",     "int",       "long",           "register",
    "restrict",   "return",    "short",          "signed",
    "sizeof",     "static",    "struct",         "switch",
    "typedef",    "union",     "unsigned",       "void",
    "volatile",   "while",     "_Bool",          "_Complex",
    "_Imaginary", "_Alignas",  "_Alignof",       "_Atomic",
    "_Generic",   "_Noreturn", "_Static_assert", "_Thread_local",
    "bool",       "true",      "false",          "NULL",
};

static bool is_ident(const char *s) {
    if (!s || !*s || (*s >= '0' && *s <= '9')) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    for (size_t i = 0; i < KILN_ARRAY_LEN(k_keywords); i++)
        if (strcmp(s, k_keywords[i]) == 0) return false;
    return true;
}

bool cg_aot_valid_prefix(const char *s) {
    return is_ident(s) && strlen(s) < AOT_MAX_PREFIX && s[0] != '_';
}

int aot_exports(const aot_plan *pl, char (*names)[AOT_MAX_PREFIX + 32]) {
    static const char *const base[] = {"abi_version", "check_version", "status_string",
                                       "size",        "init",          "create",
                                       "destroy",     "last_error",    "load"};
    int n = 0;
    for (size_t i = 0; i < KILN_ARRAY_LEN(base); i++)
        snprintf(names[n++], AOT_MAX_PREFIX + 32, "%s_%s", pl->p, base[i]);
    for (int i = 0; i < pl->n_entries; i++)
        snprintf(names[n++], AOT_MAX_PREFIX + 32, "%s_%s", pl->p, pl->entries[i].c);
    if (pl->o->train) snprintf(names[n++], AOT_MAX_PREFIX + 32, "%s_save", pl->p);
    return n;
}

/* ----------------------------------------------------------------- plan */

static int64_t align64(int64_t x) {
    return (x + AOT_ALIGN - 1) / AOT_ALIGN * AOT_ALIGN;
}

typedef struct used_ctx {
    aot_plan *pl;
} used_ctx;

static void mark_used(ir_node *n, void *ctx) {
    aot_plan *pl = ((used_ctx *)ctx)->pl;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k]->op == IR_GLOBAL && n->in[k]->index >= 0 && n->in[k]->index < pl->n_g)
            pl->g[n->in[k]->index].used = true;
}

/* The C names of an entry's parameters: the IR's argument names where they
 * are usable identifiers, fixed names for results. */
static kiln_status entry_names(aot_entry *e, kiln_diag *d) {
    const kiln_func *f = e->f;
    int np = f->n_args + f->n_results;
    e->names = ir_calloc((size_t)np + 1, sizeof *e->names);
    if (!e->names) return ir_oom(d);
    bool infer = strcmp(e->kiln, "infer") == 0;
    for (int i = 0; i < np; i++) {
        char buf[64];
        if (i < f->n_args) {
            const char *a = f->args[i]->name;
            if (is_ident(a) && strlen(a) < 40 && strcmp(a, "m") != 0 && strcmp(a, "batch") != 0)
                snprintf(buf, sizeof buf, "%s", a);
            else
                snprintf(buf, sizeof buf, "arg%d", i);
        } else {
            int r = i - f->n_args;
            if (infer)
                snprintf(buf, sizeof buf, f->n_results == 1 ? "out" : "out%d", r);
            else
                snprintf(buf, sizeof buf, "%s", r == 0 ? "loss" : r == 1 ? "accuracy" : "result");
            if (!infer && r >= 2) snprintf(buf, sizeof buf, "result%d", r);
        }
        for (int j = 0; j < i; j++) /* a clash: numbered instead */
            if (strcmp(e->names[j], buf) == 0)
                snprintf(buf, sizeof buf, "%s%d", i < f->n_args ? "arg" : "result", i);
        if (!(e->names[i] = ir_strdup(buf))) return ir_oom(d);
    }
    return KILN_OK;
}

/* Arguments and results of exported functions: f32 or i32, the batch (if
 * any) leading — the buffers a C caller can describe with a pointer. */
static kiln_status check_signature(const kiln_func *f, kiln_diag *d) {
    for (int i = 0; i < f->n_args + f->n_results; i++) {
        const ir_type *t = i < f->n_args ? &f->args[i]->type : &f->results[i - f->n_args]->type;
        int ax = ir_type_batch_axis(t);
        if ((t->dtype != IR_F32 && t->dtype != IR_I32) || ax > 0) {
            char tb[IR_TYPE_STR_MAX];
            return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                            "aot: @%s: %s %d has type %s; exported functions take f32 or i32 "
                            "tensors whose batch dimension, if any, comes first",
                            f->name, i < f->n_args ? "argument" : "result",
                            i < f->n_args ? i : i - f->n_args, ir_type_str(t, tb, sizeof tb));
        }
    }
    if (f->n_args + f->n_results > 64)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "aot: @%s has more than 64 buffers",
                        f->name);
    return KILN_OK;
}

static kiln_status add_entry(aot_plan *pl, const char *kiln, const char *c, kiln_diag *d) {
    aot_entry *e = &pl->entries[pl->n_entries];
    e->kiln = kiln;
    e->c = c;
    e->f = kiln_module_func(pl->m, kiln);
    for (int i = 0; i < pl->info->n_funcs; i++)
        if (strcmp(pl->info->funcs[i].name, kiln) == 0) e->info = &pl->info->funcs[i];
    if (!e->f || !e->info)
        return ir_error(d, KILN_ERR_BACKEND, ir_loc_none(), "aot: no entry point for @%s", kiln);
    pl->n_entries++;
    kiln_status st = check_signature(e->f, d);
    return st ? st : entry_names(e, d);
}

static void plan_free(aot_plan *pl) {
    for (int i = 0; i < pl->n_entries; i++) {
        aot_entry *e = &pl->entries[i];
        if (e->names)
            for (int k = 0; k < e->f->n_args + e->f->n_results; k++) ir_free(e->names[k]);
        ir_free(e->names);
    }
    ir_free(pl->g);
    ir_free(pl->p);
    ir_free(pl->P);
    cg_module_info_dispose(pl->info);
}

static kiln_status plan_build(aot_plan *pl, kiln_diag *d) {
    kiln_module *m = pl->m;
    const cg_aot_options *o = pl->o;
    kiln_status st;
    if (!(pl->p = ir_strdup(o->prefix)) || !(pl->P = ir_strdup(o->prefix))) return ir_oom(d);
    for (char *q = pl->P; *q; q++)
        if (*q >= 'a' && *q <= 'z') *q = (char)(*q - 'a' + 'A');
    pl->version = (KILN_VERSION_MAJOR << 16) | (KILN_VERSION_MINOR << 8) | KILN_VERSION_PATCH;

    if ((st = add_entry(pl, "infer", "infer", d))) return st;
    pl->infer = &pl->entries[0];
    if (kiln_module_func(m, "loss")) {
        if ((st = add_entry(pl, "loss", "evaluate", d))) return st;
        pl->evaluate = &pl->entries[pl->n_entries - 1];
    }
    if (o->train) {
        if (!kiln_module_func(m, "train_step"))
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "aot: the module has no @train_step (training needs a loss and an "
                            "optimizer)");
        if ((st = add_entry(pl, "train_step", "train_step", d))) return st;
        pl->train = &pl->entries[pl->n_entries - 1];
    }

    /* Globals: which the exported functions use, where they live. */
    pl->n_g = m->n_globals;
    pl->g = ir_calloc((size_t)pl->n_g + 1, sizeof *pl->g);
    if (!pl->g) return ir_oom(d);
    used_ctx uc = {pl};
    for (int i = 0; i < pl->n_entries; i++) {
        kiln_func *f = pl->entries[i].f;
        ir_func_walk(f, mark_used, &uc);
        for (int r = 0; r < f->n_results; r++)
            if (f->results[r]->op == IR_GLOBAL) pl->g[f->results[r]->index].used = true;
    }
    pl->iterations = -1;
    int64_t off = align64(AOT_OFF_TABLE + 8LL * pl->n_g);
    pl->state_off = off;
    for (int i = 0; i < pl->n_g; i++) {
        aot_global *g = &pl->g[i];
        g->g = m->globals[i];
        if (!g->used) continue;
        g->bytes =
            ir_type_numel(&g->g->type, 1) * (int64_t)ir_dtype_size((ir_dtype)g->g->type.dtype);
        g->offset = off;
        off = align64(off + g->bytes);
        if (strcmp(g->g->name, "optimizer.iterations") == 0 && g->g->type.dtype == IR_I32 &&
            g->g->type.rank == 0)
            pl->iterations = i;
    }
    pl->state_bytes = off - pl->state_off;
    pl->ws_off = off;
    for (int i = 0; i < pl->n_entries; i++) {
        const cg_func_info *fi = pl->entries[i].info;
        /* A chunked entry needs at most its chunk's rows, whatever the batch. */
        int64_t fixed = fi->ws_fixed, ps = fi->ws_per_sample;
        if (fi->ws_chunk > 0) {
            fixed = cg_workspace_bytes(fi, fi->ws_chunk);
            ps = 0;
        }
        if (fixed > pl->ws_fixed) pl->ws_fixed = fixed;
        if (ps > pl->ws_ps) pl->ws_ps = ps;
    }
    /* The largest batch whose handle size fits comfortably in 63 bits. */
    int64_t room = ((int64_t)1 << 62) - pl->ws_off - pl->ws_fixed;
    pl->max_batch = pl->ws_ps > 0 ? room / pl->ws_ps : INT32_MAX;
    if (pl->max_batch > INT32_MAX) pl->max_batch = INT32_MAX;
    if (pl->max_batch < 1)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "aot: the model's workspace is too large");
    /* A handle of another model (or a stray pointer) is refused by its magic. */
    uint64_t h = ir_hash_bytes("kiln-aot", 8, 0);
    h = ir_hash_bytes(pl->p, strlen(pl->p), h);
    h = ir_hash_bytes(&o->structure_hash, sizeof o->structure_hash, h);
    h = ir_hash_bytes(&pl->ws_off, sizeof pl->ws_off, h);
    pl->magic = h | 1;
    return KILN_OK;
}

/* ---------------------------------------------------------- files, cc */

static kiln_status write_file(const char *path, const char *data, size_t n, kiln_diag *d) {
    FILE *f = fopen(path, "wb");
    if (!f) return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: %s", path, strerror(errno));
    size_t w = fwrite(data, 1, n, f);
    if (fclose(f) != 0 || w != n) {
        remove(path);
        return ir_error(d, KILN_ERR_IO, ir_loc_none(), "%s: write failed", path);
    }
    return KILN_OK;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Runs argv, its output going to `log`; returns the exit status (or -1 with
 * errno set when it could not start). */
static int run_tool(char *const *argv, const char *log) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) return -1;
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The support library (runtime/aotrt.c, runtime/st_core.c) as built with
 * libkiln: the bytes of libkiln_aotrt.a (cmake/embed.cmake). */
extern const unsigned char kiln_aotrt_archive[];
extern const size_t kiln_aotrt_archive_size;

static kiln_status link_so(const aot_plan *pl, const char *dir, const char *obj,
                           const char *archive, bool blas, kiln_diag *d) {
    const cg_aot_options *o = pl->o;
    ir_sb vs, path_vs, path_log, opt_vs, opt_soname;
    ir_sb_init(&vs);
    ir_sb_init(&path_vs);
    ir_sb_init(&path_log);
    ir_sb_init(&opt_vs);
    ir_sb_init(&opt_soname);
    char names[AOT_MAX_EXPORTS][AOT_MAX_PREFIX + 32];
    int n = aot_exports(pl, names);
    ir_sb_puts(&vs, "{\n  global:\n");
    for (int i = 0; i < n; i++) ir_sb_printf(&vs, "    %s;\n", names[i]);
    ir_sb_puts(&vs, "  local: *;\n};\n");
    ir_sb_printf(&path_vs, "%s/exports.map", dir);
    ir_sb_printf(&path_log, "%s/link.log", dir);
    ir_sb_printf(&opt_vs, "-Wl,--version-script=%s", path_vs.buf ? path_vs.buf : "");
    ir_sb_printf(&opt_soname, "-Wl,-soname,%s", base_name(o->output));
    kiln_status st = KILN_OK;
    if (vs.oom || path_vs.oom || path_log.oom || opt_vs.oom || opt_soname.oom) st = ir_oom(d);
    if (!st) st = write_file(path_vs.buf, vs.buf, vs.len, d);
    if (!st) {
        const char *cc = o->cc ? o->cc : KILN_CC;
        /* OpenBLAS only when the code calls it (--gemm openblas): with
         * Kiln's kernels the library needs nothing but libc and libm. */
        char *argv[] = {(char *)cc,      "-shared", "-Wl,-z,defs",     opt_vs.buf,
                        opt_soname.buf,  "-o",      (char *)o->output, (char *)obj,
                        (char *)archive, "-lm",     "-lopenblas",      NULL};
        if (!blas) argv[10] = NULL;
        int rc = run_tool(argv, path_log.buf);
        if (rc != 0) {
            char *log = NULL;
            size_t len = 0;
            if (rc > 0) {
                /* The log is a detail of the error: no message if it cannot be read. */
                ir_read_file(path_log.buf, &log, &len, NULL);
            }
            while (log && len && (log[len - 1] == '\n' || log[len - 1] == '\r')) log[--len] = 0;
            if (rc < 0)
                st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(),
                              "aot: cannot run the linker '%s': %s", cc, strerror(errno));
            else
                st = ir_error(d, KILN_ERR_BACKEND, ir_loc_none(),
                              "aot: linking %s failed ('%s' exited with status %d)%s%.4000s",
                              o->output, cc, rc, log && *log ? ":\n" : "", log ? log : "");
            ir_free(log);
        }
        remove(path_log.buf);
    }
    if (path_vs.buf) remove(path_vs.buf);
    ir_sb_free(&vs);
    ir_sb_free(&path_vs);
    ir_sb_free(&path_log);
    ir_sb_free(&opt_vs);
    ir_sb_free(&opt_soname);
    return st;
}

/* ------------------------------------------------------------ compile */

/* Whether the (optimized) module still calls a cblas_* function. */
static bool calls_blas(LLVMModuleRef mod) {
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        size_t len;
        const char *name = LLVMGetValueName2(f, &len);
        if (len > 6 && !strncmp(name, "cblas_", 6) && LLVMGetFirstUse(f)) return true;
    }
    return false;
}

/* The object code of `mod` (*obj, LLVMDisposeMemoryBuffer): from the
 * compile cache when it holds this module's, else optimized, emitted and
 * stored there (JIT's discipline: a bad entry is a miss; a directory that
 * cannot take it, one warning). */
static kiln_status object_code(const aot_plan *pl, LLVMModuleRef mod, const cg_options *co,
                               LLVMMemoryBufferRef *obj, kiln_diag *d) {
    *obj = NULL;
    cg_cache_status status = CG_CACHE_OFF;
    cg_cache_cfg cfg;
    cg_cache_key key;
    cg_cache_config(&cfg);
    kiln_status st = KILN_OK;
    if (cfg.enabled) {
        st = cg_cache_key_of_module(mod, co, &key, d);
        status = CG_CACHE_MISS;
    }
    cg_module_info *info = NULL;
    char *buf = NULL;
    const void *bytes;
    size_t len;
    if (!st && status == CG_CACHE_MISS && cg_cache_lookup(&cfg, &key, &info, &buf, &bytes, &len)) {
        status = CG_CACHE_HIT;
        *obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(bytes, len, "kiln.o");
        if (!*obj) st = ir_oom(d);
        cg_module_info_dispose(info);
        ir_free(buf);
    } else if (!st) {
        st = cg_optimize_module(mod, co, d);
        if (!st) st = cg_emit_object_buffer(mod, co, obj, d);
        if (!st && status == CG_CACHE_MISS)
            cg_cache_store(&cfg, &key, pl->info, LLVMGetBufferStart(*obj), LLVMGetBufferSize(*obj),
                           d);
    }
    if (pl->o->cache) *pl->o->cache = status;
    return st;
}

static kiln_status emit(const aot_plan *pl, LLVMModuleRef mod, const cg_options *co, kiln_diag *d) {
    const cg_aot_options *o = pl->o;
    kiln_status st = KILN_OK;
    if (o->cache) *o->cache = CG_CACHE_OFF;
    if (o->emit == CG_AOT_LLVM || o->emit == CG_AOT_ASM) {
        ir_sb sb;
        ir_sb_init(&sb);
        st = cg_optimize_module(mod, co, d);
        if (!st)
            st = o->emit == CG_AOT_LLVM ? cg_emit_llvm_text(mod, &sb, d)
                                        : cg_emit_asm_text(mod, co, &sb, d);
        if (!st) st = write_file(o->output, sb.buf ? sb.buf : "", sb.len, d);
        ir_sb_free(&sb);
        return st;
    }
    LLVMMemoryBufferRef code = NULL;
    st = object_code(pl, mod, co, &code, d);
    if (st) return st;
    if (o->emit == CG_AOT_OBJ) {
        st = write_file(o->output, LLVMGetBufferStart(code), LLVMGetBufferSize(code), d);
        LLVMDisposeMemoryBuffer(code);
        return st;
    }
    /* A shared object: the object goes to a private directory first. */
    const char *tmp = getenv("TMPDIR");
    ir_sb dir, obj, ar;
    ir_sb_init(&dir);
    ir_sb_init(&obj);
    ir_sb_init(&ar);
    ir_sb_printf(&dir, "%s/kiln-aot-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (dir.oom) {
        ir_sb_free(&dir);
        LLVMDisposeMemoryBuffer(code);
        return ir_oom(d);
    }
    if (!mkdtemp(dir.buf)) {
        st = ir_error(d, KILN_ERR_IO, ir_loc_none(), "aot: cannot create a directory %s: %s",
                      dir.buf, strerror(errno));
        ir_sb_free(&dir);
        LLVMDisposeMemoryBuffer(code);
        return st;
    }
    ir_sb_printf(&obj, "%s/%s.o", dir.buf, pl->p);
    ir_sb_printf(&ar, "%s/libkiln_aotrt.a", dir.buf);
    if (obj.oom || ar.oom) st = ir_oom(d);
    if (!st) st = write_file(obj.buf, LLVMGetBufferStart(code), LLVMGetBufferSize(code), d);
    LLVMDisposeMemoryBuffer(code);
    if (!st) st = write_file(ar.buf, (const char *)kiln_aotrt_archive, kiln_aotrt_archive_size, d);
    if (!st) st = link_so(pl, dir.buf, obj.buf, ar.buf, calls_blas(mod), d);
    if (obj.buf) remove(obj.buf);
    if (ar.buf) remove(ar.buf);
    rmdir(dir.buf);
    ir_sb_free(&dir);
    ir_sb_free(&obj);
    ir_sb_free(&ar);
    return st;
}

kiln_status cg_aot_compile(kiln_module *m, void *const *globals, const cg_aot_options *o,
                           kiln_diag *d) {
    if (!m || !o || !o->output || !*o->output)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "aot: no module or no output file");
    if (!cg_aot_valid_prefix(o->prefix))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "aot: the prefix '%s' is not a C identifier (letters, digits and '_', not "
                        "starting with a digit or '_', at most %d characters, not a keyword)",
                        o->prefix ? o->prefix : "", AOT_MAX_PREFIX - 1);
    if (o->embed && m->n_globals && !globals)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "aot: no weights to embed");
    if (!kiln_module_func(m, "infer"))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "aot: the module has no function @infer");

    cg_options co;
    memset(&co, 0, sizeof co);
    co.pic = true;
    co.cpu = o->cpu;
    /* A named CPU brings its own features, not this machine's. */
    co.features = o->cpu ? "" : NULL;
    co.gemm = o->gemm;
    aot_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.m = m;
    pl.o = o;
    pl.data = globals;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = NULL;
    kiln_status st = cg_build_module(m, &co, ctx, &mod, &pl.info, d);
    if (!st) st = plan_build(&pl, d);
    if (!st) st = aot_glue(&pl, ctx, mod, d);
    if (!st) st = cg_verify_llvm(mod, "aot: the generated glue", d);
    if (!st) st = emit(&pl, mod, &co, d); /* optimizes, unless the cache has the code */
    if (!st && o->header) {
        ir_sb sb;
        ir_sb_init(&sb);
        st = aot_header(&pl, &sb, d);
        if (!st) st = write_file(o->header, sb.buf, sb.len, d);
        ir_sb_free(&sb);
    }
    if (mod) LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    plan_free(&pl);
    return st;
}

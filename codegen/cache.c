/*
 * cache.c — the compile cache as the JIT uses it: the key of a compile,
 * lookup of a verified entry, storing with one warning when the directory
 * cannot take it, and the public kiln_cache_* calls. The files are
 * cache_store.c's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dl_iterate_phdr */
#endif
#include "codegen/cache.h"
#include "codegen/gemm.h"

#include <elf.h>
#include <link.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Core.h>
#include <llvm/Config/llvm-config.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

const char *cg_cache_status_name(cg_cache_status s) {
    return s == CG_CACHE_HIT ? "hit" : s == CG_CACHE_MISS ? "miss" : "off";
}

bool cg_cache_enabled(kiln_module *m, const cg_options *o, cg_cache_cfg *cfg) {
    if (o->no_cache || o->test_malformed || o->no_opt) return false;
    /* A missing function is the module builder's error to report. */
    if (o->only_func && !kiln_module_func(m, o->only_func)) return false;
    cg_cache_config(cfg);
    return cfg->enabled;
}

/* ------------------------------------------------ the build's identity */

/* "build-id:" + up to 64 bytes of id in hex, or "version:..." */
static char g_build[16 + 2 * 64 + 1];
static pthread_once_t g_build_once = PTHREAD_ONCE_INIT;

/* The build-id note among the PT_NOTE segments of the module holding this
 * function (dl_iterate_phdr callback; data: &found). */
static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    uintptr_t self = (uintptr_t)&find_build_id;
    bool mine = false;
    for (int i = 0; i < info->dlpi_phnum && !mine; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && self >= lo && self - lo < ph->p_memsz) mine = true;
    }
    if (!mine) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        size_t align = ph->p_align == 8 ? 8 : 4;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        size_t off = 0, len = ph->p_memsz;
        while (off + sizeof(ElfW(Nhdr)) <= len) {
            ElfW(Nhdr) nh;
            memcpy(&nh, p + off, sizeof nh);
            size_t name = off + sizeof nh;
            size_t desc = name + ((nh.n_namesz + align - 1) & ~(align - 1));
            size_t next = desc + ((nh.n_descsz + align - 1) & ~(align - 1));
            if (desc > len || nh.n_descsz > len - desc) break;
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                memcmp(p + name, "GNU", 4) == 0 && nh.n_descsz > 0 && nh.n_descsz <= 64) {
                char *o = g_build + strlen(strcpy(g_build, "build-id:"));
                for (size_t k = 0; k < nh.n_descsz; k++, o += 2)
                    snprintf(o, 3, "%02x", p[desc + k]);
                *(bool *)data = true;
                return 1;
            }
            off = next;
        }
    }
    return 1; /* this module, without a build-id */
}

static void build_identity_init(void) {
    bool found = false;
    dl_iterate_phdr(find_build_id, &found);
    if (!found) snprintf(g_build, sizeof g_build, "version:%s", KILN_VERSION_STRING);
}

const char *cg_cache_build_identity(void) {
    pthread_once(&g_build_once, build_identity_init);
    return g_build;
}

/* ------------------------------------------------------------ the key */

static void hash_str(cg_sha256 *h, const char *tag, const char *s) {
    cg_sha256_update(h, tag, strlen(tag) + 1);
    if (s) cg_sha256_update(h, s, strlen(s) + 1);
}

/* Node locations: the printer leaves them out, error messages quote them. */
static void hash_locs(cg_sha256 *h, ir_node *const *nodes, int n) {
    for (int i = 0; i < n; i++) {
        const ir_node *x = nodes[i];
        int32_t lc[2] = {x->loc.line, x->loc.col};
        cg_sha256_update(h, lc, sizeof lc);
        if (x->loc.file) cg_sha256_update(h, x->loc.file, strlen(x->loc.file));
        if (x->region) hash_locs(h, x->region->nodes, x->region->n);
    }
}

kiln_status cg_cache_key_of(kiln_module *m, const cg_options *o, cg_cache_key *key, kiln_diag *d) {
    return cg_cache_key_for_build(m, o, cg_cache_build_identity(), key, d);
}

/* Starts the hash of a key: what every entry's code depends on besides its
 * IR (the versions and build of Kiln and LLVM, the target, the opt level). */
static kiln_status hash_start(cg_sha256 *h, const cg_options *o, const char *build,
                              kiln_diag *d) {
    char *triple, *cpu, *features;
    kiln_status st = cg_target_strings(o, &triple, &cpu, &features, d);
    if (st) return st;
    cg_sha256_init(h);
    char opt[64];
    snprintf(opt, sizeof opt, "O%d format %d", o->opt_level >= 1 && o->opt_level <= 3 ? o->opt_level : 3,
             CG_CACHE_FORMAT);
    hash_str(h, "kiln", KILN_VERSION_STRING);
    /* The build of Kiln: any rebuilt library (a changed lowering) has
     * another build-id, so its keys differ from an older build's. */
    hash_str(h, "build", build);
    hash_str(h, "llvm", LLVM_VERSION_STRING);
    /* Bumped whenever codegen emits other code for the same IR (between
     * releases too): 2 = identical loops shared (outline.c); 3 = conv2d
     * direct in registers (lower_conv.c). Only matters for builds without
     * a build-id (the key then has the version). */
    hash_str(h, "codegen", "3");
    hash_str(h, "triple", triple);
    hash_str(h, "cpu", cpu);
    hash_str(h, "features", features);
    /* The GEMM backend and width may come from the environment (gemm.h). */
    char gemm[32];
    snprintf(gemm, sizeof gemm, "%s/%d", cg_gemm_use_kiln(o) ? "kiln" : "openblas",
             cg_gemm_width(o, features));
    hash_str(h, "gemm", gemm);
    hash_str(h, "opt", opt);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    return KILN_OK;
}

kiln_status cg_cache_key_of_module(LLVMModuleRef mod, const cg_options *o, cg_cache_key *key,
                                   kiln_diag *d) {
    cg_sha256 h;
    kiln_status st = hash_start(&h, o, cg_cache_build_identity(), d);
    if (st) return st;
    LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(mod);
    if (!bc) return ir_oom(d);
    hash_str(&h, "module", "");
    cg_sha256_update(&h, LLVMGetBufferStart(bc), LLVMGetBufferSize(bc));
    LLVMDisposeMemoryBuffer(bc);
    cg_sha256_final(&h, key->b);
    return KILN_OK;
}

kiln_status cg_cache_key_for_build(kiln_module *m, const cg_options *o, const char *build,
                                   cg_cache_key *key, kiln_diag *d) {
    cg_sha256 h;
    kiln_status st = hash_start(&h, o, build, d);
    if (st) return st;
    hash_str(&h, "only", o->only_func);
    ir_sb sb;
    ir_sb_init(&sb);
    ir_print_module_header(&sb, m);
    for (int i = 0; i < m->n_funcs; i++) {
        const kiln_func *f = m->funcs[i];
        if (o->only_func && strcmp(f->name, o->only_func) != 0) continue;
        ir_print_func(&sb, f, NULL);
        hash_locs(&h, f->nodes, f->n_nodes);
    }
    if (sb.oom) {
        ir_sb_free(&sb);
        return ir_oom(d);
    }
    hash_str(&h, "ir", sb.buf ? sb.buf : "");
    ir_sb_free(&sb);
    cg_sha256_final(&h, key->b);
    return KILN_OK;
}

bool cg_cache_lookup(const cg_cache_cfg *c, const cg_cache_key *key, cg_module_info **info,
                     char **buf, const void **obj, size_t *obj_len) {
    *info = NULL;
    size_t len;
    if (!cg_cache_read(c, key, buf, &len)) return false;
    kiln_diag *quiet = kiln_diag_create();
    kiln_status st = cg_cache_entry_decode(*buf, len, key, "cache entry", info, obj, obj_len, quiet);
    kiln_diag_dispose(quiet);
    if (st) {
        /* A bad entry is never run; it goes, and the compile rewrites it. */
        if (st != KILN_ERR_NOMEM) {
            char path[sizeof c->dir + 80];
            cg_cache_path(c, key, path, sizeof path);
            remove(path);
        }
        ir_free(*buf);
        *buf = NULL;
        return false;
    }
    return true;
}

static atomic_int g_warned;

bool cg_cache_store(const cg_cache_cfg *c, const cg_cache_key *key, const cg_module_info *info,
                    const void *obj, size_t obj_len, kiln_diag *d) {
    char *entry;
    size_t len;
    kiln_diag *quiet = kiln_diag_create();
    kiln_status st = cg_cache_entry_encode(key, info, obj, obj_len, &entry, &len, quiet);
    kiln_diag_dispose(quiet);
    if (st) return false; /* out of memory: the compile carries on without */
    char why[4400];
    bool ok = cg_cache_write(c, key, entry, len, why, sizeof why);
    ir_free(entry);
    if (!ok) cg_cache_warn_once(d, why, "compiling in memory");
    return ok;
}

void cg_cache_warn_once(kiln_diag *d, const char *why, const char *then) {
    if (atomic_exchange(&g_warned, 1) == 0)
        ir_warning(d, ir_loc_none(), "compile cache: %s; %s", why, then);
}

/* -------------------------------------------------------- the public API */

kiln_status kiln_cache_info(kiln_cache_stats *out, kiln_diag *d) {
    if (!out) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_cache_info: no output");
    memset(out, 0, sizeof *out);
    cg_cache_cfg c;
    cg_cache_config(&c);
    if (!c.dir[0])
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "compile cache: no directory (set KILN_CACHE_DIR or HOME)");
    snprintf(out->dir, sizeof out->dir, "%s", c.dir);
    out->enabled = c.enabled;
    out->max_bytes = c.max_bytes;
    cg_cache_scan(&c, false, &out->entries, &out->bytes);
    return KILN_OK;
}

kiln_status kiln_cache_clear(int64_t *removed, kiln_diag *d) {
    if (removed) *removed = 0;
    cg_cache_cfg c;
    cg_cache_config(&c);
    if (!c.dir[0])
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                        "compile cache: no directory (set KILN_CACHE_DIR or HOME)");
    int64_t n, bytes;
    cg_cache_scan(&c, true, &n, &bytes);
    if (removed) *removed = n;
    return KILN_OK;
}

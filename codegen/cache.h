/*
 * cache.h — the persistent compile cache: native objects of compiled
 * functions on disk, keyed by what determines them.
 *
 * The key is the SHA-256 of the function's final Kiln IR (after the passes,
 * memory plan included, as the printer writes it, plus node locations,
 * which error messages quote), the target triple, CPU name and features,
 * optimization level, the Kiln and LLVM versions, and the build of Kiln
 * (cg_cache_build_identity: its GNU build-id). An entry holds the
 * object and the entry-point descriptions (cg_module_info), so a hit needs
 * neither the LLVM module nor the optimizer: the object goes straight to
 * LLVMOrcLLJITAddObjectFile.
 *
 * On disk (cache_store.c), one file per key, <dir>/<hex key>.kco:
 *
 *   offset  size  field
 *   0       8     magic "KILNOBJ\0"
 *   8       4     format version (CG_CACHE_FORMAT), little-endian
 *   12      4     zero
 *   16      32    the key
 *   48      8     payload length
 *   56      32    SHA-256 of the payload
 *   88      ...   payload: u32 n_funcs, per function its name, symbol,
 *                 counts, workspace and error-record layout and fail sites,
 *                 then u64 object length and the object bytes
 *
 * Strings are u32 length + bytes (0xffffffff: NULL). Entries are written to a
 * temporary file and renamed into place, so readers see whole entries or
 * none; a reader still checks magic, version, key, length and checksum, and
 * treats anything else as a miss. The directory is bounded in size: after a
 * store the least recently used entries (by mtime, touched on every hit) go.
 *
 * Where: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln.
 * KILN_CACHE=0 turns it off; KILN_CACHE_MAX_MB bounds it (default 256).
 */
#ifndef KILN_CODEGEN_CACHE_H
#define KILN_CODEGEN_CACHE_H

#include "codegen/cg.h"

/* ---------------------------------------------------------------- SHA-256 */

#define CG_SHA256_BYTES 32

typedef struct cg_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} cg_sha256;

void cg_sha256_init(cg_sha256 *s);
void cg_sha256_update(cg_sha256 *s, const void *data, size_t n);
void cg_sha256_final(cg_sha256 *s, uint8_t out[CG_SHA256_BYTES]);
void cg_sha256_bytes(const void *data, size_t n, uint8_t out[CG_SHA256_BYTES]);

/* ------------------------------------------------------------- entries */

#define CG_CACHE_FORMAT 2
#define CG_CACHE_HEADER 88
#define CG_CACHE_DEFAULT_MB 256

typedef struct cg_cache_key {
    uint8_t b[CG_SHA256_BYTES];
} cg_cache_key;

/* Where the cache is and how big it may get (from the environment). */
typedef struct cg_cache_cfg {
    char dir[4096];
    int64_t max_bytes;
    bool enabled; /* false with KILN_CACHE=0 or no usable directory name */
} cg_cache_cfg;

void cg_cache_config(cg_cache_cfg *c);

/* The whole entry file of (key, info, object): header + payload. Malloc'ed
 * into *out (ir_free); KILN_ERR_NOMEM when memory runs out. */
kiln_status cg_cache_entry_encode(const cg_cache_key *key, const cg_module_info *info,
                                  const void *obj, size_t obj_len, char **out, size_t *len,
                                  kiln_diag *d);

/* Reads an entry's bytes: checks the header (magic, format, `key`, length,
 * checksum) and decodes the payload. On success *info is the entry-point
 * description (cg_module_info_dispose) and *obj points into `buf`. Anything
 * wrong is KILN_ERR_PARSE (or KILN_ERR_VERSION for another format, or
 * KILN_ERR_NOMEM) with a message "<what>: ..." in d, and nothing returned.
 * key NULL: the key in the header is taken as given (the fuzz target). */
kiln_status cg_cache_entry_decode(const void *buf, size_t len, const cg_cache_key *key,
                                  const char *what, cg_module_info **info, const void **obj,
                                  size_t *obj_len, kiln_diag *d);

/* The file of `key` in the cache: "<dir>/<64 hex digits>.kco". */
void cg_cache_path(const cg_cache_cfg *c, const cg_cache_key *key, char *out, size_t cap);

/* Reads the entry file of `key` into *buf (ir_free) and touches its mtime.
 * false (and nothing allocated) when absent or unreadable. */
bool cg_cache_read(const cg_cache_cfg *c, const cg_cache_key *key, char **buf, size_t *len);

/* Writes an entry atomically (temporary file + rename), then evicts the
 * least recently used entries beyond c->max_bytes. false with a reason in
 * why[] when the directory cannot be created or written, or the entry
 * alone is larger than the bound. */
bool cg_cache_write(const cg_cache_cfg *c, const cg_cache_key *key, const void *entry, size_t len,
                    char *why, size_t why_cap);

/* The same for an entry given as n_parts pieces written one after the
 * other (a large payload need not be copied into one buffer). */
bool cg_cache_write_parts(const cg_cache_cfg *c, const cg_cache_key *key, const void *const *parts,
                          const size_t *lens, int n_parts, char *why, size_t why_cap);

/* Adds the warning "compile cache: <why>; <then>" to d, once per process
 * (the first directory that cannot take an entry says so; the rest of the
 * run carries on without the cache, quietly). */
void cg_cache_warn_once(kiln_diag *d, const char *why, const char *then);

/* Entries and bytes in the directory; with `remove`, deletes every entry
 * (and stale temporary files). */
void cg_cache_scan(const cg_cache_cfg *c, bool remove, int64_t *entries, int64_t *bytes);

/* ------------------------------------------------------- the JIT's use */

typedef enum cg_cache_status { CG_CACHE_OFF = 0, CG_CACHE_MISS, CG_CACHE_HIT } cg_cache_status;

const char *cg_cache_status_name(cg_cache_status s);

/* Whether compiling `m` with `o` may use the cache (not o->no_cache, not a
 * test hook, the function exists, KILN_CACHE not 0, a directory name
 * found); *cfg is the configuration. */
bool cg_cache_enabled(kiln_module *m, const cg_options *o, cg_cache_cfg *cfg);

/* The key of compiling `m` (o->only_func or all of it) with `o`, for this
 * build of Kiln (cg_cache_build_identity). KILN_ERR_NOMEM (or a backend
 * error) on failure. */
kiln_status cg_cache_key_of(kiln_module *m, const cg_options *o, cg_cache_key *key, kiln_diag *d);
/* The same for the build identified by `build` (tests: another build). */
kiln_status cg_cache_key_for_build(kiln_module *m, const cg_options *o, const char *build,
                                   cg_cache_key *key, kiln_diag *d);

/* The key of an LLVM module about to be optimized and compiled with `o`
 * (the AOT compiler's: glue and embedded weights included): the SHA-256 of
 * its bitcode, with the versions, build, target and opt level as above. */
kiln_status cg_cache_key_of_module(LLVMModuleRef mod, const cg_options *o, cg_cache_key *key,
                                   kiln_diag *d);

/* What identifies this build of Kiln in cache keys, so that a rebuilt
 * library never loads code compiled by an older build: "build-id:<hex>",
 * the GNU build-id (NT_GNU_BUILD_ID note, linked with -Wl,--build-id) of the
 * ELF object holding this code (libkiln.so, or the program linking
 * libkiln.a); "version:<KILN_VERSION_STRING>" if that object has none.
 * Never empty; computed once. */
const char *cg_cache_build_identity(void);

/* A hit: the entry of `key`, verified; *info and the object (in *buf,
 * ir_free) returned. false on a miss or a bad entry (which is removed). */
bool cg_cache_lookup(const cg_cache_cfg *c, const cg_cache_key *key, cg_module_info **info,
                     char **buf, const void **obj, size_t *obj_len);

/* Stores an entry; when the directory cannot take it, adds one warning to
 * `d` (once per process) and returns false: the caller carries on. */
bool cg_cache_store(const cg_cache_cfg *c, const cg_cache_key *key, const cg_module_info *info,
                    const void *obj, size_t obj_len, kiln_diag *d);

#endif

/*
 * aot.h — ahead-of-time compilation: a module becomes a self-contained shared
 * object (or object / LLVM IR / assembly) plus a C header.
 *
 * The shared object holds the model's entry points (cg.h's ABI, internal),
 * unless asked not to the weights as constant data, a constant descriptor
 * of both (aot_abi.h) and the exported names (aot_glue.c), linked with the
 * support library written in C (runtime/aotrt.c and runtime/st_core.c, the
 * archive libkiln_aotrt.a that libkiln carries): the model handle with the
 * weights, optimizer state and workspace in one block of memory, the
 * safetensors loader and atomic saver the runtime uses too, the version
 * check. It is linked with `cc -shared -Wl,-z,defs` against OpenBLAS and
 * libm only, and a version script exports the documented entry points and
 * nothing else. (--emit obj|llvm|asm write the generated part alone; link
 * it with libkiln_aotrt.a.)
 *
 * The generated API, for prefix P (the header documents it for users):
 *   uint32_t P_abi_version(void);
 *   int P_check_version(uint32_t header_version, char *msg, size_t size);
 *   const char *P_status_string(int status);
 *   size_t P_size(int64_t max_batch);
 *   int P_init(void *mem, size_t size, int64_t max_batch, P_model **out);
 *   int P_create(int64_t max_batch, P_model **out);
 *   void P_destroy(P_model *m);
 *   const char *P_last_error(const P_model *m);
 *   int P_load(P_model *m, const char *path);
 *   int P_infer(P_model *m, int64_t batch, <inputs>, <outputs>);
 *   int P_evaluate(P_model *m, int64_t batch, <inputs>, <labels>, float *loss[, float *accuracy]);
 *   int P_train_step(...same as evaluate...);          (train only)
 *   int P_save(P_model *m, const char *path);          (train only)
 */
#ifndef KILN_CODEGEN_AOT_H
#define KILN_CODEGEN_AOT_H

#include "codegen/aot_abi.h"
#include "codegen/cache.h"
#include "codegen/cg.h"

typedef enum cg_aot_emit { CG_AOT_SO, CG_AOT_OBJ, CG_AOT_LLVM, CG_AOT_ASM } cg_aot_emit;

typedef struct cg_aot_options {
    const char *output; /* the file to write */
    const char *header; /* the C header to write, or NULL */
    const char *prefix; /* C prefix of the entry points: a C identifier */
    bool train;         /* export train_step and save */
    bool embed;         /* embed the globals' data (else P_load must run first) */
    cg_aot_emit emit;
    const char *cpu; /* target CPU; NULL: this machine's (features then too) */
    const char *cc;  /* linker driver; NULL: the C compiler Kiln was built with */
    kiln_gemm gemm;  /* GEMM backend (cg_options.gemm); OpenBLAS is linked only if called */
    /* Checkpoint metadata that P_save writes (the runtime's format). */
    int format_version;
    uint64_t structure_hash;
    /* Out (may be NULL): whether the object code of a .so or .o came from
     * the compile cache (keyed by the module's bitcode, glue and embedded
     * weights included: cg_cache_key_of_module); off for text outputs. */
    cg_cache_status *cache;
} cg_aot_options;

/* Compiles module `m` (through its pipeline) ahead of time. `globals[i]`
 * holds the data of module global i, embedded when o->embed (may be NULL
 * otherwise). Temporary files live in a private directory that is removed
 * on every path. */
kiln_status cg_aot_compile(kiln_module *m, void *const *globals, const cg_aot_options *o,
                           kiln_diag *d);

/* Whether `s` is a valid C identifier that is not a keyword. */
bool cg_aot_valid_prefix(const char *s);

/* ------------------------------------------------- internal to aot*.c */

/* One exported entry point. */
typedef struct aot_entry {
    const char *kiln; /* Kiln function: "infer", "loss", "train_step" */
    const char *c;    /* suffix of the C name: "infer", "evaluate", "train_step" */
    kiln_func *f;
    const cg_func_info *info;
    char **names; /* C parameter names: arguments, then results */
} aot_entry;

typedef struct aot_global {
    const ir_global *g;
    bool used; /* referenced by an exported function */
    int64_t bytes;
    int64_t offset;      /* of its storage in the handle */
} aot_global;

typedef struct aot_plan {
    kiln_module *m;
    const cg_aot_options *o;
    void *const *data; /* the globals' data (embed) */
    char *p, *P;       /* the prefix, and in upper case for macros */
    aot_entry entries[3];
    int n_entries;
    aot_entry *infer, *evaluate, *train;
    aot_global *g; /* by global index */
    int n_g;
    int iterations; /* the i32[] step counter (optimizer.iterations), or -1 */
    int64_t state_off, state_bytes, ws_off, ws_fixed, ws_ps, max_batch;
    uint64_t magic;
    uint32_t version;
    cg_module_info *info;
} aot_plan;

/* Writes the descriptor and the exported names into `mod` (which holds the
 * entry points kiln_*): codegen/aot_glue.c. */
kiln_status aot_glue(aot_plan *pl, LLVMContextRef ctx, LLVMModuleRef mod, kiln_diag *d);

/* The header text. */
kiln_status aot_header(const aot_plan *pl, ir_sb *out, kiln_diag *d);
/* The names the shared object exports, in header order; returns the count. */
enum { AOT_MAX_PREFIX = 64, AOT_MAX_EXPORTS = 16 };
int aot_exports(const aot_plan *pl, char (*names)[AOT_MAX_PREFIX + 32]);

#endif

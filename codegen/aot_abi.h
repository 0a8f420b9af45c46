/*
 * aot_abi.h — the ABI between the generated part of an AOT shared object
 * (the model's code, its weights and one constant aot_abi_model describing
 * them, all written by codegen/aot_glue.c) and the support library that
 * every such object links (runtime/aotrt.c, with runtime/st_core.c: the
 * archive libkiln_aotrt.a that libkiln carries and `kiln compile` links).
 *
 * Every field is 8 bytes (int64_t or a pointer), so the generated constant
 * is a plain LLVM struct of i64 and i8* with the C layout; a change of the
 * layout bumps AOT_ABI_LAYOUT, which aotrt checks on every call of P_create
 * and P_init.
 *
 * The handle (P_model) is one 64-aligned block:
 *   [magic, max_batch, ready, owned, error text, globals table]
 *   [each tensor's data, 64-aligned]            state_off .. ws_off
 *   [workspace: ws_fixed + ws_per_sample * max_batch]
 * The generated P_<entry> calls kiln_aotrt_enter (handle and argument
 * checks), the entry point with the table and the workspace, and on a
 * failure kiln_aotrt_failed (the message).
 */
#ifndef KILN_CODEGEN_AOT_ABI_H
#define KILN_CODEGEN_AOT_ABI_H

#include <stddef.h>
#include <stdint.h>

#define AOT_ABI_LAYOUT 1
#define AOT_ABI_MAX_RANK 8
/* dtypes as st_core numbers them (its table; aotrt.c checks) */
enum { AOT_ABI_I32 = 9, AOT_ABI_F32 = 11 };

/* Layout of the handle, in bytes from its start. */
enum {
    AOT_OFF_MAGIC = 0,  /* u64: this model's magic; 0 once destroyed */
    AOT_OFF_MAXB = 8,   /* i64: max_batch */
    AOT_OFF_READY = 16, /* i32: weights present */
    AOT_OFF_OWNED = 20, /* i32: memory from P_create */
    AOT_OFF_ERR = 24,   /* char[AOT_ERR_BYTES]: the last error message */
    AOT_ERR_BYTES = 256,
    AOT_OFF_TABLE = AOT_OFF_ERR + AOT_ERR_BYTES, /* void *[n_globals] for the entry points */
    AOT_ALIGN = 64
};

/* A global the exported functions use: a tensor of the checkpoint. */
typedef struct aot_abi_tensor {
    const char *name;
    int64_t dtype; /* AOT_ABI_F32 or AOT_ABI_I32 */
    int64_t rank;
    int64_t dims[AOT_ABI_MAX_RANK];
    int64_t bytes;
    int64_t offset;   /* of its storage in the handle */
    int64_t global;   /* its slot in the handle's table */
    const void *data; /* the embedded weights; NULL: none, or all zero */
} aot_abi_tensor;

/* A place where an entry point can fail (a label out of range): the
 * message is before, the label, after. */
typedef struct aot_abi_fail {
    int64_t serial;
    const char *before, *after;
} aot_abi_fail;

typedef struct aot_abi_entry {
    const char *name; /* the C name, "m_infer" */
    int64_t n_params;
    const char *const *params; /* C parameter names: arguments, then results */
    int64_t err_fixed, err_per_sample; /* the error record in the workspace (cg.h) */
    int64_t n_fails;
    const aot_abi_fail *fails;
} aot_abi_entry;

typedef struct aot_abi_model {
    int64_t layout; /* AOT_ABI_LAYOUT */
    const char *prefix;
    int64_t version; /* Kiln's, major << 16 | minor << 8 | patch */
    int64_t magic;   /* the bits of a u64 */
    int64_t max_batch, state_off, state_bytes, ws_off, ws_fixed, ws_per_sample;
    int64_t n_tensors;
    const aot_abi_tensor *tensors;
    int64_t n_entries;
    const aot_abi_entry *entries;
    int64_t embedded;   /* the weights are in the object */
    int64_t iterations; /* the tensor optimizer.iterations, or -1 */
    /* Checkpoint metadata P_save writes (runtime/checkpoint.h). */
    int64_t format_version;
    int64_t structure_hash;
    const char *model;
} aot_abi_model;

/* The support library's functions; the generated P_<name> passes its
 * descriptor first. Hidden in the shared object. */
uint32_t kiln_aotrt_abi_version(const aot_abi_model *M);
int kiln_aotrt_check_version(const aot_abi_model *M, uint32_t header_version, char *msg,
                             size_t size);
const char *kiln_aotrt_status_string(const aot_abi_model *M, int status);
size_t kiln_aotrt_size(const aot_abi_model *M, int64_t max_batch);
int kiln_aotrt_init(const aot_abi_model *M, void *mem, size_t size, int64_t max_batch,
                    void **out);
int kiln_aotrt_create(const aot_abi_model *M, int64_t max_batch, void **out);
void kiln_aotrt_destroy(const aot_abi_model *M, void *m);
const char *kiln_aotrt_last_error(const aot_abi_model *M, const void *m);
int kiln_aotrt_load(const aot_abi_model *M, void *m, const char *path);
int kiln_aotrt_save(const aot_abi_model *M, void *m, const char *path);
/* Before entry point `entry`: the handle, the weights, the batch and the
 * n_params pointers. KILN_OK or the status (with the message set). */
int kiln_aotrt_enter(const aot_abi_model *M, void *m, int64_t entry, int64_t batch,
                     void *const *ptrs);
/* After entry point `entry` returned rc != 0: sets the message, returns rc. */
int kiln_aotrt_failed(const aot_abi_model *M, void *m, int64_t entry, int64_t batch, int rc);

#endif

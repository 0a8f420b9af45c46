/*
 * safetensors.h — reading and writing safetensors files, the weight format
 * of PyTorch and Hugging Face tools.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [784, 128], "data_offsets": [begin, end]}, ...}
 * (padded with spaces), then the tensors' raw little-endian bytes; offsets
 * count from the end of the header, and the tensors cover the data exactly.
 *
 * Saving is atomic: a temporary file in the same directory is written,
 * fsync'ed and renamed over the target, and the directory is fsync'ed, so a
 * crash at any moment leaves either the old file or the new one, whole (a
 * writer killed mid-save leaves its ".NAME.tmp-PID-N" file behind).
 * Loading checks everything before a byte is used; each refusal is one line
 * naming the file and, where there is one, the tensor. The reader and the
 * writer are runtime/st_core.c's (libc only), which AOT shared objects link
 * too: P_load refuses a file with these same messages.
 */
#ifndef KILN_RUNTIME_SAFETENSORS_H
#define KILN_RUNTIME_SAFETENSORS_H

#include "ir/ir.h"

typedef enum rt_st_dtype {
    RT_ST_BOOL,
    RT_ST_U8,
    RT_ST_I8,
    RT_ST_F8_E5M2,
    RT_ST_F8_E4M3,
    RT_ST_I16,
    RT_ST_U16,
    RT_ST_F16,
    RT_ST_BF16,
    RT_ST_I32,
    RT_ST_U32,
    RT_ST_F32,
    RT_ST_F64,
    RT_ST_I64,
    RT_ST_U64,
    RT_ST_C64,
    RT_ST_DTYPE_COUNT
} rt_st_dtype;

/* "F32", ...; the dtype of a name or -1; bytes per element. */
const char *rt_st_dtype_name(rt_st_dtype dt);
int rt_st_dtype_lookup(const char *name);
size_t rt_st_dtype_size(rt_st_dtype dt);

#define RT_ST_MAX_RANK 8
/* The reference implementation's limit on the JSON header. */
#define RT_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef struct rt_st_tensor {
    const char *name;
    rt_st_dtype dtype;
    int rank;
    int64_t dims[RT_ST_MAX_RANK];
    const void *data; /* nbytes little-endian bytes */
    size_t nbytes;
} rt_st_tensor;

typedef struct rt_st_meta {
    const char *key, *value;
} rt_st_meta;

/* Writes the tensors and the metadata (may be NULL/0) to `path` atomically.
 * Names must be unique, non-empty and not "__metadata__"; nbytes must be
 * the product of dims times the dtype's size. Tensors are laid out widest
 * element first (keeping the given order otherwise), so each is aligned. */
kiln_status rt_st_save(const char *path, const rt_st_tensor *tensors, int n,
                       const rt_st_meta *meta, int n_meta, kiln_diag *d);

/* A loaded file: every tensor checked, data in memory. */
typedef struct rt_st_file rt_st_file;

/* Reads and checks a file. On success the caller frees *out with
 * rt_st_free(); on error *out is NULL. */
kiln_status rt_st_load(const char *path, rt_st_file **out, kiln_diag *d);
/* The same from memory (tests, fuzzing); the data is copied. */
kiln_status rt_st_parse(const void *buf, size_t len, const char *name, rt_st_file **out,
                        kiln_diag *d);
void rt_st_free(rt_st_file *f);

/* The name given to load/parse (for messages). */
const char *rt_st_file_name(const rt_st_file *f);
/* Tensors in the header's order; valid until rt_st_free(). */
int rt_st_count(const rt_st_file *f);
const rt_st_tensor *rt_st_at(const rt_st_file *f, int i);
const rt_st_tensor *rt_st_find(const rt_st_file *f, const char *name);
/* Metadata in the header's order, and by key (NULL when absent). */
int rt_st_meta_count(const rt_st_file *f);
const rt_st_meta *rt_st_meta_at(const rt_st_file *f, int i);
const char *rt_st_meta_get(const rt_st_file *f, const char *key);

/* Writes "[784,128]" into buf. */
const char *rt_st_shape_str(int rank, const int64_t *dims, char *buf, size_t n);
/* A name from a file, made safe to print: control bytes become '?', and a
 * long name is cut (with "..."). Returns buf (>= RT_ST_NAME_BUF bytes). */
#define RT_ST_NAME_BUF 136
const char *rt_st_clean_name(const char *s, char *buf);

/* Test hook: when set, rt_st_save calls fn at each step of writing —
 * stage "open", "write" (bytes = bytes written so far, after each chunk of
 * at most 1 MiB), "fsync", "rename", "done" — so a test can kill the
 * process at a chosen point. NULL turns it off. */
typedef void (*rt_st_save_hook)(const char *stage, uint64_t bytes, void *ctx);
void rt_st_set_save_hook(rt_st_save_hook fn, void *ctx);

#endif

/*
 * st_core.h — the safetensors format in plain C, written once: the strict
 * header reader (a small JSON parser and every check on the entries), the
 * header writer and the atomic file writer.
 *
 * It needs the C library and nothing else, so it serves both libkiln
 * (runtime/safetensors.c, through rt_st_*) and the support library linked
 * into every AOT shared object (runtime/aotrt.c): the same file gets the
 * same answer, and the same message, from `kiln eval --load` and from
 * P_load. Errors are a status (kiln_status values) and one line of text
 * naming the file and, where there is one, the tensor.
 *
 * The JSON parser accepts what cJSON 1.7 (the parser Kiln used before)
 * accepts and reports a syntax error at the byte cJSON reported, so the
 * messages stay those users have seen.
 */
#ifndef KILN_RUNTIME_ST_CORE_H
#define KILN_RUNTIME_ST_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STC_MAX_RANK 8
/* The reference implementation's limit on the JSON header. */
#define STC_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* A name made safe to print fits this many bytes (stc_clean_name). */
#define STC_NAME_BUF 136
#define STC_MSG 640

/* The allocator (NULL: malloc and free). libkiln passes its own, so fault
 * injection reaches the reader. */
typedef struct stc_alloc {
    void *(*malloc)(size_t);
    void (*free)(void *);
} stc_alloc;

/* An error: a kiln_status and its message (empty when status is 0). */
typedef struct stc_err {
    int status;
    char msg[STC_MSG];
} stc_err;

/* dtypes, in the order of rt_st_dtype. */
enum { STC_I32 = 9, STC_F32 = 11, STC_DTYPE_COUNT = 16 };
const char *stc_dtype_name(int dt);
int stc_dtype_lookup(const char *name);
size_t stc_dtype_size(int dt);

/* "[784,128]" into buf. */
const char *stc_shape_str(int rank, const int64_t *dims, char *buf, size_t n);
/* s with control bytes as '?' and a long name cut (with "..."); buf holds
 * STC_NAME_BUF bytes. */
const char *stc_clean_name(const char *s, char *buf);
/* The byte count of a shape; false on overflow or a negative dimension. */
bool stc_shape_bytes(int rank, const int64_t *dims, size_t esize, size_t *out);

typedef struct stc_tensor {
    const char *name;
    int dtype;
    int rank;
    int64_t dims[STC_MAX_RANK];
    uint64_t begin, end; /* data_offsets (reading) */
    size_t nbytes;
    const void *data; /* writing */
} stc_tensor;

typedef struct stc_meta {
    const char *key, *value;
} stc_meta;

/* A checked header. The strings live as long as it does. */
typedef struct stc_json stc_json;
typedef struct stc_header {
    stc_tensor *t; /* in the header's order */
    int n;
    stc_meta *meta;
    int n_meta;
    stc_json *root; /* private */
} stc_header;

/* The checks on the file's size and the header length (size >= 8). */
int stc_check_sizes(const char *name, uint64_t size, uint64_t hlen, stc_err *e);
/* The message for a file shorter than 8 bytes. */
int stc_too_short(const char *name, uint64_t size, stc_err *e);

/* Parses and checks the JSON header `hdr` (n bytes) of a file whose data
 * holds data_len bytes: dtypes known, shapes sane, byte counts right,
 * offsets inside the data, names unique, the tensors covering the data
 * exactly. On success the caller frees *h with stc_header_free. */
int stc_parse_header(const char *name, const char *hdr, size_t n, uint64_t data_len,
                     const stc_alloc *a, stc_header *h, stc_err *e);
void stc_header_free(stc_header *h, const stc_alloc *a);

/* Why a tensor of the file (found: dtype, rank, dims) cannot fill a model
 * tensor of want_*: "is missing; the model expects F32 [2]", "has dtype
 * I32, the model expects F32", "has shape [3,4], the model expects [4,3]"
 * into buf; NULL when it can. The runtime and AOT objects say the same. */
const char *stc_mismatch(int want_dtype, int want_rank, const int64_t *want_dims, bool found,
                         int dtype, int rank, const int64_t *dims, char *buf, size_t n);
/* The first NaN or Inf among n little-endian f32 at p: its index (or -1),
 * and in *what "NaN", "Inf" or "-Inf". */
int64_t stc_first_nonfinite(const void *p, size_t n, const char **what);
/* Whether a tensor name is optimizer state ("optimizer.*"), which a model
 * without it skips. */
bool stc_is_state_name(const char *name);

/* A whole file: the checked header and the data (data_len bytes, each
 * tensor at data + begin). */
typedef struct stc_file {
    stc_header h;
    unsigned char *data;
    uint64_t data_len;
} stc_file;

/* Reads and checks the file at `path` (stc_parse: the bytes buf[0..len),
 * copied, `name` for messages). On success the caller frees *f with
 * stc_file_free. */
int stc_load(const char *path, const stc_alloc *a, stc_file *f, stc_err *e);
int stc_parse(const void *buf, size_t len, const char *name, const stc_alloc *a, stc_file *f,
              stc_err *e);
void stc_file_free(stc_file *f, const stc_alloc *a);

/* The little-endian u64 at b. */
uint64_t stc_le64(const unsigned char *b);

/* Called at each step of a save: "open", "write" (bytes so far, after each
 * chunk of at most 1 MiB), "fsync", "rename", "done". */
typedef void (*stc_hook)(const char *stage, uint64_t bytes, void *ctx);

/* Writes the tensors (name, dtype, rank, dims, nbytes, data; checked by the
 * caller) and the metadata to `path` atomically: a temporary file
 * dir/.NAME.tmp-PID-N, fsync, rename, fsync of the directory. Tensors are
 * laid out widest element first, keeping their order otherwise. */
int stc_save(const char *path, const stc_tensor *t, int n, const stc_meta *meta, int n_meta,
             const stc_alloc *a, stc_hook hook, void *hook_ctx, stc_err *e);

#endif

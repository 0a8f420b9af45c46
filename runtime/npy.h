/*
 * npy.h — NumPy's .npy arrays and .npz archives (zip, stored or deflated).
 *
 * .npy: "\x93NUMPY", version (1.0, 2.0 or 3.0), the header length (uint16
 * or uint32, little-endian), a Python dict literal
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }
 * then the elements. Read: float32, float64, uint8, int32, int64,
 * little-endian (or byte-sized), C order; anything else is refused by name.
 * Arrays come back as rt_idx (data.h) of uint8, int32 or float32: int64
 * values are narrowed to int32 (refused when they do not fit) and float64
 * to float32, in place. Nothing is allocated before the file is known to
 * hold what its header claims; messages name the file and the place (the
 * byte offset in the header, the member of an archive).
 */
#ifndef KILN_RUNTIME_NPY_H
#define KILN_RUNTIME_NPY_H

#include "runtime/data.h"

/* True when the bytes start like a .npy file / a zip archive (.npz). */
bool rt_is_npy(const void *buf, size_t len);
bool rt_is_zip(const void *buf, size_t len);

/* Parses a .npy file held in memory; `name` is used in messages. On success
 * the caller frees *out with rt_idx_free(); on error *out is empty. */
kiln_status rt_npy_parse(const void *buf, size_t len, const char *name, rt_idx *out,
                         kiln_diag *d);
/* Reads a .npy file (mapped, not copied). */
kiln_status rt_npy_load(const char *path, rt_idx *out, kiln_diag *d);

/* Member `member` of a .npz archive in memory ("x_train" or "x_train.npy").
 * When it is absent the message lists the members. */
kiln_status rt_npz_parse(const void *buf, size_t len, const char *name, const char *member,
                         rt_idx *out, kiln_diag *d);
kiln_status rt_npz_load(const char *path, const char *member, rt_idx *out, kiln_diag *d);

/* A .npy or IDX file, told apart by its first bytes (rt_idx_load for IDX). */
kiln_status rt_array_load(const char *path, rt_idx *out, bool *is_npy, kiln_diag *d);

/* Writes float32 data of shape dims[0..rank) as a version 1.0 .npy file. */
kiln_status rt_npy_write(const char *path, const float *data, int rank, const int64_t *dims,
                         kiln_diag *d);

/* A file mapped read-only (len 0: p is NULL). */
typedef struct rt_mapped {
    void *p;
    size_t len;
} rt_mapped;
kiln_status rt_map_file(const char *path, rt_mapped *m, kiln_diag *d);
void rt_unmap_file(rt_mapped *m);

/* Replaces bytes that are not printable ASCII by '?' (names from files in
 * one-line messages); returns s. */
char *rt_printable(char *s);

/* Little-endian integers (npy.c, npz.c). */
uint32_t rt_le16(const uint8_t *p);
uint32_t rt_le32(const uint8_t *p);

#endif

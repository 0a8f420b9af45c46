/*
 * data_arrays.c — datasets from the caller's arrays and from float labels,
 * and how labels meet the model's label tensor (rt_y_mode in data.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/data.h"

/* Finds the smallest and largest label. */
static void label_range(rt_dataset *ds) {
    int32_t lo = ds->n ? ds->labels[0] : 0, hi = lo;
    for (int64_t i = 1; i < ds->n; i++) {
        lo = ds->labels[i] < lo ? ds->labels[i] : lo;
        hi = ds->labels[i] > hi ? ds->labels[i] : hi;
    }
    ds->label_min = lo;
    ds->label_max = hi;
}

/* Float labels that are all whole numbers in int32's range, one per sample,
 * may be class indices too: fills ds->labels (owned) from them. */
static kiln_status maybe_indices(rt_dataset *ds, kiln_diag *d) {
    if (ds->target_size != 1) return KILN_OK;
    for (int64_t i = 0; i < ds->n; i++) {
        float v = ds->targets[i];
        if (v != floorf(v) || v < -2147483648.0f || v >= 2147483648.0f) return KILN_OK;
    }
    ds->labels = ir_malloc(sizeof(int32_t) * (size_t)(ds->n ? ds->n : 1));
    if (!ds->labels) return ir_oom(d);
    for (int64_t i = 0; i < ds->n; i++) ds->labels[i] = (int32_t)ds->targets[i];
    ds->borrowed_labels = false;
    label_range(ds);
    return KILN_OK;
}

static kiln_status check_finite_f32(const float *v, int64_t n, int64_t per, const char *name,
                                    const char *what, kiln_diag *d) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return ir_error(d, KILN_ERR_NONFINITE, ir_loc_none(), "%s: value %lld of %s %lld is %s",
                            name, (long long)(i % per), what, (long long)(i / per),
                            isnan(v[i]) ? "NaN" : v[i] > 0 ? "Inf" : "-Inf");
    return KILN_OK;
}

kiln_status rt_dataset_take_targets(rt_dataset *ds, float *v, int rank, const int64_t *dims,
                                    bool borrowed, kiln_diag *d) {
    int64_t per = 1;
    for (int i = 0; i < rank; i++) per *= dims[i];
    ds->targets = v;
    ds->borrowed_targets = borrowed;
    ds->target_size = per;
    ds->target_rank = rank;
    for (int i = 0; i < rank; i++) ds->target_dims[i] = dims[i];
    kiln_status st = check_finite_f32(v, ds->n * per, per, ds->labels_path, "sample", d);
    return st ? st : maybe_indices(ds, d);
}

kiln_status rt_dataset_y_mode(const rt_dataset *ds, bool sparse, int64_t size, rt_y_mode *mode,
                              kiln_diag *d) {
    const char *name = ds->labels_path ? ds->labels_path : ds->images_path;
    if (!ds->labels && !ds->targets)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: the dataset has no labels",
                        ds->images_path);
    if (!sparse && ds->targets && ds->target_size == size) {
        *mode = RT_Y_TARGETS;
        return KILN_OK;
    }
    if (!ds->labels) {
        if (sparse)
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "%s: labels are not class indices (they are not whole numbers, or "
                            "%lld per sample); the model's label is i32 class indices",
                            name, (long long)ds->target_size);
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(),
                        "%s: labels are %lld values per sample, the model's label has %lld",
                        name, (long long)ds->target_size, (long long)size);
    }
    *mode = sparse ? RT_Y_INDICES : size == 1 ? RT_Y_VALUE : RT_Y_ONEHOT;
    if (*mode == RT_Y_VALUE) return KILN_OK;
    return rt_dataset_check_labels(ds, sparse ? (size > 0 ? size : 1) : size, d);
}

kiln_status rt_dataset_take_float_labels(rt_dataset *ds, rt_idx *lab, kiln_diag *d) {
    if (lab->dims[0] != ds->n)
        return ir_error(d, KILN_ERR_SHAPE, ir_loc_none(), "%s: %lld labels, but %s has %lld samples",
                        ds->labels_path, (long long)lab->dims[0], ds->images_path,
                        (long long)ds->n);
    float *t = lab->data;
    if (lab->type != RT_IDX_F32) {
        t = ir_malloc(sizeof(float) * (size_t)lab->count);
        if (!t) return ir_oom(d);
        for (int64_t i = 0; i < lab->count; i++)
            t[i] = lab->type == RT_IDX_U8 ? (float)((const uint8_t *)lab->data)[i]
                                          : (float)((const int32_t *)lab->data)[i];
    } else {
        lab->data = NULL;
    }
    return rt_dataset_take_targets(ds, t, lab->rank - 1, lab->dims + 1, false, d);
}

/* ------------------------------------------------------ from the caller */

static kiln_status array_shape(const kiln_array *a, const char *what, int64_t count,
                               int64_t *per, kiln_diag *d) {
    if (!a->data && count > 0)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: no data", what);
    if (a->rank < 0 || a->rank > KILN_MAX_RANK)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: rank %d is not in 0..%d", what,
                        a->rank, KILN_MAX_RANK);
    if (a->type != KILN_ARRAY_F32 && a->type != KILN_ARRAY_U8 && a->type != KILN_ARRAY_I32)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(), "%s: unknown array type %d", what,
                        (int)a->type);
    *per = 1;
    for (int i = 0; i < a->rank; i++) {
        if (a->dims[i] <= 0 || *per > RT_IDX_MAX_BYTES / 4 / a->dims[i] ||
            (count > 0 && *per * a->dims[i] > RT_IDX_MAX_BYTES / 4 / count))
            return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                            "%s: dimension %d (%lld) is not positive or the array is too large",
                            what, i, (long long)a->dims[i]);
        *per *= a->dims[i];
    }
    return KILN_OK;
}

/* The caller's array itself, or a copy of `bytes` bytes. */
static void *use_or_copy(const void *p, size_t bytes, bool borrow, kiln_diag *d) {
    if (borrow) return (void *)p;
    void *q = ir_malloc(bytes ? bytes : 1);
    if (!q) return ir_oom(d), NULL;
    if (bytes) memcpy(q, p, bytes);
    return q;
}

static kiln_status take_inputs(rt_dataset *ds, const kiln_array *x, bool borrow, kiln_diag *d) {
    int64_t per;
    kiln_status st = array_shape(x, "inputs", ds->n, &per, d);
    if (st) return st;
    if (x->type == KILN_ARRAY_I32)
        return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                        "inputs: int32 inputs are not supported; pass float32 or uint8");
    ds->sample_rank = x->rank ? x->rank : 1;
    ds->sample_dims[0] = 1;
    for (int i = 0; i < x->rank; i++) ds->sample_dims[i] = x->dims[i];
    ds->sample_size = per;
    ds->is_float = x->type == KILN_ARRAY_F32;
    ds->borrowed_x = borrow;
    size_t bytes = (size_t)(ds->n * per) * (ds->is_float ? sizeof(float) : 1);
    void *p = use_or_copy(x->data, bytes, borrow, d);
    if (!p) return KILN_ERR_NOMEM;
    if (ds->is_float) {
        ds->f32 = p;
        return check_finite_f32(ds->f32, ds->n * per, per, ds->images_path, "sample", d);
    }
    ds->u8 = p;
    return KILN_OK;
}

static kiln_status take_array_labels(rt_dataset *ds, const kiln_array *y, bool borrow,
                                     kiln_diag *d) {
    int64_t per;
    kiln_status st = array_shape(y, "labels", ds->n, &per, d);
    if (st) return st;
    int64_t n = ds->n;
    if (y->type == KILN_ARRAY_F32) {
        float *t = use_or_copy(y->data, sizeof(float) * (size_t)(n * per), borrow, d);
        return t ? rt_dataset_take_targets(ds, t, y->rank, y->dims, borrow, d) : KILN_ERR_NOMEM;
    }
    if (y->rank == 0 && y->type == KILN_ARRAY_I32) {
        ds->labels = use_or_copy(y->data, sizeof(int32_t) * (size_t)n, borrow, d);
        if (!ds->labels) return KILN_ERR_NOMEM;
        ds->borrowed_labels = borrow;
        label_range(ds);
        return KILN_OK;
    }
    /* uint8 labels, or int labels of several values per sample: as floats. */
    float *t = ir_malloc(sizeof(float) * (size_t)(n * per > 0 ? n * per : 1));
    if (!t) return ir_oom(d);
    for (int64_t i = 0; i < n * per; i++)
        t[i] = y->type == KILN_ARRAY_U8 ? (float)((const uint8_t *)y->data)[i]
                                        : (float)((const int32_t *)y->data)[i];
    return rt_dataset_take_targets(ds, t, y->rank, y->dims, false, d);
}

kiln_status rt_dataset_from_arrays(const kiln_array *x, const kiln_array *y, int64_t count,
                                   bool borrow, rt_dataset **out, kiln_diag *d) {
    *out = NULL;
    if (!x)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_dataset_from_arrays: no inputs");
    if (count < 0 || count > INT32_MAX)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "kiln_dataset_from_arrays: count %lld is not in 0..2^31-1",
                        (long long)count);
    rt_dataset *ds = ir_calloc(1, sizeof *ds);
    if (!ds) return ir_oom(d);
    ds->n = count;
    ds->images_path = ir_strdup("inputs");
    ds->labels_path = y ? ir_strdup("labels") : NULL;
    kiln_status st = !ds->images_path || (y && !ds->labels_path) ? ir_oom(d) : KILN_OK;
    if (!st) st = take_inputs(ds, x, borrow, d);
    if (!st && y) st = take_array_labels(ds, y, borrow, d);
    if (st) {
        rt_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KILN_OK;
}

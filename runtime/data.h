/*
 * data.h — datasets in the IDX format (MNIST, Fashion-MNIST), batches and the
 * seeded shuffling of the training loop.
 *
 * IDX: two zero bytes, a dtype byte, a rank byte, `rank` big-endian uint32
 * dims, then the elements, big-endian. Files may be gzipped; that is told
 * by the magic bytes, never by the name.
 *
 * Images stay in memory as they are in the file (uint8: 60000x784 = 47 MB for
 * MNIST) and become floats one batch at a time, into a buffer the caller
 * owns, so the data path allocates nothing per step.
 *
 * Every message starts with the path of the file it is about. Sample and
 * element numbers in messages count from 0, like the indices the training
 * loop uses.
 */
#ifndef KILN_RUNTIME_DATA_H
#define KILN_RUNTIME_DATA_H

#include "ir/ir.h"

/* ------------------------------------------------------------ IDX arrays */

/* Element types (the third byte of the magic). */
typedef enum rt_idx_type {
    RT_IDX_U8 = 0x08,
    RT_IDX_I8 = 0x09,
    RT_IDX_I16 = 0x0B,
    RT_IDX_I32 = 0x0C,
    RT_IDX_F32 = 0x0D,
    RT_IDX_F64 = 0x0E
} rt_idx_type;

/* A sample has at most KILN_MAX_RANK dims, plus the leading count. */
#define RT_IDX_MAX_RANK (KILN_MAX_RANK + 1)
/* Largest data part accepted, in bytes (the file must also hold it: a short
 * file is refused before anything this big is allocated). */
#define RT_IDX_MAX_BYTES ((int64_t)1 << 34)

typedef struct rt_idx {
    rt_idx_type type;
    int rank;
    int64_t dims[RT_IDX_MAX_RANK];
    int64_t count; /* product of dims */
    void *data;    /* count elements in host byte order, ir_malloc'ed */
} rt_idx;

/* Name of an element type ("uint8", "float32", ...), or "unknown". */
const char *rt_idx_type_name(int type);
size_t rt_idx_type_size(int type); /* 0 if unknown */

/* Reads an IDX file, gzipped or not. Checks the magic, the rank, the dims
 * (absurd sizes are refused before allocating), that the data is complete
 * with nothing after it, and that float data holds no NaN or Inf. On success
 * the caller frees *out with rt_idx_free(); on error *out is empty. */
kiln_status rt_idx_load(const char *path, rt_idx *out, kiln_diag *d);
/* The same from memory (tests, fuzzing); `name` is used in messages. */
kiln_status rt_idx_parse(const void *buf, size_t len, const char *name, rt_idx *out,
                         kiln_diag *d);
void rt_idx_free(rt_idx *a);
/* rt_idx_load, saying whether the data came from the decompressed copy
 * that the compile cache's directory keeps of a gzipped file inflating to
 * 1 MB or more (data.c; `hit` may be NULL). */
kiln_status rt_idx_load_cached(const char *path, rt_idx *out, bool *hit, kiln_diag *d);
/* A decompressed copy of a gzipped IDX file as the cache keeps it (its
 * header, format and checks: data.c), from memory (the fuzz target): any
 * key is taken. KILN_ERR_PARSE when it is not a whole, intact entry. */
kiln_status rt_idx_cache_decode(const void *buf, size_t len, const char *name, rt_idx *out,
                                kiln_diag *d);
/* The checksum such an entry carries for `payload` (the IDX content). */
uint64_t rt_idx_cache_checksum(const void *payload, size_t len);

/* -------------------------------------------------------------- datasets */

typedef struct rt_dataset {
    char *images_path; /* for messages */
    char *labels_path; /* NULL when loaded without labels */
    int64_t n;         /* samples */
    int sample_rank;   /* shape of one sample: the images file's dims[1..] */
    int64_t sample_dims[KILN_MAX_RANK];
    int64_t sample_size; /* values per sample */
    bool is_float;       /* images are float32 (IDX 0x0D), else uint8 */
    uint8_t *u8;         /* n * sample_size values, when !is_float */
    float *f32;          /* n * sample_size values, when is_float */
    int32_t *labels;     /* n labels (class indices), or NULL */
    int32_t label_min, label_max;
    /* Float labels (targets: regression values, 0/1, probabilities), or
     * NULL: n * target_size values. A file of float labels that are all
     * whole numbers also fills `labels`, so it can be class indices too. */
    float *targets;
    int64_t target_size;
    int target_rank; /* shape of one sample's targets */
    int64_t target_dims[KILN_MAX_RANK];
    /* The arrays (u8, f32, labels, targets) belong to the caller
     * (kiln_dataset_from_arrays with borrowing): not freed. */
    bool borrowed_x, borrowed_labels, borrowed_targets;
} rt_dataset;

/* Loads images (uint8 or float32, rank >= 2) and, when labels_path is not
 * NULL, labels (an integer IDX of rank 1, one per image). On success *out
 * is a dataset the caller frees with rt_dataset_free(); NULL on error. */
kiln_status rt_dataset_load(const char *images_path, const char *labels_path, rt_dataset **out,
                            kiln_diag *d);

typedef enum rt_split { RT_SPLIT_TRAIN, RT_SPLIT_TEST } rt_split;
/* The default data directory (Debian's dataset-fashion-mnist). */
#define RT_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
/* Loads the training (train-images-idx3-ubyte, train-labels-idx1-ubyte) or
 * test (t10k-...) split from a directory, each file with or without ".gz".
 * Same ownership as rt_dataset_load(). */
kiln_status rt_dataset_load_dir(const char *dir, rt_split split, rt_dataset **out, kiln_diag *d);
/* The same from NumPy files: `dir` may also hold x_train.npy, y_train.npy,
 * x_test.npy, y_test.npy (used when x_<split>.npy exists), or be a .npz
 * archive of these four arrays (rt_dataset_load_npz). rt_dataset_load
 * reads .npy or IDX files alike, told apart by their first bytes. */
kiln_status rt_dataset_load_npz(const char *path, rt_split split, rt_dataset **out, kiln_diag *d);
void rt_dataset_free(rt_dataset *ds);

/* Checks for the training loop, each one line naming the file:
 * every label in [0, n_classes) ... */
kiln_status rt_dataset_check_labels(const rt_dataset *ds, int64_t n_classes, kiln_diag *d);
/* How labels become the model's label tensor (GRAMMAR.md, "Labels"):
 *  - RT_Y_INDICES: an i32 label: class indices (ds->labels);
 *  - RT_Y_TARGETS: an f32 label of `size` values per sample, and the data
 *    has float labels of that size: copied as they are;
 *  - RT_Y_VALUE:   an f32 label of 1 value per sample (a binary classifier,
 *    a regression) and integer labels: the label as a float (0/1);
 *  - RT_Y_ONEHOT:  an f32 label [?, C] with C > 1 and class indices. */
typedef enum rt_y_mode { RT_Y_INDICES, RT_Y_TARGETS, RT_Y_VALUE, RT_Y_ONEHOT } rt_y_mode;
/* Picks the mode for a model whose label is i32 (sparse) or f32 with
 * `size` values per sample, and checks the labels for it (range of class
 * indices, size of targets). One line naming the labels file on error. */
kiln_status rt_dataset_y_mode(const rt_dataset *ds, bool sparse, int64_t size, rt_y_mode *mode,
                              kiln_diag *d);
/* ... and samples of `model_values` values (the model input's size per row):
 * "images are 28x28 = 784 values, the model expects 100". */
kiln_status rt_dataset_check_input(const rt_dataset *ds, int64_t model_values, kiln_diag *d);

/* A dataset of the caller's arrays (kiln_dataset_from_arrays; borrowed:
 * used in place where the layout allows, see kiln.h). Same ownership as
 * rt_dataset_load(). */
kiln_status rt_dataset_from_arrays(const kiln_array *x, const kiln_array *y, int64_t count,
                                   bool borrow, rt_dataset **out, kiln_diag *d);
/* Float labels v (ds->n samples of shape dims[0..rank)) become ds->targets
 * (owned unless borrowed; on error still the dataset's to free), checked
 * finite, and also class indices when they are whole numbers, one per
 * sample. */
/* Labels read from a NumPy file that are floats, or several integers per
 * sample (lab->dims[0] samples), as targets; lab's data may be taken. */
kiln_status rt_dataset_take_float_labels(rt_dataset *ds, rt_idx *lab, kiln_diag *d);
kiln_status rt_dataset_take_targets(rt_dataset *ds, float *v, int rank, const int64_t *dims,
                                    bool borrowed, kiln_diag *d);

/* Tabular data (csv.c): a CSV file with a header row of names and rows of
 * numbers; column `label` holds the labels (float targets, and class
 * indices when they are whole numbers), the others are the features, in
 * their order. Errors are "file:line:col: error: ..." with a caret. */
kiln_status rt_csv_parse(const void *buf, size_t len, const char *name, const char *label,
                         rt_dataset **out, kiln_diag *d);
kiln_status rt_csv_load(const char *path, const char *label, rt_dataset **out, kiln_diag *d);

/* --------------------------------------------------------------- batches
 * Fills a batch of n samples: x_out gets n * sample_size floats (uint8
 * images scaled by 1/255, float images copied); y_onehot (optional) gets
 * n * n_classes floats: the targets when the dataset has float labels of
 * n_classes values, the label itself when n_classes is 1 (RT_Y_VALUE),
 * else one-hot class indices; labels_out (optional) n labels. The short last
 * batch is the caller's: pass the n that is left. Indices and labels are
 * checked (KILN_ERR_INVALID with a message), so a bad one cannot write out
 * of bounds; nothing is allocated. */
kiln_status rt_batch_gather(const rt_dataset *ds, const int32_t *indices, int n, float *x_out,
                            float *y_onehot, int n_classes, int32_t *labels_out, kiln_diag *d);
/* The same for samples start .. start+n-1 (evaluation, no shuffling). */
kiln_status rt_batch_slice(const rt_dataset *ds, int64_t start, int n, float *x_out,
                           float *y_onehot, int n_classes, int32_t *labels_out, kiln_diag *d);

/* ------------------------------------------------------------- shuffling
 * One permutation per epoch, drawn by Fisher-Yates from the portable RNG
 * (ir_rng), so a seed gives the same order on every machine. Each epoch
 * starts from the identity, so the state below (the RNG before the current
 * permutation was drawn) is all a checkpoint needs for an exact resume. */
typedef struct rt_shuffle_state {
    uint64_t rng;    /* ir_rng state before the current permutation was drawn */
    bool drawn;      /* false: no permutation drawn yet (identity) */
} rt_shuffle_state;

typedef struct rt_shuffle {
    int32_t *perm; /* the current epoch's order, n indices */
    int64_t n;
    ir_rng rng; /* draws the next permutation */
    rt_shuffle_state st;
} rt_shuffle;

/* perm = identity, nothing drawn yet. Free with rt_shuffle_free(). */
kiln_status rt_shuffle_init(rt_shuffle *s, int64_t n, uint64_t seed, kiln_diag *d);
void rt_shuffle_free(rt_shuffle *s);
/* Draws a new epoch's permutation. */
void rt_shuffle_next(rt_shuffle *s);
/* What to save, and restoring it: the permutation is drawn again, so perm
 * and every later rt_shuffle_next() are exactly those of the saved run. */
rt_shuffle_state rt_shuffle_get_state(const rt_shuffle *s);
void rt_shuffle_set_state(rt_shuffle *s, rt_shuffle_state st);
/* Uniform integer in [0, bound), bound > 0, without modulo bias. */
uint64_t rt_rng_below(ir_rng *r, uint64_t bound);

#endif

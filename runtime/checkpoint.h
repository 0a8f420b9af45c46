/*
 * checkpoint.h — a module's globals as a safetensors checkpoint.
 *
 * Tensors are named as the IR names the globals: parameters `<layer>.kernel`
 * ([in, out], Keras' layout) and `<layer>.bias`; optimizer state
 * `optimizer.<param>.<slot>` and `optimizer.iterations` (i32[]). F32 globals
 * are stored as F32, I32 as I32, bit for bit, so a resumed run continues
 * exactly. String metadata (`__metadata__`):
 *   format "kiln", format_version "1", kiln_version, model, structure_hash
 *   (16 hex digits: rt_ckpt_structure_hash, of the parameters' names, dtypes
 *   and shapes),
 *   step, epoch, shuffle_state (16 hex digits), shuffle_drawn ("true"/"false"),
 *   plus any the caller adds.
 * Globals travel as an array of data pointers indexed by ir_global.index.
 */
#ifndef KILN_RUNTIME_CHECKPOINT_H
#define KILN_RUNTIME_CHECKPOINT_H

#include "runtime/data.h"
#include "runtime/safetensors.h"

#define RT_CKPT_FORMAT_VERSION 1

/* Where training stood when the checkpoint was written. */
typedef struct rt_ckpt_progress {
    int64_t step;  /* optimizer steps taken; -1: unknown */
    int64_t epoch; /* epochs completed; -1: unknown */
    bool has_shuffle;
    rt_shuffle_state shuffle;
} rt_ckpt_progress;

enum rt_ckpt_flags {
    /* save: refuse to write when an f32 global holds NaN or Inf (the message
     * names the first such tensor), so a good file is never replaced by it */
    RT_CKPT_REFUSE_NONFINITE = 1u << 0,
    /* save and load: parameters only, optimizer state left out / untouched */
    RT_CKPT_PARAMS_ONLY = 1u << 1,
    /* load: accept NaN and Inf in the file (refused by default) */
    RT_CKPT_ALLOW_NONFINITE = 1u << 2,
    /* load: a file with no optimizer state at all (weights only, as
     * PyTorch's state_dict or a Keras save_weights exporter writes) loads
     * its parameters and leaves the state as it is; report->weights_only
     * says so */
    RT_CKPT_STATE_OPTIONAL = 1u << 3,
};

/* Saves every global of m (globals[g->index] holds g's data) with the
 * metadata above; `progress` and `extra` may be NULL. Atomic: on any error
 * the previous file at `path` is left as it was. */
kiln_status rt_ckpt_save(const char *path, const kiln_module *m, void *const *globals,
                         const rt_ckpt_progress *progress, const rt_st_meta *extra, int n_extra,
                         unsigned flags, kiln_diag *d);

typedef enum rt_ckpt_mode {
    /* Every global of the model must be in the file with its dtype and shape
     * (optimizer state too, unless RT_CKPT_PARAMS_ONLY); a parameter in the
     * file that the model lacks is an error, optimizer state it lacks is
     * ignored (an inference model loading a training checkpoint). */
    RT_CKPT_STRICT,
    /* Loads what matches by name, dtype and shape; the rest of the model
     * keeps its values and is listed in the report. Optimizer state is
     * optional. At least one tensor must match. */
    RT_CKPT_FINETUNE
} rt_ckpt_mode;

typedef struct rt_ckpt_report {
    rt_ckpt_progress progress; /* step/epoch -1 when the file does not say */
    char *model;               /* the "model" metadata, or NULL */
    int format_version;        /* 0: a file not written by Kiln */
    bool structure_match;      /* its structure_hash is this model's */
    int n_loaded;              /* globals loaded */
    bool weights_only;         /* RT_CKPT_STATE_OPTIONAL took the parameters alone */
    char **skipped;            /* "name: reason", one per global or tensor not loaded */
    int n_skipped;
} rt_ckpt_report;

/* Loads a checkpoint into globals. Nothing is written to globals unless
 * every check passes (all or nothing). `report` may be NULL; otherwise it is
 * filled (also on error, as far as known) and freed with
 * rt_ckpt_report_free(). Messages name the file and the tensor:
 * "ckpt.safetensors: tensor 'h1.kernel' has shape [784,64], the model
 * expects [784,128]". */
kiln_status rt_ckpt_load(const char *path, const kiln_module *m, void *const *globals,
                         rt_ckpt_mode mode, unsigned flags, rt_ckpt_report *report,
                         kiln_diag *d);
/* The same from a file already loaded. */
kiln_status rt_ckpt_apply(const rt_st_file *f, const kiln_module *m, void *const *globals,
                          rt_ckpt_mode mode, unsigned flags, rt_ckpt_report *report,
                          kiln_diag *d);
void rt_ckpt_report_free(rt_ckpt_report *r);

/* A hash of the parameters' names, dtypes and shapes, independent of their
 * order (FNV-1a per parameter, summed). */
uint64_t rt_ckpt_structure_hash(const kiln_module *m);

#endif

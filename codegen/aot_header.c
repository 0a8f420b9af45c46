/*
 * aot_header.c — the C header of an AOT shared object: version, status
 * codes, inputs / outputs / labels with their shapes, memory sizes for
 * callers that bring their own memory, and the documented entry points.
 * It is C99 that compiles with -std=c99 -Wall -Wextra -Werror -pedantic
 * (tests/sh/aot_client.sh checks that).
 */
#include "codegen/aot.h"

#include <string.h>

static const char *ctype(const ir_type *t) {
    return t->dtype == IR_I32 ? "int32_t" : "float";
}

/* "batch * 784", "784" or "1": the elements of a buffer. */
static void elems(ir_sb *sb, const ir_type *t) {
    int64_t n = ir_type_static_numel(t);
    if (ir_type_batch_axis(t) >= 0)
        ir_sb_printf(sb, "batch * %lld", (long long)n);
    else
        ir_sb_printf(sb, "%lld", (long long)n);
}

/* The macros of one buffer: KIND<i>_NAME, _DTYPE, _RANK, _SHAPE, _SIZE. */
static void buffer_macros(ir_sb *sb, const char *P, const char *kind, int i, const char *name,
                          const ir_type *t) {
    ir_sb_printf(sb, "#define %s_%s%d_NAME \"%s\"\n", P, kind, i, name);
    ir_sb_printf(sb, "#define %s_%s%d_DTYPE \"%s\"\n", P, kind, i,
                 ir_dtype_name((ir_dtype)t->dtype));
    ir_sb_printf(sb, "#define %s_%s%d_RANK %d\n", P, kind, i, t->rank);
    ir_sb_printf(sb, "#define %s_%s%d_SHAPE {", P, kind, i);
    for (int r = 0; r < t->rank; r++)
        ir_sb_printf(sb, "%s%lld", r ? ", " : "",
                     (long long)(t->dims[r] == KILN_BATCH ? -1 : t->dims[r]));
    ir_sb_printf(sb, "%s} /* -1: the batch */\n", t->rank ? "" : "0");
    ir_sb_printf(sb, "#define %s_%s%d_BATCHED %d\n", P, kind, i, ir_type_batch_axis(t) >= 0);
    ir_sb_printf(
        sb, "#define %s_%s%d_SIZE %lld /* elements per sample (or in all when not batched) */\n", P,
        kind, i, (long long)ir_type_static_numel(t));
}

/* The parameter list of an entry's prototype after (m, batch). */
static void params(ir_sb *sb, const aot_entry *e) {
    const kiln_func *f = e->f;
    for (int i = 0; i < f->n_args; i++)
        ir_sb_printf(sb, ", const %s *%s", ctype(&f->args[i]->type), e->names[i]);
    for (int i = 0; i < f->n_results; i++)
        ir_sb_printf(sb, ", %s *%s", ctype(&f->results[i]->type), e->names[f->n_args + i]);
}

/* " *   x    const float[batch * 784]  (f32[?,784])" lines. */
static void param_doc(ir_sb *sb, const aot_entry *e) {
    const kiln_func *f = e->f;
    for (int i = 0; i < f->n_args + f->n_results; i++) {
        bool in = i < f->n_args;
        const ir_type *t = in ? &f->args[i]->type : &f->results[i - f->n_args]->type;
        char tb[IR_TYPE_STR_MAX];
        ir_sb_printf(sb, " *   %-10s %s%s[", e->names[i], in ? "const " : "", ctype(t));
        elems(sb, t);
        ir_sb_printf(sb, "]  (%s, %s)\n", ir_type_str(t, tb, sizeof tb), in ? "read" : "written");
    }
}

static void entry_decl(ir_sb *sb, const aot_plan *pl, const aot_entry *e, const char *doc) {
    ir_sb_printf(sb, "/* %s\n", doc);
    param_doc(sb, e);
    ir_sb_printf(sb,
                 " * 0 <= batch <= the handle's max_batch; the buffers must not overlap each\n"
                 " * other or the handle. Allocates nothing. Returns %s_OK, or\n"
                 " * %s_ERR_INVALID / %s_ERR_LIMIT with %s_last_error(m) saying why. */\n",
                 pl->P, pl->P, pl->P, pl->p);
    ir_sb_printf(sb, "int %s_%s(%s_model *m, int64_t batch", pl->p, e->c, pl->p);
    params(sb, e);
    ir_sb_puts(sb, ");\n\n");
}

/* The comment that says how to use the library, the guard, the version. */
static void header_intro(const aot_plan *pl, ir_sb *sb) {
    const char *p = pl->p, *P = pl->P;
    const cg_aot_options *o = pl->o;
    unsigned v = pl->version;

    ir_sb_printf(
        sb,
        "/*\n"
        " * %s.h -- the C interface of a model compiled ahead of time by Kiln %u.%u.%u\n"
        " * (`kiln compile`) from model '%s'. Generated: do not edit, regenerate.\n"
        " *\n"
        " * The shared object needs OpenBLAS and libm at run time, neither LLVM nor Kiln.\n"
        " * Use:\n"
        " *   char msg[256];\n"
        " *   %s_model *m;\n"
        " *   if (%s_check_version(%s_KILN_VERSION_NUM, msg, sizeof msg) != %s_OK)\n"
        " *       { fputs(msg, stderr); exit(1); }\n"
        " *   if (%s_create(max_batch, &m) != %s_OK) ...\n",
        p, v >> 16, (v >> 8) & 255, v & 255, pl->m->name, p, p, P, P, p, P);
    if (!o->embed)
        ir_sb_printf(sb,
                     " *   if (%s_load(m, \"weights.safetensors\") != %s_OK)\n"
                     " *       fprintf(stderr, \"%%s\\n\", %s_last_error(m));\n",
                     p, P, p);
    ir_sb_printf(sb,
                 " *   %s_infer(m, batch, ...);\n"
                 " *   %s_destroy(m);\n"
                 " * A handle holds the weights%s and the workspace: calls allocate nothing.\n"
                 " * One thread at a time per handle; handles are independent.\n"
                 " */\n",
                 p, p, o->train ? ", the optimizer state" : "");
    ir_sb_printf(sb, "#ifndef %s_H_INCLUDED\n#define %s_H_INCLUDED\n\n", P, P);
    ir_sb_puts(sb, "#include <stddef.h>\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" "
                   "{\n#endif\n\n");

    ir_sb_printf(sb,
                 "/* The Kiln that generated this header; the library must come from the same. */\n"
                 "#define %s_KILN_VERSION \"%u.%u.%u\"\n"
                 "#define %s_KILN_VERSION_NUM 0x%06xu /* (major << 16) | (minor << 8) | patch */\n"
                 "#define %s_MODEL_NAME \"%s\"\n"
                 "#define %s_WEIGHTS_EMBEDDED %d /* 0: call %s_load before running the model */\n"
                 "#define %s_HAS_EVALUATE %d\n"
                 "#define %s_HAS_TRAIN %d\n\n",
                 P, v >> 16, (v >> 8) & 255, v & 255, P, v, P, pl->m->name, P, o->embed ? 1 : 0, p,
                 P, pl->evaluate != NULL, P, pl->train != NULL);
}

/* The status codes, the buffers' sizes, the handle's memory. */
static void header_macros(const aot_plan *pl, ir_sb *sb) {
    const char *p = pl->p, *P = pl->P;
    const cg_aot_options *o = pl->o;
    const kiln_func *inf = pl->infer->f;
    const aot_entry *lab = pl->train ? pl->train : pl->evaluate; /* where the labels come from */

    ir_sb_printf(sb,
                 "/* Status codes: every entry point returns one (the numbers of kiln_status). */\n"
                 "#define %s_OK 0\n"
                 "/* A bad argument (NULL pointer, negative batch, misaligned or short memory),\n"
                 " * a label out of range, no weights yet, or a malformed checkpoint file. */\n"
                 "#define %s_ERR_INVALID 1\n"
                 "/* A checkpoint tensor missing, not in the model, or of another dtype/shape. */\n"
                 "#define %s_ERR_SHAPE 2\n"
                 "/* A file could not be opened, read or written. */\n"
                 "#define %s_ERR_IO 4\n"
                 "/* An allocation failed (%s_create, %s_load%s%s%s). */\n"
                 "#define %s_ERR_NOMEM 5\n"
                 "/* NaN or Inf in a checkpoint being loaded%s. */\n"
                 "#define %s_ERR_NONFINITE 8\n"
                 "/* batch above the handle's max_batch, or max_batch above %s_MAX_BATCH. */\n"
                 "#define %s_ERR_LIMIT 9\n"
                 "/* The library and this header come from different Kiln versions. */\n"
                 "#define %s_ERR_VERSION 10\n\n",
                 P, P, P, P, p, p, o->train ? ", " : "", o->train ? p : "", o->train ? "_save" : "",
                 P, o->train ? " or in weights being saved" : "", P, P, P, P);

    ir_sb_printf(
        sb, "/* Inputs of %s_infer (and the first arguments of the other entry points). */\n", p);
    ir_sb_printf(sb, "#define %s_INPUT_COUNT %d\n", P, inf->n_args);
    for (int i = 0; i < inf->n_args; i++)
        buffer_macros(sb, P, "INPUT", i, inf->args[i]->name, &inf->args[i]->type);
    if (inf->n_args == 1) ir_sb_printf(sb, "#define %s_INPUT_SIZE %s_INPUT0_SIZE\n", P, P);
    ir_sb_printf(sb, "\n/* Outputs of %s_infer. */\n#define %s_OUTPUT_COUNT %d\n", p, P,
                 inf->n_results);
    for (int i = 0; i < inf->n_results; i++)
        buffer_macros(sb, P, "OUTPUT", i, pl->infer->names[inf->n_args + i],
                      &inf->results[i]->type);
    if (inf->n_results == 1) ir_sb_printf(sb, "#define %s_OUTPUT_SIZE %s_OUTPUT0_SIZE\n", P, P);
    if (lab) {
        const kiln_func *f = lab->f;
        int nl = f->n_args - inf->n_args;
        ir_sb_printf(
            sb,
            "\n/* Labels: the arguments of %s_%s after the inputs. */\n#define %s_LABEL_COUNT %d\n",
            p, lab->c, P, nl);
        for (int i = 0; i < nl; i++)
            buffer_macros(sb, P, "LABEL", i, f->args[inf->n_args + i]->name,
                          &f->args[inf->n_args + i]->type);
        if (nl == 1) ir_sb_printf(sb, "#define %s_LABEL_SIZE %s_LABEL0_SIZE\n", P, P);
    }

    ir_sb_printf(
        sb,
        "\n/* Memory of a handle for callers that bring their own (%s_init): %s_SIZE(max_batch)\n"
        " * bytes aligned to %s_ALIGN. The weights%s live in it, then the workspace. */\n"
        "#define %s_MAX_BATCH %lld\n"
        "#define %s_ALIGN %d\n"
        "#define %s_WEIGHTS_BYTES %lld\n"
        "#define %s_WORKSPACE_FIXED %lld\n"
        "#define %s_WORKSPACE_PER_SAMPLE %lld\n"
        "#define %s_SIZE_FIXED %lld\n"
        "#define %s_SIZE(max_batch) \\\n"
        "    ((size_t)%s_SIZE_FIXED + (size_t)%s_WORKSPACE_PER_SAMPLE * (size_t)(max_batch))\n\n",
        p, P, P, o->train ? " and optimizer state" : "", P, (long long)pl->max_batch, P, AOT_ALIGN,
        P, (long long)pl->state_bytes, P, (long long)pl->ws_fixed, P, (long long)pl->ws_ps, P,
        (long long)(pl->ws_off + pl->ws_fixed), P, P, P);

}

/* The entry points. */
static void header_decls(const aot_plan *pl, ir_sb *sb) {
    const char *p = pl->p, *P = pl->P;
    const cg_aot_options *o = pl->o;

    ir_sb_printf(sb,
                 "/* A compiled model with its weights and workspace. */\ntypedef struct %s_model "
                 "%s_model;\n\n",
                 p, p);
    ir_sb_printf(
        sb,
        "/* The Kiln version that built the library, as %s_KILN_VERSION_NUM. */\n"
        "uint32_t %s_abi_version(void);\n\n"
        "/* Call first, with %s_KILN_VERSION_NUM: %s_OK, or %s_ERR_VERSION when the library\n"
        " * comes from another Kiln version; then, if msg != NULL and size > 0, msg holds\n"
        " *   \"%s: version mismatch: the library was built by Kiln A.B.C, the header by\n"
        " *   Kiln X.Y.Z; regenerate both with the same 'kiln compile'\" */\n"
        "int %s_check_version(uint32_t header_version, char *msg, size_t size);\n\n"
        "/* A constant description of a status code (\"shape mismatch\", ...). */\n"
        "const char *%s_status_string(int status);\n\n",
        P, p, P, P, P, p, p, p);
    ir_sb_printf(
        sb,
        "/* Bytes a handle for batches up to max_batch needs (%s_SIZE(max_batch));\n"
        " * 0 when max_batch is not in [1, %s_MAX_BATCH]. */\n"
        "size_t %s_size(int64_t max_batch);\n\n"
        "/* Makes a handle in caller memory: mem aligned to %s_ALIGN, size >= %s_size(max_batch).\n"
        " * %s%s%s. The handle must not be copied or moved;\n"
        " * %s_destroy only invalidates it, the memory stays the caller's.\n"
        " * %s_OK, %s_ERR_INVALID (out NULL, mem NULL or misaligned, size short, max_batch < 1)\n"
        " * or %s_ERR_LIMIT (max_batch > %s_MAX_BATCH). */\n"
        "int %s_init(void *mem, size_t size, int64_t max_batch, %s_model **out);\n\n"
        "/* The same in memory it allocates. Every successful call should be paired with\n"
        " * %s_destroy(). Also %s_ERR_NOMEM. */\n"
        "int %s_create(int64_t max_batch, %s_model **out);\n"
        "void %s_destroy(%s_model *m);\n\n"
        "/* The message of the last failed call on m (\"\" before any); owned by m. */\n"
        "const char *%s_last_error(const %s_model *m);\n\n",
        P, P, p, P, p, o->embed ? "The weights are the embedded ones" : "It has no weights until ",
        o->embed ? "" : p, o->embed ? "" : "_load", p, P, P, P, P, p, p, p, P, p, p, p, p, p, p);
    ir_sb_printf(
        sb,
        "/* Loads weights%s from a safetensors checkpoint (Kiln's format: `kiln train\n"
        " * --save`%s%s%s). Every name, dtype, shape and offset is checked before anything\n"
        " * changes, and NaN / Inf are refused: on an error the handle keeps its weights.\n"
        " * %s_OK, %s_ERR_INVALID, _SHAPE, _IO, _NOMEM or _NONFINITE. */\n"
        "int %s_load(%s_model *m, const char *path);\n\n",
        o->train ? " and optimizer state" : "", o->train ? ", " : "", o->train ? p : "",
        o->train ? "_save" : "", P, P, p, p);
    entry_decl(sb, pl, pl->infer, "Runs the model on `batch` samples:");
    if (pl->evaluate)
        entry_decl(sb, pl, pl->evaluate,
                   "Mean loss (and accuracy, when the model has the metric) of `batch` samples:");
    if (pl->train) {
        entry_decl(sb, pl, pl->train,
                   "One optimizer step on `batch` samples; writes the batch's mean loss (and\n"
                   " * accuracy) from before the update. A NaN or Inf loss means the weights\n"
                   " * are no longer finite (restart from a checkpoint):");
        ir_sb_printf(
            sb,
            "/* Saves the weights and optimizer state as a safetensors checkpoint with the\n"
            " * runtime's tensor names (`kiln eval --load` and `kiln train --load` read it).\n"
            " * Atomic: written to a temporary file beside PATH and renamed, so a crash keeps\n"
            " * the old file.\n"
            " * Refuses NaN / Inf weights (%s_ERR_NONFINITE). */\n"
            "int %s_save(%s_model *m, const char *path);\n\n",
            P, p, p);
    }
}

kiln_status aot_header(const aot_plan *pl, ir_sb *sb, kiln_diag *d) {
    header_intro(pl, sb);
    header_macros(pl, sb);
    header_decls(pl, sb);
    const char *P = pl->P;
    ir_sb_puts(sb, "#ifdef __cplusplus\n}\n#endif\n\n");
    ir_sb_printf(sb, "#endif /* %s_H_INCLUDED */\n", P);
    return sb->oom ? ir_oom(d) : KILN_OK;
}

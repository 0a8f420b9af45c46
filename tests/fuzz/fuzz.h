/*
 * fuzz.h — what the fuzz targets share: the libFuzzer entry points and the
 * checks every target makes on every input.
 *
 * A target is one function, LLVMFuzzerTestOneInput, linked either with
 * libFuzzer (-fsanitize=fuzzer, `tests/fuzz/run.sh NAME MINUTES`) or with
 * replay.c, a small main that runs it over every file of a corpus (the
 * normal test suite does that, with gcc or clang, sanitizers or not).
 *
 * Besides not crashing, a target checks what the loaders promise:
 *  - a status and an output that agree (KILN_OK and an object, or an error
 *    and nothing),
 *  - an error that says something: at least one error counted and a message
 *    whose lines each start "NAME:" or "kiln: error:" (or are the source
 *    line and caret under a positioned error),
 *  - no leak: every block the library allocated for the input is freed again
 *    (kiln_test_alloc_live, so a build without LeakSanitizer checks it too).
 * A broken promise prints what broke and aborts, which both libFuzzer and
 * the replay driver report as a failure with the input that caused it.
 */
#ifndef KILN_FUZZ_H
#define KILN_FUZZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "kiln/kiln.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The message of a failed call: errors counted, and every line either
 * "<file>:..." / "kiln: error: ..." / "kiln: note: ..." or the indented
 * source line and caret that follow a positioned error. `file` NULL: any
 * "<where>: error: ..." line (passes name the model file a node came from,
 * whatever file the module was read from). */
static inline void fuzz_check_error(kiln_status st, const kiln_diag *d, const char *file) {
    const char *msg = kiln_diag_message(d);
    FUZZ_CHECK(st != KILN_OK, "not an error");
    FUZZ_CHECK(kiln_diag_error_count(d) > 0, "status %d (%s) without an error message", (int)st,
               kiln_status_string(st));
    FUZZ_CHECK(*msg, "status %d (%s) with an empty message", (int)st, kiln_status_string(st));
    size_t flen = file ? strlen(file) : 0;
    for (const char *line = msg; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        int named = file ? n > flen && memcmp(line, file, flen) == 0 && line[flen] == ':'
                         : memmem(line, n, ": error: ", 9) || memmem(line, n, ": note: ", 8);
        int ok = named || (n >= 6 && memcmp(line, "kiln: ", 6) == 0) ||
                 (n >= 4 && memcmp(line, "    ", 4) == 0);
        FUZZ_CHECK(ok, "a message line names neither the file nor kiln:\n%s", msg);
        line += n + (end ? 1 : 0);
    }
    FUZZ_CHECK(msg[strlen(msg) - 1] == '\n', "the message does not end its line:\n%s", msg);
}

/* Live blocks before and after one input must match. */
static inline void fuzz_check_no_leak(long before, const char *what) {
    long after = kiln_test_alloc_live();
    FUZZ_CHECK(after == before, "%s leaked %ld blocks", what, after - before);
}

/* A module's .kir text must parse back to a module that prints the same
 * (the printer and the parser round-trip exactly). Returns the text, which
 * the caller frees with kiln_free. */
static inline char *fuzz_check_roundtrip(const kiln_module *m, const char *what) {
    char *text = kiln_module_print(m);
    FUZZ_CHECK(text, "%s: printing failed", what);
    kiln_diag *d = kiln_diag_create();
    kiln_module *back = NULL;
    kiln_status st = kiln_module_parse(text, strlen(text), "roundtrip.kir", &back, d);
    FUZZ_CHECK(st == KILN_OK, "%s: the printed module does not parse back:\n%s\n--- text:\n%s",
               what, kiln_diag_message(d), text);
    char *again = kiln_module_print(back);
    FUZZ_CHECK(again && strcmp(text, again) == 0,
               "%s: print(parse(print(m))) differs from print(m):\n--- first:\n%s\n--- second:\n%s",
               what, text, again ? again : "(null)");
    kiln_free(again);
    kiln_module_dispose(back);
    kiln_diag_dispose(d);
    return text;
}

/* ---- running what was parsed, when it is small ---- */

typedef struct fuzz_size {
    int64_t batch, cap;
    bool small;
} fuzz_size;

/* The promises of a parser: an error comes with a positioned message and
 * no module; success with a module that verifies and round-trips. Returns
 * the module (NULL after an error) for the target's own checks. */
static inline kiln_module *fuzz_check_parsed(kiln_status st, kiln_module *m, const kiln_diag *d,
                                             const char *file, const char *what) {
    if (st) {
        FUZZ_CHECK(!m, "an error (%s) with a module", kiln_status_string(st));
        fuzz_check_error(st, d, file);
        return NULL;
    }
    FUZZ_CHECK(m, "KILN_OK without a module");
    FUZZ_CHECK(kiln_diag_error_count(d) == 0, "KILN_OK with errors:\n%s", kiln_diag_message(d));
    kiln_diag *v = kiln_diag_create();
    FUZZ_CHECK(kiln_module_verify(m, v) == KILN_OK, "the module does not verify:\n%s",
               kiln_diag_message(v));
    kiln_diag_dispose(v);
    kiln_free(fuzz_check_roundtrip(m, what));
    return m;
}

static inline void fuzz_size_node(ir_node *n, void *ctx) {
    fuzz_size *z = ctx;
    if (n->type.dtype != IR_VOID && ir_type_numel(&n->type, z->batch) > z->cap) z->small = false;
}

/* Runs every function of m in the interpreter on a batch of 2 (arguments
 * zero, globals from their initializers), as `kiln train --backend interp`
 * would, when every value has at most 2^16 elements (so a run is quick): it
 * may fail, with a message, but never crash or leak. A planned function
 * runs in its planned workspace, which the parser bounded by what its
 * values need. */
static inline void fuzz_interp_all(kiln_module *m) {
    fuzz_size z = {2, 1 << 16, true};
    for (int i = 0; i < m->n_globals && z.small; i++)
        if (ir_type_numel(&m->globals[i]->type, 1) > z.cap) z.small = false;
    for (int i = 0; i < m->n_funcs && z.small; i++) {
        kiln_func *f = m->funcs[i];
        for (int k = 0; k < f->n_args; k++) fuzz_size_node(f->args[k], &z);
        ir_func_walk(f, fuzz_size_node, &z);
    }
    if (!z.small) return;
    void **globals = calloc((size_t)m->n_globals + 1, sizeof *globals);
    FUZZ_CHECK(globals, "out of memory");
    kiln_diag *d = kiln_diag_create();
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        globals[g->index] = calloc((size_t)ir_type_numel(&g->type, 1) + 1, 4);
        FUZZ_CHECK(globals[g->index], "out of memory");
        kiln_status st = ir_global_init(g, 1, globals[g->index], d);
        FUZZ_CHECK(st == KILN_OK, "initializing '%s' failed:\n%s", g->name, kiln_diag_message(d));
    }
    for (int i = 0; i < m->n_funcs; i++) {
        kiln_func *f = m->funcs[i];
        void **args = calloc((size_t)f->n_args + 1, sizeof *args);
        void **res = calloc((size_t)f->n_results + 1, sizeof *res);
        FUZZ_CHECK(args && res, "out of memory");
        for (int k = 0; k < f->n_args; k++)
            args[k] = calloc((size_t)ir_type_numel(&f->args[k]->type, z.batch) + 1, 4);
        for (int k = 0; k < f->n_results; k++)
            res[k] = calloc((size_t)ir_type_numel(&f->results[k]->type, z.batch) + 1, 4);
        kiln_diag_clear(d);
        kiln_status st = ir_interp_run(f, z.batch, args, res, globals, d);
        if (st) fuzz_check_error(st, d, NULL);
        for (int k = 0; k < f->n_args; k++) free(args[k]);
        for (int k = 0; k < f->n_results; k++) free(res[k]);
        free(args);
        free(res);
    }
    for (int i = 0; i < m->n_globals; i++) free(globals[i]);
    free(globals);
    kiln_diag_dispose(d);
}

/* Runs the pipeline kiln_model_create would run ("train" for a module that
 * can train, else "infer"); an error must come with a message, a success
 * must still verify and round-trip. */
static inline void fuzz_run_pipeline(kiln_module *m) {
    if (kiln_module_func(m, "train_step")) return; /* already through "train" */
    const char *pipeline =
        kiln_module_func(m, "loss") && m->train.present && m->train.opt.kind != IR_OPT_NONE
            ? "train"
            : "infer";
    kiln_diag *d = kiln_diag_create();
    kiln_status st = kiln_module_run_passes(m, pipeline, NULL, d);
    if (st) {
        fuzz_check_error(st, d, NULL);
    } else {
        kiln_diag *v = kiln_diag_create();
        kiln_status vs = kiln_module_verify(m, v);
        FUZZ_CHECK(vs == KILN_OK, "the '%s' pipeline left a module that does not verify:\n%s",
                   pipeline, kiln_diag_message(v));
        kiln_diag_dispose(v);
        kiln_free(fuzz_check_roundtrip(m, pipeline));
        fuzz_interp_all(m);
    }
    kiln_diag_dispose(d);
}

#endif

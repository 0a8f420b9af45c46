/*
 * frontend.c — the entry points: model-file text (or a path) in, a verified
 * module out. Parsing and building report into a diag of their own, so the
 * status of the first error here is exact even when the caller's diag
 * already holds messages; the text is then appended to the caller's.
 */
#include "frontend/build.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void fe_diag_move(kiln_diag *from, kiln_diag *to, kiln_status st, const char *what) {
    if (!to || !st) return;
    if (!from->errors || from->text.oom || !from->text.buf) {
        /* The message was lost (out of memory): the status still tells. */
        if (st == KILN_ERR_NOMEM)
            ir_oom(to);
        else
            ir_error(to, st, ir_loc_none(), "%s: %s", what, kiln_status_string(st));
        return;
    }
    if (!to->errors) to->first = from->first;
    to->errors += from->errors;
    ir_sb_putn(&to->text, from->text.buf, from->text.len);
}

kiln_status fe_parse_model(const char *text, size_t len, const char *filename, kiln_module **out,
                           kiln_diag *d) {
    if (out) *out = NULL;
    if (!out || (!text && len))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_file_parse: bad argument");
    const char *file = filename ? filename : "<input>";
    if (len > FE_MAX_FILE_BYTES)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(),
                        "%s: a model file may hold at most %zu MiB", file, FE_MAX_FILE_BYTES >> 20);
    fe_source src = {text ? text : "", len, file};
    kiln_diag mine;
    memset(&mine, 0, sizeof mine);
    fe_ast ast;
    kiln_status st = fe_parse(&src, &ast, &mine);
    if (!st) st = fe_build_module(&src, &ast, out, &mine);
    fe_ast_free(&ast);
    fe_diag_move(&mine, d, st, "model file");
    ir_sb_free(&mine.text);
    return st;
}

kiln_status kiln_model_file_parse(const char *text, size_t len, const char *filename,
                                  kiln_module **out, kiln_diag *d) {
    return fe_parse_model(text, len, filename, out, d);
}

/* Reads at most FE_MAX_FILE_BYTES + 1 bytes: a bigger file is refused
 * without reading it all into memory. */
static kiln_status read_model_file(const char *path, char **text, size_t *len, kiln_diag *d) {
    kiln_status st = ir_read_file_max(path, FE_MAX_FILE_BYTES, text, len, d);
    if (st == KILN_ERR_LIMIT)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: a model file may hold at most %zu MiB",
                        path, FE_MAX_FILE_BYTES >> 20);
    return st;
}

kiln_status kiln_model_file_load(const char *path, kiln_module **out, kiln_diag *d) {
    if (out) *out = NULL;
    if (!path || !out)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "kiln_model_file_load: bad argument");
    char *text;
    size_t len;
    kiln_status st = read_model_file(path, &text, &len, d);
    if (st) return st;
    st = fe_parse_model(text, len, path, out, d);
    ir_free(text);
    return st;
}

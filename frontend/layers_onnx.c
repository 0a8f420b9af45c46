/*
 * layers_onnx.c — a pretrained ONNX model as a layer of a model file:
 *
 *   body = onnx(x, "convnet.onnx", output="/fc1/Relu_output_0", trainable=false)
 *   head = dense(body, 10, activation=softmax)
 *
 * The graph of the file (its path relative to the model file) is built on
 * x, cut at the ONNX value `output` (default: the graph's one output): only
 * the nodes that compute it are imported (frontend/onnx.c, ox_import_into),
 * and the initializers they use become parameters under their ONNX names,
 * holding the file's weights. `trainable=false` freezes all of them;
 * `freeze=["conv1.*", "fc1.weight"]` freezes those whose names match one of
 * the globs (each glob must match one). Messages of the importer get the
 * place of the call (of the `output=` argument when that name is unknown).
 */
#include "frontend/build.h"
#include "frontend/onnx.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The path of `file` as written in the model file: relative to the model
 * file's directory (the file name of messages), absolute as it is. */
static char *resolve(const fe_build *c, const char *file) {
    const char *slash = strrchr(c->src->file, '/');
    size_t dir = file[0] == '/' || !slash ? 0 : (size_t)(slash - c->src->file) + 1;
    char *p = ir_malloc(dir + strlen(file) + 1);
    if (!p) return NULL;
    memcpy(p, c->src->file, dir);
    strcpy(p + dir, file);
    return p;
}

/* The importer's messages (without a place) at line:col of the model file. */
static kiln_status relay(fe_build *c, kiln_diag *mine, kiln_status st, int line, int col) {
    const char *t = mine->text.buf ? mine->text.buf : "";
    const char *pre = "kiln: error: ";
    ir_loc loc = {c->file, line, col};
    if (!*t) ir_error(c->d, st, loc, "%s", kiln_status_string(st));
    while (*t) {
        const char *nl = strchr(t, '\n');
        size_t n = nl ? (size_t)(nl - t) : strlen(t);
        if (n >= strlen(pre) && !memcmp(t, pre, strlen(pre))) {
            ir_error(c->d, st, loc, "%.*s", (int)(n - strlen(pre)), t + strlen(pre));
        } else { /* placed already (a builder's message at the call) */
            if (!c->d->errors++) c->d->first = st;
            ir_sb_putn(&c->d->text, t, n);
            ir_sb_putc(&c->d->text, '\n');
        }
        t += n + (nl ? 1 : 0);
    }
    fe_show_line(c->src, c->d, line, col);
    return st;
}

static kiln_status get_string(fe_build *c, const fe_expr *e, const char *what, const char *eg) {
    char b[64];
    if (e->kind == FE_E_STRING && *e->name) return KILN_OK;
    return fe_err(c, KILN_ERR_INVALID, e->line, e->col, "'%s' must be a string such as %s, got %s",
                  what, eg, e->kind == FE_E_STRING ? "\"\"" : fe_expr_str(e, b, sizeof b));
}

/* Freezes the parameters of globals [first, n) that glob pattern e matches;
 * one that matches none is an error naming the closest parameter. */
static kiln_status freeze(fe_build *c, const fe_expr *e, int first) {
    kiln_status st = get_string(c, e, "freeze", "\"conv1.*\" (or a list of them)");
    if (st) return st;
    kiln_module *m = c->m;
    int hits = 0;
    for (int k = first; k < m->n_globals; k++)
        if (fnmatch(e->name, m->globals[k]->name, 0) == 0) {
            m->globals[k]->trainable = false;
            hits++;
        }
    if (hits) return KILN_OK;
    const char **names = ir_malloc(sizeof *names * (size_t)(m->n_globals - first + 1));
    if (!names) return ir_oom(c->d);
    for (int k = first; k < m->n_globals; k++) names[k - first] = m->globals[k]->name;
    char sug[FE_MAX_NAME + 64];
    const char *dym = fe_did_you_mean(e->name, names, m->n_globals - first, sug, sizeof sug);
    st = fe_err(c, KILN_ERR_INVALID, e->line, e->col,
                "freeze: \"%.200s\" matches none of the %d imported parameters%s", e->name,
                m->n_globals - first, dym);
    ir_free(names);
    return st;
}

kiln_status fe_onnx_call(fe_build *c, const layer_spec *ls, const fe_expr **v, ir_node **x,
                         const char *name, ir_node **out) {
    int line = c->b.loc.line, col = c->b.loc.col;
    bool trainable = true;
    kiln_status st = get_string(c, v[1], "file", "\"model.onnx\"");
    if (!st && v[2]) st = get_string(c, v[2], "output", "\"/fc1/Relu_output_0\"");
    if (!st && v[3]) st = fe_get_bool(c, v[3], "trainable", &trainable);
    const fe_expr *fz = v[4];
    if (!st && fz && fz->kind == FE_E_LIST && !fz->n_items)
        fz = NULL; /* freeze=[]: nothing */
    if (st) return st;
    char *path = resolve(c, v[1]->name);
    if (!path) return ir_oom(c->d);
    struct stat sb;
    char *bytes = NULL;
    size_t len = 0;
    kiln_diag mine;
    memset(&mine, 0, sizeof mine);
    int rc = stat(path, &sb), err = errno;
    if (rc != 0 || !S_ISREG(sb.st_mode)) {
        st = fe_err(c, KILN_ERR_IO, v[1]->line, v[1]->col, "cannot read ONNX file '%s': %s",
                    path, rc != 0 ? strerror(err) : "not a regular file");
    } else if ((uint64_t)sb.st_size > OX_MAX_FILE_BYTES) { /* refused before reading */
        st = fe_err(c, KILN_ERR_LIMIT, v[1]->line, v[1]->col,
                    "ONNX file '%s' is larger than 2 GiB", path);
    } else if ((st = ir_read_file_max(path, OX_MAX_FILE_BYTES, &bytes, &len, &mine))) {
        st = fe_err(c, st, v[1]->line, v[1]->col, "cannot read ONNX file '%s'%s", path,
                    st == KILN_ERR_LIMIT ? ": larger than 2 GiB" : "");
    }
    ir_free(path);
    if (st) {
        ir_sb_free(&mine.text);
        return st;
    }
    int first = c->m->n_globals;
    ox_embed e = {v[2] ? v[2]->name : NULL, NULL, false, false};
    st = ox_import_into(bytes, len, v[1]->name, &c->b, x[0], &e, &mine);
    ir_free(bytes);
    if (st) {
        const fe_expr *at = e.bad_output ? v[2] : e.bad_input ? v[0] : NULL;
        st = relay(c, &mine, st, at ? at->line : line, at ? at->col : col);
    }
    ir_sb_free(&mine.text);
    if (st) return st;
    for (int k = first; k < c->m->n_globals && !trainable; k++) c->m->globals[k]->trainable = false;
    if (fz && fz->kind == FE_E_LIST) {
        for (const fe_expr *it = fz->items; it && !st; it = it->next) st = freeze(c, it, first);
    } else if (fz) {
        st = freeze(c, fz, first);
    }
    if (st) return st;
    int64_t params = 0;
    for (int k = first; k < c->m->n_globals; k++) params += ir_type_static_numel(&c->m->globals[k]->type);
    return fe_expanded(c, fe_layer_row(&c->b, name, FE_ONNX, e.out, params, out));
}

/*
 * csv.c — tabular data: a strict, small CSV reader (RFC 4180 commas, LF or
 * CRLF line ends, a header row of column names, quoted or not, then rows of
 * plain decimal numbers, one of them the label column).
 *
 * Two passes over the mapped file: the first checks that every row has the
 * header's number of fields (so the arrays are allocated once, at their
 * exact size, which the file's length bounds), the second reads the numbers.
 * Every error is "file:line:col: error: ..." with the line and a caret.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data.h"
#include "runtime/npy.h"

#define CSV_MAX_COLS 100000
#define CSV_MAX_NAME 256

typedef struct csv {
    const char *p, *end, *line; /* text, its end, the current line's start */
    int32_t line_no;
    const char *name;
    kiln_diag *d;
} csv;

static const char *line_end(const csv *c, const char *s) {
    const char *e = memchr(s, '\n', (size_t)(c->end - s));
    return e ? e : c->end;
}

static kiln_status csv_err(csv *c, const char *at, kiln_status st, const char *fmt,
                           const char *detail) {
    ir_loc loc = {c->name, c->line_no, (int32_t)(at - c->line) + 1};
    ir_error(c->d, st, loc, fmt, detail);
    const char *e = line_end(c, c->line);
    if (e > c->line && e[-1] == '\r') e--;
    size_t n = (size_t)(e - c->line);
    ir_diag_source_line(c->d, c->line, n > 200 ? 200 : n, (int)(at - c->line) + 1);
    return st;
}

/* The bounds of the field at *s (quotes kept), advancing *s past it and
 * its comma; *last is set at the end of the line. */
static void next_field(csv *c, const char **s, const char **fb, const char **fe, bool *last) {
    const char *e = line_end(c, *s), *q = *s;
    bool quoted = false;
    while (q < e && (*q != ',' || quoted)) {
        if (*q == '"') quoted = !quoted;
        q++;
    }
    *fb = *s;
    *fe = q;
    if (*fe > *fb && *fe == e && (*fe)[-1] == '\r') (*fe)--;
    *last = q >= e;
    *s = q < e ? q + 1 : e;
}

/* Fields of the line at c->line (the first pass). */
static int64_t count_fields(csv *c) {
    const char *s = c->line, *fb, *fe;
    bool last = false;
    int64_t n = 0;
    while (!last) {
        next_field(c, &s, &fb, &fe, &last);
        n++;
    }
    return n;
}

static void trim(const char **b, const char **e) {
    while (*b < *e && (**b == ' ' || **b == '\t')) (*b)++;
    while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

/* A plain decimal number: [+-] digits [. digits] [e [+-] digits]. */
static kiln_status parse_number(csv *c, const char *b, const char *e, float *out) {
    trim(&b, &e);
    char buf[64];
    size_t n = (size_t)(e - b);
    bool ok = n > 0 && n < sizeof buf;
    for (size_t i = 0; ok && i < n; i++)
        ok = (b[i] >= '0' && b[i] <= '9') || strchr("+-.eE", b[i]);
    double v = 0;
    if (ok) {
        memcpy(buf, b, n);
        buf[n] = 0;
        char *end;
        errno = 0;
        v = strtod(buf, &end);
        ok = end == buf + n;
    }
    if (!ok) {
        char shown[48];
        snprintf(shown, sizeof shown, "%.*s", n > 40 ? 40 : (int)n, b);
        rt_printable(shown);
        return csv_err(c, b, KILN_ERR_INVALID,
                       n ? "'%s' is not a number" : "an empty field%s; every field is a number",
                       n ? shown : "");
    }
    if (!isfinite((float)v))
        return csv_err(c, b, KILN_ERR_NONFINITE, "%s does not fit in float32",
                       v > 0 ? "the value" : "the negative value");
    *out = (float)v;
    return KILN_OK;
}

/* Finds the label column in the header; *cols gets the field count. */
static kiln_status read_header(csv *c, const char *label, int64_t *cols, int64_t *label_col) {
    const char *s = c->line, *fb, *fe;
    bool last = false;
    *cols = 0;
    *label_col = -1;
    const char *names[16];
    char store[16][CSV_MAX_NAME];
    int n_names = 0;
    while (!last) {
        next_field(c, &s, &fb, &fe, &last);
        trim(&fb, &fe);
        if (fe - fb >= 2 && *fb == '"' && fe[-1] == '"') fb++, fe--;
        size_t n = (size_t)(fe - fb);
        if (n == strlen(label) && memcmp(fb, label, n) == 0) {
            if (*label_col >= 0)
                return csv_err(c, fb, KILN_ERR_INVALID, "column '%s' appears twice", label);
            *label_col = *cols;
        }
        if (n_names < 16 && n < CSV_MAX_NAME) {
            snprintf(store[n_names], CSV_MAX_NAME, "%.*s", (int)n, fb);
            rt_printable(store[n_names]);
            names[n_names] = store[n_names];
            n_names++;
        }
        if (++*cols > CSV_MAX_COLS)
            return csv_err(c, fb, KILN_ERR_LIMIT, "more than %s columns", "100000");
    }
    if (*label_col >= 0) return KILN_OK;
    const char *near = ir_closest_name(label, names, n_names);
    ir_loc loc = {c->name, 1, 1};
    if (near)
        return ir_error(c->d, KILN_ERR_INVALID, loc,
                        "no column '%s' in the header; did you mean '%s'?", label, near);
    return ir_error(c->d, KILN_ERR_INVALID, loc, "no column '%s' in the header (%lld columns)",
                    label, (long long)*cols);
}

/* First pass: every row has `cols` fields; counts the rows. */
static kiln_status count_rows(csv *c, int64_t cols, int64_t *rows) {
    *rows = 0;
    for (const char *s = c->p; s < c->end;) {
        c->line = s;
        c->line_no++;
        int64_t n = count_fields(c);
        const char *e = line_end(c, s);
        if (n != cols) {
            char msg[96];
            snprintf(msg, sizeof msg, "this row has %lld field%s, the header has %lld",
                     (long long)n, n == 1 ? "" : "s", (long long)cols);
            return csv_err(c, e > s && e[-1] == '\r' ? e - 1 : e, KILN_ERR_SHAPE, "%s", msg);
        }
        ++*rows;
        s = e < c->end ? e + 1 : e;
    }
    return KILN_OK;
}

/* Second pass: the numbers, features into x and the label into y. */
static kiln_status read_rows(csv *c, int64_t cols, int64_t label_col, float *x, float *y) {
    int64_t r = 0;
    for (const char *s = c->p; s < c->end; r++) {
        c->line = s;
        c->line_no++;
        bool last = false;
        const char *fb, *fe;
        for (int64_t k = 0, j = 0; !last; k++) {
            next_field(c, &s, &fb, &fe, &last);
            float *dst = k == label_col ? &y[r] : &x[r * (cols - 1) + j++];
            kiln_status st = parse_number(c, fb, fe, dst);
            if (st) return st;
        }
        if (s < c->end) s++; /* the '\n' */
    }
    return KILN_OK;
}

kiln_status rt_csv_parse(const void *buf, size_t len, const char *name, const char *label,
                         rt_dataset **out, kiln_diag *d) {
    *out = NULL;
    csv c = {buf ? buf : "", NULL, NULL, 1, name, d};
    c.end = c.p + len;
    while (c.end > c.p && (c.end[-1] == '\n' || c.end[-1] == '\r')) c.end--; /* final newlines */
    c.line = c.p;
    if (c.end == c.p)
        return ir_error(d, KILN_ERR_INVALID, (ir_loc){name, 1, 1}, "empty file: no header row");
    if (memchr(c.p, 0, len))
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "%s: a NUL byte: not a text file",
                        name);
    int64_t cols, label_col, rows;
    kiln_status st = read_header(&c, label, &cols, &label_col);
    if (st) return st;
    const char *e = line_end(&c, c.p);
    c.p = e < c.end ? e + 1 : e;
    if ((st = count_rows(&c, cols, &rows))) return st;
    if (rows == 0)
        return ir_error(d, KILN_ERR_INVALID, (ir_loc){name, 2, 1}, "no rows after the header");
    if (cols < 2)
        return ir_error(d, KILN_ERR_INVALID, (ir_loc){name, 1, 1},
                        "only the label column: no features");
    if (rows > INT32_MAX)
        return ir_error(d, KILN_ERR_LIMIT, ir_loc_none(), "%s: more than 2^31-1 rows", name);
    rt_dataset *ds = ir_calloc(1, sizeof *ds);
    if (!ds) return ir_oom(d);
    ds->images_path = ir_strdup(name);
    ds->labels_path = ir_strdup(name);
    ds->n = rows;
    ds->sample_rank = 1;
    ds->sample_dims[0] = ds->sample_size = cols - 1;
    ds->is_float = true;
    ds->f32 = ir_malloc(sizeof(float) * (size_t)(rows * (cols - 1)));
    float *y = ir_malloc(sizeof(float) * (size_t)rows);
    st = ds->images_path && ds->labels_path && ds->f32 && y ? KILN_OK : ir_oom(d);
    c.line_no = 1;
    if (!st) st = read_rows(&c, cols, label_col, ds->f32, y);
    if (!st) {
        st = rt_dataset_take_targets(ds, y, 0, NULL, false, d);
        y = NULL;
    }
    ir_free(y);
    if (st) {
        rt_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KILN_OK;
}

kiln_status rt_csv_load(const char *path, const char *label, rt_dataset **out, kiln_diag *d) {
    *out = NULL;
    rt_mapped m;
    kiln_status st = rt_map_file(path, &m, d);
    if (!st) st = rt_csv_parse(m.p, m.len, path, label, out, d);
    rt_unmap_file(&m);
    return st;
}

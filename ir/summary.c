/*
 * summary.c — Keras' model.summary() table:
 *
 *   Model: "mnist_mlp"
 *   ┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━┓
 *   ┃ Layer (type)        ┃ Output Shape ┃   Param # ┃
 *   ┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━┩
 *   │ h1 (Dense)          │ (None, 128)  │   100,480 │
 *   └─────────────────────┴──────────────┴───────────┘
 *    Total params: 109,386 (427.29 KB)
 *
 * Layers come from the module's layer table (the frontend and the C model
 * API fill it); a .kir module has none, and then parameters are grouped by
 * the prefix before their last '.', as their names are <layer>.<weight>.
 */
#include <string.h>

#include "ir/ir.h"

typedef struct row {
    char name[96], shape[64], params[32];
} row;

static void commas(char *buf, size_t n, int64_t v) {
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)(v < 0 ? -v : v));
    size_t len = strlen(raw), o = 0;
    if (v < 0 && o + 1 < n) buf[o++] = '-';
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && o + 1 < n) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
}

static void keras_shape(char *buf, size_t n, const ir_type *t) {
    size_t o = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->rank && o < n; i++) {
        if (t->dims[i] == KILN_BATCH)
            o += (size_t)snprintf(buf + o, n - o, "%sNone", i ? ", " : "");
        else
            o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
    }
    if (o < n) snprintf(buf + o, n - o, "%s)", t->rank == 1 ? "," : "");
}

static void bytes_str(char *buf, size_t n, double b) {
    if (b < 1024)
        snprintf(buf, n, "%.2f B", b);
    else if (b < 1024 * 1024)
        snprintf(buf, n, "%.2f KB", b / 1024);
    else
        snprintf(buf, n, "%.2f MB", b / (1024 * 1024));
}

/* Display width of UTF-8 text (every code point counts one column). */
static int width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

static void line(ir_sb *sb, const char *l, const char *fill, const char *mid, const char *r,
                 const int *w) {
    ir_sb_puts(sb, l);
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < w[c] + 2; i++) ir_sb_puts(sb, fill);
        ir_sb_puts(sb, c < 2 ? mid : r);
    }
    ir_sb_putc(sb, '\n');
}

static void cells(ir_sb *sb, const char *bar, const row *r, const int *w) {
    const char *v[3] = {r->name, r->shape, r->params};
    ir_sb_puts(sb, bar);
    for (int c = 0; c < 3; c++) {
        int pad = w[c] - width(v[c]);
        ir_sb_putc(sb, ' ');
        if (c == 2)
            for (int i = 0; i < pad; i++) ir_sb_putc(sb, ' ');
        ir_sb_puts(sb, v[c]);
        if (c != 2)
            for (int i = 0; i < pad; i++) ir_sb_putc(sb, ' ');
        ir_sb_putc(sb, ' ');
        ir_sb_puts(sb, bar);
    }
    ir_sb_putc(sb, '\n');
}

char *kiln_module_summary(const kiln_module *m) {
    int cap = m->n_layers ? m->n_layers : m->n_globals;
    row *rows = ir_calloc((size_t)cap + 1, sizeof(row));
    if (!rows) return NULL;
    int n = 0;
    int64_t total = 0, trainable = 0;
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        if (g->kind != IR_GLOBAL_PARAM) continue;
        int64_t c = ir_type_numel(&g->type, 1);
        total += c;
        if (g->trainable) trainable += c;
    }
    if (m->n_layers) {
        for (int i = 0; i < m->n_layers; i++, n++) {
            const ir_layer *l = &m->layers[i];
            snprintf(rows[n].name, sizeof rows[n].name, "%s (%s)", l->name, l->kind);
            keras_shape(rows[n].shape, sizeof rows[n].shape, &l->out);
            commas(rows[n].params, sizeof rows[n].params, l->params);
        }
    } else {
        /* Group parameters by layer prefix, in order of first appearance. */
        for (int i = 0; i < m->n_globals; i++) {
            const ir_global *g = m->globals[i];
            if (g->kind != IR_GLOBAL_PARAM) continue;
            const char *dot = strrchr(g->name, '.');
            int plen = dot ? (int)(dot - g->name) : (int)strlen(g->name);
            int k;
            for (k = 0; k < n; k++)
                if ((int)strlen(rows[k].name) == plen && strncmp(rows[k].name, g->name, plen) == 0)
                    break;
            if (k == n) {
                snprintf(rows[n].name, sizeof rows[n].name, "%.*s", plen, g->name);
                snprintf(rows[n].shape, sizeof rows[n].shape, "?");
                snprintf(rows[n].params, sizeof rows[n].params, "0");
                n++;
            }
            /* Running count kept in the params text: parse, add, print. */
            int64_t prev = 0;
            for (const char *p = rows[k].params; *p; p++)
                if (*p >= '0' && *p <= '9') prev = prev * 10 + (*p - '0');
            commas(rows[k].params, sizeof rows[k].params, prev + ir_type_numel(&g->type, 1));
            if (g->type.rank == 2 && dot && strcmp(dot, ".kernel") == 0) {
                ir_type out = g->type;
                out.dims[0] = KILN_BATCH;
                keras_shape(rows[k].shape, sizeof rows[k].shape, &out);
            }
        }
    }
    row head = {"Layer (type)", "Output Shape", "Param #"};
    int w[3] = {width(head.name), width(head.shape), width(head.params)};
    for (int i = 0; i < n; i++) {
        int a = width(rows[i].name), b = width(rows[i].shape), c = width(rows[i].params);
        if (a > w[0]) w[0] = a;
        if (b > w[1]) w[1] = b;
        if (c > w[2]) w[2] = c;
    }
    if (w[0] < 31) w[0] = 31;
    if (w[1] < 22) w[1] = 22;
    if (w[2] < 13) w[2] = 13;
    ir_sb sb;
    ir_sb_init(&sb);
    ir_sb_printf(&sb, "Model: \"%s\"\n", m->name);
    line(&sb, "┏", "━", "┳", "┓", w);
    cells(&sb, "┃", &head, w);
    line(&sb, "┡", "━", "╇", "┩", w);
    for (int i = 0; i < n; i++) {
        cells(&sb, "│", &rows[i], w);
        if (i + 1 < n) line(&sb, "├", "─", "┼", "┤", w);
    }
    line(&sb, "└", "─", "┴", "┘", w);
    char num[32], by[32];
    commas(num, sizeof num, total);
    bytes_str(by, sizeof by, 4.0 * (double)total);
    ir_sb_printf(&sb, " Total params: %s (%s)\n", num, by);
    commas(num, sizeof num, trainable);
    bytes_str(by, sizeof by, 4.0 * (double)trainable);
    ir_sb_printf(&sb, " Trainable params: %s (%s)\n", num, by);
    commas(num, sizeof num, total - trainable);
    bytes_str(by, sizeof by, 4.0 * (double)(total - trainable));
    ir_sb_printf(&sb, " Non-trainable params: %s (%s)\n", num, by);
    ir_free(rows);
    return ir_sb_take(&sb);
}

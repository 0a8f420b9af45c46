/* collective.c — the allreduce shim (collective.h) and the interpreter
 * kernels of allreduce_mean and allreduce_wait. */
#include "ir/collective.h"

#include <string.h>

#include "ir/ir.h"

static const ir_collective *g_coll;
static double g_weight = 1;
static int64_t g_first_row;
static int g_failed;

/* A bucket: staged values and where each goes; filling, started (its
 * collective runs) or free. */
typedef struct bucket {
    float *buf;
    int64_t n, cap;
    struct part {
        float *out;
        int64_t at, n;
    } * parts;
    int n_parts, cap_parts;
    void *req; /* started: the collective's */
    int started;
} bucket;

static struct {
    bucket *b;
    int n, cap;
    int fill; /* the bucket being filled, + 1 (0: none) */
} g_bk;

static void finish(bucket *k);

static void reset_buckets(void) {
    for (int i = 0; i < g_bk.n; i++) {
        g_bk.b[i].n = g_bk.b[i].n_parts = 0;
        g_bk.b[i].started = 0;
    }
    g_bk.fill = 0;
}

void ir_collective_set(const ir_collective *c) {
    if (!c) {
        for (int i = 0; i < g_bk.n && g_coll && !g_failed; i++) /* never waited for */
            if (g_bk.b[i].started) finish(&g_bk.b[i]);
        for (int i = 0; i < g_bk.n; i++) {
            ir_free(g_bk.b[i].buf);
            ir_free(g_bk.b[i].parts);
        }
        ir_free(g_bk.b);
        memset(&g_bk, 0, sizeof g_bk);
    }
    g_coll = c;
    g_weight = 1;
    g_first_row = 0;
    g_failed = 0;
}

const ir_collective *ir_collective_get(void) { return g_coll; }

void ir_collective_set_weight(double w) { g_weight = w; }

void ir_collective_set_first_row(int64_t row) { g_first_row = row; }
int64_t kiln_collective_first_row(void) { return g_first_row; }

int ir_collective_failed(const char **message) {
    if (message)
        *message = g_failed && g_coll && g_coll->last_error ? g_coll->last_error(g_coll->ctx)
                                                            : "a collective failed";
    return g_failed;
}

void ir_collective_clear(void) { g_failed = 0; }

/* The bucket being filled, or a free one (NULL: out of memory). */
static bucket *filling(void) {
    if (g_bk.fill) return &g_bk.b[g_bk.fill - 1];
    int i = 0;
    while (i < g_bk.n && g_bk.b[i].started) i++;
    if (i == g_bk.n) {
        if (!IR_GROW(g_bk.b, g_bk.cap, g_bk.n + 1)) return NULL;
        memset(&g_bk.b[g_bk.n++], 0, sizeof *g_bk.b);
    }
    g_bk.fill = i + 1;
    return &g_bk.b[i];
}

/* Stages in[0..n), scaled by this rank's share (one pass: the copy is the
 * scaling), for out. */
static int stage(const float *in, float *out, int64_t n) {
    bucket *k = filling();
    if (!k) return 1;
    if (k->n + n > k->cap) {
        int64_t cap = (k->n + n) * 2;
        float *b = ir_realloc(k->buf, (size_t)cap * sizeof *b);
        if (!b) return 1;
        k->buf = b;
        k->cap = cap;
    }
    if (!IR_GROW(k->parts, k->cap_parts, k->n_parts + 1)) return 1;
    k->parts[k->n_parts++] = (struct part){out, k->n, n};
    float *to = k->buf + k->n;
    float w = (float)g_weight; /* in f32: the loop vectorizes (exact for 1/2, 1/4, ...) */
    if (g_weight == 1)
        memcpy(to, in, (size_t)n * sizeof *in);
    else
        for (int64_t i = 0; i < n; i++) to[i] = in[i] * w;
    k->n += n;
    return 0;
}

/* Waits for started bucket k and writes its outs. */
static void finish(bucket *k) {
    if (g_coll->wait(g_coll->ctx, k->req)) g_failed = 1;
    for (int i = 0; i < k->n_parts && !g_failed; i++)
        memcpy(k->parts[i].out, k->buf + k->parts[i].at, (size_t)k->parts[i].n * sizeof *k->buf);
    k->n = k->n_parts = 0;
    k->started = 0;
}

int kiln_allreduce_mean_f32(const float *in, float *out, int64_t n, int32_t mode) {
    if (!g_coll || g_coll->size <= 1) {
        if (out != in) memmove(out, in, (size_t)n * sizeof *out);
        return 0;
    }
    /* Staged straight from in, scaled on the way (out is written when the
     * bucket's collective has ended: one copy in, one out). */
    if (g_failed || stage(in, out, n)) { /* after a failure the ranks no longer agree */
        if (out != in) memmove(out, in, (size_t)n * sizeof *out);
        g_failed = 1;
        reset_buckets();
        return 1;
    }
    if (mode == KILN_ALLREDUCE_JOIN) return 0;
    bucket *k = &g_bk.b[g_bk.fill - 1];
    g_bk.fill = 0;
    if (g_coll->start(g_coll->ctx, k->buf, k->n, &k->req)) {
        if (out != in) memmove(out, in, (size_t)n * sizeof *out);
        g_failed = 1;
        reset_buckets();
        return 1;
    }
    k->started = 1;
    if (mode != KILN_ALLREDUCE_START) finish(k);
    return g_failed;
}

int kiln_allreduce_wait_f32(const float *in, float *out, int64_t n) {
    for (int i = 0; i < g_bk.n && !g_failed; i++) {
        bucket *k = &g_bk.b[i];
        for (int j = 0; k->started && j < k->n_parts; j++)
            if (k->parts[j].out == in) finish(k);
    }
    if (out != in) memmove(out, in, (size_t)n * sizeof *out);
    return g_failed;
}

int ir_collective_drain(void) {
    for (int i = 0; i < g_bk.n && !g_failed; i++)
        if (g_bk.b[i].started) finish(&g_bk.b[i]);
    return g_failed;
}

static kiln_status failed(ir_interp *ip, const ir_node *n) {
    const char *why;
    ir_collective_failed(&why);
    return ir_error(ir_interp_diag(ip), KILN_ERR_IO, n->loc, "%s: %s", ir_op_name(n->op), why);
}

kiln_status k_allreduce_mean(ir_interp *ip, const ir_node *n, ir_tensor *out,
                             const ir_tensor *in) {
    int64_t count = ir_type_numel(&in->type, 1);
    int32_t mode = !ir_attr_i(n, "flush") ? KILN_ALLREDUCE_JOIN
                   : ir_attr_i(n, "wait") ? KILN_ALLREDUCE_REDUCE
                                          : KILN_ALLREDUCE_START;
    if (kiln_allreduce_mean_f32(in->data, out->data, count, mode)) return failed(ip, n);
    return KILN_OK;
}

kiln_status k_allreduce_wait(ir_interp *ip, const ir_node *n, ir_tensor *out,
                             const ir_tensor *in) {
    if (kiln_allreduce_wait_f32(in->data, out->data, ir_type_numel(&in->type, 1)))
        return failed(ip, n);
    return KILN_OK;
}

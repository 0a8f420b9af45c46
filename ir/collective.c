/* collective.c — the allreduce shim (collective.h) and allreduce_mean's
 * interpreter kernel. */
#include "ir/collective.h"

#include <string.h>

#include "ir/ir.h"

static const ir_collective *g_coll;
static double g_weight = 1;
static int g_failed;

/* The bucket being filled: staged values and where each goes. */
static struct {
    float *buf;
    int64_t n, cap;
    struct pending {
        float *out;
        int64_t at, n;
    } * parts;
    int n_parts, cap_parts;
} g_bucket;


void ir_collective_set(const ir_collective *c) {
    if (!c) {
        ir_free(g_bucket.buf);
        ir_free(g_bucket.parts);
        memset(&g_bucket, 0, sizeof g_bucket);
    }
    g_coll = c;
    g_weight = 1;
    g_failed = 0;
}

const ir_collective *ir_collective_get(void) { return g_coll; }

void ir_collective_set_weight(double w) { g_weight = w; }

int ir_collective_failed(const char **message) {
    if (message)
        *message = g_failed && g_coll && g_coll->last_error ? g_coll->last_error(g_coll->ctx)
                                                            : "a collective failed";
    return g_failed;
}

void ir_collective_clear(void) { g_failed = 0; }

static int stage(const float *in, float *out, int64_t n) {
    if (g_bucket.n + n > g_bucket.cap) {
        int64_t cap = (g_bucket.n + n) * 2;
        float *b = ir_realloc(g_bucket.buf, (size_t)cap * sizeof *b);
        if (!b) return 1;
        g_bucket.buf = b;
        g_bucket.cap = cap;
    }
    if (!IR_GROW(g_bucket.parts, g_bucket.cap_parts, g_bucket.n_parts + 1)) return 1;
    g_bucket.parts[g_bucket.n_parts++] = (struct pending){out, g_bucket.n, n};
    memcpy(g_bucket.buf + g_bucket.n, in, (size_t)n * sizeof *in);
    g_bucket.n += n;
    return 0;
}

int kiln_allreduce_mean_f32(const float *in, float *out, int64_t n, int32_t flush) {
    if (out != in) memmove(out, in, (size_t)n * sizeof *out);
    if (!g_coll || g_coll->size <= 1) return 0;
    if (g_failed || stage(out, out, n)) { /* after a failure the ranks no longer agree */
        g_failed = 1;
        g_bucket.n = g_bucket.n_parts = 0;
        return 1;
    }
    if (!flush) return 0;
    float *b = g_bucket.buf;
    if (g_weight != 1)
        for (int64_t i = 0; i < g_bucket.n; i++) b[i] = (float)(b[i] * g_weight);
    if (g_coll->allreduce_sum(g_coll->ctx, b, g_bucket.n)) g_failed = 1;
    for (int i = 0; i < g_bucket.n_parts && !g_failed; i++)
        memcpy(g_bucket.parts[i].out, b + g_bucket.parts[i].at,
               (size_t)g_bucket.parts[i].n * sizeof *b);
    g_bucket.n = g_bucket.n_parts = 0;
    return g_failed;
}

kiln_status k_allreduce_mean(ir_interp *ip, const ir_node *n, ir_tensor *out,
                             const ir_tensor *in) {
    int64_t count = ir_type_numel(&in->type, 1);
    if (kiln_allreduce_mean_f32(in->data, out->data, count, (int32_t)ir_attr_i(n, "flush"))) {
        const char *why;
        ir_collective_failed(&why);
        return ir_error(ir_interp_diag(ip), KILN_ERR_IO, n->loc, "allreduce_mean: %s", why);
    }
    return KILN_OK;
}

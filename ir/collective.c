/* collective.c — the allreduce shim (collective.h) and allreduce_mean's
 * interpreter kernel. */
#include "ir/collective.h"

#include <string.h>

#include "ir/ir.h"

static const ir_collective *g_coll;
static double g_weight = 1;
static int g_failed;

void ir_collective_set(const ir_collective *c) {
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

int kiln_allreduce_mean_f32(const float *in, float *out, int64_t n) {
    if (out != in) memmove(out, in, (size_t)n * sizeof *out);
    if (!g_coll || g_coll->size <= 1) return 0;
    if (g_failed) return 1; /* after a failure the ranks no longer agree */
    if (g_weight != 1)
        for (int64_t i = 0; i < n; i++) out[i] = (float)(out[i] * g_weight);
    if (g_coll->allreduce_sum(g_coll->ctx, out, n)) g_failed = 1;
    return g_failed;
}

kiln_status k_allreduce_mean(ir_interp *ip, const ir_node *n, ir_tensor *out,
                             const ir_tensor *in) {
    int64_t count = ir_type_numel(&in->type, 1);
    if (kiln_allreduce_mean_f32(in->data, out->data, count)) {
        const char *why;
        ir_collective_failed(&why);
        return ir_error(ir_interp_diag(ip), KILN_ERR_IO, n->loc, "allreduce_mean: %s", why);
    }
    return KILN_OK;
}

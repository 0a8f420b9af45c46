/*
 * init.c — parameter initializers on a portable RNG.
 *
 * splitmix64 (Steele, Lea, Flood 2014): a counter-based generator whose
 * output depends only on the seed and the number of draws, with integer
 * arithmetic only, so the same seed gives the same weights everywhere.
 * Each global draws from its own stream, derived from its name.
 */
#include "ir/ir.h"

#include <math.h>
#include <string.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

ir_rng ir_rng_seed(uint64_t seed, uint64_t stream) {
    ir_rng r = {mix64(seed ^ 0x6a09e667f3bcc909ULL) ^ mix64(stream + 0x9e3779b97f4a7c15ULL)};
    return r;
}

uint64_t ir_rng_next(ir_rng *r) {
    r->state += 0x9e3779b97f4a7c15ULL;
    return mix64(r->state);
}

double ir_rng_uniform(ir_rng *r) { return (double)(ir_rng_next(r) >> 11) * 0x1.0p-53; }

/* Box-Muller with both values derived from fresh draws: portable because it
 * only uses log, sqrt and cos of doubles, which glibc and others round
 * correctly or nearly; weights are then rounded to f32. */
double ir_rng_normal(ir_rng *r) {
    double u1 = ir_rng_uniform(r), u2 = ir_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Keras' fan computation: [in, out] kernels, receptive field for more axes. */
static void fans(const ir_type *t, double *fan_in, double *fan_out) {
    if (t->rank == 0) {
        *fan_in = *fan_out = 1;
    } else if (t->rank == 1) {
        *fan_in = *fan_out = (double)t->dims[0];
    } else {
        double receptive = 1;
        for (int i = 0; i < t->rank - 2; i++) receptive *= (double)t->dims[i];
        *fan_in = (double)t->dims[t->rank - 2] * receptive;
        *fan_out = (double)t->dims[t->rank - 1] * receptive;
    }
}

/* Normal truncated at two standard deviations, as Keras' variance-scaling
 * initializers draw; 0.8796... is the stddev of the truncated unit normal. */
static double truncated_normal(ir_rng *r, double stddev) {
    double s = stddev / 0.87962566103423978;
    for (;;) {
        double z = ir_rng_normal(r);
        if (fabs(z) <= 2.0) return z * s;
    }
}

static const char *const g_init_names[KILN_INIT_COUNT] = {
    "zeros",  "ones",      "constant",   "glorot_uniform", "glorot_normal",
    "he_normal", "he_uniform", "normal", "uniform"};

const char *ir_init_name(kiln_init_kind k) {
    return (unsigned)k < KILN_INIT_COUNT ? g_init_names[k] : "?";
}

int ir_init_lookup(const char *name) {
    for (int i = 0; i < KILN_INIT_COUNT; i++)
        if (strcmp(g_init_names[i], name) == 0) return i;
    return -1;
}

bool ir_init_fits_i32(kiln_init init) {
    if (init.kind == KILN_INIT_ZEROS || init.kind == KILN_INIT_ONES) return true;
    return init.kind == KILN_INIT_CONSTANT && init.a >= -2147483648.0 && init.a < 2147483648.0 &&
           init.a == floor(init.a);
}

kiln_status ir_global_init(const ir_global *g, uint64_t seed, void *data, kiln_diag *d) {
    int64_t n = ir_type_numel(&g->type, 1);
    if (g->data) {
        memcpy(data, g->data, (size_t)n * ir_dtype_size((ir_dtype)g->type.dtype));
        return KILN_OK;
    }
    ir_rng r = ir_rng_seed(seed, ir_hash_bytes(g->name, strlen(g->name), 0));
    double fan_in, fan_out;
    fans(&g->type, &fan_in, &fan_out);
    if (g->type.dtype == IR_I32) {
        int32_t *p = data;
        int32_t v = g->init.kind == KILN_INIT_ONES       ? 1
                    : g->init.kind == KILN_INIT_CONSTANT ? (int32_t)g->init.a
                                                         : 0;
        if (!ir_init_fits_i32(g->init)) /* refused by ir_module_add_global already */
            return ir_error(d, KILN_ERR_INVALID, ir_loc_none(),
                            "'@%s': i32 slots take zeros, ones or constant", g->name);
        for (int64_t i = 0; i < n; i++) p[i] = v;
        return KILN_OK;
    }
    float *p = data;
    switch (g->init.kind) {
    case KILN_INIT_ZEROS: memset(p, 0, sizeof(float) * (size_t)n); break;
    case KILN_INIT_ONES:
        for (int64_t i = 0; i < n; i++) p[i] = 1.0f;
        break;
    case KILN_INIT_CONSTANT:
        for (int64_t i = 0; i < n; i++) p[i] = (float)g->init.a;
        break;
    case KILN_INIT_GLOROT_UNIFORM:
    case KILN_INIT_HE_UNIFORM: {
        double limit = g->init.kind == KILN_INIT_GLOROT_UNIFORM ? sqrt(6.0 / (fan_in + fan_out))
                                                                 : sqrt(6.0 / fan_in);
        for (int64_t i = 0; i < n; i++) p[i] = (float)((2.0 * ir_rng_uniform(&r) - 1.0) * limit);
        break;
    }
    case KILN_INIT_GLOROT_NORMAL:
    case KILN_INIT_HE_NORMAL: {
        double sd = g->init.kind == KILN_INIT_GLOROT_NORMAL ? sqrt(2.0 / (fan_in + fan_out))
                                                             : sqrt(2.0 / fan_in);
        for (int64_t i = 0; i < n; i++) p[i] = (float)truncated_normal(&r, sd);
        break;
    }
    case KILN_INIT_NORMAL:
        for (int64_t i = 0; i < n; i++) p[i] = (float)(g->init.a + g->init.b * ir_rng_normal(&r));
        break;
    case KILN_INIT_UNIFORM:
        for (int64_t i = 0; i < n; i++)
            p[i] = (float)(g->init.a + (g->init.b - g->init.a) * ir_rng_uniform(&r));
        break;
    default:
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "'@%s': unknown initializer",
                        g->name);
    }
    return KILN_OK;
}

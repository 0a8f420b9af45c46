/* philox.c — Philox4x32-10 and dropout's use of it (philox.h). */
#include "ir/philox.h"

static void round_(uint32_t c[4], const uint32_t k[2]) {
    uint64_t p0 = (uint64_t)IR_PHILOX_M0 * c[0], p1 = (uint64_t)IR_PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0], n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void ir_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]}, k[2] = {key[0], key[1]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += IR_PHILOX_W0;
            k[1] += IR_PHILOX_W1;
        }
        round_(c, k);
    }
    for (int i = 0; i < 4; i++) out[i] = c[i];
}

float ir_dropout_uniform(uint64_t seed, int32_t step, int32_t node, uint32_t i) {
    uint32_t ctr[4] = {i, 0, (uint32_t)step, (uint32_t)node};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, out[4];
    ir_philox4x32_10(ctr, key, out);
    return (float)(out[0] >> 8) * (1.0f / 16777216.0f);
}

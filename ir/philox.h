/*
 * philox.h — Philox4x32-10 (Salmon et al., "Parallel random numbers: as
 * easy as 1, 2, 3", SC'11), the counter-based generator dropout draws its
 * masks from. A counter-based generator has no state: the bits of element i
 * are a function of (counter, key) alone, so the interpreter, the JIT and a
 * resumed run draw the same mask without carrying anything along.
 *
 * Dropout's counter and key (the one definition; codegen/lower_dropout.c
 * emits the same rounds as LLVM IR):
 *   counter = {element index, 0, step, node}    key = {seed low, seed high}
 *   u       = (word 0 >> 8) * 2^-24             in [0, 1), 24 bits
 *   keep    = u >= rate;  y = keep ? x * (f32)(1 / (1 - rate)) : 0
 * step is @optimizer.iterations (the step being taken), node the dropout
 * layer's number in the model, seed the train block's seed.
 */
#ifndef KILN_IR_PHILOX_H
#define KILN_IR_PHILOX_H

#include <stdint.h>

#define IR_PHILOX_M0 0xD2511F53u
#define IR_PHILOX_M1 0xCD9E8D57u
#define IR_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define IR_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

/* out = Philox4x32-10(ctr, key). */
void ir_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Dropout's uniform in [0, 1) for element i (see above). */
float ir_dropout_uniform(uint64_t seed, int32_t step, int32_t node, uint32_t i);

#endif

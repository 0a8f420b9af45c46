/*
 * pool.h — Kiln's worker threads: the parallel loop the generated GEMM
 * kernels call (codegen/gemm.c), one persistent pool per process.
 *
 * It lives in codegen/ (plain C, no LLVM) because the generated code calls
 * it: the JIT resolves kiln_parallel_for to this library's copy (jit.c), and
 * `kiln compile` links a copy into every shared object through the AOT
 * support archive. The runtime sets the thread count (--threads).
 *
 * Tasks write disjoint outputs and each is computed by one thread in a fixed
 * order, so results do not depend on the number of threads.
 */
#ifndef KILN_CODEGEN_POOL_H
#define KILN_CODEGEN_POOL_H

#include <stdint.h>

typedef void (*kiln_task_fn)(void *ctx, int64_t task);

/* Runs fn(ctx, i) for every i in [0, n), on the calling thread and the
 * pool's workers (spinning briefly for work, then sleeping). One loop at a
 * time: concurrent callers take turns. Called from inside a task (nested),
 * it runs the loop on the task's thread, in order: the GEMM of a
 * convolution chunk that is itself a task (lower_conv.c). */
void kiln_parallel_for(kiln_task_fn fn, void *ctx, int64_t n);

/* Threads of the parallel loop, the caller's included (1..256; default 1);
 * workers start here and are never stopped. Returns the count in effect:
 * fewer than asked when a thread cannot be created, the workers started
 * before plus one when a count >= 2 is lower than an earlier one. */
int kiln_pool_set_threads(int n);
int kiln_pool_threads(void);
/* Threads a kiln_parallel_for called here would use: 1 inside a task or
 * with one thread, else the pool's count. The GEMM kernels split rows too
 * only when this is above 1 (a row block repacks B). */
int64_t kiln_pool_width(void);

/* A 64-aligned block of at least `bytes` owned by the calling thread, kept
 * for its next call (grown when asked for more) and freed when the thread
 * exits; NULL if it cannot be had. A task's workspace where tasks run
 * concurrently: the chunks of a chunked entry point (codegen/module.c). */
void *kiln_pool_scratch(int64_t bytes);

#endif

/*
 * task.h — a lowering's loop as tasks of the worker pool (pool.h): the code
 * of one task goes into a function of its own, called for every task by
 * kiln_parallel_for. Internal to codegen/.
 *
 *   void @kiln.task(i8* ctx, i64 t)     ; loads the batch and buffers, calls
 *   void @kiln.task.body(i64 batch, i64 t, f32* p0, ...)
 *
 * ctx holds the batch and the buffers. The body takes the buffers as
 * parameters, noalias where the kernel's own are, so its loops are optimized
 * as the kernel's would be (read through the context struct instead, they
 * lost that fact and the convnet's batch-1 inference took 38 us instead of
 * 31). A parallel loop inside a task (a GEMM) runs on the task's thread.
 *
 * The tasks split `count` items (a dim: KILN_BATCH is the batch) into ranges
 * [b0, b1) that do not depend on the thread count, so results are the same
 * bits for any --threads, in the JIT and in a .so:
 *   CG_TASKS_FIXED  IR_CONV_TASKS tasks (T), task t taking
 *                   [ceil(t·n/T), ceil((t+1)·n/T)) — for ops whose tasks
 *                   write partial sums added in task order afterwards (the
 *                   split is part of the result), each into slot t;
 *   CG_TASKS_UPTO   m = min(T, n) tasks, task t taking [t·n/m, (t+1)·n/m) —
 *                   for ops whose tasks write disjoint outputs: one item
 *                   (a batch of 1) is one task, run inline by the caller.
 */
#ifndef KILN_CODEGEN_TASK_H
#define KILN_CODEGEN_TASK_H

#include "codegen/lower.h"

enum { CG_TASK_PTRS = 6 };
typedef enum cg_task_split { CG_TASKS_FIXED, CG_TASKS_UPTO } cg_task_split;

typedef struct cg_task {
    LLVMValueRef p[CG_TASK_PTRS]; /* in the body: the buffers, f32* */
    LLVMValueRef t, b0, b1;       /* in the body: the task's number and items */
    /* private */
    LLVMValueRef fn, ctx, ntasks;
    LLVMTypeRef st;
    int np;
    LLVMValueRef saved_fn, saved_batch, saved_err;
    LLVMBasicBlockRef saved_bb;
} cg_task;

/* Emits the tasks' context (the batch and ptrs[0..np), np <= CG_TASK_PTRS)
 * at the builder, then opens the task's body, leaving the builder in it. */
void cg_task_begin(cg_ctx *c, cg_task *k, cg_task_split split, int64_t count, int np,
                   const LLVMValueRef *ptrs);
/* Closes the body and runs the tasks through the pool, at the builder's
 * position when cg_task_begin was called. */
void cg_task_end(cg_ctx *c, cg_task *k);

#endif

/*
 * dist.h — data-parallel runs over MPI (runtime/dist.c): the world
 * communicator behind the allreduce shim (ir/collective.h), the broadcast
 * of the initial weights, reductions of sums, and the watchdog that ends a
 * run whose collective waits on a rank that died. Without MPI (KILN_HAVE_MPI
 * unset) every call reports that this Kiln was built without it.
 */
#ifndef KILN_RUNTIME_DIST_H
#define KILN_RUNTIME_DIST_H

#include "ir/ir.h"

/* Whether distributed training is on (kiln_distributed_init succeeded and
 * the world has more than one rank, or one). */
bool rt_dist_active(void);
int rt_dist_rank(void);
int rt_dist_size(void);
/* Broadcasts bytes from rank 0. */
kiln_status rt_dist_bcast(void *buf, size_t bytes, kiln_diag *d);
/* Sums v[0..n) over the ranks (doubles, every rank gets the result). */
kiln_status rt_dist_sum(double *v, int n, kiln_diag *d);
/* Collectives run over c (NULL: the default communicator,
 * kiln_distributed_set_comm's or MPI_COMM_WORLD) until the next call;
 * returns the default, which a caller passes back to restore it. */
const kiln_comm *rt_dist_use(const kiln_comm *c);
/* The error of a failed collective, as a status with the message. */
kiln_status rt_dist_check(kiln_diag *d);

#endif

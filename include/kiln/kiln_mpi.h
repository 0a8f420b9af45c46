/*
 * kiln_mpi.h — kiln.h's communicator from an MPI_Comm. The one Kiln header
 * that includes mpi.h; include it after kiln.h in programs built with MPI
 * (mpicc, or MPI's include path).
 *
 *   kiln_comm *c;
 *   MPI_Comm_split(MPI_COMM_WORLD, group, rank, &mine);
 *   kiln_comm_from_mpi(mine, &c, d);          // collective over `mine`
 *   fit_opts.comm = c;                        // this fit trains over it
 *   ...
 *   kiln_comm_free(c);
 */
#ifndef KILN_KILN_MPI_H
#define KILN_KILN_MPI_H

#include <mpi.h>

#include "kiln/kiln.h"

static inline kiln_status kiln_comm_from_mpi(MPI_Comm comm, kiln_comm **out, kiln_diag *d) {
    return kiln_comm_from_fint((int64_t)MPI_Comm_c2f(comm), out, d);
}

#endif

/*
 * dist.c — data-parallel runs over Open MPI (dist.h, kiln.h's
 * "Distributed training").
 *
 * kiln_distributed_init initializes MPI (unless the host program did),
 * sets MPI_ERRORS_RETURN on MPI_COMM_WORLD, so a failed collective comes
 * back as an error instead of aborting, and installs the allreduce shim
 * (ir/collective.h). The sum is a reduce to rank 0 followed by a broadcast,
 * so every rank gets the same bits (MPI_Allreduce may round differently on
 * different ranks) and the weights stay identical.
 *
 * The watchdog: a thread that wakes every second and, when a collective
 * has waited longer than KILN_DIST_TIMEOUT seconds (default 20), says
 * which rank is stuck in what and ends the process (_exit(3)); mpirun then
 * ends the job. A rank killed outright is noticed by mpirun itself, which
 * names it.
 */
#include "runtime/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/collective.h"

#ifdef KILN_HAVE_MPI
#include <mpi.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

static struct {
    bool active, we_init;
    int rank, size;
    ir_collective coll;
    char error[MPI_MAX_ERROR_STRING + 128];
    pthread_t watchdog;
    volatile double wait_since; /* > 0: in a collective since then */
    const char *volatile wait_what;
    double timeout;
} g;

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        sleep(1);
        double t0 = g.wait_since;
        if (t0 > 0 && mono_s() - t0 > g.timeout) {
            fprintf(stderr,
                    "kiln: rank %d of %d: %s has had no answer from the other ranks for %.0f s "
                    "(a rank failed or was killed); ending the run\n",
                    g.rank, g.size, g.wait_what ? g.wait_what : "a collective", g.timeout);
            fflush(stderr);
            _exit(3);
        }
    }
    return NULL;
}

static void enter(const char *what) {
    g.wait_what = what;
    g.wait_since = mono_s();
}

static int leave(int rc, const char *what) {
    g.wait_since = 0;
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    snprintf(g.error, sizeof g.error, "rank %d of %d: %s failed: %.*s (a rank failed?)", g.rank,
             g.size, what, len, msg);
    return 1;
}

static int allreduce_sum(void *ctx, float *buf, int64_t n) {
    (void)ctx;
    enter("allreduce");
    int rc = MPI_SUCCESS;
    for (int64_t at = 0; at < n && rc == MPI_SUCCESS;) {
        int chunk = n - at > (1 << 28) ? 1 << 28 : (int)(n - at);
        rc = MPI_Reduce(g.rank == 0 ? MPI_IN_PLACE : buf + at, buf + at, chunk, MPI_FLOAT,
                        MPI_SUM, 0, MPI_COMM_WORLD);
        if (rc == MPI_SUCCESS) rc = MPI_Bcast(buf + at, chunk, MPI_FLOAT, 0, MPI_COMM_WORLD);
        at += chunk;
    }
    return leave(rc, "allreduce");
}

static const char *last_error(void *ctx) {
    (void)ctx;
    return g.error;
}

kiln_status kiln_distributed_init(kiln_diag *d) {
    if (g.active) return KILN_OK;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return ir_error(d, KILN_ERR_IO, ir_loc_none(), "MPI_Init failed");
        g.we_init = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    const char *t = getenv("KILN_DIST_TIMEOUT");
    g.timeout = t && atof(t) > 0 ? atof(t) : 20;
    g.coll = (ir_collective){NULL, g.rank, g.size, allreduce_sum, last_error};
    ir_collective_set(&g.coll);
    if (pthread_create(&g.watchdog, NULL, watchdog, NULL) == 0) pthread_detach(g.watchdog);
    g.active = true;
    return KILN_OK;
}

void kiln_distributed_finalize(void) {
    if (!g.active) return;
    ir_collective_set(NULL);
    g.active = false;
    int fin = 0;
    MPI_Finalized(&fin);
    if (g.we_init && !fin) MPI_Finalize();
}

void kiln_distributed_abort(int code) {
    if (g.active) MPI_Abort(MPI_COMM_WORLD, code);
}

bool rt_dist_active(void) { return g.active; }
int rt_dist_rank(void) { return g.active ? g.rank : 0; }
int rt_dist_size(void) { return g.active ? g.size : 1; }

kiln_status rt_dist_check(kiln_diag *d) {
    const char *why;
    if (!ir_collective_failed(&why)) return KILN_OK;
    return ir_error(d, KILN_ERR_IO, ir_loc_none(), "distributed: %s", why);
}

kiln_status rt_dist_bcast(void *buf, size_t bytes, kiln_diag *d) {
    if (!g.active) return KILN_OK;
    enter("broadcast");
    int rc = MPI_SUCCESS;
    for (size_t at = 0; at < bytes && rc == MPI_SUCCESS;) {
        int chunk = bytes - at > (1u << 30) ? 1 << 30 : (int)(bytes - at);
        rc = MPI_Bcast((char *)buf + at, chunk, MPI_BYTE, 0, MPI_COMM_WORLD);
        at += (size_t)chunk;
    }
    if (leave(rc, "broadcast"))
        return ir_error(d, KILN_ERR_IO, ir_loc_none(), "distributed: %s", g.error);
    return KILN_OK;
}

kiln_status rt_dist_sum(double *v, int n, kiln_diag *d) {
    if (!g.active) return KILN_OK;
    enter("allreduce");
    int rc = MPI_Reduce(g.rank == 0 ? MPI_IN_PLACE : v, v, n, MPI_DOUBLE, MPI_SUM, 0,
                        MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS) rc = MPI_Bcast(v, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (leave(rc, "allreduce"))
        return ir_error(d, KILN_ERR_IO, ir_loc_none(), "distributed: %s", g.error);
    return KILN_OK;
}

int kiln_distributed_rank(void) { return rt_dist_rank(); }
int kiln_distributed_size(void) { return rt_dist_size(); }
int kiln_have_mpi(void) { return 1; }

#else /* no MPI */

kiln_status kiln_distributed_init(kiln_diag *d) {
    return ir_error(d, KILN_ERR_UNSUPPORTED, ir_loc_none(),
                    "distributed training needs MPI: this Kiln was built without it (install "
                    "libopenmpi-dev and configure again)");
}
void kiln_distributed_finalize(void) {}
void kiln_distributed_abort(int code) { (void)code; }
bool rt_dist_active(void) { return false; }
int rt_dist_rank(void) { return 0; }
int rt_dist_size(void) { return 1; }
kiln_status rt_dist_check(kiln_diag *d) { return KILN_OK; }
kiln_status rt_dist_bcast(void *buf, size_t bytes, kiln_diag *d) { return KILN_OK; }
kiln_status rt_dist_sum(double *v, int n, kiln_diag *d) { return KILN_OK; }
int kiln_distributed_rank(void) { return 0; }
int kiln_distributed_size(void) { return 1; }
int kiln_have_mpi(void) { return 0; }

#endif

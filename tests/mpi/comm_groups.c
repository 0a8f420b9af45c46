/*
 * comm_groups.c — tests/sh/mpi_comm.sh's program: kiln_fit_opts.comm.
 *
 *   comm_groups MODEL DATA_DIR OUT_PREFIX            (under mpirun, 2k ranks)
 *   comm_groups MODEL DATA_DIR OUT_PREFIX --single G (one process)
 *
 * Under mpirun MPI_COMM_WORLD is split into groups of two consecutive ranks
 * (group = rank / 2); each group trains its own copy of MODEL over its
 * communicator, 30 steps at a global batch of 128 with shuffle seed
 * 1 + group, and the group's rank 0 saves OUT_PREFIX.g<group>.st. With
 * --single G one process trains what group G trains and saves
 * OUT_PREFIX.single<G>.st. The groups shuffle differently, so a fit that
 * ran over the whole world would match neither single run. A model
 * created before kiln_distributed_init (so not distributed) is refused a
 * communicator ("refused: ..." on stdout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"
#include "kiln/kiln_mpi.h"

static int fail(const char *what, kiln_diag *d) {
    fprintf(stderr, "comm_groups: %s: %s\n", what, kiln_diag_message(d));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4 && !(argc == 6 && !strcmp(argv[4], "--single"))) {
        fprintf(stderr, "usage: comm_groups MODEL DATA_DIR OUT_PREFIX [--single GROUP]\n");
        return 2;
    }
    int single = argc == 6;
    kiln_diag *d = kiln_diag_create();
    int group = single ? atoi(argv[5]) : 0, size = 1, rank = 0;
    kiln_comm *comm = NULL;
    MPI_Comm mine = MPI_COMM_NULL;
    kiln_model *early = NULL; /* created before kiln_distributed_init: not distributed */
    if (!single) {
        MPI_Init(&argc, &argv);
        kiln_module *em;
        kiln_model_opts eo = {.threads = 1};
        if (kiln_model_file_load(argv[1], &em, d) || kiln_model_create(em, &eo, &early, d))
            return fail("the early model", d);
        if (kiln_distributed_init(d)) return fail("kiln_distributed_init", d);
        int world;
        MPI_Comm_rank(MPI_COMM_WORLD, &world);
        group = world / 2;
        MPI_Comm_split(MPI_COMM_WORLD, group, world, &mine);
        if (kiln_comm_from_mpi(mine, &comm, d)) return fail("kiln_comm_from_mpi", d);
        rank = kiln_comm_rank(comm);
        size = kiln_comm_size(comm);
        if (size != 2) {
            fprintf(stderr, "comm_groups: group %d has %d ranks, expected 2\n", group, size);
            return 1;
        }
    }
    kiln_module *m;
    if (kiln_model_file_load(argv[1], &m, d)) return fail(argv[1], d);
    kiln_model_opts mo = {.threads = 1, .seed = 7};
    kiln_model *model;
    if (kiln_model_create(m, &mo, &model, d)) return fail("kiln_model_create", d);
    kiln_dataset *train;
    if (kiln_dataset_load(argv[2], "train", &train, d)) return fail(argv[2], d);
    kiln_fit_opts fo = {.batch_size = 128, .max_steps = 30, .shuffle_seed = 1 + group,
                        .comm = comm};
    if (early) { /* a communicator for a model that trains alone: refused */
        kiln_fit_opts one = {.max_steps = 1, .comm = comm};
        if (kiln_model_fit(early, train, &one, d) == KILN_OK ||
            !strstr(kiln_diag_message(d), "not created for distributed training")) {
            fprintf(stderr, "comm_groups: the early model's fit was not refused: %s\n",
                    kiln_diag_message(d));
            return 1;
        }
        const char *msg = kiln_diag_message(d);
        printf("group %d, rank %d: refused: %.*s\n", group, rank, (int)strcspn(msg, "\n"), msg);
        kiln_model_dispose(early);
        kiln_diag_clear(d);
    }
    if (kiln_model_fit(model, train, &fo, d)) return fail("kiln_model_fit", d);
    char path[4096];
    snprintf(path, sizeof path, single ? "%s.single%d.st" : "%s.g%d.st", argv[3], group);
    if (rank == 0 && kiln_model_save(model, path, d)) return fail(path, d);
    if (!single)
        printf("group %d, rank %d of %d: trained %s\n", group, rank, size,
               rank == 0 ? path : "(rank 0 saves)");
    kiln_dataset_dispose(train);
    kiln_model_dispose(model);
    if (!single) {
        kiln_comm_free(comm);
        MPI_Comm_free(&mine);
        kiln_distributed_finalize();
        MPI_Finalize();
    }
    kiln_diag_dispose(d);
    return 0;
}

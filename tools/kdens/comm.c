/* The tool's processes: alone, or one rank of an MPI job (make MPI=1, which
 * defines KDENS_WITH_MPI and links libkdens_mpi).  Commands ask cli_comm()
 * for the communicator; main() starts and finishes MPI around them. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#ifndef KDENS_WITH_MPI

int cli_comm_start(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

void cli_comm_finish(int failed) { (void)failed; }

kdens_comm *cli_comm(void) { return NULL; }

const char *cli_comm_support(void) { return "no"; }

#else

#include <kdens_mpi.h>
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kdens_comm *comm;
static int started; /* MPI_Init was called here */

/* Whether an MPI launcher started this process: the variables its
 * launchers set in every process they start.
 *   OMPI_COMM_WORLD_SIZE  Open MPI's mpirun / mpiexec
 *   PMIX_RANK             a PMIx launcher: Open MPI >= 4 and srun --mpi=pmix
 *   PMI_SIZE, PMI_RANK    PMI-1/PMI-2: MPICH's and Intel MPI's Hydra,
 *                         srun --mpi=pmi2
 *   MV2_COMM_WORLD_SIZE   MVAPICH2's mpirun_rsh
 * Without one, the tool runs alone and never initialises MPI: a plain
 * `kdens` run needs no launcher and opens no connection (an MPI singleton
 * would start a runtime of its own). */
static int launched_by_mpi(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                       "PMI_RANK", "MV2_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return 1;
    }
    return 0;
}

int cli_comm_start(int *argc, char ***argv)
{
    if (!launched_by_mpi())
        return 0;
    /* the library calls MPI from the thread that runs the command, this
     * one; its compute threads never do */
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "kdens: MPI could not start\n");
        return 1;
    }
    started = 1;
    int ranks = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (ranks <= 1)
        return 0;
    kdens_status st = kdens_comm_mpi_create(&comm);
    if (st != KDENS_OK) {
        cli_fail("MPI communicator", st);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    return 0;
}

void cli_comm_finish(int failed)
{
    if (!started)
        return;
    if (failed && comm) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, failed);
    }
    kdens_comm_free(comm);
    comm = NULL;
    MPI_Finalize();
    started = 0;
}

kdens_comm *cli_comm(void) { return comm; }

const char *cli_comm_support(void)
{
    static char text[128];
    if (!text[0]) {
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        if (MPI_Get_library_version(version, &len) != MPI_SUCCESS || len <= 0)
            snprintf(version, sizeof version, "MPI %d.%d", MPI_VERSION, MPI_SUBVERSION);
        /* its first part: "Open MPI v4.1.4, package: ..." */
        version[strcspn(version, ",\n")] = '\0';
        snprintf(text, sizeof text, "yes (%.100s)", version);
    }
    return text;
}

#endif

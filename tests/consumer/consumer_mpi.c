/* A program of several processes on libkdens' MPI transport as installed,
 * built through `pkg-config --cflags --libs kdens-mpi` and run under mpirun
 * by tests/test_install.sh (make check MPI=1): every rank checks that the
 * others run the same build, and all agree on the outcome. */
#include <mpi.h>
#include <stdio.h>

#include <kdens_mpi.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    kdens_comm *comm = NULL;
    kdens_status st = kdens_comm_mpi_create(&comm);
    if (st != KDENS_OK) {
        fprintf(stderr, "consumer_mpi: %s\n", kdens_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    st = kdens_comm_check_same(comm, "consumer_mpi");
    printf("rank %d of %d: %s\n", kdens_comm_rank(comm), kdens_comm_size(comm),
           kdens_status_str(st));
    kdens_comm_free(comm);
    MPI_Finalize();
    return st == KDENS_OK ? 0 : 1;
}

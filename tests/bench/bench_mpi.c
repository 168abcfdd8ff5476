/* Benchmarks over MPI ranks (make bench MPI=1 runs them under mpirun):
 *   bench_mpi THREADS train      data-parallel ResNet-20 training on
 *                                Fashion-MNIST (kdens_trainer_fit over the
 *                                ranks), images per second over all ranks
 *   bench_mpi THREADS allreduce  the time of one gradient allreduce (every
 *                                trainable weight, float) of each built-in
 *                                architecture at 32x32x3, 10 classes
 * Rank 0 prints "bench ..." lines like tests/bench/bench.c. */
#include "kdens.h"
#include "kdens_mpi.h"

#include "core/core.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int rank, ranks;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check(kdens_status st, const char *what)
{
    if (st != KDENS_OK) {
        fprintf(stderr, "bench_mpi: %s: %s\n", what, kdens_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One warm-up epoch, then three timed epochs of 2,560 images (20 global
 * batches of 128): the median rate over all ranks. */
static void bench_train(kdens_comm *comm)
{
    kdens_dataset *all, *part;
    check(kdens_dataset_preset("fmnist", NULL, &all, NULL), "fmnist");
    check(kdens_dataset_subset(all, 0, 2560, 1, &part), "subset");
    kdens_model *m;
    check(kdens_model_create("resnet20", 28, 28, 1, 10, 1, &m), "model");
    double rates[3];
    for (int round = 0; round < 4; round++) {
        kdens_trainer *t;
        check(kdens_trainer_create(m, part, NULL, &t), "trainer");
        check(kdens_trainer_set_epochs(t, 1), "epochs");
        check(kdens_trainer_set_batch(t, 128), "batch");
        check(kdens_trainer_set_comm(t, comm), "comm");
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        check(kdens_trainer_fit(t), "fit");
        double secs = now() - t0;
        if (round > 0)
            rates[round - 1] = 2560 / secs;
        kdens_trainer_free(t);
    }
    qsort(rates, 3, sizeof *rates, cmp_double);
    if (rank == 0)
        printf("bench resnet20 ranks=%d threads=%d train_img_per_s=%.0f (%.0f-%.0f)\n", ranks,
               kdens_get_num_threads(), rates[1], rates[0], rates[2]);
    kdens_model_free(m);
    kdens_dataset_free(part);
    kdens_dataset_free(all);
}

/* The median of 7 allreduces of each architecture's trainable weights. */
static void bench_allreduce(kdens_comm *comm)
{
    static const char *const archs[] = {"test",         "resnet20",       "mobilenet_small",
                                        "resnet50v2",   "densenet121",    "efficientnetb0",
                                        "efficientnetb3", "mobilenetv3large"};
    for (size_t a = 0; a < sizeof archs / sizeof *archs; a++) {
        kdens_model *m;
        check(kdens_model_create(archs[a], 32, 32, 3, 10, 1, &m), archs[a]);
        size_t n = kdens_model_trainable_count(m);
        float *g = malloc(sizeof(float) * n);
        for (size_t i = 0; i < n; i++)
            g[i] = (float)(i % 7) * 0.25f;
        double t[7];
        check(kd_comm_allreduce_float(comm, g, n), "allreduce"); /* warm-up */
        for (int r = 0; r < 7; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            check(kd_comm_allreduce_float(comm, g, n), "allreduce");
            t[r] = now() - t0;
        }
        qsort(t, 7, sizeof *t, cmp_double);
        if (rank == 0)
            printf("bench allreduce %s ranks=%d floats=%zu ms=%.3f\n", archs[a], ranks, n,
                   t[3] * 1e3);
        free(g);
        kdens_model_free(m);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    kdens_comm *comm;
    check(kdens_comm_mpi_create(&comm), "communicator");
    rank = kdens_comm_rank(comm);
    ranks = kdens_comm_size(comm);
    check(kdens_set_num_threads(argc > 1 ? atoi(argv[1]) : 0), "threads");
    const char *what = argc > 2 ? argv[2] : "train";
    fflush(stdout);
    if (strcmp(what, "train") == 0)
        bench_train(comm);
    else if (strcmp(what, "allreduce") == 0)
        bench_allreduce(comm);
    fflush(stdout);
    kdens_comm_free(comm);
    MPI_Finalize();
    return 0;
}

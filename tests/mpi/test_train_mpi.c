/* Training over MPI ranks (run under mpirun -np 2 and -np 3): data-parallel
 * weights identical on every rank after every fit and equal to one process
 * with the same global batch within the stated tolerance (synchronised
 * batch norm), resume from rank 0's checkpoint, distillation over ranks,
 * the teacher farm without a shared workspace, and refusals: settings that
 * differ between ranks, a batch smaller than the rank count, a rank whose
 * data fails. */
#include "testutil.h"

#include "kdens_experiment.h"
#include "kdens_mpi.h"

#include "data/data.h"
#include "nn/nn.h"

#include <math.h>
#include <mpi.h>
#include <sys/stat.h>

enum { S = 8, K = 4 };

static kdens_comm *comm;
static int rank, ranks;

/* The tolerance of "equal to one process" (docs/mpi.md): largest
 * difference of any weight after the fits below, relative to the weight's
 * magnitude plus one. */
#define SAME_AS_ONE_TOL 1e-6

/* n images of S x S: class c has a bright c-th quadrant; the same on every
 * rank for the same seed. */
static kdens_dataset *make_set(size_t n, uint64_t seed)
{
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(n, S, S, 1, K, &ds));
    ASSERT_OK(kd_dataset_name_by_index(ds));
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % K);
        uint8_t *px = ds->store->pixels + i * S * S;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                int q = (y >= S / 2) * 2 + (x >= S / 2);
                px[y * S + x] = (uint8_t)((q == c ? 150 : 20) + (r >> 58));
            }
        ds->store->labels[i] = c;
    }
    return ds;
}

/* A small network with batch normalisation (two of them) and a dense head. */
static const char *const SPEC = "conv filters=6 kernel=3 padding=same bias=0\n"
                                "bn\nrelu\nmaxpool size=2\n"
                                "conv filters=8 kernel=3 padding=same bias=0\n"
                                "bn\nrelu\ngap\ndense units=classes\nsoftmax\n";

static kdens_model *make_model(uint64_t seed)
{
    kdens_model *m;
    ASSERT_OK(kdens_model_from_spec(SPEC, S, S, 1, K, seed, &m));
    return m;
}

/* Train model on train/val with the test's settings over comm c. */
static kdens_status fit(kdens_model *m, const kdens_dataset *train, const kdens_dataset *val,
                        kdens_comm *c, int epochs, const char *ckpt, int resume)
{
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, train, val, &t));
    ASSERT_OK(kdens_trainer_set_epochs(t, epochs));
    ASSERT_OK(kdens_trainer_set_batch(t, 24));
    ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_SGD, 0.05));
    ASSERT_OK(kdens_trainer_set_seed(t, 11));
    ASSERT_OK(kdens_trainer_set_comm(t, c));
    if (ckpt)
        ASSERT_OK(kdens_trainer_set_checkpoint(t, ckpt, resume));
    kdens_status st = kdens_trainer_fit(t);
    kdens_trainer_free(t);
    return st;
}

/* True on every rank when every rank's weights equal rank 0's bit for bit. */
static bool same_on_every_rank(const float *w, size_t n)
{
    float *root = malloc(sizeof(float) * n);
    memcpy(root, w, sizeof(float) * n);
    MPI_Bcast(root, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    int mine = memcmp(root, w, sizeof(float) * n) == 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    free(root);
    return all != 0;
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i]));
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* 120 training images, batches of 24 (5 per epoch, split 12/12 or 8/8/8),
 * 3 epochs of SGD: every rank the same weights, and one process with the
 * same global batch the same within SAME_AS_ONE_TOL -- moving statistics
 * of the batch norms included. */
static void test_data_parallel(void **state)
{
    (void)state;
    kdens_dataset *train = make_set(120, 1), *val = make_set(24, 2);
    kdens_model *dp = make_model(3), *alone = make_model(3);
    ASSERT_OK(fit(dp, train, val, comm, 3, NULL, 0));
    assert_true(same_on_every_rank(dp->weights, dp->n_weights));
    ASSERT_OK(fit(alone, train, val, NULL, 3, NULL, 0));
    double diff = max_rel_diff(dp->weights, alone->weights, dp->n_weights);
    if (rank == 0)
        printf("# %d ranks vs one process: largest relative weight difference %.3g\n", ranks,
               diff);
    assert_true(diff <= SAME_AS_ONE_TOL);
    /* the training changed the weights (the comparison means something) */
    kdens_model *start = make_model(3);
    assert_true(max_rel_diff(dp->weights, start->weights, dp->n_weights) > 1e-3);
    kdens_model_free(start);
    kdens_model_free(dp);
    kdens_model_free(alone);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
}

/* A shared scratch folder: rank 0 makes it, every rank learns its name
 * (malloc'd: drop_dir removes it). */
static char *shared_dir(void)
{
    char *name = rank == 0 ? tu_tmpdir() : malloc(4096);
    MPI_Bcast(name, 4096, MPI_CHAR, 0, MPI_COMM_WORLD);
    return name;
}

/* Every rank done with it, rank 0 removes it. */
static void drop_dir(char *dir)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        tu_rm_rf(dir);
    else
        free(dir);
}

/* Checkpoints are rank 0's; a run stopped after epoch 1 and resumed to 3
 * ends bit-identical to an uninterrupted run, on every rank. */
static void test_resume(void **state)
{
    (void)state;
    kdens_dataset *train = make_set(120, 1), *val = make_set(24, 2);
    char *dir = shared_dir();
    char ckpt[4500];
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
    kdens_model *whole = make_model(5), *part = make_model(5);
    ASSERT_OK(fit(whole, train, val, comm, 3, NULL, 0));
    ASSERT_OK(fit(part, train, val, comm, 1, ckpt, 1));
    struct stat sb;
    if (rank == 0)
        assert_int_equal(stat(ckpt, &sb), 0);
    kdens_model_free(part);
    part = make_model(99); /* other starting weights: the checkpoint's must win */
    ASSERT_OK(fit(part, train, val, comm, 3, ckpt, 1));
    assert_memory_equal(whole->weights, part->weights, sizeof(float) * whole->n_weights);
    assert_true(same_on_every_rank(part->weights, part->n_weights));
    kdens_model_free(whole);
    kdens_model_free(part);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
    drop_dir(dir);
}

/* Two teachers distilled into a student over the ranks (cached targets
 * shared, output_avg and mimic_all): the same student on every rank, and
 * the same as one process within the tolerance. */
static void test_distillation(void **state)
{
    (void)state;
    kdens_dataset *train = make_set(96, 4), *val = make_set(24, 5);
    kdens_ensemble *ens;
    ASSERT_OK(kdens_ensemble_create(&ens));
    char *dir = shared_dir();
    for (int i = 0; i < 2; i++) { /* each rank its own copy of the same teachers */
        kdens_model *t = make_model(20 + (uint64_t)i);
        ASSERT_OK(fit(t, train, NULL, NULL, 1, NULL, 0));
        char path[4600];
        snprintf(path, sizeof path, "%s/t%d_rank%d.kdm", dir, i, rank);
        ASSERT_OK(kdens_model_save(t, path));
        ASSERT_OK(kdens_ensemble_add(ens, path));
        kdens_model_free(t);
    }
    kdens_distill_mode modes[2] = {KDENS_DISTILL_OUTPUT_AVG, KDENS_DISTILL_MIMIC_ALL};
    for (int k = 0; k < 2; k++) {
        kdens_model *tmpl = make_model(30);
        kdens_model *student[2];
        for (int run = 0; run < 2; run++) { /* over the ranks, then alone */
            kdens_distiller *d;
            ASSERT_OK(kdens_distiller_create(ens, tmpl, modes[k], train, val, &d));
            ASSERT_OK(kdens_distiller_set_loss(d, 0.5, 2));
            kdens_trainer *t = kdens_distiller_trainer(d);
            ASSERT_OK(kdens_trainer_set_epochs(t, 2));
            ASSERT_OK(kdens_trainer_set_batch(t, 24));
            ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_SGD, 0.05));
            ASSERT_OK(kdens_distiller_set_comm(d, run == 0 ? comm : NULL));
            ASSERT_OK(kdens_distiller_fit(d));
            ASSERT_OK(kdens_distiller_export(d, &student[run]));
            kdens_distiller_free(d);
        }
        assert_true(same_on_every_rank(student[0]->weights, student[0]->n_weights));
        double diff = max_rel_diff(student[0]->weights, student[1]->weights,
                                   student[0]->n_weights);
        if (rank == 0)
            printf("# %s over %d ranks vs one process: %.3g\n",
                   kdens_distill_mode_name(modes[k]), ranks, diff);
        assert_true(diff <= SAME_AS_ONE_TOL);
        kdens_model_free(student[0]);
        kdens_model_free(student[1]);
        kdens_model_free(tmpl);
    }
    kdens_ensemble_free(ens);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
    drop_dir(dir);
}

/* Rows of rank 0's teachers.csv and how many name `uuid`. */
static int registry_rows(const char *work, const char *uuid, int *matching)
{
    char path[4600], line[8192];
    snprintf(path, sizeof path, "%s/teachers.csv", work);
    FILE *f = fopen(path, "r");
    *matching = 0;
    if (!f)
        return -1;
    int rows = -1;
    while (fgets(line, sizeof line, f)) {
        rows++;
        if (rows > 0 && uuid && strstr(line, uuid))
            (*matching)++;
    }
    fclose(f);
    return rows;
}

/* Five subsets on the ranks, the workspace rank 0's alone: the other ranks
 * pass a folder that does not exist, and it still does not afterwards;
 * each subset trained exactly once; the run again trains nothing. */
static void test_farm(void **state)
{
    (void)state;
    kdens_dataset *pool = make_set(100, 6), *val = make_set(24, 7), *test = make_set(24, 8);
    char *shared = shared_dir();
    char work[4500], missing[4500];
    snprintf(work, sizeof work, "%s/w", shared);
    snprintf(missing, sizeof missing, "%s/never-made-rank%d", shared, rank);
    if (rank == 0) {
        char dir[4600];
        snprintf(dir, sizeof dir, "%s/toy/subsets", work);
        assert_int_equal(kd_mkdirs(dir), 0);
        for (int i = 0; i < 5; i++) {
            char path[4700];
            ASSERT_OK(kdens_dataset_write_subset(pool, dir, 0.6, 0, 100 + (uint64_t)i, path,
                                                 sizeof path, NULL));
        }
    }
    kdens_teachers *tc;
    ASSERT_OK(kdens_teachers_create(rank == 0 ? work : missing, "toy", "test", pool, val, test,
                                    &tc));
    ASSERT_OK(kdens_teachers_set_epochs(tc, 1));
    ASSERT_OK(kdens_teachers_set_batch(tc, 16));
    ASSERT_OK(kdens_teachers_set_seed(tc, 3));
    ASSERT_OK(kdens_teachers_set_comm(tc, comm));
    int trained = -1;
    ASSERT_OK(kdens_teachers_train(tc, 0.6, &trained));
    struct stat sb;
    if (rank == 0) {
        assert_int_equal(trained, 5);
        int matching;
        assert_int_equal(registry_rows(work, NULL, &matching), 5);
    } else {
        assert_int_equal(trained, 0);
        assert_int_not_equal(stat(missing, &sb), 0);
    }
    ASSERT_OK(kdens_teachers_train(tc, 0.6, &trained)); /* again: nothing to do */
    if (rank == 0) {
        int matching;
        assert_int_equal(trained, 0);
        assert_int_equal(registry_rows(work, NULL, &matching), 5);
    }
    /* the baseline, data-parallel, written by rank 0 */
    ASSERT_OK(kdens_teachers_train_baseline(tc));
    if (rank == 0) {
        int matching;
        assert_int_equal(registry_rows(work, "all_trainset", &matching), 6);
        assert_int_equal(matching, 1);
    } else {
        assert_int_not_equal(stat(missing, &sb), 0);
    }
    kdens_teachers_free(tc);
    kdens_dataset_free(pool);
    kdens_dataset_free(val);
    kdens_dataset_free(test);
    drop_dir(shared);
}

/* Refusals, the same status on every rank: settings that differ (rank 1
 * trains for one more epoch), a batch smaller than the ranks. */
static void test_refusals(void **state)
{
    (void)state;
    kdens_dataset *train = make_set(48, 1);
    kdens_model *m = make_model(3);
    ASSERT_STATUS(fit(m, train, NULL, comm, rank == 1 ? 2 : 1, NULL, 0), KDENS_E_STATE);
    if (rank == 0)
        assert_non_null(strstr(kdens_errmsg(), "rank 1"));
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, train, NULL, &t));
    ASSERT_OK(kdens_trainer_set_batch(t, 1));
    ASSERT_OK(kdens_trainer_set_comm(t, comm));
    ASSERT_STATUS(kdens_trainer_fit(t), KDENS_E_ARG);
    kdens_trainer_free(t);
    kdens_model_free(m);
    kdens_dataset_free(train);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (kdens_comm_mpi_create(&comm) != KDENS_OK) {
        fprintf(stderr, "kdens_comm_mpi_create: %s\n", kdens_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    rank = kdens_comm_rank(comm);
    ranks = kdens_comm_size(comm);
    kdens_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_parallel), cmocka_unit_test(test_resume),
        cmocka_unit_test(test_distillation),  cmocka_unit_test(test_farm),
        cmocka_unit_test(test_refusals),
    };
    int failed = cmocka_run_group_tests_name(rank == 0 ? "train over MPI" : "train over MPI "
                                                                            "(other rank)",
                                             tests, NULL, NULL);
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    kdens_comm_free(comm);
    MPI_Finalize();
    return any ? 1 : 0;
}

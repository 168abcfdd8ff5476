/* The teacher workflow: subsets to teachers, skipping what is trained, the
 * baseline, teachers.csv rows in the reference's columns, claims of dead
 * processes taken over, and two processes sharing one workspace. */
#include "testutil.h"

#include "kdens_experiment.h"

#include "data/data.h"
#include "experiment/experiment.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum { S = 6, K = 3 };

static kdens_dataset *make_set(size_t n, uint64_t seed)
{
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(n, S, S, 1, K, &ds));
    ASSERT_OK(kd_dataset_name_by_index(ds));
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % K);
        for (int p = 0; p < S * S; p++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            ds->store->pixels[i * S * S + p] = (uint8_t)((p % K == c ? 160 : 30) + (r >> 60));
        }
        ds->store->labels[i] = c;
    }
    return ds;
}

static void write_subsets(const char *work, kdens_dataset *pool)
{
    char dir[4400], path[4600];
    snprintf(dir, sizeof dir, "%s/toy/subsets", work);
    assert_int_equal(kd_mkdirs(dir), 0);
    const char *names[5] = {"subset_05_a1.csv", "subset_05_a2.csv", "subset_05_a3.csv",
                            "subset_05_a4.csv", "subset_03_b1.csv"};
    for (int i = 0; i < 5; i++) {
        kdens_dataset *sub;
        ASSERT_OK(kdens_dataset_subset(pool, i < 4 ? 0.5 : 0.3, 0, (uint64_t)i, &sub));
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        ASSERT_OK(kdens_dataset_write_manifest(sub, path));
        kdens_dataset_free(sub);
    }
}

/* Rows of teachers.csv (header excluded), checking each has 11 fields. */
static int csv_rows(const char *work, const char *want_uuid, int *matching)
{
    char path[4400], line[8192];
    snprintf(path, sizeof path, "%s/teachers.csv", work);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int rows = -1;
    *matching = 0;
    while (fgets(line, sizeof line, f)) {
        if (rows < 0)
            assert_string_equal(line, "model_location,dataset,architecture,fraction,uuid,"
                                      "train_loss,train_accuracy,val_loss,val_accuracy,"
                                      "test_loss,test_accuracy\n");
        else {
            int commas = 0;
            for (char *p = line; *p; p++)
                commas += *p == ',';
            assert_int_equal(commas, 10);
            char uuid[64];
            char *p = line;
            for (int k = 0; k < 4; k++)
                p = strchr(p, ',') + 1;
            sscanf(p, "%63[^,]", uuid);
            *matching += want_uuid && strcmp(uuid, want_uuid) == 0;
        }
        rows++;
    }
    fclose(f);
    return rows;
}

static kdens_teachers *make_teachers(const char *work, kdens_dataset *pool, kdens_dataset *val,
                                     kdens_dataset *test)
{
    kdens_teachers *tc;
    ASSERT_OK(kdens_teachers_create(work, "toy", "test", pool, val, test, &tc));
    ASSERT_OK(kdens_teachers_set_epochs(tc, 2));
    ASSERT_OK(kdens_teachers_set_batch(tc, 16));
    ASSERT_OK(kdens_teachers_set_lr(tc, 0.01));
    ASSERT_OK(kdens_teachers_set_seed(tc, 5));
    /* out of range: refused, the setting kept */
    ASSERT_STATUS(kdens_teachers_set_epochs(tc, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_teachers_set_batch(tc, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_teachers_set_lr(tc, -1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_teachers_set_lr(tc, INFINITY), KDENS_E_ARG);
    ASSERT_STATUS(kdens_teachers_set_patience(tc, -1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_teachers_set_schedule(tc, KDENS_SCHEDULE_CYCLIC), KDENS_E_ARG);
    ASSERT_STATUS(kdens_teachers_set_seed(NULL, 1), KDENS_E_ARG);
    return tc;
}

static void test_workflow(void **state)
{
    (void)state;
    char *work = tu_tmpdir();
    kdens_dataset *pool = make_set(120, 1), *val = make_set(30, 2), *test = make_set(30, 3);
    write_subsets(work, pool);
    kdens_teachers *tc = make_teachers(work, pool, val, test);
    int trained = -1, m;
    ASSERT_OK(kdens_teachers_train(tc, 0.5, &trained));
    assert_int_equal(trained, 4);
    assert_int_equal(csv_rows(work, "a3", &m), 4);
    assert_int_equal(m, 1);
    char path[4600];
    snprintf(path, sizeof path, "%s/toy/teachers/test_0.5_a2.kdm", work);
    kdens_model *model;
    ASSERT_OK(kdens_model_load(path, &model));
    assert_string_equal(kdens_model_get_meta(model, "uuid"), "a2");
    kdens_model_free(model);
    snprintf(path, sizeof path, "%s/toy/logs/a2.csv", work);
    assert_int_equal(access(path, F_OK), 0);
    ASSERT_OK(kdens_teachers_train(tc, 0.5, &trained)); /* all done: skipped */
    assert_int_equal(trained, 0);
    /* a claim left by a dead process is taken over */
    snprintf(path, sizeof path, "%s/toy/teachers/test_0.3_b1.kdm.claim", work);
    FILE *f = fopen(path, "w");
    fputs("12345\n", f);
    fclose(f);
    ASSERT_OK(kdens_teachers_train(tc, 0, &trained)); /* every fraction: only b1 is left */
    assert_int_equal(trained, 1);
    assert_int_equal(access(path, F_OK), -1);
    ASSERT_OK(kdens_teachers_train_baseline(tc));
    assert_int_equal(csv_rows(work, "all_trainset", &m), 6);
    assert_int_equal(m, 1);
    ASSERT_OK(kdens_teachers_train_baseline(tc)); /* once only */
    assert_int_equal(csv_rows(work, "all_trainset", &m), 6);
    ASSERT_STATUS(kdens_teachers_train(tc, 0.7, &trained), KDENS_E_NOTFOUND);
    kdens_teachers_free(tc);
    kdens_dataset_free(pool);
    kdens_dataset_free(val);
    kdens_dataset_free(test);
    tu_rm_rf(work);
}

static void test_two_processes(void **state)
{
    (void)state;
    char *work = tu_tmpdir();
    kdens_dataset *pool = make_set(120, 1), *val = make_set(30, 2), *test = make_set(30, 3);
    write_subsets(work, pool);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            kdens_teachers *tc = make_teachers(work, pool, val, test);
            int trained;
            kdens_status st = kdens_teachers_train(tc, 0.5, &trained);
            _exit(st == KDENS_OK ? trained : 100);
        }
    }
    int total = 0;
    for (int k = 0; k < 2; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) < 100);
        total += WEXITSTATUS(status);
    }
    assert_int_equal(total, 4); /* each subset trained exactly once */
    int m;
    assert_int_equal(csv_rows(work, NULL, &m), 4);
    const char *uuids[4] = {"a1", "a2", "a3", "a4"};
    for (int i = 0; i < 4; i++) {
        csv_rows(work, uuids[i], &m);
        assert_int_equal(m, 1);
    }
    kdens_dataset_free(pool);
    kdens_dataset_free(val);
    kdens_dataset_free(test);
    tu_rm_rf(work);
}

static void test_snapshots_and_checkpoints(void **state)
{
    (void)state;
    char *work = tu_tmpdir();
    kdens_dataset *pool = make_set(120, 1), *val = make_set(30, 2), *test = make_set(30, 3);
    kdens_teachers *tc = make_teachers(work, pool, val, test);
    ASSERT_OK(kdens_teachers_train_snapshots(tc, 3, 2)); /* 6 epochs, 3 cycles */
    int m;
    assert_int_equal(csv_rows(work, "snapshot_5_3", &m), 3);
    assert_int_equal(m, 1);
    char path[4600];
    snprintf(path, sizeof path, "%s/toy/teachers/test_1_snapshot_5_2.kdm", work);
    assert_int_equal(access(path, F_OK), 0);
    ASSERT_OK(kdens_teachers_train_checkpoints(tc, 4, 2));
    assert_int_equal(csv_rows(work, NULL, &m), 5);
    ASSERT_STATUS(kdens_teachers_train_checkpoints(tc, 2, 3), KDENS_E_ARG);
    ASSERT_STATUS(kdens_teachers_train_snapshots(tc, 0, 2), KDENS_E_ARG);
    /* fast geometric ensembling: cycles of 2 epochs, low points at epochs 1 and 3 */
    ASSERT_OK(kdens_teachers_train_fge(tc, 2, 2));
    assert_int_equal(csv_rows(work, "fge_5_2", &m), 7);
    assert_int_equal(m, 1);
    csv_rows(work, "fge_5_1", &m);
    assert_int_equal(m, 1);
    ASSERT_STATUS(kdens_teachers_train_fge(tc, 2, 3), KDENS_E_ARG); /* odd: no low point */
    kdens_teachers_free(tc);
    kdens_dataset_free(pool);
    kdens_dataset_free(val);
    kdens_dataset_free(test);
    tu_rm_rf(work);
}

/* The one row of teachers.csv under work: its model's location. */
static char *only_location(const char *work)
{
    char *csv = kd_path_join(work, "teachers.csv", NULL);
    kd_registry_row *rows;
    size_t n;
    ASSERT_OK(kd_registry_read(csv, &rows, &n));
    assert_int_equal(n, 1);
    char *location = kd_strdup(rows[0].location);
    kd_registry_free(rows, n);
    free(csv);
    return location;
}

/* A workspace under folders of 200-character names (issue #13).  Given with
 * a trailing slash and about 4000 characters long, near the system's limit
 * (PATH_MAX, 4096 on Linux), its files and registry rows have one slash
 * after it; reached by a relative path from inside a folder whose own path
 * is past PATH_MAX, it works as well: nothing needs the absolute path. */
static void test_long_workspace(void **state)
{
    (void)state;
    char *base = tu_tmpdir(), part[201];
    memset(part, 'w', 200);
    part[200] = '\0';
    char *work = kd_path_join(base, NULL);
    while (strlen(work) + 201 <= 4000) {
        char *longer = kd_path_join(work, part, NULL);
        free(work);
        work = longer;
    }
    assert_true(strlen(work) > 3790);
    kdens_dataset *pool = make_set(120, 1), *val = make_set(30, 2), *test = make_set(30, 3);
    write_subsets(work, pool);
    char *slashed = kd_path_fmt(NULL, "%s/", work);
    kdens_teachers *tc = make_teachers(slashed, pool, val, test);
    int trained = -1;
    ASSERT_OK(kdens_teachers_train(tc, 0.3, &trained)); /* b1 only */
    assert_int_equal(trained, 1);
    kdens_teachers_free(tc);
    char *model = kd_path_join(work, "toy/teachers/test_0.3_b1.kdm", NULL);
    char *log = kd_path_join(work, "toy/logs/b1.csv", NULL);
    char *location = only_location(work);
    assert_string_equal(location, model);
    assert_int_equal(access(log, F_OK), 0);
    kdens_model *m;
    ASSERT_OK(kdens_model_load(location, &m));
    kdens_model_free(m);
    free(location);
    free(model);
    free(log);

    /* past PATH_MAX: two more folders, entered one at a time */
    int home = open(".", O_RDONLY | O_DIRECTORY);
    assert_true(home >= 0);
    assert_int_equal(chdir(work), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mkdir(part, 0755), 0);
        assert_int_equal(chdir(part), 0);
    }
    assert_true(strlen(work) + 2 * 201 > 4096);
    write_subsets("ws", pool);
    tc = make_teachers("ws", pool, val, test);
    ASSERT_OK(kdens_teachers_train(tc, 0.3, &trained));
    assert_int_equal(trained, 1);
    kdens_teachers_free(tc);
    location = only_location("ws");
    assert_string_equal(location, "ws/toy/teachers/test_0.3_b1.kdm");
    ASSERT_OK(kdens_model_load(location, &m));
    kdens_model_free(m);
    free(location);
    tu_rm_rf(kd_strdup("ws"));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(chdir(".."), 0);
        assert_int_equal(rmdir(part), 0);
    }
    assert_int_equal(fchdir(home), 0);
    close(home);
    kdens_dataset_free(pool);
    kdens_dataset_free(val);
    kdens_dataset_free(test);
    free(slashed);
    free(work);
    tu_rm_rf(base);
}

/* A spec made an architecture of the workspace: teachers of it train and
 * register under its name; the same spec again is fine, another is not. */
static void test_workspace_arch(void **state)
{
    (void)state;
    char *work = tu_tmpdir();
    kdens_dataset *pool = make_set(120, 1), *val = make_set(30, 2), *test = make_set(30, 3);
    write_subsets(work, pool);
    const char *spec = "dense units=10\nrelu\ndense units=classes\nsoftmax\n";
    ASSERT_OK(kdens_workspace_add_arch(work, "toy", "mlp", spec));
    ASSERT_OK(kdens_workspace_add_arch(work, "toy", "mlp", spec)); /* again: nothing */
    ASSERT_STATUS(kdens_workspace_add_arch(work, "toy", "mlp", "dense units=classes\n"),
                  KDENS_E_STATE);
    ASSERT_STATUS(kdens_workspace_add_arch(work, "toy", "resnet20", spec), KDENS_E_ARG);
    ASSERT_STATUS(kdens_workspace_add_arch(work, "toy", "a,b", spec), KDENS_E_ARG);
    ASSERT_STATUS(kdens_workspace_add_arch(work, "toy", NULL, spec), KDENS_E_ARG);
    kdens_teachers *tc;
    ASSERT_OK(kdens_teachers_create(work, "toy", "mlp", pool, val, test, &tc));
    ASSERT_OK(kdens_teachers_set_epochs(tc, 1));
    int trained = 0;
    ASSERT_OK(kdens_teachers_train(tc, 0.3, &trained));
    assert_int_equal(trained, 1);
    kdens_teachers_free(tc);
    char *csv = kd_path_join(work, "teachers.csv", NULL);
    kdens_registry *reg;
    ASSERT_OK(kdens_registry_load(csv, &reg));
    const char *loc, *arch;
    ASSERT_OK(kdens_registry_row(reg, 0, &loc, NULL, &arch, NULL, NULL));
    assert_string_equal(arch, "mlp");
    kdens_model *m;
    ASSERT_OK(kdens_model_load(loc, &m));
    assert_int_equal(kdens_model_param_count(m), S * S * 10 + 10 + 10 * K + K);
    kdens_model_free(m);
    kdens_registry_free(reg);
    free(csv);
    /* an architecture neither built in nor stored: the file looked for is named */
    ASSERT_OK(kdens_teachers_create(work, "toy", "nosuch", pool, val, test, &tc));
    ASSERT_STATUS(kdens_teachers_train(tc, 0.3, &trained), KDENS_E_NOTFOUND);
    assert_non_null(strstr(kdens_errmsg(), "archs/nosuch.spec"));
    kdens_teachers_free(tc);
    kdens_dataset_free(pool);
    kdens_dataset_free(val);
    kdens_dataset_free(test);
    tu_rm_rf(work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workflow),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_snapshots_and_checkpoints),
        cmocka_unit_test(test_long_workspace),
        cmocka_unit_test(test_workspace_arch),
    };
    return cmocka_run_group_tests_name("teachers", tests, NULL, NULL);
}

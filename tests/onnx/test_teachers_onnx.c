/* ONNX models as first-class teachers: once kdens_onnx_enable has run, an
 * .onnx file loads wherever a .kdm does -- ensemble members, fusion, every
 * distillation mode, teachers.csv rows, kdens_teachers_add and the
 * distillation job's explicit teacher files -- and gives what the .kdm it
 * was exported from gives. */
#include "testutil.h"

#include "kdens_experiment.h"
#include "kdens_onnx.h"

#include "data/data.h"
#include "nn/nn.h"

#include <math.h>

enum { H = 6, K = 3, N = 40, T = 3 };

static char *dir;
static kdens_dataset *train_set;
static char kdm[T][4300], onnx[T][4300];

static char *p(const char *name) { return tu_join(dir, name); }

static int setup(void **state)
{
    (void)state;
    dir = tu_tmpdir();
    if (kd_dataset_new(N, H, H, 1, K, &train_set) != KDENS_OK)
        return -1;
    for (size_t i = 0; i < (size_t)N * H * H; i++)
        train_set->store->pixels[i] = (uint8_t)(i * 53 % 251);
    for (size_t i = 0; i < N; i++)
        train_set->store->labels[i] = (int32_t)(i % K);
    for (int i = 0; i < T; i++) {
        kdens_model *m;
        if (kdens_model_create("test", H, H, 1, K, (uint64_t)i + 10, &m) != KDENS_OK)
            return -1;
        for (size_t w = 0; w < m->n_trainable; w++) /* sharper, more varied teachers */
            m->weights[w] *= 3.0f;
        snprintf(kdm[i], sizeof kdm[i], "%s/t%d.kdm", dir, i);
        snprintf(onnx[i], sizeof onnx[i], "%s/t%d.onnx", dir, i);
        if (kdens_model_save(m, kdm[i]) != KDENS_OK || kdens_onnx_export(m, onnx[i]) != KDENS_OK)
            return -1;
        kdens_model_free(m);
    }
    return kdens_onnx_enable() == KDENS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kdens_dataset_free(train_set);
    tu_rm_rf(dir);
    return 0;
}

static kdens_ensemble *ensemble_of(char files[T][4300])
{
    kdens_ensemble *ens;
    ASSERT_OK(kdens_ensemble_create(&ens));
    for (int i = 0; i < T; i++)
        ASSERT_OK(kdens_ensemble_add(ens, files[i]));
    return ens;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* The members' predictions and every fusion rule's decisions are those of
 * the .kdm files. */
static void test_ensembles_and_fusion(void **state)
{
    (void)state;
    kdens_model *m = NULL;
    ASSERT_OK(kdens_model_load(onnx[0], &m)); /* kdens_model_load reads .onnx now */
    assert_int_equal(kdens_model_num_classes(m), K);
    kdens_model_free(m);
    kdens_ensemble *a = ensemble_of(kdm), *b = ensemble_of(onnx);
    kdens_predictions *pa, *pb;
    ASSERT_OK(kdens_ensemble_predict(a, train_set, &pa));
    ASSERT_OK(kdens_ensemble_predict(b, train_set, &pb));
    double diff = max_abs_diff(kdens_predictions_probs(pa), kdens_predictions_probs(pb),
                               (size_t)T * N * K);
    if (diff > 1e-6)
        fail_msg("ONNX members predict %g away from their .kdm files", diff);
    for (int r = 0; r < kdens_fusion_count(); r++) {
        double acc_a, acc_b;
        ASSERT_OK(kdens_predictions_accuracy(pa, (kdens_fusion)r, NULL, 0, &acc_a));
        ASSERT_OK(kdens_predictions_accuracy(pb, (kdens_fusion)r, NULL, 0, &acc_b));
        if (acc_a != acc_b)
            fail_msg("%s: %g with ONNX members, %g with .kdm", kdens_fusion_name((kdens_fusion)r),
                     acc_b, acc_a);
    }
    kdens_predictions_free(pa);
    kdens_predictions_free(pb);
    kdens_ensemble_free(a);
    kdens_ensemble_free(b);
}

/* Every mode distils ONNX teachers into the student .kdm teachers give. */
static void test_every_mode(void **state)
{
    (void)state;
    kdens_ensemble *a = ensemble_of(kdm), *b = ensemble_of(onnx);
    kdens_model *tmpl;
    ASSERT_OK(kdens_model_create("test", H, H, 1, K, 99, &tmpl));
    float x[N * H * H], pa[N * K], pb[N * K];
    for (size_t i = 0; i < (size_t)N * H * H; i++)
        x[i] = train_set->store->pixels[i] / 255.0f;
    for (int mode = 0; mode < kdens_distill_mode_count(); mode++) {
        kdens_ensemble *ens[2] = {a, b};
        float *probs[2] = {pa, pb};
        for (int k = 0; k < 2; k++) {
            kdens_distiller *d;
            ASSERT_OK(kdens_distiller_create(ens[k], tmpl, (kdens_distill_mode)mode, train_set,
                                             NULL, &d));
            if (mode == KDENS_DISTILL_FUSION)
                ASSERT_OK(kdens_distiller_set_fusion(d, KDENS_FUSE_BORDA));
            kdens_trainer *t = kdens_distiller_trainer(d);
            ASSERT_OK(kdens_trainer_set_epochs(t, 3));
            ASSERT_OK(kdens_trainer_set_batch(t, 8));
            ASSERT_OK(kdens_distiller_fit(d));
            kdens_model *student;
            ASSERT_OK(kdens_distiller_export(d, &student));
            ASSERT_OK(kdens_model_predict(student, x, N, probs[k]));
            kdens_model_free(student);
            kdens_distiller_free(d);
        }
        double diff = max_abs_diff(pa, pb, (size_t)N * K);
        if (diff > 1e-5)
            fail_msg("%s: the student of ONNX teachers predicts %g away from .kdm teachers'",
                     kdens_distill_mode_name((kdens_distill_mode)mode), diff);
    }
    kdens_model_free(tmpl);
    kdens_ensemble_free(a);
    kdens_ensemble_free(b);
}

static size_t lines(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    for (int c; f && (c = fgetc(f)) != EOF;)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

/* teachers.csv rows pointing at .onnx files (kdens_teachers_add), the
 * registry's ensembles and both kinds of distillation job. */
static void test_registry_and_jobs(void **state)
{
    (void)state;
    char *work = strdup(p("ws"));
    kdens_teachers *tc;
    ASSERT_OK(kdens_teachers_create(work, "toy", "torchnet", train_set, train_set, train_set,
                                    &tc));
    for (int i = 0; i < T; i++) {
        char uuid[32];
        snprintf(uuid, sizeof uuid, "torch%d", i);
        ASSERT_OK(kdens_teachers_add(tc, onnx[i], 1.0, uuid));
    }
    char *csv = strdup(tu_join(work, "teachers.csv"));
    assert_int_equal(lines(csv), 1 + T);
    /* again: registered already, left as it is */
    ASSERT_OK(kdens_teachers_add(tc, onnx[0], 1.0, "torch0"));
    assert_int_equal(lines(csv), 1 + T);
    /* the same uuid for another file, a bad fraction, a file that does not load */
    assert_int_equal(kdens_teachers_add(tc, kdm[0], 1.0, "torch1"), KDENS_E_ARG);
    assert_non_null(strstr(kdens_errmsg(), "torch1"));
    assert_int_equal(kdens_teachers_add(tc, kdm[0], 0.0, "k0"), KDENS_E_ARG);
    assert_int_equal(kdens_teachers_add(tc, p("missing.onnx"), 1.0, "m"), KDENS_E_IO);
    assert_int_equal(lines(csv), 1 + T);
    kdens_teachers_free(tc);
    /* the registry's rows carry their accuracies */
    kdens_registry *reg;
    ASSERT_OK(kdens_registry_load(csv, &reg));
    const char *loc, *arch;
    ASSERT_OK(kdens_registry_row(reg, 1, &loc, NULL, &arch, NULL, NULL));
    assert_string_equal(loc, onnx[1]);
    assert_string_equal(arch, "torchnet");
    kdens_registry_free(reg);
    kdens_ensemble *ens;
    ASSERT_OK(kdens_ensemble_from_registry(csv, "toy", "torchnet", 0, 2, 7, &ens));
    assert_int_equal(kdens_ensemble_size(ens), 2);
    kdens_ensemble_free(ens);

    /* a job sampling the registry's ONNX rows */
    kdens_distill_job *job;
    int done = 0;
    ASSERT_OK(kdens_distill_job_create(work, "toy", "torchnet", "test", &job));
    ASSERT_OK(kdens_distill_job_set_teachers(job, 2));
    ASSERT_OK(kdens_distill_job_set_epochs(job, 1));
    ASSERT_OK(kdens_distill_job_run(job, train_set, NULL, train_set, &done));
    assert_int_equal(done, 1);
    kdens_distill_job_free(job);

    /* a job of explicit files, .onnx and .kdm mixed */
    ASSERT_OK(kdens_distill_job_create(work, "toy", "any", "test", &job));
    ASSERT_OK(kdens_distill_job_add_teacher(job, onnx[0]));
    ASSERT_OK(kdens_distill_job_add_teacher(job, kdm[1]));
    ASSERT_OK(kdens_distill_job_set_epochs(job, 1));
    ASSERT_OK(kdens_distill_job_run(job, train_set, NULL, train_set, &done));
    assert_int_equal(done, 1);
    ASSERT_OK(kdens_distill_job_run(job, train_set, NULL, train_set, &done));
    assert_int_equal(done, 0); /* registered: skipped */
    /* more teachers asked than files given */
    ASSERT_OK(kdens_distill_job_set_teachers(job, 3));
    assert_int_equal(kdens_distill_job_run(job, train_set, NULL, train_set, &done), KDENS_E_ARG);
    kdens_distill_job_free(job);
    char *students = strdup(tu_join(work, "students.csv"));
    assert_int_equal(lines(students), 3);
    FILE *f = fopen(students, "r");
    char line[16384] = "";
    while (fgets(line, sizeof line, f)) {
    }
    fclose(f);
    assert_non_null(strstr(line, onnx[0])); /* teachers_uuid lists the files */
    assert_non_null(strstr(line, kdm[1]));
    assert_non_null(strstr(line, "_t")); /* the student's name carries their digest */

    /* a file that does not load fails the job, naming it */
    ASSERT_OK(kdens_distill_job_create(work, "toy", "any", "test", &job));
    ASSERT_OK(kdens_distill_job_add_teacher(job, p("missing.onnx")));
    assert_int_not_equal(kdens_distill_job_run(job, train_set, NULL, train_set, &done), KDENS_OK);
    assert_non_null(strstr(kdens_errmsg(), "missing.onnx"));
    assert_int_equal(kdens_distill_job_add_teacher(job, ""), KDENS_E_ARG);
    assert_int_equal(kdens_distill_job_add_teacher(NULL, "x"), KDENS_E_ARG);
    kdens_distill_job_free(job);
    free(students);
    free(csv);
    free(work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ensembles_and_fusion),
        cmocka_unit_test(test_every_mode),
        cmocka_unit_test(test_registry_and_jobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

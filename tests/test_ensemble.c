/* Ensembles: members from files and from a teachers.csv registry, shape
 * checks, predictions equal to each member's own, saved and loaded with a
 * CRC, and fused accuracies against a direct computation. */
#include "testutil.h"

#include "kdens_experiment.h"

#include "data/data.h"

#include <math.h>

enum { S = 6, K = 3, N = 25 };

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_tmpdir();
    for (int i = 0; i < 3; i++) {
        kdens_model *m;
        char path[4300];
        if (kdens_model_create("test", S, S, 1, K, (uint64_t)i + 1, &m) != KDENS_OK)
            return -1;
        snprintf(path, sizeof path, "%s/m%d.kdm", dir, i);
        kdens_model_save(m, path);
        kdens_model_free(m);
    }
    kdens_model *other;
    char path[4300];
    kdens_model_create("test", S, S, 1, K + 1, 9, &other);
    snprintf(path, sizeof path, "%s/other.kdm", dir);
    kdens_model_save(other, path);
    kdens_model_free(other);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_rf(dir);
    return 0;
}

static kdens_dataset *make_set(void)
{
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(N, S, S, 1, K, &ds));
    for (size_t i = 0; i < N * S * S; i++)
        ds->store->pixels[i] = (uint8_t)(i * 37 % 251);
    for (size_t i = 0; i < N; i++)
        ds->store->labels[i] = (int32_t)(i % K);
    return ds;
}

static char *p(const char *name) { return tu_join(dir, name); }

static void test_members_and_predictions(void **state)
{
    (void)state;
    kdens_ensemble *ens;
    ASSERT_OK(kdens_ensemble_create(&ens));
    kdens_dataset *ds = make_set();
    kdens_predictions *pr = NULL;
    ASSERT_STATUS(kdens_ensemble_predict(ens, ds, &pr), KDENS_E_ARG); /* empty */
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d.kdm", i);
        ASSERT_OK(kdens_ensemble_add(ens, p(name)));
    }
    ASSERT_STATUS(kdens_ensemble_add(ens, p("other.kdm")), KDENS_E_SHAPE);
    assert_non_null(strstr(kdens_errmsg(), "other.kdm"));
    assert_int_equal(kdens_ensemble_size(ens), 3);
    ASSERT_OK(kdens_ensemble_predict(ens, ds, &pr));
    assert_int_equal(kdens_predictions_members(pr), 3);
    assert_int_equal(kdens_predictions_samples(pr), N);
    const float *probs = kdens_predictions_probs(pr);
    for (int m = 0; m < 3; m++) {
        float own[N * K];
        ASSERT_OK(kdens_model_predict_u8(kdens_ensemble_member(ens, m), ds->store->pixels, N, own));
        assert_memory_equal(own, probs + (size_t)m * N * K, sizeof own);
    }
    /* fused accuracy against a direct computation of the mean rule */
    double acc, acc0;
    ASSERT_OK(kdens_predictions_accuracy(pr, KDENS_FUSE_MEAN, NULL, 0, &acc));
    size_t right = 0, right0 = 0;
    for (int i = 0; i < N; i++) {
        int best = 0, best0 = 0;
        for (int c = 1; c < K; c++) {
            float s = 0, sb = 0;
            for (int m = 0; m < 3; m++)
                s += probs[((size_t)m * N + i) * K + c], sb += probs[((size_t)m * N + i) * K + best];
            if (s > sb)
                best = c;
            if (probs[i * K + c] > probs[i * K + best0])
                best0 = c;
        }
        right += best == i % K;
        right0 += best0 == i % K;
    }
    assert_true(acc == (double)right / N);
    int only0[1] = {0};
    ASSERT_OK(kdens_predictions_accuracy(pr, KDENS_FUSE_PLURALITY, only0, 1, &acc0));
    assert_true(acc0 == (double)right0 / N);
    /* accuracy versus size: size 3 has one sub-ensemble (all), so no spread */
    int sizes[2] = {1, 3};
    double mean[2], half[2];
    ASSERT_OK(kdens_accuracy_vs_size(pr, KDENS_FUSE_MEAN, sizes, 2, 5, 1, mean, half));
    if (!(fabs(mean[1] - acc) < 1e-12 && half[1] < 1e-12))
        fail_msg("size 3: mean %.17g half %g, all members %.17g", mean[1], half[1], acc);
    assert_true(mean[0] >= 0 && mean[0] <= 1 && half[0] >= 0);
    int too_big[1] = {4};
    ASSERT_STATUS(kdens_accuracy_vs_size(pr, KDENS_FUSE_MEAN, too_big, 1, 5, 1, mean, half),
                  KDENS_E_ARG);
    /* vote statistics versus size: one member is always unanimous; the full
     * size, twice over, is twice the full ensemble's counts */
    kdens_vote_stats vs[2] = {KDENS_VOTE_STATS_INIT, KDENS_VOTE_STATS_INIT}, all =
                                                                              KDENS_VOTE_STATS_INIT;
    ASSERT_OK(kdens_vote_stats_vs_size(pr, sizes, 2, 2, 1, vs));
    assert_int_equal(vs[0].samples, 2 * N);
    assert_int_equal(vs[0].unanimous, 2 * N);
    assert_int_equal(vs[0].condorcet_exists, 2 * N);
    assert_true(vs[0].mean_distinct == 1);
    ASSERT_OK(kdens_vote_analysis(kdens_predictions_probs(pr), 3, N, K,
                                  kdens_predictions_labels(pr), &all, NULL, NULL, NULL));
    assert_int_equal(vs[1].samples, 2 * all.samples);
    assert_int_equal(vs[1].unanimous, 2 * all.unanimous);
    assert_int_equal(vs[1].plurality_correct, 2 * all.plurality_correct);
    assert_int_equal(vs[1].condorcet_exists, 2 * all.condorcet_exists);
    assert_true(fabs(vs[1].mean_distinct - all.mean_distinct) < 1e-12);
    ASSERT_STATUS(kdens_vote_stats_vs_size(pr, too_big, 1, 2, 1, vs), KDENS_E_ARG);
    kdens_vote_stats unset;
    memset(&unset, 0, sizeof unset);
    ASSERT_STATUS(kdens_vote_stats_vs_size(pr, sizes, 1, 2, 1, &unset), KDENS_E_ARG);
    int bad[1] = {7};
    ASSERT_STATUS(kdens_predictions_accuracy(pr, KDENS_FUSE_MEAN, bad, 1, &acc0), KDENS_E_ARG);
    /* saved and loaded bit for bit; a damaged file is refused */
    ASSERT_OK(kdens_predictions_save(pr, p("preds.kdp")));
    kdens_predictions *back;
    ASSERT_OK(kdens_predictions_load(p("preds.kdp"), &back));
    assert_memory_equal(kdens_predictions_probs(back), probs, sizeof(float) * 3 * N * K);
    assert_memory_equal(kdens_predictions_labels(back), kdens_predictions_labels(pr),
                        sizeof(int32_t) * N);
    kdens_predictions_free(back);
    FILE *f = fopen(p("preds.kdp"), "r+b");
    fseek(f, 100, SEEK_SET);
    fputc(0x33, f);
    fclose(f);
    back = NULL;
    ASSERT_STATUS(kdens_predictions_load(p("preds.kdp"), &back), KDENS_E_FORMAT);
    assert_null(back);
    kdens_predictions_free(pr);
    kdens_ensemble_free(ens);
    kdens_dataset_free(ds);
}

static void test_registry(void **state)
{
    (void)state;
    FILE *f = fopen(p("teachers.csv"), "w");
    fprintf(f, "model_location,dataset,architecture,fraction,uuid,train_loss,train_accuracy,"
               "val_loss,val_accuracy,test_loss,test_accuracy\n");
    fprintf(f, "%s,toy,test,0.5,a,0,0,0,0,0,0\n", p("m0.kdm"));
    fprintf(f, "%s,toy,test,0.5,b,0,0,0,0,0,0\n", p("m1.kdm"));
    fprintf(f, "%s,toy,test,0.3,c,0,0,0,0,0,0\n", p("m2.kdm"));
    fprintf(f, "%s,other,test,0.5,d,0,0,0,0,0,0\n", p("other.kdm"));
    fclose(f);
    kdens_ensemble *ens;
    ASSERT_OK(kdens_ensemble_from_registry(p("teachers.csv"), "toy", "test", 0.5, 0, 1, &ens));
    assert_int_equal(kdens_ensemble_size(ens), 2);
    kdens_ensemble_free(ens);
    ASSERT_OK(kdens_ensemble_from_registry(p("teachers.csv"), "toy", "test", 0, 0, 1, &ens));
    assert_int_equal(kdens_ensemble_size(ens), 3);
    kdens_ensemble_free(ens);
    ASSERT_OK(kdens_ensemble_from_registry(p("teachers.csv"), "toy", "test", 0, 2, 7, &ens));
    assert_int_equal(kdens_ensemble_size(ens), 2);
    kdens_ensemble_free(ens);
    ens = NULL;
    ASSERT_STATUS(kdens_ensemble_from_registry(p("teachers.csv"), "toy", "test", 0.5, 3, 1, &ens),
                  KDENS_E_NOTFOUND);
    ASSERT_STATUS(kdens_ensemble_from_registry(p("teachers.csv"), "toy", "resnet20", 0, 0, 1,
                                               &ens),
                  KDENS_E_NOTFOUND);
    /* the public reader: rows in file order, a quoted location with a comma */
    f = fopen(p("teachers.csv"), "a");
    fprintf(f, "\"dir,with \"\"comma\"\"/m.kdm\",toy,resnet20,1,e,0,0,0,0,0,0\n");
    fclose(f);
    kdens_registry *reg;
    ASSERT_OK(kdens_registry_load(p("teachers.csv"), &reg));
    assert_int_equal(kdens_registry_count(reg), 5);
    const char *loc, *ds, *arch, *uuid;
    double frac;
    ASSERT_OK(kdens_registry_row(reg, 2, &loc, &ds, &arch, &frac, &uuid));
    assert_string_equal(loc, p("m2.kdm"));
    assert_string_equal(ds, "toy");
    assert_string_equal(arch, "test");
    assert_true(frac == 0.3);
    assert_string_equal(uuid, "c");
    ASSERT_OK(kdens_registry_row(reg, 4, &loc, NULL, &arch, NULL, NULL));
    assert_string_equal(loc, "dir,with \"comma\"/m.kdm");
    assert_string_equal(arch, "resnet20");
    ASSERT_STATUS(kdens_registry_row(reg, 5, &loc, NULL, NULL, NULL, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_registry_row(NULL, 0, &loc, NULL, NULL, NULL, NULL), KDENS_E_ARG);
    assert_int_equal(kdens_registry_count(NULL), 0);
    kdens_registry_free(reg);
    kdens_registry_free(NULL);
    reg = NULL;
    ASSERT_STATUS(kdens_registry_load(p("missing.csv"), &reg), KDENS_E_IO);
    assert_null(reg);

    f = fopen(p("teachers.csv"), "a");
    fprintf(f, "garbage\n");
    fclose(f);
    ASSERT_STATUS(kdens_ensemble_from_registry(p("teachers.csv"), "toy", "test", 0, 0, 1, &ens),
                  KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "line 7"));
    assert_null(ens);
    ASSERT_STATUS(kdens_registry_load(p("teachers.csv"), &reg), KDENS_E_FORMAT);
    assert_null(reg);
}


static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Scores from any source: the sample,member,p0.. CSV, and its bad inputs. */
static void test_csv_import(void **state)
{
    (void)state;
    write_file(p("v.csv"), "sample,member,p0,p1,p2\r\n"
                           "x,a,0.6,0.3,0.1\r\n"
                           "y,a,2,2,4\r\n"
                           "x,b,0.1,0.5,0.4\r\n"
                           "\r\n"
                           "y,b,1e-1,0,0\r\n");
    kdens_predictions *pr;
    ASSERT_OK(kdens_predictions_load_csv(p("v.csv"), &pr));
    assert_int_equal(kdens_predictions_members(pr), 2);
    assert_int_equal(kdens_predictions_samples(pr), 2);
    assert_int_equal(kdens_predictions_classes(pr), 3);
    assert_string_equal(kdens_predictions_sample_name(pr, 0), "x");
    assert_string_equal(kdens_predictions_sample_name(pr, 1), "y");
    assert_string_equal(kdens_predictions_member_name(pr, 1), "b");
    assert_null(kdens_predictions_sample_name(pr, 2));
    assert_null(kdens_predictions_labels(pr));
    const float *q = kdens_predictions_probs(pr);
    /* member a: x then y (normalised), member b: x then y */
    assert_true(q[0] == 0.6f && q[3] == 0.25f && q[5] == 0.5f && q[6] == 0.1f && q[9] == 1.0f);
    double acc;
    ASSERT_STATUS(kdens_predictions_accuracy(pr, KDENS_FUSE_MEAN, NULL, 0, &acc), KDENS_E_ARG);
    kdens_predictions_free(pr);

    static const struct {
        const char *text, *message;
    } bad[] = {
        {"", "header"},
        {"sample,member\n", "header"},
        {"sample,member,p1\nx,a,1\n", "'p0'"},
        {"sample,member,p0,p1\n", "no rows"},
        {"sample,member,p0,p1\nx,a,0.5\n", ":2: expected 2 scores"},
        {"sample,member,p0,p1\nx,a,0.5,0.5,0.1\n", ":2: expected 2 scores"},
        {"sample,member,p0,p1\nx,a,nan,0.5\n", ":2: score of class 0"},
        {"sample,member,p0,p1\nx,a,0.5,-0.1\n", ":2: score of class 1"},
        {"sample,member,p0,p1\nx,a,0.5,abc\n", ":2: score of class 1"},
        {"sample,member,p0,p1\nx,a,0,0\n", ":2: the scores sum to 0"},
        {"sample,member,p0,p1\nx,a,1e308,1e308\n", ":2: the scores sum to 0 or overflow"},
        {"sample,member,p0,p1\nx\n", ":2: expected sample,member,scores"},
        {"sample,member,p0,p1\n,a,1,0\n", ":2: expected sample,member,scores"},
        {"sample,member,p0,p1\nx,a,1,0\nx,a,0,1\n", ":3: sample 'x' already has member 'a'"},
        {"sample,member,p0,p1\nx,a,1,0\nx,b,0,1\ny,a,1,0\n",
         "sample 'y' has no row for member 'b'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(p("bad.csv"), bad[i].text);
        pr = NULL;
        ASSERT_STATUS(kdens_predictions_load_csv(p("bad.csv"), &pr), KDENS_E_FORMAT);
        assert_null(pr);
        if (!strstr(kdens_errmsg(), bad[i].message))
            fail_msg("case %zu: '%s' does not say '%s'", i, kdens_errmsg(), bad[i].message);
    }
    FILE *f = fopen(p("nul.csv"), "wb");
    fwrite("sample,member,p0\nx\0y,a,1\n", 1, 26, f);
    fclose(f);
    ASSERT_STATUS(kdens_predictions_load_csv(p("nul.csv"), &pr), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "NUL byte at offset 18"));
    ASSERT_STATUS(kdens_predictions_load_csv(p("none.csv"), &pr), KDENS_E_IO);
    ASSERT_STATUS(kdens_predictions_load_csv(NULL, &pr), KDENS_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_and_predictions),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_csv_import),
    };
    return cmocka_run_group_tests_name("ensembles", tests, setup, teardown);
}

/* The short part of the suite that `make check-portable` runs on processors
 * this machine is not (under qemu-x86_64-static: -cpu Haswell has AVX2 and
 * FMA but no AVX-512, -cpu Nehalem has neither) and under KDENS_CPU:
 * create models, train a few steps, save, load, predict, fuse with every
 * rule.  With PORTABLE_WRITE=FILE the results are written as the reference
 * (the native run); with PORTABLE_REF=FILE they are compared with it within
 * the tolerances docs/design.md promises across kernel paths, and the
 * reference run's saved models are loaded and must predict what they
 * predicted natively.  PORTABLE_EXPECT=PATH checks which path was chosen. */
#include "../testutil.h"

#include <math.h>

/* docs/design.md, "Kernel paths and what is promised". */
#define TOL_PREDICT 1e-5f /* the same weights: probabilities */
#define TOL_TRAINED 1e-4f /* after TRAIN_STEPS steps of SGD from the same seed */
/* ... between a path with FMA and one without (generic): Winograd's rounding
 * differs by ~1e-5 between them, enough to flip ReLUs whose input is within
 * rounding of zero in this tiny batch; measured 0.028 for ResNet-20.  A
 * sanity bound: a wrong gradient on one path moves these by far more. */
#define TOL_TRAINED_MIXED 0.1f
#define TRAIN_STEPS 4

enum { N = 16, SIDE = 10, CLASSES = 5 };
static const char *const archs[] = {"test", "resnet20", "mobilenet_small"};
#define N_ARCHS 3
#define MAX_RULES 32 /* kdens_fusion_count() is checked against it */

typedef struct results {
    float probs[N_ARCHS][N * CLASSES];
    int32_t decisions[MAX_RULES][N]; /* every rule on probs */
} results;

/* Whether this run and the reference differ in having FMA (generic has none). */
static bool mixed_fma(void)
{
    const char *ref_path = getenv("PORTABLE_REF_PATH");
    bool here = strcmp(kdens_cpu_path(), "generic") == 0;
    return ref_path && *ref_path && here != (strcmp(ref_path, "generic") == 0);
}

static char workdir[4096];

static void inputs(float *x, int32_t *y)
{
    tu_fill(x, (size_t)N * SIDE * SIDE, 1.0f, 2024);
    for (int i = 0; i < N; i++)
        y[i] = i % CLASSES;
}

/* Train arch for TRAIN_STEPS, save it, load it back, predict. */
static void train_save_load(int a, float *probs)
{
    float x[N * SIDE * SIDE];
    int32_t y[N];
    inputs(x, y);
    kdens_model *m;
    kdens_optimizer *opt;
    ASSERT_OK(kdens_model_create(archs[a], SIDE, SIDE, 1, CLASSES, 7, &m));
    ASSERT_OK(kdens_optimizer_create(KDENS_OPT_SGD, 0.05f, &opt));
    ASSERT_OK(kdens_optimizer_set_momentum(opt, 0.9f, 0));
    ASSERT_OK(kdens_model_set_training(m, 1));
    for (int s = 0; s < TRAIN_STEPS; s++)
        ASSERT_OK(kdens_model_train_step(m, opt, x, N, y, NULL, NULL, NULL));
    char path[4400];
    snprintf(path, sizeof path, "%s/%s-%s.kdm", workdir, archs[a], kdens_cpu_path());
    ASSERT_OK(kdens_model_save(m, path));
    kdens_model *back;
    ASSERT_OK(kdens_model_load(path, &back));
    float direct[N * CLASSES];
    ASSERT_OK(kdens_model_predict(m, x, N, direct));
    ASSERT_OK(kdens_model_predict(back, x, N, probs));
    assert_memory_equal(direct, probs, sizeof direct); /* a load changes no bit */
    kdens_model_free(back);
    kdens_optimizer_free(opt);
    kdens_model_free(m);
}

/* Computed once, by whichever test needs it first. */
static results computed;
static bool have_computed;

static const results *compute(void)
{
    if (!have_computed) {
        for (int a = 0; a < N_ARCHS; a++)
            train_save_load(a, computed.probs[a]);
        assert_true(kdens_fusion_count() <= MAX_RULES);
        for (int rule = 0; rule < kdens_fusion_count(); rule++)
            ASSERT_OK(kdens_fuse((kdens_fusion)rule, &computed.probs[0][0], N_ARCHS, N, CLASSES,
                                 computed.decisions[rule], NULL));
    }
    have_computed = true;
    return &computed;
}

static void compare(const float *got, const float *want, size_t n, float tol, const char *what)
{
    float worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(fabsf(got[i] - want[i]) <= tol))
            fail_msg("%s: value %zu is %.8g on %s, %.8g in the reference (tolerance %g)", what,
                     i, (double)got[i], kdens_cpu_path(), (double)want[i], (double)tol);
        worst = fmaxf(worst, fabsf(got[i] - want[i]));
    }
    printf("%s on %s: largest difference from the reference %.3g (tolerance %g)\n", what,
           kdens_cpu_path(), (double)worst, (double)tol);
}

static void test_path_chosen(void **state)
{
    (void)state;
    const char *want = getenv("PORTABLE_EXPECT");
    printf("kernel path: %s (supported: %s)\n", kdens_cpu_path(), kdens_cpu_paths());
    if (want && *want)
        assert_string_equal(kdens_cpu_path(), want);
}

static void test_train_save_load_predict(void **state)
{
    (void)state;
    const results *r = compute();
    const char *write = getenv("PORTABLE_WRITE"), *ref = getenv("PORTABLE_REF");
    if (write && *write) {
        FILE *f = fopen(write, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(r, sizeof *r, 1, f), 1);
        assert_int_equal(fclose(f), 0);
    }
    if (ref && *ref) {
        results want;
        FILE *f = fopen(ref, "rb");
        assert_non_null(f);
        assert_int_equal(fread(&want, sizeof want, 1, f), 1);
        fclose(f);
        for (int a = 0; a < N_ARCHS; a++)
            compare(r->probs[a], want.probs[a], N * CLASSES,
                    mixed_fma() ? TOL_TRAINED_MIXED : TOL_TRAINED, archs[a]);
    }
}

/* Models saved by the reference run (another path, maybe another machine)
 * predict here what they predicted there. */
static void test_models_from_reference_run(void **state)
{
    (void)state;
    const char *ref = getenv("PORTABLE_REF"), *ref_path = getenv("PORTABLE_REF_PATH");
    if (!ref || !*ref || !ref_path || !*ref_path)
        skip();
    results want;
    FILE *f = fopen(ref, "rb");
    assert_non_null(f);
    assert_int_equal(fread(&want, sizeof want, 1, f), 1);
    fclose(f);
    float x[N * SIDE * SIDE], probs[N * CLASSES];
    int32_t y[N];
    inputs(x, y);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", ref);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    for (int a = 0; a < N_ARCHS; a++) {
        char path[4400], name[128];
        snprintf(name, sizeof name, "%s-%s.kdm", archs[a], ref_path);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        kdens_model *m;
        ASSERT_OK(kdens_model_load(path, &m));
        ASSERT_OK(kdens_model_predict(m, x, N, probs));
        char what[160];
        snprintf(what, sizeof what, "%s saved on %s", archs[a], ref_path);
        compare(probs, want.probs[a], N * CLASSES, TOL_PREDICT, what);
        kdens_model_free(m);
    }
}

/* Every fusion rule: on the reference run's predictions it decides here
 * exactly what it decided there (the rules' code has no path-dependent
 * arithmetic), and on this run's own predictions the same as on the
 * reference's wherever no member is within the tolerance of a tie (between
 * paths with the same FMA semantics; see TOL_TRAINED_MIXED otherwise). */
static void test_fusion_rules(void **state)
{
    (void)state;
    const char *ref = getenv("PORTABLE_REF");
    results want;
    bool have_ref = false;
    if (ref && *ref) {
        FILE *f = fopen(ref, "rb");
        assert_non_null(f);
        have_ref = fread(&want, sizeof want, 1, f) == 1;
        fclose(f);
        assert_true(have_ref);
    }
    const results *r = compute();
    for (int rule = 0; rule < kdens_fusion_count(); rule++) {
        for (int i = 0; i < N; i++)
            assert_true(r->decisions[rule][i] >= 0 && r->decisions[rule][i] < CLASSES);
        if (!have_ref)
            continue;
        const char *name = kdens_fusion_name((kdens_fusion)rule);
        int32_t here[N];
        ASSERT_OK(kdens_fuse((kdens_fusion)rule, &want.probs[0][0], N_ARCHS, N, CLASSES, here,
                             NULL));
        for (int i = 0; i < N; i++)
            if (here[i] != want.decisions[rule][i])
                fail_msg("%s: sample %d of the reference's predictions decided %d here, %d "
                         "there", name, i, here[i], want.decisions[rule][i]);
        if (mixed_fma())
            continue;
        for (int i = 0; i < N; i++) {
            /* a sample where some member's two classes are nearly tied may
             * rank them either way; elsewhere the decision must match */
            bool near_tie = false;
            for (int a = 0; a < N_ARCHS; a++)
                for (int c = 0; c < CLASSES; c++)
                    for (int d = c + 1; d < CLASSES; d++)
                        near_tie |= fabsf(want.probs[a][i * CLASSES + c] -
                                          want.probs[a][i * CLASSES + d]) < 4 * TOL_TRAINED;
            if (!near_tie && r->decisions[rule][i] != want.decisions[rule][i])
                fail_msg("%s: sample %d decided %d here, %d in the reference", name, i,
                         r->decisions[rule][i], want.decisions[rule][i]);
        }
    }
}

static char *own_tmp; /* made here when PORTABLE_DIR is not given */

static int setup(void **state)
{
    (void)state;
    const char *dir = getenv("PORTABLE_DIR");
    if (!dir || !*dir)
        dir = own_tmp = tu_tmpdir();
    snprintf(workdir, sizeof workdir, "%s", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (own_tmp)
        tu_rm_rf(own_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_chosen),
        cmocka_unit_test(test_train_save_load_predict),
        cmocka_unit_test(test_models_from_reference_run),
        cmocka_unit_test(test_fusion_rules),
    };
    return cmocka_run_group_tests_name("portable", tests, setup, teardown);
}

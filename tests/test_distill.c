/* The distiller: each mode's loss against a direct computation from the
 * teachers' and the student's logits (and its gradient by finite
 * differences), the T^2 scaling, cached targets equal to online ones,
 * mimic_all export equivalence, every mode end to end, the supernet
 * aggregators learning a separable problem, the experiment driver and its
 * registry, and bad input. */
#include "testutil.h"

#include "kdens_experiment.h"

#include "data/data.h"
#include "distill/distill.h"

#include <math.h>

enum { H = 6, K = 3, N = 40, T = 3 };

static char *dir;
static kdens_dataset *train_set;

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
    FILE *f = fopen(p("teachers.csv"), "w");
    fprintf(f, "model_location,dataset,architecture,fraction,uuid,train_loss,train_accuracy,"
               "val_loss,val_accuracy,test_loss,test_accuracy\n");
    for (int i = 0; i < T; i++) {
        kdens_model *m;
        if (kdens_model_create("test", H, H, 1, K, (uint64_t)i + 10, &m) != KDENS_OK)
            return -1;
        /* sharper, more varied teachers than a fresh initialisation */
        for (size_t w = 0; w < m->n_trainable; w++)
            m->weights[w] *= 3.0f;
        kdens_model_save(m, p(i == 0 ? "t0.kdm" : i == 1 ? "t1.kdm" : "t2.kdm"));
        fprintf(f, "%s,toy,test,0.5,uuid%d,0,0,0,0,0,0\n",
                p(i == 0 ? "t0.kdm" : i == 1 ? "t1.kdm" : "t2.kdm"), i);
        kdens_model_free(m);
    }
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kdens_dataset_free(train_set);
    tu_rm_rf(dir);
    return 0;
}

static kdens_ensemble *teachers(void)
{
    kdens_ensemble *ens;
    ASSERT_OK(kdens_ensemble_from_registry(p("teachers.csv"), "toy", "test", 0, 0, 0, &ens));
    assert_int_equal(kdens_ensemble_size(ens), T);
    return ens;
}

static kdens_model *student_template(void)
{
    kdens_model *m;
    ASSERT_OK(kdens_model_create("test", H, H, 1, K, 77, &m));
    return m;
}

/* A smooth student (tanh, average pooling) for finite differences. */
static kdens_model *smooth_template(void)
{
    kdens_model *m;
    ASSERT_OK(kdens_model_from_spec("conv filters=4 kernel=3 padding=same\ntanh\n"
                                    "avgpool size=2\nflatten\ndense units=classes\nsoftmax\n",
                                    H, H, 1, K, 77, &m));
    return m;
}

/* The first n training images as the student sees them. */
static float *images(size_t n)
{
    float *x = malloc(sizeof(float) * n * H * H);
    for (size_t i = 0; i < n * H * H; i++)
        x[i] = train_set->store->pixels[i] / 255.0f;
    return x;
}

static void softmax_d(const float *z, double t, double *p)
{
    double mx = z[0], s = 0;
    for (int i = 1; i < K; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < K; i++)
        s += p[i] = exp((z[i] - mx) / t);
    for (int i = 0; i < K; i++)
        p[i] /= s;
}

static double kl_d(const double *q, const double *pp)
{
    double s = 0;
    for (int i = 0; i < K; i++)
        s += q[i] > 0 ? q[i] * log(q[i] / pp[i]) : 0;
    return s;
}

/* The loss of the mode computed directly from logits, in double. */
static double direct_loss(kdens_distill_mode mode, kdens_distiller *d, const float *x, size_t n,
                          const int32_t *y, double alpha, double t)
{
    kdens_ensemble *ens = d->teachers;
    float *zt = malloc(sizeof(float) * T * n * K), *zs = malloc(sizeof(float) * n * K);
    float *zh = malloc(sizeof(float) * T * n * K);
    for (int j = 0; j < T; j++)
        ASSERT_OK(kdens_model_predict_logits(kdens_ensemble_member(ens, j), x, n, zt + j * n * K));
    ASSERT_OK(kdens_model_predict_logits(d->student, x, n, zs));
    bool heads = mode == KDENS_DISTILL_MIMIC_ALL || mode == KDENS_DISTILL_MIMIC_ALL_PROBS;
    if (heads)
        for (int j = 0; j < T; j++)
            ASSERT_OK(kd_model_infer_node(d->student, x, n, kd_loss_of(d->student)->head_nodes[j],
                                          zh + j * n * K));
    double total = 0;
    for (size_t r = 0; r < n; r++) {
        double ps1[K], pst[K], q[T][K], qm[K] = {0};
        softmax_d(zs + r * K, 1, ps1);
        softmax_d(zs + r * K, t, pst);
        if (mode == KDENS_DISTILL_MIMIC_ALL_PROBS) { /* the mean of the heads' softmax */
            double ph[K];
            memset(ps1, 0, sizeof ps1);
            for (int j = 0; j < T; j++) {
                softmax_d(zh + (j * n + r) * K, 1, ph);
                for (int i = 0; i < K; i++)
                    ps1[i] += ph[i] / T;
            }
        }
        for (int j = 0; j < T; j++) {
            softmax_d(zt + (j * n + r) * K, t, q[j]);
            for (int i = 0; i < K; i++)
                qm[i] += q[j][i] / T;
        }
        double soft = 0;
        if (mode == KDENS_DISTILL_OUTPUT_AVG) {
            soft = kl_d(qm, pst);
        } else if (mode == KDENS_DISTILL_LOSS_AVG) {
            for (int j = 0; j < T; j++)
                soft += kl_d(q[j], pst) / T;
        } else { /* mimic_all (either average): head j against teacher j */
            for (int j = 0; j < T; j++) {
                double ph[K];
                softmax_d(zh + (j * n + r) * K, t, ph);
                soft += kl_d(q[j], ph) / T;
            }
        }
        total += alpha * -log(ps1[y[r]]) + (1 - alpha) * t * t * soft;
    }
    free(zt);
    free(zs);
    free(zh);
    return total / n;
}

/* Central finite differences of the loss against the analytic gradient,
 * over a sample of every trainable tensor. */
static void check_gradient(kdens_model *m, const float *x, size_t n, const int32_t *y,
                           const float *soft)
{
    float loss;
    ASSERT_OK(kdens_model_forward_loss(m, x, n, y, soft, &loss, NULL));
    ASSERT_OK(kdens_model_backward(m));
    float *g = malloc(sizeof(float) * m->n_trainable);
    memcpy(g, m->grads, sizeof(float) * m->n_trainable);
    int checked = 0;
    for (int pi = 0; pi < m->n_params; pi++) {
        const kd_param *prm = &m->params[pi];
        if (!prm->trainable)
            continue;
        for (size_t k = 0; k < prm->count; k += prm->count / 5 + 1) {
            /* three step sizes: a step across a kink (relu, max pool) spoils
             * one estimate, rarely all three */
            static const float steps[3] = {4e-3f, 1e-3f, 2.5e-4f};
            float *w = m->weights + prm->offset + k, saved = *w;
            double analytic = g[prm->offset + k], numeric = 0;
            bool ok = false;
            for (int s = 0; s < 3 && !ok; s++) {
                float lp, lm;
                *w = saved + steps[s];
                ASSERT_OK(kdens_model_forward_loss(m, x, n, y, soft, &lp, NULL));
                *w = saved - steps[s];
                ASSERT_OK(kdens_model_forward_loss(m, x, n, y, soft, &lm, NULL));
                *w = saved;
                numeric = ((double)lp - lm) / (2 * steps[s]);
                ok = fabs(numeric - analytic) <= 2e-3 + 2e-2 * fabs(numeric);
            }
            if (!ok)
                fail_msg("%s[%zu]: analytic %g, numeric %g", prm->name, k, analytic, numeric);
            checked++;
        }
    }
    assert_true(checked > 10);
    free(g);
}

static void test_loss_modes(void **state)
{
    (void)state;
    kdens_ensemble *ens = teachers();
    kdens_model *tmpl = smooth_template();
    const kdens_distill_mode modes[4] = {KDENS_DISTILL_OUTPUT_AVG, KDENS_DISTILL_LOSS_AVG,
                                         KDENS_DISTILL_MIMIC_ALL, KDENS_DISTILL_MIMIC_ALL_PROBS};
    const size_t n = 8;
    float *x = images(n);
    int32_t y[8];
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(i % K);
    for (int mi = 0; mi < 4; mi++) {
        kdens_distiller *d;
        ASSERT_OK(kdens_distiller_create(ens, tmpl, modes[mi], train_set, NULL, &d));
        ASSERT_OK(kdens_distiller_set_cache(d, 0, NULL));
        ASSERT_OK(kd_distill_prepare(d));
        size_t per = (size_t)d->sets * K;
        assert_int_equal(d->sets, modes[mi] == KDENS_DISTILL_OUTPUT_AVG ? 1 : T);
        float *soft = malloc(sizeof(float) * n * per);
        size_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        ASSERT_OK(kd_distill_targets(d, x, idx, n, soft));
        static const float alphas[3] = {0.3f, 0.0f, 1.0f}, temps[3] = {2.0f, 4.0f, 1.0f};
        for (int c = 0; c < 3; c++) {
            ASSERT_OK(kdens_distiller_set_loss(d, alphas[c], temps[c]));
            /* targets at this temperature */
            ASSERT_OK(kd_distill_targets(d, x, idx, n, soft));
            float loss;
            ASSERT_OK(kdens_model_forward_loss(d->student, x, n, y, soft, &loss, NULL));
            double want = direct_loss(modes[mi], d, x, n, y, alphas[c], temps[c]);
            if (fabs(loss - want) > 1e-4 * (1 + fabs(want)))
                fail_msg("%s alpha %g T %g: loss %.7f, direct %.7f",
                         kdens_distill_mode_name(modes[mi]), (double)alphas[c],
                         (double)temps[c], (double)loss, want);
            if (alphas[c] == 0.0f) { /* T^2 scaling: the loss is T^2 times the divergence */
                double unscaled = direct_loss(modes[mi], d, x, n, y, 0, temps[c]) /
                                  (temps[c] * temps[c]);
                assert_true(fabs(loss / unscaled - 16.0) < 1e-3);
            }
        }
        ASSERT_OK(kdens_distiller_set_loss(d, 0.3f, 2.0f));
        ASSERT_OK(kd_distill_targets(d, x, idx, n, soft));
        check_gradient(d->student, x, n, y, soft);
        free(soft);
        kdens_distiller_free(d);
    }
    free(x);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
}

static void test_cache_equals_online(void **state)
{
    (void)state;
    kdens_ensemble *ens = teachers();
    kdens_model *tmpl = student_template();
    float *x = images(N);
    size_t idx[N];
    for (size_t i = 0; i < N; i++)
        idx[i] = i;
    for (int mode = 0; mode < kdens_distill_mode_count(); mode++) {
        kdens_distiller *d;
        ASSERT_OK(kdens_distiller_create(ens, tmpl, (kdens_distill_mode)mode, train_set, NULL,
                                         &d));
        ASSERT_OK(kdens_distiller_set_loss(d, 0.5f, 3.0f));
        size_t per = (size_t)d->sets * K;
        float *cached = malloc(sizeof(float) * N * per), *online = malloc(sizeof(float) * N * per);
        /* in memory, then in a file */
        for (int file = 0; file < 2; file++) {
            ASSERT_OK(kdens_distiller_set_cache(d, 1, file ? p("cache.bin") : NULL));
            ASSERT_OK(kd_distill_prepare(d));
            assert_non_null(d->cached);
            assert_true(file ? d->map != NULL : d->map == NULL);
            ASSERT_OK(kd_distill_targets(d, NULL, idx, N, cached));
            kd_distill_release_targets(d);
            ASSERT_OK(kdens_distiller_set_cache(d, 0, NULL));
            ASSERT_OK(kd_distill_prepare(d));
            assert_null(d->cached);
            ASSERT_OK(kd_distill_targets(d, x, idx, N, online));
            for (size_t i = 0; i < N * per; i++)
                if (fabsf(cached[i] - online[i]) > 1e-6f)
                    fail_msg("%s: cached target %zu is %g, online %g",
                             kdens_distill_mode_name((kdens_distill_mode)mode), i,
                             (double)cached[i], (double)online[i]);
            /* every target row is a distribution */
            for (size_t r = 0; r < N * (size_t)d->sets; r++) {
                double s = 0;
                for (int c = 0; c < K; c++)
                    s += online[r * K + c];
                assert_true(fabs(s - 1) < 1e-5);
            }
        }
        free(cached);
        free(online);
        kdens_distiller_free(d);
    }
    free(x);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
}

static void test_export(void **state)
{
    (void)state;
    kdens_ensemble *ens = teachers();
    kdens_model *tmpl = student_template();
    kdens_distiller *d;
    ASSERT_OK(kdens_distiller_create(ens, tmpl, KDENS_DISTILL_MIMIC_ALL, train_set, NULL, &d));
    kdens_model *s = kdens_distiller_student(d);
    assert_int_equal(kd_loss_of(s)->n_heads, T);
    uint64_t seed = 5;
    for (size_t i = 0; i < s->n_trainable; i++) /* heads unlike one another */
        s->weights[i] += 0.3f * tu_randn(&seed);
    kdens_model *flat;
    ASSERT_OK(kdens_distiller_export(d, &flat));
    assert_int_equal(kd_loss_of(flat)->n_heads, 0);
    assert_int_equal(kdens_model_param_count(flat), kdens_model_param_count(tmpl));
    float *x = images(N), *a = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N * K);
    ASSERT_OK(kdens_model_predict(s, x, N, a));
    ASSERT_OK(kdens_model_predict(flat, x, N, b));
    double worst = 0;
    for (size_t i = 0; i < N * K; i++)
        worst = fmax(worst, fabs(a[i] - b[i]));
    assert_true(worst < 1e-5);
    /* a saved and reloaded export predicts the same */
    ASSERT_OK(kdens_model_save(flat, p("flat.kdm")));
    kdens_model *back;
    ASSERT_OK(kdens_model_load(p("flat.kdm"), &back));
    ASSERT_OK(kdens_model_predict(back, x, N, a));
    assert_memory_equal(a, b, sizeof(float) * N * K);
    kdens_model_free(back);
    kdens_model_free(flat);
    /* mimic_all_probs: a mean of softmaxes does not fold into one layer; the
     * export keeps the heads, predicts as the student, and is the mean of the
     * heads' probabilities computed here */
    kdens_distiller_free(d);
    ASSERT_OK(kdens_distiller_create(ens, tmpl, KDENS_DISTILL_MIMIC_ALL_PROBS, train_set, NULL,
                                     &d));
    s = kdens_distiller_student(d);
    for (size_t i = 0; i < s->n_trainable; i++)
        s->weights[i] += 0.3f * tu_randn(&seed);
    ASSERT_OK(kdens_distiller_export(d, &flat));
    assert_int_equal(kdens_model_param_count(flat), kdens_model_param_count(s));
    ASSERT_OK(kdens_model_predict(s, x, N, a));
    ASSERT_OK(kdens_model_predict(flat, x, N, b));
    assert_memory_equal(a, b, sizeof(float) * N * K);
    float *zh = malloc(sizeof(float) * N * K);
    double *mean = calloc(N * K, sizeof(double));
    for (int j = 0; j < T; j++) {
        ASSERT_OK(kd_model_infer_node(s, x, N, kd_loss_of(s)->head_nodes[j], zh));
        for (size_t r = 0; r < N; r++) {
            double ph[K];
            softmax_d(zh + r * K, 1, ph);
            for (int i = 0; i < K; i++)
                mean[r * K + i] += ph[i] / T;
        }
    }
    worst = 0;
    for (size_t i = 0; i < N * K; i++)
        worst = fmax(worst, fabs(b[i] - mean[i]));
    if (worst > 1e-5)
        fail_msg("mimic_all_probs predicts %g away from the mean of its heads' softmax", worst);
    free(zh);
    free(mean);
    kdens_model_free(flat);
    /* other modes export a plain copy */
    kdens_distiller_free(d);
    ASSERT_OK(kdens_distiller_create(ens, tmpl, KDENS_DISTILL_OUTPUT_AVG, train_set, NULL, &d));
    ASSERT_OK(kdens_distiller_export(d, &flat));
    ASSERT_OK(kdens_model_predict(kdens_distiller_student(d), x, N, a));
    ASSERT_OK(kdens_model_predict(flat, x, N, b));
    assert_memory_equal(a, b, sizeof(float) * N * K);
    kdens_model_free(flat);
    kdens_distiller_free(d);
    free(x);
    free(a);
    free(b);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
}

/* Every mode trains end to end, online and cached: with alpha 0 the student
 * learns to agree with its targets' top class. */
static void test_fit_every_mode(void **state)
{
    (void)state;
    kdens_ensemble *ens = teachers();
    kdens_model *tmpl = student_template();
    float *x = images(N), *probs = malloc(sizeof(float) * N * K);
    size_t idx[N];
    for (size_t i = 0; i < N; i++)
        idx[i] = i;
    for (int mode = 0; mode < kdens_distill_mode_count(); mode++) {
        for (int cache = 0; cache < 2; cache++) {
            kdens_distiller *d;
            /* no validation set: early stopping on the labels' loss would
             * stop a student that learns only from its targets */
            ASSERT_OK(kdens_distiller_create(ens, tmpl, (kdens_distill_mode)mode, train_set,
                                             NULL, &d));
            ASSERT_OK(kdens_distiller_set_cache(d, cache, NULL));
            ASSERT_OK(kdens_distiller_set_loss(d, 0.0f, 1.0f));
            kdens_trainer *t = kdens_distiller_trainer(d);
            ASSERT_OK(kdens_trainer_set_epochs(t, 40));
            ASSERT_OK(kdens_trainer_set_batch(t, 8));
            ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.01));
            ASSERT_OK(kdens_distiller_fit(d));
            /* the targets' top classes (sets averaged) */
            size_t per = (size_t)d->sets * K;
            float *soft = malloc(sizeof(float) * N * per);
            ASSERT_OK(kdens_distiller_set_cache(d, 0, NULL));
            ASSERT_OK(kd_distill_prepare(d));
            ASSERT_OK(kd_distill_targets(d, x, idx, N, soft));
            ASSERT_OK(kdens_model_predict(kdens_distiller_student(d), x, N, probs));
            int agree = 0;
            for (size_t i = 0; i < N; i++) {
                /* mimic_all predicts from the mean of its heads' logits: the
                 * normalised geometric mean of their distributions */
                bool geometric = mode == KDENS_DISTILL_MIMIC_ALL;
                double mean[K] = {0};
                for (size_t j = 0; j < per; j++)
                    mean[j % K] += geometric ? log(soft[i * per + j] + 1e-30) : soft[i * per + j];
                int want = 0, got = 0;
                for (int c = 1; c < K; c++) {
                    want = mean[c] > mean[want] ? c : want;
                    got = probs[i * K + c] > probs[i * K + got] ? c : got;
                }
                agree += want == got;
            }
            if (agree < N * 3 / 4)
                fail_msg("%s (cache %d): the student agrees with its targets on %d of %d",
                         kdens_distill_mode_name((kdens_distill_mode)mode), cache, agree, N);
            free(soft);
            kdens_distiller_free(d);
        }
    }
    free(x);
    free(probs);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
}

static void test_driver(void **state)
{
    (void)state;
    kdens_distill_job *job;
    ASSERT_STATUS(kdens_distill_job_create(dir, "toy/x", "test", "test", &job), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_create(dir, "toy", NULL, "test", &job), KDENS_E_ARG);
    ASSERT_OK(kdens_distill_job_create(dir, "toy", "test", "test", &job));
    ASSERT_OK(kdens_distill_job_set_teachers(job, 2));
    ASSERT_OK(kdens_distill_job_set_fraction(job, 0.5));
    ASSERT_OK(kdens_distill_job_set_repetitions(job, 2));
    ASSERT_OK(kdens_distill_job_set_mode(job, KDENS_DISTILL_MIMIC_ALL));
    ASSERT_OK(kdens_distill_job_set_epochs(job, 2));
    ASSERT_OK(kdens_distill_job_set_batch(job, 16));
    int done = -1;
    ASSERT_OK(kdens_distill_job_run(job, train_set, train_set, train_set, &done));
    assert_int_equal(done, 2);
    FILE *f = fopen(p("students.csv"), "r");
    assert_non_null(f);
    char line[8192];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "model_location,dataset,architecture,n_teachers,teachers_fraction,"
                              "mode,alpha,temperature,teachers_uuid,uuid,train_loss,"
                              "train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        rows++;
        int commas = 0;
        for (char *c = line; *c; c++)
            commas += *c == ',';
        assert_int_equal(commas, 15);
        assert_non_null(strstr(line, ",toy,test,2,0.5,mimic_all,0.5,1,uuid"));
        char path[4400];
        sscanf(line, "%4399[^,]", path);
        kdens_model *m; /* the saved student is the deployable single-head export */
        ASSERT_OK(kdens_model_load(path, &m));
        assert_string_equal(kdens_model_get_meta(m, "distill_mode"), "mimic_all");
        assert_int_equal(kdens_model_param_count(m), 160 + 144 * K + K);
        kdens_model_free(m);
    }
    fclose(f);
    assert_int_equal(rows, 2);
    /* run again: both students are registered, nothing is trained */
    ASSERT_OK(kdens_distill_job_run(job, train_set, train_set, train_set, &done));
    assert_int_equal(done, 0);
    /* fewer registered teachers than asked */
    ASSERT_OK(kdens_distill_job_set_teachers(job, 4));
    ASSERT_STATUS(kdens_distill_job_run(job, train_set, NULL, NULL, &done), KDENS_E_NOTFOUND);
    /* settings out of range are refused by the setters, the job unchanged */
    ASSERT_STATUS(kdens_distill_job_set_alpha(job, 1.5), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_alpha(job, NAN), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_temperature(job, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_temperature(job, 1e300), KDENS_E_ARG); /* inf as float */
    ASSERT_STATUS(kdens_distill_job_set_teachers(job, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_fraction(job, 1.5), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_fraction(job, -0.1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_mode(job, (kdens_distill_mode)kdens_distill_mode_count()),
                  KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_fusion(job, KDENS_FUSE_KEMENY), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_schedule(job, KDENS_SCHEDULE_CYCLIC), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_epochs(job, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_lr(job, NAN), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_set_repetitions(NULL, 1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distill_job_run(NULL, train_set, NULL, NULL, &done), KDENS_E_ARG);
    kdens_distill_job_free(job);
    kdens_distill_job_free(NULL);
}

static void test_bad_input(void **state)
{
    (void)state;
    kdens_ensemble *ens = teachers();
    kdens_model *tmpl = student_template(), *other;
    kdens_distiller *d = NULL;
    ASSERT_OK(kdens_model_create("test", H, H, 1, K + 1, 1, &other));
    ASSERT_STATUS(kdens_distiller_create(ens, other, KDENS_DISTILL_OUTPUT_AVG, train_set, NULL,
                                         &d),
                  KDENS_E_SHAPE);
    assert_non_null(strstr(kdens_errmsg(), "uuid0"));
    kdens_model_free(other);
    ASSERT_OK(kdens_model_create("test", H + 2, H, 1, K, 1, &other));
    ASSERT_STATUS(kdens_distiller_create(ens, other, KDENS_DISTILL_OUTPUT_AVG, train_set, NULL,
                                         &d),
                  KDENS_E_SHAPE);
    kdens_model_free(other);
    ASSERT_STATUS(kdens_distiller_create(ens, tmpl, (kdens_distill_mode)42, train_set, NULL, &d),
                  KDENS_E_ARG);
    kdens_distill_mode mode;
    ASSERT_STATUS(kdens_distill_mode_from_name("nope", &mode), KDENS_E_NOTFOUND);
    ASSERT_OK(kdens_distill_mode_from_name("supernet2", &mode));
    assert_int_equal(mode, KDENS_DISTILL_SUPERNET2);
    kdens_ensemble *empty;
    ASSERT_OK(kdens_ensemble_create(&empty));
    ASSERT_STATUS(kdens_distiller_create(empty, tmpl, KDENS_DISTILL_OUTPUT_AVG, train_set, NULL,
                                         &d),
                  KDENS_E_ARG);
    kdens_ensemble_free(empty);
    assert_null(d);
    ASSERT_OK(kdens_distiller_create(ens, tmpl, KDENS_DISTILL_FUSION, train_set, NULL, &d));
    ASSERT_STATUS(kdens_distiller_set_loss(d, -0.1f, 1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distiller_set_loss(d, 0.5f, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distiller_set_loss(d, 0.5f, -2), KDENS_E_ARG);
    ASSERT_STATUS(kdens_distiller_set_fusion(d, KDENS_FUSE_KEMENY), KDENS_E_ARG);
    ASSERT_OK(kdens_distiller_set_fusion(d, KDENS_FUSE_SCHULZE));
    /* a cache file that cannot be created */
    ASSERT_OK(kdens_distiller_set_cache(d, 1, "/nonexistent/dir/cache.bin"));
    ASSERT_STATUS(kdens_distiller_fit(d), KDENS_E_IO);
    /* an existing file is refused, never truncated or deleted */
    FILE *f = fopen(p("precious.bin"), "wb");
    assert_non_null(f);
    fputs("keep me", f);
    fclose(f);
    ASSERT_OK(kdens_distiller_set_cache(d, 1, p("precious.bin")));
    ASSERT_STATUS(kdens_distiller_fit(d), KDENS_E_IO);
    char kept[16] = {0};
    f = fopen(p("precious.bin"), "rb");
    assert_non_null(f);
    assert_int_equal(fread(kept, 1, sizeof kept - 1, f), 7);
    fclose(f);
    assert_string_equal(kept, "keep me");
    kdens_distiller_free(d);
    /* mimic_all needs a dense classifier: a spec ending in a 1x1 convolution */
    ASSERT_OK(kdens_model_from_spec("gap\nconv filters=classes\nflatten\nsoftmax\n", H, H, 1, K, 1,
                                    &other));
    ASSERT_STATUS(kdens_distiller_create(ens, other, KDENS_DISTILL_MIMIC_ALL, train_set, NULL, &d),
                  KDENS_E_ARG);
    kdens_model_free(other);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
}

/* The targets of the single-target modes from a direct computation:
 * supernet's softmax(aggregator(concatenated logits) / T), fusion's Borda
 * scores as a distribution tempered by T. */
static void test_targets_direct(void **state)
{
    (void)state;
    kdens_ensemble *ens = teachers();
    kdens_model *tmpl = student_template();
    const size_t n = 6;
    float *x = images(n), zt[T][6][K], soft[6][K], cat[6][T * K], za[6][K];
    size_t idx[6] = {0, 1, 2, 3, 4, 5};
    for (int j = 0; j < T; j++)
        ASSERT_OK(kdens_model_predict_logits(kdens_ensemble_member(ens, j), x, n, &zt[j][0][0]));
    const double t = 3;
    /* supernet */
    kdens_distiller *d;
    ASSERT_OK(kdens_distiller_create(ens, tmpl, KDENS_DISTILL_SUPERNET, train_set, NULL, &d));
    ASSERT_OK(kdens_distiller_set_loss(d, 0.5f, (float)t));
    ASSERT_OK(kdens_distiller_set_cache(d, 0, NULL));
    ASSERT_OK(kd_distill_prepare(d));
    assert_non_null(d->aggregator);
    ASSERT_OK(kd_distill_targets(d, x, idx, n, &soft[0][0]));
    for (size_t r = 0; r < n; r++)
        for (int j = 0; j < T; j++)
            memcpy(cat[r] + j * K, zt[j][r], sizeof(float) * K);
    ASSERT_OK(kdens_model_predict_logits(d->aggregator, &cat[0][0], n, &za[0][0]));
    for (size_t r = 0; r < n; r++) {
        double want[K];
        softmax_d(za[r], t, want);
        for (int c = 0; c < K; c++)
            assert_true(fabs(soft[r][c] - want[c]) < 1e-6);
    }
    kdens_distiller_free(d);
    /* fusion by Borda: each teacher gives K-1-rank points */
    ASSERT_OK(kdens_distiller_create(ens, tmpl, KDENS_DISTILL_FUSION, train_set, NULL, &d));
    ASSERT_OK(kdens_distiller_set_fusion(d, KDENS_FUSE_BORDA));
    ASSERT_OK(kdens_distiller_set_loss(d, 0.5f, (float)t));
    ASSERT_OK(kdens_distiller_set_cache(d, 0, NULL));
    ASSERT_OK(kd_distill_prepare(d));
    ASSERT_OK(kd_distill_targets(d, x, idx, n, &soft[0][0]));
    for (size_t r = 0; r < n; r++) {
        double points[K] = {0}, total = 0, tempered[K], tsum = 0;
        for (int j = 0; j < T; j++)
            for (int c = 0; c < K; c++) {
                int above = 0; /* classes ranked above c by teacher j (ties: lower first) */
                for (int o = 0; o < K; o++)
                    above += zt[j][r][o] > zt[j][r][c] || (zt[j][r][o] == zt[j][r][c] && o < c);
                points[c] += K - 1 - above;
            }
        for (int c = 0; c < K; c++)
            total += points[c];
        for (int c = 0; c < K; c++)
            tsum += tempered[c] = points[c] > 0 ? pow(points[c] / total, 1 / t) : 0;
        for (int c = 0; c < K; c++)
            if (fabs(soft[r][c] - tempered[c] / tsum) > 1e-6)
                fail_msg("sample %zu class %d: fusion target %g, direct %g", r, c,
                         (double)soft[r][c], tempered[c] / tsum);
    }
    kdens_distiller_free(d);
    free(x);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
}

/* n images whose class c has bright rows 2c and 2c + 1 (noise elsewhere):
 * separable through the teachers' outputs. */
static kdens_dataset *striped_set(size_t n, uint64_t seed)
{
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(n, H, H, 1, K, &ds));
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % K);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < H; x++) {
                r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                ds->store->pixels[(i * H + y) * H + x] =
                    (uint8_t)((y / 2 == c ? 160 : 20) + (r >> 59));
            }
        ds->store->labels[i] = c;
    }
    return ds;
}

/* Accuracy and mean cross-entropy of the aggregator's distributions (the
 * targets at T = 1) on ds. */
static void aggregator_score(kdens_distiller *d, const kdens_dataset *ds, double *acc,
                             double *loss)
{
    size_t n = ds->n, right = 0;
    float *x = malloc(sizeof(float) * n * H * H), *soft = malloc(sizeof(float) * n * K);
    size_t *idx = calloc(n, sizeof(size_t));
    for (size_t i = 0; i < n * H * H; i++)
        x[i] = ds->store->pixels[i] / 255.0f;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    ASSERT_OK(kd_distill_targets(d, x, idx, n, soft));
    *loss = 0;
    for (size_t i = 0; i < n; i++) {
        int y = ds->store->labels[i], best = 0;
        for (int c = 1; c < K; c++)
            best = soft[i * K + c] > soft[i * K + best] ? c : best;
        right += best == y;
        *loss -= log(fmax(soft[i * K + y], 1e-30)) / (double)n;
    }
    *acc = (double)right / (double)n;
    free(x);
    free(soft);
    free(idx);
}

/* supernet and supernet2 train their aggregator: on a problem separable
 * through the teachers' outputs, the trained aggregator classifies held-out
 * samples far better than chance and than the same layer untrained. */
static void test_aggregator_learns(void **state)
{
    (void)state;
    kdens_ensemble *ens = teachers();
    kdens_model *tmpl = student_template();
    kdens_dataset *tr = striped_set(600, 1), *va = striped_set(60, 2), *te = striped_set(60, 3);
    const kdens_distill_mode modes[2] = {KDENS_DISTILL_SUPERNET, KDENS_DISTILL_SUPERNET2};
    for (int mi = 0; mi < 2; mi++) {
        kdens_distiller *d;
        ASSERT_OK(kdens_distiller_create(ens, tmpl, modes[mi], tr, va, &d));
        ASSERT_OK(kdens_distiller_set_loss(d, 0.5f, 1.0f));
        ASSERT_OK(kdens_distiller_set_cache(d, 0, NULL));
        ASSERT_OK(kd_distill_prepare(d));
        double acc, loss, acc0, loss0;
        aggregator_score(d, te, &acc, &loss);
        /* the same layer, untrained */
        kdens_model *trained = d->aggregator, *fresh;
        ASSERT_OK(kdens_model_from_spec("dense units=classes\nsoftmax\n", 1, 1,
                                        trained->in_c, K, 99, &fresh));
        d->aggregator = fresh;
        aggregator_score(d, te, &acc0, &loss0);
        d->aggregator = trained;
        kdens_model_free(fresh);
        if (getenv("KD_TEST_VERBOSE"))
            print_message("%s: untrained acc %.3f loss %.4f, trained acc %.3f loss %.4f\n",
                          kdens_distill_mode_name(modes[mi]), acc0, loss0, acc, loss);
        if (!(acc >= 0.9 && loss < loss0 && acc > acc0))
            fail_msg("%s: the trained aggregator scores accuracy %.3f, loss %.4f (untrained "
                     "%.3f, %.4f)", kdens_distill_mode_name(modes[mi]), acc, loss, acc0, loss0);
        kdens_distiller_free(d);
    }
    kdens_dataset_free(tr);
    kdens_dataset_free(va);
    kdens_dataset_free(te);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_modes),     cmocka_unit_test(test_cache_equals_online),
        cmocka_unit_test(test_export),         cmocka_unit_test(test_fit_every_mode),
        cmocka_unit_test(test_driver),         cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_targets_direct), cmocka_unit_test(test_aggregator_learns),
    };
    return cmocka_run_group_tests_name("distillation", tests, setup, teardown);
}

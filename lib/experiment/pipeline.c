/* The whole multi-teacher experiment (kdens pipeline, make demo): split,
 * subsets, teachers and baseline, fusion analysis, students, report.  Each
 * step reuses what an earlier run left in the workspace. */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include "../data/data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

kdens_status kdens_pipeline_create(const char *workdir, const char *dataset, const char *arch,
                                   kdens_pipeline **out)
{
    if (!out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_pipeline c = {
        .teachers = 8,
        .fraction = 0.8,
        .val_fraction = 0.1,
        .teacher_epochs = 15,
        .student_epochs = 20,
        .batch = 128,
        .lr = 0.005,
        .patience = -1,
        .alpha = 0.5f,
        .temperature = 2.0f,
        .temperatures = {1, 2, 4},
        .n_temperatures = 3,
        .modes = {KDENS_DISTILL_OUTPUT_AVG, KDENS_DISTILL_LOSS_AVG, KDENS_DISTILL_MIMIC_ALL},
        .n_modes = 3,
        .size_repeats = 10,
        .seed = 1,
        .curve_rules = {KDENS_FUSE_MEAN, KDENS_FUSE_GEOMETRIC, KDENS_FUSE_PLURALITY,
                        KDENS_FUSE_BORDA, KDENS_FUSE_COPELAND},
        .n_curve_rules = 5,
    };
    const char *in[3] = {workdir, dataset, arch};
    const char **names[3] = {&c.workdir, &c.dataset, &c.arch};
    void *p;
    kdens_status st = kd_handle_with_names(sizeof c, 3, in, names, &p);
    if (st != KDENS_OK)
        return st;
    *(kdens_pipeline *)p = c;
    *out = p;
    return KDENS_OK;
}

void kdens_pipeline_free(kdens_pipeline *p)
{
    free(p);
}

kdens_status kdens_pipeline_set_curve(kdens_pipeline *p, const kdens_fusion *rules, int n_rules,
                                      const int *sizes, int n_sizes)
{
    if (!p || n_rules < 1 || n_rules > (int)KD_ARRAY_LEN(p->curve_rules) || !rules ||
        n_sizes < 0 || n_sizes > (int)KD_ARRAY_LEN(p->sizes) || (n_sizes && !sizes))
        return kd_fail(KDENS_E_ARG, "NULL, %d rules (1 to %d) or %d sizes (0 to %d)", n_rules,
                       (int)KD_ARRAY_LEN(p->curve_rules), n_sizes, (int)KD_ARRAY_LEN(p->sizes));
    for (int i = 0; i < n_rules; i++)
        if (!kdens_fusion_name(rules[i]))
            return kd_fail(KDENS_E_ARG, "unknown fusion rule %d", (int)rules[i]);
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] < 1 || (i > 0 && sizes[i] <= sizes[i - 1]))
            return kd_fail(KDENS_E_ARG, "ensemble size %d is not above 0 and the one before",
                           sizes[i]);
    memcpy(p->curve_rules, rules, sizeof *rules * (size_t)n_rules);
    p->n_curve_rules = n_rules;
    if (n_sizes)
        memcpy(p->sizes, sizes, sizeof *sizes * (size_t)n_sizes);
    p->n_sizes = n_sizes;
    return KDENS_OK;
}

kdens_status kdens_pipeline_set_modes(kdens_pipeline *p, const kdens_distill_mode *modes, int n)
{
    if (!p || n < 0 || n > KD_DISTILL_MODE_COUNT || (n > 0 && !modes))
        return kd_fail(KDENS_E_ARG, "NULL handle or %d modes", n);
    for (int i = 0; i < n; i++) {
        if (!kd_distill_mode_ops_of(modes[i]))
            return kd_fail(KDENS_E_ARG, "unknown distillation mode %d", (int)modes[i]);
        for (int k = 0; k < i; k++)
            if (modes[k] == modes[i])
                return kd_fail(KDENS_E_ARG, "mode %s listed twice",
                               kdens_distill_mode_name(modes[i]));
    }
    for (int i = 0; i < n; i++)
        p->modes[i] = modes[i];
    p->n_modes = n;
    return KDENS_OK;
}

KD_SETTER(kdens_pipeline, kdens_pipeline_set_teachers, int, teachers, v >= 1 && v <= 64,
          "teachers (1 to 64)")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_fraction, double, fraction, v > 0 && v <= 1,
          "teachers' fraction")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_teacher_epochs, int, teacher_epochs, v >= 1,
          "teacher epochs")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_student_epochs, int, student_epochs, v >= 1,
          "student epochs")
kdens_status kdens_pipeline_set_alpha(kdens_pipeline *p, double alpha)
{
    if (!p)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    kdens_status st = kd_check_loss(alpha, 1);
    if (st == KDENS_OK)
        p->alpha = (float)alpha, p->n_alphas = 0;
    return st;
}
kdens_status kdens_pipeline_set_temperature(kdens_pipeline *p, double temperature)
{
    if (!p)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    kdens_status st = kd_check_loss(0, temperature);
    if (st == KDENS_OK)
        p->temperature = (float)temperature, p->n_temperatures = 0;
    return st;
}

/* At most this many output_avg students to choose alpha and T. */
#define KD_MAX_SETTING_PAIRS 16

/* Candidates for one loss setting: 2 to 8 values, each accepted by
 * kd_check_loss in its place (`is_alpha`), and no more pairs with the
 * other setting's candidates than KD_MAX_SETTING_PAIRS. */
static kdens_status set_candidates(double *dst, int *n_dst, int n_other, const double *v, int n,
                                   int is_alpha, const char *what)
{
    if (!v || n < 2 || n > 8)
        return kd_fail(KDENS_E_ARG, "NULL or %d candidate %s (2 to 8)", n, what);
    if (n * (n_other > 1 ? n_other : 1) > KD_MAX_SETTING_PAIRS)
        return kd_fail(KDENS_E_ARG, "%d candidate %s make %d pairs with the other setting "
                       "(%d at most)", n, what, n * n_other, KD_MAX_SETTING_PAIRS);
    for (int i = 0; i < n; i++) {
        kdens_status st = is_alpha ? kd_check_loss(v[i], 1) : kd_check_loss(0, v[i]);
        if (st != KDENS_OK)
            return st;
    }
    memcpy(dst, v, sizeof *v * (size_t)n);
    *n_dst = n;
    return KDENS_OK;
}

kdens_status kdens_pipeline_set_comm(kdens_pipeline *p, kdens_comm *comm)
{
    if (!p)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    p->comm = comm;
    return KDENS_OK;
}

kdens_status kdens_pipeline_set_temperature_candidates(kdens_pipeline *p, const double *t, int n)
{
    if (!p)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    return set_candidates(p->temperatures, &p->n_temperatures, p->n_alphas, t, n, 0,
                          "temperatures");
}

kdens_status kdens_pipeline_set_alpha_candidates(kdens_pipeline *p, const double *a, int n)
{
    if (!p)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    return set_candidates(p->alphas, &p->n_alphas, p->n_temperatures, a, n, 1, "alphas");
}
KD_SETTER(kdens_pipeline, kdens_pipeline_set_val_fraction, double, val_fraction,
          v > 0 && v < 1, "validation fraction")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_batch, size_t, batch, v >= 1, "batch")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_lr, double, lr, v > 0 && isfinite(v),
          "learning rate")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_patience, int, patience, v >= 0, "patience")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_size_repeats, int, size_repeats, v >= 1,
          "sub-ensembles per size")
KD_SETTER(kdens_pipeline, kdens_pipeline_set_seed, uint64_t, seed, true, "seed")

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The teachers' epochs, batch, learning rate, patience and seed. */
static kdens_status training_settings(kdens_teachers *tc, const kdens_pipeline *c, int epochs)
{
    kdens_status st = kdens_teachers_set_epochs(tc, epochs);
    if (st == KDENS_OK)
        st = kdens_teachers_set_batch(tc, c->batch);
    if (st == KDENS_OK)
        st = kdens_teachers_set_lr(tc, c->lr);
    if (st == KDENS_OK && c->patience >= 0)
        st = kdens_teachers_set_patience(tc, c->patience);
    if (st == KDENS_OK)
        st = kdens_teachers_set_seed(tc, c->seed);
    return st;
}

/* Step 3: teachers of the fraction and the baseline. */
static kdens_status teachers(const kdens_pipeline *c, const kdens_dataset *train,
                             const kdens_dataset *val, const kdens_dataset *test)
{
    kdens_teachers *tc;
    kdens_status st = kdens_teachers_create(c->workdir, c->dataset, c->arch, train, val, test,
                                            &tc);
    if (st != KDENS_OK)
        return st;
    int trained = 0;
    st = training_settings(tc, c, c->teacher_epochs);
    if (st == KDENS_OK)
        st = kdens_teachers_set_schedule(tc, KDENS_SCHEDULE_COSINE);
    if (st == KDENS_OK) /* the same data for teachers, baseline and students */
        st = kdens_teachers_set_augment(tc, NULL);
    if (st == KDENS_OK) /* over ranks: a farm, then the baseline data-parallel */
        st = kdens_teachers_set_comm(tc, c->comm);
    if (st == KDENS_OK)
        st = kdens_teachers_train(tc, c->fraction, &trained);
    /* the baseline trains as long as the longest of teachers and students */
    int epochs = c->teacher_epochs > c->student_epochs ? c->teacher_epochs : c->student_epochs;
    if (st == KDENS_OK)
        st = training_settings(tc, c, epochs);
    if (st == KDENS_OK)
        st = kdens_teachers_train_baseline(tc);
    kdens_teachers_free(tc);
    return st;
}

/* The test images as stored (uint8), for timing inference. */
typedef struct test_images {
    uint8_t *pixels;
    size_t n;
} test_images;

/* Test loss, accuracy and decisions, parameters and milliseconds per image
 * of a model. */
static kdens_status measure(kdens_model *m, const kdens_dataset *test, const test_images *ti,
                            kd_result *row)
{
    kdens_status st = kdens_model_evaluate(m, test, 256, &row->loss, &row->accuracy, NULL, NULL,
                                           NULL);
    if (st == KDENS_OK)
        st = kd_decide_all(m, test, &row->decisions);
    row->params = kdens_model_param_count(m);
    float *probs = malloc(sizeof(float) * ti->n * (size_t)kdens_model_num_classes(m) + 1);
    if (st == KDENS_OK && !probs)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (st == KDENS_OK)
        st = kdens_model_predict_u8(m, ti->pixels, ti->n < 64 ? ti->n : 64, probs); /* warm */
    double t0 = now();
    if (st == KDENS_OK)
        st = kdens_model_predict_u8(m, ti->pixels, ti->n, probs);
    row->ms_per_image = ti->n ? (now() - t0) * 1000.0 / (double)ti->n : NAN;
    free(probs);
    return st;
}

static kdens_status measure_file(const char *path, const kdens_dataset *test,
                                 const test_images *ti, kd_result *row)
{
    kdens_model *m;
    kdens_status st = kdens_model_load(path, &m);
    if (st == KDENS_OK)
        st = measure(m, test, ti, row);
    kdens_model_free(m);
    return st;
}

/* Rows for the baseline and the teachers of the fraction, from teachers.csv. */
static kdens_status teacher_rows(kd_report *r, const kdens_dataset *test, const test_images *ti)
{
    const kdens_pipeline *c = r->cfg;
    char *csv = kd_path_join(c->workdir, "teachers.csv", NULL);
    kd_registry_row *rows = NULL;
    size_t n = 0;
    kdens_status st = csv ? kd_registry_read(csv, &rows, &n) : KDENS_E_NOMEM;
    free(csv);
    for (size_t i = 0; i < n && st == KDENS_OK; i++) {
        const kd_registry_row *row = &rows[i];
        bool baseline = strcmp(row->uuid, "all_trainset") == 0;
        if (strcmp(row->dataset, c->dataset) || strcmp(row->arch, c->arch) ||
            (!baseline && fabs(row->fraction - c->fraction) > 1e-9))
            continue;
        kd_result res;
        memset(&res, 0, sizeof res);
        snprintf(res.kind, sizeof res.kind, baseline ? "baseline" : "teacher");
        snprintf(res.name, sizeof res.name, "%s", row->uuid);
        res.log = kd_path_fmt(c->workdir, "%s/logs/%s.csv", c->dataset, row->uuid);
        if (!res.log)
            st = KDENS_E_NOMEM;
        if (st == KDENS_OK) {
            kd_log(KDENS_LOG_INFO, "evaluating %s %s", res.kind, row->uuid);
            st = measure_file(row->location, test, ti, &res);
        }
        if (st == KDENS_OK)
            st = kd_report_add(r, &res); /* takes res.log and res.decisions */
        else
            free(res.log), free(res.decisions);
    }
    kd_registry_free(rows, n);
    return st;
}

/* Mean negative log-likelihood of the members' mean probabilities. */
static double mean_rule_loss(const kdens_predictions *pr)
{
    const float *p = kdens_predictions_probs(pr);
    const int32_t *y = kdens_predictions_labels(pr);
    int m = kdens_predictions_members(pr), k = kdens_predictions_classes(pr);
    size_t n = kdens_predictions_samples(pr);
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        double q = 0;
        for (int j = 0; j < m; j++)
            q += p[((size_t)j * n + i) * k + y[i]];
        total -= log(fmax(q / m, 1e-12));
    }
    return n ? total / n : NAN;
}

/* Step 4: every fusion rule, accuracy versus size, agreement, votes. */
static kdens_status fusion(kd_report *r, const kdens_dataset *test)
{
    const kdens_pipeline *c = r->cfg;
    char *csv = kd_path_join(c->workdir, "teachers.csv", NULL);
    kdens_ensemble *ens;
    kdens_status st = csv ? kdens_ensemble_from_registry(csv, c->dataset, c->arch, c->fraction,
                                                         c->teachers, c->seed, &ens)
                          : KDENS_E_NOMEM;
    free(csv);
    if (st != KDENS_OK)
        return st;
    kdens_predictions *pr = NULL;
    kd_log(KDENS_LOG_INFO, "running the %d teachers over the test set", c->teachers);
    double t0 = now();
    st = kdens_ensemble_predict(ens, test, &pr);
    /* the ensemble's time per image: every member's inference (measured over the whole
     * test set, image reading included), plus the rule's fusion below */
    double members_ms = (now() - t0) * 1000.0 / (double)(r->n_test ? r->n_test : 1);
    int m = kdens_ensemble_size(ens);
    size_t params = 0;
    for (int i = 0; i < m && st == KDENS_OK; i++)
        params += kdens_model_param_count(kdens_ensemble_member(ens, i));
    for (int rule = 0; rule < kdens_fusion_count() && st == KDENS_OK; rule++) {
        kd_result res;
        memset(&res, 0, sizeof res);
        snprintf(res.kind, sizeof res.kind, "ensemble");
        snprintf(res.name, sizeof res.name, "%s", kdens_fusion_name((kdens_fusion)rule));
        double t1 = now();
        size_t n = kdens_predictions_samples(pr);
        if (!(res.decisions = malloc(sizeof(int32_t) * (n ? n : 1))))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
        if (st == KDENS_OK)
            st = kdens_fuse((kdens_fusion)rule, kdens_predictions_probs(pr), m, n,
                            kdens_predictions_classes(pr), res.decisions, NULL);
        res.ms_per_image = members_ms + (now() - t1) * 1000.0 / (double)(r->n_test ? r->n_test : 1);
        size_t right = 0;
        for (size_t i = 0; st == KDENS_OK && i < n; i++)
            right += res.decisions[i] == r->labels[i];
        res.accuracy = n ? (double)right / (double)n : 0;
        res.loss = rule == KDENS_FUSE_MEAN ? mean_rule_loss(pr) : NAN;
        res.params = params;
        if (st == KDENS_OK)
            st = kd_report_add(r, &res);
        else
            free(res.decisions);
    }
    /* the sizes asked for that the ensemble has, else 1 .. m */
    r->n_sizes = 0;
    for (int s = 0; s < c->n_sizes; s++)
        if (c->sizes[s] <= m)
            r->sizes[r->n_sizes++] = c->sizes[s];
    if (c->n_sizes == 0)
        for (int s = 0; s < m && s < 64; s++)
            r->sizes[r->n_sizes++] = s + 1;
    r->n_curve_rules = c->n_curve_rules;
    for (int i = 0; i < r->n_curve_rules && r->n_sizes && st == KDENS_OK; i++) {
        r->curve_rules[i] = c->curve_rules[i];
        kd_log(KDENS_LOG_INFO, "accuracy versus size: %s", kdens_fusion_name(c->curve_rules[i]));
        st = kdens_accuracy_vs_size(pr, c->curve_rules[i], r->sizes, r->n_sizes,
                                    c->size_repeats, c->seed, r->curve_mean[i], r->curve_ci[i]);
    }
    r->members = m;
    if (st == KDENS_OK && (!(r->agreement = malloc(sizeof(double) * (size_t)m * m)) ||
                           !(r->member_names = calloc((size_t)m, sizeof *r->member_names))))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; i < m && st == KDENS_OK; i++)
        snprintf(r->member_names[i], sizeof r->member_names[i], "%s",
                 kdens_ensemble_member_name(ens, i));
    const float *probs = kdens_predictions_probs(pr);
    const int32_t *labels = kdens_predictions_labels(pr);
    size_t n = kdens_predictions_samples(pr);
    int k = kdens_predictions_classes(pr);
    if (st == KDENS_OK)
        st = kdens_agreement(probs, m, n, k, labels, r->agreement, &r->oracle);
    r->votes.size = sizeof r->votes;
    if (st == KDENS_OK)
        st = kdens_vote_analysis(probs, m, n, k, labels, &r->votes, NULL, NULL, NULL);
    for (int s = 0; s < r->n_sizes; s++)
        r->votes_by_size[s].size = sizeof r->votes_by_size[s];
    if (st == KDENS_OK)
        st = kdens_vote_stats_vs_size(pr, r->sizes, r->n_sizes, c->size_repeats, c->seed,
                                      r->votes_by_size);
    char *path = st == KDENS_OK ? kd_path_join(r->dir, c->dataset, "predictions_test.kdp", NULL)
                                : NULL;
    if (st == KDENS_OK)
        st = path ? kdens_predictions_save(pr, path) : KDENS_E_NOMEM;
    free(path);
    kdens_predictions_free(pr);
    kdens_ensemble_free(ens);
    return st;
}

/* Step 5: a student per mode, then its row. */
/* The distillation job of one student of the pipeline. */
static void student_job(const kdens_pipeline *c, kdens_distill_mode mode, double alpha,
                        double temperature, kdens_distill_job *job)
{
    kd_distill_job_init(job);
    job->workdir = c->workdir;
    job->dataset = c->dataset;
    job->teacher_arch = job->student_arch = c->arch;
    job->fraction = c->fraction;
    job->n_teachers = c->teachers;
    job->repetitions = 1;
    job->mode = mode;
    job->alpha = (float)alpha;
    job->temperature = (float)temperature;
    job->epochs = c->student_epochs;
    job->patience = c->patience;
    job->batch = c->batch;
    job->lr = c->lr;
    job->schedule = KDENS_SCHEDULE_COSINE;
    job->seed = c->seed;
}

/* Train (or find) a job's student; *path receives its model file. */
static kdens_status run_student(const kdens_distill_job *job, const kdens_dataset *train,
                                const kdens_dataset *val, const kdens_dataset *test,
                                char **path, char **log)
{
    kdens_status st = kdens_distill_job_run(job, train, val, test, NULL);
    char *name = st == KDENS_OK ? kd_student_name(job, 0) : NULL;
    *path = name ? kd_path_fmt(job->workdir, "%s/students/%s.kdm", job->dataset, name) : NULL;
    *log = name ? kd_path_fmt(job->workdir, "%s/logs/%s.csv", job->dataset, name) : NULL;
    free(name);
    if (st == KDENS_OK && (!*path || !*log))
        st = KDENS_E_NOMEM;
    if (st != KDENS_OK) {
        free(*path), free(*log);
        *path = *log = NULL;
    }
    return st;
}

/* The validation accuracy of the output_avg student at (alpha, T). */
static kdens_status validation_accuracy(const kdens_pipeline *c, double alpha, double t,
                                        const kdens_dataset *train, const kdens_dataset *val,
                                        const kdens_dataset *test, double *acc)
{
    kdens_distill_job job;
    student_job(c, KDENS_DISTILL_OUTPUT_AVG, alpha, t, &job);
    kd_log(KDENS_LOG_INFO, "alpha %g, temperature %g on the validation part", alpha, t);
    char *path = NULL, *log = NULL;
    kdens_model *m = NULL;
    kdens_status st = run_student(&job, train, val, test, &path, &log);
    if (st == KDENS_OK)
        st = kdens_model_load(path, &m);
    if (st == KDENS_OK)
        st = kdens_model_evaluate(m, val, 256, NULL, acc, NULL, NULL, NULL);
    kdens_model_free(m);
    free(path), free(log);
    return st;
}

/* The loss settings: among the candidate pairs (alpha, T), the one whose
 * output_avg student is the most accurate on the validation part (the
 * first on ties), never chosen on the test set.  Those students stay
 * registered, so the chosen one is reused. */
static kdens_status choose_settings(kd_report *r, const kdens_dataset *train,
                                    const kdens_dataset *val, const kdens_dataset *test)
{
    const kdens_pipeline *c = r->cfg;
    r->alpha = c->alpha;
    r->temperature = c->temperature;
    r->n_settings = 0;
    int na = c->n_alphas > 1 ? c->n_alphas : 1, nt = c->n_temperatures > 1 ? c->n_temperatures : 1;
    if (na * nt <= 1 || c->n_modes == 0) /* no student or nothing to choose */
        return KDENS_OK;
    r->alpha_chosen = na > 1, r->temperature_chosen = nt > 1;
    kdens_status st = KDENS_OK;
    double best = -1;
    for (int i = 0; i < na && st == KDENS_OK; i++)
        for (int j = 0; j < nt && st == KDENS_OK; j++) {
            double alpha = na > 1 ? c->alphas[i] : c->alpha;
            double t = nt > 1 ? c->temperatures[j] : c->temperature;
            double acc = 0;
            st = validation_accuracy(c, alpha, t, train, val, test, &acc);
            kd_setting_trial *trial = &r->settings[r->n_settings++];
            trial->alpha = alpha, trial->temperature = t, trial->val_accuracy = acc;
            if (st == KDENS_OK && acc > best)
                best = acc, r->alpha = alpha, r->temperature = t;
        }
    return st;
}

static kdens_status students(kd_report *r, const kdens_dataset *train, const kdens_dataset *val,
                             const kdens_dataset *test, const test_images *ti)
{
    const kdens_pipeline *c = r->cfg;
    kdens_status st = choose_settings(r, train, val, test);
    for (int i = 0; i < c->n_modes && st == KDENS_OK; i++) {
        kdens_distill_job job;
        student_job(c, c->modes[i], r->alpha, r->temperature, &job);
        kd_log(KDENS_LOG_INFO, "student %d/%d: %s", i + 1, c->n_modes,
               kdens_distill_mode_name(job.mode));
        kd_result res;
        memset(&res, 0, sizeof res);
        snprintf(res.kind, sizeof res.kind, "student");
        snprintf(res.name, sizeof res.name, "%s", kdens_distill_mode_name(job.mode));
        char *path = NULL;
        st = run_student(&job, train, val, test, &path, &res.log);
        if (st == KDENS_OK)
            st = measure_file(path, test, ti, &res);
        if (st == KDENS_OK)
            st = kd_report_add(r, &res); /* takes res.log and res.decisions */
        else
            free(res.log), free(res.decisions);
        free(path);
    }
    return st;
}

/* The test images' classes. */
static kdens_status test_labels(kd_report *r, const kdens_dataset *test)
{
    if (!(r->labels = malloc(sizeof(int32_t) * (r->n_test ? r->n_test : 1))))
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_status st = KDENS_OK;
    for (size_t i = 0; i < r->n_test && st == KDENS_OK; i++)
        st = kdens_dataset_get(test, i, NULL, &r->labels[i], NULL);
    return st;
}

static kdens_status load_test_images(const kdens_dataset *test, test_images *ti)
{
    int h, w, c;
    kdens_dataset_shape(test, &h, &w, &c);
    size_t per = (size_t)h * w * c;
    ti->n = kdens_dataset_count(test) < 2000 ? kdens_dataset_count(test) : 2000;
    ti->pixels = malloc(per * (ti->n ? ti->n : 1));
    if (!ti->pixels)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_status st = KDENS_OK;
    for (size_t i = 0; i < ti->n && st == KDENS_OK; i++)
        st = kd_dataset_read(test, i, ti->pixels + i * per);
    return st;
}

/* Steps 1 and 2 (rank 0's over ranks): the workspace's split and subsets. */
static kdens_status prepare_workspace(const kdens_pipeline *cfg, const kdens_dataset *pool,
                                      kdens_dataset **train, kdens_dataset **val)
{
    char *dir = kd_path_join(cfg->workdir, cfg->dataset, NULL);
    if (!dir)
        return KDENS_E_NOMEM;
    kdens_status st = kd_mkdirs(dir) != 0 ? kd_fail(KDENS_E_IO, "%s: cannot create: %s", dir,
                                                    strerror(errno))
                                          : KDENS_OK;
    kd_log(KDENS_LOG_INFO, "1/6 split");
    if (st == KDENS_OK)
        st = kd_workspace_split(dir, pool, cfg->val_fraction, cfg->seed, train, val);
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "2/6 %d subsets at fraction %g", cfg->teachers, cfg->fraction);
        st = kd_workspace_subsets(dir, *train, cfg->fraction, cfg->teachers, cfg->seed);
    }
    free(dir);
    return st;
}

/* Steps 4 to 6, from the workspace's teachers: fusion, students, report. */
static kdens_status evaluate_and_report(kd_report *r, const kdens_dataset *train,
                                        const kdens_dataset *val, const kdens_dataset *test,
                                        double t0)
{
    test_images ti = {NULL, 0};
    kdens_status st = load_test_images(test, &ti);
    if (st == KDENS_OK)
        st = test_labels(r, test);
    if (st == KDENS_OK)
        st = teacher_rows(r, test, &ti);
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "4/6 fusion");
        st = fusion(r, test);
    }
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "5/6 students");
        st = students(r, train, val, test, &ti);
    }
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "6/6 report");
        r->seconds = now() - t0;
        st = kd_report_compare(r);
    }
    if (st == KDENS_OK)
        st = kd_report_write(r);
    free(ti.pixels);
    return st;
}

kdens_status kdens_pipeline_run(const kdens_pipeline *cfg, const kdens_dataset *pool,
                                const kdens_dataset *test)
{
    if (!cfg || !pool || !test)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    double t0 = now();
    kd_report r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.dir = cfg->workdir;
    bool lead = kdens_comm_rank(cfg->comm) == 0, ranks = kdens_comm_size(cfg->comm) > 1;
    kdens_dataset *train = NULL, *val = NULL;
    kdens_status st = lead ? prepare_workspace(cfg, pool, &train, &val) : KDENS_OK;
    st = kdens_comm_agree(cfg->comm, st);
    if (st == KDENS_OK && ranks) /* the other ranks need no workspace */
        st = kd_workspace_share_parts(cfg->comm, pool, &train, &val);
    if (st == KDENS_OK) {
        r.n_train = kdens_dataset_count(train);
        r.n_val = kdens_dataset_count(val);
        r.n_test = kdens_dataset_count(test);
        kd_log(KDENS_LOG_INFO, "3/6 teachers and the baseline");
        st = teachers(cfg, train, val, test);
    }
    /* the rest is rank 0's alone (not yet over ranks) */
    if (st == KDENS_OK && lead)
        st = evaluate_and_report(&r, train, val, test, t0);
    st = kdens_comm_agree(cfg->comm, st);
    kd_report_free(&r);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
    return st;
}

/* Experiment grids: the dissertation's tables as one command.  A plan names
 * the axes -- teachers n, fraction, mode, alpha, T, seeds -- and the run
 * trains each teacher once (max n per fraction, reused by every student that
 * needs it), one baseline, and every student; all of it through the teacher
 * farm and the student driver, so a grid skips what is done, survives being
 * killed, and may be shared by several processes (claims).  The plan
 * parser is grid_plan.c; the aggregation and report, grid_report.c. */
#include "grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void kdens_grid_free(kdens_grid *g)
{
    if (!g)
        return;
    free(g->dataset);
    free(g->teacher_arch);
    free(g->student_arch);
    free(g);
}

const char *kdens_grid_dataset(const kdens_grid *g)
{
    return g ? g->dataset : NULL;
}

size_t kdens_grid_students(const kdens_grid *g)
{
    if (!g)
        return 0;
    return (size_t)g->n_teachers * g->n_fractions * g->n_modes * g->n_alphas *
           g->n_temperatures * g->seeds;
}

int kd_grid_max_teachers(const kdens_grid *g)
{
    int n = 0;
    for (int i = 0; i < g->n_teachers; i++)
        n = g->teachers[i] > n ? g->teachers[i] : n;
    return n;
}

void kd_grid_job(const kdens_grid *g, const char *workdir, const char *name, const grid_cell *c,
                 kdens_distill_job *job)
{
    kd_distill_job_init(job);
    job->workdir = workdir;
    job->dataset = name;
    job->teacher_arch = g->teacher_arch;
    job->student_arch = g->student_arch;
    job->fraction = c->fraction;
    job->n_teachers = c->n;
    job->repetitions = g->seeds;
    job->mode = c->mode;
    job->alpha = (float)c->alpha;
    job->temperature = (float)c->temperature;
    job->epochs = g->student_epochs;
    job->patience = g->patience;
    job->batch = g->batch;
    job->lr = g->lr;
    job->schedule = KDENS_SCHEDULE_COSINE;
    job->seed = g->seed;
}

bool kd_grid_cell(const kdens_grid *g, size_t i, grid_cell *c)
{
    size_t per_seed = kdens_grid_students(g) / (size_t)g->seeds;
    if (i >= per_seed)
        return false;
    /* the innermost axis varies fastest: temperature, alpha, mode, fraction, n */
    c->temperature = g->temperatures[i % g->n_temperatures], i /= g->n_temperatures;
    c->alpha = g->alphas[i % g->n_alphas], i /= g->n_alphas;
    c->mode = g->modes[i % g->n_modes], i /= g->n_modes;
    c->fraction = g->fractions[i % g->n_fractions], i /= g->n_fractions;
    c->n = g->teachers[i];
    return true;
}

/* The teacher farm's settings from the plan (patience < 0: the architecture's). */
static kdens_status farm_settings(const kdens_grid *g, kdens_teachers *tc, int epochs)
{
    kdens_status st = kdens_teachers_set_epochs(tc, epochs);
    if (st == KDENS_OK)
        st = kdens_teachers_set_batch(tc, g->batch);
    if (st == KDENS_OK)
        st = kdens_teachers_set_lr(tc, g->lr);
    if (st == KDENS_OK && g->patience >= 0)
        st = kdens_teachers_set_patience(tc, g->patience);
    if (st == KDENS_OK)
        st = kdens_teachers_set_seed(tc, g->seed);
    if (st == KDENS_OK)
        st = kdens_teachers_set_schedule(tc, KDENS_SCHEDULE_COSINE);
    if (st == KDENS_OK) /* the same data for teachers, baseline and students */
        st = kdens_teachers_set_augment(tc, NULL);
    return st;
}

/* max n teachers per fraction, and the baseline of the student architecture
 * (as many epochs as the longer of teachers and students). */
static kdens_status teachers(const kdens_grid *g, const char *workdir, const char *name,
                             const char *dir, const kdens_dataset *train,
                             const kdens_dataset *val, const kdens_dataset *test)
{
    kdens_status st = KDENS_OK;
    for (int f = 0; f < g->n_fractions && st == KDENS_OK; f++)
        st = kd_workspace_subsets(dir, train, g->fractions[f], kd_grid_max_teachers(g), g->seed);
    kdens_teachers *tc = NULL;
    if (st == KDENS_OK)
        st = kdens_teachers_create(workdir, name, g->teacher_arch, train, val, test, &tc);
    if (st == KDENS_OK)
        st = farm_settings(g, tc, g->teacher_epochs);
    for (int f = 0; f < g->n_fractions && st == KDENS_OK; f++) {
        int trained = 0;
        kd_log(KDENS_LOG_INFO, "teachers of fraction %g", g->fractions[f]);
        st = kdens_teachers_train(tc, g->fractions[f], &trained);
    }
    kdens_teachers_free(tc);
    tc = NULL;
    if (st == KDENS_OK)
        st = kdens_teachers_create(workdir, name, g->student_arch, train, val, test, &tc);
    if (st == KDENS_OK)
        st = farm_settings(g, tc, g->teacher_epochs > g->student_epochs ? g->teacher_epochs
                                                                         : g->student_epochs);
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "the baseline");
        st = kdens_teachers_train_baseline(tc);
    }
    kdens_teachers_free(tc);
    return st;
}

kdens_status kdens_grid_run(const kdens_grid *g, const char *workdir, const char *name,
                            const kdens_dataset *pool, const kdens_dataset *test)
{
    if (!g || !workdir || !name || !pool || !test)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (strchr(name, '/') || strchr(name, ','))
        return kd_fail(KDENS_E_ARG, "the dataset name '%s' holds a '/' or ','", name);
    char *dir = kd_path_join(workdir, name, NULL);
    if (!dir)
        return KDENS_E_NOMEM;
    kdens_status st = kd_workspace_mkdir(workdir, name, "subsets");
    kdens_dataset *train = NULL, *val = NULL;
    if (st == KDENS_OK)
        st = kd_workspace_split(dir, pool, g->val_fraction, g->seed, &train, &val);
    if (st == KDENS_OK)
        st = teachers(g, workdir, name, dir, train, val, test);
    grid_cell c;
    for (size_t i = 0; st == KDENS_OK && kd_grid_cell(g, i, &c); i++) {
        kdens_distill_job job;
        kd_grid_job(g, workdir, name, &c, &job);
        kd_log(KDENS_LOG_INFO, "cell %zu: n %d, fraction %g, %s, alpha %g, T %g (%d seeds)",
               i + 1, c.n, c.fraction, kdens_distill_mode_name(c.mode), c.alpha, c.temperature,
               g->seeds);
        st = kdens_distill_job_run(&job, train, val, test, NULL);
    }
    if (st == KDENS_OK)
        st = kd_grid_report(g, workdir, name, test);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
    free(dir);
    return st;
}

/* Experiment grids: the dissertation's tables as one command.  A plan names
 * the axes -- teachers n, fraction, mode, alpha, T, seeds -- and the run
 * trains each teacher once (max n per fraction, reused by every student that
 * needs it), one baseline, and every student; all of it through the teacher
 * farm and the student driver, so a grid skips what is done, survives being
 * killed, and may be shared by several processes (claims).  The plan
 * parser is grid_plan.c; the aggregation and report, grid_report.c. */
#include "grid.h"

#include <math.h>
#include <stdio.h>
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
    if (st == KDENS_OK) /* over ranks: a farm, the baseline data-parallel */
        st = kdens_teachers_set_comm(tc, g->comm);
    return st;
}

/* max n teachers per fraction, and the baseline of the student architecture
 * (as many epochs as the longer of teachers and students). */
static kdens_status teachers(const kdens_grid *g, const char *workdir, const char *name,
                             const char *dir, const kdens_dataset *train,
                             const kdens_dataset *val, const kdens_dataset *test)
{
    kdens_status st = KDENS_OK;
    for (int f = 0; f < g->n_fractions && st == KDENS_OK && kdens_comm_rank(g->comm) == 0; f++)
        st = kd_workspace_subsets(dir, train, g->fractions[f], kd_grid_max_teachers(g), g->seed);
    st = kdens_comm_agree(g->comm, st);
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

kdens_status kdens_grid_set_comm(kdens_grid *g, kdens_comm *comm)
{
    if (!g)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    g->comm = comm;
    return KDENS_OK;
}

/* ---- the students over ranks: rank 0 plans every (cell, seed), the ranks
 * train them (kd_queue_run); a job is u64 cell, u32 repetition, then the
 * student's job (kd_student_plan). */

typedef struct cell_farm {
    const kdens_grid *g;
    const char *workdir, *name;
    const kdens_dataset *train, *val, *test;
    kd_buf *jobs;
    kd_student_plan_t *plans;
    kdens_distill_job *dj;   /* per job */
    size_t n;
} cell_farm;

static kdens_status cell_work(void *user, const uint8_t *job, size_t len, kd_buf *result)
{
    const cell_farm *f = user;
    kd_msg m = {job, len, 0, false};
    uint64_t cell = 0;
    uint32_t rep = 0;
    kd_msg_get(&m, &cell, 8);
    kd_msg_get(&m, &rep, 4);
    grid_cell c;
    if (m.failed || rep >= (uint32_t)f->g->seeds || !kd_grid_cell(f->g, (size_t)cell, &c))
        return kd_fail(KDENS_E_FORMAT, "a malformed grid job (%zu bytes)", len);
    kdens_distill_job dj;
    kd_grid_job(f->g, f->workdir, f->name, &c, &dj);
    kd_log(KDENS_LOG_INFO, "rank %d: cell %llu, seed %u", kdens_comm_rank(f->g->comm),
           (unsigned long long)cell + 1, rep + 1);
    return kd_student_work(&dj, (int)rep, job + m.at, len - m.at, f->train, f->val, f->test,
                           result);
}

static kdens_status cell_done(void *user, size_t job, const uint8_t *result, size_t len)
{
    cell_farm *f = user;
    kdens_status st = kd_student_done(&f->dj[job], &f->plans[job], result, len);
    kd_student_plan_free(&f->plans[job]); /* written: the claim goes */
    return st;
}

/* Rank 0: a job for every (cell, seed) whose student is neither registered
 * nor claimed elsewhere. */
static kdens_status plan_cells(cell_farm *f)
{
    size_t total = kdens_grid_students(f->g);
    f->jobs = calloc(total ? total : 1, sizeof *f->jobs);
    f->plans = calloc(total ? total : 1, sizeof *f->plans);
    f->dj = calloc(total ? total : 1, sizeof *f->dj);
    if (!f->jobs || !f->plans || !f->dj)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_status st = KDENS_OK;
    grid_cell c;
    for (size_t i = 0; st == KDENS_OK && kd_grid_cell(f->g, i, &c); i++)
        for (int rep = 0; rep < f->g->seeds && st == KDENS_OK; rep++) {
            kd_student_plan_t *plan = &f->plans[f->n];
            kd_grid_job(f->g, f->workdir, f->name, &c, &f->dj[f->n]);
            st = kd_student_plan(&f->dj[f->n], rep, plan);
            if (st == KDENS_OK && plan->todo) {
                kd_buf *job = &f->jobs[f->n];
                kd_buf_u64(job, (uint64_t)i);
                kd_buf_u32(job, (uint32_t)rep);
                kd_buf_put(job, plan->job.data, plan->job.len);
                kd_buf_free(&plan->job);
                if (job->failed)
                    st = kd_fail(KDENS_E_NOMEM, "out of memory");
                f->n++;
            } else {
                kd_student_plan_free(plan);
            }
        }
    return st;
}

static void cell_farm_free(cell_farm *f)
{
    for (size_t i = 0; i < f->n; i++) {
        kd_buf_free(&f->jobs[i]);
        kd_student_plan_free(&f->plans[i]);
    }
    free(f->jobs);
    free(f->plans);
    free(f->dj);
}

static kdens_status students_over_ranks(const kdens_grid *g, const char *workdir,
                                        const char *name, const kdens_dataset *train,
                                        const kdens_dataset *val, const kdens_dataset *test)
{
    cell_farm f = {g, workdir, name, train, val, test, NULL, NULL, NULL, 0};
    kdens_status st = kdens_comm_rank(g->comm) == 0 ? plan_cells(&f) : KDENS_OK;
    st = kdens_comm_agree(g->comm, st);
    static const kd_queue_ops ops = {cell_work, cell_done};
    if (st == KDENS_OK)
        st = kd_queue_run(g->comm, f.jobs, f.n, &ops, &f);
    cell_farm_free(&f);
    return st;
}

/* Alone: every cell in turn, through the driver (claims let several
 * processes share the grid). */
static kdens_status students_alone(const kdens_grid *g, const char *workdir, const char *name,
                                   const kdens_dataset *train, const kdens_dataset *val,
                                   const kdens_dataset *test)
{
    kdens_status st = KDENS_OK;
    grid_cell c;
    for (size_t i = 0; st == KDENS_OK && kd_grid_cell(g, i, &c); i++) {
        kdens_distill_job job;
        kd_grid_job(g, workdir, name, &c, &job);
        kd_log(KDENS_LOG_INFO, "cell %zu: n %d, fraction %g, %s, alpha %g, T %g (%d seeds)",
               i + 1, c.n, c.fraction, kdens_distill_mode_name(c.mode), c.alpha, c.temperature,
               g->seeds);
        st = kdens_distill_job_run(&job, train, val, test, NULL);
    }
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
    bool lead = kdens_comm_rank(g->comm) == 0, ranks = kdens_comm_size(g->comm) > 1;
    kdens_dataset *train = NULL, *val = NULL;
    char what[512]; /* the same plan and data on every rank */
    snprintf(what, sizeof what,
             "grid %s -> %s: %zu students, %d seeds from %llu, epochs %d/%d, batch %zu, lr "
             "%.17g, validation %.17g; %zu training and %zu test samples",
             g->teacher_arch, g->student_arch, kdens_grid_students(g), g->seeds,
             (unsigned long long)g->seed, g->teacher_epochs, g->student_epochs, g->batch, g->lr,
             g->val_fraction, kdens_dataset_count(pool), kdens_dataset_count(test));
    kdens_status st = kdens_comm_check_same(g->comm, what);
    if (st == KDENS_OK && lead) /* the workspace is rank 0's */
        st = kd_workspace_mkdir(workdir, name, "subsets");
    if (st == KDENS_OK && lead)
        st = kd_workspace_split(dir, pool, g->val_fraction, g->seed, &train, &val);
    /* (a failure before: every rank has it already) */
    st = kdens_comm_agree(g->comm, st);
    if (st == KDENS_OK && ranks) /* the other ranks need no workspace */
        st = kd_workspace_share_parts(g->comm, pool, &train, &val);
    if (st == KDENS_OK)
        st = teachers(g, workdir, name, dir, train, val, test);
    if (st == KDENS_OK)
        st = ranks ? students_over_ranks(g, workdir, name, train, val, test)
                   : students_alone(g, workdir, name, train, val, test);
    if (st == KDENS_OK && lead)
        st = kd_grid_report(g, workdir, name, test);
    st = kdens_comm_agree(g->comm, st);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
    free(dir);
    return st;
}

/* The student driver: sample teachers from the registry,
 * distil, evaluate, save and register the student (students.csv). */
#include "experiment.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void kd_distill_job_init(kdens_distill_job *job)
{
    memset(job, 0, sizeof *job);
    job->n_teachers = 5;
    job->repetitions = 1;
    job->mode = KDENS_DISTILL_OUTPUT_AVG;
    job->fusion = KDENS_FUSE_BORDA;
    job->alpha = 0.5f;
    job->temperature = 1.0f;
    job->patience = -1;
    job->cache = 1;
}

kdens_status kdens_distill_job_create(const char *workdir, const char *dataset,
                                      const char *teacher_arch, const char *student_arch,
                                      kdens_distill_job **out)
{
    if (!out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_distill_job proto;
    kd_distill_job_init(&proto);
    const char *in[4] = {workdir, dataset, teacher_arch, student_arch};
    const char **names[4] = {&proto.workdir, &proto.dataset, &proto.teacher_arch,
                             &proto.student_arch};
    void *job;
    kdens_status st = kd_handle_with_names(sizeof proto, 4, in, names, &job);
    if (st != KDENS_OK)
        return st;
    *(kdens_distill_job *)job = proto;
    *out = job;
    return KDENS_OK;
}

void kdens_distill_job_free(kdens_distill_job *job)
{
    free(job);
}

KD_SETTER(kdens_distill_job, kdens_distill_job_set_teachers, int, n_teachers, v >= 1, "teachers")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_fraction, double, fraction, v >= 0 && v <= 1,
          "teachers' fraction (0: any)")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_alpha, double, alpha,
          kd_check_loss(v, 1) == KDENS_OK, "alpha")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_temperature, double, temperature,
          kd_check_loss(0, v) == KDENS_OK, "temperature")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_repetitions, int, repetitions, v >= 1,
          "repetitions")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_mode, kdens_distill_mode, mode,
          kd_distill_mode_ops_of(v) != NULL, "distillation mode")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_fusion, kdens_fusion, fusion,
          (unsigned)v < KD_FUSE_COUNT && v != KDENS_FUSE_KEMENY, "fusion rule with scores")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_epochs, int, epochs, v >= 1, "epochs")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_batch, size_t, batch, v >= 1, "batch")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_lr, double, lr, v > 0 && isfinite(v),
          "learning rate")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_patience, int, patience, v >= 0, "patience")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_schedule, kdens_schedule, schedule,
          v == KDENS_SCHEDULE_CONSTANT || v == KDENS_SCHEDULE_COSINE,
          "schedule (constant or cosine)")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_seed, uint64_t, seed, true, "seed")
KD_SETTER(kdens_distill_job, kdens_distill_job_set_cache, int, cache, v == 0 || v == 1, "cache")

kdens_status kdens_distill_job_set_augment(kdens_distill_job *job, const kdens_augment *aug)
{
    if (!job)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    job->augment = aug;
    return KDENS_OK;
}

static kdens_status check_job(const kdens_distill_job *j)
{
    if (!j->workdir || !j->dataset || !j->teacher_arch || !j->student_arch)
        return kd_fail(KDENS_E_ARG, "the job needs a workdir, dataset and both architectures");
    if (j->n_teachers < 1 || j->repetitions < 1)
        return kd_fail(KDENS_E_ARG, "%d teachers and %d repetitions asked", j->n_teachers,
                       j->repetitions);
    if (!kd_distill_mode_ops_of(j->mode))
        return kd_fail(KDENS_E_ARG, "unknown distillation mode %d", (int)j->mode);
    return kd_check_loss(j->alpha, j->temperature);
}

char *kd_student_name(const kdens_distill_job *j, int rep)
{
    return kd_path_fmt(NULL, "%s_%s_n%d_f%g_a%g_T%g_s%llu", j->student_arch,
                       kdens_distill_mode_name(j->mode), j->n_teachers, j->fraction,
                       (double)j->alpha, (double)j->temperature,
                       (unsigned long long)(j->seed + (uint64_t)rep));
}

/* A stable 128-bit name of the run, printed as a uuid (8-4-4-4-12). */
static void run_uuid(const char *name, char *out, size_t size)
{
    uint64_t h[2] = {kd_fnv1a(KD_FNV_BASIS, name, strlen(name)), 0x9e3779b97f4a7c15ull};
    for (const char *p = name; *p; p++) /* a second, differently mixed half */
        h[1] = (h[1] ^ (unsigned char)*p) * 0x100000001b3ull + 0x7f4a7c15;
    snprintf(out, size, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(h[0] >> 32),
             (unsigned)(h[0] >> 16) & 0xffff, (unsigned)h[0] & 0xffff,
             (unsigned)(h[1] >> 48), (unsigned long long)(h[1] & 0xffffffffffffull));
}

/* The trainer with the job's settings over the student architecture's
 * defaults. */
static kdens_status configure(const kdens_distill_job *j, kdens_trainer *t, const char *log,
                              const char *ckpt, uint64_t seed)
{
    kd_train_overrides o = {j->epochs, j->batch, j->lr, j->patience,
                            j->schedule != KDENS_SCHEDULE_CONSTANT ? (int)j->schedule : -1, seed};
    kdens_status st = kd_trainer_configure(t, j->student_arch, &o);
    if (st == KDENS_OK)
        st = kdens_trainer_set_augment(t, j->augment);
    if (st == KDENS_OK)
        st = kdens_trainer_set_log(t, log);
    if (st == KDENS_OK)
        st = kdens_trainer_set_checkpoint(t, ckpt, 1);
    return st;
}

/* The teachers' uuids joined by ';'. */
static void teacher_list(const kdens_ensemble *ens, kd_buf *b)
{
    for (int i = 0; i < kdens_ensemble_size(ens); i++)
        kd_buf_printf(b, "%s%s", i ? ";" : "", kdens_ensemble_member_name(ens, i));
}

/* The files of one repetition's student, allocated (run_files_free). */
typedef struct run_files {
    char *name, *model, *ckpt, *claim, *log, *csv, *teachers_csv;
} run_files;

static void run_files_free(run_files *f)
{
    char *all[] = {f->name, f->model, f->ckpt, f->claim, f->log, f->csv, f->teachers_csv};
    for (size_t i = 0; i < KD_ARRAY_LEN(all); i++)
        free(all[i]);
    memset(f, 0, sizeof *f);
}

static kdens_status run_files_make(const kdens_distill_job *j, int rep, run_files *f)
{
    memset(f, 0, sizeof *f);
    if ((f->name = kd_student_name(j, rep))) {
        f->model = kd_path_fmt(j->workdir, "%s/students/%s.kdm", j->dataset, f->name);
        f->ckpt = kd_path_fmt(j->workdir, "%s/students/%s.kdm.ckpt", j->dataset, f->name);
        f->claim = kd_path_fmt(j->workdir, "%s/students/%s.kdm.claim", j->dataset, f->name);
        f->log = kd_path_fmt(j->workdir, "%s/logs/%s.csv", j->dataset, f->name);
        f->csv = kd_path_join(j->workdir, "students.csv", NULL);
        f->teachers_csv = kd_path_join(j->workdir, "teachers.csv", NULL);
    }
    if (f->name && f->model && f->ckpt && f->claim && f->log && f->csv && f->teachers_csv)
        return KDENS_OK;
    run_files_free(f);
    return KDENS_E_NOMEM;
}

/* Distil, evaluate, save and register one repetition's student. */
static kdens_status distil(const kdens_distill_job *j, int rep, const run_files *f,
                           const kdens_dataset *train, const kdens_dataset *val,
                           const kdens_dataset *test)
{
    uint64_t seed = j->seed + (uint64_t)rep;
    char uuid[64];
    run_uuid(f->name, uuid, sizeof uuid);
    kdens_status st = kd_workspace_mkdir(j->workdir, j->dataset, "students");
    if (st == KDENS_OK)
        st = kd_workspace_mkdir(j->workdir, j->dataset, "logs");
    kdens_ensemble *ens = NULL;
    kdens_model *tmpl = NULL, *student = NULL;
    kdens_distiller *d = NULL;
    if (st == KDENS_OK)
        st = kdens_ensemble_from_registry(f->teachers_csv, j->dataset, j->teacher_arch,
                                          j->fraction, j->n_teachers, seed, &ens);
    if (st == KDENS_OK) {
        const kdens_model *t0 = kdens_ensemble_member(ens, 0);
        st = kd_workspace_model(j->workdir, j->dataset, j->student_arch, t0->in_h, t0->in_w,
                                t0->in_c, t0->classes, seed, &tmpl);
        if (st == KDENS_OK)
            st = kd_model_copy_meta(tmpl, t0); /* input scaling and class names */
    }
    if (st == KDENS_OK)
        st = kdens_distiller_create(ens, tmpl, j->mode, train, val, &d);
    if (st == KDENS_OK)
        st = kdens_distiller_set_loss(d, j->alpha, j->temperature);
    if (st == KDENS_OK && j->mode == KDENS_DISTILL_FUSION)
        st = kdens_distiller_set_fusion(d, j->fusion);
    if (st == KDENS_OK)
        st = kdens_distiller_set_cache(d, j->cache, NULL);
    if (st == KDENS_OK)
        st = configure(j, kdens_distiller_trainer(d), f->log, f->ckpt, seed);
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "distilling %d teachers into %s (%s)", j->n_teachers, f->name,
               kdens_distill_mode_name(j->mode));
        st = kdens_distiller_fit(d);
    }
    if (st == KDENS_OK)
        st = kdens_distiller_export(d, &student);
    double l[3] = {NAN, NAN, NAN}, a[3] = {NAN, NAN, NAN};
    const kdens_dataset *sets[3] = {train, val, test};
    for (int i = 0; i < 3 && st == KDENS_OK; i++)
        if (sets[i])
            st = kdens_model_evaluate(student, sets[i], 256, &l[i], &a[i], NULL, NULL, NULL);
    kd_buf row = {0};
    if (st == KDENS_OK) {
        kdens_model_set_meta(student, "dataset", j->dataset);
        kdens_model_set_meta(student, "uuid", uuid);
        kdens_model_set_meta(student, "distill_mode", kdens_distill_mode_name(j->mode));
        st = kdens_model_save(student, f->model);
    }
    if (st == KDENS_OK) {
        kd_buf teachers = {0};
        teacher_list(ens, &teachers);
        const char *head[3] = {f->model, j->dataset, j->student_arch};
        for (int i = 0; i < 3; i++) {
            kd_csv_put_field(&row, head[i]);
            kd_buf_put(&row, ",", 1);
        }
        kd_buf_printf(&row, "%d,%g,%s,%g,%g,", j->n_teachers, j->fraction,
                      kdens_distill_mode_name(j->mode), (double)j->alpha, (double)j->temperature);
        kd_csv_put_field(&row, teachers.failed || !teachers.data ? "" : teachers.data);
        row.failed |= teachers.failed;
        kd_buf_free(&teachers);
        kd_buf_put(&row, ",", 1);
        kd_csv_put_field(&row, uuid);
        kd_buf_printf(&row, ",%.6f,%.6f,%.6f,%.6f,%.6f,%.6f", l[0], a[0], l[1], a[1], l[2], a[2]);
        st = row.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                        : kd_registry_append(f->csv, KD_STUDENTS_HEADER, row.data);
    }
    kd_buf_free(&row);
    kdens_model_free(student);
    kdens_distiller_free(d);
    kdens_model_free(tmpl);
    kdens_ensemble_free(ens);
    return st;
}

/* One repetition, unless its student is registered. */
static kdens_status one_run(const kdens_distill_job *j, int rep, const kdens_dataset *train,
                            const kdens_dataset *val, const kdens_dataset *test, bool *trained)
{
    *trained = false;
    run_files f;
    kdens_status st = run_files_make(j, rep, &f);
    if (st != KDENS_OK)
        return st;
    /* skip a registered student; claim another (fd < 0: another process is on it) */
    int fd = -1;
    if (!kd_registry_has(f.csv, f.model)) {
        st = kd_workspace_mkdir(j->workdir, j->dataset, "students");
        if (st == KDENS_OK)
            st = kd_claim(f.claim, &fd);
    }
    if (st == KDENS_OK && fd >= 0 && !kd_registry_has(f.csv, f.model)) { /* done meanwhile? */
        st = distil(j, rep, &f, train, val, test);
        if (st == KDENS_OK) {
            unlink(f.ckpt); /* finished: the checkpoint has served */
            *trained = true;
        }
    }
    kd_claim_release(fd, f.claim);
    run_files_free(&f);
    return st;
}

kdens_status kdens_distill_job_run(const kdens_distill_job *job, const kdens_dataset *train,
                                   const kdens_dataset *val, const kdens_dataset *test,
                                   int *done)
{
    if (!job || !train)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_status st = check_job(job);
    int count = 0;
    for (int r = 0; st == KDENS_OK && r < job->repetitions; r++) {
        bool trained;
        st = one_run(job, r, train, val, test, &trained);
        count += trained;
    }
    if (done)
        *done = count;
    return st;
}

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
    for (int i = 0; job && i < job->n_teacher_files; i++)
        free(job->teacher_files[i]);
    if (job)
        free(job->teacher_files);
    free(job);
}

kdens_status kdens_distill_job_add_teacher(kdens_distill_job *job, const char *model_path)
{
    if (!job || !model_path || !*model_path)
        return kd_fail(KDENS_E_ARG, "NULL handle or empty teacher file");
    char *copy = kd_strdup(model_path);
    if (!copy || !kd_resize(&job->teacher_files, (size_t)job->n_teacher_files + 1,
                            sizeof *job->teacher_files)) {
        free(copy);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    job->teacher_files[job->n_teacher_files++] = copy;
    job->n_teachers = job->n_teacher_files;
    return KDENS_OK;
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

kdens_status kdens_distill_job_set_comm(kdens_distill_job *job, kdens_comm *comm)
{
    if (!job)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    job->comm = comm;
    return KDENS_OK;
}

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
    if (j->n_teacher_files > 0 && j->n_teachers != j->n_teacher_files)
        return kd_fail(KDENS_E_ARG, "%d teachers asked but %d teacher files given", j->n_teachers,
                       j->n_teacher_files);
    if (!kd_distill_mode_ops_of(j->mode))
        return kd_fail(KDENS_E_ARG, "unknown distillation mode %d", (int)j->mode);
    return kd_check_loss(j->alpha, j->temperature);
}

char *kd_student_name(const kdens_distill_job *j, int rep)
{
    char files[24] = ""; /* teachers given as files: a digest of their names */
    if (j->n_teacher_files > 0) {
        uint64_t h = KD_FNV_BASIS;
        for (int i = 0; i < j->n_teacher_files; i++)
            h = kd_fnv1a(h, j->teacher_files[i], strlen(j->teacher_files[i]) + 1);
        snprintf(files, sizeof files, "_t%08x", (unsigned)(h ^ (h >> 32)));
    }
    return kd_path_fmt(NULL, "%s_%s_n%d%s_f%g_a%g_T%g_s%llu", j->student_arch,
                       kdens_distill_mode_name(j->mode), j->n_teachers, files, j->fraction,
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

/* The seed of repetition rep. */
static uint64_t run_seed(const kdens_distill_job *j, int rep) { return j->seed + (uint64_t)rep; }

/* Repetition rep's teachers: the files given, else sampled from the
 * registry. */
static kdens_status pick_teachers(const kdens_distill_job *j, int rep, const run_files *f,
                                  kdens_ensemble **ens)
{
    if (j->n_teacher_files > 0) {
        kdens_status st = kdens_ensemble_create(ens);
        for (int i = 0; st == KDENS_OK && i < j->n_teacher_files; i++)
            st = kdens_ensemble_add(*ens, j->teacher_files[i]);
        if (st != KDENS_OK) {
            kdens_ensemble_free(*ens);
            *ens = NULL;
        }
        return st;
    }
    return kdens_ensemble_from_registry(f->teachers_csv, j->dataset, j->teacher_arch,
                                        j->fraction, j->n_teachers, run_seed(j, rep), ens);
}

/* The student of a run: distil ens into a new model of the student
 * architecture (spec: its text, NULL for the workspace's or a built-in),
 * export it, and measure it on train, val and test (l, a: NaN where a set
 * is missing).  log and ckpt may be NULL. */
static kdens_status train_student(const kdens_distill_job *j, int rep, kdens_ensemble *ens,
                                  const char *spec, const kdens_dataset *train,
                                  const kdens_dataset *val, const kdens_dataset *test,
                                  const char *log, const char *ckpt, kdens_comm *comm,
                                  kdens_model **student, double l[3], double a[3])
{
    uint64_t seed = run_seed(j, rep);
    const kdens_model *t0 = kdens_ensemble_member(ens, 0);
    kdens_model *tmpl = NULL;
    kdens_distiller *d = NULL;
    *student = NULL;
    kdens_status st =
        spec ? kdens_model_from_spec(spec, t0->in_h, t0->in_w, t0->in_c, t0->classes, seed, &tmpl)
             : kd_workspace_model(j->workdir, j->dataset, j->student_arch, t0->in_h, t0->in_w,
                                  t0->in_c, t0->classes, seed, &tmpl);
    if (st == KDENS_OK)
        st = kd_model_copy_meta(tmpl, t0); /* input scaling and class names */
    if (st == KDENS_OK)
        st = kdens_distiller_create(ens, tmpl, j->mode, train, val, &d);
    if (st == KDENS_OK)
        st = kdens_distiller_set_loss(d, j->alpha, j->temperature);
    if (st == KDENS_OK && j->mode == KDENS_DISTILL_FUSION)
        st = kdens_distiller_set_fusion(d, j->fusion);
    if (st == KDENS_OK)
        st = kdens_distiller_set_cache(d, j->cache, NULL);
    if (st == KDENS_OK)
        st = configure(j, kdens_distiller_trainer(d), log, ckpt, seed);
    if (st == KDENS_OK) /* over ranks: data-parallel */
        st = kdens_distiller_set_comm(d, comm);
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "distilling %d teachers (%s)", j->n_teachers,
               kdens_distill_mode_name(j->mode));
        st = kdens_distiller_fit(d);
    }
    if (st == KDENS_OK)
        st = kdens_distiller_export(d, student);
    const kdens_dataset *sets[3] = {train, val, test};
    for (int i = 0; i < 3; i++)
        l[i] = a[i] = NAN;
    for (int i = 0; i < 3 && st == KDENS_OK && kdens_comm_rank(comm) == 0; i++)
        if (sets[i]) /* (over ranks rank 0 measures: it alone writes) */
            st = kdens_model_evaluate(*student, sets[i], 256, &l[i], &a[i], NULL, NULL, NULL);
    if (st != KDENS_OK) {
        kdens_model_free(*student);
        *student = NULL;
    }
    kdens_distiller_free(d);
    kdens_model_free(tmpl);
    return st;
}

/* The student's metadata (written into its file). */
static void student_meta(const kdens_distill_job *j, const char *uuid, kdens_model *student)
{
    kdens_model_set_meta(student, "dataset", j->dataset);
    kdens_model_set_meta(student, "uuid", uuid);
    kdens_model_set_meta(student, "distill_mode", kdens_distill_mode_name(j->mode));
}

/* Append the student's row to students.csv (teachers: their uuids joined by ';'). */
static kdens_status register_student(const kdens_distill_job *j, const run_files *f,
                                     const char *teachers, const double l[3], const double a[3])
{
    char uuid[64];
    run_uuid(f->name, uuid, sizeof uuid);
    kd_buf row = {0};
    const char *head[3] = {f->model, j->dataset, j->student_arch};
    for (int i = 0; i < 3; i++) {
        kd_csv_put_field(&row, head[i]);
        kd_buf_put(&row, ",", 1);
    }
    kd_buf_printf(&row, "%d,%g,%s,%g,%g,", j->n_teachers, j->fraction,
                  kdens_distill_mode_name(j->mode), (double)j->alpha, (double)j->temperature);
    kd_csv_put_field(&row, teachers);
    kd_buf_put(&row, ",", 1);
    kd_csv_put_field(&row, uuid);
    kd_buf_printf(&row, ",%.6f,%.6f,%.6f,%.6f,%.6f,%.6f", l[0], a[0], l[1], a[1], l[2], a[2]);
    kdens_status st = row.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                                 : kd_registry_append(f->csv, KD_STUDENTS_HEADER, row.data);
    kd_buf_free(&row);
    return st;
}

/* The student's folders in the workspace. */
static kdens_status student_dirs(const kdens_distill_job *j)
{
    kdens_status st = kd_workspace_mkdir(j->workdir, j->dataset, "students");
    return st == KDENS_OK ? kd_workspace_mkdir(j->workdir, j->dataset, "logs") : st;
}

/* Distil, evaluate, save and register one repetition's student. */
static kdens_status distil(const kdens_distill_job *j, int rep, const run_files *f,
                           const kdens_dataset *train, const kdens_dataset *val,
                           const kdens_dataset *test)
{
    char uuid[64];
    run_uuid(f->name, uuid, sizeof uuid);
    kdens_status st = student_dirs(j);
    kdens_ensemble *ens = NULL;
    kdens_model *student = NULL;
    double l[3], a[3];
    if (st == KDENS_OK)
        st = pick_teachers(j, rep, f, &ens);
    if (st == KDENS_OK)
        st = train_student(j, rep, ens, NULL, train, val, test, f->log, f->ckpt, NULL, &student,
                           l, a);
    if (st == KDENS_OK) {
        student_meta(j, uuid, student);
        st = kdens_model_save(student, f->model);
    }
    kd_buf teachers = {0};
    teacher_list(ens, &teachers);
    if (st == KDENS_OK)
        st = teachers.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                             : register_student(j, f, teachers.data ? teachers.data : "", l, a);
    kd_buf_free(&teachers);
    kdens_model_free(student);
    kdens_ensemble_free(ens);
    return st;
}

/* ---- a student on another rank (the grid over ranks) -------------------------------
 * A job: the teachers (u32 count; per member bytes name, bytes .kdm) and
 * the student architecture's spec (bytes; empty for a built-in).  A result:
 * 3 f64 losses, 3 f64 accuracies, bytes .kdm, bytes training log. */

kdens_status kd_student_plan(const kdens_distill_job *j, int rep, kd_student_plan_t *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->claim_fd = -1;
    run_files *f = malloc(sizeof *f);
    if (!f)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_status st = run_files_make(j, rep, f);
    if (st != KDENS_OK) {
        free(f);
        return st;
    }
    plan->files = f;
    if (kd_registry_has(f->csv, f->model))
        return KDENS_OK; /* done before */
    st = student_dirs(j);
    if (st == KDENS_OK)
        st = kd_claim(f->claim, &plan->claim_fd);
    if (st != KDENS_OK || plan->claim_fd < 0)
        return st; /* another process is on it */
    kdens_ensemble *ens = NULL;
    char *spec = NULL;
    st = pick_teachers(j, rep, f, &ens);
    if (st == KDENS_OK)
        st = kd_workspace_arch_spec(j->workdir, j->dataset, j->student_arch, &spec);
    kd_buf *job = &plan->job;
    if (st == KDENS_OK) {
        kd_buf_u32(job, (uint32_t)kdens_ensemble_size(ens));
        for (int i = 0; i < kdens_ensemble_size(ens); i++) {
            const char *name = kdens_ensemble_member_name(ens, i);
            kd_buf file = {0};
            kd_model_serialize(kdens_ensemble_member(ens, i), &file);
            kd_msg_put_bytes(job, name, strlen(name));
            kd_msg_put_bytes(job, file.data, file.len);
            job->failed |= file.failed;
            kd_buf_free(&file);
        }
        kd_msg_put_bytes(job, spec, spec ? strlen(spec) : 0);
        teacher_list(ens, &plan->teachers);
        if (job->failed || plan->teachers.failed)
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    plan->todo = st == KDENS_OK;
    free(spec);
    kdens_ensemble_free(ens);
    return st;
}

void kd_student_plan_free(kd_student_plan_t *plan)
{
    run_files *f = plan->files;
    if (f) {
        kd_claim_release(plan->claim_fd, f->claim);
        run_files_free(f);
        free(f);
    }
    kd_buf_free(&plan->job);
    kd_buf_free(&plan->teachers);
    memset(plan, 0, sizeof *plan);
    plan->claim_fd = -1;
}

/* The job's teachers into a new ensemble. */
static kdens_status unpack_teachers(kd_msg *m, kdens_ensemble **out)
{
    uint32_t n = 0;
    kdens_status st = kdens_ensemble_create(out);
    if (st == KDENS_OK && (!kd_msg_get(m, &n, 4) || n == 0 || n > 4096))
        st = kd_fail(KDENS_E_FORMAT, "a malformed student job");
    for (uint32_t i = 0; i < n && st == KDENS_OK; i++) {
        size_t name_len = 0, len = 0;
        const uint8_t *name = kd_msg_bytes(m, &name_len);
        const uint8_t *file = kd_msg_bytes(m, &len);
        char label[256];
        if (!name || !file || name_len >= sizeof label) {
            st = kd_fail(KDENS_E_FORMAT, "a malformed student job");
            break;
        }
        memcpy(label, name, name_len);
        label[name_len] = '\0';
        kdens_model *t = NULL;
        st = kd_model_load_memory(label, (const char *)file, len, &t);
        if (st == KDENS_OK)
            st = kd_ensemble_adopt(*out, t, label);
    }
    return st;
}

/* A student's job: its teachers into *ens, the spec into *spec (NULL for a
 * built-in architecture). */
static kdens_status unpack_job(const uint8_t *job, size_t len, kdens_ensemble **ens, char **spec)
{
    kd_msg m = {job, len, 0, false};
    *spec = NULL;
    kdens_status st = unpack_teachers(&m, ens);
    size_t spec_len = 0;
    const uint8_t *spec_bytes = st == KDENS_OK ? kd_msg_bytes(&m, &spec_len) : NULL;
    if (st == KDENS_OK && (!spec_bytes || m.at != m.len))
        st = kd_fail(KDENS_E_FORMAT, "a malformed student job");
    if (st == KDENS_OK && spec_len && !(*spec = malloc(spec_len + 1)))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (*spec) {
        memcpy(*spec, spec_bytes, spec_len);
        (*spec)[spec_len] = '\0';
    }
    return st;
}

kdens_status kd_student_work(const kdens_distill_job *j, int rep, const uint8_t *job, size_t len,
                             const kdens_dataset *train, const kdens_dataset *val,
                             const kdens_dataset *test, kd_buf *result)
{
    kdens_ensemble *ens = NULL;
    char *spec = NULL;
    kdens_status st = unpack_job(job, len, &ens, &spec);
    char *log = st == KDENS_OK ? kd_temp_log() : NULL;
    if (st == KDENS_OK && !log)
        st = kd_fail(KDENS_E_IO, "cannot create a temporary file for the training log");
    kdens_model *student = NULL;
    double l[3], a[3];
    if (st == KDENS_OK)
        st = train_student(j, rep, ens, spec, train, val, test, log, NULL, NULL, &student, l, a);
    if (st == KDENS_OK) {
        char *name = kd_student_name(j, rep);
        char uuid[64];
        run_uuid(name ? name : "", uuid, sizeof uuid);
        free(name);
        student_meta(j, uuid, student);
        st = kd_trained_pack(student, l, a, log, result);
    }
    if (log)
        unlink(log);
    free(log);
    free(spec);
    kdens_model_free(student);
    kdens_ensemble_free(ens);
    return st;
}

kdens_status kd_student_done(const kdens_distill_job *j, kd_student_plan_t *plan,
                             const uint8_t *result, size_t len)
{
    const run_files *f = plan->files;
    double l[3], a[3];
    kdens_status st = kd_trained_write(result, len, f->model, f->log, l, a);
    if (st == KDENS_OK)
        st = register_student(j, f, plan->teachers.data ? plan->teachers.data : "", l, a);
    return st;
}

/* One repetition over the job's ranks, data-parallel: rank 0 plans it as
 * for another rank (registered? claimed? its teachers and spec), every
 * rank receives the job and trains a slice of every batch, rank 0 saves
 * and registers the student.  Rank 0 keeps the log and the checkpoint. */
static kdens_status one_run_over_ranks(const kdens_distill_job *j, int rep,
                                       const kdens_dataset *train, const kdens_dataset *val,
                                       const kdens_dataset *test, bool *trained)
{
    kdens_comm *comm = j->comm;
    bool lead = kdens_comm_rank(comm) == 0;
    kd_student_plan_t plan;
    memset(&plan, 0, sizeof plan);
    plan.claim_fd = -1;
    kdens_status st = lead ? kd_student_plan(j, rep, &plan) : KDENS_OK;
    st = kdens_comm_agree(comm, st);
    uint8_t todo = plan.todo;
    if (st == KDENS_OK)
        st = kd_comm_broadcast(comm, &todo, 1, 0);
    if (st == KDENS_OK && todo)
        st = kd_comm_broadcast_blob(comm, &plan.job, 0);
    kdens_ensemble *ens = NULL;
    char *spec = NULL;
    if (st == KDENS_OK && todo)
        st = kdens_comm_agree(comm, unpack_job((const uint8_t *)plan.job.data, plan.job.len, &ens,
                                               &spec));
    const struct run_files *f = plan.files;
    kdens_model *student = NULL;
    double l[3], a[3];
    if (st == KDENS_OK && todo)
        st = train_student(j, rep, ens, spec, train, val, test, lead ? f->log : NULL,
                           lead ? f->ckpt : NULL, comm, &student, l, a);
    if (st == KDENS_OK && todo && lead) {
        char uuid[64];
        run_uuid(f->name, uuid, sizeof uuid);
        student_meta(j, uuid, student);
        st = kdens_model_save(student, f->model);
        if (st == KDENS_OK)
            st = register_student(j, f, plan.teachers.data ? plan.teachers.data : "", l, a);
        if (st == KDENS_OK)
            unlink(f->ckpt);
    }
    st = kdens_comm_agree(comm, st);
    *trained = st == KDENS_OK && todo;
    kdens_model_free(student);
    kdens_ensemble_free(ens);
    free(spec);
    kd_student_plan_free(&plan);
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
        st = kdens_comm_size(job->comm) > 1 ? one_run_over_ranks(job, r, train, val, test, &trained)
                                            : one_run(job, r, train, val, test, &trained);
        count += trained;
    }
    if (done)
        *done = count;
    return st;
}

/* experiment: the dissertation's experiment workflow on top of the engine --
 * the teachers.csv / students.csv registries, the teacher farm, the student
 * driver, the pipeline.  Internal to lib/experiment; the engine
 * (lib/core .. lib/distill) never includes it (make check-layers proves it). */
#ifndef KD_EXPERIMENT_H
#define KD_EXPERIMENT_H

#include "kdens_experiment.h"

#include "../core/core.h"
#include "../distill/distill.h"

/* Rows of a teachers.csv registry (registry.c). */
typedef struct kd_registry_row {
    char *location, *dataset, *arch, *uuid;
    double fraction;
    size_t line;
} kd_registry_row;
kdens_status kd_registry_read(const char *csv, kd_registry_row **rows, size_t *n_rows);
void kd_registry_free(kd_registry_row *rows, size_t n);
/* Does a registry CSV (teachers.csv, students.csv) have a row whose first
 * field is location?  False when the file does not exist. */
bool kd_registry_has(const char *csv, const char *location);
/* Append one whole row under an exclusive lock, the header first when the
 * file is new. */
kdens_status kd_registry_append(const char *csv, const char *header, const char *row);
#define KD_TEACHERS_HEADER                                                                   \
    "model_location,dataset,architecture,fraction,uuid,train_loss,train_accuracy,val_loss,"  \
    "val_accuracy,test_loss,test_accuracy"
#define KD_STUDENTS_HEADER                                                                   \
    "model_location,dataset,architecture,n_teachers,teachers_fraction,mode,alpha,"           \
    "temperature,teachers_uuid,uuid,train_loss,train_accuracy,val_loss,val_accuracy,"        \
    "test_loss,test_accuracy"

/* A distillation job (kdens_distill_job_*): fields <= 0 (patience < 0)
 * keep the student architecture's training defaults. */
struct kdens_distill_job {
    const char *workdir, *dataset, *teacher_arch, *student_arch;
    double fraction;                 /* the teachers' fraction; 0: any */
    int n_teachers, repetitions;
    kdens_distill_mode mode;
    kdens_fusion fusion;             /* for KDENS_DISTILL_FUSION */
    float alpha, temperature;
    int epochs, patience;
    size_t batch;
    double lr;
    kdens_schedule schedule;         /* constant (the default) or cosine */
    uint64_t seed;
    const kdens_augment *augment;    /* borrowed */
    int cache;
    kdens_comm *comm;                /* data-parallel over its ranks; NULL alone */
    char **teacher_files;            /* kdens_distill_job_add_teacher: owned */
    int n_teacher_files;             /* 0: teachers sampled from the registry */
};
/* The defaults of kdens_distill_job_create, names left NULL. */
void kd_distill_job_init(kdens_distill_job *job);

/* One repetition's student on another rank (driver.c; the grid over
 * ranks).  kd_student_plan, on the rank with the workspace: nothing to do
 * (registered, or claimed by another process), or todo with the job -- the
 * teachers' models and the student's spec -- and the student's claim held.
 * kd_student_work, on any rank: train the student from the job, its
 * numbers, model and log into result.  kd_student_done, back on the
 * workspace's rank: write the model, the log and the registry row. */
typedef struct kd_student_plan_t {
    bool todo;
    kd_buf job;
    kd_buf teachers;     /* their uuids joined by ';', for the registry */
    struct run_files *files;
    int claim_fd;
} kd_student_plan_t;
kdens_status kd_student_plan(const kdens_distill_job *j, int rep, kd_student_plan_t *plan);
void kd_student_plan_free(kd_student_plan_t *plan);
kdens_status kd_student_work(const kdens_distill_job *j, int rep, const uint8_t *job, size_t len,
                             const kdens_dataset *train, const kdens_dataset *val,
                             const kdens_dataset *test, kd_buf *result);
kdens_status kd_student_done(const kdens_distill_job *j, kd_student_plan_t *plan,
                             const uint8_t *result, size_t len);

/* A work queue over a communicator's ranks (queue.c): every rank calls
 * kd_queue_run; rank 0 passes the n jobs (byte strings) and is their only
 * reader of results, the other ranks do them.  work runs on a worker: a
 * job's result into *result (a failure goes back to rank 0, which hands
 * out no more jobs).  done runs on rank 0 for each result.  Returns the
 * same status on every rank (rank 0's message names a failing rank and
 * job). */
typedef struct kd_queue_ops {
    kdens_status (*work)(void *user, const uint8_t *job, size_t len, kd_buf *result);
    kdens_status (*done)(void *user, size_t job, const uint8_t *result, size_t len);
} kd_queue_ops;
kdens_status kd_queue_run(kdens_comm *c, const kd_buf *jobs, size_t n, const kd_queue_ops *ops,
                          void *user);

/* A model trained on a rank without the workspace travels back as its
 * numbers (loss and accuracy on three sets), its .kdm bytes and its training
 * log: kd_temp_log names an empty temporary file for that log (NULL when it
 * cannot be made); kd_trained_pack reads it into result with the model;
 * kd_trained_write, on rank 0, checks that the model loads, writes the log
 * and then the model (each atomically) and returns the numbers. */
char *kd_temp_log(void);
kdens_status kd_trained_pack(const kdens_model *m, const double loss[3], const double acc[3],
                             const char *log_path, kd_buf *result);
kdens_status kd_trained_write(const uint8_t *result, size_t len, const char *model_path,
                              const char *log_path, double loss[3], double acc[3]);

/* Reading a message field by field: a short message sets failed. */
typedef struct kd_msg {
    const uint8_t *data;
    size_t len, at;
    bool failed;
} kd_msg;
bool kd_msg_get(kd_msg *m, void *out, size_t len);
/* A u64 length and that many bytes (kd_msg_put_bytes); NULL when short. */
const uint8_t *kd_msg_bytes(kd_msg *m, size_t *len);
void kd_msg_put_bytes(kd_buf *b, const void *data, size_t len);

/* The pipeline (kdens_pipeline_*). */
struct kdens_pipeline {
    const char *workdir, *dataset, *arch;
    int teachers;             /* N subset teachers */
    double fraction;          /* each teacher's share of the training set */
    double val_fraction;      /* held out (stratified) for validation */
    int teacher_epochs;       /* subset teachers and the baseline */
    int student_epochs;       /* students; the baseline gets as many when larger */
    size_t batch;
    double lr;                /* Adam, cosine schedule */
    int patience;             /* early stopping; < 0 the architecture's default */
    float alpha, temperature; /* the distillation loss */
    double alphas[8];         /* candidates for alpha, chosen on validation */
    int n_alphas;             /* 0: alpha as given */
    double temperatures[8];   /* candidates for T, chosen on validation; */
    int n_temperatures;       /* 0: temperature as given */
    kdens_distill_mode modes[KD_DISTILL_MODE_COUNT];
    int n_modes;              /* students, one per mode */
    int size_repeats;         /* sub-ensembles per size for the curve */
    kdens_fusion curve_rules[8];  /* the rules of accuracy versus size */
    int n_curve_rules;
    int sizes[64], n_sizes;   /* its sizes; 0: 1 .. the teachers */
    uint64_t seed;
    kdens_comm *comm;         /* the teacher stage over its ranks; NULL alone */
};

/* A model of architecture `arch` for a workspace's dataset: a built-in
 * architecture, or the spec stored by kdens_workspace_add_arch
 * (KDENS_E_NOTFOUND naming the file looked for). */
/* The spec text of a workspace architecture into *text (malloc'd), NULL for
 * a built-in one: what ranks without the workspace build their models from. */
kdens_status kd_workspace_arch_spec(const char *workdir, const char *dataset, const char *arch,
                                   char **text);
/* Over ranks: rank 0's training and validation parts (kd_workspace_split,
 * views of the pool it loaded) replace every rank's, so that the other ranks
 * need no workspace. */
kdens_status kd_workspace_share_parts(kdens_comm *comm, const kdens_dataset *pool,
                                      kdens_dataset **train, kdens_dataset **val);
kdens_status kd_workspace_model(const char *workdir, const char *dataset, const char *arch, int h,
                                int w, int c, int classes, uint64_t seed, kdens_model **out);

/* WORKDIR/<dataset>/<part>, made when missing (KDENS_E_IO naming it). */
kdens_status kd_workspace_mkdir(const char *workdir, const char *dataset, const char *part);
/* Claim a piece of work shared by processes: an exclusive flock on its claim
 * file, held while the work runs (a process that dies drops it, so another
 * takes the work over).  *fd receives the claim, or -1 when another live
 * process holds it.  KDENS_E_IO when the file cannot be made or locked. */
kdens_status kd_claim(const char *path, int *fd);
/* Release a claim (fd < 0: none) and remove its file. */
void kd_claim_release(int fd, const char *path);
/* The split of pool into training and validation parts, from the manifests
 * dir/train.csv and dir/val.csv when they exist, else drawn (stratified,
 * seeded) and written there. */
kdens_status kd_workspace_split(const char *dir, const kdens_dataset *pool, double val_fraction,
                                uint64_t seed, kdens_dataset **train, kdens_dataset **val);
/* n subset manifests of `fraction` of train in dir/subsets/, subset k drawn
 * from seed * 1000 + k (deterministic names: rewriting one is harmless). */
kdens_status kd_workspace_subsets(const char *dir, const kdens_dataset *train, double fraction,
                                  int n, uint64_t seed);
/* Write a text buffer to path atomically and free it (path NULL: out of
 * memory; path is freed too). */
kdens_status kd_save_text(char *path, kd_buf *b);
/* The class the model decides for every image of ds (allocated). */
kdens_status kd_decide_all(kdens_model *m, const kdens_dataset *ds, int32_t **out);

/* A handle that owns copies of its names: one zeroed allocation of `size`
 * bytes followed by the n strings in[], which *names[i] point to afterwards;
 * one free() releases it.  in[0] is the workspace; the other names may not
 * hold '/' or ',', which would break paths and registry rows (KDENS_E_ARG). */
kdens_status kd_handle_with_names(size_t size, int n, const char *const *in,
                                  const char **names[], void **out);

/* A public setter of one field, with its range check. */
#define KD_SETTER(handle, fn, arg_type, field, valid, what)                                 \
    kdens_status fn(handle *h, arg_type v)                                                  \
    {                                                                                       \
        if (!h)                                                                             \
            return kd_fail(KDENS_E_ARG, "NULL handle");                                     \
        if (!(valid))                                                                       \
            return kd_fail(KDENS_E_ARG, "%s %g is out of range", what, (double)v);          \
        h->field = v;                                                                       \
        return KDENS_OK;                                                                    \
    }

/* The name of run `rep`'s student: the file stem under
 * WORKDIR/<dataset>/students/ and of its log under logs/.  Allocated (free
 * it); NULL, with the message set, when out of memory. */
char *kd_student_name(const kdens_distill_job *j, int rep);

#endif

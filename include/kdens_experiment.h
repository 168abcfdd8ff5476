/*
 * kdens_experiment.h -- the experiment workflow of libkdens, built on the
 * engine of kdens.h: the dissertation's way of running multi-teacher
 * distillation as experiments over a workspace folder.
 *
 *   WORKDIR/teachers.csv                  registry of trained teachers
 *   WORKDIR/students.csv                  registry of distilled students
 *   WORKDIR/<dataset>/subsets/            subset manifests (one per teacher)
 *   WORKDIR/<dataset>/teachers/           teacher models (+ checkpoints, claims)
 *   WORKDIR/<dataset>/students/           student models
 *   WORKDIR/<dataset>/logs/               training logs
 *   WORKDIR/results.csv, report.md, ...   the pipeline's report
 *
 * docs/formats.md gives every file's columns.  An application that only
 * classifies, trains, fuses or distils needs kdens.h alone; nothing in the
 * engine depends on this layer.
 *
 * Conventions are those of kdens.h.  Every workflow object is an opaque
 * handle configured by setters (one value each; a setter's errors are
 * KDENS_E_ARG for a NULL handle or a value out of range), and run by one
 * call.  Every step reuses what an earlier run left in the workspace, so a
 * command run again continues where it stopped.
 *
 * Copyright (c) 2026 the libkdens authors.  MIT licence, see LICENSE.
 */
#ifndef KDENS_EXPERIMENT_H
#define KDENS_EXPERIMENT_H

#include "kdens.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Workspaces                                                                 */
/* ------------------------------------------------------------------------ */

/* Make a network described by a text spec (docs/spec.md) an architecture of
 * the workspace's dataset under `name`: the spec is stored as
 * WORKDIR/<dataset>/archs/<name>.spec, and teacher farms, distillation jobs
 * and pipelines of that dataset then accept `name` wherever they take an
 * architecture, as a built-in one, and registries name it so.  Adding the
 * same spec again does nothing.  Errors: KDENS_E_ARG (NULL, a name holding
 * '/' or ',' or a built-in's), KDENS_E_STATE (another spec is stored under
 * the name), KDENS_E_IO. */
KDENS_API kdens_status kdens_workspace_add_arch(const char *workdir, const char *dataset,
                                                const char *name, const char *spec);

/* ------------------------------------------------------------------------ */
/* Teacher farms                                                              */
/* ------------------------------------------------------------------------ */

/* Teachers of one architecture for one dataset of a workspace: subset
 * teachers, the baseline, snapshot and checkpoint ensembles.  Training
 * settings default to the architecture's (kdens_trainer_use_arch_defaults). */
typedef struct kdens_teachers kdens_teachers;

/* Train teachers of `arch` for dataset `name` in the workspace
 * WORKDIR/<name>/{subsets,teachers,logs}/: one per subset manifest (those of
 * `fraction` only, when it is above 0), selected from `pool` (the training
 * data the manifests index), validated on `val`, tested on `test`.  The
 * datasets must outlive the handle.  Errors: KDENS_E_ARG, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_teachers_create(const char *workdir, const char *name,
                                             const char *arch, const kdens_dataset *pool,
                                             const kdens_dataset *val,
                                             const kdens_dataset *test,
                                             kdens_teachers **out);
KDENS_API void kdens_teachers_free(kdens_teachers *tc);
/* Training settings of every teacher and the baseline: epochs (>= 1),
 * batch (>= 1), Adam's learning rate (> 0), early-stopping patience (0: off)
 * and the seed.  Not called: the architecture's defaults and seed 0. */
KDENS_API kdens_status kdens_teachers_set_epochs(kdens_teachers *tc, int epochs);
KDENS_API kdens_status kdens_teachers_set_batch(kdens_teachers *tc, size_t batch);
KDENS_API kdens_status kdens_teachers_set_lr(kdens_teachers *tc, double lr);
KDENS_API kdens_status kdens_teachers_set_patience(kdens_teachers *tc, int patience);
KDENS_API kdens_status kdens_teachers_set_seed(kdens_teachers *tc, uint64_t seed);
/* The learning-rate schedule of subset teachers and the baseline (constant,
 * or cosine over the epochs; default: the architecture's). */
KDENS_API kdens_status kdens_teachers_set_schedule(kdens_teachers *tc, kdens_schedule schedule);
/* The augmentation of subset teachers and the baseline (borrowed; NULL:
 * none).  Not called: the dataset's policy (kdens_augment_preset). */
KDENS_API kdens_status kdens_teachers_set_augment(kdens_teachers *tc, const kdens_augment *aug);
/* Over the communicator's ranks (NULL or one rank: alone).  Every rank
 * creates the same handle with the same settings and data (checked:
 * KDENS_E_STATE on every rank, naming the rank that differs) and calls the
 * same train function.  kdens_teachers_train then runs a farm: rank 0 alone
 * reads and writes the workspace (other ranks need none: their workdir is
 * never touched), hands each untrained subset to the next rank that asks,
 * and writes the model, its log and its registry row when the result comes
 * back; workspace architectures travel as their spec.  More ranks than
 * subsets leave the extra ranks idle.  A rank that dies loses its current
 * teacher only: run the same command again and the farm resumes.  The
 * baseline and the one-run ensembles (snapshots, checkpoints, FGE) train
 * data-parallel over the ranks instead (kdens_trainer_set_comm), written by
 * rank 0. */
KDENS_API kdens_status kdens_teachers_set_comm(kdens_teachers *tc, kdens_comm *comm);
/* Train every subset of the fraction not yet trained.  Several processes may
 * work through one workspace at once: each subset is claimed by one process
 * (a claim file under an advisory lock, so the claim of a dead process is
 * taken over), the teacher resumes from its checkpoint if one was left, and
 * rows are appended to WORKDIR/teachers.csv under a lock, whole:
 *   model_location,dataset,architecture,fraction,uuid,train_loss,
 *   train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy
 * *trained receives the number of teachers this call trained.  Errors:
 * KDENS_E_NOTFOUND (no subsets), KDENS_E_IO, and those of training. */
KDENS_API kdens_status kdens_teachers_train(kdens_teachers *tc, double fraction, int *trained);
/* The baseline: the same architecture on the whole pool, uuid "all_trainset",
 * fraction 1, registered like a teacher.  Skipped when already trained. */
KDENS_API kdens_status kdens_teachers_train_baseline(kdens_teachers *tc);
/* Submodels from one training run on the whole pool (fraction 1), each saved
 * and registered like a teacher:
 *  - a snapshot ensemble (Huang et al. 2017): a cyclic cosine learning rate
 *    restarted every cycle_epochs, the model saved at the end of each of
 *    `cycles` cycles -- uuids snapshot_<seed>_<k>;
 *  - a checkpoint ensemble: the best_k epochs by validation loss of a run of
 *    `epochs` -- uuids checkpoint_<seed>_e<epoch>;
 *  - fast geometric ensembling (Garipov et al. 2018): a triangular learning
 *    rate stepped per batch, from the teachers' rate down to a hundredth of
 *    it at mid-cycle and back, every cycle_epochs (even); the model saved at
 *    each of `cycles` low points -- uuids fge_<seed>_<k>.
 * Errors: KDENS_E_ARG, and those of training and registering. */
KDENS_API kdens_status kdens_teachers_train_snapshots(kdens_teachers *tc, int cycles,
                                                      int cycle_epochs);
KDENS_API kdens_status kdens_teachers_train_checkpoints(kdens_teachers *tc, int epochs,
                                                        int best_k);
KDENS_API kdens_status kdens_teachers_train_fge(kdens_teachers *tc, int cycles,
                                                int cycle_epochs);

/* Register a model trained elsewhere as a teacher: model_path is any file
 * kdens_model_load reads (a .kdm, or an .onnx once kdens_onnx_enable has
 * run -- a PyTorch or Keras model), recorded in WORKDIR/teachers.csv as it
 * is given (not copied: keep it where it is, or give an absolute path)
 * under the handle's dataset and architecture names, the fraction of the
 * training data it saw ((0, 1]; 1 when unknown) and uuid, after it is
 * measured on the handle's pool, validation and test data (the datasets
 * must fit the model).  The teacher then joins ensembles
 * (kdens_ensemble_from_registry) and distillation jobs like a trained one.
 * A file registered already is left as it is (KDENS_OK).  Runs in one
 * process (KDENS_E_STATE over several ranks).  Errors: KDENS_E_ARG (NULL,
 * fraction out of range, a uuid registered for another file of the
 * dataset), KDENS_E_SHAPE (the data does not fit), and those of
 * kdens_model_load and of writing. */
KDENS_API kdens_status kdens_teachers_add(kdens_teachers *tc, const char *model_path,
                                          double fraction, const char *uuid);

/* A teachers.csv registry as read: its rows in file order. */
typedef struct kdens_registry kdens_registry;
/* Read a registry (docs/formats.md; CSV with quoted fields).  Errors:
 * KDENS_E_IO, KDENS_E_FORMAT (a row without location, dataset,
 * architecture, a numeric fraction and uuid: line named), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_registry_load(const char *teachers_csv, kdens_registry **out);
KDENS_API void kdens_registry_free(kdens_registry *reg);
KDENS_API size_t kdens_registry_count(const kdens_registry *reg);
/* Row i's model file, dataset name, architecture, fraction and uuid (any
 * output may be NULL; the strings live as long as the registry).
 * KDENS_E_ARG for NULL or i out of range. */
KDENS_API kdens_status kdens_registry_row(const kdens_registry *reg, size_t i,
                                          const char **location, const char **dataset,
                                          const char **arch, double *fraction,
                                          const char **uuid);

/* An ensemble of the teachers a teachers.csv registry lists: the rows of
 * `dataset` and `arch` (fraction > 0: that fraction only), all of them (n 0)
 * or a random sample of n drawn from seed, taken from the rows in the order
 * of their uuids (so the same seed picks the same members in the same order
 * whatever order the rows were appended in).  Members are named by their
 * uuids.  Errors: KDENS_E_IO, KDENS_E_FORMAT (a malformed row, line named),
 * KDENS_E_NOTFOUND (fewer matching rows than n, or none), and those of
 * kdens_ensemble_add. */
KDENS_API kdens_status kdens_ensemble_from_registry(const char *teachers_csv,
                                                    const char *dataset, const char *arch,
                                                    double fraction, int n, uint64_t seed,
                                                    kdens_ensemble **out);

/* ------------------------------------------------------------------------ */
/* The student driver: repeated distillation runs over a workspace            */
/* ------------------------------------------------------------------------ */

/* A distillation experiment: for each of `repetitions` runs, sample
 * n_teachers teachers of teacher_arch (and the fraction, when > 0) from
 * WORKDIR/teachers.csv (seed + run), distil them into student_arch, evaluate
 * on train, val and test, save the exported student as
 * WORKDIR/<dataset>/students/<name>.kdm and append a row to
 * WORKDIR/students.csv:
 *   model_location,dataset,architecture,n_teachers,teachers_fraction,mode,
 *   alpha,temperature,teachers_uuid,uuid,train_loss,train_accuracy,val_loss,
 *   val_accuracy,test_loss,test_accuracy
 * (teachers_uuid: the uuids joined by ';').  A run whose student is already
 * registered is skipped; a run interrupted mid-training resumes from its
 * checkpoint. */
typedef struct kdens_distill_job kdens_distill_job;

/* Defaults (docs/distillation.md): any fraction, 5 teachers, 1 repetition,
 * output_avg, fusion rule borda, alpha 0.5, T 1, teacher outputs cached, the
 * student architecture's training settings, seed 0, no augmentation.
 * Errors: KDENS_E_ARG (NULL, a name holding '/' or ','), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_distill_job_create(const char *workdir, const char *dataset,
                                                const char *teacher_arch,
                                                const char *student_arch,
                                                kdens_distill_job **out);
KDENS_API void kdens_distill_job_free(kdens_distill_job *job);
/* The teachers: how many (>= 1), and of which fraction (0: any, else in
 * (0, 1]). */
KDENS_API kdens_status kdens_distill_job_set_teachers(kdens_distill_job *job, int n);
KDENS_API kdens_status kdens_distill_job_set_fraction(kdens_distill_job *job, double fraction);
KDENS_API kdens_status kdens_distill_job_set_repetitions(kdens_distill_job *job, int repetitions);
KDENS_API kdens_status kdens_distill_job_set_mode(kdens_distill_job *job, kdens_distill_mode mode);
/* The rule of the fusion mode (a rule with scores, as
 * kdens_distiller_set_fusion). */
KDENS_API kdens_status kdens_distill_job_set_fusion(kdens_distill_job *job, kdens_fusion rule);
/* The loss alpha * CE + (1 - alpha) * T^2 * KL, as kdens_distiller_set_loss:
 * alpha in [0, 1], T > 0. */
KDENS_API kdens_status kdens_distill_job_set_alpha(kdens_distill_job *job, double alpha);
KDENS_API kdens_status kdens_distill_job_set_temperature(kdens_distill_job *job,
                                                         double temperature);
/* The student's training: epochs (>= 1), batch (>= 1), Adam's learning rate
 * (> 0), early-stopping patience (0: off), schedule (constant or cosine),
 * seed.  Not called: the student architecture's defaults. */
KDENS_API kdens_status kdens_distill_job_set_epochs(kdens_distill_job *job, int epochs);
KDENS_API kdens_status kdens_distill_job_set_batch(kdens_distill_job *job, size_t batch);
KDENS_API kdens_status kdens_distill_job_set_lr(kdens_distill_job *job, double lr);
KDENS_API kdens_status kdens_distill_job_set_patience(kdens_distill_job *job, int patience);
KDENS_API kdens_status kdens_distill_job_set_schedule(kdens_distill_job *job,
                                                      kdens_schedule schedule);
KDENS_API kdens_status kdens_distill_job_set_seed(kdens_distill_job *job, uint64_t seed);
/* Distil over the communicator's ranks (NULL or one rank: alone): every
 * rank calls kdens_distill_job_run with the same job and data; for each
 * repetition rank 0 reads the workspace (registry, claim, teachers), sends
 * the teachers' models and the student's spec to every rank, the student
 * trains data-parallel (kdens_distiller_set_comm) and rank 0 saves and
 * registers it (its log and checkpoint are rank 0's). */
KDENS_API kdens_status kdens_distill_job_set_comm(kdens_distill_job *job, kdens_comm *comm);
/* Distil these teachers instead of sampling the registry: model_path is any
 * file kdens_model_load reads (a .kdm, or an .onnx once kdens_onnx_enable
 * has run), copied; call once per teacher.  Every repetition then distils
 * all of them (the teacher count becomes theirs; the teacher architecture
 * and fraction only describe the run), the student's name carries a digest
 * of the files' names, and students.csv's teachers_uuid lists the files.
 * Errors: KDENS_E_ARG (NULL, empty), KDENS_E_NOMEM; a file that does not
 * load fails kdens_distill_job_run. */
KDENS_API kdens_status kdens_distill_job_add_teacher(kdens_distill_job *job,
                                                     const char *model_path);
/* Borrowed (it must outlive the job); NULL: none, teacher outputs cached. */
KDENS_API kdens_status kdens_distill_job_set_augment(kdens_distill_job *job,
                                                     const kdens_augment *aug);
/* As kdens_distiller_set_cache, without a file: 1 in memory, 0 none. */
KDENS_API kdens_status kdens_distill_job_set_cache(kdens_distill_job *job, int cache);
/* Run.  *done receives the number of students trained by this call.  The
 * datasets must fit the teachers.  Errors: KDENS_E_ARG, KDENS_E_NOTFOUND
 * (fewer registered teachers than asked), and those of distillation,
 * evaluation and registering. */
KDENS_API kdens_status kdens_distill_job_run(const kdens_distill_job *job,
                                             const kdens_dataset *train,
                                             const kdens_dataset *val,
                                             const kdens_dataset *test, int *done);

/* ------------------------------------------------------------------------ */
/* Experiment grids (kdens experiment, make experiment; docs/experiments.md)   */
/* ------------------------------------------------------------------------ */

/* A grid of distillation runs: students distilled from n teachers of each
 * fraction, in each mode, at each alpha and T, each with several seeds. */
typedef struct kdens_grid kdens_grid;

/* A plan: lines `key = value[, value ...]`, `#` comments.  Axes (lists):
 * teachers (n, required), fraction (required), mode (output_avg), alpha
 * (0.5), temperature (1).  Settings: dataset (for the caller to load),
 * arch or teacher_arch / student_arch (test), seeds (1), seed (1),
 * teacher_epochs and student_epochs (10), batch (128), lr (0.005),
 * patience (the architecture's), val_fraction (0.1).  Errors:
 * KDENS_E_FORMAT (an unknown key, a bad value: line named), KDENS_E_NOMEM;
 * _load also KDENS_E_IO. */
KDENS_API kdens_status kdens_grid_parse(const char *plan, kdens_grid **out);
KDENS_API kdens_status kdens_grid_load(const char *path, kdens_grid **out);
KDENS_API void kdens_grid_free(kdens_grid *g);
/* The plan's dataset (a preset, NAME=DIR or a folder, as the kdens tool
 * takes it), NULL when it names none. */
KDENS_API const char *kdens_grid_dataset(const kdens_grid *g);
/* The students the grid holds: the product of the axes' lengths and seeds. */
KDENS_API size_t kdens_grid_students(const kdens_grid *g);
/* Run the grid over the communicator's ranks (NULL or one rank: alone):
 * every rank loads the same plan and data and calls kdens_grid_run; rank 0
 * alone reads and writes the workspace.  The teachers train as a farm and
 * the baselines data-parallel (kdens_teachers_set_comm); then each student
 * -- a cell and a seed -- goes to the next free rank with its teachers'
 * models, and comes back as its model, log and numbers for rank 0 to write.
 * Rank 0 writes the tables and plots. */
KDENS_API kdens_status kdens_grid_set_comm(kdens_grid *g, kdens_comm *comm);
/* Run the grid in the workspace WORKDIR for dataset `name` (pool: its
 * training data; test: its test set):
 *  1. the split of pool into training and validation (W/<name>/train.csv,
 *     val.csv; reused when present);
 *  2. for each fraction, max(n) subset manifests and their teachers, trained
 *     once and shared by every student that needs them; the baseline (the
 *     student architecture on the whole training part);
 *  3. every student (a distillation job per cell, one repetition per seed:
 *     each seed samples its n teachers afresh);
 *  4. W/<name>/grid.csv -- one row per student: n_teachers, fraction, mode,
 *     alpha, temperature, seed, test_accuracy, baseline_accuracy, and
 *     McNemar's test against the baseline (only_student_right,
 *     only_baseline_right, p_value) -- W/<name>/grid.md (mean and standard
 *     error per cell, rows n and fraction, columns modes; the difference
 *     from the baseline with its 95% interval) and plots of accuracy against
 *     n, the fraction and alpha (grid_n.png, grid_fraction.png,
 *     grid_alpha.png).
 * What is registered is reused; a killed run resumes; several processes may
 * run one grid at once (each teacher and student is claimed by one), and
 * the report counts what is still pending.  Errors: KDENS_E_ARG, and those
 * of the steps. */
KDENS_API kdens_status kdens_grid_run(const kdens_grid *g, const char *workdir, const char *name,
                                      const kdens_dataset *pool, const kdens_dataset *test);

/* ------------------------------------------------------------------------ */
/* The whole experiment (kdens pipeline, make demo; docs/guide.md)             */
/* ------------------------------------------------------------------------ */

/* The multi-teacher experiment of one architecture on one dataset. */
typedef struct kdens_pipeline kdens_pipeline;

/* Defaults, those of make demo (docs/guide.md explains them): 8 teachers on
 * fraction 0.8, validation fraction 0.1, 15 teacher epochs and 20 student
 * epochs, batch 128, learning rate 0.005, the architecture's early stopping,
 * alpha 0.5, T chosen on validation among 1, 2 and 4, students output_avg,
 * loss_avg and mimic_all, 10 sub-ensembles per size, seed 1.  Errors:
 * KDENS_E_ARG (NULL, a name holding '/' or ','), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_pipeline_create(const char *workdir, const char *dataset,
                                             const char *arch, kdens_pipeline **out);
KDENS_API void kdens_pipeline_free(kdens_pipeline *p);
/* N subset teachers (1 to 64), each on a share in (0, 1] of the training
 * part. */
KDENS_API kdens_status kdens_pipeline_set_teachers(kdens_pipeline *p, int n);
KDENS_API kdens_status kdens_pipeline_set_fraction(kdens_pipeline *p, double fraction);
/* The share in (0, 1) of the pool held out (stratified) for validation. */
KDENS_API kdens_status kdens_pipeline_set_val_fraction(kdens_pipeline *p, double fraction);
/* Epochs (>= 1) of the teachers and baseline, and of the students (the
 * baseline gets as many when that is larger). */
KDENS_API kdens_status kdens_pipeline_set_teacher_epochs(kdens_pipeline *p, int epochs);
KDENS_API kdens_status kdens_pipeline_set_student_epochs(kdens_pipeline *p, int epochs);
KDENS_API kdens_status kdens_pipeline_set_batch(kdens_pipeline *p, size_t batch);
/* Adam's learning rate (> 0) under a cosine schedule. */
KDENS_API kdens_status kdens_pipeline_set_lr(kdens_pipeline *p, double lr);
KDENS_API kdens_status kdens_pipeline_set_patience(kdens_pipeline *p, int patience);
/* The students' loss, as kdens_distill_job_set_alpha and _temperature.
 * Setting the alpha or the temperature drops its candidates below. */
KDENS_API kdens_status kdens_pipeline_set_alpha(kdens_pipeline *p, double alpha);
KDENS_API kdens_status kdens_pipeline_set_temperature(kdens_pipeline *p, double temperature);
/* Choose T among n candidates (2 to 8) on the validation part -- an
 * output_avg student per candidate, the most accurate on validation wins,
 * every student then uses it -- so that no setting is tuned on the test
 * set.  Default: 1, 2 and 4. */
KDENS_API kdens_status kdens_pipeline_set_temperature_candidates(kdens_pipeline *p,
                                                                 const double *t, int n);
/* Choose alpha too, among n candidates (2 to 8, each in [0, 1]), on the
 * validation part: every pair of an alpha and a temperature candidate gets
 * an output_avg student, at most 16 pairs.  Default: alpha 0.5, given. */
KDENS_API kdens_status kdens_pipeline_set_alpha_candidates(kdens_pipeline *p, const double *a,
                                                           int n);
/* Run the teacher stage over the communicator's ranks (NULL or one rank:
 * alone): every rank calls kdens_pipeline_run with the same settings and
 * data; rank 0 makes the workspace's split and subsets, the teachers train
 * as a farm (kdens_teachers_set_comm) and the baseline data-parallel, then
 * rank 0 alone fuses, distils and writes the report while the others wait
 * for its status. */
KDENS_API kdens_status kdens_pipeline_set_comm(kdens_pipeline *p, kdens_comm *comm);
/* The students, one per mode (copied; n 0: none; a mode at most once). */
KDENS_API kdens_status kdens_pipeline_set_modes(kdens_pipeline *p,
                                                const kdens_distill_mode *modes, int n);
/* The accuracy-versus-size curve: its rules (1 to 8; default mean,
 * geometric, plurality, borda, copeland) and ensemble sizes (increasing, at
 * most 64; n_sizes 0: every size from 1 to the teachers; sizes above the
 * teachers are left out).  The vote statistics per size use the same sizes. */
KDENS_API kdens_status kdens_pipeline_set_curve(kdens_pipeline *p, const kdens_fusion *rules,
                                                int n_rules, const int *sizes, int n_sizes);
/* Random sub-ensembles per size (>= 1) for the accuracy-versus-size curve. */
KDENS_API kdens_status kdens_pipeline_set_size_repeats(kdens_pipeline *p, int repeats);
KDENS_API kdens_status kdens_pipeline_set_seed(kdens_pipeline *p, uint64_t seed);
/* Run the experiment on pool (the training set) and test:
 *  1. split pool into train and validation (seeded; W/<dataset>/train.csv,
 *     val.csv -- reused when present);
 *  2. N subset manifests at the fraction (W/<dataset>/subsets/);
 *  3. N teachers and a baseline on the whole training part;
 *  4. the ensemble under every fusion rule, accuracy versus ensemble size,
 *     vote statistics and the teachers' agreement;
 *  5. one student per mode (a kdens_distill_job);
 *  6. the report: W/results.csv (kind,name,test_accuracy,test_loss,params,
 *     ms_per_image), W/report.md, W/report.html and its PNG plots.
 * Progress goes to the progress callback, steps to the log callback.
 * Errors: KDENS_E_ARG, and those of the steps. */
KDENS_API kdens_status kdens_pipeline_run(const kdens_pipeline *p, const kdens_dataset *pool,
                                          const kdens_dataset *test);

#ifdef __cplusplus
}
#endif

#endif /* KDENS_EXPERIMENT_H */

/* train: losses, optimisers, the training step, evaluation and the
 * trainer.  Internal; uses core, tensor, nn and data. */
#ifndef KD_TRAIN_H
#define KD_TRAIN_H

#include "../data/data.h"
#include "../nn/nn.h"

/* The distillation-aware loss on logits z (rows x classes): fills dz with the
 * gradient of the mean loss and returns the mean loss.  labels may be NULL
 * when alpha is 0; soft may be NULL (then the loss is cross-entropy). */
double kd_loss_logits(size_t rows, int classes, const float *z, const int32_t *labels,
                      const float *soft, float alpha, float temperature, float *dz,
                      size_t *correct);

/* loss_avg: `sets` target distributions per row (soft: rows x sets x
 * classes); L = alpha CE + (1 - alpha) T^2 mean_j KL(q_j || softmax(z / T)).
 * Its gradient is that of the mean target (written to mean, rows x classes,
 * and used through kd_loss_logits); the loss adds the entropy difference
 * H(mean) - mean_j H(q_j), constant in z. */
double kd_loss_sets(size_t rows, int classes, const float *z, const int32_t *labels,
                    const float *soft, int sets, float alpha, float temperature, float *mean,
                    float *dz, size_t *correct);
/* mimic_all: z are the mean of the heads' logits; head h (logits head_z[h])
 * mimics target h (soft: rows x heads x classes):
 * L = alpha CE(y, softmax(z)) + (1 - alpha) T^2 mean_h KL(q_h || softmax(z_h / T));
 * fills dz (the CE part) and head_dz[h] (the mimic part). */
double kd_loss_heads(size_t rows, int classes, const float *z, const int32_t *labels,
                     const float *soft, int heads, const float *const *head_z,
                     float *const *head_dz, float alpha, float temperature, float *dz,
                     size_t *correct);

/* Optimiser state (hyper-parameters, step count, moments) for checkpoints. */
void kd_optimizer_save(const kdens_optimizer *o, kd_buf *b);
kdens_status kd_optimizer_restore(kdens_optimizer *o, const kdens_model *m, const uint8_t *data,
                                  size_t len, const char *path);

/* KDENS_E_SHAPE unless the dataset's images and classes fit the model. */
kdens_status kd_check_fit(const kdens_model *m, const kdens_dataset *ds, const char *what);
/* KDENS_E_SHAPE unless the rows are as wide as the model's input (H x W x C
 * floats); KDENS_E_ARG for a label outside [0, classes). */
kdens_status kd_check_features(const kdens_model *m, const kd_features *f, const char *what);
/* kdens_model_evaluate on feature rows: mean cross-entropy and top-1
 * accuracy (either may be NULL). */
kdens_status kd_evaluate_features(kdens_model *m, const kd_features *f, size_t batch,
                                  double *loss, double *top1);

/* A trainer for a model over float features: n rows x with labels,
 * validating on n_val rows x_val (n_val 0: no validation, no early
 * stopping).  A row is the model's input, H x W x C floats, as the model
 * takes it (no scaling).  The same loop as over datasets -- shuffle, batches,
 * schedules, early stopping, log, checkpoints, soft targets (the indices are
 * row numbers) -- without augmentation: kdens_trainer_set_augment with a
 * policy fails, and so does fit after kdens_trainer_use_reference_defaults
 * (which sets one).  The arrays must outlive the trainer.  Errors:
 * KDENS_E_ARG (NULL, n 0, a label outside [0, classes)), KDENS_E_NOMEM. */
kdens_status kd_trainer_create_features(kdens_model *model, const float *x,
                                        const int32_t *labels, size_t n, const float *x_val,
                                        const int32_t *labels_val, size_t n_val,
                                        kdens_trainer **out);

/* Overrides of an architecture's reference training defaults, shared by the
 * teacher workflow and the student driver: values <= 0 keep the default;
 * lr > 0 selects Adam at lr; schedule < 0 keeps the default schedule. */
typedef struct kd_train_overrides {
    int epochs;
    size_t batch;
    double lr;
    int patience;
    int schedule;
    uint64_t seed;
} kd_train_overrides;
/* The reference defaults of arch (not listed: early stopping with patience
 * 10, restoring the best), then the overrides and the seed. */
kdens_status kd_trainer_configure(kdens_trainer *t, const char *arch, const kd_train_overrides *o);

/* The trainer's augmentation policy (NULL: none). */
const kdens_augment *kd_trainer_augment(const kdens_trainer *t);

#endif

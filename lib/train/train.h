/* train: losses, optimisers, the training step, evaluation and the
 * trainer.  Internal; uses core, tensor, nn and data. */
#ifndef KD_TRAIN_H
#define KD_TRAIN_H

#include "../data/data.h"
#include "../nn/nn.h"

/* The loss a model trains with, attached to the model (kdens_model's loss
 * field, opaque to lib/nn): alpha and T (kdens_model_set_loss), the target
 * distributions per sample (soft_sets: 1, or one per teacher for loss_avg
 * and mimic_all) and, for a mimic_all student, its heads -- the dense nodes
 * head_0 .. that each mimic one teacher (docs/distillation.md). */
typedef struct kd_loss {
    float alpha, temperature;
    int soft_sets, n_heads;
    int *head_nodes;
    float **head_ptrs;    /* 2 x n_heads: the heads' outputs, then their gradients */
    float *sets_mean;     /* sets_rows x classes: the mean of soft_sets targets */
    size_t sets_rows;
} kd_loss;
/* The model's loss: alpha 1, T 1, one target set and no heads until set. */
const kd_loss *kd_loss_of(const kdens_model *m);
/* The same for changing, attached on first use; NULL (KDENS_E_NOMEM). */
kd_loss *kd_loss_edit(kdens_model *m);
/* Target distributions per sample (>= 1). */
kdens_status kd_loss_set_soft_sets(kdens_model *m, int sets);
/* Make the nodes head_0 .. head_{n-1} (dense layers of `classes` units) the
 * heads of a mimic_all student; n 0 clears.  KDENS_E_ARG when missing. */
kdens_status kd_loss_set_heads(kdens_model *m, int n);

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

/* KDENS_E_ARG unless alpha lies in [0, 1] and the temperature (as a
 * float) is positive and finite: the distillation loss's settings. */
kdens_status kd_check_loss(double alpha, double temperature);

/* KDENS_E_SHAPE unless the dataset's images and classes fit the model. */
/* Everything of kdens_model_forward_loss that can fail before the forward
 * pass: the targets checked, the buffers planned.  Data-parallel training
 * agrees on it across ranks before the pass, whose batch norms then meet
 * in every rank's collectives. */
kdens_status kd_forward_prepare(kdens_model *m, size_t n, const int32_t *labels,
                                const float *soft);
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
 * policy fails, and so does fit after kdens_trainer_use_arch_defaults
 * (which sets one).  The arrays must outlive the trainer.  Errors:
 * KDENS_E_ARG (NULL, n 0, a label outside [0, classes)), KDENS_E_NOMEM. */
kdens_status kd_trainer_create_features(kdens_model *model, const float *x,
                                        const int32_t *labels, size_t n, const float *x_val,
                                        const int32_t *labels_val, size_t n_val,
                                        kdens_trainer **out);

/* Overrides of an architecture's training defaults, for the experiment
 * layer's teacher farm and student driver: values <= 0 (patience < 0) keep
 * the default; lr > 0 selects Adam at lr; schedule < 0 keeps the default
 * schedule. */
typedef struct kd_train_overrides {
    int epochs;
    size_t batch;
    double lr;
    int patience;
    int schedule;
    uint64_t seed;
} kd_train_overrides;
/* The defaults of arch (not listed: early stopping with patience
 * 10, restoring the best), then the overrides and the seed. */
kdens_status kd_trainer_configure(kdens_trainer *t, const char *arch, const kd_train_overrides *o);

/* The trainer's learning rate at x epochs into training (epoch + batch /
 * batches): its schedule with milestones and floor; the triangular one
 * moves within an epoch, the others at epoch starts. */
double kd_trainer_lr(const kdens_trainer *t, double x);

/* The trainer's augmentation policy (NULL: none). */
const kdens_augment *kd_trainer_augment(const kdens_trainer *t);

/* KDENS_E_STATE: an int8 model cannot be trained. */
kdens_status kd_refuse_quantized(const kdens_model *m);

#endif

/* train: losses, optimisers and the training step.  Internal; uses core,
 * tensor and nn. */
#ifndef KD_TRAIN_H
#define KD_TRAIN_H

#include "../nn/nn.h"

/* The distillation-aware loss on logits z (rows x classes): fills dz with the
 * gradient of the mean loss and returns the mean loss.  labels may be NULL
 * when alpha is 0; soft may be NULL (then the loss is cross-entropy). */
double kd_loss_logits(size_t rows, int classes, const float *z, const int32_t *labels,
                      const float *soft, float alpha, float temperature, float *dz,
                      size_t *correct);

/* Optimiser state (hyper-parameters, step count, moments) for checkpoints. */
void kd_optimizer_save(const kdens_optimizer *o, kd_buf *b);
kdens_status kd_optimizer_restore(kdens_optimizer *o, const kdens_model *m, const uint8_t *data,
                                  size_t len, const char *path);

/* KDENS_E_SHAPE unless the dataset's images and classes fit the model. */
kdens_status kd_check_fit(const kdens_model *m, const kdens_dataset *ds, const char *what);

#endif

/* Internals shared by the ensemble module's files. */
#ifndef KD_ENSEMBLE_H
#define KD_ENSEMBLE_H

#include "../core/core.h"

/* Kemeny-Young is exact for Smith sets of up to this many classes (every
 * sample of up to this many classes); its work array is 2^this doubles. */
#define KD_KEMENY_EXACT 20

/* The rules kdens.h names: 0 .. KD_FUSE_COUNT-1. */
#define KD_FUSE_COUNT ((int)KDENS_FUSE_KEMENY + 1)

struct kdens_predictions {
    int members, classes;
    size_t samples;
    float *probs;     /* members x samples x classes, member-major */
    int32_t *labels;  /* -1 where unknown (a CSV import) */
    char **sample_names, **member_names; /* NULL unless imported from CSV */
};

/* The 97.5% quantile of Student's t with df >= 1 degrees of freedom (within
 * 0.002). */
double kd_t975(int df);

/* Zeroed names, uninitialised probabilities and labels. */
/* Add a loaded model as a member named `name`, taking it over (freed on
 * failure too); KDENS_E_SHAPE when its shape differs from the first's. */
kdens_status kd_ensemble_adopt(kdens_ensemble *ens, kdens_model *m, const char *name);
kdens_status kd_predictions_new(int members, size_t samples, int classes,
                                kdens_predictions **out);

/* kdens_predictions_load_csv on text in memory (not NUL-terminated); path
 * names it in messages. */
kdens_status kd_predictions_parse_csv(const char *path, const char *data, size_t size,
                                      kdens_predictions **out);

#endif

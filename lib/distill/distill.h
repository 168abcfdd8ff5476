/* distill: the distiller (modes as a table), soft targets and their cache.
 * Internal; uses every engine module below it. */
#ifndef KD_DISTILL_H
#define KD_DISTILL_H

#include "../ensemble/ensemble.h"
#include "../train/train.h"

struct kdens_distiller {
    kdens_ensemble *teachers; /* borrowed */
    int n_teachers, classes;
    kdens_distill_mode mode;
    const kdens_dataset *train, *val;
    char *template_spec;      /* the student as given: what export rebuilds */
    kdens_model *student;
    kdens_trainer *trainer;
    float alpha, temperature;
    kdens_fusion rule;
    int sets;                 /* target distributions per sample */
    /* teacher outputs: logits (n_teachers x classes per sample), or for
     * supernet2 the concatenated pooled features (feature_dim) */
    int *feature_node;        /* per teacher (supernet2) */
    size_t out_dim;           /* floats of teacher output per sample */
    kdens_model *aggregator;  /* supernet, supernet2 */
    kdens_comm *comm;         /* data-parallel over its ranks; NULL alone */
    /* the cache: targets of every training sample (sets x classes each) */
    int cache;
    char *cache_path;
    float *cached;            /* NULL: online */
    void *map;
    size_t map_len;
    /* scratch for `scratch_rows` samples, one allocation cut into regions */
    float *scratch;
    float *x_in;              /* a teacher's input when its scaling differs */
    float *node_out;          /* one teacher's logits or feature node */
    float *raw;               /* all teachers' outputs (out_dim each) */
    float *probs;             /* member-major probabilities (fusion) */
    float *scores;            /* per-sample scores or aggregator logits */
    int32_t *decisions;       /* the fusion mode's */
    size_t scratch_rows;
};

/* A distillation mode: its name, whether it gives one target distribution
 * per teacher (loss_avg, mimic_all) and one student head per teacher
 * (mimic_all), the aggregator trained before it (supernet: over the
 * teachers' logits; supernet2: over their pooled features), and its
 * targets (rows x sets x classes) from the teachers' outputs on a batch. */
/* The modes kdens.h names: 0 .. KD_DISTILL_MODE_COUNT-1. */
#define KD_DISTILL_MODE_COUNT ((int)KDENS_DISTILL_MIMIC_ALL_PROBS + 1)
typedef enum kd_aggregator { KD_AGG_NONE, KD_AGG_LOGITS, KD_AGG_FEATURES } kd_aggregator;
typedef struct kd_distill_mode_ops {
    const char *name;
    bool per_teacher;
    bool heads;
    bool average_probs; /* heads: their probabilities averaged, not their logits */
    kd_aggregator aggregator;
    kdens_status (*targets)(kdens_distiller *d, const float *raw, size_t rows, float *out);
} kd_distill_mode_ops;
/* NULL for a value that is no mode. */
const kd_distill_mode_ops *kd_distill_mode_ops_of(kdens_distill_mode mode);
/* NULL for a name that is no mode's; else *mode is set. */
const kd_distill_mode_ops *kd_distill_mode_ops_named(const char *name, kdens_distill_mode *mode);

/* The trainer's soft-target hook. */
kdens_status kd_distill_targets(void *user, const float *x, const size_t *indices, size_t n,
                                float *targets);
/* Before training: the aggregator (supernet modes) and the cache. */
kdens_status kd_distill_prepare(kdens_distiller *d);
void kd_distill_release_targets(kdens_distiller *d);

#endif

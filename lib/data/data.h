/* data: datasets in memory, their file readers, splits and subsets.
 * Internal to libkdens; depends on core, zlib, libpng and libjpeg. */
#ifndef KD_DATA_H
#define KD_DATA_H

#include "../core/core.h"

#include <stdatomic.h>

/* The pixels and labels that views share; freed with the last view. */
typedef struct kd_store {
    _Atomic int refs;
    int h, w, c, classes;
    size_t n;
    uint8_t *pixels;     /* n x h x w x c; NULL for a lazy dataset */
    char *root;          /* lazy datasets: the folder the file names are relative to */
    kdens_color color;   /* lazy datasets: the colour mode to decode to */
    int32_t *labels;     /* n */
    char **filenames;    /* n paths relative to the data root, or NULL */
    char **class_names;  /* classes */
    size_t skipped;      /* images left out by KDENS_LOAD_SKIP_BAD */
    char *first_skipped;
} kd_store;

struct kdens_dataset {
    kd_store *store;
    size_t n;
    size_t *index; /* sample i is store sample index[i]; NULL: the identity */
};

/* A store for n samples of h x w x c with `classes` classes (names "0".."k-1"
 * until set), wrapped in a dataset viewing all of it. */
kdens_status kd_dataset_new(size_t n, int h, int w, int c, int classes, kdens_dataset **out);
/* Name every sample by its index ("0", "1", ...), for sources without files. */
kdens_status kd_dataset_name_by_index(kdens_dataset *ds);
/* Replace the class names (copied). */
kdens_status kd_dataset_set_class_names(kdens_dataset *ds, const char *const *names, int n);
static inline size_t kd_dataset_at(const kdens_dataset *ds, size_t i)
{
    return ds->index ? ds->index[i] : i;
}

/* Sample i's pixels into dst (decoded for lazy datasets). */
kdens_status kd_dataset_read(const kdens_dataset *ds, size_t i, uint8_t *dst);
/* One image file decoded and resized to h x w (the lazy path). */
kdens_status kd_image_load_resized(const char *root, const char *file, kdens_color color, int h,
                                   int w, uint8_t *dst);

/* Decoding of one image file (PNG, JPEG, PGM P5 or PPM P6, by signature)
 * into `color` channels; *pixels is malloc'ed h x w x c.  Errors name the
 * path. */
kdens_status kd_image_decode_file(const char *path, kdens_color color, uint8_t **pixels, int *h,
                                  int *w);
kdens_status kd_image_decode_memory(const char *name, const uint8_t *data, size_t len,
                                    kdens_color color, uint8_t **pixels, int *h, int *w);
/* The codecs that kd_image_decode_memory dispatches to: image_png.c and
 * image_jpeg.c in the full library, lib/infer/image_codecs.c (which returns
 * KDENS_E_UNSUPPORTED) in the inference-only one. */
#define KD_MAX_IMAGE_PIXELS ((size_t)1 << 28)
kdens_status kd_image_decode_png(const char *name, const uint8_t *data, size_t len,
                                 kdens_color color, uint8_t **pixels, int *h, int *w);
kdens_status kd_image_decode_jpeg(const char *name, const uint8_t *data, size_t len,
                                  kdens_color color, uint8_t **pixels, int *h, int *w);
/* RGBA or RGB pixels (in_c channels) into `color` channels; dst may be src. */
void kd_image_from_rgb(const uint8_t *src, int in_c, size_t pixels, kdens_color color,
                       uint8_t *dst);
/* Nearest-neighbour resize with PIL's pixel-centre mapping. */
void kd_image_resize_nearest(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh,
                             int dw);

/* IDX and CIFAR parsers on bytes in memory (the fuzzers' entry points). */
kdens_status kd_idx_parse(const char *name, const uint8_t *data, size_t len, int want_dims,
                          uint8_t **values, size_t *count, int *dims);
kdens_status kd_cifar_parse(const char *name, const uint8_t *data, size_t len,
                            kdens_cifar_labels labels, uint8_t *pixels, int32_t *out_labels,
                            size_t *records);

/* CSV manifests: parse `filename,class` text into rows (strings owned by *rows). */
typedef struct kd_manifest_row {
    char *filename, *class_name;
    size_t line;
} kd_manifest_row;
kdens_status kd_manifest_parse(const char *name, const char *text, size_t len,
                               kd_manifest_row **rows, size_t *n_rows);
void kd_manifest_free(kd_manifest_row *rows, size_t n_rows);
/* Read and parse a manifest file. */
kdens_status kd_manifest_read(const char *path, kd_manifest_row **rows, size_t *n_rows);

/* Rows of float features in memory with their labels (borrowed): what the
 * loader, evaluation and the trainer take in place of a dataset for a model
 * over features (the supernet aggregators).  Row i is x[i * dim ..], as the
 * model takes it. */
typedef struct kd_features {
    const float *x;
    const int32_t *labels;
    size_t n, dim;
} kd_features;
/* A loader of feature rows: batches and shuffles as for a dataset (the same
 * order from the seed and the epoch), rows copied as they are;
 * kdens_loader_set_augment with a policy and kdens_loader_set_scaling fail
 * with KDENS_E_ARG.  The rows must outlive the loader.  Errors: KDENS_E_ARG
 * (NULL, no rows, dim or batch 0), KDENS_E_NOMEM. */
/* A view of ds's store (the samples as loaded, before any view) at the
 * given store positions: what a subset chosen on one rank is on another
 * rank that loaded the same data.  KDENS_E_FORMAT for a position outside
 * the store. */
kdens_status kd_dataset_store_view(const kdens_dataset *ds, const uint64_t *store_index,
                                   size_t n, kdens_dataset **out);
/* Data-parallel training: this loader yields rank's slice (of ranks) of
 * every batch, the same batches (order, augmentation) on every rank; a last
 * batch smaller than ranks is dropped everywhere.  Batch must be >= ranks. */
kdens_status kd_loader_set_shard(kdens_loader *ld, int rank, int ranks);
/* The size of batch b over every rank. */
size_t kd_loader_global_batch(const kdens_loader *ld, size_t b);
kdens_status kd_loader_create_features(const kd_features *f, size_t batch, uint64_t seed,
                                       kdens_loader **out);

/* Augmentation internals: the whole policy with caller scratch (two buffers
 * of h*w*c bytes), Keras' affine warp for given parameters, and one
 * RandAugment operation (index in the order of kdens_augment_set_randaugment's
 * list) at magnitude m with sign +1/-1. */
void kd_augment_apply(const kdens_augment *a, const uint8_t *src, int h, int w, int c,
                      uint64_t seed, uint8_t *dst, uint8_t *work, uint8_t *tmp);
void kd_affine(const uint8_t *src, int h, int w, int c, double theta_deg, double tx, double ty,
               double shear_deg, double zx, double zy, bool flip, kdens_fill fill, uint8_t cval,
               uint8_t *dst);
void kd_randaugment_op(int op, int m, int sign, uint8_t *img, int h, int w, int c, uint8_t *tmp);

/* Read a whole file through zlib: gzip-compressed or plain. */
kdens_status kd_read_gz(const char *path, uint8_t **data, size_t *len);

#endif

/* The batch loader: K producer threads fill a ring of K + 1 batch slots
 * ahead of the consumer.  Batch b is made by thread b % K into slot
 * b % (K + 1); its samples and their augmentation seeds follow from (seed,
 * epoch, position) alone, so the thread count changes only the speed.  The
 * samples come from a dataset's images (scaled, optionally augmented) or
 * from rows of float features (copied as they are). */
#include "data.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KD_LOADER_MAX_THREADS 64

typedef struct slot {
    float *x;
    int32_t *labels;
    const size_t *indices; /* into the epoch's order */
    size_t n;
    uint64_t batch; /* which batch it holds, valid when ready */
    bool ready;
} slot;

struct kdens_loader {
    const kdens_dataset *ds; /* the source: a dataset, or (NULL) the features */
    kd_features features;
    size_t n, batch, per_image; /* samples; floats per sample */
    uint64_t seed, epoch;
    bool shuffle;
    const kdens_augment *aug;
    float *scale, *offset; /* per channel (datasets) */
    int threads;          /* setting */
    int rank, ranks;      /* data-parallel shard: this rank's slice of each batch */
    /* the running epoch */
    int running;          /* threads started */
    int stride;           /* producer threads of this epoch */
    pthread_t tid[KD_LOADER_MAX_THREADS];
    slot *slots;
    int n_slots;
    size_t *order;
    uint64_t n_batches, next_batch, released; /* consumer side */
    const size_t *current;                    /* indices of the batch handed out */
    bool stop, started;
    kdens_status failure;
    char failure_message[512];
    pthread_mutex_t mu;
    pthread_cond_t changed;
};

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A loader of n samples of `per` floats, with scaling for c channels (1/255
 * and 0; none for c 0); the caller sets its source. */
static kdens_status loader_new(size_t n, size_t per, int c, size_t batch, uint64_t seed,
                               kdens_loader **out)
{
    kdens_loader *ld = calloc(1, sizeof *ld);
    if (ld && c > 0) {
        ld->scale = malloc(sizeof(float) * c);
        ld->offset = malloc(sizeof(float) * c);
    }
    if (!ld || (c > 0 && (!ld->scale || !ld->offset))) {
        if (ld)
            free(ld->scale), free(ld->offset);
        free(ld);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < c; i++)
        ld->scale[i] = 1.0f / 255.0f, ld->offset[i] = 0.0f;
    ld->n = n;
    ld->batch = batch;
    ld->per_image = per;
    ld->seed = seed;
    ld->shuffle = true;
    ld->threads = 1;
    ld->ranks = 1;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->changed, NULL);
    *out = ld;
    return KDENS_OK;
}

kdens_status kdens_loader_create(const kdens_dataset *ds, size_t batch, uint64_t seed,
                                 kdens_loader **out)
{
    if (!ds || !out || batch == 0)
        return kd_fail(KDENS_E_ARG, "a loader needs a dataset and a batch size above 0");
    if (ds->n == 0)
        return kd_fail(KDENS_E_ARG, "the dataset is empty");
    const kd_store *st = ds->store;
    kdens_status status =
        loader_new(ds->n, (size_t)st->h * st->w * st->c, st->c, batch, seed, out);
    if (status == KDENS_OK)
        (*out)->ds = ds;
    return status;
}

kdens_status kd_loader_create_features(const kd_features *f, size_t batch, uint64_t seed,
                                       kdens_loader **out)
{
    if (!f || !f->x || !f->labels || !out || batch == 0 || f->dim == 0)
        return kd_fail(KDENS_E_ARG, "a feature loader needs rows, labels, a dimension and a "
                       "batch size above 0");
    if (f->n == 0)
        return kd_fail(KDENS_E_ARG, "there are no feature rows");
    kdens_status status = loader_new(f->n, f->dim, 0, batch, seed, out);
    if (status == KDENS_OK)
        (*out)->features = *f;
    return status;
}

kdens_status kdens_loader_set_shuffle(kdens_loader *ld, int shuffle)
{
    if (!ld)
        return kd_fail(KDENS_E_ARG, "NULL loader");
    ld->shuffle = shuffle != 0;
    return KDENS_OK;
}

kdens_status kdens_loader_set_augment(kdens_loader *ld, const kdens_augment *aug)
{
    if (!ld)
        return kd_fail(KDENS_E_ARG, "NULL loader");
    if (aug && !ld->ds)
        return kd_fail(KDENS_E_ARG, "feature rows take no augmentation");
    if (aug && ld->ds->store->c != 1 && ld->ds->store->c != 3)
        return kd_fail(KDENS_E_ARG, "augmentation needs grey or RGB images");
    ld->aug = aug;
    return KDENS_OK;
}

kdens_status kdens_loader_set_scaling(kdens_loader *ld, const float *scale, const float *offset)
{
    if (!ld || !scale || !offset)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (!ld->ds)
        return kd_fail(KDENS_E_ARG, "feature rows are taken as they are, without scaling");
    for (int i = 0; i < ld->ds->store->c; i++)
        ld->scale[i] = scale[i], ld->offset[i] = offset[i];
    return KDENS_OK;
}

kdens_status kdens_loader_set_threads(kdens_loader *ld, int threads)
{
    if (!ld)
        return kd_fail(KDENS_E_ARG, "NULL loader");
    if (threads < 1 || threads > KD_LOADER_MAX_THREADS)
        return kd_fail(KDENS_E_ARG, "loader threads %d outside [1, %d]", threads,
                       KD_LOADER_MAX_THREADS);
    ld->threads = threads;
    return KDENS_OK;
}

const size_t *kdens_loader_batch_indices(const kdens_loader *ld)
{
    return ld && ld->started && ld->next_batch > 0 ? ld->current : NULL;
}

size_t kdens_loader_batches(const kdens_loader *ld)
{
    if (!ld)
        return 0;
    size_t full = ld->n / ld->batch, rest = ld->n % ld->batch;
    /* sharded, a last batch with fewer samples than ranks would leave some
     * rank without any: it is dropped on every rank */
    return full + (rest > 0 && rest >= (size_t)ld->ranks);
}

kdens_status kd_loader_set_shard(kdens_loader *ld, int rank, int ranks)
{
    if (!ld || ranks < 1 || rank < 0 || rank >= ranks)
        return kd_fail(KDENS_E_ARG, "NULL loader or rank %d of %d", rank, ranks);
    if (ld->batch < (size_t)ranks)
        return kd_fail(KDENS_E_ARG, "a batch of %zu cannot be split over %d ranks", ld->batch,
                       ranks);
    ld->rank = rank;
    ld->ranks = ranks;
    return KDENS_OK;
}

size_t kd_loader_global_batch(const kdens_loader *ld, size_t b)
{
    return KD_MIN(ld->batch, ld->n - b * ld->batch);
}

/* ---- producing --------------------------------------------------------------- */

struct producer {
    kdens_loader *ld;
    int id;
};

/* Dataset sample `pos`, the epoch's sample number `at`, into x (scaled,
 * augmented if set) and *label; scratch: four buffers of per_image bytes. */
static kdens_status image_sample(kdens_loader *ld, size_t pos, size_t at, float *x,
                                 int32_t *label, uint8_t *scratch)
{
    const kd_store *st = ld->ds->store;
    uint8_t *img = scratch, *work = img + ld->per_image, *tmp = work + ld->per_image;
    uint8_t *decoded = tmp + ld->per_image;
    size_t k = kd_dataset_at(ld->ds, pos);
    const uint8_t *px = st->pixels ? st->pixels + k * ld->per_image : decoded;
    int c = st->c;
    if (!st->pixels) { /* lazy: decode here, on the loader's thread */
        kdens_status status = kd_dataset_read(ld->ds, pos, decoded);
        if (status != KDENS_OK)
            return status;
    }
    if (ld->aug) {
        uint64_t seed = mix(ld->seed ^ mix(ld->epoch * 0x9e3779b97f4a7c15ULL + at));
        kd_augment_apply(ld->aug, px, st->h, st->w, c, seed, img, work, tmp);
        px = img;
    }
    for (size_t p = 0; p < ld->per_image; p += (size_t)c)
        for (int ch = 0; ch < c; ch++)
            x[p + ch] = px[p + ch] * ld->scale[ch] + ld->offset[ch];
    *label = st->labels[k];
    return KDENS_OK;
}

static kdens_status make_batch(kdens_loader *ld, uint64_t b, slot *s, uint8_t *scratch)
{
    size_t first = b * ld->batch, n = KD_MIN(ld->batch, ld->n - first);
    if (ld->ranks > 1) { /* this rank's slice; positions stay the global batch's */
        size_t lo, hi;
        kd_split(n, ld->rank, ld->ranks, &lo, &hi);
        first += lo, n = hi - lo;
    }
    for (size_t i = 0; i < n; i++) {
        size_t pos = ld->order[first + i];
        float *x = s->x + i * ld->per_image;
        if (!ld->ds) { /* a feature row, as it is */
            memcpy(x, ld->features.x + pos * ld->per_image, sizeof(float) * ld->per_image);
            s->labels[i] = ld->features.labels[pos];
            continue;
        }
        kdens_status status = image_sample(ld, pos, first + i, x, &s->labels[i], scratch);
        if (status != KDENS_OK)
            return status;
    }
    s->n = n;
    s->batch = b;
    s->indices = ld->order + first;
    return KDENS_OK;
}

static void *produce(void *arg)
{
    struct producer *p = arg;
    kdens_loader *ld = p->ld;
    uint8_t *scratch = malloc(ld->ds ? 4 * ld->per_image + 1 : 1);
    pthread_mutex_lock(&ld->mu);
    if (!scratch) {
        ld->failure = KDENS_E_NOMEM;
        snprintf(ld->failure_message, sizeof ld->failure_message, "out of memory");
        pthread_cond_broadcast(&ld->changed);
    }
    for (uint64_t b = (uint64_t)p->id; scratch && b < ld->n_batches; b += (uint64_t)ld->stride) {
        slot *s = &ld->slots[b % (uint64_t)ld->n_slots];
        /* the slot is free once batch b - n_slots has been released */
        while (!ld->stop && b >= ld->released + (uint64_t)ld->n_slots)
            pthread_cond_wait(&ld->changed, &ld->mu);
        if (ld->stop)
            break;
        pthread_mutex_unlock(&ld->mu);
        kdens_status status = make_batch(ld, b, s, scratch);
        pthread_mutex_lock(&ld->mu);
        if (status != KDENS_OK) { /* keep the first failure and its message */
            if (ld->failure == KDENS_OK) {
                ld->failure = status;
                snprintf(ld->failure_message, sizeof ld->failure_message, "%s", kdens_errmsg());
            }
            pthread_cond_broadcast(&ld->changed);
            break;
        }
        s->ready = true;
        pthread_cond_broadcast(&ld->changed);
    }
    pthread_mutex_unlock(&ld->mu);
    free(scratch);
    free(p);
    return NULL;
}

static void stop_epoch(kdens_loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    ld->stop = true;
    pthread_cond_broadcast(&ld->changed);
    pthread_mutex_unlock(&ld->mu);
    for (int t = 0; t < ld->running; t++)
        pthread_join(ld->tid[t], NULL);
    ld->running = 0;
    ld->stop = false;
    if (ld->slots)
        for (int i = 0; i < ld->n_slots; i++) {
            kd_free_aligned(ld->slots[i].x);
            free(ld->slots[i].labels);
        }
    free(ld->slots);
    ld->slots = NULL;
    free(ld->order);
    ld->order = NULL;
    ld->started = false;
}

void kdens_loader_free(kdens_loader *ld)
{
    if (!ld)
        return;
    stop_epoch(ld);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->changed);
    free(ld->scale);
    free(ld->offset);
    free(ld);
}

kdens_status kdens_loader_start_epoch(kdens_loader *ld, uint64_t epoch)
{
    if (!ld)
        return kd_fail(KDENS_E_ARG, "NULL loader");
    stop_epoch(ld);
    size_t n = ld->n;
    ld->epoch = epoch;
    ld->n_batches = kdens_loader_batches(ld);
    ld->next_batch = ld->released = 0;
    ld->failure = KDENS_OK;
    ld->n_slots = ld->threads + 1;
    ld->order = malloc(sizeof(size_t) * n);
    ld->slots = calloc((size_t)ld->n_slots, sizeof(slot));
    bool ok = ld->order && ld->slots;
    for (int i = 0; ok && i < ld->n_slots; i++) {
        ld->slots[i].x = kd_alloc_aligned(sizeof(float) * ld->batch * ld->per_image);
        ld->slots[i].labels = malloc(sizeof(int32_t) * ld->batch);
        ok = ld->slots[i].x && ld->slots[i].labels;
    }
    if (!ok) {
        stop_epoch(ld);
        return kd_fail(KDENS_E_NOMEM, "out of memory for the loader's batches");
    }
    for (size_t i = 0; i < n; i++)
        ld->order[i] = i;
    if (ld->shuffle) {
        kd_rng rng;
        kd_rng_seed(&rng, mix(ld->seed) ^ mix(epoch + 1));
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)kd_rng_below(&rng, i), t = ld->order[i - 1];
            ld->order[i - 1] = ld->order[j];
            ld->order[j] = t;
        }
    }
    ld->stride = (int)KD_MIN((uint64_t)ld->threads, ld->n_batches);
    for (int t = 0; t < ld->stride; t++) {
        struct producer *p = malloc(sizeof *p);
        if (p) {
            p->ld = ld;
            p->id = t;
        }
        if (!p || pthread_create(&ld->tid[t], NULL, produce, p) != 0) {
            free(p);
            stop_epoch(ld); /* a missing producer would leave its batches unmade */
            return kd_fail(KDENS_E_NOMEM, "cannot start the loader's threads");
        }
        ld->running++;
    }
    ld->started = true;
    return KDENS_OK;
}

kdens_status kdens_loader_next(kdens_loader *ld, const float **x, const int32_t **labels,
                               size_t *n)
{
    if (!ld || !n)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (!ld->started)
        return kd_fail(KDENS_E_STATE, "kdens_loader_next before kdens_loader_start_epoch");
    pthread_mutex_lock(&ld->mu);
    if (ld->next_batch > 0 && ld->released < ld->next_batch) { /* the caller is done with it */
        ld->slots[(ld->next_batch - 1) % (uint64_t)ld->n_slots].ready = false;
        ld->released = ld->next_batch;
        pthread_cond_broadcast(&ld->changed);
    }
    if (ld->next_batch == ld->n_batches) {
        pthread_mutex_unlock(&ld->mu);
        *n = 0;
        return KDENS_OK;
    }
    slot *s = &ld->slots[ld->next_batch % (uint64_t)ld->n_slots];
    while (!(s->ready && s->batch == ld->next_batch) && ld->failure == KDENS_OK)
        pthread_cond_wait(&ld->changed, &ld->mu);
    kdens_status failure = ld->failure;
    if (failure == KDENS_OK) {
        if (x)
            *x = s->x;
        if (labels)
            *labels = s->labels;
        *n = s->n;
        ld->current = s->indices;
        ld->next_batch++;
    }
    pthread_mutex_unlock(&ld->mu);
    if (failure != KDENS_OK)
        return kd_fail(failure, "loader: %s", ld->failure_message);
    return KDENS_OK;
}

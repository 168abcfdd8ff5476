/* Ensembles of member models and the predictions they make. */
#include "ensemble.h"

#include "../data/data.h"
#include "../nn/nn.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kdens_ensemble {
    kdens_model **members;
    char **names; /* the file, or the registry's uuid */
    int n, cap;
};

kdens_status kdens_ensemble_create(kdens_ensemble **out)
{
    if (!out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (!(*out = calloc(1, sizeof **out)))
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    return KDENS_OK;
}

void kdens_ensemble_free(kdens_ensemble *ens)
{
    if (!ens)
        return;
    for (int i = 0; i < ens->n; i++) {
        kdens_model_free(ens->members[i]);
        free(ens->names[i]);
    }
    free(ens->members);
    free(ens->names);
    free(ens);
}

int kdens_ensemble_size(const kdens_ensemble *ens) { return ens ? ens->n : 0; }

kdens_model *kdens_ensemble_member(kdens_ensemble *ens, int i)
{
    return ens && i >= 0 && i < ens->n ? ens->members[i] : NULL;
}

const char *kdens_ensemble_member_name(const kdens_ensemble *ens, int i)
{
    return ens && i >= 0 && i < ens->n ? ens->names[i] : NULL;
}

kdens_status kd_ensemble_adopt(kdens_ensemble *ens, kdens_model *m, const char *name)
{
    kdens_status st = KDENS_OK;
    if (ens->n > 0) {
        const kdens_model *f = ens->members[0];
        if (f->in_h != m->in_h || f->in_w != m->in_w || f->in_c != m->in_c ||
            f->classes != m->classes)
            st = kd_fail(KDENS_E_SHAPE,
                         "%s takes %dx%dx%d images and %d classes, the first member %dx%dx%d "
                         "and %d",
                         name, m->in_h, m->in_w, m->in_c, m->classes, f->in_h, f->in_w, f->in_c,
                         f->classes);
    }
    if (st == KDENS_OK && ens->n == ens->cap) {
        size_t cap = kd_grown((size_t)ens->cap, 8);
        if (cap > INT_MAX || !kd_resize(&ens->members, cap, sizeof *ens->members) ||
            !kd_resize(&ens->names, cap, sizeof *ens->names))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
        else
            ens->cap = (int)cap;
    }
    if (st == KDENS_OK && !(ens->names[ens->n] = kd_strdup(name)))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (st != KDENS_OK) {
        kdens_model_free(m);
        return st;
    }
    ens->members[ens->n++] = m;
    return KDENS_OK;
}

kdens_status kdens_ensemble_add_named(kdens_ensemble *ens, const char *path, const char *name)
{
    if (!ens || !path || !name)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_model *m;
    kdens_status st = kdens_model_load(path, &m);
    if (st != KDENS_OK)
        return st;
    return kd_ensemble_adopt(ens, m, name);
}

kdens_status kdens_ensemble_add(kdens_ensemble *ens, const char *path)
{
    return kdens_ensemble_add_named(ens, path, path);
}

/* ---- predictions ------------------------------------------------------------------ */

kdens_status kd_predictions_new(int members, size_t samples, int classes,
                                    kdens_predictions **out)
{
    kdens_predictions *pr = calloc(1, sizeof *pr);
    if (pr) {
        pr->probs = malloc(sizeof(float) * (size_t)members * samples * classes + 1);
        pr->labels = malloc(sizeof(int32_t) * samples + 1);
    }
    if (!pr || !pr->probs || !pr->labels) {
        kdens_predictions_free(pr);
        return kd_fail(KDENS_E_NOMEM, "out of memory for %d x %zu x %d predictions", members,
                       samples, classes);
    }
    pr->members = members, pr->samples = samples, pr->classes = classes;
    *out = pr;
    return KDENS_OK;
}

void kdens_predictions_free(kdens_predictions *pr)
{
    if (!pr)
        return;
    free(pr->probs);
    free(pr->labels);
    for (size_t i = 0; pr->sample_names && i < pr->samples; i++)
        free(pr->sample_names[i]);
    for (int i = 0; pr->member_names && i < pr->members; i++)
        free(pr->member_names[i]);
    free(pr->sample_names);
    free(pr->member_names);
    free(pr);
}

int kdens_predictions_members(const kdens_predictions *pr) { return pr ? pr->members : 0; }
size_t kdens_predictions_samples(const kdens_predictions *pr) { return pr ? pr->samples : 0; }
int kdens_predictions_classes(const kdens_predictions *pr) { return pr ? pr->classes : 0; }
const float *kdens_predictions_probs(const kdens_predictions *pr) { return pr ? pr->probs : NULL; }
const int32_t *kdens_predictions_labels(const kdens_predictions *pr)
{
    return pr && pr->samples && pr->labels[0] >= 0 ? pr->labels : NULL;
}

const char *kdens_predictions_sample_name(const kdens_predictions *pr, size_t i)
{
    return pr && pr->sample_names && i < pr->samples ? pr->sample_names[i] : NULL;
}

const char *kdens_predictions_member_name(const kdens_predictions *pr, int i)
{
    return pr && pr->member_names && i >= 0 && i < pr->members ? pr->member_names[i] : NULL;
}

kdens_status kdens_ensemble_predict(kdens_ensemble *ens, const kdens_dataset *ds,
                                    kdens_predictions **out)
{
    if (!ens || !ds || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (ens->n == 0)
        return kd_fail(KDENS_E_ARG, "the ensemble is empty");
    const kdens_model *f = ens->members[0];
    const kd_store *s = ds->store;
    if (s->h != f->in_h || s->w != f->in_w || s->c != f->in_c || s->classes != f->classes)
        return kd_fail(KDENS_E_SHAPE, "the dataset (%dx%dx%d, %d classes) does not fit the "
                       "members (%dx%dx%d, %d classes)", s->h, s->w, s->c, s->classes, f->in_h,
                       f->in_w, f->in_c, f->classes);
    size_t n = ds->n, per = (size_t)s->h * s->w * s->c, chunk = 256;
    int k = f->classes;
    kdens_predictions *pr;
    kdens_status st = kd_predictions_new(ens->n, n, k, &pr);
    if (st != KDENS_OK)
        return st;
    uint8_t *images = malloc(chunk * per + 1);
    if (!images)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t first = 0; st == KDENS_OK && first < n; first += chunk) {
        size_t nc = KD_MIN(chunk, n - first);
        for (size_t i = 0; i < nc && st == KDENS_OK; i++) {
            st = kd_dataset_read(ds, first + i, images + i * per);
            pr->labels[first + i] = s->labels[kd_dataset_at(ds, first + i)];
        }
        for (int mbr = 0; mbr < ens->n && st == KDENS_OK; mbr++)
            st = kdens_model_predict_u8(ens->members[mbr], images, nc,
                                        pr->probs + ((size_t)mbr * n + first) * k);
    }
    free(images);
    if (st == KDENS_OK && !(pr->member_names = calloc((size_t)ens->n, sizeof(char *))))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; st == KDENS_OK && i < ens->n; i++)
        if (!(pr->member_names[i] = kd_strdup(ens->names[i])))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (st != KDENS_OK) {
        kdens_predictions_free(pr);
        return st;
    }
    *out = pr;
    return KDENS_OK;
}

#define PRED_MAGIC "KDENSPRD"

kdens_status kdens_predictions_save(const kdens_predictions *pr, const char *path)
{
    if (!pr || !path)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kd_buf head = {0}, file = {0};
    kd_buf_u32(&head, (uint32_t)pr->members);
    kd_buf_u64(&head, pr->samples);
    kd_buf_u32(&head, (uint32_t)pr->classes);
    kd_buf_put(&file, PRED_MAGIC, 8);
    kd_buf_u32(&file, 1);
    kd_buf_u32(&file, 3);
    kd_section_put(&file, "SIZE", head.data, head.len);
    kd_section_put(&file, "LABL", pr->labels, sizeof(int32_t) * pr->samples);
    kd_section_put(&file, "PROB", pr->probs,
                   sizeof(float) * (size_t)pr->members * pr->samples * pr->classes);
    kdens_status st = file.failed || head.failed
                          ? kd_fail(KDENS_E_NOMEM, "%s: out of memory", path)
                          : kd_write_file_atomic(path, file.data, file.len);
    kd_buf_free(&head);
    kd_buf_free(&file);
    return st;
}

kdens_status kdens_predictions_load(const char *path, kdens_predictions **out)
{
    if (!path || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    char *data;
    size_t len;
    kdens_status st = kd_read_file(path, &data, &len);
    if (st != KDENS_OK)
        return st;
    kd_section sec[8];
    int count;
    kdens_predictions *pr = NULL;
    st = kd_sections_parse(path, (const uint8_t *)data, len, PRED_MAGIC, 1, "predictions file",
                           sec, 8, &count);
    const kd_section *size = NULL, *labl = NULL, *prob = NULL;
    if (st == KDENS_OK) {
        size = kd_section_find(sec, count, "SIZE");
        labl = kd_section_find(sec, count, "LABL");
        prob = kd_section_find(sec, count, "PROB");
        if (!size || !labl || !prob || size->len != 16)
            st = kd_fail(KDENS_E_FORMAT, "%s: a section is missing or malformed", path);
    }
    uint32_t members = 0, classes = 0;
    uint64_t samples = 0;
    if (st == KDENS_OK) {
        memcpy(&members, size->data, 4);
        memcpy(&samples, size->data + 4, 8);
        memcpy(&classes, size->data + 12, 4);
        if (members < 1 || classes < 1 || samples > ((uint64_t)1 << 40) ||
            labl->len != samples * 4 || prob->len / 4 / members / classes != samples ||
            prob->len != (uint64_t)members * samples * classes * 4)
            st = kd_fail(KDENS_E_FORMAT, "%s: sizes do not match the data", path);
    }
    if (st == KDENS_OK)
        st = kd_predictions_new((int)members, (size_t)samples, (int)classes, &pr);
    if (st == KDENS_OK) {
        memcpy(pr->labels, labl->data, labl->len);
        memcpy(pr->probs, prob->data, prob->len);
        bool unlabelled = samples > 0 && pr->labels[0] == -1; /* all -1, or all classes */
        for (size_t i = 0; i < samples && st == KDENS_OK; i++)
            if (unlabelled ? pr->labels[i] != -1
                           : pr->labels[i] < 0 || pr->labels[i] >= (int32_t)classes)
                st = kd_fail(KDENS_E_FORMAT, "%s: label %zu is out of range", path, i);
    }
    free(data);
    if (st != KDENS_OK) {
        kdens_predictions_free(pr);
        return st;
    }
    *out = pr;
    return KDENS_OK;
}

/* The listed members' probabilities, contiguous (*picked: a copy to free;
 * NULL members: all, no copy). */
static kdens_status pick_members(const kdens_predictions *pr, const int *members, int m,
                                 const float **probs, float **picked)
{
    size_t per = pr->samples * (size_t)pr->classes;
    *probs = pr->probs;
    *picked = NULL;
    if (!members)
        return KDENS_OK;
    if (!(*picked = malloc(sizeof(float) * (per * (size_t)m + 1))))
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; i < m; i++) {
        if (members[i] < 0 || members[i] >= pr->members) {
            free(*picked);
            *picked = NULL;
            return kd_fail(KDENS_E_ARG, "member %d is out of range", members[i]);
        }
        memcpy(*picked + per * i, pr->probs + per * members[i], sizeof(float) * per);
    }
    *probs = *picked;
    return KDENS_OK;
}

/* A random sub-ensemble of `size` members drawn from rng into order[0 ..
 * size-1], in index order: a sub-ensemble's result does not depend on the
 * order it was drawn in. */
static void draw_members(kd_rng *rng, int members, int size, int *order)
{
    for (int i = 0; i < members; i++)
        order[i] = i;
    for (int i = members - 1; i > 0; i--) {
        int j = (int)kd_rng_below(rng, (uint64_t)i + 1), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (int i = 1; i < size; i++)
        for (int j = i; j > 0 && order[j - 1] > order[j]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
}

static kdens_status check_sizes(const kdens_predictions *pr, const int *sizes, int n_sizes)
{
    for (int s = 0; s < n_sizes; s++)
        if (sizes[s] < 1 || sizes[s] > pr->members)
            return kd_fail(KDENS_E_ARG, "ensemble size %d is outside [1, %d]", sizes[s],
                           pr->members);
    return KDENS_OK;
}

kdens_status kdens_predictions_accuracy(const kdens_predictions *pr, kdens_fusion rule,
                                        const int *members, int n_members, double *accuracy)
{
    if (!pr || !accuracy || (members && n_members < 1))
        return kd_fail(KDENS_E_ARG, "NULL argument or no members");
    if (!kdens_predictions_labels(pr))
        return kd_fail(KDENS_E_ARG, "the predictions have no labels");
    int m = members ? n_members : pr->members;
    size_t n = pr->samples;
    const float *probs;
    float *picked = NULL;
    kdens_status st = pick_members(pr, members, m, &probs, &picked);
    if (st != KDENS_OK)
        return st;
    int32_t *d = malloc(sizeof(int32_t) * (n ? n : 1));
    st = d ? kdens_fuse(rule, probs, m, n, pr->classes, d, NULL)
           : kd_fail(KDENS_E_NOMEM, "out of memory");
    if (st == KDENS_OK) {
        size_t right = 0;
        for (size_t i = 0; i < n; i++)
            right += d[i] == pr->labels[i];
        *accuracy = n ? (double)right / n : 0;
    }
    free(d);
    free(picked);
    return st;
}

kdens_status kdens_accuracy_vs_size(const kdens_predictions *pr, kdens_fusion rule,
                                    const int *sizes, int n_sizes, int repeats, uint64_t seed,
                                    double *mean, double *ci_half)
{
    if (!pr || !sizes || n_sizes < 1 || repeats < 1 || !mean)
        return kd_fail(KDENS_E_ARG, "NULL argument, no sizes or no repeats");
    kdens_status st = check_sizes(pr, sizes, n_sizes);
    if (st != KDENS_OK)
        return st;
    int *order = malloc(sizeof(int) * pr->members);
    double *acc = malloc(sizeof(double) * repeats);
    if (!order || !acc)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    kd_rng rng;
    kd_rng_seed(&rng, seed);
    for (int s = 0; s < n_sizes && st == KDENS_OK; s++) {
        double sum = 0;
        for (int r = 0; r < repeats && st == KDENS_OK; r++) {
            draw_members(&rng, pr->members, sizes[s], order);
            st = kdens_predictions_accuracy(pr, rule, order, sizes[s], &acc[r]);
            sum += acc[r];
        }
        if (st != KDENS_OK)
            break;
        mean[s] = sum / repeats;
        if (ci_half) {
            double var = 0;
            for (int r = 0; r < repeats; r++)
                var += (acc[r] - mean[s]) * (acc[r] - mean[s]);
            ci_half[s] = repeats > 1 ? kd_t975(repeats - 1) * sqrt(var / (repeats - 1) / repeats)
                                     : 0.0;
        }
    }
    free(order);
    free(acc);
    return st;
}

/* The counts of b added to a (the same samples' statistics of another
 * sub-ensemble); mean_distinct as a running sum, divided at the end. */
static void add_stats(kdens_vote_stats *a, const kdens_vote_stats *b)
{
    a->samples += b->samples;
    a->unanimous += b->unanimous;
    a->majority += b->majority;
    a->majority_correct += b->majority_correct;
    a->plurality_correct += b->plurality_correct;
    a->condorcet_exists += b->condorcet_exists;
    a->condorcet_correct += b->condorcet_correct;
    a->condorcet_is_plurality += b->condorcet_is_plurality;
    a->plurality_correct_with_condorcet += b->plurality_correct_with_condorcet;
    a->plurality_correct_without_condorcet += b->plurality_correct_without_condorcet;
    a->mean_distinct += b->mean_distinct * (double)b->samples;
}

kdens_status kdens_vote_stats_vs_size(const kdens_predictions *pr, const int *sizes, int n_sizes,
                                      int repeats, uint64_t seed, kdens_vote_stats *stats)
{
    if (!pr || !sizes || n_sizes < 1 || repeats < 1 || !stats)
        return kd_fail(KDENS_E_ARG, "NULL argument, no sizes or no repeats");
    if (!pr->labels || !kdens_predictions_labels(pr))
        return kd_fail(KDENS_E_ARG, "the predictions have no labels");
    kdens_status st = check_sizes(pr, sizes, n_sizes);
    for (int s = 0; s < n_sizes && st == KDENS_OK; s++)
        if (stats[s].size < offsetof(kdens_vote_stats, mean_distinct) + sizeof(double))
            st = kd_fail(KDENS_E_ARG, "stats[%d]: the size field is not set "
                         "(KDENS_VOTE_STATS_INIT)", s);
    int *order = st == KDENS_OK ? malloc(sizeof(int) * pr->members) : NULL;
    if (st == KDENS_OK && !order)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    kd_rng rng;
    kd_rng_seed(&rng, seed);
    for (int s = 0; s < n_sizes && st == KDENS_OK; s++) {
        kdens_vote_stats total = KDENS_VOTE_STATS_INIT;
        for (int r = 0; r < repeats && st == KDENS_OK; r++) {
            draw_members(&rng, pr->members, sizes[s], order);
            const float *probs;
            float *picked;
            kdens_vote_stats one = KDENS_VOTE_STATS_INIT;
            st = pick_members(pr, order, sizes[s], &probs, &picked);
            if (st == KDENS_OK)
                st = kdens_vote_analysis(probs, sizes[s], pr->samples, pr->classes, pr->labels,
                                         &one, NULL, NULL, NULL);
            free(picked);
            add_stats(&total, &one);
        }
        if (total.samples)
            total.mean_distinct /= (double)total.samples;
        size_t caller = stats[s].size;
        memcpy(&stats[s], &total, KD_MIN(caller, sizeof total));
        stats[s].size = caller;
    }
    free(order);
    return st;
}

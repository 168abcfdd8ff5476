/* Soft targets from the teachers: their outputs on a batch, the mode's
 * targets from those outputs, the supernet aggregators, and the cache. */
#define _DEFAULT_SOURCE
#include "distill.h"

#include "../data/data.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { CHUNK = 256 }; /* samples per teacher inference when filling the cache */

/* ---- teacher outputs ---------------------------------------------------------------- */

/* The pooled feature node of a teacher: the input of its final dense layer,
 * through flatten and dropout layers (averaged over H x W when spatial). */
static kdens_status feature_node_of(const kdens_model *t, const char *name, int *node)
{
    const kd_node *logits = &t->nodes[t->logits_node];
    if (logits->type != KD_L_DENSE)
        return kd_fail(KDENS_E_ARG, "supernet2: teacher %s has no final dense layer", name);
    int id = logits->in[0];
    while (id > 0 && (t->nodes[id].type == KD_L_FLATTEN || t->nodes[id].type == KD_L_DROPOUT))
        id = t->nodes[id].in[0];
    if (id < 1)
        return kd_fail(KDENS_E_ARG, "supernet2: teacher %s has no features before its "
                       "classifier", name);
    *node = id;
    return KDENS_OK;
}

/* Scratch for `rows` samples, cut into the regions named in distill.h. */
static kdens_status ensure_scratch(kdens_distiller *d, size_t rows)
{
    if (rows <= d->scratch_rows)
        return KDENS_OK;
    const kdens_model *s = d->student;
    size_t in = (size_t)s->in_h * s->in_w * s->in_c, node = (size_t)d->classes;
    size_t k = (size_t)d->classes, nt = (size_t)d->n_teachers;
    for (int t = 0; d->feature_node && t < d->n_teachers; t++)
        node = KD_MAX(node, kd_node_size(
                                &kdens_ensemble_member(d->teachers, t)->nodes[d->feature_node[t]]));
    float *sc = malloc(sizeof(float) * rows * (in + node + d->out_dim + nt * k + k));
    int32_t *dec = malloc(sizeof(int32_t) * rows);
    if (!sc || !dec) {
        free(sc);
        free(dec);
        return kd_fail(KDENS_E_NOMEM, "out of memory for the teachers' outputs");
    }
    free(d->scratch);
    free(d->decisions);
    d->scratch = d->x_in = sc;
    d->node_out = d->x_in + rows * in;
    d->raw = d->node_out + rows * node;
    d->probs = d->raw + rows * d->out_dim;
    d->scores = d->probs + rows * nt * k;
    d->decisions = dec;
    d->scratch_rows = rows;
    return KDENS_OK;
}

/* The teachers' outputs on `rows` float images x (the student's input
 * scaling) into raw (rows x out_dim). */
static kdens_status teacher_outputs(kdens_distiller *d, const float *x, size_t rows, float *raw)
{
    const kdens_model *s = d->student;
    size_t in = (size_t)s->in_h * s->in_w * s->in_c;
    float *xin = d->x_in, *tmp = d->node_out;
    int c = s->in_c, k = d->classes;
    size_t off = 0;
    for (int t = 0; t < d->n_teachers; t++) {
        kdens_model *tm = kdens_ensemble_member(d->teachers, t);
        const float *xt = x;
        bool same = true;
        for (int ch = 0; ch < c; ch++)
            same = same && tm->in_scale[ch] == s->in_scale[ch] &&
                   tm->in_offset[ch] == s->in_offset[ch];
        if (!same) { /* the pixel value, rescaled for this teacher */
            for (size_t i = 0; i < rows * in; i++) {
                int ch = (int)(i % (size_t)c);
                float v = (x[i] - s->in_offset[ch]) / s->in_scale[ch];
                xin[i] = v * tm->in_scale[ch] + tm->in_offset[ch];
            }
            xt = xin;
        }
        kdens_status st;
        if (d->feature_node) {
            const kd_node *fn = &tm->nodes[d->feature_node[t]];
            size_t cells = (size_t)fn->h * fn->w, ch_n = (size_t)fn->c;
            st = kd_model_infer_node(tm, xt, rows, d->feature_node[t], tmp);
            for (size_t r = 0; st == KDENS_OK && r < rows; r++)
                for (size_t j = 0; j < ch_n; j++) {
                    double sum = 0;
                    for (size_t p = 0; p < cells; p++)
                        sum += tmp[(r * cells + p) * ch_n + j];
                    raw[r * d->out_dim + off + j] = (float)(sum / cells);
                }
            off += ch_n;
        } else {
            st = kdens_model_predict_logits(tm, xt, rows, tmp);
            for (size_t r = 0; st == KDENS_OK && r < rows; r++)
                memcpy(raw + r * d->out_dim + (size_t)t * k, tmp + r * k, sizeof(float) * k);
        }
        if (st != KDENS_OK)
            return st;
    }
    return KDENS_OK;
}

/* Fusion scores as a distribution: shifted to be >= 0 when some are
 * negative, divided by their sum (uniform when all are 0). */
static void scores_to_distribution(float *s, int k)
{
    float mn = s[0];
    for (int i = 1; i < k; i++)
        mn = s[i] < mn ? s[i] : mn;
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += s[i] - (mn < 0 ? mn : 0);
    for (int i = 0; i < k; i++)
        s[i] = sum > 0 ? (float)((s[i] - (mn < 0 ? mn : 0)) / sum) : 1.0f / k;
}

/* p^(1/T), renormalised: the temperature applied to a distribution. */
static void temper(float *p, int k, double t)
{
    if (t == 1)
        return;
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += p[i] > 0 ? pow(p[i], 1.0 / t) : 0;
    for (int i = 0; i < k; i++)
        p[i] = (float)(p[i] > 0 ? pow(p[i], 1.0 / t) / sum : 0);
}

/* ---- the modes: each turns the teachers' outputs into its targets ------------------- */

/* The mean of the teachers' tempered distributions (the mean in double: at
 * most 1 in float). */
static kdens_status targets_output_avg(kdens_distiller *d, const float *raw, size_t rows,
                                       float *out)
{
    int k = d->classes, nt = d->n_teachers;
    for (size_t r = 0; r < rows; r++) {
        float *p = d->probs + r * (size_t)nt * k;
        for (int j = 0; j < nt; j++)
            kd_softmax_rows(1, k, raw + r * d->out_dim + (size_t)j * k, d->temperature,
                            p + (size_t)j * k);
        for (int i = 0; i < k; i++) {
            double sum = 0;
            for (int j = 0; j < nt; j++)
                sum += p[(size_t)j * k + i];
            out[r * k + i] = (float)(sum / nt);
        }
    }
    return KDENS_OK;
}

/* One tempered distribution per teacher (loss_avg, mimic_all). */
static kdens_status targets_per_teacher(kdens_distiller *d, const float *raw, size_t rows,
                                        float *out)
{
    int k = d->classes, nt = d->n_teachers;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < nt; j++)
            kd_softmax_rows(1, k, raw + r * d->out_dim + (size_t)j * k, d->temperature,
                      out + (r * nt + j) * (size_t)k);
    return KDENS_OK;
}

/* The aggregator's tempered distribution (supernet, supernet2). */
static kdens_status targets_aggregator(kdens_distiller *d, const float *raw, size_t rows,
                                       float *out)
{
    int k = d->classes;
    kdens_status st = kdens_model_predict_logits(d->aggregator, raw, rows, d->scores);
    for (size_t r = 0; st == KDENS_OK && r < rows; r++)
        kd_softmax_rows(1, k, d->scores + r * k, d->temperature, out + r * k);
    return st;
}

/* The fusion rule's scores as a distribution, tempered. */
static kdens_status targets_fusion(kdens_distiller *d, const float *raw, size_t rows, float *out)
{
    int k = d->classes, nt = d->n_teachers;
    for (int j = 0; j < nt; j++) /* member-major probabilities at T = 1 */
        for (size_t r = 0; r < rows; r++)
            kd_softmax_rows(1, k, raw + r * d->out_dim + (size_t)j * k, 1.0,
                      d->probs + ((size_t)j * rows + r) * k);
    kdens_status st = kdens_fuse(d->rule, d->probs, nt, rows, k, d->decisions, out);
    for (size_t r = 0; st == KDENS_OK && r < rows; r++) {
        scores_to_distribution(out + r * k, k);
        temper(out + r * k, k, d->temperature);
    }
    return st;
}

static const kd_distill_mode_ops modes[] = {
    [KDENS_DISTILL_OUTPUT_AVG] = {"output_avg", false, false, false, KD_AGG_NONE,
                                  targets_output_avg},
    [KDENS_DISTILL_LOSS_AVG] = {"loss_avg", true, false, false, KD_AGG_NONE, targets_per_teacher},
    [KDENS_DISTILL_MIMIC_ALL] = {"mimic_all", true, true, false, KD_AGG_NONE,
                                 targets_per_teacher},
    [KDENS_DISTILL_SUPERNET] = {"supernet", false, false, false, KD_AGG_LOGITS,
                                targets_aggregator},
    [KDENS_DISTILL_SUPERNET2] = {"supernet2", false, false, false, KD_AGG_FEATURES,
                                 targets_aggregator},
    [KDENS_DISTILL_FUSION] = {"fusion", false, false, false, KD_AGG_NONE, targets_fusion},
    [KDENS_DISTILL_MIMIC_ALL_PROBS] = {"mimic_all_probs", true, true, true, KD_AGG_NONE,
                                       targets_per_teacher},
};
_Static_assert(sizeof modes / sizeof modes[0] == KD_DISTILL_MODE_COUNT,
               "every kdens_distill_mode has its operations");

const kd_distill_mode_ops *kd_distill_mode_ops_of(kdens_distill_mode mode)
{
    return (unsigned)mode < sizeof modes / sizeof modes[0] ? &modes[mode] : NULL;
}

const kd_distill_mode_ops *kd_distill_mode_ops_named(const char *name, kdens_distill_mode *mode)
{
    int i = kd_table_find(modes, sizeof modes / sizeof modes[0], sizeof modes[0], name);
    if (i < 0)
        return NULL;
    *mode = (kdens_distill_mode)i;
    return &modes[i];
}

kdens_status kd_distill_targets(void *user, const float *x, const size_t *indices, size_t n,
                                float *targets)
{
    kdens_distiller *d = user;
    size_t per = (size_t)d->sets * d->classes;
    if (d->cached) {
        for (size_t i = 0; i < n; i++)
            memcpy(targets + i * per, d->cached + indices[i] * per, sizeof(float) * per);
        return KDENS_OK;
    }
    kdens_status st = ensure_scratch(d, n);
    if (st != KDENS_OK)
        return st;
    float *raw = d->raw;
    st = teacher_outputs(d, x, n, raw);
    return st == KDENS_OK ? kd_distill_mode_ops_of(d->mode)->targets(d, raw, n, targets) : st;
}

/* ---- whole datasets ------------------------------------------------------------------ */

/* The teachers' outputs (raw) and/or the targets for every sample of ds,
 * CHUNK samples at a time.  Over several ranks each computes every
 * ranks-th chunk, the others' left zero, and a sum over the ranks fills
 * them in: adding zeros is exact, so every rank holds the same bits as one
 * process computing them all. */
static kdens_status over_dataset(kdens_distiller *d, const kdens_dataset *ds, float *raw_all,
                                 float *targets_all)
{
    const kdens_model *s = d->student;
    size_t in = (size_t)s->in_h * s->in_w * s->in_c, per = (size_t)d->sets * d->classes;
    int rank = kdens_comm_rank(d->comm), ranks = kdens_comm_size(d->comm);
    kdens_status st = ensure_scratch(d, CHUNK);
    uint8_t *img = malloc(in);
    float *x = malloc(sizeof(float) * CHUNK * in);
    if (st == KDENS_OK && (!img || !x))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (ranks > 1 && raw_all)
        memset(raw_all, 0, sizeof(float) * ds->n * d->out_dim);
    if (ranks > 1 && targets_all)
        memset(targets_all, 0, sizeof(float) * ds->n * per);
    for (size_t first = (size_t)rank * CHUNK; st == KDENS_OK && first < ds->n;
         first += (size_t)ranks * CHUNK) {
        size_t rows = KD_MIN((size_t)CHUNK, ds->n - first);
        for (size_t i = 0; i < rows && st == KDENS_OK; i++) {
            st = kd_dataset_read(ds, first + i, img);
            for (size_t p = 0; p < in; p++) {
                int ch = (int)(p % (size_t)s->in_c);
                x[i * in + p] = img[p] * s->in_scale[ch] + s->in_offset[ch];
            }
        }
        float *dst_raw = raw_all ? raw_all + first * d->out_dim : d->raw;
        if (st == KDENS_OK)
            st = teacher_outputs(d, x, rows, dst_raw);
        if (st == KDENS_OK && targets_all)
            st = kd_distill_mode_ops_of(d->mode)->targets(d, dst_raw, rows,
                                                          targets_all + first * per);
        char task[96];
        snprintf(task, sizeof task, "teacher outputs %zu/%zu", first + rows, ds->n);
        if (st == KDENS_OK && rank == 0)
            kd_progress(task, first + rows, ds->n);
    }
    free(img);
    free(x);
    if (ranks > 1) {
        st = kdens_comm_agree(d->comm, st);
        if (st == KDENS_OK && raw_all)
            st = kd_comm_allreduce_float(d->comm, raw_all, ds->n * d->out_dim);
        if (st == KDENS_OK && targets_all)
            st = kd_comm_allreduce_float(d->comm, targets_all, ds->n * per);
    }
    return st;
}

static int32_t label_at(const kdens_dataset *ds, size_t i)
{
    return ds->store->labels[kd_dataset_at(ds, i)];
}

/* The teachers' outputs on every sample of ds into x (ds->n x out_dim), its
 * labels into y. */
static kdens_status outputs_and_labels(kdens_distiller *d, const kdens_dataset *ds, float *x,
                                       int32_t *y)
{
    for (size_t i = 0; i < ds->n; i++)
        y[i] = label_at(ds, i);
    return over_dataset(d, ds, x, NULL);
}

/* The trainer of the aggregator: Adam (lr 0.001, batch 128) until the
 * validation loss has not improved for 5 epochs (at most 100), best weights
 * restored; without a validation set it watches the training loss. */
static kdens_status configure_aggregator(kdens_trainer *t, uint64_t seed)
{
    kdens_status st = kdens_trainer_set_epochs(t, 100);
    if (st == KDENS_OK)
        st = kdens_trainer_set_batch(t, 128);
    if (st == KDENS_OK)
        st = kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 1e-3);
    if (st == KDENS_OK)
        st = kdens_trainer_set_early_stopping(t, 5, 1);
    if (st == KDENS_OK)
        st = kdens_trainer_set_seed(t, seed);
    return st;
}

/* The supernet aggregator: a dense softmax layer over the teachers' outputs,
 * trained by the trainer on those outputs (configure_aggregator). */
static kdens_status train_aggregator(kdens_distiller *d)
{
    size_t dim = d->out_dim, n = d->train->n, nv = d->val ? d->val->n : 0;
    double bytes = 4.0 * dim * (double)(n + nv);
    if (bytes > 4.0 * (1u << 30))
        return kd_fail(KDENS_E_NOMEM, "the supernet needs %.1f GiB of teacher outputs",
                       bytes / (1u << 30));
    const char *name = kdens_distill_mode_name(d->mode);
    char spec[] = "dense units=classes\nsoftmax\n";
    kdens_status st = kdens_model_from_spec(spec, 1, 1, (int)dim, d->classes,
                                            d->student->seed ^ 0x5e9e, &d->aggregator);
    if (st != KDENS_OK)
        return kdens_comm_agree(d->comm, st);
    float *x = malloc(sizeof(float) * dim * (n + nv));
    int32_t *y = malloc(sizeof(int32_t) * (n + nv));
    kdens_trainer *t = NULL;
    if (!x || !y)
        st = kd_fail(KDENS_E_NOMEM, "out of memory for the supernet");
    st = kdens_comm_agree(d->comm, st); /* before the ranks share the outputs */
    if (st == KDENS_OK)
        st = outputs_and_labels(d, d->train, x, y);
    if (st == KDENS_OK && nv)
        st = outputs_and_labels(d, d->val, x + n * dim, y + n);
    const float *xv = nv ? x + n * dim : x; /* no validation set: the training set */
    if (st == KDENS_OK)
        st = kd_trainer_create_features(d->aggregator, x, y, n, xv, nv ? y + n : y,
                                        nv ? nv : n, &t);
    if (st == KDENS_OK)
        st = configure_aggregator(t, d->student->seed ^ 0xa66);
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "%s aggregator: training a dense layer over %zu teacher "
               "outputs on %zu samples", name, dim, n);
        st = kdens_trainer_fit(t);
    }
    /* every rank trained it on the same outputs; rank 0's weights, so that
     * no difference of thread counts can make the targets differ */
    st = kdens_comm_agree(d->comm, st);
    if (st == KDENS_OK)
        st = kd_comm_broadcast(d->comm, d->aggregator->weights,
                               sizeof(float) * d->aggregator->n_weights, 0);
    if (st == KDENS_OK)
        kd_log(KDENS_LOG_INFO, "%s aggregator: %d epochs, best %d with val_loss %.4f", name,
               kdens_trainer_epochs_run(t), kdens_trainer_best_epoch(t),
               kdens_trainer_best_val_loss(t));
    kdens_trainer_free(t);
    free(x);
    free(y);
    return st;
}

/* ---- the cache --------------------------------------------------------------------- */

void kd_distill_release_targets(kdens_distiller *d)
{
    if (d->map) {
        munmap(d->map, d->map_len);
        if (d->cache_path)
            unlink(d->cache_path); /* scratch: valid for one fit only */
    } else {
        free(d->cached);
    }
    d->map = NULL;
    d->cached = NULL;
}

/* Room for every training sample's targets: in memory, or a mapped file. */
static kdens_status cache_alloc(kdens_distiller *d, size_t floats)
{
    size_t bytes = sizeof(float) * (floats ? floats : 1);
    if (!d->cache_path) {
        d->cached = malloc(bytes);
        return d->cached ? KDENS_OK
                         : kd_fail(KDENS_E_NOMEM, "out of memory for %zu cached targets", floats);
    }
    /* a scratch file of this fit: created here (an existing file is never
     * truncated), deleted by kd_distill_release_targets */
    int fd = open(d->cache_path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST)
        return kd_fail(KDENS_E_IO, "%s: exists; the cache file is scratch, created and deleted "
                       "by each fit: remove it or give another path", d->cache_path);
    if (fd < 0)
        return kd_fail(KDENS_E_IO, "%s: cannot create: %s", d->cache_path, strerror(errno));
    int err = posix_fallocate(fd, 0, (off_t)bytes); /* a full disk fails here, not later */
    void *map = err ? MAP_FAILED : mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (!err && map == MAP_FAILED)
        err = errno;
    close(fd);
    if (err) {
        unlink(d->cache_path);
        return kd_fail(KDENS_E_IO, "%s: cannot hold %zu bytes of targets: %s", d->cache_path,
                       bytes, strerror(err));
    }
    d->map = map;
    d->map_len = bytes;
    d->cached = map;
    return KDENS_OK;
}

kdens_status kd_distill_prepare(kdens_distiller *d)
{
    kd_distill_release_targets(d);
    kdens_status st = KDENS_OK;
    size_t k = (size_t)d->classes;
    free(d->feature_node);
    d->feature_node = NULL;
    d->out_dim = (size_t)d->n_teachers * k;
    const kd_distill_mode_ops *ops = kd_distill_mode_ops_of(d->mode);
    if (ops->aggregator == KD_AGG_FEATURES) {
        if (!(d->feature_node = malloc(sizeof(int) * (size_t)d->n_teachers)))
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        d->out_dim = 0;
        for (int t = 0; t < d->n_teachers && st == KDENS_OK; t++) {
            const kdens_model *tm = kdens_ensemble_member(d->teachers, t);
            st = feature_node_of(tm, kdens_ensemble_member_name(d->teachers, t),
                                 &d->feature_node[t]);
            if (st == KDENS_OK)
                d->out_dim += (size_t)tm->nodes[d->feature_node[t]].c;
        }
    }
    free(d->scratch);
    free(d->decisions);
    d->scratch = NULL;
    d->decisions = NULL;
    d->scratch_rows = 0;
    if (st == KDENS_OK && ops->aggregator != KD_AGG_NONE) {
        kdens_model_free(d->aggregator);
        d->aggregator = NULL;
        st = train_aggregator(d);
    }
    if (st == KDENS_OK && d->cache && !kd_trainer_augment(d->trainer)) {
        st = kdens_comm_agree(d->comm, cache_alloc(d, d->train->n * (size_t)d->sets * k));
        if (st == KDENS_OK)
            st = over_dataset(d, d->train, NULL, d->cached);
        if (st != KDENS_OK)
            kd_distill_release_targets(d);
    }
    return st;
}

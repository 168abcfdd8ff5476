/* Evaluation of a model on a labelled dataset or on labelled feature rows. */
#include "train.h"

#include "../data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kdens_status kd_check_fit(const kdens_model *m, const kdens_dataset *ds, const char *what)
{
    const kd_store *s = ds->store;
    if (s->h != m->in_h || s->w != m->in_w || s->c != m->in_c)
        return kd_fail(KDENS_E_SHAPE, "the %s images are %dx%dx%d but the model takes %dx%dx%d",
                       what, s->h, s->w, s->c, m->in_h, m->in_w, m->in_c);
    if (s->classes != m->classes)
        return kd_fail(KDENS_E_SHAPE, "the %s set has %d classes but the model %d", what,
                       s->classes, m->classes);
    return KDENS_OK;
}

kdens_status kd_check_features(const kdens_model *m, const kd_features *f, const char *what)
{
    size_t per = (size_t)m->in_h * m->in_w * m->in_c;
    if (f->dim != per)
        return kd_fail(KDENS_E_SHAPE, "the %s rows hold %zu features but the model takes %zu",
                       what, f->dim, per);
    for (size_t i = 0; i < f->n; i++)
        if (f->labels[i] < 0 || f->labels[i] >= m->classes)
            return kd_fail(KDENS_E_ARG, "%s row %zu: label %d is outside [0, %d)", what, i,
                           (int)f->labels[i], m->classes);
    return KDENS_OK;
}

/* What is evaluated: a dataset's images or (ds NULL) feature rows. */
typedef struct source {
    const kdens_dataset *ds;
    const kd_features *f;
    size_t n;
} source;

/* Samples first .. first + nb - 1 as the model takes them: *x points into
 * the feature rows, or to buf, filled from the dataset's images (img:
 * scratch for one); their labels into y. */
static kdens_status batch_of(const kdens_model *m, const source *src, size_t first, size_t nb,
                             uint8_t *img, float *buf, const float **x, int32_t *y)
{
    if (!src->ds) {
        *x = src->f->x + first * src->f->dim;
        memcpy(y, src->f->labels + first, sizeof(int32_t) * nb);
        return KDENS_OK;
    }
    size_t per = (size_t)m->in_h * m->in_w * m->in_c;
    kdens_status st = KDENS_OK;
    for (size_t i = 0; i < nb && st == KDENS_OK; i++) {
        st = kd_dataset_read(src->ds, first + i, img);
        for (size_t p = 0; st == KDENS_OK && p < per; p++) {
            int ch = (int)(p % (size_t)m->in_c);
            buf[i * per + p] = img[p] * m->in_scale[ch] + m->in_offset[ch];
        }
        y[i] = src->ds->store->labels[kd_dataset_at(src->ds, first + i)];
    }
    *x = buf;
    return st;
}

/* The metrics of kdens_model_evaluate over a checked source. */
static kdens_status evaluate(kdens_model *m, const source *src, size_t batch, double *loss,
                             double *top1, double *top5, double *per_class, uint64_t *confusion)
{
    int k = m->classes;
    size_t per = (size_t)m->in_h * m->in_w * m->in_c, n = src->n;
    batch = KD_MIN(batch, n ? n : 1);
    bool images = src->ds != NULL;
    kdens_status st = KDENS_OK;
    uint8_t *img = images ? malloc(per) : NULL;
    float *buf = images ? malloc(sizeof(float) * batch * per) : NULL;
    float *z = malloc(sizeof(float) * batch * k);
    int32_t *y = malloc(sizeof(int32_t) * batch);
    uint64_t *conf = calloc((size_t)k * k, sizeof(uint64_t));
    if ((images && (!img || !buf)) || !z || !y || !conf) {
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
        goto done;
    }
    double total = 0;
    size_t right1 = 0, right5 = 0;
    for (size_t first = 0; first < n && st == KDENS_OK; first += batch) {
        size_t nb = KD_MIN(batch, n - first);
        const float *x;
        st = batch_of(m, src, first, nb, img, buf, &x, y);
        if (st == KDENS_OK)
            st = kdens_model_predict_logits(m, x, nb, z);
        for (size_t i = 0; i < nb && st == KDENS_OK; i++) {
            const float *zr = z + i * k;
            int best = 0, above = 0;
            for (int c = 1; c < k; c++)
                best = zr[c] > zr[best] ? c : best;
            for (int c = 0; c < k; c++)
                above += zr[c] > zr[y[i]];
            total += kd_cross_entropy(zr, k, y[i]);
            right1 += best == y[i];
            right5 += above < 5;
            conf[(size_t)y[i] * k + best]++;
        }
    }
    if (st != KDENS_OK)
        goto done;
    if (loss)
        *loss = n ? total / (double)n : 0;
    if (top1)
        *top1 = n ? (double)right1 / (double)n : 0;
    if (top5)
        *top5 = n ? (double)right5 / (double)n : 0;
    if (per_class)
        for (int c = 0; c < k; c++) {
            uint64_t row = 0;
            for (int p = 0; p < k; p++)
                row += conf[(size_t)c * k + p];
            per_class[c] = row ? (double)conf[(size_t)c * k + c] / (double)row : NAN;
        }
    if (confusion)
        memcpy(confusion, conf, sizeof(uint64_t) * k * k);
done:
    free(img);
    free(buf);
    free(z);
    free(y);
    free(conf);
    return st;
}

kdens_status kdens_model_evaluate(kdens_model *m, const kdens_dataset *ds, size_t batch,
                                  double *loss, double *top1, double *top5, double *per_class,
                                  uint64_t *confusion)
{
    if (!m || !ds || batch == 0)
        return kd_fail(KDENS_E_ARG, "NULL argument or batch 0");
    kdens_status st = kd_check_fit(m, ds, "evaluation");
    source src = {ds, NULL, ds->n};
    return st == KDENS_OK ? evaluate(m, &src, batch, loss, top1, top5, per_class, confusion)
                          : st;
}

kdens_status kd_evaluate_features(kdens_model *m, const kd_features *f, size_t batch,
                                  double *loss, double *top1)
{
    if (!m || !f || !f->x || !f->labels || batch == 0)
        return kd_fail(KDENS_E_ARG, "NULL argument or batch 0");
    kdens_status st = kd_check_features(m, f, "evaluation");
    source src = {NULL, f, f->n};
    return st == KDENS_OK ? evaluate(m, &src, batch, loss, top1, NULL, NULL, NULL) : st;
}

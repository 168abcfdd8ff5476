/* Evaluation of a model on a labelled dataset. */
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

kdens_status kdens_model_evaluate(kdens_model *m, const kdens_dataset *ds, size_t batch,
                                  double *loss, double *top1, double *top5, double *per_class,
                                  uint64_t *confusion)
{
    if (!m || !ds || batch == 0)
        return kd_fail(KDENS_E_ARG, "NULL argument or batch 0");
    kdens_status st = kd_check_fit(m, ds, "evaluation");
    if (st != KDENS_OK)
        return st;
    int k = m->classes;
    size_t per = (size_t)m->in_h * m->in_w * m->in_c, n = ds->n;
    batch = KD_MIN(batch, n ? n : 1);
    uint8_t *img = malloc(per);
    float *x = malloc(sizeof(float) * batch * per), *z = malloc(sizeof(float) * batch * k);
    uint64_t *conf = calloc((size_t)k * k, sizeof(uint64_t));
    if (!img || !x || !z || !conf) {
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
        goto done;
    }
    double total = 0;
    size_t right1 = 0, right5 = 0;
    for (size_t first = 0; first < n && st == KDENS_OK; first += batch) {
        size_t nb = KD_MIN(batch, n - first);
        int32_t labels[1];
        for (size_t i = 0; i < nb && st == KDENS_OK; i++) {
            st = kd_dataset_read(ds, first + i, img);
            for (size_t p = 0; p < per; p++) {
                int ch = (int)(p % (size_t)m->in_c);
                x[i * per + p] = img[p] * m->in_scale[ch] + m->in_offset[ch];
            }
        }
        if (st == KDENS_OK)
            st = kdens_model_predict_logits(m, x, nb, z);
        for (size_t i = 0; i < nb && st == KDENS_OK; i++) {
            kdens_dataset_get(ds, first + i, NULL, labels, NULL);
            const float *zr = z + i * k;
            int y = labels[0], best = 0, above = 0;
            for (int c = 1; c < k; c++)
                best = zr[c] > zr[best] ? c : best;
            for (int c = 0; c < k; c++)
                above += zr[c] > zr[y];
            total += kd_cross_entropy(zr, k, y);
            right1 += best == y;
            right5 += above < 5;
            conf[(size_t)y * k + best]++;
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
    free(x);
    free(z);
    free(conf);
    return st;
}

/* kdens_model_quantize: the calibration images of an int8 model drawn from
 * a dataset.  Here rather than in lib/nn because datasets belong to
 * lib/data, which lib/nn does not use; the quantisation itself is
 * kdens_model_quantize_u8 (lib/nn/quant.c). */
#include "train.h"

#include <stdlib.h>

kdens_status kdens_model_quantize(kdens_model *m, const kdens_dataset *ds,
                                  kdens_calibration method, size_t samples, kdens_model **out)
{
    if (!m || !ds || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (samples == 0)
        return kd_fail(KDENS_E_ARG, "the calibration sample count must be at least 1");
    int h, w, c;
    kdens_status st = kdens_dataset_shape(ds, &h, &w, &c);
    if (st != KDENS_OK)
        return st;
    if (h != m->in_h || w != m->in_w || c != m->in_c)
        return kd_fail(KDENS_E_SHAPE, "calibration images are %dx%dx%d, the model takes %dx%dx%d",
                       h, w, c, m->in_h, m->in_w, m->in_c);
    size_t count = kdens_dataset_count(ds);
    if (count == 0)
        return kd_fail(KDENS_E_ARG, "the calibration dataset is empty");
    size_t n = KD_MIN(samples, count), per = (size_t)h * w * c;
    uint8_t *images = malloc(n * per);
    if (!images)
        return kd_fail(KDENS_E_NOMEM, "out of memory for %zu calibration images", n);
    /* evenly spaced: files sorted by class still give every class */
    for (size_t i = 0; i < n && st == KDENS_OK; i++)
        st = kdens_dataset_read(ds, (size_t)((double)i * count / n), images + i * per);
    if (st == KDENS_OK)
        st = kdens_model_quantize_u8(m, images, n, method, out);
    free(images);
    return st;
}

/* libFuzzer harness: the .kdm model-file reader on arbitrary bytes.  A load
 * either fails with a status or yields a model that predicts. */
#include "nn/nn.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdens_model *m = NULL;
    if (kd_model_load_memory("fuzz.kdm", (const char *)data, size, &m) != KDENS_OK)
        return 0;
    int h, w, c;
    kdens_model_input_shape(m, &h, &w, &c);
    size_t in = (size_t)h * w * c;
    if (in <= 4096 && kdens_model_num_classes(m) <= 1000) {
        float *x = calloc(in, sizeof(float));
        float *p = calloc((size_t)kdens_model_num_classes(m), sizeof(float));
        if (x && p)
            kdens_model_predict(m, x, 1, p);
        free(x);
        free(p);
    }
    kdens_model_free(m);
    return 0;
}

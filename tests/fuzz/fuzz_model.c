/* libFuzzer harness: the .kdm model-file reader on arbitrary bytes.  A load
 * either fails with a status or yields a model that predicts.  The section
 * CRCs are recomputed before loading (when the section frames parse), so
 * that mutations reach the META, ARCH and TENS parsers instead of all
 * stopping at the CRC check -- which the unit tests cover. */
#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);

/* An allocation the library cannot get must come back as NULL (and then
 * KDENS_E_NOMEM), not abort the process. */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void fix_crcs(uint8_t *d, size_t size)
{
    size_t pos = 16;
    while (pos + 12 <= size) {
        uint64_t len = le64(d + pos + 4);
        if (len > size - pos - 12 || size - pos - 12 - len < 4)
            return;
        uint32_t crc = kd_crc32(0, d + pos, 12 + len);
        uint8_t *c = d + pos + 12 + len;
        c[0] = (uint8_t)crc, c[1] = (uint8_t)(crc >> 8), c[2] = (uint8_t)(crc >> 16);
        c[3] = (uint8_t)(crc >> 24);
        pos += 16 + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    kdens_model *m = NULL;
    kdens_status st = kd_model_load_memory("fuzz.kdm", (const char *)copy, size, &m);
    free(copy);
    if (st != KDENS_OK)
        return 0;
    int h, w, c;
    kdens_model_input_shape(m, &h, &w, &c);
    size_t in = (size_t)h * w * c;
    if (in <= 4096 && kdens_model_num_classes(m) <= 1000 &&
        kdens_model_param_count(m) < 1000000) {
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

/* libFuzzer harness: the IDX parser (images and labels) on arbitrary bytes. */
#include "data/data.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int dims = 1; dims <= 3; dims += 2) {
        uint8_t *values = NULL;
        size_t count;
        int d[3];
        if (kd_idx_parse("fuzz.idx", data, size, dims, &values, &count, d) == KDENS_OK)
            free(values);
    }
    return 0;
}

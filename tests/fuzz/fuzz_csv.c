/* libFuzzer harness: the CSV manifest parser on arbitrary text. */
#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kd_manifest_row *rows;
    size_t n;
    if (kd_manifest_parse("fuzz.csv", (const char *)data, size, &rows, &n) == KDENS_OK)
        kd_manifest_free(rows, n);
    return 0;
}

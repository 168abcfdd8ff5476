/* libFuzzer harness: the CIFAR-10/100 record parser on arbitrary bytes. */
#include "data/data.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int kind = 0; kind < 3; kind++) {
        size_t n;
        if (kd_cifar_parse("fuzz.bin", data, size, (kdens_cifar_labels)kind, NULL, NULL, &n) !=
            KDENS_OK)
            continue;
        uint8_t *px = malloc(n * 3072);
        int32_t *labels = malloc(n * sizeof(int32_t));
        if (px && labels)
            kd_cifar_parse("fuzz.bin", data, size, (kdens_cifar_labels)kind, px, labels, &n);
        free(px);
        free(labels);
    }
    return 0;
}

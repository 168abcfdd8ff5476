/* libFuzzer harness: the scores CSV of kdens vote (sample,member,p0,...). */
#include "ensemble/ensemble.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdens_predictions *pr;
    if (kd_predictions_parse_csv("fuzz.csv", (const char *)data, size, &pr) == KDENS_OK) {
        int32_t d[64];
        size_t n = kdens_predictions_samples(pr);
        if (n <= 64 && kdens_predictions_members(pr) <= 64 && kdens_predictions_classes(pr) <= 16)
            kdens_fuse(KDENS_FUSE_SCHULZE, kdens_predictions_probs(pr),
                       kdens_predictions_members(pr), n, kdens_predictions_classes(pr), d, NULL);
        kdens_predictions_free(pr);
    }
    return 0;
}

/* libFuzzer harness: the text spec parser on arbitrary text, for a small
 * input shape.  A spec either fails with a status or builds a model whose
 * canonical form parses again to the same parameter count. */
#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);

/* An allocation the library cannot get must come back as NULL (and then
 * KDENS_E_NOMEM), not abort the process. */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *spec = malloc(size + 1);
    if (!spec)
        return 0;
    memcpy(spec, data, size);
    spec[size] = '\0';
    kdens_model *m = NULL;
    if (kdens_model_from_spec(spec, 8, 8, 2, 3, 1, &m) == KDENS_OK) {
        if (kdens_model_param_count(m) < 5000000) {
            size_t len = kdens_model_spec(m, NULL, 0);
            char *canon = malloc(len + 1);
            kdens_model *again = NULL;
            if (canon) {
                kdens_model_spec(m, canon, len + 1);
                if (kdens_model_from_spec(canon, 8, 8, 2, 3, 1, &again) != KDENS_OK ||
                    kdens_model_param_count(again) != kdens_model_param_count(m))
                    abort(); /* the canonical form must rebuild the network */
            }
            kdens_model_free(again);
            free(canon);
        }
        kdens_model_free(m);
    }
    free(spec);
    return 0;
}

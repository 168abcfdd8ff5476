/* Workflow handles that own copies of their names (workspace, dataset,
 * architectures) in the same allocation, so that one free() releases them. */
#include "experiment.h"

#include <stdlib.h>
#include <string.h>

kdens_status kd_handle_with_names(size_t size, int n, const char *const *in,
                                  const char **names[], void **out)
{
    size_t total = size;
    for (int i = 0; i < n; i++) {
        if (!in[i])
            return kd_fail(KDENS_E_ARG, "NULL argument");
        /* the workspace (i 0) is a path; the others name files and registry fields */
        if (i > 0 && (strchr(in[i], '/') || strchr(in[i], ',')))
            return kd_fail(KDENS_E_ARG, "the name '%s' holds a '/' or ','", in[i]);
        total += strlen(in[i]) + 1;
    }
    char *h = calloc(1, total);
    if (!h)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    char *p = h + size;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(in[i]) + 1;
        memcpy(p, in[i], len);
        *names[i] = p;
        p += len;
    }
    *out = h;
    return KDENS_OK;
}

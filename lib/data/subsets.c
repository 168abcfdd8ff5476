/* Subset manifests named as the reference names them. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 32 hex digits from a splitmix64 stream: a uuid4-like name, reproducible
 * from the seed. */
static void uuid_hex(uint64_t seed, char out[33])
{
    for (int half = 0; half < 2; half++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL) + (uint64_t)half * 0x632be59bd9b4e019ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        snprintf(out + 16 * half, 17, "%016llx", (unsigned long long)z);
    }
}

kdens_status kdens_dataset_write_subset(const kdens_dataset *ds, const char *dir,
                                        double fraction, size_t count, uint64_t seed,
                                        char *path, size_t path_size, size_t *n)
{
    if (!ds || !dir || !path)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    char digits[64], uuid[33];
    if (count > 0) {
        snprintf(digits, sizeof digits, "n%zu", count);
    } else { /* 0.25 -> "025" (str(0.25).replace(".", "")) */
        char f[32], *d = digits;
        snprintf(f, sizeof f, "%g", fraction);
        for (const char *c = f; *c; c++)
            if (*c != '.')
                *d++ = *c;
        *d = '\0';
    }
    uuid_hex(seed ^ 0x5ab5e7ULL, uuid);
    char *full = kd_path_fmt(dir, "subset_%s_%s.csv", digits, uuid);
    if (!full)
        return KDENS_E_NOMEM;
    size_t len = strlen(full);
    if (len >= path_size) { /* refused, never cut short: that would name another file */
        if (path_size > 0)
            path[0] = '\0';
        kdens_status st = kd_fail(KDENS_E_ARG, "%s: the subset's path needs %zu bytes, the "
                                  "buffer has %zu", full, len + 1, path_size);
        free(full);
        return st;
    }
    memcpy(path, full, len + 1);
    free(full);
    kdens_dataset *sub;
    kdens_status st = kdens_dataset_subset(ds, fraction, count, seed, &sub);
    if (st == KDENS_OK)
        st = kdens_dataset_write_manifest(sub, path);
    if (st == KDENS_OK && n)
        *n = kdens_dataset_count(sub);
    kdens_dataset_free(sub);
    return st;
}

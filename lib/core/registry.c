/* The teachers.csv registry (the reference's columns): one reader for the
 * teacher workflow, which skips registered models, and for ensembles, which
 * are drawn from it. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kd_registry_free(kd_registry_row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].location);
        free(rows[i].dataset);
        free(rows[i].arch);
        free(rows[i].uuid);
    }
    free(rows);
}

kdens_status kd_registry_read(const char *csv, kd_registry_row **rows, size_t *n_rows)
{
    char *text;
    size_t len;
    kdens_status st = kd_read_file(csv, &text, &len);
    if (st != KDENS_OK)
        return st;
    kd_registry_row *out = NULL;
    size_t n = 0, cap = 0, line_no = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && st == KDENS_OK;
         line = strtok_r(NULL, "\n", &save)) {
        if (++line_no == 1)
            continue; /* the header */
        char loc[4096], ds[256], ar[128], uuid[256];
        double frac;
        if (sscanf(line, "%4095[^,],%255[^,],%127[^,],%lf,%255[^,]", loc, ds, ar, &frac, uuid) !=
            5) {
            st = kd_fail(KDENS_E_FORMAT, "%s: line %zu is not a registry row", csv, line_no);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            kd_registry_row *v = realloc(out, sizeof *v * cap);
            if (!v) {
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
                break;
            }
            out = v;
        }
        kd_registry_row *r = &out[n];
        r->location = kd_strdup(loc), r->dataset = kd_strdup(ds), r->arch = kd_strdup(ar);
        r->uuid = kd_strdup(uuid), r->fraction = frac, r->line = line_no;
        n++;
        if (!r->location || !r->dataset || !r->arch || !r->uuid)
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    free(text);
    if (st != KDENS_OK) {
        kd_registry_free(out, n);
        return st;
    }
    *rows = out;
    *n_rows = n;
    return KDENS_OK;
}

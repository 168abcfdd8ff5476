/* The teachers.csv and students.csv registries (the columns of the
 * dissertation's code): one reader for the teacher workflow, which skips
 * registered models, and for ensembles, which are drawn from it. */
#include "experiment.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* One data row (the header is line 1): location, dataset, arch, fraction,
 * uuid, then any number of metric columns. */
static kdens_status parse_row(const char *csv, const kd_csv *c, kd_registry_row *r)
{
    char *end = NULL;
    double frac = c->n_fields >= 5 ? strtod(c->fields[3], &end) : 0;
    if (c->n_fields < 5 || !*c->fields[0] || end == c->fields[3] || *end || !isfinite(frac))
        return kd_fail(KDENS_E_FORMAT, "%s: line %zu is not a registry row", csv, c->line);
    r->location = kd_strdup(c->fields[0]), r->dataset = kd_strdup(c->fields[1]);
    r->arch = kd_strdup(c->fields[2]), r->uuid = kd_strdup(c->fields[4]);
    r->fraction = frac, r->line = c->line;
    if (!r->location || !r->dataset || !r->arch || !r->uuid)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    return KDENS_OK;
}

kdens_status kd_registry_read(const char *csv, kd_registry_row **rows, size_t *n_rows)
{
    char *text;
    size_t len;
    kdens_status st = kd_read_file(csv, &text, &len);
    if (st != KDENS_OK)
        return st;
    kd_registry_row *out = NULL;
    size_t n = 0, cap = 0;
    kd_csv c;
    kd_csv_open(&c, text, len);
    for (int r; st == KDENS_OK && (r = kd_csv_next(&c)) != 0;) {
        if (r < 0) {
            st = kd_fail(KDENS_E_FORMAT, "%s: line %zu: %s", csv, c.line, c.error);
            break;
        }
        if (c.line == 1)
            continue; /* the header */
        if (n == cap) {
            cap = kd_grown(cap, 16);
            if (!kd_resize(&out, cap, sizeof *out)) {
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
                break;
            }
        }
        memset(&out[n], 0, sizeof out[n]);
        st = parse_row(csv, &c, &out[n]);
        n++;
    }
    kd_csv_close(&c);
    free(text);
    if (st != KDENS_OK) {
        kd_registry_free(out, n);
        return st;
    }
    *rows = out;
    *n_rows = n;
    return KDENS_OK;
}

bool kd_registry_has(const char *csv, const char *location)
{
    char *text;
    size_t len;
    if (kd_read_file(csv, &text, &len) != KDENS_OK) /* none yet */
        return false;
    bool found = false;
    kd_csv c;
    kd_csv_open(&c, text, len);
    while (!found && kd_csv_next(&c) > 0)
        found = c.line > 1 && c.n_fields > 0 && strcmp(c.fields[0], location) == 0;
    kd_csv_close(&c);
    free(text);
    return found;
}

kdens_status kd_registry_append(const char *csv, const char *header, const char *row)
{
    int fd = open(csv, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return kd_fail(KDENS_E_IO, "%s: cannot open: %s", csv, strerror(errno));
    kdens_status st = KDENS_OK;
    if (flock(fd, LOCK_EX) != 0)
        st = kd_fail(KDENS_E_IO, "%s: cannot lock: %s", csv, strerror(errno));
    struct stat sb;
    kd_buf b = {0};
    if (st == KDENS_OK && fstat(fd, &sb) == 0 && sb.st_size == 0)
        kd_buf_printf(&b, "%s\n", header);
    kd_buf_printf(&b, "%s\n", row);
    if (st == KDENS_OK && (b.failed || write(fd, b.data, b.len) != (ssize_t)b.len))
        st = kd_fail(KDENS_E_IO, "%s: cannot append: %s", csv, strerror(errno));
    if (st == KDENS_OK && fsync(fd) != 0)
        st = kd_fail(KDENS_E_IO, "%s: fsync failed: %s", csv, strerror(errno));
    kd_buf_free(&b);
    close(fd); /* releases the lock */
    return st;
}

kdens_status kdens_ensemble_from_registry(const char *csv, const char *dataset,
                                          const char *arch, double fraction, int n,
                                          uint64_t seed, kdens_ensemble **out)
{
    if (!csv || !dataset || !arch || !out || n < 0)
        return kd_fail(KDENS_E_ARG, "NULL argument or negative count");
    kd_registry_row *rows = NULL;
    size_t n_rows = 0;
    kdens_status st = kd_registry_read(csv, &rows, &n_rows);
    if (st != KDENS_OK)
        return st;
    char **paths = NULL, **uuids = NULL;
    int found = 0, cap = 0;
    for (size_t r = 0; r < n_rows && st == KDENS_OK; r++) {
        const kd_registry_row *row = &rows[r];
        if (strcmp(row->dataset, dataset) || strcmp(row->arch, arch) ||
            (fraction > 0 && fabs(row->fraction - fraction) > 1e-9))
            continue;
        if (found == cap) {
            cap = kd_grown(cap, 16);
            if (!kd_resize(&paths, cap, sizeof *paths) || !kd_resize(&uuids, cap, sizeof *uuids)) {
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
                break;
            }
        }
        paths[found] = kd_strdup(row->location);
        uuids[found] = kd_strdup(row->uuid);
        found++;
        if (!paths[found - 1] || !uuids[found - 1])
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    kd_registry_free(rows, n_rows);
    if (st == KDENS_OK && (found == 0 || found < n))
        st = kd_fail(KDENS_E_NOTFOUND, "%s lists %d teachers of %s/%s%s, %d asked", csv, found,
                     dataset, arch, fraction > 0 ? " at that fraction" : "", n);
    /* by uuid: the same seed picks the same teachers in the same order however
     * the rows were appended (a farm or parallel processes append them in
     * the order they finish) */
    for (int i = 1; st == KDENS_OK && i < found; i++)
        for (int k = i; k > 0 && strcmp(uuids[k - 1], uuids[k]) > 0; k--) {
            char *t = paths[k];
            paths[k] = paths[k - 1], paths[k - 1] = t;
            t = uuids[k];
            uuids[k] = uuids[k - 1], uuids[k - 1] = t;
        }
    kdens_ensemble *ens = NULL;
    if (st == KDENS_OK)
        st = kdens_ensemble_create(&ens);
    if (st == KDENS_OK && n > 0 && n < found) { /* a sample of n */
        kd_rng rng;
        kd_rng_seed(&rng, seed);
        for (int i = found - 1; i > 0; i--) {
            int j = (int)kd_rng_below(&rng, (uint64_t)i + 1);
            char *t = paths[i];
            paths[i] = paths[j], paths[j] = t;
            t = uuids[i];
            uuids[i] = uuids[j], uuids[j] = t;
        }
    }
    int take = n > 0 ? n : found;
    for (int i = 0; st == KDENS_OK && i < take; i++)
        st = kdens_ensemble_add_named(ens, paths[i], uuids[i]);
    for (int i = 0; i < found; i++) {
        free(paths[i]);
        free(uuids[i]);
    }
    free(paths);
    free(uuids);
    if (st != KDENS_OK) {
        kdens_ensemble_free(ens);
        return st;
    }
    *out = ens;
    return KDENS_OK;
}

/* ---- the public reader -------------------------------------------------------- */

struct kdens_registry {
    kd_registry_row *rows;
    size_t n;
};

kdens_status kdens_registry_load(const char *teachers_csv, kdens_registry **out)
{
    if (!teachers_csv || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_status st = kd_registry_read(teachers_csv, &reg->rows, &reg->n);
    if (st != KDENS_OK) {
        free(reg);
        return st;
    }
    *out = reg;
    return KDENS_OK;
}

void kdens_registry_free(kdens_registry *reg)
{
    if (!reg)
        return;
    kd_registry_free(reg->rows, reg->n);
    free(reg);
}

size_t kdens_registry_count(const kdens_registry *reg)
{
    return reg ? reg->n : 0;
}

kdens_status kdens_registry_row(const kdens_registry *reg, size_t i, const char **location,
                                const char **dataset, const char **arch, double *fraction,
                                const char **uuid)
{
    if (!reg || i >= reg->n)
        return kd_fail(KDENS_E_ARG, "NULL registry or row %zu out of range", i);
    const kd_registry_row *r = &reg->rows[i];
    if (location)
        *location = r->location;
    if (dataset)
        *dataset = r->dataset;
    if (arch)
        *arch = r->arch;
    if (fraction)
        *fraction = r->fraction;
    if (uuid)
        *uuid = r->uuid;
    return KDENS_OK;
}

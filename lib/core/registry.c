/* The teachers.csv registry (the reference's columns): one reader for the
 * teacher workflow, which skips registered models, and for ensembles, which
 * are drawn from it. */
#include "core.h"

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

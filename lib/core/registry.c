/* The teachers.csv registry (the reference's columns): one reader for the
 * teacher workflow, which skips registered models, and for ensembles, which
 * are drawn from it. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
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

bool kd_registry_has(const char *csv, const char *location)
{
    char *text;
    size_t len;
    if (kd_read_file(csv, &text, &len) != KDENS_OK) /* none yet */
        return false;
    size_t l = strlen(location);
    bool found = false;
    for (const char *p = text; p && !found && p < text + len;) {
        found = (size_t)(text + len - p) > l && strncmp(p, location, l) == 0 && p[l] == ',';
        p = memchr(p, '\n', (size_t)(text + len - p));
        p = p ? p + 1 : NULL;
    }
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

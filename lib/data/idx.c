/* IDX files (MNIST, Fashion-MNIST, EMNIST) and CIFAR binary batches. */
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

kdens_status kd_read_gz(const char *path, uint8_t **data, size_t *len)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return kd_fail(KDENS_E_IO, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "out of memory");
    kd_buf b = {0};
    char chunk[1 << 16];
    int got;
    while ((got = gzread(f, chunk, sizeof chunk)) > 0)
        kd_buf_put(&b, chunk, (size_t)got);
    int err;
    const char *msg = gzerror(f, &err);
    kdens_status st = KDENS_OK;
    if (got < 0 || (err != Z_OK && err != Z_BUF_ERROR))
        st = kd_fail(err == Z_ERRNO ? KDENS_E_IO : KDENS_E_FORMAT, "%s: %s", path,
                     err == Z_ERRNO ? strerror(errno) : msg);
    else if (b.failed)
        st = kd_fail(KDENS_E_NOMEM, "%s: out of memory", path);
    gzclose(f);
    if (st != KDENS_OK) {
        kd_buf_free(&b);
        return st;
    }
    *data = (uint8_t *)b.data;
    *len = b.len;
    if (!*data && !(*data = calloc(1, 1)))
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    return KDENS_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* An IDX file of unsigned bytes: 0, 0, type 0x08, rank, then big-endian
 * dimensions and the values.  want_dims is 3 (images) or 1 (labels). */
kdens_status kd_idx_parse(const char *name, const uint8_t *data, size_t len, int want_dims,
                          uint8_t **values, size_t *count, int *dims)
{
    if (len < 4)
        return kd_fail(KDENS_E_FORMAT, "%s: too short for an IDX header", name);
    uint32_t magic = be32(data);
    uint32_t want = 0x800u | (uint32_t)want_dims;
    if (magic != want)
        return kd_fail(KDENS_E_FORMAT, "%s: wrong IDX magic 0x%08x (expected 0x%08x, %s)", name,
                       magic, want, want_dims == 3 ? "unsigned byte images" : "unsigned byte labels");
    size_t header = 4 + 4 * (size_t)want_dims;
    if (len < header)
        return kd_fail(KDENS_E_FORMAT, "%s: truncated IDX header", name);
    size_t total = 1;
    for (int d = 0; d < want_dims; d++) {
        uint32_t v = be32(data + 4 + 4 * d);
        if (v == 0 || v > (1u << 30) || total > ((size_t)1 << 40) / v)
            return kd_fail(KDENS_E_FORMAT, "%s: IDX dimension %d is %u", name, d, v);
        dims[d] = (int)v;
        total *= v;
    }
    if (len - header < total)
        return kd_fail(KDENS_E_FORMAT,
                       "%s: the header counts %u items (%zu bytes) but the file holds %zu bytes",
                       name, (unsigned)dims[0], total, len - header);
    if (want_dims == 3 && (dims[1] > 65536 || dims[2] > 65536))
        return kd_fail(KDENS_E_FORMAT, "%s: images of %dx%d are too large", name, dims[1],
                       dims[2]);
    *values = malloc(total);
    if (!*values)
        return kd_fail(KDENS_E_NOMEM, "%s: out of memory", name);
    memcpy(*values, data + header, total);
    *count = (size_t)dims[0];
    return KDENS_OK;
}

static kdens_status read_idx(const char *path, int dims_wanted, uint8_t **values,
                             size_t *count, int *dims)
{
    uint8_t *raw;
    size_t len;
    kdens_status st = kd_read_gz(path, &raw, &len);
    if (st != KDENS_OK)
        return st;
    st = kd_idx_parse(path, raw, len, dims_wanted, values, count, dims);
    free(raw);
    return st;
}

kdens_status kdens_dataset_load_idx(const char *images_path, const char *labels_path,
                                    kdens_dataset **out)
{
    if (!images_path || !labels_path || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    uint8_t *images = NULL, *labels = NULL;
    size_t n_images = 0, n_labels = 0;
    int idims[3], ldims[1];
    kdens_status st = read_idx(images_path, 3, &images, &n_images, idims);
    if (st == KDENS_OK)
        st = read_idx(labels_path, 1, &labels, &n_labels, ldims);
    if (st == KDENS_OK && n_images != n_labels)
        st = kd_fail(KDENS_E_FORMAT, "%s holds %zu images but %s holds %zu labels", images_path,
                     n_images, labels_path, n_labels);
    int classes = 0;
    for (size_t i = 0; st == KDENS_OK && i < n_labels; i++)
        classes = KD_MAX(classes, labels[i] + 1);
    kdens_dataset *ds = NULL;
    if (st == KDENS_OK)
        st = kd_dataset_new(n_images, idims[1], idims[2], 1, classes, &ds);
    if (st == KDENS_OK) {
        memcpy(ds->store->pixels, images, n_images * (size_t)idims[1] * idims[2]);
        for (size_t i = 0; i < n_labels; i++)
            ds->store->labels[i] = labels[i];
        st = kd_dataset_name_by_index(ds);
    }
    if (st == KDENS_OK)
        *out = ds;
    else
        kdens_dataset_free(ds);
    free(images);
    free(labels);
    return st;
}

/* ---- CIFAR ------------------------------------------------------------------- */

#define CIFAR_PIXELS 3072

static size_t cifar_record(kdens_cifar_labels labels)
{
    return (labels == KDENS_CIFAR10 ? 1 : 2) + CIFAR_PIXELS;
}

/* Records: label byte(s), then 1024 red, 1024 green, 1024 blue (row-major
 * 32 x 32 planes), converted to 32 x 32 x 3. pixels/out_labels may be NULL
 * to count only. */
kdens_status kd_cifar_parse(const char *name, const uint8_t *data, size_t len,
                            kdens_cifar_labels labels, uint8_t *pixels, int32_t *out_labels,
                            size_t *records)
{
    size_t rec = cifar_record(labels);
    if (len == 0 || len % rec != 0)
        return kd_fail(KDENS_E_FORMAT,
                       "%s: %zu bytes is not a whole number of %zu-byte CIFAR%s records", name,
                       len, rec, labels == KDENS_CIFAR10 ? "-10" : "-100");
    size_t n = len / rec;
    int limit = labels == KDENS_CIFAR10 ? 10 : labels == KDENS_CIFAR100_FINE ? 100 : 20;
    for (size_t r = 0; r < n; r++) {
        const uint8_t *p = data + r * rec;
        int label = labels == KDENS_CIFAR10 ? p[0] : labels == KDENS_CIFAR100_FINE ? p[1] : p[0];
        if (label >= limit)
            return kd_fail(KDENS_E_FORMAT, "%s: record %zu has label %d, not below %d", name, r,
                           label, limit);
        if (out_labels)
            out_labels[r] = label;
        if (pixels) {
            const uint8_t *planes = p + rec - CIFAR_PIXELS;
            uint8_t *dst = pixels + r * CIFAR_PIXELS;
            for (int i = 0; i < 1024; i++)
                for (int c = 0; c < 3; c++)
                    dst[i * 3 + c] = planes[c * 1024 + i];
        }
    }
    *records = n;
    return KDENS_OK;
}

/* Class names from batches.meta.txt / fine_label_names.txt /
 * coarse_label_names.txt next to the first batch, when present. */
static void cifar_names(kdens_dataset *ds, const char *first, kdens_cifar_labels labels)
{
    const char *file = labels == KDENS_CIFAR10          ? "batches.meta.txt"
                       : labels == KDENS_CIFAR100_FINE ? "fine_label_names.txt"
                                                        : "coarse_label_names.txt";
    const char *slash = strrchr(first, '/');
    /* the folder of the first batch, slash included ("" for none) */
    size_t dir = slash ? (size_t)(slash - first + 1) : 0;
    char *path = dir <= INT_MAX ? kd_path_fmt(NULL, "%.*s%s", (int)dir, first, file) : NULL;
    if (!path)
        return; /* the names are optional: the dataset loads without them */
    char *text;
    size_t len;
    if (kd_read_file(path, &text, &len) == KDENS_OK) {
        const char *names[100];
        int n = 0;
        for (char *save = NULL, *line = strtok_r(text, "\r\n", &save); line && n < 100;
             line = strtok_r(NULL, "\r\n", &save))
            if (*line)
                names[n++] = line;
        if (n == ds->store->classes)
            kd_dataset_set_class_names(ds, names, n);
        free(text);
    }
    free(path);
}

kdens_status kdens_dataset_load_cifar(const char *const *paths, int n_paths,
                                      kdens_cifar_labels labels, kdens_dataset **out)
{
    if (!paths || n_paths < 1 || !out)
        return kd_fail(KDENS_E_ARG, "no CIFAR files given");
    if (labels != KDENS_CIFAR10 && labels != KDENS_CIFAR100_FINE &&
        labels != KDENS_CIFAR100_COARSE)
        return kd_fail(KDENS_E_ARG, "unknown CIFAR label kind %d", (int)labels);
    uint8_t **raw = calloc((size_t)n_paths, sizeof *raw);
    size_t *lens = calloc((size_t)n_paths, sizeof *lens), total = 0;
    kdens_status st = raw && lens ? KDENS_OK : kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; st == KDENS_OK && i < n_paths; i++) {
        size_t n;
        if (!paths[i])
            st = kd_fail(KDENS_E_ARG, "CIFAR path %d is NULL", i);
        if (st == KDENS_OK)
            st = kd_read_gz(paths[i], &raw[i], &lens[i]);
        if (st == KDENS_OK)
            st = kd_cifar_parse(paths[i], raw[i], lens[i], labels, NULL, NULL, &n);
        total += st == KDENS_OK ? n : 0;
    }
    kdens_dataset *ds = NULL;
    int classes = labels == KDENS_CIFAR10 ? 10 : labels == KDENS_CIFAR100_FINE ? 100 : 20;
    if (st == KDENS_OK)
        st = kd_dataset_new(total, 32, 32, 3, classes, &ds);
    for (int i = 0, at = 0; st == KDENS_OK && i < n_paths; i++) {
        size_t n;
        st = kd_cifar_parse(paths[i], raw[i], lens[i], labels,
                            ds->store->pixels + (size_t)at * CIFAR_PIXELS, ds->store->labels + at,
                            &n);
        at += (int)n;
    }
    if (st == KDENS_OK)
        st = kd_dataset_name_by_index(ds);
    if (st == KDENS_OK) {
        cifar_names(ds, paths[0], labels);
        *out = ds;
    } else {
        kdens_dataset_free(ds);
    }
    for (int i = 0; raw && i < n_paths; i++)
        free(raw[i]);
    free(raw);
    free(lens);
    return st;
}

/* Image folders (ROOT/<class>/<image>) and CSV manifests (`filename,class`).
 * Files are decoded on the library's threads, each into its own slot, so
 * the result does not depend on the thread count. */
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- a list of strings --------------------------------------------------------- */

typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static bool strlist_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = kd_grown(l->cap, 64);
        if (!kd_resize(&l->v, cap, sizeof *l->v))
            return false;
        l->cap = cap;
    }
    return (l->v[l->n] = kd_strdup(s)) != NULL && ++l->n;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A manifest's file: as given when absolute, else under root; NULL when out
 * of memory (the message set). */
static char *resolve(const char *root, const char *file)
{
    return file[0] == '/' ? kd_path_join(file, NULL) : kd_path_join(root, file, NULL);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") ||
                   !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".pgm") ||
                   !strcasecmp(dot, ".ppm") || !strcasecmp(dot, ".pnm"));
}

/* Sorted entries of dir: sub-folders (want_dirs) or image files. */
static kdens_status list_dir(const char *dir, bool want_dirs, strlist *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return kd_fail(KDENS_E_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    kdens_status st = KDENS_OK;
    while (st == KDENS_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *full = kd_path_join(dir, e->d_name, NULL);
        if (!full) {
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
            break;
        }
        bool keep = want_dirs ? is_dir(full) : (is_image_name(e->d_name) && !is_dir(full));
        free(full);
        if (keep && !strlist_add(out, e->d_name))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    closedir(d);
    if (st == KDENS_OK && out->n > 1)
        qsort(out->v, out->n, sizeof(char *), cmp_str);
    return st;
}

/* ---- decoding many files ------------------------------------------------------------ */

typedef struct load_job {
    const char *root;
    char **files;      /* relative to root */
    kdens_color color;
    bool resize;       /* resize to h x w; else every image must be h x w */
    int h, w;
    uint8_t *slots;    /* file i lands at i * h * w * c */
    int *heights, *widths;
    kdens_status *status;
} load_job;

/* Each image goes straight into its slot: no per-image buffers held, so a
 * folder costs its final size in memory and nothing more. */
static void decode_range(size_t begin, size_t end, void *arg)
{
    load_job *j = arg;
    int c = (int)j->color;
    size_t per = (size_t)j->h * j->w * c;
    for (size_t i = begin; i < end; i++) {
        char *path = resolve(j->root, j->files[i]);
        uint8_t *px = NULL;
        int h = 0, w = 0;
        j->status[i] = path ? kd_image_decode_file(path, j->color, &px, &h, &w) : KDENS_E_NOMEM;
        free(path);
        j->heights[i] = h;
        j->widths[i] = w;
        if (j->status[i] != KDENS_OK)
            continue;
        if (j->resize)
            kd_image_resize_nearest(px, h, w, c, j->slots + i * per, j->h, j->w);
        else if (h == j->h && w == j->w)
            memcpy(j->slots + i * per, px, per);
        else
            j->status[i] = KDENS_E_SHAPE;
        free(px);
    }
}

kdens_status kd_image_load_resized(const char *root, const char *file, kdens_color color, int h,
                                   int w, uint8_t *dst)
{
    char *path = resolve(root, file);
    if (!path)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    uint8_t *px;
    int ih, iw;
    kdens_status st = kd_image_decode_file(path, color, &px, &ih, &iw);
    free(path);
    if (st != KDENS_OK)
        return st;
    kd_image_resize_nearest(px, ih, iw, (int)color, dst, h, w);
    free(px);
    return KDENS_OK;
}

/* A lazy dataset: the file list, labels and classes, no pixels. */
static kdens_status lazy_files(const char *root, strlist *files, const int32_t *labels,
                               strlist *classes, int h, int w, kdens_color color,
                               kdens_dataset **out)
{
    kdens_dataset *ds = NULL;
    kdens_status st = kd_dataset_new(files->n, 1, 1, 1, (int)classes->n, &ds);
    if (st == KDENS_OK)
        st = kd_dataset_set_class_names(ds, (const char *const *)classes->v, (int)classes->n);
    if (st == KDENS_OK) {
        kd_store *s = ds->store;
        free(s->pixels);
        s->pixels = NULL;
        s->h = h, s->w = w, s->c = (int)color, s->color = color;
        s->root = kd_strdup(root);
        s->filenames = calloc(files->n ? files->n : 1, sizeof(char *));
        if (!s->root || !s->filenames)
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
        for (size_t i = 0; st == KDENS_OK && i < files->n; i++) {
            s->filenames[i] = files->v[i];
            files->v[i] = NULL; /* moved */
            s->labels[i] = labels[i];
        }
    }
    if (st != KDENS_OK) {
        kdens_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KDENS_OK;
}

/* Without a target size, the first image that decodes sets it. */
static kdens_status first_size(const char *root, strlist *files, kdens_color color, int *h,
                               int *w)
{
    for (size_t i = 0; i < files->n; i++) {
        char *path = resolve(root, files->v[i]);
        uint8_t *px = NULL;
        kdens_status st = path ? kd_image_decode_file(path, color, &px, h, w) : KDENS_E_NOMEM;
        free(path);
        free(px);
        if (st == KDENS_OK || st == KDENS_E_NOMEM)
            return st;
    }
    return KDENS_E_NOTFOUND; /* nothing decodes: reported below, file by file */
}

/* Decode files[i] (relative to root) with labels[i] into a dataset. */
static kdens_status load_files(const char *root, strlist *files, const int32_t *labels,
                               strlist *classes, int h, int w, kdens_color color,
                               unsigned flags, kdens_dataset **out)
{
    if (flags & KDENS_LOAD_LAZY)
        return lazy_files(root, files, labels, classes, h, w, color, out);
    size_t n = files->n;
    int c = (int)color;
    load_job j = {root, files->v, color, h > 0, h, w, NULL, NULL, NULL, NULL};
    kdens_status st = KDENS_OK;
    if (h == 0 && first_size(root, files, color, &j.h, &j.w) == KDENS_E_NOMEM)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (j.h == 0) /* nothing decodes: the loop below names the first failure */
        j.h = j.w = 1;
    size_t per = (size_t)j.h * j.w * c;
    kdens_dataset *ds = NULL;
    if (st == KDENS_OK)
        st = kd_dataset_new(n, j.h, j.w, c, (int)classes->n, &ds);
    j.status = calloc(n ? n : 1, sizeof *j.status);
    j.heights = calloc(n ? n : 1, sizeof(int));
    j.widths = calloc(n ? n : 1, sizeof(int));
    if (st == KDENS_OK && (!j.status || !j.heights || !j.widths))
        st = kd_fail(KDENS_E_NOMEM, "out of memory for %zu images", n);
    if (st == KDENS_OK) {
        j.slots = ds->store->pixels;
        kd_parallel_for(n, 4, decode_range, &j);
    }

    /* Failures in file order; decoding failures are replayed on this thread
     * for their message (messages are thread-local). */
    size_t kept = 0, skipped = 0, first_bad = n;
    for (size_t i = 0; st == KDENS_OK && i < n; i++) {
        if (j.status[i] == KDENS_OK) {
            if (kept != i) /* close the gap left by skipped images */
                memmove(j.slots + kept * per, j.slots + i * per, per);
            ds->store->labels[kept] = labels[i];
            kept++;
            continue;
        }
        if (j.status[i] == KDENS_E_SHAPE) {
            st = kd_fail(KDENS_E_SHAPE,
                         "%s/%s is %dx%d but earlier images are %dx%d; give a target size "
                         "to resize",
                         root, files->v[i], j.heights[i], j.widths[i], j.h, j.w);
            break;
        }
        if (!(flags & KDENS_LOAD_SKIP_BAD) || j.status[i] == KDENS_E_NOMEM) {
            char *path = resolve(root, files->v[i]);
            uint8_t *px = NULL;
            int ih, iw;
            st = path ? kd_image_decode_file(path, color, &px, &ih, &iw)
                      : kd_fail(KDENS_E_NOMEM, "out of memory");
            if (st == KDENS_OK) /* it decodes now: report the first status anyway */
                st = kd_fail(j.status[i], "%s: could not be decoded", path);
            free(px);
            free(path);
            break;
        }
        if (first_bad == n)
            first_bad = i;
        skipped++;
    }
    if (st == KDENS_OK && kept == 0)
        st = kd_fail(KDENS_E_NOTFOUND, "%s: no readable images", root);
    if (st == KDENS_OK)
        st = kd_dataset_set_class_names(ds, (const char *const *)classes->v, (int)classes->n);
    if (st == KDENS_OK) {
        kd_store *s = ds->store;
        s->n = kept; /* the slots beyond stay allocated, unused */
        ds->n = kept;
        s->filenames = calloc(kept ? kept : 1, sizeof(char *));
        if (!s->filenames)
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
        for (size_t i = 0, k = 0; st == KDENS_OK && i < n; i++) {
            if (j.status[i] != KDENS_OK)
                continue;
            s->filenames[k++] = files->v[i];
            files->v[i] = NULL; /* moved */
        }
        s->skipped = skipped;
        if (skipped && !(s->first_skipped = kd_strdup(files->v[first_bad])))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    if (st == KDENS_OK) {
        if (skipped)
            kd_log(KDENS_LOG_WARN, "%s: skipped %zu unreadable images, first %s", root, skipped,
                   files->v[first_bad]);
        *out = ds;
    } else {
        kdens_dataset_free(ds);
    }
    free(j.heights);
    free(j.widths);
    free(j.status);
    return st;
}

static kdens_status check_target(int h, int w, kdens_color color, unsigned flags)
{
    if ((flags & KDENS_LOAD_LAZY) && h == 0)
        return kd_fail(KDENS_E_ARG, "a lazy dataset needs a target size");
    if (color != KDENS_COLOR_GRAY && color != KDENS_COLOR_RGB)
        return kd_fail(KDENS_E_ARG, "colour mode %d is neither grey (1) nor RGB (3)", (int)color);
    if (h < 0 || w < 0 || (h == 0) != (w == 0) || h > 65536 || w > 65536)
        return kd_fail(KDENS_E_ARG, "target size %dx%d is not valid", h, w);
    return KDENS_OK;
}

kdens_status kdens_dataset_load_folder(const char *root, int height, int width,
                                       kdens_color color, unsigned flags, kdens_dataset **out)
{
    if (!root || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_status st = check_target(height, width, color, flags);
    if (st != KDENS_OK)
        return st;
    strlist classes = {0}, files = {0};
    int32_t *labels = NULL;
    size_t cap = 0;
    st = list_dir(root, true, &classes);
    if (st == KDENS_OK && classes.n == 0)
        st = kd_fail(KDENS_E_NOTFOUND, "%s: no class folders", root);
    for (size_t k = 0; st == KDENS_OK && k < classes.n; k++) {
        char *dir = kd_path_join(root, classes.v[k], NULL);
        strlist names = {0};
        st = dir ? list_dir(dir, false, &names) : kd_fail(KDENS_E_NOMEM, "out of memory");
        if (st == KDENS_OK && names.n == 0)
            st = kd_fail(KDENS_E_NOTFOUND, "%s: class folder holds no PNG or JPEG images", dir);
        for (size_t i = 0; st == KDENS_OK && i < names.n; i++) {
            char *rel = kd_path_join(classes.v[k], names.v[i], NULL);
            if (files.n == cap) {
                cap = kd_grown(cap, 256);
                if (!kd_resize(&labels, cap, sizeof *labels))
                    st = kd_fail(KDENS_E_NOMEM, "out of memory");
            }
            if (st == KDENS_OK && (!rel || !strlist_add(&files, rel)))
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
            if (st == KDENS_OK)
                labels[files.n - 1] = (int32_t)k;
            free(rel);
        }
        strlist_free(&names);
        free(dir);
    }
    if (st == KDENS_OK)
        st = load_files(root, &files, labels, &classes, height, width, color, flags, out);
    strlist_free(&classes);
    strlist_free(&files);
    free(labels);
    return st;
}

/* ---- manifests --------------------------------------------------------------------------- */

/* The reference's generate_subset.py writes classes as "<folder>_class":
 * when every row carries that suffix, it is dropped. */
static void strip_class_suffix(kd_manifest_row *rows, size_t n)
{
    const char suffix[] = "_class";
    size_t ls = sizeof suffix - 1;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(rows[i].class_name);
        if (l <= ls || strcmp(rows[i].class_name + l - ls, suffix) != 0)
            return;
    }
    for (size_t i = 0; i < n; i++)
        rows[i].class_name[strlen(rows[i].class_name) - ls] = '\0';
}

void kd_manifest_free(kd_manifest_row *rows, size_t n_rows)
{
    for (size_t i = 0; i < n_rows; i++) {
        free(rows[i].filename);
        free(rows[i].class_name);
    }
    free(rows);
}

kdens_status kd_manifest_parse(const char *name, const char *text, size_t len,
                               kd_manifest_row **rows, size_t *n_rows)
{
    kd_csv c;
    kd_csv_open(&c, text, len);
    int r = kd_csv_next(&c);
    if (r <= 0 || c.line != 1 || c.n_fields != 2 || strcmp(c.fields[0], "filename") != 0 ||
        strcmp(c.fields[1], "class") != 0) {
        kd_csv_close(&c);
        return kd_fail(KDENS_E_FORMAT, "%s: line 1 is not the header 'filename,class'", name);
    }
    kd_manifest_row *out = NULL;
    size_t n = 0, cap = 0;
    kdens_status st = KDENS_OK;
    while (st == KDENS_OK && (r = kd_csv_next(&c)) != 0) {
        if (r < 0 || c.n_fields != 2 || !*c.fields[0] || !*c.fields[1]) {
            st = kd_fail(KDENS_E_FORMAT, "%s: line %zu is not 'filename,class'%s%s", name, c.line,
                         c.error ? ": " : "", c.error ? c.error : "");
            break;
        }
        if (n == cap) {
            cap = kd_grown(cap, 256);
            if (!kd_resize(&out, cap, sizeof *out)) {
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
                break;
            }
        }
        char *file = kd_strdup(c.fields[0]), *cls = kd_strdup(c.fields[1]);
        if (!file || !cls) {
            free(file);
            free(cls);
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
            break;
        }
        out[n++] = (kd_manifest_row){file, cls, c.line};
    }
    kd_csv_close(&c);
    if (st != KDENS_OK) {
        kd_manifest_free(out, n);
        return st;
    }
    if (n == 0) {
        free(out);
        return kd_fail(KDENS_E_FORMAT, "%s: the manifest lists no images", name);
    }
    strip_class_suffix(out, n);
    *rows = out;
    *n_rows = n;
    return KDENS_OK;
}

kdens_status kd_manifest_read(const char *path, kd_manifest_row **rows, size_t *n_rows)
{
    char *text;
    size_t len;
    kdens_status st = kd_read_file(path, &text, &len);
    if (st != KDENS_OK)
        return st;
    st = kd_manifest_parse(path, text, len, rows, n_rows);
    free(text);
    return st;
}

static int find_class(const strlist *classes, const char *name)
{
    if (classes->n == 0)
        return -1;
    char **hit = bsearch(&name, classes->v, classes->n, sizeof(char *), cmp_str);
    return hit ? (int)(hit - classes->v) : -1;
}

kdens_status kdens_dataset_load_manifest(const char *csv_path, const char *data_root, int height,
                                         int width, kdens_color color, unsigned flags,
                                         kdens_dataset **out)
{
    if (!csv_path || !data_root || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_status st = check_target(height, width, color, flags);
    if (st != KDENS_OK)
        return st;
    kd_manifest_row *rows = NULL;
    size_t n = 0;
    st = kd_manifest_read(csv_path, &rows, &n);
    strlist classes = {0}, files = {0};
    int32_t *labels = NULL;
    if (st == KDENS_OK && is_dir(data_root))
        st = list_dir(data_root, true, &classes);
    if (st == KDENS_OK && classes.n == 0) { /* no class folders: the names used, sorted */
        for (size_t i = 0; st == KDENS_OK && i < n; i++)
            if (!strlist_add(&classes, rows[i].class_name))
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
        if (classes.n > 1)
            qsort(classes.v, classes.n, sizeof(char *), cmp_str);
        size_t u = 0;
        for (size_t i = 0; i < classes.n; i++) {
            if (u > 0 && strcmp(classes.v[u - 1], classes.v[i]) == 0)
                free(classes.v[i]);
            else
                classes.v[u++] = classes.v[i];
        }
        classes.n = u;
    }
    if (st == KDENS_OK && !(labels = malloc(sizeof(int32_t) * n)))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t i = 0; st == KDENS_OK && i < n; i++) {
        int k = find_class(&classes, rows[i].class_name);
        if (k < 0)
            st = kd_fail(KDENS_E_NOTFOUND, "%s: line %zu: class '%s' is not a class of %s",
                         csv_path, rows[i].line, rows[i].class_name, data_root);
        else if (!strlist_add(&files, rows[i].filename))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
        else
            labels[i] = k;
    }
    kd_manifest_free(rows, n);
    if (st == KDENS_OK)
        st = load_files(data_root, &files, labels, &classes, height, width, color, flags, out);
    strlist_free(&classes);
    strlist_free(&files);
    free(labels);
    return st;
}

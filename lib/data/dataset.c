/* The dataset handle: a shared store of pixels and labels, and index views
 * (splits and subsets) over it. */
#include "data.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void store_release(kd_store *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    kd_free_aligned(s->pixels);
    free(s->labels);
    if (s->filenames)
        for (size_t i = 0; i < s->n; i++)
            free(s->filenames[i]);
    free(s->filenames);
    if (s->class_names)
        for (int i = 0; i < s->classes; i++)
            free(s->class_names[i]);
    free(s->class_names);
    free(s->first_skipped);
    free(s->root);
    free(s);
}

void kdens_dataset_free(kdens_dataset *ds)
{
    if (!ds)
        return;
    store_release(ds->store);
    free(ds->index);
    free(ds);
}

kdens_status kd_dataset_set_class_names(kdens_dataset *ds, const char *const *names, int n)
{
    kd_store *s = ds->store;
    char **copy = calloc((size_t)(n > 0 ? n : 1), sizeof *copy);
    if (!copy)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        if (!(copy[i] = kd_strdup(names ? names[i] : num))) {
            while (i-- > 0)
                free(copy[i]);
            free(copy);
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        }
    }
    if (s->class_names)
        for (int i = 0; i < s->classes; i++)
            free(s->class_names[i]);
    free(s->class_names);
    s->class_names = copy;
    s->classes = n;
    return KDENS_OK;
}

kdens_status kd_dataset_new(size_t n, int h, int w, int c, int classes, kdens_dataset **out)
{
    kdens_dataset *ds = calloc(1, sizeof *ds);
    kd_store *s = calloc(1, sizeof *s);
    size_t bytes = n * (size_t)h * w * c;
    if (ds && s) {
        ds->store = s;
        s->refs = 1;
        s->pixels = kd_alloc_aligned(bytes ? bytes : 1);
        s->labels = malloc(sizeof(int32_t) * (n ? n : 1));
    }
    if (!ds || !s || !s->pixels || !s->labels) {
        if (ds)
            kdens_dataset_free(ds);
        else
            free(s);
        return kd_fail(KDENS_E_NOMEM, "out of memory for %zu images of %dx%dx%d", n, h, w, c);
    }
    s->n = n;
    s->h = h;
    s->w = w;
    s->c = c;
    ds->n = n;
    kdens_status st = kd_dataset_set_class_names(ds, NULL, classes);
    if (st != KDENS_OK) {
        kdens_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KDENS_OK;
}

kdens_status kd_dataset_name_by_index(kdens_dataset *ds)
{
    kd_store *s = ds->store;
    s->filenames = calloc(s->n ? s->n : 1, sizeof(char *));
    if (!s->filenames)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        char num[24];
        snprintf(num, sizeof num, "%zu", i);
        if (!(s->filenames[i] = kd_strdup(num)))
            return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    return KDENS_OK;
}

size_t kdens_dataset_count(const kdens_dataset *ds) { return ds ? ds->n : 0; }

kdens_status kdens_dataset_shape(const kdens_dataset *ds, int *height, int *width, int *channels)
{
    if (!ds)
        return kd_fail(KDENS_E_ARG, "NULL dataset");
    if (height)
        *height = ds->store->h;
    if (width)
        *width = ds->store->w;
    if (channels)
        *channels = ds->store->c;
    return KDENS_OK;
}

int kdens_dataset_num_classes(const kdens_dataset *ds) { return ds ? ds->store->classes : 0; }

const char *kdens_dataset_class_name(const kdens_dataset *ds, int i)
{
    if (!ds || i < 0 || i >= ds->store->classes)
        return NULL;
    return ds->store->class_names[i];
}

kdens_status kdens_dataset_get(const kdens_dataset *ds, size_t i, const uint8_t **pixels,
                               int32_t *label, const char **filename)
{
    if (!ds)
        return kd_fail(KDENS_E_ARG, "NULL dataset");
    if (i >= ds->n)
        return kd_fail(KDENS_E_ARG, "sample %zu is out of range (%zu samples)", i, ds->n);
    const kd_store *s = ds->store;
    size_t k = kd_dataset_at(ds, i);
    if (pixels)
        *pixels = s->pixels ? s->pixels + k * (size_t)s->h * s->w * s->c : NULL;
    if (label)
        *label = s->labels[k];
    if (filename)
        *filename = s->filenames ? s->filenames[k] : NULL;
    return KDENS_OK;
}

kdens_status kd_dataset_read(const kdens_dataset *ds, size_t i, uint8_t *dst)
{
    const kd_store *s = ds->store;
    size_t k = kd_dataset_at(ds, i), per = (size_t)s->h * s->w * s->c;
    if (s->pixels) {
        memcpy(dst, s->pixels + k * per, per);
        return KDENS_OK;
    }
    return kd_image_load_resized(s->root, s->filenames[k], s->color, s->h, s->w, dst);
}

kdens_status kdens_dataset_read(const kdens_dataset *ds, size_t i, uint8_t *dst)
{
    if (!ds || !dst)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (i >= ds->n)
        return kd_fail(KDENS_E_ARG, "sample %zu is out of range (%zu samples)", i, ds->n);
    return kd_dataset_read(ds, i, dst);
}

size_t kdens_dataset_skipped(const kdens_dataset *ds, const char **first)
{
    if (first)
        *first = ds ? ds->store->first_skipped : NULL;
    return ds ? ds->store->skipped : 0;
}

/* ---- views -------------------------------------------------------------------- */

/* A view of `ds` holding the samples at positions pos[0..n) of ds. */
static kdens_status make_view(const kdens_dataset *ds, const size_t *pos, size_t n,
                              kdens_dataset **out)
{
    kdens_dataset *v = calloc(1, sizeof *v);
    size_t *index = malloc(sizeof(size_t) * (n ? n : 1));
    if (!v || !index) {
        free(v);
        free(index);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        index[i] = kd_dataset_at(ds, pos[i]);
    v->store = ds->store;
    atomic_fetch_add_explicit(&ds->store->refs, 1, memory_order_relaxed);
    v->n = n;
    v->index = index;
    *out = v;
    return KDENS_OK;
}

/* Fisher-Yates on positions [0, n) from the seed. */
static void shuffle(size_t *pos, size_t n, kd_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)kd_rng_below(rng, i), t = pos[i - 1];
        pos[i - 1] = pos[j];
        pos[j] = t;
    }
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

kdens_status kdens_dataset_split(const kdens_dataset *ds, double val_fraction, uint64_t seed,
                                 kdens_dataset **train, kdens_dataset **val)
{
    if (!ds || !train || !val)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (!(val_fraction > 0 && val_fraction < 1))
        return kd_fail(KDENS_E_ARG, "validation fraction %g is outside (0, 1)", val_fraction);
    int classes = ds->store->classes;
    size_t n = ds->n;
    size_t *by_class = malloc(sizeof(size_t) * (n ? n : 1));
    size_t *start = calloc((size_t)classes + 1, sizeof(size_t));
    bool *to_val = calloc(n ? n : 1, sizeof(bool));
    size_t *tr = malloc(sizeof(size_t) * (n ? n : 1)), *va = malloc(sizeof(size_t) * (n ? n : 1));
    kdens_status st = KDENS_OK;
    if (!by_class || !start || !to_val || !tr || !va) {
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
        goto done;
    }
    /* positions grouped by class (counting sort keeps the order) */
    for (size_t i = 0; i < n; i++)
        start[ds->store->labels[kd_dataset_at(ds, i)] + 1]++;
    for (int k = 0; k < classes; k++)
        start[k + 1] += start[k];
    {
        size_t *fill = calloc((size_t)classes, sizeof(size_t));
        if (!fill) {
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            int k = ds->store->labels[kd_dataset_at(ds, i)];
            by_class[start[k] + fill[k]++] = i;
        }
        free(fill);
    }
    kd_rng rng;
    kd_rng_seed(&rng, seed);
    for (int k = 0; k < classes; k++) {
        size_t size = start[k + 1] - start[k];
        size_t take = (size_t)(val_fraction * (double)size + 0.5);
        shuffle(by_class + start[k], size, &rng);
        for (size_t i = 0; i < take; i++)
            to_val[by_class[start[k] + i]] = true;
    }
    size_t nt = 0, nv = 0;
    for (size_t i = 0; i < n; i++) {
        if (to_val[i])
            va[nv++] = i;
        else
            tr[nt++] = i;
    }
    kdens_dataset *t = NULL, *v = NULL;
    st = make_view(ds, tr, nt, &t);
    if (st == KDENS_OK)
        st = make_view(ds, va, nv, &v);
    if (st != KDENS_OK) {
        kdens_dataset_free(t);
        goto done;
    }
    *train = t;
    *val = v;
done:
    free(by_class);
    free(start);
    free(to_val);
    free(tr);
    free(va);
    return st;
}

kdens_status kdens_dataset_subset(const kdens_dataset *ds, double fraction, size_t count,
                                  uint64_t seed, kdens_dataset **out)
{
    if (!ds || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (count > ds->n)
        return kd_fail(KDENS_E_ARG, "subset of %zu samples asked from %zu", count, ds->n);
    if (count == 0 && !(fraction > 0 && fraction <= 1))
        return kd_fail(KDENS_E_ARG, "subset fraction %g is outside (0, 1]", fraction);
    size_t *pos = malloc(sizeof(size_t) * (ds->n ? ds->n : 1));
    if (!pos)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kd_rng rng;
    kd_rng_seed(&rng, seed);
    size_t n = 0;
    if (count > 0) { /* exactly count, in dataset order */
        for (size_t i = 0; i < ds->n; i++)
            pos[i] = i;
        shuffle(pos, ds->n, &rng);
        n = count;
        qsort(pos, n, sizeof *pos, cmp_size);
    } else { /* each kept with probability fraction, as the reference */
        for (size_t i = 0; i < ds->n; i++)
            if (kd_rng_uniform(&rng) < fraction)
                pos[n++] = i;
    }
    kdens_status st = make_view(ds, pos, n, out);
    free(pos);
    return st;
}

/* ---- manifests out ---------------------------------------------------------------- */

kdens_status kdens_dataset_write_manifest(const kdens_dataset *ds, const char *path)
{
    if (!ds || !path)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    const kd_store *s = ds->store;
    if (!s->filenames)
        return kd_fail(KDENS_E_STATE, "%s: the dataset has no file names (IDX or CIFAR)", path);
    kd_buf b = {0};
    kd_buf_printf(&b, "filename,class\n");
    for (size_t i = 0; i < ds->n; i++) {
        size_t k = kd_dataset_at(ds, i);
        kd_csv_put_field(&b, s->filenames[k]);
        kd_buf_put(&b, ",", 1);
        kd_csv_put_field(&b, s->class_names[s->labels[k]]);
        kd_buf_put(&b, "\n", 1);
    }
    kdens_status st = b.failed ? kd_fail(KDENS_E_NOMEM, "%s: out of memory", path)
                               : kd_write_file_atomic(path, b.data, b.len);
    kd_buf_free(&b);
    return st;
}

/* ---- manifests in, as views of a parent ---------------------------------------------- */

static const kd_store *sort_store; /* qsort has no context argument */

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(sort_store->filenames[*(const size_t *)a],
                  sort_store->filenames[*(const size_t *)b]);
}

kdens_status kd_dataset_store_view(const kdens_dataset *ds, const uint64_t *store_index,
                                   size_t n, kdens_dataset **out)
{
    size_t *pos = malloc(sizeof(size_t) * (n ? n : 1));
    if (!pos)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_status st = KDENS_OK;
    for (size_t i = 0; i < n && st == KDENS_OK; i++) {
        if (store_index[i] >= ds->store->n)
            st = kd_fail(KDENS_E_FORMAT, "sample %llu of a subset is outside the %zu samples "
                         "of the dataset", (unsigned long long)store_index[i], ds->store->n);
        pos[i] = (size_t)store_index[i];
    }
    if (st == KDENS_OK) {
        kdens_dataset whole = {ds->store, ds->store->n, NULL};
        st = make_view(&whole, pos, n, out);
    }
    free(pos);
    return st;
}

kdens_status kdens_dataset_share(kdens_comm *comm, const kdens_dataset *loaded,
                                 const kdens_dataset *view, kdens_dataset **out)
{
    if (!loaded || !out || (kdens_comm_rank(comm) == 0 && !view))
        return kd_fail(KDENS_E_ARG, "NULL argument");
    *out = NULL;
    kdens_status st = KDENS_OK;
    kd_buf msg = {0}; /* u64 samples loaded, u64 count, the store positions */
    if (kdens_comm_rank(comm) == 0) {
        if (view->store != loaded->store)
            st = kd_fail(KDENS_E_ARG, "the view is not of the loaded data");
        kd_buf_u64(&msg, (uint64_t)loaded->store->n);
        kd_buf_u64(&msg, (uint64_t)view->n);
        for (size_t i = 0; i < view->n; i++)
            kd_buf_u64(&msg, (uint64_t)kd_dataset_at(view, i));
        if (st == KDENS_OK && msg.failed)
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    st = kdens_comm_agree(comm, st);
    if (st == KDENS_OK)
        st = kd_comm_broadcast_blob(comm, &msg, 0);
    uint64_t total = 0, n = 0;
    if (st == KDENS_OK && msg.len >= 16) {
        memcpy(&total, msg.data, 8);
        memcpy(&n, msg.data + 8, 8);
    }
    if (st == KDENS_OK && (msg.len < 16 || msg.len - 16 != n * 8))
        st = kd_fail(KDENS_E_IO, "a malformed dataset view from rank 0");
    else if (st == KDENS_OK && total != loaded->store->n)
        st = kd_fail(KDENS_E_STATE, "rank 0 loaded %llu samples, this rank %zu: the ranks must "
                     "load the same data", (unsigned long long)total, loaded->store->n);
    uint64_t *pos = NULL;
    if (st == KDENS_OK && !(pos = malloc(sizeof(uint64_t) * (n ? n : 1))))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (st == KDENS_OK) {
        memcpy(pos, msg.data + 16, sizeof(uint64_t) * n);
        st = kd_dataset_store_view(loaded, pos, (size_t)n, out);
    }
    free(pos);
    kd_buf_free(&msg);
    return kdens_comm_agree(comm, st);
}

kdens_status kdens_dataset_select(const kdens_dataset *parent, const char *csv_path,
                                  kdens_dataset **out)
{
    if (!parent || !csv_path || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    const kd_store *s = parent->store;
    if (!s->filenames)
        return kd_fail(KDENS_E_STATE, "the dataset has no file names");
    kd_manifest_row *rows = NULL;
    size_t n = 0;
    kdens_status st = kd_manifest_read(csv_path, &rows, &n);
    if (st != KDENS_OK)
        return st;
    /* the parent's store indices sorted by file name, for binary search */
    size_t *byname = malloc(sizeof(size_t) * (parent->n ? parent->n : 1));
    size_t *pos = malloc(sizeof(size_t) * n);
    if (!byname || !pos)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (st == KDENS_OK) {
        for (size_t i = 0; i < parent->n; i++)
            byname[i] = kd_dataset_at(parent, i);
        static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&sort_mu);
        sort_store = s;
        if (parent->n > 1)
            qsort(byname, parent->n, sizeof(size_t), cmp_by_name);
        pthread_mutex_unlock(&sort_mu);
    }
    for (size_t r = 0; st == KDENS_OK && r < n; r++) {
        size_t lo = 0, hi = parent->n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (strcmp(s->filenames[byname[mid]], rows[r].filename) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == parent->n || strcmp(s->filenames[byname[lo]], rows[r].filename) != 0) {
            st = kd_fail(KDENS_E_NOTFOUND, "%s: line %zu: '%s' is not in the dataset",
                         csv_path, rows[r].line, rows[r].filename);
            break;
        }
        size_t k = byname[lo];
        if (strcmp(s->class_names[s->labels[k]], rows[r].class_name) != 0) {
            st = kd_fail(KDENS_E_FORMAT, "%s: line %zu: '%s' is of class '%s', not '%s'",
                         csv_path, rows[r].line, rows[r].filename, s->class_names[s->labels[k]],
                         rows[r].class_name);
            break;
        }
        pos[r] = k;
    }
    kd_manifest_free(rows, n);
    if (st == KDENS_OK) { /* pos holds store indices: a view of the whole store */
        kdens_dataset whole = {parent->store, s->n, NULL};
        st = make_view(&whole, pos, n, out);
    }
    free(byname);
    free(pos);
    return st;
}

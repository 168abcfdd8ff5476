/* Named dataset presets: the official files of MNIST, Fashion-MNIST, EMNIST
 * (balanced) and CIFAR-10/100, from a folder the caller names or from the
 * system's data folder. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set by the build (make DATASETS_DIR=...): where the system's data set
 * packages install (Debian's dataset-fashion-mnist: fashion-mnist/). */
#ifndef KDENS_DATASETS_DIR
#define KDENS_DATASETS_DIR "/usr/share/datasets"
#endif

/* Each preset's folder under KDENS_DATASETS_DIR. */
static const struct {
    const char *name, *folder;
} preset_folders[] = {
    {"mnist", "mnist"},     {"fmnist", "fashion-mnist"}, {"emnist", "emnist"},
    {"cifar10", "cifar-10"}, {"cifar100", "cifar-100"},
};

static const char *const fmnist_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                             "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                             "Bag",         "Ankle boot"};
static const char *const cifar10_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};
/* EMNIST balanced: digits, upper case, and the lower-case letters that do
 * not look like their capitals. */
static const char emnist_balanced[48] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt";

/* dir/name, or dir/name.gz when only that exists. */
static char *find_file(const char *dir, const char *name)
{
    char *p = kd_path_join(dir, name, NULL);
    if (p && access(p, R_OK) != 0) {
        free(p);
        if ((p = kd_path_fmt(dir, "%s.gz", name)) && access(p, R_OK) != 0) {
            free(p);
            p = NULL;
        }
    }
    return p;
}

static kdens_status load_idx_pair(const char *dir, const char *images, const char *labels,
                                  kdens_dataset **out)
{
    char *ip = find_file(dir, images), *lp = find_file(dir, labels);
    kdens_status st;
    if (!ip || !lp)
        st = kd_fail(KDENS_E_NOTFOUND, "%s: %s[.gz] or %s[.gz] is missing", dir, images, labels);
    else
        st = kdens_dataset_load_idx(ip, lp, out);
    free(ip);
    free(lp);
    return st;
}

/* EMNIST stores images transposed relative to MNIST; make them upright. */
static void transpose_images(kdens_dataset *ds)
{
    kd_store *s = ds->store;
    int n = s->h; /* square */
    uint8_t tmp[128 * 128];
    if (s->h != s->w || n > 128)
        return;
    for (size_t i = 0; i < s->n; i++) {
        uint8_t *img = s->pixels + i * (size_t)n * n;
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
                tmp[x * n + y] = img[y * n + x];
        memcpy(img, tmp, (size_t)n * n);
    }
}

static kdens_status load_mnist_like(const char *name, const char *dir, const char *prefix,
                                    bool test, kdens_dataset **out)
{
    char images[128], labels[128];
    snprintf(images, sizeof images, "%s%s-images-idx3-ubyte", prefix, test ? "t10k" : "train");
    snprintf(labels, sizeof labels, "%s%s-labels-idx1-ubyte", prefix, test ? "t10k" : "train");
    if (*prefix) { /* EMNIST names its parts train/test */
        snprintf(images, sizeof images, "%s%s-images-idx3-ubyte", prefix, test ? "test" : "train");
        snprintf(labels, sizeof labels, "%s%s-labels-idx1-ubyte", prefix, test ? "test" : "train");
    }
    kdens_dataset *ds = NULL;
    kdens_status st = load_idx_pair(dir, images, labels, &ds);
    if (st != KDENS_OK)
        return st;
    if (strcmp(name, "fmnist") == 0) {
        st = kd_dataset_set_class_names(ds, fmnist_names, 10);
    } else if (strcmp(name, "emnist") == 0) {
        const char *names[47];
        char letters[47][2];
        for (int i = 0; i < 47; i++) {
            letters[i][0] = emnist_balanced[i];
            letters[i][1] = '\0';
            names[i] = letters[i];
        }
        transpose_images(ds);
        st = kd_dataset_set_class_names(ds, names, 47);
    } else {
        st = kd_dataset_set_class_names(ds, NULL, 10);
    }
    if (st == KDENS_OK && ds->store->classes > 0) {
        for (size_t i = 0; i < ds->n; i++)
            if (ds->store->labels[i] >= ds->store->classes) {
                st = kd_fail(KDENS_E_FORMAT, "%s: label %d is outside the preset's %d classes",
                             dir, ds->store->labels[i], ds->store->classes);
                break;
            }
    }
    if (st != KDENS_OK) {
        kdens_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KDENS_OK;
}

static kdens_status load_cifar_part(const char *dir, bool hundred, bool test, kdens_dataset **out)
{
    char *paths[5] = {0};
    int n = 0;
    kdens_status st = KDENS_OK;
    if (hundred) {
        paths[n++] = find_file(dir, test ? "test.bin" : "train.bin");
    } else if (test) {
        paths[n++] = find_file(dir, "test_batch.bin");
    } else {
        for (int i = 1; i <= 5; i++) {
            char name[32];
            snprintf(name, sizeof name, "data_batch_%d.bin", i);
            paths[n++] = find_file(dir, name);
        }
    }
    for (int i = 0; i < n; i++)
        if (!paths[i])
            st = kd_fail(KDENS_E_NOTFOUND, "%s: the CIFAR-%s %s file%s %s[.gz] %s missing", dir,
                         hundred ? "100" : "10", test ? "test" : "training",
                         hundred || test ? "" : "s",
                         hundred ? (test ? "test.bin" : "train.bin")
                                 : (test ? "test_batch.bin" : "data_batch_1.bin .. _5.bin"),
                         hundred || test ? "is" : "are");
    if (st == KDENS_OK)
        st = kdens_dataset_load_cifar((const char *const *)paths, n,
                                      hundred ? KDENS_CIFAR100_FINE : KDENS_CIFAR10, out);
    if (st == KDENS_OK && !hundred && strcmp(kdens_dataset_class_name(*out, 0), "0") == 0)
        st = kd_dataset_set_class_names(*out, cifar10_names, 10);
    for (int i = 0; i < n; i++)
        free(paths[i]);
    return st;
}

kdens_status kdens_dataset_preset(const char *name, const char *path, kdens_dataset **train,
                                  kdens_dataset **test)
{
    if (!name || (!train && !test))
        return kd_fail(KDENS_E_ARG, "NULL argument");
    bool mnist = !strcmp(name, "mnist"), fmnist = !strcmp(name, "fmnist"),
         emnist = !strcmp(name, "emnist"), c10 = !strcmp(name, "cifar10"),
         c100 = !strcmp(name, "cifar100");
    if (!mnist && !fmnist && !emnist && !c10 && !c100)
        return kd_fail(KDENS_E_NOTFOUND,
                       "unknown dataset preset '%s' (mnist, fmnist, emnist, cifar10, cifar100)",
                       name);
    char *system_dir = NULL;
    if (!path) {
        int i = kd_table_find(preset_folders, KD_ARRAY_LEN(preset_folders),
                              sizeof preset_folders[0], name);
        if (!(system_dir = kd_path_join(KDENS_DATASETS_DIR, preset_folders[i].folder, NULL)))
            return KDENS_E_NOMEM;
    }
    const char *dir = path ? path : system_dir;
    kdens_dataset *parts[2] = {NULL, NULL};
    kdens_status st = KDENS_OK;
    for (int t = 0; t < 2 && st == KDENS_OK; t++) {
        if (!(t ? test : train))
            continue;
        if (c10 || c100)
            st = load_cifar_part(dir, c100, t == 1, &parts[t]);
        else
            st = load_mnist_like(name, dir, emnist ? "emnist-balanced-" : "", t == 1, &parts[t]);
    }
    free(system_dir);
    if (st != KDENS_OK) {
        kdens_dataset_free(parts[0]);
        kdens_dataset_free(parts[1]);
        return st;
    }
    if (train)
        *train = parts[0];
    if (test)
        *test = parts[1];
    return KDENS_OK;
}

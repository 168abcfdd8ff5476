/* train_fmnist: trains one network on the real Fashion-MNIST through the
 * public API and saves it -- the training step of libkdens in 150 lines.
 *
 *   train_fmnist [--arch NAME] [--epochs E] [--batch B] [--lr LR] [--seed S]
 *                [--data DIR] [--out FILE.kdm]
 *
 * Reads the IDX files that Debian's dataset-fashion-mnist installs. */
#define _POSIX_C_SOURCE 200809L
#include <kdens.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define CLASSES 10

/* An IDX file (gzip or plain): images (magic 2051) or labels (2049). */
static unsigned char *read_idx(const char *path, unsigned magic, size_t *count)
{
    gzFile f = gzopen(path, "rb");
    unsigned char hdr[16];
    int hlen = magic == 2051 ? 16 : 8;
    if (!f || gzread(f, hdr, (unsigned)hlen) != hlen) {
        fprintf(stderr, "train_fmnist: cannot read %s\n", path);
        if (f)
            gzclose(f);
        return NULL;
    }
    unsigned got = (unsigned)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
    size_t n = (size_t)hdr[4] << 24 | hdr[5] << 16 | hdr[6] << 8 | hdr[7];
    size_t per = magic == 2051 ? 28 * 28 : 1;
    if (got != magic || n == 0 || n > 1000000 ||
        (magic == 2051 && (hdr[11] != 28 || hdr[15] != 28))) {
        fprintf(stderr, "train_fmnist: %s is not a 28x28 IDX file of the expected kind\n", path);
        gzclose(f);
        return NULL;
    }
    unsigned char *data = malloc(n * per);
    if (!data || gzread(f, data, (unsigned)(n * per)) != (int)(n * per)) {
        fprintf(stderr, "train_fmnist: %s is truncated\n", path);
        free(data);
        gzclose(f);
        return NULL;
    }
    gzclose(f);
    *count = n;
    return data;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float accuracy(kdens_model *m, const unsigned char *images, const unsigned char *labels,
                      size_t n)
{
    float *probs = malloc(sizeof(float) * n * CLASSES);
    if (!probs || kdens_model_predict_u8(m, images, n, probs) != KDENS_OK) {
        free(probs);
        return -1;
    }
    size_t right = 0;
    for (size_t i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < CLASSES; k++)
            if (probs[i * CLASSES + k] > probs[i * CLASSES + best])
                best = k;
        right += best == labels[i];
    }
    free(probs);
    return (float)right / (float)n;
}

int main(int argc, char **argv)
{
    const char *arch = "test", *dir = "/usr/share/datasets/fashion-mnist", *out = NULL;
    int epochs = 5, batch = 128;
    float lr = 1e-3f;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--arch") && v) arch = v, i++;
        else if (!strcmp(a, "--epochs") && v) epochs = atoi(v), i++;
        else if (!strcmp(a, "--batch") && v) batch = atoi(v), i++;
        else if (!strcmp(a, "--lr") && v) lr = strtof(v, NULL), i++;
        else if (!strcmp(a, "--seed") && v) seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--data") && v) dir = v, i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else {
            fprintf(stderr, "usage: train_fmnist [--arch NAME] [--epochs E] [--batch B] "
                            "[--lr LR] [--seed S] [--data DIR] [--out FILE.kdm]\n");
            return 2;
        }
    }
    char path[4096];
    size_t n_train, n_test, n_l1, n_l2;
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    unsigned char *train_x = read_idx(path, 2051, &n_train);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", dir);
    unsigned char *train_y = read_idx(path, 2049, &n_l1);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
    unsigned char *test_x = read_idx(path, 2051, &n_test);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    unsigned char *test_y = read_idx(path, 2049, &n_l2);
    if (!train_x || !train_y || !test_x || !test_y || n_l1 != n_train || n_l2 != n_test || batch < 1)
        return 1;

    kdens_model *m;
    kdens_optimizer *opt;
    if (kdens_model_create(arch, 28, 28, 1, CLASSES, seed, &m) != KDENS_OK ||
        kdens_optimizer_create(KDENS_OPT_ADAM, lr, &opt) != KDENS_OK) {
        fprintf(stderr, "train_fmnist: %s\n", kdens_errmsg());
        return 1;
    }
    printf("%s: %zu parameters, %zu training and %zu test images, %d threads\n", arch,
           kdens_model_param_count(m), n_train, n_test, kdens_get_num_threads());
    size_t *order = malloc(sizeof(size_t) * n_train);
    float *x = malloc(sizeof(float) * (size_t)batch * 784);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    for (size_t i = 0; i < n_train; i++)
        order[i] = i;
    uint64_t rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int e = 1; e <= epochs; e++) {
        for (size_t i = n_train - 1; i > 0; i--) { /* a fresh shuffle per epoch */
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t j = (size_t)((rng >> 33) % (i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        kdens_model_set_training(m, 1);
        double t0 = now(), loss_sum = 0;
        size_t right = 0, seen = 0;
        for (size_t b = 0; b < n_train; b += (size_t)batch) {
            size_t nb = n_train - b < (size_t)batch ? n_train - b : (size_t)batch;
            for (size_t i = 0; i < nb; i++) {
                for (int p = 0; p < 784; p++)
                    x[i * 784 + p] = train_x[order[b + i] * 784 + p] / 255.0f;
                y[i] = train_y[order[b + i]];
            }
            float loss;
            size_t correct;
            if (kdens_model_train_step(m, opt, x, nb, y, NULL, &loss, &correct) != KDENS_OK) {
                fprintf(stderr, "train_fmnist: %s\n", kdens_errmsg());
                return 1;
            }
            loss_sum += loss * nb, right += correct, seen += nb;
        }
        double secs = now() - t0;
        kdens_model_set_training(m, 0);
        printf("epoch %d: loss %.4f, train accuracy %.4f, test accuracy %.4f, %.0f images/s\n", e,
               loss_sum / seen, (double)right / seen, accuracy(m, test_x, test_y, n_test),
               seen / secs);
        fflush(stdout);
    }
    if (out) {
        kdens_model_set_meta(m, "dataset", "fmnist");
        if (kdens_model_save(m, out) != KDENS_OK) {
            fprintf(stderr, "train_fmnist: %s\n", kdens_errmsg());
            return 1;
        }
        printf("saved %s\n", out);
    }
    free(order), free(x), free(y), free(train_x), free(train_y), free(test_x), free(test_y);
    kdens_optimizer_free(opt);
    kdens_model_free(m);
    return 0;
}

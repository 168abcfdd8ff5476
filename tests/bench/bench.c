/* make bench: training and inference throughput of the reference networks on
 * Fashion-MNIST (28x28x1, batch 128, Adam, all cores), and the convolution
 * kernels' GFLOP/s.  Compare side by side with ../shared/bench/peer_torch.py.
 * Built with ONNX=1, inference of exported models in ONNX Runtime beside
 * libkdens (the onnx section). */
#include "kdens.h"
#include "tensor/tensor.h"
#ifdef KDENS_WITH_ONNX
#include "kdens_onnx.h" /* make bench ONNX=1 */
#endif

#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cblas.h>
char *openblas_get_corename(void);
void openblas_set_num_threads(int num_threads);

#define FMNIST "/usr/share/datasets/fashion-mnist/"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The first n images of the Fashion-MNIST training set (random if absent). */
static float *load_images(size_t n, int32_t **labels)
{
    float *x = malloc(sizeof(float) * n * 784);
    *labels = malloc(sizeof(int32_t) * n);
    gzFile fi = gzopen(FMNIST "train-images-idx3-ubyte.gz", "rb");
    gzFile fl = gzopen(FMNIST "train-labels-idx1-ubyte.gz", "rb");
    unsigned char hdr[16], *buf = malloc(n * 784);
    bool real = fi && fl && gzread(fi, hdr, 16) == 16 && gzread(fi, buf, (unsigned)(n * 784)) ==
                                                             (int)(n * 784);
    for (size_t i = 0; i < n * 784; i++)
        x[i] = real ? buf[i] / 255.0f : (float)((i * 2654435761u) % 256) / 255.0f;
    if (real && gzread(fl, hdr, 8) == 8 && gzread(fl, buf, (unsigned)n) == (int)n)
        for (size_t i = 0; i < n; i++)
            (*labels)[i] = buf[i];
    else
        for (size_t i = 0; i < n; i++)
            (*labels)[i] = (int32_t)(i % 10);
    if (fi)
        gzclose(fi);
    if (fl)
        gzclose(fl);
    free(buf);
    fprintf(stderr, "bench: %s data\n", real ? "Fashion-MNIST" : "synthetic");
    return x;
}

static double median3(const double *v)
{
    double a = v[0], b = v[1], c = v[2];
    return a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
}

static void check(kdens_status st, const char *what)
{
    if (st != KDENS_OK) {
        fprintf(stderr, "bench: %s: %s\n", what, kdens_errmsg());
        exit(1);
    }
}

static void bench_model(const char *arch, const float *x, const int32_t *y, size_t n_images,
                        int steps)
{
    const int batch = 128;
    kdens_model *m;
    kdens_optimizer *o;
    check(kdens_model_create(arch, 28, 28, 1, 10, 1, &m), "create");
    check(kdens_optimizer_create(KDENS_OPT_ADAM, 1e-3f, &o), "optimizer");
    check(kdens_model_set_training(m, 1), "mode");
    size_t batches = n_images / batch;
    for (int i = 0; i < 5; i++)
        check(kdens_model_train_step(m, o, x + (i % batches) * batch * 784, batch,
                                     y + (i % batches) * batch, NULL, NULL, NULL),
              "train");
    /* the median of three windows: the machine is shared and noisy */
    double rates[3];
    for (int w = 0; w < 3; w++) {
        double t = now();
        for (int i = 0; i < steps; i++)
            check(kdens_model_train_step(m, o, x + (i % batches) * batch * 784, batch,
                                         y + (i % batches) * batch, NULL, NULL, NULL),
                  "train");
        rates[w] = steps * batch / (now() - t);
    }
    double train = median3(rates);
    check(kdens_model_set_training(m, 0), "mode");
    float *probs = malloc(sizeof(float) * 1000 * 10);
    check(kdens_model_predict(m, x, 1000, probs), "predict");
    for (int w = 0; w < 3; w++) {
        double t = now();
        check(kdens_model_predict(m, x, 1000, probs), "predict");
        rates[w] = 1000 / (now() - t);
    }
    double infer = median3(rates);
    check(kdens_model_predict(m, x, 1, probs), "predict");
    double t = now();
    for (int i = 0; i < 200; i++)
        check(kdens_model_predict(m, x, 1, probs), "predict");
    double latency = (now() - t) / 200 * 1e6;
    printf("bench %s train_img_per_s=%.0f infer_img_per_s=%.0f\n", arch, train, infer);
    printf("bench %s batch1_latency_us=%.0f\n", arch, latency);
    fflush(stdout);
    free(probs);
    kdens_optimizer_free(o);
    kdens_model_free(m);
}

/* The machine's sgemm ceiling beside the library's GEMM: square products
 * on all threads, GFLOP/s.  OpenBLAS runs the kernel it picks for this
 * processor (openblas_get_corename); to measure the best one it has, run
 * this section with OPENBLAS_CORETYPE set for that command alone. */
static void bench_gemm(void)
{
    printf("bench gemm openblas_core=%s\n", openblas_get_corename());
    openblas_set_num_threads(kdens_get_num_threads());
    for (int size = 256; size <= 2048; size *= 2) {
        size_t len = (size_t)size * size;
        float *a = malloc(4 * len), *b = malloc(4 * len), *c = calloc(len, 4);
        for (size_t i = 0; i < len; i++)
            a[i] = (float)(i % 13) * 0.1f, b[i] = (float)(i % 7) * 0.1f;
        double flops = 2.0 * size * size * size, rates[2][3];
        int reps = (int)(4e9 / flops) + 1;
        for (int lib = 0; lib < 2; lib++)
            for (int w = 0; w < 3; w++) {
                double t = now();
                for (int r = 0; r < reps; r++) {
                    if (lib == 0)
                        kd_gemm(false, false, size, size, size, 1.0f, a, size, b, size, 0.0f, c,
                                size);
                    else
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size,
                                    1.0f, a, size, b, size, 0.0f, c, size);
                }
                rates[lib][w] = flops * reps / (now() - t) / 1e9;
            }
        printf("bench gemm %dx%dx%d libkdens_gflops=%.1f openblas_gflops=%.1f\n", size, size,
               size, median3(rates[0]), median3(rates[1]));
        free(a), free(b), free(c);
    }
}

/* The reference's large architectures: training at 32x32x3, batch 32, Adam
 * (the median of three windows of `steps` steps after one warm-up step), and
 * inference at 224x224x3, batch 1 and 32 — the figures beside
 * tests/bench/peer_big_torch.py. */
static void bench_big(const char *arch, int steps)
{
    enum { BATCH = 32, CLASSES = 10 };
    kdens_model *m;
    kdens_optimizer *o;
    check(kdens_model_create(arch, 32, 32, 3, CLASSES, 1, &m), "create");
    check(kdens_optimizer_create(KDENS_OPT_ADAM, 1e-3f, &o), "optimizer");
    check(kdens_model_set_training(m, 1), "mode");
    float *x = malloc(sizeof(float) * BATCH * 224 * 224 * 3);
    int32_t y[BATCH];
    uint64_t s = 1;
    for (size_t i = 0; i < (size_t)BATCH * 224 * 224 * 3; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(s >> 40) / (float)(1 << 24);
    }
    for (int i = 0; i < BATCH; i++)
        y[i] = i % CLASSES;
    check(kdens_model_train_step(m, o, x, BATCH, y, NULL, NULL, NULL), "train");
    double rates[3];
    for (int w = 0; w < 3; w++) {
        double t = now();
        for (int i = 0; i < steps; i++)
            check(kdens_model_train_step(m, o, x, BATCH, y, NULL, NULL, NULL), "train");
        rates[w] = steps * BATCH / (now() - t);
    }
    printf("bench big %s 32x32x3 batch 32 train_img_per_s=%.1f\n", arch, median3(rates));
    fflush(stdout);
    kdens_optimizer_free(o);
    kdens_model_free(m);
    check(kdens_model_create(arch, 224, 224, 3, CLASSES, 1, &m), "create");
    float probs[BATCH * CLASSES];
    int sizes[2] = {1, BATCH};
    for (int b = 0; b < 2; b++) {
        check(kdens_model_predict(m, x, (size_t)sizes[b], probs), "predict");
        for (int w = 0; w < 3; w++) {
            double t = now();
            check(kdens_model_predict(m, x, (size_t)sizes[b], probs), "predict");
            rates[w] = sizes[b] / (now() - t);
        }
        printf("bench big %s 224x224x3 batch %d infer_img_per_s=%.1f\n", arch, sizes[b],
               median3(rates));
        fflush(stdout);
    }
    kdens_model_free(m);
    free(x);
}

/* Time per image of a built-in architecture at the corrosion detector's
 * 240x320x3 with 2 classes, batch 8: inference, and a training step (Adam);
 * the median of three timed calls after a warm-up. */
static void bench_large(const char *arch)
{
    enum { BATCH = 8, H = 240, W = 320, CLASSES = 2 };
    kdens_model *m;
    kdens_optimizer *o;
    check(kdens_model_create(arch, H, W, 3, CLASSES, 1, &m), "create");
    check(kdens_optimizer_create(KDENS_OPT_ADAM, 1e-3, &o), "optimizer");
    float *x = malloc(sizeof(float) * BATCH * H * W * 3), probs[BATCH * CLASSES];
    int32_t y[BATCH];
    uint64_t s = 1;
    for (size_t i = 0; i < (size_t)BATCH * H * W * 3; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(s >> 40) / (float)(1 << 24);
    }
    for (int i = 0; i < BATCH; i++)
        y[i] = i % CLASSES;
    double infer[3], train[3];
    check(kdens_model_predict(m, x, BATCH, probs), "predict");
    for (int w = 0; w < 3; w++) {
        double t = now();
        check(kdens_model_predict(m, x, BATCH, probs), "predict");
        infer[w] = (now() - t) * 1000 / BATCH;
    }
    check(kdens_model_set_training(m, 1), "mode");
    check(kdens_model_train_step(m, o, x, BATCH, y, NULL, NULL, NULL), "train");
    for (int w = 0; w < 3; w++) {
        double t = now();
        check(kdens_model_train_step(m, o, x, BATCH, y, NULL, NULL, NULL), "train");
        train[w] = (now() - t) * 1000 / BATCH;
    }
    printf("bench large %s 240x320x3 batch 8 infer_ms_per_img=%.1f train_ms_per_img=%.1f\n",
           arch, median3(infer), median3(train));
    fflush(stdout);
    kdens_optimizer_free(o);
    kdens_model_free(m);
    free(x);
}

/* Forward and backward GFLOP/s of one convolution shape at batch 128, with the
 * algorithm the library chooses and, for comparison, with im2col + GEMM. */
static void bench_conv_algo(const char *name, int h, int c, int oc, int k, int stride,
                            int groups, int forced);
/* The chosen algorithm, then im2col + GEMM, then (for small outputs, where
 * GEMM is chosen) the direct kernels. */
static void bench_conv(const char *name, int h, int c, int oc, int k, int stride, int groups)
{
    bench_conv_algo(name, h, c, oc, k, stride, groups, -1);
    if (groups == 1)
        bench_conv_algo(name, h, c, oc, k, stride, groups, KD_CONV_IM2COL);
    if (groups == 1 && oc % 16 == 0)
        bench_conv_algo(name, h, c, oc, k, stride, groups, KD_CONV_DIRECT);
}

static void bench_conv_algo(const char *name, int h, int c, int oc, int k, int stride,
                            int groups, int forced)
{
    kd_conv_forced_algo = forced;
    int pad = k / 2, oh = (h + 2 * pad - k) / stride + 1;
    int n = (size_t)h * h * c * k * k * oc > ((size_t)1 << 27) ? 16 : 128; /* bound the time */
    kd_conv_geom g = {n, h, h, c, oh, oh, oc, k, k, stride, stride, pad, pad, groups, 1, 1};
    size_t xs = (size_t)g.n * h * h * c, ws = (size_t)k * k * (c / groups) * oc,
           ys = (size_t)g.n * oh * oh * oc;
    float *x = calloc(xs, 4), *w = calloc(ws, 4), *y = calloc(ys, 4), *dx = calloc(xs, 4),
          *dw = calloc(ws, 4), *work = calloc(kd_conv_workspace(&g) + 1, 4);
    for (size_t i = 0; i < xs; i++)
        x[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < ws; i++)
        w[i] = (float)(i % 5) * 0.1f;
    double flops = 2.0 * ys * k * k * (c / groups);
    int reps = (int)(2e9 / flops) + 1;
    /* warm-up: first touch of the buffers, the pool's threads awake */
    kd_conv_forward(&g, x, w, NULL, y, work);
    kd_conv_backward(&g, x, w, y, dx, true, dw, NULL, work);
    double t = now();
    for (int r = 0; r < reps; r++)
        kd_conv_forward(&g, x, w, NULL, y, work);
    double fwd = flops * reps / (now() - t) / 1e9;
    t = now();
    for (int r = 0; r < reps; r++)
        kd_conv_backward(&g, x, w, y, dx, true, dw, NULL, work);
    double bwd = 2 * flops * reps / (now() - t) / 1e9;
    static const char *const algos[] = {"gemm1x1", "im2col", "depthwise", "direct", "winograd"};
    printf("bench conv %-24s forward_gflops=%.1f backward_gflops=%.1f algo=%s\n", name, fwd,
           bwd, algos[kd_conv_choose(&g)]);
    kd_conv_forced_algo = -1;
    free(x), free(w), free(y), free(dx), free(dw), free(work);
}

/* ---- datasets ------------------------------------------------------------ */

static void bench_fmnist_load(void)
{
    double t = now();
    kdens_dataset *tr, *te;
    if (kdens_dataset_preset("fmnist", NULL, &tr, &te) != KDENS_OK) {
        printf("bench fmnist_load skipped: %s\n", kdens_errmsg());
        return;
    }
    double secs = now() - t;
    size_t n = kdens_dataset_count(tr) + kdens_dataset_count(te);
    printf("bench fmnist_load images=%zu seconds=%.3f img_per_s=%.0f\n", n, secs, n / secs);
    kdens_dataset_free(tr);
    kdens_dataset_free(te);
}

#define FOLDER_IMAGES 1000
#define FOLDER_SIZE 64

static void write_jpeg_file(const char *path, const uint8_t *rgb)
{
    FILE *f = fopen(path, "wb");
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = c.image_height = FOLDER_SIZE;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)rgb + c.next_scanline * FOLDER_SIZE * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* A folder of FOLDER_IMAGES 64x64 RGB images in two classes. */
static void make_image_folder(const char *root, bool jpeg)
{
    char path[512];
    uint8_t rgb[FOLDER_SIZE * FOLDER_SIZE * 3];
    mkdir(root, 0755);
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/class%d", root, k);
        mkdir(path, 0755);
    }
    for (int i = 0; i < FOLDER_IMAGES; i++) {
        for (int p = 0; p < FOLDER_SIZE * FOLDER_SIZE * 3; p++)
            rgb[p] = (uint8_t)((p * 7 + i * 13 + (p / 192) * 5) & 0xFF);
        snprintf(path, sizeof path, "%s/class%d/%04d.%s", root, i % 2, i, jpeg ? "jpg" : "png");
        if (jpeg) {
            write_jpeg_file(path, rgb);
        } else {
            png_image img;
            memset(&img, 0, sizeof img);
            img.version = PNG_IMAGE_VERSION;
            img.width = img.height = FOLDER_SIZE;
            img.format = PNG_FORMAT_RGB;
            png_image_write_to_file(&img, path, 0, rgb, 0, NULL);
        }
    }
}

/* The plain single-threaded library loop over the same files. */
static double plain_decode(const char *root, bool jpeg)
{
    char path[512];
    uint8_t rgb[FOLDER_SIZE * FOLDER_SIZE * 3];
    double t = now();
    for (int i = 0; i < FOLDER_IMAGES; i++) {
        snprintf(path, sizeof path, "%s/class%d/%04d.%s", root, i % 2, i, jpeg ? "jpg" : "png");
        if (jpeg) {
            FILE *f = fopen(path, "rb");
            struct jpeg_decompress_struct c;
            struct jpeg_error_mgr err;
            c.err = jpeg_std_error(&err);
            jpeg_create_decompress(&c);
            jpeg_stdio_src(&c, f);
            jpeg_read_header(&c, TRUE);
            c.out_color_space = JCS_RGB;
            jpeg_start_decompress(&c);
            while (c.output_scanline < c.output_height) {
                JSAMPROW row = rgb + c.output_scanline * FOLDER_SIZE * 3;
                jpeg_read_scanlines(&c, &row, 1);
            }
            jpeg_finish_decompress(&c);
            jpeg_destroy_decompress(&c);
            fclose(f);
        } else {
            png_image img;
            memset(&img, 0, sizeof img);
            img.version = PNG_IMAGE_VERSION;
            png_image_begin_read_from_file(&img, path);
            img.format = PNG_FORMAT_RGB;
            png_image_finish_read(&img, NULL, rgb, 0, NULL);
        }
    }
    return FOLDER_IMAGES / (now() - t);
}

static void bench_folders(void)
{
    char root[64];
    snprintf(root, sizeof root, "/tmp/kdens-bench-%d", (int)getpid());
    mkdir(root, 0755);
    for (int jpeg = 0; jpeg < 2; jpeg++) {
        char dir[128];
        snprintf(dir, sizeof dir, "%s/%s", root, jpeg ? "jpeg" : "png");
        make_image_folder(dir, jpeg);
        double plain = plain_decode(dir, jpeg); /* also warms the page cache */
        plain = plain_decode(dir, jpeg);
        double t = now();
        kdens_dataset *ds;
        check(kdens_dataset_load_folder(dir, 0, 0, KDENS_COLOR_RGB, 0, &ds), "folder");
        double ours = FOLDER_IMAGES / (now() - t);
        printf("bench folder_%s img_per_s=%.0f plain_loop_img_per_s=%.0f images=%d size=%dx%d\n",
               jpeg ? "jpeg" : "png", ours, plain, FOLDER_IMAGES, FOLDER_SIZE, FOLDER_SIZE);
        kdens_dataset_free(ds);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: could not remove %s\n", root);
}

/* Loader throughput with the reference's augmentation on Fashion-MNIST. */
static void bench_loader(void)
{
    kdens_dataset *tr;
    if (kdens_dataset_preset("fmnist", NULL, &tr, NULL) != KDENS_OK)
        return;
    kdens_augment *aug;
    check(kdens_augment_create(&aug), "augment");
    check(kdens_augment_set_affine(aug, 15, 0.1f, 0.1f, 0, 0.1f, 1), "augment");
    for (int ra = 0; ra < 2; ra++) {
        check(kdens_augment_set_randaugment(aug, ra ? 2 : 0, ra ? 9 : 0), "augment");
        for (int threads = 1; threads <= 2; threads++) {
            kdens_loader *ld;
            check(kdens_loader_create(tr, 128, 1, &ld), "loader");
            check(kdens_loader_set_augment(ld, aug), "loader");
            check(kdens_loader_set_threads(ld, threads), "loader");
            check(kdens_loader_start_epoch(ld, 0), "loader");
            double t = now();
            size_t n, total = 0;
            const float *x;
            while (total < 30000) {
                check(kdens_loader_next(ld, &x, NULL, &n), "loader");
                total += n;
            }
            double rate = total / (now() - t);
            printf("bench loader augment=%s threads=%d img_per_s=%.0f\n",
                   ra ? "affine+randaugment(2,9)" : "affine", threads, rate);
            kdens_loader_free(ld);
        }
    }
    kdens_augment_free(aug);
    kdens_dataset_free(tr);
}

/* Every fusion rule over 100 members x 10,000 samples x 10 classes. */
static void bench_fusion(void)
{
    const int members = 100, classes = 10;
    const size_t samples = 10000;
    float *p = malloc(sizeof(float) * members * samples * classes);
    int32_t *d = malloc(sizeof(int32_t) * samples);
    uint64_t r = 7;
    for (size_t i = 0; i < (size_t)members * samples; i++) {
        float sum = 0, *row = p + i * classes;
        for (int k = 0; k < classes; k++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            row[k] = (float)((r >> 40) & 0xFFFF) + 1.0f;
            sum += row[k];
        }
        for (int k = 0; k < classes; k++)
            row[k] /= sum;
    }
    for (int rule = 0; rule < kdens_fusion_count(); rule++) {
        double t = now();
        check(kdens_fuse((kdens_fusion)rule, p, members, samples, classes, d, NULL), "fuse");
        printf("bench fusion %-16s seconds=%.3f (100 members x 10000 samples x 10 classes)\n",
               kdens_fusion_name((kdens_fusion)rule), now() - t);
    }
    free(p);
    free(d);
}

/* Seconds of each epoch of a trainer's log (column 7), median of 3 epochs. */
static double epoch_seconds(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[512];
    double v[3] = {0, 0, 0};
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f) && n < 3) {
        int e;
        double a, b, c, d, lr, sec;
        if (sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf", &e, &a, &b, &c, &d, &lr, &sec) == 7)
            v[n++] = sec;
    }
    fclose(f);
    return n == 3 ? median3(v) : -1;
}

/* Distillation: a student epoch with 1, 5 and 10 teachers, their outputs
 * cached or computed online, against a plain epoch of the student; 12,800
 * Fashion-MNIST training images, test networks, batch 128. */
static void bench_distill(void)
{
    char dir[] = "/tmp/kdens-bench-XXXXXX", log[64], path[64];
    if (!mkdtemp(dir))
        return;
    snprintf(log, sizeof log, "%s/log.csv", dir);
    kdens_dataset *all, *part;
    check(kdens_dataset_preset("fmnist", NULL, &all, NULL), "fmnist");
    check(kdens_dataset_subset(all, 0, 12800, 1, &part), "subset");
    kdens_model *student;
    check(kdens_model_create("test", 28, 28, 1, 10, 1, &student), "student");
    kdens_trainer *t;
    check(kdens_trainer_create(student, part, NULL, &t), "trainer");
    check(kdens_trainer_set_epochs(t, 3), "epochs");
    check(kdens_trainer_set_log(t, log), "log");
    check(kdens_trainer_fit(t), "fit");
    double plain = epoch_seconds(log);
    printf("bench distill plain        epoch_seconds=%.3f (12800 images, test network)\n", plain);
    kdens_trainer_free(t);
    kdens_ensemble *ens;
    check(kdens_ensemble_create(&ens), "ensemble");
    for (int i = 0; i < 10; i++) {
        kdens_model *m;
        check(kdens_model_create("test", 28, 28, 1, 10, (uint64_t)i + 2, &m), "teacher");
        snprintf(path, sizeof path, "%s/t%d.kdm", dir, i);
        check(kdens_model_save(m, path), "save");
        kdens_model_free(m);
    }
    static const int counts[3] = {1, 5, 10};
    for (int c = 0; c < 3; c++) {
        while (kdens_ensemble_size(ens) < counts[c]) {
            snprintf(path, sizeof path, "%s/t%d.kdm", dir, kdens_ensemble_size(ens));
            check(kdens_ensemble_add(ens, path), "add");
        }
        for (int cache = 1; cache >= 0; cache--) {
            kdens_distiller *d;
            check(kdens_distiller_create(ens, student, KDENS_DISTILL_OUTPUT_AVG, part, NULL, &d),
                  "distiller");
            check(kdens_distiller_set_cache(d, cache, NULL), "cache");
            kdens_trainer *dt = kdens_distiller_trainer(d);
            check(kdens_trainer_set_epochs(dt, 3), "epochs");
            check(kdens_trainer_set_log(dt, log), "log");
            double t0 = now();
            check(kdens_distiller_fit(d), "distill");
            double total = now() - t0, epoch = epoch_seconds(log);
            printf("bench distill %2d teachers %-6s epoch_seconds=%.3f ratio=%.2f "
                   "fill_seconds=%.3f\n", counts[c], cache ? "cached" : "online", epoch,
                   epoch / plain, cache ? total - 3 * epoch : 0.0);
            kdens_distiller_free(d);
        }
    }
    kdens_ensemble_free(ens);
    kdens_model_free(student);
    kdens_dataset_free(part);
    kdens_dataset_free(all);
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof path, "%s/t%d.kdm", dir, i);
        unlink(path);
    }
    unlink(log);
    rmdir(dir);
}

/* ---- ONNX Runtime beside libkdens ------------------------------------------ */

#ifdef KDENS_WITH_ONNX
/* Where onnxruntime-node is (the Makefile sets it: $(BUILD)/onnx-node/node_modules). */
static const char *ort_modules(void)
{
    const char *dir = getenv("KDENS_ONNX_NODE");
    return dir && *dir ? dir : "build/onnx-node/node_modules";
}

/* Inference of one architecture at HxWxC (10 classes, random weights),
 * exported to ONNX: libkdens (kdens_model_predict_u8, what the export
 * computes) and ONNX Runtime (tests/bench/bench_ort.js) with as many
 * intra-op threads as libkdens has, sequential execution, on the same
 * random pixels; images/s at batch 1 (200 calls) and 1000 (median of 3). */
static void bench_onnx_model(const char *label, const char *arch, int h, int w, int c,
                             const char *dir)
{
    enum { BIG = 1000, REPS = 200 };
    kdens_model *m;
    check(kdens_model_create(arch, h, w, c, 10, 1, &m), "create");
    char path[256], cmd[1024];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, label);
    check(kdens_onnx_export(m, path), "export");
    size_t pix = (size_t)h * w * c;
    uint8_t *img = malloc(BIG * pix);
    float *probs = malloc(sizeof(float) * BIG * 10);
    uint64_t s = 1;
    for (size_t i = 0; i < BIG * pix; i++) { /* bench_ort.js draws the same pixels (NCHW) */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        img[i] = (uint8_t)(s >> 56);
    }
    double ours[2], rates[3];
    check(kdens_model_predict_u8(m, img, 1, probs), "predict");
    double t = now();
    for (int i = 0; i < REPS; i++)
        check(kdens_model_predict_u8(m, img, 1, probs), "predict");
    ours[0] = REPS / (now() - t);
    check(kdens_model_predict_u8(m, img, BIG, probs), "predict");
    for (int k = 0; k < 3; k++) {
        t = now();
        check(kdens_model_predict_u8(m, img, BIG, probs), "predict");
        rates[k] = BIG / (now() - t);
    }
    ours[1] = median3(rates);
    free(img);
    free(probs);
    kdens_model_free(m);
    snprintf(cmd, sizeof cmd, "NODE_PATH='%s' node tests/bench/bench_ort.js '%s' %d %d %d %d",
             ort_modules(), path, c, h, w, kdens_get_num_threads());
    FILE *p = popen(cmd, "r");
    double ort[2] = {0, 0};
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        int batch;
        double rate;
        if (sscanf(line, "ort batch=%d img_per_s=%lf", &batch, &rate) == 2)
            ort[batch == 1 ? 0 : 1] = rate;
    }
    if (!p || pclose(p) != 0 || ort[0] <= 0 || ort[1] <= 0) {
        printf("bench onnx %s: ONNX Runtime failed (%s)\n", label, cmd);
        return;
    }
    for (int b = 0; b < 2; b++)
        printf("bench onnx %-8s %-8s %dx%dx%d batch %-4d libkdens_img_per_s=%.0f "
               "ort_img_per_s=%.0f ratio=%.2f\n", label, arch, h, w, c, b ? BIG : 1, ours[b],
               ort[b], ours[b] / ort[b]);
    fflush(stdout);
}
#endif

/* The exported student (the architecture make demo distils into: the
 * pipeline's default, `test`, on Fashion-MNIST's 28x28x1) and ResNet-20 at
 * the same size, in libkdens and in ONNX Runtime. */
static void bench_onnx(void)
{
#ifdef KDENS_WITH_ONNX
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "NODE_PATH='%s' node -e \"require('onnxruntime-node')\" >/dev/null 2>&1",
             ort_modules());
    if (system("command -v node >/dev/null 2>&1") != 0) {
        printf("bench onnx skipped: node is not installed (make deps ONNX=1)\n");
        return;
    }
    if (system(cmd) != 0) {
        printf("bench onnx skipped: onnxruntime-node is not in %s (make deps ONNX=1)\n",
               ort_modules());
        return;
    }
    char dir[] = "/tmp/kdens-bench-onnx-XXXXXX";
    if (!mkdtemp(dir))
        return;
    printf("bench onnx threads=%d (ONNX Runtime: as many intra-op threads, sequential)\n",
           kdens_get_num_threads());
    bench_onnx_model("student", "test", 28, 28, 1, dir);
    bench_onnx_model("resnet20", "resnet20", 28, 28, 1, dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
#else
    printf("bench onnx skipped: built without libkdens_onnx (make bench ONNX=1)\n");
#endif
}

/* Is section `name` asked for?  No names after the thread count: all. */
static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Inference of a float model and of its int8 quantisation (calibrated on
 * 500 of the images): images/s at batch 1000 (the median of three calls),
 * batch-1 latency (the median of three means over 100 calls), file sizes.
 * The weights are those of initialisation: speed does not depend on them. */
static void bench_int8(const char *arch, const float *x)
{
    const size_t n = 1000;
    kdens_model *f, *q;
    check(kdens_model_create(arch, 28, 28, 1, 10, 1, &f), "create");
    uint8_t *u8 = malloc(n * 784);
    for (size_t i = 0; i < n * 784; i++)
        u8[i] = (uint8_t)(x[i] * 255.0f + 0.5f);
    check(kdens_model_quantize_u8(f, u8, 500, KDENS_CALIB_PERCENTILE, &q), "quantize");
    float *probs = malloc(sizeof(float) * n * 10);
    double rate[2], latency[2];
    for (int k = 0; k < 2; k++) {
        kdens_model *m = k ? q : f;
        double rates[3], lat[3];
        check(kdens_model_predict_u8(m, u8, n, probs), "predict");
        for (int w = 0; w < 3; w++) {
            double t = now();
            check(kdens_model_predict_u8(m, u8, n, probs), "predict");
            rates[w] = n / (now() - t);
        }
        for (int w = 0; w < 3; w++) {
            double t = now();
            for (int i = 0; i < 100; i++)
                check(kdens_model_predict_u8(m, u8 + (size_t)i * 784, 1, probs), "predict");
            lat[w] = (now() - t) / 100 * 1e6;
        }
        rate[k] = median3(rates);
        latency[k] = median3(lat);
    }
    char fpath[] = "/tmp/kdens-bench-float.kdm", qpath[] = "/tmp/kdens-bench-int8.kdm";
    check(kdens_model_save(f, fpath), "save");
    check(kdens_model_save(q, qpath), "save");
    long fs = file_size(fpath), qs = file_size(qpath);
    remove(fpath);
    remove(qpath);
    printf("bench int8 %s kernel=%s float_img_per_s=%.0f int8_img_per_s=%.0f speedup=%.2f\n",
           arch, kdens_cpu_int8_kernel(), rate[0], rate[1], rate[1] / rate[0]);
    printf("bench int8 %s float_batch1_us=%.0f int8_batch1_us=%.0f\n", arch, latency[0],
           latency[1]);
    printf("bench int8 %s float_bytes=%ld int8_bytes=%ld ratio=%.2f\n", arch, fs, qs,
           (double)fs / (double)qs);
    fflush(stdout);
    free(probs);
    free(u8);
    kdens_model_free(f);
    kdens_model_free(q);
}

static bool wanted(int argc, char **argv, const char *name)
{
    if (argc <= 2)
        return strcmp(name, "big") != 0 && strcmp(name, "large") != 0;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

/* bench [THREADS [SECTION...]]: sections models int8 conv data fusion distill
 * gemm onnx (libkdens beside ONNX Runtime; needs make bench ONNX=1) big
 * (the large architectures; not run unless named, ~1 minute) large (every
 * built-in architecture at 240x320x3; not run unless named). */
int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    check(kdens_set_num_threads(threads), "threads");
    printf("bench libkdens %s threads=%d cpu_path=%s\n", kdens_version(),
           kdens_get_num_threads(), kdens_cpu_path());
    int32_t *y;
    size_t n = 128 * 40;
    float *x = load_images(n, &y);
    if (wanted(argc, argv, "models")) {
        bench_model("test", x, y, n, 60);
        bench_model("resnet20", x, y, n, 20);
    }
    if (wanted(argc, argv, "int8")) {
        bench_int8("test", x);
        bench_int8("resnet20", x);
    }
    if (wanted(argc, argv, "conv")) {
        bench_conv("28x28 16->16 3x3", 28, 16, 16, 3, 1, 1);
        bench_conv("14x14 32->32 3x3", 14, 32, 32, 3, 1, 1);
        bench_conv("7x7 64->64 3x3", 7, 64, 64, 3, 1, 1);
        bench_conv("28x28 16->32 3x3 s2", 28, 16, 32, 3, 2, 1);
        bench_conv("28x28 1->16 3x3", 28, 1, 16, 3, 1, 1);
        bench_conv("14x14 64->64 dw3x3", 14, 64, 64, 3, 1, 64);
        bench_conv("14x14 64->128 1x1", 14, 64, 128, 1, 1, 1);
        /* ResNet50V2's stages at a 32x32 input: small maps, many channels */
        bench_conv("8x8 64->64 3x3", 8, 64, 64, 3, 1, 1);
        bench_conv("4x4 128->128 3x3", 4, 128, 128, 3, 1, 1);
        bench_conv("2x2 256->256 3x3", 2, 256, 256, 3, 1, 1);
        bench_conv("1x1 512->512 3x3", 1, 512, 512, 3, 1, 1);
        bench_conv("8x8 256->64 1x1", 8, 256, 64, 1, 1, 1);
        bench_conv("4x4 512->128 1x1", 4, 512, 128, 1, 1, 1);
        bench_conv("2x2 1024->256 1x1", 2, 1024, 256, 1, 1, 1);
        bench_conv("1x1 2048->512 1x1", 1, 2048, 512, 1, 1, 1);
        bench_conv("1x1 512->2048 1x1", 1, 512, 2048, 1, 1, 1);
        /* ResNet50V2's later stages at 224x224: large weights */
        bench_conv("14x14 256->256 3x3", 14, 256, 256, 3, 1, 1);
        bench_conv("7x7 512->512 3x3", 7, 512, 512, 3, 1, 1);
        bench_conv("14x14 1024->256 1x1", 14, 1024, 256, 1, 1, 1);
        bench_conv("7x7 2048->512 1x1", 7, 2048, 512, 1, 1, 1);
    }
    if (wanted(argc, argv, "gemm"))
        bench_gemm();
    if (wanted(argc, argv, "data")) {
        bench_fmnist_load();
        bench_folders();
        bench_loader();
    }
    if (wanted(argc, argv, "fusion"))
        bench_fusion();
    if (wanted(argc, argv, "distill"))
        bench_distill();
    if (wanted(argc, argv, "onnx"))
        bench_onnx();
    if (wanted(argc, argv, "large"))
        for (int i = 0; i < kdens_arch_count(); i++)
            bench_large(kdens_arch_name(i));
    if (wanted(argc, argv, "big")) {
        const char *big[] = {"resnet50v2", "densenet121", "efficientnetb0", "mobilenetv3large"};
        for (size_t i = 0; i < sizeof big / sizeof *big; i++)
            bench_big(big[i], 3);
    }
    free(x);
    free(y);
    return 0;
}

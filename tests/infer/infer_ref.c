/* The reference that the inference-only library is checked against (make
 * check-infer on this machine, make check-aarch64 under qemu-aarch64):
 * built with the full library on the host, it trains a few models on
 * synthetic images with Adam (a small CNN, ResNet-20, a MobileNet with depthwise
 * layers and ReLU6, MobileNetV3-Large with depthwise layers, hard-swish and
 * squeeze-excite), saves them, and writes their inputs and predictions:
 *
 *   DIR/models.txt         "path P" (the kernel path that predicted), then one
 *                          line per model: NAME IMAGES TOLERANCE LOGIT_TOLERANCE
 *   DIR/NAME.kdm           the model
 *   DIR/NAME.u8, NAME.f32  IMAGES input images, as bytes and as scaled floats
 *   DIR/NAME.probs         kdens_model_predict on NAME.f32 (float32)
 *   DIR/NAME.probs_u8      kdens_model_predict_u8 on NAME.u8
 *   DIR/NAME.logits        kdens_model_predict_logits on NAME.f32 (probabilities
 *                          of a confident model saturate; logits show every bit)
 *   DIR/images/NAME-I.pgm|.ppm  the first images as netpbm files (classify)
 *
 * tests/infer/test_infer.c reads the manifest, so a model added here is
 * checked everywhere without touching the test.  Usage: infer_ref DIR */
#include <kdens.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CLASSES = 5, IMAGES = 12, TRAIN_STEPS = 24, NETPBM_IMAGES = 4 };

/* Cross-machine tolerance of float32 predictions (probabilities): a model
 * saved on one machine or kernel path predicts on another within 1e-5
 * (docs/design.md, "Kernel paths and what is promised"). */
#define TOL_FLOAT 1e-5
/* ... and of logits, relative to 1 + |logit| (measured against an AVX-512
 * reference: 0 on aarch64 and on the AVX2 path, up to 9e-7 on x86-64's
 * generic path, which has no FMA). */
#define TOL_LOGIT 1e-4
/* ... of int8 models: their int8 layers give the same bits on every path and
 * machine (exact int32 sums, requantisation without contraction), but a
 * float layer between them (depthwise, global pooling) that rounds
 * differently without FMA may move a value across a quantisation step, one
 * u8 step of the next layer's input.  Measured: 0 on aarch64 and AVX2. */
#define TOL_INT8 2e-3
#define TOL_INT8_LOGIT 2e-2

static const struct {
    const char *arch;
    int side, channels;
    int netpbm; /* also written as PGM/PPM images for classify */
} models[] = {
    {"test", 16, 1, 1},             /* a small CNN: conv, ReLU, max pooling, dense */
    {"resnet20", 32, 3, 1},         /* Winograd and direct convolutions, BN+ReLU, adds */
    {"mobilenet_small", 32, 3, 0},  /* depthwise convolutions, ReLU6, global pooling */
    {"mobilenetv3large", 32, 3, 0}, /* depthwise, hard-swish, squeeze-excite, 5x5 */
};
/* Each model is also quantised to int8 (kdens_model_quantize_u8, calibrated
 * on CALIB_IMAGES training images) and written as NAME-int8 with the same
 * inputs: test_infer checks it like the float ones, here on every kernel
 * path and on aarch64 under qemu. */
#define CALIB_IMAGES 64

static const char *const class_names[CLASSES] = {"top", "upper", "middle", "lower", "bottom"};

static char dir[4096];

static void die(const char *what)
{
    fprintf(stderr, "infer_ref: %s: %s\n", what, kdens_errmsg());
    exit(1);
}

static void write_file(const char *name, const void *data, size_t len)
{
    char path[sizeof dir + 512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "infer_ref: cannot write %s\n", path);
        exit(1);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_random(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* Class k: a bright band across the k-th fifth of the rows, on noise;
 * colour images tint it by class. */
static void synth(int side, int c, int label, uint8_t *px)
{
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++)
            for (int ch = 0; ch < c; ch++) {
                int v = 30 + (int)(next_random() % 60);
                if (y * CLASSES / side == label)
                    v += 120 + 20 * ((ch + label) % 3);
                px[((size_t)y * side + x) * c + ch] = (uint8_t)(v > 255 ? 255 : v);
            }
}

static void scale_images(const kdens_model *m, const uint8_t *u8, size_t n, int c, float *x)
{
    float scale[3], offset[3];
    if (kdens_model_get_input_scaling(m, scale, offset) != KDENS_OK)
        die("scaling");
    for (size_t i = 0; i < n; i++)
        x[i] = (float)u8[i] * scale[i % (size_t)c] + offset[i % (size_t)c];
}

static void write_netpbm(const char *arch, int i, int side, int c, const uint8_t *px)
{
    char name[256], header[64];
    snprintf(name, sizeof name, "images/%s-%d.%s", arch, i, c == 1 ? "pgm" : "ppm");
    int hl = snprintf(header, sizeof header, "P%d\n# %s, image %d\n%d %d\n255\n",
                      c == 1 ? 5 : 6, arch, i, side, side);
    size_t bytes = (size_t)side * side * c;
    uint8_t *file = malloc((size_t)hl + bytes);
    if (!file)
        die("out of memory");
    memcpy(file, header, (size_t)hl);
    memcpy(file + hl, px, bytes);
    write_file(name, file, (size_t)hl + bytes);
    free(file);
}

/* Save model m as DIR/NAME.kdm with n images (u8, and x scaled) and its
 * predictions of them, and list it in the manifest with its tolerances;
 * returns how many of the images it classifies as class i % CLASSES. */
static int write_outputs(kdens_model *m, const char *name, const uint8_t *u8, const float *x,
                         int n, double tol, double logit_tol, FILE *manifest)
{
    int h, w, c, k = kdens_model_num_classes(m);
    if (kdens_model_input_shape(m, &h, &w, &c) != KDENS_OK)
        die("shape");
    size_t pixels = (size_t)h * w * c;
    float *out = malloc((size_t)n * k * sizeof(float));
    if (!out)
        die("out of memory");
    char file[480], path[sizeof dir + 512];
    snprintf(path, sizeof path, "%s/%s.kdm", dir, name);
    if (kdens_model_save(m, path) != KDENS_OK)
        die("save");
    snprintf(file, sizeof file, "%s.u8", name);
    write_file(file, u8, (size_t)n * pixels);
    snprintf(file, sizeof file, "%s.f32", name);
    write_file(file, x, (size_t)n * pixels * sizeof(float));
    if (kdens_model_predict(m, x, (size_t)n, out) != KDENS_OK)
        die("predict");
    snprintf(file, sizeof file, "%s.probs", name);
    write_file(file, out, (size_t)n * k * sizeof(float));
    int right = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int j = 1; j < k; j++)
            best = out[i * k + j] > out[i * k + best] ? j : best;
        right += best == i % CLASSES;
    }
    if (kdens_model_predict_logits(m, x, (size_t)n, out) != KDENS_OK)
        die("predict_logits");
    snprintf(file, sizeof file, "%s.logits", name);
    write_file(file, out, (size_t)n * k * sizeof(float));
    if (kdens_model_predict_u8(m, u8, (size_t)n, out) != KDENS_OK)
        die("predict_u8");
    snprintf(file, sizeof file, "%s.probs_u8", name);
    write_file(file, out, (size_t)n * k * sizeof(float));
    fprintf(manifest, "%s %d %g %g\n", name, n, tol, logit_tol);
    free(out);
    return right;
}

static void make_model(int k, FILE *manifest)
{
    const char *arch = models[k].arch;
    int side = models[k].side, c = models[k].channels;
    size_t pixels = (size_t)side * side * c;
    kdens_model *m;
    kdens_optimizer *opt;
    if (kdens_model_create(arch, side, side, c, CLASSES, 17 + (uint64_t)k, &m) != KDENS_OK)
        die(arch);
    if (c == 3) { /* a per-channel normalisation, carried by the file */
        const float scale[3] = {1 / 64.f, 1 / 60.f, 1 / 70.f}, offset[3] = {-1.5f, -1.4f, -1.6f};
        if (kdens_model_set_input_scaling(m, scale, offset) != KDENS_OK)
            die("set scaling");
    }
    if (kdens_model_set_class_names(m, class_names, CLASSES) != KDENS_OK ||
        kdens_model_set_meta(m, "made_by", "tests/infer/infer_ref") != KDENS_OK)
        die("metadata");
    uint8_t *u8 = malloc(IMAGES * pixels);
    float *x = malloc(IMAGES * pixels * sizeof(float));
    int32_t labels[IMAGES];
    if (!u8 || !x)
        die("out of memory");
    /* train: a few steps of Adam (batch-norm statistics move) */
    if (kdens_optimizer_create(KDENS_OPT_ADAM, 1e-3, &opt) != KDENS_OK ||
        kdens_model_set_training(m, 1) != KDENS_OK)
        die("optimiser");
    for (int step = 0; step < TRAIN_STEPS; step++) {
        for (int i = 0; i < IMAGES; i++) {
            labels[i] = (int32_t)(next_random() % CLASSES);
            synth(side, c, labels[i], u8 + (size_t)i * pixels);
        }
        scale_images(m, u8, IMAGES * pixels, c, x);
        if (kdens_model_train_step(m, opt, x, IMAGES, labels, NULL, NULL, NULL) != KDENS_OK)
            die("train step");
    }
    kdens_optimizer_free(opt);
    if (kdens_model_set_training(m, 0) != KDENS_OK)
        die("inference mode");
    /* the images to predict: new ones, one class each in turn */
    for (int i = 0; i < IMAGES; i++)
        synth(side, c, i % CLASSES, u8 + (size_t)i * pixels);
    scale_images(m, u8, IMAGES * pixels, c, x);
    int right = write_outputs(m, arch, u8, x, IMAGES, TOL_FLOAT, TOL_LOGIT, manifest);
    /* its int8 version, calibrated on new training images */
    uint8_t *calib = malloc(CALIB_IMAGES * pixels);
    kdens_model *q = NULL;
    char qname[64];
    if (!calib)
        die("out of memory");
    for (int i = 0; i < CALIB_IMAGES; i++)
        synth(side, c, (int)(next_random() % CLASSES), calib + (size_t)i * pixels);
    if (kdens_model_quantize_u8(m, calib, CALIB_IMAGES, KDENS_CALIB_PERCENTILE, &q) != KDENS_OK)
        die("quantise");
    snprintf(qname, sizeof qname, "%s-int8", arch);
    int right8 = write_outputs(q, qname, u8, x, IMAGES, TOL_INT8, TOL_INT8_LOGIT, manifest);
    printf("infer_ref: %s int8: %d of %d right\n", arch, right8, IMAGES);
    kdens_model_free(q);
    free(calib);
    if (models[k].netpbm)
        for (int i = 0; i < NETPBM_IMAGES; i++)
            write_netpbm(arch, i, side, c, u8 + (size_t)i * pixels);
    printf("infer_ref: %s %dx%dx%d, %zu parameters, trained %d steps: %d of %d right\n", arch,
           side, side, c, kdens_model_param_count(m), TRAIN_STEPS, right, IMAGES);
    free(u8);
    free(x);
    kdens_model_free(m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: infer_ref DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    char path[4400];
    snprintf(path, sizeof path, "%s/models.txt", dir);
    FILE *manifest = fopen(path, "w");
    if (!manifest) {
        fprintf(stderr, "infer_ref: cannot write %s (does %s/images exist?)\n", path, dir);
        return 1;
    }
    fprintf(manifest, "# written by tests/infer/infer_ref: the kernel path of its predictions,\n"
                      "# then NAME IMAGES TOLERANCE LOGIT_TOLERANCE per model\npath %s\n",
            kdens_cpu_path());
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++)
        make_model((int)k, manifest);
    if (fclose(manifest) != 0)
        return 1;
    return 0;
}

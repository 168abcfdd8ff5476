/* PyTorch -> libkdens (make check-onnx): tests/onnx/make_torch_models.py
 * builds models with Debian's python3-torch and python3-torchvision
 * (random weights, eval mode: a small CNN, a CNN of the other operators
 * PyTorch writes, one of F.pad and nn.ZeroPad2d, resnet18 and
 * mobilenet_v3_small at 32x32 and 224x224, mobilenet_v2, efficientnet_b0,
 * squeezenet1_1 and densenet121 at 64x64, a CNN of dilated convolutions;
 * and a hand-written graph of auto_pad (of a dilated Conv too) and
 * count_include_pad),
 * exports them with torch.onnx.export (opset 13) and writes PyTorch's
 * probabilities on a random batch.  Each file is imported with
 * kdens_onnx_import and predicted on the same batch (the graph's own
 * input: the model's input scaling is 1 and 0, so kdens_model_predict
 * feeds the values as they are); the probabilities must equal PyTorch's
 * within 1e-4.  Files the import must refuse (a dilated max pool, a
 * LeakyRelu) are refused with the node and operator named;
 * damaged copies of a PyTorch file are refused without a crash.
 * Skipped with a message without python3-torch or python3-torchvision. */
#include "../testutil.h"

#include "kdens_onnx.h"

#include <math.h>
#include <time.h>

#define TOLERANCE 1e-4

static char dir[4400];

static const char *python(void)
{
    const char *p = getenv("KDENS_PYTHON");
    if (p && *p)
        return p;
    /* Debian's python3-torch is /usr/bin/python3's; a python3 first on
     * PATH (pyenv, a venv) may lack it */
    return system("python3 -c 'import torch, torchvision' >/dev/null 2>&1") == 0
               ? "python3"
               : "/usr/bin/python3";
}

/* Runs the script once into the build folder's onnx-torch/: false when
 * torch is missing (the tests skip). */
static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/%s/onnx-torch", tu_root(), tu_build());
    char cmd[9200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "%s '%s/tests/onnx/make_torch_models.py' '%s' >'%s/log.txt' 2>&1",
             python(), tu_root(), dir, dir);
    int rc = system(cmd);
    /* 77: torch or torchvision missing; 126, 127: no such interpreter */
    if (WIFEXITED(rc) && (WEXITSTATUS(rc) == 77 || WEXITSTATUS(rc) == 126 ||
                          WEXITSTATUS(rc) == 127))
        dir[0] = '\0'; /* skipped */
    else if (rc != 0) {
        fprintf(stderr, "make_torch_models.py failed (%s/log.txt):\n", dir);
        snprintf(cmd, sizeof cmd, "tail -20 '%s/log.txt' >&2", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
        return -1;
    }
    return 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool read_floats(const char *path, float *x, size_t n)
{
    FILE *f = fopen(path, "rb");
    bool ok = f && fread(x, sizeof(float), n, f) == n && fgetc(f) == EOF;
    if (f)
        fclose(f);
    return ok;
}

static void skip_without_torch(void)
{
    if (!dir[0]) {
        print_message("PyTorch models skipped: python3-torch or python3-torchvision is missing "
                      "(make deps ONNX=1)\n");
        skip();
    }
}

/* Is ONNX Runtime at hand (node and onnxruntime-node in the build folder)? */
static bool have_ort(void)
{
    static int have = -1;
    if (have < 0) {
        char cmd[4600];
        snprintf(cmd, sizeof cmd,
                 "command -v node >/dev/null 2>&1 && NODE_PATH='%s/%s/onnx-node/node_modules' "
                 "node -e \"require('onnxruntime-node')\" >/dev/null 2>&1",
                 tu_root(), tu_build());
        have = system(cmd) == 0;
        if (!have)
            print_message("re-exports not run in ONNX Runtime: node or onnxruntime-node is "
                          "missing (make deps ONNX=1)\n");
    }
    return have;
}

/* import -> export -> ONNX Runtime: the imported model written again by
 * kdens_onnx_export and run by ONNX Runtime on PyTorch's batch (its input
 * scaling is 1 and 0, so the export takes the graph's own input); the
 * largest |difference| from PyTorch's probabilities, or -1 without ORT. */
static double reexport_in_ort(kdens_model *m, const char *name, int n, int h, int w, int c,
                              const float *want, int classes)
{
    if (!have_ort())
        return -1;
    char onnx[4600], in[4600], out[4600], cmd[20000];
    snprintf(onnx, sizeof onnx, "%s/%s.kdens.onnx", dir, name);
    snprintf(in, sizeof in, "%s/%s.in", dir, name);
    snprintf(out, sizeof out, "%s/%s.ort", dir, name);
    ASSERT_OK(kdens_onnx_export(m, onnx));
    snprintf(cmd, sizeof cmd,
             "NODE_PATH='%s/%s/onnx-node/node_modules' node '%s/tests/onnx/run_ort.js' "
             "'%s' '%s' %d %d %d %d '%s'",
             tu_root(), tu_build(), tu_root(), onnx, in, n, c, h, w, out);
    if (system(cmd) != 0)
        fail_msg("%s: ONNX Runtime failed on the re-export: %s", name, cmd);
    float *got = malloc(sizeof(float) * n * classes);
    assert_non_null(got);
    assert_true(read_floats(out, got, (size_t)n * classes));
    double worst = 0;
    for (int i = 0; i < n * classes; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    free(got);
    return worst;
}

/* One model: import, predict on PyTorch's batch, compare; then export
 * the import again and run that in ONNX Runtime. */
static void compare(const char *name, int n, int h, int w, int c, int classes)
{
    char path[4600];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    kdens_model *m = NULL;
    double t0 = now();
    kdens_status st = kdens_onnx_import(path, &m);
    if (st != KDENS_OK)
        fail_msg("%s: import failed: %s", name, kdens_errmsg());
    double t1 = now();
    int mh, mw, mc;
    ASSERT_OK(kdens_model_input_shape(m, &mh, &mw, &mc));
    assert_true(mh == h && mw == w && mc == c);
    assert_int_equal(kdens_model_num_classes(m), classes);
    size_t pix = (size_t)h * w * c;
    float *nchw = malloc(sizeof(float) * n * pix), *nhwc = malloc(sizeof(float) * n * pix);
    float *want = malloc(sizeof(float) * n * classes), *got = malloc(sizeof(float) * n * classes);
    assert_true(nchw && nhwc && want && got);
    snprintf(path, sizeof path, "%s/%s.in", dir, name);
    assert_true(read_floats(path, nchw, n * pix));
    snprintf(path, sizeof path, "%s/%s.out", dir, name);
    assert_true(read_floats(path, want, (size_t)n * classes));
    for (int i = 0; i < n; i++) /* the graph's NCHW to the engine's NHWC */
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    nhwc[i * pix + ((size_t)y * w + x) * c + ch] =
                        nchw[(((size_t)i * c + ch) * h + y) * w + x];
    ASSERT_OK(kdens_model_predict(m, nhwc, (size_t)n, got));
    double t2 = now();
    double worst = 0, lo = 1, hi = 0;
    for (int i = 0; i < n * classes; i++) {
        worst = fmax(worst, fabs((double)got[i] - want[i]));
        lo = fmin(lo, want[i]);
        hi = fmax(hi, want[i]);
    }
    print_message("%-24s %3dx%-3d x%d: max |p_kdens - p_torch| = %.3g (probabilities "
                  "%.4f..%.4f; import %.2f s, predict %.2f s)\n",
                  name, h, w, n, worst, lo, hi, t1 - t0, t2 - t1);
    if (!(worst <= TOLERANCE))
        fail_msg("%s: libkdens' probabilities differ from PyTorch's by %g (> %g)", name, worst,
                 TOLERANCE);
    double ort = reexport_in_ort(m, name, n, h, w, c, want, classes);
    if (ort >= 0)
        print_message("%-24s re-exported, in ONNX Runtime: max |p_ort - p_torch| = %.3g\n", name,
                      ort);
    if (ort >= 0 && !(ort <= TOLERANCE))
        fail_msg("%s: ONNX Runtime on libkdens' re-export differs from PyTorch by %g (> %g)", name,
                 ort, TOLERANCE);
    free(nchw);
    free(nhwc);
    free(want);
    free(got);
    kdens_model_free(m);
}

static void test_torch_models(void **state)
{
    (void)state;
    skip_without_torch();
    char path[4600];
    snprintf(path, sizeof path, "%s/models.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char name[128];
    int n, h, w, c, classes, count = 0;
    while (fscanf(f, "%127s %d %d %d %d %d", name, &n, &h, &w, &c, &classes) == 6) {
        assert_true(n > 0 && n <= 16 && h > 0 && h <= 512 && w > 0 && w <= 512 && c > 0 &&
                    c <= 4 && classes > 1 && classes <= 1000);
        compare(name, n, h, w, c, classes);
        count++;
    }
    fclose(f);
    assert_int_equal(count, 14);
}

/* Refused files: the error names the node and the operator. */
static void test_torch_refused(void **state)
{
    (void)state;
    skip_without_torch();
    char path[4600];
    snprintf(path, sizeof path, "%s/refused.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char name[128], op[64];
    int count = 0;
    while (fscanf(f, "%127s %63s", name, op) == 2) {
        snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
        kdens_model *m = NULL;
        kdens_status st = kdens_onnx_import(path, &m);
        assert_int_not_equal(st, KDENS_OK);
        assert_null(m);
        char want[80];
        snprintf(want, sizeof want, "(%s)", op);
        print_message("%-24s refused: %s\n", name, kdens_errmsg());
        assert_non_null(strstr(kdens_errmsg(), want));
        assert_non_null(strstr(kdens_errmsg(), "node '"));
        count++;
    }
    fclose(f);
    assert_int_equal(count, 2);
}

static void write_bytes(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* PyTorch's operators CNN (constants, shape arithmetic, MatMul, ...) and
 * F.pad's (the pads' arithmetic) cut short everywhere and with bytes
 * flipped: an error or, by chance, a model, never a crash (run under
 * SANITIZE=1 by CI). */
static void damage(const char *name)
{
    char path[4600], bad[4600];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    snprintf(bad, sizeof bad, "%s/damaged.onnx", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *file = malloc(1 << 20), *copy = malloc(1 << 20);
    assert_true(file && copy);
    size_t len = fread(file, 1, 1 << 20, f);
    fclose(f);
    assert_true(len > 0 && len < (1 << 20));
    uint64_t seed = 7;
    int refused = 0, tries = 0;
    for (size_t cut = 0; cut < len; cut += 1 + cut / 30, tries++) {
        write_bytes(bad, file, cut);
        kdens_model *m = NULL;
        refused += kdens_onnx_import(bad, &m) != KDENS_OK;
        kdens_model_free(m);
    }
    for (int i = 0; i < 300; i++, tries++) {
        memcpy(copy, file, len);
        for (int k = 0; k < 4; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            copy[(seed >> 20) % len] ^= (uint8_t)(1u << ((seed >> 8) & 7));
        }
        write_bytes(bad, copy, len);
        kdens_model *m = NULL;
        refused += kdens_onnx_import(bad, &m) != KDENS_OK;
        kdens_model_free(m);
    }
    print_message("import of %d damaged copies of %s: %d refused, none crashed\n", tries, name,
                  refused);
    free(file);
    free(copy);
}

static void test_torch_damaged(void **state)
{
    (void)state;
    skip_without_torch();
    damage("ops_cnn_32");
    damage("padded_32");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_models),
        cmocka_unit_test(test_torch_refused),
        cmocka_unit_test(test_torch_damaged),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

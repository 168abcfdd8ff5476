/* The inference-only library (make lib-infer): linked with libkdens_infer.a
 * and libm alone (no libpng, libjpeg, zlib), natively by make check-infer
 * and cross-compiled for aarch64 under qemu by make check-aarch64.
 *
 * With INFER_DIR set (tests/infer/infer_ref's output, written by the full
 * library on the x86-64 host): every model of INFER_DIR/models.txt loads
 * from its file and from memory and predicts, from floats and from bytes,
 * what the full library predicted, on every kernel path this processor
 * has, within the model's tolerance -- or bit for bit on the reference's
 * own path with INFER_EXACT=1 (the same machine and objects: the inference
 * library is the full library's code).  Always: model files from memory
 * and their errors, netpbm images, and PNG/JPEG refused with
 * KDENS_E_UNSUPPORTED.  Built with -DKD_TEST_FULL_LIBRARY against libkdens
 * too, where the netpbm cases must give the same pixels. */
#include "../testutil.h"

#include <math.h>

static char *tmp;

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    unsigned char *data = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            data = realloc(data, cap + 1); /* +1: room for an offset copy */
            assert_non_null(data);
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return data;
}

static void write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* ---- models of the reference run ------------------------------------------- */

/* The largest |got - want| / (1 + |want|) when relative, else |got - want|. */
static double compare(const float *got, const float *want, size_t n, double tol, bool exact,
                      bool relative, const char *what)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (relative)
            d /= 1 + fabs((double)want[i]);
        if (exact ? memcmp(&got[i], &want[i], sizeof got[i]) != 0 : !(d <= tol))
            fail_msg("%s: value %zu is %.9g here, %.9g in the reference (%s)", what, i,
                     (double)got[i], (double)want[i], exact ? "bit for bit" : "tolerance");
        worst = d > worst ? d : worst;
    }
    return worst;
}

static void check_model(const char *dir, const char *name, int images, double tol,
                        double logit_tol, bool exact, const char *ref_path)
{
    char file[512];
    snprintf(file, sizeof file, "%s.kdm", name);
    kdens_model *m, *from_memory;
    ASSERT_OK(kdens_model_load(tu_join(dir, file), &m));
    /* from memory, at an odd address: the loader copies and needs no alignment */
    size_t len;
    unsigned char *bytes = read_all(tu_join(dir, file), &len);
    memmove(bytes + 1, bytes, len);
    ASSERT_OK(kdens_model_load_memory(bytes + 1, len, &from_memory));
    free(bytes);

    int h, w, c, k = kdens_model_num_classes(m);
    ASSERT_OK(kdens_model_input_shape(m, &h, &w, &c));
    size_t pixels = (size_t)h * w * c, probs_n = (size_t)images * k;
    snprintf(file, sizeof file, "%s.u8", name);
    unsigned char *u8 = read_all(tu_join(dir, file), &len);
    assert_int_equal(len, images * pixels);
    snprintf(file, sizeof file, "%s.f32", name);
    float *x = (float *)read_all(tu_join(dir, file), &len);
    assert_int_equal(len, images * pixels * sizeof(float));
    snprintf(file, sizeof file, "%s.probs", name);
    float *want = (float *)read_all(tu_join(dir, file), &len);
    assert_int_equal(len, probs_n * sizeof(float));
    snprintf(file, sizeof file, "%s.probs_u8", name);
    float *want_u8 = (float *)read_all(tu_join(dir, file), &len);
    assert_int_equal(len, probs_n * sizeof(float));
    snprintf(file, sizeof file, "%s.logits", name);
    float *want_logits = (float *)read_all(tu_join(dir, file), &len);
    assert_int_equal(len, probs_n * sizeof(float));

    float *probs = malloc(probs_n * sizeof(float)), *again = malloc(probs_n * sizeof(float));
    assert_non_null(probs);
    assert_non_null(again);
    char paths[64], *save = NULL;
    snprintf(paths, sizeof paths, "%s", kdens_cpu_paths());
    for (char *path = strtok_r(paths, " ", &save); path; path = strtok_r(NULL, " ", &save)) {
        ASSERT_OK(kdens_set_cpu_path(path));
        bool bits = exact && strcmp(path, ref_path) == 0;
        char what[300];
        snprintf(what, sizeof what, "%s from floats on %s", name, path);
        ASSERT_OK(kdens_model_predict(m, x, (size_t)images, probs));
        double worst = compare(probs, want, probs_n, tol, bits, false, what);
        ASSERT_OK(kdens_model_predict(from_memory, x, (size_t)images, again));
        assert_memory_equal(probs, again, probs_n * sizeof(float)); /* the same model */
        snprintf(what, sizeof what, "%s from bytes on %s", name, path);
        ASSERT_OK(kdens_model_predict_u8(m, u8, (size_t)images, probs));
        double worst_u8 = compare(probs, want_u8, probs_n, tol, bits, false, what);
        snprintf(what, sizeof what, "%s logits on %s", name, path);
        ASSERT_OK(kdens_model_predict_logits(m, x, (size_t)images, again));
        double worst_logit = compare(again, want_logits, probs_n, logit_tol, bits, true, what);
        /* one image alone: the same bits as in the batch */
        ASSERT_OK(kdens_model_predict_u8(m, u8 + pixels, 1, again));
        assert_memory_equal(probs + k, again, (size_t)k * sizeof(float));
        printf("%s (%dx%dx%d, %zu parameters), kernels %s against %s: largest difference "
               "%.3g from floats, %.3g from bytes, logits %.3g relative (%s)\n", name, h, w, c,
               kdens_model_param_count(m), path, ref_path, worst, worst_u8, worst_logit,
               bits ? "required: 0, bit for bit" : "within tolerance");
    }
    ASSERT_OK(kdens_set_cpu_path(NULL));
    free(probs);
    free(again);
    free(u8);
    free(x);
    free(want);
    free(want_u8);
    free(want_logits);
    kdens_model_free(from_memory);
    kdens_model_free(m);
}

static void test_reference_models(void **state)
{
    (void)state;
    const char *dir = getenv("INFER_DIR"), *exact_env = getenv("INFER_EXACT");
    if (!dir || !*dir) {
        printf("INFER_DIR is not set: no reference models to check\n");
        skip();
    }
    bool exact = exact_env && strcmp(exact_env, "1") == 0;
    FILE *f = fopen(tu_join(dir, "models.txt"), "r");
    if (!f)
        fail_msg("%s/models.txt: cannot open", dir);
    char line[512], name[256], ref_path[32] = "";
    int checked = 0;
    while (fgets(line, sizeof line, f)) {
        int images;
        double tol;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "path %31s", ref_path) == 1)
            continue;
        double logit_tol;
        if (sscanf(line, "%255s %d %lf %lf", name, &images, &tol, &logit_tol) != 4 ||
            images < 1 || !*ref_path)
            fail_msg("%s/models.txt: bad line '%s'", dir, line);
        check_model(dir, name, images, tol, logit_tol, exact, ref_path);
        checked++;
    }
    fclose(f);
    assert_true(checked >= 4);
}

/* ---- model files from memory ------------------------------------------------- */

static void test_load_memory_errors(void **state)
{
    (void)state;
    kdens_model *m = NULL;
    ASSERT_STATUS(kdens_model_load_memory(NULL, 10, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_load_memory("x", 1, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_load_memory("not a model at all", 18, &m), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "(memory)"));
    ASSERT_STATUS(kdens_model_load_memory("", 0, &m), KDENS_E_FORMAT);
    assert_null(m);

    const char *dir = getenv("INFER_DIR");
    if (!dir || !*dir)
        return;
    size_t len;
    unsigned char *bytes = read_all(tu_join(dir, "test.kdm"), &len);
    for (size_t cut = 0; cut < len; cut += len / 97 + 1) /* truncations */
        ASSERT_STATUS(kdens_model_load_memory(bytes, cut, &m), KDENS_E_FORMAT);
    bytes[len / 2] ^= 0x10; /* a flipped bit: the section's CRC-32 catches it */
    ASSERT_STATUS(kdens_model_load_memory(bytes, len, &m), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "CRC"));
    free(bytes);
}

/* ---- images: PGM and PPM in both libraries, PNG and JPEG in the full one -- */

static void load_bytes(const void *file, size_t len, int h, int w, kdens_color color,
                       uint8_t *out, kdens_status want)
{
    char *path = tu_join(tmp, "image.pnm");
    write_all(path, file, len);
    ASSERT_STATUS(kdens_image_load(path, h, w, color, out), want);
}

static void test_netpbm(void **state)
{
    (void)state;
    uint8_t out[64];
    /* P5 with comments in the header: grey as it is, RGB replicated */
    static const char pgm[] = "P5\n# a comment\n3 # width\n2\n255\n\x00\x10\x20\x80\xc0\xff";
    load_bytes(pgm, sizeof pgm - 1, 2, 3, KDENS_COLOR_GRAY, out, KDENS_OK);
    assert_memory_equal(out, "\x00\x10\x20\x80\xc0\xff", 6);
    load_bytes(pgm, sizeof pgm - 1, 2, 3, KDENS_COLOR_RGB, out, KDENS_OK);
    assert_memory_equal(out, "\x00\x00\x00\x10\x10\x10\x20\x20\x20", 9);
    assert_memory_equal(out + 15, "\xff\xff\xff", 3);
    /* resized (nearest, PIL's centres): 2x3 to 4x6 repeats each pixel */
    load_bytes(pgm, sizeof pgm - 1, 4, 6, KDENS_COLOR_GRAY, out, KDENS_OK);
    assert_memory_equal(out, "\x00\x00\x10\x10\x20\x20", 6);
    assert_memory_equal(out + 18, "\x80\x80\xc0\xc0\xff\xff", 6);
    /* P6: RGB as it is, grey as ITU-R 601 luma (PIL's convert("L")) */
    static const char ppm[] = "P6 2 1 255\n\xff\x00\x00\x10\x20\x30";
    load_bytes(ppm, sizeof ppm - 1, 1, 2, KDENS_COLOR_RGB, out, KDENS_OK);
    assert_memory_equal(out, "\xff\x00\x00\x10\x20\x30", 6);
    load_bytes(ppm, sizeof ppm - 1, 1, 2, KDENS_COLOR_GRAY, out, KDENS_OK);
    assert_int_equal(out[0], 76); /* (255 * 299 + 500) / 1000 */
    assert_int_equal(out[1], (0x10 * 299 + 0x20 * 587 + 0x30 * 114 + 500) / 1000);
    /* other maxvals are scaled to 0..255, rounded; above 255, two bytes big-endian */
    static const char pgm15[] = "P5 3 1 15\n\x00\x07\x0f";
    load_bytes(pgm15, sizeof pgm15 - 1, 1, 3, KDENS_COLOR_GRAY, out, KDENS_OK);
    assert_memory_equal(out, "\x00\x77\xff", 3); /* 7 * 255 / 15 = 119 */
    static const char pgm16[] = "P5 2 1 65535\n\x00\x00\xff\xff";
    load_bytes(pgm16, sizeof pgm16 - 1, 1, 2, KDENS_COLOR_GRAY, out, KDENS_OK);
    assert_memory_equal(out, "\x00\xff", 2);
    /* bad files: a status naming the file, never a crash */
    static const char *const bad[] = {
        "P5 3 2 255\n\x01\x02",      /* truncated */
        "P5 3 2\n",                  /* no maxval */
        "P5 0 2 255\n",              /* no width */
        "P5 1 1 70000\n\x00\x00",    /* maxval out of range */
        "P5 1 1 15\n\x10",           /* a sample above maxval */
        "P5 1 1 255",                /* nothing after the header */
        "P5 1 1 2550000000000\n\x00", /* a number too long */
        "P2 1 1 255\n0\n",           /* ASCII netpbm: not read */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        load_bytes(bad[i], strlen(bad[i]), 1, 1, KDENS_COLOR_GRAY, out,
                   KDENS_E_FORMAT);
        assert_non_null(strstr(kdens_errmsg(), "image.pnm"));
    }
}

static void test_png_and_jpeg(void **state)
{
    (void)state;
    uint8_t out[16];
    static const char png[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR-not-a-real-png";
    static const char jpeg[] = "\xff\xd8\xff\xe0-not-a-real-jpeg";
#ifdef KD_TEST_FULL_LIBRARY
    /* the full library decodes them: these are corrupt */
    load_bytes(png, sizeof png - 1, 2, 2, KDENS_COLOR_GRAY, out, KDENS_E_FORMAT);
    load_bytes(jpeg, sizeof jpeg - 1, 2, 2, KDENS_COLOR_GRAY, out, KDENS_E_FORMAT);
#else
    /* the inference-only library has no codec for them and says so */
    load_bytes(png, sizeof png - 1, 2, 2, KDENS_COLOR_GRAY, out, KDENS_E_UNSUPPORTED);
    assert_non_null(strstr(kdens_errmsg(), "PNG"));
    assert_non_null(strstr(kdens_errmsg(), "libkdens_infer"));
    load_bytes(jpeg, sizeof jpeg - 1, 2, 2, KDENS_COLOR_RGB, out, KDENS_E_UNSUPPORTED);
    assert_non_null(strstr(kdens_errmsg(), "JPEG"));
    printf("a JPEG file: %s\n", kdens_errmsg());
#endif
    load_bytes("GIF89a", 6, 2, 2, KDENS_COLOR_GRAY, out, KDENS_E_FORMAT);
    assert_string_equal(kdens_status_str(KDENS_E_UNSUPPORTED), "not in this build");
}

static void test_kernel_path(void **state)
{
    (void)state;
    printf("kernel path: %s (supported: %s), %d threads\n", kdens_cpu_path(), kdens_cpu_paths(),
           kdens_get_num_threads());
#if !defined(__x86_64__)
    assert_string_equal(kdens_cpu_paths(), "generic"); /* no x86 paths elsewhere */
    ASSERT_STATUS(kdens_set_cpu_path("avx2"), KDENS_E_ARG);
#endif
    ASSERT_OK(kdens_set_cpu_path("generic"));
    ASSERT_OK(kdens_set_cpu_path(NULL));
}

static int setup(void **state)
{
    (void)state;
    tmp = tu_tmpdir();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_rf(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_path),
        cmocka_unit_test(test_reference_models),
        cmocka_unit_test(test_load_memory_errors),
        cmocka_unit_test(test_netpbm),
        cmocka_unit_test(test_png_and_jpeg),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

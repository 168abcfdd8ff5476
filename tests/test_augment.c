/* Augmentation: the affine warp checked pixel by pixel on synthetic images
 * with known answers (rotations by 90 and 180 degrees, integer shifts under
 * every fill mode, flips, zoom, shear), each RandAugment operation against
 * its definition, and determinism from the seed. */
#include "testutil.h"

#include "data/data.h"

#include <math.h>

enum { H = 7, W = 7 };

/* A gradient with distinct values: pixel (y, x, ch) = 7y + x + 50 ch. */
static void pattern(uint8_t *img, int h, int w, int c)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++)
                img[(y * w + x) * c + ch] = (uint8_t)(7 * y + x + 50 * ch);
}

#define AT(img, y, x) (img)[(y) * W + (x)]

static void test_rotations(void **state)
{
    (void)state;
    uint8_t src[H * W], dst[H * W];
    pattern(src, H, W, 1);
    /* output (r, q) reads input R(theta) . (r - c, q - c) + c, c = 3 */
    kd_affine(src, H, W, 1, 90, 0, 0, 0, 1, 1, false, KDENS_FILL_CONSTANT, 0, dst);
    for (int r = 0; r < H; r++)
        for (int q = 0; q < W; q++) /* cos 90 = 0, sin 90 = 1: in = (3 - (q - 3), 3 + (r - 3)) */
            assert_int_equal(AT(dst, r, q), AT(src, 6 - q, r));
    kd_affine(src, H, W, 1, 180, 0, 0, 0, 1, 1, false, KDENS_FILL_CONSTANT, 0, dst);
    for (int r = 0; r < H; r++)
        for (int q = 0; q < W; q++)
            assert_int_equal(AT(dst, r, q), AT(src, 6 - r, 6 - q));
}

static int reference_fill(int i, int n, kdens_fill mode)
{
    if (i >= 0 && i < n)
        return i;
    switch (mode) {
    case KDENS_FILL_NEAREST: return i < 0 ? 0 : n - 1;
    case KDENS_FILL_REFLECT: return i < 0 ? -i - 1 : 2 * n - 1 - i; /* within one period */
    case KDENS_FILL_WRAP: return i < 0 ? i + n : i - n;
    default: return -1;
    }
}

static void test_shifts_and_fills(void **state)
{
    (void)state;
    uint8_t src[H * W], dst[H * W];
    pattern(src, H, W, 1);
    for (int mode = 0; mode < 4; mode++)
        for (int dy = -3; dy <= 3; dy += 3)
            for (int dx = -2; dx <= 2; dx += 2) {
                /* tx moves the row read, ty the column: out(r, q) = in(r + tx, q + ty) */
                kd_affine(src, H, W, 1, 0, dy, dx, 0, 1, 1, false, (kdens_fill)mode, 77, dst);
                for (int r = 0; r < H; r++)
                    for (int q = 0; q < W; q++) {
                        int y = reference_fill(r + dy, H, (kdens_fill)mode);
                        int x = reference_fill(q + dx, W, (kdens_fill)mode);
                        int want = y < 0 || x < 0 ? 77 : AT(src, y, x);
                        if (AT(dst, r, q) != want)
                            fail_msg("fill %d shift (%d,%d) at (%d,%d): %d, want %d", mode, dy,
                                     dx, r, q, AT(dst, r, q), want);
                    }
            }
}

static void test_flip_zoom_shear(void **state)
{
    (void)state;
    uint8_t src[H * W * 3], dst[H * W * 3];
    pattern(src, H, W, 3);
    kd_affine(src, H, W, 3, 0, 0, 0, 0, 1, 1, true, KDENS_FILL_NEAREST, 0, dst);
    for (int r = 0; r < H; r++)
        for (int q = 0; q < W; q++)
            for (int ch = 0; ch < 3; ch++)
                assert_int_equal(dst[(r * W + q) * 3 + ch], src[(r * W + (W - 1 - q)) * 3 + ch]);
    /* zoom 2 (in = 2 (out - c) + c) reads every second pixel around the centre */
    uint8_t g[H * W], z[H * W];
    pattern(g, H, W, 1);
    kd_affine(g, H, W, 1, 0, 0, 0, 0, 2, 2, false, KDENS_FILL_CONSTANT, 0, z);
    for (int r = 2; r <= 4; r++)
        for (int q = 2; q <= 4; q++)
            assert_int_equal(AT(z, r, q), AT(g, 2 * r - 3, 2 * q - 3));
    assert_int_equal(AT(z, 0, 0), 0); /* (-3, -3) is outside */
    /* shear: in = (cos(s) (q - c) ... ) -- at the centre row nothing moves */
    kd_affine(g, H, W, 1, 0, 0, 0, 20, 1, 1, false, KDENS_FILL_NEAREST, 0, z);
    for (int q = 0; q < W; q++) { /* row 3: y_in = 3 - sin(s) * (q - 3) is not the centre row */
        double y = 3 - sin(20 * 3.14159265358979 / 180) * (q - 3);
        double x = 3 + cos(20 * 3.14159265358979 / 180) * (q - 3);
        int y0 = (int)floor(y), x0 = (int)floor(x);
        double fy = y - y0, fx = x - x0;
        double v = 0;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
                v += (a ? fy : 1 - fy) * (b ? fx : 1 - fx) *
                     AT(g, reference_fill(y0 + a, H, KDENS_FILL_NEAREST),
                        reference_fill(x0 + b, W, KDENS_FILL_NEAREST));
        assert_int_equal(AT(z, 3, q), (int)floor(v + 0.5));
    }
}

static void test_policy_determinism(void **state)
{
    (void)state;
    kdens_augment *a;
    ASSERT_OK(kdens_augment_create(&a));
    ASSERT_OK(kdens_augment_set_affine(a, 30, 0.1f, 0.1f, 10, 0.2f, 1));
    ASSERT_OK(kdens_augment_set_fill(a, KDENS_FILL_REFLECT, 0));
    ASSERT_OK(kdens_augment_set_randaugment(a, 2, 9));
    uint8_t src[16 * 12 * 3], d1[16 * 12 * 3], d2[16 * 12 * 3], d3[16 * 12 * 3];
    pattern(src, 16, 12, 3);
    ASSERT_OK(kdens_augment_apply(a, src, 16, 12, 3, 5, d1));
    ASSERT_OK(kdens_augment_apply(a, src, 16, 12, 3, 5, d2));
    ASSERT_OK(kdens_augment_apply(a, src, 16, 12, 3, 6, d3));
    assert_memory_equal(d1, d2, sizeof d1);
    assert_memory_not_equal(d1, d3, sizeof d1);
    /* an empty policy copies */
    kdens_augment *none;
    ASSERT_OK(kdens_augment_create(&none));
    ASSERT_OK(kdens_augment_apply(none, src, 16, 12, 3, 5, d1));
    assert_memory_equal(d1, src, sizeof src);
    /* bad arguments */
    ASSERT_STATUS(kdens_augment_set_affine(a, -1, 0, 0, 0, 0, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_augment_set_affine(a, 0, 0, 0, 0, 1.0f, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_augment_set_affine(a, NAN, 0, 0, 0, 0, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_augment_set_randaugment(a, 15, 9), KDENS_E_ARG);
    ASSERT_STATUS(kdens_augment_set_randaugment(a, 2, 31), KDENS_E_ARG);
    ASSERT_STATUS(kdens_augment_set_fill(a, (kdens_fill)9, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_augment_apply(a, src, 16, 12, 2, 5, d1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_augment_apply(NULL, src, 16, 12, 3, 5, d1), KDENS_E_ARG);
    kdens_augment_free(none);
    kdens_augment_free(a);
    kdens_augment_free(NULL);
    /* presets: Fashion-MNIST flips, CIFAR does nothing */
    kdens_augment *fm, *cf;
    ASSERT_OK(kdens_augment_preset("fmnist", &fm));
    ASSERT_OK(kdens_augment_preset("cifar10", &cf));
    ASSERT_OK(kdens_augment_apply(cf, src, 16, 12, 3, 5, d1));
    assert_memory_equal(d1, src, sizeof src);
    ASSERT_OK(kdens_augment_apply(fm, src, 16, 12, 3, 5, d1));
    assert_memory_not_equal(d1, src, sizeof src);
    ASSERT_STATUS(kdens_augment_preset("imagenet", &a), KDENS_E_NOTFOUND);
    kdens_augment_free(fm);
    kdens_augment_free(cf);
}

enum {
    OP_IDENTITY, OP_AUTOCONTRAST, OP_EQUALIZE, OP_ROTATE, OP_SOLARIZE, OP_COLOR, OP_POSTERIZE,
    OP_CONTRAST, OP_BRIGHTNESS, OP_SHARPNESS, OP_SHEAR_X, OP_SHEAR_Y, OP_TRANSLATE_X,
    OP_TRANSLATE_Y
};

static void test_randaugment_ops(void **state)
{
    (void)state;
    enum { S = 20 };
    uint8_t img[S * S * 3], orig[S * S * 3], tmp[S * S * 3];
    for (int i = 0; i < S * S * 3; i++)
        orig[i] = (uint8_t)(40 + (i * 7) % 160); /* values in [40, 199] */
#define RESET() memcpy(img, orig, sizeof img)
    RESET();
    kd_randaugment_op(OP_IDENTITY, 30, 1, img, S, S, 3, tmp);
    assert_memory_equal(img, orig, sizeof img);

    RESET();
    kd_randaugment_op(OP_SOLARIZE, 15, 1, img, S, S, 3, tmp); /* threshold 128 */
    for (int i = 0; i < S * S * 3; i++)
        assert_int_equal(img[i], orig[i] >= 128 ? 255 - orig[i] : orig[i]);

    RESET();
    kd_randaugment_op(OP_POSTERIZE, 30, 1, img, S, S, 3, tmp); /* 4 bits kept */
    for (int i = 0; i < S * S * 3; i++)
        assert_int_equal(img[i], orig[i] & 0xF0);

    RESET();
    kd_randaugment_op(OP_BRIGHTNESS, 10, 1, img, S, S, 3, tmp); /* factor 1.3 */
    for (int i = 0; i < S * S * 3; i++)
        assert_int_equal(img[i], (int)fmin(255, floor(orig[i] * 1.3 + 0.5)));

    RESET();
    kd_randaugment_op(OP_AUTOCONTRAST, 0, 1, img, S, S, 3, tmp); /* min 40 -> 0, max -> 255 */
    int lo = 255, hi = 0;
    for (int i = 0; i < S * S * 3; i += 3) {
        lo = img[i] < lo ? img[i] : lo;
        hi = img[i] > hi ? img[i] : hi;
    }
    assert_true(lo == 0 && hi == 255);

    /* equalize (PIL's lookup): two values in equal numbers map to 0 and 255; an image too
     * small for a step of one pixel per level stays as it is */
    uint8_t two[512], t2[512];
    for (int i = 0; i < 512; i++)
        two[i] = i < 256 ? 10 : 200;
    kd_randaugment_op(OP_EQUALIZE, 0, 1, two, 32, 16, 1, t2);
    assert_true(two[0] == 0 && two[511] == 255);
    for (int i = 0; i < 16; i++)
        two[i] = i < 8 ? 10 : 200;
    kd_randaugment_op(OP_EQUALIZE, 0, 1, two, 4, 4, 1, t2);
    assert_true(two[0] == 10 && two[15] == 200);

    /* colour on a grey image and sharpness on a flat one change nothing */
    uint8_t grey[S * S * 3];
    for (int i = 0; i < S * S; i++)
        grey[3 * i] = grey[3 * i + 1] = grey[3 * i + 2] = (uint8_t)(i % 200);
    memcpy(img, grey, sizeof img);
    kd_randaugment_op(OP_COLOR, 30, -1, img, S, S, 3, tmp);
    assert_memory_equal(img, grey, sizeof img);
    memset(img, 90, sizeof img);
    kd_randaugment_op(OP_SHARPNESS, 30, 1, img, S, S, 3, tmp);
    for (int i = 0; i < S * S * 3; i++)
        assert_int_equal(img[i], 90);

    /* contrast 0.1 pulls every value 90% of the way to the mean luma */
    RESET();
    kd_randaugment_op(OP_CONTRAST, 30, -1, img, S, S, 3, tmp);
    double sum = 0;
    for (int i = 0; i < S * S; i++)
        sum += (orig[3 * i] * 299 + orig[3 * i + 1] * 587 + orig[3 * i + 2] * 114 + 500) / 1000;
    int mean = (int)floor(sum / (S * S) + 0.5);
    for (int i = 0; i < S * S * 3; i++)
        assert_int_equal(img[i], (int)floor(mean + 0.1 * (orig[i] - mean) + 0.5));

    /* translate x at m = 30: 0.45 * 20 = 9 pixels, grey fill */
    RESET();
    kd_randaugment_op(OP_TRANSLATE_X, 30, 1, img, S, S, 3, tmp);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                int want = x + 9 < S ? orig[(y * S + x + 9) * 3 + c] : 128;
                assert_int_equal(img[(y * S + x) * 3 + c], want);
            }
    RESET();
    kd_randaugment_op(OP_TRANSLATE_Y, 30, -1, img, S, S, 3, tmp);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int want = y - 9 >= 0 ? orig[((y - 9) * S + x) * 3] : 128;
            assert_int_equal(img[(y * S + x) * 3], want);
        }
    /* shear x at m = 30: x_in = x + 0.3 y (nearest) */
    RESET();
    kd_randaugment_op(OP_SHEAR_X, 30, 1, img, S, S, 3, tmp);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int xi = (int)floor(x + 0.3 * y + 0.5);
            int want = xi < S ? orig[(y * S + xi) * 3] : 128;
            assert_int_equal(img[(y * S + x) * 3], want);
        }
    RESET();
    kd_randaugment_op(OP_SHEAR_Y, 30, 1, img, S, S, 3, tmp);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int yi = (int)floor(y + 0.3 * x + 0.5);
            int want = yi < S ? orig[(yi * S + x) * 3] : 128;
            assert_int_equal(img[(y * S + x) * 3], want);
        }
    /* rotate 30 degrees about the centre: the corners leave the image */
    RESET();
    kd_randaugment_op(OP_ROTATE, 30, 1, img, S, S, 3, tmp);
    assert_int_equal(img[0], 128);
    assert_int_equal(img[(S * S - 1) * 3], 128);
#undef RESET
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotations),       cmocka_unit_test(test_shifts_and_fills),
        cmocka_unit_test(test_flip_zoom_shear), cmocka_unit_test(test_policy_determinism),
        cmocka_unit_test(test_randaugment_ops),
    };
    return cmocka_run_group_tests_name("augmentation", tests, NULL, NULL);
}

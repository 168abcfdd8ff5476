/* Augmentation of uint8 images: Keras' ImageDataGenerator (one affine warp
 * with bilinear sampling, as scipy.ndimage.affine_transform with order 1
 * inside Keras' apply_affine_transform) and RandAugment (Cubuk et al. 2020)
 * with PIL's definitions of the operations.  Every draw comes from the seed
 * in a fixed order, so an image's augmentation does not depend on threads. */
#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kdens_augment {
    float rotation, width_shift, height_shift, shear, zoom;
    bool flip, affine;
    kdens_fill fill;
    uint8_t cval;
    int ra_n, ra_m;
};

kdens_status kdens_augment_create(kdens_augment **out)
{
    if (!out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_augment *a = calloc(1, sizeof *a);
    if (!a)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    a->fill = KDENS_FILL_NEAREST;
    *out = a;
    return KDENS_OK;
}

void kdens_augment_free(kdens_augment *aug) { free(aug); }

static bool finite_nonneg(float v) { return v >= 0 && isfinite(v); }

kdens_status kdens_augment_set_affine(kdens_augment *a, double rotation_in,
                                      double width_shift_in, double height_shift_in,
                                      double shear_in, double zoom_in, int horizontal_flip)
{
    float rotation = (float)rotation_in, width_shift = (float)width_shift_in,
          height_shift = (float)height_shift_in, shear = (float)shear_in, zoom = (float)zoom_in;
    if (!a)
        return kd_fail(KDENS_E_ARG, "NULL augmentation");
    if (!finite_nonneg(rotation) || !finite_nonneg(width_shift) || !finite_nonneg(height_shift) ||
        !finite_nonneg(shear) || !finite_nonneg(zoom) || zoom >= 1)
        return kd_fail(KDENS_E_ARG, "affine ranges must be finite and >= 0, zoom below 1");
    a->rotation = rotation;
    a->width_shift = width_shift;
    a->height_shift = height_shift;
    a->shear = shear;
    a->zoom = zoom;
    a->flip = horizontal_flip != 0;
    a->affine = rotation > 0 || width_shift > 0 || height_shift > 0 || shear > 0 || zoom > 0;
    return KDENS_OK;
}

kdens_status kdens_augment_set_fill(kdens_augment *a, kdens_fill mode, uint8_t value)
{
    if (!a)
        return kd_fail(KDENS_E_ARG, "NULL augmentation");
    if (mode != KDENS_FILL_NEAREST && mode != KDENS_FILL_CONSTANT && mode != KDENS_FILL_REFLECT &&
        mode != KDENS_FILL_WRAP)
        return kd_fail(KDENS_E_ARG, "unknown fill mode %d", (int)mode);
    a->fill = mode;
    a->cval = value;
    return KDENS_OK;
}

kdens_status kdens_augment_set_randaugment(kdens_augment *a, int n, int m)
{
    if (!a)
        return kd_fail(KDENS_E_ARG, "NULL augmentation");
    if (n < 0 || n > 14 || m < 0 || m > 30)
        return kd_fail(KDENS_E_ARG, "RandAugment n %d must be in [0, 14] and m %d in [0, 30]", n,
                       m);
    a->ra_n = n;
    a->ra_m = m;
    return KDENS_OK;
}

kdens_status kdens_augment_preset(const char *dataset, kdens_augment **out)
{
    if (!dataset || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    bool digits = !strcmp(dataset, "mnist") || !strcmp(dataset, "emnist");
    bool fashion = !strcmp(dataset, "fmnist");
    bool cifar = !strcmp(dataset, "cifar10") || !strcmp(dataset, "cifar100");
    if (!digits && !fashion && !cifar)
        return kd_fail(KDENS_E_NOTFOUND, "no augmentation preset for '%s'", dataset);
    kdens_augment *a;
    kdens_status st = kdens_augment_create(&a);
    if (st != KDENS_OK)
        return st;
    if (!cifar)
        kdens_augment_set_affine(a, 5.0f, 0.02f, 0.02f, 0.02f, 0.02f, fashion);
    *out = a;
    return KDENS_OK;
}

/* ---- the affine warp --------------------------------------------------------------- */

typedef struct mat3 {
    double m[3][3];
} mat3;

static mat3 mul(mat3 a, mat3 b)
{
    mat3 r = {{{0}}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++)
                r.m[i][j] += a.m[i][k] * b.m[k][j];
    return r;
}

/* Coordinate of a sample outside [0, n) under the fill mode; -1 for constant. */
static int fill_index(int i, int n, kdens_fill mode)
{
    if (i >= 0 && i < n)
        return i;
    switch (mode) {
    case KDENS_FILL_NEAREST: return i < 0 ? 0 : n - 1;
    case KDENS_FILL_REFLECT: { /* dcba|abcd|dcba */
        int period = 2 * n;
        int k = ((i % period) + period) % period;
        return k < n ? k : period - 1 - k;
    }
    case KDENS_FILL_WRAP: return ((i % n) + n) % n;
    default: return -1;
    }
}

/* Output (row, col) reads input M . (row, col, 1), sampled bilinearly. */
static void warp(const uint8_t *src, int h, int w, int c, const mat3 *t, kdens_fill fill,
                 uint8_t cval, bool bilinear, uint8_t *dst)
{
    for (int r = 0; r < h; r++)
        for (int q = 0; q < w; q++) {
            double y = t->m[0][0] * r + t->m[0][1] * q + t->m[0][2];
            double x = t->m[1][0] * r + t->m[1][1] * q + t->m[1][2];
            uint8_t *out = dst + ((size_t)r * w + q) * c;
            if (!bilinear) {
                int yi = fill_index((int)floor(y + 0.5), h, fill);
                int xi = fill_index((int)floor(x + 0.5), w, fill);
                for (int ch = 0; ch < c; ch++)
                    out[ch] = yi < 0 || xi < 0 ? cval : src[((size_t)yi * w + xi) * c + ch];
                continue;
            }
            int y0 = (int)floor(y), x0 = (int)floor(x);
            double fy = y - y0, fx = x - x0;
            int ys[2] = {fill_index(y0, h, fill), fill_index(y0 + 1, h, fill)};
            int xs[2] = {fill_index(x0, w, fill), fill_index(x0 + 1, w, fill)};
            for (int ch = 0; ch < c; ch++) {
                double v = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) {
                        double wgt = (a ? fy : 1 - fy) * (b ? fx : 1 - fx);
                        if (wgt == 0)
                            continue;
                        double s = ys[a] < 0 || xs[b] < 0
                                       ? cval
                                       : src[((size_t)ys[a] * w + xs[b]) * c + ch];
                        v += wgt * s;
                    }
                v = floor(v + 0.5);
                out[ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

/* Keras' transform_matrix_offset_center: the transform acts about the centre. */
static mat3 about_centre(mat3 t, int h, int w)
{
    double oy = h / 2.0 - 0.5, ox = w / 2.0 - 0.5;
    mat3 off = {{{1, 0, oy}, {0, 1, ox}, {0, 0, 1}}};
    mat3 reset = {{{1, 0, -oy}, {0, 1, -ox}, {0, 0, 1}}};
    return mul(mul(off, t), reset);
}

static double uniform(kd_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * kd_rng_uniform(rng);
}

/* Keras' apply_affine_transform followed by the optional horizontal flip, for
 * given parameters (degrees, pixels, zoom factors). */
void kd_affine(const uint8_t *src, int h, int w, int c, double theta_deg, double tx, double ty,
               double shear_deg, double zx, double zy, bool flip, kdens_fill fill, uint8_t cval,
               uint8_t *dst)
{
    const double deg = 3.14159265358979323846 / 180.0;
    double theta = theta_deg * deg, shear = shear_deg * deg;
    mat3 rot = {{{cos(theta), -sin(theta), 0}, {sin(theta), cos(theta), 0}, {0, 0, 1}}};
    mat3 shift = {{{1, 0, tx}, {0, 1, ty}, {0, 0, 1}}};
    mat3 sh = {{{1, -sin(shear), 0}, {0, cos(shear), 0}, {0, 0, 1}}};
    mat3 zoom = {{{zx, 0, 0}, {0, zy, 0}, {0, 0, 1}}};
    mat3 t = about_centre(mul(mul(mul(rot, shift), sh), zoom), h, w);
    if (flip) /* flip after the warp: output column q reads warped column w-1-q */
        for (int r = 0; r < 2; r++) {
            t.m[r][2] += t.m[r][1] * (w - 1);
            t.m[r][1] = -t.m[r][1];
        }
    warp(src, h, w, c, &t, fill, cval, true, dst);
}

/* ImageDataGenerator.random_transform: the draws, in Keras' order. */
static void keras_affine(const kdens_augment *a, kd_rng *rng, const uint8_t *src, int h, int w,
                         int c, uint8_t *dst)
{
    double theta = a->rotation > 0 ? uniform(rng, -a->rotation, a->rotation) : 0;
    double tx = a->height_shift > 0 ? uniform(rng, -a->height_shift, a->height_shift) : 0;
    if (a->height_shift < 1)
        tx *= h;
    double ty = a->width_shift > 0 ? uniform(rng, -a->width_shift, a->width_shift) : 0;
    if (a->width_shift < 1)
        ty *= w;
    double shear = a->shear > 0 ? uniform(rng, -a->shear, a->shear) : 0;
    double zx = 1, zy = 1;
    if (a->zoom > 0) {
        zx = uniform(rng, 1 - a->zoom, 1 + a->zoom);
        zy = uniform(rng, 1 - a->zoom, 1 + a->zoom);
    }
    bool flip = a->flip && kd_rng_uniform(rng) < 0.5;
    if (a->affine || flip)
        kd_affine(src, h, w, c, theta, tx, ty, shear, zx, zy, flip, a->fill, a->cval, dst);
    else
        memcpy(dst, src, (size_t)h * w * c);
}

/* ---- RandAugment ---------------------------------------------------------------------- */

enum {
    RA_IDENTITY, RA_AUTOCONTRAST, RA_EQUALIZE, RA_ROTATE, RA_SOLARIZE, RA_COLOR, RA_POSTERIZE,
    RA_CONTRAST, RA_BRIGHTNESS, RA_SHARPNESS, RA_SHEAR_X, RA_SHEAR_Y, RA_TRANSLATE_X,
    RA_TRANSLATE_Y, RA_COUNT
};

static inline uint8_t clamp8(double v)
{
    v = floor(v + 0.5);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static uint8_t luma_of(const uint8_t *p, int c)
{
    return c == 1 ? p[0] : (uint8_t)((p[0] * 299 + p[1] * 587 + p[2] * 114 + 500) / 1000);
}

/* out = degenerate + f * (img - degenerate), PIL's ImageEnhance blend. */
static void blend(uint8_t *img, const uint8_t *degenerate, size_t n, double f)
{
    for (size_t i = 0; i < n; i++)
        img[i] = clamp8(degenerate[i] + f * (img[i] - degenerate[i]));
}

static void autocontrast(uint8_t *img, size_t pixels, int c)
{
    for (int ch = 0; ch < c; ch++) {
        int lo = 255, hi = 0;
        for (size_t i = 0; i < pixels; i++) {
            int v = img[i * c + ch];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (hi <= lo)
            continue;
        double scale = 255.0 / (hi - lo);
        for (size_t i = 0; i < pixels; i++)
            img[i * c + ch] = clamp8((img[i * c + ch] - lo) * scale);
    }
}

/* PIL's ImageOps.equalize, channel by channel. */
static void equalize(uint8_t *img, size_t pixels, int c)
{
    for (int ch = 0; ch < c; ch++) {
        size_t hist[256] = {0};
        for (size_t i = 0; i < pixels; i++)
            hist[img[i * c + ch]]++;
        int last = 255;
        while (last > 0 && hist[last] == 0)
            last--;
        size_t step = (pixels - hist[last]) / 255;
        if (step == 0)
            continue;
        uint8_t lut[256];
        size_t acc = step / 2;
        for (int v = 0; v < 256; v++) {
            size_t q = acc / step;
            lut[v] = (uint8_t)(q > 255 ? 255 : q);
            acc += hist[v];
        }
        for (size_t i = 0; i < pixels; i++)
            img[i * c + ch] = lut[img[i * c + ch]];
    }
}

/* PIL's ImageFilter.SMOOTH kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 inside, edges kept. */
static void smooth(const uint8_t *img, int h, int w, int c, uint8_t *out)
{
    memcpy(out, img, (size_t)h * w * c);
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++)
            for (int ch = 0; ch < c; ch++) {
                int s = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                        s += img[((size_t)(y + dy) * w + x + dx) * c + ch] * (dy || dx ? 1 : 5);
                out[((size_t)y * w + x) * c + ch] = (uint8_t)((s + 6) / 13);
            }
}

/* One operation at level in [0, 1] (m / 30); `sign` is +1 or -1. */
static void randaugment_op(int op, double level, double sign, uint8_t *img, int h, int w, int c,
                           uint8_t *tmp)
{
    size_t pixels = (size_t)h * w, n = pixels * c;
    double factor = 1.0 + sign * 0.9 * level; /* enhancement factors in [0.1, 1.9] */
    mat3 t = {{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};
    switch (op) {
    case RA_IDENTITY: return;
    case RA_AUTOCONTRAST: autocontrast(img, pixels, c); return;
    case RA_EQUALIZE: equalize(img, pixels, c); return;
    case RA_SOLARIZE: {
        int threshold = (int)(256 - 256 * level);
        for (size_t i = 0; i < n; i++)
            if (img[i] >= threshold)
                img[i] = (uint8_t)(255 - img[i]);
        return;
    }
    case RA_POSTERIZE: {
        int bits = 8 - (int)floor(4 * level + 0.5);
        uint8_t mask = (uint8_t)(0xFF << (8 - bits));
        for (size_t i = 0; i < n; i++)
            img[i] &= mask;
        return;
    }
    case RA_COLOR:
        if (c == 3) {
            for (size_t i = 0; i < pixels; i++)
                tmp[i * 3] = tmp[i * 3 + 1] = tmp[i * 3 + 2] = luma_of(img + i * 3, 3);
            blend(img, tmp, n, factor);
        }
        return;
    case RA_CONTRAST: {
        double sum = 0;
        for (size_t i = 0; i < pixels; i++)
            sum += luma_of(img + i * c, c);
        uint8_t mean = (uint8_t)floor(sum / (double)pixels + 0.5);
        memset(tmp, mean, n);
        blend(img, tmp, n, factor);
        return;
    }
    case RA_BRIGHTNESS:
        memset(tmp, 0, n);
        blend(img, tmp, n, factor);
        return;
    case RA_SHARPNESS:
        smooth(img, h, w, c, tmp);
        blend(img, tmp, n, factor);
        return;
    case RA_ROTATE: {
        double a = sign * 30.0 * level * 3.14159265358979323846 / 180.0;
        mat3 r = {{{cos(a), -sin(a), 0}, {sin(a), cos(a), 0}, {0, 0, 1}}};
        t = about_centre(r, h, w);
        break;
    }
    case RA_SHEAR_X: t.m[1][0] = sign * 0.3 * level; break;  /* x_in = x + s y */
    case RA_SHEAR_Y: t.m[0][1] = sign * 0.3 * level; break;  /* y_in = y + s x */
    case RA_TRANSLATE_X: t.m[1][2] = sign * 0.45 * level * w; break;
    case RA_TRANSLATE_Y: t.m[0][2] = sign * 0.45 * level * h; break;
    default: return;
    }
    /* geometric operations: nearest sampling, grey fill, as the reference policies */
    warp(img, h, w, c, &t, KDENS_FILL_CONSTANT, 128, false, tmp);
    memcpy(img, tmp, n);
}

void kd_augment_apply(const kdens_augment *a, const uint8_t *src, int h, int w, int c,
                      uint64_t seed, uint8_t *dst, uint8_t *work, uint8_t *tmp)
{
    size_t n = (size_t)h * w * c;
    kd_rng rng;
    kd_rng_seed(&rng, seed);
    const uint8_t *in = src;
    if (a->ra_n > 0) {
        memcpy(work, src, n);
        for (int k = 0; k < a->ra_n; k++) {
            int op = (int)kd_rng_below(&rng, RA_COUNT);
            double sign = kd_rng_uniform(&rng) < 0.5 ? -1.0 : 1.0;
            randaugment_op(op, a->ra_m / 30.0, sign, work, h, w, c, tmp);
        }
        in = work;
    }
    keras_affine(a, &rng, in, h, w, c, dst);
}

kdens_status kdens_augment_apply(const kdens_augment *a, const uint8_t *src, int height,
                                 int width, int channels, uint64_t seed, uint8_t *dst)
{
    if (!a || !src || !dst)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (height < 1 || width < 1 || (channels != 1 && channels != 3) ||
        (size_t)height * width > ((size_t)1 << 28))
        return kd_fail(KDENS_E_ARG, "image of %dx%dx%d cannot be augmented", height, width,
                       channels);
    size_t n = (size_t)height * width * channels;
    uint8_t *scratch = a->ra_n > 0 ? malloc(2 * n) : NULL;
    if (a->ra_n > 0 && !scratch)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kd_augment_apply(a, src, height, width, channels, seed, dst, scratch,
                     scratch ? scratch + n : NULL);
    free(scratch);
    return KDENS_OK;
}

void kd_randaugment_op(int op, int m, int sign, uint8_t *img, int h, int w, int c, uint8_t *tmp)
{
    randaugment_op(op, m / 30.0, sign < 0 ? -1.0 : 1.0, img, h, w, c, tmp);
}

/* Quantised convolution and dense layers (qconv.h): packing, the padded or
 * gathered input rows, the dispatched int8 tiles and the requantisation.
 * Compiled once: the requantisation is plain C without contraction, so its
 * float operations -- and with the exact int32 sums, every output byte --
 * are the same on every kernel path. */
#include "qconv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* GCC does not contract across -std=c11; clang does by default (within an
 * expression), which would fuse the requantisation's multiply and add in
 * the clones that have FMA and break "the same bits on every path". */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

/* Panels of output channels per call of a kernel: the int32 tile then
 * stays within 12 KiB of stack. */
#define KD_QPANELS 16

kdens_status kd_qconv_init(kd_qconv *q, const kd_conv_geom *g, const int8_t *wq,
                           const float *w_scale, const float *bias, float in_scale, int in_zp,
                           float out_scale, int out_zp, kd_qact act)
{
    memset(q, 0, sizeof *q);
    if ((g->dh > 1 && g->kh > 1) || (g->dw > 1 && g->kw > 1)) /* quant.c keeps them float */
        return kd_fail(KDENS_E_ARG, "int8 convolutions have no dilation");
    q->g = *g;
    q->g.groups = 1;
    q->cp = (g->c + 3) / 4 * 4;
    q->k = g->kh * g->kw * g->c;
    q->kp = g->kh * g->kw * q->cp;
    q->n = g->oc;
    q->panels = (q->n + 15) / 16;
    q->in_zp = (uint8_t)in_zp;
    q->in_place = q->cp == g->c && g->pt == 0 && g->pl == 0 &&
                  (g->oh - 1) * g->sh + g->kh == g->h && (g->ow - 1) * g->sw + g->kw == g->w;
    size_t np = (size_t)q->panels * 16;
    q->w = kd_alloc_aligned((size_t)q->kp * np);
    q->corr = malloc(sizeof(int32_t) * np);
    q->mul_f = malloc(sizeof(float) * np);
    q->add_f = malloc(sizeof(float) * np);
    q->mul_q = malloc(sizeof(float) * np);
    q->add_q = malloc(sizeof(float) * np);
    q->tap_off = malloc(sizeof(int32_t) * (size_t)g->kh * g->kw);
    if (!q->w || !q->corr || !q->mul_f || !q->add_f || !q->mul_q || !q->add_q || !q->tap_off) {
        kd_qconv_release(q);
        return kd_fail(KDENS_E_NOMEM, "out of memory preparing an int8 layer");
    }
    memset(q->w, 0, (size_t)q->kp * np);
    for (int k = 0; k < q->k; k++) {
        int kk = k / g->c * q->cp + k % g->c; /* the row in the padded order */
        for (int j = 0; j < q->n; j++)
            q->w[(size_t)(j / 16) * q->kp * 16 + (size_t)(kk / 4) * 64 + 4 * (j % 16) + kk % 4] =
                wq[(size_t)k * q->n + j];
    }
    q->lo_f = act != KD_QACT_NONE ? 0.0f : -INFINITY;
    q->hi_f = act == KD_QACT_RELU6 ? 6.0f : INFINITY;
    /* The u8 clamp: the activation's range in output units, within 0..255. */
    q->lo_q = 0.0f;
    q->hi_q = 255.0f;
    if (out_scale > 0) {
        if (act != KD_QACT_NONE)
            q->lo_q = (float)out_zp;
        if (act == KD_QACT_RELU6)
            q->hi_q = fminf(255.0f, (float)out_zp + floorf(6.0f / out_scale + 0.5f));
    }
    for (size_t j = 0; j < np; j++) {
        bool real = j < (size_t)q->n;
        int32_t sum = 0;
        for (int k = 0; real && k < q->k; k++)
            sum += wq[(size_t)k * q->n + j];
        q->corr[j] = in_zp * sum;
        float b = real && bias ? bias[j] : 0.0f;
        float s = real ? in_scale * w_scale[j] : 0.0f;
        q->mul_f[j] = s;
        q->add_f[j] = b;
        q->mul_q[j] = out_scale > 0 ? s / out_scale : 0.0f;
        q->add_q[j] = out_scale > 0 ? b / out_scale + ((float)out_zp + 0.5f) : 0.0f;
    }
    int wp = (g->ow - 1) * g->sw + g->kw;
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            q->tap_off[ky * g->kw + kx] = (ky * wp + kx) * q->cp;
    return KDENS_OK;
}

void kd_qconv_release(kd_qconv *q)
{
    kd_free_aligned(q->w);
    free(q->corr);
    free(q->mul_f);
    free(q->add_f);
    free(q->mul_q);
    free(q->add_q);
    free(q->tap_off);
    memset(q, 0, sizeof *q);
}

/* The padded input covers exactly the windows of the outputs. */
static size_t padded_image(const kd_qconv *q)
{
    const kd_conv_geom *g = &q->g;
    return (size_t)((g->oh - 1) * g->sh + g->kh) * ((g->ow - 1) * g->sw + g->kw) * q->cp;
}

size_t kd_qconv_pad_bytes(const kd_qconv *q, size_t n)
{
    return q->in_place ? 0 : n * padded_image(q) + 64;
}

typedef struct qjob {
    const kd_qconv *q;
    kd_qgemm_fn kernel, kernel_u8; /* kernel_u8: requantising to u8 itself, or NULL */
    size_t n;
    const uint8_t *x;
    uint8_t *y8, *pad;
    float *yf;
} qjob;

/* Padding and the extra channels hold the input's zero point (the extra
 * channels' weights are 0, so any value would do there). */
static void pad_images(size_t begin, size_t end, void *arg)
{
    const qjob *j = arg;
    const kd_conv_geom *g = &j->q->g;
    int hp = (g->oh - 1) * g->sh + g->kh, wp = (g->ow - 1) * g->sw + g->kw, c = g->c;
    int cp = j->q->cp;
    size_t img = padded_image(j->q);
    int x0 = g->pl, x1 = KD_MIN(wp, g->w + g->pl); /* the padded columns holding input */
    for (size_t i = begin; i < end; i++) {
        uint8_t *dst = j->pad + i * img;
        const uint8_t *src = j->x + i * (size_t)g->h * g->w * c;
        memset(dst, j->q->in_zp, img);
        for (int y = 0; y < hp && x1 > x0; y++) {
            int iy = y - g->pt;
            if (iy < 0 || iy >= g->h)
                continue;
            uint8_t *d = dst + ((size_t)y * wp + x0) * cp;
            const uint8_t *s = src + ((size_t)iy * g->w + x0 - g->pl) * c;
            if (c == cp)
                memcpy(d, s, (size_t)(x1 - x0) * c);
            else
                for (int x = x0; x < x1; x++, d += cp, s += c)
                    memcpy(d, s, (size_t)c);
        }
    }
}

/* One output of either writer below: (acc - corr) * mul + add, clamped to
 * [lo, hi] (the file is compiled without contraction: the same bits on
 * every path). */
static inline float requant_one(int32_t acc, int32_t corr, float mul, float add, float lo,
                                float hi)
{
    float v = (float)(acc - corr) * mul + add;
    v = v > lo ? v : lo;
    return v < hi ? v : hi;
}

/* out = (acc - corr) * mul + add, clamped, for columns [j0, j1) of `rows`
 * rows; corr, mul and add hold whole panels of 16.  u8 outputs are rounded
 * half up: add holds + 0.5 and the clamps keep the value in [0.5, 255.5],
 * where truncation rounds.  A panel at a time, 16 lanes wide, so that the
 * compiler keeps it in one vector without loop remainders.  Cloned per
 * instruction set (KD_CLONES) and static, because clang names the clones'
 * dispatcher apart from the function, out of reach of other files: the
 * kd_ functions below call them. */
KD_CLONES static void requant_f32_impl(const int32_t *restrict acc, int ldc, int rows, int j0,
                                       int j1, const int32_t *restrict corr,
                                       const float *restrict mul, const float *restrict add,
                                       float lo, float hi, float *restrict out,
                                       size_t out_stride)
{
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + (size_t)r * ldc;
        float *o = out + (size_t)r * out_stride;
        for (int j = j0; j < j1; j += 16) {
            int cnt = j1 - j >= 16 ? 16 : j1 - j;
            if (cnt == 16)
                for (int t = 0; t < 16; t++) {
                    o[j + t] = requant_one(a[j - j0 + t], corr[j + t], mul[j + t], add[j + t],
                                           lo, hi);
                }
            else
                for (int t = 0; t < cnt; t++) {
                    o[j + t] = requant_one(a[j - j0 + t], corr[j + t], mul[j + t], add[j + t],
                                           lo, hi);
                }
        }
    }
}

void kd_requant_f32(const int32_t *restrict acc, int ldc, int rows, int j0, int j1,
                    const int32_t *restrict corr, const float *restrict mul,
                    const float *restrict add, float lo, float hi, float *restrict out,
                    size_t out_stride)
{
    requant_f32_impl(acc, ldc, rows, j0, j1, corr, mul, add, lo, hi, out, out_stride);
}

KD_CLONES static void requant_u8_impl(const int32_t *restrict acc, int ldc, int rows, int j0,
                                      int j1, const int32_t *restrict corr,
                                      const float *restrict mul, const float *restrict add,
                                      float lo, float hi, uint8_t *restrict out,
                                      size_t out_stride)
{
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + (size_t)r * ldc;
        uint8_t *o = out + (size_t)r * out_stride;
        for (int j = j0; j < j1; j += 16) {
            int cnt = j1 - j >= 16 ? 16 : j1 - j;
            if (cnt == 16)
                for (int t = 0; t < 16; t++) {
                    o[j + t] = (uint8_t)(int32_t)requant_one(a[j - j0 + t], corr[j + t],
                                                             mul[j + t], add[j + t], lo, hi);
                }
            else
                for (int t = 0; t < cnt; t++) {
                    o[j + t] = (uint8_t)(int32_t)requant_one(a[j - j0 + t], corr[j + t],
                                                             mul[j + t], add[j + t], lo, hi);
                }
        }
    }
}

void kd_requant_u8(const int32_t *restrict acc, int ldc, int rows, int j0, int j1,
                   const int32_t *restrict corr, const float *restrict mul,
                   const float *restrict add, float lo, float hi, uint8_t *restrict out,
                   size_t out_stride)
{
    requant_u8_impl(acc, ldc, rows, j0, j1, corr, mul, add, lo, hi, out, out_stride);
}

/* Tiles of KD_QROWS consecutive output pixels -- over rows and images, so
 * that narrow outputs leave no tile part-empty -- each for every panel
 * group, then requantised while its sums are in L1. */
static void conv_part(int part, int parts, void *arg)
{
    const qjob *j = arg;
    const kd_qconv *q = j->q;
    const kd_conv_geom *g = &q->g;
    size_t wp = (size_t)(g->ow - 1) * g->sw + g->kw, img = padded_image(q);
    size_t plane = (size_t)g->oh * g->ow, pixels = j->n * plane;
    size_t begin, end;
    kd_split((pixels + KD_QROWS - 1) / KD_QROWS, part, parts, &begin, &end);
    int32_t acc[KD_QROWS * KD_QPANELS * 16];
    size_t row_off[KD_QROWS];
    kd_qgemm_args args = {0};
    args.a = j->pad;
    args.row_off = row_off;
    args.taps = g->kh * g->kw;
    args.tap_off = q->tap_off;
    args.seg = q->cp;
    args.c = acc;
    args.lo = q->lo_q + 0.5f;
    args.hi = q->hi_q + 0.5f;
    args.out_stride = (size_t)q->n;
    for (size_t t = begin; t < end; t++) {
        size_t p0 = t * KD_QROWS;
        args.rows = (int)KD_MIN((size_t)KD_QROWS, pixels - p0);
        size_t i = p0 / plane, oy = p0 % plane / g->ow, ox = p0 % g->ow;
        for (int r = 0; r < KD_QROWS; r++) { /* rows past the last pixel repeat it */
            row_off[r] = i * img + (oy * g->sh * wp + ox * g->sw) * q->cp;
            if (r + 1 < args.rows && ++ox == (size_t)g->ow) {
                ox = 0;
                if (++oy == (size_t)g->oh) {
                    oy = 0;
                    i++;
                }
            }
        }
        for (int p = 0; p < q->panels; p += KD_QPANELS) {
            args.panels = KD_MIN(KD_QPANELS, q->panels - p);
            args.w = q->w + (size_t)p * q->kp * 16;
            args.ldc = args.panels * 16;
            int j0 = 16 * p, j1 = KD_MIN(q->n, 16 * (p + args.panels));
            if (j->kernel_u8) { /* requantised in the kernel */
                args.corr = q->corr + j0;
                args.mul = q->mul_q + j0;
                args.add = q->add_q + j0;
                args.out = j->y8 + p0 * q->n + j0;
                args.n = j1 - j0;
                j->kernel_u8(&args);
                continue;
            }
            j->kernel(&args);
            if (j->yf)
                kd_requant_f32(acc, args.ldc, args.rows, j0, j1, q->corr, q->mul_f, q->add_f,
                               q->lo_f, q->hi_f, j->yf + p0 * q->n, (size_t)q->n);
            if (j->y8)
                kd_requant_u8(acc, args.ldc, args.rows, j0, j1, q->corr, q->mul_q, q->add_q,
                              q->lo_q + 0.5f, q->hi_q + 0.5f, j->y8 + p0 * q->n, (size_t)q->n);
        }
    }
}

void kd_qconv_forward(const kd_qconv *q, kd_qgemm_fn kernel, size_t n, const uint8_t *x,
                      uint8_t *y8, float *yf, uint8_t *pad)
{
    /* a kernel that requantises itself, when the output is u8 alone */
    qjob j = {q, kernel, y8 && !yf ? kd_qgemm_kernel_u8() : NULL, n, x, y8, pad, yf};
    if (q->in_place)
        j.pad = (uint8_t *)x; /* only read */
    else
        kd_parallel_for(n, 1, pad_images, &j);
    size_t tiles = (n * q->g.oh * q->g.ow + KD_QROWS - 1) / KD_QROWS;
    kd_parallel_parts((int)KD_MIN((size_t)kd_threads(), tiles), conv_part, &j);
}

void kd_qadd_init(kd_qadd *q, float sa, int za, float sb, int zb, float out_scale, int out_zp,
                  kd_qact act)
{
    memset(q, 0, sizeof *q);
    q->fa = sa;
    q->fb = sb;
    q->cf = -((float)za * sa + (float)zb * sb);
    q->lo_f = act != KD_QACT_NONE ? 0.0f : -INFINITY;
    q->hi_f = act == KD_QACT_RELU6 ? 6.0f : INFINITY;
    q->lo_q = 0.5f;
    q->hi_q = 255.5f;
    if (out_scale > 0) {
        q->ma = sa / out_scale;
        q->mb = sb / out_scale;
        q->cq = q->cf / out_scale + ((float)out_zp + 0.5f);
        if (act != KD_QACT_NONE)
            q->lo_q = (float)out_zp + 0.5f;
        if (act == KD_QACT_RELU6)
            q->hi_q = fminf(255.0f, (float)out_zp + floorf(6.0f / out_scale + 0.5f)) + 0.5f;
    }
}

typedef struct qadd_job {
    const kd_qadd *q;
    const uint8_t *a, *b;
    uint8_t *y8;
    float *yf;
} qadd_job;

KD_CLONES static void qadd_range(size_t begin, size_t end, void *arg)
{
    const qadd_job *j = arg;
    const kd_qadd *q = j->q;
    const uint8_t *restrict a = j->a, *restrict b = j->b;
    if (j->y8) {
        uint8_t *restrict y = j->y8;
        float ma = q->ma, mb = q->mb, c = q->cq, lo = q->lo_q, hi = q->hi_q;
        for (size_t i = begin; i < end; i++) {
            float v = (float)a[i] * ma + (float)b[i] * mb + c;
            v = v > lo ? v : lo;
            v = v < hi ? v : hi;
            y[i] = (uint8_t)(int32_t)v;
        }
    }
    if (j->yf) {
        float *restrict y = j->yf;
        float fa = q->fa, fb = q->fb, c = q->cf, lo = q->lo_f, hi = q->hi_f;
        for (size_t i = begin; i < end; i++) {
            float v = (float)a[i] * fa + (float)b[i] * fb + c;
            v = v > lo ? v : lo;
            y[i] = v < hi ? v : hi;
        }
    }
}

void kd_qadd_forward(const kd_qadd *q, size_t count, const uint8_t *a, const uint8_t *b,
                     uint8_t *y8, float *yf)
{
    qadd_job j = {q, a, b, y8, yf};
    kd_parallel_for(count, 1 << 15, qadd_range, &j);
}

KD_CLONES static void quantize_u8_impl(const float *restrict x, size_t count, float inv_scale,
                                       int zp, uint8_t *restrict q)
{
    /* + 0.5 and a clamp to [0.5, 255.5]: truncation then rounds half up
     * (written so that the compiler vectorises it) */
    float z = (float)zp + 0.5f;
    for (size_t i = 0; i < count; i++) {
        float v = x[i] * inv_scale + z;
        v = v > 0.5f ? v : 0.5f; /* NaN -> 0 */
        v = v < 255.5f ? v : 255.0f;
        q[i] = (uint8_t)(int32_t)v;
    }
}

void kd_quantize_u8(const float *restrict x, size_t count, float inv_scale, int zp,
                    uint8_t *restrict q)
{
    quantize_u8_impl(x, count, inv_scale, zp, q);
}

typedef struct qpool_job {
    const kd_pool_geom *g;
    const uint8_t *x;
    uint8_t zp, *y;
} qpool_job;

KD_CLONES static void qmaxpool_rows(size_t begin, size_t end, void *arg)
{
    const qpool_job *j = arg;
    const kd_pool_geom *g = j->g;
    int c = g->c;
    for (size_t r = begin; r < end; r++) {
        size_t img = r / g->oh;
        int oy = (int)(r % g->oh);
        const uint8_t *xi = j->x + img * (size_t)g->h * g->w * c;
        for (int ox = 0; ox < g->ow; ox++) {
            uint8_t *yo = j->y + (r * g->ow + ox) * c;
            int ky0, ky1, kx0, kx1;
            kd_window(oy, g->sh, g->pt, g->kh, g->h, &ky0, &ky1);
            kd_window(ox, g->sw, g->pl, g->kw, g->w, &kx0, &kx1);
            memset(yo, ky1 > ky0 && kx1 > kx0 ? 0 : j->zp, (size_t)c);
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) {
                    const uint8_t *xp = xi + ((size_t)(oy * g->sh + ky - g->pt) * g->w +
                                              (ox * g->sw + kx - g->pl)) * c;
                    for (int ch = 0; ch < c; ch++)
                        yo[ch] = xp[ch] > yo[ch] ? xp[ch] : yo[ch];
                }
        }
    }
}

void kd_qmaxpool(const kd_pool_geom *g, const uint8_t *x, uint8_t zp, uint8_t *y)
{
    qpool_job j = {g, x, zp, y};
    kd_parallel_for((size_t)g->n * g->oh, 4, qmaxpool_rows, &j);
}

KD_CLONES static void dequantize_impl(const uint8_t *restrict q, size_t count, float scale,
                                      int zp, float *restrict x)
{
    for (size_t i = 0; i < count; i++)
        x[i] = scale * (float)((int)q[i] - zp);
}

void kd_dequantize_u8(const uint8_t *q, size_t count, float scale, int zp, float *x)
{
    dequantize_impl(q, count, scale, zp, x);
}

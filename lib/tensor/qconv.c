/* Quantised convolution and dense layers (qconv.h): packing, the padded or
 * gathered input rows, the dispatched int8 tiles and the requantisation.
 * Compiled once: the requantisation is plain C without contraction, so its
 * float operations -- and with the exact int32 sums, every output byte --
 * are the same on every kernel path. */
#include "qconv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Panels of output channels per call of a kernel: the int32 tile then
 * stays within 12 KiB of stack. */
#define KD_QPANELS 16

kdens_status kd_qconv_init(kd_qconv *q, const kd_conv_geom *g, const int8_t *wq,
                           const float *w_scale, const float *bias, float in_scale, int in_zp,
                           float out_scale, int out_zp, kd_qact act)
{
    memset(q, 0, sizeof *q);
    q->g = *g;
    q->g.groups = 1;
    q->k = g->kh * g->kw * g->c;
    q->n = g->oc;
    q->direct = g->c % 4 == 0;
    q->kp = (q->k + 3) / 4 * 4;
    q->panels = (q->n + 15) / 16;
    q->in_zp = (uint8_t)in_zp;
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
    for (int k = 0; k < q->k; k++)
        for (int j = 0; j < q->n; j++)
            q->w[(size_t)(j / 16) * q->kp * 16 + (size_t)(k / 4) * 64 + 4 * (j % 16) + k % 4] =
                wq[(size_t)k * q->n + j];
    float lo = -INFINITY, hi = INFINITY;
    if (act != KD_QACT_NONE)
        lo = 0.0f;
    if (act == KD_QACT_RELU6)
        hi = 6.0f;
    q->lo_f = lo;
    q->hi_f = hi;
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
        q->add_q[j] = out_scale > 0 ? b / out_scale + (float)out_zp : 0.0f;
    }
    int wp = (g->ow - 1) * g->sw + g->kw;
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            q->tap_off[ky * g->kw + kx] = (ky * wp + kx) * g->c;
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
    return (size_t)((g->oh - 1) * g->sh + g->kh) * ((g->ow - 1) * g->sw + g->kw) * g->c;
}

size_t kd_qconv_pad_bytes(const kd_qconv *q, size_t n)
{
    if (!q->direct)
        return 0;
    /* the rows of the last tile beyond the output are read, not stored */
    return n * padded_image(q) + (size_t)(KD_QROWS * q->g.sw + q->g.kw) * q->g.c + 64;
}

size_t kd_qconv_part_bytes(const kd_qconv *q)
{
    return q->direct ? 0 : (size_t)KD_QROWS * q->kp;
}

typedef struct qjob {
    const kd_qconv *q;
    kd_qgemm_fn kernel;
    size_t n;
    const uint8_t *x;
    uint8_t *y8, *pad, *scratch;
    float *yf;
    size_t part_stride;
} qjob;

static void pad_images(size_t begin, size_t end, void *arg)
{
    const qjob *j = arg;
    const kd_conv_geom *g = &j->q->g;
    int hp = (g->oh - 1) * g->sh + g->kh, wp = (g->ow - 1) * g->sw + g->kw, c = g->c;
    size_t img = padded_image(j->q);
    for (size_t i = begin; i < end; i++) {
        uint8_t *dst = j->pad + i * img;
        const uint8_t *src = j->x + i * (size_t)g->h * g->w * c;
        memset(dst, j->q->in_zp, img);
        for (int y = 0; y < hp; y++) {
            int iy = y - g->pt;
            if (iy < 0 || iy >= g->h)
                continue;
            int x0 = KD_MAX(0, g->pl), x1 = KD_MIN(wp, g->w + g->pl); /* padded columns */
            if (x1 > x0)
                memcpy(dst + ((size_t)y * wp + x0) * c, src + ((size_t)iy * g->w + x0 - g->pl) * c,
                       (size_t)(x1 - x0) * c);
        }
    }
}

/* out = (acc - corr) * mul + add, clamped; u8 outputs rounded half up
 * (the clamp keeps them >= 0, where + 0.5 and truncation round). */
static void requant(const kd_qconv *q, const int32_t *acc, int ldc, int rows, int j0, int j1,
                    size_t row0, uint8_t *y8, float *yf)
{
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + (size_t)r * ldc;
        size_t o = (row0 + (size_t)r) * q->n;
        if (yf)
            for (int j = j0; j < j1; j++) {
                float v = (float)(a[j - j0] - q->corr[j]) * q->mul_f[j] + q->add_f[j];
                v = v < q->lo_f ? q->lo_f : v;
                yf[o + j] = v > q->hi_f ? q->hi_f : v;
            }
        if (y8)
            for (int j = j0; j < j1; j++) {
                float v = (float)(a[j - j0] - q->corr[j]) * q->mul_q[j] + q->add_q[j];
                v = v > q->lo_q ? v : q->lo_q;
                v = v < q->hi_q ? v : q->hi_q;
                y8[o + j] = (uint8_t)(int)(v + 0.5f);
            }
    }
}

/* One tile of rows for every panel group, then its requantisation. */
static void run_tile(const qjob *j, kd_qgemm_args *args, size_t row0)
{
    const kd_qconv *q = j->q;
    int32_t acc[KD_QROWS * KD_QPANELS * 16];
    for (int p0 = 0; p0 < q->panels; p0 += KD_QPANELS) {
        args->panels = KD_MIN(KD_QPANELS, q->panels - p0);
        args->w = q->w + (size_t)p0 * q->kp * 16;
        args->c = acc;
        args->ldc = args->panels * 16;
        j->kernel(args);
        requant(q, acc, args->ldc, args->rows, 16 * p0, KD_MIN(q->n, 16 * (p0 + args->panels)),
                row0, j->y8, j->yf);
    }
}

static void direct_part(int part, int parts, void *arg)
{
    const qjob *j = arg;
    const kd_qconv *q = j->q;
    const kd_conv_geom *g = &q->g;
    int wp = (g->ow - 1) * g->sw + g->kw;
    size_t begin, end, img = padded_image(q);
    kd_split(j->n * g->oh, part, parts, &begin, &end);
    kd_qgemm_args args = {0};
    args.row_stride = (size_t)g->sw * g->c;
    args.taps = g->kh * g->kw;
    args.tap_off = q->tap_off;
    args.seg = g->c;
    for (size_t line = begin; line < end; line++) {
        size_t i = line / g->oh;
        int oy = (int)(line % g->oh);
        const uint8_t *row = j->pad + i * img + (size_t)oy * g->sh * wp * g->c;
        for (int ox = 0; ox < g->ow; ox += KD_QROWS) {
            args.a = row + (size_t)ox * g->sw * g->c;
            args.rows = KD_MIN(KD_QROWS, g->ow - ox);
            run_tile(j, &args, line * g->ow + (size_t)ox);
        }
    }
}

/* im2col rows of output pixels [p, p + rows) into dst (kp bytes each). */
static void gather(const kd_qconv *q, const uint8_t *x, size_t p, int rows, uint8_t *dst)
{
    const kd_conv_geom *g = &q->g;
    for (int r = 0; r < rows; r++, p++) {
        size_t i = p / ((size_t)g->oh * g->ow);
        int oy = (int)(p / g->ow % g->oh), ox = (int)(p % g->ow);
        uint8_t *d = dst + (size_t)r * q->kp;
        const uint8_t *img = x + i * (size_t)g->h * g->w * g->c;
        for (int ky = 0; ky < g->kh; ky++) {
            int iy = oy * g->sh - g->pt + ky;
            for (int kx = 0; kx < g->kw; kx++, d += g->c) {
                int ix = ox * g->sw - g->pl + kx;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                    memset(d, q->in_zp, (size_t)g->c);
                else
                    memcpy(d, img + ((size_t)iy * g->w + ix) * g->c, (size_t)g->c);
            }
        }
        memset(d, 0, (size_t)(q->kp - q->k));
    }
}

static void im2col_part(int part, int parts, void *arg)
{
    const qjob *j = arg;
    const kd_qconv *q = j->q;
    size_t pixels = j->n * q->g.oh * q->g.ow, tiles = (pixels + KD_QROWS - 1) / KD_QROWS;
    size_t begin, end;
    kd_split(tiles, part, parts, &begin, &end);
    uint8_t *rows = j->scratch + (size_t)part * j->part_stride;
    int32_t off = 0;
    kd_qgemm_args args = {0};
    args.a = rows;
    args.row_stride = (size_t)q->kp;
    args.taps = 1;
    args.tap_off = &off;
    args.seg = q->kp;
    for (size_t t = begin; t < end; t++) {
        size_t p = t * KD_QROWS;
        args.rows = (int)KD_MIN((size_t)KD_QROWS, pixels - p);
        gather(q, j->x, p, args.rows, rows);
        run_tile(j, &args, p);
    }
}

void kd_qconv_forward(const kd_qconv *q, kd_qgemm_fn kernel, size_t n, const uint8_t *x,
                      uint8_t *y8, float *yf, uint8_t *pad, uint8_t *scratch,
                      size_t part_stride)
{
    qjob j = {q, kernel, n, x, y8, pad, scratch, yf, part_stride};
    if (q->direct) {
        kd_parallel_for(n, 1, pad_images, &j);
        kd_parallel_parts(kd_threads(), direct_part, &j);
    } else {
        kd_parallel_parts(kd_threads(), im2col_part, &j);
    }
}

KD_CLONES void kd_quantize_u8(const float *x, size_t count, float inv_scale, int zp, uint8_t *q)
{
    float z = (float)zp;
    for (size_t i = 0; i < count; i++) {
        float v = x[i] * inv_scale + z;
        v = v > 0.0f ? v : 0.0f; /* NaN -> 0 */
        v = v < 255.0f ? v : 255.0f;
        q[i] = (uint8_t)(int)(v + 0.5f);
    }
}

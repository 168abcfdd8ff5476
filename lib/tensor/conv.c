/* 2-D convolution on NHWC tensors.  The algorithm is chosen per layer shape:
 *  - 1x1, stride 1, no padding, one group: the input already is the GEMM
 *    operand [N*H*W x C], so the convolution is a single GEMM;
 *  - depthwise (one input channel per group): direct loops vectorised over
 *    channels, since a GEMM with K = kh*kw would be mostly overhead;
 *  - everything else: im2col per group and GEMM over a chunk of the batch.
 * Chunks of whole images bound the im2col workspace (and keep it warm in
 * cache); the chunk size depends on the shape only, so results do not
 * depend on the thread count. */
#include "tensor.h"

#include <string.h>

#define KD_COL_CHUNK_FLOATS ((size_t)1 << 21) /* 8 MiB of im2col per chunk */

kd_conv_algo kd_conv_choose(const kd_conv_geom *g)
{
    if (g->groups > 1 && g->groups == g->c)
        return KD_CONV_DEPTHWISE;
    if (g->groups == 1 && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 &&
        g->pl == 0 && g->oh == g->h && g->ow == g->w)
        return KD_CONV_GEMM_1X1;
    return KD_CONV_IM2COL;
}

static size_t col_row_len(const kd_conv_geom *g)
{
    return (size_t)g->kh * g->kw * (g->c / g->groups);
}

static int images_per_chunk(const kd_conv_geom *g)
{
    size_t per_image = (size_t)g->oh * g->ow * col_row_len(g);
    size_t k = per_image ? KD_COL_CHUNK_FLOATS / per_image : 1;
    if (k < 1)
        k = 1;
    return (int)KD_MIN(k, (size_t)g->n);
}

size_t kd_conv_workspace(const kd_conv_geom *g)
{
    if (kd_conv_choose(g) != KD_CONV_IM2COL)
        return 0;
    /* col for the forward pass; col and dcol side by side for backward. */
    return 2 * (size_t)images_per_chunk(g) * g->oh * g->ow * col_row_len(g);
}

/* ---- im2col / col2im -------------------------------------------------------- */

struct col_job {
    const kd_conv_geom *g;
    int group;
    const float *x; /* input of the chunk's first image */
    float *col;
    float *dx;
    const float *dcol;
};

/* Rows of col are output pixels (image, oy, ox); a row holds the kh x kw
 * window of the group's channels, zero where the window leaves the image. */
static void im2col_rows(size_t begin, size_t end, void *arg)
{
    const struct col_job *j = arg;
    const kd_conv_geom *g = j->g;
    int cg = g->c / g->groups;
    size_t klen = col_row_len(g);
    for (size_t r = begin; r < end; r++) {
        size_t img = r / ((size_t)g->oh * g->ow);
        int rem = (int)(r % ((size_t)g->oh * g->ow));
        int oy = rem / g->ow, ox = rem % g->ow;
        const float *xi = j->x + img * (size_t)g->h * g->w * g->c + (size_t)j->group * cg;
        float *dst = j->col + r * klen;
        for (int ky = 0; ky < g->kh; ky++) {
            int iy = oy * g->sh + ky - g->pt;
            if (iy < 0 || iy >= g->h) {
                memset(dst, 0, sizeof(float) * (size_t)g->kw * cg);
                dst += (size_t)g->kw * cg;
                continue;
            }
            for (int kx = 0; kx < g->kw; kx++, dst += cg) {
                int ix = ox * g->sw + kx - g->pl;
                if (ix < 0 || ix >= g->w)
                    memset(dst, 0, sizeof(float) * cg);
                else
                    memcpy(dst, xi + ((size_t)iy * g->w + ix) * g->c, sizeof(float) * cg);
            }
        }
    }
}

/* The adjoint of im2col, one image per index so that writers never overlap. */
static void col2im_images(size_t begin, size_t end, void *arg)
{
    const struct col_job *j = arg;
    const kd_conv_geom *g = j->g;
    int cg = g->c / g->groups;
    size_t klen = col_row_len(g);
    for (size_t img = begin; img < end; img++) {
        float *dxi = j->dx + img * (size_t)g->h * g->w * g->c + (size_t)j->group * cg;
        const float *src = j->dcol + img * (size_t)g->oh * g->ow * klen;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh + ky - g->pt;
                    if (iy < 0 || iy >= g->h) {
                        src += (size_t)g->kw * cg;
                        continue;
                    }
                    for (int kx = 0; kx < g->kw; kx++, src += cg) {
                        int ix = ox * g->sw + kx - g->pl;
                        if (ix < 0 || ix >= g->w)
                            continue;
                        float *d = dxi + ((size_t)iy * g->w + ix) * g->c;
                        for (int c = 0; c < cg; c++)
                            d[c] += src[c];
                    }
                }
    }
}

/* ---- depthwise ----------------------------------------------------------------- */

struct dw_job {
    const kd_conv_geom *g;
    const float *x, *w, *bias, *dy;
    float *y, *dx;
};

/* One output row (image, oy) per index; multiplier m = oc / c. */
static void depthwise_forward_rows(size_t begin, size_t end, void *arg)
{
    const struct dw_job *j = arg;
    const kd_conv_geom *g = j->g;
    int m = g->oc / g->c, oc = g->oc;
    for (size_t r = begin; r < end; r++) {
        size_t img = r / g->oh;
        int oy = (int)(r % g->oh);
        const float *xi = j->x + img * (size_t)g->h * g->w * g->c;
        float *yrow = j->y + r * (size_t)g->ow * oc;
        for (int ox = 0; ox < g->ow; ox++) {
            float *yo = yrow + (size_t)ox * oc;
            if (j->bias)
                memcpy(yo, j->bias, sizeof(float) * oc);
            else
                memset(yo, 0, sizeof(float) * oc);
            for (int ky = 0; ky < g->kh; ky++) {
                int iy = oy * g->sh + ky - g->pt;
                if (iy < 0 || iy >= g->h)
                    continue;
                for (int kx = 0; kx < g->kw; kx++) {
                    int ix = ox * g->sw + kx - g->pl;
                    if (ix < 0 || ix >= g->w)
                        continue;
                    const float *xp = xi + ((size_t)iy * g->w + ix) * g->c;
                    const float *wp = j->w + ((size_t)ky * g->kw + kx) * oc;
                    if (m == 1) {
                        for (int c = 0; c < oc; c++)
                            yo[c] += xp[c] * wp[c];
                    } else {
                        for (int c = 0; c < oc; c++)
                            yo[c] += xp[c / m] * wp[c];
                    }
                }
            }
        }
    }
}

/* dx for whole images (their input windows overlap only within an image). */
static void depthwise_backward_dx_images(size_t begin, size_t end, void *arg)
{
    const struct dw_job *j = arg;
    const kd_conv_geom *g = j->g;
    int m = g->oc / g->c, oc = g->oc;
    for (size_t img = begin; img < end; img++) {
        float *dxi = j->dx + img * (size_t)g->h * g->w * g->c;
        const float *dyi = j->dy + img * (size_t)g->oh * g->ow * oc;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                const float *dyo = dyi + ((size_t)oy * g->ow + ox) * oc;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh + ky - g->pt;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    for (int kx = 0; kx < g->kw; kx++) {
                        int ix = ox * g->sw + kx - g->pl;
                        if (ix < 0 || ix >= g->w)
                            continue;
                        float *dxp = dxi + ((size_t)iy * g->w + ix) * g->c;
                        const float *wp = j->w + ((size_t)ky * g->kw + kx) * oc;
                        for (int c = 0; c < oc; c++)
                            dxp[c / m] += dyo[c] * wp[c];
                    }
                }
            }
    }
}

/* dw and db in one serial sweep: a fixed summation order keeps results
 * independent of the thread count. */
static void depthwise_backward_dw(const kd_conv_geom *g, const float *x, const float *dy,
                                  float *dw, float *db)
{
    int m = g->oc / g->c, oc = g->oc;
    for (int img = 0; img < g->n; img++) {
        const float *xi = x + (size_t)img * g->h * g->w * g->c;
        const float *dyi = dy + (size_t)img * g->oh * g->ow * oc;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                const float *dyo = dyi + ((size_t)oy * g->ow + ox) * oc;
                if (db)
                    for (int c = 0; c < oc; c++)
                        db[c] += dyo[c];
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh + ky - g->pt;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    for (int kx = 0; kx < g->kw; kx++) {
                        int ix = ox * g->sw + kx - g->pl;
                        if (ix < 0 || ix >= g->w)
                            continue;
                        const float *xp = xi + ((size_t)iy * g->w + ix) * g->c;
                        float *dwp = dw + ((size_t)ky * g->kw + kx) * oc;
                        for (int c = 0; c < oc; c++)
                            dwp[c] += xp[c / m] * dyo[c];
                    }
                }
            }
    }
}

/* ---- the public kernels ------------------------------------------------------------ */

static void fill_bias(float *y, size_t rows, int oc, const float *bias)
{
    for (size_t r = 0; r < rows; r++) {
        if (bias)
            memcpy(y + r * oc, bias, sizeof(float) * oc);
        else
            memset(y + r * oc, 0, sizeof(float) * oc);
    }
}

static void bias_grad(const float *dy, size_t rows, int oc, float *db)
{
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < oc; o++)
            db[o] += dy[r * oc + o];
}

void kd_conv_forward(const kd_conv_geom *g, const float *x, const float *w, const float *bias,
                     float *y, float *work)
{
    kd_conv_algo algo = kd_conv_choose(g);
    size_t out_pix = (size_t)g->oh * g->ow;
    if (algo == KD_CONV_DEPTHWISE) {
        struct dw_job j = {g, x, w, bias, NULL, y, NULL};
        kd_parallel_for((size_t)g->n * g->oh, 4, depthwise_forward_rows, &j);
        return;
    }
    fill_bias(y, (size_t)g->n * out_pix, g->oc, bias);
    if (algo == KD_CONV_GEMM_1X1) {
        kd_gemm(false, false, g->n * g->h * g->w, g->oc, g->c, 1.0f, x, g->c, w, g->oc, 1.0f,
                y, g->oc);
        return;
    }
    int chunk = images_per_chunk(g);
    int ocg = g->oc / g->groups;
    int klen = (int)col_row_len(g);
    for (int n0 = 0; n0 < g->n; n0 += chunk) {
        int nc = KD_MIN(chunk, g->n - n0);
        int rows = (int)(nc * out_pix);
        for (int grp = 0; grp < g->groups; grp++) {
            struct col_job j = {g, grp, x + (size_t)n0 * g->h * g->w * g->c, work, NULL, NULL};
            kd_parallel_for((size_t)rows, 64, im2col_rows, &j);
            kd_gemm(false, false, rows, ocg, klen, 1.0f, work, klen, w + (size_t)grp * ocg,
                    g->oc, 1.0f, y + (size_t)n0 * out_pix * g->oc + (size_t)grp * ocg, g->oc);
        }
    }
}

void kd_conv_backward(const kd_conv_geom *g, const float *x, const float *w, const float *dy,
                      float *dx, float *dw, float *db, float *work)
{
    kd_conv_algo algo = kd_conv_choose(g);
    size_t out_pix = (size_t)g->oh * g->ow;
    if (algo == KD_CONV_DEPTHWISE) {
        depthwise_backward_dw(g, x, dy, dw, db);
        if (dx) {
            struct dw_job j = {g, x, w, NULL, dy, NULL, dx};
            kd_parallel_for((size_t)g->n, 1, depthwise_backward_dx_images, &j);
        }
        return;
    }
    if (db)
        bias_grad(dy, (size_t)g->n * out_pix, g->oc, db);
    if (algo == KD_CONV_GEMM_1X1) {
        int rows = g->n * g->h * g->w;
        kd_gemm(true, false, g->c, g->oc, rows, 1.0f, x, g->c, dy, g->oc, 1.0f, dw, g->oc);
        if (dx)
            kd_gemm(false, true, rows, g->c, g->oc, 1.0f, dy, g->oc, w, g->oc, 1.0f, dx, g->c);
        return;
    }
    int chunk = images_per_chunk(g);
    int ocg = g->oc / g->groups;
    int klen = (int)col_row_len(g);
    float *col = work;
    float *dcol = work + (size_t)chunk * out_pix * klen;
    for (int n0 = 0; n0 < g->n; n0 += chunk) {
        int nc = KD_MIN(chunk, g->n - n0);
        int rows = (int)(nc * out_pix);
        const float *dyc = dy + (size_t)n0 * out_pix * g->oc;
        for (int grp = 0; grp < g->groups; grp++) {
            struct col_job j = {g,   grp,  x + (size_t)n0 * g->h * g->w * g->c,
                                col, NULL, NULL};
            kd_parallel_for((size_t)rows, 64, im2col_rows, &j);
            kd_gemm(true, false, klen, ocg, rows, 1.0f, col, klen, dyc + (size_t)grp * ocg,
                    g->oc, 1.0f, dw + (size_t)grp * ocg, g->oc);
            if (!dx)
                continue;
            kd_gemm(false, true, rows, klen, ocg, 1.0f, dyc + (size_t)grp * ocg, g->oc,
                    w + (size_t)grp * ocg, g->oc, 0.0f, dcol, klen);
            struct col_job b = {g, grp, NULL, NULL, dx + (size_t)n0 * g->h * g->w * g->c,
                                dcol};
            kd_parallel_for((size_t)nc, 1, col2im_images, &b);
        }
    }
}

/* Max and average pooling on NHWC tensors. */
#include "tensor.h"

#include <float.h>
#include <string.h>

struct pool_job {
    const kd_pool_geom *g;
    const float *x;
    float *y;
    int32_t *argmax;
};

/* One output row (image, oy) per index.  A NaN in the window wins (and
 * stays), as in the common frameworks. */
KD_CLONES static void maxpool_rows(size_t begin, size_t end, void *arg)
{
    const struct pool_job *j = arg;
    const kd_pool_geom *g = j->g;
    int c = g->c;
    for (size_t r = begin; r < end; r++) {
        size_t img = r / g->oh;
        int oy = (int)(r % g->oh);
        size_t xbase = img * (size_t)g->h * g->w * c;
        for (int ox = 0; ox < g->ow; ox++) {
            size_t o = (r * g->ow + ox) * c;
            float *yo = j->y + o;
            int32_t *ao = j->argmax + o;
            for (int ch = 0; ch < c; ch++) {
                yo[ch] = -FLT_MAX;
                ao[ch] = -1;
            }
            int ky0, ky1, kx0, kx1;
            kd_window(oy, g->sh, g->pt, g->kh, g->h, &ky0, &ky1);
            kd_window(ox, g->sw, g->pl, g->kw, g->w, &kx0, &kx1);
            for (int ky = ky0; ky < ky1; ky++) {
                int iy = oy * g->sh + ky - g->pt;
                for (int kx = kx0; kx < kx1; kx++) {
                    int ix = ox * g->sw + kx - g->pl;
                    size_t xi = xbase + ((size_t)iy * g->w + ix) * c;
                    const float *xp = j->x + xi;
                    for (int ch = 0; ch < c; ch++)
                        if (xp[ch] > yo[ch] || ao[ch] < 0 || xp[ch] != xp[ch]) {
                            yo[ch] = xp[ch];
                            ao[ch] = (int32_t)(xi + ch);
                        }
                }
            }
            for (int ch = 0; ch < c; ch++)
                if (ao[ch] < 0) /* a window entirely in the padding */
                    yo[ch] = 0.0f;
        }
    }
}

void kd_maxpool_forward(const kd_pool_geom *g, const float *x, float *y, int32_t *argmax)
{
    struct pool_job j = {g, x, y, argmax};
    kd_parallel_for((size_t)g->n * g->oh, 4, maxpool_rows, &j);
}

void kd_maxpool_backward(const kd_pool_geom *g, const float *dy, const int32_t *argmax,
                         size_t out_count, float *dx)
{
    (void)g;
    for (size_t i = 0; i < out_count; i++)
        if (argmax[i] >= 0)
            dx[argmax[i]] += dy[i];
}

static int window_cells(const kd_pool_geom *g, int oy, int ox)
{
    int ky0, ky1, kx0, kx1;
    kd_window(oy, g->sh, g->pt, g->kh, g->h, &ky0, &ky1);
    kd_window(ox, g->sw, g->pl, g->kw, g->w, &kx0, &kx1);
    return ky1 > ky0 && kx1 > kx0 ? (ky1 - ky0) * (kx1 - kx0) : 0;
}

KD_CLONES static void avgpool_rows(size_t begin, size_t end, void *arg)
{
    const struct pool_job *j = arg;
    const kd_pool_geom *g = j->g;
    int c = g->c;
    for (size_t r = begin; r < end; r++) {
        size_t img = r / g->oh;
        int oy = (int)(r % g->oh);
        const float *xi = j->x + img * (size_t)g->h * g->w * c;
        for (int ox = 0; ox < g->ow; ox++) {
            float *yo = j->y + (r * g->ow + ox) * c;
            memset(yo, 0, sizeof(float) * c);
            int cells = window_cells(g, oy, ox);
            if (cells == 0)
                continue;
            int ky0, ky1, kx0, kx1;
            kd_window(oy, g->sh, g->pt, g->kh, g->h, &ky0, &ky1);
            kd_window(ox, g->sw, g->pl, g->kw, g->w, &kx0, &kx1);
            for (int ky = ky0; ky < ky1; ky++) {
                int iy = oy * g->sh + ky - g->pt;
                for (int kx = kx0; kx < kx1; kx++) {
                    int ix = ox * g->sw + kx - g->pl;
                    const float *xp = xi + ((size_t)iy * g->w + ix) * c;
                    for (int ch = 0; ch < c; ch++)
                        yo[ch] += xp[ch];
                }
            }
            float inv = 1.0f / (float)cells;
            for (int ch = 0; ch < c; ch++)
                yo[ch] *= inv;
        }
    }
}

void kd_avgpool_forward(const kd_pool_geom *g, const float *x, float *y)
{
    struct pool_job j = {g, x, y, NULL};
    kd_parallel_for((size_t)g->n * g->oh, 4, avgpool_rows, &j);
}

void kd_avgpool_backward(const kd_pool_geom *g, const float *dy, float *dx)
{
    int c = g->c;
    for (int img = 0; img < g->n; img++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int cells = window_cells(g, oy, ox);
                if (cells == 0)
                    continue;
                float inv = 1.0f / (float)cells;
                const float *dyo = dy + (((size_t)img * g->oh + oy) * g->ow + ox) * c;
                int ky0, ky1, kx0, kx1;
                kd_window(oy, g->sh, g->pt, g->kh, g->h, &ky0, &ky1);
                kd_window(ox, g->sw, g->pl, g->kw, g->w, &kx0, &kx1);
                for (int ky = ky0; ky < ky1; ky++) {
                    int iy = oy * g->sh + ky - g->pt;
                    for (int kx = kx0; kx < kx1; kx++) {
                        int ix = ox * g->sw + kx - g->pl;
                        float *dxp = dx + (((size_t)img * g->h + iy) * g->w + ix) * c;
                        for (int ch = 0; ch < c; ch++)
                            dxp[ch] += dyo[ch] * inv;
                    }
                }
            }
}

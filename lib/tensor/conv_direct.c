/* Direct convolution on NHWC tensors for layers whose output channels come
 * in multiples of 16: the output is computed in register tiles of 8 pixels x
 * 16 or 32 channels, reading each input value once per tile, so there is no
 * im2col matrix to write and re-pack.  The input is copied once into a
 * zero-padded buffer so the inner loops carry no bounds checks.  Written
 * with GCC vector extensions: 16-float vectors become AVX-512 registers when
 * the target has them and pairs or quads of narrower ones otherwise.
 *
 *   forward          y[p][o]  = b[o] + sum_{t,c} xpad[p + t][c] * w[t][c][o]
 *   backward data    dx = forward(dy padded by k-1-pad, w flipped and transposed)
 *                    (stride 1 only; strided layers take the im2col path)
 *   backward weights dw[t][c][o] += sum_p xpad[p + t][c] * dy[p][o] */
#include "conv_direct.h"

#include <string.h>

typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

bool kd_direct_applies(const kd_conv_geom *g)
{
    return g->groups == 1 && g->oc % 16 == 0;
}

bool kd_direct_backward_data_applies(const kd_conv_geom *g)
{
    return kd_direct_applies(g) && g->sh == 1 && g->sw == 1 && g->c % 16 == 0 &&
           g->pt < g->kh && g->pl < g->kw;
}

/* Padded extents: exactly the rows and columns the windows touch. */
static int padded_h(const kd_conv_geom *g) { return (g->oh - 1) * g->sh + g->kh; }
static int padded_w(const kd_conv_geom *g) { return (g->ow - 1) * g->sw + g->kw; }

size_t kd_direct_padded_floats(const kd_conv_geom *g, int images)
{
    return (size_t)images * padded_h(g) * padded_w(g) * g->c;
}

/* Copies the image rows and zeroes only what lies outside them. */
void kd_direct_pad(const kd_conv_geom *g, const float *x, int images, float *xp)
{
    int hp = padded_h(g), wp = padded_w(g), c = g->c;
    int x0 = KD_MAX(0, -g->pl), x1 = KD_MIN(g->w, wp - g->pl); /* input columns kept */
    int left = x0 + g->pl, right = x1 + g->pl;                  /* where they land */
    if (x1 <= x0)
        left = right = 0;
    for (int n = 0; n < images; n++)
        for (int py = 0; py < hp; py++) {
            float *row = xp + ((size_t)n * hp + py) * wp * c;
            int iy = py - g->pt;
            if (iy < 0 || iy >= g->h || right <= left) {
                memset(row, 0, sizeof(float) * wp * c);
                continue;
            }
            memset(row, 0, sizeof(float) * left * c);
            memcpy(row + (size_t)left * c, x + (((size_t)n * g->h + iy) * g->w + x0) * c,
                   sizeof(float) * (right - left) * c);
            memset(row + (size_t)right * c, 0, sizeof(float) * (wp - right) * c);
        }
}

/* One tile: px pixels (<= 8) of one output row, nv vectors (1 or 2) of 16
 * output channels from oc0. */
static inline void tile(const kd_conv_geom *g, const float *xrow, int wp, const float *w,
                        int oc0, int px, int nv, float *yo, const float *bias, bool accumulate)
{
    v16 acc[8][2];
    for (int p = 0; p < px; p++)
        for (int v = 0; v < nv; v++) {
            const float *init = accumulate ? yo + (size_t)p * g->oc + 16 * v
                                           : (bias ? bias + oc0 + 16 * v : NULL);
            acc[p][v] = init ? load16(init) : (v16){0};
        }
    const int c = g->c, oc = g->oc, step = g->sw * c;
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
            const float *xs = xrow + ((size_t)ky * wp + kx) * c;
            const float *ws = w + ((size_t)(ky * g->kw + kx) * c) * oc + oc0;
            for (int ci = 0; ci < c; ci++) {
                v16 w0 = load16(ws + (size_t)ci * oc);
                if (nv == 2) {
                    v16 w1 = load16(ws + (size_t)ci * oc + 16);
                    for (int p = 0; p < px; p++) {
                        float xv = xs[p * step + ci];
                        acc[p][0] += xv * w0;
                        acc[p][1] += xv * w1;
                    }
                } else {
                    for (int p = 0; p < px; p++)
                        acc[p][0] += xs[p * step + ci] * w0;
                }
            }
        }
    for (int p = 0; p < px; p++)
        for (int v = 0; v < nv; v++)
            store16(yo + (size_t)p * oc + 16 * v, acc[p][v]);
}

/* Every tile shape is compiled with constant sizes, so that its accumulators
 * live in registers (a ragged edge of 7x7 or 14x14 outputs is no exception). */
typedef void (*tile_fn)(const kd_conv_geom *g, const float *xrow, int wp, const float *w,
                        int oc0, float *yo, const float *bias, bool acc);
#define TILE(PX, NV)                                                                           \
    static void tile_##PX##_##NV(const kd_conv_geom *g, const float *xrow, int wp,              \
                                 const float *w, int oc0, float *yo, const float *bias,         \
                                 bool acc)                                                      \
    {                                                                                          \
        tile(g, xrow, wp, w, oc0, PX, NV, yo, bias, acc);                                      \
    }
TILE(1, 1) TILE(2, 1) TILE(3, 1) TILE(4, 1) TILE(5, 1) TILE(6, 1) TILE(7, 1) TILE(8, 1)
TILE(1, 2) TILE(2, 2) TILE(3, 2) TILE(4, 2) TILE(5, 2) TILE(6, 2) TILE(7, 2) TILE(8, 2)
static const tile_fn tiles[2][8] = {
    {tile_1_1, tile_2_1, tile_3_1, tile_4_1, tile_5_1, tile_6_1, tile_7_1, tile_8_1},
    {tile_1_2, tile_2_2, tile_3_2, tile_4_2, tile_5_2, tile_6_2, tile_7_2, tile_8_2},
};

void kd_direct_forward_padded(const kd_conv_geom *g, const float *xp, int images,
                              const float *w, const float *bias, float *y, bool accumulate)
{
    int hp = padded_h(g), wp = padded_w(g);
    for (int n = 0; n < images; n++)
        for (int oy = 0; oy < g->oh; oy++) {
            const float *xr = xp + ((size_t)n * hp + (size_t)oy * g->sh) * wp * g->c;
            float *yr = y + ((size_t)n * g->oh + oy) * g->ow * g->oc;
            for (int oc0 = 0; oc0 < g->oc;) {
                int nv = g->oc - oc0 >= 32 ? 2 : 1;
                for (int ox = 0; ox < g->ow; ox += 8) {
                    int px = KD_MIN(8, g->ow - ox);
                    tiles[nv - 1][px - 1](g, xr + (size_t)ox * g->sw * g->c, wp, w, oc0,
                                          yr + (size_t)ox * g->oc + oc0, bias, accumulate);
                }
                oc0 += 16 * nv;
            }
        }
}

/* dx geometry: dy padded by k-1-pad is convolved with stride 1 into H x W. */
void kd_direct_data_geom(const kd_conv_geom *g, kd_conv_geom *b)
{
    *b = (kd_conv_geom){g->n,  g->oh, g->ow, g->oc, g->h, g->w, g->c, g->kh, g->kw, 1, 1,
                        g->kh - 1 - g->pt, g->kw - 1 - g->pl, 1};
}

void kd_direct_flip_weights(const kd_conv_geom *g, const float *w, float *wt)
{
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            for (int ci = 0; ci < g->c; ci++)
                for (int o = 0; o < g->oc; o++)
                    wt[(((size_t)(g->kh - 1 - ky) * g->kw + (g->kw - 1 - kx)) * g->oc + o) * g->c +
                       ci] = w[(((size_t)ky * g->kw + kx) * g->c + ci) * g->oc + o];
}

/* dw[t][ci0 .. ci0+cb)[oc0 .. oc0+16 nv) over every output pixel. */
static inline void weight_tile(const kd_conv_geom *g, const float *xp, int images,
                               const float *dy, int ky, int kx, int ci0, int cb, int oc0, int nv,
                               float *dw)
{
    int hp = padded_h(g), wp = padded_w(g), c = g->c, oc = g->oc;
    v16 acc[16][2];
    for (int b = 0; b < cb; b++)
        for (int v = 0; v < nv; v++)
            acc[b][v] = (v16){0};
    for (int n = 0; n < images; n++)
        for (int oy = 0; oy < g->oh; oy++) {
            const float *xr = xp + (((size_t)n * hp + (size_t)oy * g->sh + ky) * wp + kx) * c + ci0;
            const float *dr = dy + ((size_t)n * g->oh + oy) * g->ow * oc + oc0;
            for (int ox = 0; ox < g->ow; ox++) {
                const float *xs = xr + (size_t)ox * g->sw * c;
                v16 d0 = load16(dr + (size_t)ox * oc);
                if (nv == 2) {
                    v16 d1 = load16(dr + (size_t)ox * oc + 16);
                    for (int b = 0; b < cb; b++) {
                        acc[b][0] += xs[b] * d0;
                        acc[b][1] += xs[b] * d1;
                    }
                } else {
                    for (int b = 0; b < cb; b++)
                        acc[b][0] += xs[b] * d0;
                }
            }
        }
    float *dt = dw + ((size_t)(ky * g->kw + kx) * c + ci0) * oc + oc0;
    for (int b = 0; b < cb; b++)
        for (int v = 0; v < nv; v++)
            store16(dt + (size_t)b * oc + 16 * v,
                    load16(dt + (size_t)b * oc + 16 * v) + acc[b][v]);
}

static void weight_tile_8x32(const kd_conv_geom *g, const float *xp, int images, const float *dy,
                             int ky, int kx, int ci0, int oc0, float *dw)
{
    weight_tile(g, xp, images, dy, ky, kx, ci0, 8, oc0, 2, dw);
}

static void weight_tile_16x16(const kd_conv_geom *g, const float *xp, int images,
                              const float *dy, int ky, int kx, int ci0, int oc0, float *dw)
{
    weight_tile(g, xp, images, dy, ky, kx, ci0, 16, oc0, 1, dw);
}

void kd_direct_backward_weights_padded(const kd_conv_geom *g, const float *xp, int images,
                                       const float *dy, float *dw)
{
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            for (int oc0 = 0; oc0 < g->oc;) {
                int nv = g->oc - oc0 >= 32 ? 2 : 1;
                /* 16 accumulators either way: 8 inputs x 32 outputs or 16 x 16 */
                int ci0 = 0, cb = nv == 2 ? 8 : 16;
                for (; ci0 + cb <= g->c; ci0 += cb) {
                    if (nv == 2)
                        weight_tile_8x32(g, xp, images, dy, ky, kx, ci0, oc0, dw);
                    else
                        weight_tile_16x16(g, xp, images, dy, ky, kx, ci0, oc0, dw);
                }
                if (ci0 < g->c)
                    weight_tile(g, xp, images, dy, ky, kx, ci0, g->c - ci0, oc0, nv, dw);
                oc0 += 16 * nv;
            }
}

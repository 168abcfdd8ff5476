/* Register-tiled direct convolution (conv_direct.h has the layouts): a tile
 * is up to PX output pixels of one row x NV registers of output channels,
 * reading each input value once per tile; the weight gradient's tile is CB
 * input channels x NV registers of output channels, summed over every
 * output pixel.  Tile sizes follow the register count of the path; each
 * output is still summed in the same order (taps, then input channels for
 * the forward pass; images, rows, columns for the weight gradient). */
#include "isa.h"

#include "../conv_direct.h"

#if KD_VL == 16
#define PX 8 /* 8 x 2 zmm accumulators */
#define CB 8
#else
#define PX 6 /* 6 x 2 ymm or xmm accumulators */
#define CB 6
#endif
#define NV 2

static int padded_h(const kd_conv_geom *g) { return (g->oh - 1) * g->sh + g->kh; }
static int padded_w(const kd_conv_geom *g) { return (g->ow - 1) * g->sw + g->kw; }

/* One tile: px pixels of one output row, nv registers of channels from oc0. */
static inline __attribute__((always_inline)) void tile(const kd_conv_geom *g, const float *xrow, int wp, const float *w,
                        int oc0, int px, int nv, float *yo, const float *bias, bool accumulate)
{
    kd_vf acc[8][NV]; /* px <= PX <= 8 */
    for (int p = 0; p < px; p++)
        for (int v = 0; v < nv; v++) {
            const float *init = accumulate ? yo + (size_t)p * g->oc + KD_VL * v
                                           : (bias ? bias + oc0 + KD_VL * v : NULL);
            acc[p][v] = init ? kd_vload(init) : (kd_vf){0};
        }
    const int c = g->c, oc = g->oc, step = g->sw * c;
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
            const float *xs = xrow + ((size_t)ky * wp + kx) * c;
            const float *ws = w + ((size_t)(ky * g->kw + kx) * c) * oc + oc0;
            for (int ci = 0; ci < c; ci++) {
                kd_vf w0 = kd_vload(ws + (size_t)ci * oc);
                if (nv == 2) {
                    kd_vf w1 = kd_vload(ws + (size_t)ci * oc + KD_VL);
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
            kd_vstore(yo + (size_t)p * oc + KD_VL * v, acc[p][v]);
}

/* Every tile shape is compiled with constant sizes, so that its accumulators
 * live in registers (a ragged edge of 7x7 or 14x14 outputs is no exception). */
typedef void (*tile_fn)(const kd_conv_geom *g, const float *xrow, int wp, const float *w,
                        int oc0, float *yo, const float *bias, bool acc);
#define TILE(P, V)                                                                             \
    static void tile_##P##_##V(const kd_conv_geom *g, const float *xrow, int wp,                \
                               const float *w, int oc0, float *yo, const float *bias, bool acc) \
    {                                                                                          \
        tile(g, xrow, wp, w, oc0, P, V, yo, bias, acc);                                        \
    }
#define TILES(V) TILE(1, V) TILE(2, V) TILE(3, V) TILE(4, V) TILE(5, V) TILE(6, V) TILE(7, V) TILE(8, V)
TILES(1)
TILES(2)
static const tile_fn tiles[2][8] = {
    {tile_1_1, tile_2_1, tile_3_1, tile_4_1, tile_5_1, tile_6_1, tile_7_1, tile_8_1},
    {tile_1_2, tile_2_2, tile_3_2, tile_4_2, tile_5_2, tile_6_2, tile_7_2, tile_8_2},
};

void KD_ISA(kd_direct_forward)(const kd_conv_geom *g, const float *xp, int images,
                               const float *w, const float *bias, float *y, bool accumulate)
{
    int hp = padded_h(g), wp = padded_w(g);
    for (int n = 0; n < images; n++)
        for (int oy = 0; oy < g->oh; oy++) {
            const float *xr = xp + ((size_t)n * hp + (size_t)oy * g->sh) * wp * g->c;
            float *yr = y + ((size_t)n * g->oh + oy) * g->ow * g->oc;
            for (int oc0 = 0; oc0 < g->oc;) {
                int nv = g->oc - oc0 >= NV * KD_VL ? NV : 1;
                for (int ox = 0; ox < g->ow; ox += PX) {
                    int px = KD_MIN(PX, g->ow - ox);
                    tiles[nv - 1][px - 1](g, xr + (size_t)ox * g->sw * g->c, wp, w, oc0,
                                          yr + (size_t)ox * g->oc + oc0, bias, accumulate);
                }
                oc0 += KD_VL * nv;
            }
        }
}

/* dw[t][ci0 .. ci0+cb)[oc0 .. oc0+VL nv) over every output pixel. */
static inline __attribute__((always_inline)) void weight_tile(const kd_conv_geom *g, const float *xp, int images,
                               const float *dy, int ky, int kx, int ci0, int cb, int oc0, int nv,
                               float *dw)
{
    int hp = padded_h(g), wp = padded_w(g), c = g->c, oc = g->oc;
    kd_vf acc[2 * CB][NV];
    for (int b = 0; b < cb; b++)
        for (int v = 0; v < nv; v++)
            acc[b][v] = (kd_vf){0};
    for (int n = 0; n < images; n++)
        for (int oy = 0; oy < g->oh; oy++) {
            const float *xr = xp + (((size_t)n * hp + (size_t)oy * g->sh + ky) * wp + kx) * c + ci0;
            const float *dr = dy + ((size_t)n * g->oh + oy) * g->ow * oc + oc0;
            for (int ox = 0; ox < g->ow; ox++) {
                const float *xs = xr + (size_t)ox * g->sw * c;
                kd_vf d0 = kd_vload(dr + (size_t)ox * oc);
                if (nv == 2) {
                    kd_vf d1 = kd_vload(dr + (size_t)ox * oc + KD_VL);
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
            kd_vstore(dt + (size_t)b * oc + KD_VL * v,
                      kd_vload(dt + (size_t)b * oc + KD_VL * v) + acc[b][v]);
}

/* The two full shapes, each with the same number of accumulators. */
static void weight_tile_wide(const kd_conv_geom *g, const float *xp, int images, const float *dy,
                             int ky, int kx, int ci0, int oc0, float *dw)
{
    weight_tile(g, xp, images, dy, ky, kx, ci0, CB, oc0, 2, dw);
}

static void weight_tile_narrow(const kd_conv_geom *g, const float *xp, int images,
                               const float *dy, int ky, int kx, int ci0, int oc0, float *dw)
{
    weight_tile(g, xp, images, dy, ky, kx, ci0, 2 * CB, oc0, 1, dw);
}

void KD_ISA(kd_direct_backward_weights)(const kd_conv_geom *g, const float *xp, int images,
                                        const float *dy, float *dw)
{
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            for (int oc0 = 0; oc0 < g->oc;) {
                int nv = g->oc - oc0 >= NV * KD_VL ? NV : 1;
                int ci0 = 0, cb = nv == 2 ? CB : 2 * CB;
                for (; ci0 + cb <= g->c; ci0 += cb) {
                    if (nv == 2)
                        weight_tile_wide(g, xp, images, dy, ky, kx, ci0, oc0, dw);
                    else
                        weight_tile_narrow(g, xp, images, dy, ky, kx, ci0, oc0, dw);
                }
                if (ci0 < g->c)
                    weight_tile(g, xp, images, dy, ky, kx, ci0, g->c - ci0, oc0, nv, dw);
                oc0 += KD_VL * nv;
            }
}

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
    int hp = kd_direct_padded_h(g), wp = kd_direct_padded_w(g);
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
/* One sum: acc[s] += x * d over one output pixel. */
#define WT_STEP(S, XS, DR)                                                                     \
    do {                                                                                       \
        kd_vf d0_ = kd_vload(DR);                                                              \
        if (nv == 2) {                                                                         \
            kd_vf d1_ = kd_vload((DR) + KD_VL);                                                \
            for (int b = 0; b < cb; b++) {                                                     \
                acc[S][b][0] += (XS)[b] * d0_;                                                 \
                acc[S][b][1] += (XS)[b] * d1_;                                                 \
            }                                                                                  \
        } else {                                                                               \
            for (int b = 0; b < cb; b++)                                                       \
                acc[S][b][0] += (XS)[b] * d0_;                                                 \
        }                                                                                      \
    } while (0)

/* Fewer than 4 accumulator registers (a first layer's 1 or 3 input
 * channels) would leave the multiply-adds waiting on each other: such tiles
 * keep 4 partial sums over consecutive pixels and add them at the end.  The
 * order of every sum is fixed by the layer's shape. */
static inline __attribute__((always_inline)) void weight_tile(const kd_conv_geom *g, const float *xp, int images,
                               const float *dy, int ky, int kx, int ci0, int cb, int oc0, int nv,
                               float *dw)
{
    int hp = kd_direct_padded_h(g), wp = kd_direct_padded_w(g), c = g->c, oc = g->oc;
    const int split = cb * nv < 4 ? 4 : 1;
    kd_vf acc[4][2 * CB][NV]; /* cb <= 2 CB (one register), CB (two) */
    for (int s = 0; s < split; s++)
        for (int b = 0; b < cb; b++)
            for (int v = 0; v < nv; v++)
                acc[s][b][v] = (kd_vf){0};
    const size_t xstep = (size_t)g->sw * c;
    for (int n = 0; n < images; n++)
        for (int oy = 0; oy < g->oh; oy++) {
            const float *xr = xp + (((size_t)n * hp + (size_t)oy * g->sh + ky) * wp + kx) * c + ci0;
            const float *dr = dy + ((size_t)n * g->oh + oy) * g->ow * oc + oc0;
            int ox = 0;
            if (split == 4)
                for (; ox + 4 <= g->ow; ox += 4)
                    for (int s = 0; s < 4; s++)
                        WT_STEP(s, xr + (ox + s) * xstep, dr + (size_t)(ox + s) * oc);
            for (; ox < g->ow; ox++)
                WT_STEP(0, xr + ox * xstep, dr + (size_t)ox * oc);
        }
    float *dt = dw + ((size_t)(ky * g->kw + kx) * c + ci0) * oc + oc0;
    for (int b = 0; b < cb; b++)
        for (int v = 0; v < nv; v++) {
            kd_vf sum = acc[0][b][v];
            if (split == 4)
                sum = (sum + acc[1][b][v]) + (acc[2][b][v] + acc[3][b][v]);
            kd_vstore(dt + (size_t)b * oc + KD_VL * v,
                      kd_vload(dt + (size_t)b * oc + KD_VL * v) + sum);
        }
}

/* Every shape compiled with constant sizes: cb input channels (1 .. CB with
 * two registers of output channels, 1 .. 2 CB with one), so that ragged
 * channel counts (a first layer's 1 or 3) keep their accumulators in
 * registers too. */
typedef void (*weight_fn)(const kd_conv_geom *g, const float *xp, int images, const float *dy,
                          int ky, int kx, int ci0, int oc0, float *dw);
#define WTILE(B, V)                                                                            \
    static void wtile_##B##_##V(const kd_conv_geom *g, const float *xp, int images,            \
                                const float *dy, int ky, int kx, int ci0, int oc0, float *dw) \
    {                                                                                          \
        if (B <= (V == 1 ? 2 * CB : CB)) /* wider ones are compiled, never called */           \
            weight_tile(g, xp, images, dy, ky, kx, ci0, B, oc0, V, dw);                        \
    }
#define WTILES(V) WTILE(1, V) WTILE(2, V) WTILE(3, V) WTILE(4, V) WTILE(5, V) WTILE(6, V) \
    WTILE(7, V) WTILE(8, V)
WTILES(1)
WTILES(2)
WTILE(9, 1) WTILE(10, 1) WTILE(11, 1) WTILE(12, 1) WTILE(13, 1) WTILE(14, 1) WTILE(15, 1)
WTILE(16, 1)
static const weight_fn weight_tiles[2][16] = {
    {wtile_1_1, wtile_2_1, wtile_3_1, wtile_4_1, wtile_5_1, wtile_6_1, wtile_7_1, wtile_8_1,
     wtile_9_1, wtile_10_1, wtile_11_1, wtile_12_1, wtile_13_1, wtile_14_1, wtile_15_1,
     wtile_16_1},
    {wtile_1_2, wtile_2_2, wtile_3_2, wtile_4_2, wtile_5_2, wtile_6_2, wtile_7_2, wtile_8_2},
};

void KD_ISA(kd_direct_backward_weights)(const kd_conv_geom *g, const float *xp, int images,
                                        const float *dy, float *dw)
{
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            for (int oc0 = 0; oc0 < g->oc;) {
                int nv = g->oc - oc0 >= NV * KD_VL ? NV : 1;
                int full = nv == 2 ? CB : 2 * CB;
                for (int ci0 = 0; ci0 < g->c; ci0 += full)
                    weight_tiles[nv - 1][KD_MIN(full, g->c - ci0) - 1](g, xp, images, dy, ky, kx,
                                                                      ci0, oc0, dw);
                oc0 += KD_VL * nv;
            }
}

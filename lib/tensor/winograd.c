/* Winograd F(2x2, 3x3) convolution (Lavin and Gray, 2016) for stride-1 3x3
 * layers with input and output channels in multiples of 16.  Each 2x2 block
 * of outputs (a tile) is computed from the 4x4 input patch around it:
 *
 *     Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 *
 * so that a tile costs 16 products per channel pair instead of 36 (2.25x
 * fewer multiply-adds).  The 16 element-wise products, summed over input
 * channels, are 16 independent 1x1 convolutions over the tiles; they run on
 * the dispatched direct kernels (isa/direct.c), the transforms here are
 * additions vectorised over 16 channels.  The transforms' coefficients are
 * 0, +-1 and 1/2, so the rounding error stays within a few ulp of the
 * direct sums (tested against the naive convolution).
 *
 * Tiles are numbered over the batch (image, tile row, tile column) and
 * processed in units of WG_TILES, whose transformed inputs and products stay
 * in the cache of one core.  Every output is computed by one unit with a
 * fixed order of sums, so the result does not depend on the batch size or
 * on how units are shared among threads.  The input gradient is the same
 * algorithm on the output gradient with flipped weights; the weight
 * gradient sums, per unit, the transformed inputs against the transformed
 * output gradient (A dY A^T) and maps the sum back with G^T . G; threads
 * keep private sums added in part order. */
#include "winograd.h"

#include "conv_direct.h"

#include <string.h>

#define WG_TILES 96 /* tiles per unit */
#define WG_POS 16   /* elements of a transformed 4x4 tile */
#define WG_L 16     /* channels per vector */

typedef float wg_vec __attribute__((vector_size(4 * WG_L)));
static inline wg_vec ld(const float *p)
{
    wg_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void st(float *p, wg_vec v) { memcpy(p, &v, sizeof v); }

bool kd_winograd_applies(const kd_conv_geom *g)
{
    return g->groups == 1 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 &&
           g->c % WG_L == 0 && g->oc % WG_L == 0;
}

static size_t tiles_per_image(const kd_conv_geom *g)
{
    return (size_t)((g->oh + 1) / 2) * (size_t)((g->ow + 1) / 2);
}

static size_t weight_floats(const kd_conv_geom *g) { return (size_t)WG_POS * g->c * g->oc; }

/* Per thread: transformed inputs and products of one unit (sized for the
 * input-gradient pass too, whose channels are swapped), then private
 * transformed weight-gradient sums. */
static size_t part_floats(const kd_conv_geom *g)
{
    return (size_t)WG_POS * WG_TILES * (size_t)(g->c + g->oc) + weight_floats(g);
}

/* After the parts: the transformed weights, those of the flipped weights
 * (input gradient), and the flipped weights themselves. */
size_t kd_winograd_workspace(const kd_conv_geom *g)
{
    return (size_t)KD_MAX(kd_threads(), 1) * part_floats(g) + 2 * weight_floats(g) +
           (size_t)9 * g->c * g->oc;
}

typedef struct tile_pos {
    size_t img;
    int ty, tx;
} tile_pos;

static tile_pos tile_at(const kd_conv_geom *g, size_t t)
{
    int tw = (g->ow + 1) / 2;
    size_t per = tiles_per_image(g), r = t % per;
    return (tile_pos){t / per, (int)(r / (size_t)tw), (int)(r % (size_t)tw)};
}

/* B^T applied down one input column: the 4 rows of the tile's patch at
 * column ix (zero outside the image; rows[i] NULL above or below it). */
static inline __attribute__((always_inline)) void column_transform(const float *const rows[4],
                                                                   int ix, int w, size_t c,
                                                                   wg_vec s[4])
{
    wg_vec d[4] = {{0}, {0}, {0}, {0}};
    if (ix >= 0 && ix < w)
        for (int i = 0; i < 4; i++)
            if (rows[i])
                d[i] = ld(rows[i] + (size_t)ix * c);
    s[0] = d[0] - d[2];
    s[1] = d[1] + d[2];
    s[2] = d[2] - d[1];
    s[3] = d[1] - d[3];
}

/* v[pos][t - t0][c] = (B^T d B)[pos] for the tiles [t0, t1), d the 4x4
 * input patch (zero outside the image).  Along a row of tiles, neighbours
 * share two columns of their patches: each column's B^T is computed once. */
KD_CLONES static void input_tiles(const kd_conv_geom *g, const float *x, size_t t0, size_t t1,
                                  float *v)
{
    const size_t T = t1 - t0, c = (size_t)g->c, tw = (size_t)((g->ow + 1) / 2);
    for (size_t t = t0; t < t1;) {
        tile_pos p = tile_at(g, t);
        size_t run = KD_MIN(t1 - t, tw - (size_t)p.tx); /* tiles left in this tile row */
        const float *rows[4];
        for (int i = 0; i < 4; i++) {
            int iy = 2 * p.ty - g->pt + i;
            rows[i] = iy >= 0 && iy < g->h
                          ? x + (p.img * g->h + (size_t)iy) * g->w * c
                          : NULL;
        }
        for (size_t c0 = 0; c0 < c; c0 += WG_L) {
            const float *crow[4];
            for (int i = 0; i < 4; i++)
                crow[i] = rows[i] ? rows[i] + c0 : NULL;
            int x0 = 2 * p.tx - g->pl;
            wg_vec s[4][4]; /* s[column][row] */
            column_transform(crow, x0, g->w, c, s[0]);
            column_transform(crow, x0 + 1, g->w, c, s[1]);
            for (size_t k = 0; k < run; k++, x0 += 2) {
                column_transform(crow, x0 + 2, g->w, c, s[2]);
                column_transform(crow, x0 + 3, g->w, c, s[3]);
                float *out = v + (t + k - t0) * c + c0;
                for (int i = 0; i < 4; i++) {
                    st(out + (size_t)(4 * i + 0) * T * c, s[0][i] - s[2][i]);
                    st(out + (size_t)(4 * i + 1) * T * c, s[1][i] + s[2][i]);
                    st(out + (size_t)(4 * i + 2) * T * c, s[2][i] - s[1][i]);
                    st(out + (size_t)(4 * i + 3) * T * c, s[1][i] - s[3][i]);
                }
                for (int i = 0; i < 4; i++) {
                    s[0][i] = s[2][i];
                    s[1][i] = s[3][i];
                }
            }
        }
        t += run;
    }
}

/* y (+)= A^T m A for the tiles [t0, t1), m[pos][t - t0][oc]; outputs
 * outside the image (the last row or column of an odd size) are dropped. */
KD_CLONES static void output_tiles(const kd_conv_geom *g, const float *m, size_t t0, size_t t1,
                                   const float *bias, bool accumulate, float *y)
{
    const size_t T = t1 - t0, oc = (size_t)g->oc;
    for (size_t t = t0; t < t1; t++) {
        tile_pos p = tile_at(g, t);
        const float *in = m + (t - t0) * oc;
        for (size_t o0 = 0; o0 < oc; o0 += WG_L) {
            wg_vec q[4][4], a[2][4], r[2][2];
            for (int k = 0; k < WG_POS; k++)
                q[k / 4][k % 4] = ld(in + (size_t)k * T * oc + o0);
            for (int j = 0; j < 4; j++) {
                a[0][j] = q[0][j] + q[1][j] + q[2][j];
                a[1][j] = q[1][j] - q[2][j] - q[3][j];
            }
            for (int i = 0; i < 2; i++) {
                r[i][0] = a[i][0] + a[i][1] + a[i][2];
                r[i][1] = a[i][1] - a[i][2] - a[i][3];
            }
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int oy = 2 * p.ty + i, ox = 2 * p.tx + j;
                    if (oy >= g->oh || ox >= g->ow)
                        continue;
                    float *out = y + ((p.img * g->oh + oy) * g->ow + ox) * oc + o0;
                    wg_vec val = r[i][j];
                    if (accumulate)
                        val = ld(out) + val;
                    else if (bias)
                        val = ld(bias + o0) + val;
                    st(out, val);
                }
        }
    }
}

/* dm[pos][t - t0][oc] = (A dY A^T)[pos], dY the tile's 2x2 output gradient
 * (zero outside the image): the adjoint of output_tiles. */
KD_CLONES static void grad_tiles(const kd_conv_geom *g, const float *dy, size_t t0, size_t t1,
                                 float *dm)
{
    const size_t T = t1 - t0, oc = (size_t)g->oc;
    const wg_vec zero = {0};
    for (size_t t = t0; t < t1; t++) {
        tile_pos p = tile_at(g, t);
        float *out = dm + (t - t0) * oc;
        for (size_t o0 = 0; o0 < oc; o0 += WG_L) {
            wg_vec e[2][2], a[4][2];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int oy = 2 * p.ty + i, ox = 2 * p.tx + j;
                    e[i][j] = oy < g->oh && ox < g->ow
                                  ? ld(dy + ((p.img * g->oh + oy) * g->ow + ox) * oc + o0)
                                  : zero;
                }
            for (int j = 0; j < 2; j++) {
                a[0][j] = e[0][j];
                a[1][j] = e[0][j] + e[1][j];
                a[2][j] = e[0][j] - e[1][j];
                a[3][j] = -e[1][j];
            }
            for (int i = 0; i < 4; i++) {
                st(out + (size_t)(4 * i + 0) * T * oc + o0, a[i][0]);
                st(out + (size_t)(4 * i + 1) * T * oc + o0, a[i][0] + a[i][1]);
                st(out + (size_t)(4 * i + 2) * T * oc + o0, a[i][0] - a[i][1]);
                st(out + (size_t)(4 * i + 3) * T * oc + o0, -a[i][1]);
            }
        }
    }
}

/* u[pos][c][oc] = (G g G^T)[pos] of w[3][3][c][oc]. */
KD_CLONES static void weight_transform(int c, int oc, const float *w, float *u)
{
    const wg_vec half = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f,
                         0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    for (size_t ci = 0; ci < (size_t)c; ci++)
        for (size_t o0 = 0; o0 < (size_t)oc; o0 += WG_L) {
            wg_vec k[3][3], s[4][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    k[i][j] = ld(w + ((size_t)(3 * i + j) * c + ci) * oc + o0);
            for (int j = 0; j < 3; j++) {
                s[0][j] = k[0][j];
                s[1][j] = (k[0][j] + k[1][j] + k[2][j]) * half;
                s[2][j] = (k[0][j] - k[1][j] + k[2][j]) * half;
                s[3][j] = k[2][j];
            }
            for (int i = 0; i < 4; i++) {
                wg_vec row[4] = {s[i][0], (s[i][0] + s[i][1] + s[i][2]) * half,
                                 (s[i][0] - s[i][1] + s[i][2]) * half, s[i][2]};
                for (int j = 0; j < 4; j++)
                    st(u + ((size_t)(4 * i + j) * c + ci) * oc + o0, row[j]);
            }
        }
}

/* dw[3][3][c][oc] += G^T du G: the adjoint of weight_transform. */
KD_CLONES static void weight_grad_transform(int c, int oc, const float *du, float *dw)
{
    const wg_vec half = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f,
                         0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    for (size_t ci = 0; ci < (size_t)c; ci++)
        for (size_t o0 = 0; o0 < (size_t)oc; o0 += WG_L) {
            wg_vec q[4][4], s[3][4];
            for (int k = 0; k < WG_POS; k++)
                q[k / 4][k % 4] = ld(du + ((size_t)k * c + ci) * oc + o0);
            for (int j = 0; j < 4; j++) {
                s[0][j] = q[0][j] + (q[1][j] + q[2][j]) * half;
                s[1][j] = (q[1][j] - q[2][j]) * half;
                s[2][j] = (q[1][j] + q[2][j]) * half + q[3][j];
            }
            for (int i = 0; i < 3; i++) {
                wg_vec row[3] = {s[i][0] + (s[i][1] + s[i][2]) * half,
                                 (s[i][1] - s[i][2]) * half, (s[i][1] + s[i][2]) * half + s[i][3]};
                for (int j = 0; j < 3; j++) {
                    float *out = dw + ((size_t)(3 * i + j) * c + ci) * oc + o0;
                    st(out, ld(out) + row[j]);
                }
            }
        }
}

/* The 1x1 convolution of one transformed position over T tiles. */
static kd_conv_geom pointwise(const kd_conv_geom *g, size_t T)
{
    return (kd_conv_geom){1, 1, (int)T, g->c, 1, (int)T, g->oc, 1, 1, 1, 1, 0, 0, 1};
}

static size_t units(const kd_conv_geom *g)
{
    return (tiles_per_image(g) * (size_t)g->n + WG_TILES - 1) / WG_TILES;
}

struct wg_job {
    const kd_conv_geom *g;
    const float *x, *u, *bias, *dy;
    float *y, *du, *work;
    bool accumulate;
    const kd_kernels *kern;
    size_t part_floats;
};

static void unit_range(const kd_conv_geom *g, size_t unit, size_t *t0, size_t *t1)
{
    *t0 = unit * WG_TILES;
    *t1 = KD_MIN(*t0 + WG_TILES, tiles_per_image(g) * (size_t)g->n);
}

/* The units of one part, each with the part's buffers: v (transformed
 * inputs, 16 x T x c) and the array after it (16 x T x oc). */
typedef void (*unit_fn)(const struct wg_job *j, size_t t0, size_t t1, float *v, float *after);
static void each_unit(const struct wg_job *j, int part, int parts, unit_fn fn)
{
    const kd_conv_geom *g = j->g;
    float *v = j->work + (size_t)part * j->part_floats;
    size_t b, e;
    kd_split(units(g), part, parts, &b, &e);
    for (size_t unit = b; unit < e; unit++) {
        size_t t0, t1;
        unit_range(g, unit, &t0, &t1);
        fn(j, t0, t1, v, v + (size_t)WG_POS * (t1 - t0) * g->c);
    }
}

static void forward_unit(const struct wg_job *j, size_t t0, size_t t1, float *v, float *m)
{
    const kd_conv_geom *g = j->g;
    size_t T = t1 - t0;
    input_tiles(g, j->x, t0, t1, v);
    kd_conv_geom one = pointwise(g, T);
    for (size_t pos = 0; pos < WG_POS; pos++)
        j->kern->direct_forward(&one, v + pos * T * g->c, 1, j->u + pos * g->c * g->oc, NULL,
                                m + pos * T * g->oc, false);
    output_tiles(g, m, t0, t1, j->bias, j->accumulate, j->y);
}

static void forward_part(int part, int parts, void *arg)
{
    each_unit(arg, part, parts, forward_unit);
}

static int wg_parts(const kd_conv_geom *g) { return (int)KD_MIN((size_t)kd_threads(), units(g)); }

/* y = bias + conv(x, w), or y += conv(x, w) when accumulate, with u the
 * transformed weights already in place. */
static void forward_transformed(const kd_conv_geom *g, const float *x, const float *u,
                                const float *bias, float *y, bool accumulate, float *work)
{
    struct wg_job j = {.g = g, .x = x, .u = u, .bias = bias, .y = y, .work = work,
                       .accumulate = accumulate, .kern = kd_kernels_active(),
                       .part_floats = part_floats(g)};
    kd_parallel_parts(wg_parts(g), forward_part, &j);
}

static float *shared_area(const kd_conv_geom *g, float *work)
{
    return work + (size_t)KD_MAX(kd_threads(), 1) * part_floats(g);
}

void kd_winograd_forward(const kd_conv_geom *g, const float *x, const float *w,
                         const float *bias, float *y, float *work)
{
    float *u = shared_area(g, work);
    weight_transform(g->c, g->oc, w, u);
    forward_transformed(g, x, u, bias, y, false, work);
}

/* The part's private transformed weight gradient, after its unit buffers. */
static float *part_du(const struct wg_job *j, int part)
{
    return j->work + (size_t)part * j->part_floats +
           (size_t)WG_POS * WG_TILES * (size_t)(j->g->c + j->g->oc);
}

static void weight_grad_unit(const struct wg_job *j, size_t t0, size_t t1, float *v, float *dm)
{
    const kd_conv_geom *g = j->g;
    size_t T = t1 - t0;
    input_tiles(g, j->x, t0, t1, v);
    grad_tiles(g, j->dy, t0, t1, dm);
    kd_conv_geom one = pointwise(g, T);
    float *du = j->du; /* the part's, set by weight_grad_part */
    for (size_t pos = 0; pos < WG_POS; pos++)
        j->kern->direct_backward_weights(&one, v + pos * T * g->c, 1, dm + pos * T * g->oc,
                                         du + pos * g->c * g->oc);
}

static void weight_grad_part(int part, int parts, void *arg)
{
    struct wg_job j = *(const struct wg_job *)arg;
    j.du = part_du(&j, part);
    memset(j.du, 0, sizeof(float) * weight_floats(j.g));
    each_unit(&j, part, parts, weight_grad_unit);
}

void kd_winograd_backward(const kd_conv_geom *g, const float *x, const float *w,
                          const float *dy, float *dx, bool assign, float *dw, float *work)
{
    float *shared = shared_area(g, work), *ub = shared + weight_floats(g),
          *wflip = ub + weight_floats(g);
    if (dx) {
        kd_conv_geom b;
        kd_direct_data_geom(g, &b);
        kd_direct_flip_weights(g, w, wflip);
        weight_transform(b.c, b.oc, wflip, ub);
        forward_transformed(&b, dy, ub, NULL, dx, !assign, work);
    }
    int parts = wg_parts(g);
    struct wg_job j = {.g = g, .x = x, .dy = dy, .work = work, .kern = kd_kernels_active(),
                       .part_floats = part_floats(g)};
    kd_parallel_parts(parts, weight_grad_part, &j);
    float *du0 = part_du(&j, 0);
    size_t count = weight_floats(g);
    for (int p = 1; p < parts; p++) {
        const float *dup = part_du(&j, p);
        for (size_t i = 0; i < count; i++)
            du0[i] += dup[i];
    }
    weight_grad_transform(g->c, g->oc, du0, dw);
}

/* Winograd F(4x4, 3x3) convolution (Lavin and Gray, 2016) for stride-1 3x3
 * layers with input and output channels in multiples of 16.  Each 4x4 block
 * of outputs (a tile) is computed from the 6x6 input patch around it:
 *
 *     Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 *
 * so that a tile costs 36 products per channel pair instead of 144 (4x
 * fewer multiply-adds).  The 36 element-wise products, summed over input
 * channels, are 36 independent 1x1 convolutions over the tiles; they run on
 * the dispatched direct kernels (isa/direct.c), the transforms here are
 * written once, vectorised over 16 channels.  Their coefficients (up to 8,
 * and 1/6, 1/12, 1/24 in G) cost precision: outputs are within about 3e-6
 * of the sum of the products' magnitudes, against 3e-7 for the direct
 * kernels (tested against the naive convolution).  F(2x2, 3x3) was
 * measured first and lost to the direct kernels at 16 channels; F(4x4)
 * halves the transformed data per output as well as the products.
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

#define WG_M 4       /* outputs per tile side */
#define WG_A 6       /* input patch side: WG_M + 3 - 1 */
#define WG_POS 36    /* elements of a transformed tile */
#define WG_TILES 32  /* tiles per unit */
#define WG_L 16      /* channels per vector */

/* WG_L channels as one vector, split into registers by each path.  Loads
 * and stores go through an unaligned alias of the type, never through a
 * function taking or returning it: a 64-byte vector crossing a call
 * changes the ABI on paths without AVX-512 (clang refuses it). */
typedef float wg_vec __attribute__((vector_size(4 * WG_L)));
typedef float wg_vec_u __attribute__((vector_size(4 * WG_L), aligned(4), may_alias));
#define ld(p) ((wg_vec)(*(const wg_vec_u *)(p)))
#define st(p, v) (*(wg_vec_u *)(p) = (v))

bool kd_winograd_applies(const kd_conv_geom *g)
{
    return g->groups == 1 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 &&
           !kd_conv_dilated(g) && g->c % WG_L == 0 && g->oc % WG_L == 0;
}

static int tiles_wide(const kd_conv_geom *g) { return (g->ow + WG_M - 1) / WG_M; }
static size_t tiles_per_image(const kd_conv_geom *g)
{
    return (size_t)((g->oh + WG_M - 1) / WG_M) * (size_t)tiles_wide(g);
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
    size_t per = tiles_per_image(g), r = t % per, tw = (size_t)tiles_wide(g);
    return (tile_pos){t / per, (int)(r / tw), (int)(r % tw)};
}

/* The one-dimensional transforms, each applied along both axes of a tile.
 * Bt: r = B^T d (input), At: o = A^T m (output), G: u = G g (weights), and
 * their adjoints A (output gradient) and Gt (weight gradient). */
static inline __attribute__((always_inline)) void Bt(const wg_vec d[6], wg_vec r[6])
{
    const float two = 2, four = 4, five = 5;
    wg_vec t1 = d[4] - four * d[2], t2 = d[3] - four * d[1];
    wg_vec t3 = d[4] - d[2], t4 = two * (d[3] - d[1]);
    r[0] = four * d[0] - five * d[2] + d[4];
    r[1] = t1 + t2;
    r[2] = t1 - t2;
    r[3] = t3 + t4;
    r[4] = t3 - t4;
    r[5] = four * d[1] - five * d[3] + d[5];
}

static inline __attribute__((always_inline)) void At(const wg_vec m[6], wg_vec o[4])
{
    const float two = 2, four = 4, eight = 8;
    wg_vec a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    o[0] = m[0] + a + c;
    o[1] = b + two * d;
    o[2] = a + four * c;
    o[3] = b + eight * d + m[5];
}

static inline __attribute__((always_inline)) void A(const wg_vec y[4], wg_vec m[6])
{
    const float two = 2, four = 4, eight = 8;
    wg_vec even = y[0] + four * y[2], odd2 = two * y[1] + eight * y[3];
    m[0] = y[0];
    m[1] = y[0] + y[1] + y[2] + y[3];
    m[2] = y[0] - y[1] + y[2] - y[3];
    m[3] = even + odd2;
    m[4] = even - odd2;
    m[5] = y[3];
}

static inline __attribute__((always_inline)) void G(const wg_vec g[3], wg_vec u[6])
{
    const float q = 1.0f / 4, s = 1.0f / 6, t = 1.0f / 12, f = 1.0f / 24;
    wg_vec outer = g[0] + g[2];
    u[0] = q * g[0];
    u[1] = -s * (outer + g[1]);
    u[2] = -s * (outer - g[1]);
    u[3] = f * g[0] + t * g[1] + s * g[2];
    u[4] = f * g[0] - t * g[1] + s * g[2];
    u[5] = g[2];
}

static inline __attribute__((always_inline)) void Gt(const wg_vec u[6], wg_vec g[3])
{
    const float q = 1.0f / 4, s = 1.0f / 6, t = 1.0f / 12, f = 1.0f / 24;
    wg_vec plus12 = u[1] + u[2], plus34 = u[3] + u[4];
    g[0] = q * u[0] - s * plus12 + f * plus34;
    g[1] = s * (u[2] - u[1]) + t * (u[3] - u[4]);
    g[2] = s * (plus34 - plus12) + u[5];
}

/* v[pos][t - base][c] = (B^T d B)[pos] for the tiles [t0, t1) of the unit
 * of T tiles from base, d the 6x6 input patch (zero outside the image). */
KD_CLONES static void input_tiles_at(const kd_conv_geom *g, const float *x, size_t base,
                                     size_t t0, size_t t1, size_t T, float *v)
{
    const size_t c = (size_t)g->c;
    const wg_vec zero = {0};
    for (size_t t = t0; t < t1; t++) {
        tile_pos p = tile_at(g, t);
        int y0 = WG_M * p.ty - g->pt, x0 = WG_M * p.tx - g->pl;
        const float *rows[WG_A];
        for (int i = 0; i < WG_A; i++) {
            int iy = y0 + i;
            rows[i] = iy >= 0 && iy < g->h ? x + (p.img * g->h + (size_t)iy) * g->w * c : NULL;
        }
        bool inside[WG_A];
        for (int j = 0; j < WG_A; j++)
            inside[j] = x0 + j >= 0 && x0 + j < g->w;
        for (size_t c0 = 0; c0 < c; c0 += WG_L) {
            wg_vec cols[WG_A][WG_A]; /* cols[j] = B^T of input column j */
            for (int j = 0; j < WG_A; j++) {
                wg_vec d[WG_A];
                for (int i = 0; i < WG_A; i++)
                    d[i] = rows[i] && inside[j] ? ld(rows[i] + (size_t)(x0 + j) * c + c0) : zero;
                Bt(d, cols[j]);
            }
            float *out = v + (t - base) * c + c0;
            for (int i = 0; i < WG_A; i++) {
                wg_vec row[WG_A], r[WG_A];
                for (int j = 0; j < WG_A; j++)
                    row[j] = cols[j][i];
                Bt(row, r);
                for (int j = 0; j < WG_A; j++)
                    st(out + (size_t)(WG_A * i + j) * T * c, r[j]);
            }
        }
    }
}

/* y (+)= A^T m A for the tiles [t0, t1), m[pos][t - base][oc] (a unit of T
 * tiles from base); outputs
 * outside the image (a ragged last tile row or column) are dropped. */
KD_CLONES static void output_tiles_at(const kd_conv_geom *g, const float *m, size_t base,
                                      size_t t0, size_t t1, size_t T, const float *bias,
                                      bool accumulate, float *y)
{
    const size_t oc = (size_t)g->oc;
    for (size_t t = t0; t < t1; t++) {
        tile_pos p = tile_at(g, t);
        const float *in = m + (t - base) * oc;
        int rows = KD_MIN(WG_M, g->oh - WG_M * p.ty), cols = KD_MIN(WG_M, g->ow - WG_M * p.tx);
        for (size_t o0 = 0; o0 < oc; o0 += WG_L) {
            wg_vec half[WG_M][WG_A]; /* A^T down each column of m */
            for (int j = 0; j < WG_A; j++) {
                wg_vec col[WG_A], o[WG_M];
                for (int i = 0; i < WG_A; i++)
                    col[i] = ld(in + (size_t)(WG_A * i + j) * T * oc + o0);
                At(col, o);
                for (int i = 0; i < WG_M; i++)
                    half[i][j] = o[i];
            }
            for (int i = 0; i < rows; i++) {
                wg_vec r[WG_M];
                At(half[i], r);
                float *out = y + ((p.img * g->oh + (size_t)(WG_M * p.ty + i)) * g->ow +
                                  (size_t)(WG_M * p.tx)) * oc + o0;
                for (int j = 0; j < cols; j++) {
                    wg_vec val = r[j];
                    if (accumulate)
                        val = ld(out + j * oc) + val;
                    else if (bias)
                        val = ld(bias + o0) + val;
                    st(out + j * oc, val);
                }
            }
        }
    }
}

/* dm[pos][t - t0][oc] = (A dY A^T)[pos], dY the tile's 4x4 output gradient
 * (zero outside the image): the adjoint of output_tiles_at. */
KD_CLONES static void grad_tiles(const kd_conv_geom *g, const float *dy, size_t t0, size_t t1,
                                 float *dm)
{
    const size_t T = t1 - t0, oc = (size_t)g->oc;
    const wg_vec zero = {0};
    for (size_t t = t0; t < t1; t++) {
        tile_pos p = tile_at(g, t);
        float *out = dm + (t - t0) * oc;
        int rows = KD_MIN(WG_M, g->oh - WG_M * p.ty), cols = KD_MIN(WG_M, g->ow - WG_M * p.tx);
        for (size_t o0 = 0; o0 < oc; o0 += WG_L) {
            wg_vec half[WG_A][WG_M]; /* A along each row of dY */
            for (int i = 0; i < WG_M; i++) {
                wg_vec e[WG_M], r[WG_A];
                for (int j = 0; j < WG_M; j++)
                    e[j] = zero;
                if (i < rows) { /* rows past the image stay zero, never addressed */
                    const float *src =
                        dy + ((p.img * g->oh + (size_t)(WG_M * p.ty + i)) * g->ow +
                              (size_t)(WG_M * p.tx)) * oc + o0;
                    for (int j = 0; j < cols; j++)
                        e[j] = ld(src + j * oc);
                }
                A(e, r);
                for (int k = 0; k < WG_A; k++)
                    half[k][i] = r[k];
            }
            for (int k = 0; k < WG_A; k++) {
                wg_vec r[WG_A];
                A(half[k], r);
                for (int i = 0; i < WG_A; i++)
                    st(out + (size_t)(WG_A * i + k) * T * oc + o0, r[i]);
            }
        }
    }
}

/* u[pos][c][oc] = (G g G^T)[pos] of w[3][3][c][oc], input channels
 * [begin, end) (split over the threads: it runs on every call, and a
 * batch-1 inference has few tiles to amortise it over). */
struct transform_job {
    int c, oc;
    const float *w;
    float *u;
};

KD_CLONES static void weight_transform_range(size_t begin, size_t end, void *arg)
{
    const struct transform_job *job = arg;
    const int c = job->c, oc = job->oc;
    const float *w = job->w;
    float *u = job->u;
    for (size_t ci = begin; ci < end; ci++)
        for (size_t o0 = 0; o0 < (size_t)oc; o0 += WG_L) {
            wg_vec half[3][WG_A]; /* G along each row of g */
            for (int i = 0; i < 3; i++) {
                wg_vec k[3];
                for (int j = 0; j < 3; j++)
                    k[j] = ld(w + ((size_t)(3 * i + j) * c + ci) * oc + o0);
                G(k, half[i]);
            }
            for (int j = 0; j < WG_A; j++) {
                wg_vec col[3] = {half[0][j], half[1][j], half[2][j]}, r[WG_A];
                G(col, r);
                for (int i = 0; i < WG_A; i++)
                    st(u + ((size_t)(WG_A * i + j) * c + ci) * oc + o0, r[i]);
            }
        }
}

static void weight_transform(int c, int oc, const float *w, float *u)
{
    struct transform_job job = {c, oc, w, u};
    kd_parallel_for((size_t)c, 8, weight_transform_range, &job);
}

/* dw[3][3][c][oc] += G^T du G: the adjoint of weight_transform. */
KD_CLONES static void weight_grad_transform(int c, int oc, const float *du, float *dw)
{
    for (size_t ci = 0; ci < (size_t)c; ci++)
        for (size_t o0 = 0; o0 < (size_t)oc; o0 += WG_L) {
            wg_vec half[WG_A][3]; /* G^T down each column of du */
            for (int j = 0; j < WG_A; j++) {
                wg_vec col[WG_A], r[3];
                for (int i = 0; i < WG_A; i++)
                    col[i] = ld(du + ((size_t)(WG_A * i + j) * c + ci) * oc + o0);
                Gt(col, r);
                for (int i = 0; i < 3; i++)
                    half[j][i] = r[i];
            }
            for (int i = 0; i < 3; i++) {
                wg_vec row[WG_A], r[3];
                for (int j = 0; j < WG_A; j++)
                    row[j] = half[j][i];
                Gt(row, r);
                for (int j = 0; j < 3; j++) {
                    float *out = dw + ((size_t)(3 * i + j) * c + ci) * oc + o0;
                    st(out, ld(out) + r[j]);
                }
            }
        }
}

/* The 1x1 convolution of one transformed position over T tiles. */
static kd_conv_geom pointwise(const kd_conv_geom *g, size_t T)
{
    return (kd_conv_geom){1, 1, (int)T, g->c, 1, (int)T, g->oc, 1, 1, 1, 1, 0, 0, 1, 1, 1};
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
    input_tiles_at(g, j->x, t0, t0, t1, T, v);
    kd_conv_geom one = pointwise(g, T);
    for (size_t pos = 0; pos < WG_POS; pos++)
        j->kern->direct_forward(&one, v + pos * T * g->c, 1, j->u + pos * g->c * g->oc, NULL,
                                m + pos * T * g->oc, false);
    output_tiles_at(g, m, t0, t0, t1, T, j->bias, j->accumulate, j->y);
}

static void forward_part(int part, int parts, void *arg)
{
    each_unit(arg, part, parts, forward_unit);
}

static int wg_parts(const kd_conv_geom *g) { return (int)KD_MIN((size_t)kd_threads(), units(g)); }

/* A batch of one unit (batch-1 inference) would leave all but one thread
 * idle, and the products then read the transformed weights (4x the
 * weights) for a handful of tiles: there the phases of the unit run one
 * after the other, each on all threads, the products split by position so
 * that each thread reads only its share of the weights.  Every output is
 * computed exactly as in forward_unit. */
struct phase_job {
    const struct wg_job *j;
    float *v, *m;
    size_t T;
};

static void input_phase(size_t begin, size_t end, void *arg)
{
    const struct phase_job *p = arg;
    /* tiles [begin, end) of the unit write their own slots of v */
    input_tiles_at(p->j->g, p->j->x, 0, begin, end, p->T, p->v);
}

static void product_phase(size_t begin, size_t end, void *arg)
{
    const struct phase_job *p = arg;
    const kd_conv_geom *g = p->j->g;
    kd_conv_geom one = pointwise(g, p->T);
    for (size_t pos = begin; pos < end; pos++)
        p->j->kern->direct_forward(&one, p->v + pos * p->T * g->c, 1,
                                   p->j->u + pos * g->c * g->oc, NULL, p->m + pos * p->T * g->oc,
                                   false);
}

static void output_phase(size_t begin, size_t end, void *arg)
{
    const struct phase_job *p = arg;
    output_tiles_at(p->j->g, p->m, 0, begin, end, p->T, p->j->bias, p->j->accumulate, p->j->y);
}

static void forward_one_unit(const struct wg_job *j)
{
    size_t T = tiles_per_image(j->g) * (size_t)j->g->n;
    struct phase_job p = {j, j->work, j->work + (size_t)WG_POS * T * j->g->c, T};
    kd_parallel_for(T, 1, input_phase, &p);
    kd_parallel_for(WG_POS, 1, product_phase, &p);
    kd_parallel_for(T, 1, output_phase, &p);
}

/* y = bias + conv(x, w), or y += conv(x, w) when accumulate, with u the
 * transformed weights already in place. */
static void forward_transformed(const kd_conv_geom *g, const float *x, const float *u,
                                const float *bias, float *y, bool accumulate, float *work)
{
    struct wg_job j = {.g = g, .x = x, .u = u, .bias = bias, .y = y, .work = work,
                       .accumulate = accumulate, .kern = kd_kernels_active(),
                       .part_floats = part_floats(g)};
    if (units(g) == 1 && kd_threads() > 1)
        forward_one_unit(&j);
    else
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
    input_tiles_at(g, j->x, t0, t0, t1, T, v);
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

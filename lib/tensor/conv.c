/* 2-D convolution on NHWC tensors.  The algorithm is chosen per layer shape,
 * never per batch size or processor (measured in docs/benchmarks.md):
 *  - depthwise (one input channel per group): direct loops vectorised over
 *    channels, since a GEMM with K = kh*kw would be mostly overhead;
 *  - 3x3 stride 1, one group, channels in and out multiples of 16, outputs
 *    at least 4 wide, at most 1M weights: Winograd F(4x4, 3x3)
 *    (winograd.c), whose products run on the direct kernels;
 *  - one group, output channels in multiples of 16, outputs at least 4
 *    pixels wide and at most 128K weights (1x1 included): register-tiled
 *    direct kernels (isa/direct.c), no im2col matrix to write and re-pack;
 *  - 1x1, stride 1, no padding, otherwise: the input already is the GEMM
 *    operand [N*H*W x C], so the convolution is a single GEMM;
 *  - everything else: im2col + GEMM.
 * Dilated layers (taps spread apart, kd_conv_dilated) take only the
 * depthwise loops and im2col + GEMM, which index every tap on its own; the
 * direct and Winograd kernels read contiguous windows and refuse them
 * (kd_direct_applies, kd_winograd_applies), forced or not.
 * One-group GEMM layers run one product over the whole batch on all threads
 * (while its im2col stays small); other layers split the batch: each part
 * runs its own images with single-threaded kernels, in chunks of whole
 * images that bound the workspace and keep it warm in cache, and weight
 * gradients are summed per part and reduced in part order, so a given thread
 * count always gives the same bits.  Every output's sum runs in a fixed order
 * per image, so no result depends on the batch size. */
#include "conv_direct.h"
#include "winograd.h"

#include <string.h>

#define KD_COL_CHUNK_FLOATS ((size_t)1 << 18) /* 1 MiB of im2col per chunk */

int kd_conv_forced_algo = -1;

static size_t weight_count(const kd_conv_geom *g)
{
    return (size_t)g->kh * g->kw * (g->c / g->groups) * g->oc;
}

/* The direct kernels need output rows of a few pixels to reuse each weight
 * vector; below this width a GEMM over the whole batch (im2col rows, or the
 * input itself for a plain 1x1) reads every weight once per block instead
 * of once per image (benchmarks.md: ResNet50V2's 2x2 and 1x1 stages ran
 * 15-50 GFLOP/s direct, 95-130 through GEMM). */
#define KD_DIRECT_MIN_WIDTH 4
/* The direct kernels stream a layer's weights once per output row of every
 * image; GEMM packs a block of them once per 144 rows.  Above this many
 * weights (512 KiB, out of the L2 cache of a core) streaming costs more than
 * im2col (benchmarks.md: ResNet50V2's 14x14 and 7x7 stages, 80-110 GFLOP/s
 * direct, 110-215 through GEMM). */
#define KD_DIRECT_MAX_WEIGHTS ((size_t)1 << 17)

/* Winograd F(4x4, 3x3) multiplies 4x less than the direct kernels; it
 * needs tiles (outputs at least 4 wide) and, like them, loses to GEMM when
 * its transformed weights (4x the weights) no longer stay near the core
 * (benchmarks.md: 1.3-3x the direct kernels from 16 to 256 channels; level
 * with im2col at 7x7 512->512, 2.4M weights, behind on its backward pass). */
#define KD_WINOGRAD_MAX_WEIGHTS ((size_t)1 << 20)

kd_conv_algo kd_conv_choose(const kd_conv_geom *g)
{
    if (g->groups > 1 && g->groups == g->c)
        return KD_CONV_DEPTHWISE;
    if (kd_conv_forced_algo == KD_CONV_IM2COL)
        return KD_CONV_IM2COL;
    if (kd_winograd_applies(g) &&
        (kd_conv_forced_algo == KD_CONV_WINOGRAD ||
         (kd_conv_forced_algo != KD_CONV_DIRECT && g->ow >= KD_DIRECT_MIN_WIDTH &&
          weight_count(g) <= KD_WINOGRAD_MAX_WEIGHTS)))
        return KD_CONV_WINOGRAD;
    if (kd_direct_applies(g) &&
        ((g->ow >= KD_DIRECT_MIN_WIDTH && weight_count(g) <= KD_DIRECT_MAX_WEIGHTS) ||
         kd_conv_forced_algo == KD_CONV_DIRECT))
        return KD_CONV_DIRECT;
    if (g->groups == 1 && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 &&
        g->pl == 0 && g->oh == g->h && g->ow == g->w)
        return KD_CONV_GEMM_1X1;
    return KD_CONV_IM2COL;
}

static size_t col_row_len(const kd_conv_geom *g)
{
    return (size_t)g->kh * g->kw * (g->c / g->groups);
}

static int conv_parts(const kd_conv_geom *g) { return KD_MIN(kd_threads(), g->n); }


/* One part's slice of the workspace: buffers for one chunk of images, then
 * private weight and bias gradients (part 0 accumulates into the caller's). */
typedef struct part_layout {
    int chunk;                        /* images per chunk */
    size_t col, dcol, xpad, dypad, dw, db, total; /* offsets and size */
} part_layout;

static part_layout layout(const kd_conv_geom *g)
{
    part_layout l = {0};
    kd_conv_algo algo = kd_conv_choose(g);
    size_t out_pix = (size_t)g->oh * g->ow, col_img = 0, pad_img = 0;
    kd_conv_geom b;
    kd_direct_data_geom(g, &b);
    bool direct_dx = algo == KD_CONV_DIRECT && kd_direct_backward_data_applies(g);
    if (algo == KD_CONV_IM2COL || (algo == KD_CONV_DIRECT && !direct_dx))
        col_img = out_pix * col_row_len(g);
    if (algo == KD_CONV_DIRECT)
        pad_img = kd_direct_padded_floats(g, 1) + (direct_dx ? kd_direct_padded_floats(&b, 1) : 0);
    size_t per_image = 2 * col_img + pad_img;
    size_t k = per_image ? KD_COL_CHUNK_FLOATS / per_image : (size_t)g->n;
    l.chunk = (int)KD_MAX((size_t)1, KD_MIN(k, (size_t)g->n));
    size_t at = 0;
    l.col = at, at += l.chunk * col_img;
    l.dcol = at, at += l.chunk * col_img;
    l.xpad = at, at += algo == KD_CONV_DIRECT ? l.chunk * kd_direct_padded_floats(g, 1) : 0;
    l.dypad = at, at += direct_dx ? l.chunk * kd_direct_padded_floats(&b, 1) : 0;
    l.dw = at, at += weight_count(g);
    l.db = at, at += (size_t)g->oc;
    l.total = at;
    return l;
}

/* The flipped weights of the direct input gradient, shared by the parts,
 * after their slices. */
static size_t flip_floats(const kd_conv_geom *g)
{
    return kd_conv_choose(g) == KD_CONV_DIRECT && kd_direct_backward_data_applies(g)
               ? weight_count(g)
               : 0;
}

/* ---- small outputs: one GEMM over the whole batch ------------------------- */
/* Layers that take GEMM (narrow outputs, channel counts off the direct
 * kernels' grid) run it once over the whole batch, on all threads, rather
 * than per part: with a part's few rows, packing the weights would cost as
 * much as the product.  Up to this much im2col; larger batches of large
 * images take the chunked per-part path below (the same sums: GEMM results
 * do not depend on how its rows are split). */
#define KD_WHOLE_BATCH_FLOATS ((size_t)1 << 22)

static bool whole_batch(const kd_conv_geom *g)
{
    kd_conv_algo algo = kd_conv_choose(g);
    if (g->groups != 1 || (algo != KD_CONV_IM2COL && algo != KD_CONV_GEMM_1X1))
        return false;
    return algo == KD_CONV_GEMM_1X1 ||
           (size_t)g->n * g->oh * g->ow * col_row_len(g) <= KD_WHOLE_BATCH_FLOATS;
}

/* The workspace serves every batch of up to g->n images (a model plans it
 * once for its largest batch): a smaller batch may take the whole-batch path
 * where g->n does not, so both needs are covered.  The whole-batch need is
 * im2col of the largest batch that takes that path, then dcol of the same
 * size for backward; the per-part need grows with the batch. */
size_t kd_conv_workspace(const kd_conv_geom *g)
{
    if (kd_conv_choose(g) == KD_CONV_WINOGRAD)
        return kd_winograd_workspace(g);
    size_t per_part = (size_t)conv_parts(g) * layout(g).total + flip_floats(g);
    if (g->groups != 1 || kd_conv_choose(g) != KD_CONV_IM2COL)
        return whole_batch(g) ? 0 : per_part; /* a plain 1x1 needs none */
    size_t per_image = (size_t)g->oh * g->ow * col_row_len(g);
    size_t images = KD_MIN((size_t)g->n, KD_WHOLE_BATCH_FLOATS / KD_MAX(per_image, (size_t)1));
    return KD_MAX(per_part, 2 * images * per_image);
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

static void im2col_rows(size_t begin, size_t end, void *arg);
static void col2im_images(size_t begin, size_t end, void *arg);

/* Rows of col are output pixels (image, oy, ox); a row holds the kh x kw
 * window of the group's channels, zero where the window leaves the image. */
KD_CLONES static void im2col_rows(size_t begin, size_t end, void *arg)
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
            int iy = oy * g->sh + ky * g->dh - g->pt;
            if (iy < 0 || iy >= g->h) {
                memset(dst, 0, sizeof(float) * (size_t)g->kw * cg);
                dst += (size_t)g->kw * cg;
                continue;
            }
            for (int kx = 0; kx < g->kw; kx++, dst += cg) {
                int ix = ox * g->sw + kx * g->dw - g->pl;
                if (ix < 0 || ix >= g->w)
                    memset(dst, 0, sizeof(float) * cg);
                else
                    memcpy(dst, xi + ((size_t)iy * g->w + ix) * g->c, sizeof(float) * cg);
            }
        }
    }
}

/* The adjoint of im2col, one image per index so that writers never overlap. */
KD_CLONES static void col2im_images(size_t begin, size_t end, void *arg)
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
                    int iy = oy * g->sh + ky * g->dh - g->pt;
                    if (iy < 0 || iy >= g->h) {
                        src += (size_t)g->kw * cg;
                        continue;
                    }
                    for (int kx = 0; kx < g->kw; kx++, src += cg) {
                        int ix = ox * g->sw + kx * g->dw - g->pl;
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
KD_CLONES static void depthwise_forward_rows(size_t begin, size_t end, void *arg)
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
            int ky0, ky1, kx0, kx1;
            kd_window_dilated(oy, g->sh, g->pt, g->kh, g->dh, g->h, &ky0, &ky1);
            kd_window_dilated(ox, g->sw, g->pl, g->kw, g->dw, g->w, &kx0, &kx1);
            for (int ky = ky0; ky < ky1; ky++) {
                int iy = oy * g->sh + ky * g->dh - g->pt;
                for (int kx = kx0; kx < kx1; kx++) {
                    int ix = ox * g->sw + kx * g->dw - g->pl;
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
KD_CLONES static void depthwise_backward_dx_images(size_t begin, size_t end, void *arg)
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
                int ky0, ky1, kx0, kx1;
                kd_window_dilated(oy, g->sh, g->pt, g->kh, g->dh, g->h, &ky0, &ky1);
                kd_window_dilated(ox, g->sw, g->pl, g->kw, g->dw, g->w, &kx0, &kx1);
                for (int ky = ky0; ky < ky1; ky++) {
                    int iy = oy * g->sh + ky * g->dh - g->pt;
                    for (int kx = kx0; kx < kx1; kx++) {
                        int ix = ox * g->sw + kx * g->dw - g->pl;
                        float *dxp = dxi + ((size_t)iy * g->w + ix) * g->c;
                        const float *wp = j->w + ((size_t)ky * g->kw + kx) * oc;
                        if (m == 1)
                            for (int c = 0; c < oc; c++)
                                dxp[c] += dyo[c] * wp[c];
                        else
                            for (int c = 0; c < oc; c++)
                                dxp[c / m] += dyo[c] * wp[c];
                    }
                }
            }
    }
}

/* dw and db in one serial sweep: a fixed summation order keeps results
 * independent of the thread count. */
KD_CLONES static void depthwise_backward_dw(const kd_conv_geom *g, const float *x, const float *dy,
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
                int ky0, ky1, kx0, kx1;
                kd_window_dilated(oy, g->sh, g->pt, g->kh, g->dh, g->h, &ky0, &ky1);
                kd_window_dilated(ox, g->sw, g->pl, g->kw, g->dw, g->w, &kx0, &kx1);
                for (int ky = ky0; ky < ky1; ky++) {
                    int iy = oy * g->sh + ky * g->dh - g->pt;
                    for (int kx = kx0; kx < kx1; kx++) {
                        int ix = ox * g->sw + kx * g->dw - g->pl;
                        const float *xp = xi + ((size_t)iy * g->w + ix) * g->c;
                        float *dwp = dw + ((size_t)ky * g->kw + kx) * oc;
                        if (m == 1)
                            for (int c = 0; c < oc; c++)
                                dwp[c] += xp[c] * dyo[c];
                        else
                            for (int c = 0; c < oc; c++)
                                dwp[c] += xp[c / m] * dyo[c];
                    }
                }
            }
    }
}

/* ---- the public kernels ------------------------------------------------------------ */

KD_CLONES static void fill_bias(float *y, size_t rows, int oc, const float *bias)
{
    for (size_t r = 0; r < rows; r++) {
        if (bias)
            memcpy(y + r * oc, bias, sizeof(float) * oc);
        else
            memset(y + r * oc, 0, sizeof(float) * oc);
    }
}

KD_CLONES static void bias_grad(const float *dy, size_t rows, int oc, float *db)
{
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < oc; o++)
            db[o] += dy[r * oc + o];
}

struct conv_job {
    const kd_conv_geom *g;
    const float *x, *w, *bias, *dy;
    float *y, *dx, *dw, *db, *work;
    bool assign; /* backward: dx is written, not added to */
    const kd_kernels *kern; /* fetched once per call: every part runs one path */
    const float *wflip;     /* backward, direct input gradient: flipped weights */
};

static void fill_bias_range(size_t begin, size_t end, void *arg)
{
    const struct conv_job *j = arg;
    fill_bias(j->y + begin * j->g->oc, end - begin, j->g->oc, j->bias);
}

/* Zero the part's images of dx where its kernel can only accumulate. */
static void clear_dx(const struct conv_job *j, int n0, int n1)
{
    if (j->dx && j->assign) {
        size_t in_img = (size_t)j->g->h * j->g->w * j->g->c;
        memset(j->dx + n0 * in_img, 0, sizeof(float) * (n1 - n0) * in_img);
    }
}

/* The images of one part, and its slice of the workspace. */
static float *part_images(const struct conv_job *j, const part_layout *l, int part, int parts,
                          int *n0, int *n1)
{
    size_t b, e;
    kd_split((size_t)j->g->n, part, parts, &b, &e);
    *n0 = (int)b;
    *n1 = (int)e;
    return j->work + (size_t)part * l->total;
}

static void forward_part(int part, int parts, void *arg)
{
    const struct conv_job *j = arg;
    const kd_conv_geom *g = j->g;
    part_layout l = layout(g);
    int n0, n1;
    float *work = part_images(j, &l, part, parts, &n0, &n1);
    size_t out_pix = (size_t)g->oh * g->ow, in_img = (size_t)g->h * g->w * g->c;
    kd_conv_algo algo = kd_conv_choose(g);
    if (algo == KD_CONV_DIRECT) {
        for (int c0 = n0; c0 < n1; c0 += l.chunk) {
            int nc = KD_MIN(l.chunk, n1 - c0);
            kd_direct_pad(g, j->x + c0 * in_img, nc, work + l.xpad);
            j->kern->direct_forward(g, work + l.xpad, nc, j->w, j->bias,
                                     j->y + c0 * out_pix * g->oc, false);
        }
        return;
    }
    /* im2col (a plain 1x1 always runs whole_forward) */
    fill_bias(j->y + n0 * out_pix * g->oc, (n1 - n0) * out_pix, g->oc, j->bias);
    int ocg = g->oc / g->groups, klen = (int)col_row_len(g);
    float *col = work + l.col;
    for (int c0 = n0; c0 < n1; c0 += l.chunk) {
        int nc = KD_MIN(l.chunk, n1 - c0);
        int rows = (int)(nc * out_pix);
        for (int grp = 0; grp < g->groups; grp++) {
            struct col_job cj = {g, grp, j->x + c0 * in_img, col, NULL, NULL};
            im2col_rows(0, (size_t)rows, &cj);
            j->kern->gemm(false, false, rows, ocg, klen, 1.0f, col, klen, j->w + (size_t)grp * ocg,
                    g->oc, 1.0f, j->y + (size_t)c0 * out_pix * g->oc + (size_t)grp * ocg, g->oc);
        }
    }
}

/* dx of a chunk through im2col's adjoint: dcol = dy W^T, then col2im. */
static void data_grad_col2im(const struct conv_job *j, int grp, int c0, int nc, float *dcol)
{
    const kd_conv_geom *g = j->g;
    size_t out_pix = (size_t)g->oh * g->ow;
    int ocg = g->oc / g->groups, klen = (int)col_row_len(g), rows = (int)(nc * out_pix);
    j->kern->gemm(false, true, rows, klen, ocg, 1.0f, j->dy + (size_t)c0 * out_pix * g->oc + grp * ocg,
            g->oc, j->w + (size_t)grp * ocg, g->oc, 0.0f, dcol, klen);
    struct col_job bj = {g, grp, NULL, NULL, j->dx + (size_t)c0 * g->h * g->w * g->c, dcol};
    col2im_images(0, (size_t)nc, &bj);
}

static void backward_direct(const struct conv_job *j, const part_layout *l, float *work,
                            int n0, int n1, float *dw)
{
    const kd_conv_geom *g = j->g;
    size_t out_pix = (size_t)g->oh * g->ow, in_img = (size_t)g->h * g->w * g->c;
    kd_conv_geom b;
    kd_direct_data_geom(g, &b);
    bool direct_dx = j->dx && kd_direct_backward_data_applies(g);
    if (!direct_dx)
        clear_dx(j, n0, n1);
    for (int c0 = n0; c0 < n1; c0 += l->chunk) {
        int nc = KD_MIN(l->chunk, n1 - c0);
        const float *dyc = j->dy + c0 * out_pix * g->oc;
        kd_direct_pad(g, j->x + c0 * in_img, nc, work + l->xpad);
        j->kern->direct_backward_weights(g, work + l->xpad, nc, dyc, dw);
        if (direct_dx) {
            kd_direct_pad(&b, dyc, nc, work + l->dypad);
            j->kern->direct_forward(&b, work + l->dypad, nc, j->wflip, NULL,
                                     j->dx + c0 * in_img, !j->assign);
        } else if (j->dx) {
            data_grad_col2im(j, 0, c0, nc, work + l->dcol);
        }
    }
}

/* dx for the part's images; dw and db into the part's private sums (part 0:
 * straight into the caller's). */
static void backward_part(int part, int parts, void *arg)
{
    const struct conv_job *j = arg;
    const kd_conv_geom *g = j->g;
    part_layout l = layout(g);
    int n0, n1;
    float *work = part_images(j, &l, part, parts, &n0, &n1);
    size_t out_pix = (size_t)g->oh * g->ow, wsize = weight_count(g);
    float *dw = part == 0 ? j->dw : work + l.dw;
    float *db = part == 0 ? j->db : work + l.db;
    if (part != 0) {
        memset(dw, 0, sizeof(float) * wsize);
        memset(db, 0, sizeof(float) * g->oc);
    }
    const float *dy = j->dy + n0 * out_pix * g->oc;
    if (j->db)
        bias_grad(dy, (n1 - n0) * out_pix, g->oc, db);
    kd_conv_algo algo = kd_conv_choose(g);
    if (algo == KD_CONV_DIRECT) {
        backward_direct(j, &l, work, n0, n1, dw);
        return;
    }
    /* im2col (a plain 1x1 always runs whole_backward) */
    clear_dx(j, n0, n1);
    int ocg = g->oc / g->groups, klen = (int)col_row_len(g);
    float *col = work + l.col;
    for (int c0 = n0; c0 < n1; c0 += l.chunk) {
        int nc = KD_MIN(l.chunk, n1 - c0);
        int rows = (int)(nc * out_pix);
        const float *dyc = j->dy + (size_t)c0 * out_pix * g->oc;
        for (int grp = 0; grp < g->groups; grp++) {
            struct col_job cj = {g, grp, j->x + (size_t)c0 * g->h * g->w * g->c, col, NULL, NULL};
            im2col_rows(0, (size_t)rows, &cj);
            j->kern->gemm(true, false, klen, ocg, rows, 1.0f, col, klen, dyc + (size_t)grp * ocg,
                    g->oc, 1.0f, dw + (size_t)grp * ocg, g->oc);
            if (j->dx)
                data_grad_col2im(j, grp, c0, nc, work + l.dcol);
        }
    }
}

/* Adds the parts' private weight and bias gradients, in part order. */
static void reduce_parts(const struct conv_job *j, int parts, const part_layout *l)
{
    size_t wsize = weight_count(j->g);
    for (int p = 1; p < parts; p++) {
        const float *pw = j->work + (size_t)p * l->total + l->dw;
        const float *pb = j->work + (size_t)p * l->total + l->db;
        for (size_t i = 0; i < wsize; i++)
            j->dw[i] += pw[i];
        if (j->db)
            for (int o = 0; o < j->g->oc; o++)
                j->db[o] += pb[o];
    }
}

static void whole_forward(const kd_conv_geom *g, const float *x, const float *w,
                          const float *bias, float *y, float *work)
{
    size_t rows = (size_t)g->n * g->oh * g->ow;
    struct conv_job fj = {.g = g, .bias = bias, .y = y};
    kd_parallel_for(rows, 256, fill_bias_range, &fj);
    if (kd_conv_choose(g) == KD_CONV_GEMM_1X1) {
        kd_gemm(false, false, (int)rows, g->oc, g->c, 1.0f, x, g->c, w, g->oc, 1.0f, y, g->oc);
        return;
    }
    int klen = (int)col_row_len(g);
    struct col_job cj = {g, 0, x, work, NULL, NULL};
    kd_parallel_for(rows, 64, im2col_rows, &cj);
    kd_gemm(false, false, (int)rows, g->oc, klen, 1.0f, work, klen, w, g->oc, 1.0f, y, g->oc);
}

static void whole_backward(const kd_conv_geom *g, const float *x, const float *w,
                           const float *dy, float *dx, bool assign, float *dw, float *db,
                           float *work)
{
    size_t rows = (size_t)g->n * g->oh * g->ow;
    if (db)
        bias_grad(dy, rows, g->oc, db);
    if (kd_conv_choose(g) == KD_CONV_GEMM_1X1) {
        kd_gemm(true, false, g->c, g->oc, (int)rows, 1.0f, x, g->c, dy, g->oc, 1.0f, dw, g->oc);
        if (dx)
            kd_gemm(false, true, (int)rows, g->c, g->oc, 1.0f, dy, g->oc, w, g->oc,
                    assign ? 0.0f : 1.0f, dx, g->c);
        return;
    }
    int klen = (int)col_row_len(g);
    float *col = work, *dcol = work + rows * klen;
    struct col_job cj = {g, 0, x, col, NULL, NULL};
    kd_parallel_for(rows, 64, im2col_rows, &cj);
    kd_gemm(true, false, klen, g->oc, (int)rows, 1.0f, col, klen, dy, g->oc, 1.0f, dw, g->oc);
    if (!dx)
        return;
    kd_gemm(false, true, (int)rows, klen, g->oc, 1.0f, dy, g->oc, w, g->oc, 0.0f, dcol, klen);
    if (assign)
        memset(dx, 0, sizeof(float) * (size_t)g->n * g->h * g->w * g->c);
    struct col_job bj = {g, 0, NULL, NULL, dx, dcol};
    kd_parallel_for((size_t)g->n, 1, col2im_images, &bj);
}

/* Fewer images than threads (batch-1 inference): the direct kernels split
 * output rows instead, over the batch padded once into part 0's buffer (a
 * part's chunk holds at least one image, and here every part's images
 * together are fewer than the threads).  Each output is computed exactly as
 * in the image split. */
struct rows_job {
    const struct conv_job *j;
    const float *xp;
};

static void direct_forward_rows(size_t begin, size_t end, void *arg)
{
    const struct rows_job *r = arg;
    const kd_conv_geom *g = r->j->g;
    size_t img_floats = kd_direct_padded_floats(g, 1);
    int wp = kd_direct_padded_w(g);
    while (begin < end) {
        int n = (int)(begin / g->oh), oy = (int)(begin % g->oh);
        int rows = (int)KD_MIN(end - begin, (size_t)(g->oh - oy));
        kd_conv_geom sub = *g;
        sub.n = 1;
        sub.oh = rows;
        const float *xp = r->xp + n * img_floats + (size_t)oy * g->sh * wp * g->c;
        float *y = r->j->y + ((size_t)n * g->oh + oy) * g->ow * g->oc;
        r->j->kern->direct_forward(&sub, xp, 1, r->j->w, r->j->bias, y, false);
        begin += rows;
    }
}

static bool split_rows(const kd_conv_geom *g)
{
    return kd_conv_choose(g) == KD_CONV_DIRECT && g->n < kd_threads() &&
           layout(g).chunk >= g->n;
}

void kd_conv_forward(const kd_conv_geom *g, const float *x, const float *w, const float *bias,
                     float *y, float *work)
{
    if (split_rows(g)) {
        struct conv_job j = {g,    x,     w, bias, NULL, y, NULL, NULL, NULL, work, false,
                             kd_kernels_active(), NULL};
        float *xp = work + layout(g).xpad;
        kd_direct_pad(g, x, g->n, xp);
        struct rows_job r = {&j, xp};
        kd_parallel_for((size_t)g->n * g->oh, 1, direct_forward_rows, &r);
        return;
    }
    if (whole_batch(g)) {
        whole_forward(g, x, w, bias, y, work);
        return;
    }
    if (kd_conv_choose(g) == KD_CONV_WINOGRAD) {
        kd_winograd_forward(g, x, w, bias, y, work);
        return;
    }
    if (kd_conv_choose(g) == KD_CONV_DEPTHWISE) {
        struct dw_job dj = {g, x, w, bias, NULL, y, NULL};
        kd_parallel_for((size_t)g->n * g->oh, 4, depthwise_forward_rows, &dj);
        return;
    }
    struct conv_job j = {g,    x,     w, bias, NULL, y, NULL, NULL, NULL, work, false,
                         kd_kernels_active(), NULL};
    kd_parallel_parts(conv_parts(g), forward_part, &j);
}

static void depthwise_backward_part(int part, int parts, void *arg)
{
    const struct conv_job *j = arg;
    const kd_conv_geom *g = j->g;
    part_layout l = layout(g);
    int n0, n1;
    float *work = part_images(j, &l, part, parts, &n0, &n1);
    size_t wsize = weight_count(g);
    float *dw = part == 0 ? j->dw : work + l.dw;
    float *db = part == 0 ? j->db : work + l.db;
    if (part != 0) {
        memset(dw, 0, sizeof(float) * wsize);
        memset(db, 0, sizeof(float) * g->oc);
    }
    clear_dx(j, n0, n1);
    kd_conv_geom sub = *g;
    sub.n = n1 - n0;
    size_t xoff = (size_t)n0 * g->h * g->w * g->c, yoff = (size_t)n0 * g->oh * g->ow * g->oc;
    depthwise_backward_dw(&sub, j->x + xoff, j->dy + yoff, dw, j->db ? db : NULL);
    if (j->dx) {
        struct dw_job dj = {&sub, j->x + xoff, j->w, NULL, j->dy + yoff, NULL, j->dx + xoff};
        depthwise_backward_dx_images(0, (size_t)sub.n, &dj);
    }
}

void kd_conv_backward(const kd_conv_geom *g, const float *x, const float *w, const float *dy,
                      float *dx, bool assign, float *dw, float *db, float *work)
{
    if (whole_batch(g)) {
        whole_backward(g, x, w, dy, dx, assign, dw, db, work);
        return;
    }
    if (kd_conv_choose(g) == KD_CONV_WINOGRAD) {
        if (db)
            bias_grad(dy, (size_t)g->n * g->oh * g->ow, g->oc, db);
        kd_winograd_backward(g, x, w, dy, dx, assign, dw, work);
        return;
    }
    struct conv_job j = {g,  x,  w,    NULL, dy, NULL, dx, dw, db, work, assign,
                         kd_kernels_active(), NULL};
    int parts = conv_parts(g);
    part_layout l = layout(g);
    if (dx && flip_floats(g)) { /* once, on all threads, before the parts */
        float *wflip = work + (size_t)parts * l.total;
        kd_direct_flip_weights(g, w, wflip);
        j.wflip = wflip;
    }
    kd_parallel_parts(parts, kd_conv_choose(g) == KD_CONV_DEPTHWISE ? depthwise_backward_part
                                                                    : backward_part,
                      &j);
    reduce_parts(&j, parts, &l);
}

/* Forward values of conv, pooling, batch norm, dense and the activations
 * against PyTorch (fixtures/torch_reference.bin, made once by
 * fixtures/gen_torch_reference.py), and convolution forward and backward
 * against a naive direct implementation on many shapes, including batches
 * large enough to take several im2col chunks, and dilated layers on every
 * path that takes them, under every kernel path of the processor. */
#include "testutil.h"

#include "nn/nn.h"

#include <math.h>

typedef struct record {
    char name[64];
    uint32_t count;
    float *data;
} record;

static record records[128];
static int n_records;

static int load_fixture(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/torch_reference.bin", tu_root());
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint32_t len;
    while (fread(&len, 4, 1, f) == 1 && n_records < 128) {
        record *r = &records[n_records++];
        if (len >= sizeof r->name || fread(r->name, 1, len, f) != len)
            return -1;
        r->name[len] = '\0';
        if (fread(&r->count, 4, 1, f) != 1)
            return -1;
        r->data = malloc(sizeof(float) * r->count);
        if (fread(r->data, 4, r->count, f) != r->count)
            return -1;
    }
    fclose(f);
    return 0;
}

static int free_fixture(void **state)
{
    (void)state;
    for (int i = 0; i < n_records; i++)
        free(records[i].data);
    return 0;
}

static const float *get(const char *name, uint32_t count)
{
    for (int i = 0; i < n_records; i++)
        if (strcmp(records[i].name, name) == 0) {
            if (records[i].count != count)
                fail_msg("fixture %s has %u values, expected %u", name, records[i].count,
                         count);
            return records[i].data;
        }
    fail_msg("fixture %s missing", name);
    return NULL;
}

static void assert_close(const float *got, const float *want, size_t n, float tol,
                         const char *what)
{
    for (size_t i = 0; i < n; i++) {
        float err = fabsf(got[i] - want[i]);
        if (!(err <= tol * (1.0f + fabsf(want[i]))))
            fail_msg("%s[%zu]: got %.7g, want %.7g", what, i, (double)got[i], (double)want[i]);
    }
}

static void run_conv_case(const char *name, int n, int c, int h, int w, int oc, int k, int s,
                          int pad, int groups, bool bias)
{
    kd_conv_geom g = {n, h, w, c, (h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1, oc,
                      k, k, s, s, pad, pad, groups, 1, 1};
    char key[96];
    snprintf(key, sizeof key, "%s.x", name);
    const float *x = get(key, (uint32_t)(n * h * w * c));
    snprintf(key, sizeof key, "%s.w", name);
    const float *wt = get(key, (uint32_t)(k * k * (c / groups) * oc));
    const float *b = NULL;
    if (bias) {
        snprintf(key, sizeof key, "%s.b", name);
        b = get(key, (uint32_t)oc);
    }
    size_t out = (size_t)n * g.oh * g.ow * oc;
    snprintf(key, sizeof key, "%s.y", name);
    const float *want = get(key, (uint32_t)out);
    float *y = malloc(sizeof(float) * out);
    float *work = malloc(sizeof(float) * (kd_conv_workspace(&g) + 1));
    kd_conv_forward(&g, x, wt, b, y, work);
    assert_close(y, want, out, 1e-4f, name);
    free(y);
    free(work);
}

static void test_conv_vs_torch(void **state)
{
    (void)state;
    run_conv_case("conv_3x3_s1_p1", 2, 3, 5, 6, 4, 3, 1, 1, 1, true);
    run_conv_case("conv_3x3_s2_p1", 2, 4, 7, 7, 6, 3, 2, 1, 1, false);
    run_conv_case("conv_grouped", 2, 4, 6, 5, 6, 3, 1, 0, 2, true);
    run_conv_case("conv_depthwise_m2", 2, 3, 6, 6, 6, 5, 2, 2, 3, false);
    run_conv_case("conv_1x1", 3, 8, 4, 4, 5, 1, 1, 0, 1, true);
}

static void test_pool_vs_torch(void **state)
{
    (void)state;
    const float *x = get("pool.x", 2 * 6 * 6 * 3);
    float y[2 * 3 * 3 * 3];
    int32_t arg[2 * 3 * 3 * 3];
    kd_pool_geom g2 = {2, 6, 6, 3, 3, 3, 2, 2, 2, 2, 0, 0};
    kd_maxpool_forward(&g2, x, y, arg);
    assert_close(y, get("maxpool_2s2.y", 54), 54, 1e-6f, "maxpool 2/2");
    kd_avgpool_forward(&g2, x, y);
    assert_close(y, get("avgpool_2s2.y", 54), 54, 1e-6f, "avgpool 2/2");
    kd_pool_geom g3 = {2, 6, 6, 3, 3, 3, 3, 3, 2, 2, 1, 1};
    kd_maxpool_forward(&g3, x, y, arg);
    assert_close(y, get("maxpool_3s2p1.y", 54), 54, 1e-6f, "maxpool 3/2 pad 1");
    kd_avgpool_forward(&g3, x, y);
    assert_close(y, get("avgpool_3s2p1.y", 54), 54, 1e-6f, "avgpool 3/2 pad 1");
}

static void test_batchnorm_vs_torch(void **state)
{
    (void)state;
    const size_t rows = 4 * 3 * 3;
    const float *x = get("bn.x", rows * 5);
    const float *gamma = get("bn.gamma", 5), *beta = get("bn.beta", 5);
    const float *mean = get("bn.mean", 5), *var = get("bn.var", 5);
    float y[4 * 3 * 3 * 5], mm[5] = {0}, mv[5] = {1, 1, 1, 1, 1}, bm[5], bi[5], ab[10];
    double *scratch = malloc(sizeof(double) * kd_bn_scratch_doubles(5));
    kd_bn_forward_train(rows, 5, x, gamma, beta, 1e-3f, 0.99f, mm, mv, bm, bi, y, scratch, ab,
                        false, NULL);
    free(scratch);
    assert_close(y, get("bn_train.y", rows * 5), rows * 5, 1e-5f, "bn train");
    kd_bn_forward_eval(rows, 5, x, gamma, beta, mean, var, 1e-3f, y, ab, false);
    assert_close(y, get("bn_eval.y", rows * 5), rows * 5, 1e-5f, "bn eval");
}

/* Batch statistics against a two-pass double computation, on a shape that
 * takes every branch of the kernel: several row blocks and thread parts,
 * full 16-channel chunks and a ragged last one, and a mean 1000 times the
 * spread (where E[x^2] - E[x]^2 in float would lose every digit). */
static void test_batchnorm_statistics(void **state)
{
    (void)state;
    const size_t rows = 1000;
    const int c = 37;
    float *x = malloc(sizeof(float) * rows * c), *y = malloc(sizeof(float) * rows * c);
    float gamma[37], beta[37], mm[37] = {0}, mv[37], bm[37], bi[37], ab[74];
    double *scratch = malloc(sizeof(double) * kd_bn_scratch_doubles(c));
    uint64_t state_rng = 12345;
    for (size_t i = 0; i < rows * c; i++) {
        state_rng = state_rng * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)(state_rng >> 40) / (float)(1 << 24) - 0.5f;
        x[i] = 1000.0f * (float)(i % c) + u;
    }
    for (int ch = 0; ch < c; ch++)
        gamma[ch] = 1, beta[ch] = 0, mv[ch] = 1;
    kd_bn_forward_train(rows, c, x, gamma, beta, 1e-5f, 0.9f, mm, mv, bm, bi, y, scratch, ab,
                        false, NULL);
    for (int ch = 0; ch < c; ch++) {
        double mean = 0, var = 0;
        for (size_t r = 0; r < rows; r++)
            mean += x[r * c + ch];
        mean /= (double)rows;
        for (size_t r = 0; r < rows; r++)
            var += (x[r * c + ch] - mean) * (x[r * c + ch] - mean);
        var /= (double)rows;
        double invstd = 1 / sqrt(var + 1e-5);
        if (fabs(bm[ch] - mean) > 1e-6 * fabs(mean) + 1e-6 ||
            fabs(bi[ch] - invstd) > 1e-5 * invstd)
            fail_msg("channel %d: mean %.9g invstd %.9g, want %.9g %.9g", ch, (double)bm[ch],
                     (double)bi[ch], mean, invstd);
    }
    free(x), free(y), free(scratch);
}

static void test_dense_vs_torch(void **state)
{
    (void)state;
    const float *x = get("dense.x", 36), *wt = get("dense.w", 84), *b = get("dense.b", 7);
    kdens_model *m;
    ASSERT_OK(kdens_model_from_spec("dense units=7", 1, 1, 12, 7, 1, &m));
    /* parameters in registration order: kernel [12][7], then bias */
    memcpy(m->weights + m->params[0].offset, wt, sizeof(float) * 84);
    memcpy(m->weights + m->params[1].offset, b, sizeof(float) * 7);
    float y[21];
    ASSERT_OK(kdens_model_predict_logits(m, x, 3, y));
    assert_close(y, get("dense.y", 21), 21, 1e-5f, "dense");
    kdens_model_free(m);
}

static void test_activations_vs_torch(void **state)
{
    (void)state;
    static const struct {
        kd_act act;
        const char *name;
    } acts[] = {{KD_ACT_RELU, "act_relu.y"},       {KD_ACT_RELU6, "act_relu6.y"},
                {KD_ACT_SIGMOID, "act_sigmoid.y"}, {KD_ACT_HARD_SIGMOID, "act_hard_sigmoid.y"},
                {KD_ACT_SWISH, "act_swish.y"},     {KD_ACT_HARD_SWISH, "act_hard_swish.y"},
                {KD_ACT_TANH, "act_tanh.y"},       {KD_ACT_SOFTMAX, "act_softmax.y"}};
    const float *x = get("act.x", 36);
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        float y[36];
        kd_act_forward(acts[i].act, 4, 9, x, y);
        assert_close(y, get(acts[i].name, 36), 36, 1e-6f, acts[i].name);
    }
}

/* ---- naive direct convolution ---------------------------------------------------- */

/* The convolution by its definition, in double; with mag, also the sum of
 * the products' magnitudes per output (what bounds a rounding error). */
static void naive_conv(const kd_conv_geom *g, const float *x, const float *w, const float *b,
                       float *y, float *mag)
{
    int cg = g->c / g->groups, ocg = g->oc / g->groups;
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int o = 0; o < g->oc; o++) {
                    int grp = o / ocg;
                    double acc = b ? b[o] : 0, size = b ? fabs(b[o]) : 0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh + ky * g->dh - g->pt,
                                ix = ox * g->sw + kx * g->dw - g->pl;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                continue;
                            for (int ci = 0; ci < cg; ci++) {
                                double t = (double)x[((size_t)(n * g->h + iy) * g->w + ix) * g->c +
                                                     grp * cg + ci] *
                                           w[((size_t)(ky * g->kw + kx) * cg + ci) * g->oc + o];
                                acc += t;
                                size += fabs(t);
                            }
                        }
                    size_t at = ((size_t)(n * g->oh + oy) * g->ow + ox) * g->oc + o;
                    y[at] = (float)acc;
                    if (mag)
                        mag[at] = (float)size;
                }
}

/* The adjoints by brute force: dx and dw from dy, by the definition, and
 * the sums of their products' magnitudes. */
static void naive_conv_backward(const kd_conv_geom *g, const float *x, const float *w,
                                const float *dy, double *dx, double *dw, double *mdx,
                                double *mdw)
{
    int cg = g->c / g->groups, ocg = g->oc / g->groups;
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int o = 0; o < g->oc; o++) {
                    int grp = o / ocg;
                    double d = dy[((size_t)(n * g->oh + oy) * g->ow + ox) * g->oc + o];
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh + ky * g->dh - g->pt,
                                ix = ox * g->sw + kx * g->dw - g->pl;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                continue;
                            for (int ci = 0; ci < cg; ci++) {
                                size_t xi = ((size_t)(n * g->h + iy) * g->w + ix) * g->c +
                                            grp * cg + ci;
                                size_t wi = ((size_t)(ky * g->kw + kx) * cg + ci) * g->oc + o;
                                dx[xi] += d * w[wi];
                                dw[wi] += d * x[xi];
                                mdx[xi] += fabs(d * w[wi]);
                                mdw[wi] += fabs(d * x[xi]);
                            }
                        }
                }
}

static void check_geom(kd_conv_geom g);

/* A gradient against the naive double sums, within 2e-5 of the sum of the
 * products' magnitudes (mag), as the forward pass is checked. */
static void check_grad(const char *what, const char *name, const float *got, const double *want,
                       const double *mag, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - want[i]);
        worst = fmax(worst, err / (1 + mag[i]));
        if (!(err <= 2e-5 * (1 + mag[i])))
            fail_msg("%s %s[%zu]: %g vs %g (products' magnitude %g)", what, name, i,
                     (double)got[i], want[i], mag[i]);
    }
    if (getenv("KD_TEST_VERBOSE"))
        printf("%s %s: worst error / magnitude %.3g\n", what, name, worst);
}

static void check_shape(int n, int h, int w, int c, int oc, int k, int s, int pad, int groups)
{
    int oh = (h + 2 * pad - k) / s + 1, ow = (w + 2 * pad - k) / s + 1;
    kd_conv_geom g = {n, h, w, c, oh, ow, oc, k, k, s, s, pad, pad, groups, 1, 1};
    check_geom(g);
}

/* A dilated layer: k taps d apart span (k - 1) * d + 1 pixels. */
static void check_dilated(int n, int h, int w, int c, int oc, int k, int s, int d, int pad,
                          int groups)
{
    int span = (k - 1) * d + 1;
    int oh = (h + 2 * pad - span) / s + 1, ow = (w + 2 * pad - span) / s + 1;
    kd_conv_geom g = {n, h, w, c, oh, ow, oc, k, k, s, s, pad, pad, groups, d, d};
    check_geom(g);
}

/* Dilated layers on every path that takes them, under the default choice
 * and with the direct and Winograd kernels forced (which must decline). */
static void check_dilated_shapes(void)
{
    for (int forced = 0; forced < 3; forced++) {
        kd_conv_forced_algo = forced == 0 ? -1 : forced == 1 ? KD_CONV_DIRECT : KD_CONV_WINOGRAD;
        /* a Winograd shape and a direct one, dilated: im2col */
        kd_conv_geom wg = {2, 8, 8, 32, 8, 8, 32, 3, 3, 1, 1, 2, 2, 1, 2, 2};
        kd_conv_geom dr = {2, 8, 9, 16, 4, 5, 16, 3, 3, 2, 2, 2, 2, 1, 2, 2};
        assert_int_equal(kd_conv_choose(&wg), KD_CONV_IM2COL);
        assert_int_equal(kd_conv_choose(&dr), KD_CONV_IM2COL);
        check_geom(wg);
        check_geom(dr);
        check_dilated(2, 9, 9, 3, 4, 3, 1, 2, 2, 1);  /* whole-batch im2col */
        check_dilated(3, 11, 10, 4, 8, 3, 2, 2, 1, 1); /* stride 2 */
        check_dilated(2, 12, 12, 6, 4, 3, 1, 3, 0, 2); /* grouped: per-part im2col */
        check_dilated(2, 10, 10, 5, 5, 3, 1, 2, 2, 5); /* depthwise */
        check_dilated(2, 11, 9, 3, 6, 3, 2, 2, 1, 3);  /* depthwise, multiplier 2, stride 2 */
        check_dilated(2, 9, 9, 4, 4, 5, 1, 2, 4, 4);   /* depthwise 5x5 */
        /* windows wholly in the padding (taps 5 apart around a 2x2 input) */
        check_dilated(1, 2, 2, 2, 2, 2, 1, 5, 5, 2);
        check_dilated(2, 2, 2, 3, 4, 2, 1, 5, 5, 1);
        /* a dilated 1x1 reads what a plain one reads: the GEMM and direct paths */
        check_dilated(2, 7, 7, 3, 5, 1, 1, 3, 0, 1);
        check_dilated(2, 6, 6, 8, 16, 1, 1, 2, 0, 1);
        /* dilated along one axis: 2x3 kernel, dilation 3x1, stride 1x2,
         * padding top 1 / bottom 0, left 0 / right 0 */
        kd_conv_geom rect = {.n = 2, .h = 9, .w = 8, .c = 16, .oh = 7, .ow = 3, .oc = 16,
                             .kh = 2, .kw = 3, .sh = 1, .sw = 2, .pt = 1, .pl = 0,
                             .groups = 1, .dh = 3, .dw = 1};
        assert_true(kd_conv_dilated(&rect));
        assert_int_equal(kd_conv_choose(&rect), KD_CONV_IM2COL);
        check_geom(rect);
        /* depthwise 3x2 dilated 1x3, stride 2x1, padding 1 / 1, 2 / 0 */
        kd_conv_geom drect = {.n = 2, .h = 7, .w = 6, .c = 4, .oh = 4, .ow = 5, .oc = 8,
                              .kh = 3, .kw = 2, .sh = 2, .sw = 1, .pt = 1, .pl = 2,
                              .groups = 4, .dh = 1, .dw = 3};
        check_geom(drect);
    }
    kd_conv_forced_algo = -1;
}

/* The workspace as a model plans it: for `planned` images, then used by a
 * batch of g.n <= planned (0: g.n). */
static void check_geom_planned(kd_conv_geom g, int planned);
static void check_geom(kd_conv_geom g) { check_geom_planned(g, 0); }

static void check_geom_planned(kd_conv_geom g, int planned)
{
    kd_conv_geom plan = g;
    plan.n = planned > 0 ? planned : g.n;
    int n = g.n, h = g.h, w = g.w, c = g.c, oc = g.oc, k = g.kh, s = g.sh, pad = g.pt,
        groups = g.groups, oh = g.oh, ow = g.ow;
    size_t xs = (size_t)n * h * w * c, ws = (size_t)g.kh * g.kw * (c / groups) * oc,
           ys = (size_t)n * oh * ow * oc;
    float *x = malloc(xs * 4), *wt = malloc(ws * 4), *b = malloc(oc * 4), *y = malloc(ys * 4),
          *want = malloc(ys * 4), *dy = malloc(ys * 4), *dx = calloc(xs, 4),
          *dw = calloc(ws, 4), *db = calloc(oc, 4);
    double *ndx = calloc(xs, 8), *ndw = calloc(ws, 8);
    float *work = malloc(4 * kd_conv_workspace(&plan) + 4); /* exact: ASan sees overruns */
    tu_fill(x, xs, 1, 1);
    tu_fill(wt, ws, 0.3f, 2);
    tu_fill(b, oc, 1, 3);
    tu_fill(dy, ys, 1, 4);
    char what[128];
    snprintf(what, sizeof what, "conv n%d %dx%dx%d->%d k%dx%d s%d d%dx%d p%d,%d g%d (%d)", n, h,
             w, c, oc, k, g.kw, s, g.dh, g.dw, pad, g.pl, groups, (int)kd_conv_choose(&g));
    kd_conv_forward(&g, x, wt, b, y, work);
    float *mag = malloc(ys * 4);
    naive_conv(&g, x, wt, b, want, mag);
    /* The bound scales with the sum of the products' magnitudes, the
     * condition of the sum: Winograd's transforms (coefficients up to 8)
     * round intermediates of that size, the direct kernels only the sum
     * (observed: direct 3e-7, Winograd F(4x4, 3x3) 2.4e-6 forward and 5.8e-6
     * for the input gradient, of the magnitude). */
    double worst = 0;
    for (size_t i = 0; i < ys; i++) {
        double err = fabs((double)y[i] - want[i]), bound = 2e-5 * (1 + mag[i]);
        worst = fmax(worst, err / (1 + mag[i]));
        if (!(err <= bound))
            fail_msg("%s[%zu]: got %.7g, want %.7g (products' magnitude %g)", what, i,
                     (double)y[i], (double)want[i], (double)mag[i]);
    }
    if (getenv("KD_TEST_VERBOSE"))
        printf("%s: worst error / magnitude %.3g\n", what, worst);
    kd_conv_backward(&g, x, wt, dy, dx, false, dw, db, work);
    double *mdx = calloc(xs, 8), *mdw = calloc(ws, 8);
    naive_conv_backward(&g, x, wt, dy, ndx, ndw, mdx, mdw);
    check_grad(what, "dx", dx, ndx, mdx, xs);
    /* assign mode overwrites whatever dx held */
    for (size_t i = 0; i < xs; i++)
        dx[i] = 1e30f;
    memset(dw, 0, ws * 4);
    kd_conv_backward(&g, x, wt, dy, dx, true, dw, NULL, work);
    check_grad(what, "dx (assign)", dx, ndx, mdx, xs);
    check_grad(what, "dw", dw, ndw, mdw, ws);
    free(mag), free(mdx), free(mdw);
    for (int o = 0; o < oc; o++) {
        double s_ = 0;
        for (size_t r = 0; r < ys / oc; r++)
            s_ += dy[r * oc + o];
        if (fabs(db[o] - s_) > 1e-3 * (1 + fabs(s_)))
            fail_msg("%s db[%d]", what, o);
    }
    free(x), free(wt), free(b), free(y), free(want), free(dy), free(dx), free(dw), free(db);
    free(ndx), free(ndw), free(work);
}

static void test_conv_vs_naive(void **state)
{
    (void)state;
    check_shape(2, 5, 5, 3, 4, 3, 1, 1, 1);    /* im2col */
    check_shape(3, 7, 6, 4, 8, 3, 2, 1, 1);    /* stride 2 */
    check_shape(2, 6, 6, 6, 4, 3, 1, 0, 2);    /* grouped */
    check_shape(2, 9, 9, 5, 5, 3, 2, 1, 5);    /* depthwise */
    check_shape(2, 8, 8, 3, 6, 5, 1, 2, 3);    /* depthwise, multiplier 2 */
    check_shape(2, 4, 4, 7, 9, 1, 1, 0, 1);    /* 1x1 GEMM */
    check_shape(2, 7, 7, 6, 3, 1, 2, 0, 1);    /* 1x1 stride 2: im2col */
    check_shape(40, 28, 28, 16, 16, 3, 1, 1, 1); /* several chunks per thread */
    /* im2col too large for one GEMM over the batch: chunks per thread */
    check_shape(40, 28, 28, 24, 20, 3, 1, 1, 1);
    /* a workspace planned for that batch serves a smaller one, which takes
     * the whole-batch path */
    kd_conv_geom big = {20, 28, 28, 24, 28, 28, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    check_geom_planned(big, 40);
    check_shape(24, 30, 30, 16, 12, 3, 1, 1, 2);
    /* the direct kernels: 16 and 32-wide channel tiles, ragged rows (every
     * width 1..9), strided layers (input gradient through col2im), input
     * channels that are not a multiple of 8 or 16, and asymmetric padding */
    for (int width = 1; width <= 11; width++)
        check_shape(2, 5, width, 16, 16, 3, 1, 1, 1);
    kd_conv_forced_algo = KD_CONV_DIRECT; /* shapes Winograd takes by default */
    check_shape(2, 6, 9, 32, 32, 3, 1, 1, 1);
    check_shape(2, 5, 7, 64, 32, 3, 1, 0, 1);
    kd_conv_forced_algo = -1;
    /* narrow outputs take GEMM by default; the direct kernels still hold */
    kd_conv_forced_algo = KD_CONV_DIRECT;
    for (int width = 1; width <= 3; width++)
        check_shape(2, 5, width, 16, 32, 3, 1, 1, 1);
    check_shape(3, 2, 2, 32, 48, 1, 1, 0, 1);
    kd_conv_forced_algo = -1;
    check_shape(3, 9, 11, 32, 48, 3, 1, 1, 1);
    check_shape(2, 12, 12, 16, 32, 3, 2, 1, 1);
    check_shape(2, 10, 10, 5, 16, 5, 1, 2, 1);
    check_shape(2, 8, 7, 1, 32, 3, 1, 0, 1);
    check_shape(2, 8, 8, 24, 16, 3, 1, 1, 1);
    /* Winograd F(2x2, 3x3): odd sizes (partial tiles), no padding, padding
     * 2, a batch of many units over both threads, and asymmetric padding;
     * forced, the 16-channel and narrow shapes it does not take by default */
    check_shape(2, 9, 11, 32, 48, 3, 1, 1, 1);
    check_shape(3, 7, 7, 64, 32, 3, 1, 0, 1);
    check_shape(2, 6, 5, 32, 32, 3, 1, 2, 1);
    check_shape(8, 14, 14, 32, 32, 3, 1, 1, 1);
    kd_conv_geom wasym = {.n = 2, .h = 8, .w = 9, .c = 32, .oh = 7, .ow = 9, .oc = 32, .kh = 3,
                          .kw = 3, .sh = 1, .sw = 1, .pt = 0, .pl = 1, .groups = 1,
                          .dh = 1, .dw = 1};
    check_geom(wasym);
    kd_conv_forced_algo = KD_CONV_WINOGRAD;
    check_shape(2, 5, 5, 16, 16, 3, 1, 1, 1);
    check_shape(2, 3, 1, 16, 32, 3, 1, 1, 1);
    check_shape(2, 1, 1, 32, 16, 3, 1, 1, 1);
    kd_conv_forced_algo = -1;
    /* 3x2 kernel, stride 2x1, padding top 0 / bottom 1, left 1 / right 0 */
    kd_conv_geom asym = {.n = 2, .h = 7, .w = 6, .c = 16, .oh = 3, .ow = 6, .oc = 16, .kh = 3,
                         .kw = 2, .sh = 2, .sw = 1, .pt = 0, .pl = 1, .groups = 1,
                         .dh = 1, .dw = 1};
    check_geom(asym);
    check_dilated_shapes();
    /* dilated, large enough for chunks of images per thread */
    check_dilated(40, 28, 28, 24, 20, 3, 1, 2, 2, 1);
}

/* The dilated shapes on every kernel path of this processor in one run (make
 * check also runs this whole file under each KDENS_CPU): im2col's GEMM is
 * the path's. */
static void test_dilated_every_path(void **state)
{
    (void)state;
    char paths[64], before[16];
    snprintf(paths, sizeof paths, "%s", kdens_cpu_paths());
    snprintf(before, sizeof before, "%s", kdens_cpu_path());
    for (char *p = strtok(paths, " "); p; p = strtok(NULL, " ")) {
        ASSERT_OK(kdens_set_cpu_path(p));
        assert_string_equal(kdens_cpu_path(), p);
        check_dilated_shapes();
    }
    ASSERT_OK(kdens_set_cpu_path(before)); /* KDENS_CPU's, as make check set it */
}

static void test_conv_vs_naive_one_thread(void **state)
{
    int before = kdens_get_num_threads();
    ASSERT_OK(kdens_set_num_threads(1));
    test_conv_vs_naive(state);
    ASSERT_OK(kdens_set_num_threads(3)); /* more parts than cores */
    test_conv_vs_naive(state);
    ASSERT_OK(kdens_set_num_threads(before));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_vs_torch),       cmocka_unit_test(test_pool_vs_torch),
        cmocka_unit_test(test_batchnorm_vs_torch), cmocka_unit_test(test_batchnorm_statistics),
         cmocka_unit_test(test_dense_vs_torch),
        cmocka_unit_test(test_activations_vs_torch), cmocka_unit_test(test_conv_vs_naive),
        cmocka_unit_test(test_conv_vs_naive_one_thread),
        cmocka_unit_test(test_dilated_every_path),
    };
    return cmocka_run_group_tests_name("reference", tests, load_fixture, free_fixture);
}

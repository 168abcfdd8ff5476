/* int8 quantisation: the int8 kernels of every path against an exact
 * reference; one quantised layer against a float reference computed here,
 * within a bound derived from the quantisation steps; whole models against
 * their float originals, layer by layer and end to end; calibration
 * methods; bit-identical results across kernel paths, batch sizes, thread
 * counts and a save/load round trip; format-2 files, the format-1
 * fixture, corrupt QNT8 sections; training refused; bad arguments. */
#include "testutil.h"

#include "core/core.h"
#include "nn/nn.h"
#include "tensor/kernels.h"

#include <math.h>

/* ---- the kernels -------------------------------------------------------------------- */

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Random tiles at the extremes of u8 and s8 (255 x -128 in every lane:
 * vpmaddubsw would saturate there, vpdpbusd must not), every path and VNNI
 * on and off, against int64 sums of the unpacked operands. */
static void test_kernels_exact_on_every_path(void **state)
{
    (void)state;
    static const int taps_c[] = {1, 9, 4}, seg_c[] = {4, 16, 64}, panels_c[] = {1, 2, 3};
    uint64_t s = 42;
    for (int tc = 0; tc < 3; tc++)
        for (int sc = 0; sc < 3; sc++)
            for (int pc = 0; pc < 3; pc++)
                for (int rows = 1; rows <= KD_QROWS; rows += 5) {
                    int taps = taps_c[tc], seg = seg_c[sc], panels = panels_c[pc];
                    int kp = taps * seg, stride = kp + 8;
                    size_t abytes = (size_t)KD_QROWS * stride + 64;
                    uint8_t *a = malloc(abytes);
                    int8_t *w = malloc((size_t)panels * kp * 16);
                    for (size_t i = 0; i < abytes; i++)
                        a[i] = (lcg(&s) % 4 == 0) ? 255 : (uint8_t)lcg(&s);
                    for (size_t i = 0; i < (size_t)panels * kp * 16; i++)
                        w[i] = (lcg(&s) % 4 == 0) ? -128 : (int8_t)(lcg(&s) & 0xff);
                    int32_t tap_off[9];
                    size_t row_off[KD_QROWS];
                    for (int t = 0; t < taps; t++)
                        tap_off[t] = t * seg;
                    for (int r = 0; r < KD_QROWS; r++)
                        row_off[r] = (size_t)r * stride;
                    int ldc = panels * 16;
                    int32_t ref[KD_QROWS * 48], got[KD_QROWS * 48];
                    for (int r = 0; r < rows; r++)
                        for (int p = 0; p < panels; p++)
                            for (int j = 0; j < 16; j++) {
                                int64_t sum = 0;
                                for (int k = 0; k < kp; k++) {
                                    int t = k / seg, kk = k % seg;
                                    sum += (int64_t)a[row_off[r] + tap_off[t] + kk] *
                                           w[(size_t)p * kp * 16 + (size_t)(k / 4) * 64 +
                                             4 * j + k % 4];
                                }
                                ref[r * ldc + 16 * p + j] = (int32_t)sum;
                            }
                    kd_qgemm_args q = {.a = a, .row_off = row_off, .taps = taps,
                                       .tap_off = tap_off, .seg = seg, .w = w,
                                       .panels = panels, .rows = rows, .c = got, .ldc = ldc};
                    for (int path = 0; path < KD_CPU_PATHS; path++) {
                        const kd_kernels *kern = kd_kernels_for((kd_cpu_path)path);
                        if (!kern)
                            continue;
                        for (int vnni = 0; vnni < 2; vnni++) {
                            kd_qgemm_fn fn = vnni ? kern->qgemm_vnni : kern->qgemm;
                            if (vnni && (!fn || !kd_cpu_has_vnni((kd_cpu_path)path)))
                                continue;
                            memset(got, 0x5a, sizeof got);
                            fn(&q);
                            for (int r = 0; r < rows; r++)
                                if (memcmp(got + r * ldc, ref + r * ldc,
                                           sizeof(int32_t) * (size_t)ldc) != 0)
                                    fail_msg("path %s%s taps %d seg %d panels %d row %d: "
                                             "int32 sums differ",
                                             kd_cpu_path_name((kd_cpu_path)path),
                                             vnni ? "+vnni" : "", taps, seg, panels, r);
                        }
                    }
                    /* requantised in registers: the bytes of kd_requant_u8 */
                    const kd_kernels *k512 = kd_kernels_for(KD_CPU_AVX512);
                    if (k512 && k512->qgemm_vnni_u8 && kd_cpu_has_vnni(KD_CPU_AVX512)) {
                        int32_t corr[48];
                        float mul[48], add[48];
                        for (int j = 0; j < ldc; j++) {
                            corr[j] = (int32_t)(lcg(&s) % 20000) - 10000;
                            mul[j] = (float)(lcg(&s) % 1000) * 1e-6f + 1e-5f;
                            add[j] = (float)(lcg(&s) % 200) + 0.5f;
                        }
                        int n_out = ldc - (int)(lcg(&s) % 16); /* a part-filled last panel */
                        uint8_t want[KD_QROWS * 48], have[KD_QROWS * 48];
                        memset(want, 7, sizeof want);
                        memset(have, 7, sizeof have);
                        kd_requant_u8(ref, ldc, rows, 0, n_out, corr, mul, add, 3.5f, 250.5f,
                                      want, (size_t)ldc);
                        kd_qgemm_args qu = q;
                        qu.corr = corr;
                        qu.mul = mul;
                        qu.add = add;
                        qu.lo = 3.5f;
                        qu.hi = 250.5f;
                        qu.out = have;
                        qu.out_stride = (size_t)ldc;
                        qu.n = n_out;
                        k512->qgemm_vnni_u8(&qu);
                        if (memcmp(want, have, sizeof want) != 0)
                            fail_msg("requantisation in registers differs (taps %d seg %d "
                                     "panels %d rows %d)", taps, seg, panels, rows);
                    }
                    free(a);
                    free(w);
                }
}

/* ---- one layer against a float reference ---------------------------------------------- */

typedef struct layer_case {
    int h, w, c, oc, k, stride, pad; /* pad: "same" (1) or "valid" (0) */
    kd_qact act;
    bool u8_out;
} layer_case;

static float quant_step(float lo, float hi) { return (hi - lo) / 255.0f; }

/* A convolution with random real weights, bias and input: the float
 * output in double here, the int8 layer with scales chosen here, and a bound
 * per output from the rounding of each operand: |x w - x' w'| <=
 * |x| dw + |w| dx + dx dw summed over the window (dx, dw half a step), plus
 * half an output step when the output is u8, plus float rounding. */
static void check_layer(const layer_case *t, uint64_t seed, double *worst_ratio)
{
    kd_conv_geom g = {0};
    g.h = t->h;
    g.w = t->w;
    g.c = t->c;
    g.kh = g.kw = t->k;
    g.sh = g.sw = t->stride;
    g.oc = t->oc;
    g.groups = 1;
    g.dh = g.dw = 1;
    int pb, pr;
    g.oh = kd_resolve_padding(t->pad ? KD_PAD_SAME : KD_PAD_VALID, NULL, t->h, t->k, t->stride,
                              &g.pt, &pb);
    g.ow = kd_resolve_padding(t->pad ? KD_PAD_SAME : KD_PAD_VALID, NULL, t->w, t->k, t->stride,
                              &g.pl, &pr);
    int n = 3, K = t->k * t->k * t->c;
    size_t nx = (size_t)n * t->h * t->w * t->c, ny = (size_t)n * g.oh * g.ow * t->oc;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * (size_t)K * t->oc);
    float *bias = malloc(sizeof(float) * t->oc), *wscale = malloc(sizeof(float) * t->oc);
    int8_t *wq = malloc((size_t)K * t->oc);
    uint8_t *xq = malloc(nx), *y8 = malloc(ny);
    float *yf = malloc(sizeof(float) * ny);
    tu_fill(x, nx, 1.0f, seed);
    tu_fill(w, (size_t)K * t->oc, 0.3f, seed + 1);
    tu_fill(bias, t->oc, 0.5f, seed + 2);
    /* the input: an asymmetric range (zero point inside) */
    float xlo = -2.0f, xhi = 5.0f, sx = quant_step(xlo, xhi);
    int zx = (int)floorf(-xlo / sx + 0.5f);
    kd_quantize_u8(x, nx, 1.0f / sx, zx, xq);
    for (int j = 0; j < t->oc; j++) {
        float amax = 0;
        for (int k = 0; k < K; k++)
            amax = fmaxf(amax, fabsf(w[(size_t)k * t->oc + j]));
        wscale[j] = amax / 127.0f;
        for (int k = 0; k < K; k++)
            wq[(size_t)k * t->oc + j] =
                (int8_t)lrintf(w[(size_t)k * t->oc + j] / wscale[j]);
    }
    float ylo = t->act != KD_QACT_NONE ? 0.0f : -12.0f, yhi = 12.0f, sy = quant_step(ylo, yhi);
    int zy = (int)floorf(-ylo / sy + 0.5f);
    kd_qconv q;
    ASSERT_OK(kd_qconv_init(&q, &g, wq, wscale, bias, sx, zx, t->u8_out ? sy : 0.0f,
                            t->u8_out ? zy : 0, t->act));
    uint8_t *pad = malloc(kd_qconv_pad_bytes(&q, (size_t)n));
    kd_qconv_forward(&q, kd_qgemm_kernel(), (size_t)n, xq, t->u8_out ? y8 : NULL, yf, pad);
    double dx = sx / 2;
    for (int i = 0; i < n; i++)
        for (int oy = 0; oy < g.oh; oy++)
            for (int ox = 0; ox < g.ow; ox++)
                for (int j = 0; j < t->oc; j++) {
                    double ref = bias[j], bound = 1e-5 * (1 + fabs(bias[j])), mag = 0;
                    double dw = wscale[j] / 2;
                    for (int ky = 0; ky < t->k; ky++)
                        for (int kx = 0; kx < t->k; kx++) {
                            int iy = oy * t->stride - g.pt + ky, ix = ox * t->stride - g.pl + kx;
                            if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w)
                                continue;
                            for (int c = 0; c < t->c; c++) {
                                double xv = x[(((size_t)i * t->h + iy) * t->w + ix) * t->c + c];
                                double wv =
                                    w[((size_t)(ky * t->k + kx) * t->c + c) * t->oc + j];
                                ref += xv * wv;
                                mag += fabs(xv * wv);
                                /* inputs outside the range are clipped: the bound grows by
                                 * the clipped amount */
                                double clip = xv > xhi ? xv - xhi : xv < xlo ? xlo - xv : 0;
                                bound += fabs(xv) * dw + fabs(wv) * (dx + clip) + dx * dw;
                            }
                        }
                    bound += 1e-6 * mag; /* float rounding of the requantisation */
                    if (t->act != KD_QACT_NONE)
                        ref = fmax(ref, 0);
                    if (t->act == KD_QACT_RELU6)
                        ref = fmin(ref, 6);
                    size_t o = (((size_t)i * g.oh + oy) * g.ow + ox) * t->oc + j;
                    double err = fabs(yf[o] - ref);
                    if (err > bound)
                        fail_msg("conv %dx%dx%d->%d k%d s%d: output %zu is %g, float %g, "
                                 "error %g above the bound %g",
                                 t->h, t->w, t->c, t->oc, t->k, t->stride, o, (double)yf[o],
                                 ref, err, bound);
                    *worst_ratio = fmax(*worst_ratio, err / bound);
                    if (t->u8_out) {
                        double deq = sy * ((int)y8[o] - zy);
                        double clipped = fmin(fmax(ref, ylo), yhi);
                        if (fabs(deq - clipped) > bound + sy / 2 + 1e-6)
                            fail_msg("u8 output %zu: %g, float %g", o, deq, clipped);
                        /* the u8 output is the float output rounded to the step */
                        double fq = fmin(fmax(yf[o], ylo), yhi);
                        assert_true(fabs(deq - fq) <= sy / 2 + 1e-4 * sy + 1e-6);
                    }
                }
    kd_qconv_release(&q);
    free(x);
    free(w);
    free(bias);
    free(wscale);
    free(wq);
    free(xq);
    free(y8);
    free(yf);
    free(pad);
}

static void test_layer_against_float(void **state)
{
    (void)state;
    static const layer_case cases[] = {
        {9, 7, 16, 16, 3, 1, 1, KD_QACT_RELU, true},
        {8, 8, 16, 32, 3, 2, 1, KD_QACT_NONE, true},
        {10, 10, 1, 16, 3, 1, 1, KD_QACT_RELU6, true}, /* one channel, padded to four */
        {7, 9, 3, 20, 3, 1, 0, KD_QACT_NONE, false},    /* RGB, "valid", 20 outputs */
        {6, 6, 32, 64, 1, 2, 0, KD_QACT_NONE, true},    /* 1x1 stride 2 shortcut */
        {1, 1, 200, 10, 1, 1, 0, KD_QACT_NONE, false},  /* a dense layer */
        {5, 5, 8, 300, 3, 1, 1, KD_QACT_RELU, true},    /* more than 16 panels */
    };
    double worst = 0;
    for (size_t i = 0; i < KD_ARRAY_LEN(cases); i++)
        check_layer(&cases[i], 100 + i, &worst);
    print_message("layer error / bound: worst %.3f\n", worst);
}

/* ---- whole models ------------------------------------------------------------------ */

/* A model trained a few steps on images whose class is the bright quadrant,
 * so that its predictions are confident and its weights not random. */
static uint8_t *quadrant_images(int n, int h, int c, int32_t *labels, uint64_t seed)
{
    uint8_t *img = malloc((size_t)n * h * h * c);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        int cls = (int)(lcg(&s) % 4);
        if (labels)
            labels[i] = cls;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < h; x++)
                for (int ch = 0; ch < c; ch++) {
                    int q = (y >= h / 2) * 2 + (x >= h / 2);
                    int v = (int)(lcg(&s) % 80) + (q == cls ? 120 : 0);
                    img[(((size_t)i * h + y) * h + x) * c + ch] = (uint8_t)v;
                }
    }
    return img;
}

static void train_quadrants(kdens_model *m, int h, int c, int steps);

static kdens_model *trained(const char *arch, int h, int c, int steps)
{
    kdens_model *m;
    ASSERT_OK(kdens_model_create(arch, h, h, c, 4, 5, &m));
    train_quadrants(m, h, c, steps);
    return m;
}

/* A few Adam steps on the quadrant images (batch-norm statistics move). */
static void train_quadrants(kdens_model *m, int h, int c, int steps)
{
    kdens_optimizer *o;
    ASSERT_OK(kdens_optimizer_create(KDENS_OPT_ADAM, 2e-3, &o));
    ASSERT_OK(kdens_model_set_training(m, 1));
    int n = 32;
    int32_t labels[32];
    float *x = malloc(sizeof(float) * n * h * h * c);
    for (int step = 0; step < steps; step++) {
        uint8_t *img = quadrant_images(n, h, c, labels, 1000 + step);
        kd_model_scale_u8(m, img, n, x);
        ASSERT_OK(kdens_model_train_step(m, o, x, n, labels, NULL, NULL, NULL));
        free(img);
    }
    ASSERT_OK(kdens_model_set_training(m, 0));
    free(x);
    kdens_optimizer_free(o);
}

typedef struct model_case {
    const char *arch;
    int h, c, steps;
    double max_prob_diff; /* end to end, the stated tolerance */
    double layer_rel;     /* per layer: RMS error / RMS of the float output */
} model_case;

static const model_case model_cases[] = {
    {"test", 12, 1, 40, 0.02, 0.02},
    {"resnet20", 16, 1, 20, 0.03, 0.1},
    {"mobilenet_small", 32, 3, 10, 0.03, 0.1}, /* depthwise and ReLU6 between int8 layers */
};

static void test_models_against_float(void **state)
{
    (void)state;
    for (size_t mc = 0; mc < KD_ARRAY_LEN(model_cases); mc++) {
        const model_case *t = &model_cases[mc];
        kdens_model *f = trained(t->arch, t->h, t->c, t->steps), *q;
        int n = 64;
        uint8_t *calib = quadrant_images(200, t->h, t->c, NULL, 7);
        uint8_t *img = quadrant_images(n, t->h, t->c, NULL, 99);
        ASSERT_OK(kdens_model_quantize_u8(f, calib, 200, KDENS_CALIB_PERCENTILE, &q));
        assert_true(kdens_model_is_quantized(q));
        assert_false(kdens_model_is_quantized(f));
        assert_true(kd_qmodel_layer_count(q) > 0);
        float *pf = malloc(sizeof(float) * n * 4), *pq = malloc(sizeof(float) * n * 4);
        ASSERT_OK(kdens_model_predict_u8(f, img, n, pf));
        ASSERT_OK(kdens_model_predict_u8(q, img, n, pq));
        double maxd = 0;
        int agree = 0;
        for (int i = 0; i < n; i++) {
            int a = 0, b = 0;
            for (int k = 0; k < 4; k++) {
                maxd = fmax(maxd, fabs(pf[i * 4 + k] - pq[i * 4 + k]));
                a = pf[i * 4 + k] > pf[i * 4 + a] ? k : a;
                b = pq[i * 4 + k] > pq[i * 4 + b] ? k : b;
            }
            agree += a == b;
        }
        print_message("%s: max probability difference %.4f, top-1 agreement %d/%d\n", t->arch,
                      maxd, agree, n);
        if (maxd > t->max_prob_diff)
            fail_msg("%s: probabilities differ by %g (tolerance %g)", t->arch, maxd,
                     t->max_prob_diff);
        assert_true(agree >= n - 2);
        /* layer by layer: every output the int8 model keeps, against the float
         * model's on the same images (errors accumulate with depth) */
        float *x = malloc(sizeof(float) * n * t->h * t->h * t->c);
        kd_model_scale_u8(f, img, (size_t)n, x);
        ASSERT_OK(kd_model_plan(f, (size_t)n, false));
        ASSERT_OK(kd_model_plan(q, (size_t)n, false));
        f->unfused = true; /* every node's own output */
        kd_model_forward(f, x, (size_t)n);
        f->unfused = false;
        kd_model_forward(q, x, (size_t)n);
        double worst = 0;
        int compared = 0;
        for (int node = 1; node < q->n_nodes; node++) {
            size_t count = (size_t)n * kd_node_size(&q->nodes[node]);
            float *out = malloc(sizeof(float) * count);
            if (kd_qmodel_node_output(q, node, (size_t)n, out) == KDENS_OK &&
                f->nodes[node].out) {
                double e2 = 0, v2 = 1e-12;
                for (size_t e = 0; e < count; e++) {
                    double d = out[e] - f->nodes[node].out[e], v = f->nodes[node].out[e];
                    e2 += d * d;
                    v2 += v * v;
                }
                double rel = sqrt(e2 / v2);
                worst = fmax(worst, rel);
                compared++;
                if (rel > t->layer_rel)
                    fail_msg("%s layer '%s': RMS error %g of the RMS value (tolerance %g)",
                             t->arch, q->nodes[node].name, rel, t->layer_rel);
            }
            free(out);
        }
        print_message("%s: %d layers compared, worst RMS error / RMS value %.4f\n", t->arch,
                      compared, worst);
        assert_true(compared >= kd_qmodel_layer_count(q));
        free(x);
        free(pf);
        free(pq);
        free(calib);
        free(img);
        kdens_model_free(f);
        kdens_model_free(q);
    }
}

/* The same bits on every kernel path, VNNI or not, at any batch size and
 * thread count, and after a save and load. */
/* A dilated convolution keeps float (the int8 kernels read undilated
 * windows) between int8 ones, and the model still predicts as its float
 * original within the models' tolerance, the same bits on every path. */
static void test_dilated_layers_stay_float(void **state)
{
    (void)state;
    const char *spec = "conv name=c1 in=input filters=8 kernel=3 padding=same\n"
                       "relu name=r1 in=c1\n"
                       "conv name=c2 in=r1 filters=8 kernel=3 dilation=2 padding=same\n"
                       "relu name=r2 in=c2\n"
                       "conv name=c3 in=r2 filters=8 kernel=3 padding=same\n"
                       "relu name=r3 in=c3\n"
                       "gap name=g in=r3\n"
                       "dense name=d in=g units=4\n";
    const int h = 12, n = 32;
    kdens_model *m, *q;
    ASSERT_OK(kdens_model_from_spec(spec, h, h, 1, 4, 3, &m));
    train_quadrants(m, h, 1, 30);
    uint8_t *calib = quadrant_images(64, h, 1, NULL, 77), *img = quadrant_images(n, h, 1, NULL, 78);
    ASSERT_OK(kdens_model_quantize_u8(m, calib, 64, KDENS_CALIB_PERCENTILE, &q));
    assert_int_equal(kdens_model_is_quantized(q), 1);
    float want[32 * 4], got[32 * 4], path_probs[32 * 4];
    ASSERT_OK(kdens_model_predict_u8(m, img, n, want));
    ASSERT_OK(kdens_model_predict_u8(q, img, n, got));
    double worst = 0;
    for (int i = 0; i < n * 4; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    print_message("a dilated layer between int8 ones: max |p_int8 - p_float| = %.2g\n", worst);
    assert_true(worst <= 0.02);
    char paths[64];
    snprintf(paths, sizeof paths, "%s", kdens_cpu_paths());
    const char *before = kdens_cpu_path();
    for (char *save = NULL, *path = strtok_r(paths, " ", &save); path;
         path = strtok_r(NULL, " ", &save))
        for (int vnni = 0; vnni < 2; vnni++) { /* every path: the same bits */
            ASSERT_OK(kdens_set_cpu_path(path));
            kd_qgemm_allow_vnni = vnni;
            ASSERT_OK(kdens_model_predict_u8(q, img, n, path_probs));
            if (memcmp(path_probs, got, sizeof got) != 0)
                fail_msg("path %s (%s) differs", path, kd_qgemm_kernel_name());
        }
    kd_qgemm_allow_vnni = true;
    ASSERT_OK(kdens_set_cpu_path(before));
    free(calib);
    free(img);
    kdens_model_free(q);
    kdens_model_free(m);
}

static void test_identical_everywhere(void **state)
{
    (void)state;
    kdens_model *f = trained("resnet20", 16, 1, 5), *q;
    uint8_t *calib = quadrant_images(50, 16, 1, NULL, 3);
    ASSERT_OK(kdens_model_quantize_u8(f, calib, 50, KDENS_CALIB_MINMAX, &q));
    int n = 37;
    uint8_t *img = quadrant_images(n, 16, 1, NULL, 4);
    float *ref = malloc(sizeof(float) * n * 4), *p = malloc(sizeof(float) * n * 4);
    ASSERT_OK(kdens_model_predict_u8(q, img, n, ref));
    char paths[64];
    snprintf(paths, sizeof paths, "%s", kdens_cpu_paths());
    const char *before = kdens_cpu_path();
    for (char *save = NULL, *path = strtok_r(paths, " ", &save); path;
         path = strtok_r(NULL, " ", &save))
        for (int vnni = 0; vnni < 2; vnni++) {
            ASSERT_OK(kdens_set_cpu_path(path));
            kd_qgemm_allow_vnni = vnni;
            ASSERT_OK(kdens_model_predict_u8(q, img, n, p));
            if (memcmp(p, ref, sizeof(float) * n * 4) != 0)
                fail_msg("path %s (%s) differs", path, kd_qgemm_kernel_name());
        }
    kd_qgemm_allow_vnni = true;
    ASSERT_OK(kdens_set_cpu_path(before));
    for (int i = 0; i < n; i++) { /* one image at a time */
        ASSERT_OK(kdens_model_predict_u8(q, img + (size_t)i * 256, 1, p));
        assert_memory_equal(p, ref + i * 4, sizeof(float) * 4);
    }
    int threads = kdens_get_num_threads();
    ASSERT_OK(kdens_set_num_threads(1));
    ASSERT_OK(kdens_model_predict_u8(q, img, n, p));
    assert_memory_equal(p, ref, sizeof(float) * n * 4);
    ASSERT_OK(kdens_set_num_threads(threads));
    /* save and load: bit-identical, about a quarter of the float file */
    char *dir = tu_tmpdir();
    char qpath[4200], fpath[4200];
    snprintf(qpath, sizeof qpath, "%s/q.kdm", dir);
    snprintf(fpath, sizeof fpath, "%s/f.kdm", dir);
    ASSERT_OK(kdens_model_save(q, qpath));
    ASSERT_OK(kdens_model_save(f, fpath));
    kdens_model *l;
    ASSERT_OK(kdens_model_load(qpath, &l));
    assert_true(kdens_model_is_quantized(l));
    ASSERT_OK(kdens_model_predict_u8(l, img, n, p));
    assert_memory_equal(p, ref, sizeof(float) * n * 4);
    assert_string_equal(kdens_model_get_meta(l, "quantization"), "int8 minmax 50");
    FILE *fq = fopen(qpath, "rb"), *ff = fopen(fpath, "rb");
    fseek(fq, 0, SEEK_END);
    fseek(ff, 0, SEEK_END);
    long qs = ftell(fq), fs = ftell(ff);
    unsigned char ver[12];
    fseek(fq, 0, SEEK_SET);
    assert_int_equal(fread(ver, 1, 12, fq), 12);
    assert_int_equal(ver[8], 2); /* format 2 */
    fseek(ff, 0, SEEK_SET);
    assert_int_equal(fread(ver, 1, 12, ff), 12);
    assert_int_equal(ver[8], 1); /* float files stay format 1 */
    fclose(fq);
    fclose(ff);
    print_message("resnet20 file: float %ld bytes, int8 %ld (%.2fx smaller)\n", fs, qs,
                  (double)fs / qs);
    assert_true(qs * 3.5 < fs);
    kdens_model_free(l);
    tu_rm_rf(dir);
    free(ref);
    free(p);
    free(img);
    free(calib);
    kdens_model_free(f);
    kdens_model_free(q);
}

/* ---- calibration ------------------------------------------------------------------- */

static void test_calibration_methods(void **state)
{
    (void)state;
    kdens_model *f, *qm, *qp;
    ASSERT_OK(kdens_model_create("test", 8, 8, 1, 3, 1, &f));
    /* dim images and one outlier pixel: min-max spans it, the percentile
     * method does not */
    int n = 400; /* 25,600 values: the 0.01% tails hold two */
    uint8_t *img = malloc((size_t)n * 64);
    for (int i = 0; i < n * 64; i++)
        img[i] = (uint8_t)(i % 11);
    img[5] = 255;
    ASSERT_OK(kdens_model_quantize_u8(f, img, n, KDENS_CALIB_MINMAX, &qm));
    ASSERT_OK(kdens_model_quantize_u8(f, img, n, KDENS_CALIB_PERCENTILE, &qp));
    int zm, zp;
    float sm = kd_qmodel_scale(qm, 0, &zm), sp = kd_qmodel_scale(qp, 0, &zp);
    assert_true(fabsf(sm - 1.0f / 255.0f) < 1e-6f); /* the input range [0, 1] */
    assert_int_equal(zm, 0);
    assert_true(sp < sm / 10 && sp > 0); /* the outlier is clipped */
    assert_int_equal(zp, 0);
    /* every percentile range lies within the min-max one */
    for (int node = 0; node < f->n_nodes; node++) {
        float a = kd_qmodel_scale(qm, node, NULL), b = kd_qmodel_scale(qp, node, NULL);
        assert_true((a == 0) == (b == 0));
        assert_true(b <= a * 1.0001f);
    }
    /* "test": conv -> relu (one int8 layer writing the ReLU's u8 form), max
     * pooling and flatten on u8 values, dense */
    assert_int_equal(kd_qmodel_layer_count(qm), 4);
    int pool = kd_model_find(f, "maxpool_3"), zpool, zrelu;
    assert_true(pool > 0);
    /* max pooling shares the scale of its input */
    assert_true(kd_qmodel_scale(qm, pool, &zpool) == kd_qmodel_scale(qm, pool - 1, &zrelu));
    assert_int_equal(zpool, zrelu);
    /* a dense layer of more than 65,536 inputs could overflow int32 sums:
     * it stays float (here the model's only layer: nothing is int8) */
    kdens_model *wide, *qw;
    ASSERT_OK(kdens_model_from_spec("flatten name=f in=input\ndense name=d in=f units=3\n", 260,
                                    260, 1, 3, 1, &wide));
    uint8_t *big = calloc(2, 260 * 260);
    ASSERT_OK(kdens_model_quantize_u8(wide, big, 2, KDENS_CALIB_MINMAX, &qw));
    assert_int_equal(kd_qmodel_layer_count(qw), 0);
    float pw[6], pf[6];
    ASSERT_OK(kdens_model_predict_u8(qw, big, 2, pw));
    ASSERT_OK(kdens_model_predict_u8(wide, big, 2, pf));
    assert_memory_equal(pw, pf, sizeof pw);
    free(big);
    kdens_model_free(wide);
    kdens_model_free(qw);
    free(img);
    kdens_model_free(f);
    kdens_model_free(qm);
    kdens_model_free(qp);
}

/* ---- files ------------------------------------------------------------------------- */

/* Written by libkdens before format 2 (a "test" network, 8x8x1, 4 classes,
 * seed 7): it loads, and predicts as the same network built now. */
static void test_format1_fixture(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/fixtures/model_v1.kdm", tu_root());
    kdens_model *old, *now;
    ASSERT_OK(kdens_model_load(path, &old));
    assert_false(kdens_model_is_quantized(old));
    assert_string_equal(kdens_model_class_name(old, 3), "z");
    ASSERT_OK(kdens_model_create("test", 8, 8, 1, 4, 7, &now));
    uint8_t img[3 * 64];
    for (int i = 0; i < 3 * 64; i++)
        img[i] = (uint8_t)(i * 37);
    float a[12], b[12];
    ASSERT_OK(kdens_model_predict_u8(old, img, 3, a));
    ASSERT_OK(kdens_model_predict_u8(now, img, 3, b));
    assert_memory_equal(a, b, sizeof a);
    kdens_model_free(old);
    kdens_model_free(now);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc(*len);
    assert_int_equal(fread(d, 1, *len, f), *len);
    fclose(f);
    return d;
}

static kdens_status load_bytes(const char *dir, const void *data, size_t len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.kdm", dir);
    FILE *f = fopen(path, "wb");
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    kdens_model *m = NULL;
    kdens_status st = kdens_model_load(path, &m);
    if (st == KDENS_OK)
        kdens_model_free(m);
    else
        assert_null(m);
    return st;
}

/* The file with its QNT8 payload replaced (the CRC recomputed), and
 * optionally its version. */
static kdens_status load_with_qnt8(const char *dir, const unsigned char *file, size_t len,
                                   const uint8_t *payload, size_t plen, uint32_t version)
{
    kd_section sec[8];
    int count;
    ASSERT_OK(kd_sections_parse("x", file, len, "KDENSMDL", 2, "model", sec, 8, &count));
    kd_buf b = {0};
    kd_buf_put(&b, "KDENSMDL", 8);
    kd_buf_u32(&b, version);
    kd_buf_u32(&b, (uint32_t)count);
    for (int i = 0; i < count; i++)
        if (strcmp(sec[i].tag, "QNT8") == 0)
            kd_section_put(&b, "QNT8", payload, plen);
        else
            kd_section_put(&b, sec[i].tag, sec[i].data, sec[i].len);
    kdens_status st = load_bytes(dir, b.data, b.len);
    kd_buf_free(&b);
    return st;
}

static void test_corrupt_int8_files(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    kdens_model *f, *q;
    ASSERT_OK(kdens_model_create("resnet20", 8, 8, 1, 3, 2, &f));
    uint8_t calib[8 * 64];
    for (int i = 0; i < 8 * 64; i++)
        calib[i] = (uint8_t)(i * 13);
    ASSERT_OK(kdens_model_quantize_u8(f, calib, 8, KDENS_CALIB_PERCENTILE, &q));
    char path[4200];
    snprintf(path, sizeof path, "%s/q.kdm", dir);
    ASSERT_OK(kdens_model_save(q, path));
    size_t len;
    unsigned char *file = read_all(path, &len);
    /* truncations (a sample of lengths: every 97th byte and the last 300)
     * and bit flips (one every 101 bytes) */
    for (size_t cut = 0; cut < len; cut += (cut + 300 < len ? 97 : 1))
        if (load_bytes(dir, file, cut) != KDENS_E_FORMAT)
            fail_msg("truncated to %zu of %zu: %s", cut, len, kdens_errmsg());
    for (size_t pos = 16; pos < len; pos += 101) {
        file[pos] ^= 0x10;
        kdens_status st = load_bytes(dir, file, len);
        if (st != KDENS_E_FORMAT && st != KDENS_E_VERSION)
            fail_msg("bit flip at %zu: %s", pos, kdens_status_str(st));
        file[pos] ^= 0x10;
    }
    assert_int_equal(load_bytes(dir, file, len), KDENS_OK);
    /* QNT8 payloads with valid CRCs but wrong content */
    kd_section sec[8];
    int count;
    ASSERT_OK(kd_sections_parse("x", file, len, "KDENSMDL", 2, "model", sec, 8, &count));
    const kd_section *qs = kd_section_find(sec, count, "QNT8");
    assert_non_null(qs);
    uint8_t *pl = malloc(qs->len + 8);
    memcpy(pl, qs->data, qs->len);
    ASSERT_OK(load_with_qnt8(dir, file, len, pl, qs->len, 2));
    ASSERT_STATUS(load_with_qnt8(dir, file, len, pl, qs->len, 1), KDENS_E_FORMAT);
    ASSERT_STATUS(load_with_qnt8(dir, file, len, pl, qs->len - 1, 2), KDENS_E_FORMAT);
    memset(pl + qs->len, 0, 4);
    ASSERT_STATUS(load_with_qnt8(dir, file, len, pl, qs->len + 4, 2), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "QNT8"));
    /* ranges count, first range's node, scale (NaN), zero point (300) */
    uint32_t v;
    static const struct {
        size_t at;
        uint32_t value;
    } edits[] = {{0, 1000}, {4, 77777}, {8, 0x7fc00000u}, {8, 0}, {12, 300}};
    for (size_t e = 0; e < KD_ARRAY_LEN(edits); e++) {
        memcpy(pl, qs->data, qs->len);
        v = edits[e].value;
        memcpy(pl + edits[e].at, &v, 4);
        ASSERT_STATUS(load_with_qnt8(dir, file, len, pl, qs->len, 2), KDENS_E_FORMAT);
    }
    /* a NaN weight scale in the first layer */
    uint32_t ranges;
    memcpy(&ranges, qs->data, 4);
    size_t first_layer = 4 + 12 * (size_t)ranges + 4, wscale_at = first_layer + 20;
    memcpy(pl, qs->data, qs->len);
    v = 0x7fc00000u;
    memcpy(pl + wscale_at, &v, 4);
    ASSERT_STATUS(load_with_qnt8(dir, file, len, pl, qs->len, 2), KDENS_E_FORMAT);
    memcpy(pl, qs->data, qs->len);
    v = 5; /* a different activation */
    memcpy(pl + first_layer + 8, &v, 4);
    ASSERT_STATUS(load_with_qnt8(dir, file, len, pl, qs->len, 2), KDENS_E_FORMAT);
    /* a newer format */
    file[8] = 3;
    ASSERT_STATUS(load_bytes(dir, file, len), KDENS_E_VERSION);
    free(pl);
    free(file);
    tu_rm_rf(dir);
    kdens_model_free(f);
    kdens_model_free(q);
}

/* ---- what an int8 model refuses, and bad arguments ------------------------------------ */

static void test_refusals_and_bad_arguments(void **state)
{
    (void)state;
    kdens_model *f, *q = NULL;
    ASSERT_OK(kdens_model_create("test", 8, 8, 1, 3, 1, &f));
    uint8_t img[4 * 64] = {0};
    ASSERT_STATUS(kdens_model_quantize_u8(NULL, img, 4, KDENS_CALIB_MINMAX, &q), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_quantize_u8(f, NULL, 4, KDENS_CALIB_MINMAX, &q), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_quantize_u8(f, img, 0, KDENS_CALIB_MINMAX, &q), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_quantize_u8(f, img, 4, (kdens_calibration)7, &q), KDENS_E_ARG);
    assert_null(q);
    /* all-zero images: ranges collapse to a point, still a valid model */
    ASSERT_OK(kdens_model_quantize_u8(f, img, 4, KDENS_CALIB_PERCENTILE, &q));
    kdens_model *qq = NULL;
    ASSERT_STATUS(kdens_model_quantize_u8(q, img, 4, KDENS_CALIB_MINMAX, &qq), KDENS_E_STATE);
    float x[64] = {0}, probs[3];
    ASSERT_OK(kdens_model_predict(q, x, 1, probs));
    ASSERT_STATUS(kdens_model_set_training(q, 1), KDENS_E_STATE);
    assert_non_null(strstr(kdens_errmsg(), "int8"));
    ASSERT_OK(kdens_model_set_training(q, 0));
    int32_t label = 0;
    ASSERT_STATUS(kdens_model_forward_loss(q, x, 1, &label, NULL, NULL, NULL), KDENS_E_STATE);
    /* from a dataset: an IDX pair of 10 images of 8x8 */
    char *dir = tu_tmpdir();
    char ipath[4200], lpath[4200];
    snprintf(ipath, sizeof ipath, "%s/i.idx", dir);
    snprintf(lpath, sizeof lpath, "%s/l.idx", dir);
    uint8_t ib[16 + 640] = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 8, 0, 0, 0, 8};
    uint8_t lb[8 + 10] = {0, 0, 8, 1, 0, 0, 0, 10};
    for (int i = 0; i < 640; i++)
        ib[16 + i] = (uint8_t)(i * 7);
    FILE *fi = fopen(ipath, "wb"), *fl = fopen(lpath, "wb");
    assert_int_equal(fwrite(ib, 1, sizeof ib, fi), sizeof ib);
    assert_int_equal(fwrite(lb, 1, sizeof lb, fl), sizeof lb);
    fclose(fi);
    fclose(fl);
    kdens_dataset *ds;
    ASSERT_OK(kdens_dataset_load_idx(ipath, lpath, &ds));
    ASSERT_STATUS(kdens_model_quantize(f, ds, KDENS_CALIB_MINMAX, 0, &qq), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_quantize(f, NULL, KDENS_CALIB_MINMAX, 5, &qq), KDENS_E_ARG);
    ASSERT_OK(kdens_model_quantize(f, ds, KDENS_CALIB_MINMAX, 1000, &qq)); /* all 10 */
    assert_string_equal(kdens_model_get_meta(qq, "quantization"), "int8 minmax 10");
    kdens_trainer *tr = NULL;
    ASSERT_STATUS(kdens_trainer_create(qq, ds, NULL, &tr), KDENS_E_STATE);
    assert_null(tr);
    kdens_model_free(qq);
    qq = NULL;
    kdens_model *wide;
    ASSERT_OK(kdens_model_create("test", 9, 9, 1, 3, 1, &wide));
    ASSERT_STATUS(kdens_model_quantize(wide, ds, KDENS_CALIB_MINMAX, 5, &qq), KDENS_E_SHAPE);
    kdens_model_free(wide);
    kdens_dataset_free(ds);
    tu_rm_rf(dir);
    /* a non-finite weight cannot be quantised */
    kd_param *k = kd_model_param(f, "conv2d_1/kernel");
    if (!k)
        k = &f->params[0];
    f->weights[k->offset] = NAN;
    ASSERT_STATUS(kdens_model_quantize_u8(f, img, 4, KDENS_CALIB_MINMAX, &qq), KDENS_E_NUMERIC);
    assert_null(qq);
    kdens_model_free(q);
    kdens_model_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_exact_on_every_path),
        cmocka_unit_test(test_layer_against_float),
        cmocka_unit_test(test_models_against_float),
        cmocka_unit_test(test_dilated_layers_stay_float),
        cmocka_unit_test(test_identical_everywhere),
        cmocka_unit_test(test_calibration_methods),
        cmocka_unit_test(test_format1_fixture),
        cmocka_unit_test(test_corrupt_int8_files),
        cmocka_unit_test(test_refusals_and_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

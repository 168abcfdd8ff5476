/* Built-in architectures.  The large ones follow the Keras applications
 * layer for layer (padding layers included), so that their parameter counts
 * equal Keras' published totals; the small ones are for CPU experiments. */
#include "nn.h"

#include <math.h>
#include <string.h>

/* A builder with a sticky error: after the first failure every helper
 * returns -1 and does nothing, so architectures read as straight code. */
typedef struct builder {
    kdens_model *m;
    kdens_status st;
} builder;

static int add(builder *b, kd_layer_type type, const kd_attrs *a, int n_in, const int *in)
{
    if (b->st != KDENS_OK)
        return -1;
    for (int i = 0; i < n_in; i++)
        if (in[i] < 0)
            return -1;
    int id = -1;
    b->st = kd_model_add(b->m, type, a, NULL, n_in, in, &id);
    return b->st == KDENS_OK ? id : -1;
}

static int add1(builder *b, kd_layer_type type, const kd_attrs *a, int x)
{
    return add(b, type, a, 1, &x);
}

static int conv(builder *b, int x, int filters, int k, int stride, kd_pad_mode pad, bool bias)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.units = filters;
    a.kh = a.kw = k;
    a.sh = a.sw = stride;
    a.pad_mode = pad;
    a.bias = bias;
    return add1(b, KD_L_CONV, &a, x);
}

static int depthwise(builder *b, int x, int k, int stride, kd_pad_mode pad)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.groups = 0;
    a.kh = a.kw = k;
    a.sh = a.sw = stride;
    a.pad_mode = pad;
    a.bias = false;
    return add1(b, KD_L_CONV, &a, x);
}

static int bn(builder *b, int x, float eps, float momentum)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.eps = eps;
    a.momentum = momentum;
    return add1(b, KD_L_BATCHNORM, &a, x);
}

static int act(builder *b, int x, kd_act fn)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.act = fn;
    return add1(b, KD_L_ACT, &a, x);
}

static int zeropad(builder *b, int x, int top, int bottom, int left, int right)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.pad[0] = top;
    a.pad[1] = bottom;
    a.pad[2] = left;
    a.pad[3] = right;
    return add1(b, KD_L_ZEROPAD, &a, x);
}

static int pool(builder *b, kd_layer_type type, int x, int k, int stride, kd_pad_mode pad)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.kh = a.kw = k;
    a.sh = a.sw = stride;
    a.pad_mode = pad;
    return add1(b, type, &a, x);
}

static int simple(builder *b, kd_layer_type type, int x)
{
    kd_attrs a;
    kd_attrs_default(&a);
    return add1(b, type, &a, x);
}

static int dense(builder *b, int x, int units)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.units = units;
    return add1(b, KD_L_DENSE, &a, x);
}

static int dropout(builder *b, int x, float rate, bool per_sample)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.rate = rate;
    a.per_sample = per_sample;
    return add1(b, KD_L_DROPOUT, &a, x);
}

static int merge2(builder *b, kd_layer_type type, int x, int y)
{
    kd_attrs a;
    kd_attrs_default(&a);
    int in[2] = {x, y};
    return add(b, type, &a, 2, in);
}

static int rescale(builder *b, int x, float scale, float offset)
{
    kd_attrs a;
    kd_attrs_default(&a);
    a.scale = scale;
    a.offset = offset;
    return add1(b, KD_L_RESCALE, &a, x);
}

static int channels(builder *b, int x) { return x < 0 ? 0 : b->m->nodes[x].c; }
static int height(builder *b, int x) { return x < 0 ? 0 : b->m->nodes[x].h; }
static int width(builder *b, int x) { return x < 0 ? 0 : b->m->nodes[x].w; }

static int classifier(builder *b, int x)
{
    return act(b, dense(b, x, b->m->classes), KD_ACT_SOFTMAX);
}

/* Keras' imagenet_utils.correct_pad: zero padding before a stride-2 'valid'
 * convolution, one pixel less on top/left when the size is even. */
static int correct_pad(builder *b, int x, int k)
{
    int adj_h = 1 - height(b, x) % 2, adj_w = 1 - width(b, x) % 2;
    return zeropad(b, x, k / 2 - adj_h, k / 2, k / 2 - adj_w, k / 2);
}

/* ---- small networks --------------------------------------------------------- */

/* The reference's `test` network. */
static void build_test(builder *b)
{
    int x = conv(b, 0, 16, 3, 1, KD_PAD_SAME, true);
    x = act(b, x, KD_ACT_RELU);
    x = pool(b, KD_L_MAXPOOL, x, 2, 2, KD_PAD_VALID);
    x = simple(b, KD_L_FLATTEN, x);
    classifier(b, x);
}

static int conv_bn_relu(builder *b, int x, int filters, int k, int stride, kd_act fn)
{
    x = conv(b, x, filters, k, stride, KD_PAD_SAME, false);
    x = bn(b, x, 1e-3f, 0.99f);
    return act(b, x, fn);
}

/* CIFAR-style ResNet-20 (He et al. 2016, section 4.2), projection shortcuts. */
static void build_resnet20(builder *b)
{
    int x = conv_bn_relu(b, 0, 16, 3, 1, KD_ACT_RELU);
    static const int widths[3] = {16, 32, 64};
    for (int stage = 0; stage < 3; stage++)
        for (int blk = 0; blk < 3; blk++) {
            int stride = (stage > 0 && blk == 0) ? 2 : 1;
            int y = conv_bn_relu(b, x, widths[stage], 3, stride, KD_ACT_RELU);
            y = bn(b, conv(b, y, widths[stage], 3, 1, KD_PAD_SAME, false), 1e-3f, 0.99f);
            int shortcut = x;
            if (stride != 1 || channels(b, x) != widths[stage])
                shortcut = bn(b, conv(b, x, widths[stage], 1, stride, KD_PAD_SAME, false), 1e-3f,
                              0.99f);
            x = act(b, merge2(b, KD_L_ADD, y, shortcut), KD_ACT_RELU);
        }
    classifier(b, simple(b, KD_L_GAP, x));
}

/* A small MobileNet-style network: depthwise-separable blocks for CPU runs. */
static void build_mobilenet_small(builder *b)
{
    int x = conv_bn_relu(b, 0, 16, 3, 1, KD_ACT_RELU6);
    static const int spec[][2] = {{32, 2}, {64, 2}, {64, 1}, {128, 2}};
    for (size_t i = 0; i < KD_ARRAY_LEN(spec); i++) {
        x = act(b, bn(b, depthwise(b, x, 3, spec[i][1], KD_PAD_SAME), 1e-3f, 0.99f),
                KD_ACT_RELU6);
        x = conv_bn_relu(b, x, spec[i][0], 1, 1, KD_ACT_RELU6);
    }
    x = dropout(b, simple(b, KD_L_GAP, x), 0.2f, false);
    classifier(b, x);
}

/* ---- ResNet50V2 (Keras applications.ResNet50V2) ---------------------------------- */

#define RESNET_EPS 1.001e-5f

static int resnet_block2(builder *b, int x, int filters, int stride, bool conv_shortcut)
{
    int preact = act(b, bn(b, x, RESNET_EPS, 0.99f), KD_ACT_RELU);
    int shortcut;
    if (conv_shortcut)
        shortcut = conv(b, preact, 4 * filters, 1, stride, KD_PAD_VALID, true);
    else
        shortcut = stride > 1 ? pool(b, KD_L_MAXPOOL, x, 1, stride, KD_PAD_VALID) : x;
    int y = conv(b, preact, filters, 1, 1, KD_PAD_VALID, false);
    y = act(b, bn(b, y, RESNET_EPS, 0.99f), KD_ACT_RELU);
    y = zeropad(b, y, 1, 1, 1, 1);
    y = conv(b, y, filters, 3, stride, KD_PAD_VALID, false);
    y = act(b, bn(b, y, RESNET_EPS, 0.99f), KD_ACT_RELU);
    y = conv(b, y, 4 * filters, 1, 1, KD_PAD_VALID, true);
    return merge2(b, KD_L_ADD, shortcut, y);
}

static int resnet_stack2(builder *b, int x, int filters, int blocks, int stride1)
{
    x = resnet_block2(b, x, filters, 1, true);
    for (int i = 2; i < blocks; i++)
        x = resnet_block2(b, x, filters, 1, false);
    return resnet_block2(b, x, filters, stride1, false);
}

static void build_resnet50v2(builder *b)
{
    int x = zeropad(b, 0, 3, 3, 3, 3);
    x = conv(b, x, 64, 7, 2, KD_PAD_VALID, true);
    x = zeropad(b, x, 1, 1, 1, 1);
    x = pool(b, KD_L_MAXPOOL, x, 3, 2, KD_PAD_VALID);
    x = resnet_stack2(b, x, 64, 3, 2);
    x = resnet_stack2(b, x, 128, 4, 2);
    x = resnet_stack2(b, x, 256, 6, 2);
    x = resnet_stack2(b, x, 512, 3, 1);
    x = act(b, bn(b, x, RESNET_EPS, 0.99f), KD_ACT_RELU);
    classifier(b, simple(b, KD_L_GAP, x));
}

/* ---- DenseNet121 (Keras applications.DenseNet121) ------------------------------------ */

static int densenet_conv_block(builder *b, int x, int growth)
{
    int y = act(b, bn(b, x, RESNET_EPS, 0.99f), KD_ACT_RELU);
    y = conv(b, y, 4 * growth, 1, 1, KD_PAD_VALID, false);
    y = act(b, bn(b, y, RESNET_EPS, 0.99f), KD_ACT_RELU);
    y = conv(b, y, growth, 3, 1, KD_PAD_SAME, false);
    return merge2(b, KD_L_CONCAT, x, y);
}

static int densenet_transition(builder *b, int x, float reduction)
{
    x = act(b, bn(b, x, RESNET_EPS, 0.99f), KD_ACT_RELU);
    x = conv(b, x, (int)(channels(b, x) * reduction), 1, 1, KD_PAD_VALID, false);
    return pool(b, KD_L_AVGPOOL, x, 2, 2, KD_PAD_VALID);
}

static void build_densenet121(builder *b)
{
    static const int blocks[4] = {6, 12, 24, 16};
    int x = zeropad(b, 0, 3, 3, 3, 3);
    x = conv(b, x, 64, 7, 2, KD_PAD_VALID, false);
    x = act(b, bn(b, x, RESNET_EPS, 0.99f), KD_ACT_RELU);
    x = zeropad(b, x, 1, 1, 1, 1);
    x = pool(b, KD_L_MAXPOOL, x, 3, 2, KD_PAD_VALID);
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < blocks[i]; j++)
            x = densenet_conv_block(b, x, 32);
        if (i < 3)
            x = densenet_transition(b, x, 0.5f);
    }
    x = act(b, bn(b, x, RESNET_EPS, 0.99f), KD_ACT_RELU);
    classifier(b, simple(b, KD_L_GAP, x));
}

/* ---- EfficientNet B0/B3 (Keras applications.EfficientNetB*) ----------------------------- */

static int round_filters(int filters, double width)
{
    const int divisor = 8;
    double f = filters * width;
    int nf = KD_MAX(divisor, (int)(f + divisor / 2.0) / divisor * divisor);
    if (nf < 0.9 * f)
        nf += divisor;
    return nf;
}

static int round_repeats(int repeats, double depth) { return (int)ceil(depth * repeats); }

static const struct effnet_stage {
    int kernel, repeats, filters_in, filters_out, expand, stride;
} effnet_stages[7] = {
    {3, 1, 32, 16, 1, 1},  {3, 2, 16, 24, 6, 2},  {5, 2, 24, 40, 6, 2},   {3, 3, 40, 80, 6, 2},
    {5, 3, 80, 112, 6, 1}, {5, 4, 112, 192, 6, 2}, {3, 1, 192, 320, 6, 1},
};

static int effnet_block(builder *b, int in, int filters_in, int filters_out, int k, int stride,
                        int expand, float drop_rate)
{
    const kd_act sw = KD_ACT_SWISH;
    int filters = filters_in * expand;
    int x = in;
    if (expand != 1)
        x = act(b, bn(b, conv(b, x, filters, 1, 1, KD_PAD_SAME, false), 1e-3f, 0.99f), sw);
    kd_pad_mode pad = KD_PAD_SAME;
    if (stride == 2) {
        x = correct_pad(b, x, k);
        pad = KD_PAD_VALID;
    }
    x = act(b, bn(b, depthwise(b, x, k, stride, pad), 1e-3f, 0.99f), sw);
    int filters_se = KD_MAX(1, (int)(filters_in * 0.25));
    int se = simple(b, KD_L_GAP, x);
    se = act(b, conv(b, se, filters_se, 1, 1, KD_PAD_SAME, true), sw);
    se = act(b, conv(b, se, filters, 1, 1, KD_PAD_SAME, true), KD_ACT_SIGMOID);
    x = merge2(b, KD_L_MULTIPLY, x, se);
    x = bn(b, conv(b, x, filters_out, 1, 1, KD_PAD_SAME, false), 1e-3f, 0.99f);
    if (stride == 1 && filters_in == filters_out) {
        if (drop_rate > 0)
            x = dropout(b, x, drop_rate, true);
        x = merge2(b, KD_L_ADD, x, in);
    }
    return x;
}

static void build_efficientnet(builder *b, double width, double depth, float dropout_rate)
{
    /* Keras feeds raw 0..255 pixels: Rescaling and Normalization are layers. */
    for (int i = 0; i < b->m->in_c; i++)
        b->m->in_scale[i] = 1.0f;
    int x = rescale(b, 0, 1.0f / 255.0f, 0.0f);
    x = simple(b, KD_L_NORMALIZE, x);
    x = correct_pad(b, x, 3);
    x = conv(b, x, round_filters(32, width), 3, 2, KD_PAD_VALID, false);
    x = act(b, bn(b, x, 1e-3f, 0.99f), KD_ACT_SWISH);
    int total = 0, done = 0;
    for (int i = 0; i < 7; i++)
        total += round_repeats(effnet_stages[i].repeats, depth);
    for (int i = 0; i < 7; i++) {
        const struct effnet_stage *s = &effnet_stages[i];
        int fin = round_filters(s->filters_in, width), fout = round_filters(s->filters_out, width);
        int reps = round_repeats(s->repeats, depth);
        for (int j = 0; j < reps; j++, done++) {
            float drop = 0.2f * (float)done / (float)total;
            x = effnet_block(b, x, j ? fout : fin, fout, s->kernel, j ? 1 : s->stride, s->expand,
                             drop);
        }
    }
    x = conv(b, x, round_filters(1280, width), 1, 1, KD_PAD_SAME, false);
    x = act(b, bn(b, x, 1e-3f, 0.99f), KD_ACT_SWISH);
    x = dropout(b, simple(b, KD_L_GAP, x), dropout_rate, false);
    classifier(b, x);
}

/* ---- MobileNetV3Large (Keras applications.MobileNetV3Large) ------------------------------- */

static int make_divisible(double v)
{
    const int divisor = 8;
    int nv = KD_MAX(divisor, (int)(v + divisor / 2.0) / divisor * divisor);
    if (nv < 0.9 * v)
        nv += divisor;
    return nv;
}

#define MBV3_BN(b, x) bn(b, x, 1e-3f, 0.999f)

static int mbv3_block(builder *b, int in, double expansion, int filters, int k, int stride,
                      bool se, kd_act fn, int block_id)
{
    int infilters = channels(b, in);
    int x = in;
    if (block_id)
        x = act(b, MBV3_BN(b, conv(b, x, make_divisible(infilters * expansion), 1, 1,
                                   KD_PAD_SAME, false)),
                fn);
    if (stride == 2)
        x = correct_pad(b, x, k);
    x = depthwise(b, x, k, stride, stride == 1 ? KD_PAD_SAME : KD_PAD_VALID);
    x = act(b, MBV3_BN(b, x), fn);
    if (se) {
        int sf = make_divisible(infilters * expansion);
        int s = simple(b, KD_L_GAP, x);
        s = act(b, conv(b, s, make_divisible(sf * 0.25), 1, 1, KD_PAD_SAME, true), KD_ACT_RELU);
        s = act(b, conv(b, s, sf, 1, 1, KD_PAD_SAME, true), KD_ACT_HARD_SIGMOID);
        x = merge2(b, KD_L_MULTIPLY, x, s);
    }
    x = MBV3_BN(b, conv(b, x, filters, 1, 1, KD_PAD_SAME, false));
    if (stride == 1 && infilters == filters)
        x = merge2(b, KD_L_ADD, in, x);
    return x;
}

static void build_mobilenetv3large(builder *b)
{
    static const struct {
        double expansion;
        int filters, kernel, stride;
        bool se, hswish;
    } blocks[15] = {
        {1, 16, 3, 1, false, false},  {4, 24, 3, 2, false, false},  {3, 24, 3, 1, false, false},
        {3, 40, 5, 2, true, false},   {3, 40, 5, 1, true, false},   {3, 40, 5, 1, true, false},
        {6, 80, 3, 2, false, true},   {2.5, 80, 3, 1, false, true}, {2.3, 80, 3, 1, false, true},
        {2.3, 80, 3, 1, false, true}, {6, 112, 3, 1, true, true},   {6, 112, 3, 1, true, true},
        {6, 160, 5, 2, true, true},   {6, 160, 5, 1, true, true},   {6, 160, 5, 1, true, true},
    };
    for (int i = 0; i < b->m->in_c; i++)
        b->m->in_scale[i] = 1.0f;
    int x = rescale(b, 0, 1.0f / 127.5f, -1.0f);
    x = act(b, MBV3_BN(b, conv(b, x, 16, 3, 2, KD_PAD_SAME, false)), KD_ACT_HARD_SWISH);
    for (int i = 0; i < 15; i++)
        x = mbv3_block(b, x, blocks[i].expansion, make_divisible(blocks[i].filters),
                       blocks[i].kernel, blocks[i].stride, blocks[i].se,
                       blocks[i].hswish ? KD_ACT_HARD_SWISH : KD_ACT_RELU, i);
    x = conv(b, x, make_divisible(channels(b, x) * 6), 1, 1, KD_PAD_SAME, false);
    x = act(b, MBV3_BN(b, x), KD_ACT_HARD_SWISH);
    x = simple(b, KD_L_GAP, x);
    x = act(b, conv(b, x, 1280, 1, 1, KD_PAD_SAME, true), KD_ACT_HARD_SWISH);
    x = dropout(b, x, 0.2f, false);
    x = conv(b, x, b->m->classes, 1, 1, KD_PAD_SAME, true);
    x = simple(b, KD_L_FLATTEN, x);
    act(b, x, KD_ACT_SOFTMAX);
}

/* ---- the registry ------------------------------------------------------------------------------- */

static void build_effb0(builder *b) { build_efficientnet(b, 1.0, 1.0, 0.2f); }
static void build_effb3(builder *b) { build_efficientnet(b, 1.2, 1.4, 0.3f); }

static const struct {
    const char *name;
    void (*build)(builder *b);
} archs[] = {
    {"test", build_test},
    {"resnet20", build_resnet20},
    {"mobilenet_small", build_mobilenet_small},
    {"resnet50v2", build_resnet50v2},
    {"densenet121", build_densenet121},
    {"efficientnetb0", build_effb0},
    {"efficientnetb3", build_effb3},
    {"mobilenetv3large", build_mobilenetv3large},
};

int kdens_arch_count(void) { return (int)KD_ARRAY_LEN(archs); }

const char *kdens_arch_name(int i)
{
    return i >= 0 && i < kdens_arch_count() ? archs[i].name : NULL;
}

kdens_status kd_arch_build(kdens_model *m, const char *arch)
{
    for (size_t i = 0; i < KD_ARRAY_LEN(archs); i++)
        if (strcmp(archs[i].name, arch) == 0) {
            builder b = {m, KDENS_OK};
            archs[i].build(&b);
            if (b.st != KDENS_OK)
                return kd_fail_context(b.st, "architecture %s", arch);
            return KDENS_OK;
        }
    return kd_fail(KDENS_E_NOTFOUND,
                   "unknown architecture '%s' (built in: test, resnet20, mobilenet_small, "
                   "resnet50v2, densenet121, efficientnetb0, efficientnetb3, mobilenetv3large)",
                   arch);
}

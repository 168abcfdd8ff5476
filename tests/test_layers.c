/* Finite-difference gradient checks of every layer family and of small
 * built-in networks end to end.  Each spec starts with a trainable 1x1
 * convolution so that the gradient a layer passes to its input is checked
 * too (through that convolution's weights), not only its own parameters. */
#include "testutil.h"

#include "nn/nn.h"

#include <math.h>

typedef struct gc_case {
    const char *spec; /* NULL: use arch */
    const char *arch;
    int h, w, c, classes, n;
    bool training;
    float alpha, temperature; /* distillation loss when alpha < 1 */
    bool aggregate; /* compare whole gradient vectors, not each entry */
} gc_case;

/* Which smooth piece of each kinked function the last forward pass was on:
 * the side of every kink for each input of relu, relu6, hard_sigmoid and
 * hard_swish, and the winner of every max-pool window, hashed.  A finite
 * difference is only valid when w - h, w and w + h share this signature;
 * otherwise the step straddles a non-differentiable point. */
static uint64_t kink_signature(const kdens_model *m, size_t n)
{
    uint64_t h = KD_FNV_BASIS;
    for (int i = 0; i < m->n_nodes; i++) {
        const kd_node *node = &m->nodes[i];
        if (node->type == KD_L_MAXPOOL) {
            h = kd_fnv1a(h, node->aux, sizeof(int32_t) * n * kd_node_size(node));
            continue;
        }
        if (node->type != KD_L_ACT)
            continue;
        float lo, hi; /* the kinks */
        switch (node->a.act) {
        case KD_ACT_RELU: lo = hi = 0.0f; break;
        case KD_ACT_RELU6: lo = 0.0f, hi = 6.0f; break;
        case KD_ACT_HARD_SIGMOID:
        case KD_ACT_HARD_SWISH: lo = -3.0f, hi = 3.0f; break;
        default: continue;
        }
        /* ReLU's input may be fused away: its output has the same sides */
        const float *x = node->a.act == KD_ACT_RELU ? node->out : m->nodes[node->in[0]].out;
        size_t count = n * kd_node_size(node);
        for (size_t k = 0; k < count; k++) {
            uint8_t side = (uint8_t)((x[k] > lo) + (x[k] > hi));
            h = kd_fnv1a(h, &side, 1);
        }
    }
    return h;
}

static double loss_at(kdens_model *m, const float *x, size_t n, const int32_t *y,
                      const float *soft, uint64_t *signature)
{
    float loss;
    kdens_model_set_seed(m, 99); /* the same dropout masks on every pass */
    ASSERT_OK(kdens_model_forward_loss(m, x, n, y, soft, &loss, NULL));
    if (signature)
        *signature = kink_signature(m, n);
    return loss;
}

static void gradcheck(const gc_case *gc)
{
    kdens_model *m;
    kdens_status st = gc->spec
                          ? kdens_model_from_spec(gc->spec, gc->h, gc->w, gc->c, gc->classes, 7, &m)
                          : kdens_model_create(gc->arch, gc->h, gc->w, gc->c, gc->classes, 7, &m);
    if (st != KDENS_OK)
        fail_msg("building '%s': %s", gc->spec ? gc->spec : gc->arch, kdens_errmsg());
    ASSERT_OK(kdens_model_set_training(m, gc->training));
    float alpha = gc->alpha == 0 && gc->temperature == 0 ? 1.0f : gc->alpha;
    ASSERT_OK(kdens_model_set_loss(m, alpha, gc->temperature > 0 ? gc->temperature : 1.0f));
    size_t n = (size_t)gc->n, in = (size_t)gc->h * gc->w * gc->c;
    float *x = malloc(sizeof(float) * n * in);
    float *soft = malloc(sizeof(float) * n * gc->classes);
    int32_t *y = malloc(sizeof(int32_t) * n);
    tu_fill(x, n * in, 1.0f, 11);
    tu_fill(soft, n * gc->classes, 1.0f, 12);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i * 7 % gc->classes);
        float sum = 0;
        for (int k = 0; k < gc->classes; k++)
            sum += soft[i * gc->classes + k] = expf(soft[i * gc->classes + k]);
        for (int k = 0; k < gc->classes; k++)
            soft[i * gc->classes + k] /= sum;
    }
    const float *targets = alpha < 1 ? soft : NULL;
    /* Batch norm in training mode updates moving statistics on every pass;
     * they do not feed the training-mode output, so the loss is unaffected. */
    uint64_t base_sig;
    loss_at(m, x, n, y, targets, &base_sig);
    ASSERT_OK(kdens_model_backward(m));
    float *grads = malloc(sizeof(float) * (m->n_trainable + 1));
    memcpy(grads, m->grads, sizeof(float) * m->n_trainable);
    int checked = 0, straddled = 0;
    double dot = 0, na = 0, nn = 0, diff = 0;
    /* Large networks: a sample of tensors, two entries each. */
    int tensor_stride = gc->aggregate ? KD_MAX(1, m->n_params / 40) : 1;
    size_t per_tensor = gc->aggregate ? 2 : 10;
    for (int p = 0; p < m->n_params; p += tensor_stride) {
        const kd_param *prm = &m->params[p];
        if (!prm->trainable)
            continue;
        size_t stride = prm->count > per_tensor ? prm->count / per_tensor : 1;
        for (size_t k = 0; k < prm->count; k += stride) {
            /* Central differences at three step sizes; a step whose ends lie
             * on another piece of a kinked function than the point itself
             * (kink_signature) is no estimate at all and is not used.  An
             * entry whose every step straddles a kink is not checked alone;
             * deep networks (aggregate) straddle one of thousands of kinks
             * at almost every entry whose gradient is not negligible, so
             * there the smallest step's estimate joins the aggregate. */
            static const float steps[3] = {4e-3f, 1e-3f, 2.5e-4f};
            float *w = m->weights + prm->offset + k;
            float saved = *w;
            double analytic = grads[prm->offset + k], numeric = 0;
            bool ok = false, smooth = false;
            for (int s = 0; s < 3 && !ok; s++) {
                uint64_t sig_p, sig_m;
                *w = saved + steps[s];
                double lp = loss_at(m, x, n, y, targets, &sig_p);
                *w = saved - steps[s];
                double lm = loss_at(m, x, n, y, targets, &sig_m);
                *w = saved;
                bool straddles = sig_p != base_sig || sig_m != base_sig;
                if (straddles && !gc->aggregate)
                    continue;
                smooth |= !straddles;
                numeric = (lp - lm) / (2.0 * steps[s]);
                ok = fabs(numeric - analytic) <=
                     1e-3 + 2e-2 * fmax(fabs(numeric), fabs(analytic));
            }
            if (!smooth) {
                straddled++;
                if (!gc->aggregate)
                    continue;
            }
            dot += analytic * numeric;
            na += analytic * analytic;
            nn += numeric * numeric;
            diff += (analytic - numeric) * (analytic - numeric);
            if (!ok && !gc->aggregate)
                fail_msg("%s: d loss / d %s[%zu]: analytic %.6g, numeric %.6g",
                         gc->spec ? gc->spec : gc->arch, prm->name, k, analytic, numeric);
            checked++;
        }
    }
    /* Kinks may exclude a few entries of a layer, never most of them. */
    if (checked == 0 || (!gc->aggregate && straddled > checked / 4 + 2))
        fail_msg("%s: %d entries checked, %d straddle a kink at every step",
                 gc->spec ? gc->spec : gc->arch, checked, straddled);
    if (gc->aggregate) {
        /* Deep relu networks have kinks within any usable step somewhere;
         * the gradient as a whole must still agree. */
        double cosine = dot / sqrt(na * nn + 1e-30), rel = sqrt(diff / (na + 1e-30));
        if (cosine < 0.995 || rel > 0.1)
            fail_msg("%s: gradient cosine %.5f, relative error %.4f over %d entries",
                     gc->spec ? gc->spec : gc->arch, cosine, rel, checked);
    }
    free(grads);
    free(x);
    free(soft);
    free(y);
    kdens_model_free(m);
}

#define PRE "conv filters=3 kernel=1 name=pre\n"
#define HEAD "\nflatten\ndense units=classes\n"

static void test_conv(void **state)
{
    (void)state;
    const char *specs[] = {
        PRE "conv filters=4 kernel=3 padding=same" HEAD,
        PRE "conv filters=4 kernel=3 stride=2 padding=same" HEAD,
        PRE "conv filters=4 kernel=3x2 stride=1x2 padding=valid" HEAD,
        PRE "conv filters=4 kernel=3 padding=1,0,2,1 bias=0" HEAD,
        PRE "conv filters=6 kernel=3 groups=3 padding=same" HEAD,
        PRE "depthwise kernel=3 padding=same" HEAD,
        PRE "depthwise kernel=3 stride=2 multiplier=2 padding=same bias=0" HEAD,
        PRE "conv filters=5 kernel=1" HEAD,
        PRE "conv filters=5 kernel=1 stride=2" HEAD,
        /* dilated: taps 2 or 3 apart, 'same' padding from the span */
        PRE "conv filters=4 kernel=3 dilation=2 padding=same" HEAD,
        PRE "conv filters=4 kernel=3x2 dilation=2x3 stride=2x1 padding=1,0,2,1" HEAD,
        PRE "conv filters=6 kernel=2 groups=3 dilation=3x2 padding=valid" HEAD,
        PRE "depthwise kernel=3 dilation=2 padding=same" HEAD,
        PRE "depthwise kernel=2 stride=2 multiplier=2 dilation=3 padding=same bias=0" HEAD,
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        gc_case gc = {specs[i], NULL, 6, 5, 2, 3, 3, true, 0, 0, false};
        gradcheck(&gc);
    }
}

static void test_dense(void **state)
{
    (void)state;
    gc_case a = {PRE "dense units=6\ntanh\ndense units=classes", NULL, 3, 3, 2, 4, 4, true, 0, 0, false};
    gradcheck(&a);
    gc_case b = {PRE "dense units=classes bias=0", NULL, 2, 3, 2, 4, 3, true, 0, 0, false};
    gradcheck(&b);
}

static void test_batchnorm(void **state)
{
    (void)state;
    gc_case train = {PRE "conv filters=4 kernel=3\nbatchnorm" HEAD, NULL, 5, 5, 2, 3, 4, true, 0, 0, false};
    gradcheck(&train);
    gc_case eval = {PRE "conv filters=4 kernel=3\nbn momentum=0.9 eps=0.01" HEAD, NULL, 5, 5, 2,
                    3, 4, false, 0, 0, false};
    gradcheck(&eval);
    /* batch norm and a ReLU that alone reads it run fused */
    gc_case fused = {PRE "conv filters=4 kernel=3\nbatchnorm\nrelu" HEAD, NULL, 5, 5, 2, 3, 4,
                     true, 0, 0, false};
    gradcheck(&fused);
    fused.training = false;
    gradcheck(&fused);
}

static void test_activations(void **state)
{
    (void)state;
    const char *acts[] = {"relu", "relu6", "sigmoid", "hard_sigmoid", "swish",
                          "hard_swish", "tanh", "softmax"};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
        char spec[256];
        snprintf(spec, sizeof spec, PRE "rescale scale=3\n%s" HEAD, acts[i]);
        gc_case gc = {spec, NULL, 3, 4, 2, 3, 3, true, 0, 0, false};
        gradcheck(&gc);
    }
    /* log, on positive inputs (probabilities, as in mimic_all_probs students) */
    gc_case gc = {PRE "sigmoid\nlog" HEAD, NULL, 3, 4, 2, 3, 3, true, 0, 0, false};
    gradcheck(&gc);
}

static void test_pooling_and_shape_layers(void **state)
{
    (void)state;
    const char *specs[] = {
        PRE "maxpool size=2" HEAD,
        PRE "maxpool size=3 stride=2 padding=same" HEAD,
        PRE "avgpool size=2" HEAD,
        PRE "avgpool size=3 stride=2 padding=same" HEAD,
        PRE "gap" HEAD,
        PRE "zeropad pad=1,0,2,1\nconv filters=2 kernel=3" HEAD,
        PRE "dropout rate=0.3" HEAD,
        PRE "dropout rate=0.5 per_sample=1" HEAD,
        PRE "rescale scale=0.5 offset=1" HEAD,
        PRE "normalize" HEAD,
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        gc_case gc = {specs[i], NULL, 6, 6, 2, 3, 3, true, 0, 0, false};
        gradcheck(&gc);
    }
}

static void test_merge_layers(void **state)
{
    (void)state;
    const char *specs[] = {
        PRE "conv filters=3 kernel=3 padding=same name=a\nadd in=a,pre" HEAD,
        PRE "conv filters=3 kernel=3 padding=same name=a\nadd in=a,pre\nrelu" HEAD,
        PRE "conv filters=2 kernel=3 padding=same name=a\nconcat in=pre,a,pre" HEAD,
        PRE "conv filters=3 kernel=3 padding=same name=a\nmultiply in=a,pre" HEAD,
        PRE "gap name=s\nconv filters=3 kernel=1 name=e\nsigmoid name=g\nmultiply in=pre,g" HEAD,
        PRE "multiply in=pre,pre" HEAD,
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        gc_case gc = {specs[i], NULL, 4, 4, 2, 3, 3, true, 0, 0, false};
        gradcheck(&gc);
    }
}

static void test_distillation_loss(void **state)
{
    (void)state;
    gc_case kd = {PRE "dense units=classes", NULL, 2, 2, 2, 5, 4, true, 0.3f, 4.0f, false};
    gradcheck(&kd);
    gc_case soft_only = {PRE "dense units=classes", NULL, 2, 2, 2, 5, 4, true, 0.0f, 2.5f, false};
    gradcheck(&soft_only);
}

static void test_networks_end_to_end(void **state)
{
    (void)state;
    gc_case nets[] = {
        {NULL, "test", 8, 8, 1, 4, 3, true, 0, 0, true},
        /* Batch norm in inference form: with batch statistics of four 8x8
         * images these deep networks are too curved for finite differences
         * (training-mode batch norm is checked layer by layer above). */
        {NULL, "resnet20", 8, 8, 1, 3, 4, false, 0, 0, true},
        {NULL, "resnet20", 8, 8, 1, 3, 8, true, 0, 0, true},
        {NULL, "mobilenet_small", 8, 8, 3, 3, 4, false, 0, 0, true},
        {NULL, "efficientnetb0", 32, 32, 3, 3, 2, false, 0, 0, true},
        {NULL, "mobilenetv3large", 32, 32, 3, 3, 2, false, 0, 0, true},
    };
    for (size_t i = 0; i < sizeof nets / sizeof *nets; i++)
        gradcheck(&nets[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_pooling_and_shape_layers),
        cmocka_unit_test(test_merge_layers),
        cmocka_unit_test(test_distillation_loss),
        cmocka_unit_test(test_networks_end_to_end),
    };
    return cmocka_run_group_tests_name("layers (gradient checks)", tests, NULL, NULL);
}

/* Normalising families: batch normalisation, Keras' input Normalization
 * layer and rescaling (x * scale + offset).  Forward and backward side by side. */
#include "nn.h"

#include <math.h>

/* ---- batch normalisation ----------------------------------------------------- */

enum { BN_GAMMA, BN_BETA, BN_MEAN, BN_VAR };

static kdens_status bn_infer(kdens_model *m, kd_node *node)
{
    const kd_node *x = kd_input(m, node, 0);
    kd_infer_same_shape(m, node);
    if (!(node->a.eps > 0) || !(node->a.momentum >= 0 && node->a.momentum <= 1))
        return kd_fail(KDENS_E_SPEC, "batchnorm '%s': eps must be > 0 and momentum in [0, 1]",
                       node->name);
    kdens_status st = kd_node_add_param(m, node, "gamma", 1, &x->c, true, KD_INIT_ONE);
    if (st == KDENS_OK)
        st = kd_node_add_param(m, node, "beta", 1, &x->c, true, KD_INIT_ZERO);
    if (st == KDENS_OK)
        st = kd_node_add_param(m, node, "moving_mean", 1, &x->c, false, KD_INIT_ZERO);
    if (st == KDENS_OK)
        st = kd_node_add_param(m, node, "moving_variance", 1, &x->c, false, KD_INIT_ONE);
    return st;
}

/* The batch mean and 1/std of the last training forward pass. */
static size_t bn_aux(const kdens_model *m, const kd_node *node, size_t n)
{
    (void)m;
    (void)n;
    return 2 * (size_t)node->c;
}

/* Shared workspace: per-thread double sums, then 2c floats of coefficients. */
static size_t bn_work(const kdens_model *m, const kd_node *node, size_t n)
{
    (void)m;
    (void)n;
    return 2 * kd_bn_scratch_doubles(node->c) + 2 * (size_t)node->c;
}

static double *bn_scratch(kdens_model *m) { return (double *)m->work; }
static float *bn_coeffs(kdens_model *m, const kd_node *node)
{
    return m->work + 2 * kd_bn_scratch_doubles(node->c);
}

/* Data-parallel training: the statistics over the global batch of every
 * rank, of which this rank holds n images. */
static kd_bn_sync *bn_sync(kdens_model *m, const kd_node *node)
{
    if (!m->sync)
        return NULL;
    m->sync->global_rows = m->sync_global_n * node->h * node->w;
    return m->sync;
}

/* Fused with the ReLU that alone reads it (kd_model_fuse), the output goes
 * through max(., 0) straight into the ReLU's buffer: one pass instead of
 * two.  The ReLU's backward reads only its own output, so nothing needs
 * the batch norm's. */
static void bn_forward(kdens_model *m, kd_node *node, size_t n)
{
    const kd_node *x = kd_input(m, node, 0);
    size_t rows = n * node->h * node->w;
    float *stats = node->aux;
    bool fused = node->relu_into && !m->unfused;
    float *y = fused ? m->nodes[node->relu_into].out : node->out;
    if (m->training)
        kd_bn_forward_train(rows, node->c, x->out, kd_param_data(m, node, BN_GAMMA),
                            kd_param_data(m, node, BN_BETA), node->a.eps, node->a.momentum,
                            kd_param_data(m, node, BN_MEAN), kd_param_data(m, node, BN_VAR),
                            stats, stats + node->c, y, bn_scratch(m), bn_coeffs(m, node),
                            fused, bn_sync(m, node));
    else
        kd_bn_forward_eval(rows, node->c, x->out, kd_param_data(m, node, BN_GAMMA),
                           kd_param_data(m, node, BN_BETA), kd_param_data(m, node, BN_MEAN),
                           kd_param_data(m, node, BN_VAR), node->a.eps, y, bn_coeffs(m, node),
                           fused);
}

/* Fused with a ReLU, the ReLU's backward does nothing: the gradient comes
 * from the ReLU's node, masked by its output, in the same passes. */
static void bn_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    size_t rows = n * node->h * node->w;
    float *stats = node->aux;
    const kd_node *relu = node->relu_into ? &m->nodes[node->relu_into] : NULL;
    const float *dy = relu ? relu->grad : node->grad, *relu_y = relu ? relu->out : NULL;
    if (m->training)
        kd_bn_backward_train(rows, node->c, x->out, kd_param_data(m, node, BN_GAMMA), stats,
                             stats + node->c, dy, relu_y, x->grad,
                             x->grad && kd_grad_assign(x), kd_param_grad(m, node, BN_GAMMA),
                             kd_param_grad(m, node, BN_BETA), bn_scratch(m),
                             bn_coeffs(m, node), bn_sync(m, node));
    else
        kd_bn_backward_eval(rows, node->c, x->out, kd_param_data(m, node, BN_GAMMA),
                            kd_param_data(m, node, BN_MEAN), kd_param_data(m, node, BN_VAR),
                            node->a.eps, dy, relu_y, kd_grad_accumulate(x, n),
                            kd_param_grad(m, node, BN_GAMMA),
                            kd_param_grad(m, node, BN_BETA));
}

const kd_layer_ops kd_ops_batchnorm = {"batchnorm", 1,          1,          bn_infer, bn_aux,
                                       bn_work,     bn_forward, bn_backward};

/* ---- Keras Normalization: (x - mean) / max(sqrt(variance), 1e-7) ----------------- */

static kdens_status normalize_infer(kdens_model *m, kd_node *node)
{
    const kd_node *x = kd_input(m, node, 0);
    kd_infer_same_shape(m, node);
    int one = 1;
    kdens_status st = kd_node_add_param(m, node, "mean", 1, &x->c, false, KD_INIT_ZERO);
    if (st == KDENS_OK)
        st = kd_node_add_param(m, node, "variance", 1, &x->c, false, KD_INIT_ONE);
    if (st == KDENS_OK) /* Keras keeps the sample count of adapt(); so do we */
        st = kd_node_add_param(m, node, "count", 1, &one, false, KD_INIT_ZERO);
    return st;
}

static float norm_inv_std(float var)
{
    float s = sqrtf(var > 0 ? var : 0);
    return 1.0f / (s > 1e-7f ? s : 1e-7f);
}

static void normalize_forward(kdens_model *m, kd_node *node, size_t n)
{
    const float *x = kd_input(m, node, 0)->out;
    const float *mean = kd_param_data(m, node, 0), *var = kd_param_data(m, node, 1);
    size_t rows = n * node->h * node->w;
    int c = node->c;
    for (size_t r = 0; r < rows; r++)
        for (int ch = 0; ch < c; ch++)
            node->out[r * c + ch] = (x[r * c + ch] - mean[ch]) * norm_inv_std(var[ch]);
}

static void normalize_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (!kd_grad_accumulate(x, n))
        return;
    const float *var = kd_param_data(m, node, 1);
    size_t rows = n * node->h * node->w;
    int c = node->c;
    for (size_t r = 0; r < rows; r++)
        for (int ch = 0; ch < c; ch++)
            x->grad[r * c + ch] += node->grad[r * c + ch] * norm_inv_std(var[ch]);
}

const kd_layer_ops kd_ops_normalize = {"normalize", 1,    1, normalize_infer, NULL, NULL,
                                       normalize_forward, normalize_backward};

/* ---- rescaling ---------------------------------------------------------------------- */

static void rescale_forward(kdens_model *m, kd_node *node, size_t n)
{
    const float *x = kd_input(m, node, 0)->out;
    size_t count = n * kd_node_size(node);
    for (size_t i = 0; i < count; i++)
        node->out[i] = x[i] * node->a.scale + node->a.offset;
}

static void rescale_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (!kd_grad_accumulate(x, n))
        return;
    size_t count = n * kd_node_size(node);
    for (size_t i = 0; i < count; i++)
        x->grad[i] += node->grad[i] * node->a.scale;
}

const kd_layer_ops kd_ops_rescale = {"rescale",       1,    1, kd_infer_same_shape, NULL, NULL,
                                     rescale_forward, rescale_backward};

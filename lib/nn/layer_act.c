/* Activations and dropout.  Forward and backward side by side. */
#include "nn.h"

#include <string.h>

static void act_forward(kdens_model *m, kd_node *node, size_t n)
{
    if (node->fused && !m->unfused) /* the batch norm before wrote the output */
        return;
    kd_act_forward(node->a.act, n * node->h * node->w, node->c, kd_input(m, node, 0)->out,
                   node->out);
}

static void act_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (node->fused) /* the batch norm or add before masks this gradient itself */
        return;
    if (x->grad)
        kd_act_backward(node->a.act, n * node->h * node->w, node->c, x->out, node->out,
                        node->grad, x->grad, kd_grad_assign(x));
}

const kd_layer_ops kd_ops_act = {"act",       1,          1,   kd_infer_same_shape, NULL,
                                 NULL,        act_forward, act_backward};

/* ---- dropout (inverted: kept units are scaled by 1 / (1 - rate)) --------------- */

static kdens_status dropout_infer(kdens_model *m, kd_node *node)
{
    if (!(node->a.rate >= 0 && node->a.rate < 1))
        return kd_fail(KDENS_E_SPEC, "dropout '%s': rate %g is outside [0, 1)", node->name,
                       (double)node->a.rate);
    return kd_infer_same_shape(m, node);
}

static size_t dropout_aux(const kdens_model *m, const kd_node *node, size_t n)
{
    (void)m;
    return n * kd_node_size(node);
}

static void dropout_forward(kdens_model *m, kd_node *node, size_t n)
{
    const float *x = kd_input(m, node, 0)->out;
    size_t count = n * kd_node_size(node);
    float *mask = node->aux;
    if (!m->training || node->a.rate == 0) {
        memcpy(node->out, x, sizeof(float) * count);
        for (size_t i = 0; i < count; i++)
            mask[i] = 1.0f;
        return;
    }
    float keep = 1.0f / (1.0f - node->a.rate);
    size_t per = kd_node_size(node);
    float draw = 0;
    for (size_t i = 0; i < count; i++) {
        if (!node->a.per_sample || i % per == 0)
            draw = kd_rng_uniform(&m->rng) >= node->a.rate ? keep : 0.0f;
        mask[i] = draw;
        node->out[i] = x[i] * mask[i];
    }
}

static void dropout_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (!kd_grad_accumulate(x, n))
        return;
    size_t count = n * kd_node_size(node);
    const float *mask = node->aux;
    for (size_t i = 0; i < count; i++)
        x->grad[i] += node->grad[i] * mask[i];
}

const kd_layer_ops kd_ops_dropout = {"dropout",   1,    1,           dropout_infer, dropout_aux,
                                     NULL, dropout_forward, dropout_backward};

/* GEMM-backed families: convolution (plain, grouped, depthwise) and dense.
 * Forward and backward side by side. */
#include "nn.h"

#include <string.h>

/* ---- conv ------------------------------------------------------------------ */

static kdens_status conv_infer(kdens_model *m, kd_node *node)
{
    kd_attrs *a = &node->a;
    const kd_node *x = kd_input(m, node, 0);
    if (a->groups == 0) { /* depthwise: one group per input channel */
        a->groups = x->c;
        a->units = x->c * (a->multiplier > 0 ? a->multiplier : 1);
    }
    if (a->sh == 0)
        a->sh = 1;
    if (a->sw == 0)
        a->sw = 1;
    if (a->units < 1 || a->kh < 1 || a->kw < 1 || a->sh < 1 || a->sw < 1 || a->groups < 1 ||
        a->dh < 1 || a->dw < 1)
        return kd_fail(KDENS_E_SPEC,
                       "conv '%s': filters, kernel, stride, dilation and groups must be >= 1",
                       node->name);
    if (x->c % a->groups || a->units % a->groups)
        return kd_fail(KDENS_E_SHAPE,
                       "conv '%s': %d input and %d output channels do not divide into %d groups",
                       node->name, x->c, a->units, a->groups);
    /* A dilated kernel covers (k - 1) * d + 1 pixels: output sizes and
     * 'same' padding follow from that span. */
    long span_h = (long)(a->kh - 1) * a->dh + 1, span_w = (long)(a->kw - 1) * a->dw + 1;
    if (span_h > 65536 || span_w > 65536)
        return kd_fail(KDENS_E_SPEC, "conv '%s': a %dx%d kernel dilated %dx%d spans %ldx%ld "
                       "pixels (at most 65536)", node->name, a->kh, a->kw, a->dh, a->dw,
                       span_h, span_w);
    node->h = kd_resolve_padding(a->pad_mode, a->pad, x->h, (int)span_h, a->sh, &node->pt,
                                 &node->pb);
    node->w = kd_resolve_padding(a->pad_mode, a->pad + 2, x->w, (int)span_w, a->sw, &node->pl,
                                 &node->pr);
    node->c = a->units;
    int kshape[4] = {a->kh, a->kw, x->c / a->groups, a->units};
    kdens_status st = kd_node_add_param(m, node, "kernel", 4, kshape, true, KD_INIT_GLOROT);
    if (st == KDENS_OK && a->bias)
        st = kd_node_add_param(m, node, "bias", 1, &a->units, true, KD_INIT_ZERO);
    return st;
}

static kd_conv_geom conv_geom(kdens_model *m, const kd_node *node, size_t n)
{
    const kd_node *x = kd_input(m, node, 0);
    kd_conv_geom g = {(int)n,      x->h,       x->w,       x->c,       node->h,
                      node->w,     node->c,    node->a.kh, node->a.kw, node->a.sh,
                      node->a.sw,  node->pt,   node->pl,   node->a.groups, node->a.dh,
                      node->a.dw};
    return g;
}

static size_t conv_work(const kdens_model *m, const kd_node *node, size_t n)
{
    kd_conv_geom g = conv_geom((kdens_model *)m, node, n);
    return kd_conv_workspace(&g);
}

static void conv_forward(kdens_model *m, kd_node *node, size_t n)
{
    kd_conv_geom g = conv_geom(m, node, n);
    kd_conv_forward(&g, kd_input(m, node, 0)->out, kd_param_data(m, node, 0),
                    node->a.bias ? kd_param_data(m, node, 1) : NULL, node->out, m->work);
}

static void conv_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_conv_geom g = conv_geom(m, node, n);
    kd_node *x = kd_input(m, node, 0);
    kd_conv_backward(&g, x->out, kd_param_data(m, node, 0), node->grad, x->grad,
                     x->grad && kd_grad_assign(x), kd_param_grad(m, node, 0),
                     node->a.bias ? kd_param_grad(m, node, 1) : NULL, m->work);
}

const kd_layer_ops kd_ops_conv = {"conv",    1,         1,           conv_infer, NULL,
                                  conv_work, conv_forward, conv_backward};

/* ---- dense: y = flatten(x) W + b ------------------------------------------------- */

static kdens_status dense_infer(kdens_model *m, kd_node *node)
{
    const kd_node *x = kd_input(m, node, 0);
    if (node->a.units < 1)
        return kd_fail(KDENS_E_SPEC, "dense '%s': units must be >= 1", node->name);
    node->h = node->w = 1;
    node->c = node->a.units;
    int kshape[2] = {(int)kd_node_size(x), node->a.units};
    kdens_status st = kd_node_add_param(m, node, "kernel", 2, kshape, true, KD_INIT_GLOROT);
    if (st == KDENS_OK && node->a.bias)
        st = kd_node_add_param(m, node, "bias", 1, &node->a.units, true, KD_INIT_ZERO);
    return st;
}

static void dense_forward(kdens_model *m, kd_node *node, size_t n)
{
    const kd_node *x = kd_input(m, node, 0);
    int k = (int)kd_node_size(x), u = node->c;
    for (size_t r = 0; r < n; r++) {
        if (node->a.bias)
            memcpy(node->out + r * u, kd_param_data(m, node, 1), sizeof(float) * u);
        else
            memset(node->out + r * u, 0, sizeof(float) * u);
    }
    kd_gemm(false, false, (int)n, u, k, 1.0f, x->out, k, kd_param_data(m, node, 0), u, 1.0f,
            node->out, u);
}

static void dense_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    int k = (int)kd_node_size(x), u = node->c;
    kd_gemm(true, false, k, u, (int)n, 1.0f, x->out, k, node->grad, u, 1.0f,
            kd_param_grad(m, node, 0), u);
    if (node->a.bias) {
        float *db = kd_param_grad(m, node, 1);
        for (size_t r = 0; r < n; r++)
            for (int j = 0; j < u; j++)
                db[j] += node->grad[r * u + j];
    }
    if (x->grad)
        kd_gemm(false, true, (int)n, k, u, 1.0f, node->grad, u, kd_param_data(m, node, 0), u,
                kd_grad_assign(x) ? 0.0f : 1.0f, x->grad, k);
}

const kd_layer_ops kd_ops_dense = {"dense", 1,    1,           dense_infer, NULL,
                                   NULL,    dense_forward, dense_backward};

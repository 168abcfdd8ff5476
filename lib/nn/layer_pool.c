/* Spatial families: max and average pooling, global average pooling and
 * zero padding.  Forward and backward side by side. */
#include "nn.h"

#include <string.h>

static kdens_status pool_infer(kdens_model *m, kd_node *node)
{
    kd_attrs *a = &node->a;
    const kd_node *x = kd_input(m, node, 0);
    if (a->sh == 0)
        a->sh = a->kh;
    if (a->sw == 0)
        a->sw = a->kw;
    if (a->kh < 1 || a->kw < 1 || a->sh < 1 || a->sw < 1)
        return kd_fail(KDENS_E_SPEC, "pool '%s': size and stride must be >= 1", node->name);
    node->h = kd_resolve_padding(a->pad_mode, a->pad, x->h, a->kh, a->sh, &node->pt, &node->pb);
    node->w = kd_resolve_padding(a->pad_mode, a->pad + 2, x->w, a->kw, a->sw, &node->pl,
                                 &node->pr);
    node->c = x->c;
    return KDENS_OK;
}

static kd_pool_geom pool_geom(kdens_model *m, const kd_node *node, size_t n)
{
    const kd_node *x = kd_input(m, node, 0);
    kd_pool_geom g = {(int)n,     x->h,       x->w,       x->c,       node->h,  node->w,
                      node->a.kh, node->a.kw, node->a.sh, node->a.sw, node->pt, node->pl};
    return g;
}

/* The argmax indices, stored in the aux buffer as int32. */
static size_t maxpool_aux(const kdens_model *m, const kd_node *node, size_t n)
{
    (void)m;
    return n * kd_node_size(node);
}

static void maxpool_forward(kdens_model *m, kd_node *node, size_t n)
{
    kd_pool_geom g = pool_geom(m, node, n);
    kd_maxpool_forward(&g, kd_input(m, node, 0)->out, node->out, node->aux);
}

static void maxpool_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (!kd_grad_accumulate(x, n))
        return;
    kd_pool_geom g = pool_geom(m, node, n);
    kd_maxpool_backward(&g, node->grad, node->aux, n * kd_node_size(node), x->grad);
}

const kd_layer_ops kd_ops_maxpool = {"maxpool",       1,    1, pool_infer, maxpool_aux, NULL,
                                     maxpool_forward, maxpool_backward};

static void avgpool_forward(kdens_model *m, kd_node *node, size_t n)
{
    kd_pool_geom g = pool_geom(m, node, n);
    kd_avgpool_forward(&g, kd_input(m, node, 0)->out, node->out);
}

static void avgpool_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (!kd_grad_accumulate(x, n))
        return;
    kd_pool_geom g = pool_geom(m, node, n);
    kd_avgpool_backward(&g, node->grad, x->grad);
}

const kd_layer_ops kd_ops_avgpool = {"avgpool",       1,    1, pool_infer, NULL, NULL,
                                     avgpool_forward, avgpool_backward};

/* ---- global average pooling: H x W x C -> 1 x 1 x C ------------------------------ */

static kdens_status gap_infer(kdens_model *m, kd_node *node)
{
    node->h = node->w = 1;
    node->c = kd_input(m, node, 0)->c;
    return KDENS_OK;
}

static void gap_forward(kdens_model *m, kd_node *node, size_t n)
{
    const kd_node *x = kd_input(m, node, 0);
    size_t pix = (size_t)x->h * x->w;
    int c = x->c;
    float inv = 1.0f / (float)pix;
    for (size_t img = 0; img < n; img++) {
        float *y = node->out + img * c;
        const float *xi = x->out + img * pix * c;
        memset(y, 0, sizeof(float) * c);
        for (size_t p = 0; p < pix; p++)
            for (int ch = 0; ch < c; ch++)
                y[ch] += xi[p * c + ch];
        for (int ch = 0; ch < c; ch++)
            y[ch] *= inv;
    }
}

static void gap_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (!kd_grad_accumulate(x, n))
        return;
    size_t pix = (size_t)x->h * x->w;
    int c = x->c;
    float inv = 1.0f / (float)pix;
    for (size_t img = 0; img < n; img++) {
        const float *dy = node->grad + img * c;
        float *dx = x->grad + img * pix * c;
        for (size_t p = 0; p < pix; p++)
            for (int ch = 0; ch < c; ch++)
                dx[p * c + ch] += dy[ch] * inv;
    }
}

const kd_layer_ops kd_ops_gap = {"gap", 1, 1, gap_infer, NULL, NULL, gap_forward, gap_backward};

/* ---- zero padding ------------------------------------------------------------------------ */

static kdens_status zeropad_infer(kdens_model *m, kd_node *node)
{
    const kd_node *x = kd_input(m, node, 0);
    const int *p = node->a.pad;
    for (int i = 0; i < 4; i++)
        if (p[i] < 0)
            return kd_fail(KDENS_E_SPEC, "zeropad '%s': padding must be >= 0", node->name);
    node->pt = p[0];
    node->pb = p[1];
    node->pl = p[2];
    node->pr = p[3];
    node->h = x->h + p[0] + p[1];
    node->w = x->w + p[2] + p[3];
    node->c = x->c;
    return KDENS_OK;
}

static void zeropad_forward(kdens_model *m, kd_node *node, size_t n)
{
    const kd_node *x = kd_input(m, node, 0);
    int c = x->c;
    memset(node->out, 0, sizeof(float) * n * kd_node_size(node));
    for (size_t img = 0; img < n; img++)
        for (int y = 0; y < x->h; y++)
            memcpy(node->out + ((img * node->h + y + node->pt) * node->w + node->pl) * c,
                   x->out + (img * x->h + y) * x->w * c, sizeof(float) * x->w * c);
}

static void zeropad_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *x = kd_input(m, node, 0);
    if (!kd_grad_accumulate(x, n))
        return;
    size_t row = (size_t)x->w * x->c;
    for (size_t img = 0; img < n; img++)
        for (int y = 0; y < x->h; y++) {
            const float *src =
                node->grad + ((img * node->h + y + node->pt) * node->w + node->pl) * x->c;
            float *dst = x->grad + (img * x->h + y) * row;
            for (size_t i = 0; i < row; i++)
                dst[i] += src[i];
        }
}

const kd_layer_ops kd_ops_zeropad = {"zeropad",       1,    1, zeropad_infer, NULL, NULL,
                                     zeropad_forward, zeropad_backward};

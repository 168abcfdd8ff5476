/* Structural families: flatten, add (residual), concatenate (channels) and
 * multiply (element-wise, or squeeze-and-excitation scaling by a 1x1xC
 * tensor).  Forward and backward side by side. */
#include "nn.h"

#include <string.h>

/* ---- flatten: H x W x C -> 1 x 1 x HWC (NHWC memory is already flat) --------- */

static kdens_status flatten_infer(kdens_model *m, kd_node *node)
{
    node->h = node->w = 1;
    node->c = (int)kd_node_size(kd_input(m, node, 0));
    return KDENS_OK;
}

static void flatten_forward(kdens_model *m, kd_node *node, size_t n)
{
    memcpy(node->out, kd_input(m, node, 0)->out, sizeof(float) * n * kd_node_size(node));
}

static void add_into(float *dst, const float *src, size_t count)
{
    for (size_t i = 0; i < count; i++)
        dst[i] += src[i];
}

/* dst = src (assign) or dst += src, split over the threads. */
struct grad_job {
    float *dst;
    const float *a, *b;
    bool assign;
    bool relu; /* add: max(a + b, 0), fused with the ReLU that alone reads it */
};

static void grad_range(size_t begin, size_t end, void *arg)
{
    const struct grad_job *j = arg;
    if (j->assign)
        memcpy(j->dst + begin, j->a + begin, sizeof(float) * (end - begin));
    else
        for (size_t i = begin; i < end; i++)
            j->dst[i] += j->a[i];
}

static void pass_gradient(kd_node *x, const float *dy, size_t count)
{
    if (!x->grad)
        return;
    struct grad_job j = {x->grad, dy, NULL, kd_grad_assign(x), false};
    kd_parallel_for(count, 1 << 15, grad_range, &j);
}

static void flatten_backward(kdens_model *m, kd_node *node, size_t n)
{
    pass_gradient(kd_input(m, node, 0), node->grad, n * kd_node_size(node));
}

const kd_layer_ops kd_ops_flatten = {"flatten",       1,    1, flatten_infer, NULL, NULL,
                                     flatten_forward, flatten_backward};

/* ---- add ------------------------------------------------------------------------------ */

static kdens_status add_infer(kdens_model *m, kd_node *node)
{
    const kd_node *x = kd_input(m, node, 0);
    for (int i = 1; i < node->n_in; i++) {
        const kd_node *o = kd_input(m, node, i);
        if (o->h != x->h || o->w != x->w || o->c != x->c)
            return kd_fail(KDENS_E_SHAPE, "add '%s': input '%s' is %dx%dx%d but '%s' is %dx%dx%d",
                           node->name, o->name, o->h, o->w, o->c, x->name, x->h, x->w, x->c);
    }
    node->h = x->h;
    node->w = x->w;
    node->c = x->c;
    return KDENS_OK;
}

KD_CLONES static void sum_range(size_t begin, size_t end, void *arg)
{
    const struct grad_job *j = arg;
    if (j->relu) {
        for (size_t i = begin; i < end; i++) {
            float v = j->a[i] + j->b[i];
            j->dst[i] = v < 0 ? 0 : v;
        }
        return;
    }
    for (size_t i = begin; i < end; i++)
        j->dst[i] = j->a[i] + j->b[i];
}

/* Two inputs fused with the ReLU that alone reads the sum (kd_model_fuse):
 * max(a + b, 0) straight into the ReLU's buffer, as batch norm does. */
static void add_forward(kdens_model *m, kd_node *node, size_t n)
{
    size_t count = n * kd_node_size(node);
    bool fused = node->relu_into && !m->unfused;
    struct grad_job j = {fused ? m->nodes[node->relu_into].out : node->out,
                         kd_input(m, node, 0)->out, kd_input(m, node, 1)->out, true, fused};
    kd_parallel_for(count, 1 << 15, sum_range, &j);
    for (int i = 2; i < node->n_in; i++)
        add_into(node->out, kd_input(m, node, i)->out, count);
}

/* Fused with a ReLU (whose own backward then does nothing): the ReLU's
 * gradient, masked by its output, goes to both inputs in one pass. */
struct masked_job {
    const float *dy, *relu_y;
    float *dst[2];
    bool assign[2];
};

KD_CLONES static void masked_range(size_t begin, size_t end, void *arg)
{
    const struct masked_job *j = arg;
    const float *dy = j->dy, *relu_y = j->relu_y;
    for (int k = 0; k < 2; k++) {
        float *dst = j->dst[k];
        if (!dst)
            continue;
        if (j->assign[k])
            for (size_t i = begin; i < end; i++) {
                float d = dy[i], y = relu_y[i];
                dst[i] = y > 0 ? d : 0.0f;
            }
        else
            for (size_t i = begin; i < end; i++) {
                float d = dy[i], y = relu_y[i];
                dst[i] += y > 0 ? d : 0.0f;
            }
    }
}

static void add_backward(kdens_model *m, kd_node *node, size_t n)
{
    size_t count = n * kd_node_size(node);
    if (node->relu_into) {
        const kd_node *relu = &m->nodes[node->relu_into];
        struct masked_job j = {relu->grad, relu->out, {NULL, NULL}, {false, false}};
        for (int k = 0; k < 2; k++) {
            kd_node *x = kd_input(m, node, k);
            j.dst[k] = x->grad;
            j.assign[k] = x->grad && kd_grad_assign(x);
        }
        kd_parallel_for(count, 1 << 14, masked_range, &j);
        return;
    }
    for (int i = 0; i < node->n_in; i++)
        pass_gradient(kd_input(m, node, i), node->grad, count);
}

const kd_layer_ops kd_ops_add = {"add", 2, -1, add_infer, NULL, NULL, add_forward, add_backward};

/* ---- concatenate along channels ------------------------------------------------------------ */

static kdens_status concat_infer(kdens_model *m, kd_node *node)
{
    const kd_node *x = kd_input(m, node, 0);
    int c = 0;
    for (int i = 0; i < node->n_in; i++) {
        const kd_node *o = kd_input(m, node, i);
        if (o->h != x->h || o->w != x->w)
            return kd_fail(KDENS_E_SHAPE, "concat '%s': input '%s' is %dx%d but '%s' is %dx%d",
                           node->name, o->name, o->h, o->w, x->name, x->h, x->w);
        c += o->c;
    }
    node->h = x->h;
    node->w = x->w;
    node->c = c;
    return KDENS_OK;
}

static void concat_forward(kdens_model *m, kd_node *node, size_t n)
{
    size_t rows = n * node->h * node->w;
    int off = 0;
    for (int i = 0; i < node->n_in; i++) {
        const kd_node *x = kd_input(m, node, i);
        for (size_t r = 0; r < rows; r++)
            memcpy(node->out + r * node->c + off, x->out + r * x->c, sizeof(float) * x->c);
        off += x->c;
    }
}

static void concat_backward(kdens_model *m, kd_node *node, size_t n)
{
    size_t rows = n * node->h * node->w;
    int off = 0;
    for (int i = 0; i < node->n_in; i++) {
        kd_node *x = kd_input(m, node, i);
        if (kd_grad_accumulate(x, n))
            for (size_t r = 0; r < rows; r++)
                add_into(x->grad + r * x->c, node->grad + r * node->c + off, (size_t)x->c);
        off += x->c;
    }
}

const kd_layer_ops kd_ops_concat = {"concat", 2, -1, concat_infer, NULL, NULL, concat_forward,
                                    concat_backward};

/* ---- multiply: equal shapes, or one side 1x1xC broadcast over H x W ------------------------- */

static kdens_status multiply_infer(kdens_model *m, kd_node *node)
{
    const kd_node *a = kd_input(m, node, 0), *b = kd_input(m, node, 1);
    bool same = a->h == b->h && a->w == b->w && a->c == b->c;
    bool bcast_b = b->h == 1 && b->w == 1 && b->c == a->c;
    bool bcast_a = a->h == 1 && a->w == 1 && a->c == b->c;
    if (!same && !bcast_a && !bcast_b)
        return kd_fail(KDENS_E_SHAPE,
                       "multiply '%s': inputs %dx%dx%d and %dx%dx%d neither match nor broadcast",
                       node->name, a->h, a->w, a->c, b->h, b->w, b->c);
    const kd_node *big = bcast_a && !same ? b : a;
    node->h = big->h;
    node->w = big->w;
    node->c = big->c;
    return KDENS_OK;
}

/* Which input is the full tensor and which the (possibly broadcast) scale. */
static void multiply_roles(kdens_model *m, kd_node *node, kd_node **full, kd_node **scale)
{
    kd_node *a = kd_input(m, node, 0), *b = kd_input(m, node, 1);
    bool a_small = kd_node_size(a) < kd_node_size(b);
    *full = a_small ? b : a;
    *scale = a_small ? a : b;
}

/* Images are independent: split over the threads.  A broadcast scale is
 * applied pixel by pixel over its channel vector (no per-element modulo),
 * and its gradient summed over the pixels in order. */
struct multiply_job {
    const kd_node *node, *full, *scale;
};

/* Floats per image of the output, and of the scale (run): the whole image
 * (equal shapes) or one pixel's channels (broadcast over `pixels`). */
typedef struct multiply_shape {
    size_t per, pixels, run;
} multiply_shape;

static multiply_shape shape_of(const struct multiply_job *j)
{
    multiply_shape s;
    s.per = kd_node_size(j->node);
    s.pixels = kd_node_size(j->scale) == s.per ? 1 : s.per / (size_t)j->node->c;
    s.run = s.per / s.pixels;
    return s;
}

KD_CLONES static void multiply_forward_images(size_t begin, size_t end, void *arg)
{
    const struct multiply_job *j = arg;
    multiply_shape sh = shape_of(j);
    size_t per = sh.per, pixels = sh.pixels, run = sh.run;
    for (size_t img = begin; img < end; img++) {
        const float *f = j->full->out + img * per, *s = j->scale->out + img * run;
        float *y = j->node->out + img * per;
        for (size_t p = 0; p < pixels; p++)
            for (size_t i = 0; i < run; i++)
                y[p * run + i] = f[p * run + i] * s[i];
    }
}

KD_CLONES static void multiply_backward_images(size_t begin, size_t end, void *arg)
{
    const struct multiply_job *j = arg;
    multiply_shape sh = shape_of(j);
    size_t per = sh.per, pixels = sh.pixels, run = sh.run;
    for (size_t img = begin; img < end; img++) {
        const float *f = j->full->out + img * per, *s = j->scale->out + img * run;
        const float *dy = j->node->grad + img * per;
        if (j->full->grad) {
            float *df = j->full->grad + img * per;
            for (size_t p = 0; p < pixels; p++)
                for (size_t i = 0; i < run; i++)
                    df[p * run + i] += dy[p * run + i] * s[i];
        }
        if (j->scale->grad) {
            float *ds = j->scale->grad + img * run;
            for (size_t p = 0; p < pixels; p++)
                for (size_t i = 0; i < run; i++)
                    ds[i] += dy[p * run + i] * f[p * run + i];
        }
    }
}

static void multiply_forward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *full, *scale;
    multiply_roles(m, node, &full, &scale);
    struct multiply_job j = {node, full, scale};
    kd_parallel_for(n, 1, multiply_forward_images, &j);
}

static void multiply_backward(kdens_model *m, kd_node *node, size_t n)
{
    kd_node *full, *scale;
    multiply_roles(m, node, &full, &scale);
    kd_grad_accumulate(full, n);
    kd_grad_accumulate(scale, n);
    struct multiply_job j = {node, full, scale};
    kd_parallel_for(n, 1, multiply_backward_images, &j);
}

const kd_layer_ops kd_ops_multiply = {"multiply",       2,    2, multiply_infer, NULL, NULL,
                                      multiply_forward, multiply_backward};

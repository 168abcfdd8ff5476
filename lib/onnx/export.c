/* ONNX export: the model's layer DAG written as an ONNX graph (opset 13).
 *
 * libkdens computes in NHWC; ONNX's operators (Conv, pools, BatchNormalization)
 * are NCHW.  So the graph runs NCHW throughout: the weights are transposed
 * once here, and every value of the graph is either 4-D [N, C, H, W] or,
 * after a flatten or a dense layer, 2-D [N, F].  A 2-D value of libkdens is
 * flattened in NHWC order, so a flatten of a map larger than 1x1 first
 * transposes it back to NHWC ([N, H, W, C]) before ONNX's Flatten: then the
 * dense kernels are written unchanged (no permutation of their rows).
 *
 * The protobuf-c messages are built in an arena (every allocation listed,
 * freed together), packed once and written atomically.
 *
 * This library reads libkdens' internal structures (lib/nn/nn.h: the nodes,
 * their attributes and parameters) but calls only libkdens' public
 * functions: libkdens.so exports nothing else, and libkdens_onnx.so links
 * against it with -z defs.  Hence kdens_set_error for the messages and a
 * write of its own below (as kd_write_file_atomic: temp file, fsync,
 * rename, fsync of the folder). */
#include "../nn/nn.h"
#include "kdens_onnx.h"
#include "onnx.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OX_OPSET 13
#define OX_IR_VERSION 7 /* the IR version of opset 13 (ONNX 1.8) */
#define OX_MAX_ATTRS 6

/* The graph being written. */
typedef struct ox {
    void **blocks; /* the arena: every allocation, freed by ox_free */
    size_t n_blocks, cap_blocks;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    bool nomem;         /* an allocation failed: the graph is incomplete */
    const kdens_model *m;
    const char **value; /* per kdens node: the ONNX value holding its output */
    int *rank;          /* per kdens node: 4 (NCHW) or 2 ([N, F]) */
    int aux;            /* counter naming auxiliary values uniquely */
} ox;

/* ---- the arena ---------------------------------------------------------------- */

static bool ox_grow(void **array, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(*array, n * elem);
    if (!p)
        return false;
    *array = p;
    *cap = n;
    return true;
}

static void *ox_alloc(ox *g, size_t size)
{
    void *p = NULL;
    if (!g->nomem && ox_grow((void **)&g->blocks, &g->cap_blocks, g->n_blocks + 1,
                             sizeof(void *)))
        p = calloc(1, size ? size : 1);
    if (!p) {
        g->nomem = true;
        return NULL;
    }
    g->blocks[g->n_blocks++] = p;
    return p;
}

static char *ox_str(ox *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *ox_str(ox *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = len < 0 ? NULL : ox_alloc(g, (size_t)len + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void ox_free(ox *g)
{
    for (size_t i = 0; i < g->n_blocks; i++)
        free(g->blocks[i]);
    free(g->blocks);
    free(g->nodes);
    free(g->inits);
    free(g->value);
    free(g->rank);
}

/* ---- nodes, attributes, initializers --------------------------------------------- */

/* A node op(in...) -> out, named after the layer it belongs to. */
static Onnx__NodeProto *ox_node(ox *g, const char *op, const char *name, int n_in,
                                const char *const *in, const char *out)
{
    Onnx__NodeProto *n = ox_alloc(g, sizeof *n);
    char **ins = ox_alloc(g, sizeof(char *) * (size_t)n_in);
    char **outs = ox_alloc(g, sizeof(char *));
    Onnx__AttributeProto **attrs = ox_alloc(g, sizeof(*attrs) * OX_MAX_ATTRS);
    if (!n || !ins || !outs || !attrs || !out || !name ||
        !ox_grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(*g->nodes))) {
        g->nomem = true;
        return NULL;
    }
    onnx__node_proto__init(n);
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) {
            g->nomem = true;
            return NULL;
        }
        ins[i] = (char *)in[i];
    }
    outs[0] = (char *)out;
    n->n_input = (size_t)n_in;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    n->name = ox_str(g, "%s:%s:%d", name, op, g->aux++);
    n->op_type = (char *)op;
    n->attribute = attrs;
    g->nodes[g->n_nodes++] = n;
    return n;
}

static Onnx__AttributeProto *ox_attr(ox *g, Onnx__NodeProto *n, const char *name,
                                     Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = n ? ox_alloc(g, sizeof *a) : NULL;
    if (!a || n->n_attribute >= OX_MAX_ATTRS)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = true;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void ox_attr_i(ox *g, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = true;
        a->i = v;
    }
}

static void ox_attr_f(ox *g, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = true;
        a->f = v;
    }
}

static void ox_attr_ints(ox *g, Onnx__NodeProto *n, const char *name, int count,
                         const int64_t *v)
{
    Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *copy = ox_alloc(g, sizeof(int64_t) * (size_t)count);
    if (a && copy) {
        memcpy(copy, v, sizeof(int64_t) * (size_t)count);
        a->n_ints = (size_t)count;
        a->ints = copy;
    }
}

/* An initializer of ndim dims holding count values (float or int64), named
 * name; returns the name (NULL when out of memory). */
static const char *ox_tensor(ox *g, const char *name, int ndim, const int64_t *dims,
                             const void *data, size_t count, bool is_float)
{
    Onnx__TensorProto *t = ox_alloc(g, sizeof *t);
    int64_t *d = ox_alloc(g, sizeof(int64_t) * (size_t)ndim);
    size_t elem = is_float ? sizeof(float) : sizeof(int64_t);
    void *copy = ox_alloc(g, elem * count);
    if (!t || !d || !copy || !name ||
        !ox_grow((void **)&g->inits, &g->cap_inits, g->n_inits + 1, sizeof(*g->inits))) {
        g->nomem = true;
        return NULL;
    }
    onnx__tensor_proto__init(t);
    if (ndim > 0) /* a scalar has no dims (and may pass NULL) */
        memcpy(d, dims, sizeof(int64_t) * (size_t)ndim);
    memcpy(copy, data, elem * count);
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = true;
    t->name = (char *)name;
    if (is_float) {
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        t->n_float_data = count;
        t->float_data = copy;
    } else {
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        t->n_int64_data = count;
        t->int64_data = copy;
    }
    g->inits[g->n_inits++] = t;
    return name;
}

/* A float scalar constant. */
static const char *ox_scalar(ox *g, const char *layer, const char *what, float v)
{
    return ox_tensor(g, ox_str(g, "%s:%s:%d", layer, what, g->aux++), 0, NULL, &v, 1, true);
}

/* A per-channel constant broadcast against a value of the given rank:
 * [1, C, 1, 1] against NCHW, [C] against [N, C]. */
static const char *ox_channels(ox *g, const char *layer, const char *what, int rank, int c,
                               const float *v)
{
    int64_t dims4[4] = {1, c, 1, 1}, dims1[1] = {c};
    return ox_tensor(g, ox_str(g, "%s:%s", layer, what), rank == 4 ? 4 : 1,
                     rank == 4 ? dims4 : dims1, v, (size_t)c, true);
}

/* ---- values: NCHW or flat ----------------------------------------------------------- */

static const float *param_of(const kdens_model *m, const kd_node *node, int i)
{
    return m->weights + m->params[node->param[i]].offset;
}

/* A fresh value name for an auxiliary result of layer `name`. */
static const char *ox_value(ox *g, const char *name, const char *what)
{
    return ox_str(g, "%s:%s:%d", name, what, g->aux++);
}

/* The output of kdens node i as [N, F] in libkdens' (NHWC) order. */
static const char *as_flat(ox *g, int i)
{
    const kd_node *x = &g->m->nodes[i];
    const char *v = g->value[i];
    if (g->rank[i] == 2)
        return v;
    if (x->h > 1 || x->w > 1) { /* NHWC order first: the dense kernels' rows follow it */
        const char *t = ox_value(g, x->name, "nhwc");
        Onnx__NodeProto *n = ox_node(g, "Transpose", x->name, 1, &v, t);
        ox_attr_ints(g, n, "perm", 4, (const int64_t[]){0, 2, 3, 1});
        v = t;
    }
    const char *f = ox_value(g, x->name, "flat");
    ox_attr_i(g, ox_node(g, "Flatten", x->name, 1, &v, f), "axis", 1);
    return f;
}

/* The output of kdens node i as NCHW; a flat value is 1x1xF. */
static const char *as_nchw(ox *g, int i)
{
    const kd_node *x = &g->m->nodes[i];
    if (g->rank[i] == 4)
        return g->value[i];
    int64_t dims[1] = {4}, shape[4] = {0, x->c, 1, 1}; /* 0: keep the batch */
    const char *in[2] = {g->value[i],
                         ox_tensor(g, ox_value(g, x->name, "shape"), 1, dims, shape, 4, false)};
    const char *out = ox_value(g, x->name, "nchw");
    ox_node(g, "Reshape", x->name, 2, in, out);
    return out;
}

/* The inputs of a merging layer in one rank: NCHW when any is NCHW. */
static int merge_inputs(ox *g, const kd_node *node, const char **in)
{
    int rank = 2;
    for (int k = 0; k < node->n_in; k++)
        if (g->rank[node->in[k]] == 4)
            rank = 4;
    for (int k = 0; k < node->n_in; k++)
        in[k] = rank == 4 ? as_nchw(g, node->in[k]) : g->value[node->in[k]];
    return rank;
}

/* ---- the layers ---------------------------------------------------------------------- */

/* Conv's and the pools' window: kernel_shape, strides, pads (ONNX orders
 * pads as all the begins, then all the ends). */
static void window_attrs(ox *g, Onnx__NodeProto *n, const kd_node *node)
{
    ox_attr_ints(g, n, "kernel_shape", 2, (const int64_t[]){node->a.kh, node->a.kw});
    ox_attr_ints(g, n, "strides", 2, (const int64_t[]){node->a.sh, node->a.sw});
    ox_attr_ints(g, n, "pads", 4, (const int64_t[]){node->pt, node->pl, node->pb, node->pr});
}

/* libkdens' kernel is [kh, kw, cin/groups, cout] (HWIO); ONNX's [cout,
 * cin/groups, kh, kw] (OIHW), groups taking consecutive channels in both. */
static kdens_status emit_conv(ox *g, const kd_node *node, const char *out)
{
    const kd_param *p = &g->m->params[node->param[0]];
    int kh = p->shape[0], kw = p->shape[1], ci = p->shape[2], co = p->shape[3];
    float *w = malloc(sizeof(float) * p->count);
    if (!w)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory");
    const float *k = param_of(g->m, node, 0);
    for (int o = 0; o < co; o++)
        for (int i = 0; i < ci; i++)
            for (int y = 0; y < kh; y++)
                for (int x = 0; x < kw; x++)
                    w[(((size_t)o * ci + i) * kh + y) * kw + x] =
                        k[(((size_t)y * kw + x) * ci + i) * co + o];
    int64_t dims[4] = {co, ci, kh, kw};
    const char *in[3] = {as_nchw(g, node->in[0]),
                         ox_tensor(g, ox_str(g, "%s/kernel", node->name), 4, dims, w, p->count,
                                   true),
                         NULL};
    free(w);
    int64_t bdims[1] = {co};
    if (node->a.bias)
        in[2] = ox_tensor(g, ox_str(g, "%s/bias", node->name), 1, bdims,
                          param_of(g->m, node, 1), (size_t)co, true);
    Onnx__NodeProto *n = ox_node(g, "Conv", node->name, node->a.bias ? 3 : 2, in, out);
    window_attrs(g, n, node);
    if (node->a.dh != 1 || node->a.dw != 1) /* ONNX's default is 1: undilated files unchanged */
        ox_attr_ints(g, n, "dilations", 2, (const int64_t[]){node->a.dh, node->a.dw});
    ox_attr_i(g, n, "group", node->a.groups);
    return KDENS_OK;
}

/* y = flatten(x) W + b with W [F, units]: Gemm as is. */
static void emit_dense(ox *g, const kd_node *node, const char *out)
{
    const kd_param *p = &g->m->params[node->param[0]];
    int64_t dims[2] = {p->shape[0], p->shape[1]}, bdims[1] = {p->shape[1]};
    const char *in[3] = {as_flat(g, node->in[0]),
                         ox_tensor(g, ox_str(g, "%s/kernel", node->name), 2, dims,
                                   param_of(g->m, node, 0), p->count, true),
                         NULL};
    if (node->a.bias)
        in[2] = ox_tensor(g, ox_str(g, "%s/bias", node->name), 1, bdims,
                          param_of(g->m, node, 1), (size_t)p->shape[1], true);
    ox_node(g, "Gemm", node->name, node->a.bias ? 3 : 2, in, out);
}

/* Inference-mode batch normalisation with the moving statistics. */
static void emit_batchnorm(ox *g, const kd_node *node, const char *x, const char *out)
{
    static const char *const names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const char *in[5] = {x};
    int64_t dims[1] = {node->c};
    for (int i = 0; i < 4; i++)
        in[i + 1] = ox_tensor(g, ox_str(g, "%s/%s", node->name, names[i]), 1, dims,
                              param_of(g->m, node, i), (size_t)node->c, true);
    ox_attr_f(g, ox_node(g, "BatchNormalization", node->name, 5, in, out), "epsilon",
              node->a.eps);
}

/* relu6(x + 3) / 6 is ONNX's HardSigmoid with alpha 1/6, beta 1/2. */
static const char *hard_sigmoid(ox *g, const char *name, const char *x, const char *out)
{
    Onnx__NodeProto *n = ox_node(g, "HardSigmoid", name, 1, &x, out);
    ox_attr_f(g, n, "alpha", 1.0f / 6.0f);
    ox_attr_f(g, n, "beta", 0.5f);
    return out;
}

static void emit_act(ox *g, const kd_node *node, const char *x, const char *out)
{
    const char *name = node->name;
    switch (node->a.act) {
    case KD_ACT_RELU:
        ox_node(g, "Relu", name, 1, &x, out);
        break;
    case KD_ACT_RELU6: {
        const char *in[3] = {x, ox_scalar(g, name, "min", 0.0f), ox_scalar(g, name, "max", 6.0f)};
        ox_node(g, "Clip", name, 3, in, out);
        break;
    }
    case KD_ACT_SIGMOID:
        ox_node(g, "Sigmoid", name, 1, &x, out);
        break;
    case KD_ACT_HARD_SIGMOID:
        hard_sigmoid(g, name, x, out);
        break;
    case KD_ACT_SWISH: { /* x * sigmoid(x): HardSwish and Swish are not in opset 13 */
        const char *in[2] = {x, ox_value(g, name, "sigmoid")};
        ox_node(g, "Sigmoid", name, 1, &x, in[1]);
        ox_node(g, "Mul", name, 2, in, out);
        break;
    }
    case KD_ACT_HARD_SWISH: {
        const char *in[2] = {x, hard_sigmoid(g, name, x, ox_value(g, name, "hard_sigmoid"))};
        ox_node(g, "Mul", name, 2, in, out);
        break;
    }
    case KD_ACT_TANH:
        ox_node(g, "Tanh", name, 1, &x, out);
        break;
    case KD_ACT_SOFTMAX: /* over the channels: axis 1 in NCHW and in [N, F] */
        ox_attr_i(g, ox_node(g, "Softmax", name, 1, &x, out), "axis", 1);
        break;
    case KD_ACT_LOG: { /* ln(max(x, 1e-30)) */
        const char *in[2] = {x, ox_scalar(g, name, "floor", 1e-30f)};
        const char *floored = ox_value(g, name, "max");
        ox_node(g, "Max", name, 2, in, floored);
        ox_node(g, "Log", name, 1, &floored, out);
        break;
    }
    }
}

static void emit_pool(ox *g, const kd_node *node, const char *out)
{
    const char *x = as_nchw(g, node->in[0]);
    bool max = node->type == KD_L_MAXPOOL;
    Onnx__NodeProto *n = ox_node(g, max ? "MaxPool" : "AveragePool", node->name, 1, &x, out);
    window_attrs(g, n, node);
    if (!max) /* libkdens averages the cells inside the image only */
        ox_attr_i(g, n, "count_include_pad", 0);
}

static void emit_zeropad(ox *g, const kd_node *node, const char *out)
{
    int64_t pads[8] = {0, 0, node->pt, node->pl, 0, 0, node->pb, node->pr}, dims[1] = {8};
    const char *in[2] = {as_nchw(g, node->in[0]),
                         ox_tensor(g, ox_str(g, "%s:pads", node->name), 1, dims, pads, 8, false)};
    ox_node(g, "Pad", node->name, 2, in, out);
}

/* (x - mean) / max(sqrt(variance), 1e-7), as layer_norm.c: the reciprocal
 * computed here in float, as libkdens does per value. */
static kdens_status emit_normalize(ox *g, const kd_node *node, const char *x, int rank,
                                   const char *out)
{
    const float *var = param_of(g->m, node, 1);
    float *inv = malloc(sizeof(float) * (size_t)node->c);
    if (!inv)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory");
    for (int c = 0; c < node->c; c++) {
        float s = sqrtf(var[c] > 0 ? var[c] : 0);
        inv[c] = 1.0f / (s > 1e-7f ? s : 1e-7f);
    }
    const char *sub[2] = {x, ox_channels(g, node->name, "mean", rank, node->c,
                                         param_of(g->m, node, 0))};
    const char *mul[2] = {ox_value(g, node->name, "centred"),
                          ox_channels(g, node->name, "inv_std", rank, node->c, inv)};
    free(inv);
    ox_node(g, "Sub", node->name, 2, sub, mul[0]);
    ox_node(g, "Mul", node->name, 2, mul, out);
    return KDENS_OK;
}

/* x * scale + offset: two operators, rounded as libkdens rounds. */
static void emit_affine(ox *g, const char *name, const char *x, const char *scale,
                        const char *offset, const char *out)
{
    const char *mul[2] = {x, scale};
    const char *add[2] = {ox_value(g, name, "scaled"), offset};
    ox_node(g, "Mul", name, 2, mul, add[0]);
    ox_node(g, "Add", name, 2, add, out);
}

static kdens_status emit_merge(ox *g, const kd_node *node, const char *out, int *rank)
{
    const char **in = malloc(sizeof(char *) * (size_t)node->n_in);
    if (!in)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory");
    *rank = merge_inputs(g, node, in);
    if (node->type == KD_L_CONCAT)
        ox_attr_i(g, ox_node(g, "Concat", node->name, node->n_in, in, out), "axis", 1);
    else if (node->type == KD_L_MULTIPLY) /* a 1x1xC side broadcasts in NCHW */
        ox_node(g, "Mul", node->name, 2, in, out);
    else
        ox_node(g, node->n_in == 2 ? "Add" : "Sum", node->name, node->n_in, in, out);
    free(in);
    return KDENS_OK;
}

/* One layer: its operators, its output's value name and rank. */
static kdens_status emit_layer(ox *g, int i)
{
    const kd_node *node = &g->m->nodes[i];
    /* a layer's value is named after it, unless that is a graph input's or output's name */
    bool taken = strcmp(node->name, "input") == 0 || strcmp(node->name, "probabilities") == 0;
    const char *out = ox_str(g, taken ? "%s:layer" : "%s", node->name);
    const char *x = node->n_in > 0 ? g->value[node->in[0]] : NULL;
    int rank = node->n_in > 0 ? g->rank[node->in[0]] : 4;
    kdens_status st = KDENS_OK;
    switch (node->type) {
    case KD_L_CONV:
        st = emit_conv(g, node, out);
        rank = 4;
        break;
    case KD_L_DENSE:
        emit_dense(g, node, out);
        rank = 2;
        break;
    case KD_L_BATCHNORM:
        emit_batchnorm(g, node, x, out);
        break;
    case KD_L_ACT:
        emit_act(g, node, x, out);
        break;
    case KD_L_MAXPOOL:
    case KD_L_AVGPOOL:
        emit_pool(g, node, out);
        rank = 4;
        break;
    case KD_L_GAP:
        x = as_nchw(g, node->in[0]);
        ox_node(g, "GlobalAveragePool", node->name, 1, &x, out);
        rank = 4;
        break;
    case KD_L_ZEROPAD:
        emit_zeropad(g, node, out);
        rank = 4;
        break;
    case KD_L_FLATTEN:
        x = as_flat(g, node->in[0]);
        ox_node(g, "Identity", node->name, 1, &x, out);
        rank = 2;
        break;
    case KD_L_DROPOUT: /* inference: the identity */
        ox_node(g, "Identity", node->name, 1, &x, out);
        break;
    case KD_L_ADD:
    case KD_L_CONCAT:
    case KD_L_MULTIPLY:
        st = emit_merge(g, node, out, &rank);
        break;
    case KD_L_RESCALE:
        emit_affine(g, node->name, x, ox_scalar(g, node->name, "scale", node->a.scale),
                    ox_scalar(g, node->name, "offset", node->a.offset), out);
        break;
    case KD_L_NORMALIZE:
        st = emit_normalize(g, node, x, rank, out);
        break;
    default:
        return kdens_set_error(KDENS_E_NOTFOUND,
                               "onnx export: layer '%s' (layer type %d) has no ONNX operator",
                               node->name, (int)node->type);
    }
    g->value[i] = out;
    g->rank[i] = rank;
    return st;
}

/* ---- the graph --------------------------------------------------------------------- */

/* A float tensor's type with the given dims; a dim of -1 is the free "batch". */
static Onnx__ValueInfoProto *ox_value_info(ox *g, const char *name, int ndim,
                                           const int64_t *dims)
{
    Onnx__ValueInfoProto *v = ox_alloc(g, sizeof *v);
    Onnx__TypeProto *t = ox_alloc(g, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ox_alloc(g, sizeof *tt);
    Onnx__TensorShapeProto *s = ox_alloc(g, sizeof *s);
    Onnx__TensorShapeProto__Dimension **d = ox_alloc(g, sizeof(*d) * (size_t)ndim);
    if (!v || !t || !tt || !s || !d)
        return NULL;
    for (int i = 0; i < ndim; i++) {
        if (!(d[i] = ox_alloc(g, sizeof **d)))
            return NULL;
        onnx__tensor_shape_proto__dimension__init(d[i]);
        if (dims[i] < 0) {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[i]->dim_param = "batch";
        } else {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[i]->dim_value = dims[i];
        }
    }
    onnx__tensor_shape_proto__init(s);
    s->n_dim = (size_t)ndim;
    s->dim = d;
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = true;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = s;
    onnx__type_proto__init(t);
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    v->type = t;
    return v;
}

/* Every layer up to the logits, then the softmax that predict applies
 * (a final softmax layer of the model is that softmax: not written twice). */
static kdens_status emit_graph(ox *g)
{
    const kdens_model *m = g->m;
    const kd_node *in = &m->nodes[0];
    g->value[0] = ox_str(g, "%s:scaled", in->name);
    g->rank[0] = 4;
    emit_affine(g, in->name, "input", ox_channels(g, in->name, "in_scale", 4, m->in_c, m->in_scale),
                ox_channels(g, in->name, "in_offset", 4, m->in_c, m->in_offset), g->value[0]);
    int last = m->logits_node == m->n_nodes - 1 ? m->n_nodes : m->n_nodes - 1;
    for (int i = 1; i < last; i++) {
        kdens_status st = emit_layer(g, i);
        if (st != KDENS_OK)
            return st;
    }
    const char *logits = as_flat(g, m->logits_node);
    ox_attr_i(g, ox_node(g, "Softmax", "output", 1, &logits, "probabilities"), "axis", 1);
    return KDENS_OK;
}

/* ---- the file ------------------------------------------------------------------------ */

static kdens_status write_all(int fd, const char *path, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return kdens_set_error(KDENS_E_IO, "%s: write failed: %s", path, strerror(errno));
        data += w;
        len -= (size_t)w;
    }
    return KDENS_OK;
}

/* The rename made durable: the folder's entry synced too (best effort). */
static void fsync_folder(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* A temporary file beside path, synced, then renamed over it: the previous
 * file survives any failure and a reader never sees half a model. */
static kdens_status write_atomic(const char *path, const uint8_t *data, size_t len)
{
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    char *tmp = malloc(n);
    if (!tmp)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kdens_status st = kdens_set_error(KDENS_E_IO, "%s: cannot create a temporary file: %s",
                                          path, strerror(errno));
        free(tmp);
        return st;
    }
    kdens_status st = write_all(fd, path, data, len);
    if (st == KDENS_OK && fsync(fd) != 0)
        st = kdens_set_error(KDENS_E_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && st == KDENS_OK)
        st = kdens_set_error(KDENS_E_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == KDENS_OK && (chmod(tmp, 0644), rename(tmp, path) != 0))
        st = kdens_set_error(KDENS_E_IO, "%s: rename failed: %s", path, strerror(errno));
    if (st != KDENS_OK)
        unlink(tmp);
    else
        fsync_folder(path);
    free(tmp);
    return st;
}

static kdens_status ox_pack_write(ox *g, const char *path)
{
    const kdens_model *m = g->m;
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__ValueInfoProto *inputs[1] = {
        ox_value_info(g, "input", 4, (const int64_t[]){-1, m->in_c, m->in_h, m->in_w})};
    Onnx__ValueInfoProto *outputs[1] = {
        ox_value_info(g, "probabilities", 2, (const int64_t[]){-1, m->classes})};
    if (g->nomem || !inputs[0] || !outputs[0])
        return kdens_set_error(KDENS_E_NOMEM, "onnx export: out of memory");
    graph.name = "kdens";
    graph.n_node = g->n_nodes;
    graph.node = g->nodes;
    graph.n_initializer = g->n_inits;
    graph.initializer = g->inits;
    graph.n_input = 1;
    graph.input = inputs;
    graph.n_output = 1;
    graph.output = outputs;
    opset.domain = "";
    opset.has_version = true;
    opset.version = OX_OPSET;
    model.has_ir_version = true;
    model.ir_version = OX_IR_VERSION;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = "libkdens";
    model.producer_version = (char *)kdens_version();
    model.graph = &graph;
    size_t len = onnx__model_proto__get_packed_size(&model);
    uint8_t *bytes = malloc(len ? len : 1);
    if (!bytes)
        return kdens_set_error(KDENS_E_NOMEM, "onnx export: out of memory (%zu bytes)", len);
    onnx__model_proto__pack(&model, bytes);
    kdens_status st = write_atomic(path, bytes, len);
    free(bytes);
    return st;
}

kdens_status kdens_onnx_export(const kdens_model *m, const char *path)
{
    if (!m || !path)
        return kdens_set_error(KDENS_E_ARG, "kdens_onnx_export: NULL argument");
    if (kdens_model_is_quantized(m)) /* its folded layers have no float weights left */
        return kdens_set_error(KDENS_E_STATE, "onnx export: the model is quantised to int8; "
                                              "export the float model");
    ox g = {0};
    g.m = m;
    g.value = calloc((size_t)m->n_nodes, sizeof(*g.value));
    g.rank = calloc((size_t)m->n_nodes, sizeof(*g.rank));
    kdens_status st = g.value && g.rank ? emit_graph(&g) : KDENS_E_NOMEM;
    if (st == KDENS_OK && g.nomem)
        st = KDENS_E_NOMEM;
    if (st == KDENS_E_NOMEM)
        st = kdens_set_error(KDENS_E_NOMEM, "onnx export: out of memory");
    if (st == KDENS_OK)
        st = ox_pack_write(&g, path);
    ox_free(&g);
    return st;
}

/* Post-training int8 quantisation of a model and the inference of the result.
 *
 * Which layers run in int8: every convolution of one group and every dense
 * layer, each with the batch norm that alone reads it folded into its
 * weights and bias, and the ReLU or ReLU6 that alone reads the result folded
 * into its requantisation (lib/tensor/qconv.h); and every two-input add
 * (residual sums), with the ReLU or ReLU6 that alone reads it; and max
 * pooling and flatten whose input comes from an int8 layer, on u8 values.
 * Everything else -- concatenations, average pooling, depthwise and grouped
 * convolutions, batch norms that follow no convolution, sigmoid, swish, hard-swish, softmax,
 * squeeze-excite products -- runs in float between them: an int8 layer
 * quantises its input tensor (once per forward, however many int8 layers
 * read it) and writes its output as u8 for int8 readers and as float for
 * the others.  The choice follows from the graph alone (derive()), so a
 * file stores only the numbers and the loader checks them against the
 * architecture.
 *
 * Weights: symmetric per output channel, scale max|w| / 127.  Activations:
 * u8 with a zero point (the range must hold 0 so that zero padding is
 * exact), ranges calibrated on sample images by the float model:
 * min-max, or the 0.01th and 99.99th percentiles (the tool's default: the
 * few largest activations of a ReLU network would otherwise stretch the
 * step of every other value, the more so the more images are seen;
 * measured in docs/benchmarks.md). */
#include "nn.h"

#include "../tensor/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROLE_FLOAT = -1, ROLE_ABSORBED = -2 };

/* The kinds of int8 layer: with weights (convolution, dense), a residual
 * add, and the layers that pass u8 values through unchanged in scale
 * (max pooling: quantisation preserves order; flatten: a reshape), whose
 * output shares its input's scale and zero point (alias[]). */
typedef enum qkind { QL_CONV, QL_ADD, QL_MAXPOOL, QL_FLATTEN } qkind;

/* The percentile method's tails and histogram. */
#define PCT_TAIL 1e-4
#define PCT_BINS 2048

typedef struct kd_qlayer {
    int node, out, bn; /* the conv, dense or add node; the node it stands for; the batch norm */
    qkind kind;        /* all but QL_CONV have no weights (k = n = 0) */
    kd_qact act;
    int k, n;
    int8_t *wq;      /* [K][N] */
    float *w_scale;  /* N */
    float *bias;     /* N, the batch norm folded in */
    bool write_u8, write_float;
    kd_qconv conv;
    kd_qadd add;
} kd_qlayer;

struct kd_qmodel {
    int n_layers;
    kd_qlayer *layers;
    int *role;           /* per node: ROLE_*, or the index of the layer run there */
    bool *float_out;     /* per node: its float output is written */
    float *scale;        /* per node: the scale of its u8 form (0: none) */
    float *inv_scale;
    int *zp;
    int *alias;          /* per node: the node whose scale and zero point it shares, or -1 */
    uint8_t **u8;        /* per node with a u8 form: buffers for the planned batch */
    bool *fresh;         /* the u8 form holds this forward's values */
    uint8_t *pad;         /* the padded input of an int8 layer */
    char method[16];
};

/* ---- the plan: which nodes run in int8, derived from the graph ---------------------- */

static int sole_reader(const kdens_model *m, int j)
{
    int reader = -1, count = 0;
    for (int k = j + 1; k < m->n_nodes; k++)
        for (int r = 0; r < m->nodes[k].n_in; r++)
            if (m->nodes[k].in[r] == j) {
                reader = k;
                count++;
            }
    return count == 1 ? reader : -1;
}

/* Sums of K products of at most 255 x 128 stay exact in int32 up to
 * K = 65,793: layers with more inputs per output stay float. */
#define QUANT_MAX_K 65536

static bool quantisable(const kdens_model *m, const kd_node *node)
{
    if (node->type == KD_L_ADD)
        return node->n_in == 2;
    if (node->type == KD_L_CONV)
        return node->a.groups == 1 && node->a.dh == 1 && node->a.dw == 1 &&
               node->a.kh * node->a.kw * node->cin <= QUANT_MAX_K; /* dilated: float */
    return node->type == KD_L_DENSE && kd_node_size(&m->nodes[node->in[0]]) <= QUANT_MAX_K;
}

static void free_layers(kd_qlayer *layers, int n)
{
    for (int i = 0; i < n; i++) {
        free(layers[i].wq);
        free(layers[i].w_scale);
        free(layers[i].bias);
        kd_qconv_release(&layers[i].conv);
    }
    free(layers);
}

void kd_qmodel_free(kd_qmodel *q)
{
    if (!q)
        return;
    free_layers(q->layers, q->n_layers);
    free(q->role);
    free(q->float_out);
    free(q->scale);
    free(q->inv_scale);
    free(q->zp);
    free(q->alias);
    free(q->u8);
    free(q->fresh);
    free(q);
}

/* The int8 layers of m (node, out, bn, act, K, N) and the role of every
 * node; scale[] marks (1) the nodes whose u8 form some int8 layer reads. */
static kdens_status derive(const kdens_model *m, kd_qmodel **out)
{
    kd_qmodel *q = calloc(1, sizeof *q);
    size_t nn = (size_t)m->n_nodes;
    if (q) {
        q->layers = calloc(nn, sizeof *q->layers);
        q->role = malloc(sizeof(int) * nn);
        q->float_out = calloc(nn, sizeof(bool));
        q->scale = calloc(nn, sizeof(float));
        q->inv_scale = calloc(nn, sizeof(float));
        q->zp = calloc(nn, sizeof(int));
        q->alias = malloc(sizeof(int) * nn);
        q->u8 = calloc(nn, sizeof(uint8_t *));
        q->fresh = calloc(nn, sizeof(bool)); /* also marks, here, the outputs of int8 layers */
    }
    if (!q || !q->layers || !q->role || !q->float_out || !q->scale || !q->inv_scale || !q->zp ||
        !q->alias || !q->u8 || !q->fresh) {
        kd_qmodel_free(q);
        return kd_fail(KDENS_E_NOMEM, "out of memory planning an int8 model");
    }
    for (int i = 0; i < m->n_nodes; i++) {
        q->role[i] = ROLE_FLOAT;
        q->alias[i] = -1;
    }
    bool *is_u8 = q->fresh; /* the output of an int8 layer */
    for (int i = 1; i < m->n_nodes; i++) {
        const kd_node *node = &m->nodes[i];
        if (q->role[i] != ROLE_FLOAT)
            continue;
        bool pass = (node->type == KD_L_MAXPOOL || node->type == KD_L_FLATTEN) &&
                    is_u8[node->in[0]];
        if (!pass && !quantisable(m, node))
            continue;
        kd_qlayer *L = &q->layers[q->n_layers];
        L->node = L->out = i;
        L->bn = -1;
        L->act = KD_QACT_NONE;
        L->kind = node->type == KD_L_ADD       ? QL_ADD
                  : node->type == KD_L_MAXPOOL ? QL_MAXPOOL
                  : node->type == KD_L_FLATTEN ? QL_FLATTEN
                                               : QL_CONV;
        L->k = node->type == KD_L_CONV
                   ? node->a.kh * node->a.kw * node->cin
                   : (int)kd_node_size(&m->nodes[node->in[0]]);
        L->n = node->c;
        if (L->kind != QL_CONV)
            L->k = L->n = 0;
        if (pass) { /* the input's scale, a u8 form always */
            q->alias[i] = node->in[0];
            q->scale[i] = 1.0f;
        }
        int r;
        if (L->kind == QL_CONV && L->out != m->logits_node && (r = sole_reader(m, L->out)) >= 0 &&
            m->nodes[r].type == KD_L_BATCHNORM) {
            L->out = L->bn = r;
            q->role[r] = ROLE_ABSORBED;
        }
        if (!pass && L->out != m->logits_node && (r = sole_reader(m, L->out)) >= 0 &&
            m->nodes[r].type == KD_L_ACT &&
            (m->nodes[r].a.act == KD_ACT_RELU || m->nodes[r].a.act == KD_ACT_RELU6)) {
            L->act = m->nodes[r].a.act == KD_ACT_RELU ? KD_QACT_RELU : KD_QACT_RELU6;
            L->out = r;
            q->role[r] = ROLE_ABSORBED;
        }
        q->role[i] = q->n_layers++;
        for (int k = 0; k < node->n_in; k++)
            q->scale[node->in[k]] = 1.0f;
        is_u8[L->out] = true;
    }
    memset(is_u8, 0, nn * sizeof(bool));
    /* Who needs which form of a layer's output. */
    for (int i = 0; i < m->n_nodes; i++)
        q->float_out[i] = q->role[i] == ROLE_FLOAT;
    for (int l = 0; l < q->n_layers; l++) {
        kd_qlayer *L = &q->layers[l];
        L->write_u8 = q->scale[L->out] != 0;
        L->write_float = L->out == m->logits_node || L->out == m->n_nodes - 1;
        for (int k = L->out + 1; k < m->n_nodes; k++)
            for (int r = 0; r < m->nodes[k].n_in; r++)
                if (m->nodes[k].in[r] == L->out && q->role[k] == ROLE_FLOAT)
                    L->write_float = true;
        q->float_out[L->out] = L->write_float;
    }
    *out = q;
    return KDENS_OK;
}

/* Set the u8 form of node i from a range [lo, hi]. */
static void set_range(kd_qmodel *q, int i, double lo, double hi)
{
    lo = fmin(lo, 0.0);
    hi = fmax(hi, 0.0);
    double s = (hi - lo) / 255.0;
    if (!(s > 1e-30) || !isfinite(s)) {
        q->scale[i] = 1.0f;
        q->zp[i] = 0;
    } else {
        q->scale[i] = (float)s;
        q->zp[i] = (int)fmin(255.0, fmax(0.0, floor(-lo / s + 0.5)));
    }
    q->inv_scale[i] = 1.0f / q->scale[i];
}

/* The u8 forms that share another's scale, in node order (an alias is an
 * earlier node). */
static void propagate_aliases(const kdens_model *m, kd_qmodel *q)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (q->alias[i] >= 0) {
            q->scale[i] = q->scale[q->alias[i]];
            q->inv_scale[i] = q->inv_scale[q->alias[i]];
            q->zp[i] = q->zp[q->alias[i]];
        }
}

/* Build every layer's kernel from its stored numbers and the u8 forms. */
static kdens_status prepare(const kdens_model *m, kd_qmodel *q)
{
    for (int l = 0; l < q->n_layers; l++) {
        kd_qlayer *L = &q->layers[l];
        const kd_node *node = &m->nodes[L->node];
        const kd_node *x = &m->nodes[node->in[0]];
        if (L->kind == QL_MAXPOOL || L->kind == QL_FLATTEN)
            continue;
        if (L->kind == QL_ADD) {
            int a = node->in[0], b = node->in[1];
            kd_qadd_init(&L->add, q->scale[a], q->zp[a], q->scale[b], q->zp[b],
                         L->write_u8 ? q->scale[L->out] : 0.0f, L->write_u8 ? q->zp[L->out] : 0,
                         L->act);
            continue;
        }
        kd_conv_geom g = {0, 1, 1, L->k, 1, 1, L->n, 1, 1, 1, 1, 0, 0, 1, 1, 1};
        if (node->type == KD_L_CONV) {
            kd_conv_geom c = {0,          x->h,       x->w,       x->c,     node->h,
                              node->w,    node->c,    node->a.kh, node->a.kw, node->a.sh,
                              node->a.sw, node->pt,   node->pl,   1,        1,
                              1};
            g = c;
        }
        kd_qconv_release(&L->conv);
        kdens_status st = kd_qconv_init(&L->conv, &g, L->wq, L->w_scale, L->bias,
                                        q->scale[node->in[0]], q->zp[node->in[0]],
                                        L->write_u8 ? q->scale[L->out] : 0.0f,
                                        L->write_u8 ? q->zp[L->out] : 0, L->act);
        if (st != KDENS_OK)
            return st;
    }
    return KDENS_OK;
}

/* ---- weights: batch norm folded, per-channel symmetric int8 ------------------------- */

static kdens_status quantise_weights(kdens_model *m, kd_qlayer *L)
{
    const kd_node *node = &m->nodes[L->node];
    const float *w = kd_param_data(m, node, 0);
    const float *b = node->a.bias ? kd_param_data(m, node, 1) : NULL;
    size_t kn = (size_t)L->k * L->n;
    L->wq = malloc(kn ? kn : 1);
    L->w_scale = malloc(sizeof(float) * (size_t)L->n);
    L->bias = malloc(sizeof(float) * (size_t)L->n);
    double *fold = malloc(sizeof(double) * (size_t)L->n * 2);
    if (!L->wq || !L->w_scale || !L->bias || !fold) {
        free(fold);
        return kd_fail(KDENS_E_NOMEM, "out of memory quantising '%s'", node->name);
    }
    double *mul = fold, *add = fold + L->n;
    for (int j = 0; j < L->n; j++) {
        mul[j] = 1.0;
        add[j] = b ? b[j] : 0.0;
    }
    if (L->bn >= 0) { /* y = gamma (x - mean) / sqrt(var + eps) + beta */
        const kd_node *bn = &m->nodes[L->bn];
        const float *gamma = kd_param_data(m, bn, 0), *beta = kd_param_data(m, bn, 1),
                    *mean = kd_param_data(m, bn, 2), *var = kd_param_data(m, bn, 3);
        for (int j = 0; j < L->n; j++) {
            mul[j] = gamma[j] / sqrt((double)var[j] + bn->a.eps);
            add[j] = (add[j] - mean[j]) * mul[j] + beta[j];
        }
    }
    kdens_status st = KDENS_OK;
    for (int j = 0; j < L->n && st == KDENS_OK; j++) {
        double amax = 0;
        for (int k = 0; k < L->k; k++) {
            double v = fabs(w[(size_t)k * L->n + j] * mul[j]);
            amax = v > amax || v != v ? v : amax; /* a NaN stays */
        }
        double s = amax > 0 ? amax / 127.0 : 1.0;
        if (!isfinite(amax) || !isfinite(add[j]) || !isfinite(s) || (float)s <= 0 ||
            !isfinite((float)add[j])) {
            st = kd_fail(KDENS_E_NUMERIC, "layer '%s': weights or batch-norm statistics are "
                                          "not finite; it cannot be quantised", node->name);
            break;
        }
        L->w_scale[j] = (float)s;
        L->bias[j] = (float)add[j];
        for (int k = 0; k < L->k; k++) {
            double v = floor(w[(size_t)k * L->n + j] * mul[j] / s + 0.5);
            L->wq[(size_t)k * L->n + j] = (int8_t)fmax(-127.0, fmin(127.0, v));
        }
    }
    free(fold);
    return st;
}

/* ---- calibration -------------------------------------------------------------------- */

typedef struct calib {
    double *lo, *hi;       /* per node */
    uint64_t *hist;        /* per node with a u8 form: PCT_BINS counts over [lo, hi] */
    int *slot;
} calib;

static kdens_status forward_images(kdens_model *m, const uint8_t *images, size_t n, calib *c,
                                   int pass)
{
    size_t chunk = KD_MIN(n, (size_t)64), in_size = kd_node_size(&m->nodes[0]);
    kdens_status st = kd_model_plan(m, chunk, false);
    if (st != KDENS_OK)
        return st;
    float *x = kd_alloc_aligned(sizeof(float) * chunk * in_size);
    if (!x)
        return kd_fail(KDENS_E_NOMEM, "out of memory calibrating");
    bool was_training = m->training;
    m->training = false;
    for (size_t first = 0; first < n; first += chunk) {
        size_t nc = KD_MIN(chunk, n - first);
        kd_model_scale_u8(m, images + first * in_size, nc, x);
        kd_model_forward(m, x, nc);
        for (int i = 0; i < m->n_nodes; i++) {
            if (c->slot[i] < 0)
                continue;
            const float *v = m->nodes[i].out;
            size_t count = nc * kd_node_size(&m->nodes[i]);
            if (pass == 0) {
                double lo = c->lo[i], hi = c->hi[i];
                bool finite = true;
                for (size_t e = 0; e < count; e++) {
                    lo = v[e] < lo ? v[e] : lo;
                    hi = v[e] > hi ? v[e] : hi;
                    finite &= v[e] - v[e] == 0; /* false for NaN and infinities */
                }
                if (!finite)
                    hi = INFINITY; /* refused by calibrate() */
                c->lo[i] = lo;
                c->hi[i] = hi;
            } else {
                uint64_t *h = c->hist + (size_t)c->slot[i] * PCT_BINS;
                double lo = c->lo[i], width = (c->hi[i] - lo) / PCT_BINS;
                for (size_t e = 0; e < count; e++) {
                    double b = width > 0 ? (v[e] - lo) / width : 0;
                    int bin = b < 0 ? 0 : b >= PCT_BINS - 1 ? PCT_BINS - 1 : (int)b;
                    h[bin]++;
                }
            }
        }
    }
    m->training = was_training;
    m->have_forward = m->have_grads = false;
    kd_free_aligned(x);
    return KDENS_OK;
}

static kdens_status calibrate(kdens_model *m, const uint8_t *images, size_t n,
                              kdens_calibration method, kd_qmodel *q)
{
    size_t nn = (size_t)m->n_nodes;
    calib c = {0};
    c.lo = malloc(sizeof(double) * nn);
    c.hi = malloc(sizeof(double) * nn);
    c.slot = malloc(sizeof(int) * nn);
    int slots = 0;
    if (c.slot)
        for (size_t i = 0; i < nn; i++)
            c.slot[i] = q->scale[i] != 0 && q->alias[i] < 0 ? slots++ : -1;
    kdens_status st = KDENS_OK;
    if (!c.lo || !c.hi || !c.slot)
        st = kd_fail(KDENS_E_NOMEM, "out of memory calibrating");
    for (size_t i = 0; st == KDENS_OK && i < nn; i++) {
        c.lo[i] = INFINITY;
        c.hi[i] = -INFINITY;
    }
    if (st == KDENS_OK)
        st = forward_images(m, images, n, &c, 0);
    for (size_t i = 0; st == KDENS_OK && i < nn; i++)
        if (c.slot[i] >= 0 && !(isfinite(c.lo[i]) && isfinite(c.hi[i])))
            st = kd_fail(KDENS_E_NUMERIC, "the output of layer '%s' is not finite on the "
                                          "calibration images", m->nodes[i].name);
    if (st == KDENS_OK && method == KDENS_CALIB_PERCENTILE) {
        c.hist = calloc((size_t)(slots ? slots : 1) * PCT_BINS, sizeof(uint64_t));
        st = c.hist ? forward_images(m, images, n, &c, 1)
                    : kd_fail(KDENS_E_NOMEM, "out of memory calibrating");
        for (size_t i = 0; st == KDENS_OK && i < nn; i++) {
            if (c.slot[i] < 0)
                continue;
            const uint64_t *h = c.hist + (size_t)c.slot[i] * PCT_BINS;
            uint64_t total = 0;
            for (int b = 0; b < PCT_BINS; b++)
                total += h[b];
            uint64_t tail = (uint64_t)((double)total * PCT_TAIL);
            double width = (c.hi[i] - c.lo[i]) / PCT_BINS;
            int b_lo = 0, b_hi = PCT_BINS - 1;
            for (uint64_t acc = 0; b_lo < PCT_BINS - 1 && (acc += h[b_lo]) <= tail;)
                b_lo++;
            for (uint64_t acc = 0; b_hi > 0 && (acc += h[b_hi]) <= tail;)
                b_hi--;
            double lo = c.lo[i] + width * b_lo, hi = c.lo[i] + width * (b_hi + 1);
            /* a range that starts at 0 (after a ReLU) keeps 0 exact */
            c.lo[i] = c.lo[i] >= 0 ? c.lo[i] : lo;
            c.hi[i] = hi < c.hi[i] ? hi : c.hi[i];
        }
    }
    for (size_t i = 0; st == KDENS_OK && i < nn; i++)
        if (c.slot[i] >= 0)
            set_range(q, (int)i, c.lo[i], c.hi[i]);
    if (st == KDENS_OK)
        propagate_aliases(m, q);
    free(c.lo);
    free(c.hi);
    free(c.slot);
    free(c.hist);
    return st;
}

/* ---- the public calls --------------------------------------------------------------- */

static kdens_status copy_model(kdens_model *m, kdens_model **out)
{
    kd_buf spec = {0};
    kd_spec_write(m, &spec);
    kd_buf_put(&spec, "", 1);
    if (spec.failed) {
        kd_buf_free(&spec);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    kdens_model *c = NULL;
    kdens_status st =
        kdens_model_from_spec(spec.data, m->in_h, m->in_w, m->in_c, m->classes, m->seed, &c);
    kd_buf_free(&spec);
    if (st == KDENS_OK)
        st = kd_model_copy_params(c, m, NULL);
    if (st == KDENS_OK)
        st = kd_model_copy_meta(c, m);
    if (st != KDENS_OK) {
        kdens_model_free(c);
        return st;
    }
    *out = c;
    return KDENS_OK;
}

const char *kd_calibration_name(kdens_calibration method)
{
    return method == KDENS_CALIB_MINMAX ? "minmax" : "percentile";
}

kdens_status kdens_model_quantize_u8(kdens_model *m, const uint8_t *images, size_t n,
                                     kdens_calibration method, kdens_model **out)
{
    if (!m || !images || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (n == 0)
        return kd_fail(KDENS_E_ARG, "quantisation needs at least one calibration image");
    if (method != KDENS_CALIB_MINMAX && method != KDENS_CALIB_PERCENTILE)
        return kd_fail(KDENS_E_ARG, "unknown calibration method %d", (int)method);
    if (m->q)
        return kd_fail(KDENS_E_STATE, "the model is already quantised");
    kd_qmodel *q;
    kdens_status st = derive(m, &q);
    if (st != KDENS_OK)
        return st;
    kdens_model *c = NULL;
    st = calibrate(m, images, n, method, q);
    for (int l = 0; st == KDENS_OK && l < q->n_layers; l++)
        if (q->layers[l].kind == QL_CONV)
            st = quantise_weights(m, &q->layers[l]);
    if (st == KDENS_OK)
        st = copy_model(m, &c);
    if (st == KDENS_OK)
        st = prepare(c, q);
    if (st == KDENS_OK) {
        char how[96];
        snprintf(how, sizeof how, "int8 %s %zu", kd_calibration_name(method), n);
        st = kdens_model_set_meta(c, "quantization", how);
    }
    if (st != KDENS_OK) {
        kd_qmodel_free(q);
        kdens_model_free(c);
        return st;
    }
    kd_model_release_buffers(c);
    c->q = q;
    *out = c;
    return KDENS_OK;
}

int kdens_model_is_quantized(const kdens_model *m) { return m && m->q ? 1 : 0; }

/* ---- inference ---------------------------------------------------------------------- */

bool kd_qmodel_float_out(const kdens_model *m, int node)
{
    return !m->q || m->q->float_out[node];
}

bool kd_qmodel_runs_float(const kdens_model *m, int node)
{
    return !m->q || m->q->role[node] == ROLE_FLOAT;
}

void kd_qmodel_release(kdens_model *m)
{
    kd_qmodel *q = m->q;
    for (int i = 0; i < m->n_nodes; i++) {
        kd_free_aligned(q->u8[i]);
        q->u8[i] = NULL;
    }
    kd_free_aligned(q->pad);
    q->pad = NULL;
}

kdens_status kd_qmodel_plan(kdens_model *m, size_t cap)
{
    kd_qmodel *q = m->q;
    size_t pad = 0;
    for (int l = 0; l < q->n_layers; l++)
        if (q->layers[l].kind == QL_CONV)
            pad = KD_MAX(pad, kd_qconv_pad_bytes(&q->layers[l].conv, cap));
    bool ok = true;
    for (int i = 0; i < m->n_nodes && ok; i++)
        if (q->scale[i] != 0)
            ok = (q->u8[i] = kd_alloc_aligned(cap * kd_node_size(&m->nodes[i]))) != NULL;
    if (ok && pad)
        ok = (q->pad = kd_alloc_aligned(pad)) != NULL;
    if (!ok) {
        kd_qmodel_release(m);
        return kd_fail(KDENS_E_NOMEM, "out of memory planning int8 buffers for %zu samples",
                       cap);
    }
    return KDENS_OK;
}

void kd_qmodel_forward(kdens_model *m, const float *x, size_t n)
{
    kd_qmodel *q = m->q;
    m->nodes[0].out = (float *)x;
    memset(q->fresh, 0, sizeof(bool) * (size_t)m->n_nodes);
    kd_qgemm_fn kernel = kd_qgemm_kernel();
    for (int i = 1; i < m->n_nodes; i++) {
        kd_node *node = &m->nodes[i];
        int role = q->role[i];
        if (role == ROLE_ABSORBED)
            continue;
        if (role == ROLE_FLOAT) {
            kd_layer_ops_of(node->type)->forward(m, node, n);
            continue;
        }
        kd_qlayer *L = &q->layers[role];
        for (int k = 0; k < node->n_in; k++) {
            int in = node->in[k];
            if (!q->fresh[in]) {
                kd_quantize_u8(m->nodes[in].out, n * kd_node_size(&m->nodes[in]),
                               q->inv_scale[in], q->zp[in], q->u8[in]);
                q->fresh[in] = true;
            }
        }
        uint8_t *y8 = L->write_u8 ? q->u8[L->out] : NULL;
        float *yf = L->write_float ? m->nodes[L->out].out : NULL;
        size_t count = n * kd_node_size(node);
        if (L->kind == QL_ADD)
            kd_qadd_forward(&L->add, count, q->u8[node->in[0]], q->u8[node->in[1]], y8, yf);
        else if (L->kind == QL_MAXPOOL || L->kind == QL_FLATTEN) {
            const kd_node *src = &m->nodes[node->in[0]];
            kd_pool_geom g = {(int)n,     src->h,     src->w,     src->c,     node->h,  node->w,
                              node->a.kh, node->a.kw, node->a.sh, node->a.sw, node->pt, node->pl};
            if (L->kind == QL_MAXPOOL)
                kd_qmaxpool(&g, q->u8[node->in[0]], (uint8_t)q->zp[i], q->u8[i]);
            else
                memcpy(q->u8[i], q->u8[node->in[0]], count);
            if (yf)
                kd_dequantize_u8(q->u8[i], count, q->scale[i], q->zp[i], yf);
        } else
            kd_qconv_forward(&L->conv, kernel, n, q->u8[node->in[0]], y8, yf, q->pad);
        q->fresh[L->out] |= L->write_u8;
    }
}

/* ---- files: the QNT8 section -------------------------------------------------------- */

bool kd_qmodel_param_stored(const kdens_model *m, int param)
{
    if (!m->q)
        return true;
    for (int i = 0; i < m->n_nodes; i++) {
        const kd_node *node = &m->nodes[i];
        for (int k = 0; k < node->n_params; k++)
            if (node->param[k] == param)
                return m->q->role[i] == ROLE_FLOAT;
    }
    return true;
}

static void put_f32(kd_buf *b, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    kd_buf_u32(b, bits);
}

void kd_qmodel_write(const kdens_model *m, kd_buf *b)
{
    const kd_qmodel *q = m->q;
    uint32_t ranges = 0;
    for (int i = 0; i < m->n_nodes; i++)
        ranges += q->scale[i] != 0 && q->alias[i] < 0;
    kd_buf_u32(b, ranges);
    for (int i = 0; i < m->n_nodes; i++)
        if (q->scale[i] != 0 && q->alias[i] < 0) {
            kd_buf_u32(b, (uint32_t)i);
            put_f32(b, q->scale[i]);
            kd_buf_u32(b, (uint32_t)q->zp[i]);
        }
    kd_buf_u32(b, (uint32_t)q->n_layers);
    for (int l = 0; l < q->n_layers; l++) {
        const kd_qlayer *L = &q->layers[l];
        kd_buf_u32(b, (uint32_t)L->node);
        kd_buf_u32(b, (uint32_t)L->out);
        kd_buf_u32(b, (uint32_t)L->act);
        kd_buf_u32(b, (uint32_t)L->k);
        kd_buf_u32(b, (uint32_t)L->n);
        if (L->kind != QL_CONV)
            continue;
        for (int j = 0; j < L->n; j++)
            put_f32(b, L->w_scale[j]);
        for (int j = 0; j < L->n; j++)
            put_f32(b, L->bias[j]);
        kd_buf_put(b, L->wq, (size_t)L->k * L->n);
    }
}

typedef struct qreader {
    const uint8_t *p;
    size_t len, pos;
    bool bad;
} qreader;

static uint32_t rd32(qreader *r)
{
    if (r->bad || r->len - r->pos < 4) {
        r->bad = true;
        return 0;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float rdf32(qreader *r)
{
    uint32_t bits = rd32(r);
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

kdens_status kd_qmodel_read(const char *path, kdens_model *m, const uint8_t *data, size_t len)
{
    kd_qmodel *q;
    kdens_status st = derive(m, &q);
    if (st != KDENS_OK)
        return st;
    qreader r = {data, len, 0, false};
    uint32_t ranges = rd32(&r), expect = 0;
    for (int i = 0; i < m->n_nodes; i++)
        expect += q->scale[i] != 0 && q->alias[i] < 0;
    const char *bad = NULL;
    if (r.bad || ranges != expect)
        bad = "its activation ranges do not match the architecture";
    int last = -1;
    for (uint32_t e = 0; !bad && e < ranges; e++) {
        uint32_t node = rd32(&r);
        float s = rdf32(&r);
        uint32_t zp = rd32(&r);
        if (r.bad || node >= (uint32_t)m->n_nodes || (int)node <= last || q->scale[node] == 0 ||
            q->alias[node] >= 0)
            bad = "an activation range names a wrong layer";
        else if (!(s > 0 && s < 1e30f) || zp > 255)
            bad = "an activation range has a bad scale or zero point";
        else {
            q->scale[node] = s;
            q->inv_scale[node] = 1.0f / s;
            q->zp[node] = (int)zp;
            last = (int)node;
        }
    }
    uint32_t layers = rd32(&r);
    if (!bad && (r.bad || layers != (uint32_t)q->n_layers))
        bad = "its int8 layers do not match the architecture";
    for (uint32_t l = 0; !bad && l < layers; l++) {
        kd_qlayer *L = &q->layers[l];
        uint32_t node = rd32(&r), outn = rd32(&r), act = rd32(&r), k = rd32(&r), n = rd32(&r);
        if (r.bad || node != (uint32_t)L->node || outn != (uint32_t)L->out ||
            act != (uint32_t)L->act || k != (uint32_t)L->k || n != (uint32_t)L->n) {
            bad = "an int8 layer does not match the architecture";
            break;
        }
        if (L->kind != QL_CONV)
            continue;
        size_t kn = (size_t)k * n;
        if ((r.len - r.pos) / 8 < n || r.len - r.pos - 8 * (size_t)n < kn) {
            bad = "an int8 layer is truncated";
            break;
        }
        L->w_scale = malloc(sizeof(float) * n);
        L->bias = malloc(sizeof(float) * n);
        L->wq = malloc(kn ? kn : 1);
        if (!L->w_scale || !L->bias || !L->wq) {
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
            break;
        }
        for (uint32_t j = 0; j < n; j++)
            L->w_scale[j] = rdf32(&r);
        for (uint32_t j = 0; j < n; j++)
            L->bias[j] = rdf32(&r);
        memcpy(L->wq, r.p + r.pos, kn);
        r.pos += kn;
        for (uint32_t j = 0; j < n && !bad; j++)
            if (!(L->w_scale[j] > 0 && L->w_scale[j] < 1e30f) || !isfinite(L->bias[j]))
                bad = "an int8 layer has a bad weight scale or bias";
    }
    if (st == KDENS_OK && !bad && r.pos != r.len)
        bad = "it has trailing bytes";
    if (st == KDENS_OK && bad)
        st = kd_fail(KDENS_E_FORMAT, "%s: QNT8 is not valid: %s", path, bad);
    if (st == KDENS_OK) {
        propagate_aliases(m, q);
        st = prepare(m, q);
    }
    if (st != KDENS_OK) {
        kd_qmodel_free(q);
        return st;
    }
    kd_model_release_buffers(m);
    m->q = q;
    return KDENS_OK;
}

/* ---- for tests ---------------------------------------------------------------------- */

int kd_qmodel_layer_count(const kdens_model *m) { return m->q ? m->q->n_layers : 0; }

float kd_qmodel_scale(const kdens_model *m, int node, int *zp)
{
    if (!m->q || node < 0 || node >= m->n_nodes)
        return 0;
    if (zp)
        *zp = m->q->zp[node];
    return m->q->scale[node];
}

kdens_status kd_qmodel_node_output(const kdens_model *m, int node, size_t n, float *out)
{
    const kd_qmodel *q = m->q;
    if (!q || node < 0 || node >= m->n_nodes || n > m->cap_n)
        return kd_fail(KDENS_E_ARG, "no int8 output of node %d", node);
    size_t count = n * kd_node_size(&m->nodes[node]);
    if (q->float_out[node] && m->nodes[node].out) {
        memcpy(out, m->nodes[node].out, sizeof(float) * count);
        return KDENS_OK;
    }
    if (q->scale[node] == 0 || !q->u8[node] || !q->fresh[node])
        return kd_fail(KDENS_E_STATE, "node %d has no output in the int8 model", node);
    for (size_t i = 0; i < count; i++)
        out[i] = q->scale[node] * (float)((int)q->u8[node][i] - q->zp[node]);
    return KDENS_OK;
}

/* The layer DAG: construction, parameter storage, buffer planning and the
 * forward and backward sweeps.  Nodes are kept in topological order (a node
 * only reads nodes added before it), so a sweep is a loop. */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kd_layer_ops input_ops = {"input", 0, 0, NULL, NULL, NULL, NULL, NULL};

const kd_layer_ops *kd_layer_ops_of(kd_layer_type type)
{
    static const kd_layer_ops *const table[KD_L_COUNT] = {
        [KD_L_INPUT] = &input_ops,         [KD_L_CONV] = &kd_ops_conv,
        [KD_L_DENSE] = &kd_ops_dense,      [KD_L_BATCHNORM] = &kd_ops_batchnorm,
        [KD_L_ACT] = &kd_ops_act,          [KD_L_MAXPOOL] = &kd_ops_maxpool,
        [KD_L_AVGPOOL] = &kd_ops_avgpool,  [KD_L_GAP] = &kd_ops_gap,
        [KD_L_ZEROPAD] = &kd_ops_zeropad,  [KD_L_FLATTEN] = &kd_ops_flatten,
        [KD_L_DROPOUT] = &kd_ops_dropout,  [KD_L_ADD] = &kd_ops_add,
        [KD_L_CONCAT] = &kd_ops_concat,    [KD_L_MULTIPLY] = &kd_ops_multiply,
        [KD_L_RESCALE] = &kd_ops_rescale,  [KD_L_NORMALIZE] = &kd_ops_normalize,
    };
    return (unsigned)type < KD_L_COUNT ? table[type] : NULL;
}

const char *kd_layer_keyword(kd_layer_type type)
{
    const kd_layer_ops *ops = kd_layer_ops_of(type);
    return ops ? ops->keyword : "?";
}

void kd_attrs_default(kd_attrs *a)
{
    memset(a, 0, sizeof *a);
    a->kh = a->kw = 1;
    a->dh = a->dw = 1;
    a->sh = a->sw = 0; /* 0: the family's default (1 for conv, the window for pools) */
    a->pad_mode = KD_PAD_VALID;
    a->groups = 1;
    a->multiplier = 1;
    a->bias = true;
    a->act = KD_ACT_RELU;
    a->momentum = 0.99f;
    a->eps = 1e-3f;
    a->scale = 1.0f;
}

int kd_resolve_padding(kd_pad_mode mode, const int *explicit_pad, int in, int k, int stride,
                       int *before, int *after)
{
    int out;
    switch (mode) {
    case KD_PAD_SAME: { /* Keras/TensorFlow: the extra pixel goes after */
        out = (in + stride - 1) / stride;
        int total = (out - 1) * stride + k - in;
        if (total < 0)
            total = 0;
        *before = total / 2;
        *after = total - *before;
        return out;
    }
    case KD_PAD_EXPLICIT:
        *before = explicit_pad[0];
        *after = explicit_pad[1];
        break;
    default:
        *before = *after = 0;
        break;
    }
    int span = in + *before + *after - k;
    return span < 0 ? 0 : span / stride + 1;
}

kdens_status kd_infer_same_shape(kdens_model *m, kd_node *node)
{
    const kd_node *x = kd_input(m, node, 0);
    node->h = x->h;
    node->w = x->w;
    node->c = x->c;
    return KDENS_OK;
}

size_t kd_node_size(const kd_node *n) { return (size_t)n->h * n->w * n->c; }

int kd_model_find(const kdens_model *m, const char *name)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            return i;
    return -1;
}

kdens_status kd_model_new(int h, int w, int c, int classes, kdens_model **out)
{
    if (h < 1 || w < 1 || c < 1 || h > 65536 || w > 65536 || (size_t)h * w > (1u << 28))
        return kd_fail(KDENS_E_ARG, "input shape %dx%dx%d is not valid", h, w, c);
    if (c > 65536)
        return kd_fail(KDENS_E_ARG, "input has %d channels; at most 65536 are supported", c);
    if (classes < 1 || classes > 1000000)
        return kd_fail(KDENS_E_ARG, "class count %d is not valid", classes);
    kdens_model *m = calloc(1, sizeof *m);
    if (!m)
        return kd_fail(KDENS_E_NOMEM, "out of memory creating a model");
    m->in_h = h;
    m->in_w = w;
    m->in_c = c;
    m->classes = classes;
    m->in_scale = malloc(sizeof(float) * (size_t)c);
    m->in_offset = malloc(sizeof(float) * (size_t)c);
    if (!m->in_scale || !m->in_offset) {
        kdens_model_free(m);
        return kd_fail(KDENS_E_NOMEM, "out of memory creating a model");
    }
    for (int i = 0; i < c; i++) {
        m->in_scale[i] = 1.0f / 255.0f;
        m->in_offset[i] = 0.0f;
    }
    kd_attrs a;
    kd_attrs_default(&a);
    int id;
    kdens_status st = kd_model_add(m, KD_L_INPUT, &a, "input", 0, NULL, &id);
    if (st != KDENS_OK) {
        kdens_model_free(m);
        return st;
    }
    m->nodes[0].h = h;
    m->nodes[0].w = w;
    m->nodes[0].c = c;
    *out = m;
    return KDENS_OK;
}

kdens_status kd_node_add_param(kdens_model *m, kd_node *node, const char *suffix, int ndim,
                               const int *shape, bool trainable, kd_init init)
{
    if (node->n_params >= KD_MAX_NODE_PARAMS)
        return kd_fail(KDENS_E_ARG, "layer '%s' has too many parameter tensors", node->name);
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        kd_param *p = realloc(m->params, sizeof *p * (size_t)cap);
        if (!p)
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        m->params = p;
        m->cap_params = cap;
    }
    kd_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    size_t len = strlen(node->name) + strlen(suffix) + 2;
    p->name = malloc(len);
    if (!p->name)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    snprintf(p->name, len, "%s/%s", node->name, suffix);
    p->ndim = ndim;
    p->count = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->count *= (size_t)shape[i];
        if (p->count > ((size_t)1 << 30)) {
            free(p->name);
            return kd_fail(KDENS_E_SHAPE, "layer '%s': %s has more than 2^30 values",
                           node->name, suffix);
        }
    }
    p->trainable = trainable;
    /* The initialiser is kept in offset until finalize assigns storage. */
    p->offset = (size_t)init;
    node->param[node->n_params++] = m->n_params++;
    return KDENS_OK;
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return false;
    return true;
}

kdens_status kd_model_add(kdens_model *m, kd_layer_type type, const kd_attrs *a,
                          const char *name, int n_in, const int *in, int *id)
{
    const kd_layer_ops *ops = kd_layer_ops_of(type);
    if (!ops)
        return kd_fail(KDENS_E_ARG, "unknown layer type %d", (int)type);
    if (n_in < ops->min_in || (ops->max_in >= 0 && n_in > ops->max_in))
        return kd_fail(KDENS_E_SPEC, "layer '%s' (%s) takes %d to %d inputs, not %d",
                       name ? name : "?", ops->keyword, ops->min_in, ops->max_in, n_in);
    for (int i = 0; i < n_in; i++)
        if (in[i] < 0 || in[i] >= m->n_nodes)
            return kd_fail(KDENS_E_SPEC, "layer '%s': input %d does not exist",
                           name ? name : "?", in[i]);
    char auto_name[64];
    if (!name) {
        snprintf(auto_name, sizeof auto_name, "%s_%d", ops->keyword, m->n_nodes);
        name = auto_name;
    }
    if (!valid_name(name))
        return kd_fail(KDENS_E_SPEC, "layer name '%s' is not valid (letters, digits, _ . -)",
                       name);
    if (kd_model_find(m, name) >= 0)
        return kd_fail(KDENS_E_SPEC, "layer name '%s' is used twice", name);
    if (m->n_nodes == m->cap_nodes) {
        int cap = m->cap_nodes ? 2 * m->cap_nodes : 32;
        kd_node *nodes = realloc(m->nodes, sizeof *nodes * (size_t)cap);
        if (!nodes)
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        m->nodes = nodes;
        m->cap_nodes = cap;
    }
    kd_node *node = &m->nodes[m->n_nodes];
    memset(node, 0, sizeof *node);
    node->type = type;
    node->a = *a;
    node->name = kd_strdup(name);
    node->in = n_in ? malloc(sizeof(int) * (size_t)n_in) : NULL;
    if (!node->name || (n_in && !node->in)) {
        free(node->name);
        free(node->in);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    node->n_in = n_in;
    if (n_in)
        memcpy(node->in, in, sizeof(int) * (size_t)n_in);
    node->cin = n_in ? m->nodes[in[0]].c : m->in_c;
    m->n_nodes++; /* counted now so that the free path releases it */
    if (ops->infer) {
        int first_param = m->n_params;
        kdens_status st = ops->infer(m, node);
        if (st == KDENS_OK && (node->h < 1 || node->w < 1 || node->c < 1))
            st = kd_fail(KDENS_E_SHAPE,
                         "layer '%s' (%s): output %dx%dx%d is empty; the input %dx%dx%d is "
                         "too small for this network",
                         name, ops->keyword, node->h, node->w, node->c, m->in_h, m->in_w,
                         m->in_c);
        if (st == KDENS_OK && kd_node_size(node) > ((size_t)1 << 28))
            st = kd_fail(KDENS_E_SHAPE, "layer '%s': output of %dx%dx%d is too large", name,
                         node->h, node->w, node->c);
        if (st != KDENS_OK) {
            while (m->n_params > first_param)
                free(m->params[--m->n_params].name);
            m->n_nodes--;
            free(node->name);
            free(node->in);
            return st;
        }
    }
    bool needs = false;
    for (int i = 0; i < node->n_params; i++)
        needs |= m->params[node->param[i]].trainable;
    for (int i = 0; i < n_in; i++)
        needs |= m->nodes[in[i]].needs_grad;
    node->needs_grad = needs;
    node->last_reader = -1;
    for (int i = 0; i < n_in; i++)
        m->nodes[in[i]].last_reader = m->n_nodes - 1;
    if (id)
        *id = m->n_nodes - 1;
    return KDENS_OK;
}

/* Glorot uniform (Keras' default) with fans from the kernel shape: the
 * receptive field times input channels per group, and times outputs per group. */
static void glorot(kd_rng *rng, const kd_param *p, const kd_node *node, float *w)
{
    double fan_in, fan_out;
    if (p->ndim == 4) {
        double rf = (double)p->shape[0] * p->shape[1];
        int groups = node->a.groups > 0 ? node->a.groups : node->cin;
        fan_in = rf * p->shape[2];
        fan_out = rf * p->shape[3] / groups;
    } else if (p->ndim == 2) {
        fan_in = p->shape[0];
        fan_out = p->shape[1];
    } else {
        fan_in = fan_out = (double)p->count;
    }
    float limit = (float)sqrt(6.0 / (fan_in + fan_out));
    for (size_t i = 0; i < p->count; i++)
        w[i] = (float)((2.0 * kd_rng_uniform(rng) - 1.0) * limit);
}

kdens_status kd_model_finalize(kdens_model *m, uint64_t seed)
{
    kd_node *last = &m->nodes[m->n_nodes - 1];
    int logits = m->n_nodes - 1;
    if (last->type == KD_L_ACT && last->a.act == KD_ACT_SOFTMAX)
        logits = last->in[0];
    kd_node *ln = &m->nodes[logits];
    if (m->n_nodes < 2 || ln->h != 1 || ln->w != 1 || ln->c != m->classes)
        return kd_fail(KDENS_E_SHAPE,
                       "the network's output is %dx%dx%d; it must be 1x1x%d (the class count)",
                       ln->h, ln->w, ln->c, m->classes);
    m->logits_node = logits;
    size_t off = 0;
    kd_init *inits = malloc(sizeof *inits * (size_t)(m->n_params ? m->n_params : 1));
    if (!inits)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; i < m->n_params; i++)
        inits[i] = (kd_init)m->params[i].offset;
    for (int pass = 0; pass < 2; pass++) /* trainable first: one flat span for optimisers */
        for (int i = 0; i < m->n_params; i++)
            if (m->params[i].trainable == (pass == 0)) {
                m->params[i].offset = off;
                off += m->params[i].count;
            }
    m->n_weights = off;
    m->n_trainable = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable)
            m->n_trainable += m->params[i].count;
    m->weights = kd_alloc_aligned(sizeof(float) * m->n_weights);
    m->grads = kd_alloc_aligned(sizeof(float) * m->n_trainable);
    if (!m->weights || !m->grads) {
        free(inits);
        return kd_fail(KDENS_E_NOMEM, "out of memory for %zu parameters", m->n_weights);
    }
    memset(m->grads, 0, sizeof(float) * m->n_trainable);
    kd_rng rng;
    kd_rng_seed(&rng, seed);
    for (int ni = 0; ni < m->n_nodes; ni++) {
        const kd_node *node = &m->nodes[ni];
        for (int k = 0; k < node->n_params; k++) {
            const kd_param *p = &m->params[node->param[k]];
            float *w = m->weights + p->offset;
            switch (inits[node->param[k]]) {
            case KD_INIT_ZERO: memset(w, 0, sizeof(float) * p->count); break;
            case KD_INIT_ONE:
                for (size_t i = 0; i < p->count; i++)
                    w[i] = 1.0f;
                break;
            case KD_INIT_GLOROT: glorot(&rng, p, node, w); break;
            }
        }
    }
    free(inits);
    m->seed = seed;
    kd_rng_seed(&m->rng, seed ^ 0x5eed0fd50u);
    kd_model_fuse(m);
    return KDENS_OK;
}

void kd_model_fuse(kdens_model *m)
{
    for (int i = 1; i < m->n_nodes; i++) {
        kd_node *act = &m->nodes[i];
        if (act->type != KD_L_ACT || act->a.act != KD_ACT_RELU)
            continue;
        int b = act->in[0];
        kd_node *bn = &m->nodes[b];
        bool can_fuse = bn->type == KD_L_BATCHNORM || (bn->type == KD_L_ADD && bn->n_in == 2);
        if (!can_fuse || b == m->logits_node || bn->relu_into)
            continue;
        int readers = 0;
        for (int k = b + 1; k < m->n_nodes; k++)
            for (int r = 0; r < m->nodes[k].n_in; r++)
                readers += m->nodes[k].in[r] == b;
        if (readers != 1)
            continue;
        bn->relu_into = i;
        act->fused = true;
    }
}

/* ---- buffers ----------------------------------------------------------------------- */

void kd_model_release_buffers(kdens_model *m)
{
    for (int i = 0; i < m->n_nodes; i++) {
        kd_node *node = &m->nodes[i];
        if (i > 0)
            kd_free_aligned(node->out);
        kd_free_aligned(node->grad);
        kd_free_aligned(node->aux);
        node->out = node->grad = NULL;
        node->aux = NULL;
    }
    kd_free_aligned(m->work);
    m->work = NULL;
    m->work_floats = 0;
    kd_free_aligned(m->staging);
    m->staging = NULL;
    m->staging_floats = 0;
    if (m->q)
        kd_qmodel_release(m);
    m->cap_n = 0;
    m->cap_grads = false;
    m->have_forward = m->have_grads = false;
}

kdens_status kd_model_plan(kdens_model *m, size_t n, bool with_grads)
{
    if (n <= m->cap_n && (!with_grads || m->cap_grads) && m->plan_threads == kd_threads())
        return KDENS_OK;
    size_t cap = KD_MAX(n, m->cap_n);
    bool grads = with_grads || m->cap_grads;
    kd_model_release_buffers(m);
    size_t work = 0;
    for (int i = 1; i < m->n_nodes; i++) {
        kd_node *node = &m->nodes[i];
        const kd_layer_ops *ops = kd_layer_ops_of(node->type);
        size_t sz = kd_node_size(node) * cap;
        /* an int8 model holds float outputs only where float layers read them */
        bool has_out = kd_qmodel_float_out(m, i), runs = kd_qmodel_runs_float(m, i);
        if (has_out)
            node->out = kd_alloc_aligned(sizeof(float) * sz);
        if (grads && node->needs_grad)
            node->grad = kd_alloc_aligned(sizeof(float) * sz);
        size_t aux = runs && ops->aux_floats ? ops->aux_floats(m, node, cap) : 0;
        if (aux)
            node->aux = kd_alloc_aligned(sizeof(float) * aux);
        if ((has_out && !node->out) || (grads && node->needs_grad && !node->grad) ||
            (aux && !node->aux)) {
            kd_model_release_buffers(m);
            return kd_fail(KDENS_E_NOMEM, "out of memory planning a batch of %zu samples", n);
        }
        if (runs && ops->work_floats)
            work = KD_MAX(work, ops->work_floats(m, node, cap));
    }
    if (work) {
        m->work = kd_alloc_aligned(sizeof(float) * work);
        if (!m->work) {
            kd_model_release_buffers(m);
            return kd_fail(KDENS_E_NOMEM, "out of memory for a %zu-float workspace", work);
        }
        m->work_floats = work;
    }
    if (m->q) {
        kdens_status st = kd_qmodel_plan(m, cap);
        if (st != KDENS_OK) {
            kd_model_release_buffers(m);
            return st;
        }
    }
    m->cap_n = cap;
    m->cap_grads = grads;
    m->plan_threads = kd_threads();
    return KDENS_OK;
}

void kd_model_forward(kdens_model *m, const float *x, size_t n)
{
    if (m->q) {
        kd_qmodel_forward(m, x, n);
        return;
    }
    m->nodes[0].out = (float *)x; /* read only: the input node never writes */
    for (int i = 1; i < m->n_nodes; i++) {
        kd_node *node = &m->nodes[i];
        kd_layer_ops_of(node->type)->forward(m, node, n);
    }
}

float *kd_grad_accumulate(kd_node *x, size_t n)
{
    if (x->grad && kd_grad_assign(x))
        memset(x->grad, 0, sizeof(float) * n * kd_node_size(x));
    return x->grad;
}

/* Every gradient but the loss's starts stale; layers run in reverse order. */
void kd_model_backward_pass(kdens_model *m, size_t n)
{
    memset(m->grads, 0, sizeof(float) * m->n_trainable);
    for (int i = 1; i < m->n_nodes; i++) { /* an injected gradient is used once */
        m->nodes[i].grad_stale = i != m->logits_node && !m->nodes[i].grad_injected;
        m->nodes[i].grad_injected = false;
    }
    for (int i = m->n_nodes - 1; i >= 1; i--) {
        kd_node *node = &m->nodes[i];
        if (node->needs_grad && i <= m->logits_node)
            kd_layer_ops_of(node->type)->backward(m, node, n);
    }
}

/* The training step: forward with loss, backward, optimiser step. */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kdens_status kd_refuse_quantized(const kdens_model *m)
{
    (void)m;
    return kd_fail(KDENS_E_STATE, "the model is quantised to int8 (inference only): train "
                                  "the float model and quantise it again");
}

kdens_status kdens_model_set_training(kdens_model *m, int training)
{
    if (!m)
        return kd_fail(KDENS_E_ARG, "NULL model");
    if (training && m->q)
        return kd_refuse_quantized(m);
    m->training = training != 0;
    m->have_forward = m->have_grads = false;
    return KDENS_OK;
}

kdens_status kdens_model_set_batchnorm(kdens_model *m, double momentum_in, double epsilon_in)
{
    float momentum = (float)momentum_in, epsilon = (float)epsilon_in;
    if (!m)
        return kd_fail(KDENS_E_ARG, "NULL model");
    if (!(momentum >= 0 && momentum <= 1) || !(epsilon > 0))
        return kd_fail(KDENS_E_ARG, "batch norm momentum %g must be in [0,1], epsilon %g > 0",
                       (double)momentum, (double)epsilon);
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].type == KD_L_BATCHNORM) {
            m->nodes[i].a.momentum = momentum;
            m->nodes[i].a.eps = epsilon;
        }
    return KDENS_OK;
}

kdens_status kdens_model_set_seed(kdens_model *m, uint64_t seed)
{
    if (!m)
        return kd_fail(KDENS_E_ARG, "NULL model");
    kd_rng_seed(&m->rng, seed);
    return KDENS_OK;
}

kdens_status kd_check_loss(double alpha, double temperature)
{
    if (!(alpha >= 0 && alpha <= 1))
        return kd_fail(KDENS_E_ARG, "alpha %g is outside [0, 1]", alpha);
    float t = (float)temperature; /* as the loss will hold it */
    if (!(t > 0) || isinf(t))
        return kd_fail(KDENS_E_ARG, "temperature %g must be a positive number", temperature);
    return KDENS_OK;
}

kdens_status kdens_model_set_loss(kdens_model *m, double alpha, double temperature)
{
    if (!m)
        return kd_fail(KDENS_E_ARG, "NULL model");
    kd_loss *loss = NULL;
    kdens_status st = kd_check_loss(alpha, temperature);
    if (st == KDENS_OK)
        st = (loss = kd_loss_edit(m)) ? KDENS_OK : KDENS_E_NOMEM;
    if (st == KDENS_OK)
        loss->alpha = (float)alpha, loss->temperature = (float)temperature;
    return st;
}

static kdens_status check_targets(const kdens_model *m, size_t n, const int32_t *labels,
                                  const float *soft)
{
    if (labels)
        for (size_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= m->classes)
                return kd_fail(KDENS_E_ARG, "label %d of sample %zu is outside [0, %d)",
                               labels[i], i, m->classes);
    const kd_loss *loss = kd_loss_of(m);
    size_t per = (size_t)loss->soft_sets * m->classes;
    if (soft)
        for (size_t i = 0; i < n * per; i++)
            if (!(soft[i] >= 0 && soft[i] <= 1))
                return kd_fail(KDENS_E_ARG, "soft target %zu of sample %zu is %g, not in [0, 1]",
                               i % per, i / per, (double)soft[i]);
    if (!labels && (!soft || loss->alpha > 0))
        return kd_fail(KDENS_E_ARG, "labels are NULL but the loss needs them (alpha %g)",
                       (double)loss->alpha);
    return KDENS_OK;
}

kdens_status kd_forward_prepare(kdens_model *m, size_t n, const int32_t *labels,
                                const float *soft)
{
    if (n == 0)
        return kd_fail(KDENS_E_ARG, "empty batch");
    kdens_status st = check_targets(m, n, labels, soft);
    if (st == KDENS_OK)
        st = kd_model_plan(m, n, true);
    if (st != KDENS_OK)
        return st;
    if (!m->nodes[m->logits_node].grad)
        return kd_fail(KDENS_E_STATE, "the model has no trainable parameters");
    kd_loss *ls = m->loss;
    if (soft && ls && ls->soft_sets > 1 && !ls->n_heads && ls->sets_rows < n) {
        kd_free_aligned(ls->sets_mean);
        ls->sets_rows = 0;
        if (!(ls->sets_mean = kd_alloc_aligned(sizeof(float) * n * (size_t)m->classes)))
            return kd_fail(KDENS_E_NOMEM, "out of memory for the loss");
        ls->sets_rows = n;
    }
    return KDENS_OK;
}

/* The loss's gradients (the logits', and the heads' of mimic_all) times s. */
static void scale_loss_grads(kdens_model *m, size_t n, bool heads, float s)
{
    size_t len = n * (size_t)m->classes;
    float *g = m->nodes[m->logits_node].grad;
    for (size_t i = 0; i < len; i++)
        g[i] *= s;
    const kd_loss *ls = kd_loss_of(m);
    if (heads)
        for (int h = 0; h < ls->n_heads; h++) {
            float *hg = m->nodes[ls->head_nodes[h]].grad;
            for (size_t i = 0; i < len; i++)
                hg[i] *= s;
        }
}

kdens_status kdens_model_forward_loss(kdens_model *m, const float *x, size_t n,
                                      const int32_t *labels, const float *soft, float *loss,
                                      size_t *correct)
{
    if (!m || !x)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (m->q)
        return kd_refuse_quantized(m);
    kdens_status st = kd_forward_prepare(m, n, labels, soft);
    if (st != KDENS_OK)
        return st;
    m->have_forward = m->have_grads = false;
    kd_node *logits = &m->nodes[m->logits_node];
    kd_loss *ls = m->loss; /* NULL: the defaults, one target set, no heads */
    kd_model_forward(m, x, n); /* node gradients are zeroed during backward */
    const kd_loss *lc = kd_loss_of(m);
    double l;
    if (soft && lc->n_heads > 0) { /* mimic_all: one target per head */
        for (int h = 0; h < ls->n_heads; h++) {
            kd_node *head = &m->nodes[ls->head_nodes[h]];
            ls->head_ptrs[h] = head->out;
            ls->head_ptrs[ls->n_heads + h] = head->grad;
            head->grad_injected = true;
        }
        l = kd_loss_heads(n, m->classes, logits->out, labels, soft, ls->n_heads,
                          (const float *const *)ls->head_ptrs, ls->head_ptrs + ls->n_heads,
                          ls->alpha, ls->temperature, logits->grad, correct);
    } else if (soft && lc->soft_sets > 1) { /* loss_avg: the mean divergence */
        l = kd_loss_sets(n, m->classes, logits->out, labels, soft, ls->soft_sets, ls->alpha,
                         ls->temperature, ls->sets_mean, logits->grad, correct);
    } else {
        l = kd_loss_logits(n, m->classes, logits->out, labels, soft, lc->alpha, lc->temperature,
                           logits->grad, correct);
    }
    if (!isfinite(l))
        return kd_fail(KDENS_E_NUMERIC, "the loss is not finite (%g)", l);
    if (m->sync) /* data-parallel: the mean over the global batch, not this rank's */
        scale_loss_grads(m, n, soft && lc->n_heads > 0, (float)((double)n / (double)m->sync_global_n));
    if (loss)
        *loss = (float)l;
    m->fwd_n = n;
    m->have_forward = true;
    return KDENS_OK;
}

kdens_status kdens_model_backward(kdens_model *m)
{
    if (!m)
        return kd_fail(KDENS_E_ARG, "NULL model");
    if (!m->have_forward)
        return kd_fail(KDENS_E_STATE, "backward needs a preceding forward_loss");
    if (m->plan_threads != kd_threads()) { /* the workspace is sized per thread count */
        m->have_forward = false;
        return kd_fail(KDENS_E_STATE, "the thread count changed between forward and backward");
    }
    kd_model_backward_pass(m, m->fwd_n);
    m->have_forward = false;
    m->have_grads = true;
    return KDENS_OK;
}

/* ---- optimisers -------------------------------------------------------------------- */

struct kdens_optimizer {
    kdens_optimizer_type type;
    float lr, momentum, beta1, beta2, eps, decay;
    bool nesterov;
    uint64_t steps;
    const kdens_model *bound;
    size_t n;
    float *m1, *m2;
};

kdens_status kdens_optimizer_create(kdens_optimizer_type type, double lr_in,
                                    kdens_optimizer **out)
{
    float lr = (float)lr_in;
    if (!out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (type != KDENS_OPT_SGD && type != KDENS_OPT_ADAM && type != KDENS_OPT_ADAMW)
        return kd_fail(KDENS_E_ARG, "unknown optimizer type %d", (int)type);
    if (!(lr >= 0) || isinf(lr))
        return kd_fail(KDENS_E_ARG, "learning rate %g is not valid", (double)lr);
    kdens_optimizer *o = calloc(1, sizeof *o);
    if (!o)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    o->type = type;
    o->lr = lr;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-7f;
    o->decay = type == KDENS_OPT_ADAMW ? 0.004f : 0.0f;
    *out = o;
    return KDENS_OK;
}

void kdens_optimizer_free(kdens_optimizer *o)
{
    if (!o)
        return;
    kd_free_aligned(o->m1);
    kd_free_aligned(o->m2);
    free(o);
}

kdens_status kdens_optimizer_set_lr(kdens_optimizer *o, double lr_in)
{
    float lr = (float)lr_in;
    if (!o)
        return kd_fail(KDENS_E_ARG, "NULL optimizer");
    if (!(lr >= 0) || isinf(lr))
        return kd_fail(KDENS_E_ARG, "learning rate %g is not valid", (double)lr);
    o->lr = lr;
    return KDENS_OK;
}

double kdens_optimizer_get_lr(const kdens_optimizer *o) { return o ? o->lr : 0.0; }
uint64_t kdens_optimizer_steps(const kdens_optimizer *o) { return o ? o->steps : 0; }

kdens_status kdens_optimizer_set_momentum(kdens_optimizer *o, double momentum_in, int nesterov)
{
    float momentum = (float)momentum_in;
    if (!o)
        return kd_fail(KDENS_E_ARG, "NULL optimizer");
    if (!(momentum >= 0 && momentum < 1))
        return kd_fail(KDENS_E_ARG, "momentum %g is outside [0, 1)", (double)momentum);
    o->momentum = momentum;
    o->nesterov = nesterov != 0;
    return KDENS_OK;
}

kdens_status kdens_optimizer_set_betas(kdens_optimizer *o, double beta1_in, double beta2_in,
                                       double epsilon_in)
{
    float beta1 = (float)beta1_in, beta2 = (float)beta2_in, epsilon = (float)epsilon_in;
    if (!o)
        return kd_fail(KDENS_E_ARG, "NULL optimizer");
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(epsilon > 0))
        return kd_fail(KDENS_E_ARG, "betas must be in [0, 1) and epsilon > 0");
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = epsilon;
    return KDENS_OK;
}

kdens_status kdens_optimizer_set_weight_decay(kdens_optimizer *o, double decay_in)
{
    float decay = (float)decay_in;
    if (!o)
        return kd_fail(KDENS_E_ARG, "NULL optimizer");
    if (!(decay >= 0) || isinf(decay))
        return kd_fail(KDENS_E_ARG, "weight decay %g is not valid", (double)decay);
    o->decay = decay;
    return KDENS_OK;
}

static kdens_status bind(kdens_optimizer *o, const kdens_model *m)
{
    if (o->bound == m)
        return KDENS_OK;
    if (o->bound)
        return kd_fail(KDENS_E_ARG, "the optimizer is bound to another model");
    o->n = m->n_trainable;
    o->m1 = kd_alloc_aligned(sizeof(float) * o->n);
    o->m2 = o->type == KDENS_OPT_SGD ? NULL : kd_alloc_aligned(sizeof(float) * o->n);
    if (!o->m1 || (o->type != KDENS_OPT_SGD && !o->m2)) {
        kd_free_aligned(o->m1);
        kd_free_aligned(o->m2);
        o->m1 = o->m2 = NULL;
        return kd_fail(KDENS_E_NOMEM, "out of memory for optimizer state");
    }
    memset(o->m1, 0, sizeof(float) * o->n);
    if (o->m2)
        memset(o->m2, 0, sizeof(float) * o->n);
    o->bound = m;
    return KDENS_OK;
}

/* The updates are element-wise: split over the library's threads, each
 * element computed the same way in whichever range it falls. */
struct update_job {
    kdens_optimizer *o;
    float *w;
    const float *g;
    float c1, c2; /* Adam's bias corrections */
};

KD_CLONES static void sgd_range(size_t begin, size_t end, void *arg)
{
    const struct update_job *j = arg;
    const kdens_optimizer *o = j->o;
    float lr = o->lr, mu = o->momentum, wd = o->decay;
    float *v = o->m1, *w = j->w;
    const float *g = j->g;
    for (size_t i = begin; i < end; i++) {
        float gi = g[i] + wd * w[i];
        v[i] = mu * v[i] + gi;
        w[i] -= lr * (o->nesterov ? gi + mu * v[i] : v[i]);
    }
}

KD_CLONES static void adam_range(size_t begin, size_t end, void *arg)
{
    const struct update_job *j = arg;
    const kdens_optimizer *o = j->o;
    float b1 = o->beta1, b2 = o->beta2, lr = o->lr, eps = o->eps, c1 = j->c1, c2 = j->c2;
    bool decoupled = o->type == KDENS_OPT_ADAMW;
    float l2 = decoupled ? 0.0f : o->decay, wd = decoupled ? lr * o->decay : 0.0f;
    float *m1 = o->m1, *m2 = o->m2, *w = j->w;
    const float *g = j->g;
    for (size_t i = begin; i < end; i++) {
        float gi = g[i] + l2 * w[i];
        m1[i] = b1 * m1[i] + (1 - b1) * gi;
        m2[i] = b2 * m2[i] + (1 - b2) * gi * gi;
        w[i] -= wd * w[i] + lr * (m1[i] * c1) / (sqrtf(m2[i] * c2) + eps);
    }
}

static void sgd_update(kdens_optimizer *o, float *w, const float *g)
{
    struct update_job j = {o, w, g, 0, 0};
    kd_parallel_for(o->n, 1 << 16, sgd_range, &j);
}

static void adam_update(kdens_optimizer *o, float *w, const float *g)
{
    double t = (double)o->steps;
    struct update_job j = {o, w, g, (float)(1.0 / (1.0 - pow(o->beta1, t))),
                           (float)(1.0 / (1.0 - pow(o->beta2, t)))};
    kd_parallel_for(o->n, 1 << 16, adam_range, &j);
}

kdens_status kdens_optimizer_step(kdens_optimizer *o, kdens_model *m)
{
    if (!o || !m)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (!m->have_grads)
        return kd_fail(KDENS_E_STATE, "optimizer step needs gradients from a backward pass");
    kdens_status st = bind(o, m);
    if (st != KDENS_OK)
        return st;
    o->steps++;
    if (o->type == KDENS_OPT_SGD)
        sgd_update(o, m->weights, m->grads);
    else
        adam_update(o, m->weights, m->grads);
    m->have_grads = false;
    return KDENS_OK;
}

kdens_status kdens_model_train_step(kdens_model *m, kdens_optimizer *o, const float *x,
                                    size_t n, const int32_t *labels, const float *soft,
                                    float *loss, size_t *correct)
{
    if (!o)
        return kd_fail(KDENS_E_ARG, "NULL optimizer");
    kdens_status st = kdens_model_forward_loss(m, x, n, labels, soft, loss, correct);
    if (st == KDENS_OK)
        st = kdens_model_backward(m);
    if (st == KDENS_OK)
        st = kdens_optimizer_step(o, m);
    return st;
}

/* ---- optimiser state for checkpoints ----------------------------------------------- */

void kd_optimizer_save(const kdens_optimizer *o, kd_buf *b)
{
    kd_buf_u32(b, (uint32_t)o->type);
    float f[6] = {o->lr, o->momentum, o->beta1, o->beta2, o->eps, o->decay};
    kd_buf_put(b, f, sizeof f);
    kd_buf_u32(b, o->nesterov);
    kd_buf_u64(b, o->steps);
    kd_buf_u64(b, o->bound ? o->n : 0);
    if (o->bound) {
        kd_buf_put(b, o->m1, sizeof(float) * o->n);
        if (o->m2)
            kd_buf_put(b, o->m2, sizeof(float) * o->n);
    }
}

kdens_status kd_optimizer_restore(kdens_optimizer *o, const kdens_model *m, const uint8_t *data,
                                  size_t len, const char *path)
{
    const size_t head = 4 + 24 + 4 + 8 + 8;
    uint32_t type, nesterov;
    uint64_t steps, n;
    if (len < head)
        return kd_fail(KDENS_E_FORMAT, "%s: the optimizer state is truncated", path);
    memcpy(&type, data, 4);
    float f[6];
    memcpy(f, data + 4, sizeof f);
    memcpy(&nesterov, data + 28, 4);
    memcpy(&steps, data + 32, 8);
    memcpy(&n, data + 40, 8);
    size_t moments = type == KDENS_OPT_SGD ? 1 : 2;
    if (type != (uint32_t)o->type)
        return kd_fail(KDENS_E_FORMAT, "%s: the checkpoint's optimizer is of another type", path);
    if (n != 0 && n != m->n_trainable)
        return kd_fail(KDENS_E_FORMAT, "%s: the optimizer state is for %llu parameters, the "
                       "model has %zu", path, (unsigned long long)n, m->n_trainable);
    if (len != head + (n ? moments * n * sizeof(float) : 0))
        return kd_fail(KDENS_E_FORMAT, "%s: the optimizer state has the wrong size", path);
    o->lr = f[0], o->momentum = f[1], o->beta1 = f[2], o->beta2 = f[3], o->eps = f[4];
    o->decay = f[5];
    o->nesterov = nesterov != 0;
    o->steps = steps;
    if (n) {
        kdens_status st = bind(o, m);
        if (st != KDENS_OK)
            return st;
        memcpy(o->m1, data + head, sizeof(float) * n);
        if (o->m2)
            memcpy(o->m2, data + head + sizeof(float) * n, sizeof(float) * n);
    }
    return KDENS_OK;
}

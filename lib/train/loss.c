/* Losses on logits: cross-entropy through a stable log-softmax, and the
 * KL divergence to temperature-softened targets with Hinton's T^2 scaling:
 *   L = alpha * CE(y, softmax(z)) + (1 - alpha) * T^2 * KL(q || softmax(z / T))
 *   dL/dz = alpha * (softmax(z) - onehot(y)) + (1 - alpha) * T * (softmax(z / T) - q)
 * (per sample; the batch loss and gradient are means over samples).  The
 * multi-teacher forms (docs/distillation.md) are built from the same two
 * per-row terms. */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* weight * CE(y, softmax(z)); adds weight * (softmax(z) - onehot(y)) * scale to d. */
static double ce_row(const float *z, int k, int y, double weight, double scale, float *d)
{
    double mx, lse = kd_log_sum_exp(z, k, 1.0, &mx);
    for (int i = 0; i < k; i++)
        d[i] += (float)(weight * (exp(z[i] - mx - lse) - (i == y)) * scale);
    return weight * -((z[y] - mx) - lse);
}

/* weight * T^2 * KL(q || softmax(z / T)); adds its gradient times scale to d. */
static double kl_row(const float *z, int k, const float *q, double t, double weight, double scale,
                     float *d)
{
    double mx, lse = kd_log_sum_exp(z, k, t, &mx), kl = 0;
    for (int i = 0; i < k; i++) {
        double lpt = (z[i] - mx) / t - lse;
        if (q[i] > 0)
            kl += q[i] * (log(q[i]) - lpt);
        d[i] += (float)(weight * t * (exp(lpt) - q[i]) * scale);
    }
    return weight * t * t * kl;
}

static int argmax_row(const float *z, int k)
{
    int best = 0;
    for (int i = 1; i < k; i++)
        if (z[i] > z[best])
            best = i;
    return best;
}

double kd_loss_logits(size_t rows, int classes, const float *z, const int32_t *labels,
                      const float *soft, float alpha, float temperature, float *dz,
                      size_t *correct)
{
    double total = 0, a = soft ? alpha : 1.0, inv_rows = 1.0 / (double)rows;
    size_t right = 0;
    memset(dz, 0, sizeof(float) * rows * classes);
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * classes;
        float *dr = dz + r * classes;
        if (labels) {
            right += argmax_row(zr, classes) == labels[r];
            if (a > 0)
                total += ce_row(zr, classes, labels[r], a, inv_rows, dr);
        }
        if (soft && a < 1)
            total += kl_row(zr, classes, soft + r * classes, temperature, 1 - a, inv_rows, dr);
    }
    if (correct)
        *correct = right;
    return total * inv_rows;
}

/* -sum q log q */
static double entropy(const float *q, int k)
{
    double h = 0;
    for (int i = 0; i < k; i++)
        if (q[i] > 0)
            h -= q[i] * log(q[i]);
    return h;
}

double kd_loss_sets(size_t rows, int classes, const float *z, const int32_t *labels,
                    const float *soft, int sets, float alpha, float temperature, float *mean,
                    float *dz, size_t *correct)
{
    size_t k = (size_t)classes;
    double correction = 0, t = temperature;
    for (size_t r = 0; r < rows; r++) {
        const float *q = soft + r * sets * k;
        float *qm = mean + r * k;
        for (size_t i = 0; i < k; i++) {
            double s = 0;
            for (int j = 0; j < sets; j++)
                s += q[j * k + i];
            qm[i] = (float)(s / sets);
        }
        double h_sets = 0;
        for (int j = 0; j < sets; j++)
            h_sets += entropy(q + j * k, classes);
        correction += entropy(qm, classes) - h_sets / sets;
    }
    double l = kd_loss_logits(rows, classes, z, labels, mean, alpha, temperature, dz, correct);
    return l + (1 - alpha) * t * t * correction / (double)rows;
}

double kd_loss_heads(size_t rows, int classes, const float *z, const int32_t *labels,
                     const float *soft, int heads, const float *const *head_z,
                     float *const *head_dz, float alpha, float temperature, float *dz,
                     size_t *correct)
{
    size_t k = (size_t)classes, right = 0;
    double total = 0, inv_rows = 1.0 / (double)rows;
    memset(dz, 0, sizeof(float) * rows * k);
    for (int h = 0; h < heads; h++)
        memset(head_dz[h], 0, sizeof(float) * rows * k);
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * k;
        if (labels) {
            right += argmax_row(zr, classes) == labels[r];
            if (alpha > 0)
                total += ce_row(zr, classes, labels[r], alpha, inv_rows, dz + r * k);
        }
        if (alpha < 1)
            for (int h = 0; h < heads; h++)
                total += kl_row(head_z[h] + r * k, classes, soft + (r * heads + h) * k,
                                temperature, (1 - alpha) / heads, inv_rows, head_dz[h] + r * k);
    }
    if (correct)
        *correct = right;
    return total * inv_rows;
}

/* ---- the loss attached to a model ------------------------------------------------- */

static const kd_loss default_loss = {1.0f, 1.0f, 1, 0, NULL, NULL, NULL, 0};

const kd_loss *kd_loss_of(const kdens_model *m)
{
    return m->loss ? m->loss : &default_loss;
}

static void loss_free(kd_loss *loss)
{
    if (!loss)
        return;
    free(loss->head_nodes);
    free(loss->head_ptrs);
    kd_free_aligned(loss->sets_mean);
    free(loss);
}

kd_loss *kd_loss_edit(kdens_model *m)
{
    if (!m->loss) {
        kd_loss *loss = malloc(sizeof *loss);
        if (!loss) {
            kd_fail(KDENS_E_NOMEM, "out of memory for the loss");
            return NULL;
        }
        *loss = default_loss;
        m->loss = loss;
        m->loss_free = loss_free;
    }
    return m->loss;
}

kdens_status kd_loss_set_soft_sets(kdens_model *m, int sets)
{
    if (sets < 1)
        return kd_fail(KDENS_E_ARG, "%d target sets per sample", sets);
    kd_loss *loss = kd_loss_edit(m);
    if (!loss)
        return KDENS_E_NOMEM;
    loss->soft_sets = sets;
    return KDENS_OK;
}

kdens_status kd_loss_set_heads(kdens_model *m, int n)
{
    kd_loss *loss = kd_loss_edit(m);
    if (!loss)
        return KDENS_E_NOMEM;
    int *nodes = NULL;
    float **ptrs = NULL;
    if (n > 0 && (!(nodes = malloc(sizeof(int) * (size_t)n)) ||
                  !(ptrs = malloc(sizeof(float *) * 2 * (size_t)n)))) {
        free(nodes);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    for (int h = 0; h < n; h++) {
        char name[32];
        snprintf(name, sizeof name, "head_%d", h);
        int id = kd_model_find(m, name);
        if (id < 0 || m->nodes[id].type != KD_L_DENSE || m->nodes[id].c != m->classes) {
            free(nodes);
            free(ptrs);
            return kd_fail(KDENS_E_ARG, "the model has no dense head '%s' of %d units", name,
                           m->classes);
        }
        nodes[h] = id;
    }
    free(loss->head_nodes);
    free(loss->head_ptrs);
    loss->head_nodes = nodes;
    loss->head_ptrs = ptrs;
    loss->n_heads = n;
    return KDENS_OK;
}

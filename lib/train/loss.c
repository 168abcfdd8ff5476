/* Losses on logits: cross-entropy through a stable log-softmax, and the
 * KL divergence to temperature-softened targets with Hinton's T^2 scaling:
 *   L = alpha * CE(y, softmax(z)) + (1 - alpha) * T^2 * KL(q || softmax(z / T))
 *   dL/dz = alpha * (softmax(z) - onehot(y)) + (1 - alpha) * T * (softmax(z / T) - q)
 * (per sample; the batch loss and gradient are means over samples). */
#include "train.h"

#include <math.h>

/* log softmax(z / t)[i] = (z[i] - max) / t - lse; returns lse and the max. */
static double log_sum_exp(const float *z, int k, double t, double *mx_out)
{
    double mx = z[0];
    for (int i = 1; i < k; i++)
        mx = z[i] > mx ? z[i] : mx;
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += exp((z[i] - mx) / t);
    *mx_out = mx;
    return log(sum);
}

double kd_loss_logits(size_t rows, int classes, const float *z, const int32_t *labels,
                      const float *soft, float alpha, float temperature, float *dz,
                      size_t *correct)
{
    double total = 0;
    size_t right = 0;
    double a = soft ? alpha : 1.0, t = temperature;
    double inv_rows = 1.0 / (double)rows;
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * classes;
        float *dr = dz + r * classes;
        double loss = 0;
        for (int i = 0; i < classes; i++)
            dr[i] = 0;
        if (labels) {
            int y = labels[r], best = 0;
            for (int i = 1; i < classes; i++)
                if (zr[i] > zr[best])
                    best = i;
            right += best == y;
            if (a > 0) {
                double mx, lse = log_sum_exp(zr, classes, 1.0, &mx);
                loss += a * -((zr[y] - mx) - lse);
                for (int i = 0; i < classes; i++)
                    dr[i] += (float)(a * (exp(zr[i] - mx - lse) - (i == y)) * inv_rows);
            }
        }
        if (soft && a < 1) {
            const float *q = soft + r * classes;
            double mx, lse = log_sum_exp(zr, classes, t, &mx);
            double kl = 0;
            for (int i = 0; i < classes; i++) {
                double lpt = (zr[i] - mx) / t - lse;
                if (q[i] > 0)
                    kl += q[i] * (log(q[i]) - lpt);
                dr[i] += (float)((1 - a) * t * (exp(lpt) - q[i]) * inv_rows);
            }
            loss += (1 - a) * t * t * kl;
        }
        total += loss;
    }
    if (correct)
        *correct = right;
    return total * inv_rows;
}

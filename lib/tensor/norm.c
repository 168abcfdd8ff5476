/* Batch normalisation over the rows (N*H*W) of an NHWC tensor, per channel.
 * Statistics are accumulated in double: a batch of 128 28x28 images sums
 * 100,352 values per channel, too many for float accumulation. */
#include "tensor.h"

#include <math.h>
#include <stdlib.h>

void kd_bn_forward_train(size_t rows, int c, const float *x, const float *gamma,
                         const float *beta, float eps, float momentum, float *moving_mean,
                         float *moving_var, float *batch_mean, float *batch_invstd, float *y)
{
    double *sum = calloc((size_t)c * 2, sizeof(double));
    if (!sum) { /* degrade to a float pass rather than fail mid-step */
        for (int ch = 0; ch < c; ch++) {
            batch_mean[ch] = 0;
            batch_invstd[ch] = 1.0f / sqrtf(1.0f + eps);
        }
    } else {
        double *sq = sum + c;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * c;
            for (int ch = 0; ch < c; ch++)
                sum[ch] += xr[ch];
        }
        for (int ch = 0; ch < c; ch++)
            sum[ch] /= (double)rows;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * c;
            for (int ch = 0; ch < c; ch++) {
                double d = xr[ch] - sum[ch];
                sq[ch] += d * d;
            }
        }
        for (int ch = 0; ch < c; ch++) {
            double var = sq[ch] / (double)rows;
            batch_mean[ch] = (float)sum[ch];
            batch_invstd[ch] = (float)(1.0 / sqrt(var + eps));
            moving_mean[ch] = momentum * moving_mean[ch] + (1.0f - momentum) * (float)sum[ch];
            moving_var[ch] = momentum * moving_var[ch] + (1.0f - momentum) * (float)var;
        }
        free(sum);
    }
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        for (int ch = 0; ch < c; ch++)
            yr[ch] = (xr[ch] - batch_mean[ch]) * batch_invstd[ch] * gamma[ch] + beta[ch];
    }
}

void kd_bn_forward_eval(size_t rows, int c, const float *x, const float *gamma,
                        const float *beta, const float *mean, const float *var, float eps,
                        float *y)
{
    /* y = x * a + b with a = gamma/sqrt(var+eps), b = beta - mean*a */
    float ab[2 * 4096];
    float *a = ab, *b = ab + 4096;
    float *heap = NULL;
    if (c > 4096) {
        heap = malloc(sizeof(float) * 2 * (size_t)c);
        if (!heap)
            return;
        a = heap;
        b = heap + c;
    }
    for (int ch = 0; ch < c; ch++) {
        a[ch] = gamma[ch] / sqrtf(var[ch] + eps);
        b[ch] = beta[ch] - mean[ch] * a[ch];
    }
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        for (int ch = 0; ch < c; ch++)
            yr[ch] = xr[ch] * a[ch] + b[ch];
    }
    free(heap);
}

void kd_bn_backward_train(size_t rows, int c, const float *x, const float *gamma,
                          const float *batch_mean, const float *batch_invstd, const float *dy,
                          float *dx, float *dgamma, float *dbeta)
{
    double *acc = calloc((size_t)c * 2, sizeof(double));
    if (!acc)
        return;
    double *sum_dy = acc, *sum_dy_xhat = acc + c;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dyr = dy + r * c;
        for (int ch = 0; ch < c; ch++) {
            float xhat = (xr[ch] - batch_mean[ch]) * batch_invstd[ch];
            sum_dy[ch] += dyr[ch];
            sum_dy_xhat[ch] += dyr[ch] * xhat;
        }
    }
    for (int ch = 0; ch < c; ch++) {
        dgamma[ch] += (float)sum_dy_xhat[ch];
        dbeta[ch] += (float)sum_dy[ch];
    }
    if (dx) {
        float inv_rows = 1.0f / (float)rows;
        for (int ch = 0; ch < c; ch++) {
            sum_dy[ch] *= inv_rows;
            sum_dy_xhat[ch] *= inv_rows;
        }
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * c, *dyr = dy + r * c;
            float *dxr = dx + r * c;
            for (int ch = 0; ch < c; ch++) {
                float xhat = (xr[ch] - batch_mean[ch]) * batch_invstd[ch];
                dxr[ch] += gamma[ch] * batch_invstd[ch] *
                           (dyr[ch] - (float)sum_dy[ch] - xhat * (float)sum_dy_xhat[ch]);
            }
        }
    }
    free(acc);
}

void kd_bn_backward_eval(size_t rows, int c, const float *x, const float *gamma,
                         const float *mean, const float *var, float eps, const float *dy,
                         float *dx, float *dgamma, float *dbeta)
{
    for (int ch = 0; ch < c; ch++) {
        float invstd = 1.0f / sqrtf(var[ch] + eps);
        double sdy = 0, sdyx = 0;
        for (size_t r = 0; r < rows; r++) {
            float d = dy[r * c + ch];
            sdy += d;
            sdyx += d * (x[r * c + ch] - mean[ch]) * invstd;
            if (dx)
                dx[r * c + ch] += d * gamma[ch] * invstd;
        }
        dgamma[ch] += (float)sdyx;
        dbeta[ch] += (float)sdy;
    }
}

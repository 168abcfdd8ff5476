/* Batch normalisation over the rows (N*H*W) of an NHWC tensor, per channel.
 * Rows are split among the threads; per-part sums are kept in double (a
 * batch of 128 28x28 images sums 100,352 values per channel) and combined
 * in part order, so a given thread count always gives the same bits. */
#include "tensor.h"

#include <math.h>
#include <string.h>

size_t kd_bn_scratch_doubles(int c) { return (size_t)kd_threads() * 2 * (size_t)c; }

static int bn_parts(size_t rows) { return (int)KD_MIN((size_t)kd_threads(), KD_MAX(rows / 64, 1)); }

struct bn_job {
    size_t rows;
    int c;
    const float *x, *dy, *gamma, *beta, *mean, *invstd;
    float *y, *dx;
    double *acc; /* parts x 2c */
    bool assign; /* dx is written, not added to */
    bool relu;   /* forward: max(y, 0) in the same pass */
};

/* Sums of x and x^2 in one pass.  In double, E[x^2] - E[x]^2 keeps ~1e-9
 * relative precision, ample for activations whose mean is not 1e4 times
 * their spread. */
KD_CLONES static void sum_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    double *s = j->acc + (size_t)part * 2 * j->c, *sq = s + j->c;
    memset(s, 0, sizeof(double) * 2 * j->c);
    for (size_t r = b; r < e; r++)
        for (int ch = 0; ch < j->c; ch++) {
            double v = j->x[r * j->c + ch];
            s[ch] += v;
            sq[ch] += v * v;
        }
}

/* y = x * a + b per channel, with a and b precomputed in invstd and mean. */
KD_CLONES static void affine_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    const float *a = j->invstd, *off = j->mean;
    if (j->relu) {
        for (size_t r = b; r < e; r++)
            for (int ch = 0; ch < j->c; ch++) {
                float v = j->x[r * j->c + ch] * a[ch] + off[ch];
                j->y[r * j->c + ch] = v < 0 ? 0 : v;
            }
        return;
    }
    for (size_t r = b; r < e; r++)
        for (int ch = 0; ch < j->c; ch++)
            j->y[r * j->c + ch] = j->x[r * j->c + ch] * a[ch] + off[ch];
}

/* Sum over parts, in part order, of slot `which` (0 or 1) of each part. */
static double part_total(const struct bn_job *j, int parts, int which, int ch)
{
    double t = 0;
    for (int p = 0; p < parts; p++)
        t += j->acc[(size_t)p * 2 * j->c + (size_t)which * j->c + ch];
    return t;
}

void kd_bn_forward_train(size_t rows, int c, const float *x, const float *gamma,
                         const float *beta, float eps, float momentum, float *moving_mean,
                         float *moving_var, float *batch_mean, float *batch_invstd, float *y,
                         double *scratch, float *ab, bool relu)
{
    int parts = bn_parts(rows);
    struct bn_job j = {rows,         c, x,    NULL,    gamma, beta, batch_mean,
                       batch_invstd, y, NULL, scratch, false, false};
    kd_parallel_parts(parts, sum_part, &j);
    for (int ch = 0; ch < c; ch++) {
        double mean = part_total(&j, parts, 0, ch) / (double)rows;
        double var = part_total(&j, parts, 1, ch) / (double)rows - mean * mean;
        if (var < 0)
            var = 0;
        batch_mean[ch] = (float)mean;
        batch_invstd[ch] = (float)(1.0 / sqrt(var + eps));
        moving_mean[ch] = momentum * moving_mean[ch] + (1.0f - momentum) * batch_mean[ch];
        moving_var[ch] = momentum * moving_var[ch] + (1.0f - momentum) * (float)var;
        ab[ch] = batch_invstd[ch] * gamma[ch];
        ab[c + ch] = beta[ch] - batch_mean[ch] * ab[ch];
    }
    struct bn_job aj = {rows, c, x, NULL, NULL, NULL, ab + c, ab, y, NULL, NULL, false, relu};
    kd_parallel_parts(parts, affine_part, &aj);
}

void kd_bn_forward_eval(size_t rows, int c, const float *x, const float *gamma,
                        const float *beta, const float *mean, const float *var, float eps,
                        float *y, float *ab, bool relu)
{
    for (int ch = 0; ch < c; ch++) {
        ab[ch] = gamma[ch] / sqrtf(var[ch] + eps);
        ab[c + ch] = beta[ch] - mean[ch] * ab[ch];
    }
    struct bn_job j = {rows, c, x, NULL, NULL, NULL, ab + c, ab, y, NULL, NULL, false, relu};
    kd_parallel_parts(bn_parts(rows), affine_part, &j);
}

KD_CLONES static void grad_sums_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    double *sdy = j->acc + (size_t)part * 2 * j->c, *sdyx = sdy + j->c;
    memset(sdy, 0, sizeof(double) * 2 * j->c);
    for (size_t r = b; r < e; r++)
        for (int ch = 0; ch < j->c; ch++) {
            float d = j->dy[r * j->c + ch];
            float xhat = (j->x[r * j->c + ch] - j->mean[ch]) * j->invstd[ch];
            sdy[ch] += d;
            sdyx[ch] += (double)d * xhat;
        }
}

/* dx += gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); the
 * per-channel means travel in y (as floats: mean dy, mean dy*xhat). */
KD_CLONES static void dx_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    const float *mdy = j->y, *mdyx = j->y + j->c;
    for (size_t r = b; r < e; r++)
        for (int ch = 0; ch < j->c; ch++) {
            float xhat = (j->x[r * j->c + ch] - j->mean[ch]) * j->invstd[ch];
            float d = j->gamma[ch] * j->invstd[ch] *
                      (j->dy[r * j->c + ch] - mdy[ch] - xhat * mdyx[ch]);
            if (j->assign)
                j->dx[r * j->c + ch] = d;
            else
                j->dx[r * j->c + ch] += d;
        }
}

void kd_bn_backward_train(size_t rows, int c, const float *x, const float *gamma,
                          const float *batch_mean, const float *batch_invstd, const float *dy,
                          float *dx, bool assign, float *dgamma, float *dbeta, double *scratch,
                          float *ab)
{
    int parts = bn_parts(rows);
    struct bn_job j = {rows,         c,  x,  dy,      gamma, NULL, batch_mean,
                       batch_invstd, ab, dx, scratch, assign, false};
    kd_parallel_parts(parts, grad_sums_part, &j);
    for (int ch = 0; ch < c; ch++) {
        double sdy = part_total(&j, parts, 0, ch), sdyx = part_total(&j, parts, 1, ch);
        dgamma[ch] += (float)sdyx;
        dbeta[ch] += (float)sdy;
        ab[ch] = (float)(sdy / (double)rows);
        ab[c + ch] = (float)(sdyx / (double)rows);
    }
    if (dx)
        kd_parallel_parts(parts, dx_part, &j);
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

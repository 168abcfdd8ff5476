/* Element-wise activations and the channel softmax, forward and backward. */
#include "kernels.h"

#include <math.h>

/* NaN in, NaN out: a diverging network must not be hidden by its activations. */
static inline float relu6f(float v) { return v < 0 ? 0 : (v > 6 ? 6 : v); }

/* ---- the softmax family: the one softmax, log-sum-exp and cross-entropy ---- */

double kd_log_sum_exp(const float *z, int k, double t, double *max_out)
{
    double mx = z[0], sum = 0;
    for (int i = 1; i < k; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < k; i++)
        sum += exp((z[i] - mx) / t);
    *max_out = mx;
    return log(sum);
}

double kd_cross_entropy(const float *z, int k, int y)
{
    double mx, lse = kd_log_sum_exp(z, k, 1.0, &mx);
    return -((z[y] - mx) - lse);
}

void kd_softmax_rows(size_t rows, int c, const float *z, double t, float *p)
{
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * c;
        float *pr = p + r * c;
        double mx = zr[0], sum = 0;
        for (int i = 1; i < c; i++)
            mx = zr[i] > mx ? zr[i] : mx;
        for (int i = 0; i < c; i++)
            sum += exp((zr[i] - mx) / t);
        for (int i = 0; i < c; i++)
            pr[i] = (float)(exp((zr[i] - mx) / t) / sum);
    }
}

struct act_job {
    const kd_kernels *kern; /* sigmoid and swish: the vectorised exp */
    kd_act act;
    const float *x, *y, *dy;
    float *out;
    bool assign; /* backward: write dx instead of adding to it */
};

/* The log activation's floor: a probability that underflowed to 0 gives a
 * finite (very negative) logit instead of -inf. */
#define KD_LOG_FLOOR 1e-30f

KD_CLONES static void forward_range(size_t begin, size_t end, void *arg)
{
    const struct act_job *j = arg;
    const float *x = j->x;
    float *y = j->out;
    switch (j->act) {
    case KD_ACT_RELU:
        for (size_t i = begin; i < end; i++)
            y[i] = x[i] < 0 ? 0 : x[i];
        break;
    case KD_ACT_RELU6:
        for (size_t i = begin; i < end; i++)
            y[i] = relu6f(x[i]);
        break;
    case KD_ACT_SIGMOID:
        j->kern->sigmoid(x + begin, y + begin, end - begin);
        break;
    case KD_ACT_HARD_SIGMOID:
        for (size_t i = begin; i < end; i++)
            y[i] = relu6f(x[i] + 3.0f) * (1.0f / 6.0f);
        break;
    case KD_ACT_SWISH:
        j->kern->swish(x + begin, y + begin, end - begin);
        break;
    case KD_ACT_HARD_SWISH:
        for (size_t i = begin; i < end; i++)
            y[i] = x[i] * relu6f(x[i] + 3.0f) * (1.0f / 6.0f);
        break;
    case KD_ACT_TANH:
        for (size_t i = begin; i < end; i++)
            y[i] = tanhf(x[i]);
        break;
    case KD_ACT_SOFTMAX:
        break;
    case KD_ACT_LOG:
        for (size_t i = begin; i < end; i++)
            y[i] = logf(fmaxf(x[i], KD_LOG_FLOOR));
        break;
    }
}

/* dx (+)= dy * f'(x), the derivative at a kink from the side the common
 * frameworks use (relu'(0) = 0).  Loops are unswitched on `assign` by the
 * compiler. */
#define STORE(i, v) (assign ? (dx[i] = (v)) : (dx[i] += (v)))
KD_CLONES static void backward_range(size_t begin, size_t end, void *arg)
{
    const struct act_job *j = arg;
    const float *x = j->x, *y = j->y, *dy = j->dy;
    float *dx = j->out;
    const bool assign = j->assign;
    switch (j->act) {
    case KD_ACT_RELU: /* y > 0 exactly where x > 0 (NaN: neither) */
        for (size_t i = begin; i < end; i++)
            STORE(i, y[i] > 0 ? dy[i] : 0.0f);
        break;
    case KD_ACT_RELU6:
        for (size_t i = begin; i < end; i++)
            STORE(i, (x[i] > 0 && x[i] < 6) ? dy[i] : 0.0f);
        break;
    case KD_ACT_SIGMOID:
        for (size_t i = begin; i < end; i++)
            STORE(i, dy[i] * y[i] * (1.0f - y[i]));
        break;
    case KD_ACT_HARD_SIGMOID:
        for (size_t i = begin; i < end; i++)
            STORE(i, (x[i] > -3.0f && x[i] < 3.0f) ? dy[i] * (1.0f / 6.0f) : 0.0f);
        break;
    case KD_ACT_SWISH:
        j->kern->swish_backward(x + begin, dy + begin, dx + begin, end - begin, assign);
        break;
    case KD_ACT_HARD_SWISH:
        for (size_t i = begin; i < end; i++) {
            float v = x[i];
            float d = v <= -3.0f ? 0.0f : (v >= 3.0f ? 1.0f : (2.0f * v + 3.0f) * (1.0f / 6.0f));
            STORE(i, dy[i] * d);
        }
        break;
    case KD_ACT_TANH:
        for (size_t i = begin; i < end; i++)
            STORE(i, dy[i] * (1.0f - y[i] * y[i]));
        break;
    case KD_ACT_SOFTMAX: /* rows, handled by the caller */
        break;
    case KD_ACT_LOG: /* flat below the floor */
        for (size_t i = begin; i < end; i++)
            STORE(i, x[i] > KD_LOG_FLOOR ? dy[i] / x[i] : 0.0f);
        break;
    }
}

void kd_act_forward(kd_act act, size_t rows, int c, const float *x, float *y)
{
    if (act == KD_ACT_SOFTMAX) {
        kd_softmax_rows(rows, c, x, 1.0, y);
        return;
    }
    struct act_job j = {kd_kernels_active(), act, x, NULL, NULL, y, false};
    kd_parallel_for(rows * (size_t)c, 1 << 15, forward_range, &j);
}

void kd_act_backward(kd_act act, size_t rows, int c, const float *x, const float *y,
                     const float *dy, float *dx, bool assign)
{
    if (act == KD_ACT_SOFTMAX) {
        for (size_t r = 0; r < rows; r++) {
            const float *yr = y + r * c, *dyr = dy + r * c;
            float dot = 0;
            for (int i = 0; i < c; i++)
                dot += yr[i] * dyr[i];
            for (int i = 0; i < c; i++)
                STORE(r * c + i, yr[i] * (dyr[i] - dot));
        }
        return;
    }
    struct act_job j = {kd_kernels_active(), act, x, y, dy, dx, assign};
    kd_parallel_for(rows * (size_t)c, 1 << 15, backward_range, &j);
}

/* Element-wise activations and the channel softmax, forward and backward. */
#include "tensor.h"

#include <math.h>

/* NaN in, NaN out: a diverging network must not be hidden by its activations. */
static inline float relu6f(float v) { return v < 0 ? 0 : (v > 6 ? 6 : v); }
static inline float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

void kd_softmax_rows(size_t rows, int c, const float *z, float temperature, float *p)
{
    float inv_t = 1.0f / temperature;
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * c;
        float *pr = p + r * c;
        float mx = zr[0];
        for (int i = 1; i < c; i++)
            mx = zr[i] > mx ? zr[i] : mx;
        double sum = 0;
        for (int i = 0; i < c; i++) {
            pr[i] = expf((zr[i] - mx) * inv_t);
            sum += pr[i];
        }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < c; i++)
            pr[i] *= inv;
    }
}

struct act_job {
    kd_act act;
    const float *x, *y, *dy;
    float *out;
};

static void forward_range(size_t begin, size_t end, void *arg)
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
        for (size_t i = begin; i < end; i++)
            y[i] = sigmoidf(x[i]);
        break;
    case KD_ACT_HARD_SIGMOID:
        for (size_t i = begin; i < end; i++)
            y[i] = relu6f(x[i] + 3.0f) * (1.0f / 6.0f);
        break;
    case KD_ACT_SWISH:
        for (size_t i = begin; i < end; i++)
            y[i] = x[i] * sigmoidf(x[i]);
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
    }
}

/* dx += dy * f'(x); the derivative at a kink takes the value from the right
 * side only where that matches the common frameworks (relu'(0) = 0). */
static void backward_range(size_t begin, size_t end, void *arg)
{
    const struct act_job *j = arg;
    const float *x = j->x, *y = j->y, *dy = j->dy;
    float *dx = j->out;
    switch (j->act) {
    case KD_ACT_RELU:
        for (size_t i = begin; i < end; i++)
            dx[i] += x[i] > 0 ? dy[i] : 0;
        break;
    case KD_ACT_RELU6:
        for (size_t i = begin; i < end; i++)
            dx[i] += (x[i] > 0 && x[i] < 6) ? dy[i] : 0;
        break;
    case KD_ACT_SIGMOID:
        for (size_t i = begin; i < end; i++)
            dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case KD_ACT_HARD_SIGMOID:
        for (size_t i = begin; i < end; i++)
            dx[i] += (x[i] > -3.0f && x[i] < 3.0f) ? dy[i] * (1.0f / 6.0f) : 0;
        break;
    case KD_ACT_SWISH:
        for (size_t i = begin; i < end; i++) {
            float s = sigmoidf(x[i]);
            dx[i] += dy[i] * (s + x[i] * s * (1.0f - s));
        }
        break;
    case KD_ACT_HARD_SWISH:
        for (size_t i = begin; i < end; i++) {
            float v = x[i], d;
            if (v <= -3.0f)
                d = 0;
            else if (v >= 3.0f)
                d = 1;
            else
                d = (2.0f * v + 3.0f) * (1.0f / 6.0f);
            dx[i] += dy[i] * d;
        }
        break;
    case KD_ACT_TANH:
        for (size_t i = begin; i < end; i++)
            dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        break;
    case KD_ACT_SOFTMAX:
        break;
    }
}

void kd_act_forward(kd_act act, size_t rows, int c, const float *x, float *y)
{
    if (act == KD_ACT_SOFTMAX) {
        kd_softmax_rows(rows, c, x, 1.0f, y);
        return;
    }
    struct act_job j = {act, x, NULL, NULL, y};
    kd_parallel_for(rows * (size_t)c, 1 << 15, forward_range, &j);
}

void kd_act_backward(kd_act act, size_t rows, int c, const float *x, const float *y,
                     const float *dy, float *dx)
{
    if (act == KD_ACT_SOFTMAX) {
        for (size_t r = 0; r < rows; r++) {
            const float *yr = y + r * c, *dyr = dy + r * c;
            float dot = 0;
            for (int i = 0; i < c; i++)
                dot += yr[i] * dyr[i];
            for (int i = 0; i < c; i++)
                dx[r * c + i] += yr[i] * (dyr[i] - dot);
        }
        return;
    }
    struct act_job j = {act, x, y, dy, dx};
    kd_parallel_for(rows * (size_t)c, 1 << 15, backward_range, &j);
}

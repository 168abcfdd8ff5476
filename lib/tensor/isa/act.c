/* Activations built on exp, vectorised (a loop calling libm's expf cannot
 * be): sigmoid, swish and swish's derivative.  exp is computed in registers
 * by Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and Cephes' degree-6
 * polynomial (within 2 ulp of exp); above 88.72 it is +inf, below -87.34 it
 * is 0 (no denormals), NaN stays NaN. */
#include "isa.h"

#include <stdint.h>

typedef int32_t kd_vi __attribute__((vector_size(KD_VL * sizeof(int32_t))));

static inline kd_vf splat(float v) { return (kd_vf){0} + v; }

/* mask ? a : b, mask lanes all ones or all zeros (a vector comparison). */
static inline kd_vf select(kd_vi mask, kd_vf a, kd_vf b)
{
    return (kd_vf)((mask & (kd_vi)a) | (~mask & (kd_vi)b));
}

static inline kd_vf vexp(kd_vf x)
{
    const kd_vf hi = splat(88.72283f), lo = splat(-87.33654f);
    kd_vi over = x > hi, under = x < lo;
    kd_vf xc = select(over, hi, select(under, lo, x));
    kd_vf t = xc * 1.44269504088896341f;
    kd_vf half = select(t >= 0.0f, splat(0.5f), splat(-0.5f));
    kd_vi n = __builtin_convertvector(t + half, kd_vi);
    kd_vf fn = __builtin_convertvector(n, kd_vf);
    kd_vf r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    kd_vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    kd_vf e = p * r * r + r + 1.0f;
    /* 2^n as 2^(n>>1) * 2^(n - (n>>1)): each exponent stays in range */
    kd_vi n1 = n >> 1, n2 = n - n1;
    kd_vf s1 = (kd_vf)((n1 + 127) << 23), s2 = (kd_vf)((n2 + 127) << 23);
    kd_vf out = e * s1 * s2;
    return select(over, splat(__builtin_inff()), select(under, splat(0.0f), out));
}

static inline kd_vf vsigmoid(kd_vf x) { return 1.0f / (1.0f + vexp(-x)); }

/* y = f(x) over n floats; a tail shorter than a register goes through a
 * zero-padded register, so that every element takes the same operations. */
#define MAP(NAME, EXPR)                                                                        \
    void KD_ISA(NAME)(const float *x, float *y, size_t n)                                      \
    {                                                                                          \
        size_t i = 0;                                                                          \
        for (; i + KD_VL <= n; i += KD_VL) {                                                   \
            kd_vf v = kd_vload(x + i);                                                         \
            kd_vstore(y + i, EXPR);                                                            \
        }                                                                                      \
        if (i < n) {                                                                           \
            float in[KD_VL] = {0}, out[KD_VL];                                                 \
            memcpy(in, x + i, sizeof(float) * (n - i));                                        \
            kd_vf v = kd_vload(in);                                                            \
            kd_vstore(out, EXPR);                                                              \
            memcpy(y + i, out, sizeof(float) * (n - i));                                       \
        }                                                                                      \
    }

MAP(kd_exp, vexp(v))
MAP(kd_sigmoid, vsigmoid(v))
MAP(kd_swish, v * vsigmoid(v))

/* dx (+)= dy * swish'(x), swish'(x) = s + x s (1 - s), s = sigmoid(x). */
static inline kd_vf swish_grad(kd_vf v, kd_vf g)
{
    kd_vf s = vsigmoid(v);
    return g * (s + v * s * (1.0f - s));
}

void KD_ISA(kd_swish_backward)(const float *x, const float *dy, float *dx, size_t n,
                               bool assign)
{
    size_t i = 0;
    for (; i + KD_VL <= n; i += KD_VL) {
        kd_vf d = swish_grad(kd_vload(x + i), kd_vload(dy + i));
        kd_vstore(dx + i, assign ? d : kd_vload(dx + i) + d);
    }
    if (i < n) {
        float in[KD_VL] = {0}, g[KD_VL] = {0}, acc[KD_VL] = {0};
        memcpy(in, x + i, sizeof(float) * (n - i));
        memcpy(g, dy + i, sizeof(float) * (n - i));
        kd_vf d = swish_grad(kd_vload(in), kd_vload(g));
        if (!assign) {
            memcpy(acc, dx + i, sizeof(float) * (n - i));
            d = kd_vload(acc) + d;
        }
        kd_vstore(acc, d);
        memcpy(dx + i, acc, sizeof(float) * (n - i));
    }
}

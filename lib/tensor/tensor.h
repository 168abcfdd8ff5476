/* tensor: numerical kernels on float32 NHWC tensors (channels last).
 * Internal to libkdens; depends on core and OpenBLAS.
 *
 * Convention for every backward kernel: gradients are *accumulated* (+=)
 * into dx, dw and db, so that a tensor read by several layers gets the sum
 * of their gradients without extra buffers. */
#ifndef KD_TENSOR_H
#define KD_TENSOR_H

#include "../core/core.h"

/* Row-major C = alpha * op(A) * op(B) + beta * C on the library's threads
 * (lib/tensor/gemm.c; the kernels.h table has the single-threaded kernel). */
void kd_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
             int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* The taps [*k0, *k1) of a window of k taps `dil` apart at output o (stride,
 * padding before) that fall inside an input of `size` (tap t reads
 * o * stride - pad + t * dil): loops over them need no bounds checks. */
static inline void kd_window_dilated(int o, int stride, int pad, int k, int dil, int size,
                                     int *k0, int *k1)
{
    int start = o * stride - pad;
    *k0 = start < 0 ? (-start + dil - 1) / dil : 0;
    *k1 = size > start ? KD_MIN(k, (size - start + dil - 1) / dil) : 0;
}

/* The same for a contiguous window (dil = 1; pools). */
static inline void kd_window(int o, int stride, int pad, int k, int size, int *k0, int *k1)
{
    int start = o * stride - pad;
    *k0 = start < 0 ? -start : 0;
    *k1 = KD_MIN(k, size - start);
}

/* ---- convolution -------------------------------------------------------- */

typedef enum kd_conv_algo {
    KD_CONV_GEMM_1X1,  /* 1x1, stride 1, no padding: the input is the GEMM operand */
    KD_CONV_IM2COL,    /* im2col (per group) + GEMM over the batch */
    KD_CONV_DEPTHWISE, /* one input channel per group: direct loops */
    KD_CONV_DIRECT,    /* output channels in multiples of 16: register-tiled direct loops */
    KD_CONV_WINOGRAD   /* 3x3 stride 1, channels in multiples of 16: Winograd F(4x4, 3x3) */
} kd_conv_algo;

typedef struct kd_conv_geom {
    int n, h, w, c;       /* input */
    int oh, ow, oc;       /* output */
    int kh, kw, sh, sw;   /* kernel and strides */
    int pt, pl;           /* padding on top and left (bottom/right follow from oh, ow) */
    int groups;
    int dh, dw;           /* dilation, >= 1 (1: none): tap (ky, kx) reads input
                           * (oy * sh + ky * dh - pt, ox * sw + kx * dw - pl) */
} kd_conv_geom;

/* Whether the taps of a window are spread apart: a dilation > 1 along an
 * axis where the kernel has more than one tap (a dilated 1-tap axis reads
 * what an undilated one reads).  Dilated layers take the general paths
 * (im2col + GEMM, depthwise loops) only: the direct and Winograd kernels
 * read contiguous windows. */
static inline bool kd_conv_dilated(const kd_conv_geom *g)
{
    return (g->dh > 1 && g->kh > 1) || (g->dw > 1 && g->kw > 1);
}

kd_conv_algo kd_conv_choose(const kd_conv_geom *g);
/* For benchmarks: -1 (default) lets kd_conv_choose decide; KD_CONV_IM2COL
 * forces the general path for any non-depthwise shape, KD_CONV_DIRECT the
 * direct kernels wherever they apply (never to a dilated layer), likewise
 * KD_CONV_WINOGRAD. Not thread-safe. */
extern int kd_conv_forced_algo;
/* Floats of workspace the convolution needs (forward and backward). */
size_t kd_conv_workspace(const kd_conv_geom *g);
/* Weights are [kh][kw][c/groups][oc] (Keras layout); bias may be NULL. */
void kd_conv_forward(const kd_conv_geom *g, const float *x, const float *w, const float *bias,
                     float *y, float *work);
/* dx may be NULL (input needs no gradient); with assign, dx is written rather
 * than added to.  db may be NULL (no bias). */
void kd_conv_backward(const kd_conv_geom *g, const float *x, const float *w, const float *dy,
                      float *dx, bool assign, float *dw, float *db, float *work);

/* ---- pooling -------------------------------------------------------------- */

typedef struct kd_pool_geom {
    int n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl;
} kd_pool_geom;

/* argmax receives, per output element, the flat input index of the maximum. */
void kd_maxpool_forward(const kd_pool_geom *g, const float *x, float *y, int32_t *argmax);
void kd_maxpool_backward(const kd_pool_geom *g, const float *dy, const int32_t *argmax,
                         size_t out_count, float *dx);
/* Averages over the window cells inside the input (padding excluded, as Keras). */
void kd_avgpool_forward(const kd_pool_geom *g, const float *x, float *y);
void kd_avgpool_backward(const kd_pool_geom *g, const float *dy, float *dx);

/* ---- batch normalisation (per channel over rows = N*H*W) ------------------ */

/* Scratch the training kernels need: kd_bn_scratch_doubles(c) doubles, plus
 * 2c floats (ab) for per-channel coefficients. */
size_t kd_bn_scratch_doubles(int c);
/* Synchronised batch statistics for data-parallel training: the sums run
 * over the rows of every rank (global_rows in all), through the
 * communicator; a failing sum is kept in `failed` (the first one) and the
 * local sums used instead.  NULL: this process's rows alone. */
typedef struct kd_bn_sync {
    kdens_comm *comm;
    size_t global_rows;
    kdens_status failed;
} kd_bn_sync;

/* Training: normalise with the batch statistics, return them (mean and
 * 1/sqrt(var+eps)) for the backward pass and fold them into the moving
 * statistics with the given momentum. */
void kd_bn_forward_train(size_t rows, int c, const float *x, const float *gamma,
                         const float *beta, float eps, float momentum, float *moving_mean,
                         float *moving_var, float *batch_mean, float *batch_invstd, float *y,
                         double *scratch, float *ab, bool relu, kd_bn_sync *sync);
void kd_bn_forward_eval(size_t rows, int c, const float *x, const float *gamma,
                        const float *beta, const float *mean, const float *var, float eps,
                        float *y, float *ab, bool relu);
/* (relu: y is written through max(., 0) in the same pass, the batch norm
 * and a ReLU that alone reads it fused; a NaN stays NaN, as in kd_act.
 * Backward, relu_y is that ReLU's output or NULL: dy is then the ReLU's
 * gradient, taken as zero where relu_y is not > 0, as kd_act_backward does.) */
void kd_bn_backward_train(size_t rows, int c, const float *x, const float *gamma,
                          const float *batch_mean, const float *batch_invstd, const float *dy,
                          const float *relu_y, float *dx, bool assign, float *dgamma,
                          float *dbeta, double *scratch, float *ab, kd_bn_sync *sync);
void kd_bn_backward_eval(size_t rows, int c, const float *x, const float *gamma,
                         const float *mean, const float *var, float eps, const float *dy,
                         const float *relu_y, float *dx, float *dgamma, float *dbeta);

/* ---- element-wise activations ---------------------------------------------- */

typedef enum kd_act {
    KD_ACT_RELU,
    KD_ACT_RELU6,
    KD_ACT_SIGMOID,
    KD_ACT_HARD_SIGMOID, /* relu6(x + 3) / 6, as Keras 2.13+ and MobileNetV3 */
    KD_ACT_SWISH,        /* x * sigmoid(x) */
    KD_ACT_HARD_SWISH,   /* x * relu6(x + 3) / 6 */
    KD_ACT_TANH,
    KD_ACT_SOFTMAX,      /* over the channel axis */
    KD_ACT_LOG           /* ln(max(x, 1e-30)): probabilities back to logits */
} kd_act;

void kd_act_forward(kd_act act, size_t rows, int c, const float *x, float *y);
/* dx = (assign) or += dy * f'(x).  ReLU's mask is read from y (y > 0 exactly
 * where x > 0), so its input need not be kept. */
void kd_act_backward(kd_act act, size_t rows, int c, const float *x, const float *y,
                     const float *dy, float *dx, bool assign);

/* Softmax of each row of z / temperature (numerically stable). */
/* The softmax family, each written once (lib/tensor/act.c), in double:
 * p = softmax(z / t) per row of c; log sum exp(z / t) of k values (and
 * their max, *max_out); the cross-entropy -log softmax(z)[y]. */
void kd_softmax_rows(size_t rows, int c, const float *z, double t, float *p);
double kd_log_sum_exp(const float *z, int k, double t, double *max_out);
double kd_cross_entropy(const float *z, int k, int y);

#endif

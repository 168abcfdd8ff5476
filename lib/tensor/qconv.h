/* Quantised convolution and dense layers: unsigned 8-bit activations with a
 * zero point, signed 8-bit weights per output channel (symmetric), exact
 * int32 sums, and one fused requantisation with the activation's clamp.
 *
 * Real values: an activation x = s_x (q_x - z_x), a weight w = s_w[n] q_w,
 * so a layer's output before its bias is
 *     y[n] = s_x s_w[n] (sum_k q_x[k] q_w[k][n] - z_x sum_k q_w[k][n]),
 * the second sum precomputed per channel (corr).  The u8 x s8 product is
 * the operand order of the VNNI instruction vpdpbusd.
 *
 * Internal to libkdens; depends on core. */
#ifndef KD_QCONV_H
#define KD_QCONV_H

#include "tensor.h"

/* Rows of a kernel tile: every kernel reads KD_QROWS rows and stores the
 * first `rows` of them, so callers keep KD_QROWS rows readable. */
#define KD_QROWS 12

/* One tile for a kernel (isa/qgemm.c): KD_QROWS rows of the activation
 * matrix, row r starting at a + row_off[r], each made of `taps` segments
 * of `seg` bytes (seg a multiple of 4), segment t at + tap_off[t]: a
 * convolution's taps read straight from its padded input.  Weights are
 * packed in panels of 16 output channels: panel p, k-quad g, channel j,
 * byte i at w[p * K * 16 + g * 64 + 4 j + i] = W[4g + i][16p + j] with
 * K = taps * seg.  Results: c[r * ldc + 16 p + j], int32, for the first
 * `rows` rows (all KD_QROWS are read). */
typedef struct kd_qgemm_args {
    const uint8_t *a;
    const size_t *row_off;
    int taps;
    const int32_t *tap_off;
    int seg;
    const int8_t *w;
    int panels;
    int rows;
    int32_t *c;
    int ldc;
    /* For kernels that requantise in registers (kd_qgemm_kernel_u8): the
     * first n columns of the output rows written as kd_requant_u8 would
     * (out + r * out_stride + j), with corr, mul and add from column 0 of
     * this call's first panel.  c is not written then. */
    const int32_t *corr;
    const float *mul, *add;
    float lo, hi;
    uint8_t *out;
    size_t out_stride;
    int n;
} kd_qgemm_args;

typedef void (*kd_qgemm_fn)(const kd_qgemm_args *q);

/* The int8 kernel of the active path: the VNNI kernel where the path has
 * one and the processor the instruction, else the path's portable one.
 * All return the same bits. */
kd_qgemm_fn kd_qgemm_kernel(void);
/* The kernel of the active path that also requantises to u8 in registers
 * (bit for bit kd_requant_u8 of the sums), or NULL where there is none:
 * AVX512-VNNI, whose embedded-rounding multiply and add are never fused. */
kd_qgemm_fn kd_qgemm_kernel_u8(void);
/* For tests and benchmarks: false makes kd_qgemm_kernel() ignore VNNI.
 * Not thread-safe. */
extern bool kd_qgemm_allow_vnni;
/* The name of the kernel kd_qgemm_kernel() returns ("avx512-vnni",
 * "avx-vnni", "avx512", "avx2", "generic"). */
const char *kd_qgemm_kernel_name(void);

/* Activation clamps folded into the requantisation. */
typedef enum kd_qact { KD_QACT_NONE = 0, KD_QACT_RELU = 1, KD_QACT_RELU6 = 2 } kd_qact;

/* A prepared layer.  The input is copied into a padded buffer whose pixels
 * have cp = c rounded up to 4 channels (the weights of the extra channels
 * are 0), so that every tap is a run of whole k-quads; a dense layer is a
 * 1x1 convolution over a 1x1xK input. */
typedef struct kd_qconv {
    kd_conv_geom g;       /* g.n unused; one group */
    int cp;               /* channels of a padded pixel */
    bool in_place;        /* the input needs no padding: taps read it directly (dense, 1x1) */
    int k, kp, n, panels; /* K = kh kw c, kh kw cp, output channels, N / 16 rounded up */
    int8_t *w;            /* packed, panels * kp * 16 bytes */
    int32_t *tap_off;     /* offset of each tap in the padded input */
    int32_t *corr;        /* z_x * column sums of the weights, per channel */
    float *mul_f, *add_f; /* float output: (acc - corr) * mul_f + add_f */
    float *mul_q, *add_q; /* u8 output: the same in units of the output scale, + z_y + 0.5 */
    float lo_f, hi_f, lo_q, hi_q; /* clamps (activation and u8 range) */
    uint8_t in_zp;
} kd_qconv;

/* Prepare from weights q_w [K][N] (Keras order), per-channel weight scales,
 * the float bias (NULL: none), the input's scale and zero point, and the
 * output's (out_scale 0: no u8 output).  Errors: KDENS_E_NOMEM. */
kdens_status kd_qconv_init(kd_qconv *q, const kd_conv_geom *g, const int8_t *wq,
                           const float *w_scale, const float *bias, float in_scale, int in_zp,
                           float out_scale, int out_zp, kd_qact act);
void kd_qconv_release(kd_qconv *q);
/* Bytes of the padded input copy of n images (0: read in place). */
size_t kd_qconv_pad_bytes(const kd_qconv *q, size_t n);
/* n images of u8 input x (N x H x W x C) to y8 (u8, may be NULL) and yf
 * (float, may be NULL), on the library's threads with the given kernel --
 * or, when the output is u8 alone, kd_qgemm_kernel_u8() where the path has
 * one (the same bytes); pad holds kd_qconv_pad_bytes(n). */
void kd_qconv_forward(const kd_qconv *q, kd_qgemm_fn kernel, size_t n, const uint8_t *x,
                      uint8_t *y8, float *yf, uint8_t *pad);

/* A two-input add of u8 tensors (a ResNet's residual sum) with its
 * activation's clamp: the real sum s_a (q_a - z_a) + s_b (q_b - z_b),
 * written as u8 in the output's scale and/or as float. */
typedef struct kd_qadd {
    float ma, mb, cq; /* u8 out: q_a ma + q_b mb + cq (z_y and + 0.5 in cq) */
    float fa, fb, cf; /* float out: q_a fa + q_b fb + cf */
    float lo_f, hi_f, lo_q, hi_q;
} kd_qadd;

void kd_qadd_init(kd_qadd *q, float sa, int za, float sb, int zb, float out_scale, int out_zp,
                  kd_qact act);
/* count elements, on the library's threads; y8 or yf may be NULL. */
void kd_qadd_forward(const kd_qadd *q, size_t count, const uint8_t *a, const uint8_t *b,
                     uint8_t *y8, float *yf);

/* Max pooling of u8 tensors: exact, since quantisation preserves order (a
 * window wholly in the padding gives zp, the real 0 of float pooling). */
void kd_qmaxpool(const kd_pool_geom *g, const uint8_t *x, uint8_t zp, uint8_t *y);
/* x = scale (q - zp) for count values, on the library's threads. */
void kd_dequantize_u8(const uint8_t *q, size_t count, float scale, int zp, float *x);

/* q = clamp(round(x / scale) + zp, 0, 255) with inv_scale = 1 / scale;
 * NaN gives 0. */
void kd_quantize_u8(const float *restrict x, size_t count, float inv_scale, int zp,
                    uint8_t *restrict q);
/* The requantisation of int32 sums (qconv.c). */
void kd_requant_f32(const int32_t *restrict acc, int ldc, int rows, int j0, int j1,
                    const int32_t *restrict corr, const float *restrict mul,
                    const float *restrict add, float lo, float hi, float *restrict out,
                    size_t out_stride);
void kd_requant_u8(const int32_t *restrict acc, int ldc, int rows, int j0, int j1,
                   const int32_t *restrict corr, const float *restrict mul,
                   const float *restrict add, float lo, float hi, uint8_t *restrict out,
                   size_t out_stride);

#endif

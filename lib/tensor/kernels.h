/* The dispatched kernels: one table per instruction-set path (the copies of
 * lib/tensor/isa/ compiled for it), chosen at run time by kd_kernels().
 * Everything else in the library is compiled for baseline x86-64. */
#ifndef KD_KERNELS_H
#define KD_KERNELS_H

#include "qconv.h"

typedef struct kd_kernels {
    kd_cpu_path path;
    /* Row-major C = alpha op(A) op(B) + beta C, single-threaded; each
     * element of C is summed over k in the same order whatever m and n. */
    void (*gemm)(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);
    /* Direct convolution over a padded input (conv_direct.h). */
    void (*direct_forward)(const kd_conv_geom *g, const float *xp, int images, const float *w,
                           const float *bias, float *y, bool accumulate);
    void (*direct_backward_weights)(const kd_conv_geom *g, const float *xp, int images,
                                    const float *dy, float *dw);
    /* y = exp(x), sigmoid(x), x sigmoid(x) over n floats (isa/act.c: within
     * 2 ulp of exp; +inf above 88.72, 0 below -87.34, NaN stays NaN). */
    void (*exp)(const float *x, float *y, size_t n);
    void (*sigmoid)(const float *x, float *y, size_t n);
    void (*swish)(const float *x, float *y, size_t n);
    /* dx = (assign) or += dy * swish'(x). */
    void (*swish_backward)(const float *x, const float *dy, float *dx, size_t n, bool assign);
    /* int8 tiles (isa/qgemm.c): the portable kernel compiled for the path,
     * and the VNNI kernel of its registers (NULL on generic), to be used
     * only where kd_cpu_has_vnni(path).  Identical int32 results. */
    kd_qgemm_fn qgemm;
    kd_qgemm_fn qgemm_vnni;
    /* the VNNI kernel requantising to u8 itself (qconv.h), or NULL */
    kd_qgemm_fn qgemm_vnni_u8;
} kd_kernels;

/* The table of the active path (kd_cpu_active()). */
const kd_kernels *kd_kernels_active(void);
/* The table of a given path; NULL when this build or processor lacks it. */
const kd_kernels *kd_kernels_for(kd_cpu_path path);

/* The per-path definitions, named by isa.h's KD_ISA(). */
#define KD_DECLARE_KERNELS(sfx)                                                              \
    void kd_gemm_##sfx(bool trans_a, bool trans_b, int m, int n, int k, float alpha,         \
                       const float *a, int lda, const float *b, int ldb, float beta, float *c, \
                       int ldc);                                                             \
    void kd_direct_forward_##sfx(const kd_conv_geom *g, const float *xp, int images,         \
                                 const float *w, const float *bias, float *y,                \
                                 bool accumulate);                                           \
    void kd_direct_backward_weights_##sfx(const kd_conv_geom *g, const float *xp, int images, \
                                          const float *dy, float *dw);                       \
    void kd_exp_##sfx(const float *x, float *y, size_t n);                                   \
    void kd_sigmoid_##sfx(const float *x, float *y, size_t n);                               \
    void kd_swish_##sfx(const float *x, float *y, size_t n);                                 \
    void kd_swish_backward_##sfx(const float *x, const float *dy, float *dx, size_t n,       \
                                 bool assign);                                               \
    void kd_qgemm_##sfx(const kd_qgemm_args *q);
/* KD_GENERIC_ONLY: a build that compiles lib/tensor/isa/ once, without
 * path flags (the fuzzing harnesses). */
#if defined(__x86_64__) && !defined(KD_GENERIC_ONLY)
#define KD_HAVE_X86_PATHS 1
#endif
KD_DECLARE_KERNELS(generic)
#ifdef KD_HAVE_X86_PATHS
KD_DECLARE_KERNELS(avx2)
KD_DECLARE_KERNELS(avx512)
void kd_qgemm_vnni_avx2(const kd_qgemm_args *q);
void kd_qgemm_vnni_avx512(const kd_qgemm_args *q);
void kd_qgemm_vnni_u8_avx512(const kd_qgemm_args *q);
#endif

#endif

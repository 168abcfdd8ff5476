/* GEMM for the layers: the active path's kernel (kernels.h), with the rows
 * or columns of C split over the library's threads when the product is
 * large enough.  Each element is summed in the same order whichever part
 * computes it, so the thread count changes no bit. */
#include "kernels.h"

#define KD_GEMM_PARALLEL_FLOPS 4e6 /* below this a split costs more than it saves */

struct gemm_job {
    const kd_kernels *kern;
    bool ta, tb, split_rows;
    int m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
};

static void gemm_range(size_t begin, size_t end, void *arg)
{
    const struct gemm_job *j = arg;
    int b0 = (int)begin, len = (int)(end - begin);
    if (j->split_rows) {
        const float *a = j->ta ? j->a + b0 : j->a + (size_t)b0 * j->lda;
        j->kern->gemm(j->ta, j->tb, len, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb, j->beta,
                      j->c + (size_t)b0 * j->ldc, j->ldc);
    } else {
        const float *b = j->tb ? j->b + (size_t)b0 * j->ldb : j->b + b0;
        j->kern->gemm(j->ta, j->tb, j->m, len, j->k, j->alpha, j->a, j->lda, b, j->ldb, j->beta,
                      j->c + b0, j->ldc);
    }
}

void kd_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
             int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    const kd_kernels *kern = kd_kernels_active();
    if (m <= 0 || n <= 0)
        return;
    if (kd_threads() <= 1 || 2.0 * m * n * k < KD_GEMM_PARALLEL_FLOPS) {
        kern->gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    struct gemm_job j = {kern, trans_a, trans_b, n < 128, m, n, k, lda, ldb, ldc,
                         alpha, beta, a, b, c};
    /* parts of whole register tiles: 16 rows or 64 columns at least */
    size_t len = j.split_rows ? (size_t)m : (size_t)n;
    kd_parallel_for(len, j.split_rows ? 16 : 64, gemm_range, &j);
}

/* Single-precision GEMM, C = alpha op(A) op(B) + beta C (row-major), blocked
 * in the usual way (Goto): a KC x NC block of op(B) is packed into panels of
 * NR columns, an MC x KC block of op(A) into strips of MR rows, and a
 * register-tiled micro-kernel runs MR x NR tiles over KC.
 *
 * Summation order: every element of C is the sum over k in blocks of KC,
 * each block summed in k order in one accumulator, then added to C.  That
 * order depends on k alone — not on m or n, the tile an element falls in,
 * or the packing block sizes — so a row's result does not change with the
 * number of rows (the batch size) and a thread split of the rows or columns
 * changes no bit.  Edge tiles run the full tile on zero-padded panels and
 * store through a temporary, so they too perform the same operations. */
#include "isa.h"

#define NR (2 * KD_VL)
#if KD_VL == 16
#define MR 12 /* 24 of 32 zmm registers accumulate */
#else
#define MR 6 /* 12 of 16 ymm or xmm registers accumulate */
#endif
#define KC 256
#define MC (MR * 12)
#define NC (NR * 32)

/* Rows [i0, i0+mc) x columns [p0, p0+kc) of op(A) into strips of MR rows:
 * strip s holds, for each kk, MR slots; a last strip of fewer rows leaves
 * the rest unset (its micro-kernel reads only its rows). */
static void pack_a(bool trans, const float *a, int lda, int i0, int mc, int p0, int kc,
                   float *ap)
{
    for (int s = 0; s < mc; s += MR) {
        float *dst = ap + (size_t)s * kc;
        int rows = KD_MIN(MR, mc - s);
        if (!trans) {
            for (int r = 0; r < rows; r++) {
                const float *src = a + (size_t)(i0 + s + r) * lda + p0;
                for (int kk = 0; kk < kc; kk++)
                    dst[kk * MR + r] = src[kk];
            }
        } else {
            for (int kk = 0; kk < kc; kk++) {
                const float *src = a + (size_t)(p0 + kk) * lda + i0 + s;
                for (int r = 0; r < rows; r++)
                    dst[kk * MR + r] = src[r];
            }
        }
    }
}

/* Rows [p0, p0+kc) x columns [j0, j0+nc) of op(B) into panels of NR columns
 * (zero past the last column). */
static void pack_b(bool trans, const float *b, int ldb, int p0, int kc, int j0, int nc,
                   float *bp)
{
    for (int s = 0; s < nc; s += NR) {
        float *dst = bp + (size_t)s * kc;
        int cols = KD_MIN(NR, nc - s);
        if (trans) {
            /* op(B)'s column j is row j of b: read it contiguously */
            for (int c = 0; c < cols; c++) {
                const float *src = b + (size_t)(j0 + s + c) * ldb + p0;
                for (int kk = 0; kk < kc; kk++)
                    dst[(size_t)kk * NR + c] = src[kk];
            }
        } else {
            for (int kk = 0; kk < kc; kk++)
                memcpy(dst + (size_t)kk * NR, b + (size_t)(p0 + kk) * ldb + j0 + s,
                       sizeof(float) * cols);
        }
        if (cols < NR)
            for (int kk = 0; kk < kc; kk++)
                memset(dst + (size_t)kk * NR + cols, 0, sizeof(float) * (NR - cols));
    }
}

/* One tile of `rows` (<= MR) x NR: acc = the strip times the panel over kc,
 * the panel's rows ldp floats apart (NR when packed, ldb when B is read in
 * place); then C = alpha acc + beta C on the first k block, C += alpha acc
 * after it.  Every row count is compiled with constant sizes (micro_1 ..
 * micro_MR) and performs, per element, the same operations. */
static inline __attribute__((always_inline)) void micro(int rows, int nv, int kc, const float *ap, const float *bp, int ldp, float *c,
                         int ldc, int cols, float alpha, float beta, bool first)
{
    kd_vf acc[MR][2];
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = (kd_vf){0};
    for (int kk = 0; kk < kc; kk++) {
        kd_vf b0 = kd_vload(bp + (size_t)kk * ldp);
        const float *a = ap + (size_t)kk * MR;
        if (nv == 2) {
            kd_vf b1 = kd_vload(bp + (size_t)kk * ldp + KD_VL);
            for (int r = 0; r < rows; r++) {
                acc[r][0] += a[r] * b0;
                acc[r][1] += a[r] * b1;
            }
        } else {
            for (int r = 0; r < rows; r++)
                acc[r][0] += a[r] * b0;
        }
    }
    float edge[MR * NR];
    float *ct = c;
    int ldt = ldc;
    if (cols < NR) {
        memset(edge, 0, sizeof edge);
        for (int r = 0; r < rows; r++)
            memcpy(edge + r * NR, c + (size_t)r * ldc, sizeof(float) * cols);
        ct = edge;
        ldt = NR;
    }
    bool read_c = !first || beta != 0.0f;
    for (int r = 0; r < rows; r++) {
        float *cr = ct + (size_t)r * ldt;
        for (int v = 0; v < nv; v++) {
            kd_vf out = alpha * acc[r][v];
            if (read_c) {
                kd_vf old = kd_vload(cr + v * KD_VL);
                out = first ? out + beta * old : old + out;
            }
            kd_vstore(cr + v * KD_VL, out);
        }
    }
    if (cols < NR)
        for (int r = 0; r < rows; r++)
            memcpy(c + (size_t)r * ldc, edge + r * NR, sizeof(float) * cols);
}

typedef void (*micro_fn)(int kc, const float *ap, const float *bp, int ldp, float *c, int ldc,
                         int cols, float alpha, float beta, bool first);
#define MICRO(R, V)                                                                            \
    static void micro_##R##_##V(int kc, const float *ap, const float *bp, int ldp, float *c,    \
                                int ldc, int cols, float alpha, float beta, bool first)       \
    {                                                                                          \
        if (R <= MR) /* wider ones are compiled, never called */                               \
            micro(R, V, kc, ap, bp, ldp, c, ldc, cols, alpha, beta, first);                    \
    }
#define MICROS(V) MICRO(1, V) MICRO(2, V) MICRO(3, V) MICRO(4, V) MICRO(5, V) MICRO(6, V) \
    MICRO(7, V) MICRO(8, V) MICRO(9, V) MICRO(10, V) MICRO(11, V) MICRO(12, V)
MICROS(1)
MICROS(2)
/* [registers of columns - 1][rows - 1]: a panel of at most KD_VL columns
 * (a dense layer's 10 classes) runs one register wide, the zero half of
 * its packed panel untouched. */
static const micro_fn micros[2][12] = {
    {micro_1_1, micro_2_1, micro_3_1, micro_4_1, micro_5_1, micro_6_1, micro_7_1, micro_8_1,
     micro_9_1, micro_10_1, micro_11_1, micro_12_1},
    {micro_1_2, micro_2_2, micro_3_2, micro_4_2, micro_5_2, micro_6_2, micro_7_2, micro_8_2,
     micro_9_2, micro_10_2, micro_11_2, micro_12_2},
};

/* The columns [0, cols) (< NR) of a tile with B read in place, one element
 * at a time: for few rows packing an edge panel would cost more than the
 * product.  Per element the same operations as a vector lane of micro():
 * the accumulator starts at zero and takes a (fused, on FMA paths)
 * multiply-add per k in order. */
static void micro_scalar(int rows, int kc, const float *ap, const float *b, int ldb, float *c,
                         int ldc, int cols, float alpha, float beta, bool first)
{
    bool read_c = !first || beta != 0.0f;
    for (int r = 0; r < rows; r++) {
        float acc[NR] = {0}; /* the columns' chains interleave: no latency stall */
        for (int kk = 0; kk < kc; kk++) {
            float av = ap[(size_t)kk * MR + r];
            const float *brow = b + (size_t)kk * ldb;
            for (int j = 0; j < cols; j++)
                acc[j] += av * brow[j];
        }
        float *cr = c + (size_t)r * ldc;
        for (int j = 0; j < cols; j++) {
            float out = alpha * acc[j];
            if (read_c)
                out = first ? out + beta * cr[j] : cr[j] + out;
            cr[j] = out;
        }
    }
}

static void scale_c(int m, int n, float beta, float *c, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

/* The blocked loops with packing buffers for mc_max x KC of A and KC x
 * nc_max of B; the block sizes change where data is staged, never the
 * arithmetic.  With few rows, packing B would cost as much as the product:
 * B is then read in place. */
static void blocked(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc, int mc_max,
                    int nc_max, float *ap, float *bp)
{
    const bool in_place = !tb && m <= MR;
    for (int j0 = 0; j0 < n; j0 += nc_max) {
        int nc = KD_MIN(nc_max, n - j0);
        for (int p0 = 0; p0 < k; p0 += KC) {
            int kc = KD_MIN(KC, k - p0);
            if (!in_place)
                pack_b(tb, b, ldb, p0, kc, j0, nc, bp);
            for (int i0 = 0; i0 < m; i0 += mc_max) {
                int mc = KD_MIN(mc_max, m - i0);
                pack_a(ta, a, lda, i0, mc, p0, kc, ap);
                for (int s = 0; s < nc; s += NR) {
                    int cols = KD_MIN(NR, nc - s);
                    float *ct = c + (size_t)i0 * ldc + j0 + s;
                    if (!in_place) {
                        for (int r = 0; r < mc; r += MR)
                            micros[cols > KD_VL][KD_MIN(MR, mc - r) - 1](kc, ap + (size_t)r * kc,
                                                           bp + (size_t)s * kc, NR,
                                                           ct + (size_t)r * ldc, ldc, cols,
                                                           alpha, beta, p0 == 0);
                    } else if (cols == NR) {
                        micros[1][mc - 1](kc, ap, b + (size_t)p0 * ldb + j0 + s, ldb, ct, ldc, NR,
                                       alpha, beta, p0 == 0);
                    } else {
                        micro_scalar(mc, kc, ap, b + (size_t)p0 * ldb + j0 + s, ldb, ct, ldc,
                                     cols, alpha, beta, p0 == 0);
                    }
                }
            }
        }
    }
}

/* Without scratch memory: one strip and one panel on the stack. */
static __attribute__((noinline)) void blocked_on_stack(bool ta, bool tb, int m, int n, int k,
                                                       float alpha, const float *a, int lda,
                                                       const float *b, int ldb, float beta,
                                                       float *c, int ldc)
{
    float ap[MR * KC] __attribute__((aligned(64)));
    float bp[KC * NR] __attribute__((aligned(64)));
    blocked(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, MR, NR, ap, bp);
}

void KD_ISA(kd_gemm)(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    /* Always the full size, so that a thread allocates once. */
    float *ap = kd_scratch(KD_SCRATCH_GEMM, (size_t)MC * KC + (size_t)KC * NC);
    if (!ap) {
        blocked_on_stack(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, MC, NC, ap,
            ap + (size_t)MC * KC);
}

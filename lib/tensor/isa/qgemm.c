/* The int8 product of quantised convolutions and dense layers: a tile of
 * KD_QROWS rows of unsigned 8-bit activations times panels of 16 output
 * channels of signed 8-bit weights, summed exactly in int32 (qconv.h has
 * the layout).  Integer sums do not depend on their order, so every copy of
 * this file -- and the VNNI kernels beside them -- returns the same bits.
 *
 * Every path compiles the portable kernel (the compiler vectorises it for
 * the path's registers); the avx2 and avx512 copies add a kernel for the
 * VNNI dot-product instruction (vpdpbusd: four u8 x s8 products summed into
 * each int32 lane, no intermediate saturation) on ymm (AVX-VNNI) and zmm
 * (AVX512-VNNI) registers, compiled through a target attribute because the
 * float paths do not assume VNNI; kd_qgemm_kernel() (kernels.c) takes it
 * only where cpuid reports it. */
#include "isa.h"

#include "../qconv.h"

#if (defined(KD_ISA_AVX2) || defined(KD_ISA_AVX512)) && defined(__x86_64__)
#include <immintrin.h>

/* Four activations as the 32-bit lane vpdpbusd multiplies. */
static inline int32_t load4(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
#endif

void KD_ISA(kd_qgemm)(const kd_qgemm_args *q)
{
    const int kp = q->taps * q->seg;
    for (int p = 0; p < q->panels; p++) {
        const int8_t *wp = q->w + (size_t)p * kp * 16;
        int32_t acc[KD_QROWS][16];
        memset(acc, 0, sizeof acc);
        for (int t = 0; t < q->taps; t++) {
            const uint8_t *base = q->a + q->tap_off[t];
            const int8_t *wt = wp + (size_t)t * q->seg * 16;
            for (int k = 0; k < q->seg; k += 4) {
                const int8_t *wk = wt + (size_t)k * 16;
                for (int r = 0; r < KD_QROWS; r++) {
                    const uint8_t *ar = base + q->row_off[r] + k;
                    int a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3];
                    for (int j = 0; j < 16; j++)
                        acc[r][j] += a0 * wk[4 * j] + a1 * wk[4 * j + 1] + a2 * wk[4 * j + 2] +
                                     a3 * wk[4 * j + 3];
                }
            }
        }
        for (int r = 0; r < q->rows; r++)
            memcpy(q->c + (size_t)r * q->ldc + 16 * p, acc[r], sizeof acc[r]);
    }
}

#if defined(KD_ISA_AVX512) && defined(__x86_64__)
/* The sums of rows x 16 channels (acc) to int32 or requantised bytes. */
__attribute__((target("avx512vnni"), always_inline)) static inline void
store_zmm(const kd_qgemm_args *q, int p, const __m512i *acc, bool u8)
{
    if (!u8) {
        for (int r = 0; r < q->rows; r++)
            _mm512_storeu_si512((void *)(q->c + (size_t)r * q->ldc + 16 * p), acc[r]);
        return;
    }
    int cols = q->n - 16 * p;
    if (cols <= 0)
        return;
    __mmask16 keep = cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);
    __m512i corr = _mm512_loadu_si512((const void *)(q->corr + 16 * p));
    __m512 mul = _mm512_loadu_ps(q->mul + 16 * p), add = _mm512_loadu_ps(q->add + 16 * p);
    __m512 lo = _mm512_set1_ps(q->lo), hi = _mm512_set1_ps(q->hi);
    for (int r = 0; r < q->rows; r++) {
        __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r], corr));
        v = _mm512_mul_round_ps(v, mul, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_add_round_ps(v, add, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        __m128i b = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v));
        _mm_mask_storeu_epi8(q->out + (size_t)r * q->out_stride + 16 * p, keep, b);
    }
}

/* Panels p and p + 1 at once where there are two (24 accumulators: each
 * broadcast feeds two products), else one. */
__attribute__((target("avx512vnni"), always_inline)) static inline void
tile_zmm(const kd_qgemm_args *q, const size_t *off, int p, bool two, bool u8)
{
    const int kp = q->taps * q->seg;
    const int8_t *w0 = q->w + (size_t)p * kp * 16, *w1 = w0 + (size_t)kp * 16;
    __m512i acc0[KD_QROWS], acc1[KD_QROWS];
    for (int r = 0; r < KD_QROWS; r++)
        acc0[r] = acc1[r] = _mm512_setzero_si512();
    for (int t = 0; t < q->taps; t++) {
        const uint8_t *base = q->a + q->tap_off[t];
        size_t wt = (size_t)t * q->seg * 16;
        for (int k = 0; k < q->seg; k += 4) {
            __m512i wa = _mm512_loadu_si512((const void *)(w0 + wt + (size_t)k * 16));
            __m512i wb = two ? _mm512_loadu_si512((const void *)(w1 + wt + (size_t)k * 16))
                             : wa;
            for (int r = 0; r < KD_QROWS; r++) {
                __m512i x = _mm512_set1_epi32(load4(base + off[r] + k));
                acc0[r] = _mm512_dpbusd_epi32(acc0[r], x, wa);
                if (two)
                    acc1[r] = _mm512_dpbusd_epi32(acc1[r], x, wb);
            }
        }
    }
    store_zmm(q, p, acc0, u8);
    if (two)
        store_zmm(q, p + 1, acc1, u8);
}

/* 12 rows x 16 or 32 channels: zmm accumulators, the weights of four k per
 * channel in one register, each row's four activations broadcast from
 * memory.  With u8, the sums are requantised in registers: the operations
 * of kd_requant_u8 (qconv.c) one by one -- int32 to float, a multiply and
 * an add each rounded to nearest (embedded rounding: never contracted into
 * a fused multiply-add), the clamps, truncation -- so the bytes are the
 * same as the portable path's. */
__attribute__((target("avx512vnni"))) static void vnni_zmm(const kd_qgemm_args *q, bool u8)
{
    size_t off[KD_QROWS];
    memcpy(off, q->row_off, sizeof off);
    int p = 0;
    for (; p + 2 <= q->panels; p += 2)
        tile_zmm(q, off, p, true, u8);
    if (p < q->panels)
        tile_zmm(q, off, p, false, u8);
}

void kd_qgemm_vnni_avx512(const kd_qgemm_args *q) { vnni_zmm(q, false); }
void kd_qgemm_vnni_u8_avx512(const kd_qgemm_args *q) { vnni_zmm(q, true); }
#endif

#if defined(KD_ISA_AVX2) && defined(__x86_64__)
/* Half a tile at a time (6 rows x 16 channels: 12 ymm accumulators, two
 * weight registers, one broadcast), within the 16 ymm registers. */
__attribute__((target("avxvnni"))) static void vnni_half(const kd_qgemm_args *q,
                                                         const int8_t *wp, int r0, int rows,
                                                         int32_t *c)
{
    enum { H = KD_QROWS / 2 };
    __m256i lo[H], hi[H];
    size_t off[H];
    memcpy(off, q->row_off + r0, sizeof off);
    for (int r = 0; r < H; r++)
        lo[r] = hi[r] = _mm256_setzero_si256();
    for (int t = 0; t < q->taps; t++) {
        const uint8_t *base = q->a + q->tap_off[t];
        const int8_t *wt = wp + (size_t)t * q->seg * 16;
        for (int k = 0; k < q->seg; k += 4) {
            __m256i w0 = _mm256_loadu_si256((const void *)(wt + (size_t)k * 16));
            __m256i w1 = _mm256_loadu_si256((const void *)(wt + (size_t)k * 16 + 32));
            for (int r = 0; r < H; r++) {
                __m256i a = _mm256_set1_epi32(load4(base + off[r] + k));
                lo[r] = _mm256_dpbusd_avx_epi32(lo[r], a, w0);
                hi[r] = _mm256_dpbusd_avx_epi32(hi[r], a, w1);
            }
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_si256((void *)(c + (size_t)r * q->ldc), lo[r]);
        _mm256_storeu_si256((void *)(c + (size_t)r * q->ldc + 8), hi[r]);
    }
}

void kd_qgemm_vnni_avx2(const kd_qgemm_args *q)
{
    const int kp = q->taps * q->seg, h = KD_QROWS / 2;
    for (int p = 0; p < q->panels; p++) {
        const int8_t *wp = q->w + (size_t)p * kp * 16;
        vnni_half(q, wp, 0, KD_MIN(q->rows, h), q->c + 16 * p);
        if (q->rows > h)
            vnni_half(q, wp, h, q->rows - h, q->c + (size_t)h * q->ldc + 16 * p);
    }
}
#endif

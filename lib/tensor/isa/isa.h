/* Compiled once per instruction-set path: the Makefile builds every file of
 * lib/tensor/isa/ three times on x86-64, with
 *   (nothing)                 -> KD_ISA_GENERIC: baseline x86-64 (SSE2), or the
 *                                target's base vector unit elsewhere;
 *   -mavx2 -mfma              -> KD_ISA_AVX2;
 *   -mavx512f/bw/dq/vl -mfma  -> KD_ISA_AVX512,
 * and -ffp-contract=fast, so that `acc += a * b` on the vector types below
 * becomes one fused multiply-add where the path has FMA.  KD_ISA(name) gives
 * each copy of a function its own symbol; kernels.c puts them in tables.
 *
 * Every kernel computes each output element with the same sequence of
 * operations whatever the tile it lands in, so a result never depends on the
 * batch size, on the shape of the tiles or on the thread count. */
#ifndef KD_ISA_H
#define KD_ISA_H

#include "../kernels.h"

#include <string.h>

#if defined(KD_ISA_AVX512)
#define KD_VL 16
#define KD_ISA(name) name##_avx512
#elif defined(KD_ISA_AVX2)
#define KD_VL 8
#define KD_ISA(name) name##_avx2
#else
#define KD_ISA_GENERIC 1
#define KD_VL 4
#define KD_ISA(name) name##_generic
#endif

/* One register of the path: 16, 8 or 4 floats. */
typedef float kd_vf __attribute__((vector_size(KD_VL * sizeof(float))));

static inline kd_vf kd_vload(const float *p)
{
    kd_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void kd_vstore(float *p, kd_vf v) { memcpy(p, &v, sizeof v); }

#endif

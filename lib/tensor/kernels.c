/* The tables of the dispatched kernels, one per instruction-set path. */
#include "kernels.h"

#define KD_TABLE(sfx, p)                                                                     \
    {                                                                                        \
        p, kd_gemm_##sfx, kd_direct_forward_##sfx, kd_direct_backward_weights_##sfx,         \
            kd_exp_##sfx, kd_sigmoid_##sfx, kd_swish_##sfx, kd_swish_backward_##sfx          \
    }

static const kd_kernels tables[KD_CPU_PATHS] = {
    KD_TABLE(generic, KD_CPU_GENERIC),
#ifdef KD_HAVE_X86_PATHS
    KD_TABLE(avx2, KD_CPU_AVX2),
    KD_TABLE(avx512, KD_CPU_AVX512),
#else
    KD_TABLE(generic, KD_CPU_GENERIC),
    KD_TABLE(generic, KD_CPU_GENERIC),
#endif
};

const kd_kernels *kd_kernels_for(kd_cpu_path path)
{
    if ((unsigned)path >= KD_CPU_PATHS || path > kd_cpu_best())
        return NULL;
    return &tables[path];
}

const kd_kernels *kd_kernels_active(void) { return &tables[kd_cpu_active()]; }

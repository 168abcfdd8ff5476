/* The tables of the dispatched kernels, one per instruction-set path. */
#include "kernels.h"

#define KD_TABLE(sfx, p, vnni, vnni_u8)                                                      \
    {                                                                                        \
        p, kd_gemm_##sfx, kd_direct_forward_##sfx, kd_direct_backward_weights_##sfx,         \
            kd_exp_##sfx, kd_sigmoid_##sfx, kd_swish_##sfx, kd_swish_backward_##sfx,         \
            kd_qgemm_##sfx, vnni, vnni_u8                                                    \
    }

static const kd_kernels tables[KD_CPU_PATHS] = {
    KD_TABLE(generic, KD_CPU_GENERIC, NULL, NULL),
#ifdef KD_HAVE_X86_PATHS
    KD_TABLE(avx2, KD_CPU_AVX2, kd_qgemm_vnni_avx2, NULL),
    KD_TABLE(avx512, KD_CPU_AVX512, kd_qgemm_vnni_avx512, kd_qgemm_vnni_u8_avx512),
#else
    KD_TABLE(generic, KD_CPU_GENERIC, NULL, NULL),
    KD_TABLE(generic, KD_CPU_GENERIC, NULL, NULL),
#endif
};

const kd_kernels *kd_kernels_for(kd_cpu_path path)
{
    if ((unsigned)path >= KD_CPU_PATHS || path > kd_cpu_best())
        return NULL;
    return &tables[path];
}

const kd_kernels *kd_kernels_active(void) { return &tables[kd_cpu_active()]; }

bool kd_qgemm_allow_vnni = true;

kd_qgemm_fn kd_qgemm_kernel(void)
{
    const kd_kernels *k = kd_kernels_active();
    if (k->qgemm_vnni && kd_qgemm_allow_vnni && kd_cpu_has_vnni(k->path))
        return k->qgemm_vnni;
    return k->qgemm;
}

kd_qgemm_fn kd_qgemm_kernel_u8(void)
{
    const kd_kernels *k = kd_kernels_active();
    if (k->qgemm_vnni_u8 && kd_qgemm_allow_vnni && kd_cpu_has_vnni(k->path))
        return k->qgemm_vnni_u8;
    return NULL;
}

const char *kd_qgemm_kernel_name(void)
{
    const kd_kernels *k = kd_kernels_active();
    bool vnni = k->qgemm_vnni && kd_qgemm_allow_vnni && kd_cpu_has_vnni(k->path);
    switch (k->path) {
    case KD_CPU_AVX512: return vnni ? "avx512-vnni" : "avx512";
    case KD_CPU_AVX2: return vnni ? "avx-vnni" : "avx2";
    default: return "generic";
    }
}

const char *kdens_cpu_int8_kernel(void) { return kd_qgemm_kernel_name(); }

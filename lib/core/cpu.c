/* The instruction-set path of the hot kernels, chosen once at run time from
 * what the processor reports (cpuid, and the operating system's saved
 * register state: __builtin_cpu_supports checks both), so that one build runs
 * on every x86-64 machine.  KDENS_CPU or kdens_set_cpu_path() may force a
 * lower path; a higher one than the CPU has is never taken. */
#include "core.h"

#include <pthread.h>
#if defined(__x86_64__) && !defined(KD_GENERIC_ONLY)
#include <cpuid.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const path_names[KD_CPU_PATHS] = {"generic", "avx2", "avx512"};

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static kd_cpu_path best_path = KD_CPU_GENERIC;
static _Atomic int active_path = KD_CPU_GENERIC;
static char supported_names[32];
static bool vnni_ymm, vnni_zmm;

/* cpuid leaf 7: AVX512_VNNI is ECX bit 11 of subleaf 0, AVX-VNNI EAX bit 4
 * of subleaf 1 (read from cpuid: not every compiler's
 * __builtin_cpu_supports knows them). */
#if defined(__x86_64__) && !defined(KD_GENERIC_ONLY)
static void detect_vnni(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        vnni_zmm = (c >> 11) & 1u;
        unsigned max_sub = a;
        if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
            vnni_ymm = (a >> 4) & 1u;
    }
}
#endif

static kd_cpu_path detect(void)
{
#if defined(__x86_64__) && !defined(KD_GENERIC_ONLY)
    __builtin_cpu_init();
    detect_vnni();
    /* The AVX-512 kernels are compiled for the Skylake-X subset. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma"))
        return KD_CPU_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return KD_CPU_AVX2;
#endif
    return KD_CPU_GENERIC;
}

static int path_by_name(const char *name)
{
    for (int p = 0; p < KD_CPU_PATHS; p++)
        if (strcmp(name, path_names[p]) == 0)
            return p;
    return -1;
}

static void init_paths(void)
{
    best_path = detect();
    size_t used = 0;
    for (int p = 0; p <= (int)best_path; p++) {
        size_t len = strlen(path_names[p]);
        if (used)
            supported_names[used++] = ' ';
        memcpy(supported_names + used, path_names[p], len + 1);
        used += len;
    }
    int chosen = (int)best_path;
    const char *env = getenv("KDENS_CPU");
    if (env && *env && strcmp(env, "auto") != 0) {
        int p = path_by_name(env);
        if (p < 0)
            kd_log(KDENS_LOG_WARN, "KDENS_CPU=%s is not one of generic, avx2, avx512, auto; "
                                   "using %s", env, path_names[best_path]);
        else if (p > (int)best_path)
            kd_log(KDENS_LOG_WARN, "KDENS_CPU=%s: this processor lacks it; using %s", env,
                   path_names[best_path]);
        else
            chosen = p;
    }
    atomic_store(&active_path, chosen);
}

kd_cpu_path kd_cpu_best(void)
{
    pthread_once(&detect_once, init_paths);
    return best_path;
}

kd_cpu_path kd_cpu_active(void)
{
    pthread_once(&detect_once, init_paths);
    return (kd_cpu_path)atomic_load_explicit(&active_path, memory_order_relaxed);
}

const char *kd_cpu_path_name(kd_cpu_path path)
{
    return (unsigned)path < KD_CPU_PATHS ? path_names[path] : "unknown";
}

bool kd_cpu_has_vnni(kd_cpu_path path)
{
    kd_cpu_path best = kd_cpu_best();
    if (path > best)
        return false;
    return (path == KD_CPU_AVX2 && vnni_ymm) || (path == KD_CPU_AVX512 && vnni_zmm);
}

const char *kdens_cpu_path(void) { return path_names[kd_cpu_active()]; }

const char *kdens_cpu_paths(void)
{
    pthread_once(&detect_once, init_paths);
    return supported_names;
}

kdens_status kdens_set_cpu_path(const char *name)
{
    pthread_once(&detect_once, init_paths);
    if (!name || strcmp(name, "auto") == 0) {
        atomic_store(&active_path, (int)best_path);
        return KDENS_OK;
    }
    int p = path_by_name(name);
    if (p < 0)
        return kd_fail(KDENS_E_ARG, "unknown kernel path '%s' (generic, avx2, avx512, auto)",
                       name);
    if (p > (int)best_path)
        return kd_fail(KDENS_E_ARG, "kernel path '%s' needs instructions this processor lacks "
                                    "(it supports: %s)", name, supported_names);
    atomic_store(&active_path, p);
    return KDENS_OK;
}

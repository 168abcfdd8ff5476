/* Thread count and a small persistent pool for the library's parallel loops
 * (every kernel, GEMM included, is the library's own). */
#include "core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define KD_MAX_THREADS 64

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int n_threads = 1;

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > KD_MAX_THREADS ? KD_MAX_THREADS : (int)n);
}

static void reset_pool_in_child(void);

static void init_threads(void)
{
    /* a forked child has only the forking thread: forget the workers */
    pthread_atfork(NULL, NULL, reset_pool_in_child);
    const char *env = getenv("KDENS_NUM_THREADS");
    int n = 0;
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0 && v <= KD_MAX_THREADS)
            n = (int)v;
    }
    n_threads = n > 0 ? n : cores();
}

kdens_status kdens_set_num_threads(int n)
{
    pthread_once(&init_once, init_threads);
    if (n < 0 || n > KD_MAX_THREADS)
        return kd_fail(KDENS_E_ARG, "thread count %d is outside [0, %d]", n, KD_MAX_THREADS);
    n_threads = n == 0 ? cores() : n;
    return KDENS_OK;
}

int kdens_get_num_threads(void)
{
    pthread_once(&init_once, init_threads);
    return n_threads;
}

int kd_threads(void) { return kdens_get_num_threads(); }

/* ---- the pool ------------------------------------------------------------ */
/* Workers and the caller spin briefly before sleeping: a training step
 * starts hundreds of short parallel loops, and a futex wake-up per loop
 * would cost more than the loop. */

#define KD_SPIN 20000

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int started;                 /* workers created so far */
    _Atomic uint64_t generation; /* bumped per job */
    _Atomic int pending;         /* workers still running the current job */
    kd_part_fn fn;
    void *arg;
    int parts;   /* the job's parts */
    int staffed; /* parts [1, staffed) run on workers */
};

static struct pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                           PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL, NULL, 0, 0};
/* One job at a time: callers from several threads serialise here. */
static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER;
/* A job started from inside a job runs inline (no nested pools). */
static _Thread_local bool in_job;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield"); /* the spin-wait hint of ARMv8 */
#endif
}

static void reset_pool_in_child(void)
{
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.work, NULL);
    pthread_cond_init(&pool.done, NULL);
    pthread_mutex_init(&job_mu, NULL);
    pool.started = 0;
    atomic_store(&pool.generation, 0);
    atomic_store(&pool.pending, 0);
    in_job = false;
}

static void *worker(void *p)
{
    int id = (int)(intptr_t)p; /* 1-based: part 0 is the caller's */
    uint64_t seen = 0;
    in_job = true;
    for (;;) {
        for (int i = 0; i < KD_SPIN && atomic_load(&pool.generation) == seen; i++)
            cpu_relax();
        pthread_mutex_lock(&pool.mu);
        while (atomic_load(&pool.generation) == seen)
            pthread_cond_wait(&pool.work, &pool.mu);
        seen = atomic_load(&pool.generation);
        kd_part_fn fn = pool.fn;
        void *arg = pool.arg;
        int parts = pool.parts, staffed = pool.staffed;
        pthread_mutex_unlock(&pool.mu);
        if (id < staffed) {
            fn(id, parts, arg);
            if (atomic_fetch_sub(&pool.pending, 1) == 1) {
                pthread_mutex_lock(&pool.mu);
                pthread_cond_signal(&pool.done);
                pthread_mutex_unlock(&pool.mu);
            }
        }
    }
    return NULL;
}

static int ensure_workers(int want)
{
    while (pool.started < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker, (void *)(intptr_t)(pool.started + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        pool.started++;
    }
    return pool.started;
}

void kd_parallel_parts(int parts, kd_part_fn fn, void *arg)
{
    if (parts <= 1 || in_job) {
        for (int p = 0; p < parts; p++)
            fn(p, parts, arg);
        return;
    }
    pthread_mutex_lock(&job_mu);
    pthread_mutex_lock(&pool.mu);
    int workers = ensure_workers(parts - 1);
    int run = KD_MIN(parts, workers + 1);
    pool.fn = fn;
    pool.arg = arg;
    pool.parts = parts;
    pool.staffed = run;
    atomic_store(&pool.pending, run - 1);
    atomic_fetch_add(&pool.generation, 1);
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.mu);

    in_job = true;
    fn(0, parts, arg);
    /* parts the pool could not staff (thread creation failed) run here */
    for (int p = run; p < parts; p++)
        fn(p, parts, arg);
    in_job = false;

    for (int i = 0; i < KD_SPIN && atomic_load(&pool.pending) > 0; i++)
        cpu_relax();
    pthread_mutex_lock(&pool.mu);
    while (atomic_load(&pool.pending) > 0)
        pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&job_mu);
}

struct range_job {
    size_t n;
    kd_range_fn fn;
    void *arg;
};

static void range_part(int part, int parts, void *arg)
{
    const struct range_job *j = arg;
    size_t begin, end;
    kd_split(j->n, part, parts, &begin, &end);
    if (begin < end)
        j->fn(begin, end, j->arg);
}

void kd_parallel_for(size_t n, size_t min_chunk, kd_range_fn fn, void *arg)
{
    if (n == 0)
        return;
    if (min_chunk == 0)
        min_chunk = 1;
    size_t max_parts = (n + min_chunk - 1) / min_chunk;
    int parts = (int)KD_MIN((size_t)kd_threads(), max_parts);
    if (parts <= 1) {
        fn(0, n, arg);
        return;
    }
    struct range_job j = {n, fn, arg};
    kd_parallel_parts(parts, range_part, &j);
}

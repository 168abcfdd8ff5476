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
 * would cost more than the loop.
 *
 * Parts are claimed, not assigned: the caller and every woken worker take
 * the next unclaimed part until none is left, so a worker the scheduler has
 * not run yet (a loaded machine, a batch-1 prediction of a few microseconds)
 * costs nothing -- the caller runs its parts.  Which thread runs a part never
 * changes what the part computes (fn(part, parts, arg)), so results stay the
 * same bits.  A claim carries the job's generation with it (one 64-bit word:
 * generation above, next part below), so a worker that wakes late can never
 * claim a part of a later job with an earlier job's function. */

#define KD_SPIN 20000

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int started;                 /* workers created so far */
    _Atomic uint64_t generation; /* bumped per job */
    _Atomic uint64_t claim;      /* (generation << 32) | the next unclaimed part */
    _Atomic int finished;        /* parts of the current job finished */
    kd_part_fn fn;
    void *arg;
    int parts; /* the job's parts */
};

static struct pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                           PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, NULL, 0};
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
    atomic_store(&pool.claim, 0);
    atomic_store(&pool.finished, 0);
    in_job = false;
}

/* The next unclaimed part of job `gen` (of `parts`), or -1 when none is
 * left or the job is over. */
static int claim_part(uint64_t gen, int parts)
{
    uint64_t v = atomic_load(&pool.claim);
    for (;;) {
        if (v >> 32 != (gen & 0xffffffffu) || (int)(v & 0xffffffffu) >= parts)
            return -1;
        if (atomic_compare_exchange_weak(&pool.claim, &v, v + 1))
            return (int)(v & 0xffffffffu);
    }
}

/* Run claimed parts of job gen until none is left; the one that finishes
 * the last part wakes the caller. */
static void run_parts(uint64_t gen, kd_part_fn fn, void *arg, int parts)
{
    for (int p; (p = claim_part(gen, parts)) >= 0;) {
        fn(p, parts, arg);
        if (atomic_fetch_add(&pool.finished, 1) + 1 == parts) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
    }
}

static void *worker(void *unused)
{
    (void)unused;
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
        int parts = pool.parts;
        pthread_mutex_unlock(&pool.mu);
        run_parts(seen, fn, arg, parts);
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
        int rc = pthread_create(&t, &attr, worker, NULL); /* workers are alike: they claim parts */
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
    ensure_workers(parts - 1); /* fewer (creation failed): the caller claims more */
    pool.fn = fn;
    pool.arg = arg;
    pool.parts = parts;
    uint64_t gen = atomic_load(&pool.generation) + 1;
    atomic_store(&pool.finished, 0);
    atomic_store(&pool.claim, (gen & 0xffffffffu) << 32);
    atomic_store(&pool.generation, gen);
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.mu);

    in_job = true;
    run_parts(gen, fn, arg, parts);
    in_job = false;

    /* parts claimed by workers may still be running */
    for (int i = 0; i < KD_SPIN && atomic_load(&pool.finished) < parts; i++)
        cpu_relax();
    pthread_mutex_lock(&pool.mu);
    while (atomic_load(&pool.finished) < parts)
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

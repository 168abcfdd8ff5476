/* Thread count and a small persistent pool for the library's own parallel
 * loops (GEMM threads belong to OpenBLAS, which gets the same count). */
#include "core.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

void openblas_set_num_threads(int num_threads);

#define KD_MAX_THREADS 64

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int n_threads = 1;

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > KD_MAX_THREADS ? KD_MAX_THREADS : (int)n);
}

static void init_threads(void)
{
    const char *env = getenv("KDENS_NUM_THREADS");
    int n = 0;
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0 && v <= KD_MAX_THREADS)
            n = (int)v;
    }
    n_threads = n > 0 ? n : cores();
    openblas_set_num_threads(n_threads);
}

kdens_status kdens_set_num_threads(int n)
{
    pthread_once(&init_once, init_threads);
    if (n < 0 || n > KD_MAX_THREADS)
        return kd_fail(KDENS_E_ARG, "thread count %d is outside [0, %d]", n, KD_MAX_THREADS);
    n_threads = n == 0 ? cores() : n;
    openblas_set_num_threads(n_threads);
    return KDENS_OK;
}

int kdens_get_num_threads(void)
{
    pthread_once(&init_once, init_threads);
    return n_threads;
}

int kd_threads(void) { return kdens_get_num_threads(); }

/* ---- the pool ------------------------------------------------------------ */

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int started;           /* workers created so far */
    uint64_t generation;   /* bumped per job */
    int pending;           /* workers still running the current job */
    kd_range_fn fn;
    void *arg;
    size_t n, chunk;
    int parts;
};

static struct pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                           PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL, NULL, 0, 0, 0};
/* One job at a time: callers from several threads serialise here. */
static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER;

static void run_part(int part, kd_range_fn fn, void *arg, size_t n, size_t chunk)
{
    size_t begin = (size_t)part * chunk;
    size_t end = KD_MIN(n, begin + chunk);
    if (begin < end)
        fn(begin, end, arg);
}

static void *worker(void *p)
{
    int id = (int)(intptr_t)p; /* 1-based: part 0 is the caller's */
    uint64_t seen = 0;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.generation == seen)
            pthread_cond_wait(&pool.work, &pool.mu);
        seen = pool.generation;
        if (id < pool.parts) {
            kd_range_fn fn = pool.fn;
            void *arg = pool.arg;
            size_t n = pool.n, chunk = pool.chunk;
            pthread_mutex_unlock(&pool.mu);
            run_part(id, fn, arg, n, chunk);
            pthread_mutex_lock(&pool.mu);
            if (--pool.pending == 0)
                pthread_cond_signal(&pool.done);
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

void kd_parallel_for(size_t n, size_t min_chunk, kd_range_fn fn, void *arg)
{
    if (n == 0)
        return;
    if (min_chunk == 0)
        min_chunk = 1;
    int threads = kd_threads();
    size_t max_parts = (n + min_chunk - 1) / min_chunk;
    int parts = (int)KD_MIN((size_t)threads, max_parts);
    if (parts <= 1) {
        fn(0, n, arg);
        return;
    }
    pthread_mutex_lock(&job_mu);
    pthread_mutex_lock(&pool.mu);
    int workers = ensure_workers(parts - 1);
    parts = KD_MIN(parts, workers + 1);
    size_t chunk = (n + (size_t)parts - 1) / (size_t)parts;
    parts = (int)((n + chunk - 1) / chunk);
    pool.fn = fn;
    pool.arg = arg;
    pool.n = n;
    pool.chunk = chunk;
    pool.parts = parts;
    pool.pending = parts - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.mu);

    run_part(0, fn, arg, n, chunk);

    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&job_mu);
}

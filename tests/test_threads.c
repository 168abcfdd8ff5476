/* The thread pool (lib/core/threads.c): every part of every job runs
 * exactly once, whoever claims it -- the caller or a worker -- over many
 * short jobs in a row (where a worker waking late must never run a part
 * of a later job), with more parts than threads, nested jobs run inline,
 * and callers on several threads at once. */
#include "testutil.h"

#include "core/core.h"

#include <pthread.h>
#include <stdatomic.h>

enum { MAX_PARTS = 16 };

typedef struct job {
    int id;
    _Atomic int runs[MAX_PARTS];
    _Atomic int wrong; /* a part run with another job's arguments or count */
    int parts;
} job;

static void count_part(int part, int parts, void *arg)
{
    job *j = arg;
    if (parts != j->parts || part < 0 || part >= parts)
        atomic_fetch_add(&j->wrong, 1);
    else
        atomic_fetch_add(&j->runs[part], 1);
}

static void run_jobs(int n_jobs, int seed)
{
    for (int k = 0; k < n_jobs; k++) {
        job j = {.id = k, .parts = 1 + (k * 7 + seed) % MAX_PARTS};
        for (int p = 0; p < MAX_PARTS; p++)
            atomic_init(&j.runs[p], 0);
        atomic_init(&j.wrong, 0);
        kd_parallel_parts(j.parts, count_part, &j);
        assert_int_equal(atomic_load(&j.wrong), 0);
        for (int p = 0; p < j.parts; p++)
            if (atomic_load(&j.runs[p]) != 1)
                fail_msg("job %d: part %d of %d ran %d times", k, p, j.parts,
                         atomic_load(&j.runs[p]));
    }
}

static void test_every_part_once(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        ASSERT_OK(kdens_set_num_threads(threads));
        run_jobs(20000, threads);
    }
    ASSERT_OK(kdens_set_num_threads(0));
}

/* A job inside a job runs inline on the thread that started it. */
static void nested_part(int part, int parts, void *arg)
{
    (void)part;
    (void)parts;
    job inner = {.parts = 5};
    for (int p = 0; p < MAX_PARTS; p++)
        atomic_init(&inner.runs[p], 0);
    atomic_init(&inner.wrong, 0);
    kd_parallel_parts(5, count_part, &inner);
    int ok = atomic_load(&inner.wrong) == 0;
    for (int p = 0; p < 5; p++)
        ok &= atomic_load(&inner.runs[p]) == 1;
    if (!ok)
        atomic_fetch_add((_Atomic int *)arg, 1);
}

static void test_nested_jobs(void **state)
{
    (void)state;
    ASSERT_OK(kdens_set_num_threads(2));
    _Atomic int bad;
    atomic_init(&bad, 0);
    for (int k = 0; k < 200; k++)
        kd_parallel_parts(4, nested_part, &bad);
    assert_int_equal(atomic_load(&bad), 0);
    ASSERT_OK(kdens_set_num_threads(0));
}

/* Callers on several threads take turns at the pool. */
static void *caller(void *arg)
{
    run_jobs(3000, (int)(intptr_t)arg);
    return NULL;
}

static void test_concurrent_callers(void **state)
{
    (void)state;
    ASSERT_OK(kdens_set_num_threads(2));
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, caller, (void *)(intptr_t)i), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    ASSERT_OK(kdens_set_num_threads(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_part_once),
        cmocka_unit_test(test_nested_jobs),
        cmocka_unit_test(test_concurrent_callers),
    };
    return cmocka_run_group_tests_name("thread pool", tests, NULL, NULL);
}

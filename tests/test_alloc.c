/* Memory is planned once per batch shape: in steady state a training step
 * and an inference call allocate nothing.  The library's allocation calls
 * are counted by linking this test with -Wl,--wrap for each allocator,
 * which also makes a chosen one fail (fail_in), to test what the library
 * does when out of memory. */
#include "testutil.h"

#include "core/core.h"

#include <errno.h>
#include <fcntl.h>

static long allocations;
static bool counting;
/* > 0: the fail_in-th allocation from now returns NULL (0 once it has) */
static long fail_in;

static bool fail_now(void) { return fail_in > 0 && --fail_in == 0; }

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
int __real_posix_memalign(void **p, size_t align, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
int __wrap_posix_memalign(void **p, size_t align, size_t size);

void *__wrap_malloc(size_t size)
{
    allocations += counting;
    return fail_now() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    allocations += counting;
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    allocations += counting;
    return fail_now() ? NULL : __real_realloc(p, size);
}

int __wrap_posix_memalign(void **p, size_t align, size_t size)
{
    allocations += counting;
    return fail_now() ? ENOMEM : __real_posix_memalign(p, align, size);
}

static void steady_state(const char *arch, int size, int channels)
{
    kdens_model *m;
    kdens_optimizer *o;
    ASSERT_OK(kdens_model_create(arch, size, size, channels, 10, 1, &m));
    ASSERT_OK(kdens_optimizer_create(KDENS_OPT_ADAMW, 1e-3f, &o));
    ASSERT_OK(kdens_model_set_training(m, 1));
    enum { N = 16 };
    size_t in = (size_t)size * size * channels;
    float *x = calloc(N * in, sizeof(float)), probs[N * 10], loss;
    uint8_t *img = calloc(N * in, 1);
    int32_t y[N] = {0};
    for (int s = 0; s < 2; s++) /* warm up: plan buffers, bind optimiser state */
        ASSERT_OK(kdens_model_train_step(m, o, x, N, y, NULL, &loss, NULL));
    ASSERT_OK(kdens_model_predict_u8(m, img, N, probs));
    counting = true;
    for (int s = 0; s < 5; s++)
        ASSERT_OK(kdens_model_train_step(m, o, x, N, y, NULL, &loss, NULL));
    ASSERT_OK(kdens_model_predict(m, x, N, probs));
    ASSERT_OK(kdens_model_predict_u8(m, img, N, probs));
    counting = false;
    if (allocations != 0)
        fail_msg("%s: %ld allocations in steady state", arch, allocations);
    free(x);
    free(img);
    kdens_optimizer_free(o);
    kdens_model_free(m);
}

static void test_no_allocation_per_step(void **state)
{
    (void)state;
    steady_state("test", 28, 1);
    steady_state("resnet20", 16, 1);
    steady_state("mobilenet_small", 16, 3);
}

/* An int8 model: inference allocates nothing in steady state; quantising
 * and loading with each allocation failing in turn fail cleanly (a status,
 * no model, no leak under SANITIZE=1). */
static void test_int8(void **state)
{
    (void)state;
    kdens_model *m, *q, *q2;
    ASSERT_OK(kdens_model_create("resnet20", 16, 16, 1, 10, 1, &m));
    enum { N = 8 };
    uint8_t img[N * 256];
    for (int i = 0; i < N * 256; i++)
        img[i] = (uint8_t)(i * 29);
    float probs[N * 10];
    ASSERT_OK(kdens_model_quantize_u8(m, img, N, KDENS_CALIB_PERCENTILE, &q));
    ASSERT_OK(kdens_model_predict_u8(q, img, N, probs));
    counting = true;
    allocations = 0;
    ASSERT_OK(kdens_model_predict_u8(q, img, N, probs));
    ASSERT_OK(kdens_model_predict_u8(q, img, 3, probs));
    counting = false;
    if (allocations != 0)
        fail_msg("int8 inference: %ld allocations in steady state", allocations);
    /* the out-of-memory walk on a smaller network (fewer allocations) */
    kdens_model_free(q);
    kdens_model_free(m);
    ASSERT_OK(kdens_model_create("test", 16, 16, 1, 10, 1, &m));
    ASSERT_OK(kdens_model_quantize_u8(m, img, N, KDENS_CALIB_PERCENTILE, &q));
    char *dir = tu_tmpdir(), *path = tu_join(dir, "q.kdm");
    ASSERT_OK(kdens_model_save(q, path));
    int failures = 0;
    for (int what = 0; what < 2; what++)
        for (long k = 1;; k++) {
            fail_in = k;
            q2 = NULL;
            kdens_status st = what == 0
                                  ? kdens_model_quantize_u8(m, img, N, KDENS_CALIB_PERCENTILE, &q2)
                                  : kdens_model_load(path, &q2);
            bool failed = fail_in == 0;
            fail_in = 0;
            if (!failed) {
                ASSERT_OK(st);
                kdens_model_free(q2);
                break;
            }
            if (st == KDENS_OK) /* the failed allocation had a fallback (the thread pool) */
                kdens_model_free(q2);
            else
                assert_null(q2);
            failures++;
        }
    assert_true(failures > 20);
    tu_rm_rf(dir);
    kdens_model_free(q);
    kdens_model_free(m);
}

/* The path joiner and the file helpers built on it, with each of their
 * allocations failing in turn: NULL or KDENS_E_NOMEM with the message, no
 * leak (under SANITIZE=1), and the file intact when the write went ahead. */
static void test_paths_out_of_memory(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    int failures = 0;
    for (long k = 1;; k++) {
        fail_in = k;
        char *p = kd_path_join(dir, "a/", "/b", NULL);
        char *q = kd_path_fmt(dir, "%s_%d.kdm", "m", k == 1);
        bool failed = fail_in == 0;
        fail_in = 0;
        if (!failed) {
            assert_non_null(p);
            assert_non_null(q);
            free(p);
            free(q);
            break;
        }
        assert_true(!p || !q);
        assert_non_null(strstr(kdens_errmsg(), "out of memory"));
        free(p);
        free(q);
        failures++;
    }
    assert_true(failures >= 2);
    char *file = tu_join(dir, "x.bin"), *deep = tu_join(dir, "d/e/f");
    for (long k = 1;; k++) {
        fail_in = k;
        kdens_status st = kd_write_file_atomic(file, "abc", 3);
        int rc = kd_mkdirs(deep);
        int err = errno;
        bool failed = fail_in == 0;
        fail_in = 0;
        if (!failed) {
            ASSERT_OK(st);
            assert_int_equal(rc, 0);
            break;
        }
        /* the folder's fsync is best effort: a write may succeed regardless */
        assert_true(st == KDENS_OK || st == KDENS_E_NOMEM);
        assert_true(rc == 0 || err == ENOMEM);
    }
    char *text;
    size_t len;
    ASSERT_OK(kd_read_file(file, &text, &len));
    assert_string_equal(text, "abc");
    free(text);
    tu_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_allocation_per_step),
        cmocka_unit_test(test_int8),
        cmocka_unit_test(test_paths_out_of_memory),
    };
    return cmocka_run_group_tests_name("allocation", tests, NULL, NULL);
}

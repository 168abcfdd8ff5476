/* Memory is planned once per batch shape: in steady state a training step
 * and an inference call allocate nothing.  The library's allocation calls
 * are counted by linking this test with -Wl,--wrap for each allocator. */
#include "testutil.h"

static long allocations;
static bool counting;

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
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    allocations += counting;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    allocations += counting;
    return __real_realloc(p, size);
}

int __wrap_posix_memalign(void **p, size_t align, size_t size)
{
    allocations += counting;
    return __real_posix_memalign(p, align, size);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_allocation_per_step),
    };
    return cmocka_run_group_tests_name("allocation", tests, NULL, NULL);
}

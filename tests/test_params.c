/* Parameter counts of the built-in architectures for 224x224x3 inputs and
 * 1000 classes against the totals Keras publishes (Keras counts batch-norm
 * moving statistics and the Normalization layer's mean, variance and count),
 * and the small networks' counts worked out by hand. */
#include "testutil.h"

static size_t count(const char *arch, int h, int w, int c, int classes)
{
    kdens_model *m;
    ASSERT_OK(kdens_model_create(arch, h, w, c, classes, 0, &m));
    size_t n = kdens_model_param_count(m);
    kdens_model_free(m);
    return n;
}

static void test_keras_totals(void **state)
{
    (void)state;
    assert_int_equal(count("resnet50v2", 224, 224, 3, 1000), 25613800);
    assert_int_equal(count("densenet121", 224, 224, 3, 1000), 8062504);
    assert_int_equal(count("efficientnetb0", 224, 224, 3, 1000), 5330571);
    assert_int_equal(count("efficientnetb3", 300, 300, 3, 1000), 12320535);
    assert_int_equal(count("mobilenetv3large", 224, 224, 3, 1000), 5507432);
}

static void test_counts_do_not_depend_on_input_size(void **state)
{
    (void)state;
    /* global pooling before the classifier: the size only changes activations */
    assert_int_equal(count("efficientnetb3", 224, 224, 3, 1000), 12320535);
    assert_int_equal(count("resnet50v2", 64, 96, 3, 1000), 25613800);
}

static void test_small_networks(void **state)
{
    (void)state;
    /* test: conv 3*3*1*16 + 16, dense 14*14*16*10 + 10 */
    assert_int_equal(count("test", 28, 28, 1, 10), 160 + 31370);
    /* resnet20: 0.27M as in He et al. (projection shortcuts add 2*(16*32+32*64)+BN) */
    assert_int_equal(count("resnet20", 28, 28, 1, 10), 273754);
    assert_int_equal(count("resnet20", 32, 32, 3, 10), 273754 + 2 * 9 * 16);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("resnet20", 28, 28, 1, 10, 0, &m));
    assert_int_equal(kdens_model_trainable_count(m), 273754 - 2 * (16 * 7 + 32 * 7 + 64 * 7));
    kdens_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keras_totals),
        cmocka_unit_test(test_counts_do_not_depend_on_input_size),
        cmocka_unit_test(test_small_networks),
    };
    return cmocka_run_group_tests_name("parameter counts", tests, NULL, NULL);
}

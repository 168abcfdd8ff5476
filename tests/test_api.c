/* The API's contracts: versions, status strings and messages, threads and
 * the environment variable, callbacks, and NULL or out-of-range arguments
 * to every public function returning errors instead of crashing. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <sys/wait.h>

static void test_version(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", KDENS_VERSION_MAJOR, KDENS_VERSION_MINOR,
             KDENS_VERSION_PATCH);
    assert_string_equal(kdens_version(), want);
    assert_int_equal(kdens_version_number(), KDENS_VERSION_NUMBER);
}

static void test_status_strings(void **state)
{
    (void)state;
    for (int s = KDENS_OK; s <= KDENS_E_UNSUPPORTED; s++) {
        const char *str = kdens_status_str((kdens_status)s);
        assert_non_null(str);
        assert_true(strlen(str) > 1);
        assert_string_not_equal(str, "unknown status");
    }
    assert_string_equal(kdens_status_str((kdens_status)99), "unknown status");
}

static void *other_thread(void *arg)
{
    (void)arg;
    kdens_model *m;
    kdens_model_create("nope", 8, 8, 1, 2, 0, &m);
    return NULL;
}

static void test_errmsg_is_thread_local(void **state)
{
    (void)state;
    kdens_model *m;
    ASSERT_STATUS(kdens_model_create("test", 0, 8, 1, 2, 0, &m), KDENS_E_ARG);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", kdens_errmsg());
    assert_non_null(strstr(mine, "0x8x1"));
    pthread_t t;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, NULL);
    assert_string_equal(kdens_errmsg(), mine);
}

static void test_threads(void **state)
{
    (void)state;
    int before = kdens_get_num_threads();
    assert_true(before >= 1);
    ASSERT_OK(kdens_set_num_threads(1));
    assert_int_equal(kdens_get_num_threads(), 1);
    ASSERT_OK(kdens_set_num_threads(0));
    assert_true(kdens_get_num_threads() >= 1);
    ASSERT_STATUS(kdens_set_num_threads(-1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_set_num_threads(100000), KDENS_E_ARG);
    ASSERT_OK(kdens_set_num_threads(before));
}

/* KDENS_NUM_THREADS is read once, at first use: check it in a fresh process. */
static void test_threads_from_environment(void **state)
{
    (void)state;
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "KDENS_NUM_THREADS=3 %s/tests/test_api --print-threads",
             tu_build());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int n = 0;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    assert_int_equal(WEXITSTATUS(pclose(p)), 0);
    assert_int_equal(n, 3);
}

static int log_lines;
static void count_log(kdens_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    *(int *)user += 1;
}

static void test_callbacks(void **state)
{
    (void)state;
    kdens_set_log_callback(count_log, &log_lines);
    kdens_set_progress_callback(NULL, NULL);
    kdens_set_log_callback(NULL, NULL); /* removing is allowed */
    assert_int_equal(log_lines, 0);
}

static void test_null_and_range_arguments(void **state)
{
    (void)state;
    kdens_model *m = NULL, *good;
    ASSERT_OK(kdens_model_create("test", 8, 8, 1, 3, 0, &good));
    float x[64] = {0}, probs[3];
    uint8_t img[64] = {0};
    int32_t y = 0;
    ASSERT_STATUS(kdens_model_create(NULL, 8, 8, 1, 3, 0, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_create("test", 8, 8, 1, 3, 0, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_create("test", 8, 8, 1, 0, 0, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_create("test", 8, -8, 1, 3, 0, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_create("test", 8, 8, 0, 3, 0, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_create("no-such-net", 8, 8, 1, 3, 0, &m), KDENS_E_NOTFOUND);
    assert_non_null(strstr(kdens_errmsg(), "no-such-net"));
    ASSERT_STATUS(kdens_model_from_spec(NULL, 8, 8, 1, 3, 0, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_from_spec_file(NULL, 8, 8, 1, 3, 0, &m), KDENS_E_ARG);
    assert_null(m);
    kdens_model_free(NULL);
    kdens_optimizer_free(NULL);
    assert_int_equal(kdens_model_param_count(NULL), 0);
    assert_int_equal(kdens_model_trainable_count(NULL), 0);
    assert_int_equal(kdens_model_num_classes(NULL), 0);
    assert_int_equal(kdens_model_num_layers(NULL), 0);
    assert_int_equal(kdens_model_summary(NULL, NULL, 0), 0);
    assert_int_equal(kdens_model_spec(NULL, NULL, 0), 0);
    assert_null(kdens_arch_name(-1));
    assert_null(kdens_arch_name(kdens_arch_count()));
    ASSERT_STATUS(kdens_model_input_shape(NULL, NULL, NULL, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_predict(NULL, x, 1, probs), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_predict(good, NULL, 1, probs), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_predict(good, x, 1, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_predict_u8(good, NULL, 1, probs), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_predict_u8(NULL, img, 1, probs), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_predict_logits(good, x, 1, NULL), KDENS_E_ARG);
    ASSERT_OK(kdens_model_predict(good, x, 0, probs)); /* nothing to do */
    ASSERT_STATUS(kdens_model_save(NULL, "/tmp/x.kdm"), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_save(good, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_load(NULL, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_load("/tmp/x.kdm", NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_training(NULL, 1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_batchnorm(NULL, 0.9f, 1e-3f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_batchnorm(good, 1.5f, 1e-3f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_batchnorm(good, 0.9f, 0.0f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_batchnorm(good, NAN, 1e-3f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_seed(NULL, 1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_loss(NULL, 1, 1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_loss(good, NAN, 1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_loss(good, 0.5f, INFINITY), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_forward_loss(NULL, x, 1, &y, NULL, NULL, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_forward_loss(good, NULL, 1, &y, NULL, NULL, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_forward_loss(good, x, 0, &y, NULL, NULL, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_forward_loss(good, x, 1, NULL, NULL, NULL, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_backward(NULL), KDENS_E_ARG);
    float scale[1] = {1}, offset[1] = {0};
    ASSERT_STATUS(kdens_model_set_input_scaling(NULL, scale, offset), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_input_scaling(good, NULL, offset), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_get_input_scaling(good, scale, NULL), KDENS_E_ARG);
    scale[0] = NAN;
    ASSERT_STATUS(kdens_model_set_input_scaling(good, scale, offset), KDENS_E_ARG);
    const char *names[2] = {"a", "b"}, *bad_names[3] = {"a", NULL, "c"},
               *nl_names[3] = {"a", "b\nc", "d"};
    ASSERT_STATUS(kdens_model_set_class_names(good, names, 2), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_class_names(good, bad_names, 3), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_class_names(good, nl_names, 3), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_class_names(NULL, names, 2), KDENS_E_ARG);
    assert_null(kdens_model_class_name(good, 0)); /* unset */
    assert_null(kdens_model_class_name(good, -1));
    assert_null(kdens_model_class_name(NULL, 0));
    ASSERT_STATUS(kdens_model_set_meta(good, "a=b", "c"), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_meta(good, "", "c"), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_meta(good, "k", "two\nlines"), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_set_meta(NULL, "k", "v"), KDENS_E_ARG);
    ASSERT_OK(kdens_model_set_meta(good, "k", "v1"));
    ASSERT_OK(kdens_model_set_meta(good, "k", "v2"));
    assert_string_equal(kdens_model_get_meta(good, "k"), "v2");
    ASSERT_OK(kdens_model_set_meta(good, "k", NULL));
    assert_null(kdens_model_get_meta(good, "k"));
    assert_null(kdens_model_get_meta(NULL, "k"));

    kdens_optimizer *o = NULL;
    ASSERT_STATUS(kdens_optimizer_create(KDENS_OPT_ADAM, 0.1f, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_create((kdens_optimizer_type)9, 0.1f, &o), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_create(KDENS_OPT_ADAM, -1.0f, &o), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_create(KDENS_OPT_ADAM, NAN, &o), KDENS_E_ARG);
    assert_null(o);
    ASSERT_OK(kdens_optimizer_create(KDENS_OPT_SGD, 0.1f, &o));
    ASSERT_STATUS(kdens_optimizer_set_lr(o, -0.1f), KDENS_E_ARG);
    ASSERT_OK(kdens_optimizer_set_lr(o, 0.05f));
    assert_true(kdens_optimizer_get_lr(o) == 0.05f);
    assert_true(kdens_optimizer_get_lr(NULL) == 0.0f);
    assert_int_equal(kdens_optimizer_steps(NULL), 0);
    ASSERT_STATUS(kdens_optimizer_set_lr(NULL, 0.1f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_set_momentum(o, 1.0f, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_set_momentum(NULL, 0.5f, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_set_betas(o, 1.0f, 0.9f, 1e-7f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_set_betas(o, 0.9f, 0.9f, 0.0f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_set_betas(NULL, 0.9f, 0.9f, 1e-7f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_set_weight_decay(o, -1.0f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_set_weight_decay(NULL, 0.0f), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_step(NULL, good), KDENS_E_ARG);
    ASSERT_STATUS(kdens_optimizer_step(o, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_model_train_step(good, NULL, x, 1, &y, NULL, NULL, NULL), KDENS_E_ARG);
    kdens_optimizer_free(o);
    kdens_model_free(good);
}

static void test_input_shapes(void **state)
{
    (void)state;
    /* the minimum input of each built-in architecture, and sizes above it */
    static const struct {
        const char *arch;
        int min, channels;
    } mins[] = {{"test", 2, 1},          {"resnet20", 1, 1},       {"mobilenet_small", 1, 1},
                {"resnet50v2", 1, 3},    {"densenet121", 29, 3},   {"efficientnetb0", 1, 3},
                {"efficientnetb3", 1, 3}, {"mobilenetv3large", 1, 3}};
    for (size_t i = 0; i < sizeof mins / sizeof *mins; i++) {
        kdens_model *m;
        int sizes[3] = {mins[i].min, mins[i].min + 1, 2 * mins[i].min + 5};
        for (int s = 0; s < 3; s++) {
            kdens_status st = kdens_model_create(mins[i].arch, sizes[s], sizes[s] + 3,
                                                 mins[i].channels, 2 + s * 5, 1, &m);
            if (st != KDENS_OK)
                fail_msg("%s at %d: %s", mins[i].arch, sizes[s], kdens_errmsg());
            float probs[12];
            size_t in = (size_t)sizes[s] * (sizes[s] + 3) * mins[i].channels;
            float *x = calloc(in, sizeof(float));
            ASSERT_OK(kdens_model_predict(m, x, 1, probs));
            free(x);
            kdens_model_free(m);
        }
        if (mins[i].min > 1) {
            m = NULL;
            ASSERT_STATUS(kdens_model_create(mins[i].arch, mins[i].min - 1, mins[i].min - 1,
                                             mins[i].channels, 3, 1, &m),
                          KDENS_E_SHAPE);
            assert_non_null(strstr(kdens_errmsg(), "too small"));
            assert_null(m);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-threads") == 0) {
        printf("%d\n", kdens_get_num_threads());
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_errmsg_is_thread_local),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_threads_from_environment),
        cmocka_unit_test(test_callbacks),
        cmocka_unit_test(test_null_and_range_arguments),
        cmocka_unit_test(test_input_shapes),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}

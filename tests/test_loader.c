/* The batch loader: every sample once per epoch with the last partial batch
 * kept, a fresh shuffle per epoch from the seed, scaling, augmentation, the
 * same batches whatever the number of threads, and feature rows in the
 * order of a dataset. */
#include "testutil.h"

#include "data/data.h"

enum { N = 103, S = 6 };

/* A dataset whose sample i has every pixel i and label i % 5. */
static kdens_dataset *make_dataset(void)
{
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(N, S, S, 1, 5, &ds));
    for (size_t i = 0; i < N; i++) {
        memset(ds->store->pixels + i * S * S, (int)i, S * S);
        ds->store->labels[i] = (int32_t)(i % 5);
    }
    return ds;
}

/* All batches of one epoch: the sample ids (read back from the pixels). */
static size_t epoch_ids(kdens_loader *ld, uint64_t epoch, int *ids, float scale)
{
    ASSERT_OK(kdens_loader_start_epoch(ld, epoch));
    size_t total = 0, n;
    const float *x;
    const int32_t *labels;
    for (;;) {
        ASSERT_OK(kdens_loader_next(ld, &x, &labels, &n));
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            int id = (int)(x[i * S * S] / scale + 0.5f);
            assert_int_equal(labels[i], id % 5);
            ids[total++] = id;
        }
    }
    return total;
}

static void test_every_sample_once(void **state)
{
    (void)state;
    kdens_dataset *ds = make_dataset();
    kdens_loader *ld;
    ASSERT_OK(kdens_loader_create(ds, 10, 7, &ld));
    assert_int_equal(kdens_loader_batches(ld), 11);
    int ids[N], seen[N] = {0};
    assert_int_equal(epoch_ids(ld, 0, ids, 1.0f / 255), N);
    for (int i = 0; i < N; i++)
        seen[ids[i]]++;
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    /* the last batch holds the 3 left over */
    ASSERT_OK(kdens_loader_start_epoch(ld, 0));
    size_t n = 0, last = 0;
    const float *x;
    do {
        last = n;
        ASSERT_OK(kdens_loader_next(ld, &x, NULL, &n));
    } while (n > 0);
    assert_int_equal(last, 3);
    kdens_loader_free(ld);
    kdens_dataset_free(ds);
}

static void test_shuffles(void **state)
{
    (void)state;
    kdens_dataset *ds = make_dataset();
    kdens_loader *ld;
    ASSERT_OK(kdens_loader_create(ds, 16, 7, &ld));
    int a[N], b[N], c[N];
    epoch_ids(ld, 0, a, 1.0f / 255);
    epoch_ids(ld, 1, b, 1.0f / 255);
    epoch_ids(ld, 0, c, 1.0f / 255);
    assert_memory_not_equal(a, b, sizeof a); /* a fresh shuffle per epoch */
    assert_memory_equal(a, c, sizeof a);     /* reproducible */
    ASSERT_OK(kdens_loader_set_shuffle(ld, 0));
    epoch_ids(ld, 3, a, 1.0f / 255);
    for (int i = 0; i < N; i++)
        assert_int_equal(a[i], i);
    /* scaling */
    float scale = 0.5f, offset = 0.0f;
    ASSERT_OK(kdens_loader_set_scaling(ld, &scale, &offset));
    epoch_ids(ld, 3, b, 0.5f);
    assert_memory_equal(a, b, sizeof a);
    kdens_loader_free(ld);
    kdens_dataset_free(ds);
}

/* The float batches of a whole epoch, concatenated. */
static float *epoch_floats(kdens_loader *ld, uint64_t epoch)
{
    float *all = malloc(sizeof(float) * N * S * S);
    size_t at = 0, n;
    const float *x;
    ASSERT_OK(kdens_loader_start_epoch(ld, epoch));
    for (;;) {
        ASSERT_OK(kdens_loader_next(ld, &x, NULL, &n));
        if (n == 0)
            break;
        memcpy(all + at, x, sizeof(float) * n * S * S);
        at += n * S * S;
    }
    assert_int_equal(at, N * S * S);
    return all;
}

static void test_threads_do_not_change_batches(void **state)
{
    (void)state;
    kdens_dataset *ds = make_dataset();
    /* gradients inside the images so that the warp shows */
    for (size_t i = 0; i < N; i++)
        for (int p = 0; p < S * S; p++)
            ds->store->pixels[i * S * S + p] = (uint8_t)(i + 9 * p);
    kdens_augment *aug;
    ASSERT_OK(kdens_augment_create(&aug));
    ASSERT_OK(kdens_augment_set_affine(aug, 20, 0.1f, 0.1f, 5, 0.1f, 1));
    ASSERT_OK(kdens_augment_set_randaugment(aug, 2, 10));
    kdens_loader *one, *many;
    ASSERT_OK(kdens_loader_create(ds, 8, 11, &one));
    ASSERT_OK(kdens_loader_create(ds, 8, 11, &many));
    ASSERT_OK(kdens_loader_set_augment(one, aug));
    ASSERT_OK(kdens_loader_set_augment(many, aug));
    ASSERT_OK(kdens_loader_set_threads(many, 4));
    float *a = epoch_floats(one, 2), *b = epoch_floats(many, 2);
    assert_memory_equal(a, b, sizeof(float) * N * S * S);
    ASSERT_OK(kdens_loader_set_augment(one, NULL));
    float *c = epoch_floats(one, 2);
    assert_memory_not_equal(a, c, sizeof(float) * N * S * S);
    free(a);
    free(b);
    free(c);
    /* an epoch abandoned half way, then a new one */
    const float *x;
    size_t n;
    ASSERT_OK(kdens_loader_start_epoch(many, 5));
    ASSERT_OK(kdens_loader_next(many, &x, NULL, &n));
    ASSERT_OK(kdens_loader_start_epoch(many, 6));
    ASSERT_OK(kdens_loader_next(many, &x, NULL, &n));
    assert_int_equal(n, 8);
    kdens_loader_free(one);
    kdens_loader_free(many);
    kdens_augment_free(aug);
    kdens_dataset_free(ds);
}

static void test_loader_errors(void **state)
{
    (void)state;
    kdens_dataset *ds = make_dataset();
    kdens_loader *ld = NULL;
    ASSERT_STATUS(kdens_loader_create(ds, 0, 1, &ld), KDENS_E_ARG);
    ASSERT_STATUS(kdens_loader_create(NULL, 4, 1, &ld), KDENS_E_ARG);
    assert_null(ld);
    ASSERT_OK(kdens_loader_create(ds, 4, 1, &ld));
    size_t n;
    ASSERT_STATUS(kdens_loader_next(ld, NULL, NULL, &n), KDENS_E_STATE);
    ASSERT_STATUS(kdens_loader_set_threads(ld, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_loader_set_scaling(ld, NULL, NULL), KDENS_E_ARG);
    assert_int_equal(kdens_loader_batches(NULL), 0);
    kdens_loader_free(ld);
    kdens_loader_free(NULL);
    kdens_dataset_free(ds);
}

/* Feature rows come in the order a dataset's samples would (same seed,
 * batch and epoch), copied as they are, with their labels; no augmentation
 * or scaling. */
static void test_features(void **state)
{
    (void)state;
    enum { D = 3 };
    kdens_dataset *ds = make_dataset();
    float rows[N * D];
    int32_t labels[N];
    for (int i = 0; i < N; i++) {
        rows[i * D] = (float)i, rows[i * D + 1] = i + 0.5f, rows[i * D + 2] = -(float)i;
        labels[i] = (int32_t)(i % 5);
    }
    kd_features f = {rows, labels, N, D};
    kdens_loader *images, *features;
    ASSERT_OK(kdens_loader_create(ds, 16, 7, &images));
    ASSERT_OK(kd_loader_create_features(&f, 16, 7, &features));
    ASSERT_OK(kdens_loader_set_threads(features, 3));
    assert_int_equal(kdens_loader_batches(features), kdens_loader_batches(images));
    for (uint64_t epoch = 0; epoch < 2; epoch++) {
        int ids[N];
        assert_int_equal(epoch_ids(images, epoch, ids, 1.0f / 255), N);
        ASSERT_OK(kdens_loader_start_epoch(features, epoch));
        size_t at = 0, n;
        const float *x;
        const int32_t *y;
        for (;;) {
            ASSERT_OK(kdens_loader_next(features, &x, &y, &n));
            if (n == 0)
                break;
            const size_t *idx = kdens_loader_batch_indices(features);
            for (size_t i = 0; i < n; i++, at++) {
                assert_int_equal(idx[i], ids[at]);
                assert_memory_equal(x + i * D, rows + ids[at] * D, sizeof(float) * D);
                assert_int_equal(y[i], labels[ids[at]]);
            }
        }
        assert_int_equal(at, N);
    }
    kdens_augment *aug;
    ASSERT_OK(kdens_augment_create(&aug));
    ASSERT_STATUS(kdens_loader_set_augment(features, aug), KDENS_E_ARG);
    ASSERT_OK(kdens_loader_set_augment(features, NULL));
    float scale = 0.5f, offset = 0.0f;
    ASSERT_STATUS(kdens_loader_set_scaling(features, &scale, &offset), KDENS_E_ARG);
    kdens_augment_free(aug);
    kdens_loader_free(features);
    kdens_loader_free(images);
    kdens_dataset_free(ds);
    /* bad arguments */
    kdens_loader *ld = NULL;
    kd_features none = {rows, labels, 0, D}, flat = {rows, labels, N, 0},
                unlabelled = {rows, NULL, N, D};
    ASSERT_STATUS(kd_loader_create_features(NULL, 16, 7, &ld), KDENS_E_ARG);
    ASSERT_STATUS(kd_loader_create_features(&f, 0, 7, &ld), KDENS_E_ARG);
    ASSERT_STATUS(kd_loader_create_features(&none, 16, 7, &ld), KDENS_E_ARG);
    ASSERT_STATUS(kd_loader_create_features(&flat, 16, 7, &ld), KDENS_E_ARG);
    ASSERT_STATUS(kd_loader_create_features(&unlabelled, 16, 7, &ld), KDENS_E_ARG);
    assert_null(ld);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_sample_once),
        cmocka_unit_test(test_shuffles),
        cmocka_unit_test(test_threads_do_not_change_batches),
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_features),
    };
    return cmocka_run_group_tests_name("loader", tests, NULL, NULL);
}

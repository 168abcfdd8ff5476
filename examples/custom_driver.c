/* custom_driver: a multi-teacher experiment in one file through the public
 * API -- teachers on random subsets, their fusion, and a student distilled
 * from them -- on Fashion-MNIST (or on IDX files given as arguments).
 *
 *   cc custom_driver.c $(pkg-config --cflags --libs kdens) -o custom_driver
 *   ./custom_driver [TEACHERS [EPOCHS [LIMIT]]]
 */
#include <kdens.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                    \
    do {                                                                               \
        if ((call) != KDENS_OK) {                                                      \
            fprintf(stderr, "%s: %s\n", #call, kdens_errmsg());                        \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* One model of `arch` trained on `data` for `epochs` (Adam, cosine). */
static kdens_model *train(const kdens_dataset *data, const kdens_dataset *val, int epochs,
                          uint64_t seed)
{
    int h, w, c;
    kdens_model *m;
    CHECK(kdens_dataset_shape(data, &h, &w, &c));
    CHECK(kdens_model_create("test", h, w, c, kdens_dataset_num_classes(data), seed, &m));
    kdens_trainer *t;
    CHECK(kdens_trainer_create(m, data, val, &t));
    CHECK(kdens_trainer_set_epochs(t, epochs));
    CHECK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.005));
    CHECK(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_COSINE, 0, 0));
    CHECK(kdens_trainer_set_seed(t, seed));
    CHECK(kdens_trainer_fit(t));
    kdens_trainer_free(t);
    return m;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4, epochs = argc > 2 ? atoi(argv[2]) : 3;
    size_t limit = argc > 3 ? (size_t)atol(argv[3]) : 0;
    kdens_dataset *all, *test, *train_part, *val;
    CHECK(kdens_dataset_preset("fmnist", NULL, &all, &test));
    if (limit) { /* a quick run on a slice */
        kdens_dataset *a, *b;
        CHECK(kdens_dataset_subset(all, 0, limit, 1, &a));
        CHECK(kdens_dataset_subset(test, 0, limit, 2, &b));
        kdens_dataset_free(all), kdens_dataset_free(test);
        all = a, test = b;
    }
    CHECK(kdens_dataset_split(all, 0.1, 1, &train_part, &val));

    /* 1. teachers, each on a random half of the training part */
    kdens_ensemble *ens;
    CHECK(kdens_ensemble_create(&ens));
    for (int i = 0; i < n; i++) {
        kdens_dataset *half;
        char path[64];
        CHECK(kdens_dataset_subset(train_part, 0.5, 0, 100 + (uint64_t)i, &half));
        kdens_model *m = train(half, val, epochs, (uint64_t)i + 1);
        snprintf(path, sizeof path, "teacher_%d.kdm", i);
        CHECK(kdens_model_save(m, path));
        CHECK(kdens_ensemble_add(ens, path));
        kdens_model_free(m);
        kdens_dataset_free(half);
    }

    /* 2. their fusion on the test set */
    kdens_predictions *pr;
    CHECK(kdens_ensemble_predict(ens, test, &pr));
    double mean_acc, borda_acc, single;
    int first = 0;
    CHECK(kdens_predictions_accuracy(pr, KDENS_FUSE_MEAN, NULL, 0, &mean_acc));
    CHECK(kdens_predictions_accuracy(pr, KDENS_FUSE_BORDA, NULL, 0, &borda_acc));
    CHECK(kdens_predictions_accuracy(pr, KDENS_FUSE_MEAN, &first, 1, &single));
    printf("teacher 0 %.4f, ensemble of %d: mean %.4f, borda %.4f\n", single, n, mean_acc,
           borda_acc);

    /* 3. a student of the same size distilled from all of them */
    kdens_model *tmpl;
    int h, w, c;
    CHECK(kdens_dataset_shape(train_part, &h, &w, &c));
    CHECK(kdens_model_create("test", h, w, c, kdens_dataset_num_classes(train_part), 7, &tmpl));
    kdens_distiller *d;
    CHECK(kdens_distiller_create(ens, tmpl, KDENS_DISTILL_MIMIC_ALL, train_part, val, &d));
    CHECK(kdens_distiller_set_loss(d, 0.5f, 4.0f));
    kdens_trainer *t = kdens_distiller_trainer(d);
    CHECK(kdens_trainer_set_epochs(t, epochs));
    CHECK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.005));
    CHECK(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_COSINE, 0, 0));
    CHECK(kdens_distiller_fit(d));
    kdens_model *student;
    CHECK(kdens_distiller_export(d, &student)); /* heads folded: a plain model */
    double loss, acc;
    CHECK(kdens_model_evaluate(student, test, 256, &loss, &acc, NULL, NULL, NULL));
    printf("student (mimic_all, %zu parameters): %.4f\n", kdens_model_param_count(student), acc);
    CHECK(kdens_model_save(student, "student.kdm"));

    kdens_model_free(student);
    kdens_distiller_free(d);
    kdens_model_free(tmpl);
    kdens_predictions_free(pr);
    kdens_ensemble_free(ens);
    kdens_dataset_free(train_part), kdens_dataset_free(val);
    kdens_dataset_free(all), kdens_dataset_free(test);
    return 0;
}

/* train_fmnist: trains a network on the real Fashion-MNIST with the public
 * dataset and trainer API, evaluates it on the test set and saves it.
 *
 *   train_fmnist [--arch NAME] [--epochs E] [--batch B] [--lr LR] [--seed S]
 *                [--patience P] [--augment] [--log FILE.csv] [--out FILE.kdm]
 *
 * Reads the IDX files of Debian's dataset-fashion-mnist.  Defaults: the
 * reference's `test` network, Adam at 0.005 (its config/models.py) with a
 * cosine schedule over 20 epochs, 10% of the training set for validation,
 * early stopping with patience 10 (validation loss is noisy: a shorter
 * patience stops this small network while its accuracy still rises). */
#define _POSIX_C_SOURCE 200809L
#include <kdens.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
    fprintf(stderr, "train_fmnist: %s: %s\n", what, kdens_errmsg());
    return 1;
}

static void show_progress(const char *task, uint64_t done, uint64_t total, void *user)
{
    (void)user;
    if (done == total) /* one line per epoch */
        printf("  %s\n", task);
}

static void show_log(kdens_log_level level, const char *message, void *user)
{
    (void)user;
    if (level <= KDENS_LOG_INFO)
        printf("%s\n", message);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *arch = "test", *out = NULL, *log = NULL;
    int epochs = 20, augment = 0, patience = 10;
    size_t batch = 128;
    double lr = 0.005;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--arch") && v) arch = v, i++;
        else if (!strcmp(a, "--epochs") && v) epochs = atoi(v), i++;
        else if (!strcmp(a, "--batch") && v) batch = (size_t)atol(v), i++;
        else if (!strcmp(a, "--lr") && v) lr = atof(v), i++;
        else if (!strcmp(a, "--seed") && v) seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--log") && v) log = v, i++;
        else if (!strcmp(a, "--patience") && v) patience = atoi(v), i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else if (!strcmp(a, "--augment")) augment = 1;
        else {
            fprintf(stderr, "usage: train_fmnist [--arch NAME] [--epochs E] [--batch B] "
                            "[--lr LR] [--seed S] [--patience P] [--augment] [--log FILE.csv] "
                            "[--out FILE.kdm]\n");
            return 2;
        }
    }
    kdens_dataset *all, *test, *train, *val;
    if (kdens_dataset_preset("fmnist", NULL, &all, &test) != KDENS_OK)
        return fail("fmnist");
    if (kdens_dataset_split(all, 0.1, seed, &train, &val) != KDENS_OK)
        return fail("split");
    kdens_model *m;
    if (kdens_model_create(arch, 28, 28, 1, 10, seed, &m) != KDENS_OK)
        return fail(arch);
    printf("%s: %zu parameters; %zu training, %zu validation, %zu test images; %d threads\n",
           arch, kdens_model_param_count(m), kdens_dataset_count(train),
           kdens_dataset_count(val), kdens_dataset_count(test), kdens_get_num_threads());
    kdens_set_log_callback(show_log, NULL);
    kdens_set_progress_callback(show_progress, NULL);
    kdens_trainer *t;
    kdens_augment *aug = NULL;
    if (kdens_trainer_create(m, train, val, &t) != KDENS_OK ||
        kdens_trainer_set_epochs(t, epochs) != KDENS_OK ||
        kdens_trainer_set_batch(t, batch) != KDENS_OK ||
        kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, lr) != KDENS_OK ||
        kdens_trainer_set_schedule(t, KDENS_SCHEDULE_COSINE, 0, 0) != KDENS_OK ||
        kdens_trainer_set_early_stopping(t, patience, 1) != KDENS_OK ||
        kdens_trainer_set_seed(t, seed) != KDENS_OK || kdens_trainer_set_log(t, log) != KDENS_OK)
        return fail("trainer");
    if (augment && (kdens_augment_preset("fmnist", &aug) != KDENS_OK ||
                    kdens_trainer_set_augment(t, aug) != KDENS_OK))
        return fail("augmentation");
    if (kdens_trainer_fit(t) != KDENS_OK)
        return fail("training");
    double loss, top1, top5, per_class[10];
    if (kdens_model_evaluate(m, test, 500, &loss, &top1, &top5, per_class, NULL) != KDENS_OK)
        return fail("evaluation");
    printf("best epoch %d of %d; test accuracy %.4f (top-5 %.4f), test loss %.4f\n",
           kdens_trainer_best_epoch(t), kdens_trainer_epochs_run(t), top1, top5, loss);
    for (int c = 0; c < 10; c++)
        printf("  %-12s %.3f\n", kdens_dataset_class_name(test, c), per_class[c]);
    if (out) {
        const char *names[10];
        for (int c = 0; c < 10; c++)
            names[c] = kdens_dataset_class_name(test, c);
        kdens_model_set_class_names(m, names, 10);
        kdens_model_set_meta(m, "dataset", "fmnist");
        if (kdens_model_save(m, out) != KDENS_OK)
            return fail(out);
        printf("saved %s\n", out);
    }
    kdens_trainer_free(t);
    kdens_augment_free(aug);
    kdens_model_free(m);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
    kdens_dataset_free(all);
    kdens_dataset_free(test);
    return 0;
}

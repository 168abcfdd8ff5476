/* kdens train and kdens eval: one model trained through the library's
 * trainer, and a model evaluated on a dataset's test part. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char usage_train[] =
    "usage: kdens train --dataset D --arch A [--workdir W] [--subset FILE.csv | --fraction F]\n"
    "                   [--epochs N] [--batch B] [--lr LR] [--seed S] [--patience P]\n"
    "                   [--schedule constant|cosine] [--augment] [--resume]\n"
    "                   [--size HxW] [--color gray|rgb] [--out FILE.kdm]\n"
    "\n"
    "Trains architecture A on the training set of D (a preset or an image folder),\n"
    "holding out 10% (stratified) for validation, with Adam, early stopping on the\n"
    "validation loss (restore best), a CSV log and a checkpoint after every epoch.\n"
    "Defaults follow the reference's config/models.py for A where it lists A\n"
    "(epochs, lr, batch, patience, RandAugment), else 10 epochs, lr 0.001, batch\n"
    "128, patience 10.  Files: W/<dataset>/models/<name>.kdm, .ckpt beside it, and\n"
    "W/<dataset>/logs/<name>.csv (W defaults to '.').\n"
    "\n"
    "  --subset FILE   train on the samples a subset manifest lists\n"
    "  --fraction F    train on a random subset (each sample kept with probability F)\n"
    "  --augment       add the dataset preset's ImageDataGenerator policy\n"
    "  --resume        continue from the checkpoint if there is one\n"
    "  --out FILE      where to save the model instead\n";

const char usage_eval[] =
    "usage: kdens eval --model FILE.kdm --dataset D [--size HxW] [--color gray|rgb]\n"
    "       kdens eval --workdir W --dataset D [--arch A] [--fraction F]\n"
    "\n"
    "Evaluates the model on the test part of D (a preset, or ROOT/test of an image\n"
    "folder): loss, top-1 and top-5 accuracy, accuracy per class, and the\n"
    "confusion matrix (rows: true class, columns: predicted).  Without --model,\n"
    "evaluates every teacher of W/teachers.csv for D (of architecture A and\n"
    "fraction F when given), one line each.\n";

/* Options of train, eval and teachers (each takes those its --help lists). */
typedef struct train_opts {
    const char *dataset, *arch, *workdir, *subset, *out, *model;
    int epochs, patience, augment, resume, schedule, size[2], color;
    size_t batch;
    double lr, fraction;
    uint64_t seed;
    /* teachers only */
    int baseline, no_augment, snapshots, fge, cycle_epochs, checkpoints;
} train_opts;

/* Unset: -1 (epochs, patience, lr, schedule) or 0; the working folder '.'. */
static void train_defaults(train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workdir = ".";
    o->color = KDENS_COLOR_RGB;
    o->epochs = o->patience = o->schedule = -1;
    o->lr = -1;
}

#define OPT_DATASET(o) \
    OPT_STRING("dataset", &(o).dataset, "D", "a preset (mnist, fmnist, ...) or an image folder")
#define OPT_ARCH(o) OPT_STRING("arch", &(o).arch, "A", "the architecture")
#define OPT_WORKDIR(o) OPT_STRING("workdir", &(o).workdir, "W", "the workspace (default '.')")
#define OPT_FRACTION(o, help) \
    OPT_DOUBLE("fraction", &(o).fraction, "F", 0, 1, CLI_OPEN_MIN, help)
#define IMAGE_OPTIONS(o)                                                                      \
    OPT_HW("size", &(o).size, "resize folder images (default: keep their size)"),             \
        OPT_CHOICE("color", &(o).color, NULL, cli_colors,                                     \
                   "gray or rgb for folder images (default rgb)")
#define TRAINING_OPTIONS(o)                                                                   \
    OPT_INT("epochs", &(o).epochs, "N", 1, CLI_NOLIMIT, "epochs (default: the architecture's)"), \
        OPT_SIZE("batch", &(o).batch, "B", 1, CLI_NOLIMIT, "batch size"),                     \
        OPT_DOUBLE("lr", &(o).lr, "LR", 0, CLI_NOLIMIT, CLI_OPEN_MIN, "Adam's learning rate"), \
        OPT_INT("patience", &(o).patience, "P", 0, CLI_NOLIMIT,                               \
                "early-stopping patience in epochs"),                                         \
        OPT_U64("seed", &(o).seed, "S", "random seed (default 0)"),                           \
        OPT_CHOICE("schedule", &(o).schedule, NULL, cli_schedules,                            \
                   "the learning-rate schedule")

int cmd_train(const cli_command *cmd, int argc, char **argv)
{
    train_opts o;
    train_defaults(&o);
    const cli_option opts[] = {
        OPT_DATASET(o),
        OPT_ARCH(o),
        OPT_WORKDIR(o),
        OPT_STRING("subset", &o.subset, "FILE.csv", "train on the samples a subset manifest lists"),
        OPT_FRACTION(o, "train on a random subset (each sample kept with probability F)"),
        TRAINING_OPTIONS(o),
        OPT_FLAG("augment", &o.augment, "add the dataset preset's ImageDataGenerator policy"),
        OPT_FLAG("resume", &o.resume, "continue from the checkpoint if there is one"),
        IMAGE_OPTIONS(o),
        OPT_STRING("out", &o.out, "FILE.kdm", "where to save the model instead"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (!o.dataset || !o.arch) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    char name[256], dir[4400], model_path[5200], log_path[5200], ckpt[5300];
    kdens_dataset *all = NULL, *src, *sub = NULL, *train = NULL, *val = NULL;
    /* under mpirun every rank loads the data; rank 0 alone reads the
     * manifest and writes, the ranks train data-parallel */
    kdens_comm *comm = cli_comm();
    bool lead = kdens_comm_rank(comm) == 0;
    kdens_status st = cli_open_dataset(o.dataset, o.size[0], o.size[1], (kdens_color)o.color,
                                       &all, name, sizeof name);
    if ((st = kdens_comm_agree(comm, st)) != KDENS_OK)
        return cli_fail(o.dataset, st);
    src = all;
    if (o.subset) {
        st = lead ? kdens_dataset_select(all, o.subset, &sub) : KDENS_OK;
        if ((st = kdens_comm_agree(comm, st)) == KDENS_OK)
            st = cli_share_view(all, &sub);
        if (st != KDENS_OK)
            return cli_fail(o.subset, st);
        src = sub;
    } else if (o.fraction > 0 && o.fraction < 1) { /* 1: the whole set */
        st = kdens_dataset_subset(all, o.fraction, 0, o.seed, &sub);
        if (st != KDENS_OK)
            return cli_fail("subset", st);
        src = sub;
    }
    st = kdens_dataset_split(src, 0.1, o.seed, &train, &val);
    if (st != KDENS_OK)
        return cli_fail("split", st);
    int h, w, c;
    kdens_dataset_shape(train, &h, &w, &c);
    kdens_model *m = NULL;
    char arch[256], *spec = NULL;
    st = cli_arch(o.arch, arch, sizeof arch, &spec);
    if (st == KDENS_OK)
        st = spec ? kdens_model_from_spec(spec, h, w, c, kdens_dataset_num_classes(train), o.seed,
                                          &m)
                  : kdens_model_create(arch, h, w, c, kdens_dataset_num_classes(train), o.seed,
                                       &m);
    free(spec);
    if (st != KDENS_OK)
        return cli_fail(o.arch, st);
    kdens_trainer *t;
    kdens_augment *aug = NULL;
    st = kdens_trainer_create(m, train, val, &t);
    if (st == KDENS_OK && kdens_trainer_use_arch_defaults(t, arch) != KDENS_OK) {
        kdens_trainer_set_epochs(t, 10); /* not in the reference: plain defaults */
        kdens_trainer_set_early_stopping(t, 10, 1);
    }
    if (st == KDENS_OK && o.epochs > 0)
        st = kdens_trainer_set_epochs(t, o.epochs);
    if (st == KDENS_OK && o.batch > 0)
        st = kdens_trainer_set_batch(t, o.batch);
    if (st == KDENS_OK && o.lr > 0)
        st = kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, o.lr);
    if (st == KDENS_OK && o.patience >= 0)
        st = kdens_trainer_set_early_stopping(t, o.patience, 1);
    if (st == KDENS_OK && o.schedule == KDENS_SCHEDULE_COSINE)
        st = kdens_trainer_set_schedule(t, KDENS_SCHEDULE_COSINE, 0, 0);
    if (st == KDENS_OK)
        st = kdens_trainer_set_seed(t, o.seed);
    if (st == KDENS_OK && o.augment && kdens_augment_preset(name, &aug) == KDENS_OK)
        st = kdens_trainer_set_augment(t, aug);
    if (st == KDENS_OK)
        st = kdens_trainer_set_comm(t, comm);
    if (st != KDENS_OK)
        return cli_fail("trainer", st);
    char stem[512];
    snprintf(stem, sizeof stem, "%s_%llu", arch, (unsigned long long)o.seed);
    snprintf(dir, sizeof dir, "%s/%s/models", o.workdir, name);
    if (o.out)
        snprintf(model_path, sizeof model_path, "%s", o.out);
    else
        snprintf(model_path, sizeof model_path, "%s/%s.kdm", dir, stem);
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", model_path);
    snprintf(dir, sizeof dir, "%s/%s/logs", o.workdir, name);
    snprintf(log_path, sizeof log_path, "%s/%s.csv", dir, stem);
    char models_dir[5200];
    snprintf(models_dir, sizeof models_dir, "%s", model_path);
    char *slash = strrchr(models_dir, '/');
    if (slash)
        *slash = '\0';
    st = lead && ((slash && cli_mkdirs(models_dir) != 0) || cli_mkdirs(dir) != 0)
             ? kdens_set_error(KDENS_E_IO, "cannot create folders under %s: %s", o.workdir,
                               strerror(errno))
             : KDENS_OK;
    if ((st = kdens_comm_agree(comm, st)) != KDENS_OK)
        return cli_fail(o.workdir, st);
    kdens_trainer_set_log(t, log_path);
    kdens_trainer_set_checkpoint(t, ckpt, o.resume);
    st = kdens_trainer_fit(t);
    if (st != KDENS_OK)
        return cli_fail("training", st);
    double loss, acc;
    st = lead ? kdens_model_evaluate(m, val, 256, &loss, &acc, NULL, NULL, NULL) : KDENS_OK;
    kdens_model_set_meta(m, "dataset", name);
    if (st == KDENS_OK && lead)
        st = kdens_model_save(m, model_path);
    if ((st = kdens_comm_agree(comm, st)) != KDENS_OK)
        return cli_fail(model_path, st);
    if (lead) {
        unlink(ckpt); /* finished: the checkpoint has served */
        printf("%s: %d epochs (best %d), validation accuracy %.4f, loss %.4f\n", model_path,
               kdens_trainer_epochs_run(t), kdens_trainer_best_epoch(t), acc, loss);
    }
    kdens_trainer_free(t);
    kdens_augment_free(aug);
    kdens_model_free(m);
    kdens_dataset_free(train);
    kdens_dataset_free(val);
    kdens_dataset_free(sub);
    kdens_dataset_free(all);
    return 0;
}

/* Every registered teacher of the dataset (and arch, fraction) on the test set. */
static int eval_registry(const train_opts *o)
{
    char *csv = cli_path(o->workdir, "teachers.csv");
    char name[256];
    cli_dataset_name(o->dataset, name, sizeof name);
    kdens_registry *reg = NULL;
    kdens_status st = csv ? kdens_registry_load(csv, &reg) : KDENS_E_NOMEM;
    if (st != KDENS_OK) {
        int rc = cli_fail(csv ? csv : "teachers.csv", st);
        free(csv);
        return rc;
    }
    char want[256] = "", *spec = NULL;
    if (o->arch && cli_arch(o->arch, want, sizeof want, &spec) != KDENS_OK) {
        kdens_registry_free(reg);
        free(csv);
        return 1;
    }
    free(spec); /* only its name is compared */
    kdens_dataset *test = NULL;
    int rc = 0, seen = 0;
    for (size_t i = 0; rc == 0 && i < kdens_registry_count(reg); i++) {
        const char *loc, *ds, *arch, *uuid;
        double frac;
        kdens_registry_row(reg, i, &loc, &ds, &arch, &frac, &uuid);
        if (strcmp(ds, name) != 0 || (o->arch && strcmp(arch, want)) ||
            (o->fraction > 0 && frac != o->fraction))
            continue;
        kdens_model *m = NULL;
        st = kdens_model_load(loc, &m);
        if (st == KDENS_OK && !test)
            st = cli_open_test_for(o->dataset, m, &test);
        double loss, top1, top5;
        if (st == KDENS_OK)
            st = kdens_model_evaluate(m, test, 256, &loss, &top1, &top5, NULL, NULL);
        if (st != KDENS_OK)
            rc = cli_fail(loc, st);
        else
            printf("%s %s %g %s loss %.4f top1 %.4f top5 %.4f\n", arch, ds, frac, uuid, loss, top1,
                   top5);
        seen++;
        kdens_model_free(m);
    }
    kdens_dataset_free(test);
    if (rc == 0 && seen == 0) {
        fprintf(stderr, "kdens: %s lists no teachers of %s\n", csv, name);
        rc = 1;
    }
    kdens_registry_free(reg);
    free(csv);
    return rc;
}

int cmd_eval(const cli_command *cmd, int argc, char **argv)
{
    train_opts o;
    train_defaults(&o);
    const cli_option opts[] = {
        OPT_STRING("model", &o.model, "FILE.kdm", "the model to evaluate"),
        OPT_DATASET(o),
        IMAGE_OPTIONS(o),
        OPT_WORKDIR(o),
        OPT_ARCH(o),
        OPT_FRACTION(o, "only the registered teachers of fraction F"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (!o.dataset || (!o.model && !strcmp(o.workdir, "."))) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    if (!o.model)
        return eval_registry(&o);
    kdens_model *m = NULL;
    kdens_dataset *test = NULL;
    double loss, top1, top5, *per = NULL;
    uint64_t *conf = NULL;
    const char *stage = o.model; /* named should a step fail */
    kdens_status st = kdens_model_load(o.model, &m);
    if (st == KDENS_OK) {
        stage = o.dataset;
        st = cli_open_test_for(o.dataset, m, &test);
    }
    int k = m ? kdens_model_num_classes(m) : 0;
    if (st == KDENS_OK) {
        stage = "evaluation";
        per = malloc(sizeof(double) * k);
        conf = malloc(sizeof(uint64_t) * k * k);
        st = per && conf ? kdens_model_evaluate(m, test, 256, &loss, &top1, &top5, per, conf)
                         : KDENS_E_NOMEM;
    }
    if (st == KDENS_OK) {
        printf("images %zu loss %.4f top1 %.4f top5 %.4f\n", kdens_dataset_count(test), loss,
               top1, top5);
        for (int i = 0; i < k; i++) {
            printf("%-16s %.4f ", kdens_dataset_class_name(test, i), per[i]);
            for (int j = 0; j < k && k <= 20; j++)
                printf(" %5llu", (unsigned long long)conf[(size_t)i * k + j]);
            printf("\n");
        }
    }
    free(per);
    free(conf);
    kdens_dataset_free(test);
    kdens_model_free(m);
    return st == KDENS_OK ? 0 : cli_fail(stage, st);
}

const char usage_teachers[] =
    "usage: kdens teachers --dataset D --arch A [--workdir W] [--fraction F] [--baseline]\n"
    "                      [--snapshots M --cycle-epochs E] [--fge M --cycle-epochs E]\n"
    "                      [--checkpoints K] [--resume]\n"
    "                      [--epochs N] [--batch B] [--lr LR] [--patience P] [--seed S]\n"
    "                      [--schedule constant|cosine] [--no-augment]\n"
    "                      [--size HxW] [--color gray|rgb]\n"
    "\n"
    "Trains a teacher of architecture A for every subset manifest in\n"
    "W/<dataset>/subsets (only those of fraction F when given) not yet in\n"
    "W/teachers.csv, saving W/<dataset>/teachers/<A>_<fraction>_<uuid>.kdm and\n"
    "W/<dataset>/logs/<uuid>.csv and appending a row to W/teachers.csv.  Several\n"
    "processes may run at once on one workspace.  Validation uses W/<dataset>/val.csv\n"
    "(kdens split) when it exists, else 10% of the training set; testing uses the\n"
    "test part of D.  After kdens split, subsets and the baseline draw from the\n"
    "training part W/<dataset>/train.csv.  --baseline also trains A on the whole\n"
    "training set (uuid all_trainset).  Training settings default to the\n"
    "reference's.  A teacher interrupted by a crash resumes from its checkpoint\n"
    "(--resume is implied).\n"
    "\n"
    "  --snapshots M --cycle-epochs E   also a snapshot ensemble: one run with a\n"
    "                  cyclic cosine rate, a teacher saved after each of M cycles\n"
    "  --fge M --cycle-epochs E   also fast geometric ensembling: one run with a\n"
    "                  triangular rate stepped per batch (E even), a teacher saved\n"
    "                  at the low point of each of M cycles\n"
    "  --checkpoints K also a checkpoint ensemble: the K best epochs (by validation\n"
    "                  loss) of one run of --epochs N (default 10)\n"
    "  --schedule S    the learning-rate schedule instead of the reference's\n"
    "  --no-augment    no augmentation (the reference's RandAugment otherwise)\n";

int cmd_teachers(const cli_command *cmd, int argc, char **argv)
{
    train_opts o;
    train_defaults(&o);
    const cli_option opts[] = {
        OPT_DATASET(o),
        OPT_ARCH(o),
        OPT_WORKDIR(o),
        OPT_FRACTION(o, "only the subsets of fraction F"),
        OPT_FLAG("baseline", &o.baseline, "also train A on the whole training set"),
        OPT_INT("snapshots", &o.snapshots, "M", 1, CLI_NOLIMIT,
                "also a snapshot ensemble of M cycles"),
        OPT_INT("fge", &o.fge, "M", 1, CLI_NOLIMIT,
                "also a fast geometric ensemble of M cycles"),
        OPT_INT("cycle-epochs", &o.cycle_epochs, "E", 1, CLI_NOLIMIT,
                "epochs per snapshot or FGE cycle (default 2)"),
        OPT_INT("checkpoints", &o.checkpoints, "K", 1, CLI_NOLIMIT,
                "also a checkpoint ensemble of the K best epochs"),
        OPT_FLAG("resume", &o.resume, "resume from checkpoints (implied)"),
        TRAINING_OPTIONS(o),
        OPT_FLAG("no-augment", &o.no_augment,
                 "no augmentation (the reference's RandAugment otherwise)"),
        IMAGE_OPTIONS(o),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (!o.dataset || !o.arch) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    char name[256], valcsv[4600];
    kdens_dataset *pool = NULL, *val = NULL, *rest_train = NULL, *test = NULL;
    kdens_teachers *tc = NULL;
    const char *stage = o.dataset; /* named in the message should a step fail */
    kdens_status st = cli_open_dataset(o.dataset, o.size[0], o.size[1], (kdens_color)o.color,
                                       &pool, name, sizeof name);
    if (st == KDENS_OK) {
        stage = "validation set";
        snprintf(valcsv, sizeof valcsv, "%s/%s/val.csv", o.workdir, name);
        if (access(valcsv, F_OK) == 0)
            st = kdens_dataset_select(pool, valcsv, &val);
        else
            st = kdens_dataset_split(pool, 0.1, o.seed, &rest_train, &val);
    }
    if (st == KDENS_OK)
        st = cli_training_pool(o.workdir, name, &pool);
    /* under mpirun: rank 0's workspace decides the validation set and the
     * pool, the other ranks take them from it (they may have no workspace) */
    kdens_comm *comm = cli_comm();
    st = kdens_comm_agree(comm, st);
    if (st == KDENS_OK)
        st = cli_share_view(pool, &val);
    if (st == KDENS_OK)
        st = cli_share_view(pool, &pool);
    if (st == KDENS_OK) {
        stage = "test set";
        int h, w, c;
        kdens_dataset_shape(pool, &h, &w, &c);
        st = cli_open_test(o.dataset, h, w, c, &test);
    }
    st = kdens_comm_agree(comm, st);
    char arch[256];
    if (st == KDENS_OK) {
        stage = "teachers";
        /* a spec file goes into rank 0's workspace; the farm sends it on */
        st = kdens_comm_rank(comm) == 0
                 ? cli_workspace_arch(o.arch, o.workdir, name, arch, sizeof arch)
                 : cli_arch_name(o.arch, arch, sizeof arch);
        st = kdens_comm_agree(comm, st);
    }
    if (st == KDENS_OK)
        st = kdens_teachers_create(o.workdir, name, arch, pool, val, test, &tc);
    if (st == KDENS_OK)
        st = kdens_teachers_set_comm(tc, comm);
    if (st == KDENS_OK && o.epochs > 0)
        st = kdens_teachers_set_epochs(tc, o.epochs);
    if (st == KDENS_OK && o.batch > 0)
        st = kdens_teachers_set_batch(tc, o.batch);
    if (st == KDENS_OK && o.lr > 0)
        st = kdens_teachers_set_lr(tc, o.lr);
    if (st == KDENS_OK && o.patience >= 0)
        st = kdens_teachers_set_patience(tc, o.patience);
    if (st == KDENS_OK)
        st = kdens_teachers_set_seed(tc, o.seed);
    if (st == KDENS_OK && o.schedule >= 0)
        st = kdens_teachers_set_schedule(tc, (kdens_schedule)o.schedule);
    if (st == KDENS_OK && o.no_augment)
        st = kdens_teachers_set_augment(tc, NULL);
    int trained = 0;
    int any_subsets = o.snapshots == 0 && o.fge == 0 && o.checkpoints == 0 && !o.baseline;
    if (st == KDENS_OK) { /* with other work asked for, a workspace without subsets is fine */
        st = kdens_teachers_train(tc, o.fraction, &trained);
        if (st == KDENS_E_NOTFOUND && !any_subsets)
            st = KDENS_OK;
    }
    if (st == KDENS_OK && o.baseline)
        st = kdens_teachers_train_baseline(tc);
    if (st == KDENS_OK && o.snapshots > 0)
        st = kdens_teachers_train_snapshots(tc, o.snapshots,
                                            o.cycle_epochs > 0 ? o.cycle_epochs : 2);
    if (st == KDENS_OK && o.fge > 0)
        st = kdens_teachers_train_fge(tc, o.fge, o.cycle_epochs > 0 ? o.cycle_epochs : 2);
    if (st == KDENS_OK && o.checkpoints > 0)
        st = kdens_teachers_train_checkpoints(tc, o.epochs > 0 ? o.epochs : 10, o.checkpoints);
    if (st == KDENS_OK && kdens_comm_rank(comm) == 0)
        printf("trained %d subset teachers%s%s%s%s; registry %s/teachers.csv\n", trained,
               o.baseline ? ", the baseline" : "", o.snapshots ? ", a snapshot ensemble" : "",
               o.fge ? ", a fast geometric ensemble" : "",
               o.checkpoints ? ", a checkpoint ensemble" : "", o.workdir);
    kdens_teachers_free(tc);
    kdens_dataset_free(test);
    kdens_dataset_free(val);
    kdens_dataset_free(rest_train);
    kdens_dataset_free(pool);
    return st == KDENS_OK ? 0 : cli_fail(stage, st);
}

/* kdens subset and kdens split: the reference's generate_subset.py and
 * train_val_test_split.py over the public dataset API. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

const char usage_subset[] =
    "usage: kdens subset --dataset D --workdir W (--fraction F | --count N)\n"
    "                    [--seed S] [--number K] [--size HxW] [--color gray|rgb]\n"
    "\n"
    "Draws random subsets of the training set of D (a preset: mnist, fmnist,\n"
    "emnist, cifar10, cifar100; or an image folder) and writes each as a CSV\n"
    "manifest W/<dataset>/subsets/subset_<fraction digits>_<uuid hex>.csv, the\n"
    "reference's naming (with --count: subset_n<count>_<uuid hex>.csv).  After\n"
    "kdens split, subsets are drawn from the training part W/<dataset>/train.csv.\n"
    "\n"
    "  --fraction F    keep each sample with probability F, in (0, 1]\n"
    "  --count N       keep exactly N samples instead\n"
    "  --seed S        random seed (default 0); subset k uses seed S + k\n"
    "  --number K      how many subsets (default 1)\n"
    "  --size HxW      resize folder images (default: keep their size)\n"
    "  --color MODE    gray or rgb for folder images (default rgb)\n";

const char usage_split[] =
    "usage: kdens split --dataset D --workdir W --fraction F [--seed S]\n"
    "                   [--size HxW] [--color gray|rgb]\n"
    "       kdens split --move ROOT --fraction F [--seed S]\n"
    "\n"
    "Splits the training set of D into training and validation parts, stratified\n"
    "by class, and writes W/<dataset>/train.csv and W/<dataset>/val.csv.\n"
    "With --move, the reference's variant for image folders: moves the chosen\n"
    "files from ROOT/train/<class>/ to ROOT/val/<class>/.\n"
    "\n"
    "  --fraction F    the validation fraction, in (0, 1)\n"
    "  --seed S        random seed (default 0)\n";

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A preset given as NAME or NAME=DIR (the folder of its official files; NAME
 * alone: the system's data folder): true, with *dir NULL or the folder. */
static bool preset_spec(const char *spec, char *name, size_t name_size, const char **dir)
{
    static const char *const presets[] = {"mnist", "fmnist", "emnist", "cifar10", "cifar100"};
    const char *eq = strchr(spec, '=');
    size_t len = eq ? (size_t)(eq - spec) : strlen(spec);
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (strlen(presets[i]) == len && strncmp(spec, presets[i], len) == 0) {
            snprintf(name, name_size, "%s", presets[i]);
            *dir = eq ? eq + 1 : NULL;
            return true;
        }
    return false;
}

void cli_dataset_name(const char *spec, char *name, size_t name_size)
{
    const char *dir;
    if (!preset_spec(spec, name, name_size, &dir)) {
        const char *base = strrchr(spec, '/');
        snprintf(name, name_size, "%s", base && base[1] ? base + 1 : spec);
    }
}

kdens_status cli_open_dataset(const char *spec, int height, int width, kdens_color color,
                              kdens_dataset **out, char *name, size_t name_size)
{
    const char *dir;
    if (preset_spec(spec, name, name_size, &dir))
        return kdens_dataset_preset(name, dir, out, NULL);
    char train[4200];
    snprintf(train, sizeof train, "%s/train", spec);
    cli_dataset_name(spec, name, name_size);
    return kdens_dataset_load_folder(is_dir(train) ? train : spec, height, width, color, 0, out);
}

kdens_status cli_open_test(const char *spec, int height, int width, int channels,
                           kdens_dataset **test)
{
    char name[64];
    const char *dir;
    if (preset_spec(spec, name, sizeof name, &dir))
        return kdens_dataset_preset(name, dir, NULL, test);
    char root[4200];
    snprintf(root, sizeof root, "%s/test", spec);
    if (is_dir(root))
        return kdens_dataset_load_folder(root, height, width,
                                         channels == 1 ? KDENS_COLOR_GRAY : KDENS_COLOR_RGB, 0,
                                         test);
    return kdens_dataset_preset(spec, NULL, NULL, test);
}

kdens_status cli_open_test_for(const char *spec, const kdens_model *m, kdens_dataset **test)
{
    int h, w, c;
    kdens_model_input_shape(m, &h, &w, &c);
    return cli_open_test(spec, h, w, c, test);
}

kdens_status cli_training_pool(const char *workdir, const char *name, kdens_dataset **all)
{
    char tr[4600];
    snprintf(tr, sizeof tr, "%s/%s/train.csv", workdir, name);
    if (access(tr, F_OK) != 0)
        return KDENS_OK;
    kdens_dataset *part;
    kdens_status st = kdens_dataset_select(*all, tr, &part);
    if (st == KDENS_OK) {
        kdens_dataset_free(*all); /* the view keeps the data */
        *all = part;
    }
    return st;
}

kdens_status cli_open_parts(const char *workdir, const char *name, const kdens_dataset *pool,
                            uint64_t seed, kdens_dataset **train, kdens_dataset **val)
{
    char tr[4600], va[4600];
    snprintf(tr, sizeof tr, "%s/%s/train.csv", workdir, name);
    snprintf(va, sizeof va, "%s/%s/val.csv", workdir, name);
    if (access(tr, F_OK) == 0 && access(va, F_OK) == 0) {
        kdens_status st = kdens_dataset_select(pool, tr, train);
        if (st == KDENS_OK && (st = kdens_dataset_select(pool, va, val)) != KDENS_OK)
            kdens_dataset_free(*train);
        return st;
    }
    return kdens_dataset_split(pool, 0.1, seed, train, val);
}

/* Options of both commands. */
typedef struct data_opts {
    const char *dataset, *workdir, *move;
    double fraction;
    size_t count;
    int number, size[2], color;
    uint64_t seed;
} data_opts;

static void data_defaults(data_opts *o)
{
    memset(o, 0, sizeof *o);
    o->number = 1;
    o->color = KDENS_COLOR_RGB;
}

#define DATA_SOURCE_OPTIONS(o)                                                               \
    OPT_STRING("dataset", &(o).dataset, "D", "a preset (mnist, fmnist, ...) or an image folder"), \
        OPT_STRING("workdir", &(o).workdir, "W", "the workspace")
#define DATA_IMAGE_OPTIONS(o)                                                           \
    OPT_HW("size", &(o).size, "resize folder images (default: keep their size)"),       \
        OPT_CHOICE("color", &(o).color, NULL, cli_colors,                               \
                   "gray or rgb for folder images (default rgb)")

int cmd_subset(const cli_command *cmd, int argc, char **argv)
{
    data_opts o;
    data_defaults(&o);
    const cli_option opts[] = {
        DATA_SOURCE_OPTIONS(o),
        OPT_DOUBLE("fraction", &o.fraction, "F", 0, 1, CLI_OPEN_MIN,
                   "keep each sample with probability F, in (0, 1]"),
        OPT_SIZE("count", &o.count, "N", 1, CLI_NOLIMIT, "keep exactly N samples instead"),
        OPT_U64("seed", &o.seed, "S", "random seed (default 0); subset k uses seed S + k"),
        OPT_INT("number", &o.number, "K", 1, CLI_NOLIMIT, "how many subsets (default 1)"),
        DATA_IMAGE_OPTIONS(o),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (!o.dataset || !o.workdir || (o.count == 0 && o.fraction == 0)) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    char name[256], dir[4400];
    kdens_dataset *ds;
    kdens_status st = cli_open_dataset(o.dataset, o.size[0], o.size[1], (kdens_color)o.color, &ds,
                                       name, sizeof name);
    if (st == KDENS_OK)
        st = cli_training_pool(o.workdir, name, &ds);
    if (st != KDENS_OK)
        return cli_fail(o.dataset, st);
    snprintf(dir, sizeof dir, "%s/%s/subsets", o.workdir, name);
    if (cli_mkdirs(dir) != 0) {
        fprintf(stderr, "kdens: cannot create %s: %s\n", dir, strerror(errno));
        kdens_dataset_free(ds);
        return 1;
    }
    for (int k = 0; k < o.number; k++) {
        char path[4800];
        size_t n = 0;
        st = kdens_dataset_write_subset(ds, dir, o.fraction, o.count, o.seed + (uint64_t)k, path,
                                        sizeof path, &n);
        if (st != KDENS_OK) {
            kdens_dataset_free(ds);
            return cli_fail("subset", st);
        }
        printf("%s (%zu of %zu images)\n", path, n, kdens_dataset_count(ds));
    }
    kdens_dataset_free(ds);
    return 0;
}

/* Move the validation files of ROOT/train into ROOT/val, class by class. */
static int move_split(const data_opts *o)
{
    char train[4200];
    snprintf(train, sizeof train, "%s/train", o->move);
    kdens_dataset *ds, *tr, *va;
    /* the images are decoded only to learn the files and classes */
    kdens_status st = kdens_dataset_load_folder(train, 1, 1, KDENS_COLOR_GRAY, 0, &ds);
    if (st != KDENS_OK)
        return cli_fail(train, st);
    st = kdens_dataset_split(ds, o->fraction, o->seed, &tr, &va);
    if (st != KDENS_OK) {
        kdens_dataset_free(ds);
        return cli_fail("split", st);
    }
    int rc = 0;
    for (size_t i = 0; i < kdens_dataset_count(va) && rc == 0; i++) {
        const char *file;
        int32_t label;
        kdens_dataset_get(va, i, NULL, &label, &file);
        char from[8400], to[8400], dir[4600];
        snprintf(dir, sizeof dir, "%s/val/%s", o->move, kdens_dataset_class_name(va, label));
        snprintf(from, sizeof from, "%s/%s", train, file);
        snprintf(to, sizeof to, "%s/val/%s", o->move, file);
        if (cli_mkdirs(dir) != 0 || rename(from, to) != 0) {
            fprintf(stderr, "kdens: cannot move %s to %s: %s\n", from, to, strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0)
        printf("moved %zu of %zu images to %s/val\n", kdens_dataset_count(va),
               kdens_dataset_count(ds), o->move);
    kdens_dataset_free(tr);
    kdens_dataset_free(va);
    kdens_dataset_free(ds);
    return rc;
}

int cmd_split(const cli_command *cmd, int argc, char **argv)
{
    data_opts o;
    data_defaults(&o);
    const cli_option opts[] = {
        DATA_SOURCE_OPTIONS(o),
        OPT_STRING("move", &o.move, "ROOT", "move validation files of ROOT/train to ROOT/val"),
        OPT_DOUBLE("fraction", &o.fraction, "F", 0, 1, CLI_OPEN_MIN | CLI_OPEN_MAX,
                   "the validation fraction, in (0, 1)"),
        OPT_U64("seed", &o.seed, "S", "random seed (default 0)"),
        DATA_IMAGE_OPTIONS(o),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (o.fraction == 0 || (!o.move && (!o.dataset || !o.workdir))) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    if (o.move)
        return move_split(&o);
    char name[256], dir[4400], path[4600];
    kdens_dataset *ds, *tr, *va;
    kdens_status st = cli_open_dataset(o.dataset, o.size[0], o.size[1], (kdens_color)o.color, &ds,
                                       name, sizeof name);
    if (st != KDENS_OK)
        return cli_fail(o.dataset, st);
    st = kdens_dataset_split(ds, o.fraction, o.seed, &tr, &va);
    snprintf(dir, sizeof dir, "%s/%s", o.workdir, name);
    if (st == KDENS_OK && cli_mkdirs(dir) != 0) {
        fprintf(stderr, "kdens: cannot create %s: %s\n", dir, strerror(errno));
        rc = 1;
    } else if (st == KDENS_OK) {
        snprintf(path, sizeof path, "%s/train.csv", dir);
        st = kdens_dataset_write_manifest(tr, path);
        if (st == KDENS_OK) {
            snprintf(path, sizeof path, "%s/val.csv", dir);
            st = kdens_dataset_write_manifest(va, path);
        }
        if (st == KDENS_OK)
            printf("%s/train.csv: %zu images, %s/val.csv: %zu images\n", dir,
                   kdens_dataset_count(tr), dir, kdens_dataset_count(va));
    }
    if (st != KDENS_OK)
        rc = cli_fail("split", st);
    else
        kdens_dataset_free(tr), kdens_dataset_free(va);
    kdens_dataset_free(ds);
    return rc < 0 ? 0 : rc;
}

kdens_status cli_share_view(const kdens_dataset *loaded, kdens_dataset **view)
{
    kdens_comm *comm = cli_comm();
    if (kdens_comm_size(comm) <= 1)
        return KDENS_OK;
    kdens_dataset *shared = NULL;
    kdens_status st = kdens_dataset_share(comm, loaded, *view, &shared);
    if (st == KDENS_OK) {
        kdens_dataset_free(*view);
        *view = shared;
    }
    return st;
}

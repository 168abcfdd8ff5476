/* kdens -- the libkdens command-line tool.  Each subcommand is a thin layer
 * over the public API (include/kdens.h); see docs/cli.md. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_main =
    "usage: kdens <command> [options]\n"
    "\n"
    "commands:\n"
    "  arch NAME|--spec FILE --input HxWxC --classes K [--seed S]\n"
    "                 print a model's summary, ending with 'params: N'\n"
    "  arch --list    list the built-in architectures\n"
    "  subset         write random subsets of a dataset as CSV manifests\n"
    "  split          split a dataset into training and validation parts\n"
    "  train          train one model on a dataset (checkpoints, --resume)\n"
    "  eval           evaluate a saved model on a dataset's test part\n"
    "  teachers       train a teacher per subset manifest of a workspace\n"
    "  ensemble       accuracy of every fusion rule for a set of teachers\n"
    "  diversity      pairwise diversity of a set of teachers, as CSV\n"
    "  vote           apply a fusion rule to scores in a CSV file\n"
    "  distill        distil sampled teachers into students (students.csv)\n"
    "  pipeline       the whole experiment with a report (make demo)\n"
    "  version        print the library version and the kernel path in use\n"
    "  cpu            the kernel paths: in use, and supported by this processor\n"
    "  help           this text; 'kdens COMMAND --help' for one command\n";

static const char *usage_arch =
    "usage: kdens arch NAME --input HxWxC --classes K [--seed S]\n"
    "       kdens arch --spec FILE --input HxWxC --classes K [--seed S]\n"
    "       kdens arch --list\n"
    "\n"
    "Builds the architecture NAME (built in) or the text spec in FILE for the\n"
    "given input shape and class count, prints a Keras-style summary and ends\n"
    "with the line 'params: N' (all parameters, as Keras counts them).\n"
    "\n"
    "  --input HxWxC   input height, width and channels (e.g. 28x28x1)\n"
    "  --classes K     number of classes\n"
    "  --spec FILE     a text spec (docs/spec.md) instead of a built-in name\n"
    "  --seed S        weight-initialisation seed (default 0)\n"
    "  --list          list the built-in architectures and exit\n";

int cli_fail(const char *what, kdens_status st)
{
    fprintf(stderr, "kdens: %s: %s: %s\n", what, kdens_status_str(st), kdens_errmsg());
    return 1;
}

static int parse_shape(const char *s, int *h, int *w, int *c)
{
    char extra;
    return sscanf(s, "%dx%dx%d%c", h, w, c, &extra) == 3 && *h > 0 && *w > 0 && *c > 0;
}

static int cmd_arch(int argc, char **argv)
{
    const char *name = NULL, *spec = NULL;
    int h = 0, w = 0, c = 0, classes = 0;
    unsigned long long seed = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_arch, stdout);
            return 0;
        } else if (strcmp(a, "--list") == 0) {
            for (int k = 0; k < kdens_arch_count(); k++)
                printf("%s\n", kdens_arch_name(k));
            return 0;
        } else if (strcmp(a, "--input") == 0 && has_value) {
            if (!parse_shape(argv[++i], &h, &w, &c)) {
                fprintf(stderr, "kdens arch: --input wants HxWxC, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--classes") == 0 && has_value) {
            classes = atoi(argv[++i]);
        } else if (strcmp(a, "--seed") == 0 && has_value) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(a, "--spec") == 0 && has_value) {
            spec = argv[++i];
        } else if (a[0] != '-' && !name) {
            name = a;
        } else {
            fprintf(stderr, "kdens arch: unexpected argument '%s'\n%s", a, usage_arch);
            return 2;
        }
    }
    if ((!name && !spec) || (name && spec) || h == 0 || classes <= 0) {
        fputs(usage_arch, stderr);
        return 2;
    }
    kdens_model *m = NULL;
    kdens_status st = spec ? kdens_model_from_spec_file(spec, h, w, c, classes, seed, &m)
                           : kdens_model_create(name, h, w, c, classes, seed, &m);
    if (st != KDENS_OK)
        return cli_fail(spec ? spec : name, st);
    size_t len = kdens_model_summary(m, NULL, 0);
    char *text = malloc(len + 1);
    if (!text) {
        kdens_model_free(m);
        fprintf(stderr, "kdens: out of memory\n");
        return 1;
    }
    kdens_model_summary(m, text, len + 1);
    fputs(text, stdout);
    printf("params: %zu\n", kdens_model_param_count(m));
    free(text);
    kdens_model_free(m);
    return 0;
}

/* Progress: a bar redrawn in place on a terminal, one line per epoch otherwise. */
static void show_progress(const char *task, uint64_t done, uint64_t total, void *user)
{
    (void)user;
    if (isatty(fileno(stderr))) {
        int width = 30, filled = total ? (int)(width * done / total) : 0;
        fprintf(stderr, "\r[%.*s%*s] %s  ", filled, "##############################",
                width - filled, "", task);
        if (done == total)
            fputc('\n', stderr);
    } else if (done == total) {
        fprintf(stderr, "%s\n", task);
    }
}

static void show_log(kdens_log_level level, const char *message, void *user)
{
    (void)user;
    if (level <= KDENS_LOG_WARN)
        fprintf(stderr, "kdens: %s\n", message);
}

int main(int argc, char **argv)
{
    kdens_set_progress_callback(show_progress, NULL);
    kdens_set_log_callback(show_log, NULL);
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("kdens %s (kernels: %s)\n", kdens_version(), kdens_cpu_path());
        return 0;
    }
    if (strcmp(argv[1], "cpu") == 0) {
        if (argc > 2 && strcmp(argv[2], "--paths") == 0) {
            printf("%s\n", kdens_cpu_paths());
            return 0;
        }
        printf("path: %s\nsupported: %s\n", kdens_cpu_path(), kdens_cpu_paths());
        return 0;
    }
    if (strcmp(argv[1], "arch") == 0)
        return cmd_arch(argc - 2, argv + 2);
    if (strcmp(argv[1], "subset") == 0)
        return cmd_subset(argc - 2, argv + 2);
    if (strcmp(argv[1], "split") == 0)
        return cmd_split(argc - 2, argv + 2);
    if (strcmp(argv[1], "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(argv[1], "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(argv[1], "teachers") == 0)
        return cmd_teachers(argc - 2, argv + 2);
    if (strcmp(argv[1], "ensemble") == 0)
        return cmd_ensemble(argc - 2, argv + 2);
    if (strcmp(argv[1], "diversity") == 0)
        return cmd_diversity(argc - 2, argv + 2);
    if (strcmp(argv[1], "vote") == 0)
        return cmd_vote(argc - 2, argv + 2);
    if (strcmp(argv[1], "distill") == 0)
        return cmd_distill(argc - 2, argv + 2);
    if (strcmp(argv[1], "pipeline") == 0)
        return cmd_pipeline(argc - 2, argv + 2);
    fprintf(stderr, "kdens: unknown command '%s'\n%s", argv[1], usage_main);
    return 2;
}

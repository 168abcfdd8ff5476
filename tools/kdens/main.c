/* kdens -- the libkdens command-line tool.  Each command is a thin layer over
 * the public API (include/kdens.h); see docs/cli.md.  The command table below
 * dispatches them and makes kdens help; each command declares its options in
 * a table that cli_parse (cli.c) reads. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef KDENS_WITH_ONNX
#include <kdens_onnx.h>
#endif

static const char usage_arch[] =
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

static const char usage_version[] =
    "usage: kdens version\n"
    "\n"
    "Prints the library version and the kernel path in use (kdens --version too),\n"
    "and whether MPI support is built in.\n";

static const char usage_cpu[] =
    "usage: kdens cpu [--paths]\n"
    "\n"
    "Prints the kernel path in use, the paths this processor supports and the\n"
    "int8 kernel of quantised models; with --paths the supported list alone.\n";

static const char usage_help[] =
    "usage: kdens help [COMMAND]\n"
    "\n"
    "Lists the commands, or prints the help of one (as kdens COMMAND --help).\n";

/* The commands, in the order kdens help lists them. */
static const cli_command commands[] = {
    {"arch", "NAME|--spec FILE --input HxWxC --classes K [--seed S]",
     "print a model's summary ending with 'params: N' (--list: the names)", cmd_arch,
     usage_arch},
    {"subset", NULL, "write random subsets of a dataset as CSV manifests", cmd_subset,
     usage_subset},
    {"split", NULL, "split a dataset into training and validation parts", cmd_split, usage_split},
    {"train", NULL, "train one model on a dataset (checkpoints, --resume)", cmd_train,
     usage_train},
    {"eval", NULL, "evaluate a saved model on a dataset's test part", cmd_eval, usage_eval},
    {"teachers", NULL, "train a teacher per subset manifest of a workspace", cmd_teachers,
     usage_teachers},
    {"ensemble", NULL, "accuracy of every fusion rule for a set of teachers", cmd_ensemble,
     usage_ensemble},
    {"diversity", NULL, "pairwise diversity of a set of teachers, as CSV", cmd_diversity,
     usage_diversity},
    {"vote", NULL, "apply a fusion rule to scores in a CSV file", cmd_vote, usage_vote},
    {"distill", NULL, "distil sampled teachers into students (students.csv)", cmd_distill,
     usage_distill},
    {"pipeline", NULL, "the whole experiment with a report (make demo)", cmd_pipeline,
     usage_pipeline},
    {"experiment", "PLAN", "a grid of distillation runs with tables (make experiment)",
     cmd_experiment, usage_experiment},
    {"quantize", "--model M --calibrate D --out OUT", "an int8 model for fast inference",
     cmd_quantize, usage_quantize},
    {"export", "--onnx OUT --model M", "write a saved model as an ONNX file (make ONNX=1)",
     cmd_export, usage_export},
    {"import", "--onnx FILE (--out M | --workdir W ...)",
     "read an ONNX model: save it, register it as a teacher (make ONNX=1)", cmd_import,
     usage_import},
    {"version", NULL, "print the library version and the kernel path in use", cmd_version,
     usage_version},
    {"cpu", NULL, "the kernel paths: in use, and supported by this processor", cmd_cpu,
     usage_cpu},
    {"help", "[COMMAND]", "this text, or one command's (as kdens COMMAND --help)", cmd_help,
     usage_help},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* kdens help: the table, one row per command ("name args" then the summary,
 * on the next line when the two do not fit in the first column). */
static void print_commands(FILE *f)
{
    fputs("usage: kdens <command> [options]\n\ncommands:\n", f);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const cli_command *c = &commands[i];
        char left[128];
        snprintf(left, sizeof left, "%s%s%s", c->name, c->args ? " " : "", c->args ? c->args : "");
        if (strlen(left) > 14)
            fprintf(f, "  %s\n  %-14s %s\n", left, "", c->summary);
        else
            fprintf(f, "  %-14s %s\n", left, c->summary);
    }
}

int cmd_help(const cli_command *cmd, int argc, char **argv)
{
    const cli_option opts[] = {OPT_END};
    const char *name = NULL;
    int n, rc = cli_parse(cmd, opts, argc, argv, &name, 1, &n);
    if (rc >= 0)
        return rc;
    if (!name) {
        print_commands(stdout);
        return 0;
    }
    const cli_command *c = find_command(name);
    if (!c) {
        fprintf(stderr, "kdens: unknown command '%s'\n", name);
        print_commands(stderr);
        return 2;
    }
    fputs(c->usage, stdout);
    return 0;
}

int cmd_version(const cli_command *cmd, int argc, char **argv)
{
    const cli_option opts[] = {OPT_END};
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    printf("kdens %s (kernels: %s)\n", kdens_version(), kdens_cpu_path());
    kdens_comm *comm = cli_comm();
    if (comm)
        printf("mpi: %s, rank %d of %d\n", cli_comm_support(), kdens_comm_rank(comm),
               kdens_comm_size(comm));
    else
        printf("mpi: %s\n", cli_comm_support());
    return 0;
}

int cmd_cpu(const cli_command *cmd, int argc, char **argv)
{
    int paths = 0;
    const cli_option opts[] = {
        OPT_FLAG("paths", &paths, "the paths this processor supports, alone"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (paths)
        printf("%s\n", kdens_cpu_paths());
    else
        printf("path: %s\nsupported: %s\nint8: %s\n", kdens_cpu_path(), kdens_cpu_paths(),
               kdens_cpu_int8_kernel());
    return 0;
}

int cmd_arch(const cli_command *cmd, int argc, char **argv)
{
    const char *name = NULL, *spec = NULL;
    int shape[3] = {0, 0, 0}, classes = 0, list = 0, n_names;
    uint64_t seed = 0;
    const cli_option opts[] = {
        OPT_HWC("input", &shape, "input height, width and channels (e.g. 28x28x1)"),
        OPT_INT("classes", &classes, "K", 1, CLI_NOLIMIT, "number of classes"),
        OPT_STRING("spec", &spec, "FILE", "a text spec (docs/spec.md) instead of a built-in name"),
        OPT_U64("seed", &seed, "S", "weight-initialisation seed (default 0)"),
        OPT_FLAG("list", &list, "list the built-in architectures and exit"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, &name, 1, &n_names);
    if (rc >= 0)
        return rc;
    if (list) {
        for (int k = 0; k < kdens_arch_count(); k++)
            printf("%s\n", kdens_arch_name(k));
        return 0;
    }
    if ((!name && !spec) || (name && spec) || shape[0] == 0 || classes <= 0) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    int h = shape[0], w = shape[1], c = shape[2];
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

static int run(int argc, char **argv)
{
    if (argc < 2) {
        print_commands(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    else if (strcmp(name, "--version") == 0)
        name = "version";
    const cli_command *c = find_command(name);
    if (!c) {
        fprintf(stderr, "kdens: unknown command '%s'\n", name);
        print_commands(stderr);
        return 2;
    }
    return c->run(c, argc - 2, argv + 2);
}

int main(int argc, char **argv)
{
    kdens_set_progress_callback(show_progress, NULL);
    kdens_set_log_callback(show_log, NULL);
#ifdef KDENS_WITH_ONNX
    kdens_onnx_enable(); /* .onnx files load wherever a .kdm does */
#endif
    if (cli_comm_start(&argc, &argv) != 0)
        return 1;
    int rc = run(argc, argv);
    cli_comm_finish(rc);
    return rc;
}

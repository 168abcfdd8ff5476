/* The kdens tool's command table, its option parser, and helpers shared by
 * the commands.  The tool uses the library's public API only (kdens.h). */
#ifndef KDENS_CLI_H
#define KDENS_CLI_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kdens.h>
#include <kdens_experiment.h>

/* ---- commands ------------------------------------------------------------ */

typedef struct cli_command cli_command;
/* A command's handler: argv holds the arguments after the command's name.
 * Returns the exit status: 0 success, 1 the work failed, 2 a usage error. */
typedef int cli_handler(const cli_command *cmd, int argc, char **argv);

/* One row of the command table (main.c): kdens help prints "name args" and
 * the summary; kdens NAME runs the handler; kdens NAME --help prints usage. */
struct cli_command {
    const char *name;
    const char *args;    /* the synopsis after the name in kdens help, or NULL */
    const char *summary; /* one line */
    cli_handler *run;
    const char *usage;   /* the whole --help text (docs/cli.md repeats it) */
};

cli_handler cmd_arch, cmd_version, cmd_cpu, cmd_help, cmd_subset, cmd_split, cmd_train, cmd_eval,
    cmd_teachers, cmd_ensemble, cmd_diversity, cmd_vote, cmd_distill, cmd_pipeline,
    cmd_experiment, cmd_export, cmd_import, cmd_quantize;
extern const char usage_subset[], usage_export[], usage_import[], usage_split[], usage_train[],
    usage_eval[], usage_teachers[], usage_ensemble[], usage_diversity[], usage_vote[],
    usage_distill[], usage_pipeline[], usage_experiment[], usage_quantize[];

/* ---- options ------------------------------------------------------------- */

/* The kinds of option and what their destination is. */
typedef enum cli_kind {
    CLI_FLAG,    /* int, set to 1; takes no value */
    CLI_STRING,  /* const char * (the argument itself) */
    CLI_STRINGS, /* cli_strings: repeatable, each value appended */
    CLI_INT,     /* int */
    CLI_SIZE,    /* size_t */
    CLI_U64,     /* uint64_t */
    CLI_DOUBLE,  /* double, finite */
    CLI_FLOAT,   /* float, finite */
    CLI_CHOICE,  /* int: the value of the named choice (cli_choice) */
    CLI_HW,      /* int[2]: HxW, both > 0 */
    CLI_HWC      /* int[3]: HxWxC, all > 0 */
} cli_kind;

typedef struct cli_strings {
    const char **items; /* malloc'ed by the parser: the caller frees items */
    int n;
} cli_strings;

typedef struct cli_choice {
    const char *name; /* NULL ends a list */
    int value;
} cli_choice;

/* min and max bound numbers (CLI_NOLIMIT: none; the type's own limits always
 * hold); CLI_OPEN_MIN / CLI_OPEN_MAX exclude the bound itself. */
#define CLI_NOLIMIT HUGE_VAL
enum { CLI_OPEN_MIN = 1, CLI_OPEN_MAX = 2 };

/* One option of a command: --name VALUE or --name=VALUE (flags: --name). */
typedef struct cli_option {
    const char *name; /* without the "--"; NULL ends a table */
    cli_kind kind;
    void *dest;
    const char *meta; /* the value's name in the option list: N, F, FILE */
    const char *help;
    double min, max;
    unsigned open;
    const cli_choice *choices; /* CLI_CHOICE */
} cli_option;

/* Destinations checked against the kind at compile time. */
static inline void *cli_dest_int(int *p) { return p; }
static inline void *cli_dest_size(size_t *p) { return p; }
static inline void *cli_dest_u64(uint64_t *p) { return p; }
static inline void *cli_dest_double(double *p) { return p; }
static inline void *cli_dest_float(float *p) { return p; }
static inline void *cli_dest_string(const char **p) { return p; }
static inline void *cli_dest_strings(cli_strings *p) { return p; }
static inline void *cli_dest_hw(int (*p)[2]) { return p; }
static inline void *cli_dest_hwc(int (*p)[3]) { return p; }

#define OPT_FLAG(n, p, h) {.name = n, .kind = CLI_FLAG, .dest = cli_dest_int(p), .help = h}
#define OPT_STRING(n, p, m, h) \
    {.name = n, .kind = CLI_STRING, .dest = cli_dest_string(p), .meta = m, .help = h}
#define OPT_STRINGS(n, p, m, h) \
    {.name = n, .kind = CLI_STRINGS, .dest = cli_dest_strings(p), .meta = m, .help = h}
#define OPT_INT(n, p, m, lo, hi, h)                                                          \
    {.name = n, .kind = CLI_INT, .dest = cli_dest_int(p), .meta = m, .help = h, .min = lo, \
     .max = hi}
#define OPT_SIZE(n, p, m, lo, hi, h)                                                           \
    {.name = n, .kind = CLI_SIZE, .dest = cli_dest_size(p), .meta = m, .help = h, .min = lo, \
     .max = hi}
#define OPT_U64(n, p, m, h)                                                                   \
    {.name = n, .kind = CLI_U64, .dest = cli_dest_u64(p), .meta = m, .help = h, .min = 0, \
     .max = CLI_NOLIMIT}
#define OPT_DOUBLE(n, p, m, lo, hi, op, h)                                                       \
    {.name = n, .kind = CLI_DOUBLE, .dest = cli_dest_double(p), .meta = m, .help = h, .min = lo, \
     .max = hi, .open = op}
#define OPT_FLOAT(n, p, m, lo, hi, op, h)                                                      \
    {.name = n, .kind = CLI_FLOAT, .dest = cli_dest_float(p), .meta = m, .help = h, .min = lo, \
     .max = hi, .open = op}
#define OPT_CHOICE(n, p, m, list, h)                                                         \
    {.name = n, .kind = CLI_CHOICE, .dest = cli_dest_int(p), .meta = m, .help = h, \
     .choices = list}
#define OPT_HW(n, p, h) \
    {.name = n, .kind = CLI_HW, .dest = cli_dest_hw(p), .meta = "HxW", .help = h}
#define OPT_HWC(n, p, h) \
    {.name = n, .kind = CLI_HWC, .dest = cli_dest_hwc(p), .meta = "HxWxC", .help = h}
#define OPT_END {.name = NULL}

/* gray|rgb (kdens_color) and constant|cosine (kdens_schedule). */
extern const cli_choice cli_colors[], cli_schedules[];

/* Parse the arguments of cmd against opts.  Words that do not begin with '-'
 * go to args[] (at most max_args; *n_args counts them; args may be NULL when
 * max_args is 0).  --help or -h prints cmd->usage to stdout.  Returns -1 when
 * parsed (go on), 0 after --help, 2 on a usage error, with a message on
 * stderr naming the option and the value: an unknown option, a missing
 * value, a value that is not a whole valid number of the option's type, or
 * one out of its range.  A repeated option takes its last value
 * (CLI_STRINGS: every value). */
int cli_parse(const cli_command *cmd, const cli_option *opts, int argc, char **argv,
              const char **args, int max_args, int *n_args);

/* ---- processes (comm.c) ---------------------------------------------------- */

/* The tool as one rank of several (docs/mpi.md).  Built with MPI=1, it joins
 * the MPI job when an MPI launcher started it (mpirun, srun), and has a
 * communicator when that job has more than one process; otherwise, and
 * without MPI=1, it runs alone.  main() calls cli_comm_start first (0, or
 * 1 after printing why MPI could not start) and cli_comm_finish last with
 * the exit status: MPI_Finalize, or when the status is not 0 and there are
 * other ranks, MPI_Abort with it, so that no rank waits forever on one that
 * failed. */
int cli_comm_start(int *argc, char ***argv);
void cli_comm_finish(int failed);
/* The process's communicator, or NULL when running alone. */
kdens_comm *cli_comm(void);
/* "yes (Open MPI v4.1.4)" or "no": whether the tool was built with MPI. */
const char *cli_comm_support(void);

/* ---- helpers ------------------------------------------------------------- */

/* Print "kdens: what: status: message" and return 1. */
int cli_fail(const char *what, kdens_status st);
/* An architecture argument: a built-in name as it is, or a spec file
 * (docs/spec.md; a path that names a file) -- then *name receives its base
 * name without the extension, and *spec the file's text (free it; NULL for
 * a built-in).  KDENS_E_IO for a spec file that cannot be read. */
kdens_status cli_arch(const char *arg, char *name, size_t name_size, char **spec);
/* cli_arch, and a spec made an architecture of the workspace's dataset
 * (kdens_workspace_add_arch) so that registries and later runs know it. */
/* The name cli_arch gives, without reading anything (a spec file's base
 * name without its extension, or the built-in name): for ranks that get
 * the spec from rank 0. */
kdens_status cli_arch_name(const char *arg, char *name, size_t name_size);
/* Under mpirun, rank 0's *view (of the data every rank loaded, `loaded`)
 * replaces every rank's; alone, nothing changes. */
kdens_status cli_share_view(const kdens_dataset *loaded, kdens_dataset **view);
kdens_status cli_workspace_arch(const char *arg, const char *workdir, const char *dataset,
                                char *name, size_t name_size);
/* A log callback: the library's lines up to INFO on stderr, each with the
 * seconds since *user (a struct timespec of CLOCK_MONOTONIC). */
void cli_log_elapsed(kdens_log_level level, const char *message, void *user);
/* At most n random samples of *ds, drawn from seed (all when n is 0 or
 * larger): the --limit of pipeline and experiment. */
kdens_status cli_limit(kdens_dataset **ds, size_t n, uint64_t seed);
/* dir/name, allocated to its length (free it); NULL when out of memory. */
char *cli_path(const char *dir, const char *name);
/* mkdir -p: path and every missing parent.  0, or -1 with errno set. */
int cli_mkdirs(const char *path);
/* Open the training part of a dataset given as a preset name or a folder
 * (ROOT/train/<class>/... when ROOT/train exists, else ROOT/<class>/...).
 * *name receives the dataset's name for the workspace (preset or folder
 * base name). */
kdens_status cli_open_dataset(const char *spec, int height, int width, kdens_color color,
                              kdens_dataset **out, char *name, size_t name_size);
/* The name a workspace gives a dataset spec: the preset (of NAME or
 * NAME=DIR), or the folder's base name. */
void cli_dataset_name(const char *spec, char *name, size_t name_size);
/* The test part of a dataset spec: a preset's test set, or SPEC/test of an
 * image folder, decoded to height x width x channels (a model's input). */
kdens_status cli_open_test(const char *spec, int height, int width, int channels,
                           kdens_dataset **test);
kdens_status cli_open_test_for(const char *spec, const kdens_model *m, kdens_dataset **test);
/* After kdens split (W/<name>/train.csv exists): *all replaced by its
 * training part, so that subsets and baselines never see validation data. */
kdens_status cli_training_pool(const char *workdir, const char *name, kdens_dataset **all);
/* Training and validation parts of pool: the manifests W/<name>/train.csv
 * and val.csv of kdens split when both exist, else a seeded 10% split. */
kdens_status cli_open_parts(const char *workdir, const char *name, const kdens_dataset *pool,
                            uint64_t seed, kdens_dataset **train, kdens_dataset **val);

#endif

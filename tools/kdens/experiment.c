/* kdens experiment: an experiment grid (kdens_grid) from a plan file. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char usage_experiment[] =
    "usage: kdens experiment PLAN [--workdir W] [--dataset D] [--size HxW]\n"
    "                        [--color gray|rgb] [--limit N] [--threads T]\n"
    "\n"
    "Runs the grid a plan describes (docs/experiments.md): students distilled from\n"
    "n teachers of each fraction, in each mode, at each alpha and T, each with\n"
    "several seeds.  Every teacher is trained once and shared; the baseline is the\n"
    "student architecture on the whole training part.  Writes W/<dataset>/grid.csv\n"
    "(one row per student, with McNemar's test against the baseline), grid.md\n"
    "(mean and standard error per cell, the difference from the baseline with its\n"
    "95% interval) and plots.  Run again, it resumes; several processes may share\n"
    "one grid.  D (default: the plan's dataset) is a preset, NAME=DIR or a folder.\n"
    "\n"
    "  --workdir W     the workspace (default experiment-out)\n"
    "  --limit N       use N random training and N random test images (for tests)\n"
    "  --threads T     compute threads (default: KDENS_NUM_THREADS or all cores)\n";

int cmd_experiment(const cli_command *cmd, int argc, char **argv)
{
    const char *workdir = "experiment-out", *dataset = NULL, *plan = NULL;
    size_t lim = 0;
    int size[2] = {0, 0}, threads = 0, color = KDENS_COLOR_RGB, n_args = 0;
    const cli_option opts[] = {
        OPT_STRING("workdir", &workdir, "W", "the workspace (default experiment-out)"),
        OPT_STRING("dataset", &dataset, "D", "the dataset instead of the plan's"),
        OPT_HW("size", &size, "resize folder images (default: keep their size)"),
        OPT_CHOICE("color", &color, NULL, cli_colors,
                   "gray or rgb for folder images (default rgb)"),
        OPT_SIZE("limit", &lim, "N", 0, CLI_NOLIMIT, "N random training and test images"),
        OPT_INT("threads", &threads, "T", 1, CLI_NOLIMIT, "compute threads"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, &plan, 1, &n_args);
    if (rc >= 0)
        return rc;
    if (!plan) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    if (threads > 0 && kdens_set_num_threads(threads) != KDENS_OK)
        return cli_fail("--threads", KDENS_E_ARG);
    kdens_grid *g = NULL;
    kdens_status st = kdens_grid_load(plan, &g);
    if (st != KDENS_OK)
        return cli_fail(plan, st);
    if (!dataset)
        dataset = kdens_grid_dataset(g);
    if (!dataset) {
        kdens_grid_free(g);
        fprintf(stderr, "kdens: %s names no dataset: add `dataset = ...` or give --dataset\n",
                plan);
        return 2;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kdens_set_log_callback(cli_log_elapsed, &t0);
    char name[256];
    kdens_dataset *pool = NULL, *test = NULL;
    st = cli_open_dataset(dataset, size[0], size[1], (kdens_color)color, &pool, name, sizeof name);
    int h, w, ch;
    if (st == KDENS_OK) {
        kdens_dataset_shape(pool, &h, &w, &ch);
        st = cli_open_test(dataset, h, w, ch, &test);
    }
    if (st == KDENS_OK)
        st = cli_limit(&pool, lim, 1);
    if (st == KDENS_OK)
        st = cli_limit(&test, lim, 2);
    /* under mpirun: every rank reads the plan and the data, rank 0 the workspace */
    kdens_comm *comm = cli_comm();
    st = kdens_comm_agree(comm, st);
    if (st == KDENS_OK)
        st = kdens_grid_set_comm(g, comm);
    if (st == KDENS_OK)
        st = kdens_grid_run(g, workdir, name, pool, test);
    size_t students = kdens_grid_students(g);
    kdens_grid_free(g);
    kdens_dataset_free(test);
    kdens_dataset_free(pool);
    if (st != KDENS_OK)
        return cli_fail("experiment", st);
    if (kdens_comm_rank(comm) == 0)
        printf("grid of %zu students: %s/%s/grid.md (and grid.csv)\n", students, workdir, name);
    return 0;
}

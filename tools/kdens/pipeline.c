/* kdens pipeline: the whole multi-teacher experiment (kdens_pipeline_run),
 * which make demo runs with its defaults. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const usage_pipeline =
    "usage: kdens pipeline [--workdir W] [--dataset D] [--arch A] [--teachers N]\n"
    "                      [--fraction F] [--epochs E] [--student-epochs E]\n"
    "                      [--modes M1,M2,...|all] [--alpha A] [--temperature T]\n"
    "                      [--batch B] [--lr LR] [--repeats R] [--threads T] [--seed S]\n"
    "                      [--limit N] [--size HxW] [--color gray|rgb]\n"
    "\n"
    "Runs the multi-teacher experiment on D (a preset or an image folder with\n"
    "train/ and test/): splits the training set into train and validation, draws N\n"
    "subsets at fraction F, trains N teachers and a baseline of A on the whole\n"
    "training part, fuses the teachers with every rule (and accuracy versus\n"
    "ensemble size), distils one student per mode, and writes W/results.csv,\n"
    "W/report.md and W/report.html with its plots.  Run again on the same W, it\n"
    "reuses what is trained.  Defaults (make demo): W demo-out, D fmnist, A test,\n"
    "N 8, F 0.8, 15 teacher epochs, 20 student (and baseline) epochs, modes\n"
    "output_avg,loss_avg,mimic_all, alpha 0.5, T 2, batch 128, lr 0.005 (Adam,\n"
    "cosine), 10 repeats, seed 1.\n"
    "\n"
    "  --modes LIST    distillation modes (all: the six of kdens distill)\n"
    "  --threads T     compute threads (default: KDENS_NUM_THREADS or all cores)\n"
    "  --limit N       use N random training and N random test images (for tests)\n";

static int parse_modes(const char *list, kdens_pipeline_config *c)
{
    c->n_modes = 0;
    if (!strcmp(list, "all")) {
        for (int m = 0; m < KDENS_DISTILL_MODE_COUNT; m++)
            c->modes[c->n_modes++] = (kdens_distill_mode)m;
        return 0;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (c->n_modes == KDENS_DISTILL_MODE_COUNT ||
            kdens_distill_mode_from_name(tok, &c->modes[c->n_modes]) != KDENS_OK) {
            fprintf(stderr, "kdens: unknown or repeated distillation mode '%s'\n", tok);
            return 2;
        }
        c->n_modes++;
    }
    return 0;
}

/* Steps and epochs as they happen, with the time since the start. */
static void pipeline_log(kdens_log_level level, const char *message, void *user)
{
    const struct timespec *t0 = user;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (level <= KDENS_LOG_INFO)
        fprintf(stderr, "[%6.1fs] %s\n",
                (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) * 1e-9, message);
}

/* At most n random samples of ds (all when n is 0 or larger). */
static kdens_status limit(kdens_dataset **ds, long n, uint64_t seed)
{
    if (n <= 0 || (size_t)n >= kdens_dataset_count(*ds))
        return KDENS_OK;
    kdens_dataset *sub;
    kdens_status st = kdens_dataset_subset(*ds, 0, (size_t)n, seed, &sub);
    if (st == KDENS_OK) {
        kdens_dataset_free(*ds);
        *ds = sub;
    }
    return st;
}

int cmd_pipeline(int argc, char **argv)
{
    kdens_pipeline_config c;
    kdens_pipeline_default(&c);
    const char *dataset = "fmnist";
    long lim = 0;
    int height = 0, width = 0, threads = 0;
    kdens_color color = KDENS_COLOR_RGB;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char extra;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_pipeline, stdout);
            return 0;
        }
        if (!v || a[0] != '-') {
            fprintf(stderr, "kdens: unexpected or incomplete argument '%s'\n%s", a,
                    usage_pipeline);
            return 2;
        }
        i++;
        if (!strcmp(a, "--workdir")) c.workdir = v;
        else if (!strcmp(a, "--dataset")) dataset = v;
        else if (!strcmp(a, "--arch")) c.arch = v;
        else if (!strcmp(a, "--teachers")) c.teachers = atoi(v);
        else if (!strcmp(a, "--fraction")) c.fraction = atof(v);
        else if (!strcmp(a, "--epochs")) c.teacher_epochs = atoi(v);
        else if (!strcmp(a, "--student-epochs")) c.student_epochs = atoi(v);
        else if (!strcmp(a, "--alpha")) c.alpha = (float)atof(v);
        else if (!strcmp(a, "--temperature")) c.temperature = (float)atof(v);
        else if (!strcmp(a, "--batch")) c.batch = (size_t)atol(v);
        else if (!strcmp(a, "--lr")) c.lr = atof(v);
        else if (!strcmp(a, "--repeats")) c.size_repeats = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--seed")) c.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--limit")) lim = atol(v);
        else if (!strcmp(a, "--color")) color = !strcmp(v, "gray") ? KDENS_COLOR_GRAY : KDENS_COLOR_RGB;
        else if (!strcmp(a, "--modes")) {
            if (parse_modes(v, &c) != 0)
                return 2;
        } else if (!strcmp(a, "--size")) {
            if (sscanf(v, "%dx%d%c", &height, &width, &extra) != 2) {
                fprintf(stderr, "kdens: --size wants HxW, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "kdens: unexpected argument '%s'\n%s", a, usage_pipeline);
            return 2;
        }
    }
    if (threads > 0 && kdens_set_num_threads(threads) != KDENS_OK)
        return cli_fail("--threads", KDENS_E_ARG);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kdens_set_log_callback(pipeline_log, &t0);
    char name[256];
    kdens_dataset *pool = NULL, *test = NULL;
    kdens_status st = cli_open_dataset(dataset, height, width, color, &pool, name, sizeof name);
    int h, w, ch;
    if (st == KDENS_OK) {
        kdens_dataset_shape(pool, &h, &w, &ch);
        st = cli_open_test(dataset, h, w, ch, &test);
    }
    if (st == KDENS_OK)
        st = limit(&pool, lim, c.seed);
    if (st == KDENS_OK)
        st = limit(&test, lim, c.seed + 1);
    if (st != KDENS_OK)
        return cli_fail(dataset, st);
    c.dataset = name;
    st = kdens_pipeline_run(&c, pool, test);
    kdens_dataset_free(test);
    kdens_dataset_free(pool);
    if (st != KDENS_OK)
        return cli_fail("pipeline", st);
    printf("report: %s/report.html (and report.md, results.csv)\n", c.workdir);
    return 0;
}

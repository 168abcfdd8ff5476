/* kdens pipeline: the whole multi-teacher experiment (kdens_pipeline_run),
 * which make demo runs with its defaults. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char usage_pipeline[] =
    "usage: kdens pipeline [--workdir W] [--dataset D] [--arch A] [--teachers N]\n"
    "                      [--fraction F] [--epochs E] [--student-epochs E]\n"
    "                      [--modes M1,M2,...|all|none] [--alpha A | --alphas A1,...]\n"
    "                      [--temperature T | --temperatures T1,T2,...]\n"
    "                      [--batch B] [--lr LR] [--repeats R] [--threads T] [--seed S]\n"
    "                      [--curve-rules R1,R2,...] [--sizes N1,N2,...]\n"
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
    "output_avg,loss_avg,mimic_all, alpha 0.5, T chosen among 1,2,4, batch 128,\n"
    "lr 0.005 (Adam, cosine), 10 repeats, seed 1.  Each student is compared with\n"
    "the baseline on the same test images (McNemar's exact test).\n"
    "\n"
    "  --modes LIST    distillation modes (all: every mode of kdens distill; none:\n"
    "                  no students, the ensemble only)\n"
    "  --curve-rules LIST --sizes LIST  the rules and ensemble sizes of accuracy\n"
    "                  versus size (default mean,geometric,plurality,borda,copeland\n"
    "                  at every size)\n"
    "  --temperatures LIST  candidates for T, chosen on the validation part by\n"
    "                  an output_avg student each (--temperature: T as given)\n"
    "  --alphas LIST   candidates for alpha, chosen with T (at most 16 pairs)\n"
    "  --threads T     compute threads (default: KDENS_NUM_THREADS or all cores)\n"
    "  --limit N       use N random training and N random test images (for tests)\n";

/* --modes: names separated by commas, or all. */
static int parse_modes(const char *list, kdens_distill_mode *modes, int max, int *n)
{
    *n = 0;
    if (!strcmp(list, "none"))
        return 0;
    if (!strcmp(list, "all")) {
        for (int m = 0; m < kdens_distill_mode_count() && m < max; m++)
            modes[(*n)++] = (kdens_distill_mode)m;
        return 0;
    }
    char buf[512];
    if ((size_t)snprintf(buf, sizeof buf, "%s", list) >= sizeof buf) {
        fprintf(stderr, "kdens: --modes: the list is too long\n");
        return 2;
    }
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        bool repeated = false;
        kdens_distill_mode mode;
        if (*n < max && kdens_distill_mode_from_name(tok, &mode) == KDENS_OK)
            for (int k = 0; k < *n; k++)
                repeated |= modes[k] == mode;
        else
            repeated = true;
        if (repeated) {
            fprintf(stderr, "kdens: unknown or repeated distillation mode '%s'\n", tok);
            return 2;
        }
        modes[(*n)++] = mode;
    }
    return 0;
}

/* --curve-rules: fusion rule names separated by commas. */
static int parse_rules(const char *list, kdens_fusion *rules, int max, int *n)
{
    char buf[512];
    *n = 0;
    if ((size_t)snprintf(buf, sizeof buf, "%s", list) >= sizeof buf) {
        fprintf(stderr, "kdens: --curve-rules: the list is too long\n");
        return 2;
    }
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n == max || kdens_fusion_from_name(tok, &rules[*n]) != KDENS_OK) {
            fprintf(stderr, "kdens: --curve-rules: '%s' is not a fusion rule (kdens vote --list) "
                            "or one too many (%d at most)\n", tok, max);
            return 2;
        }
        (*n)++;
    }
    return 0;
}

/* --temperatures, --alphas, --sizes: numbers separated by commas, each
 * whole and finite. */
static int parse_numbers(const char *option, const char *list, double *v, int max, int *n)
{
    *n = 0;
    for (const char *p = list;;) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || !isfinite(x) || (*end && *end != ',') || *n == max) {
            fprintf(stderr, "kdens: --%s: '%s' is not a list of at most %d numbers\n", option,
                    list, max);
            return 2;
        }
        v[(*n)++] = x;
        if (!*end)
            return 0;
        p = end + 1;
    }
}

/* The experiment's settings from the command line; those not given keep
 * their "not given" values (0, NaN) and the pipeline its defaults. */
typedef struct pipeline_args {
    int teachers, teacher_epochs, student_epochs, repeats, n_modes;
    double fraction, lr;
    float alpha, temperature;
    size_t batch;
    uint64_t seed;
    kdens_distill_mode modes[32];
    double temperatures[8], alphas[8];
    int n_temperatures, n_alphas;
    kdens_fusion curve_rules[8];
    int n_curve_rules, sizes[64], n_sizes;
} pipeline_args;

static kdens_status configure(kdens_pipeline *p, const pipeline_args *a)
{
    kdens_status st = kdens_pipeline_set_seed(p, a->seed);
    if (st == KDENS_OK && a->teachers)
        st = kdens_pipeline_set_teachers(p, a->teachers);
    if (st == KDENS_OK && !isnan(a->fraction))
        st = kdens_pipeline_set_fraction(p, a->fraction);
    if (st == KDENS_OK && a->teacher_epochs)
        st = kdens_pipeline_set_teacher_epochs(p, a->teacher_epochs);
    if (st == KDENS_OK && a->student_epochs)
        st = kdens_pipeline_set_student_epochs(p, a->student_epochs);
    if (st == KDENS_OK && a->n_modes >= 0)
        st = kdens_pipeline_set_modes(p, a->modes, a->n_modes);
    if (st == KDENS_OK && !isnan(a->alpha))
        st = kdens_pipeline_set_alpha(p, a->alpha);
    if (st == KDENS_OK && !isnan(a->temperature))
        st = kdens_pipeline_set_temperature(p, a->temperature);
    if (st == KDENS_OK && a->batch)
        st = kdens_pipeline_set_batch(p, a->batch);
    if (st == KDENS_OK && !isnan(a->lr))
        st = kdens_pipeline_set_lr(p, a->lr);
    if (st == KDENS_OK && a->repeats)
        st = kdens_pipeline_set_size_repeats(p, a->repeats);
    if (st == KDENS_OK && a->n_curve_rules)
        st = kdens_pipeline_set_curve(p, a->curve_rules, a->n_curve_rules, a->sizes, a->n_sizes);
    if (st == KDENS_OK && a->n_alphas)
        st = kdens_pipeline_set_alpha_candidates(p, a->alphas, a->n_alphas);
    if (st == KDENS_OK && a->n_temperatures)
        st = kdens_pipeline_set_temperature_candidates(p, a->temperatures, a->n_temperatures);
    return st;
}

int cmd_pipeline(const cli_command *cmd, int argc, char **argv)
{
    pipeline_args a = {.fraction = NAN, .lr = NAN, .alpha = NAN, .temperature = NAN,
                       .seed = 1, .n_modes = -1};
    const char *dataset = "fmnist", *workdir = "demo-out", *arch = "test", *modes = NULL,
               *temperatures = NULL, *alphas = NULL, *curve_rules = NULL, *sizes = NULL;
    size_t lim = 0;
    int size[2] = {0, 0}, threads = 0, color = KDENS_COLOR_RGB;
    /* The experiment's numbers go to its setters as they are: they check
     * them.  --threads and --limit are the tool's own. */
    const double any = CLI_NOLIMIT;
    const cli_option opts[] = {
        OPT_STRING("workdir", &workdir, "W", "the workspace and report (default demo-out)"),
        OPT_STRING("dataset", &dataset, "D", "a preset or an image folder (default fmnist)"),
        OPT_STRING("arch", &arch, "A", "teachers, baseline and students (default test)"),
        OPT_INT("teachers", &a.teachers, "N", 1, any, "subset teachers (default 8)"),
        OPT_DOUBLE("fraction", &a.fraction, "F", -any, any, 0,
                   "each teacher's share (default 0.8)"),
        OPT_INT("epochs", &a.teacher_epochs, "E", 1, any, "teacher epochs (default 15)"),
        OPT_INT("student-epochs", &a.student_epochs, "E", 1, any, "student epochs (default 20)"),
        OPT_STRING("modes", &modes, "M1,M2,...|all", "distillation modes"),
        OPT_FLOAT("alpha", &a.alpha, "A", -any, any, 0, "weight of the hard-label loss"),
        OPT_STRING("alphas", &alphas, "A1,A2,...", "candidate alphas, chosen on the validation part"),
        OPT_FLOAT("temperature", &a.temperature, "T", -any, any, 0, "softening temperature"),
        OPT_STRING("temperatures", &temperatures, "T1,T2,...",
                   "candidate temperatures, chosen on the validation part"),
        OPT_STRING("curve-rules", &curve_rules, "R1,R2,...", "rules of accuracy versus size"),
        OPT_STRING("sizes", &sizes, "N1,N2,...", "ensemble sizes of accuracy versus size"),
        OPT_SIZE("batch", &a.batch, "B", 1, any, "batch size (default 128)"),
        OPT_DOUBLE("lr", &a.lr, "LR", -any, any, 0, "learning rate (default 0.005)"),
        OPT_INT("repeats", &a.repeats, "R", 1, any, "sub-ensembles per size (default 10)"),
        OPT_INT("threads", &threads, "T", 1, any, "compute threads"),
        OPT_U64("seed", &a.seed, "S", "random seed (default 1)"),
        OPT_SIZE("limit", &lim, "N", 0, any, "N random training and test images (0: all)"),
        OPT_HW("size", &size, "resize folder images (default: keep their size)"),
        OPT_CHOICE("color", &color, NULL, cli_colors,
                   "gray or rgb for folder images (default rgb)"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (modes && parse_modes(modes, a.modes, 32, &a.n_modes) != 0)
        return 2;
    if (temperatures && !isnan(a.temperature)) {
        fprintf(stderr, "kdens: --temperature and --temperatures exclude each other\n");
        return 2;
    }
    if (alphas && !isnan(a.alpha)) {
        fprintf(stderr, "kdens: --alpha and --alphas exclude each other\n");
        return 2;
    }
    if (temperatures &&
        parse_numbers("temperatures", temperatures, a.temperatures, 8, &a.n_temperatures) != 0)
        return 2;
    if (alphas && parse_numbers("alphas", alphas, a.alphas, 8, &a.n_alphas) != 0)
        return 2;
    if (sizes && !curve_rules) {
        fprintf(stderr, "kdens: --sizes goes with --curve-rules\n");
        return 2;
    }
    if (curve_rules && parse_rules(curve_rules, a.curve_rules, 8, &a.n_curve_rules) != 0)
        return 2;
    double size_values[64];
    if (sizes && parse_numbers("sizes", sizes, size_values, 64, &a.n_sizes) != 0)
        return 2;
    for (int i = 0; i < a.n_sizes; i++)
        a.sizes[i] = (int)size_values[i];
    if (threads > 0 && kdens_set_num_threads(threads) != KDENS_OK)
        return cli_fail("--threads", KDENS_E_ARG);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kdens_set_log_callback(cli_log_elapsed, &t0);
    char name[256];
    kdens_dataset *pool = NULL, *test = NULL;
    kdens_status st =
        cli_open_dataset(dataset, size[0], size[1], (kdens_color)color, &pool, name, sizeof name);
    int h, w, ch;
    if (st == KDENS_OK) {
        kdens_dataset_shape(pool, &h, &w, &ch);
        st = cli_open_test(dataset, h, w, ch, &test);
    }
    if (st == KDENS_OK)
        st = cli_limit(&pool, lim, a.seed);
    if (st == KDENS_OK)
        st = cli_limit(&test, lim, a.seed + 1);
    kdens_comm *comm = cli_comm(); /* under mpirun: the teacher stage over the ranks */
    bool lead = kdens_comm_rank(comm) == 0;
    st = kdens_comm_agree(comm, st);
    const char *stage = st == KDENS_OK ? "pipeline" : dataset; /* named should it fail */
    kdens_pipeline *p = NULL;
    char arch_name[256];
    if (st == KDENS_OK) {
        st = lead ? cli_workspace_arch(arch, workdir, name, arch_name, sizeof arch_name)
                  : cli_arch_name(arch, arch_name, sizeof arch_name);
        st = kdens_comm_agree(comm, st);
    }
    if (st == KDENS_OK)
        st = kdens_pipeline_create(workdir, name, arch_name, &p);
    if (st == KDENS_OK)
        st = configure(p, &a);
    if (st == KDENS_OK)
        st = kdens_pipeline_set_comm(p, comm);
    if (st == KDENS_OK)
        st = kdens_pipeline_run(p, pool, test);
    kdens_pipeline_free(p);
    kdens_dataset_free(test);
    kdens_dataset_free(pool);
    if (st != KDENS_OK)
        return cli_fail(stage, st);
    if (lead)
        printf("report: %s/report.html (and report.md, results.csv)\n", workdir);
    return 0;
}

/* kdens ensemble, kdens diversity and kdens vote: decision fusion from the
 * command line (docs/cli.md, docs/fusion.md). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MEMBER_OPTIONS                                                                     \
    "Members: the teachers of W/teachers.csv for dataset D and architecture A (of\n"       \
    "fraction F when given; a seeded random sample of N when given), or the models\n"      \
    "named by --model (repeatable).  They are run once over the test part of D\n"          \
    "(--split val: the validation manifest W/<dataset>/val.csv of kdens split);\n"         \
    "--predictions FILE reuses saved predictions instead (--save FILE writes them).\n"     \
    "\n"                                                                                   \
    "  --workdir W --dataset D --arch A [--fraction F] [--teachers N] [--seed S]\n"        \
    "  --model FILE.kdm ...       members given as files (with --dataset D)\n"             \
    "  --split test|val           which labelled part to evaluate on (default test)\n"     \
    "  --predictions FILE         saved predictions (kdens_predictions_save)\n"            \
    "  --save FILE                save the members' predictions\n"

const char usage_ensemble[] =
    "usage: kdens ensemble (--workdir W --dataset D --arch A | --dataset D --model FILE...\n"
    "                       | --predictions FILE) [--rules all|R1,R2,...] [--out FILE.csv]\n"
    "                      [--sizes N1,N2,... [--repeats R] [--sizes-out FILE.csv]]\n"
    "\n"
    "Fuses the members' decisions with every rule (or those named; kdens vote --list)\n"
    "and prints a table of accuracies, then how the votes fall: unanimity, majority,\n"
    "the Condorcet winner's frequency and accuracy.  Writes the CSV\n"
    "rule,accuracy,correct,samples,members to --out (default W/<dataset>/ensemble.csv,\n"
    "or ensemble.csv without a workspace).  --sizes adds accuracy versus ensemble\n"
    "size: R random sub-ensembles per size (default 10), the mean and the half-width\n"
    "of a 95% t-interval, as rule,size,mean,ci95 to --sizes-out (default\n"
    "<out>.sizes.csv).\n"
    "\n" MEMBER_OPTIONS;

const char usage_diversity[] =
    "usage: kdens diversity (--workdir W --dataset D --arch A | --dataset D --model FILE...\n"
    "                        | --predictions FILE) [--out FILE.csv]\n"
    "\n"
    "Pairwise diversity of the members as CSV (stdout, or --out), one row per pair:\n"
    "member_i,member_j,agreement,disagreement,kappa,yules_q,error_correlation,kendall_tau\n"
    "(docs/fusion.md defines each), then the oracle accuracy on stderr.\n"
    "\n" MEMBER_OPTIONS;

const char usage_vote[] =
    "usage: kdens vote --rule R FILE.csv\n"
    "       kdens vote --list\n"
    "\n"
    "Applies fusion rule R to scores from any source.  FILE.csv has the header\n"
    "sample,member,p0,p1,...,p{K-1} and one row per sample and member (each row's\n"
    "scores, finite and >= 0, are divided by their sum).  Prints the header\n"
    "sample,winner and one line per sample (in order of first appearance) with the\n"
    "winning class index.  --list prints the rules.\n";

typedef struct ens_opts {
    const char *workdir, *dataset, *arch, *predictions, *save, *rules, *out, *sizes, *sizes_out;
    cli_strings models;
    int split, teachers, repeats;
    double fraction;
    uint64_t seed;
} ens_opts;

enum { SPLIT_TEST, SPLIT_VAL };
static const cli_choice splits[] = {{"test", SPLIT_TEST}, {"val", SPLIT_VAL}, {NULL, 0}};

/* The members' options, common to ensemble and diversity.  --fraction,
 * --teachers and --repeats go to the library as they are: it checks them. */
#define MEMBER_OPTION_TABLE(o)                                                                  \
    OPT_STRING("workdir", &(o).workdir, "W", "the workspace of W/teachers.csv"),                \
        OPT_STRING("dataset", &(o).dataset, "D", "the dataset (a preset or an image folder)"),  \
        OPT_STRING("arch", &(o).arch, "A", "the teachers' architecture"),                       \
        OPT_DOUBLE("fraction", &(o).fraction, "F", -CLI_NOLIMIT, CLI_NOLIMIT, 0,                \
                   "only the teachers of fraction F"),                                          \
        OPT_INT("teachers", &(o).teachers, "N", -CLI_NOLIMIT, CLI_NOLIMIT,                      \
                "a seeded random sample of N teachers"),                                        \
        OPT_U64("seed", &(o).seed, "S", "the sample's seed (default 0)"),                       \
        OPT_STRINGS("model", &(o).models, "FILE.kdm", "a member given as a file (repeatable)"), \
        OPT_CHOICE("split", &(o).split, NULL, splits,                                           \
                   "which labelled part to evaluate on (default test)"),                        \
        OPT_STRING("predictions", &(o).predictions, "FILE", "saved predictions instead"),       \
        OPT_STRING("save", &(o).save, "FILE", "save the members' predictions")

static void ens_defaults(ens_opts *o)
{
    memset(o, 0, sizeof *o);
    o->split = SPLIT_TEST;
    o->repeats = 10;
}

/* After parsing: one source of members.  -1 when they are well chosen. */
static int check_members(const cli_command *cmd, const ens_opts *o)
{
    int registry = o->workdir && o->arch, files = o->models.n > 0;
    if (o->predictions ? registry || files
                       : !o->dataset || registry == files || (o->workdir && !o->arch)) {
        fprintf(stderr, "kdens: give --predictions, or --dataset with either --workdir and "
                        "--arch or --model\n%s", cmd->usage);
        return 2;
    }
    return -1;
}

/* The dataset's name in a workspace: the preset, or the folder's base name. */
/* The labelled part to evaluate on, shaped for the members. */
static kdens_status open_split(const ens_opts *o, const kdens_model *m, kdens_dataset **out)
{
    if (o->split == SPLIT_TEST)
        return cli_open_test_for(o->dataset, m, out);
    int h, w, c;
    kdens_model_input_shape(m, &h, &w, &c);
    char name[256], csv[4600];
    kdens_dataset *pool;
    kdens_status st = cli_open_dataset(o->dataset, h, w, c == 1 ? KDENS_COLOR_GRAY
                                                              : KDENS_COLOR_RGB,
                                       &pool, name, sizeof name);
    if (st != KDENS_OK)
        return st;
    snprintf(csv, sizeof csv, "%s/%s/val.csv", o->workdir ? o->workdir : ".", name);
    st = kdens_dataset_select(pool, csv, out);
    kdens_dataset_free(pool); /* the view keeps the data alive */
    return st;
}

/* Predictions of the members chosen by the options. */
static int load_predictions(const ens_opts *o, kdens_predictions **pr)
{
    kdens_status st;
    if (o->predictions) {
        st = kdens_predictions_load(o->predictions, pr);
        return st == KDENS_OK ? 0 : cli_fail(o->predictions, st);
    }
    kdens_ensemble *ens = NULL;
    if (o->models.n > 0) {
        st = kdens_ensemble_create(&ens);
        for (int i = 0; st == KDENS_OK && i < o->models.n; i++)
            if ((st = kdens_ensemble_add(ens, o->models.items[i])) != KDENS_OK) {
                kdens_ensemble_free(ens);
                return cli_fail(o->models.items[i], st);
            }
    } else {
        char csv[4200], name[256], arch[256], *spec = NULL;
        snprintf(csv, sizeof csv, "%s/teachers.csv", o->workdir);
        cli_dataset_name(o->dataset, name, sizeof name);
        st = cli_arch(o->arch, arch, sizeof arch, &spec);
        free(spec); /* only its name is looked up */
        if (st == KDENS_OK)
            st = kdens_ensemble_from_registry(csv, name, arch, o->fraction, o->teachers, o->seed,
                                              &ens);
        if (st != KDENS_OK)
            return cli_fail(csv, st);
    }
    kdens_dataset *ds = NULL;
    if (st == KDENS_OK)
        st = open_split(o, kdens_ensemble_member(ens, 0), &ds);
    if (st != KDENS_OK) {
        kdens_ensemble_free(ens);
        return cli_fail(o->dataset, st);
    }
    fprintf(stderr, "kdens: running %d members over %zu images\n", kdens_ensemble_size(ens),
            kdens_dataset_count(ds));
    st = kdens_ensemble_predict(ens, ds, pr);
    kdens_dataset_free(ds);
    kdens_ensemble_free(ens);
    if (st != KDENS_OK)
        return cli_fail("predictions", st);
    if (o->save && (st = kdens_predictions_save(*pr, o->save)) != KDENS_OK) {
        kdens_predictions_free(*pr);
        return cli_fail(o->save, st);
    }
    return 0;
}

/* Rules one command may list (kdens_fusion_count() is below it). */
#define MAX_RULES 64

/* Parse "all" or a comma-separated list of rule names into rules[]. */
static int parse_rules(const char *list, kdens_fusion *rules, int *n)
{
    *n = 0;
    if (!list || !strcmp(list, "all")) {
        for (int r = 0; r < kdens_fusion_count() && r < MAX_RULES; r++)
            rules[(*n)++] = (kdens_fusion)r;
        return 0;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_RULES || kdens_fusion_from_name(tok, &rules[*n]) != KDENS_OK) {
            fprintf(stderr, "kdens: unknown or repeated fusion rule '%s' (kdens vote --list)\n",
                    tok);
            return 2;
        }
        (*n)++;
    }
    return *n ? 0 : 2;
}

/* Parse "1,2,5" into at most max positive sizes: each a whole number that
 * fits an int, no empty items.  0, or 2 with a message. */
static int parse_sizes(const char *list, int *sizes, int max, int *n)
{
    *n = 0;
    for (const char *p = list;;) {
        char *end = NULL;
        errno = 0;
        long v = isdigit((unsigned char)*p) ? strtol(p, &end, 10) : 0;
        if (!end || errno == ERANGE || v < 1 || v > INT_MAX || (*end && *end != ',') ||
            *n == max) {
            fprintf(stderr, "kdens ensemble: --sizes wants at most %d positive sizes like 1,2,5, "
                            "got '%s'\n", max, list);
            return 2;
        }
        sizes[(*n)++] = (int)v;
        if (!*end)
            return 0;
        p = end + 1;
    }
}

static void print_vote_stats(const kdens_predictions *pr)
{
    kdens_vote_stats s;
    if (kdens_vote_analysis(kdens_predictions_probs(pr), kdens_predictions_members(pr),
                            kdens_predictions_samples(pr), kdens_predictions_classes(pr),
                            kdens_predictions_labels(pr), &s, NULL, NULL, NULL) != KDENS_OK ||
        s.samples == 0)
        return;
    double n = (double)s.samples;
    printf("\nvotes: unanimous %.2f%%, majority %.2f%% (accuracy %.4f), distinct classes "
           "%.2f per sample\n",
           100 * s.unanimous / n, 100 * s.majority / n,
           s.majority ? (double)s.majority_correct / s.majority : 0.0, s.mean_distinct);
    printf("Condorcet winner on %.2f%% of samples (accuracy %.4f; the plurality winner "
           "%.2f%% of the time)\n",
           100 * s.condorcet_exists / n,
           s.condorcet_exists ? (double)s.condorcet_correct / s.condorcet_exists : 0.0,
           s.condorcet_exists ? 100.0 * s.condorcet_is_plurality / s.condorcet_exists : 0.0);
}

#define MAX_SIZES 256

static int write_sizes(const ens_opts *o, const kdens_predictions *pr, const kdens_fusion *rules,
                       int n_rules, const int *sizes, int n_sizes, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "kdens: %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "rule,size,mean,ci95\n");
    double mean[MAX_SIZES], ci[MAX_SIZES];
    for (int r = 0; r < n_rules; r++) {
        kdens_status st = kdens_accuracy_vs_size(pr, rules[r], sizes, n_sizes, o->repeats,
                                                 o->seed, mean, ci);
        if (st != KDENS_OK) {
            fclose(f);
            return cli_fail("accuracy versus size", st);
        }
        for (int s = 0; s < n_sizes; s++)
            fprintf(f, "%s,%d,%.6f,%.6f\n", kdens_fusion_name(rules[r]), sizes[s], mean[s], ci[s]);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "kdens: %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("accuracy versus size: %s\n", path);
    return 0;
}

int cmd_ensemble(const cli_command *cmd, int argc, char **argv)
{
    ens_opts o;
    ens_defaults(&o);
    const cli_option opts[] = {
        MEMBER_OPTION_TABLE(o),
        OPT_STRING("rules", &o.rules, "all|R1,R2,...", "the fusion rules (default all)"),
        OPT_STRING("out", &o.out, "FILE.csv", "the accuracies (default W/<dataset>/ensemble.csv)"),
        OPT_STRING("sizes", &o.sizes, "N1,N2,...", "also accuracy versus ensemble size"),
        OPT_INT("repeats", &o.repeats, "R", -CLI_NOLIMIT, CLI_NOLIMIT,
                "random sub-ensembles per size (default 10)"),
        OPT_STRING("sizes-out", &o.sizes_out, "FILE.csv", "where --sizes writes"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc < 0)
        rc = check_members(cmd, &o);
    kdens_fusion rules[MAX_RULES];
    int n_rules = 0, sizes[MAX_SIZES], n_sizes = 0;
    kdens_predictions *pr = NULL;
    if (rc < 0 && (rc = parse_rules(o.rules, rules, &n_rules)) == 0 &&
        (!o.sizes || (rc = parse_sizes(o.sizes, sizes, MAX_SIZES, &n_sizes)) == 0))
        rc = load_predictions(&o, &pr);
    free(o.models.items);
    if (!pr)
        return rc;
    char out[4400], name[256] = "predictions";
    if (o.dataset)
        cli_dataset_name(o.dataset, name, sizeof name);
    if (o.out)
        snprintf(out, sizeof out, "%s", o.out);
    else if (o.workdir)
        snprintf(out, sizeof out, "%s/%s/ensemble.csv", o.workdir, name);
    else
        snprintf(out, sizeof out, "ensemble.csv");
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "kdens: %s: %s\n", out, strerror(errno));
        kdens_predictions_free(pr);
        return 1;
    }
    size_t n = kdens_predictions_samples(pr);
    int members = kdens_predictions_members(pr);
    fprintf(f, "rule,accuracy,correct,samples,members\n");
    printf("%-18s %8s   (%d members, %zu samples)\n", "rule", "accuracy", members, n);
    kdens_status st = KDENS_OK;
    for (int r = 0; r < n_rules && st == KDENS_OK; r++) {
        double acc;
        st = kdens_predictions_accuracy(pr, rules[r], NULL, 0, &acc);
        if (st != KDENS_OK)
            break;
        fprintf(f, "%s,%.6f,%.0f,%zu,%d\n", kdens_fusion_name(rules[r]), acc, acc * (double)n, n,
                members);
        printf("%-18s %8.4f\n", kdens_fusion_name(rules[r]), acc);
    }
    if (fclose(f) != 0 && st == KDENS_OK) {
        fprintf(stderr, "kdens: %s: %s\n", out, strerror(errno));
        rc = 1;
    }
    if (st != KDENS_OK)
        rc = cli_fail("fusion", st);
    if (rc == 0) {
        print_vote_stats(pr);
        printf("\nwritten: %s\n", out);
    }
    if (rc == 0 && o.sizes) {
        char sizes_out[4500];
        snprintf(sizes_out, sizeof sizes_out, "%s", o.sizes_out ? o.sizes_out : out);
        if (!o.sizes_out) {
            char *dot = strrchr(sizes_out, '.');
            snprintf(dot && !strchr(dot, '/') ? dot : sizes_out + strlen(sizes_out), 16,
                     ".sizes.csv");
        }
        rc = write_sizes(&o, pr, rules, n_rules, sizes, n_sizes, sizes_out);
    }
    kdens_predictions_free(pr);
    return rc;
}

int cmd_diversity(const cli_command *cmd, int argc, char **argv)
{
    ens_opts o;
    ens_defaults(&o);
    const cli_option opts[] = {
        MEMBER_OPTION_TABLE(o),
        OPT_STRING("out", &o.out, "FILE.csv", "the CSV (default: stdout)"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc < 0)
        rc = check_members(cmd, &o);
    kdens_predictions *pr = NULL;
    if (rc < 0)
        rc = load_predictions(&o, &pr);
    free(o.models.items);
    if (!pr)
        return rc;
    int m = kdens_predictions_members(pr);
    size_t cells = (size_t)m * m;
    double *mat = malloc(sizeof(double) * cells * 6), oracle = 0;
    kdens_status st = mat ? KDENS_OK : KDENS_E_NOMEM;
    const float *probs = kdens_predictions_probs(pr);
    const int32_t *labels = kdens_predictions_labels(pr);
    size_t n = kdens_predictions_samples(pr);
    int k = kdens_predictions_classes(pr);
    if (st == KDENS_OK)
        st = kdens_agreement(probs, m, n, k, labels, mat, &oracle);
    if (st == KDENS_OK)
        st = kdens_diversity(probs, m, n, k, labels, mat + cells, mat + 2 * cells,
                             mat + 3 * cells, mat + 4 * cells, mat + 5 * cells);
    FILE *f = st == KDENS_OK ? (o.out ? fopen(o.out, "w") : stdout) : NULL;
    if (st != KDENS_OK)
        rc = cli_fail("diversity", st);
    else if (!f) {
        fprintf(stderr, "kdens: %s: %s\n", o.out, strerror(errno));
        rc = 1;
    } else {
        fprintf(f, "member_i,member_j,agreement,disagreement,kappa,yules_q,error_correlation,"
                   "kendall_tau\n");
        for (int i = 0; i < m; i++)
            for (int j = i + 1; j < m; j++) {
                char ni[32], nj[32];
                snprintf(ni, sizeof ni, "%d", i);
                snprintf(nj, sizeof nj, "%d", j);
                const char *a = kdens_predictions_member_name(pr, i);
                const char *b = kdens_predictions_member_name(pr, j);
                fprintf(f, "%s,%s", a ? a : ni, b ? b : nj);
                for (int q = 0; q < 6; q++)
                    fprintf(f, ",%.6f", mat[q * cells + (size_t)i * m + j]);
                fputc('\n', f);
            }
        int failed = f == stdout ? fflush(f) != 0 : fclose(f) != 0;
        if (failed) {
            fprintf(stderr, "kdens: %s: write failed\n", o.out ? o.out : "stdout");
            rc = 1;
        } else {
            fprintf(stderr, "oracle accuracy %.4f over %d members\n", oracle, m);
            rc = 0;
        }
    }
    free(mat);
    kdens_predictions_free(pr);
    return rc;
}

int cmd_vote(const cli_command *cmd, int argc, char **argv)
{
    const char *rule_name = NULL, *path = NULL;
    int list = 0, n_paths;
    const cli_option opts[] = {
        OPT_STRING("rule", &rule_name, "R", "the fusion rule (kdens vote --list)"),
        OPT_FLAG("list", &list, "list the rules"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, &path, 1, &n_paths);
    if (rc >= 0)
        return rc;
    if (list) {
        for (int r = 0; r < kdens_fusion_count(); r++)
            printf("%s\n", kdens_fusion_name((kdens_fusion)r));
        return 0;
    }
    if (!rule_name || !path) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    kdens_fusion rule;
    kdens_status st = kdens_fusion_from_name(rule_name, &rule);
    if (st != KDENS_OK)
        return cli_fail(rule_name, st);
    kdens_predictions *pr;
    if ((st = kdens_predictions_load_csv(path, &pr)) != KDENS_OK)
        return cli_fail(path, st);
    size_t n = kdens_predictions_samples(pr);
    int32_t *winner = malloc(sizeof(int32_t) * (n ? n : 1));
    st = winner ? kdens_fuse(rule, kdens_predictions_probs(pr), kdens_predictions_members(pr), n,
                             kdens_predictions_classes(pr), winner, NULL)
                : KDENS_E_NOMEM;
    rc = 0;
    if (st != KDENS_OK) {
        rc = cli_fail(rule_name, st);
    } else {
        printf("sample,winner\n");
        for (size_t i = 0; i < n; i++)
            printf("%s,%d\n", kdens_predictions_sample_name(pr, i), (int)winner[i]);
        if (fflush(stdout) != 0)
            rc = 1;
    }
    free(winner);
    kdens_predictions_free(pr);
    return rc;
}

/* Experiment grids: the plan's syntax and errors, a grid of tiny runs with
 * its tables checked against a direct computation from grid.csv, a run
 * killed and resumed, and two processes sharing one grid. */
#include "testutil.h"

#include "kdens_experiment.h"

#include "data/data.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { S = 6, K = 3 };

/* A separable toy set: class c lights every K-th pixel from c. */
static kdens_dataset *make_set(size_t n, uint64_t seed)
{
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(n, S, S, 1, K, &ds));
    ASSERT_OK(kd_dataset_name_by_index(ds));
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % K);
        for (int p = 0; p < S * S; p++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            ds->store->pixels[i * S * S + p] = (uint8_t)((p % K == c ? 150 : 40) + (r >> 58));
        }
        ds->store->labels[i] = c;
    }
    return ds;
}

static const char plan_text[] = "# two n, two fractions, two modes, two seeds: 16 students\n"
                                "arch = test\n"
                                "teachers = 1, 2\n"
                                "fraction = 0.5, 1\n"
                                "mode = output_avg, mimic_all   # the dissertation's pair\n"
                                "temperature = 2\n"
                                "seeds = 2\n"
                                "teacher_epochs = 1\n"
                                "student_epochs = 1\n"
                                "batch = 16\n";

static void test_plan(void **state)
{
    (void)state;
    kdens_grid *g;
    ASSERT_OK(kdens_grid_parse(plan_text, &g));
    assert_int_equal(kdens_grid_students(g), 16);
    assert_null(kdens_grid_dataset(g));
    kdens_grid_free(g);
    ASSERT_OK(kdens_grid_parse("dataset = mnist=/data\nteachers = 3\nfraction = 0.7\n", &g));
    assert_string_equal(kdens_grid_dataset(g), "mnist=/data");
    assert_int_equal(kdens_grid_students(g), 1);
    kdens_grid_free(g);
    kdens_grid_free(NULL);
    static const struct {
        const char *plan, *message;
    } bad[] = {
        {"teachers = 2\n", "no fraction"},
        {"fraction = 0.5\n", "no teachers"},
        {"teachers = 2\nfraction = 0.5\ncolour = red\n", "line 3: unknown key 'colour'"},
        {"teachers = 2, x\nfraction = 0.5\n", "line 1: teachers: 'x' is not a valid value"},
        {"teachers = 2\nfraction = 1.5\n", "fraction: '1.5'"},
        {"teachers = 2\nfraction = 0.5\nmode = output_avg, nope\n", "mode: 'nope'"},
        {"teachers = 2\nfraction = 0.5\nseeds = 2.5\n", "whole number"},
        {"teachers = 2\nfraction = 0.5\nalpha = nan\n", "alpha: 'nan'"},
        {"teachers = 2\nfraction = 0.5\nlr\n", "line 3: 'lr' is not `key = value`"},
        {"teachers = 2\n\n# blank lines count\nfraction = 0.5\nx = 1\n", "line 5: unknown key"},
        {"teachers = 2\nfraction = 0.5\narch = a, b\n", "arch takes one name"},
        {"teachers =\nfraction = 0.5\n", "teachers has no value"},
        {"teachers = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\nfraction = 1\n", "more than 16"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        g = NULL;
        ASSERT_STATUS(kdens_grid_parse(bad[i].plan, &g), KDENS_E_FORMAT);
        assert_null(g);
        if (!strstr(kdens_errmsg(), bad[i].message))
            fail_msg("plan %zu: '%s' lacks '%s'", i, kdens_errmsg(), bad[i].message);
    }
    ASSERT_STATUS(kdens_grid_parse(NULL, &g), KDENS_E_ARG);
    ASSERT_STATUS(kdens_grid_load("/nonexistent/plan", &g), KDENS_E_IO);
}

/* grid.csv's rows, each cell's accuracies summed up directly. */
typedef struct csv_summary {
    int rows, cells;
    double sum[16];
    int count[16];
    char key[16][64];
} csv_summary;

static void read_grid_csv(const char *path, csv_summary *s)
{
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "n_teachers,fraction,mode,alpha,temperature,seed,test_accuracy,"
                              "baseline_accuracy,only_student_right,only_baseline_right,"
                              "p_value\n");
    while (fgets(line, sizeof line, f)) {
        int n;
        double fraction, alpha, t, acc, base, p;
        char mode[32];
        unsigned long long seed, wins, losses;
        assert_int_equal(sscanf(line, "%d,%lf,%31[^,],%lf,%lf,%llu,%lf,%lf,%llu,%llu,%lf", &n,
                                &fraction, mode, &alpha, &t, &seed, &acc, &base, &wins, &losses,
                                &p),
                         11);
        assert_true(p >= 0 && p <= 1 && acc >= 0 && acc <= 1);
        char key[64];
        snprintf(key, sizeof key, "%d %g %s", n, fraction, mode);
        int c = 0;
        while (c < s->cells && strcmp(s->key[c], key))
            c++;
        if (c == s->cells)
            snprintf(s->key[s->cells++], sizeof s->key[0], "%s", key);
        s->sum[c] += acc, s->count[c]++;
        s->rows++;
    }
    fclose(f);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0;
    for (int ch; (ch = fgetc(f)) != EOF;)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* Every student name of students.csv appears once. */
static void assert_no_duplicates(const char *csv)
{
    FILE *f = fopen(csv, "r");
    assert_non_null(f);
    char lines[64][512];
    int n = 0;
    while (n < 64 && fgets(lines[n], sizeof lines[n], f)) {
        char *comma = strchr(lines[n], ',');
        if (comma)
            *comma = '\0';
        for (int i = 0; i < n; i++)
            if (!strcmp(lines[i], lines[n]))
                fail_msg("%s is registered twice", lines[n]);
        n++;
    }
    fclose(f);
}

static void test_grid_run(void **state)
{
    (void)state;
    char *work = tu_tmpdir();
    kdens_dataset *pool = make_set(150, 1), *test = make_set(60, 9);
    kdens_grid *g;
    ASSERT_OK(kdens_grid_parse(plan_text, &g));
    ASSERT_OK(kdens_grid_run(g, work, "toy", pool, test));
    char path[4400];
    csv_summary s;
    snprintf(path, sizeof path, "%s/toy/grid.csv", work);
    read_grid_csv(path, &s);
    assert_int_equal(s.rows, 16);
    assert_int_equal(s.cells, 8);
    /* two teachers of each fraction (the largest n), trained once, and the baseline */
    snprintf(path, sizeof path, "%s/teachers.csv", work);
    assert_int_equal(count_lines(path), 1 + 2 * 2 + 1);
    snprintf(path, sizeof path, "%s/students.csv", work);
    assert_int_equal(count_lines(path), 1 + 16);
    /* the table's means are those of grid.csv's rows */
    snprintf(path, sizeof path, "%s/toy/grid.md", work);
    char *md;
    size_t len;
    ASSERT_OK(kd_read_file(path, &md, &len));
    assert_non_null(strstr(md, "16 of 16 students done"));
    for (int c = 0; c < s.cells; c++) {
        int n;
        double fraction;
        char mode[32];
        sscanf(s.key[c], "%d %lf %31s", &n, &fraction, mode);
        char row[64], mean[32];
        snprintf(row, sizeof row, "| %d | %g |", n, fraction);
        snprintf(mean, sizeof mean, " %.2f (", 100 * s.sum[c] / s.count[c]);
        const char *at = strstr(md, row); /* the first table: accuracies */
        assert_non_null(at);
        const char *eol = strchr(at, '\n');
        const char *cell = at + strlen(row);
        if (strcmp(mode, "mimic_all") == 0) /* the second column */
            cell = strchr(cell, '|') + 1;
        if (strncmp(cell, mean, strlen(mean)) != 0 || cell > eol)
            fail_msg("cell %s: table '%.*s', direct mean%s", s.key[c], (int)(eol - at), at, mean);
    }
    free(md);
    const char *const plots[2] = {"grid_n.png", "grid_fraction.png"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/toy/%s", work, plots[i]);
        assert_true(access(path, F_OK) == 0);
    }
    /* run again: everything is reused, the same table */
    ASSERT_OK(kdens_grid_run(g, work, "toy", pool, test));
    snprintf(path, sizeof path, "%s/students.csv", work);
    assert_int_equal(count_lines(path), 1 + 16);
    kdens_grid_free(g);
    kdens_dataset_free(pool);
    kdens_dataset_free(test);
    tu_rm_rf(work);
}

/* A grid killed part-way resumes; two processes share one. */
static void test_grid_killed_and_shared(void **state)
{
    (void)state;
    char *work = tu_tmpdir();
    kdens_dataset *pool = make_set(150, 1), *test = make_set(60, 9);
    kdens_grid *g;
    ASSERT_OK(kdens_grid_parse(plan_text, &g));
    char students[4400];
    snprintf(students, sizeof students, "%s/students.csv", work);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0)
        _exit(kdens_grid_run(g, work, "toy", pool, test) == KDENS_OK ? 0 : 1);
    const struct timespec tick = {0, 2000000};
    while (count_lines(students) < 1 + 3) /* some students done, not all */
        nanosleep(&tick, NULL);
    kill(kid, SIGKILL);
    int status;
    waitpid(kid, &status, 0);
    int before = count_lines(students) - 1;
    assert_true(before >= 3 && before < 16);
    /* two processes finish it together: every student registered once */
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0)
            _exit(kdens_grid_run(g, work, "toy", pool, test) == KDENS_OK ? 0 : 1);
    }
    for (int k = 0; k < 2; k++) {
        waitpid(kids[k], &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(count_lines(students), 1 + 16);
    assert_no_duplicates(students);
    ASSERT_OK(kdens_grid_run(g, work, "toy", pool, test)); /* the complete report */
    char path[4400];
    csv_summary s;
    snprintf(path, sizeof path, "%s/toy/grid.csv", work);
    read_grid_csv(path, &s);
    assert_int_equal(s.rows, 16);
    kdens_grid_free(g);
    kdens_dataset_free(pool);
    kdens_dataset_free(test);
    tu_rm_rf(work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_grid_run),
        cmocka_unit_test(test_grid_killed_and_shared),
    };
    return cmocka_run_group_tests_name("grid", tests, NULL, NULL);
}

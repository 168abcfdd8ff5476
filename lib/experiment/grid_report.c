/* The grid's results: every registered student evaluated on the test set and
 * paired with the baseline (McNemar), one long CSV (grid.csv), the tables of
 * the dissertation -- mean (standard error) per cell, rows n and fraction,
 * columns modes -- with the difference from the baseline and its 95%
 * interval (grid.md), and plots of accuracy against n, the fraction and
 * alpha (grid_*.png). */
#include "grid.h"
#include "plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One student of the grid: a cell and a seed. */
typedef struct grid_row {
    grid_cell cell;
    int rep;
    bool done;                /* registered, hence evaluated */
    double accuracy;
    uint64_t wins, losses;    /* only it right / only the baseline right */
    double p;
} grid_row;

typedef struct grid_results {
    const kdens_grid *g;
    const char *workdir, *name;
    size_t n_test;
    int32_t *labels;
    double baseline;          /* NaN without one */
    grid_row *rows;
    size_t n_rows, done;
} grid_results;

static kdens_status evaluate(const char *path, const kdens_dataset *test, int32_t **decisions)
{
    kdens_model *m = NULL;
    kdens_status st = kdens_model_load(path, &m);
    if (st == KDENS_OK)
        st = kd_decide_all(m, test, decisions);
    kdens_model_free(m);
    return st;
}

static double accuracy_of(const grid_results *r, const int32_t *d)
{
    size_t right = 0;
    for (size_t i = 0; i < r->n_test; i++)
        right += d[i] == r->labels[i];
    return r->n_test ? (double)right / (double)r->n_test : NAN;
}

/* The baseline's test decisions (NULL with none registered). */
static kdens_status baseline(grid_results *r, const kdens_dataset *test, int32_t **decisions)
{
    *decisions = NULL;
    r->baseline = NAN;
    char *csv = kd_path_join(r->workdir, "teachers.csv", NULL);
    kd_registry_row *rows = NULL;
    size_t n = 0;
    kdens_status st = csv ? kd_registry_read(csv, &rows, &n) : KDENS_E_NOMEM;
    for (size_t i = 0; st == KDENS_OK && i < n && !*decisions; i++)
        if (!strcmp(rows[i].uuid, "all_trainset") && !strcmp(rows[i].dataset, r->name) &&
            !strcmp(rows[i].arch, r->g->student_arch)) {
            st = evaluate(rows[i].location, test, decisions);
            if (st == KDENS_OK)
                r->baseline = accuracy_of(r, *decisions);
        }
    kd_registry_free(rows, n);
    free(csv);
    return st;
}

/* Every student of the grid, evaluated where registered. */
static kdens_status students(grid_results *r, const kdens_dataset *test, const int32_t *base)
{
    const kdens_grid *g = r->g;
    r->n_rows = kdens_grid_students(g);
    if (!(r->rows = calloc(r->n_rows, sizeof *r->rows)))
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    char *csv = kd_path_join(r->workdir, "students.csv", NULL);
    kdens_status st = csv ? KDENS_OK : KDENS_E_NOMEM;
    grid_cell c;
    size_t k = 0;
    for (size_t i = 0; st == KDENS_OK && kd_grid_cell(g, i, &c); i++)
        for (int rep = 0; st == KDENS_OK && rep < g->seeds; rep++, k++) {
            grid_row *row = &r->rows[k];
            row->cell = c, row->rep = rep, row->p = NAN;
            kdens_distill_job job;
            kd_grid_job(g, r->workdir, r->name, &c, &job);
            char *stem = kd_student_name(&job, rep);
            char *path = stem ? kd_path_fmt(r->workdir, "%s/students/%s.kdm", r->name, stem)
                              : NULL;
            int32_t *d = NULL;
            if (!path)
                st = KDENS_E_NOMEM;
            else if (kd_registry_has(csv, path) && (st = evaluate(path, test, &d)) == KDENS_OK) {
                row->done = true;
                row->accuracy = accuracy_of(r, d);
                if (base)
                    st = kdens_mcnemar(d, base, r->labels, r->n_test, &row->wins, &row->losses,
                                       &row->p);
                r->done++;
            }
            free(d);
            free(path);
            free(stem);
        }
    free(csv);
    return st;
}

static kdens_status save(const grid_results *r, const char *file, kd_buf *b)
{
    return kd_save_text(kd_path_join(r->workdir, r->name, file, NULL), b);
}

static kdens_status write_csv(const grid_results *r)
{
    kd_buf b = {0};
    kd_buf_printf(&b, "n_teachers,fraction,mode,alpha,temperature,seed,test_accuracy,"
                      "baseline_accuracy,only_student_right,only_baseline_right,p_value\n");
    for (size_t i = 0; i < r->n_rows; i++) {
        const grid_row *x = &r->rows[i];
        if (!x->done)
            continue;
        kd_buf_printf(&b, "%d,%g,%s,%g,%g,%llu,%.6f,", x->cell.n, x->cell.fraction,
                      kdens_distill_mode_name(x->cell.mode), x->cell.alpha, x->cell.temperature,
                      (unsigned long long)(r->g->seed + (uint64_t)x->rep), x->accuracy);
        if (isfinite(x->p))
            kd_buf_printf(&b, "%.6f,%llu,%llu,%.6g\n", r->baseline,
                          (unsigned long long)x->wins, (unsigned long long)x->losses, x->p);
        else
            kd_buf_printf(&b, ",,,\n");
    }
    return save(r, "grid.csv", &b);
}

/* The finished seeds of a cell: accuracies, and how many are significantly
 * better (p < 0.05 and ahead) or worse than the baseline. */
typedef struct cell_stats {
    int n;
    double acc[1000];
    int better, worse;
} cell_stats;

static void cell_stats_of(const grid_results *r, const grid_cell *c, cell_stats *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < r->n_rows; i++) {
        const grid_row *x = &r->rows[i];
        if (!x->done || x->cell.n != c->n || x->cell.fraction != c->fraction ||
            x->cell.mode != c->mode || x->cell.alpha != c->alpha ||
            x->cell.temperature != c->temperature)
            continue;
        s->acc[s->n++] = x->accuracy;
        s->better += x->p < 0.05 && x->wins > x->losses;
        s->worse += x->p < 0.05 && x->wins < x->losses;
    }
}

/* "90.12 (0.08)": mean and standard error in percent; "-" for none done. */
static void put_mean(kd_buf *b, const cell_stats *s)
{
    double mean, sem;
    if (s->n == 0 || kdens_mean_ci(s->acc, s->n, &mean, &sem, NULL) != KDENS_OK)
        kd_buf_printf(b, " - |");
    else
        kd_buf_printf(b, " %.2f (%.2f) |", 100 * mean, 100 * sem);
}

/* "+0.31 ± 0.20, 2/3 ahead, 0 behind": the mean difference from the
 * baseline with the half-width of its 95% t-interval over seeds, and the
 * seeds whose McNemar test says ahead (behind) at p < 0.05. */
static void put_difference(kd_buf *b, const cell_stats *s, double baseline)
{
    double diff[1000], mean, half;
    for (int i = 0; i < s->n; i++)
        diff[i] = 100 * (s->acc[i] - baseline);
    if (s->n == 0 || !isfinite(baseline) || kdens_mean_ci(diff, s->n, &mean, NULL, &half))
        kd_buf_printf(b, " - |");
    else if (s->n > 1)
        kd_buf_printf(b, " %+.2f ± %.2f, %d/%d ahead, %d behind |", mean, half, s->better, s->n,
                      s->worse);
    else
        kd_buf_printf(b, " %+.2f, %s |", mean,
                      s->better ? "ahead" : s->worse ? "behind" : "not significant");
}

static void tables(const grid_results *r, kd_buf *b, bool differences)
{
    const kdens_grid *g = r->g;
    for (int a = 0; a < g->n_alphas; a++)
        for (int t = 0; t < g->n_temperatures; t++) {
            kd_buf_printf(b, "\n%s, alpha %g, T %g:\n\n| n | fraction |",
                          differences ? "Difference from the baseline (points)"
                                      : "Test accuracy, mean (standard error), %",
                          g->alphas[a], g->temperatures[t]);
            for (int m = 0; m < g->n_modes; m++)
                kd_buf_printf(b, " %s |", kdens_distill_mode_name(g->modes[m]));
            kd_buf_printf(b, "\n|---:|---:|");
            for (int m = 0; m < g->n_modes; m++)
                kd_buf_printf(b, "---:|");
            kd_buf_printf(b, "\n");
            for (int n = 0; n < g->n_teachers; n++)
                for (int f = 0; f < g->n_fractions; f++) {
                    kd_buf_printf(b, "| %d | %g |", g->teachers[n], g->fractions[f]);
                    for (int m = 0; m < g->n_modes; m++) {
                        grid_cell c = {g->teachers[n], g->fractions[f], g->alphas[a],
                                       g->temperatures[t], g->modes[m]};
                        cell_stats s;
                        cell_stats_of(r, &c, &s);
                        if (differences)
                            put_difference(b, &s, r->baseline);
                        else
                            put_mean(b, &s);
                    }
                    kd_buf_printf(b, "\n");
                }
        }
}

/* Accuracy against one axis, a line per mode, the other axes at their
 * largest value (alpha and T: the first); the baseline as a flat line. */
static kdens_status plot_axis(const grid_results *r, char axis, const char *file,
                              const char *title, const char *xlabel)
{
    const kdens_grid *g = r->g;
    int n = axis == 'n' ? g->n_teachers : axis == 'f' ? g->n_fractions : g->n_alphas;
    double x[KD_GRID_MAX_AXIS], y[KD_GRID_MAX_AXIS + 1][KD_GRID_MAX_AXIS],
        lo[KD_GRID_MAX_AXIS + 1][KD_GRID_MAX_AXIS], hi[KD_GRID_MAX_AXIS + 1][KD_GRID_MAX_AXIS];
    kd_series series[KD_GRID_MAX_AXIS + 1];
    int top_n = kd_grid_max_teachers(g);
    double top_f = 0;
    for (int f = 0; f < g->n_fractions; f++)
        top_f = g->fractions[f] > top_f ? g->fractions[f] : top_f;
    for (int i = 0; i < n; i++)
        x[i] = axis == 'n' ? g->teachers[i] : axis == 'f' ? g->fractions[i] : g->alphas[i];
    for (int m = 0; m < g->n_modes; m++) {
        for (int i = 0; i < n; i++) {
            grid_cell c = {axis == 'n' ? g->teachers[i] : top_n,
                           axis == 'f' ? g->fractions[i] : top_f,
                           axis == 'a' ? g->alphas[i] : g->alphas[0], g->temperatures[0],
                           g->modes[m]};
            cell_stats s;
            cell_stats_of(r, &c, &s);
            double mean = NAN, half = 0;
            if (s.n)
                kdens_mean_ci(s.acc, s.n, &mean, NULL, &half);
            y[m][i] = 100 * mean, lo[m][i] = 100 * (mean - half), hi[m][i] = 100 * (mean + half);
        }
        series[m] = (kd_series){kdens_distill_mode_name(g->modes[m]), n, x, y[m], lo[m], hi[m]};
    }
    int k = g->n_modes;
    for (int i = 0; i < n; i++)
        y[k][i] = 100 * r->baseline;
    series[k] = (kd_series){"baseline", n, x, y[k], NULL, NULL};
    char *path = kd_path_join(r->workdir, r->name, file, NULL);
    kdens_status st = path ? kd_plot_lines(path, title, xlabel, "test accuracy (%)", series,
                                           k + isfinite(r->baseline))
                           : KDENS_E_NOMEM;
    free(path);
    return st;
}

static kdens_status write_markdown(const grid_results *r)
{
    const kdens_grid *g = r->g;
    kd_buf b = {0};
    kd_buf_printf(&b, "# Experiment grid: %s\n\n", r->name);
    kd_buf_printf(&b, "Teachers %s, students %s; %d teacher and %d student epochs, batch %zu, "
                      "lr %g (Adam, cosine); %d seed%s from %llu. %zu of %zu students done%s.\n",
                  g->teacher_arch, g->student_arch, g->teacher_epochs, g->student_epochs,
                  g->batch, g->lr, g->seeds, g->seeds > 1 ? "s" : "",
                  (unsigned long long)g->seed, r->done, r->n_rows,
                  r->done < r->n_rows ? " (the others are pending: run the grid again)" : "");
    if (isfinite(r->baseline))
        kd_buf_printf(&b, "\nBaseline (%s on the whole training part): **%.2f%%** on the %zu "
                          "test images.\n",
                      g->student_arch, 100 * r->baseline, r->n_test);
    else
        kd_buf_printf(&b, "\nNo baseline is registered yet.\n");
    tables(r, &b, false);
    if (isfinite(r->baseline)) {
        kd_buf_printf(&b, "\nEach student is paired with the baseline on the same test images "
                          "(McNemar's exact test). Below: the mean difference over seeds with "
                          "the half-width of its 95%% t-interval, and how many seeds are ahead "
                          "of the baseline at p < 0.05.\n");
        tables(r, &b, true);
    }
    kd_buf_printf(&b, "\n![accuracy against n](grid_n.png)\n\n"
                      "![accuracy against the fraction](grid_fraction.png)\n");
    if (g->n_alphas > 1)
        kd_buf_printf(&b, "\n![accuracy against alpha](grid_alpha.png)\n");
    kd_buf_printf(&b, "\nEvery student: grid.csv. Settings are the plan's: none was chosen on "
                      "the test set.\n");
    return save(r, "grid.md", &b);
}

kdens_status kd_grid_report(const kdens_grid *g, const char *workdir, const char *name,
                            const kdens_dataset *test)
{
    grid_results r = {g, workdir, name, kdens_dataset_count(test), NULL, NAN, NULL, 0, 0};
    int32_t *base = NULL;
    kdens_status st = (r.labels = malloc(sizeof(int32_t) * (r.n_test ? r.n_test : 1)))
                          ? KDENS_OK
                          : kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t i = 0; st == KDENS_OK && i < r.n_test; i++)
        st = kdens_dataset_get(test, i, NULL, &r.labels[i], NULL);
    if (st == KDENS_OK)
        st = baseline(&r, test, &base);
    if (st == KDENS_OK)
        st = students(&r, test, base);
    if (st == KDENS_OK)
        st = write_csv(&r);
    if (st == KDENS_OK)
        st = write_markdown(&r);
    if (st == KDENS_OK)
        st = plot_axis(&r, 'n', "grid_n.png", "Accuracy against the number of teachers",
                       "teachers n");
    if (st == KDENS_OK)
        st = plot_axis(&r, 'f', "grid_fraction.png", "Accuracy against the teachers' fraction",
                       "fraction");
    if (st == KDENS_OK && g->n_alphas > 1)
        st = plot_axis(&r, 'a', "grid_alpha.png", "Accuracy against alpha", "alpha");
    free(base);
    free(r.labels);
    free(r.rows);
    return st;
}

/* The pipeline's report: results.csv, three plots, report.md and a
 * self-contained report.html (plots inlined as data URIs). */
#include "report.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kdens_status kd_report_add(kd_report *r, const kd_result *row)
{
    if (r->n_rows == r->cap_rows) {
        size_t cap = kd_grown((size_t)r->cap_rows, 32);
        if (cap > INT_MAX || !kd_resize(&r->rows, cap, sizeof *r->rows)) {
            free(row->log);
            free(row->decisions);
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        }
        r->cap_rows = (int)cap;
    }
    r->rows[r->n_rows++] = *row;
    return KDENS_OK;
}

kdens_status kd_report_compare(kd_report *r)
{
    const kd_result *base = NULL;
    for (int i = 0; i < r->n_rows; i++)
        if (!strcmp(r->rows[i].kind, "baseline"))
            base = &r->rows[i];
    for (int i = 0; i < r->n_rows; i++) {
        kd_result *x = &r->rows[i];
        x->p_value = NAN;
        if (!base || x == base || !x->decisions || !base->decisions || !r->labels)
            continue;
        kdens_status st = kdens_mcnemar(x->decisions, base->decisions, r->labels, r->n_test,
                                        &x->wins, &x->losses, &x->p_value);
        if (st != KDENS_OK)
            return st;
    }
    return KDENS_OK;
}

void kd_report_free(kd_report *r)
{
    for (int i = 0; r->rows && i < r->n_rows; i++) {
        free(r->rows[i].log);
        free(r->rows[i].decisions);
    }
    free(r->labels);
    free(r->rows);
    free(r->agreement);
    free(r->member_names);
    memset(r, 0, sizeof *r);
}

/* ---- summary figures --------------------------------------------------------------- */

typedef struct summary {
    const kd_result *baseline, *best_teacher, *mean_rule, *best_student;
    double teacher_mean, teacher_sd, teacher_ms; /* accuracy mean and sd; mean ms/image */
    int n_teachers;
} summary;

static summary summarise(const kd_report *r)
{
    summary s = {0};
    double sum = 0, sq = 0, ms = 0;
    for (int i = 0; i < r->n_rows; i++) {
        const kd_result *x = &r->rows[i];
        if (!strcmp(x->kind, "baseline"))
            s.baseline = x;
        else if (!strcmp(x->kind, "teacher")) {
            s.n_teachers++, sum += x->accuracy, sq += x->accuracy * x->accuracy;
            ms += x->ms_per_image;
            if (!s.best_teacher || x->accuracy > s.best_teacher->accuracy)
                s.best_teacher = x;
        } else if (!strcmp(x->kind, "ensemble") && !strcmp(x->name, "mean"))
            s.mean_rule = x;
        else if (!strcmp(x->kind, "student") &&
                 (!s.best_student || x->accuracy > s.best_student->accuracy))
            s.best_student = x;
    }
    if (s.n_teachers) {
        s.teacher_mean = sum / s.n_teachers;
        s.teacher_ms = ms / s.n_teachers;
        s.teacher_sd = s.n_teachers > 1 ? sqrt(fmax(0, (sq - sum * sum / s.n_teachers) /
                                                           (s.n_teachers - 1)))
                                        : 0;
    }
    return s;
}

/* ---- results.csv --------------------------------------------------------------------- */

/* v with `decimals` decimals, or empty when it is not finite. */
static void fmt_num(char *buf, size_t size, double v, int decimals)
{
    if (isfinite(v))
        snprintf(buf, size, "%.*f", decimals, v);
    else
        buf[0] = '\0';
}

/* Write the text built in b to r->dir/name (atomically) and free b. */
static kdens_status save_text(const kd_report *r, const char *name, kd_buf *b)
{
    return kd_save_text(kd_path_join(r->dir, name, NULL), b);
}

static kdens_status write_results(const kd_report *r)
{
    kd_buf b = {0};
    kd_buf_printf(&b, "kind,name,test_accuracy,test_loss,params,ms_per_image,"
                      "only_right_vs_baseline,only_baseline_right,p_vs_baseline\n");
    for (int i = 0; i < r->n_rows; i++) {
        const kd_result *x = &r->rows[i];
        char loss[32], ms[32], p[32];
        fmt_num(loss, sizeof loss, x->loss, 6);
        fmt_num(ms, sizeof ms, x->ms_per_image, 5);
        fmt_num(p, sizeof p, x->p_value, 6);
        kd_buf_printf(&b, "%s,%s,%.6f,%s,%zu,%s,", x->kind, x->name, x->accuracy, loss,
                      x->params, ms);
        if (isfinite(x->p_value))
            kd_buf_printf(&b, "%llu,%llu,%s\n", (unsigned long long)x->wins,
                          (unsigned long long)x->losses, p);
        else
            kd_buf_printf(&b, ",,\n");
    }
    return save_text(r, "results.csv", &b);
}

/* ---- plots --------------------------------------------------------------------------- */

static kdens_status plot_sizes(const kd_report *r, const summary *s)
{
    double x[64], base[64], lo[8][64], hi[8][64];
    kd_series series[9];
    int n = 0;
    for (int i = 0; i < r->n_sizes; i++)
        x[i] = r->sizes[i], base[i] = s->baseline ? s->baseline->accuracy : NAN;
    for (int c = 0; c < r->n_curve_rules; c++, n++) {
        for (int i = 0; i < r->n_sizes; i++) {
            lo[c][i] = r->curve_mean[c][i] - r->curve_ci[c][i];
            hi[c][i] = r->curve_mean[c][i] + r->curve_ci[c][i];
        }
        series[n] = (kd_series){kdens_fusion_name(r->curve_rules[c]), r->n_sizes, x,
                                r->curve_mean[c], lo[c], hi[c]};
    }
    if (s->baseline)
        series[n++] = (kd_series){"baseline", r->n_sizes, x, base, NULL, NULL};
    char *path = kd_path_join(r->dir, "accuracy_vs_size.png", NULL);
    if (!path)
        return KDENS_E_NOMEM;
    kdens_status st = kd_plot_lines(path, "Accuracy versus ensemble size",
                                    "teachers in the ensemble", "test accuracy (mean, 95% CI)",
                                    series, n);
    free(path);
    return st;
}

static kdens_status plot_agreement(const kd_report *r)
{
    /* the scale spans the pairs (the diagonal's 1.0 would flatten it) */
    double vmin = 1, vmax = 0;
    for (int i = 0; i < r->members; i++)
        for (int j = 0; j < r->members; j++)
            if (i != j) {
                vmin = fmin(vmin, r->agreement[i * r->members + j]);
                vmax = fmax(vmax, r->agreement[i * r->members + j]);
            }
    vmin = floor(vmin * 100) / 100;
    vmax = ceil(vmax * 100) / 100;
    if (r->members < 2 || vmax <= vmin)
        vmin = 0, vmax = 1;
    const char **labels = malloc(sizeof(char *) * (size_t)r->members);
    char *path = kd_path_join(r->dir, "agreement.png", NULL);
    kdens_status st = KDENS_OK;
    if (!path)
        st = KDENS_E_NOMEM; /* the message is set */
    else if (!labels)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; st == KDENS_OK && i < r->members; i++)
        labels[i] = r->member_names[i];
    if (st == KDENS_OK)
        st = kd_plot_heatmap(path, "Teachers' agreement", r->agreement, r->members, vmin, vmax,
                             labels);
    free(path);
    free(labels);
    return st;
}

/* Validation accuracy per epoch from a trainer log (CSV: epoch, loss,
 * accuracy, val_loss, val_accuracy, ...); returns the epochs read. */
static int read_curve(const char *path, double *acc, int max)
{
    char *text;
    size_t len;
    if (!path || kd_read_file(path, &text, &len) != KDENS_OK)
        return 0;
    int n = 0;
    kd_csv c;
    kd_csv_open(&c, text, len);
    while (n < max && kd_csv_next(&c) > 0) {
        char *end;
        double va = c.n_fields >= 5 ? strtod(c.fields[4], &end) : 0;
        if (c.line > 1 && c.n_fields >= 5 && end != c.fields[4] && !*end)
            acc[n++] = va;
    }
    kd_csv_close(&c);
    free(text);
    return n;
}

enum { MAX_EPOCHS = 512 };

static kdens_status plot_curves(const kd_report *r)
{
    static double x[MAX_EPOCHS], tmean[MAX_EPOCHS], tlo[MAX_EPOCHS], thi[MAX_EPOCHS];
    double *curves = malloc(sizeof(double) * MAX_EPOCHS * (size_t)(r->n_rows + 1));
    kd_series *series = malloc(sizeof(kd_series) * (size_t)(r->n_rows + 1));
    if (!curves || !series) {
        free(curves);
        free(series);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    int longest = 0, n_series = 0, teachers_len = 0;
    int count[MAX_EPOCHS] = {0};
    for (int i = 0; i < MAX_EPOCHS; i++)
        x[i] = i + 1, tmean[i] = 0, tlo[i] = INFINITY, thi[i] = -INFINITY;
    for (int i = 0; i < r->n_rows; i++) { /* teachers: mean and range per epoch */
        if (strcmp(r->rows[i].kind, "teacher"))
            continue;
        double *c = curves + (size_t)i * MAX_EPOCHS;
        int n = read_curve(r->rows[i].log, c, MAX_EPOCHS);
        for (int e = 0; e < n; e++) {
            tmean[e] += c[e], count[e]++;
            tlo[e] = fmin(tlo[e], c[e]), thi[e] = fmax(thi[e], c[e]);
        }
        teachers_len = n > teachers_len ? n : teachers_len;
    }
    for (int e = 0; e < teachers_len; e++)
        tmean[e] = count[e] ? tmean[e] / count[e] : NAN;
    if (teachers_len)
        series[n_series++] = (kd_series){"teachers (mean, range)", teachers_len, x, tmean, tlo,
                                         thi};
    longest = teachers_len;
    for (int i = 0; i < r->n_rows; i++) {
        const kd_result *row = &r->rows[i];
        if (strcmp(row->kind, "baseline") && strcmp(row->kind, "student"))
            continue;
        double *c = curves + (size_t)i * MAX_EPOCHS;
        int n = read_curve(row->log, c, MAX_EPOCHS);
        if (n) {
            series[n_series++] = (kd_series){row->kind[0] == 'b' ? "baseline" : row->name, n, x,
                                             c, NULL, NULL};
            longest = n > longest ? n : longest;
        }
    }
    char *path = kd_path_join(r->dir, "learning_curves.png", NULL);
    kdens_status st = path ? kd_plot_lines(path, "Learning curves", "epoch",
                                           "validation accuracy", series, n_series)
                           : KDENS_E_NOMEM;
    free(path);
    free(curves);
    free(series);
    return st;
}

/* ---- report.md and report.html ----------------------------------------------------------- */

static const char *const plots[3][2] = {
    {"accuracy_vs_size.png", "Accuracy versus ensemble size per fusion rule (95% confidence "
                             "bands over random sub-ensembles)"},
    {"agreement.png", "The teachers' pairwise agreement on the test set"},
    {"learning_curves.png", "Validation accuracy per epoch: teachers, baseline, students"}};

/* The verdict on "a beats b" from McNemar's test on the same images: a real
 * gain, a real loss, or a difference the test cannot tell from noise. */
static const char *verdict(double diff, double p)
{
    if (!isfinite(p))
        return "untested";
    if (p >= 0.05)
        return "not significant";
    return diff > 0 ? "holds" : "fails";
}

static void claim(kd_buf *b, bool html, const char *what, const kd_result *x,
                  const char *against, const kd_result *y, uint64_t wins, uint64_t losses,
                  double p)
{
    const char *li = html ? "<li>" : "- ", *end = html ? "</li>\n" : "\n";
    double diff = x->accuracy - y->accuracy;
    kd_buf_printf(b, "%s%s: **%.2f%%** against %s %.2f%% (%+.2f points; %llu test images "
                     "only it gets right, %llu only the other; McNemar's exact p = %.3g): "
                     "verdict **%s**.%s",
                  li, what, 100 * x->accuracy, against, 100 * y->accuracy, 100 * diff,
                  (unsigned long long)wins, (unsigned long long)losses, p, verdict(diff, p),
                  end);
}

static void headline(const kd_report *r, const summary *s, kd_buf *b, bool html)
{
    if (s->best_student && s->baseline) {
        char what[300];
        snprintf(what, sizeof what, "Best student (%s)", s->best_student->name);
        claim(b, html, what, s->best_student, "the baseline's", s->baseline,
              s->best_student->wins, s->best_student->losses, s->best_student->p_value);
    }
    if (s->mean_rule && s->best_teacher) {
        uint64_t wins = 0, losses = 0;
        double p = NAN;
        if (s->mean_rule->decisions && s->best_teacher->decisions && r->labels)
            kdens_mcnemar(s->mean_rule->decisions, s->best_teacher->decisions, r->labels,
                          r->n_test, &wins, &losses, &p);
        claim(b, html, "Softmax-averaged ensemble", s->mean_rule, "the best teacher's",
              s->best_teacher, wins, losses, p);
    }
    const char *p = html ? "<p>" : "", *end = html ? "</p>\n" : "\n";
    kd_buf_printf(b, "%s%sA claim (the first is better) holds when the difference is positive "
                     "and McNemar's test on the %zu test images gives p < 0.05, fails when it "
                     "is negative with p < 0.05, and is not significant otherwise. The best student is picked by "
                     "test accuracy among %s, which favours it a little.%s",
                  html ? "" : "\n", p, r->n_test,
                  "the students of this run", end);
}

static void table_row(kd_buf *b, bool html, const char *kind, const char *name, double acc,
                      double loss, size_t params, double ms, const char *extra)
{
    char l[32], m[32];
    fmt_num(l, sizeof l, loss, 4);
    fmt_num(m, sizeof m, ms, 4);
    if (html)
        kd_buf_printf(b, "<tr><td>%s</td><td>%s</td><td>%.2f%%%s</td><td>%s</td><td>%zu</td>"
                         "<td>%s</td></tr>\n",
                      kind, name, 100 * acc, extra, l, params, m);
    else
        kd_buf_printf(b, "| %s | %s | %.2f%%%s | %s | %zu | %s |\n", kind, name, 100 * acc,
                      extra, l, params, m);
}

static void results_table(const kd_report *r, const summary *s, kd_buf *b, bool html)
{
    static const char *const head[6] = {"kind", "name", "test accuracy", "test loss",
                                        "parameters", "ms / image"};
    if (html) {
        kd_buf_printf(b, "<table>\n<tr>");
        for (int i = 0; i < 6; i++)
            kd_buf_printf(b, "<th>%s</th>", head[i]);
        kd_buf_printf(b, "</tr>\n");
    } else {
        kd_buf_printf(b, "| kind | name | test accuracy | test loss | parameters | ms / image |\n"
                         "|---|---|---:|---:|---:|---:|\n");
    }
    static const char *const kinds[4] = {"baseline", "teacher", "ensemble", "student"};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < r->n_rows; i++)
            if (!strcmp(r->rows[i].kind, kinds[k]))
                table_row(b, html, kinds[k], r->rows[i].name, r->rows[i].accuracy,
                          r->rows[i].loss, r->rows[i].params, r->rows[i].ms_per_image, "");
        if (k == 1 && s->n_teachers) {
            char sd[48];
            snprintf(sd, sizeof sd, " ± %.2f", 100 * s->teacher_sd);
            table_row(b, html, "teachers", "mean ± sd", s->teacher_mean, NAN,
                      s->best_teacher->params, s->teacher_ms, sd);
        }
    }
    if (html)
        kd_buf_printf(b, "</table>\n");
}

static void votes_text(const kd_report *r, kd_buf *b, bool html)
{
    const kdens_vote_stats *v = &r->votes;
    double n = v->samples ? (double)v->samples : 1;
    const char *p = html ? "<p>" : "", *end = html ? "</p>\n" : "\n\n";
    kd_buf_printf(b, "%sOracle accuracy (some teacher right): %.2f%%. Unanimous votes on "
                     "%.2f%% of the test images; a majority for the plurality winner on "
                     "%.2f%% (right %.2f%% of those times); %.2f distinct classes voted per "
                     "image on average.%s",
                  p, 100 * r->oracle, 100 * v->unanimous / n, 100 * v->majority / n,
                  v->majority ? 100.0 * v->majority_correct / v->majority : 0.0,
                  v->mean_distinct, end);
    kd_buf_printf(b, "%sA Condorcet winner exists on %.2f%% of the images; it is right on "
                     "%.2f%% of them and equals the plurality winner on %.2f%%. Where none "
                     "exists, plurality is right on %.2f%% of the images.%s",
                  p, 100 * v->condorcet_exists / n,
                  v->condorcet_exists ? 100.0 * v->condorcet_correct / v->condorcet_exists : 0.0,
                  v->condorcet_exists ? 100.0 * v->condorcet_is_plurality / v->condorcet_exists
                                      : 0.0,
                  v->samples > v->condorcet_exists
                      ? 100.0 * v->plurality_correct_without_condorcet /
                            (double)(v->samples - v->condorcet_exists)
                      : 0.0,
                  end);
    /* the same as the ensemble grows (random sub-ensembles per size) */
    kd_buf_printf(b, html ? "<table>\n<tr><th>members</th><th>unanimous</th><th>Condorcet "
                            "winner</th><th>plurality right</th><th>Condorcet winner "
                            "right</th></tr>\n"
                          : "| members | unanimous | Condorcet winner | plurality right | "
                            "Condorcet winner right |\n|---:|---:|---:|---:|---:|\n");
    for (int s = 0; s < r->n_sizes; s++) {
        const kdens_vote_stats *x = &r->votes_by_size[s];
        double ns = x->samples ? (double)x->samples : 1;
        double cw = x->condorcet_exists ? 100.0 * x->condorcet_correct / x->condorcet_exists
                                        : 0.0;
        kd_buf_printf(b, html ? "<tr><td>%d</td><td>%.2f%%</td><td>%.2f%%</td><td>%.2f%%</td>"
                                "<td>%.2f%%</td></tr>\n"
                              : "| %d | %.2f%% | %.2f%% | %.2f%% | %.2f%% |\n",
                      r->sizes[s], 100 * x->unanimous / ns, 100 * x->condorcet_exists / ns,
                      100 * x->plurality_correct / ns, cw);
    }
    kd_buf_printf(b, html ? "</table>\n" : "\n");
}

/* Accuracy versus ensemble size: a row per rule, a column per size, the
 * mean over random sub-ensembles with the half-width of its 95% interval. */
static void sizes_table(const kd_report *r, kd_buf *b, bool html)
{
    if (!r->n_curve_rules || !r->n_sizes)
        return;
    kd_buf_printf(b, html ? "<table>\n<tr><th>rule</th>" : "| rule |");
    for (int s = 0; s < r->n_sizes; s++)
        kd_buf_printf(b, html ? "<th>%d</th>" : " %d |", r->sizes[s]);
    kd_buf_printf(b, html ? "</tr>\n" : "\n|---|");
    if (!html)
        for (int s = 0; s < r->n_sizes; s++)
            kd_buf_printf(b, "---:|");
    if (!html)
        kd_buf_printf(b, "\n");
    for (int c = 0; c < r->n_curve_rules; c++) {
        kd_buf_printf(b, html ? "<tr><td>%s</td>" : "| %s |", kdens_fusion_name(r->curve_rules[c]));
        for (int s = 0; s < r->n_sizes; s++)
            kd_buf_printf(b, html ? "<td>%.2f%% ± %.2f</td>" : " %.2f%% ± %.2f |",
                          100 * r->curve_mean[c][s], 100 * r->curve_ci[c][s]);
        kd_buf_printf(b, html ? "</tr>\n" : "\n");
    }
    kd_buf_printf(b, html ? "</table>\n" : "\n");
}

static void setup_text(const kd_report *r, kd_buf *b, bool html)
{
    const kdens_pipeline *c = r->cfg;
    const char *p = html ? "<p>" : "", *end = html ? "</p>\n" : "\n\n";
    const char *co = html ? "<code>" : "`", *cc = html ? "</code>" : "`";
    kd_buf_printf(b, "%sDataset %s%s%s: %zu training, %zu validation, %zu test images. "
                     "Architecture %s%s%s for teachers, baseline and students. %d teachers, "
                     "each on a random %g of the training part, %d epochs; students and "
                     "baseline %d epochs; Adam, lr %g with a cosine schedule, batch %zu; "
                     "distillation alpha %g, temperature %g; seed %llu. This run took %.0f s "
                     "(models already in the workspace are reused, not retrained).%s",
                  p, co, c->dataset, cc, r->n_train, r->n_val, r->n_test, co, c->arch, cc,
                  c->teachers,
                  c->fraction, c->teacher_epochs,
                  c->student_epochs > c->teacher_epochs ? c->student_epochs : c->teacher_epochs,
                  c->lr, c->batch, r->alpha, r->temperature, (unsigned long long)c->seed,
                  r->seconds, end);
    if (r->n_settings > 0) {
        const char *what = r->alpha_chosen && r->temperature_chosen ? "Alpha and the temperature"
                           : r->alpha_chosen                         ? "Alpha"
                                                                     : "The temperature";
        kd_buf_printf(b, "%s%s %s chosen on the validation part, never on the test set: an "
                         "output_avg student per candidate, validation accuracy ",
                      p, what, r->alpha_chosen && r->temperature_chosen ? "were" : "was");
        for (int i = 0; i < r->n_settings; i++) {
            const kd_setting_trial *t = &r->settings[i];
            kd_buf_printf(b, "%s", i ? ", " : "");
            if (r->alpha_chosen)
                kd_buf_printf(b, "alpha %g%s", t->alpha, r->temperature_chosen ? " " : "");
            if (r->temperature_chosen)
                kd_buf_printf(b, "T %g", t->temperature);
            kd_buf_printf(b, ": %.2f%%", 100 * t->val_accuracy);
        }
        kd_buf_printf(b, "; every student uses alpha %g, T %g%s.%s", r->alpha, r->temperature,
                      r->alpha_chosen && r->temperature_chosen ? ""
                      : r->alpha_chosen ? " (T as given)" : " (alpha as given, not tuned)", end);
    } else {
        kd_buf_printf(b, "%sAlpha and T were given, not tuned by this run.%s", p, end);
    }
}

static kdens_status write_markdown(const kd_report *r, const summary *s)
{
    kd_buf b = {0};
    kd_buf_printf(&b, "# libkdens: multi-teacher distillation report\n\n");
    setup_text(r, &b, false);
    kd_buf_printf(&b, "## Headline (test set)\n\n");
    headline(r, s, &b, false);
    kd_buf_printf(&b, "\n## Results\n\nTest accuracy and loss on the %zu-image test set; "
                      "the ensemble's parameters are its members' sum, its time per image that "
                      "of all members plus the rule's fusion; the loss of voting rules is "
                      "undefined.\n\n",
                  r->n_test);
    results_table(r, s, &b, false);
    kd_buf_printf(&b, "\n## Accuracy versus ensemble size\n\nRandom sub-ensembles of each "
                      "size (%d per size), mean test accuracy with the half-width of its 95%% "
                      "interval.\n\n",
                  r->cfg->size_repeats);
    sizes_table(r, &b, false);
    kd_buf_printf(&b, "\n## Votes\n\n");
    votes_text(r, &b, false);
    kd_buf_printf(&b, "## Plots\n\n");
    for (int i = 0; i < 3; i++)
        kd_buf_printf(&b, "%s\n\n![%s](%s)\n\n", plots[i][1], plots[i][1], plots[i][0]);
    kd_buf_printf(&b, "Files: results.csv, teachers.csv, students.csv, %s/logs/ (per-epoch "
                      "logs), %s/predictions_test.kdp (the teachers' test predictions).\n",
                  r->cfg->dataset, r->cfg->dataset);
    return save_text(r, "report.md", &b);
}

static void base64(kd_buf *b, const unsigned char *p, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char out[4] = {alphabet[v >> 18 & 63], alphabet[v >> 12 & 63],
                       i + 1 < n ? alphabet[v >> 6 & 63] : '=', i + 2 < n ? alphabet[v & 63] : '='};
        kd_buf_put(b, out, 4);
    }
}

/* Markdown's **bold** as <b> in the headline. */
static void bold_to_html(kd_buf *b, size_t from)
{
    bool open = true;
    for (size_t i = from; i + 1 < b->len; i++)
        if (b->data[i] == '*' && b->data[i + 1] == '*') {
            const char *tag = open ? "<b>" : "</b>";
            size_t tl = strlen(tag);
            kd_buf_put(b, "\0\0", tl - 2); /* grow by tl - 2 bytes */
            if (b->failed)
                return;
            memmove(b->data + i + tl, b->data + i + 2, b->len - (tl - 2) - i - 2);
            memcpy(b->data + i, tag, tl);
            open = !open;
        }
}

static kdens_status write_html(const kd_report *r, const summary *s)
{
    kd_buf b = {0};
    kd_buf_printf(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                      "<title>libkdens report</title><style>body{font-family:sans-serif;"
                      "max-width:60em;margin:2em auto}table{border-collapse:collapse}"
                      "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
                      "td:nth-child(-n+2),th{text-align:left}</style></head><body>\n"
                      "<h1>libkdens: multi-teacher distillation report</h1>\n");
    setup_text(r, &b, true);
    kd_buf_printf(&b, "<h2>Headline (test set)</h2>\n<ul>\n");
    size_t from = b.len;
    headline(r, s, &b, true);
    bold_to_html(&b, from);
    kd_buf_printf(&b, "</ul>\n<h2>Results</h2>\n");
    results_table(r, s, &b, true);
    kd_buf_printf(&b, "<h2>Accuracy versus ensemble size</h2>\n");
    sizes_table(r, &b, true);
    kd_buf_printf(&b, "<h2>Votes</h2>\n");
    votes_text(r, &b, true);
    kd_buf_printf(&b, "<h2>Plots</h2>\n");
    kdens_status st = KDENS_OK;
    for (int i = 0; i < 3 && st == KDENS_OK; i++) {
        char *path = kd_path_join(r->dir, plots[i][0], NULL), *png;
        size_t len;
        st = path ? kd_read_file(path, &png, &len) : KDENS_E_NOMEM;
        free(path);
        if (st != KDENS_OK)
            break;
        kd_buf_printf(&b, "<p>%s</p>\n<img alt=\"%s\" src=\"data:image/png;base64,", plots[i][1],
                      plots[i][0]);
        base64(&b, (const unsigned char *)png, len);
        kd_buf_printf(&b, "\">\n");
        free(png);
    }
    kd_buf_printf(&b, "</body></html>\n");
    if (st != KDENS_OK) {
        kd_buf_free(&b);
        return st;
    }
    return save_text(r, "report.html", &b);
}

kdens_status kd_report_write(const kd_report *r)
{
    summary s = summarise(r);
    kdens_status st = write_results(r);
    if (st == KDENS_OK)
        st = plot_sizes(r, &s);
    if (st == KDENS_OK)
        st = plot_agreement(r);
    if (st == KDENS_OK)
        st = plot_curves(r);
    if (st == KDENS_OK)
        st = write_markdown(r, &s);
    if (st == KDENS_OK)
        st = write_html(r, &s);
    if (st == KDENS_OK) {
        kd_buf h = {0};
        headline(r, &s, &h, false);
        if (!h.failed && h.len)
            kd_log(KDENS_LOG_INFO, "%.*s", (int)h.len - 1, h.data);
        kd_buf_free(&h);
    }
    return st;
}

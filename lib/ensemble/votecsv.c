/* Predictions imported from a CSV of scores, one row per sample and member:
 *   sample,member,p0,p1,...,p{K-1}
 * (docs/formats.md).  The plain interface to the voting rules for scores
 * from any source. */
#include "ensemble.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names in order of first appearance, found through an open-addressing hash. */
typedef struct name_table {
    char **names;
    size_t n, cap;     /* names */
    size_t *slots;     /* hash slots: index + 1, 0 empty */
    size_t n_slots;
} name_table;

static int table_grow(name_table *t)
{
    size_t n_slots = t->n_slots ? 2 * t->n_slots : 64;
    size_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = kd_fnv1a(KD_FNV_BASIS, t->names[i], strlen(t->names[i])) & (n_slots - 1);
        while (slots[h])
            h = (h + 1) & (n_slots - 1);
        slots[h] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return 0;
}

/* The index of the name s[0..len), added when new; -1 out of memory. */
static long table_index(name_table *t, const char *s, size_t len)
{
    if (2 * (t->n + 1) > t->n_slots && table_grow(t) != 0)
        return -1;
    size_t h = kd_fnv1a(KD_FNV_BASIS, s, len) & (t->n_slots - 1);
    for (; t->slots[h]; h = (h + 1) & (t->n_slots - 1)) {
        const char *name = t->names[t->slots[h] - 1];
        if (strlen(name) == len && memcmp(name, s, len) == 0)
            return (long)t->slots[h] - 1;
    }
    if (t->n == t->cap) {
        size_t cap = kd_grown(t->cap, 64);
        if (!kd_resize(&t->names, cap, sizeof *t->names))
            return -1;
        t->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    t->names[t->n] = copy;
    t->slots[h] = t->n + 1;
    return (long)t->n++;
}

static void table_free(name_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->names[i]);
    free(t->names);
    free(t->slots);
}

/* One parsed row: its sample, member, and where its K scores start. */
typedef struct csv_row {
    size_t sample, member, line;
    size_t first_score; /* into the scores array */
} csv_row;

/* The header: sample,member,p0..p{K-1}; *classes receives K. */
static kdens_status parse_header(const char *path, kd_csv *c, int *classes)
{
    int r = kd_csv_next(c);
    if (r <= 0 || c->line != 1 || c->n_fields < 3 || strcmp(c->fields[0], "sample") != 0 ||
        strcmp(c->fields[1], "member") != 0)
        return kd_fail(KDENS_E_FORMAT, "%s: the header must begin 'sample,member,p0'", path);
    if (c->n_fields - 2 > 100000)
        return kd_fail(KDENS_E_FORMAT, "%s: too many classes", path);
    for (size_t i = 2; i < c->n_fields; i++) {
        char want[24];
        snprintf(want, sizeof want, "p%zu", i - 2);
        if (strcmp(c->fields[i], want) != 0)
            return kd_fail(KDENS_E_FORMAT, "%s: header column %zu is not '%s'", path, i + 1, want);
    }
    *classes = (int)(c->n_fields - 2);
    return KDENS_OK;
}

/* A score: a finite number >= 0 filling the whole field. */
static int parse_score(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == '\0' && isfinite(*v) && *v >= 0 ? 0 : -1;
}

/* One row's scores into sc[0 .. k), normalised to a distribution. */
static kdens_status row_scores(const char *path, const kd_csv *c, int k, float *sc)
{
    double total = 0;
    for (int a = 0; a < k; a++) {
        double x;
        if (parse_score(c->fields[2 + a], &x) != 0)
            return kd_fail(KDENS_E_FORMAT, "%s:%zu: score of class %d is not a finite number "
                           ">= 0", path, c->line, a);
        sc[a] = (float)x, total += x;
    }
    if (!(total > 0 && isfinite(total)))
        return kd_fail(KDENS_E_FORMAT, "%s:%zu: the scores sum to 0 or overflow", path, c->line);
    for (int a = 0; a < k; a++) /* a distribution, as the rules want */
        sc[a] = (float)(sc[a] / total);
    return KDENS_OK;
}

static kdens_status parse_rows(const char *path, kd_csv *c, int k, name_table *samples,
                               name_table *members, csv_row **rows_out, size_t *n_rows_out,
                               float **scores_out)
{
    csv_row *rows = NULL;
    float *scores = NULL;
    size_t n_rows = 0, cap = 0;
    kdens_status st = KDENS_OK;
    for (int r; st == KDENS_OK && (r = kd_csv_next(c)) != 0;) {
        if (r < 0 || c->n_fields < 2 || !*c->fields[0]) {
            st = kd_fail(KDENS_E_FORMAT, "%s:%zu: expected sample,member,scores%s%s", path,
                         c->line, c->error ? ": " : "", c->error ? c->error : "");
            break;
        }
        if (c->n_fields != (size_t)k + 2) {
            st = kd_fail(KDENS_E_FORMAT, "%s:%zu: expected %d scores", path, c->line, k);
            break;
        }
        if (n_rows == cap) {
            cap = kd_grown(cap, 1024);
            if (cap > SIZE_MAX / (size_t)k || !kd_resize(&rows, cap, sizeof *rows) ||
                !kd_resize(&scores, cap * (size_t)k, sizeof *scores)) {
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
                break;
            }
        }
        long si = table_index(samples, c->fields[0], strlen(c->fields[0]));
        long mi = table_index(members, c->fields[1], strlen(c->fields[1]));
        if (si < 0 || mi < 0) {
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
            break;
        }
        csv_row *row = &rows[n_rows];
        row->sample = (size_t)si, row->member = (size_t)mi, row->line = c->line;
        row->first_score = n_rows * (size_t)k;
        st = row_scores(path, c, k, scores + row->first_score);
        n_rows++;
    }
    if (st == KDENS_OK && n_rows == 0)
        st = kd_fail(KDENS_E_FORMAT, "%s: no rows after the header", path);
    if (st != KDENS_OK) {
        free(rows);
        free(scores);
        return st;
    }
    *rows_out = rows;
    *n_rows_out = n_rows;
    *scores_out = scores;
    return KDENS_OK;
}

/* With fewer rows than samples x members, some sample has fewer rows than
 * there are members: the first such sample and a member it lacks, as an
 * error; O(rows + samples + members). */
static kdens_status report_gap(const char *path, const csv_row *rows, size_t n_rows,
                               const name_table *samples, const name_table *members)
{
    size_t *count = calloc(samples->n, sizeof *count);
    unsigned char *has = calloc(members->n, 1);
    if (!count || !has) {
        free(count);
        free(has);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    for (size_t r = 0; r < n_rows; r++)
        count[rows[r].sample]++;
    size_t gap = 0;
    while (gap + 1 < samples->n && count[gap] >= members->n)
        gap++;
    for (size_t r = 0; r < n_rows; r++)
        if (rows[r].sample == gap)
            has[rows[r].member] = 1;
    size_t m = 0;
    while (m + 1 < members->n && has[m])
        m++;
    kdens_status st = kd_fail(KDENS_E_FORMAT, "%s: sample '%s' has no row for member '%s'", path,
                              samples->names[gap], members->names[m]);
    free(count);
    free(has);
    return st;
}

/* Move the names into the predictions. */
static void adopt_names(name_table *t, char ***dst)
{
    *dst = t->names;
    t->names = NULL;
    t->n = 0;
}

kdens_status kdens_predictions_load_csv(const char *path, kdens_predictions **out)
{
    if (!path || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    char *data;
    size_t size;
    kdens_status st = kd_read_file(path, &data, &size);
    if (st != KDENS_OK)
        return st;
    st = kd_predictions_parse_csv(path, data, size, out);
    free(data);
    return st;
}

kdens_status kd_predictions_parse_csv(const char *path, const char *data, size_t size,
                                      kdens_predictions **out)
{
    kdens_status st;
    int k = 0;
    const char *nul = memchr(data, '\0', size);
    if (nul) /* text only: a name with a NUL in it could never be matched again */
        return kd_fail(KDENS_E_FORMAT, "%s: a NUL byte at offset %zu: not a CSV text", path,
                       (size_t)(nul - data));
    kd_csv c;
    kd_csv_open(&c, data, size);
    st = parse_header(path, &c, &k);
    name_table samples = {0}, members = {0};
    csv_row *rows = NULL;
    float *scores = NULL;
    size_t n_rows = 0;
    if (st == KDENS_OK)
        st = parse_rows(path, &c, k, &samples, &members, &rows, &n_rows, &scores);
    kd_csv_close(&c);
    kdens_predictions *pr = NULL;
    if (st == KDENS_OK && members.n > 100000)
        st = kd_fail(KDENS_E_FORMAT, "%s: %zu members", path, members.n);
    /* fewer rows than samples x members: name a gap before allocating the grid,
     * whose size would otherwise grow with the square of a malformed file */
    if (st == KDENS_OK && n_rows / members.n < samples.n)
        st = report_gap(path, rows, n_rows, &samples, &members);
    if (st == KDENS_OK)
        st = kd_predictions_new((int)members.n, samples.n, k, &pr);
    size_t *seen = NULL; /* line of each (member, sample) cell; 0 none */
    if (st == KDENS_OK && !(seen = calloc(members.n * samples.n, sizeof *seen)))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t r = 0; st == KDENS_OK && r < n_rows; r++) {
        size_t cell = rows[r].member * samples.n + rows[r].sample;
        if (seen[cell])
            st = kd_fail(KDENS_E_FORMAT, "%s:%zu: sample '%s' already has member '%s' (line %zu)",
                         path, rows[r].line, samples.names[rows[r].sample],
                         members.names[rows[r].member], seen[cell]);
        seen[cell] = rows[r].line;
        memcpy(pr->probs + cell * (size_t)k, scores + rows[r].first_score, sizeof(float) * k);
    }
    for (size_t cell = 0; st == KDENS_OK && cell < members.n * samples.n; cell++)
        if (!seen[cell])
            st = kd_fail(KDENS_E_FORMAT, "%s: sample '%s' has no row for member '%s'", path,
                         samples.names[cell % samples.n], members.names[cell / samples.n]);
    free(seen);
    free(rows);
    free(scores);
    if (st == KDENS_OK) {
        for (size_t i = 0; i < samples.n; i++)
            pr->labels[i] = -1;
        adopt_names(&samples, &pr->sample_names);
        adopt_names(&members, &pr->member_names);
    }
    table_free(&samples);
    table_free(&members);
    if (st != KDENS_OK) {
        kdens_predictions_free(pr);
        return st;
    }
    *out = pr;
    return KDENS_OK;
}

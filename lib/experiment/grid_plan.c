/* The plan of an experiment grid (docs/experiments.md): lines
 *   key = value[, value ...]      # comment
 * with one key per line; the axes take lists, the settings one value. */
#include "grid.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* A whole number or a finite real, nothing after it. */
static bool parse_double(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && !*end && errno == 0 && isfinite(*v);
}

static bool parse_int(const char *s, long lo, long hi, int *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi)
        return false;
    *v = (int)x;
    return true;
}

typedef enum { AXIS_INT, AXIS_REAL, AXIS_MODE } axis_kind;

/* The comma-separated values of an axis into its array. */
static kdens_status parse_axis(const char *where, const char *key, char *values, axis_kind kind,
                               double lo, double hi, void *out, int *n)
{
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(values, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (*n == KD_GRID_MAX_AXIS)
            return kd_fail(KDENS_E_FORMAT, "%s: %s: more than %d values", where, key,
                           KD_GRID_MAX_AXIS);
        bool ok;
        double v = 0;
        int iv = 0;
        if (kind == AXIS_MODE) {
            ok = kdens_distill_mode_from_name(tok, &((kdens_distill_mode *)out)[*n]) == KDENS_OK;
        } else if (kind == AXIS_INT) {
            ok = parse_int(tok, (long)lo, (long)hi, &iv);
            ((int *)out)[*n] = iv;
        } else {
            ok = parse_double(tok, &v) && v >= lo && v <= hi;
            ((double *)out)[*n] = v;
        }
        if (!ok)
            return kd_fail(KDENS_E_FORMAT, "%s: %s: '%s' is not a valid value", where, key, tok);
        (*n)++;
    }
    if (*n == 0)
        return kd_fail(KDENS_E_FORMAT, "%s: %s has no value", where, key);
    return KDENS_OK;
}

static kdens_status set_string(const char *where, const char *key, const char *value,
                               char **out)
{
    if (!*value || strchr(value, ','))
        return kd_fail(KDENS_E_FORMAT, "%s: %s takes one name, not '%s'", where, key, value);
    free(*out);
    return (*out = kd_strdup(value)) ? KDENS_OK : kd_fail(KDENS_E_NOMEM, "out of memory");
}

static kdens_status set_number(const char *where, const char *key, const char *value, double lo,
                               double hi, double *out)
{
    if (!parse_double(value, out) || *out < lo || *out > hi)
        return kd_fail(KDENS_E_FORMAT, "%s: %s: '%s' is not a number in [%g, %g]", where, key,
                       value, lo, hi);
    return KDENS_OK;
}

/* The settings that take one number: range, C type ('i' int, 'u' uint64_t,
 * 'z' size_t, 'd' double) and place. */
static const struct {
    const char *key;
    double lo, hi;
    char type;
    size_t offset;
} settings[] = {
    {"seeds", 1, 1000, 'i', offsetof(kdens_grid, seeds)},
    {"seed", 0, 9007199254740992.0, 'u', offsetof(kdens_grid, seed)},
    {"teacher_epochs", 1, 1e6, 'i', offsetof(kdens_grid, teacher_epochs)},
    {"student_epochs", 1, 1e6, 'i', offsetof(kdens_grid, student_epochs)},
    {"patience", 0, 1e6, 'i', offsetof(kdens_grid, patience)},
    {"batch", 1, 1e6, 'z', offsetof(kdens_grid, batch)},
    {"lr", 1e-12, 10, 'd', offsetof(kdens_grid, lr)},
    {"val_fraction", 1e-6, 0.999999, 'd', offsetof(kdens_grid, val_fraction)},
};

/* One `key = value` line. */
static kdens_status parse_line(kdens_grid *g, const char *where, const char *key, char *value)
{
    double v;
    kdens_status st = KDENS_OK;
    if (!strcmp(key, "dataset"))
        return set_string(where, key, value, &g->dataset);
    if (!strcmp(key, "arch") || !strcmp(key, "teacher_arch")) {
        st = set_string(where, key, value, &g->teacher_arch);
        if (st == KDENS_OK && !strcmp(key, "arch"))
            st = set_string(where, key, value, &g->student_arch);
        return st;
    }
    if (!strcmp(key, "student_arch"))
        return set_string(where, key, value, &g->student_arch);
    if (!strcmp(key, "teachers"))
        return parse_axis(where, key, value, AXIS_INT, 1, 1000, g->teachers, &g->n_teachers);
    if (!strcmp(key, "fraction"))
        return parse_axis(where, key, value, AXIS_REAL, 1e-9, 1, g->fractions, &g->n_fractions);
    if (!strcmp(key, "mode"))
        return parse_axis(where, key, value, AXIS_MODE, 0, 0, g->modes, &g->n_modes);
    if (!strcmp(key, "alpha"))
        return parse_axis(where, key, value, AXIS_REAL, 0, 1, g->alphas, &g->n_alphas);
    if (!strcmp(key, "temperature"))
        return parse_axis(where, key, value, AXIS_REAL, 1e-3, 1e3, g->temperatures,
                          &g->n_temperatures);
    int i = kd_table_find(settings, KD_ARRAY_LEN(settings), sizeof settings[0], key);
    if (i < 0)
        return kd_fail(KDENS_E_FORMAT, "%s: unknown key '%s' (docs/experiments.md)", where, key);
    st = set_number(where, key, value, settings[i].lo, settings[i].hi, &v);
    if (st == KDENS_OK && settings[i].type != 'd' && v != floor(v))
        st = kd_fail(KDENS_E_FORMAT, "%s: %s takes a whole number, not '%s'", where, key, value);
    if (st != KDENS_OK)
        return st;
    char *field = (char *)g + settings[i].offset;
    switch (settings[i].type) {
    case 'i': *(int *)(void *)field = (int)v; break;
    case 'u': *(uint64_t *)(void *)field = (uint64_t)v; break;
    case 'z': *(size_t *)(void *)field = (size_t)v; break;
    default: *(double *)(void *)field = v; break;
    }
    return KDENS_OK;
}

static kdens_status defaults(kdens_grid *g)
{
    g->modes[0] = KDENS_DISTILL_OUTPUT_AVG, g->n_modes = 1;
    g->alphas[0] = 0.5, g->n_alphas = 1;
    g->temperatures[0] = 1, g->n_temperatures = 1;
    g->seeds = 1, g->seed = 1;
    g->teacher_epochs = g->student_epochs = 10;
    g->patience = -1;
    g->batch = 128;
    g->lr = 0.005;
    g->val_fraction = 0.1;
    g->teacher_arch = kd_strdup("test");
    g->student_arch = kd_strdup("test");
    return g->teacher_arch && g->student_arch ? KDENS_OK : kd_fail(KDENS_E_NOMEM, "out of memory");
}

kdens_status kdens_grid_parse(const char *plan, kdens_grid **out)
{
    if (!plan || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_grid *g = calloc(1, sizeof *g);
    char *text = kd_strdup(plan);
    kdens_status st = g && text ? defaults(g) : kd_fail(KDENS_E_NOMEM, "out of memory");
    int line_no = 0;
    for (char *line = st == KDENS_OK ? text : NULL, *next; line && st == KDENS_OK;
         line = next) {
        next = strchr(line, '\n'); /* blank lines count: messages name the file's lines */
        if (next)
            *next++ = '\0';
        line_no++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        line = trim(line);
        if (!*line)
            continue;
        char where[32];
        snprintf(where, sizeof where, "plan line %d", line_no);
        char *eq = strchr(line, '=');
        if (!eq) {
            st = kd_fail(KDENS_E_FORMAT, "%s: '%s' is not `key = value`", where, line);
            break;
        }
        *eq = '\0';
        st = parse_line(g, where, trim(line), trim(eq + 1));
    }
    if (st == KDENS_OK && (!g->n_teachers || !g->n_fractions))
        st = kd_fail(KDENS_E_FORMAT, "the plan names no %s (e.g. `%s`)",
                     g->n_teachers ? "fraction" : "teachers",
                     g->n_teachers ? "fraction = 0.6, 0.8, 1.0" : "teachers = 2, 4, 8");
    free(text);
    if (st != KDENS_OK) {
        kdens_grid_free(g);
        return st;
    }
    *out = g;
    return KDENS_OK;
}

kdens_status kdens_grid_load(const char *path, kdens_grid **out)
{
    if (!path || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    char *text;
    kdens_status st = kd_read_text(path, KDENS_E_FORMAT, "a plan", &text);
    if (st != KDENS_OK)
        return st;
    st = kdens_grid_parse(text, out);
    free(text);
    return st;
}

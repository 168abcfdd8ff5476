/* The kdens tool's option parser, and the helpers every command shares. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const cli_choice cli_colors[] = {{"gray", KDENS_COLOR_GRAY}, {"rgb", KDENS_COLOR_RGB}, {NULL, 0}};
const cli_choice cli_schedules[] = {
    {"constant", KDENS_SCHEDULE_CONSTANT}, {"cosine", KDENS_SCHEDULE_COSINE}, {NULL, 0}};

int cli_fail(const char *what, kdens_status st)
{
    fprintf(stderr, "kdens: %s: %s: %s\n", what, kdens_status_str(st), kdens_errmsg());
    return 1;
}

/* mkdir -p.  The library makes the folders of its own workflows itself, but
 * has no public call for it, and the tool uses the public API only: this is
 * the tool's one routine that creates folders (every command calls it). */
int cli_mkdirs(const char *path)
{
    struct stat st;
    if (mkdir(path, 0755) == 0)
        return 0;
    if (errno == EEXIST) {
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
        return -1;
    }
    if (errno != ENOENT)
        return -1;
    /* a parent is missing: make it, then try again */
    char *parent = strdup(path);
    if (!parent)
        return -1;
    char *slash = strrchr(parent, '/');
    while (slash && slash > parent && slash[1] == '\0') { /* "a/b/": the parent of b */
        *slash = '\0';
        slash = strrchr(parent, '/');
    }
    int rc = -1;
    if (slash && slash > parent) {
        *slash = '\0';
        rc = cli_mkdirs(parent);
    } else {
        errno = ENOENT;
    }
    int err = errno;
    free(parent);
    errno = err;
    if (rc != 0)
        return -1;
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* ---- the option parser ---------------------------------------------------- */

static const cli_option *find_option(const cli_option *opts, const char *name, size_t len)
{
    for (const cli_option *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

/* The value's name in the option list: the table's, or the choices a|b. */
static void option_meta(const cli_option *o, char *buf, size_t size)
{
    buf[0] = '\0';
    if (o->meta) {
        snprintf(buf, size, "%s", o->meta);
    } else if (o->kind == CLI_CHOICE) {
        size_t at = 0;
        for (const cli_choice *c = o->choices; c->name && at < size; c++)
            at += (size_t)snprintf(buf + at, size - at, "%s%s", c == o->choices ? "" : "|",
                                   c->name);
    }
}

/* The option list, from the table: after an unknown option. */
static void list_options(const cli_command *cmd, const cli_option *opts)
{
    if (!opts->name) {
        fprintf(stderr, "kdens %s takes no options\n", cmd->name);
        return;
    }
    fprintf(stderr, "options of kdens %s ('kdens %s --help' explains them):\n", cmd->name,
            cmd->name);
    for (const cli_option *o = opts; o->name; o++) {
        char meta[64], left[128];
        option_meta(o, meta, sizeof meta);
        snprintf(left, sizeof left, "--%s%s%s", o->name, meta[0] ? " " : "", meta);
        fprintf(stderr, "  %-24s %s\n", left, o->help);
    }
}

/* The option's value out of its range: the bound it passes, as a message. */
static int out_of_range(const cli_command *cmd, const cli_option *o, const char *v, int above,
                        const char *bound, int open)
{
    fprintf(stderr, "kdens %s: --%s must be %s %s, got '%s'\n", cmd->name, o->name,
            above ? (open ? "less than" : "at most") : (open ? "greater than" : "at least"), bound,
            v);
    return 2;
}

/* A whole number of CLI_INT, CLI_SIZE or CLI_U64 into *o->dest. */
static int set_whole(const cli_command *cmd, const cli_option *o, const char *v)
{
    unsigned long long top; /* the type's largest value; its smallest is -top - 1 or 0 */
    switch (o->kind) {
    case CLI_INT: top = INT_MAX; break;
    case CLI_SIZE: top = SIZE_MAX; break;
    default: top = UINT64_MAX; break;
    }
    int is_signed = o->kind == CLI_INT;
    const char *p = v;
    int neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    char *end = NULL;
    errno = 0;
    unsigned long long mag = 0;
    if (isdigit((unsigned char)*p))
        mag = strtoull(p, &end, 10);
    if (!end || *end) {
        fprintf(stderr, "kdens %s: --%s wants a whole number, got '%s'\n", cmd->name, o->name, v);
        return 2;
    }
    int over = errno == ERANGE;
    char bound[64];
    /* below the type or the table's minimum */
    if (neg && mag > 0 && (!is_signed || over || mag > top + 1)) {
        if (o->min > 0 || (is_signed && o->min > INT_MIN))
            snprintf(bound, sizeof bound, "%.0f", o->min);
        else
            snprintf(bound, sizeof bound, "%d", is_signed ? INT_MIN : 0);
        return out_of_range(cmd, o, v, 0, bound, 0);
    }
    if (!neg && (over || mag > top)) {
        if (o->max < (double)top)
            snprintf(bound, sizeof bound, "%.0f", o->max);
        else
            snprintf(bound, sizeof bound, "%llu", top);
        return out_of_range(cmd, o, v, 1, bound, 0);
    }
    double x = neg ? -(double)mag : (double)mag;
    if (x < o->min || x > o->max) {
        snprintf(bound, sizeof bound, "%.0f", x < o->min ? o->min : o->max);
        return out_of_range(cmd, o, v, x > o->max, bound, 0);
    }
    switch (o->kind) {
    case CLI_INT: *(int *)o->dest = neg ? (int)-(long long)mag : (int)mag; break;
    case CLI_SIZE: *(size_t *)o->dest = (size_t)mag; break;
    default: *(uint64_t *)o->dest = (uint64_t)mag; break;
    }
    return 0;
}

/* A finite number of CLI_DOUBLE or CLI_FLOAT into *o->dest. */
static int set_real(const cli_command *cmd, const cli_option *o, const char *v)
{
    char *end = NULL;
    errno = 0;
    double x = 0;
    if (*v && !isspace((unsigned char)*v))
        x = strtod(v, &end);
    if (!end || end == v || *end) {
        fprintf(stderr, "kdens %s: --%s wants a number, got '%s'\n", cmd->name, o->name, v);
        return 2;
    }
    if (isnan(x) || (isinf(x) && errno != ERANGE)) {
        fprintf(stderr, "kdens %s: --%s wants a finite number, got '%s'\n", cmd->name, o->name,
                v);
        return 2;
    }
    double top = o->kind == CLI_FLOAT ? FLT_MAX : DBL_MAX;
    char bound[64];
    if (fabs(x) > top) { /* overflow: of strtod (ERANGE) or of a float */
        int above = x > 0;
        double b = above ? o->max : o->min;
        if (fabs(b) < top) {
            snprintf(bound, sizeof bound, "%g", b);
            return out_of_range(cmd, o, v, above, bound, 0);
        }
        fprintf(stderr, "kdens %s: --%s is out of range (of a %s), got '%s'\n", cmd->name,
                o->name, o->kind == CLI_FLOAT ? "float" : "double", v);
        return 2;
    }
    int open_min = (o->open & CLI_OPEN_MIN) != 0, open_max = (o->open & CLI_OPEN_MAX) != 0;
    if (x < o->min || (open_min && x == o->min)) {
        snprintf(bound, sizeof bound, "%g", o->min);
        return out_of_range(cmd, o, v, 0, bound, open_min);
    }
    if (x > o->max || (open_max && x == o->max)) {
        snprintf(bound, sizeof bound, "%g", o->max);
        return out_of_range(cmd, o, v, 1, bound, open_max);
    }
    if (o->kind == CLI_FLOAT)
        *(float *)o->dest = (float)x;
    else
        *(double *)o->dest = x;
    return 0;
}

/* n positive whole numbers separated by 'x' (HxW, HxWxC). */
static int parse_dims(const char *v, int n, int *dims)
{
    const char *p = v;
    for (int k = 0; k < n; k++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        char *end;
        errno = 0;
        long d = strtol(p, &end, 10);
        if (errno == ERANGE || d < 1 || d > INT_MAX)
            return -1;
        dims[k] = (int)d;
        if (*end != (k + 1 < n ? 'x' : '\0'))
            return -1;
        p = end + 1;
    }
    return 0;
}

static int set_value(const cli_command *cmd, const cli_option *o, const char *v, int argc)
{
    switch (o->kind) {
    case CLI_STRING:
        *(const char **)o->dest = v;
        return 0;
    case CLI_STRINGS: {
        cli_strings *list = o->dest;
        /* each value takes at least one argument: argc entries are enough */
        if (!list->items && !(list->items = malloc(sizeof(char *) * (size_t)argc))) {
            fprintf(stderr, "kdens: out of memory\n");
            return 1;
        }
        list->items[list->n++] = v;
        return 0;
    }
    case CLI_INT:
    case CLI_SIZE:
    case CLI_U64:
        return set_whole(cmd, o, v);
    case CLI_DOUBLE:
    case CLI_FLOAT:
        return set_real(cmd, o, v);
    case CLI_CHOICE: {
        for (const cli_choice *c = o->choices; c->name; c++)
            if (strcmp(c->name, v) == 0) {
                *(int *)o->dest = c->value;
                return 0;
            }
        char names[128] = "";
        size_t at = 0;
        for (const cli_choice *c = o->choices; c->name && at < sizeof names; c++)
            at += (size_t)snprintf(names + at, sizeof names - at, "%s%s",
                                   c == o->choices ? "" : c[1].name ? ", " : " or ", c->name);
        fprintf(stderr, "kdens %s: --%s wants %s, got '%s'\n", cmd->name, o->name, names, v);
        return 2;
    }
    case CLI_HW:
    case CLI_HWC: {
        int n = o->kind == CLI_HW ? 2 : 3, dims[3];
        if (parse_dims(v, n, dims) != 0) {
            fprintf(stderr, "kdens %s: --%s wants %s, got '%s'\n", cmd->name, o->name,
                    n == 2 ? "HxW" : "HxWxC", v);
            return 2;
        }
        memcpy(o->dest, dims, sizeof(int) * (size_t)n);
        return 0;
    }
    case CLI_FLAG:
        break;
    }
    return 2;
}

int cli_parse(const cli_command *cmd, const cli_option *opts, int argc, char **argv,
              const char **args, int max_args, int *n_args)
{
    int n = 0;
    if (n_args)
        *n_args = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(cmd->usage, stdout);
            return 0;
        }
        if (a[0] != '-') { /* a word: NAME, FILE */
            if (n < max_args) {
                args[n++] = a;
                if (n_args)
                    *n_args = n;
                continue;
            }
            fprintf(stderr, "kdens %s: unexpected argument '%s'\n", cmd->name, a);
            if (opts->name)
                list_options(cmd, opts);
            return 2;
        }
        const char *name = a[1] == '-' ? a + 2 : NULL, *eq = name ? strchr(name, '=') : NULL;
        const cli_option *o =
            name ? find_option(opts, name, eq ? (size_t)(eq - name) : strlen(name)) : NULL;
        if (!o) {
            fprintf(stderr, "kdens %s: unknown option '%.*s'\n", cmd->name,
                    eq ? (int)(eq - a) : (int)strlen(a), a);
            list_options(cmd, opts);
            return 2;
        }
        if (o->kind == CLI_FLAG) {
            if (eq) {
                fprintf(stderr, "kdens %s: --%s takes no value, got '%s'\n", cmd->name, o->name,
                        a);
                return 2;
            }
            *(int *)o->dest = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!v) {
            fprintf(stderr, "kdens %s: --%s needs a value\n", cmd->name, o->name);
            return 2;
        }
        int rc = set_value(cmd, o, v, argc);
        if (rc != 0)
            return rc;
    }
    return -1;
}

char *cli_path(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s", dir, name);
    return p;
}

kdens_status cli_arch(const char *arg, char *name, size_t name_size, char **spec)
{
    struct stat sb;
    *spec = NULL;
    if (stat(arg, &sb) != 0 || !S_ISREG(sb.st_mode)) { /* not a file: a built-in's name */
        if (strchr(arg, '/')) {
            fprintf(stderr, "kdens: %s: no such spec file\n", arg);
            return KDENS_E_IO;
        }
        snprintf(name, name_size, "%s", arg);
        return KDENS_OK;
    }
    FILE *f = fopen(arg, "rb");
    char *text = f && sb.st_size < (1 << 24) ? malloc((size_t)sb.st_size + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)sb.st_size, f) : 0;
    if (f)
        fclose(f);
    if (!text || got != (size_t)sb.st_size) {
        free(text);
        fprintf(stderr, "kdens: %s: cannot read the spec\n", arg);
        return KDENS_E_IO;
    }
    text[got] = '\0';
    *spec = text;
    return cli_arch_name(arg, name, name_size);
}

kdens_status cli_arch_name(const char *arg, char *name, size_t name_size)
{
    const char *base = strrchr(arg, '/');
    base = base ? base + 1 : arg;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(name, name_size, "%.*s", (int)len, base);
    return KDENS_OK;
}

kdens_status cli_workspace_arch(const char *arg, const char *workdir, const char *dataset,
                                char *name, size_t name_size)
{
    char *spec;
    kdens_status st = cli_arch(arg, name, name_size, &spec);
    if (st == KDENS_OK && spec)
        st = kdens_workspace_add_arch(workdir, dataset, name, spec);
    free(spec);
    return st;
}

void cli_log_elapsed(kdens_log_level level, const char *message, void *user)
{
    const struct timespec *t0 = user;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (level <= KDENS_LOG_INFO)
        fprintf(stderr, "[%7.1fs] %s\n",
                (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) * 1e-9, message);
}

kdens_status cli_limit(kdens_dataset **ds, size_t n, uint64_t seed)
{
    if (n == 0 || n >= kdens_dataset_count(*ds))
        return KDENS_OK;
    kdens_dataset *sub;
    kdens_status st = kdens_dataset_subset(*ds, 0, n, seed, &sub);
    if (st == KDENS_OK) {
        kdens_dataset_free(*ds);
        *ds = sub;
    }
    return st;
}

/* The one way the library builds file paths.  Each path is allocated to its
 * own length: a fixed buffer would cut a long path short, and a path cut
 * short names another file (a model saved, a registry row written, where
 * nobody looks).  The operating system, not the library, says how long a
 * path may be (ENAMETOOLONG from open or mkdir, with the whole path in the
 * message). */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>

/* Append part at a seam: the slashes on either side of it become exactly
 * one, so that "ws/" + "teachers.csv" and "ws" + "/teachers.csv" name the
 * same file, and a registry compares them as equal. */
static void put_part(kd_buf *b, const char *part)
{
    if (b->len == 0) { /* the first part keeps its slashes: "/" is the root */
        kd_buf_put(b, part, strlen(part));
        return;
    }
    while (*part == '/')
        part++;
    if (!*part || b->failed)
        return; /* an empty part adds nothing, not even a slash */
    while (b->len > 1 && b->data[b->len - 1] == '/')
        b->len--; /* the root's one slash stays */
    if (b->data[b->len - 1] != '/')
        kd_buf_put(b, "/", 1);
    kd_buf_put(b, part, strlen(part));
}

/* The text built in b, or NULL (with the message) when an allocation failed. */
static char *finish(kd_buf *b)
{
    if (!b->failed && !b->data)
        kd_buf_put(b, "", 0); /* every part was empty: the path is "" */
    if (b->failed) {
        kd_buf_free(b);
        kd_fail(KDENS_E_NOMEM, "out of memory building a path");
        return NULL;
    }
    return b->data;
}

static char *join_list(const char *first, va_list ap)
{
    kd_buf b = {0};
    put_part(&b, first);
    for (const char *part; (part = va_arg(ap, const char *)) != NULL;)
        put_part(&b, part);
    return finish(&b);
}

char *kd_path_join(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    char *path = join_list(first, ap);
    va_end(ap);
    return path;
}

char *kd_path_fmt(const char *dir, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap); /* the length first, then the text */
    va_end(ap);
    char *rest = n < 0 ? NULL : malloc((size_t)n + 1);
    if (!rest) { /* n < 0: a text beyond INT_MAX bytes, which no system opens */
        kd_fail(KDENS_E_NOMEM, "out of memory building a path");
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(rest, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (!dir)
        return rest;
    kd_buf b = {0};
    put_part(&b, dir);
    put_part(&b, rest);
    free(rest);
    return finish(&b);
}

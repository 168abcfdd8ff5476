/* The one CSV reader and writer of the library (RFC 4180): fields separated
 * by commas, a field quoted with "..." may hold commas, line breaks and ""
 * for a quote; rows end at LF or CRLF.  Manifests, vote files and the
 * registries all read and write through here. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

void kd_csv_open(kd_csv *c, const char *text, size_t len)
{
    memset(c, 0, sizeof *c);
    c->p = text;
    c->end = text + len;
    c->next_line = 1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* a UTF-8 byte-order mark */
        c->p += 3;
}

void kd_csv_close(kd_csv *c)
{
    kd_buf_free(&c->text);
    free(c->fields);
    free(c->offsets);
    memset(c, 0, sizeof *c);
}

static int fail(kd_csv *c, const char *why)
{
    c->error = why;
    return -1;
}

/* Record the start of a new field at the current end of the text buffer. */
static bool new_field(kd_csv *c)
{
    if (c->n_fields == c->cap) {
        size_t cap = kd_grown(c->cap, 16);
        if (!kd_resize(&c->offsets, cap, sizeof *c->offsets))
            return false;
        c->cap = cap;
    }
    c->offsets[c->n_fields++] = c->text.len;
    return true;
}

/* One field at c->p into the text buffer, NUL-terminated. */
static int read_field(kd_csv *c)
{
    const char *s = c->p, *end = c->end;
    if (!new_field(c))
        return fail(c, "out of memory");
    if (s < end && *s == '"') {
        for (s++;; s++) {
            if (s >= end)
                return fail(c, "an unterminated quote");
            if (*s == '"') {
                if (s + 1 < end && s[1] == '"') {
                    kd_buf_put(&c->text, "\"", 1);
                    s++;
                    continue;
                }
                s++;
                break;
            }
            if (*s == '\n')
                c->next_line++;
            if (*s == '\0')
                return fail(c, "a NUL byte");
            kd_buf_put(&c->text, s, 1);
        }
        if (s < end && *s != ',' && *s != '\n' && *s != '\r')
            return fail(c, "text after a closing quote");
    } else {
        for (; s < end && *s != ',' && *s != '\n' && *s != '\r'; s++) {
            if (*s == '"')
                return fail(c, "a quote inside a bare field");
            if (*s == '\0')
                return fail(c, "a NUL byte");
            kd_buf_put(&c->text, s, 1);
        }
    }
    kd_buf_put(&c->text, "", 1);
    c->p = s;
    return c->text.failed ? fail(c, "out of memory") : 0;
}

int kd_csv_next(kd_csv *c)
{
    c->n_fields = 0;
    c->text.len = 0;
    c->error = NULL;
    for (;;) { /* blank lines are skipped */
        if (c->p >= c->end)
            return 0;
        c->line = c->next_line;
        if (*c->p == '\r' && c->p + 1 < c->end && c->p[1] == '\n')
            c->p++;
        if (*c->p != '\n')
            break;
        c->p++;
        c->next_line++;
    }
    for (;;) {
        if (read_field(c) != 0)
            return -1;
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '\r') {
            if (c->p + 1 < c->end && c->p[1] != '\n')
                return fail(c, "a carriage return inside a row");
            c->p++;
        }
        if (c->p < c->end) /* the newline */
            c->p++;
        c->next_line++;
        break;
    }
    char **f = realloc(c->fields, sizeof *f * c->n_fields);
    if (!f)
        return fail(c, "out of memory");
    c->fields = f;
    for (size_t i = 0; i < c->n_fields; i++)
        f[i] = c->text.data + c->offsets[i];
    return 1;
}

void kd_csv_put_field(kd_buf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        kd_buf_put(b, s, strlen(s));
        return;
    }
    kd_buf_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"')
            kd_buf_put(b, "\"", 1);
        kd_buf_put(b, s, 1);
    }
    kd_buf_put(b, "\"", 1);
}

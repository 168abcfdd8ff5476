/* Shared helpers of the cmocka tests. */
#ifndef KD_TESTUTIL_H
#define KD_TESTUTIL_H

#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdbool.h>

#include "kdens.h"

#define ASSERT_OK(expr)                                                                   \
    do {                                                                                  \
        kdens_status st_ = (expr);                                                        \
        if (st_ != KDENS_OK)                                                              \
            fail_msg("%s -> %s: %s", #expr, kdens_status_str(st_), kdens_errmsg());      \
    } while (0)

#define ASSERT_STATUS(expr, want)                                                         \
    do {                                                                                  \
        kdens_status st_ = (expr);                                                        \
        if (st_ != (want))                                                                \
            fail_msg("%s -> %s (%s), expected %s", #expr, kdens_status_str(st_),          \
                     kdens_errmsg(), kdens_status_str(want));                             \
    } while (0)

/* The repository root (tests run from it, or KDENS_TEST_ROOT names it). */
static inline const char *tu_root(void)
{
    const char *r = getenv("KDENS_TEST_ROOT");
    return r && *r ? r : ".";
}

static inline const char *tu_build(void)
{
    const char *b = getenv("KDENS_BUILD");
    return b && *b ? b : "build";
}

/* dir/name in one of four rotating buffers (so a call may take several). */
static inline char *tu_join(const char *dir, const char *name)
{
    static char buf[4][4400];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static inline char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/kdens-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        free(path);
        fail_msg("mkdtemp failed");
    }
    return path;
}

static inline int tu_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tu_rm_rf(char *dir)
{
    if (dir)
        nftw(dir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* A small deterministic generator for test data (independent of the library's). */
static inline float tu_randn(uint64_t *s)
{
    double acc = 0;
    for (int i = 0; i < 12; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        acc += (double)(*s >> 11) * 0x1.0p-53;
    }
    return (float)(acc - 6.0);
}

static inline void tu_fill(float *x, size_t n, float scale, uint64_t seed)
{
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++)
        x[i] = scale * tu_randn(&s);
}

#endif

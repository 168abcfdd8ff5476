/* Allocation, byte buffers, whole-file reads and atomic writes (the CRC is crc32.c). */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Large buffers (activations, datasets) are aligned to 2 MiB and offered to
 * the kernel as huge pages: on a virtual machine each 4 KiB page fault costs
 * microseconds, and a 55 MB dataset would take 13,000 of them. */
#define KD_HUGE ((size_t)2 << 20)

void *kd_alloc_aligned(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    size_t align = bytes >= 2 * KD_HUGE ? KD_HUGE : 64;
    if (posix_memalign(&p, align, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == KD_HUGE)
        madvise(p, bytes & ~(KD_HUGE - 1), MADV_HUGEPAGE); /* advice only: failure is fine */
#endif
    return p;
}

void kd_free_aligned(void *p) { free(p); }

char *kd_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

uint64_t kd_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ---- byte buffers ---------------------------------------------------------- */

static bool buf_reserve(kd_buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void kd_buf_put(kd_buf *b, const void *data, size_t len)
{
    if (!buf_reserve(b, len))
        return;
    if (len) /* (data may be NULL for nothing) */
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void kd_buf_printf(kd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void kd_buf_u32(kd_buf *b, uint32_t v)
{
    unsigned char le[4];
    for (int i = 0; i < 4; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    kd_buf_put(b, le, 4);
}

void kd_buf_u64(kd_buf *b, uint64_t v)
{
    kd_buf_u32(b, (uint32_t)v);
    kd_buf_u32(b, (uint32_t)(v >> 32));
}

void kd_buf_free(kd_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

size_t kd_buf_export(const kd_buf *b, char *out, size_t size)
{
    if (out && size > 0) {
        size_t n = KD_MIN(b->len, size - 1);
        if (n)
            memcpy(out, b->data, n);
        out[n] = '\0';
    }
    return b->len;
}

/* ---- files ------------------------------------------------------------------ */

kdens_status kd_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kd_fail(KDENS_E_IO, "%s: cannot open: %s", path, strerror(errno));
    /* one allocation of the file's size when it is known (regular files) */
    struct stat st;
    kd_buf b = {0};
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return kd_fail(KDENS_E_IO, "%s: is a folder, not a file", path);
    }
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        b.cap = (size_t)st.st_size + 1;
        if (!(b.data = malloc(b.cap)))
            b.failed = true;
    }
    char chunk[65536];
    size_t n;
    while (!b.failed) {
        if (b.cap > b.len + 1) { /* read straight into the buffer */
            n = fread(b.data + b.len, 1, b.cap - 1 - b.len, f);
            b.len += n;
            b.data[b.len] = '\0';
        } else {
            n = fread(chunk, 1, sizeof chunk, f);
            kd_buf_put(&b, chunk, n);
        }
        if (n == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        kd_buf_free(&b);
        return kd_fail(KDENS_E_IO, "%s: read error", path);
    }
    if (b.failed) {
        kd_buf_free(&b);
        return kd_fail(KDENS_E_NOMEM, "%s: out of memory reading the file", path);
    }
    if (!b.data) { /* empty file */
        b.data = calloc(1, 1);
        if (!b.data)
            return kd_fail(KDENS_E_NOMEM, "%s: out of memory", path);
    }
    *data = b.data;
    *len = b.len;
    return KDENS_OK;
}

kdens_status kd_read_text(const char *path, kdens_status status, const char *what, char **text)
{
    size_t len;
    kdens_status st = kd_read_file(path, text, &len);
    if (st == KDENS_OK && strlen(*text) != len) {
        free(*text);
        *text = NULL;
        st = kd_fail(status, "%s: a NUL byte in %s", path, what);
    }
    return st;
}

static kdens_status write_all(int fd, const char *path, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return kd_fail(KDENS_E_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return KDENS_OK;
}

/* Make a rename durable: fsync the folder that holds path (".", or "/" for a
 * file at the root).  Best effort, as the rename has happened: the new file
 * is in place whatever this step meets. */
static void fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? kd_strdup(".")
                       : strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

kdens_status kd_write_file_atomic(const char *path, const void *data, size_t len)
{
    char *tmp = kd_path_fmt(NULL, "%s.tmp.XXXXXX", path);
    if (!tmp)
        return KDENS_E_NOMEM;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kdens_status st = kd_fail(KDENS_E_IO, "%s: cannot create a temporary file: %s", path,
                                  strerror(errno));
        free(tmp);
        return st;
    }
    kdens_status st = write_all(fd, path, data, len);
    if (st == KDENS_OK && fsync(fd) != 0)
        st = kd_fail(KDENS_E_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && st == KDENS_OK)
        st = kd_fail(KDENS_E_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == KDENS_OK) {
        chmod(tmp, 0644);
        if (rename(tmp, path) != 0)
            st = kd_fail(KDENS_E_IO, "%s: rename failed: %s", path, strerror(errno));
    }
    if (st != KDENS_OK)
        unlink(tmp);
    else
        fsync_parent(path);
    free(tmp);
    return st;
}

int kd_mkdirs(const char *path)
{
    char *buf = kd_strdup(path); /* cut at each slash in turn */
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    int rc = 0;
    for (char *p = buf + (*buf != '\0'); *p && rc == 0; p++) /* past a leading '/' */
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                rc = -1;
            *p = '/';
        }
    if (rc == 0 && mkdir(buf, 0755) != 0 && errno != EEXIST)
        rc = -1;
    int err = errno;
    free(buf); /* may set errno before POSIX 2024: keep mkdir's */
    errno = err;
    return rc;
}

bool kd_resize(void *items_ptr, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return false;
    void *items;
    memcpy(&items, items_ptr, sizeof items); /* a T * read as the void * it converts to */
    size_t bytes = count * size;
    void *grown = realloc(items, bytes ? bytes : 1);
    if (!grown)
        return false;
    memcpy(items_ptr, &grown, sizeof grown);
    return true;
}

/* Status codes, thread-local messages, version, callbacks. */
#include "core.h"

#include <stdio.h>
#include <string.h>

#define KD_STR2(x) #x
#define KD_STR(x) KD_STR2(x)

static _Thread_local char kd_message[1024];

const char *kdens_version(void)
{
    return KD_STR(KDENS_VERSION_MAJOR) "." KD_STR(KDENS_VERSION_MINOR) "." KD_STR(
        KDENS_VERSION_PATCH);
}

int kdens_version_number(void) { return KDENS_VERSION_NUMBER; }

const char *kdens_errmsg(void) { return kd_message; }

const char *kdens_status_str(kdens_status status)
{
    switch (status) {
    case KDENS_OK: return "ok";
    case KDENS_E_ARG: return "invalid argument";
    case KDENS_E_NOMEM: return "out of memory";
    case KDENS_E_IO: return "i/o error";
    case KDENS_E_FORMAT: return "bad file format";
    case KDENS_E_VERSION: return "unsupported format version";
    case KDENS_E_SHAPE: return "shape mismatch";
    case KDENS_E_SPEC: return "bad architecture spec";
    case KDENS_E_NOTFOUND: return "not found";
    case KDENS_E_NUMERIC: return "numeric error";
    case KDENS_E_STATE: return "invalid state";
    case KDENS_E_UNSUPPORTED: return "not in this build";
    }
    return "unknown status";
}

kdens_status kd_fail(kdens_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kd_message, sizeof kd_message, fmt, ap);
    va_end(ap);
    return status;
}

kdens_status kdens_set_error(kdens_status status, const char *fmt, ...)
{
    if (!fmt) {
        kd_message[0] = '\0';
        return status;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kd_message, sizeof kd_message, fmt, ap);
    va_end(ap);
    return status;
}

kdens_status kd_fail_context(kdens_status status, const char *fmt, ...)
{
    char old[sizeof kd_message];
    memcpy(old, kd_message, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(kd_message, sizeof kd_message, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : KD_MIN((size_t)n, sizeof kd_message - 1);
    size_t room = sizeof kd_message - used;
    if (room > 3) {
        memcpy(kd_message + used, ": ", 2);
        size_t copy = KD_MIN(strlen(old), room - 3);
        memcpy(kd_message + used + 2, old, copy);
        kd_message[used + 2 + copy] = '\0';
    }
    return status;
}

static kdens_log_fn log_fn;
static void *log_user;
static kdens_progress_fn progress_fn;
static void *progress_user;

void kdens_set_log_callback(kdens_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void kdens_set_progress_callback(kdens_progress_fn fn, void *user)
{
    progress_fn = fn;
    progress_user = user;
}

void kd_log(kdens_log_level level, const char *fmt, ...)
{
    if (!log_fn)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_fn(level, line, log_user);
}

void kd_progress(const char *task, uint64_t done, uint64_t total)
{
    if (progress_fn)
        progress_fn(task, done, total, progress_user);
}

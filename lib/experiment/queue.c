/* A work queue over the ranks of a communicator: rank 0 holds the jobs and
 * hands them out one at a time to whichever rank asks, the others do them
 * and send their results back, so that only rank 0 needs the workspace.
 *
 * Messages (each a byte string):
 *   up   (worker -> 0): u32 kind (UP_READY, UP_RESULT, UP_FAILED), u64 job,
 *                        then the result, or u32 status + the message
 *   down (0 -> worker): u32 kind (DOWN_JOB, DOWN_STOP), u64 job, the job */
#include "experiment.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { TAG_UP = 1, TAG_DOWN = 2 };
enum { UP_READY = 0, UP_RESULT = 1, UP_FAILED = 2 };
enum { DOWN_STOP = 0, DOWN_JOB = 1 };
#define HEAD (4 + 8)

static void put_head(kd_buf *b, uint32_t kind, uint64_t job)
{
    kd_buf_u32(b, kind);
    kd_buf_u64(b, job);
}

static bool get_head(const uint8_t *m, size_t len, uint32_t *kind, uint64_t *job)
{
    if (len < HEAD)
        return false;
    memcpy(kind, m, 4);
    memcpy(job, m + 4, 8);
    return true;
}

/* A worker: ask, do, answer, until told to stop. */
static kdens_status serve(kdens_comm *c, const kd_queue_ops *ops, void *user)
{
    kd_buf up = {0};
    put_head(&up, UP_READY, 0);
    kdens_status st = up.failed ? kd_fail(KDENS_E_NOMEM, "out of memory") : KDENS_OK;
    while (st == KDENS_OK) {
        st = kd_comm_send(c, 0, TAG_UP, up.data, up.len);
        void *msg = NULL;
        size_t len = 0;
        int from;
        if (st == KDENS_OK)
            st = kd_comm_recv(c, TAG_DOWN, &msg, &len, &from);
        uint32_t kind = 0;
        uint64_t job = 0;
        if (st == KDENS_OK && !get_head(msg, len, &kind, &job))
            st = kd_fail(KDENS_E_IO, "a work message of %zu bytes is too short", len);
        if (st != KDENS_OK || kind == DOWN_STOP) {
            free(msg);
            break;
        }
        kd_buf result = {0};
        kdens_status done = ops->work(user, (const uint8_t *)msg + HEAD, len - HEAD, &result);
        if (done == KDENS_OK && result.failed)
            done = kd_fail(KDENS_E_NOMEM, "out of memory for a result");
        free(msg);
        up.len = 0;
        if (done == KDENS_OK) {
            put_head(&up, UP_RESULT, job);
            kd_buf_put(&up, result.data, result.len);
        } else {
            put_head(&up, UP_FAILED, job);
            kd_buf_u32(&up, (uint32_t)done);
            kd_buf_printf(&up, "%s", kdens_errmsg());
        }
        kd_buf_free(&result);
        if (up.failed)
            st = kd_fail(KDENS_E_NOMEM, "out of memory for a result");
    }
    kd_buf_free(&up);
    return st;
}

/* Rank 0: hand out every job, take every result; after a failure no new
 * job goes out, the running ones finish. */
static kdens_status lead(kdens_comm *c, const kd_buf *jobs, size_t n, const kd_queue_ops *ops,
                         void *user)
{
    int active = kdens_comm_size(c) - 1;
    size_t next = 0;
    kdens_status failure = KDENS_OK, st = KDENS_OK;
    char why[1024] = "";
    kd_buf down = {0};
    while (active > 0 && st == KDENS_OK) {
        void *msg = NULL;
        size_t len = 0;
        int from = -1;
        uint32_t kind = 0;
        uint64_t job = 0;
        st = kd_comm_recv(c, TAG_UP, &msg, &len, &from);
        if (st == KDENS_OK && (!get_head(msg, len, &kind, &job) || (kind != UP_READY &&
                                                                    job >= n)))
            st = kd_fail(KDENS_E_IO, "rank %d sent a malformed message (%zu bytes)", from, len);
        const uint8_t *body = msg ? (const uint8_t *)msg + HEAD : NULL;
        if (st == KDENS_OK && kind == UP_RESULT && failure == KDENS_OK) {
            failure = ops->done(user, (size_t)job, body, len - HEAD);
            if (failure != KDENS_OK)
                snprintf(why, sizeof why, "%s", kdens_errmsg());
        } else if (st == KDENS_OK && kind == UP_FAILED && failure == KDENS_OK) {
            uint32_t code = KDENS_E_STATE;
            if (len >= HEAD + 4)
                memcpy(&code, body, 4);
            failure = code ? (kdens_status)code : KDENS_E_STATE;
            snprintf(why, sizeof why, "rank %d, job %llu: %.*s", from, (unsigned long long)job,
                     (int)(len >= HEAD + 4 ? len - HEAD - 4 : 0), (const char *)body + 4);
        }
        free(msg);
        if (st != KDENS_OK)
            break;
        down.len = 0;
        bool give = next < n && failure == KDENS_OK;
        put_head(&down, give ? DOWN_JOB : DOWN_STOP, give ? next : 0);
        if (give)
            kd_buf_put(&down, jobs[next].data, jobs[next].len);
        st = down.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                         : kd_comm_send(c, from, TAG_DOWN, down.data, down.len);
        if (give)
            next++;
        else
            active--;
    }
    kd_buf_free(&down);
    if (st == KDENS_OK && failure != KDENS_OK)
        st = kd_fail(failure, "%s", why);
    return st;
}

kdens_status kd_queue_run(kdens_comm *c, const kd_buf *jobs, size_t n, const kd_queue_ops *ops,
                          void *user)
{
    kdens_status st = kdens_comm_rank(c) == 0 ? lead(c, jobs, n, ops, user)
                                              : serve(c, ops, user);
    return kdens_comm_agree(c, st);
}

/* ---- reading the messages -------------------------------------------------------- */

bool kd_msg_get(kd_msg *m, void *out, size_t len)
{
    if (m->failed || m->len - m->at < len) {
        m->failed = true;
        return false;
    }
    memcpy(out, m->data + m->at, len);
    m->at += len;
    return true;
}

const uint8_t *kd_msg_bytes(kd_msg *m, size_t *len)
{
    uint64_t n = 0;
    if (!kd_msg_get(m, &n, 8) || m->len - m->at < n) {
        m->failed = true;
        return NULL;
    }
    const uint8_t *p = m->data + m->at;
    m->at += (size_t)n;
    *len = (size_t)n;
    return p;
}

void kd_msg_put_bytes(kd_buf *b, const void *data, size_t len)
{
    kd_buf_u64(b, (uint64_t)len);
    kd_buf_put(b, data, len);
}

/* ---- a model trained on another rank, on its way back --------------------------- */

char *kd_temp_log(void)
{
    const char *dir = getenv("TMPDIR");
    char *path = kd_path_join(dir && *dir ? dir : "/tmp", "kdens-log-XXXXXX", NULL);
    int fd = path ? mkstemp(path) : -1;
    if (fd < 0) {
        free(path);
        return NULL;
    }
    close(fd);
    return path;
}

kdens_status kd_trained_pack(const kdens_model *m, const double loss[3], const double acc[3],
                             const char *log_path, kd_buf *result)
{
    char *text = NULL;
    size_t text_len = 0;
    kdens_status st = kd_read_file(log_path, &text, &text_len);
    if (st != KDENS_OK)
        return st;
    kd_buf file = {0};
    kd_model_serialize(m, &file);
    kd_buf_put(result, loss, sizeof(double) * 3);
    kd_buf_put(result, acc, sizeof(double) * 3);
    kd_msg_put_bytes(result, file.data, file.len);
    kd_msg_put_bytes(result, text, text_len);
    st = file.failed || result->failed ? kd_fail(KDENS_E_NOMEM, "out of memory") : KDENS_OK;
    kd_buf_free(&file);
    free(text);
    return st;
}

kdens_status kd_trained_write(const uint8_t *result, size_t len, const char *model_path,
                              const char *log_path, double loss[3], double acc[3])
{
    kd_msg m = {result, len, 0, false};
    size_t model_len = 0, log_len = 0;
    kd_msg_get(&m, loss, sizeof(double) * 3);
    kd_msg_get(&m, acc, sizeof(double) * 3);
    const uint8_t *model = kd_msg_bytes(&m, &model_len);
    const uint8_t *log = kd_msg_bytes(&m, &log_len);
    if (m.failed || m.at != m.len)
        return kd_fail(KDENS_E_FORMAT, "a malformed result for %s (%zu bytes)", model_path, len);
    kdens_model *check = NULL; /* a model that loads, before anything is written */
    kdens_status st = kd_model_load_memory(model_path, (const char *)model, model_len, &check);
    kdens_model_free(check);
    if (st == KDENS_OK)
        st = kd_write_file_atomic(log_path, log, log_len);
    if (st == KDENS_OK)
        st = kd_write_file_atomic(model_path, model, model_len);
    return st;
}

/* Communicators without MPI (the MPI transport has tests/mpi/): what
 * kdens_comm_create accepts and refuses, a communicator of one rank or none
 * (NULL) doing nothing, and the calls reaching the transport's callbacks as
 * they were made -- through a fake in-process transport that counts them;
 * then agreeing on failures and refusing ranks that differ, with ranks as
 * threads of this process (a transport of shared memory). */
#include "testutil.h"

#include <pthread.h>

#include "core/core.h"

typedef struct fake {
    int rank, ranks;
    int calls;     /* allreduce, broadcast, send, recv */
    int destroyed; /* destroy */
    int aborted;   /* abort's code, or -1 */
    int recv_from; /* the sender recv reports */
    void *last_buf;
    size_t last_n;
} fake;

static int f_rank(void *ctx) { return ((fake *)ctx)->rank; }
static int f_ranks(void *ctx) { return ((fake *)ctx)->ranks; }
static kdens_status f_allreduce_float(void *ctx, float *v, size_t n)
{
    fake *f = ctx;
    f->calls++;
    f->last_buf = v;
    f->last_n = n;
    return KDENS_OK;
}
static kdens_status f_allreduce_double(void *ctx, double *v, size_t n)
{
    fake *f = ctx;
    f->calls++;
    f->last_buf = v;
    f->last_n = n;
    return KDENS_OK;
}
static kdens_status f_broadcast(void *ctx, void *buf, size_t bytes, int root)
{
    fake *f = ctx;
    (void)root;
    f->calls++;
    f->last_buf = buf;
    f->last_n = bytes;
    return KDENS_OK;
}
static kdens_status f_send(void *ctx, int to, int tag, const void *buf, size_t bytes)
{
    fake *f = ctx;
    (void)to;
    (void)tag;
    f->calls++;
    f->last_buf = (void *)buf;
    f->last_n = bytes;
    return KDENS_OK;
}
static kdens_status f_recv(void *ctx, int tag, void **buf, size_t *bytes, int *from)
{
    fake *f = ctx;
    (void)tag;
    f->calls++;
    *buf = malloc(3);
    if (!*buf)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory");
    memcpy(*buf, "abc", 3);
    *bytes = 3;
    *from = f->recv_from;
    return KDENS_OK;
}
static void f_abort(void *ctx, int code) { ((fake *)ctx)->aborted = code; }
static void f_destroy(void *ctx) { ((fake *)ctx)->destroyed++; }

static kdens_comm_ops fake_ops(void)
{
    kdens_comm_ops ops = {
        .size = sizeof ops,
        .rank = f_rank,
        .ranks = f_ranks,
        .allreduce_float = f_allreduce_float,
        .allreduce_double = f_allreduce_double,
        .broadcast = f_broadcast,
        .send = f_send,
        .recv = f_recv,
        .abort = f_abort,
        .destroy = f_destroy,
    };
    return ops;
}

static void test_create_refuses(void **state)
{
    (void)state;
    fake f = {.rank = 0, .ranks = 1, .aborted = -1};
    kdens_comm_ops ops = fake_ops();
    kdens_comm *c = NULL;
    ASSERT_STATUS(kdens_comm_create(NULL, &f, &c), KDENS_E_ARG);
    ASSERT_STATUS(kdens_comm_create(&ops, &f, NULL), KDENS_E_ARG);
    /* a size that does not reach the required operations */
    ops.size = offsetof(kdens_comm_ops, recv);
    ASSERT_STATUS(kdens_comm_create(&ops, &f, &c), KDENS_E_ARG);
    assert_non_null(strstr(kdens_errmsg(), "too short"));
    assert_null(c);
    /* each required operation missing */
    const size_t required[] = {
        offsetof(kdens_comm_ops, rank),      offsetof(kdens_comm_ops, ranks),
        offsetof(kdens_comm_ops, allreduce_float), offsetof(kdens_comm_ops, allreduce_double),
        offsetof(kdens_comm_ops, broadcast), offsetof(kdens_comm_ops, send),
        offsetof(kdens_comm_ops, recv),
    };
    for (size_t k = 0; k < KD_ARRAY_LEN(required); k++) {
        ops = fake_ops();
        memset((char *)&ops + required[k], 0, sizeof(void (*)(void)));
        c = (kdens_comm *)&c;
        ASSERT_STATUS(kdens_comm_create(&ops, &f, &c), KDENS_E_ARG);
        assert_non_null(strstr(kdens_errmsg(), "needs"));
        assert_null(c);
    }
    /* positions that are none */
    const int bad[][2] = {{0, 0}, {-1, 2}, {2, 2}, {5, 3}, {0, -1}};
    ops = fake_ops();
    for (size_t k = 0; k < KD_ARRAY_LEN(bad); k++) {
        f.rank = bad[k][0];
        f.ranks = bad[k][1];
        ASSERT_STATUS(kdens_comm_create(&ops, &f, &c), KDENS_E_ARG);
        assert_non_null(strstr(kdens_errmsg(), "not a valid position"));
        assert_null(c);
    }
    assert_int_equal(f.destroyed, 0);
    assert_int_equal(f.calls, 0);
}

/* An older caller's operations: without abort and destroy. */
static void test_short_ops(void **state)
{
    (void)state;
    fake f = {.rank = 1, .ranks = 2, .aborted = -1};
    kdens_comm_ops ops = fake_ops();
    ops.size = offsetof(kdens_comm_ops, abort);
    kdens_comm *c = NULL;
    ASSERT_OK(kdens_comm_create(&ops, &f, &c));
    assert_int_equal(kdens_comm_rank(c), 1);
    assert_int_equal(kdens_comm_size(c), 2);
    kd_comm_abort(c, 3);
    assert_int_equal(f.aborted, -1);
    kdens_comm_free(c);
    assert_int_equal(f.destroyed, 0);
}

/* One rank: every collective does nothing, without calling the transport. */
static void test_alone(void **state)
{
    (void)state;
    fake f = {.rank = 0, .ranks = 1, .aborted = -1};
    kdens_comm_ops ops = fake_ops();
    kdens_comm *c = NULL;
    ASSERT_OK(kdens_comm_create(&ops, &f, &c));
    assert_int_equal(kdens_comm_rank(c), 0);
    assert_int_equal(kdens_comm_size(c), 1);
    float v[3] = {1, 2, 3};
    double d[2] = {4, 5};
    ASSERT_OK(kd_comm_allreduce_float(c, v, 3));
    ASSERT_OK(kd_comm_allreduce_double(c, d, 2));
    assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3 && d[0] == 4 && d[1] == 5);
    char bytes[4] = "xyz";
    ASSERT_OK(kd_comm_broadcast(c, bytes, 4, 0));
    assert_string_equal(bytes, "xyz");
    kd_buf b = {0};
    kd_buf_put(&b, "blob", 4);
    ASSERT_OK(kd_comm_broadcast_blob(c, &b, 0));
    assert_int_equal(b.len, 4);
    kd_buf_free(&b);
    ASSERT_OK(kdens_comm_agree(c, KDENS_OK));
    kdens_set_error(KDENS_E_IO, "disk full");
    ASSERT_STATUS(kdens_comm_agree(c, KDENS_E_IO), KDENS_E_IO);
    assert_string_equal(kdens_errmsg(), "disk full");
    ASSERT_OK(kdens_comm_check_same(c, "anything"));
    void *buf = NULL;
    size_t n = 0;
    int from = -1;
    ASSERT_STATUS(kd_comm_recv(c, 1, &buf, &n, &from), KDENS_E_STATE);
    ASSERT_STATUS(kd_comm_send(c, 0, 1, "x", 1), KDENS_E_ARG);
    kd_comm_abort(c, 2);
    assert_int_equal(f.aborted, -1);
    assert_int_equal(f.calls, 0);
    kdens_comm_free(c);
    assert_int_equal(f.destroyed, 1);
}

/* No communicator at all is one process alone too. */
static void test_null_comm(void **state)
{
    (void)state;
    assert_int_equal(kdens_comm_rank(NULL), 0);
    assert_int_equal(kdens_comm_size(NULL), 1);
    kdens_comm_free(NULL);
    float v = 7;
    ASSERT_OK(kd_comm_allreduce_float(NULL, &v, 1));
    assert_true(v == 7);
    ASSERT_OK(kd_comm_broadcast(NULL, &v, sizeof v, 0));
    ASSERT_STATUS(kdens_comm_agree(NULL, KDENS_E_SHAPE), KDENS_E_SHAPE);
    ASSERT_OK(kdens_comm_check_same(NULL, "x"));
    void *buf = NULL;
    size_t n = 0;
    int from = -1;
    ASSERT_STATUS(kd_comm_recv(NULL, 1, &buf, &n, &from), KDENS_E_STATE);
    ASSERT_STATUS(kd_comm_send(NULL, 1, 1, "x", 1), KDENS_E_ARG);
    kd_comm_abort(NULL, 1);
}

/* Several ranks: the calls reach the transport as made; empty ones do not. */
static void test_calls_reach_the_transport(void **state)
{
    (void)state;
    fake f = {.rank = 0, .ranks = 3, .aborted = -1, .recv_from = 2};
    kdens_comm_ops ops = fake_ops();
    kdens_comm *c = NULL;
    ASSERT_OK(kdens_comm_create(&ops, &f, &c));
    float v[5] = {0};
    double d[2] = {0};
    ASSERT_OK(kd_comm_allreduce_float(c, v, 5));
    assert_true(f.calls == 1 && f.last_buf == v && f.last_n == 5);
    ASSERT_OK(kd_comm_allreduce_double(c, d, 2));
    assert_true(f.calls == 2 && f.last_buf == d && f.last_n == 2);
    ASSERT_OK(kd_comm_allreduce_float(c, v, 0));
    ASSERT_OK(kd_comm_broadcast(c, v, 0, 1));
    assert_int_equal(f.calls, 2);
    ASSERT_OK(kd_comm_broadcast(c, v, 8, 1));
    assert_true(f.calls == 3 && f.last_n == 8);
    ASSERT_OK(kd_comm_send(c, 2, 7, "hello", 5));
    assert_true(f.calls == 4 && f.last_n == 5);
    ASSERT_STATUS(kd_comm_send(c, 3, 7, "hello", 5), KDENS_E_ARG);
    ASSERT_STATUS(kd_comm_send(c, -1, 7, "hello", 5), KDENS_E_ARG);
    assert_int_equal(f.calls, 4);
    void *buf = NULL;
    size_t n = 0;
    int from = -1;
    ASSERT_OK(kd_comm_recv(c, 7, &buf, &n, &from));
    assert_true(n == 3 && from == 2 && memcmp(buf, "abc", 3) == 0);
    free(buf);
    /* a transport that names this rank, or none, as the sender */
    const int senders[] = {0, 3, -1};
    for (size_t k = 0; k < KD_ARRAY_LEN(senders); k++) {
        f.recv_from = senders[k];
        buf = (void *)1;
        ASSERT_STATUS(kd_comm_recv(c, 7, &buf, &n, &from), KDENS_E_IO);
        assert_null(buf);
    }
    kd_comm_abort(c, 4);
    assert_int_equal(f.aborted, 4);
    kdens_comm_free(c);
    assert_int_equal(f.destroyed, 1);
}

static void test_set_error(void **state)
{
    (void)state;
    assert_int_equal(kdens_set_error(KDENS_E_IO, "disk %s at %d%%", "full", 100), KDENS_E_IO);
    assert_string_equal(kdens_errmsg(), "disk full at 100%");
    char long_text[3000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    assert_int_equal(kdens_set_error(KDENS_E_STATE, "%s", long_text), KDENS_E_STATE);
    assert_true(strlen(kdens_errmsg()) > 500 && strlen(kdens_errmsg()) < sizeof long_text - 1);
    assert_int_equal(kdens_set_error(KDENS_OK, NULL), KDENS_OK);
    assert_string_equal(kdens_errmsg(), "");
}

/* ---- ranks as threads ------------------------------------------------------ */

enum { HUB_RANKS = 3 };

typedef struct message {
    struct message *next;
    int from, tag;
    size_t bytes;
    char data[];
} message;

/* What the threads share: a barrier for the collectives, the buffers they
 * expose to each other, and a mailbox per rank. */
typedef struct hub {
    pthread_barrier_t barrier;
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    void *exposed[HUB_RANKS];
    message *inbox[HUB_RANKS];
} hub;

typedef struct thread_rank {
    hub *h;
    int rank;
    kdens_status (*body)(kdens_comm *c, int rank, char *out, size_t out_size);
    kdens_status result;
    char message[512];
} thread_rank;

static int t_rank(void *ctx) { return ((thread_rank *)ctx)->rank; }
static int t_ranks(void *ctx)
{
    (void)ctx;
    return HUB_RANKS;
}

#define T_ALLREDUCE(name, type)                                                   \
    static kdens_status name(void *ctx, type *v, size_t n)                        \
    {                                                                             \
        thread_rank *t = ctx;                                                     \
        type *sum = malloc((n ? n : 1) * sizeof *sum);                            \
        t->h->exposed[t->rank] = v;                                               \
        pthread_barrier_wait(&t->h->barrier);                                     \
        for (size_t i = 0; sum && i < n; i++) {                                   \
            sum[i] = ((type *)t->h->exposed[0])[i];                               \
            for (int r = 1; r < HUB_RANKS; r++)                                   \
                sum[i] += ((type *)t->h->exposed[r])[i];                          \
        }                                                                         \
        pthread_barrier_wait(&t->h->barrier);                                     \
        if (sum)                                                                  \
            memcpy(v, sum, n * sizeof *sum);                                      \
        free(sum);                                                                \
        return sum ? KDENS_OK : kdens_set_error(KDENS_E_NOMEM, "out of memory");  \
    }
T_ALLREDUCE(t_allreduce_float, float)
T_ALLREDUCE(t_allreduce_double, double)

static kdens_status t_broadcast(void *ctx, void *buf, size_t bytes, int root)
{
    thread_rank *t = ctx;
    if (t->rank == root)
        t->h->exposed[root] = buf;
    pthread_barrier_wait(&t->h->barrier);
    if (t->rank != root)
        memcpy(buf, t->h->exposed[root], bytes);
    pthread_barrier_wait(&t->h->barrier);
    return KDENS_OK;
}

static kdens_status t_send(void *ctx, int to, int tag, const void *buf, size_t bytes)
{
    thread_rank *t = ctx;
    message *m = malloc(sizeof *m + bytes);
    if (!m)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory");
    m->next = NULL;
    m->from = t->rank;
    m->tag = tag;
    m->bytes = bytes;
    if (bytes)
        memcpy(m->data, buf, bytes);
    pthread_mutex_lock(&t->h->lock);
    message **end = &t->h->inbox[to];
    while (*end)
        end = &(*end)->next;
    *end = m;
    pthread_cond_broadcast(&t->h->arrived);
    pthread_mutex_unlock(&t->h->lock);
    return KDENS_OK;
}

static kdens_status t_recv(void *ctx, int tag, void **buf, size_t *bytes, int *from)
{
    thread_rank *t = ctx;
    pthread_mutex_lock(&t->h->lock);
    message *m = NULL;
    for (;;) {
        message **p = &t->h->inbox[t->rank];
        while (*p && (*p)->tag != tag)
            p = &(*p)->next;
        if ((m = *p)) {
            *p = m->next;
            break;
        }
        pthread_cond_wait(&t->h->arrived, &t->h->lock);
    }
    pthread_mutex_unlock(&t->h->lock);
    *buf = malloc(m->bytes ? m->bytes : 1);
    if (*buf)
        memcpy(*buf, m->data, m->bytes);
    *bytes = m->bytes;
    *from = m->from;
    free(m);
    return *buf ? KDENS_OK : kdens_set_error(KDENS_E_NOMEM, "out of memory");
}

static void *run_rank(void *arg)
{
    thread_rank *t = arg;
    kdens_comm_ops ops = {
        .size = sizeof ops,
        .rank = t_rank,
        .ranks = t_ranks,
        .allreduce_float = t_allreduce_float,
        .allreduce_double = t_allreduce_double,
        .broadcast = t_broadcast,
        .send = t_send,
        .recv = t_recv,
    };
    kdens_comm *c = NULL;
    t->result = kdens_comm_create(&ops, t, &c);
    if (t->result == KDENS_OK)
        t->result = t->body(c, t->rank, t->message, sizeof t->message);
    else
        snprintf(t->message, sizeof t->message, "%s", kdens_errmsg());
    kdens_comm_free(c);
    return NULL;
}

/* Runs body on HUB_RANKS threads, each a rank; their results in t[]. */
static void run_ranks(thread_rank t[HUB_RANKS],
                      kdens_status (*body)(kdens_comm *, int, char *, size_t))
{
    hub h;
    memset(&h, 0, sizeof h);
    pthread_barrier_init(&h.barrier, NULL, HUB_RANKS);
    pthread_mutex_init(&h.lock, NULL);
    pthread_cond_init(&h.arrived, NULL);
    pthread_t threads[HUB_RANKS];
    for (int r = 0; r < HUB_RANKS; r++) {
        t[r] = (thread_rank){.h = &h, .rank = r, .body = body};
        assert_int_equal(pthread_create(&threads[r], NULL, run_rank, &t[r]), 0);
    }
    for (int r = 0; r < HUB_RANKS; r++)
        pthread_join(threads[r], NULL);
    for (int r = 0; r < HUB_RANKS; r++)
        assert_null(h.inbox[r]); /* every message taken */
    pthread_barrier_destroy(&h.barrier);
    pthread_mutex_destroy(&h.lock);
    pthread_cond_destroy(&h.arrived);
}

/* Rank 1 fails with "disk full"; every rank then agrees on the outcome. */
static kdens_status body_agree(kdens_comm *c, int rank, char *out, size_t size)
{
    kdens_status st = kdens_comm_agree(c, KDENS_OK);
    if (st != KDENS_OK)
        return kdens_set_error(KDENS_E_STATE, "all ranks well, agreed on %d", st);
    st = kdens_comm_agree(c, rank == 1 ? kdens_set_error(KDENS_E_IO, "disk full") : KDENS_OK);
    snprintf(out, size, "%s", kdens_errmsg());
    return st;
}

static void test_agree_between_threads(void **state)
{
    (void)state;
    thread_rank t[HUB_RANKS];
    run_ranks(t, body_agree);
    for (int r = 0; r < HUB_RANKS; r++)
        if (t[r].result != KDENS_E_IO)
            fail_msg("rank %d: %s (%s)", r, kdens_status_str(t[r].result), t[r].message);
    assert_non_null(strstr(t[0].message, "rank 1: disk full"));
    assert_string_equal(t[1].message, "disk full");
    assert_non_null(strstr(t[2].message, "rank 1 failed"));
}

/* The last rank describes itself differently. */
static kdens_status body_check_same(kdens_comm *c, int rank, char *out, size_t size)
{
    kdens_status st = kdens_comm_check_same(c, "arch resnet8; seed 1");
    if (st != KDENS_OK)
        return st;
    float v[4] = {1e8f, 1, (float)rank, 0.5f};
    st = kd_comm_allreduce_float(c, v, 4);
    if (st == KDENS_OK && (v[0] != 3e8f || v[2] != 3))
        return kdens_set_error(KDENS_E_STATE, "allreduce: %g %g", v[0], v[2]);
    st = kdens_comm_check_same(c, rank == HUB_RANKS - 1 ? "arch resnet8; seed 2"
                                                        : "arch resnet8; seed 1");
    snprintf(out, size, "%s", kdens_errmsg());
    return st;
}

static void test_check_same_between_threads(void **state)
{
    (void)state;
    thread_rank t[HUB_RANKS];
    run_ranks(t, body_check_same);
    for (int r = 0; r < HUB_RANKS; r++)
        if (t[r].result != KDENS_E_STATE)
            fail_msg("rank %d: %s (%s)", r, kdens_status_str(t[r].result), t[r].message);
    char want[32];
    snprintf(want, sizeof want, "rank %d: ", HUB_RANKS - 1);
    assert_non_null(strstr(t[0].message, want));
    assert_non_null(strstr(t[0].message, "seed 2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_refuses),
        cmocka_unit_test(test_short_ops),
        cmocka_unit_test(test_alone),
        cmocka_unit_test(test_null_comm),
        cmocka_unit_test(test_calls_reach_the_transport),
        cmocka_unit_test(test_set_error),
        cmocka_unit_test(test_agree_between_threads),
        cmocka_unit_test(test_check_same_between_threads),
    };
    return cmocka_run_group_tests_name("comm", tests, NULL, NULL);
}

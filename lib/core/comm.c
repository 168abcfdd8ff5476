/* Communicators: the transport's callbacks behind one handle, and the few
 * patterns every distributed part of the library needs on top of them
 * (agreeing on a failure, refusing ranks that differ, moving blobs of any
 * length).  The library never talks to MPI itself: lib/mpi/ is one
 * transport among the ones a user may plug in. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>

struct kdens_comm {
    kdens_comm_ops ops;
    void *ctx;
    int rank, ranks;
};

kdens_status kdens_comm_create(const kdens_comm_ops *ops, void *ctx, kdens_comm **out)
{
    if (!ops || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    *out = NULL;
    kdens_comm_ops o;
    memset(&o, 0, sizeof o);
    memcpy(&o, ops, KD_MIN(ops->size, sizeof o));
    if (ops->size < offsetof(kdens_comm_ops, abort))
        return kd_fail(KDENS_E_ARG, "the communicator's operations are too short (size %zu)",
                       ops->size);
    if (!o.rank || !o.ranks || !o.allreduce_float || !o.allreduce_double || !o.broadcast ||
        !o.send || !o.recv)
        return kd_fail(KDENS_E_ARG, "a communicator needs rank, ranks, allreduce_float, "
                       "allreduce_double, broadcast, send and recv");
    int rank = o.rank(ctx), ranks = o.ranks(ctx);
    if (ranks < 1 || rank < 0 || rank >= ranks)
        return kd_fail(KDENS_E_ARG, "rank %d of %d ranks is not a valid position", rank, ranks);
    kdens_comm *c = calloc(1, sizeof *c);
    if (!c)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    c->ops = o;
    c->ctx = ctx;
    c->rank = rank;
    c->ranks = ranks;
    *out = c;
    return KDENS_OK;
}

void kdens_comm_free(kdens_comm *comm)
{
    if (!comm)
        return;
    if (comm->ops.destroy)
        comm->ops.destroy(comm->ctx);
    free(comm);
}

int kdens_comm_rank(const kdens_comm *comm) { return comm ? comm->rank : 0; }
int kdens_comm_size(const kdens_comm *comm) { return comm ? comm->ranks : 1; }

kdens_status kd_comm_allreduce_float(kdens_comm *c, float *v, size_t n)
{
    if (!c || c->ranks == 1 || n == 0)
        return KDENS_OK;
    return c->ops.allreduce_float(c->ctx, v, n);
}

kdens_status kd_comm_allreduce_double(kdens_comm *c, double *v, size_t n)
{
    if (!c || c->ranks == 1 || n == 0)
        return KDENS_OK;
    return c->ops.allreduce_double(c->ctx, v, n);
}

kdens_status kd_comm_broadcast(kdens_comm *c, void *buf, size_t bytes, int root)
{
    if (!c || c->ranks == 1 || bytes == 0)
        return KDENS_OK;
    return c->ops.broadcast(c->ctx, buf, bytes, root);
}

kdens_status kd_comm_send(kdens_comm *c, int to, int tag, const void *buf, size_t bytes)
{
    if (!c || to < 0 || to >= c->ranks || to == c->rank)
        return kd_fail(KDENS_E_ARG, "no rank %d to send to", to);
    return c->ops.send(c->ctx, to, tag, buf, bytes);
}

kdens_status kd_comm_recv(kdens_comm *c, int tag, void **buf, size_t *bytes, int *from)
{
    if (!c || c->ranks == 1)
        return kd_fail(KDENS_E_STATE, "no other rank to receive from");
    *buf = NULL;
    *bytes = 0;
    kdens_status st = c->ops.recv(c->ctx, tag, buf, bytes, from);
    if (st == KDENS_OK && (*from < 0 || *from >= c->ranks || *from == c->rank)) {
        free(*buf);
        *buf = NULL;
        st = kd_fail(KDENS_E_IO, "a message came from rank %d, not one of the others", *from);
    }
    return st;
}

void kd_comm_abort(kdens_comm *c, int code)
{
    if (c && c->ranks > 1 && c->ops.abort)
        c->ops.abort(c->ctx, code);
}

kdens_status kd_comm_broadcast_blob(kdens_comm *c, kd_buf *b, int root)
{
    if (!c || c->ranks == 1)
        return KDENS_OK;
    uint64_t len = c->rank == root ? (uint64_t)b->len : 0;
    kdens_status st = c->ops.broadcast(c->ctx, &len, sizeof len, root);
    if (st != KDENS_OK)
        return st;
    if (c->rank != root) {
        b->len = 0;
        if (len > SIZE_MAX - 1 || !kd_resize(&b->data, (size_t)len + 1, 1)) {
            st = kd_fail(KDENS_E_NOMEM, "out of memory for %llu bytes from rank %d",
                         (unsigned long long)len, root);
        } else {
            b->cap = (size_t)len + 1;
            b->len = (size_t)len;
            b->data[len] = '\0';
        }
    }
    /* a rank without the room must not leave the others in the broadcast */
    st = kdens_comm_agree(c, st);
    if (st == KDENS_OK && len)
        st = c->ops.broadcast(c->ctx, b->data, (size_t)len, root);
    return st;
}

/* The message every rank sends to rank 0 along with its failure. */
enum { TAG_FAILURE = 250 };

kdens_status kdens_comm_agree(kdens_comm *c, kdens_status status)
{
    if (!c || c->ranks == 1)
        return status;
    /* one slot per rank: its status; the sum is every rank's own */
    double *slots = calloc((size_t)c->ranks, sizeof *slots);
    if (!slots)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    slots[c->rank] = (double)status;
    char mine[1024];
    snprintf(mine, sizeof mine, "%s", status != KDENS_OK ? kdens_errmsg() : "");
    kdens_status st = c->ops.allreduce_double(c->ctx, slots, (size_t)c->ranks);
    int first = -1;
    for (int r = 0; st == KDENS_OK && r < c->ranks && first < 0; r++)
        if (slots[r] != 0)
            first = r;
    kdens_status agreed = first < 0 ? KDENS_OK : (kdens_status)slots[first];
    free(slots);
    if (st != KDENS_OK)
        return st;
    if (first < 0)
        return KDENS_OK;
    /* the first failing rank tells rank 0 why */
    if (c->rank == first && first != 0)
        st = c->ops.send(c->ctx, 0, TAG_FAILURE, mine, strlen(mine) + 1);
    if (c->rank == 0 && first != 0) {
        void *msg = NULL;
        size_t len = 0;
        int from = -1;
        st = c->ops.recv(c->ctx, TAG_FAILURE, &msg, &len, &from);
        if (st == KDENS_OK)
            kd_fail(agreed, "rank %d: %.*s", from, (int)KD_MIN(len, 900), (const char *)msg);
        free(msg);
    } else if (c->rank == 0) {
        kd_fail(agreed, "rank 0: %s", mine);
    } else if (c->rank != first) {
        kd_fail(agreed, "rank %d failed", first);
    }
    return st != KDENS_OK ? st : agreed;
}

kdens_status kdens_comm_check_same(kdens_comm *c, const char *what)
{
    if (!c || c->ranks == 1)
        return KDENS_OK;
    kd_buf mine = {0}, root = {0};
    kd_buf_printf(&mine, "libkdens %s; %s", kdens_version(), what ? what : "");
    kd_buf_put(&root, mine.data, mine.len);
    kdens_status st = mine.failed || root.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                                                 : KDENS_OK;
    st = kdens_comm_agree(c, st);
    if (st == KDENS_OK)
        st = kd_comm_broadcast_blob(c, &root, 0);
    bool same = st == KDENS_OK && root.len == mine.len &&
                (mine.len == 0 || memcmp(root.data, mine.data, mine.len) == 0);
    char mine_text[600];
    snprintf(mine_text, sizeof mine_text, "%.*s", (int)KD_MIN(mine.len, 590), mine.data);
    kd_buf_free(&mine);
    kd_buf_free(&root);
    if (st != KDENS_OK)
        return st;
    return kdens_comm_agree(c, same ? KDENS_OK
                                    : kd_fail(KDENS_E_STATE, "differs from rank 0: %s",
                                              mine_text));
}

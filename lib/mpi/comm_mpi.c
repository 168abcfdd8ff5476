/* The MPI transport (kdens_mpi.h): the operations of a kdens_comm as MPI
 * calls on a duplicate of an MPI communicator.  It uses libkdens' public
 * API only, as a transport written by a user would (docs/mpi.md), and is
 * built into a library of its own (make MPI=1): libkdens never sees MPI.
 *
 * Wire protocol of send/recv: a message with library tag t is a header on
 * MPI tag t -- its length as a 64-bit integer, followed by the bytes
 * themselves when there are at most INLINE_BYTES of them -- and, for a
 * longer one, its bytes in pieces of at most PIECE_BYTES on MPI tag
 * TAGS + t.  The receiver takes the header from any source (a matched
 * probe), then the pieces from that source: MPI keeps the messages of one
 * source and tag in order, so pieces never mix. */
#include "kdens_mpi.h"

#include <mpi.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values of one allreduce step (scratch memory: about one piece), bytes of
 * one broadcast or message piece, bytes sent within a message's header.
 * The test build (make check-mpi) shrinks them to cross the pieces'
 * boundaries with small data. */
#ifndef KD_MPI_PIECE_VALUES
#define KD_MPI_PIECE_VALUES ((size_t)1 << 22)
#endif
/* Vectors of at most this many bytes over all ranks take the gather-sum-
 * broadcast path (allreduce_short). */
#ifndef KD_MPI_SHORT_BYTES
#define KD_MPI_SHORT_BYTES ((size_t)64 << 10)
#endif
#ifndef KD_MPI_PIECE_BYTES
#define KD_MPI_PIECE_BYTES ((size_t)1 << 30)
#endif
#ifndef KD_MPI_INLINE_BYTES
#define KD_MPI_INLINE_BYTES ((size_t)1 << 16)
#endif
_Static_assert(KD_MPI_PIECE_VALUES > 0 && KD_MPI_PIECE_VALUES <= INT_MAX / 2,
               "an allreduce piece is counted in int");
_Static_assert(KD_MPI_PIECE_BYTES > 0 && KD_MPI_PIECE_BYTES <= INT_MAX,
               "a piece is counted in int");
_Static_assert(KD_MPI_INLINE_BYTES <= INT_MAX - 8, "a header is counted in int");

/* The library's tags are 0 .. TAGS-1: a message's header goes on its tag,
 * its pieces on TAGS + tag (MPI promises tags up to 32767). */
enum { TAGS = 256, HEADER_BYTES = 8 };

typedef struct mpi_ctx {
    MPI_Comm comm; /* the duplicate, MPI_ERRORS_RETURN */
    int rank, ranks;
    /* the allreduce's layout of one piece: chunk r of the vector is
     * [displs[r], displs[r] + counts[r]); every rank's part of this rank's
     * chunk lands at rdispls[q] of the scratch */
    int *counts, *displs, *rcounts, *rdispls;
    void *scratch;
    size_t scratch_bytes;
    /* rank 0's room for the short path's parts, allocated with the context
     * so that the collective can never fail half-way for memory */
    unsigned char short_parts[KD_MPI_SHORT_BYTES];
} mpi_ctx;

static kdens_status mpi_failed(const char *call, int rc)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS || len < 0 ||
        len >= MPI_MAX_ERROR_STRING)
        len = snprintf(text, sizeof text, "MPI error %d", rc);
    return kdens_set_error(KDENS_E_IO, "%s: %.*s", call, len, text);
}

#define MPI_TRY(name, call)                    \
    do {                                       \
        int rc_ = (call);                      \
        if (rc_ != MPI_SUCCESS)                \
            return mpi_failed(name, rc_);      \
    } while (0)

static int op_rank(void *ctx) { return ((mpi_ctx *)ctx)->rank; }
static int op_ranks(void *ctx) { return ((mpi_ctx *)ctx)->ranks; }

/* Adds this rank's chunk of every rank, in rank order, into out: parts
 * holds rank 0's len values, then rank 1's, ... */
typedef void sum_fn(void *out, const void *parts, size_t len, int ranks);

static void sum_float(void *out, const void *parts, size_t len, int ranks)
{
    float *o = out;
    const float *p = parts;
    memcpy(o, p, len * sizeof *o);
    for (int r = 1; r < ranks; r++) {
        const float *q = p + (size_t)r * len;
        for (size_t i = 0; i < len; i++)
            o[i] += q[i];
    }
}

static void sum_double(void *out, const void *parts, size_t len, int ranks)
{
    double *o = out;
    const double *p = parts;
    memcpy(o, p, len * sizeof *o);
    for (int r = 1; r < ranks; r++) {
        const double *q = p + (size_t)r * len;
        for (size_t i = 0; i < len; i++)
            o[i] += q[i];
    }
}

/* Room for `need` bytes of scratch. */
static kdens_status scratch_for(mpi_ctx *c, size_t need)
{
    if (need <= c->scratch_bytes)
        return KDENS_OK;
    void *grown = realloc(c->scratch, need);
    if (!grown)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory for %zu bytes of scratch", need);
    c->scratch = grown;
    c->scratch_bytes = need;
    return KDENS_OK;
}

/* Short vectors (batch-norm statistics, agreements: a few hundred values)
 * cost latency, not bandwidth: rank 0 gathers them, adds them in rank
 * order and broadcasts the sums -- two tree collectives, O(log ranks)
 * steps, where the chunked exchange below takes O(ranks) messages. */
static kdens_status allreduce_short(mpi_ctx *c, void *values, size_t n, MPI_Datatype type,
                                    sum_fn *sum)
{
    MPI_TRY("MPI_Gather", MPI_Gather(values, (int)n, type, c->rank == 0 ? c->short_parts : NULL,
                                     (int)n, type, 0, c->comm));
    if (c->rank == 0)
        sum(values, c->short_parts, n, c->ranks);
    MPI_TRY("MPI_Bcast", MPI_Bcast(values, (int)n, type, 0, c->comm));
    return KDENS_OK;
}

/* Piece by piece: split it into `ranks` contiguous chunks; each rank
 * gathers its chunk from every rank (MPI_Alltoallv), adds them in rank
 * order, and every rank gathers every summed chunk (MPI_Allgatherv).  Each
 * value is added by one rank in one fixed order: the same bits everywhere,
 * whatever algorithm MPI picks for its collectives. */
static kdens_status allreduce(mpi_ctx *c, void *values, size_t n, size_t elem,
                              MPI_Datatype type, sum_fn *sum)
{
    if (n == 0)
        return KDENS_OK;
    if (!values)
        return kdens_set_error(KDENS_E_ARG, "NULL values to add up");
    if (n * elem * (size_t)c->ranks <= KD_MPI_SHORT_BYTES)
        return allreduce_short(c, values, n, type, sum);
    const int ranks = c->ranks, me = c->rank;
    size_t first = n < KD_MPI_PIECE_VALUES ? n : KD_MPI_PIECE_VALUES;
    size_t need = ((first + (size_t)ranks - 1) / (size_t)ranks) * (size_t)ranks * elem;
    kdens_status st = scratch_for(c, need);
    if (st != KDENS_OK)
        return st;
    for (size_t at = 0; at < n;) {
        size_t m = n - at < KD_MPI_PIECE_VALUES ? n - at : KD_MPI_PIECE_VALUES;
        char *piece = (char *)values + at * elem;
        for (int r = 0; r < ranks; r++) {
            size_t lo = m * (size_t)r / (size_t)ranks, hi = m * ((size_t)r + 1) / (size_t)ranks;
            c->displs[r] = (int)lo;
            c->counts[r] = (int)(hi - lo);
        }
        int mine = c->counts[me];
        for (int q = 0; q < ranks; q++) {
            c->rcounts[q] = mine;
            c->rdispls[q] = q * mine;
        }
        MPI_TRY("MPI_Alltoallv", MPI_Alltoallv(piece, c->counts, c->displs, type, c->scratch,
                                               c->rcounts, c->rdispls, type, c->comm));
        sum(piece + (size_t)c->displs[me] * elem, c->scratch, (size_t)mine, ranks);
        MPI_TRY("MPI_Allgatherv", MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, piece,
                                                 c->counts, c->displs, type, c->comm));
        at += m;
    }
    return KDENS_OK;
}

static kdens_status op_allreduce_float(void *ctx, float *values, size_t n)
{
    return allreduce(ctx, values, n, sizeof *values, MPI_FLOAT, sum_float);
}

static kdens_status op_allreduce_double(void *ctx, double *values, size_t n)
{
    return allreduce(ctx, values, n, sizeof *values, MPI_DOUBLE, sum_double);
}

static kdens_status op_broadcast(void *ctx, void *buf, size_t bytes, int root)
{
    mpi_ctx *c = ctx;
    if (root < 0 || root >= c->ranks)
        return kdens_set_error(KDENS_E_ARG, "no rank %d to broadcast from", root);
    if (bytes && !buf)
        return kdens_set_error(KDENS_E_ARG, "NULL buffer to broadcast");
    for (size_t at = 0; at < bytes;) {
        size_t m = bytes - at < KD_MPI_PIECE_BYTES ? bytes - at : KD_MPI_PIECE_BYTES;
        MPI_TRY("MPI_Bcast",
                MPI_Bcast((char *)buf + at, (int)m, MPI_BYTE, root, c->comm));
        at += m;
    }
    return KDENS_OK;
}

static kdens_status check_tag(int tag)
{
    if (tag < 0 || tag >= TAGS)
        return kdens_set_error(KDENS_E_ARG, "tag %d is not one of 0 .. %d", tag, TAGS - 1);
    return KDENS_OK;
}

static kdens_status op_send(void *ctx, int to, int tag, const void *buf, size_t bytes)
{
    mpi_ctx *c = ctx;
    kdens_status st = check_tag(tag);
    if (st != KDENS_OK)
        return st;
    if (to < 0 || to >= c->ranks)
        return kdens_set_error(KDENS_E_ARG, "no rank %d to send to", to);
    if (bytes && !buf)
        return kdens_set_error(KDENS_E_ARG, "NULL buffer to send");
    size_t inline_bytes = bytes <= KD_MPI_INLINE_BYTES ? bytes : 0;
    unsigned char small[HEADER_BYTES + 256];
    unsigned char *header = small;
    if (HEADER_BYTES + inline_bytes > sizeof small &&
        !(header = malloc(HEADER_BYTES + inline_bytes)))
        return kdens_set_error(KDENS_E_NOMEM, "out of memory for a message of %zu bytes",
                               bytes);
    uint64_t len = bytes;
    memcpy(header, &len, HEADER_BYTES);
    if (inline_bytes)
        memcpy(header + HEADER_BYTES, buf, inline_bytes);
    int rc = MPI_Send(header, (int)(HEADER_BYTES + inline_bytes), MPI_BYTE, to, tag, c->comm);
    if (header != small)
        free(header);
    if (rc != MPI_SUCCESS)
        return mpi_failed("MPI_Send", rc);
    for (size_t at = inline_bytes ? bytes : 0; at < bytes;) {
        size_t m = bytes - at < KD_MPI_PIECE_BYTES ? bytes - at : KD_MPI_PIECE_BYTES;
        MPI_TRY("MPI_Send", MPI_Send((const char *)buf + at, (int)m, MPI_BYTE, to, TAGS + tag,
                                     c->comm));
        at += m;
    }
    return KDENS_OK;
}

static kdens_status op_recv(void *ctx, int tag, void **buf, size_t *bytes, int *from)
{
    mpi_ctx *c = ctx;
    kdens_status st = check_tag(tag);
    if (st != KDENS_OK)
        return st;
    if (!buf || !bytes || !from)
        return kdens_set_error(KDENS_E_ARG, "NULL argument");
    MPI_Message msg;
    MPI_Status status;
    MPI_TRY("MPI_Mprobe", MPI_Mprobe(MPI_ANY_SOURCE, tag, c->comm, &msg, &status));
    int count = 0;
    MPI_TRY("MPI_Get_count", MPI_Get_count(&status, MPI_BYTE, &count));
    const int source = status.MPI_SOURCE;
    /* the header is taken whatever it holds, so that no message is left
     * half matched */
    unsigned char *header = malloc(count > 0 ? (size_t)count : 1);
    if (!header)
        return kdens_set_error(KDENS_E_NOMEM, "out of memory for a message of %d bytes",
                               count);
    int rc = MPI_Mrecv(header, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        free(header);
        return mpi_failed("MPI_Mrecv", rc);
    }
    uint64_t len = 0;
    if (count >= HEADER_BYTES)
        memcpy(&len, header, HEADER_BYTES);
    size_t inline_bytes = count >= HEADER_BYTES ? (size_t)count - HEADER_BYTES : 0;
    if (count < HEADER_BYTES || (inline_bytes && inline_bytes != len) ||
        (!inline_bytes && len && len <= KD_MPI_INLINE_BYTES)) {
        free(header);
        return kdens_set_error(KDENS_E_IO,
                               "a malformed message from rank %d with tag %d (%d bytes)",
                               source, tag, count);
    }
    if (len > SIZE_MAX - 1) {
        free(header);
        return kdens_set_error(KDENS_E_NOMEM, "a message of %llu bytes from rank %d",
                               (unsigned long long)len, source);
    }
    char *data = malloc(len ? (size_t)len : 1);
    if (!data) {
        free(header);
        return kdens_set_error(KDENS_E_NOMEM, "out of memory for a message of %llu bytes "
                               "from rank %d", (unsigned long long)len, source);
    }
    if (inline_bytes)
        memcpy(data, header + HEADER_BYTES, inline_bytes);
    free(header);
    for (size_t at = inline_bytes; at < len;) {
        size_t m = len - at < KD_MPI_PIECE_BYTES ? (size_t)len - at : KD_MPI_PIECE_BYTES;
        int got = -1;
        rc = MPI_Recv(data + at, (int)m, MPI_BYTE, source, TAGS + tag, c->comm, &status);
        if (rc == MPI_SUCCESS)
            rc = MPI_Get_count(&status, MPI_BYTE, &got);
        if (rc != MPI_SUCCESS || got != (int)m) {
            free(data);
            if (rc != MPI_SUCCESS)
                return mpi_failed("MPI_Recv", rc);
            return kdens_set_error(KDENS_E_IO, "a message from rank %d with tag %d ended "
                                   "early (%d of %zu bytes in a piece)", source, tag, got, m);
        }
        at += m;
    }
    *buf = data;
    *bytes = (size_t)len;
    *from = source;
    return KDENS_OK;
}

static void op_abort(void *ctx, int code)
{
    MPI_Abort(((mpi_ctx *)ctx)->comm, code);
}

static void op_destroy(void *ctx)
{
    mpi_ctx *c = ctx;
    int finalized = 1;
    if (MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized)
        MPI_Comm_free(&c->comm);
    free(c->counts);
    free(c->scratch);
    free(c);
}

static const kdens_comm_ops mpi_ops = {
    .size = sizeof(kdens_comm_ops),
    .rank = op_rank,
    .ranks = op_ranks,
    .allreduce_float = op_allreduce_float,
    .allreduce_double = op_allreduce_double,
    .broadcast = op_broadcast,
    .send = op_send,
    .recv = op_recv,
    .abort = op_abort,
    .destroy = op_destroy,
};

kdens_status kdens_comm_mpi_create_from(const void *mpi_comm, kdens_comm **out)
{
    if (!mpi_comm || !out)
        return kdens_set_error(KDENS_E_ARG, "NULL argument");
    int initialized = 0, finalized = 0;
    MPI_TRY("MPI_Initialized", MPI_Initialized(&initialized));
    if (!initialized)
        return kdens_set_error(KDENS_E_STATE, "MPI is not initialised: call MPI_Init (or "
                               "MPI_Init_thread) before creating an MPI communicator");
    MPI_TRY("MPI_Finalized", MPI_Finalized(&finalized));
    if (finalized)
        return kdens_set_error(KDENS_E_STATE, "MPI is already finalised");
    MPI_Comm base = *(const MPI_Comm *)mpi_comm;
    if (base == MPI_COMM_NULL)
        return kdens_set_error(KDENS_E_ARG, "MPI_COMM_NULL is no communicator");
    int inter = 0;
    MPI_TRY("MPI_Comm_test_inter", MPI_Comm_test_inter(base, &inter));
    if (inter)
        return kdens_set_error(KDENS_E_ARG, "an intercommunicator cannot be a kdens_comm");
    /* the collective step first: a rank that fails after it leaves no
     * other rank waiting */
    MPI_Comm dup;
    MPI_TRY("MPI_Comm_dup", MPI_Comm_dup(base, &dup));
    int rc = MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    mpi_ctx *c = NULL;
    int rank = 0, ranks = 0;
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_rank(dup, &rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(dup, &ranks);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&dup);
        return mpi_failed("MPI_Comm_dup", rc);
    }
    int *ints = NULL;
    if (ranks > 0 && (size_t)ranks <= SIZE_MAX / (4 * sizeof *ints))
        ints = malloc(4 * (size_t)ranks * sizeof *ints);
    if (ints)
        c = calloc(1, sizeof *c);
    if (!c) {
        free(ints);
        MPI_Comm_free(&dup);
        return kdens_set_error(KDENS_E_NOMEM, "out of memory for a communicator of %d ranks",
                               ranks);
    }
    c->comm = dup;
    c->rank = rank;
    c->ranks = ranks;
    c->counts = ints;
    c->displs = ints + ranks;
    c->rcounts = ints + 2 * (size_t)ranks;
    c->rdispls = ints + 3 * (size_t)ranks;
    kdens_comm *comm = NULL;
    kdens_status st = kdens_comm_create(&mpi_ops, c, &comm);
    if (st != KDENS_OK) {
        op_destroy(c);
        return st;
    }
    *out = comm;
    return KDENS_OK;
}

kdens_status kdens_comm_mpi_create(kdens_comm **out)
{
    if (!out)
        return kdens_set_error(KDENS_E_ARG, "NULL argument");
    /* MPI_COMM_WORLD is a valid handle before MPI_Init; create_from checks
     * that MPI is initialised before using it */
    MPI_Comm world = MPI_COMM_WORLD;
    return kdens_comm_mpi_create_from(&world, out);
}

/* The MPI transport (kdens_mpi.h, lib/mpi/) under mpirun with 2 or more
 * ranks (make check-mpi): allreduces that give every rank the same bits,
 * the sum in rank order; broadcasts and messages of 0 bytes to megabytes;
 * messages received by tag from any rank; agreeing on a failure; refusing
 * ranks that differ; communicators over MPI_COMM_SELF and a split of the
 * world; MPI errors returned as KDENS_E_IO.
 *
 * Every rank runs every test.  A rank never leaves a test early: checks
 * record the first failure (CHECK), and each test ends in end_test(), where
 * the ranks learn whether any failed, so that they stay in step for the
 * next test.  Built twice: as the transport is installed, and with its
 * pieces shrunk (KD_MPI_SMALL_PIECES: tests/mpi/comm_mpi_small.o) so that
 * the same data crosses many piece boundaries. */
#include "testutil.h"

#include <mpi.h>

#include "core/core.h"
#include "kdens_mpi.h"

static kdens_comm *comm;
static int rank, ranks;

/* ---- checks that keep the ranks in step ---------------------------------- */

static char failure[800]; /* this rank's first failure in the current test */

#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond) && !failure[0]) {                                 \
            int n_ = snprintf(failure, sizeof failure, "line %d: ", __LINE__); \
            snprintf(failure + n_, sizeof failure - (size_t)n_, __VA_ARGS__); \
            fprintf(stderr, "rank %d: %s\n", rank, failure); /* before any hang */ \
        }                                                             \
    } while (0)
#define CHECK_STATUS(expr, want)                                                            \
    do {                                                                                    \
        kdens_status st_ = (expr);                                                          \
        CHECK(st_ == (want), "%s -> %s (%s), expected %s", #expr, kdens_status_str(st_),    \
              kdens_errmsg(), kdens_status_str(want));                                      \
    } while (0)
#define CHECK_OK(expr) CHECK_STATUS(expr, KDENS_OK)

/* Every rank learns whether any failed; the test fails on each. */
static void end_test(void)
{
    int mine = failure[0] == '\0', all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    char text[sizeof failure];
    memcpy(text, failure, sizeof text);
    failure[0] = '\0';
    if (!mine)
        fail_msg("rank %d of %d: %s", rank, ranks, text);
    if (!all)
        fail_msg("rank %d of %d: another rank failed", rank, ranks);
}

/* ---- data ------------------------------------------------------------------ */

/* Rank r's i-th value: ±big mixed with small values (big 1e8 for float,
 * 1e16 for double: a few units below their precision), so that sums in
 * another order round differently. */
static double value(int r, size_t i, double big)
{
    uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15u ^ (uint64_t)(r + 1) * 0xD1B54A32D192ED03u;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9u;
    h ^= h >> 32;
    switch (h % 4) {
    case 0: return big;
    case 1: return -big;
    case 2: return 1.0 + (double)((h >> 40) & 7);
    default: return 0.25 + 0.5 * (double)((h >> 44) & 3);
    }
}

static unsigned char byte_of(int who, int what, size_t i)
{
    return (unsigned char)((i * 131u + (size_t)who * 17u + (size_t)what * 7u) >> 1);
}

static const size_t lengths[] = {0, 1, 2, 7, 1000, 5000001};

/* ---- tests --------------------------------------------------------------- */

static void test_before_init(void **state)
{
    (void)state;
    kdens_comm *c = (kdens_comm *)&c; /* untouched on failure */
    kdens_comm *before = c;
    ASSERT_STATUS(kdens_comm_mpi_create(&c), KDENS_E_STATE);
    assert_non_null(strstr(kdens_errmsg(), "MPI_Init"));
    assert_ptr_equal(c, before);
    MPI_Comm world = MPI_COMM_WORLD;
    ASSERT_STATUS(kdens_comm_mpi_create_from(&world, &c), KDENS_E_STATE);
    ASSERT_STATUS(kdens_comm_mpi_create(NULL), KDENS_E_ARG);
}

static void test_world(void **state)
{
    (void)state;
    int r = -1, n = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    CHECK(kdens_comm_rank(comm) == r && kdens_comm_size(comm) == n,
          "rank %d of %d, MPI says %d of %d", kdens_comm_rank(comm), kdens_comm_size(comm), r,
          n);
    CHECK(n >= 2, "run with at least 2 ranks (mpirun -np 2)");
    end_test();
}

static void test_allreduce_float(void **state)
{
    (void)state;
    for (size_t k = 0; k < KD_ARRAY_LEN(lengths); k++) {
        size_t n = lengths[k];
        float *v = malloc((n ? n : 1) * sizeof *v), *root = malloc((n ? n : 1) * sizeof *v);
        assert_true(v && root);
        for (size_t i = 0; i < n; i++)
            v[i] = (float)value(rank, i, 1e8);
        CHECK_OK(kd_comm_allreduce_float(comm, v, n));
        /* the sum in rank order, bit for bit */
        size_t wrong = 0, reassociated = 0;
        for (size_t i = 0; i < n; i++) {
            float want = (float)value(0, i, 1e8);
            for (int r = 1; r < ranks; r++)
                want += (float)value(r, i, 1e8);
            wrong += memcmp(&want, &v[i], sizeof want) != 0;
            if (ranks >= 3) { /* v0 + (v1 + v2 ...): another order */
                float other = (float)value(ranks - 1, i, 1e8);
                for (int r = ranks - 2; r >= 1; r--)
                    other = (float)value(r, i, 1e8) + other;
                other = (float)value(0, i, 1e8) + other;
                reassociated += memcmp(&other, &want, sizeof want) != 0;
            }
        }
        CHECK(wrong == 0, "n=%zu: %zu sums differ from the sum in rank order", n, wrong);
        if (ranks >= 3 && n >= 1000)
            CHECK(reassociated > 0, "n=%zu: the data does not tell orders of addition apart", n);
        /* the same bits on every rank */
        memcpy(root, v, n * sizeof *v);
        if (n)
            MPI_Bcast(root, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
        CHECK(n == 0 || memcmp(root, v, n * sizeof *v) == 0, "n=%zu: differs from rank 0's", n);
        free(v);
        free(root);
    }
    end_test();
}

static void test_allreduce_double(void **state)
{
    (void)state;
    for (size_t k = 0; k < KD_ARRAY_LEN(lengths); k++) {
        size_t n = lengths[k];
        double *v = malloc((n ? n : 1) * sizeof *v), *root = malloc((n ? n : 1) * sizeof *v);
        assert_true(v && root);
        for (size_t i = 0; i < n; i++)
            v[i] = value(rank, i, 1e16);
        CHECK_OK(kd_comm_allreduce_double(comm, v, n));
        size_t wrong = 0, reassociated = 0;
        for (size_t i = 0; i < n; i++) {
            double want = value(0, i, 1e16);
            for (int r = 1; r < ranks; r++)
                want += value(r, i, 1e16);
            wrong += memcmp(&want, &v[i], sizeof want) != 0;
            if (ranks >= 3) {
                double other = value(ranks - 1, i, 1e16);
                for (int r = ranks - 2; r >= 1; r--)
                    other = value(r, i, 1e16) + other;
                other = value(0, i, 1e16) + other;
                reassociated += memcmp(&other, &want, sizeof want) != 0;
            }
        }
        CHECK(wrong == 0, "n=%zu: %zu sums differ from the sum in rank order", n, wrong);
        if (ranks >= 3 && n >= 1000)
            CHECK(reassociated > 0, "n=%zu: the data does not tell orders of addition apart", n);
        memcpy(root, v, n * sizeof *v);
        if (n)
            MPI_Bcast(root, (int)n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        CHECK(n == 0 || memcmp(root, v, n * sizeof *v) == 0, "n=%zu: differs from rank 0's", n);
        free(v);
        free(root);
    }
    end_test();
}

static void test_broadcast(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 3000000};
    for (int root = 0; root < ranks; root += ranks - 1) {
        for (size_t k = 0; k < KD_ARRAY_LEN(sizes); k++) {
            size_t n = sizes[k];
            unsigned char *b = malloc(n ? n : 1);
            assert_non_null(b);
            for (size_t i = 0; i < n; i++)
                b[i] = rank == root ? byte_of(root, 5, i) : 0xEE;
            CHECK_OK(kd_comm_broadcast(comm, b, n, root));
            size_t wrong = 0;
            for (size_t i = 0; i < n; i++)
                wrong += b[i] != byte_of(root, 5, i);
            CHECK(wrong == 0, "%zu bytes from rank %d: %zu differ", n, root, wrong);
            free(b);
        }
        /* blobs: the length first, then the bytes */
        kd_buf blob = {0};
        if (rank == root)
            for (size_t i = 0; i < 3000000; i++)
                kd_buf_put(&blob, (const char[]){(char)byte_of(root, 6, i)}, 1);
        else
            kd_buf_put(&blob, "old contents", 12);
        CHECK(!blob.failed, "out of memory");
        CHECK_OK(kd_comm_broadcast_blob(comm, &blob, root));
        size_t wrong = blob.len == 3000000 ? 0 : 1;
        for (size_t i = 0; !wrong && i < blob.len; i++)
            wrong += (unsigned char)blob.data[i] != byte_of(root, 6, i);
        CHECK(wrong == 0, "a blob from rank %d: %zu bytes, %zu wrong", root, blob.len, wrong);
        kd_buf empty = {0};
        if (rank != root)
            kd_buf_put(&empty, "old", 3);
        CHECK_OK(kd_comm_broadcast_blob(comm, &empty, root));
        CHECK(empty.len == 0, "an empty blob from rank %d arrived with %zu bytes", root,
              empty.len);
        kd_buf_free(&blob);
        kd_buf_free(&empty);
        if (ranks == 1)
            break;
    }
    /* a root that is no rank: refused on every rank before any message */
    char one = 1;
    CHECK_STATUS(kd_comm_broadcast(comm, &one, 1, ranks), KDENS_E_ARG);
    end_test();
}

/* What rank `who` sends with `tag` in test_send_recv. */
static size_t message_length(int who, int tag)
{
    if (tag == 1)
        return 10 * (size_t)who + 3;
    return who == 1 ? 0 : 200 * (size_t)who;
}

static void test_send_recv(void **state)
{
    (void)state;
    /* every other rank sends rank 0 a message with tag 1 then one with tag
     * 2; rank 0 takes those of tag 2 first, from whichever rank */
    if (rank > 0) {
        for (int tag = 1; tag <= 2; tag++) {
            size_t n = message_length(rank, tag);
            unsigned char *b = malloc(n ? n : 1);
            assert_non_null(b);
            for (size_t i = 0; i < n; i++)
                b[i] = byte_of(rank, tag, i);
            CHECK_OK(kd_comm_send(comm, 0, tag, n ? b : NULL, n));
            free(b);
        }
    } else {
        for (int tag = 2; tag >= 1; tag--) {
            int seen[64] = {0};
            for (int k = 1; k < ranks; k++) {
                void *buf = NULL;
                size_t n = 99;
                int from = -1;
                CHECK_OK(kd_comm_recv(comm, tag, &buf, &n, &from));
                CHECK(buf != NULL, "tag %d: no buffer (malloc'd even for 0 bytes)", tag);
                CHECK(from >= 1 && from < ranks && from < 64 && !seen[from],
                      "tag %d: a message from rank %d", tag, from);
                if (from >= 1 && from < ranks && from < 64) {
                    seen[from] = 1;
                    CHECK(n == message_length(from, tag), "tag %d from rank %d: %zu bytes, "
                          "sent %zu", tag, from, n, message_length(from, tag));
                    size_t wrong = 0;
                    for (size_t i = 0; buf && n == message_length(from, tag) && i < n; i++)
                        wrong += ((unsigned char *)buf)[i] != byte_of(from, tag, i);
                    CHECK(wrong == 0, "tag %d from rank %d: %zu bytes differ", tag, from, wrong);
                }
                free(buf);
            }
        }
    }
    /* rank 0 to the last rank, one tag, in order: long ones in pieces, 0
     * bytes, and around the size sent within the header */
    const size_t sizes[] = {3000000, 0, 65536, 65537, 100, 101, 1};
    const int last = ranks - 1;
    for (size_t k = 0; k < KD_ARRAY_LEN(sizes) && (rank == 0 || rank == last); k++) {
        size_t n = sizes[k];
        if (rank == 0) {
            unsigned char *b = malloc(n ? n : 1);
            assert_non_null(b);
            for (size_t i = 0; i < n; i++)
                b[i] = byte_of((int)k, 3, i);
            CHECK_OK(kd_comm_send(comm, last, 3, b, n));
            free(b);
        } else {
            void *buf = NULL;
            size_t got = 0;
            int from = -1;
            CHECK_OK(kd_comm_recv(comm, 3, &buf, &got, &from));
            CHECK(from == 0 && got == n, "message %zu: %zu bytes from rank %d, sent %zu from 0",
                  k, got, from, n);
            size_t wrong = 0;
            for (size_t i = 0; buf && got == n && i < n; i++)
                wrong += ((unsigned char *)buf)[i] != byte_of((int)k, 3, i);
            CHECK(wrong == 0, "message %zu: %zu bytes differ", k, wrong);
            free(buf);
        }
    }
    /* tags beyond the library's, and no rank to send to: refused at once */
    char one = 1;
    void *buf = NULL;
    size_t n = 0;
    int from = 0;
    CHECK_STATUS(kd_comm_send(comm, (rank + 1) % ranks, 256, &one, 1), KDENS_E_ARG);
    CHECK_STATUS(kd_comm_send(comm, (rank + 1) % ranks, -1, &one, 1), KDENS_E_ARG);
    CHECK_STATUS(kd_comm_recv(comm, 256, &buf, &n, &from), KDENS_E_ARG);
    CHECK_STATUS(kd_comm_send(comm, ranks, 1, &one, 1), KDENS_E_ARG);
    CHECK_STATUS(kd_comm_send(comm, rank, 1, &one, 1), KDENS_E_ARG);
    end_test();
}

static void test_agree(void **state)
{
    (void)state;
    CHECK_OK(kdens_comm_agree(comm, KDENS_OK));
    /* rank 1 fails: every rank learns it, rank 0 why */
    kdens_status mine = KDENS_OK;
    if (rank == 1)
        mine = kdens_set_error(KDENS_E_IO, "disk full");
    CHECK_STATUS(kdens_comm_agree(comm, mine), KDENS_E_IO);
    if (rank == 0)
        CHECK(strstr(kdens_errmsg(), "rank 1: disk full") != NULL, "rank 0 was told '%s'",
              kdens_errmsg());
    /* the lowest failing rank wins */
    mine = KDENS_OK;
    if (rank == 0)
        mine = kdens_set_error(KDENS_E_NOMEM, "no room");
    if (rank == ranks - 1)
        mine = kdens_set_error(KDENS_E_FORMAT, "bad file");
    CHECK_STATUS(kdens_comm_agree(comm, mine), KDENS_E_NOMEM);
    if (rank == 0)
        CHECK(strstr(kdens_errmsg(), "rank 0: no room") != NULL, "rank 0 was told '%s'",
              kdens_errmsg());
    CHECK_OK(kdens_comm_agree(comm, KDENS_OK));
    end_test();
}

static void test_check_same(void **state)
{
    (void)state;
    CHECK_OK(kdens_comm_check_same(comm, "model resnet8; seed 7"));
    /* the last rank (rank 2 of 3) differs: every rank refuses, rank 0 names it */
    const char *what = rank == ranks - 1 ? "model resnet8; seed 8" : "model resnet8; seed 7";
    CHECK_STATUS(kdens_comm_check_same(comm, what), KDENS_E_STATE);
    char want[32];
    snprintf(want, sizeof want, "rank %d", ranks - 1);
    if (rank == 0)
        CHECK(strstr(kdens_errmsg(), want) != NULL && strstr(kdens_errmsg(), "seed 8") != NULL,
              "rank 0 was told '%s'", kdens_errmsg());
    CHECK_OK(kdens_comm_check_same(comm, NULL));
    end_test();
}

static void test_other_communicators(void **state)
{
    (void)state;
    kdens_comm *c = NULL;
    CHECK_STATUS(kdens_comm_mpi_create_from(NULL, &c), KDENS_E_ARG);
    MPI_Comm null = MPI_COMM_NULL;
    CHECK_STATUS(kdens_comm_mpi_create_from(&null, &c), KDENS_E_ARG);
    CHECK(c == NULL, "a communicator after a failure");
    /* one process alone: collectives do nothing */
    MPI_Comm self = MPI_COMM_SELF;
    CHECK_OK(kdens_comm_mpi_create_from(&self, &c));
    CHECK(kdens_comm_size(c) == 1 && kdens_comm_rank(c) == 0, "MPI_COMM_SELF: rank %d of %d",
          kdens_comm_rank(c), kdens_comm_size(c));
    float f[3] = {1, 2, 3};
    CHECK_OK(kd_comm_allreduce_float(c, f, 3));
    CHECK(f[0] == 1 && f[1] == 2 && f[2] == 3, "alone, an allreduce changed the values");
    kdens_comm_free(c);
    c = NULL;
    /* even and odd ranks side by side; the split freed before its copy */
    MPI_Comm split;
    MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &split);
    int split_rank = -1, split_size = -1;
    MPI_Comm_rank(split, &split_rank);
    MPI_Comm_size(split, &split_size);
    CHECK_OK(kdens_comm_mpi_create_from(&split, &c));
    MPI_Comm_free(&split);
    CHECK(kdens_comm_rank(c) == split_rank && kdens_comm_size(c) == split_size,
          "split: rank %d of %d, MPI says %d of %d", kdens_comm_rank(c), kdens_comm_size(c),
          split_rank, split_size);
    double d[2] = {rank, 1};
    CHECK_OK(kd_comm_allreduce_double(c, d, 2));
    double want = 0;
    for (int r = rank % 2; r < ranks; r += 2)
        want += r;
    CHECK(d[0] == want && d[1] == split_size, "split: sums %g %g, want %g %d", d[0], d[1],
          want, split_size);
    kdens_comm_free(c);
    end_test();
}

/* An MPI error comes back as KDENS_E_IO with MPI's words: rank 1 of a pair
 * expects fewer bytes than rank 0 broadcasts (MPI_ERR_TRUNCATE). */
static void test_mpi_error(void **state)
{
    (void)state;
    MPI_Comm pair;
    MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &pair);
    if (pair != MPI_COMM_NULL) {
        kdens_comm *c = NULL;
        CHECK_OK(kdens_comm_mpi_create_from(&pair, &c));
        char bytes[100] = {0};
        kdens_status st = kd_comm_broadcast(c, bytes, rank == 0 ? 100 : 50, 0);
        if (rank == 0) {
            CHECK(st == KDENS_OK, "the root failed: %s", kdens_errmsg());
        } else {
            CHECK(st == KDENS_E_IO, "a truncated broadcast: %s", kdens_status_str(st));
            CHECK(strstr(kdens_errmsg(), "MPI_Bcast: ") != NULL, "the message: '%s'",
                  kdens_errmsg());
        }
        kdens_comm_free(c);
        MPI_Comm_free(&pair);
    }
    end_test();
}

static int setup(void **state)
{
    (void)state;
    return kdens_comm_mpi_create(&comm) == KDENS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kdens_comm_free(comm);
    comm = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest before[] = {
        cmocka_unit_test(test_before_init),
    };
    int failed = cmocka_run_group_tests_name("comm_mpi before MPI_Init", before, NULL, NULL);
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world),
        cmocka_unit_test(test_allreduce_float),
        cmocka_unit_test(test_allreduce_double),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_send_recv),
        cmocka_unit_test(test_agree),
        cmocka_unit_test(test_check_same),
        cmocka_unit_test(test_other_communicators),
        cmocka_unit_test(test_mpi_error),
    };
    char name[96];
#ifdef KD_MPI_SMALL_PIECES
    snprintf(name, sizeof name, "comm_mpi, small pieces, rank %d of %d", rank, ranks);
#else
    snprintf(name, sizeof name, "comm_mpi, rank %d of %d", rank, ranks);
#endif
    printf("== %s\n", name);
    fflush(stdout);
    failed += cmocka_run_group_tests_name(name, tests, setup, teardown);
    /* a failure on one rank ends every rank */
    int all = 0;
    MPI_Allreduce(&failed, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return all ? 1 : 0;
}

/*
 * kdens_mpi.h -- libkdens' MPI transport: a kdens_comm (kdens.h,
 * "Communicators") whose operations are MPI calls.  It lives in a library
 * of its own, libkdens_mpi, built with `make MPI=1` (Debian's
 * libopenmpi-dev; `pkg-config --cflags --libs kdens-mpi`); libkdens itself
 * never links MPI.  docs/mpi.md tells how to build, link and run it, and how
 * to write another transport.
 *
 * This header does not include mpi.h: an application that only passes
 * MPI_COMM_WORLD's duplicate around needs no MPI flags to include it.
 *
 * MPI's life is the application's:
 *  - MPI_Init or MPI_Init_thread is called by the application before
 *    creating a communicator, and MPI_Finalize after freeing every one
 *    (kdens_comm_free; a communicator freed after MPI_Finalize leaks its
 *    duplicate, since MPI can no longer free it).
 *  - Threads: the library calls a communicator from one thread at a time
 *    (never concurrently), and only the thread that calls the library's
 *    distributed functions does; its own compute threads never call MPI.
 *    MPI_THREAD_FUNNELED suffices when that thread is the one that
 *    initialised MPI, MPI_THREAD_SERIALIZED is needed otherwise, and
 *    MPI_THREAD_MULTIPLE when the application itself calls MPI from other
 *    threads meanwhile.
 *  - Each communicator works on its own duplicate of the given MPI
 *    communicator (MPI_Comm_dup), so its messages never mix with the
 *    application's.  The duplicate's error handler is MPI_ERRORS_RETURN: an
 *    MPI error is returned as KDENS_E_IO with MPI's error string in
 *    kdens_errmsg() (naming the MPI call), never an abort -- except
 *    kdens_comm_ops.abort, which calls MPI_Abort on purpose.  (The calls
 *    that make the duplicate run under the given communicator's own error
 *    handler: MPI's default, MPI_ERRORS_ARE_FATAL, aborts on their failure.)
 *
 * What the operations promise beyond kdens_comm_ops:
 *  - The allreduces add in rank order (rank 0's value, then rank 1's, ...)
 *    whatever MPI's algorithms: every rank receives the same bits, and a run
 *    repeated with the same ranks gives the same sums.  Vectors of any
 *    length (beyond INT_MAX too) are reduced in pieces of 4M values with
 *    bounded scratch memory (about one piece).
 *  - broadcast and send move any number of bytes (0, or beyond 2 GiB) in
 *    pieces of at most 1 GiB; send is MPI_Send: it may wait until the
 *    receiver takes the message.  Ranks exchange raw bytes: every rank must
 *    run on the same kind of machine (byte order, type sizes).
 *  - Tags 0 .. 255 of send and recv are the library's; others are
 *    KDENS_E_ARG.
 *
 * Copyright (c) 2026 the libkdens authors.  MIT licence, see LICENSE.
 */
#ifndef KDENS_MPI_H
#define KDENS_MPI_H

#include "kdens.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* MPI communicators                                                          */
/* ------------------------------------------------------------------------ */

/* A communicator over every process of the MPI job: a duplicate of
 * MPI_COMM_WORLD.  Collective: every rank calls it.  Errors: KDENS_E_ARG
 * (NULL out), KDENS_E_STATE (MPI not initialised, or already finalised),
 * KDENS_E_NOMEM, KDENS_E_IO (MPI failed). */
KDENS_API kdens_status kdens_comm_mpi_create(kdens_comm **out);
/* The same over a duplicate of the MPI communicator that mpi_comm points to
 * (a `const MPI_Comm *`: e.g. the result of MPI_Comm_split, to run several
 * groups of ranks side by side); the caller may free its own communicator
 * afterwards.  Collective over that communicator.  Errors as
 * kdens_comm_mpi_create, and KDENS_E_ARG for a NULL mpi_comm,
 * MPI_COMM_NULL or an intercommunicator. */
KDENS_API kdens_status kdens_comm_mpi_create_from(const void *mpi_comm, kdens_comm **out);

#ifdef __cplusplus
}
#endif

#endif /* KDENS_MPI_H */

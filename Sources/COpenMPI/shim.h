// The few MPI calls MetaCore makes, as functions Swift can call: Open MPI's handles (MPI_COMM_WORLD,
// MPI_FLOAT, MPI_SUM, ...) are macros over global objects, which Swift does not import.
//
// Calls used: MPI_Initialized, MPI_Init_thread (MPI_THREAD_FUNNELED: only the thread that called it makes MPI
// calls), MPI_Comm_rank, MPI_Comm_size, MPI_Comm_set_errhandler (MPI_ERRORS_RETURN: a failed call returns its
// error, which becomes a Swift error, instead of aborting inside the library), MPI_Allgatherv (in place),
// MPI_Allreduce (in place), MPI_Bcast, MPI_Barrier, MPI_Error_string, MPI_Abort, MPI_Finalize.
#ifndef METACORE_OPENMPI_SHIM_H
#define METACORE_OPENMPI_SHIM_H

#include <mpi.h>

/// Starts MPI; returns MPI_SUCCESS or an error code. `rank` and `size` are this process's place in
/// MPI_COMM_WORLD.
static inline int mc_mpi_start(int *rank, int *size) {
    int started = 0, provided = 0, code;
    MPI_Initialized(&started);
    if (!started && (code = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS) return code;
    if ((code = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN)) != MPI_SUCCESS) return code;
    if ((code = MPI_Comm_rank(MPI_COMM_WORLD, rank)) != MPI_SUCCESS) return code;
    return MPI_Comm_size(MPI_COMM_WORLD, size);
}

/// Every rank's block of `buffer`, gathered in place: rank r's `counts[r]` elements start at `offsets[r]`.
static inline int mc_mpi_allgather_float(float *buffer, const int *counts, const int *offsets) {
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, counts, offsets, MPI_FLOAT, MPI_COMM_WORLD);
}

static inline int mc_mpi_allgather_double(double *buffer, const int *counts, const int *offsets) {
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, counts, offsets, MPI_DOUBLE, MPI_COMM_WORLD);
}

/// The elementwise sum over the ranks of `buffer`, in place on every rank.
static inline int mc_mpi_allreduce_sum_float(float *buffer, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static inline int mc_mpi_broadcast_double(double *buffer, int count, int root) {
    return MPI_Bcast(buffer, count, MPI_DOUBLE, root, MPI_COMM_WORLD);
}

static inline int mc_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

/// MPI's description of error `code`, into `text` (at least MPI_MAX_ERROR_STRING bytes).
static inline void mc_mpi_error_string(int code, char *text, int capacity) {
    int length = 0;
    if (capacity <= MPI_MAX_ERROR_STRING || MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
    text[length] = 0;
}

static inline int mc_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING + 1; }

/// Ends every process of the job with `code`.
static inline void mc_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

static inline int mc_mpi_finish(void) { return MPI_Finalize(); }

#endif

// Open MPI seen by Swift: MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are
// macros over global symbols that Swift cannot import, so the few calls Funnel makes are
// wrapped here. Element types are passed as a small code (see fmpi_type).
#include <mpi.h>
#include <stddef.h>

enum { FMPI_FLOAT = 0, FMPI_DOUBLE = 1, FMPI_INT32 = 2, FMPI_INT64 = 3, FMPI_UINT8 = 4 };

static inline MPI_Datatype fmpi_type(int code) {
    switch (code) {
    case FMPI_FLOAT: return MPI_FLOAT;
    case FMPI_DOUBLE: return MPI_DOUBLE;
    case FMPI_INT32: return MPI_INT32_T;
    case FMPI_INT64: return MPI_INT64_T;
    default: return MPI_UINT8_T;
    }
}

/// MPI_Init_thread asking for MPI_THREAD_SERIALIZED (one thread at a time calls MPI);
/// errors are returned, not fatal. Returns MPI's error code; `provided` gets the level.
static inline int fmpi_init(int *provided) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) { MPI_Query_thread(provided); return MPI_SUCCESS; }
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
    if (rc == MPI_SUCCESS) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return rc;
}
static inline int fmpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int fmpi_finalize(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    return finalized ? MPI_SUCCESS : MPI_Finalize();
}
static inline int fmpi_rank(void) { int r = 0; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; }
static inline int fmpi_size(void) { int s = 1; MPI_Comm_size(MPI_COMM_WORLD, &s); return s; }
static inline int fmpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }
static inline int fmpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

static inline int fmpi_allreduce_sum(void *buffer, int count, int type) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, fmpi_type(type), MPI_SUM, MPI_COMM_WORLD);
}
static inline int fmpi_allreduce_max(void *buffer, int count, int type) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, fmpi_type(type), MPI_MAX, MPI_COMM_WORLD);
}
static inline int fmpi_allgather_int32(const int *value, int *out) {
    return MPI_Allgather(value, 1, MPI_INT, out, 1, MPI_INT, MPI_COMM_WORLD);
}
static inline int fmpi_allgatherv(const void *send, int count, void *receive,
                                  const int *counts, const int *displacements, int type) {
    return MPI_Allgatherv(send, count, fmpi_type(type), receive, counts, displacements,
                          fmpi_type(type), MPI_COMM_WORLD);
}
static inline int fmpi_alltoall_int32(const int *send, int *receive) {
    return MPI_Alltoall(send, 1, MPI_INT, receive, 1, MPI_INT, MPI_COMM_WORLD);
}
static inline int fmpi_alltoallv(const void *send, const int *sendCounts, const int *sendDisplacements,
                                 void *receive, const int *receiveCounts, const int *receiveDisplacements, int type) {
    return MPI_Alltoallv(send, sendCounts, sendDisplacements, fmpi_type(type),
                         receive, receiveCounts, receiveDisplacements, fmpi_type(type), MPI_COMM_WORLD);
}
static inline int fmpi_bcast(void *buffer, int count, int type, int root) {
    return MPI_Bcast(buffer, count, fmpi_type(type), root, MPI_COMM_WORLD);
}
static inline void fmpi_error_string(int code, char *out, int capacity) {
    int length = 0;
    if (capacity <= 0) return;
    if (capacity < MPI_MAX_ERROR_STRING) { out[0] = 0; return; }
    MPI_Error_string(code, out, &length);
    out[length < capacity ? length : capacity - 1] = 0;
}
static inline int fmpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }

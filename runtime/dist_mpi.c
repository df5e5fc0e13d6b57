/*
 * dist_mpi.c: a run of mpirun's processes (cnnc --mpi links it), through
 * Open MPI. Every process trains on its part of each batch; the gradients,
 * the batch norms' statistics and the evaluation's sums are added with
 * MPI_Allreduce, so that every process holds the same weights (train.c,
 * step.c). Errors return (MPI_ERRORS_RETURN) and end the run with a message
 * naming the call; a process that dies ends the job through mpirun, which
 * kills the others.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

static int rank, size = 1;

static void check(int rc, const char *call)
{
    if (rc == MPI_SUCCESS)
        return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fprintf(stderr, "cnn: rank %d of %d: %s failed: %s\n", rank, size, call, text);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

int dist_start(int *argc, char ***argv)
{
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "cnn: MPI_Init failed (run the program with mpirun)\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank > 0 && !freopen("/dev/null", "w", stdout))
        return 1;                   /* rank 0 alone reports */
    return 0;
}

void dist_end(void)
{
    MPI_Finalize();
}

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }

/* in pieces, MPI's counts being ints */
void dist_sum(float *data, int64_t n)
{
    for (int64_t i = 0; i < n; i += 1 << 28) {
        int k = (int)(n - i < (1 << 28) ? n - i : 1 << 28);
        check(MPI_Allreduce(MPI_IN_PLACE, data + i, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    }
}

void dist_sum_f64(double *data, int n)
{
    check(MPI_Allreduce(MPI_IN_PLACE, data, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
}

bool dist_all(bool ok)
{
    int v = ok;
    check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD), "MPI_Allreduce");
    return v;
}

bool dist_agree(uint64_t value, const char *what, char *err, size_t es)
{
    unsigned long long mine = value, *all = malloc((size_t)size * sizeof *all);
    check(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, MPI_COMM_WORLD),
          "MPI_Allgather");
    size_t len = 0;
    int differ = 0;
    for (int r = 1; r < size; r++)
        if (all[r] != all[0] && len < es)
            len += (size_t)snprintf(err + len, es - len, "%s%d", differ++ ? ", " : "", r);
    if (differ && len < es)
        snprintf(err + len, es - len, " %s other %s than rank 0 (all must run the same)",
                 differ == 1 ? "holds" : "hold", what);
    if (differ) {
        char head[64];
        snprintf(head, sizeof head, "rank%s ", differ == 1 ? "" : "s");
        size_t h = strlen(head);
        if (len + h < es) {
            memmove(err + h, err, strlen(err) + 1);
            memcpy(err, head, h);
        }
    }
    free(all);
    return !differ;
}

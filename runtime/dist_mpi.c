/*
 * dist_mpi.c: a run of mpirun's processes (cnnc --mpi links it), through
 * Open MPI. Every process trains on its part of each batch; the gradients,
 * the batch norms' statistics and the evaluation's sums are added with
 * MPI_Allreduce, so that every process holds the same weights (train.c,
 * step.c). Errors return (MPI_ERRORS_RETURN) and end the run with a message
 * naming the call; a process that dies ends the job through mpirun, which
 * kills the others.
 *
 * Every collective is started nonblocking and waited for here, on a clock:
 * a process that hangs without dying (stopped, spinning, cut off) leaves
 * the others waiting in a collective, and after the timeout
 * (dist_set_timeout, the program's --mpi-timeout) the first of them ends
 * the job with a message naming the call and MPI_Abort, which mpirun
 * carries to every process. The wait polls, as MPI's blocking calls do,
 * and after a millisecond sleeps between polls, so that more processes
 * than cores still progress.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime.h"

static int rank, size = 1;
static int timeout = 300;           /* seconds */
/* dist_sum_start's requests, until dist_sum_finish */
static MPI_Request *started;
static int nstarted, started_cap;

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

void dist_set_timeout(int seconds)
{
    timeout = seconds;
}

/* Waits for n requests; past the timeout, ends the job. */
static void wait_for(int n, MPI_Request *reqs, const char *call)
{
    double since = 0;
    for (long polls = 0;; polls++) {
        int done = 0;
        check(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), call);
        if (done)
            return;
        if (polls < 1024)
            continue;
        double now = MPI_Wtime();
        if (since == 0)
            since = now;
        if (timeout > 0 && now - since > timeout) {
            fprintf(stderr, "cnn: rank %d of %d: no answer from the other processes in %d s (%s): one of "
                    "them hangs or cannot be reached; stopping the job (--mpi-timeout)\n", rank, size,
                    timeout, call);
            MPI_Abort(MPI_COMM_WORLD, 1);
            exit(1);
        }
        if (now - since > 1e-3)
            nanosleep(&(struct timespec){0, 50000}, NULL);
    }
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
    free(started);
    MPI_Finalize();
}

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }

/* One allreduce in place, waited for. */
static void allreduce(void *data, int n, MPI_Datatype type, MPI_Op op)
{
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, data, n, type, op, MPI_COMM_WORLD, &req), "MPI_Iallreduce");
    wait_for(1, &req, "MPI_Allreduce");
}

/* in pieces, MPI's counts being ints */
void dist_sum_start(float *data, int64_t n)
{
    for (int64_t i = 0; i < n; i += 1 << 28) {
        if (nstarted == started_cap)
            started = realloc(started, (size_t)(started_cap = 2 * started_cap + 8) * sizeof *started);
        int k = (int)(n - i < (1 << 28) ? n - i : 1 << 28);
        check(MPI_Iallreduce(MPI_IN_PLACE, data + i, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                             &started[nstarted++]), "MPI_Iallreduce");
    }
}

void dist_sum_finish(void)
{
    wait_for(nstarted, started, "MPI_Allreduce of the gradients");
    nstarted = 0;
}

void dist_progress(void)
{
    int done = 0;
    if (nstarted)
        check(MPI_Testall(nstarted, started, &done, MPI_STATUSES_IGNORE), "MPI_Iallreduce");
}

void dist_sum(float *data, int64_t n)
{
    for (int64_t i = 0; i < n; i += 1 << 28)
        allreduce(data + i, (int)(n - i < (1 << 28) ? n - i : 1 << 28), MPI_FLOAT, MPI_SUM);
}

void dist_sum_f64(double *data, int n)
{
    allreduce(data, n, MPI_DOUBLE, MPI_SUM);
}

bool dist_all(bool ok)
{
    int v = ok;
    allreduce(&v, 1, MPI_INT, MPI_LAND);
    return v;
}

bool dist_agree(uint64_t value, const char *what, char *err, size_t es)
{
    unsigned long long mine = value, *all = malloc((size_t)size * sizeof *all);
    MPI_Request req;
    check(MPI_Iallgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, MPI_COMM_WORLD, &req),
          "MPI_Iallgather");
    wait_for(1, &req, "MPI_Allgather");
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

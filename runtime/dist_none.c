/* dist_none.c: a run of one process (the programs cnnc links without
 * --mpi): rank 0 of 1, every collective the identity. */
#include "runtime.h"

int dist_start(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

void dist_end(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
void dist_sum(float *data, int64_t n) { (void)data, (void)n; }
void dist_sum_f64(double *data, int n) { (void)data, (void)n; }
bool dist_all(bool ok) { return ok; }
void dist_sum_start(float *data, int64_t n) { (void)data, (void)n; }
void dist_sum_finish(void) {}
void dist_progress(void) {}
void dist_set_timeout(int seconds) { (void)seconds; }

bool dist_agree(uint64_t value, const char *what, char *err, size_t es)
{
    (void)value, (void)what, (void)err, (void)es;
    return true;
}

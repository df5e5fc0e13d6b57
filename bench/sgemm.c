/* sgemm.c: OpenBLAS's single-precision matrix multiply, 1024 x 1024 x 1024 on
 * one thread, GFLOP/s (best of 5), for bench/run's honest peak: the larger of
 * this and bench/peak.c's FMA loop. libopenblas-dev is a benchmark-only
 * dependency. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 1024, RUNS = 5 };

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
    openblas_set_num_threads(1);
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N),
          *c = malloc(sizeof(float) * N * N);
    if (!a || !b || !c)
        return 1;
    for (long i = 0; i < (long)N * N; i++)
        a[i] = (float)(i % 13) * 0.01f, b[i] = (float)(i % 7) * 0.02f, c[i] = 0;
    double best = 1e30;
    for (int r = 0; r < RUNS; r++) {
        double t0 = seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        double t = seconds() - t0;
        best = t < best ? t : best;
    }
    printf("sgemm_gflops %.1f\n", 2.0 * N * N * N / best / 1e9 + (c[7] == 12345 ? 1 : 0));
    free(a), free(b), free(c);
    return 0;
}

/* peak.c: this core's FP32 FMA peak, for bench/run: independent vector FMAs
 * (GCC vector extensions, as wide as -march=native allows), GFLOP/s, the best
 * of 5 runs (one slow run on a shared machine must not lower the peak). 12
 * accumulators cover two FMA pipes of 6 cycles' latency and, with the two
 * operands, fit AVX2's 16 registers (16 would spill and halve the rate).
 * bench/run takes the larger of this and OpenBLAS's sgemm (bench/sgemm.c). */
#include <stdio.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vec __attribute__((vector_size(LANES * 4)));

enum { ACC = 12, RUNS = 5 };

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
    vec acc[ACC], a, b;
    for (int i = 0; i < LANES; i++)
        a[i] = 1.0f + 1e-7f * (float)i, b[i] = 0.999999f;
    for (int j = 0; j < ACC; j++)
        acc[j] = a * (float)j;
    long iters = 50000000 / ACC;
    double best = 1e30;
    for (int r = 0; r < RUNS; r++) {
        double t0 = seconds();
        for (long i = 0; i < iters; i++)
            for (int j = 0; j < ACC; j++)
                acc[j] = acc[j] * b + a;
        double t = seconds() - t0;
        best = t < best ? t : best;
    }
    float sink = 0;
    for (int j = 0; j < ACC; j++)
        sink += acc[j][0];
    printf("peak_gflops %.1f\n", (double)iters * ACC * LANES * 2 / best / 1e9 + (sink == 12345 ? 1 : 0));
    return 0;
}

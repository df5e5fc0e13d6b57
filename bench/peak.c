/* peak.c: this core's FP32 FMA peak, for bench/run: independent vector FMAs
 * (GCC vector extensions, as wide as -march=native allows), GFLOP/s. */
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

int main(void)
{
    enum { ACC = 12 };
    vec acc[ACC], a, b;
    for (int i = 0; i < LANES; i++)
        a[i] = 1.0f + 1e-7f * (float)i, b[i] = 0.999999f;
    for (int j = 0; j < ACC; j++)
        acc[j] = a * (float)j;
    long iters = 200000000 / ACC;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < ACC; j++)
            acc[j] = acc[j] * b + a;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    float sink = 0;
    for (int j = 0; j < ACC; j++)
        sink += acc[j][0];
    printf("peak_gflops %.1f\n", (double)iters * ACC * LANES * 2 / s / 1e9 + (sink == 12345 ? 1 : 0));
    return 0;
}

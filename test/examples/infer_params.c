/*
 * infer_params.c: a program around an embedded object whose weights come at
 * run time: reads params (M_PARAMS_SIZE floats, .cnnw order, running
 * statistics included) and `n` images, writes their outputs through m_infer.
 */
#include <stdio.h>
#include <stdlib.h>
#include "m.h"

static int read_floats(const char *path, float *dst, size_t n)
{
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(dst, sizeof(float), n, f) : 0;
    if (f)
        fclose(f);
    return got == n;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    int n = atoi(argv[1]);
    if (n < 1 || n > M_BATCH)
        return 2;
    float *params = malloc(sizeof(float) * M_PARAMS_SIZE);
    float *x = malloc(sizeof(float) * (size_t)n * M_INPUT_SIZE);
    float *y = malloc(sizeof(float) * (size_t)n * M_OUTPUT_SIZE);
    void *ws = aligned_alloc(64, (M_WORKSPACE_SIZE + 63) / 64 * 64);
    if (!read_floats(argv[2], params, M_PARAMS_SIZE) || !read_floats(argv[3], x, (size_t)n * M_INPUT_SIZE))
        return 1;
    m_infer(params, x, y, n, ws);
    FILE *f = fopen(argv[4], "wb");
    if (!f || fwrite(y, sizeof(float), (size_t)n * M_OUTPUT_SIZE, f) != (size_t)n * M_OUTPUT_SIZE)
        return 1;
    fclose(f);
    free(ws);
    free(params);
    free(x);
    free(y);
    return 0;
}

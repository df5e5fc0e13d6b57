/*
 * infer_main.c: a minimal program around an embedded object (weights built
 * in): reads `n` images of M_INPUT_SIZE floats, writes their outputs. Used to
 * run a cross-compiled object under qemu-user.
 */
#include <stdio.h>
#include <stdlib.h>
#include "m.h"

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int n = atoi(argv[1]);
    if (n < 1 || n > M_BATCH)
        return 2;
    float *x = malloc(sizeof(float) * (size_t)n * M_INPUT_SIZE);
    float *y = malloc(sizeof(float) * (size_t)n * M_OUTPUT_SIZE);
    FILE *f = fopen(argv[2], "rb");
    if (!f || fread(x, sizeof(float), (size_t)n * M_INPUT_SIZE, f) != (size_t)n * M_INPUT_SIZE)
        return 1;
    fclose(f);
    void *ws = aligned_alloc(64, (M_WORKSPACE_SIZE + 63) / 64 * 64);
    m_infer(NULL, x, y, n, ws);
    f = fopen(argv[3], "wb");
    if (!f || fwrite(y, sizeof(float), (size_t)n * M_OUTPUT_SIZE, f) != (size_t)n * M_OUTPUT_SIZE)
        return 1;
    fclose(f);
    free(ws);
    free(x);
    free(y);
    return 0;
}

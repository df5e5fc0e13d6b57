/*
 * classify.c: embedding a compiled model in a C program.
 *
 *   cnnc -c --weights W.cnnw model.cnn -o model.o   # writes model.o and model.h
 *   cc -I. classify.c model.o -lm -o classify
 *   ./classify image.ppm
 *
 * The model's weights are built into the object (--weights), so params is
 * NULL; the caller owns every byte of memory the model uses. Build with
 * -DMODEL_HEADER='"name.h"' -DMODEL=name for another model than `m`.
 */
#include <stdio.h>
#include <stdlib.h>
#ifndef MODEL_HEADER
#define MODEL_HEADER "m.h"
#endif
#include MODEL_HEADER

/* A binary PGM/PPM of exactly the model's input size, scaled to [0, 1]. */
static int read_pnm(const char *path, float *out)
{
    FILE *f = fopen(path, "rb");
    int w, h, maxval;
    char kind;
    if (!f || fscanf(f, "P%c %d %d %d", &kind, &w, &h, &maxval) != 4 || fgetc(f) == EOF ||
        w != M_INPUT_WIDTH || h != M_INPUT_HEIGHT || (kind == '5' ? 1 : 3) != M_INPUT_CHANNELS) {
        fprintf(stderr, "classify: %s: not a %dx%d image with %d channel(s)\n", path,
                M_INPUT_WIDTH, M_INPUT_HEIGHT, M_INPUT_CHANNELS);
        if (f)
            fclose(f);
        return 0;
    }
    for (int i = 0; i < M_INPUT_SIZE; i++) {
        int c = fgetc(f);
        if (c == EOF) {
            fprintf(stderr, "classify: %s: truncated\n", path);
            fclose(f);
            return 0;
        }
        out[i] = (float)c / (float)maxval;
    }
    fclose(f);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: classify image.ppm\n");
        return 1;
    }
    static float input[M_INPUT_SIZE], output[M_OUTPUT_SIZE];
    void *workspace = aligned_alloc(64, (M_WORKSPACE_SIZE + 63) / 64 * 64);
    if (!workspace || !read_pnm(argv[1], input))
        return 1;
    m_infer(NULL, input, output, 1, workspace);
    int best = 0;
    for (int i = 1; i < M_OUTPUT_SIZE; i++)
        if (output[i] > output[best])
            best = i;
    printf("%s: class %d (%.4f)\n", argv[1], best, output[best]);
    free(workspace);
    return 0;
}

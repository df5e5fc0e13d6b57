/*
 * classify.c: embedding a compiled model in a C program.
 *
 *   cnnc -c --weights W.cnnw model.cnn -o model.o   # writes model.o and model.h
 *   cc -I. -DMODEL=m -DMODEL_CAPS=M -DMODEL_HEADER='"model.h"' classify.c model.o -lm -o classify
 *   ./classify image.ppm
 *
 * MODEL is the prefix of the header's functions (the model's name in lower
 * case, or cnnc's --prefix), MODEL_CAPS that of its constants; both default
 * to a model named `m` in m.h. The model's weights are built into the object
 * (--weights), so params is NULL; the caller owns every byte of memory the
 * model uses.
 */
#include <stdio.h>
#include <stdlib.h>
#ifndef MODEL
#define MODEL m
#define MODEL_CAPS M
#endif
#ifndef MODEL_HEADER
#define MODEL_HEADER "m.h"
#endif
#include MODEL_HEADER

/* the header's names: C(INPUT_SIZE) is M_INPUT_SIZE, F(infer) is m_infer */
#define PASTE(a, b) a##_##b
#define NAME(a, b) PASTE(a, b)
#define C(x) NAME(MODEL_CAPS, x)
#define F(x) NAME(MODEL, x)

/* A binary PGM/PPM of exactly the model's input size, scaled to [0, 1]. */
static int read_pnm(const char *path, float *out)
{
    FILE *f = fopen(path, "rb");
    int w, h, maxval;
    char kind;
    if (!f || fscanf(f, "P%c %d %d %d", &kind, &w, &h, &maxval) != 4 || fgetc(f) == EOF ||
        w != C(INPUT_WIDTH) || h != C(INPUT_HEIGHT) || (kind == '5' ? 1 : 3) != C(INPUT_CHANNELS)) {
        fprintf(stderr, "classify: %s: not a %dx%d image with %d channel(s)\n", path,
                C(INPUT_WIDTH), C(INPUT_HEIGHT), C(INPUT_CHANNELS));
        if (f)
            fclose(f);
        return 0;
    }
    for (int i = 0; i < C(INPUT_SIZE); i++) {
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
    static float input[C(INPUT_SIZE)], output[C(OUTPUT_SIZE)];
    void *workspace = aligned_alloc(64, (C(WORKSPACE_SIZE) + 63) / 64 * 64);
    if (!workspace || !read_pnm(argv[1], input))
        return 1;
    F(infer)(NULL, input, output, 1, workspace);
    int best = 0;
    for (int i = 1; i < C(OUTPUT_SIZE); i++)
        if (output[i] > output[best])
            best = i;
    printf("%s: class %d (%.4f)\n", argv[1], best, output[best]);
    free(workspace);
    return 0;
}

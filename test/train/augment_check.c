/*
 * augment_check.c: augment_image against torchvision's semantics, derived
 * here independently: the output must be, for exactly one (i, j, mirror),
 * out[y][x] = padded[y + i][x' + j] with x' = W-1-x when mirrored, padded the
 * input with P zeros each side (every pixel of the test image is distinct and
 * nonzero, so the draw can be read off the output). Over many images every
 * one of the (2P+1)^2 offsets and both flips must occur, and the same
 * (seed, epoch, index) must give the same image.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "../../runtime/runtime.h"

enum { H = 6, W = 5, C = 2, P = 2, IMAGES = 3000 };

static float padded(const float *src, int y, int x, int k)
{
    y -= P, x -= P;
    return y >= 0 && y < H && x >= 0 && x < W ? src[(y * W + x) * C + k] : 0.0f;
}

static bool matches(const float *src, const float *out, int i, int j, bool mirror)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < C; k++)
                if (out[(y * W + x) * C + k] != padded(src, y + i, (mirror ? W - 1 - x : x) + j, k))
                    return false;
    return true;
}

int main(void)
{
    float src[H * W * C], out[H * W * C], again[H * W * C];
    for (int p = 0; p < H * W * C; p++)
        src[p] = (float)(p + 1);
    static int seen[2 * P + 1][2 * P + 1][2];
    int bad = 0, kinds = 0;
    for (int64_t n = 0; n < IMAGES; n++) {
        augment_image(src, out, H, W, C, P, true, 7, 3, n);
        augment_image(src, again, H, W, C, P, true, 7, 3, n);
        int found = 0;
        for (int i = 0; i <= 2 * P; i++)
            for (int j = 0; j <= 2 * P; j++)
                for (int f = 0; f < 2; f++)
                    if (matches(src, out, i, j, f)) {
                        found++;
                        kinds += seen[i][j][f]++ == 0;
                    }
        bad += found != 1 || memcmp(out, again, sizeof out) != 0;
    }
    /* without flip, never mirrored; another epoch, other draws */
    int mirrored = 0, moved = 0;
    for (int64_t n = 0; n < IMAGES; n++) {
        int i, j, i2, j2;
        bool f, f2;
        augment_draw(7, 3, n, P, false, &i, &j, &f);
        augment_draw(7, 4, n, P, false, &i2, &j2, &f2);
        mirrored += f;
        moved += i != i2 || j != j2;
    }
    printf("%d images: %d not an exact crop and flip; %d of %d (offset, flip) kinds seen; "
           "%d mirrored without flip; another epoch moves %s\n", IMAGES, bad, kinds,
           2 * (2 * P + 1) * (2 * P + 1), mirrored, moved > IMAGES / 2 ? "most" : "few");
    return 0;
}

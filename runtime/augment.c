/*
 * augment.c: the train block's `augment crop=P flip`, on one image.
 *
 * torchvision's RandomCrop(size, padding=P) then RandomHorizontalFlip(0.5):
 * the image zero-padded by P on each side, cropped back to its size at a
 * random top-left (i, j) in [0, 2P] x [0, 2P], then mirrored left to right
 * with probability 1/2. The draws are a hash of (seed, epoch, the image's
 * index in the data set), so an image is augmented alike whatever the batch,
 * the thread count or the order of the run; no state is kept.
 */
#include "runtime.h"

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void augment_draw(uint64_t seed, int epoch, int64_t index, int pad, bool flip, int *i, int *j,
                  bool *mirror)
{
    uint64_t r = mix(mix(seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch) + (uint64_t)index);
    uint64_t span = 2 * (uint64_t)pad + 1;
    *i = (int)(r % span);
    *j = (int)((r >> 21) % span);
    *mirror = flip && (r >> 63);
}

void augment_image(const float *src, float *dst, int h, int w, int c, int pad, bool flip,
                   uint64_t seed, int epoch, int64_t index)
{
    int i, j;
    bool mirror;
    augment_draw(seed, epoch, index, pad, flip, &i, &j, &mirror);
    for (int y = 0; y < h; y++) {
        int sy = y + i - pad;
        for (int x = 0; x < w; x++) {
            int sx = (mirror ? w - 1 - x : x) + j - pad;
            float *out = dst + ((int64_t)y * w + x) * c;
            bool in = sy >= 0 && sy < h && sx >= 0 && sx < w;
            const float *from = src + ((int64_t)sy * w + sx) * c;
            for (int k = 0; k < c; k++)
                out[k] = in ? from[k] : 0.0f;
        }
    }
}

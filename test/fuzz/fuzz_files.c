/*
 * fuzz_files.c: libFuzzer harness for the IDX (plain and gzip'd), PGM/PPM and
 * CIFAR-10 readers, which read paths: each input is written to a file first.
 * Built four times: -DFUZZ_IDX for IDX image and label files, -DFUZZ_PNM for
 * images, -DFUZZ_CIFAR for CIFAR-10 batches, -DFUZZ_IMAGE for the PNG, JPEG
 * and PNM decoders of image folders.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "../../runtime/cnnrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/cnnc-fuzz-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    char err[1024];
#ifdef FUZZ_IDX
    CnnImages im = {0};
    if (cnn_read_idx_images(path, &im, err, sizeof err))
        free(im.pixels);
    int32_t *labels = NULL;
    if (cnn_read_idx_labels(path, 4, 10, &labels, err, sizeof err))
        free(labels);
#elif defined FUZZ_IMAGE
    /* the bytes under each decoder's suffix, at the size and resized */
    static const char *const suffix[] = {".png", ".jpg", ".ppm"};
    float px[9 * 7 * 3];
    for (int i = 0; i < 3; i++) {
        char named[80];
        snprintf(named, sizeof named, "%s%s", path, suffix[i]);
        FILE *g = fopen(named, "wb");
        if (!g)
            continue;
        fwrite(data, 1, size, g);
        fclose(g);
        cnn_read_image(named, 9, 7, 3, false, px, err, sizeof err);
        cnn_read_image(named, 9, 7, 1, true, px, err, sizeof err);
        unlink(named);
    }
#elif defined FUZZ_CIFAR
    CnnImages im;
    int32_t *labels;
    const char *paths[] = {path, path};
    if (cnn_read_cifar(paths, 2, 10, &im, &labels, err, sizeof err)) {
        free(im.pixels);
        free(labels);
    }
#else
    float px[28 * 28 * 3];
    cnn_read_pnm(path, 28, 28, 1, px, err, sizeof err);
    cnn_read_pnm(path, 4, 7, 3, px, err, sizeof err);
#endif
    return 0;
}

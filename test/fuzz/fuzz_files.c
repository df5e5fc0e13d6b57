/*
 * fuzz_files.c: libFuzzer harness for the IDX (plain and gzip'd), PGM/PPM and
 * CIFAR-10 readers, which read paths: each input is written to a file first.
 * Built three times: -DFUZZ_IDX for IDX image and label files, -DFUZZ_PNM for
 * images, -DFUZZ_CIFAR for CIFAR-10 batches.
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

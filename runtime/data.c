/*
 * data.c: reading images: MNIST-style IDX files (plain or gzip'd, through
 * zlib, which reads both), CIFAR-10's binary batches, and PGM/PPM images for
 * `predict`.
 *
 * Headers are checked before anything large is allocated, and the data is
 * read into a buffer that grows only as bytes arrive: a header that claims
 * more than the file holds costs nothing and is refused as truncated.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "cnnrt.h"

enum { MAX_IDX_BYTES = 1 << 30 };       /* 1 GiB of pixels: 1.3 million 28x28 images */

static bool read_be32(gzFile f, uint32_t *v)
{
    unsigned char b[4];
    if (gzread(f, b, 4) != 4)
        return false;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return true;
}

/* Reads exactly n bytes, growing the buffer as data comes. */
static unsigned char *read_body(gzFile f, size_t n, size_t *got)
{
    size_t cap = n < (1 << 20) ? n : (1 << 20);
    unsigned char *buf = malloc(cap ? cap : 1);
    *got = 0;
    while (*got < n) {
        if (*got == cap) {
            cap = cap * 2 < n ? cap * 2 : n;
            buf = realloc(buf, cap);
        }
        int r = gzread(f, buf + *got, (unsigned)(cap - *got));
        if (r <= 0)
            break;
        *got += (size_t)r;
    }
    return buf;
}

static gzFile open_idx(const char *path, uint32_t *magic, char *err, size_t es)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, es, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char b[4];
    int got = gzread(f, b, 4);
    *magic = got == 4 ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3] : 0;
    if (got != 4) {
        snprintf(err, es, got == 0 ? "%s: empty (an IDX file starts with a 4-byte magic number)"
                                   : "%s: not an IDX file (too short for a header)", path);
        gzclose(f);
        return NULL;
    }
    return f;
}

bool cnn_read_idx_images(const char *path, CnnImages *out, char *err, size_t es)
{
    uint32_t magic, d[4] = {0, 0, 0, 1};
    gzFile f = open_idx(path, &magic, err, es);
    if (!f)
        return false;
    if (magic != 0x803 && magic != 0x804) {
        snprintf(err, es, "%s: not an IDX image file (magic 0x%08x; expected 0x00000803 or "
                 "0x00000804, unsigned bytes in 3 or 4 dimensions)", path, magic);
        gzclose(f);
        return false;
    }
    int rank = magic == 0x803 ? 3 : 4;
    for (int i = 0; i < rank; i++)
        if (!read_be32(f, &d[i])) {
            snprintf(err, es, "%s: truncated IDX header", path);
            gzclose(f);
            return false;
        }
    uint64_t bytes = (uint64_t)d[0] * d[1] * d[2] * d[3];
    if (d[0] == 0 || d[1] == 0 || d[2] == 0 || d[3] == 0 || d[1] > 65536 || d[2] > 65536 ||
        d[3] > 4096 || bytes > MAX_IDX_BYTES) {
        snprintf(err, es, "%s: implausible IDX header (%u x %u x %u x %u)", path, d[0], d[1], d[2], d[3]);
        gzclose(f);
        return false;
    }
    size_t got;
    unsigned char *px = read_body(f, bytes, &got);
    unsigned char extra;
    bool more = gzread(f, &extra, 1) == 1;
    gzclose(f);
    if (got != bytes || more) {
        snprintf(err, es, "%s: the header says %u images of %ux%ux%u, but the file holds %s",
                 path, d[0], d[1], d[2], d[3], more ? "more bytes than that" : "only part of them");
        free(px);
        return false;
    }
    out->count = d[0];
    out->height = (int32_t)d[1];
    out->width = (int32_t)d[2];
    out->channels = (int32_t)d[3];
    out->pixels = malloc(bytes * sizeof(float));
    for (uint64_t i = 0; i < bytes; i++)
        out->pixels[i] = px[i] / 255.0f;
    free(px);
    return true;
}

bool cnn_read_idx_labels(const char *path, int64_t count, int32_t classes, int32_t **labels,
                         char *err, size_t es)
{
    uint32_t magic, n = 0;
    gzFile f = open_idx(path, &magic, err, es);
    if (!f)
        return false;
    if (magic != 0x801) {
        snprintf(err, es, "%s: not an IDX label file (magic 0x%08x; expected 0x00000801)", path, magic);
        gzclose(f);
        return false;
    }
    if (!read_be32(f, &n) || n != count) {
        snprintf(err, es, "%s: %u labels for %lld images", path, n, (long long)count);
        gzclose(f);
        return false;
    }
    size_t got;
    unsigned char *b = read_body(f, n, &got);
    gzclose(f);
    if (got != n) {
        snprintf(err, es, "%s: truncated (%zu of %u labels)", path, got, n);
        free(b);
        return false;
    }
    *labels = malloc((size_t)n * sizeof **labels);
    for (uint32_t i = 0; i < n; i++) {
        if (b[i] >= classes) {
            snprintf(err, es, "%s: label %u of image %u is out of range (the model has %d classes)",
                     path, b[i], i, classes);
            free(b);
            free(*labels);
            *labels = NULL;
            return false;
        }
        (*labels)[i] = b[i];
    }
    free(b);
    return true;
}

/* A PNM header number, after whitespace and # comments. */
static bool pnm_int(FILE *f, long *v)
{
    int ch;
    for (;;) {
        ch = fgetc(f);
        if (ch == '#')
            while (ch != '\n' && ch != EOF)
                ch = fgetc(f);
        else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
            break;
    }
    if (ch < '0' || ch > '9')
        return false;
    *v = 0;
    while (ch >= '0' && ch <= '9') {
        if (*v > 1000000)
            return false;
        *v = *v * 10 + (ch - '0');
        ch = fgetc(f);
    }
    return true;   /* the one whitespace after the number is consumed */
}

bool cnn_read_pnm(const char *path, int32_t h, int32_t w, int32_t c, float *out, char *err,
                  size_t es)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, es, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    char m[2];
    long W, H, maxval;
    bool ok = false;
    if (fread(m, 1, 2, f) != 2 || m[0] != 'P' || (m[1] != '5' && m[1] != '6')) {
        snprintf(err, es, "%s: not a binary PGM (P5) or PPM (P6) image", path);
        goto out;
    }
    int chans = m[1] == '5' ? 1 : 3;
    if (!pnm_int(f, &W) || !pnm_int(f, &H) || !pnm_int(f, &maxval) || maxval < 1 || maxval > 65535) {
        snprintf(err, es, "%s: malformed %s header", path, chans == 1 ? "PGM" : "PPM");
        goto out;
    }
    if (maxval > 255) {
        snprintf(err, es, "%s: a 16-bit %s (maxval %ld); only 8-bit images (maxval up to 255) "
                 "are supported", path, chans == 1 ? "PGM" : "PPM", maxval);
        goto out;
    }
    if (W != w || H != h || chans != c) {
        snprintf(err, es, "%s: a %ldx%ld %s image; the model takes %dx%d with %d channel(s)",
                 path, W, H, chans == 1 ? "grayscale" : "colour", w, h, c);
        goto out;
    }
    size_t n = (size_t)W * (size_t)H * (size_t)chans;
    unsigned char *px = malloc(n);
    if (fread(px, 1, n, f) != n) {
        snprintf(err, es, "%s: truncated (the pixels end early)", path);
        free(px);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (float)px[i] / (float)maxval;
    free(px);
    ok = true;
out:
    fclose(f);
    return ok;
}

/* ---- CIFAR-10's binary batches: records of a label byte and 3072 bytes,
 * each channel's 32x32 plane in turn ---- */

enum { CIFAR_SIDE = 32, CIFAR_PIXELS = CIFAR_SIDE * CIFAR_SIDE * 3, CIFAR_RECORD = 1 + CIFAR_PIXELS };

bool cnn_read_cifar(const char *const *paths, int npaths, int32_t classes, CnnImages *out,
                    int32_t **labels, char *err, size_t es)
{
    *out = (CnnImages){.height = CIFAR_SIDE, .width = CIFAR_SIDE, .channels = 3};
    *labels = NULL;
    for (int f = 0; f < npaths; f++) {
        size_t len;
        unsigned char *buf = cnn_read_all(paths[f], &len, (size_t)MAX_IDX_BYTES, err, es);
        if (!buf || len == 0 || len % CIFAR_RECORD != 0) {
            if (buf || len > (size_t)MAX_IDX_BYTES)
                snprintf(err, es, "%s: %zu bytes is not a whole number of CIFAR-10 records (3073 "
                         "bytes: a label, then 32x32 pixels of each of 3 channels)", paths[f], len);
            free(buf);
            free(out->pixels);
            free(*labels);
            *labels = NULL;
            return false;
        }
        int64_t n = (int64_t)(len / CIFAR_RECORD), base = out->count;
        out->pixels = realloc(out->pixels, (size_t)((base + n) * CIFAR_PIXELS) * sizeof(float));
        *labels = realloc(*labels, (size_t)(base + n) * sizeof **labels);
        for (int64_t r = 0; r < n; r++) {
            const unsigned char *rec = buf + r * CIFAR_RECORD;
            if (rec[0] >= classes) {
                snprintf(err, es, "%s: label %u of image %lld is out of range (the model has %d "
                         "classes)", paths[f], rec[0], (long long)r, classes);
                free(buf);
                free(out->pixels);
                free(*labels);
                *labels = NULL;
                return false;
            }
            (*labels)[base + r] = rec[0];
            /* channel-major planes to channels last */
            float *px = out->pixels + (base + r) * CIFAR_PIXELS;
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++)
                    px[p * 3 + c] = rec[1 + c * CIFAR_SIDE * CIFAR_SIDE + p] / 255.0f;
        }
        out->count += n;
        free(buf);
    }
    return true;
}

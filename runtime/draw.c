/*
 * draw.c: a small RGB canvas for the `show` pictures: rectangles, lines,
 * text in the embedded Terminus font (font.h), scaled tiles, and PNG output
 * through Debian's libpng, written atomically like every output file.
 */
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "font.h"
#include "runtime.h"

Canvas *canvas_new(int w, int h, uint32_t background)
{
    Canvas *c = malloc(sizeof *c);
    c->w = w;
    c->h = h;
    c->px = malloc((size_t)w * (size_t)h * 3);
    canvas_rect(c, 0, 0, w, h, background);
    return c;
}

void canvas_free(Canvas *c)
{
    if (c) {
        free(c->px);
        free(c);
    }
}

void canvas_set(Canvas *c, int x, int y, uint32_t rgb)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    unsigned char *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = (unsigned char)(rgb >> 16);
    p[1] = (unsigned char)(rgb >> 8);
    p[2] = (unsigned char)rgb;
}

void canvas_rect(Canvas *c, int x, int y, int w, int h, uint32_t rgb)
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++)
            canvas_set(c, i, j, rgb);
}

/* Bresenham, `thick` pixels wide. */
void canvas_line(Canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb, int thick)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        canvas_rect(c, x0 - thick / 2, y0 - thick / 2, thick, thick, rgb);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

int canvas_text(Canvas *c, int x, int y, const char *s, uint32_t rgb)
{
    for (; *s; s++, x += FONT_W) {
        unsigned char ch = (unsigned char)*s;
        const unsigned char *g = font_glyphs[(ch >= 32 && ch < 127 ? ch : '?') - 32];
        for (int r = 0; r < FONT_H; r++)
            for (int b = 0; b < FONT_W; b++)
                if (g[r] & (0x80 >> b))
                    canvas_set(c, x + b, y + r, rgb);
    }
    return x;
}

int canvas_text_width(const char *s)
{
    return (int)strlen(s) * FONT_W;
}

int canvas_text_height(void)
{
    return FONT_H;
}

/* h x w pixels of `chans` channels (each in [0, 1], channels last), each
 * pixel drawn as a scale x scale square at (x, y). */
void canvas_tile(Canvas *c, int x, int y, const float *v, int h, int w, int chans, int scale)
{
    for (int j = 0; j < h; j++)
        for (int i = 0; i < w; i++) {
            const float *p = v + ((size_t)j * (size_t)w + (size_t)i) * (size_t)chans;
            uint32_t rgb = 0;
            for (int k = 0; k < 3; k++) {
                float f = p[chans == 3 ? k : 0];
                int q = (int)(f * 255.0f + 0.5f);
                q = q < 0 ? 0 : q > 255 ? 255 : q;
                rgb = rgb << 8 | (uint32_t)q;
            }
            canvas_rect(c, x + i * scale, y + j * scale, scale, scale, rgb);
        }
}

bool canvas_write_png(const Canvas *c, const char *path, char *err, size_t es)
{
    CnnOut out;
    FILE *f = cnn_out_open(&out, path, "wb", err, es);
    if (!f)
        return false;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    bool ok = png && info;
    if (ok && setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < c->h; y++)
            png_write_row(png, c->px + (size_t)y * (size_t)c->w * 3);
        png_write_end(png, NULL);
    } else {
        ok = false;
        snprintf(err, es, "%s: cannot write the PNG", path);
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    ok = cnn_out_close(&out, f, err, es) && ok;
    if (!ok || !cnn_out_commit(&out, err, es)) {
        cnn_out_abort(&out);
        return false;
    }
    return true;
}

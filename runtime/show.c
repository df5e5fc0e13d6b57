/*
 * show.c: the compiled program's `show` command: what a network learned, as
 * pictures.
 *
 *   ./model show kernels --weights W [--layer NAME] -o kernels.png
 *   ./model show maps    --weights W [--layer NAME] image.pgm -o maps.png
 *   ./model show curve   metrics.csv -o curve.png      (or curve.svg)
 *
 * kernels: one row of tiles per conv layer, a tile per kernel, contrast
 * stretched per kernel (its smallest value black, largest white); a kernel
 * over 3 channels is one colour tile, over 1 channel one gray tile, over C
 * other channels C gray tiles side by side. maps: the input, then every conv
 * and pool layer's output for one image, a gray tile per channel, stretched
 * per channel (a map that is constant everywhere is black). curve: loss and
 * test accuracy per epoch from a --log file (curve.c). Labels use the
 * embedded font; every tile carries its kernel's or channel's number, and a
 * bar at the bottom shows what the shades mean. A sheet that would pass 4096
 * pixels becomes a sheet per layer; a layer too large for one gets its first
 * tiles, said so. With --verbose, tile places are printed on stdout, one line
 * each, so that scripts (and the tests) can find them: `tile LAYER INDEX X Y W H`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

enum { MARGIN = 8, GAP = 4, PER_ROW = 16, MAX_SIDE = 4096 };
#define WHITE 0xFFFFFFu
#define INK 0x202020u
#define FRAME 0xC0C0C0u
#define FAINT 0x808080u

static int tile_scale(int h, int w)
{
    int big = h > w ? h : w;
    int s = 48 / big;
    return s < 2 ? 2 : s > 12 ? 12 : s;
}

/* v[0..n) stretched to [0, 1] in place; a constant run becomes 0. */
static void stretch(float *v, int64_t n)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    for (int64_t i = 0; i < n; i++)
        v[i] = hi > lo ? (v[i] - lo) / (hi - lo) : 0.0f;
}

/* One picture is laid out twice: once to measure (c == NULL), once to draw. */
typedef struct Layout {
    Canvas *c;
    int x, y, row_h, w, h;
    bool verbose;                   /* print each tile's place */
} Layout;

static void place(Layout *l, int w, int h, int *x, int *y)
{
    *x = l->x;
    *y = l->y;
    l->x += w + GAP;
    if (h > l->row_h)
        l->row_h = h;
    if (l->x > l->w)
        l->w = l->x;
}

static void new_row(Layout *l)
{
    l->y += l->row_h + GAP;
    l->x = MARGIN;
    l->row_h = 0;
    if (l->y > l->h)
        l->h = l->y;
}

static void label(Layout *l, const char *text)
{
    if (l->c)
        canvas_text(l->c, l->x, l->y, text, INK);
    int w = canvas_text_width(text);
    if (l->x + w > l->w)
        l->w = l->x + w;
    l->y += canvas_text_height() + 2;
}

/* A tile of h x w x chans values (stretched already) at the layout's place,
 * its number (`caption`, or none when NULL) under it. */
static void tile(Layout *l, const char *layer, int index, const float *v, int h, int w, int chans,
                 const char *caption)
{
    int s = tile_scale(h, w), x, y, th = canvas_text_height() + 2;
    int cw = caption ? canvas_text_width(caption) : 0;
    place(l, w * s > cw ? w * s : cw, h * s + th, &x, &y);
    if (l->c) {
        canvas_rect(l->c, x - 1, y - 1, w * s + 2, h * s + 2, FRAME);
        canvas_tile(l->c, x, y, v, h, w, chans, s);
        if (caption)
            canvas_text(l->c, x, y + h * s + 2, caption, FAINT);
        if (l->verbose)
            printf("tile %s %d %d %d %d %d\n", layer, index, x, y, w * s, h * s);
    }
}

/* How many tiles of a layer go on a row, and in all, so that no side of the
 * picture passes MAX_SIDE pixels. */
static void tile_budget(int h, int w, int per_group, int *per_row, int *max_groups)
{
    int s = tile_scale(h, w), tw = w * s + GAP, th = h * s + canvas_text_height() + 2 + GAP;
    int fit = (MAX_SIDE - 4 * MARGIN) / tw;
    int groups_per_row = fit / per_group > 0 ? fit / per_group : 1;
    *per_row = groups_per_row < PER_ROW / per_group ? groups_per_row
             : PER_ROW / per_group > 0 ? PER_ROW / per_group : 1;
    int rows = (MAX_SIDE - 8 * MARGIN - 6 * th) / th;
    *max_groups = *per_row * (rows > 1 ? rows : 1);
}

/* A black-to-white bar: what a tile's shades mean. */
static void scale_bar(Layout *l, const char *what)
{
    new_row(l);
    int x, y, bw = 128, bh = 10;
    char text[160];
    snprintf(text, sizeof text, "each %s stretched from its smallest value to its largest:", what);
    label(l, text);
    place(l, bw + 2 * canvas_text_width("max") + 8, bh + canvas_text_height() + 2, &x, &y);
    if (l->c) {
        canvas_text(l->c, x, y, "min", INK);
        int bx = x + canvas_text_width("min") + 4;
        for (int i = 0; i < bw; i++) {
            int q = i * 255 / (bw - 1);
            canvas_rect(l->c, bx + i, y + 1, 1, bh, (uint32_t)(q << 16 | q << 8 | q));
        }
        canvas_text(l->c, bx + bw + 4, y, "max", INK);
    }
    new_row(l);
}

static bool has_kernels(const CnnLayer *L);
static bool has_maps(const CnnLayer *L);

static bool want(const Args *a, const char *name)
{
    return !a->layer || !strcmp(a->layer, name);
}

/* A conv's weights (M, C, Kh, Kw) as tiles, each kernel numbered. */
static void kernel_tiles(Layout *l, const CnnLayer *L, const float *w, const int32_t *d)
{
    int M = d[0], C = d[1], kh = d[2], kw = d[3];
    int group = C == 1 || C == 3 ? 1 : C, per_row, max_groups;
    tile_budget(kh, kw, group, &per_row, &max_groups);
    int shown = M < max_groups ? M : max_groups;
    int64_t per = (int64_t)C * kh * kw;
    float *v = malloc((size_t)per * sizeof *v);
    float *hwc = malloc((size_t)per * sizeof *hwc);
    char num[16];
    for (int m = 0; m < shown; m++) {
        memcpy(v, w + m * per, (size_t)per * sizeof *v);
        stretch(v, per);
        snprintf(num, sizeof num, "%d", m);
        if (C == 3) {
            /* (C, Kh, Kw) to (Kh, Kw, C) for one colour tile */
            for (int ch = 0; ch < 3; ch++)
                for (int i = 0; i < kh * kw; i++)
                    hwc[i * 3 + ch] = v[ch * kh * kw + i];
            tile(l, L->name, m, hwc, kh, kw, 3, num);
        } else {
            for (int ch = 0; ch < C; ch++)
                tile(l, L->name, m * C + ch, v + ch * kh * kw, kh, kw, 1, ch == 0 ? num : NULL);
        }
        if ((m + 1) % per_row == 0 && m + 1 < shown)
            new_row(l);
        else if (group > 1)
            l->x += 2 * GAP;    /* a wider gap between kernels than between channels */
    }
    free(v);
    free(hwc);
    if (shown < M) {
        new_row(l);
        snprintf(num, sizeof num, "%d", M);
        char text[128];
        snprintf(text, sizeof text, "(the first %d of %s kernels)", shown, num);
        label(l, text);
    }
}

static bool draw_kernels(const CnnModel *m, const Args *a, const float *params, Layout *l)
{
    bool any = false;
    char text[256];
    for (int i = 0; i < m->nlayers; i++) {
        const CnnLayer *L = &m->layers[i];
        if (!has_kernels(L) || !want(a, L->name))
            continue;
        const CnnTensor *t = L->weight >= 0 ? &m->tensors[L->weight] : &m->fixed[L->fixed_weight];
        const float *w = L->weight >= 0 ? params + t->offset : t->data;
        int C = t->dims[1];
        snprintf(text, sizeof text, "%s: %d kernels of %dx%dx%d%s%s", L->name, t->dims[0], t->dims[2],
                 t->dims[3], C, L->weight < 0 ? " (fixed)" : "",
                 C == 1 || C == 3 ? "" : ", a tile per channel, left to right");
        label(l, text);
        kernel_tiles(l, L, w, t->dims);
        new_row(l);
        any = true;
    }
    if (any)
        scale_bar(l, "kernel");
    return any;
}

/* One map's channels (H x W x C, channels last) as numbered gray tiles. */
static void map_tiles(Layout *l, const char *name, const float *act, int H, int W, int C)
{
    int per_row, max_tiles;
    tile_budget(H, W, 1, &per_row, &max_tiles);
    int shown = C < max_tiles ? C : max_tiles;
    float *map = malloc((size_t)H * (size_t)W * sizeof *map);
    char num[16];
    for (int ch = 0; ch < shown; ch++) {
        for (int64_t p = 0; p < (int64_t)H * W; p++)
            map[p] = act[p * C + ch];
        stretch(map, (int64_t)H * W);
        snprintf(num, sizeof num, "%d", ch);
        tile(l, name, ch, map, H, W, 1, num);
        if ((ch + 1) % per_row == 0 && ch + 1 < shown)
            new_row(l);
    }
    free(map);
    if (shown < C) {
        new_row(l);
        char text[128];
        snprintf(text, sizeof text, "(the first %d of %d channels)", shown, C);
        label(l, text);
    }
}

static bool draw_maps(const CnnModel *m, const Args *a, const float *x, const void *ws, Layout *l)
{
    char text[256];
    snprintf(text, sizeof text, "input: %dx%dx%d", m->height, m->width, m->channels);
    label(l, text);
    if (m->channels == 3) {
        tile(l, "input", 0, x, m->height, m->width, 3, NULL);
    } else {
        float *v = malloc((size_t)m->height * (size_t)m->width * (size_t)m->channels * sizeof *v);
        memcpy(v, x, (size_t)m->height * (size_t)m->width * (size_t)m->channels * sizeof *v);
        map_tiles(l, "input", v, m->height, m->width, m->channels);
        free(v);
    }
    new_row(l);
    bool any = false;
    for (int i = 1; i < m->nlayers; i++) {
        const CnnLayer *L = &m->layers[i];
        if (!has_maps(L) || !want(a, L->name))
            continue;
        int H = L->dims[0], W = L->dims[1], C = L->dims[2];
        snprintf(text, sizeof text, "%s (%s): %dx%dx%d", L->name, L->op, H, W, C);
        label(l, text);
        map_tiles(l, L->name, (const float *)((const char *)ws + L->act_offset), H, W, C);
        new_row(l);
        any = true;
    }
    if (any)
        scale_bar(l, "channel");
    return any;
}

/* What a layer shows: its kernels (a conv), or its output maps (a conv or pool). */
static bool has_kernels(const CnnLayer *L)
{
    return L->flags & CNN_LAYER_KERNELS;
}

static bool has_maps(const CnnLayer *L)
{
    return L->flags & CNN_LAYER_MAPS;
}

static bool draw(const CnnModel *m, const Args *a, bool kernels, const float *params, const float *x,
                 const void *ws, Layout *l)
{
    return kernels ? draw_kernels(m, a, params, l) : draw_maps(m, a, x, ws, l);
}

/* Lays the picture out, then draws it into a canvas of the measured size. */
static bool render_one(const CnnModel *m, const Args *a, bool kernels, const float *params,
                       const float *x, const void *ws, const char *out, char *err, size_t es)
{
    Layout l = {NULL, MARGIN, MARGIN, 0, 0, 0, false};
    draw(m, a, kernels, params, x, ws, &l);
    Layout d = {canvas_new(l.w + MARGIN, l.h + MARGIN, WHITE), MARGIN, MARGIN, 0, 0, 0, a->verbose};
    draw(m, a, kernels, params, x, ws, &d);
    bool ok = canvas_write_png(d.c, out, err, es);
    canvas_free(d.c);
    return ok;
}

/* One sheet, or, when it would pass MAX_SIDE pixels, a sheet per layer:
 * NAME-LAYER.png, each path printed. */
static bool render(const CnnModel *m, const Args *a, const char *what, const float *params,
                   const float *x, const void *ws, char *err, size_t es)
{
    bool kernels = !strcmp(what, "kernels");
    Layout l = {NULL, MARGIN, MARGIN, 0, 0, 0, false};
    if (!draw(m, a, kernels, params, x, ws, &l)) {
        snprintf(err, es, a->layer ? "no %s layer named '%s'" : "the model has no %s layer",
                 kernels ? "conv" : "conv or pool", a->layer);
        return false;
    }
    if (a->layer || (l.w + MARGIN <= MAX_SIDE && l.h + MARGIN <= MAX_SIDE))
        return render_one(m, a, kernels, params, x, ws, a->output, err, es);
    size_t stem = strlen(a->output) - strlen(".png");
    for (int i = 0; i < m->nlayers; i++) {
        const CnnLayer *L = &m->layers[i];
        if (!(kernels ? has_kernels(L) : has_maps(L)))
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%.*s-%s.png", (int)stem, a->output, L->name);
        Args one = *a;
        one.layer = L->name;
        if (!render_one(m, &one, kernels, params, x, ws, path, err, es))
            return false;
        printf("%s\n", path);
    }
    return true;
}

int cmd_show(const CnnModel *m, const Args *a)
{
    char err[8192];
    const char *what = a->nfiles ? a->files[0] : NULL;
    if (!what || (strcmp(what, "kernels") && strcmp(what, "maps") && strcmp(what, "curve")))
        return fail("show needs what to show: kernels, maps or curve");
    if (!a->output)
        return fail("show needs -o FILE.png");
    const char *inputs[3] = {NULL};
    int k = 0;
    if (a->nfiles > 1)
        inputs[k++] = a->files[1];
    if (a->weights)
        inputs[k++] = a->weights;
    if (output_is_input(a->output, inputs))
        return 1;
    if (!strcmp(what, "curve")) {
        if (a->nfiles < 2)
            return fail("show curve needs the metrics.csv that train --log wrote");
        return show_curve(a->files[1], a->output, err, sizeof err) ? 0 : fail(err);
    }
    const char *dot = strrchr(a->output, '.');
    if (!dot || strcmp(dot, ".png") != 0) {
        snprintf(err, sizeof err, "%s: show %s writes PNG; name the output NAME.png", a->output, what);
        return fail(err);
    }
    float *params = load_params(m, a, err, sizeof err);
    if (!params)
        return fail(err);
    bool ok;
    if (!strcmp(what, "kernels")) {
        ok = render(m, a, what, params, NULL, NULL, err, sizeof err);
    } else if (!m->activations) {
        snprintf(err, sizeof err, "show maps needs a program built without --inference-only");
        ok = false;
    } else if (a->nfiles < 2) {
        snprintf(err, sizeof err, "show maps needs an image (.pgm or .ppm)");
        ok = false;
    } else {
        int64_t in = (int64_t)m->height * m->width * m->channels;
        float *x = malloc((size_t)in * sizeof *x);
        void *ws = ws_alloc(m);
        ok = cnn_read_pnm(a->files[1], m->height, m->width, m->channels, x, err, sizeof err);
        if (ok) {
            m->activations(params, x, ws);
            ok = render(m, a, what, params, x, ws, err, sizeof err);
        }
        free(ws);
        free(x);
    }
    free(params);
    return ok ? 0 : fail(err);
}

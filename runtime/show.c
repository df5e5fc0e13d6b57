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
 * test accuracy per epoch from a --log file. Labels use the embedded font.
 * Tile places are printed on stdout, one line each, so that scripts (and the
 * tests) can find them: `tile LAYER INDEX X Y W H`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

enum { MARGIN = 8, GAP = 4, PER_ROW = 16 };
#define WHITE 0xFFFFFFu
#define INK 0x202020u
#define FRAME 0xC0C0C0u

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

/* A tile of h x w x chans values (stretched already) at the layout's place. */
static void tile(Layout *l, const char *layer, int index, const float *v, int h, int w, int chans)
{
    int s = tile_scale(h, w), x, y;
    place(l, w * s, h * s, &x, &y);
    if (l->c) {
        canvas_rect(l->c, x - 1, y - 1, w * s + 2, h * s + 2, FRAME);
        canvas_tile(l->c, x, y, v, h, w, chans, s);
        printf("tile %s %d %d %d %d %d\n", layer, index, x, y, w * s, h * s);
    }
}

static bool want(const Args *a, const char *name)
{
    return !a->layer || !strcmp(a->layer, name);
}

/* A conv's weights (M, C, Kh, Kw) as tiles. */
static void kernel_tiles(Layout *l, const CnnLayer *L, const float *w, const int32_t *d)
{
    int M = d[0], C = d[1], kh = d[2], kw = d[3];
    int64_t per = (int64_t)C * kh * kw;
    float *v = malloc((size_t)per * sizeof *v);
    float *hwc = malloc((size_t)per * sizeof *hwc);
    for (int m = 0; m < M; m++) {
        memcpy(v, w + m * per, (size_t)per * sizeof *v);
        stretch(v, per);
        if (C == 3) {
            /* (C, Kh, Kw) to (Kh, Kw, C) for one colour tile */
            for (int ch = 0; ch < 3; ch++)
                for (int i = 0; i < kh * kw; i++)
                    hwc[i * 3 + ch] = v[ch * kh * kw + i];
            tile(l, L->name, m, hwc, kh, kw, 3);
        } else {
            for (int ch = 0; ch < C; ch++)
                tile(l, L->name, m * C + ch, v + ch * kh * kw, kh, kw, 1);
        }
        int per_row = C == 1 || C == 3 ? PER_ROW : (PER_ROW / C > 1 ? PER_ROW / C : 1);
        if ((m + 1) % per_row == 0 && m + 1 < M)
            new_row(l);
        else if (C != 1 && C != 3)
            l->x += 2 * GAP;    /* a wider gap between kernels than between channels */
    }
    free(v);
    free(hwc);
}

static bool draw_kernels(const CnnModel *m, const Args *a, const float *params, Layout *l)
{
    bool any = false;
    char text[256];
    for (int i = 0; i < m->nlayers; i++) {
        const CnnLayer *L = &m->layers[i];
        if (strcmp(L->op, "conv") != 0 || !want(a, L->name))
            continue;
        const CnnTensor *t = L->weight >= 0 ? &m->tensors[L->weight] : &m->fixed[L->fixed_weight];
        const float *w = L->weight >= 0 ? params + t->offset : t->data;
        snprintf(text, sizeof text, "%s: %d kernels of %dx%dx%d%s", L->name, t->dims[0], t->dims[2],
                 t->dims[3], t->dims[1], L->weight < 0 ? " (fixed)" : "");
        label(l, text);
        kernel_tiles(l, L, w, t->dims);
        new_row(l);
        any = true;
    }
    return any;
}

static bool draw_maps(const CnnModel *m, const Args *a, const float *x, const void *ws, Layout *l)
{
    char text[256];
    int64_t in = (int64_t)m->height * m->width * m->channels;
    float *v = malloc((size_t)in * sizeof *v);
    memcpy(v, x, (size_t)in * sizeof *v);
    snprintf(text, sizeof text, "input: %dx%dx%d", m->height, m->width, m->channels);
    label(l, text);
    if (m->channels == 3)
        tile(l, "input", 0, v, m->height, m->width, 3);
    else
        for (int ch = 0; ch < m->channels; ch++) {
            for (int64_t i = 0; i < (int64_t)m->height * m->width; i++)
                v[i] = x[i * m->channels + ch];
            tile(l, "input", ch, v, m->height, m->width, 1);
        }
    new_row(l);
    free(v);
    bool any = false;
    for (int i = 1; i < m->nlayers; i++) {
        const CnnLayer *L = &m->layers[i];
        bool windowed = !strcmp(L->op, "conv") || !strcmp(L->op, "maxpool") || !strcmp(L->op, "avgpool");
        if (!windowed || L->rank != 3 || !want(a, L->name))
            continue;
        int H = L->dims[0], W = L->dims[1], C = L->dims[2];
        const float *act = (const float *)((const char *)ws + L->act_offset);
        snprintf(text, sizeof text, "%s (%s): %dx%dx%d", L->name, L->op, H, W, C);
        label(l, text);
        float *map = malloc((size_t)H * (size_t)W * sizeof *map);
        for (int ch = 0; ch < C; ch++) {
            for (int64_t p = 0; p < (int64_t)H * W; p++)
                map[p] = act[p * C + ch];
            stretch(map, (int64_t)H * W);
            tile(l, L->name, ch, map, H, W, 1);
            if ((ch + 1) % PER_ROW == 0 && ch + 1 < C)
                new_row(l);
        }
        free(map);
        new_row(l);
        any = true;
    }
    return any;
}

/* Lays the picture out, then draws it into a canvas of the measured size. */
static bool render(const CnnModel *m, const Args *a, const char *what, const float *params,
                   const float *x, const void *ws, char *err, size_t es)
{
    Layout l = {NULL, MARGIN, MARGIN, 0, 0, 0};
    bool kernels = !strcmp(what, "kernels");
    bool any = kernels ? draw_kernels(m, a, params, &l) : draw_maps(m, a, x, ws, &l);
    if (!any) {
        snprintf(err, es, a->layer ? "no %s layer named '%s'" : "the model has no %s layer",
                 kernels ? "conv" : "conv or pool", a->layer);
        return false;
    }
    Layout d = {canvas_new(l.w + MARGIN, l.h + MARGIN, WHITE), MARGIN, MARGIN, 0, 0, 0};
    if (kernels)
        draw_kernels(m, a, params, &d);
    else
        draw_maps(m, a, x, ws, &d);
    bool ok = canvas_write_png(d.c, a->output, err, es);
    canvas_free(d.c);
    return ok;
}

/* ---- curve ---- */

typedef struct Metrics {
    int n;
    double loss[4096], acc[4096];
    bool has_acc;
} Metrics;

static bool read_metrics(const char *path, Metrics *mt, char *err, size_t es)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, es, "%s: cannot open", path);
        return false;
    }
    char line[512];
    mt->n = 0;
    mt->has_acc = false;
    bool header = fgets(line, sizeof line, f) && !strncmp(line, "epoch,step,loss,accuracy", 24);
    while (header && mt->n < 4096 && fgets(line, sizeof line, f)) {
        int epoch;
        long long step;
        double loss, acc = NAN;
        char accs[64] = "";
        if (sscanf(line, "%d,%lld,%lf,%63[^,]", &epoch, &step, &loss, accs) < 3) {
            snprintf(err, es, "%s: line %d is not epoch,step,loss,accuracy,images_per_s", path, mt->n + 2);
            fclose(f);
            return false;
        }
        if (accs[0] && sscanf(accs, "%lf", &acc) == 1)
            mt->has_acc = true;
        mt->loss[mt->n] = loss;
        mt->acc[mt->n] = acc;
        mt->n++;
    }
    fclose(f);
    if (!header || mt->n == 0) {
        snprintf(err, es, "%s: not a --log file with at least one epoch", path);
        return false;
    }
    return true;
}

static const char *suffix(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot : "";
}

static bool curve_svg(const Metrics *mt, const char *path, char *err, size_t es)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, es, "%s: cannot write", path);
        return false;
    }
    double maxloss = 0;
    for (int i = 0; i < mt->n; i++)
        maxloss = mt->loss[i] > maxloss ? mt->loss[i] : maxloss;
    int W = 640, H = 400, x0 = 60, y0 = 340, pw = 520, ph = 300;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"monospace\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<path d=\"M%d %d V%d H%d\" stroke=\"black\" fill=\"none\"/>\n", x0, y0 - ph, y0, x0 + pw);
    fprintf(f, "<text x=\"%d\" y=\"%d\">epoch</text>\n", x0 + pw / 2, H - 20);
    fprintf(f, "<text x=\"10\" y=\"20\" fill=\"#c03030\">loss (0 .. %.3g)</text>\n", maxloss);
    if (mt->has_acc)
        fprintf(f, "<text x=\"%d\" y=\"20\" fill=\"#3050c0\">test accuracy (0 .. 100%%)</text>\n", W - 230);
    for (int k = 0; k < 2; k++) {
        if (k == 1 && !mt->has_acc)
            continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", k ? "#3050c0" : "#c03030");
        for (int i = 0; i < mt->n; i++) {
            double v = k ? mt->acc[i] : mt->loss[i] / (maxloss > 0 ? maxloss : 1);
            fprintf(f, "%.1f,%.1f ", x0 + pw * (mt->n > 1 ? (double)i / (mt->n - 1) : 0.5), y0 - ph * v);
        }
        fprintf(f, "\"/>\n");
    }
    for (int i = 0; i < mt->n; i++)
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n",
                x0 + pw * (mt->n > 1 ? (double)i / (mt->n - 1) : 0.5), y0 + 16, i + 1);
    fprintf(f, "</svg>\n");
    return fclose(f) == 0;
}

static bool curve_png(const Metrics *mt, const char *path, char *err, size_t es)
{
    int W = 640, H = 400, x0 = 56, y0 = 350, pw = 540, ph = 300;
    Canvas *c = canvas_new(W, H, WHITE);
    double maxloss = 0;
    for (int i = 0; i < mt->n; i++)
        maxloss = mt->loss[i] > maxloss ? mt->loss[i] : maxloss;
    for (int k = 0; k <= 4; k++) {
        int y = y0 - ph * k / 4;
        canvas_line(c, x0, y, x0 + pw, y, 0xE8E8E8u, 1);
        char t[32];
        snprintf(t, sizeof t, "%.2f", maxloss * k / 4);
        canvas_text(c, 8, y - 6, t, 0xC03030u);
        if (mt->has_acc) {
            snprintf(t, sizeof t, "%d%%", 25 * k);
            canvas_text(c, x0 + pw + 6, y - 6, t, 0x3050C0u);
        }
    }
    canvas_line(c, x0, y0 - ph, x0, y0, INK, 1);
    canvas_line(c, x0, y0, x0 + pw, y0, INK, 1);
    for (int i = 0; i < mt->n; i++) {
        int x = x0 + (mt->n > 1 ? pw * i / (mt->n - 1) : pw / 2);
        char t[16];
        snprintf(t, sizeof t, "%d", i + 1);
        if (mt->n <= 30 || i % (mt->n / 10) == 0)
            canvas_text(c, x - canvas_text_width(t) / 2, y0 + 6, t, INK);
    }
    canvas_text(c, x0 + pw / 2 - 15, y0 + 24, "epoch", INK);
    canvas_text(c, x0, 12, "loss", 0xC03030u);
    if (mt->has_acc)
        canvas_text(c, x0 + 60, 12, "test accuracy", 0x3050C0u);
    for (int k = 0; k < 2; k++) {
        if (k == 1 && !mt->has_acc)
            continue;
        int px = -1, py = -1;
        for (int i = 0; i < mt->n; i++) {
            double v = k ? mt->acc[i] : mt->loss[i] / (maxloss > 0 ? maxloss : 1);
            if (isnan(v))
                continue;
            int x = x0 + (mt->n > 1 ? pw * i / (mt->n - 1) : pw / 2), y = y0 - (int)(ph * v);
            if (px >= 0)
                canvas_line(c, px, py, x, y, k ? 0x3050C0u : 0xC03030u, 2);
            canvas_rect(c, x - 2, y - 2, 5, 5, k ? 0x3050C0u : 0xC03030u);
            px = x, py = y;
        }
    }
    bool ok = canvas_write_png(c, path, err, es);
    canvas_free(c);
    return ok;
}

int cmd_show(const CnnModel *m, const Args *a)
{
    char err[8192];
    const char *what = a->nfiles ? a->files[0] : NULL;
    if (!what || (strcmp(what, "kernels") && strcmp(what, "maps") && strcmp(what, "curve")))
        return fail("show needs what to show: kernels, maps or curve");
    if (!a->output)
        return fail("show needs -o FILE.png");
    if (!strcmp(what, "curve")) {
        if (a->nfiles < 2)
            return fail("show curve needs the metrics.csv that train --log wrote");
        Metrics *mt = malloc(sizeof *mt);
        bool ok = read_metrics(a->files[1], mt, err, sizeof err) &&
                  (!strcmp(suffix(a->output), ".svg") ? curve_svg(mt, a->output, err, sizeof err)
                                                      : curve_png(mt, a->output, err, sizeof err));
        free(mt);
        return ok ? 0 : fail(err);
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

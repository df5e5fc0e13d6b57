/*
 * curve.c: `show curve metrics.csv -o curve.png|curve.svg`, the learning curve
 * of a --log file.
 *
 * Every loss column the log holds (loss, test_loss, val_loss) is plotted
 * against the left axis, every accuracy column (accuracy, val_accuracy)
 * against the right one, in percent. Each axis spans its own data, widened
 * to round tick values (1, 2 or 5 times a power of ten); values that are not
 * finite are left out. The picture is described once (axes, ticks, series)
 * and drawn by one of two painters, PNG (draw.c's canvas) or SVG, so that the
 * two show the same grid, ticks and lines.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

enum { MAX_EPOCHS = 100000, W = 640, H = 400, X0 = 64, Y0 = 340, PW = 500, PH = 290 };
#define INK 0x202020u
#define GRID 0xE8E8E8u

/* The columns a log may hold that are plotted, with how. */
static const struct Column {
    const char *name, *label;
    bool percent;                   /* an accuracy (a fraction in the log), on the right axis */
    uint32_t color;
} columns[] = {
    {"loss", "train loss", false, 0xC03030u},
    {"test_loss", "test loss", false, 0xE08020u},
    {"val_loss", "validation loss", false, 0x9040A0u},
    {"accuracy", "test accuracy", true, 0x3050C0u},
    {"val_accuracy", "validation accuracy", true, 0x20A060u},
};
enum { NCOLUMNS = sizeof columns / sizeof *columns };

typedef struct Metrics {
    int n;                          /* epochs */
    double *v[NCOLUMNS];            /* per column: n values, NAN where missing */
    bool has[NCOLUMNS];
} Metrics;

static void metrics_free(Metrics *mt)
{
    for (int k = 0; k < NCOLUMNS; k++)
        free(mt->v[k]);
}

static bool read_metrics(const char *path, Metrics *mt, char *err, size_t es)
{
    *mt = (Metrics){0};
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, es, "%s: cannot open", path);
        return false;
    }
    char line[1024];
    int where[32], ncols = 0;       /* the header's columns: which of ours, or -1 */
    bool header = fgets(line, sizeof line, f) && !strncmp(line, "epoch,step,loss", 15);
    for (char *tok = header ? strtok(line, ",\r\n") : NULL; tok && ncols < 32; tok = strtok(NULL, ",\r\n")) {
        where[ncols] = -1;
        for (int k = 0; k < NCOLUMNS; k++)
            if (!strcmp(tok, columns[k].name))
                where[ncols] = k;
        ncols++;
    }
    for (int k = 0; k < NCOLUMNS; k++)
        mt->v[k] = malloc(sizeof(double) * 1024);
    int cap = 1024;
    while (header && mt->n < MAX_EPOCHS && fgets(line, sizeof line, f)) {
        if (mt->n == cap) {
            cap *= 2;
            for (int k = 0; k < NCOLUMNS; k++)
                mt->v[k] = realloc(mt->v[k], sizeof(double) * (size_t)cap);
        }
        for (int k = 0; k < NCOLUMNS; k++)
            mt->v[k][mt->n] = NAN;
        int col = 0;
        char *p = line;
        for (; col < ncols && *p && *p != '\n'; col++) {
            char *end;
            double v = strtod(p, &end);
            if (where[col] >= 0 && end != p && isfinite(v)) {
                mt->v[where[col]][mt->n] = columns[where[col]].percent ? 100 * v : v;
                mt->has[where[col]] = true;
            }
            p = strchr(p, ',');
            if (!p)
                break;
            p++;
        }
        if (col < 2) {
            snprintf(err, es, "%s: line %d is not epoch,step,loss,...", path, mt->n + 2);
            fclose(f);
            metrics_free(mt);
            return false;
        }
        mt->n++;
    }
    fclose(f);
    if (!header || mt->n == 0) {
        snprintf(err, es, "%s: not a --log file with at least one epoch", path);
        metrics_free(mt);
        return false;
    }
    return true;
}

/* ---- axes: data ranges widened to round ticks ---- */

typedef struct Axis {
    double lo, hi, step;            /* ticks at lo, lo + step, ..., hi */
} Axis;

/* 1, 2 or 5 times a power of ten, near span / 5 */
static double nice_step(double span)
{
    double raw = span / 5, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static Axis make_axis(const Metrics *mt, bool percent)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < NCOLUMNS; k++)
        for (int i = 0; columns[k].percent == percent && i < mt->n; i++)
            if (isfinite(mt->v[k][i])) {
                lo = fmin(lo, mt->v[k][i]);
                hi = fmax(hi, mt->v[k][i]);
            }
    if (!(lo <= hi))
        lo = 0, hi = 1;
    if (hi - lo < 1e-9 * fmax(1, fabs(hi)))
        lo -= 0.5 * fmax(fabs(lo), 1e-3), hi += 0.5 * fmax(fabs(hi), 1e-3);
    double step = nice_step(hi - lo);
    Axis a = {floor(lo / step) * step, ceil(hi / step) * step, step};
    if (percent && a.hi > 100 && hi <= 100)
        a.hi = 100;
    return a;
}

static void tick_text(char *buf, size_t size, double v, double step, bool percent)
{
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, size, "%.*f%s", decimals, fabs(v) < step * 1e-6 ? 0.0 : v, percent ? "%" : "");
}

/* ---- painters ---- */

typedef struct Painter {
    void (*line)(void *ctx, double x0, double y0, double x1, double y1, uint32_t rgb, int thick);
    void (*text)(void *ctx, double x, double y, const char *s, uint32_t rgb, int align);  /* -1 0 1 */
    void (*dot)(void *ctx, double x, double y, uint32_t rgb);
    void *ctx;
} Painter;

static void png_line(void *ctx, double x0, double y0, double x1, double y1, uint32_t rgb, int thick)
{
    canvas_line(ctx, (int)lround(x0), (int)lround(y0), (int)lround(x1), (int)lround(y1), rgb, thick);
}

static void png_text(void *ctx, double x, double y, const char *s, uint32_t rgb, int align)
{
    int w = canvas_text_width(s);
    canvas_text(ctx, (int)lround(x) - (align + 1) * w / 2, (int)lround(y) - canvas_text_height() / 2, s, rgb);
}

static void png_dot(void *ctx, double x, double y, uint32_t rgb)
{
    canvas_rect(ctx, (int)lround(x) - 2, (int)lround(y) - 2, 5, 5, rgb);
}

static void svg_line(void *ctx, double x0, double y0, double x1, double y1, uint32_t rgb, int thick)
{
    fprintf(ctx, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#%06x\" "
            "stroke-width=\"%d\"/>\n", x0, y0, x1, y1, rgb, thick);
}

static void svg_text(void *ctx, double x, double y, const char *s, uint32_t rgb, int align)
{
    static const char *const anchor[] = {"start", "middle", "end"};
    fprintf(ctx, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#%06x\" text-anchor=\"%s\" "
            "dominant-baseline=\"middle\">%s</text>\n", x, y, rgb, anchor[align + 1], s);
}

static void svg_dot(void *ctx, double x, double y, uint32_t rgb)
{
    fprintf(ctx, "<rect x=\"%.1f\" y=\"%.1f\" width=\"5\" height=\"5\" fill=\"#%06x\"/>\n",
            x - 2.5, y - 2.5, rgb);
}

static double xpos(const Metrics *mt, int i)
{
    return X0 + (mt->n > 1 ? (double)PW * i / (mt->n - 1) : PW / 2.0);
}

static double ypos(const Axis *a, double v)
{
    return Y0 - PH * (v - a->lo) / (a->hi - a->lo);
}

/* The whole picture, through p. */
static void plot(const Metrics *mt, const Painter *p)
{
    bool any_loss = false, any_acc = false;
    for (int k = 0; k < NCOLUMNS; k++)
        (columns[k].percent ? &any_acc : &any_loss)[0] |= mt->has[k];
    Axis axes[2] = {make_axis(mt, false), make_axis(mt, true)};
    char t[64];
    /* the grid and ticks of the loss axis (left), and the accuracy's (right) */
    for (int side = 0; side < 2; side++) {
        const Axis *a = &axes[side];
        if (!(side ? any_acc : any_loss))
            continue;
        for (double v = a->lo; v <= a->hi + a->step * 1e-6; v += a->step) {
            double y = ypos(a, v);
            if (side == 0 || !any_loss)
                p->line(p->ctx, X0, y, X0 + PW, y, GRID, 1);
            tick_text(t, sizeof t, v, a->step, side == 1);
            p->text(p->ctx, side ? X0 + PW + 6 : X0 - 6, y, t, INK, side ? -1 : 1);
        }
    }
    /* epochs: at most ~10 labelled, on round numbers */
    int every = mt->n <= 12 ? 1 : (int)nice_step(mt->n);
    for (int i = 0; i < mt->n; i++) {
        if ((i + 1) % every != 0 && i != 0)
            continue;
        double x = xpos(mt, i);
        p->line(p->ctx, x, Y0, x, Y0 + 4, INK, 1);
        snprintf(t, sizeof t, "%d", i + 1);
        p->text(p->ctx, x, Y0 + 14, t, INK, 0);
    }
    p->line(p->ctx, X0, Y0 - PH, X0, Y0, INK, 1);
    p->line(p->ctx, X0, Y0, X0 + PW, Y0, INK, 1);
    if (any_acc)
        p->line(p->ctx, X0 + PW, Y0 - PH, X0 + PW, Y0, INK, 1);
    p->text(p->ctx, X0 + PW / 2.0, Y0 + 34, "epoch", INK, 0);
    /* the series, and a legend line above the plot */
    double lx = X0;
    for (int k = 0; k < NCOLUMNS; k++) {
        if (!mt->has[k])
            continue;
        const Axis *a = &axes[columns[k].percent];
        double px = NAN, py = NAN;
        for (int i = 0; i < mt->n; i++) {
            double v = mt->v[k][i];
            if (!isfinite(v))
                continue;
            double x = xpos(mt, i), y = ypos(a, v);
            if (isfinite(px))
                p->line(p->ctx, px, py, x, y, columns[k].color, 2);
            p->dot(p->ctx, x, y, columns[k].color);
            px = x, py = y;
        }
        snprintf(t, sizeof t, "%s%s", columns[k].label, columns[k].percent ? " (right)" : "");
        p->text(p->ctx, lx, 18, t, columns[k].color, -1);
        lx += canvas_text_width(t) + 16;
    }
}

static bool curve_png(const Metrics *mt, const char *path, char *err, size_t es)
{
    Canvas *c = canvas_new(W, H, 0xFFFFFFu);
    plot(mt, &(Painter){png_line, png_text, png_dot, c});
    bool ok = canvas_write_png(c, path, err, es);
    canvas_free(c);
    return ok;
}

static bool curve_svg(const Metrics *mt, const char *path, char *err, size_t es)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"monospace\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    plot(mt, &(Painter){svg_line, svg_text, svg_dot, f});
    fprintf(f, "</svg>\n");
    fclose(f);
    bool ok = cnn_write_all(path, buf, len, err, es);
    free(buf);
    return ok;
}

bool show_curve(const char *log, const char *out, char *err, size_t es)
{
    const char *dot = strrchr(out, '.');
    bool svg = dot && !strcmp(dot, ".svg"), png = dot && !strcmp(dot, ".png");
    if (!svg && !png) {
        snprintf(err, es, "%s: show curve writes .png or .svg; name the output by one", out);
        return false;
    }
    Metrics mt;
    if (!read_metrics(log, &mt, err, es))
        return false;
    bool ok = svg ? curve_svg(&mt, out, err, es) : curve_png(&mt, out, err, es);
    metrics_free(&mt);
    return ok;
}

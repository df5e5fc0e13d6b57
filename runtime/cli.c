/*
 * cli.c: the compiled program's command line (docs/program.md).
 *
 *   ./model infer   --weights W --input x.f32 --output y.f32 [--threads N]
 *   ./model predict --weights W [--top K] image.pgm ...
 *   ./model eval    --weights W --data DIR [--threads N]
 *
 * The model is reached only through the constant cnn_model that cnnc emits.
 * Every failure is one line naming the file and the problem, exit status 1,
 * and no partial output file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cnnrt.h"
#include "runtime.h"

int fail(const char *msg)
{
    fprintf(stderr, "%s: error: %s\n", cnn_model.name, msg);
    return 1;
}

void *ws_alloc(const CnnModel *m)
{
    size_t size = ((size_t)m->workspace_size + 63) & ~(size_t)63;
    return aligned_alloc(64, size ? size : 64);
}

/* The weights: built in, or from --weights. */
float *load_params(const CnnModel *m, const Args *a, char *err, size_t es)
{
    float *p = malloc(((size_t)m->params_size + 1) * sizeof *p);
    if (!a->weights) {
        if (m->baked || m->params_size == 0) {
            if (m->baked)
                memcpy(p, m->baked, (size_t)m->params_size * sizeof *p);
            return p;
        }
        snprintf(err, es, "'%s' needs --weights FILE (this program has no weights built in)", a->cmd);
        free(p);
        return NULL;
    }
    if (!cnnw_load(a->weights, m, p, err, es)) {
        free(p);
        return NULL;
    }
    return p;
}

struct Inferer {
    const CnnModel *m;
    Pool *pool;
    void **ws;
    const float *params, *input;    /* the call's */
    float *output;
    int64_t count;
};

Inferer *infer_new(const CnnModel *m, int threads)
{
    Inferer *e = calloc(1, sizeof *e);
    e->m = m;
    e->pool = rt_pool_new(threads);
    e->ws = calloc((size_t)rt_pool_threads(e->pool), sizeof *e->ws);
    for (int t = 0; t < rt_pool_threads(e->pool); t++)
        e->ws[t] = ws_alloc(m);
    return e;
}

void infer_free(Inferer *e)
{
    for (int t = 0; t < rt_pool_threads(e->pool); t++)
        free(e->ws[t]);
    free(e->ws);
    rt_pool_free(e->pool);
    free(e);
}

static void infer_chunk(void *ctx, int64_t task, int thread)
{
    Inferer *e = ctx;
    int64_t first = task * e->m->batch;
    int64_t n = e->count - first < e->m->batch ? e->count - first : e->m->batch;
    int64_t in = (int64_t)e->m->height * e->m->width * e->m->channels;
    e->m->infer(e->params, e->input + first * in, e->output + first * e->m->outputs, (int)n,
                e->ws[thread]);
}

void infer_run(Inferer *e, const float *params, const float *input, float *output, int64_t count)
{
    e->params = params;
    e->input = input;
    e->output = output;
    e->count = count;
    rt_pool_run(e->pool, (count + e->m->batch - 1) / e->m->batch, infer_chunk, e);
}

/* Runs count images through the model, in batches, on a few threads. */
void infer_all(const CnnModel *m, const float *params, const float *input, float *output,
               int64_t count, int threads)
{
    int64_t chunks = (count + m->batch - 1) / m->batch;
    Inferer *e = infer_new(m, threads > chunks ? (int)chunks : threads);
    infer_run(e, params, input, output, count);
    infer_free(e);
}

static int cmd_infer(const CnnModel *m, const Args *a)
{
    char err[1024];
    if (!a->input || !a->output)
        return fail("infer needs --input x.f32 and --output y.f32");
    float *params = load_params(m, a, err, sizeof err);
    if (!params)
        return fail(err);
    FILE *f = fopen(a->input, "rb");
    if (!f) {
        snprintf(err, sizeof err, "%s: cannot open: %s", a->input, strerror(errno));
        free(params);
        return fail(err);
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    int64_t in = (int64_t)m->height * m->width * m->channels;
    if (bytes <= 0 || bytes % (in * 4) != 0) {
        snprintf(err, sizeof err, "%s: %ld bytes is not a whole number of %dx%dx%d float32 images "
                 "(%lld bytes each)", a->input, bytes, m->height, m->width, m->channels,
                 (long long)(in * 4));
        fclose(f);
        free(params);
        return fail(err);
    }
    int64_t count = bytes / (in * 4);
    float *x = malloc((size_t)bytes);
    size_t got = fread(x, 1, (size_t)bytes, f);
    fclose(f);
    if (got != (size_t)bytes) {
        free(x);
        free(params);
        snprintf(err, sizeof err, "%s: cannot read", a->input);
        return fail(err);
    }
    float *y = malloc((size_t)(count * m->outputs) * sizeof *y);
    infer_all(m, params, x, y, count, a->threads);
    CnnOut out;
    FILE *o = cnn_out_begin(&out, a->output, err, sizeof err) ? cnn_out_fopen(&out, "wb", err, sizeof err) : NULL;
    bool ok = o != NULL;
    if (o) {
        size_t floats = (size_t)(count * m->outputs);
        bool wrote = fwrite(y, sizeof *y, floats, o) == floats;
        int e = errno;
        ok = cnn_out_close(&out, o, err, sizeof err) && wrote;
        if (!wrote)
            snprintf(err, sizeof err, "%s: cannot write: %s", a->output, strerror(e));
        ok = ok && cnn_out_commit(&out, err, sizeof err);
    }
    cnn_out_abort(&out);
    free(x);
    free(y);
    free(params);
    return ok ? 0 : fail(err);
}

static int cmd_predict(const CnnModel *m, const Args *a)
{
    char err[1024];
    if (a->nfiles == 0)
        return fail("predict needs at least one image (.pgm or .ppm)");
    float *params = load_params(m, a, err, sizeof err);
    if (!params)
        return fail(err);
    int64_t in = (int64_t)m->height * m->width * m->channels;
    float *x = malloc((size_t)in * sizeof *x), *y = malloc((size_t)m->outputs * sizeof *y);
    void *ws = ws_alloc(m);
    int rc = 0, top = a->top > m->outputs ? m->outputs : a->top;
    for (int i = 0; i < a->nfiles && rc == 0; i++) {
        if (!cnn_read_pnm(a->files[i], m->height, m->width, m->channels, x, err, sizeof err)) {
            rc = fail(err);
            break;
        }
        m->infer(params, x, y, 1, ws);
        printf("%s:", a->files[i]);
        bool *used = calloc((size_t)m->outputs, 1);
        for (int k = 0; k < top; k++) {
            int best = -1;
            for (int j = 0; j < m->outputs; j++)
                if (!used[j] && (best < 0 || y[j] > y[best]))
                    best = j;
            used[best] = true;
            printf(" %d (%.4f)", best, y[best]);
        }
        printf("\n");
        free(used);
    }
    free(ws);
    free(x);
    free(y);
    free(params);
    return rc;
}

bool data_paths(const Args *a, const char *kind, char *img, char *lbl, size_t size)
{
    bool test = !strcmp(kind, "t10k");
    const char *fi = test ? a->test_images : a->images, *fl = test ? a->test_labels : a->labels;
    if (fi && fl) {
        snprintf(img, size, "%s", fi);
        snprintf(lbl, size, "%s", fl);
        return true;
    }
    if (!a->data)
        return false;
    static const char *const suffix[] = {"", ".gz"};
    for (int s = 0; s < 2; s++) {
        snprintf(img, size, "%s/%s-images-idx3-ubyte%s", a->data, kind, suffix[s]);
        snprintf(lbl, size, "%s/%s-labels-idx1-ubyte%s", a->data, kind, suffix[s]);
        if (access(img, R_OK) == 0)
            return true;
    }
    return true;    /* the reader names the missing file */
}

static int cmd_eval(const CnnModel *m, const Args *a)
{
    char err[8192], img[4096], lbl[4096];
    Args e = *a;
    if (a->images && a->labels) {
        e.test_images = a->images;
        e.test_labels = a->labels;
    }
    if (!data_paths(&e, "t10k", img, lbl, sizeof img))
        return fail("eval needs --data DIR (or --images F --labels F)");
    float *params = load_params(m, a, err, sizeof err);
    if (!params)
        return fail(err);
    CnnImages im = {0};
    int32_t *labels = NULL;
    if (!load_dataset(m, img, lbl, &im, &labels, err, sizeof err)) {
        free(params);
        return fail(err);
    }
    int64_t right = count_right(m, params, &im, labels, a->threads);
    printf("test accuracy: %.2f%% (%lld of %lld)\n", 100.0 * (double)right / (double)im.count,
           (long long)right, (long long)im.count);
    free(labels);
    free(im.pixels);
    free(params);
    return 0;
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s train   --data DIR [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N]\n"
            "                [--weights W] [--save W] [--no-shuffle] [--steps N] [--log metrics.csv]\n"
            "       %s infer   --weights W --input x.f32 --output y.f32 [--threads N]\n"
            "       %s predict --weights W [--top K] image.pgm ...\n"
            "       %s eval    --weights W --data DIR [--threads N]\n"
            "       %s bench   [--threads N]      (speed on random data)\n"
            "       %s show    kernels --weights W [--layer NAME] -o kernels.png\n"
            "       %s show    maps --weights W [--layer NAME] image.pgm -o maps.png\n"
            "       %s show    curve metrics.csv -o curve.png|curve.svg\n"
            "model '%s': input %dx%dx%d, %d outputs, %lld parameters\n",
            prog, prog, prog, prog, prog, prog, prog, prog, cnn_model.name, cnn_model.height, cnn_model.width,
            cnn_model.channels, cnn_model.outputs, (long long)cnn_model.params_size);
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || !*s || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

/* Reads an image file and its labels, and checks them against the model. */
bool load_dataset(const CnnModel *m, const char *img, const char *lbl, CnnImages *im,
                  int32_t **labels, char *err, size_t es)
{
    *im = (CnnImages){0};
    if (!cnn_read_idx_images(img, im, err, es))
        return false;
    if (im->height != m->height || im->width != m->width || im->channels != m->channels) {
        snprintf(err, es, "%s: images of %dx%dx%d; the model takes %dx%dx%d", img, im->height,
                 im->width, im->channels, m->height, m->width, m->channels);
        free(im->pixels);
        return false;
    }
    if (!cnn_read_idx_labels(lbl, im->count, m->outputs, labels, err, es)) {
        free(im->pixels);
        return false;
    }
    return true;
}

/* How many of the images the model classifies as their label says. */
int64_t count_right(const CnnModel *m, const float *params, const CnnImages *im,
                    const int32_t *labels, int threads)
{
    float *y = malloc((size_t)(im->count * m->outputs) * sizeof *y);
    infer_all(m, params, im->pixels, y, im->count, threads);
    int64_t right = 0;
    for (int64_t i = 0; i < im->count; i++) {
        int best = 0;
        for (int j = 1; j < m->outputs; j++)
            if (y[i * m->outputs + j] > y[i * m->outputs + best])
                best = j;
        right += best == labels[i];
    }
    free(y);
    return right;
}

int main(int argc, char **argv)
{
    const CnnModel *m = &cnn_model;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout, argv[0]);
        return argc < 2;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    Args a = {.cmd = argv[1], .top = 3, .threads = cores > 0 ? (int)cores : 1};
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = !strcmp(o, "--weights") ? &a.weights : !strcmp(o, "--input") ? &a.input
                          : !strcmp(o, "--output") ? &a.output : !strcmp(o, "--data") ? &a.data
                          : !strcmp(o, "--images") ? &a.images : !strcmp(o, "--labels") ? &a.labels
                          : !strcmp(o, "--test-images") ? &a.test_images
                          : !strcmp(o, "--test-labels") ? &a.test_labels
                          : !strcmp(o, "--save") ? &a.save : !strcmp(o, "--log") ? &a.log
                          : !strcmp(o, "-o") ? &a.output : !strcmp(o, "--layer") ? &a.layer : NULL;
        int *num = !strcmp(o, "--top") ? &a.top : !strcmp(o, "--threads") ? &a.threads
                 : !strcmp(o, "--epochs") ? &a.epochs : !strcmp(o, "--batch") ? &a.batch
                 : !strcmp(o, "--steps") ? &a.steps : NULL;
        char msg[256];
        if (slot || num || !strcmp(o, "--lr") || !strcmp(o, "--seed")) {
            if (!v) {
                snprintf(msg, sizeof msg, "'%s' needs a value", o);
                return fail(msg);
            }
            i++;
            char *end;
            errno = 0;
            if (slot) {
                *slot = v;
            } else if (num) {
                if (!parse_int(v, 1, !strcmp(o, "--threads") ? 1024 : 1 << 30, num)) {
                    snprintf(msg, sizeof msg, "'%s' needs a positive number, not '%s'", o, v);
                    return fail(msg);
                }
            } else if (!strcmp(o, "--lr")) {
                a.lr = strtod(v, &end);
                if (*end || !*v || !(a.lr > 0) || a.lr > 1e6) {
                    snprintf(msg, sizeof msg, "'--lr' needs a positive number, not '%s'", v);
                    return fail(msg);
                }
            } else {
                unsigned long long sd = strtoull(v, &end, 10);
                if (*end || !*v || errno || v[0] == '-') {
                    snprintf(msg, sizeof msg, "'--seed' needs a non-negative integer, not '%s'", v);
                    return fail(msg);
                }
                a.seed = sd;
                a.seed_given = true;
            }
        } else if (!strcmp(o, "--no-shuffle")) {
            a.no_shuffle = true;
        } else if (o[0] == '-') {
            snprintf(msg, sizeof msg, "unknown option '%s'", o);
            return fail(msg);
        } else if (a.nfiles < 256) {
            a.files[a.nfiles++] = o;
        }
    }
    static const struct {
        const char *name;
        int (*run)(const CnnModel *m, const Args *a);
    } commands[] = {
        {"train", cmd_train}, {"eval", cmd_eval}, {"predict", cmd_predict},
        {"infer", cmd_infer}, {"bench", cmd_bench}, {"show", cmd_show},
    };
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(a.cmd, commands[i].name))
            return commands[i].run(m, &a);
    char msg[256];
    snprintf(msg, sizeof msg, "unknown command '%s'; expected train, eval, predict, infer, bench or show", a.cmd);
    usage(stderr, argv[0]);
    return fail(msg);
}

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
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
    if (a->weights && m->baked) {
        snprintf(err, es, "this program has its weights built in (cnnc --weights), so it does not "
                 "read %s; to run other weights, build it without --weights", a->weights);
        return NULL;
    }
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

bool read_class_names(const CnnModel *m, const char *path, CnnwExtra *names, char *err, size_t es)
{
    size_t len, max = (size_t)m->outputs * 4097 + 1;
    unsigned char *buf = cnn_read_all(path, &len, max, err, es);
    if (!buf && len > max)
        snprintf(err, es, "%s: more than %d class names (the model's outputs), or a name over 4096 bytes",
                 path, m->outputs);
    if (!buf)
        return false;
    CnnwExtra x = {.classes = calloc((size_t)m->outputs + 1, sizeof(char *))};
    bool ok = true;
    for (size_t at = 0; ok && at < len;) {
        size_t end = at;
        while (end < len && buf[end] != '\n')
            end++;
        size_t n = end > at && buf[end - 1] == '\r' ? end - at - 1 : end - at;
        if (x.nclasses == m->outputs) {
            snprintf(err, es, "%s: more than %d class names (the model's outputs)", path, m->outputs);
            ok = false;
        } else if (n == 0 || n > 4096 || memchr(buf + at, '\0', n)) {
            snprintf(err, es, "%s: line %d: a class name must be 1 to 4096 bytes of text", path, x.nclasses + 1);
            ok = false;
        } else {
            x.classes[x.nclasses] = malloc(n + 1);
            memcpy(x.classes[x.nclasses], buf + at, n);
            x.classes[x.nclasses++][n] = '\0';
        }
        at = end + 1;
    }
    free(buf);
    if (ok && x.nclasses == 0) {
        snprintf(err, es, "%s: no class names in it (one a line)", path);
        ok = false;
    }
    if (!ok) {
        cnnw_extra_free(&x);
        return false;
    }
    *names = x;
    return true;
}

float *load_params_named(const CnnModel *m, const Args *a, CnnwExtra *names, char *err, size_t es)
{
    *names = (CnnwExtra){0};
    if (a->classes && !read_class_names(m, a->classes, names, err, es))
        return NULL;
    if (a->classes || !a->weights || m->baked) {
        float *p = load_params(m, a, err, es);
        if (!p)
            cnnw_extra_free(names);
        return p;
    }
    float *p = malloc(((size_t)m->params_size + 1) * sizeof *p);
    if (!cnnw_load_ex(a->weights, m, p, names, err, es)) {
        free(p);
        return NULL;
    }
    return p;
}

struct Inferer {
    const CnnModel *m;
    Pool *pool;
    void **ws;
    bool *ready;                    /* per thread: its workspace holds the pack of `packed` */
    const float *packed;
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
    e->ready = calloc((size_t)rt_pool_threads(e->pool), sizeof *e->ready);
    for (int t = 0; t < rt_pool_threads(e->pool); t++)
        e->ws[t] = ws_alloc(m);
    return e;
}

void infer_free(Inferer *e)
{
    for (int t = 0; t < rt_pool_threads(e->pool); t++)
        free(e->ws[t]);
    free(e->ws);
    free(e->ready);
    rt_pool_free(e->pool);
    free(e);
}

static void infer_chunk(void *ctx, int64_t task, int thread)
{
    Inferer *e = ctx;
    int64_t first = task * e->m->batch;
    int64_t n = e->count - first < e->m->batch ? e->count - first : e->m->batch;
    int64_t in = (int64_t)e->m->height * e->m->width * e->m->channels;
    if (!e->ready[thread]) {
        e->m->prepare(e->params, e->ws[thread]);
        e->ready[thread] = true;
    }
    e->m->infer_prepared(e->params, e->input + first * in, e->output + first * e->m->outputs, (int)n,
                         e->ws[thread]);
}

void infer_run(Inferer *e, const float *params, const float *input, float *output, int64_t count)
{
    if (params != e->packed)
        memset(e->ready, 0, (size_t)rt_pool_threads(e->pool) * sizeof *e->ready);
    e->packed = e->params = params;
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

/* Refuses an output that is one of the inputs (NULL ends the list). */
bool output_is_input(const char *out, const char *const *inputs)
{
    for (; out && *inputs; inputs++) {
        if (cnn_same_file(out, *inputs) || (!strcmp(out, *inputs) && strcmp(out, "-") != 0)) {
            char msg[4200];
            snprintf(msg, sizeof msg, "the output '%s' is also an input", out);
            fail(msg);
            return true;
        }
    }
    return false;
}

static int cmd_infer(const CnnModel *m, const Args *a)
{
    char err[8192];
    if (!a->input || !a->output)
        return fail("infer needs --input x.f32 and --output y.f32 (either may be -)");
    if (output_is_input(a->output, (const char *[]){a->input, a->weights ? a->weights : a->input, NULL}))
        return 1;
    float *params = load_params(m, a, err, sizeof err);
    if (!params)
        return fail(err);
    size_t bytes;
    int64_t in = (int64_t)m->height * m->width * m->channels;
    float *x = (float *)cnn_read_all(a->input, &bytes, (size_t)1 << 40, err, sizeof err);
    const char *shown = strcmp(a->input, "-") ? a->input : "standard input";
    if (x && (bytes == 0 || bytes % (size_t)(in * 4) != 0)) {
        if (bytes == 0)
            snprintf(err, sizeof err, "%s: empty; it needs float32 images of %dx%dx%d (%lld bytes "
                     "each)", shown, m->height, m->width, m->channels, (long long)(in * 4));
        else
            snprintf(err, sizeof err, "%s: %zu bytes is not a whole number of %dx%dx%d float32 "
                     "images (%lld bytes each)", shown, bytes, m->height, m->width, m->channels,
                     (long long)(in * 4));
        free(x);
        x = NULL;
    }
    if (!x) {
        free(params);
        return fail(err);
    }
    int64_t count = (int64_t)(bytes / (size_t)(in * 4));
    float *y = malloc((size_t)(count * m->outputs) * sizeof *y);
    infer_all(m, params, x, y, count, a->threads);
    bool ok = cnn_write_all(a->output, y, (size_t)(count * m->outputs) * sizeof *y, err, sizeof err);
    free(x);
    free(y);
    free(params);
    return ok ? 0 : fail(err);
}

/* predict and eval read the outputs as class scores: a vector, one a class. */
static bool is_classifier(const CnnModel *m, const char *cmd)
{
    const CnnLayer *last = &m->layers[m->nlayers - 1];
    if (last->rank == 1 && m->outputs >= 2)
        return true;
    char msg[512], shape[64] = "";
    for (int r = 0, len = 0; r < last->rank; r++)
        len += snprintf(shape + len, sizeof shape - (size_t)len, "%s%d", r ? "x" : "", last->dims[r]);
    if (last->rank == 1)
        snprintf(shape, sizeof shape, "a single number");
    else
        strncat(shape, " values", sizeof shape - strlen(shape) - 1);
    snprintf(msg, sizeof msg, "model '%s' outputs %s per image, not a vector of class scores; "
             "'%s' needs a classifier (use 'infer' for the outputs themselves)", m->name, shape, cmd);
    fail(msg);
    return false;
}

static int cmd_predict(const CnnModel *m, const Args *a)
{
    char err[1024];
    if (!is_classifier(m, "predict"))
        return 1;
    if (a->nfiles == 0)
        return fail("predict needs at least one image (.pgm or .ppm)");
    CnnwExtra names;
    float *params = load_params_named(m, a, &names, err, sizeof err);
    if (!params)
        return fail(err);
    int64_t in = (int64_t)m->height * m->width * m->channels;
    float *x = malloc((size_t)in * sizeof *x), *y = malloc((size_t)m->outputs * sizeof *y);
    void *ws = ws_alloc(m);
    int rc = 0, top = a->top > m->outputs ? m->outputs : a->top;
    for (int i = 0; i < a->nfiles && rc == 0; i++) {
        /* PGM/PPM of the input's channels exactly; PNG and JPEG converted, as in image folders */
        const char *dot = strrchr(a->files[i], '.');
        bool pnm = dot && (!strcasecmp(dot, ".pgm") || !strcasecmp(dot, ".ppm"));
        bool read = pnm && !a->resize
                    ? cnn_read_pnm(a->files[i], m->height, m->width, m->channels, x, err, sizeof err)
                    : cnn_read_image(a->files[i], m->height, m->width, m->channels, a->resize, x, err, sizeof err);
        if (!read) {
            rc = fail(err);
            break;
        }
        if (i == 0)
            m->prepare(params, ws);
        m->infer_prepared(params, x, y, 1, ws);
        printf("%s:", a->files[i]);
        bool *used = calloc((size_t)m->outputs, 1);
        for (int k = 0; k < top; k++) {
            int best = -1;
            for (int j = 0; j < m->outputs; j++)
                if (!used[j] && (best < 0 || y[j] > y[best]))
                    best = j;
            used[best] = true;
            if (best < names.nclasses)
                printf(" %d %s (%.4f)", best, names.classes[best], y[best]);
            else
                printf(" %d (%.4f)", best, y[best]);
        }
        printf("\n");
        free(used);
    }
    free(ws);
    free(x);
    free(y);
    free(params);
    cnnw_extra_free(&names);
    return rc;
}

/* eval's table: each class's accuracy, and with --confusion the counts of
 * each label (rows) given each class (columns) */
static void print_classes(const CnnModel *m, const CnnwExtra *names, const int64_t *conf, bool matrix)
{
    int K = m->outputs, wide = 4;
    for (int k = 0; k < names->nclasses; k++)
        wide = (int)strlen(names->classes[k]) > wide ? (int)strlen(names->classes[k]) : wide;
    wide = wide > 24 ? 24 : wide;
    printf("class  %-*s  accuracy  right / images\n", wide, names->nclasses ? "name" : "");
    for (int k = 0; k < K; k++) {
        int64_t n = 0;
        for (int j = 0; j < K; j++)
            n += conf[(int64_t)k * K + j];
        if (n == 0)
            continue;
        printf("%5d  %-*.*s  %7.2f%%  %lld / %lld\n", k, wide, wide, k < names->nclasses ? names->classes[k] : "",
               100.0 * (double)conf[(int64_t)k * K + k] / (double)n, (long long)conf[(int64_t)k * K + k], (long long)n);
    }
    if (!matrix)
        return;
    printf("confusion (rows: the label, columns: the class given)\n%5s", "");
    for (int j = 0; j < K; j++)
        printf(" %6d", j);
    printf("\n");
    for (int k = 0; k < K; k++) {
        printf("%5d", k);
        for (int j = 0; j < K; j++)
            printf(" %6lld", (long long)conf[(int64_t)k * K + j]);
        printf("\n");
    }
}

bool data_paths(const Args *a, const char *kind, char *img, char *lbl, size_t size)
{
    bool test = !strcmp(kind, "t10k");
    const char *fi = test ? a->test_images : a->images, *fl = test ? a->test_labels : a->labels;
    if (fi) {
        snprintf(img, size, "%s", fi);
        snprintf(lbl, size, "%s", fl ? fl : "");
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

/* --data DIR in CIFAR-10's binary layout: data_batch_1.bin .. data_batch_5.bin
 * (those there) for training, test_batch.bin for testing; the file names into
 * names (kept by the caller), false when DIR is not one. */
int cifar_files(const Args *a, bool test, char names[5][4096])
{
    int n = 0;
    if (!a->data)
        return 0;
    for (int i = 1; i <= (test ? 1 : 5); i++) {
        if (test)
            snprintf(names[n], 4096, "%s/test_batch.bin", a->data);
        else
            snprintf(names[n], 4096, "%s/data_batch_%d.bin", a->data, i);
        if (access(names[n], R_OK) == 0)
            n++;
    }
    return n;
}

bool load_cifar(const CnnModel *m, const Args *a, char names[5][4096], int n, Dataset *d, char *err,
                size_t es)
{
    *d = (Dataset){0};
    if (m->height != 32 || m->width != 32 || m->channels != 3) {
        snprintf(err, es, "%s: CIFAR-10 images are 32x32x3; the model takes %dx%dx%d", a->data,
                 m->height, m->width, m->channels);
        return false;
    }
    const char *paths[5];
    for (int i = 0; i < n; i++)
        paths[i] = names[i];
    return cnn_read_cifar(paths, n, m->outputs, &d->im, &d->labels, err, es);
}

static int cmd_eval(const CnnModel *m, const Args *a)
{
    char err[8192], img[4096], lbl[4096];
    if (!a->targets && !is_classifier(m, "eval"))
        return 1;
    Args e = *a;
    if (a->images) {
        e.test_images = a->images;
        e.test_labels = a->labels;
    }
    if (!data_paths(&e, "t10k", img, lbl, sizeof img))
        return fail("eval needs --data DIR (or --images F --labels F, or --images F --targets F)");
    CnnwExtra names;
    float *params = load_params_named(m, a, &names, err, sizeof err);
    if (!params)
        return fail(err);
    Dataset d;
    char cifar[5][4096];
    int nc = a->images ? 0 : cifar_files(a, true, cifar);
    bool folder = !a->images && !nc && a->data && image_folder(a->data, "test");
    if (folder ? !load_folder(m, a->data, "test", a->resize, a->threads, &d, err, sizeof err)
        : nc ? !load_cifar(m, a, cifar, nc, &d, err, sizeof err)
             : !load_set(m, img, lbl, a->targets, &d, err, sizeof err)) {
        free(params);
        cnnw_extra_free(&names);
        return fail(err);
    }
    double loss;
    int64_t *conf = calloc((size_t)m->outputs * (size_t)m->outputs, sizeof *conf);
    int64_t right = evaluate(m, params, &d, a->threads, &loss, conf);
    if (d.targets) {
        printf("test mse: %.6g (%lld images)\n", loss, (long long)d.im.count);
    } else {
        printf("test accuracy: %.2f%% (%lld of %lld)  test loss %.4f\n",
               100.0 * (double)right / (double)d.im.count, (long long)right, (long long)d.im.count, loss);
        print_classes(m, names.nclasses ? &names : &d.names, conf, a->confusion);
    }
    free(conf);
    set_free(&d);
    free(params);
    cnnw_extra_free(&names);
    return 0;
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

/* float32 targets, count x outputs, for mse */
static bool load_targets(const CnnModel *m, const char *path, int64_t count, float **out,
                         char *err, size_t es)
{
    size_t want = (size_t)count * (size_t)m->outputs * sizeof(float), len;
    unsigned char *buf = cnn_read_all(path, &len, want, err, es);
    if ((buf || len > want) && len != want) {
        snprintf(err, es, "%s: %s bytes, but %lld images x %d outputs need %zu bytes of float32 "
                 "targets", path, len > want ? "more" : "fewer", (long long)count, m->outputs, want);
        free(buf);
        return false;
    }
    *out = (float *)buf;
    return buf != NULL;
}

bool load_set(const CnnModel *m, const char *img, const char *lbl, const char *targets, Dataset *d,
              char *err, size_t es)
{
    *d = (Dataset){0};
    if (targets && m->loss != CNN_LOSS_MSE) {
        snprintf(err, es, "%s: float targets are for a model trained with 'loss mse'; model '%s' "
                 "uses cross_entropy", targets, m->name);
        return false;
    }
    if (!cnn_read_idx_images(img, &d->im, err, es))
        return false;
    CnnImages *im = &d->im;
    if (im->height != m->height || im->width != m->width || im->channels != m->channels) {
        snprintf(err, es, "%s: images of %dx%dx%d; the model takes %dx%dx%d", img, im->height,
                 im->width, im->channels, m->height, m->width, m->channels);
        set_free(d);
        return false;
    }
    bool ok = targets ? load_targets(m, targets, im->count, &d->targets, err, es)
                      : cnn_read_idx_labels(lbl, im->count, m->outputs, &d->labels, err, es);
    if (!ok)
        set_free(d);
    return ok;
}

void set_free(Dataset *d)
{
    free(d->im.pixels);
    free(d->labels);
    free(d->targets);
    cnnw_extra_free(&d->names);
    *d = (Dataset){0};
}

/* How many of the images the model classifies as their label says (0 with
 * targets), and their mean loss: the train block's, cross-entropy of the
 * probabilities the model ends with, or the squared difference to the
 * one-hot label or the float target. */
int64_t evaluate(const CnnModel *m, const float *params, const Dataset *d, int threads, double *loss,
                 int64_t *confusion)
{
    const CnnImages *im = &d->im;
    int K = m->outputs;
    float *y = malloc((size_t)(im->count * K) * sizeof *y);
    infer_all(m, params, im->pixels, y, im->count, threads);
    int64_t right = 0;
    double sum = 0;
    for (int64_t i = 0; i < im->count; i++) {
        const float *p = y + i * K;
        int best = 0;
        for (int j = 1; j < K; j++)
            if (p[j] > p[best])
                best = j;
        right += d->labels && best == d->labels[i];
        if (confusion && d->labels)
            confusion[(int64_t)d->labels[i] * K + best]++;
        if (m->loss == CNN_LOSS_MSE) {
            double e = 0;
            for (int j = 0; j < K; j++) {
                double t = d->targets ? d->targets[i * K + j] : (j == d->labels[i]);
                e += ((double)p[j] - t) * ((double)p[j] - t);
            }
            sum += e / K;
        } else {
            sum -= log(fmax((double)p[d->labels[i]], 1e-30));
        }
    }
    free(y);
    if (loss)
        *loss = sum / (double)im->count;
    return right;
}

/* ---- the command line: a table of commands, and of options with the
 * commands they apply to ---- */

enum { C_TRAIN = 1, C_EVAL = 2, C_PREDICT = 4, C_INFER = 8, C_BENCH = 16, C_SHOW = 32 };

static const struct Command {
    const char *name;
    int (*run)(const CnnModel *m, const Args *a);
    int mask;
    const char *usage;              /* after the program's name */
} commands[] = {
    {"train", cmd_train, C_TRAIN,
     "train   --data DIR | --images F (--labels F | --targets F)\n"
     "                [--test-images F (--test-labels F | --test-targets F)]\n"
     "                [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N]\n"
     "                [--weights W | --resume W] [--save W] [--save-best W] [--no-shuffle]\n"
     "                [--steps N] [--log metrics.csv] [--progress SECONDS]\n"
     "                under mpirun (cnnc --mpi): [--mpi-timeout SECONDS] [--mpi-bucket KIB]"},
    {"eval", cmd_eval, C_EVAL,
     "eval    --weights W --data DIR | --images F (--labels F | --targets F) [--threads N]\n"
     "                [--classes FILE] [--confusion]"},
    {"predict", cmd_predict, C_PREDICT,
     "predict --weights W [--top K] [--resize] [--classes FILE] image.png|jpg|pgm|ppm ..."},
    {"infer", cmd_infer, C_INFER,
     "infer   --weights W --input x.f32|- --output y.f32|- [--threads N]"},
    {"bench", cmd_bench, C_BENCH, "bench   [--threads N]      (speed on random data)"},
    {"show", cmd_show, C_SHOW,
     "show    kernels --weights W [--layer NAME] [--verbose] -o kernels.png|kernels.svg\n"
     "       PROG show    maps --weights W [--layer NAME] [--verbose] image.pgm -o maps.png\n"
     "       PROG show    curve metrics.csv -o curve.png|curve.svg"},
};

typedef enum { O_PATH, O_INT, O_INT0, O_REAL, O_SEED, O_FLAG } OptKind;   /* O_INT0: 0 too */

static const struct Option {
    const char *name;
    OptKind kind;
    size_t field;                   /* in Args */
    int cmds;                       /* the commands it applies to */
    int hi;                         /* O_INT: the largest value */
} options[] = {
    {"--weights", O_PATH, offsetof(Args, weights), C_TRAIN | C_EVAL | C_PREDICT | C_INFER | C_SHOW, 0},
    {"--data", O_PATH, offsetof(Args, data), C_TRAIN | C_EVAL, 0},
    {"--images", O_PATH, offsetof(Args, images), C_TRAIN | C_EVAL, 0},
    {"--labels", O_PATH, offsetof(Args, labels), C_TRAIN | C_EVAL, 0},
    {"--test-images", O_PATH, offsetof(Args, test_images), C_TRAIN, 0},
    {"--test-labels", O_PATH, offsetof(Args, test_labels), C_TRAIN, 0},
    {"--targets", O_PATH, offsetof(Args, targets), C_TRAIN | C_EVAL, 0},
    {"--test-targets", O_PATH, offsetof(Args, test_targets), C_TRAIN, 0},
    {"--input", O_PATH, offsetof(Args, input), C_INFER, 0},
    {"--output", O_PATH, offsetof(Args, output), C_INFER | C_SHOW, 0},
    {"-o", O_PATH, offsetof(Args, output), C_INFER | C_SHOW, 0},
    {"--save", O_PATH, offsetof(Args, save), C_TRAIN, 0},
    {"--log", O_PATH, offsetof(Args, log), C_TRAIN, 0},
    {"--save-best", O_PATH, offsetof(Args, save_best), C_TRAIN, 0},
    {"--resume", O_PATH, offsetof(Args, resume), C_TRAIN, 0},
    {"--classes", O_PATH, offsetof(Args, classes), C_TRAIN | C_EVAL | C_PREDICT, 0},
    {"--confusion", O_FLAG, offsetof(Args, confusion), C_EVAL, 0},
    {"--layer", O_PATH, offsetof(Args, layer), C_SHOW, 0},
    {"--top", O_INT, offsetof(Args, top), C_PREDICT, 1 << 30},
    {"--threads", O_INT, offsetof(Args, threads), C_TRAIN | C_EVAL | C_INFER | C_BENCH, 1024},
    {"--epochs", O_INT, offsetof(Args, epochs), C_TRAIN, 1 << 30},
    {"--batch", O_INT, offsetof(Args, batch), C_TRAIN, 1 << 30},
    {"--steps", O_INT, offsetof(Args, steps), C_TRAIN, 1 << 30},
    {"--progress", O_INT, offsetof(Args, progress), C_TRAIN, 1 << 30},
    {"--mpi-timeout", O_INT0, offsetof(Args, mpi_timeout), C_TRAIN, 1 << 30},
    {"--mpi-bucket", O_INT0, offsetof(Args, mpi_bucket), C_TRAIN, 1 << 20},
    {"--lr", O_REAL, offsetof(Args, lr), C_TRAIN, 0},
    {"--seed", O_SEED, offsetof(Args, seed), C_TRAIN, 0},
    {"--no-shuffle", O_FLAG, offsetof(Args, no_shuffle), C_TRAIN, 0},
    {"--resize", O_FLAG, offsetof(Args, resize), C_TRAIN | C_EVAL | C_PREDICT, 0},
    {"--verbose", O_FLAG, offsetof(Args, verbose), C_SHOW, 0},
};

static void usage(FILE *out, const char *prog, const struct Command *only)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (only && only != &commands[i])
            continue;
        fprintf(out, "%s %s ", only || i == 0 ? "usage:" : "      ", prog);
        for (const char *p = commands[i].usage; *p; p++) {
            if (!strncmp(p, "PROG", 4)) {
                fputs(prog, out);
                p += 3;
            } else {
                fputc(*p, out);
            }
        }
        fputc('\n', out);
    }
    fprintf(out, "model '%s': input %dx%dx%d, %d outputs, %lld parameters\n", cnn_model.name,
            cnn_model.height, cnn_model.width, cnn_model.channels, cnn_model.outputs,
            (long long)cnn_model.params_size);
}

/* One option and its value; false after a message. */
static bool parse_option(const struct Option *o, const char *v, Args *a)
{
    char msg[512], *end;
    void *field = (char *)a + o->field;
    errno = 0;
    switch (o->kind) {
    case O_FLAG:
        *(bool *)field = true;
        return true;
    case O_PATH:
        *(const char **)field = v;
        return true;
    case O_INT:
    case O_INT0:
        if (parse_int(v, o->kind == O_INT, o->hi, field))
            return true;
        snprintf(msg, sizeof msg, "'%s' needs a number from %d to %d, not '%s'", o->name, o->kind == O_INT,
                 o->hi, v);
        break;
    case O_REAL:
        a->lr = strtod(v, &end);
        if (!*end && *v && a->lr > 0 && a->lr <= 1e6)
            return true;
        snprintf(msg, sizeof msg, "'%s' needs a positive number, not '%s'", o->name, v);
        break;
    case O_SEED:
        a->seed = strtoull(v, &end, 10);
        a->seed_given = true;
        if (!*end && *v && !errno && v[0] != '-')
            return true;
        snprintf(msg, sizeof msg, "'%s' needs an integer from 0 to 2^64 - 1, not '%s'", o->name, v);
        break;
    }
    fail(msg);
    return false;
}

/* Image files need their labels or targets, and only one of the two. */
static bool check_pairs(const Args *a)
{
    const struct {
        const char *images, *labels, *targets;
        const char *names[3];
    } sets[] = {
        {a->images, a->labels, a->targets, {"--images", "--labels", "--targets"}},
        {a->test_images, a->test_labels, a->test_targets, {"--test-images", "--test-labels", "--test-targets"}},
    };
    char msg[256];
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        const char *const *n = sets[i].names;
        if (sets[i].labels && sets[i].targets)
            snprintf(msg, sizeof msg, "give '%s' or '%s', not both", n[1], n[2]);
        else if (sets[i].images && !sets[i].labels && !sets[i].targets && !a->data)
            snprintf(msg, sizeof msg, "'%s' needs '%s' (or '%s') too", n[0], n[1], n[2]);
        else if (!sets[i].images && sets[i].labels)
            snprintf(msg, sizeof msg, "'%s' needs '%s' too", n[1], n[0]);
        else
            continue;
        fail(msg);
        return false;
    }
    return true;
}

/* The command, among mpirun's processes with cnnc --mpi: train on all of
 * them (train.c), the others on rank 0 alone. */
static int run_command(const struct Command *cmd, const CnnModel *m, const Args *a, int *argc, char ***argv)
{
    int rc = dist_start(argc, argv);
    if (rc)
        return rc;
    dist_set_timeout(a->mpi_timeout);
    if (cmd->run == cmd_train || dist_rank() == 0)
        rc = cmd->run(m, a);
    dist_end();
    return rc;
}

int main(int argc, char **argv)
{
    const CnnModel *m = &cnn_model;
    const char *prog = argv[0];
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout, prog, NULL);
        return argc < 2;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("%s: model '%s', compiled by cnnc %s\n", prog, m->name, CNNC_VERSION);
        return 0;
    }
    const struct Command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name))
            cmd = &commands[i];
    char msg[512];
    if (!cmd) {
        snprintf(msg, sizeof msg, "unknown command '%s'; expected train, eval, predict, infer, "
                 "bench or show (see '%s --help')", argv[1], prog);
        return fail(msg);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    Args a = {.cmd = argv[1], .top = 3, .threads = cores > 0 ? (int)cores : 1, .progress = 10,
              .mpi_timeout = 300, .mpi_bucket = 1024};
    a.files = calloc((size_t)argc, sizeof *a.files);
    int rc = 1;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout, prog, cmd);
            rc = 0;
            goto out;
        }
        if (o[0] != '-' || !o[1]) {
            a.files[a.nfiles++] = o;
            continue;
        }
        const struct Option *opt = NULL;
        for (size_t k = 0; k < sizeof options / sizeof *options; k++)
            if (!strcmp(o, options[k].name))
                opt = &options[k];
        if (!opt || !(opt->cmds & cmd->mask)) {
            snprintf(msg, sizeof msg, opt ? "'%s' does not apply to '%s' (see '%s %s --help')"
                                          : "unknown option '%s' for '%s' (see '%s %s --help')",
                     o, cmd->name, prog, cmd->name);
            fail(msg);
            goto out;
        }
        if (opt->kind != O_FLAG && i + 1 >= argc) {
            snprintf(msg, sizeof msg, "'%s' needs a value", o);
            fail(msg);
            goto out;
        }
        if (!parse_option(opt, opt->kind == O_FLAG ? NULL : argv[++i], &a))
            goto out;
    }
    if (check_pairs(&a))
        rc = run_command(cmd, m, &a, &argc, &argv);
out:
    free(a.files);
    return rc;
}

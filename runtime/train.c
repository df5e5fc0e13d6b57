/*
 * train.c: the compiled program's `train` command.
 *
 *   ./model train --data DIR [--epochs N] [--batch N] [--lr X] [--seed N]
 *                 [--weights W] [--save W] [--no-shuffle] [--steps N] [--log F]
 *                 [--progress SECONDS]
 *
 * Reads the training set (and the test set, when there is one), starts from
 * --weights or the seeded init, and runs steps (step.c) over shuffled batches
 * (the last one may be partial). A progress bar on a terminal, fitted to its
 * width; off a terminal a progress line every --progress seconds and a line
 * per epoch. Test loss and accuracy after each epoch; a CSV line per epoch
 * with --log; --save after every epoch, atomically (files.c). The learning
 * rate follows the train block's schedule, step by step (scheduled_lr).
 *
 * The run stops with exit status 1, before anything more is saved, so that
 * the last checkpoint stays good, when the loss is not finite or diverges:
 * when the epoch's mean loss so far exceeds DIVERGED times the first step's
 * (or DIVERGED, if that is larger). SIGINT and SIGTERM stop it after the
 * current step, save, and exit with 130 and 143.
 *
 * Under mpirun (cnnc --mpi, dist_mpi.c) each process takes its part of every
 * batch, [n r / N, n (r+1) / N) for rank r of N; the step's reduce hook
 * (reduce_procs) adds the gradients, each weighted by its part of the batch,
 * and the losses over the processes, passes rank 0's running statistics to
 * all, and agrees on whether a signal asked to stop, so that every process
 * applies the same update and stops at the same step. Rank 0 alone reports
 * and writes; the evaluation is split across the processes and added.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "runtime.h"

enum { DIVERGED = 100 };

/* The signal that asked to stop; the one piece of global state, as a signal
 * handler needs. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* What the progress display needs to know of the run. */
typedef struct Run {
    int epoch, epochs;
    int64_t seen, count;            /* images of this epoch done, and in it */
    int64_t done, total;            /* images of the whole run done, and to do */
    double loss, t0, last;          /* the epoch's mean loss; the run's start; the last line */
    bool tty;
    bool quiet;                     /* a process other than rank 0: no progress */
    int every;                      /* seconds between lines off a terminal */
} Run;

static void format_eta(char *buf, size_t size, const Run *r, double ips)
{
    double eta = ips > 0 ? (double)(r->total - r->done) / ips : 0;
    int s = (int)(eta + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%d:%02d", s / 60, s % 60);
}

static int terminal_width(void)
{
    struct winsize ws;
    return ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

/* A progress bar that fits the terminal, or a line every r->every seconds. */
static void progress(Run *r, bool force)
{
    double t = now();
    if (r->quiet)
        return;
    if (!force && t - r->last < (r->tty ? 0.1 : r->every))
        return;
    r->last = t;
    double ips = (double)r->done / (t - r->t0 + 1e-9);
    char eta[32], tail[160], head[32];
    format_eta(eta, sizeof eta, r, ips);
    snprintf(head, sizeof head, "epoch %d/%d", r->epoch, r->epochs);
    snprintf(tail, sizeof tail, "%lld/%lld  loss %.4f  %.0f img/s  ETA %s", (long long)r->seen,
             (long long)r->count, r->loss, ips, eta);
    if (!r->tty) {
        fprintf(stderr, "%s  %s\n", head, tail);
        return;
    }
    /* "head [====    ] tail", one column short of the width so it never
     * wraps: the bar only where there is room for it, the tail cut short on
     * a narrow terminal */
    int cols = terminal_width() - 1;
    int room = cols - (int)strlen(head) - (int)strlen(tail) - 4;
    char bar[256] = "", line[512];
    if (room >= 10) {
        int width = room < 30 ? room : 30;
        int fill = (int)(width * r->seen / (r->count ? r->count : 1));
        snprintf(bar, sizeof bar, " [%.*s%*s]", fill,
                 "==============================", width - fill, "");
    }
    snprintf(line, sizeof line, "%s%s %s", head, bar, tail);
    if (cols > 0 && cols < (int)sizeof line)
        line[cols] = '\0';
    fprintf(stderr, "\r%s\033[K", line);
}

/* The learning rate of step k (from 0) of epoch e (from 0), of `steps` an
 * epoch and `epochs` in all: linear warmup over the first m->warmup epochs
 * (step t of their T steps at lr (t + 1) / T), then the schedule over the
 * epochs after them, stepped once an epoch as PyTorch's StepLR, MultiStepLR
 * (milestones counted from the schedule's start) and CosineAnnealingLR
 * (T_max the epochs left after warmup). */
static double scheduled_lr(const CnnModel *m, double lr, int e, int64_t k, int64_t steps, int epochs)
{
    int w = m->warmup;
    if (e < w)
        return lr * (double)((int64_t)e * steps + k + 1) / (double)((int64_t)w * steps);
    int s = e - w, decays = 0;
    switch (m->schedule) {
    case CNN_SCHED_STEP:
        return lr * pow(m->gamma, s / m->sched_every);
    case CNN_SCHED_MULTISTEP:
        for (int i = 0; i < m->nmilestones; i++)
            decays += s >= m->milestones[i];
        return lr * pow(m->gamma, decays);
    case CNN_SCHED_COSINE:
        if (epochs - w <= 0)
            return lr;
        return m->min_lr + (lr - m->min_lr) * (1 + cos(M_PI * s / (epochs - w))) / 2;
    }
    return lr;
}

typedef struct Data {
    Dataset train, test, val;
    bool has_test;
} Data;

static void data_free(Data *d)
{
    set_free(&d->train);
    set_free(&d->test);
    set_free(&d->val);
}

/* validate: the last n (or that fraction of the) training images, held out
 * before any shuffling, into d->val (a copy). */
static bool hold_out(const CnnModel *m, Data *d, char *err, size_t es)
{
    CnnImages *im = &d->train.im;
    int64_t n = m->validate < 1 ? (int64_t)floor(m->validate * (double)im->count) : (int64_t)m->validate;
    if (n == 0)
        return true;
    if (n >= im->count) {
        snprintf(err, es, "validate %lld is not less than the %lld training images", (long long)n,
                 (long long)im->count);
        return false;
    }
    int64_t keep = im->count - n, in = (int64_t)im->height * im->width * im->channels;
    int64_t per = d->train.targets ? m->outputs : 1;
    Dataset *v = &d->val;
    v->im = *im;
    v->im.count = n;
    v->im.pixels = malloc((size_t)(n * in) * sizeof(float));
    memcpy(v->im.pixels, im->pixels + keep * in, (size_t)(n * in) * sizeof(float));
    if (d->train.targets) {
        v->targets = malloc((size_t)(n * per) * sizeof(float));
        memcpy(v->targets, d->train.targets + keep * per, (size_t)(n * per) * sizeof(float));
    } else {
        v->labels = malloc((size_t)n * sizeof(int32_t));
        memcpy(v->labels, d->train.labels + keep, (size_t)n * sizeof(int32_t));
    }
    im->count = keep;
    return true;
}

/* A held-out set's figures after an epoch: its loss, and its accuracy in
 * percent (-1 for float targets); "  NAME loss X  NAME accuracy Y%" on stdout,
 * and the two CSV fields. */
typedef struct Figures {
    double loss, acc;
    char loss_csv[32], acc_csv[32];
} Figures;

/* Loss and accuracy on d, each process evaluating its part (rank 0 all of
 * it when there is one process). */
static Figures report_set(const CnnModel *m, const float *params, const Dataset *d, int threads,
                          const char *name)
{
    Figures f = {0, -1, "", ""};
    if (!d->im.count)
        return f;
    int64_t n = d->im.count, lo = n * dist_rank() / dist_size(), hi = n * (dist_rank() + 1) / dist_size();
    Dataset part = *d;
    part.im.pixels += lo * m->height * m->width * m->channels;
    part.im.count = hi - lo;
    part.labels = d->labels ? d->labels + lo : NULL;
    part.targets = d->targets ? d->targets + lo * m->outputs : NULL;
    double sums[2] = {0, 0};        /* right, and the sum of the losses */
    if (hi > lo) {
        sums[0] = (double)evaluate(m, params, &part, threads, &sums[1], NULL);
        sums[1] *= (double)(hi - lo);
    }
    dist_sum_f64(sums, 2);
    f.loss = sums[1] / (double)n;
    printf("  %s loss %.4f", name, f.loss);
    snprintf(f.loss_csv, sizeof f.loss_csv, "%.6f", f.loss);
    if (!d->targets) {
        f.acc = 100.0 * sums[0] / (double)n;
        printf("  %s accuracy %.2f%%", name, f.acc);
        snprintf(f.acc_csv, sizeof f.acc_csv, "%.4f", f.acc / 100);
    }
    return f;
}

/* The step's reduce hook across processes: the gradient and the loss of
 * this process's part of the batch, weighted by that part, added over the
 * processes with rank 0's running statistics and every process's signal.
 * With buckets (one share a process, every process), the gradient's sums
 * start during the backward pass (bucket_procs), a bucket of at least
 * `bucket` floats at a time from the last layers on, and the hook adds the
 * rest and waits for them. */
typedef struct Reduce {
    const CnnModel *m;
    float *params, *buf;
    int part, batch;                /* this process's images of the step's batch */
    int signal;                     /* in: this process's; out: the one every process stops for */
    int64_t bucket;                 /* floats */
    int64_t unsent;                 /* buf[unsent, params_size) is started this step */
    int64_t buckets, steps;         /* over the run */
} Reduce;

static void bucket_procs(void *ctx, const float *d, int64_t from, int64_t end)
{
    Reduce *r = ctx;
    float w = (float)r->part / (float)r->batch;
    for (int64_t i = from; i < end; i++)
        r->buf[i] = w * d[i];
    if (r->unsent - from >= r->bucket || from == 0) {
        dist_sum_start(r->buf + from, r->unsent - from);
        r->unsent = from;
        r->buckets++;
    } else {
        dist_progress();
    }
}

static void reduce_procs(void *ctx, float *d, int64_t n, float *loss)
{
    Reduce *r = ctx;
    const CnnModel *m = r->m;
    float w = (float)r->part / (float)r->batch;
    int64_t first = r->unsent == n ? 0 : n;     /* the first float this call adds */
    int64_t k = first;
    for (int64_t i = 0; first == 0 && i < n; i++)
        r->buf[k++] = w * d[i];
    r->buf[k++] = w * *loss;
    r->buf[k++] = (float)r->signal;
    r->buf[k++] = r->signal != 0;
    for (int t = 0; t < m->ntensors; t++)
        for (int64_t i = 0; m->tensors[t].state && i < m->tensors[t].size; i++)
            r->buf[k++] = dist_rank() == 0 ? r->params[m->tensors[t].offset + i] : 0.0f;
    dist_sum(r->buf + first, k - first);
    if (first)
        dist_sum_finish();
    r->steps++;
    r->unsent = n;
    memcpy(d, r->buf, (size_t)n * sizeof *d);
    *loss = r->buf[n];
    float signals = r->buf[n + 1], count = r->buf[n + 2];
    r->signal = count == 0 ? 0 : signals / count == SIGINT ? SIGINT : SIGTERM;
    k = n + 3;
    for (int t = 0; t < m->ntensors; t++)
        for (int64_t i = 0; m->tensors[t].state && i < m->tensors[t].size; i++)
            r->params[m->tensors[t].offset + i] = r->buf[k++];
}

static bool load_data(const CnnModel *m, const Args *a, Data *d, char *err, size_t es)
{
    char img[4096], lbl[4096];
    *d = (Data){0};
    data_paths(a, "train", img, lbl, sizeof img);
    char cifar[5][4096];
    int nc = a->images ? 0 : cifar_files(a, false, cifar);
    bool folder = !a->images && !nc && a->data && image_folder(a->data, "train");
    if (folder ? !load_folder(m, a->data, "train", a->resize, a->threads, &d->train, err, es)
        : nc ? !load_cifar(m, a, cifar, nc, &d->train, err, es)
             : !load_set(m, img, lbl, a->targets, &d->train, err, es))
        return false;
    if (!hold_out(m, d, err, es)) {
        data_free(d);
        return false;
    }
    if (folder && image_folder(a->data, "test")) {
        if (!load_folder(m, a->data, "test", a->resize, a->threads, &d->test, err, es)) {
            data_free(d);
            return false;
        }
        d->has_test = true;
    } else if (folder) {
        /* no test split */
    } else if (!a->test_images && (nc = cifar_files(a, true, cifar)) > 0) {
        if (!load_cifar(m, a, cifar, nc, &d->test, err, es)) {
            data_free(d);
            return false;
        }
        d->has_test = true;
    } else if (a->test_images || a->data) {
        data_paths(a, "t10k", img, lbl, sizeof img);
        if (access(img, R_OK) == 0 || a->test_images) {
            if (!load_set(m, img, lbl, a->test_targets, &d->test, err, es)) {
                data_free(d);
                return false;
            }
            d->has_test = true;
        }
    }
    return true;
}

/* Refuses, before any work, what train cannot do or would destroy; false
 * after a message. */
static bool check_train(const CnnModel *m, const Args *a, int batch)
{
    char img[4096], lbl[4096], timg[4096], tlbl[4096], err[8192];
    if (!m->train_step || m->params_size == 0) {
        snprintf(err, sizeof err, m->params_size == 0 ? "model '%s' has no trainable parameters: there is nothing to train"
                 : m->baked ? "this program has its weights built in (cnnc --weights), "
                 "so it has no training code; build it without --weights to train"
                 : "this program was built with --inference-only: it has no training code", m->name);
        return fail(err) == 0;
    }
    int threads = a->threads < 64 ? a->threads : 64;
    int part = (batch + dist_size() - 1) / dist_size();     /* a process's images of a step */
    if (a->resume && a->weights)
        return fail("--resume W continues a run from its checkpoint, weights included; --weights W "
                    "starts a new run from weights: give one of them") == 0;
    if (part > stepper_most_images(m, threads)) {
        snprintf(err, sizeof err, "batch norm normalizes over a whole step's %d images, but this program "
                 "takes at most %d per thread (built with --batch %d) on %d thread%s; use --threads %d, or "
                 "build with cnnc --batch %d", part, m->batch, m->batch, threads, threads == 1 ? "" : "s",
                 (part + m->batch - 1) / m->batch, part);
        return fail(err) == 0;
    }
    if (batch < m->min_images) {
        snprintf(err, sizeof err, "a batch norm over a vector normalizes each value over the step's images, "
                 "so a step needs at least %d; --batch is %d", m->min_images, batch);
        return fail(err) == 0;
    }
    if (!data_paths(a, "train", img, lbl, sizeof img))
        return fail("train needs --data DIR (or --images F --labels F, or --images F --targets F)") == 0;
    data_paths(a, "t10k", timg, tlbl, sizeof timg);
    const char *start = a->weights ? a->weights : a->resume ? a->resume : img;
    const char *inputs[] = {img, lbl, timg, tlbl, start, NULL};
    if (output_is_input(a->save, (const char *[]){img, lbl, timg, tlbl, NULL}) ||
        output_is_input(a->log, inputs) || output_is_input(a->log, (const char *[]){a->save ? a->save : img, NULL}))
        return false;
    if (a->save_best && !(m->validate > 0))
        return fail("--save-best keeps the best validation figure: the train block needs 'validate'") == 0;
    if (output_is_input(a->save_best, (const char *[]){img, lbl, timg, tlbl, NULL}) ||
        output_is_input(a->save_best, (const char *[]){a->save ? a->save : img, a->log ? a->log : img, NULL}))
        return false;
    /* a --save that cannot be written is found now, not after the first epoch */
    const char *outs[] = {a->save, a->save_best};
    for (int i = 0; i < 2; i++) {
        CnnOut probe;
        if (outs[i] && !cnn_out_begin(&probe, outs[i], err, sizeof err))
            return fail(err) == 0;
        if (outs[i])
            cnn_out_abort(&probe);
    }
    return true;
}

/* fail's message, and false */
static bool refuse(const char *msg)
{
    fail(msg);
    return false;
}

/* --save: the weights and, beside them, the run's state and the class
 * names (a full checkpoint) */
static bool save(const CnnModel *m, const char *path, const float *params, const CnnTrainState *st,
                 const CnnwExtra *classes)
{
    char err[8192];
    CnnwExtra x = {.state = (CnnTrainState *)st, .classes = classes->classes, .nclasses = classes->nclasses};
    if (dist_rank() > 0)
        return true;                /* rank 0 writes */
    if (path && !cnnw_save_ex(path, m, params, &x, err, sizeof err)) {
        fail(err);
        return false;
    }
    return true;
}

/* --resume W: params, the state (st->opt_state is the caller's) and the
 * class names from W's checkpoint */
static float *resume(const CnnModel *m, const char *path, CnnTrainState *st, CnnwExtra *classes)
{
    char err[8192];
    float *params = malloc(((size_t)m->params_size + 1) * sizeof *params);
    CnnwExtra x = {.state = st};
    if (!cnnw_load_ex(path, m, params, &x, err, sizeof err)) {
        fail(err);
        free(params);
        return NULL;
    }
    if (!x.has_state) {
        snprintf(err, sizeof err, "%s: weights only, no training state to resume (it was not saved by "
                 "train --save); --weights %s starts a new run from these weights", path, path);
        fail(err);
        cnnw_extra_free(&x);
        free(params);
        return NULL;
    }
    *classes = x;
    return params;
}

static bool log_line(FILE *log, const char *path, char *err, size_t es, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static bool log_line(FILE *log, const char *path, char *err, size_t es, const char *fmt, ...)
{
    if (!log)
        return true;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    if (fflush(log) != 0 || ferror(log)) {
        snprintf(err, es, "%s: cannot write: %s", path, strerror(errno));
        return false;
    }
    return true;
}

/* the signal the run stops for: this process's, or with other processes
 * the one they agreed on in the last step */
static int signalled(const Reduce *red)
{
    return dist_size() > 1 ? red->signal : stop_signal;
}

/* With other processes: the same model, weights, optimizer state and
 * training data on every one of them, else a message naming those that
 * differ (rank 0 prints it). */
static bool agree(const CnnModel *m, const float *params, const float *opt, const Dataset *train, char *err,
                  size_t es)
{
    if (dist_size() == 1)
        return true;
    uint64_t weights = crc32(crc32(0, (const Bytef *)params, (uInt)(m->params_size * sizeof *params)),
                             (const Bytef *)opt, (uInt)(m->opt_state_size * sizeof *opt));
    uint64_t data = (uint64_t)train->im.count << 32 |
                    (train->labels ? crc32(0, (const Bytef *)train->labels,
                                           (uInt)(train->im.count * (int64_t)sizeof *train->labels)) : 0);
    char e[3][1024] = {"", "", ""};
    bool same[3] = {dist_agree(m->shape_hash, "a model", e[0], sizeof e[0]),
                    dist_agree(weights, "weights or optimizer state", e[1], sizeof e[1]),
                    dist_agree(data, "training data", e[2], sizeof e[2])};
    for (int i = 0; i < 3; i++)
        if (!same[i]) {
            snprintf(err, es, "%s", e[i]);
            if (dist_rank() == 0)
                fail(err);
            return false;
        }
    return true;
}

int cmd_train(const CnnModel *m, const Args *a)
{
    char err[8192] = "";
    float *opt = calloc((size_t)m->opt_state_size + 1, sizeof *opt);
    CnnTrainState st = {.opt_state = opt, .opt_state_size = m->opt_state_size, .epoch = 1, .first_loss = -1};
    CnnwExtra classes = {0};
    float *params = NULL;
    if (a->resume && !a->weights && !(params = resume(m, a->resume, &st, &classes))) {
        free(opt);
        return 1;
    }
    bool resumed = params != NULL;
    /* what the command line gives wins; else the checkpoint's, else the model's */
    int batch = a->batch ? a->batch : resumed ? st.batch : m->train_batch;
    uint64_t seed = a->seed_given ? a->seed : resumed ? st.seed : m->seed;
    int epochs = a->epochs ? a->epochs : resumed ? st.epochs : m->epochs;
    double base_lr = a->lr > 0 ? a->lr : resumed ? st.base_lr : (double)m->hp.lr;
    bool shuffled = !a->no_shuffle && (!resumed || st.shuffle);
    if (resumed && st.epoch_steps && batch != st.batch) {
        snprintf(err, sizeof err, "%s: stopped in the middle of epoch %d with batches of %d; resume it "
                 "with the same --batch (or from a checkpoint between epochs)", a->resume, st.epoch, st.batch);
        fail(err);
    }
    Data data = {0};
    bool ready = !err[0] && check_train(m, a, batch) && (load_data(m, a, &data, err, sizeof err) || refuse(err));
    if (ready && data.train.im.count < m->min_images) {
        snprintf(err, sizeof err, "%lld training image, but a batch norm over a vector needs at least %d a step",
                 (long long)data.train.im.count, m->min_images);
        ready = refuse(err);
    }
    if (ready && resumed && st.train_images != data.train.im.count) {
        snprintf(err, sizeof err, "%s: its run trained on %lld images, these are %lld: resume it on the "
                 "same data (--weights starts a new run from its weights)", a->resume,
                 (long long)st.train_images, (long long)data.train.im.count);
        ready = refuse(err);
    }
    /* the class names the checkpoints keep: --classes FILE's, the image
     * folder's, or those of the checkpoint resumed */
    if (ready && a->classes) {
        cnnw_extra_free(&classes);
        ready = read_class_names(m, a->classes, &classes, err, sizeof err) || refuse(err);
    } else if (ready && data.train.names.nclasses && !classes.nclasses) {
        classes = data.train.names;
        data.train.names = (CnnwExtra){0};
    }
    if (ready && !params) {
        params = a->weights ? load_params(m, a, err, sizeof err) : malloc(((size_t)m->params_size + 1) * sizeof *params);
        if (params && !a->weights)
            m->init_params(params, seed);
        ready = params || refuse(err);
    }
    /* every process is ready, and they agree, before --log is touched */
    ready = dist_all(ready) && agree(m, params, opt, &data.train, err, sizeof err);
    /* --log: a new file, or with --resume the old one, appended to */
    FILE *log = NULL;
    bool append = resumed && a->log && access(a->log, F_OK) == 0;
    if (ready && a->log && dist_rank() == 0 && !(log = fopen(a->log, append ? "a" : "w"))) {
        snprintf(err, sizeof err, "%s: cannot write: %s", a->log, strerror(errno));
        ready = refuse(err);
    }
    ready = dist_all(ready);        /* rank 0's --log */
    if (!ready) {
        if (log)
            fclose(log);
        free(params);
        free(opt);
        cnnw_extra_free(&classes);
        data_free(&data);
        return 1;
    }
    bool ok = append || log_line(log, a->log, err, sizeof err,
                                 "epoch,step,loss,accuracy,images_per_s,test_loss,lr,seconds,val_loss,"
                                 "val_accuracy\n") || fail(err) == 0;
    ok = dist_all(ok);

    CnnHyper hp = m->hp;
    hp.seed = seed;
    hp.float_targets = data.train.targets != NULL;
    int threads = a->threads < 64 ? a->threads : 64;
    Stepper *stepper = stepper_new(m, threads);
    Reduce red = {.m = m, .params = params};
    if (dist_size() > 1) {
        int64_t state = 0;
        for (int t = 0; t < m->ntensors; t++)
            state += m->tensors[t].state ? m->tensors[t].size : 0;
        red.buf = malloc(((size_t)(m->params_size + state) + 3) * sizeof *red.buf);
        red.unsent = m->params_size;
        stepper_set_reduce(stepper, reduce_procs, &red);
        /* buckets when every process's steps are one share, the size rank 0's */
        double kib = dist_rank() == 0 ? a->mpi_bucket : 0;
        dist_sum_f64(&kib, 1);
        red.bucket = (int64_t)kib * 256;
        if (dist_all(kib > 0 && threads == 1 && (batch + dist_size() - 1) / dist_size() <= m->batch))
            stepper_set_buckets(stepper, bucket_procs, &red);
    }
    size_t in = (size_t)m->height * m->width * m->channels;
    size_t y_stride = hp.float_targets ? (size_t)m->outputs * sizeof(float) : sizeof(int32_t);
    int64_t count = data.train.im.count;
    Feeder *feed = feeder_new(m, &data.train, batch, seed, shuffled, st.epoch, st.epoch_steps * batch, epochs);

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int64_t per_epoch = (count + batch - 1) / batch;
    int64_t left = (int64_t)(epochs - st.epoch + 1) * count - st.seen, total = left > 0 ? left : 0;
    if (a->steps && (int64_t)a->steps * batch < total)
        total = (int64_t)a->steps * batch;
    Run run = {.epochs = epochs, .count = count, .total = total, .t0 = now(), .tty = isatty(2),
               .quiet = dist_rank() > 0, .every = a->progress};
    run.last = run.t0;
    st.seed = seed, st.train_images = count, st.batch = batch, st.epochs = epochs, st.shuffle = shuffled;
    st.base_lr = base_lr;
    int64_t steps_run = 0;
    bool stop = false;
    if (resumed && st.epoch > epochs && dist_rank() == 0)
        fprintf(stderr, "%s: note: %s's run is complete (%d epoch%s); a larger --epochs trains on\n", m->name,
                a->resume, epochs, epochs == 1 ? "" : "s");
    for (int epoch = st.epoch; epoch <= epochs && ok && !stop; epoch++) {
        double t0 = now();
        int64_t seen0 = st.seen;    /* images of the epoch done before this run */
        st.epoch = epoch;
        run.epoch = epoch;
        run.seen = st.seen;
        bool finished = true;
        for (int64_t first = st.epoch_steps * batch; first < count; first += batch) {
            int n = (int)(count - first < batch ? count - first : batch);
            if (n < m->min_images || n < dist_size()) {
                /* a last batch of 1 (PyTorch refuses it: drop_last), or
                 * of fewer images than processes */
                if (epoch == 1 && dist_rank() == 0 && n < m->min_images)
                    fprintf(stderr, "%s: note: each epoch's last batch, of %d image, is left out: a batch "
                            "norm over a vector needs %d a step\n", m->name, n, m->min_images);
                else if (epoch == 1 && dist_rank() == 0)
                    fprintf(stderr, "%s: note: each epoch's last batch, of %d image%s, is left out: it has "
                            "fewer than the %d processes\n", m->name, n, n == 1 ? "" : "s", dist_size());
                run.done += n;
                break;
            }
            const void *y;
            const float *x = feeder_take(feed, epoch, first, n, &y);
            hp.lr = (float)scheduled_lr(m, base_lr, epoch - 1, st.epoch_steps, per_epoch, epochs);
            /* this process's part of the batch */
            int lo, hi;
            dist_part(n, &lo, &hi);
            stepper_set_span(stepper, lo, dist_size() > 1 ? n : 0);
            red.part = hi - lo, red.batch = n, red.signal = stop_signal;
            float loss = stepper_step(stepper, params, opt, x + (size_t)lo * in,
                                      (const char *)y + (size_t)lo * y_stride, hi - lo, &hp);
            feeder_done(feed);
            st.step++;
            st.epoch_steps++;
            st.seen += n;
            steps_run++;
            st.loss_sum += loss;
            if (st.first_loss < 0)
                st.first_loss = loss;
            double mean = st.loss_sum / (double)st.epoch_steps;
            double bound = DIVERGED * fmax(st.first_loss, 1.0 / DIVERGED);
            if (!isfinite(loss) || mean > bound) {
                if (!isfinite(loss))
                    snprintf(err, sizeof err, "the loss became %s at epoch %d, step %lld",
                             isnan(loss) ? "nan" : "infinite", epoch, (long long)st.step);
                else
                    snprintf(err, sizeof err, "the loss diverged at epoch %d, step %lld: the "
                             "epoch's mean so far, %.4g, is over %d times the first step's (%.4g)",
                             epoch, (long long)st.step, mean, DIVERGED, st.first_loss);
                size_t len = strlen(err);
                snprintf(err + len, sizeof err - len, "; stopping (lower --lr?)%s%s%s",
                         a->save ? "; the last checkpoint, " : "", a->save ? a->save : "",
                         a->save ? ", is intact" : "");
                if (run.tty)
                    fputc('\n', stderr);
                if (dist_rank() == 0)
                    fail(err);
                ok = false;
                break;
            }
            run.seen = st.seen;
            run.done += n;
            run.loss = mean;
            progress(&run, run.tty && run.seen == count);
            if ((a->steps && steps_run >= a->steps) || signalled(&red)) {
                stop = true;
                finished = first + batch >= count;
                break;
            }
        }
        if (!ok)
            break;
        if (run.tty)
            fputc('\n', stderr);
        if (signalled(&red)) {
            if (dist_rank() == 0)
                fprintf(stderr, "%s: interrupted at step %lld of epoch %d (batch %lld of %lld)\n",
                    m->name, (long long)st.step, epoch, (long long)st.epoch_steps, (long long)per_epoch);
            break;
        }
        double secs = now() - t0, ips = (double)(st.seen - seen0) / (secs + 1e-9);
        double mean = st.epoch_steps ? st.loss_sum / (double)st.epoch_steps : 0;
        printf("epoch %d/%d  loss %.4f  %.0f img/s", epoch, epochs, mean, ips);
        Figures val = report_set(m, params, &data.val, a->threads, "val");
        Figures test = report_set(m, params, &data.test, a->threads, "test");
        printf("\n");
        fflush(stdout);
        ok = log_line(log, a->log, err, sizeof err, "%d,%lld,%.6f,%s,%.1f,%s,%.6g,%.3f,%s,%s\n", epoch,
                      (long long)st.step, mean, test.acc_csv, ips, test.loss_csv, hp.lr, secs,
                      val.loss_csv, val.acc_csv);
        if (!ok)
            fail(err);              /* the others learn it from dist_all below */
        /* the best validation accuracy (or, with float targets, loss) so far */
        double figure = data.val.targets ? -val.loss : val.acc;
        bool best = finished && data.val.im.count && (st.best_epoch == 0 || figure > st.best);
        if (best) {
            st.best = figure;
            st.best_epoch = epoch;
        }
        if (finished) {
            /* the checkpoint resumes with the next epoch */
            st.epoch = epoch + 1;
            st.epoch_steps = st.seen = 0;
            st.loss_sum = 0;
        }
        ok = ok && save(m, a->save, params, &st, &classes);
        if (ok && best && a->save_best)
            ok = save(m, a->save_best, params, &st, &classes);
        ok = dist_all(ok);          /* rank 0's writes */
    }
    if (ok && red.steps)
        printf("%d processes: the gradients summed %s\n", dist_size(),
               red.buckets ? "in buckets during the backward pass" : "after the backward pass");
    if (ok && red.buckets)
        printf("  %.1f buckets a step (--mpi-bucket %lld KiB)\n", (double)red.buckets / (double)red.steps,
               (long long)red.bucket / 256);
    int sig = signalled(&red);
    if (ok && sig)
        ok = dist_all(save(m, a->save, params, &st, &classes));
    if (ok && sig && dist_rank() == 0)
        fprintf(stderr, "%s: %s%s\n", m->name, a->save ? "saved " : "nothing saved (no --save)",
                a->save ? a->save : "");
    if (log)
        fclose(log);
    feeder_free(feed);
    stepper_free(stepper);
    free(red.buf);
    free(opt);
    free(params);
    cnnw_extra_free(&classes);
    data_free(&data);
    if (!ok)
        return 1;
    return sig ? 128 + sig : 0;
}

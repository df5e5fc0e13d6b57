/*
 * train.c: the compiled program's `train` command.
 *
 *   ./model train --data DIR [--epochs N] [--batch N] [--lr X] [--seed N]
 *                 [--weights W] [--save W] [--no-shuffle] [--steps N] [--log F]
 *
 * Reads the training set (and the test set, when there is one), starts from
 * --weights or the seeded init, and runs the generated train step over
 * shuffled batches (the last one may be partial). A progress bar on a
 * terminal, one line per epoch otherwise; test accuracy after each epoch;
 * a CSV line per epoch with --log; --save after every epoch, atomically. A
 * loss that is not finite stops training before anything is saved, so the
 * last checkpoint stays good; SIGINT saves and stops after the current step.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "runtime.h"

/* Set by SIGINT; the one piece of global state, as a signal handler needs. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fisher-Yates with a generator seeded by (seed, epoch). */
static void shuffle(int64_t *order, int64_t n, uint64_t seed, int epoch)
{
    uint64_t s = seed * 1000003u + (uint64_t)epoch;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void progress(int epoch, int epochs, int64_t done, int64_t total, double loss, double ips)
{
    enum { WIDTH = 30 };
    int fill = (int)(WIDTH * done / (total ? total : 1));
    double eta = ips > 0 ? (double)(total - done) / ips : 0;
    fprintf(stderr, "\repoch %d/%d [%.*s%*s] %lld/%lld  loss %.4f  %.0f img/s  ETA %d:%02d ",
            epoch, epochs, fill, "==============================", WIDTH - fill, "",
            (long long)done, (long long)total, loss, ips, (int)eta / 60, (int)eta % 60);
}

/* One step, its batch split across the pool's threads: each computes the
 * gradient of its share in its own workspace, then the shares are weighted by
 * their size and summed into the first workspace's, and applied once. */
typedef struct Step {
    const CnnModel *m;
    const float *params, *opt, *x, *hp;
    const int32_t *y;
    int n, shares;
    void **ws;
    float loss[64];
    int first[65];
} Step;

static void step_share(void *ctx, int64_t task, int thread)
{
    Step *s = ctx;
    int first = s->first[task], n = s->first[task + 1] - first;
    int64_t in = (int64_t)s->m->height * s->m->width * s->m->channels;
    s->loss[task] = s->m->grad(s->params, s->opt, s->x + first * in, s->y + first, n,
                               s->ws[thread], s->hp, first);
}

float rt_train_step(const CnnModel *m, Pool *pool, void **ws, float *params, float *opt,
                    const float *x, const int32_t *y, int n, const float *hp)
{
    int shares = rt_pool_threads(pool);
    if (shares > n / 8)
        shares = n / 8;
    if (shares <= 1)
        return m->train_step(params, opt, x, y, n, ws[0], hp);
    Step s = {m, params, opt, x, hp, y, n, shares, ws, {0}, {0}};
    for (int t = 0; t <= shares; t++)
        s.first[t] = (int)((int64_t)n * t / shares);
    rt_pool_run(pool, shares, step_share, &s);
    float *sum = (float *)((char *)ws[0] + m->dparams_offset);
    float loss = 0;
    for (int t = 0; t < shares; t++) {
        float w = (float)(s.first[t + 1] - s.first[t]) / (float)n;
        const float *d = (const float *)((char *)ws[t] + m->dparams_offset);
        for (int64_t i = 0; i < m->params_size; i++)
            sum[i] = t == 0 ? w * d[i] : sum[i] + w * d[i];
        loss += w * s.loss[t];
    }
    m->apply(params, opt, sum, hp);
    return loss;
}

static bool save(const CnnModel *m, const char *path, const float *params)
{
    char err[8192];
    if (!path)
        return true;
    if (!cnnw_save(path, m, params, err, sizeof err)) {
        fail(err);
        return false;
    }
    return true;
}

int cmd_train(const CnnModel *m, const Args *a)
{
    char err[8192], img[4096], lbl[4096];
    if (!m->train_step)
        return fail("this program was built without training code (--inference-only or --weights)");
    if (!data_paths(a, "train", img, lbl, sizeof img))
        return fail("train needs --data DIR (or --images F --labels F)");
    int batch = a->batch ? a->batch : m->batch;
    if (batch > m->batch) {
        snprintf(err, sizeof err, "--batch %d is more than the %d this program was compiled for "
                 "(recompile with cnnc --batch %d)", batch, m->batch, batch);
        return fail(err);
    }
    CnnImages train = {0}, test = {0};
    int32_t *labels = NULL, *test_labels = NULL;
    if (!load_dataset(m, img, lbl, &train, &labels, err, sizeof err))
        return fail(err);
    bool has_test = false;
    if ((a->test_images && a->test_labels) || a->data) {
        data_paths(a, "t10k", img, lbl, sizeof img);
        if (access(img, R_OK) == 0 || a->test_images) {
            if (!load_dataset(m, img, lbl, &test, &test_labels, err, sizeof err)) {
                free(train.pixels);
                free(labels);
                return fail(err);
            }
            has_test = true;
        }
    }
    float *params = NULL;
    uint64_t seed = a->seed_given ? a->seed : m->seed;
    if (a->weights) {
        params = load_params(m, a, err, sizeof err);
    } else {
        params = malloc(((size_t)m->params_size + 1) * sizeof *params);
        m->init_params(params, seed);
    }
    FILE *log = NULL;
    if (params && a->log && !(log = fopen(a->log, "w")))
        snprintf(err, sizeof err, "%s: cannot write", a->log);
    if (!params || (a->log && !log)) {
        free(params);
        free(train.pixels);
        free(labels);
        free(test.pixels);
        free(test_labels);
        return fail(err);
    }
    if (log)
        fprintf(log, "epoch,step,loss,accuracy,images_per_s\n");

    float hp[7];
    memcpy(hp, m->hp, sizeof hp);
    if (a->lr > 0)
        hp[0] = (float)a->lr;
    hp[6] = (float)(seed & 0xFFFFFF);
    float *opt = calloc((size_t)m->opt_state_size + 1, sizeof *opt);
    int threads = a->threads < 64 ? a->threads : 64;
    Pool *pool = rt_pool_new(threads);
    void **ws = calloc((size_t)rt_pool_threads(pool), sizeof *ws);
    for (int t = 0; t < rt_pool_threads(pool); t++)
        ws[t] = ws_alloc(m);
    int64_t in = (int64_t)m->height * m->width * m->channels;
    float *x = malloc((size_t)(batch * in) * sizeof *x);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    int64_t *order = malloc((size_t)train.count * sizeof *order);
    for (int64_t i = 0; i < train.count; i++)
        order[i] = i;

    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    bool tty = isatty(2), ok = true, stop = false;
    int epochs = a->epochs ? a->epochs : m->epochs;
    int64_t step = 0;
    for (int epoch = 1; epoch <= epochs && ok && !stop; epoch++) {
        if (!a->no_shuffle)
            shuffle(order, train.count, seed, epoch);
        double t0 = now(), last_draw = 0, sum = 0;
        int64_t seen = 0, batches = 0;
        for (int64_t first = 0; first < train.count; first += batch) {
            int n = (int)(train.count - first < batch ? train.count - first : batch);
            for (int i = 0; i < n; i++) {
                memcpy(x + i * in, train.pixels + order[first + i] * in, (size_t)in * sizeof *x);
                y[i] = labels[order[first + i]];
            }
            float loss = rt_train_step(m, pool, ws, params, opt, x, y, n, hp);
            if (!isfinite(loss)) {
                snprintf(err, sizeof err, "the loss became %s at epoch %d, step %lld; stopping "
                         "(lower --lr?)%s%s%s", isnan(loss) ? "nan" : "infinite", epoch,
                         (long long)step + 1, a->save ? "; the last checkpoint, " : "",
                         a->save ? a->save : "", a->save ? ", is intact" : "");
                if (tty)
                    fputc('\n', stderr);
                fail(err);
                ok = false;
                break;
            }
            sum += loss;
            batches++;
            seen += n;
            step++;
            double t = now();
            if (tty && (t - last_draw > 0.1 || seen == train.count)) {
                progress(epoch, epochs, seen, train.count, sum / (double)batches,
                         (double)seen / (t - t0 + 1e-9));
                last_draw = t;
            }
            if ((a->steps && step >= a->steps) || interrupted) {
                stop = true;
                break;
            }
        }
        if (!ok)
            break;
        double ips = (double)seen / (now() - t0 + 1e-9);
        double acc = has_test ? 100.0 * (double)count_right(m, params, &test, test_labels, a->threads)
                                    / (double)test.count : -1;
        if (tty)
            fputc('\n', stderr);
        printf("epoch %d/%d  loss %.4f  %.0f img/s", epoch, epochs, batches ? sum / (double)batches : 0, ips);
        if (has_test)
            printf("  test accuracy %.2f%%", acc);
        printf("\n");
        fflush(stdout);
        if (log) {
            fprintf(log, "%d,%lld,%.6f,", epoch, (long long)step, batches ? sum / (double)batches : 0);
            if (has_test)
                fprintf(log, "%.4f", acc / 100);
            fprintf(log, ",%.1f\n", ips);
            fflush(log);
        }
        ok = save(m, a->save, params);
        if (interrupted)
            fprintf(stderr, "%s: interrupted%s%s\n", m->name, a->save ? "; saved " : "",
                    a->save ? a->save : "");
    }
    if (log)
        fclose(log);
    free(order);
    free(x);
    free(y);
    for (int t = 0; t < rt_pool_threads(pool); t++)
        free(ws[t]);
    free(ws);
    rt_pool_free(pool);
    free(opt);
    free(params);
    free(train.pixels);
    free(labels);
    free(test.pixels);
    free(test_labels);
    return ok ? 0 : 1;
}

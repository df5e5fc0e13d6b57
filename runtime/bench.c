/*
 * bench.c: the compiled program's `bench` command: how fast this model runs
 * here, on random inputs and labels.
 *
 *   ./model bench [--threads N]
 *
 * Prints `key value` lines: train_ips (training images/s at the compiled
 * batch), infer_ips (inference images/s, a batch per thread, with workspaces
 * kept from call to call as an application would keep them) and latency_us
 * (median of 2000 single-image inferences, or of those that fit in 2 s, at
 * least 10). bench/run reads them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cmd_bench(const CnnModel *m, const Args *a)
{
    int64_t in = (int64_t)m->height * m->width * m->channels;
    int batch = m->batch, threads = a->threads;
    double seconds = 2.0;
    /* inference runs a batch per thread */
    float *x = malloc((size_t)(batch * threads * in) * sizeof *x);
    float *y = malloc((size_t)(batch * threads * m->outputs) * sizeof *y);
    int32_t *labels = malloc((size_t)batch * sizeof *labels);
    uint64_t s = 1;
    for (int64_t i = 0; i < batch * threads * in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(s >> 40) / 16777216.0f;
    }
    for (int i = 0; i < batch; i++)
        labels[i] = i % m->outputs;
    float *params = malloc(((size_t)m->params_size + 1) * sizeof *params);
    if (m->baked)
        memcpy(params, m->baked, (size_t)m->params_size * sizeof *params);
    else
        m->init_params(params, 1);
    if (m->train_step) {
        /* the same path as `train`: the batch split across the pool */
        float *opt = calloc((size_t)m->opt_state_size + 1, sizeof *opt);
        Stepper *stepper = stepper_new(m, threads);
        CnnHyper hp = m->hp;
        hp.lr *= 1e-3f;                 /* keep the weights where they are */
        /* one step first: the workspaces' first touch, as PyTorch's side has its warm-up step */
        stepper_step(stepper, params, opt, x, labels, batch, &hp);
        int64_t steps = 0;
        double t0 = now();
        do {
            stepper_step(stepper, params, opt, x, labels, batch, &hp);
            steps++;
        } while (now() - t0 < seconds);
        printf("train_ips %.1f\n", (double)(steps * batch) / (now() - t0));
        stepper_free(stepper);
        free(opt);
    }
    Inferer *e = infer_new(m, threads);
    infer_run(e, params, x, y, (int64_t)batch * threads);     /* the workspaces' first touch */
    int64_t calls = 0;
    double t0 = now();
    do {
        infer_run(e, params, x, y, (int64_t)batch * threads);
        calls++;
    } while (now() - t0 < seconds);
    infer_free(e);
    printf("infer_ips %.1f\n", (double)(calls * batch * threads) / (now() - t0));
    void *ws = ws_alloc(m);
    enum { N = 2000 };
    double *lat = malloc(N * sizeof *lat);
    /* warm up for 200 calls or a tenth of the time; then up to N calls, or
     * as many as fit in the time (at least 10: a big model's latency) */
    t0 = now();
    m->prepare(params, ws);         /* the weights packed once, as an application serving them would */
    for (int i = 0; i < 200 && now() - t0 < seconds / 10; i++)
        m->infer_prepared(params, x, y, 1, ws);
    int n = 0;
    for (t0 = now(); n < N && (n < 10 || now() - t0 < seconds); n++) {
        double t = now();
        m->infer_prepared(params, x, y, 1, ws);
        lat[n] = now() - t;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("latency_us %.1f\n", lat[n / 2] * 1e6);
    free(lat);
    free(ws);
    free(params);
    free(x);
    free(y);
    free(labels);
    return 0;
}

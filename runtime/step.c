/*
 * step.c: one training step of any batch size, on the pool's threads.
 *
 * The generated code takes at most the compiled batch (CnnModel.batch) per
 * call. A step of n images is cut into shares of at most that many, and at
 * least one per thread once there are 8 images a thread: share k is images
 * [n k / S, n (k+1) / S). Each share's gradient (of its own mean loss) is
 * computed in its worker's workspace and added, weighted by its size over n,
 * to that worker's sum; the workers' sums are then added in worker order and
 * the optimizer applied once. The pool hands worker t the shares t, t + T, ...
 * in order, so the result depends on the thread count only, never on timing.
 * One share is the generated train_step itself. y is the images' labels, or
 * with hp->float_targets their float targets, outputs floats an image.
 *
 * The summed gradient then passes the step's reduce hook, if one is set
 * (stepper_set_reduce): the seam where other processes' gradients (MPI) or
 * statistics that must cover the whole batch join before the update.
 */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

struct Stepper {
    const CnnModel *m;
    Pool *pool;
    void **ws;                      /* a workspace per worker */
    float **sum;                    /* a gradient sum per worker */
    float *loss;                    /* per share */
    int nloss;
    const float *params, *opt, *x;  /* the step's */
    const char *y;                  /* labels, or float targets (hp->float_targets) */
    size_t y_stride;                /* bytes of y per image */
    const CnnHyper *hp;
    int n, shares;
    StepReduceFn *reduce;           /* after the workers' sums are added, or NULL */
    void *reduce_ctx;
};

void stepper_set_reduce(Stepper *s, StepReduceFn *fn, void *ctx)
{
    s->reduce = fn;
    s->reduce_ctx = ctx;
}

Stepper *stepper_new(const CnnModel *m, int threads)
{
    Stepper *s = calloc(1, sizeof *s);
    s->m = m;
    s->pool = rt_pool_new(threads);
    int t = rt_pool_threads(s->pool);
    s->ws = calloc((size_t)t, sizeof *s->ws);
    s->sum = calloc((size_t)t, sizeof *s->sum);
    for (int i = 0; i < t; i++)
        s->ws[i] = ws_alloc(m);
    return s;
}

void stepper_free(Stepper *s)
{
    for (int i = 0; i < rt_pool_threads(s->pool); i++) {
        free(s->ws[i]);
        free(s->sum[i]);
    }
    free(s->ws);
    free(s->sum);
    free(s->loss);
    rt_pool_free(s->pool);
    free(s);
}

static int share_first(const Stepper *s, int64_t k)
{
    return (int)((int64_t)s->n * k / s->shares);
}

static void run_share(void *ctx, int64_t k, int thread)
{
    Stepper *s = ctx;
    const CnnModel *m = s->m;
    int first = share_first(s, k), n = share_first(s, k + 1) - first;
    int64_t in = (int64_t)m->height * m->width * m->channels;
    s->loss[k] = m->grad(s->params, s->opt, s->x + first * in,
                         (const int32_t *)(s->y + (size_t)first * s->y_stride), n, s->ws[thread],
                         s->hp, first);
    const float *d = (const float *)((char *)s->ws[thread] + m->dparams_offset);
    float w = (float)n / (float)s->n, *sum = s->sum[thread];
    bool fresh = k == thread;       /* this worker's first share of the step */
    for (int64_t i = 0; i < m->params_size; i++)
        sum[i] = fresh ? w * d[i] : sum[i] + w * d[i];
}

float stepper_step(Stepper *s, float *params, float *opt, const float *x, const void *y, int n,
                   const CnnHyper *hp)
{
    const CnnModel *m = s->m;
    int threads = rt_pool_threads(s->pool);
    int shares = (n + m->batch - 1) / m->batch;
    int spread = n / 8 < threads ? n / 8 : threads;
    if (shares < spread)
        shares = spread;
    if (shares <= 1 && !s->reduce)
        return m->train_step(params, opt, x, y, n, s->ws[0], hp);
    shares = shares < 1 ? 1 : shares;
    size_t stride = hp->float_targets ? (size_t)m->outputs * sizeof(float) : sizeof(int32_t);
    if (shares > s->nloss) {
        s->loss = realloc(s->loss, (size_t)shares * sizeof *s->loss);
        s->nloss = shares;
    }
    int used = shares < threads ? shares : threads;
    for (int t = 0; t < used; t++)
        if (!s->sum[t])
            s->sum[t] = malloc(((size_t)m->params_size + 1) * sizeof(float));
    *s = (Stepper){s->m, s->pool, s->ws, s->sum, s->loss, s->nloss, params, opt, x, y, stride, hp, n, shares,
                   s->reduce, s->reduce_ctx};
    rt_pool_run(s->pool, shares, run_share, s);
    float *sum = s->sum[0], loss = 0;
    for (int t = 1; t < used; t++)
        for (int64_t i = 0; i < m->params_size; i++)
            sum[i] += s->sum[t][i];
    for (int k = 0; k < shares; k++)
        loss += (float)(share_first(s, k + 1) - share_first(s, k)) / (float)n * s->loss[k];
    if (s->reduce)
        s->reduce(s->reduce_ctx, sum, m->params_size, &loss);
    m->apply(params, opt, sum, hp);
    return loss;
}

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
 * A model whose training needs the whole batch's statistics (batch norm,
 * CnnModel.syncs) runs its shares at once, one a worker, and they exchange
 * sums through a CnnSync: each share publishes its floats, waits for the
 * others, adds all of them in share order (every share gets the same
 * numbers, whatever the timing) and waits again before going on.
 *
 * The summed gradient then passes the step's reduce hook, if one is set
 * (stepper_set_reduce): the seam where other processes' gradients (MPI) or
 * statistics that must cover the whole batch join before the update. A step
 * of one share with a bucket hook (stepper_set_buckets) hands the hook each
 * part of the gradient as the generated backward pass finishes it (the
 * CnnSync's ready), so that the exchange of the last layers' gradients runs
 * while the first layers' are computed.
 *
 * With other processes (stepper_set_span), the step's images are a part of
 * a larger batch: the generated code gets each share's place in the whole
 * batch (dropout's masks, the share that moves the running statistics) and
 * the whole batch's size, and the shares' sums are added over the processes
 * (dist_sum) before every share takes them.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

/* A barrier that spins before it yields: the shares' exchanges come about
 * 60 times a step (ResNet-20's batch norms), and a pthread barrier puts the
 * early thread to sleep, which on a virtual machine costs a wake-up of a
 * halted vCPU each time (ResNet-20 at 2 threads: 1.64x of 1 thread against
 * 1.94x for 2 processes, whose MPI_Allreduce spins). After SPINS pauses it
 * yields, so that more threads than cores still progress. */
typedef struct SpinBarrier {
    atomic_int arrived;
    atomic_uint phase;
    int n;
} SpinBarrier;

enum { SPINS = 1 << 14 };

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void spin_barrier_wait(SpinBarrier *b)
{
    unsigned phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->phase, 1, memory_order_release);
        return;
    }
    for (long i = 0; atomic_load_explicit(&b->phase, memory_order_acquire) == phase; i++) {
        if (i < SPINS)
            cpu_relax();
        else
            sched_yield();
    }
}

/* One share's view of the step's exchange: the CnnSync the generated code
 * gets, and whose share it is. */
typedef struct ShareSync {
    CnnSync base;
    struct Stepper *s;
    int share;
} ShareSync;

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
    StepBucketFn *bucket;           /* during a one-share step's backward pass, or NULL */
    void *bucket_ctx;
    int64_t bucket_from;            /* the gradients handed to it so far: [bucket_from, params_size) */
    bool bucketed;                  /* the last step's were, all of them */
    /* m->syncs: the exchange between the shares of a step */
    ShareSync *sync;                /* per worker */
    float **published;              /* per share, during an exchange */
    float *total_sum;               /* the exchange's sum, made by share 0 */
    int64_t total_cap;
    /* stepper_set_span: the step's images in a batch across processes */
    int64_t offset;
    int total;                      /* the whole batch's images, 0: this step's */
    SpinBarrier barrier;
    int barrier_count;              /* the shares it was made for, 0: none yet */
};

/* Share 0 adds every share's floats in share order (and over the
 * processes), then each share takes the sum. */
static void share_sum(const CnnSync *base, float *data, int64_t count)
{
    ShareSync *me = (ShareSync *)base;
    struct Stepper *s = me->s;
    s->published[me->share] = data;
    spin_barrier_wait(&s->barrier);
    if (me->share == 0) {
        if (count > s->total_cap) {
            s->total_sum = realloc(s->total_sum, (size_t)count * sizeof *s->total_sum);
            s->total_cap = count;
        }
        for (int64_t i = 0; i < count; i++) {
            float v = 0;
            for (int k = 0; k < s->barrier_count; k++)
                v += s->published[k][i];
            s->total_sum[i] = v;
        }
        if (s->total)
            dist_sum(s->total_sum, count);
    }
    spin_barrier_wait(&s->barrier);
    /* share 0 writes the sum again only after every share has published
     * its next floats, so after every share has copied these */
    memcpy(data, s->total_sum, (size_t)count * sizeof *data);
}

/* The generated backward pass has finished the gradients at [from, ...). */
static void share_ready(const CnnSync *base, int64_t from)
{
    ShareSync *me = (ShareSync *)base;
    struct Stepper *s = me->s;
    const float *d = (const float *)((char *)s->ws[0] + s->m->dparams_offset);
    if (from < s->bucket_from) {
        s->bucket(s->bucket_ctx, d, from, s->bucket_from);
        s->bucket_from = from;
    }
}

void stepper_set_buckets(Stepper *s, StepBucketFn *fn, void *ctx)
{
    s->bucket = fn;
    s->bucket_ctx = ctx;
}

bool stepper_bucketed(const Stepper *s)
{
    return s->bucketed;
}

void stepper_set_span(Stepper *s, int64_t offset, int total)
{
    s->offset = offset;
    s->total = total;
}

int stepper_most_images(const CnnModel *m, int threads)
{
    return m->syncs ? m->batch * threads : INT32_MAX;
}

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
    s->sync = calloc((size_t)t, sizeof *s->sync);   /* m->syncs, or the bucket hook */
    if (m->syncs)
        s->published = calloc((size_t)t, sizeof *s->published);
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
    free(s->sync);
    free(s->total_sum);
    free(s->published);
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
    const CnnSync *sync = NULL;
    bool buckets = s->bucket && s->shares == 1;
    if (m->syncs || buckets) {
        ShareSync *me = &s->sync[thread];
        me->base = (CnnSync){share_sum, s->total ? s->total : s->n, buckets ? share_ready : NULL};
        me->s = s;
        me->share = (int)k;
        sync = &me->base;
        s->bucket_from = m->params_size;
    }
    s->loss[k] = m->grad(s->params, s->opt, s->x + first * in,
                         (const int32_t *)(s->y + (size_t)first * s->y_stride), n, s->ws[thread],
                         s->hp, (int)(s->offset + first), sync);
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
    s->bucketed = false;
    if (shares <= 1 && !s->reduce)
        return m->train_step(params, opt, x, y, n, s->ws[0], hp);
    shares = shares < 1 ? 1 : shares;
    if (m->syncs && shares > threads) {
        /* the callers keep to stepper_most_images */
        fprintf(stderr, "cnn: internal error: %d shares on %d threads\n", shares, threads);
        abort();
    }
    if (m->syncs && shares != s->barrier_count) {
        atomic_init(&s->barrier.arrived, 0);
        atomic_init(&s->barrier.phase, 0);
        s->barrier.n = shares;
        s->barrier_count = shares;
    }
    size_t stride = hp->float_targets ? (size_t)m->outputs * sizeof(float) : sizeof(int32_t);
    if (shares > s->nloss) {
        s->loss = realloc(s->loss, (size_t)shares * sizeof *s->loss);
        s->nloss = shares;
    }
    int used = shares < threads ? shares : threads;
    for (int t = 0; t < used; t++)
        if (!s->sum[t])
            s->sum[t] = malloc(((size_t)m->params_size + 1) * sizeof(float));
    s->params = params;
    s->opt = opt;
    s->x = x;
    s->y = y;
    s->y_stride = stride;
    s->hp = hp;
    s->n = n;
    s->shares = shares;
    rt_pool_run(s->pool, shares, run_share, s);
    s->bucketed = s->bucket && shares == 1 && s->bucket_from == 0;
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

/*
 * threads.c: a small pool of worker threads, kept for the whole run.
 *
 * rt_pool_run hands out tasks: worker t (the caller is worker 0) runs tasks
 * t, t + T, t + 2T, ..., and the call returns when all are done. Each task
 * gets its worker's number, so it can use that worker's own workspace: the
 * generated code keeps no global state and runs in all of them at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include "runtime.h"

struct Pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t *ids;
    int threads, started, running;
    unsigned long generation;
    bool quit;
    int64_t tasks;
    void (*fn)(void *ctx, int64_t task, int thread);
    void *ctx;
};

typedef struct WorkerArg {
    Pool *pool;
    int t;
} WorkerArg;

static void run_share(Pool *p, int t)
{
    for (int64_t i = t; i < p->tasks; i += p->threads)
        p->fn(p->ctx, i, t);
}

static void *worker(void *arg)
{
    WorkerArg *w = arg;
    Pool *p = w->pool;
    int t = w->t;
    free(w);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->generation == seen && !p->quit)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_share(p, t);
        pthread_mutex_lock(&p->mu);
        if (--p->running == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

Pool *rt_pool_new(int threads)
{
    Pool *p = calloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->ids = calloc((size_t)(threads > 0 ? threads : 1), sizeof *p->ids);
    p->threads = 1;
    for (int t = 1; t < threads; t++) {
        WorkerArg *w = malloc(sizeof *w);
        *w = (WorkerArg){p, t};
        if (pthread_create(&p->ids[t], NULL, worker, w) != 0) {
            free(w);
            break;              /* fewer threads than asked: still correct */
        }
        p->threads = t + 1;
    }
    return p;
}

int rt_pool_threads(const Pool *p)
{
    return p->threads;
}

void rt_pool_run(Pool *p, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread), void *ctx)
{
    pthread_mutex_lock(&p->mu);
    p->tasks = tasks;
    p->fn = fn;
    p->ctx = ctx;
    p->running = p->threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_share(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->running > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void rt_pool_free(Pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->threads; t++)
        pthread_join(p->ids[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->ids);
    free(p);
}

/* A one-off parallel for: a pool for the call. */
void rt_parallel(int threads, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread),
                 void *ctx)
{
    Pool *p = rt_pool_new(threads);
    rt_pool_run(p, tasks, fn, ctx);
    rt_pool_free(p);
}

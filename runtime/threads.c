/*
 * threads.c: a parallel for over tasks, with one worker per thread.
 *
 * Worker t runs tasks t, t + T, t + 2T, ...; each has its own workspace, so
 * the generated code (no global state) runs in all of them at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include "cnnrt.h"
#include "runtime.h"

typedef struct Worker {
    pthread_t id;
    int t, threads;
    int64_t tasks;
    void (*fn)(void *ctx, int64_t task, int thread);
    void *ctx;
} Worker;

static void *run(void *arg)
{
    Worker *w = arg;
    for (int64_t i = w->t; i < w->tasks; i += w->threads)
        w->fn(w->ctx, i, w->t);
    return NULL;
}

void rt_parallel(int threads, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread),
                 void *ctx)
{
    if (threads < 1)
        threads = 1;
    Worker *w = calloc((size_t)threads, sizeof *w);
    for (int t = 0; t < threads; t++) {
        w[t] = (Worker){.t = t, .threads = threads, .tasks = tasks, .fn = fn, .ctx = ctx};
        if (t > 0 && pthread_create(&w[t].id, NULL, run, &w[t]) != 0)
            w[t].threads = 0;           /* could not start: run its share below */
    }
    run(&w[0]);
    for (int t = 1; t < threads; t++) {
        if (w[t].threads)
            pthread_join(w[t].id, NULL);
        else
            run(&(Worker){.t = t, .threads = threads, .tasks = tasks, .fn = fn, .ctx = ctx});
    }
    free(w);
}

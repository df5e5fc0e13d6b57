/*
 * feed.c: the training batches, made ahead of the step on a thread of their
 * own: each image cropped and flipped (augment.c) or copied, with its label
 * or target, into one of FEED_SLOTS batch buffers, a bounded queue. The
 * step takes the slots in order and gives each back when done with it.
 *
 * The batches are a function of (seed, epoch, image) only: the epoch's order
 * is shuffle(seed, epoch) of 0 .. count-1, the crops and flips are drawn
 * from (seed, epoch, image). So the feeder and the step need agree only on
 * where the run starts (epoch, batch) and when a batch is left out (a last
 * batch below min_images), and a resumed run gets the batches it would have.
 * Under mpirun a process fills only its part of each batch (dist_part); the
 * rest of the slot is not read.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

enum { FEED_SLOTS = 2 };

typedef struct Slot {
    float *x;
    char *y;
    int n, epoch;
    int64_t first;
    bool full;
} Slot;

struct Feeder {
    const CnnModel *m;
    const Dataset *d;
    uint64_t seed;
    bool shuffled;
    int batch, epochs, epoch0;
    int64_t first0, count, in;
    size_t ysize;
    int64_t *order;
    Slot slot[FEED_SLOTS];
    int64_t made, taken;            /* batches filled, and handed to the step */
    bool quit, threaded;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    pthread_t thread;
};

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fisher-Yates with a generator seeded by (seed, epoch). */
void shuffle_order(int64_t *order, int64_t n, uint64_t seed, int epoch)
{
    uint64_t s = seed * 1000003u + (uint64_t)epoch;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void fill(Feeder *f, Slot *s, int epoch, int64_t first, int n)
{
    const CnnModel *m = f->m;
    int lo, hi;
    dist_part(n, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        int64_t k = f->order[first + i];
        if (m->augment_crop || m->augment_flip)
            augment_image(f->d->im.pixels + k * f->in, s->x + i * f->in, m->height, m->width, m->channels,
                          m->augment_crop, m->augment_flip, f->seed, epoch, k);
        else
            memcpy(s->x + i * f->in, f->d->im.pixels + k * f->in, (size_t)f->in * sizeof *s->x);
        memcpy(s->y + (size_t)i * f->ysize, f->d->targets ? (const void *)(f->d->targets + k * m->outputs)
                                                          : (const void *)(f->d->labels + k), f->ysize);
    }
    s->n = n, s->epoch = epoch, s->first = first;
}

static void *produce(void *arg)
{
    Feeder *f = arg;
    for (int epoch = f->epoch0; epoch <= f->epochs; epoch++) {
        for (int64_t i = 0; i < f->count; i++)
            f->order[i] = i;
        if (f->shuffled)
            shuffle_order(f->order, f->count, f->seed, epoch);
        for (int64_t first = epoch == f->epoch0 ? f->first0 : 0; first < f->count; first += f->batch) {
            int n = (int)(f->count - first < f->batch ? f->count - first : f->batch);
            if (n < f->m->min_images)
                break;
            pthread_mutex_lock(&f->mu);
            Slot *s = &f->slot[f->made % FEED_SLOTS];
            while (!f->quit && s->full)
                pthread_cond_wait(&f->changed, &f->mu);
            bool quit = f->quit;
            pthread_mutex_unlock(&f->mu);
            if (quit)
                return NULL;
            fill(f, s, epoch, first, n);
            pthread_mutex_lock(&f->mu);
            s->full = true;
            f->made++;
            pthread_cond_broadcast(&f->changed);
            pthread_mutex_unlock(&f->mu);
        }
    }
    return NULL;
}

Feeder *feeder_new(const CnnModel *m, const Dataset *d, int batch, uint64_t seed, bool shuffled, int epoch,
                   int64_t first, int epochs)
{
    Feeder *f = calloc(1, sizeof *f);
    *f = (Feeder){.m = m, .d = d, .seed = seed, .shuffled = shuffled, .batch = batch, .epochs = epochs,
                  .epoch0 = epoch, .first0 = first, .count = d->im.count,
                  .in = (int64_t)m->height * m->width * m->channels,
                  .ysize = d->targets ? (size_t)m->outputs * sizeof(float) : sizeof(int32_t)};
    f->order = malloc((size_t)(f->count + 1) * sizeof *f->order);
    for (int i = 0; i < FEED_SLOTS; i++) {
        f->slot[i].x = malloc((size_t)(batch * f->in) * sizeof(float));
        f->slot[i].y = malloc((size_t)batch * f->ysize);
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->changed, NULL);
    /* without a thread the step's thread makes each batch itself (feeder_take) */
    f->threaded = pthread_create(&f->thread, NULL, produce, f) == 0;
    return f;
}

const float *feeder_take(Feeder *f, int epoch, int64_t first, int n, const void **labels)
{
    Slot *s = &f->slot[f->taken % FEED_SLOTS];
    if (!f->threaded) {
        if (first == 0 || (epoch == f->epoch0 && first == f->first0)) {
            for (int64_t i = 0; i < f->count; i++)
                f->order[i] = i;
            if (f->shuffled)
                shuffle_order(f->order, f->count, f->seed, epoch);
        }
        fill(f, s, epoch, first, n);
    } else {
        pthread_mutex_lock(&f->mu);
        while (!s->full)
            pthread_cond_wait(&f->changed, &f->mu);
        pthread_mutex_unlock(&f->mu);
    }
    if (s->epoch != epoch || s->first != first || s->n != n) {
        fprintf(stderr, "internal error: the feeder made batch %lld of epoch %d, the step wants %lld of %d\n",
                (long long)s->first, s->epoch, (long long)first, epoch);
        abort();
    }
    *labels = s->y;
    return s->x;
}

void feeder_done(Feeder *f)
{
    pthread_mutex_lock(&f->mu);
    f->slot[f->taken % FEED_SLOTS].full = false;
    f->taken++;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->mu);
}

void feeder_free(Feeder *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->quit = true;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->mu);
    if (f->threaded)
        pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->changed);
    for (int i = 0; i < FEED_SLOTS; i++) {
        free(f->slot[i].x);
        free(f->slot[i].y);
    }
    free(f->order);
    free(f);
}

/*
 * threads.c: the embedded object from several threads at once, each with its
 * own workspace (built with -fsanitize=thread). Every output must equal the
 * single-threaded one, bit for bit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m.h"

enum { THREADS = 4, ROUNDS = 20, N = M_BATCH };

static float params[M_PARAMS_SIZE + 1];
static float input[N * M_INPUT_SIZE];
static float want[N * M_OUTPUT_SIZE];

static void *work(void *arg)
{
    float *out = malloc(sizeof want);
    void *ws = aligned_alloc(64, (M_WORKSPACE_SIZE + 63) / 64 * 64);
    long bad = 0;
    for (int r = 0; r < ROUNDS; r++) {
        memset(out, 0, sizeof want);
        m_infer(params, input, out, N, ws);
        bad += memcmp(out, want, sizeof want) != 0;
    }
    free(ws);
    free(out);
    *(long *)arg = bad;
    return NULL;
}

int main(void)
{
    m_init_params(params, 3);
    for (int i = 0; i < N * M_INPUT_SIZE; i++)
        input[i] = (float)((i * 7919) % 1000) / 1000.0f;
    void *ws = aligned_alloc(64, (M_WORKSPACE_SIZE + 63) / 64 * 64);
    m_infer(params, input, want, N, ws);
    free(ws);
    pthread_t t[THREADS];
    long bad[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, &bad[i]);
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += bad[i];
    }
    printf("%d threads x %d calls: %ld outputs differ from the single-threaded one\n", THREADS,
           ROUNDS, total);
    return total != 0;
}

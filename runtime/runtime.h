/* runtime.h: what the runtime's files share among themselves. */
#ifndef CNN_RUNTIME_H
#define CNN_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include "cnnrt.h"

extern const CnnModel cnn_model;

/* The compiled program's command line, parsed. */
typedef struct Args {
    const char *cmd, *weights, *input, *output, *data, *images, *labels;
    const char *test_images, *test_labels, *save, *log;
    const char *files[256];
    int nfiles, top, threads, epochs, batch, steps;
    double lr;
    uint64_t seed;
    bool seed_given, no_shuffle;
} Args;

int fail(const char *msg);
void *ws_alloc(const CnnModel *m);
float *load_params(const CnnModel *m, const Args *a, char *err, size_t es);
void infer_all(const CnnModel *m, const float *params, const float *input, float *output,
               int64_t count, int threads);
bool data_paths(const Args *a, const char *kind, char *img, char *lbl, size_t size);
bool load_dataset(const CnnModel *m, const char *img, const char *lbl, CnnImages *im,
                  int32_t **labels, char *err, size_t es);
int64_t count_right(const CnnModel *m, const float *params, const CnnImages *im,
                    const int32_t *labels, int threads);
int cmd_train(const CnnModel *m, const Args *a);

typedef struct Pool Pool;
Pool *rt_pool_new(int threads);
int rt_pool_threads(const Pool *p);
void rt_pool_run(Pool *p, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread), void *ctx);
void rt_pool_free(Pool *p);
void rt_parallel(int threads, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread),
                 void *ctx);

#endif

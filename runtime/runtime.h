/* runtime.h: what the runtime's files share among themselves. */
#ifndef CNN_RUNTIME_H
#define CNN_RUNTIME_H

#include <stdint.h>

void rt_parallel(int threads, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread),
                 void *ctx);

#endif

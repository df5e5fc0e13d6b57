/*
 * step_counter.c: opt_state's step count is a uint64 in its last 8 bytes, so
 * Adam's t and dropout's masks keep moving past 2^24 steps (where a float
 * count would stop: 2^24 + 1 is not a float). Starts the count at 2^24, takes
 * two steps, and prints the count.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m.h"

int main(void)
{
    static float params[M_PARAMS_SIZE], opt[M_OPT_STATE_SIZE], x[M_BATCH * M_INPUT_SIZE];
    static int32_t y[M_BATCH];
    void *ws = aligned_alloc(64, (M_WORKSPACE_SIZE + 63) / 64 * 64);
    m_init_params(params, 1);
    for (int i = 0; i < M_BATCH * M_INPUT_SIZE; i++)
        x[i] = (float)(i % 7) / 7;
    uint64_t t = (uint64_t)1 << 24;
    memcpy((char *)opt + sizeof opt - 8, &t, 8);
    m_train_step(params, opt, x, y, M_BATCH, ws);
    m_train_step(params, opt, x, y, M_BATCH, ws);
    memcpy(&t, (char *)opt + sizeof opt - 8, 8);
    printf("step count %" PRIu64 "\n", t);
    free(ws);
    return 0;
}

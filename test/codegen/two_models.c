/* two_models.c: two builds of conv_basic with its weights built in (prefix a
 * at the train block's batch, prefix b at batch 1) in one program: each runs
 * under its own names and both give the same outputs. */
#include <stdio.h>
#include <stdlib.h>
#include "a.h"
#include "b.h"

int main(void)
{
    static float x[A_INPUT_SIZE], ya[A_OUTPUT_SIZE], yb[B_OUTPUT_SIZE];
    for (int i = 0; i < A_INPUT_SIZE; i++)
        x[i] = (float)(i % 5) / 5;
    void *wa = aligned_alloc(64, (A_WORKSPACE_SIZE + 63) / 64 * 64);
    void *wb = aligned_alloc(64, (B_WORKSPACE_SIZE + 63) / 64 * 64);
    a_infer(NULL, x, ya, 1, wa);
    b_infer(NULL, x, yb, 1, wb);
    int same = 0;
    for (int i = 0; i < A_OUTPUT_SIZE; i++)
        same += ya[i] == yb[i];
    printf("a (batch %d) and b (batch %d): the same %d outputs\n", A_BATCH, B_BATCH, same);
    free(wa);
    free(wb);
    return 0;
}

/*
 * stale_ws.c: m_train_step and m_infer (m.h) give the same bits whatever the
 * workspace held before the call: zeros, NaN, 1e20 or -3 everywhere. The
 * generated code must read no workspace byte it did not write in that call.
 * Prints one line per fill; exits 1 on any difference.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m.h"

static float input[M_BATCH * M_INPUT_SIZE];
static int32_t labels[M_BATCH];

/* one train step from the seeded init, then infer, on a workspace of fill */
static void run(float fill, float *params, float *out, float *loss)
{
    size_t bytes = ((size_t)M_WORKSPACE_SIZE + 63) / 64 * 64;
    float *ws = aligned_alloc(64, bytes), *opt = calloc(M_OPT_STATE_SIZE + 1, sizeof(float));
    for (size_t i = 0; i < bytes / 4; i++)
        ws[i] = fill;
    m_init_params(params, 7);
    *loss = m_train_step(params, opt, input, labels, M_BATCH, ws);
    for (size_t i = 0; i < bytes / 4; i++)
        ws[i] = fill;
    m_infer(params, input, out, M_BATCH, ws);
    free(ws);
    free(opt);
}

int main(void)
{
    srand(1);
    for (int i = 0; i < M_BATCH * M_INPUT_SIZE; i++)
        input[i] = (float)rand() / (float)RAND_MAX;
    for (int i = 0; i < M_BATCH; i++)
        labels[i] = rand() % M_OUTPUT_SIZE;
    static float p0[M_PARAMS_SIZE], p[M_PARAMS_SIZE], o0[M_BATCH * M_OUTPUT_SIZE], o[M_BATCH * M_OUTPUT_SIZE];
    float l0, l, fills[] = {NAN, 1e20f, -3.0f};
    run(0, p0, o0, &l0);
    int bad = 0;
    for (int f = 0; f < 3; f++) {
        run(fills[f], p, o, &l);
        bool same = memcmp(p, p0, sizeof p) == 0 && memcmp(o, o0, sizeof o) == 0 && memcmp(&l, &l0, 4) == 0;
        printf("workspace of %g: %s\n", fills[f], same ? "same" : "DIFFERENT");
        bad += !same;
    }
    return bad != 0;
}

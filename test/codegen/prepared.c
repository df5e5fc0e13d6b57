/*
 * prepared.c: m_prepare then m_infer_prepared (m.h) give m_infer's bits, at
 * the whole batch and at one image, call after call on one workspace that
 * held NaN before; after the weights change, a new m_prepare gives m_infer's
 * new bits, and without it the old pack is still what is read (the
 * outputs are not m_infer's). Prints one
 * line per check; exits 1 on any failure.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m.h"

static float input[M_BATCH * M_INPUT_SIZE];
static float params[M_PARAMS_SIZE + 1], changed[M_PARAMS_SIZE + 1];
static float want[M_BATCH * M_OUTPUT_SIZE], want1[M_OUTPUT_SIZE], got[M_BATCH * M_OUTPUT_SIZE];

static int check(const char *what, bool ok)
{
    printf("%s: %s\n", what, ok ? "yes" : "NO");
    return !ok;
}

int main(void)
{
    size_t bytes = ((size_t)M_WORKSPACE_SIZE + 63) / 64 * 64;
    float *ws = aligned_alloc(64, bytes), *mine = aligned_alloc(64, bytes);
    srand(1);
    for (int i = 0; i < M_BATCH * M_INPUT_SIZE; i++)
        input[i] = (float)rand() / (float)RAND_MAX;
    m_init_params(params, 7);
    for (int i = 0; i < M_PARAMS_SIZE; i++)
        changed[i] = params[i] * 1.5f + 0.01f;
    m_infer(params, input, want, M_BATCH, ws);
    m_infer(params, input, want1, 1, ws);
    for (size_t i = 0; i < bytes / 4; i++)
        mine[i] = NAN;
    int bad = 0;
    m_prepare(params, mine);
    for (int call = 0; call < 2; call++) {
        m_infer_prepared(params, input, got, M_BATCH, mine);
        bad += check("the batch as m_infer", !memcmp(got, want, sizeof want));
        m_infer_prepared(params, input, got, 1, mine);
        bad += check("one image as m_infer", !memcmp(got, want1, sizeof want1));
    }
    m_infer(changed, input, want, M_BATCH, ws);
    m_infer_prepared(changed, input, got, M_BATCH, mine);
    bad += check("new weights without prepare: not m_infer's (the old pack)", memcmp(got, want, sizeof want));
    m_prepare(changed, mine);
    m_infer_prepared(changed, input, got, M_BATCH, mine);
    bad += check("new weights prepared as m_infer", !memcmp(got, want, sizeof want));
    free(ws);
    free(mine);
    return bad != 0;
}

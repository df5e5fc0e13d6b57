/*
 * gradcheck.c: the generated gradients against central finite differences.
 *
 * The model is compiled with `optimizer sgd lr=1`, so one train_step moves
 * params by exactly -grad: grad = before - after. The loss at params + eps*e_i
 * is what train_step returns (computed before its update) on a copy. A fresh
 * zeroed opt_state per call keeps dropout's mask the same in every call.
 * Checks up to 40 coordinates of every tensor; prints the worst and exits 1 on
 * a mismatch. The batch is the model's (M_BATCH images); with -DCONST_PREFIX=K
 * the first K floats of every image are 0.5, so that the regions they make
 * are constant (max-pool windows there tie exactly). The running statistics
 * (M_STATE_RANGES) are not trained: train_step moves them, and the loss of a
 * training step does not read them.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m.h"

static float loss_at(const float *params, const float *x, const int32_t *y, int n, void *ws)
{
    static float p[M_PARAMS_SIZE + 1], opt[M_OPT_STATE_SIZE + 1];
    memcpy(p, params, sizeof(float) * M_PARAMS_SIZE);
    memset(opt, 0, sizeof opt);
    return m_train_step(p, opt, x, y, n, ws);
}

int main(void)
{
    enum { N = M_BATCH };
    static float params[M_PARAMS_SIZE + 1], grad[M_PARAMS_SIZE + 1], x[N * M_INPUT_SIZE];
    int32_t y[N];
    void *ws = aligned_alloc(64, (M_WORKSPACE_SIZE + 63) / 64 * 64);
    m_init_params(params, 5);
    uint64_t s = 12345;
    for (int i = 0; i < N * M_INPUT_SIZE; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(s >> 40) / 16777216.0f;
#ifdef CONST_PREFIX
        if (i % M_INPUT_SIZE < CONST_PREFIX)
            x[i] = 0.5f;
#endif
    }
    for (int i = 0; i < N; i++)
        y[i] = i % M_OUTPUT_SIZE;
    /* analytic: one step of SGD with lr=1 */
    static float after[M_PARAMS_SIZE + 1], opt[M_OPT_STATE_SIZE + 1];
    memcpy(after, params, sizeof(float) * M_PARAMS_SIZE);
    m_train_step(after, opt, x, y, N, ws);
    for (int i = 0; i < M_PARAMS_SIZE; i++)
        grad[i] = params[i] - after[i];
    /* numeric, on a spread of coordinates */
    const float eps = 1e-3f;
    int checked = 0, bad = 0;
    double worst = 0;
    int stride = M_PARAMS_SIZE / 400 + 1;
    for (int i = 0; i < M_PARAMS_SIZE; i += stride) {
#ifdef M_STATE_RANGES
        static const int64_t state[][2] = M_STATE_RANGES;
        bool is_state = false;
        for (int k = 0; k < M_STATE_TENSORS; k++)
            is_state = is_state || (i >= state[k][0] && i < state[k][0] + state[k][1]);
        if (is_state)
            continue;
#endif
        float keep = params[i];
        params[i] = keep + eps;
        double up = loss_at(params, x, y, N, ws);
        params[i] = keep - eps;
        double down = loss_at(params, x, y, N, ws);
        params[i] = keep;
        double num = (up - down) / (2 * eps);
        double err = fabs(num - grad[i]);
        double tol = 2e-3 + 2e-2 * fmax(fabs(num), fabs(grad[i]));
        if (err / tol > worst)
            worst = err / tol;
        if (err > tol) {
            if (bad < 5)
                printf("param %d: analytic %.6g, numeric %.6g\n", i, grad[i], num);
            bad++;
        }
        checked++;
    }
    printf("gradcheck: %d gradients checked, %d mismatches, worst error %.2f of tolerance\n",
           checked, bad, worst);
    free(ws);
    return bad ? 1 : 0;
}

/*
 * plan.c: the memory plan. Every tensor a call needs gets a byte offset in the
 * caller's one workspace, at compile time.
 *
 * Inference needs only two buffers of the largest activation, used in turn
 * (node i reads one and writes the other; the input is read in place and the
 * last node writes the caller's output). Training keeps every activation for
 * backward, one gradient buffer per activation, and the parameters' gradients.
 * Each buffer is 64-byte aligned. --emit-ir prints the plan.
 */
#include <stdlib.h>
#include "cnnc.h"

static int64_t align64(int64_t bytes)
{
    return (bytes + 63) & ~(int64_t)63;
}

static int64_t buffer_bytes(const Node *n, int64_t batch)
{
    return align64(shape_elems(n->out) * batch * (int64_t)sizeof(float));
}

void plan_build(Plan *p, const Graph *g, int64_t batch, bool training)
{
    *p = (Plan){.batch = batch};
    p->act = calloc((size_t)g->n, sizeof *p->act);
    p->grad = calloc((size_t)g->n, sizeof *p->grad);
    int64_t max = 64;
    for (int i = 1; i < g->n; i++)
        if (buffer_bytes(&g->nodes[i], batch) > max)
            max = buffer_bytes(&g->nodes[i], batch);
    p->slot = max;
    p->infer_bytes = 2 * max;
    if (!training) {
        p->bytes = p->infer_bytes;
        return;
    }
    int64_t off = 0;
    for (int i = 1; i < g->n; i++) {
        p->act[i] = off;
        off += buffer_bytes(&g->nodes[i], batch);
    }
    p->grad_start = off;
    for (int i = 1; i < g->n; i++) {
        p->grad[i] = off;
        off += buffer_bytes(&g->nodes[i], batch);
    }
    p->dparams = off;
    off += align64(g->params_size * (int64_t)sizeof(float));
    p->grad_end = off;
    p->bytes = off > p->infer_bytes ? off : p->infer_bytes;
}

void plan_free(Plan *p)
{
    free(p->act);
    free(p->grad);
}

void plan_print(FILE *out, const Graph *g, const Plan *p)
{
    fprintf(out, "  plan (batch %lld): workspace %lld bytes\n", (long long)p->batch, (long long)p->bytes);
    fprintf(out, "    inference: two buffers of %lld bytes, at 0 and %lld\n", (long long)p->slot,
            (long long)p->slot);
    for (int i = 1; i < g->n; i++)
        fprintf(out, "    %%%s at %lld, %%d.%s at %lld (%lld bytes each)\n", g->nodes[i].name,
                (long long)p->act[i], g->nodes[i].name, (long long)p->grad[i],
                (long long)buffer_bytes(&g->nodes[i], p->batch));
    fprintf(out, "    @d.params at %lld (%lld bytes)\n", (long long)p->dparams,
            (long long)(p->grad_end - p->dparams));
}

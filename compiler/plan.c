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

static int64_t pad_bytes(const Node *n, int64_t batch)
{
    if (!n->ph && !n->pw)
        return 0;
    return align64(batch * (n->in.d[0] + 2 * n->ph) * (n->in.d[1] + 2 * n->pw) * n->in.d[2] *
                   (int64_t)sizeof(float));
}

/* A conv's scratch from `at` on (n with the activation it applies); returns its end. In training the padded
 * input is kept for backward, so it gets a place of its own (at *keep). */
static int64_t conv_scratch(ConvScratch *s, const Node *n, int64_t batch, bool training,
                            int64_t at, int64_t *keep)
{
    int64_t pack = align64(conv_pack_bound(n) * (int64_t)sizeof(float));
    int64_t pad = pad_bytes(n, batch);
    *s = (ConvScratch){-1, -1, -1, -1, -1, -1, -1};
    if (pad && training) {
        s->pad = *keep;
        *keep += pad;
    } else if (pad) {
        s->pad = at;
        at += pad;
    }
    s->wpack = at;
    at += pack;
    int64_t wino = conv_wino_bytes(n, training);
    if (wino) {
        s->wino = at;
        at += wino;
    }
    if (!training)
        return at;
    s->tpack = at;
    at += pack;
    if (n->act != ACT_NONE) {
        s->dpre = at;
        at += buffer_bytes(n, batch);
    }
    /* d inp: a conv of the padded output gradient, or scattered (stride > 1) */
    int qh, qw;
    bool transposed = conv_dinp_transposed(n, &qh, &qw);
    if (transposed && (qh || qw)) {
        s->gpad = at;
        at += align64(batch * (n->out.d[0] + 2 * qh) * (n->out.d[1] + 2 * qw) * n->out.d[2] *
                      (int64_t)sizeof(float));
    }
    if (pad && (!transposed || n->padmode == PAD_REPLICATE)) {
        s->dpad = at;
        at += pad;
    }
    return at;
}

void plan_build(Plan *p, const Graph *g, int64_t batch, bool training)
{
    *p = (Plan){.batch = batch};
    p->act = calloc((size_t)g->n, sizeof *p->act);
    p->grad = calloc((size_t)g->n, sizeof *p->grad);
    p->conv = calloc((size_t)g->n, sizeof *p->conv);
    int64_t max = 64;
    for (int i = 1; i < g->n; i++)
        if (buffer_bytes(&g->nodes[i], batch) > max)
            max = buffer_bytes(&g->nodes[i], batch);
    p->slot = max;
    /* inference: the two buffers, then one conv's scratch at a time */
    int64_t end = 2 * max, unused = 0;
    Node tmp;
    for (int i = 1; i < g->n; i++)
        if (g->nodes[i].op == OP_CONV) {
            int64_t e = conv_scratch(&p->conv[i], node_with_fused(g, i, &tmp), batch, false, 2 * max, &unused);
            end = e > end ? e : end;
        }
    p->infer_bytes = end;
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
        /* a fused activation's gradient is its conv's or fc's d out */
        if (g->nodes[i].fused) {
            p->grad[i] = p->grad[i - 1];
            continue;
        }
        p->grad[i] = off;
        off += buffer_bytes(&g->nodes[i], batch);
    }
    p->dparams = off;
    off += align64(g->params_size * (int64_t)sizeof(float));
    p->grad_end = off;
    /* the padded inputs kept for backward, then the scratch the convs share */
    int64_t keep = off;
    for (int i = 1; i < g->n; i++)
        if (g->nodes[i].op == OP_CONV)
            keep += pad_bytes(&g->nodes[i], batch);
    off = keep;
    keep = p->grad_end;
    int64_t train_end = off;
    for (int i = 1; i < g->n; i++)
        if (g->nodes[i].op == OP_CONV) {
            int64_t e = conv_scratch(&p->conv[i], node_with_fused(g, i, &tmp), batch, true, off, &keep);
            train_end = e > train_end ? e : train_end;
        }
    p->bytes = train_end > p->infer_bytes ? train_end : p->infer_bytes;
}

void plan_free(Plan *p)
{
    free(p->act);
    free(p->grad);
    free(p->conv);
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
    for (int i = 1; i < g->n; i++) {
        const ConvScratch *s = &p->conv[i];
        if (g->nodes[i].op != OP_CONV)
            continue;
        fprintf(out, "    %s scratch: padded input at %lld, packed weights at %lld and %lld, "
                "d pre-activation at %lld, d padded input at %lld, padded d pre-activation at %lld, "
                "Winograd tiles at %lld\n", g->nodes[i].name,
                (long long)s->pad, (long long)s->wpack, (long long)s->tpack, (long long)s->dpre,
                (long long)s->dpad, (long long)s->gpad, (long long)s->wino);
    }
}

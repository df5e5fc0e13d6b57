/*
 * plan.c: the memory plan. Every tensor a call needs gets a byte offset in the
 * caller's one workspace, at compile time: a compile-time ggml-alloc.
 *
 * A tensor is live from the step that writes it to the last step that reads
 * it; a liveness allocator (best fit over a free list, in step order) gives
 * tensors whose lives do not overlap the same bytes. Inference: each node's
 * output, live until its last reader, and each conv's scratch for its own
 * step. Training keeps every activation for backward; the gradients are
 * allocated over the backward steps (from the loss or the first reader's
 * step that writes one, to its node's step), with a scratch tensor for each
 * gradient a second reader adds to; the convs share one scratch region.
 * Each buffer is 64-byte aligned. --emit-ir prints the plan.
 */
#include <stdlib.h>
#include <string.h>
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

/* ---- the liveness allocator ---- */

/* A tensor to place: live at steps [start, end]; its offset goes to *where. */
typedef struct Life {
    int64_t bytes;
    int start, end;
    int64_t *where;
} Life;

typedef struct Lives {
    Life *v;
    int n, cap;
} Lives;

static void live(Lives *l, int64_t bytes, int start, int end, int64_t *where)
{
    if (l->n == l->cap)
        l->v = realloc(l->v, (size_t)(l->cap = l->cap ? 2 * l->cap : 64) * sizeof *l->v);
    l->v[l->n++] = (Life){bytes, start, end, where};
}

typedef struct Span {
    int64_t at, bytes;
} Span;

/* The free list, sorted by offset, below the high-water mark `top`. */
typedef struct Heap {
    Span *free;
    int n, cap;
    int64_t top;
} Heap;

static int64_t heap_take(Heap *h, int64_t bytes)
{
    int best = -1;
    for (int i = 0; i < h->n; i++)
        if (h->free[i].bytes >= bytes && (best < 0 || h->free[i].bytes < h->free[best].bytes))
            best = i;
    if (best >= 0) {
        int64_t at = h->free[best].at;
        h->free[best].at += bytes;
        h->free[best].bytes -= bytes;
        if (!h->free[best].bytes)
            memmove(&h->free[best], &h->free[best + 1], (size_t)(--h->n - best) * sizeof *h->free);
        return at;
    }
    /* grow the top, starting inside a free block that ends there */
    if (h->n && h->free[h->n - 1].at + h->free[h->n - 1].bytes == h->top) {
        int64_t at = h->free[--h->n].at;
        h->top = at + bytes;
        return at;
    }
    int64_t at = h->top;
    h->top += bytes;
    return at;
}

static void heap_give(Heap *h, int64_t at, int64_t bytes)
{
    if (h->n == h->cap)
        h->free = realloc(h->free, (size_t)(h->cap = h->cap ? 2 * h->cap : 16) * sizeof *h->free);
    int i = 0;
    while (i < h->n && h->free[i].at < at)
        i++;
    memmove(&h->free[i + 1], &h->free[i], (size_t)(h->n - i) * sizeof *h->free);
    h->free[i] = (Span){at, bytes};
    h->n++;
    /* merge with the neighbours */
    if (i + 1 < h->n && h->free[i].at + h->free[i].bytes == h->free[i + 1].at) {
        h->free[i].bytes += h->free[i + 1].bytes;
        memmove(&h->free[i + 1], &h->free[i + 2], (size_t)(h->n - i - 2) * sizeof *h->free);
        h->n--;
    }
    if (i > 0 && h->free[i - 1].at + h->free[i - 1].bytes == h->free[i].at) {
        h->free[i - 1].bytes += h->free[i].bytes;
        memmove(&h->free[i], &h->free[i + 1], (size_t)(h->n - i - 1) * sizeof *h->free);
        h->n--;
    }
}

static int by_start(const void *a, const void *b)
{
    const Life *x = a, *y = b;
    return x->start != y->start ? (x->start > y->start) - (x->start < y->start)
                                : (x->end > y->end) - (x->end < y->end);
}

static int by_end(const void *a, const void *b)
{
    const Life *x = *(Life *const *)a, *y = *(Life *const *)b;
    return (x->end > y->end) - (x->end < y->end);
}

/* Places every tensor from `base` on, in step order: before a step's tensors
 * are taken, those whose last step is over are given back. Returns the end. */
static int64_t allocate(Lives *l, int64_t base)
{
    qsort(l->v, (size_t)l->n, sizeof *l->v, by_start);
    Life **placed = malloc((size_t)(l->n + 1) * sizeof *placed);
    int nplaced = 0, done = 0;
    Heap h = {.top = base};
    for (int i = 0; i < l->n; i++) {
        Life *t = &l->v[i];
        /* give back what died before this step (placed is sorted by end from `done` on) */
        qsort(placed + done, (size_t)(nplaced - done), sizeof *placed, by_end);
        while (done < nplaced && placed[done]->end < t->start) {
            heap_give(&h, *placed[done]->where, placed[done]->bytes);
            done++;
        }
        *t->where = heap_take(&h, t->bytes);
        placed[nplaced++] = t;
    }
    free(placed);
    free(h.free);
    free(l->v);
    *l = (Lives){0};
    return h.top;
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

/* The node whose buffer holds n's output: a fused activation's is its producer's. */
static int store_of(const Graph *g, int i)
{
    while (g->nodes[i].fused)
        i--;
    return i;
}

/* Inference: the outputs and the convs' scratch, each for its life. */
static void plan_inference(Plan *p, const Graph *g, int64_t batch)
{
    int n = g->n;
    int *end = malloc((size_t)n * sizeof *end);
    for (int i = 0; i < n; i++)
        end[i] = i;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++) {
            int j = store_of(g, g->nodes[i].inputs[k]);
            /* a conv whose kernel applies the pool after it reads on in the pool's step */
            int last = op_has(g->nodes[i].op, OPF_TAKES_POOL) ? i + 1 + (i + 1 < n && g->nodes[i + 1].fused) : i;
            end[j] = last > end[j] ? last : end[j];
        }
    Lives l = {0};
    int output = store_of(g, n - 1);
    for (int i = 0; i < n; i++)
        p->out[i] = -1;
    for (int i = 1; i < n; i++)
        if (!g->nodes[i].fused && i != output)
            live(&l, buffer_bytes(&g->nodes[i], batch), i, end[i], &p->out[i]);
    /* each conv's scratch, for its step: laid out from 0, then moved where it was put */
    int64_t *at = calloc((size_t)n, sizeof *at), unused = 0;
    Node tmp;
    for (int i = 1; i < n; i++)
        if (op_has(g->nodes[i].op, OPF_SCRATCH))
            live(&l, conv_scratch(&p->conv_infer[i], node_with_fused(g, i, &tmp), batch, false, 0, &unused), i, i, &at[i]);
    p->infer_bytes = allocate(&l, 0);
    for (int i = 1; i < n; i++)
        if (op_has(g->nodes[i].op, OPF_SCRATCH))
            conv_scratch(&p->conv_infer[i], node_with_fused(g, i, &tmp), batch, false, at[i], &unused);
    for (int i = 1; i < n; i++)
        if (g->nodes[i].fused)
            p->out[i] = p->out[store_of(g, i)];
    free(at);
    free(end);
}

/* Training: activations, the parameters' gradients and the padded inputs kept
 * for backward, then the gradients over the backward steps (the loss is step
 * n, backward step s is n + 1 + s), then the convs' shared scratch. */
static void plan_training(Plan *p, const Graph *g, int64_t batch)
{
    int n = g->n;
    int64_t off = 0;
    for (int i = 1; i < n; i++) {
        p->act[i] = off;
        off += buffer_bytes(&g->nodes[i], batch);
    }
    p->dparams = off;
    off += align64(g->params_size * (int64_t)sizeof(float));
    p->grad_end = off;
    int64_t keep = off;
    for (int i = 1; i < n; i++)
        if (op_has(g->nodes[i].op, OPF_SCRATCH))
            keep += pad_bytes(&g->nodes[i], batch);
    /* each gradient's first and last step, by the node that stores it */
    int *first = malloc((size_t)n * sizeof *first), *last = malloc((size_t)n * sizeof *last);
    for (int i = 0; i < n; i++)
        first[i] = last[i] = -1;
    int lg = store_of(g, g->loss_grad_node);
    first[lg] = last[lg] = n;
    Lives l = {0};
    for (int s = 0; s < g->nbwd; s++) {
        const BwdStep *st = &g->bwd[s];
        const Node *nd = st->node;
        int t = n + 1 + s, own = store_of(g, nd->index);
        if (last[own] >= 0 && t > last[own])
            last[own] = t;          /* its step reads its d out */
        p->edge[nd->index] = calloc((size_t)nd->ninputs + 1, sizeof **p->edge);
        for (int k = 0; k < nd->ninputs; k++) {
            p->edge[nd->index][k] = -1;
            if (!st->dinput[k] || nd->fused)
                continue;
            int j = store_of(g, nd->inputs[k]);
            if (first[j] < 0)
                first[j] = t;
            last[j] = t > last[j] ? t : last[j];
            if (st->accumulate[k])
                live(&l, buffer_bytes(&g->nodes[nd->inputs[k]], batch), t, t, &p->edge[nd->index][k]);
        }
    }
    for (int i = 1; i < n; i++)
        if (first[i] >= 0 && store_of(g, i) == i)
            live(&l, buffer_bytes(&g->nodes[i], batch), first[i], last[i], &p->grad[i]);
    int64_t grads_end = allocate(&l, keep);
    for (int i = 1; i < n; i++)
        p->grad[i] = first[store_of(g, i)] >= 0 ? p->grad[store_of(g, i)] : -1;
    free(first);
    free(last);
    /* the padded inputs kept for backward from grad_end on; the rest of the
     * convs' scratch shared, past the gradients */
    keep = p->grad_end;
    int64_t train_end = grads_end;
    Node tmp;
    for (int i = 1; i < n; i++)
        if (op_has(g->nodes[i].op, OPF_SCRATCH)) {
            int64_t e = conv_scratch(&p->conv[i], node_with_fused(g, i, &tmp), batch, true, grads_end, &keep);
            train_end = e > train_end ? e : train_end;
        }
    p->train_bytes = train_end;
}

void plan_build(Plan *p, const Graph *g, int64_t batch, bool training)
{
    *p = (Plan){.batch = batch};
    p->out = calloc((size_t)g->n, sizeof *p->out);
    p->act = calloc((size_t)g->n, sizeof *p->act);
    p->grad = calloc((size_t)g->n, sizeof *p->grad);
    p->edge = calloc((size_t)g->n, sizeof *p->edge);
    p->conv = calloc((size_t)g->n, sizeof *p->conv);
    p->conv_infer = calloc((size_t)g->n, sizeof *p->conv_infer);
    plan_inference(p, g, batch);
    p->bytes = p->infer_bytes;
    if (!training)
        return;
    plan_training(p, g, batch);
    p->bytes = p->train_bytes > p->infer_bytes ? p->train_bytes : p->infer_bytes;
}

void plan_free(Plan *p, const Graph *g)
{
    for (int i = 0; i < g->n; i++)
        free(p->edge[i]);
    free(p->edge);
    free(p->out);
    free(p->act);
    free(p->grad);
    free(p->conv);
    free(p->conv_infer);
}

static void print_offset(FILE *out, int64_t at)
{
    if (at < 0)
        fprintf(out, "-");
    else
        fprintf(out, "%lld", (long long)at);
}

void plan_print(FILE *out, const Graph *g, const Plan *p, bool training)
{
    fprintf(out, "  plan (batch %lld): workspace %lld bytes\n", (long long)p->batch, (long long)p->bytes);
    fprintf(out, "    inference (%lld bytes):", (long long)p->infer_bytes);
    for (int i = 1; i < g->n; i++) {
        fprintf(out, " %%%s ", g->nodes[i].name);
        if (store_of(g, i) == store_of(g, g->n - 1))
            fprintf(out, "out");
        else
            print_offset(out, p->out[i]);
    }
    fprintf(out, "\n");
    if (!training)
        return;
    fprintf(out, "    training (%lld bytes):\n", (long long)p->train_bytes);
    for (int i = 1; i < g->n; i++) {
        fprintf(out, "      %%%s at %lld, %%d.%s at ", g->nodes[i].name, (long long)p->act[i], g->nodes[i].name);
        print_offset(out, p->grad[i]);
        fprintf(out, " (%lld bytes each)", (long long)buffer_bytes(&g->nodes[i], p->batch));
        for (int k = 0; p->edge[i] && k < g->nodes[i].ninputs; k++)
            if (p->edge[i][k] >= 0)
                fprintf(out, ", %%d.%s added from %lld", g->nodes[g->nodes[i].inputs[k]].name,
                        (long long)p->edge[i][k]);
        fprintf(out, "\n");
    }
    fprintf(out, "      @d.params at %lld (%lld bytes)\n", (long long)p->dparams,
            (long long)(p->grad_end - p->dparams));
    for (int i = 1; i < g->n; i++) {
        const ConvScratch *s = &p->conv[i];
        if (!op_has(g->nodes[i].op, OPF_SCRATCH))
            continue;
        fprintf(out, "      %s scratch: padded input at %lld, packed weights at %lld and %lld, "
                "d pre-activation at %lld, d padded input at %lld, padded d pre-activation at %lld, "
                "Winograd tiles at %lld\n", g->nodes[i].name,
                (long long)s->pad, (long long)s->wpack, (long long)s->tpack, (long long)s->dpre,
                (long long)s->dpad, (long long)s->gpad, (long long)s->wino);
    }
}

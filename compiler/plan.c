/*
 * plan.c: the memory plan. Every tensor a call needs gets a byte offset in the
 * caller's one workspace, at compile time: a compile-time ggml-alloc.
 *
 * A tensor is live from the step that writes it to the last step that reads
 * it; a liveness allocator (greedy by size) gives tensors whose lives do not
 * overlap the same bytes. Inference: each node's
 * output, live until its last reader, and each conv's scratch for its own
 * step. Training keeps every activation for backward; the gradients are
 * allocated over the backward steps (from the loss or the first reader's
 * step that writes one, to its node's step), with a scratch tensor for each
 * gradient a second reader adds to; the convs share one scratch region.
 * Each buffer is 64-byte aligned. An inference call takes its images through
 * every pass a chunk at a time (plan_chunk), so its plan is one chunk's.
 * --emit-ir prints the plan.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

static int64_t align64(int64_t bytes)
{
    return (bytes + 63) & ~(int64_t)63;
}

int64_t plan_floats(int64_t floats)
{
    return align64(floats * (int64_t)sizeof(float));
}

static int64_t buffer_bytes(const Node *n, int64_t batch)
{
    return plan_floats(shape_elems(n->out) * batch);
}

/* ---- the liveness allocator ---- */

/* A tensor to place: what it is, who writes it, its bytes, the steps
 * [start, end] from its writer to its last reader; its offset goes to *where. */
typedef struct Life {
    TensorKind kind;
    DType dtype;
    int producer;                   /* the node whose step writes it */
    int64_t bytes;
    int start, end;
    int64_t *where;
    int order;                      /* as listed */
} Life;

typedef struct Lives {
    Life *v;
    int n, cap;
} Lives;

static void live(Lives *l, TensorKind kind, int producer, int64_t bytes, int start, int end, int64_t *where)
{
    if (l->n == l->cap)
        l->v = realloc(l->v, (size_t)(l->cap = l->cap ? 2 * l->cap : 64) * sizeof *l->v);
    l->v[l->n] = (Life){kind, DT_F32, producer, bytes, start, end, where, l->n};
    l->n++;
}

/* A placed tensor's bytes, [at, at + bytes). */
typedef struct Span {
    int64_t at, bytes;
} Span;

/* Largest first; then the earliest, the longest lived, the first listed. */
static int by_size(const void *a, const void *b)
{
    const Life *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->end != y->end)
        return x->end > y->end ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* In step order; then as by_size. */
static int by_start(const void *a, const void *b)
{
    const Life *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return by_size(a, b);
}

static int by_offset(const void *a, const void *b)
{
    const Span *x = a, *y = b;
    return (x->at > y->at) - (x->at < y->at);
}

/* Places the tensors from `base` on, in the order of l, each at the lowest
 * offset where it overlaps no tensor placed before that is live at one of
 * its steps (each step keeps the tensors placed live in it). Returns the end. */
static int64_t place(Lives *l, int64_t base)
{
    int steps = 0;
    for (int i = 0; i < l->n; i++)
        steps = l->v[i].end + 1 > steps ? l->v[i].end + 1 : steps;
    Lives *at_step = calloc((size_t)steps + 1, sizeof *at_step);
    Span *near = NULL;
    int cap = 0;
    int64_t top = base;
    for (int i = 0; i < l->n; i++) {
        Life *t = &l->v[i];
        int n = 0;
        for (int s = t->start; s <= t->end; s++)
            for (int k = 0; k < at_step[s].n; k++) {
                if (n == cap)
                    near = realloc(near, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *near);
                near[n++] = (Span){*at_step[s].v[k].where, at_step[s].v[k].bytes};
            }
        if (n > 1)
            qsort(near, (size_t)n, sizeof *near, by_offset);
        int64_t off = base;
        for (int k = 0; k < n && off + t->bytes > near[k].at; k++)
            off = near[k].at + near[k].bytes > off ? near[k].at + near[k].bytes : off;
        *t->where = off;
        top = off + t->bytes > top ? off + t->bytes : top;
        for (int s = t->start; s <= t->end; s++)
            live(&at_step[s], t->kind, t->producer, t->bytes, t->start, t->end, t->where);
    }
    for (int s = 0; s <= steps; s++)
        free(at_step[s].v);
    free(at_step);
    free(near);
    return top;
}

/* Places every tensor twice, largest first (greedy by size, as TFLite's arena
 * planner: a chain whose tensors grow towards the image reuses the small
 * ones' bytes) and in step order (as a run-time allocator would), and keeps
 * the smaller plan. Returns its end. */
static int64_t allocate(Lives *l, int64_t base)
{
    if (!l->n)
        return base;
    qsort(l->v, (size_t)l->n, sizeof *l->v, by_start);
    int64_t by_time = place(l, base);
    int64_t *at = malloc(((size_t)l->n + 1) * sizeof *at);
    for (int i = 0; i < l->n; i++)
        at[i] = *l->v[i].where;
    qsort(l->v, (size_t)l->n, sizeof *l->v, by_size);
    int64_t top = place(l, base);
    if (by_time < top) {
        qsort(l->v, (size_t)l->n, sizeof *l->v, by_start);
        for (int i = 0; i < l->n; i++)
            *l->v[i].where = at[i];
        top = by_time;
    }
    free(at);
    free(l->v);
    *l = (Lives){0};
    return top;
}

typedef int64_t ScratchFn(Scratch *s, const Node *n, int64_t batch, bool training, int64_t at, int64_t *keep);
typedef int64_t KeptFn(const Node *n, int64_t batch);

static ScratchFn *const scratch_fn[OP_COUNT] = {
#define SCRATCH(id, family) [OP_##id] = scratch_##family,
#include "scratch.def"
#undef SCRATCH
};

static KeptFn *const kept_fn[OP_COUNT] = {
#define SCRATCH(id, family) [OP_##id] = kept_##family,
#include "scratch.def"
#undef SCRATCH
};

/* The node whose buffer holds n's output: a fused activation's is its producer's. */
static int store_of(const Graph *g, int i)
{
    while (g->nodes[i].fused)
        i--;
    return i;
}

/* Inference: the outputs and the convs' scratch, each for its life. The pass
 * of node i may stand for the nodes after it (infer_pass: a fused
 * activation, a folded batch norm and its activation) and then a max pool the
 * conv's kernel applies (emit_forward decides that with the target in hand,
 * so the plan allows for it): its inputs and scratch live until then, and
 * the nodes it stands for share its output. */
static void plan_inference(Plan *p, const Graph *g, int64_t batch)
{
    int n = g->n;
    int *end = malloc((size_t)n * sizeof *end), *pass_end = malloc((size_t)n * sizeof *pass_end);
    int *head = malloc((size_t)n * sizeof *head);
    Node tmp;
    const Node *run;
    for (int i = 0, covered = -1; i < n; i++) {
        end[i] = i;
        int last = i > covered ? infer_pass(g, i, &tmp, &run) : -1;
        if (last < 0)
            continue;
        covered = last;
        for (int j = i; j <= last; j++)
            head[j] = i;
        pass_end[i] = last;
        if (op_has(g->nodes[i].op, OPF_TAKES_POOL) && pass_end[i] + 1 < n)
            pass_end[i]++;
    }
    /* a pass reads the inputs of the nodes it stands for from outside it (a
     * fused add's other input) */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++) {
            int j = head[g->nodes[i].inputs[k]], e = pass_end[head[i]];
            if (j != head[i])
                end[j] = e > end[j] ? e : end[j];
        }
    Lives l = {0};
    int output = head[n - 1];
    for (int i = 0; i < n; i++)
        p->out[i] = -1;
    /* the image is the caller's, unless the input normalizes it into a tensor of its own */
    for (int i = g->nodes[0].normalizes ? 0 : 1; i < n; i++)
        if (head[i] == i && i != output)
            live(&l, TK_ACTIVATION, i, buffer_bytes(&g->nodes[i], batch), i, end[i], &p->out[i]);
    /* each pass's scratch: laid out from 0, then moved where it was put; what
     * the pass prepares from the weights alone (a conv's pack) at *keep, in
     * the region before the rest that `prepare` fills */
    int64_t *at = calloc((size_t)n, sizeof *at), packed = 0, keep = 0;
    for (int i = 1; i < n; i++)
        if (head[i] == i && op_has(g->nodes[i].op, OPF_SCRATCH)) {
            infer_pass(g, i, &tmp, &run);
            live(&l, TK_SCRATCH, i, scratch_fn[run->op](&p->conv_infer[i], run, batch, false, 0, &packed), i,
                 pass_end[i], &at[i]);
        }
    p->packed_bytes = packed;
    p->infer_bytes = allocate(&l, packed);
    for (int i = 1; i < n; i++)
        if (head[i] == i && op_has(g->nodes[i].op, OPF_SCRATCH)) {
            infer_pass(g, i, &tmp, &run);
            scratch_fn[run->op](&p->conv_infer[i], run, batch, false, at[i], &keep);
        }
    CNNC_ASSERT(keep == packed);
    for (int i = 1; i < n; i++)
        if (head[i] != i)
            p->out[i] = p->out[head[i]];
    free(at);
    free(end);
    free(pass_end);
    free(head);
}

/* Whether backward step st reads the forward tensor of node j (a store),
 * by its op's GRAD_ flags */
static bool grad_reads(const Graph *g, const BwdStep *st, int j)
{
    const Node *nd = st->node;
    Node tmp;
    const Node *run = node_with_fused(g, nd->index, &tmp);
    unsigned f = op_spec(nd->op)->flags;
    if (nd->fused)
        return false;               /* its producer's step reads for it */
    if (store_of(g, nd->index) == j &&
        ((f & OPF_GRAD_OUT) || ((f & OPF_GRAD_ACT_OUT) && run->act != ACT_NONE)))
        return true;
    for (int k = 0; (f & OPF_GRAD_IN) && k < nd->ninputs; k++)
        if (store_of(g, nd->inputs[k]) == j)
            return true;
    return false;
}

/* The step after which no one reads node i's output (a store): its last
 * forward reader, the loss (step n) for the model's outputs, or the last
 * backward step that reads it */
static int last_read(const Graph *g, int i)
{
    int n = g->n, last = i;
    for (int r = i + 1; r < n; r++)
        for (int k = 0; k < g->nodes[r].ninputs; k++)
            if (store_of(g, g->nodes[r].inputs[k]) == i)
                last = r;
    if (i == store_of(g, g->loss_grad_node) || i == store_of(g, n - 1))
        last = n;
    for (int s = 0; s < g->nbwd; s++)
        if (grad_reads(g, &g->bwd[s], i))
            last = n + 1 + s > last ? n + 1 + s : last;
    return last;
}

/* Training: the parameters' gradients and what ops keep for backward (a
 * batch norm's statistics), then the step's activations (p->step_act) and gradients, each
 * for its life (the loss is step n, backward step s is n + 1 + s), over the
 * same bytes as `show`'s activations, every one kept (p->act); then the
 * convs' shared scratch. */
static void plan_training(Plan *p, const Graph *g, int64_t batch)
{
    int n = g->n;
    p->dparams = 0;
    p->grad_end = align64(g->params_size * (int64_t)sizeof(float));
    int64_t keep = p->grad_end;
    for (int i = 1; i < n; i++)
        if (op_has(g->nodes[i].op, OPF_SCRATCH))
            keep += kept_fn[g->nodes[i].op](&g->nodes[i], batch);
    /* `show`'s activations, every one kept, over the bytes the step's take */
    int64_t show_end = keep;
    p->act[0] = -1;
    for (int i = g->nodes[0].normalizes ? 0 : 1; i < n; i++) {
        p->act[i] = show_end;
        show_end += buffer_bytes(&g->nodes[i], batch);
    }
    /* each gradient's first and last step, by the node that stores it */
    int *first = malloc((size_t)n * sizeof *first), *last = malloc((size_t)n * sizeof *last);
    for (int i = 0; i < n; i++)
        first[i] = last[i] = -1;
    int lg = store_of(g, g->loss_grad_node);
    first[lg] = last[lg] = n;
    Lives l = {0};
    p->step_act[0] = -1;
    for (int i = g->nodes[0].normalizes ? 0 : 1; i < n; i++)
        if (store_of(g, i) == i)
            live(&l, TK_ACTIVATION, i, buffer_bytes(&g->nodes[i], batch), i, last_read(g, i), &p->step_act[i]);
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
                live(&l, TK_SCRATCH, nd->index, buffer_bytes(&g->nodes[nd->inputs[k]], batch), t, t,
                     &p->edge[nd->index][k]);
        }
    }
    for (int i = 1; i < n; i++)
        if (first[i] >= 0 && store_of(g, i) == i)
            live(&l, TK_GRADIENT, i, buffer_bytes(&g->nodes[i], batch), first[i], last[i], &p->grad[i]);
    int64_t grads_end = allocate(&l, keep);
    grads_end = show_end > grads_end ? show_end : grads_end;
    for (int i = 1; i < n; i++) {
        p->grad[i] = first[store_of(g, i)] >= 0 ? p->grad[store_of(g, i)] : -1;
        p->step_act[i] = p->step_act[store_of(g, i)];
    }
    free(first);
    free(last);
    /* what ops keep for backward from grad_end on; the rest of their
     * scratch shared, past the gradients */
    keep = p->grad_end;
    int64_t train_end = grads_end;
    Node tmp;
    for (int i = 1; i < n; i++)
        if (op_has(g->nodes[i].op, OPF_SCRATCH)) {
            int64_t e = scratch_fn[g->nodes[i].op](&p->conv[i], node_with_fused(g, i, &tmp), batch, true, grads_end,
                                                   &keep);
            train_end = e > train_end ? e : train_end;
        }
    p->train_bytes = train_end;
}

/* Images an inference call takes through all its passes before the next
 * ones: as many as keep their live tensors within CHUNK_BYTES (half of a
 * 512 KB L2), so that each pass reads what the one before it wrote from
 * the cache, not from memory (batch 64 of ResNet-20 is 28 MB, one image
 * 437 KB); but enough that weights read once an image (an fc's: fewer
 * than REUSE multiply-adds a weight) cost at most a twentieth of the
 * arithmetic, at about WEIGHT_FLOPS floating-point operations the time of
 * reading a byte (VGG-small's fc of 4 MB, LeNet-5's 240 KB). Powers of
 * two: the fc kernels block images by 4, and 3 would leave their remainder. */
enum { CHUNK_BYTES = 256 << 10, REUSE = 4, WEIGHT_FLOPS = 33 };

static int64_t plan_chunk(const Graph *g, const Plan *p)
{
    int64_t live = (p->infer_bytes - p->packed_bytes) / p->batch, flops = 0, weights = 0;
    for (int i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        flops += n->flops;
        if (n->macs > 0 && n->macs < REUSE * n->nparams)
            weights += n->nparams * (int64_t)sizeof(float);
    }
    int64_t reads = flops > 0 ? (WEIGHT_FLOPS * weights + flops - 1) / flops : 1, fit = 1, need = 1;
    while (fit < p->batch && 2 * fit * live <= CHUNK_BYTES)
        fit *= 2;               /* the most within the bytes */
    while (need < reads)
        need *= 2;              /* the fewest for the weights */
    int64_t chunk = fit > need ? fit : need;
    return chunk < p->batch ? chunk : p->batch;
}

void plan_build(Plan *p, const Graph *g, int64_t batch, int64_t chunk, bool training)
{
    *p = (Plan){.batch = batch};
    p->out = calloc((size_t)g->n, sizeof *p->out);
    p->act = calloc((size_t)g->n, sizeof *p->act);
    p->step_act = calloc((size_t)g->n, sizeof *p->step_act);
    p->grad = calloc((size_t)g->n, sizeof *p->grad);
    p->edge = calloc((size_t)g->n, sizeof *p->edge);
    p->conv = calloc((size_t)g->n, sizeof *p->conv);
    p->conv_infer = calloc((size_t)g->n, sizeof *p->conv_infer);
    plan_inference(p, g, batch);
    p->chunk = chunk ? (chunk < batch ? chunk : batch) : plan_chunk(g, p);
    if (p->chunk < batch)
        plan_inference(p, g, p->chunk);     /* a call's tensors are one chunk's */
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
    free(p->step_act);
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
    int first = g->nodes[0].normalizes ? 0 : 1;        /* else the image is the caller's */
    fprintf(out, "    inference (%lld bytes", (long long)p->infer_bytes);
    if (p->chunk < p->batch)
        fprintf(out, ", %lld image%s at a time", (long long)p->chunk, p->chunk == 1 ? "" : "s");
    fprintf(out, "):");
    for (int i = first; i < g->n; i++) {
        fprintf(out, " %%%s ", g->nodes[i].name);
        if (p->out[i] < 0)          /* the model's output, the caller's */
            fprintf(out, "out");
        else
            print_offset(out, p->out[i]);
    }
    fprintf(out, "\n");
    if (!training)
        return;
    fprintf(out, "    training (%lld bytes):\n", (long long)p->train_bytes);
    for (int i = first; i < g->n; i++) {
        fprintf(out, "      %%%s at %lld, %%d.%s at ", g->nodes[i].name, (long long)p->step_act[i], g->nodes[i].name);
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
    static const struct { const char *what; size_t at; } parts[] = {
        {"padded input", offsetof(Scratch, pad)}, {"packed weights", offsetof(Scratch, wpack)},
        {"transposed weights", offsetof(Scratch, tpack)}, {"d pre-activation", offsetof(Scratch, dpre)},
        {"d padded input", offsetof(Scratch, dpad)}, {"padded d pre-activation", offsetof(Scratch, gpad)},
        {"Winograd tiles", offsetof(Scratch, wino)}, {"statistics", offsetof(Scratch, stats)},
        {"sums", offsetof(Scratch, sums)}, {"folded batch norm", offsetof(Scratch, fold)},
        {"Winograd weights", offsetof(Scratch, wino_u)},
    };
    for (int i = 1; i < g->n; i++) {
        if (!op_has(g->nodes[i].op, OPF_SCRATCH))
            continue;
        const char *sep = NULL;
        for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
            int64_t at = *(const int64_t *)((const char *)&p->conv[i] + parts[k].at);
            if (at >= 0) {
                if (!sep)
                    fprintf(out, "      %s scratch:", g->nodes[i].name);
                fprintf(out, "%s%s at %lld", sep ? sep : " ", parts[k].what, (long long)at);
                sep = ", ";
            }
        }
        if (sep)
            fprintf(out, "\n");
    }
}

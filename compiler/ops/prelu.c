/*
 * prelu.c: PReLU, an activation with a learned slope per channel
 * (torch.nn.PReLU(num_parameters=C)): y = x > 0 ? x : a[c] x, where c is the
 * channel of an HxWxC input (its last dimension) or the element of a vector.
 * The slopes are NAME.weight, 0.25 at first; their gradient sums over the
 * batch and the pixels.
 */
#include <stdint.h>
#include "../cnnc.h"

/* the channels: the last dimension */
static int64_t channels(const Node *n)
{
    return n->in.d[n->in.rank - 1];
}

void shape_prelu(Graph *g, Node *n)
{
    n->out = n->in;
    int64_t C = channels(n);
    n->weight = shape_param(g, n, "weight", 1, &C);
    if (!n->weight) {
        n->out.rank = 0;
        return;
    }
    double *init = arena_alloc(g->arena, (size_t)C * sizeof *init);
    for (int64_t k = 0; k < C; k++)
        init[k] = 0.25;
    n->weight->values = init;
    shape_count(g, n, 2);
}

/* For every row of C channels of the batch, the channel's loop: body(c, at). */
typedef void PreluBody(Cg *c, const Node *n, const void *ctx, LLVMValueRef ch, LLVMValueRef at);

static void each(Cg *c, const Node *n, PreluBody *body, const void *ctx)
{
    int64_t C = channels(n);
    Loop lr, lc;
    LLVMValueRef r = cg_loop(c, &lr, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out) / C)), "row");
    LLVMValueRef ch = cg_loopn(c, &lc, C, "c");
    body(c, n, ctx, ch, cg_muladd(c, r, C, ch));
    cg_loop_end(c, &lc);
    cg_loop_end(c, &lr);
}

typedef struct Fwd {
    LLVMValueRef inp, out, slope;
} Fwd;

static LLVMValueRef positive(Cg *c, LLVMValueRef x)
{
    return LLVMBuildFCmp(c->b, LLVMRealOGT, x, cg_f32(c, 0), "pos");
}

static void fwd_body(Cg *c, const Node *n, const void *ctx, LLVMValueRef ch, LLVMValueRef at)
{
    (void)n;
    const Fwd *f = ctx;
    LLVMValueRef x = cg_load(c, f->inp, at, "x");
    LLVMValueRef y = LLVMBuildSelect(c->b, positive(c, x), x, cg_fmul(c, cg_load(c, f->slope, ch, "a"), x), "y");
    cg_store(c, y, f->out, at);
}

void emit_prelu_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    Fwd f = {inp, out, cg_param(c, n->weight)};
    each(c, n, fwd_body, &f);
}

typedef struct Bwd1 {
    const Bwd *a;
    LLVMValueRef slope, dslope;
} Bwd1;

/* d inp = dy (x > 0 ? 1 : a[c]); d a[c] += dy (x > 0 ? 0 : x) */
static void bwd_body(Cg *c, const Node *n, const void *ctx, LLVMValueRef ch, LLVMValueRef at)
{
    (void)n;
    const Bwd1 *b = ctx;
    LLVMValueRef x = cg_load(c, b->a->inp, at, "x"), dy = cg_load(c, b->a->dout, at, "dy");
    LLVMValueRef pos = positive(c, x);
    if (b->a->dinp)
        cg_store(c, LLVMBuildSelect(c->b, pos, dy, cg_fmul(c, dy, cg_load(c, b->slope, ch, "a")), "dx"),
                 b->a->dinp, at);
    if (b->dslope)
        cg_accum(c, b->dslope, ch, LLVMBuildSelect(c->b, pos, cg_f32(c, 0), cg_fmul(c, dy, x), "da"));
}

void emit_prelu_bwd(Cg *c, const Node *n, const Bwd *a)
{
    Bwd1 b = {a, cg_param(c, n->weight), cg_dparam(c, a->dparams, n->weight)};
    if (a->dinp || b.dslope)
        each(c, n, bwd_body, &b);
}

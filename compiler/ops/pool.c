/*
 * pool.c: maxpool, avgpool and their global forms, which share one window walk.
 *
 * out (N,H',W',C) = max, or mean over the cells inside the image, of
 *                   inp (N, oh*S-P+kh, ow*S-P+kw, C) for kh < Kh, kw < Kw.
 * Padding is never a maximum, and counted in a mean only with count_pad
 * (PyTorch's count_include_pad; the language's default is False). With ceil
 * (ceil_mode) the last windows may reach past the padded input; those cells
 * are never counted. globalavgpool and globalmaxpool are the window
 * of the whole HxW input: out (N,C), laid out as the (N,1,1,C) grid the walk
 * produces.
 */
#include <math.h>
#include "../cnnc.h"

static bool is_global(const Node *n)
{
    return n->op == OP_GLOBALAVGPOOL || n->op == OP_GLOBALMAXPOOL;
}

static bool is_max(const Node *n)
{
    return n->op == OP_MAXPOOL || n->op == OP_GLOBALMAXPOOL;
}

/* The grid of windows: the output, or 1x1xC for the global pools. */
static Shape grid(const Node *n)
{
    return is_global(n) ? (Shape){3, {1, 1, n->in.d[2]}} : n->out;
}

void shape_pool(Graph *g, Node *n)
{
    if (is_global(n)) {
        int h = (int)n->in.d[0], w = (int)n->in.d[1];
        shape_window(g, n, h, w, h, w, 0, 0);
        n->out = (Shape){1, {n->in.d[2]}};
        n->rf_global = true;
        shape_count(g, n, (int64_t)h * w);
        return;
    }
    const Arg *size = node_arg(n, "size"), *stride = node_arg(n, "stride");
    const Arg *pad = node_arg(n, "pad");
    int kh = (int)size->v.dims[0], kw = (int)size->v.dims[1];
    int sh = stride->present ? (int)stride->v.dims[0] : kh;
    int sw = stride->present ? (int)stride->v.dims[1] : kw;
    if (pad->same) {
        diag_error(g->diag, pad->loc, "pad=same is for conv; give '%s' a number", n->name);
        return;
    }
    int ph = (int)pad->v.dims[0], pw = (int)pad->v.dims[1];
    n->ceil_mode = node_arg(n, "ceil")->present;
    n->count_pad = spec_param(op_spec(n->op), "count_pad") >= 0 && node_arg(n, "count_pad")->present;
    /* PyTorch's rule: a window must always hold a cell of the image. */
    if (2 * (int64_t)ph > kh || 2 * (int64_t)pw > kw) {
        diag_error(g->diag, pad->loc, "pad %dx%d of '%s' is more than half its %dx%d window",
                   ph, pw, n->name, kh, kw);
        diag_note_plain(g->diag, "a window could then hold only padding");
        return;
    }
    if (!shape_window(g, n, kh, kw, sh, sw, ph, pw))
        return;
    shape_count(g, n, (int64_t)kh * kw);
}

/* The code works on a vector of channels at a time: a block of `width`
 * channels from c0, at every output pixel. */
typedef struct PoolCtx {
    const Node *n;
    const Bwd *a;
    LLVMValueRef inp, out, bn, oh, ow;
    LLVMValueRef c0;
    int width;
    LLVMValueRef acc, count, share, rest, y, dy;
} PoolCtx;

static LLVMValueRef out_at(Cg *c, PoolCtx *x)
{
    Shape o = grid(x->n);
    int64_t OH = o.d[0], OW = o.d[1], C = o.d[2];
    return cg_add(c, cg_mul(c, cg_muladd(c, cg_muladd(c, x->bn, OH, x->oh), OW, x->ow), cg_i64(c, C)), x->c0);
}

static LLVMValueRef tap_at(Cg *c, PoolCtx *x, LLVMValueRef pix)
{
    return cg_add(c, cg_mul(c, pix, cg_i64(c, x->n->in.d[2])), x->c0);
}

static void pool_fwd_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                         LLVMValueRef kw)
{
    (void)kh, (void)kw;
    PoolCtx *x = vctx;
    LLVMValueRef v = cg_vload(c, x->inp, tap_at(c, x, pix), x->width);
    LLVMValueRef acc = cg_vget(c, x->acc, x->width);
    if (is_max(n)) {
        /* the first maximum wins, as PyTorch's: replace only when strictly
         * greater, or with a NaN, which then stays */
        LLVMBuildStore(c->b, cg_vmax(c, v, acc), x->acc);
    } else {
        LLVMBuildStore(c->b, cg_fadd(c, acc, v), x->acc);
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, cg_get(c, x->count), cg_f32(c, 1), ""), x->count);
    }
}

/* One side of count_pad's window: the cells of [o*s - p, o*s - p + k) inside
 * the padded input, [-p, n + p). */
static LLVMValueRef padded_span(Cg *c, LLVMValueRef o, int s, int p, int k, int64_t n)
{
    LLVMValueRef start = cg_add(c, cg_mul(c, o, cg_i64(c, s)), cg_i64(c, -p));
    LLVMValueRef end = cg_add(c, start, cg_i64(c, k)), limit = cg_i64(c, n + p);
    end = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, end, limit, ""), end, limit, "end");
    return LLVMBuildSub(c->b, end, start, "span");
}

/* An average's divisor: the window's cells inside the image (counted by the
 * taps), or with count_pad those inside the padded input. */
static LLVMValueRef divisor(Cg *c, PoolCtx *x)
{
    const Node *n = x->n;
    if (!n->count_pad)
        return cg_get(c, x->count);
    LLVMValueRef cells = cg_mul(c, padded_span(c, x->oh, n->sh, n->ph, n->kh, n->in.d[0]),
                                padded_span(c, x->ow, n->sw, n->pw, n->kw, n->in.d[1]));
    return LLVMBuildSIToFP(c->b, cells, c->f32, "cells");
}

static void pool_fwd_block(Cg *c, void *vctx, LLVMValueRef c0, int width)
{
    PoolCtx *x = vctx;
    const Node *n = x->n;
    x->c0 = c0;
    x->width = width;
    x->acc = cg_vvar(c, width, "acc");
    LLVMBuildStore(c->b, is_max(n) ? cg_splat(c, cg_f32(c, -INFINITY), width) : cg_vzero(c, width), x->acc);
    LLVMBuildStore(c->b, cg_f32(c, 0), x->count);
    cg_window(c, n, x->bn, x->oh, x->ow, false, pool_fwd_tap, x);
    LLVMValueRef o = cg_vget(c, x->acc, width);
    if (!is_max(n))
        o = LLVMBuildFDiv(c->b, o, cg_splat(c, divisor(c, x), width), "mean");
    cg_vstore(c, o, x->out, out_at(c, x), width);
}

/* fn for every vector of channels of every output pixel */
static void pool_walk(Cg *c, PoolCtx *x, VectorFn *fn)
{
    Loop ln, loh, low;
    x->bn = cg_loop(c, &ln, c->batch, "n");
    Shape o = grid(x->n);
    x->oh = cg_loopn(c, &loh, o.d[0], "oh");
    x->ow = cg_loopn(c, &low, o.d[1], "ow");
    cg_for_vectors(c, o.d[2], fn, x);
    cg_loop_end(c, &low);
    cg_loop_end(c, &loh);
    cg_loop_end(c, &ln);
}

/* out (N,OH,OW,C) = max or mean of inp (N,H,W,C) over each window */
void emit_pool_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    PoolCtx x = {.n = n, .inp = inp, .out = out, .count = cg_var(c, "count")};
    pool_walk(c, &x, pool_fwd_block);
}

/* When the windows tile the input exactly, every input cell gets one value,
 * stored; else dinp is zeroed first and the windows add to it. */
static bool tiles_exactly(const Node *n)
{
    Shape o = grid(n);
    return n->sh == n->kh && n->sw == n->kw && !n->ph && !n->pw && o.d[0] * n->kh == n->in.d[0] &&
           o.d[1] * n->kw == n->in.d[1];
}

static void add_to_dinp(Cg *c, PoolCtx *x, LLVMValueRef at, LLVMValueRef v)
{
    if (!tiles_exactly(x->n))
        v = cg_fadd(c, cg_vload(c, x->a->dinp, at, x->width), v);
    cg_vstore(c, v, x->a->dinp, at, x->width);
}

/* maxpool: the window's first cell equal to the maximum (the forward
 * output) gets dy, in every lane: `rest` holds dy until a lane has given it
 * away (a select per cell, no chain of mask operations) */
static void maxpool_route_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                              LLVMValueRef kw)
{
    (void)n, (void)kh, (void)kw;
    PoolCtx *x = vctx;
    LLVMValueRef at = tap_at(c, x, pix);
    LLVMValueRef eq = LLVMBuildFCmp(c->b, LLVMRealOEQ, cg_vload(c, x->inp, at, x->width), x->y, "");
    LLVMValueRef rest = cg_vget(c, x->rest, x->width), zero = cg_vzero(c, x->width);
    LLVMBuildStore(c->b, LLVMBuildSelect(c->b, eq, zero, rest, ""), x->rest);
    add_to_dinp(c, x, at, LLVMBuildSelect(c->b, eq, rest, zero, ""));
}

/* avgpool: count the cells inside the image, then give each its share */
static void avgpool_count_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                              LLVMValueRef kw)
{
    (void)n, (void)pix, (void)kh, (void)kw;
    PoolCtx *x = vctx;
    LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, cg_get(c, x->count), cg_f32(c, 1), ""), x->count);
}

static void avgpool_share_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                              LLVMValueRef kw)
{
    (void)n, (void)kh, (void)kw;
    PoolCtx *x = vctx;
    add_to_dinp(c, x, tap_at(c, x, pix), x->share);
}

static void pool_bwd_block(Cg *c, void *vctx, LLVMValueRef c0, int width)
{
    PoolCtx *x = vctx;
    const Node *n = x->n;
    x->c0 = c0;
    x->width = width;
    LLVMValueRef oi = out_at(c, x);
    x->dy = cg_vload(c, x->a->dout, oi, width);
    if (is_max(n)) {
        x->y = cg_vload(c, x->a->out, oi, width);
        x->rest = cg_vvar(c, width, "rest");
        LLVMBuildStore(c->b, x->dy, x->rest);
        cg_window(c, n, x->bn, x->oh, x->ow, false, maxpool_route_tap, x);
    } else {
        LLVMBuildStore(c->b, cg_f32(c, 0), x->count);
        cg_window(c, n, x->bn, x->oh, x->ow, false, avgpool_count_tap, x);
        x->share = LLVMBuildFDiv(c->b, x->dy, cg_splat(c, divisor(c, x), width), "share");
        cg_window(c, n, x->bn, x->oh, x->ow, false, avgpool_share_tap, x);
    }
}

/* dinp (N,H,W,C) = dout (N,OH,OW,C) routed back through each window */
void emit_pool_bwd(Cg *c, const Node *n, const Bwd *a)
{
    if (!a->dinp)
        return;
    if (!tiles_exactly(n))
        cg_zero(c, a->dinp, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->in))));
    PoolCtx x = {.n = n, .a = a, .inp = a->inp, .count = cg_var(c, "count")};
    pool_walk(c, &x, pool_bwd_block);
}

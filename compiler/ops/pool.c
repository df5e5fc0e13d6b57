/*
 * pool.c: maxpool and avgpool, which share one window walk.
 *
 * out (N,H',W',C) = max, or mean over the cells inside the image, of
 *                   inp (N, oh*S-P+kh, ow*S-P+kw, C) for kh < Kh, kw < Kw.
 * Padding is never a maximum and never counted in a mean (PyTorch's
 * count_include_pad=False).
 */
#include <math.h>
#include "../cnnc.h"

void shape_pool(Graph *g, Node *n)
{
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

typedef struct PoolCtx {
    LLVMValueRef inp, acc, count, ch;
} PoolCtx;

static void pool_fwd_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                         LLVMValueRef kw)
{
    (void)kh, (void)kw;
    PoolCtx *x = vctx;
    LLVMValueRef v = cg_load(c, x->inp, cg_muladd(c, pix, n->in.d[2], x->ch), "x");
    LLVMValueRef acc = LLVMBuildLoad2(c->b, c->f32, x->acc, "");
    if (n->op == OP_MAXPOOL) {
        /* the first maximum wins, as PyTorch's: replace only when strictly greater */
        LLVMValueRef gt = LLVMBuildFCmp(c->b, LLVMRealUGT, v, acc, "");
        LLVMBuildStore(c->b, LLVMBuildSelect(c->b, gt, v, acc, ""), x->acc);
    } else {
        LLVMBuildStore(c->b, cg_fadd(c, acc, v), x->acc);
        LLVMValueRef cnt = LLVMBuildLoad2(c->b, c->f32, x->count, "");
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, cnt, cg_f32(c, 1), ""), x->count);
    }
}

/* out (N,OH,OW,C) = max or mean of inp (N,H,W,C) over each window */
void emit_pool_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    int64_t OH = n->out.d[0], OW = n->out.d[1], C = n->out.d[2];
    PoolCtx x = {inp, cg_var(c, "acc"), cg_var(c, "count"), NULL};
    Loop ln, loh, low, lc;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &loh, OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &low, OW, "ow");
    x.ch = cg_loopn(c, &lc, C, "c");
    LLVMBuildStore(c->b, cg_f32(c, n->op == OP_MAXPOOL ? -INFINITY : 0), x.acc);
    LLVMBuildStore(c->b, cg_f32(c, 0), x.count);
    cg_window(c, n, bn, oh, ow, false, pool_fwd_tap, &x);
    LLVMValueRef o = LLVMBuildLoad2(c->b, c->f32, x.acc, "");
    if (n->op == OP_AVGPOOL)
        o = LLVMBuildFDiv(c->b, o, LLVMBuildLoad2(c->b, c->f32, x.count, ""), "mean");
    LLVMValueRef oi = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, cg_muladd(c, bn, OH, oh),
                                                           cg_i64(c, OW)), ow),
                                       cg_i64(c, C)), x.ch);
    cg_store(c, o, out, oi);
    cg_loop_end(c, &lc);
    cg_loop_end(c, &low);
    cg_loop_end(c, &loh);
    cg_loop_end(c, &ln);
}

typedef struct PoolBwdCtx {
    LLVMValueRef inp, dinp, best, at, count, share, ch;
} PoolBwdCtx;

/* maxpool: remember the first maximum's index */
static void maxpool_find_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                             LLVMValueRef kw)
{
    (void)kh, (void)kw;
    PoolBwdCtx *x = vctx;
    LLVMValueRef xi = cg_muladd(c, pix, n->in.d[2], x->ch);
    LLVMValueRef v = cg_load(c, x->inp, xi, "x");
    LLVMValueRef gt = LLVMBuildFCmp(c->b, LLVMRealUGT, v, cg_get(c, x->best), "");
    LLVMBuildStore(c->b, LLVMBuildSelect(c->b, gt, v, cg_get(c, x->best), ""), x->best);
    LLVMBuildStore(c->b, LLVMBuildSelect(c->b, gt, xi, LLVMBuildLoad2(c->b, c->i64, x->at, ""), ""), x->at);
}

/* avgpool: count the cells inside the image, then give each its share */
static void avgpool_count_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                              LLVMValueRef kw)
{
    (void)n, (void)pix, (void)kh, (void)kw;
    PoolBwdCtx *x = vctx;
    LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, cg_get(c, x->count), cg_f32(c, 1), ""), x->count);
}

static void avgpool_share_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                              LLVMValueRef kw)
{
    (void)kh, (void)kw;
    PoolBwdCtx *x = vctx;
    cg_accum(c, x->dinp, cg_muladd(c, pix, n->in.d[2], x->ch), x->share);
}

/* dinp (N,H,W,C) += dout (N,OH,OW,C) routed back through each window */
void emit_pool_bwd(Cg *c, const Node *n, const Bwd *a)
{
    if (!a->dinp)
        return;
    int64_t OH = n->out.d[0], OW = n->out.d[1], C = n->out.d[2];
    PoolBwdCtx x = {a->inp, a->dinp, cg_var(c, "best"), cg_var_i64(c, "at"), cg_var(c, "count"),
                    NULL, NULL};
    Loop ln, loh, low, lc;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &loh, OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &low, OW, "ow");
    x.ch = cg_loopn(c, &lc, C, "c");
    LLVMValueRef oi = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, cg_muladd(c, bn, OH, oh),
                                                           cg_i64(c, OW)), ow),
                                       cg_i64(c, C)), x.ch);
    LLVMValueRef dy = cg_load(c, a->dout, oi, "dy");
    if (n->op == OP_MAXPOOL) {
        LLVMBuildStore(c->b, cg_f32(c, -INFINITY), x.best);
        LLVMBuildStore(c->b, cg_i64(c, -1), x.at);
        cg_window(c, n, bn, oh, ow, false, maxpool_find_tap, &x);
        LLVMValueRef at = LLVMBuildLoad2(c->b, c->i64, x.at, "argmax");
        LLVMBasicBlockRef join = cg_if(c, LLVMBuildICmp(c->b, LLVMIntSGE, at, cg_i64(c, 0), ""), "found");
        cg_accum(c, a->dinp, at, dy);
        cg_if_end(c, join);
    } else {
        LLVMBuildStore(c->b, cg_f32(c, 0), x.count);
        cg_window(c, n, bn, oh, ow, false, avgpool_count_tap, &x);
        x.share = LLVMBuildFDiv(c->b, dy, cg_get(c, x.count), "share");
        cg_window(c, n, bn, oh, ow, false, avgpool_share_tap, &x);
    }
    cg_loop_end(c, &lc);
    cg_loop_end(c, &low);
    cg_loop_end(c, &loh);
    cg_loop_end(c, &ln);
}

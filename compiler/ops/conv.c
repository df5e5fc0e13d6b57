/*
 * conv.c: the conv op: shape rule, forward and backward code side by side.
 *
 * out (N,H',W',M) = b (M) + sum over (kh, kw, c) of
 *                   inp (N, oh*S-P+kh, ow*S-P+kw, C) * weight (M,C,Kh,Kw)
 * with the border zero or, with padmode=replicate, the nearest edge pixel.
 * Activations are channels last; weights keep PyTorch's layout.
 */
#include "../cnnc.h"

void shape_conv(Graph *g, Node *n)
{
    Diag *d = g->diag;
    const Arg *size = node_arg(n, "size"), *stride = node_arg(n, "stride");
    const Arg *pad = node_arg(n, "pad"), *weights = node_arg(n, "weights");
    int64_t m = node_arg(n, "kernels")->v.i;
    int kh = (int)size->v.dims[0], kw = (int)size->v.dims[1];
    int ph = (int)pad->v.dims[0], pw = (int)pad->v.dims[1];
    if (pad->same) {
        if (kh % 2 == 0 || kw % 2 == 0) {
            diag_error(d, pad->loc, "pad=same needs an odd kernel size, but '%s' has size %dx%d",
                       n->name, kh, kw);
            diag_note(d, size->loc, "'same' pads (k - 1) / 2 on each side, which keeps the "
                      "size only when k is odd; give pad=P instead");
            return;
        }
        ph = (kh - 1) / 2;
        pw = (kw - 1) / 2;
    }
    n->padmode = (int)node_arg(n, "padmode")->v.i;
    n->act = (int)node_arg(n, "act")->v.i;
    if (!shape_window(g, n, kh, kw, (int)stride->v.dims[0], (int)stride->v.dims[1], ph, pw))
        return;
    int64_t c = n->in.d[2];
    n->out.d[2] = m;

    bool fixed = node_arg(n, "fixed")->present;
    int init = (int)node_arg(n, "init")->v.i;
    n->weight = shape_param(g, n, "weight", 4, (int64_t[]){m, c, kh, kw});
    if (!n->weight) {
        n->out.rank = 0;
        return;
    }
    Param *w = n->weight;
    w->fixed = fixed;
    w->init = init;
    w->fan_in = c * kh * kw;
    w->fan_out = m * kh * kw;
    if (weights->present) {
        if (weights->v.nlist != w->size) {
            diag_error(d, weights->loc, "'weights' of '%s' has %lld numbers, but needs %lld",
                       n->name, (long long)weights->v.nlist, (long long)w->size);
            diag_note_plain(d, "%lld kernel(s) x %lld channel(s) x %dx%d, in the order "
                            "[kernel][channel][row][col]", (long long)m, (long long)c, kh, kw);
        }
        w->values = weights->v.list;
    }
    if (node_arg(n, "bias")->v.i) {
        n->bias = shape_param(g, n, "bias", 1, (int64_t[]){m});
        if (n->bias) {
            n->bias->fixed = fixed;
            n->bias->init = INIT_ZEROS;
        }
    }
    /* per output: a multiply-add per (c, kh, kw), then the bias and the activation */
    int64_t per = 2;
    shape_mul(g, n, &per, c);
    shape_mul(g, n, &per, (int64_t)kh * kw);
    per += (n->bias != NULL) + (n->act != ACT_NONE);
    shape_count(g, n, per);
}

typedef struct ConvCtx {
    LLVMValueRef inp, weight, acc, m;
} ConvCtx;

/* acc += inp (pix, c) * weight (m, c, kh, kw) for c < C */
static void conv_fwd_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                         LLVMValueRef kw)
{
    ConvCtx *x = vctx;
    int64_t C = n->in.d[2];
    Loop lc;
    LLVMValueRef ch = cg_loopn(c, &lc, C, "c");
    LLVMValueRef v = cg_load(c, x->inp, cg_muladd(c, pix, C, ch), "x");
    /* ((m*C + c)*Kh + kh)*Kw + kw */
    LLVMValueRef wi = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, cg_muladd(c, x->m, C, ch),
                                                           cg_i64(c, n->kh)), kh),
                                       cg_i64(c, n->kw)), kw);
    LLVMValueRef w = cg_load(c, x->weight, wi, "w");
    LLVMValueRef acc = LLVMBuildLoad2(c->b, c->f32, x->acc, "");
    LLVMBuildStore(c->b, cg_fadd(c, acc, cg_fmul(c, v, w)), x->acc);
    cg_loop_end(c, &lc);
}

/* out (N,OH,OW,M) = act(bias + conv(inp (N,H,W,C), weight (M,C,Kh,Kw))) */
void emit_conv_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    int64_t OH = n->out.d[0], OW = n->out.d[1], M = n->out.d[2];
    ConvCtx x = {inp, cg_param(c, n->weight), cg_var(c, "acc"), NULL};
    LLVMValueRef bias = n->bias ? cg_param(c, n->bias) : NULL;
    Loop ln, loh, low, lm;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &loh, OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &low, OW, "ow");
    x.m = cg_loopn(c, &lm, M, "m");
    LLVMBuildStore(c->b, bias ? cg_load(c, bias, x.m, "b") : cg_f32(c, 0), x.acc);
    cg_window(c, n, bn, oh, ow, n->padmode == PAD_REPLICATE, conv_fwd_tap, &x);
    LLVMValueRef o = cg_act(c, n->act, LLVMBuildLoad2(c->b, c->f32, x.acc, ""));
    LLVMValueRef oi = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, cg_muladd(c, bn, OH, oh),
                                                           cg_i64(c, OW)), ow),
                                       cg_i64(c, M)), x.m);
    cg_store(c, o, out, oi);
    cg_loop_end(c, &lm);
    cg_loop_end(c, &low);
    cg_loop_end(c, &loh);
    cg_loop_end(c, &ln);
}

typedef struct ConvBwdCtx {
    LLVMValueRef inp, weight, dweight, dinp, g, m;
} ConvBwdCtx;

/* For c < C: dweight (m,c,kh,kw) += g * inp (pix, c); dinp (pix, c) += g * weight.
 * With padmode=replicate pix is clamped, so border gradients reach the edge pixel. */
static void conv_bwd_tap(Cg *c, const Node *n, void *vctx, LLVMValueRef pix, LLVMValueRef kh,
                         LLVMValueRef kw)
{
    ConvBwdCtx *x = vctx;
    int64_t C = n->in.d[2];
    Loop lc;
    LLVMValueRef ch = cg_loopn(c, &lc, C, "c");
    LLVMValueRef xi = cg_muladd(c, pix, C, ch);
    LLVMValueRef wi = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, cg_muladd(c, x->m, C, ch),
                                                           cg_i64(c, n->kh)), kh),
                                       cg_i64(c, n->kw)), kw);
    if (x->dweight)
        cg_accum(c, x->dweight, wi, cg_fmul(c, x->g, cg_load(c, x->inp, xi, "x")));
    if (x->dinp)
        cg_accum(c, x->dinp, xi, cg_fmul(c, x->g, cg_load(c, x->weight, wi, "w")));
    cg_loop_end(c, &lc);
}

/* From dout (N,OH,OW,M): dbias (M), dweight (M,C,Kh,Kw) and dinp (N,H,W,C), all += */
void emit_conv_bwd(Cg *c, const Node *n, const Bwd *a)
{
    int64_t OH = n->out.d[0], OW = n->out.d[1], M = n->out.d[2];
    ConvBwdCtx x = {a->inp, cg_param(c, n->weight), cg_dparam(c, a->dparams, n->weight),
                    a->dinp, NULL, NULL};
    LLVMValueRef dbias = cg_dparam(c, a->dparams, n->bias);
    if (!x.dweight && !x.dinp && !dbias)
        return;
    Loop ln, loh, low, lm;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &loh, OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &low, OW, "ow");
    x.m = cg_loopn(c, &lm, M, "m");
    LLVMValueRef oi = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, cg_muladd(c, bn, OH, oh),
                                                           cg_i64(c, OW)), ow),
                                       cg_i64(c, M)), x.m);
    x.g = cg_act_grad(c, n->act, cg_load(c, a->out, oi, "y"), cg_load(c, a->dout, oi, "dy"));
    if (dbias)
        cg_accum(c, dbias, x.m, x.g);
    if (x.dweight || x.dinp)
        cg_window(c, n, bn, oh, ow, n->padmode == PAD_REPLICATE, conv_bwd_tap, &x);
    cg_loop_end(c, &lm);
    cg_loop_end(c, &low);
    cg_loop_end(c, &loh);
    cg_loop_end(c, &ln);
}

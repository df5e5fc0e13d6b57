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

/* ---- code generation ----
 *
 * The input is first padded into scratch (zeros or replicated edges), so the
 * kernels need no bounds checks, and the weights are packed so that output
 * channels are contiguous: wpack (Kh,Kw,C,M). The forward kernel keeps a
 * block of R output pixels x BM output channels in vector registers, sized
 * from the target's vector width and register count, and streams weights
 * while broadcasting inputs. Backward: d weight reduces over all pixels with
 * a block of channels in registers; d inp is the same kernel shape over input
 * channels with tpack (Kh,Kw,M,C); both write the padded input's gradient,
 * which is folded back (to the edge pixel with replicate). */

typedef struct ConvGeom {
    int64_t H, W, C, Hp, Wp, OH, OW, M;
} ConvGeom;

static ConvGeom geom(const Node *n)
{
    return (ConvGeom){n->in.d[0], n->in.d[1], n->in.d[2], n->in.d[0] + 2 * n->ph,
                      n->in.d[1] + 2 * n->pw, n->out.d[0], n->out.d[1], n->out.d[2]};
}

/* How many floats one block of channels holds: two vectors, or all of them. */
static int block_width(Cg *c, int64_t channels)
{
    return channels < 2 * c->vw ? (int)channels : 2 * c->vw;
}

/* How many such blocks fit in the registers beside one operand and a
 * broadcast; of the counts from half that to all of it, one that divides
 * limit when there is one, so that no narrow remainder block is left. */
static int block_count(Cg *c, int width, int64_t limit)
{
    int regs = (width + c->vw - 1) / c->vw;
    int r = (c->nregs - regs - 1) / regs;
    if (r > 12)
        r = 12;
    if (r < 1)
        r = 1;
    if (r >= limit)
        return (int)limit;
    for (int d = r; d * 2 >= r && d > 1; d--)
        if (limit % d == 0)
            return d;
    return r;
}

/* Forward: pad (N,Hp,Wp,C) = inp (N,H,W,C) with its border, zeros or the edge
 * pixel. Backward: dinp += dpad, each padded cell to the pixel it was copied
 * from (with zero padding the border's share is 0). One walk over the padded
 * cells serves both. */
static void emit_pad_walk(Cg *c, const Node *n, LLVMValueRef image, LLVMValueRef padded,
                          bool backward)
{
    ConvGeom g = geom(n);
    Loop ln, lh, lw, lc;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef hp = cg_loopn(c, &lh, g.Hp, "hp");
    LLVMValueRef wp = cg_loopn(c, &lw, g.Wp, "wp");
    LLVMValueRef ih = cg_add(c, hp, cg_i64(c, -n->ph)), iw = cg_add(c, wp, cg_i64(c, -n->pw));
    LLVMValueRef inside = LLVMBuildAnd(c->b, cg_inside(c, ih, g.H), cg_inside(c, iw, g.W), "");
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, bn, g.H, cg_clamp(c, ih, g.H)), g.W, cg_clamp(c, iw, g.W));
    LLVMValueRef ppix = cg_muladd(c, cg_muladd(c, bn, g.Hp, hp), g.Wp, wp);
    LLVMValueRef ch = cg_loopn(c, &lc, g.C, "c");
    LLVMValueRef at = cg_muladd(c, pix, g.C, ch), pat = cg_muladd(c, ppix, g.C, ch);
    LLVMValueRef v = backward ? cg_load(c, padded, pat, "d") : cg_load(c, image, at, "x");
    if (n->padmode == PAD_ZERO)
        v = LLVMBuildSelect(c->b, inside, v, cg_f32(c, 0), "");
    if (backward)
        cg_accum(c, image, at, v);
    else
        cg_store(c, v, padded, pat);
    cg_loop_end(c, &lc);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

/* pack (Kh,Kw,C,M), or (Kh,M,Kw,C) when by_input, from weight (M,C,Kh,Kw) */
static void emit_pack(Cg *c, const Node *n, LLVMValueRef w, LLVMValueRef pack, bool by_input)
{
    ConvGeom g = geom(n);
    Loop lm, lc, lh, lw;
    LLVMValueRef m = cg_loopn(c, &lm, g.M, "m");
    LLVMValueRef ch = cg_loopn(c, &lc, g.C, "c");
    LLVMValueRef kh = cg_loopn(c, &lh, n->kh, "kh");
    LLVMValueRef kw = cg_loopn(c, &lw, n->kw, "kw");
    LLVMValueRef src = cg_muladd(c, cg_muladd(c, cg_muladd(c, m, g.C, ch), n->kh, kh), n->kw, kw);
    LLVMValueRef tap = cg_muladd(c, kh, n->kw, kw);
    LLVMValueRef dst = by_input ? cg_muladd(c, cg_muladd(c, cg_muladd(c, kh, g.M, m), n->kw, kw), g.C, ch)
                                : cg_muladd(c, cg_muladd(c, tap, g.C, ch), g.M, m);
    cg_store(c, cg_load(c, w, src, "w"), pack, dst);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &lc);
    cg_loop_end(c, &lm);
}

typedef struct ConvFwd {
    const Node *n;
    ConvGeom g;
    LLVMValueRef pad, wpack, bias, out, bn, oh;
} ConvFwd;

/* out (bn, oh, ow0 .. ow0+r, m0 .. m0+bm) from r x bm accumulators */
static void conv_fwd_block(Cg *c, ConvFwd *k, LLVMValueRef ow0, int r, LLVMValueRef m0, int bm)
{
    const Node *n = k->n;
    ConvGeom g = k->g;
    LLVMValueRef acc[16];
    LLVMValueRef init = k->bias ? cg_vload(c, k->bias, m0, bm) : cg_vzero(c, bm);
    for (int i = 0; i < r; i++) {
        acc[i] = cg_vvar(c, bm, "acc");
        LLVMBuildStore(c->b, init, acc[i]);
    }
    Loop lh, lw, lc;
    LLVMValueRef kh = cg_loopn(c, &lh, n->kh, "kh");
    LLVMValueRef kw = cg_loopn(c, &lw, n->kw, "kw");
    LLVMValueRef row = cg_muladd(c, cg_add(c, cg_muladd(c, k->bn, g.Hp, cg_mul(c, k->oh, cg_i64(c, n->sh))), kh),
                                 g.Wp, cg_add(c, cg_mul(c, ow0, cg_i64(c, n->sw)), kw));
    LLVMValueRef ch = cg_loopn(c, &lc, g.C, "c");
    LLVMValueRef w = cg_vload(c, k->wpack, cg_add(c, cg_mul(c, cg_muladd(c, cg_muladd(c, kh, n->kw, kw), g.C, ch),
                                                           cg_i64(c, g.M)), m0), bm);
    LLVMValueRef base = cg_muladd(c, row, g.C, ch);
    for (int i = 0; i < r; i++) {
        LLVMValueRef x = cg_load(c, k->pad, cg_add(c, base, cg_i64(c, (int64_t)i * n->sw * g.C)), "x");
        LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc[i], bm), cg_fmul(c, cg_splat(c, x, bm), w)), acc[i]);
    }
    cg_loop_end(c, &lc);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, k->bn, g.OH, k->oh), g.OW, ow0);
    for (int i = 0; i < r; i++) {
        LLVMValueRef v = cg_vget(c, acc[i], bm);
        if (n->act == ACT_RELU)
            v = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, v, cg_vzero(c, bm), ""), v,
                                cg_vzero(c, bm), "relu");
        cg_vstore(c, v, k->out, cg_add(c, cg_mul(c, cg_add(c, pix, cg_i64(c, i)), cg_i64(c, g.M)), m0));
    }
}

/* Every channel block of r pixels from ow0: full blocks in a loop, then the rest. */
static void conv_fwd_channels(Cg *c, ConvFwd *k, LLVMValueRef ow0, int r)
{
    int bm = block_width(c, k->g.M);
    int64_t full = k->g.M / bm, rest = k->g.M % bm;
    Loop lm;
    LLVMValueRef mb = cg_loopn(c, &lm, full, "mb");
    conv_fwd_block(c, k, ow0, r, cg_mul(c, mb, cg_i64(c, bm)), bm);
    cg_loop_end(c, &lm);
    if (rest)
        conv_fwd_block(c, k, ow0, r, cg_i64(c, full * bm), (int)rest);
}

/* out (N,OH,OW,M) = act(bias + conv(inp (N,H,W,C), weight (M,C,Kh,Kw))) */
void emit_conv_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    const ConvScratch *s = &c->plan->conv[n->index];
    ConvFwd k = {.n = n, .g = geom(n), .pad = inp, .out = out,
                 .bias = n->bias ? cg_param(c, n->bias) : NULL};
    if (s->pad >= 0) {
        k.pad = cg_ws(c, s->pad);
        emit_pad_walk(c, n, inp, k.pad, false);
    }
    k.wpack = cg_ws(c, s->wpack);
    emit_pack(c, n, cg_param(c, n->weight), k.wpack, false);
    int r = block_count(c, block_width(c, k.g.M), k.g.OW);
    Loop ln, lh, lw;
    k.bn = cg_loop(c, &ln, c->batch, "n");
    k.oh = cg_loopn(c, &lh, k.g.OH, "oh");
    if (k.g.OW / r) {
        LLVMValueRef ob = cg_loopn(c, &lw, k.g.OW / r, "ob");
        conv_fwd_channels(c, &k, cg_mul(c, ob, cg_i64(c, r)), r);
        cg_loop_end(c, &lw);
    }
    if (k.g.OW % r)
        conv_fwd_channels(c, &k, cg_i64(c, k.g.OW / r * r), (int)(k.g.OW % r));
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
    if (n->act != ACT_NONE && n->act != ACT_RELU)
        emit_act_inplace(c, n->act, out, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out))));
}

/* d weight (m0..m0+bm, taps t0..t0+rt of row kh) += sum over pixels of x * d pre.
 * A tap t is (kw, c) = (t / C, t % C): within a padded row they are
 * contiguous, so one d pre vector serves rt of them. */
static void conv_dweight_block(Cg *c, const Node *n, LLVMValueRef pad, LLVMValueRef g,
                               LLVMValueRef dw, LLVMValueRef kh, LLVMValueRef t0, int rt,
                               LLVMValueRef m0, int bm)
{
    ConvGeom G = geom(n);
    LLVMValueRef acc[16];
    for (int j = 0; j < rt; j++) {
        acc[j] = cg_vvar(c, bm, "dw");
        LLVMBuildStore(c->b, cg_vzero(c, bm), acc[j]);
    }
    Loop ln, lh, lw;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &lh, G.OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &lw, G.OW, "ow");
    LLVMValueRef gv = cg_vload(c, g, cg_add(c, cg_mul(c, cg_muladd(c, cg_muladd(c, bn, G.OH, oh), G.OW, ow),
                                                      cg_i64(c, G.M)), m0), bm);
    LLVMValueRef ih = cg_add(c, cg_mul(c, oh, cg_i64(c, n->sh)), kh);
    LLVMValueRef base = cg_add(c, cg_mul(c, cg_muladd(c, cg_muladd(c, bn, G.Hp, ih), G.Wp,
                                                      cg_mul(c, ow, cg_i64(c, n->sw))),
                                         cg_i64(c, G.C)), t0);
    for (int j = 0; j < rt; j++) {
        LLVMValueRef x = cg_load(c, pad, cg_add(c, base, cg_i64(c, j)), "x");
        LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc[j], bm), cg_fmul(c, cg_splat(c, x, bm), gv)), acc[j]);
    }
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
    /* lanes back to PyTorch's layout (m, c, kh, kw) */
    for (int j = 0; j < rt; j++) {
        LLVMValueRef v = cg_vget(c, acc[j], bm);
        LLVMValueRef t = cg_add(c, t0, cg_i64(c, j));
        LLVMValueRef kw = LLVMBuildUDiv(c->b, t, cg_i64(c, G.C), "kw");
        LLVMValueRef ch = LLVMBuildURem(c->b, t, cg_i64(c, G.C), "c");
        LLVMValueRef tap = cg_muladd(c, cg_muladd(c, ch, n->kh, kh), n->kw, kw);
        for (int l = 0; l < bm; l++) {
            LLVMValueRef m = cg_add(c, m0, cg_i64(c, l));
            LLVMValueRef at = cg_add(c, cg_mul(c, m, cg_i64(c, G.C * n->kh * n->kw)), tap);
            cg_accum(c, dw, at, LLVMBuildExtractElement(c->b, v, cg_i64(c, l), ""));
        }
    }
}

static void conv_dweight(Cg *c, const Node *n, LLVMValueRef pad, LLVMValueRef g, LLVMValueRef dw)
{
    ConvGeom G = geom(n);
    int64_t T = n->kw * G.C;
    int bm = block_width(c, G.M);
    int rt = block_count(c, bm, T);
    Loop lh, lt, lm;
    LLVMValueRef kh = cg_loopn(c, &lh, n->kh, "kh");
    for (int part = 0; part < 2; part++) {
        int64_t count = part == 0 ? T / rt : 0;
        int width = part == 0 ? rt : (int)(T % rt);
        if ((part == 0 && count == 0) || width == 0)
            continue;
        LLVMValueRef t0 = part == 0 ? cg_mul(c, cg_loopn(c, &lt, count, "tb"), cg_i64(c, rt))
                                    : cg_i64(c, T / rt * rt);
        int64_t mfull = G.M / bm;
        LLVMValueRef mb = cg_loopn(c, &lm, mfull, "mb");
        conv_dweight_block(c, n, pad, g, dw, kh, t0, width, cg_mul(c, mb, cg_i64(c, bm)), bm);
        cg_loop_end(c, &lm);
        if (G.M % bm)
            conv_dweight_block(c, n, pad, g, dw, kh, t0, width, cg_i64(c, mfull * bm), (int)(G.M % bm));
        if (part == 0)
            cg_loop_end(c, &lt);
    }
    cg_loop_end(c, &lh);
}

/* d padded input (row kh of the window, taps t0..t0+bt) += sum over m of
 * d pre (m) * tpack (kh, m, t): a window row's (kw, c) taps are contiguous. */
static void conv_dinp_block(Cg *c, const Node *n, LLVMValueRef g, LLVMValueRef tpack,
                            LLVMValueRef dpad, LLVMValueRef gpix, LLVMValueRef rowbase,
                            LLVMValueRef kh, LLVMValueRef t0, int bt)
{
    ConvGeom G = geom(n);
    int64_t T = n->kw * G.C;
    LLVMValueRef acc = cg_vvar(c, bt, "dx");
    LLVMValueRef at = cg_add(c, rowbase, t0);
    LLVMBuildStore(c->b, cg_vload(c, dpad, at, bt), acc);
    Loop lm;
    LLVMValueRef m = cg_loopn(c, &lm, G.M, "m");
    LLVMValueRef gs = cg_splat(c, cg_load(c, g, cg_muladd(c, gpix, G.M, m), "g"), bt);
    LLVMValueRef w = cg_vload(c, tpack, cg_add(c, cg_mul(c, cg_muladd(c, kh, G.M, m), cg_i64(c, T)), t0), bt);
    LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc, bt), cg_fmul(c, gs, w)), acc);
    cg_loop_end(c, &lm);
    cg_vstore(c, cg_vget(c, acc, bt), dpad, at);
}

static void conv_dinp(Cg *c, const Node *n, LLVMValueRef g, LLVMValueRef tpack, LLVMValueRef dpad)
{
    ConvGeom G = geom(n);
    int64_t T = n->kw * G.C;
    int bt = block_width(c, T);
    Loop ln, loh, low, lh, lt;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &loh, G.OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &low, G.OW, "ow");
    LLVMValueRef gpix = cg_muladd(c, cg_muladd(c, bn, G.OH, oh), G.OW, ow);
    LLVMValueRef kh = cg_loopn(c, &lh, n->kh, "kh");
    LLVMValueRef ih = cg_add(c, cg_mul(c, oh, cg_i64(c, n->sh)), kh);
    LLVMValueRef rowbase = cg_mul(c, cg_muladd(c, cg_muladd(c, bn, G.Hp, ih), G.Wp,
                                               cg_mul(c, ow, cg_i64(c, n->sw))), cg_i64(c, G.C));
    if (T / bt) {
        LLVMValueRef tb = cg_loopn(c, &lt, T / bt, "tb");
        conv_dinp_block(c, n, g, tpack, dpad, gpix, rowbase, kh, cg_mul(c, tb, cg_i64(c, bt)), bt);
        cg_loop_end(c, &lt);
    }
    if (T % bt)
        conv_dinp_block(c, n, g, tpack, dpad, gpix, rowbase, kh, cg_i64(c, T / bt * bt), (int)(T % bt));
    cg_loop_end(c, &lh);
    cg_loop_end(c, &low);
    cg_loop_end(c, &loh);
    cg_loop_end(c, &ln);
}

/* From dout (N,OH,OW,M): dbias (M), dweight (M,C,Kh,Kw) and dinp (N,H,W,C), all += */
void emit_conv_bwd(Cg *c, const Node *n, const Bwd *a)
{
    const ConvScratch *s = &c->plan->conv[n->index];
    ConvGeom G = geom(n);
    LLVMValueRef dw = cg_dparam(c, a->dparams, n->weight), db = cg_dparam(c, a->dparams, n->bias);
    if (!dw && !db && !a->dinp)
        return;
    LLVMValueRef g = a->dout;
    LLVMValueRef count = cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out)));
    if (n->act != ACT_NONE) {
        /* d pre-activation = dout * act'(out) */
        g = cg_ws(c, s->dpre);
        Loop l;
        LLVMValueRef i = cg_loop(c, &l, count, "i");
        cg_store(c, cg_act_grad(c, n->act, cg_load(c, a->out, i, "y"), cg_load(c, a->dout, i, "dy")), g, i);
        cg_loop_end(c, &l);
    }
    if (db) {
        Loop lp, lm;
        LLVMValueRef p = cg_loop(c, &lp, cg_mul(c, c->batch, cg_i64(c, G.OH * G.OW)), "p");
        LLVMValueRef m = cg_loopn(c, &lm, G.M, "m");
        cg_accum(c, db, m, cg_load(c, g, cg_muladd(c, p, G.M, m), "g"));
        cg_loop_end(c, &lm);
        cg_loop_end(c, &lp);
    }
    LLVMValueRef pad = s->pad >= 0 ? cg_ws(c, s->pad) : a->inp;
    if (dw)
        conv_dweight(c, n, pad, g, dw);
    if (a->dinp) {
        LLVMValueRef tpack = cg_ws(c, s->tpack);
        emit_pack(c, n, cg_param(c, n->weight), tpack, true);
        LLVMValueRef dpad = a->dinp;
        if (s->dpad >= 0) {
            dpad = cg_ws(c, s->dpad);
            LLVMBuildMemSet(c->b, dpad, LLVMConstInt(LLVMInt8TypeInContext(c->ctx), 0, false),
                            cg_mul(c, c->batch, cg_i64(c, G.Hp * G.Wp * G.C * 4)), 4);
        }
        conv_dinp(c, n, g, tpack, dpad);
        if (s->dpad >= 0)
            emit_pad_walk(c, n, a->dinp, dpad, true);
    }
}

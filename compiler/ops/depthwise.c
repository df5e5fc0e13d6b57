/*
 * depthwise.c: the kernels of a depthwise conv (groups = C = M: each channel
 * convolved with its own Kh x Kw filter), which conv.c calls.
 *
 * Such a conv does Kh*Kw multiply-adds per output against the dense conv's
 * Kh*Kw*C: it is bound by memory, not arithmetic. The kernels keep channels
 * in the vector lanes (activations are channels last, so a pixel's channels
 * are contiguous) and weights packed (Kh, Kw, C), so every load is a whole
 * vector: no broadcasts, no reductions across lanes.
 *
 *   forward:  a block of R output pixels x one channel block in registers,
 *             each tap's weight vector loaded once for the R pixels;
 *             d inp of a stride-1 conv is the same kernel over the padded
 *             output gradient with the flipped weights (conv.c);
 *   d weight: every tap's sum for one channel block in registers, over all
 *             the pixels of the batch;
 *   d inp:    stride > 1, each output pixel's gradient scattered into the
 *             padded input's gradient, tap by tap.
 */
#include "../cnnc.h"

typedef struct DwBlock {
    const ConvKernel *k;
    LLVMValueRef bn, oh, ow0;
    int r;
} DwBlock;

static int dil(int d)
{
    return d > 1 ? d : 1;
}

/* out (bn, oh, ow0 .. ow0+r, c0 .. c0+w) */
static void fwd_block(Cg *c, void *ctx, LLVMValueRef c0, int w)
{
    const DwBlock *b = ctx;
    const ConvKernel *k = b->k;
    int64_t C = k->Cs;
    LLVMValueRef acc[16];
    LLVMValueRef init = k->bias ? cg_vload(c, k->bias, c0, w) : cg_vzero(c, w);
    for (int i = 0; i < b->r; i++) {
        acc[i] = cg_vvar(c, w, "acc");
        LLVMBuildStore(c->b, init, acc[i]);
    }
    Loop lh, lw;
    LLVMValueRef kh = cg_loopn(c, &lh, k->kh, "kh");
    LLVMValueRef kw = cg_loopn(c, &lw, k->kw, "kw");
    LLVMValueRef wv = cg_vload(c, k->wpack, cg_muladd(c, cg_muladd(c, kh, k->kw, kw), C, c0), w);
    LLVMValueRef ih = cg_add(c, cg_mul(c, b->oh, cg_i64(c, k->sh)), cg_mul(c, kh, cg_i64(c, dil(k->dh))));
    LLVMValueRef iw = cg_add(c, cg_mul(c, b->ow0, cg_i64(c, k->sw)), cg_mul(c, kw, cg_i64(c, dil(k->dw))));
    LLVMValueRef base = cg_muladd(c, cg_muladd(c, cg_muladd(c, b->bn, k->Hp, ih), k->Wp, iw), C, c0);
    for (int i = 0; i < b->r; i++) {
        LLVMValueRef x = cg_vload(c, k->in, cg_add(c, base, cg_i64(c, (int64_t)i * k->sw * C)), w);
        LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc[i], w), cg_fmul(c, x, wv)), acc[i]);
    }
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, b->bn, k->OH, b->oh), k->OW, b->ow0);
    for (int i = 0; i < b->r; i++) {
        LLVMValueRef v = cg_vget(c, acc[i], w);
        if (k->act == ACT_RELU)
            v = cg_vrelu(c, v);
        cg_vstore(c, v, k->out, cg_muladd(c, cg_add(c, pix, cg_i64(c, i)), C, c0), w);
    }
}

static void fwd_pixels(Cg *c, DwBlock *b, LLVMValueRef ow0, int r)
{
    b->ow0 = ow0;
    b->r = r;
    cg_for_blocks(c, b->k->Cs, conv_block_width(c, b->k->Cs), fwd_block, b);
}

void emit_depthwise(Cg *c, const ConvKernel *k)
{
    int r = conv_block_count(c, conv_block_width(c, k->Cs), k->OW);
    DwBlock b = {k, NULL, NULL, NULL, 0};
    Loop ln, lh, lw;
    b.bn = cg_loop(c, &ln, c->batch, "n");
    b.oh = cg_loopn(c, &lh, k->OH, "oh");
    if (k->OW / r) {
        LLVMValueRef ob = cg_loopn(c, &lw, k->OW / r, "ob");
        fwd_pixels(c, &b, cg_mul(c, ob, cg_i64(c, r)), r);
        cg_loop_end(c, &lw);
    }
    if (k->OW % r)
        fwd_pixels(c, &b, cg_i64(c, k->OW / r * r), (int)(k->OW % r));
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

/* ---- d weight ---- */

typedef struct DwGrad {
    const Node *n;
    LLVMValueRef pad, g, dwpack;
    int64_t t0;
    int nt;                         /* taps t0 .. t0+nt of this pass */
} DwGrad;

/* dwpack (tap, c0 .. c0+w) += sum over the batch's output pixels of
 * padded input at the tap x d pre */
static void dweight_block(Cg *c, void *ctx, LLVMValueRef c0, int w)
{
    const DwGrad *d = ctx;
    const Node *n = d->n;
    int64_t C = n->in.d[2], Hp = n->in.d[0] + 2 * n->ph, Wp = n->in.d[1] + 2 * n->pw;
    int64_t OH = n->out.d[0], OW = n->out.d[1];
    LLVMValueRef acc[32];
    for (int j = 0; j < d->nt; j++) {
        acc[j] = cg_vvar(c, w, "dw");
        LLVMBuildStore(c->b, cg_vzero(c, w), acc[j]);
    }
    Loop ln, lh, lw;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &lh, OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &lw, OW, "ow");
    LLVMValueRef gv = cg_vload(c, d->g, cg_muladd(c, cg_muladd(c, cg_muladd(c, bn, OH, oh), OW, ow), C, c0), w);
    LLVMValueRef base = cg_muladd(c, cg_muladd(c, cg_muladd(c, bn, Hp, cg_mul(c, oh, cg_i64(c, n->sh))), Wp,
                                                 cg_mul(c, ow, cg_i64(c, n->sw))), C, c0);
    for (int j = 0; j < d->nt; j++) {
        int64_t t = d->t0 + j, kh = t / n->kw, kw = t % n->kw;
        int64_t off = (kh * dil(n->dh) * Wp + kw * dil(n->dw)) * C;
        LLVMValueRef x = cg_vload(c, d->pad, cg_add(c, base, cg_i64(c, off)), w);
        LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc[j], w), cg_fmul(c, x, gv)), acc[j]);
    }
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
    for (int j = 0; j < d->nt; j++)
        cg_vstore(c, cg_vget(c, acc[j], w), d->dwpack, cg_muladd(c, cg_i64(c, d->t0 + j), C, c0), w);
}

/* dwpack (Kh, Kw, C) = d weight; the taps in passes of what the registers hold */
void emit_depthwise_dweight(Cg *c, const Node *n, LLVMValueRef pad, LLVMValueRef g, LLVMValueRef dwpack)
{
    int64_t C = n->in.d[2], taps = (int64_t)n->kh * n->kw;
    int w = c->vw < C ? c->vw : (int)C;
    int most = c->nregs - 3 > 32 ? 32 : c->nregs - 3;
    DwGrad d = {n, pad, g, dwpack, 0, 0};
    for (d.t0 = 0; d.t0 < taps; d.t0 += d.nt) {
        d.nt = taps - d.t0 < most ? (int)(taps - d.t0) : most;
        cg_for_blocks(c, C, w, dweight_block, &d);
    }
}

/* ---- d inp, stride > 1 ---- */

typedef struct DwScatter {
    const Node *n;
    LLVMValueRef g, wpack, dpad, pix, base;
} DwScatter;

static void scatter_block(Cg *c, void *ctx, LLVMValueRef c0, int w)
{
    const DwScatter *d = ctx;
    const Node *n = d->n;
    int64_t C = n->in.d[2], Wp = n->in.d[1] + 2 * n->pw;
    LLVMValueRef gv = cg_vload(c, d->g, cg_muladd(c, d->pix, C, c0), w);
    for (int kh = 0; kh < n->kh; kh++)
        for (int kw = 0; kw < n->kw; kw++) {
            LLVMValueRef at = cg_add(c, cg_add(c, d->base, c0),
                                     cg_i64(c, ((int64_t)kh * dil(n->dh) * Wp + (int64_t)kw * dil(n->dw)) * C));
            LLVMValueRef wv = cg_vload(c, d->wpack, cg_add(c, cg_i64(c, ((int64_t)kh * n->kw + kw) * C), c0), w);
            cg_vstore(c, cg_fadd(c, cg_vload(c, d->dpad, at, w), cg_fmul(c, gv, wv)), d->dpad, at, w);
        }
}

/* dpad (N, Hp, Wp, C) += each output pixel's d pre times the weights (Kh, Kw, C) */
void emit_depthwise_scatter(Cg *c, const Node *n, LLVMValueRef g, LLVMValueRef wpack, LLVMValueRef dpad)
{
    int64_t C = n->in.d[2], Hp = n->in.d[0] + 2 * n->ph, Wp = n->in.d[1] + 2 * n->pw;
    int64_t OH = n->out.d[0], OW = n->out.d[1];
    DwScatter d = {n, g, wpack, dpad, NULL, NULL};
    Loop ln, lh, lw;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &lh, OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &lw, OW, "ow");
    d.pix = cg_muladd(c, cg_muladd(c, bn, OH, oh), OW, ow);
    d.base = cg_mul(c, cg_muladd(c, cg_muladd(c, bn, Hp, cg_mul(c, oh, cg_i64(c, n->sh))), Wp,
                                 cg_mul(c, ow, cg_i64(c, n->sw))), cg_i64(c, C));
    cg_for_blocks(c, C, c->vw < C ? c->vw : (int)C, scatter_block, &d);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

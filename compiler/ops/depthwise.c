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
 *   forward:  a block of R output pixels x one channel block (a vector) in
 *             registers, the taps' weight vectors held in registers for the
 *             row when they fit; the zero border left out of the sums;
 *             d inp of a stride-1 conv is the same kernel over the padded
 *             output gradient with the flipped weights (conv.c);
 *   d weight: every tap's sum for one channel block in registers, over all
 *             the pixels of the batch;
 *   d inp:    stride > 1, each output pixel's gradient scattered into the
 *             padded input's gradient, tap by tap.
 */
#include "../cnnc.h"

/* the most taps whose weights a row holds in registers, and pixels a block */
enum { DW_MOST_TAPS = 25, DW_MOST_PIXELS = 14 };

static int dil(int d)
{
    return d > 1 ? d : 1;
}

/* ---- forward ----
 *
 * In inference the zero border is the kernel's own (ConvKernel's ph, pw):
 * a tap that falls on it is left out of the output's sum, instead of read
 * from a padded copy of the input. The outputs whose window crosses the
 * border are a few rows and columns (pad 1: one on each side); each is
 * emitted with its own constant taps, and the interior, in blocks of r
 * pixels, takes them all. A padded input (training, which keeps it for d
 * weight, and d inp's padded output gradient) is all interior. */

/* The outputs o of [lo, hi) along one axis whose taps all land inside the
 * input's 0 .. I-1 (o*s - p + t*d for t < K) */
typedef struct Span {
    int64_t lo, hi;
} Span;

static Span interior(int64_t O, int s, int64_t p, int K, int d, int64_t I)
{
    int64_t lo = (p + s - 1) / s, last = I - 1 + p - (int64_t)(K - 1) * d;
    int64_t hi = last < 0 ? 0 : last / s + 1;
    lo = lo < O ? lo : O;
    hi = hi < O ? hi : O;
    return (Span){lo, hi > lo ? hi : lo};
}

/* output o's taps inside the input: [*t0, *t1) (empty when none is) */
static void taps_inside(int64_t o, int s, int64_t p, int K, int d, int64_t I, int *t0, int *t1)
{
    *t0 = *t1 = 0;
    for (int t = K - 1; t >= 0; t--) {
        int64_t i = o * s - p + (int64_t)t * d;
        if (i >= 0 && i < I) {
            *t0 = t;
            *t1 = *t1 ? *t1 : t + 1;
        }
    }
}

/* the border outputs the kernel emits one by one, at most, along each axis */
enum { DW_MOST_BORDER = 4 };

bool depthwise_pads_inline(const Node *n)
{
    int64_t H = n->in.d[0], W = n->in.d[1], OH = n->out.d[0], OW = n->out.d[1];
    Span rows = interior(OH, n->sh, n->ph, n->kh, dil(n->dh), H);
    Span cols = interior(OW, n->sw, n->pw, n->kw, dil(n->dw), W);
    return n->padmode != PAD_REPLICATE && OH - (rows.hi - rows.lo) <= DW_MOST_BORDER &&
           OW - (cols.hi - cols.lo) <= DW_MOST_BORDER;
}

typedef struct DwRow {
    const ConvKernel *k;
    LLVMValueRef bn, oh;
    int kh0, kh1;                   /* this row's taps */
    LLVMValueRef c0;
    int w;
    LLVMValueRef wv[DW_MOST_TAPS];  /* the taps' weights for the block at c0, or NULL: loaded at each use */
} DwRow;

/* out (bn, oh, ow0 .. ow0+r, c0 .. c0+w): taps kh0..kh1 x kw0..kw1 */
static void fwd_pixels(Cg *c, const DwRow *row, LLVMValueRef ow0, int r, int kw0, int kw1)
{
    const ConvKernel *k = row->k;
    int64_t C = k->Cs, W = k->Wp;
    int w = row->w;
    LLVMValueRef acc[DW_MOST_PIXELS];
    LLVMValueRef init = k->bias ? cg_vload(c, k->bias, row->c0, w) : cg_vzero(c, w);
    for (int i = 0; i < r; i++)
        acc[i] = init;
    /* input (bn, oh*sh - ph, ow0*sw - pw, c0), then each tap's and pixel's offset from it */
    LLVMValueRef ih = cg_add(c, cg_mul(c, row->oh, cg_i64(c, k->sh)), cg_i64(c, -k->ph));
    LLVMValueRef iw = cg_add(c, cg_mul(c, ow0, cg_i64(c, k->sw)), cg_i64(c, -k->pw));
    LLVMValueRef base = cg_muladd(c, cg_muladd(c, cg_muladd(c, row->bn, k->Hp, ih), W, iw), C, row->c0);
    for (int kh = row->kh0; kh < row->kh1; kh++)
        for (int kw = kw0; kw < kw1; kw++) {
            int tap = kh * k->kw + kw;
            LLVMValueRef wv = row->wv[tap] ? row->wv[tap]
                                           : cg_vload(c, k->wpack, cg_add(c, cg_i64(c, tap * C), row->c0), w);
            for (int i = 0; i < r; i++) {
                int64_t off = ((int64_t)kh * dil(k->dh) * W + (int64_t)i * k->sw + (int64_t)kw * dil(k->dw)) * C;
                LLVMValueRef x = cg_vload(c, k->in, cg_add(c, base, cg_i64(c, off)), w);
                acc[i] = cg_fadd(c, acc[i], cg_fmul(c, x, wv));
            }
        }
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, row->bn, k->OH, row->oh), k->OW, ow0);
    for (int i = 0; i < r; i++)
        conv_store(c, k, acc[i], cg_muladd(c, cg_add(c, pix, cg_i64(c, i)), C, row->c0), w);
}

/* The pixels a block holds, and whether the taps' weights stay in registers
 * for the row: with them, each tap costs a load of the input and an FMA a
 * pixel (the loads of neighbouring taps shared); without, a weight load more
 * per tap, shared by the block. */
static int row_pixels(Cg *c, const ConvKernel *k, int w, bool *held)
{
    int regs = (w + c->vw - 1) / c->vw, taps = k->kh * k->kw;
    int most = (c->nregs - 2 - taps * regs) / regs;
    *held = taps <= DW_MOST_TAPS && most >= 4;
    if (!*held)
        most = (c->nregs - 2 - regs) / regs;
    most = most > DW_MOST_PIXELS ? DW_MOST_PIXELS : most < 1 ? 1 : most;
    return most;
}

/* one row of outputs for the channel block at c0 */
static void fwd_row_block(Cg *c, void *ctx, LLVMValueRef c0, int w)
{
    DwRow row = *(const DwRow *)ctx;
    const ConvKernel *k = row.k;
    row.c0 = c0;
    row.w = w;
    bool held;
    int r = row_pixels(c, k, w, &held);
    for (int t = 0; t < DW_MOST_TAPS; t++)
        row.wv[t] = NULL;
    for (int kh = row.kh0; held && kh < row.kh1; kh++)
        for (int kw = 0; kw < k->kw; kw++)
            row.wv[kh * k->kw + kw] = cg_vload(c, k->wpack, cg_add(c, cg_i64(c, (int64_t)(kh * k->kw + kw) * k->Cs), c0), w);
    Span cols = interior(k->OW, k->sw, k->pw, k->kw, dil(k->dw), k->Wp);
    int t0, t1;
    for (int64_t ow = 0; ow < k->OW; ow++) {
        if (ow == cols.lo && cols.hi > cols.lo) {
            /* the interior: blocks of r, then the rest */
            int64_t n = cols.hi - cols.lo;
            if (n / r) {
                Loop l;
                LLVMValueRef b = cg_loopn(c, &l, n / r, "ob");
                fwd_pixels(c, &row, cg_add(c, cg_i64(c, cols.lo), cg_mul(c, b, cg_i64(c, r))), r, 0, k->kw);
                cg_loop_end(c, &l);
            }
            if (n % r)
                fwd_pixels(c, &row, cg_i64(c, cols.lo + n / r * r), (int)(n % r), 0, k->kw);
            ow = cols.hi - 1;
            continue;
        }
        taps_inside(ow, k->sw, k->pw, k->kw, dil(k->dw), k->Wp, &t0, &t1);
        fwd_pixels(c, &row, cg_i64(c, ow), 1, t0, t1);
    }
}

static void fwd_row(Cg *c, DwRow *row)
{
    cg_for_blocks(c, row->k->Cs, row->k->Cs < c->vw ? (int)row->k->Cs : c->vw, fwd_row_block, row);
}

void emit_depthwise(Cg *c, const ConvKernel *k)
{
    DwRow row = {.k = k};
    Span rows = interior(k->OH, k->sh, k->ph, k->kh, dil(k->dh), k->Hp);
    Loop ln, lh;
    row.bn = cg_loop(c, &ln, c->batch, "n");
    for (int64_t oh = 0; oh < k->OH; oh++) {
        if (oh == rows.lo && rows.hi > rows.lo) {
            row.oh = cg_add(c, cg_i64(c, rows.lo), cg_loopn(c, &lh, rows.hi - rows.lo, "oh"));
            row.kh0 = 0;
            row.kh1 = k->kh;
            fwd_row(c, &row);
            cg_loop_end(c, &lh);
            oh = rows.hi - 1;
            continue;
        }
        row.oh = cg_i64(c, oh);
        taps_inside(oh, k->sh, k->ph, k->kh, dil(k->dh), k->Hp, &row.kh0, &row.kh1);
        fwd_row(c, &row);
    }
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

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
    const Arg *dil = node_arg(n, "dilation"), *groups = node_arg(n, "groups");
    int64_t m = node_arg(n, "kernels")->v.i;
    int kh = (int)size->v.dims[0], kw = (int)size->v.dims[1];
    int ph = (int)pad->v.dims[0], pw = (int)pad->v.dims[1];
    n->dh = (int)dil->v.dims[0];
    n->dw = (int)dil->v.dims[1];
    n->groups = groups->v.i;
    if (pad->same) {
        /* a dilated window spans d (k - 1) + 1: 'same' pads half of d (k - 1) */
        int64_t span_h = (int64_t)n->dh * (kh - 1), span_w = (int64_t)n->dw * (kw - 1);
        if (span_h % 2 || span_w % 2) {
            if (n->dh * n->dw > 1) {
                diag_error(d, pad->loc, "pad=same needs an even dilated span d*(k - 1), but '%s' has "
                           "size %dx%d and dilation %dx%d", n->name, kh, kw, n->dh, n->dw);
                diag_note(d, dil->loc, "'same' pads d*(k - 1) / 2 on each side; give pad=P instead");
            } else {
                diag_error(d, pad->loc, "pad=same needs an odd kernel size, but '%s' has size %dx%d",
                           n->name, kh, kw);
                diag_note(d, size->loc, "'same' pads (k - 1) / 2 on each side, which keeps the "
                          "size only when k is odd; give pad=P instead");
            }
            return;
        }
        ph = (int)(span_h / 2);
        pw = (int)(span_w / 2);
    }
    n->padmode = (int)node_arg(n, "padmode")->v.i;
    shape_layer_act(g, n);
    int64_t c = n->in.d[2];
    if (n->in.rank == 3 && (c % n->groups || m % n->groups)) {
        diag_error(d, groups->loc, "groups=%lld of '%s' must divide its input channels (%lld) and its "
                   "kernels (%lld)", (long long)n->groups, n->name, (long long)c, (long long)m);
        diag_note_plain(d, "each of the %lld groups convolves C/groups input channels into M/groups outputs",
                        (long long)n->groups);
        return;
    }
    if (!shape_window(g, n, kh, kw, (int)stride->v.dims[0], (int)stride->v.dims[1], ph, pw))
        return;
    n->out.d[2] = m;
    c /= n->groups;             /* the channels each kernel sees */

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
    /* per output: a multiply-add per (c, kh, kw) of its group, then the bias and the activation */
    int64_t per = c;
    shape_mul(g, n, &per, (int64_t)kh * kw);
    shape_count_macs(g, n, per, (n->bias != NULL) + (n->act != ACT_NONE));
}

/* ---- code generation ----
 *
 * The input is first padded into scratch (zeros or replicated edges), so the
 * kernels need no bounds checks, and the weights are packed so that output
 * channels are contiguous, each row padded to whole vectors: wpack
 * (Kh,Kw,C,Mp). The forward kernel (ConvKernel, cnnc.h) keeps a block of R
 * output pixels x BM output channels in vector registers, sized from the
 * target's vector width and register count, and streams weights while
 * broadcasting inputs; 3x3 and 5x5 stride-1 kernels with enough channels go
 * through Winograd instead (winograd.c), and a conv of one input channel
 * runs its vectors along the output row (conv_rows.c). Backward: d pre-activation and d
 * bias in one pass; d weight reduces over all pixels with a block of window
 * rows x taps in registers; d inp is either the same forward kernel over the
 * padded output gradient with the flipped weights (stride 1), or a scatter
 * into the padded input's gradient, which is folded back (to the edge pixel
 * with replicate). */

typedef struct ConvGeom {
    int64_t H, W, C, Hp, Wp, OH, OW, M;
    int64_t G, Cg, Mg;              /* groups, and the channels of each */
    int dh, dw;                     /* dilation */
} ConvGeom;

static int64_t groups_of(const Node *n)
{
    return n->groups > 1 ? n->groups : 1;
}

static ConvGeom geom(const Node *n)
{
    int64_t G = groups_of(n);
    return (ConvGeom){n->in.d[0], n->in.d[1], n->in.d[2], n->in.d[0] + 2 * n->ph,
                      n->in.d[1] + 2 * n->pw, n->out.d[0], n->out.d[1], n->out.d[2],
                      G, n->in.d[2] / G, n->out.d[2] / G, n->dh > 1 ? n->dh : 1, n->dw > 1 ? n->dw : 1};
}

/* no groups and no dilation: the dense kernels of this file as they are */
static bool plain(const Node *n)
{
    return groups_of(n) == 1 && n->dh <= 1 && n->dw <= 1;
}

bool conv_depthwise(const Node *n)
{
    return groups_of(n) > 1 && n->groups == n->in.d[2] && n->groups == n->out.d[2];
}

bool conv_kernel_plain(const ConvKernel *k)
{
    return k->G <= 1 && k->dh <= 1 && k->dw <= 1;
}

/* How many floats one block of channels holds: two vectors, or all of them. */
int conv_block_width(Cg *c, int64_t channels)
{
    return channels < 2 * c->vw ? (int)channels : 2 * c->vw;
}

/* How many such blocks of pixels a kernel keeps in registers, to cover
 * limit pixels in runs of r and a last run of limit % r: each run's cycles
 * per step of the sum are estimated as the most of its FMAs over the two FMA
 * pipes, its loads (the block's vectors and a broadcast a pixel) over two
 * load ports, and the FMA latency (FMA_LATENCY cycles) of its accumulator
 * chains, and the count with the fewest cycles in all is taken (the largest
 * of equals). A run of one pixel of one block would be a dependent chain at
 * a quarter of the peak: 7 pixels go as 4 + 3, not 6 + 1. */
enum { FMA_LATENCY = 4 };

static int64_t run_cycles(int regs, int64_t r)
{
    int64_t fma = (regs * r + 1) / 2, loads = (regs + r + 1) / 2;
    int64_t most = fma > loads ? fma : loads;
    return r ? (most > FMA_LATENCY ? most : FMA_LATENCY) : 0;
}

int conv_block_count(Cg *c, int width, int64_t limit)
{
    int regs = (width + c->vw - 1) / c->vw;
    int most = (c->nregs - regs - 2) / regs;
    if (most > 14)
        most = 14;
    if (most < 1)
        most = 1;
    if (most >= limit)
        return (int)limit;
    int best = most;
    int64_t best_cycles = INT64_MAX;
    for (int r = most; r >= 1; r--) {
        int64_t cycles = limit / r * run_cycles(regs, r) + run_cycles(regs, limit % r);
        if (cycles < best_cycles)
            best = r, best_cycles = cycles;
    }
    return best;
}

LLVMValueRef conv_act(Cg *c, const ConvKernel *k, LLVMValueRef v)
{
    return cg_act(c, k->act, k->act_param, v);
}

void conv_store(Cg *c, const ConvKernel *k, LLVMValueRef v, LLVMValueRef at, int n)
{
    if (k->res)
        v = cg_fadd(c, v, cg_vload_lanes(c, k->res, at, n, (int)LLVMGetVectorSize(LLVMTypeOf(v))));
    cg_vstore_lanes(c, conv_act(c, k, v), k->out, at, n);
}

/* out = act(out + res) after a kernel that does not add res itself */
static void emit_residual_pass(Cg *c, const ConvKernel *k)
{
    Loop l;
    LLVMValueRef i = cg_loop(c, &l, cg_mul(c, c->batch, cg_i64(c, k->OH * k->OW * k->Ms)), "i");
    LLVMValueRef v = cg_fadd(c, cg_load(c, k->out, i, "y"), cg_load(c, k->res, i, "r"));
    cg_store(c, conv_act(c, k, v), k->out, i);
    cg_loop_end(c, &l);
}

/* An image (N,H,W,C) with a border of ph rows and pw columns: zeros, or with
 * replicate the nearest edge pixel. */
typedef struct PadGeom {
    int64_t H, W, C, ph, pw;
    bool replicate;
} PadGeom;

static PadGeom input_pad(const Node *n)
{
    return (PadGeom){n->in.d[0], n->in.d[1], n->in.d[2], n->ph, n->pw, n->padmode == PAD_REPLICATE};
}

/* Forward: padded (N,H+2ph,W+2pw,C) = image with its border. Backward:
 * image += padded, each padded cell to the pixel it was copied from (with
 * zeros the border's share is 0). One walk over the padded cells serves both. */
/* Forward with zeros: a row at a time, the border zeroed and the image's row
 * copied in (memset and memcpy of constant sizes, which LLVM expands to
 * vector moves). */
static void emit_zero_pad(Cg *c, PadGeom p, LLVMValueRef image, LLVMValueRef padded)
{
    int64_t Hp = p.H + 2 * p.ph, Wp = p.W + 2 * p.pw, row = Wp * p.C * 4;
    LLVMValueRef zero = LLVMConstInt(LLVMInt8TypeInContext(c->ctx), 0, false);
    Loop ln, lh;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef hp = cg_loopn(c, &lh, Hp, "hp");
    LLVMValueRef ih = cg_add(c, hp, cg_i64(c, -p.ph));
    LLVMValueRef dst = cg_at(c, padded, cg_mul(c, cg_muladd(c, bn, Hp, hp), cg_i64(c, Wp * p.C)));
    LLVMBasicBlockRef inside = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "row");
    LLVMBasicBlockRef border = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "border");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "");
    LLVMBuildCondBr(c->b, cg_inside(c, ih, p.H), inside, border);
    LLVMPositionBuilderAtEnd(c->b, border);
    LLVMBuildMemSet(c->b, dst, zero, cg_i64(c, row), 4);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, inside);
    if (p.pw) {
        LLVMBuildMemSet(c->b, dst, zero, cg_i64(c, p.pw * p.C * 4), 4);
        LLVMBuildMemSet(c->b, cg_at(c, dst, cg_i64(c, (p.pw + p.W) * p.C)), zero, cg_i64(c, p.pw * p.C * 4), 4);
    }
    LLVMValueRef src = cg_at(c, image, cg_mul(c, cg_muladd(c, bn, p.H, ih), cg_i64(c, p.W * p.C)));
    LLVMBuildMemCpy(c->b, cg_at(c, dst, cg_i64(c, p.pw * p.C)), 4, src, 4, cg_i64(c, p.W * p.C * 4));
    LLVMBuildBr(c->b, join);
    LLVMMoveBasicBlockAfter(border, inside);
    LLVMMoveBasicBlockAfter(join, border);
    LLVMPositionBuilderAtEnd(c->b, join);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

static void emit_pad_walk(Cg *c, PadGeom p, LLVMValueRef image, LLVMValueRef padded, bool backward)
{
    if (!backward && !p.replicate) {
        emit_zero_pad(c, p, image, padded);
        return;
    }
    int64_t Hp = p.H + 2 * p.ph, Wp = p.W + 2 * p.pw;
    Loop ln, lh, lw, lc;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef hp = cg_loopn(c, &lh, Hp, "hp");
    LLVMValueRef wp = cg_loopn(c, &lw, Wp, "wp");
    LLVMValueRef ih = cg_add(c, hp, cg_i64(c, -p.ph)), iw = cg_add(c, wp, cg_i64(c, -p.pw));
    LLVMValueRef inside = LLVMBuildAnd(c->b, cg_inside(c, ih, p.H), cg_inside(c, iw, p.W), "");
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, bn, p.H, cg_clamp(c, ih, p.H)), p.W, cg_clamp(c, iw, p.W));
    LLVMValueRef ppix = cg_muladd(c, cg_muladd(c, bn, Hp, hp), Wp, wp);
    LLVMValueRef ch = cg_loopn(c, &lc, p.C, "c");
    LLVMValueRef at = cg_muladd(c, pix, p.C, ch), pat = cg_muladd(c, ppix, p.C, ch);
    LLVMValueRef v = backward ? cg_load(c, padded, pat, "d") : cg_load(c, image, at, "x");
    if (!p.replicate)
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

/* The floats a packed row of n channels takes: each block of them (see
 * block_width) in whole vector lanes, so that the kernels load weights
 * without masks (6 -> 8, 24 -> 32 with AVX-512). At most n rounded up to 16. */
static int64_t packed(Cg *c, int64_t n)
{
    int bw = conv_block_width(c, n);
    return n / bw * cg_lanes(c, bw) + (n % bw ? cg_lanes(c, (int)(n % bw)) : 0);
}

int64_t conv_pack_bound(const Node *n)
{
    ConvGeom g = geom(n);
    int64_t taps = (int64_t)n->kh * n->kw;
    if (conv_depthwise(n))
        return taps * g.C;
    int64_t r16[] = {g.G * taps * g.Cg * ((g.Mg + 15) / 16 * 16), g.G * taps * g.Mg * ((g.Cg + 15) / 16 * 16),
                     n->kh * g.M * ((n->kw * g.C + 15) / 16 * 16)};
    int64_t most = r16[0] > r16[1] ? r16[0] : r16[1];
    return most > r16[2] ? most : r16[2];
}

/* The weight (M,C/G,Kh,Kw) packed for a kernel, rows padded to packed()
 * floats with zeros: for the forward conv (Kh,Kw,C,M) per group, each group's
 * block after the other; for the transposed conv of d inp (Kh,Kw,M,C) per
 * group with the taps flipped; for d inp's scatter form (Kh,M,Kw*C), dense
 * convs only. */
enum { PACK_FORWARD, PACK_TRANSPOSED, PACK_SCATTER };

/* A dense conv's pack for the direct kernel may be blocked: each block of
 * bw output channels (conv_block_width) holds all its rows in a piece of its
 * own, rows of its whole lanes, so that a channel block's weights are
 * contiguous. Rows of the packed width would put them a power of two apart,
 * on a few of the caches' sets (ResNet-18's 512 channels: 2 KB apart, 2 of
 * L1's 64 sets), and the kernel would stream them from memory.
 * The place of (row, col) of a rows x width pack blocked by bw: */
LLVMValueRef conv_blocked_at(Cg *c, LLVMValueRef row, int64_t rows, LLVMValueRef col, int64_t width, int bw)
{
    LLVMValueRef blk = LLVMBuildUDiv(c->b, col, cg_i64(c, bw), "blk");
    LLVMValueRef within = LLVMBuildSub(c->b, col, cg_mul(c, blk, cg_i64(c, bw)), "");
    LLVMValueRef last = LLVMBuildICmp(c->b, LLVMIntUGE, blk, cg_i64(c, width / bw), "");
    LLVMValueRef rw = LLVMBuildSelect(c->b, last, cg_i64(c, cg_lanes(c, width % bw ? (int)(width % bw) : bw)),
                                      cg_i64(c, cg_lanes(c, bw)), "");
    return cg_add(c, cg_mul(c, blk, cg_i64(c, bw * rows)), cg_add(c, cg_mul(c, row, rw), within));
}

/* The place *at in pack (how's layout, rows of stride floats, or blocked by
 * bw > 0) of weight (m, ch, kh, kw), and that weight times scale[m] when
 * scale is given; with unpack, weight (m, ch, kh, kw) += pack's (and NULL) */
static LLVMValueRef pack_one(Cg *c, const Node *n, LLVMValueRef w, LLVMValueRef pack, int how, int64_t stride,
                             bool unpack, LLVMValueRef scale, int bw, LLVMValueRef m, LLVMValueRef ch,
                             LLVMValueRef kh, LLVMValueRef kw, LLVMValueRef *at)
{
    ConvGeom g = geom(n);
    LLVMValueRef src = cg_muladd(c, cg_muladd(c, cg_muladd(c, m, g.Cg, ch), n->kh, kh), n->kw, kw);
    /* kernel m is number ml of group gi */
    LLVMValueRef gi = g.G > 1 ? LLVMBuildUDiv(c->b, m, cg_i64(c, g.Mg), "g") : cg_i64(c, 0);
    LLVMValueRef ml = g.G > 1 ? LLVMBuildURem(c->b, m, cg_i64(c, g.Mg), "ml") : m;
    int64_t taps = (int64_t)n->kh * n->kw;
    LLVMValueRef dst;
    if (conv_depthwise(n)) {
        /* depthwise.c's (Kh, Kw, C), flipped for the transposed conv */
        LLVMValueRef t = how == PACK_TRANSPOSED ? cg_i64(c, taps - 1) : cg_i64(c, 0);
        LLVMValueRef tap = cg_muladd(c, kh, n->kw, kw);
        dst = cg_muladd(c, how == PACK_TRANSPOSED ? LLVMBuildSub(c->b, t, tap, "") : tap, g.C, m);
    } else if (bw && how == PACK_FORWARD) {
        dst = conv_blocked_at(c, cg_muladd(c, cg_muladd(c, kh, n->kw, kw), g.Cg, ch), taps * g.Cg, ml, g.Mg, bw);
    } else if (bw) {
        LLVMValueRef fh = LLVMBuildSub(c->b, cg_i64(c, n->kh - 1), kh, "");
        LLVMValueRef fw = LLVMBuildSub(c->b, cg_i64(c, n->kw - 1), kw, "");
        dst = conv_blocked_at(c, cg_muladd(c, cg_muladd(c, fh, n->kw, fw), g.Mg, ml), taps * g.Mg, ch, g.Cg, bw);
    } else if (how == PACK_FORWARD) {
        dst = cg_muladd(c, cg_muladd(c, cg_muladd(c, cg_muladd(c, gi, n->kh, kh), n->kw, kw), g.Cg, ch), stride, ml);
    } else if (how == PACK_TRANSPOSED) {
        LLVMValueRef fh = LLVMBuildSub(c->b, cg_i64(c, n->kh - 1), kh, "");
        LLVMValueRef fw = LLVMBuildSub(c->b, cg_i64(c, n->kw - 1), kw, "");
        dst = cg_add(c, cg_mul(c, gi, cg_i64(c, taps * g.Mg * stride)),
                     cg_muladd(c, cg_muladd(c, cg_muladd(c, fh, n->kw, fw), g.Mg, ml), stride, ch));
    } else {
        dst = cg_muladd(c, cg_muladd(c, kh, g.M, m), stride, cg_muladd(c, kw, g.C, ch));
    }
    *at = dst;
    if (unpack) {
        cg_accum(c, w, src, cg_load(c, pack, dst, "p"));
        return NULL;
    }
    LLVMValueRef v = cg_load(c, w, src, "w");
    return scale ? cg_fmul(c, v, cg_load(c, scale, m, "scale")) : v;
}

/* pack = weight, or weight += pack with unpack: one walk over the weight's
 * (m, c, kh, kw). The loops go in the order of the written side, so that its
 * stores run along its rows: the pack's outputs innermost (forward: m;
 * transposed: c; scatter: kw, c), the weight's own order when unpacking. The
 * innermost index goes in tiles of PACK_TILE, the tile loop outermost: the
 * loads of a tile, a weight's rows apart (often a power of two, on a few of
 * the cache's sets), stay in L1 for the other loops. */
enum { PACK_TILE = 8 };

static void pack_walk(Cg *c, const Node *n, LLVMValueRef w, LLVMValueRef pack, int how, int64_t stride,
                      bool unpack, LLVMValueRef scale, int bw)
{
    ConvGeom g = geom(n);
    enum { M, C, KH, KW };
    static const int orders[][4] = {[PACK_FORWARD] = {C, KH, KW, M}, [PACK_TRANSPOSED] = {M, KH, KW, C},
                                    [PACK_SCATTER] = {KH, M, KW, C}};
    static const int weight_order[] = {M, C, KH, KW};
    const int *order = unpack ? weight_order : conv_depthwise(n) ? orders[PACK_FORWARD] : orders[how];
    const int64_t counts[] = {g.M, g.Cg, n->kh, n->kw};
    static const char *const names[] = {"m", "c", "kh", "kw"};
    int inner = order[3];
    int64_t tile = unpack || counts[inner] < 2 * PACK_TILE ? counts[inner] : PACK_TILE;
    if (inner == M && g.G > 1 && !conv_depthwise(n))
        for (tile = PACK_TILE; g.Mg % tile; tile--)
            ;                   /* a tile of m within a group: the pack's rows are each group's */
    int64_t tiles = counts[inner] / tile, rest = counts[inner] % tile;
    /* the full tiles, then the rest as one tile */
    for (int part = 0; part < 2; part++) {
        int64_t width = part ? rest : tile;
        if (!width)
            continue;
        Loop lt, loops[4];
        LLVMValueRef t0 = part ? cg_i64(c, tiles * tile)
                               : cg_mul(c, cg_loopn(c, &lt, tiles, "tile"), cg_i64(c, tile));
        LLVMValueRef at[4], dst, dst0 = NULL;
        for (int i = 0; i < 3; i++)
            at[order[i]] = cg_loopn(c, &loops[i], counts[order[i]], names[order[i]]);
        if (unpack) {
            at[inner] = cg_add(c, t0, cg_loopn(c, &loops[3], width, names[inner]));
            pack_one(c, n, w, pack, how, stride, true, NULL, bw, at[M], at[C], at[KH], at[KW], &dst);
            cg_loop_end(c, &loops[3]);
        } else {
            /* a tile's weights are consecutive in the pack: one vector store */
            LLVMValueRef v = cg_vzero(c, (int)width);
            for (int j = 0; j < width; j++) {
                at[inner] = cg_add(c, t0, cg_i64(c, j));
                LLVMValueRef x = pack_one(c, n, w, pack, how, stride, false, scale, bw, at[M], at[C], at[KH],
                                          at[KW], &dst);
                v = LLVMBuildInsertElement(c->b, v, x, cg_i64(c, j), "");
                dst0 = j ? dst0 : dst;
            }
            cg_vstore(c, v, pack, dst0, (int)width);
        }
        for (int i = 2; i >= 0; i--)
            cg_loop_end(c, &loops[i]);
        if (!part)
            cg_loop_end(c, &lt);
    }
}

static void emit_pack(Cg *c, const Node *n, LLVMValueRef w, LLVMValueRef pack, int how, LLVMValueRef scale,
                      int bw)
{
    ConvGeom g = geom(n);
    int64_t taps = (int64_t)n->kh * n->kw;
    int64_t rows = how == PACK_FORWARD ? g.G * taps * g.Cg : how == PACK_TRANSPOSED ? g.G * taps * g.Mg
                                                                                  : n->kh * g.M;
    int64_t width = how == PACK_FORWARD ? g.Mg : how == PACK_TRANSPOSED ? g.Cg : n->kw * g.C;
    int64_t stride = packed(c, width);
    if (conv_depthwise(n))
        rows = taps, width = stride = g.C;
    if (stride != width)
        cg_zero(c, pack, cg_i64(c, rows * stride));
    pack_walk(c, n, w, pack, how, stride, false, scale, bw);
}

/* out (bn, oh, ow0 .. ow0+r, m0 .. m0+bm) from r x bm accumulators */
static void conv_block(Cg *c, ConvKernel *k, LLVMValueRef ow0, int r, LLVMValueRef m0, int bm)
{
    LLVMValueRef acc[16];
    int64_t Cs = k->Cs ? k->Cs : k->C, Ms = k->Ms ? k->Ms : k->M;
    int dh = k->dh > 1 ? k->dh : 1, dw = k->dw > 1 ? k->dw : 1;
    LLVMValueRef gi = k->gi ? k->gi : cg_i64(c, 0);
    LLVMValueRef mg = cg_add(c, cg_mul(c, gi, cg_i64(c, k->M)), m0);       /* m0 among all the outputs */
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, k->bn, k->OH, k->oh), k->OW, ow0);
    LLVMValueRef init = k->bias ? cg_vload(c, k->bias, mg, bm) : cg_vzero(c, bm);
    for (int i = 0; i < r; i++) {
        acc[i] = cg_vvar(c, bm, "acc");
        LLVMBuildStore(c->b, init, acc[i]);
    }
    Loop lh, lw, lc;
    LLVMValueRef kh = cg_loopn(c, &lh, k->kh, "kh");
    LLVMValueRef kw = cg_loopn(c, &lw, k->kw, "kw");
    LLVMValueRef row = cg_muladd(c, cg_add(c, cg_muladd(c, k->bn, k->Hp, cg_mul(c, k->oh, cg_i64(c, k->sh))),
                                          cg_mul(c, kh, cg_i64(c, dh))),
                                 k->Wp, cg_add(c, cg_mul(c, ow0, cg_i64(c, k->sw)), cg_mul(c, kw, cg_i64(c, dw))));
    LLVMValueRef ch = cg_loopn(c, &lc, k->C, "c");
    /* the packed rows hold whole lanes: no mask */
    int lanes = cg_lanes(c, bm);
    LLVMValueRef tap = cg_muladd(c, cg_muladd(c, cg_muladd(c, gi, k->kh, kh), k->kw, kw), k->C, ch);
    LLVMValueRef at = k->blocked ? cg_add(c, cg_mul(c, m0, cg_i64(c, (int64_t)k->kh * k->kw * k->C)),
                                          cg_mul(c, tap, cg_i64(c, lanes)))
                                 : cg_add(c, cg_mul(c, tap, cg_i64(c, k->Mp)), m0);
    LLVMValueRef w = cg_vload_lanes(c, k->wpack, at, lanes, lanes);
    LLVMValueRef base = cg_add(c, cg_muladd(c, row, Cs, cg_mul(c, gi, cg_i64(c, k->C))), ch);
    for (int i = 0; i < r; i++) {
        LLVMValueRef x = cg_load(c, k->in, cg_add(c, base, cg_i64(c, (int64_t)i * k->sw * Cs)), "x");
        LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc[i], bm), cg_fmul(c, cg_splat(c, x, bm), w)), acc[i]);
    }
    cg_loop_end(c, &lc);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    /* With one block of all the channels, a pixel's whole-register store
     * spills only into the next pixel's channels, which the next store
     * rewrites: only the block's last pixel needs a masked store (slow on
     * AVX2, vmaskmov). */
    bool whole = bm == k->M && Ms == k->M && cg_lanes(c, bm) != bm;
    for (int i = 0; i < r; i++)
        conv_store(c, k, cg_vget(c, acc[i], bm), cg_add(c, cg_mul(c, cg_add(c, pix, cg_i64(c, i)), cg_i64(c, Ms)), mg),
                   whole && i < r - 1 ? cg_lanes(c, bm) : bm);
}

/* Every channel block of r pixels from ow0: full blocks in a loop, then the
 * rest; or only the block of bm from m0, when m0 is given. */
static void conv_channels(Cg *c, ConvKernel *k, LLVMValueRef ow0, int r, LLVMValueRef m0, int bm)
{
    if (m0) {
        conv_block(c, k, ow0, r, m0, bm);
        return;
    }
    bm = conv_block_width(c, k->M);
    int64_t full = k->M / bm, rest = k->M % bm;
    Loop lm;
    LLVMValueRef mb = cg_loopn(c, &lm, full, "mb");
    conv_block(c, k, ow0, r, cg_mul(c, mb, cg_i64(c, bm)), bm);
    cg_loop_end(c, &lm);
    if (rest)
        conv_block(c, k, ow0, r, cg_i64(c, full * bm), (int)rest);
}

/* Every output pixel, r at a time along the rows, of every channel block (or
 * of the one from m0, see conv_channels) */
static void conv_pixels(Cg *c, ConvKernel *k, int r, LLVMValueRef m0, int bm)
{
    Loop ln, lh, lg, lw;
    k->bn = cg_loop(c, &ln, c->batch, "n");
    k->oh = cg_loopn(c, &lh, k->OH, "oh");
    k->gi = k->G > 1 ? cg_loopn(c, &lg, k->G, "g") : NULL;
    if (k->OW / r) {
        LLVMValueRef ob = cg_loopn(c, &lw, k->OW / r, "ob");
        conv_channels(c, k, cg_mul(c, ob, cg_i64(c, r)), r, m0, bm);
        cg_loop_end(c, &lw);
    }
    if (k->OW % r)
        conv_channels(c, k, cg_i64(c, k->OW / r * r), (int)(k->OW % r), m0, bm);
    if (k->G > 1)
        cg_loop_end(c, &lg);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

/* The packed weights a pixel block streams through, in bytes, above which
 * the channel blocks go outside the pixels: each block's weights then stay
 * in the core's cache for all the pixels (ResNet-18's 512 x 512 3x3 convs,
 * 9 MB), instead of the whole packed weight passing once per pixel block. */
enum { WEIGHTS_INNER_BYTES = 128 << 10 };

static bool weights_outer(const ConvKernel *k)
{
    return k->G <= 1 && (int64_t)k->kh * k->kw * k->C * k->Mp * 4 > WEIGHTS_INNER_BYTES;
}

/* The block width of the direct kernel's blocked pack for k, 0 when another
 * kernel takes k (or it has groups) */
int conv_pack_blocks(Cg *c, const ConvKernel *k)
{
    bool direct = !(k->G > 1 && k->C == 1 && k->M == 1) && !(k->scratch && wino_fits(k)) && !rows_fits(c, k);
    return direct && k->G <= 1 ? conv_block_width(c, k->M) : 0;
}

void emit_conv_kernel(Cg *c, ConvKernel *k)
{
    if (k->G > 1 && k->C == 1 && k->M == 1) {
        emit_depthwise(c, k);
        return;
    }
    if (k->scratch && wino_fits(k)) {
        emit_wino(c, k);
        return;
    }
    if (rows_fits(c, k) && k->res) {
        ConvKernel alone = *k;
        alone.act = ACT_NONE;
        alone.res = NULL;
        emit_conv_rows(c, &alone);
        emit_residual_pass(c, k);
        return;
    }
    if (rows_fits(c, k)) {
        emit_conv_rows(c, k);
        return;
    }
    CNNC_ASSERT(!k->pool);      /* conv_takes_pool keeps to the kernels above */
    int bm = conv_block_width(c, k->M);
    int r = conv_block_count(c, bm, k->OW);
    if (!weights_outer(k)) {
        conv_pixels(c, k, r, NULL, 0);
        return;
    }
    int64_t full = k->M / bm, rest = k->M % bm;
    Loop lm;
    LLVMValueRef mb = cg_loopn(c, &lm, full, "mb");
    conv_pixels(c, k, r, cg_mul(c, mb, cg_i64(c, bm)), bm);
    cg_loop_end(c, &lm);
    if (rest)
        conv_pixels(c, k, r, cg_i64(c, full * bm), (int)rest);
}

/* A 1x1 stride-1 conv without padding is one matrix product over the
 * image's pixels: seen as a single row of them, the kernel's runs of pixels
 * cross the image's rows (MobileNet's 7x7 maps: runs of 49, not of 7) */
static void pointwise_as_row(ConvKernel *k)
{
    if (k->kh == 1 && k->kw == 1 && k->sh == 1 && k->sw == 1 && k->Hp == k->OH && k->Wp == k->OW && !k->pool &&
        conv_kernel_plain(k)) {
        k->OW *= k->OH;
        k->Wp *= k->Hp;
        k->OH = k->Hp = 1;
    }
}

/* The forward kernel's shape */
static ConvKernel fwd_kernel(const Node *n)
{
    ConvGeom g = geom(n);
    return (ConvKernel){g.Hp, g.Wp, g.Cg, g.OH, g.OW, g.Mg, n->kh, n->kw, n->sh, n->sw, n->act, .in = NULL,
                        .G = g.G, .Cs = g.C, .Ms = g.M, .dh = g.dh, .dw = g.dw, .act_param = n->act_param};
}

/* In inference a 2x2 stride-2 max pool right after a conv is done in the
 * conv's pass by the row-vector kernel (two output rows at a time, the max of
 * them and of neighbouring pixels stored) and by Winograd's (an output tile
 * holds whole 2x2 windows). The activations are monotonic, so they commute with
 * the max. */
bool conv_takes_pool(Cg *c, const Node *conv, const Node *pool)
{
    ConvKernel k = fwd_kernel(conv);
    bool wino = c->winograd && c->scratch[conv->index].wino >= 0 && wino_fits(&k) && wino_tile(&k) % 2 == 0;
    return pool->op == OP_MAXPOOL && pool->kh == 2 && pool->kw == 2 && pool->sh == 2 && pool->sw == 2 &&
           !pool->ph && !pool->pw && k.OH % 2 == 0 && k.OW % 2 == 0 && (rows_fits(c, &k) || wino);
}

/* ---- the plan's hook (ops.def flag SCRATCH): what a conv needs of the workspace ---- */

/* the padded input, and CONV_SLACK floats after it that a kernel may read
 * (never use) */
static int64_t padded_bytes(const Node *n, int64_t batch)
{
    if (!n->ph && !n->pw)
        return 0;
    return plan_floats(batch * (n->in.d[0] + 2 * n->ph) * (n->in.d[1] + 2 * n->pw) * n->in.d[2] + CONV_SLACK);
}

/* Training keeps the input itself for backward (ops.def's GRAD_IN), which
 * pads it again, an image at a time into the shared scratch, where d
 * weight reads it from the cache */
int64_t kept_conv(const Node *n, int64_t batch)
{
    (void)n, (void)batch;
    return 0;
}

/* A conv's scratch from `at` on (n with the activation it applies); returns its end. */
int64_t scratch_conv(Scratch *s, const Node *n, int64_t batch, bool training, int64_t at, int64_t *keep)
{
    int64_t pack = plan_floats(conv_pack_bound(n));
    int64_t pad = padded_bytes(n, batch);
    *s = SCRATCH_NONE;
    if (pad && (training || !(conv_depthwise(n) && depthwise_pads_inline(n)))) {
        s->pad = at;
        at += pad;
    }
    /* in inference the pack (and the folded batch norm) come from the weights
     * alone: `prepare` leaves them at *keep for every call after it */
    int64_t *packs = training ? &at : keep;
    s->wpack = *packs;
    *packs += pack;
    int64_t wino = conv_wino_bytes(n, training);
    if (wino && !training) {
        /* U, from the weights alone, with the packs */
        ConvKernel f = fwd_kernel(n);
        int64_t u = wino_u_bytes(&f);
        s->wino_u = *packs;
        *packs += u;
        wino -= u;
    }
    if (wino) {
        s->wino = at;
        at += wino;
    }
    if (n->fold && !training) {
        s->fold = *packs;       /* the batch norm's scale and shift, then the folded bias */
        *packs += plan_floats(3 * n->out.d[2]);
    }
    if (!training)
        return at;
    s->tpack = at;
    at += pack;
    if (n->act != ACT_NONE) {
        s->dpre = at;
        at += plan_floats(shape_elems(n->out) * batch + CONV_SLACK);
    }
    /* d inp: a conv of the padded output gradient, or scattered (stride > 1) */
    int qh, qw;
    bool transposed = conv_dinp_transposed(n, &qh, &qw);
    if (transposed && (qh || qw)) {
        s->gpad = at;
        at += plan_floats(batch * (n->out.d[0] + 2 * qh) * (n->out.d[1] + 2 * qw) * n->out.d[2]);
    }
    if (pad && (!transposed || n->padmode == PAD_REPLICATE)) {
        s->dpad = at;
        at += pad;
    }
    return at;
}


/* out (N,OH,OW,M) = act(bias + conv(inp (N,H,W,C), weight (M,C,Kh,Kw))),
 * or with n->pool_fused its 2x2 max pool (N,OH/2,OW/2,M) */
void emit_conv_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    const Scratch *s = &c->scratch[n->index];
    ConvKernel k = fwd_kernel(n);
    k.in = inp;
    k.out = out;
    k.bias = n->bias ? cg_param(c, n->bias) : NULL;
    k.scratch = c->winograd && s->wino >= 0 ? cg_ws(c, s->wino) : NULL;
    k.pool = n->pool_fused;
    k.res = n->residual ? c->ins[n->ninputs] : NULL;
    k.exact = c->training;
    /* the depthwise kernel (in inference) and Winograd's add a zero border
     * themselves: no padded copy */
    bool wino = k.scratch && wino_fits(&k);
    bool own_border = s->pad < 0 || (n->padmode != PAD_REPLICATE && wino);
    if (s->pad >= 0 && !own_border) {
        k.in = cg_ws(c, s->pad);
        k.slack = true;
        if (c->prep != PREP_PACK)
            emit_pad_walk(c, input_pad(n), inp, k.in, false);
    } else if (n->ph || n->pw) {
        k.Hp = n->in.d[0];
        k.Wp = n->in.d[1];
        k.ph = n->ph;
        k.pw = n->pw;
    }
    k.wpack = cg_ws(c, s->wpack);
    k.Mp = packed(c, k.M);
    pointwise_as_row(&k);
    int bw = conv_pack_blocks(c, &k);
    k.blocked = bw > 0;
    if (n->fold && c->prep == PREP_RUN)
        k.bias = batchnorm_folded_at(c, cg_ws(c, s->fold), n->out.d[2]);
    if (c->prep != PREP_RUN) {
        LLVMValueRef scale = NULL;
        if (n->fold) {
            /* the batch norm after it: weights times its scale, bias times it plus its shift */
            scale = cg_ws(c, s->fold);
            k.bias = batchnorm_folded_bias(c, n->fold, scale, k.bias, n->out.d[2]);
        }
        emit_pack(c, n, cg_param(c, n->weight), k.wpack, PACK_FORWARD, scale, bw);
    }
    /* Winograd's U is part of the pack */
    k.wino_u = k.scratch && s->wino_u >= 0 ? cg_ws(c, s->wino_u) : NULL;
    if (c->prep != PREP_PACK || wino)
        emit_conv_kernel(c, &k);
}

/* The transposed conv computes every input pixel over whole windows of the
 * padded output gradient, vectorized over input channels; the scatter form
 * visits each output pixel's window once, vectorized over a window row's
 * (kw, c) taps, but its sum over output channels is one dependent chain of
 * FMAs, half the speed. Counted in lanes of 8 floats (so that the choice,
 * and the plan, do not depend on the target), the cheaper one is taken. */
static int64_t lanes(int64_t n)
{
    return (n + 7) / 8 * 8;
}

bool conv_dinp_transposed(const Node *n, int *qh, int *qw)
{
    bool replicate = n->padmode == PAD_REPLICATE;
    ConvGeom g = geom(n);
    *qh = g.dh * (n->kh - 1) - (replicate ? 0 : n->ph);
    *qw = g.dw * (n->kw - 1) - (replicate ? 0 : n->pw);
    if (n->sh != 1 || n->sw != 1 || *qh < 0 || *qw < 0)
        return false;
    if (!plain(n))
        return true;            /* the scatter form below is the dense convs' */
    int64_t H = n->in.d[0] + (replicate ? 2 * n->ph : 0), W = n->in.d[1] + (replicate ? 2 * n->pw : 0);
    int64_t C = n->in.d[2], M = n->out.d[2], window = (int64_t)n->kh * n->kw;
    int64_t transposed = H * W * lanes(C) * window * M;
    int64_t scatter = 2 * n->out.d[0] * n->out.d[1] * n->kh * lanes(n->kw * C) * M;
    return transposed <= scatter;
}

/* d inp of a stride-1 conv: the output gradient g, padded by D(K-1)-P
 * (zeros), convolved with the flipped weights (dilated by D, each group's
 * own), is dinp. With replicate padding it pads by D(K-1) to give the padded
 * input's gradient, which is folded back. */
static bool dinp_folds(const Node *n)
{
    return n->padmode == PAD_REPLICATE && (n->ph || n->pw);
}

static ConvKernel dinp_kernel(const Node *n)
{
    ConvGeom G = geom(n);
    int qh, qw;
    conv_dinp_transposed(n, &qh, &qw);
    bool fold = dinp_folds(n);
    return (ConvKernel){G.OH + 2 * qh, G.OW + 2 * qw, G.Mg, fold ? G.Hp : G.H, fold ? G.Wp : G.W, G.Cg,
                        n->kh, n->kw, 1, 1, ACT_NONE, .in = NULL, .G = G.G, .Cs = G.M, .Ms = G.C,
                        .dh = G.dh, .dw = G.dw, .exact = true};
}

static void conv_dinp_as_conv(Cg *c, const Node *n, LLVMValueRef g, LLVMValueRef dinp)
{
    const Scratch *s = &c->scratch[n->index];
    ConvGeom G = geom(n);
    int qh, qw;
    conv_dinp_transposed(n, &qh, &qw);
    ConvKernel k = dinp_kernel(n);
    k.in = g;
    k.out = dinp_folds(n) ? cg_ws(c, s->dpad) : dinp;
    k.scratch = c->winograd && s->wino >= 0 ? cg_ws(c, s->wino) : NULL;
    if (k.scratch && wino_fits(&k)) {
        /* Winograd adds the zero border itself: no padded copy of g */
        k.Hp = G.OH;
        k.Wp = G.OW;
        k.ph = qh;
        k.pw = qw;
    } else if (s->gpad >= 0) {
        k.in = cg_ws(c, s->gpad);
        emit_pad_walk(c, (PadGeom){G.OH, G.OW, G.M, qh, qw, false}, g, k.in, false);
    }
    k.wpack = cg_ws(c, s->tpack);
    k.Mp = packed(c, k.M);
    pointwise_as_row(&k);
    int bw = conv_pack_blocks(c, &k);
    k.blocked = bw > 0;
    emit_pack(c, n, cg_param(c, n->weight), k.wpack, PACK_TRANSPOSED, NULL, bw);
    emit_conv_kernel(c, &k);
    if (dinp_folds(n))
        emit_pad_walk(c, input_pad(n), dinp, k.out, true);
}

/* d weight by Winograd: the forward kernel with its own zero border (none
 * for replicate padding), of a kind that trains */
static ConvKernel dweight_kernel(const Node *n)
{
    ConvKernel k = fwd_kernel(n);
    k.Hp = n->in.d[0];
    k.Wp = n->in.d[1];
    k.ph = n->ph;
    k.pw = n->pw;
    k.exact = true;
    return k;
}

static bool dweight_wino(const Node *n)
{
    ConvKernel k = dweight_kernel(n);
    return (n->padmode != PAD_REPLICATE || (!n->ph && !n->pw)) && wino_fits(&k);
}

/* Winograd's scratch, for the forward kernel and in training d weight's and
 * d inp's */
int64_t conv_wino_bytes(const Node *n, bool training)
{
    int qh, qw;
    ConvKernel f = fwd_kernel(n), d = dinp_kernel(n), dw = dweight_kernel(n);
    f.exact = training;
    int64_t bytes = wino_fits(&f) ? wino_bytes(&f) : 0;
    if (training && conv_dinp_transposed(n, &qh, &qw) && wino_fits(&d) && wino_bytes(&d) > bytes)
        bytes = wino_bytes(&d);
    if (training && dweight_wino(n) && wino_dweight_bytes(&dw) > bytes)
        bytes = wino_dweight_bytes(&dw);
    return bytes;
}

/* The accumulators a backward kernel may keep: vectors of `width` floats,
 * beside one operand of that width (broadcasts fold into the FMAs). */
static int acc_budget(Cg *c, int width)
{
    int regs = (cg_lanes(c, width) + c->vw - 1) / c->vw;
    int a = (c->nregs - 2 * regs - 1) / regs;
    return a > 28 ? 28 : a < 1 ? 1 : a;
}

/* Rows kh0 .. kh0+rkh of the window, taps t0 .. t0+rt of each, channels
 * m0 .. m0+bm: a block of a backward kernel. A tap t is (kw, c) =
 * (t / C, t % C); within a padded row a window row's taps are contiguous. */
typedef struct TapBlock {
    LLVMValueRef kh0, t0, m0;
    int rkh, rt, bm;
} TapBlock;

/* d weight of a block += sum over image bn's pixels of x * d pre, packed as
 * the forward kernel's weights, (Kh, Kw, C, M): each d pre vector loaded
 * serves rkh x rt taps. */
static void conv_dweight_block(Cg *c, const Node *n, LLVMValueRef pad, LLVMValueRef pb, LLVMValueRef g,
                               LLVMValueRef dw, LLVMValueRef bn, LLVMValueRef gi, const TapBlock *b)
{
    ConvGeom G = geom(n);
    int64_t T = n->kw * G.Cg;
    LLVMValueRef acc[32], at[32], off[32];
    for (int h = 0; h < b->rkh; h++)
        for (int j = 0; j < b->rt; j++) {
            LLVMValueRef kh = cg_add(c, cg_muladd(c, gi, n->kh, b->kh0), cg_i64(c, h));
            LLVMValueRef tap = cg_add(c, cg_muladd(c, kh, T, b->t0), cg_i64(c, j));
            at[h * b->rt + j] = cg_add(c, cg_mul(c, tap, cg_i64(c, G.Mg)), b->m0);
            acc[h * b->rt + j] = cg_vvar(c, b->bm, "dw");
            LLVMBuildStore(c->b, cg_vload(c, dw, at[h * b->rt + j], b->bm), acc[h * b->rt + j]);
        }
    /* tap t = (kw, c) of the group's channels, at (t / Cg) dw C + gi Cg + t % Cg
     * in a padded row (t itself for a dense conv) */
    for (int j = 0; j < b->rt; j++) {
        LLVMValueRef t = cg_add(c, b->t0, cg_i64(c, j));
        off[j] = plain(n) ? t
               : cg_add(c, cg_mul(c, LLVMBuildUDiv(c->b, t, cg_i64(c, G.Cg), ""), cg_i64(c, (int64_t)G.dw * G.C)),
                        cg_add(c, cg_mul(c, gi, cg_i64(c, G.Cg)), LLVMBuildURem(c->b, t, cg_i64(c, G.Cg), "")));
    }
    Loop lh, lw;
    LLVMValueRef oh = cg_loopn(c, &lh, G.OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &lw, G.OW, "ow");
    /* d pre in our scratch (dpre, with its slack) is loaded in whole lanes,
     * the ones past the block only reaching accumulator lanes never stored */
    int lanes = cg_lanes(c, b->bm);
    LLVMValueRef gv = cg_vload_lanes(c, g, cg_add(c, cg_mul(c, cg_muladd(c, cg_muladd(c, bn, G.OH, oh), G.OW, ow),
                                                            cg_i64(c, G.M)), cg_muladd(c, gi, G.Mg, b->m0)),
                                     n->act != ACT_NONE ? lanes : b->bm, lanes);
    LLVMValueRef ih = cg_add(c, cg_mul(c, oh, cg_i64(c, n->sh)), cg_mul(c, b->kh0, cg_i64(c, G.dh)));
    LLVMValueRef base = cg_mul(c, cg_muladd(c, cg_muladd(c, pb, G.Hp, ih), G.Wp, cg_mul(c, ow, cg_i64(c, n->sw))),
                               cg_i64(c, G.C));
    for (int h = 0; h < b->rkh; h++)
        for (int j = 0; j < b->rt; j++) {
            LLVMValueRef x = cg_load(c, pad, cg_add(c, cg_add(c, base, off[j]), cg_i64(c, h * G.dh * G.Wp * G.C)), "x");
            LLVMValueRef a = acc[h * b->rt + j];
            LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, a, b->bm), cg_fmul(c, cg_splat(c, x, b->bm), gv)), a);
        }
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    for (int j = 0; j < b->rkh * b->rt; j++)
        cg_vstore(c, cg_vget(c, acc[j], b->bm), dw, at[j], b->bm);
}

/* Calls body for every block of (rows, taps, channels): in each dimension
 * a loop over the whole blocks, then the rest. */
typedef void TapBody(Cg *c, void *ctx, const TapBlock *b);

typedef struct TapWalk {
    int64_t taps, chans;
    int rt, bm;
    TapBody *body;
    void *ctx;
    TapBlock b;
} TapWalk;

static void walk_chans(Cg *c, void *ctx, LLVMValueRef m0, int bm)
{
    TapWalk *w = ctx;
    w->b.m0 = m0;
    w->b.bm = bm;
    w->body(c, w->ctx, &w->b);
}

static void walk_taps(Cg *c, void *ctx, LLVMValueRef t0, int rt)
{
    TapWalk *w = ctx;
    w->b.t0 = t0;
    w->b.rt = rt;
    cg_for_blocks(c, w->chans, w->bm, walk_chans, w);
}

static void walk_rows(Cg *c, void *ctx, LLVMValueRef kh0, int rkh)
{
    TapWalk *w = ctx;
    w->b.kh0 = kh0;
    w->b.rkh = rkh;
    cg_for_blocks(c, w->taps, w->rt, walk_taps, w);
}

static void for_tap_blocks(Cg *c, int64_t rows, int rkh, int64_t taps, int rt, int64_t chans, int bm,
                           TapBody *body, void *ctx)
{
    TapWalk w = {.taps = taps, .chans = chans, .rt = rt, .bm = bm, .body = body, .ctx = ctx};
    cg_for_blocks(c, rows, rkh, walk_rows, &w);
}

typedef struct DweightCtx {
    const Node *n;
    LLVMValueRef pad, pb, g, dwpack, bn, gi;
} DweightCtx;

static void dweight_body(Cg *c, void *ctx, const TapBlock *b)
{
    DweightCtx *x = ctx;
    conv_dweight_block(c, x->n, x->pad, x->pb, x->g, x->dwpack, x->bn, x->gi, b);
}

/* Image bn of inp with its border, at pad (one image's place) */
static void pad_image(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef bn, LLVMValueRef pad)
{
    LLVMValueRef batch = c->batch;
    c->batch = cg_i64(c, 1);
    emit_pad_walk(c, input_pad(n), cg_at(c, inp, cg_mul(c, bn, cg_i64(c, shape_elems(n->in)))), pad, false);
    c->batch = batch;
}

/* d weight (M,C,Kh,Kw) += the sum over pixels, reduced into dwpack (Kh,Kw,C,M)
 * by register blocks and then added in PyTorch's layout. With a border,
 * each image is padded first into pad, where its blocks read it from the
 * cache. */
static void conv_dweight(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef pad, LLVMValueRef g,
                         LLVMValueRef dwpack, LLVMValueRef dw)
{
    ConvGeom G = geom(n);
    int64_t T = n->kw * G.Cg;
    int bm = conv_block_width(c, G.Mg);
    int rt = conv_block_count(c, bm, T);
    int rkh = acc_budget(c, bm) / rt;
    rkh = rkh < 1 ? 1 : rkh > n->kh ? n->kh : rkh;
    /* an image at a time, its data in cache for every block, the blocks'
     * sums added into dwpack, (Kh, Kw, C, M) per group */
    cg_zero(c, dwpack, cg_i64(c, G.G * n->kh * T * G.Mg));
    DweightCtx x = {n, pad ? pad : inp, NULL, g, dwpack, NULL, cg_i64(c, 0)};
    Loop ln, lg;
    x.bn = cg_loop(c, &ln, c->batch, "n");
    x.pb = x.bn;
    if (pad) {
        pad_image(c, n, inp, x.bn, pad);
        x.pb = cg_i64(c, 0);
    }
    if (G.G > 1)
        x.gi = cg_loopn(c, &lg, G.G, "g");
    for_tap_blocks(c, n->kh, rkh, T, rt, G.Mg, bm, dweight_body, &x);
    if (G.G > 1)
        cg_loop_end(c, &lg);
    cg_loop_end(c, &ln);
    pack_walk(c, n, dw, dwpack, PACK_FORWARD, G.Mg, true, NULL, 0);
}

/* d padded input, scatter form: for output pixels gpix .. gpix+np of a row,
 * window rows kh0 .. kh0+rkh and taps t0 .. t0+bt, the sums over m of
 * d pre (m) * tpack (kh, m, t), added to dpad. Pixels next to each other
 * reach the same cells of dpad, so the sums start from zero and are added
 * one after the other. */
typedef struct DinpCtx {
    const Node *n;
    LLVMValueRef g, tpack, dpad, gpix, rowbase;
    int np;
    int64_t tp;                     /* the packed taps of a row */
} DinpCtx;

static void dinp_body(Cg *c, void *ctx, const TapBlock *b)
{
    DinpCtx *x = ctx;
    const Node *n = x->n;
    ConvGeom G = geom(n);
    LLVMValueRef acc[32];
    for (int j = 0; j < x->np * b->rkh; j++) {
        acc[j] = cg_vvar(c, b->rt, "dx");
        LLVMBuildStore(c->b, cg_vzero(c, b->rt), acc[j]);
    }
    Loop lm;
    LLVMValueRef m = cg_loopn(c, &lm, G.M, "m");
    LLVMValueRef w[32];
    for (int h = 0; h < b->rkh; h++) {
        LLVMValueRef kh = cg_add(c, b->kh0, cg_i64(c, h));
        int lanes = cg_lanes(c, b->rt);
        w[h] = cg_vload_lanes(c, x->tpack, cg_add(c, cg_mul(c, cg_muladd(c, kh, G.M, m), cg_i64(c, x->tp)), b->t0),
                              lanes, lanes);
    }
    for (int p = 0; p < x->np; p++) {
        LLVMValueRef gpix = cg_add(c, x->gpix, cg_i64(c, p));
        LLVMValueRef gs = cg_splat(c, cg_load(c, x->g, cg_muladd(c, gpix, G.M, m), "g"), b->rt);
        for (int h = 0; h < b->rkh; h++) {
            LLVMValueRef a = acc[p * b->rkh + h];
            LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, a, b->rt), cg_fmul(c, gs, w[h])), a);
        }
    }
    cg_loop_end(c, &lm);
    LLVMValueRef row0 = cg_add(c, x->rowbase, cg_add(c, cg_mul(c, b->kh0, cg_i64(c, G.Wp * G.C)), b->t0));
    for (int p = 0; p < x->np; p++)
        for (int h = 0; h < b->rkh; h++) {
            LLVMValueRef at = cg_add(c, row0, cg_i64(c, h * G.Wp * G.C + p * n->sw * G.C));
            LLVMValueRef sum = cg_fadd(c, cg_vload(c, x->dpad, at, b->rt), cg_vget(c, acc[p * b->rkh + h], b->rt));
            cg_vstore(c, sum, x->dpad, at, b->rt);
        }
}

/* every tap block of the pixels ow0 .. ow0+np of row oh of image bn */
static void conv_dinp_pixels(Cg *c, DinpCtx *x, LLVMValueRef bn, LLVMValueRef oh, LLVMValueRef ow0, int np,
                             int rkh, int bt)
{
    const Node *n = x->n;
    ConvGeom G = geom(n);
    x->np = np;
    x->gpix = cg_muladd(c, cg_muladd(c, bn, G.OH, oh), G.OW, ow0);
    x->rowbase = cg_mul(c, cg_muladd(c, cg_muladd(c, bn, G.Hp, cg_mul(c, oh, cg_i64(c, n->sh))), G.Wp,
                                     cg_mul(c, ow0, cg_i64(c, n->sw))), cg_i64(c, G.C));
    /* the taps as the block's "rows", bt of them; no channel blocks */
    for_tap_blocks(c, n->kh, rkh, n->kw * G.C, bt, 1, 1, dinp_body, x);
}

static void conv_dinp(Cg *c, const Node *n, LLVMValueRef g, LLVMValueRef tpack, LLVMValueRef dpad)
{
    ConvGeom G = geom(n);
    int bt = conv_block_width(c, n->kw * G.C);
    int budget = acc_budget(c, bt);
    int rkh = budget < n->kh ? budget : n->kh;
    int np = budget / rkh > 4 ? 4 : budget / rkh;
    np = np > G.OW ? (int)G.OW : np;
    DinpCtx x = {n, g, tpack, dpad, NULL, NULL, 0, packed(c, n->kw * G.C)};
    Loop ln, loh, low;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &loh, G.OH, "oh");
    LLVMValueRef ob = cg_loopn(c, &low, G.OW / np, "ob");
    conv_dinp_pixels(c, &x, bn, oh, cg_mul(c, ob, cg_i64(c, np)), np, rkh, bt);
    cg_loop_end(c, &low);
    if (G.OW % np)
        conv_dinp_pixels(c, &x, bn, oh, cg_i64(c, G.OW / np * np), (int)(G.OW % np), rkh, bt);
    cg_loop_end(c, &loh);
    cg_loop_end(c, &ln);
}

/* d padded input of a grouped or dilated conv that the transposed form does
 * not serve (stride > 1): for each output pixel, group and tap, the sum over
 * the group's kernels of d pre times the weights (packed as for the
 * transposed conv, whose flipped taps are read back), a vector of the
 * group's input channels at a time, added to dpad. */
typedef struct GroupScatter {
    const Node *n;
    LLVMValueRef g, tpack, dpad, pix, at, gi, tap;
    int64_t stride;
} GroupScatter;

static void group_scatter_block(Cg *c, void *ctx, LLVMValueRef c0, int w)
{
    const GroupScatter *x = ctx;
    ConvGeom G = geom(x->n);
    LLVMValueRef acc = cg_vvar(c, w, "dx");
    LLVMBuildStore(c->b, cg_vzero(c, w), acc);
    Loop lm;
    LLVMValueRef m = cg_loopn(c, &lm, G.Mg, "m");
    LLVMValueRef gs = cg_splat(c, cg_load(c, x->g, cg_add(c, cg_mul(c, x->pix, cg_i64(c, G.M)),
                                                          cg_muladd(c, x->gi, G.Mg, m)), "g"), w);
    LLVMValueRef row = cg_muladd(c, cg_add(c, cg_mul(c, x->gi, cg_i64(c, (int64_t)x->n->kh * x->n->kw)), x->tap),
                                 G.Mg, m);
    LLVMValueRef wv = cg_vload(c, x->tpack, cg_add(c, cg_mul(c, row, cg_i64(c, x->stride)), c0), w);
    LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc, w), cg_fmul(c, gs, wv)), acc);
    cg_loop_end(c, &lm);
    LLVMValueRef at = cg_add(c, x->at, c0);
    cg_vstore(c, cg_fadd(c, cg_vload(c, x->dpad, at, w), cg_vget(c, acc, w)), x->dpad, at, w);
}

static void conv_dinp_grouped(Cg *c, const Node *n, LLVMValueRef g, LLVMValueRef tpack, LLVMValueRef dpad)
{
    ConvGeom G = geom(n);
    GroupScatter x = {n, g, tpack, dpad, NULL, NULL, NULL, NULL, packed(c, G.Cg)};
    Loop ln, lh, lw, lg, lkh, lkw;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef oh = cg_loopn(c, &lh, G.OH, "oh");
    LLVMValueRef ow = cg_loopn(c, &lw, G.OW, "ow");
    x.pix = cg_muladd(c, cg_muladd(c, bn, G.OH, oh), G.OW, ow);
    x.gi = cg_loopn(c, &lg, G.G, "g");
    LLVMValueRef kh = cg_loopn(c, &lkh, n->kh, "kh");
    LLVMValueRef kw = cg_loopn(c, &lkw, n->kw, "kw");
    LLVMValueRef ih = cg_add(c, cg_mul(c, oh, cg_i64(c, n->sh)), cg_mul(c, kh, cg_i64(c, G.dh)));
    LLVMValueRef iw = cg_add(c, cg_mul(c, ow, cg_i64(c, n->sw)), cg_mul(c, kw, cg_i64(c, G.dw)));
    x.at = cg_add(c, cg_mul(c, cg_muladd(c, cg_muladd(c, bn, G.Hp, ih), G.Wp, iw), cg_i64(c, G.C)),
                  cg_mul(c, x.gi, cg_i64(c, G.Cg)));
    /* the transposed pack's taps are flipped */
    x.tap = LLVMBuildSub(c->b, cg_i64(c, (int64_t)n->kh * n->kw - 1), cg_muladd(c, kh, n->kw, kw), "tap");
    cg_for_blocks(c, G.Cg, conv_block_width(c, G.Cg), group_scatter_block, &x);
    cg_loop_end(c, &lkw);
    cg_loop_end(c, &lkh);
    cg_loop_end(c, &lg);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

/* The width channels of one pixel at `at`, touching n floats of memory:
 * g = dout * act'(out) (g is dout without an activation), bsum += it */
static void dpre_pixel(Cg *c, const Node *n, const Bwd *a, LLVMValueRef g, LLVMValueRef bsum, LLVMValueRef at,
                       int width, int touched)
{
    int lanes = cg_lanes(c, width);
    LLVMValueRef gv = cg_vload_lanes(c, a->dout, at, touched, lanes);
    if (n->act != ACT_NONE) {
        gv = cg_act_grad(c, n->act, n->act_param, NULL, cg_vload_lanes(c, a->out, at, touched, lanes), gv);
        cg_vstore_lanes(c, gv, g, at, touched);
    }
    LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, bsum, width), gv), bsum);
}

/* From dout (N,OH,OW,M): dbias (M) and dweight (M,C,Kh,Kw) +=, dinp (N,H,W,C) = */
void emit_conv_bwd(Cg *c, const Node *n, const Bwd *a)
{
    const Scratch *s = &c->scratch[n->index];
    ConvGeom G = geom(n);
    LLVMValueRef dw = cg_dparam(c, a->dparams, n->weight), db = cg_dparam(c, a->dparams, n->bias);
    if (!dw && !db && !a->dinp)
        return;
    /* d pre-activation = dout * act'(out) and d bias = its sum over pixels,
     * in one pass over the pixels per vector of channels */
    LLVMValueRef g = n->act != ACT_NONE ? cg_ws(c, s->dpre) : a->dout;
    for (int64_t m0 = 0; (n->act != ACT_NONE || db) && m0 < G.M; m0 += c->vw) {
        int width = G.M - m0 < c->vw ? (int)(G.M - m0) : c->vw;
        LLVMValueRef bsum = cg_vvar(c, width, "db");
        LLVMBuildStore(c->b, cg_vzero(c, width), bsum);
        /* a partial vector of channels (M = 6) is loaded and stored whole
         * but at the last pixel: its lanes past the channels are the next
         * pixel's, which the next step rewrites (a masked load or store is
         * slow on AMD's AVX2) */
        LLVMValueRef pixels = cg_mul(c, c->batch, cg_i64(c, G.OH * G.OW));
        int lanes = cg_lanes(c, width);
        LLVMValueRef last = lanes == width ? pixels : LLVMBuildSub(c->b, pixels, cg_i64(c, 1), "");
        Loop lp;
        dpre_pixel(c, n, a, g, bsum, cg_muladd(c, cg_loop(c, &lp, last, "p"), G.M, cg_i64(c, m0)), width, lanes);
        cg_loop_end(c, &lp);
        if (lanes != width)
            dpre_pixel(c, n, a, g, bsum, cg_muladd(c, last, G.M, cg_i64(c, m0)), width, width);
        if (db)
            cg_vstore(c, cg_fadd(c, cg_vload(c, db, cg_i64(c, m0), width), cg_vget(c, bsum, width)), db,
                      cg_i64(c, m0), width);
    }
    LLVMValueRef pad = s->pad >= 0 ? cg_ws(c, s->pad) : NULL;
    if (dw && conv_depthwise(n)) {
        if (pad)
            emit_pad_walk(c, input_pad(n), a->inp, pad, false);
        emit_depthwise_dweight(c, n, pad ? pad : a->inp, g, cg_ws(c, s->tpack));
        pack_walk(c, n, dw, cg_ws(c, s->tpack), PACK_FORWARD, G.C, true, NULL, 0);
    } else if (dw && c->winograd && s->wino >= 0 && dweight_wino(n)) {
        ConvKernel k = dweight_kernel(n);
        k.in = a->inp;
        k.scratch = cg_ws(c, s->wino);
        emit_wino_dweight(c, &k, g, cg_ws(c, s->tpack));
        pack_walk(c, n, dw, cg_ws(c, s->tpack), PACK_FORWARD, G.Mg, true, NULL, 0);
    } else if (dw) {
        conv_dweight(c, n, a->inp, pad, g, cg_ws(c, s->tpack), dw);    /* tpack is free till d inp */
    }
    int qh, qw;
    bool transposed = conv_dinp_transposed(n, &qh, &qw);
    /* dinp is written whole by the transposed conv; the other forms add to it */
    if (a->dinp && (!transposed || dinp_folds(n)))
        cg_zero(c, a->dinp, cg_mul(c, c->batch, cg_i64(c, G.H * G.W * G.C)));
    if (a->dinp && transposed) {
        conv_dinp_as_conv(c, n, g, a->dinp);
    } else if (a->dinp) {
        LLVMValueRef tpack = cg_ws(c, s->tpack);
        int how = conv_depthwise(n) ? PACK_FORWARD : plain(n) ? PACK_SCATTER : PACK_TRANSPOSED;
        emit_pack(c, n, cg_param(c, n->weight), tpack, how, NULL, 0);
        LLVMValueRef dpad = a->dinp;
        if (s->dpad >= 0) {
            dpad = cg_ws(c, s->dpad);
            LLVMBuildMemSet(c->b, dpad, LLVMConstInt(LLVMInt8TypeInContext(c->ctx), 0, false),
                            cg_mul(c, c->batch, cg_i64(c, G.Hp * G.Wp * G.C * 4)), 4);
        }
        if (conv_depthwise(n))
            emit_depthwise_scatter(c, n, g, tpack, dpad);
        else if (plain(n))
            conv_dinp(c, n, g, tpack, dpad);
        else
            conv_dinp_grouped(c, n, g, tpack, dpad);
        if (s->dpad >= 0)
            emit_pad_walk(c, input_pad(n), a->dinp, dpad, true);
    }
}

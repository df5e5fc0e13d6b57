/*
 * conv_rows.c: the conv kernel for one input channel and fewer kernels than
 * a vector has lanes (a first layer on grey images: LeNet-5's conv1).
 *
 * With channel vectors (conv.c) those lanes would be partly empty, so here
 * the vectors run along the output row: out (oh, ow0 .. ow0 + nv*vw, all m)
 * from M x nv accumulators; each tap loads a row segment of the input
 * (contiguous, as C = 1) and broadcasts M weights. The accumulators are then
 * interleaved to the channels-last layout by shuffles and stored whole. A
 * row's last vector, past the row's end, is loaded whole from a padded copy
 * (its slack covers the last row; a masked load is slow on AMD's AVX2), the
 * lanes past the row left out of the stores. In
 * inference the kernel also takes a 2x2 stride-2 max pool after it (two
 * output rows at a time, the max of them and of neighbouring pixels).
 */
#include "../cnnc.h"

bool rows_fits(Cg *c, const ConvKernel *k)
{
    return conv_kernel_plain(k) && k->C == 1 && k->sw == 1 && k->M < c->vw;
}

/* lanes (m * vw + p) of M vectors to lane (p * M + m), the first n pixels, stored at at */
static void store_interleaved(Cg *c, LLVMValueRef *v, int M, int n, LLVMValueRef out, LLVMValueRef at)
{
    int vw = c->vw, count = 1;
    while (count < M)
        count *= 2;
    LLVMValueRef part[16];
    for (int m = 0; m < count; m++)
        part[m] = m < M ? v[m] : cg_vzero(c, vw);
    /* concatenate pairwise: count vectors of vw lanes -> one of count * vw */
    for (int width = vw; count > 1; count /= 2, width *= 2)
        for (int m = 0; m < count / 2; m++) {
            LLVMValueRef idx[512];
            for (int i = 0; i < 2 * width; i++)
                idx[i] = LLVMConstInt(c->i32, (unsigned)i, false);
            part[m] = LLVMBuildShuffleVector(c->b, part[2 * m], part[2 * m + 1], LLVMConstVector(idx, (unsigned)(2 * width)), "");
        }
    LLVMValueRef idx[512];
    for (int p = 0; p < vw; p++)
        for (int m = 0; m < M; m++)
            idx[p * M + m] = LLVMConstInt(c->i32, (unsigned)(m * vw + p), false);
    LLVMValueRef all = LLVMBuildShuffleVector(c->b, part[0], LLVMGetPoison(LLVMTypeOf(part[0])),
                                              LLVMConstVector(idx, (unsigned)(vw * M)), "interleave");
    cg_vstore_lanes(c, all, out, at, n * M);
}

/* lanes 0, 2, 4, ... of a then of b */
static LLVMValueRef even_lanes(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    LLVMValueRef idx[64];
    for (int i = 0; i < c->vw; i++)
        idx[i] = LLVMConstInt(c->i32, (unsigned)(2 * i), false);
    return LLVMBuildShuffleVector(c->b, a, b, LLVMConstVector(idx, (unsigned)c->vw), "even");
}

/* max of neighbouring lanes (2i, 2i+1), in both */
static LLVMValueRef pair_max(Cg *c, LLVMValueRef v)
{
    LLVMValueRef idx[64];
    for (int i = 0; i < c->vw; i++)
        idx[i] = LLVMConstInt(c->i32, (unsigned)(i ^ 1), false);
    return cg_vmax(c, LLVMBuildShuffleVector(c->b, v, v, LLVMConstVector(idx, (unsigned)c->vw), ""), v);
}

/* Rows oh*rows .. + rows (rows = 2 with a fused 2x2 max pool, else 1), pixels
 * ow0 .. ow0 + nv*vw (the last vector tail pixels when tail): M x nv
 * accumulators per row. */
static void conv_rows_block(Cg *c, ConvKernel *k, LLVMValueRef ow0, int nv, int tail)
{
    int vw = c->vw, rows = k->pool ? 2 : 1;
    LLVMValueRef acc[2][16][8];     /* rows x M (< vw <= 16) x nv (<= 8) */
    for (int m = 0; m < k->M; m++) {
        LLVMValueRef b = k->bias ? cg_splat(c, cg_load(c, k->bias, cg_i64(c, m), "b"), vw) : cg_vzero(c, vw);
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < nv; v++) {
                acc[r][m][v] = cg_vvar(c, vw, "acc");
                LLVMBuildStore(c->b, b, acc[r][m][v]);
            }
    }
    Loop lh, lw;
    LLVMValueRef kh = cg_loopn(c, &lh, k->kh, "kh");
    LLVMValueRef kw = cg_loopn(c, &lw, k->kw, "kw");
    LLVMValueRef tap = cg_mul(c, cg_muladd(c, kh, k->kw, kw), cg_i64(c, k->Mp));
    LLVMValueRef x[2][8];
    for (int r = 0; r < rows; r++) {
        LLVMValueRef oh = cg_add(c, cg_mul(c, k->oh, cg_i64(c, rows)), cg_i64(c, r));
        LLVMValueRef row = cg_muladd(c, cg_add(c, cg_muladd(c, k->bn, k->Hp, cg_mul(c, oh, cg_i64(c, k->sh))), kh),
                                     k->Wp, cg_add(c, ow0, kw));
        for (int v = 0; v < nv; v++)
            x[r][v] = cg_vload_lanes(c, k->in, cg_add(c, row, cg_i64(c, (int64_t)v * vw)),
                                     v == nv - 1 && tail && !k->slack ? tail : vw, vw);
    }
    for (int m = 0; m < k->M; m++) {
        LLVMValueRef w = cg_splat(c, cg_load(c, k->wpack, cg_add(c, tap, cg_i64(c, m)), "w"), vw);
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < nv; v++)
                LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc[r][m][v], vw), cg_fmul(c, w, x[r][v])), acc[r][m][v]);
    }
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    /* a row of results: pooling, the max of the two rows and of neighbouring
     * pixels, their even lanes two vectors into one */
    LLVMValueRef s[16][8];
    int outs = nv, pixels = (nv - 1) * vw + (tail ? tail : vw);
    for (int m = 0; m < k->M; m++)
        for (int v = 0; v < nv; v++) {
            s[m][v] = cg_vget(c, acc[0][m][v], vw);
            if (k->pool)
                s[m][v] = pair_max(c, cg_vmax(c, cg_vget(c, acc[1][m][v], vw), s[m][v]));
            s[m][v] = conv_act(c, k, s[m][v]);
        }
    if (k->pool) {
        outs = (nv + 1) / 2;
        pixels /= 2;
        for (int m = 0; m < k->M; m++)
            for (int v = 0; v < outs; v++)
                s[m][v] = even_lanes(c, s[m][2 * v], 2 * v + 1 < nv ? s[m][2 * v + 1] : cg_vzero(c, vw));
    }
    int64_t OH = k->pool ? k->OH / 2 : k->OH, OW = k->pool ? k->OW / 2 : k->OW;
    LLVMValueRef ox = k->pool ? LLVMBuildUDiv(c->b, ow0, cg_i64(c, 2), "") : ow0;
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, k->bn, OH, k->oh), OW, ox);
    for (int v = 0; v < outs; v++) {
        LLVMValueRef col[16];
        for (int m = 0; m < k->M; m++)
            col[m] = s[m][v];
        int n = pixels - v * vw < vw ? pixels - v * vw : vw;
        store_interleaved(c, col, (int)k->M, n, k->out,
                          cg_mul(c, cg_add(c, pix, cg_i64(c, (int64_t)v * vw)), cg_i64(c, k->M)));
    }
}

void emit_conv_rows(Cg *c, ConvKernel *k)
{
    int vw = c->vw, rows = k->pool ? 2 : 1;
    /* vectors of the row per block: as many as the registers hold, M each
     * per row; an even count when pooling, so that pixel pairs and the
     * vectors merged stay together */
    int nv = (c->nregs - 2) / (int)(k->M * rows);
    nv = nv > 8 ? 8 : nv < 1 ? 1 : nv;
    if (k->pool && nv > 1)
        nv &= ~1;
    int64_t vecs = (k->OW + vw - 1) / vw;
    if (nv > vecs)
        nv = (int)vecs;
    int64_t span = (int64_t)nv * vw, full = k->OW / span, left = k->OW % span;
    Loop ln, lh, lw;
    k->bn = cg_loop(c, &ln, c->batch, "n");
    k->oh = cg_loopn(c, &lh, k->OH / rows, "oh");
    if (full) {
        LLVMValueRef ob = cg_loopn(c, &lw, full, "ob");
        conv_rows_block(c, k, cg_mul(c, ob, cg_i64(c, span)), nv, 0);
        cg_loop_end(c, &lw);
    }
    if (left)
        conv_rows_block(c, k, cg_i64(c, full * span), (int)((left + vw - 1) / vw), (int)(left % vw));
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

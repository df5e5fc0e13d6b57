/*
 * winograd.c: 3x3 stride-1 conv kernels as Winograd F(2x2, 3x3) (Lavin and
 * Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
 *
 * Each 4x4 tile d of the padded input and each 3x3 kernel g are transformed,
 * V = B^T d B and U = G g G^T; their products, summed over input channels,
 * are 16 independent matrix products M = V U (the register-blocked 1x1 conv
 * kernel of conv.c); each 2x2 output tile is Y = A^T M A. That is 16
 * multiplies per 4 outputs and channel pair instead of 36. The work goes a
 * row of tiles at a time, so that V and M stay in cache:
 *
 *   B^T = | 1  0 -1  0 |   G = | 1    0    0  |   A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |       | 1/2  1/2  1/2|         | 0  1 -1 -1 |
 *         | 0 -1  1  0 |       | 1/2 -1/2  1/2|
 *         | 0  1  0 -1 |       | 0    0    1  |
 */
#include "../cnnc.h"

/* Worth it when the sums over channels are long enough to amortize the
 * transforms; the output must tile by 2x2 exactly. */
bool wino_fits(const ConvKernel *k)
{
    return k->kh == 3 && k->kw == 3 && k->sh == 1 && k->sw == 1 && k->OH % 2 == 0 &&
           k->OW % 2 == 0 && k->C >= 16 && k->M >= 16;
}

static int64_t floats64(int64_t n)
{
    return (n * (int64_t)sizeof(float) + 63) & ~(int64_t)63;
}

/* U (16, C, Mp), then V (16, TW, C) and M (16, TW, M) for one row of tiles;
 * Mp (whole vectors) is at most M rounded up to 16 */
static int64_t u_floats(const ConvKernel *k)
{
    return 16 * k->C * ((k->M + 15) / 16 * 16);
}

int64_t wino_bytes(const ConvKernel *k)
{
    int64_t TW = k->OW / 2;
    return floats64(u_floats(k)) + floats64(16 * TW * k->C) + floats64(16 * TW * k->M);
}

static LLVMValueRef sub(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    LLVMValueRef v = LLVMBuildFSub(c->b, a, b, "");
    LLVMSetFastMathFlags(v, LLVMFastMathAllowContract | LLVMFastMathAllowReassoc);
    return v;
}

typedef struct Wino {
    const ConvKernel *k;
    LLVMValueRef u, v, m;           /* the transformed weights, input tiles, products */
    LLVMValueRef n, th, tw;         /* image, tile row, tile column */
    LLVMValueRef ch;                /* weights: the input channel */
} Wino;

/* U (xi, c, m0..) = G g G^T for the kernels of input channel c, output
 * channels m0..m0+width, from wpack (kh, kw, C, M). */
static void weight_tile(Cg *c, void *ctx, LLVMValueRef m0, int width)
{
    Wino *w = ctx;
    const ConvKernel *k = w->k;
    LLVMValueRef g[3][3], gg[4][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            g[i][j] = cg_vload(c, k->wpack, cg_add(c, cg_mul(c, cg_muladd(c, w->ch, 1, cg_i64(c, (int64_t)(i * 3 + j) * k->C)),
                                                            cg_i64(c, k->Mp)), m0), width);
    LLVMValueRef half = cg_splat(c, cg_f32(c, 0.5), width);
    for (int j = 0; j < 3; j++) {
        gg[0][j] = g[0][j];
        gg[1][j] = cg_fmul(c, half, cg_fadd(c, cg_fadd(c, g[0][j], g[1][j]), g[2][j]));
        gg[2][j] = cg_fmul(c, half, cg_fadd(c, sub(c, g[0][j], g[1][j]), g[2][j]));
        gg[3][j] = g[2][j];
    }
    for (int i = 0; i < 4; i++) {
        LLVMValueRef u[4] = {
            gg[i][0],
            cg_fmul(c, half, cg_fadd(c, cg_fadd(c, gg[i][0], gg[i][1]), gg[i][2])),
            cg_fmul(c, half, cg_fadd(c, sub(c, gg[i][0], gg[i][1]), gg[i][2])),
            gg[i][2],
        };
        for (int j = 0; j < 4; j++)
            cg_vstore(c, u[j], w->u, cg_add(c, cg_mul(c, cg_muladd(c, cg_i64(c, i * 4 + j), k->C, w->ch),
                                                      cg_i64(c, k->Mp)), m0), width);
    }
}

/* V (xi, tw, c0..) = B^T d B for tile (th, tw) of image n */
static void input_tile(Cg *c, void *ctx, LLVMValueRef c0, int width)
{
    Wino *w = ctx;
    const ConvKernel *k = w->k;
    int64_t TW = k->OW / 2;
    LLVMValueRef d[4][4], t[4][4];
    LLVMValueRef row0 = cg_add(c, cg_mul(c, w->n, cg_i64(c, k->Hp)), cg_mul(c, w->th, cg_i64(c, 2)));
    for (int i = 0; i < 4; i++) {
        LLVMValueRef pix = cg_muladd(c, cg_add(c, row0, cg_i64(c, i)), k->Wp, cg_mul(c, w->tw, cg_i64(c, 2)));
        for (int j = 0; j < 4; j++)
            d[i][j] = cg_vload(c, k->in, cg_add(c, cg_mul(c, cg_add(c, pix, cg_i64(c, j)), cg_i64(c, k->C)), c0), width);
    }
    for (int j = 0; j < 4; j++) {
        t[0][j] = sub(c, d[0][j], d[2][j]);
        t[1][j] = cg_fadd(c, d[1][j], d[2][j]);
        t[2][j] = sub(c, d[2][j], d[1][j]);
        t[3][j] = sub(c, d[1][j], d[3][j]);
    }
    for (int i = 0; i < 4; i++) {
        LLVMValueRef v[4] = {sub(c, t[i][0], t[i][2]), cg_fadd(c, t[i][1], t[i][2]),
                             sub(c, t[i][2], t[i][1]), sub(c, t[i][1], t[i][3])};
        for (int j = 0; j < 4; j++)
            cg_vstore(c, v[j], w->v, cg_add(c, cg_mul(c, cg_muladd(c, cg_i64(c, i * 4 + j), TW, w->tw),
                                                      cg_i64(c, k->C)), c0), width);
    }
}

/* out (2x2 pixels of tile (th, tw), m0..) = bias + A^T M A, then relu */
static void output_tile(Cg *c, void *ctx, LLVMValueRef m0, int width)
{
    Wino *w = ctx;
    const ConvKernel *k = w->k;
    int64_t TW = k->OW / 2;
    LLVMValueRef m[4][4], s[2][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            m[i][j] = cg_vload(c, w->m, cg_add(c, cg_mul(c, cg_muladd(c, cg_i64(c, i * 4 + j), TW, w->tw),
                                                        cg_i64(c, k->M)), m0), width);
    for (int j = 0; j < 4; j++) {
        s[0][j] = cg_fadd(c, cg_fadd(c, m[0][j], m[1][j]), m[2][j]);
        s[1][j] = sub(c, sub(c, m[1][j], m[2][j]), m[3][j]);
    }
    LLVMValueRef bias = k->bias ? cg_vload(c, k->bias, m0, width) : NULL;
    LLVMValueRef row0 = cg_add(c, cg_mul(c, w->n, cg_i64(c, k->OH)), cg_mul(c, w->th, cg_i64(c, 2)));
    for (int i = 0; i < 2; i++) {
        LLVMValueRef y[2] = {cg_fadd(c, cg_fadd(c, s[i][0], s[i][1]), s[i][2]),
                             sub(c, sub(c, s[i][1], s[i][2]), s[i][3])};
        LLVMValueRef pix = cg_muladd(c, cg_add(c, row0, cg_i64(c, i)), k->OW, cg_mul(c, w->tw, cg_i64(c, 2)));
        for (int j = 0; j < 2; j++) {
            LLVMValueRef at = cg_add(c, cg_mul(c, cg_add(c, pix, cg_i64(c, j)), cg_i64(c, k->M)), m0);
            LLVMValueRef v = y[j];
            if (bias)
                v = cg_fadd(c, v, bias);
            if (k->act == ACT_RELU)
                v = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, v, cg_vzero(c, width), ""), v,
                                    cg_vzero(c, width), "relu");
            cg_vstore(c, v, k->out, at, width);
        }
    }
}

void emit_wino(Cg *c, const ConvKernel *k)
{
    int64_t TH = k->OH / 2, TW = k->OW / 2;
    Wino w = {.k = k, .u = k->scratch};
    LLVMValueRef i8s[] = {cg_i64(c, floats64(u_floats(k)))};
    LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
    w.v = LLVMBuildInBoundsGEP2(c->b, i8, k->scratch, i8s, 1, "V");
    LLVMValueRef mo[] = {cg_i64(c, floats64(u_floats(k)) + floats64(16 * TW * k->C))};
    w.m = LLVMBuildInBoundsGEP2(c->b, i8, k->scratch, mo, 1, "M");

    /* U's padding lanes (Mp > M) only reach the accumulators' padding lanes,
     * which are never stored; zeroed all the same */
    if (k->Mp != k->M)
        LLVMBuildMemSet(c->b, w.u, LLVMConstInt(i8, 0, false), cg_i64(c, 16 * k->C * k->Mp * 4), 4);
    Loop lc;
    w.ch = cg_loopn(c, &lc, k->C, "c");
    cg_for_vectors(c, k->M, weight_tile, &w);
    cg_loop_end(c, &lc);

    Loop ln, lh, lt, lx;
    w.n = cg_loop(c, &ln, c->batch, "n");
    w.th = cg_loopn(c, &lh, TH, "th");
    w.tw = cg_loopn(c, &lt, TW, "tw");
    cg_for_vectors(c, k->C, input_tile, &w);
    cg_loop_end(c, &lt);
    /* the 16 products of this row of tiles, each a 1x1 conv of TW pixels */
    LLVMValueRef xi = cg_loopn(c, &lx, 16, "xi");
    ConvKernel g = {1, TW, k->C, 1, TW, k->M, 1, 1, 1, 1, ACT_NONE,
                    .in = cg_at(c, w.v, cg_mul(c, xi, cg_i64(c, TW * k->C))),
                    .wpack = cg_at(c, w.u, cg_mul(c, xi, cg_i64(c, k->C * k->Mp))),
                    .out = cg_at(c, w.m, cg_mul(c, xi, cg_i64(c, TW * k->M))), .Mp = k->Mp};
    LLVMValueRef batch = c->batch;
    c->batch = cg_i64(c, 1);
    emit_conv_kernel(c, &g);
    c->batch = batch;
    cg_loop_end(c, &lx);
    w.tw = cg_loopn(c, &lt, TW, "tw");
    cg_for_vectors(c, k->M, output_tile, &w);
    cg_loop_end(c, &lt);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

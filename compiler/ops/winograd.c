/*
 * winograd.c: stride-1 square conv kernels as Winograd F(m x m, r x r) (Lavin
 * and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
 *
 * Each a x a tile d of the padded input (a = m + r - 1) and each r x r kernel
 * g are transformed, V = B^T d B and U = G g G^T; their products, summed over
 * input channels, are a*a independent matrix products M = V U (the
 * register-blocked 1x1 conv kernel of conv.c); each m x m output tile is
 * Y = A^T M A. F(2x2, 3x3) does 16 multiplies per 4 outputs and channel pair
 * instead of 36, F(4x4, 3x3) 36 instead of 144, F(2x2, 5x5) 36 instead of
 * 100. The work goes a row of tiles at a time, so that V and M stay in
 * cache.
 *
 * The matrices are tools/winograd.py's output (derived by the Toom-Cook
 * construction and checked there, exactly and in float32):
 */
#include "../cnnc.h"

/* F(2, 3), points 0, 1, -1 and infinity; float32 error 3.4e-07 */
static const double AT23[] = {1, 1, 1, 0, 0, 1, -1, 1};
static const double G23[] = {-1, 0, 0, 1.0 / 2, 1.0 / 2, 1.0 / 2, 1.0 / 2, -1.0 / 2, 1.0 / 2, 0, 0, 1};
static const double BT23[] = {-1, 0, 1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, -1, 0, 1};
/* F(4, 3), points 0, 1, -1, 1/2, -2 and infinity; float32 error 1.2e-06 */
static const double AT43[] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 1.0 / 2, -2, 0, 0, 1, 1, 1.0 / 4, 4, 0, 0, 1, -1, 1.0 / 8, -8, 1};
static const double G43[] = {1, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3, -1.0 / 3, 1.0 / 3, -1.0 / 3, -16.0 / 15, -8.0 / 15, -4.0 / 15, 1.0 / 15, -2.0 / 15, 4.0 / 15, 0, 0, 1};
static const double BT43[] = {1, -3.0 / 2, -2, 3.0 / 2, 1, 0, 0, -1, 1.0 / 2, 5.0 / 2, 1, 0, 0, 1, -5.0 / 2, 1.0 / 2, 1, 0, 0, -2, -1, 2, 1, 0, 0, 1.0 / 2, -1, -1.0 / 2, 1, 0, 0, 1, -3.0 / 2, -2, 3.0 / 2, 1};
/* F(2, 5), points 0, 1, -1, 2, -1/2 and infinity; float32 error 1.5e-06 */
static const double AT25[] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -1.0 / 2, 1};
static const double G25[] = {1, 0, 0, 0, 0, -1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3, 1.0 / 3, -1.0 / 3, 1.0 / 3, -1.0 / 3, 1.0 / 3, 1.0 / 15, 2.0 / 15, 4.0 / 15, 8.0 / 15, 16.0 / 15, -16.0 / 15, 8.0 / 15, -4.0 / 15, 2.0 / 15, -1.0 / 15, 0, 0, 0, 0, 1};
static const double BT25[] = {1, 3.0 / 2, -2, -3.0 / 2, 1, 0, 0, -1, -5.0 / 2, -1.0 / 2, 1, 0, 0, 1, 1.0 / 2, -5.0 / 2, 1, 0, 0, -1.0 / 2, -1, 1.0 / 2, 1, 0, 0, 2, -1, -2, 1, 0, 0, 1, 3.0 / 2, -2, -3.0 / 2, 1};

typedef struct WinoSpec {
    int m, r;                       /* outputs and taps per tile side */
    bool trains;                    /* may compute training's values (ConvKernel.exact) */
    int min_c, min_m;               /* channels below which the transforms cost more than they save */
    int min_tw;                     /* tiles a row below which the products' rows are too short */
    const double *at, *g, *bt;      /* m x a, a x r, a x a */
} WinoSpec;

/* the first that fits is taken: F(4x4, 3x3) does 36 multiplies per 16
 * outputs and channel pair (9 per output directly, 4 with F(2x2, 3x3)), when
 * a row of tiles is long enough for the products' register blocks (4 tiles:
 * 16x16 maps and up; VGG-small's and ResNet-20's 8x8 stay F(2x2)).
 *
 * Training (ConvKernel.exact) does not take F(4x4): its rounding, 3.5x
 * F(2x2)'s, moves a relu input near zero across it often enough that the
 * steps leave PyTorch's (ResNet-20's fixture on AVX-512: 8e-05 off after
 * three steps; 1.3e-04 with F(4x4) in the input gradients alone; 6e-07
 * without it). F(2x2, 5x5) is the only kind for 5x5 kernels. */
static const WinoSpec specs[] = {
    {4, 3, false, 16, 16, 4, AT43, G43, BT43},
    {2, 3, true, 16, 16, 1, AT23, G23, BT23},
    {2, 5, true, 4, 8, 1, AT25, G25, BT25},
};

enum { A_MAX = 6 };                 /* the largest tile side, m + r - 1 */

static const WinoSpec *spec_of(const ConvKernel *k)
{
    if (k->sh != 1 || k->sw != 1 || k->kh != k->kw || !conv_kernel_plain(k))
        return NULL;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        const WinoSpec *s = &specs[i];
        if ((s->trains || !k->exact) && k->kh == s->r && k->OH % s->m == 0 && k->OW % s->m == 0 && k->C >= s->min_c && k->M >= s->min_m &&
            k->OW / s->m >= s->min_tw)
            return s;
    }
    return NULL;
}

bool wino_fits(const ConvKernel *k)
{
    return spec_of(k) != NULL;
}

int wino_tile(const ConvKernel *k)
{
    return spec_of(k)->m;
}

static int64_t floats64(int64_t n)
{
    return (n * (int64_t)sizeof(float) + 63) & ~(int64_t)63;
}

/* U (a*a, C, Mp), then V (a*a, TW, C) and M (a*a, TW, M) for one row of
 * tiles; Mp (whole vectors) is at most M rounded up to 16 */
static int64_t u_floats(const ConvKernel *k, int a)
{
    return (int64_t)a * a * k->C * ((k->M + 15) / 16 * 16);
}

int64_t wino_u_bytes(const ConvKernel *k)
{
    const WinoSpec *s = spec_of(k);
    return floats64(u_floats(k, s->m + s->r - 1));
}

int64_t wino_bytes(const ConvKernel *k)
{
    const WinoSpec *s = spec_of(k);
    int a = s->m + s->r - 1;
    int64_t TW = k->OW / s->m;
    return floats64(u_floats(k, a)) + floats64((int64_t)a * a * TW * k->C) + floats64((int64_t)a * a * TW * k->M);
}

/* sum over j < n of coef[j * stride] * v[j]: zeros skipped, +-1 as adds */
static LLVMValueRef lincomb(Cg *c, const double *coef, int stride, LLVMValueRef *v, int n, int width)
{
    LLVMValueRef sum = NULL;
    for (int j = 0; j < n; j++) {
        double w = coef[j * stride];
        if (w == 0)
            continue;
        LLVMValueRef t = w == 1 || w == -1 ? v[j] : cg_fmul(c, cg_splat(c, cg_f32(c, w), width), v[j]);
        if (!sum)
            sum = w == -1 ? LLVMBuildFNeg(c->b, t, "") : t;
        else if (w == -1)
            sum = LLVMBuildFSub(c->b, sum, t, "");
        else
            sum = cg_fadd(c, sum, t);
    }
    return sum ? sum : cg_vzero(c, width);
}

/* out (p x p) = T x in (q x q) x T^T, T being p x q (row-major) */
static void sandwich(Cg *c, const double *T, int p, int q, LLVMValueRef in[A_MAX][A_MAX],
                     LLVMValueRef out[A_MAX][A_MAX], int width)
{
    LLVMValueRef t[A_MAX][A_MAX], col[A_MAX];
    for (int i = 0; i < p; i++)
        for (int j = 0; j < q; j++) {
            for (int k = 0; k < q; k++)
                col[k] = in[k][j];
            t[i][j] = lincomb(c, T + i * q, 1, col, q, width);
        }
    for (int i = 0; i < p; i++)
        for (int l = 0; l < p; l++)
            out[i][l] = lincomb(c, T + l * q, 1, t[i], q, width);
}

typedef struct Wino {
    const ConvKernel *k;
    const WinoSpec *s;
    int a;
    LLVMValueRef u, v, m;           /* the transformed weights, input tiles, products */
    LLVMValueRef n, th, tw;         /* image, tile row, tile column */
    LLVMValueRef ch;                /* weights: the input channel */
    int bw;                         /* U's blocks for the products' kernel (conv_pack_blocks), or 0 */
} Wino;

/* where element xi of a transformed tile t is kept, in a (a*a, T, width)
 * array, for channels from c0 */
static LLVMValueRef tile_at(Cg *c, int xi, int64_t T, LLVMValueRef t, int64_t width, LLVMValueRef c0)
{
    return cg_add(c, cg_mul(c, cg_muladd(c, cg_i64(c, xi), T, t), cg_i64(c, width)), c0);
}

/* U (xi, c, m0..) = G g G^T for the kernels of input channel c, output
 * channels m0..m0+width, from wpack (kh, kw, C, Mp); each U (xi) blocked as
 * the products' kernel reads it, when it does (w->bw). */
static void weight_tile(Cg *c, void *ctx, LLVMValueRef m0, int width)
{
    Wino *w = ctx;
    const ConvKernel *k = w->k;
    int r = w->s->r, a = w->a;
    LLVMValueRef g[A_MAX][A_MAX], u[A_MAX][A_MAX];
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++)
            g[i][j] = cg_vload(c, k->wpack, cg_add(c, cg_mul(c, cg_add(c, w->ch, cg_i64(c, (int64_t)(i * r + j) * k->C)),
                                                            cg_i64(c, k->Mp)), m0), width);
    sandwich(c, w->s->g, a, r, g, u, width);
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            cg_vstore(c, u[i][j], w->u,
                      w->bw ? cg_add(c, cg_i64(c, (int64_t)(i * a + j) * k->C * k->Mp),
                                     conv_blocked_at(c, w->ch, k->C, m0, k->M, w->bw))
                            : tile_at(c, i * a + j, k->C, w->ch, k->Mp, m0), width);
}

/* the first pixel of row i of tile (th, tw) of image n in an (N, H, W, .) image */
static LLVMValueRef tile_pixel(Cg *c, const Wino *w, int64_t H, int64_t W, int i)
{
    int m = w->s->m;
    LLVMValueRef row = cg_add(c, cg_muladd(c, w->n, H, cg_mul(c, w->th, cg_i64(c, m))), cg_i64(c, i));
    return cg_muladd(c, row, W, cg_mul(c, w->tw, cg_i64(c, m)));
}

/* V (xi, tw, c0..) = B^T d B for tile (th, tw) of image n. With the zero
 * border the kernel's own (k->ph, k->pw: inference), a tile inside the image
 * reads it directly and one that crosses the border reads zeros there. */
static void tile_transform(Cg *c, const Wino *w, LLVMValueRef c0, int width, bool border)
{
    const ConvKernel *k = w->k;
    int a = w->a, m = w->s->m;
    int64_t TW = k->OW / m;
    LLVMValueRef d[A_MAX][A_MAX], v[A_MAX][A_MAX];
    for (int i = 0; i < a; i++) {
        LLVMValueRef y = cg_add(c, cg_mul(c, w->th, cg_i64(c, m)), cg_i64(c, i - k->ph));
        for (int j = 0; j < a; j++) {
            LLVMValueRef x = cg_add(c, cg_mul(c, w->tw, cg_i64(c, m)), cg_i64(c, j - k->pw));
            LLVMValueRef yy = border ? cg_clamp(c, y, k->Hp) : y, xx = border ? cg_clamp(c, x, k->Wp) : x;
            LLVMValueRef pix = cg_muladd(c, cg_muladd(c, w->n, k->Hp, yy), k->Wp, xx);
            d[i][j] = cg_vload(c, k->in, cg_add(c, cg_mul(c, pix, cg_i64(c, k->C)), c0), width);
            if (border)
                d[i][j] = LLVMBuildSelect(c->b, LLVMBuildAnd(c->b, cg_inside(c, y, k->Hp), cg_inside(c, x, k->Wp), ""),
                                          d[i][j], cg_vzero(c, width), "");
        }
    }
    sandwich(c, w->s->bt, a, a, d, v, width);
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            cg_vstore(c, v[i][j], w->v, tile_at(c, i * a + j, TW, w->tw, k->C, c0), width);
}

/* the tiles t along one axis whose pixels t*m - p .. t*m - p + a - 1 are all
 * inside 0 .. n-1: t*m >= p and t*m <= n - a + p */
static LLVMValueRef tile_inside(Cg *c, LLVMValueRef t, int m, int a, int64_t p, int64_t n)
{
    int64_t lo = (p + m - 1) / m, hi = n - a + p < 0 ? -1 : (n - a + p) / m;
    return LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, t, cg_i64(c, lo), ""),
                        LLVMBuildICmp(c->b, LLVMIntSLE, t, cg_i64(c, hi), ""), "");
}

static void input_tile(Cg *c, void *ctx, LLVMValueRef c0, int width)
{
    Wino *w = ctx;
    const ConvKernel *k = w->k;
    if (!k->ph && !k->pw) {
        tile_transform(c, w, c0, width, false);
        return;
    }
    int a = w->a, m = w->s->m;
    LLVMValueRef inside = LLVMBuildAnd(c->b, tile_inside(c, w->th, m, a, k->ph, k->Hp),
                                       tile_inside(c, w->tw, m, a, k->pw, k->Wp), "inside");
    LLVMBasicBlockRef direct = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "tile");
    LLVMBasicBlockRef border = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "tile.border");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "");
    LLVMBuildCondBr(c->b, inside, direct, border);
    LLVMPositionBuilderAtEnd(c->b, direct);
    tile_transform(c, w, c0, width, false);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, border);
    tile_transform(c, w, c0, width, true);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
}

/* out (m x m pixels of tile (th, tw), m0..) = bias + A^T M A, then relu; or
 * with k->pool the max of each 2x2 window of the tile, (m/2)^2 pixels of the
 * pooled output */
static void output_tile(Cg *c, void *ctx, LLVMValueRef m0, int width)
{
    Wino *w = ctx;
    const ConvKernel *k = w->k;
    int a = w->a, m = w->s->m;
    int64_t TW = k->OW / m;
    LLVMValueRef x[A_MAX][A_MAX], y[A_MAX][A_MAX];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            x[i][j] = cg_vload(c, w->m, tile_at(c, i * a + j, TW, w->tw, k->M, m0), width);
    sandwich(c, w->s->at, m, a, x, y, width);
    LLVMValueRef bias = k->bias ? cg_vload(c, k->bias, m0, width) : NULL;
    if (k->pool) {
        /* the tile holds (m/2)^2 of the pool's 2x2 windows: each one's max,
         * in the window's order */
        for (int i = 0; i < m / 2; i++)
            for (int j = 0; j < m / 2; j++) {
                LLVMValueRef v = y[2 * i][2 * j];
                for (int t = 1; t < 4; t++)
                    v = cg_vmax(c, y[2 * i + t / 2][2 * j + t % 2], v);
                v = bias ? cg_fadd(c, v, bias) : v;
                LLVMValueRef row = cg_add(c, cg_muladd(c, w->n, k->OH / 2, cg_mul(c, w->th, cg_i64(c, m / 2))),
                                          cg_i64(c, i));
                LLVMValueRef pix = cg_muladd(c, row, k->OW / 2, cg_add(c, cg_mul(c, w->tw, cg_i64(c, m / 2)),
                                                                      cg_i64(c, j)));
                cg_vstore(c, conv_act(c, k, v), k->out,
                          cg_add(c, cg_mul(c, pix, cg_i64(c, k->M)), m0), width);
            }
        return;
    }
    for (int i = 0; i < m; i++) {
        LLVMValueRef pix = tile_pixel(c, w, k->OH, k->OW, i);
        for (int j = 0; j < m; j++) {
            LLVMValueRef at = cg_add(c, cg_mul(c, cg_add(c, pix, cg_i64(c, j)), cg_i64(c, k->M)), m0);
            LLVMValueRef v = bias ? cg_fadd(c, y[i][j], bias) : y[i][j];
            conv_store(c, k, v, at, width);
        }
    }
}

void emit_wino(Cg *c, const ConvKernel *k)
{
    const WinoSpec *s = spec_of(k);
    int a = s->m + s->r - 1, xis = a * a;
    int64_t TH = k->OH / s->m, TW = k->OW / s->m;
    Wino w = {.k = k, .s = s, .a = a, .u = k->wino_u ? k->wino_u : k->scratch};
    /* the a*a products of a row of tiles, each a 1x1 conv of TW pixels */
    ConvKernel g = {1, TW, k->C, 1, TW, k->M, 1, 1, 1, 1, ACT_NONE, .in = NULL, .Mp = k->Mp};
    w.bw = conv_pack_blocks(c, &g);
    g.blocked = w.bw > 0;
    LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
    int64_t u = k->wino_u ? 0 : floats64(u_floats(k, a));
    LLVMValueRef vo[] = {cg_i64(c, u)};
    w.v = LLVMBuildInBoundsGEP2(c->b, i8, k->scratch, vo, 1, "V");
    LLVMValueRef mo[] = {cg_i64(c, u + floats64((int64_t)xis * TW * k->C))};
    w.m = LLVMBuildInBoundsGEP2(c->b, i8, k->scratch, mo, 1, "M");

    /* U from the weights' pack: NAME_prepare's part of an inference pass */
    if (c->prep != PREP_RUN) {
        /* U's padding lanes (Mp > M) only reach the accumulators' padding
         * lanes, which are never stored; zeroed all the same */
        if (k->Mp != k->M)
            LLVMBuildMemSet(c->b, w.u, LLVMConstInt(i8, 0, false), cg_i64(c, (int64_t)xis * k->C * k->Mp * 4), 4);
        Loop lc;
        w.ch = cg_loopn(c, &lc, k->C, "c");
        cg_for_vectors(c, k->M, weight_tile, &w);
        cg_loop_end(c, &lc);
    }
    if (c->prep == PREP_PACK)
        return;

    Loop ln, lh, lt, lx;
    w.n = cg_loop(c, &ln, c->batch, "n");
    w.th = cg_loopn(c, &lh, TH, "th");
    w.tw = cg_loopn(c, &lt, TW, "tw");
    cg_for_vectors(c, k->C, input_tile, &w);
    cg_loop_end(c, &lt);
    /* the a*a products of this row of tiles */
    LLVMValueRef xi = cg_loopn(c, &lx, xis, "xi");
    g.in = cg_at(c, w.v, cg_mul(c, xi, cg_i64(c, TW * k->C)));
    g.wpack = cg_at(c, w.u, cg_mul(c, xi, cg_i64(c, k->C * k->Mp)));
    g.out = cg_at(c, w.m, cg_mul(c, xi, cg_i64(c, TW * k->M)));
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

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
 * cache. Training's d weight takes the same transforms the other way round
 * (emit_wino_dweight, at the end).
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
 * without it). F(2x2, 5x5) is the only kind for 5x5 kernels; from 6 output
 * channels, for LeNet-5's d input into its 6 maps (its training 12% faster
 * in AVX2 code, 2% in AVX-512 code). */
static const WinoSpec specs[] = {
    {4, 3, false, 16, 16, 4, AT43, G43, BT43},
    {2, 3, true, 16, 16, 1, AT23, G23, BT23},
    {2, 5, true, 4, 6, 1, AT25, G25, BT25},
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
    LLVMValueRef t;                 /* the tile's place in V and M, of T */
    int64_t T, vxi, mxi;            /* the floats from one xi's V (M) to the next's */
    LLVMValueRef ch;                /* weights: the input channel */
    int bw;                         /* U's blocks for the products' kernel (conv_pack_blocks), or 0 */
} Wino;

/* where element xi of a transformed tile t is kept, in an array of a*a
 * blocks `stride` floats apart of (T, width) each, for channels from c0 */
static LLVMValueRef tile_at(Cg *c, int xi, int64_t stride, LLVMValueRef t, int64_t width, LLVMValueRef c0)
{
    return cg_add(c, cg_add(c, cg_i64(c, xi * stride), cg_mul(c, t, cg_i64(c, width))), c0);
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
                            : tile_at(c, i * a + j, k->C * k->Mp, w->ch, k->Mp, m0), width);
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
            cg_vstore(c, v[i][j], w->v, tile_at(c, i * a + j, w->vxi, w->t, k->C, c0), width);
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
    LLVMValueRef x[A_MAX][A_MAX], y[A_MAX][A_MAX];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            x[i][j] = cg_vload(c, w->m, tile_at(c, i * a + j, w->mxi, w->t, k->M, m0), width);
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
    Wino w = {.k = k, .s = s, .a = a, .u = k->wino_u ? k->wino_u : k->scratch,
              .T = TW, .vxi = TW * k->C, .mxi = TW * k->M};
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
    w.t = w.tw = cg_loopn(c, &lt, TW, "tw");
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
    w.t = w.tw = cg_loopn(c, &lt, TW, "tw");
    cg_for_vectors(c, k->M, output_tile, &w);
    cg_loop_end(c, &lt);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

/* ---- d weight: the same transforms, the other way round ----
 *
 * Y = A^T (U . V) A for every tile, so with dM = A dY A^T (the output
 * gradient's tile transformed) the weights' gradient is
 * dg = G^T (sum over tiles of dM . V) G: a*a matrix products
 * dU (xi) (C, M) += V (xi)^T dM (xi), summed over the tiles of R rows of
 * tiles of an image at a time, and one transform at the end. */

/* the rows of tiles a chunk takes: the most, dividing TH, whose V and dM
 * fit in half a megabyte (L2 here), and at least one */
static int64_t dweight_rows(const ConvKernel *k, const WinoSpec *s)
{
    int a = s->m + s->r - 1;
    int64_t TH = k->OH / s->m, TW = k->OW / s->m, per_row = (int64_t)a * a * TW * (k->C + k->M) * 4;
    for (int64_t R = TH; R > 1; R--)
        if (TH % R == 0 && R * per_row <= 512 * 1024)
            return R;
    return 1;
}

/* dU (a*a, C, M), then V (a*a, T, C) and dM (a*a, T, M) for a chunk, each
 * xi's block of V and dM a cache line longer: whole powers of two apart,
 * their stores would share one set of the L1 cache */
static int64_t skew(int64_t floats)
{
    return floats + 16;
}

int64_t wino_dweight_bytes(const ConvKernel *k)
{
    const WinoSpec *s = spec_of(k);
    int a = s->m + s->r - 1;
    int64_t T = dweight_rows(k, s) * (k->OW / s->m);
    return floats64((int64_t)a * a * k->C * k->M) + floats64((int64_t)a * a * skew(T * k->C)) +
           floats64((int64_t)a * a * skew(T * k->M));
}

/* the transpose of a p x q matrix, into out (q x p) */
static void transpose(const double *m, int p, int q, double *out)
{
    for (int i = 0; i < p; i++)
        for (int j = 0; j < q; j++)
            out[j * p + i] = m[i * q + j];
}

typedef struct WinoGrad {
    Wino w;
    LLVMValueRef g, dwpack;         /* d pre (N, OH, OW, M); d weight's pack (Kh, Kw, C, M) */
    double A[A_MAX * A_MAX], GT[A_MAX * A_MAX];    /* a x m, r x a */
    LLVMValueRef xi, m0;            /* the products' loop, while emitting */
    int bm;
} WinoGrad;

/* dM (xi, t, m0..) = A dY A^T for tile (th, tw) of image n */
static void grad_tile(Cg *c, void *ctx, LLVMValueRef m0, int width)
{
    WinoGrad *x = ctx;
    const Wino *w = &x->w;
    const ConvKernel *k = w->k;
    int a = w->a, m = w->s->m;
    LLVMValueRef d[A_MAX][A_MAX], v[A_MAX][A_MAX];
    for (int i = 0; i < m; i++) {
        LLVMValueRef pix = tile_pixel(c, w, k->OH, k->OW, i);
        for (int j = 0; j < m; j++)
            d[i][j] = cg_vload(c, x->g, cg_add(c, cg_mul(c, cg_add(c, pix, cg_i64(c, j)), cg_i64(c, k->M)), m0), width);
    }
    sandwich(c, x->A, a, m, d, v, width);
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            cg_vstore(c, v[i][j], w->m, tile_at(c, i * a + j, w->mxi, w->t, k->M, m0), width);
}

/* dU (xi, c0 .. c0+rows, m0 .. m0+bm) += the sum over the chunk's tiles t of
 * V (xi, t, c) dM (xi, t, m): rows x bm accumulators, each dM vector loaded
 * serving every row */
static void product_block(Cg *c, void *ctx, LLVMValueRef c0, int rows)
{
    WinoGrad *x = ctx;
    const Wino *w = &x->w;
    const ConvKernel *k = w->k;
    LLVMValueRef acc[32], at[32];
    LLVMValueRef urow = cg_muladd(c, x->xi, k->C, c0);
    for (int i = 0; i < rows; i++) {
        at[i] = cg_add(c, cg_mul(c, cg_add(c, urow, cg_i64(c, i)), cg_i64(c, k->M)), x->m0);
        acc[i] = cg_vvar(c, x->bm, "du");
        LLVMBuildStore(c->b, cg_vload(c, w->u, at[i], x->bm), acc[i]);
    }
    Loop lt;
    LLVMValueRef t = cg_loopn(c, &lt, w->T, "t");
    LLVMValueRef gv = cg_vload(c, w->m, cg_add(c, cg_muladd(c, x->xi, w->mxi, cg_mul(c, t, cg_i64(c, k->M))), x->m0),
                               x->bm);
    LLVMValueRef vrow = cg_add(c, cg_muladd(c, x->xi, w->vxi, cg_mul(c, t, cg_i64(c, k->C))), c0);
    for (int i = 0; i < rows; i++) {
        LLVMValueRef v = cg_splat(c, cg_load(c, w->v, cg_add(c, vrow, cg_i64(c, i)), "v"), x->bm);
        LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, acc[i], x->bm), cg_fmul(c, v, gv)), acc[i]);
    }
    cg_loop_end(c, &lt);
    for (int i = 0; i < rows; i++)
        cg_vstore(c, cg_vget(c, acc[i], x->bm), w->u, at[i], x->bm);
}

static void product_chans(Cg *c, void *ctx, LLVMValueRef m0, int bm)
{
    WinoGrad *x = ctx;
    x->m0 = m0;
    x->bm = bm;
    cg_for_blocks(c, x->w.k->C, conv_block_count(c, bm, x->w.k->C), product_block, x);
}

/* d weight's pack (kh, kw, ch, m0..) = G^T dU G */
static void weight_grad_tile(Cg *c, void *ctx, LLVMValueRef m0, int width)
{
    WinoGrad *x = ctx;
    const Wino *w = &x->w;
    const ConvKernel *k = w->k;
    int a = w->a, r = w->s->r;
    LLVMValueRef u[A_MAX][A_MAX], d[A_MAX][A_MAX];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            u[i][j] = cg_vload(c, w->u, cg_add(c, cg_mul(c, cg_muladd(c, cg_i64(c, i * a + j), k->C, w->ch),
                                                           cg_i64(c, k->M)), m0), width);
    sandwich(c, x->GT, r, a, u, d, width);
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++)
            cg_vstore(c, d[i][j], x->dwpack, cg_add(c, cg_mul(c, cg_muladd(c, cg_i64(c, i * r + j), k->C, w->ch),
                                                              cg_i64(c, k->M)), m0), width);
}

/* dwpack (Kh, Kw, C, M) = d weight of forward kernel k (in: its input,
 * unpadded, with the zero border ph, pw; scratch: wino_dweight_bytes) for
 * the output gradient g */
void emit_wino_dweight(Cg *c, const ConvKernel *k, LLVMValueRef g, LLVMValueRef dwpack)
{
    const WinoSpec *s = spec_of(k);
    int a = s->m + s->r - 1, xis = a * a;
    int64_t R = dweight_rows(k, s), TW = k->OW / s->m, T = R * TW;
    WinoGrad x = {.w = {.k = k, .s = s, .a = a, .T = T, .vxi = skew(T * k->C), .mxi = skew(T * k->M)},
                  .g = g, .dwpack = dwpack};
    transpose(s->at, s->m, a, x.A);
    transpose(s->g, a, s->r, x.GT);
    Wino *w = &x.w;
    LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
    int64_t u = floats64((int64_t)xis * k->C * k->M);
    w->u = k->scratch;
    LLVMValueRef vo[] = {cg_i64(c, u)}, mo[] = {cg_i64(c, u + floats64(xis * w->vxi))};
    w->v = LLVMBuildInBoundsGEP2(c->b, i8, k->scratch, vo, 1, "V");
    w->m = LLVMBuildInBoundsGEP2(c->b, i8, k->scratch, mo, 1, "dM");
    cg_zero(c, w->u, cg_i64(c, (int64_t)xis * k->C * k->M));

    Loop ln, lr, lh, lt, lx, lc;
    w->n = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef chunk = cg_loopn(c, &lr, k->OH / s->m / R, "chunk");
    LLVMValueRef i = cg_loopn(c, &lh, R, "th");
    w->th = cg_muladd(c, chunk, R, i);
    w->tw = cg_loopn(c, &lt, TW, "tw");
    w->t = cg_muladd(c, i, TW, w->tw);
    cg_for_vectors(c, k->C, input_tile, w);
    cg_for_vectors(c, k->M, grad_tile, &x);
    cg_loop_end(c, &lt);
    cg_loop_end(c, &lh);
    x.xi = cg_loopn(c, &lx, xis, "xi");
    cg_for_blocks(c, k->M, conv_block_width(c, k->M), product_chans, &x);
    cg_loop_end(c, &lx);
    cg_loop_end(c, &lr);
    cg_loop_end(c, &ln);
    w->ch = cg_loopn(c, &lc, k->C, "c");
    cg_for_vectors(c, k->M, weight_grad_tile, &x);
    cg_loop_end(c, &lc);
}

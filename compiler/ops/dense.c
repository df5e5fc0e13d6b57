/*
 * dense.c: the fc op.
 *
 * out (N,U) = b (U) + weight (U,I) . inp (N,I), the layout of torch.nn.Linear.
 */
#include "../cnnc.h"

void shape_fc(Graph *g, Node *n)
{
    int64_t units = node_arg(n, "units")->v.i, inputs = n->in.d[0];
    shape_layer_act(g, n);
    n->out = (Shape){1, {units}};
    n->rf_global = true;
    n->weight = shape_param(g, n, "weight", 2, (int64_t[]){units, inputs});
    if (!n->weight) {
        n->out.rank = 0;
        return;
    }
    n->weight->init = (int)node_arg(n, "init")->v.i;
    n->weight->fan_in = inputs;
    n->weight->fan_out = units;
    if (node_arg(n, "bias")->v.i) {
        n->bias = shape_param(g, n, "bias", 1, (int64_t[]){units});
        if (n->bias)
            n->bias->init = INIT_ZEROS;
    }
    shape_count_macs(g, n, inputs, (n->bias != NULL) + (n->act != ACT_NONE));
}

/* ---- the plan's hook (ops.def flag SCRATCH): only a folded batch norm's
 * scale, shift and the folded bias, in inference ---- */

int64_t kept_fc(const Node *n, int64_t batch)
{
    (void)n, (void)batch;
    return 0;
}

int64_t scratch_fc(Scratch *s, const Node *n, int64_t batch, bool training, int64_t at, int64_t *keep)
{
    (void)batch, (void)keep;
    *s = SCRATCH_NONE;
    if (!n->fold || training)
        return at;
    s->fold = at;
    return at + plan_floats(3 * n->out.d[0]);
}

/* ---- code generation ----
 *
 * Vectors run along I, the inputs, contiguous in both inp (N,I) and weight
 * (U,I). Forward: a block of NB images x UB units, one vector accumulator
 * per pair, so that each vector of I loaded (NB inputs, UB weight rows)
 * feeds NB x UB FMAs; the sums are reduced at the end. d weight: UB rows x R
 * vectors of accumulators, summed over the batch, each input vector loaded
 * once for UB rows. d inp: NB images x R vectors of accumulators, summed
 * over the units, each weight vector loaded once for NB images. UB is 4 with
 * 32 vector registers (AVX-512) and 2 with 16 (AVX2), where 4 x 4
 * accumulators and their operands would spill. */

enum { NB = 4, UB_MAX = 4 };

static int units_per_block(Cg *c)
{
    return c->nregs >= 32 ? 4 : 2;
}

/* The vector tiles covering [0, I): `full` tiles of `vecs` vectors of vw
 * floats in a loop, then whole vectors left over, then a last partial one. */
typedef struct Span {
    int64_t full;                   /* tiles of `vecs` vectors */
    int vecs, vw;
    int rest_vecs;                  /* whole vectors after the tiles */
    int tail;                       /* floats in the last partial vector, or 0 */
} Span;

static Span span_of(int64_t I, int vw, int vecs)
{
    Span s = {I / ((int64_t)vecs * vw), vecs, vw, 0, 0};
    int64_t left = I - s.full * vecs * vw;
    s.rest_vecs = (int)(left / vw);
    s.tail = (int)(left % vw);
    return s;
}

/* Calls tile(i0, widths...) for every tile of the span: a loop over the full
 * ones, then the rest as one tile of whole vectors and one partial vector. */
typedef void TileFn(Cg *c, void *ctx, LLVMValueRef i0, const int *widths, int n);

static void for_tiles(Cg *c, const Span *s, TileFn *fn, void *ctx)
{
    int widths[16];
    if (s->full) {
        Loop l;
        LLVMValueRef t = cg_loopn(c, &l, s->full, "tile");
        for (int r = 0; r < s->vecs; r++)
            widths[r] = s->vw;
        fn(c, ctx, cg_mul(c, t, cg_i64(c, (int64_t)s->vecs * s->vw)), widths, s->vecs);
        cg_loop_end(c, &l);
    }
    int64_t at = s->full * s->vecs * s->vw;
    int n = 0;
    for (int r = 0; r < s->rest_vecs; r++)
        widths[n++] = s->vw;
    if (s->tail)
        widths[n++] = s->tail;
    if (n)
        fn(c, ctx, cg_i64(c, at), widths, n);
}

/* A loop over [from, to) that may run zero times. */
static LLVMValueRef loop_maybe(Cg *c, Loop *l, LLVMBasicBlockRef *join, LLVMValueRef from,
                               LLVMValueRef to, const char *name)
{
    *join = cg_if(c, LLVMBuildICmp(c->b, LLVMIntSLT, from, to, ""), name);
    return cg_add(c, cg_loop(c, l, LLVMBuildSub(c->b, to, from, ""), name), from);
}

static void loop_maybe_end(Cg *c, Loop *l, LLVMBasicBlockRef join)
{
    cg_loop_end(c, l);
    cg_if_end(c, join);
}

static LLVMValueRef reduce_add(Cg *c, LLVMValueRef v, int width)
{
    char name[48];
    width = cg_lanes(c, width);
    snprintf(name, sizeof name, "llvm.vector.reduce.fadd.v%df32", width);
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)width);
    LLVMTypeRef ft = LLVMFunctionType(c->f32, (LLVMTypeRef[]){c->f32, vt}, 2, false);
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
    if (!f)
        f = LLVMAddFunction(c->mod, name, ft);
    LLVMValueRef r = LLVMBuildCall2(c->b, ft, f, (LLVMValueRef[]){cg_f32(c, 0), v}, 2, "sum");
    LLVMSetFastMathFlags(r, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
    return r;
}

typedef struct FcFwd {
    const Node *n;
    LLVMValueRef inp, w, bias, out, n0, u0;
    LLVMValueRef scale;             /* a folded batch norm's, or NULL */
    int k, rows;                    /* images and units in this block */
    LLVMValueRef acc[NB][UB_MAX];
} FcFwd;

/* the block's sums over n floats of I from i (n <= vw, in vw lanes) */
static void fc_fwd_vec(Cg *c, void *ctx, LLVMValueRef i, int n)
{
    FcFwd *x = ctx;
    int64_t I = x->n->in.d[0];
    LLVMValueRef xv[NB], wv[UB_MAX];
    for (int j = 0; j < x->k; j++)
        xv[j] = cg_vload_lanes(c, x->inp, cg_add(c, cg_mul(c, cg_add(c, x->n0, cg_i64(c, j)), cg_i64(c, I)), i),
                               n, c->vw);
    for (int r = 0; r < x->rows; r++)
        wv[r] = cg_vload_lanes(c, x->w, cg_add(c, cg_mul(c, cg_add(c, x->u0, cg_i64(c, r)), cg_i64(c, I)), i),
                               n, c->vw);
    for (int j = 0; j < x->k; j++)
        for (int r = 0; r < x->rows; r++)
            LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, x->acc[j][r], c->vw), cg_fmul(c, xv[j], wv[r])),
                           x->acc[j][r]);
}

/* out (n0 .. n0+k, u0 .. u0+rows) */
static void fc_fwd_block(Cg *c, FcFwd *x)
{
    int64_t I = x->n->in.d[0], U = x->n->out.d[0];
    for (int j = 0; j < x->k; j++)
        for (int r = 0; r < x->rows; r++)
            LLVMBuildStore(c->b, cg_vzero(c, c->vw), x->acc[j][r]);
    cg_for_vectors(c, I, fc_fwd_vec, x);
    for (int j = 0; j < x->k; j++)
        for (int r = 0; r < x->rows; r++) {
            LLVMValueRef u = cg_add(c, x->u0, cg_i64(c, r));
            LLVMValueRef sum = reduce_add(c, cg_vget(c, x->acc[j][r], c->vw), c->vw);
            if (x->scale)
                sum = cg_fmul(c, sum, cg_load(c, x->scale, u, "s"));
            if (x->bias)
                sum = cg_fadd(c, sum, cg_load(c, x->bias, u, "b"));
            LLVMValueRef oi = cg_add(c, cg_mul(c, cg_add(c, x->n0, cg_i64(c, j)), cg_i64(c, U)), u);
            cg_store(c, cg_act(c, x->n->act, x->n->act_param, sum), x->out, oi);
        }
}

/* every unit of the k images from n0: blocks of UB, then the rest */
static void fc_fwd_images(Cg *c, FcFwd *x)
{
    int64_t U = x->n->out.d[0];
    int UB = units_per_block(c);
    if (U / UB) {
        Loop lu;
        x->u0 = cg_mul(c, cg_loopn(c, &lu, U / UB, "ub"), cg_i64(c, UB));
        x->rows = UB;
        fc_fwd_block(c, x);
        cg_loop_end(c, &lu);
    }
    if (U % UB) {
        x->u0 = cg_i64(c, U / UB * UB);
        x->rows = (int)(U % UB);
        fc_fwd_block(c, x);
    }
}

/* Calls body for blocks of NB images from x->n0 (x->k = NB), then for the
 * rest one by one (x->k = 1). */
static void for_image_blocks(Cg *c, LLVMValueRef *n0, int *k, void (*body)(Cg *, void *), void *x)
{
    LLVMValueRef blocks = LLVMBuildSDiv(c->b, c->batch, cg_i64(c, NB), "blocks");
    Loop lb, ln;
    LLVMBasicBlockRef jb, jn;
    LLVMValueRef b = loop_maybe(c, &lb, &jb, cg_i64(c, 0), blocks, "nb");
    *n0 = cg_mul(c, b, cg_i64(c, NB));
    *k = NB;
    body(c, x);
    loop_maybe_end(c, &lb, jb);
    *n0 = loop_maybe(c, &ln, &jn, cg_mul(c, blocks, cg_i64(c, NB)), c->batch, "n");
    *k = 1;
    body(c, x);
    loop_maybe_end(c, &ln, jn);
}

static void fc_fwd_body(Cg *c, void *x)
{
    fc_fwd_images(c, x);
}

/* out (N,U) = act(bias (U) + weight (U,I) . inp (N,I)); with a batch norm
 * folded in (inference), act(scale * (weight . inp) + bias * scale + shift):
 * a multiply per output, the weights as they are */
void emit_fc_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    FcFwd x = {.n = n, .inp = inp, .w = cg_param(c, n->weight), .out = out,
               .bias = n->bias ? cg_param(c, n->bias) : NULL};
    if (n->fold) {
        x.scale = cg_ws(c, c->scratch[n->index].fold);
        x.bias = batchnorm_folded_bias(c, n->fold, x.scale, x.bias, n->out.d[0]);
    }
    for (int j = 0; j < NB; j++)
        for (int r = 0; r < UB_MAX; r++)
            x.acc[j][r] = cg_vvar(c, c->vw, "acc");
    for_image_blocks(c, &x.n0, &x.k, fc_fwd_body, &x);
}

typedef struct FcBwd {
    const Node *n;
    LLVMValueRef inp, w, g, dw, dinp, u0, n0;
    int rows, k;
    LLVMValueRef i0;                /* d inp: the tile's */
    const int *widths;
    int nv;
    LLVMValueRef acc[UB_MAX > NB ? UB_MAX : NB][16];
} FcBwd;

/* dweight (u0 .. u0+rows, tile) += sum over images of g (n, u) * inp (n, tile) */
static void fc_dweight_tile(Cg *c, void *vctx, LLVMValueRef i0, const int *widths, int nv)
{
    FcBwd *x = vctx;
    int64_t I = x->n->in.d[0], U = x->n->out.d[0];
    for (int j = 0; j < x->rows; j++)
        for (int r = 0; r < nv; r++) {
            x->acc[j][r] = cg_vvar(c, widths[r], "dw");
            LLVMBuildStore(c->b, cg_vzero(c, widths[r]), x->acc[j][r]);
        }
    Loop ln;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef xv[16], at = cg_add(c, cg_mul(c, bn, cg_i64(c, I)), i0);
    for (int r = 0, off = 0; r < nv; off += widths[r], r++)
        xv[r] = cg_vload(c, x->inp, cg_add(c, at, cg_i64(c, off)), widths[r]);
    for (int j = 0; j < x->rows; j++) {
        LLVMValueRef gs = cg_load(c, x->g, cg_add(c, cg_mul(c, bn, cg_i64(c, U)), cg_add(c, x->u0, cg_i64(c, j))), "g");
        for (int r = 0; r < nv; r++)
            LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, x->acc[j][r], widths[r]),
                                         cg_fmul(c, cg_splat(c, gs, widths[r]), xv[r])), x->acc[j][r]);
    }
    cg_loop_end(c, &ln);
    for (int j = 0; j < x->rows; j++)
        for (int r = 0, off = 0; r < nv; off += widths[r], r++) {
            LLVMValueRef wi = cg_add(c, cg_mul(c, cg_add(c, x->u0, cg_i64(c, j)), cg_i64(c, I)),
                                     cg_add(c, i0, cg_i64(c, off)));
            cg_vstore(c, cg_fadd(c, cg_vload(c, x->dw, wi, widths[r]), cg_vget(c, x->acc[j][r], widths[r])), x->dw, wi, widths[r]);
        }
}

/* dinp (n0 .. n0+k, tile) = sum over units of g (n, u) * weight (u, tile) */
static void fc_dinp_tile(Cg *c, void *vctx, LLVMValueRef i0, const int *widths, int nv)
{
    FcBwd *x = vctx;
    int64_t I = x->n->in.d[0], U = x->n->out.d[0];
    for (int j = 0; j < x->k; j++)
        for (int r = 0; r < nv; r++) {
            x->acc[j][r] = cg_vvar(c, widths[r], "dx");
            LLVMBuildStore(c->b, cg_vzero(c, widths[r]), x->acc[j][r]);
        }
    Loop lu;
    LLVMValueRef u = cg_loopn(c, &lu, U, "u");
    LLVMValueRef at = cg_add(c, cg_mul(c, u, cg_i64(c, I)), i0), wv[16];
    for (int r = 0, off = 0; r < nv; off += widths[r], r++)
        wv[r] = cg_vload(c, x->w, cg_add(c, at, cg_i64(c, off)), widths[r]);
    for (int j = 0; j < x->k; j++) {
        LLVMValueRef gs = cg_load(c, x->g, cg_add(c, cg_mul(c, cg_add(c, x->n0, cg_i64(c, j)), cg_i64(c, U)), u), "g");
        for (int r = 0; r < nv; r++)
            LLVMBuildStore(c->b, cg_fadd(c, cg_vget(c, x->acc[j][r], widths[r]),
                                         cg_fmul(c, cg_splat(c, gs, widths[r]), wv[r])), x->acc[j][r]);
    }
    cg_loop_end(c, &lu);
    for (int j = 0; j < x->k; j++)
        for (int r = 0, off = 0; r < nv; off += widths[r], r++) {
            LLVMValueRef xi = cg_add(c, cg_mul(c, cg_add(c, x->n0, cg_i64(c, j)), cg_i64(c, I)),
                                     cg_add(c, i0, cg_i64(c, off)));
            cg_vstore(c, cg_vget(c, x->acc[j][r], widths[r]), x->dinp, xi, widths[r]);
        }
}

static void fc_dinp_images(Cg *c, void *vx)
{
    FcBwd *x = vx;
    fc_dinp_tile(c, x, x->i0, x->widths, x->nv);
}

/* a tile of the weight columns, all images through it while it is in cache */
static void fc_dinp_columns(Cg *c, void *vx, LLVMValueRef i0, const int *widths, int nv)
{
    FcBwd *x = vx;
    x->i0 = i0;
    x->widths = widths;
    x->nv = nv;
    for_image_blocks(c, &x->n0, &x->k, fc_dinp_images, x);
}

/* From dout (N,U): dbias (U) and dweight (U,I) +=, dinp (N,I) = */
void emit_fc_bwd(Cg *c, const Node *n, const Bwd *a)
{
    int64_t I = n->in.d[0], U = n->out.d[0];
    FcBwd x = {.n = n, .inp = a->inp, .w = cg_param(c, n->weight), .g = a->dout,
               .dw = cg_dparam(c, a->dparams, n->weight), .dinp = a->dinp};
    LLVMValueRef db = cg_dparam(c, a->dparams, n->bias);
    /* g = d pre-activation, in place: dout is this node's alone */
    Loop ln, lu;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef u = cg_loopn(c, &lu, U, "u");
    LLVMValueRef oi = cg_muladd(c, bn, U, u);
    LLVMValueRef g = cg_act_grad(c, n->act, n->act_param, NULL, cg_load(c, a->out, oi, "y"),
                                 cg_load(c, a->dout, oi, "dy"));
    cg_store(c, g, a->dout, oi);
    if (db)
        cg_accum(c, db, u, g);
    cg_loop_end(c, &lu);
    cg_loop_end(c, &ln);
    int UB = units_per_block(c);
    int vecs = (c->nregs - 2) / (UB + 1);
    if (vecs > 8)
        vecs = 8;
    Span sp = span_of(I, c->vw, vecs);
    if (x.dw) {
        Loop lb;
        if (U / UB) {
            x.u0 = cg_mul(c, cg_loopn(c, &lb, U / UB, "ub"), cg_i64(c, UB));
            x.rows = UB;
            for_tiles(c, &sp, fc_dweight_tile, &x);
            cg_loop_end(c, &lb);
        }
        if (U % UB) {
            x.u0 = cg_i64(c, U / UB * UB);
            x.rows = (int)(U % UB);
            for_tiles(c, &sp, fc_dweight_tile, &x);
        }
    }
    if (x.dinp) {
        int dvecs = (c->nregs - NB) / (NB + 1);
        Span dsp = span_of(I, c->vw, dvecs > 8 ? 8 : dvecs);
        for_tiles(c, &dsp, fc_dinp_columns, &x);
    }
}

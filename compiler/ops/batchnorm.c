/*
 * batchnorm.c: batch normalization, torch.nn.BatchNorm2d over the channels of
 * an HxWxC input (its last dimension) and BatchNorm1d over a vector.
 *
 * Training normalizes with the statistics of the whole batch:
 *   mean = sum x / N,  var = sum (x - mean)^2 / N   (N: images x pixels)
 *   y = (x - mean) / sqrt(var + eps) * gamma + beta
 * and moves the running statistics, once a step (in the share holding the
 * batch's first image), by momentum towards mean and the unbiased variance
 * var N / (N - 1). A step cut into shares (threads, processes) exchanges its
 * sums through the step's CnnSync, so every share normalizes with the
 * statistics of all the images: the sums are plain sums, added in a fixed
 * order by the runtime. Inference uses the running statistics, as a scale and
 * a shift per channel (folded into the conv or fc before it where there is
 * one, see conv.c and dense.c).
 *
 * Backward, with xhat = (x - mean) / std and N the share's count:
 *   d gamma += sum dy xhat,  d beta += sum dy
 *   dx = gamma / std (dy - (sum dy + xhat sum dy xhat) / N)
 * where, across shares, the two sums are the whole batch's, each share's
 * weighted by its images over the batch's (its gradients are of its own mean
 * loss).
 */
#include "../cnnc.h"

static int64_t channels(const Node *n)
{
    return n->in.d[n->in.rank - 1];
}

/* values per channel of one image */
static int64_t pixels(const Node *n)
{
    return shape_elems(n->in) / channels(n);
}

void shape_batchnorm(Graph *g, Node *n)
{
    Diag *d = g->diag;
    n->out = n->in;
    const Arg *eps = node_arg(n, "eps"), *mom = node_arg(n, "momentum");
    n->eps = eps->v.r;
    n->momentum = mom->v.r;
    if (!(n->eps > 0))
        diag_error(d, eps->loc, "'eps' of '%s' must be above 0, but is %g", n->name, n->eps);
    if (!(n->momentum >= 0 && n->momentum <= 1))
        diag_error(d, mom->loc, "'momentum' of '%s' must be between 0 and 1, but is %g", n->name, n->momentum);
    if (pixels(n) == 1)
        g->min_images = 2;      /* the program leaves out a last batch of 1 */
    if (pixels(n) == 1 && g->train.batch == 1) {
        diag_error(d, n->loc, "'%s' normalizes each value of a vector over the batch, but the batch is 1",
                   n->name);
        diag_note_plain(d, "PyTorch refuses this too (\"Expected more than 1 value per channel when "
                        "training\"): train with a batch of 2 or more");
    }
    int64_t C = channels(n);
    if (node_arg(n, "affine")->v.i) {
        n->weight = shape_param(g, n, "weight", 1, &C);
        n->bias = shape_param(g, n, "bias", 1, &C);
        if (!n->weight || !n->bias) {
            n->out.rank = 0;
            return;
        }
        n->weight->init = INIT_ONES;
        n->bias->init = INIT_ZEROS;
    }
    static const char *const stat[2] = {"running_mean", "running_var"};
    for (int k = 0; k < 2; k++) {
        n->stat[k] = shape_param(g, n, stat[k], 1, &C);
        if (!n->stat[k]) {
            n->out.rank = 0;
            return;
        }
        n->stat[k]->state = true;
        n->stat[k]->init = k ? INIT_ONES : INIT_ZEROS;
    }
    shape_count(g, n, 2);
}

/* mean and 1/std kept for backward; per channel sums: 4 x C */
int64_t kept_batchnorm(const Node *n, int64_t batch)
{
    (void)batch;
    return plan_floats(2 * channels(n));
}

int64_t scratch_batchnorm(Scratch *s, const Node *n, int64_t batch, bool training, int64_t at, int64_t *keep)
{
    *s = SCRATCH_NONE;
    if (training) {
        s->stats = *keep;
        *keep += kept_batchnorm(n, batch);
    } else {
        s->stats = at;
        at += kept_batchnorm(n, batch);
    }
    s->sums = at;
    return at + plan_floats(4 * channels(n));
}

/* ---- code generation: channels in the vector lanes, a block of two vectors at a time ---- */

typedef struct Norm {
    const Node *n;
    int64_t C;
    LLVMValueRef x, y, dy, dx;      /* (N, ..., C) */
    LLVMValueRef stats, sums;       /* the scratch: 2 C and 4 C floats */
    LLVMValueRef gamma, beta;       /* NULL without affine */
    LLVMValueRef count;             /* f32: values per channel in this call */
    LLVMValueRef weight;            /* f32: this call's images over the batch's */
    LLVMValueRef total;             /* f32: values per channel in the batch */
} Norm;

/* two vectors of channels, or all of them (the convs' blocks) */
static int block(Cg *c, int64_t C)
{
    return conv_block_width(c, C);
}

static LLVMValueRef vload(Cg *c, LLVMValueRef base, int64_t off, LLVMValueRef m0, int w)
{
    return cg_vload(c, base, cg_add(c, cg_i64(c, off), m0), w);
}

static void vstore(Cg *c, LLVMValueRef v, LLVMValueRef base, int64_t off, LLVMValueRef m0, int w)
{
    cg_vstore(c, v, base, cg_add(c, cg_i64(c, off), m0), w);
}

static LLVMValueRef vsplat(Cg *c, LLVMValueRef x, int w)
{
    return cg_splat(c, x, w);
}

/* A channel block's sums over every value of the call: sums[off + m] for
 * each of `nacc` terms of `term`. */
typedef LLVMValueRef TermFn(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w, int k);

typedef struct Reduce {
    const Norm *b;
    TermFn *term;
    int nacc;
    int64_t off[2];
} Reduce;

/* The sums run over every value of a channel in the batch (N x H x W of
 * them, tens of thousands) and then cancel in the variance and in d inp:
 * they are added in double, as the rest stays float. */
static void reduce_block(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    Reduce *r = ctx;
    const Norm *b = r->b;
    LLVMTypeRef dv = LLVMVectorType(LLVMDoubleTypeInContext(c->ctx), (unsigned)cg_lanes(c, w));
    LLVMValueRef acc[2];
    for (int k = 0; k < r->nacc; k++) {
        acc[k] = cg_entry_alloca(c, dv, "sum");
        LLVMBuildStore(c->b, LLVMConstNull(dv), acc[k]);
    }
    Loop lp;
    LLVMValueRef p = cg_loop(c, &lp, cg_mul(c, c->batch, cg_i64(c, pixels(b->n))), "p");
    LLVMValueRef at = cg_muladd(c, p, b->C, m0);
    for (int k = 0; k < r->nacc; k++) {
        LLVMValueRef t = LLVMBuildFPExt(c->b, r->term(c, b, at, m0, w, k), dv, "");
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, dv, acc[k], ""), t, ""), acc[k]);
    }
    cg_loop_end(c, &lp);
    for (int k = 0; k < r->nacc; k++)
        vstore(c, LLVMBuildFPTrunc(c->b, LLVMBuildLoad2(c->b, dv, acc[k], ""), LLVMTypeOf(cg_vzero(c, w)), ""),
               b->sums, r->off[k], m0, w);
}

static void reduce(Cg *c, const Norm *b, TermFn *term, int nacc, int64_t off0, int64_t off1)
{
    Reduce r = {b, term, nacc, {off0, off1}};
    cg_for_blocks(c, b->C, block(c, b->C), reduce_block, &r);
}

/* Every value of the call, a channel block at a time within each pixel. */
typedef void MapFn(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w);

typedef struct Map {
    const Norm *b;
    MapFn *fn;
    LLVMValueRef row;
} Map;

static void map_block(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    Map *m = ctx;
    m->fn(c, m->b, cg_add(c, m->row, m0), m0, w);
}

static void map(Cg *c, const Norm *b, MapFn *fn)
{
    Map m = {b, fn, NULL};
    Loop lp;
    LLVMValueRef p = cg_loop(c, &lp, cg_mul(c, c->batch, cg_i64(c, pixels(b->n))), "p");
    m.row = cg_mul(c, p, cg_i64(c, b->C));
    cg_for_blocks(c, b->C, block(c, b->C), map_block, &m);
    cg_loop_end(c, &lp);
}

/* A pass over the channels alone. */
static void per_channel(Cg *c, const Norm *b, VectorFn *fn)
{
    cg_for_blocks(c, b->C, block(c, b->C), fn, (void *)b);
}

/* The step's CnnSync sums data (count floats) over every share, when there is one. */
static void emit_sync(Cg *c, LLVMValueRef data, int64_t count)
{
    if (!c->sync)
        return;
    LLVMBasicBlockRef join = cg_if_sync(c, "sync");
    LLVMTypeRef ft = LLVMFunctionType(c->voidt, (LLVMTypeRef[]){c->ptr, c->ptr, c->i64}, 3, false);
    LLVMValueRef fn = cg_sync_field(c, 0, c->ptr, "sync.sum");
    LLVMBuildCall2(c->b, ft, fn, (LLVMValueRef[]){c->sync, data, cg_i64(c, count)}, 3, "");
    cg_if_end(c, join);
}

/* The batch's images: the CnnSync's count, or this call's. */
static LLVMValueRef batch_images(Cg *c)
{
    if (!c->sync)
        return c->batch;
    LLVMValueRef v = cg_var_i64(c, "images");
    LLVMBuildStore(c->b, c->batch, v);
    LLVMBasicBlockRef join = cg_if_sync(c, "sync.images");
    LLVMBuildStore(c->b, cg_sync_field(c, SYNC_IMAGES_BYTE, c->i64, "sync.images"), v);
    cg_if_end(c, join);
    return LLVMBuildLoad2(c->b, c->i64, v, "images");
}

static LLVMValueRef to_f32(Cg *c, LLVMValueRef i64)
{
    return LLVMBuildSIToFP(c->b, i64, c->f32, "");
}

static LLVMValueRef gamma_of(Cg *c, const Norm *b, LLVMValueRef m0, int w)
{
    return b->gamma ? cg_vload(c, b->gamma, m0, w) : cg_const_like(c, cg_vzero(c, w), 1);
}

static LLVMValueRef beta_of(Cg *c, const Norm *b, LLVMValueRef m0, int w)
{
    return b->beta ? cg_vload(c, b->beta, m0, w) : cg_vzero(c, w);
}

static LLVMValueRef vsqrt(Cg *c, LLVMValueRef v, int w)
{
    char name[32];
    snprintf(name, sizeof name, "llvm.sqrt.v%df32", cg_lanes(c, w));
    LLVMTypeRef t = LLVMTypeOf(v);
    LLVMValueRef fn = LLVMGetNamedFunction(c->mod, name);
    LLVMTypeRef ft = LLVMFunctionType(t, &t, 1, false);
    if (!fn)
        fn = LLVMAddFunction(c->mod, name, ft);
    return LLVMBuildCall2(c->b, ft, fn, &v, 1, "sqrt");
}

/* 1 / sqrt(var + eps) */
static LLVMValueRef inv_std(Cg *c, const Norm *b, LLVMValueRef var, int w)
{
    LLVMValueRef s = vsqrt(c, LLVMBuildFAdd(c->b, var, cg_const_like(c, var, b->n->eps), ""), w);
    return LLVMBuildFDiv(c->b, cg_const_like(c, s, 1), s, "istd");
}

/* ---- forward ---- */

static LLVMValueRef term_x(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w, int k)
{
    (void)m0;
    (void)k;
    return cg_vload(c, b->x, at, w);
}

static LLVMValueRef term_sq(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w, int k)
{
    (void)k;
    LLVMValueRef d = LLVMBuildFSub(c->b, cg_vload(c, b->x, at, w), cg_vload(c, b->stats, m0, w), "");
    return cg_fmul(c, d, d);
}

/* stats = the mean: sums / count */
static void set_mean(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    const Norm *b = ctx;
    cg_vstore(c, LLVMBuildFDiv(c->b, vload(c, b->sums, 0, m0, w), vsplat(c, b->total, w), "mean"), b->stats, m0, w);
}

/* stats + C = 1/std; the running statistics move (share 0 only, see emit_batchnorm_fwd) */
static void set_istd(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    const Norm *b = ctx;
    LLVMValueRef var = LLVMBuildFDiv(c->b, vload(c, b->sums, b->C, m0, w), vsplat(c, b->total, w), "var");
    vstore(c, inv_std(c, b, var, w), b->stats, b->C, m0, w);
}

static void update_running(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    const Norm *b = ctx;
    const Node *n = b->n;
    LLVMValueRef mom = cg_const_like(c, cg_vzero(c, w), n->momentum);
    LLVMValueRef keep = cg_const_like(c, cg_vzero(c, w), 1 - n->momentum);
    LLVMValueRef rm = cg_param(c, n->stat[0]), rv = cg_param(c, n->stat[1]);
    LLVMValueRef total = vsplat(c, b->total, w);
    LLVMValueRef unbiased = LLVMBuildFDiv(c->b, vload(c, b->sums, b->C, m0, w),
                                          LLVMBuildFSub(c->b, total, cg_const_like(c, total, 1), ""), "unbiased");
    LLVMValueRef mean = cg_vload(c, b->stats, m0, w);
    cg_vstore(c, cg_fadd(c, cg_fmul(c, keep, cg_vload(c, rm, m0, w)), cg_fmul(c, mom, mean)), rm, m0, w);
    cg_vstore(c, cg_fadd(c, cg_fmul(c, keep, cg_vload(c, rv, m0, w)), cg_fmul(c, mom, unbiased)), rv, m0, w);
}

/* training: (x - mean) (gamma / std) + beta, before the activation */
static LLVMValueRef normalized(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w)
{
    LLVMValueRef a = cg_fmul(c, vload(c, b->stats, b->C, m0, w), gamma_of(c, b, m0, w));
    LLVMValueRef d = LLVMBuildFSub(c->b, cg_vload(c, b->x, at, w), cg_vload(c, b->stats, m0, w), "");
    return cg_fadd(c, cg_fmul(c, d, a), beta_of(c, b, m0, w));
}

/* the activation fused after the batch norm (ops.def's TAKES_ACT), if any */
static LLVMValueRef activated(Cg *c, const Norm *b, LLVMValueRef v)
{
    return cg_act(c, b->n->act, b->n->act_param, v);
}

static void apply_batch(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w)
{
    cg_vstore(c, activated(c, b, normalized(c, b, at, m0, w)), b->y, at, w);
}

/* inference: stats = scale gamma / sqrt(running_var + eps), stats + C = shift
 * beta - running_mean scale */
static void set_affine(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    const Norm *b = ctx;
    const Node *n = b->n;
    LLVMValueRef a = cg_fmul(c, inv_std(c, b, cg_vload(c, cg_param(c, n->stat[1]), m0, w), w), gamma_of(c, b, m0, w));
    LLVMValueRef shift = LLVMBuildFSub(c->b, beta_of(c, b, m0, w),
                                       cg_fmul(c, cg_vload(c, cg_param(c, n->stat[0]), m0, w), a), "shift");
    cg_vstore(c, a, b->stats, m0, w);
    vstore(c, shift, b->stats, b->C, m0, w);
}

static void apply_running(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w)
{
    LLVMValueRef y = cg_fadd(c, cg_fmul(c, cg_vload(c, b->x, at, w), cg_vload(c, b->stats, m0, w)),
                             vload(c, b->stats, b->C, m0, w));
    cg_vstore(c, activated(c, b, y), b->y, at, w);
}

static Norm norm_with(const Node *n, Cg *c, LLVMValueRef stats, LLVMValueRef sums)
{
    return (Norm){.n = n, .C = channels(n), .stats = stats, .sums = sums,
                  .gamma = n->weight ? cg_param(c, n->weight) : NULL, .beta = n->bias ? cg_param(c, n->bias) : NULL};
}

static Norm norm_of(Cg *c, const Node *n)
{
    const Scratch *s = &c->scratch[n->index];
    return norm_with(n, c, cg_ws(c, s->stats), cg_ws(c, s->sums));
}

/* The per-channel scale and shift of inference (the running statistics with
 * gamma and beta), at `at`: what a conv folds into its weights. */
void batchnorm_affine(Cg *c, const Node *n, LLVMValueRef at)
{
    Norm b = norm_with(n, c, at, NULL);
    per_channel(c, &b, set_affine);
}

LLVMValueRef batchnorm_folded_at(Cg *c, LLVMValueRef at, int64_t M)
{
    return cg_at(c, at, cg_i64(c, 2 * M));
}

LLVMValueRef batchnorm_folded_bias(Cg *c, const Node *n, LLVMValueRef at, LLVMValueRef bias, int64_t M)
{
    batchnorm_affine(c, n, at);
    LLVMValueRef folded = batchnorm_folded_at(c, at, M);
    Loop lm;
    LLVMValueRef m = cg_loopn(c, &lm, M, "m");
    LLVMValueRef shift = cg_load(c, at, cg_add(c, m, cg_i64(c, M)), "shift");
    cg_store(c, bias ? cg_fadd(c, cg_fmul(c, cg_load(c, bias, m, "b"), cg_load(c, at, m, "s")), shift) : shift,
             folded, m);
    cg_loop_end(c, &lm);
    return folded;
}

void emit_batchnorm_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    Norm b = norm_of(c, n);
    b.x = inp;
    b.y = out;
    if (!c->training) {
        per_channel(c, &b, set_affine);
        map(c, &b, apply_running);
        return;
    }
    b.total = to_f32(c, cg_mul(c, batch_images(c), cg_i64(c, pixels(n))));
    reduce(c, &b, term_x, 1, 0, 0);
    emit_sync(c, b.sums, b.C);
    per_channel(c, &b, set_mean);
    reduce(c, &b, term_sq, 1, b.C, 0);
    emit_sync(c, cg_at(c, b.sums, cg_i64(c, b.C)), b.C);
    per_channel(c, &b, set_istd);
    /* once a step: by the share that holds the batch's first image */
    LLVMValueRef first = c->drop_first ? c->drop_first : cg_i64(c, 0);
    LLVMBasicBlockRef join = cg_if(c, LLVMBuildICmp(c->b, LLVMIntEQ, first, cg_i64(c, 0), ""), "running");
    per_channel(c, &b, update_running);
    cg_if_end(c, join);
    map(c, &b, apply_batch);
}

/* ---- backward ---- */

/* d of the normalized value: dy, or with a fused activation dy through its
 * derivative at the value the forward pass computed again (the same
 * operations on the same x and statistics: the same bits), so that neither
 * the activation's input nor its output need be read back */
static LLVMValueRef dnormalized(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w)
{
    LLVMValueRef dy = cg_vload(c, b->dy, at, w);
    if (b->n->act == ACT_NONE)
        return dy;
    LLVMValueRef v = normalized(c, b, at, m0, w);
    return cg_act_grad(c, b->n->act, b->n->act_param, v, activated(c, b, v), dy);
}

static LLVMValueRef term_dy(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w, int k)
{
    LLVMValueRef dy = dnormalized(c, b, at, m0, w);
    if (k == 0)
        return dy;
    return cg_fmul(c, dy, LLVMBuildFSub(c->b, cg_vload(c, b->x, at, w), cg_vload(c, b->stats, m0, w), ""));
}

typedef struct Grads {
    Norm b;
    LLVMValueRef dgamma, dbeta;
} Grads;

/* sums = (sum dy, sum dy xhat): into d beta and d gamma as they are, then
 * weighted for the exchange */
static void param_grads(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    const Grads *gr = ctx;
    const Norm *b = &gr->b;
    LLVMValueRef s1 = vload(c, b->sums, 0, m0, w);
    LLVMValueRef s2 = cg_fmul(c, vload(c, b->sums, b->C, m0, w), vload(c, b->stats, b->C, m0, w));
    if (gr->dbeta)
        cg_vstore(c, cg_fadd(c, cg_vload(c, gr->dbeta, m0, w), s1), gr->dbeta, m0, w);
    if (gr->dgamma)
        cg_vstore(c, cg_fadd(c, cg_vload(c, gr->dgamma, m0, w), s2), gr->dgamma, m0, w);
    LLVMValueRef wt = vsplat(c, b->weight, w);
    vstore(c, cg_fmul(c, s1, wt), b->sums, 0, m0, w);
    vstore(c, cg_fmul(c, s2, wt), b->sums, b->C, m0, w);
}

/* dx = A dy + B (x - mean) + D per channel: A = gamma / std at sums + 2C,
 * B = -A T2 / (std N) at + 3C, D = -A T1 / N at + 0 */
static void dx_coefs(Cg *c, void *ctx, LLVMValueRef m0, int w)
{
    const Norm *b = ctx;
    LLVMValueRef istd = vload(c, b->stats, b->C, m0, w);
    LLVMValueRef A = cg_fmul(c, gamma_of(c, b, m0, w), istd);
    LLVMValueRef nA = LLVMBuildFDiv(c->b, LLVMBuildFNeg(c->b, A, ""), vsplat(c, b->count, w), "");
    LLVMValueRef D = cg_fmul(c, nA, vload(c, b->sums, 0, m0, w));
    LLVMValueRef B = cg_fmul(c, cg_fmul(c, nA, vload(c, b->sums, b->C, m0, w)), istd);
    vstore(c, D, b->sums, 0, m0, w);
    vstore(c, A, b->sums, 2 * b->C, m0, w);
    vstore(c, B, b->sums, 3 * b->C, m0, w);
}

static void apply_dx(Cg *c, const Norm *b, LLVMValueRef at, LLVMValueRef m0, int w)
{
    LLVMValueRef d = LLVMBuildFSub(c->b, cg_vload(c, b->x, at, w), cg_vload(c, b->stats, m0, w), "");
    LLVMValueRef v = cg_fadd(c, cg_fmul(c, vload(c, b->sums, 2 * b->C, m0, w), dnormalized(c, b, at, m0, w)),
                             cg_fadd(c, cg_fmul(c, vload(c, b->sums, 3 * b->C, m0, w), d), vload(c, b->sums, 0, m0, w)));
    cg_vstore(c, v, b->dx, at, w);
}

void emit_batchnorm_bwd(Cg *c, const Node *n, const Bwd *a)
{
    Grads gr = {norm_of(c, n), cg_dparam(c, a->dparams, n->weight), cg_dparam(c, a->dparams, n->bias)};
    Norm *b = &gr.b;
    if (!a->dinp && !gr.dgamma && !gr.dbeta)
        return;
    b->x = a->inp;
    b->dy = a->dout;
    b->dx = a->dinp;
    b->count = to_f32(c, cg_mul(c, c->batch, cg_i64(c, pixels(n))));
    b->weight = LLVMBuildFDiv(c->b, to_f32(c, c->batch), to_f32(c, batch_images(c)), "weight");
    reduce(c, b, term_dy, 2, 0, b->C);
    cg_for_blocks(c, b->C, block(c, b->C), param_grads, &gr);
    if (!a->dinp)
        return;
    emit_sync(c, b->sums, 2 * b->C);
    per_channel(c, b, dx_coefs);
    map(c, b, apply_dx);
}

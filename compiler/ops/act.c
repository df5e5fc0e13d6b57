/*
 * act.c: the element-wise ops: the activations of acts.def, and dropout.
 *
 * out = f(inp), same shape. Each activation's forward and derivative sit side
 * by side below, as act_fwd_<word> and act_grad_<word>, and acts.def's
 * dispatch tables reach them: a conv or fc applies its act= through the same
 * functions (cg_act, cg_act_grad). Forward runs on floats, and on vectors in
 * a conv kernel's stores; the derivatives of the from_y activations also on
 * vectors (a conv's backward pass), through y alone. Semantics are PyTorch's modules' (torch.nn.functional).
 *
 * Dropout zeroes each element with probability `rate` in training and scales
 * the rest by 1/(1-rate); it is the identity at inference.
 */
#include "../cnnc.h"

#define K(v) cg_const_like(c, like, (v))

/* an intrinsic of x's type: llvm.NAME.f32, or llvm.NAME.vNf32 for a vector */
static LLVMValueRef intrinsic(Cg *c, const char *name, LLVMValueRef x)
{
    char fn[48];
    bool vec = LLVMGetTypeKind(LLVMTypeOf(x)) == LLVMVectorTypeKind;
    snprintf(fn, sizeof fn, vec ? "llvm.%s" : "llvm.%s.f32", name);
    return cg_call(c, fn, x);
}

static LLVMValueRef cmp(Cg *c, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFCmp(c->b, p, a, b, "");
}

static LLVMValueRef sel(Cg *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(c->b, cond, a, b, "");
}

static LLVMValueRef add(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFAdd(c->b, a, b, "");
}

static LLVMValueRef sub(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFSub(c->b, a, b, "");
}

static LLVMValueRef mul(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFMul(c->b, a, b, "");
}

static LLVMValueRef dvd(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFDiv(c->b, a, b, "");
}

/* min(max(v, 0), 6), NaN kept (torch.clamp's) */
static LLVMValueRef clamp6(Cg *c, LLVMValueRef v)
{
    LLVMValueRef like = v;
    return sel(c, cmp(c, LLVMRealOLT, v, K(0)), K(0), sel(c, cmp(c, LLVMRealOGT, v, K(6)), K(6), v));
}

/* 0 < y < hi: where a clamped activation passes its gradient */
static LLVMValueRef inside(Cg *c, LLVMValueRef y, double hi)
{
    LLVMValueRef like = y;
    return LLVMBuildAnd(c->b, cmp(c, LLVMRealOGT, y, K(0)), cmp(c, LLVMRealOLT, y, K(hi)), "");
}

static const double SELU_SCALE = 1.0507009873554804934193349852946;
static const double SELU_ALPHA = 1.6732632423543772848170429916717;

/* relu: x > 0 ? x : 0, NaN kept (torch.relu) */
static LLVMValueRef act_fwd_relu(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    return cg_vrelu(c, x);
}

static LLVMValueRef act_grad_relu(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)x, (void)p;
    LLVMValueRef like = y;
    return sel(c, cmp(c, LLVMRealOGT, y, K(0)), dy, K(0));
}

static LLVMValueRef act_fwd_sigmoid(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    LLVMValueRef like = x;
    return dvd(c, K(1), add(c, K(1), intrinsic(c, "exp", LLVMBuildFNeg(c->b, x, ""))));
}

static LLVMValueRef act_grad_sigmoid(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)x, (void)p;
    LLVMValueRef like = y;
    return mul(c, dy, mul(c, y, sub(c, K(1), y)));
}

static LLVMValueRef act_fwd_tanh(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    return cg_call(c, "tanhf", x);
}

static LLVMValueRef act_grad_tanh(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)x, (void)p;
    LLVMValueRef like = y;
    return mul(c, dy, sub(c, K(1), mul(c, y, y)));
}

/* leaky_relu: x > 0 ? x : alpha x; alpha > 0, so y > 0 exactly where x > 0 */
static LLVMValueRef act_fwd_leaky_relu(Cg *c, LLVMValueRef x, double alpha)
{
    LLVMValueRef like = x;
    return sel(c, cmp(c, LLVMRealOGT, x, K(0)), x, mul(c, x, K(alpha)));
}

static LLVMValueRef act_grad_leaky_relu(Cg *c, LLVMValueRef x, LLVMValueRef y, double alpha, LLVMValueRef dy)
{
    (void)x;
    LLVMValueRef like = y;
    return sel(c, cmp(c, LLVMRealOGT, y, K(0)), dy, mul(c, dy, K(alpha)));
}

/* relu6: hardtanh(x, 0, 6); the gradient passes strictly inside */
static LLVMValueRef act_fwd_relu6(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    return clamp6(c, x);
}

static LLVMValueRef act_grad_relu6(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)x, (void)p;
    LLVMValueRef like = y;
    return sel(c, inside(c, y, 6), dy, K(0));
}

/* elu: x > 0 ? x : alpha expm1(x); below 0 the derivative is alpha e^x = y + alpha */
static LLVMValueRef act_fwd_elu(Cg *c, LLVMValueRef x, double alpha)
{
    LLVMValueRef like = x;
    return sel(c, cmp(c, LLVMRealOGT, x, K(0)), x, mul(c, K(alpha), cg_call(c, "expm1f", x)));
}

static LLVMValueRef act_grad_elu(Cg *c, LLVMValueRef x, LLVMValueRef y, double alpha, LLVMValueRef dy)
{
    (void)x;
    LLVMValueRef like = y;
    return sel(c, cmp(c, LLVMRealOGT, y, K(0)), dy, mul(c, dy, add(c, y, K(alpha))));
}

/* selu: scale elu(x, alpha) with PyTorch's constants */
static LLVMValueRef act_fwd_selu(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    LLVMValueRef like = x;
    return mul(c, K(SELU_SCALE), act_fwd_elu(c, x, SELU_ALPHA));
}

static LLVMValueRef act_grad_selu(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)x, (void)p;
    LLVMValueRef like = y;
    return sel(c, cmp(c, LLVMRealOGT, y, K(0)), mul(c, dy, K(SELU_SCALE)),
               mul(c, dy, add(c, y, K(SELU_SCALE * SELU_ALPHA))));
}

/* softplus (beta 1, threshold 20): log1p(exp(x)), x itself past 20; the
 * derivative sigmoid(x) = 1 - exp(-y) */
static LLVMValueRef act_fwd_softplus(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    LLVMValueRef like = x;
    return sel(c, cmp(c, LLVMRealOGT, x, K(20)), x, cg_call(c, "log1pf", intrinsic(c, "exp", x)));
}

static LLVMValueRef act_grad_softplus(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)x, (void)p;
    LLVMValueRef like = y;
    return mul(c, dy, sub(c, K(1), intrinsic(c, "exp", LLVMBuildFNeg(c->b, y, ""))));
}

/* hardsigmoid: relu6(x + 3) / 6; the gradient 1/6 where -3 < x < 3, 0 < y < 1 */
static LLVMValueRef act_fwd_hardsigmoid(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    LLVMValueRef like = x;
    return dvd(c, clamp6(c, add(c, x, K(3))), K(6));
}

static LLVMValueRef act_grad_hardsigmoid(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)x, (void)p;
    LLVMValueRef like = y;
    return sel(c, inside(c, y, 1), dvd(c, dy, K(6)), K(0));
}

/* gelu, exact: x cdf(x), cdf(x) = (1 + erf(x / sqrt 2)) / 2; the derivative
 * cdf(x) + x pdf(x) needs x */
static LLVMValueRef act_fwd_gelu(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    LLVMValueRef like = x;
    LLVMValueRef e = cg_call(c, "erff", mul(c, x, K(0.70710678118654752440)));
    return mul(c, mul(c, x, K(0.5)), add(c, K(1), e));
}

static LLVMValueRef act_grad_gelu(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)y, (void)p;
    LLVMValueRef like = x;
    LLVMValueRef cdf = mul(c, K(0.5), add(c, K(1), cg_call(c, "erff", mul(c, x, K(0.70710678118654752440)))));
    LLVMValueRef pdf = mul(c, intrinsic(c, "exp", mul(c, K(-0.5), mul(c, x, x))), K(0.39894228040143267794));
    return mul(c, dy, add(c, cdf, mul(c, x, pdf)));
}

/* silu: x / (1 + exp(-x)); the derivative s (1 + x (1 - s)), s = sigmoid(x) */
static LLVMValueRef act_fwd_silu(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    LLVMValueRef like = x;
    return dvd(c, x, add(c, K(1), intrinsic(c, "exp", LLVMBuildFNeg(c->b, x, ""))));
}

static LLVMValueRef act_grad_silu(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)y;
    LLVMValueRef like = x, s = act_fwd_sigmoid(c, x, p);
    return mul(c, dy, mul(c, s, add(c, K(1), mul(c, x, sub(c, K(1), s)))));
}

/* hardswish: x relu6(x + 3) / 6; the derivative 0 below -3, x / 3 + 1/2 up
 * to 3, 1 above (PyTorch's hardswish_backward) */
static LLVMValueRef act_fwd_hardswish(Cg *c, LLVMValueRef x, double p)
{
    (void)p;
    LLVMValueRef like = x;
    return dvd(c, mul(c, x, clamp6(c, add(c, x, K(3)))), K(6));
}

static LLVMValueRef act_grad_hardswish(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy)
{
    (void)y, (void)p;
    LLVMValueRef like = x;
    LLVMValueRef mid = mul(c, dy, add(c, dvd(c, x, K(3)), K(0.5)));
    return sel(c, cmp(c, LLVMRealOLT, x, K(-3)), K(0), sel(c, cmp(c, LLVMRealOLE, x, K(3)), mid, dy));
}

#undef K

typedef LLVMValueRef ActFwd(Cg *c, LLVMValueRef x, double p);
typedef LLVMValueRef ActGrad(Cg *c, LLVMValueRef x, LLVMValueRef y, double p, LLVMValueRef dy);

static ActFwd *const act_fwd[ACT_COUNT] = {
#define ACT(id, word, from_y, spec, param, summary) [ACT_##id] = act_fwd_##word,
#include "../acts.def"
#undef ACT
};

static ActGrad *const act_grad[ACT_COUNT] = {
#define ACT(id, word, from_y, spec, param, summary) [ACT_##id] = act_grad_##word,
#include "../acts.def"
#undef ACT
};

LLVMValueRef cg_act(Cg *c, int act, double param, LLVMValueRef x)
{
    return act == ACT_NONE ? x : act_fwd[act](c, x, param);
}

LLVMValueRef cg_act_grad(Cg *c, int act, double param, LLVMValueRef x, LLVMValueRef y, LLVMValueRef dy)
{
    if (act == ACT_NONE)
        return dy;
    CNNC_ASSERT(x || act_info[act].from_y);
    return act_grad[act](c, x, y, param, dy);
}

/* The act= of a conv or fc, with its parameter's default. One the kernel
 * cannot apply (its gradient needs its input, which the kernel does not
 * keep) ir.c has made a node of its own after this one (act_split). */
void shape_layer_act(Graph *g, Node *n)
{
    (void)g;
    n->act = n->act_split ? ACT_NONE : (int)node_arg(n, "act")->v.i;
    n->act_param = act_info[n->act].param;
    CNNC_ASSERT(act_info[n->act].from_y);
}

void shape_act(Graph *g, Node *n)
{
    n->out = n->in;
    n->act = op_act(n->op);
    const Arg *alpha = spec_param(op_spec(n->op), "alpha") >= 0 ? node_arg(n, "alpha") : NULL;
    n->act_param = alpha ? alpha->v.r : act_info[n->act].param;
    if (alpha && !(alpha->v.r > 0))
        diag_error(g->diag, alpha->loc, "'%s' needs alpha > 0, not %g", n->name, alpha->v.r);
    shape_count(g, n, 1);
}

void shape_dropout(Graph *g, Node *n)
{
    n->out = n->in;
    n->rate = node_arg(n, "rate")->v.r;
    shape_count(g, n, 0);
}

/* out = f(inp), element by element over the batch */
static void emit_map(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out, int act)
{
    Loop l;
    LLVMValueRef count = cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out)));
    LLVMValueRef i = cg_loop(c, &l, count, "i");
    cg_store(c, cg_act(c, act, n->act_param, cg_load(c, inp, i, "x")), out, i);
    cg_loop_end(c, &l);
}

void emit_act_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    emit_map(c, n, inp, out, n->act);
}

void emit_act_bwd(Cg *c, const Node *n, const Bwd *a)
{
    if (!a->dinp)
        return;
    Loop l;
    LLVMValueRef i = cg_loop(c, &l, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out))), "i");
    LLVMValueRef x = act_info[n->act].from_y ? NULL : cg_load(c, a->inp, i, "x");
    cg_store(c, cg_act_grad(c, n->act, n->act_param, x, cg_load(c, a->out, i, "y"),
                            cg_load(c, a->dout, i, "dy")), a->dinp, i);
    cg_loop_end(c, &l);
}

/* Dropout's scale for element i: 0 with probability rate, else 1/(1-rate).
 * The mask is a hash of (step key, node, element), so backward recomputes it
 * instead of storing it. */
static LLVMValueRef dropout_scale(Cg *c, const Node *n, LLVMValueRef i)
{
    LLVMValueRef key = LLVMBuildXor(c->b, LLVMBuildMul(c->b, c->drop_key,
                                                       cg_i64(c, (int64_t)0x9E3779B97F4A7C15ull), ""),
                                    cg_i64(c, (int64_t)n->index << 52), "");
    LLVMValueRef at = cg_add(c, i, cg_mul(c, c->drop_first, cg_i64(c, shape_elems(n->out))));
    LLVMValueRef u = cg_hash_uniform(c, LLVMBuildAdd(c->b, key, at, ""));
    LLVMValueRef keep = LLVMBuildFCmp(c->b, LLVMRealOGE, u, cg_f32(c, n->rate), "keep");
    return LLVMBuildSelect(c->b, keep, cg_f32(c, 1.0 / (1.0 - n->rate)), cg_f32(c, 0), "scale");
}

/* Identity at inference; in training out = inp * scale. */
void emit_dropout_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    if (!c->training || n->rate == 0) {
        emit_map(c, n, inp, out, ACT_NONE);
        return;
    }
    Loop l;
    LLVMValueRef i = cg_loop(c, &l, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out))), "i");
    cg_store(c, cg_fmul(c, cg_load(c, inp, i, "x"), dropout_scale(c, n, i)), out, i);
    cg_loop_end(c, &l);
}

void emit_dropout_bwd(Cg *c, const Node *n, const Bwd *a)
{
    if (!a->dinp)
        return;
    Loop l;
    LLVMValueRef i = cg_loop(c, &l, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out))), "i");
    LLVMValueRef dy = cg_load(c, a->dout, i, "dy");
    cg_store(c, n->rate == 0 ? dy : cg_fmul(c, dy, dropout_scale(c, n, i)), a->dinp, i);
    cg_loop_end(c, &l);
}

/*
 * train.c: the training step and the optimizers, in generated code.
 *
 *   float NAME_train_step_hp(params, opt_state, input, labels, n, workspace, hp)
 *     forward (dropout on) -> loss and its gradient -> the backward graph of
 *     autodiff.c -> one optimizer update of every trainable float
 *   float NAME_train_step(params, opt_state, input, labels, n, workspace)
 *     the same with the train block's hyperparameters (the header's API)
 *
 * hp points at a CnnHyper (runtime/cnnrt.h): lr, momentum, weight_decay, eps,
 * beta1, beta2 as floats (HP_*), then the seed as a uint64, so the compiled
 * program can override them. opt_state: the optimizer's buffers (SGD with
 * momentum: one per parameter; Adagrad: one; Adam: two), then, when Adam or
 * dropout needs it, the step count: a uint64 in the last two floats' bytes,
 * so that it counts exactly past 2^24 steps. Updates follow PyTorch's
 * torch.optim.SGD (nesterov too), Adagrad, Adam and AdamW step for step.
 */
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

static bool has_stochastic(const Graph *g)
{
    for (int i = 0; i < g->n; i++)
        if (op_has(g->nodes[i].op, OPF_STOCHASTIC))
            return true;
    return false;
}

static bool is_adam(const Graph *g)
{
    return g->train.optim == OPT_ADAM || g->train.optim == OPT_ADAMW;
}

static int opt_buffers(const Graph *g)
{
    switch (g->train.optim) {
    case OPT_SGD: return g->train.momentum > 0;
    case OPT_ADAGRAD: return 1;
    case OPT_ADAM:
    case OPT_ADAMW: return 2;
    }
    unreachable();
}

static bool has_counter(const Graph *g)
{
    return is_adam(g) || has_stochastic(g);
}

int64_t train_opt_state_size(const Graph *g)
{
    return opt_buffers(g) * g->params_size + 2 * has_counter(g);
}

void train_hyper(const Graph *g, float hp[HP_COUNT])
{
    const TrainCfg *t = &g->train;
    hp[HP_LR] = (float)t->lr;
    hp[HP_MOMENTUM] = (float)t->momentum;
    hp[HP_WEIGHT_DECAY] = (float)t->weight_decay;
    hp[HP_EPS] = (float)t->eps;
    hp[HP_BETA1] = (float)t->beta1;
    hp[HP_BETA2] = (float)t->beta2;
}

LLVMValueRef train_hyper_const(Cg *c)
{
    float hv[HP_COUNT];
    train_hyper(c->g, hv);
    LLVMValueRef hc[HP_COUNT];
    for (int i = 0; i < HP_COUNT; i++)
        hc[i] = cg_f32(c, hv[i]);
    LLVMValueRef f[] = {LLVMConstArray2(c->f32, hc, HP_COUNT), LLVMConstInt(c->i64, c->g->train.seed, false),
                        LLVMConstInt(c->i32, 0, false), LLVMConstInt(c->i32, 0, false)};
    return LLVMConstStructInContext(c->ctx, f, 4, false);
}

/* hp's float-targets flag, as an i1 */
static LLVMValueRef load_targets_flag(Cg *c, LLVMValueRef hp)
{
    LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
    LLVMValueRef at = LLVMBuildGEP2(c->b, i8, hp, (LLVMValueRef[]){cg_i64(c, HP_TARGETS_BYTE)}, 1, "targets.at");
    LLVMValueRef v = LLVMBuildLoad2(c->b, c->i32, at, "targets");
    LLVMSetAlignment(v, 4);
    return LLVMBuildICmp(c->b, LLVMIntNE, v, LLVMConstInt(c->i32, 0, false), "float_targets");
}

/* hp's seed, 64 bits */
static LLVMValueRef load_seed(Cg *c, LLVMValueRef hp)
{
    LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
    LLVMValueRef at = LLVMBuildGEP2(c->b, i8, hp, (LLVMValueRef[]){cg_i64(c, HP_SEED_BYTE)}, 1, "seed.at");
    LLVMValueRef v = LLVMBuildLoad2(c->b, c->i64, at, "seed");
    LLVMSetAlignment(v, 8);
    return v;
}

static LLVMValueRef call_f64(Cg *c, const char *name, LLVMValueRef *args, unsigned n)
{
    LLVMTypeRef d = LLVMDoubleTypeInContext(c->ctx);
    LLVMTypeRef ps[2] = {d, d};
    LLVMTypeRef ft = LLVMFunctionType(d, ps, n, false);
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
    if (!f)
        f = LLVMAddFunction(c->mod, name, ft);
    return LLVMBuildCall2(c->b, ft, f, args, n, "");
}

/* What one update needs, computed once a step. */
typedef struct Update {
    LLVMValueRef params, dparams, state;
    LLVMValueRef h[HP_COUNT];
    LLVMValueRef step_size, bc2_sqrt, decay;    /* Adam's */
} Update;

/* params[i] -= update(dparams[i]) for i in [lo, hi): one loop over floats of
 * consecutive tensors */
static void emit_update(Cg *c, const Update *u, int64_t lo, int64_t hi)
{
    const Graph *g = c->g;
    LLVMBuilderRef b = c->b;
    int64_t P = g->params_size;
    const LLVMValueRef *h = u->h;
    LLVMValueRef params = u->params, dparams = u->dparams, state = u->state;
    Loop l;
    LLVMValueRef i = cg_add(c, cg_loopn(c, &l, hi - lo, "param"), cg_i64(c, lo));
    LLVMValueRef p = cg_load(c, params, i, "p");
    LLVMValueRef gr = cg_load(c, dparams, i, "g");
    LLVMValueRef one = cg_f32(c, 1);
    switch (g->train.optim) {
    case OPT_SGD:
        gr = LLVMBuildFAdd(b, gr, LLVMBuildFMul(b, h[HP_WEIGHT_DECAY], p, ""), "");
        if (opt_buffers(g)) {
            LLVMValueRef buf = LLVMBuildFAdd(b, LLVMBuildFMul(b, h[HP_MOMENTUM], cg_load(c, state, i, "buf"), ""), gr, "buf");
            cg_store(c, buf, state, i);
            /* nesterov: the gradient plus momentum times the new buffer */
            gr = g->train.nesterov ? LLVMBuildFAdd(b, gr, LLVMBuildFMul(b, h[HP_MOMENTUM], buf, ""), "") : buf;
        }
        p = LLVMBuildFSub(b, p, LLVMBuildFMul(b, h[HP_LR], gr, ""), "");
        break;
    case OPT_ADAGRAD: {
        LLVMValueRef s = LLVMBuildFAdd(b, cg_load(c, state, i, "sum"), LLVMBuildFMul(b, gr, gr, ""), "sum");
        cg_store(c, s, state, i);
        LLVMValueRef std = LLVMBuildFAdd(b, cg_call(c, "llvm.sqrt.f32", s), h[HP_EPS], "std");
        p = LLVMBuildFSub(b, p, LLVMBuildFMul(b, h[HP_LR], LLVMBuildFDiv(b, gr, std, ""), ""), "");
        break;
    }
    case OPT_ADAM:
    case OPT_ADAMW: {
        /* weight decay: adam's is L2, added to the gradient; adamw's shrinks
         * the weights first (torch.optim.AdamW: p *= 1 - lr * weight_decay) */
        if (g->train.optim == OPT_ADAM)
            gr = LLVMBuildFAdd(b, gr, LLVMBuildFMul(b, h[HP_WEIGHT_DECAY], p, ""), "");
        else
            p = LLVMBuildFMul(b, p, u->decay, "decayed");
        LLVMValueRef vi = cg_add(c, i, cg_i64(c, P));
        LLVMValueRef m = LLVMBuildFAdd(b, LLVMBuildFMul(b, cg_load(c, state, i, "m"), h[HP_BETA1], ""),
                                       LLVMBuildFMul(b, gr, LLVMBuildFSub(b, one, h[HP_BETA1], ""), ""), "m");
        LLVMValueRef v = LLVMBuildFAdd(b, LLVMBuildFMul(b, cg_load(c, state, vi, "v"), h[HP_BETA2], ""),
                                       LLVMBuildFMul(b, LLVMBuildFMul(b, gr, gr, ""),
                                                     LLVMBuildFSub(b, one, h[HP_BETA2], ""), ""), "v");
        cg_store(c, m, state, i);
        cg_store(c, v, state, vi);
        LLVMValueRef denom = LLVMBuildFAdd(b, LLVMBuildFDiv(b, cg_call(c, "llvm.sqrt.f32", v), u->bc2_sqrt, ""),
                                           h[HP_EPS], "denom");
        p = LLVMBuildFSub(b, p, LLVMBuildFMul(b, u->step_size, LLVMBuildFDiv(b, m, denom, ""), ""), "");
        break;
    }
    }
    cg_store(c, p, params, i);
    cg_loop_end(c, &l);
}

/* params -= update(dparams) for every trainable float: the tensors are one
 * array, so one loop serves each run of trainable tensors between the
 * running statistics, which no optimizer touches. */
static void emit_optimizer(Cg *c, LLVMValueRef params, LLVMValueRef dparams, LLVMValueRef state,
                           LLVMValueRef hp, LLVMValueRef step)
{
    const Graph *g = c->g;
    if (g->params_size == 0)
        return;
    LLVMBuilderRef b = c->b;
    Update u = {params, dparams, state, {0}, NULL, NULL, NULL};
    LLVMValueRef *h = u.h;
    for (int i = 0; i < HP_COUNT; i++)
        h[i] = cg_load(c, hp, cg_i64(c, i), "hp");
    if (is_adam(g)) {
        /* in double, as PyTorch computes these scalars in Python */
        LLVMTypeRef d = LLVMDoubleTypeInContext(c->ctx);
        LLVMValueRef t = LLVMBuildUIToFP(b, LLVMBuildAdd(b, step, cg_i64(c, 1), ""), d, "t");
        LLVMValueRef b1 = LLVMBuildFPExt(b, h[HP_BETA1], d, ""), b2 = LLVMBuildFPExt(b, h[HP_BETA2], d, "");
        LLVMValueRef one = LLVMConstReal(d, 1);
        LLVMValueRef bc1 = LLVMBuildFSub(b, one, call_f64(c, "llvm.pow.f64", (LLVMValueRef[]){b1, t}, 2), "bc1");
        LLVMValueRef bc2 = LLVMBuildFSub(b, one, call_f64(c, "llvm.pow.f64", (LLVMValueRef[]){b2, t}, 2), "bc2");
        u.step_size = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, LLVMBuildFPExt(b, h[HP_LR], d, ""), bc1, ""), c->f32, "step_size");
        u.bc2_sqrt = LLVMBuildFPTrunc(b, call_f64(c, "llvm.sqrt.f64", &bc2, 1), c->f32, "bc2_sqrt");
        LLVMValueRef lr_wd = LLVMBuildFMul(b, LLVMBuildFPExt(b, h[HP_LR], d, ""),
                                           LLVMBuildFPExt(b, h[HP_WEIGHT_DECAY], d, ""), "");
        u.decay = LLVMBuildFPTrunc(b, LLVMBuildFSub(b, one, lr_wd, ""), c->f32, "decay");
    }
    int64_t lo = -1, hi = -1;
    for (int t = 0; t <= g->nparams; t++) {
        const Param *p = t < g->nparams ? g->params[t] : NULL;
        if (p && (p->fixed || p->state))
            continue;
        if (p && p->offset == hi) {
            hi += p->size;
            continue;
        }
        if (hi > lo)
            emit_update(c, &u, lo, hi);
        if (p) {
            lo = p->offset;
            hi = lo + p->size;
        }
    }
}

static LLVMValueRef add_fn(Cg *c, const char *lname, const char *suffix, LLVMTypeRef ret,
                           LLVMTypeRef *args, unsigned n, const char *const *names, LLVMTypeRef *ft)
{
    char fname[256];
    snprintf(fname, sizeof fname, "%s_%s", lname, suffix);
    *ft = LLVMFunctionType(ret, args, n, false);
    LLVMValueRef fn = LLVMAddFunction(c->mod, fname, *ft);
    for (unsigned i = 0; i < n; i++)
        LLVMSetValueName2(LLVMGetParam(fn, i), names[i], strlen(names[i]));
    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    return fn;
}

/* Where the step counter is: a uint64 in opt_state's last 8 bytes (4-aligned). */
static LLVMValueRef step_at(Cg *c, LLVMValueRef state)
{
    const Graph *g = c->g;
    LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
    return LLVMBuildGEP2(c->b, i8, state, (LLVMValueRef[]){cg_i64(c, 4 * opt_buffers(g) * g->params_size)},
                         1, "step.at");
}

/* The step counter, for Adam's t and dropout's masks. */
static LLVMValueRef load_step(Cg *c, LLVMValueRef state)
{
    if (!has_counter(c->g))
        return cg_i64(c, 0);
    LLVMValueRef v = LLVMBuildLoad2(c->b, c->i64, step_at(c, state), "step");
    LLVMSetAlignment(v, 4);
    return v;
}

/* grad += part, over node n's output for the batch: a second reader's share */
static void emit_accumulate(Cg *c, const Node *n, LLVMValueRef grad, LLVMValueRef part)
{
    Loop l;
    LLVMValueRef i = cg_loop(c, &l, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out))), "i");
    cg_accum(c, grad, i, cg_load(c, part, i, "d"));
    cg_loop_end(c, &l);
}

/* Whether node n's parameters (trained or running statistics) are p. */
static bool owns(const Node *n, const Param *p)
{
    return n->weight == p || n->bias == p || n->stat[0] == p || n->stat[1] == p;
}

/* The gradients' frontier once the nodes marked done have run backward: the
 * float offset F from which every parameter's gradient is final, the
 * parameters lying in statement order (shapes.c) and a parameter's gradient
 * being its own node's step alone. */
static int64_t final_from(const Graph *g, const bool *done)
{
    int64_t from = g->params_size;
    for (int k = g->nparams - 1; k >= 0; k--) {
        const Param *p = g->params[k];
        if (p->fixed)
            continue;
        int owner = 0;
        while (owner < g->n && !owns(&g->nodes[owner], p))
            owner++;
        if (owner == g->n || !done[owner])
            break;
        from = p->offset;
    }
    return from;
}

/* sync->ready(sync, from), when there is a sync and it has a ready: the
 * gradients at [from, params_size) are final, so that their exchange with
 * other processes can start while the backward pass goes on. */
static void emit_ready(Cg *c, int64_t from)
{
    LLVMBasicBlockRef join = cg_if_sync(c, "ready");
    LLVMValueRef fn = cg_sync_field(c, SYNC_READY_BYTE, c->ptr, "sync.ready");
    LLVMBasicBlockRef call = cg_if(c, LLVMBuildICmp(c->b, LLVMIntNE, fn, LLVMConstNull(c->ptr), "has"), "call");
    LLVMTypeRef ft = LLVMFunctionType(c->voidt, (LLVMTypeRef[]){c->ptr, c->i64}, 2, false);
    LLVMBuildCall2(c->b, ft, fn, (LLVMValueRef[]){c->sync, cg_i64(c, from)}, 2, "");
    cg_if_end(c, call);
    cg_if_end(c, join);
}

/* float NAME_grad_hp(params, opt_state, input, labels, n, workspace, hp, first):
 * forward, loss and backward of n images, the gradients (of their mean loss)
 * left in the workspace at the plan's d.params. first is the images' place in
 * the whole batch, so that a batch split across threads drops what it would
 * have dropped whole. opt_state is only read (the step counter). sync, a
 * CnnSync or null, sums the batch norms' statistics over the step's shares;
 * the share with first 0 moves the running statistics in params. */
static LLVMValueRef emit_grad(Cg *c, const char *lname, const Plan *plan, LLVMTypeRef *ft)
{
    const Graph *g = c->g;
    LLVMBuilderRef b = c->b;
    static const char *const names[] = {"params", "opt_state", "input", "labels", "n", "workspace", "hp", "first",
                                        "sync"};
    LLVMValueRef fn = add_fn(c, lname, "grad_hp", c->f32,
                             (LLVMTypeRef[]){c->ptr, c->ptr, c->ptr, c->ptr, c->i32, c->ptr, c->ptr, c->i32, c->ptr},
                             9, names, ft);
    c->training = true;
    c->params = LLVMGetParam(fn, 0);
    c->batch = LLVMBuildSExt(b, LLVMGetParam(fn, 4), c->i64, "batch");
    LLVMValueRef state = LLVMGetParam(fn, 1), hp = LLVMGetParam(fn, 6);
    c->ws = LLVMGetParam(fn, 5);
    LLVMValueRef *act = calloc((size_t)g->n, sizeof *act), *grad = calloc((size_t)g->n, sizeof *grad);
    for (int i = 1; i < g->n; i++)
        grad[i] = plan->grad[i] >= 0 ? cg_ws(c, plan->grad[i]) : NULL;
    LLVMValueRef dparams = cg_ws(c, plan->dparams);
    LLVMValueRef step = load_step(c, state);
    LLVMValueRef seed = load_seed(c, hp);
    LLVMValueRef first = LLVMBuildSExt(b, LLVMGetParam(fn, 7), c->i64, "first");
    /* dropout's key: (seed, step), every bit of both (the seed times an odd
     * constant, plus the step); offset below so that element i of image
     * `first` gets the key it would have in the whole batch */
    c->drop_key = LLVMBuildAdd(b, LLVMBuildMul(b, seed, cg_i64(c, (int64_t)0xD1B54A32D192ED03ull), ""),
                               step, "drop_key");
    c->drop_first = first;
    c->sync = LLVMGetParam(fn, 8);

    emit_forward(c, plan, FWD_TRAIN, LLVMGetParam(fn, 2), NULL, act);
    LLVMTypeRef i8 = LLVMInt8TypeInContext(c->ctx);
    /* the parameters' gradients are summed into; each d out is written whole
     * by the step after it (or the loss) */
    LLVMBuildMemSet(b, cg_ws(c, plan->dparams), LLVMConstInt(i8, 0, false),
                    cg_i64(c, plan->grad_end - plan->dparams), 64);
    const Node *last = &g->nodes[g->n - 1];
    LLVMValueRef loss = emit_loss(c, g->train.loss, shape_elems(last->out), LLVMGetParam(fn, 3),
                                  load_targets_flag(c, hp),
                                  act[g->loss_grad_node], act[g->n - 1],
                                  grad[g->loss_grad_node]);
    bool *done = calloc((size_t)g->n, sizeof *done);
    int64_t from = g->params_size;
    for (int s = 0; s < g->nbwd; s++) {
        const BwdStep *st = &g->bwd[s];
        const Node *n = st->node;
        int i = n->index;
        Node tmp;
        done[i] = true;
        if (n->fused)
            continue;
        /* each input's gradient: stored, or into a scratch tensor and added */
        LLVMValueRef *ins = node_input_values(n, act), *dins = calloc((size_t)n->ninputs + 1, sizeof *dins);
        for (int k = 0; k < n->ninputs; k++)
            if (st->dinput[k])
                dins[k] = st->accumulate[k] ? cg_ws(c, plan->edge[i][k]) : grad[n->inputs[k]];
        Bwd a = {.inp = ins[0], .out = act[i], .dout = grad[i], .dinp = dins[0], .dparams = dparams,
                 .ins = ins, .dins = dins};
        emit_node_bwd(c, node_with_fused(g, i, &tmp), &a);
        for (int k = 0; k < n->ninputs; k++)
            if (st->dinput[k] && st->accumulate[k])
                emit_accumulate(c, &g->nodes[n->inputs[k]], grad[n->inputs[k]], dins[k]);
        free(ins);
        free(dins);
        int64_t now = final_from(g, done);
        if (now < from)
            emit_ready(c, from = now);
    }
    /* the parameters of nodes without a backward step (none today) */
    if (from > 0)
        emit_ready(c, 0);
    free(done);
    LLVMBuildRet(b, loss);
    c->training = false;
    c->drop_first = NULL;
    c->drop_key = NULL;
    c->sync = NULL;
    free(act);
    free(grad);
    return fn;
}

/* void NAME_apply_hp(params, opt_state, dparams, hp): one optimizer update,
 * and the step counter moves on. */
static LLVMValueRef emit_apply(Cg *c, const char *lname, LLVMTypeRef *ft)
{
    const Graph *g = c->g;
    static const char *const names[] = {"params", "opt_state", "dparams", "hp"};
    LLVMValueRef fn = add_fn(c, lname, "apply_hp", c->voidt,
                             (LLVMTypeRef[]){c->ptr, c->ptr, c->ptr, c->ptr}, 4, names, ft);
    LLVMValueRef state = LLVMGetParam(fn, 1);
    LLVMValueRef step = load_step(c, state);
    emit_optimizer(c, LLVMGetParam(fn, 0), LLVMGetParam(fn, 2), state, LLVMGetParam(fn, 3), step);
    if (has_counter(g)) {
        LLVMValueRef st = LLVMBuildStore(c->b, LLVMBuildAdd(c->b, step, cg_i64(c, 1), "step.next"),
                                         step_at(c, state));
        LLVMSetAlignment(st, 4);
    }
    LLVMBuildRetVoid(c->b);
    return fn;
}

void emit_train(Cg *c, const char *lname, const Plan *plan, TrainFns *out)
{
    LLVMBuilderRef b = c->b;
    LLVMTypeRef grad_t, apply_t, hp_t;
    out->grad = emit_grad(c, lname, plan, &grad_t);
    out->apply = emit_apply(c, lname, &apply_t);

    /* float NAME_train_step_hp(params, opt_state, input, labels, n, workspace, hp) */
    static const char *const names[] = {"params", "opt_state", "input", "labels", "n", "workspace", "hp"};
    LLVMValueRef fn = add_fn(c, lname, "train_step_hp", c->f32,
                             (LLVMTypeRef[]){c->ptr, c->ptr, c->ptr, c->ptr, c->i32, c->ptr, c->ptr},
                             7, names, &hp_t);
    LLVMValueRef a[9];
    for (unsigned i = 0; i < 7; i++)
        a[i] = LLVMGetParam(fn, i);
    a[7] = LLVMConstInt(c->i32, 0, false);
    a[8] = LLVMConstNull(c->ptr);
    LLVMValueRef loss = LLVMBuildCall2(b, grad_t, out->grad, a, 9, "loss");
    c->ws = a[5];
    LLVMBuildCall2(b, apply_t, out->apply, (LLVMValueRef[]){a[0], a[1], cg_ws(c, plan->dparams), a[6]}, 4, "");
    LLVMBuildRet(b, loss);
    out->step_hp = fn;

    /* the public entry: the train block's hyperparameters */
    LLVMValueRef hinit = train_hyper_const(c);
    LLVMValueRef hglob = LLVMAddGlobal(c->mod, LLVMTypeOf(hinit), "train.hp");
    LLVMSetInitializer(hglob, hinit);
    LLVMSetGlobalConstant(hglob, true);
    LLVMSetLinkage(hglob, LLVMPrivateLinkage);
    LLVMTypeRef pub_t;
    LLVMValueRef pub = add_fn(c, lname, "train_step", c->f32,
                              (LLVMTypeRef[]){c->ptr, c->ptr, c->ptr, c->ptr, c->i32, c->ptr}, 6, names, &pub_t);
    LLVMValueRef cargs[7];
    for (unsigned i = 0; i < 6; i++)
        cargs[i] = LLVMGetParam(pub, i);
    cargs[6] = hglob;
    LLVMBuildRet(b, LLVMBuildCall2(b, hp_t, fn, cargs, 7, "loss"));
    out->step = pub;
}

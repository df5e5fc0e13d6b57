/*
 * act.c: the element-wise ops: relu, sigmoid, tanh and dropout.
 *
 * out = f(inp), same shape. Dropout zeroes each element with probability
 * `rate` in training and scales the rest by 1/(1-rate); it is the identity
 * at inference.
 */
#include "../cnnc.h"

void shape_act(Graph *g, Node *n)
{
    n->out = n->in;
    n->act = n->op == OP_RELU ? ACT_RELU : n->op == OP_SIGMOID ? ACT_SIGMOID : ACT_TANH;
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
    cg_store(c, cg_act(c, act, cg_load(c, inp, i, "x")), out, i);
    cg_loop_end(c, &l);
}

/* buf[i] = f(buf[i]) for i < count */
void emit_act_inplace(Cg *c, int act, LLVMValueRef buf, LLVMValueRef count)
{
    Loop l;
    LLVMValueRef i = cg_loop(c, &l, count, "i");
    cg_store(c, cg_act(c, act, cg_load(c, buf, i, "x")), buf, i);
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
    cg_store(c, cg_act_grad(c, n->act, cg_load(c, a->out, i, "y"), cg_load(c, a->dout, i, "dy")), a->dinp, i);
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

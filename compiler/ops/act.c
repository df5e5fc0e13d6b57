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

void emit_act_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    emit_map(c, n, inp, out, n->act);
}

/* At inference dropout is the identity. */
void emit_dropout_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    emit_map(c, n, inp, out, ACT_NONE);
}

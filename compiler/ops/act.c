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

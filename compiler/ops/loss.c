/*
 * loss.c: softmax, and the losses that read the model's output.
 *
 * softmax over the last (only) dimension, computed as exp(x - max) / sum.
 * With cross_entropy, training fuses softmax and loss: the gradient of
 * mean(-log softmax(x)[label]) with respect to x is (softmax(x) - onehot) / N.
 */
#include "../cnnc.h"

void shape_softmax(Graph *g, Node *n)
{
    n->out = n->in;
    shape_count(g, n, 3);      /* exp, sum, divide */
}

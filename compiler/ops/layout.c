/*
 * layout.c: the ops that only give the data its shape: input and flatten.
 *
 * Activations are stored channels last (N,H,W,C). flatten gives PyTorch's
 * order (N, C*H*W), so an fc's weights are those of torch.nn.Linear.
 */
#include "../cnnc.h"

void shape_input(Graph *g, Node *n)
{
    (void)g;
    const Arg *shape = node_arg(n, "shape");
    n->out = (Shape){3, {shape->v.dims[0], shape->v.dims[1], shape->v.dims[2]}};
    n->rf[0] = n->rf[1] = 1;
    n->jump[0] = n->jump[1] = 1;
}

void shape_flatten(Graph *g, Node *n)
{
    (void)g;
    n->out = (Shape){1, {shape_elems(n->in)}};
    n->rf_global = n->rf_global || n->in.rank == 3;
}

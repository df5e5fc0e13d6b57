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

/* The input is read where the caller put it: nothing to emit. */
void emit_input_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    (void)c, (void)n, (void)inp, (void)out;
}

/* Forward: flat (N, C*H*W) in (c, h, w) order = image (N,H,W,C). Backward:
 * image = flat, the inverse permutation. */
static void flatten_walk(Cg *c, const Node *n, LLVMValueRef image, LLVMValueRef flat, bool backward)
{
    int64_t H = n->in.d[0], W = n->in.d[1], C = n->in.d[2];
    Loop ln, lh, lw, lc;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef h = cg_loopn(c, &lh, H, "h");
    LLVMValueRef w = cg_loopn(c, &lw, W, "w");
    LLVMValueRef ch = cg_loopn(c, &lc, C, "c");
    LLVMValueRef pix = cg_muladd(c, cg_muladd(c, cg_muladd(c, bn, H, h), W, w), C, ch);
    LLVMValueRef at = cg_muladd(c, bn, H * W * C, cg_muladd(c, ch, H * W, cg_muladd(c, h, W, w)));
    if (backward)
        cg_store(c, cg_load(c, flat, at, "dy"), image, pix);
    else
        cg_store(c, cg_load(c, image, pix, "x"), flat, at);
    cg_loop_end(c, &lc);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lh);
    cg_loop_end(c, &ln);
}

void emit_flatten_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    flatten_walk(c, n, inp, out, false);
}

void emit_input_bwd(Cg *c, const Node *n, const Bwd *a)
{
    (void)c, (void)n, (void)a;
}

void emit_flatten_bwd(Cg *c, const Node *n, const Bwd *a)
{
    if (a->dinp)
        flatten_walk(c, n, a->dinp, a->dout, true);
}

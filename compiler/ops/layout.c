/*
 * layout.c: the ops that only give the data its shape: input and flatten.
 *
 * Activations are stored channels last (N,H,W,C). flatten gives PyTorch's
 * order (N, C*H*W), so an fc's weights are those of torch.nn.Linear.
 */
#include <string.h>
#include "../cnnc.h"

/* input's mean= or std=: one number per channel, a std never 0 */
static bool check_norm(Graph *g, const Node *n, const char *key)
{
    const Arg *a = node_arg(n, key);
    if (!a->present)
        return true;
    int64_t C = n->out.d[2];
    if (a->v.nlist != C) {
        diag_error(g->diag, a->loc, "'%s' needs one number per channel: %lld, not %lld", key, (long long)C,
                   (long long)a->v.nlist);
        return false;
    }
    for (int64_t k = 0; k < C && !strcmp(key, "std"); k++)
        if (!(a->v.list[k] != 0)) {
            diag_error(g->diag, a->loc, "'std' of channel %lld is %g; it divides, so it cannot be 0",
                       (long long)k, a->v.list[k]);
            return false;
        }
    return true;
}

void shape_input(Graph *g, Node *n)
{
    const Arg *shape = node_arg(n, "shape");
    n->out = (Shape){3, {shape->v.dims[0], shape->v.dims[1], shape->v.dims[2]}};
    n->rf[0] = n->rf[1] = 1;
    n->jump[0] = n->jump[1] = 1;
    bool mean = check_norm(g, n, "mean"), std = check_norm(g, n, "std");
    n->normalizes = node_arg(n, "mean")->present || node_arg(n, "std")->present;
    if (!mean || !std)
        n->out.rank = 0;
    else if (n->normalizes)
        shape_count(g, n, 2);
}

void shape_flatten(Graph *g, Node *n)
{
    (void)g;
    n->out = (Shape){1, {shape_elems(n->in)}};
    n->rf_global = n->rf_global || n->in.rank == 3;
}

/* The input is read where the caller put it: nothing to emit, unless it
 * normalizes: out = (inp - mean) / std per channel (mean 0, std 1 when not
 * given), as torchvision's Normalize. */
void emit_input_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    if (!n->normalizes)
        return;
    const Arg *mean = node_arg(n, "mean"), *std = node_arg(n, "std");
    int64_t C = n->out.d[2];
    Loop lp;
    LLVMValueRef p = cg_loop(c, &lp, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out) / C)), "pixel");
    for (int64_t k = 0; k < C; k++) {
        LLVMValueRef at = cg_muladd(c, p, C, cg_i64(c, k));
        LLVMValueRef x = cg_load(c, inp, at, "x");
        if (mean->present)
            x = LLVMBuildFSub(c->b, x, cg_f32(c, mean->v.list[k]), "");
        if (std->present)
            x = LLVMBuildFDiv(c->b, x, cg_f32(c, std->v.list[k]), "");
        cg_store(c, x, out, at);
    }
    cg_loop_end(c, &lp);
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

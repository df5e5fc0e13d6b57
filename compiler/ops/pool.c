/*
 * pool.c: maxpool and avgpool, which share one window walk.
 *
 * out (N,H',W',C) = max, or mean over the cells inside the image, of
 *                   inp (N, oh*S-P+kh, ow*S-P+kw, C) for kh < Kh, kw < Kw.
 * Padding is never a maximum and never counted in a mean (PyTorch's
 * count_include_pad=False).
 */
#include "../cnnc.h"

void shape_pool(Graph *g, Node *n)
{
    const Arg *size = node_arg(n, "size"), *stride = node_arg(n, "stride");
    const Arg *pad = node_arg(n, "pad");
    int kh = (int)size->v.dims[0], kw = (int)size->v.dims[1];
    int sh = stride->present ? (int)stride->v.dims[0] : kh;
    int sw = stride->present ? (int)stride->v.dims[1] : kw;
    if (pad->same) {
        diag_error(g->diag, pad->loc, "pad=same is for conv; give '%s' a number", n->name);
        return;
    }
    int ph = (int)pad->v.dims[0], pw = (int)pad->v.dims[1];
    /* PyTorch's rule: a window must always hold a cell of the image. */
    if (2 * (int64_t)ph > kh || 2 * (int64_t)pw > kw) {
        diag_error(g->diag, pad->loc, "pad %dx%d of '%s' is more than half its %dx%d window",
                   ph, pw, n->name, kh, kw);
        diag_note_plain(g->diag, "a window could then hold only padding");
        return;
    }
    if (!shape_window(g, n, kh, kw, sh, sw, ph, pw))
        return;
    shape_count(g, n, (int64_t)kh * kw);
}

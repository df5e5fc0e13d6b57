/*
 * loss.c: softmax, and the losses that read the model's output.
 *
 * softmax over the last (only) dimension, computed as exp(x - max) / sum.
 * With cross_entropy, training fuses softmax and loss: the gradient of
 * mean(-log softmax(x)[label]) with respect to x is (softmax(x) - onehot) / N.
 */
#include <math.h>
#include "../cnnc.h"

void shape_softmax(Graph *g, Node *n)
{
    n->out = n->in;
    shape_count(g, n, 3);      /* exp, sum, divide */
}

/* out (N,K) = exp(x - max) / sum(exp(x - max)) per image */
void emit_softmax_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    /* a few exps per image: vectorized across images they only make gathers,
     * scatters and scalar calls, many kilobytes of them */
    cg_for_size(c, c->fn);
    int64_t K = n->out.d[0];
    LLVMValueRef mx = cg_var(c, "max"), sum = cg_var(c, "sum");
    Loop ln, l1, l2, l3;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef row = cg_mul(c, bn, cg_i64(c, K));
    LLVMBuildStore(c->b, cg_f32(c, -INFINITY), mx);
    LLVMValueRef i = cg_loopn(c, &l1, K, "i");
    LLVMValueRef x = cg_load(c, inp, cg_add(c, row, i), "x");
    LLVMValueRef m = LLVMBuildLoad2(c->b, c->f32, mx, "");
    LLVMBuildStore(c->b, LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, x, m, ""), x, m, ""), mx);
    cg_loop_end(c, &l1);
    LLVMBuildStore(c->b, cg_f32(c, 0), sum);
    i = cg_loopn(c, &l2, K, "i");
    x = cg_load(c, inp, cg_add(c, row, i), "x");
    LLVMValueRef e = cg_call(c, "llvm.exp.f32", LLVMBuildFSub(c->b, x, LLVMBuildLoad2(c->b, c->f32, mx, ""), ""));
    cg_store(c, e, out, cg_add(c, row, i));
    LLVMBuildStore(c->b, cg_fadd(c, LLVMBuildLoad2(c->b, c->f32, sum, ""), e), sum);
    cg_loop_end(c, &l2);
    i = cg_loopn(c, &l3, K, "i");
    LLVMValueRef s = LLVMBuildLoad2(c->b, c->f32, sum, "");
    cg_store(c, LLVMBuildFDiv(c->b, cg_load(c, out, cg_add(c, row, i), ""), s, "p"), out, cg_add(c, row, i));
    cg_loop_end(c, &l3);
    cg_loop_end(c, &ln);
}

/* dinp (N,K) = y * (dy - sum(dy * y)): softmax's backward, needed when a loss
 * other than cross_entropy follows it (cross_entropy fuses it away). */
void emit_softmax_bwd(Cg *c, const Node *n, const Bwd *a)
{
    if (!a->dinp)
        return;
    int64_t K = n->out.d[0];
    LLVMValueRef dot = cg_var(c, "dot");
    Loop ln, l1, l2;
    LLVMValueRef row = cg_mul(c, cg_loop(c, &ln, c->batch, "n"), cg_i64(c, K));
    LLVMBuildStore(c->b, cg_f32(c, 0), dot);
    LLVMValueRef i = cg_add(c, row, cg_loopn(c, &l1, K, "i"));
    LLVMBuildStore(c->b, cg_fadd(c, cg_get(c, dot), cg_fmul(c, cg_load(c, a->dout, i, "dy"),
                                                            cg_load(c, a->out, i, "y"))), dot);
    cg_loop_end(c, &l1);
    i = cg_add(c, row, cg_loopn(c, &l2, K, "i"));
    LLVMValueRef d = LLVMBuildFSub(c->b, cg_load(c, a->dout, i, "dy"), cg_get(c, dot), "");
    cg_store(c, cg_fmul(c, cg_load(c, a->out, i, "y"), d), a->dinp, i);
    cg_loop_end(c, &l2);
    cg_loop_end(c, &ln);
}

/* The batch's loss, returned, and its gradient written to dst (zeroed):
 *   cross_entropy: mean over images of logsumexp(x) - x[label], x = the logits
 *     (softmax's input); dst = d/dx = (softmax(x) - onehot) / N, from probs;
 *   mse: mean over images and outputs of (y - t)^2, t the one-hot label or,
 *     when `targets` (an i1) is true, the float targets labels points at
 *     (N x K); dst = d/dy = 2 (y - t) / (N K).
 * A label outside [0, K) is clamped, so that no input makes the code read
 * out of bounds; the runtime refuses such labels before they get here. */
LLVMValueRef emit_loss(Cg *c, int loss, int64_t K, LLVMValueRef labels, LLVMValueRef targets,
                       LLVMValueRef x, LLVMValueRef probs, LLVMValueRef dst)
{
    LLVMValueRef total = cg_var(c, "loss"), mx = cg_var(c, "max"), sum = cg_var(c, "sum");
    LLVMBuildStore(c->b, cg_f32(c, 0), total);
    LLVMValueRef nf = LLVMBuildSIToFP(c->b, c->batch, c->f32, "nf");
    Loop ln, l1, l2, l3;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef row = cg_mul(c, bn, cg_i64(c, K));
    LLVMValueRef lab = LLVMBuildLoad2(c->b, c->i32,
                                      LLVMBuildInBoundsGEP2(c->b, c->i32, labels, &bn, 1, ""), "label");
    lab = cg_clamp(c, LLVMBuildSExt(c->b, lab, c->i64, ""), K);
    if (loss == LOSS_CROSS_ENTROPY) {
        LLVMBuildStore(c->b, cg_f32(c, -INFINITY), mx);
        LLVMValueRef i = cg_add(c, row, cg_loopn(c, &l1, K, "i"));
        LLVMValueRef v = cg_load(c, x, i, "x");
        LLVMBuildStore(c->b, LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, v, cg_get(c, mx), ""),
                                             v, cg_get(c, mx), ""), mx);
        cg_loop_end(c, &l1);
        LLVMBuildStore(c->b, cg_f32(c, 0), sum);
        i = cg_add(c, row, cg_loopn(c, &l2, K, "i"));
        LLVMValueRef e = cg_call(c, "llvm.exp.f32", LLVMBuildFSub(c->b, cg_load(c, x, i, "x"), cg_get(c, mx), ""));
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, cg_get(c, sum), e, ""), sum);
        cg_loop_end(c, &l2);
        LLVMValueRef lse = LLVMBuildFAdd(c->b, cg_get(c, mx), cg_call(c, "llvm.log.f32", cg_get(c, sum)), "lse");
        LLVMValueRef nll = LLVMBuildFSub(c->b, lse, cg_load(c, x, cg_add(c, row, lab), ""), "nll");
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, cg_get(c, total), nll, ""), total);
    }
    LLVMValueRef k = cg_loopn(c, &l3, K, "k");
    LLVMValueRef i = cg_add(c, row, k);
    LLVMValueRef t = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, k, lab, ""),
                                     cg_f32(c, 1), cg_f32(c, 0), "onehot");
    if (loss == LOSS_MSE) {
        /* the float target, read at an index that stays inside labels' N
         * int32s when there are none (the load then only goes unused) */
        LLVMValueRef at = LLVMBuildSelect(c->b, targets, i, bn, "target.at");
        t = LLVMBuildSelect(c->b, targets, cg_load(c, labels, at, "target"), t, "t");
    }
    LLVMValueRef diff = LLVMBuildFSub(c->b, cg_load(c, probs, i, "p"), t, "diff");
    if (loss == LOSS_CROSS_ENTROPY) {
        cg_store(c, LLVMBuildFDiv(c->b, diff, nf, ""), dst, i);
    } else {
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, cg_get(c, total), LLVMBuildFMul(c->b, diff, diff, ""), ""), total);
        LLVMValueRef scale = LLVMBuildFMul(c->b, nf, cg_f32(c, (double)K), "");
        cg_store(c, LLVMBuildFDiv(c->b, LLVMBuildFMul(c->b, cg_f32(c, 2), diff, ""), scale, ""), dst, i);
    }
    cg_loop_end(c, &l3);
    cg_loop_end(c, &ln);
    LLVMValueRef denom = loss == LOSS_CROSS_ENTROPY ? nf : LLVMBuildFMul(c->b, nf, cg_f32(c, (double)K), "");
    return LLVMBuildFDiv(c->b, cg_get(c, total), denom, "loss");
}

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

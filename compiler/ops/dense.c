/*
 * dense.c: the fc op.
 *
 * out (N,U) = b (U) + weight (U,I) . inp (N,I), the layout of torch.nn.Linear.
 */
#include "../cnnc.h"

void shape_fc(Graph *g, Node *n)
{
    int64_t units = node_arg(n, "units")->v.i, inputs = n->in.d[0];
    n->act = (int)node_arg(n, "act")->v.i;
    n->out = (Shape){1, {units}};
    n->rf_global = true;
    n->weight = shape_param(g, n, "weight", 2, (int64_t[]){units, inputs});
    if (!n->weight) {
        n->out.rank = 0;
        return;
    }
    n->weight->init = (int)node_arg(n, "init")->v.i;
    n->weight->fan_in = inputs;
    n->weight->fan_out = units;
    if (node_arg(n, "bias")->v.i) {
        n->bias = shape_param(g, n, "bias", 1, (int64_t[]){units});
        if (n->bias)
            n->bias->init = INIT_ZEROS;
    }
    int64_t per = 2;
    shape_mul(g, n, &per, inputs);
    per += (n->bias != NULL) + (n->act != ACT_NONE);
    shape_count(g, n, per);
}

/* out (N,U) = act(bias (U) + weight (U,I) . inp (N,I)) */
void emit_fc_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    int64_t I = n->in.d[0], U = n->out.d[0];
    LLVMValueRef w = cg_param(c, n->weight), bias = n->bias ? cg_param(c, n->bias) : NULL;
    LLVMValueRef acc = cg_var(c, "acc");
    Loop ln, lu, li;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef u = cg_loopn(c, &lu, U, "u");
    LLVMBuildStore(c->b, bias ? cg_load(c, bias, u, "b") : cg_f32(c, 0), acc);
    LLVMValueRef i = cg_loopn(c, &li, I, "i");
    LLVMValueRef x = cg_load(c, inp, cg_muladd(c, bn, I, i), "x");
    LLVMValueRef wv = cg_load(c, w, cg_muladd(c, u, I, i), "w");
    LLVMBuildStore(c->b, cg_fadd(c, LLVMBuildLoad2(c->b, c->f32, acc, ""), cg_fmul(c, x, wv)), acc);
    cg_loop_end(c, &li);
    LLVMValueRef o = cg_act(c, n->act, LLVMBuildLoad2(c->b, c->f32, acc, ""));
    cg_store(c, o, out, cg_muladd(c, bn, U, u));
    cg_loop_end(c, &lu);
    cg_loop_end(c, &ln);
}

/* From dout (N,U): dbias (U), dweight (U,I) and dinp (N,I), all += */
void emit_fc_bwd(Cg *c, const Node *n, const Bwd *a)
{
    int64_t I = n->in.d[0], U = n->out.d[0];
    LLVMValueRef w = cg_param(c, n->weight);
    LLVMValueRef dw = cg_dparam(c, a->dparams, n->weight), db = cg_dparam(c, a->dparams, n->bias);
    Loop ln, lu, li;
    LLVMValueRef bn = cg_loop(c, &ln, c->batch, "n");
    LLVMValueRef u = cg_loopn(c, &lu, U, "u");
    LLVMValueRef oi = cg_muladd(c, bn, U, u);
    LLVMValueRef g = cg_act_grad(c, n->act, cg_load(c, a->out, oi, "y"), cg_load(c, a->dout, oi, "dy"));
    if (db)
        cg_accum(c, db, u, g);
    LLVMValueRef i = cg_loopn(c, &li, I, "i");
    LLVMValueRef xi = cg_muladd(c, bn, I, i), wi = cg_muladd(c, u, I, i);
    if (dw)
        cg_accum(c, dw, wi, cg_fmul(c, g, cg_load(c, a->inp, xi, "x")));
    if (a->dinp)
        cg_accum(c, a->dinp, xi, cg_fmul(c, g, cg_load(c, w, wi, "w")));
    cg_loop_end(c, &li);
    cg_loop_end(c, &lu);
    cg_loop_end(c, &ln);
}

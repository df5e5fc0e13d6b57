/*
 * join.c: the ops of several inputs, add and concat.
 *
 * An input of a join is any earlier statement (ir.c draws the edges); the
 * first is the previous statement or from=, the others the positional
 * labels. Inputs arrive in c->ins (forward) and a->ins, a->dins (backward),
 * in the node's input order. Every tensor is (N, ...) with the channels
 * last, so concat's output row of one pixel is its inputs' rows side by side.
 */
#include "../cnnc.h"

static void input_notes(Graph *g, const Node *n)
{
    char buf[64];
    for (int k = 0; k < n->ninputs; k++) {
        const Node *in = &g->nodes[n->inputs[k]];
        diag_note(g->diag, n->input_locs[k], "input %d, '%s', is %s", k + 1, in->name,
                  shape_str(in->out, buf, sizeof buf));
    }
}

/* add: every input the same shape; concat: the same but for the channels,
 * which add up (a vector is all channels). */
void shape_join(Graph *g, Node *n)
{
    bool concat = n->op == OP_CONCAT;
    Shape out = n->in;
    bool same = true;
    for (int k = 1; k < n->ninputs; k++) {
        Shape s = g->nodes[n->inputs[k]].out;
        int last = s.rank - 1;
        same = same && s.rank == out.rank;
        for (int r = 0; same && r < s.rank; r++)
            same = s.d[r] == out.d[r] || (concat && r == last);
        if (same && concat)
            out.d[last] += s.d[last];
    }
    if (!same) {
        diag_error(g->diag, n->loc, concat ? "the inputs of '%s' differ in more than their channels"
                                           : "the inputs of '%s' have different shapes", n->name);
        input_notes(g, n);
        return;
    }
    n->out = out;
    shape_count(g, n, concat ? 0 : n->ninputs - 1);
}

/* Per image, the `width` floats of input k's row at `at` within a row of the
 * joined tensor's `row` floats; add's inputs all span the whole row. */
typedef struct Slice {
    int64_t rows, row, at, width;
} Slice;

static Slice slice_of(const Graph *g, const Node *n, int k)
{
    Shape out = n->out;
    int64_t row = out.d[out.rank - 1], rows = shape_elems(out) / row;
    if (n->op != OP_CONCAT)
        return (Slice){rows, row, 0, row};
    int64_t at = 0;
    for (int j = 0; j < k; j++) {
        Shape s = g->nodes[n->inputs[j]].out;
        at += s.d[s.rank - 1];
    }
    Shape s = g->nodes[n->inputs[k]].out;
    return (Slice){rows, row, at, s.d[s.rank - 1]};
}

/* whole[slice] = part (into_slice), or part = whole[slice] */
static void copy_slice(Cg *c, Slice s, LLVMValueRef whole, LLVMValueRef part, bool into_slice)
{
    Loop lr, lw;
    LLVMValueRef r = cg_loop(c, &lr, cg_mul(c, c->batch, cg_i64(c, s.rows)), "row");
    LLVMValueRef w = cg_loopn(c, &lw, s.width, "w");
    LLVMValueRef wi = cg_muladd(c, r, s.row, cg_add(c, w, cg_i64(c, s.at)));
    LLVMValueRef pi = cg_muladd(c, r, s.width, w);
    LLVMValueRef src = into_slice ? part : whole, dst = into_slice ? whole : part;
    LLVMValueRef si = into_slice ? pi : wi, di = into_slice ? wi : pi;
    cg_store(c, cg_load(c, src, si, "x"), dst, di);
    cg_loop_end(c, &lw);
    cg_loop_end(c, &lr);
}

/* add: one pass, out[i] = ((in0[i] + in1[i]) + in2[i]) ...; concat: each
 * input copied into its slice */
void emit_join_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out)
{
    if (n->op == OP_CONCAT) {
        for (int k = 0; k < n->ninputs; k++)
            copy_slice(c, slice_of(c->g, n, k), out, c->ins[k], true);
        return;
    }
    Loop l;
    LLVMValueRef i = cg_loop(c, &l, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out))), "i");
    LLVMValueRef sum = cg_load(c, inp, i, "x");
    for (int k = 1; k < n->ninputs; k++)
        sum = cg_fadd(c, sum, cg_load(c, c->ins[k], i, "x"));
    cg_store(c, cg_act(c, n->act, n->act_param, sum), out, i);
    cg_loop_end(c, &l);
}

/* d input k = its slice of d out (the whole of it for add); with the
 * activation after an add in its pass (ops.def's TAKES_ACT), d out through
 * its derivative at the output, into every input's */
void emit_join_bwd(Cg *c, const Node *n, const Bwd *a)
{
    if (n->act != ACT_NONE) {
        Loop l;
        LLVMValueRef i = cg_loop(c, &l, cg_mul(c, c->batch, cg_i64(c, shape_elems(n->out))), "i");
        LLVMValueRef d = cg_act_grad(c, n->act, n->act_param, NULL, cg_load(c, a->out, i, "y"),
                                     cg_load(c, a->dout, i, "dy"));
        for (int k = 0; k < n->ninputs; k++)
            if (a->dins[k])
                cg_store(c, d, a->dins[k], i);
        cg_loop_end(c, &l);
        return;
    }
    for (int k = 0; k < n->ninputs; k++)
        if (a->dins[k])
            copy_slice(c, slice_of(c->g, n, k), a->dout, a->dins[k], false);
}

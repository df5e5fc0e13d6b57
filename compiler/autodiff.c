/*
 * autodiff.c: the backward graph, built from the forward one.
 *
 * The graph is a chain, so backward is the chain reversed: the loss step
 * first (cross_entropy fused with a final softmax: d logits = (p - onehot)/N),
 * then each node's backward rule (emit_<family>_bwd, beside its forward rule in
 * compiler/ops/), which turns d out into d inp and the gradients of its
 * parameters. A step computes only what is used: no d inp for the node that
 * reads the image, no gradient for fixed weights; a node needing nothing is
 * left out. --emit-ir prints the steps.
 *
 * An activation fused into the conv or fc before it (fuse_activations) has
 * no step of its own: that node's backward starts from d act, through the
 * act's derivative, as for its own act= attribute.
 */
#include <string.h>
#include "cnnc.h"

void autodiff_build(Graph *g)
{
    g->bwd = arena_alloc(g->arena, (size_t)(g->n + 1) * sizeof *g->bwd);
    g->nbwd = 0;
    const Node *last = &g->nodes[g->n - 1];
    g->ce_fused = g->train.loss == LOSS_CROSS_ENTROPY && last->op == OP_SOFTMAX;
    int first = g->ce_fused ? g->n - 2 : g->n - 1;
    g->loss_grad_node = first;
    for (int i = first; i >= 1; i--) {
        const Node *n = &g->nodes[i];
        BwdStep s = {.node = n, .dinp = i >= 2,
                     .dweight = n->weight && !n->weight->fixed,
                     .dbias = n->bias && !n->bias->fixed};
        if (s.dinp || s.dweight || s.dbias)
            g->bwd[g->nbwd++] = s;
    }
}

void fuse_activations(Graph *g)
{
    for (int i = 2; i < g->n; i++) {
        Node *n = &g->nodes[i], *prev = &g->nodes[i - 1];
        int act = op_act(n->op);
        n->fused = act != ACT_NONE && act_info[act].from_y && (prev->op == OP_CONV || prev->op == OP_FC) &&
                   prev->act == ACT_NONE;
    }
}

const Node *node_with_fused(const Graph *g, int i, Node *tmp)
{
    if (i + 1 >= g->n || !g->nodes[i + 1].fused)
        return &g->nodes[i];
    *tmp = g->nodes[i];
    tmp->act = g->nodes[i + 1].act;
    tmp->act_param = g->nodes[i + 1].act_param;
    return tmp;
}

void autodiff_print(FILE *out, const Graph *g)
{
    const Node *last = &g->nodes[g->n - 1];
    const Node *lg = &g->nodes[g->loss_grad_node];
    fprintf(out, "  backward:\n");
    if (g->ce_fused)
        fprintf(out, "    %%d.%s = cross_entropy.grad %%%s, labels    # fused with %%%s\n",
                lg->name, last->name, last->name);
    else
        fprintf(out, "    %%d.%s = %s.grad %%%s, labels\n", lg->name,
                g->train.loss == LOSS_MSE ? "mse" : "cross_entropy", last->name);
    for (int i = 0; i < g->nbwd; i++) {
        const BwdStep *s = &g->bwd[i];
        const Node *n = s->node;
        if (n->fused)
            continue;
        const Node *in = &g->nodes[n->index - 1];
        fprintf(out, "    ");
        const char *sep = "";
        if (s->dinp) {
            fprintf(out, "%%d.%s", in->name);
            sep = ", ";
        }
        if (s->dweight) {
            fprintf(out, "%s@d.%s", sep, n->weight->name);
            sep = ", ";
        }
        if (s->dbias)
            fprintf(out, "%s@d.%s", sep, n->bias->name);
        /* with a fused activation after it, the node reads that one's d out */
        const Node *o = n->index + 1 < g->n && g->nodes[n->index + 1].fused ? &g->nodes[n->index + 1] : n;
        fprintf(out, " += %s.grad %%d.%s, %%%s, %%%s", op_words[n->op], o->name, o->name, in->name);
        if (n->weight)
            fprintf(out, ", @%s", n->weight->name);
        fprintf(out, "\n");
    }
}

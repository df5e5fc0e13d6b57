/*
 * autodiff.c: the backward graph, built from the forward one.
 *
 * The loss step comes first (cross_entropy fused with a final softmax: d
 * logits = (p - onehot)/N), then each node's backward rule (emit_<family>_bwd,
 * beside its forward rule in compiler/ops/), in reverse statement order,
 * which is a reverse topological order: every reader of a tensor comes before
 * the node that made it. A rule turns d out into d of each input and the
 * gradients of its parameters. A tensor with several readers gets the sum of
 * their gradients: the first reader stores it, the others add theirs
 * (`accumulate`). A step computes only what is used: no d input for the
 * image, no gradient for fixed weights, nothing for a node whose output does
 * not reach the loss (its gradient is zero). --emit-ir prints the steps.
 *
 * An activation fused into the conv or fc before it (fuse_activations) has
 * no code of its own: that node's backward starts from d act, through the
 * act's derivative, as for its own act= attribute.
 */
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

void autodiff_build(Graph *g)
{
    g->bwd = arena_alloc(g->arena, (size_t)(g->n + 1) * sizeof *g->bwd);
    g->nbwd = 0;
    const Node *last = &g->nodes[g->n - 1];
    g->ce_fused = g->train.loss == LOSS_CROSS_ENTROPY && op_has(last->op, OPF_PROBS) && last->ninputs == 1;
    g->loss_grad_node = g->ce_fused ? last->inputs[0] : g->n - 1;
    bool *has_grad = calloc((size_t)g->n, sizeof *has_grad);
    has_grad[g->loss_grad_node] = true;
    for (int i = g->loss_grad_node; i >= 1; i--) {
        const Node *n = &g->nodes[i];
        if (!has_grad[i])
            continue;
        BwdStep s = {.node = n, .dweight = n->weight && !n->weight->fixed, .dbias = n->bias && !n->bias->fixed,
                     .dinput = arena_alloc(g->arena, (size_t)(n->ninputs + 1) * sizeof(bool)),
                     .accumulate = arena_alloc(g->arena, (size_t)(n->ninputs + 1) * sizeof(bool))};
        bool any = s.dweight || s.dbias;
        for (int k = 0; k < n->ninputs; k++) {
            int j = n->inputs[k];
            if (op_has(g->nodes[j].op, OPF_SOURCE))
                continue;
            s.dinput[k] = true;
            s.accumulate[k] = has_grad[j];
            has_grad[j] = any = true;
        }
        if (any)
            g->bwd[g->nbwd++] = s;
    }
    free(has_grad);
}

void fuse_activations(Graph *g)
{
    for (int i = 2; i < g->n; i++) {
        Node *n = &g->nodes[i], *prev = &g->nodes[i - 1];
        int act = op_act(n->op);
        n->fused = act != ACT_NONE && act_info[act].from_y && n->ninputs == 1 && n->inputs[0] == i - 1 &&
                   prev->nreaders == 1 && op_has(prev->op, OPF_TAKES_ACT) && prev->act == ACT_NONE;
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

void fold_affines(Graph *g)
{
    for (int i = 2; i < g->n; i++) {
        Node *n = &g->nodes[i], *prev = &g->nodes[i - 1];
        n->folded = op_has(n->op, OPF_AFFINE) && n->ninputs == 1 && n->inputs[0] == i - 1 && prev->nreaders == 1 &&
                    op_has(prev->op, OPF_TAKES_AFFINE) && prev->act == ACT_NONE && !prev->act_split;
    }
}

/* The add right after node e, when e is its only reader and one of its two
 * inputs: the other input's node in *other, or false */
static bool sum_after(const Graph *g, int e, const Node **other)
{
    if (e + 1 >= g->n || g->nodes[e].nreaders != 1)
        return false;
    const Node *a = &g->nodes[e + 1];
    if (!op_has(a->op, OPF_SUM) || a->ninputs != 2 || (a->inputs[0] == e) == (a->inputs[1] == e))
        return false;
    *other = &g->nodes[a->inputs[a->inputs[0] == e]];
    return true;
}

int infer_pass(const Graph *g, int i, Node *tmp, const Node **run)
{
    const Node *n = &g->nodes[i];
    *run = n;
    if (n->fused || n->folded)
        return -1;
    if (i + 1 < g->n && g->nodes[i + 1].fused) {
        *run = node_with_fused(g, i, tmp);
        return i + 1;
    }
    *tmp = *n;
    int end = i;
    if (i + 1 < g->n && g->nodes[i + 1].folded)
        tmp->fold = &g->nodes[++end];
    if (op_has(n->op, OPF_TAKES_SUM) && n->act == ACT_NONE && sum_after(g, end, &tmp->residual))
        end++;
    if (end == i)
        return i;
    *run = tmp;
    /* the activation after them, as the kernel's own */
    const Node *a = end + 1 < g->n ? &g->nodes[end + 1] : NULL;
    int act = a ? op_act(a->op) : ACT_NONE;
    if (act == ACT_NONE || !act_info[act].from_y || a->ninputs != 1 || a->inputs[0] != end ||
        g->nodes[end].nreaders != 1)
        return end;
    tmp->act = act;
    tmp->act_param = a->act_param;
    return end + 1;
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
        fprintf(out, "    ");
        const char *sep = "";
        for (int k = 0; k < n->ninputs; k++)
            if (s->dinput[k]) {
                fprintf(out, "%s%%d.%s%s", sep, g->nodes[n->inputs[k]].name, s->accumulate[k] ? " (accumulated)" : "");
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
        fprintf(out, " += %s.grad %%d.%s, %%%s", op_words[n->op], o->name, o->name);
        for (int k = 0; k < n->ninputs; k++)
            fprintf(out, ", %%%s", g->nodes[n->inputs[k]].name);
        if (n->weight)
            fprintf(out, ", @%s", n->weight->name);
        fprintf(out, "\n");
    }
}

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

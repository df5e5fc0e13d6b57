/*
 * shapes.c: the shape checker, and the --shapes table.
 *
 * Walks the nodes once, in statement order, which is a topological order (no
 * recursion: 65536 layers are as easy as 5). For each node it checks its first
 * input's rank against the op table, then calls the op family's rule
 * (shape_conv, shape_join, ...) which sets the output shape, parameters and
 * FLOPs; the window helper here does the padding and stride formula and the
 * receptive field for every windowed op. Then: a last-only op is last, every
 * output but the model's is read, and the loss fits the model's end.
 */
#include <string.h>
#include "cnnc.h"

typedef void ShapeFn(Graph *g, Node *n);

static ShapeFn *const shape_fn[OP_COUNT] = {
#define OP(id, word, family, in, flags, spec, summary) [OP_##id] = shape_##family,
#include "ops.def"
#undef OP
};

/* acc *= by, or an error at n if the product leaves 64 bits. */
bool shape_mul(Graph *g, Node *n, int64_t *acc, int64_t by)
{
    if (__builtin_mul_overflow(*acc, by, acc)) {
        diag_error(g->diag, n->loc, "the size of '%s' overflows 64 bits", n->name);
        *acc = 0;
        return false;
    }
    return true;
}

static int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static const char *const dim_names[2] = {"height", "width"};

/* out = floor((n + 2p - k) / s) + 1 per spatial dimension, with the error for a
 * window past its padded input (a note per dimension shows the formula) and
 * the warning for rows or columns a stride leaves unused. */
bool shape_window(Graph *g, Node *n, int kh, int kw, int sh, int sw, int ph, int pw)
{
    n->kh = kh, n->kw = kw, n->sh = sh, n->sw = sw, n->ph = ph, n->pw = pw;
    /* a dilated window spans d (k - 1) + 1 */
    int d[2] = {n->dh > 1 ? n->dh : 1, n->dw > 1 ? n->dw : 1};
    int k[2] = {d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1}, s[2] = {sh, sw}, p[2] = {ph, pw};
    int64_t in[2] = {n->in.d[0], n->in.d[1]}, span[2], out[2];
    for (int i = 0; i < 2; i++) {
        span[i] = in[i] + 2 * (int64_t)p[i] - k[i];
        out[i] = (span[i] >= 0 ? (span[i] + (n->ceil_mode ? s[i] - 1 : 0)) / s[i] : -((-span[i] + s[i] - 1) / s[i])) + 1;
        /* PyTorch's ceil_mode rule: the last window starts inside the input or its left padding */
        if (n->ceil_mode && span[i] >= 0 && (out[i] - 1) * s[i] >= in[i] + p[i])
            out[i]--;
    }
    if (span[0] < 0 || span[1] < 0) {
        diag_error(g->diag, node_arg(n, "size")->loc, "the %dx%d window of '%s'%s is larger than its "
                   "padded input (%lldx%lld)", k[0], k[1], n->name, d[0] * d[1] > 1 ? " (dilated)" : "",
                   (long long)(in[0] + 2 * ph), (long long)(in[1] + 2 * pw));
        for (int i = 0; i < 2; i++)
            if (span[i] < 0 && d[i] > 1)
                diag_note_plain(g->diag, "output %s = floor((%lld + 2*%d - %d*(%d - 1) - 1) / %d) + 1 = %lld",
                                dim_names[i], (long long)in[i], p[i], d[i], i ? kw : kh, s[i], (long long)out[i]);
            else if (span[i] < 0)
                diag_note_plain(g->diag, "output %s = floor((%lld + 2*%d - %d) / %d) + 1 = %lld",
                                dim_names[i], (long long)in[i], p[i], k[i], s[i],
                                (long long)out[i]);
        return false;
    }
    /* the rows and columns past the last window: reported when they hold
     * input, not only the (bottom or right) padding, and the windows cover
     * the input without gaps (a window smaller than its stride, as a 1x1
     * stride-2 shortcut, skips rows by design) */
    int64_t rem[2] = {n->ceil_mode ? 0 : span[0] % s[0], n->ceil_mode ? 0 : span[1] % s[1]};
    for (int i = 0; i < 2; i++)
        rem[i] = rem[i] > p[i] && k[i] >= s[i] ? rem[i] : 0;
    if (rem[0] || rem[1]) {
        const Arg *stride = node_arg(n, "stride");
        char what[96];
        if (rem[0] && rem[1])
            snprintf(what, sizeof what, "%lld row(s) and %lld column(s)", (long long)rem[0],
                     (long long)rem[1]);
        else
            snprintf(what, sizeof what, "%lld %s", (long long)(rem[0] ? rem[0] : rem[1]),
                     rem[0] ? "row(s)" : "column(s)");
        diag_warning(g->diag, stride->given ? stride->loc : n->loc, "stride %dx%d of '%s' leaves the "
                     "last %s of its padded input unused", sh, sw, n->name, what);
        for (int i = 0; i < 2; i++)
            if (rem[i])
                diag_note_plain(g->diag, "output %s = floor((%lld + 2*%d - %d) / %d) + 1 = %lld, "
                                "remainder %lld", dim_names[i], (long long)in[i], p[i], k[i],
                                s[i], (long long)out[i], (long long)rem[i]);
    }
    /* receptive field: each output sees k - 1 more steps of the input's jump */
    for (int i = 0; i < 2; i++) {
        n->rf[i] = sat_add(n->rf[i], sat_mul(k[i] - 1, n->jump[i]));
        n->jump[i] = sat_mul(n->jump[i], s[i]);
    }
    n->out = (Shape){3, {out[0], out[1], n->in.d[2]}};
    return true;
}

Param *shape_param(Graph *g, Node *n, const char *suffix, int rank, const int64_t *dims)
{
    Param *p = arena_alloc(g->arena, sizeof *p);
    char name[256];
    snprintf(name, sizeof name, "%s.%s", n->name, suffix);
    p->name = arena_strdup(g->arena, name, strlen(name));
    p->rank = rank;
    p->size = 1;
    for (int i = 0; i < rank; i++) {
        p->dims[i] = dims[i];
        if (!shape_mul(g, n, &p->size, dims[i]))
            return NULL;
    }
    if (p->size > MAX_TENSOR_ELEMS) {
        diag_error(g->diag, n->loc, "'%s' has %lld numbers; the most one tensor may have is %lld",
                   p->name, (long long)p->size, (long long)MAX_TENSOR_ELEMS);
        return NULL;
    }
    g->params[g->nparams++] = p;
    return p;
}

/* The numbers in a tensor, INT64_MAX when they overflow 64 bits. */
int64_t shape_elems(Shape s)
{
    int64_t e = 1;
    for (int i = 0; i < s.rank; i++)
        e = sat_mul(e, s.d[i]);
    return e;
}

/* The exact count, as digits, however large (dimensions are below 2^31 and
 * at most 3, so 128 bits hold it). */
static const char *elems_str(Shape s, char *buf, size_t size)
{
    unsigned __int128 e = 1;
    for (int i = 0; i < s.rank; i++)
        e *= (unsigned __int128)s.d[i];
    char digits[48];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(e % 10));
        e /= 10;
    } while (e && n < (int)sizeof digits);
    for (int i = 0; i < n && i < (int)size - 1; i++)
        buf[i] = digits[n - 1 - i];
    buf[n < (int)size - 1 ? n : (int)size - 1] = '\0';
    return buf;
}

static const char *rank_words(int rank)
{
    return rank == 3 ? "an HxWxC input" : "a 1-D input";
}

/* n's input shape is its first input's; its receptive field the largest of
 * its inputs'. False when an input's shape is unknown (an error upstream). */
static bool read_inputs(Graph *g, Node *n)
{
    for (int k = 0; k < n->ninputs; k++) {
        const Node *in = &g->nodes[n->inputs[k]];
        if (k == 0)
            n->in = in->out;
        for (int i = 0; i < 2; i++) {
            n->rf[i] = k == 0 || in->rf[i] > n->rf[i] ? in->rf[i] : n->rf[i];
            n->jump[i] = k == 0 || in->jump[i] > n->jump[i] ? in->jump[i] : n->jump[i];
        }
        n->rf_global = n->rf_global || in->rf_global;
        if (in->out.rank == 0)
            return false;
    }
    return true;
}

static void check_node(Graph *g, Node *n)
{
    Diag *d = g->diag;
    char buf[64];
    const OpSpec *spec = op_spec(n->op);
    if (!read_inputs(g, n) || n->bad || (!n->ninputs && !op_has(n->op, OPF_SOURCE)) || (n->index && !n->ninputs))
        return;                             /* a second input is reported by ir_build */
    if (spec->in_rank && n->in.rank != spec->in_rank) {
        diag_error(d, n->loc, "'%s' needs %s, but '%s' gives %s", spec->word,
                   rank_words(spec->in_rank), g->nodes[n->inputs[0]].name, shape_str(n->in, buf, sizeof buf));
        if (spec->in_rank == 1)
            diag_note(d, n->loc, "add 'flatten' before '%s' to make the %s tensor a vector "
                      "of %lld", spec->word, buf, (long long)shape_elems(n->in));
        return;
    }
    shape_fn[n->op](g, n);
    if (n->out.rank && shape_elems(n->out) > MAX_TENSOR_ELEMS) {
        char count[48];
        diag_error(d, n->loc, "the output of '%s' (%s) has %s numbers per image; the most "
                   "one tensor may have is %lld", n->name, shape_str(n->out, buf, sizeof buf),
                   elems_str(n->out, count, sizeof count), (long long)MAX_TENSOR_ELEMS);
        n->out.rank = 0;
    }
}

static void check_loss(Graph *g)
{
    Diag *d = g->diag;
    TrainCfg *t = &g->train;
    const Node *last = &g->nodes[g->n - 1];
    bool softmax = op_has(last->op, OPF_PROBS);
    if (!t->loss_given) {
        t->loss = softmax ? LOSS_CROSS_ENTROPY : LOSS_MSE;
        return;
    }
    if (t->loss == LOSS_CROSS_ENTROPY && !softmax && !last->bad) {
        diag_error(d, t->loss_loc, "loss 'cross_entropy' needs a model that ends with 'softmax'");
        diag_note(d, last->loc, "the model ends with '%s' here", last->name);
    }
}

bool shape_check(Graph *g)
{
    Diag *d = g->diag;
    int errors = d->errors;
    g->params = arena_alloc(g->arena, (size_t)(2 * g->n + 1) * sizeof *g->params);
    for (int i = 0; i < g->n && !diag_too_many(d); i++) {
        Node *n = &g->nodes[i];
        check_node(g, n);
        if (op_has(n->op, OPF_LAST) && i != g->n - 1) {
            diag_error(d, n->loc, "'%s' must be the model's last op", op_words[n->op]);
            diag_note(d, g->nodes[g->n - 1].loc, "the model ends here");
        } else if (i != g->n - 1 && !n->nreaders && !n->bad && n->out.rank) {
            diag_warning(d, n->loc, "the output of '%s' is never used", n->name);
            diag_note_plain(d, "the model's output is its last statement, '%s'", g->nodes[g->n - 1].name);
        }
    }
    if (g->n > 0)
        check_loss(g);
    for (int i = 0; i < g->nparams; i++) {
        Param *p = g->params[i];
        if (p->fixed)
            continue;
        p->offset = g->params_size;
        g->params_size += p->size;
        if (g->params_size > MAX_TENSOR_ELEMS) {
            diag_error(d, g->nodes[0].loc, "the model has more than %lld parameters",
                       (long long)MAX_TENSOR_ELEMS);
            break;
        }
    }
    return d->errors == errors;
}

/* FLOPs as per_output times the output's size; parameters as the node's
 * trainable tensors (fixed ones are part of the model, not of the count). */
void shape_count(Graph *g, Node *n, int64_t per_output)
{
    n->flops = shape_elems(n->out);
    shape_mul(g, n, &n->flops, per_output);
    if (n->weight && !n->weight->fixed)
        n->nparams += n->weight->size;
    if (n->bias && !n->bias->fixed)
        n->nparams += n->bias->size;
}

void shape_count_macs(Graph *g, Node *n, int64_t per_output, int64_t extra)
{
    n->macs = shape_elems(n->out);
    shape_mul(g, n, &n->macs, per_output);
    int64_t per = 2;
    shape_mul(g, n, &per, per_output);
    shape_count(g, n, per + extra);
}

/* n with thousands separators */
static const char *grouped(int64_t v, char *buf, size_t size)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)v), o = 0;
    for (int i = 0; i < len && o + 2 < (int)size; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

/* ---- --shapes ---- */

static void rf_str(const Graph *g, const Node *n, char *field, char *jump, size_t size)
{
    if (n->rf_global) {
        const Shape *img = &g->nodes[0].out;
        snprintf(field, size, "%lldx%lld", (long long)img->d[0], (long long)img->d[1]);
        snprintf(jump, size, "-");
    } else {
        snprintf(field, size, "%lldx%lld", (long long)n->rf[0], (long long)n->rf[1]);
        snprintf(jump, size, "%lldx%lld", (long long)n->jump[0], (long long)n->jump[1]);
    }
}

void shape_print_table(FILE *out, const Graph *g)
{
    int w = 5, ow = 8;             /* the name and op columns fit their longest */
    for (int i = 0; i < g->n; i++) {
        int len = (int)strlen(g->nodes[i].name), olen = (int)strlen(op_words[g->nodes[i].op]);
        w = len > w ? len : w;
        ow = olen > ow ? olen : ow;
    }
    char shape[64], field[64], jump[64];
    fprintf(out, "%-*s  %-*s %-14s %12s %14s  %-11s %-11s %s\n", w, "layer", ow, "op", "output",
            "params", "FLOPs", "field", "jump", "inputs");
    int64_t params = 0, flops = 0;
    for (int i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        rf_str(g, n, field, jump, sizeof field);
        fprintf(out, "%-*s  %-*s %-14s %12lld %14lld  %-11s %-11s", w, n->name, ow, op_words[n->op],
                shape_str(n->out, shape, sizeof shape), (long long)n->nparams,
                (long long)n->flops, field, jump);
        for (int k = 0; k < n->ninputs; k++)
            fprintf(out, "%s%s", k ? ", " : "", g->nodes[n->inputs[k]].name);
        fprintf(out, "%s\n", n->ninputs ? "" : "-");
        params += n->nparams;
        if (__builtin_add_overflow(flops, n->flops, &flops))
            flops = INT64_MAX;
    }
    fprintf(out, "%-*s  %-*s %-14s %12lld %14lld\n", w, "total", ow, "", "", (long long)params,
            (long long)flops);
    /* batch norms' running statistics: in params and the weights file, not trained */
    int64_t state = 0;
    for (int i = 0; i < g->nparams; i++)
        state += g->params[i]->state ? g->params[i]->size : 0;
    if (state)
        fprintf(out, "%-*s  %-*s %-14s %12lld  (running statistics, not trained)\n", w, "state", ow, "", "",
                (long long)state);
    int64_t macs = 0;
    for (int i = 0; i < g->n; i++)
        if (__builtin_add_overflow(macs, g->nodes[i].macs, &macs))
            macs = INT64_MAX;
    char pb[32], mb[32];
    fprintf(out, "%s parameters; %s multiply-adds (%.3g G) and %.3g GFLOPs per image\n",
            grouped(params, pb, sizeof pb), grouped(macs, mb, sizeof mb), (double)macs / 1e9, (double)flops / 1e9);
}

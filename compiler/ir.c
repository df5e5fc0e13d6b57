/*
 * ir.c: the syntax tree to the graph, and the graph back to text.
 *
 * ir_build checks the file's structure (one model block, at most one train
 * block), looks every statement up in the op table, names it (its label, or
 * <op><n>), binds its attributes and reads the train block's settings. Shapes
 * are shape_check's job. Then it draws the edges: a node reads the previous
 * statement, or its from=LABEL, and a join (add, concat) also the labels of
 * its positional value; each must name an earlier statement, so statement
 * order is a topological order and every pass walks the nodes in it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

const Arg *node_arg(const Node *n, const char *key)
{
    int i = spec_param(op_spec(n->op), key);
    CNNC_ASSERT(i >= 0);
    return &n->args[i];
}

const char *shape_str(Shape s, char *buf, size_t size)
{
    if (s.rank == 3)
        snprintf(buf, size, "%lldx%lldx%lld", (long long)s.d[0], (long long)s.d[1],
                 (long long)s.d[2]);
    else if (s.rank == 1)
        snprintf(buf, size, "%lld", (long long)s.d[0]);
    else
        snprintf(buf, size, "?");
    return buf;
}

/* ---- names: a hash set of the nodes' names, so that 65536 layers stay fast ---- */

typedef struct NameSet {
    const Node **slots;
    size_t mask;
} NameSet;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds n under its name; returns the node that had the name already, if any. */
static const Node *names_add(NameSet *set, const Node *n)
{
    for (size_t i = hash_str(n->name) & set->mask;; i = (i + 1) & set->mask) {
        if (!set->slots[i]) {
            set->slots[i] = n;
            return NULL;
        }
        if (strcmp(set->slots[i]->name, n->name) == 0)
            return set->slots[i];
    }
}

static const Node *names_find(const NameSet *set, const char *name)
{
    for (size_t i = hash_str(name) & set->mask; set->slots[i]; i = (i + 1) & set->mask)
        if (strcmp(set->slots[i]->name, name) == 0)
            return set->slots[i];
    return NULL;
}

/* ---- the edges ---- */

/* The node `label` names, as an input of node n: an earlier statement, or
 * an error (-1) with a suggestion among the earlier ones. */
static int resolve(Graph *g, const NameSet *names, const Node *n, const char *label, Loc at)
{
    Diag *d = g->diag;
    const Node *m = names_find(names, label);
    if (m && m->index < n->index)
        return m->output;
    if (m == n) {
        diag_error(d, at, "'%s' cannot read its own output", n->name);
    } else if (m) {
        diag_error(d, at, "'%s' is a later statement; an input must be an earlier one", label);
        diag_note(d, m->stmt->label ? m->stmt->label_loc : m->loc, "'%s' is defined here", label);
    } else {
        const char **earlier = malloc((size_t)(n->index + 1) * sizeof *earlier);
        for (int i = 0; i < n->index; i++)
            earlier[i] = g->nodes[i].name;
        const char *near = diag_suggest(label, earlier, n->index);
        if (near)
            diag_error(d, at, "unknown label '%s'; did you mean '%s'?", label, near);
        else
            diag_error(d, at, "unknown label '%s'", label);
        free(earlier);
    }
    return -1;
}

/* The `from=` of a statement: the first one (a second is an error). */
static const Item *from_item(Diag *d, const Stmt *s)
{
    const Item *found = NULL;
    for (const Item *it = s->items; it; it = it->next) {
        if (!it->key || strcmp(it->key, "from"))
            continue;
        if (found) {
            diag_error(d, it->key_loc, "'from' is given twice");
            diag_note(d, found->key_loc, "first given here");
        } else if (!it->has_value || it->value.kind != V_IDENT) {
            diag_error(d, it->has_value ? it->value.loc : it->key_loc, "'from' needs a label: from=LABEL");
            found = it;
        } else {
            found = it;
        }
    }
    return found;
}

static void add_input(Graph *g, Node *n, int from, Loc at, int cap)
{
    if (!n->inputs) {
        n->inputs = arena_alloc(g->arena, (size_t)cap * sizeof *n->inputs);
        n->input_locs = arena_alloc(g->arena, (size_t)cap * sizeof *n->input_locs);
    }
    n->input_locs[n->ninputs] = at;
    n->inputs[n->ninputs++] = from;
}

/* Each node's inputs, then each node's count of readers. */
static void build_edges(Graph *g, const NameSet *names)
{
    Diag *d = g->diag;
    for (int i = 0; i < g->n && !diag_too_many(d); i++) {
        Node *n = &g->nodes[i];
        if (i > 0 && g->nodes[i - 1].act_split && g->nodes[i - 1].output == i) {
            add_input(g, n, i - 1, n->loc, 1);      /* a conv's or fc's act=, split off */
            continue;
        }
        const Item *from = from_item(d, n->stmt);
        if (n->op < OP_COUNT && op_has(n->op, OPF_SOURCE)) {
            if (from)
                diag_error(d, from->key_loc, "'%s' reads no tensor, so it takes no 'from'", op_words[n->op]);
            continue;
        }
        const Value *labels = n->op < OP_COUNT && op_has(n->op, OPF_JOIN) && n->args[0].present
                            ? &n->args[0].v : NULL;
        int cap = 1 + (labels ? (labels->kind == V_LABELS ? labels->nlabels : 1) : 0);
        int first = -1;
        if (from && from->has_value && from->value.kind == V_IDENT)
            first = resolve(g, names, n, from->value.ident, from->value.loc);
        else if (!from && i > 0)
            first = i - 1;
        if (first < 0) {
            n->bad = n->bad || from || i > 0;
            continue;
        }
        add_input(g, n, first, from ? from->value.loc : n->loc, cap);
        for (int k = 0; labels && k < cap - 1; k++) {
            const char *label = labels->kind == V_LABELS ? labels->labels[k] : labels->ident;
            Loc at = labels->kind == V_LABELS ? labels->label_locs[k] : labels->loc;
            int j = resolve(g, names, n, label, at);
            if (j < 0)
                n->bad = true;
            else
                add_input(g, n, j, at, cap);
        }
    }
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++)
            g->nodes[g->nodes[i].inputs[k]].nreaders++;
}

/* ---- the model block ---- */

/* A conv's or fc's act= whose gradient needs its input (gelu, silu,
 * hardswish) is a graph rewrite: a node of that activation after it, named
 * NAME.act, which a label of the statement names. The kernel keeps only its
 * own output, which is that node's input. */
static void split_act(Graph *g, NameSet *names, Node *n)
{
    if (!op_has(n->op, OPF_TAKES_ACT) || spec_param(op_spec(n->op), "act") < 0)
        return;
    const Arg *a = node_arg(n, "act");
    if (!a->given || act_info[a->v.i].from_y)
        return;
    n->act_split = true;
    Node *m = &g->nodes[g->n];
    *m = (Node){.index = g->n, .output = g->n, .stmt = n->stmt, .loc = a->loc, .op = act_op((int)a->v.i)};
    char buf[300];
    snprintf(buf, sizeof buf, "%s.%s", n->name, act_info[a->v.i].word);
    m->name = arena_strdup(g->arena, buf, strlen(buf));
    const OpSpec *spec = op_spec(m->op);
    for (int k = 0; k < spec->nparams; k++)
        m->args[k] = (Arg){.present = spec->params[k].has_default, .v = spec->params[k].def, .loc = a->loc};
    names_add(names, m);
    n->output = g->n++;
}

/* "unknown op 'x'; did you mean 'y'?", or without the suggestion */
static void unknown_word(Diag *d, Loc at, const char *what, const char *word, const char *const *words, int n)
{
    const char *near = diag_suggest(word, words, n);
    if (near)
        diag_error(d, at, "unknown %s '%s'; did you mean '%s'?", what, word, near);
    else
        diag_error(d, at, "unknown %s '%s'", what, word);
}

static bool lookup_op(Diag *d, const Stmt *s, OpKind *op)
{
    int i = spec_lookup(op_words, OP_COUNT, s->word);
    if (i >= 0) {
        *op = (OpKind)i;
        return true;
    }
    unknown_word(d, s->loc, "op", s->word, op_words, OP_COUNT);
    if (spec_lookup(setting_words, SET_COUNT, s->word) >= 0)
        diag_note(d, s->loc, "'%s' is a setting of the train block", s->word);
    return false;
}

static void build_model(Graph *g, const Block *b)
{
    Diag *d = g->diag;
    int nstmts = b->nstmts < MAX_STMTS ? b->nstmts : MAX_STMTS;
    /* room for a node per statement, and one more for each act= split off */
    g->nodes = arena_alloc(g->arena, (size_t)(nstmts > 0 ? 2 * nstmts : 1) * sizeof(Node));
    size_t cap = 16;
    while (cap < 2 * (size_t)nstmts)
        cap *= 2;
    NameSet names = {arena_alloc(g->arena, cap * sizeof(Node *)), cap - 1};
    int count[OP_COUNT] = {0};
    const Node *input = NULL;

    for (const Stmt *s = b->stmts; s && !diag_too_many(d); s = s->next) {
        Node *n = &g->nodes[g->n];
        *n = (Node){.index = g->n, .output = g->n, .stmt = s, .loc = s->loc, .op = OP_COUNT};
        g->n++;
        if (!lookup_op(d, s, &n->op)) {
            n->name = s->label ? s->label : s->word;
            n->bad = true;
            continue;
        }
        int nth = ++count[n->op];
        if (s->label) {
            n->name = s->label;
        } else {
            char buf[64];
            snprintf(buf, sizeof buf, "%s%d", op_words[n->op], nth);
            n->name = arena_strdup(g->arena, buf, strlen(buf));
        }
        const Node *prev = names_add(&names, n);
        if (prev) {
            Loc at = s->label ? s->label_loc : s->loc;
            Loc was = prev->stmt->label ? prev->stmt->label_loc : prev->loc;
            diag_error(d, at, "duplicate name '%s'", n->name);
            diag_note(d, was, "'%s' is first defined here", n->name);
            if (!s->label)
                diag_note_plain(d, "an unlabeled %s is named %s by its position; give one of "
                                   "them another label", op_words[n->op], n->name);
        }
        if (!bind_args(d, op_spec(n->op), s, NULL, n->args))
            n->bad = true;
        else
            split_act(g, &names, n);
        if (op_has(n->op, OPF_SOURCE)) {
            if (input) {
                diag_error(d, s->loc, "'input' may appear only once");
                diag_note(d, input->loc, "the model's input is defined here");
            } else if (g->n != 1) {
                diag_error(d, s->loc, "'input' must be the model's first statement");
            }
            input = n;
        }
    }
    if (!input && !diag_too_many(d)) {
        diag_error(d, b->loc, "model '%s' has no 'input' statement", g->name);
        diag_note_plain(d, "begin the model with its image shape, e.g. 'input 28x28x1'");
    }
    build_edges(g, &names);
}

/* ---- the train block ---- */

static double real_arg(const Arg *a, double dflt)
{
    return a->present ? a->v.r : dflt;
}

static void read_optimizer(Graph *g, const Stmt *s)
{
    Diag *d = g->diag;
    const Item *first = s->items;
    if (!first || first->has_value || !first->key) {
        diag_error(d, first ? first->key_loc : s->loc,
                   "'optimizer' needs its name first: sgd, adagrad, adam or adamw");
        return;
    }
    int o = spec_lookup(optim_words, OPT_COUNT, first->key);
    if (o < 0) {
        const char *near = diag_suggest(first->key, optim_words, OPT_COUNT);
        if (near)
            diag_error(d, first->key_loc, "unknown optimizer '%s'; did you mean '%s'?",
                       first->key, near);
        else
            diag_error(d, first->key_loc,
                       "unknown optimizer '%s'; expected 'sgd', 'adagrad', 'adam' or 'adamw'", first->key);
        return;
    }
    const OpSpec *spec = optim_spec((OptimKind)o);
    Arg args[MAX_PARAMS_PER_OP];
    if (!bind_args(d, spec, s, first, args))
        return;
    TrainCfg *t = &g->train;
    t->optim = o;
    for (int i = 0; i < spec->nparams; i++) {
        const char *k = spec->params[i].key;
        if (!strcmp(k, "nesterov")) {
            t->nesterov = args[i].present;
            continue;
        }
        double v = real_arg(&args[i], 0);
        if (v < 0 || (!strcmp(k, "lr") && v == 0)) {
            diag_error(d, args[i].loc, "'%s' must be %s", k, !strcmp(k, "lr") ? "positive" : "non-negative");
            continue;
        }
        if ((!strcmp(k, "beta1") || !strcmp(k, "beta2")) && v >= 1) {
            diag_error(d, args[i].loc, "'%s' must be less than 1", k);
            continue;
        }
        double *field = !strcmp(k, "lr") ? &t->lr : !strcmp(k, "momentum") ? &t->momentum
                      : !strcmp(k, "weight_decay") ? &t->weight_decay : !strcmp(k, "eps") ? &t->eps
                      : !strcmp(k, "beta1") ? &t->beta1 : &t->beta2;
        *field = v;
    }
    if (t->nesterov && t->momentum <= 0)
        diag_error(d, args[spec_param(spec, "nesterov")].loc, "nesterov needs a momentum above 0 "
                   "(torch.optim.SGD's rule)");
}

static void set_optimizer_defaults(TrainCfg *t, OptimKind o)
{
    const OpSpec *spec = optim_spec(o);
    t->optim = o;
    t->lr = spec->params[spec_param(spec, "lr")].def.r;
    t->momentum = t->weight_decay = 0;
    if (o == OPT_ADAGRAD)
        t->eps = spec->params[spec_param(spec, "eps")].def.r;
    if (o == OPT_ADAM || o == OPT_ADAMW) {
        t->eps = spec->params[spec_param(spec, "eps")].def.r;
        t->beta1 = spec->params[spec_param(spec, "beta1")].def.r;
        t->beta2 = spec->params[spec_param(spec, "beta2")].def.r;
    }
}

/* schedule = none | step every=N | multistep at=[epochs] | cosine [min_lr=X],
 *            each with gamma= (step, multistep) and warmup=N */
static void read_schedule(Graph *g, const OpSpec *spec, const Arg *a)
{
    Diag *d = g->diag;
    TrainCfg *t = &g->train;
    const Arg *every = &a[spec_param(spec, "every")], *at = &a[spec_param(spec, "at")];
    const Arg *gamma = &a[spec_param(spec, "gamma")], *min_lr = &a[spec_param(spec, "min_lr")];
    t->schedule = (int)a[0].v.i;
    t->warmup = a[spec_param(spec, "warmup")].v.i;
    t->every = every->given ? every->v.i : 1;
    t->gamma = gamma->v.r;
    t->min_lr = min_lr->v.r;
    static const char *const kinds[] = {"none", "step", "multistep", "cosine"};
    /* each attribute belongs to some kinds only */
    const struct {
        const Arg *arg;
        const char *key;
        unsigned kinds;             /* bit per SCHED_* */
    } owns[] = {{every, "every", 1u << SCHED_STEP}, {at, "at", 1u << SCHED_MULTISTEP},
                {gamma, "gamma", 1u << SCHED_STEP | 1u << SCHED_MULTISTEP},
                {min_lr, "min_lr", 1u << SCHED_COSINE}};
    for (size_t i = 0; i < sizeof owns / sizeof *owns; i++)
        if (owns[i].arg->given && !(owns[i].kinds & 1u << t->schedule))
            diag_error(d, owns[i].arg->loc, "'%s' is not an attribute of schedule %s", owns[i].key,
                       kinds[t->schedule]);
    if (t->schedule == SCHED_STEP && !every->given)
        diag_error(d, a[0].loc, "schedule step needs every=N (epochs between steps)");
    if (t->schedule == SCHED_MULTISTEP && !at->given)
        diag_error(d, a[0].loc, "schedule multistep needs at=[epochs]");
    if (at->given) {
        for (int64_t i = 0; i < at->v.nlist; i++) {
            double e = at->v.list[i];
            if (e != floor(e) || e < 1 || (i > 0 && e <= at->v.list[i - 1])) {
                diag_error(d, at->loc, "'at' needs whole epochs above 0, ascending");
                break;
            }
        }
        t->at = at->v.list;
        t->nat = at->v.nlist;
    }
    if (gamma->given && !(gamma->v.r > 0))
        diag_error(d, gamma->loc, "'gamma' must be positive");
    if (min_lr->given && min_lr->v.r < 0)
        diag_error(d, min_lr->loc, "'min_lr' must be non-negative");
}

static void build_train(Graph *g, const Block *b)
{
    Diag *d = g->diag;
    const Stmt *seen[SET_COUNT] = {0};
    TrainCfg *t = &g->train;
    for (const Stmt *s = b ? b->stmts : NULL; s && !diag_too_many(d); s = s->next) {
        int k = spec_lookup(setting_words, SET_COUNT, s->word);
        if (k < 0) {
            unknown_word(d, s->loc, "setting", s->word, setting_words, SET_COUNT);
            if (spec_lookup(op_words, OP_COUNT, s->word) >= 0)
                diag_note(d, s->loc, "'%s' is an op: ops belong in the model block", s->word);
            continue;
        }
        if (s->label)
            diag_error(d, s->label_loc, "settings take no label");
        if (seen[k]) {
            diag_error(d, s->loc, "setting '%s' is given twice", s->word);
            diag_note(d, seen[k]->loc, "first given here");
            continue;
        }
        seen[k] = s;
        if (k == SET_OPTIMIZER) {
            read_optimizer(g, s);
            continue;
        }
        Arg a[MAX_PARAMS_PER_OP];
        if (!bind_args(d, setting_spec((SettingKind)k), s, NULL, a))
            continue;
        switch (k) {
        case SET_LOSS:
            t->loss = (int)a[0].v.i;
            t->loss_given = true;
            t->loss_loc = a[0].loc;
            break;
        case SET_BATCH: t->batch = a[0].v.i; break;
        case SET_EPOCHS: t->epochs = a[0].v.i; break;
        case SET_SEED: t->seed = (uint64_t)a[0].v.i; break;
        case SET_SCHEDULE: read_schedule(g, setting_spec(SET_SCHEDULE), a); break;
        case SET_VALIDATE:
            t->validate = a[0].v.r;
            if (t->validate < 0 || (t->validate >= 1 && t->validate != floor(t->validate)))
                diag_error(d, a[0].loc, "'validate' takes a number of images or a fraction below 1");
            break;
        case SET_AUGMENT:
            t->crop = a[0].v.i;
            t->flip = a[1].present;
            break;
        }
    }
}

static void init_train(TrainCfg *t)
{
    *t = (TrainCfg){0};
    t->batch = setting_spec(SET_BATCH)->params[0].def.i;
    t->epochs = setting_spec(SET_EPOCHS)->params[0].def.i;
    set_optimizer_defaults(t, OPT_SGD);
}

bool ir_build(Graph *g, Block *blocks, Arena *arena, Diag *d)
{
    *g = (Graph){.arena = arena, .diag = d};
    init_train(&g->train);
    const Block *model = NULL, *train = NULL;
    static const char *const block_words[] = {"model", "train"};
    for (const Block *b = blocks; b; b = b->next) {
        const Block **slot = !strcmp(b->word, "model") ? &model
                           : !strcmp(b->word, "train") ? &train : NULL;
        if (!slot) {
            const char *near = diag_suggest(b->word, block_words, 2);
            if (near)
                diag_error(d, b->loc, "unknown block '%s'; did you mean '%s'?", b->word, near);
            else
                diag_error(d, b->loc, "unknown block '%s'; expected 'model' or 'train'", b->word);
            continue;
        }
        if (*slot) {
            diag_error(d, b->loc, "a file has only one %s block", b->word);
            diag_note(d, (*slot)->loc, "the first one is here");
            continue;
        }
        *slot = b;
        if (slot == &model && !b->name) {
            diag_error(d, b->loc, "the model needs a name: 'model <name> {'");
        } else if (slot == &train && b->name) {
            diag_error(d, b->name_loc, "the train block takes no name");
        }
    }
    if (!model) {
        if (!d->errors)
            diag_error(d, (Loc){.file = d->file, .line = 1, .col = 1, .len = 1},
                       "no model block in this file");
        return false;
    }
    g->name = model->name ? model->name : "model";
    /* In file order, so that diagnostics come in file order. */
    for (const Block *b = blocks; b; b = b->next) {
        if (b == model)
            build_model(g, model);
        else if (b == train)
            build_train(g, train);
    }
    return d->errors == 0;
}

/* ---- --emit-ir ---- */

static void print_arg(FILE *out, const ParamSpec *p, const Arg *a)
{
    switch (p->type) {
    case PT_DIMS:
    case PT_PAD:
        if (a->same)
            fprintf(out, " %s=same", p->key);
        else
            fprintf(out, " %s=%lldx%lld", p->key, (long long)a->v.dims[0], (long long)a->v.dims[1]);
        break;
    case PT_SHAPE:
        break;
    case PT_CHOICE:
        fprintf(out, " %s=%s", p->key, p->choices[a->v.i]);
        break;
    case PT_BOOL:
        fprintf(out, " %s=%s", p->key, a->v.i ? "true" : "false");
        break;
    case PT_FLAG:
        fprintf(out, " %s", p->key);
        break;
    case PT_LIST:
        fprintf(out, " %s=[", p->key);
        for (int64_t i = 0; i < a->v.nlist; i++)
            fprintf(out, "%s%.9g", i ? " " : "", a->v.list[i]);
        fprintf(out, "]");
        break;
    case PT_REAL:
    case PT_RATE:
        fprintf(out, " %s=%g", p->key, a->v.r);
        break;
    default:
        fprintf(out, " %s=%lld", p->key, (long long)a->v.i);
    }
}

void ir_print(FILE *out, const Graph *g, bool backward, const Plan *plan)
{
    char buf[64];
    fprintf(out, "graph %s {\n", g->name);
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = g->params[i];
        fprintf(out, "  param %s [", p->name);
        for (int r = 0; r < p->rank; r++)
            fprintf(out, "%s%lld", r ? "x" : "", (long long)p->dims[r]);
        if (p->fixed)
            fprintf(out, "] fixed\n");
        else
            fprintf(out, "] at %lld\n", (long long)p->offset);
    }
    fprintf(out, "  forward:\n");
    for (int i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        const OpSpec *spec = op_spec(n->op);
        fprintf(out, "    %%%s = %s", n->name, spec->word);
        for (int k = 0; k < n->ninputs; k++)
            fprintf(out, "%s%%%s", k ? ", " : " ", g->nodes[n->inputs[k]].name);
        if (n->weight)
            fprintf(out, ", @%s", n->weight->name);
        if (n->bias)
            fprintf(out, ", @%s", n->bias->name);
        for (int a = 0; a < spec->nparams; a++) {
            const ParamSpec *p = &spec->params[a];
            bool window = !strcmp(p->key, "size") || !strcmp(p->key, "stride") ||
                          !strcmp(p->key, "pad") || !strcmp(p->key, "dilation") || !strcmp(p->key, "groups");
            if (!n->args[a].present || p->type == PT_LABELS || p->type == PT_SHAPE || window)
                continue;
            print_arg(out, p, &n->args[a]);
        }
        if (n->kh)
            fprintf(out, " size=%dx%d stride=%dx%d pad=%dx%d", n->kh, n->kw, n->sh, n->sw,
                    n->ph, n->pw);
        if (n->dh > 1 || n->dw > 1)
            fprintf(out, " dilation=%dx%d", n->dh, n->dw);
        if (n->groups > 1)
            fprintf(out, " groups=%lld", (long long)n->groups);
        fprintf(out, " : %s", shape_str(n->out, buf, sizeof buf));
        if (n->fused)
            fprintf(out, "    # applied by %%%s's kernel", g->nodes[i - 1].name);
        if (n->folded)
            fprintf(out, "    # in inference, folded into %%%s's weights", g->nodes[i - 1].name);
        fprintf(out, "\n");
    }
    if (backward)
        autodiff_print(out, g);
    if (plan)
        plan_print(out, g, plan, backward);
    fprintf(out, "}\n");
}

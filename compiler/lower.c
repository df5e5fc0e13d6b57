/*
 * lower.c: nodes to code. Each node's forward and backward pass becomes a
 * function of its own (its family's emit_<family>_fwd / _bwd inside), and
 * emit_forward is the one walk over the graph's forward pass that inference,
 * a train step and `show`'s activations share, each with its policy.
 */
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

typedef void EmitFwdFn(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out);
typedef void EmitBwdFn(Cg *c, const Node *n, const Bwd *a);

static EmitFwdFn *const emit_fwd_fn[OP_COUNT] = {
#define OP(id, word, family, in, flags, spec, summary) [OP_##id] = emit_##family##_fwd,
#include "ops.def"
#undef OP
};

static EmitBwdFn *const emit_bwd_fn[OP_COUNT] = {
#define OP(id, word, family, in, flags, spec, summary) [OP_##id] = emit_##family##_bwd,
#include "ops.def"
#undef OP
};

void cg_target_attrs(Cg *c, LLVMValueRef fn)
{
    if (c->small)
        cg_for_size(c, fn);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
        LLVMCreateStringAttribute(c->ctx, "target-cpu", 10, c->cpu, (unsigned)strlen(c->cpu)));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
        LLVMCreateStringAttribute(c->ctx, "target-features", 15, c->features,
                                  (unsigned)strlen(c->features)));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
        LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0));
}

/* Every op's code is a function of its own, CALLER.NODE (.bwd for the
 * backward), internal and never inlined: a profile names the layer, and LLVM
 * optimizes each kernel alone. Its arguments are the caller's values the
 * emitter may use, constants excepted (they stay constants), and last a
 * table of the offsets into params and the workspace it uses (cg_offset),
 * a constant of the caller's loaded in the function's entry block. So two
 * layers alike (ResNet-18's twelve 3x3 convs of four shapes) emit the same
 * function, which LLVM's mergefunc pass (backend_optimize) keeps once, and
 * the compile time follows the distinct layers, not the layers. The
 * tensors of one call never overlap (the plan gives each its own bytes), so
 * every pointer is noalias. */
typedef struct Outline {
    LLVMValueRef **slot;            /* where each value lives in Cg, Bwd or an input array */
    LLVMValueRef *saved;
    int n;
    LLVMValueRef fn, caller;
    LLVMBasicBlockRef block, entry, body;
    /* the caller's cg_offset state, when outlines nest */
    LLVMValueRef offsets;
    LLVMBuilderRef offsets_b;
    int64_t *offset_vals;
    int noffsets, offsets_cap;
} Outline;

static void outline_init(Outline *o, int cap)
{
    *o = (Outline){.slot = calloc((size_t)cap + 8, sizeof *o->slot), .saved = calloc((size_t)cap + 8, sizeof *o->saved)};
}

static void outline_add(Outline *o, LLVMValueRef *slot)
{
    if (*slot && !LLVMIsConstant(*slot))
        o->slot[o->n++] = slot;
}

static void outline_begin(Cg *c, Outline *o, const Node *n, const char *suffix)
{
    outline_add(o, &c->params);
    outline_add(o, &c->batch);
    outline_add(o, &c->ws);
    outline_add(o, &c->drop_key);
    outline_add(o, &c->drop_first);
    outline_add(o, &c->sync);
    LLVMTypeRef *types = calloc((size_t)o->n + 2, sizeof *types);
    for (int i = 0; i < o->n; i++)
        types[i] = LLVMTypeOf(*o->slot[i]);
    types[o->n] = c->ptr;           /* the offsets */
    size_t len;
    char name[256];
    snprintf(name, sizeof name, "%s.%s%s", LLVMGetValueName2(c->fn, &len), n->name, suffix);
    o->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->voidt, types, (unsigned)o->n + 1, false));
    LLVMSetLinkage(o->fn, LLVMInternalLinkage);
    cg_target_attrs(c, o->fn);
    LLVMAddAttributeAtIndex(o->fn, LLVMAttributeFunctionIndex,
        LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (int i = 0; i < o->n; i++) {
        o->saved[i] = *o->slot[i];
        /* the same tensor may come twice (add [x x]): noalias only on distinct ones */
        bool twice = false;
        for (int j = 0; j < o->n; j++)
            twice = twice || (j != i && *o->slot[j] == *o->slot[i]);
        if (types[i] == c->ptr && !twice)
            LLVMAddAttributeAtIndex(o->fn, (unsigned)i + 1, LLVMCreateEnumAttribute(c->ctx, noalias, 0));
    }
    /* the table is read only, and read whole */
    for (const char *const *a = (const char *const[]){"noalias", "readonly", "nocapture", NULL}; *a; a++)
        LLVMAddAttributeAtIndex(o->fn, (unsigned)o->n + 1,
                                LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName(*a, strlen(*a)), 0));
    free(types);
    o->block = LLVMGetInsertBlock(c->b);
    o->caller = c->fn;
    c->fn = o->fn;
    o->entry = LLVMAppendBasicBlockInContext(c->ctx, o->fn, "offsets");
    o->body = LLVMAppendBasicBlockInContext(c->ctx, o->fn, "entry");
    LLVMPositionBuilderAtEnd(c->b, o->body);
    for (int i = 0; i < o->n; i++)
        *o->slot[i] = LLVMGetParam(o->fn, (unsigned)i);
    o->offsets = c->offsets, o->offsets_b = c->offsets_b, o->offset_vals = c->offset_vals;
    o->noffsets = c->noffsets, o->offsets_cap = c->offsets_cap;
    c->offsets = LLVMGetParam(o->fn, (unsigned)o->n);
    c->offsets_b = LLVMCreateBuilderInContext(c->ctx);
    LLVMPositionBuilderAtEnd(c->offsets_b, o->entry);
    c->offset_vals = NULL;
    c->noffsets = c->offsets_cap = 0;
}

static void outline_end(Cg *c, Outline *o)
{
    LLVMBuildRetVoid(c->b);
    LLVMBuildBr(c->offsets_b, o->body);
    LLVMDisposeBuilder(c->offsets_b);
    int k = c->noffsets;
    LLVMValueRef *vals = calloc((size_t)k + 1, sizeof *vals);
    for (int i = 0; i < k; i++)
        vals[i] = cg_i64(c, c->offset_vals[i]);
    free(c->offset_vals);
    if (k > 0)
        LLVMAddAttributeAtIndex(o->fn, (unsigned)o->n + 1,
            LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName("dereferenceable", 15),
                                    (uint64_t)k * 8));
    c->offsets = o->offsets, c->offsets_b = o->offsets_b, c->offset_vals = o->offset_vals;
    c->noffsets = o->noffsets, c->offsets_cap = o->offsets_cap;
    c->fn = o->caller;
    LLVMPositionBuilderAtEnd(c->b, o->block);
    for (int i = 0; i < o->n; i++)
        *o->slot[i] = o->saved[i];
    LLVMValueRef table = LLVMConstPointerNull(c->ptr);
    if (k > 0) {
        LLVMValueRef init = LLVMConstArray2(c->i64, vals, (uint64_t)k);
        table = LLVMAddGlobal(c->mod, LLVMTypeOf(init), "offsets");
        LLVMSetInitializer(table, init);
        LLVMSetGlobalConstant(table, true);
        LLVMSetLinkage(table, LLVMPrivateLinkage);
        LLVMSetUnnamedAddress(table, LLVMGlobalUnnamedAddr);
    }
    o->saved[o->n] = table;
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(o->fn), o->fn, o->saved, (unsigned)o->n + 1, "");
    free(vals);
    free(o->slot);
    free(o->saved);
}

/* Node n's forward pass from its inputs (ins, one per edge) into out. */
void emit_node_fwd(Cg *c, const Node *n, const LLVMValueRef *ins, LLVMValueRef out)
{
    /* a source reads the caller's input; a fused add's other input comes last */
    int k = n->ninputs ? n->ninputs + (n->residual != NULL) : ins != NULL;
    LLVMValueRef *in = calloc((size_t)k + 1, sizeof *in);
    for (int i = 0; i < k; i++)
        in[i] = ins[i];
    Outline o;
    outline_init(&o, k + 1);
    for (int i = 0; i < k; i++)
        outline_add(&o, &in[i]);
    outline_add(&o, &out);
    outline_begin(c, &o, n, "");
    c->ins = in;
    emit_fwd_fn[n->op](c, n, k ? in[0] : NULL, out);
    c->ins = NULL;
    outline_end(c, &o);
    free(in);
}

void emit_node_bwd(Cg *c, const Node *n, const Bwd *a)
{
    Bwd b = *a;
    int k = n->ninputs;
    LLVMValueRef *in = calloc((size_t)k + 1, sizeof *in), *din = calloc((size_t)k + 1, sizeof *din);
    for (int i = 0; i < k; i++) {
        in[i] = a->ins[i];
        din[i] = a->dins[i];
    }
    Outline o;
    outline_init(&o, 2 * k + 3);
    for (int i = 0; i < k; i++) {
        outline_add(&o, &in[i]);
        outline_add(&o, &din[i]);
    }
    outline_add(&o, &b.out);
    outline_add(&o, &b.dout);
    outline_add(&o, &b.dparams);
    outline_begin(c, &o, n, ".bwd");
    b.ins = in;
    b.dins = din;
    b.inp = in[0];
    b.dinp = din[0];
    emit_bwd_fn[n->op](c, n, &b);
    outline_end(c, &o);
    free(in);
    free(din);
}

/* The values of n's inputs, one per edge, from the values of the nodes (a
 * malloc'd array). */
LLVMValueRef *node_input_values(const Node *n, const LLVMValueRef *val)
{
    LLVMValueRef *ins = calloc((size_t)n->ninputs + 1, sizeof *ins);
    for (int k = 0; k < n->ninputs; k++)
        ins[k] = val[n->inputs[k]];
    return ins;
}

/* The forward pass of every node after the input, which is read at `input`;
 * val[i] gets node i's output. FWD_INFER: activations and max pools applied
 * by their producer's kernel where it can (a pool only when it is the conv's
 * only reader), batch norms folded into the conv before them, and adds
 * into the conv whose output they alone read (infer_pass),
 * outputs where plan->out puts them, the model's into `output`.
 * FWD_TRAIN: activations applied by their producer's kernel, the outputs at
 * plan->step_act, for as long as forward and backward read them. FWD_KEEP:
 * every node on its own at plan->act (`show` draws each). */
/* The pass from node i (see emit_forward): *n as its kernel runs it,
 * possibly tmp; returns the last node it stands for. */
static int forward_pass(Cg *c, FwdPolicy policy, int i, Node *tmp, const Node **n)
{
    const Graph *g = c->g;
    *n = policy == FWD_KEEP ? &g->nodes[i] : node_with_fused(g, i, tmp);
    int end = *n == tmp ? i + 1 : i;
    if (policy == FWD_INFER)
        end = infer_pass(g, i, tmp, n);
    const Node *next = end + 1 < g->n ? &g->nodes[end + 1] : NULL;
    if (policy == FWD_INFER && op_has((*n)->op, OPF_TAKES_POOL) && !(*n)->residual && next &&
        g->nodes[end].nreaders == 1 && next->inputs[0] == end && conv_takes_pool(c, *n, next)) {
        if (*n != tmp)
            *tmp = **n;
        tmp->pool_fused = true;
        *n = tmp;
        end++;
    }
    return end;
}

void emit_forward(Cg *c, const Plan *plan, FwdPolicy policy, LLVMValueRef input, LLVMValueRef output,
                  LLVMValueRef *val)
{
    const Graph *g = c->g;
    c->scratch = policy == FWD_INFER ? plan->conv_infer : plan->conv;
    const int64_t *at = policy == FWD_TRAIN ? plan->step_act : plan->act;
    val[0] = input;
    if (g->nodes[0].normalizes) {
        /* the input's own pass: the caller's pixels, normalized */
        val[0] = policy != FWD_INFER ? cg_ws(c, at[0]) : g->n == 1 ? output : cg_ws(c, plan->out[0]);
        emit_node_fwd(c, &g->nodes[0], &input, val[0]);
    }
    for (int i = 1; i < g->n; i++) {
        Node tmp;
        const Node *n;
        int end = forward_pass(c, policy, i, &tmp, &n);
        LLVMValueRef dst = policy != FWD_INFER ? cg_ws(c, at[i])
                         : end == g->n - 1 ? output : cg_ws(c, plan->out[end]);
        LLVMValueRef *ins = node_input_values(&g->nodes[i], val);
        if (n->residual)
            ins[n->ninputs] = val[n->residual->index];
        emit_node_fwd(c, n, ins, dst);
        free(ins);
        for (int j = i; j <= end; j++)
            val[j] = dst;
        i = end;
    }
}

/* The packs of every inference pass of an OPF_PACKS op (NAME_prepare),
 * where plan->conv_infer puts them */
void emit_packs(Cg *c, const Plan *plan)
{
    const Graph *g = c->g;
    c->scratch = plan->conv_infer;
    c->prep = PREP_PACK;
    for (int i = 1; i < g->n; i++) {
        Node tmp;
        const Node *n;
        int end = forward_pass(c, FWD_INFER, i, &tmp, &n);
        if (op_has(n->op, OPF_PACKS)) {
            LLVMValueRef *none = calloc((size_t)n->ninputs + 2, sizeof *none);
            emit_node_fwd(c, n, none, NULL);
            free(none);
        }
        i = end;
    }
    c->prep = PREP_BOTH;
}

/*
 * emit.c: the back end. The checked graph to an LLVM module, optimized with
 * the new pass manager for the host CPU (or --target/-mcpu), written as LLVM
 * IR, assembly, an object plus header, or an executable linked with the
 * runtime by the system cc.
 *
 * The module defines, for a model NAME (lower case):
 *   NAME_infer(params, input, output, n, workspace)   the forward pass
 *   NAME_init_params(params, seed)                    the init rules
 * and, for an executable, the constant `cnn_model` (runtime/cnnrt.h) through
 * which the runtime's command line reaches them. Every op's loop nest comes
 * from its family's emit_<family>_fwd; this file only wires them together.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "cnnc.h"
#include "../runtime/cnnrt.h"

/* the runtime's copies of choices.def's enums */
_Static_assert((int)LOSS_CROSS_ENTROPY == CNN_LOSS_CROSS_ENTROPY && (int)LOSS_MSE == CNN_LOSS_MSE, "loss words");
_Static_assert((int)SCHED_NONE == CNN_SCHED_NONE && (int)SCHED_STEP == CNN_SCHED_STEP &&
               (int)SCHED_MULTISTEP == CNN_SCHED_MULTISTEP && (int)SCHED_COSINE == CNN_SCHED_COSINE,
               "schedule words");

static bool emit_files(Backend *be, LLVMModuleRef mod, const char *lname, const Plan *plan);

const char *emit_llvm_version(void)
{
    static char buf[32];
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(buf, sizeof buf, "%u.%u.%u", major, minor, patch);
    return buf;
}

/* ---- module pieces ---- */

static LLVMValueRef const_floats(Cg *c, const char *name, const double *v, const float *vf,
                                 int64_t n)
{
    LLVMValueRef *elems = malloc((size_t)n * sizeof *elems);
    for (int64_t i = 0; i < n; i++)
        elems[i] = cg_f32(c, v ? v[i] : vf[i]);
    LLVMValueRef init = LLVMConstArray2(c->f32, elems, (uint64_t)n);
    free(elems);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, true);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetAlignment(gv, 64);
    return gv;
}

static void name_params(LLVMValueRef fn, const char *const *names)
{
    for (unsigned i = 0; i < LLVMCountParams(fn); i++)
        LLVMSetValueName2(LLVMGetParam(fn, i), names[i], strlen(names[i]));
}

/* void NAME_suffix(args...), its parameters named, the builder at its entry
 * and c->fn it */
static LLVMValueRef api_function(Cg *c, const char *lname, const char *suffix, LLVMTypeRef *args, unsigned n,
                                 const char *const *names)
{
    char fname[256];
    snprintf(fname, sizeof fname, "%s_%s", lname, suffix);
    LLVMValueRef fn = LLVMAddFunction(c->mod, fname, LLVMFunctionType(c->voidt, args, n, false));
    name_params(fn, names);
    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    return fn;
}

static const char *const infer_names[] = {"params", "input", "output", "n", "workspace"};

/* void NAME_prepare(const float *params, void *workspace): the weights'
 * packs of every inference pass, at the start of the workspace */
static LLVMValueRef emit_prepare(Cg *c, const char *lname, const Plan *plan, LLVMValueRef baked)
{
    LLVMValueRef fn = api_function(c, lname, "prepare", (LLVMTypeRef[]){c->ptr, c->ptr}, 2,
                                   (const char *[]){"params", "workspace"});
    c->params = baked ? baked : LLVMGetParam(fn, 0);
    c->batch = cg_i64(c, 1);
    c->ws = LLVMGetParam(fn, 1);
    emit_packs(c, plan);
    LLVMBuildRetVoid(c->b);
    return fn;
}

/* The forward pass of n images from input to output, plan->chunk of them at
 * a time (each chunk through every pass before the next) */
static void emit_forward_chunks(Cg *c, const Plan *plan, LLVMValueRef input, LLVMValueRef output, LLVMValueRef *val)
{
    const Graph *g = c->g;
    if (plan->chunk >= plan->batch) {
        emit_forward(c, plan, FWD_INFER, input, output, val);
        return;
    }
    LLVMValueRef n = c->batch, chunk = cg_i64(c, plan->chunk);
    Loop l;
    LLVMValueRef first = cg_mul(c, cg_loop(c, &l, LLVMBuildUDiv(c->b, cg_add(c, n, cg_i64(c, plan->chunk - 1)),
                                                                chunk, ""), "chunk"), chunk);
    LLVMValueRef rest = LLVMBuildSub(c->b, n, first, "");
    c->batch = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, rest, chunk, ""), rest, chunk, "images");
    emit_forward(c, plan, FWD_INFER, cg_at(c, input, cg_mul(c, first, cg_i64(c, shape_elems(g->nodes[0].out)))),
                 cg_at(c, output, cg_mul(c, first, cg_i64(c, shape_elems(g->nodes[g->n - 1].out)))), val);
    cg_loop_end(c, &l);
    c->batch = n;
}

/* void NAME_infer_prepared(const float *params, const float *input, float *output,
 *                          int n, void *workspace): the forward pass on the
 * packs NAME_prepare left in the workspace */
static LLVMValueRef emit_infer_prepared(Cg *c, const char *lname, const Plan *plan, LLVMValueRef baked)
{
    const Graph *g = c->g;
    LLVMValueRef fn = api_function(c, lname, "infer_prepared", (LLVMTypeRef[]){c->ptr, c->ptr, c->ptr, c->i32, c->ptr},
                                   5, infer_names);
    c->params = baked ? baked : LLVMGetParam(fn, 0);
    c->batch = LLVMBuildSExt(c->b, LLVMGetParam(fn, 3), c->i64, "batch");
    c->ws = LLVMGetParam(fn, 4);
    LLVMValueRef *val = calloc((size_t)g->n, sizeof *val);
    c->prep = PREP_RUN;
    emit_forward_chunks(c, plan, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), val);
    c->prep = PREP_BOTH;
    free(val);
    if (g->n == 1 && !g->nodes[0].normalizes) {
        /* a model of only `input`: copy it through */
        LLVMBuildMemCpy(c->b, LLVMGetParam(fn, 2), 4, LLVMGetParam(fn, 1), 4,
                        cg_mul(c, c->batch, cg_i64(c, 4 * shape_elems(g->nodes[0].out))));
    }
    LLVMBuildRetVoid(c->b);
    return fn;
}

/* void NAME_infer(const float *params, const float *input, float *output,
 *                 int n, void *workspace): NAME_prepare, then NAME_infer_prepared */
static LLVMValueRef emit_infer(Cg *c, const char *lname, LLVMValueRef prepare, LLVMValueRef prepared)
{
    LLVMValueRef fn = api_function(c, lname, "infer", (LLVMTypeRef[]){c->ptr, c->ptr, c->ptr, c->i32, c->ptr}, 5,
                                   infer_names);
    LLVMValueRef pa[] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 4)};
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(prepare), prepare, pa, 2, "");
    LLVMValueRef ia[] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), LLVMGetParam(fn, 3),
                         LLVMGetParam(fn, 4)};
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(prepared), prepared, ia, 5, "");
    LLVMBuildRetVoid(c->b);
    return fn;
}

static double init_bound(const Param *p)
{
    return p->init == INIT_HE ? sqrt(6.0 / (double)p->fan_in)
         : p->init == INIT_XAVIER ? sqrt(6.0 / (double)(p->fan_in + p->fan_out)) : 0;
}

/* Element i of tensor t by its init rule: what emit_init's code computes
 * (cg_hash_uniform of seed + t * 2^32 + i), for fixed tensors at compile time. */
static double init_value(const Param *p, int t, uint64_t seed, int64_t i)
{
    double bound = init_bound(p);
    if (bound == 0)
        return p->init == INIT_ONES;
    uint64_t z = (seed + ((uint64_t)t << 32) + (uint64_t)i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    return (double)((u * 2.0f - 1.0f) * (float)bound);
}

/* void NAME_init_params(float *params, uint64_t seed): per tensor, its given
 * values, zeros, or uniform(-bound, bound) with He's bound sqrt(6 / fan_in) or
 * Xavier's sqrt(6 / (fan_in + fan_out)). The random numbers are splitmix64 of
 * (seed + tensor index * 2^32 + element index): no state carried between
 * elements, so the loop stays simple and the result is the same everywhere. */
static LLVMValueRef emit_init(Cg *c, const char *lname)
{
    const Graph *g = c->g;
    LLVMValueRef fn = api_function(c, lname, "init_params", (LLVMTypeRef[]){c->ptr, c->i64}, 2,
                                   (const char *[]){"params", "seed"});
    LLVMValueRef params = LLVMGetParam(fn, 0), seed = LLVMGetParam(fn, 1);
    LLVMBuilderRef b = c->b;
    for (int t = 0; t < g->nparams; t++) {
        const Param *p = g->params[t];
        if (p->fixed)
            continue;
        LLVMValueRef base = cg_at(c, params, cg_i64(c, p->offset));
        if (p->values) {
            LLVMValueRef src = const_floats(c, p->name, p->values, NULL, p->size);
            LLVMBuildMemCpy(b, base, 4, src, 4, cg_i64(c, 4 * p->size));
            continue;
        }
        double bound = init_bound(p);
        Loop l;
        LLVMValueRef i = cg_loopn(c, &l, p->size, p->name);
        LLVMValueRef v = cg_f32(c, p->init == INIT_ONES);
        if (bound > 0) {
            LLVMValueRef key = LLVMBuildAdd(b, seed, LLVMBuildAdd(b, cg_i64(c, (int64_t)t << 32), i, ""), "");
            LLVMValueRef u = cg_hash_uniform(c, key);
            v = LLVMBuildFMul(b, LLVMBuildFSub(b, LLVMBuildFMul(b, u, cg_f32(c, 2), ""),
                                               cg_f32(c, 1), ""), cg_f32(c, bound), "init");
        }
        cg_store(c, v, base, i);
        cg_loop_end(c, &l);
    }
    LLVMBuildRetVoid(b);
    return fn;
}

/* The trainable tensors as the runtime sees them (a malloc'd array). */
static CnnTensor *graph_tensors(const Graph *g, int *count)
{
    CnnTensor *t = calloc((size_t)g->nparams + 1, sizeof *t);
    int n = 0;
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = g->params[i];
        if (p->fixed)
            continue;
        t[n] = (CnnTensor){.name = p->name, .rank = p->rank, .offset = p->offset, .size = p->size};
        for (int r = 0; r < p->rank; r++)
            t[n].dims[r] = (int32_t)p->dims[r];
        n++;
    }
    *count = n;
    return t;
}

void emit_tensors(FILE *f, const Graph *g)
{
    int n;
    CnnTensor *t = graph_tensors(g, &n);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s ", t[i].name);
        for (int r = 0; r < t[i].rank; r++)
            fprintf(f, "%s%d", r ? "x" : "", t[i].dims[r]);
        fputc('\n', f);
    }
    free(t);
}

/* FNV-1a over the tensors' names and shapes: the key of a weights file. */
uint64_t emit_shape_hash(const Graph *g)
{
    int n;
    CnnTensor *t = graph_tensors(g, &n);
    uint64_t h = cnnw_shape_hash(t, n);
    free(t);
    return h;
}

static LLVMValueRef const_str(Cg *c, const char *s, const char *name)
{
    LLVMValueRef init = LLVMConstStringInContext(c->ctx, s, (unsigned)strlen(s), false);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, true);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

static LLVMValueRef private_const(Cg *c, LLVMValueRef init, const char *name)
{
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, true);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

static LLVMValueRef i32c(Cg *c, int64_t v)
{
    return LLVMConstInt(c->i32, (unsigned long long)v, true);
}

/* ---- the descriptor: runtime/cnnabi.def's structs, filled by field name ---- */

typedef enum { ABI_PTR, ABI_I32, ABI_I64, ABI_F32, ABI_I32X3, ABI_I32X4, ABI_HYPER } AbiKind;

enum {
#define TENSOR_FIELD(kind, ctype, name) TF_##name,
#include "../runtime/cnnabi.def"
    TF_COUNT
};
enum {
#define LAYER_FIELD(kind, ctype, name) LF_##name,
#include "../runtime/cnnabi.def"
    LF_COUNT
};
enum {
#define MODEL_FIELD(kind, ctype, name) MF_##name,
#include "../runtime/cnnabi.def"
    MF_COUNT
};

static const AbiKind tensor_kinds[TF_COUNT] = {
#define TENSOR_FIELD(kind, ctype, name) ABI_##kind,
#include "../runtime/cnnabi.def"
};
static const AbiKind layer_kinds[LF_COUNT] = {
#define LAYER_FIELD(kind, ctype, name) ABI_##kind,
#include "../runtime/cnnabi.def"
};
static const AbiKind model_kinds[MF_COUNT] = {
#define MODEL_FIELD(kind, ctype, name) ABI_##kind,
#include "../runtime/cnnabi.def"
};

static LLVMTypeRef abi_type(Cg *c, const AbiKind *kinds, int n)
{
    LLVMTypeRef t[MF_COUNT];
    for (int i = 0; i < n; i++)
        switch (kinds[i]) {
        case ABI_PTR: t[i] = c->ptr; break;
        case ABI_I32: t[i] = c->i32; break;
        case ABI_I64: t[i] = c->i64; break;
        case ABI_F32: t[i] = c->f32; break;
        case ABI_I32X3: t[i] = LLVMArrayType2(c->i32, 3); break;
        case ABI_I32X4: t[i] = LLVMArrayType2(c->i32, 4); break;
        case ABI_HYPER: t[i] = LLVMTypeOf(train_hyper_const(c)); break;
        }
    return LLVMStructTypeInContext(c->ctx, t, (unsigned)n, false);
}

/* A struct of the ABI from its fields' values, every one of them set. */
static LLVMValueRef abi_const(LLVMTypeRef type, LLVMValueRef *v, int n)
{
    for (int i = 0; i < n; i++)
        CNNC_ASSERT(v[i]);
    return LLVMConstNamedStruct(type, v, (unsigned)n);
}

static LLVMValueRef i32_array(Cg *c, const int64_t *v, int rank, int len)
{
    LLVMValueRef d[4];
    for (int r = 0; r < len; r++)
        d[r] = i32c(c, r < rank ? v[r] : 0);
    return LLVMConstArray2(c->i32, d, (uint64_t)len);
}

/* The CnnTensor array of the trainable (or the fixed) tensors. */
static LLVMValueRef tensor_array(Cg *c, bool fixed, int *count, int *index_of)
{
    const Graph *g = c->g;
    LLVMTypeRef tensor_t = abi_type(c, tensor_kinds, TF_COUNT);
    LLVMValueRef *items = calloc((size_t)g->nparams + 1, sizeof *items);
    int n = 0;
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = g->params[i];
        if (p->fixed != fixed)
            continue;
        index_of[i] = n;
        LLVMValueRef f[TF_COUNT] = {
            [TF_name] = const_str(c, p->name, "tensor.name"), [TF_rank] = i32c(c, p->rank),
            [TF_dims] = i32_array(c, p->dims, p->rank, 4), [TF_offset] = cg_i64(c, p->offset),
            [TF_size] = cg_i64(c, p->size), [TF_data] = fixed ? c->fixed[i] : LLVMConstPointerNull(c->ptr),
            [TF_state] = i32c(c, p->state),
        };
        items[n++] = abi_const(tensor_t, f, TF_COUNT);
    }
    LLVMValueRef arr = LLVMConstArray2(tensor_t, items, (uint64_t)n);
    free(items);
    *count = n;
    return private_const(c, arr, fixed ? "cnn_model.fixed" : "cnn_model.tensors");
}

/* What `show` can draw of a node: a rank-4 weight as kernels; the output
 * maps of a node with kernels or a window. */
static int32_t layer_flags(const Node *n)
{
    bool kernels = n->weight && n->weight->rank == 4;
    return (kernels ? CNN_LAYER_KERNELS : 0) | (n->out.rank == 3 && (kernels || n->kh) ? CNN_LAYER_MAPS : 0);
}

/* The constant `cnn_model` (CnnModel of runtime/cnnrt.h). */
/* whether a train step's shares must exchange statistics (OPF_WHOLE_BATCH) */
static bool graph_syncs(const Graph *g)
{
    for (int i = 0; i < g->n; i++)
        if (op_has(g->nodes[i].op, OPF_WHOLE_BATCH))
            return true;
    return false;
}

/* infer: NAME_infer, NAME_prepare, NAME_infer_prepared */
static void emit_descriptor(Cg *c, const Plan *plan, const LLVMValueRef *infer, LLVMValueRef init,
                            const TrainFns *t, LLVMValueRef acts, LLVMValueRef baked)
{
    const Graph *g = c->g;
    int nt, nf;
    int *index_of = calloc((size_t)g->nparams + 1, sizeof *index_of);
    LLVMValueRef tglob = tensor_array(c, false, &nt, index_of);
    LLVMValueRef fglob = tensor_array(c, true, &nf, index_of);

    LLVMTypeRef layer_t = abi_type(c, layer_kinds, LF_COUNT);
    LLVMValueRef *layers = calloc((size_t)g->n, sizeof *layers);
    for (int i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        int w = -1, fw = -1;
        for (int k = 0; k < g->nparams && n->weight; k++)
            if (g->params[k] == n->weight)
                (n->weight->fixed ? &fw : &w)[0] = index_of[k];
        LLVMValueRef f[LF_COUNT] = {
            [LF_name] = const_str(c, n->name, "layer.name"), [LF_op] = const_str(c, op_words[n->op], "layer.op"),
            [LF_rank] = i32c(c, n->out.rank), [LF_dims] = i32_array(c, n->out.d, n->out.rank, 3),
            [LF_act_offset] = cg_i64(c, acts && i > 0 ? plan->act[i] : -1), [LF_weight] = i32c(c, w),
            [LF_fixed_weight] = i32c(c, fw), [LF_flags] = i32c(c, layer_flags(n)),
        };
        layers[i] = abi_const(layer_t, f, LF_COUNT);
    }
    LLVMValueRef lglob = private_const(c, LLVMConstArray2(layer_t, layers, (uint64_t)g->n), "cnn_model.layers");
    free(layers);
    free(index_of);

    const Shape *in = &g->nodes[0].out;
    LLVMValueRef null = LLVMConstPointerNull(c->ptr);
    const TrainCfg *tc = &g->train;
    LLVMValueRef milestones = null;
    if (tc->nat) {
        LLVMValueRef *at = calloc((size_t)tc->nat, sizeof *at);
        for (int64_t k = 0; k < tc->nat; k++)
            at[k] = i32c(c, (int64_t)tc->at[k]);
        milestones = private_const(c, LLVMConstArray2(c->i32, at, (uint64_t)tc->nat), "cnn_model.milestones");
        free(at);
    }
    LLVMValueRef f[MF_COUNT] = {
        [MF_name] = const_str(c, g->name, "cnn_model.name"),
        [MF_batch] = i32c(c, plan->batch), [MF_train_batch] = i32c(c, tc->batch),
        [MF_height] = i32c(c, in->d[0]), [MF_width] = i32c(c, in->d[1]), [MF_channels] = i32c(c, in->d[2]),
        [MF_outputs] = i32c(c, shape_elems(g->nodes[g->n - 1].out)), [MF_ntensors] = i32c(c, nt),
        [MF_params_size] = cg_i64(c, g->params_size), [MF_workspace_size] = cg_i64(c, plan->bytes),
        [MF_shape_hash] = LLVMConstInt(c->i64, emit_shape_hash(g), false),
        [MF_tensors] = tglob, [MF_baked] = baked ? baked : null, [MF_init_params] = init, [MF_infer] = infer[0],
        [MF_prepare] = infer[1], [MF_infer_prepared] = infer[2],
        [MF_train_step] = t->step_hp ? t->step_hp : null, [MF_grad] = t->grad ? t->grad : null,
        [MF_apply] = t->apply ? t->apply : null, [MF_syncs] = i32c(c, graph_syncs(g)),
        [MF_min_images] = i32c(c, g->min_images > 1 ? g->min_images : 1),
        [MF_opt_state_size] = cg_i64(c, t->step_hp ? train_opt_state_size(g) : 0),
        [MF_dparams_offset] = cg_i64(c, plan->dparams), [MF_hp] = train_hyper_const(c),
        [MF_epochs] = i32c(c, tc->epochs), [MF_loss] = i32c(c, tc->loss),
        [MF_seed] = LLVMConstInt(c->i64, tc->seed, false),
        [MF_nlayers] = i32c(c, g->n), [MF_nfixed] = i32c(c, nf), [MF_layers] = lglob, [MF_fixed] = fglob,
        [MF_activations] = acts ? acts : null,
        [MF_schedule] = i32c(c, tc->schedule), [MF_sched_every] = i32c(c, tc->every),
        [MF_warmup] = i32c(c, tc->warmup), [MF_nmilestones] = i32c(c, tc->nat), [MF_milestones] = milestones,
        [MF_gamma] = cg_f32(c, tc->gamma), [MF_min_lr] = cg_f32(c, tc->min_lr),
        [MF_augment_crop] = i32c(c, tc->crop), [MF_augment_flip] = i32c(c, tc->flip),
        [MF_validate] = cg_f32(c, tc->validate),
    };
    LLVMValueRef init_v = abi_const(abi_type(c, model_kinds, MF_COUNT), f, MF_COUNT);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init_v), "cnn_model");
    LLVMSetInitializer(gv, init_v);
    LLVMSetGlobalConstant(gv, true);
}

/* void NAME_activations(params, input, workspace): one image's forward pass,
 * every layer's output kept where the training plan puts it. */
static LLVMValueRef emit_activations(Cg *c, const char *lname, const Plan *plan, LLVMValueRef baked)
{
    const Graph *g = c->g;
    char fname[256];
    snprintf(fname, sizeof fname, "%s_activations", lname);
    LLVMValueRef fn = LLVMAddFunction(c->mod, fname,
                                      LLVMFunctionType(c->voidt, (LLVMTypeRef[]){c->ptr, c->ptr, c->ptr}, 3, false));
    name_params(fn, (const char *[]){"params", "input", "workspace"});
    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    c->params = baked ? baked : LLVMGetParam(fn, 0);
    c->batch = cg_i64(c, 1);
    c->ws = LLVMGetParam(fn, 2);
    LLVMValueRef *val = calloc((size_t)g->n, sizeof *val);
    emit_forward(c, plan, FWD_KEEP, LLVMGetParam(fn, 1), NULL, val);
    free(val);
    LLVMBuildRetVoid(c->b);
    return fn;
}

/* ---- the target ---- */

/* Floats per vector register and how many registers, for the kernels'
 * register blocks: from the features the code is built for. */
static void vector_shape(Cg *c, const char *triple, const char *cpu, const char *features)
{
    bool avx512 = strstr(features, "+avx512f") != NULL;
    bool avx2 = strstr(features, "+avx2") != NULL;
    if (!*features) {
        /* -mcpu without features: judge by the CPU's name */
        static const char *const wide[] = {"avx512", "icelake", "sapphirerapids", "cascadelake",
                                           "cooperlake", "tigerlake", "znver4", "znver5", "x86-64-v4"};
        static const char *const mid[] = {"haswell", "broadwell", "skylake", "alderlake", "znver",
                                          "x86-64-v3", "raptorlake"};
        for (size_t i = 0; i < sizeof wide / sizeof *wide; i++)
            avx512 = avx512 || strstr(cpu, wide[i]);
        for (size_t i = 0; i < sizeof mid / sizeof *mid; i++)
            avx2 = avx2 || strstr(cpu, mid[i]);
    }
    bool x86 = strncmp(triple, "x86_64", 6) == 0 || strncmp(triple, "i686", 4) == 0;
    if (x86 && avx512)
        c->vw = 16, c->nregs = 32;
    else if (x86 && avx2)
        c->vw = 8, c->nregs = 16;
    else if (x86)
        c->vw = 4, c->nregs = 16;
    else
        c->vw = 4, c->nregs = 32;       /* AArch64 NEON and the like */
}

static LLVMTargetMachineRef make_target(const Options *o, Diag *d, char **triple_out)
{
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
    char *triple = o->target ? LLVMNormalizeTargetTriple(o->target) : LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        diag_fatal(d, "unknown target '%s': %s", o->target ? o->target : triple, err);
        LLVMDisposeMessage(err);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    if (o->cpu && !target_check_cpu(d, triple, o->cpu)) {
        LLVMDisposeMessage(triple);
        return NULL;
    }
    char *cpu, *features;
    if (o->cpu) {
        cpu = LLVMCreateMessage(o->cpu);
        features = LLVMCreateMessage("");
    } else if (o->target) {
        cpu = LLVMCreateMessage("generic");
        features = LLVMCreateMessage("");
    } else {
        cpu = LLVMGetHostCPUName();
        features = LLVMGetHostCPUFeatures();
    }
    static const LLVMCodeGenOptLevel levels[] = {LLVMCodeGenLevelNone, LLVMCodeGenLevelLess,
                                                 LLVMCodeGenLevelDefault, LLVMCodeGenLevelAggressive};
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features,
                                                      levels[o->opt_level], LLVMRelocPIC,
                                                      LLVMCodeModelDefault);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    *triple_out = triple;
    return tm;
}

/* ---- output files: written to temporaries, committed when all are complete
 * (runtime/files.c: devices and FIFOs written in place, symlinks kept) ---- */

static char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    char *b = strdup(s);
    char *dot = strrchr(b, '.');
    if (dot && dot != b)
        *dot = '\0';
    return b;
}

/* The runtime library (name: libcnnrt.a, or its MPI part): beside a build
 * tree's cnnc, or installed. */
static bool find_runtime(const char *name, char *out, size_t size)
{
    char exe[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    static const char *const candidates[] = {"%s/../runtime/%s", "%s/../lib/cnnc/%s"};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        snprintf(out, size, candidates[i], exe, name);
        if (access(out, R_OK) == 0)
            return true;
    }
    return false;
}

/* --mpi: the runtime's MPI part (dist_mpi.c) first and whole, so that its
 * functions stand in for the one-process ones of libcnnrt.a, then Open MPI */
static bool mpi_part(Diag *d, const Options *opts, char *part, size_t size)
{
    part[0] = '\0';
    if (!opts->mpi)
        return true;
    char rt[PATH_MAX];
    if (!CNNC_MPI_LIBS[0] || !find_runtime("libcnnrt_mpi.a", rt, sizeof rt)) {
        diag_fatal(d, "--mpi: this cnnc was built without Open MPI (install libopenmpi-dev, then build "
                   "cnnc again)");
        return false;
    }
    snprintf(part, size, "-Wl,--whole-archive '%s' -Wl,--no-whole-archive %s", rt, CNNC_MPI_LIBS);
    return true;
}

/* objs: the objects' paths, each quoted, space-separated */
static bool link_exe(Diag *d, const Options *opts, const char *objs, const char *exe, const char *out)
{
    char rt[PATH_MAX], mpi[PATH_MAX + 512];
    if (!find_runtime("libcnnrt.a", rt, sizeof rt)) {
        diag_fatal(d, "cannot find the runtime library libcnnrt.a next to cnnc");
        return false;
    }
    if (!mpi_part(d, opts, mpi, sizeof mpi))
        return false;
    char cmd[(5 + SPLIT_MAX_PARTS) * PATH_MAX + 1024];
    snprintf(cmd, sizeof cmd, "cc %s -o '%s' %s %s '%s' -lpng -ljpeg -lz -lm -lpthread", CNNC_LINK_FLAGS, exe,
             objs, mpi, rt);
    int rc = system(cmd);
    if (rc != 0) {
        if (rc > 0 && WIFEXITED(rc))
            diag_fatal(d, "linking '%s' failed (cc exited with status %d)", out, WEXITSTATUS(rc));
        else
            diag_fatal(d, "linking '%s' failed (cc could not be run or was killed)", out);
        return false;
    }
    return true;
}

/* The output's path (the model's name, or the input's base name with the
 * mode's extension, unless -o) and, with -c, the header's beside it. */
static void output_paths(const Graph *g, const Options *opts, char *out, char *hdr, size_t size)
{
    char *base = base_name(opts->input);
    const char *ext = opts->mode == MODE_LLVM ? ".ll" : opts->mode == MODE_ASM ? ".s"
                    : opts->mode == MODE_OBJECT ? ".o" : "";
    if (opts->output)
        snprintf(out, size, "%s", opts->output);
    else
        snprintf(out, size, "%s%s", opts->mode == MODE_EXE ? g->name : base, ext);
    hdr[0] = '\0';
    if (opts->mode == MODE_OBJECT)
        header_path(out, hdr, size);
    free(base);
}

/* Refuses, before any work, outputs that would destroy an input or each other. */
static bool check_outputs(const Graph *g, const Options *opts, Diag *d)
{
    char out[PATH_MAX], hdr[PATH_MAX];
    output_paths(g, opts, out, hdr, sizeof out);
    const char *inputs[] = {opts->input, opts->weights};
    const char *outputs[] = {out, hdr};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (outputs[j][0] && (cnn_same_file(outputs[j], inputs[i]) ||
                                  (inputs[i] && !strcmp(outputs[j], inputs[i])))) {
                diag_fatal(d, "the output '%s' is also an input", outputs[j]);
                return false;
            }
    if (hdr[0] && (!strcmp(out, hdr) || cnn_same_file(out, hdr))) {
        diag_fatal(d, "the object '%s' and its header would be the same file; name the object "
                   "NAME.o (its header is NAME.h)", out);
        return false;
    }
    return true;
}

/* An executable links the runtime library, which is built for this host
 * only: for another architecture, say what does work. */
static bool check_link_target(const Options *opts, Diag *d)
{
    if (opts->mode != MODE_EXE || !opts->target)
        return true;
    char *want = LLVMNormalizeTargetTriple(opts->target), *host = LLVMGetDefaultTargetTriple();
    size_t wl = strcspn(want, "-"), hl = strcspn(host, "-");
    bool same = wl == hl && !strncmp(want, host, wl);
    if (!same) {
        diag_fatal(d, "cannot link an executable for %s: the runtime library (libcnnrt.a) is "
                   "built for this host (%s) only", want, host);
        diag_note_plain(d, "use -c for an object and its header, and link them into your program "
                        "with the target's C compiler (e.g. %.*s-linux-gnu-gcc)", (int)wl, want);
    }
    LLVMDisposeMessage(want);
    LLVMDisposeMessage(host);
    return same;
}

static char *lower(const char *s)
{
    char *r = strdup(s);
    for (char *p = r; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return r;
}

/* Only the API is visible outside the object: NAME_infer, NAME_init_params and
 * NAME_train_step with -c; in an executable nothing but the descriptor
 * cnn_model, which is how the runtime reaches the model. So no model name can
 * clash with the runtime's symbols (a model named `rt` links). */
static void hide_internals(Cg *c, const Options *opts, const char *lname)
{
    static const char *const api[] = {"infer", "prepare", "infer_prepared", "init_params", "train_step"};
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        size_t len;
        const char *name = LLVMGetValueName2(f, &len);
        size_t ll = strlen(lname);
        bool public = false;
        for (size_t i = 0; opts->mode != MODE_EXE && i < sizeof api / sizeof *api; i++)
            public = public || (len == ll + 1 + strlen(api[i]) && !strncmp(name, lname, ll) &&
                                name[ll] == '_' && !strcmp(name + ll + 1, api[i]));
        if (!public)
            LLVMSetLinkage(f, LLVMInternalLinkage);
    }
}

/* the plan at the batch of the options, with their --chunk */
static void plan_for(Plan *p, const Graph *g, const Options *opts, bool training)
{
    plan_build(p, g, opts->batch ? opts->batch : g->train.batch, opts->chunk, training);
}

void emit_ir(FILE *f, Graph *g, const Options *opts)
{
    bool training = !opts->inference_only && g->n >= 2;
    Plan plan;
    plan_for(&plan, g, opts, training);
    ir_print(f, g, training, &plan);
    plan_free(&plan, g);
}

/* ---- the back end's passes, which main.c calls in order ---- */

bool backend_check(Backend *be, Graph *g, const Options *opts, Diag *d)
{
    *be = (Backend){.g = g, .opts = opts, .d = d};
    return check_outputs(g, opts, d) && check_link_target(opts, d);
}

void backend_plan(Backend *be)
{
    const Graph *g = be->g;
    be->training = !be->opts->inference_only && g->n >= 2;
    plan_for(&be->plan, g, be->opts, be->training);
    be->planned = true;
}

bool backend_target(Backend *be)
{
    const Options *opts = be->opts;
    be->tm = make_target(opts, be->d, &be->triple);
    if (!be->tm)
        return false;
    /* an executable optimized in parts, on this machine's cores */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    be->parts = opts->mode == MODE_EXE && opts->opt_level >= 1 && cores > 1 ? 2 : 1;
    be->part_tm[0] = be->tm;
    for (int p = 1; p < be->parts; p++) {
        char *triple;
        be->part_tm[p] = make_target(opts, be->d, &triple);
        LLVMDisposeMessage(triple);
    }
    Cg *c = &be->c;
    *c = (Cg){.g = be->g, .plan = &be->plan, .winograd = !opts->no_winograd};
    c->ctx = LLVMContextCreate();
    c->mod = LLVMModuleCreateWithNameInContext(be->g->name, c->ctx);
    c->b = LLVMCreateBuilderInContext(c->ctx);
    c->f32 = LLVMFloatTypeInContext(c->ctx);
    c->i64 = LLVMInt64TypeInContext(c->ctx);
    c->i32 = LLVMInt32TypeInContext(c->ctx);
    c->ptr = LLVMPointerTypeInContext(c->ctx, 0);
    c->voidt = LLVMVoidTypeInContext(c->ctx);
    LLVMSetTarget(c->mod, be->triple);
    LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(be->tm);
    char *layout_str = LLVMCopyStringRepOfTargetData(layout);
    LLVMSetDataLayout(c->mod, layout_str);
    LLVMDisposeMessage(layout_str);
    LLVMDisposeTargetData(layout);
    be->lname = lower(opts->prefix ? opts->prefix : be->g->name);
    be->cpu = opts->cpu ? strdup(opts->cpu) : opts->target ? strdup("generic") : LLVMGetHostCPUName();
    be->features = opts->cpu || opts->target ? strdup("") : LLVMGetHostCPUFeatures();
    vector_shape(c, be->triple, be->cpu, be->features);
    c->cpu = be->cpu;
    c->features = be->features;
    return true;
}

/* The fixed tensors as constants (given, or by their init rule at compile
 * time from the train block's seed), and --weights read to be built in. */
bool backend_weights(Backend *be)
{
    const Graph *g = be->g;
    Cg *c = &be->c;
    c->fixed = calloc((size_t)g->nparams + 1, sizeof *c->fixed);
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = g->params[i];
        if (p->fixed && p->values) {
            c->fixed[i] = const_floats(c, p->name, p->values, NULL, p->size);
        } else if (p->fixed) {
            double *v = malloc((size_t)p->size * sizeof *v);
            for (int64_t k = 0; k < p->size; k++)
                v[k] = init_value(p, i, g->train.seed, k);
            c->fixed[i] = const_floats(c, p->name, v, NULL, p->size);
            free(v);
        }
    }
    if (!be->opts->weights)
        return true;
    int nt;
    CnnTensor *tensors = graph_tensors(g, &nt);
    /* outputs and opt_state_size bound what a checkpoint's sections may hold */
    CnnModel m = {.name = g->name, .params_size = g->params_size, .ntensors = nt,
                  .tensors = tensors, .shape_hash = emit_shape_hash(g),
                  .outputs = (int32_t)shape_elems(g->nodes[g->n - 1].out),
                  .opt_state_size = train_opt_state_size(g)};
    be->weights = malloc((size_t)(g->params_size ? g->params_size : 1) * sizeof *be->weights);
    char err[512];
    bool loaded = cnnw_load(be->opts->weights, &m, be->weights, err, sizeof err);
    free(tensors);
    if (!loaded) {
        diag_fatal(be->d, "%s", err);
        return false;
    }
    be->baked = const_floats(c, "weights", NULL, be->weights, g->params_size);
    return true;
}

/* The module's functions and the descriptor, verified. */
void backend_lower(Backend *be)
{
    Cg *c = &be->c;
    const Options *opts = be->opts;
    const char *lname = be->lname;
    LLVMValueRef prepare = emit_prepare(c, lname, &be->plan, be->baked);
    LLVMValueRef prepared = emit_infer_prepared(c, lname, &be->plan, be->baked);
    LLVMValueRef infer = emit_infer(c, lname, prepare, prepared);
    LLVMValueRef init = emit_init(c, lname);
    LLVMValueRef fns[] = {prepare, prepared, infer, init};
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        cg_target_attrs(c, fns[i]);
    TrainFns train = {0};
    if (be->training && !be->baked) {
        c->params = NULL;
        emit_train(c, lname, &be->plan, &train);
        LLVMValueRef fns[] = {train.grad, train.apply, train.step_hp, train.step};
        for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
            cg_target_attrs(c, fns[i]);
    }
    LLVMValueRef acts = NULL;
    if (opts->mode == MODE_EXE && be->training) {
        /* one image at a time for `show`: direct convs, compiled for size */
        c->small = true;
        c->winograd = false;
        acts = emit_activations(c, lname, &be->plan, be->baked);
        cg_target_attrs(c, acts);
        c->small = false;
        c->winograd = !opts->no_winograd;
    }
    if (opts->mode == MODE_EXE)
        emit_descriptor(c, &be->plan, (LLVMValueRef[]){infer, prepare, prepared}, init, &train, acts, be->baked);
    hide_internals(c, opts, lname);
    char *verr = NULL;
    if (LLVMVerifyModule(c->mod, LLVMReturnStatusAction, &verr)) {
        fprintf(stderr, "%s", verr);
        CNNC_ASSERT(!"the generated module is valid");
    }
    LLVMDisposeMessage(verr);
}

/* LLVM's default<O-level> pipeline, vectorizers on from -O2, after
 * mergefunc has kept one of each set of identical op functions (lower.c);
 * for an executable in parts, mergefunc alone (each part runs the rest) */
void backend_optimize(Backend *be)
{
    char passes[48];
    snprintf(passes, sizeof passes, be->parts > 1 ? "mergefunc" : "mergefunc,default<O%d>", be->opts->opt_level);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, be->opts->opt_level >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(po, be->opts->opt_level >= 2);
    LLVMErrorRef perr = LLVMRunPasses(be->c.mod, passes, be->tm, po);
    CNNC_ASSERT(!perr);
    LLVMDisposePassBuilderOptions(po);
}

bool backend_write(Backend *be)
{
    return emit_files(be, be->c.mod, be->lname, &be->plan);
}

void backend_free(Backend *be)
{
    if (be->planned)
        plan_free(&be->plan, be->g);
    free(be->cpu);
    free(be->features);
    free(be->lname);
    free(be->weights);
    free(be->c.fixed);
    if (be->c.ctx) {
        LLVMDisposeBuilder(be->c.b);
        LLVMDisposeModule(be->c.mod);
        LLVMContextDispose(be->c.ctx);
    }
    if (be->tm)
        LLVMDisposeTargetMachine(be->tm);
    for (int p = 1; p < be->parts; p++)
        if (be->part_tm[p])
            LLVMDisposeTargetMachine(be->part_tm[p]);
    LLVMDisposeMessage(be->triple);
}

/* Writes what the mode asks for, each file whole or not at all: every file
 * goes to its temporary, and all are committed once all are complete. */
/* The executable's objects, at tmp.0.o ...: the module in one, or in parts
 * on threads. */
static bool write_objects(Backend *be, LLVMModuleRef mod, const char *tmp, char *objs, size_t size,
                          char **err)
{
    char paths[SPLIT_MAX_PARTS][2 * PATH_MAX];
    const char *list[SPLIT_MAX_PARTS];
    size_t len = 0;
    objs[0] = '\0';
    for (int p = 0; p < be->parts; p++) {
        snprintf(paths[p], sizeof paths[p], "%s.%d.o", tmp, p);
        list[p] = paths[p];
        len += (size_t)snprintf(objs + len, size - len, "%s'%s'", p ? " " : "", paths[p]);
    }
    if (be->parts == 1)
        return !LLVMTargetMachineEmitToFile(be->tm, mod, paths[0], LLVMObjectFile, err);
    char e[1024];
    if (split_compile(mod, be->part_tm, be->parts, be->opts->opt_level, list, e, sizeof e))
        return true;
    *err = LLVMCreateMessage(e);
    return false;
}

static void remove_objects(const Backend *be, const char *tmp)
{
    for (int p = 0; p < be->parts; p++) {
        char path[2 * PATH_MAX];
        snprintf(path, sizeof path, "%s.%d.o", tmp, p);
        unlink(path);
    }
}

static bool emit_files(Backend *be, LLVMModuleRef mod, const char *lname, const Plan *plan)
{
    Graph *g = be->g;
    const Options *opts = be->opts;
    Diag *d = be->d;
    LLVMTargetMachineRef tm = be->tm;
    char out[PATH_MAX], hdr[PATH_MAX];
    output_paths(g, opts, out, hdr, sizeof out);
    if (opts->mode == MODE_LLVM && !strcmp(out, "-")) {
        char *s = LLVMPrintModuleToString(mod);
        fputs(s, stdout);
        LLVMDisposeMessage(s);
        return true;
    }
    char e[2 * PATH_MAX];
    CnnOut o, h = {0};
    if (!cnn_out_begin(&o, out, e, sizeof e) || (hdr[0] && !cnn_out_begin(&h, hdr, e, sizeof e))) {
        diag_fatal(d, "%s", e);
        cnn_out_abort(&o);
        return false;
    }
    char *err = NULL;
    bool ok = true;
    if (opts->mode == MODE_LLVM) {
        ok = !LLVMPrintModuleToFile(mod, o.tmp, &err);
    } else if (opts->mode == MODE_EXE) {
        char objs[SPLIT_MAX_PARTS * (2 * PATH_MAX + 4)];
        ok = write_objects(be, mod, o.tmp, objs, sizeof objs, &err) && link_exe(d, opts, objs, o.tmp, out);
        remove_objects(be, o.tmp);
    } else {
        LLVMCodeGenFileType ft = opts->mode == MODE_ASM ? LLVMAssemblyFile : LLVMObjectFile;
        ok = !LLVMTargetMachineEmitToFile(tm, mod, o.tmp, ft, &err);
    }
    if (err) {
        diag_fatal(d, "cannot write '%s': %s", out, err);
        LLVMDisposeMessage(err);
    }
    if (ok && hdr[0]) {
        FILE *f = cnn_out_fopen(&h, "w", e, sizeof e);
        if (f)
            header_write(f, g, opts, lname, plan);
        ok = f && cnn_out_close(&h, f, e, sizeof e);
        if (!ok)
            diag_fatal(d, "%s", e);
    }
    if (ok && hdr[0] && !cnn_out_commit(&h, e, sizeof e)) {
        diag_fatal(d, "%s", e);
        ok = false;
    }
    if (ok && !cnn_out_commit(&o, e, sizeof e)) {
        diag_fatal(d, "%s", e);
        ok = false;
    }
    cnn_out_abort(&o);
    cnn_out_abort(&h);
    return ok;
}

/*
 * cnnc.h: the compiler's one internal header.
 *
 * Structs are grouped under the file that owns them. The passes run in the
 * order of main.c: parse (grammar/), ir_build, shape_check, then the back end.
 */
#ifndef CNNC_H
#define CNNC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include "../grammar/ast.h"

#define CNNC_VERSION "0.1.0"

/* Internal bugs, not user errors: print where and abort. */
#define CNNC_ASSERT(x) \
    do { if (!(x)) cnnc_fatal(__FILE__, __LINE__, #x); } while (0)
#define unreachable() cnnc_fatal(__FILE__, __LINE__, "unreachable")
_Noreturn void cnnc_fatal(const char *file, int line, const char *what);

/* Limits, documented in docs/language.md. */
enum {
    MAX_STMTS = 65536,              /* statements in one block */
    MAX_FILE_BYTES = 64 << 20,      /* of a .cnn file */
    MAX_PARAMS_PER_OP = 12,
};
#define MAX_TENSOR_ELEMS ((int64_t)1 << 31)    /* floats in one tensor of one image */

/* ---- diag.c: clang-style diagnostics ---- */

typedef struct DiagGroup {
    int32_t line, col, seq;         /* where it points (INT32_MAX: nowhere), the order reported */
    size_t start, end;              /* its bytes in the buffer */
} DiagGroup;

typedef struct Diag {
    FILE *sink;                     /* where diag_finish prints, in source order */
    FILE *out;                      /* the buffer the reports go to until then */
    char *buf;
    size_t buflen;
    DiagGroup *groups;
    int ngroups, cap;
    const char *file, *text;        /* the source, for quoting lines */
    size_t len;
    int errors, warnings;
    int error_limit;                /* stop reporting past this many errors */
    bool color;
    bool suppress_notes;            /* the error the notes belong to was not shown */
    Loc last;                       /* of the last error or warning, for its notes */
} Diag;

void diag_init(Diag *d, FILE *sink, const char *file, const char *text, size_t len);
/* Prints what was reported so far, sorted by place in the source; diag_finish
 * does that for the last time and frees the buffer. */
void diag_flush(Diag *d);
void diag_finish(Diag *d);
void diag_error(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_warning(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_note(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_note_plain(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_fatal(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool diag_too_many(const Diag *d);
const char *diag_suggest(const char *word, const char *const *cands, int n);

/* ---- optable.c: the op and settings tables, as data ---- */

typedef enum {
#define OP(id, word, family, in, flags, spec, summary) OP_##id,
#include "ops.def"
#undef OP
    OP_COUNT
} OpKind;

typedef enum {
#define SETTING(id, word, spec, summary) SET_##id,
#include "settings.def"
#undef SETTING
    SET_COUNT
} SettingKind;

typedef enum {
#define OPTIM(id, word, spec) OPT_##id,
#include "settings.def"
#undef OPTIM
    OPT_COUNT
} OptimKind;

/* ops.def's flags column: what the passes ask of an op, instead of its identity */
enum {
    OPF_SOURCE = 1 << 0,            /* reads no tensor: the model's image */
    OPF_JOIN = 1 << 1,              /* takes further inputs: its positional labels */
    OPF_LAST = 1 << 2,              /* only as the model's last op */
    OPF_PROBS = 1 << 3,             /* its output is probabilities */
    OPF_TAKES_ACT = 1 << 4,         /* applies an activation in its own kernel */
    OPF_TAKES_POOL = 1 << 5,        /* its kernel may apply the max pool after it */
    OPF_SCRATCH = 1 << 6,           /* workspace of its own (scratch.def's hooks) */
    OPF_STOCHASTIC = 1 << 7,        /* random in training: needs the step counter */
    OPF_WHOLE_BATCH = 1 << 8,       /* training reads the whole batch's statistics (a CnnSync) */
    OPF_AFFINE = 1 << 9,            /* inference: a scale and shift per channel */
    OPF_TAKES_AFFINE = 1 << 10,     /* its inference kernel folds an AFFINE op after it */
    OPF_SUM = 1 << 11,              /* its output is the sum of its inputs */
    OPF_TAKES_SUM = 1 << 12,        /* its inference kernel adds in a SUM's other input */
    OPF_PACKS = 1 << 13,            /* its inference pass packs its weights first (`prepare`) */
    /* what its backward reads of the forward pass's tensors (the training
     * plan frees the others after their last forward reader) */
    OPF_GRAD_IN = 1 << 14,          /* its inputs */
    OPF_GRAD_OUT = 1 << 15,         /* its output */
    OPF_GRAD_ACT_OUT = 1 << 16,     /* its output, when it applies an activation */
};

typedef enum { PT_INT, PT_UINT, PT_REAL, PT_RATE, PT_DIMS, PT_SHAPE, PT_PAD, PT_BOOL,
               PT_FLAG, PT_LIST, PT_LABELS, PT_CHOICE } ParamType;

typedef struct ParamSpec {
    const char *key;
    ParamType type;
    bool positional, required, has_default;
    const char *choices[16];
    int nchoices;
    Value def;                      /* normalized like a checked argument */
} ParamSpec;

typedef struct OpSpec {
    const char *what;               /* "op", "setting" or "optimizer", for messages */
    const char *word, *family, *summary;
    int in_rank;
    unsigned flags;                 /* OPF_* */
    ParamSpec params[MAX_PARAMS_PER_OP];
    int nparams;
} OpSpec;

/* A parameter after checking: given or defaulted, normalized. dims and pad have
 * two dims (h, w); a choice or bool has its index in i; pad=same sets `same`. */
typedef struct Arg {
    bool present, given, same;
    Value v;
    Loc loc;                        /* of the value, or of the statement's word */
} Arg;

const OpSpec *op_spec(OpKind op);
bool op_has(OpKind op, unsigned flag);
const OpSpec *setting_spec(SettingKind s);
const OpSpec *optim_spec(OptimKind o);
int spec_param(const OpSpec *spec, const char *key);      /* index or -1 */
int spec_lookup(const char *const *words, int n, const char *word);
extern const char *const op_words[OP_COUNT];
extern const char *const setting_words[SET_COUNT];
extern const char *const optim_words[OPT_COUNT];

/* Binds a statement's items to spec's parameters (args has spec->nparams
 * entries), reporting unknown, duplicate, missing and ill-typed ones. A flag
 * may stand first only if it is no positional value: see ir.c. */
bool bind_args(Diag *d, const OpSpec *spec, const Stmt *s, const Item *skip, Arg *args);
void optable_list_ops(FILE *out);          /* --list-ops */

/* ---- ir.c: the graph ---- */

/* A tensor's shape for one image: rank 3 is H x W x C, rank 1 a vector; rank 0
 * is unknown (an error upstream), and checks on it stay quiet. */
typedef struct Shape {
    int rank;
    int64_t d[3];
} Shape;

/* A trainable (or fixed) tensor: PyTorch's layout, .cnnw's name. */
typedef struct Param {
    const char *name;               /* conv1.weight */
    int rank;
    int64_t dims[4];
    int64_t size;                   /* elements */
    int64_t offset;                 /* in floats, into params (trainable ones) */
    bool fixed;                     /* part of the model, not of params */
    bool state;                     /* in params, but not trained: a running statistic */
    const double *values;           /* given in the file (weights=[...]), or NULL */
    int init;                       /* INIT_* */
    int64_t fan_in, fan_out;
} Param;

/* choices.def's lists: PAD_*, INIT_*, LOSS_*, SCHED_* */
enum {
#define PADMODE(id, word) PAD_##id,
#include "choices.def"
#undef PADMODE
    PAD_COUNT
};
enum {
#define INIT(id, word) INIT_##id,
#include "choices.def"
#undef INIT
    INIT_COUNT
};
enum {
#define LOSS(id, word) LOSS_##id,
#include "choices.def"
#undef LOSS
    LOSS_COUNT
};
enum {
#define SCHEDULE(id, word) SCHED_##id,
#include "choices.def"
#undef SCHEDULE
    SCHED_COUNT
};
/* ACT_NONE, then acts.def's activations in its order (act= choices' indices) */
enum {
    ACT_NONE,
#define ACT(id, word, from_y, spec, param, summary) ACT_##id,
#include "acts.def"
#undef ACT
    ACT_COUNT
};

/* What the passes ask of an activation (acts.def's columns). */
typedef struct ActInfo {
    const char *word;
    bool from_y;                    /* its derivative through y: a conv or fc may apply it */
    double param;                   /* its parameter's default */
} ActInfo;
extern const ActInfo act_info[ACT_COUNT];
/* The activation an op computes, or ACT_NONE for an op that is none. */
int op_act(OpKind op);
OpKind act_op(int act);                 /* the op of an activation */

typedef struct Node {
    OpKind op;
    const char *name;               /* label, or <op><n> */
    Loc loc;                        /* of the op word */
    const Stmt *stmt;
    int index;                      /* in statement order, which is a topological order */
    /* the edges: the nodes it reads (the previous statement, or from=, then a
     * join's labels), each with where it was named; and how many read it */
    int *inputs;
    Loc *input_locs;
    int ninputs, nreaders;
    bool bad;                       /* unknown op or bad attributes: reported */
    Arg args[MAX_PARAMS_PER_OP];
    Shape in, out;
    /* Filled by the op family's shape rule: */
    int kh, kw, sh, sw, ph, pw;     /* window, stride, padding */
    int dh, dw;                     /* a conv's dilation (0 or 1: none) */
    int64_t groups;                 /* a conv's groups (0 or 1: none) */
    bool ceil_mode;                 /* the shape rule rounds up (a pool's ceil) */
    bool count_pad;                 /* avgpool: padded cells count in the divisor */
    bool normalizes;                /* input: mean= std= given, so it writes its output */
    int padmode, act;
    double act_param;               /* the activation's parameter (leaky_relu's, elu's alpha) */
    double rate;                    /* dropout */
    Param *weight, *bias;           /* NULL when the op has none (batchnorm: gamma, beta) */
    Param *stat[2];                 /* batchnorm's running mean and variance */
    double eps, momentum;           /* batchnorm */
    bool folded;                    /* inference: a batch norm its producer's kernel applies */
    int64_t nparams, flops;
    int64_t macs;                   /* multiply-adds per image (conv, fc) */
    int64_t rf[2], jump[2];         /* receptive field on the image, and its step */
    bool rf_global;                 /* every output sees the whole image */
    bool fused;                     /* an activation the conv or fc before it applies */
    bool act_split;                 /* its act= runs as the node after it (see ir.c) */
    int output;                     /* the node a label of it names: itself, or that one */
    bool pool_fused;                /* (in emit.c's copy) the 2x2 max pool after it, in its kernel */
    const struct Node *fold;        /* (in a copy, inference) the batch norm its kernel folds in */
    const struct Node *residual;    /* (in a copy, inference) the add's other input its kernel adds in */
} Node;

typedef struct TrainCfg {
    int loss;                       /* LOSS_* */
    int optim;                      /* OPT_* */
    double lr, momentum, weight_decay, eps, beta1, beta2;
    bool nesterov;                  /* sgd */
    int64_t batch, epochs;
    uint64_t seed;
    bool loss_given;
    Loc loss_loc;
    /* the learning-rate schedule (SCHED_*), PyTorch's StepLR, MultiStepLR and
     * CosineAnnealingLR after `warmup` epochs of linear warmup */
    int schedule;
    int64_t every, warmup;
    double gamma, min_lr;
    const double *at;               /* multistep's epochs, ascending */
    int64_t nat;
    double validate;                /* images held out: N, or a fraction below 1 */
    int64_t crop;                   /* augment: random crops after zero padding of crop */
    bool flip;                      /* augment: random horizontal flips */
} TrainCfg;



/* One step of the backward graph (autodiff.c): what it computes. Per input
 * edge k: whether it computes d input k, and whether it adds it to what
 * another reader of that input stored first (through a scratch tensor). */
typedef struct BwdStep {
    const struct Node *node;
    bool dweight, dbias;
    bool *dinput, *accumulate;
} BwdStep;

typedef struct Graph {
    const char *name;               /* the model's */
    Node *nodes;
    int n;
    Param **params;                 /* every Param, in statement order, weight before bias */
    int nparams;
    int64_t params_size;            /* floats of the trainable ones */
    TrainCfg train;
    BwdStep *bwd;                   /* the backward graph, in execution order */
    int nbwd;
    bool ce_fused;                  /* cross_entropy fused with the final softmax */
    int min_images;                 /* a train step's fewest images (2 with a batch norm over a vector) */
    int loss_grad_node;             /* whose output's gradient the loss writes */
    Arena *arena;
    Diag *diag;
} Graph;

/* Builds the graph of the one model block and reads the train block. */
bool ir_build(Graph *g, Block *blocks, Arena *arena, Diag *d);
struct Plan;
void ir_print(FILE *out, const Graph *g, bool backward, const struct Plan *plan);
const Arg *node_arg(const Node *n, const char *key);
const char *shape_str(Shape s, char *buf, size_t size);

/* ---- autodiff.c: the backward graph ---- */

void autodiff_build(Graph *g);
/* Marks each from_y activation that reads a conv or fc (OPF_TAKES_ACT) with
 * no act of its own, the statement right before it, whose only reader it is,
 * as fused: that node applies it in the same pass. */
void fuse_activations(Graph *g);
/* Node i as the fast paths emit it: with the activation of a fused node
 * after it (in *tmp), or itself. */
const struct Node *node_with_fused(const Graph *g, int i, struct Node *tmp);
/* Marks each OPF_AFFINE node right after its OPF_TAKES_AFFINE producer (no
 * act, one reader) as folded: in inference that kernel applies it. */
void fold_affines(Graph *g);
/* Inference: node i as its kernel runs it (*run, possibly tmp): with a fused
 * activation after it, or a folded batch norm, an add it is the only input
 * of (OPF_SUM after OPF_TAKES_SUM: *run's residual is the other input) and
 * the from_y activation that reads them. Returns the last node the pass stands for (a fused or folded node
 * returns -1); the next pass starts after it. */
int infer_pass(const Graph *g, int i, struct Node *tmp, const struct Node **run);
void autodiff_print(FILE *out, const Graph *g);

/* ---- plan.c: the workspace, planned at compile time ---- */

/* What the plan's tensors are: in the workspace, activations, gradients and
 * scratch; in params, the parameters (trainable), fixed ones (constants of
 * the model) and non-trainable state. Each has a dtype: float32 today. */
typedef enum { TK_ACTIVATION, TK_GRADIENT, TK_PARAMETER, TK_FIXED, TK_STATE, TK_SCRATCH } TensorKind;
typedef enum { DT_F32 } DType;

/* Scratch of one node whose op has the SCRATCH flag (byte offsets into the
 * workspace, -1 when unused): a conv's, then a batch norm's. */
typedef struct Scratch {
    int64_t pad;                    /* the input, padded: (N, H+2P, W+2P, C) */
    int64_t wpack;                  /* weights as (Kh, Kw, C, M) */
    int64_t tpack;                  /* weights as (Kh, Kw, M, C), for d inp */
    int64_t dpre;                   /* d loss / d pre-activation, (N, OH, OW, M) */
    int64_t dpad;                   /* d loss / d padded input */
    int64_t gpad;                   /* d pre-activation, padded for the transposed conv */
    int64_t wino;                   /* Winograd's transformed tiles */
    int64_t stats;                  /* batchnorm: per channel, the batch's mean and 1/std
                                     * (kept for backward), or in inference scale and shift */
    int64_t sums;                   /* batchnorm: per channel sums, exchanged across shares */
    int64_t fold;                   /* a conv or fc: the batch norm after it, folded (inference) */
    int64_t wino_u;                 /* inference: Winograd's transformed weights, apart from its tiles */
} Scratch;
#define SCRATCH_NONE ((Scratch){-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1})

/* The workspace of every call: byte offsets, 64-byte aligned, -1 when unused.
 * Inference: each node's output where a liveness allocator put it (the
 * image and the model's output are the caller's). Training: every
 * activation kept for backward, the gradients where the allocator put them
 * (live from their first writer to their node's backward step), a scratch
 * tensor per accumulated edge, the parameters' gradients, then the convs'
 * shared scratch. */
typedef struct Plan {
    int64_t batch;
    Scratch *conv_infer;        /* per node, inference */
    Scratch *conv;              /* per node, a train step (and `show`'s activations) */
    int64_t *out;                   /* inference: per node */
    int64_t infer_bytes;
    int64_t packed_bytes;       /* inference: [0, packed_bytes) holds what `prepare` packs */
    int64_t chunk;              /* inference: images a call takes through every pass at a time (plan_chunk) */
    int64_t *act;                   /* per node, every one kept: `show`'s activations, the layer table */
    int64_t *step_act;              /* training: per node, for its life in the step */
    int64_t *grad;                  /* training: per node */
    int64_t **edge;                 /* training: per node and input edge, an accumulated gradient */
    int64_t dparams, grad_end;      /* the parameters' gradients: [dparams, grad_end) */
    int64_t train_bytes;
    int64_t bytes;                  /* the workspace for any call */
} Plan;

/* chunk: inference's images at a time, or 0 for plan_chunk's choice */
void plan_build(Plan *p, const Graph *g, int64_t batch, int64_t chunk, bool training);
int64_t plan_floats(int64_t floats);        /* bytes of that many floats, 64-byte aligned */
/* The hooks of ops.def's SCRATCH flag, per family (scratch.def): n's scratch
 * laid out from `at` (at *keep, which moves on: what training keeps for
 * backward, what inference packs from the weights alone, which `prepare`
 * fills once for many calls), its end returned; and the bytes training keeps. */
#define SCRATCH(id, family) \
    int64_t scratch_##family(Scratch *s, const Node *n, int64_t batch, bool training, int64_t at, int64_t *keep); \
    int64_t kept_##family(const Node *n, int64_t batch);
#include "scratch.def"
#undef SCRATCH
void plan_free(Plan *p, const Graph *g);
void plan_print(FILE *out, const Graph *g, const Plan *p, bool training);

/* ---- shapes.c: shape rules, sizes and the --shapes table ---- */

bool shape_check(Graph *g);
void shape_print_table(FILE *out, const Graph *g);
/* Helpers for the op families: */
bool shape_window(Graph *g, Node *n, int kh, int kw, int sh, int sw, int ph, int pw);
Param *shape_param(Graph *g, Node *n, const char *suffix, int rank, const int64_t *dims);
bool shape_mul(Graph *g, Node *n, int64_t *acc, int64_t by);
void shape_count(Graph *g, Node *n, int64_t per_output);
/* conv and fc: per_output multiply-adds, 2 FLOPs each, plus `extra` FLOPs */
void shape_count_macs(Graph *g, Node *n, int64_t per_output, int64_t extra);
int64_t shape_elems(Shape s);

typedef struct Cg Cg;
typedef struct Bwd Bwd;

/* ---- main.c: what the user asked for ---- */

typedef enum { MODE_EXE, MODE_OBJECT, MODE_ASM, MODE_LLVM, MODE_IR, MODE_SHAPES, MODE_TENSORS } Mode;

typedef struct Options {
    const char *input, *output, *weights, *target, *cpu;
    const char *prefix;             /* -c: the functions' and constants' prefix, or NULL */
    Mode mode;
    int opt_level;
    long batch;                     /* 0: the train block's */
    long chunk;                     /* inference's images at a time; 0: the plan's choice (plan_chunk) */
    bool inference_only;
    bool no_winograd;               /* direct convs only */
    bool mpi;                       /* link the MPI flavour of the runtime (mpirun -np N) */
} Options;

/* ---- target.c: -mcpu checked against LLVM ---- */

/* Whether LLVM can build code for cpu on triple; false after an error (with
 * the valid CPUs in a note, for an unknown one). */
bool target_check_cpu(Diag *d, const char *triple, const char *cpu);
/* -mcpu=help: the target's CPUs, a line on out; false when LLVM gave none. */
bool target_list_cpus(FILE *out, const char *triple);

/* ---- emit.c: the back end ---- */

const char *emit_llvm_version(void);
/* The back end's state between its passes, which main.c runs in order:
 * check (the outputs, before any work), plan, target (the machine and an
 * empty module), weights (the fixed and built-in tensors), lower (every
 * function and the descriptor), optimize, write (every output file whole or
 * none). A pass that returns false has reported why. */
typedef struct Backend Backend;
bool backend_check(Backend *be, Graph *g, const Options *opts, Diag *d);
void backend_plan(Backend *be);
bool backend_target(Backend *be);
bool backend_weights(Backend *be);
void backend_lower(Backend *be);
void backend_optimize(Backend *be);
bool backend_write(Backend *be);
void backend_free(Backend *be);
/* --emit-tensors: each trainable tensor's name and PyTorch shape, a line
 * each, in .cnnw order (what tools/cnnw.py checks arrays against) */
void emit_tensors(FILE *f, const Graph *g);
/* --emit-ir: the checked graph, forward and backward, and its memory plan */
void emit_ir(FILE *f, Graph *g, const Options *opts);

uint64_t emit_shape_hash(const Graph *g);

/* ---- lower.c: nodes to code ---- */

void cg_target_attrs(Cg *c, LLVMValueRef fn);     /* the target's CPU and features, nounwind */
void emit_node_fwd(Cg *c, const Node *n, const LLVMValueRef *ins, LLVMValueRef out);
void emit_node_bwd(Cg *c, const Node *n, const Bwd *a);
/* The values of n's inputs, one per edge, from every node's value (malloc'd) */
LLVMValueRef *node_input_values(const Node *n, const LLVMValueRef *val);
typedef enum { FWD_INFER, FWD_TRAIN, FWD_KEEP } FwdPolicy;
/* the packs of the inference passes (NAME_prepare) */
void emit_packs(Cg *c, const struct Plan *plan);
void emit_forward(Cg *c, const struct Plan *plan, FwdPolicy policy, LLVMValueRef input, LLVMValueRef output,
                  LLVMValueRef *val);

/* ---- header.c: NAME.h beside NAME.o ---- */

void header_path(const char *obj_path, char *path, size_t size);
/* Writes the header to f; false on a write error. */
bool header_write(FILE *f, const Graph *g, const Options *o, const char *lname, const Plan *plan);

/* ---- train.c: train_step and the optimizers ---- */

/* The hyperparameters a train step reads (runtime/cnnrt.h's CnnHyper): the
 * floats below, then the seed, a uint64 at byte HP_SEED_BYTE, then a uint32
 * at HP_TARGETS_BYTE: nonzero when `labels` points at float targets. */
enum { HP_LR, HP_MOMENTUM, HP_WEIGHT_DECAY, HP_EPS, HP_BETA1, HP_BETA2, HP_COUNT };
enum { HP_SEED_BYTE = 4 * HP_COUNT, HP_TARGETS_BYTE = HP_SEED_BYTE + 8 };
/* A step's CnnSync (cnnrt.h): the function that sums floats over the step's
 * shares at byte 0, the batch's images (int64) at SYNC_IMAGES_BYTE, the
 * function told of the gradients finished so far (or null) at SYNC_READY_BYTE. */
enum { SYNC_IMAGES_BYTE = 8, SYNC_READY_BYTE = 16 };
int64_t train_opt_state_size(const Graph *g);
void train_hyper(const Graph *g, float hp[HP_COUNT]);
/* The train block's hyperparameters as a constant of CnnHyper's type. */
LLVMValueRef train_hyper_const(Cg *c);
typedef struct TrainFns {
    LLVMValueRef grad, apply, step_hp, step;
} TrainFns;
void emit_train(Cg *c, const char *lname, const Plan *plan, TrainFns *out);

/* ---- codegen.c: the helpers every emitter shares ---- */

/* One function being generated. Tensors are float pointers; indices are i64. */
/* What an inference pass of an OPF_PACKS op emits (Cg.prep): its weights'
 * pack and then its kernel (NAME_infer's passes, training's), only the pack
 * (NAME_prepare), or only the kernel, on the pack `prepare` left
 * (NAME_infer_prepared). */
enum { PREP_BOTH, PREP_PACK, PREP_RUN };

struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef f32, i64, i32, ptr, voidt;
    LLVMValueRef fn;
    LLVMValueRef params;            /* float *: the trainable tensors */
    LLVMValueRef batch;             /* i64: images in this call */
    LLVMValueRef *fixed;            /* per Param index: its constant global, or NULL */
    const Graph *g;
    bool training;                  /* dropout drops; activations stay for backward */
    int vw, nregs;                  /* the target's floats per vector, vector registers */
    LLVMValueRef ws;                /* i8 *: the workspace */
    const struct Plan *plan;
    const Scratch *scratch;     /* the plan's conv scratch for this function */
    int prep;                       /* PREP_*: an inference pass's packs, its kernel, or both */
    LLVMValueRef drop_key;          /* i64: varies per step, for dropout's masks */
    LLVMValueRef drop_first;        /* i64: the first image's place in the whole batch */
    LLVMValueRef sync;              /* training: the CnnSync * that sums across shares, or null */
    const char *cpu, *features;     /* the target's, for every function's attributes */
    bool winograd;                  /* Winograd kernels where they fit */
    bool small;                     /* functions compiled for size (optsize, minsize) */
    const LLVMValueRef *ins;        /* a forward emitter's inputs, one per edge (ins[0] is inp) */
    /* In an outlined op function (lower.c): the offsets into params and the
     * workspace it uses come from the caller's table of them, so that the
     * functions of layers alike are the same function (cg_offset). */
    LLVMValueRef offsets;           /* the function's i64 * to that table, or NULL */
    LLVMBuilderRef offsets_b;       /* at the end of its entry block, where they are loaded */
    int64_t *offset_vals;           /* the table */
    int noffsets, offsets_cap;
};

/* What a backward emitter reads and writes; all (N, ...) like their tensors. */
struct Bwd {
    LLVMValueRef inp, out;          /* the forward pass's input and output */
    LLVMValueRef dout;              /* d loss / d out */
    LLVMValueRef dinp;              /* d loss / d inp, to write whole (it arrives holding
                                     * anything); NULL if not needed */
    LLVMValueRef dparams;           /* float *: d loss / d params, the layout of params */
    const LLVMValueRef *ins, *dins; /* every input and its gradient (NULL: not needed), one
                                     * per edge: inp and dinp are the first */
};

/* A counted loop `for (iv = 0; iv < count; iv++)`, count >= 1, opened by
 * cg_loop and closed by cg_loop_end; the body may open loops and ifs of its own. */
typedef struct Loop {
    LLVMBasicBlockRef body, exit;
    LLVMValueRef iv, count;
} Loop;

LLVMValueRef cg_i64(Cg *c, int64_t v);
LLVMValueRef cg_f32(Cg *c, double v);
LLVMValueRef cg_loop(Cg *c, Loop *l, LLVMValueRef count, const char *name);
LLVMValueRef cg_loopn(Cg *c, Loop *l, int64_t count, const char *name);
void cg_loop_end(Cg *c, Loop *l);
LLVMBasicBlockRef cg_if(Cg *c, LLVMValueRef cond, const char *name);   /* returns the join */
/* if (c->sync != NULL) { ..., cg_if_end; and within it, the CnnSync's field
 * at byte (SYNC_*) as a value of type t */
LLVMBasicBlockRef cg_if_sync(Cg *c, const char *name);
LLVMValueRef cg_sync_field(Cg *c, int64_t byte, LLVMTypeRef t, const char *name);
void cg_if_end(Cg *c, LLVMBasicBlockRef join);
LLVMValueRef cg_add(Cg *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_mul(Cg *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_muladd(Cg *c, LLVMValueRef a, int64_t k, LLVMValueRef b);   /* a*k + b */
LLVMValueRef cg_at(Cg *c, LLVMValueRef base, LLVMValueRef idx);             /* &base[idx] */
LLVMValueRef cg_load(Cg *c, LLVMValueRef base, LLVMValueRef idx, const char *name);
void cg_store(Cg *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx);
LLVMValueRef cg_fadd(Cg *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmul(Cg *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_var(Cg *c, const char *name);          /* a float slot, promoted by mem2reg */
LLVMValueRef cg_entry_alloca(Cg *c, LLVMTypeRef t, const char *name);   /* a slot of any type */
LLVMValueRef cg_var_i64(Cg *c, const char *name);
LLVMValueRef cg_get(Cg *c, LLVMValueRef var);          /* load a float slot */
void cg_accum(Cg *c, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef v);   /* base[idx] += v */
void cg_zero(Cg *c, LLVMValueRef base, LLVMValueRef count);    /* count floats */
void cg_for_size(Cg *c, LLVMValueRef fn);      /* optsize, minsize */
LLVMValueRef cg_vrelu(Cg *c, LLVMValueRef v);
LLVMValueRef cg_vmax(Cg *c, LLVMValueRef a, LLVMValueRef b);
/* dy f'(x), x NULL (through y alone) for a from_y activation; ops/act.c */
LLVMValueRef cg_act_grad(Cg *c, int act, double param, LLVMValueRef x, LLVMValueRef y, LLVMValueRef dy);
LLVMValueRef cg_const_like(Cg *c, LLVMValueRef like, double v);   /* a float or vector constant */
LLVMValueRef cg_dparam(Cg *c, LLVMValueRef dparams, const Param *p);   /* NULL when p is fixed */
LLVMValueRef cg_hash_uniform(Cg *c, LLVMValueRef key);  /* i64 key -> float in [0, 1) */
LLVMValueRef cg_ws(Cg *c, int64_t offset);              /* float * into the workspace */
/* an offset into params or the workspace: a constant, or in an outlined
 * function the caller's (Cg.offsets) */
LLVMValueRef cg_offset(Cg *c, int64_t v);
/* vectors of n floats, in cg_lanes(n) lanes (the extra ones zero) */
int cg_lanes(Cg *c, int n);
LLVMValueRef cg_vload(Cg *c, LLVMValueRef base, LLVMValueRef idx, int n);
/* n floats into a vector of `lanes` >= n, the rest zero */
LLVMValueRef cg_vload_lanes(Cg *c, LLVMValueRef base, LLVMValueRef idx, int n, int lanes);
void cg_vstore(Cg *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx, int n);
void cg_vstore_lanes(Cg *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx, int n);  /* first n */
LLVMValueRef cg_splat(Cg *c, LLVMValueRef x, int n);
LLVMValueRef cg_vzero(Cg *c, int n);
LLVMValueRef cg_vvar(Cg *c, int n, const char *name);
LLVMValueRef cg_vget(Cg *c, LLVMValueRef var, int n);
typedef void VectorFn(Cg *c, void *ctx, LLVMValueRef at, int width);
void cg_for_blocks(Cg *c, int64_t n, int size, VectorFn *fn, void *ctx);   /* [0, n) by size */
void cg_for_vectors(Cg *c, int64_t n, VectorFn *fn, void *ctx);   /* [0, n) by vectors */
LLVMValueRef cg_call(Cg *c, const char *fn, LLVMValueRef x);  /* float fn(float) */
LLVMValueRef cg_act(Cg *c, int act, double param, LLVMValueRef x);   /* f(x); ops/act.c */
/* a conv's or fc's act=: checked, with its parameter's default */
void shape_layer_act(Graph *g, Node *n);
LLVMValueRef cg_param(Cg *c, const Param *p);          /* float * to the tensor's data */
/* i in [0, n) as an i1, for padding checks */
LLVMValueRef cg_inside(Cg *c, LLVMValueRef i, int64_t n);
LLVMValueRef cg_clamp(Cg *c, LLVMValueRef i, int64_t n);

typedef void WindowBody(Cg *c, const Node *n, void *ctx, LLVMValueRef pix, LLVMValueRef kh,
                        LLVMValueRef kw);
void cg_window(Cg *c, const Node *n, LLVMValueRef bn, LLVMValueRef oh, LLVMValueRef ow,
               bool replicate, WindowBody *body, void *ctx);

/* ---- split.c: an executable's module optimized and compiled in parts,
 * one a thread; objs[p] gets part p ---- */
enum { SPLIT_MAX_PARTS = 4 };
bool split_compile(LLVMModuleRef mod, LLVMTargetMachineRef *tms, int parts, int opt_level,
                   const char *const *objs, char *err, size_t es);

struct Backend {
    Graph *g;
    const Options *opts;
    Diag *d;
    Plan plan;
    bool training, planned;
    LLVMTargetMachineRef tm;
    int parts;                      /* an executable compiled in parts on threads (split.c), else 1 */
    LLVMTargetMachineRef part_tm[SPLIT_MAX_PARTS];  /* part_tm[0] is tm */
    char *triple, *lname, *cpu, *features;
    Cg c;
    float *weights;                 /* --weights */
    LLVMValueRef baked;             /* ... as a constant */
};

/* ---- ops/conv.c and ops/winograd.c: the conv kernels ---- */

/* One register-blocked conv over an input already padded:
 *   out (N,OH,OW,M) = act(init + sum over (kh, kw, c) of
 *                     in (N, oh*sh+kh, ow*sw+kw, C) * wpack (kh, kw, c, m))
 * where init is the bias or zero. The forward
 * conv is one; d inp of a stride-1 conv is another (the output gradient,
 * padded, convolved with the flipped weights). */
typedef struct ConvKernel {
    int64_t Hp, Wp, C, OH, OW, M;   /* C and M: per group */
    int kh, kw, sh, sw, act;        /* act: applied to each result as it is stored */
    LLVMValueRef in, wpack, bias, out;
    LLVMValueRef bn, oh;            /* the loop's, while emitting */
    LLVMValueRef scratch;           /* for Winograd's tiles, when it fits */
    int64_t Mp;                     /* wpack's row: M padded to whole vectors */
    bool pool;                      /* out is the 2x2 stride-2 max pool of the conv */
    /* grouped and dilated convs (0 for none): G groups of C inputs and M
     * outputs each, in pixels of Cs and Ms channels; taps dh, dw apart;
     * wpack holds a (Kh,Kw,C,Mp) block per group */
    int64_t G, Cs, Ms;
    int dh, dw;
    LLVMValueRef gi;                /* the group's loop, while emitting */
    bool blocked;                   /* wpack blocked by channel block (conv_pack_blocks) */
    double act_param;
    int64_t ph, pw;                 /* depthwise: the zero border the kernel adds (in is unpadded, Hp x Wp) */
    LLVMValueRef res;               /* inference: a fused add's other input, laid out as out, or NULL */
    bool slack;                     /* in may be read CONV_SLACK floats past its end (a padded copy) */
    LLVMValueRef wino_u;            /* Winograd's U where `prepare` keeps it, or NULL: at the start of scratch */
    bool exact;                     /* training's: Winograd only of the kinds that train (winograd.c) */
} ConvKernel;

enum { CONV_SLACK = 16 };

/* a result of k's, with its activation (any of acts.def's from_y ones: they
 * are monotonic, so they commute with a fused max pool) */
LLVMValueRef conv_act(Cg *c, const ConvKernel *k, LLVMValueRef v);
/* the first n floats of result v stored at out[at]: k->res's added, then
 * the activation */
void conv_store(Cg *c, const ConvKernel *k, LLVMValueRef v, LLVMValueRef at, int n);

/* whether k is one dense conv: no groups, no dilation */
bool conv_kernel_plain(const ConvKernel *k);
/* register blocks: a block of output channels (two vectors, or all), and how
 * many pixels of such blocks the registers hold, dividing limit if it can */
int conv_block_width(Cg *c, int64_t channels);
int conv_block_count(Cg *c, int width, int64_t limit);
bool conv_depthwise(const Node *n);         /* groups = C = M */
/* depthwise.c: the forward kernel (weights packed (Kh, Kw, C)), d weight
 * into dwpack (Kh, Kw, C), and d padded input by scatter (stride > 1) */
void emit_depthwise(Cg *c, const ConvKernel *k);
bool depthwise_pads_inline(const Node *n);  /* whether its kernel can add the zero border itself */
void emit_depthwise_dweight(Cg *c, const Node *n, LLVMValueRef pad, LLVMValueRef g, LLVMValueRef dwpack);
void emit_depthwise_scatter(Cg *c, const Node *n, LLVMValueRef g, LLVMValueRef wpack, LLVMValueRef dpad);

void emit_conv_kernel(Cg *c, ConvKernel *k);
int conv_pack_blocks(Cg *c, const ConvKernel *k);
/* where (row, col) of a rows x width pack blocked by bw is (conv.c) */
LLVMValueRef conv_blocked_at(Cg *c, LLVMValueRef row, int64_t rows, LLVMValueRef col, int64_t width, int bw);
/* the row-vector kernel (conv_rows.c) for one input channel, few kernels */
bool rows_fits(Cg *c, const ConvKernel *k);
void emit_conv_rows(Cg *c, ConvKernel *k);
/* Winograd F(2x2, 3x3) for a 3x3 stride-1 kernel, and its scratch */
bool wino_fits(const ConvKernel *k);
int wino_tile(const ConvKernel *k);         /* m: the output tile's side */
int64_t wino_bytes(const ConvKernel *k);
int64_t wino_u_bytes(const ConvKernel *k);  /* of them, the transformed weights U */
void emit_wino(Cg *c, const ConvKernel *k);
/* d weight of a forward kernel that fits (exact, its own zero border), into
 * a (Kh, Kw, C, M) pack from the output gradient g, and its scratch */
int64_t wino_dweight_bytes(const ConvKernel *k);
void emit_wino_dweight(Cg *c, const ConvKernel *k, LLVMValueRef g, LLVMValueRef dwpack);


/* True when conv n's input gradient is a stride-1 conv of its padded output
 * gradient (*qh, *qw: that padding); false for the scatter form. */
bool conv_dinp_transposed(const Node *n, int *qh, int *qw);
int64_t conv_wino_bytes(const Node *n, bool training);     /* 0: no Winograd kernel */
int64_t conv_pack_bound(const Node *n);     /* floats of a packed weight, any target */
/* Whether conv's kernel can apply the max pool after it (inference) */
bool conv_takes_pool(Cg *c, const Node *conv, const Node *pool);

/* ---- ops/batchnorm.c ---- */

/* n's scale and shift of inference, per channel, at `at` (2 x C floats) */
void batchnorm_affine(Cg *c, const Node *n, LLVMValueRef at);
/* batchnorm_affine at `at`, then after them (at 2 x M) the bias of the layer
 * before n folded with them: bias * scale + shift (shift without a bias).
 * Returns where that bias is. */
LLVMValueRef batchnorm_folded_bias(Cg *c, const Node *n, LLVMValueRef at, LLVMValueRef bias, int64_t M);
LLVMValueRef batchnorm_folded_at(Cg *c, LLVMValueRef at, int64_t M);   /* where that bias is */

/* ---- ops/loss.c: the losses (not ops of the table: they follow the model) ---- */

LLVMValueRef emit_loss(Cg *c, int loss, int64_t K, LLVMValueRef labels, LLVMValueRef targets, LLVMValueRef x,
                       LLVMValueRef probs, LLVMValueRef dst);

/* ---- ops/: per family, beside each other ---- */

#define OP(id, word, family, in, flags, spec, summary) \
    void shape_##family(Graph *g, Node *n); \
    void emit_##family##_fwd(Cg *c, const Node *n, LLVMValueRef inp, LLVMValueRef out); \
    void emit_##family##_bwd(Cg *c, const Node *n, const Bwd *a);
#include "ops.def"
#undef OP

#endif

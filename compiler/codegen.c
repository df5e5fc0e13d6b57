/*
 * codegen.c: the small layer between the op emitters and the LLVM C API.
 *
 * Emitters write loop nests with constant bounds (only the batch count is
 * known at run time) through cg_loop / cg_if, and scalars through cg_var slots
 * that LLVM's mem2reg turns into registers. Float arithmetic carries the
 * `contract` flag, so that LLVM may fuse a multiply and an add into an FMA, and
 * `reassoc`, so that reductions vectorize.
 */
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

LLVMValueRef cg_i64(Cg *c, int64_t v)
{
    return LLVMConstInt(c->i64, (unsigned long long)v, true);
}

LLVMValueRef cg_f32(Cg *c, double v)
{
    return LLVMConstReal(c->f32, v);
}

/* Do-while form: every count here is at least 1. */
LLVMValueRef cg_loop(Cg *c, Loop *l, LLVMValueRef count, const char *name)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
    l->body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, name);
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "");
    l->count = count;
    LLVMBuildBr(c->b, l->body);
    LLVMPositionBuilderAtEnd(c->b, l->body);
    l->iv = LLVMBuildPhi(c->b, c->i64, name);
    LLVMValueRef zero = cg_i64(c, 0);
    LLVMAddIncoming(l->iv, &zero, &pre, 1);
    return l->iv;
}

LLVMValueRef cg_loopn(Cg *c, Loop *l, int64_t count, const char *name)
{
    return cg_loop(c, l, cg_i64(c, count), name);
}

void cg_loop_end(Cg *c, Loop *l)
{
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMValueRef next = LLVMBuildNUWAdd(c->b, l->iv, cg_i64(c, 1), "");
    LLVMValueRef more = LLVMBuildICmp(c->b, LLVMIntULT, next, l->count, "");
    LLVMBuildCondBr(c->b, more, l->body, l->exit);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMMoveBasicBlockAfter(l->exit, latch);
    LLVMPositionBuilderAtEnd(c->b, l->exit);
}

LLVMBasicBlockRef cg_if(Cg *c, LLVMValueRef cond, const char *name)
{
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(c->ctx, c->fn, name);
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "");
    LLVMBuildCondBr(c->b, cond, then, join);
    LLVMPositionBuilderAtEnd(c->b, then);
    return join;
}

void cg_if_end(Cg *c, LLVMBasicBlockRef join)
{
    LLVMBuildBr(c->b, join);
    LLVMMoveBasicBlockAfter(join, LLVMGetInsertBlock(c->b));
    LLVMPositionBuilderAtEnd(c->b, join);
}

LLVMValueRef cg_add(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(c->b, a, b, "");
}

LLVMValueRef cg_mul(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWMul(c->b, a, b, "");
}

LLVMValueRef cg_muladd(Cg *c, LLVMValueRef a, int64_t k, LLVMValueRef b)
{
    return cg_add(c, cg_mul(c, a, cg_i64(c, k)), b);
}

LLVMValueRef cg_at(Cg *c, LLVMValueRef base, LLVMValueRef idx)
{
    return LLVMBuildInBoundsGEP2(c->b, c->f32, base, &idx, 1, "");
}

LLVMValueRef cg_load(Cg *c, LLVMValueRef base, LLVMValueRef idx, const char *name)
{
    return LLVMBuildLoad2(c->b, c->f32, cg_at(c, base, idx), name);
}

void cg_store(Cg *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx)
{
    LLVMBuildStore(c->b, v, cg_at(c, base, idx));
}

static LLVMValueRef fast(LLVMValueRef v)
{
    LLVMSetFastMathFlags(v, LLVMFastMathAllowContract | LLVMFastMathAllowReassoc);
    return v;
}

LLVMValueRef cg_fadd(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return fast(LLVMBuildFAdd(c->b, a, b, ""));
}

LLVMValueRef cg_fmul(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    return fast(LLVMBuildFMul(c->b, a, b, ""));
}

LLVMValueRef cg_entry_alloca(Cg *c, LLVMTypeRef t, const char *name)
{
    LLVMBuilderRef eb = LLVMCreateBuilderInContext(c->ctx);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(c->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(eb, first);
    else
        LLVMPositionBuilderAtEnd(eb, entry);
    LLVMValueRef v = LLVMBuildAlloca(eb, t, name);
    LLVMDisposeBuilder(eb);
    return v;
}

LLVMValueRef cg_var_i64(Cg *c, const char *name)
{
    return cg_entry_alloca(c, c->i64, name);
}

LLVMValueRef cg_get(Cg *c, LLVMValueRef var)
{
    return LLVMBuildLoad2(c->b, c->f32, var, "");
}

void cg_accum(Cg *c, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef v)
{
    LLVMValueRef p = cg_at(c, base, idx);
    LLVMBuildStore(c->b, cg_fadd(c, LLVMBuildLoad2(c->b, c->f32, p, ""), v), p);
}

/* v as a constant of like's type: a float, or a vector of them */
LLVMValueRef cg_const_like(Cg *c, LLVMValueRef like, double v)
{
    LLVMTypeRef t = LLVMTypeOf(like);
    if (LLVMGetTypeKind(t) != LLVMVectorTypeKind)
        return cg_f32(c, v);
    LLVMValueRef lanes[512];
    unsigned n = LLVMGetVectorSize(t);
    CNNC_ASSERT(n <= 512);
    for (unsigned i = 0; i < n; i++)
        lanes[i] = cg_f32(c, v);
    return LLVMConstVector(lanes, n);
}

LLVMValueRef cg_dparam(Cg *c, LLVMValueRef dparams, const Param *p)
{
    if (!p || p->fixed)
        return NULL;
    return cg_at(c, dparams, cg_offset(c, p->offset));
}

/* splitmix64's finalizer of key, its top 24 bits as a float in [0, 1) */
LLVMValueRef cg_hash_uniform(Cg *c, LLVMValueRef key)
{
    LLVMBuilderRef b = c->b;
    LLVMValueRef z = LLVMBuildMul(b, LLVMBuildAdd(b, key, cg_i64(c, 1), ""),
                                  cg_i64(c, (int64_t)0x9E3779B97F4A7C15ull), "");
    z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, cg_i64(c, 30), ""), ""),
                     cg_i64(c, (int64_t)0xBF58476D1CE4E5B9ull), "");
    z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, cg_i64(c, 27), ""), ""),
                     cg_i64(c, (int64_t)0x94D049BB133111EBull), "");
    z = LLVMBuildXor(b, z, LLVMBuildLShr(b, z, cg_i64(c, 31), ""), "");
    LLVMValueRef u = LLVMBuildUIToFP(b, LLVMBuildLShr(b, z, cg_i64(c, 40), ""), c->f32, "");
    return LLVMBuildFMul(b, u, cg_f32(c, 1.0 / 16777216.0), "u");
}

LLVMValueRef cg_var(Cg *c, const char *name)
{
    return cg_entry_alloca(c, c->f32, name);
}

/* float fn(float): an LLVM intrinsic (llvm.exp.f32, llvm.maxnum.f32) or libm;
 * for a vector x, fn names the intrinsic without its type (llvm.exp), and the
 * call is to llvm.exp.vNf32, or libm's fn once a lane. */
LLVMValueRef cg_call(Cg *c, const char *fn, LLVMValueRef x)
{
    LLVMTypeRef t = LLVMTypeOf(x);
    char name[64];
    if (LLVMGetTypeKind(t) == LLVMVectorTypeKind && strncmp(fn, "llvm.", 5)) {
        /* a libm function has no vector form: lane by lane */
        LLVMValueRef v = LLVMGetUndef(t);
        for (unsigned i = 0; i < LLVMGetVectorSize(t); i++) {
            LLVMValueRef lane = LLVMConstInt(LLVMInt32TypeInContext(c->ctx), i, false);
            v = LLVMBuildInsertElement(c->b, v, cg_call(c, fn, LLVMBuildExtractElement(c->b, x, lane, "")), lane, "");
        }
        return v;
    }
    if (LLVMGetTypeKind(t) == LLVMVectorTypeKind) {
        snprintf(name, sizeof name, "%s.v%uf32", fn, LLVMGetVectorSize(t));
        fn = name;
    }
    LLVMTypeRef ft = LLVMFunctionType(t, &t, 1, false);
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, fn);
    if (!f) {
        f = LLVMAddFunction(c->mod, fn, ft);
        LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
            LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0));
    }
    return LLVMBuildCall2(c->b, ft, f, &x, 1, "");
}


LLVMValueRef cg_param(Cg *c, const Param *p)
{
    for (int i = 0; i < c->g->nparams; i++)
        if (c->g->params[i] == p && c->fixed[i])
            return c->fixed[i];
    CNNC_ASSERT(!p->fixed);
    return cg_at(c, c->params, cg_offset(c, p->offset));
}

LLVMValueRef cg_inside(Cg *c, LLVMValueRef i, int64_t n)
{
    /* 0 <= i < n as one unsigned compare */
    return LLVMBuildICmp(c->b, LLVMIntULT, i, cg_i64(c, n), "");
}

LLVMValueRef cg_clamp(Cg *c, LLVMValueRef i, int64_t n)
{
    LLVMValueRef lo = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, cg_i64(c, 0), ""),
                                      cg_i64(c, 0), i, "");
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, lo, cg_i64(c, n), ""),
                           cg_i64(c, n - 1), lo, "");
}

/* The window walk shared by conv and the pools: for output pixel (bn, oh, ow)
 * of n, calls body for every (kh, kw) whose input pixel is inside the image,
 * or, with replicate, for all of them with the pixel clamped to the edge.
 * pix is the input pixel's index ((bn*H + ih)*W + iw); times C it points at
 * the pixel's channels. */
void cg_window(Cg *c, const Node *n, LLVMValueRef bn, LLVMValueRef oh, LLVMValueRef ow,
               bool replicate, WindowBody *body, void *ctx)
{
    int64_t H = n->in.d[0], W = n->in.d[1];
    /* windows that reach past the input: padding, or ceil mode's last ones */
    int64_t OH = n->out.rank == 3 ? n->out.d[0] : 1, OW = n->out.rank == 3 ? n->out.d[1] : 1;
    bool past_h = n->ph || (OH - 1) * n->sh + n->kh > H, past_w = n->pw || (OW - 1) * n->sw + n->kw > W;
    Loop lkh, lkw;
    LLVMValueRef kh = cg_loopn(c, &lkh, n->kh, "kh");
    LLVMValueRef ih = cg_add(c, cg_muladd(c, oh, n->sh, kh), cg_i64(c, -n->ph));
    LLVMBasicBlockRef hjoin = NULL, wjoin = NULL;
    if (replicate)
        ih = cg_clamp(c, ih, H);
    else if (past_h)
        hjoin = cg_if(c, cg_inside(c, ih, H), "ih.inside");
    LLVMValueRef kw = cg_loopn(c, &lkw, n->kw, "kw");
    LLVMValueRef iw = cg_add(c, cg_muladd(c, ow, n->sw, kw), cg_i64(c, -n->pw));
    if (replicate)
        iw = cg_clamp(c, iw, W);
    else if (past_w)
        wjoin = cg_if(c, cg_inside(c, iw, W), "iw.inside");
    LLVMValueRef pix = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, bn, cg_i64(c, H)), ih), cg_i64(c, W)), iw);
    body(c, n, ctx, pix, kh, kw);
    if (wjoin)
        cg_if_end(c, wjoin);
    cg_loop_end(c, &lkw);
    if (hjoin)
        cg_if_end(c, hjoin);
    cg_loop_end(c, &lkh);
}

LLVMBasicBlockRef cg_if_sync(Cg *c, const char *name)
{
    return cg_if(c, LLVMBuildICmp(c->b, LLVMIntNE, c->sync, LLVMConstNull(c->ptr), "shared"), name);
}

LLVMValueRef cg_sync_field(Cg *c, int64_t byte, LLVMTypeRef t, const char *name)
{
    LLVMValueRef off = cg_i64(c, byte);
    LLVMValueRef at = LLVMBuildGEP2(c->b, LLVMInt8TypeInContext(c->ctx), c->sync, &off, 1, "");
    return LLVMBuildLoad2(c->b, t, at, name);
}

LLVMValueRef cg_offset(Cg *c, int64_t v)
{
    if (!c->offsets)
        return cg_i64(c, v);
    if (c->noffsets == c->offsets_cap)
        c->offset_vals = realloc(c->offset_vals, (size_t)(c->offsets_cap = 2 * c->offsets_cap + 16) *
                                                 sizeof *c->offset_vals);
    LLVMValueRef k = cg_i64(c, c->noffsets);
    c->offset_vals[c->noffsets++] = v;
    LLVMValueRef at = LLVMBuildInBoundsGEP2(c->offsets_b, c->i64, c->offsets, &k, 1, "");
    return LLVMBuildLoad2(c->offsets_b, c->i64, at, "offset");
}

LLVMValueRef cg_ws(Cg *c, int64_t offset)
{
    LLVMValueRef off = cg_offset(c, offset);
    return LLVMBuildInBoundsGEP2(c->b, LLVMInt8TypeInContext(c->ctx), c->ws, &off, 1, "");
}

/* A vector of n floats lives in cg_lanes(n) lanes: n itself when it fills
 * whole registers or is a power of two, else rounded up (6 -> 8, 30 -> 32),
 * the extra lanes zero. Memory is only touched in the first n: loads and
 * stores of such vectors are masked (AVX-512's k masks, AVX2's vmaskmov),
 * never split into odd pieces. */
int cg_lanes(Cg *c, int n)
{
    if (n % c->vw == 0 || (n & (n - 1)) == 0)
        return n;
    if (n > c->vw)
        return (n + c->vw - 1) / c->vw * c->vw;
    int p = 1;
    while (p < n)
        p *= 2;
    return p;
}

static LLVMTypeRef vec_type(Cg *c, int n)
{
    return LLVMVectorType(c->f32, (unsigned)cg_lanes(c, n));
}

/* <lanes x i1>: the first n true */
static LLVMValueRef first_lanes(Cg *c, int n, int lanes)
{
    LLVMTypeRef i1 = LLVMInt1TypeInContext(c->ctx);
    LLVMValueRef bits[512];
    CNNC_ASSERT(lanes <= 512);
    for (int i = 0; i < lanes; i++)
        bits[i] = LLVMConstInt(i1, i < n, false);
    return LLVMConstVector(bits, (unsigned)lanes);
}

static LLVMValueRef masked_intrinsic(Cg *c, const char *name, LLVMTypeRef vt, LLVMTypeRef *ft)
{
    LLVMTypeRef over[] = {vt, c->ptr};
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    *ft = LLVMIntrinsicGetType(c->ctx, id, over, 2);
    return LLVMGetIntrinsicDeclaration(c->mod, id, over, 2);
}

LLVMValueRef cg_vload_lanes(Cg *c, LLVMValueRef base, LLVMValueRef idx, int n, int lanes)
{
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)lanes), ft;
    if (lanes != n) {
        LLVMValueRef f = masked_intrinsic(c, "llvm.masked.load", vt, &ft);
        LLVMValueRef args[] = {cg_at(c, base, idx), LLVMConstInt(c->i32, 4, false),
                               first_lanes(c, n, lanes), LLVMConstNull(vt)};
        return LLVMBuildCall2(c->b, ft, f, args, 4, "");
    }
    LLVMValueRef v = LLVMBuildLoad2(c->b, vt, cg_at(c, base, idx), "");
    LLVMSetAlignment(v, 4);
    return v;
}

LLVMValueRef cg_vload(Cg *c, LLVMValueRef base, LLVMValueRef idx, int n)
{
    return cg_vload_lanes(c, base, idx, n, cg_lanes(c, n));
}

/* the first n lanes of v (of any width). AVX-512 stores under a k mask in
 * one instruction; elsewhere a masked store is slow (vmaskmovps on AMD) or
 * split by LLVM lane by lane, so the lanes go out as a few whole stores of
 * power-of-two pieces (6 = 4 + 2). */
void cg_vstore_lanes(Cg *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx, int n)
{
    LLVMTypeRef vt = LLVMTypeOf(v), ft;
    int lanes = (int)LLVMGetVectorSize(vt);
    if (n != lanes && c->vw == 16) {
        LLVMValueRef f = masked_intrinsic(c, "llvm.masked.store", vt, &ft);
        LLVMValueRef args[] = {v, cg_at(c, base, idx), LLVMConstInt(c->i32, 4, false), first_lanes(c, n, lanes)};
        LLVMBuildCall2(c->b, ft, f, args, 4, "");
        return;
    }
    for (int at = 0; at < n;) {
        int p = 1;
        while (p * 2 <= n - at)
            p *= 2;
        LLVMValueRef piece = v;
        if (p == 1) {
            piece = LLVMBuildExtractElement(c->b, v, cg_i64(c, at), "");
        } else if (p != lanes) {
            LLVMValueRef sel[512];
            for (int i = 0; i < p; i++)
                sel[i] = LLVMConstInt(c->i32, (unsigned)(at + i), false);
            piece = LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(vt), LLVMConstVector(sel, (unsigned)p), "");
        }
        LLVMValueRef st = LLVMBuildStore(c->b, piece, cg_at(c, base, cg_add(c, idx, cg_i64(c, at))));
        LLVMSetAlignment(st, 4);
        at += p;
    }
}

void cg_vstore(Cg *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx, int n)
{
    cg_vstore_lanes(c, v, base, idx, n);
}

LLVMValueRef cg_splat(Cg *c, LLVMValueRef x, int n)
{
    LLVMTypeRef vt = vec_type(c, n);
    unsigned lanes = (unsigned)cg_lanes(c, n);
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetPoison(vt), x, cg_i64(c, 0), "");
    LLVMValueRef mask = LLVMConstNull(LLVMVectorType(c->i32, lanes));
    return LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(vt), mask, "splat");
}

LLVMValueRef cg_vzero(Cg *c, int n)
{
    return LLVMConstNull(vec_type(c, n));
}

LLVMValueRef cg_vvar(Cg *c, int n, const char *name)
{
    return cg_entry_alloca(c, vec_type(c, n), name);
}

LLVMValueRef cg_vget(Cg *c, LLVMValueRef var, int n)
{
    return LLVMBuildLoad2(c->b, vec_type(c, n), var, "");
}

/* Calls fn for [0, n) in blocks of size: the whole ones in a loop, then
 * the rest. */
void cg_for_blocks(Cg *c, int64_t n, int size, VectorFn *fn, void *ctx)
{
    if (n / size) {
        Loop l;
        LLVMValueRef b = cg_loopn(c, &l, n / size, "blk");
        fn(c, ctx, cg_mul(c, b, cg_i64(c, size)), size);
        cg_loop_end(c, &l);
    }
    if (n % size)
        fn(c, ctx, cg_i64(c, n / size * size), (int)(n % size));
}

void cg_for_vectors(Cg *c, int64_t n, VectorFn *fn, void *ctx)
{
    cg_for_blocks(c, n, c->vw, fn, ctx);
}

/* count floats from base set to 0 */
void cg_zero(Cg *c, LLVMValueRef base, LLVMValueRef count)
{
    LLVMBuildMemSet(c->b, base, LLVMConstInt(LLVMInt8TypeInContext(c->ctx), 0, false),
                    cg_mul(c, count, cg_i64(c, 4)), 4);
}

/* fn compiled for size (LLVM's optsize and minsize) */
void cg_for_size(Cg *c, LLVMValueRef fn)
{
    static const char *const kinds[] = {"optsize", "minsize"};
    for (int i = 0; i < 2; i++)
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
            LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName(kinds[i], strlen(kinds[i])), 0));
}

/* The kernels' fused relu on a vector of accumulators: v > 0 or NaN ? v : 0
 * (torch.relu keeps NaN; one unordered compare, as cheap as the ordered one) */
LLVMValueRef cg_vrelu(Cg *c, LLVMValueRef v)
{
    LLVMValueRef zero = LLVMConstNull(LLVMTypeOf(v));
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealUGT, v, zero, ""), v, zero, "relu");
}

/* a > b or a NaN ? a : b, lane by lane: PyTorch's max pool test
 * `val > maxval || isnan(val)`, so b is kept on equality (the first maximum
 * wins) and a NaN on either side is kept */
LLVMValueRef cg_vmax(Cg *c, LLVMValueRef a, LLVMValueRef b)
{
    LLVMValueRef gt = LLVMBuildFCmp(c->b, LLVMRealOGT, a, b, "");
    LLVMValueRef nan = LLVMBuildFCmp(c->b, LLVMRealUNO, a, a, "");
    return LLVMBuildSelect(c->b, LLVMBuildOr(c->b, gt, nan, ""), a, b, "max");
}

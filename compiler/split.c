/*
 * split.c: an executable's module optimized and compiled in parts, one a
 * thread, each in an LLVMContext of its own (LLVM compiles separate
 * contexts in parallel; one context, never).
 *
 * The module's top functions (those no other function calls: infer, the
 * train step, show's activations, the initializer, ...) go, each with the
 * functions it calls, to the part with the fewest instructions so far,
 * heaviest first; the global variables go to part 0. A symbol that a part
 * uses but another defines becomes external and hidden, under a name of
 * its own (so that it cannot meet the runtime's). Each part is the whole
 * module read back from bitcode, with every definition of the other parts
 * made available_externally, which its first passes (elim-avail-extern,
 * globaldce) turn into declarations or drop; so each thread optimizes and
 * compiles only its part. The objects are linked together.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "cnnc.h"

/* The module's global values, by pointer (open addressing). */
typedef struct Sym {
    LLVMValueRef v;
    int part;                       /* -1: not yet placed */
    bool cross;                     /* used by a part that does not define it */
    bool called;                    /* a function some defined function calls */
    int64_t size;                   /* instructions, for functions */
} Sym;

typedef struct Syms {
    Sym *at;
    size_t cap;
} Syms;

static size_t slot_of(const Syms *s, LLVMValueRef v)
{
    size_t h = ((size_t)v >> 4) * 0x9E3779B97F4A7C15ull, i = h & (s->cap - 1);
    while (s->at[i].v && s->at[i].v != v)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static Sym *sym(const Syms *s, LLVMValueRef v)
{
    Sym *e = &s->at[slot_of(s, v)];
    return e->v ? e : NULL;
}

static void add_sym(Syms *s, LLVMValueRef v)
{
    Sym *e = &s->at[slot_of(s, v)];
    *e = (Sym){.v = v, .part = -1};
}

/* Calls fn(ctx, g) for every global value v uses, through constant
 * expressions and aggregates. */
typedef void UseFn(void *ctx, Sym *g);

static void uses(const Syms *s, LLVMValueRef v, UseFn *fn, void *ctx, int depth)
{
    if (!v || depth > 64)
        return;
    if (LLVMIsAGlobalValue(v)) {
        Sym *g = sym(s, v);
        if (g)
            fn(ctx, g);
        return;
    }
    if (!LLVMIsAConstant(v) || LLVMIsAConstantDataSequential(v))
        return;
    int n = LLVMGetNumOperands(v);
    for (int i = 0; i < n; i++)
        uses(s, LLVMGetOperand(v, (unsigned)i), fn, ctx, depth + 1);
}

static void body_uses(const Syms *s, LLVMValueRef f, UseFn *fn, void *ctx)
{
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
        for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i)) {
            int n = LLVMGetNumOperands(i);
            for (int k = 0; k < n; k++)
                uses(s, LLVMGetOperand(i, (unsigned)k), fn, ctx, 0);
        }
}

static void mark_called(void *ctx, Sym *g)
{
    (void)ctx;
    if (LLVMIsAFunction(g->v))
        g->called = true;
}

/* A top's closure: every function it reaches joins its part. */
typedef struct Claim {
    const Syms *s;
    int part;
    int64_t size;
} Claim;

static void claim(void *ctx, Sym *g)
{
    Claim *c = ctx;
    if (!LLVMIsAFunction(g->v) || LLVMIsDeclaration(g->v) || g->part >= 0)
        return;
    g->part = c->part;
    c->size += g->size;
    body_uses(c->s, g->v, claim, c);
}

/* A use by part `part` of a symbol another part defines makes it cross. */
static void mark_cross(void *ctx, Sym *g)
{
    int part = *(int *)ctx;
    if (g->part >= 0 && g->part != part && !LLVMIsDeclaration(g->v))
        g->cross = true;
}

static int64_t instructions(LLVMValueRef f)
{
    int64_t n = 0;
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
        for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i))
            n++;
    return n;
}

static LLVMValueRef next_global(LLVMValueRef v)
{
    return LLVMIsAFunction(v) ? LLVMGetNextFunction(v) : LLVMGetNextGlobal(v);
}

/* Places every global value of mod in a part and makes the cross ones
 * external and hidden; returns the table of placements by name. */
static char **place(LLVMModuleRef mod, int parts, int **part_of, int *count)
{
    Syms s = {.cap = 64};
    int n = 0;
    LLVMValueRef firsts[2] = {LLVMGetFirstFunction(mod), LLVMGetFirstGlobal(mod)};
    for (int k = 0; k < 2; k++)
        for (LLVMValueRef v = firsts[k]; v; v = next_global(v))
            n++;
    while (s.cap < 2 * (size_t)n + 2)
        s.cap *= 2;
    s.at = calloc(s.cap, sizeof *s.at);
    for (int k = 0; k < 2; k++)
        for (LLVMValueRef v = firsts[k]; v; v = next_global(v))
            add_sym(&s, v);
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        sym(&s, f)->size = instructions(f);
        body_uses(&s, f, mark_called, NULL);
    }
    /* the tops, heaviest first, each to the lighter part */
    int64_t load[8] = {0};
    for (;;) {
        Sym *best = NULL;
        int64_t best_size = -1;
        for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
            Sym *g = sym(&s, f);
            if (LLVMIsDeclaration(f) || g->called || g->part >= 0)
                continue;
            /* its closure's size, as yet unclaimed: claim and undo */
            Claim c = {&s, parts, 0};
            claim(&c, g);
            for (size_t i = 0; i < s.cap; i++)
                if (s.at[i].v && s.at[i].part == parts)
                    s.at[i].part = -1;
            if (c.size > best_size)
                best = g, best_size = c.size;
        }
        if (!best)
            break;
        int lighter = 0;
        for (int p = 1; p < parts; p++)
            if (load[p] < load[lighter])
                lighter = p;
        Claim c = {&s, lighter, 0};
        claim(&c, best);
        load[lighter] += c.size;
    }
    /* what is left (called only from a cycle, or variables) goes to part 0 */
    for (size_t i = 0; i < s.cap; i++)
        if (s.at[i].v && s.at[i].part < 0)
            s.at[i].part = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        int p = sym(&s, f)->part;
        body_uses(&s, f, mark_cross, &p);
    }
    for (LLVMValueRef v = LLVMGetFirstGlobal(mod); v; v = LLVMGetNextGlobal(v)) {
        int p = sym(&s, v)->part;
        uses(&s, LLVMGetInitializer(v), mark_cross, &p, 0);
    }
    char **names = calloc((size_t)n + 1, sizeof *names);
    *part_of = calloc((size_t)n + 1, sizeof **part_of);
    int k = 0;
    for (int j = 0; j < 2; j++)
        for (LLVMValueRef v = firsts[j]; v; v = next_global(v), k++) {
            Sym *g = sym(&s, v);
            size_t len;
            const char *name = LLVMGetValueName2(v, &len);
            char fresh[512];
            if (g->cross) {
                snprintf(fresh, sizeof fresh, "__cnnc.%d.%.400s", k, name);
                LLVMSetValueName2(v, fresh, strlen(fresh));
                LLVMSetLinkage(v, LLVMExternalLinkage);
                LLVMSetVisibility(v, LLVMHiddenVisibility);
            } else if (!len) {
                snprintf(fresh, sizeof fresh, "__cnnc.%d", k);
                LLVMSetValueName2(v, fresh, strlen(fresh));
            }
            names[k] = strdup(LLVMGetValueName2(v, &len));
            (*part_of)[k] = LLVMIsDeclaration(v) ? -1 : g->part;
        }
    free(s.at);
    *count = n;
    return names;
}

typedef struct Part {
    LLVMMemoryBufferRef bitcode;
    LLVMTargetMachineRef tm;
    char **names;
    int *part_of, count, part, opt_level;
    const char *obj;
    char *err;
} Part;

static void *compile_part(void *arg)
{
    Part *p = arg;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod;
    if (LLVMParseBitcodeInContext2(ctx, p->bitcode, &mod)) {
        p->err = strdup("the module's bitcode did not read back");
        LLVMContextDispose(ctx);
        return NULL;
    }
    /* the other parts' definitions: available, not ours to compile */
    for (int i = 0; i < p->count; i++) {
        if (p->part_of[i] < 0 || p->part_of[i] == p->part)
            continue;
        LLVMValueRef v = LLVMGetNamedFunction(mod, p->names[i]);
        if (!v)
            v = LLVMGetNamedGlobal(mod, p->names[i]);
        if (v && !LLVMIsDeclaration(v) && LLVMGetLinkage(v) != LLVMInternalLinkage &&
            LLVMGetLinkage(v) != LLVMPrivateLinkage)
            LLVMSetLinkage(v, LLVMAvailableExternallyLinkage);
    }
    char passes[96];
    snprintf(passes, sizeof passes, "elim-avail-extern,globaldce,default<O%d>", p->opt_level);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, p->opt_level >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(po, p->opt_level >= 2);
    LLVMErrorRef perr = LLVMRunPasses(mod, passes, p->tm, po);
    LLVMDisposePassBuilderOptions(po);
    char *err = NULL;
    if (perr) {
        char *m = LLVMGetErrorMessage(perr);
        p->err = strdup(m);
        LLVMDisposeErrorMessage(m);
    } else if (LLVMTargetMachineEmitToFile(p->tm, mod, (char *)p->obj, LLVMObjectFile, &err)) {
        p->err = strdup(err);
    }
    LLVMDisposeMessage(err);
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    return NULL;
}

bool split_compile(LLVMModuleRef mod, LLVMTargetMachineRef *tms, int parts, int opt_level,
                   const char *const *objs, char *err, size_t es)
{
    int count, *part_of;
    char **names = place(mod, parts, &part_of, &count);
    LLVMMemoryBufferRef bitcode = LLVMWriteBitcodeToMemoryBuffer(mod);
    Part *ps = calloc((size_t)parts, sizeof *ps);
    pthread_t *ids = calloc((size_t)parts, sizeof *ids);
    bool *started = calloc((size_t)parts, sizeof *started);
    for (int p = 0; p < parts; p++) {
        ps[p] = (Part){bitcode, tms[p], names, part_of, count, p, opt_level, objs[p], NULL};
        started[p] = p > 0 && pthread_create(&ids[p], NULL, compile_part, &ps[p]) == 0;
        if (p > 0 && !started[p])
            compile_part(&ps[p]);
    }
    compile_part(&ps[0]);
    bool ok = true;
    for (int p = 0; p < parts; p++) {
        if (started[p])
            pthread_join(ids[p], NULL);
        if (ps[p].err && ok) {
            snprintf(err, es, "%s", ps[p].err);
            ok = false;
        }
        free(ps[p].err);
    }
    LLVMDisposeMemoryBuffer(bitcode);
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    free(part_of);
    free(ps);
    free(ids);
    free(started);
    return ok;
}

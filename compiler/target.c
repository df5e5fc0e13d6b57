/*
 * target.c: checking -mcpu against LLVM before the back end uses it.
 *
 * LLVM's C API has no "is this a CPU of this target" question: given an
 * unknown CPU it warns on stderr (once per subtarget) and goes on, and given
 * a CPU that cannot run the target's code (pentium4 for x86_64) it aborts
 * the process. So the CPU is tried in a child process, which builds a target
 * machine for it and compiles a small vector function; what LLVM printed and
 * how the child ended say whether the CPU can be used. The list of valid
 * CPUs comes the same way, from LLVM's own `-mcpu=help` text.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include "cnnc.h"

enum { PROBE_OK = 0, PROBE_NO_VECTORS = 3 };

static void init_targets(void)
{
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
}

/* In the child: a target machine for cpu, and `p[0..3] += p[0..3]` in
 * float vectors compiled to assembly, which must use vector registers. */
static int probe(const char *triple, const char *cpu)
{
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err))
        return 2;
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, "", LLVMCodeGenLevelDefault,
                                                      LLVMRelocPIC, LLVMCodeModelDefault);
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("probe", ctx);
    LLVMSetTarget(mod, triple);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);
    LLVMTypeRef v4 = LLVMVectorType(LLVMFloatTypeInContext(ctx), 4);
    LLVMValueRef fn = LLVMAddFunction(mod, "probe", LLVMFunctionType(LLVMVoidTypeInContext(ctx), &ptr, 1, false));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
    LLVMValueRef v = LLVMBuildLoad2(b, v4, LLVMGetParam(fn, 0), "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, v, v, ""), LLVMGetParam(fn, 0));
    LLVMBuildRetVoid(b);
    LLVMMemoryBufferRef asm_buf;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &err, &asm_buf))
        return 2;
    const char *text = LLVMGetBufferStart(asm_buf);
    bool x86 = !strncmp(triple, "x86_64", 6) || !strncmp(triple, "i", 1);
    return x86 && !strstr(text, "xmm") && !strstr(text, "ymm") && !strstr(text, "zmm")
           ? PROBE_NO_VECTORS : PROBE_OK;
}

/* Runs probe(triple, cpu) in a child; its stderr in *text (malloc'd), its
 * exit status, or -1 when it died (LLVM aborted). */
static int run_probe(const char *triple, const char *cpu, char **text)
{
    int fds[2];
    *text = NULL;
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        _exit(probe(triple, cpu));
    }
    close(fds[1]);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while ((got = read(fds[0], buf + n, cap - n - 1)) > 0)
        if ((n += (size_t)got) + 1 == cap)
            buf = realloc(buf, cap *= 2);
    buf[n] = '\0';
    close(fds[0]);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        free(buf);
        return -1;
    }
    *text = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The CPU names of LLVM's help text, comma-separated (malloc'd). */
static char *cpu_names(const char *triple)
{
    char *text;
    run_probe(triple, "help", &text);
    const char *p = text ? strstr(text, "Available CPUs for this target:") : NULL;
    size_t cap = 4096, n = 0;
    char *list = malloc(cap);
    list[0] = '\0';
    for (p = p ? strchr(p, '\n') : NULL; p && *p; p = strchr(p + 1, '\n')) {
        const char *s = p + 1;
        while (*s == ' ')
            s++;
        if (*s == '\n')
            continue;               /* the blank line after the heading */
        if (s == p + 1 || !strstr(s, " - "))
            break;                  /* the features' heading: the list is over */
        size_t len = strcspn(s, " \n");
        if (n + len + 3 > cap)
            list = realloc(list, cap = 2 * (n + len + 3));
        n += (size_t)snprintf(list + n, cap - n, "%s%.*s", n ? ", " : "", (int)len, s);
    }
    free(text);
    return list;
}

bool target_list_cpus(FILE *out, const char *triple_opt)
{
    init_targets();
    char *triple = triple_opt ? LLVMNormalizeTargetTriple(triple_opt) : LLVMGetDefaultTargetTriple();
    char *list = cpu_names(triple);
    bool ok = list[0] != '\0';
    if (ok)
        fprintf(out, "valid target CPU values for %s: %s\n", triple, list);
    free(list);
    LLVMDisposeMessage(triple);
    return ok;
}

bool target_check_cpu(Diag *d, const char *triple, const char *cpu)
{
    char *text;
    int rc = run_probe(triple, cpu, &text);
    if (rc == PROBE_OK && text && !strstr(text, "is not a recognized processor")) {
        free(text);
        return true;
    }
    if (text && strstr(text, "is not a recognized processor")) {
        diag_fatal(d, "unknown target CPU '%s' for %s", cpu, triple);
        char *list = cpu_names(triple);
        diag_note_plain(d, "valid target CPU values are: %s", list);
        free(list);
    } else if (rc == PROBE_NO_VECTORS) {
        diag_fatal(d, "target CPU '%s' has no vector unit (SSE) that cnnc's kernels could use", cpu);
    } else {
        const char *why = text ? strstr(text, "LLVM ERROR: ") : NULL;
        size_t len = why ? strcspn(why + 12, "\n") : 0;
        diag_fatal(d, "target CPU '%s' cannot be used for %s%s%.*s", cpu, triple,
                   why ? ": " : "", (int)len, why ? why + 12 : "");
    }
    free(text);
    return false;
}

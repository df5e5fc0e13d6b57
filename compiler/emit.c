/*
 * emit.c: the back end's driver (for now: --emit-ir only).
 */
#include <llvm-c/Core.h>
#include "cnnc.h"

const char *emit_llvm_version(void)
{
    static char buf[32];
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(buf, sizeof buf, "%u.%u.%u", major, minor, patch);
    return buf;
}

bool emit_output(Graph *g, const Options *opts, Diag *d)
{
    if (opts->mode == MODE_IR) {
        ir_print(stdout, g);
        return true;
    }
    diag_fatal(d, "code generation is not available yet");
    return false;
}

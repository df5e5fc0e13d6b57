/*
 * fuzz_cnn.c: libFuzzer harness for the front end: parse, ir_build,
 * shape_check, autodiff and the memory plan, on any bytes as a .cnn file.
 * Diagnostics go to /dev/null; a crash, a sanitizer report or a hang is a bug.
 */
#include <stdint.h>
#include <string.h>
#include "../../compiler/cnnc.h"

static void report(void *ctx, Loc loc, const char *msg)
{
    diag_error(ctx, loc, "%s", msg);
}

static bool stop(void *ctx)
{
    return diag_too_many(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (size > 1 << 16 || memchr(data, 0, size))
        return 0;       /* cnnc refuses files with NUL bytes before parsing */
    Diag d;
    diag_init(&d, devnull, "fuzz.cnn", (const char *)data, size);
    Arena arena = {0};
    ParseOpts po = {report, stop, &d, 4096};
    Block *blocks = cnn_parse("fuzz.cnn", (const char *)data, size, &arena, &po);
    bool syntax_ok = d.errors == 0;
    Graph g;
    ir_build(&g, blocks, &arena, &d);
    if (syntax_ok && g.n > 0 && !diag_too_many(&d) && shape_check(&g) && d.errors == 0 && g.n >= 2) {
        autodiff_build(&g);
        fuse_activations(&g);
        Plan p;
        plan_build(&p, &g, 4, 0, true);
        ir_print(devnull, &g, true, &p);
        plan_free(&p, &g);
    }
    diag_finish(&d);
    arena_free(&arena);
    return 0;
}

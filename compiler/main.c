/*
 * main.c: the cnnc driver. It reads as the passes in order:
 *
 *   read the file -> parse (grammar/) -> ir_build -> shape_check
 *     -> --shapes / --emit-ir, or plan + emit (the back end) -> link
 *
 * It alone prints to stdout and decides the exit status: 1 on any error, and
 * then no output file is left behind.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

static void usage(FILE *out)
{
    fputs("usage: cnnc [options] model.cnn\n"
          "\n"
          "  -o FILE            output file (default: the model's name, or NAME.o with -c)\n"
          "  -c                 an object file NAME.o and its header NAME.h, for embedding\n"
          "  -S                 assembly\n"
          "  --emit-llvm        LLVM IR\n"
          "  --emit-ir          the checked graph, forward and backward, as text\n"
          "  --shapes           per layer: output shape, parameters, FLOPs, receptive field\n"
          "  --inference-only   leave out the training code\n"
          "  --no-winograd      every conv computed directly (no Winograd kernels)\n"
          "  --weights FILE     bake trained weights (.cnnw) into the output\n"
          "  --batch N          most images per call (default: the train block's batch)\n"
          "  -O0 .. -O3         optimization level (default -O2)\n"
          "  --target TRIPLE    cross-compile for TRIPLE (e.g. aarch64-linux-gnu)\n"
          "  -mcpu=CPU          the CPU to tune and select features for (default: this host's)\n"
          "  --version, --help\n", out);
}

/* Reads the whole file; NULL with a message on failure. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cnnc: error: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) {
                fprintf(stderr, "cnnc: error: '%s' is larger than %d MiB; is it a .cnn file?\n",
                        path, MAX_FILE_BYTES >> 20);
                free(buf);
                fclose(f);
                return NULL;
            }
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "cnnc: error: cannot read '%s': %s\n", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void report_parse_error(void *ctx, Loc loc, const char *msg)
{
    diag_error(ctx, loc, "%s", msg);
}

static bool parse_should_stop_cb(void *ctx)
{
    return diag_too_many(ctx);
}

/* Parses argv into opts; returns false (after a message) on a bad command line. */
static bool parse_args(int argc, char **argv, Options *o)
{
    *o = (Options){.opt_level = 2};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-o") || !strcmp(a, "--weights") || !strcmp(a, "--batch") ||
            !strcmp(a, "--target")) {
            if (!next) {
                fprintf(stderr, "cnnc: error: '%s' needs an argument\n", a);
                return false;
            }
            i++;
            if (!strcmp(a, "-o"))
                o->output = next;
            else if (!strcmp(a, "--weights"))
                o->weights = next;
            else if (!strcmp(a, "--target"))
                o->target = next;
            else {
                char *end;
                errno = 0;
                long v = strtol(next, &end, 10);
                if (*end || errno || v < 1 || v > 1 << 20) {
                    fprintf(stderr, "cnnc: error: --batch needs a number from 1 to 1048576, "
                            "not '%s'\n", next);
                    return false;
                }
                o->batch = v;
            }
        } else if (!strncmp(a, "-mcpu=", 6)) {
            o->cpu = a + 6;
        } else if (!strncmp(a, "--target=", 9)) {
            o->target = a + 9;
        } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
            o->opt_level = a[2] - '0';
        } else if (!strcmp(a, "-c")) {
            o->mode = MODE_OBJECT;
        } else if (!strcmp(a, "-S")) {
            o->mode = MODE_ASM;
        } else if (!strcmp(a, "--emit-llvm")) {
            o->mode = MODE_LLVM;
        } else if (!strcmp(a, "--emit-ir")) {
            o->mode = MODE_IR;
        } else if (!strcmp(a, "--shapes")) {
            o->mode = MODE_SHAPES;
        } else if (!strcmp(a, "--inference-only")) {
            o->inference_only = true;
        } else if (!strcmp(a, "--no-winograd")) {
            o->no_winograd = true;
        } else if (!strcmp(a, "--version")) {
            printf("cnnc %s (LLVM %s)\n", CNNC_VERSION, emit_llvm_version());
            exit(0);
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "cnnc: error: unknown option '%s'\n", a);
            usage(stderr);
            return false;
        } else if (o->input) {
            fprintf(stderr, "cnnc: error: one .cnn file at a time ('%s' and '%s')\n", o->input, a);
            return false;
        } else {
            o->input = a;
        }
    }
    if (!o->input) {
        fprintf(stderr, "cnnc: error: no input file\n");
        usage(stderr);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    Options opts;
    if (!parse_args(argc, argv, &opts))
        return 1;
    size_t len;
    char *text = read_file(opts.input, &len);
    if (!text)
        return 1;

    const char *nul = memchr(text, '\0', len);
    if (nul) {
        fprintf(stderr, "cnnc: error: '%s' is not a text file (a NUL byte at offset %zu)\n",
                opts.input, (size_t)(nul - text));
        free(text);
        return 1;
    }

    Diag diag;
    diag_init(&diag, stderr, opts.input, text, len);
    Arena arena = {0};
    ParseOpts popts = {report_parse_error, parse_should_stop_cb, &diag, MAX_STMTS};

    /* parse */
    Block *blocks = cnn_parse(opts.input, text, len, &arena, &popts);
    bool syntax_ok = diag.errors == 0;

    /* IR, then shapes: after a syntax error a statement may be missing, and
     * shapes checked without it would only mislead. */
    Graph g;
    bool ok = ir_build(&g, blocks, &arena, &diag);
    if (syntax_ok && g.n > 0 && !diag_too_many(&diag))
        ok = shape_check(&g) && ok;
    ok = ok && diag.errors == 0;
    if (ok && g.n >= 2) {
        autodiff_build(&g);
        fuse_activations(&g);
    }

    if (ok && opts.mode == MODE_SHAPES)
        shape_print_table(stdout, &g);
    else if (ok)
        ok = emit_output(&g, &opts, &diag);

    if (diag_too_many(&diag))
        fprintf(stderr, "%s: fatal error: too many errors emitted, stopping now\n", opts.input);
    if (diag.errors || diag.warnings)
        fprintf(stderr, "%d error%s and %d warning%s generated.\n", diag.errors,
                diag.errors == 1 ? "" : "s", diag.warnings, diag.warnings == 1 ? "" : "s");
    arena_free(&arena);
    free(text);
    return ok ? 0 : 1;
}

/*
 * main.c: the cnnc driver. It reads as the passes in order:
 *
 *   read the file -> parse (grammar/) -> ir_build -> shape_check
 *     -> --shapes / --emit-ir, or plan + emit (the back end) -> link
 *
 * It alone prints to stdout and decides the exit status: 1 on any error, and
 * then no output file is left behind.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"
#include "../runtime/cnnrt.h"

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
          "  --emit-tensors     each trainable tensor's name and shape, in .cnnw order\n"
          "  --inference-only   leave out the training code\n"
          "  --mpi              a program for mpirun -np N: data-parallel training over Open MPI\n"
          "  --no-winograd      every conv computed directly (no Winograd kernels)\n"
          "  --weights FILE     bake trained weights (.cnnw) into the output\n"
          "  --batch N          most images per call (default: the train block's batch);\n"
          "                     training keeps the train block's batch, in chunks of N\n"
          "  --chunk N          inference takes N images through every layer at a time\n"
          "                     (default: as many as stay in the core's cache)\n"
          "  --prefix P         -c: name the functions P_infer ... and constants P_BATCH ...\n"
          "  -O0 .. -O3         optimization level (default -O2)\n"
          "  --target TRIPLE    cross-compile for TRIPLE (e.g. aarch64-linux-gnu)\n"
          "  -mcpu=CPU          the CPU to tune and select features for (default: this host's)\n"
          "  --list-ops         every op with its parameters and what it computes\n"
          "  --version, --help\n", out);
}

static void report_parse_error(void *ctx, Loc loc, const char *msg)
{
    diag_error(ctx, loc, "%s", msg);
}

static bool parse_should_stop_cb(void *ctx)
{
    return diag_too_many(ctx);
}

/* The output a mode flag asks for; MODE_EXE for any other word. */
static Mode mode_of(const char *flag)
{
    static const struct {
        const char *flag;
        Mode mode;
    } modes[] = {{"-c", MODE_OBJECT}, {"-S", MODE_ASM}, {"--emit-llvm", MODE_LLVM},
                 {"--emit-ir", MODE_IR}, {"--shapes", MODE_SHAPES}, {"--emit-tensors", MODE_TENSORS}};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
        if (!strcmp(flag, modes[i].flag))
            return modes[i].mode;
    return MODE_EXE;
}

/* Parses argv into opts; returns false (after a message) on a bad command line. */
static bool parse_args(int argc, char **argv, Options *o)
{
    *o = (Options){.opt_level = 2};
    const char *mode_flag = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-o") || !strcmp(a, "--weights") || !strcmp(a, "--batch") || !strcmp(a, "--chunk") ||
            !strcmp(a, "--target") || !strcmp(a, "--prefix")) {
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
            else if (!strcmp(a, "--prefix"))
                o->prefix = next;
            else {
                char *end;
                errno = 0;
                long v = strtol(next, &end, 10);
                if (*end || errno || v < 1 || v > 1 << 20) {
                    fprintf(stderr, "cnnc: error: %s needs a number from 1 to 1048576, "
                            "not '%s'\n", a, next);
                    return false;
                }
                *(!strcmp(a, "--batch") ? &o->batch : &o->chunk) = v;
            }
        } else if (!strncmp(a, "-mcpu=", 6)) {
            o->cpu = a + 6;
        } else if (!strncmp(a, "--target=", 9)) {
            o->target = a + 9;
        } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
            o->opt_level = a[2] - '0';
        } else if (mode_of(a) != MODE_EXE) {
            if (mode_flag && strcmp(mode_flag, a) != 0) {
                fprintf(stderr, "cnnc: error: '%s' and '%s' ask for different outputs; give one\n",
                        mode_flag, a);
                return false;
            }
            mode_flag = a;
            o->mode = mode_of(a);
        } else if (!strcmp(a, "--inference-only")) {
            o->inference_only = true;
        } else if (!strcmp(a, "--no-winograd")) {
            o->no_winograd = true;
        } else if (!strcmp(a, "--mpi")) {
            o->mpi = true;
        } else if (!strcmp(a, "--version")) {
            printf("cnnc %s (LLVM %s)\n", CNNC_VERSION, emit_llvm_version());
            exit(0);
        } else if (!strcmp(a, "--list-ops")) {
            optable_list_ops(stdout);
            exit(fflush(stdout) != 0);
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
    if (o->prefix) {
        bool ident = (isalpha((unsigned char)o->prefix[0]) || o->prefix[0] == '_') &&
                     strlen(o->prefix) < 64;
        for (const char *p = o->prefix; ident && *p; p++)
            ident = isalnum((unsigned char)*p) || *p == '_';
        if (!ident) {
            fprintf(stderr, "cnnc: error: --prefix needs a C identifier (letters, digits, _; "
                    "at most 63), not '%s'\n", o->prefix);
            return false;
        }
        if (o->mode != MODE_OBJECT && o->mode != MODE_ASM && o->mode != MODE_LLVM) {
            fprintf(stderr, "cnnc: error: --prefix names an object's functions; it needs -c "
                    "(or -S, --emit-llvm)\n");
            return false;
        }
    }
    if (o->cpu && !strcmp(o->cpu, "help"))
        exit(target_list_cpus(stdout, o->target) ? 0 : 1);
    if (!o->input) {
        fprintf(stderr, "cnnc: error: no input file\n");
        usage(stderr);
        return false;
    }
    return true;
}

/* clang's summary: "2 errors generated.", "1 warning and 1 error generated." */
static void print_summary(const Diag *d)
{
    if (!d->errors && !d->warnings)
        return;
    if (d->warnings)
        fprintf(stderr, "%d warning%s%s", d->warnings, d->warnings == 1 ? "" : "s",
                d->errors ? " and " : "");
    if (d->errors)
        fprintf(stderr, "%d error%s", d->errors, d->errors == 1 ? "" : "s");
    fprintf(stderr, " generated.\n");
}

/* A NUL byte means a binary file: one error at its place, as for any other. */
static bool check_text(Diag *d, const char *path, const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    if (!nul)
        return true;
    Loc loc = {.file = path, .line = 1, .col = 1, .len = 1};
    for (const char *p = text; p < nul; p++) {
        if (*p == '\n')
            loc.line++, loc.col = 1;
        else
            loc.col++;
    }
    diag_error(d, loc, "a NUL byte (offset %zu): this is not a text file", (size_t)(nul - text));
    return false;
}

/* --shapes, --emit-ir, --emit-tensors: text to stdout, or to -o FILE written
 * as any output. */
static bool write_text(Graph *g, const Options *o, Diag *d)
{
    bool to_file = o->output && strcmp(o->output, "-") != 0;
    CnnOut out;
    char err[8192];
    FILE *f = stdout;
    if (to_file) {
        if (cnn_same_file(o->output, o->input) || !strcmp(o->output, o->input)) {
            diag_fatal(d, "the output '%s' is also an input", o->output);
            return false;
        }
        f = cnn_out_begin(&out, o->output, err, sizeof err) ? cnn_out_fopen(&out, "w", err, sizeof err) : NULL;
        if (!f) {
            diag_fatal(d, "%s", err);
            cnn_out_abort(&out);
            return false;
        }
    }
    if (o->mode == MODE_SHAPES)
        shape_print_table(f, g);
    else if (o->mode == MODE_TENSORS)
        emit_tensors(f, g);
    else
        emit_ir(f, g, o);
    if (!to_file)
        return fflush(f) == 0;
    bool ok = cnn_out_close(&out, f, err, sizeof err) && cnn_out_commit(&out, err, sizeof err);
    if (!ok)
        diag_fatal(d, "%s", err);
    cnn_out_abort(&out);
    return ok;
}

int main(int argc, char **argv)
{
    Options opts;
    if (!parse_args(argc, argv, &opts))
        return 1;
    const char *shown = strcmp(opts.input, "-") ? opts.input : "<stdin>";
    size_t len;
    char err[8192];
    char *text = (char *)cnn_read_all(opts.input, &len, MAX_FILE_BYTES, err, sizeof err);
    if (!text) {
        if (len > MAX_FILE_BYTES)
            fprintf(stderr, "cnnc: error: '%s' is larger than %d MiB; is it a .cnn file?\n",
                    shown, MAX_FILE_BYTES >> 20);
        else
            fprintf(stderr, "cnnc: error: %s\n", err);
        return 1;
    }
    /* a UTF-8 byte order mark is not part of the text */
    char *src = text;
    if (len >= 3 && !memcmp(src, "\xEF\xBB\xBF", 3))
        src += 3, len -= 3;

    Diag diag;
    diag_init(&diag, stderr, shown, src, len);
    Arena arena = {0};
    ParseOpts popts = {report_parse_error, parse_should_stop_cb, &diag, MAX_STMTS};
    bool ok = check_text(&diag, shown, src, len);

    /* parse */
    Block *blocks = ok ? cnn_parse(shown, src, len, &arena, &popts) : NULL;
    bool syntax_ok = diag.errors == 0;

    /* IR, then shapes: after a syntax error a statement may be missing, and
     * shapes checked without it would only mislead. */
    Graph g = {0};
    if (ok)
        ok = ir_build(&g, blocks, &arena, &diag);
    if (syntax_ok && g.n > 0 && !diag_too_many(&diag))
        ok = shape_check(&g) && ok;
    ok = ok && diag.errors == 0;
    if (ok && g.n >= 2) {
        autodiff_build(&g);
        fuse_activations(&g);
        fold_affines(&g);
    }
    diag_flush(&diag);

    if (ok && (opts.mode == MODE_SHAPES || opts.mode == MODE_IR || opts.mode == MODE_TENSORS))
        ok = write_text(&g, &opts, &diag);
    else if (ok) {
        /* the back end: emit.c, lower.c, train.c and plan.c */
        Backend be;
        ok = backend_check(&be, &g, &opts, &diag);
        if (ok) {
            backend_plan(&be);
            ok = backend_target(&be) && backend_weights(&be);
        }
        if (ok) {
            backend_lower(&be);
            backend_optimize(&be);
            ok = backend_write(&be);
        }
        backend_free(&be);
    }

    diag_finish(&diag);
    if (diag_too_many(&diag))
        fprintf(stderr, "%s: fatal error: too many errors emitted, stopping now\n", shown);
    print_summary(&diag);
    arena_free(&arena);
    free(text);
    return ok ? 0 : 1;
}

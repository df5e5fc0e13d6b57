/*
 * header.c: the C header that goes with `cnnc -c`'s object.
 *
 * Self-contained C99: the sizes as constants, the functions' prototypes, and
 * what the caller owes them (memory, alignment, the batch limit).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

/* The header's path: the object's with .h for its extension. */
void header_path(const char *obj_path, char *path, size_t size)
{
    snprintf(path, size, "%s", obj_path);
    char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        *dot = '\0';
    strncat(path, ".h", size - strlen(path) - 1);
}

bool header_write(FILE *f, const Graph *g, const Options *o, const char *lname, const Plan *plan)
{
    char up[256];
    snprintf(up, sizeof up, "%s", lname);
    for (char *p = up; *p; p++)
        *p = (char)toupper((unsigned char)*p);

    const Shape *in = &g->nodes[0].out;
    char shape[64];
    fprintf(f, "/* %s.h: the model '%s', compiled by cnnc %s from %s. */\n", lname, g->name,
            CNNC_VERSION, o->input);
    fprintf(f, "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n", up, up);
    fprintf(f, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    fprintf(f, "#define %s_BATCH          %lld    /* most images per call */\n", up, (long long)plan->batch);
    fprintf(f, "#define %s_INPUT_HEIGHT   %lld\n", up, (long long)in->d[0]);
    fprintf(f, "#define %s_INPUT_WIDTH    %lld\n", up, (long long)in->d[1]);
    fprintf(f, "#define %s_INPUT_CHANNELS %lld\n", up, (long long)in->d[2]);
    fprintf(f, "#define %s_INPUT_SIZE     %lld    /* floats per image, %s, channels last */\n", up,
            (long long)shape_elems(*in), shape_str(*in, shape, sizeof shape));
    fprintf(f, "#define %s_OUTPUT_SIZE    %lld    /* floats per image%s */\n", up,
            (long long)shape_elems(g->nodes[g->n - 1].out),
            op_has(g->nodes[g->n - 1].op, OPF_PROBS) ? ", after softmax" : "");
    fprintf(f, "#define %s_PARAMS_SIZE    %lld    /* floats: every trainable tensor, in .cnnw order and layouts */\n",
            up, (long long)g->params_size);
    fprintf(f, "#define %s_WORKSPACE_SIZE %lld    /* bytes of scratch for one call of up to %s_BATCH images */\n\n",
            up, (long long)plan->bytes, up);
    bool training = !o->inference_only && !o->weights && g->n >= 2;
    if (training)
        fprintf(f, "#define %s_OPT_STATE_SIZE %lld    /* floats of optimizer state (momentum, Adam moments, ...) */\n\n",
                up, (long long)train_opt_state_size(g));
    fprintf(f, "/* The trainable tensors, at these float offsets into params:\n");
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = g->params[i];
        if (p->fixed)
            continue;
        fprintf(f, " *   %-20s at %-10lld [", p->name, (long long)p->offset);
        for (int r = 0; r < p->rank; r++)
            fprintf(f, "%s%lld", r ? "][" : "", (long long)p->dims[r]);
        fprintf(f, "]\n");
    }
    fprintf(f, " */\n\n");
    int nstate = 0;
    for (int i = 0; i < g->nparams; i++)
        nstate += g->params[i]->state;
    if (nstate) {
        fprintf(f, "/* The running statistics among them: in params and the weights file,\n"
                   " * updated by train_step, never trained. {offset, floats} each. */\n");
        fprintf(f, "#define %s_STATE_TENSORS  %d\n#define %s_STATE_RANGES   {", up, nstate, up);
        const char *sep = "";
        for (int i = 0; i < g->nparams; i++)
            if (g->params[i]->state) {
                fprintf(f, "%s{%lld, %lld}", sep, (long long)g->params[i]->offset, (long long)g->params[i]->size);
                sep = ", ";
            }
        fprintf(f, "}\n\n");
    }
    fprintf(f, "/* Fills params (%s_PARAMS_SIZE floats) by the model's init rules. */\n", up);
    fprintf(f, "void %s_init_params(float *params, uint64_t seed);\n\n", lname);
    fprintf(f, "/* n images (1 <= n <= %s_BATCH) of input, %s_INPUT_SIZE floats each, to\n"
               " * output, %s_OUTPUT_SIZE floats each. workspace: %s_WORKSPACE_SIZE bytes,\n"
               " * aligned to 64. No global state: threads may call it at once with\n"
               " * separate workspaces.%s */\n", up, up, up, up,
            o->weights ? " The weights are built in: params may be NULL." : "");
    fprintf(f, "void %s_infer(const float *params, const float *input, float *output,\n"
               "              int n, void *workspace);\n\n", lname);
    fprintf(f, "/* %s_infer in two halves, for many calls with the same weights:\n"
               " * %s_prepare packs params into workspace, and each %s_infer_prepared\n"
               " * after it reads that pack instead of packing again. Prepare again after\n"
               " * params change, or after the workspace served another call. */\n", lname, lname, lname);
    fprintf(f, "void %s_prepare(const float *params, void *workspace);\n", lname);
    fprintf(f, "void %s_infer_prepared(const float *params, const float *input, float *output,\n"
               "                       int n, void *workspace);\n\n", lname);
    if (training)
        fprintf(f, "/* One step of training on n labelled images (labels in [0, %s_OUTPUT_SIZE)):\n"
                   " * forward, loss, backward and an update of params by the train block's\n"
                   " * optimizer. opt_state (%s_OPT_STATE_SIZE floats) starts zeroed and\n"
                   " * belongs to the caller. Returns the batch's mean loss. */\n"
                   "float %s_train_step(float *params, float *opt_state, const float *input,\n"
                   "                    const int32_t *labels, int n, void *workspace);\n\n",
                up, up, lname);
    fprintf(f, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
    return !ferror(f);
}

/*
 * cnnrt.h: the runtime library's interface, and the descriptor that cnnc
 * emits (as the constant `cnn_model`) into every executable it builds.
 *
 * The runtime knows nothing of the compiler: it sees a model only through
 * CnnModel. State lives in the structs passed to each call; nothing global.
 */
#ifndef CNNRT_H
#define CNNRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* One trainable tensor: its .cnnw name, PyTorch shape and place in params. */
typedef struct CnnTensor {
    const char *name;
    int32_t rank;
    int32_t dims[4];
    int64_t offset, size;           /* in floats */
    const float *data;              /* a fixed tensor's values (part of the model), else NULL */
} CnnTensor;

/* One statement of the model, for pictures of what it computes. */
typedef struct CnnLayer {
    const char *name, *op;
    int32_t rank, dims[3];          /* its output: H, W, C (rank 3) or N (rank 1) */
    int64_t act_offset;             /* bytes into the workspace after `activations`, or -1 */
    int32_t weight, fixed_weight;   /* its weight's index in tensors / fixed, or -1 */
} CnnLayer;

/* The hyperparameters a train step reads, which the program's options
 * override (compiler/train.c reads them at these places). */
typedef struct CnnHyper {
    float lr, momentum, weight_decay, eps, beta1, beta2;
    uint64_t seed;                  /* dropout's masks: every bit counts */
    uint32_t float_targets;         /* mse: `labels` points at N x outputs floats */
    uint32_t reserved;
} CnnHyper;

/* The ABI between generated code and the runtime: keep in step with
 * compiler/emit.c (emit_descriptor). */
enum { CNN_LOSS_CROSS_ENTROPY, CNN_LOSS_MSE };   /* CnnModel.loss: settings.def's order */

typedef struct CnnModel {
    const char *name;
    int32_t batch;                  /* most images per call of the generated code */
    int32_t train_batch;            /* the train block's batch: train's default */
    int32_t height, width, channels, outputs, ntensors;
    int64_t params_size, workspace_size;
    uint64_t shape_hash;
    const CnnTensor *tensors;
    const float *baked;             /* weights built in with --weights, or NULL */
    void (*init_params)(float *params, uint64_t seed);
    void (*infer)(const float *params, const float *input, float *output, int n, void *ws);
    /* NULL when built with --inference-only or --weights */
    float (*train_step)(float *params, float *opt_state, const float *input,
                        const void *labels, int n, void *ws, const CnnHyper *hp);
    /* train_step in two halves, for a batch split across threads: grad leaves
     * the gradients of its n images' mean loss at ws + dparams_offset */
    float (*grad)(const float *params, const float *opt_state, const float *input,
                  const int32_t *labels, int n, void *ws, const CnnHyper *hp, int first);
    void (*apply)(float *params, float *opt_state, const float *dparams, const CnnHyper *hp);
    int64_t opt_state_size;         /* floats */
    int64_t dparams_offset;         /* bytes into a workspace */
    CnnHyper hp;                    /* the train block's */
    int32_t epochs, loss;
    uint64_t seed;
    int32_t nlayers, nfixed;
    const CnnLayer *layers;
    const CnnTensor *fixed;         /* the fixed tensors, with their values */
    /* the forward pass of one image, keeping every layer's output at its
     * act_offset (NULL in an --inference-only build) */
    void (*activations)(const float *params, const float *input, void *ws);
    /* the train block's learning-rate schedule (CNN_SCHED_*), its epochs
     * between steps, warmup epochs, multistep's milestones; gamma, min_lr */
    int32_t schedule, sched_every, warmup, nmilestones;
    const int32_t *milestones;
    float gamma, min_lr;
    int32_t augment_crop, augment_flip;     /* the train block's augment */
    float validate;                 /* the train block's: images held out, or a fraction */
} CnnModel;

enum { CNN_SCHED_NONE, CNN_SCHED_STEP, CNN_SCHED_MULTISTEP, CNN_SCHED_COSINE };

/* ---- weights.c: .cnnw files ---- */

enum { CNNW_VERSION = 1 };

uint64_t cnnw_shape_hash(const CnnTensor *t, int n);
/* Reads path into params (params_size floats), checking every tensor against
 * m->tensors; false with a one-line message in err. */
bool cnnw_load(const char *path, const CnnModel *m, float *params, char *err, size_t errsize);
/* The same from bytes in memory; path only names them in messages. */
bool cnnw_parse(const unsigned char *buf, size_t len, const char *path, const CnnModel *m,
                float *params, char *err, size_t errsize);
/* Writes atomically: a temporary file, fsync, rename. */
bool cnnw_save(const char *path, const CnnModel *m, const float *params, char *err, size_t errsize);

/* ---- files.c: whole inputs, and outputs that replace only what is ours ---- */

/* The whole of a file, a pipe or (path "-") standard input, up to max bytes;
 * NULL with a message on failure, *len > max when the input was longer. */
unsigned char *cnn_read_all(const char *path, size_t *len, size_t max, char *err, size_t errsize);

/* An output being written. Its bytes go to `tmp` (by path or through
 * cnn_out_fopen) until cnn_out_commit, which renames tmp over the file `path`
 * names (symbolic links followed, the link kept) or, when that file exists and
 * is not a regular file (a device, a FIFO), copies them into it in place.
 * cnn_out_abort, or a failed commit, leaves nothing behind. */
typedef struct CnnOut {
    char path[4096];                /* as the user named it, for messages */
    char target[4096];              /* the file it names, symbolic links followed */
    char tmp[4096 + 32];            /* where the bytes go until the commit */
    bool in_place;
} CnnOut;

bool cnn_out_begin(CnnOut *o, const char *path, char *err, size_t errsize);
FILE *cnn_out_fopen(CnnOut *o, const char *mode, char *err, size_t errsize);
/* fclose, with write errors (a full disk) as a message */
bool cnn_out_close(CnnOut *o, FILE *f, char *err, size_t errsize);
bool cnn_out_commit(CnnOut *o, char *err, size_t errsize);
void cnn_out_abort(CnnOut *o);
/* The whole of an output at once, through the above; path "-" is standard output. */
bool cnn_write_all(const char *path, const void *data, size_t len, char *errbuf, size_t errsize);
/* Whether two paths name one regular file (an output that is also an input). */
bool cnn_same_file(const char *a, const char *b);

/* ---- data.c: IDX, PGM/PPM and raw float files ---- */

typedef struct CnnImages {
    int64_t count;
    int32_t height, width, channels;
    float *pixels;                  /* count x H x W x C, scaled to [0, 1] */
} CnnImages;

bool cnn_read_idx_images(const char *path, CnnImages *out, char *err, size_t errsize);
bool cnn_read_idx_labels(const char *path, int64_t count, int32_t classes, int32_t **labels,
                         char *err, size_t errsize);
bool cnn_read_pnm(const char *path, int32_t h, int32_t w, int32_t c, float *out,
                  char *err, size_t errsize);
/* A PNG, JPEG, PGM or PPM image (by its suffix) as h x w x c floats in [0, 1],
 * grey and colour converted; another size is refused, or with resize scaled
 * (shorter side, bilinear) and centre-cropped. */
bool cnn_read_image(const char *path, int32_t h, int32_t w, int32_t c, bool resize, float *out,
                    char *errbuf, size_t errsize);
/* CIFAR-10's binary batches, one after the other: 32x32x3 images, labels
 * below classes. */
bool cnn_read_cifar(const char *const *paths, int npaths, int32_t classes, CnnImages *out,
                    int32_t **labels, char *err, size_t errsize);

#endif

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

/* The structs of the ABI come from cnnabi.def, which compiler/emit.c reads too;
 * an array's kind gives its length. */
#define CNN_LEN_PTR
#define CNN_LEN_I32
#define CNN_LEN_I64
#define CNN_LEN_F32
#define CNN_LEN_HYPER
#define CNN_LEN_I32X3 [3]
#define CNN_LEN_I32X4 [4]
#define CNN_FIELD(kind, ctype, name) ctype name CNN_LEN_##kind;

/* One trainable tensor: its .cnnw name, PyTorch shape and place in params. */
typedef struct CnnTensor {
#define TENSOR_FIELD CNN_FIELD
#include "cnnabi.def"
} CnnTensor;

/* What a layer can show (CnnLayer.flags): its kernels, its output maps. */
enum { CNN_LAYER_KERNELS = 1, CNN_LAYER_MAPS = 2 };

/* One statement of the model, for pictures of what it computes. */
typedef struct CnnLayer {
#define LAYER_FIELD CNN_FIELD
#include "cnnabi.def"
} CnnLayer;

/* The hyperparameters a train step reads, which the program's options
 * override (compiler/train.c reads them at these places). */
typedef struct CnnHyper {
    float lr, momentum, weight_decay, eps, beta1, beta2;
    uint64_t seed;                  /* dropout's masks: every bit counts */
    uint32_t float_targets;         /* mse: `labels` points at N x outputs floats */
    uint32_t reserved;
} CnnHyper;

enum { CNN_LOSS_CROSS_ENTROPY, CNN_LOSS_MSE };   /* CnnModel.loss: settings.def's order */

/* What the shares of one train step (threads; processes) share. sum replaces
 * count floats at data with their sum over every share, added in share
 * order, so that all of them get the same numbers; every share calls it at
 * the same points (the batch norms' statistics). images is the step's whole
 * batch. The generated grad reads these fields at their places (compiler/cnnc.h's
 * SYNC_*); the runtime's struct may carry more after them. */
typedef struct CnnSync CnnSync;
struct CnnSync {
    void (*sum)(const CnnSync *sync, float *data, int64_t count);
    int64_t images;
    /* when not NULL: called during the backward pass each time more of the
     * gradients are final, every one at [from, params_size) of dparams
     * (from falls to 0 by the end), so that their exchange can start */
    void (*ready)(const CnnSync *sync, int64_t from);
};

/* The generated functions the descriptor points at. */
typedef void CnnInitFn(float *params, uint64_t seed);
typedef void CnnInferFn(const float *params, const float *input, float *output, int n, void *ws);
typedef void CnnPrepareFn(const float *params, void *ws);
typedef float CnnStepFn(float *params, float *opt_state, const float *input, const void *labels, int n,
                        void *ws, const CnnHyper *hp);
typedef float CnnGradFn(const float *params, const float *opt_state, const float *input,
                        const int32_t *labels, int n, void *ws, const CnnHyper *hp, int first,
                        const CnnSync *sync);
typedef void CnnApplyFn(float *params, float *opt_state, const float *dparams, const CnnHyper *hp);
typedef void CnnActivationsFn(const float *params, const float *input, void *ws);

/* The descriptor `cnn_model`: the whole ABI (cnnabi.def). */
typedef struct CnnModel {
#define MODEL_FIELD CNN_FIELD
#include "cnnabi.def"
} CnnModel;
#undef CNN_FIELD

enum { CNN_SCHED_NONE, CNN_SCHED_STEP, CNN_SCHED_MULTISTEP, CNN_SCHED_COSINE };

/* ---- weights.c: .cnnw files ---- */

enum { CNNW_VERSION = 2, CNNW_STATE_VERSION = 1 };

/* What a full checkpoint holds beside the weights: where the run is and all
 * it needs to go on as if it never stopped (the "TRAN" section). */
typedef struct CnnTrainState {
    uint64_t seed;                  /* shuffling, augmentation, dropout */
    int64_t train_images;           /* the training set it ran over */
    int32_t batch, epochs, shuffle;
    double base_lr;
    int32_t epoch;                  /* the epoch in progress or next, from 1 */
    int64_t epoch_steps, seen;      /* its batches and images done */
    int64_t step;                   /* the run's batches done */
    double loss_sum, first_loss;    /* the epoch's losses so far; the run's first (-1: none) */
    double best;                    /* the best validation figure, at best_epoch (0: none) */
    int32_t best_epoch;
    int64_t opt_state_size;         /* floats at opt_state: momentum, moments, step counter */
    float *opt_state;
} CnnTrainState;

/* The optional parts of a .cnnw file. To load: state NULL (ignored) or with
 * opt_state pointing at m->opt_state_size floats; has_state says whether the
 * file had one. classes: nclasses names (malloc'd; cnnw_extra_free). */
typedef struct CnnwExtra {
    CnnTrainState *state;
    bool has_state;
    char **classes;
    int nclasses;
} CnnwExtra;

void cnnw_extra_free(CnnwExtra *x);

uint64_t cnnw_shape_hash(const CnnTensor *t, int n);
/* Reads path into params (params_size floats), checking every tensor against
 * m->tensors; false with a one-line message in err. */
bool cnnw_load(const char *path, const CnnModel *m, float *params, char *err, size_t errsize);
/* The same from bytes in memory; path only names them in messages. */
bool cnnw_parse(const unsigned char *buf, size_t len, const char *path, const CnnModel *m,
                float *params, char *err, size_t errsize);
/* Writes atomically: a temporary file, fsync, rename. */
bool cnnw_save(const char *path, const CnnModel *m, const float *params, char *err, size_t errsize);
/* The same with the optional parts: x NULL, or its state (NULL: none) and classes */
bool cnnw_save_ex(const char *path, const CnnModel *m, const float *params, const CnnwExtra *x,
                  char *err, size_t errsize);
bool cnnw_load_ex(const char *path, const CnnModel *m, float *params, CnnwExtra *x, char *err,
                  size_t errsize);
bool cnnw_parse_ex(const unsigned char *buf, size_t len, const char *path, const CnnModel *m,
                   float *params, CnnwExtra *x, char *err, size_t errsize);

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
/* cnn_out_begin and cnn_out_fopen at once; NULL (nothing left behind) on failure */
FILE *cnn_out_open(CnnOut *o, const char *path, const char *mode, char *err, size_t errsize);
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

/* runtime.h: what the runtime's files share among themselves. */
#ifndef CNN_RUNTIME_H
#define CNN_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include "cnnrt.h"

extern const CnnModel cnn_model;

/* The compiled program's command line, parsed. */
typedef struct Args {
    const char *cmd, *weights, *input, *output, *data, *images, *labels;
    const char *test_images, *test_labels, *save, *log, *layer;
    const char *targets, *test_targets;  /* mse: float targets instead of labels */
    const char **files;             /* the words that are not options, in order */
    int nfiles, top, threads, epochs, batch, steps;
    int progress;                   /* seconds between progress lines off a terminal */
    int mpi_timeout;                /* under mpirun: seconds a collective may wait */
    int mpi_bucket;                 /* under mpirun: KiB of gradient an exchange during backward, 0: after it */
    double lr;
    uint64_t seed;
    bool seed_given, no_shuffle, verbose, resize;
    const char *save_best;          /* train: the weights of the best validation figure */
    const char *resume;             /* train: the checkpoint to go on from */
    const char *classes;            /* --classes FILE: the class names, one a line */
    bool confusion;                 /* eval: the confusion matrix */
} Args;

int fail(const char *msg);

/* dist_none.c or dist_mpi.c (cnnc --mpi): the processes of one run, as
 * mpirun starts them; without MPI one process, rank 0 of 1. dist_start
 * before the command runs (0, or the exit code of a failed start),
 * dist_end after it. The collectives are those of every process, called
 * by all of them at the same points, and give all the same numbers. */
int dist_start(int *argc, char ***argv);
void dist_end(void);
int dist_rank(void);
int dist_size(void);
void dist_sum(float *data, int64_t n);
void dist_sum_f64(double *data, int n);
/* dist_sum in two halves: started now, the sum at data once
 * dist_sum_finish has returned; the starts in the same order everywhere.
 * dist_progress moves the started ones on (MPI progresses inside calls). */
void dist_sum_start(float *data, int64_t n);
void dist_sum_finish(void);
void dist_progress(void);
/* Seconds a collective may wait for the other processes before the run
 * stops with a message naming it (a process that hangs, a link that is
 * down); 0: for ever. */
void dist_set_timeout(int seconds);
/* this process's images of a batch of n: [lo, hi) */
static inline void dist_part(int n, int *lo, int *hi)
{
    *lo = (int)((int64_t)n * dist_rank() / dist_size());
    *hi = (int)((int64_t)n * (dist_rank() + 1) / dist_size());
}
/* whether ok on every process */
bool dist_all(bool ok);
/* whether every process holds this value of what; if not, err names the
 * processes whose value differs from rank 0's */
bool dist_agree(uint64_t value, const char *what, char *err, size_t es);
/* true, after a message, when out names one of the inputs (a NULL-ended list) */
bool output_is_input(const char *out, const char *const *inputs);
void *ws_alloc(const CnnModel *m);
float *load_params(const CnnModel *m, const Args *a, char *err, size_t es);
/* The same, and the class names: --classes FILE's, else the weights file's
 * (none: names->nclasses 0) */
float *load_params_named(const CnnModel *m, const Args *a, CnnwExtra *names, char *err, size_t es);
/* --classes FILE: one name a line, at most the model's outputs */
bool read_class_names(const CnnModel *m, const char *path, CnnwExtra *names, char *err, size_t es);
/* Inference in batches on a pool, each thread with a workspace of its own,
 * kept from call to call, which holds the weights' pack (the model's
 * prepare) from a thread's first batch on: runs with the same params must
 * not change what they point to. */
typedef struct Inferer Inferer;
Inferer *infer_new(const CnnModel *m, int threads);
void infer_run(Inferer *e, const float *params, const float *input, float *output, int64_t count);
void infer_free(Inferer *e);
void infer_all(const CnnModel *m, const float *params, const float *input, float *output,
               int64_t count, int threads);
bool data_paths(const Args *a, const char *kind, char *img, char *lbl, size_t size);
/* A data set: images, and their labels or (mse) float targets. */
typedef struct Dataset {
    CnnImages im;
    int32_t *labels;                /* count of them, or NULL */
    float *targets;                 /* count x outputs, or NULL */
    CnnwExtra names;                /* an image folder's class names (nclasses 0 otherwise) */
} Dataset;

/* Reads an image file and its labels (or targets, when targets is not NULL),
 * checked against the model. */
bool load_set(const CnnModel *m, const char *img, const char *lbl, const char *targets, Dataset *d,
              char *err, size_t es);
void set_free(Dataset *d);
/* images.c: ImageFolder trees, DIR/train/CLASS/FILE and DIR/SPLIT/CLASS/FILE */
bool image_folder(const char *dir, const char *split);
bool load_folder(const CnnModel *m, const char *dir, const char *split, bool resize, int threads,
                 Dataset *d, char *err, size_t es);
/* CIFAR-10 in --data DIR: how many of its batches are there, and loading them */
int cifar_files(const Args *a, bool test, char names[5][4096]);
bool load_cifar(const CnnModel *m, const Args *a, char names[5][4096], int n, Dataset *d, char *err,
                size_t es);
/* confusion: NULL, or outputs x outputs counts (row: the label, column: the class given) */
int64_t evaluate(const CnnModel *m, const float *params, const Dataset *d, int threads, double *loss,
                 int64_t *confusion);
int cmd_train(const CnnModel *m, const Args *a);
int cmd_bench(const CnnModel *m, const Args *a);

/* draw.c: an RGB canvas and PNG output */
typedef struct Canvas {
    int w, h;
    unsigned char *px;              /* h x w x RGB */
} Canvas;

Canvas *canvas_new(int w, int h, uint32_t background);
void canvas_free(Canvas *c);
void canvas_set(Canvas *c, int x, int y, uint32_t rgb);
void canvas_rect(Canvas *c, int x, int y, int w, int h, uint32_t rgb);
void canvas_line(Canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb, int thick);
int canvas_text(Canvas *c, int x, int y, const char *s, uint32_t rgb);
int canvas_text_width(const char *s);
int canvas_text_height(void);
void canvas_tile(Canvas *c, int x, int y, const float *v, int h, int w, int chans, int scale);
bool canvas_write_png(const Canvas *c, const char *path, char *err, size_t es);

int cmd_show(const CnnModel *m, const Args *a);
/* curve.c: a --log file's learning curve as PNG or SVG, by out's suffix */
bool show_curve(const char *log, const char *out, char *err, size_t errsize);

typedef struct Pool Pool;
Pool *rt_pool_new(int threads);
int rt_pool_threads(const Pool *p);
void rt_pool_run(Pool *p, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread), void *ctx);
void rt_pool_free(Pool *p);
/* augment.c: a random crop (after zero padding) and flip of one H x W x C
 * image, drawn from (seed, epoch, index); augment_draw gives the draw alone */
void augment_draw(uint64_t seed, int epoch, int64_t index, int pad, bool flip, int *i, int *j,
                  bool *mirror);
/* feed.c: the training batches, made ahead of the step on a thread of their
 * own, FEED_SLOTS at most; from batch `first` of `epoch` on, in the order
 * the step takes them (a last batch below min_images left out) */
typedef struct Feeder Feeder;
void shuffle_order(int64_t *order, int64_t n, uint64_t seed, int epoch);
Feeder *feeder_new(const CnnModel *m, const Dataset *d, int batch, uint64_t seed, bool shuffled, int epoch,
                   int64_t first, int epochs);
/* the batch of n images from `first` of `epoch` (waiting for it), its labels
 * or targets at *labels; valid till feeder_done */
const float *feeder_take(Feeder *f, int epoch, int64_t first, int n, const void **labels);
void feeder_done(Feeder *f);
void feeder_free(Feeder *f);
void augment_image(const float *src, float *dst, int h, int w, int c, int pad, bool flip,
                   uint64_t seed, int epoch, int64_t index);

/* step.c: a training step of any number of images, split across threads */
typedef struct Stepper Stepper;
Stepper *stepper_new(const CnnModel *m, int threads);
void stepper_free(Stepper *s);
/* The most images one step may take on that many threads: a model whose
 * shares exchange statistics (CnnModel.syncs) runs at most one a thread. */
int stepper_most_images(const CnnModel *m, int threads);
/* The step's reduce hook: called with the step's summed gradient (n floats,
 * the layout of params) and its mean loss before the optimizer applies them;
 * it may replace both (with, say, their mean over processes). */
typedef void StepReduceFn(void *ctx, float *dparams, int64_t n, float *loss);
void stepper_set_reduce(Stepper *s, StepReduceFn *fn, void *ctx);
/* The early half of the reduce hook: when a step runs as one share (one
 * thread's images), fn gets the gradient as the backward pass finishes it,
 * [from, end) of dparams each time, from the end of params down to 0, so
 * that its exchange overlaps the rest of the pass; the reduce hook then
 * finishes it. A step of more shares calls the reduce hook alone. */
typedef void StepBucketFn(void *ctx, const float *dparams, int64_t from, int64_t end);
void stepper_set_buckets(Stepper *s, StepBucketFn *fn, void *ctx);
/* whether the last step called the bucket hook (down to 0) */
bool stepper_bucketed(const Stepper *s);
/* The next steps' images are [offset, offset + n) of a batch of total
 * images across processes; total 0: the step's images are the batch. */
void stepper_set_span(Stepper *s, int64_t offset, int total);
float stepper_step(Stepper *s, float *params, float *opt, const float *x, const void *y, int n,
                   const CnnHyper *hp);
void rt_parallel(int threads, int64_t tasks, void (*fn)(void *ctx, int64_t task, int thread),
                 void *ctx);

#endif

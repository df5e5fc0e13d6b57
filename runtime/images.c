/*
 * images.c: torchvision ImageFolder trees, DIR/train/CLASS/FILE and
 * DIR/test/CLASS/FILE, of PNG (libpng), JPEG (libjpeg-turbo), PGM and PPM
 * images; the classes are the sorted folder names of DIR/train.
 *
 * Every image is decoded up front, on the thread pool, to the model's input:
 * grey to colour by replicating, colour to grey by ITU-R 601 luma (PIL's
 * convert("L")), pixels scaled to [0, 1]. An image of another size is refused
 * with its path, unless --resize: its shorter side bilinearly to the input's,
 * then a centre crop (torchvision Resize + CenterCrop, without PIL's
 * antialiasing). A file that does not decode is one message naming it: the
 * libraries' errors are routed to it, never to their own exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include "runtime.h"

/* A decoded image: h x w x c (1 or 3) bytes. */
typedef struct Picture {
    int h, w, c;
    unsigned char *px;
} Picture;

/* Larger images are refused before they are decoded: a few header bytes can
 * claim 65535 x 65535. 2^25 pixels is 8192 x 4096, far beyond any CNN input. */
enum { MAX_PIXELS = 1 << 25 };

static bool too_large(const char *path, size_t w, size_t h, char *err, size_t es)
{
    if (w * h <= MAX_PIXELS)
        return false;
    snprintf(err, es, "%s: a %zux%zu image is too large (at most %d pixels)", path, w, h, MAX_PIXELS);
    return true;
}

static bool decode_png(const char *path, Picture *p, char *err, size_t es)
{
    png_image img = {.version = PNG_IMAGE_VERSION};
    if (!png_image_begin_read_from_file(&img, path)) {
        snprintf(err, es, "%s: not a readable PNG (%s)", path, img.message);
        return false;
    }
    if (too_large(path, img.width, img.height, err, es)) {
        png_image_free(&img);
        return false;
    }
    bool grey = !(img.format & PNG_FORMAT_FLAG_COLOR);
    img.format = grey ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    *p = (Picture){(int)img.height, (int)img.width, grey ? 1 : 3, malloc(PNG_IMAGE_SIZE(img))};
    if (!p->px || !png_image_finish_read(&img, NULL, p->px, 0, NULL)) {
        snprintf(err, es, "%s: a broken PNG (%s)", path, img.message);
        free(p->px);
        png_image_free(&img);
        return false;
    }
    return true;
}

typedef struct JpegErr {
    struct jpeg_error_mgr mgr;
    jmp_buf back;
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_fail(j_common_ptr cinfo)
{
    JpegErr *e = (JpegErr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->back, 1);
}

/* libjpeg's warnings (corrupt data it recovers from) are not printed */
static void jpeg_quiet(j_common_ptr cinfo)
{
    (void)cinfo;
}

static bool decode_jpeg(const char *path, Picture *p, char *err, size_t es)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, es, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    struct jpeg_decompress_struct cinfo;
    JpegErr e;
    cinfo.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_fail;
    e.mgr.output_message = jpeg_quiet;
    volatile Picture out = {0};
    if (setjmp(e.back)) {
        snprintf(err, es, "%s: a broken JPEG (%s)", path, e.msg);
        jpeg_destroy_decompress(&cinfo);
        free(out.px);
        fclose(f);
        return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    if (too_large(path, cinfo.image_width, cinfo.image_height, err, es)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return false;
    }
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    out.h = (int)cinfo.output_height, out.w = (int)cinfo.output_width, out.c = cinfo.output_components;
    out.px = malloc((size_t)out.h * (size_t)out.w * (size_t)out.c);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out.px + (size_t)cinfo.output_scanline * (size_t)out.w * (size_t)out.c;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    *p = (Picture){out.h, out.w, out.c, out.px};
    return true;
}

/* binary 8-bit PGM or PPM of any size */
static bool decode_pnm(const char *path, Picture *p, char *err, size_t es)
{
    size_t len;
    unsigned char *buf = cnn_read_all(path, &len, (size_t)1 << 28, err, es);
    if (!buf)
        return false;
    int w, h, maxval, n = 0;
    char kind = 0;
    if (sscanf((const char *)buf, "P%c %d %d %d%n", &kind, &w, &h, &maxval, &n) != 4 ||
        (kind != '5' && kind != '6') || w <= 0 || h <= 0 ||
        maxval < 1 || maxval > 255 || (size_t)n + 1 > len) {
        snprintf(err, es, "%s: not an 8-bit binary PGM or PPM image", path);
        free(buf);
        return false;
    }
    if (too_large(path, (size_t)w, (size_t)h, err, es)) {
        free(buf);
        return false;
    }
    int c = kind == '5' ? 1 : 3;
    size_t bytes = (size_t)w * (size_t)h * (size_t)c;
    if (len - (size_t)n - 1 < bytes) {
        snprintf(err, es, "%s: truncated (the pixels end early)", path);
        free(buf);
        return false;
    }
    *p = (Picture){h, w, c, malloc(bytes)};
    for (size_t i = 0; i < bytes; i++)
        p->px[i] = (unsigned char)(buf[(size_t)n + 1 + i] * 255 / maxval);
    free(buf);
    return true;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && !strcasecmp(name + n - s, suffix);
}

static bool is_image(const char *name)
{
    static const char *const kinds[] = {".png", ".jpg", ".jpeg", ".pgm", ".ppm"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (has_suffix(name, kinds[i]))
            return true;
    return false;
}

static bool decode(const char *path, Picture *p, char *err, size_t es)
{
    return has_suffix(path, ".png") ? decode_png(path, p, err, es)
         : has_suffix(path, ".pgm") || has_suffix(path, ".ppm") ? decode_pnm(path, p, err, es)
         : decode_jpeg(path, p, err, es);
}

/* p's value at (y, x, channel k of the model's c), grey and colour converted */
static float sample(const Picture *p, int y, int x, int k, int c)
{
    const unsigned char *v = p->px + ((size_t)y * (size_t)p->w + (size_t)x) * (size_t)p->c;
    if (p->c == c)
        return v[k];
    if (p->c == 1)
        return v[0];
    return (float)(v[0] * 299 + v[1] * 587 + v[2] * 114) / 1000.0f;
}

/* The picture as the model's H x W x C floats in [0, 1]; resized (shorter
 * side to the input's, bilinear with half-pixel centres) and centre-cropped
 * when it is another size and `resize`. */
static bool to_input(const char *path, const Picture *p, int H, int W, int C, bool resize, float *out,
                     char *err, size_t es)
{
    if ((p->h != H || p->w != W) && !resize) {
        snprintf(err, es, "%s: a %dx%d image; the model takes %dx%d (give --resize to resize and "
                 "centre-crop)", path, p->w, p->h, W, H);
        return false;
    }
    if (p->h == H && p->w == W) {   /* the common case, without the resampling's arithmetic */
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int k = 0; k < C; k++)
                    out[((size_t)y * W + x) * C + k] = (float)(sample(p, y, x, k, C) / 255.0);
        return true;
    }
    double scale = (double)p->h * W < (double)p->w * H ? (double)H / p->h : (double)W / p->w;
    double rh = p->h * scale, rw = p->w * scale;
    double top = (rh - H) / 2, left = (rw - W) / 2;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double sy = (y + top + 0.5) / scale - 0.5, sx = (x + left + 0.5) / scale - 0.5;
            sy = sy < 0 ? 0 : sy > p->h - 1 ? p->h - 1 : sy;
            sx = sx < 0 ? 0 : sx > p->w - 1 ? p->w - 1 : sx;
            int y0 = (int)sy, x0 = (int)sx, y1 = y0 + 1 < p->h ? y0 + 1 : y0, x1 = x0 + 1 < p->w ? x0 + 1 : x0;
            double fy = sy - y0, fx = sx - x0;
            for (int k = 0; k < C; k++) {
                double v = (1 - fy) * ((1 - fx) * sample(p, y0, x0, k, C) + fx * sample(p, y0, x1, k, C)) +
                           fy * ((1 - fx) * sample(p, y1, x0, k, C) + fx * sample(p, y1, x1, k, C));
                out[((size_t)y * W + x) * C + k] = (float)(v / 255.0);
            }
        }
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* sorted names of the entries of dir that are directories (want_dirs) or image files */
static int list_dir(const char *dir, bool want_dirs, char ***names, char *err, size_t es)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, es, "%s: cannot open: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 16;
    *names = malloc((size_t)cap * sizeof **names);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (!want_dirs && !is_image(e->d_name))
            continue;
        /* the entry's type as readdir gives it, else (a link, or a file
         * system that does not say) by the directory's descriptor */
        struct stat st;
        bool is_dir = e->d_type == DT_DIR, is_file = e->d_type == DT_REG;
        if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
            if (fstatat(dirfd(d), e->d_name, &st, 0) != 0)
                continue;
            is_dir = S_ISDIR(st.st_mode);
            is_file = S_ISREG(st.st_mode);
        }
        if (want_dirs ? !is_dir : !is_file)
            continue;
        if (n == cap)
            *names = realloc(*names, (size_t)(cap *= 2) * sizeof **names);
        (*names)[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(*names, (size_t)n, sizeof **names, by_name);
    return n;
}

bool image_folder(const char *dir, const char *split)
{
    char path[8192];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, split);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

typedef struct Decode {
    const CnnModel *m;
    char **paths;
    float *pixels;
    char **errs;                    /* a failing image's message, else NULL */
    bool resize;
} Decode;

static void decode_one(void *ctx, int64_t i, int thread)
{
    (void)thread;
    Decode *job = ctx;
    const CnnModel *m = job->m;
    char err[8192];
    Picture p;
    int64_t in = (int64_t)m->height * m->width * m->channels;
    if (!decode(job->paths[i], &p, err, sizeof err)) {
        job->errs[i] = strdup(err);
        return;
    }
    if (!to_input(job->paths[i], &p, m->height, m->width, m->channels, job->resize,
                  job->pixels + i * in, err, sizeof err))
        job->errs[i] = strdup(err);
    free(p.px);
}

bool cnn_read_image(const char *path, int32_t h, int32_t w, int32_t c, bool resize, float *out,
                    char *err, size_t es)
{
    Picture p;
    if (!is_image(path)) {
        snprintf(err, es, "%s: not an image this program reads (.png, .jpg, .jpeg, .pgm, .ppm)", path);
        return false;
    }
    if (!decode(path, &p, err, es))
        return false;
    bool ok = to_input(path, &p, h, w, c, resize, out, err, es);
    free(p.px);
    return ok;
}

bool load_folder(const CnnModel *m, const char *dir, const char *split, bool resize, int threads,
                 Dataset *d, char *err, size_t es)
{
    *d = (Dataset){.im = {.height = m->height, .width = m->width, .channels = m->channels}};
    char root[4096], path[8192];
    snprintf(root, sizeof root, "%s/train", dir);
    char **classes, **here = NULL;
    int nclasses = list_dir(root, true, &classes, err, es);
    if (nclasses < 0)
        return false;
    bool ok = nclasses > 0;
    if (!ok)
        snprintf(err, es, "%s: no class folders in it (an image folder is DIR/train/CLASS/*.png ...)", root);
    if (ok && nclasses > m->outputs) {
        snprintf(err, es, "%s: %d classes, but model '%s' has %d outputs", root, nclasses, m->name,
                 m->outputs);
        ok = false;
    }
    snprintf(root, sizeof root, "%s/%s", dir, split);
    int nhere = ok ? list_dir(root, true, &here, err, es) : -1;
    ok = ok && nhere >= 0;
    int64_t count = 0, cap = 0;
    char **paths = NULL;
    for (int k = 0; ok && k < nhere; k++) {
        char **key = bsearch(&here[k], classes, (size_t)nclasses, sizeof *classes, by_name);
        snprintf(path, sizeof path, "%s/%s", root, here[k]);
        if (!key) {
            snprintf(err, es, "%s: a class that %s/train does not have", path, dir);
            ok = false;
            break;
        }
        char **files;
        int nfiles = list_dir(path, false, &files, err, es);
        if (nfiles <= 0) {
            if (nfiles == 0) {
                snprintf(err, es, "%s: no images in this class folder (.png, .jpg, .jpeg, .pgm, .ppm)", path);
                free(files);
            }
            ok = false;
            break;
        }
        if (count + nfiles > cap) {
            cap = 2 * (count + nfiles);
            paths = realloc(paths, (size_t)cap * sizeof *paths);
            d->labels = realloc(d->labels, (size_t)cap * sizeof *d->labels);
        }
        for (int f = 0; f < nfiles; f++) {
            char file[16384];
            snprintf(file, sizeof file, "%s/%s", path, files[f]);
            paths[count] = strdup(file);
            d->labels[count++] = (int32_t)(key - classes);
        }
        free_names(files, nfiles);
    }
    if (ok) {
        int64_t in = (int64_t)m->height * m->width * m->channels;
        d->im.pixels = malloc((size_t)(count * in + 1) * sizeof(float));
        d->im.count = count;
        Decode job = {m, paths, d->im.pixels, calloc((size_t)count + 1, sizeof(char *)), resize};
        rt_parallel(threads, count, decode_one, &job);
        for (int64_t i = 0; i < count; i++) {
            if (job.errs[i] && ok) {
                snprintf(err, es, "%s", job.errs[i]);
                ok = false;
            }
            free(job.errs[i]);
        }
        free(job.errs);
    }
    for (int64_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
    if (ok) {
        d->names.classes = classes;
        d->names.nclasses = nclasses;
    } else {
        free_names(classes, nclasses);
    }
    if (here)
        free_names(here, nhere);
    if (!ok) {
        free(d->im.pixels);
        free(d->labels);
        *d = (Dataset){0};
    }
    return ok;
}

/*
 * files.c: what cnnc and the compiled programs share for files: reading one
 * whole (a regular file, a pipe, or `-` for standard input), and outputs that
 * replace only what is ours, as cc and clang do.
 *
 * An output is written whole to a temporary file, then committed:
 *   - a regular file (or none yet) is replaced by renaming the temporary over
 *     it, after an fsync, so that a crash leaves the old file or the new one;
 *   - a symbolic link is followed: the file it names is replaced, the link kept;
 *   - anything else that exists (a character device, a FIFO) is written into
 *     in place and never renamed over: `-o /dev/null` stays a device.
 * An aborted output leaves nothing behind. cnnc and the compiled programs
 * both write through here; cnn_same_file refuses an input as an output.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cnnrt.h"

unsigned char *cnn_read_all(const char *path, size_t *len, size_t max, char *err, size_t es)
{
    bool std_in = !strcmp(path, "-");
    *len = 0;
    FILE *f = std_in ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, es, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n > max) {
            snprintf(err, es, "%s: larger than %zu bytes", path, max);
            break;
        }
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    bool bad = ferror(f);
    int e = errno;
    if (!std_in)
        fclose(f);
    if (bad)
        snprintf(err, es, "%s: cannot read: %s", path, strerror(e));
    *len = n;
    if (bad || n > max) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The file a path names, symbolic links followed (also dangling ones: the
 * link's target is what gets created). */
static bool follow_links(const char *path, char *out, size_t size)
{
    snprintf(out, size, "%s", path);
    for (int hops = 0; hops < 40; hops++) {
        struct stat st;
        if (lstat(out, &st) != 0 || !S_ISLNK(st.st_mode))
            return true;
        char link[PATH_MAX];
        ssize_t n = readlink(out, link, sizeof link - 1);
        if (n < 0)
            return false;
        link[n] = '\0';
        if (link[0] == '/') {
            snprintf(out, size, "%s", link);
        } else {
            char *slash = strrchr(out, '/');
            size_t dir = slash ? (size_t)(slash - out + 1) : 0;
            if (dir + (size_t)n >= size)
                return false;
            memmove(out + dir, link, (size_t)n + 1);
        }
    }
    errno = ELOOP;
    return false;
}

bool cnn_out_begin(CnnOut *o, const char *path, char *err, size_t es)
{
    memset(o, 0, sizeof *o);
    snprintf(o->path, sizeof o->path, "%s", path);
    if (!follow_links(path, o->target, sizeof o->target)) {
        snprintf(err, es, "%s: cannot write: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    o->in_place = stat(o->target, &st) == 0 && !S_ISREG(st.st_mode);
    if (o->in_place && S_ISDIR(st.st_mode)) {
        snprintf(err, es, "%s: cannot write: it is a directory", path);
        return false;
    }
    int fd;
    if (o->in_place) {
        const char *dir = getenv("TMPDIR");
        snprintf(o->tmp, sizeof o->tmp, "%s/cnn-out.XXXXXX", dir && *dir ? dir : "/tmp");
        fd = mkstemp(o->tmp);
    } else {
        snprintf(o->tmp, sizeof o->tmp, "%s.tmp%d", o->target, (int)getpid());
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    if (fd < 0) {
        snprintf(err, es, "%s: cannot write: %s", path, strerror(errno));
        o->tmp[0] = '\0';
        return false;
    }
    close(fd);
    return true;
}

FILE *cnn_out_fopen(CnnOut *o, const char *mode, char *err, size_t es)
{
    FILE *f = fopen(o->tmp, mode);
    if (!f)
        snprintf(err, es, "%s: cannot write: %s", o->path, strerror(errno));
    return f;
}

bool cnn_out_close(CnnOut *o, FILE *f, char *err, size_t es)
{
    bool ok = !ferror(f) && fflush(f) == 0;
    int e = ok ? 0 : errno ? errno : EIO;
    ok = fclose(f) == 0 && ok;
    if (!ok)
        snprintf(err, es, "%s: cannot write: %s", o->path, strerror(e ? e : errno));
    return ok;
}

/* Copies the temporary into the device or FIFO the output names. */
static bool copy_in_place(CnnOut *o)
{
    int in = open(o->tmp, O_RDONLY), out = open(o->target, O_WRONLY);
    bool ok = in >= 0 && out >= 0;
    char buf[1 << 16];
    ssize_t n;
    while (ok && (n = read(in, buf, sizeof buf)) != 0) {
        ok = n > 0;
        for (ssize_t done = 0; ok && done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            ok = w > 0;
            done += w > 0 ? w : 0;
        }
    }
    int e = errno;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && ok) {
        ok = false;
        e = errno;
    }
    errno = e;
    return ok;
}

FILE *cnn_out_open(CnnOut *o, const char *path, const char *mode, char *err, size_t es)
{
    FILE *f = cnn_out_begin(o, path, err, es) ? cnn_out_fopen(o, mode, err, es) : NULL;
    if (!f)
        cnn_out_abort(o);
    return f;
}

/* fsync the file and, after the rename, its directory */
static void sync_path(const char *path, bool dir)
{
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", path);
    if (dir) {
        char *slash = strrchr(d, '/');
        if (!slash)
            snprintf(d, sizeof d, ".");
        else
            *(slash == d ? slash + 1 : slash) = '\0';
    }
    int fd = open(d, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

bool cnn_out_commit(CnnOut *o, char *err, size_t es)
{
    bool ok;
    if (o->in_place) {
        ok = copy_in_place(o);
    } else {
        sync_path(o->tmp, false);
        ok = rename(o->tmp, o->target) == 0;
        if (ok) {
            sync_path(o->target, true);
            o->tmp[0] = '\0';
        }
    }
    if (!ok)
        snprintf(err, es, "%s: cannot write: %s", o->path, strerror(errno));
    cnn_out_abort(o);
    return ok;
}

void cnn_out_abort(CnnOut *o)
{
    if (o->tmp[0])
        unlink(o->tmp);
    o->tmp[0] = '\0';
}

bool cnn_write_all(const char *path, const void *data, size_t len, char *err, size_t es)
{
    if (!strcmp(path, "-")) {
        bool ok = fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0;
        if (!ok)
            snprintf(err, es, "standard output: cannot write: %s", strerror(errno));
        return ok;
    }
    CnnOut out;
    FILE *f = cnn_out_open(&out, path, "wb", err, es);
    bool ok = f != NULL;
    if (f) {
        bool wrote = fwrite(data, 1, len, f) == len;
        int e = errno;
        ok = cnn_out_close(&out, f, err, es) && wrote;
        if (!wrote)
            snprintf(err, es, "%s: cannot write: %s", path, strerror(e));
        ok = ok && cnn_out_commit(&out, err, es);
    }
    cnn_out_abort(&out);
    return ok;
}

bool cnn_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return false;
    /* a terminal or /dev/null may be both an input and an output */
    return S_ISREG(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

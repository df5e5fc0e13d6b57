/*
 * weights.c: the .cnnw weights file (docs/weights-format.md).
 *
 *   "CNNW" | u32 version | u64 shape hash | u32 tensors | u32 0
 *   per tensor: u32 name length | name | u32 rank | u32 dims[rank] | f32 data
 *   u32 CRC-32 (zlib's) of every byte before it
 *
 * All little-endian. Loading checks, in this order, that the file is whole,
 * is a .cnnw file of this version, is not corrupted, and belongs to the model;
 * each failure is one message naming the file and the problem. Saving goes
 * through files.c: a temporary file, synced and renamed over the old one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "cnnrt.h"

static const char MAGIC[4] = {'C', 'N', 'N', 'W'};

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 1099511628211ull;
}

static void fnv_u32(uint64_t *h, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    fnv(h, b, 4);
}

uint64_t cnnw_shape_hash(const CnnTensor *t, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        fnv(&h, t[i].name, strlen(t[i].name) + 1);
        fnv_u32(&h, (uint32_t)t[i].rank);
        for (int r = 0; r < t[i].rank; r++)
            fnv_u32(&h, (uint32_t)t[i].dims[r]);
    }
    return h;
}

/* ---- reading: a cursor that never runs past the end ---- */

typedef struct Reader {
    const unsigned char *p, *end;
} Reader;

static bool get(Reader *r, void *out, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    memcpy(out, r->p, n);
    r->p += n;
    return true;
}

static bool get_u32(Reader *r, uint32_t *v)
{
    unsigned char b[4];
    if (!get(r, b, 4))
        return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}

static bool get_u64(Reader *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (!get_u32(r, &lo) || !get_u32(r, &hi))
        return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
}

static void dims_str(char *buf, size_t size, int rank, const uint32_t *d)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%u", i ? "x" : "", d[i]);
}

bool cnnw_load(const char *path, const CnnModel *m, float *params, char *err, size_t es)
{
    /* the largest file this model's weights can make, names and all */
    size_t max = 64 + (size_t)m->params_size * 4 + (size_t)m->ntensors * (4 + 256 + 4 + 16) + 4096;
    size_t len;
    unsigned char *buf = cnn_read_all(path, &len, max, err, es);
    if (!buf && len > max)
        snprintf(err, es, "%s: weights of another model: the file is larger than any weights "
                 "file of this model can be", path);
    if (!buf)
        return false;
    bool ok = cnnw_parse(buf, len, path, m, params, err, es);
    free(buf);
    return ok;
}

bool cnnw_parse(const unsigned char *buf, size_t len, const char *path, const CnnModel *m,
                float *params, char *err, size_t es)
{
    Reader r = {buf, buf + len};
    char magic[4];
    uint32_t version, count, reserved, crc;
    uint64_t hash;
    bool ok = false;
    if (!get(&r, magic, 4) || memcmp(magic, MAGIC, 4) != 0) {
        snprintf(err, es, "%s: not a .cnnw weights file (bad magic)", path);
        goto out;
    }
    if (!get_u32(&r, &version) || !get_u64(&r, &hash) || !get_u32(&r, &count) ||
        !get_u32(&r, &reserved)) {
        snprintf(err, es, "%s: truncated (the header is incomplete)", path);
        goto out;
    }
    if (version != CNNW_VERSION) {
        snprintf(err, es, "%s: .cnnw version %u; this program reads version %d", path, version,
                 CNNW_VERSION);
        goto out;
    }
    if (len < 4 + 24) {
        snprintf(err, es, "%s: truncated", path);
        goto out;
    }
    crc = (uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 | (uint32_t)buf[len - 2] << 16 |
          (uint32_t)buf[len - 1] << 24;
    /* Walk the tensors first: a short file is "truncated", not "corrupted". */
    r.end = buf + len - 4;
    for (uint32_t t = 0; t < count; t++) {
        uint32_t nlen, rank, dims[4];
        char name[256];
        if (!get_u32(&r, &nlen) || nlen >= sizeof name || !get(&r, name, nlen) ||
            !get_u32(&r, &rank) || rank > 4) {
            snprintf(err, es, "%s: truncated or corrupted (tensor %u of %u is unreadable)", path,
                     t + 1, count);
            goto out;
        }
        name[nlen] = '\0';
        uint64_t size = 1;
        for (uint32_t i = 0; i < rank; i++) {
            if (!get_u32(&r, &dims[i])) {
                snprintf(err, es, "%s: truncated (in tensor '%s')", path, name);
                goto out;
            }
            size *= dims[i];
        }
        if (size > (uint64_t)(r.end - r.p) / 4) {
            snprintf(err, es, "%s: truncated (tensor '%s' needs %llu floats; the file ends first)",
                     path, name, (unsigned long long)size);
            goto out;
        }
        const CnnTensor *want = (int)t < m->ntensors ? &m->tensors[t] : NULL;
        bool same = want && !strcmp(want->name, name) && want->rank == (int)rank;
        for (uint32_t i = 0; same && i < rank; i++)
            same = want->dims[i] == (int32_t)dims[i];
        if (!same) {
            char have[64];
            dims_str(have, sizeof have, (int)rank, dims);
            if (want) {
                uint32_t wd[4];
                for (int i = 0; i < want->rank; i++)
                    wd[i] = (uint32_t)want->dims[i];
                char need[64];
                dims_str(need, sizeof need, want->rank, wd);
                snprintf(err, es, "%s: weights of another model: tensor %u is '%s' [%s] in the "
                         "file, but '%s' [%s] in model '%s'", path, t + 1, name, have, want->name,
                         need, m->name);
            } else {
                snprintf(err, es, "%s: weights of another model: it has more tensors than model "
                         "'%s' (%d)", path, m->name, m->ntensors);
            }
            goto out;
        }
        for (uint64_t i = 0; i < size; i++) {
            uint32_t bits = 0;
            get_u32(&r, &bits);
            memcpy(&params[want->offset + (int64_t)i], &bits, 4);
        }
    }
    if (r.p != r.end) {
        snprintf(err, es, "%s: corrupted (%zu unexpected bytes after the last tensor)", path,
                 (size_t)(r.end - r.p));
        goto out;
    }
    if ((uint32_t)crc32(0L, buf, (uInt)(len - 4)) != crc) {
        snprintf(err, es, "%s: corrupted (checksum mismatch)", path);
        goto out;
    }
    if ((int)count != m->ntensors) {
        snprintf(err, es, "%s: weights of another model: the file has %u tensors, model '%s' "
                 "has %d (the first %u match)", path, count, m->name, m->ntensors, count);
        goto out;
    }
    if (hash != m->shape_hash) {
        snprintf(err, es, "%s: weights of another model: its shape hash is %016llx, model "
                 "'%s''s is %016llx (every tensor's name and shape match, so the file was "
                 "written for a model with other shapes)", path, (unsigned long long)hash,
                 m->name, (unsigned long long)m->shape_hash);
        goto out;
    }
    ok = true;
out:
    return ok;
}

/* ---- writing ---- */

typedef struct Writer {
    FILE *f;
    uLong crc;
    bool ok;
} Writer;

static void put(Writer *w, const void *p, size_t n)
{
    w->ok = w->ok && fwrite(p, 1, n, w->f) == n;
    w->crc = crc32(w->crc, p, (uInt)n);
}

static void put_u32(Writer *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(w, b, 4);
}

bool cnnw_save(const char *path, const CnnModel *m, const float *params, char *err, size_t es)
{
    CnnOut out;
    FILE *f = cnn_out_open(&out, path, "wb", err, es);
    if (!f)
        return false;
    Writer w = {f, crc32(0L, Z_NULL, 0), true};
    put(&w, MAGIC, 4);
    put_u32(&w, CNNW_VERSION);
    put_u32(&w, (uint32_t)m->shape_hash);
    put_u32(&w, (uint32_t)(m->shape_hash >> 32));
    put_u32(&w, (uint32_t)m->ntensors);
    put_u32(&w, 0);
    for (int t = 0; t < m->ntensors; t++) {
        const CnnTensor *x = &m->tensors[t];
        put_u32(&w, (uint32_t)strlen(x->name));
        put(&w, x->name, strlen(x->name));
        put_u32(&w, (uint32_t)x->rank);
        for (int i = 0; i < x->rank; i++)
            put_u32(&w, (uint32_t)x->dims[i]);
        for (int64_t i = 0; i < x->size; i++) {
            uint32_t bits;
            memcpy(&bits, &params[x->offset + i], 4);
            put_u32(&w, bits);
        }
    }
    uint32_t crc = (uint32_t)w.crc;
    put_u32(&w, crc);
    int e = errno;
    bool ok = cnn_out_close(&out, f, err, es) && w.ok;
    if (!w.ok)
        snprintf(err, es, "%s: cannot write: %s", path, strerror(e));
    if (!ok || !cnn_out_commit(&out, err, es)) {
        cnn_out_abort(&out);
        return false;
    }
    return true;
}

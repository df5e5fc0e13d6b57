/*
 * weights.c: the .cnnw weights file (docs/weights-format.md).
 *
 *   "CNNW" | u32 version | u64 shape hash | u32 tensors | u32 sections
 *   per tensor: u32 name length | name | u32 rank | u32 dims[rank] | f32 data
 *   per section: 4-byte tag | u32 its version | u64 bytes | the bytes
 *   u32 CRC-32 (zlib's) of every byte before it
 *
 * Version 1 has no sections (the count is 0): a file of weights only is
 * written as version 1, so older programs read it.
 * Sections: "CLAS" the class names, "TRAN" the training state of a full
 * checkpoint (CnnTrainState); a loader skips a tag it does not know.
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

/* a little-endian field of 4 or 8 bytes into the 4- or 8-byte object at out
 * (an integer, a float or a double, by its bits) */
static bool get_field(Reader *r, void *out, int bytes)
{
    uint64_t v = 0;
    uint32_t lo;
    bool ok = bytes == 8 ? get_u64(r, &v) : get_u32(r, &lo);
    if (ok && bytes == 4)
        memcpy(out, &lo, 4);
    else if (ok)
        memcpy(out, &v, 8);
    return ok;
}

#define GET(r, field) get_field(r, &(field), (int)sizeof(field))

void cnnw_extra_free(CnnwExtra *x)
{
    for (int i = 0; i < x->nclasses; i++)
        free(x->classes[i]);
    free(x->classes);
    x->classes = NULL;
    x->nclasses = 0;
}

/* "CLAS": u32 count, then each name as u32 length and its bytes */
static bool read_classes(Reader r, CnnwExtra *x, int outputs)
{
    uint32_t n;
    if (!get_u32(&r, &n) || n > (uint32_t)outputs)
        return false;
    x->classes = calloc(n ? n : 1, sizeof *x->classes);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len;
        if (!get_u32(&r, &len) || len > 4096 || (size_t)(r.end - r.p) < len)
            return false;
        x->classes[i] = malloc(len + 1);
        get(&r, x->classes[i], len);
        x->classes[i][len] = '\0';
        x->nclasses = (int)i + 1;
    }
    return r.p == r.end;
}

/* "TRAN": CnnTrainState's fields in order (integers and doubles as their
 * 4 or 8 bytes), then opt_state_size floats */
static bool read_state(Reader r, CnnTrainState *t, int64_t want)
{
    float *opt = t->opt_state;
    bool ok = GET(&r, t->seed) && GET(&r, t->train_images) && GET(&r, t->batch) && GET(&r, t->epochs) &&
              GET(&r, t->shuffle) && GET(&r, t->base_lr) && GET(&r, t->epoch) && GET(&r, t->epoch_steps) &&
              GET(&r, t->seen) && GET(&r, t->step) && GET(&r, t->loss_sum) && GET(&r, t->first_loss) &&
              GET(&r, t->best) && GET(&r, t->best_epoch) && GET(&r, t->opt_state_size);
    t->opt_state = opt;
    if (!ok || t->opt_state_size != want || (uint64_t)(r.end - r.p) != (uint64_t)want * 4)
        return false;
    for (int64_t i = 0; i < want; i++)
        GET(&r, opt[i]);
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
    return cnnw_load_ex(path, m, params, NULL, err, es);
}

bool cnnw_parse(const unsigned char *buf, size_t len, const char *path, const CnnModel *m,
                float *params, char *err, size_t es)
{
    return cnnw_parse_ex(buf, len, path, m, params, NULL, err, es);
}

bool cnnw_load_ex(const char *path, const CnnModel *m, float *params, CnnwExtra *x, char *err, size_t es)
{
    /* the largest file this model's weights can make, names, training state
     * and class names (one an output, at most 4 KiB each) and all */
    size_t max = 64 + (size_t)m->params_size * 4 + (size_t)m->ntensors * (4 + 256 + 4 + 16) + 4096 +
                 (size_t)m->opt_state_size * 4 + 256 + (size_t)m->outputs * (4 + 4096);
    size_t len;
    unsigned char *buf = cnn_read_all(path, &len, max, err, es);
    if (!buf && len > max)
        snprintf(err, es, "%s: weights of another model: the file is larger than any weights "
                 "file of this model can be", path);
    if (!buf)
        return false;
    bool ok = cnnw_parse_ex(buf, len, path, m, params, x, err, es);
    free(buf);
    return ok;
}

bool cnnw_parse_ex(const unsigned char *buf, size_t len, const char *path, const CnnModel *m,
                   float *params, CnnwExtra *x, char *err, size_t es)
{
    Reader r = {buf, buf + len};
    char magic[4];
    uint32_t version, count, nsections, crc;
    Reader classes = {0}, state = {0};
    uint32_t state_version = 0;
    if (x) {
        x->has_state = false;
        x->classes = NULL;
        x->nclasses = 0;
    }
    uint64_t hash;
    bool ok = false;
    if (!get(&r, magic, 4) || memcmp(magic, MAGIC, 4) != 0) {
        snprintf(err, es, "%s: not a .cnnw weights file (bad magic)", path);
        goto out;
    }
    if (!get_u32(&r, &version) || !get_u64(&r, &hash) || !get_u32(&r, &count) ||
        !get_u32(&r, &nsections)) {
        snprintf(err, es, "%s: truncated (the header is incomplete)", path);
        goto out;
    }
    if (version < 1 || version > CNNW_VERSION) {
        snprintf(err, es, "%s: .cnnw version %u; this program reads versions 1 to %d", path, version,
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
    for (uint32_t k = 0; k < (version >= 2 ? nsections : 0); k++) {
        char tag[4];
        uint32_t sv;
        uint64_t bytes;
        if (!get(&r, tag, 4) || !get_u32(&r, &sv) || !get_u64(&r, &bytes) ||
            bytes > (uint64_t)(r.end - r.p)) {
            snprintf(err, es, "%s: truncated or corrupted (section %u of %u is unreadable)", path, k + 1,
                     nsections);
            goto out;
        }
        Reader body = {r.p, r.p + bytes};
        if (!memcmp(tag, "CLAS", 4))
            classes = body;
        else if (!memcmp(tag, "TRAN", 4))
            state = body, state_version = sv;
        r.p += bytes;
    }
    if (r.p != r.end) {
        snprintf(err, es, "%s: corrupted (%zu unexpected bytes after the last %s)", path,
                 (size_t)(r.end - r.p), version >= 2 && nsections ? "section" : "tensor");
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
    if (x && classes.p && !read_classes(classes, x, m->outputs)) {
        snprintf(err, es, "%s: corrupted (its class names are unreadable)", path);
        goto out;
    }
    if (x && x->state && state.p) {
        if (state_version != CNNW_STATE_VERSION) {
            snprintf(err, es, "%s: training state of version %u; this program reads version %d", path,
                     state_version, CNNW_STATE_VERSION);
            goto out;
        }
        if (!read_state(state, x->state, m->opt_state_size)) {
            snprintf(err, es, "%s: its training state is another optimizer's (or unreadable): model "
                     "'%s''s keeps %lld floats; --weights starts from its weights with a fresh optimizer",
                     path, m->name, (long long)m->opt_state_size);
            goto out;
        }
        x->has_state = true;
    }
    ok = true;
out:
    if (!ok && x)
        cnnw_extra_free(x);
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

static void put_u64(Writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

/* the 4- or 8-byte object at p, by its bits, little-endian */
static void put_field(Writer *w, const void *p, int bytes)
{
    uint64_t v = 0;
    uint32_t lo;
    if (bytes == 4) {
        memcpy(&lo, p, 4);
        put_u32(w, lo);
    } else {
        memcpy(&v, p, 8);
        put_u64(w, v);
    }
}

#define PUT(w, field) put_field(w, &(field), (int)sizeof(field))

static void put_section(Writer *w, const char *tag, uint32_t version, uint64_t bytes)
{
    put(w, tag, 4);
    put_u32(w, version);
    put_u64(w, bytes);
}

static void put_classes(Writer *w, const CnnwExtra *x)
{
    uint64_t bytes = 4;
    for (int i = 0; i < x->nclasses; i++)
        bytes += 4 + strlen(x->classes[i]);
    put_section(w, "CLAS", 1, bytes);
    put_u32(w, (uint32_t)x->nclasses);
    for (int i = 0; i < x->nclasses; i++) {
        put_u32(w, (uint32_t)strlen(x->classes[i]));
        put(w, x->classes[i], strlen(x->classes[i]));
    }
}

static void put_state(Writer *w, const CnnTrainState *t)
{
    put_section(w, "TRAN", CNNW_STATE_VERSION, 8 * 10 + 4 * 5 + 4 * (uint64_t)t->opt_state_size);
    PUT(w, t->seed), PUT(w, t->train_images), PUT(w, t->batch), PUT(w, t->epochs), PUT(w, t->shuffle);
    PUT(w, t->base_lr), PUT(w, t->epoch), PUT(w, t->epoch_steps), PUT(w, t->seen), PUT(w, t->step);
    PUT(w, t->loss_sum), PUT(w, t->first_loss), PUT(w, t->best), PUT(w, t->best_epoch);
    PUT(w, t->opt_state_size);
    for (int64_t i = 0; i < t->opt_state_size; i++)
        PUT(w, t->opt_state[i]);
}

bool cnnw_save(const char *path, const CnnModel *m, const float *params, char *err, size_t es)
{
    return cnnw_save_ex(path, m, params, NULL, err, es);
}

bool cnnw_save_ex(const char *path, const CnnModel *m, const float *params, const CnnwExtra *x,
                  char *err, size_t es)
{
    CnnOut out;
    FILE *f = cnn_out_open(&out, path, "wb", err, es);
    if (!f)
        return false;
    Writer w = {f, crc32(0L, Z_NULL, 0), true};
    bool classes = x && x->nclasses > 0, state = x && x->state;
    put(&w, MAGIC, 4);
    put_u32(&w, classes || state ? CNNW_VERSION : 1);  /* weights only: what version 1 reads */
    put_u32(&w, (uint32_t)m->shape_hash);
    put_u32(&w, (uint32_t)(m->shape_hash >> 32));
    put_u32(&w, (uint32_t)m->ntensors);
    put_u32(&w, (uint32_t)classes + (uint32_t)state);
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
    if (classes)
        put_classes(&w, x);
    if (state)
        put_state(&w, x->state);
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

/*
 * diag.c: errors, warnings and notes in clang's form.
 *
 *   lenet5.cnn:4:5: error: unknown op 'cnov'; did you mean 'conv'?
 *       cnov 6 size=5
 *       ^~~~
 *
 * Every error is recorded and reporting goes on; the driver decides the exit
 * status from the count. After error_limit errors the rest are dropped and
 * the passes are told to stop (diag_too_many). Internal bugs go to cnnc_fatal.
 *
 * The passes report in their own order (names before shapes); diag_finish
 * prints each error or warning, with its notes, in source order, as clang
 * does. Those without a place in the source come last.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cnnc.h"

_Noreturn void cnnc_fatal(const char *file, int line, const char *what)
{
    fprintf(stderr, "cnnc: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

void diag_init(Diag *d, FILE *sink, const char *file, const char *text, size_t len)
{
    const char *term = getenv("TERM");
    *d = (Diag){.sink = sink, .file = file, .text = text, .len = len, .error_limit = 20};
    d->out = open_memstream(&d->buf, &d->buflen);
    d->color = isatty(fileno(sink)) && term && strcmp(term, "dumb") != 0;
}

/* An error or warning starts a group; its notes join it. */
static void begin_group(Diag *d, Loc loc)
{
    if (d->ngroups == d->cap)
        d->groups = realloc(d->groups, (size_t)(d->cap = d->cap ? 2 * d->cap : 16) * sizeof *d->groups);
    fflush(d->out);
    d->groups[d->ngroups] = (DiagGroup){loc.file ? loc.line : INT32_MAX, loc.file ? loc.col : 0,
                                        d->ngroups, d->buflen, 0};
    d->ngroups++;
}

static int group_order(const void *pa, const void *pb)
{
    const DiagGroup *a = pa, *b = pb;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return a->seq - b->seq;
}

void diag_flush(Diag *d)
{
    fflush(d->out);
    DiagGroup *sorted = malloc((size_t)(d->ngroups + 1) * sizeof *sorted);
    for (int i = 0; i < d->ngroups; i++) {
        sorted[i] = d->groups[i];
        sorted[i].end = i + 1 < d->ngroups ? d->groups[i + 1].start : d->buflen;
    }
    qsort(sorted, (size_t)d->ngroups, sizeof *sorted, group_order);
    for (int i = 0; i < d->ngroups; i++)
        fwrite(d->buf + sorted[i].start, 1, sorted[i].end - sorted[i].start, d->sink);
    fflush(d->sink);
    free(sorted);
    d->ngroups = 0;
}

void diag_finish(Diag *d)
{
    diag_flush(d);
    fclose(d->out);
    free(d->groups);
    free(d->buf);
    d->out = NULL;
}

bool diag_too_many(const Diag *d)
{
    return d->errors >= d->error_limit;
}

/* The length of the valid UTF-8 character at p, or 0 for a stray byte. */
static int utf8_len(const char *p, const char *end)
{
    unsigned char c = (unsigned char)*p;
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || end - p < n)
        return 0;
    for (int i = 1; i < n; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Quotes the source line of loc with a caret and tildes under the token. Bytes
 * that would disturb a terminal are shown as '?'. */
static void quote_line(Diag *d, Loc loc)
{
    if (!d->text || loc.line <= 0 || !loc.file || strcmp(loc.file, d->file) != 0)
        return;
    const char *p = d->text, *end = d->text + d->len;
    for (int line = 1; line < loc.line && p < end; p++)
        if (*p == '\n')
            line++;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
        eol = end;
    for (const char *q = p; q < eol;) {
        int n = utf8_len(q, eol);
        unsigned char c = (unsigned char)*q;
        if (n > 1)
            fwrite(q, 1, (size_t)n, d->out);
        else
            fputc(n == 1 && (c == '\t' || (c >= 0x20 && c != 0x7f)) ? c : '?', d->out);
        q += n ? n : 1;
    }
    fputc('\n', d->out);
    /* One column per character shown: tabs stay tabs, so the caret lines up. */
    for (const char *q = p; q < p + loc.col - 1 && q < eol;) {
        int n = utf8_len(q, eol);
        fputc(*q == '\t' ? '\t' : ' ', d->out);
        q += n ? n : 1;
    }
    if (d->color)
        fputs("\033[1;32m", d->out);
    fputc('^', d->out);
    for (int i = 1; i < loc.len && p + loc.col - 1 + i < eol; i++)
        fputc('~', d->out);
    if (d->color)
        fputs("\033[0m", d->out);
    fputc('\n', d->out);
}

static void vreport(Diag *d, Loc loc, const char *kind, const char *color,
                    const char *fmt, va_list ap, bool quote)
{
    if (d->color)
        fputs("\033[1m", d->out);
    if (loc.file)
        fprintf(d->out, "%s:%d:%d: ", loc.file, loc.line, loc.col);
    else
        fprintf(d->out, "%s: ", d->file ? d->file : "cnnc");
    if (d->color)
        fprintf(d->out, "%s%s:\033[0m\033[1m ", color, kind);
    else
        fprintf(d->out, "%s: ", kind);
    vfprintf(d->out, fmt, ap);
    if (d->color)
        fputs("\033[0m", d->out);
    fputc('\n', d->out);
    if (loc.file && quote)
        quote_line(d, loc);
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...)
{
    d->suppress_notes = diag_too_many(d);
    if (d->errors++ >= d->error_limit)
        return;
    d->last = loc;
    begin_group(d, loc);
    va_list ap;
    va_start(ap, fmt);
    vreport(d, loc, "error", "\033[31m", fmt, ap, true);
    va_end(ap);
}

void diag_warning(Diag *d, Loc loc, const char *fmt, ...)
{
    d->suppress_notes = diag_too_many(d);
    if (d->suppress_notes)
        return;
    d->warnings++;
    d->last = loc;
    begin_group(d, loc);
    va_list ap;
    va_start(ap, fmt);
    vreport(d, loc, "warning", "\033[35m", fmt, ap, true);
    va_end(ap);
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...)
{
    if (d->suppress_notes)
        return;
    va_list ap;
    va_start(ap, fmt);
    vreport(d, loc, "note", "\033[36m", fmt, ap, true);
    va_end(ap);
}

/* A note at the place just reported, without quoting it again. */
void diag_note_plain(Diag *d, const char *fmt, ...)
{
    if (d->suppress_notes)
        return;
    va_list ap;
    va_start(ap, fmt);
    vreport(d, d->last, "note", "\033[36m", fmt, ap, false);
    va_end(ap);
}

/* An error with no place in the source: a file that cannot be read, say. */
void diag_fatal(Diag *d, const char *fmt, ...)
{
    d->errors++;
    d->last = (Loc){0};
    d->suppress_notes = false;
    begin_group(d, (Loc){0});
    va_list ap;
    va_start(ap, fmt);
    vreport(d, (Loc){0}, "error", "\033[31m", fmt, ap, true);
    va_end(ap);
}

/* Levenshtein distance, with one row of memory. */
static int edit_distance(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (n > 63 || strlen(a) > 63)
        return 64;
    int row[64];
    for (size_t j = 0; j <= n; j++)
        row[j] = (int)j;
    for (size_t i = 1; a[i - 1]; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= n; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[n];
}

/* The candidate nearest to word, if near enough to be a typo (clang's rule:
 * at most a third of the word's length, rounded up), else NULL. */
const char *diag_suggest(const char *word, const char *const *cands, int n)
{
    int limit = ((int)strlen(word) + 2) / 3;
    const char *best = NULL;
    int best_d = limit + 1;
    for (int i = 0; i < n; i++) {
        int dist = edit_distance(word, cands[i]);
        if (dist < best_d) {
            best_d = dist;
            best = cands[i];
        }
    }
    return best;
}

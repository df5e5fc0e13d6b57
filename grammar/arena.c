/*
 * arena.c: the bump allocator behind the syntax tree and the IR.
 *
 * Chunks of at least 64 KiB; a larger request gets a chunk of its own. Running
 * out of memory is fatal: the compiler cannot go on without its tree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"

enum { CHUNK_SIZE = 64 * 1024, ALIGN = 16 };

struct ArenaChunk {
    ArenaChunk *next;
    size_t used, size;
    _Alignas(ALIGN) unsigned char data[];
};

void *arena_alloc(Arena *a, size_t size)
{
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    ArenaChunk *c = a->head;
    if (!c || c->size - c->used < size) {
        size_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;
        c = malloc(sizeof *c + cap);
        if (!c) {
            fprintf(stderr, "cnnc: out of memory\n");
            abort();
        }
        c->used = 0;
        c->size = cap;
        /* A big private chunk goes behind the current one, which keeps its room. */
        if (a->head && cap > CHUNK_SIZE) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

char *arena_strdup(Arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void arena_free(Arena *a)
{
    for (ArenaChunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}

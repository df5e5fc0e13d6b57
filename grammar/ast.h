/*
 * ast.h: the syntax tree of a .cnn file, as grammar/ builds it.
 *
 * The grammar knows statements, values and attributes, nothing of ops: whether
 * `conv` is an op or `size` one of its attributes is for compiler/ to decide from
 * its op table. Everything here lives in one Arena, freed at once.
 */
#ifndef CNN_AST_H
#define CNN_AST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A place in the source: 1-based line and byte column, and the token's length. */
typedef struct Loc {
    const char *file;
    int line, col, len;
} Loc;

/* A bump allocator: every AST and IR object comes from one and dies with it. */
typedef struct ArenaChunk ArenaChunk;
typedef struct Arena {
    ArenaChunk *head;
} Arena;

void *arena_alloc(Arena *a, size_t size);          /* zeroed, 16-byte aligned */
char *arena_strdup(Arena *a, const char *s, size_t len);
void arena_free(Arena *a);

typedef enum {
    V_INT,      /* 64 */
    V_REAL,     /* 0.01, 1e-3 */
    V_DIMS,     /* 5x5, 28x28x1 */
    V_IDENT,    /* relu, same, true */
    V_LIST,     /* [1 2 3] */
    V_LABELS,   /* [b1 b2 b3]: a list of words */
} ValueKind;

enum { MAX_DIMS = 4 };

typedef struct Value {
    ValueKind kind;
    Loc loc;
    int64_t i;                  /* V_INT */
    double r;                   /* V_REAL, and V_INT as a double */
    int ndims;                  /* V_DIMS */
    int64_t dims[MAX_DIMS];
    const char *ident;          /* V_IDENT */
    double *list;               /* V_LIST */
    int64_t nlist;
    const char **labels;        /* V_LABELS, each where it stands */
    Loc *label_locs;
    int nlabels;
} Value;

/* One `key=value` or a bare word; a bare value that is no attribute (`6` in
 * `conv 6`) has key NULL. Which bare item is the positional one is the
 * compiler's call, from the op table. */
typedef struct Item {
    const char *key;            /* NULL for a bare value */
    Loc key_loc;
    bool has_value;             /* false for a flag such as `fixed` */
    Value value;
    struct Item *next;
} Item;

/* stmt := [IDENT ':'] IDENT item* */
typedef struct Stmt {
    const char *label;          /* NULL when unlabeled */
    Loc label_loc;
    const char *word;
    Loc loc;                    /* of the word */
    Item *items;
    int nitems;
    struct Stmt *next;
} Stmt;

/* block := IDENT [IDENT] '{' stmt* '}'; the word should be `model` or `train` */
typedef struct Block {
    const char *word;
    Loc loc;
    const char *name;           /* NULL when absent */
    Loc name_loc;
    Stmt *stmts;
    int nstmts;
    struct Block *next;
} Block;

/* How the parser reports a syntax error; the compiler supplies its diagnostics. */
typedef struct ParseOpts {
    void (*error)(void *ctx, Loc loc, const char *msg);
    bool (*should_stop)(void *ctx);     /* too many errors: give up */
    void *ctx;
    long max_stmts;                     /* more statements in one block is an error */
} ParseOpts;

/* Parses text (len bytes, need not end in NUL) into blocks allocated in arena.
 * Returns the blocks in file order, or NULL; errors go through opts. */
Block *cnn_parse(const char *file, const char *text, size_t len, Arena *arena,
                 const ParseOpts *opts);

#endif

/*
 * parser.y: tokens to the syntax tree of ast.h.
 *
 * A pure (reentrant) LALR parser with locations. Lists of blocks, statements,
 * items and numbers are left-recursive, so the parser's stack does not grow
 * with the length of a file. A syntax error skips to the end of its statement
 * (or block) and parsing goes on, so that every error in a file is reported.
 * Meaning (which words are ops, which values fit) is compiler/'s business.
 */
%define api.pure full
%define parse.error custom
%locations
%param {yyscan_t scanner}
%parse-param {ParseCtx *pc}

%code requires {
#include "ast.h"
typedef void *yyscan_t;
typedef struct ParseCtx ParseCtx;

/* A growing list of numbers: `[1 2 3]`. */
typedef struct NumList {
    double *v;
    int64_t n, cap;
} NumList;

/* A list as it is read: numbers or words (labels), and whether it mixes them. */
typedef struct ElemList {
    NumList nums;
    const char **words;
    Loc *word_locs;
    int nwords, cap;
    bool mixed;
} ElemList;

typedef struct ItemList {
    Item *head, *tail;
    int n;
} ItemList;
}

%code provides {
struct ParseCtx {
    const char *file;
    Arena *arena;
    const ParseOpts *opts;
    int line, col;              /* where the lexer is */
    int depth;                  /* of [ ] nesting: newlines inside do not count */
    Block *first, *last;
};


int yylex(YYSTYPE *lval, YYLTYPE *lloc, yyscan_t scanner);
Loc parse_loc(ParseCtx *pc, const YYLTYPE *l);
void parse_error(ParseCtx *pc, const YYLTYPE *l, const char *msg);
bool parse_should_stop(ParseCtx *pc);
}

%code {
#include <stdio.h>
#include <string.h>
#include "lexer.h"

/* Lists longer than this are refused (a weights list has at most this many numbers). */
enum { MAX_LIST = 1 << 26 };

static void yyerror(YYLTYPE *l, yyscan_t scanner, ParseCtx *pc, const char *msg)
{
    (void)scanner;
    parse_error(pc, l, msg);
}

static Stmt *new_stmt(ParseCtx *pc, const char *label, const YYLTYPE *label_loc,
                      const char *word, const YYLTYPE *word_loc, ItemList items)
{
    Stmt *s = arena_alloc(pc->arena, sizeof *s);
    s->label = label;
    if (label)
        s->label_loc = parse_loc(pc, label_loc);
    s->word = word;
    s->loc = parse_loc(pc, word_loc);
    s->items = items.head;
    s->nitems = items.n;
    return s;
}

static void add_stmt(ParseCtx *pc, Block *b, Stmt *s, Stmt **tail, const YYLTYPE *l)
{
    if (b->nstmts == pc->opts->max_stmts) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many statements in one block (at most %ld)",
                 pc->opts->max_stmts);
        parse_error(pc, l, msg);
    }
    if (b->nstmts++ >= pc->opts->max_stmts)
        return;
    if (*tail)
        (*tail)->next = s;
    else
        b->stmts = s;
    *tail = s;
}

static void list_push(ParseCtx *pc, NumList *l, double v, const YYLTYPE *loc)
{
    if (l->n == MAX_LIST) {
        parse_error(pc, loc, "list is too long (at most 67108864 numbers)");
        l->n++;
    }
    if (l->n > MAX_LIST)
        return;
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 16;
        double *v = arena_alloc(pc->arena, (size_t)cap * sizeof *v);
        if (l->n)
            memcpy(v, l->v, (size_t)l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

/* Lists of labels are short (a join's inputs); more than this is refused. */
enum { MAX_LABELS = 4096 };

static void label_push(ParseCtx *pc, ElemList *l, const char *word, const YYLTYPE *loc)
{
    if (l->nwords == MAX_LABELS) {
        parse_error(pc, loc, "list is too long (at most 4096 labels)");
        l->nwords++;
    }
    if (l->nwords > MAX_LABELS)
        return;
    if (l->nwords == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        const char **w = arena_alloc(pc->arena, (size_t)cap * sizeof *w);
        Loc *at = arena_alloc(pc->arena, (size_t)cap * sizeof *at);
        if (l->nwords) {
            memcpy(w, l->words, (size_t)l->nwords * sizeof *w);
            memcpy(at, l->word_locs, (size_t)l->nwords * sizeof *at);
        }
        l->words = w;
        l->word_locs = at;
        l->cap = cap;
    }
    l->words[l->nwords] = word;
    l->word_locs[l->nwords++] = parse_loc(pc, loc);
}

/* A number after a word or a word after a number: one error per list. */
static void elem_mix(ParseCtx *pc, ElemList *l, const YYLTYPE *loc)
{
    if (!l->mixed && l->nums.n && l->nwords)
        parse_error(pc, loc, "a list holds numbers or labels, not both");
    l->mixed = l->mixed || (l->nums.n && l->nwords);
}
}

%union {
    const char *str;
    Value val;
    Item *item;
    ItemList items;
    Stmt *stmt;
    Block *block;
    NumList list;
    ElemList elems;
    struct { Block *block; Stmt *tail; } body;
}

%token END 0 "end of file"
%token <str> IDENT "identifier"
%token <val> INT "integer"
%token <val> REAL "real number"
%token <val> DIMS "dimensions"
%token NL "newline"

%type <val> value bare number list
%type <item> item
%type <items> items
%type <stmt> stmt
%type <block> head
%type <body> body
%type <elems> elems

%%

/* file := block+, with newlines and ';' between */
file
    : %empty
    | file NL
    | file ';'
    | file block
    | file error NL             { yyerrok; }
    | file error '}'            { yyerrok; }
    ;

block
    : head '{' body '}'
    | head '{' body stmt '}'    { add_stmt(pc, $1, $4, &$3.tail, &@4); }
    | head '{' body error '}'   { yyerrok; }
    ;

/* head := IDENT [IDENT]: `model lenet5`, `train` */
head
    : IDENT newlines {
        Block *b = arena_alloc(pc->arena, sizeof *b);
        b->word = $1;
        b->loc = parse_loc(pc, &@1);
        $$ = b;
        if (pc->last) pc->last->next = b; else pc->first = b;
        pc->last = b;
    }
    | IDENT IDENT newlines {
        Block *b = arena_alloc(pc->arena, sizeof *b);
        b->word = $1;
        b->loc = parse_loc(pc, &@1);
        b->name = $2;
        b->name_loc = parse_loc(pc, &@2);
        $$ = b;
        if (pc->last) pc->last->next = b; else pc->first = b;
        pc->last = b;
    }
    ;

newlines
    : %empty
    | newlines NL
    ;

/* The statements of a block, each ended by a newline or ';'. The block that
 * owns them is the head just reduced: $<block>-1 is `head`, two symbols back. */
body
    : %empty                    { $$.block = $<block>-1; $$.tail = NULL; }
    | body NL                   { $$ = $1; }
    | body ';'                  { $$ = $1; }
    | body stmt NL              { $$ = $1; add_stmt(pc, $$.block, $2, &$$.tail, &@2); }
    | body stmt ';'             { $$ = $1; add_stmt(pc, $$.block, $2, &$$.tail, &@2); }
    | body error NL             { $$ = $1; yyerrok; }
    | body error ';'            { $$ = $1; yyerrok; }
    ;

/* stmt := [IDENT ':'] IDENT item* */
stmt
    : IDENT items               { $$ = new_stmt(pc, NULL, NULL, $1, &@1, $2); }
    | IDENT ':' IDENT items     { $$ = new_stmt(pc, $1, &@1, $3, &@3, $4); }
    ;

items
    : %empty                    { $$ = (ItemList){0}; }
    | items item {
        $$ = $1;
        if ($$.tail) $$.tail->next = $2; else $$.head = $2;
        $$.tail = $2;
        $$.n++;
    }
    ;

/* item := IDENT '=' value | IDENT | value */
item
    : IDENT '=' value {
        $$ = arena_alloc(pc->arena, sizeof *$$);
        $$->key = $1;
        $$->key_loc = parse_loc(pc, &@1);
        $$->has_value = true;
        $$->value = $3;
    }
    | IDENT {
        $$ = arena_alloc(pc->arena, sizeof *$$);
        $$->key = $1;
        $$->key_loc = parse_loc(pc, &@1);
    }
    | bare {
        $$ = arena_alloc(pc->arena, sizeof *$$);
        $$->key_loc = $1.loc;
        $$->has_value = true;
        $$->value = $1;
    }
    ;

value
    : bare
    | IDENT                     { $$ = (Value){.kind = V_IDENT, .ident = $1, .loc = parse_loc(pc, &@1)}; }
    ;

/* A value that cannot be mistaken for an attribute key. */
bare
    : number
    | DIMS
    | list
    ;

number
    : INT
    | REAL
    ;

list
    : '[' elems ']' {
        if ($2.nwords && !$2.nums.n) {
            $$ = (Value){.kind = V_LABELS, .labels = $2.words, .label_locs = $2.word_locs,
                         .nlabels = $2.nwords > MAX_LABELS ? MAX_LABELS : $2.nwords,
                         .loc = parse_loc(pc, &@1)};
        } else {
            $$ = (Value){.kind = V_LIST, .list = $2.nums.v, .nlist = $2.nums.n, .loc = parse_loc(pc, &@1)};
            if ($$.nlist > MAX_LIST)
                $$.nlist = MAX_LIST;
        }
    }
    ;

elems
    : %empty                    { $$ = (ElemList){0}; }
    | elems number              { $$ = $1; list_push(pc, &$$.nums, $2.r, &@2); elem_mix(pc, &$$, &@2); }
    | elems IDENT               { $$ = $1; label_push(pc, &$$, $2, &@2); elem_mix(pc, &$$, &@2); }
    | elems ','                 { $$ = $1; }
    ;

%%

Loc parse_loc(ParseCtx *pc, const YYLTYPE *l)
{
    int len = l->last_line == l->first_line ? l->last_column - l->first_column : 1;
    return (Loc){pc->file, l->first_line, l->first_column, len > 0 ? len : 1};
}

void parse_error(ParseCtx *pc, const YYLTYPE *l, const char *msg)
{
    pc->opts->error(pc->opts->ctx, parse_loc(pc, l), msg);
}

bool parse_should_stop(ParseCtx *pc)
{
    return pc->opts->should_stop && pc->opts->should_stop(pc->opts->ctx);
}

/* Bison's names for tokens: "identifier" or '=' as written above, made plain. */
static void token_name(yysymbol_kind_t k, char *buf, size_t size)
{
    const char *s = yysymbol_name(k);
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
        snprintf(buf, size, "%.*s", (int)(n - 2), s + 1);
    else
        snprintf(buf, size, "%s", s);
}

/* "unexpected newline; expected '=' or identifier", in the manner of clang. */
static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, ParseCtx *pc)
{
    (void)scanner;
    enum { MAX_EXPECTED = 6 };
    yysymbol_kind_t expected[MAX_EXPECTED];
    int n = yypcontext_expected_tokens(ctx, expected, MAX_EXPECTED);
    char msg[256], name[64];
    token_name(yypcontext_token(ctx), name, sizeof name);
    int len = snprintf(msg, sizeof msg, "unexpected %s", name);
    for (int i = 0; i < n && len < (int)sizeof msg - 64; i++) {
        token_name(expected[i], name, sizeof name);
        len += snprintf(msg + len, sizeof msg - (size_t)len, "%s%s",
                        i == 0 ? "; expected " : i == n - 1 ? " or " : ", ", name);
    }
    parse_error(pc, yypcontext_location(ctx), msg);
    return 0;
}

Block *cnn_parse(const char *file, const char *text, size_t len, Arena *arena,
                 const ParseOpts *opts)
{
    ParseCtx pc = {.file = file, .arena = arena, .opts = opts, .line = 1, .col = 1};
    yyscan_t scanner;
    if (yylex_init_extra(&pc, &scanner))
        return NULL;
    YY_BUFFER_STATE buf = yy_scan_bytes(text, (int)len, scanner);
    yyparse(scanner, &pc);
    yy_delete_buffer(buf, scanner);
    yylex_destroy(scanner);
    return pc.first;
}

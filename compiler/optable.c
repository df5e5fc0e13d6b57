/*
 * optable.c: ops.def and settings.def as data, and the checking of a
 * statement's attributes against them.
 *
 * The spec strings of the tables are parsed once into OpSpecs. bind_args()
 * is the one place that knows attribute syntax: unknown keys (with a "did you
 * mean"), duplicates, missing required ones, types and ranges. What a value
 * means for a shape is left to the op's family in compiler/ops/.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cnnc.h"

_Static_assert(ACT_COUNT <= 16, "a choice list holds at most 16 words");

const ActInfo act_info[ACT_COUNT] = {
    {"none", true, 0},
#define ACT(id, word, from_y, spec, param, summary) {#word, from_y, param},
#include "acts.def"
#undef ACT
};

int op_act(OpKind op)
{
    switch (op) {
#define ACT(id, word, from_y, spec, param, summary) case OP_##id: return ACT_##id;
#include "acts.def"
#undef ACT
    default:
        return ACT_NONE;
    }
}

OpKind act_op(int act)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (op_act((OpKind)i) == act)
            return (OpKind)i;
    unreachable();
}

const char *const op_words[OP_COUNT] = {
#define OP(id, word, family, in, flags, spec, summary) #word,
#include "ops.def"
#undef OP
};

const char *const setting_words[SET_COUNT] = {
#define SETTING(id, word, spec, summary) #word,
#include "settings.def"
#undef SETTING
};

const char *const optim_words[OPT_COUNT] = {
#define OPTIM(id, word, spec) #word,
#include "settings.def"
#undef OPTIM
};

typedef struct SpecSource {
    const char *what, *word, *family, *summary, *spec;
    int in_rank;
    unsigned flags;
} SpecSource;

/* ops.def's flags column, as written there */
enum {
    SOURCE = OPF_SOURCE, JOIN = OPF_JOIN, LAST = OPF_LAST, PROBS = OPF_PROBS, TAKES_ACT = OPF_TAKES_ACT,
    TAKES_POOL = OPF_TAKES_POOL, SCRATCH = OPF_SCRATCH, STOCHASTIC = OPF_STOCHASTIC, WHOLE_BATCH = OPF_WHOLE_BATCH,
    AFFINE = OPF_AFFINE, TAKES_AFFINE = OPF_TAKES_AFFINE, SUM = OPF_SUM, TAKES_SUM = OPF_TAKES_SUM,
    PACKS = OPF_PACKS, GRAD_IN = OPF_GRAD_IN, GRAD_OUT = OPF_GRAD_OUT, GRAD_ACT_OUT = OPF_GRAD_ACT_OUT,
};

static const SpecSource op_src[OP_COUNT] = {
#define OP(id, word, family, in, flags, spec, summary) {"op", #word, #family, summary, spec, in, flags},
#include "ops.def"
#undef OP
};

bool op_has(OpKind op, unsigned flag)
{
    return op < OP_COUNT && (op_src[op].flags & flag);
}

static const SpecSource setting_src[SET_COUNT] = {
#define SETTING(id, word, spec, summary) {"setting", #word, "", summary, spec, 0, 0},
#include "settings.def"
#undef SETTING
};

static const SpecSource optim_src[OPT_COUNT] = {
#define OPTIM(id, word, spec) {"optimizer", #word, "", "", spec, 0, 0},
#include "settings.def"
#undef OPTIM
};

static const char *const type_names[] = {
    [PT_INT] = "int", [PT_UINT] = "uint", [PT_REAL] = "real", [PT_RATE] = "rate",
    [PT_DIMS] = "dims", [PT_SHAPE] = "shape", [PT_PAD] = "pad", [PT_BOOL] = "bool",
    [PT_FLAG] = "flag", [PT_LIST] = "list", [PT_LABELS] = "labels",
};

static const char *const type_words[] = {
    [PT_INT] = "a positive integer", [PT_UINT] = "a non-negative integer",
    [PT_REAL] = "a number", [PT_RATE] = "a number in [0, 1)",
    [PT_DIMS] = "a size K or KhxKw", [PT_SHAPE] = "a shape HxWxC",
    [PT_PAD] = "a padding P, PhxPw or 'same'", [PT_BOOL] = "true or false",
    [PT_FLAG] = "nothing (it is a flag)", [PT_LIST] = "a list [numbers]",
    [PT_LABELS] = "a label or a list [labels]",
    [PT_CHOICE] = "one of",
};

static bool check_value(Diag *d, const ParamSpec *p, const Value *v, Arg *out, bool report);

/* The spec types that are word lists of their own: acts.def's and choices.def's. */
static const char *const padmode_words[] = {
#define PADMODE(id, word) #word,
#include "choices.def"
#undef PADMODE
};
static const char *const init_words[] = {
#define INIT(id, word) #word,
#include "choices.def"
#undef INIT
};
static const char *const loss_words[] = {
#define LOSS(id, word) #word,
#include "choices.def"
#undef LOSS
};
static const char *const schedule_words[] = {
#define SCHEDULE(id, word) #word,
#include "choices.def"
#undef SCHEDULE
};
static const char *const act_words[] = {
    "none",
#define ACT(id, word, from_y, spec, param, summary) #word,
#include "acts.def"
#undef ACT
};

typedef struct ChoiceList {
    const char *type;
    const char *const *words;
    int n;
} ChoiceList;

static const ChoiceList *choice_list(const char *type)
{
    static const ChoiceList lists[] = {
        {"act", act_words, ACT_COUNT}, {"padmode", padmode_words, PAD_COUNT},
        {"init", init_words, INIT_COUNT}, {"loss", loss_words, LOSS_COUNT},
        {"schedule", schedule_words, SCHED_COUNT},
    };
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
        if (!strcmp(lists[i].type, type))
            return &lists[i];
    return NULL;
}

/* Parses one `*key:type=default!` word of a spec string. */
static void parse_param(ParamSpec *p, const char *w, size_t n)
{
    char buf[256];
    CNNC_ASSERT(n < sizeof buf);
    memcpy(buf, w, n);
    buf[n] = '\0';
    char *s = buf;
    if (*s == '*') {
        p->positional = true;
        s++;
    }
    if (n > 0 && buf[n - 1] == '!') {
        p->required = true;
        buf[n - 1] = '\0';
    }
    char *colon = strchr(s, ':');
    CNNC_ASSERT(colon);
    *colon = '\0';
    p->key = strdup(s);
    char *type = colon + 1;
    char *eq = strchr(type, '=');
    if (eq)
        *eq = '\0';
    const ChoiceList *list = choice_list(type);
    if (list) {
        p->type = PT_CHOICE;
        for (int a = 0; a < list->n; a++)
            p->choices[p->nchoices++] = strdup(list->words[a]);
    } else if (*type == '{') {
        p->type = PT_CHOICE;
        char *end = strchr(type, '}');
        CNNC_ASSERT(end);
        *end = '\0';
        for (char *c = strtok(type + 1, "|"); c; c = strtok(NULL, "|")) {
            CNNC_ASSERT(p->nchoices < 16);
            p->choices[p->nchoices++] = strdup(c);
        }
    } else {
        int t = 0;
        while (t < PT_CHOICE && strcmp(type_names[t], type) != 0)
            t++;
        CNNC_ASSERT(t < PT_CHOICE);
        p->type = (ParamType)t;
    }
    if (eq) {
        /* Defaults are checked by the same code as user values. */
        const char *dv = eq + 1;
        Value v = {0};
        char *end;
        if (p->type == PT_CHOICE || p->type == PT_BOOL) {
            v = (Value){.kind = V_IDENT, .ident = strdup(dv)};
        } else {
            v.r = strtod(dv, &end);
            v.i = (int64_t)v.r;
            v.kind = strchr(dv, '.') || strchr(dv, 'e') ? V_REAL : V_INT;
        }
        Arg a;
        p->has_default = check_value(NULL, p, &v, &a, false);
        CNNC_ASSERT(p->has_default);
        p->def = a.v;
    }
}

static void parse_spec(OpSpec *o, const SpecSource *src)
{
    o->what = src->what;
    o->word = src->word;
    o->family = src->family;
    o->summary = src->summary;
    o->in_rank = src->in_rank;
    o->flags = src->flags;
    for (const char *s = src->spec; *s;) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n == 0)
            break;
        CNNC_ASSERT(o->nparams < MAX_PARAMS_PER_OP);
        parse_param(&o->params[o->nparams++], s, n);
        s += n;
    }
}

/* The specs, parsed on first use; they are constant afterwards. */
static OpSpec op_specs[OP_COUNT], setting_specs[SET_COUNT], optim_specs[OPT_COUNT];
static bool specs_ready;

static void init_specs(void)
{
    if (specs_ready)
        return;
    for (int i = 0; i < OP_COUNT; i++)
        parse_spec(&op_specs[i], &op_src[i]);
    for (int i = 0; i < SET_COUNT; i++)
        parse_spec(&setting_specs[i], &setting_src[i]);
    for (int i = 0; i < OPT_COUNT; i++)
        parse_spec(&optim_specs[i], &optim_src[i]);
    specs_ready = true;
}

const OpSpec *op_spec(OpKind op) { init_specs(); return &op_specs[op]; }
const OpSpec *setting_spec(SettingKind s) { init_specs(); return &setting_specs[s]; }
const OpSpec *optim_spec(OptimKind o) { init_specs(); return &optim_specs[o]; }

int spec_param(const OpSpec *spec, const char *key)
{
    for (int i = 0; i < spec->nparams; i++)
        if (strcmp(spec->params[i].key, key) == 0)
            return i;
    return -1;
}

int spec_lookup(const char *const *words, int n, const char *word)
{
    for (int i = 0; i < n; i++)
        if (strcmp(words[i], word) == 0)
            return i;
    return -1;
}

static const char *kind_name(const Value *v)
{
    switch (v->kind) {
    case V_INT: return "an integer";
    case V_REAL: return "a real number";
    case V_DIMS: return "dimensions";
    case V_IDENT: return "a word";
    case V_LIST: return "a list";
    case V_LABELS: return "a list of labels";
    }
    unreachable();
}

/* "expected one of 'none', 'relu' or 'tanh'" and the like. */
static void expected_msg(const ParamSpec *p, char *buf, size_t size)
{
    if (p->type != PT_CHOICE) {
        snprintf(buf, size, "%s", type_words[p->type]);
        return;
    }
    size_t len = (size_t)snprintf(buf, size, "one of");
    for (int i = 0; i < p->nchoices && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s'%s'",
                                i == 0 ? " " : i == p->nchoices - 1 ? " or " : ", ",
                                p->choices[i]);
}

static bool bad_value(Diag *d, const ParamSpec *p, const Value *v, bool report, const char *why)
{
    if (!report)
        return false;
    char exp[160];
    expected_msg(p, exp, sizeof exp);
    if (why)
        diag_error(d, v->loc, "'%s' %s", p->key, why);
    else
        diag_error(d, v->loc, "'%s' expects %s, not %s", p->key, exp, kind_name(v));
    return false;
}

static bool positive(const ParamSpec *p, int64_t x)
{
    return p->type == PT_UINT ? x >= 0 : x > 0;
}

/* Checks v against p's type and normalizes it into out->v. Integers are kept
 * below 2^31 so that later size arithmetic is exact in 64 bits. */
static bool check_value(Diag *d, const ParamSpec *p, const Value *v, Arg *out, bool report)
{
    out->v = *v;
    out->loc = v->loc;
    switch (p->type) {
    case PT_INT:
    case PT_UINT:
        if (v->kind != V_INT)
            return bad_value(d, p, v, report, NULL);
        if (!positive(p, v->i))
            return bad_value(d, p, v, report,
                             p->type == PT_INT ? "must be positive" : "must not be negative");
        if (p->type == PT_INT && v->i > INT32_MAX)
            return bad_value(d, p, v, report, "is too large (at most 2147483647)");
        return true;
    case PT_REAL:
    case PT_RATE:
        if (v->kind != V_INT && v->kind != V_REAL)
            return bad_value(d, p, v, report, NULL);
        out->v.kind = V_REAL;
        if (p->type == PT_RATE && !(v->r >= 0 && v->r < 1))
            return bad_value(d, p, v, report, "must be at least 0 and less than 1");
        return true;
    case PT_DIMS:
    case PT_PAD:
        if (p->type == PT_PAD && v->kind == V_IDENT && strcmp(v->ident, "same") == 0) {
            out->same = true;
            return true;
        }
        if (v->kind == V_INT) {
            out->v.kind = V_DIMS;
            out->v.ndims = 2;
            out->v.dims[0] = out->v.dims[1] = v->i;
        } else if (v->kind != V_DIMS || v->ndims != 2) {
            return bad_value(d, p, v, report, NULL);
        }
        for (int i = 0; i < 2; i++) {
            if (!(p->type == PT_PAD ? out->v.dims[i] >= 0 : out->v.dims[i] > 0))
                return bad_value(d, p, v, report,
                                 p->type == PT_PAD ? "must not be negative" : "must be positive");
            if (out->v.dims[i] > INT32_MAX)
                return bad_value(d, p, v, report, "is too large (at most 2147483647)");
        }
        return true;
    case PT_SHAPE:
        if (v->kind != V_DIMS || v->ndims != 3)
            return bad_value(d, p, v, report, NULL);
        for (int i = 0; i < 3; i++) {
            if (v->dims[i] <= 0)
                return bad_value(d, p, v, report, "must have positive dimensions");
            if (v->dims[i] > INT32_MAX)
                return bad_value(d, p, v, report, "is too large (at most 2147483647 per dimension)");
        }
        return true;
    case PT_BOOL:
        if (v->kind == V_IDENT && (!strcmp(v->ident, "true") || !strcmp(v->ident, "false"))) {
            out->v.i = strcmp(v->ident, "true") == 0;
            return true;
        }
        return bad_value(d, p, v, report, NULL);
    case PT_FLAG:
        return bad_value(d, p, v, report, "is a flag and takes no value");
    case PT_LIST:
        if (v->kind != V_LIST)
            return bad_value(d, p, v, report, NULL);
        return true;
    case PT_LABELS:
        /* one label (V_IDENT) or a list of them: ir.c reads both */
        if (v->kind != V_IDENT && v->kind != V_LABELS)
            return bad_value(d, p, v, report, NULL);
        return true;
    case PT_CHOICE:
        if (v->kind != V_IDENT)
            return bad_value(d, p, v, report, NULL);
        for (int i = 0; i < p->nchoices; i++)
            if (strcmp(p->choices[i], v->ident) == 0) {
                out->v.i = i;
                return true;
            }
        if (report) {
            char exp[160];
            expected_msg(p, exp, sizeof exp);
            const char *near = diag_suggest(v->ident, p->choices, p->nchoices);
            if (near)
                diag_error(d, v->loc, "unknown value '%s' for '%s'; did you mean '%s'?",
                           v->ident, p->key, near);
            else
                diag_error(d, v->loc, "unknown value '%s' for '%s'; expected %s",
                           v->ident, p->key, exp);
        }
        return false;
    }
    unreachable();
}

static void unknown_attr(Diag *d, const OpSpec *spec, const Item *it, const char *what)
{
    const char *keys[MAX_PARAMS_PER_OP];
    for (int i = 0; i < spec->nparams; i++)
        keys[i] = spec->params[i].key;
    const char *near = diag_suggest(it->key, keys, spec->nparams);
    if (near)
        diag_error(d, it->key_loc, "unknown attribute '%s' for %s '%s'; did you mean '%s'?",
                   it->key, what, spec->word, near);
    else if (spec->nparams == 0)
        diag_error(d, it->key_loc, "%s '%s' takes no attributes, but was given '%s'",
                   what, spec->word, it->key);
    else
        diag_error(d, it->key_loc, "unknown attribute '%s' for %s '%s'", it->key, what,
                   spec->word);
}

/* Is this item the statement's positional value? A bare value is; a bare word
 * is when it names no flag of the op (`loss mse`, but `conv fixed`). */
static bool is_positional(const OpSpec *spec, const Item *it)
{
    if (it->key == NULL)
        return true;
    if (it->has_value)
        return false;
    int i = spec_param(spec, it->key);
    return i < 0 || spec->params[i].type != PT_FLAG;
}

bool bind_args(Diag *d, const OpSpec *spec, const Stmt *s, const Item *skip, Arg *args)
{
    int errors = d->errors;
    const char *what = spec->what;
    int pos = -1;
    for (int i = 0; i < spec->nparams; i++) {
        args[i] = (Arg){.loc = s->loc};
        if (spec->params[i].positional)
            pos = i;
    }
    bool first = true;
    for (const Item *it = s->items; it; it = it->next) {
        /* an op's from= is the graph's, read by ir.c */
        if (it == skip || (!strcmp(what, "op") && it->key && !strcmp(it->key, "from")))
            continue;
        bool is_first = first;
        first = false;
        int i;
        Value v;
        if (is_positional(spec, it)) {
            v = it->key ? (Value){.kind = V_IDENT, .ident = it->key, .loc = it->key_loc}
                        : it->value;
            if (pos < 0) {
                diag_error(d, v.loc, "%s '%s' takes no positional value", what, spec->word);
                continue;
            }
            if (!is_first || args[pos].given) {
                if (it->key)
                    unknown_attr(d, spec, it, what);
                else
                    diag_error(d, v.loc, "a positional value must come right after '%s'",
                               spec->word);
                continue;
            }
            i = pos;
        } else {
            i = spec_param(spec, it->key);
            if (i < 0) {
                unknown_attr(d, spec, it, what);
                continue;
            }
            if (spec->params[i].type == PT_FLAG) {
                if (it->has_value) {
                    diag_error(d, it->key_loc, "'%s' is a flag and takes no value", it->key);
                    continue;
                }
            } else if (!it->has_value) {
                char exp[160];
                expected_msg(&spec->params[i], exp, sizeof exp);
                diag_error(d, it->key_loc, "'%s' needs a value: %s=<%s>", it->key, it->key,
                           spec->params[i].type == PT_CHOICE ? "word" : type_names[spec->params[i].type]);
                continue;
            }
            v = it->value;
        }
        if (args[i].given) {
            diag_error(d, it->key ? it->key_loc : v.loc, "'%s' is given twice",
                       spec->params[i].key);
            diag_note(d, args[i].loc, "first given here");
            continue;
        }
        if (spec->params[i].type == PT_FLAG) {
            args[i] = (Arg){.present = true, .given = true, .loc = it->key_loc};
            args[i].v.i = 1;
            continue;
        }
        Arg a = {0};
        if (check_value(d, &spec->params[i], &v, &a, true)) {
            a.present = a.given = true;
            args[i] = a;
        } else {
            args[i].given = true;       /* reported; not "missing" as well */
            args[i].loc = v.loc;
        }
    }
    for (int i = 0; i < spec->nparams; i++) {
        const ParamSpec *p = &spec->params[i];
        if (args[i].given)
            continue;
        if (p->required) {
            diag_error(d, s->loc, "%s '%s' is missing required attribute '%s'", what,
                       spec->word, p->key);
            if (p->positional)
                diag_note_plain(d, "write it after the %s's name: '%s <%s>', or as '%s=<%s>'",
                                what, spec->word, p->key, p->key,
                                p->type == PT_CHOICE ? "word" : type_names[p->type]);
        } else if (p->has_default) {
            args[i] = (Arg){.present = true, .v = p->def, .loc = s->loc};
            args[i].v.loc = s->loc;
        }
    }
    return d->errors == errors;
}

/* --list-ops: each op, a line: its word, its parameters as a spec writes
 * them (the positional first with `*`, `!` on the required), `#` and its
 * summary. */
void optable_list_ops(FILE *out)
{
    for (int i = 0; i < OP_COUNT; i++) {
        const OpSpec *o = op_spec((OpKind)i);
        fprintf(out, "%-14s", o->word);
        int len = 0;
        for (int k = 0; k < o->nparams; k++) {
            const ParamSpec *p = &o->params[k];
            len += fprintf(out, " %s%s%s", p->positional ? "*" : "", p->key, p->required ? "!" : "");
        }
        fprintf(out, "%*s  # %s\n", len < 40 ? 40 - len : 0, "", o->summary);
    }
}

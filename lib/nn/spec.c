/* The text spec format of architectures (docs/spec.md): one layer per line,
 *   TYPE [name=NAME] [in=A,B,...] [key=value ...]
 * '#' starts a comment.  A layer reads the layer on the line above unless
 * `in=` names others ("input" is the network input, "prev" the line above). */
#include "nn.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 64
#define MAX_INPUTS 256

typedef struct spec_ctx {
    kdens_model *m;
    int line;
} spec_ctx;

static const struct {
    const char *word;
    kd_act act;
} act_words[] = {
    {"relu", KD_ACT_RELU},     {"relu6", KD_ACT_RELU6},           {"sigmoid", KD_ACT_SIGMOID},
    {"hard_sigmoid", KD_ACT_HARD_SIGMOID}, {"swish", KD_ACT_SWISH}, {"hard_swish", KD_ACT_HARD_SWISH},
    {"tanh", KD_ACT_TANH},     {"softmax", KD_ACT_SOFTMAX},       {"log", KD_ACT_LOG},
};

const char *kd_act_name(kd_act act)
{
    for (size_t i = 0; i < KD_ARRAY_LEN(act_words); i++)
        if (act_words[i].act == act)
            return act_words[i].word;
    return "?";
}

static bool act_from_word(const char *w, kd_act *act)
{
    for (size_t i = 0; i < KD_ARRAY_LEN(act_words); i++)
        if (strcmp(act_words[i].word, w) == 0) {
            *act = act_words[i].act;
            return true;
        }
    return false;
}

static kdens_status bad(const spec_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static kdens_status bad(const spec_ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kd_fail(KDENS_E_SPEC, "spec line %d: %s", c->line, msg);
}

/* Integers in a spec are sizes: 0..65536 covers every real network and keeps
 * a hostile spec from asking for absurd allocations. */
static bool parse_int(const char *s, int *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < 0 || x > 65536)
        return false;
    *v = (int)x;
    return true;
}

static bool parse_float(const char *s, float *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno)
        return false;
    *v = (float)x;
    return true;
}

/* "K" or "HxW". */
static bool parse_pair(const char *s, int *a, int *b)
{
    char buf[64];
    if (strlen(s) >= sizeof buf)
        return false;
    strcpy(buf, s);
    char *x = strchr(buf, 'x');
    if (!x)
        return parse_int(buf, a) && (*b = *a, true);
    *x = '\0';
    return parse_int(buf, a) && parse_int(x + 1, b);
}

/* "P" (all sides) or "T,B,L,R". */
static bool parse_pad4(const char *s, int pad[4])
{
    int n = 0;
    char buf[64];
    if (strlen(s) >= sizeof buf)
        return false;
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == 4 || !parse_int(tok, &pad[n]))
            return false;
        n++;
    }
    if (n == 1)
        pad[1] = pad[2] = pad[3] = pad[0];
    return n == 1 || n == 4;
}

static kdens_status resolve_inputs(const spec_ctx *c, const char *list, int *in, int *n_in)
{
    char buf[4096];
    if (strlen(list) >= sizeof buf)
        return bad(c, "input list too long");
    strcpy(buf, list);
    *n_in = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*n_in == MAX_INPUTS)
            return bad(c, "more than 256 inputs");
        int id = strcmp(tok, "prev") == 0 ? c->m->n_nodes - 1 : kd_model_find(c->m, tok);
        if (id < 0)
            return bad(c, "input '%s' is not a layer defined above", tok);
        in[(*n_in)++] = id;
    }
    if (*n_in == 0)
        return bad(c, "empty input list");
    return KDENS_OK;
}

static kdens_status apply_key(const spec_ctx *c, kd_layer_type type, kd_attrs *a,
                              const char *key, const char *val)
{
    bool ok = false;
    bool conv_like = type == KD_L_CONV;
    bool pool_like = type == KD_L_MAXPOOL || type == KD_L_AVGPOOL;
    if ((strcmp(key, "filters") == 0 && conv_like) ||
        (strcmp(key, "units") == 0 && (type == KD_L_DENSE || conv_like))) {
        ok = strcmp(val, "classes") == 0 ? (a->units = c->m->classes, true)
                                         : parse_int(val, &a->units);
    } else if ((strcmp(key, "kernel") == 0 && conv_like) ||
               (strcmp(key, "size") == 0 && pool_like)) {
        ok = parse_pair(val, &a->kh, &a->kw) && a->kh >= 1 && a->kw >= 1;
    } else if (strcmp(key, "stride") == 0 && (conv_like || pool_like)) {
        ok = parse_pair(val, &a->sh, &a->sw) && a->sh >= 1 && a->sw >= 1;
    } else if (strcmp(key, "dilation") == 0 && conv_like) {
        ok = parse_pair(val, &a->dh, &a->dw) && a->dh >= 1 && a->dw >= 1;
    } else if (strcmp(key, "padding") == 0 && (conv_like || pool_like)) {
        if (strcmp(val, "same") == 0)
            a->pad_mode = KD_PAD_SAME, ok = true;
        else if (strcmp(val, "valid") == 0)
            a->pad_mode = KD_PAD_VALID, ok = true;
        else
            ok = parse_pad4(val, a->pad), a->pad_mode = KD_PAD_EXPLICIT;
    } else if (strcmp(key, "pad") == 0 && type == KD_L_ZEROPAD) {
        ok = parse_pad4(val, a->pad);
    } else if (strcmp(key, "groups") == 0 && conv_like) {
        ok = strcmp(val, "depthwise") == 0 ? (a->groups = 0, true) : parse_int(val, &a->groups);
    } else if (strcmp(key, "multiplier") == 0 && conv_like) {
        ok = parse_int(val, &a->multiplier) && a->multiplier >= 1;
    } else if (strcmp(key, "bias") == 0 && (conv_like || type == KD_L_DENSE)) {
        if (strcmp(val, "1") == 0 || strcmp(val, "true") == 0)
            a->bias = true, ok = true;
        else if (strcmp(val, "0") == 0 || strcmp(val, "false") == 0)
            a->bias = false, ok = true;
    } else if (strcmp(key, "rate") == 0 && type == KD_L_DROPOUT) {
        ok = parse_float(val, &a->rate);
    } else if (strcmp(key, "per_sample") == 0 && type == KD_L_DROPOUT) {
        ok = strcmp(val, "1") == 0 || strcmp(val, "0") == 0;
        a->per_sample = strcmp(val, "1") == 0;
    } else if (strcmp(key, "momentum") == 0 && type == KD_L_BATCHNORM) {
        ok = parse_float(val, &a->momentum);
    } else if (strcmp(key, "eps") == 0 && type == KD_L_BATCHNORM) {
        ok = parse_float(val, &a->eps);
    } else if (strcmp(key, "scale") == 0 && type == KD_L_RESCALE) {
        ok = parse_float(val, &a->scale);
    } else if (strcmp(key, "offset") == 0 && type == KD_L_RESCALE) {
        ok = parse_float(val, &a->offset);
    } else if (strcmp(key, "fn") == 0 && type == KD_L_ACT) {
        ok = act_from_word(val, &a->act);
    } else {
        return bad(c, "unknown key '%s' for %s", key, kd_layer_keyword(type));
    }
    if (!ok) {
        return bad(c, "bad value '%s' for key '%s'", val, key);
    }
    return KDENS_OK;
}

/* The type of a spec keyword; aliases set attributes (relu -> act fn=relu). */
static bool type_from_word(const char *w, kd_layer_type *type, kd_attrs *a)
{
    if (act_from_word(w, &a->act)) {
        *type = KD_L_ACT;
        return true;
    }
    if (strcmp(w, "depthwise") == 0) {
        *type = KD_L_CONV;
        a->groups = 0;
        return true;
    }
    if (strcmp(w, "bn") == 0) {
        *type = KD_L_BATCHNORM;
        return true;
    }
    for (int t = 1; t < KD_L_COUNT; t++)
        if (strcmp(w, kd_layer_keyword((kd_layer_type)t)) == 0) {
            *type = (kd_layer_type)t;
            return true;
        }
    return false;
}

static kdens_status parse_line(spec_ctx *c, char *line)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    char *tok[MAX_TOKENS];
    int nt = 0;
    for (char *t = strtok(line, " \t\r"); t; t = strtok(NULL, " \t\r")) {
        if (nt == MAX_TOKENS)
            return bad(c, "too many tokens");
        tok[nt++] = t;
    }
    if (nt == 0)
        return KDENS_OK;
    kd_attrs a;
    kd_attrs_default(&a);
    kd_layer_type type;
    if (!type_from_word(tok[0], &type, &a))
        return bad(c, "unknown layer type '%s'", tok[0]);
    const char *name = NULL;
    int in[MAX_INPUTS], n_in = 1;
    in[0] = c->m->n_nodes - 1;
    for (int i = 1; i < nt; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq || eq == tok[i])
            return bad(c, "expected key=value, got '%s'", tok[i]);
        *eq = '\0';
        const char *key = tok[i], *val = eq + 1;
        kdens_status st;
        if (strcmp(key, "name") == 0)
            name = val, st = KDENS_OK;
        else if (strcmp(key, "in") == 0)
            st = resolve_inputs(c, val, in, &n_in);
        else
            st = apply_key(c, type, &a, key, val);
        if (st != KDENS_OK)
            return st;
    }
    kdens_status st = kd_model_add(c->m, type, &a, name, n_in, in, NULL);
    if (st != KDENS_OK)
        return kd_fail_context(st, "spec line %d", c->line);
    return KDENS_OK;
}

kdens_status kd_spec_build(kdens_model *m, const char *spec)
{
    spec_ctx c = {m, 0};
    const char *p = spec;
    char line[8192];
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        c.line++;
        if (len >= sizeof line)
            return bad(&c, "line longer than 8191 characters");
        memcpy(line, p, len);
        line[len] = '\0';
        kdens_status st = parse_line(&c, line);
        if (st != KDENS_OK)
            return st;
        p += len + (nl ? 1 : 0);
    }
    if (m->n_nodes < 2)
        return kd_fail(KDENS_E_SPEC, "spec defines no layers");
    return KDENS_OK;
}

/* ---- the canonical writer ------------------------------------------------------ */

static void write_padding(kd_buf *b, const kd_attrs *a)
{
    if (a->pad_mode == KD_PAD_SAME)
        kd_buf_printf(b, " padding=same");
    else if (a->pad_mode == KD_PAD_VALID)
        kd_buf_printf(b, " padding=valid");
    else
        kd_buf_printf(b, " padding=%d,%d,%d,%d", a->pad[0], a->pad[1], a->pad[2], a->pad[3]);
}

static void write_node(kd_buf *b, const kdens_model *m, const kd_node *n)
{
    const kd_attrs *a = &n->a;
    if (n->type == KD_L_ACT)
        kd_buf_printf(b, "%s name=%s", kd_act_name(a->act), n->name);
    else
        kd_buf_printf(b, "%s name=%s", kd_layer_keyword(n->type), n->name);
    kd_buf_printf(b, " in=");
    for (int i = 0; i < n->n_in; i++)
        kd_buf_printf(b, "%s%s", i ? "," : "", m->nodes[n->in[i]].name);
    switch (n->type) {
    case KD_L_CONV:
        kd_buf_printf(b, " filters=%d kernel=%dx%d stride=%dx%d", a->units, a->kh, a->kw, a->sh,
                      a->sw);
        /* only when dilated: an undilated layer's line stays what versions
         * without dilation write and read */
        if (a->dh != 1 || a->dw != 1)
            kd_buf_printf(b, " dilation=%dx%d", a->dh, a->dw);
        write_padding(b, a);
        kd_buf_printf(b, " groups=%d bias=%d", a->groups, a->bias ? 1 : 0);
        break;
    case KD_L_DENSE: kd_buf_printf(b, " units=%d bias=%d", a->units, a->bias ? 1 : 0); break;
    case KD_L_BATCHNORM:
        kd_buf_printf(b, " momentum=%.9g eps=%.9g", (double)a->momentum, (double)a->eps);
        break;
    case KD_L_MAXPOOL:
    case KD_L_AVGPOOL:
        kd_buf_printf(b, " size=%dx%d stride=%dx%d", a->kh, a->kw, a->sh, a->sw);
        write_padding(b, a);
        break;
    case KD_L_ZEROPAD:
        kd_buf_printf(b, " pad=%d,%d,%d,%d", a->pad[0], a->pad[1], a->pad[2], a->pad[3]);
        break;
    case KD_L_DROPOUT:
        kd_buf_printf(b, " rate=%.9g per_sample=%d", (double)a->rate, a->per_sample ? 1 : 0);
        break;
    case KD_L_RESCALE:
        kd_buf_printf(b, " scale=%.9g offset=%.9g", (double)a->scale, (double)a->offset);
        break;
    default: break;
    }
    kd_buf_printf(b, "\n");
}

void kd_spec_write(const kdens_model *m, kd_buf *b)
{
    kd_buf_printf(b, "# libkdens spec, input %dx%dx%d, %d classes\n", m->in_h, m->in_w, m->in_c,
                  m->classes);
    for (int i = 1; i < m->n_nodes; i++)
        write_node(b, m, &m->nodes[i]);
}

/* ONNX import: the operators kdens_onnx_export writes, and those PyTorch's
 * torch.onnx.export writes for common image classifiers (docs/onnx.md),
 * read into a libkdens model.
 *
 * The graph is translated into a text spec (docs/spec.md), one line per
 * layer, built with kdens_model_from_spec (which checks every shape again),
 * and the weights are then copied into the model's parameters by name,
 * converted from ONNX's NCHW layout to libkdens' NHWC once, here.
 *
 * ONNX values are tracked as views of libkdens layers: a Transpose to NHWC,
 * a Flatten, a Reshape to [N, C, 1, 1], Identity and Dropout change no data
 * in libkdens, they only say in which order the values are seen.  A Flatten
 * of an NCHW map larger than 1x1 (PyTorch's order) is accepted when a Gemm
 * reads it: its kernel's rows are permuted into libkdens' NHWC order.
 * Operator pairs that libkdens computes as one layer are recognised:
 * x * Sigmoid(x) (swish), x * HardSigmoid(x) (hard_swish), Log(Max(x, c))
 * (log), x * s + o with scalars (rescale), (x - m) * k with per-channel
 * constants (normalize), and the graph input's Mul and Add by per-channel
 * constants (the model's input scaling), MatMul then Add of a bias
 * (dense).  Constants (initializers, Constant nodes, Identity of either)
 * are looked up by name; the small int64 arithmetic PyTorch writes for
 * x.view(x.size(0), -1) (Shape, Gather, Unsqueeze, Squeeze, Concat) and
 * for F.pad's pads (ConstantOfShape, Reshape, Slice, Transpose, Cast) is
 * evaluated at load, the batch kept as a symbol (IM_BATCH).
 *
 * A hostile file: protobuf-c unpacks under an allocator that refuses more
 * than a fixed multiple of the file's size; every count, dimension and
 * attribute is checked before it is used. */
#include "../nn/nn.h"
#include "import.h"
#include "kdens_onnx.h"
#include "onnx.pb-c.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most memory protobuf-c may take while unpacking: a multiple of the
 * file's size (every value of the file decoded once, with its headers). */
#define IM_MEMORY_FACTOR 8
#define IM_MEMORY_SLACK ((size_t)1 << 20)
#define IM_MAX_FILE ((size_t)1 << 31) /* protobuf's own limit */
#define IM_MAX_NAME 48

typedef enum vkind {
    V_NCHW,      /* a layer's output as [N, C, H, W] */
    V_NHWC,      /* transposed to [N, H, W, C] */
    V_FLAT,      /* [N, H*W*C] in libkdens' (NHWC) order: 1x1 maps, flatten layers */
    V_FLAT_NCHW, /* [N, C*H*W] in NCHW order: only a Gemm may read it */
    V_RAW,       /* the graph input before the input scaling */
    V_RAW_MUL,   /* the graph input times the per-channel scale */
    V_GATE,      /* Sigmoid/HardSigmoid(x) read only by x * gate */
    V_FLOOR,     /* Max(x, c) read only by a Log */
    V_MUL_SCALAR, /* x * scalar, waiting for + scalar (rescale) */
    V_CENTRED,   /* x - mean, waiting for * inv_std (normalize) */
    V_SHAPE      /* a small int64 tensor known at load (Shape, Gather, ...): ints */
} vkind;

/* In a V_SHAPE value, the batch size (free in the graph). */
#define IM_BATCH INT64_MIN
#define IM_MAX_INTS 8

typedef struct val {
    const char *name; /* the ONNX value (owned by the unpacked model) */
    vkind kind;
    int layer;        /* index into im.layers; -1: the network input */
    int h, w, c;      /* the layer's output shape (of x for the pending kinds) */
    int op;           /* V_GATE: 0 sigmoid, 1 hard sigmoid */
    float scalar;     /* V_MUL_SCALAR: the scale; V_FLOOR: the floor */
    const Onnx__TensorProto *tensor; /* V_CENTRED: the mean; V_RAW_MUL: the scale */
    size_t bias;      /* a MatMul's dense layer: 1 + its zero bias' index in im.params */
    int n_ints, rank; /* V_SHAPE: ints[n_ints], of rank 0 (a scalar), 1 or 2 */
    int cols;         /* V_SHAPE of rank 2: [n_ints / cols, cols] */
    int64_t ints[IM_MAX_INTS];
} val;

typedef struct konst { /* a constant: an initializer, a Constant, Identity of one */
    const char *name;
    const Onnx__TensorProto *t;
} konst;

typedef struct layer {
    char name[IM_MAX_NAME + 16];
    int h, w, c;
} layer;

typedef struct pending { /* a parameter to copy once the model exists */
    char *name;
    float *data;
    size_t count;
} pending;

typedef struct im {
    const Onnx__GraphProto *g;
    val *vals;
    size_t n_vals, cap_vals;
    layer *layers;
    int n_layers;
    size_t cap_layers;
    int *name_slots; /* the layers' names hashed: layer index + 1, 0 free */
    size_t cap_slots;
    struct reader *readers; /* every value read, hashed by name */
    size_t cap_readers;
    pending *params;
    size_t n_params, cap_params;
    konst *consts;
    size_t n_consts, cap_consts;
    int64_t in_batch; /* the input's fixed batch size, or 0 (free) */
    char *spec;
    size_t spec_len, spec_cap;
    int in_h, in_w, in_c;
    bool nhwc_input; /* the input is [N, H, W, C], read by one Transpose to NCHW */
    float *in_scale, *in_offset; /* NULL: 1 and 0 */
    const char *path;
} im;

/* ---- small helpers ------------------------------------------------------------- */

static kdens_status nomem(void)
{
    return kdens_set_error(KDENS_E_NOMEM, "onnx import: out of memory");
}

/* Errors name the file, the node and its operator. */
static kdens_status node_error(im *s, const Onnx__NodeProto *n, kdens_status st, const char *fmt,
                               ...) __attribute__((format(printf, 4, 5)));
static kdens_status node_error(im *s, const Onnx__NodeProto *n, kdens_status st, const char *fmt,
                               ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kdens_set_error(st, "%s: node '%s' (%s): %s", s->path,
                           n->name ? n->name : "(unnamed)", n->op_type ? n->op_type : "?", what);
}

static bool grow(void **array, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 32;
    while (n < need) { /* doubled until it holds need (one long spec line may not fit twice) */
        if (n > SIZE_MAX / 2)
            return false;
        n *= 2;
    }
    if (n > SIZE_MAX / elem)
        return false;
    void *p = realloc(*array, n * elem);
    if (!p)
        return false;
    *array = p;
    *cap = n;
    return true;
}

static kdens_status spec_add(im *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kdens_status spec_add(im *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0 || !grow((void **)&s->spec, &s->spec_cap, s->spec_len + (size_t)len + 1, 1))
        return nomem();
    va_start(ap, fmt);
    vsnprintf(s->spec + s->spec_len, (size_t)len + 1, fmt, ap);
    va_end(ap);
    s->spec_len += (size_t)len;
    return KDENS_OK;
}

static val *find_val(im *s, const char *name)
{
    for (size_t i = s->n_vals; i-- > 0;) /* the latest definition */
        if (strcmp(s->vals[i].name, name) == 0)
            return &s->vals[i];
    return NULL;
}

static kdens_status add_val(im *s, const char *name, val v)
{
    if (!grow((void **)&s->vals, &s->cap_vals, s->n_vals + 1, sizeof *s->vals))
        return nomem();
    v.name = name;
    s->vals[s->n_vals++] = v;
    return KDENS_OK;
}

/* A constant tensor: an initializer, a Constant node's value, or the
 * Identity of one of those (as PyTorch writes shared biases). */
static const Onnx__TensorProto *find_init(const im *s, const char *name)
{
    for (size_t i = s->n_consts; i-- > 0;)
        if (strcmp(s->consts[i].name, name) == 0)
            return s->consts[i].t;
    return NULL;
}

static kdens_status add_const(im *s, const char *name, const Onnx__TensorProto *t)
{
    if (!grow((void **)&s->consts, &s->cap_consts, s->n_consts + 1, sizeof *s->consts))
        return nomem();
    s->consts[s->n_consts++] = (konst){name, t};
    return KDENS_OK;
}

/* FNV-1a, for the tables of names. */
static size_t name_hash(const char *name)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 1099511628211ull;
    return (size_t)h;
}

/* Who reads each value: counted once for the whole graph (a scan of every
 * node per question was quadratic in a graph of thousands of nodes). */
typedef struct reader {
    const char *name;
    int count;
    int node; /* the last node that reads it; -1: a graph output */
} reader;

static void count_reader(im *s, const char *name, int node)
{
    size_t mask = s->cap_readers - 1, i = name_hash(name) & mask;
    while (s->readers[i].name && strcmp(s->readers[i].name, name) != 0)
        i = (i + 1) & mask;
    s->readers[i].name = name;
    s->readers[i].count++;
    s->readers[i].node = node;
}

static kdens_status count_readers(im *s)
{
    size_t refs = s->g->n_output, cap = 64;
    for (size_t i = 0; i < s->g->n_node; i++)
        refs += s->g->node[i]->n_input;
    while (cap < 2 * refs) /* at most half full */
        cap *= 2;
    if (!(s->readers = calloc(cap, sizeof *s->readers)))
        return nomem();
    s->cap_readers = cap;
    for (size_t i = 0; i < s->g->n_node; i++)
        for (size_t k = 0; k < s->g->node[i]->n_input; k++)
            count_reader(s, s->g->node[i]->input[k], (int)i);
    for (size_t i = 0; i < s->g->n_output; i++)
        if (s->g->output[i]->name)
            count_reader(s, s->g->output[i]->name, -1);
    return KDENS_OK;
}

/* How many nodes (and graph outputs) read a value (the fused pairs need
 * exactly one reader), and the last of them. */
static int readers(const im *s, const char *name, int *node)
{
    size_t mask = s->cap_readers - 1, i = name_hash(name) & mask;
    while (s->readers[i].name && strcmp(s->readers[i].name, name) != 0)
        i = (i + 1) & mask;
    if (node)
        *node = s->readers[i].node;
    return s->readers[i].count;
}

/* ---- tensors and attributes --------------------------------------------------------- */

/* The elements of an initializer (dims multiplied, checked for overflow). */
static bool tensor_count(const Onnx__TensorProto *t, size_t *count)
{
    size_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || (t->dims[i] > 0 && n > SIZE_MAX / (size_t)t->dims[i]))
            return false;
        n *= (size_t)t->dims[i];
    }
    *count = n;
    return true;
}

/* A float initializer of exactly `count` values, copied (float_data or
 * little-endian raw_data).  NULL with the error set otherwise. */
static float *tensor_floats(im *s, const Onnx__NodeProto *n, const Onnx__TensorProto *t,
                            size_t count, const char *what)
{
    size_t have;
    if (!t || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || !tensor_count(t, &have) ||
        have != count) {
        node_error(s, n, KDENS_E_FORMAT, "%s: expected a float initializer of %zu values", what,
                   count);
        return NULL;
    }
    bool raw = t->has_raw_data && t->raw_data.len > 0;
    if (raw ? t->raw_data.len != count * sizeof(float) : t->n_float_data != count) {
        node_error(s, n, KDENS_E_FORMAT, "%s: the data does not hold %zu floats", what, count);
        return NULL;
    }
    float *out = malloc(sizeof(float) * (count ? count : 1));
    if (!out) {
        nomem();
        return NULL;
    }
    /* raw_data is little-endian, as this library's hosts (x86-64) */
    memcpy(out, raw ? (const void *)t->raw_data.data : (const void *)t->float_data,
           sizeof(float) * count);
    return out;
}

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i];
    return NULL;
}

/* Is the node a Transpose with exactly this perm? */
static bool is_transpose(const Onnx__NodeProto *n, int64_t a, int64_t b, int64_t c, int64_t d)
{
    if (!n->op_type || strcmp(n->op_type, "Transpose") != 0)
        return false;
    const Onnx__AttributeProto *perm = attr(n, "perm");
    return perm && perm->n_ints == 4 && perm->ints[0] == a && perm->ints[1] == b &&
           perm->ints[2] == c && perm->ints[3] == d;
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : dflt;
}

static float attr_f(const Onnx__NodeProto *n, const char *name, float dflt)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : dflt;
}

/* An ints attribute of `count` values each in [lo, 65536]; absent: dflt. */
static bool attr_ints(const Onnx__NodeProto *n, const char *name, size_t count, int lo,
                      int dflt, int *out)
{
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a) {
        for (size_t i = 0; i < count; i++)
            out[i] = dflt;
        return true;
    }
    if (a->n_ints != count)
        return false;
    for (size_t i = 0; i < count; i++) {
        if (a->ints[i] < lo || a->ints[i] > 65536)
            return false;
        out[i] = (int)a->ints[i];
    }
    return true;
}

/* An int64 tensor of at most max values (int64_data or little-endian
 * raw_data) into out; false when it is anything else. */
static bool tensor_int64s(const Onnx__TensorProto *t, int64_t *out, size_t max, size_t *count)
{
    size_t n;
    if (!t || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || !tensor_count(t, &n) ||
        n > max)
        return false;
    if (t->has_raw_data && t->raw_data.len > 0) {
        if (t->raw_data.len != n * sizeof(int64_t))
            return false;
        memcpy(out, t->raw_data.data, n * sizeof(int64_t));
    } else {
        if (t->n_int64_data != n)
            return false;
        if (n)
            memcpy(out, t->int64_data, n * sizeof(int64_t));
    }
    *count = n;
    return true;
}

/* A scalar float initializer (any shape of one value). */
static bool scalar_of(im *s, const char *name, float *v)
{
    const Onnx__TensorProto *t = find_init(s, name);
    size_t count;
    if (!t || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || !tensor_count(t, &count) ||
        count != 1)
        return false;
    if (t->has_raw_data && t->raw_data.len == sizeof(float))
        memcpy(v, t->raw_data.data, sizeof(float));
    else if (t->n_float_data == 1)
        *v = t->float_data[0];
    else
        return false;
    return true;
}

/* ---- layers ---------------------------------------------------------------------------- */

/* The layers' names in an open-addressing table, so that naming a layer
 * costs the same in a graph of thousands of nodes, many of one name, as in
 * a small one (a scan of every name per try was cubic in such a file). */
static bool name_taken(const im *s, const char *name)
{
    size_t mask = s->cap_slots - 1;
    for (size_t i = s->cap_slots ? name_hash(name) & mask : 0; s->cap_slots; i = (i + 1) & mask) {
        int id = s->name_slots[i];
        if (!id)
            return false;
        if (strcmp(s->layers[id - 1].name, name) == 0)
            return true;
    }
    return false;
}

static void name_place(int *slots, size_t cap, const char *name, int id)
{
    size_t i = name_hash(name) & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = id + 1;
}

/* Layer id's name into the table (at most half full). */
static bool name_insert(im *s, int id)
{
    if (2 * ((size_t)id + 1) > s->cap_slots) {
        size_t cap = s->cap_slots ? 2 * s->cap_slots : 64;
        int *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return false;
        for (int k = 0; k < id; k++)
            name_place(slots, cap, s->layers[k].name, k);
        free(s->name_slots);
        s->name_slots = slots;
        s->cap_slots = cap;
    }
    name_place(s->name_slots, s->cap_slots, s->layers[id].name, id);
    return true;
}

/* A new layer named after the node's output (letters, digits, _ . - kept,
 * the rest '_'; a number appended when taken).  Writes "TYPE name=NAME". */
static kdens_status new_layer(im *s, const Onnx__NodeProto *n, const char *type, int h, int w,
                              int c, int *id)
{
    if (!grow((void **)&s->layers, &s->cap_layers, (size_t)s->n_layers + 1,
              sizeof *s->layers))
        return nomem();
    layer *l = &s->layers[s->n_layers];
    char base[IM_MAX_NAME + 1];
    const char *src = n->output[0];
    size_t k = 0;
    for (; src[k] && k < IM_MAX_NAME; k++) {
        char ch = src[k];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
        base[k] = ok ? ch : '_';
    }
    base[k] = '\0';
    if (k == 0 || strcmp(base, "input") == 0 || strcmp(base, "prev") == 0)
        snprintf(base, sizeof base, "layer");
    snprintf(l->name, sizeof l->name, "%s", base);
    /* taken: the layer's index appended (free unless a node was named so) */
    for (int suffix = s->n_layers; name_taken(s, l->name); suffix++)
        snprintf(l->name, sizeof l->name, "%s_%d", base, suffix);
    if (!name_insert(s, s->n_layers))
        return nomem();
    l->h = h;
    l->w = w;
    l->c = c;
    *id = s->n_layers++;
    return spec_add(s, "%s name=%s", type, l->name);
}

static const char *layer_name(const im *s, int id)
{
    return id < 0 ? "input" : s->layers[id].name;
}

/* The spec's in= list, and the end of the line. */
static kdens_status end_line(im *s, int n_in, const val *const *in)
{
    kdens_status st = spec_add(s, " in=");
    for (int i = 0; i < n_in && st == KDENS_OK; i++)
        st = spec_add(s, "%s%s", i ? "," : "", layer_name(s, in[i]->layer));
    return st == KDENS_OK ? spec_add(s, "\n") : st;
}

/* The output value of a new layer, seen as NCHW (or flat when 1x1 and so
 * read by flat consumers alike: a 1x1 map is the same in both orders). */
static kdens_status layer_out(im *s, const Onnx__NodeProto *n, int id, vkind kind)
{
    val v = {0};
    v.kind = kind;
    v.layer = id;
    v.h = s->layers[id].h;
    v.w = s->layers[id].w;
    v.c = s->layers[id].c;
    return add_val(s, n->output[0], v);
}

static kdens_status add_param(im *s, int id, const char *suffix, float *data, size_t count)
{
    if (!grow((void **)&s->params, &s->cap_params, s->n_params + 1, sizeof *s->params)) {
        free(data);
        return nomem();
    }
    size_t len = strlen(s->layers[id].name) + strlen(suffix) + 2;
    char *name = malloc(len);
    if (!name) {
        free(data);
        return nomem();
    }
    snprintf(name, len, "%s/%s", s->layers[id].name, suffix);
    s->params[s->n_params++] = (pending){name, data, count};
    return KDENS_OK;
}

/* A value read as a layer's map: NCHW, the graph input read by a layer
 * (its scaling then 1 and 0), or a flat 1x1 (the same data). */
static bool as_map(const val *v)
{
    return v->kind == V_NCHW || v->kind == V_RAW ||
           ((v->kind == V_FLAT || v->kind == V_NHWC) && v->h == 1 && v->w == 1);
}

/* The input value k of a node, which must exist. */
static const val *input_val(im *s, const Onnx__NodeProto *n, size_t k)
{
    if (k >= n->n_input || !n->input[k][0])
        return NULL;
    return find_val(s, n->input[k]);
}

/* ---- the operators ---------------------------------------------------------------------- */

/* Window attributes of Conv and the pools: kernel, strides, dilations (Conv
 * only: libkdens' pools have none), pads (explicit or auto_pad, made
 * explicit for the input's size from the span (k - 1) * dilation + 1).
 * ceil_mode=1 is made explicit as padding after the input, where the
 * window still starts inside the input or the padding before it (as
 * PyTorch counts its outputs): only where ceil_ok (max pooling, and
 * averages over the cells inside the input, never read by padding). */
typedef struct window {
    int k[2], st[2], dil[2];
    int span[2];  /* (k - 1) * dil + 1: the pixels a window covers */
    int pads[4];  /* top, left, bottom, right (ONNX order) */
} window;

static bool auto_pad_is(const Onnx__AttributeProto *ap, const char *what)
{
    return ap->s.len == strlen(what) && memcmp(ap->s.data, what, ap->s.len) == 0;
}

static kdens_status read_window(im *s, const Onnx__NodeProto *n, const val *x, const int *kernel,
                                bool ceil_ok, bool dil_ok, window *win)
{
    const Onnx__AttributeProto *ap = attr(n, "auto_pad");
    bool same_upper = false, same_lower = false, valid = false;
    if (ap && ap->has_s && !auto_pad_is(ap, "NOTSET")) {
        same_upper = auto_pad_is(ap, "SAME_UPPER");
        same_lower = auto_pad_is(ap, "SAME_LOWER");
        valid = auto_pad_is(ap, "VALID");
        if (!same_upper && !same_lower && !valid)
            return node_error(s, n, KDENS_E_FORMAT, "unknown auto_pad");
        if (attr(n, "pads"))
            return node_error(s, n, KDENS_E_FORMAT, "both auto_pad and pads");
    }
    int64_t ceil_mode = attr_i(n, "ceil_mode", 0);
    if (ceil_mode != 0 && (!ceil_ok || ceil_mode != 1))
        return node_error(s, n, KDENS_E_FORMAT,
                          "ceil_mode=1 is supported only by MaxPool and by AveragePool with "
                          "count_include_pad=0");
    if (!attr_ints(n, "kernel_shape", 2, 1, 0, win->k) || (!kernel && !attr(n, "kernel_shape")) ||
        !attr_ints(n, "strides", 2, 1, 1, win->st) || !attr_ints(n, "pads", 4, 0, 0, win->pads) ||
        !attr_ints(n, "dilations", 2, 1, 1, win->dil))
        return node_error(s, n, KDENS_E_FORMAT,
                          "kernel_shape, strides, pads or dilations missing or out of range");
    if (!dil_ok && (win->dil[0] != 1 || win->dil[1] != 1))
        return node_error(s, n, KDENS_E_FORMAT,
                          "dilated pooling windows are not supported (libkdens' pools have no "
                          "dilation)");
    if (kernel && attr(n, "kernel_shape") && (win->k[0] != kernel[0] || win->k[1] != kernel[1]))
        return node_error(s, n, KDENS_E_FORMAT, "kernel_shape disagrees with the weights");
    if (kernel && !attr(n, "kernel_shape")) {
        win->k[0] = kernel[0];
        win->k[1] = kernel[1];
    }
    for (int d = 0; d < 2; d++) {
        long span = (long)(win->k[d] - 1) * win->dil[d] + 1;
        if (span > 65536) /* docs/spec.md's bound */
            return node_error(s, n, KDENS_E_FORMAT, "a dilated kernel spans %ld pixels", span);
        win->span[d] = (int)span;
    }
    const int in[2] = {x->h, x->w};
    for (int d = 0; d < 2; d++) {
        if (same_upper || same_lower) { /* output ceil(in / stride) */
            long out = ((long)in[d] + win->st[d] - 1) / win->st[d];
            long total = (out - 1) * win->st[d] + win->span[d] - in[d];
            if (total < 0)
                total = 0;
            int small = (int)(total / 2), big = (int)(total - total / 2);
            win->pads[d] = same_upper ? small : big;
            win->pads[d + 2] = same_upper ? big : small;
        } else if (valid) {
            win->pads[d] = win->pads[d + 2] = 0;
        }
        if (ceil_mode) {
            long span = (long)in[d] + win->pads[d] + win->pads[d + 2] - win->k[d];
            if (span < 0)
                return node_error(s, n, KDENS_E_SHAPE, "the window does not fit the input");
            long out = (span + win->st[d] - 1) / win->st[d] + 1;
            if ((out - 1) * win->st[d] >= (long)in[d] + win->pads[d])
                out--; /* the last window must start inside the input */
            long extra = (out - 1) * win->st[d] + win->k[d] - (span + win->k[d]);
            if (extra > 0)
                win->pads[d + 2] += (int)extra;
        }
    }
    return KDENS_OK;
}

/* The output size of a window; 0 when the window does not fit. */
static int window_out(int in, int k, int stride, int before, int after)
{
    long span = (long)in + before + after - k;
    return span < 0 ? 0 : (int)(span / stride + 1);
}

static kdens_status window_spec(im *s, const window *win)
{
    kdens_status st = spec_add(s, " kernel=%dx%d stride=%dx%d", win->k[0], win->k[1],
                               win->st[0], win->st[1]);
    if (st == KDENS_OK && (win->dil[0] != 1 || win->dil[1] != 1))
        st = spec_add(s, " dilation=%dx%d", win->dil[0], win->dil[1]);
    if (st != KDENS_OK)
        return st;
    return spec_add(s, " padding=%d,%d,%d,%d", win->pads[0], win->pads[2], win->pads[1],
                    win->pads[3]);
}

static kdens_status op_conv(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    const Onnx__TensorProto *wt = n->n_input > 1 ? find_init(s, n->input[1]) : NULL;
    if (!x || !as_map(x) || !wt || wt->n_dims != 4)
        return node_error(s, n, KDENS_E_FORMAT,
                          "needs a map input and a 4-D weight initializer [O, I/groups, kh, kw]");
    int64_t groups = attr_i(n, "group", 1);
    for (int i = 0; i < 4; i++)
        if (wt->dims[i] < 1 || wt->dims[i] > 65536)
            return node_error(s, n, KDENS_E_FORMAT, "weight dimension out of range");
    int co = (int)wt->dims[0], ci = (int)wt->dims[1], kh = (int)wt->dims[2],
        kw = (int)wt->dims[3];
    if (groups < 1 || groups > x->c || (long)ci * groups != x->c || co % groups)
        return node_error(s, n, KDENS_E_SHAPE, "%d input channels, weights for %d x %lld groups",
                          x->c, ci, (long long)groups);
    window win;
    kdens_status st = read_window(s, n, x, (const int[]){kh, kw}, false, true, &win);
    if (st != KDENS_OK)
        return st;
    int oh = window_out(x->h, win.span[0], win.st[0], win.pads[0], win.pads[2]);
    int ow = window_out(x->w, win.span[1], win.st[1], win.pads[1], win.pads[3]);
    size_t count;
    if (!tensor_count(wt, &count))
        return node_error(s, n, KDENS_E_FORMAT, "weights of too many values");
    float *w = tensor_floats(s, n, wt, count, "weights");
    float *hwio = w ? malloc(sizeof(float) * count) : NULL;
    if (!hwio) {
        free(w);
        return w ? nomem() : KDENS_E_FORMAT;
    }
    for (int o = 0; o < co; o++) /* OIHW -> HWIO */
        for (int i = 0; i < ci; i++)
            for (int y = 0; y < kh; y++)
                for (int xx = 0; xx < kw; xx++)
                    hwio[(((size_t)y * kw + xx) * ci + i) * co + o] =
                        w[(((size_t)o * ci + i) * kh + y) * kw + xx];
    free(w);
    float *b = NULL;
    if (n->n_input > 2 && n->input[2][0] &&
        !(b = tensor_floats(s, n, find_init(s, n->input[2]), (size_t)co, "bias"))) {
        free(hwio);
        return KDENS_E_FORMAT;
    }
    int id;
    st = new_layer(s, n, "conv", oh, ow, co, &id);
    if (st == KDENS_OK)
        st = spec_add(s, " filters=%d groups=%lld bias=%d", co, (long long)groups, b != NULL);
    if (st == KDENS_OK)
        st = window_spec(s, &win);
    if (st == KDENS_OK)
        st = end_line(s, 1, &x);
    st = st == KDENS_OK ? add_param(s, id, "kernel", hwio, count) : (free(hwio), st);
    if (b)
        st = st == KDENS_OK ? add_param(s, id, "bias", b, (size_t)co) : (free(b), st);
    return st == KDENS_OK ? layer_out(s, n, id, V_NCHW) : st;
}

/* Gemm's kernel as [F, units]: transposed when transB, rows permuted from
 * NCHW to NHWC order when its input is an NCHW flatten. */
static float *gemm_kernel(im *s, const Onnx__NodeProto *n, const val *x, int f, int u)
{
    bool trans = strcmp(n->op_type, "Gemm") == 0 && attr_i(n, "transB", 0) != 0;
    float *w = tensor_floats(s, n, n->n_input > 1 ? find_init(s, n->input[1]) : NULL,
                             (size_t)f * u, "weights");
    const Onnx__TensorProto *t = n->n_input > 1 ? find_init(s, n->input[1]) : NULL;
    if (!w)
        return NULL;
    if (t->n_dims != 2 || t->dims[0] != (trans ? u : f)) {
        free(w);
        node_error(s, n, KDENS_E_SHAPE, "weights are not [%d, %d]", trans ? u : f, trans ? f : u);
        return NULL;
    }
    float *k = malloc(sizeof(float) * (size_t)f * u);
    if (!k) {
        free(w);
        nomem();
        return NULL;
    }
    for (int r = 0; r < f; r++) {
        int src = r; /* row r of libkdens' kernel: NHWC feature (y, x, c) */
        if (x->kind == V_FLAT_NCHW) {
            int c = r % x->c, pix = r / x->c;
            src = c * x->h * x->w + pix;
        }
        for (int j = 0; j < u; j++)
            k[(size_t)r * u + j] = trans ? w[(size_t)j * f + src] : w[(size_t)src * u + j];
    }
    free(w);
    return k;
}

/* Gemm, and MatMul by a constant [features, units]: a dense layer.  A
 * MatMul's layer gets a zero bias that the Add reading it alone fills. */
static kdens_status op_gemm(im *s, const Onnx__NodeProto *n)
{
    bool matmul = strcmp(n->op_type, "MatMul") == 0;
    const val *x = input_val(s, n, 0);
    const Onnx__TensorProto *wt = n->n_input > 1 ? find_init(s, n->input[1]) : NULL;
    if (!x || !(x->kind == V_FLAT || x->kind == V_FLAT_NCHW) || !wt || wt->n_dims != 2 ||
        (matmul && n->n_input != 2))
        return node_error(s, n, KDENS_E_FORMAT, "needs a flat input and a 2-D weight initializer");
    if (attr_i(n, "transA", 0) != 0 || attr_f(n, "alpha", 1.0f) != 1.0f ||
        attr_f(n, "beta", 1.0f) != 1.0f)
        return node_error(s, n, KDENS_E_FORMAT, "only transA=0, alpha=1 and beta=1 are supported");
    long f = (long)x->h * x->w * x->c;
    if (f > (1L << 28)) /* docs/spec.md's bound of a layer output */
        return node_error(s, n, KDENS_E_SHAPE, "input of %ld features", f);
    int64_t u = attr_i(n, "transB", 0) ? wt->dims[0] : wt->dims[1];
    if (u < 1 || u > 65536)
        return node_error(s, n, KDENS_E_SHAPE, "units out of range");
    float *k = gemm_kernel(s, n, x, (int)f, (int)u);
    if (!k)
        return KDENS_E_FORMAT;
    float *b = NULL;
    if (n->n_input > 2 && n->input[2][0] &&
        !(b = tensor_floats(s, n, find_init(s, n->input[2]), (size_t)u, "bias"))) {
        free(k);
        return KDENS_E_FORMAT;
    }
    if (matmul && !(b = calloc((size_t)u, sizeof(float)))) {
        free(k);
        return nomem();
    }
    int id;
    kdens_status st = new_layer(s, n, "dense", 1, 1, (int)u, &id);
    if (st == KDENS_OK)
        st = spec_add(s, " units=%d bias=%d", (int)u, b != NULL);
    if (st == KDENS_OK)
        st = end_line(s, 1, &x);
    st = st == KDENS_OK ? add_param(s, id, "kernel", k, (size_t)f * u) : (free(k), st);
    if (b)
        st = st == KDENS_OK ? add_param(s, id, "bias", b, (size_t)u) : (free(b), st);
    if (st == KDENS_OK)
        st = layer_out(s, n, id, V_FLAT);
    if (st == KDENS_OK && matmul)
        s->vals[s->n_vals - 1].bias = s->n_params; /* 1 + the bias' index */
    return st;
}

static kdens_status op_batchnorm(im *s, const Onnx__NodeProto *n)
{
    static const char *const names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const val *x = input_val(s, n, 0);
    if (!x || !(as_map(x) || x->kind == V_FLAT) || n->n_input != 5)
        return node_error(s, n, KDENS_E_FORMAT, "needs a layer's output and four initializers");
    float eps = attr_f(n, "epsilon", 1e-5f);
    if (!(eps > 0) || n->n_output != 1)
        return node_error(s, n, KDENS_E_FORMAT, "epsilon must be > 0, one output (inference)");
    float *p[4] = {NULL};
    for (int i = 0; i < 4; i++)
        if (!(p[i] = tensor_floats(s, n, find_init(s, n->input[i + 1]), (size_t)x->c, names[i]))) {
            for (int k = 0; k < i; k++)
                free(p[k]);
            return KDENS_E_FORMAT;
        }
    int id;
    kdens_status st = new_layer(s, n, "batchnorm", x->h, x->w, x->c, &id);
    if (st == KDENS_OK)
        st = spec_add(s, " eps=%.9g", (double)eps);
    if (st == KDENS_OK)
        st = end_line(s, 1, &x);
    for (int i = 0; i < 4; i++)
        st = st == KDENS_OK ? add_param(s, id, names[i], p[i], (size_t)x->c) : (free(p[i]), st);
    return st == KDENS_OK ? layer_out(s, n, id, x->kind == V_FLAT ? V_FLAT : V_NCHW) : st;
}

/* A layer of one input and the input's shape (activations, gap's kin). */
static kdens_status same_shape_layer(im *s, const Onnx__NodeProto *n, const val *x,
                                     const char *type)
{
    if (!x || !(as_map(x) || x->kind == V_FLAT))
        return node_error(s, n, KDENS_E_FORMAT, "reads no layer's output");
    int id;
    kdens_status st = new_layer(s, n, type, x->h, x->w, x->c, &id);
    if (st == KDENS_OK)
        st = end_line(s, 1, &x);
    return st == KDENS_OK ? layer_out(s, n, id, x->kind == V_FLAT ? V_FLAT : V_NCHW) : st;
}

/* Sigmoid and HardSigmoid: a gate when x * gate is their only reader. */
static kdens_status op_sigmoid(im *s, const Onnx__NodeProto *n, bool hard)
{
    const val *x = input_val(s, n, 0);
    if (hard && (fabsf(attr_f(n, "alpha", 0.2f) - 1.0f / 6.0f) > 1e-7f ||
                 attr_f(n, "beta", 0.5f) != 0.5f))
        return node_error(s, n, KDENS_E_FORMAT,
                          "only alpha=1/6, beta=1/2 (relu6(x + 3) / 6) is supported");
    int only; /* x * gate(x): the Mul, the gate's one reader */
    const Onnx__NodeProto *m =
        x && readers(s, n->output[0], &only) == 1 && only >= 0 ? s->g->node[only] : NULL;
    if (m && m->op_type && strcmp(m->op_type, "Mul") == 0 && m->n_input == 2 &&
        ((strcmp(m->input[0], n->input[0]) == 0 && strcmp(m->input[1], n->output[0]) == 0) ||
         (strcmp(m->input[1], n->input[0]) == 0 && strcmp(m->input[0], n->output[0]) == 0))) {
        val v = *x;
        v.kind = V_GATE;
        v.op = hard;
        v.scalar = 0;
        v.tensor = NULL;
        /* remember x by its value name in the gate's own record */
        v.name = NULL;
        v.layer = x->layer;
        return add_val(s, n->output[0], v);
    }
    return same_shape_layer(s, n, x, hard ? "hard_sigmoid" : "sigmoid");
}

static kdens_status op_clip(im *s, const Onnx__NodeProto *n)
{
    float lo = -INFINITY, hi = INFINITY;
    bool has_lo = n->n_input > 1 && n->input[1][0], has_hi = n->n_input > 2 && n->input[2][0];
    if (n->n_input > 3 || (has_lo && !scalar_of(s, n->input[1], &lo)) ||
        (has_hi && !scalar_of(s, n->input[2], &hi)) || lo != 0.0f || !(hi == 6.0f || !has_hi))
        return node_error(s, n, KDENS_E_FORMAT,
                          "only Clip(x, 0, 6) (relu6) and Clip(x, 0) (relu) are supported");
    return same_shape_layer(s, n, input_val(s, n, 0), has_hi ? "relu6" : "relu");
}

static kdens_status op_softmax(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    if (attr_i(n, "axis", -1) != 1 && !(x && x->kind == V_FLAT && attr_i(n, "axis", -1) == -1))
        return node_error(s, n, KDENS_E_FORMAT, "only a softmax over the channels (axis 1)");
    return same_shape_layer(s, n, x, "softmax");
}

/* Max(x, c) read by a Log: ln(max(x, 1e-30)). */
static kdens_status op_max(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    float c;
    if (!x || n->n_input != 2 || !scalar_of(s, n->input[1], &c) || c != 1e-30f)
        return node_error(s, n, KDENS_E_FORMAT, "only Max(x, 1e-30) before a Log is supported");
    val v = *x;
    v.kind = V_FLOOR;
    v.scalar = c;
    return add_val(s, n->output[0], v);
}

static kdens_status op_log(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    if (!x || x->kind != V_FLOOR)
        return node_error(s, n, KDENS_E_FORMAT, "only Log(Max(x, 1e-30)) is supported");
    val in = *x;
    in.kind = in.h == 1 && in.w == 1 ? V_FLAT : V_NCHW;
    return same_shape_layer(s, n, &in, "log");
}

static kdens_status op_pool(im *s, const Onnx__NodeProto *n, bool max)
{
    const val *x = input_val(s, n, 0);
    if (!x || !as_map(x))
        return node_error(s, n, KDENS_E_FORMAT, "reads no map");
    bool include_pad = !max && attr_i(n, "count_include_pad", 0) != 0;
    if (max && n->n_output > 1)
        return node_error(s, n, KDENS_E_FORMAT, "the Indices output is not supported");
    window win;
    kdens_status st = read_window(s, n, x, NULL, !include_pad, false, &win);
    if (st != KDENS_OK)
        return st;
    int id;
    val padded;
    if (include_pad && (win.pads[0] || win.pads[1] || win.pads[2] || win.pads[3])) {
        /* padding counted in the average (PyTorch's default): zeros, then
         * an average over the padded map */
        st = new_layer(s, n, "zeropad", x->h + win.pads[0] + win.pads[2],
                       x->w + win.pads[1] + win.pads[3], x->c, &id);
        if (st == KDENS_OK)
            st = spec_add(s, " pad=%d,%d,%d,%d", win.pads[0], win.pads[2], win.pads[1],
                          win.pads[3]);
        if (st == KDENS_OK)
            st = end_line(s, 1, &x);
        if (st != KDENS_OK)
            return st;
        padded = *x;
        padded.kind = V_NCHW;
        padded.layer = id;
        padded.h = s->layers[id].h;
        padded.w = s->layers[id].w;
        x = &padded;
        memset(win.pads, 0, sizeof win.pads);
    }
    st = new_layer(s, n, max ? "maxpool" : "avgpool",
                   window_out(x->h, win.k[0], win.st[0], win.pads[0], win.pads[2]),
                   window_out(x->w, win.k[1], win.st[1], win.pads[1], win.pads[3]), x->c, &id);
    if (st == KDENS_OK) { /* pools call the window "size" */
        st = spec_add(s, " size=%dx%d stride=%dx%d padding=%d,%d,%d,%d", win.k[0], win.k[1],
                      win.st[0], win.st[1], win.pads[0], win.pads[2], win.pads[1], win.pads[3]);
    }
    if (st == KDENS_OK)
        st = end_line(s, 1, &x);
    return st == KDENS_OK ? layer_out(s, n, id, V_NCHW) : st;
}

/* GlobalAveragePool, and ReduceMean over H and W (x.mean((2, 3))). */
static kdens_status op_gap(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    if (!x || !as_map(x))
        return node_error(s, n, KDENS_E_FORMAT, "reads no map");
    bool keep = true;
    if (strcmp(n->op_type, "ReduceMean") == 0) {
        const Onnx__AttributeProto *axes = attr(n, "axes");
        bool hw = axes && axes->n_ints == 2;
        for (size_t i = 0; hw && i < 2; i++) {
            int64_t a = axes->ints[i] < 0 ? axes->ints[i] + 4 : axes->ints[i];
            hw = a == 2 + (int64_t)i;
        }
        if (!hw || n->n_input != 1 || (x->kind != V_NCHW && x->kind != V_RAW))
            return node_error(s, n, KDENS_E_FORMAT, "only a mean over H and W (axes 2, 3)");
        keep = attr_i(n, "keepdims", 1) != 0;
    }
    int id;
    kdens_status st = new_layer(s, n, "gap", 1, 1, x->c, &id);
    if (st == KDENS_OK)
        st = end_line(s, 1, &x);
    return st == KDENS_OK ? layer_out(s, n, id, keep ? V_NCHW : V_FLAT) : st;
}

static bool ints_of(im *s, const Onnx__NodeProto *n, size_t k, val *out);

/* Pad: constant zeros on H and W only; the pads a constant, or computed
 * from constants (PyTorch's F.pad). */
static kdens_status op_pad(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    val t = {0};
    const Onnx__AttributeProto *mode = attr(n, "mode");
    float fill = 0;
    if (n->n_input > 2 && n->input[2][0] && (!scalar_of(s, n->input[2], &fill) || fill != 0))
        return node_error(s, n, KDENS_E_FORMAT, "only zero padding is supported");
    if (mode && !(mode->s.len == 8 && memcmp(mode->s.data, "constant", 8) == 0))
        return node_error(s, n, KDENS_E_FORMAT, "only mode=constant is supported");
    if (!x || !as_map(x) || !ints_of(s, n, 1, &t) || t.rank != 1 || t.n_ints != 8)
        return node_error(s, n, KDENS_E_FORMAT, "needs a map and 8 int64 pads");
    const int64_t *p = t.ints;
    if (p[0] || p[1] || p[4] || p[5])
        return node_error(s, n, KDENS_E_FORMAT, "pads on the batch or channel axis");
    for (int i = 2; i < 8; i++)
        if (p[i] < 0 || p[i] > 65536)
            return node_error(s, n, KDENS_E_FORMAT, "pads out of range");
    int id;
    kdens_status st = new_layer(s, n, "zeropad", x->h + (int)(p[2] + p[6]),
                                x->w + (int)(p[3] + p[7]), x->c, &id);
    if (st == KDENS_OK)
        st = spec_add(s, " pad=%d,%d,%d,%d", (int)p[2], (int)p[6], (int)p[3], (int)p[7]);
    if (st == KDENS_OK)
        st = end_line(s, 1, &x);
    return st == KDENS_OK ? layer_out(s, n, id, V_NCHW) : st;
}

/* x flattened to [N, features]: libkdens' own flatten layer after a
 * Transpose to NHWC, a view otherwise (in NCHW order when larger than 1x1:
 * then only a Gemm may read it). */
static kdens_status flatten_view(im *s, const Onnx__NodeProto *n, const val *x)
{
    if (x->kind == V_NHWC && (x->h > 1 || x->w > 1)) { /* libkdens' own flatten */
        val in = *x;
        in.kind = V_NCHW;
        const val *pin = &in;
        int id;
        kdens_status st = new_layer(s, n, "flatten", 1, 1, x->h * x->w * x->c, &id);
        if (st == KDENS_OK)
            st = end_line(s, 1, &pin);
        return st == KDENS_OK ? layer_out(s, n, id, V_FLAT) : st;
    }
    val v = *x;
    v.bias = 0; /* a MatMul's bias is filled only through its own output */
    v.kind = x->h == 1 && x->w == 1 ? V_FLAT : x->kind == V_FLAT ? V_FLAT : V_FLAT_NCHW;
    return add_val(s, n->output[0], v);
}

/* The values of input k: a V_SHAPE value or an int64 constant. */
static bool ints_of(im *s, const Onnx__NodeProto *n, size_t k, val *out)
{
    const val *v = input_val(s, n, k);
    if (v)
        return v->kind == V_SHAPE ? (*out = *v, true) : false;
    if (k >= n->n_input)
        return false;
    const Onnx__TensorProto *t = find_init(s, n->input[k]);
    size_t count;
    if (!t || t->n_dims > 2 || !tensor_int64s(t, out->ints, IM_MAX_INTS, &count))
        return false;
    out->kind = V_SHAPE;
    out->layer = -1;
    out->n_ints = (int)count;
    out->rank = (int)t->n_dims;
    if (t->n_dims == 2 && (count == 0 || t->dims[1] < 1 || t->dims[1] > IM_MAX_INTS))
        return false;
    out->cols = t->n_dims == 2 ? (int)t->dims[1] : 0;
    return true;
}

/* Whether input k is ints known at load. */
static bool is_ints(im *s, const Onnx__NodeProto *n, size_t k)
{
    val v;
    return ints_of(s, n, k, &v);
}

/* ---- more arithmetic on ints, for the pads of PyTorch's F.pad:
 * ConstantOfShape, Reshape, Slice, Transpose and Cast of ints ---- */

static kdens_status op_constant_of_shape(im *s, const Onnx__NodeProto *n)
{
    val shape = {0}, v = {0};
    const Onnx__AttributeProto *a = attr(n, "value");
    size_t one = 0;
    int64_t fill = 0;
    if (!ints_of(s, n, 0, &shape) || shape.rank != 1 || shape.n_ints != 1 || shape.ints[0] < 0 ||
        shape.ints[0] > IM_MAX_INTS || !a || !a->t || !tensor_int64s(a->t, &fill, 1, &one) ||
        one != 1)
        return node_error(s, n, KDENS_E_FORMAT,
                          "only a short int64 vector of a constant value is supported");
    v.kind = V_SHAPE;
    v.layer = -1;
    v.rank = 1;
    v.n_ints = (int)shape.ints[0];
    for (int i = 0; i < v.n_ints; i++)
        v.ints[i] = fill;
    return add_val(s, n->output[0], v);
}

static kdens_status op_reshape_ints(im *s, const Onnx__NodeProto *n)
{
    val x = {0}, t = {0};
    if (!ints_of(s, n, 0, &x) || !ints_of(s, n, 1, &t) || t.rank != 1 || t.n_ints < 1 ||
        t.n_ints > 2 || attr_i(n, "allowzero", 0) != 0)
        return node_error(s, n, KDENS_E_FORMAT, "only ints reshaped to 1 or 2 dimensions");
    int64_t d[2] = {t.ints[0], t.n_ints == 2 ? t.ints[1] : 1};
    int free_at = -1;
    for (int i = 0; i < t.n_ints; i++) {
        if (d[i] == -1 && free_at < 0)
            free_at = i;
        else if (d[i] < 1 || d[i] > IM_MAX_INTS)
            return node_error(s, n, KDENS_E_FORMAT, "target shape out of range");
    }
    if (free_at >= 0) {
        int64_t known = d[1 - free_at];
        if (t.n_ints == 1)
            known = 1;
        if (x.n_ints % known)
            return node_error(s, n, KDENS_E_FORMAT, "target shape does not fit");
        d[free_at] = x.n_ints / known;
    }
    if (d[0] * d[1] != x.n_ints || d[1] < 1 || (t.n_ints == 2 && d[0] < 1))
        return node_error(s, n, KDENS_E_FORMAT, "target shape does not fit");
    x.rank = t.n_ints;
    x.cols = t.n_ints == 2 ? (int)d[1] : 0;
    return add_val(s, n->output[0], x);
}

/* Slice of ints along one axis (any step). */
static kdens_status op_slice_ints(im *s, const Onnx__NodeProto *n)
{
    val x = {0}, st = {0}, en = {0}, ax = {0}, sp = {0};
    bool has_axes = n->n_input > 3 && n->input[3][0], has_steps = n->n_input > 4 && n->input[4][0];
    if (!ints_of(s, n, 0, &x) || x.rank < 1 || !ints_of(s, n, 1, &st) || st.n_ints != 1 ||
        !ints_of(s, n, 2, &en) || en.n_ints != 1 ||
        (has_axes && (!ints_of(s, n, 3, &ax) || ax.n_ints != 1)) ||
        (has_steps && (!ints_of(s, n, 4, &sp) || sp.n_ints != 1)))
        return node_error(s, n, KDENS_E_FORMAT, "only a slice of ints along one axis");
    int64_t axis = has_axes ? ax.ints[0] : 0, step = has_steps ? sp.ints[0] : 1;
    if (axis < 0)
        axis += x.rank;
    int rows = x.rank == 2 ? x.n_ints / x.cols : x.n_ints, cols = x.rank == 2 ? x.cols : 1;
    if (axis < 0 || axis >= x.rank || step == 0 || step == IM_BATCH || st.ints[0] == IM_BATCH ||
        en.ints[0] == IM_BATCH)
        return node_error(s, n, KDENS_E_FORMAT, "axis or step out of range");
    int64_t dim = axis == 0 ? rows : cols, b = st.ints[0], e = en.ints[0];
    if (b < 0)
        b += dim;
    if (e < 0)
        e += dim;
    int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? dim : dim - 1;
    b = b < 0 ? 0 : b > hi ? hi : b;
    e = e < lo ? lo : e > hi ? hi : e;
    if (step > IM_MAX_INTS || step < -IM_MAX_INTS) /* the same picks, no overflow */
        step = step > 0 ? IM_MAX_INTS : -IM_MAX_INTS;
    int64_t pick[IM_MAX_INTS];
    int k = 0;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step)
        pick[k++] = i;
    val v = x;
    int n_rows = axis == 0 ? k : rows, n_cols = axis == 0 ? cols : k;
    v.n_ints = n_rows * n_cols;
    for (int r = 0; r < n_rows; r++)
        for (int c = 0; c < n_cols; c++)
            v.ints[r * n_cols + c] =
                x.ints[(axis == 0 ? pick[r] : r) * cols + (axis == 0 ? c : pick[c])];
    v.cols = x.rank == 2 ? n_cols : 0;
    if (x.rank == 2 && n_cols == 0)
        return node_error(s, n, KDENS_E_FORMAT, "an empty slice");
    return add_val(s, n->output[0], v);
}

static kdens_status op_transpose_ints(im *s, const Onnx__NodeProto *n)
{
    val x = {0};
    const Onnx__AttributeProto *perm = attr(n, "perm");
    if (!ints_of(s, n, 0, &x) || x.rank != 2 ||
        (perm && (perm->n_ints != 2 || perm->ints[0] != 1 || perm->ints[1] != 0)))
        return node_error(s, n, KDENS_E_FORMAT, "only the transpose of a matrix of ints");
    val v = x;
    int rows = x.n_ints / x.cols;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < x.cols; c++)
            v.ints[c * rows + r] = x.ints[r * x.cols + c];
    v.cols = rows;
    return add_val(s, n->output[0], v);
}

static kdens_status op_cast_ints(im *s, const Onnx__NodeProto *n)
{
    val x = {0};
    if (!ints_of(s, n, 0, &x) || attr_i(n, "to", 0) != ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
        return node_error(s, n, KDENS_E_FORMAT, "only a Cast of ints to int64");
    return add_val(s, n->output[0], x);
}

/* Reshape of a map or a flat value: to [N, features] (a flatten), or of a
 * 1x1 map to [N, C, 1, 1] or [N, C]; the target may be computed from the
 * input's Shape (PyTorch's x.view(x.size(0), -1)). */
static kdens_status op_reshape(im *s, const Onnx__NodeProto *n, const val *x)
{
    val t = {0};
    if (!ints_of(s, n, 1, &t) || t.rank != 1)
        return node_error(s, n, KDENS_E_FORMAT,
                          "the target shape must be an int64 constant or computed from Shape");
    if (attr_i(n, "allowzero", 0) != 0)
        return node_error(s, n, KDENS_E_FORMAT, "allowzero=1 is not supported");
    int64_t f = (int64_t)x->h * x->w * x->c;
    int64_t b = t.n_ints > 0 ? t.ints[0] : 0;
    bool batch = b == IM_BATCH || b == 0 || (s->in_batch > 0 && b == s->in_batch);
    if (t.n_ints == 2 && ((batch && (t.ints[1] == -1 || t.ints[1] == f)) ||
                          (b == -1 && t.ints[1] == f)))
        return flatten_view(s, n, x);
    if (t.n_ints == 4 && x->h == 1 && x->w == 1 && (batch || (b == -1 && t.ints[1] == x->c)) &&
        (t.ints[1] == x->c || t.ints[1] == -1) && t.ints[2] == 1 && t.ints[3] == 1) {
        val v = *x;
        v.bias = 0;
        v.kind = V_NCHW;
        return add_val(s, n->output[0], v);
    }
    return node_error(s, n, KDENS_E_FORMAT,
                      "only reshapes to [N, features] or of 1x1 maps to [N, C, 1, 1] are "
                      "supported");
}

/* ---- shape arithmetic, evaluated at load: Shape, Gather, Unsqueeze,
 * Squeeze, Concat of ints (the batch stays a symbol, IM_BATCH) ---- */

static kdens_status op_shape(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    if (!x || (x->kind > V_RAW) || attr(n, "start") || attr(n, "end"))
        return node_error(s, n, KDENS_E_FORMAT,
                          "only the whole shape of a layer's output is supported");
    val v = {0};
    v.kind = V_SHAPE;
    v.layer = -1;
    v.rank = 1;
    v.ints[0] = s->in_batch > 0 ? s->in_batch : IM_BATCH;
    if (x->kind == V_FLAT || x->kind == V_FLAT_NCHW) {
        v.n_ints = 2;
        v.ints[1] = (int64_t)x->h * x->w * x->c;
    } else {
        v.n_ints = 4;
        bool nhwc = x->kind == V_NHWC;
        v.ints[1] = nhwc ? x->h : x->c;
        v.ints[2] = nhwc ? x->w : x->h;
        v.ints[3] = nhwc ? x->c : x->w;
    }
    return add_val(s, n->output[0], v);
}

static kdens_status op_gather(im *s, const Onnx__NodeProto *n)
{
    val d = {0}, i = {0};
    if (n->n_input != 2 || !ints_of(s, n, 0, &d) || d.rank != 1 || !ints_of(s, n, 1, &i) ||
        attr_i(n, "axis", 0) != 0)
        return node_error(s, n, KDENS_E_FORMAT,
                          "only Gather of int64 indices from a shape is supported");
    val v = i;
    for (int k = 0; k < i.n_ints; k++) {
        int64_t at = i.ints[k] < 0 ? i.ints[k] + d.n_ints : i.ints[k];
        if (at < 0 || at >= d.n_ints)
            return node_error(s, n, KDENS_E_FORMAT, "index out of range");
        v.ints[k] = d.ints[at];
    }
    return add_val(s, n->output[0], v);
}

/* Unsqueeze of a scalar to [1], Squeeze of [1] to a scalar (axes 0). */
static kdens_status op_squeeze(im *s, const Onnx__NodeProto *n, bool un)
{
    val x = {0}, axes = {0};
    bool has_axes = n->n_input > 1 && n->input[1][0];
    if (!ints_of(s, n, 0, &x) || x.rank != (un ? 0 : 1) || x.n_ints != 1 ||
        (has_axes && (!ints_of(s, n, 1, &axes) || axes.n_ints != 1 || axes.ints[0] != 0)) ||
        (un && !has_axes) || attr(n, "axes"))
        return node_error(s, n, KDENS_E_FORMAT,
                          "only a scalar computed from a shape to [1] and back is supported");
    x.rank = un;
    return add_val(s, n->output[0], x);
}

static kdens_status op_concat_ints(im *s, const Onnx__NodeProto *n)
{
    val v = {0};
    v.kind = V_SHAPE;
    v.layer = -1;
    v.rank = 1;
    if (attr_i(n, "axis", 0) != 0)
        return node_error(s, n, KDENS_E_FORMAT, "ints are concatenated along axis 0");
    for (size_t k = 0; k < n->n_input; k++) {
        val p = {0};
        if (!ints_of(s, n, k, &p) || p.rank != 1 || v.n_ints + p.n_ints > IM_MAX_INTS)
            return node_error(s, n, KDENS_E_FORMAT,
                              "input '%s' is not a short int64 vector known at load", n->input[k]);
        memcpy(v.ints + v.n_ints, p.ints, sizeof(int64_t) * (size_t)p.n_ints);
        v.n_ints += p.n_ints;
    }
    return add_val(s, n->output[0], v);
}

/* Whether a node's inputs are ints known at load (shape arithmetic). */
static bool reads_ints(im *s, const Onnx__NodeProto *n)
{
    for (size_t k = 0; k < n->n_input; k++) {
        const val *v = input_val(s, n, k);
        const Onnx__TensorProto *t = v ? NULL : find_init(s, n->input[k]);
        if ((v && v->kind == V_SHAPE) ||
            (t && t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64))
            return true;
    }
    return false;
}

/* Transpose to NHWC, Flatten, Reshape, Identity, Dropout: views. */
static kdens_status op_view(im *s, const Onnx__NodeProto *n)
{
    const val *x = input_val(s, n, 0);
    if (!x || x->kind > V_RAW) /* the graph input: a Flatten for a Gemm, an Identity */
        return node_error(s, n, KDENS_E_FORMAT, "reads no layer's output");
    val v = *x;
    v.bias = 0;
    const char *op = n->op_type;
    if (strcmp(op, "Transpose") == 0) {
        if (x->kind == V_RAW && s->nhwc_input) /* channels-last input: the engine's layout */
            return add_val(s, n->output[0], v);
        if (x->kind != V_NCHW || !is_transpose(n, 0, 2, 3, 1))
            return node_error(s, n, KDENS_E_FORMAT,
                              "only NCHW -> NHWC (perm 0,2,3,1), or of a channels-last input "
                              "to NCHW (perm 0,3,1,2)");
        v.kind = V_NHWC;
    } else if (strcmp(op, "Flatten") == 0) {
        if (attr_i(n, "axis", 1) != 1)
            return node_error(s, n, KDENS_E_FORMAT, "only axis=1");
        return flatten_view(s, n, x);
    } else if (strcmp(op, "Reshape") == 0) {
        return op_reshape(s, n, x);
    } else if (n->n_output != 1) { /* Identity, Dropout: the mask output is not supported */
        return node_error(s, n, KDENS_E_FORMAT, "only one output");
    }
    return add_val(s, n->output[0], v);
}

/* Add, Sum, Mul, Concat of layers; and the pairs with constants. */
static kdens_status op_merge(im *s, const Onnx__NodeProto *n, const char *type)
{
    if (n->n_input == 1 && strcmp(type, "multiply") != 0) { /* of one: the value itself */
        const val *x = input_val(s, n, 0);
        if (!x || !(as_map(x) || x->kind == V_FLAT))
            return node_error(s, n, KDENS_E_FORMAT, "reads no layer's output");
        if (strcmp(type, "concat") == 0 && attr_i(n, "axis", 1) != 1)
            return node_error(s, n, KDENS_E_FORMAT, "only along the channels (axis 1)");
        val v = *x;
        v.bias = 0;
        return add_val(s, n->output[0], v);
    }
    if (n->n_input < 2 || n->n_input > 64)
        return node_error(s, n, KDENS_E_FORMAT, "2 to 64 inputs");
    const val *in[64] = {0}; /* (n_input >= 2: all set below; gcc -O1 cannot tell) */
    for (size_t k = 0; k < n->n_input; k++)
        if (!(in[k] = input_val(s, n, k)) || !(as_map(in[k]) || in[k]->kind == V_FLAT))
            return node_error(s, n, KDENS_E_FORMAT,
                              "input '%s' is not a layer's output (or a constant here)",
                              n->input[k]);
    const val *big = in[0];
    int c = 0;
    bool flat = true;
    for (size_t k = 0; k < n->n_input; k++) {
        if ((long)in[k]->h * in[k]->w > (long)big->h * big->w)
            big = in[k];
        c += in[k]->c;
        flat = flat && in[k]->kind == V_FLAT;
    }
    if (strcmp(type, "concat") == 0 && attr_i(n, "axis", 1) != 1)
        return node_error(s, n, KDENS_E_FORMAT, "only along the channels (axis 1)");
    int id;
    kdens_status st = new_layer(s, n, type, big->h, big->w,
                                strcmp(type, "concat") == 0 ? c : big->c, &id);
    if (st == KDENS_OK)
        st = end_line(s, (int)n->n_input, in);
    return st == KDENS_OK ? layer_out(s, n, id, flat ? V_FLAT : V_NCHW) : st;
}

/* Per-channel constant of c values shaped [1, C, 1, 1] or [C]. */
static const Onnx__TensorProto *channel_const(im *s, const char *name, int c)
{
    const Onnx__TensorProto *t = find_init(s, name);
    size_t count;
    if (!t || !tensor_count(t, &count) || count != (size_t)c)
        return NULL;
    if (t->n_dims == 1 || (t->n_dims == 4 && t->dims[1] == c))
        return t;
    return NULL;
}

static kdens_status op_mul(im *s, const Onnx__NodeProto *n)
{
    if (n->n_input != 2)
        return node_error(s, n, KDENS_E_FORMAT, "two inputs");
    const val *a = input_val(s, n, 0), *b = input_val(s, n, 1);
    if (a && b && (a->kind == V_GATE || b->kind == V_GATE)) { /* x * gate(x) */
        const val *gate = a->kind == V_GATE ? a : b, *x = a->kind == V_GATE ? b : a;
        return same_shape_layer(s, n, x, gate->op ? "hard_swish" : "swish");
    }
    if (a && !b) { /* a constant */
        float v;
        if (a->kind == V_RAW) {
            const Onnx__TensorProto *t = channel_const(s, n->input[1], s->in_c);
            if (!t)
                return node_error(s, n, KDENS_E_FORMAT, "the input scale is not per channel");
            val r = *a;
            r.kind = V_RAW_MUL;
            r.tensor = t;
            return add_val(s, n->output[0], r);
        }
        if (a->kind == V_CENTRED) { /* (x - mean) * inv_std: normalize */
            const Onnx__TensorProto *t = channel_const(s, n->input[1], a->c);
            float *mean = tensor_floats(s, n, a->tensor, (size_t)a->c, "mean");
            float *inv = mean && t ? tensor_floats(s, n, t, (size_t)a->c, "inv_std") : NULL;
            if (!inv) {
                free(mean);
                return mean && !t ? node_error(s, n, KDENS_E_FORMAT, "not per channel")
                                  : KDENS_E_FORMAT;
            }
            for (int k = 0; k < a->c; k++) /* variance whose 1/sqrt is inv_std */
                inv[k] = 1.0f / (inv[k] * inv[k]);
            val x = *a;
            x.kind = x.h == 1 && x.w == 1 ? V_FLAT : V_NCHW;
            const val *px = &x;
            int id;
            kdens_status st = new_layer(s, n, "normalize", x.h, x.w, x.c, &id);
            if (st == KDENS_OK)
                st = end_line(s, 1, &px);
            st = st == KDENS_OK ? add_param(s, id, "mean", mean, (size_t)x.c) : (free(mean), st);
            st = st == KDENS_OK ? add_param(s, id, "variance", inv, (size_t)x.c) : (free(inv), st);
            return st == KDENS_OK ? layer_out(s, n, id, x.kind) : st;
        }
        if ((as_map(a) || a->kind == V_FLAT) && scalar_of(s, n->input[1], &v)) {
            val r = *a;
            r.kind = V_MUL_SCALAR;
            r.scalar = v;
            return add_val(s, n->output[0], r);
        }
        return node_error(s, n, KDENS_E_FORMAT, "a product with this constant is not supported");
    }
    if (!a)
        return node_error(s, n, KDENS_E_FORMAT, "the first input must be a layer's output");
    return op_merge(s, n, "multiply");
}

static kdens_status op_add(im *s, const Onnx__NodeProto *n)
{
    const val *a = input_val(s, n, 0), *b = n->n_input == 2 ? input_val(s, n, 1) : NULL;
    size_t ka = 0, kc = 1; /* the layer's input and the constant's */
    if (!a && b) {
        a = b;
        b = NULL;
        ka = 1;
        kc = 0;
    }
    if (a && !b && n->n_input == 2) {
        float v;
        if (a->kind == V_RAW_MUL) { /* the input scaling, done */
            const Onnx__TensorProto *t = channel_const(s, n->input[kc], s->in_c);
            if (!t || s->in_scale)
                return node_error(s, n, KDENS_E_FORMAT, "the input offset is not per channel");
            s->in_scale = tensor_floats(s, n, a->tensor, (size_t)s->in_c, "input scale");
            s->in_offset = s->in_scale ? tensor_floats(s, n, t, (size_t)s->in_c, "input offset")
                                       : NULL;
            if (!s->in_offset)
                return KDENS_E_FORMAT;
            val r = *a;
            r.kind = V_NCHW;
            return add_val(s, n->output[0], r);
        }
        /* MatMul + bias */
        if (a->bias && a->kind == V_FLAT && readers(s, n->input[ka], NULL) == 1) {
            pending *p = &s->params[a->bias - 1];
            float *bias = tensor_floats(s, n, find_init(s, n->input[kc]), p->count, "bias");
            if (!bias)
                return KDENS_E_FORMAT;
            free(p->data);
            p->data = bias;
            val r = *a;
            r.bias = 0;
            return add_val(s, n->output[0], r);
        }
        bool plain = as_map(a) || a->kind == V_FLAT;
        if ((a->kind == V_MUL_SCALAR || plain) && scalar_of(s, n->input[kc], &v)) { /* rescale */
            val x = *a;
            x.kind = x.h == 1 && x.w == 1 ? V_FLAT : V_NCHW;
            const val *px = &x;
            int id;
            kdens_status st = new_layer(s, n, "rescale", x.h, x.w, x.c, &id);
            if (st == KDENS_OK)
                st = spec_add(s, " scale=%.9g offset=%.9g",
                              (double)(plain ? 1.0f : a->scalar), (double)v);
            if (st == KDENS_OK)
                st = end_line(s, 1, &px);
            return st == KDENS_OK ? layer_out(s, n, id, x.kind) : st;
        }
        return node_error(s, n, KDENS_E_FORMAT, "a sum with this constant is not supported");
    }
    return op_merge(s, n, "add");
}

static kdens_status op_sub(im *s, const Onnx__NodeProto *n)
{
    const val *a = input_val(s, n, 0);
    const Onnx__TensorProto *t = n->n_input == 2 && a ? channel_const(s, n->input[1], a->c) : NULL;
    if (!a || !t || !(as_map(a) || a->kind == V_FLAT))
        return node_error(s, n, KDENS_E_FORMAT, "only x - (per-channel mean) is supported");
    val r = *a;
    r.kind = V_CENTRED;
    r.tensor = t;
    return add_val(s, n->output[0], r);
}

/* One node of the graph. */
static kdens_status import_node(im *s, const Onnx__NodeProto *n)
{
    const char *op = n->op_type ? n->op_type : "";
    if (n->n_output < 1 || !n->output[0][0] || (n->domain && n->domain[0] &&
                                                strcmp(n->domain, "ai.onnx") != 0))
        return node_error(s, n, KDENS_E_NOTFOUND, "operator not supported (a custom domain)");
    if (n->n_output > 1 && strcmp(op, "Dropout") != 0 && strcmp(op, "MaxPool") != 0 &&
        strcmp(op, "BatchNormalization") != 0)
        return node_error(s, n, KDENS_E_FORMAT, "more than one output");
    if (!strcmp(op, "Constant") || (!strcmp(op, "Identity") && find_init(s, n->output[0])))
        return KDENS_OK; /* read before, as constants */
    for (size_t k = 0; k < n->n_input; k++) /* ONNX lists nodes in topological order */
        if (n->input[k][0] && !find_val(s, n->input[k]) && !find_init(s, n->input[k]))
            return node_error(s, n, KDENS_E_FORMAT,
                              "input '%s' is computed by no node before this one (the nodes "
                              "are not in topological order, or form a cycle)", n->input[k]);
    if (!strcmp(op, "Conv"))
        return op_conv(s, n);
    if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul"))
        return op_gemm(s, n);
    if (!strcmp(op, "Shape"))
        return op_shape(s, n);
    if (!strcmp(op, "Gather"))
        return op_gather(s, n);
    if (!strcmp(op, "Unsqueeze") || !strcmp(op, "Squeeze"))
        return op_squeeze(s, n, op[0] == 'U');
    if (!strcmp(op, "Concat") && reads_ints(s, n))
        return op_concat_ints(s, n);
    if (!strcmp(op, "ConstantOfShape"))
        return op_constant_of_shape(s, n);
    if (!strcmp(op, "Slice") && is_ints(s, n, 0))
        return op_slice_ints(s, n);
    if (!strcmp(op, "Cast") && is_ints(s, n, 0))
        return op_cast_ints(s, n);
    if ((!strcmp(op, "Reshape") || !strcmp(op, "Transpose")) && is_ints(s, n, 0))
        return op[0] == 'R' ? op_reshape_ints(s, n) : op_transpose_ints(s, n);
    if (!strcmp(op, "BatchNormalization"))
        return op_batchnorm(s, n);
    if (!strcmp(op, "Relu"))
        return same_shape_layer(s, n, input_val(s, n, 0), "relu");
    if (!strcmp(op, "Tanh"))
        return same_shape_layer(s, n, input_val(s, n, 0), "tanh");
    if (!strcmp(op, "Sigmoid") || !strcmp(op, "HardSigmoid"))
        return op_sigmoid(s, n, op[0] == 'H');
    if (!strcmp(op, "HardSwish"))
        return same_shape_layer(s, n, input_val(s, n, 0), "hard_swish");
    if (!strcmp(op, "Clip"))
        return op_clip(s, n);
    if (!strcmp(op, "Softmax"))
        return op_softmax(s, n);
    if (!strcmp(op, "Max"))
        return op_max(s, n);
    if (!strcmp(op, "Log"))
        return op_log(s, n);
    if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool"))
        return op_pool(s, n, op[0] == 'M');
    if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "ReduceMean"))
        return op_gap(s, n);
    if (!strcmp(op, "Pad"))
        return op_pad(s, n);
    if (!strcmp(op, "Transpose") || !strcmp(op, "Flatten") || !strcmp(op, "Reshape") ||
        !strcmp(op, "Identity") || !strcmp(op, "Dropout"))
        return op_view(s, n);
    if (!strcmp(op, "Add") || !strcmp(op, "Sum"))
        return op_add(s, n);
    if (!strcmp(op, "Mul"))
        return op_mul(s, n);
    if (!strcmp(op, "Sub"))
        return op_sub(s, n);
    if (!strcmp(op, "Concat"))
        return op_merge(s, n, "concat");
    return node_error(s, n, KDENS_E_NOTFOUND, "operator not supported by libkdens' import");
}

/* ---- the model ------------------------------------------------------------------------- */

/* A graph that takes images channels-last (Keras' layout, as tf2onnx writes
 * it, or x.permute(0, 3, 1, 2) in PyTorch): the input's one reader is a
 * Transpose to NCHW.  libkdens computes NHWC, so that input is the engine's
 * own and the Transpose is no work at all. */
static bool nhwc_input(const im *s, const char *name)
{
    int node = -1;
    if (readers(s, name, &node) != 1 || node < 0)
        return false;
    const Onnx__NodeProto *n = s->g->node[node];
    return n->n_input == 1 && is_transpose(n, 0, 3, 1, 2);
}

/* The graph's one data input: [N, C, H, W] floats, or [N, H, W, C] read by
 * a Transpose to NCHW (initializers listed as inputs, as older files do, are
 * skipped). */
static kdens_status read_input(im *s)
{
    const Onnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < s->g->n_input; i++) {
        if (!s->g->input[i]->name || find_init(s, s->g->input[i]->name))
            continue;
        if (in)
            return kdens_set_error(KDENS_E_FORMAT, "%s: more than one graph input", s->path);
        in = s->g->input[i];
    }
    const Onnx__TypeProto *t = in ? in->type : NULL;
    const Onnx__TensorShapeProto *sh =
        t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type
            ? t->tensor_type->shape
            : NULL;
    if (!sh || sh->n_dim != 4 || t->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return kdens_set_error(KDENS_E_FORMAT,
                               "%s: the graph input must be float [N, C, H, W] (or [N, H, W, C] "
                               "read by a Transpose to NCHW)", s->path);
    int dims[3];
    for (int i = 0; i < 3; i++) {
        const Onnx__TensorShapeProto__Dimension *d = sh->dim[i + 1];
        if (d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
            d->dim_value < 1 || d->dim_value > 65536)
            return kdens_set_error(KDENS_E_FORMAT,
                                   "%s: the input's C, H and W must be fixed sizes of 1 to 65536",
                                   s->path);
        dims[i] = (int)d->dim_value;
    }
    s->nhwc_input = nhwc_input(s, in->name);
    s->in_c = dims[s->nhwc_input ? 2 : 0];
    s->in_h = dims[s->nhwc_input ? 0 : 1];
    s->in_w = dims[s->nhwc_input ? 1 : 2];
    if ((size_t)s->in_h * (size_t)s->in_w > ((size_t)1 << 28)) /* as kdens_model_create */
        return kdens_set_error(KDENS_E_SHAPE,
                               "%s: an input of %dx%d pixels; libkdens takes at most 2^28",
                               s->path, s->in_h, s->in_w);
    const Onnx__TensorShapeProto__Dimension *d0 = sh->dim[0];
    s->in_batch = d0->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                          d0->dim_value > 0
                      ? d0->dim_value
                      : 0;
    val v = {0};
    v.kind = V_RAW;
    v.layer = -1;
    v.h = s->in_h;
    v.w = s->in_w;
    v.c = s->in_c;
    return add_val(s, in->name, v);
}

/* The constants: initializers, Constant nodes (a tensor `value`) and
 * Identity nodes of constants. */
static kdens_status read_constants(im *s)
{
    kdens_status st = KDENS_OK;
    for (size_t i = 0; i < s->g->n_initializer && st == KDENS_OK; i++)
        if (s->g->initializer[i]->name)
            st = add_const(s, s->g->initializer[i]->name, s->g->initializer[i]);
    for (size_t i = 0; i < s->g->n_node && st == KDENS_OK; i++) {
        const Onnx__NodeProto *n = s->g->node[i];
        if (!n->op_type || n->n_output != 1 || !n->output[0][0])
            continue;
        if (!strcmp(n->op_type, "Constant")) {
            const Onnx__AttributeProto *v = attr(n, "value");
            if (n->n_attribute != 1 || !v || !v->t)
                return node_error(s, n, KDENS_E_FORMAT, "only a tensor `value` is supported");
            st = add_const(s, n->output[0], v->t);
        } else if (!strcmp(n->op_type, "Identity") && n->n_input == 1 &&
                   find_init(s, n->input[0])) {
            st = add_const(s, n->output[0], find_init(s, n->input[0]));
        }
    }
    return st;
}

/* Every layer's spec line, then the model, its weights and input scaling. */
static kdens_status build_model(im *s, kdens_model **out)
{
    kdens_status st = read_constants(s);
    if (st == KDENS_OK)
        st = count_readers(s);
    if (st == KDENS_OK)
        st = read_input(s);
    for (size_t i = 0; i < s->g->n_node && st == KDENS_OK; i++)
        st = import_node(s, s->g->node[i]);
    if (st != KDENS_OK)
        return st;
    const val *o = s->g->n_output == 1 && s->g->output[0]->name ? find_val(s, s->g->output[0]->name)
                                                               : NULL;
    if (!o || o->layer != s->n_layers - 1 || o->layer < 0 || o->h != 1 || o->w != 1 ||
        !(o->kind == V_FLAT || o->kind == V_NCHW))
        return kdens_set_error(KDENS_E_FORMAT,
                               "%s: the graph's one output must be the last layer's, 1x1xK",
                               s->path);
    kdens_model *m = NULL;
    st = kdens_model_from_spec(s->spec ? s->spec : "", s->in_h, s->in_w, s->in_c, o->c, 0, &m);
    if (st != KDENS_OK) { /* the engine's message, copied out of the buffer it rewrites */
        char why[512];
        snprintf(why, sizeof why, "%s", kdens_errmsg());
        return kdens_set_error(st, "%s: the translated network is refused: %s", s->path, why);
    }
    for (size_t i = 0; i < s->n_params && st == KDENS_OK; i++) {
        const pending *p = &s->params[i];
        const kd_param *q = NULL;
        for (int k = 0; k < m->n_params && !q; k++)
            if (strcmp(m->params[k].name, p->name) == 0)
                q = &m->params[k];
        if (!q || q->count != p->count)
            st = kdens_set_error(KDENS_E_SHAPE, "%s: parameter %s does not fit the network",
                                 s->path, p->name);
        else
            memcpy(m->weights + q->offset, p->data, sizeof(float) * p->count);
    }
    if (st == KDENS_OK) {
        float one[4096], zero[4096];
        for (int c = 0; c < s->in_c && c < 4096; c++) {
            one[c] = 1.0f;
            zero[c] = 0.0f;
        }
        if (!s->in_scale && s->in_c > 4096)
            st = kdens_set_error(KDENS_E_FORMAT, "%s: too many input channels", s->path);
        else
            st = kdens_model_set_input_scaling(m, s->in_scale ? s->in_scale : one,
                                               s->in_offset ? s->in_offset : zero);
    }
    if (st != KDENS_OK) {
        kdens_model_free(m);
        return st;
    }
    *out = m;
    return KDENS_OK;
}

/* ---- the file --------------------------------------------------------------------------- */

/* protobuf-c's allocations, refused beyond the budget the file justifies. */
typedef struct budget {
    size_t left;
} budget;

static void *budget_alloc(void *data, size_t size)
{
    budget *b = data;
    size_t need = size + sizeof(size_t);
    if (size > b->left || need > b->left)
        return NULL;
    size_t *p = malloc(need);
    if (!p)
        return NULL;
    b->left -= need;
    *p = need;
    return p + 1;
}

static void budget_free(void *data, void *ptr)
{
    if (!ptr)
        return;
    size_t *p = (size_t *)ptr - 1;
    ((budget *)data)->left += *p;
    free(p);
}

static kdens_status read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdens_set_error(KDENS_E_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 0 || (size_t)size > IM_MAX_FILE || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return kdens_set_error(KDENS_E_IO, "%s: not a readable file of at most 2 GiB", path);
    }
    *len = (size_t)size;
    *data = malloc(*len ? *len : 1);
    if (!*data) {
        fclose(f);
        return nomem();
    }
    bool ok = fread(*data, 1, *len, f) == *len;
    fclose(f);
    if (!ok) {
        free(*data);
        return kdens_set_error(KDENS_E_IO, "%s: read failed", path);
    }
    return KDENS_OK;
}

static void im_free(im *s)
{
    free(s->vals);
    free(s->layers);
    free(s->name_slots);
    free(s->readers);
    for (size_t i = 0; i < s->n_params; i++) {
        free(s->params[i].name);
        free(s->params[i].data);
    }
    free(s->params);
    free(s->consts);
    free(s->spec);
    free(s->in_scale);
    free(s->in_offset);
}

/* The import of a file already in memory (`name` only names it in
 * messages): what kdens_onnx_import does once it has read the file, and
 * what tests/fuzz/fuzz_onnx.c feeds arbitrary bytes. */
kdens_status kd_onnx_import_memory(const char *name, const uint8_t *data, size_t len,
                                   kdens_model **out)
{
    if (!name || (!data && len) || !out)
        return kdens_set_error(KDENS_E_ARG, "kd_onnx_import_memory: NULL argument");
    *out = NULL;
    if (len > IM_MAX_FILE)
        return kdens_set_error(KDENS_E_FORMAT, "%s: larger than 2 GiB (protobuf's limit)", name);
    budget b = {len * IM_MEMORY_FACTOR + IM_MEMORY_SLACK};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
    Onnx__ModelProto *model = onnx__model_proto__unpack(&alloc, len, data);
    if (!model)
        return kdens_set_error(KDENS_E_FORMAT, "%s: not an ONNX model (protobuf decoding failed)",
                               name);
    int64_t opset = -1;
    for (size_t i = 0; i < model->n_opset_import; i++)
        if (!model->opset_import[i]->domain || !model->opset_import[i]->domain[0] ||
            strcmp(model->opset_import[i]->domain, "ai.onnx") == 0)
            opset = model->opset_import[i]->version;
    kdens_status st = KDENS_OK;
    if (!model->graph)
        st = kdens_set_error(KDENS_E_FORMAT, "%s: no graph", name);
    else if (opset < 0)
        st = kdens_set_error(KDENS_E_VERSION,
                             "%s: declares no opset of the default domain; the import reads "
                             "opset 13 and later", name);
    else if (opset < 13)
        st = kdens_set_error(KDENS_E_VERSION,
                             "%s: opset %lld; the import reads opset 13 and later", name,
                             (long long)opset);
    if (st == KDENS_OK) {
        im s = {0};
        s.g = model->graph;
        s.path = name;
        st = build_model(&s, out);
        im_free(&s);
    }
    onnx__model_proto__free_unpacked(model, &alloc);
    return st;
}

kdens_status kdens_onnx_import(const char *path, kdens_model **out)
{
    if (!path || !out)
        return kdens_set_error(KDENS_E_ARG, "kdens_onnx_import: NULL argument");
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    kdens_status st = read_file(path, &data, &len);
    if (st != KDENS_OK)
        return st;
    st = kd_onnx_import_memory(path, data, len, out);
    free(data);
    return st;
}

kdens_status kdens_onnx_enable(void)
{
    return kdens_model_set_reader(".onnx", kdens_onnx_import);
}

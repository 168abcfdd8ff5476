/* nn: the layer DAG, layer families, built-in architectures, text specs and
 * model files.  Internal to libkdens; depends on core and tensor. */
#ifndef KD_NN_H
#define KD_NN_H

#include "../tensor/tensor.h"

typedef enum kd_layer_type {
    KD_L_INPUT,
    KD_L_CONV,
    KD_L_DENSE,
    KD_L_BATCHNORM,
    KD_L_ACT,
    KD_L_MAXPOOL,
    KD_L_AVGPOOL,
    KD_L_GAP,
    KD_L_ZEROPAD,
    KD_L_FLATTEN,
    KD_L_DROPOUT,
    KD_L_ADD,
    KD_L_CONCAT,
    KD_L_MULTIPLY,
    KD_L_RESCALE,
    KD_L_NORMALIZE,
    KD_L_COUNT
} kd_layer_type;

typedef enum kd_pad_mode { KD_PAD_VALID, KD_PAD_SAME, KD_PAD_EXPLICIT } kd_pad_mode;

/* Every layer's hyper-parameters in one flat record; each family reads the
 * fields it needs.  Defaults come from kd_attrs_default(). */
typedef struct kd_attrs {
    int units;               /* conv filters, dense units */
    int kh, kw, sh, sw;      /* kernel / pool window and strides */
    int dh, dw;              /* conv dilation (1: none) */
    kd_pad_mode pad_mode;
    int pad[4];              /* explicit padding: top, bottom, left, right */
    int groups;              /* conv groups; 0 = depthwise (one per channel) */
    int multiplier;          /* depthwise channel multiplier */
    bool bias;
    kd_act act;
    float rate;              /* dropout */
    bool per_sample;         /* dropout: one draw per sample (stochastic depth) */
    float momentum, eps;     /* batch normalisation */
    float scale, offset;     /* rescaling */
} kd_attrs;

void kd_attrs_default(kd_attrs *a);

/* A parameter tensor: a slice of the model's weight storage. */
typedef struct kd_param {
    char *name;       /* "<layer>/<kernel|bias|gamma|beta|moving_mean|...>" */
    size_t offset;    /* into model->weights (and model->grads if trainable) */
    size_t count;
    int shape[4], ndim;
    bool trainable;
} kd_param;

/* Initialisers of a parameter. */
typedef enum kd_init { KD_INIT_ZERO, KD_INIT_ONE, KD_INIT_GLOROT } kd_init;

#define KD_MAX_NODE_PARAMS 4

typedef struct kd_node {
    kd_layer_type type;
    char *name;
    kd_attrs a;
    int n_in;
    int *in;              /* node indices, all smaller than this node's */
    int h, w, c;          /* output shape of one sample */
    int pt, pb, pl, pr;   /* resolved padding */
    int cin;              /* channels of the (first) input */
    int n_params;
    int param[KD_MAX_NODE_PARAMS]; /* indices into model->params */
    bool needs_grad;      /* some trainable parameter lies at or before it */
    int last_reader;      /* the highest node reading this one (its first in backward) */
    bool grad_stale;      /* grad holds garbage that stands for zero (see kd_grad_*) */
    bool grad_injected;   /* the loss wrote grad directly (a distillation head) */
    /* Batch norm (or a two-input add) + ReLU in one pass (kd_model_fuse): on
     * the batch norm, the ReLU node whose output it writes (0: none); on
     * that ReLU, fused, so its own forward does nothing.  The batch norm's
     * output is then never written: the ReLU is its only reader. */
    int relu_into;
    bool fused;
    /* buffers for the planned batch */
    float *out, *grad;
    void *aux;            /* per family: batch statistics, argmax, dropout mask */
} kd_node;

/* The int8 form of a quantised model (quant.c). */
typedef struct kd_qmodel kd_qmodel;

struct kdens_model {
    int in_h, in_w, in_c, classes;
    int n_nodes, cap_nodes;
    kd_node *nodes;
    int n_params, cap_params;
    kd_param *params;
    size_t n_weights, n_trainable;
    float *weights;       /* trainable tensors first, then non-trainable */
    float *grads;         /* n_trainable floats */
    int logits_node;      /* the node whose output the losses read */
    kd_rng rng;           /* dropout masks */
    uint64_t seed;
    bool training;
    bool unfused;         /* run every node on its own (kd_model_infer_node) */
    /* the loss kdens_model_forward_loss computes: the train module's
     * settings and buffers (lib/train/train.h), opaque to this module; NULL
     * until set, freed with the model through loss_free */
    struct kd_loss *loss;
    void (*loss_free)(struct kd_loss *loss);
    /* planned batch */
    size_t cap_n;         /* rows the node buffers hold */
    bool cap_grads;       /* node gradient buffers allocated */
    float *work;          /* shared workspace of the layers (sized per thread count) */
    int plan_threads;     /* the thread count the workspace was sized for */
    float *staging;       /* uint8 images converted for inference */
    size_t staging_floats;
    size_t work_floats;
    /* data-parallel training (set by the trainer for a fit): batch norm
     * sums over every rank's rows, of sync_global_n images in all; NULL
     * alone */
    kd_bn_sync *sync;
    size_t sync_global_n;
    /* the last forward_loss */
    size_t fwd_n;
    bool have_forward, have_grads;
    /* int8 inference (kdens_model_quantize): NULL for a float model; a
     * quantised model is inference-only */
    kd_qmodel *q;
    /* metadata */
    float *in_scale, *in_offset; /* per input channel */
    char **class_names;
    int n_meta;
    char **meta_keys, **meta_values;
};

/* ---- building ------------------------------------------------------------ */

/* An empty model with only its input node. */
kdens_status kd_model_new(int h, int w, int c, int classes, kdens_model **out);
/* Append a layer reading the given nodes; infers and checks its output
 * shape and registers its parameters.  Returns the new node's index in *id. */
kdens_status kd_model_add(kdens_model *m, kd_layer_type type, const kd_attrs *a,
                          const char *name, int n_in, const int *in, int *id);
/* Assign parameter storage, initialise weights from seed, pick the logits node. */
kdens_status kd_model_finalize(kdens_model *m, uint64_t seed);
/* Pair each batch norm or two-input add whose only reader is a ReLU with it
 * (relu_into, fused); called by kd_model_finalize. */
void kd_model_fuse(kdens_model *m);
int kd_model_find(const kdens_model *m, const char *name);
size_t kd_node_size(const kd_node *n); /* floats per sample */

/* ---- layer families --------------------------------------------------------- */

typedef struct kd_layer_ops {
    const char *keyword;        /* spec keyword */
    int min_in, max_in;         /* inputs (max -1 = any) */
    /* Output shape and parameters from the inputs; fills node->h, w, c. */
    kdens_status (*infer)(kdens_model *m, kd_node *node);
    /* Floats of aux buffer for a batch of n. */
    size_t (*aux_floats)(const kdens_model *m, const kd_node *node, size_t n);
    size_t (*work_floats)(const kdens_model *m, const kd_node *node, size_t n);
    void (*forward)(kdens_model *m, kd_node *node, size_t n);
    void (*backward)(kdens_model *m, kd_node *node, size_t n);
} kd_layer_ops;

const kd_layer_ops *kd_layer_ops_of(kd_layer_type type);
extern const kd_layer_ops kd_ops_conv, kd_ops_dense, kd_ops_batchnorm, kd_ops_normalize,
    kd_ops_rescale, kd_ops_act, kd_ops_dropout, kd_ops_maxpool, kd_ops_avgpool, kd_ops_gap,
    kd_ops_zeropad, kd_ops_flatten, kd_ops_add, kd_ops_concat, kd_ops_multiply;

/* Helpers for the families. */
kdens_status kd_node_add_param(kdens_model *m, kd_node *node, const char *suffix, int ndim,
                               const int *shape, bool trainable, kd_init init);
static inline float *kd_param_data(kdens_model *m, const kd_node *node, int i)
{
    return m->weights + m->params[node->param[i]].offset;
}
static inline float *kd_param_grad(kdens_model *m, const kd_node *node, int i)
{
    const kd_param *p = &m->params[node->param[i]];
    return p->trainable ? m->grads + p->offset : NULL;
}
static inline kd_node *kd_input(kdens_model *m, const kd_node *node, int i)
{
    return &m->nodes[node->in[i]];
}
/* Gradient buffers begin each backward pass stale: logically zero, physically
 * garbage.  The first layer to write an input's gradient assigns it (no
 * memset, no read); later writers accumulate.  kd_grad_assign() tells a
 * layer which it is; kd_grad_accumulate() zeroes a stale buffer for layers
 * that can only accumulate. */
static inline bool kd_grad_assign(kd_node *x)
{
    bool stale = x->grad_stale;
    x->grad_stale = false;
    return stale;
}
float *kd_grad_accumulate(kd_node *x, size_t n);
/* infer() of the families whose output has their first input's shape. */
kdens_status kd_infer_same_shape(kdens_model *m, kd_node *node);
/* Resolve "same"/"valid"/explicit padding for a window; returns the output size. */
int kd_resolve_padding(kd_pad_mode mode, const int *explicit_pad, int in, int k, int stride,
                       int *before, int *after);

/* ---- running -------------------------------------------------------------------- */

/* Make the node buffers hold n samples (and gradients when with_grads). */
kdens_status kd_model_plan(kdens_model *m, size_t n, bool with_grads);
/* Copy every parameter of src into the parameter of dst with the same name
 * and size; *copied (may be NULL) receives how many. */
kdens_status kd_model_copy_params(kdens_model *dst, const kdens_model *src, int *copied);
/* Input scaling, class names and metadata of src onto dst. */
kdens_status kd_model_copy_meta(kdens_model *dst, const kdens_model *src);
/* The parameter called name ("<layer>/kernel"), or NULL. */
kd_param *kd_model_param(const kdens_model *m, const char *name);
/* Inference of n float inputs, copying the output of `node` (floats per
 * sample: kd_node_size) into out. */
kdens_status kd_model_infer_node(kdens_model *m, const float *x, size_t n, int node, float *out);
/* Forward pass over n samples of x (already scaled floats). */
void kd_model_forward(kdens_model *m, const float *x, size_t n);
void kd_model_backward_pass(kdens_model *m, size_t n);
void kd_model_release_buffers(kdens_model *m);
/* uint8 images to floats by the model's input scaling. */
void kd_model_scale_u8(const kdens_model *m, const uint8_t *images, size_t n, float *dst);

/* ---- int8 models (quant.c) ----------------------------------------------------------- */

void kd_qmodel_free(kd_qmodel *q);
/* Whether node's float output is written (always, in a float model), and
 * whether the node runs as a float layer. */
bool kd_qmodel_float_out(const kdens_model *m, int node);
bool kd_qmodel_runs_float(const kdens_model *m, int node);
/* The int8 buffers for a batch of cap (called by kd_model_plan), and their release. */
kdens_status kd_qmodel_plan(kdens_model *m, size_t cap);
void kd_qmodel_release(kdens_model *m);
void kd_qmodel_forward(kdens_model *m, const float *x, size_t n);
/* Whether parameter `param` is saved in TENS (false: folded into QNT8). */
bool kd_qmodel_param_stored(const kdens_model *m, int param);
/* The QNT8 section's payload, and building m's int8 form from one. */
void kd_qmodel_write(const kdens_model *m, kd_buf *b);
kdens_status kd_qmodel_read(const char *path, kdens_model *m, const uint8_t *data, size_t len);
const char *kd_calibration_name(kdens_calibration method);
/* For tests: the number of int8 layers; the scale (and zero point) of a
 * node's u8 form (0: none); a node's output after the last forward,
 * dequantised where only its u8 form exists (KDENS_E_STATE: folded away). */
int kd_qmodel_layer_count(const kdens_model *m);
float kd_qmodel_scale(const kdens_model *m, int node, int *zp);
kdens_status kd_qmodel_node_output(const kdens_model *m, int node, size_t n, float *out);

/* ---- specs, architectures, files ------------------------------------------------- */

kdens_status kd_spec_build(kdens_model *m, const char *spec);
/* The bytes of a .kdm file. */
void kd_model_serialize(const kdens_model *m, kd_buf *file);
/* The reader registered for path's suffix (kdens_model_set_reader), or NULL. */
kdens_model_reader kd_model_reader_for(const char *path);
/* kdens_model_load on bytes in memory; path only names them in messages. */
kdens_status kd_model_load_memory(const char *path, const char *data, size_t len,
                                  kdens_model **out);
void kd_spec_write(const kdens_model *m, kd_buf *b);
kdens_status kd_arch_build(kdens_model *m, const char *arch);
const char *kd_layer_keyword(kd_layer_type type);
const char *kd_act_name(kd_act act);

#endif

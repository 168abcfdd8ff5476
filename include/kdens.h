/*
 * kdens.h -- the public interface of libkdens, an embeddable C11 library for
 * multi-teacher knowledge distillation (ensembles of CNN teachers, decision
 * fusion, and distillation of the ensemble into one student network).
 *
 * This header is the API manual (docs/guide.md walks through it).  The
 * experiment workflow of the dissertation -- workspaces, registries, teacher
 * farms, the pipeline -- is in kdens_experiment.h, built on this engine.
 *
 * Conventions:
 *  - Every fallible call returns a kdens_status; KDENS_OK (0) is success.
 *    On failure kdens_errmsg() returns a thread-local message naming the
 *    file, field or value at fault.  Results are handed back through
 *    pointers, which are left untouched on failure.
 *  - Every *_create / *_load has a *_free; passing NULL to *_free is a no-op.
 *  - Handles are opaque and configured by setters, each checking its value
 *    at once; real-valued settings are double, tensors float.  Enumerations
 *    are never renumbered (new values are appended; *_count() says how many
 *    this library knows), and structs returned to the caller carry their
 *    own size, so that the ABI can grow (docs/api.md).
 *  - The library never prints, never exits and never aborts on bad input.
 *  - Distinct handles may be used from different threads at once; one handle
 *    is used by one thread at a time.
 *  - Images are stored row-major as N x H x W x C (channels last), the layout
 *    of image files; float tensors passed in and out use the same layout.
 *  - Every random choice takes an explicit seed.  The same seed, thread count,
 *    build and kernel path (kdens_cpu_path) give bit-identical results; other
 *    kernel paths agree within rounding (docs/design.md states how closely).
 *
 * Copyright (c) 2026 the libkdens authors.  MIT licence, see LICENSE.
 */
#ifndef KDENS_H
#define KDENS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KDENS_BUILDING) && defined(__GNUC__)
#define KDENS_API __attribute__((visibility("default")))
#else
#define KDENS_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                    */
/* ------------------------------------------------------------------------ */

#define KDENS_VERSION_MAJOR 0
#define KDENS_VERSION_MINOR 1
#define KDENS_VERSION_PATCH 0
#define KDENS_VERSION_NUMBER \
    (KDENS_VERSION_MAJOR * 10000 + KDENS_VERSION_MINOR * 100 + KDENS_VERSION_PATCH)

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH". */
KDENS_API const char *kdens_version(void);
/* The same as a number: MAJOR*10000 + MINOR*100 + PATCH. */
KDENS_API int kdens_version_number(void);

/* ------------------------------------------------------------------------ */
/* Status codes and messages                                                  */
/* ------------------------------------------------------------------------ */

typedef enum kdens_status {
    KDENS_OK = 0,
    KDENS_E_ARG = 1,      /* invalid argument: NULL handle, out-of-range value  */
    KDENS_E_NOMEM = 2,    /* memory allocation failed                           */
    KDENS_E_IO = 3,       /* a file could not be opened, read, written, renamed */
    KDENS_E_FORMAT = 4,   /* corrupt or truncated file, bad magic, bad CRC      */
    KDENS_E_VERSION = 5,  /* file written by a newer, unsupported format        */
    KDENS_E_SHAPE = 6,    /* tensor or input shape mismatch, input too small    */
    KDENS_E_SPEC = 7,     /* architecture spec could not be parsed              */
    KDENS_E_NOTFOUND = 8, /* unknown name: architecture, layer, key             */
    KDENS_E_NUMERIC = 9,  /* NaN or infinite value where a finite one is needed */
    KDENS_E_STATE = 10,   /* call not valid in the handle's current state       */
    KDENS_E_UNSUPPORTED = 11 /* not in this build: PNG or JPEG images given to the
                                inference-only library, libkdens_infer        */
} kdens_status;

/* The message of the last failure on this thread ("" if none). The pointer
 * stays valid until the next failing call on the same thread. */
KDENS_API const char *kdens_errmsg(void);
/* A short constant name for a status code, e.g. "invalid argument". */
KDENS_API const char *kdens_status_str(kdens_status status);
/* Set this thread's message (printf-style; NULL fmt: "") and return status,
 * for code that reports through the library: a communicator's transport
 * (kdens_comm_ops), a callback whose failure the caller will read. */
KDENS_API kdens_status kdens_set_error(kdens_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ------------------------------------------------------------------------ */
/* Global settings: threads, log and progress callbacks                       */
/* ------------------------------------------------------------------------ */

/* Number of threads used by compute kernels (GEMM and the library's own
 * parallel loops).  0 means "all cores".  The environment variable
 * KDENS_NUM_THREADS, when set, gives the initial value.  Process-wide. */
KDENS_API kdens_status kdens_set_num_threads(int n);
KDENS_API int kdens_get_num_threads(void);

/* The instruction-set path of the compute kernels: "generic" (any x86-64 or
 * other processor), "avx2" (AVX2 + FMA) or "avx512" (AVX-512 F/BW/DQ/VL).
 * One build holds all three and takes the best the processor supports; the
 * environment variable KDENS_CPU (generic, avx2, avx512 or auto), read once
 * at first use, or kdens_set_cpu_path() may choose a lower one.  Results of
 * one path are bit-identical from run to run (same seed, thread count and
 * build); different paths agree within rounding (docs/design.md states the
 * tolerance), since only some paths fuse multiply-adds. */
KDENS_API const char *kdens_cpu_path(void);
/* The paths this processor supports, lowest first, space-separated
 * (e.g. "generic avx2 avx512"). */
KDENS_API const char *kdens_cpu_paths(void);
/* The int8 kernel of quantised models on the path in use: "avx512-vnni" or
 * "avx-vnni" where the processor has the dot-product instruction of the
 * path's registers, else the path's portable kernel ("avx512", "avx2",
 * "generic").  All give the same results (kdens_model_quantize_u8). */
KDENS_API const char *kdens_cpu_int8_kernel(void);
/* Use the named path (NULL or "auto": the best supported).  KDENS_E_ARG for
 * an unknown name or a path the processor lacks.  Process-wide; call it
 * while no other thread is running the library's kernels. */
KDENS_API kdens_status kdens_set_cpu_path(const char *name);

typedef enum kdens_log_level {
    KDENS_LOG_ERROR = 0,
    KDENS_LOG_WARN = 1,
    KDENS_LOG_INFO = 2,
    KDENS_LOG_DEBUG = 3
} kdens_log_level;

/* Receives the library's log lines (without a trailing newline). */
typedef void (*kdens_log_fn)(kdens_log_level level, const char *message, void *user);
/* Receives progress: a task name, units done and total (total 0 = unknown). */
typedef void (*kdens_progress_fn)(const char *task, uint64_t done, uint64_t total,
                                  void *user);

/* Install process-wide callbacks; NULL removes them.  The library never
 * prints by itself: without a callback, logs and progress are dropped. */
KDENS_API void kdens_set_log_callback(kdens_log_fn fn, void *user);
KDENS_API void kdens_set_progress_callback(kdens_progress_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Communicators: several processes working as one (MPI or your transport)    */
/* ------------------------------------------------------------------------ */

/* The operations a transport between `ranks` processes provides, as
 * callbacks on its own context.  libkdens' MPI implementation
 * (kdens_mpi.h, built with `make MPI=1`) is one; a job system or NCCL can
 * be another.  Every operation is called by the library from one thread
 * per process; the collectives (allreduce, broadcast) are entered by every
 * rank in the same order.  Each returns KDENS_OK or a status (the
 * transport may set the message with its own words; a rank that died is
 * KDENS_E_IO).  The communicator borrows ctx: free it after the
 * communicator, or let `destroy` do it. */
typedef struct kdens_comm_ops {
    size_t size; /* sizeof(kdens_comm_ops), for growth */
    /* This process's rank (0 .. ranks-1) and the number of ranks. */
    int (*rank)(void *ctx);
    int (*ranks)(void *ctx);
    /* Sum n values over every rank in place.  Every rank must receive the
     * same bits (a fixed order of additions: the library relies on it to
     * keep every rank's weights identical). */
    kdens_status (*allreduce_float)(void *ctx, float *values, size_t n);
    kdens_status (*allreduce_double)(void *ctx, double *values, size_t n);
    /* Root's `bytes` bytes into buf on every rank. */
    kdens_status (*broadcast)(void *ctx, void *buf, size_t bytes, int root);
    /* Point to point, for work queues: send bytes to rank `to` with a tag
     * (0 .. 255); receive the next message with that tag from any rank into
     * a buffer the transport allocates with malloc (the library frees it),
     * its length and sender.  recv blocks until a message arrives. */
    kdens_status (*send)(void *ctx, int to, int tag, const void *buf, size_t bytes);
    kdens_status (*recv)(void *ctx, int tag, void **buf, size_t *bytes, int *from);
    /* Optional (NULL: none): end every rank's process with `code` at once,
     * for a failure that the others cannot learn of in time. */
    void (*abort)(void *ctx, int code);
    /* Optional: called by kdens_comm_free on ctx. */
    void (*destroy)(void *ctx);
} kdens_comm_ops;

typedef struct kdens_comm kdens_comm;

/* A communicator over a transport: ops is copied (its `size` says how much
 * of it the caller knows); rank, ranks, both allreduces, broadcast, send
 * and recv are required.  Errors: KDENS_E_ARG (NULL, missing operations,
 * a rank outside [0, ranks)). */
KDENS_API kdens_status kdens_comm_create(const kdens_comm_ops *ops, void *ctx,
                                         kdens_comm **out);
KDENS_API void kdens_comm_free(kdens_comm *comm);
/* This process's rank and the rank count (NULL: rank 0 of 1). */
KDENS_API int kdens_comm_rank(const kdens_comm *comm);
KDENS_API int kdens_comm_size(const kdens_comm *comm);
/* Make every rank agree on a failure: called by all ranks with their own
 * status, returns on every rank the status of the lowest failing rank
 * (KDENS_OK if none), and on rank 0 that rank's message (as
 * kdens_errmsg(), prefixed "rank R: ").  A transport failure is returned
 * as it is. */
KDENS_API kdens_status kdens_comm_agree(kdens_comm *comm, kdens_status status);
/* Refuse to work with ranks that differ: every rank passes a description of
 * what must match (the library's version is added); KDENS_E_STATE on every
 * rank, naming the first rank that differs from rank 0, if any does. */
KDENS_API kdens_status kdens_comm_check_same(kdens_comm *comm, const char *what);

/* ------------------------------------------------------------------------ */
/* Models                                                                     */
/* ------------------------------------------------------------------------ */

/* A network: a DAG of layers with its parameters, optimiser-independent.
 * Its output is a vector of class scores (logits); predictions are the
 * softmax of the logits. */
typedef struct kdens_model kdens_model;

/* Create a model from a built-in architecture name (see kdens_arch_name()):
 * "test", "resnet20", "mobilenet_small", "resnet50v2", "densenet121",
 * "efficientnetb0", "efficientnetb3", "mobilenetv3large".  The input is
 * height x width x channels; weights are initialised from seed.
 * Errors: KDENS_E_NOTFOUND unknown name, KDENS_E_SHAPE input below the
 * architecture's minimum, KDENS_E_ARG bad sizes, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_model_create(const char *arch, int height, int width,
                                          int channels, int classes, uint64_t seed,
                                          kdens_model **out);

/* Create a model from a text spec (docs/spec.md).  Errors: KDENS_E_SPEC with
 * the line and token at fault, KDENS_E_SHAPE, KDENS_E_ARG, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_model_from_spec(const char *spec, int height, int width,
                                             int channels, int classes, uint64_t seed,
                                             kdens_model **out);
/* The same, reading the spec from a file (KDENS_E_IO if it cannot be read). */
KDENS_API kdens_status kdens_model_from_spec_file(const char *path, int height, int width,
                                                  int channels, int classes,
                                                  uint64_t seed, kdens_model **out);

KDENS_API void kdens_model_free(kdens_model *model);

/* The number of built-in architectures and the i-th name (NULL if out of range). */
KDENS_API int kdens_arch_count(void);
KDENS_API const char *kdens_arch_name(int i);

/* Total parameter count as Keras counts it (trainable weights plus batch
 * normalisation moving statistics and other non-trainable tensors), and
 * the trainable part alone.  0 for NULL. */
KDENS_API size_t kdens_model_param_count(const kdens_model *model);
KDENS_API size_t kdens_model_trainable_count(const kdens_model *model);

/* Input shape and class count. Errors: KDENS_E_ARG on NULL. */
KDENS_API kdens_status kdens_model_input_shape(const kdens_model *model, int *height,
                                               int *width, int *channels);
KDENS_API int kdens_model_num_classes(const kdens_model *model);
/* The number of layers (nodes of the DAG, the input included). */
KDENS_API int kdens_model_num_layers(const kdens_model *model);

/* A Keras-style summary (layer, type, output shape, parameters, inputs),
 * ending with totals.  Writes at most size bytes including the terminating
 * NUL, like snprintf, and returns the full length the text needs
 * (call with size 0 to measure).  Returns 0 for a NULL model. */
KDENS_API size_t kdens_model_summary(const kdens_model *model, char *buf, size_t size);

/* The architecture as a canonical text spec (every layer named, every input
 * explicit); feeding it back to kdens_model_from_spec rebuilds the same
 * network.  snprintf-like, as kdens_model_summary. */
KDENS_API size_t kdens_model_spec(const kdens_model *model, char *buf, size_t size);

/* --- metadata --------------------------------------------------------- */

/* Per-channel input scaling applied by kdens_model_predict_u8 and by the
 * loaders: x = pixel * scale[c] + offset[c].  Default 1/255 and 0. */
KDENS_API kdens_status kdens_model_set_input_scaling(kdens_model *model, const float *scale,
                                                     const float *offset);
KDENS_API kdens_status kdens_model_get_input_scaling(const kdens_model *model, float *scale,
                                                     float *offset);
/* Class names, n must equal the class count.  Names are copied. */
KDENS_API kdens_status kdens_model_set_class_names(kdens_model *model,
                                                   const char *const *names, int n);
/* The i-th class name, or NULL if unset or out of range. */
KDENS_API const char *kdens_model_class_name(const kdens_model *model, int i);
/* Free-form provenance metadata (key and value without newlines, key
 * without '='); value NULL removes the key.  Saved in the model file. */
KDENS_API kdens_status kdens_model_set_meta(kdens_model *model, const char *key,
                                            const char *value);
/* The value of key, or NULL.  Valid until the key is set again. */
KDENS_API const char *kdens_model_get_meta(const kdens_model *model, const char *key);

/* --- inference -------------------------------------------------------- */

/* Class probabilities for n images, as float tensors N x H x W x C
 * (already scaled).  probs receives n x classes floats.  Always runs in
 * inference mode (batch-norm moving statistics, no dropout), and every
 * kernel sums each output in a fixed order per image, so the result for an
 * image is the same bits whatever the other images of the batch, the batch
 * size or the thread count.
 * Errors: KDENS_E_ARG, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_model_predict(kdens_model *model, const float *x, size_t n,
                                           float *probs);
/* The same for uint8 images as stored in files, scaled by the model's
 * input scaling. */
KDENS_API kdens_status kdens_model_predict_u8(kdens_model *model, const uint8_t *images,
                                              size_t n, float *probs);
/* The logits (pre-softmax scores) instead of probabilities. */
KDENS_API kdens_status kdens_model_predict_logits(kdens_model *model, const float *x,
                                                  size_t n, float *logits);

/* --- int8 quantisation ------------------------------------------------ */

/* How the range of each activation tensor is chosen from the calibration
 * images.  Min-max keeps every value seen; the percentile method keeps all
 * but the 0.01% most extreme values at each end (a ReLU output's lower end
 * stays 0), so that a few outliers do not coarsen the step of all the
 * others.  KDENS_CALIB_PERCENTILE is the kdens tool's default because its
 * ranges do not widen as the calibration set grows, min-max's do: on
 * Fashion-MNIST both lose at most 0.15 points at 100 to 1,000 images, and
 * at 5,000 images ResNet-20 loses 0.10 points with min-max, none with the
 * percentiles (docs/benchmarks.md). */
typedef enum kdens_calibration {
    KDENS_CALIB_MINMAX = 0,
    KDENS_CALIB_PERCENTILE = 1
} kdens_calibration;

/* Post-training int8 quantisation: *out receives a new, inference-only
 * model; `model` is left as it was (its buffers aside).
 *
 * Every convolution of one group and every dense layer runs in int8 (but
 * for those of more than 65,536 inputs per output, whose int32 sums could
 * overflow): a batch norm that alone reads it is folded into its weights
 * and bias first, and a ReLU or ReLU6 that alone reads the result is
 * folded into the requantisation; so do two-input adds (residual sums,
 * with their ReLU) and the max pooling and flattening of int8 layers'
 * outputs.  Weights are int8, symmetric, one scale per output channel;
 * activations are uint8 with a zero point, their ranges taken from the
 * float model's outputs on the calibration images (`method`);
 * sums are exact in int32, and the processor's int8 dot-product
 * instructions (AVX512-VNNI, AVX-VNNI) are used where present, with the
 * same results as the portable code.  The other layers -- concatenations,
 * average pooling, depthwise, grouped and dilated convolutions, other activations
 * (sigmoid, swish, hard-swish, softmax), squeeze-excite products -- run in
 * float between the int8 ones.
 *
 * kdens_model_predict, _predict_u8 and _predict_logits work on the result
 * as on any model (the same bits whatever the batch size, thread count or
 * kernel path); kdens_model_save writes it as a format-2 .kdm file about a
 * quarter of the float file's size.  Training it is refused
 * (KDENS_E_STATE).  The calibration images are n uint8 images of the
 * model's input shape (H x W x C), scaled by its input scaling: set the
 * scaling before quantising.  A few hundred to a thousand images drawn
 * from the training set are typical.
 * Errors: KDENS_E_ARG (NULL, n 0, unknown method), KDENS_E_STATE (the
 * model is quantised already), KDENS_E_NUMERIC (weights or activations
 * not finite), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_model_quantize_u8(kdens_model *model, const uint8_t *images,
                                               size_t n, kdens_calibration method,
                                               kdens_model **out);
/* kdens_model_quantize (below, with datasets) calibrates on a dataset. */
/* 1 for a model made by kdens_model_quantize (or loaded from its file),
 * else 0 (also for NULL). */
KDENS_API int kdens_model_is_quantized(const kdens_model *model);

/* --- files ------------------------------------------------------------ */

/* Save to a .kdm file atomically: written to a temporary file in the same
 * folder, fsync'ed, then renamed over path.  On any failure the file that
 * was at path before the call is left as it was.  Errors: KDENS_E_IO. */
KDENS_API kdens_status kdens_model_save(const kdens_model *model, const char *path);
/* Load a .kdm file (float or int8; format versions 1 and 2) -- or a file
 * of a format registered with kdens_model_set_reader (an .onnx file once
 * kdens_onnx_enable has run), with that reader's errors.  Errors:
 * KDENS_E_IO unreadable, KDENS_E_FORMAT bad magic, truncation, CRC mismatch
 * or inconsistent content (an .onnx file with no reader registered says
 * so), KDENS_E_VERSION newer format, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_model_load(const char *path, kdens_model **out);
/* Load a model from the bytes of a .kdm file in memory (a firmware image,
 * an app's asset, a network message); the bytes are copied, so the buffer
 * may be freed once the call returns, and need no alignment.  Messages name
 * the model "(memory)".  Errors: as kdens_model_load, and KDENS_E_ARG for
 * NULL data or out. */
KDENS_API kdens_status kdens_model_load_memory(const void *data, size_t size,
                                               kdens_model **out);

/* A reader of another model format: it loads the file at path into a new
 * model (*out, set only on success) or fails with a kdens_status and a
 * message (kdens_set_error). */
typedef kdens_status (*kdens_model_reader)(const char *path, kdens_model **out);
/* Teach kdens_model_load -- and so ensembles, registries and the tools --
 * another format: a file whose name ends with suffix (compared without
 * regard to case, e.g. ".onnx") is handed to reader instead of being read
 * as .kdm.  Registering a suffix again replaces its reader; reader NULL
 * removes it.  Process-wide and thread-safe; at most 8 suffixes of at most
 * 15 bytes.  libkdens_onnx's kdens_onnx_enable registers ".onnx".
 * Errors: KDENS_E_ARG (NULL or empty suffix, too long, ".kdm"),
 * KDENS_E_NOMEM (8 suffixes registered already). */
KDENS_API kdens_status kdens_model_set_reader(const char *suffix, kdens_model_reader reader);

/* ------------------------------------------------------------------------ */
/* Training                                                                   */
/* ------------------------------------------------------------------------ */

/* Training mode (1) uses batch statistics in batch normalisation (and
 * updates the moving statistics) and applies dropout; inference mode (0,
 * the default) does neither. */
KDENS_API kdens_status kdens_model_set_training(kdens_model *model, int training);
/* Momentum and epsilon of every batch-normalisation layer (Keras defaults
 * 0.99 and 0.001 unless the architecture says otherwise). */
KDENS_API kdens_status kdens_model_set_batchnorm(kdens_model *model, double momentum,
                                                 double epsilon);
/* Seed of the model's own random stream (dropout masks). */
KDENS_API kdens_status kdens_model_set_seed(kdens_model *model, uint64_t seed);

/* The loss used by kdens_model_forward_loss when soft targets are given:
 *   alpha * CE(labels, softmax(z)) + (1 - alpha) * T^2 * KL(q || softmax(z / T))
 * with q the soft targets (a distribution per sample, already softened at T).
 * Without soft targets the loss is CE alone.  Defaults alpha 1, T 1.
 * Errors: KDENS_E_ARG for alpha outside [0,1] or T <= 0. */
KDENS_API kdens_status kdens_model_set_loss(kdens_model *model, double alpha, double temperature);

/* Forward pass with loss on a batch of n float images (N x H x W x C):
 * labels are class indices (may be NULL when alpha is 0 and soft targets
 * are given), soft_targets n x classes (may be NULL).  The mean loss goes to
 * *loss and the number of top-1 correct predictions to *correct (either may
 * be NULL).  Keeps what the backward pass needs.
 * Errors: KDENS_E_ARG (label out of range, n 0), KDENS_E_NOMEM,
 * KDENS_E_NUMERIC when the loss is not finite. */
KDENS_API kdens_status kdens_model_forward_loss(kdens_model *model, const float *x, size_t n,
                                                const int32_t *labels,
                                                const float *soft_targets, float *loss,
                                                size_t *correct);
/* Backward pass of the last forward_loss: fills the parameter gradients.
 * Errors: KDENS_E_STATE without a preceding forward_loss. */
KDENS_API kdens_status kdens_model_backward(kdens_model *model);

typedef enum kdens_optimizer_type {
    KDENS_OPT_SGD = 0,  /* momentum and Nesterov optional; weight decay as L2 */
    KDENS_OPT_ADAM = 1, /* weight decay added to the gradient (L2)           */
    KDENS_OPT_ADAMW = 2 /* decoupled weight decay (Loshchilov and Hutter)     */
} kdens_optimizer_type;

/* An optimiser and its state (moments), bound to the first model it steps. */
typedef struct kdens_optimizer kdens_optimizer;

/* Defaults: SGD momentum 0; Adam/AdamW beta1 0.9, beta2 0.999, eps 1e-7
 * (Keras); weight decay 0 (AdamW: 0.004, Keras). */
KDENS_API kdens_status kdens_optimizer_create(kdens_optimizer_type type, double learning_rate,
                                              kdens_optimizer **out);
KDENS_API void kdens_optimizer_free(kdens_optimizer *opt);
KDENS_API kdens_status kdens_optimizer_set_lr(kdens_optimizer *opt, double learning_rate);
KDENS_API double kdens_optimizer_get_lr(const kdens_optimizer *opt);
KDENS_API kdens_status kdens_optimizer_set_momentum(kdens_optimizer *opt, double momentum,
                                                    int nesterov);
KDENS_API kdens_status kdens_optimizer_set_betas(kdens_optimizer *opt, double beta1,
                                                 double beta2, double epsilon);
KDENS_API kdens_status kdens_optimizer_set_weight_decay(kdens_optimizer *opt, double decay);
/* The number of steps taken. */
KDENS_API uint64_t kdens_optimizer_steps(const kdens_optimizer *opt);

/* Apply the gradients of the last backward pass to the model's weights.
 * Errors: KDENS_E_STATE without gradients, KDENS_E_ARG when the optimiser
 * is bound to a different model. */
KDENS_API kdens_status kdens_optimizer_step(kdens_optimizer *opt, kdens_model *model);

/* forward_loss + backward + optimizer_step in one call. */
KDENS_API kdens_status kdens_model_train_step(kdens_model *model, kdens_optimizer *opt,
                                              const float *x, size_t n,
                                              const int32_t *labels,
                                              const float *soft_targets, float *loss,
                                              size_t *correct);

/* ------------------------------------------------------------------------ */
/* Datasets                                                                   */
/* ------------------------------------------------------------------------ */

/* Labelled uint8 images in memory (N x H x W x C) with class names.  A
 * dataset may be a view -- a split or subset -- of another one: views share
 * the pixels (no copies) and stay valid after the dataset they came from is
 * freed.  Read-only after creation, so one dataset may be read from several
 * threads at once. */
typedef struct kdens_dataset kdens_dataset;

typedef enum kdens_color {
    KDENS_COLOR_GRAY = 1, /* one channel: ITU-R 601 luma of colour images */
    KDENS_COLOR_RGB = 3   /* three channels: grey images replicated */
} kdens_color;

typedef enum kdens_cifar_labels {
    KDENS_CIFAR10 = 0,        /* 1 label byte + 3072 pixel bytes per record */
    KDENS_CIFAR100_FINE = 1,  /* coarse byte, fine byte, 3072 pixels: fine labels (100) */
    KDENS_CIFAR100_COARSE = 2 /* the same records, coarse labels (20) */
} kdens_cifar_labels;

/* One PNG, JPEG, PGM or PPM file (recognised by its signature; PGM and PPM
 * binary, P5 and P6, any maxval scaled to 0..255), decoded to grey or RGB
 * and resized (nearest neighbour, PIL's mapping) to height x width, into
 * pixels (height x width x channels bytes) -- what a model's
 * kdens_model_predict_u8 takes.  The inference-only library
 * (libkdens_infer) reads PGM and PPM only.  Errors: KDENS_E_ARG,
 * KDENS_E_IO, KDENS_E_FORMAT (a corrupt or unrecognised image, path named),
 * KDENS_E_UNSUPPORTED (PNG or JPEG in libkdens_infer), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_image_load(const char *path, int height, int width,
                                        kdens_color color, uint8_t *pixels);

/* Flags of the image-folder and manifest loaders. */
#define KDENS_LOAD_SKIP_BAD 1u /* skip unreadable images (counted, see
                                  kdens_dataset_skipped) instead of failing */
#define KDENS_LOAD_LAZY 2u     /* keep only the file list: images are decoded when
                                  read (kdens_dataset_read, the loader's threads),
                                  for folders that do not fit in memory; needs a
                                  target size; bad images fail the read */

/* IDX files (MNIST, Fashion-MNIST, EMNIST): an image file (magic 2051,
 * N x H x W) and a label file (magic 2049), plain or gzip-compressed.
 * Errors: KDENS_E_IO, KDENS_E_FORMAT (wrong magic, counts larger than the
 * file, image and label counts that differ), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_dataset_load_idx(const char *images_path, const char *labels_path,
                                              kdens_dataset **out);

/* CIFAR-10 / CIFAR-100 binary batches (32 x 32 x 3), one or more files
 * concatenated in order.  Errors: KDENS_E_IO, KDENS_E_FORMAT (a file that is
 * not a whole number of records, a label out of range), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_dataset_load_cifar(const char *const *paths, int n_paths,
                                                kdens_cifar_labels labels,
                                                kdens_dataset **out);

/* An image folder laid out as ROOT/<class>/<image>.png|.jpg|.jpeg|.pgm|.ppm|.pnm:
 * the class index is the position of the class folder in sorted order (as
 * Keras' flow_from_directory).  Images become `color` and are resized to
 * height x width with nearest-neighbour sampling (Keras' default); height
 * and width 0 keep the size, which must then be the same for every image.
 * PNG: 8 and 16 bit, grey, grey+alpha, RGB, RGBA and palette; JPEG: grey,
 * RGB (YCbCr) and CMYK; alpha is dropped, not composited (as PIL's convert);
 * PGM and PPM: binary (P5, P6), 8 and 16 bit.
 * Errors: KDENS_E_IO (unreadable folder or image), KDENS_E_FORMAT (corrupt
 * image, naming the file), KDENS_E_SHAPE (differing sizes without resize),
 * KDENS_E_NOTFOUND (no class folders, an empty class folder), KDENS_E_ARG. */
KDENS_API kdens_status kdens_dataset_load_folder(const char *root, int height, int width,
                                                 kdens_color color, unsigned flags,
                                                 kdens_dataset **out);

/* A CSV manifest with the header `filename,class` (the format of subset
 * files): paths relative to data_root, classes by name.  The class list is
 * the sorted class folders of data_root when it has any, else the sorted
 * names the manifest uses.  Errors as kdens_dataset_load_folder, plus
 * KDENS_E_FORMAT for a bad header or row and KDENS_E_NOTFOUND for a class
 * name that is not a class of data_root (line number named). */
KDENS_API kdens_status kdens_dataset_load_manifest(const char *csv_path, const char *data_root,
                                                   int height, int width, kdens_color color,
                                                   unsigned flags, kdens_dataset **out);

/* Named presets of the common benchmark data sets: "mnist", "fmnist",
 * "emnist" (balanced, 47 classes), "cifar10", "cifar100".  path names the
 * folder holding the official files; NULL: the system's data folder, chosen
 * when the library is built (make DATASETS_DIR=, default /usr/share/datasets,
 * where Debian's dataset packages install) followed by mnist, fashion-mnist,
 * emnist, cifar-10 or cifar-100.  Loads the training and test
 * parts (either output may be NULL).  Files: MNIST-style names
 * train-images-idx3-ubyte[.gz] etc. (EMNIST: emnist-balanced-train-images-
 * idx3-ubyte[.gz] ...), CIFAR data_batch_1..5.bin + test_batch.bin, CIFAR-100
 * train.bin + test.bin.  Errors: KDENS_E_NOTFOUND for an unknown preset or
 * missing files, and those of the loaders. */
KDENS_API kdens_status kdens_dataset_preset(const char *name, const char *path,
                                            kdens_dataset **train, kdens_dataset **test);

KDENS_API void kdens_dataset_free(kdens_dataset *ds);

/* Shape and size queries (0 for NULL). */
KDENS_API size_t kdens_dataset_count(const kdens_dataset *ds);
KDENS_API kdens_status kdens_dataset_shape(const kdens_dataset *ds, int *height, int *width,
                                           int *channels);
KDENS_API int kdens_dataset_num_classes(const kdens_dataset *ds);
/* The i-th class name (NULL out of range; datasets without names use "0",
 * "1", ...). */
KDENS_API const char *kdens_dataset_class_name(const kdens_dataset *ds, int i);
/* Sample i: its pixels (H x W x C bytes, valid while the dataset lives),
 * its label, and its file name relative to the data root (for IDX and CIFAR:
 * its index in the file, "0", "1", ...).  Errors: KDENS_E_ARG for NULL or
 * i out of range. */
KDENS_API kdens_status kdens_dataset_get(const kdens_dataset *ds, size_t i,
                                         const uint8_t **pixels, int32_t *label,
                                         const char **filename);
/* Sample i's pixels copied (or, for a lazy dataset, decoded and resized)
 * into dst (H x W x C bytes).  Thread-safe.  Errors: KDENS_E_ARG, and for
 * lazy datasets those of decoding (KDENS_E_IO, KDENS_E_FORMAT naming the
 * file).  kdens_dataset_get gives NULL pixels for lazy datasets. */
KDENS_API kdens_status kdens_dataset_read(const kdens_dataset *ds, size_t i, uint8_t *dst);
/* Images skipped by KDENS_LOAD_SKIP_BAD, and the first of their names. */
KDENS_API size_t kdens_dataset_skipped(const kdens_dataset *ds, const char **first);

/* A reproducible split, stratified by class: of each class, round(val_fraction
 * x its size) samples drawn from seed go to `val`, the rest to `train` (both
 * keep the dataset's order).  Index views, no pixel copies.
 * Errors: KDENS_E_ARG for a fraction outside (0, 1) or NULL. */
KDENS_API kdens_status kdens_dataset_split(const kdens_dataset *ds, double val_fraction,
                                           uint64_t seed, kdens_dataset **train,
                                           kdens_dataset **val);
/* A random subset: each sample kept with probability fraction (count 0), as
 * the dissertation's subsets are drawn, or exactly `count` samples drawn
 * without replacement (fraction ignored).  Errors: KDENS_E_ARG (fraction
 * outside (0, 1], count above the dataset's size). */
KDENS_API kdens_status kdens_dataset_subset(const kdens_dataset *ds, double fraction,
                                            size_t count, uint64_t seed, kdens_dataset **out);
/* Write the dataset's samples as a CSV manifest `filename,class` (atomic
 * write).  Errors: KDENS_E_IO, KDENS_E_ARG. */
KDENS_API kdens_status kdens_dataset_write_manifest(const kdens_dataset *ds, const char *path);
/* A random subset (kdens_dataset_subset with fraction, count and seed)
 * written as the manifest dir/subset_<digits>_<uuid>.csv, the naming of
 * the dissertation's code: digits are the fraction without its point (0.25 -> 025), or
 * n<count>; the uuid is 32 hex digits derived from the seed, so the same
 * seed names the same file.  The path goes to path (path_size bytes) and
 * the subset's size to *n (may be NULL).  Errors: those of
 * kdens_dataset_subset and kdens_dataset_write_manifest, KDENS_E_ARG for a
 * path that does not fit (path is then "", never a shortened path, and no
 * file is written). */
KDENS_API kdens_status kdens_dataset_write_subset(const kdens_dataset *ds, const char *dir,
                                                  double fraction, size_t count, uint64_t seed,
                                                  char *path, size_t path_size, size_t *n);
/* The view of `parent` holding the samples a manifest lists, matched by file
 * name, in the manifest's order: how a subset manifest written from an IDX
 * or CIFAR dataset (file names are indices) is loaded again without decoding
 * anything.  Errors: KDENS_E_IO, KDENS_E_FORMAT (bad header or row, a class
 * that differs from the sample's, line named), KDENS_E_NOTFOUND (a file
 * that is not in parent, line named). */
KDENS_API kdens_status kdens_dataset_select(const kdens_dataset *parent, const char *csv_path,
                                            kdens_dataset **out);

/* Over the ranks of a communicator (NULL: alone), rank 0's `view` -- a
 * view of the data `loaded` it loaded, such as a split or a manifest's
 * selection, possibly made from files only rank 0 has -- as the same view
 * of each rank's own `loaded` (the same data, loaded the same way: the
 * sample count is checked).  Every rank calls it; view is read on rank 0
 * only.  *out is a new dataset on every rank.  Errors, on every rank:
 * KDENS_E_ARG (NULL; on rank 0 a view of other data), KDENS_E_STATE (a rank
 * loaded another number of samples), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_dataset_share(kdens_comm *comm, const kdens_dataset *loaded,
                                           const kdens_dataset *view, kdens_dataset **out);

/* ------------------------------------------------------------------------ */
/* Augmentation (training only, per sample, seeded)                           */
/* ------------------------------------------------------------------------ */

/* An augmentation policy: Keras' ImageDataGenerator transforms (one affine
 * warp per image) and/or RandAugment.  Set up once, then read-only: one
 * policy may serve several threads. */
typedef struct kdens_augment kdens_augment;

typedef enum kdens_fill {
    KDENS_FILL_NEAREST = 0,  /* aaaa|abcd|dddd (Keras' default) */
    KDENS_FILL_CONSTANT = 1, /* kkkk|abcd|kkkk with the constant value */
    KDENS_FILL_REFLECT = 2,  /* dcba|abcd|dcba */
    KDENS_FILL_WRAP = 3      /* abcd|abcd|abcd */
} kdens_fill;

/* A policy that does nothing until set.  Errors: KDENS_E_ARG, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_augment_create(kdens_augment **out);
KDENS_API void kdens_augment_free(kdens_augment *aug);

/* ImageDataGenerator's parameters: rotation_range (degrees), width and
 * height shift ranges (fractions of the size when below 1, else pixels),
 * shear_range (degrees), zoom_range (zoom drawn from [1 - z, 1 + z]
 * independently per axis), horizontal_flip.  Errors: KDENS_E_ARG for
 * negative or non-finite values, zoom >= 1. */
KDENS_API kdens_status kdens_augment_set_affine(kdens_augment *aug, double rotation,
                                                double width_shift, double height_shift,
                                                double shear, double zoom,
                                                int horizontal_flip);
/* How the warp fills pixels from outside the image (default nearest, value 0). */
KDENS_API kdens_status kdens_augment_set_fill(kdens_augment *aug, kdens_fill mode,
                                              uint8_t value);
/* RandAugment: n operations drawn uniformly per image from identity,
 * autocontrast, equalize, rotate, solarize, color, posterize, contrast,
 * brightness, sharpness, shear x/y and translate x/y, each at magnitude m in
 * [0, 30] (docs/augmentation.md gives every operation's range).  n 0 turns it
 * off.  Errors: KDENS_E_ARG for n outside [0, 14] or m outside [0, 30]. */
KDENS_API kdens_status kdens_augment_set_randaugment(kdens_augment *aug, int n, int m);

/* The augmentation the dissertation used for a dataset preset: mnist, emnist -- rotation 5, shifts 0.02, shear 0.02, zoom 0.02,
 * fill nearest; fmnist -- the same with horizontal flips; cifar10, cifar100
 * -- none.  Errors: KDENS_E_NOTFOUND for an unknown name. */
KDENS_API kdens_status kdens_augment_preset(const char *dataset, kdens_augment **out);

/* Augment one image (H x W x C uint8, C 1 or 3) into dst (same shape; may
 * not alias src).  The same seed gives the same image.  RandAugment runs
 * first, then the affine warp.  Errors: KDENS_E_ARG. */
KDENS_API kdens_status kdens_augment_apply(const kdens_augment *aug, const uint8_t *src,
                                           int height, int width, int channels,
                                           uint64_t seed, uint8_t *dst);

/* ------------------------------------------------------------------------ */
/* Batch loader                                                               */
/* ------------------------------------------------------------------------ */

/* Batches of float tensors (N x H x W x C, scaled) with class labels from a
 * dataset: a fresh shuffle per epoch from the seed, the last partial batch
 * kept, optional augmentation.  Batches are prepared ahead on the loader's
 * own threads, overlapping training.  A batch depends only on the seed, the
 * epoch and its position -- never on the number of threads. */
typedef struct kdens_loader kdens_loader;

/* The dataset (and an augmentation policy, if set) must outlive the loader.
 * Defaults: shuffle on, scaling 1/255 and 0, no augmentation, one thread.
 * Errors: KDENS_E_ARG (NULL, batch 0, empty dataset), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_loader_create(const kdens_dataset *ds, size_t batch, uint64_t seed,
                                           kdens_loader **out);
/* Stops the loader's threads and frees it; NULL is a no-op. */
KDENS_API void kdens_loader_free(kdens_loader *ld);
/* Setters take effect at the next kdens_loader_start_epoch. */
KDENS_API kdens_status kdens_loader_set_shuffle(kdens_loader *ld, int shuffle);
KDENS_API kdens_status kdens_loader_set_augment(kdens_loader *ld, const kdens_augment *aug);
/* Per-channel x = pixel * scale[c] + offset[c] (e.g. from
 * kdens_model_get_input_scaling). */
KDENS_API kdens_status kdens_loader_set_scaling(kdens_loader *ld, const float *scale,
                                                const float *offset);
/* Threads preparing batches (1 to 64). */
KDENS_API kdens_status kdens_loader_set_threads(kdens_loader *ld, int threads);
/* Batches per epoch: ceil(count / batch). */
KDENS_API size_t kdens_loader_batches(const kdens_loader *ld);
/* Begin epoch `epoch` (its shuffle is drawn from the seed and the epoch
 * number), abandoning any batches left of the previous one. */
KDENS_API kdens_status kdens_loader_start_epoch(kdens_loader *ld, uint64_t epoch);
/* The next batch: *x (n x H x W x C floats) and *labels stay valid until the
 * next call.  *n is 0 at the end of the epoch.  Errors: KDENS_E_STATE before
 * start_epoch, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_loader_next(kdens_loader *ld, const float **x,
                                         const int32_t **labels, size_t *n);
/* The dataset positions (0 .. count-1) of the samples of the batch the last
 * kdens_loader_next returned, valid as long as that batch.  NULL before. */
KDENS_API const size_t *kdens_loader_batch_indices(const kdens_loader *ld);

/* ------------------------------------------------------------------------ */
/* Evaluation and the trainer                                                 */
/* ------------------------------------------------------------------------ */

/* kdens_model_quantize_u8 (above) calibrated on `samples` images of a
 * dataset, evenly spaced over it (all of them if it holds fewer).  Errors:
 * those of kdens_model_quantize_u8, KDENS_E_ARG for samples 0,
 * KDENS_E_SHAPE when the dataset's images are not the model's input shape,
 * and those of kdens_dataset_read. */
KDENS_API kdens_status kdens_model_quantize(kdens_model *model,
                                            const kdens_dataset *calibration,
                                            kdens_calibration method, size_t samples,
                                            kdens_model **out);

/* Evaluate a model on a labelled dataset (inference mode, the model's input
 * scaling): mean cross-entropy, top-1 and top-5 accuracy; optionally the
 * per-class accuracy (classes doubles; NaN for a class without samples) and
 * the confusion matrix (classes x classes counts, row = true class, column =
 * predicted).  Any output may be NULL.  Errors: KDENS_E_ARG (NULL, batch 0),
 * KDENS_E_SHAPE (the dataset's image shape or class count differs from the
 * model's), KDENS_E_NOMEM, and reading errors of lazy datasets. */
KDENS_API kdens_status kdens_model_evaluate(kdens_model *model, const kdens_dataset *ds,
                                            size_t batch, double *loss, double *top1,
                                            double *top5, double *per_class,
                                            uint64_t *confusion);

typedef enum kdens_schedule {
    KDENS_SCHEDULE_CONSTANT = 0, /* lr */
    KDENS_SCHEDULE_STEP = 1,     /* lr * factor^floor(epoch / period) */
    KDENS_SCHEDULE_COSINE = 2,   /* lr/2 (1 + cos(pi epoch / epochs)) */
    KDENS_SCHEDULE_CYCLIC = 3,   /* cosine restarted every `period` epochs (snapshot
                                    ensembles, Huang et al. 2017) */
    KDENS_SCHEDULE_MILESTONES = 4, /* lr * factor^(milestones passed): uneven steps
                                      (kdens_trainer_set_milestones) */
    KDENS_SCHEDULE_TRIANGULAR = 5  /* fast geometric ensembling (Garipov et al. 2018):
                                      every `period` epochs a triangle from lr down to
                                      the floor at mid-cycle and back, stepped per batch */
} kdens_schedule;

/* The learning rate of an epoch (0-based) under a schedule of the first four
 * kinds, at the start of the epoch, with a floor of 0; `period` and `factor`
 * as above (ignored where unused).  A trainer's own rates (milestones,
 * floors, per-batch steps) follow kdens_trainer_set_schedule and its
 * neighbours. */
KDENS_API double kdens_schedule_lr(kdens_schedule schedule, double lr, int epoch, int epochs,
                                   int period, double factor);

/* The one training loop of the library. */
typedef struct kdens_trainer kdens_trainer;

/* A trainer for `model` on `train`, validating on `val` (may be NULL: no
 * validation, no early stopping).  The model and datasets must outlive it.
 * A model without class names takes the training set's.
 * Defaults: 10 epochs, batch 128, Adam at 1e-3, constant schedule, no early
 * stopping, seed 0, no augmentation, no log.  Errors: KDENS_E_ARG,
 * KDENS_E_SHAPE (datasets that do not fit the model), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_trainer_create(kdens_model *model, const kdens_dataset *train,
                                            const kdens_dataset *val, kdens_trainer **out);
KDENS_API void kdens_trainer_free(kdens_trainer *t);
/* The training settings the dissertation used for a built-in architecture:
 * epochs, Adam's learning rate, batch size, early-stopping patience (best
 * weights restored) and RandAugment n and m (docs/architectures.md lists
 * them).  Errors: KDENS_E_NOTFOUND for an architecture without them. */
KDENS_API kdens_status kdens_trainer_use_arch_defaults(kdens_trainer *t, const char *arch);
KDENS_API kdens_status kdens_trainer_set_epochs(kdens_trainer *t, int epochs);
KDENS_API kdens_status kdens_trainer_set_batch(kdens_trainer *t, size_t batch);
KDENS_API kdens_status kdens_trainer_set_optimizer(kdens_trainer *t, kdens_optimizer_type type,
                                                   double lr);
KDENS_API kdens_status kdens_trainer_set_schedule(kdens_trainer *t, kdens_schedule schedule,
                                                  int period, double factor);
/* The epochs (1-based, increasing, at most 16) after which a milestones
 * schedule multiplies the rate by its factor: e.g. {30, 60, 80}.  Errors:
 * KDENS_E_ARG (NULL, n outside [1, 16], not increasing, below 1). */
KDENS_API kdens_status kdens_trainer_set_milestones(kdens_trainer *t, const int *epochs, int n);
/* The lowest rate of the cosine, cyclic and triangular schedules (default 0,
 * triangular lr / 100): cosine runs floor + (lr - floor) / 2 (1 + cos ...).
 * Errors: KDENS_E_ARG unless 0 <= floor < the trainer's lr. */
KDENS_API kdens_status kdens_trainer_set_lr_floor(kdens_trainer *t, double floor);
/* Keras' EarlyStopping on val_loss: stop after `patience` epochs without a
 * lower validation loss; with restore_best, the weights of the best epoch are
 * restored when it stops.  patience 0 turns it off. */
KDENS_API kdens_status kdens_trainer_set_early_stopping(kdens_trainer *t, int patience,
                                                        int restore_best);
KDENS_API kdens_status kdens_trainer_set_seed(kdens_trainer *t, uint64_t seed);
/* Borrowed: the policy must outlive the trainer.  NULL: none. */
KDENS_API kdens_status kdens_trainer_set_augment(kdens_trainer *t, const kdens_augment *aug);
/* A CSV log, one row per epoch: epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds
 * (rewritten atomically after every epoch).  NULL: none. */
KDENS_API kdens_status kdens_trainer_set_log(kdens_trainer *t, const char *csv_path);

/* A checkpoint after every epoch -- model, optimizer state, the model's random
 * stream, epoch, early-stopping state and the log -- written atomically to
 * path.  With resume, fit first loads the checkpoint at path (if there is
 * one) and continues after its epoch: a run killed at any moment and resumed
 * ends with weights bit-identical to an uninterrupted run (same seed and
 * thread count).  NULL path: no checkpoints. */
KDENS_API kdens_status kdens_trainer_set_checkpoint(kdens_trainer *t, const char *path,
                                                    int resume);

/* Soft targets for the distillation loss (kdens_model_set_loss): called for
 * every training batch with the batch's float images (as the model sees
 * them, augmentation included), the samples' positions in the training
 * dataset, and n; fills n x classes target probabilities (n x S x classes
 * for a distiller's student that takes S target sets per sample).  A status other
 * than KDENS_OK stops training with it.  NULL: plain cross-entropy. */
typedef kdens_status (*kdens_soft_targets_fn)(void *user, const float *x,
                                              const size_t *indices, size_t n,
                                              float *targets);
KDENS_API kdens_status kdens_trainer_set_soft_targets(kdens_trainer *t, kdens_soft_targets_fn fn,
                                                      void *user);

/* Called after every epoch (1-based) with its validation loss (NaN without
 * validation), before any early-stopping restore; the model may be read
 * (saved, copied) but not changed.  A status other than KDENS_OK stops
 * training with it.  NULL: none. */
typedef kdens_status (*kdens_epoch_fn)(void *user, int epoch, double val_loss,
                                       const kdens_model *model);
KDENS_API kdens_status kdens_trainer_set_epoch_callback(kdens_trainer *t, kdens_epoch_fn fn,
                                                        void *user);

/* Data-parallel training over the communicator's ranks (NULL or one rank:
 * alone).  Every rank creates the same model, trainer and data (the same
 * files, or the same copy of them) and calls fit; rank 0's settings and
 * starting weights are checked against and copied to the others.  Each
 * global batch of `batch` images is split over the ranks (a last batch
 * smaller than the rank count is dropped); every rank computes the
 * gradient of the mean loss over its slice, the gradients are summed over
 * the ranks in a fixed order and every rank takes the same optimizer step,
 * so all ranks hold identical weights after every step.  Batch
 * normalisation uses the statistics of the whole global batch
 * (synchronised: two sums over the ranks per layer and pass), so N ranks
 * train as one process with the same global batch does, within rounding
 * (docs/mpi.md states the tolerance).  Rank 0 alone validates (and shares
 * the result: early stopping decides alike everywhere), writes the log and
 * checkpoints, reports progress and calls the epoch callback (the other
 * ranks' log and checkpoint settings are not used); resume reads rank 0's
 * checkpoint and sends it to every rank.  Dropout draws a stream
 * per rank.  A failure on any rank stops every rank with the same status;
 * rank 0's message names the rank.  Borrowed: the communicator must
 * outlive the fit. */
KDENS_API kdens_status kdens_trainer_set_comm(kdens_trainer *t, kdens_comm *comm);

/* Train.  Progress goes to the progress callback once per batch, with the
 * task "epoch E/N loss L img/s R eta S".  Errors: KDENS_E_NUMERIC when the
 * loss becomes NaN or infinite (training stops; the message names the epoch
 * and batch), KDENS_E_IO for the log, and those of the model and loader. */
KDENS_API kdens_status kdens_trainer_fit(kdens_trainer *t);
/* After fit: epochs run, the best epoch (1-based, by validation loss; 0
 * without validation) and its validation loss. */
KDENS_API int kdens_trainer_epochs_run(const kdens_trainer *t);
KDENS_API int kdens_trainer_best_epoch(const kdens_trainer *t);
KDENS_API double kdens_trainer_best_val_loss(const kdens_trainer *t);

/* ------------------------------------------------------------------------ */
/* Decision fusion (docs/fusion.md defines every rule)                        */
/* ------------------------------------------------------------------------ */

typedef enum kdens_fusion {
    KDENS_FUSE_MEAN = 0,      /* mean of probabilities (softmax averaging) */
    KDENS_FUSE_SUM,           /* sum of probabilities */
    KDENS_FUSE_GEOMETRIC,     /* geometric mean */
    KDENS_FUSE_MAX,           /* maximum */
    KDENS_FUSE_MEDIAN,        /* median */
    KDENS_FUSE_PLURALITY,     /* one vote for each member's top class */
    KDENS_FUSE_BORDA,         /* K-1-r points at rank r */
    KDENS_FUSE_BORDA_SYMMETRIC, /* K-1-2r points at rank r */
    KDENS_FUSE_DOWDALL,       /* 1/(r+1) points at rank r */
    KDENS_FUSE_COPELAND,      /* pairwise wins minus losses */
    KDENS_FUSE_SIMPSON,       /* minimax: smallest worst pairwise defeat */
    KDENS_FUSE_SCHULZE,       /* strongest beatpaths */
    KDENS_FUSE_BALDWIN,       /* eliminate the lowest Borda score, repeat */
    KDENS_FUSE_NANSON,        /* eliminate below-average Borda scores, repeat */
    KDENS_FUSE_BUCKLIN,       /* add lower preferences until a majority */
    KDENS_FUSE_STV,           /* instant run-off */
    KDENS_FUSE_CONDORCET,     /* the Condorcet winner, else the probability sum */
    KDENS_FUSE_KEMENY         /* Kemeny-Young (exact; docs/fusion.md) */
} kdens_fusion;

/* Weighted mean of probabilities: sum_i w_i p_i / sum_i w_i (weights >= 0,
 * not all 0).  Otherwise as kdens_fuse. */
KDENS_API kdens_status kdens_fuse_weighted(const float *probs, int members, size_t samples,
                                           int classes, const double *weights,
                                           int32_t *decisions, float *scores);
/* Weights of members from a quality score per member: w_i = l_i / min(l);
 * "const" (relative 0): w_i *= factor / max(w); "relative" (relative 1):
 * w_i += factor (w_i - min w) / (max w - min w) w_i; then w_i /= mean(w).
 * Larger values get larger weights: pass validation
 * accuracies, or inverse losses, to favour the better members.  Errors:
 * KDENS_E_ARG for n < 1 or values that are not finite and above 0. */
KDENS_API kdens_status kdens_loss2weight(const double *losses, int n, int relative,
                                         double factor, double *weights);
/* The members' pairwise agreement : the
 * fraction of samples on which members i and j predict the same class, into
 * agreement (members x members); and the oracle accuracy (a sample counts as
 * right when any member is).  Either output may be NULL. */
KDENS_API kdens_status kdens_agreement(const float *probs, int members, size_t samples,
                                       int classes, const int32_t *labels, double *agreement,
                                       double *oracle);

/* Pairwise diversity of the members on labelled samples, each a members x
 * members matrix (any may be NULL): disagreement (fraction of samples where
 * their top classes differ), Cohen's kappa of their top classes, Yule's Q of
 * their correctness ((N11 N00 - N01 N10) / (N11 N00 + N01 N10), 0 where the
 * denominator is 0), the Pearson correlation of their error indicators (0
 * where one never or always errs), and the Kendall tau distance between
 * their rankings of the classes (fraction of discordant class pairs, mean
 * over samples).  Errors: KDENS_E_ARG. */
KDENS_API kdens_status kdens_diversity(const float *probs, int members, size_t samples,
                                       int classes, const int32_t *labels,
                                       double *disagreement, double *kappa, double *yules_q,
                                       double *error_correlation, double *kendall);

/* How the members' votes fall.  Each member votes for its top class; the
 * plurality winner is the class with most votes (ties as
 * KDENS_FUSE_PLURALITY).  The struct carries its own size so that it can
 * grow: initialise it with KDENS_VOTE_STATS_INIT; later versions append
 * fields and fill only those that fit the size the caller was built with. */
typedef struct kdens_vote_stats {
    size_t size;                 /* sizeof(kdens_vote_stats) of the caller */
    uint64_t samples;
    uint64_t unanimous;          /* every member voted for the same class */
    uint64_t majority;           /* the plurality winner has more than half the votes */
    uint64_t majority_correct;   /* ... and is the label */
    uint64_t plurality_correct;  /* the plurality winner is the label */
    uint64_t condorcet_exists;   /* a Condorcet winner exists (pairwise majority over
                                    every other class, on the members' full rankings) */
    uint64_t condorcet_correct;  /* ... and is the label */
    uint64_t condorcet_is_plurality;           /* ... and is the plurality winner */
    uint64_t plurality_correct_with_condorcet; /* plurality right where one exists */
    uint64_t plurality_correct_without_condorcet; /* ... and where none exists */
    double mean_distinct;        /* mean number of distinct classes voted for */
} kdens_vote_stats;
#define KDENS_VOTE_STATS_INIT {sizeof(kdens_vote_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0}
/* Fill stats for labelled members x samples x classes probabilities, and
 * optionally three histograms of members + 1 counts (index v = v votes):
 * winner_votes, samples whose plurality winner got v votes;
 * winner_votes_correct, those of them where it is the label; label_votes,
 * samples whose true class got v votes.  Errors: KDENS_E_ARG (NULL, a size
 * field below the first version's, a probability outside [0, 1], a label out
 * of range). */
KDENS_API kdens_status kdens_vote_analysis(const float *probs, int members, size_t samples,
                                           int classes, const int32_t *labels,
                                           kdens_vote_stats *stats, uint64_t *winner_votes,
                                           uint64_t *winner_votes_correct,
                                           uint64_t *label_votes);

/* The number of fusion rules this library knows: the rules are 0 ..
 * count-1 (later versions append rules, never renumber them). */
KDENS_API int kdens_fusion_count(void);
/* The rule's name ("mean", "borda", ...; NULL for an unknown rule) and back
 * (KDENS_E_NOTFOUND). */
KDENS_API const char *kdens_fusion_name(kdens_fusion rule);
KDENS_API kdens_status kdens_fusion_from_name(const char *name, kdens_fusion *rule);

/* Fuse members x samples x classes probabilities (member-major) into one
 * decision per sample and, where the rule has one, a score vector per sample
 * (samples x classes; may be NULL).  Each member's ballot ranks the classes
 * by its probability (ties: lower class first).  Ties between classes are
 * broken by the summed probability, then the lowest class index.
 * Errors: KDENS_E_ARG (NULL, members or classes < 1, a probability that is
 * NaN, negative or above 1, naming member, sample and class). */
KDENS_API kdens_status kdens_fuse(kdens_fusion rule, const float *probs, int members,
                                  size_t samples, int classes, int32_t *decisions,
                                  float *scores);

/* ------------------------------------------------------------------------ */
/* Ensembles and their predictions                                            */
/* ------------------------------------------------------------------------ */

/* N member models of one input shape and class count. */
typedef struct kdens_ensemble kdens_ensemble;
/* Every member's probabilities on a labelled dataset, kept (and saved) so
 * that fusion can be analysed without running the models again. */
typedef struct kdens_predictions kdens_predictions;

KDENS_API kdens_status kdens_ensemble_create(kdens_ensemble **out);
KDENS_API void kdens_ensemble_free(kdens_ensemble *ens);
/* Load a member from a .kdm file.  Errors: those of kdens_model_load, and
 * KDENS_E_SHAPE for a member whose input shape or class count differs from
 * the first member's (both named). */
KDENS_API kdens_status kdens_ensemble_add(kdens_ensemble *ens, const char *model_path);
/* The same, naming the member `name` (e.g. its uuid) instead of its file. */
KDENS_API kdens_status kdens_ensemble_add_named(kdens_ensemble *ens, const char *model_path,
                                                const char *name);
KDENS_API int kdens_ensemble_size(const kdens_ensemble *ens);
/* Member i (NULL out of range); owned by the ensemble.  Not const: running
 * a model (kdens_model_predict) uses its buffers. */
KDENS_API kdens_model *kdens_ensemble_member(kdens_ensemble *ens, int i);
/* Member i's name: the name it was added under, else its file (NULL out of
 * range); owned by the ensemble. */
KDENS_API const char *kdens_ensemble_member_name(const kdens_ensemble *ens, int i);

/* Run every member over the dataset once.  Errors: KDENS_E_ARG (an empty
 * ensemble), KDENS_E_SHAPE (a dataset that does not fit), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_ensemble_predict(kdens_ensemble *ens, const kdens_dataset *ds,
                                              kdens_predictions **out);
KDENS_API void kdens_predictions_free(kdens_predictions *pr);
KDENS_API int kdens_predictions_members(const kdens_predictions *pr);
KDENS_API size_t kdens_predictions_samples(const kdens_predictions *pr);
KDENS_API int kdens_predictions_classes(const kdens_predictions *pr);
/* members x samples x classes probabilities (member-major), and labels
 * (NULL for unlabelled predictions, e.g. a CSV import). */
KDENS_API const float *kdens_predictions_probs(const kdens_predictions *pr);
KDENS_API const int32_t *kdens_predictions_labels(const kdens_predictions *pr);
/* Names of samples (CSV imports only) and members (CSV imports, and the
 * ensemble's names after kdens_ensemble_predict; not kept by save/load);
 * NULL when there are none or i is out of range. */
KDENS_API const char *kdens_predictions_sample_name(const kdens_predictions *pr, size_t i);
KDENS_API const char *kdens_predictions_member_name(const kdens_predictions *pr, int i);
/* Import scores from a CSV with the header sample,member,p0,...,p{K-1} and
 * one row per sample and member (docs/formats.md): samples and members in
 * order of first appearance, each row's scores (finite, >= 0, not all 0)
 * divided by their sum; no labels.  Errors: KDENS_E_IO, KDENS_E_FORMAT (a
 * bad header or row, a duplicate row, or a sample without a row for some
 * member -- line, sample and member named), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_predictions_load_csv(const char *path, kdens_predictions **out);
/* Accuracy versus ensemble size: for each size, `repeats` random
 * sub-ensembles drawn from seed (members without replacement), their mean
 * accuracy under the rule and the half-width of its 95% t-distribution
 * confidence interval (0 for one repeat).  Errors: KDENS_E_ARG (a size
 * outside [1, members], repeats < 1). */
KDENS_API kdens_status kdens_accuracy_vs_size(const kdens_predictions *pr, kdens_fusion rule,
                                              const int *sizes, int n_sizes, int repeats,
                                              uint64_t seed, double *mean, double *ci_half);
/* McNemar's exact test of two classifiers' decisions on the same labelled
 * samples: *only_a receives the samples A classifies right and B wrong,
 * *only_b the reverse, *p_value the two-sided exact p-value
 * min(1, 2 P(X <= min(only_a, only_b))) for X ~ Binomial(only_a + only_b, 1/2)
 * (1 when the two are never right apart).  Any output may be NULL.  Errors:
 * KDENS_E_ARG for NULL inputs. */
KDENS_API kdens_status kdens_mcnemar(const int32_t *decisions_a, const int32_t *decisions_b,
                                     const int32_t *labels, size_t n, uint64_t *only_a,
                                     uint64_t *only_b, double *p_value);
/* The mean of n >= 1 finite values, its standard error (0 for one value)
 * and the half-width of its 95% t-interval (0 for one value); any output may
 * be NULL.  Errors: KDENS_E_ARG (NULL, n < 1, a value not finite). */
KDENS_API kdens_status kdens_mean_ci(const double *values, int n, double *mean, double *sem,
                                     double *ci95_half);
/* Vote statistics versus ensemble size: for each size, `repeats` random
 * sub-ensembles drawn from seed (as kdens_accuracy_vs_size), their
 * kdens_vote_analysis counts summed (samples = repeats x samples) and
 * mean_distinct averaged, into stats[s] (each initialised with
 * KDENS_VOTE_STATS_INIT).  How often a Condorcet winner exists, and how
 * often plurality is right with and without one, as the ensemble grows.
 * Errors: KDENS_E_ARG (NULL, a size outside [1, members], repeats < 1,
 * unlabelled predictions, a size field not set). */
KDENS_API kdens_status kdens_vote_stats_vs_size(const kdens_predictions *pr, const int *sizes,
                                                int n_sizes, int repeats, uint64_t seed,
                                                kdens_vote_stats *stats);
/* A file with a CRC per section (docs/formats.md), written atomically. */
KDENS_API kdens_status kdens_predictions_save(const kdens_predictions *pr, const char *path);
KDENS_API kdens_status kdens_predictions_load(const char *path, kdens_predictions **out);
/* Accuracy of a fusion rule against the labels, over all members or the
 * members listed (n_members indices; NULL: all).  KDENS_E_ARG for
 * unlabelled predictions. */
KDENS_API kdens_status kdens_predictions_accuracy(const kdens_predictions *pr,
                                                  kdens_fusion rule, const int *members,
                                                  int n_members, double *accuracy);

/* ------------------------------------------------------------------------ */
/* Distillation: an ensemble of teachers into one student (docs/distillation.md) */
/* ------------------------------------------------------------------------ */

typedef enum kdens_distill_mode {
    KDENS_DISTILL_OUTPUT_AVG = 0, /* match the mean of the teachers' softened outputs */
    KDENS_DISTILL_LOSS_AVG,       /* the mean of the divergences from each teacher */
    KDENS_DISTILL_MIMIC_ALL,      /* one head per teacher on a shared body */
    KDENS_DISTILL_SUPERNET,       /* a trained aggregator over the teachers' logits */
    KDENS_DISTILL_SUPERNET2,      /* the same over their penultimate features */
    KDENS_DISTILL_FUSION,         /* scores of a fusion rule, as a distribution */
    KDENS_DISTILL_MIMIC_ALL_PROBS /* mimic_all whose heads' probabilities are averaged
                                     (the dissertation's code) instead of their logits */
} kdens_distill_mode;

/* The number of distillation modes this library knows: the modes are 0 ..
 * count-1 (later versions append modes, never renumber them). */
KDENS_API int kdens_distill_mode_count(void);
/* "output_avg", "loss_avg", "mimic_all", "supernet", "supernet2", "fusion"
 * (NULL for an unknown mode) and back (KDENS_E_NOTFOUND). */
KDENS_API const char *kdens_distill_mode_name(kdens_distill_mode mode);
KDENS_API kdens_status kdens_distill_mode_from_name(const char *name, kdens_distill_mode *mode);

typedef struct kdens_distiller kdens_distiller;

/* A distiller of the ensemble `teachers` (borrowed; it must outlive the
 * distiller) into a student built from `student` (a template: its canonical
 * spec, weights and metadata are copied; the template is not changed).  For
 * mimic_all the student's final dense layer is replaced by one dense head
 * per teacher (head_0, ...) whose logits are averaged.  train and val are
 * borrowed too (val may be NULL).  Errors: KDENS_E_ARG (NULL, an empty
 * ensemble, an unknown mode; mimic_all with a student whose logits do not
 * come from a dense layer), KDENS_E_SHAPE (teachers whose class count or
 * input shape differ from the student's, both named), KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_distiller_create(kdens_ensemble *teachers,
                                              const kdens_model *student,
                                              kdens_distill_mode mode,
                                              const kdens_dataset *train,
                                              const kdens_dataset *val,
                                              kdens_distiller **out);
KDENS_API void kdens_distiller_free(kdens_distiller *d);
/* alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
 * (default alpha 0.5, T 1).  Errors: KDENS_E_ARG for alpha
 * outside [0, 1] or T <= 0. */
KDENS_API kdens_status kdens_distiller_set_loss(kdens_distiller *d, double alpha,
                                                double temperature);
/* The rule of the fusion mode (default KDENS_FUSE_BORDA); KDENS_E_ARG for a
 * rule without scores (kemeny). */
KDENS_API kdens_status kdens_distiller_set_fusion(kdens_distiller *d, kdens_fusion rule);
/* Teacher outputs: cache 1 (default) computes every training sample's
 * targets once when the trainer has no augmentation -- in memory, or in a
 * scratch file at `path` (mapped, not read into memory; created by each fit,
 * which fails with KDENS_E_IO if the file already exists, and deleted when
 * the fit ends) -- so an epoch's cost does not grow with the number of
 * teachers; cache 0, or augmentation on, runs the teachers on every batch
 * (inference mode). */
KDENS_API kdens_status kdens_distiller_set_cache(kdens_distiller *d, int cache,
                                                 const char *path);
/* The trainer that trains the student (owned by the distiller): set epochs,
 * batch, optimizer, schedule, early stopping, augmentation, log and
 * checkpoint on it.  Its soft-target hook belongs to the distiller. */
KDENS_API kdens_trainer *kdens_distiller_trainer(kdens_distiller *d);
/* Distil over the communicator's ranks (NULL or one rank: alone): every
 * rank creates the same distiller (teachers, student, data) and calls fit.
 * The teachers' outputs of the cache (and of the supernet aggregators) are
 * computed a share per rank and exchanged, so every rank holds the same
 * targets; without the cache each rank runs the teachers on its slice of
 * every batch.  The student trains data-parallel (kdens_trainer_set_comm,
 * which this sets on the distiller's trainer).  A cache file (set_cache
 * with a path) becomes one per rank, path.rankR. */
KDENS_API kdens_status kdens_distiller_set_comm(kdens_distiller *d, kdens_comm *comm);
/* Prepare the targets (train the supernet aggregator, fill the cache) and
 * train the student.  Errors: those of the trainer and of the teachers. */
KDENS_API kdens_status kdens_distiller_fit(kdens_distiller *d);
/* The student being trained (owned by the distiller).  For mimic_all its
 * prediction is the softmax of the mean of its heads' logits. */
KDENS_API kdens_model *kdens_distiller_student(kdens_distiller *d);
/* A deployable copy of the student: for mimic_all the heads folded into one
 * dense layer (W = mean of the heads' kernels, b = mean of their biases;
 * predictions equal the multi-head student's within rounding); otherwise a
 * plain copy.  The caller frees it.  Errors: KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_distiller_export(kdens_distiller *d, kdens_model **out);

#ifdef __cplusplus
}
#endif

#endif /* KDENS_H */

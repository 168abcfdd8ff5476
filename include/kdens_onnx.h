/*
 * kdens_onnx.h -- libkdens' ONNX exchange: a model written as an ONNX file
 * that other runtimes (ONNX Runtime, ...) run with the predictions libkdens
 * makes.  It lives in a library of its own, libkdens_onnx, built with
 * `make ONNX=1` (Debian's protobuf-c and onnx.proto; `pkg-config --cflags
 * --libs kdens-onnx`); libkdens itself never links protobuf-c.
 *
 * This header does not include protobuf-c's or ONNX's headers.
 * Layouts: libkdens computes in NHWC, ONNX in NCHW; both directions
 * convert the weights once, in the file's conversion, never per call.
 */
#ifndef KDENS_ONNX_H
#define KDENS_ONNX_H

#include "kdens.h"

#ifdef __cplusplus
extern "C" {
#endif

/* -------------------------------------------------------------------------- */
/* ONNX export                                                                */
/* -------------------------------------------------------------------------- */

/* Write the model as an ONNX file (IR version 7, opset 13) at path,
 * atomically (a temporary file renamed over path: a reader never sees half
 * a file).  The file computes what kdens_model_predict_u8 computes:
 *  - input "input": float [batch, C, H, W] (NCHW; batch is free) holding
 *    the raw pixel values 0..255 as floats, the values kdens_model_predict_u8
 *    takes as bytes.  The model's per-channel input scaling
 *    (kdens_model_set_input_scaling) is the graph's first two operators;
 *  - output "probabilities": float [batch, classes], the softmax of the
 *    model's logits (as kdens_model_predict).
 * Every layer family of docs/spec.md is written with standard operators;
 * the weights are transposed from libkdens' NHWC layout once, at export.
 * Errors: KDENS_E_ARG (NULL), KDENS_E_NOTFOUND (a layer with no ONNX
 * counterpart: the message names it), KDENS_E_NOMEM, KDENS_E_IO. */
KDENS_API kdens_status kdens_onnx_export(const kdens_model *model, const char *path);

/* -------------------------------------------------------------------------- */
/* ONNX import                                                                */
/* -------------------------------------------------------------------------- */

/* Read an ONNX file (opset 13 or later) into a new model (*out; free it
 * with kdens_model_free).  The operators read are those kdens_onnx_export
 * writes: Conv (groups, strides, explicit pads; no dilation), Gemm,
 * BatchNormalization (inference), Relu, Clip(0, 6), Sigmoid, HardSigmoid
 * (relu6(x + 3) / 6), HardSwish, x * Sigmoid(x), x * HardSigmoid(x), Tanh,
 * Softmax over the channels, Log(Max(x, 1e-30)), MaxPool, AveragePool
 * (count_include_pad=0), GlobalAveragePool, Pad (zeros on H and W), Add,
 * Sum, Mul, Concat (channels), Flatten, Transpose to NHWC, Reshape of 1x1
 * maps, Identity, Dropout; x * s + o with scalars (rescale) and (x - mean)
 * * k per channel (normalize).  The graph's input is float [N, C, H, W];
 * a first Mul and Add of it by per-channel constants become the model's
 * input scaling (kdens_model_set_input_scaling), as the export writes
 * them; otherwise the scaling is 1 and 0 (predict_u8 then feeds the pixel
 * values as they are).  The graph's one output must be the last layer's,
 * 1 x 1 x classes: a final Softmax is the model's softmax, anything else is
 * taken as the logits.  Weights are converted from NCHW to NHWC once; a
 * Flatten of an NCHW map read by a Gemm has the Gemm's rows permuted.
 * Memory is bounded by a multiple of the file's size.
 * Errors: KDENS_E_ARG (NULL), KDENS_E_IO (unreadable), KDENS_E_FORMAT (not
 * ONNX, or an attribute or initializer libkdens cannot read; the message
 * names the node and its operator), KDENS_E_NOTFOUND (an operator outside
 * the list: named with its node), KDENS_E_VERSION (opset below 13),
 * KDENS_E_SHAPE, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_onnx_import(const char *path, kdens_model **out);

#ifdef __cplusplus
}
#endif

#endif

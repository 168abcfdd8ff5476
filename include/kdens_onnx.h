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
 * with kdens_model_free): the files kdens_onnx_export writes and those
 * PyTorch's torch.onnx.export writes for common image classifiers
 * (docs/onnx.md lists the operators: Conv with groups, strides, dilations,
 * pads or auto_pad; Gemm, MatMul (+ Add of a bias); BatchNormalization;
 * Relu, Clip(0, 6), Sigmoid, HardSigmoid, HardSwish, Tanh, x * Sigmoid(x),
 * x * HardSigmoid(x); Mul, Add, Sum, Concat of maps; MaxPool, AveragePool,
 * GlobalAveragePool, ReduceMean over H and W, Pad; Softmax over the
 * channels; Flatten, Reshape to [N, features], Identity, Dropout;
 * Constant and the arithmetic on ints of x.view(x.size(0), -1) and of
 * F.pad's pads (Shape, Gather, Unsqueeze,
 * Squeeze, Concat, ConstantOfShape, Reshape, Slice, Transpose, Cast),
 * evaluated at load; and libkdens' own pairs: Log(Max(x, 1e-30)),
 * rescale, normalize).  The graph's input is float [N, C, H, W] (N may be
 * free), or channels-last [N, H, W, C] read by one Transpose to NCHW (Keras'
 * layout, as tf2onnx writes it: libkdens' own, so that Transpose costs
 * nothing).  Input convention: a first Mul and Add of the input by
 * per-channel constants become the model's input scaling
 * (kdens_model_set_input_scaling), as the export writes them; otherwise
 * the scaling is 1 and 0 and kdens_model_predict takes exactly the values
 * the graph's input takes (in NHWC order; a PyTorch model's normalised
 * image), predict_u8 the bytes unchanged.  The graph's one output must be
 * the last layer's, 1 x 1 x classes: a final Softmax is the model's
 * softmax, anything else is taken as the logits.  NCHW weights are
 * converted to NHWC once, here; a Flatten of an NCHW map read by a Gemm has
 * the Gemm's rows permuted.  Memory is bounded by a multiple of the file's
 * size.
 * Errors: KDENS_E_ARG (NULL), KDENS_E_IO (unreadable), KDENS_E_FORMAT (not
 * ONNX, or an attribute or constant libkdens cannot read; the message
 * names the node and its operator), KDENS_E_NOTFOUND (an operator outside
 * the list: named with its node), KDENS_E_VERSION (opset below 13),
 * KDENS_E_SHAPE, KDENS_E_NOMEM. */
KDENS_API kdens_status kdens_onnx_import(const char *path, kdens_model **out);

/* Make kdens_model_load read .onnx files with kdens_onnx_import
 * (kdens_model_set_reader): from then on an ONNX model is loaded wherever a
 * .kdm is -- ensemble members (kdens_ensemble_add), teachers.csv rows whose
 * file is an .onnx, the distillation workflow, the kdens tool.  Call it once
 * (again: harmless) before loading.  Errors: those of
 * kdens_model_set_reader. */
KDENS_API kdens_status kdens_onnx_enable(void);

#ifdef __cplusplus
}
#endif

#endif

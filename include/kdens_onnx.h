/*
 * kdens_onnx.h -- libkdens' ONNX exchange: a model written as an ONNX file
 * that other runtimes (ONNX Runtime, ...) run with the predictions libkdens
 * makes.  It lives in a library of its own, libkdens_onnx, built with
 * `make ONNX=1` (Debian's protobuf-c and onnx.proto; `pkg-config --cflags
 * --libs kdens-onnx`); libkdens itself never links protobuf-c.
 *
 * This header does not include protobuf-c's or ONNX's headers.
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

#ifdef __cplusplus
}
#endif

#endif

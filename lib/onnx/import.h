/* The ONNX import's internal entry (not exported: libkdens_onnx exports
 * only kdens_onnx.h's functions). */
#ifndef KD_ONNX_IMPORT_H
#define KD_ONNX_IMPORT_H

#include "kdens.h"

#include <stddef.h>
#include <stdint.h>

/* kdens_onnx_import of the len bytes at data; name names the file in
 * messages.  Its errors, with KDENS_E_IO never returned. */
kdens_status kd_onnx_import_memory(const char *name, const uint8_t *data, size_t len,
                                   kdens_model **out);

#endif

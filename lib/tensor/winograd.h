/* Winograd F(4x4, 3x3) convolution for stride-1 3x3 layers (winograd.c),
 * used by conv.c. */
#ifndef KD_WINOGRAD_H
#define KD_WINOGRAD_H

#include "kernels.h"

/* One group, 3x3, stride 1, no dilation, input and output channels in
 * multiples of 16 (any padding). */
bool kd_winograd_applies(const kd_conv_geom *g);
/* Floats of workspace for both passes; independent of the batch size. */
size_t kd_winograd_workspace(const kd_conv_geom *g);
/* y = bias + conv(x, w) (bias may be NULL), on the library's threads. */
void kd_winograd_forward(const kd_conv_geom *g, const float *x, const float *w,
                         const float *bias, float *y, float *work);
/* dw += dL/dw; dx (may be NULL) written (assign) or added to.  The bias
 * gradient is the caller's. */
void kd_winograd_backward(const kd_conv_geom *g, const float *x, const float *w,
                          const float *dy, float *dx, bool assign, float *dw, float *work);

#endif

/* Direct NHWC convolution kernels (conv_direct.c), used by conv.c. */
#ifndef KD_CONV_DIRECT_H
#define KD_CONV_DIRECT_H

#include "tensor.h"

bool kd_direct_applies(const kd_conv_geom *g);
bool kd_direct_backward_data_applies(const kd_conv_geom *g);
size_t kd_direct_padded_floats(const kd_conv_geom *g, int images);
/* Copy `images` images of x into the zero-padded layout the kernels read. */
void kd_direct_pad(const kd_conv_geom *g, const float *x, int images, float *xp);
/* y = bias + conv(xp, w), or y += conv(xp, w) when accumulate. */
void kd_direct_forward_padded(const kd_conv_geom *g, const float *xp, int images,
                              const float *w, const float *bias, float *y, bool accumulate);
/* The geometry and weights of the input-gradient convolution. */
void kd_direct_data_geom(const kd_conv_geom *g, kd_conv_geom *b);
void kd_direct_flip_weights(const kd_conv_geom *g, const float *w, float *wt);
void kd_direct_backward_weights_padded(const kd_conv_geom *g, const float *xp, int images,
                                       const float *dy, float *dw);

#endif

/* Direct NHWC convolution kernels (conv_direct.c), used by conv.c. */
#ifndef KD_CONV_DIRECT_H
#define KD_CONV_DIRECT_H

#include "kernels.h"

/* The hot loops are dispatched (kernels.h): forward
 *   kd_kernels_active()->direct_forward(g, xp, images, w, bias, y, accumulate)
 * computes y = bias + conv(xp, w), or y += conv(xp, w) when accumulate, and
 * direct_backward_weights(g, xp, images, dy, dw) adds the weight gradient. */

/* One group, output channels in multiples of 16, no dilation. */
bool kd_direct_applies(const kd_conv_geom *g);
/* The padded input's extents: exactly the rows and columns the windows touch. */
static inline int kd_direct_padded_h(const kd_conv_geom *g) { return (g->oh - 1) * g->sh + g->kh; }
static inline int kd_direct_padded_w(const kd_conv_geom *g) { return (g->ow - 1) * g->sw + g->kw; }
bool kd_direct_backward_data_applies(const kd_conv_geom *g);
size_t kd_direct_padded_floats(const kd_conv_geom *g, int images);
/* Copy `images` images of x into the zero-padded layout the kernels read. */
void kd_direct_pad(const kd_conv_geom *g, const float *x, int images, float *xp);
/* The geometry and weights of the input-gradient convolution. */
void kd_direct_data_geom(const kd_conv_geom *g, kd_conv_geom *b);
void kd_direct_flip_weights(const kd_conv_geom *g, const float *w, float *wt);

#endif

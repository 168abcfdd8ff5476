/* Direct convolution on NHWC tensors for layers whose output channels come
 * in multiples of 16: the output is computed in register tiles of a few
 * pixels x one or two registers of channels (lib/tensor/isa/direct.c, one
 * copy per instruction-set path), reading each input value once per tile,
 * so there is no im2col matrix to write and re-pack.  This file holds the
 * path-independent parts: which layers qualify, and the input copied once
 * into a zero-padded buffer so the inner loops carry no bounds checks.
 *
 *   forward          y[p][o]  = b[o] + sum_{t,c} xpad[p + t][c] * w[t][c][o]
 *   backward data    dx = forward(dy padded by k-1-pad, w flipped and transposed)
 *                    (stride 1 only; strided layers take the im2col path)
 *   backward weights dw[t][c][o] += sum_p xpad[p + t][c] * dy[p][o] */
#include "conv_direct.h"

#include <string.h>

bool kd_direct_applies(const kd_conv_geom *g)
{
    return g->groups == 1 && g->oc % 16 == 0;
}

bool kd_direct_backward_data_applies(const kd_conv_geom *g)
{
    return kd_direct_applies(g) && g->sh == 1 && g->sw == 1 && g->c % 16 == 0 &&
           g->pt < g->kh && g->pl < g->kw;
}

/* Padded extents: exactly the rows and columns the windows touch. */
static int padded_h(const kd_conv_geom *g) { return (g->oh - 1) * g->sh + g->kh; }
static int padded_w(const kd_conv_geom *g) { return (g->ow - 1) * g->sw + g->kw; }

size_t kd_direct_padded_floats(const kd_conv_geom *g, int images)
{
    return (size_t)images * padded_h(g) * padded_w(g) * g->c;
}

/* Copies the image rows and zeroes only what lies outside them. */
void kd_direct_pad(const kd_conv_geom *g, const float *x, int images, float *xp)
{
    int hp = padded_h(g), wp = padded_w(g), c = g->c;
    int x0 = KD_MAX(0, -g->pl), x1 = KD_MIN(g->w, wp - g->pl); /* input columns kept */
    int left = x0 + g->pl, right = x1 + g->pl;                  /* where they land */
    if (x1 <= x0)
        left = right = 0;
    for (int n = 0; n < images; n++)
        for (int py = 0; py < hp; py++) {
            float *row = xp + ((size_t)n * hp + py) * wp * c;
            int iy = py - g->pt;
            if (iy < 0 || iy >= g->h || right <= left) {
                memset(row, 0, sizeof(float) * wp * c);
                continue;
            }
            memset(row, 0, sizeof(float) * left * c);
            memcpy(row + (size_t)left * c, x + (((size_t)n * g->h + iy) * g->w + x0) * c,
                   sizeof(float) * (right - left) * c);
            memset(row + (size_t)right * c, 0, sizeof(float) * (wp - right) * c);
        }
}

/* dx geometry: dy padded by k-1-pad is convolved with stride 1 into H x W. */
void kd_direct_data_geom(const kd_conv_geom *g, kd_conv_geom *b)
{
    *b = (kd_conv_geom){g->n,  g->oh, g->ow, g->oc, g->h, g->w, g->c, g->kh, g->kw, 1, 1,
                        g->kh - 1 - g->pt, g->kw - 1 - g->pl, 1};
}

void kd_direct_flip_weights(const kd_conv_geom *g, const float *w, float *wt)
{
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            for (int ci = 0; ci < g->c; ci++)
                for (int o = 0; o < g->oc; o++)
                    wt[(((size_t)(g->kh - 1 - ky) * g->kw + (g->kw - 1 - kx)) * g->oc + o) * g->c +
                       ci] = w[(((size_t)ky * g->kw + kx) * g->c + ci) * g->oc + o];
}

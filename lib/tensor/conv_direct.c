/* Direct convolution on NHWC tensors for layers whose output channels come
 * in multiples of 16: the output is computed in register tiles of a few
 * pixels x one or two registers of channels (lib/tensor/isa/direct.c, one
 * copy per instruction-set path), reading each input value once per tile,
 * so there is no im2col matrix to write and re-pack.  This file holds the
 * path-independent parts: which layers qualify, and the input copied once
 * into a zero-padded buffer so the inner loops carry no bounds checks.
 * Windows are contiguous: dilated layers never come here (kd_direct_applies).
 *
 *   forward          y[p][o]  = b[o] + sum_{t,c} xpad[p + t][c] * w[t][c][o]
 *   backward data    dx = forward(dy padded by k-1-pad, w flipped and transposed)
 *                    (stride 1 only; strided layers take the im2col path)
 *   backward weights dw[t][c][o] += sum_p xpad[p + t][c] * dy[p][o] */
#include "conv_direct.h"

#include <string.h>

bool kd_direct_applies(const kd_conv_geom *g)
{
    return g->groups == 1 && g->oc % 16 == 0 && !kd_conv_dilated(g);
}

bool kd_direct_backward_data_applies(const kd_conv_geom *g)
{
    return kd_direct_applies(g) && g->sh == 1 && g->sw == 1 && g->c % 16 == 0 &&
           g->pt < g->kh && g->pl < g->kw;
}

size_t kd_direct_padded_floats(const kd_conv_geom *g, int images)
{
    return (size_t)images * kd_direct_padded_h(g) * kd_direct_padded_w(g) * g->c;
}

/* Copies the image rows and zeroes only what lies outside them. */
void kd_direct_pad(const kd_conv_geom *g, const float *x, int images, float *xp)
{
    int hp = kd_direct_padded_h(g), wp = kd_direct_padded_w(g), c = g->c;
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
                        g->kh - 1 - g->pt, g->kw - 1 - g->pl, 1, 1, 1};
}

/* wt[kh-1-ky][kw-1-kx][o][ci] = w[ky][kx][ci][o]: per tap, a transpose of the
 * c x oc matrix, done in 16 x 16 blocks so that reads and writes both stay
 * within a few cache lines; taps are split over the library's threads. */
struct flip_job {
    const kd_conv_geom *g;
    const float *w;
    float *wt;
};

KD_CLONES static void flip_taps(size_t begin, size_t end, void *arg)
{
    const struct flip_job *j = arg;
    const kd_conv_geom *g = j->g;
    int c = g->c, oc = g->oc, taps = g->kh * g->kw;
    for (size_t t = begin; t < end; t++) {
        const float *src = j->w + t * (size_t)c * oc;
        float *dst = j->wt + ((size_t)taps - 1 - t) * (size_t)oc * c;
        for (int c0 = 0; c0 < c; c0 += 16)
            for (int o0 = 0; o0 < oc; o0 += 16) {
                int c1 = KD_MIN(c0 + 16, c), o1 = KD_MIN(o0 + 16, oc);
                for (int o = o0; o < o1; o++)
                    for (int ci = c0; ci < c1; ci++)
                        dst[(size_t)o * c + ci] = src[(size_t)ci * oc + o];
            }
    }
}

void kd_direct_flip_weights(const kd_conv_geom *g, const float *w, float *wt)
{
    struct flip_job j = {g, w, wt};
    kd_parallel_for((size_t)g->kh * g->kw, 1, flip_taps, &j);
}

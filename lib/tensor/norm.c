/* Batch normalisation over the rows (N*H*W) of an NHWC tensor, per channel.
 * Rows are split among the threads; per-part sums are kept in double (a
 * batch of 128 28x28 images sums 100,352 values per channel) and combined
 * in part order, so a given thread count always gives the same bits. */
#include "tensor.h"

#include <math.h>
#include <string.h>

size_t kd_bn_scratch_doubles(int c) { return (size_t)kd_threads() * 2 * (size_t)c; }

static int bn_parts(size_t rows) { return (int)KD_MIN((size_t)kd_threads(), KD_MAX(rows / 64, 1)); }

/* Sums run over blocks of BN_BLOCK rows in float, BN_LANES channels at a
 * time (a register or two), and each block's sums are added into double:
 * the loops stay in registers and vectorised, the totals keep double's
 * precision. */
#define BN_BLOCK 64
#define BN_LANES 16

struct bn_job {
    size_t rows;
    int c;
    const float *x, *dy, *gamma, *beta, *mean, *invstd;
    const float *shift;  /* forward: subtracted before the sums (c floats) */
    const float *relu_y; /* backward: the fused ReLU's output, whose > 0 masks dy */
    float *y, *dx;
    double *acc; /* parts x 2c */
    bool assign; /* dx is written, not added to */
    bool relu;   /* forward: max(y, 0) in the same pass */
};

/* dy through the fused ReLU: zero where its output is not > 0 (NaN too).
 * Both loads are unconditional so that the loops vectorise; callers pass a
 * constant `masked`, one loop version each. */
static inline __attribute__((always_inline)) float masked_dy(const struct bn_job *j, bool masked,
                                                             size_t i)
{
    float d = j->dy[i];
    if (!masked)
        return d;
    float y = j->relu_y[i];
    return y > 0 ? d : 0.0f;
}

/* BN_LANES channels as one vector (split into registers by each path),
 * loaded through an unaligned alias: a 64-byte vector must not cross a
 * function call on paths without AVX-512 (an ABI change clang refuses). */
typedef float bn_vec __attribute__((vector_size(4 * BN_LANES)));
typedef float bn_vec_u __attribute__((vector_size(4 * BN_LANES), aligned(4), may_alias));
#define bn_load(p) (*(const bn_vec_u *)(p))

/* Sums of x - shift and its square over rows [r0, r1), channels
 * [ch0, ch0 + BN_LANES) (or the `lanes` < BN_LANES of the last chunk),
 * added into s and sq.  The shift (the batch's first row; with synchronised
 * statistics rank 0's, which is the global batch's) keeps E[x^2] - E[x]^2
 * free of cancellation when the mean is large. */
static inline __attribute__((always_inline)) void stat_block(const struct bn_job *j, size_t r0,
                                                              size_t r1, int ch0, int lanes,
                                                              double *s, double *sq)
{
    float bs[BN_LANES] = {0}, bq[BN_LANES] = {0};
    const float *shift = j->shift + ch0;
    if (lanes == BN_LANES) {
        bn_vec vs = {0}, vq = {0}, vshift = bn_load(shift);
        for (size_t r = r0; r < r1; r++) {
            bn_vec v = bn_load(j->x + r * j->c + ch0) - vshift;
            vs += v;
            vq += v * v;
        }
        memcpy(bs, &vs, sizeof vs);
        memcpy(bq, &vq, sizeof vq);
    } else {
        for (size_t r = r0; r < r1; r++)
            for (int k = 0; k < lanes; k++) {
                float v = j->x[r * j->c + ch0 + k] - shift[k];
                bs[k] += v;
                bq[k] += v * v;
            }
    }
    for (int k = 0; k < lanes; k++) {
        s[ch0 + k] += bs[k];
        sq[ch0 + k] += bq[k];
    }
}

KD_CLONES static void sum_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    double *s = j->acc + (size_t)part * 2 * j->c, *sq = s + j->c;
    memset(s, 0, sizeof(double) * 2 * j->c);
    for (size_t r0 = b; r0 < e; r0 += BN_BLOCK) {
        size_t r1 = KD_MIN(r0 + BN_BLOCK, e);
        int ch0 = 0;
        for (; ch0 + BN_LANES <= j->c; ch0 += BN_LANES)
            stat_block(j, r0, r1, ch0, BN_LANES, s, sq);
        if (ch0 < j->c)
            stat_block(j, r0, r1, ch0, j->c - ch0, s, sq);
    }
}

/* y = x * a + b per channel, with a and b precomputed in invstd and mean. */
KD_CLONES static void affine_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    const float *a = j->invstd, *off = j->mean;
    if (j->relu) {
        for (size_t r = b; r < e; r++)
            for (int ch = 0; ch < j->c; ch++) {
                float v = j->x[r * j->c + ch] * a[ch] + off[ch];
                j->y[r * j->c + ch] = v < 0 ? 0 : v;
            }
        return;
    }
    for (size_t r = b; r < e; r++)
        for (int ch = 0; ch < j->c; ch++)
            j->y[r * j->c + ch] = j->x[r * j->c + ch] * a[ch] + off[ch];
}

/* Sum over parts, in part order, of slot `which` (0 or 1) of each part. */
static double part_total(const struct bn_job *j, int parts, int which, int ch)
{
    double t = 0;
    for (int p = 0; p < parts; p++)
        t += j->acc[(size_t)p * 2 * j->c + (size_t)which * j->c + ch];
    return t;
}

/* A failing sum over ranks: kept (the first), the local values used. */
static void note_sync(kd_bn_sync *sync, kdens_status st)
{
    if (st != KDENS_OK && sync->failed == KDENS_OK)
        sync->failed = st;
}

/* The parts' sums of both slots added (in part order) into part 0, then
 * summed over every rank; returns the parts left: 1. */
static int sum_over_ranks(const struct bn_job *j, int parts, kd_bn_sync *sync)
{
    for (int which = 0; which < 2; which++)
        for (int ch = 0; ch < j->c; ch++)
            j->acc[(size_t)which * j->c + ch] = part_total(j, parts, which, ch);
    note_sync(sync, kd_comm_allreduce_double(sync->comm, j->acc, 2 * (size_t)j->c));
    return 1;
}

void kd_bn_forward_train(size_t rows, int c, const float *x, const float *gamma,
                         const float *beta, float eps, float momentum, float *moving_mean,
                         float *moving_var, float *batch_mean, float *batch_invstd, float *y,
                         double *scratch, float *ab, bool relu, kd_bn_sync *sync)
{
    int parts = bn_parts(rows);
    struct bn_job j = {.rows = rows, .c = c, .x = x, .shift = x, .acc = scratch};
    double total_rows = (double)rows;
    if (sync) { /* rank 0's first row, in batch_mean until the mean replaces it */
        memcpy(batch_mean, x, sizeof(float) * (size_t)c);
        note_sync(sync, kd_comm_broadcast(sync->comm, batch_mean, sizeof(float) * (size_t)c, 0));
        j.shift = batch_mean;
    }
    kd_parallel_parts(parts, sum_part, &j);
    if (sync) {
        parts = sum_over_ranks(&j, parts, sync);
        total_rows = (double)sync->global_rows;
    }
    for (int ch = 0; ch < c; ch++) {
        double shifted = part_total(&j, parts, 0, ch) / total_rows;
        double var = part_total(&j, parts, 1, ch) / total_rows - shifted * shifted;
        if (var < 0)
            var = 0;
        batch_mean[ch] = (float)(j.shift[ch] + shifted);
        batch_invstd[ch] = (float)(1.0 / sqrt(var + eps));
        moving_mean[ch] = momentum * moving_mean[ch] + (1.0f - momentum) * batch_mean[ch];
        moving_var[ch] = momentum * moving_var[ch] + (1.0f - momentum) * (float)var;
        ab[ch] = batch_invstd[ch] * gamma[ch];
        ab[c + ch] = beta[ch] - batch_mean[ch] * ab[ch];
    }
    struct bn_job aj = {.rows = rows, .c = c, .x = x, .mean = ab + c, .invstd = ab, .y = y,
                        .relu = relu};
    kd_parallel_parts(parts, affine_part, &aj);
}

void kd_bn_forward_eval(size_t rows, int c, const float *x, const float *gamma,
                        const float *beta, const float *mean, const float *var, float eps,
                        float *y, float *ab, bool relu)
{
    for (int ch = 0; ch < c; ch++) {
        ab[ch] = gamma[ch] / sqrtf(var[ch] + eps);
        ab[c + ch] = beta[ch] - mean[ch] * ab[ch];
    }
    struct bn_job j = {.rows = rows, .c = c, .x = x, .mean = ab + c, .invstd = ab, .y = y,
                       .relu = relu};
    kd_parallel_parts(bn_parts(rows), affine_part, &j);
}

/* Sums of dy and dy * xhat over rows [r0, r1), channels [ch0, ch0 + lanes). */
static inline __attribute__((always_inline)) void grad_block(const struct bn_job *j, bool masked,
                                                              size_t r0, size_t r1, int ch0,
                                                              int lanes, double *sdy, double *sdyx)
{
    float bs[BN_LANES] = {0}, bx[BN_LANES] = {0};
    const float *mean = j->mean + ch0, *invstd = j->invstd + ch0;
    for (size_t r = r0; r < r1; r++) {
        size_t at = r * j->c + ch0;
        for (int k = 0; k < lanes; k++) {
            float d = masked_dy(j, masked, at + k);
            bs[k] += d;
            bx[k] += d * ((j->x[at + k] - mean[k]) * invstd[k]);
        }
    }
    for (int k = 0; k < lanes; k++) {
        sdy[ch0 + k] += bs[k];
        sdyx[ch0 + k] += bx[k];
    }
}

KD_CLONES static void grad_sums_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    double *sdy = j->acc + (size_t)part * 2 * j->c, *sdyx = sdy + j->c;
    memset(sdy, 0, sizeof(double) * 2 * j->c);
    for (size_t r0 = b; r0 < e; r0 += BN_BLOCK) {
        size_t r1 = KD_MIN(r0 + BN_BLOCK, e);
        int ch0 = 0;
        for (; ch0 + BN_LANES <= j->c; ch0 += BN_LANES)
            if (j->relu_y)
                grad_block(j, true, r0, r1, ch0, BN_LANES, sdy, sdyx);
            else
                grad_block(j, false, r0, r1, ch0, BN_LANES, sdy, sdyx);
        if (ch0 < j->c)
            grad_block(j, j->relu_y != NULL, r0, r1, ch0, j->c - ch0, sdy, sdyx);
    }
}

/* dx += gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); the
 * per-channel means travel in y (as floats: mean dy, mean dy*xhat). */
static inline __attribute__((always_inline)) void dx_rows(const struct bn_job *j, bool masked,
                                                           bool assign, size_t b, size_t e)
{
    const float *mdy = j->y, *mdyx = j->y + j->c;
    for (size_t r = b; r < e; r++)
        for (int ch = 0; ch < j->c; ch++) {
            size_t at = r * j->c + ch;
            float xhat = (j->x[at] - j->mean[ch]) * j->invstd[ch];
            float d = j->gamma[ch] * j->invstd[ch] *
                      (masked_dy(j, masked, at) - mdy[ch] - xhat * mdyx[ch]);
            if (assign)
                j->dx[at] = d;
            else
                j->dx[at] += d;
        }
}

KD_CLONES static void dx_part(int part, int parts, void *arg)
{
    const struct bn_job *j = arg;
    size_t b, e;
    kd_split(j->rows, part, parts, &b, &e);
    if (j->relu_y)
        j->assign ? dx_rows(j, true, true, b, e) : dx_rows(j, true, false, b, e);
    else
        j->assign ? dx_rows(j, false, true, b, e) : dx_rows(j, false, false, b, e);
}

void kd_bn_backward_train(size_t rows, int c, const float *x, const float *gamma,
                          const float *batch_mean, const float *batch_invstd, const float *dy,
                          const float *relu_y, float *dx, bool assign, float *dgamma,
                          float *dbeta, double *scratch, float *ab, kd_bn_sync *sync)
{
    int parts = bn_parts(rows);
    struct bn_job j = {.rows = rows, .c = c, .x = x, .dy = dy, .gamma = gamma,
                       .mean = batch_mean, .invstd = batch_invstd, .relu_y = relu_y,
                       .y = ab, .dx = dx, .acc = scratch, .assign = assign};
    kd_parallel_parts(parts, grad_sums_part, &j);
    /* gamma's and beta's gradients take this rank's sums (the trainer sums
     * every parameter's gradient over the ranks); dx needs the global means */
    for (int ch = 0; ch < c; ch++) {
        dgamma[ch] += (float)part_total(&j, parts, 1, ch);
        dbeta[ch] += (float)part_total(&j, parts, 0, ch);
    }
    double total_rows = (double)rows;
    if (sync) {
        parts = sum_over_ranks(&j, parts, sync);
        total_rows = (double)sync->global_rows;
    }
    for (int ch = 0; ch < c; ch++) {
        ab[ch] = (float)(part_total(&j, parts, 0, ch) / total_rows);
        ab[c + ch] = (float)(part_total(&j, parts, 1, ch) / total_rows);
    }
    if (dx)
        kd_parallel_parts(parts, dx_part, &j);
}

void kd_bn_backward_eval(size_t rows, int c, const float *x, const float *gamma,
                         const float *mean, const float *var, float eps, const float *dy,
                         const float *relu_y, float *dx, float *dgamma, float *dbeta)
{
    for (int ch = 0; ch < c; ch++) {
        float invstd = 1.0f / sqrtf(var[ch] + eps);
        double sdy = 0, sdyx = 0;
        for (size_t r = 0; r < rows; r++) {
            float d = relu_y && !(relu_y[r * c + ch] > 0) ? 0.0f : dy[r * c + ch];
            sdy += d;
            sdyx += d * (x[r * c + ch] - mean[ch]) * invstd;
            if (dx)
                dx[r * c + ch] += d * gamma[ch] * invstd;
        }
        dgamma[ch] += (float)sdyx;
        dbeta[ch] += (float)sdy;
    }
}

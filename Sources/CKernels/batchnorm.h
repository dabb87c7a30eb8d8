/* Batch normalisation's shared internals: the [N, C, S] indexing, the channel blocks, the batch moments and
 * the recomputed xhat, used by batchnorm.c and by its fusion with ReLU and max-pooling (bn_relu_pool.c), so
 * that both normalise with the very same float expressions. Internal to CKernels. */
#ifndef MC_BATCHNORM_H
#define MC_BATCHNORM_H

#include "reduce.h"
#include "vec8.h"
#include <math.h>

/* The per-value expressions every pass evaluates, so that the passes (and their fused forms) agree to the
 * bit: xhat, its R-derivative, dx, and Rdx (with dxhat = g dy, Rdxhat = g Rdy + vg dy, Rr = Rinvstd). */
MC_INLINE float bn_xhat(float x, float mean, float r) { return (x - mean) * r; }
MC_INLINE float bn_rxhat(float r, float rx, float mRx, float mxRx, float xh) { return r * (rx - mRx - xh * mxRx); }
MC_INLINE float bn_dx(float r, float g, float A, float B, float xh, float d) { return r * (g * d - A - xh * B); }
MC_INLINE float bn_rdx(float r, float Rr, float g, float vg, float A, float B, float RA, float RB, float xh, float rxh,
                       float d, float rd) {
    const float dxh = g * d, Rdxh = g * rd + vg * d;
    return Rr * (dxh - A - xh * B) + r * (Rdxh - RA - rxh * B - xh * RB);
}

/* dx of one plane's s values from dy = d (NULL: zero everywhere, the batch statistics' part alone), with
 * A, B the channel's backward coefficients. */
MC_INLINE void dx_plane(int s, const float *restrict x, const float *restrict d, float mean, float r, float g, float A,
                        float B, float *restrict out) {
    if (d) for (int j = 0; j < s; j++) out[j] = bn_dx(r, g, A, B, bn_xhat(x[j], mean, r), d[j]);
    else for (int j = 0; j < s; j++) out[j] = bn_dx(r, g, A, B, bn_xhat(x[j], mean, r), 0.0f);
}

/* A channel's numbers for its Rdx values: the statistics and their R-derivatives, gamma and its direction,
 * and the R-backward coefficients. */
typedef struct { float mean, r, Rr, mRx, mxRx, g, vg, A, B, RA, RB; } bn_rchannel;

/* Rdx at value j of a plane, from dy = d and Rdy = rd there (rx: the plane's Rx, NULL for zero). */
MC_INLINE float rdx_value(const bn_rchannel *c, const float *x, const float *rx, int j, float d, float rd) {
    const float xhj = bn_xhat(x[j], c->mean, c->r), rxhj = rx ? bn_rxhat(c->r, rx[j], c->mRx, c->mxRx, xhj) : 0.0f;
    return bn_rdx(c->r, c->Rr, c->g, c->vg, c->A, c->B, c->RA, c->RB, xhj, rxhj, d, rd);
}

/* Rdx of one plane's s values (d, rd: dy and Rdy, NULL for zero everywhere). */
MC_INLINE void rdx_plane(int s, const bn_rchannel *c, const float *restrict x, const float *restrict rx,
                         const float *restrict d, const float *restrict rd, float *restrict out) {
    if (d) for (int j = 0; j < s; j++) out[j] = rdx_value(c, x, rx, j, d[j], rd[j]);
    else for (int j = 0; j < s; j++) out[j] = rdx_value(c, x, rx, j, 0.0f, 0.0f);
}

/* The numbers rdx_value needs for channel ch of block cb (A, B, RA, RB indexed from cb). */
MC_INLINE bn_rchannel rchannel(int ch, int cb, const float *mean, const float *invstd, const float *gamma, const float *Vgamma,
                               const float *Rx_mean, const float *xhat_Rx_mean, const float *A, const float *B,
                               const float *RA, const float *RB) {
    const float r = invstd[ch];
    return (bn_rchannel){mean[ch], r, -r * r * xhat_Rx_mean[ch], Rx_mean[ch], xhat_Rx_mean[ch], gamma[ch], Vgamma[ch],
                         A[ch - cb], B[ch - cb], RA[ch - cb], RB[ch - cb]};
}

/* Element (i, ch, j) of an [N, C, S] tensor. */
#define AT(p, i, j) (p)[((size_t)(i) * c + ch) * s + (j)]
#define FOR_CHANNEL(i, j) for (int i = 0; i < n; i++) for (int j = 0; j < s; j++)
/* Plane (i, ch): the S contiguous values of sample i in channel ch. */
#define PLANE(p, i) ((p) + ((size_t)(i) * c + ch) * s)

/* Channels per block, and floats of a plane rebuilt at a time on the stack (xhat, Rxhat) to stay in L1. */
enum { MC_BN_CHANNELS = 64, MC_BN_SPAN = 1024 };

/* The blocks [cb, ce) of channels c0 ..< c1. */
#define FOR_BLOCK(cb, ce) \
    for (int cb = c0, ce = c0 + MC_BN_CHANNELS < c1 ? c0 + MC_BN_CHANNELS : c1; cb < c1; \
         cb = ce, ce = ce + MC_BN_CHANNELS < c1 ? ce + MC_BN_CHANNELS : c1)
/* The spans [j0, j0 + len) of a plane. */
#define FOR_SPAN(j0, len) \
    for (int j0 = 0, len = s < MC_BN_SPAN ? s : MC_BN_SPAN; j0 < s; \
         j0 += MC_BN_SPAN, len = s - j0 < MC_BN_SPAN ? s - j0 : MC_BN_SPAN)

/* Merges the s values of plane p into a channel's mean and sum of squared deviations m2 over the `count`
 * values before them: the plane's own mean and squares about it (a sweep of a plane that stays in cache),
 * merged in double (Chan et al.). */
MC_INLINE void merge_plane_moments(const float *p, int s, double count, double *mean, double *m2) {
    const double total = count + s;
    /* A float sum's mean is only near the plane's; the deviations from it correct it. */
    const float shift = (float)(sum_plane(p, s) / s);
    double deviations;
    const double squares = shifted_sums_plane(p, shift, s, &deviations);
    const double pmean = shift + deviations / s, pm2 = squares - deviations * deviations / s;
    const double delta = pmean - *mean;
    *mean += delta * s / total;
    *m2 += pm2 + delta * delta * count * s / total;
}

MC_INLINE double biased_variance(double m2, double m) { return m2 > 0.0 ? m2 / m : 0.0; }

/* The saved statistics of a channel of mean mu and biased variance var: the mean and invstd = 1/sqrt(var + eps). */
MC_INLINE void save_statistics(double mu, double var, float eps, float *mean, float *invstd) {
    *mean = (float)mu;
    *invstd = (float)(1.0 / sqrt(var + eps));
}

/* A running mean and variance moved towards a batch's mean and (unbiased) variance of m values. */
MC_INLINE void update_running(double m, double mean, double var, float momentum, float *running_mean, float *running_var) {
    const double unbiased = m > 1 ? var * m / (m - 1) : 0.0;
    *running_mean = (float)((1.0 - momentum) * *running_mean + momentum * mean);
    *running_var = (float)((1.0 - momentum) * *running_var + momentum * unbiased);
}

/* Mean and biased variance of channels cb ..< ce (into mean[ch - cb], var[ch - cb]) in one pass over
 * memory, plane by plane. */
MC_INLINE void block_moments(int n, int c, int s, int cb, int ce, const float *x, double *mean, double *var) {
    double m2[MC_BN_CHANNELS] = {0};
    for (int ch = cb; ch < ce; ch++) mean[ch - cb] = 0.0;
    for (int i = 0; i < n; i++)
        for (int ch = cb; ch < ce; ch++) merge_plane_moments(PLANE(x, i), s, (double)i * s, &mean[ch - cb], &m2[ch - cb]);
    for (int ch = cb; ch < ce; ch++) var[ch - cb] = biased_variance(m2[ch - cb], (double)n * s);
}

/* Writes xhat = (x - mean) * invstd for len values into out: the expression of the forward pass. */
static inline void xhat_span(const float *restrict x, float fm, float r, int len, float *restrict out) {
    for (int j = 0; j < len; j++) out[j] = bn_xhat(x[j], fm, r);
}

/* Adds the sums of v and of xhat * v over each channel of the block cb ..< ce into sv[ch - cb] and
 * sxv[ch - cb]. */
MC_INLINE void xhat_moments(int n, int c, int s, int cb, int ce, const float *x, const float *mean, const float *invstd,
                         const float *v, double *sv, double *sxv) {
    float xh[MC_BN_SPAN];
    for (int i = 0; i < n; i++)
        for (int ch = cb; ch < ce; ch++)
            FOR_SPAN(j0, len) {
                const float *vi = PLANE(v, i) + j0;
                xhat_span(PLANE(x, i) + j0, mean[ch], invstd[ch], len, xh);
                sv[ch - cb] += sum_plane(vi, len);
                sxv[ch - cb] += dot_plane(vi, xh, len);
            }
}


/* The batch mean and invstd = 1/sqrt(var + eps) of channels cb ..< ce, as the forward passes save them. */
MC_INLINE void block_statistics(int n, int c, int s, int cb, int ce, float eps, const float *x, float *mean, float *invstd) {
    double mu[MC_BN_CHANNELS], var[MC_BN_CHANNELS];
    block_moments(n, c, s, cb, ce, x, mu, var);
    for (int ch = cb; ch < ce; ch++) save_statistics(mu[ch - cb], var[ch - cb], eps, &mean[ch], &invstd[ch]);
}

/* mean(Rx) and mean(xhat * Rx) of channels cb ..< ce (zero for a NULL Rx), as the R-forward passes save them. */
MC_INLINE void block_rstatistics(int n, int c, int s, int cb, int ce, const float *x, const float *mean, const float *invstd,
                                 const float *Rx, float *Rx_mean, float *xhat_Rx_mean) {
    const double m = (double)n * s;
    double a[MC_BN_CHANNELS] = {0}, b[MC_BN_CHANNELS] = {0};
    if (Rx) xhat_moments(n, c, s, cb, ce, x, mean, invstd, Rx, a, b);
    for (int ch = cb; ch < ce; ch++) {
        Rx_mean[ch] = (float)(a[ch - cb] / m);
        xhat_Rx_mean[ch] = (float)(b[ch - cb] / m);
    }
}

/* From the block's sums of dy and dy * xhat over the m values of a channel: dgamma, dbeta, and the means
 * A = mean(dxhat), B = mean(dxhat * xhat) of dxhat = gamma dy that dx needs. */
MC_INLINE void backward_coefficients(int cb, int ce, double m, const float *gamma, const double *sdy, const double *sdyx,
                                     float *dgamma, float *dbeta, float *A, float *B) {
    for (int ch = cb; ch < ce; ch++) {
        dgamma[ch] = (float)sdyx[ch - cb];
        dbeta[ch] = (float)sdy[ch - cb];
        A[ch - cb] = (float)(gamma[ch] * sdy[ch - cb] / m);
        B[ch - cb] = (float)(gamma[ch] * sdyx[ch - cb] / m);
    }
}

/* The R-backward pass's sums over a channel block: of dy, dy * xhat, Rdy, Rdy * xhat and dy * Rxhat. */
typedef struct {
    double dy[MC_BN_CHANNELS], dyx[MC_BN_CHANNELS], Rdy[MC_BN_CHANNELS], Rdyx[MC_BN_CHANNELS], dyRx[MC_BN_CHANNELS];
} bn_rsums;

/* From those sums: Rdgamma, Rdbeta, and the means A, B as in backward_coefficients and RA = mean(Rdxhat),
 * RB = mean(Rdxhat * xhat + dxhat * Rxhat) of Rdxhat = gamma Rdy + Vgamma dy. */
MC_INLINE void rbackward_coefficients(int cb, int ce, double m, const float *gamma, const float *Vgamma, const bn_rsums *t,
                                      float *Rdgamma, float *Rdbeta, float *A, float *B, float *RA, float *RB) {
    for (int ch = cb; ch < ce; ch++) {
        const int k = ch - cb;
        const float g = gamma[ch], vg = Vgamma[ch];
        Rdgamma[ch] = (float)(t->Rdyx[k] + t->dyRx[k]);
        Rdbeta[ch] = (float)t->Rdy[k];
        A[k] = (float)(g * t->dy[k] / m);
        B[k] = (float)(g * t->dyx[k] / m);
        RA[k] = (float)((g * t->Rdy[k] + vg * t->dy[k]) / m);
        RB[k] = (float)((g * t->Rdyx[k] + vg * t->dyx[k] + g * t->dyRx[k]) / m);
    }
}

#endif

/* Batch normalisation over [N, C, S]: batch-statistics (training / transductive) mode with every
 * derivative taken through the batch mean and variance, and running-statistics (inference) mode.
 *
 * The batch-statistics passes keep per-channel numbers only: xhat and its R-derivative are recomputed
 * from x and Rx (which the caller keeps anyway) by the same float expressions in every pass, so each pass
 * sees the very values the forward pass normalised with, and no [N, C, S] buffer is written to be read
 * back once. They visit the channels in blocks, sample by sample within a block: a sample's planes of the
 * block lie side by side, so a pass streams through memory instead of hopping a sample's stride per plane.
 * They are compiled for AVX + FMA as well as the baseline (MC_CLONES). */
#include "ckernels.h"
#include "reduce.h"
#include "vec8.h"
#include <math.h>

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

/* Mean and biased variance of channels cb ..< ce (into mean[ch - cb], var[ch - cb]) in one pass over
 * memory: each plane's mean and squares about it (sweeps of a plane that stays in cache), merged plane by
 * plane in double (Chan et al.). */
MC_INLINE void block_moments(int n, int c, int s, int cb, int ce, const float *x, double *mean, double *var) {
    double m2[MC_BN_CHANNELS] = {0};
    for (int ch = cb; ch < ce; ch++) mean[ch - cb] = 0.0;
    for (int i = 0; i < n; i++) {
        const double count = (double)i * s, total = count + s;
        for (int ch = cb; ch < ce; ch++) {
            const float *p = PLANE(x, i);
            /* A float sum's mean is only near the plane's; the deviations from it correct it. */
            const float shift = (float)(sum_plane(p, s) / s);
            double deviations;
            const double squares = shifted_sums_plane(p, shift, s, &deviations);
            const double pmean = shift + deviations / s, pm2 = squares - deviations * deviations / s;
            const double delta = pmean - mean[ch - cb];
            mean[ch - cb] += delta * s / total;
            m2[ch - cb] += pm2 + delta * delta * count * s / total;
        }
    }
    for (int ch = cb; ch < ce; ch++) var[ch - cb] = m2[ch - cb] > 0.0 ? m2[ch - cb] / ((double)n * s) : 0.0;
}

/* Writes xhat = (x - mean) * invstd for len values into out: the expression of the forward pass. */
static inline void xhat_span(const float *restrict x, float fm, float r, int len, float *restrict out) {
    for (int j = 0; j < len; j++) out[j] = (x[j] - fm) * r;
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

MC_CLONES void mc_batchnorm_forward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                          const float *beta, float *y, float *mean, float *invstd) {
    FOR_BLOCK(cb, ce) {
        double mu[MC_BN_CHANNELS], var[MC_BN_CHANNELS];
        block_moments(n, c, s, cb, ce, x, mu, var);
        for (int ch = cb; ch < ce; ch++) {
            mean[ch] = (float)mu[ch - cb];
            invstd[ch] = (float)(1.0 / sqrt(var[ch - cb] + eps));
        }
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float fm = mean[ch], r = invstd[ch], g = gamma[ch], b = beta[ch];
                const float *restrict xi = PLANE(x, i);
                float *restrict yi = PLANE(y, i);
                for (int j = 0; j < s; j++) yi[j] = g * ((xi[j] - fm) * r) + b;
            }
    }
}

MC_CLONES void mc_batchnorm_update_running(int n, int c, int s, int c0, int c1, float momentum, const float *x,
                                 float *running_mean, float *running_var) {
    const double m = (double)n * s;
    FOR_BLOCK(cb, ce) {
        double mean[MC_BN_CHANNELS], var[MC_BN_CHANNELS];
        block_moments(n, c, s, cb, ce, x, mean, var);
        for (int ch = cb; ch < ce; ch++) {
            const double unbiased = m > 1 ? var[ch - cb] * m / (m - 1) : 0.0;
            running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean[ch - cb]);
            running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
        }
    }
}

MC_CLONES void mc_batchnorm_backward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *dy, float *dx, float *dgamma, float *dbeta) {
    const double m = (double)n * s;
    FOR_BLOCK(cb, ce) {
        double sdy[MC_BN_CHANNELS] = {0}, sdyx[MC_BN_CHANNELS] = {0};
        xhat_moments(n, c, s, cb, ce, x, mean, invstd, dy, sdy, sdyx);
        float A[MC_BN_CHANNELS], B[MC_BN_CHANNELS]; /* mean(dxhat), mean(dxhat * xhat), dxhat = gamma dy */
        for (int ch = cb; ch < ce; ch++) {
            dgamma[ch] = (float)sdyx[ch - cb];
            dbeta[ch] = (float)sdy[ch - cb];
            A[ch - cb] = (float)(gamma[ch] * sdy[ch - cb] / m);
            B[ch - cb] = (float)(gamma[ch] * sdyx[ch - cb] / m);
        }
        if (!dx) continue;
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float g = gamma[ch], r = invstd[ch], fm = mean[ch], a = A[ch - cb], b = B[ch - cb];
                const float *restrict d = PLANE(dy, i), *restrict xi = PLANE(x, i);
                float *restrict out = PLANE(dx, i);
                for (int j = 0; j < s; j++) {
                    const float xhj = (xi[j] - fm) * r;
                    out[j] = r * (g * d[j] - a - xhj * b);
                }
            }
    }
}

MC_CLONES void mc_batchnorm_rforward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *Rx, const float *Vgamma, const float *Vbeta,
                           float *Ry, float *Rx_mean, float *xhat_Rx_mean) {
    const double m = (double)n * s;
    FOR_BLOCK(cb, ce) {
        double a[MC_BN_CHANNELS] = {0}, b[MC_BN_CHANNELS] = {0};
        if (Rx) xhat_moments(n, c, s, cb, ce, x, mean, invstd, Rx, a, b);
        for (int ch = cb; ch < ce; ch++) {
            Rx_mean[ch] = (float)(a[ch - cb] / m);
            xhat_Rx_mean[ch] = (float)(b[ch - cb] / m);
        }
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float r = invstd[ch], fm = mean[ch], g = gamma[ch], vg = Vgamma[ch], vb = Vbeta[ch];
                const float mRx = Rx_mean[ch], mxRx = xhat_Rx_mean[ch];
                const float *restrict xi = PLANE(x, i);
                float *restrict ry = PLANE(Ry, i);
                if (Rx) {
                    const float *restrict rx = PLANE(Rx, i);
                    for (int j = 0; j < s; j++) {
                        const float xhj = (xi[j] - fm) * r, rxh = r * (rx[j] - mRx - xhj * mxRx);
                        ry[j] = g * rxh + vg * xhj + vb;
                    }
                } else {
                    for (int j = 0; j < s; j++) ry[j] = vg * ((xi[j] - fm) * r) + vb;
                }
            }
    }
}

MC_CLONES void mc_batchnorm_rbackward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                            const float *gamma, const float *Vgamma, const float *Rx, const float *Rx_mean,
                            const float *xhat_Rx_mean, const float *dy, const float *Rdy,
                            float *Rdx, float *Rdgamma, float *Rdbeta) {
    const double m = (double)n * s;
    float xh[MC_BN_SPAN], rxh[MC_BN_SPAN];
    FOR_BLOCK(cb, ce) {
        double sdy[MC_BN_CHANNELS] = {0}, sdyx[MC_BN_CHANNELS] = {0}, sRdy[MC_BN_CHANNELS] = {0};
        double sRdyx[MC_BN_CHANNELS] = {0}, sdyRx[MC_BN_CHANNELS] = {0};
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float r = invstd[ch], mRx = Rx_mean[ch], mxRx = xhat_Rx_mean[ch];
                const int k = ch - cb;
                FOR_SPAN(j0, len) {
                    const float *d = PLANE(dy, i) + j0, *rd = PLANE(Rdy, i) + j0;
                    xhat_span(PLANE(x, i) + j0, mean[ch], r, len, xh);
                    sdy[k] += sum_plane(d, len); sdyx[k] += dot_plane(d, xh, len);
                    sRdy[k] += sum_plane(rd, len); sRdyx[k] += dot_plane(rd, xh, len);
                    if (Rx) {
                        const float *rx = PLANE(Rx, i) + j0;
                        for (int j = 0; j < len; j++) rxh[j] = r * (rx[j] - mRx - xh[j] * mxRx);
                        sdyRx[k] += dot_plane(d, rxh, len);
                    }
                }
            }
        /* Means of dxhat = g dy and Rdxhat = g Rdy + vg dy, and of their products with xhat / Rxhat. */
        float A[MC_BN_CHANNELS], B[MC_BN_CHANNELS], RA[MC_BN_CHANNELS], RB[MC_BN_CHANNELS];
        for (int ch = cb; ch < ce; ch++) {
            const int k = ch - cb;
            const float g = gamma[ch], vg = Vgamma[ch];
            Rdgamma[ch] = (float)(sRdyx[k] + sdyRx[k]);
            Rdbeta[ch] = (float)sRdy[k];
            A[k] = (float)(g * sdy[k] / m);
            B[k] = (float)(g * sdyx[k] / m);
            RA[k] = (float)((g * sRdy[k] + vg * sdy[k]) / m);
            RB[k] = (float)((g * sRdyx[k] + vg * sdyx[k] + g * sdyRx[k]) / m);
        }
        if (!Rdx) continue;
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const int k = ch - cb;
                const float g = gamma[ch], vg = Vgamma[ch], r = invstd[ch], fm = mean[ch];
                const float mRx = Rx_mean[ch], mxRx = xhat_Rx_mean[ch], Rr = -r * r * mxRx;
                const float *restrict d = PLANE(dy, i), *restrict rd = PLANE(Rdy, i), *restrict xi = PLANE(x, i);
                const float *restrict rx = Rx ? PLANE(Rx, i) : NULL;
                float *restrict out = PLANE(Rdx, i);
                for (int j = 0; j < s; j++) {
                    const float xhj = (xi[j] - fm) * r, rxhj = rx ? r * (rx[j] - mRx - xhj * mxRx) : 0.0f;
                    const float dxh = g * d[j], Rdxh = g * rd[j] + vg * d[j];
                    out[j] = Rr * (dxh - A[k] - xhj * B[k]) + r * (Rdxh - RA[k] - rxhj * B[k] - xhj * RB[k]);
                }
            }
    }
}

void mc_batchnorm_inference_forward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                                    const float *beta, const float *mean, const float *var, float *y) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        FOR_CHANNEL(i, j) AT(y, i, j) = gamma[ch] * (AT(x, i, j) - mean[ch]) * r + beta[ch];
    }
}

void mc_batchnorm_inference_backward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                                     const float *mean, const float *var, const float *dy,
                                     float *dx, float *dgamma, float *dbeta) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        double sg = 0.0, sb = 0.0;
        FOR_CHANNEL(i, j) {
            const float d = AT(dy, i, j);
            sg += (double)d * (AT(x, i, j) - mean[ch]) * r;
            sb += d;
            if (dx) AT(dx, i, j) = gamma[ch] * r * d;
        }
        dgamma[ch] = (float)sg;
        dbeta[ch] = (float)sb;
    }
}

void mc_batchnorm_inference_rforward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *Rx,
                                     const float *gamma, const float *Vgamma, const float *Vbeta,
                                     const float *mean, const float *var, float *Ry) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        FOR_CHANNEL(i, j)
            AT(Ry, i, j) = (Rx ? gamma[ch] * r * AT(Rx, i, j) : 0.0f)
                         + Vgamma[ch] * (AT(x, i, j) - mean[ch]) * r + Vbeta[ch];
    }
}

void mc_batchnorm_inference_rbackward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *Rx,
                                      const float *gamma, const float *Vgamma, const float *mean,
                                      const float *var, const float *dy, const float *Rdy,
                                      float *Rdx, float *Rdgamma, float *Rdbeta) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        double sg = 0.0, sb = 0.0;
        FOR_CHANNEL(i, j) {
            const float d = AT(dy, i, j), rd = AT(Rdy, i, j);
            sg += ((double)rd * (AT(x, i, j) - mean[ch]) + (Rx ? (double)d * AT(Rx, i, j) : 0.0)) * r;
            sb += rd;
            if (Rdx) AT(Rdx, i, j) = r * (gamma[ch] * rd + Vgamma[ch] * d);
        }
        Rdgamma[ch] = (float)sg;
        Rdbeta[ch] = (float)sb;
    }
}

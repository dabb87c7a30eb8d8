/* Batch normalisation over [N, C, S]: batch-statistics (training / transductive) mode with every
 * derivative taken through the batch mean and variance, and running-statistics (inference) mode.
 *
 * The batch-statistics passes keep per-channel numbers only: xhat and its R-derivative are recomputed
 * from x and Rx (which the caller keeps anyway) by the same float expressions in every pass, so each pass
 * sees the very values the forward pass normalised with, and no [N, C, S] buffer is written to be read
 * back once. They visit the channels in blocks, sample by sample within a block: a sample's planes of the
 * block lie side by side, so a pass streams through memory instead of hopping a sample's stride per plane.
 * They are compiled once per vector level (MC_CLONES, vec8.h). */
#include "ckernels.h"
#include "batchnorm.h"
#include <math.h>

MC_CLONES void mc_batchnorm_forward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                          const float *beta, float *y, float *mean, float *invstd) {
    FOR_BLOCK(cb, ce) {
        block_statistics(n, c, s, cb, ce, eps, x, mean, invstd);
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float fm = mean[ch], r = invstd[ch], g = gamma[ch], b = beta[ch];
                const float *restrict xi = PLANE(x, i);
                float *restrict yi = PLANE(y, i);
                for (int j = 0; j < s; j++) yi[j] = g * bn_xhat(xi[j], fm, r) + b;
            }
    }
}

MC_CLONES void mc_batchnorm_update_running(int n, int c, int s, int c0, int c1, float momentum, const float *x,
                                 float *running_mean, float *running_var) {
    const double m = (double)n * s;
    FOR_BLOCK(cb, ce) {
        double mean[MC_BN_CHANNELS], var[MC_BN_CHANNELS];
        block_moments(n, c, s, cb, ce, x, mean, var);
        for (int ch = cb; ch < ce; ch++) update_running(m, mean[ch - cb], var[ch - cb], momentum, &running_mean[ch], &running_var[ch]);
    }
}

MC_CLONES void mc_batchnorm_backward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *dy, float *dx, float *dgamma, float *dbeta) {
    const double m = (double)n * s;
    FOR_BLOCK(cb, ce) {
        double sdy[MC_BN_CHANNELS] = {0}, sdyx[MC_BN_CHANNELS] = {0};
        xhat_moments(n, c, s, cb, ce, x, mean, invstd, dy, sdy, sdyx);
        float A[MC_BN_CHANNELS], B[MC_BN_CHANNELS];
        backward_coefficients(cb, ce, m, gamma, sdy, sdyx, dgamma, dbeta, A, B);
        if (!dx) continue;
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++)
                dx_plane(s, PLANE(x, i), PLANE(dy, i), mean[ch], invstd[ch], gamma[ch], A[ch - cb], B[ch - cb], PLANE(dx, i));
    }
}

MC_CLONES void mc_batchnorm_rforward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *Rx, const float *Vgamma, const float *Vbeta,
                           float *Ry, float *Rx_mean, float *xhat_Rx_mean) {
    FOR_BLOCK(cb, ce) {
        block_rstatistics(n, c, s, cb, ce, x, mean, invstd, Rx, Rx_mean, xhat_Rx_mean);
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float r = invstd[ch], fm = mean[ch], g = gamma[ch], vg = Vgamma[ch], vb = Vbeta[ch];
                const float mRx = Rx_mean[ch], mxRx = xhat_Rx_mean[ch];
                const float *restrict xi = PLANE(x, i);
                float *restrict ry = PLANE(Ry, i);
                if (Rx) {
                    const float *restrict rx = PLANE(Rx, i);
                    for (int j = 0; j < s; j++) {
                        const float xhj = bn_xhat(xi[j], fm, r);
                        ry[j] = g * bn_rxhat(r, rx[j], mRx, mxRx, xhj) + vg * xhj + vb;
                    }
                } else {
                    for (int j = 0; j < s; j++) ry[j] = vg * bn_xhat(xi[j], fm, r) + vb;
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
        bn_rsums t = {{0}};
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float r = invstd[ch], mRx = Rx_mean[ch], mxRx = xhat_Rx_mean[ch];
                const int k = ch - cb;
                FOR_SPAN(j0, len) {
                    const float *d = PLANE(dy, i) + j0, *rd = PLANE(Rdy, i) + j0;
                    xhat_span(PLANE(x, i) + j0, mean[ch], r, len, xh);
                    t.dy[k] += sum_plane(d, len); t.dyx[k] += dot_plane(d, xh, len);
                    t.Rdy[k] += sum_plane(rd, len); t.Rdyx[k] += dot_plane(rd, xh, len);
                    if (Rx) {
                        const float *rx = PLANE(Rx, i) + j0;
                        for (int j = 0; j < len; j++) rxh[j] = bn_rxhat(r, rx[j], mRx, mxRx, xh[j]);
                        t.dyRx[k] += dot_plane(d, rxh, len);
                    }
                }
            }
        float A[MC_BN_CHANNELS], B[MC_BN_CHANNELS], RA[MC_BN_CHANNELS], RB[MC_BN_CHANNELS];
        rbackward_coefficients(cb, ce, m, gamma, Vgamma, &t, Rdgamma, Rdbeta, A, B, RA, RB);
        if (!Rdx) continue;
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const bn_rchannel k = rchannel(ch, cb, mean, invstd, gamma, Vgamma, Rx_mean, xhat_Rx_mean, A, B, RA, RB);
                rdx_plane(s, &k, PLANE(x, i), Rx ? PLANE(Rx, i) : NULL, PLANE(dy, i), PLANE(Rdy, i), PLANE(Rdx, i));
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

/* Batch normalisation (batch statistics), ReLU and 2x2 max-pooling as one step: Conv-4's block after each
 * convolution, y = maxpool2(relu(batchnorm(x))) = relu(maxpool2(batchnorm(x))), every derivative through the
 * batch statistics.
 *
 * Fused, no pass writes the [N, C, H, W] outputs of batch-norm and ReLU or their gradients. What flows back
 * through the pool reaches one value per window (none where the window's maximum is not positive), so the
 * backward passes sum over the pooled values and write dx (Rdx) in one dense pass. Every value is the
 * unfused passes' own expression (batchnorm.h): the forward and R-forward passes agree with batchnorm.c,
 * activation.c and pool.c to the bit, and the backward passes differ only in the order their sums add up. */
#include "bn_relu_pool.h"

/* Adds the sums of d and of d * xhat over a pooled plane's winners (ai[o] >= 0) to *sd and *sdx: four
 * interleaved chains of each, kept in registers, so that the adds do not wait on one another. */
MC_INLINE void winner_sums(int os, const float *restrict xi, float fm, float r, const int32_t *restrict ai,
                           const float *restrict d, double *sd, double *sdx) {
    double a[4] = {0}, b[4] = {0};
    int o = 0;
    for (; o + 4 <= os; o += 4)
        for (int q = 0; q < 4; q++) {
            const int j = ai[o + q];
            const float w = j >= 0 ? d[o + q] : 0.0f;
            a[q] += w;
            b[q] += (double)w * bn_xhat(xi[j >= 0 ? j : 0], fm, r);
        }
    for (; o < os; o++) {
        const int j = ai[o];
        if (j >= 0) { a[0] += d[o]; b[0] += (double)d[o] * bn_xhat(xi[j], fm, r); }
    }
    *sd += (a[0] + a[1]) + (a[2] + a[3]);
    *sdx += (b[0] + b[1]) + (b[2] + b[3]);
}

/* dx of one plane of s values (os pooled) from the pooled dy = d routed through the winners ai, with A, B the
 * channel's backward coefficients. dy is 0 where nothing flows back: there dx is the batch statistics' part
 * alone. */
MC_INLINE void pooled_dx_plane(int s, int os, const float *restrict xi, const int32_t *restrict ai, const float *restrict d,
                               float fm, float r, float g, float A, float B, float *restrict out) {
    dx_plane(s, xi, NULL, fm, r, g, A, B, out);
    for (int o = 0; o < os; o++)
        if (ai[o] >= 0) out[ai[o]] = bn_dx(r, g, A, B, bn_xhat(xi[ai[o]], fm, r), d[o]);
}

MC_CLONES void mc_bn_relu_pool_forward(int n, int c, int h, int w, int c0, int c1, float eps, const float *x,
                                       const float *gamma, const float *beta, float *y, int32_t *argmax,
                                       float *mean, float *invstd) {
    const int s = h * w, os = (h / 2) * (w / 2);
    FOR_BLOCK(cb, ce) {
        block_statistics(n, c, s, cb, ce, eps, x, mean, invstd);
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++)
                relu_pool_plane(h, w, PLANE(x, i), mean[ch], invstd[ch], gamma[ch], beta[ch], POOLED(y, i), POOLED(argmax, i));
    }
}

MC_CLONES void mc_bn_relu_pool_backward(int n, int c, int h, int w, int c0, int c1, const float *x, const float *mean,
                                        const float *invstd, const float *gamma, const int32_t *argmax, const float *dy,
                                        float *dx, float *dgamma, float *dbeta) {
    const int s = h * w, os = (h / 2) * (w / 2);
    const double m = (double)n * s;
    FOR_BLOCK(cb, ce) {
        double sdy[MC_BN_CHANNELS] = {0}, sdyx[MC_BN_CHANNELS] = {0};
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++)
                winner_sums(os, PLANE(x, i), mean[ch], invstd[ch], POOLED(argmax, i), POOLED(dy, i), &sdy[ch - cb], &sdyx[ch - cb]);
        float A[MC_BN_CHANNELS], B[MC_BN_CHANNELS];
        backward_coefficients(cb, ce, m, gamma, sdy, sdyx, dgamma, dbeta, A, B);
        if (!dx) continue;
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++)
                pooled_dx_plane(s, os, PLANE(x, i), POOLED(argmax, i), POOLED(dy, i), mean[ch], invstd[ch], gamma[ch],
                                A[ch - cb], B[ch - cb], PLANE(dx, i));
    }
}

MC_CLONES void mc_bn_relu_pool_rforward(int n, int c, int h, int w, int c0, int c1, const float *x, const float *mean,
                                        const float *invstd, const float *gamma, const int32_t *argmax, const float *Rx,
                                        const float *Vgamma, const float *Vbeta, float *Ry, float *Rx_mean,
                                        float *xhat_Rx_mean) {
    const int s = h * w, os = (h / 2) * (w / 2);
    FOR_BLOCK(cb, ce) {
        block_rstatistics(n, c, s, cb, ce, x, mean, invstd, Rx, Rx_mean, xhat_Rx_mean);
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const float r = invstd[ch], fm = mean[ch], g = gamma[ch], vg = Vgamma[ch], vb = Vbeta[ch];
                const float mRx = Rx_mean[ch], mxRx = xhat_Rx_mean[ch];
                const float *restrict xi = PLANE(x, i), *restrict rx = Rx ? PLANE(Rx, i) : NULL;
                const int32_t *restrict ai = POOLED(argmax, i);
                float *restrict ry = POOLED(Ry, i);
                for (int o = 0; o < os; o++) {
                    const int j = ai[o];
                    if (j < 0) { ry[o] = 0.0f; continue; }
                    const float xhj = bn_xhat(xi[j], fm, r);
                    ry[o] = rx ? g * bn_rxhat(r, rx[j], mRx, mxRx, xhj) + vg * xhj + vb : vg * xhj + vb;
                }
            }
    }
}

MC_CLONES void mc_bn_relu_pool_rbackward(int n, int c, int h, int w, int c0, int c1, const float *x, const float *mean,
                                         const float *invstd, const float *gamma, const float *Vgamma,
                                         const int32_t *argmax, const float *Rx, const float *Rx_mean,
                                         const float *xhat_Rx_mean, const float *dy, const float *Rdy,
                                         float *Rdx, float *Rdgamma, float *Rdbeta) {
    const int s = h * w, os = (h / 2) * (w / 2);
    const double m = (double)n * s;
    FOR_BLOCK(cb, ce) {
        bn_rsums t = {{0}};
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const int k = ch - cb;
                const float r = invstd[ch], fm = mean[ch], mRx = Rx_mean[ch], mxRx = xhat_Rx_mean[ch];
                const float *xi = PLANE(x, i), *rx = Rx ? PLANE(Rx, i) : NULL, *d = POOLED(dy, i), *rd = POOLED(Rdy, i);
                const int32_t *ai = POOLED(argmax, i);
                /* The plane's sums in registers (five independent chains), then into the block's. */
                double sd = 0, sdx = 0, srd = 0, srdx = 0, sdrx = 0;
                for (int o = 0; o < os; o++) {
                    const int j = ai[o];
                    if (j < 0) continue;
                    const float xhj = bn_xhat(xi[j], fm, r);
                    sd += d[o]; sdx += (double)d[o] * xhj;
                    srd += rd[o]; srdx += (double)rd[o] * xhj;
                    if (rx) sdrx += (double)d[o] * bn_rxhat(r, rx[j], mRx, mxRx, xhj);
                }
                t.dy[k] += sd; t.dyx[k] += sdx; t.Rdy[k] += srd; t.Rdyx[k] += srdx; t.dyRx[k] += sdrx;
            }
        float A[MC_BN_CHANNELS], B[MC_BN_CHANNELS], RA[MC_BN_CHANNELS], RB[MC_BN_CHANNELS];
        rbackward_coefficients(cb, ce, m, gamma, Vgamma, &t, Rdgamma, Rdbeta, A, B, RA, RB);
        if (!Rdx) continue;
        for (int i = 0; i < n; i++)
            for (int ch = cb; ch < ce; ch++) {
                const bn_rchannel k = rchannel(ch, cb, mean, invstd, gamma, Vgamma, Rx_mean, xhat_Rx_mean, A, B, RA, RB);
                const float *xi = PLANE(x, i), *rx = Rx ? PLANE(Rx, i) : NULL, *d = POOLED(dy, i), *rd = POOLED(Rdy, i);
                const int32_t *ai = POOLED(argmax, i);
                float *out = PLANE(Rdx, i);
                /* Zero dy and Rdy everywhere, then the pooled winners' values over them. */
                rdx_plane(s, &k, xi, rx, NULL, NULL, out);
                for (int o = 0; o < os; o++)
                    if (ai[o] >= 0) out[ai[o]] = rdx_value(&k, xi, rx, ai[o], d[o], rd[o]);
            }
    }
}

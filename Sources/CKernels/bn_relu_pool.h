/* The fused batch-norm, ReLU and 2x2 max-pool step's work on one plane (bn_relu_pool.c), shared with the fused
 * input layer (conv_bn_relu_pool.c), which runs it on the convolution's planes as it recomputes them. The same
 * expressions in both, so both give the values of the unfused passes. Internal to CKernels. */
#ifndef MC_BN_RELU_POOL_H
#define MC_BN_RELU_POOL_H

#include "ckernels.h"
#include "batchnorm.h"

/* Pooled plane (i, ch) of an [N, C, H/2, W/2] tensor of os values per plane. */
#define POOLED(p, i) ((p) + ((size_t)(i) * c + ch) * os)

MC_INLINE float relu(float v) { return v > 0.0f ? v : 0.0f; }

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

/* The pooled plane yi and its winners ai (flat indices into the plane, -1 where nothing passes ReLU) of the
 * h x w plane xi, normalised with mean fm and invstd r, scaled by g and shifted by b. */
MC_INLINE void relu_pool_plane(int h, int w, const float *restrict xi, float fm, float r, float g, float b,
                               float *restrict yi, int32_t *restrict ai) {
    const int oh = h / 2, ow = w / 2;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            const int top = 2 * oy * w + 2 * ox, at[4] = {top, top + 1, top + w, top + w + 1};
            /* The pool's rule on ReLU's values: the first maximum in row order, which is the first maximum of
             * batch-norm's wherever it is positive (the only winners that pass anything). */
            float v = relu(g * bn_xhat(xi[top], fm, r) + b);
            int best = top;
            for (int q = 1; q < 4; q++) {
                const float t = relu(g * bn_xhat(xi[at[q]], fm, r) + b);
                if (t > v) { v = t; best = at[q]; }
            }
            yi[oy * ow + ox] = v;
            ai[oy * ow + ox] = v > 0.0f ? best : -1;
        }
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

#endif

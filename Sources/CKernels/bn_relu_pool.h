/* The fused batch-norm, ReLU and 2x2 max-pool step's forward work on one plane (bn_relu_pool.c), shared with the
 * fused input layer (conv_bn_relu_pool.c), which runs it on the convolution's planes as it recomputes them. The
 * same expressions in both, so both give the values of the unfused passes. Internal to CKernels. */
#ifndef MC_BN_RELU_POOL_H
#define MC_BN_RELU_POOL_H

#include "ckernels.h"
#include "batchnorm.h"

/* Pooled plane (i, ch) of an [N, C, H/2, W/2] tensor of os values per plane. */
#define POOLED(p, i) ((p) + ((size_t)(i) * c + ch) * os)

MC_INLINE float relu(float v) { return v > 0.0f ? v : 0.0f; }

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

#endif

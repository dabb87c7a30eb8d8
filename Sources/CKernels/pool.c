/* k x k max pooling with stride k; the winner's index is kept so backward and R-forms route through it. */
#include "ckernels.h"
#include <string.h>

/* The 2x2 window (the common case), without the generic window loops. Ties go to the first in row order. */
static void maxpool2_plane(int w, int oh, int ow, const float *restrict in, float *restrict out, int32_t *restrict idx) {
    for (int oy = 0; oy < oh; oy++) {
        const float *r0 = in + (size_t)(2 * oy) * w, *r1 = r0 + w;
        for (int ox = 0; ox < ow; ox++) {
            const int x0 = 2 * ox, top = 2 * oy * w;
            float v = r0[x0]; int best = top + x0;
            if (r0[x0 + 1] > v) { v = r0[x0 + 1]; best = top + x0 + 1; }
            if (r1[x0] > v) { v = r1[x0]; best = top + w + x0; }
            if (r1[x0 + 1] > v) { v = r1[x0 + 1]; best = top + w + x0 + 1; }
            out[oy * ow + ox] = v;
            idx[oy * ow + ox] = best;
        }
    }
}

void mc_maxpool_forward(int n, int c, int h, int w, int k, const float *x, float *y, int32_t *argmax) {
    const int oh = h / k, ow = w / k;
    for (size_t p = 0; p < (size_t)n * c; p++) {
        const float *in = x + p * h * w;
        float *out = y + p * oh * ow;
        int32_t *idx = argmax + p * oh * ow;
        if (k == 2) { maxpool2_plane(w, oh, ow, in, out, idx); continue; }
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int best = (oy * k) * w + ox * k;
                float v = in[best];
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        int at = (oy * k + i) * w + ox * k + j;
                        if (in[at] > v) { v = in[at]; best = at; }
                    }
                out[oy * ow + ox] = v;
                idx[oy * ow + ox] = best;
            }
    }
}

void mc_maxpool_backward(int n, int c, int h, int w, int k, const int32_t *argmax, const float *dy, float *dx) {
    const size_t in_plane = (size_t)h * w, out_plane = (size_t)(h / k) * (w / k);
    /* Plane by plane, so that the scatter finds the plane just zeroed still in cache. */
    for (size_t p = 0; p < (size_t)n * c; p++) {
        float *plane = dx + p * in_plane;
        memset(plane, 0, sizeof(float) * in_plane);
        for (size_t j = 0; j < out_plane; j++) plane[argmax[p * out_plane + j]] += dy[p * out_plane + j];
    }
}

void mc_maxpool_rforward(int n, int c, int h, int w, int k, const int32_t *argmax, const float *Rx, float *Ry) {
    const size_t in_plane = (size_t)h * w, out_plane = (size_t)(h / k) * (w / k);
    for (size_t p = 0; p < (size_t)n * c; p++)
        for (size_t j = 0; j < out_plane; j++)
            Ry[p * out_plane + j] = Rx[p * in_plane + argmax[p * out_plane + j]];
}

void mc_global_pool_forward(int planes, int size, float scale, const float *x, float *y) {
    for (int p = 0; p < planes; p++) {
        double s = 0;
        for (int i = 0; i < size; i++) s += x[(size_t)p * size + i];
        y[p] = (float)(s * scale);
    }
}

void mc_global_pool_backward(int planes, int size, float scale, const float *dy, float *dx) {
    for (int p = 0; p < planes; p++) {
        const float d = dy[p] * scale;
        for (int i = 0; i < size; i++) dx[(size_t)p * size + i] = d;
    }
}

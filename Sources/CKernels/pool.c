/* k x k max pooling with stride k; the winner's index is kept so backward and R-forms route through it. */
#include "ckernels.h"
#include <string.h>

void mc_maxpool_forward(int n, int c, int h, int w, int k, const float *x, float *y, int32_t *argmax) {
    const int oh = h / k, ow = w / k;
    for (size_t p = 0; p < (size_t)n * c; p++) {
        const float *in = x + p * h * w;
        float *out = y + p * oh * ow;
        int32_t *idx = argmax + p * oh * ow;
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
    memset(dx, 0, sizeof(float) * (size_t)n * c * in_plane);
    for (size_t p = 0; p < (size_t)n * c; p++)
        for (size_t j = 0; j < out_plane; j++)
            dx[p * in_plane + argmax[p * out_plane + j]] += dy[p * out_plane + j];
}

void mc_maxpool_rforward(int n, int c, int h, int w, int k, const int32_t *argmax, const float *Rx, float *Ry) {
    const size_t in_plane = (size_t)h * w, out_plane = (size_t)(h / k) * (w / k);
    for (size_t p = 0; p < (size_t)n * c; p++)
        for (size_t j = 0; j < out_plane; j++)
            Ry[p * out_plane + j] = Rx[p * in_plane + argmax[p * out_plane + j]];
}

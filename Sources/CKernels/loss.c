/* Batch-averaged losses with their gradients and the R-forms of those gradients. */
#include "ckernels.h"
#include <math.h>

double mc_softmax_xent_forward(int n, int k, const float *z, const int32_t *labels, float *probs,
                               int *correct) {
    double loss = 0.0;
    int hits = 0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * k;
        float *pi = probs + (size_t)i * k;
        int best = 0;
        for (int j = 1; j < k; j++) if (zi[j] > zi[best]) best = j;
        const float m = zi[best];
        double sum = 0.0;
        for (int j = 0; j < k; j++) { pi[j] = expf(zi[j] - m); sum += pi[j]; }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < k; j++) pi[j] *= inv;
        loss += log(sum) - (double)(zi[labels[i]] - m);
        hits += best == labels[i];
    }
    if (correct) *correct = hits;
    return n ? loss / n : 0.0;
}

void mc_softmax_xent_backward(int n, int k, const float *probs, const int32_t *labels, float *dz) {
    const float scale = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) dz[(size_t)i * k + j] = probs[(size_t)i * k + j] * scale;
        dz[(size_t)i * k + labels[i]] -= scale;
    }
}

void mc_softmax_xent_rbackward(int n, int k, const float *probs, const float *Rz, float *Rdz) {
    const float scale = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * k, *r = Rz + (size_t)i * k;
        double dot = 0.0;
        for (int j = 0; j < k; j++) dot += (double)p[j] * r[j];
        for (int j = 0; j < k; j++) Rdz[(size_t)i * k + j] = p[j] * (r[j] - (float)dot) * scale;
    }
}

double mc_mse_forward(size_t count, const float *z, const float *t) {
    double acc = 0.0;
    for (size_t i = 0; i < count; i++) { double d = (double)z[i] - t[i]; acc += d * d; }
    return count ? acc / count : 0.0;
}

void mc_mse_backward(size_t count, const float *z, const float *t, float *dz) {
    const float scale = 2.0f / (float)count;
    for (size_t i = 0; i < count; i++) dz[i] = (z[i] - t[i]) * scale;
}

void mc_mse_rbackward(size_t count, const float *Rz, float *Rdz) {
    const float scale = 2.0f / (float)count;
    for (size_t i = 0; i < count; i++) Rdz[i] = Rz[i] * scale;
}

/* Elementwise activations. Backward and R-forms are written in terms of the output y, which is kept. */
#include "ckernels.h"
#include <math.h>

void mc_relu_forward(size_t count, const float *x, float *y) {
    for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void mc_relu_backward(size_t count, const float *y, const float *dy, float *dx) {
    for (size_t i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void mc_tanh_forward(size_t count, const float *x, float *y) {
    for (size_t i = 0; i < count; i++) y[i] = tanhf(x[i]);
}

void mc_tanh_backward(size_t count, const float *y, const float *dy, float *dx) {
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

void mc_tanh_rbackward(size_t count, const float *y, const float *Ry, const float *dy, const float *Rdy,
                       float *Rdx) {
    for (size_t i = 0; i < count; i++)
        Rdx[i] = Rdy[i] * (1.0f - y[i] * y[i]) - 2.0f * y[i] * Ry[i] * dy[i];
}

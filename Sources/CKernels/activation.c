/* Elementwise activations. Backward and R-forms are written in terms of the output y, which is kept.
 * Loops read every operand unconditionally, so the compiler turns the ReLU selects into vector blends
 * (a branch on the sign of y mispredicts half the time). */
#include "ckernels.h"
#include <math.h>
#include "vec8.h"

/* ReLU's loops compiled once per vector level (MC_CLONES); static, since the header's inline R-forms call the
 * public functions before this file could make them multiversioned. */
MC_CLONES static void relu_forward(size_t count, const float *restrict x, float *restrict y) {
    for (size_t i = 0; i < count; i++) { const float v = x[i]; y[i] = v > 0.0f ? v : 0.0f; }
}

MC_CLONES static void relu_backward(size_t count, const float *restrict y, const float *restrict dy, float *restrict dx) {
    for (size_t i = 0; i < count; i++) { const float d = dy[i]; dx[i] = y[i] > 0.0f ? d : 0.0f; }
}

void mc_relu_forward(size_t count, const float *restrict x, float *restrict y) { relu_forward(count, x, y); }

void mc_relu_backward(size_t count, const float *restrict y, const float *restrict dy, float *restrict dx) {
    relu_backward(count, y, dy, dx);
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

void mc_leaky_relu_forward(size_t count, float slope, const float *restrict x, float *restrict y) {
    for (size_t i = 0; i < count; i++) { const float v = x[i]; y[i] = v > 0.0f ? v : slope * v; }
}

void mc_leaky_relu_backward(size_t count, float slope, const float *restrict y, const float *restrict dy,
                            float *restrict dx) {
    for (size_t i = 0; i < count; i++) { const float d = dy[i]; dx[i] = y[i] > 0.0f ? d : slope * d; }
}

void mc_sigmoid_forward(size_t count, const float *x, float *y) {
    for (size_t i = 0; i < count; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

void mc_sigmoid_backward(size_t count, const float *y, const float *dy, float *dx) {
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void mc_sigmoid_rbackward(size_t count, const float *y, const float *Ry, const float *dy, const float *Rdy,
                          float *Rdx) {
    for (size_t i = 0; i < count; i++)
        Rdx[i] = Rdy[i] * y[i] * (1.0f - y[i]) + dy[i] * (1.0f - 2.0f * y[i]) * Ry[i];
}

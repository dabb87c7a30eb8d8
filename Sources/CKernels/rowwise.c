/* Normalisations of each row of a [rows, n] matrix (one feature vector per sample): softmax and L2
 * normalisation, with their backward and R-operator passes. Row sums accumulate in double. */
#include "ckernels.h"
#include <math.h>

static double dot(int n, const float *a, const float *b) {
    double s = 0;
    for (int j = 0; j < n; j++) s += (double)a[j] * b[j];
    return s;
}

void mc_softmax_forward(int rows, int n, const float *x, float *y) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        float top = xr[0];
        for (int j = 1; j < n; j++) top = xr[j] > top ? xr[j] : top;
        double sum = 0;
        for (int j = 0; j < n; j++) { yr[j] = expf(xr[j] - top); sum += yr[j]; }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++) yr[j] *= inv;
    }
}

void mc_softmax_backward(int rows, int n, const float *y, const float *dy, float *dx) {
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * n;
        const float s = (float)dot(n, y + o, dy + o);
        for (int j = 0; j < n; j++) dx[o + j] = y[o + j] * (dy[o + j] - s);
    }
}

void mc_softmax_rbackward(int rows, int n, const float *y, const float *Ry, const float *dy, const float *Rdy,
                          float *Rdx) {
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * n;
        const float s = (float)dot(n, y + o, dy + o);
        const float Rs = (float)(dot(n, Ry + o, dy + o) + dot(n, y + o, Rdy + o));
        for (int j = 0; j < n; j++) Rdx[o + j] = Ry[o + j] * (dy[o + j] - s) + y[o + j] * (Rdy[o + j] - Rs);
    }
}

/* The row's norm, sqrt(sum x^2 + eps). */
static double norm(int n, const float *x) { return sqrt(dot(n, x, x) + MC_L2_EPSILON); }

void mc_l2normalize_forward(int rows, int n, const float *x, float *y) {
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * n;
        const float inv = (float)(1.0 / norm(n, x + o));
        for (int j = 0; j < n; j++) y[o + j] = x[o + j] * inv;
    }
}

void mc_l2normalize_backward(int rows, int n, const float *x, const float *y, const float *dy, float *dx) {
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * n;
        const float inv = (float)(1.0 / norm(n, x + o)), s = (float)dot(n, y + o, dy + o);
        for (int j = 0; j < n; j++) dx[o + j] = (dy[o + j] - y[o + j] * s) * inv;
    }
}

void mc_l2normalize_rforward(int rows, int n, const float *x, const float *y, const float *Rx, float *Ry) {
    mc_l2normalize_backward(rows, n, x, y, Rx, Ry);   /* the Jacobian is symmetric */
}

void mc_l2normalize_rbackward(int rows, int n, const float *x, const float *y, const float *Rx, const float *Ry,
                              const float *dy, const float *Rdy, float *Rdx) {
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * n;
        const float inv = (float)(1.0 / norm(n, x + o)), s = (float)dot(n, y + o, dy + o);
        const float Rs = (float)(dot(n, Ry + o, dy + o) + dot(n, y + o, Rdy + o));
        const float Rn = Rx ? (float)dot(n, y + o, Rx + o) : 0.0f;   /* R{||x||} = y . Rx */
        for (int j = 0; j < n; j++) {
            const float dxj = (dy[o + j] - y[o + j] * s) * inv;
            Rdx[o + j] = (Rdy[o + j] - Ry[o + j] * s - y[o + j] * Rs) * inv - dxj * Rn * inv;
        }
    }
}

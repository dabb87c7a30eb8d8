/* Fully connected layer y = x W^T + b, its vector-Jacobian product and its R-forms, all as GEMMs. */
#include "ckernels.h"

void mc_linear_forward(int n, int in, int out, const float *x, const float *W, const float *b, float *y) {
    mc_gemm(0, 1, n, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (b) mc_add_row_bias(n, out, b, y);
}

void mc_linear_backward(int n, int in, int out, const float *x, const float *W, const float *dy,
                        float *dx, float *dW, float *db) {
    if (dx) mc_gemm(0, 0, n, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in);
    mc_gemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 0.0f, dW, in);
    if (db) mc_sum_rows(n, out, dy, db, 0);
}

void mc_linear_rforward(int n, int in, int out, const float *x, const float *Rx, const float *W,
                        const float *VW, const float *Vb, float *Ry) {
    mc_gemm(0, 1, n, out, in, 1.0f, x, in, VW, in, 0.0f, Ry, out);
    if (Rx) mc_gemm(0, 1, n, out, in, 1.0f, Rx, in, W, in, 1.0f, Ry, out);
    if (Vb) mc_add_row_bias(n, out, Vb, Ry);
}

void mc_linear_rbackward(int n, int in, int out, const float *x, const float *Rx, const float *W,
                         const float *VW, const float *dy, const float *Rdy,
                         float *Rdx, float *RdW, float *Rdb) {
    if (Rdx) {
        mc_gemm(0, 0, n, in, out, 1.0f, Rdy, out, W, in, 0.0f, Rdx, in);
        mc_gemm(0, 0, n, in, out, 1.0f, dy, out, VW, in, 1.0f, Rdx, in);
    }
    mc_gemm(1, 0, out, in, n, 1.0f, Rdy, out, x, in, 0.0f, RdW, in);
    if (Rx) mc_gemm(1, 0, out, in, n, 1.0f, dy, out, Rx, in, 1.0f, RdW, in);
    if (Rdb) mc_sum_rows(n, out, Rdy, Rdb, 0);
}

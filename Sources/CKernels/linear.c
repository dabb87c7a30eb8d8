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

/* ---- a stack of the layer at shared W and b ---- */

/* C = A B^T (transB) or A B, plus beta C, over `groups` blocks of n rows of A and C (rows of lda and ldc floats)
 * with one B: one product where its rows are computed as the blocks' own would be, one per block otherwise. */
static void shared_rows(int transB, int groups, int n, int cols, int k, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    if (mc_gemm_rows_independent(transB, groups * n, cols, k)) {
        mc_gemm(0, transB, groups * n, cols, k, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    for (int g = 0; g < groups; g++)
        mc_gemm(0, transB, n, cols, k, 1.0f, A + (size_t)g * n * lda, lda, B, ldb, beta, C + (size_t)g * n * ldc, ldc);
}

void mc_linear_forward_shared(int groups, int n, int in, int out, const float *x, const float *W, const float *b,
                              float *y) {
    shared_rows(1, groups, n, out, in, x, in, W, in, 0.0f, y, out);
    if (b) mc_add_row_bias(groups * n, out, b, y);
}

void mc_linear_backward_shared(int groups, int n, int in, int out, const float *x, const float *W, const float *dy,
                               float *dx, float *dW, float *db, ptrdiff_t stride) {
    if (dx) shared_rows(0, groups, n, in, out, dy, out, W, in, 0.0f, dx, in);
    for (int g = 0; g < groups; g++)
        mc_linear_backward(n, in, out, x + (size_t)g * n * in, W, dy + (size_t)g * n * out, NULL, dW + g * stride,
                           db ? db + g * stride : NULL);
}

void mc_linear_rforward_shared(int groups, int n, int in, int out, const float *x, const float *Rx, const float *W,
                               const float *VW, const float *Vb, float *Ry, ptrdiff_t stride) {
    /* in mc_linear_rforward's order: x VW^T, then + Rx W^T, then + Vb */
    for (int g = 0; g < groups; g++)
        mc_gemm(0, 1, n, out, in, 1.0f, x + (size_t)g * n * in, in, VW + g * stride, in, 0.0f, Ry + (size_t)g * n * out, out);
    if (Rx) shared_rows(1, groups, n, out, in, Rx, in, W, in, 1.0f, Ry, out);
    if (Vb)
        for (int g = 0; g < groups; g++) mc_add_row_bias(n, out, Vb + g * stride, Ry + (size_t)g * n * out);
}

void mc_linear_rbackward_shared(int groups, int n, int in, int out, const float *x, const float *Rx, const float *W,
                                const float *VW, const float *dy, const float *Rdy, float *Rdx, float *RdW, float *Rdb,
                                ptrdiff_t stride) {
    /* in mc_linear_rbackward's order: Rdy W, then + dy VW */
    if (Rdx) {
        shared_rows(0, groups, n, in, out, Rdy, out, W, in, 0.0f, Rdx, in);
        for (int g = 0; g < groups; g++)
            mc_gemm(0, 0, n, in, out, 1.0f, dy + (size_t)g * n * out, out, VW + g * stride, in, 1.0f, Rdx + (size_t)g * n * in, in);
    }
    for (int g = 0; g < groups; g++)
        mc_linear_rbackward(n, in, out, x + (size_t)g * n * in, Rx ? Rx + (size_t)g * n * in : NULL, W, VW + g * stride,
                            dy + (size_t)g * n * out, Rdy + (size_t)g * n * out, NULL, RdW + g * stride,
                            Rdb ? Rdb + g * stride : NULL);
}

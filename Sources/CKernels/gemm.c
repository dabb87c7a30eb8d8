/* GEMM through cblas, plus the two row-broadcast helpers every dense layer needs. */
#include "ckernels.h"
#include <cblas.h>

void mc_gemm(int transA, int transB, int m, int n, int k,
             float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) { /* cblas leaves C untouched when k == 0 only if beta == 1; make it explicit. */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void mc_gemm_batched(int count, int transA, int transB, int m, int n, int k,
                     float alpha, const float *A, int lda, ptrdiff_t strideA,
                     const float *B, int ldb, ptrdiff_t strideB,
                     float beta, float *C, int ldc, ptrdiff_t strideC) {
    for (int i = 0; i < count; i++)
        mc_gemm(transA, transB, m, n, k, alpha, A + i * strideA, lda, B + i * strideB, ldb,
                beta, C + i * strideC, ldc);
}

void mc_add_row_bias(int rows, int cols, const float *bias, float *Y) {
    for (int i = 0; i < rows; i++) {
        float *y = Y + (size_t)i * cols;
        for (int j = 0; j < cols; j++) y[j] += bias[j];
    }
}

void mc_sum_rows(int rows, int cols, const float *Y, float *out, int accumulate) {
    for (int j = 0; j < cols; j++) {
        double acc = accumulate ? out[j] : 0.0;
        for (int i = 0; i < rows; i++) acc += Y[(size_t)i * cols + j];
        out[j] = (float)acc;
    }
}

void mc_blas_set_threads(int threads) { openblas_set_num_threads(threads); }
int mc_blas_threads(void) { return openblas_get_num_threads(); }

/* GEMM through cblas, plus the two row-broadcast helpers every dense layer needs. Tiny products (an MLP
 * on a 10-point support set) skip cblas: its packing, buffer and locking overheads cost more than the
 * arithmetic there, so they run in a plain loop kernel instead. */
#include "ckernels.h"
#include "vec8.h"
#include <cblas.h>
#include <string.h>

/* Products up to this many multiply-adds take the loop kernel (measured crossover: cblas wins above it). */
#define MC_SMALL_GEMM ((size_t)32 * 1024)
/* A transposed B is packed row-major into a stack buffer first; beyond this many floats cblas is faster. */
#define MC_SMALL_PACK 512


/* Row i of C [n] = alpha * sum_p a(p) * Bp[p, :] + beta * row, where a(p) = A[i*sa + p*sp] and Bp is
 * row-major with row stride ldb. 32 columns at a time stay in registers across the whole p loop. */
MC_INLINE void gemm_row(int n, int k, float alpha, const float *A, size_t sp, const float *Bp, int ldb,
                    float beta, float *c) {
    int j = 0;
    for (; j + 32 <= n; j += 32) {
        v8 c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
        for (int p = 0; p < k; p++) {
            const float *b = Bp + (size_t)p * ldb + j;
            const float a = A[p * sp];
            c0 += a * load8(b); c1 += a * load8(b + 8); c2 += a * load8(b + 16); c3 += a * load8(b + 24);
        }
        v8 out[4] = {c0, c1, c2, c3};
        for (int q = 0; q < 4; q++) {
            v8 r = alpha * out[q];
            if (beta != 0.0f) r += beta * load8(c + j + 8 * q);
            store8(c + j + 8 * q, r);
        }
    }
    for (; j + 8 <= n; j += 8) {
        v8 c0 = {0};
        for (int p = 0; p < k; p++) c0 += A[p * sp] * load8(Bp + (size_t)p * ldb + j);
        v8 r = alpha * c0;
        if (beta != 0.0f) r += beta * load8(c + j);
        store8(c + j, r);
    }
    for (; j < n; j++) {
        float sum = 0.0f;
        for (int p = 0; p < k; p++) sum += A[p * sp] * Bp[(size_t)p * ldb + j];
        c[j] = alpha * sum + (beta != 0.0f ? beta * c[j] : 0.0f);
    }
}

/* C = alpha op(A) op(B) + beta C for small shapes, compiled for AVX+FMA as well as the baseline (the
 * loader picks the clone the CPU supports). Returns 0 if the shape does not suit it. */
__attribute__((target_clones("fma", "default")))
static int gemm_small(int transA, int transB, int m, int n, int k, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    float packed[MC_SMALL_PACK];
    if (transB) {               /* op(B)[p, j] = B[j, p]: pack it row-major */
        if ((size_t)k * n > MC_SMALL_PACK) return 0;
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++) packed[(size_t)p * n + j] = B[(size_t)j * ldb + p];
        B = packed; ldb = n;
    }
    for (int i = 0; i < m; i++) {
        const float *a = transA ? A + i : A + (size_t)i * lda;
        gemm_row(n, k, alpha, a, transA ? (size_t)lda : 1, B, ldb, beta, C + (size_t)i * ldc);
    }
    return 1;
}

void mc_gemm(int transA, int transB, int m, int n, int k,
             float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) { /* cblas leaves C untouched when k == 0 only if beta == 1; make it explicit. */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    if ((size_t)m * n * k <= MC_SMALL_GEMM
        && gemm_small(transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)) return;
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
    enum { BLOCK = 64 };  /* columns summed together, row by row: contiguous, vectorised reads */
    for (int j0 = 0; j0 < cols; j0 += BLOCK) {
        const int width = cols - j0 < BLOCK ? cols - j0 : BLOCK;
        double acc[BLOCK];
        for (int j = 0; j < width; j++) acc[j] = accumulate ? out[j0 + j] : 0.0;
        for (int i = 0; i < rows; i++) {
            const float *restrict y = Y + (size_t)i * cols + j0;
            for (int j = 0; j < width; j++) acc[j] += y[j];
        }
        for (int j = 0; j < width; j++) out[j0 + j] = (float)acc[j];
    }
}

void mc_blas_set_threads(int threads) { openblas_set_num_threads(threads); }
int mc_blas_threads(void) { return openblas_get_num_threads(); }

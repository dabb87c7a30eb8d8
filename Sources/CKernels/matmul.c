/* The matrix product of two activations, one product per sample: C = op(A) op(B) (attention scores, weighted
 * reads of a memory), with its backward and R-operator passes, each a batched GEMM. */
#include "ckernels.h"

/* Z (+)= op(A) op(B) for every sample: op(A) [m,k], op(B) [k,n], Z [m,n]. */
static void product(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *B, float beta,
                    float *Z) {
    mc_gemm_batched(batch, ta, tb, m, n, k, 1.0f, A, ta ? m : k, (ptrdiff_t)m * k, B, tb ? k : n, (ptrdiff_t)k * n,
                    beta, Z, n, (ptrdiff_t)m * n);
}

/* dA (+)= the gradient of A for output gradient dC: d op(A) = dC op(B)^T, transposed back if A is stored so. */
static void grad_a(int batch, int ta, int tb, int m, int n, int k, const float *B, const float *dC, float beta,
                   float *dA) {
    if (!ta) /* dA [m,k] = dC [m,n] op(B)^T */
        mc_gemm_batched(batch, 0, !tb, m, k, n, 1.0f, dC, n, (ptrdiff_t)m * n, B, tb ? k : n, (ptrdiff_t)k * n,
                        beta, dA, k, (ptrdiff_t)m * k);
    else     /* dA [k,m] = op(B) [k,n] dC^T */
        mc_gemm_batched(batch, tb, 1, k, m, n, 1.0f, B, tb ? k : n, (ptrdiff_t)k * n, dC, n, (ptrdiff_t)m * n,
                        beta, dA, m, (ptrdiff_t)m * k);
}

/* dB (+)= the gradient of B: d op(B) = op(A)^T dC, transposed back if B is stored so. */
static void grad_b(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *dC, float beta,
                   float *dB) {
    if (!tb) /* dB [k,n] = op(A)^T [k,m] dC [m,n] */
        mc_gemm_batched(batch, !ta, 0, k, n, m, 1.0f, A, ta ? m : k, (ptrdiff_t)m * k, dC, n, (ptrdiff_t)m * n,
                        beta, dB, n, (ptrdiff_t)k * n);
    else     /* dB [n,k] = dC^T [n,m] op(A) [m,k] */
        mc_gemm_batched(batch, 1, ta, n, k, m, 1.0f, dC, n, (ptrdiff_t)m * n, A, ta ? m : k, (ptrdiff_t)m * k,
                        beta, dB, k, (ptrdiff_t)k * n);
}

void mc_matmul_forward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *B, float *C) {
    product(batch, ta, tb, m, n, k, A, B, 0.0f, C);
}

void mc_matmul_backward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *B,
                        const float *dC, float *dA, float *dB) {
    if (dA) grad_a(batch, ta, tb, m, n, k, B, dC, 0.0f, dA);
    if (dB) grad_b(batch, ta, tb, m, n, k, A, dC, 0.0f, dB);
}

void mc_matmul_rforward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *RA,
                        const float *B, const float *RB, float *RC) {
    float beta = 0.0f;
    if (RA) { product(batch, ta, tb, m, n, k, RA, B, beta, RC); beta = 1.0f; }
    if (RB) { product(batch, ta, tb, m, n, k, A, RB, beta, RC); beta = 1.0f; }
    if (beta == 0.0f)
        for (size_t i = 0, count = (size_t)batch * m * n; i < count; i++) RC[i] = 0.0f;
}

void mc_matmul_rbackward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *RA,
                         const float *B, const float *RB, const float *dC, const float *RdC, float *RdA,
                         float *RdB) {
    if (RdA) {
        grad_a(batch, ta, tb, m, n, k, B, RdC, 0.0f, RdA);
        if (RB) grad_a(batch, ta, tb, m, n, k, RB, dC, 1.0f, RdA);
    }
    if (RdB) {
        grad_b(batch, ta, tb, m, n, k, A, RdC, 0.0f, RdB);
        if (RA) grad_b(batch, ta, tb, m, n, k, RA, dC, 1.0f, RdB);
    }
}

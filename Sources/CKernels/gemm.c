/* GEMM through cblas, plus the two row-broadcast helpers every dense layer needs. Small products (an MLP on
 * a 10-point support set, the Winograd products of one chunk of images) skip cblas: its packing, buffer and
 * locking overheads cost more than the arithmetic there, so they run in a plain loop kernel instead. */
#include "ckernels.h"
#include "vec8.h"
#include <cblas.h>
#include <string.h>

/* Products up to this many multiply-adds take the loop kernel (measured: it beats cblas on one core up to
 * 64 x 64 x 32 and ties at 128 x 64 x 16). */
#define MC_SMALL_GEMM ((size_t)128 * 1024)
/* With AVX-512's sixteen-float tiles, up to this many (measured on a Xeon: 1.4 - 1.6x OpenBLAS's SkylakeX kernels
 * on products with B transposed up to 128 x 64 x 64, even with them on the others). */
#define MC_SMALL_GEMM_WIDE ((size_t)512 * 1024)
/* A transposed B is packed row-major into a stack buffer (16 KB) first. */
#define MC_SMALL_PACK 4096


/* The register tiles: eight floats wide (gemm_small8, compiled once per vector level) and sixteen (AVX-512). */
typedef float v16 __attribute__((vector_size(64)));
typedef float v4 __attribute__((vector_size(16)));
#define GEMM_VEC v8
#define GEMM_HALF v4
#define GEMM_LANES 8
#define GEMM_MAX_NV 2
#define GEMM_TILE gemm_tile
#include "gemm_tile.h"
#undef GEMM_VEC
#undef GEMM_HALF
#undef GEMM_LANES
#undef GEMM_MAX_NV
#undef GEMM_TILE
#define GEMM_VEC v16
#define GEMM_HALF v8
#define GEMM_LANES 16
#define GEMM_MAX_NV 4
#define GEMM_TILE gemm_tile16
#include "gemm_tile.h"

/* One column of C (the n % 8 tail), MR rows at once so their sums are independent chains. */
MC_INLINE void gemm_column(const int MR, int k, float alpha, const float *A, size_t si, size_t sp,
                           const float *B, int ldb, float beta, float *C, int ldc) {
    float acc[4] = {0};
    for (int p = 0; p < k; p++) {
        const float b = B[(size_t)p * ldb];
        for (int r = 0; r < MR; r++) acc[r] += A[r * si + p * sp] * b;
    }
    for (int r = 0; r < MR; r++) {
        float *c = C + (size_t)r * ldc;
        *c = alpha * acc[r] + (beta != 0.0f ? beta * *c : 0.0f);
    }
}

/* MR rows of C: with `wide` vectors, 64-column tiles, then the columns left in one tile of whole and half
 * vectors; otherwise 16- and 8-column tiles; then single columns. */
MC_INLINE void gemm_rows(const int wide, const int MR, int n, int k, float alpha, const float *A, size_t si,
                         size_t sp, const float *B, int ldb, float beta, float *C, int ldc) {
    int j = 0;
    if (wide) {
        for (; j + 64 <= n; j += 64) gemm_tile16(MR, 4, 0, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc);
        const int nv = (n - j) / 16, h = (n - j) % 16 >= 8;
        switch (2 * nv + h) {
        case 1: gemm_tile16(MR, 0, 1, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); break;
        case 2: gemm_tile16(MR, 1, 0, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); break;
        case 3: gemm_tile16(MR, 1, 1, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); break;
        case 4: gemm_tile16(MR, 2, 0, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); break;
        case 5: gemm_tile16(MR, 2, 1, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); break;
        case 6: gemm_tile16(MR, 3, 0, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); break;
        case 7: gemm_tile16(MR, 3, 1, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); break;
        }
        j += 16 * nv + 8 * h;
    } else {
        /* No four-float half here: the wide tiles leave those columns to gemm_column, whose last rounding differs. */
        for (; j + 16 <= n; j += 16) gemm_tile(MR, 2, 0, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc);
        if (j + 8 <= n) { gemm_tile(MR, 1, 0, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc); j += 8; }
    }
    for (; j < n; j++) gemm_column(MR, k, alpha, A, si, sp, B + j, ldb, beta, C + j, ldc);
}

/* x . y over k floats: two eight-float chains, then one horizontal sum. (reduce.h's dot_plane, one chain
 * summed into double for batch statistics, is slower here: 5.5 against 4.2 us on an 80x5x64 head.) */
MC_INLINE float dot(int k, const float *x, const float *y) {
    v8 s0 = {0}, s1 = {0};
    int p = 0;
    for (; p + 16 <= k; p += 16) { s0 += load8(x + p) * load8(y + p); s1 += load8(x + p + 8) * load8(y + p + 8); }
    if (p + 8 <= k) { s0 += load8(x + p) * load8(y + p); p += 8; }
    s0 += s1;
    float sum = 0.0f;
    for (int q = 0; q < 8; q++) sum += s0[q];
    for (; p < k; p++) sum += x[p] * y[p];
    return sum;
}

/* C = alpha A B^T + beta C for a narrow C (n < 8, e.g. a classifier head): A [m, k] and B [n, k] are both
 * row-major, so each entry is one contiguous dot product. */
MC_INLINE void gemm_dots(int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb,
                         float beta, float *C, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float *c = C + (size_t)i * ldc + j;
            const float d = dot(k, A + (size_t)i * lda, B + (size_t)j * ldb);
            *c = alpha * d + (beta != 0.0f ? beta * *c : 0.0f);
        }
}

/* C = alpha A^T B + beta C for a narrow C (n < 8, e.g. the weight gradient of a layer with one input): C's
 * rows run along A's, so each column of C is built a vector of rows at a time. Every entry is the chain of
 * multiply-adds in p order that gemm_column computes, so the results are the same to the bit. */
MC_INLINE void gemm_narrow_transposed(const int wide, int m, int n, int k, float alpha, const float *A, int lda,
                                      const float *B, int ldb, float beta, float *C, int ldc) {
    for (int j = 0; j < n; j++) {
        int i = 0;
        for (; wide && i + 16 <= m; i += 16) {
            v16 acc = {0}, a;
            for (int p = 0; p < k; p++) { memcpy(&a, A + (size_t)p * lda + i, sizeof a); acc += a * B[(size_t)p * ldb + j]; }
            for (int q = 0; q < 16; q++) {
                float *c = C + (size_t)(i + q) * ldc + j;
                *c = alpha * acc[q] + (beta != 0.0f ? beta * *c : 0.0f);
            }
        }
        for (; i + 8 <= m; i += 8) {
            v8 acc = {0};
            for (int p = 0; p < k; p++) acc += load8(A + (size_t)p * lda + i) * B[(size_t)p * ldb + j];
            for (int q = 0; q < 8; q++) {
                float *c = C + (size_t)(i + q) * ldc + j;
                *c = alpha * acc[q] + (beta != 0.0f ? beta * *c : 0.0f);
            }
        }
        for (; i < m; i++) {
            float acc = 0.0f;
            for (int p = 0; p < k; p++) acc += A[(size_t)p * lda + i] * B[(size_t)p * ldb + j];
            float *c = C + (size_t)i * ldc + j;
            *c = alpha * acc + (beta != 0.0f ? beta * *c : 0.0f);
        }
    }
}

/* The 8 x 8 block at X (row stride ldx), transposed into Y (row stride ldy). */
MC_INLINE void transpose8(const float *X, size_t ldx, float *Y, size_t ldy) {
    v8 r[8];
    for (int q = 0; q < 8; q++) r[q] = load8(X + q * ldx);
    transpose8_in_place(r);
    for (int q = 0; q < 8; q++) store8(Y + q * ldy, r[q]);
}

/* transpose8 with sixteen-float vectors: rows q and q + 4 in register q, then two rounds of two-source
 * permutes, 8 of them against transpose8's 24 shuffles (the shuffle port is what limits both). */
MC_INLINE void transpose8_wide(const float *X, size_t ldx, float *Y, size_t ldy) {
    v16 r[4];
    for (int q = 0; q < 4; q++)
        r[q] = __builtin_shufflevector(load8(X + q * ldx), load8(X + (q + 4) * ldx), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                       12, 13, 14, 15);
    /* Rows 0, 1, 4, 5 (from r0, r1) or 2, 3, 6, 7 (from r2, r3), four to a column: columns 0-3, then 4-7. */
#define FIRST_HALF 0, 16, 8, 24, 1, 17, 9, 25, 2, 18, 10, 26, 3, 19, 11, 27
#define SECOND_HALF 4, 20, 12, 28, 5, 21, 13, 29, 6, 22, 14, 30, 7, 23, 15, 31
    const v16 t[4] = {__builtin_shufflevector(r[0], r[1], FIRST_HALF), __builtin_shufflevector(r[0], r[1], SECOND_HALF),
                      __builtin_shufflevector(r[2], r[3], FIRST_HALF), __builtin_shufflevector(r[2], r[3], SECOND_HALF)};
#undef FIRST_HALF
#undef SECOND_HALF
    /* Two whole columns, rows 0-7, from the four-column halves of both sets of rows. */
#define COLUMNS_01 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23
#define COLUMNS_23 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31
    const v16 u[4] = {__builtin_shufflevector(t[0], t[2], COLUMNS_01), __builtin_shufflevector(t[0], t[2], COLUMNS_23),
                      __builtin_shufflevector(t[1], t[3], COLUMNS_01), __builtin_shufflevector(t[1], t[3], COLUMNS_23)};
#undef COLUMNS_01
#undef COLUMNS_23
    for (int q = 0; q < 4; q++) {
        store8(Y + 2 * q * ldy, __builtin_shufflevector(u[q], u[q], 0, 1, 2, 3, 4, 5, 6, 7));
        store8(Y + (2 * q + 1) * ldy, __builtin_shufflevector(u[q], u[q], 8, 9, 10, 11, 12, 13, 14, 15));
    }
}

/* Bt [k, n] = B^T for B [n, k] with row stride ldb: 8 x 8 blocks, the edges element by element. */
MC_INLINE void pack_transposed(const int wide, int n, int k, const float *B, int ldb, float *Bt) {
    const int n8 = n & ~7, k8 = k & ~7;
    for (int j = 0; j < n8; j += 8)
        for (int p = 0; p < k8; p += 8) {
            if (wide) transpose8_wide(B + (size_t)j * ldb + p, (size_t)ldb, Bt + (size_t)p * n + j, (size_t)n);
            else transpose8(B + (size_t)j * ldb + p, (size_t)ldb, Bt + (size_t)p * n + j, (size_t)n);
        }
    for (int p = 0; p < k; p++)
        for (int j = p < k8 ? n8 : 0; j < n; j++) Bt[(size_t)p * n + j] = B[(size_t)j * ldb + p];
}

/* C = alpha op(A) op(B) + beta C for small shapes, with `wide` (sixteen-float) vectors or eight-float ones.
 * Returns 0 if the shape does not suit it. */
MC_INLINE int gemm_small(const int wide, int transA, int transB, int m, int n, int k, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (transB && !transA && n < 8) { gemm_dots(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); return 1; }
    if (transA && !transB && n < 8) { gemm_narrow_transposed(wide, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); return 1; }
    float packed[MC_SMALL_PACK];
    if (transB) {               /* op(B)[p, j] = B[j, p]: pack it row-major, eight rows of B at a time */
        if ((size_t)k * n > MC_SMALL_PACK) return 0;
        pack_transposed(wide, n, k, B, ldb, packed);
        B = packed; ldb = n;
    }
    /* op(A)(i, p) = A[i*si + p*sp] */
    const size_t si = transA ? 1 : (size_t)lda, sp = transA ? (size_t)lda : 1;
    int i = 0;
    for (; i + 4 <= m; i += 4)
        gemm_rows(wide, 4, n, k, alpha, A + i * si, si, sp, B, ldb, beta, C + (size_t)i * ldc, ldc);
    switch (m - i) {
    case 3: gemm_rows(wide, 3, n, k, alpha, A + i * si, si, sp, B, ldb, beta, C + (size_t)i * ldc, ldc); break;
    case 2: gemm_rows(wide, 2, n, k, alpha, A + i * si, si, sp, B, ldb, beta, C + (size_t)i * ldc, ldc); break;
    case 1: gemm_rows(wide, 1, n, k, alpha, A + i * si, si, sp, B, ldb, beta, C + (size_t)i * ldc, ldc); break;
    }
    return 1;
}

/* The loop kernel with eight-float tiles, compiled once per vector level (MC_CLONES: the loader picks the clone
 * the CPU supports), and with sixteen-float tiles for AVX-512, which `loop_lanes` picks at run time. */
MC_CLONES static int gemm_small8(int transA, int transB, int m, int n, int k, float alpha, const float *A, int lda,
                                 const float *B, int ldb, float beta, float *C, int ldc) {
    return gemm_small(0, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
__attribute__((target("avx512f,avx512vl,avx2,fma")))
static int gemm_small16(int transA, int transB, int m, int n, int k, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc) {
    return gemm_small(1, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

static int loop_lanes(void) { return mc_cpu_vector_level() == 2 ? 16 : 8; }

static int gemm_loop(int lanes, int transA, int transB, int m, int n, int k, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    return lanes == 16 ? gemm_small16(transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
                       : gemm_small8(transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

int mc_gemm_loop(int lanes, int transA, int transB, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    if (m == 0 || n == 0 || k == 0 || (lanes != 8 && lanes != 16) || lanes > loop_lanes()) return 0;
    return gemm_loop(lanes, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
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
    const int lanes = loop_lanes();
    if ((size_t)m * n * k <= (lanes == 16 ? MC_SMALL_GEMM_WIDE : MC_SMALL_GEMM)
        && gemm_loop(lanes, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

int mc_gemm_rows_independent(int transB, int m, int n, int k) {
    if (m <= 0 || n <= 0 || k <= 0 || (size_t)m * n * k > (loop_lanes() == 16 ? MC_SMALL_GEMM_WIDE : MC_SMALL_GEMM)) return 0;
    /* gemm_small's one refusal: a transposed B too big to pack (gemm_dots takes a narrow one whole) */
    return !(transB && n >= 8 && (size_t)k * n > MC_SMALL_PACK);
}

void mc_gemm_batched(int count, int transA, int transB, int m, int n, int k,
                     float alpha, const float *A, int lda, ptrdiff_t strideA,
                     const float *B, int ldb, ptrdiff_t strideB,
                     float beta, float *C, int ldc, ptrdiff_t strideC) {
    for (int i = 0; i < count; i++)
        mc_gemm(transA, transB, m, n, k, alpha, A + i * strideA, lda, B + i * strideB, ldb,
                beta, C + i * strideC, ldc);
}

/* The bias add and the row sums are compiled once per vector level (MC_CLONES): a linear layer calls them on
 * every pass. */
MC_CLONES static void add_row_bias(int rows, int cols, const float *restrict bias, float *restrict Y) {
    for (int i = 0; i < rows; i++) {
        float *y = Y + (size_t)i * cols;
        for (int j = 0; j < cols; j++) y[j] += bias[j];
    }
}

MC_CLONES static void sum_rows(int rows, int cols, const float *restrict Y, float *restrict out, int accumulate) {
    /* Eight columns at a time, held in a register down the rows; runs of 16 rows are summed in float, the
     * runs in double, so long columns keep their digits. The last cols % 8 columns go one by one. */
    enum { RUN = 16 };
    int j = 0;
    for (; j + 8 <= cols; j += 8) {
        double acc[8];
        for (int q = 0; q < 8; q++) acc[q] = accumulate ? out[j + q] : 0.0;
        for (int i0 = 0; i0 < rows; i0 += RUN) {
            const int end = rows - i0 < RUN ? rows : i0 + RUN;
            float part[8] = {0};
            for (int i = i0; i < end; i++)
                for (int q = 0; q < 8; q++) part[q] += Y[(size_t)i * cols + j + q];
            for (int q = 0; q < 8; q++) acc[q] += part[q];
        }
        for (int q = 0; q < 8; q++) out[j + q] = (float)acc[q];
    }
    for (; j < cols; j++) {
        double acc = accumulate ? out[j] : 0.0;
        for (int i = 0; i < rows; i++) acc += Y[(size_t)i * cols + j];
        out[j] = (float)acc;
    }
}

void mc_sum_rows(int rows, int cols, const float *Y, float *out, int accumulate) {
    sum_rows(rows, cols, Y, out, accumulate);
}

void mc_add_row_bias(int rows, int cols, const float *bias, float *Y) { add_row_bias(rows, cols, bias, Y); }

void mc_blas_set_threads(int threads) { openblas_set_num_threads(threads); }
int mc_blas_threads(void) { return openblas_get_num_threads(); }
const char *mc_blas_core(void) { return openblas_get_corename(); }

int mc_cpu_vector_level(void) {
#if !defined(__x86_64__)
    return 0;
#else
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return 2;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#endif
}

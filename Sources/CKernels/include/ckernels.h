/*
 * CKernels — MetaCore's hot loops, in plain C11 over OpenBLAS (cblas).
 *
 * Conventions shared by every kernel:
 *   - float32, row-major; image tensors are NCHW (batch, channels, height, width), contiguous.
 *   - Every operation comes in three forms:
 *       forward   y = f(x; w)
 *       backward  the vector-Jacobian product: given dy = dL/dy, the input gradient dx = J_x^T dy and the
 *                 parameter gradient dw = J_w^T dy;
 *       R-form    Pearlmutter's R-operator for a direction v in parameter space: the directional derivative
 *                 of the forward pass (Ry, from Rx and v) and of the backward pass (Rdx and Rdw, from the
 *                 forward and backward quantities and Rdy). Chained through a network, Rdw is the exact
 *                 Hessian-vector product H v.
 *     An R-prefixed argument always means "the directional derivative of" the quantity it names.
 *   - Outputs are overwritten unless a function says it accumulates ("+=").
 *   - An input pointer documented as "may be NULL" stands for a zero tensor (for example Rx of a network's
 *     input, which does not depend on the parameters); an output documented as "may be NULL" is skipped.
 *   - No global state and no allocation: scratch memory is a caller-provided workspace whose size a
 *     *_workspace_size() function gives. Kernels are safe to call concurrently on disjoint buffers.
 *   - Sums over a batch are accumulated in double where a float sum of many terms would lose digits.
 *   - Argument validation is the caller's job (MetaCore checks shapes before it calls in).
 */
#ifndef METACORE_CKERNELS_H
#define METACORE_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------------
 * GEMM (gemm.c)
 * ------------------------------------------------------------------------------------------------------- */

/* C[m,n] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [m,k], op(B) is [k,n].
 * transA/transB: 0 = as stored, 1 = transposed (A stored [k,m], B stored [n,k]).
 * lda/ldb/ldc are the row strides of A, B and C as stored. beta = 1 accumulates into C. */
void mc_gemm(int transA, int transB, int m, int n, int k,
             float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);

/* The loop kernel mc_gemm runs small products on (up to 128k multiply-adds, 512k with AVX-512), at a given
 * vector width: lanes 8 (AVX + FMA, or the baseline) or 16 (AVX-512; mc_gemm's choice where
 * mc_cpu_vector_level() is 2). Each entry of C is the same chain of multiply-adds at both widths, so they agree
 * bit for bit. Returns 0, leaving C alone, if this CPU lacks the width or the kernel does not take the shape
 * (m, n or k 0; a transposed B of more than 4096 floats); for tests and benchmarks. */
int mc_gemm_loop(int lanes, int transA, int transB, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* Whether mc_gemm computes C = op(A) op(B) + beta C, with A as stored (not transposed) and m rows, row by row as
 * it computes any of its blocks of rows on their own: true where it runs the loop kernel on the whole, where
 * every entry is one chain of multiply-adds over k, whatever the tile it falls in. */
int mc_gemm_rows_independent(int transB, int m, int n, int k);

/* Batched GEMM: `count` independent products with the same shapes; matrix i of A, B, C starts at
 * A + i*strideA (likewise B, C). */
void mc_gemm_batched(int count, int transA, int transB, int m, int n, int k,
                     float alpha, const float *A, int lda, ptrdiff_t strideA,
                     const float *B, int ldb, ptrdiff_t strideB,
                     float beta, float *C, int ldc, ptrdiff_t strideC);

/* Y[rows, cols] += bias[cols] broadcast over rows. */
void mc_add_row_bias(int rows, int cols, const float *bias, float *Y);

/* out[cols] (+)= sum over rows of Y[rows, cols]; accumulate = 0 overwrites, 1 adds. */
void mc_sum_rows(int rows, int cols, const float *Y, float *out, int accumulate);

/* Number of threads OpenBLAS may use (process-wide setting of the BLAS library itself). */
void mc_blas_set_threads(int threads);
int mc_blas_threads(void);
/* The CPU kernels OpenBLAS chose for this process ("Haswell", "Zen", "SkylakeX", "Cooperlake", ...): its AVX-512
 * kernels sum in another order than its AVX2 ones, so GEMM results differ in the last bits between the two. */
const char *mc_blas_core(void);
/* The widest vector instructions this CPU offers OpenBLAS's kernels: 2 for AVX-512 (F, CD, BW, DQ, VL: what
 * OpenBLAS's SkylakeX kernels use), 1 for AVX2 with FMA (its Haswell kernels), 0 for less. */
int mc_cpu_vector_level(void);

/* ---------------------------------------------------------------------------------------------------------
 * Fully connected layer (linear.c):  y[N,out] = x[N,in] W^T + b,  W is [out, in], b is [out].
 * ------------------------------------------------------------------------------------------------------- */

void mc_linear_forward(int n, int in, int out, const float *x, const float *W, const float *b, float *y);

/* dx[N,in] = dy W (dx may be NULL); dW[out,in] = dy^T x; db[out] = sum_n dy. dW and db are overwritten. */
void mc_linear_backward(int n, int in, int out, const float *x, const float *W, const float *dy,
                        float *dx, float *dW, float *db);

/* Ry = Rx W^T + x VW^T + Vb.  Rx may be NULL. */
void mc_linear_rforward(int n, int in, int out, const float *x, const float *Rx, const float *W,
                        const float *VW, const float *Vb, float *Ry);

/* Rdx = Rdy W + dy VW (Rdx may be NULL); RdW = Rdy^T x + dy^T Rx; Rdb = sum_n Rdy.  Rx may be NULL. */
void mc_linear_rbackward(int n, int in, int out, const float *x, const float *Rx, const float *W,
                         const float *VW, const float *dy, const float *Rdy,
                         float *Rdx, float *RdW, float *Rdb);

/* The same four over `groups` copies of the layer at one W and b (a stack of tasks at shared parameters), on
 * consecutive blocks of n samples: the products with W run over all the blocks at once where that computes
 * every row as the block's own call does (mc_gemm_rows_independent), block by block otherwise; the products
 * with a block's own operands (its VW, Vb; its dW, db, RdW, Rdb) block by block, those operands `stride`
 * floats apart. Each block's results are then the single-layer functions' to the bit. */
void mc_linear_forward_shared(int groups, int n, int in, int out, const float *x, const float *W, const float *b,
                              float *y);
void mc_linear_backward_shared(int groups, int n, int in, int out, const float *x, const float *W, const float *dy,
                               float *dx, float *dW, float *db, ptrdiff_t stride);
void mc_linear_rforward_shared(int groups, int n, int in, int out, const float *x, const float *Rx, const float *W,
                               const float *VW, const float *Vb, float *Ry, ptrdiff_t stride);
void mc_linear_rbackward_shared(int groups, int n, int in, int out, const float *x, const float *Rx, const float *W,
                                const float *VW, const float *dy, const float *Rdy, float *Rdx, float *RdW, float *Rdb,
                                ptrdiff_t stride);

/* ---------------------------------------------------------------------------------------------------------
 * 2-D convolution (conv2d.c), cross-correlation as in every deep-learning library.
 *   x [N, C, H, W], weights W [O, C, KH, KW], bias b [O], y [N, O, OH, OW],
 *   OH = (H + 2*pad - KH) / stride + 1, OW likewise (floor).
 * Four algorithms; the GEMM-based ones run over chunks of `chunk` images so small late-layer images still
 * give large GEMMs:
 *  - MC_CONV_IM2COL (any geometry): im2col + one GEMM per chunk. Workspace, in floats:
 *      col [C*KH*KW, chunk*OH*OW] | t1 [O, chunk*OH*OW] | t2 [O, chunk*OH*OW].
 *  - MC_CONV_IM2ROW (any geometry): the patch matrix transposed, rows [chunk*OH*OW, KH*KW*C] with the columns
 *    in (ki, kj, c) order, built from a channels-last copy of each image by copies of KW*C floats, and the
 *    weights permuted to the same order. Workspace: rows | t1 | t2 as im2col's | three [O, KH*KW*C] weight
 *    buffers | one image [H + 2 pad, W + 2 pad, C].
 *  - MC_CONV_WINOGRAD_2X2 and _4X4 (3x3, stride 1, pad 1; winograd.c): F(m x m, 3x3) on m x m output tiles,
 *    a^2 GEMMs per chunk on transformed a x a tiles (a = m + 2), 2.25x (m = 2) or 4x (m = 4) fewer
 *    multiplies on whole tiles; the backward passes are the exact adjoints of the forward pass.
 *    Workspace: U, U2, dU [a^2, O, C] | V [a^2, tiles, C] | M1, M2 [a^2, tiles, O] | one padded
 *    [rows, cols, 8] block of eight interleaved planes.
 *  - MC_CONV_DIRECT (stride 1, pad < KH and KW, KH*KW <= 49; direct.c): image by image, eight output columns
 *    at a time, as weighted sums of the zero-padded input's shifted rows. Workspace: one image's padded input
 *    or dy planes | a [ceil(O/4), C*KH*KW, 4] weight table | [O, C*KH*KW + 1, 8] gradient lane sums.
 * mc_conv2d_shape_make picks Winograd where it applies and pays (C >= MC_WINOGRAD_MIN_CHANNELS), with the tile
 * size that needs fewer multiplies (4x4 on 3x3, 4x4 and from 7x7 up; 2x2 on 2x2, 5x5 and 6x6), the direct
 * algorithm for fewer channels at stride 1, im2row for strided layers of at least MC_IM2ROW_MIN_CHANNELS (8)
 * channels, and im2col for the rest.
 * ------------------------------------------------------------------------------------------------------- */

enum { MC_CONV_IM2COL = 0, MC_CONV_WINOGRAD_2X2 = 1, MC_CONV_WINOGRAD_4X4 = 2, MC_CONV_DIRECT = 3, MC_CONV_IM2ROW = 4 };

typedef struct {
    int n, c, h, w;       /* input batch and per-image shape */
    int o, kh, kw;        /* output channels and kernel size */
    int stride, pad;
    int oh, ow;           /* output size: fill with mc_conv2d_shape_make */
    int chunk;            /* images per GEMM (1 ... n) */
    int algorithm;        /* MC_CONV_IM2COL, MC_CONV_IM2ROW, MC_CONV_WINOGRAD_2X2, MC_CONV_WINOGRAD_4X4 or MC_CONV_DIRECT */
} mc_conv2d_shape;

/* Fills oh/ow, the algorithm and its default chunk; returns 0, or -1 if the geometry gives an empty output. */
int mc_conv2d_shape_make(mc_conv2d_shape *s, int n, int c, int h, int w, int o, int kh, int kw,
                         int stride, int pad);
/* Switches a made shape to `algorithm` with that algorithm's default chunk; -1 (shape unchanged) if the
 * geometry does not allow it. */
int mc_conv2d_shape_set_algorithm(mc_conv2d_shape *s, int algorithm);
size_t mc_conv2d_workspace_size(const mc_conv2d_shape *s);

/* col[C*KH*KW, cols] (column offset col0, row stride cols) from one image x [C, H, W]. */
void mc_im2col(const mc_conv2d_shape *s, const float *x, float *col, int cols, int col0);
/* x [C, H, W] += the columns of col (the adjoint of mc_im2col). */
void mc_col2im(const mc_conv2d_shape *s, const float *col, int cols, int col0, float *x);

void mc_conv2d_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b,
                       float *y, float *ws);

/* dx (may be NULL: skipped, as for a network's input) = conv-transpose(dy, W); dW = corr(dy, x);
 * db = sum over N, OH, OW of dy. dW and db are overwritten. */
void mc_conv2d_backward(const mc_conv2d_shape *s, const float *x, const float *W, const float *dy,
                        float *dx, float *dW, float *db, float *ws);

/* Ry = conv(Rx, W) + conv(x, VW) + Vb.  Rx may be NULL. */
void mc_conv2d_rforward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                        const float *VW, const float *Vb, float *Ry, float *ws);

/* Rdx (may be NULL) = convT(Rdy, W) + convT(dy, VW); RdW = corr(Rdy, x) + corr(dy, Rx); Rdb = sum Rdy.
 * Rx may be NULL. */
void mc_conv2d_rbackward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                         const float *VW, const float *dy, const float *Rdy,
                         float *Rdx, float *RdW, float *Rdb, float *ws);

/* The Winograd algorithm's parts (winograd.c), called through the mc_conv2d_* functions above; they leave
 * the bias gradients to them. */
int mc_winograd_applies(const mc_conv2d_shape *s);
int mc_winograd_chunk(const mc_conv2d_shape *s);
/* Output tiles per image (at the shape's tile size). */
size_t mc_winograd_tiles(const mc_conv2d_shape *s);
/* MC_CONV_WINOGRAD_4X4 or _2X2: the tile size that needs fewer multiplies for the shape's geometry. */
int mc_winograd_tile_size(const mc_conv2d_shape *s);
size_t mc_winograd_workspace_size(const mc_conv2d_shape *s);
void mc_winograd_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b, float *y,
                         float *ws);
void mc_winograd_backward(const mc_conv2d_shape *s, const float *x, const float *W, const float *dy, float *dx,
                          float *dW, float *ws);
void mc_winograd_rforward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                          const float *VW, const float *Vb, float *Ry, float *ws);
void mc_winograd_rbackward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                           const float *VW, const float *dy, const float *Rdy, float *Rdx, float *RdW,
                           float *ws);

/* The direct algorithm's parts (direct.c), called likewise; they sum the bias gradients (db, Rdb: may be
 * NULL) in the same pass as the weight gradients. */
int mc_direct_applies(const mc_conv2d_shape *s);
size_t mc_direct_workspace_size(const mc_conv2d_shape *s);
void mc_direct_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b, float *y,
                       float *ws);
void mc_direct_backward(const mc_conv2d_shape *s, const float *x, const float *W, const float *dy, float *dx,
                        float *dW, float *db, float *ws);
void mc_direct_rforward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                        const float *VW, const float *Vb, float *Ry, float *ws);
void mc_direct_rbackward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                         const float *VW, const float *dy, const float *Rdy, float *Rdx, float *RdW, float *Rdb,
                         float *ws);

/* ---------------------------------------------------------------------------------------------------------
 * Max pooling, k x k window, stride k, floor mode (pool.c).  x [N, C, H, W] -> y [N, C, H/k, W/k].
 * argmax [N, C, H/k, W/k] holds, per output, the flat index h*W + w of the winner in its input plane.
 * Ties go to the first element in row-major order. The pooling is piecewise linear, so its backward and
 * R-forms route through argmax: Ry = gather(Rx), dx = scatter(dy), Rdx = scatter(Rdy).
 * ------------------------------------------------------------------------------------------------------- */

void mc_maxpool_forward(int n, int c, int h, int w, int k, const float *x, float *y, int32_t *argmax);
/* dx [N,C,H,W] = scatter of dy through argmax (overwritten: zero where nothing routes). */
void mc_maxpool_backward(int n, int c, int h, int w, int k, const int32_t *argmax, const float *dy, float *dx);
/* Ry = Rx at argmax. */
void mc_maxpool_rforward(int n, int c, int h, int w, int k, const int32_t *argmax, const float *Rx, float *Ry);
/* Rdx = scatter of Rdy: the same linear map as the backward pass. */
static inline void mc_maxpool_rbackward(int n, int c, int h, int w, int k, const int32_t *argmax,
                                        const float *Rdy, float *Rdx) {
    mc_maxpool_backward(n, c, h, w, k, argmax, Rdy, Rdx);
}

/* ---------------------------------------------------------------------------------------------------------
 * Activations (activation.c), elementwise over `count` floats.
 * ------------------------------------------------------------------------------------------------------- */

void mc_relu_forward(size_t count, const float *x, float *y);
/* dx = dy * [y > 0]. With the same mask: Ry = Rx * [y > 0] and Rdx = Rdy * [y > 0] (ReLU'' = 0 a.e.). */
void mc_relu_backward(size_t count, const float *y, const float *dy, float *dx);
static inline void mc_relu_rforward(size_t count, const float *y, const float *Rx, float *Ry) {
    mc_relu_backward(count, y, Rx, Ry);
}
static inline void mc_relu_rbackward(size_t count, const float *y, const float *Rdy, float *Rdx) {
    mc_relu_backward(count, y, Rdy, Rdx);
}

void mc_tanh_forward(size_t count, const float *x, float *y);
/* dx = dy * (1 - y^2). Also the R-forward: Ry = Rx * (1 - y^2). */
void mc_tanh_backward(size_t count, const float *y, const float *dy, float *dx);
static inline void mc_tanh_rforward(size_t count, const float *y, const float *Rx, float *Ry) {
    mc_tanh_backward(count, y, Rx, Ry);
}
/* Rdx = Rdy * (1 - y^2) - 2 y Ry dy. */
void mc_tanh_rbackward(size_t count, const float *y, const float *Ry, const float *dy, const float *Rdy,
                       float *Rdx);

/* LeakyReLU with negative-side slope `slope` > 0: y = x for x > 0, slope * x otherwise. Backward, R-forward
 * and R-backward apply the same mask to dy, Rx and Rdy (its second derivative is zero almost everywhere);
 * y > 0 exactly where x > 0, so the mask is read from y. */
void mc_leaky_relu_forward(size_t count, float slope, const float *x, float *y);
void mc_leaky_relu_backward(size_t count, float slope, const float *y, const float *dy, float *dx);

/* The logistic sigmoid, y = 1 / (1 + exp(-x)). dx = dy * y (1 - y); also the R-forward, Ry = Rx * y (1 - y).
 * Rdx = Rdy * y (1 - y) + dy * (1 - 2y) * Ry. */
void mc_sigmoid_forward(size_t count, const float *x, float *y);
void mc_sigmoid_backward(size_t count, const float *y, const float *dy, float *dx);
void mc_sigmoid_rbackward(size_t count, const float *y, const float *Ry, const float *dy, const float *Rdy,
                          float *Rdx);

/* ---------------------------------------------------------------------------------------------------------
 * Row-wise normalisations (rowwise.c) of x [rows, n], one feature vector per row.
 * Softmax: y = exp(x) / sum exp(x). dx = y (dy - y.dy); R-forward the same with Rx for dy;
 *   Rdx = Ry (dy - y.dy) + y (Rdy - Ry.dy - y.Rdy).
 * L2 normalisation: y = x / ||x||, ||x|| = sqrt(sum x^2 + MC_L2_EPSILON). dx = (dy - y (y.dy)) / ||x||, and the
 *   R-forward the same with Rx (the Jacobian is symmetric); Rdx = (Rdy - Ry (y.dy) - y (Ry.dy + y.Rdy)) / ||x||
 *   - dx (y.Rx) / ||x||, with Rx NULL for a model's input (then y.Rx = 0). */
#define MC_L2_EPSILON 1e-12
void mc_softmax_forward(int rows, int n, const float *x, float *y);
void mc_softmax_backward(int rows, int n, const float *y, const float *dy, float *dx);
void mc_softmax_rbackward(int rows, int n, const float *y, const float *Ry, const float *dy, const float *Rdy,
                          float *Rdx);
void mc_l2normalize_forward(int rows, int n, const float *x, float *y);
void mc_l2normalize_backward(int rows, int n, const float *x, const float *y, const float *dy, float *dx);
void mc_l2normalize_rforward(int rows, int n, const float *x, const float *y, const float *Rx, float *Ry);
void mc_l2normalize_rbackward(int rows, int n, const float *x, const float *y, const float *Rx, const float *Ry,
                              const float *dy, const float *Rdy, float *Rdx);

/* ---------------------------------------------------------------------------------------------------------
 * Operations of several activations (elementwise.c, matmul.c): the multi-input nodes of a model graph
 * ------------------------------------------------------------------------------------------------------- */

/* y[n] = sum_k c[k] x[k]; a NULL x[k] is a zero tensor. Its backward is dx_k = c_k dy (mc_scale), its R-form the
 * same sum over the Rx_k. */
void mc_weighted_sum(size_t n, int count, const float *const *x, const float *c, float *y);
/* y[n] = c x. */
void mc_scale(size_t n, float c, const float *x, float *y);
/* y = a * b elementwise. da = dy b, db = dy a (either may be NULL); Ry = Ra b + a Rb (Ra, Rb may be NULL);
 * Rda = Rdy b + dy Rb, Rdb = Rdy a + dy Ra. */
void mc_multiply_forward(size_t n, const float *a, const float *b, float *y);
void mc_multiply_backward(size_t n, const float *a, const float *b, const float *dy, float *da, float *db);
void mc_multiply_rforward(size_t n, const float *a, const float *Ra, const float *b, const float *Rb, float *Ry);
void mc_multiply_rbackward(size_t n, const float *a, const float *Ra, const float *b, const float *Rb,
                           const float *dy, const float *Rdy, float *Rda, float *Rdb);
/* Copies `rows` blocks of n floats from src (row stride src_stride) to dst (row stride dst_stride): a slice or
 * one part of a concatenation along the leading axis of each sample, and their backward and R passes. */
void mc_copy_blocks(int rows, int n, const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride);

/* The product of two activations per sample, C = op(A) op(B), op(A) [m,k], op(B) [k,n], C [m,n]; ta/tb = 1
 * means the operand is stored transposed (A [k,m], B [n,k]). Samples are contiguous: A is [batch, m*k], etc.
 * Backward: d op(A) = dC op(B)^T, d op(B) = op(A)^T dC (dA, dB may be NULL). R-forward: RC = op(RA) op(B) +
 * op(A) op(RB) (RA, RB may be NULL). R-backward: RdA from RdC op(B)^T + dC op(RB)^T, RdB from
 * op(A)^T RdC + op(RA)^T dC. */
void mc_matmul_forward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *B, float *C);
void mc_matmul_backward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *B,
                        const float *dC, float *dA, float *dB);
void mc_matmul_rforward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *RA,
                        const float *B, const float *RB, float *RC);
void mc_matmul_rbackward(int batch, int ta, int tb, int m, int n, int k, const float *A, const float *RA,
                         const float *B, const float *RB, const float *dC, const float *RdC, float *RdA,
                         float *RdB);

/* The LSTM cell, fused (lstm.c). Per sample: z [4H], the gates' pre-activations in the order input, forget,
 * cell, output; c [H], the previous cell state; y [2H] = (h', c') with i, f, o = sigmoid, g = tanh of the
 * gates, c' = f c + i g, h' = o tanh(c'). Backward: dz and dc (either may be NULL) from dy = (dh', dc').
 * The forward pass keeps (i, f, g, o, tanh c') [5H] per sample in `saved`, which the other passes read instead
 * of z. R-forms: Rz and Rc may be NULL (zero); the R-backward reads Ry (its c' part) from the R-forward. */
void mc_lstm_cell_forward(int n, int h, const float *z, const float *c, float *y, float *saved);
void mc_lstm_cell_backward(int n, int h, const float *saved, const float *c, const float *y, const float *dy, float *dz,
                           float *dc);
void mc_lstm_cell_rforward(int n, int h, const float *saved, const float *Rz, const float *c, const float *Rc,
                           const float *y, float *Ry);
void mc_lstm_cell_rbackward(int n, int h, const float *saved, const float *Rz, const float *c, const float *Rc,
                            const float *y, const float *Ry, const float *dy, const float *Rdy, float *Rdz,
                            float *Rdc);

/* Global pooling (pool.c) of `planes` planes of `size` values each: y[p] = scale * sum of plane p (scale 1/size:
 * the mean; 1: the sum). Linear, so the R-forward is the forward of Rx and the R-backward the backward of Rdy:
 * dx = scale * dy[p] over plane p. */
void mc_global_pool_forward(int planes, int size, float scale, const float *x, float *y);
void mc_global_pool_backward(int planes, int size, float scale, const float *dy, float *dx);

/* ---------------------------------------------------------------------------------------------------------
 * Batch normalisation (batchnorm.c) over x viewed as [N, C, S]: S = H*W for images, S = 1 for features.
 * Per channel c, over the N*S values:
 *   training ("transductive", as MAML uses it): mu, var = batch mean and biased variance,
 *       invstd = 1/sqrt(var + eps), xhat = (x - mu) * invstd, y = gamma * xhat + beta.
 *     Its derivatives go through mu and var: they are functions of the whole batch.
 *   inference: the same with given running mean / variance in place of the batch statistics.
 * The training passes save per-channel numbers only (mean, invstd; for the R-passes mean(Rx) and
 * mean(xhat * Rx)) and recompute xhat = (x - mean) * invstd, and Rxhat from Rx, from the x and Rx they are
 * given again: the caller keeps those unchanged between the passes.
 * Every function works on the channels c0 <= ch < c1 of the C (0, C for all) and leaves the others'
 * outputs untouched: channels are independent, so callers may run disjoint ranges concurrently.
 * ------------------------------------------------------------------------------------------------------- */

void mc_batchnorm_forward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                          const float *beta, float *y, float *mean, float *invstd);

/* running = (1 - momentum) * running + momentum * batch statistic (unbiased variance), from x. */
void mc_batchnorm_update_running(int n, int c, int s, int c0, int c1, float momentum, const float *x,
                                 float *running_mean, float *running_var);

/* dx (may be NULL) = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = gamma * dy;
 * dgamma = sum dy * xhat; dbeta = sum dy (both overwritten). mean and invstd as the forward pass saved them. */
void mc_batchnorm_backward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *dy, float *dx, float *dgamma, float *dbeta);

/* Rxhat = invstd * (Rx - mean(Rx) - xhat * mean(xhat * Rx)), Rinvstd = -invstd^2 * mean(xhat * Rx),
 * Ry = gamma * Rxhat + Vgamma * xhat + Vbeta.  Rx may be NULL (then Rxhat = 0, Rinvstd = 0).
 * Saves Rx_mean = mean(Rx) and xhat_Rx_mean = mean(xhat * Rx) [C] for mc_batchnorm_rbackward. */
void mc_batchnorm_rforward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *Rx, const float *Vgamma, const float *Vbeta,
                           float *Ry, float *Rx_mean, float *xhat_Rx_mean);

/* The R-form of mc_batchnorm_backward, every batch-statistics term included:
 * Rdxhat = gamma * Rdy + Vgamma * dy,
 * Rdx = Rinvstd * (dxhat - mean(dxhat) - xhat * mean(dxhat*xhat))
 *     + invstd * (Rdxhat - mean(Rdxhat) - Rxhat * mean(dxhat*xhat) - xhat * mean(Rdxhat*xhat + dxhat*Rxhat)),
 * Rdgamma = sum(Rdy * xhat + dy * Rxhat), Rdbeta = sum Rdy.  Rdx and Rx may be NULL (Rx as in rforward). */
void mc_batchnorm_rbackward(int n, int c, int s, int c0, int c1, const float *x, const float *mean, const float *invstd,
                            const float *gamma, const float *Vgamma, const float *Rx, const float *Rx_mean,
                            const float *xhat_Rx_mean, const float *dy, const float *Rdy,
                            float *Rdx, float *Rdgamma, float *Rdbeta);

/* Inference with running statistics: a per-channel affine map y = gamma * (x - mean) * r + beta,
 * r = 1/sqrt(var + eps). */
void mc_batchnorm_inference_forward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                                    const float *beta, const float *mean, const float *var, float *y);
/* dx (may be NULL) = gamma * r * dy; dgamma = sum dy (x - mean) r; dbeta = sum dy. */
void mc_batchnorm_inference_backward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                                     const float *mean, const float *var, const float *dy,
                                     float *dx, float *dgamma, float *dbeta);
/* Ry = gamma r Rx + Vgamma (x - mean) r + Vbeta (Rx may be NULL). */
void mc_batchnorm_inference_rforward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *Rx,
                                     const float *gamma, const float *Vgamma, const float *Vbeta,
                                     const float *mean, const float *var, float *Ry);
/* Rdx (may be NULL) = r (gamma Rdy + Vgamma dy); Rdgamma = sum Rdy (x - mean) r + dy Rx r; Rdbeta = sum Rdy. */
void mc_batchnorm_inference_rbackward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *Rx,
                                      const float *gamma, const float *Vgamma, const float *mean,
                                      const float *var, const float *dy, const float *Rdy,
                                      float *Rdx, float *Rdgamma, float *Rdbeta);

/* ---------------------------------------------------------------------------------------------------------
 * Batch normalisation, ReLU and 2x2 max-pooling fused (bn_relu_pool.c): y = maxpool2(relu(batchnorm(x))), which
 * is relu(maxpool2(batchnorm(x))), with batch statistics, x [N, C, H, W] -> y [N, C, H/2, W/2] (floor mode), the passes of the three in a row
 * without their intermediate tensors. argmax [N, C, H/2, W/2] holds the flat index h*W + w of each window's
 * winner in its plane, or -1 where the window's maximum is not positive (ReLU passes nothing back). mean,
 * invstd, Rx_mean and xhat_Rx_mean [C] are batch-norm's (see above). Results equal the unfused passes'
 * (mc_batchnorm_*, mc_relu_*, mc_maxpool_*): the forward and R-forward to the bit, the backward and
 * R-backward up to the order of their sums. Channels c0 <= ch < c1, as batch-norm's.
 * ------------------------------------------------------------------------------------------------------- */

void mc_bn_relu_pool_forward(int n, int c, int h, int w, int c0, int c1, float eps, const float *x,
                             const float *gamma, const float *beta, float *y, int32_t *argmax,
                             float *mean, float *invstd);
/* dx (may be NULL) [N, C, H, W], dgamma, dbeta from dy [N, C, H/2, W/2]. */
void mc_bn_relu_pool_backward(int n, int c, int h, int w, int c0, int c1, const float *x, const float *mean,
                              const float *invstd, const float *gamma, const int32_t *argmax, const float *dy,
                              float *dx, float *dgamma, float *dbeta);
/* Ry [N, C, H/2, W/2] from Rx (may be NULL) and the direction's Vgamma, Vbeta; saves Rx_mean, xhat_Rx_mean. */
void mc_bn_relu_pool_rforward(int n, int c, int h, int w, int c0, int c1, const float *x, const float *mean,
                              const float *invstd, const float *gamma, const int32_t *argmax, const float *Rx,
                              const float *Vgamma, const float *Vbeta, float *Ry, float *Rx_mean,
                              float *xhat_Rx_mean);
/* Rdx (may be NULL) [N, C, H, W], Rdgamma, Rdbeta from dy and Rdy [N, C, H/2, W/2] (Rx may be NULL). */
void mc_bn_relu_pool_rbackward(int n, int c, int h, int w, int c0, int c1, const float *x, const float *mean,
                               const float *invstd, const float *gamma, const float *Vgamma,
                               const int32_t *argmax, const float *Rx, const float *Rx_mean,
                               const float *xhat_Rx_mean, const float *dy, const float *Rdy,
                               float *Rdx, float *Rdgamma, float *Rdbeta);

/* ---------------------------------------------------------------------------------------------------------
 * A network's input layer fused (conv_bn_relu_pool.c): the direct convolution (MC_CONV_DIRECT: the shape must
 * have that algorithm, and at most 512 taps C * KH * KW: mc_conv_bn_relu_pool_applies) of the input
 * x [N, C, H, W] by W [O, C, KH, KW] and the bias b [O], then batch-norm with batch statistics, ReLU and 2x2
 * max-pooling as mc_bn_relu_pool_* -> y [N, O, OH/2, OW/2], the convolution's output never stored. Channels
 * c0 <= ch < c1 of O; argmax, mean and invstd [O] as mc_bn_relu_pool_*'s. The forward pass equals the unfused
 * passes to the bit (mc_direct_forward then mc_bn_relu_pool_forward, and mc_batchnorm_update_running); the
 * backward pass equals mc_bn_relu_pool_backward then the dW and db of mc_direct_backward up to rounding: it
 * takes its sums through the Gram matrix of the input's patches instead of the convolution's output. No input
 * gradient: the input is data. The R-forms are the unfused kernels' on the convolution's output, stored for them.
 * ------------------------------------------------------------------------------------------------------- */
/* 1 if the step can run the shape: the direct algorithm, and at most 512 taps. */
int mc_conv_bn_relu_pool_applies(const mc_conv2d_shape *s);
/* Floats of workspace for one call (any channel range). */
size_t mc_conv_bn_relu_pool_workspace_size(const mc_conv2d_shape *s);
/* y, argmax, mean, invstd; with running_mean and running_var (NULL in transductive mode), also moves them
 * towards the batch's statistics by momentum. */
void mc_conv_bn_relu_pool_forward(const mc_conv2d_shape *s, int c0, int c1, float eps, float momentum,
                                  const float *x, const float *W, const float *b, const float *gamma,
                                  const float *beta, float *y, int32_t *argmax, float *mean, float *invstd,
                                  float *running_mean, float *running_var, float *ws);
/* dW [O, C, KH, KW], db [O], dgamma, dbeta (channels c0 ..< c1 of each) from dy [N, O, OH/2, OW/2]. */
void mc_conv_bn_relu_pool_backward(const mc_conv2d_shape *s, int c0, int c1, const float *x, const float *W,
                                   const float *b, const float *mean, const float *invstd, const float *gamma,
                                   const int32_t *argmax, const float *dy, float *dW, float *db, float *dgamma,
                                   float *dbeta, float *ws);

/* ---------------------------------------------------------------------------------------------------------
 * Losses (loss.c), averaged over the batch.
 * ------------------------------------------------------------------------------------------------------- */

/* Softmax cross-entropy over logits z [N, K] with labels in [0, K): L = -(1/N) sum log softmax(z)[label].
 * probs [N, K] receives softmax(z) (kept for the gradient and R-form). Returns L; correct (may be NULL)
 * receives the number of rows whose arg-max is the label. */
double mc_softmax_xent_forward(int n, int k, const float *z, const int32_t *labels, float *probs,
                               int *correct);
/* dz = (probs - onehot(label)) / N. */
void mc_softmax_xent_backward(int n, int k, const float *probs, const int32_t *labels, float *dz);
/* Rdz = probs * (Rz - sum_j probs_j Rz_j) / N: the softmax Hessian applied to Rz. */
void mc_softmax_xent_rbackward(int n, int k, const float *probs, const float *Rz, float *Rdz);

/* Mean squared error over `count` values: L = (1/count) sum (z - t)^2; dz = 2 (z - t) / count;
 * its R-form Rdz = 2 Rz / count. */
double mc_mse_forward(size_t count, const float *z, const float *t);
void mc_mse_backward(size_t count, const float *z, const float *t, float *dz);
void mc_mse_rbackward(size_t count, const float *Rz, float *Rdz);

/* ---------------------------------------------------------------------------------------------------------
 * Metric losses of few-shot episodes (metric.c). z [ns + nq, d] holds the embeddings of one episode, the ns
 * support rows first, then the nq query rows; labels [ns + nq] are classes in [0, ways) and every class has at
 * least one support row. The loss is averaged over the queries; correct (may be NULL) receives the number of
 * queries whose predicted class is their label. With dz non-NULL, dz [ns + nq, d] receives dL/dz for support
 * and query rows alike. Metric learners are first-order (no R-forms). scratch is caller-owned, sizes below.
 * --------------------------------------------------------------------------------------------------------- */

/* Prototypical Networks (Snell et al. 2017): prototype c_k = mean of the support rows of class k, logits
 * -||q - c_k||^2, softmax cross-entropy. scratch: ways * d + ways + nq * ways doubles. */
double mc_proto_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, float *dz,
                     double *scratch, int *correct);
static inline size_t mc_proto_scratch(int nq, int d, int ways) {
    return (size_t)ways * d + ways + (size_t)nq * ways;
}

/* Matching Networks (Vinyals et al. 2016) without full-context embeddings: attention a(q, s) = softmax over
 * the support of scale * cos(q, s), with norms sqrt(|x|^2 + 1e-8); class probability p_k = sum of a(q, s)
 * over the support rows of class k; L = -mean log p_label. With dz, dscale (may be NULL) receives dL/dscale.
 * scratch: (ns + nq) + nq * ns + nq * ways doubles. */
double mc_matching_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, float scale,
                        float *dz, double *dscale, double *scratch, int *correct);
static inline size_t mc_matching_scratch(int ns, int nq, int ways) {
    return (size_t)ns + nq + (size_t)nq * ns + (size_t)nq * ways;
}

/* R2-D2 (Bertinetto et al. 2019): ridge regression from the support rows (with a bias column, rows and one-hot
 * targets scaled by 1/sqrt(ns)) to one-hot targets, solved in Woodbury form — an ns x ns Cholesky system
 * (LAPACKE, in double) — and the query logits scale * (zq W + b) + bias through softmax cross-entropy. With dz,
 * dz receives dL/dz through the solve, and dextra (may be NULL) [3] receives dL/dlambda, dL/dscale and
 * dL/dbias. Returns NaN if the system is not positive definite (lambda <= 0, non-finite embeddings).
 * scratch: mc_ridge_scratch doubles. */
double mc_ridge_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, float lambda, float scale,
                     float bias, float *dz, double *dextra, double *scratch, int *correct);
static inline size_t mc_ridge_scratch(int ns, int nq, int d, int ways) {
    const size_t e = (size_t)d + 1;
    return 2 * (size_t)ns * e + 2 * (size_t)ns * ns + 2 * (size_t)ns * ways + 2 * e * ways + (size_t)nq * e
        + 2 * (size_t)nq * ways;
}

/* Siamese networks (Koch et al. 2015): every (query, support) pair scored a = w . |q - s| + b (w [d]), its
 * probability of being the same class sigmoid(a); binary cross-entropy with the same-class and the
 * different-class pairs each weighted to half of the loss. A query's prediction is the label of its
 * highest-scoring support row. With dz, dw [d] and db receive dL/dw and dL/db (doubles). scores (may be NULL)
 * [nq, ns] receives every pair's a. */
double mc_siamese_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, const float *w, float b,
                       float *dz, double *dw, double *db, double *scores, int *correct);

/* ---------------------------------------------------------------------------------------------------------
 * Dense symmetric solves (linsolve.c), in double.
 * --------------------------------------------------------------------------------------------------------- */

/* Solves A X = B in place for symmetric (possibly indefinite) A [n, n] (row-major; its lower triangle is read and
 * overwritten by the factorisation) and B [n, nrhs] (row-major; receives X), by LAPACKE's dsysv (Bunch-Kaufman).
 * Returns 0, or LAPACK's info (> 0: A is singular), or -1 if out of memory. */
int mc_symmetric_solve(int n, int nrhs, double *a, double *b);

/* ---------------------------------------------------------------------------------------------------------
 * Optimisers (optimizer.c), elementwise over `count` parameters.
 * ------------------------------------------------------------------------------------------------------- */

/* One Adam step with the bias corrections folded into rate and epsilon by the caller:
 * m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2,  p -= rate * m / (sqrt(v) + epsilon),
 * with m and v stored as 0 where their magnitude is below FLT_MIN (subnormal). */
void mc_adam_step(size_t count, float *p, float *m, float *v, const float *g,
                  float beta1, float beta2, float rate, float epsilon);

#ifdef __cplusplus
}
#endif
/* 1 if the kernels compiled as AVX + FMA clones run their FMA versions in this process (the CPU has FMA and
 * the build did not define MC_NO_CLONES), else 0. Fused multiply-adds round differently: results that are
 * bit-identical across machines with the same answer here may differ in the last bits from those without. */
int mc_fma_clones(void);

#endif

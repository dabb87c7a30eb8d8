/* Elementwise operations of several activations of the same shape: a weighted sum and a product, with their
 * backward and R-operator passes; and strided block copies (concatenation and slicing along the leading
 * axis of each sample). */
#include "ckernels.h"
#include <string.h>

void mc_weighted_sum(size_t n, int count, const float *const *x, const float *c, float *y) {
    memset(y, 0, n * sizeof(float));
    for (int k = 0; k < count; k++) {
        if (!x[k]) continue;
        const float ck = c[k], *xk = x[k];
        for (size_t i = 0; i < n; i++) y[i] += ck * xk[i];
    }
}

void mc_scale(size_t n, float c, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = c * x[i];
}

void mc_multiply_forward(size_t n, const float *a, const float *b, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

void mc_multiply_backward(size_t n, const float *a, const float *b, const float *dy, float *da, float *db) {
    if (da) for (size_t i = 0; i < n; i++) da[i] = dy[i] * b[i];
    if (db) for (size_t i = 0; i < n; i++) db[i] = dy[i] * a[i];
}

void mc_multiply_rforward(size_t n, const float *a, const float *Ra, const float *b, const float *Rb, float *Ry) {
    if (Ra && Rb) for (size_t i = 0; i < n; i++) Ry[i] = Ra[i] * b[i] + a[i] * Rb[i];
    else if (Ra) for (size_t i = 0; i < n; i++) Ry[i] = Ra[i] * b[i];
    else if (Rb) for (size_t i = 0; i < n; i++) Ry[i] = a[i] * Rb[i];
    else memset(Ry, 0, n * sizeof(float));
}

void mc_multiply_rbackward(size_t n, const float *a, const float *Ra, const float *b, const float *Rb,
                           const float *dy, const float *Rdy, float *Rda, float *Rdb) {
    if (Rda) for (size_t i = 0; i < n; i++) Rda[i] = Rdy[i] * b[i] + (Rb ? dy[i] * Rb[i] : 0.0f);
    if (Rdb) for (size_t i = 0; i < n; i++) Rdb[i] = Rdy[i] * a[i] + (Ra ? dy[i] * Ra[i] : 0.0f);
}

void mc_copy_blocks(int rows, int n, const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride) {
    for (int r = 0; r < rows; r++) memcpy(dst + r * dst_stride, src + r * src_stride, (size_t)n * sizeof(float));
}

/* The direct convolution's internals (direct.c): the padded planes, the weight table and the per-image
 * correlation, shared with the fused input layer (conv_bn_relu_pool.c) so that its forward pass computes the
 * very values the direct kernel does. Internal to CKernels. */
#ifndef MC_DIRECT_H
#define MC_DIRECT_H

#include "ckernels.h"
#include "vec8.h"
#include <string.h>

enum {
    LANES = 8,
    BLOCK = 4,     /* output channels sharing each load of an input row in the forward pass */
    MAX_TAPS = 49  /* KH*KW up to 7x7 */
};

/* Zero-padded planes: `top` rows and `left` columns of zeros before the values, zeros after them, and
 * LANES - 1 more columns so that a vector read at any output column stays inside its row. */
typedef struct { int rows, cols, top, left; size_t plane; } padding;

static inline padding input_padding(const mc_conv2d_shape *s) {
    padding p = {s->h + 2 * s->pad, s->w + 2 * s->pad + LANES - 1, s->pad, s->pad, 0};
    p.plane = (size_t)p.rows * p.cols;
    return p;
}

static inline size_t blocks(const mc_conv2d_shape *s) { return ((size_t)s->o + BLOCK - 1) / BLOCK; }
static inline size_t taps(const mc_conv2d_shape *s) { return (size_t)s->c * s->kh * s->kw; }

/* The values of `planes` h x w planes of x into buf's padded planes, whose zero borders (set once per
 * batch by the caller) they leave alone. */
static inline void pad_planes(const float *x, int planes, int h, int w, padding p, float *buf) {
    for (int c = 0; c < planes; c++)
        for (int r = 0; r < h; r++)
            memcpy(buf + c * p.plane + (size_t)(r + p.top) * p.cols + p.left, x + ((size_t)c * h + r) * w,
                   sizeof(float) * w);
}

MC_INLINE v8 broadcast(float a) { return (v8){a, a, a, a, a, a, a, a}; }

/* table[block][tap][b] = W[block * BLOCK + b][tap] (zero for the missing channels of the last block). */
static inline void weight_table(const mc_conv2d_shape *s, const float *W, float *table) {
    const size_t T = taps(s);
    memset(table, 0, sizeof(float) * blocks(s) * T * BLOCK);
    for (int o = 0; o < s->o; o++)
        for (size_t t = 0; t < T; t++) table[((size_t)(o / BLOCK) * T + t) * BLOCK + o % BLOCK] = W[o * T + t];
}

/* ---- per image, on padded planes; KH and KW are constants where the caller passes literals ---- */

/* The first output column of each vector along a row: 0, 8, 16, ... and, for a row of at least LANES
 * columns that does not divide into vectors, a last vector ending at the row's end (overlapping the one
 * before it: the forward pass recomputes those outputs, the weight gradient masks them out). A row shorter
 * than a vector takes one partial vector. */
MC_INLINE int vector_start(int ox, int ow) { return ox + LANES <= ow || ow < LANES ? ox : ow - LANES; }

/* y (O planes, OH x OW) = (accumulate ? y : bias or 0) + the correlation of xp with the filters in table. */
MC_INLINE void correlate(const mc_conv2d_shape *s, int kh, int kw, const float *xp, padding p,
                         const float *table, const float *bias, int accumulate, float *y) {
    const int OW = s->ow, OH = s->oh, O = s->o, C = s->c;
    const size_t T = taps(s), OHW = (size_t)OH * OW;
    /* Overlapping vectors would add their shared outputs twice when accumulating. */
    const int overlap = !accumulate && OW >= LANES;
    for (int o0 = 0; o0 < O; o0 += BLOCK) {
        const int ob = O - o0 < BLOCK ? O - o0 : BLOCK;
        const float *wt = table + (size_t)(o0 / BLOCK) * T * BLOCK;
        v8 init[BLOCK];
        for (int b = 0; b < BLOCK; b++) init[b] = broadcast(bias && b < ob ? bias[o0 + b] : 0.0f);
        for (int oy = 0; oy < OH; oy++)
            for (int ox0 = 0; ox0 < OW; ox0 += LANES) {
                const int ox = overlap ? vector_start(ox0, OW) : ox0;
                const int lanes = OW - ox < LANES ? OW - ox : LANES;
                float *out = y + (size_t)o0 * OHW + (size_t)oy * OW + ox;
                v8 acc[BLOCK];
                for (int b = 0; b < BLOCK; b++)
                    acc[b] = accumulate && b < ob ? load_lanes(out + b * OHW, lanes) : init[b];
                for (int c = 0; c < C; c++)
                    for (int ki = 0; ki < kh; ki++) {
                        const float *row = xp + c * p.plane + (size_t)(oy + ki) * p.cols + ox;
                        const float *w = wt + ((size_t)(c * kh + ki) * kw) * BLOCK;
                        for (int kj = 0; kj < kw; kj++) {
                            const v8 xv = load8(row + kj);
                            for (int b = 0; b < BLOCK; b++) acc[b] += broadcast(w[kj * BLOCK + b]) * xv;
                        }
                    }
                if (lanes == LANES && ob == BLOCK)
                    for (int b = 0; b < BLOCK; b++) store8(out + b * OHW, acc[b]);
                else
                    for (int b = 0; b < ob; b++) store_lanes(out + b * OHW, acc[b], lanes);
            }
    }
}

#endif

/* 3x3, stride-1, pad-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016):
 * every 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A for its 4x4 input patch d, so the 16 products of
 * a tile's transformed entries replace 36 multiply-adds, and across channels they become 16 GEMMs
 * M[xi] = V[xi] U[xi]^T with U [O, C] (filters) and V [tiles, C] (inputs): 2.25x fewer multiplies than
 * im2col. The backward passes are this map's exact adjoints (weights: dU = dM^T V, inputs: dV = dM U, then the
 * transposed transforms), so gradients, R-forms and meta-gradients stay the derivatives of what the
 * forward pass computes. Tiles p = (image * TH + ty) * TW + tx run over the chunk; a partial tile at an
 * odd output edge reads zero padding and its extra outputs are dropped. */
#include "ckernels.h"
#include "vec8.h"
#include <string.h>

/* Keep one chunk's transformed inputs and outputs near 2 MiB, where they stay in cache for the GEMMs. */
#define MC_WINOGRAD_TARGET ((size_t)512 << 10)

static int tiles_h(const mc_conv2d_shape *s) { return (s->oh + 1) / 2; }
static int tiles_w(const mc_conv2d_shape *s) { return (s->ow + 1) / 2; }
static size_t tiles(const mc_conv2d_shape *s) { return (size_t)tiles_h(s) * tiles_w(s); }
/* The zero-padded input plane every tile reads from: rows and columns -1 ... 2*T. */
static int pad_h(const mc_conv2d_shape *s) { return 2 * tiles_h(s) + 2; }
static int pad_w(const mc_conv2d_shape *s) { return 2 * tiles_w(s) + 2; }

int mc_winograd_applies(const mc_conv2d_shape *s) {
    return s->kh == 3 && s->kw == 3 && s->stride == 1 && s->pad == 1 && s->oh >= 2 && s->ow >= 2;
}

int mc_winograd_chunk(const mc_conv2d_shape *s) {
    size_t per_image = 16 * ((size_t)s->c + 2 * (size_t)s->o) * tiles(s);
    size_t chunk = per_image ? MC_WINOGRAD_TARGET / per_image : (size_t)s->n;
    if (chunk < 1) chunk = 1;
    if (chunk > (size_t)s->n) chunk = (size_t)s->n;
    return s->n > 0 ? (int)chunk : 1;
}

/* Rows between the 16 planes of V and M: the chunk's tiles, made odd so that the planes start at 16
 * different offsets modulo 4 KiB. (An even count, e.g. 80 or 160 tiles of 64 channels, puts all 16 planes
 * of a tile in the same cache sets, and the transforms, which touch all 16 at once, thrash them.) */
static size_t plane_rows(const mc_conv2d_shape *s) { return ((size_t)s->chunk * tiles(s)) | 1; }

size_t mc_winograd_workspace_size(const mc_conv2d_shape *s) {
    size_t P = plane_rows(s), OC = (size_t)s->o * s->c;
    return 3 * 16 * OC + 16 * ((size_t)s->c + 2 * (size_t)s->o) * P + 8 * (size_t)pad_h(s) * pad_w(s);
}

typedef struct { float *U, *U2, *dU, *V, *M1, *M2, *pad; size_t P; } workspace;

static workspace split(const mc_conv2d_shape *s, float *ws) {
    workspace w;
    size_t OC = (size_t)s->o * s->c;
    w.P = plane_rows(s);
    w.U = ws; w.U2 = w.U + 16 * OC; w.dU = w.U2 + 16 * OC;
    w.V = w.dU + 16 * OC;
    w.M1 = w.V + 16 * (size_t)s->c * w.P;
    w.M2 = w.M1 + 16 * (size_t)s->o * w.P;
    w.pad = w.M2 + 16 * (size_t)s->o * w.P;
    return w;
}

/* ---- the transforms on one tile, eight channels at a time ----
 * A v8 holds one entry of a 4x4 (or 2x2) tile for eight consecutive channels; transformed tiles are stored
 * channel-minor (V [16, tiles, C], M [16, tiles, O]), so each entry of eight channels is one contiguous
 * vector, and the images' NCHW planes are interleaved into (and out of) a small [rows, cols, 8] buffer. */

enum { LANES = 8 };

/* The first `lanes` channels (the last block of channels may be partial; the other lanes read 0). */
MC_INLINE v8 load_lanes(const float *p, int lanes) {
    if (lanes == LANES) return load8(p);
    v8 v = {0};
    memcpy(&v, p, sizeof(float) * lanes);
    return v;
}
MC_INLINE void store_lanes(float *p, v8 v, int lanes) {
    if (lanes == LANES) store8(p, v); else memcpy(p, &v, sizeof(float) * lanes);
}

/* buf[(r + off) * bw + col + off][l] = plane l (channel_stride apart) at (r, col), for l < lanes. */
static void interleave(const float *x, size_t channel_stride, int lanes, int h, int w, float *buf, int bw, int off) {
    for (int l = 0; l < lanes; l++)
        for (int r = 0; r < h; r++) {
            const float *src = x + l * channel_stride + (size_t)r * w;
            float *dst = buf + ((size_t)(r + off) * bw + off) * LANES + l;
            for (int col = 0; col < w; col++) dst[(size_t)col * LANES] = src[col];
        }
}

/* The inverse of interleave: the planes' h x w values from the buffer, overwriting them. */
static void deinterleave(const float *buf, int bw, int off, int lanes, int h, int w, float *x, size_t channel_stride) {
    for (int l = 0; l < lanes; l++)
        for (int r = 0; r < h; r++) {
            const float *src = buf + ((size_t)(r + off) * bw + off) * LANES + l;
            float *dst = x + l * channel_stride + (size_t)r * w;
            for (int col = 0; col < w; col++) dst[col] = src[(size_t)col * LANES];
        }
}

/* v = B^T d B for the 4x4 patch at d (row stride ld vectors). */
MC_INLINE void input_tile(const float *d, size_t ld, v8 v[16]) {
    v8 t[16];
    for (int j = 0; j < 4; j++) {
        const v8 d0 = load8(d + j * LANES), d1 = load8(d + (ld + j) * LANES);
        const v8 d2 = load8(d + (2 * ld + j) * LANES), d3 = load8(d + (3 * ld + j) * LANES);
        t[j] = d0 - d2; t[4 + j] = d1 + d2; t[8 + j] = d2 - d1; t[12 + j] = d1 - d3;
    }
    for (int i = 0; i < 4; i++) {
        const v8 *r = t + 4 * i;
        v[4 * i] = r[0] - r[2]; v[4 * i + 1] = r[1] + r[2]; v[4 * i + 2] = r[2] - r[1]; v[4 * i + 3] = r[1] - r[3];
    }
}

/* d += B v B^T (the adjoint of input_tile) */
MC_INLINE void input_tile_adjoint(const v8 v[16], float *d, size_t ld) {
    v8 t[16];
    for (int j = 0; j < 4; j++) {
        const v8 v0 = v[j], v1 = v[4 + j], v2 = v[8 + j], v3 = v[12 + j];
        t[j] = v0; t[4 + j] = v1 - v2 + v3; t[8 + j] = v1 + v2 - v0; t[12 + j] = -v3;
    }
    for (int i = 0; i < 4; i++) {
        const v8 *r = t + 4 * i;
        const v8 out[4] = {r[0], r[1] - r[2] + r[3], r[1] + r[2] - r[0], -r[3]};
        float *o = d + i * ld * LANES;
        for (int j = 0; j < 4; j++) store8(o + j * LANES, load8(o + j * LANES) + out[j]);
    }
}

/* y (2x2) = A^T m A */
MC_INLINE void output_tile(const v8 m[16], v8 y[4]) {
    v8 t[8];
    for (int j = 0; j < 4; j++) {
        t[j] = m[j] + m[4 + j] + m[8 + j];
        t[4 + j] = m[4 + j] - m[8 + j] - m[12 + j];
    }
    for (int i = 0; i < 2; i++) {
        const v8 *r = t + 4 * i;
        y[2 * i] = r[0] + r[1] + r[2]; y[2 * i + 1] = r[1] - r[2] - r[3];
    }
}

/* m (4x4) = A y A^T (the adjoint of output_tile) */
MC_INLINE void output_tile_adjoint(const v8 y[4], v8 m[16]) {
    v8 t[8];  /* A y: 4x2 */
    for (int j = 0; j < 2; j++) {
        const v8 y0 = y[j], y1 = y[2 + j];
        t[j] = y0; t[2 + j] = y0 + y1; t[4 + j] = y0 - y1; t[6 + j] = -y1;
    }
    for (int i = 0; i < 4; i++) {
        const v8 y0 = t[2 * i], y1 = t[2 * i + 1];
        m[4 * i] = y0; m[4 * i + 1] = y0 + y1; m[4 * i + 2] = y0 - y1; m[4 * i + 3] = -y1;
    }
}

/* The 16 values G g G^T of one 3x3 filter g. */
MC_INLINE void filter_tile(const float *g, float u[16]) {
    float t[12];  /* G g: 4x3 */
    for (int j = 0; j < 3; j++) {
        const float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
        t[j] = g0; t[3 + j] = 0.5f * (g0 + g1 + g2); t[6 + j] = 0.5f * (g0 - g1 + g2); t[9 + j] = g2;
    }
    for (int i = 0; i < 4; i++) {
        const float g0 = t[3 * i], g1 = t[3 * i + 1], g2 = t[3 * i + 2];
        u[4 * i] = g0; u[4 * i + 1] = 0.5f * (g0 + g1 + g2); u[4 * i + 2] = 0.5f * (g0 - g1 + g2); u[4 * i + 3] = g2;
    }
}

/* The 3x3 filter G^T u G (the adjoint of filter_tile). */
MC_INLINE void filter_tile_adjoint(const float u[16], float *g) {
    float t[12];  /* G^T u: 3x4 */
    for (int j = 0; j < 4; j++) {
        const float u0 = u[j], u1 = u[4 + j], u2 = u[8 + j], u3 = u[12 + j];
        t[j] = u0 + 0.5f * (u1 + u2); t[4 + j] = 0.5f * (u1 - u2); t[8 + j] = 0.5f * (u1 + u2) + u3;
    }
    for (int i = 0; i < 3; i++) {
        const float *r = t + 4 * i;
        g[3 * i] = r[0] + 0.5f * (r[1] + r[2]); g[3 * i + 1] = 0.5f * (r[1] - r[2]);
        g[3 * i + 2] = 0.5f * (r[1] + r[2]) + r[3];
    }
}

/* U[xi][o][c] = (G g G^T)[xi] for every filter g = W[o][c] (3x3). Eight filters at a time, so that each of
 * the 16 planes (OC floats apart: the same cache sets when OC is a power of two) gets one vector store
 * instead of eight scalar ones. */
static void filter_transform(const mc_conv2d_shape *s, const float *W, float *U) {
    const size_t OC = (size_t)s->o * s->c;
    size_t f = 0;
    for (; f + 8 <= OC; f += 8) {
        float u[8][16], plane[8];
        for (int k = 0; k < 8; k++) filter_tile(W + 9 * (f + k), u[k]);
        for (int xi = 0; xi < 16; xi++) {
            for (int k = 0; k < 8; k++) plane[k] = u[k][xi];
            store8(U + xi * OC + f, load8(plane));
        }
    }
    for (; f < OC; f++) {
        float u[16];
        filter_tile(W + 9 * f, u);
        for (int xi = 0; xi < 16; xi++) U[xi * OC + f] = u[xi];
    }
}

/* dW[o][c] = G^T dU[.][o][c] G (the adjoint of filter_transform), overwriting dW; eight filters at a time. */
static void filter_transform_adjoint(const mc_conv2d_shape *s, const float *dU, float *dW) {
    const size_t OC = (size_t)s->o * s->c;
    size_t f = 0;
    for (; f + 8 <= OC; f += 8) {
        float u[8][16], plane[8];
        for (int xi = 0; xi < 16; xi++) {
            store8(plane, load8(dU + xi * OC + f));
            for (int k = 0; k < 8; k++) u[k][xi] = plane[k];
        }
        for (int k = 0; k < 8; k++) filter_tile_adjoint(u[k], dW + 9 * (f + k));
    }
    for (; f < OC; f++) {
        float u[16];
        for (int xi = 0; xi < 16; xi++) u[xi] = dU[xi * OC + f];
        filter_tile_adjoint(u, dW + 9 * f);
    }
}

/* ---- the transforms over a chunk of images ---- */

/* V[xi][p][c] from the chunk's images of x (NCHW). */
static void inputs_transform(const mc_conv2d_shape *s, const float *x, int n0, int nb, float *V, size_t P,
                             float *buf) {
    const int TH = tiles_h(s), TW = tiles_w(s), PW = pad_w(s), C = s->c, HW = s->h * s->w;
    memset(buf, 0, sizeof(float) * LANES * pad_h(s) * PW);  /* the zero padding; interiors are rewritten */
    for (int i = 0; i < nb; i++)
        for (int c0 = 0; c0 < C; c0 += LANES) {
            const int lanes = C - c0 < LANES ? C - c0 : LANES;
            interleave(x + ((size_t)(n0 + i) * C + c0) * HW, HW, lanes, s->h, s->w, buf, PW, 1);
            for (int ty = 0; ty < TH; ty++)
                for (int tx = 0; tx < TW; tx++) {
                    v8 v[16];
                    input_tile(buf + ((size_t)(2 * ty) * PW + 2 * tx) * LANES, PW, v);
                    float *out = V + ((size_t)(i * TH + ty) * TW + tx) * C + c0;
                    for (int xi = 0; xi < 16; xi++) store_lanes(out + xi * P * C, v[xi], lanes);
                }
        }
}

/* The chunk's images of dx (NCHW) = the adjoint of inputs_transform applied to dV, overwriting them. */
static void inputs_transform_adjoint(const mc_conv2d_shape *s, const float *dV, size_t P, int n0, int nb,
                                     float *dx, float *buf) {
    const int TH = tiles_h(s), TW = tiles_w(s), PW = pad_w(s), C = s->c, HW = s->h * s->w;
    for (int i = 0; i < nb; i++)
        for (int c0 = 0; c0 < C; c0 += LANES) {
            const int lanes = C - c0 < LANES ? C - c0 : LANES;
            memset(buf, 0, sizeof(float) * LANES * pad_h(s) * PW);
            for (int ty = 0; ty < TH; ty++)
                for (int tx = 0; tx < TW; tx++) {
                    v8 v[16];
                    const float *in = dV + ((size_t)(i * TH + ty) * TW + tx) * C + c0;
                    for (int xi = 0; xi < 16; xi++) v[xi] = load_lanes(in + xi * P * C, lanes);
                    input_tile_adjoint(v, buf + ((size_t)(2 * ty) * PW + 2 * tx) * LANES, PW);
                }
            deinterleave(buf, PW, 1, lanes, s->h, s->w, dx + ((size_t)(n0 + i) * C + c0) * HW, HW);
        }
}

/* The chunk's images of y (NCHW) = A^T M A per tile, plus bias (may be NULL). */
static void outputs_transform(const mc_conv2d_shape *s, const float *M, size_t P, const float *bias, int n0,
                              int nb, float *y, float *buf) {
    const int TH = tiles_h(s), TW = tiles_w(s), O = s->o, OHW = s->oh * s->ow;
    for (int i = 0; i < nb; i++)
        for (int o0 = 0; o0 < O; o0 += LANES) {
            const int lanes = O - o0 < LANES ? O - o0 : LANES;
            const v8 b = bias ? load_lanes(bias + o0, lanes) : (v8){0};
            for (int ty = 0; ty < TH; ty++)
                for (int tx = 0; tx < TW; tx++) {
                    v8 m[16], t[4];
                    const float *in = M + ((size_t)(i * TH + ty) * TW + tx) * O + o0;
                    for (int xi = 0; xi < 16; xi++) m[xi] = load_lanes(in + xi * P * O, lanes);
                    output_tile(m, t);
                    for (int a = 0; a < 2; a++)
                        for (int c = 0; c < 2; c++)
                            store8(buf + ((size_t)(2 * ty + a) * 2 * TW + 2 * tx + c) * LANES, t[2 * a + c] + b);
                }
            deinterleave(buf, 2 * TW, 0, lanes, s->oh, s->ow, y + ((size_t)(n0 + i) * O + o0) * OHW, OHW);
        }
}

/* dM[xi][p][o] from the chunk's images of dy (NCHW): the adjoint of outputs_transform. */
static void outputs_transform_adjoint(const mc_conv2d_shape *s, const float *dy, int n0, int nb, float *dM,
                                      size_t P, float *buf) {
    const int TH = tiles_h(s), TW = tiles_w(s), O = s->o, OHW = s->oh * s->ow;
    memset(buf, 0, sizeof(float) * LANES * 4 * TH * TW);  /* an odd edge's extra row or column reads 0 */
    for (int i = 0; i < nb; i++)
        for (int o0 = 0; o0 < O; o0 += LANES) {
            const int lanes = O - o0 < LANES ? O - o0 : LANES;
            interleave(dy + ((size_t)(n0 + i) * O + o0) * OHW, OHW, lanes, s->oh, s->ow, buf, 2 * TW, 0);
            for (int ty = 0; ty < TH; ty++)
                for (int tx = 0; tx < TW; tx++) {
                    v8 t[4], m[16];
                    for (int a = 0; a < 2; a++)
                        for (int c = 0; c < 2; c++)
                            t[2 * a + c] = load8(buf + ((size_t)(2 * ty + a) * 2 * TW + 2 * tx + c) * LANES);
                    output_tile_adjoint(t, m);
                    float *out = dM + ((size_t)(i * TH + ty) * TW + tx) * O + o0;
                    for (int xi = 0; xi < 16; xi++) store_lanes(out + xi * P * O, m[xi], lanes);
                }
        }
}

/* ---- the 16 products ---- */

/* M[xi] (tiles x O) = V[xi] U[xi]^T + beta M[xi] */
static void products(const mc_conv2d_shape *s, const float *U, const float *V, size_t P, int pc, float beta,
                     float *M) {
    mc_gemm_batched(16, 0, 1, pc, s->o, s->c, 1.0f, V, s->c, (ptrdiff_t)P * s->c, U, s->c,
                    (ptrdiff_t)s->o * s->c, beta, M, s->o, (ptrdiff_t)P * s->o);
}

/* dU[xi] (O x C) = dM[xi]^T V[xi] + beta dU[xi] */
static void weight_products(const mc_conv2d_shape *s, const float *dM, const float *V, size_t P, int pc,
                            float beta, float *dU) {
    mc_gemm_batched(16, 1, 0, s->o, s->c, pc, 1.0f, dM, s->o, (ptrdiff_t)P * s->o, V, s->c,
                    (ptrdiff_t)P * s->c, beta, dU, s->c, (ptrdiff_t)s->o * s->c);
}

/* dV[xi] (tiles x C) = dM[xi] U[xi] + beta dV[xi] */
static void input_products(const mc_conv2d_shape *s, const float *U, const float *dM, size_t P, int pc,
                           float beta, float *dV) {
    mc_gemm_batched(16, 0, 0, pc, s->c, s->o, 1.0f, dM, s->o, (ptrdiff_t)P * s->o, U, s->c,
                    (ptrdiff_t)s->o * s->c, beta, dV, s->c, (ptrdiff_t)P * s->c);
}

/* Images in the chunk starting at n0 (the last may be partial). */
static int chunk_images(const mc_conv2d_shape *s, int n0) { return s->n - n0 < s->chunk ? s->n - n0 : s->chunk; }

void mc_winograd_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b, float *y,
                         float *ws) {
    workspace w = split(s, ws);
    filter_transform(s, W, w.U);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        const int nb = chunk_images(s, n0), pc = nb * (int)tiles(s);
        inputs_transform(s, x, n0, nb, w.V, w.P, w.pad);
        products(s, w.U, w.V, w.P, pc, 0.0f, w.M1);
        outputs_transform(s, w.M1, w.P, b, n0, nb, y, w.pad);
    }
}

void mc_winograd_backward(const mc_conv2d_shape *s, const float *x, const float *W, const float *dy, float *dx,
                          float *dW, float *ws) {
    workspace w = split(s, ws);
    if (dx) filter_transform(s, W, w.U);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        const int nb = chunk_images(s, n0), pc = nb * (int)tiles(s);
        outputs_transform_adjoint(s, dy, n0, nb, w.M1, w.P, w.pad);
        inputs_transform(s, x, n0, nb, w.V, w.P, w.pad);
        weight_products(s, w.M1, w.V, w.P, pc, n0 ? 1.0f : 0.0f, w.dU);
        if (dx) {
            input_products(s, w.U, w.M1, w.P, pc, 0.0f, w.V);
            inputs_transform_adjoint(s, w.V, w.P, n0, nb, dx, w.pad);
        }
    }
    filter_transform_adjoint(s, w.dU, dW);
}

void mc_winograd_rforward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                          const float *VW, const float *Vb, float *Ry, float *ws) {
    workspace w = split(s, ws);
    filter_transform(s, VW, w.U2);
    if (Rx) filter_transform(s, W, w.U);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        const int nb = chunk_images(s, n0), pc = nb * (int)tiles(s);
        inputs_transform(s, x, n0, nb, w.V, w.P, w.pad);
        products(s, w.U2, w.V, w.P, pc, 0.0f, w.M1);
        if (Rx) {
            inputs_transform(s, Rx, n0, nb, w.V, w.P, w.pad);
            products(s, w.U, w.V, w.P, pc, 1.0f, w.M1);
        }
        outputs_transform(s, w.M1, w.P, Vb, n0, nb, Ry, w.pad);
    }
}

void mc_winograd_rbackward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                           const float *VW, const float *dy, const float *Rdy, float *Rdx, float *RdW,
                           float *ws) {
    workspace w = split(s, ws);
    if (Rdx) { filter_transform(s, W, w.U); filter_transform(s, VW, w.U2); }
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        const int nb = chunk_images(s, n0), pc = nb * (int)tiles(s);
        outputs_transform_adjoint(s, Rdy, n0, nb, w.M1, w.P, w.pad);
        outputs_transform_adjoint(s, dy, n0, nb, w.M2, w.P, w.pad);
        inputs_transform(s, x, n0, nb, w.V, w.P, w.pad);
        weight_products(s, w.M1, w.V, w.P, pc, n0 ? 1.0f : 0.0f, w.dU);
        if (Rx) {
            inputs_transform(s, Rx, n0, nb, w.V, w.P, w.pad);
            weight_products(s, w.M2, w.V, w.P, pc, 1.0f, w.dU);
        }
        if (Rdx) {
            input_products(s, w.U, w.M1, w.P, pc, 0.0f, w.V);
            input_products(s, w.U2, w.M2, w.P, pc, 1.0f, w.V);
            inputs_transform_adjoint(s, w.V, w.P, n0, nb, Rdx, w.pad);
        }
    }
    filter_transform_adjoint(s, w.dU, RdW);
}

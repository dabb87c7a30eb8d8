/* 3x3, stride-1, pad-1 convolution by Winograd's minimal filtering F(m x m, 3x3) (Lavin & Gray 2016), m = 2
 * or 4: every m x m output tile is A^T [(G g G^T) . (B^T d B)] A for its a x a input patch d (a = m + 2),
 * so the a^2 products of a tile's transformed entries replace 9 m^2 multiply-adds, and across channels they
 * become a^2 GEMMs M[xi] = V[xi] U[xi]^T with U [O, C] (filters) and V [tiles, C] (inputs): 2.25x (m = 2)
 * or 4x (m = 4) fewer multiplies than im2col on whole tiles. The backward passes are this map's exact
 * adjoints (weights: dU = dM^T V, inputs: dV = dM U, then the transposed transforms), so gradients, R-forms
 * and meta-gradients stay the derivatives of what the forward pass computes. Tiles p = (image * TH + ty) *
 * TW + tx run over the chunk; a partial tile at an output edge reads zero padding and its extra outputs are
 * dropped. */
#include "ckernels.h"
#include "vec8.h"
#include <string.h>

/* Keep one chunk's transformed inputs and outputs near 1 MiB, where they stay in cache for the GEMMs
 * (measured on the 14x14 layer: 256 KiB - 1 MiB alike, 4 - 8 MiB slower). */
#define MC_WINOGRAD_TARGET ((size_t)256 << 10)

/* Output tile side m and input patch side a = m + 2 of the shape's algorithm. */
static int tile_m(const mc_conv2d_shape *s) { return s->algorithm == MC_CONV_WINOGRAD_4X4 ? 4 : 2; }
static int patch(const mc_conv2d_shape *s) { return tile_m(s) + 2; }
static size_t entries(const mc_conv2d_shape *s) { return (size_t)patch(s) * patch(s); }
static int tiles_h(const mc_conv2d_shape *s) { return (s->oh + tile_m(s) - 1) / tile_m(s); }
static int tiles_w(const mc_conv2d_shape *s) { return (s->ow + tile_m(s) - 1) / tile_m(s); }
static size_t tiles(const mc_conv2d_shape *s) { return (size_t)tiles_h(s) * tiles_w(s); }
/* The zero-padded input plane every tile reads from: rows and columns -1 ... m*T. */
static int pad_h(const mc_conv2d_shape *s) { return tile_m(s) * tiles_h(s) + 2; }
static int pad_w(const mc_conv2d_shape *s) { return tile_m(s) * tiles_w(s) + 2; }

int mc_winograd_applies(const mc_conv2d_shape *s) {
    return s->kh == 3 && s->kw == 3 && s->stride == 1 && s->pad == 1 && s->oh >= 2 && s->ow >= 2;
}

size_t mc_winograd_tiles(const mc_conv2d_shape *s) { return tiles(s); }

int mc_winograd_tile_size(const mc_conv2d_shape *s) {
    mc_conv2d_shape small = *s, large = *s;
    small.algorithm = MC_CONV_WINOGRAD_2X2;
    large.algorithm = MC_CONV_WINOGRAD_4X4;
    return tiles(&large) * entries(&large) < tiles(&small) * entries(&small) ? MC_CONV_WINOGRAD_4X4
                                                                            : MC_CONV_WINOGRAD_2X2;
}

int mc_winograd_chunk(const mc_conv2d_shape *s) {
    size_t per_image = entries(s) * ((size_t)s->c + 2 * (size_t)s->o) * tiles(s);
    size_t chunk = per_image ? MC_WINOGRAD_TARGET / per_image : (size_t)s->n;
    if (chunk < 1) chunk = 1;
    if (chunk > (size_t)s->n) chunk = (size_t)s->n;
    return s->n > 0 ? (int)chunk : 1;
}

/* Rows between the planes of V and M: the chunk's tiles, made odd so that the planes start at different
 * offsets modulo 4 KiB. (An even count, e.g. 80 or 160 tiles of 64 channels, puts all the planes of a tile
 * in the same cache sets, and the transforms, which touch all of them at once, thrash them.) */
static size_t plane_rows(const mc_conv2d_shape *s) { return ((size_t)s->chunk * tiles(s)) | 1; }
/* Floats between the planes of U and dU: the O x C filters and a cache line more, for the same reason (64 x 64
 * filters would put the planes 16 KiB apart, and the filter transform writes all of them at once). */
static size_t filter_plane(const mc_conv2d_shape *s) { return (size_t)s->o * s->c + 16; }
/* The floats per pixel of the buffer that holds all `channels` of one image interleaved (a multiple of 8). */
static int pixel_floats(int channels) { return channels > 8 ? (channels + 7) / 8 * 8 : 8; }

size_t mc_winograd_workspace_size(const mc_conv2d_shape *s) {
    size_t P = plane_rows(s), E = entries(s);
    return 3 * E * filter_plane(s) + E * ((size_t)s->c + 2 * (size_t)s->o) * P + (size_t)pixel_floats(s->c > s->o ? s->c : s->o) * pad_h(s) * pad_w(s);
}

typedef struct { float *U, *U2, *dU, *V, *M1, *M2, *pad; size_t P; } workspace;

static workspace split(const mc_conv2d_shape *s, float *ws) {
    workspace w;
    size_t UP = filter_plane(s), E = entries(s);
    w.P = plane_rows(s);
    w.U = ws; w.U2 = w.U + E * UP; w.dU = w.U2 + E * UP;
    w.V = w.dU + E * UP;
    w.M1 = w.V + E * (size_t)s->c * w.P;
    w.M2 = w.M1 + E * (size_t)s->o * w.P;
    w.pad = w.M2 + E * (size_t)s->o * w.P;
    return w;
}

/* ---- the transforms on one tile, eight channels (or filters) at a time ----
 * A v8 holds one entry of a tile for eight consecutive channels; transformed tiles are stored channel-minor
 * (V [a^2, tiles, C], M [a^2, tiles, O], U [a^2, O, C], U's planes filter_plane floats apart), so each entry of
 * eight channels is one contiguous vector, and an image's NCHW planes are interleaved into (and out of) a small
 * [rows, cols, channels] buffer (channels rounded up to a multiple of 8).
 * Each 2-D transform T x T^T applies one 1-D transform (a `line`: T's rows) down the columns, then along the
 * rows; the adjoint passes apply T^T's lines. */

enum { LANES = 8, MAX_PATCH = 6 };

/* out[k * os] = sum_i T[k][i] in[i * is] for the rows k of one 1-D transform T. */
typedef void (*line)(const v8 *in, int is, v8 *out, int os);

/* out (q x q) = T in T^T for the p x p tile in, T being q x p. */
MC_INLINE void separable(line T, int p, int q, const v8 *in, v8 *out) {
    v8 t[MAX_PATCH * MAX_PATCH];  /* T in: q x p */
    for (int j = 0; j < p; j++) T(in + j, p, t + j, p);
    for (int i = 0; i < q; i++) T(t + i * p, 1, out + i * q, 1);
}

/* F(2, 3): B^T (4x4), its transpose B, A^T (2x4), A (4x2), G (4x3), G^T (3x4). */
MC_INLINE void bt2(const v8 *d, int is, v8 *v, int os) {
    const v8 d0 = d[0], d1 = d[is], d2 = d[2 * is], d3 = d[3 * is];
    v[0] = d0 - d2; v[os] = d1 + d2; v[2 * os] = d2 - d1; v[3 * os] = d1 - d3;
}
MC_INLINE void b2(const v8 *v, int is, v8 *d, int os) {
    const v8 v0 = v[0], v1 = v[is], v2 = v[2 * is], v3 = v[3 * is];
    d[0] = v0; d[os] = v1 - v2 + v3; d[2 * os] = v1 + v2 - v0; d[3 * os] = -v3;
}
MC_INLINE void at2(const v8 *m, int is, v8 *y, int os) {
    const v8 m1 = m[is], m2 = m[2 * is];
    y[0] = m[0] + m1 + m2; y[os] = m1 - m2 - m[3 * is];
}
MC_INLINE void a2(const v8 *y, int is, v8 *m, int os) {
    const v8 y0 = y[0], y1 = y[is];
    m[0] = y0; m[os] = y0 + y1; m[2 * os] = y0 - y1; m[3 * os] = -y1;
}
MC_INLINE void g2(const v8 *g, int is, v8 *u, int os) {
    const v8 g0 = g[0], g1 = g[is], g2 = g[2 * is];
    u[0] = g0; u[os] = 0.5f * (g0 + g1 + g2); u[2 * os] = 0.5f * (g0 - g1 + g2); u[3 * os] = g2;
}
MC_INLINE void gt2(const v8 *u, int is, v8 *g, int os) {
    const v8 u0 = u[0], u1 = u[is], u2 = u[2 * is], u3 = u[3 * is];
    g[0] = u0 + 0.5f * (u1 + u2); g[os] = 0.5f * (u1 - u2); g[2 * os] = 0.5f * (u1 + u2) + u3;
}

/* F(4, 3) at the points 0, +-1, +-2 and infinity: B^T (6x6), B, A^T (4x6), A (6x4), G (6x3), G^T (3x6). */
MC_INLINE void bt4(const v8 *d, int is, v8 *v, int os) {
    const v8 d0 = d[0], d1 = d[is], d2 = d[2 * is], d3 = d[3 * is], d4 = d[4 * is], d5 = d[5 * is];
    const v8 p = d4 - 4.0f * d2, q = d3 - 4.0f * d1, r = d4 - d2, t = 2.0f * (d3 - d1);
    v[0] = 4.0f * d0 - 5.0f * d2 + d4;
    v[os] = p + q; v[2 * os] = p - q; v[3 * os] = r + t; v[4 * os] = r - t;
    v[5 * os] = 4.0f * d1 - 5.0f * d3 + d5;
}
MC_INLINE void b4(const v8 *v, int is, v8 *d, int os) {
    const v8 v0 = v[0], v1 = v[is], v2 = v[2 * is], v3 = v[3 * is], v4 = v[4 * is], v5 = v[5 * is];
    const v8 s12 = v1 + v2, d12 = v2 - v1, s34 = v3 + v4, d34 = v4 - v3;
    d[0] = 4.0f * v0;
    d[os] = 4.0f * (d12 + v5) + 2.0f * d34;
    d[2 * os] = -5.0f * v0 - 4.0f * s12 - s34;
    d[3 * os] = -d12 - 2.0f * d34 - 5.0f * v5;
    d[4 * os] = v0 + s12 + s34;
    d[5 * os] = v5;
}
MC_INLINE void at4(const v8 *m, int is, v8 *y, int os) {
    const v8 m1 = m[is], m2 = m[2 * is], m3 = m[3 * is], m4 = m[4 * is];
    const v8 s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    y[0] = m[0] + s12 + s34; y[os] = d12 + 2.0f * d34; y[2 * os] = s12 + 4.0f * s34;
    y[3 * os] = d12 + 8.0f * d34 + m[5 * is];
}
MC_INLINE void a4(const v8 *y, int is, v8 *m, int os) {
    const v8 y0 = y[0], y1 = y[is], y2 = y[2 * is], y3 = y[3 * is];
    const v8 e1 = y0 + y2, o1 = y1 + y3, e2 = y0 + 4.0f * y2, o2 = 2.0f * y1 + 8.0f * y3;
    m[0] = y0; m[os] = e1 + o1; m[2 * os] = e1 - o1; m[3 * os] = e2 + o2; m[4 * os] = e2 - o2; m[5 * os] = y3;
}
MC_INLINE void g4(const v8 *g, int is, v8 *u, int os) {
    const v8 g0 = g[0], g1 = g[is], g2 = g[2 * is];
    const v8 e = g0 + g2, f = g0 + 4.0f * g2;
    u[0] = 0.25f * g0;
    u[os] = (-1.0f / 6) * (e + g1); u[2 * os] = (-1.0f / 6) * (e - g1);
    u[3 * os] = (1.0f / 24) * (f + 2.0f * g1); u[4 * os] = (1.0f / 24) * (f - 2.0f * g1);
    u[5 * os] = g2;
}
MC_INLINE void gt4(const v8 *u, int is, v8 *g, int os) {
    const v8 u1 = u[is], u2 = u[2 * is], u3 = u[3 * is], u4 = u[4 * is];
    const v8 s12 = (-1.0f / 6) * (u1 + u2), d12 = (-1.0f / 6) * (u1 - u2);
    const v8 s34 = (1.0f / 24) * (u3 + u4), d34 = (1.0f / 12) * (u3 - u4);
    g[0] = 0.25f * u[0] + s12 + s34; g[os] = d12 + d34; g[2 * os] = s12 + 4.0f * s34 + u[5 * is];
}

/* v (a x a) = B^T d B for the a x a patch at d (pixels `ps` floats apart, rows ld pixels apart). */
MC_INLINE void input_tile(int m, const float *d, size_t ld, size_t ps, v8 *v) {
    const int a = m + 2;
    v8 tile[MAX_PATCH * MAX_PATCH];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) tile[i * a + j] = load8(d + (i * ld + j) * ps);
    if (m == 2) separable(bt2, 4, 4, tile, v); else separable(bt4, 6, 6, tile, v);
}

/* d += B v B^T (the adjoint of input_tile; pixels ps floats apart, rows ld pixels apart) */
MC_INLINE void input_tile_adjoint(int m, const v8 *v, float *d, size_t ld, size_t ps) {
    const int a = m + 2;
    v8 tile[MAX_PATCH * MAX_PATCH];
    if (m == 2) separable(b2, 4, 4, v, tile); else separable(b4, 6, 6, v, tile);
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) {
            float *o = d + (i * ld + j) * ps;
            store8(o, load8(o) + tile[i * a + j]);
        }
}

/* y (m x m) = A^T t A */
MC_INLINE void output_tile(int m, const v8 *t, v8 *y) {
    if (m == 2) separable(at2, 4, 2, t, y); else separable(at4, 6, 4, t, y);
}

/* t (a x a) = A y A^T (the adjoint of output_tile) */
MC_INLINE void output_tile_adjoint(int m, const v8 *y, v8 *t) {
    if (m == 2) separable(a2, 2, 4, y, t); else separable(a4, 4, 6, y, t);
}

/* v[xi][l] = in[xi * stride + l] for xi < count, l < lanes, and 0 for the other lanes: one tile's
 * transformed entries from their planes, the whole-vector test out of the loop (as in store_entries). */
MC_INLINE void load_entries(const float *in, size_t stride, v8 *v, int count, int lanes) {
    if (lanes == LANES) for (int xi = 0; xi < count; xi++) v[xi] = load8(in + xi * stride);
    else for (int xi = 0; xi < count; xi++) v[xi] = load_lanes(in + xi * stride, lanes);
}

/* out[xi * stride + l] = v[xi][l] for xi < count, l < lanes: one tile's transformed entries into their planes.
 * The whole-vector test is made once, out of the loop: the compiler does not hoist store_lanes's. */
MC_INLINE void store_entries(float *out, size_t stride, const v8 *v, int count, int lanes) {
    if (lanes == LANES) for (int xi = 0; xi < count; xi++) store8(out + xi * stride, v[xi]);
    else for (int xi = 0; xi < count; xi++) store_lanes(out + xi * stride, v[xi], lanes);
}

/* U[xi][o][c] = (G g G^T)[xi] for every filter g = W[o][c] (3x3), eight filters (one vector) at a time. */
MC_INLINE void filter_transform_body(const mc_conv2d_shape *s, const float *W, float *U) {
    const size_t OC = (size_t)s->o * s->c, E = entries(s);
    for (size_t f = 0; f < OC; f += LANES) {
        const int lanes = OC - f < LANES ? (int)(OC - f) : LANES;
        v8 g[9], u[MAX_PATCH * MAX_PATCH];
        /* entries 0-7 of the filters transposed in registers (a missing filter's lanes 0), then entry 8 */
        for (int k = 0; k < LANES; k++) g[k] = k < lanes ? load8(W + 9 * (f + k)) : (v8){0};
        transpose8_in_place(g);
        g[8] = (v8){0};
        for (int k = 0; k < lanes; k++) g[8][k] = W[9 * (f + k) + 8];
        if (tile_m(s) == 2) separable(g2, 3, 4, g, u); else separable(g4, 3, 6, g, u);
        store_entries(U + f, filter_plane(s), u, (int)E, lanes);
    }
}

/* dW[o][c] = G^T dU[.][o][c] G (the adjoint of filter_transform), overwriting dW. */
MC_INLINE void filter_transform_adjoint_body(const mc_conv2d_shape *s, const float *dU, float *dW) {
    const size_t OC = (size_t)s->o * s->c, E = entries(s);
    for (size_t f = 0; f < OC; f += LANES) {
        const int lanes = OC - f < LANES ? (int)(OC - f) : LANES;
        v8 u[MAX_PATCH * MAX_PATCH], g[9];
        load_entries(dU + f, filter_plane(s), u, (int)E, lanes);
        if (tile_m(s) == 2) separable(gt2, 4, 3, u, g); else separable(gt4, 6, 3, u, g);
        /* the mirror of filter_transform's transpose */
        const float last[LANES] = {g[8][0], g[8][1], g[8][2], g[8][3], g[8][4], g[8][5], g[8][6], g[8][7]};
        transpose8_in_place(g);
        for (int k = 0; k < lanes; k++) {
            store8(dW + 9 * (f + k), g[k]);
            dW[9 * (f + k) + 8] = last[k];
        }
    }
}

/* ---- the transforms over a chunk of images ---- */

/* buf[((r + off) * bw + col + off) * ps + l] = plane l (channel_stride apart) at (r, col), for l < lanes, and 0
 * for lanes <= l < 8 (the buffer's pixels hold at least 8 floats from there on). The planes are read eight
 * pixels at a time in row-major order, across rows, and transposed in registers into eight pixels' channels;
 * the last block may hold fewer pixels (n). */
MC_INLINE void interleave(const float *x, size_t channel_stride, int lanes, int h, int w, float *buf, int ps, int bw,
                          int off) {
    const int hw = h * w;
    for (int q0 = 0, r = 0, col = 0; q0 < hw; q0 += LANES) {
        const int n = hw - q0 < LANES ? hw - q0 : LANES;
        v8 t[LANES];
        if (n == LANES && lanes == LANES) for (int l = 0; l < LANES; l++) t[l] = load8(x + l * channel_stride + q0);
        else for (int l = 0; l < LANES; l++) t[l] = l < lanes ? load_lanes(x + l * channel_stride + q0, n) : (v8){0};
        transpose8_in_place(t);
        for (int j = 0; j < n; j++) {
            store8(buf + ((size_t)(r + off) * bw + col + off) * ps, t[j]);
            if (++col == w) { col = 0; r++; }
        }
    }
}

/* The inverse of interleave: the planes' h x w values, overwriting them. */
MC_INLINE void deinterleave(const float *buf, int ps, int bw, int off, int lanes, int h, int w, float *x,
                            size_t channel_stride) {
    const int hw = h * w;
    for (int q0 = 0, r = 0, col = 0; q0 < hw; q0 += LANES) {
        const int n = hw - q0 < LANES ? hw - q0 : LANES;
        v8 t[LANES] = {0};
        for (int j = 0; j < n; j++) {
            t[j] = load8(buf + ((size_t)(r + off) * bw + col + off) * ps);
            if (++col == w) { col = 0; r++; }
        }
        transpose8_in_place(t);
        if (n == LANES) for (int l = 0; l < lanes; l++) store8(x + l * channel_stride + q0, t[l]);
        else for (int l = 0; l < lanes; l++) store_lanes(x + l * channel_stride + q0, t[l], n);
    }
}

/* V[xi][p][c] from the chunk's images of x (NCHW). All of an image's channels are interleaved first, so that
 * each tile's transformed entries are written for all channels at once: whole lines of V's planes, instead of
 * 32 bytes of each of a^2 lines per pass over the tiles. */
MC_INLINE void inputs_transform_body(const mc_conv2d_shape *s, const float *x, int n0, int nb, float *V, size_t P,
                             float *buf) {
    const int m = tile_m(s), E = (int)entries(s), TH = tiles_h(s), TW = tiles_w(s), PW = pad_w(s), C = s->c;
    const int HW = s->h * s->w, CB = pixel_floats(C);
    memset(buf, 0, sizeof(float) * CB * pad_h(s) * PW);  /* the zero padding; interiors are rewritten */
    for (int i = 0; i < nb; i++) {
        for (int c0 = 0; c0 < C; c0 += LANES)
            interleave(x + ((size_t)(n0 + i) * C + c0) * HW, HW, C - c0 < LANES ? C - c0 : LANES, s->h, s->w, buf + c0, CB,
                       PW, 1);
        for (int ty = 0; ty < TH; ty++)
            for (int tx = 0; tx < TW; tx++) {
                float *out = V + ((size_t)(i * TH + ty) * TW + tx) * C;
                for (int c0 = 0; c0 < C; c0 += LANES) {
                    const int lanes = C - c0 < LANES ? C - c0 : LANES;
                    v8 v[MAX_PATCH * MAX_PATCH];
                    input_tile(m, buf + ((size_t)(m * ty) * PW + m * tx) * CB + c0, PW, CB, v);
                    store_entries(out + c0, P * C, v, E, lanes);
                }
            }
    }
}

/* The chunk's images of dx (NCHW) = the adjoint of inputs_transform applied to dV, overwriting them. As in
 * inputs_transform, each tile's entries are read for all channels at once (whole lines of dV's planes) and
 * accumulated into all of an image's channels interleaved, which are then written out plane by plane. */
MC_INLINE void inputs_transform_adjoint_body(const mc_conv2d_shape *s, const float *dV, size_t P, int n0, int nb,
                                     float *dx, float *buf) {
    const int m = tile_m(s), E = (int)entries(s), TH = tiles_h(s), TW = tiles_w(s), PW = pad_w(s), C = s->c;
    const int HW = s->h * s->w, CB = pixel_floats(C);
    for (int i = 0; i < nb; i++) {
        memset(buf, 0, sizeof(float) * CB * pad_h(s) * PW);
        for (int ty = 0; ty < TH; ty++)
            for (int tx = 0; tx < TW; tx++) {
                const float *in = dV + ((size_t)(i * TH + ty) * TW + tx) * C;
                for (int c0 = 0; c0 < C; c0 += LANES) {
                    v8 v[MAX_PATCH * MAX_PATCH];
                    load_entries(in + c0, P * C, v, E, C - c0 < LANES ? C - c0 : LANES);
                    input_tile_adjoint(m, v, buf + ((size_t)(m * ty) * PW + m * tx) * CB + c0, PW, CB);
                }
            }
        for (int c0 = 0; c0 < C; c0 += LANES)
            deinterleave(buf + c0, CB, PW, 1, C - c0 < LANES ? C - c0 : LANES, s->h, s->w,
                         dx + ((size_t)(n0 + i) * C + c0) * HW, HW);
    }
}

/* The chunk's images of y (NCHW) = A^T M A per tile, plus bias (may be NULL): all of an image's filters at once,
 * as in inputs_transform_adjoint. */
MC_INLINE void outputs_transform_body(const mc_conv2d_shape *s, const float *M, size_t P, const float *bias, int n0,
                              int nb, float *y, float *buf) {
    const int m = tile_m(s), E = (int)entries(s), TH = tiles_h(s), TW = tiles_w(s), O = s->o;
    const int OHW = s->oh * s->ow, BW = m * TW, OB = pixel_floats(O);
    for (int i = 0; i < nb; i++) {
        for (int ty = 0; ty < TH; ty++)
            for (int tx = 0; tx < TW; tx++) {
                const float *in = M + ((size_t)(i * TH + ty) * TW + tx) * O;
                for (int o0 = 0; o0 < O; o0 += LANES) {
                    const int lanes = O - o0 < LANES ? O - o0 : LANES;
                    const v8 b = bias ? load_lanes(bias + o0, lanes) : (v8){0};
                    v8 t[MAX_PATCH * MAX_PATCH], out[16];
                    load_entries(in + o0, P * O, t, E, lanes);
                    output_tile(m, t, out);
                    for (int r = 0; r < m; r++)
                        for (int c = 0; c < m; c++)
                            store8(buf + ((size_t)(m * ty + r) * BW + m * tx + c) * OB + o0, out[r * m + c] + b);
                }
            }
        for (int o0 = 0; o0 < O; o0 += LANES)
            deinterleave(buf + o0, OB, BW, 0, O - o0 < LANES ? O - o0 : LANES, s->oh, s->ow,
                         y + ((size_t)(n0 + i) * O + o0) * OHW, OHW);
    }
}

/* dM[xi][p][o] from the chunk's images of dy (NCHW): the adjoint of outputs_transform. As in
 * inputs_transform, all of an image's channels are interleaved first, and each tile's entries written for all
 * of them at once. */
MC_INLINE void outputs_transform_adjoint_body(const mc_conv2d_shape *s, const float *dy, int n0, int nb, float *dM,
                                      size_t P, float *buf) {
    const int m = tile_m(s), E = (int)entries(s), TH = tiles_h(s), TW = tiles_w(s), O = s->o;
    const int OHW = s->oh * s->ow, BW = m * TW, OB = pixel_floats(O);
    memset(buf, 0, sizeof(float) * OB * (size_t)(m * TH) * BW);  /* a partial tile's extra outputs read 0 */
    for (int i = 0; i < nb; i++) {
        for (int o0 = 0; o0 < O; o0 += LANES)
            interleave(dy + ((size_t)(n0 + i) * O + o0) * OHW, OHW, O - o0 < LANES ? O - o0 : LANES, s->oh, s->ow,
                       buf + o0, OB, BW, 0);
        for (int ty = 0; ty < TH; ty++)
            for (int tx = 0; tx < TW; tx++) {
                float *out = dM + ((size_t)(i * TH + ty) * TW + tx) * O;
                for (int o0 = 0; o0 < O; o0 += LANES) {
                    const int lanes = O - o0 < LANES ? O - o0 : LANES;
                    v8 in[16], t[MAX_PATCH * MAX_PATCH];
                    for (int r = 0; r < m; r++)
                        for (int c = 0; c < m; c++)
                            in[r * m + c] = load8(buf + ((size_t)(m * ty + r) * BW + m * tx + c) * OB + o0);
                    output_tile_adjoint(m, in, t);
                    store_entries(out + o0, P * O, t, E, lanes);
                }
            }
    }
}

/* The transforms as the passes call them, compiled once per vector level (MC_CLONES: the loader picks the
 * clone the CPU supports). Each is a thin wrapper: a clone may not call the vector helpers itself, whose
 * baseline calling convention differs from its own, but their calls inside the always-inline bodies are
 * inlined with them. */
MC_CLONES static void filter_transform(const mc_conv2d_shape *s, const float *W, float *U) {
    filter_transform_body(s, W, U);
}
MC_CLONES static void filter_transform_adjoint(const mc_conv2d_shape *s, const float *dU, float *dW) {
    filter_transform_adjoint_body(s, dU, dW);
}
MC_CLONES static void inputs_transform(const mc_conv2d_shape *s, const float *x, int n0, int nb, float *V, size_t P,
                                       float *buf) {
    inputs_transform_body(s, x, n0, nb, V, P, buf);
}
MC_CLONES static void inputs_transform_adjoint(const mc_conv2d_shape *s, const float *dV, size_t P, int n0, int nb,
                                               float *dx, float *buf) {
    inputs_transform_adjoint_body(s, dV, P, n0, nb, dx, buf);
}
MC_CLONES static void outputs_transform(const mc_conv2d_shape *s, const float *M, size_t P, const float *bias, int n0,
                                        int nb, float *y, float *buf) {
    outputs_transform_body(s, M, P, bias, n0, nb, y, buf);
}
MC_CLONES static void outputs_transform_adjoint(const mc_conv2d_shape *s, const float *dy, int n0, int nb, float *dM,
                                                size_t P, float *buf) {
    outputs_transform_adjoint_body(s, dy, n0, nb, dM, P, buf);
}

/* ---- the products, one per transformed entry ---- */

/* M[xi] (tiles x O) = V[xi] U[xi]^T + beta M[xi] */
static void products(const mc_conv2d_shape *s, const float *U, const float *V, size_t P, int pc, float beta,
                     float *M) {
    mc_gemm_batched((int)entries(s), 0, 1, pc, s->o, s->c, 1.0f, V, s->c, (ptrdiff_t)P * s->c, U, s->c,
                    (ptrdiff_t)filter_plane(s), beta, M, s->o, (ptrdiff_t)P * s->o);
}

/* dU[xi] (O x C) = dM[xi]^T V[xi] + beta dU[xi] */
static void weight_products(const mc_conv2d_shape *s, const float *dM, const float *V, size_t P, int pc,
                            float beta, float *dU) {
    mc_gemm_batched((int)entries(s), 1, 0, s->o, s->c, pc, 1.0f, dM, s->o, (ptrdiff_t)P * s->o, V, s->c,
                    (ptrdiff_t)P * s->c, beta, dU, s->c, (ptrdiff_t)filter_plane(s));
}

/* dV[xi] (tiles x C) = dM[xi] U[xi] + beta dV[xi] */
static void input_products(const mc_conv2d_shape *s, const float *U, const float *dM, size_t P, int pc,
                           float beta, float *dV) {
    mc_gemm_batched((int)entries(s), 0, 0, pc, s->c, s->o, 1.0f, dM, s->o, (ptrdiff_t)P * s->o, U, s->c,
                    (ptrdiff_t)filter_plane(s), beta, dV, s->c, (ptrdiff_t)P * s->c);
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

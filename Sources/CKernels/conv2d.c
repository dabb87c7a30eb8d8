/* 2-D convolution by im2col + GEMM over chunks of images, with its backward and R-forms.
 * Bilinearity does the R-forms: every term is a forward or backward product with x or Rx and W or VW. */
#include "ckernels.h"
#include "reduce.h"
#include <string.h>

/* Keep one chunk's im2col matrix near 16 MiB: large enough for efficient GEMMs on late, small images. */
#define MC_CONV_COL_TARGET ((size_t)4 << 20)
/* Fewer input channels leave Winograd's products too thin (K = C) to pay; such layers (an image's 1 or 3
 * channels) convolve directly at stride 1, by im2col otherwise. */
#define MC_WINOGRAD_MIN_CHANNELS 4

int mc_conv2d_shape_make(mc_conv2d_shape *s, int n, int c, int h, int w, int o, int kh, int kw,
                         int stride, int pad) {
    s->n = n; s->c = c; s->h = h; s->w = w; s->o = o; s->kh = kh; s->kw = kw;
    s->stride = stride; s->pad = pad;
    if (stride < 1 || pad < 0 || h + 2 * pad < kh || w + 2 * pad < kw) { s->oh = s->ow = 0; return -1; }
    s->oh = (h + 2 * pad - kh) / stride + 1;
    s->ow = (w + 2 * pad - kw) / stride + 1;
    if (c < MC_WINOGRAD_MIN_CHANNELS && mc_conv2d_shape_set_algorithm(s, MC_CONV_DIRECT) == 0) return 0;
    if (c >= MC_WINOGRAD_MIN_CHANNELS && mc_conv2d_shape_set_algorithm(s, mc_winograd_tile_size(s)) == 0) return 0;
    return mc_conv2d_shape_set_algorithm(s, MC_CONV_IM2COL);
}

int mc_conv2d_shape_set_algorithm(mc_conv2d_shape *s, int algorithm) {
    if (algorithm == MC_CONV_WINOGRAD_2X2 || algorithm == MC_CONV_WINOGRAD_4X4) {
        if (!mc_winograd_applies(s)) return -1;
        s->algorithm = algorithm;
        s->chunk = mc_winograd_chunk(s);
        return 0;
    }
    if (algorithm == MC_CONV_DIRECT) {
        if (!mc_direct_applies(s)) return -1;
        s->algorithm = algorithm;
        s->chunk = 1;  /* image by image */
        return 0;
    }
    if (algorithm != MC_CONV_IM2COL) return -1;
    size_t per_image = (size_t)s->c * s->kh * s->kw * s->oh * s->ow;
    size_t chunk = per_image ? MC_CONV_COL_TARGET / per_image : (size_t)s->n;
    if (chunk < 1) chunk = 1;
    if (chunk > (size_t)s->n) chunk = (size_t)s->n;
    s->algorithm = MC_CONV_IM2COL;
    s->chunk = s->n > 0 ? (int)chunk : 1;
    return 0;
}

static size_t ohw(const mc_conv2d_shape *s) { return (size_t)s->oh * s->ow; }
static int ckk(const mc_conv2d_shape *s) { return s->c * s->kh * s->kw; }

size_t mc_conv2d_workspace_size(const mc_conv2d_shape *s) {
    if (s->algorithm == MC_CONV_DIRECT) return mc_direct_workspace_size(s);
    if (s->algorithm != MC_CONV_IM2COL) return mc_winograd_workspace_size(s);
    size_t cols = (size_t)s->chunk * ohw(s);
    return (size_t)ckk(s) * cols + 2 * (size_t)s->o * cols;
}

/* The output columns ox whose input column ox*stride - pad + kj lies inside [0, W): [*lo, *hi). */
static void valid_columns(const mc_conv2d_shape *s, int kj, int *lo, int *hi) {
    const int off = kj - s->pad;                       /* ix = ox*stride + off */
    int a = off >= 0 ? 0 : (-off + s->stride - 1) / s->stride;
    int b = s->w - off <= 0 ? 0 : (s->w - off - 1) / s->stride + 1;
    if (b > s->ow) b = s->ow;
    if (a > b) a = b;
    *lo = a; *hi = b;
}

void mc_im2col(const mc_conv2d_shape *s, const float *x, float *col, int cols, int col0) {
    const int H = s->h, W = s->w, OH = s->oh, OW = s->ow, st = s->stride;
    for (int c = 0; c < s->c; c++)
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                float *row = col + (size_t)((c * s->kh + ki) * s->kw + kj) * cols + col0;
                const float *plane = x + (size_t)c * H * W;
                int lo, hi;
                valid_columns(s, kj, &lo, &hi);
                const int off = kj - s->pad;
                for (int oy = 0; oy < OH; oy++) {
                    const int iy = oy * st - s->pad + ki;
                    float *restrict dst = row + (size_t)oy * OW;
                    if (iy < 0 || iy >= H) { memset(dst, 0, sizeof(float) * OW); continue; }
                    const float *restrict src = plane + (size_t)iy * W;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (st == 1) memcpy(dst + lo, src + lo + off, sizeof(float) * (hi - lo));
                    else for (int ox = lo; ox < hi; ox++) dst[ox] = src[ox * st + off];
                    for (int ox = hi; ox < OW; ox++) dst[ox] = 0.0f;
                }
            }
}

void mc_col2im(const mc_conv2d_shape *s, const float *col, int cols, int col0, float *x) {
    const int H = s->h, W = s->w, OH = s->oh, OW = s->ow, st = s->stride;
    for (int c = 0; c < s->c; c++)
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                const float *row = col + (size_t)((c * s->kh + ki) * s->kw + kj) * cols + col0;
                float *plane = x + (size_t)c * H * W;
                int lo, hi;
                valid_columns(s, kj, &lo, &hi);
                const int off = kj - s->pad;
                for (int oy = 0; oy < OH; oy++) {
                    const int iy = oy * st - s->pad + ki;
                    if (iy < 0 || iy >= H) continue;
                    const float *restrict src = row + (size_t)oy * OW;
                    float *restrict dst = plane + (size_t)iy * W;
                    if (st == 1) for (int ox = lo; ox < hi; ox++) dst[ox + off] += src[ox];
                    else for (int ox = lo; ox < hi; ox++) dst[ox * st + off] += src[ox];
                }
            }
}

/* The chunk's images side by side: col [CKK, nb*OHW] from x (NCHW). */
static void im2col_chunk(const mc_conv2d_shape *s, const float *x, int n0, int nb, float *col) {
    const size_t in_image = (size_t)s->c * s->h * s->w;
    const int cols = nb * (int)ohw(s);
    for (int i = 0; i < nb; i++) mc_im2col(s, x + (n0 + i) * in_image, col, cols, i * (int)ohw(s));
}

static void col2im_chunk(const mc_conv2d_shape *s, const float *col, int n0, int nb, float *x) {
    const size_t in_image = (size_t)s->c * s->h * s->w;
    const int cols = nb * (int)ohw(s);
    for (int i = 0; i < nb; i++) mc_col2im(s, col, cols, i * (int)ohw(s), x + (n0 + i) * in_image);
}

/* NCHW output slice of the chunk <-> the GEMM's [O, nb*OHW] layout. */
static void gather_chunk(const mc_conv2d_shape *s, const float *y, int n0, int nb, float *t) {
    const size_t P = ohw(s), cols = nb * P;
    for (int i = 0; i < nb; i++)
        for (int o = 0; o < s->o; o++)
            memcpy(t + o * cols + i * P, y + ((size_t)(n0 + i) * s->o + o) * P, sizeof(float) * P);
}

static void scatter_chunk(const mc_conv2d_shape *s, const float *t, const float *bias, int n0, int nb, float *y) {
    const size_t P = ohw(s), cols = nb * P;
    for (int i = 0; i < nb; i++)
        for (int o = 0; o < s->o; o++) {
            float *dst = y + ((size_t)(n0 + i) * s->o + o) * P;
            const float *src = t + o * cols + i * P;
            const float b = bias ? bias[o] : 0.0f;
            for (size_t p = 0; p < P; p++) dst[p] = src[p] + b;
        }
}

/* db[o] = sum over images and pixels of dy. */
static void bias_grad(const mc_conv2d_shape *s, const float *dy, float *db) {
    const size_t P = ohw(s);
    for (int o = 0; o < s->o; o++) {
        double acc = 0.0;
        for (int n = 0; n < s->n; n++) acc += sum_plane(dy + ((size_t)n * s->o + o) * P, (int)P);
        db[o] = (float)acc;
    }
}

typedef struct { float *col, *t1, *t2; int cols_max; } workspace;

static workspace split(const mc_conv2d_shape *s, float *ws) {
    workspace w;
    w.cols_max = s->chunk * (int)ohw(s);
    w.col = ws;
    w.t1 = ws + (size_t)ckk(s) * w.cols_max;
    w.t2 = w.t1 + (size_t)s->o * w.cols_max;
    return w;
}

void mc_conv2d_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b,
                       float *y, float *ws) {
    if (s->algorithm == MC_CONV_DIRECT) { mc_direct_forward(s, x, W, b, y, ws); return; }
    if (s->algorithm != MC_CONV_IM2COL) { mc_winograd_forward(s, x, W, b, y, ws); return; }
    workspace w = split(s, ws);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        im2col_chunk(s, x, n0, nb, w.col);
        mc_gemm(0, 0, s->o, cols, ckk(s), 1.0f, W, ckk(s), w.col, cols, 0.0f, w.t1, cols);
        scatter_chunk(s, w.t1, b, n0, nb, y);
    }
}

void mc_conv2d_backward(const mc_conv2d_shape *s, const float *x, const float *W, const float *dy,
                        float *dx, float *dW, float *db, float *ws) {
    if (s->algorithm == MC_CONV_DIRECT) { mc_direct_backward(s, x, W, dy, dx, dW, db, ws); return; }
    if (db) bias_grad(s, dy, db);
    if (s->algorithm != MC_CONV_IM2COL) { mc_winograd_backward(s, x, W, dy, dx, dW, ws); return; }
    workspace w = split(s, ws);
    if (dx) memset(dx, 0, sizeof(float) * (size_t)s->n * s->c * s->h * s->w);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        gather_chunk(s, dy, n0, nb, w.t1);
        im2col_chunk(s, x, n0, nb, w.col);
        mc_gemm(0, 1, s->o, ckk(s), cols, 1.0f, w.t1, cols, w.col, cols, n0 ? 1.0f : 0.0f, dW, ckk(s));
        if (dx) {
            mc_gemm(1, 0, ckk(s), cols, s->o, 1.0f, W, ckk(s), w.t1, cols, 0.0f, w.col, cols);
            col2im_chunk(s, w.col, n0, nb, dx);
        }
    }
}

void mc_conv2d_rforward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                        const float *VW, const float *Vb, float *Ry, float *ws) {
    if (s->algorithm == MC_CONV_DIRECT) { mc_direct_rforward(s, x, Rx, W, VW, Vb, Ry, ws); return; }
    if (s->algorithm != MC_CONV_IM2COL) { mc_winograd_rforward(s, x, Rx, W, VW, Vb, Ry, ws); return; }
    workspace w = split(s, ws);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        im2col_chunk(s, x, n0, nb, w.col);
        mc_gemm(0, 0, s->o, cols, ckk(s), 1.0f, VW, ckk(s), w.col, cols, 0.0f, w.t1, cols);
        if (Rx) {
            im2col_chunk(s, Rx, n0, nb, w.col);
            mc_gemm(0, 0, s->o, cols, ckk(s), 1.0f, W, ckk(s), w.col, cols, 1.0f, w.t1, cols);
        }
        scatter_chunk(s, w.t1, Vb, n0, nb, Ry);
    }
}

void mc_conv2d_rbackward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                         const float *VW, const float *dy, const float *Rdy,
                         float *Rdx, float *RdW, float *Rdb, float *ws) {
    if (s->algorithm == MC_CONV_DIRECT) { mc_direct_rbackward(s, x, Rx, W, VW, dy, Rdy, Rdx, RdW, Rdb, ws); return; }
    if (Rdb) bias_grad(s, Rdy, Rdb);
    if (s->algorithm != MC_CONV_IM2COL) { mc_winograd_rbackward(s, x, Rx, W, VW, dy, Rdy, Rdx, RdW, ws); return; }
    workspace w = split(s, ws);
    if (Rdx) memset(Rdx, 0, sizeof(float) * (size_t)s->n * s->c * s->h * s->w);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        const float beta = n0 ? 1.0f : 0.0f;
        gather_chunk(s, Rdy, n0, nb, w.t1);
        gather_chunk(s, dy, n0, nb, w.t2);
        im2col_chunk(s, x, n0, nb, w.col);
        mc_gemm(0, 1, s->o, ckk(s), cols, 1.0f, w.t1, cols, w.col, cols, beta, RdW, ckk(s));
        if (Rx) {
            im2col_chunk(s, Rx, n0, nb, w.col);
            mc_gemm(0, 1, s->o, ckk(s), cols, 1.0f, w.t2, cols, w.col, cols, 1.0f, RdW, ckk(s));
        }
        if (Rdx) {
            mc_gemm(1, 0, ckk(s), cols, s->o, 1.0f, W, ckk(s), w.t1, cols, 0.0f, w.col, cols);
            mc_gemm(1, 0, ckk(s), cols, s->o, 1.0f, VW, ckk(s), w.t2, cols, 1.0f, w.col, cols);
            col2im_chunk(s, w.col, n0, nb, Rdx);
        }
    }
}

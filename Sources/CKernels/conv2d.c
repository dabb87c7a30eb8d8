/* 2-D convolution lowered to GEMMs over chunks of images, with its backward and R-forms: by im2col (a row of
 * the patch matrix per channel and kernel offset) or im2row (a row per output pixel, over channels-last copies
 * of the images). Bilinearity does the R-forms: every term is a forward or backward product with x or Rx and
 * W or VW. */
#include "ckernels.h"
#include "reduce.h"
#include <string.h>

/* Keep one chunk's im2col matrix near 16 MiB: large enough for efficient GEMMs on late, small images. */
#define MC_CONV_COL_TARGET ((size_t)4 << 20)
/* Fewer input channels leave Winograd's products too thin (K = C) to pay; such layers (an image's 1 or 3
 * channels) convolve directly at stride 1, by im2col otherwise. */
#define MC_WINOGRAD_MIN_CHANNELS 4
/* Strided layers of at least this many channels lower by im2row: im2col's rows there are strided gathers of
 * a few pixels each (2 to 14 on 28x28 inputs), while im2row copies runs of KW*C floats. */
#define MC_IM2ROW_MIN_CHANNELS 8

int mc_conv2d_shape_make(mc_conv2d_shape *s, int n, int c, int h, int w, int o, int kh, int kw,
                         int stride, int pad) {
    s->n = n; s->c = c; s->h = h; s->w = w; s->o = o; s->kh = kh; s->kw = kw;
    s->stride = stride; s->pad = pad;
    if (stride < 1 || pad < 0 || h + 2 * pad < kh || w + 2 * pad < kw) { s->oh = s->ow = 0; return -1; }
    s->oh = (h + 2 * pad - kh) / stride + 1;
    s->ow = (w + 2 * pad - kw) / stride + 1;
    if (c < MC_WINOGRAD_MIN_CHANNELS && mc_conv2d_shape_set_algorithm(s, MC_CONV_DIRECT) == 0) return 0;
    if (c >= MC_WINOGRAD_MIN_CHANNELS && mc_conv2d_shape_set_algorithm(s, mc_winograd_tile_size(s)) == 0) return 0;
    return mc_conv2d_shape_set_algorithm(s, stride > 1 && c >= MC_IM2ROW_MIN_CHANNELS ? MC_CONV_IM2ROW : MC_CONV_IM2COL);
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
    if (algorithm != MC_CONV_IM2COL && algorithm != MC_CONV_IM2ROW) return -1;
    size_t per_image = (size_t)s->c * s->kh * s->kw * s->oh * s->ow;
    size_t chunk = per_image ? MC_CONV_COL_TARGET / per_image : (size_t)s->n;
    if (chunk < 1) chunk = 1;
    if (chunk > (size_t)s->n) chunk = (size_t)s->n;
    s->algorithm = algorithm;
    s->chunk = s->n > 0 ? (int)chunk : 1;
    return 0;
}

static size_t ohw(const mc_conv2d_shape *s) { return (size_t)s->oh * s->ow; }
static int ckk(const mc_conv2d_shape *s) { return s->c * s->kh * s->kw; }

static size_t padded_image(const mc_conv2d_shape *s) {
    return (size_t)(s->h + 2 * s->pad) * (s->w + 2 * s->pad) * s->c;
}

size_t mc_conv2d_workspace_size(const mc_conv2d_shape *s) {
    if (s->algorithm == MC_CONV_DIRECT) return mc_direct_workspace_size(s);
    if (s->algorithm != MC_CONV_IM2COL && s->algorithm != MC_CONV_IM2ROW) return mc_winograd_workspace_size(s);
    size_t cols = (size_t)s->chunk * ohw(s);
    size_t im2col = (size_t)ckk(s) * cols + 2 * (size_t)s->o * cols;
    return s->algorithm == MC_CONV_IM2COL ? im2col : im2col + 3 * (size_t)s->o * ckk(s) + padded_image(s);
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

/* ---- im2row: the patch matrix rows[pixel, (ki, kj, c)], one row per output pixel of the chunk. Each
 * window row (ki) of a pixel is KW*C contiguous floats of the image's padded channels-last copy, so a row is
 * KH copies. The weights take the same (ki, kj, c) order, permuted once per call. ---- */

typedef struct { float *rows, *t1, *t2, *wp, *vp, *g, *image; int cols_max; } row_workspace;

static row_workspace split_rows(const mc_conv2d_shape *s, float *ws) {
    row_workspace w;
    const size_t K = (size_t)ckk(s), weights = (size_t)s->o * K;
    w.cols_max = s->chunk * (int)ohw(s);
    w.rows = ws;
    w.t1 = w.rows + K * w.cols_max;
    w.t2 = w.t1 + (size_t)s->o * w.cols_max;
    w.wp = w.t2 + (size_t)s->o * w.cols_max;
    w.vp = w.wp + weights;
    w.g = w.vp + weights;
    w.image = w.g + weights;
    return w;
}

/* W [O, C, KH, KW] -> Wp [O, KH, KW, C], and back. */
static void permute_weights(const mc_conv2d_shape *s, const float *W, float *Wp) {
    const int C = s->c, KK = s->kh * s->kw;
    for (int o = 0; o < s->o; o++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < KK; k++) Wp[((size_t)o * KK + k) * C + c] = W[((size_t)o * C + c) * KK + k];
}

static void unpermute_weights(const mc_conv2d_shape *s, const float *Wp, float *W) {
    const int C = s->c, KK = s->kh * s->kw;
    for (int o = 0; o < s->o; o++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < KK; k++) W[((size_t)o * C + c) * KK + k] = Wp[((size_t)o * KK + k) * C + c];
}

/* One image x [C, H, W] -> image [H + 2 pad, W + 2 pad, C], the border zero. */
static void to_channels_last(const mc_conv2d_shape *s, const float *x, float *image) {
    const int C = s->c, H = s->h, W = s->w, p = s->pad, PW = W + 2 * p;
    if (p) {
        memset(image, 0, sizeof(float) * (size_t)p * PW * C);
        memset(image + (size_t)(H + p) * PW * C, 0, sizeof(float) * (size_t)p * PW * C);
    }
    for (int iy = 0; iy < H; iy++) {
        float *row = image + (size_t)(iy + p) * PW * C;
        if (p) {
            memset(row, 0, sizeof(float) * (size_t)p * C);
            memset(row + (size_t)(W + p) * C, 0, sizeof(float) * (size_t)p * C);
        }
        for (int ix = 0; ix < W; ix++) {
            float *restrict dst = row + (size_t)(ix + p) * C;
            const float *restrict src = x + (size_t)iy * W + ix;
            for (int c = 0; c < C; c++) dst[c] = src[(size_t)c * H * W];
        }
    }
}

/* The adjoint of to_channels_last: dx [C, H, W] = the interior of image. */
static void from_channels_last(const mc_conv2d_shape *s, const float *image, float *dx) {
    const int C = s->c, H = s->h, W = s->w, p = s->pad, PW = W + 2 * p;
    for (int iy = 0; iy < H; iy++)
        for (int ix = 0; ix < W; ix++) {
            const float *restrict src = image + ((size_t)(iy + p) * PW + ix + p) * C;
            float *restrict dst = dx + (size_t)iy * W + ix;
            for (int c = 0; c < C; c++) dst[(size_t)c * H * W] = src[c];
        }
}

/* rows [P, K] of one image from its channels-last copy. */
static void image_rows(const mc_conv2d_shape *s, const float *image, float *rows) {
    const int C = s->c, PW = s->w + 2 * s->pad, st = s->stride;
    const size_t run = (size_t)s->kw * C;
    for (int oy = 0; oy < s->oh; oy++)
        for (int ox = 0; ox < s->ow; ox++)
            for (int ki = 0; ki < s->kh; ki++, rows += run)
                memcpy(rows, image + ((size_t)(oy * st + ki) * PW + (size_t)ox * st) * C, sizeof(float) * run);
}

/* The adjoint: image (zeroed here) = the sum of rows [P, K] over the windows. */
static void add_image_rows(const mc_conv2d_shape *s, const float *rows, float *image) {
    const int C = s->c, PW = s->w + 2 * s->pad, st = s->stride;
    const size_t run = (size_t)s->kw * C;
    memset(image, 0, sizeof(float) * padded_image(s));
    for (int oy = 0; oy < s->oh; oy++)
        for (int ox = 0; ox < s->ow; ox++)
            for (int ki = 0; ki < s->kh; ki++, rows += run) {
                float *restrict dst = image + ((size_t)(oy * st + ki) * PW + (size_t)ox * st) * C;
                const float *restrict src = rows;
                for (size_t j = 0; j < run; j++) dst[j] += src[j];
            }
}

/* The chunk's rows [nb*P, K] from images n0 ... n0+nb-1 of x. */
static void rows_chunk(const mc_conv2d_shape *s, const float *x, int n0, int nb, row_workspace *w) {
    const size_t in_image = (size_t)s->c * s->h * s->w, per_image = ohw(s) * ckk(s);
    for (int i = 0; i < nb; i++) {
        to_channels_last(s, x + (n0 + i) * in_image, w->image);
        image_rows(s, w->image, w->rows + i * per_image);
    }
}

/* dx for images n0 ... n0+nb-1 from the chunk's row gradients. */
static void unrows_chunk(const mc_conv2d_shape *s, int n0, int nb, row_workspace *w, float *dx) {
    const size_t in_image = (size_t)s->c * s->h * s->w, per_image = ohw(s) * ckk(s);
    for (int i = 0; i < nb; i++) {
        add_image_rows(s, w->rows + i * per_image, w->image);
        from_channels_last(s, w->image, dx + (n0 + i) * in_image);
    }
}

static void im2row_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b, float *y, float *ws) {
    row_workspace w = split_rows(s, ws);
    const int K = ckk(s);
    permute_weights(s, W, w.wp);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        rows_chunk(s, x, n0, nb, &w);
        mc_gemm(0, 1, s->o, cols, K, 1.0f, w.wp, K, w.rows, K, 0.0f, w.t1, cols);
        scatter_chunk(s, w.t1, b, n0, nb, y);
    }
}

static void im2row_backward(const mc_conv2d_shape *s, const float *x, const float *W, const float *dy, float *dx,
                            float *dW, float *ws) {
    row_workspace w = split_rows(s, ws);
    const int K = ckk(s);
    permute_weights(s, W, w.wp);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        gather_chunk(s, dy, n0, nb, w.t1);
        rows_chunk(s, x, n0, nb, &w);
        mc_gemm(0, 0, s->o, K, cols, 1.0f, w.t1, cols, w.rows, K, n0 ? 1.0f : 0.0f, w.g, K);
        if (dx) {
            mc_gemm(1, 0, cols, K, s->o, 1.0f, w.t1, cols, w.wp, K, 0.0f, w.rows, K);
            unrows_chunk(s, n0, nb, &w, dx);
        }
    }
    unpermute_weights(s, w.g, dW);
}

static void im2row_rforward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W, const float *VW,
                            const float *Vb, float *Ry, float *ws) {
    row_workspace w = split_rows(s, ws);
    const int K = ckk(s);
    permute_weights(s, VW, w.vp);
    if (Rx) permute_weights(s, W, w.wp);
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        rows_chunk(s, x, n0, nb, &w);
        mc_gemm(0, 1, s->o, cols, K, 1.0f, w.vp, K, w.rows, K, 0.0f, w.t1, cols);
        if (Rx) {
            rows_chunk(s, Rx, n0, nb, &w);
            mc_gemm(0, 1, s->o, cols, K, 1.0f, w.wp, K, w.rows, K, 1.0f, w.t1, cols);
        }
        scatter_chunk(s, w.t1, Vb, n0, nb, Ry);
    }
}

static void im2row_rbackward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W, const float *VW,
                             const float *dy, const float *Rdy, float *Rdx, float *RdW, float *ws) {
    row_workspace w = split_rows(s, ws);
    const int K = ckk(s);
    if (Rdx) { permute_weights(s, W, w.wp); permute_weights(s, VW, w.vp); }
    for (int n0 = 0; n0 < s->n; n0 += s->chunk) {
        int nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, cols = nb * (int)ohw(s);
        gather_chunk(s, Rdy, n0, nb, w.t1);
        gather_chunk(s, dy, n0, nb, w.t2);
        rows_chunk(s, x, n0, nb, &w);
        mc_gemm(0, 0, s->o, K, cols, 1.0f, w.t1, cols, w.rows, K, n0 ? 1.0f : 0.0f, w.g, K);
        if (Rx) {
            rows_chunk(s, Rx, n0, nb, &w);
            mc_gemm(0, 0, s->o, K, cols, 1.0f, w.t2, cols, w.rows, K, 1.0f, w.g, K);
        }
        if (Rdx) {
            mc_gemm(1, 0, cols, K, s->o, 1.0f, w.t1, cols, w.wp, K, 0.0f, w.rows, K);
            mc_gemm(1, 0, cols, K, s->o, 1.0f, w.t2, cols, w.vp, K, 1.0f, w.rows, K);
            unrows_chunk(s, n0, nb, &w, Rdx);
        }
    }
    unpermute_weights(s, w.g, RdW);
}

void mc_conv2d_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b,
                       float *y, float *ws) {
    if (s->algorithm == MC_CONV_DIRECT) { mc_direct_forward(s, x, W, b, y, ws); return; }
    if (s->algorithm == MC_CONV_IM2ROW) { im2row_forward(s, x, W, b, y, ws); return; }
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
    if (s->algorithm == MC_CONV_IM2ROW) { im2row_backward(s, x, W, dy, dx, dW, ws); return; }
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
    if (s->algorithm == MC_CONV_IM2ROW) { im2row_rforward(s, x, Rx, W, VW, Vb, Ry, ws); return; }
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
    if (s->algorithm == MC_CONV_IM2ROW) { im2row_rbackward(s, x, Rx, W, VW, dy, Rdy, Rdx, RdW, ws); return; }
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

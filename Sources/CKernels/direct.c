/* Direct stride-1 convolution for layers with few input channels (an image layer's 1 or 3), where im2col's
 * GEMM has an inner dimension of only C*KH*KW (9 for one channel) and runs far below the machine's rate:
 * each output row is computed eight columns at a time as the weighted sum of C*KH*KW shifted rows of the
 * zero-padded input. The weight gradient is the same sum with dy in place of the weights, the data gradient
 * the correlation of the zero-padded dy with the flipped filters; the R-forms are sums of these terms by
 * bilinearity. Every image is padded into the workspace in turn; nothing else is allocated. */
#include "direct.h"

/* sums[o][tap] += the lanes of sum over output positions of dy[o] * xp shifted by the tap, and with
 * bias_sums, bias_sums[o] += the lanes of sum of dy[o] (read once for both). */
MC_INLINE void weight_sums(const mc_conv2d_shape *s, int kh, int kw, const float *xp, padding p,
                           const float *dy, float *sums, float *bias_sums) {
    const int OW = s->ow, OH = s->oh, C = s->c, K = kh * kw;
    for (int o = 0; o < s->o; o++)
        for (int c = 0; c < C; c++) {
            v8 acc[MAX_TAPS], bias_acc = broadcast(0.0f);
            for (int t = 0; t < K; t++) acc[t] = broadcast(0.0f);
            for (int oy = 0; oy < OH; oy++)
                for (int ox0 = 0; ox0 < OW; ox0 += LANES) {
                    const int ox = vector_start(ox0, OW);
                    const float *d_row = dy + ((size_t)o * OH + oy) * OW + ox;
                    v8 d;
                    if (OW < LANES) d = load_lanes(d_row, OW);
                    else {
                        d = load8(d_row);
                        /* a last vector overlapping the one before counts only its new columns */
                        for (int l = 0; l < ox0 - ox; l++) d[l] = 0.0f;
                    }
                    bias_acc += d;
                    for (int ki = 0; ki < kh; ki++) {
                        const float *row = xp + c * p.plane + (size_t)(oy + ki) * p.cols + ox;
                        for (int kj = 0; kj < kw; kj++) acc[ki * kw + kj] += d * load8(row + kj);
                    }
                }
            float *out = sums + ((size_t)o * taps(s) + (size_t)c * K) * LANES;
            for (int t = 0; t < K; t++) store8(out + t * LANES, load8(out + t * LANES) + acc[t]);
            if (bias_sums && c == 0) store8(bias_sums + o * LANES, load8(bias_sums + o * LANES) + bias_acc);
        }
}

/* out[i] (+)= the sum of the LANES lanes of sums[i], for i < count. */
static inline void add_lanes(const float *sums, size_t count, int accumulate, float *out) {
    for (size_t i = 0; i < count; i++) {
        float total = 0.0f;
        for (int l = 0; l < LANES; l++) total += sums[i * LANES + l];
        out[i] = accumulate ? out[i] + total : total;
    }
}

int mc_direct_applies(const mc_conv2d_shape *s) {
    return s->stride == 1 && s->pad < s->kh && s->pad < s->kw && s->kh * s->kw <= MAX_TAPS;
}

/* dy padded by KH - 1 - pad rows and KW - 1 - pad columns: dx[iy][ix] = sum W[KH-1-a][KW-1-b] dyp[iy+a][ix+b]. */
static padding output_padding(const mc_conv2d_shape *s) {
    const int top = s->kh - 1 - s->pad, left = s->kw - 1 - s->pad;
    padding p = {s->oh + 2 * top, s->ow + 2 * left + LANES - 1, top, left, 0};
    p.plane = (size_t)p.rows * p.cols;
    return p;
}

/* One image's padded planes: the input's or dy's, whichever is larger. */
static size_t planes_size(const mc_conv2d_shape *s) {
    const size_t in = (size_t)s->c * input_padding(s).plane, out = (size_t)s->o * output_padding(s).plane;
    return in > out ? in : out;
}

/* Workspace: one image's padded planes | the forward's weight table [blocks, taps, BLOCK] | the weight and
 * bias gradients' lane sums [O, taps + 1, LANES]. */
size_t mc_direct_workspace_size(const mc_conv2d_shape *s) {
    return planes_size(s) + blocks(s) * taps(s) * BLOCK + (size_t)s->o * (taps(s) + 1) * LANES;
}

/* dx (C planes, H x W) (+)= the correlation of dyp with the flipped filters of W. */
MC_INLINE void correlate_transposed(const mc_conv2d_shape *s, int kh, int kw, const float *dyp, padding p,
                                    const float *W, int accumulate, float *dx) {
    const int H = s->h, Wd = s->w, C = s->c, K = kh * kw;
    for (int c = 0; c < C; c++)
        for (int iy = 0; iy < H; iy++)
            for (int ix = 0; ix < Wd; ix += LANES) {
                const int lanes = Wd - ix < LANES ? Wd - ix : LANES;
                float *out = dx + ((size_t)c * H + iy) * Wd + ix;
                v8 acc = accumulate ? load_lanes(out, lanes) : broadcast(0.0f);
                for (int o = 0; o < s->o; o++) {
                    const float *w = W + ((size_t)o * C + c) * K;
                    for (int a = 0; a < kh; a++) {
                        const float *row = dyp + o * p.plane + (size_t)(iy + a) * p.cols + ix;
                        for (int b = 0; b < kw; b++) acc += broadcast(w[(kh - 1 - a) * kw + kw - 1 - b]) * load8(row + b);
                    }
                }
                store_lanes(out, acc, lanes);
            }
}

/* ---- over the batch; compiled once per vector level (MC_CLONES) ---- */

typedef struct { float *planes, *table, *sums; } workspace;

static workspace split(const mc_conv2d_shape *s, float *ws) {
    workspace w = {ws, ws + planes_size(s), 0};
    w.sums = w.table + blocks(s) * taps(s) * BLOCK;
    return w;
}

/* y (+)= conv(x, W) (+ bias) over the batch. */
MC_CLONES
static void forward_images(const mc_conv2d_shape *s, const float *x, const float *W, const float *bias,
                           int accumulate, float *y, workspace w) {
    const padding p = input_padding(s);
    const size_t in = (size_t)s->c * s->h * s->w, out = (size_t)s->o * s->oh * s->ow;
    weight_table(s, W, w.table);
    memset(w.planes, 0, sizeof(float) * s->c * p.plane);
    for (int n = 0; n < s->n; n++) {
        pad_planes(x + n * in, s->c, s->h, s->w, p, w.planes);
        if (s->kh == 3 && s->kw == 3) correlate(s, 3, 3, w.planes, p, w.table, bias, accumulate, y + n * out);
        else correlate(s, s->kh, s->kw, w.planes, p, w.table, bias, accumulate, y + n * out);
    }
}

/* dW (+)= corr(dy, x) over the batch, and db = the sums of dy (if db is not NULL). */
MC_CLONES
static void weight_gradient(const mc_conv2d_shape *s, const float *x, const float *dy, int accumulate,
                            float *dW, float *db, workspace w) {
    const padding p = input_padding(s);
    const size_t in = (size_t)s->c * s->h * s->w, out = (size_t)s->o * s->oh * s->ow, T = taps(s);
    float *bias_sums = db ? w.sums + (size_t)s->o * T * LANES : NULL;
    memset(w.sums, 0, sizeof(float) * s->o * (T + 1) * LANES);
    memset(w.planes, 0, sizeof(float) * s->c * p.plane);
    for (int n = 0; n < s->n; n++) {
        pad_planes(x + n * in, s->c, s->h, s->w, p, w.planes);
        if (s->kh == 3 && s->kw == 3) weight_sums(s, 3, 3, w.planes, p, dy + n * out, w.sums, bias_sums);
        else weight_sums(s, s->kh, s->kw, w.planes, p, dy + n * out, w.sums, bias_sums);
    }
    add_lanes(w.sums, (size_t)s->o * T, accumulate, dW);
    if (db) add_lanes(bias_sums, (size_t)s->o, 0, db);
}

/* dx (+)= convT(dy, W) over the batch. */
MC_CLONES
static void data_gradient(const mc_conv2d_shape *s, const float *W, const float *dy, int accumulate, float *dx,
                          workspace w) {
    const padding p = output_padding(s);
    const size_t in = (size_t)s->c * s->h * s->w, out = (size_t)s->o * s->oh * s->ow;
    memset(w.planes, 0, sizeof(float) * s->o * p.plane);
    for (int n = 0; n < s->n; n++) {
        pad_planes(dy + n * out, s->o, s->oh, s->ow, p, w.planes);
        if (s->kh == 3 && s->kw == 3) correlate_transposed(s, 3, 3, w.planes, p, W, accumulate, dx + n * in);
        else correlate_transposed(s, s->kh, s->kw, w.planes, p, W, accumulate, dx + n * in);
    }
}

void mc_direct_forward(const mc_conv2d_shape *s, const float *x, const float *W, const float *b, float *y,
                       float *ws) {
    forward_images(s, x, W, b, 0, y, split(s, ws));
}

void mc_direct_backward(const mc_conv2d_shape *s, const float *x, const float *W, const float *dy, float *dx,
                        float *dW, float *db, float *ws) {
    const workspace w = split(s, ws);
    weight_gradient(s, x, dy, 0, dW, db, w);
    if (dx) data_gradient(s, W, dy, 0, dx, w);
}

void mc_direct_rforward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                        const float *VW, const float *Vb, float *Ry, float *ws) {
    const workspace w = split(s, ws);
    forward_images(s, x, VW, Vb, 0, Ry, w);
    if (Rx) forward_images(s, Rx, W, NULL, 1, Ry, w);
}

void mc_direct_rbackward(const mc_conv2d_shape *s, const float *x, const float *Rx, const float *W,
                         const float *VW, const float *dy, const float *Rdy, float *Rdx, float *RdW, float *Rdb,
                         float *ws) {
    const workspace w = split(s, ws);
    weight_gradient(s, x, Rdy, 0, RdW, Rdb, w);
    if (Rx) weight_gradient(s, Rx, dy, 1, RdW, NULL, w);
    if (Rdx) {
        data_gradient(s, W, Rdy, 0, Rdx, w);
        data_gradient(s, VW, dy, 1, Rdx, w);
    }
}

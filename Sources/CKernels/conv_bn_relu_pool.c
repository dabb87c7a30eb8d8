/* A network's input layer as one step: the direct convolution of the input (direct.c), then batch
 * normalisation with batch statistics, ReLU and 2x2 max-pooling (bn_relu_pool.c) — Conv-4's first block —
 * with the convolution's output never stored.
 *
 * On an image's one or three channels a convolution output costs 9 or 27 multiply-adds, less than its trip
 * through memory: unfused, the [N, O, H, W] output is written once and read four times, and its gradient
 * written and read once more.
 *
 * The forward pass recomputes the output, a few planes at a time in cache: once for the batch moments, once
 * for the pooled values. Its values are the unfused kernels' own, computed by the same code in the same order:
 * it equals mc_direct_forward then mc_bn_relu_pool_forward (and mc_batchnorm_update_running) to the bit.
 *
 * The backward pass needs no output at all. With X_t(p) the input under tap t of the filter at output position
 * p, z = W.X + b the convolution's output, xhat = (z - mean) r and dz = r (g d - A - xhat B) batch-norm's
 * gradient (d: dy routed to the pool's winners, 0 elsewhere; A, B as backward_coefficients'), every sum it
 * takes is linear in z:
 *   sum d xhat      = r (W.P + (b - mean) sum d),                P_t = sum over winners of d X_t
 *   dW_t = sum dz X_t = r (g P_t - A S_t - B r (sum_u W_u G_ut + (b - mean) S_t)),
 *   db   = sum dz     = r (g sum d - A m - B r (W.S + (b - mean) m)),
 * with S_t = sum X_t and G_tu = sum X_t X_u over the batch: a T x T Gram matrix of the patches, the same for
 * every channel. So the pass costs T multiply-adds per winner and channel (a quarter of the positions) plus
 * the Gram matrix, where recomputing the output for batch-norm's sums and then its gradient for dW would cost
 * 3 T at every position. It equals mc_bn_relu_pool_backward then mc_direct_backward's dW and db up to
 * rounding, not to the bit. (The forward pass's moments could come from G and S too: results/bench/README.md
 * has why they do not.) */
#include "bn_relu_pool.h"
#include "direct.h"

/* A part's forward workspace: the padded image | the weight table of a channel block | BLOCK convolution
 * planes. */
typedef struct { float *image, *table, *z; } workspace;

/* Patch rows are padded with zeros to whole vectors. */
static size_t patch_width(const mc_conv2d_shape *s) { return (taps(s) + LANES - 1) / LANES * LANES; }

/* A part's backward workspace: the padded image | the image's patch rows [OH * OW, patch_width] | the image's
 * Gram matrix [T, T] and patch sums [patch_width] in float | then, aligned for doubles, the batch's Gram
 * matrix [T, T] and patch sums [T], and for each of the part's channels (at most O) its sums P [T] and sum d. */
typedef struct { float *image, *X, *gram, *sums; double *G, *S, *P, *sd; } gram_workspace;

static gram_workspace gram_split(const mc_conv2d_shape *s, float *ws) {
    const size_t T = taps(s), TP = patch_width(s);
    gram_workspace k = {ws, 0, 0, 0, 0, 0, 0, 0};
    k.X = k.image + (size_t)s->c * input_padding(s).plane;
    k.gram = k.X + (size_t)s->oh * s->ow * TP;
    k.sums = k.gram + T * T;
    k.G = (double *)(((uintptr_t)(k.sums + TP) + sizeof(double) - 1) & ~(uintptr_t)(sizeof(double) - 1));
    k.S = k.G + T * T;
    k.P = k.S + T;
    k.sd = k.P + (size_t)s->o * T;
    return k;
}

/* The backward pass keeps a channel's patch sums in registers or on the stack: up to 64 vectors of taps. */
enum { MAX_PATCH_VECTORS = 64 };

int mc_conv_bn_relu_pool_applies(const mc_conv2d_shape *s) {
    return s->algorithm == MC_CONV_DIRECT && patch_width(s) <= (size_t)MAX_PATCH_VECTORS * LANES;
}

size_t mc_conv_bn_relu_pool_workspace_size(const mc_conv2d_shape *s) {
    const size_t planes = (size_t)s->oh * s->ow, T = taps(s), image = (size_t)s->c * input_padding(s).plane;
    const size_t forward = image + (size_t)MC_BN_CHANNELS * T + BLOCK * planes;
    const size_t doubles = T * T + T + (size_t)s->o * (T + 1);
    const size_t backward = image + planes * patch_width(s) + T * T + patch_width(s) + 1 + 2 * doubles;
    return forward > backward ? forward : backward;
}

/* Channel ch's convolution plane in k.z, among the group that starts at g0. */
#define Z(ch) (k.z + (size_t)((ch) - g0) * s)

static workspace split(const mc_conv2d_shape *s, float *ws) {
    workspace k = {ws, 0, 0};
    k.table = k.image + (size_t)s->c * input_padding(s).plane;
    k.z = k.table + (size_t)MC_BN_CHANNELS * taps(s);
    return k;
}

/* The weight table of output channels cb ..< ce. */
static void block_table(const mc_conv2d_shape *s, const float *W, int cb, int ce, float *table) {
    mc_conv2d_shape b = *s;
    b.o = ce - cb;
    weight_table(&b, W + (size_t)cb * taps(s), table);
}

/* The convolution planes [count, OH, OW] of channels g0 ..< g0 + count of the block cb ..< ce (count: up to
 * BLOCK) on the padded image in k->image, into k->z; returns count. */
MC_INLINE int convolve_group(const mc_conv2d_shape *s, const workspace *k, padding p, const float *bias, int cb, int ce,
                             int g0) {
    mc_conv2d_shape g = *s;
    g.n = 1;
    g.o = ce - g0 < BLOCK ? ce - g0 : BLOCK;
    const float *table = k->table + (size_t)(g0 - cb) * taps(s);
    if (s->kh == 3 && s->kw == 3) correlate(&g, 3, 3, k->image, p, table, bias + g0, 0, k->z);
    else correlate(&g, s->kh, s->kw, k->image, p, table, bias + g0, 0, k->z);
    return g.o;
}

/* The patch rows of the padded image xp: row p = oy * OW + ox holds the T input values under the filter at
 * (oy, ox), in W's (c, ki, kj) order, then zeros up to TP. */
static void patch_rows(const mc_conv2d_shape *s, const float *xp, padding p, size_t TP, float *X) {
    for (int oy = 0; oy < s->oh; oy++)
        for (int ox = 0; ox < s->ow; ox++) {
            float *row = X + ((size_t)oy * s->ow + ox) * TP;
            size_t t = 0;
            for (int c = 0; c < s->c; c++)
                for (int ki = 0; ki < s->kh; ki++)
                    for (int kj = 0; kj < s->kw; kj++) row[t++] = xp[c * p.plane + (size_t)(oy + ki) * p.cols + ox + kj];
            for (; t < TP; t++) row[t] = 0.0f;
        }
}

/* P[0 ..< 8 NV] = the sum over a pooled plane's winners (ai[o] >= 0) of d[o] times the winner's patch row, and
 * *sd = the sum of those d[o]: two interleaved chains, so that the adds do not wait on one another. */
MC_INLINE void winner_patch_sums(const int NV, int os, const float *restrict X, const int32_t *restrict ai,
                                 const float *restrict d, float *restrict P, float *sd) {
    v8 a[MAX_PATCH_VECTORS], b[MAX_PATCH_VECTORS];
    for (int q = 0; q < NV; q++) a[q] = b[q] = broadcast(0.0f);
    float sa = 0.0f, sb = 0.0f;
    const size_t TP = (size_t)NV * LANES;
    int o = 0;
    for (; o + 2 <= os; o += 2) {
        const int j0 = ai[o], j1 = ai[o + 1];
        const float d0 = j0 >= 0 ? d[o] : 0.0f, d1 = j1 >= 0 ? d[o + 1] : 0.0f;
        const float *x0 = X + (size_t)(j0 >= 0 ? j0 : 0) * TP, *x1 = X + (size_t)(j1 >= 0 ? j1 : 0) * TP;
        sa += d0;
        sb += d1;
        for (int q = 0; q < NV; q++) {
            a[q] += broadcast(d0) * load8(x0 + q * LANES);
            b[q] += broadcast(d1) * load8(x1 + q * LANES);
        }
    }
    if (o < os && ai[o] >= 0) {
        const float *x0 = X + (size_t)ai[o] * TP;
        sa += d[o];
        for (int q = 0; q < NV; q++) a[q] += broadcast(d[o]) * load8(x0 + q * LANES);
    }
    for (int q = 0; q < NV; q++) store8(P + q * LANES, a[q] + b[q]);
    *sd = sa + sb;
}

/* winner_patch_sums with NV a constant for the common patch widths (a 3x3 filter on one channel: 2 vectors). */
MC_INLINE void winner_patch_sums_any(int NV, int os, const float *X, const int32_t *ai, const float *d, float *P, float *sd) {
    switch (NV) {
    case 1: winner_patch_sums(1, os, X, ai, d, P, sd); break;
    case 2: winner_patch_sums(2, os, X, ai, d, P, sd); break;
    case 4: winner_patch_sums(4, os, X, ai, d, P, sd); break;
    default: winner_patch_sums(NV, os, X, ai, d, P, sd); break;
    }
}

MC_CLONES void mc_conv_bn_relu_pool_forward(const mc_conv2d_shape *cs, int c0, int c1, float eps, float momentum,
                                            const float *x, const float *W, const float *bias, const float *gamma,
                                            const float *beta, float *y, int32_t *argmax, float *mean, float *invstd,
                                            float *running_mean, float *running_var, float *ws) {
    const int n = cs->n, c = cs->o, h = cs->oh, w = cs->ow, s = h * w, os = (h / 2) * (w / 2);
    const size_t in = (size_t)cs->c * cs->h * cs->w;
    const padding p = input_padding(cs);
    const workspace k = split(cs, ws);
    const double m = (double)n * s;
    memset(k.image, 0, sizeof(float) * cs->c * p.plane);
    FOR_BLOCK(cb, ce) {
        block_table(cs, W, cb, ce, k.table);
        /* The moments, image by image as block_moments takes them. */
        double mu[MC_BN_CHANNELS] = {0}, m2[MC_BN_CHANNELS] = {0};
        for (int i = 0; i < n; i++) {
            pad_planes(x + i * in, cs->c, cs->h, cs->w, p, k.image);
            for (int g0 = cb; g0 < ce; g0 += BLOCK)
                for (int ch = g0, end = g0 + convolve_group(cs, &k, p, bias, cb, ce, g0); ch < end; ch++)
                    merge_plane_moments(Z(ch), s, (double)i * s, &mu[ch - cb], &m2[ch - cb]);
        }
        for (int ch = cb; ch < ce; ch++) {
            const double var = biased_variance(m2[ch - cb], m);
            save_statistics(mu[ch - cb], var, eps, &mean[ch], &invstd[ch]);
            if (running_mean) update_running(m, mu[ch - cb], var, momentum, &running_mean[ch], &running_var[ch]);
        }
        for (int i = 0; i < n; i++) {
            pad_planes(x + i * in, cs->c, cs->h, cs->w, p, k.image);
            for (int g0 = cb; g0 < ce; g0 += BLOCK)
                for (int ch = g0, end = g0 + convolve_group(cs, &k, p, bias, cb, ce, g0); ch < end; ch++)
                    relu_pool_plane(h, w, Z(ch), mean[ch], invstd[ch], gamma[ch], beta[ch], POOLED(y, i), POOLED(argmax, i));
        }
    }
}

MC_CLONES void mc_conv_bn_relu_pool_backward(const mc_conv2d_shape *cs, int c0, int c1, const float *x, const float *W,
                                             const float *bias, const float *mean, const float *invstd,
                                             const float *gamma, const int32_t *argmax, const float *dy, float *dW,
                                             float *db, float *dgamma, float *dbeta, float *ws) {
    const int n = cs->n, c = cs->o, s = cs->oh * cs->ow, os = (cs->oh / 2) * (cs->ow / 2), T = (int)taps(cs);
    const size_t in = (size_t)cs->c * cs->h * cs->w, TP = patch_width(cs), channels = (size_t)(c1 - c0);
    const padding p = input_padding(cs);
    const gram_workspace k = gram_split(cs, ws);
    memset(k.image, 0, sizeof(float) * cs->c * p.plane);
    memset(k.G, 0, sizeof(double) * ((size_t)T * T + T));
    memset(k.P, 0, sizeof(double) * channels * T);
    memset(k.sd, 0, sizeof(double) * channels);
    for (int i = 0; i < n; i++) {
        pad_planes(x + i * in, cs->c, cs->h, cs->w, p, k.image);
        patch_rows(cs, k.image, p, TP, k.X);
        /* The image's part of G and S, summed in float over its positions and in double over the images. */
        mc_gemm(1, 0, T, T, s, 1.0f, k.X, (int)TP, k.X, (int)TP, 0.0f, k.gram, T);
        mc_sum_rows(s, (int)TP, k.X, k.sums, 0);
        for (int t = 0; t < T * T; t++) k.G[t] += k.gram[t];
        for (int t = 0; t < T; t++) k.S[t] += k.sums[t];
        for (int ch = c0; ch < c1; ch++) {
            float P[MAX_PATCH_VECTORS * LANES], sd;
            winner_patch_sums_any((int)(TP / LANES), os, k.X, POOLED(argmax, i), POOLED(dy, i), P, &sd);
            double *Pc = k.P + (size_t)(ch - c0) * T;
            for (int t = 0; t < T; t++) Pc[t] += P[t];
            k.sd[ch - c0] += sd;
        }
    }
    const double m = (double)n * s;
    for (int ch = c0; ch < c1; ch++) {
        const float *w = W + (size_t)ch * T;
        const double *Pc = k.P + (size_t)(ch - c0) * T, sdy = k.sd[ch - c0];
        const double r = invstd[ch], g = gamma[ch], shift = (double)bias[ch] - mean[ch];
        double wp = 0.0, wsum = 0.0;
        for (int t = 0; t < T; t++) { wp += w[t] * Pc[t]; wsum += w[t] * k.S[t]; }
        const double sdyx = r * (wp + shift * sdy), A = g * sdy / m, B = g * sdyx / m;
        dgamma[ch] = (float)sdyx;
        dbeta[ch] = (float)sdy;
        for (int t = 0; t < T; t++) {
            double q = shift * k.S[t];   /* sum over the batch of (z - mean) X_t */
            for (int u = 0; u < T; u++) q += w[u] * k.G[(size_t)u * T + t];
            dW[(size_t)ch * T + t] = (float)(r * (g * Pc[t] - A * k.S[t] - B * r * q));
        }
        db[ch] = (float)(r * (g * sdy - A * m - B * r * (wsum + shift * m)));
    }
}

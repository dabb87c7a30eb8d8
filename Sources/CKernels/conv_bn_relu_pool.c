/* A network's input layer as one step: the direct convolution of the input (direct.c), then batch
 * normalisation with batch statistics, ReLU and 2x2 max-pooling (bn_relu_pool.c) — Conv-4's first block —
 * with the convolution's output recomputed, a few planes at a time in cache, by each pass that reads it
 * instead of being stored.
 *
 * On an image's one or three channels a convolution output costs 9 or 27 multiply-adds, less than its trip
 * through memory: unfused, the [N, O, H, W] output is written once and read four times, and its gradient
 * written and read once more. Here the forward pass convolves twice (for the batch moments, then for the
 * pooled values) and the backward pass twice (for batch-norm's sums over the winners, then for dx, which goes
 * straight into the weight-gradient sums), and nothing of that size is written. The values are the unfused
 * kernels' own, computed by the same code in the same order: the forward pass equals mc_direct_forward then
 * mc_bn_relu_pool_forward (and mc_batchnorm_update_running) to the bit, the backward pass
 * mc_bn_relu_pool_backward then mc_direct_backward's weight and bias gradients. */
#include "bn_relu_pool.h"
#include "direct.h"

/* A part's workspace: the padded image | the weight table of a channel block | BLOCK convolution planes | one
 * dx plane | the block's weight and bias gradient lane sums [MC_BN_CHANNELS, taps + 1, LANES]. */
typedef struct { float *image, *table, *z, *dz, *sums; } workspace;

size_t mc_conv_bn_relu_pool_workspace_size(const mc_conv2d_shape *s) {
    const size_t planes = (size_t)s->oh * s->ow, T = taps(s);
    return (size_t)s->c * input_padding(s).plane + (size_t)MC_BN_CHANNELS * T + BLOCK * planes + planes
         + (size_t)MC_BN_CHANNELS * (T + 1) * LANES;
}

/* Channel ch's convolution plane in k.z, among the group that starts at g0. */
#define Z(ch) (k.z + (size_t)((ch) - g0) * s)

static workspace split(const mc_conv2d_shape *s, float *ws) {
    const size_t planes = (size_t)s->oh * s->ow;
    workspace k = {ws, 0, 0, 0, 0};
    k.table = k.image + (size_t)s->c * input_padding(s).plane;
    k.z = k.table + (size_t)MC_BN_CHANNELS * taps(s);
    k.dz = k.z + BLOCK * planes;
    k.sums = k.dz + planes;
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

/* One channel's weight and bias gradient lane sums over the image xp with dy = dz. */
MC_INLINE void channel_sums(const mc_conv2d_shape *s, const float *xp, padding p, const float *dz, float *sums,
                            float *bias_sums) {
    mc_conv2d_shape g = *s;
    g.n = 1;
    g.o = 1;
    if (s->kh == 3 && s->kw == 3) weight_sums(&g, 3, 3, xp, p, dz, sums, bias_sums);
    else weight_sums(&g, s->kh, s->kw, xp, p, dz, sums, bias_sums);
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
    const int n = cs->n, c = cs->o, h = cs->oh, w = cs->ow, s = h * w, os = (h / 2) * (w / 2);
    const size_t in = (size_t)cs->c * cs->h * cs->w, T = taps(cs);
    const padding p = input_padding(cs);
    const workspace k = split(cs, ws);
    memset(k.image, 0, sizeof(float) * cs->c * p.plane);
    FOR_BLOCK(cb, ce) {
        block_table(cs, W, cb, ce, k.table);
        double sdy[MC_BN_CHANNELS] = {0}, sdyx[MC_BN_CHANNELS] = {0};
        for (int i = 0; i < n; i++) {
            pad_planes(x + i * in, cs->c, cs->h, cs->w, p, k.image);
            for (int g0 = cb; g0 < ce; g0 += BLOCK)
                for (int ch = g0, end = g0 + convolve_group(cs, &k, p, bias, cb, ce, g0); ch < end; ch++)
                    winner_sums(os, Z(ch), mean[ch], invstd[ch], POOLED(argmax, i), POOLED(dy, i), &sdy[ch - cb], &sdyx[ch - cb]);
        }
        float A[MC_BN_CHANNELS], B[MC_BN_CHANNELS];
        backward_coefficients(cb, ce, (double)n * s, gamma, sdy, sdyx, dgamma, dbeta, A, B);
        /* dx plane by plane into the sums of the weight gradient, laid out as the direct kernel's. */
        const size_t channels = (size_t)(ce - cb);
        float *bias_sums = k.sums + channels * T * LANES;
        memset(k.sums, 0, sizeof(float) * channels * (T + 1) * LANES);
        for (int i = 0; i < n; i++) {
            pad_planes(x + i * in, cs->c, cs->h, cs->w, p, k.image);
            for (int g0 = cb; g0 < ce; g0 += BLOCK)
                for (int ch = g0, end = g0 + convolve_group(cs, &k, p, bias, cb, ce, g0); ch < end; ch++) {
                    pooled_dx_plane(s, os, Z(ch), POOLED(argmax, i), POOLED(dy, i), mean[ch], invstd[ch], gamma[ch],
                                    A[ch - cb], B[ch - cb], k.dz);
                    channel_sums(cs, k.image, p, k.dz, k.sums + (ch - cb) * T * LANES, bias_sums + (ch - cb) * LANES);
                }
        }
        add_lanes(k.sums, channels * T, 0, dW + (size_t)cb * T);
        add_lanes(bias_sums, channels, 0, db + cb);
    }
}

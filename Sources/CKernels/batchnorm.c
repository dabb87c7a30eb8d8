/* Batch normalisation over [N, C, S]: batch-statistics (training / transductive) mode with every
 * derivative taken through the batch mean and variance, and running-statistics (inference) mode. */
#include "ckernels.h"
#include "reduce.h"
#include <math.h>

/* Element (i, ch, j) of an [N, C, S] tensor. */
#define AT(p, i, j) (p)[((size_t)(i) * c + ch) * s + (j)]
#define FOR_CHANNEL(i, j) for (int i = 0; i < n; i++) for (int j = 0; j < s; j++)
/* Plane (i, ch): the S contiguous values of sample i in channel ch. */
#define PLANE(p, i) ((p) + ((size_t)(i) * c + ch) * s)

/* Mean and biased variance of channel ch (the variance about the float mean, in two passes). */
static void channel_moments(int n, int c, int s, int ch, const float *x, double *mean, double *var) {
    const double m = (double)n * s;
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) sum += sum_plane(PLANE(x, i), s);
    const float fm = (float)(sum / m);
    for (int i = 0; i < n; i++) sq += centered_squares_plane(PLANE(x, i), fm, s);
    *mean = sum / m;
    *var = sq / m;
}

void mc_batchnorm_forward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                          const float *beta, float *y, float *xhat, float *invstd) {
    for (int ch = c0; ch < c1; ch++) {
        double mean, var;
        channel_moments(n, c, s, ch, x, &mean, &var);
        const float r = (float)(1.0 / sqrt(var + eps)), fm = (float)mean, g = gamma[ch], b = beta[ch];
        invstd[ch] = r;
        for (int i = 0; i < n; i++) {
            const float *restrict xi = PLANE(x, i);
            float *restrict hi = PLANE(xhat, i), *restrict yi = PLANE(y, i);
            for (int j = 0; j < s; j++) { const float xh = (xi[j] - fm) * r; hi[j] = xh; yi[j] = g * xh + b; }
        }
    }
}

void mc_batchnorm_update_running(int n, int c, int s, int c0, int c1, float momentum, const float *x,
                                 float *running_mean, float *running_var) {
    const double m = (double)n * s;
    for (int ch = c0; ch < c1; ch++) {
        double mean, var;
        channel_moments(n, c, s, ch, x, &mean, &var);
        const double unbiased = m > 1 ? var * m / (m - 1) : 0.0;
        running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
        running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
    }
}

void mc_batchnorm_backward(int n, int c, int s, int c0, int c1, const float *xhat, const float *invstd, const float *gamma,
                           const float *dy, float *dx, float *dgamma, float *dbeta) {
    const double m = (double)n * s;
    for (int ch = c0; ch < c1; ch++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int i = 0; i < n; i++) { sdy += sum_plane(PLANE(dy, i), s); sdyx += dot_plane(PLANE(dy, i), PLANE(xhat, i), s); }
        dgamma[ch] = (float)sdyx;
        dbeta[ch] = (float)sdy;
        if (!dx) continue;
        const float g = gamma[ch], r = invstd[ch];
        const float A = (float)(g * sdy / m), B = (float)(g * sdyx / m); /* mean(dxhat), mean(dxhat*xhat) */
        for (int i = 0; i < n; i++) {
            const float *restrict d = PLANE(dy, i), *restrict xh = PLANE(xhat, i);
            float *restrict out = PLANE(dx, i);
            for (int j = 0; j < s; j++) out[j] = r * (g * d[j] - A - xh[j] * B);
        }
    }
}

void mc_batchnorm_rforward(int n, int c, int s, int c0, int c1, const float *xhat, const float *invstd, const float *gamma,
                           const float *Rx, const float *Vgamma, const float *Vbeta,
                           float *Ry, float *Rxhat, float *Rinvstd) {
    const double m = (double)n * s;
    for (int ch = c0; ch < c1; ch++) {
        const float r = invstd[ch], g = gamma[ch], vg = Vgamma[ch], vb = Vbeta[ch];
        float mRx = 0.0f, mxRx = 0.0f;
        if (Rx) {
            double a = 0.0, b = 0.0;
            for (int i = 0; i < n; i++) { a += sum_plane(PLANE(Rx, i), s); b += dot_plane(PLANE(xhat, i), PLANE(Rx, i), s); }
            mRx = (float)(a / m);
            mxRx = (float)(b / m);
        }
        Rinvstd[ch] = -r * r * mxRx;
        for (int i = 0; i < n; i++) {
            const float *restrict xh = PLANE(xhat, i);
            float *restrict rxh = PLANE(Rxhat, i), *restrict ry = PLANE(Ry, i);
            if (Rx) {
                const float *restrict rx = PLANE(Rx, i);
                for (int j = 0; j < s; j++) rxh[j] = r * (rx[j] - mRx - xh[j] * mxRx);
            } else {
                for (int j = 0; j < s; j++) rxh[j] = 0.0f;
            }
            for (int j = 0; j < s; j++) ry[j] = g * rxh[j] + vg * xh[j] + vb;
        }
    }
}

void mc_batchnorm_rbackward(int n, int c, int s, int c0, int c1, const float *xhat, const float *invstd, const float *gamma,
                            const float *Vgamma, const float *dy, const float *Rdy,
                            const float *Rxhat, const float *Rinvstd,
                            float *Rdx, float *Rdgamma, float *Rdbeta) {
    const double m = (double)n * s;
    for (int ch = c0; ch < c1; ch++) {
        const float g = gamma[ch], vg = Vgamma[ch];
        double sdy = 0.0, sdyx = 0.0, sRdy = 0.0, sRdyx = 0.0, sdyRx = 0.0;
        for (int i = 0; i < n; i++) {
            const float *d = PLANE(dy, i), *rd = PLANE(Rdy, i), *xh = PLANE(xhat, i);
            sdy += sum_plane(d, s); sdyx += dot_plane(d, xh, s);
            sRdy += sum_plane(rd, s); sRdyx += dot_plane(rd, xh, s); sdyRx += dot_plane(d, PLANE(Rxhat, i), s);
        }
        Rdgamma[ch] = (float)(sRdyx + sdyRx);
        Rdbeta[ch] = (float)sRdy;
        if (!Rdx) continue;
        /* Means of dxhat = g dy and Rdxhat = g Rdy + vg dy, and of their products with xhat / Rxhat. */
        const float A = (float)(g * sdy / m), B = (float)(g * sdyx / m);
        const float RA = (float)((g * sRdy + vg * sdy) / m);
        const float RB = (float)((g * sRdyx + vg * sdyx + g * sdyRx) / m);
        const float r = invstd[ch], Rr = Rinvstd[ch];
        for (int i = 0; i < n; i++) {
            const float *restrict d = PLANE(dy, i), *restrict rd = PLANE(Rdy, i);
            const float *restrict xh = PLANE(xhat, i), *restrict rxh = PLANE(Rxhat, i);
            float *restrict out = PLANE(Rdx, i);
            for (int j = 0; j < s; j++) {
                const float dxh = g * d[j], Rdxh = g * rd[j] + vg * d[j];
                out[j] = Rr * (dxh - A - xh[j] * B) + r * (Rdxh - RA - rxh[j] * B - xh[j] * RB);
            }
        }
    }
}

void mc_batchnorm_inference_forward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                                    const float *beta, const float *mean, const float *var, float *y) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        FOR_CHANNEL(i, j) AT(y, i, j) = gamma[ch] * (AT(x, i, j) - mean[ch]) * r + beta[ch];
    }
}

void mc_batchnorm_inference_backward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *gamma,
                                     const float *mean, const float *var, const float *dy,
                                     float *dx, float *dgamma, float *dbeta) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        double sg = 0.0, sb = 0.0;
        FOR_CHANNEL(i, j) {
            const float d = AT(dy, i, j);
            sg += (double)d * (AT(x, i, j) - mean[ch]) * r;
            sb += d;
            if (dx) AT(dx, i, j) = gamma[ch] * r * d;
        }
        dgamma[ch] = (float)sg;
        dbeta[ch] = (float)sb;
    }
}

void mc_batchnorm_inference_rforward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *Rx,
                                     const float *gamma, const float *Vgamma, const float *Vbeta,
                                     const float *mean, const float *var, float *Ry) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        FOR_CHANNEL(i, j)
            AT(Ry, i, j) = (Rx ? gamma[ch] * r * AT(Rx, i, j) : 0.0f)
                         + Vgamma[ch] * (AT(x, i, j) - mean[ch]) * r + Vbeta[ch];
    }
}

void mc_batchnorm_inference_rbackward(int n, int c, int s, int c0, int c1, float eps, const float *x, const float *Rx,
                                      const float *gamma, const float *Vgamma, const float *mean,
                                      const float *var, const float *dy, const float *Rdy,
                                      float *Rdx, float *Rdgamma, float *Rdbeta) {
    for (int ch = c0; ch < c1; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        double sg = 0.0, sb = 0.0;
        FOR_CHANNEL(i, j) {
            const float d = AT(dy, i, j), rd = AT(Rdy, i, j);
            sg += ((double)rd * (AT(x, i, j) - mean[ch]) + (Rx ? (double)d * AT(Rx, i, j) : 0.0)) * r;
            sb += rd;
            if (Rdx) AT(Rdx, i, j) = r * (gamma[ch] * rd + Vgamma[ch] * d);
        }
        Rdgamma[ch] = (float)sg;
        Rdbeta[ch] = (float)sb;
    }
}

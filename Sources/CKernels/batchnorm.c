/* Batch normalisation over [N, C, S]: batch-statistics (training / transductive) mode with every
 * derivative taken through the batch mean and variance, and running-statistics (inference) mode. */
#include "ckernels.h"
#include <math.h>

/* Element (i, ch, j) of an [N, C, S] tensor. */
#define AT(p, i, j) (p)[((size_t)(i) * c + ch) * s + (j)]
#define FOR_CHANNEL(i, j) for (int i = 0; i < n; i++) for (int j = 0; j < s; j++)

void mc_batchnorm_forward(int n, int c, int s, float eps, const float *x, const float *gamma,
                          const float *beta, float *y, float *xhat, float *invstd) {
    const double m = (double)n * s;
    for (int ch = 0; ch < c; ch++) {
        double sum = 0.0, sq = 0.0;
        FOR_CHANNEL(i, j) sum += AT(x, i, j);
        const double mean = sum / m;
        FOR_CHANNEL(i, j) { double d = AT(x, i, j) - mean; sq += d * d; }
        const float r = (float)(1.0 / sqrt(sq / m + eps));
        const float fm = (float)mean;
        invstd[ch] = r;
        FOR_CHANNEL(i, j) {
            float xh = (AT(x, i, j) - fm) * r;
            AT(xhat, i, j) = xh;
            AT(y, i, j) = gamma[ch] * xh + beta[ch];
        }
    }
}

void mc_batchnorm_update_running(int n, int c, int s, float momentum, const float *x,
                                 float *running_mean, float *running_var) {
    const double m = (double)n * s;
    for (int ch = 0; ch < c; ch++) {
        double sum = 0.0, sq = 0.0;
        FOR_CHANNEL(i, j) sum += AT(x, i, j);
        const double mean = sum / m;
        FOR_CHANNEL(i, j) { double d = AT(x, i, j) - mean; sq += d * d; }
        const double var = m > 1 ? sq / (m - 1) : 0.0;
        running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
        running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * var);
    }
}

void mc_batchnorm_backward(int n, int c, int s, const float *xhat, const float *invstd, const float *gamma,
                           const float *dy, float *dx, float *dgamma, float *dbeta) {
    const double m = (double)n * s;
    for (int ch = 0; ch < c; ch++) {
        double sdy = 0.0, sdyx = 0.0;
        FOR_CHANNEL(i, j) { sdy += AT(dy, i, j); sdyx += (double)AT(dy, i, j) * AT(xhat, i, j); }
        dgamma[ch] = (float)sdyx;
        dbeta[ch] = (float)sdy;
        if (!dx) continue;
        const float g = gamma[ch], r = invstd[ch];
        const float A = (float)(g * sdy / m), B = (float)(g * sdyx / m); /* mean(dxhat), mean(dxhat*xhat) */
        FOR_CHANNEL(i, j) AT(dx, i, j) = r * (g * AT(dy, i, j) - A - AT(xhat, i, j) * B);
    }
}

void mc_batchnorm_rforward(int n, int c, int s, const float *xhat, const float *invstd, const float *gamma,
                           const float *Rx, const float *Vgamma, const float *Vbeta,
                           float *Ry, float *Rxhat, float *Rinvstd) {
    const double m = (double)n * s;
    for (int ch = 0; ch < c; ch++) {
        const float r = invstd[ch];
        float mRx = 0.0f, mxRx = 0.0f;
        if (Rx) {
            double a = 0.0, b = 0.0;
            FOR_CHANNEL(i, j) { a += AT(Rx, i, j); b += (double)AT(xhat, i, j) * AT(Rx, i, j); }
            mRx = (float)(a / m);
            mxRx = (float)(b / m);
        }
        Rinvstd[ch] = -r * r * mxRx;
        FOR_CHANNEL(i, j) {
            float rxh = Rx ? r * (AT(Rx, i, j) - mRx - AT(xhat, i, j) * mxRx) : 0.0f;
            AT(Rxhat, i, j) = rxh;
            AT(Ry, i, j) = gamma[ch] * rxh + Vgamma[ch] * AT(xhat, i, j) + Vbeta[ch];
        }
    }
}

void mc_batchnorm_rbackward(int n, int c, int s, const float *xhat, const float *invstd, const float *gamma,
                            const float *Vgamma, const float *dy, const float *Rdy,
                            const float *Rxhat, const float *Rinvstd,
                            float *Rdx, float *Rdgamma, float *Rdbeta) {
    const double m = (double)n * s;
    for (int ch = 0; ch < c; ch++) {
        const float g = gamma[ch], vg = Vgamma[ch];
        double sdy = 0.0, sdyx = 0.0, sRdy = 0.0, sRdyx = 0.0, sdyRx = 0.0;
        FOR_CHANNEL(i, j) {
            const double d = AT(dy, i, j), rd = AT(Rdy, i, j), xh = AT(xhat, i, j);
            sdy += d; sdyx += d * xh; sRdy += rd; sRdyx += rd * xh; sdyRx += d * AT(Rxhat, i, j);
        }
        Rdgamma[ch] = (float)(sRdyx + sdyRx);
        Rdbeta[ch] = (float)sRdy;
        if (!Rdx) continue;
        /* Means of dxhat = g dy and Rdxhat = g Rdy + vg dy, and of their products with xhat / Rxhat. */
        const float A = (float)(g * sdy / m), B = (float)(g * sdyx / m);
        const float RA = (float)((g * sRdy + vg * sdy) / m);
        const float RB = (float)((g * sRdyx + vg * sdyx + g * sdyRx) / m);
        const float r = invstd[ch], Rr = Rinvstd[ch];
        FOR_CHANNEL(i, j) {
            const float d = AT(dy, i, j), xh = AT(xhat, i, j);
            const float dxh = g * d, Rdxh = g * AT(Rdy, i, j) + vg * d;
            AT(Rdx, i, j) = Rr * (dxh - A - xh * B) + r * (Rdxh - RA - AT(Rxhat, i, j) * B - xh * RB);
        }
    }
}

void mc_batchnorm_inference_forward(int n, int c, int s, float eps, const float *x, const float *gamma,
                                    const float *beta, const float *mean, const float *var, float *y) {
    for (int ch = 0; ch < c; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        FOR_CHANNEL(i, j) AT(y, i, j) = gamma[ch] * (AT(x, i, j) - mean[ch]) * r + beta[ch];
    }
}

void mc_batchnorm_inference_backward(int n, int c, int s, float eps, const float *x, const float *gamma,
                                     const float *mean, const float *var, const float *dy,
                                     float *dx, float *dgamma, float *dbeta) {
    for (int ch = 0; ch < c; ch++) {
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

void mc_batchnorm_inference_rforward(int n, int c, int s, float eps, const float *x, const float *Rx,
                                     const float *gamma, const float *Vgamma, const float *Vbeta,
                                     const float *mean, const float *var, float *Ry) {
    for (int ch = 0; ch < c; ch++) {
        const float r = 1.0f / sqrtf(var[ch] + eps);
        FOR_CHANNEL(i, j)
            AT(Ry, i, j) = (Rx ? gamma[ch] * r * AT(Rx, i, j) : 0.0f)
                         + Vgamma[ch] * (AT(x, i, j) - mean[ch]) * r + Vbeta[ch];
    }
}

void mc_batchnorm_inference_rbackward(int n, int c, int s, float eps, const float *x, const float *Rx,
                                      const float *gamma, const float *Vgamma, const float *mean,
                                      const float *var, const float *dy, const float *Rdy,
                                      float *Rdx, float *Rdgamma, float *Rdbeta) {
    for (int ch = 0; ch < c; ch++) {
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

/* Episode losses of the metric-based few-shot learners: Prototypical and Matching Networks, and the ridge-regression
 * head of R2-D2. */
#include "ckernels.h"
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

static double dot_f(int d, const float *a, const float *b) {
    double s = 0.0;
    for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
    return s;
}

/* Softmax of row[0 ..< k] in place (doubles); returns log of the normaliser relative to the row maximum. */
static double softmax_row(int k, double *row) {
    double m = row[0];
    for (int j = 1; j < k; j++) if (row[j] > m) m = row[j];
    double sum = 0.0;
    for (int j = 0; j < k; j++) { row[j] = exp(row[j] - m); sum += row[j]; }
    for (int j = 0; j < k; j++) row[j] /= sum;
    return log(sum) + m;
}

static int argmax(int k, const double *row) {
    int best = 0;
    for (int j = 1; j < k; j++) if (row[j] > row[best]) best = j;
    return best;
}

double mc_proto_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, float *dz,
                     double *scratch, int *correct) {
    double *proto = scratch, *count = proto + (size_t)ways * d, *prob = count + ways;
    const float *query = z + (size_t)ns * d;
    const int32_t *qlabels = labels + ns;
    memset(proto, 0, sizeof(double) * ((size_t)ways * d + ways));
    for (int s = 0; s < ns; s++) {
        double *c = proto + (size_t)labels[s] * d;
        for (int j = 0; j < d; j++) c[j] += z[(size_t)s * d + j];
        count[labels[s]] += 1;
    }
    for (int k = 0; k < ways; k++)
        for (int j = 0; j < d; j++) proto[(size_t)k * d + j] /= count[k];

    double loss = 0.0;
    int hits = 0;
    for (int i = 0; i < nq; i++) {
        const float *q = query + (size_t)i * d;
        double *p = prob + (size_t)i * ways;
        for (int k = 0; k < ways; k++) {
            double dist = 0.0;
            for (int j = 0; j < d; j++) { double e = q[j] - proto[(size_t)k * d + j]; dist += e * e; }
            p[k] = -dist;
        }
        double logit = p[qlabels[i]];
        hits += argmax(ways, p) == qlabels[i];
        loss += softmax_row(ways, p) - logit;
    }
    if (correct) *correct = hits;
    if (!dz) return loss / nq;

    /* dlogit = (p - onehot) / nq; logit_k = -||q - c_k||^2, so dq = -2 sum_k dlogit_k (q - c_k) and
     * dc_k = 2 sum_q dlogit_k (q - c_k); a support row of class k gets dc_k / n_k. */
    memset(dz, 0, sizeof(float) * (size_t)(ns + nq) * d);
    float *dquery = dz + (size_t)ns * d;
    for (int i = 0; i < nq; i++) {
        const float *q = query + (size_t)i * d;
        double *p = prob + (size_t)i * ways;
        p[qlabels[i]] -= 1.0;
        for (int k = 0; k < ways; k++) {
            double g = p[k] / nq, *c = proto + (size_t)k * d;
            if (g == 0.0) continue;
            for (int j = 0; j < d; j++) dquery[(size_t)i * d + j] += (float)(-2.0 * g * (q[j] - c[j]));
        }
    }
    for (int s = 0; s < ns; s++) {
        int k = labels[s];
        const double *c = proto + (size_t)k * d;
        for (int j = 0; j < d; j++) {
            double g = 0.0;
            for (int i = 0; i < nq; i++) g += prob[(size_t)i * ways + k] * (query[(size_t)i * d + j] - c[j]);
            dz[(size_t)s * d + j] = (float)(2.0 * g / nq / count[k]);
        }
    }
    return loss / nq;
}

double mc_matching_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, float scale,
                        float *dz, double *dscale, double *scratch, int *correct) {
    const double eps = 1e-8;
    double *norm = scratch, *att = norm + ns + nq, *prob = att + (size_t)nq * ns;
    const float *query = z + (size_t)ns * d;
    const int32_t *qlabels = labels + ns;
    for (int r = 0; r < ns + nq; r++) {
        const float *x = z + (size_t)r * d;
        norm[r] = sqrt(dot_f(d, x, x) + eps);
    }
    double loss = 0.0;
    int hits = 0;
    for (int i = 0; i < nq; i++) {
        double *a = att + (size_t)i * ns, *p = prob + (size_t)i * ways;
        for (int s = 0; s < ns; s++)
            a[s] = scale * dot_f(d, query + (size_t)i * d, z + (size_t)s * d) / (norm[ns + i] * norm[s]);
        softmax_row(ns, a);
        for (int k = 0; k < ways; k++) p[k] = 0.0;
        for (int s = 0; s < ns; s++) p[labels[s]] += a[s];
        hits += argmax(ways, p) == qlabels[i];
        loss -= log(p[qlabels[i]]);
    }
    if (correct) *correct = hits;
    if (!dz) return loss / nq;

    /* dL/da_s = -[y_s = y] / (p_y nq); through the softmax of u = scale c, du_s = a_s (dL/da_s + 1/nq), so
     * dc_s = scale du_s and dscale = sum du_s c_s. With c = q.s / (|q| |s|): dc/dq = s / (|q| |s|) - c q / |q|^2,
     * and symmetrically for s. */
    memset(dz, 0, sizeof(float) * (size_t)(ns + nq) * d);
    double gscale = 0.0;
    for (int i = 0; i < nq; i++) {
        const double *a = att + (size_t)i * ns;
        const float *q = query + (size_t)i * d;
        float *dq = dz + (size_t)(ns + i) * d;
        const double nqi = norm[ns + i], py = prob[(size_t)i * ways + qlabels[i]];
        for (int s = 0; s < ns; s++) {
            const double du = a[s] * (((labels[s] == qlabels[i]) ? -1.0 / py : 0.0) + 1.0) / nq, g = scale * du;
            if (du == 0.0) continue;
            const float *x = z + (size_t)s * d;
            float *dx = dz + (size_t)s * d;
            const double ns_ = norm[s], c = dot_f(d, q, x) / (nqi * ns_);
            gscale += du * c;
            for (int j = 0; j < d; j++) {
                dq[j] += (float)(g * (x[j] / (nqi * ns_) - c * q[j] / (nqi * nqi)));
                dx[j] += (float)(g * (q[j] / (nqi * ns_) - c * x[j] / (ns_ * ns_)));
            }
        }
    }
    if (dscale) *dscale = gscale;
    return loss / nq;
}

/* R2-D2. With X = [zs, 1] / sqrt(ns) (ns x e, e = d + 1) and Y = one-hot / sqrt(ns) (ns x ways), the ridge
 * solution in Woodbury form is W = X^T A, A = K^-1 Y, K = X X^T + lambda I (ns x ns, solved by Cholesky);
 * its first d rows weight the query embeddings and its last is the bias: out = zq W[:d] + W[d], and the logits
 * scale * out + bias go through softmax cross-entropy.
 * Backward, with G = dL/dlogits: dscale = sum G.out, dbias = sum G, dOut = scale G; dzq = dOut W[:d]^T,
 * dW = [zq, 1]^T dOut; through W = X^T A: dX = A dW^T, dA = X dW; through A = K^-1 Y: B = K^-1 dA, dK = -B A^T,
 * so dlambda = -sum B.A and dX += -(B A^T + A B^T) X; dzs = dX[:, :d] / sqrt(ns). */
double mc_ridge_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, float lambda, float scale,
                     float bias, float *dz, double *dextra, double *scratch, int *correct) {
    const int e = d + 1;
    const double root = sqrt((double)ns);
    double *X = scratch, *K = X + (size_t)ns * e, *A = K + (size_t)ns * ns, *W = A + (size_t)ns * ways;
    double *Q = W + (size_t)e * ways, *out = Q + (size_t)nq * e;
    const int32_t *qlabels = labels + ns;
    for (int s = 0; s < ns; s++) {
        for (int j = 0; j < d; j++) X[(size_t)s * e + j] = z[(size_t)s * d + j] / root;
        X[(size_t)s * e + d] = 1.0 / root;
    }
    for (int i = 0; i < nq; i++) {
        for (int j = 0; j < d; j++) Q[(size_t)i * e + j] = z[(size_t)(ns + i) * d + j];
        Q[(size_t)i * e + d] = 1.0;
    }
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, ns, e, 1.0, X, e, 0.0, K, ns);
    for (int s = 0; s < ns; s++) K[(size_t)s * ns + s] += lambda;
    memset(A, 0, sizeof(double) * (size_t)ns * ways);
    for (int s = 0; s < ns; s++) A[(size_t)s * ways + labels[s]] = 1.0 / root;
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', ns, K, ns) != 0) return NAN;   /* lambda <= 0 or non-finite inputs */
    LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', ns, ways, K, ns, A, ways);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, e, ways, ns, 1.0, X, e, A, ways, 0.0, W, ways);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, ways, e, 1.0, Q, e, W, ways, 0.0, out, ways);
    double *G = out + (size_t)nq * ways;
    double loss = 0.0, dscale = 0.0, dbias = 0.0;
    int hits = 0;
    for (int i = 0; i < nq; i++) {
        double *g = G + (size_t)i * ways;
        const double *o = out + (size_t)i * ways;
        for (int k = 0; k < ways; k++) g[k] = scale * o[k] + bias;
        hits += argmax(ways, g) == qlabels[i];
        loss += softmax_row(ways, g) - (scale * o[qlabels[i]] + bias);
        g[qlabels[i]] -= 1.0;
        for (int k = 0; k < ways; k++) {
            g[k] /= nq;
            dscale += g[k] * o[k];
            dbias += g[k];
            g[k] *= scale;   /* dL/dout */
        }
    }
    if (correct) *correct = hits;
    if (!dz) return loss / nq;

    double *dW = G + (size_t)nq * ways, *dA = dW + (size_t)e * ways, *dX = dA + (size_t)ns * ways;
    double *M = dX + (size_t)ns * e;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, e, ways, nq, 1.0, Q, e, G, ways, 0.0, dW, ways);
    for (int i = 0; i < nq; i++)          /* dzq = dOut W[:d]^T */
        for (int j = 0; j < d; j++) {
            double sum = 0.0;
            for (int k = 0; k < ways; k++) sum += G[(size_t)i * ways + k] * W[(size_t)j * ways + k];
            dz[(size_t)(ns + i) * d + j] = (float)sum;
        }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ns, ways, e, 1.0, X, e, dW, ways, 0.0, dA, ways);
    LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', ns, ways, K, ns, dA, ways);   /* dA <- B = K^-1 dA */
    double dlambda = 0.0;
    for (size_t t = 0; t < (size_t)ns * ways; t++) dlambda -= dA[t] * A[t];
    /* M = B A^T + A B^T (symmetric), then dX = A dW^T - M X */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ns, ns, ways, 1.0, dA, ways, A, ways, 0.0, M, ns);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ns, ns, ways, 1.0, A, ways, dA, ways, 1.0, M, ns);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ns, e, ways, 1.0, A, ways, dW, ways, 0.0, dX, e);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ns, e, ns, -1.0, M, ns, X, e, 1.0, dX, e);
    for (int s = 0; s < ns; s++)
        for (int j = 0; j < d; j++) dz[(size_t)s * d + j] = (float)(dX[(size_t)s * e + j] / root);
    if (dextra) { dextra[0] = dlambda; dextra[1] = dscale; dextra[2] = dbias; }
    return loss / nq;
}

/* Siamese networks. Pair (query i, support s): a = sum_j w_j |q_ij - s_sj| + b, p = sigmoid(a), target 1 if their
 * labels agree. Binary cross-entropy, weighted so that same and different pairs each carry half of the loss (the
 * balance of Koch et al.'s pair sampling), summed over all nq * ns pairs. dL/da = weight (p - y); |.|'s derivative
 * is sign(q - s) (0 at 0). A query is classified as the label of its highest-scoring support row. */
double mc_siamese_loss(int ns, int nq, int d, int ways, const float *z, const int32_t *labels, const float *w, float b,
                       float *dz, double *dw, double *db, double *scores, int *correct) {
    (void)ways;
    const float *query = z + (size_t)ns * d;
    const int32_t *qlabels = labels + ns;
    long same = 0;
    for (int i = 0; i < nq; i++)
        for (int s = 0; s < ns; s++) same += labels[s] == qlabels[i];
    const long pairs = (long)nq * ns, different = pairs - same;
    const double wsame = same ? 0.5 / same : 0.0, wdiff = different ? 0.5 / different : 0.0;
    if (dz) {
        memset(dz, 0, sizeof(float) * (size_t)(ns + nq) * d);
        memset(dw, 0, sizeof(double) * (size_t)d);
        *db = 0.0;
    }
    double loss = 0.0;
    int hits = 0;
    for (int i = 0; i < nq; i++) {
        const float *q = query + (size_t)i * d;
        double best = -INFINITY;
        int guess = 0;
        for (int s = 0; s < ns; s++) {
            const float *x = z + (size_t)s * d;
            double a = b;
            for (int j = 0; j < d; j++) a += w[j] * fabs((double)q[j] - x[j]);
            if (scores) scores[(size_t)i * ns + s] = a;
            if (a > best) { best = a; guess = labels[s]; }
            const int y = labels[s] == qlabels[i];
            const double weight = y ? wsame : wdiff;
            /* -log sigmoid(a) = softplus(-a), -log(1 - sigmoid(a)) = softplus(a), computed stably */
            const double t = y ? -a : a;
            loss += weight * (t > 0 ? t + log1p(exp(-t)) : log1p(exp(t)));
            if (!dz) continue;
            const double p = 1.0 / (1.0 + exp(-a)), da = weight * (p - y);
            *db += da;
            float *dq = dz + (size_t)(ns + i) * d, *dx = dz + (size_t)s * d;
            for (int j = 0; j < d; j++) {
                const double diff = (double)q[j] - x[j], sign = (diff > 0) - (diff < 0);
                dw[j] += da * fabs(diff);
                dq[j] += (float)(da * w[j] * sign);
                dx[j] -= (float)(da * w[j] * sign);
            }
        }
        hits += guess == qlabels[i];
    }
    if (correct) *correct = hits;
    return loss;
}

/* Episode losses of the metric-based few-shot learners: Prototypical and Matching Networks. */
#include "ckernels.h"
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

/* Reductions over one contiguous plane of floats (an [N, C, S] tensor's S values of one sample and channel),
 * shared by the kernels that sum over a batch. Internal to CKernels. */
#ifndef MC_REDUCE_H
#define MC_REDUCE_H

/* A plane's sum runs in MC_REDUCE_LANES independent float accumulators (vectorised; a float sum of
 * S / MC_REDUCE_LANES terms loses nothing that matters) and is returned in double, so that callers
 * accumulate the planes' partial sums across the batch in double. */
enum { MC_REDUCE_LANES = 8 };

static inline double sum_plane(const float *restrict p, int s) {
    float acc[MC_REDUCE_LANES] = {0};
    int j = 0;
    for (; j + MC_REDUCE_LANES <= s; j += MC_REDUCE_LANES)
        for (int l = 0; l < MC_REDUCE_LANES; l++) acc[l] += p[j + l];
    double total = 0.0;
    for (; j < s; j++) total += p[j];
    for (int l = 0; l < MC_REDUCE_LANES; l++) total += acc[l];
    return total;
}

static inline double dot_plane(const float *restrict p, const float *restrict q, int s) {
    float acc[MC_REDUCE_LANES] = {0};
    int j = 0;
    for (; j + MC_REDUCE_LANES <= s; j += MC_REDUCE_LANES)
        for (int l = 0; l < MC_REDUCE_LANES; l++) acc[l] += p[j + l] * q[j + l];
    double total = 0.0;
    for (; j < s; j++) total += (double)p[j] * q[j];
    for (int l = 0; l < MC_REDUCE_LANES; l++) total += acc[l];
    return total;
}

/* Sum of (p - shift)^2 over a plane, and the sum of (p - shift) into *deviations: about a shift near the
 * plane's mean both are small and exact enough to correct the mean with. */
static inline double shifted_sums_plane(const float *restrict p, float shift, int s, double *deviations) {
    float acc[MC_REDUCE_LANES] = {0}, dev[MC_REDUCE_LANES] = {0};
    int j = 0;
    for (; j + MC_REDUCE_LANES <= s; j += MC_REDUCE_LANES)
        for (int l = 0; l < MC_REDUCE_LANES; l++) { const float d = p[j + l] - shift; acc[l] += d * d; dev[l] += d; }
    double total = 0.0, deviation = 0.0;
    for (; j < s; j++) { const double d = p[j] - shift; total += d * d; deviation += d; }
    for (int l = 0; l < MC_REDUCE_LANES; l++) { total += acc[l]; deviation += dev[l]; }
    *deviations = deviation;
    return total;
}

#endif

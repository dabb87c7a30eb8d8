/* Optimiser updates over a flat parameter vector: one pass, elementwise, vectorised (restrict: the four
 * vectors are distinct). */
#include "ckernels.h"
#include <float.h>
#include <math.h>
#include "vec8.h"

/* sqrt without errno (v >= 0 here), so the loop vectorises. */
#if defined(__has_builtin) && __has_builtin(__builtin_elementwise_sqrt)
#define MC_SQRT(x) __builtin_elementwise_sqrt(x)
#else
#define MC_SQRT(x) sqrtf(x)
#endif

/* Compiled once per vector level (MC_CLONES): the step runs on one thread between meta-steps. Without
 * contraction, so that every clone rounds as the baseline does. */
MC_CLONES static void adam_step(size_t count, float *restrict p, float *restrict m, float *restrict v,
                                const float *restrict g, float beta1, float beta2, float rate, float epsilon) {
#pragma clang fp contract(off)
    for (size_t i = 0; i < count; i++) {
        const float gi = g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi, vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        /* Subnormal moments (a parameter whose gradient stays zero decays into them) cost x86 a microcode
         * assist per operation; below FLT_MIN they are held at zero. */
        mi = fabsf(mi) < FLT_MIN ? 0.0f : mi;
        vi = vi < FLT_MIN ? 0.0f : vi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= rate * mi / (MC_SQRT(vi) + epsilon);
    }
}

void mc_adam_step(size_t count, float *restrict p, float *restrict m, float *restrict v, const float *restrict g,
                  float beta1, float beta2, float rate, float epsilon) {
    adam_step(count, p, m, v, g, beta1, beta2, rate, epsilon);
}

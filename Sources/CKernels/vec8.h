/* Eight-float vectors (GCC / clang vector extensions) for the kernels' vectorised loops. Internal to CKernels.
 * The helpers are always inlined, so no vector crosses a call boundary (clang's warning about the AVX
 * calling convention does not apply). */
#ifndef MC_VEC8_H
#define MC_VEC8_H

#include <string.h>

#pragma clang diagnostic ignored "-Wpsabi"
typedef float v8 __attribute__((vector_size(32)));
#define MC_INLINE static inline __attribute__((always_inline))
/* A kernel compiled for AVX-512 (x86-64-v4: 32 vector registers, and the loops the compiler vectorises itself
 * sixteen floats wide), for AVX + FMA, and for the baseline; the loader picks the best clone the CPU supports.
 * A clone must not pass or return a v8 in a call of its own (the helpers' baseline calling convention
 * differs from its): it calls always-inline functions that do. */
#ifdef MC_NO_CLONES
/* Sanitizer builds (make sanitize): the clones' ifunc resolvers run before ThreadSanitizer starts and crash
 * it, so such builds keep the baseline only. */
#define MC_CLONES
#else
#define MC_CLONES __attribute__((target_clones("arch=x86-64-v4", "fma", "default")))
#endif

/* Unaligned load and store. */
MC_INLINE v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
MC_INLINE void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* The first `lanes` (1 ... 8) floats at p, the other lanes 0: a last, partial block of channels or columns. */
MC_INLINE v8 load_lanes(const float *p, int lanes) {
    if (lanes == 8) return load8(p);
    v8 v = {0};
    memcpy(&v, p, sizeof(float) * lanes);
    return v;
}
/* Stores the first `lanes` lanes of v at p, leaving the floats after them alone. */
MC_INLINE void store_lanes(float *p, v8 v, int lanes) {
    if (lanes == 8) store8(p, v); else memcpy(p, &v, sizeof(float) * lanes);
}

/* r[j][q] <- r[q][j]: the 8 x 8 block in r transposed in registers, by three rounds of shuffles. */
MC_INLINE void transpose8_in_place(v8 r[8]) {
    v8 t[8], u[8];
    for (int q = 0; q < 8; q += 2) {       /* interleave row pairs */
        t[q] = __builtin_shufflevector(r[q], r[q + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[q + 1] = __builtin_shufflevector(r[q], r[q + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int q = 0; q < 8; q += 4)         /* then pairs of pairs: four rows of one column per half */
        for (int h = 0; h < 2; h++) {
            u[q + 2 * h] = __builtin_shufflevector(t[q + h], t[q + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[q + 2 * h + 1] = __builtin_shufflevector(t[q + h], t[q + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int c = 0; c < 4; c++) {          /* then the halves: rows 0-3 and 4-7 of columns c and c + 4 */
        r[c] = __builtin_shufflevector(u[c], u[c + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[c + 4] = __builtin_shufflevector(u[c], u[c + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

#endif

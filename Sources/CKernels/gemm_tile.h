/* The loop GEMM kernel's register tile for one vector width. Internal to gemm.c, which includes it once per
 * width with GEMM_VEC (the vector type), GEMM_HALF (one of half its width), GEMM_LANES (GEMM_VEC's floats),
 * GEMM_MAX_NV (the most vectors across a tile) and GEMM_TILE (the function's name) defined.
 *
 * One tile of C: MR (<= 4) rows, NV (<= GEMM_MAX_NV) vectors of columns and H (0 or 1) half vectors after them,
 * kept in registers across the whole p loop (one loop for all of them: the half vector's chains run beside the
 * others' instead of in a loop of their own). A(r, p) = A[r*si + p*sp]; B is row-major with row stride ldb. MR,
 * NV and H are constants at every call. Every entry of C is the same chain of multiply-adds in p order at every
 * width, so the widths agree bit for bit. */
MC_INLINE void GEMM_TILE(const int MR, const int NV, const int H, int k, float alpha, const float *A, size_t si,
                         size_t sp, const float *B, int ldb, float beta, float *C, int ldc) {
    GEMM_VEC acc[4][GEMM_MAX_NV] = {{{0}}};
    GEMM_HALF half[4] = {{0}};
    for (int p = 0; p < k; p++) {
        GEMM_VEC b[GEMM_MAX_NV];
        GEMM_HALF h = {0};
        for (int q = 0; q < NV; q++) memcpy(&b[q], B + (size_t)p * ldb + GEMM_LANES * q, sizeof b[q]);
        if (H) memcpy(&h, B + (size_t)p * ldb + GEMM_LANES * NV, sizeof h);
        for (int r = 0; r < MR; r++) {
            const float a = A[r * si + p * sp];
            for (int q = 0; q < NV; q++) acc[r][q] += a * b[q];
            if (H) half[r] += a * h;
        }
    }
    for (int r = 0; r < MR && H; r++) {
        float *c = C + (size_t)r * ldc + GEMM_LANES * NV;
        GEMM_HALF out = alpha * half[r];
        if (beta != 0.0f) {
            GEMM_HALF old;
            memcpy(&old, c, sizeof old);
            out += beta * old;
        }
        memcpy(c, &out, sizeof out);
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NV; q++) {
            float *c = C + (size_t)r * ldc + GEMM_LANES * q;
            GEMM_VEC out = alpha * acc[r][q];
            if (beta != 0.0f) {
                GEMM_VEC old;
                memcpy(&old, c, sizeof old);
                out += beta * old;
            }
            memcpy(c, &out, sizeof out);
        }
}

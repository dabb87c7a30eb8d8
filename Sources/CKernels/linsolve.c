/* Dense symmetric linear systems (LAPACKE): the exact solution that iterative solvers are checked against. */
#include "ckernels.h"
#include <lapacke.h>
#include <stdlib.h>

int mc_symmetric_solve(int n, int nrhs, double *a, double *b) {
    lapack_int *pivots = malloc(sizeof(lapack_int) * (size_t)(n > 0 ? n : 1));
    if (!pivots) return -1;
    const lapack_int info = LAPACKE_dsysv(LAPACK_ROW_MAJOR, 'L', n, nrhs, a, n, pivots, b, nrhs);
    free(pivots);
    return (int)info;
}

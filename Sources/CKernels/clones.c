/* Which clones of the MC_CLONES kernels this process runs. */
#include "ckernels.h"
#include "vec8.h"

int mc_fma_clones(void) {
#ifdef MC_NO_CLONES
    return 0;
#else
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") ? 1 : 0;
#endif
}

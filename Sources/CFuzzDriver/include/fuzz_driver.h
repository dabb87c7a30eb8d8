/* libFuzzer's driver, for `make fuzz` builds only (linked from libclang_rt.fuzzer_no_main there; nothing in a
 * normal build refers to it). */
#ifndef MC_FUZZ_DRIVER_H
#define MC_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif

// funnel-fuzz's main when built for libFuzzer (tools/fuzz passes -DFUNNEL_FUZZING).
//
// SwiftPM links an executable with main aliased to <module>_main; without a Swift @main
// (the fuzzing build has none) that symbol is defined here and hands the process to
// libFuzzer's driver, which calls LLVMFuzzerTestOneInput (FuzzDriver.swift) per input.
#include "fuzz_main.h"
#include <stddef.h>
#include <stdint.h>

int funnel_fuzz_entry_point_present(void) { return 1; }

#ifdef FUNNEL_FUZZING
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

int funnel_fuzz_main(int argc, char **argv) {
    return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
}
#endif

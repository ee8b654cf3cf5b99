#include "FunnelKernels.h"
#include "simd.h"

// What the CPU can run, as FK_CPU_* bits (for reports and for choosing OpenBLAS's core).
unsigned fk_cpu_features(void) {
    unsigned f = 0;
#if FK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= FK_CPU_SSE42;
    if (__builtin_cpu_supports("avx")) f |= FK_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= FK_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= FK_CPU_FMA;
    if (__builtin_cpu_supports("f16c")) f |= FK_CPU_F16C;
    if (__builtin_cpu_supports("avx512f")) f |= FK_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= FK_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= FK_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512dq")) f |= FK_CPU_AVX512DQ;
    if (__builtin_cpu_supports("avx512vnni")) f |= FK_CPU_AVX512VNNI;
    if (__builtin_cpu_supports("avx512bf16")) f |= FK_CPU_AVX512BF16;
    if (__builtin_cpu_supports("avx512fp16")) f |= FK_CPU_AVX512FP16;
#endif
    return f;
}

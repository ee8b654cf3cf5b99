// Shared by the kernel files (private to the target): the x86 switch, the AVX2+FMA target
// attribute, and horizontal sums of a 256-bit register.
#ifndef FUNNEL_SIMD_H
#define FUNNEL_SIMD_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FK_X86 1
#else
#define FK_X86 0
#endif

#if FK_X86
#define FK_AVX2 __attribute__((target("avx2,fma")))
#define FK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
/// AVX-512 with VNNI (level 3): only the integer dot products use it.
#define FK_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))

/// The mask of the first n (< 16) lanes.
static inline __mmask16 fk_tail_mask16(size_t n) { return (__mmask16)((1u << n) - 1u); }

/// The sum of eight floats.
FK_AVX2 static inline float fk_hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// The sum of eight int32 lanes, in int32 (callers keep it from overflowing).
FK_AVX2 static inline int32_t fk_hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}
#endif

#endif

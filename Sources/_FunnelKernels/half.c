// IEEE half precision (binary16) storage for vectors: conversion, and distances between a
// float query and half rows (or two half rows), with F16C + FMA when the CPU has them.
#include "FunnelKernels.h"
#include <string.h>

#include "simd.h"
#if FK_X86
#include <cpuid.h>
#endif

// MARK: - Scalar conversion (round to nearest even; overflow to infinity)

float fk_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        // Subnormal: normalize.
        int e = -1;
        do { e++; mant <<= 1; } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fk_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u) return sign | (absx > 0x7F800000u ? 0x7E00 : 0x7C00);  // NaN, inf
    if (absx >= 0x477FF000u) return sign | 0x7C00;                                    // rounds past 65504
    if (absx < 0x38800000u) {                                                           // subnormal or zero
        if (absx < 0x33000000u) return sign;                                            // below half the smallest
        const uint32_t e = absx >> 23, m = (absx & 0x7FFFFF) | 0x800000;
        const uint32_t shift = 126 - e;                                                 // 14..24
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return sign | (uint16_t)h;
    }
    uint32_t h = ((absx >> 13) - (112u << 10));
    const uint32_t rem = absx & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

static int fk_has_f16c = 0;

__attribute__((constructor)) static void fk_detect_f16c(void) {
#if FK_X86
    unsigned a, b, c, d;
    fk_has_f16c = (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29))) ? 1 : 0;
#endif
}

/// F16C and the AVX2 level (which `fk_force_scalar` can switch off for tests).
static inline int has_f16c(void) { return fk_has_f16c && fk_simd_level() >= 1; }

int fk_half_simd(void) { return has_f16c(); }

#if FK_X86
#define FK_F16C __attribute__((target("avx2,fma,f16c")))

FK_F16C static inline __m256 load_half8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

FK_F16C static void to_half_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = fk_f32_to_f16(src[i]);
}

FK_F16C static void to_float_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_half8(src + i));
    for (; i < n; i++) dst[i] = fk_f16_to_f32(src[i]);
}

FK_F16C static float l2_f16c(const float *q, const uint16_t *x, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), load_half8(x + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), load_half8(x + i + 8));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), load_half8(x + i));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
    }
    float s = fk_hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) { float d = q[i] - fk_f16_to_f32(x[i]); s += d * d; }
    return s;
}

FK_F16C static float dot_f16c(const float *q, const uint16_t *x, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_half8(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load_half8(x + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_half8(x + i), s0);
    float s = fk_hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += q[i] * fk_f16_to_f32(x[i]);
    return s;
}

FK_F16C static float l2_f16f16c(const uint16_t *a, const uint16_t *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(load_half8(a + i), load_half8(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float s = fk_hsum_ps(s0);
    for (; i < n; i++) { float d = fk_f16_to_f32(a[i]) - fk_f16_to_f32(b[i]); s += d * d; }
    return s;
}

FK_F16C static float dot_f16f16c(const uint16_t *a, const uint16_t *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_half8(a + i), load_half8(b + i), s0);
    float s = fk_hsum_ps(s0);
    for (; i < n; i++) s += fk_f16_to_f32(a[i]) * fk_f16_to_f32(b[i]);
    return s;
}

/// Four half rows against one float query, sharing the query loads (graph batches).
FK_F16C void fk_half_batch4(int dot, const float *q, const uint16_t *a, const uint16_t *b, const uint16_t *c,
                            const uint16_t *d, size_t n, float *out) {
    __m256 sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps(), sc = _mm256_setzero_ps(), sd = _mm256_setzero_ps();
    size_t i = 0;
    if (dot) {
        for (; i + 8 <= n; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            sa = _mm256_fmadd_ps(load_half8(a + i), qv, sa);
            sb = _mm256_fmadd_ps(load_half8(b + i), qv, sb);
            sc = _mm256_fmadd_ps(load_half8(c + i), qv, sc);
            sd = _mm256_fmadd_ps(load_half8(d + i), qv, sd);
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            __m256 da = _mm256_sub_ps(load_half8(a + i), qv), db = _mm256_sub_ps(load_half8(b + i), qv);
            __m256 dc = _mm256_sub_ps(load_half8(c + i), qv), dd = _mm256_sub_ps(load_half8(d + i), qv);
            sa = _mm256_fmadd_ps(da, da, sa);
            sb = _mm256_fmadd_ps(db, db, sb);
            sc = _mm256_fmadd_ps(dc, dc, sc);
            sd = _mm256_fmadd_ps(dd, dd, sd);
        }
    }
    float ra = fk_hsum_ps(sa), rb = fk_hsum_ps(sb), rc = fk_hsum_ps(sc), rd = fk_hsum_ps(sd);
    for (; i < n; i++) {
        float fa = fk_f16_to_f32(a[i]), fb = fk_f16_to_f32(b[i]), fc = fk_f16_to_f32(c[i]), fd = fk_f16_to_f32(d[i]);
        if (dot) {
            ra += fa * q[i]; rb += fb * q[i]; rc += fc * q[i]; rd += fd * q[i];
        } else {
            ra += (fa - q[i]) * (fa - q[i]); rb += (fb - q[i]) * (fb - q[i]);
            rc += (fc - q[i]) * (fc - q[i]); rd += (fd - q[i]) * (fd - q[i]);
        }
    }
    out[0] = ra; out[1] = rb; out[2] = rc; out[3] = rd;
}
#endif

void fk_to_half(const float *src, uint16_t *dst, size_t n) {
#if FK_X86
    if (has_f16c()) { to_half_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = fk_f32_to_f16(src[i]);
}

void fk_from_half(const uint16_t *src, float *dst, size_t n) {
#if FK_X86
    if (has_f16c()) { to_float_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = fk_f16_to_f32(src[i]);
}

float fk_l2sq_f16(const float *q, const uint16_t *x, size_t n) {
#if FK_X86
    if (has_f16c()) return l2_f16c(q, x, n);
#endif
    float s = 0;
    for (size_t i = 0; i < n; i++) { float d = q[i] - fk_f16_to_f32(x[i]); s += d * d; }
    return s;
}

float fk_dot_f16(const float *q, const uint16_t *x, size_t n) {
#if FK_X86
    if (has_f16c()) return dot_f16c(q, x, n);
#endif
    float s = 0;
    for (size_t i = 0; i < n; i++) s += q[i] * fk_f16_to_f32(x[i]);
    return s;
}

float fk_l2sq_f16f16(const uint16_t *a, const uint16_t *b, size_t n) {
#if FK_X86
    if (has_f16c()) return l2_f16f16c(a, b, n);
#endif
    float s = 0;
    for (size_t i = 0; i < n; i++) { float d = fk_f16_to_f32(a[i]) - fk_f16_to_f32(b[i]); s += d * d; }
    return s;
}

float fk_dot_f16f16(const uint16_t *a, const uint16_t *b, size_t n) {
#if FK_X86
    if (has_f16c()) return dot_f16f16c(a, b, n);
#endif
    float s = 0;
    for (size_t i = 0; i < n; i++) s += fk_f16_to_f32(a[i]) * fk_f16_to_f32(b[i]);
    return s;
}

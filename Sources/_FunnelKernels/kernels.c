#include "FunnelKernels.h"
#include <math.h>
#include <stdlib.h>

#include "simd.h"

#include <string.h>

static int fk_detected = 0;
static int fk_level = 0;
/// Set by `fk_force_scalar` on the calling thread only: a test of the scalar paths must not
/// switch the kernels of code running on other threads meanwhile (their results would
/// then mix SIMD and scalar summation orders).
static _Thread_local int fk_forced_scalar __attribute__((tls_model("initial-exec"))) = 0;
/// Set by `fk_force_level` on the calling thread only (-1: none).
static _Thread_local int fk_forced_level __attribute__((tls_model("initial-exec"))) = -1;

__attribute__((constructor)) static void fk_detect(void) {
#if FK_X86
    __builtin_cpu_init();
    fk_detected = (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
    if (fk_detected && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) fk_detected = 2;
    if (fk_detected == 2 && __builtin_cpu_supports("avx512vnni")) fk_detected = 3;
#else
    fk_detected = 0;
#endif
    fk_level = fk_detected;
    // FUNNEL_SIMD=scalar|avx2|avx512|avx512vnni caps the level (never above what the CPU has).
    const char *want = getenv("FUNNEL_SIMD");
    if (want) {
        int cap = strcmp(want, "scalar") == 0 ? 0 : strcmp(want, "avx2") == 0 ? 1 : strcmp(want, "avx512") == 0 ? 2 : 3;
        if (cap < fk_level) fk_level = cap;
    }
}

int fk_simd_level(void) {
    if (fk_forced_scalar) return 0;
    if (fk_forced_level >= 0) return fk_forced_level < fk_detected ? fk_forced_level : fk_detected;
    return fk_level;
}
int fk_simd_detected(void) { return fk_detected; }
void fk_force_level(int level) { fk_forced_level = level; }
void fk_force_scalar(int on) { fk_forced_scalar = on ? 1 : 0; }

// MARK: - Scalar bodies (also the tails of the SIMD ones)

static float dot_f32_scalar(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static float l2sq_f32_scalar(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
        float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3;
    }
    for (; i < n; i++) { float d = a[i] - b[i]; s0 += d * d; }
    return (s0 + s1) + (s2 + s3);
}

static int64_t dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n) {
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}
static int64_t l2sq_i8_scalar(const int8_t *a, const int8_t *b, size_t n) {
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) { int32_t d = (int32_t)a[i] - (int32_t)b[i]; s += d * d; }
    return s;
}
static int64_t dot_u8_scalar(const uint8_t *a, const uint8_t *b, size_t n) {
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}
static int64_t l2sq_u8_scalar(const uint8_t *a, const uint8_t *b, size_t n) {
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) { int32_t d = (int32_t)a[i] - (int32_t)b[i]; s += d * d; }
    return s;
}

static size_t affine_select_scalar(const float *x, const float *bias, float scale, size_t n,
                                   float threshold, uint32_t *idx, float *val) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        float v = bias ? bias[i] + scale * x[i] : scale * x[i];
        if (v < threshold) { idx[c] = (uint32_t)i; val[c] = v; c++; }
    }
    return c;
}

// MARK: - AVX2 + FMA bodies

#if FK_X86

FK_AVX2 static inline int64_t hsum256_epi32(__m256i v) {
    // Widen to 64-bit before adding so long vectors cannot overflow here.
    __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
    __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1));
    __m256i s = _mm256_add_epi64(lo, hi);
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return _mm_cvtsi128_si64(t) + _mm_extract_epi64(t, 1);
}

FK_AVX2 static float dot_f32_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = fk_hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

FK_AVX2 static float l2sq_f32_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float s = fk_hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) { float d = a[i] - b[i]; s += d * d; }
    return s;
}

// MARK: - AVX-512 bodies (float): sixteen lanes, the tail under a mask

FK_AVX512 static float dot_f32_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = fk_tail_mask16(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

FK_AVX512 static float l2sq_f32_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2);
        s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __mmask16 m = fk_tail_mask16(n - i);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

FK_AVX2 static int64_t dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n) {
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i va = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
    }
    return hsum256_epi32(acc) + dot_i8_scalar(a + i, b + i, n - i);
}

FK_AVX2 static int64_t l2sq_i8_avx2(const int8_t *a, const int8_t *b, size_t n) {
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i va = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256i d = _mm256_sub_epi16(va, vb);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(d, d));
    }
    return hsum256_epi32(acc) + l2sq_i8_scalar(a + i, b + i, n - i);
}

FK_AVX2 static int64_t dot_u8_avx2(const uint8_t *a, const uint8_t *b, size_t n) {
    // Widened to 16 bits, each operand is <= 255, so madd's signed 16-bit inputs
    // are exact and each 32-bit lane gains at most 2 * 65025 per step.
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i va = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256i vb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
    }
    return hsum256_epi32(acc) + dot_u8_scalar(a + i, b + i, n - i);
}

FK_AVX2 static int64_t l2sq_u8_avx2(const uint8_t *a, const uint8_t *b, size_t n) {
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i va = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256i vb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256i d = _mm256_sub_epi16(va, vb);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(d, d));
    }
    return hsum256_epi32(acc) + l2sq_u8_scalar(a + i, b + i, n - i);
}

FK_AVX2 static size_t affine_select_avx2(const float *x, const float *bias, float scale,
                                         size_t n, float threshold, uint32_t *idx, float *val) {
    size_t c = 0, i = 0;
    __m256 vs = _mm256_set1_ps(scale), vt = _mm256_set1_ps(threshold);
    for (; i + 8 <= n; i += 8) {
        __m256 v = bias ? _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i), _mm256_loadu_ps(bias + i))
                        : _mm256_mul_ps(vs, _mm256_loadu_ps(x + i));
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, vt, _CMP_LT_OQ));
        if (mask) {
            float tmp[8];
            _mm256_storeu_ps(tmp, v);
            while (mask) {
                int j = __builtin_ctz(mask);
                idx[c] = (uint32_t)(i + j);
                val[c] = tmp[j];
                c++;
                mask &= mask - 1;
            }
        }
    }
    for (; i < n; i++) {
        float v = bias ? fmaf(scale, x[i], bias[i]) : scale * x[i];
        if (v < threshold) { idx[c] = (uint32_t)i; val[c] = v; c++; }
    }
    return c;
}

/// Sixteen lanes per compare; the lanes kept are packed in registers (vcompressps without a
/// memory operand: its store form is microcoded on some cores) and written with a mask of
/// their count, so nothing is written past the last kept entry. The tail is masked.
FK_AVX512 static size_t affine_select_avx512(const float *x, const float *bias, float scale,
                                             size_t n, float threshold, uint32_t *idx, float *val) {
    size_t c = 0;
    const __m512 vs = _mm512_set1_ps(scale), vt = _mm512_set1_ps(threshold);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : fk_tail_mask16(n - i);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        const __m512 v = bias ? _mm512_fmadd_ps(vs, xv, _mm512_maskz_loadu_ps(m, bias + i)) : _mm512_mul_ps(vs, xv);
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(m, v, vt, _CMP_LT_OQ);
        if (!keep) continue;
        const unsigned kept = (unsigned)__builtin_popcount(keep);
        const __mmask16 out = fk_tail_mask16(kept) | (kept == 16 ? (__mmask16)0xFFFF : 0);
        const __m512i at = _mm512_add_epi32(lanes, _mm512_set1_epi32((int)i));
        _mm512_mask_storeu_ps(val + c, out, _mm512_maskz_compress_ps(keep, v));
        _mm512_mask_storeu_epi32(idx + c, out, _mm512_maskz_compress_epi32(keep, at));
        c += kept;
    }
    return c;
}
#endif

// MARK: - Dispatch

#if FK_X86
#define FK_DISPATCH(name, ...) (fk_simd_level() ? name##_avx2(__VA_ARGS__) : name##_scalar(__VA_ARGS__))
#define FK_DISPATCH3(name, ...) (fk_simd_level() >= 2 ? name##_avx512(__VA_ARGS__) : FK_DISPATCH(name, __VA_ARGS__))
#else
#define FK_DISPATCH(name, ...) (name##_scalar(__VA_ARGS__))
#endif

#if FK_X86
float fk_dot_f32(const float *a, const float *b, size_t n) { return FK_DISPATCH3(dot_f32, a, b, n); }
float fk_l2sq_f32(const float *a, const float *b, size_t n) { return FK_DISPATCH3(l2sq_f32, a, b, n); }
float fk_norm2_f32(const float *a, size_t n) { return FK_DISPATCH3(dot_f32, a, a, n); }
#else
float fk_dot_f32(const float *a, const float *b, size_t n) { return FK_DISPATCH(dot_f32, a, b, n); }
float fk_l2sq_f32(const float *a, const float *b, size_t n) { return FK_DISPATCH(l2sq_f32, a, b, n); }
float fk_norm2_f32(const float *a, size_t n) { return FK_DISPATCH(dot_f32, a, a, n); }
#endif

void fk_l2sq_f32_rows(const float *q, const float *base, size_t count, size_t dim,
                      size_t stride, float *out) {
#if FK_X86
    if (fk_simd_level()) {
        for (size_t i = 0; i < count; i++) out[i] = l2sq_f32_avx2(q, base + i * stride, dim);
        return;
    }
#endif
    for (size_t i = 0; i < count; i++) out[i] = l2sq_f32_scalar(q, base + i * stride, dim);
}

void fk_dot_f32_rows(const float *q, const float *base, size_t count, size_t dim,
                     size_t stride, float *out) {
#if FK_X86
    if (fk_simd_level()) {
        for (size_t i = 0; i < count; i++) out[i] = dot_f32_avx2(q, base + i * stride, dim);
        return;
    }
#endif
    for (size_t i = 0; i < count; i++) out[i] = dot_f32_scalar(q, base + i * stride, dim);
}

int64_t fk_dot_i8(const int8_t *a, const int8_t *b, size_t n) { return FK_DISPATCH(dot_i8, a, b, n); }
int64_t fk_l2sq_i8(const int8_t *a, const int8_t *b, size_t n) { return FK_DISPATCH(l2sq_i8, a, b, n); }
int64_t fk_dot_u8(const uint8_t *a, const uint8_t *b, size_t n) { return FK_DISPATCH(dot_u8, a, b, n); }
int64_t fk_l2sq_u8(const uint8_t *a, const uint8_t *b, size_t n) { return FK_DISPATCH(l2sq_u8, a, b, n); }

size_t fk_affine_select_below(const float *x, const float *bias, float scale, size_t n,
                              float threshold, uint32_t *idx, float *val) {
#if FK_X86
    return FK_DISPATCH3(affine_select, x, bias, scale, n, threshold, idx, val);
#else
    return FK_DISPATCH(affine_select, x, bias, scale, n, threshold, idx, val);
#endif
}

// Gram matrix by rows: out[i, :] = sum_k x[i, k] * xt[k, :] with xt the transpose, so the
// inner loop is a contiguous multiply-add over n outputs (vectorized, no horizontal sums).
#define FK_GRAM_BODY                                                         \
    for (size_t i = 0; i < n; i++) {                                         \
        float *o = out + i * n;                                              \
        for (size_t j = 0; j < n; j++) o[j] = 0;                             \
        for (size_t k = 0; k < dim; k++) {                                   \
            const float a = x[i * dim + k];                                  \
            const float *t = xt + k * n;                                     \
            for (size_t j = 0; j < n; j++) o[j] += a * t[j];                 \
        }                                                                    \
    }

static void gram_scalar(const float *x, const float *xt, size_t n, size_t dim, float *out) { FK_GRAM_BODY }
#if FK_X86
/// Blocks of 4 rows x 16 columns held in eight registers while k runs over the dimension:
/// per k, two loads of the transpose and four broadcasts feed eight multiply-adds (the
/// row-by-row body above reloads and stores its output row for every k).
__attribute__((target("avx2,fma"))) static void gram_avx2(const float *x, const float *xt, size_t n, size_t dim, float *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *x0 = x + i * dim, *x1 = x0 + dim, *x2 = x1 + dim, *x3 = x2 + dim;
        size_t j = 0;
        for (; j + 16 <= n; j += 16) {
            __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
            __m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps(), a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
            for (size_t k = 0; k < dim; k++) {
                const __m256 t0 = _mm256_loadu_ps(xt + k * n + j), t1 = _mm256_loadu_ps(xt + k * n + j + 8);
                __m256 b = _mm256_broadcast_ss(x0 + k);
                a00 = _mm256_fmadd_ps(b, t0, a00); a01 = _mm256_fmadd_ps(b, t1, a01);
                b = _mm256_broadcast_ss(x1 + k);
                a10 = _mm256_fmadd_ps(b, t0, a10); a11 = _mm256_fmadd_ps(b, t1, a11);
                b = _mm256_broadcast_ss(x2 + k);
                a20 = _mm256_fmadd_ps(b, t0, a20); a21 = _mm256_fmadd_ps(b, t1, a21);
                b = _mm256_broadcast_ss(x3 + k);
                a30 = _mm256_fmadd_ps(b, t0, a30); a31 = _mm256_fmadd_ps(b, t1, a31);
            }
            float *o = out + i * n + j;
            _mm256_storeu_ps(o, a00); _mm256_storeu_ps(o + 8, a01);
            _mm256_storeu_ps(o + n, a10); _mm256_storeu_ps(o + n + 8, a11);
            _mm256_storeu_ps(o + 2 * n, a20); _mm256_storeu_ps(o + 2 * n + 8, a21);
            _mm256_storeu_ps(o + 3 * n, a30); _mm256_storeu_ps(o + 3 * n + 8, a31);
        }
        for (; j < n; j++) {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (size_t k = 0; k < dim; k++) {
                const float t = xt[k * n + j];
                s0 += x0[k] * t; s1 += x1[k] * t; s2 += x2[k] * t; s3 += x3[k] * t;
            }
            out[i * n + j] = s0; out[(i + 1) * n + j] = s1; out[(i + 2) * n + j] = s2; out[(i + 3) * n + j] = s3;
        }
    }
    for (; i < n; i++) {
        float *o = out + i * n;
        for (size_t j = 0; j < n; j++) o[j] = 0;
        for (size_t k = 0; k < dim; k++) {
            const float a = x[i * dim + k];
            const float *t = xt + k * n;
            for (size_t j = 0; j < n; j++) o[j] += a * t[j];
        }
    }
}

/// Blocks of 4 rows x 32 columns in eight 16-lane registers; the last columns of a block row
/// go through masked loads and stores (no scalar column tail), the last rows (n % 4) one at a
/// time the same way.
FK_AVX512 static void gram_avx512(const float *x, const float *xt, size_t n, size_t dim, float *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *x0 = x + i * dim, *x1 = x0 + dim, *x2 = x1 + dim, *x3 = x2 + dim;
        size_t j = 0;
        for (; j + 32 <= n; j += 32) {
            __m512 a00 = _mm512_setzero_ps(), a01 = _mm512_setzero_ps(), a10 = _mm512_setzero_ps(), a11 = _mm512_setzero_ps();
            __m512 a20 = _mm512_setzero_ps(), a21 = _mm512_setzero_ps(), a30 = _mm512_setzero_ps(), a31 = _mm512_setzero_ps();
            for (size_t k = 0; k < dim; k++) {
                const __m512 t0 = _mm512_loadu_ps(xt + k * n + j), t1 = _mm512_loadu_ps(xt + k * n + j + 16);
                __m512 b = _mm512_set1_ps(x0[k]);
                a00 = _mm512_fmadd_ps(b, t0, a00); a01 = _mm512_fmadd_ps(b, t1, a01);
                b = _mm512_set1_ps(x1[k]);
                a10 = _mm512_fmadd_ps(b, t0, a10); a11 = _mm512_fmadd_ps(b, t1, a11);
                b = _mm512_set1_ps(x2[k]);
                a20 = _mm512_fmadd_ps(b, t0, a20); a21 = _mm512_fmadd_ps(b, t1, a21);
                b = _mm512_set1_ps(x3[k]);
                a30 = _mm512_fmadd_ps(b, t0, a30); a31 = _mm512_fmadd_ps(b, t1, a31);
            }
            float *o = out + i * n + j;
            _mm512_storeu_ps(o, a00); _mm512_storeu_ps(o + 16, a01);
            _mm512_storeu_ps(o + n, a10); _mm512_storeu_ps(o + n + 16, a11);
            _mm512_storeu_ps(o + 2 * n, a20); _mm512_storeu_ps(o + 2 * n + 16, a21);
            _mm512_storeu_ps(o + 3 * n, a30); _mm512_storeu_ps(o + 3 * n + 16, a31);
        }
        for (; j < n; j += 16) {
            const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : fk_tail_mask16(n - j);
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
            for (size_t k = 0; k < dim; k++) {
                const __m512 t = _mm512_maskz_loadu_ps(m, xt + k * n + j);
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[k]), t, a0);
                a1 = _mm512_fmadd_ps(_mm512_set1_ps(x1[k]), t, a1);
                a2 = _mm512_fmadd_ps(_mm512_set1_ps(x2[k]), t, a2);
                a3 = _mm512_fmadd_ps(_mm512_set1_ps(x3[k]), t, a3);
            }
            float *o = out + i * n + j;
            _mm512_mask_storeu_ps(o, m, a0); _mm512_mask_storeu_ps(o + n, m, a1);
            _mm512_mask_storeu_ps(o + 2 * n, m, a2); _mm512_mask_storeu_ps(o + 3 * n, m, a3);
        }
    }
    for (; i < n; i++) {
        const float *xi = x + i * dim;
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : fk_tail_mask16(n - j);
            __m512 a = _mm512_setzero_ps();
            for (size_t k = 0; k < dim; k++) a = _mm512_fmadd_ps(_mm512_set1_ps(xi[k]), _mm512_maskz_loadu_ps(m, xt + k * n + j), a);
            _mm512_mask_storeu_ps(out + i * n + j, m, a);
        }
    }
}
#endif

void fk_gram_f32(const float *x, size_t n, size_t dim, float *out) {
    float *xt = (float *)malloc(sizeof(float) * (n * dim > 0 ? n * dim : 1));
    if (!xt) {  // no memory for the transpose: one dot product per pair
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) out[i * n + j] = fk_dot_f32(x + i * dim, x + j * dim, dim);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < dim; k++) xt[k * n + i] = x[i * dim + k];
#if FK_X86
    const int level = fk_simd_level();
    if (level >= 2) gram_avx512(x, xt, n, dim, out);
    else if (level) gram_avx2(x, xt, n, dim, out);
    else gram_scalar(x, xt, n, dim, out);
#else
    gram_scalar(x, xt, n, dim, out);
#endif
    free(xt);
}

// In-batch softmax cross-entropy for two-tower training: one pass per row over the
// logits, turning them into the loss gradient in place. The exponential is the costly
// part (B * B of them per step), so the AVX2 path evaluates it eight lanes at a time (the
// AVX-512 path sixteen, with masked tails) with a range reduction to [-ln2/2, ln2/2] and a
// degree-6 polynomial (relative error ~2e-7).
#include "FunnelKernels.h"
#include <math.h>

#include "simd.h"

/// Row i of the logits: mask accidental hits (another column holding row i's item) with
/// -inf, subtract log q, and return the row's max. Scalar; also the reference.
static float prepare_row_scalar(float *row, size_t n, size_t i, const int32_t *items, const float *logq) {
    float mx = -INFINITY;
    const int32_t mine = items[i];
    for (size_t j = 0; j < n; j++) {
        if (j != i && items[j] == mine) { row[j] = -INFINITY; continue; }
        if (logq) row[j] -= logq[j];
        if (row[j] > mx) mx = row[j];
    }
    return mx;
}

static float softmax_row_scalar(float *row, size_t n, size_t i, float mx, float scale) {
    float z = 0;
    for (size_t j = 0; j < n; j++) { float e = expf(row[j] - mx); row[j] = e; z += e; }
    float p = row[i] / z;
    float loss = -logf(p > 1e-30f ? p : 1e-30f);
    float k = scale / z;
    for (size_t j = 0; j < n; j++) row[j] *= k;
    row[i] -= scale;
    return loss;
}

#if FK_X86

/// The exp's range and reduction (ln 2 in two parts) and its degree-6 polynomial, shared by
/// the eight- and sixteen-lane bodies.
#define FK_EXP_LO (-87.3365447f)
#define FK_EXP_HI (88.3762626f)
#define FK_EXP_LOG2E (1.44269504f)
#define FK_EXP_LN2_HI (0.693359375f)
#define FK_EXP_LN2_LO (-2.12194440e-4f)
#define FK_EXP_P0 (1.9875691500e-4f)
#define FK_EXP_P1 (1.3981999507e-3f)
#define FK_EXP_P2 (8.3334519073e-3f)
#define FK_EXP_P3 (4.1665795894e-2f)
#define FK_EXP_P4 (1.6666665459e-1f)
#define FK_EXP_P5 (5.0000001201e-1f)

/// e^x for eight lanes; lanes below -87.3 (including -inf) give 0.
FK_AVX2 static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(FK_EXP_LO), hi = _mm256_set1_ps(FK_EXP_HI);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(FK_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(FK_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(FK_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(FK_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FK_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FK_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FK_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FK_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FK_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

FK_AVX2 static float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

FK_AVX2 static float row_avx2(float *row, size_t n, size_t i, const int32_t *items, const float *logq, float scale) {
    const float own = row[i] - (logq ? logq[i] : 0);
    const __m256i mine = _mm256_set1_epi32(items[i]);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 vmax = ninf;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 s = _mm256_loadu_ps(row + j);
        if (logq) s = _mm256_sub_ps(s, _mm256_loadu_ps(logq + j));
        __m256 hit = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(items + j)), mine));
        s = _mm256_blendv_ps(s, ninf, hit);  // row i's own column is restored below
        _mm256_storeu_ps(row + j, s);
        vmax = _mm256_max_ps(vmax, s);
    }
    float mx = hmax8(vmax);
    for (; j < n; j++) {
        if (items[j] == items[i]) { row[j] = -INFINITY; continue; }
        if (logq) row[j] -= logq[j];
        if (row[j] > mx) mx = row[j];
    }
    row[i] = own;
    if (own > mx) mx = own;
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 vz = _mm256_setzero_ps();
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
        _mm256_storeu_ps(row + j, e);
        vz = _mm256_add_ps(vz, e);
    }
    float z = fk_hsum_ps(vz);
    for (; j < n; j++) { float e = expf(row[j] - mx); row[j] = e; z += e; }
    float p = row[i] / z;
    float loss = -logf(p > 1e-30f ? p : 1e-30f);
    const __m256 k = _mm256_set1_ps(scale / z);
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), k));
    for (; j < n; j++) row[j] *= scale / z;
    row[i] -= scale;
    return loss;
}

/// e^x for sixteen lanes (the same reduction and polynomial as exp8).
FK_AVX512 static inline __m512 exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(FK_EXP_LO), hi = _mm512_set1_ps(FK_EXP_HI);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(FK_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(FK_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(FK_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(FK_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FK_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FK_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FK_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FK_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FK_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps((__mmask16)~under, p, _mm512_castsi512_ps(e));
}

/// As row_avx2, sixteen lanes at a time; the last n % 16 columns through masks.
FK_AVX512 static float row_avx512(float *row, size_t n, size_t i, const int32_t *items, const float *logq, float scale) {
    const float own = row[i] - (logq ? logq[i] : 0);
    const __m512i mine = _mm512_set1_epi32(items[i]);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 vmax = ninf;
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : fk_tail_mask16(n - j);
        __m512 s = _mm512_maskz_loadu_ps(m, row + j);
        if (logq) s = _mm512_sub_ps(s, _mm512_maskz_loadu_ps(m, logq + j));
        const __mmask16 hit = _mm512_mask_cmpeq_epi32_mask(m, _mm512_maskz_loadu_epi32(m, items + j), mine);
        s = _mm512_mask_blend_ps(hit, s, ninf);  // row i's own column is restored below
        _mm512_mask_storeu_ps(row + j, m, s);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, s);
    }
    float mx = _mm512_reduce_max_ps(vmax);
    row[i] = own;
    if (own > mx) mx = own;
    const __m512 vm = _mm512_set1_ps(mx);
    __m512 vz = _mm512_setzero_ps();
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : fk_tail_mask16(n - j);
        const __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), vm)));
        _mm512_mask_storeu_ps(row + j, m, e);
        vz = _mm512_add_ps(vz, e);
    }
    const float z = _mm512_reduce_add_ps(vz);
    const float p = row[i] / z;
    const float loss = -logf(p > 1e-30f ? p : 1e-30f);
    const __m512 k = _mm512_set1_ps(scale / z);
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : fk_tail_mask16(n - j);
        _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), k));
    }
    row[i] -= scale;
    return loss;
}
#endif

float fk_inbatch_softmax_rows_at(float *s, size_t n, size_t rows, size_t positive0,
                                 const int32_t *items, const float *logq, float scale) {
    double loss = 0;
#if FK_X86
    if (fk_simd_level() >= 2) {
        for (size_t r = 0; r < rows; r++) loss += row_avx512(s + r * n, n, positive0 + r, items, logq, scale);
        return (float)loss;
    }
    if (fk_simd_level() >= 1) {
        for (size_t r = 0; r < rows; r++) loss += row_avx2(s + r * n, n, positive0 + r, items, logq, scale);
        return (float)loss;
    }
#endif
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * n;
        float mx = prepare_row_scalar(row, n, positive0 + r, items, logq);
        loss += softmax_row_scalar(row, n, positive0 + r, mx, scale);
    }
    return (float)loss;
}

float fk_inbatch_softmax_rows(float *s, size_t n, size_t row0, size_t row1,
                              const int32_t *items, const float *logq, float scale) {
    return fk_inbatch_softmax_rows_at(s + row0 * n, n, row1 - row0, row0, items, logq, scale);
}

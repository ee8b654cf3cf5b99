#include "FunnelKernels.h"

#include "simd.h"

// Defined in half.c.
void fk_half_batch4(int dot, const float *q, const uint16_t *a, const uint16_t *b, const uint16_t *c,
                    const uint16_t *d, size_t n, float *out);

#define ROW(i) ((const char *)base + (size_t)ids[i] * stride + offset)

static void prefetch_row(const void *p, size_t bytes) {
    // The first lines of a row; the hardware prefetcher follows the rest.
    const char *c = (const char *)p;
    size_t lines = bytes > 256 ? 4 : (bytes + 63) / 64;
    for (size_t l = 0; l < lines; l++) __builtin_prefetch(c + 64 * l, 0, 3);
}

static size_t row_bytes(int kind, size_t dim) { return kind < 2 ? dim * 4 : dim * 2; }

static void batch_scalar(int kind, const void *q, const void *base, size_t stride, size_t offset,
                         const uint32_t *ids, size_t count, size_t dim, float *out) {
    for (size_t i = 0; i < count; i++) {
        switch (kind) {
        case 0: out[i] = fk_l2sq_f32((const float *)q, (const float *)ROW(i), dim); break;
        case 1: out[i] = fk_dot_f32((const float *)q, (const float *)ROW(i), dim); break;
        case 2: out[i] = fk_l2sq_f16((const float *)q, (const uint16_t *)ROW(i), dim); break;
        default: out[i] = fk_dot_f16((const float *)q, (const uint16_t *)ROW(i), dim); break;
        }
    }
}

#if FK_X86
FK_AVX2 static void l2_f32_4(const float *q, const float *a, const float *b, const float *c, const float *d,
                             size_t dim, float *out) {
    __m256 sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps(), sc = _mm256_setzero_ps(), sd = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= dim; j += 8) {
        __m256 qv = _mm256_loadu_ps(q + j);
        __m256 da = _mm256_sub_ps(_mm256_loadu_ps(a + j), qv);
        __m256 db = _mm256_sub_ps(_mm256_loadu_ps(b + j), qv);
        __m256 dc = _mm256_sub_ps(_mm256_loadu_ps(c + j), qv);
        __m256 dd = _mm256_sub_ps(_mm256_loadu_ps(d + j), qv);
        sa = _mm256_fmadd_ps(da, da, sa);
        sb = _mm256_fmadd_ps(db, db, sb);
        sc = _mm256_fmadd_ps(dc, dc, sc);
        sd = _mm256_fmadd_ps(dd, dd, sd);
    }
    float ra = fk_hsum_ps(sa), rb = fk_hsum_ps(sb), rc = fk_hsum_ps(sc), rd = fk_hsum_ps(sd);
    for (; j < dim; j++) {
        float x;
        x = a[j] - q[j]; ra += x * x;
        x = b[j] - q[j]; rb += x * x;
        x = c[j] - q[j]; rc += x * x;
        x = d[j] - q[j]; rd += x * x;
    }
    out[0] = ra; out[1] = rb; out[2] = rc; out[3] = rd;
}

FK_AVX2 static void dot_f32_4(const float *q, const float *a, const float *b, const float *c, const float *d,
                              size_t dim, float *out) {
    __m256 sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps(), sc = _mm256_setzero_ps(), sd = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= dim; j += 8) {
        __m256 qv = _mm256_loadu_ps(q + j);
        sa = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), qv, sa);
        sb = _mm256_fmadd_ps(_mm256_loadu_ps(b + j), qv, sb);
        sc = _mm256_fmadd_ps(_mm256_loadu_ps(c + j), qv, sc);
        sd = _mm256_fmadd_ps(_mm256_loadu_ps(d + j), qv, sd);
    }
    float ra = fk_hsum_ps(sa), rb = fk_hsum_ps(sb), rc = fk_hsum_ps(sc), rd = fk_hsum_ps(sd);
    for (; j < dim; j++) {
        ra += a[j] * q[j]; rb += b[j] * q[j]; rc += c[j] * q[j]; rd += d[j] * q[j];
    }
    out[0] = ra; out[1] = rb; out[2] = rc; out[3] = rd;
}

/// Four rows of `kind` against q (see fk_distance_batch).
FK_AVX2 static inline void rows4(int kind, const void *q, const void *a, const void *b, const void *c, const void *d,
                                 size_t dim, float *out) {
    switch (kind) {
    case 0: l2_f32_4((const float *)q, a, b, c, d, dim, out); break;
    case 1: dot_f32_4((const float *)q, a, b, c, d, dim, out); break;
    default: fk_half_batch4(kind == 3, (const float *)q, a, b, c, d, dim, out); break;
    }
}

FK_AVX512 static void l2_f32_4_avx512(const float *q, const float *a, const float *b, const float *c, const float *d,
                                      size_t dim, float *out) {
    __m512 sa = _mm512_setzero_ps(), sb = _mm512_setzero_ps(), sc = _mm512_setzero_ps(), sd = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= dim; j += 16) {
        __m512 qv = _mm512_loadu_ps(q + j);
        __m512 da = _mm512_sub_ps(_mm512_loadu_ps(a + j), qv), db = _mm512_sub_ps(_mm512_loadu_ps(b + j), qv);
        __m512 dc = _mm512_sub_ps(_mm512_loadu_ps(c + j), qv), dd = _mm512_sub_ps(_mm512_loadu_ps(d + j), qv);
        sa = _mm512_fmadd_ps(da, da, sa);
        sb = _mm512_fmadd_ps(db, db, sb);
        sc = _mm512_fmadd_ps(dc, dc, sc);
        sd = _mm512_fmadd_ps(dd, dd, sd);
    }
    if (j < dim) {
        __mmask16 m = fk_tail_mask16(dim - j);
        __m512 qv = _mm512_maskz_loadu_ps(m, q + j);
        __m512 da = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + j), qv), db = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, b + j), qv);
        __m512 dc = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, c + j), qv), dd = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, d + j), qv);
        sa = _mm512_fmadd_ps(da, da, sa);
        sb = _mm512_fmadd_ps(db, db, sb);
        sc = _mm512_fmadd_ps(dc, dc, sc);
        sd = _mm512_fmadd_ps(dd, dd, sd);
    }
    out[0] = _mm512_reduce_add_ps(sa); out[1] = _mm512_reduce_add_ps(sb);
    out[2] = _mm512_reduce_add_ps(sc); out[3] = _mm512_reduce_add_ps(sd);
}

FK_AVX512 static void dot_f32_4_avx512(const float *q, const float *a, const float *b, const float *c, const float *d,
                                       size_t dim, float *out) {
    __m512 sa = _mm512_setzero_ps(), sb = _mm512_setzero_ps(), sc = _mm512_setzero_ps(), sd = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= dim; j += 16) {
        __m512 qv = _mm512_loadu_ps(q + j);
        sa = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), qv, sa);
        sb = _mm512_fmadd_ps(_mm512_loadu_ps(b + j), qv, sb);
        sc = _mm512_fmadd_ps(_mm512_loadu_ps(c + j), qv, sc);
        sd = _mm512_fmadd_ps(_mm512_loadu_ps(d + j), qv, sd);
    }
    if (j < dim) {
        __mmask16 m = fk_tail_mask16(dim - j);
        __m512 qv = _mm512_maskz_loadu_ps(m, q + j);
        sa = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), qv, sa);
        sb = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b + j), qv, sb);
        sc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c + j), qv, sc);
        sd = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, d + j), qv, sd);
    }
    out[0] = _mm512_reduce_add_ps(sa); out[1] = _mm512_reduce_add_ps(sb);
    out[2] = _mm512_reduce_add_ps(sc); out[3] = _mm512_reduce_add_ps(sd);
}

/// Sixteen halves widened to floats (vcvtph2ps is AVX512F); `m` masks a tail.
FK_AVX512 static inline __m512 load_half16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
FK_AVX512 static inline __m512 load_half16_masked(__mmask16 m, const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/// Four half rows (kinds 2 and 3) against a float query: sixteen dimensions per step (the
/// F16C body takes eight), the tail under a mask instead of a scalar loop.
FK_AVX512 static void half_4_avx512(int dot, const float *q, const uint16_t *a, const uint16_t *b, const uint16_t *c,
                                    const uint16_t *d, size_t dim, float *out) {
    __m512 sa = _mm512_setzero_ps(), sb = _mm512_setzero_ps(), sc = _mm512_setzero_ps(), sd = _mm512_setzero_ps();
    size_t j = 0;
#define FK_HALF_STEP(LOAD_Q, LOAD_H)                                                                  \
    {                                                                                               \
        __m512 qv = LOAD_Q;                                                                         \
        __m512 xa = LOAD_H(a + j), xb = LOAD_H(b + j), xc = LOAD_H(c + j), xd = LOAD_H(d + j);      \
        if (dot) {                                                                                  \
            sa = _mm512_fmadd_ps(xa, qv, sa); sb = _mm512_fmadd_ps(xb, qv, sb);                     \
            sc = _mm512_fmadd_ps(xc, qv, sc); sd = _mm512_fmadd_ps(xd, qv, sd);                     \
        } else {                                                                                    \
            xa = _mm512_sub_ps(xa, qv); xb = _mm512_sub_ps(xb, qv);                                 \
            xc = _mm512_sub_ps(xc, qv); xd = _mm512_sub_ps(xd, qv);                                 \
            sa = _mm512_fmadd_ps(xa, xa, sa); sb = _mm512_fmadd_ps(xb, xb, sb);                     \
            sc = _mm512_fmadd_ps(xc, xc, sc); sd = _mm512_fmadd_ps(xd, xd, sd);                     \
        }                                                                                           \
    }
    for (; j + 16 <= dim; j += 16) FK_HALF_STEP(_mm512_loadu_ps(q + j), load_half16)
    if (j < dim) {
        const __mmask16 m = fk_tail_mask16(dim - j);
#define FK_MASKED(p) load_half16_masked(m, p)
        FK_HALF_STEP(_mm512_maskz_loadu_ps(m, q + j), FK_MASKED)
#undef FK_MASKED
    }
#undef FK_HALF_STEP
    out[0] = _mm512_reduce_add_ps(sa); out[1] = _mm512_reduce_add_ps(sb);
    out[2] = _mm512_reduce_add_ps(sc); out[3] = _mm512_reduce_add_ps(sd);
}

/// Four rows of `kind` with the AVX-512 bodies.
FK_AVX512 static inline void rows4_avx512(int kind, const void *q, const void *a, const void *b, const void *c, const void *d,
                                          size_t dim, float *out) {
    switch (kind) {
    case 0: l2_f32_4_avx512((const float *)q, a, b, c, d, dim, out); break;
    case 1: dot_f32_4_avx512((const float *)q, a, b, c, d, dim, out); break;
    default: half_4_avx512(kind == 3, (const float *)q, a, b, c, d, dim, out); break;
    }
}

// The batch loop shared by every level: prefetch the next rows, four rows per kernel call,
// and one to three rows left done by the four-row kernel with the last row repeated
// (cheaper than a call per row). ROWS4 is the level's four-row kernel.
#define FK_BATCH_LOOP(ROWS4)                                                                   \
    size_t bytes = row_bytes(kind, dim);                                                       \
    for (size_t i = 0; i < count && i < 4; i++) prefetch_row(ROW(i), bytes);                  \
    size_t i = 0;                                                                              \
    for (; i + 4 <= count; i += 4) {                                                           \
        for (size_t p = i + 4; p < count && p < i + 8; p++) prefetch_row(ROW(p), bytes);       \
        ROWS4(kind, q, ROW(i), ROW(i + 1), ROW(i + 2), ROW(i + 3), dim, out + i);              \
    }                                                                                          \
    if (i < count) {                                                                           \
        const void *r[4];                                                                      \
        float tmp[4];                                                                          \
        for (size_t p = 0; p < 4; p++) r[p] = ROW(i + p < count ? i + p : count - 1);          \
        ROWS4(kind, q, r[0], r[1], r[2], r[3], dim, tmp);                                      \
        for (size_t p = 0; i + p < count; p++) out[i + p] = tmp[p];                            \
    }

FK_AVX512 static void batch_avx512(int kind, const void *q, const void *base, size_t stride, size_t offset,
                                   const uint32_t *ids, size_t count, size_t dim, float *out) {
    FK_BATCH_LOOP(rows4_avx512)
}

FK_AVX2 static void batch_avx2(int kind, const void *q, const void *base, size_t stride, size_t offset,
                               const uint32_t *ids, size_t count, size_t dim, float *out) {
    FK_BATCH_LOOP(rows4)
}
#endif

void fk_distance_batch(int kind, const void *q, const void *base, size_t stride, size_t offset,
                       const uint32_t *ids, size_t count, size_t dim, float *out) {
#if FK_X86
    if (fk_simd_level() >= 2) {
        batch_avx512(kind, q, base, stride, offset, ids, count, dim, out);
        return;
    }
    if (fk_simd_level() && (kind < 2 || fk_half_simd())) {
        batch_avx2(kind, q, base, stride, offset, ids, count, dim, out);
        return;
    }
#endif
    batch_scalar(kind, q, base, stride, offset, ids, count, dim, out);
}

// MARK: - Asymmetric int8: the query, pre-multiplied by the per-dimension scales and rounded
// to int16 (see ScalarQuantizer.prepare), against uint8 codes: sum q[j] * code[j], exact in
// int32 (the caller keeps |q| small enough for the dimension). Codes are widened to 16 bits
// and multiplied in pairs (vpmaddwd): sixteen dimensions per instruction.

static int32_t adc_scalar(const int16_t *q, const uint8_t *c, size_t n) {
    int32_t s = 0;
    for (size_t j = 0; j < n; j++) s += (int32_t)q[j] * c[j];
    return s;
}

#if FK_X86
FK_AVX2 static inline __m256i widen16(const uint8_t *p) { return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)); }

FK_AVX2 static int32_t adc_avx2(const int16_t *q, const uint8_t *c, size_t n) {
    __m256i s = _mm256_setzero_si256();
    size_t j = 0;
    for (; j + 16 <= n; j += 16) s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(q + j)), widen16(c + j)));
    int32_t r = fk_hsum_epi32(s);
    for (; j < n; j++) r += (int32_t)q[j] * c[j];
    return r;
}

FK_AVX2 static void adc_4(const int16_t *q, const uint8_t *a, const uint8_t *b, const uint8_t *c, const uint8_t *d,
                          size_t n, float *out) {
    __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256(), sc = _mm256_setzero_si256(), sd = _mm256_setzero_si256();
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(q + j));
        sa = _mm256_add_epi32(sa, _mm256_madd_epi16(qv, widen16(a + j)));
        sb = _mm256_add_epi32(sb, _mm256_madd_epi16(qv, widen16(b + j)));
        sc = _mm256_add_epi32(sc, _mm256_madd_epi16(qv, widen16(c + j)));
        sd = _mm256_add_epi32(sd, _mm256_madd_epi16(qv, widen16(d + j)));
    }
    int32_t ra = fk_hsum_epi32(sa), rb = fk_hsum_epi32(sb), rc = fk_hsum_epi32(sc), rd = fk_hsum_epi32(sd);
    for (; j < n; j++) { ra += (int32_t)q[j] * a[j]; rb += (int32_t)q[j] * b[j]; rc += (int32_t)q[j] * c[j]; rd += (int32_t)q[j] * d[j]; }
    out[0] = (float)ra; out[1] = (float)rb; out[2] = (float)rc; out[3] = (float)rd;
}

// The codes' batch loop of every level: prefetch the next rows, four rows per call of the
// level's four-row kernel ADC4, the one to three left with the last row repeated.
#define FK_ADC_BATCH_LOOP(ADC4)                                                                   \
    for (size_t i = 0; i < count && i < 4; i++) prefetch_row(ROW(i), dim);                       \
    size_t i = 0;                                                                                 \
    for (; i + 4 <= count; i += 4) {                                                              \
        for (size_t p = i + 4; p < count && p < i + 8; p++) prefetch_row(ROW(p), dim);            \
        ADC4(q, (const uint8_t *)ROW(i), (const uint8_t *)ROW(i + 1), (const uint8_t *)ROW(i + 2), \
             (const uint8_t *)ROW(i + 3), dim, out + i);                                          \
    }                                                                                             \
    if (i < count) {                                                                              \
        const uint8_t *r[4];                                                                      \
        float tmp[4];                                                                             \
        for (size_t p = 0; p < 4; p++) r[p] = (const uint8_t *)ROW(i + p < count ? i + p : count - 1); \
        ADC4(q, r[0], r[1], r[2], r[3], dim, tmp);                                                \
        for (size_t p = 0; i + p < count; p++) out[i + p] = tmp[p];                               \
    }

FK_AVX2 static void adc_batch_avx2(const int16_t *q, const void *base, size_t stride, size_t offset,
                                   const uint32_t *ids, size_t count, size_t dim, float *out) {
    FK_ADC_BATCH_LOOP(adc_4)
}

// AVX-512: 32 dimensions per step, the tail by masked loads (never past the row). Without
// VNNI, vpmaddwd then vpaddd; with it, vpdpwssd does both. The sums are the same integers
// at every level (each lane adds pairs of products, as AVX2's do).
#define FK_ADC512(NAME, TARGET, MAC)                                                              \
    TARGET static inline __m512i NAME##_widen(const uint8_t *p) {                                 \
        return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));                      \
    }                                                                                             \
    TARGET static inline __m512i NAME##_widen_masked(__mmask32 m, const uint8_t *p) {             \
        return _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p));                               \
    }                                                                                             \
    TARGET static int32_t NAME(const int16_t *q, const uint8_t *c, size_t n) {                    \
        __m512i s = _mm512_setzero_si512();                                                       \
        size_t j = 0;                                                                             \
        for (; j + 32 <= n; j += 32) s = MAC(s, _mm512_loadu_si512((const void *)(q + j)), NAME##_widen(c + j)); \
        if (j < n) {                                                                              \
            const __mmask32 m = (__mmask32)((1ull << (n - j)) - 1);                               \
            s = MAC(s, _mm512_maskz_loadu_epi16(m, q + j), NAME##_widen_masked(m, c + j));        \
        }                                                                                         \
        return _mm512_reduce_add_epi32(s);                                                        \
    }                                                                                             \
    TARGET static void NAME##_4(const int16_t *q, const uint8_t *a, const uint8_t *b, const uint8_t *c, \
                                const uint8_t *d, size_t n, float *out) {                         \
        __m512i sa = _mm512_setzero_si512(), sb = sa, sc = sa, sd = sa;                           \
        size_t j = 0;                                                                             \
        for (; j + 32 <= n; j += 32) {                                                            \
            const __m512i qv = _mm512_loadu_si512((const void *)(q + j));                         \
            sa = MAC(sa, qv, NAME##_widen(a + j)); sb = MAC(sb, qv, NAME##_widen(b + j));         \
            sc = MAC(sc, qv, NAME##_widen(c + j)); sd = MAC(sd, qv, NAME##_widen(d + j));         \
        }                                                                                         \
        if (j < n) {                                                                              \
            const __mmask32 m = (__mmask32)((1ull << (n - j)) - 1);                               \
            const __m512i qv = _mm512_maskz_loadu_epi16(m, q + j);                                \
            sa = MAC(sa, qv, NAME##_widen_masked(m, a + j)); sb = MAC(sb, qv, NAME##_widen_masked(m, b + j)); \
            sc = MAC(sc, qv, NAME##_widen_masked(m, c + j)); sd = MAC(sd, qv, NAME##_widen_masked(m, d + j)); \
        }                                                                                         \
        out[0] = (float)_mm512_reduce_add_epi32(sa); out[1] = (float)_mm512_reduce_add_epi32(sb); \
        out[2] = (float)_mm512_reduce_add_epi32(sc); out[3] = (float)_mm512_reduce_add_epi32(sd); \
    }                                                                                             \
    TARGET static void NAME##_batch(const int16_t *q, const void *base, size_t stride, size_t offset, \
                                    const uint32_t *ids, size_t count, size_t dim, float *out) { \
        FK_ADC_BATCH_LOOP(NAME##_4)                                                               \
    }

#define FK_MADD_ADD(s, x, y) _mm512_add_epi32((s), _mm512_madd_epi16((x), (y)))
#define FK_DPWSSD(s, x, y) _mm512_dpwssd_epi32((s), (x), (y))
FK_ADC512(adc_avx512, FK_AVX512, FK_MADD_ADD)
FK_ADC512(adc_vnni, FK_AVX512VNNI, FK_DPWSSD)
#undef FK_MADD_ADD
#undef FK_DPWSSD
#undef FK_ADC512
#undef FK_ADC_BATCH_LOOP
#endif

int32_t fk_adc_dot_u8(const int16_t *q, const uint8_t *codes, size_t n) {
#if FK_X86
    const int level = fk_simd_level();
    if (level >= 3) return adc_vnni(q, codes, n);
    if (level == 2) return adc_avx512(q, codes, n);
    if (level) return adc_avx2(q, codes, n);
#endif
    return adc_scalar(q, codes, n);
}

void fk_adc_batch_u8(const int16_t *q, const void *base, size_t stride, size_t offset,
                     const uint32_t *ids, size_t count, size_t dim, float *out) {
#if FK_X86
    const int level = fk_simd_level();
    if (level >= 3) { adc_vnni_batch(q, base, stride, offset, ids, count, dim, out); return; }
    if (level == 2) { adc_avx512_batch(q, base, stride, offset, ids, count, dim, out); return; }
    if (level) { adc_batch_avx2(q, base, stride, offset, ids, count, dim, out); return; }
#endif
    for (size_t i = 0; i < count; i++) out[i] = (float)adc_scalar(q, (const uint8_t *)ROW(i), dim);
}

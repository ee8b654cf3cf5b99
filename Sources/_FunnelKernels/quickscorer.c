// QuickScorer traversal of a tree ensemble (see FunnelKernels.h). Exact: the same exit
// leaves as walking each tree from its root, NaN and zero-as-missing included.
#include "FunnelKernels.h"
#include <stdlib.h>
#include <string.h>

#include "simd.h"

/// Whether node j sends a NaN or a missing zero right (each node has its own rule).
static inline int missing_goes_right(const fk_quickscorer *qs, int32_t j, float v) {
    if (v != v) return !qs->nan_left[j];
    return !(qs->zero_missing[j] ? qs->zero_left[j] : (0.0f <= qs->thresholds[j]));
}

/// Whether a value takes the per-node missing rules rather than the threshold scan.
static inline int is_missing(const fk_quickscorer *qs, int f, float v) {
    return v != v || (v == 0.0f && qs->feature_zero_missing[f]);
}

/// The false nodes of one feature for one row: NaN and zero-as-missing values follow each
/// node's own rule; other values go right at every threshold below them.
static inline void scalar_feature(const fk_quickscorer *qs, int f, float v, uint64_t *leafvec, size_t lane_stride) {
    const int32_t lo = qs->feature_offsets[f], hi = qs->feature_offsets[f + 1];
    if (is_missing(qs, f, v)) {
        for (int32_t j = lo; j < hi; j++)
            if (missing_goes_right(qs, j, v)) leafvec[(size_t)qs->tree[j] * lane_stride] &= qs->mask[j];
    } else {
        for (int32_t j = lo; j < hi && v > qs->thresholds[j]; j++)
            leafvec[(size_t)qs->tree[j] * lane_stride] &= qs->mask[j];
    }
}

#if FK_X86

/// Eight rows at once: one threshold is compared with the eight values of its feature, and
/// the node's mask is AND-ed into the leaf words of the lanes it sends right. A feature's
/// scan stops when no lane's value exceeds the threshold. Lanes with NaN or a missing zero
/// take the scalar rules and sit out the vector scan (their value reads as -infinity).
FK_AVX2 static void accumulate8(const fk_quickscorer *qs, const float *x, size_t stride, uint64_t *leafvec, double *out) {
    const int trees = qs->trees;
    for (int t = 0; t < trees; t++) {
        _mm256_storeu_si256((__m256i *)(leafvec + (size_t)t * 8), _mm256_set1_epi64x(-1));
        _mm256_storeu_si256((__m256i *)(leafvec + (size_t)t * 8 + 4), _mm256_set1_epi64x(-1));
    }
    for (int f = 0; f < qs->features; f++) {
        const int32_t lo = qs->feature_offsets[f], hi = qs->feature_offsets[f + 1];
        if (lo == hi) continue;
        float vals[8];
        for (int b = 0; b < 8; b++) {
            const float v = x[(size_t)b * stride + f];
            if (is_missing(qs, f, v)) {
                scalar_feature(qs, f, v, leafvec + b, 8);
                vals[b] = -__builtin_inff();
            } else {
                vals[b] = v;
            }
        }
        const __m256 v = _mm256_loadu_ps(vals);
        for (int32_t j = lo; j < hi; j++) {
            const __m256 gt = _mm256_cmp_ps(v, _mm256_set1_ps(qs->thresholds[j]), _CMP_GT_OQ);
            if (_mm256_movemask_ps(gt) == 0) break;
            const __m256i g = _mm256_castps_si256(gt);
            const __m256i lanes_lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(g));
            const __m256i lanes_hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(g, 1));
            const __m256i m = _mm256_set1_epi64x((long long)qs->mask[j]);
            uint64_t *w = leafvec + (size_t)qs->tree[j] * 8;
            // word &= ~(sent_right & ~mask)
            __m256i a = _mm256_loadu_si256((const __m256i *)w);
            __m256i c = _mm256_loadu_si256((const __m256i *)(w + 4));
            a = _mm256_andnot_si256(_mm256_andnot_si256(m, lanes_lo), a);
            c = _mm256_andnot_si256(_mm256_andnot_si256(m, lanes_hi), c);
            _mm256_storeu_si256((__m256i *)w, a);
            _mm256_storeu_si256((__m256i *)(w + 4), c);
        }
    }
    double s[8];
    for (int b = 0; b < 8; b++) s[b] = out[b];
    for (int t = 0; t < trees; t++) {
        const double *values = qs->leaf_values + qs->leaf_offsets[t];
        const uint64_t *w = leafvec + (size_t)t * 8;
        for (int b = 0; b < 8; b++) s[b] += values[__builtin_ctzll(w[b])];
    }
    for (int b = 0; b < 8; b++) out[b] = s[b];
}

/// As accumulate8 for forests of at most 32 leaves per tree: a tree's eight leaf words are
/// one 256-bit vector, and a comparison result is already the lane mask to apply.
FK_AVX2 static void accumulate8_32(const fk_quickscorer *qs, const float *x, size_t stride, uint32_t *leafvec, double *out) {
    const int trees = qs->trees;
    for (int t = 0; t < trees; t++) _mm256_storeu_si256((__m256i *)(leafvec + (size_t)t * 8), _mm256_set1_epi32(-1));
    for (int f = 0; f < qs->features; f++) {
        const int32_t lo = qs->feature_offsets[f], hi = qs->feature_offsets[f + 1];
        if (lo == hi) continue;
        float vals[8];
        for (int b = 0; b < 8; b++) {
            const float v = x[(size_t)b * stride + f];
            if (is_missing(qs, f, v)) {
                // The per-node rules on this lane's 32-bit words.
                for (int32_t j = lo; j < hi; j++)
                    if (missing_goes_right(qs, j, v)) leafvec[(size_t)qs->tree[j] * 8 + b] &= qs->mask32[j];
                vals[b] = -__builtin_inff();
            } else {
                vals[b] = v;
            }
        }
        const __m256 v = _mm256_loadu_ps(vals);
        for (int32_t j = lo; j < hi; j++) {
            const __m256 gt = _mm256_cmp_ps(v, _mm256_set1_ps(qs->thresholds[j]), _CMP_GT_OQ);
            if (_mm256_movemask_ps(gt) == 0) break;
            uint32_t *w = leafvec + (size_t)qs->tree[j] * 8;
            const __m256i m = _mm256_set1_epi32((int)qs->mask32[j]);
            __m256i a = _mm256_loadu_si256((const __m256i *)w);
            a = _mm256_andnot_si256(_mm256_andnot_si256(m, _mm256_castps_si256(gt)), a);
            _mm256_storeu_si256((__m256i *)w, a);
        }
    }
    double s[8];
    for (int b = 0; b < 8; b++) s[b] = out[b];
    for (int t = 0; t < trees; t++) {
        const double *values = qs->leaf_values + qs->leaf_offsets[t];
        const uint32_t *w = leafvec + (size_t)t * 8;
        for (int b = 0; b < 8; b++) s[b] += values[__builtin_ctz(w[b])];
    }
    for (int b = 0; b < 8; b++) out[b] = s[b];
}

/// As accumulate8_32 for 32 rows: a node's threshold and mask are loaded once and applied to
/// four vectors of eight rows, so the per-node bookkeeping (broadcasts, the tree's address,
/// the loop) is shared by 32 rows instead of 8. A tree's 32 leaf words are 128 bytes, all
/// trees' 25 KB for 200 trees: still in L1.
FK_AVX2 static void accumulate32_32(const fk_quickscorer *qs, const float *x, size_t stride, uint32_t *restrict leafvec, double *out) {
    // Locals, so that the stores into leafvec cannot make the compiler reload the layout.
    const int trees = qs->trees, features = qs->features;
    const int32_t *restrict offsets = qs->feature_offsets, *restrict tree = qs->tree;
    const float *restrict thresholds = qs->thresholds;
    const uint32_t *restrict mask32 = qs->mask32;
    const __m256i ones = _mm256_set1_epi32(-1);
    for (int t = 0; t < trees; t++)
        for (int k = 0; k < 4; k++) _mm256_storeu_si256((__m256i *)(leafvec + (size_t)t * 32 + k * 8), ones);
    for (int f = 0; f < features; f++) {
        const int32_t lo = offsets[f], hi = offsets[f + 1];
        if (lo == hi) continue;
        float vals[32];
        for (int b = 0; b < 32; b++) {
            const float v = x[(size_t)b * stride + f];
            if (is_missing(qs, f, v)) {
                for (int32_t j = lo; j < hi; j++)
                    if (missing_goes_right(qs, j, v)) leafvec[(size_t)tree[j] * 32 + b] &= mask32[j];
                vals[b] = -__builtin_inff();
            } else {
                vals[b] = v;
            }
        }
        const __m256 v0 = _mm256_loadu_ps(vals), v1 = _mm256_loadu_ps(vals + 8);
        const __m256 v2 = _mm256_loadu_ps(vals + 16), v3 = _mm256_loadu_ps(vals + 24);
        for (int32_t j = lo; j < hi; j++) {
            const __m256 th = _mm256_set1_ps(thresholds[j]);
            const __m256 g0 = _mm256_cmp_ps(v0, th, _CMP_GT_OQ), g1 = _mm256_cmp_ps(v1, th, _CMP_GT_OQ);
            const __m256 g2 = _mm256_cmp_ps(v2, th, _CMP_GT_OQ), g3 = _mm256_cmp_ps(v3, th, _CMP_GT_OQ);
            if (_mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(g0, g1), _mm256_or_ps(g2, g3))) == 0) break;
            uint32_t *w = leafvec + (size_t)tree[j] * 32;
            const __m256i m = _mm256_set1_epi32((int)mask32[j]);
            // word &= ~(sent_right & ~mask)
#define FK_QS_LANE(k, g)                                                                              \
            _mm256_storeu_si256((__m256i *)(w + 8 * k),                                                 \
                _mm256_andnot_si256(_mm256_andnot_si256(m, _mm256_castps_si256(g)),                      \
                                    _mm256_loadu_si256((const __m256i *)(w + 8 * k))));
            FK_QS_LANE(0, g0) FK_QS_LANE(1, g1) FK_QS_LANE(2, g2) FK_QS_LANE(3, g3)
#undef FK_QS_LANE
        }
    }
    // Four rows at a time over the trees: four independent running sums (each row still adds
    // its trees in tree order, as the one-row path does, so the results are identical).
    const int32_t *restrict leaf_offsets = qs->leaf_offsets;
    const double *restrict leaf_values = qs->leaf_values;
    for (int b = 0; b < 32; b += 4) {
        double s0 = out[b], s1 = out[b + 1], s2 = out[b + 2], s3 = out[b + 3];
        for (int t = 0; t < trees; t++) {
            const double *values = leaf_values + leaf_offsets[t];
            const uint32_t *w = leafvec + (size_t)t * 32 + b;
            s0 += values[__builtin_ctz(w[0])];
            s1 += values[__builtin_ctz(w[1])];
            s2 += values[__builtin_ctz(w[2])];
            s3 += values[__builtin_ctz(w[3])];
        }
        out[b] = s0; out[b + 1] = s1; out[b + 2] = s2; out[b + 3] = s3;
    }
}

/// The 32-row body. An AVX-512 body (compares into lane masks, masked ANDs) measured 0.95x
/// of this one on Zen 4 (512-bit stores issue as two halves there), so it is not used.
static void accumulate32(const fk_quickscorer *qs, const float *x, size_t stride, uint32_t *leafvec, double *out) {
    accumulate32_32(qs, x, stride, leafvec, out);
}
#endif

// 32 rows of 32-bit words or 8 rows of 64-bit words per tree: 16 64-bit words.
size_t fk_quickscorer_scratch_words(int trees) { return (size_t)(trees > 0 ? trees : 1) * 16; }

void fk_quickscorer_accumulate(const fk_quickscorer *qs, const float *x, size_t rows, size_t stride,
                               uint64_t *leafvec, double *out) {
    const int trees = qs->trees;
    size_t r0 = 0;
#if FK_X86
    if (fk_simd_level() >= 1) {
        if (qs->mask32) {
            for (; r0 + 32 <= rows; r0 += 32) accumulate32(qs, x + r0 * stride, stride, (uint32_t *)leafvec, out + r0);
            // More than eight rows left: one more 32-row block over a copy padded with the
            // last row (cheaper than 8-row blocks and single rows; the padding is dropped).
            const size_t left = rows - r0;
            float stack[32 * 32];
            float *pad = left > 8 ? (32 * stride <= 32 * 32 ? stack : (float *)malloc(sizeof(float) * 32 * stride)) : NULL;
            if (pad) {
                double sums[32];
                for (size_t b = 0; b < 32; b++) {
                    const size_t src = r0 + (b < left ? b : left - 1);
                    memcpy(pad + b * stride, x + src * stride, sizeof(float) * stride);
                    sums[b] = b < left ? out[r0 + b] : 0;
                }
                accumulate32(qs, pad, stride, (uint32_t *)leafvec, sums);
                for (size_t b = 0; b < left; b++) out[r0 + b] = sums[b];
                if (pad != stack) free(pad);
                r0 = rows;
            }
            for (; r0 + 8 <= rows; r0 += 8) accumulate8_32(qs, x + r0 * stride, stride, (uint32_t *)leafvec, out + r0);
        } else {
            for (; r0 + 8 <= rows; r0 += 8) accumulate8(qs, x + r0 * stride, stride, leafvec, out + r0);
        }
    }
#endif
    for (size_t r = r0; r < rows; r++) {
        const float *row = x + r * stride;
        for (int t = 0; t < trees; t++) leafvec[t] = ~(uint64_t)0;
        for (int f = 0; f < qs->features; f++) scalar_feature(qs, f, row[f], leafvec, 1);
        double s = out[r];
        for (int t = 0; t < trees; t++)
            s += qs->leaf_values[qs->leaf_offsets[t] + __builtin_ctzll(leafvec[t])];
        out[r] = s;
    }
}

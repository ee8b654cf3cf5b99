// Hot distance and selection kernels for Funnel.
//
// Every function has an AVX2+FMA body and a portable scalar body; the choice is
// made once at load time from the CPU's feature bits (see fk_simd_level), so the
// package needs no compiler flags and runs on any x86-64 (or other) machine.
#ifndef FUNNEL_KERNELS_H
#define FUNNEL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The kernel level in use: 3 AVX-512 with VNNI (the integer dot products' vpdpwssd),
/// 2 AVX-512 (F, BW, VL, DQ), 1 AVX2+FMA, 0 scalar.
/// `FUNNEL_SIMD=scalar|avx2|avx512` in the environment caps it when the library loads.
int fk_simd_level(void);
/// The best level this CPU runs.
int fk_simd_detected(void);
/// Caps the level on the calling thread only (-1 restores detection). For tests.
void fk_force_level(int level);

/// CPU feature bits reported by `fk_cpu_features`.
enum {
    FK_CPU_SSE42 = 1u << 0, FK_CPU_AVX = 1u << 1, FK_CPU_AVX2 = 1u << 2, FK_CPU_FMA = 1u << 3, FK_CPU_F16C = 1u << 4,
    FK_CPU_AVX512F = 1u << 5, FK_CPU_AVX512BW = 1u << 6, FK_CPU_AVX512VL = 1u << 7, FK_CPU_AVX512DQ = 1u << 8,
    FK_CPU_AVX512VNNI = 1u << 9, FK_CPU_AVX512BF16 = 1u << 10, FK_CPU_AVX512FP16 = 1u << 11,
};
/// The running CPU's features, as FK_CPU_* bits (0 off x86).
unsigned fk_cpu_features(void);
/// Forces the scalar bodies (on != 0) or restores detection (on == 0) on the calling thread
/// only. For tests.
void fk_force_scalar(int on);

/// Inner product of two float vectors of length n.
float fk_dot_f32(const float *a, const float *b, size_t n);
/// Squared Euclidean distance of two float vectors of length n.
float fk_l2sq_f32(const float *a, const float *b, size_t n);
/// Squared norm of a float vector.
float fk_norm2_f32(const float *a, size_t n);

/// out[i] = ||q - base[i]||^2 for rows base[i] = base + i * stride, i < count.
void fk_l2sq_f32_rows(const float *q, const float *base, size_t count, size_t dim,
                      size_t stride, float *out);
/// out[i] = <q, base[i]> for rows base[i] = base + i * stride, i < count.
void fk_dot_f32_rows(const float *q, const float *base, size_t count, size_t dim,
                     size_t stride, float *out);

/// Inner product of two int8 vectors (exact, 64-bit result).
int64_t fk_dot_i8(const int8_t *a, const int8_t *b, size_t n);
/// Squared Euclidean distance of two int8 vectors (exact).
int64_t fk_l2sq_i8(const int8_t *a, const int8_t *b, size_t n);
/// Inner product of two uint8 vectors (exact).
int64_t fk_dot_u8(const uint8_t *a, const uint8_t *b, size_t n);
/// Squared Euclidean distance of two uint8 vectors (exact).
int64_t fk_l2sq_u8(const uint8_t *a, const uint8_t *b, size_t n);

/// Scores v[i] = bias[i] + scale * x[i] (bias may be NULL: v[i] = scale * x[i]) and
/// writes the indices and values of those with v[i] < threshold to idx/val.
/// Returns how many were written (at most n). Used to filter a block of sgemm
/// output against a top-k heap's current worst distance in one pass.
size_t fk_affine_select_below(const float *x, const float *bias, float scale, size_t n,
                              float threshold, uint32_t *idx, float *val);

/// Graph-search batches: for i < count, the row at base + ids[i] * stride + offset
/// (byte units) is compared with q and the distance written to out[i]. Rows are
/// processed four at a time, sharing the loads of q, while the next rows are prefetched.
/// `kind`: 0 squared L2 and 1 dot on float32 rows, 2 squared L2 and 3 dot of a float
/// query against half-precision rows. (int8 rows: fk_adc_batch_u8.)
void fk_distance_batch(int kind, const void *q, const void *base, size_t stride, size_t offset,
                       const uint32_t *ids, size_t count, size_t dim, float *out);


/// Asymmetric int8 distances: sum q[j] * codes[j] for an int16 query (the float query
/// times the per-dimension scales, rounded on a common step) against uint8 codes, exact in
/// int32 as long as 2 * 255 * max|q| * ceil(n / 16) < 2^31. `fk_adc_batch_u8` does it for
/// the rows at base + ids[i] * stride + offset, four at a time with prefetching (results
/// as floats, exact below 2^24 in magnitude).
int32_t fk_adc_dot_u8(const int16_t *q, const uint8_t *codes, size_t n);
void fk_adc_batch_u8(const int16_t *q, const void *base, size_t stride, size_t offset,
                     const uint32_t *ids, size_t count, size_t dim, float *out);

/// Half precision (IEEE binary16) vectors: conversion (round to nearest even; values past
/// 65504 become infinity), and distances of a float query to half rows, or of two half rows.
/// F16C + FMA when the CPU has them (`fk_half_simd`), portable C otherwise; same results up
/// to float summation order.
uint16_t fk_f32_to_f16(float f);
float fk_f16_to_f32(uint16_t h);
void fk_to_half(const float *src, uint16_t *dst, size_t n);
void fk_from_half(const uint16_t *src, float *dst, size_t n);
float fk_l2sq_f16(const float *q, const uint16_t *x, size_t n);
float fk_dot_f16(const float *q, const uint16_t *x, size_t n);
float fk_l2sq_f16f16(const uint16_t *a, const uint16_t *b, size_t n);
float fk_dot_f16f16(const uint16_t *a, const uint16_t *b, size_t n);
int fk_half_simd(void);

/// One node of a tree compiled for batched inference. Leaves are nodes too: both
/// children point back at the leaf, so every row of a batch takes exactly `depth` steps
/// through a tree with no data-dependent branch.
typedef struct {
    float threshold;
    int32_t feature;
    int32_t left;
    int32_t right;
} fk_tree_node;

/// Adds the leaf values of `trees` trees to `out[r]` (in tree order) for `rows` rows of `stride` floats.
/// `nan_left[n]` / `zero_left[n]` (0 or 1) give the direction of a NaN value, and of a 0
/// value when zero counts as missing (`zero_missing[n]` = 1); `value[n]` is a leaf's value.
/// Rows are walked eight at a time in lockstep, so the eight load chains overlap.
void fk_forest_accumulate(const fk_tree_node *nodes, const uint8_t *nan_left, const uint8_t *zero_missing,
                          const uint8_t *zero_left, const double *value, const int32_t *roots, const int32_t *depths,
                          int trees, const float *x, size_t rows, size_t stride, double *out);

/// A forest in QuickScorer layout (Lucchese et al., SIGIR 2015) for trees of at most 64
/// leaves: every internal node of every tree, grouped by feature and sorted by threshold,
/// with a 64-bit mask that clears the leaves of its left subtree. A row's exit leaf in a
/// tree is the lowest bit left standing after AND-ing the masks of the nodes its values
/// send right ("false" nodes), found per feature by scanning thresholds until one is at
/// least the value: cost proportional to the false nodes, with no branch per tree level.
typedef struct {
    int features;
    int trees;
    const int32_t *feature_offsets;   // features + 1: nodes of feature f are [off[f], off[f+1])
    const float *thresholds;          // ascending within a feature
    const int32_t *tree;              // the node's tree
    const uint64_t *mask;             // leaves of the left subtree cleared
    const uint32_t *mask32;           // the same in 32 bits when every tree has <= 32 leaves, else NULL
    const uint8_t *nan_left;          // direction of a NaN value
    const uint8_t *zero_missing;      // 1: a 0 value is missing and goes the default way
    const uint8_t *zero_left;         // the default direction
    const uint8_t *feature_zero_missing; // per feature: any node of it treats 0 as missing
    const int32_t *leaf_offsets;      // trees + 1: leaves of tree t, left to right
    const double *leaf_values;
} fk_quickscorer;

/// Adds each tree's exit-leaf value (in tree order) to out[r] for `rows` rows of `stride` floats.
/// `scratch` holds `fk_quickscorer_scratch_words(trees)` words. With AVX2, rows go 32 at a time (trees of at most 32 leaves), then eight at a time.
size_t fk_quickscorer_scratch_words(int trees);
void fk_quickscorer_accumulate(const fk_quickscorer *qs, const float *x, size_t rows, size_t stride,
                               uint64_t *scratch, double *out);

/// out[i*n + j] = <x_i, x_j> for n rows of `dim` floats (a small Gram matrix, computed on
/// the calling thread: for re-ranking a few hundred items, where a BLAS call would wake
/// its worker threads for microseconds of work).
void fk_gram_f32(const float *x, size_t n, size_t dim, float *out);

/// In-batch softmax cross-entropy, rows [row0, row1) of a logit matrix `s` of n columns
/// (row-major; row i's positive is column i, columns past the rows are extra negatives):
/// column j of row i is masked to -inf when j != i holds the same item (items[j] == items[i],
/// an accidental hit), log q (`logq`, may be NULL) is subtracted, and the row becomes the
/// loss gradient scale * (softmax - onehot(i)) in place. Returns the summed -log p(i | row i).
float fk_inbatch_softmax_rows(float *s, size_t n, size_t row0, size_t row1,
                              const int32_t *items, const float *logq, float scale);

/// The same for `rows` rows stored from `s` whose positives are columns positive0,
/// positive0 + 1, ...: one rank's rows of a batch whose columns span every rank.
float fk_inbatch_softmax_rows_at(float *s, size_t n, size_t rows, size_t positive0,
                                 const int32_t *items, const float *logq, float scale);

#ifdef __cplusplus
}
#endif
#endif

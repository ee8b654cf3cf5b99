// Batched inference of a forest of decision trees: rows in groups of eight walk each tree
// in lockstep with branch-free child selection. A tree walk is a chain of dependent loads;
// eight independent chains keep the core busy where one chain would wait on each load,
// and selecting the child arithmetically removes the mispredicted branch per level.
#include "FunnelKernels.h"

#define LANES 8

static inline int32_t step(const fk_tree_node *nodes, const uint8_t *nan_left, const uint8_t *zero_missing,
                           const uint8_t *zero_left, int32_t n, const float *row) {
    const fk_tree_node nd = nodes[n];
    const float v = row[nd.feature];
    int go_left = v <= nd.threshold;                 // false for NaN
    const int is_nan = v != v;
    const int is_zero_missing = zero_missing[n] & (v == 0.0f);
    go_left = is_nan ? nan_left[n] : go_left;
    go_left = is_zero_missing ? zero_left[n] : go_left;
    return go_left ? nd.left : nd.right;
}

void fk_forest_accumulate(const fk_tree_node *nodes, const uint8_t *nan_left, const uint8_t *zero_missing,
                          const uint8_t *zero_left, const double *value, const int32_t *roots, const int32_t *depths,
                          int trees, const float *x, size_t rows, size_t stride, double *out) {
    size_t r0 = 0;
    for (; r0 + LANES <= rows; r0 += LANES) {
        const float *base = x + r0 * stride;
        double acc[LANES];  // starts from out[] so sums run in the same order as one row at a time
        for (int b = 0; b < LANES; b++) acc[b] = out[r0 + b];
        for (int t = 0; t < trees; t++) {
            int32_t idx[LANES];
            for (int b = 0; b < LANES; b++) idx[b] = roots[t];
            // Leaf-wise trees can be deep on one side: stop as soon as all eight rows sit
            // on leaves (a leaf's children are itself), not at the tree's deepest leaf.
            for (int d = 0; d < depths[t]; d++) {
                int moved = 0;
                for (int b = 0; b < LANES; b++) {
                    const int32_t next = step(nodes, nan_left, zero_missing, zero_left, idx[b], base + (size_t)b * stride);
                    moved |= next != idx[b];
                    idx[b] = next;
                }
                if (!moved) break;
            }
            for (int b = 0; b < LANES; b++) acc[b] += value[idx[b]];
        }
        for (int b = 0; b < LANES; b++) out[r0 + b] = acc[b];
    }
    for (; r0 < rows; r0++) {
        const float *row = x + r0 * stride;
        double acc = out[r0];
        for (int t = 0; t < trees; t++) {
            int32_t n = roots[t];
            for (int d = 0; d < depths[t]; d++) n = step(nodes, nan_left, zero_missing, zero_left, n, row);
            acc += value[n];
        }
        out[r0] = acc;
    }
}

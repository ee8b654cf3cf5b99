/// Per-prediction feature contributions by TreeSHAP (Lundberg, Erion & Lee, 2018): exact
/// Shapley values of the path-dependent tree expectation, in O(leaves * depth^2) per tree.
///
/// `contributions[j]` is feature j's share of the raw score; `expectedValue` is the score
/// of an "average" row (cover-weighted); their sum is the raw score of the row.
public struct Explanation: Sendable {
    public var expectedValue: Double
    public var contributions: [Double]

    /// The features with the largest absolute contributions, largest first.
    public func top(_ n: Int) -> [(feature: Int, contribution: Double)] {
        contributions.enumerated().sorted { abs($0.element) > abs($1.element) }.prefix(n).map { ($0.offset, $0.element) }
    }
}

extension GBDTModel {
    /// Explains the raw score of one row: contributions plus expected value equal it.
    /// - Complexity: O(trees * leaves * depth^2).
    public func explain(_ row: [Float]) throws -> Explanation {
        guard row.count >= featureCount else { throw GBDTError.featureCountMismatch(expected: featureCount, got: row.count) }
        var phi = [Double](repeating: 0, count: featureCount)
        var expected = initScore
        row.withUnsafeBufferPointer { x in
            for t in trees {
                expected += t.expectedValue
                t.shap(x.baseAddress!, into: &phi)
            }
        }
        return Explanation(expectedValue: expected, contributions: phi)
    }
}

extension Tree {
    /// The cover (training rows) reaching a child reference.
    @inline(__always)
    func cover(_ child: Int32) -> Double { child >= 0 ? internalCount[Int(child)] : leafCount[Int(~child)] }

    /// The cover-weighted mean leaf value: the tree's prediction for an average row.
    public var expectedValue: Double {
        let total = leafCount.reduce(0, +)
        guard total > 0 else { return leafValue.reduce(0, +) / Double(max(1, leafValue.count)) }
        var s = 0.0
        for (v, c) in zip(leafValue, leafCount) { s += v * c }
        return s / total
    }

    /// One element of the path of features met so far, with the fractions of "zero"
    /// (feature unknown: follow cover) and "one" (feature known: follow x) paths through it.
    struct PathElement {
        var feature: Int
        var zero: Double
        var one: Double
        var weight: Double
    }

    /// Adds this tree's SHAP values for row `x` to `phi`.
    func shap(_ x: UnsafePointer<Float>, into phi: inout [Double]) {
        if feature.isEmpty { return }
        let maxDepth = depth + 2
        var path = [PathElement](repeating: PathElement(feature: -1, zero: 0, one: 0, weight: 0), count: (maxDepth + 1) * (maxDepth + 2) / 2 + maxDepth + 2)
        recurse(x, node: 0, path: &path, parentStart: 0, depth: 0, zero: 1, one: 1, feature: -1, phi: &phi)
    }

    /// The paper's RECURSE: the path for this node lives at path[start ..< start + depth + 1],
    /// copied from the parent's so siblings do not see each other's changes.
    private func recurse(_ x: UnsafePointer<Float>, node: Int32, path: inout [PathElement], parentStart: Int, depth d: Int,
                         zero: Double, one: Double, feature splitFeature: Int, phi: inout [Double]) {
        let start = parentStart + d  // the parent's path has d elements
        for i in 0..<d { path[start + i] = path[parentStart + i] }
        extend(&path, start, d, zero, one, splitFeature)
        var depth = d
        if node < 0 {
            let v = leafValue[Int(~node)]
            for i in 1...max(1, depth) where depth >= 1 {
                let w = unwoundSum(path, start, depth, i)
                let el = path[start + i]
                phi[el.feature] += w * (el.one - el.zero) * v
            }
            return
        }
        let n = Int(node)
        let f = Int(feature[n])
        let goesLeftHot = goesLeft(x[f], n, threshold[n])
        let hot = goesLeftHot ? left[n] : right[n], cold = goesLeftHot ? right[n] : left[n]
        let w = internalCount[n]
        let hotZero = w > 0 ? cover(hot) / w : 0.5, coldZero = w > 0 ? cover(cold) / w : 0.5
        var inZero = 1.0, inOne = 1.0
        // A feature met again: undo its earlier split and redo it here.
        var k = 1
        while k <= depth && path[start + k].feature != f { k += 1 }
        if k <= depth {
            inZero = path[start + k].zero
            inOne = path[start + k].one
            unwind(&path, start, depth, k)
            depth -= 1
        }
        recurse(x, node: hot, path: &path, parentStart: start, depth: depth + 1, zero: hotZero * inZero, one: inOne, feature: f, phi: &phi)
        recurse(x, node: cold, path: &path, parentStart: start, depth: depth + 1, zero: coldZero * inZero, one: 0, feature: f, phi: &phi)
    }

    /// EXTEND: grow the path by one feature, updating the permutation weights.
    private func extend(_ p: inout [PathElement], _ s: Int, _ d: Int, _ zero: Double, _ one: Double, _ f: Int) {
        p[s + d] = PathElement(feature: f, zero: zero, one: one, weight: d == 0 ? 1 : 0)
        var i = d - 1
        while i >= 0 {
            p[s + i + 1].weight += one * p[s + i].weight * Double(i + 1) / Double(d + 1)
            p[s + i].weight = zero * p[s + i].weight * Double(d - i) / Double(d + 1)
            i -= 1
        }
    }

    /// UNWIND: remove element `k` from the path (the inverse of EXTEND).
    private func unwind(_ p: inout [PathElement], _ s: Int, _ d: Int, _ k: Int) {
        let one = p[s + k].one, zero = p[s + k].zero
        var next = p[s + d].weight
        var i = d - 1
        while i >= 0 {
            if one != 0 {
                let t = p[s + i].weight
                p[s + i].weight = next * Double(d + 1) / (Double(i + 1) * one)
                next = t - p[s + i].weight * zero * Double(d - i) / Double(d + 1)
            } else {
                p[s + i].weight = p[s + i].weight * Double(d + 1) / (zero * Double(d - i))
            }
            i -= 1
        }
        for j in k..<d {
            p[s + j].feature = p[s + j + 1].feature
            p[s + j].zero = p[s + j + 1].zero
            p[s + j].one = p[s + j + 1].one
        }
    }

    /// The total permutation weight of the path with element `k` unwound, without changing it.
    private func unwoundSum(_ p: [PathElement], _ s: Int, _ d: Int, _ k: Int) -> Double {
        let one = p[s + k].one, zero = p[s + k].zero
        var next = p[s + d].weight
        var total = 0.0
        var i = d - 1
        while i >= 0 {
            if one != 0 {
                let t = next * Double(d + 1) / (Double(i + 1) * one)
                total += t
                next = p[s + i].weight - t * zero * Double(d - i) / Double(d + 1)
            } else {
                total += p[s + i].weight / zero / (Double(d - i) / Double(d + 1))
            }
            i -= 1
        }
        return total
    }
}

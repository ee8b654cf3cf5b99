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
        return try explain(rows: row, count: 1, stride: row.count)[0]
    }

    /// Explains `count` rows of `stride` values each; the model's own share of the work (the
    /// expected value, the path buffer) is done once for all of them.
    /// - Complexity: O(count * trees * leaves * depth^2).
    public func explain(rows x: [Float], count: Int, stride: Int) throws -> [Explanation] {
        try explaining(rows: x, count: count, stride: stride) { row, path, phi in
            for t in trees { t.shap(row, path: path, into: phi) }
        }
    }

    /// The explanations of `count` rows: `add` adds one row's contributions to `phi`, with a
    /// path buffer large enough for any of the model's trees (shared by every tree and row).
    func explaining(rows x: [Float], count: Int, stride: Int,
                    _ add: (_ row: UnsafePointer<Float>, _ path: UnsafeMutablePointer<Tree.PathElement>, _ phi: UnsafeMutablePointer<Double>) -> Void)
        throws -> [Explanation] {
        guard stride >= featureCount else { throw GBDTError.featureCountMismatch(expected: featureCount, got: stride) }
        guard x.count >= count * stride else { throw GBDTError.featureCountMismatch(expected: count * stride, got: x.count) }
        let expected = trees.reduce(initScore) { $0 + $1.expectedValue }
        // A tree of L leaves is at most L - 1 deep.
        let maxDepth = (trees.map { $0.leafValue.count }.max() ?? 1) + 1
        let size = (maxDepth + 1) * (maxDepth + 2) / 2 + maxDepth + 2
        var out = [Explanation]()
        out.reserveCapacity(count)
        withUnsafeTemporaryAllocation(of: Tree.PathElement.self, capacity: size) { path in
            x.withUnsafeBufferPointer { xp in
                for r in 0..<count {
                    var phi = [Double](repeating: 0, count: featureCount)
                    phi.withUnsafeMutableBufferPointer { add(xp.baseAddress! + r * stride, path.baseAddress!, $0.baseAddress!) }
                    out.append(Explanation(expectedValue: expected, contributions: phi))
                }
            }
        }
        return out
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

    /// Adds this tree's SHAP values for row `x` to `phi`; `path` holds at least
    /// (d + 1)(d + 2) / 2 + d + 2 elements for d = depth + 2.
    func shap(_ x: UnsafePointer<Float>, path: UnsafeMutablePointer<PathElement>, into phi: UnsafeMutablePointer<Double>) {
        if feature.isEmpty { return }
        feature.withUnsafeBufferPointer { feature in
        threshold.withUnsafeBufferPointer { threshold in
        left.withUnsafeBufferPointer { left in
        right.withUnsafeBufferPointer { right in
        internalCount.withUnsafeBufferPointer { internalCount in
        leafCount.withUnsafeBufferPointer { leafCount in
        leafValue.withUnsafeBufferPointer { leafValue in
            let t = Nodes(feature: feature.baseAddress!, threshold: threshold.baseAddress!, left: left.baseAddress!, right: right.baseAddress!,
                          internalCount: internalCount.baseAddress!, leafCount: leafCount.baseAddress!, leafValue: leafValue.baseAddress!)
            recurse(t, x, node: 0, path: path, parentStart: 0, depth: 0, zero: 1, one: 1, feature: -1, phi: phi)
        }}}}}}}
    }

    /// The tree's arrays as pointers, for the recursion.
    struct Nodes {
        let feature: UnsafePointer<Int32>, threshold: UnsafePointer<Double>
        let left: UnsafePointer<Int32>, right: UnsafePointer<Int32>
        let internalCount: UnsafePointer<Double>, leafCount: UnsafePointer<Double>, leafValue: UnsafePointer<Double>

        @inline(__always)
        func cover(_ child: Int32) -> Double { child >= 0 ? internalCount[Int(child)] : leafCount[Int(~child)] }
    }

    /// The paper's RECURSE: the path for this node lives at path[start ..< start + depth + 1],
    /// copied from the parent's so siblings do not see each other's changes.
    private func recurse(_ t: Nodes, _ x: UnsafePointer<Float>, node: Int32, path: UnsafeMutablePointer<PathElement>, parentStart: Int,
                         depth d: Int, zero: Double, one: Double, feature splitFeature: Int, phi: UnsafeMutablePointer<Double>) {
        let start = parentStart + d  // the parent's path has d elements
        for i in 0..<d { path[start + i] = path[parentStart + i] }
        extend(path, start, d, zero, one, splitFeature)
        var depth = d
        if node < 0 {
            let v = t.leafValue[Int(~node)]
            for i in 1...max(1, depth) where depth >= 1 {
                let w = unwoundSum(path, start, depth, i)
                let el = path[start + i]
                phi[el.feature] += w * (el.one - el.zero) * v
            }
            return
        }
        let n = Int(node)
        let f = Int(t.feature[n])
        let goesLeftHot = goesLeft(x[f], n, t.threshold[n])
        let hot = goesLeftHot ? t.left[n] : t.right[n], cold = goesLeftHot ? t.right[n] : t.left[n]
        let w = t.internalCount[n]
        let hotZero = w > 0 ? t.cover(hot) / w : 0.5, coldZero = w > 0 ? t.cover(cold) / w : 0.5
        var inZero = 1.0, inOne = 1.0
        // A feature met again: undo its earlier split and redo it here.
        var k = 1
        while k <= depth && path[start + k].feature != f { k += 1 }
        if k <= depth {
            inZero = path[start + k].zero
            inOne = path[start + k].one
            unwind(path, start, depth, k)
            depth -= 1
        }
        recurse(t, x, node: hot, path: path, parentStart: start, depth: depth + 1, zero: hotZero * inZero, one: inOne, feature: f, phi: phi)
        recurse(t, x, node: cold, path: path, parentStart: start, depth: depth + 1, zero: coldZero * inZero, one: 0, feature: f, phi: phi)
    }

    /// EXTEND: grow the path by one feature, updating the permutation weights.
    func extend(_ p: UnsafeMutablePointer<PathElement>, _ s: Int, _ d: Int, _ zero: Double, _ one: Double, _ f: Int) {
        p[s + d] = PathElement(feature: f, zero: zero, one: one, weight: d == 0 ? 1 : 0)
        let inv = 1 / Double(d + 1)
        var i = d - 1
        while i >= 0 {
            p[s + i + 1].weight += one * p[s + i].weight * Double(i + 1) * inv
            p[s + i].weight = zero * p[s + i].weight * Double(d - i) * inv
            i -= 1
        }
    }

    /// UNWIND: remove element `k` from the path (the inverse of EXTEND).
    private func unwind(_ p: UnsafeMutablePointer<PathElement>, _ s: Int, _ d: Int, _ k: Int) {
        let one = p[s + k].one, zero = p[s + k].zero
        let n = Double(d + 1)
        var next = p[s + d].weight
        var i = d - 1
        if one != 0 {
            let scale = n / one, back = zero / n
            while i >= 0 {
                let t = p[s + i].weight
                p[s + i].weight = next * scale * Reciprocal.of(i + 1)
                next = t - p[s + i].weight * back * Double(d - i)
                i -= 1
            }
        } else {
            let scale = n / zero
            while i >= 0 {
                p[s + i].weight *= scale * Reciprocal.of(d - i)
                i -= 1
            }
        }
        for j in k..<d {
            p[s + j].feature = p[s + j + 1].feature
            p[s + j].zero = p[s + j + 1].zero
            p[s + j].one = p[s + j + 1].one
        }
    }

    /// The total permutation weight of the path with element `k` unwound, without changing
    /// it. The divisions of the paper's loop are hoisted: they were most of TreeSHAP's time.
    func unwoundSum(_ p: UnsafeMutablePointer<PathElement>, _ s: Int, _ d: Int, _ k: Int) -> Double {
        let one = p[s + k].one, zero = p[s + k].zero
        let n = Double(d + 1)
        var next = p[s + d].weight
        var total = 0.0
        var i = d - 1
        if one != 0 {
            let scale = n / one, back = zero / n
            while i >= 0 {
                let t = next * scale * Reciprocal.of(i + 1)
                total += t
                next = p[s + i].weight - t * back * Double(d - i)
                i -= 1
            }
        } else {
            let scale = n / zero
            while i >= 0 {
                total += p[s + i].weight * scale * Reciprocal.of(d - i)
                i -= 1
            }
        }
        return total
    }
}

/// 1 / n from a table for the path lengths trees have (a division costs as much as a dozen
/// multiplications).
enum Reciprocal {
    static let table: [Double] = (0...256).map { $0 == 0 ? .infinity : 1 / Double($0) }

    @inline(__always)
    static func of(_ n: Int) -> Double { n < table.count ? table[n] : 1 / Double(n) }
}

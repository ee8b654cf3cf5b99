/// TreeSHAP by tables, for explaining many rows of one model (a served ranker).
///
/// A leaf's share of the SHAP values depends only on which of the distinct features on its
/// path the row agrees with (all of the path's conditions on that feature hold). For each
/// leaf of each shallow tree the contributions of every such pattern are computed once,
/// with the same path algorithm as `GBDTModel.explain`; a row then costs one comparison per
/// path node and one addition per path feature, instead of the O(leaves * depth^2)
/// recursion. Trees whose tables would pass the budget are explained by the recursion.
public final class TreeExplainer: Sendable {
    public let model: GBDTModel
    /// Per tree: the range of its leaves in `leaves`, or nil (explained by the recursion).
    let trees: [Range<Int>?]
    /// Every tabled leaf, flat: its path's distinct features, the conditions that decide the
    /// pattern, and the contributions of each pattern (2^d rows of d values, already times the
    /// leaf's value), as offsets into the three arrays below (no per-leaf arrays: a row walks
    /// every leaf of every tree, and per-leaf arrays cost reference counting on each).
    let leaves: [Leaf]
    let features: [Int32]
    let conditions: [Condition]
    let values: [Double]
    /// The most internal nodes of a tabled tree (the per-row direction buffer's size).
    let maxNodes: Int

    struct Leaf: Sendable {
        var features: Int32, dimension: Int32
        var conditions: Int32, conditionCount: Int32
        var values: Int
    }

    struct Condition: Sendable {
        var node: Int32
        var left: Bool
        var slot: UInt8
    }

    /// - Parameter budget: the most table values (doubles) kept for the whole model.
    /// - Complexity: O(sum over tabled leaves of 2^d * d^2).
    public init(_ model: GBDTModel, budget: Int = 2_000_000) {
        self.model = model
        var left = budget
        var trees = [Range<Int>?](), leaves = [Leaf](), features = [Int32](), conditions = [Condition](), values = [Double]()
        var maxNodes = 0
        for tree in model.trees {
            guard !tree.feature.isEmpty else { trees.append(leaves.count..<leaves.count); continue }
            let paths = tree.leafPaths()
            let size = paths.reduce(0) { s, p in
                let d = Set(p.map { Int(tree.feature[$0.node]) }).count
                return d > 16 ? Int.max / 4 : s + (1 << d) * d
            }
            guard size <= left else { trees.append(nil); continue }
            left -= size
            let first = leaves.count
            for (leaf, path) in paths.enumerated() {
                let t = Self.table(tree, leaf: leaf, path: path)
                leaves.append(Leaf(features: Int32(features.count), dimension: Int32(t.features.count),
                                   conditions: Int32(conditions.count), conditionCount: Int32(t.conditions.count), values: values.count))
                features += t.features.map { Int32($0) }
                conditions += t.conditions.map { Condition(node: Int32($0.node), left: $0.left, slot: UInt8($0.slot)) }
                values += t.values
            }
            trees.append(first..<leaves.count)
            maxNodes = max(maxNodes, tree.feature.count)
        }
        (self.trees, self.leaves, self.features, self.conditions, self.values, self.maxNodes) = (trees, leaves, features, conditions, values, maxNodes)
    }

    /// The table of one leaf reached by `path` (root first).
    static func table(_ tree: Tree, leaf: Int, path: [(node: Int, left: Bool)]) -> (features: [Int], conditions: [(node: Int, left: Bool, slot: Int)], values: [Double]) {
        var features = [Int](), zero = [Double]()
        var conditions = [(node: Int, left: Bool, slot: Int)]()
        for step in path {
            let f = Int(tree.feature[step.node])
            let child = step.left ? tree.left[step.node] : tree.right[step.node]
            let w = tree.internalCount[step.node]
            let fraction = w > 0 ? tree.cover(child) / w : 0.5
            if let j = features.firstIndex(of: f) {
                zero[j] *= fraction
                conditions.append((step.node, step.left, j))
            } else {
                features.append(f)
                zero.append(fraction)
                conditions.append((step.node, step.left, features.count - 1))
            }
        }
        let d = features.count, v = tree.leafValue[leaf]
        var values = [Double](repeating: 0, count: (1 << d) * d)
        let size = (d + 3) * (d + 4) / 2 + d + 4
        withUnsafeTemporaryAllocation(of: Tree.PathElement.self, capacity: size) { p in
            let p = p.baseAddress!
            for pattern in 0..<(1 << d) {
                tree.extend(p, 0, 0, 1, 1, -1)
                for j in 0..<d { tree.extend(p, 0, j + 1, zero[j], (pattern >> j) & 1 == 1 ? 1 : 0, j) }
                for i in 1...max(1, d) where d >= 1 {
                    let one = p[i].one, z = p[i].zero
                    values[pattern * d + p[i].feature] = tree.unwoundSum(p, 0, d, i) * (one - z) * v
                }
            }
        }
        return (features, conditions, values)
    }

    /// Explains `count` rows of `stride` values each, as `GBDTModel.explain(rows:count:stride:)`
    /// does (equal up to rounding: the path's features are taken in another order).
    /// Per row and tabled tree, each internal node's direction is found once; each leaf's
    /// pattern is then read off its conditions, and its d contributions added.
    /// - Throws: `GBDTError.featureCountMismatch` for rows narrower than the model's features.
    /// - Complexity: O(count * (nodes and path conditions of tabled trees + leaves * depth^2 of the others)).
    public func explain(rows x: [Float], count: Int, stride: Int) throws -> [Explanation] {
        var directions = [Bool](repeating: false, count: max(1, maxNodes))
        return try leaves.withUnsafeBufferPointer { leaves in
            try features.withUnsafeBufferPointer { features in
            try conditions.withUnsafeBufferPointer { conditions in
            try values.withUnsafeBufferPointer { values in
            try directions.withUnsafeMutableBufferPointer { left in
                try model.explaining(rows: x, count: count, stride: stride) { row, path, phi in
                    for (t, tree) in model.trees.enumerated() {
                        guard let range = trees[t] else {
                            tree.shap(row, path: path, into: phi)
                            continue
                        }
                        if range.isEmpty { continue }
                        for n in 0..<tree.feature.count { left[n] = tree.goesLeft(row[Int(tree.feature[n])], n, tree.threshold[n]) }
                        for l in range {
                            let leaf = leaves[l], d = Int(leaf.dimension)
                            var pattern = (1 << d) - 1
                            for c in Int(leaf.conditions)..<Int(leaf.conditions + leaf.conditionCount) {
                                let cond = conditions[c]
                                if left[Int(cond.node)] != cond.left { pattern &= ~(1 << Int(cond.slot)) }
                            }
                            let at = leaf.values + pattern * d, f0 = Int(leaf.features)
                            for j in 0..<d { phi[Int(features[f0 + j])] += values[at + j] }
                        }
                    }
                }
            }}}}
        }
    }
}

extension Tree {
    /// The path from the root to each leaf (indexed by leaf): the internal nodes passed and
    /// whether each step went left.
    func leafPaths() -> [[(node: Int, left: Bool)]] {
        var out = [[(node: Int, left: Bool)]](repeating: [], count: leafValue.count)
        func walk(_ n: Int32, _ path: [(node: Int, left: Bool)]) {
            if n < 0 { out[Int(~n)] = path; return }
            let i = Int(n)
            walk(left[i], path + [(i, true)])
            walk(right[i], path + [(i, false)])
        }
        if !feature.isEmpty { walk(0, []) }
        return out
    }
}

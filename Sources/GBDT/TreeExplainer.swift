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
    /// Per tree: its leaves' tables, or nil (explained by the recursion).
    let tables: [[LeafTable]?]

    /// One leaf: the distinct features on its path, the conditions that decide the pattern,
    /// and the contributions of each pattern (2^d rows of d values, already times the
    /// leaf's value).
    struct LeafTable: Sendable {
        var features: [Int]
        var conditions: [(node: Int, left: Bool, slot: Int)]
        var values: [Double]
    }

    /// - Parameter budget: the most table values (doubles) kept for the whole model.
    /// - Complexity: O(sum over tabled leaves of 2^d * d^2).
    public init(_ model: GBDTModel, budget: Int = 2_000_000) {
        self.model = model
        var left = budget
        tables = model.trees.map { tree in
            guard !tree.feature.isEmpty else { return [] }
            let paths = tree.leafPaths()
            let size = paths.reduce(0) { s, p in
                let d = Set(p.map { Int(tree.feature[$0.node]) }).count
                return d > 16 ? Int.max / 4 : s + (1 << d) * d
            }
            guard size <= left else { return nil }
            left -= size
            return paths.enumerated().map { leaf, path in Self.table(tree, leaf: leaf, path: path) }
        }
    }

    /// The table of one leaf reached by `path` (root first).
    static func table(_ tree: Tree, leaf: Int, path: [(node: Int, left: Bool)]) -> LeafTable {
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
        return LeafTable(features: features, conditions: conditions, values: values)
    }

    /// Explains `count` rows of `stride` values each, as `GBDTModel.explain(rows:count:stride:)`
    /// does (equal up to rounding: the path's features are taken in another order).
    /// - Throws: `GBDTError.featureCountMismatch` for rows narrower than the model's features.
    /// - Complexity: O(count * (path nodes of tabled trees + leaves * depth^2 of the others)).
    public func explain(rows x: [Float], count: Int, stride: Int) throws -> [Explanation] {
        try model.explaining(rows: x, count: count, stride: stride) { row, path, phi in
            for (t, tree) in model.trees.enumerated() {
                guard let leaves = tables[t] else {
                    tree.shap(row, path: path, into: phi)
                    continue
                }
                for leaf in leaves {
                    var pattern = (1 << leaf.features.count) - 1
                    for c in leaf.conditions where tree.goesLeft(row[Int(tree.feature[c.node])], c.node, tree.threshold[c.node]) != c.left {
                        pattern &= ~(1 << c.slot)
                    }
                    let d = leaf.features.count
                    for j in 0..<d { phi[leaf.features[j]] += leaf.values[pattern * d + j] }
                }
            }
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

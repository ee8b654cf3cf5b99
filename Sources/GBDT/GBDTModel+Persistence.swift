import Foundation
import Persistence

extension GBDTModel {
    static let magic = "FNLGBDT\u{1}"
    static let formatVersion: UInt32 = 1

    /// Saves the model atomically in Funnel's versioned, checksummed container.
    public func save(to path: String) throws {
        try FunnelFile.write(to: path, magic: Self.magic, version: Self.formatVersion) { w in
            w.write(string: objective.rawValue)
            w.write(initScore)
            w.write(sigmoid)
            w.write(UInt64(featureCount))
            w.write(UInt64(featureNames.count))
            for name in featureNames { w.write(string: name) }
            w.write(UInt64(trees.count))
            for t in trees {
                w.write(array: t.feature)
                w.write(array: t.threshold)
                w.write(array: t.defaultLeft.map { UInt8($0 ? 1 : 0) })
                w.write(array: t.missingType.map(\.rawValue))
                w.write(array: t.left)
                w.write(array: t.right)
                w.write(array: t.gain)
                w.write(array: t.internalCount)
                w.write(array: t.leafValue)
                w.write(array: t.leafCount)
            }
        }
    }

    /// Loads a model saved by `save(to:)`, checking the checksum and every tree's
    /// structure (node and leaf indices in range, every node reached once, features
    /// in range) before returning it.
    public static func load(from path: String) throws -> GBDTModel {
        func bad(_ why: String) -> GBDTError { .corruptModel(path: path, reason: why) }
        do {
            var (_, r) = try FunnelFile.read(path, magic: magic, versions: 1...formatVersion)
            guard let objective = Objective(rawValue: try r.readString("objective", maxLength: 32)) else { throw bad("unknown objective") }
            let initScore = try r.readDouble("init score")
            let sigmoid = try r.readDouble("sigmoid")
            let featureCount = try r.readCount("feature count", max: 1 << 24)
            let nameCount = try r.readCount("feature names", max: featureCount)
            var names = [String]()
            for _ in 0..<nameCount { names.append(try r.readString("feature name", maxLength: 4096)) }
            let treeCount = try r.readCount("tree count", max: r.remaining / 8)
            var trees = [Tree]()
            for ti in 0..<treeCount {
                var t = Tree()
                let cap = r.remaining
                t.feature = try r.readArray(Int32.self, "tree \(ti) features", maxCount: cap)
                t.threshold = try r.readArray(Double.self, "tree \(ti) thresholds", maxCount: cap)
                t.defaultLeft = try r.readArray(UInt8.self, "tree \(ti) default directions", maxCount: cap).map { $0 != 0 }
                t.missingType = try r.readArray(UInt8.self, "tree \(ti) missing types", maxCount: cap).map {
                    guard let m = MissingType(rawValue: $0) else { throw bad("tree \(ti) has missing type \($0)") }
                    return m
                }
                t.left = try r.readArray(Int32.self, "tree \(ti) left children", maxCount: cap)
                t.right = try r.readArray(Int32.self, "tree \(ti) right children", maxCount: cap)
                t.gain = try r.readArray(Float.self, "tree \(ti) gains", maxCount: cap)
                t.internalCount = try r.readArray(Double.self, "tree \(ti) node counts", maxCount: cap)
                t.leafValue = try r.readArray(Double.self, "tree \(ti) leaf values", maxCount: cap)
                t.leafCount = try r.readArray(Double.self, "tree \(ti) leaf counts", maxCount: cap)
                try validate(t, featureCount: featureCount) { bad("tree \(ti): \($0)") }
                trees.append(t)
            }
            guard r.remaining == 0 else { throw bad("\(r.remaining) unexpected bytes after the trees") }
            var m = GBDTModel(objective: objective, trees: trees, initScore: initScore, featureCount: featureCount, featureNames: names)
            m.sigmoid = sigmoid
            return m
        } catch let e as PersistenceError {
            if case .corrupt(_, let reason) = e { throw bad(reason) }
            throw bad(e.description)
        }
    }

    /// Checks that a tree's arrays agree and that its child pointers form a tree.
    static func validate(_ t: Tree, featureCount: Int, _ bad: (String) -> Error) throws {
        let n = t.feature.count
        guard t.threshold.count == n, t.defaultLeft.count == n, t.missingType.count == n, t.left.count == n,
              t.right.count == n, t.gain.count == n, t.internalCount.count == n else {
            throw bad("node arrays differ in length")
        }
        guard t.leafValue.count == n + 1, t.leafCount.count == n + 1 else {
            throw bad("\(t.leafValue.count) leaves for \(n) internal nodes (expected \(n + 1))")
        }
        guard t.leafValue.allSatisfy(\.isFinite) else { throw bad("a leaf value is not finite") }
        var seenNode = [Bool](repeating: false, count: n), seenLeaf = [Bool](repeating: false, count: n + 1)
        if n > 0 { seenNode[0] = true } else { seenLeaf[0] = true }
        for i in 0..<n {
            guard t.feature[i] >= 0, Int(t.feature[i]) < featureCount else { throw bad("node \(i) splits on feature \(t.feature[i])") }
            for c in [t.left[i], t.right[i]] {
                if c >= 0 {
                    guard Int(c) < n, Int(c) > i, !seenNode[Int(c)] else { throw bad("node \(i) has child \(c)") }
                    seenNode[Int(c)] = true
                } else {
                    let leaf = Int(~c)
                    guard leaf <= n, !seenLeaf[leaf] else { throw bad("node \(i) has leaf \(leaf)") }
                    seenLeaf[leaf] = true
                }
            }
        }
        guard seenNode.allSatisfy({ $0 }), seenLeaf.allSatisfy({ $0 }) else { throw bad("some nodes or leaves are unreachable") }
    }
}

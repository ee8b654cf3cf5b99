import _FunnelKernels
import Foundation
import LinearAlgebra

/// A model compiled for inference: every tree's nodes in one array of 16-byte records
/// (float threshold, feature, children, flags), so a prediction is one tight loop with
/// one cache line per node. Build it once per model and reuse it: `predict(row)` then
/// allocates nothing.
///
/// Thresholds are stored as the largest Float not above the model's Double threshold,
/// so `x <= threshold` decides exactly as the Double comparison does for Float inputs.
public final class GBDTPredictor: @unchecked Sendable {
    struct Node {
        var threshold: Float
        var feature: Int32
        /// >= 0: node index; < 0: ~leaf index.
        var left: Int32
        var right: Int32
    }

    public let objective: Objective
    public let featureCount: Int
    let initScore: Double
    let sigmoid: Double
    let nodes: [Node]
    /// bit 0: default left; bits 1-2: missing type.
    let flags: [UInt8]
    let leafValues: [Double]
    let roots: [Int32]

    // The batched form (see fk_forest_accumulate): leaves are nodes pointing at themselves,
    // so each tree is walked a fixed `depth` steps.
    let forest: [fk_tree_node]
    let nanLeft: [UInt8]
    let zeroMissing: [UInt8]
    let zeroLeft: [UInt8]
    let nodeValue: [Double]
    let forestRoots: [Int32]
    let depths: [Int32]
    /// The QuickScorer form, when every tree has at most 64 leaves (see fk_quickscorer).
    let quickScorer: QuickScorerLayout?

    public init(_ model: GBDTModel) {
        objective = model.objective
        featureCount = model.featureCount
        initScore = model.initScore
        sigmoid = model.sigmoid
        var nodes = [Node](), flags = [UInt8](), leaves = [Double](), roots = [Int32]()
        for t in model.trees {
            let nodeBase = Int32(nodes.count), leafBase = Int32(leaves.count)
            func map(_ c: Int32) -> Int32 { c >= 0 ? nodeBase + c : ~(leafBase + ~c) }
            roots.append(t.isLeafOnly ? ~leafBase : nodeBase)
            for i in 0..<t.feature.count {
                var thr = Float(t.threshold[i])
                if Double(thr) > t.threshold[i] { thr = thr.nextDown }
                nodes.append(Node(threshold: thr, feature: t.feature[i], left: map(t.left[i]), right: map(t.right[i])))
                flags.append((t.defaultLeft[i] ? 1 : 0) | (t.missingType[i].rawValue << 1))
            }
            leaves.append(contentsOf: t.leafValue)
        }
        self.nodes = nodes
        self.flags = flags
        leafValues = leaves
        self.roots = roots

        var forest = [fk_tree_node](), nanLeft = [UInt8](), zeroMissing = [UInt8](), zeroLeft = [UInt8]()
        var nodeValue = [Double](), forestRoots = [Int32](), depths = [Int32]()
        for t in model.trees {
            let base = Int32(forest.count), inner = Int32(t.feature.count)
            func map(_ c: Int32) -> Int32 { c >= 0 ? base + c : base + inner + ~c }
            for i in 0..<t.feature.count {
                var thr = Float(t.threshold[i])
                if Double(thr) > t.threshold[i] { thr = thr.nextDown }
                forest.append(fk_tree_node(threshold: thr, feature: t.feature[i], left: map(t.left[i]), right: map(t.right[i])))
                let type = t.missingType[i]
                nanLeft.append(type == .none ? (0 <= thr ? 1 : 0) : (t.defaultLeft[i] ? 1 : 0))
                zeroMissing.append(type == .zero ? 1 : 0)
                zeroLeft.append(t.defaultLeft[i] ? 1 : 0)
                nodeValue.append(0)
            }
            for (j, v) in t.leafValue.enumerated() {
                let me = base + inner + Int32(j)
                forest.append(fk_tree_node(threshold: 0, feature: 0, left: me, right: me))
                nanLeft.append(1)
                zeroMissing.append(0)
                zeroLeft.append(1)
                nodeValue.append(v)
            }
            forestRoots.append(t.isLeafOnly ? base + inner : base)
            // Depth: the longest root-to-leaf path.
            var depth: Int32 = 0
            if !t.isLeafOnly {
                var stack: [(Int32, Int32)] = [(0, 0)]
                while let (n, d) = stack.popLast() {
                    for c in [t.left[Int(n)], t.right[Int(n)]] {
                        if c >= 0 { stack.append((c, d + 1)) } else { depth = max(depth, d + 1) }
                    }
                }
            }
            depths.append(depth)
        }
        self.forest = forest
        self.nanLeft = nanLeft
        self.zeroMissing = zeroMissing
        self.zeroLeft = zeroLeft
        self.nodeValue = nodeValue
        self.forestRoots = forestRoots
        self.depths = depths
        quickScorer = QuickScorerLayout(model)
    }

    @inline(__always)
    func rawScore(_ x: UnsafePointer<Float>, _ np: UnsafePointer<Node>, _ fp: UnsafePointer<UInt8>,
                  _ lp: UnsafePointer<Double>, _ rp: UnsafeBufferPointer<Int32>) -> Double {
        var s = initScore
        for root in rp {
            var n = root
            while n >= 0 {
                let node = np[Int(n)]
                let v = x[Int(node.feature)]
                let f = fp[Int(n)]
                let goLeft: Bool
                if v.isNaN {
                    // NaN type: default; zero type: NaN counts as zero -> default; none: NaN read as 0.
                    goLeft = (f >> 1) == 0 ? 0 <= node.threshold : (f & 1) != 0
                } else if (f >> 1) == 1 && v == 0 {
                    goLeft = (f & 1) != 0
                } else {
                    goLeft = v <= node.threshold
                }
                n = goLeft ? node.left : node.right
            }
            s += lp[Int(~n)]
        }
        return s
    }

    @inline(__always)
    func link(_ raw: Double) -> Double { objective == .binary ? 1 / (1 + exp(-sigmoid * raw)) : raw }

    /// One row's prediction (probability for binary). The row needs `featureCount` values.
    public func predict(_ row: UnsafePointer<Float>, raw: Bool = false) -> Double {
        nodes.withUnsafeBufferPointer { np in
            flags.withUnsafeBufferPointer { fp in
                leafValues.withUnsafeBufferPointer { lp in
                    roots.withUnsafeBufferPointer { rp in
                        let s = rawScore(row, np.baseAddress!, fp.baseAddress!, lp.baseAddress!, rp)
                        return raw ? s : link(s)
                    }
                }
            }
        }
    }

    /// Predictions for `rows` rows of `stride` floats starting at `x`, into `out`.
    /// Trees of at most 64 leaves are scored QuickScorer's way (see `fk_quickscorer`),
    /// others by walking eight rows through each tree in lockstep (`fk_forest_accumulate`).
    public func predict(_ x: UnsafePointer<Float>, rows: Int, stride: Int, raw: Bool = false, into out: UnsafeMutablePointer<Double>) {
        for r in 0..<rows { out[r] = initScore }
        if let qs = quickScorer {
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: fk_quickscorer_scratch_words(Int32(qs.trees))) { scratch in
                withUnsafePointer(to: qs.layout) { fk_quickscorer_accumulate($0, x, rows, stride, scratch.baseAddress!, out) }
            }
        } else if !forest.isEmpty {
            forest.withUnsafeBufferPointer { fp in
            nanLeft.withUnsafeBufferPointer { nl in
            zeroMissing.withUnsafeBufferPointer { zm in
            zeroLeft.withUnsafeBufferPointer { zl in
            nodeValue.withUnsafeBufferPointer { nv in
            forestRoots.withUnsafeBufferPointer { rp in
            depths.withUnsafeBufferPointer { dp in
                fk_forest_accumulate(fp.baseAddress, nl.baseAddress, zm.baseAddress, zl.baseAddress, nv.baseAddress,
                                     rp.baseAddress, dp.baseAddress, Int32(rp.count), x, rows, stride, out)
            }}}}}}}
        }
        if !raw && objective == .binary { for r in 0..<rows { out[r] = link(out[r]) } }
    }
}

/// The QuickScorer arrays of a model, in memory owned here (the C struct points into it).
final class QuickScorerLayout: @unchecked Sendable {
    let trees: Int
    private(set) var layout = fk_quickscorer()
    private var buffers: [UnsafeMutableRawPointer] = []

    /// Nil when some tree has more than 64 leaves.
    init?(_ model: GBDTModel) {
        guard model.trees.allSatisfy({ $0.leafValue.count <= 64 }) else { return nil }
        struct Entry { var feature: Int32; var threshold: Float; var tree: Int32; var mask: UInt64
                       var nanLeft: UInt8; var zeroMissing: UInt8; var zeroLeft: UInt8 }
        var entries = [Entry](), leafOffsets: [Int32] = [0], leafValues = [Double]()
        for (ti, t) in model.trees.enumerated() {
            // Leaves numbered left to right; each internal node's left subtree as a leaf range.
            var order = [Int32: Int]()     // tree leaf id -> position
            var range = [Int: (Int, Int)]()  // internal node -> [first, end) of its subtree's leaves
            func visit(_ c: Int32) -> (Int, Int) {
                if c < 0 {
                    let pos = order.count
                    order[~c] = pos
                    return (pos, pos + 1)
                }
                let l = visit(t.left[Int(c)]), r = visit(t.right[Int(c)])
                range[Int(c)] = l
                return (l.0, r.1)
            }
            if t.isLeafOnly { order[0] = 0 } else { _ = visit(0) }
            var values = [Double](repeating: 0, count: t.leafValue.count)
            for (leaf, pos) in order { values[pos] = t.leafValue[Int(leaf)] }
            leafValues += values
            leafOffsets.append(Int32(leafValues.count))
            for i in 0..<t.feature.count {
                var thr = Float(t.threshold[i])
                if Double(thr) > t.threshold[i] { thr = thr.nextDown }
                let (a, b) = range[i]!
                let bits: UInt64 = (b - a == 64 ? ~0 : ((1 << UInt64(b - a)) - 1)) << UInt64(a)
                let type = t.missingType[i]
                entries.append(Entry(feature: t.feature[i], threshold: thr, tree: Int32(ti), mask: ~bits,
                                     nanLeft: type == .none ? (0 <= thr ? 1 : 0) : (t.defaultLeft[i] ? 1 : 0),
                                     zeroMissing: type == .zero ? 1 : 0, zeroLeft: t.defaultLeft[i] ? 1 : 0))
            }
        }
        entries.sort { $0.feature != $1.feature ? $0.feature < $1.feature : $0.threshold < $1.threshold }
        let features = model.featureCount
        var featureOffsets = [Int32](repeating: 0, count: features + 1)
        var featureZero = [UInt8](repeating: 0, count: max(1, features))
        for e in entries {
            featureOffsets[Int(e.feature) + 1] += 1
            if e.zeroMissing != 0 { featureZero[Int(e.feature)] = 1 }
        }
        for f in 0..<features { featureOffsets[f + 1] += featureOffsets[f] }
        trees = model.trees.count
        func copy<T>(_ a: [T]) -> UnsafePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, a.count))
            if !a.isEmpty { p.initialize(from: a, count: a.count) }
            buffers.append(UnsafeMutableRawPointer(p))
            return UnsafePointer(p)
        }
        layout.features = Int32(features)
        layout.trees = Int32(trees)
        layout.feature_offsets = copy(featureOffsets)
        layout.thresholds = copy(entries.map(\.threshold))
        layout.tree = copy(entries.map(\.tree))
        layout.mask = copy(entries.map(\.mask))
        if model.trees.allSatisfy({ $0.leafValue.count <= 32 }) {
            layout.mask32 = copy(entries.map { UInt32(truncatingIfNeeded: $0.mask) })
        }
        layout.nan_left = copy(entries.map(\.nanLeft))
        layout.zero_missing = copy(entries.map(\.zeroMissing))
        layout.zero_left = copy(entries.map(\.zeroLeft))
        layout.feature_zero_missing = copy(featureZero)
        layout.leaf_offsets = copy(leafOffsets)
        layout.leaf_values = copy(leafValues)
    }

    deinit { for b in buffers { b.deallocate() } }
}

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
    public func predict(_ x: UnsafePointer<Float>, rows: Int, stride: Int, raw: Bool = false, into out: UnsafeMutablePointer<Double>) {
        nodes.withUnsafeBufferPointer { np in
            flags.withUnsafeBufferPointer { fp in
                leafValues.withUnsafeBufferPointer { lp in
                    roots.withUnsafeBufferPointer { rp in
                        guard let np = np.baseAddress, let fp = fp.baseAddress, let lp = lp.baseAddress else {
                            for r in 0..<rows { out[r] = raw ? initScore : link(initScore) }
                            return
                        }
                        for r in 0..<rows {
                            let s = rawScore(x + r * stride, np, fp, lp, rp)
                            out[r] = raw ? s : link(s)
                        }
                    }
                }
            }
        }
    }
}

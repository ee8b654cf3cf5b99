/// How a split treats a missing value.
public enum MissingType: UInt8, Sendable, Codable {
    /// NaN is read as 0 and compared (LightGBM's "None").
    case none = 0
    /// 0 and NaN follow the default direction (LightGBM's "Zero").
    case zero = 1
    /// NaN follows the default direction.
    case nan = 2
}

/// One regression tree as flat arrays, the layout inference walks.
///
/// Internal node i splits on `feature[i]`: a value `x` goes left when `x <= threshold[i]`
/// (missing values follow `defaultLeft[i]`). A child index c >= 0 is an internal node;
/// c < 0 is leaf `~c`.
public struct Tree: Sendable, Equatable {
    public var feature: [Int32] = []
    public var threshold: [Double] = []
    public var defaultLeft: [Bool] = []
    public var missingType: [MissingType] = []
    public var left: [Int32] = []
    public var right: [Int32] = []
    public var gain: [Float] = []
    /// Training rows (or hessian sum, for imported models) that reached each internal node.
    public var internalCount: [Double] = []
    public var leafValue: [Double] = [0]
    public var leafCount: [Double] = [0]

    public init() {}

    public var leafCount_: Int { leafValue.count }
    public var isLeafOnly: Bool { feature.isEmpty }

    /// The leaf a row reaches.
    @inline(__always)
    public func leaf(_ x: UnsafePointer<Float>) -> Int {
        if feature.isEmpty { return 0 }
        var node: Int32 = 0
        return feature.withUnsafeBufferPointer { f in
            threshold.withUnsafeBufferPointer { t in
                left.withUnsafeBufferPointer { l in
                    right.withUnsafeBufferPointer { r in
                        while node >= 0 {
                            let i = Int(node)
                            node = goesLeft(x[Int(f[i])], i, t[i]) ? l[i] : r[i]
                        }
                        return Int(~node)
                    }
                }
            }
        }
    }

    @inline(__always)
    func goesLeft(_ value: Float, _ i: Int, _ thr: Double) -> Bool {
        switch missingType[i] {
        case .nan:
            if value.isNaN { return defaultLeft[i] }
            return Double(value) <= thr
        case .zero:
            if value.isNaN || value == 0 { return defaultLeft[i] }
            return Double(value) <= thr
        case .none:
            return Double(value.isNaN ? 0 : value) <= thr
        }
    }

    /// The prediction of this tree for a row.
    @inline(__always)
    public func predict(_ x: UnsafePointer<Float>) -> Double { leafValue[leaf(x)] }

    /// Depth of the deepest leaf.
    public var depth: Int {
        func walk(_ n: Int32, _ d: Int) -> Int {
            n < 0 ? d : max(walk(left[Int(n)], d + 1), walk(right[Int(n)], d + 1))
        }
        return feature.isEmpty ? 0 : walk(0, 0)
    }
}

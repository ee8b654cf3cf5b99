import LinearAlgebra

/// Scalar quantization to one byte per dimension: x[j] ~ offset[j] + scale * code[j].
///
/// Offsets are learned per dimension (the minimum seen); one scale is shared by all
/// dimensions (the widest range / 255) so that distances between codes are plain
/// integer L2 and dot products, computed exactly by the uint8 kernels:
///
///     |x - y|^2 = scale^2 * sum (cx - cy)^2
///     <x, y>    = sum offset^2 + scale * (bx + by) + scale^2 * sum cx * cy,  bx = sum offset * cx
///
/// Values outside the training range are clamped.
public struct ScalarQuantizer: Sendable, Equatable {
    public let offsets: [Float]
    public let scale: Float
    /// sum of offset^2, the constant term of quantized dot products.
    public let offsetNorm: Float

    public init(offsets: [Float], scale: Float) {
        self.offsets = offsets
        self.scale = scale > 0 ? scale : 1
        offsetNorm = offsets.reduce(0) { $0 + $1 * $1 }
    }

    /// Learns offsets and scale from the rows of `data`.
    public init(training data: Matrix) {
        let d = data.columns
        var lo = [Float](repeating: .infinity, count: d), hi = [Float](repeating: -.infinity, count: d)
        for r in 0..<data.rows {
            for j in 0..<d {
                let v = data[r, j]
                lo[j] = min(lo[j], v)
                hi[j] = max(hi[j], v)
            }
        }
        var width: Float = 0
        for j in 0..<d {
            if !lo[j].isFinite { lo[j] = 0; hi[j] = 0 }
            width = max(width, hi[j] - lo[j])
        }
        self.init(offsets: lo, scale: width > 0 ? width / 255 : 1)
    }

    /// Encodes `x` into `codes`, returning bx = sum offset[j] * code[j].
    @inlinable
    public func encode(_ x: UnsafePointer<Float>, into codes: UnsafeMutablePointer<UInt8>, dimension d: Int) -> Float {
        let inv = 1 / scale
        var b: Float = 0
        offsets.withUnsafeBufferPointer { off in
            for j in 0..<d {
                let c = ((x[j] - off[j]) * inv).rounded()
                let q = UInt8(max(0, min(255, c)))
                codes[j] = q
                b += off[j] * Float(q)
            }
        }
        return b
    }
}

import LinearAlgebra

/// Scalar quantization to one byte per dimension: x[j] ~ offset[j] + scale[j] * code[j],
/// with each dimension's offset and scale learned from the data (its minimum, and its
/// range / 255), so a narrow dimension keeps as much precision as a wide one.
///
/// Distances are asymmetric: only the stored side is coded to 8 bits; the query keeps about
/// 15 bits (int16 on a common step), so the rounding error that matters is the stored
/// vector's. With q'[j] = q[j] * scale[j]:
///
///     <q, x^>    = sum q[j] * offset[j] + sum q'[j] * code[j]
///     |q - x^|^2 = |q|^2 + |x^|^2 - 2 <q, x^>      (|x^|^2 kept per item)
///
/// Values outside the training range are clamped. A dimension constant over the training
/// data has scale 0: its codes are 0 and it adds only its exact `q * offset` term.
///
/// The query's int16 step is set by the bulk of its dimensions, not by its largest: up to
/// 16 dimensions whose |q * scale| exceeds 8 times the bulk's (a heavy-tailed column, a
/// query far outside the data's range) are left out of the integer sum and added in floats
/// (`outliers`), so one extreme column cannot round every other one to zero.
public struct ScalarQuantizer: Sendable, Equatable {
    public let offsets: [Float]
    public let scales: [Float]

    public init(offsets: [Float], scales: [Float]) {
        precondition(offsets.count == scales.count, "one offset and one scale per dimension")
        self.offsets = offsets
        self.scales = scales.map { $0 > 0 && $0.isFinite ? $0 : 0 }
    }

    /// Learns each dimension's offset and scale from the rows of `data`.
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
        self.init(minimums: lo, maximums: hi)
    }

    /// Codes spanning each dimension's range, [minimums[j], maximums[j]] (a range that is
    /// not finite, as from no data, codes that dimension as a constant 0). For data seen a
    /// slice at a time: the ranges are accumulated first.
    public init(minimums: [Float], maximums: [Float]) {
        precondition(minimums.count == maximums.count, "one minimum and one maximum per dimension")
        var lo = minimums, hi = maximums
        for j in lo.indices where !lo[j].isFinite || !hi[j].isFinite || hi[j] < lo[j] { lo[j] = 0; hi[j] = 0 }
        self.init(offsets: lo, scales: (0..<lo.count).map { (hi[$0] - lo[$0]) / 255 })
    }

    /// Encodes `x` into `codes`, returning |x^|^2, the squared norm of the decoded vector.
    @inlinable
    public func encode(_ x: UnsafePointer<Float>, into codes: UnsafeMutablePointer<UInt8>, dimension d: Int) -> Float {
        var norm: Float = 0
        offsets.withUnsafeBufferPointer { off in
            scales.withUnsafeBufferPointer { sc in
                for j in 0..<d {
                    let c = sc[j] > 0 ? ((x[j] - off[j]) / sc[j]).rounded() : 0
                    let q = UInt8(max(0, min(255, c)))
                    codes[j] = q
                    let decoded = off[j] + sc[j] * Float(q)
                    norm += decoded * decoded
                }
            }
        }
        return norm
    }

    /// Most dimensions a query may leave out of the integer sum (see `prepare`).
    public static let maxOutliers = 16

    /// Prepares a float query for `fk_adc_dot_u8`: q'[j] = q[j] * scale[j] rounded to int16
    /// on a common step, small enough that the integer sums cannot overflow (see the
    /// kernel). Then <q, x^> = base + step * fk_adc_dot_u8(scaled, codes)
    /// + sum over the outliers t of weights[t] * codes[dims[t]].
    /// - Parameters:
    ///   - dims, weights: room for `maxOutliers + 1` entries; receive the dimensions left out
    ///     of the integer sum and their q[j] * scale[j].
    /// - Returns: the constant term, the step, and how many outliers there are.
    /// - Complexity: O(d * maxOutliers) in the worst case, O(d) typically.
    @inlinable
    public func prepare(_ q: UnsafePointer<Float>, into scaled: UnsafeMutablePointer<Int16>,
                        outliers dims: UnsafeMutablePointer<Int32>, weights: UnsafeMutablePointer<Float>,
                        dimension d: Int) -> (base: Float, step: Float, outliers: Int) {
        // Per 16 dimensions a kernel lane adds two products of at most 255 * limit.
        let limit = Float(min(32767, Int(Int32.max) / (2 * 255 * max(1, (d + 15) / 16)) - 1))
        var base: Float = 0
        var outliers = 0, largest: Float = 0
        offsets.withUnsafeBufferPointer { off in
            scales.withUnsafeBufferPointer { sc in
                // The r + 1 largest |q * scale|, descending (r = min(16, d / 4)): the last is the
                // bulk's reference; dimensions more than 8 times above it are outliers.
                let r = min(Self.maxOutliers, d / 4)
                var kept = 0
                for j in 0..<d {
                    base += q[j] * off[j]
                    let m = abs(q[j] * sc[j])
                    guard r > 0, kept < r + 1 || m > weights[kept - 1] else { continue }
                    var i = kept < r + 1 ? kept : r
                    if kept < r + 1 { kept += 1 }
                    while i > 0 && weights[i - 1] < m {
                        weights[i] = weights[i - 1]
                        dims[i] = dims[i - 1]
                        i -= 1
                    }
                    weights[i] = m
                    dims[i] = Int32(j)
                }
                if r > 0, kept == r + 1 {
                    let bulk = weights[r]
                    while outliers < r && weights[outliers] > 8 * bulk { outliers += 1 }
                }
                if r > 0 {
                    largest = weights[outliers]  // sorted descending: the largest dimension kept in the sum
                } else {
                    for j in 0..<d { largest = max(largest, abs(q[j] * sc[j])) }
                }
                for t in 0..<outliers { weights[t] = q[Int(dims[t])] * sc[Int(dims[t])] }
                let inv = largest > 0 ? limit / largest : 1
                for j in 0..<d { scaled[j] = Int16(max(-limit, min(limit, (q[j] * sc[j] * inv).rounded()))) }
                for t in 0..<outliers { scaled[Int(dims[t])] = 0 }
            }
        }
        return (base, largest > 0 ? largest / limit : 1, outliers)
    }

    /// The decoded value of `codes` (for tests and inspection).
    public func decode(_ codes: UnsafePointer<UInt8>, dimension d: Int) -> [Float] {
        (0..<d).map { offsets[$0] + scales[$0] * Float(codes[$0]) }
    }
}

import _FunnelKernels

/// Distance kernels: AVX2+FMA in C when the CPU has them, portable scalar code otherwise.
///
/// All float kernels run at memory bandwidth on long scans; the integer kernels are
/// exact (64-bit accumulation) and serve quantized codes and raw uint8 data.
public enum Distance {
    /// Whether the SIMD bodies are in use on this CPU.
    public static var usesSIMD: Bool { fk_simd_level() >= 1 }

    /// The inner product of two vectors of length `n`. - Complexity: O(n).
    @inlinable
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        fk_dot_f32(a, b, n)
    }

    /// The squared Euclidean distance of two vectors of length `n`. - Complexity: O(n).
    @inlinable
    public static func squaredL2(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        fk_l2sq_f32(a, b, n)
    }

    /// The squared Euclidean norm of a vector of length `n`.
    @inlinable
    public static func squaredNorm(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        fk_norm2_f32(a, n)
    }

    /// The squared Euclidean distance of two arrays. - Precondition: equal counts.
    public static func squaredL2(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "vectors differ in length: \(a.count) vs \(b.count)")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                guard let x = pa.baseAddress, let y = pb.baseAddress else { return 0 }
                return fk_l2sq_f32(x, y, a.count)
            }
        }
    }

    /// The inner product of two arrays. - Precondition: equal counts.
    public static func dot(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "vectors differ in length: \(a.count) vs \(b.count)")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                guard let x = pa.baseAddress, let y = pb.baseAddress else { return 0 }
                return fk_dot_f32(x, y, a.count)
            }
        }
    }

    /// The cosine similarity of two arrays (0 when either is the zero vector).
    public static func cosineSimilarity(_ a: [Float], _ b: [Float]) -> Float {
        let na = dot(a, a), nb = dot(b, b)
        guard na > 0, nb > 0 else { return 0 }
        return dot(a, b) / (na.squareRoot() * nb.squareRoot())
    }

    /// Squared L2 distances from `query` to `count` rows of `base` (row stride `stride`).
    /// - Complexity: O(count * dim), bandwidth-bound.
    @inlinable
    public static func squaredL2(query: UnsafePointer<Float>, rows base: UnsafePointer<Float>,
                                 count: Int, dimension: Int, stride: Int,
                                 into out: UnsafeMutablePointer<Float>) {
        fk_l2sq_f32_rows(query, base, count, dimension, stride, out)
    }

    /// Inner products of `query` with `count` rows of `base` (row stride `stride`).
    @inlinable
    public static func dot(query: UnsafePointer<Float>, rows base: UnsafePointer<Float>,
                           count: Int, dimension: Int, stride: Int,
                           into out: UnsafeMutablePointer<Float>) {
        fk_dot_f32_rows(query, base, count, dimension, stride, out)
    }

    /// Exact inner product of two int8 codes.
    @inlinable
    public static func dot(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ n: Int) -> Int64 {
        fk_dot_i8(a, b, n)
    }

    /// Exact squared Euclidean distance of two int8 codes.
    @inlinable
    public static func squaredL2(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ n: Int) -> Int64 {
        fk_l2sq_i8(a, b, n)
    }

    /// Exact inner product of two uint8 vectors.
    @inlinable
    public static func dot(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Int64 {
        fk_dot_u8(a, b, n)
    }

    /// Exact squared Euclidean distance of two uint8 vectors.
    @inlinable
    public static func squaredL2(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Int64 {
        fk_l2sq_u8(a, b, n)
    }
}
